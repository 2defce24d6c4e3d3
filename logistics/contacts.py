"""Whom a driver meets at a stop and how to reach them: the farmer at a pickup, the buyer
at a delivery. For the staff of the route's center only (routes answer no one else)."""

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import models

from logistics.models import Shipment, StopKind


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


def stop_contacts(kind: str, shipments: Iterable[Shipment]) -> list[StopContact]:
    """One contact per farmer at a pickup (farms sharing a place share a stop), one per
    order at a delivery (a stop delivers one order, so one), each with the ids of its
    shipments there; in the order of their first shipment."""
    contacts: dict[int, StopContact] = {}
    for shipment in sorted(shipments, key=lambda s: s.pk):
        key = shipment.farmer_id if kind == StopKind.PICKUP else shipment.order_id
        if key not in contacts:
            contacts[key] = shipment_contact(shipment, kind)
        contacts[key].shipments.append(shipment.pk)
    return list(contacts.values())
