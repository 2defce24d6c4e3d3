"""Whom a driver meets at a stop and how to reach them: the farmer at a pickup, the buyer
at a delivery, with the cash to take from the buyer. For the staff of the route's center
only (routes answer no one else)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.db import models

from logistics.models import Shipment, ShipmentStatus, Stop, StopKind, StopStatus
from orders.cash import NOTHING, CashLedger

# A stop the driver still goes to, and goods still to hand over.
OPEN = frozenset({StopStatus.PENDING, StopStatus.LOCKED})
HANDED_OVER_OR_GONE = frozenset(
    {ShipmentStatus.DELIVERED, ShipmentStatus.FAILED, ShipmentStatus.CANCELLED}
)


class ContactRole(models.TextChoices):
    FARMER = "farmer", "The farmer whose goods are picked up"
    BUYER = "buyer", "The buyer the goods are delivered to"


@dataclass
class StopContact:
    role: str
    name: str
    phone: str
    village: str | None
    address: str
    shipments: list[int] = field(default_factory=list)
    # A buyer's: cash to take here, and cash recorded as taken (None for a farmer)
    cash_to_collect: Decimal | None = None
    cash_collected: Decimal | None = None


def shipment_contact(shipment: Shipment, kind: str) -> StopContact:
    """At a pickup the farmer, at their own village and address (their current profile:
    the farm they ship from); at a delivery the buyer, at the order's delivery village
    and address. Reads farmer__village, order__buyer and order__delivery_village."""
    if kind == StopKind.PICKUP:
        farmer = shipment.farmer
        return StopContact(
            role=ContactRole.FARMER,
            name=farmer.name,
            phone=farmer.phone,
            village=farmer.village.name if farmer.village else None,
            address=farmer.address,
        )
    order = shipment.order
    return StopContact(
        role=ContactRole.BUYER,
        name=order.buyer.name,
        phone=order.buyer.phone,
        village=order.delivery_village.name,
        address=order.delivery_address,
    )


def stop_contacts(
    stop: Stop, shipments: Iterable[Shipment], cash: Mapping[int, Decimal] | None = None
) -> list[StopContact]:
    """One contact per farmer at a pickup (farms sharing a place share a stop), one per
    order at a delivery (a stop delivers one order, so one), each with the ids of its
    shipments there; in the order of their first shipment. A buyer's contact also has the
    cash to take for its shipments (`cash`, by shipment id, from cash_to_collect: 0.00 once
    the stop is closed, or when prepaid) and, once the stop is done, the cash recorded for
    them (stop_cash_collected)."""
    contacts: dict[int, StopContact] = {}
    for shipment in sorted(shipments, key=lambda s: s.pk):
        key = shipment.farmer_id if stop.kind == StopKind.PICKUP else shipment.order_id
        if key not in contacts:
            contacts[key] = shipment_contact(shipment, stop.kind)
            if stop.kind == StopKind.DELIVERY:
                contacts[key].cash_to_collect = NOTHING
        contact = contacts[key]
        contact.shipments.append(shipment.pk)
        if stop.kind != StopKind.DELIVERY:
            continue
        contact.cash_to_collect += (cash or {}).get(shipment.pk, NOTHING)
        collected = stop_cash_collected(stop, [shipment])
        if collected is not None:
            contact.cash_collected = (contact.cash_collected or NOTHING) + collected
    return list(contacts.values())


def stop_cash_collected(stop: Stop, shipments: Iterable[Shipment]) -> Decimal | None:
    """The cash recorded for these shipments of a delivery stop done: what the driver took
    there. None while the stop is not done, or none of them has cash recorded: goods of a
    stop that failed may be handed over later elsewhere, and that cash was not taken
    here."""
    if stop.kind != StopKind.DELIVERY or stop.status != StopStatus.DONE:
        return None
    amounts = [s.cash_collected for s in shipments if s.cash_collected is not None]
    return sum(amounts, NOTHING) if amounts else None


def cash_to_collect(
    stops: Iterable[tuple[Stop, Iterable[Shipment]]],
) -> dict[int, dict[int, Decimal]]:
    """The cash to take from the buyer at each delivery stop still open, by stop id and
    shipment id, by the cash-on-delivery rule (orders.cash.CashLedger). `stops` are one
    route's in visiting order, each with its shipments (not cancelled) read
    with_cash_figures and their orders: an order's goods at an earlier open stop of the
    route (not one locked by wrong codes) count as handed over by the time a later one
    comes (one order's goods from several farms, or refrigerated and not, may make several
    stops at the buyer's), so the driver sees at each what it will take there."""
    ledgers: dict[int, CashLedger] = {}
    due: dict[int, dict[int, Decimal]] = {}
    for stop, shipments in stops:
        if stop.kind != StopKind.DELIVERY or stop.status not in OPEN:
            continue
        # A stop locked by wrong codes waits for staff's review while the driver goes on:
        # its goods are not counted as handed over at the stops after it.
        ahead = {} if stop.status == StopStatus.LOCKED else ledgers
        for shipment in sorted(shipments, key=lambda s: s.pk):
            if shipment.status in HANDED_OVER_OR_GONE:
                continue
            if shipment.order_id not in ahead:
                ahead[shipment.order_id] = (
                    replace(ledgers[shipment.order_id])
                    if shipment.order_id in ledgers
                    else CashLedger.of(shipment)
                )
            due.setdefault(stop.pk, {})[shipment.pk] = ahead[shipment.order_id].hand_over(
                shipment.cash_goods
            )
    return due
