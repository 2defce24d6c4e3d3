"""Goods that fail for good, and the order that follows its shipments.

Every failed try of a shipment counts (Shipment.failed_attempts): a stop of it reported
failed on the road (shipments._fail), and a day whose plan left it out (schedule's roll to
the next day: no vehicle with the skills it needs, too heavy, no room or time). The
MAX_STOP_ATTEMPTS-th try fails it for good, by the one path here, whichever it was."""

from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from functools import reduce
from operator import or_

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from listings.selectors import listings_for_update
from logistics.models import LegStatus, Shipment, ShipmentLeg, ShipmentStatus, TrackingEvent
from logistics.services.routing import lock_capacity_of, shipments_rebook
from marketplace.accounts.models import User
from marketplace.db import clip
from orders.models import (
    DeliveryMethod,
    LineStatus,
    NotificationKind,
    Order,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
)
from orders.notifications import notify_order_delivered, notify_ready_for_collection
from orders.services import order_lines_not_delivered, order_lock, order_transition

FINAL = frozenset({ShipmentStatus.DELIVERED, ShipmentStatus.FAILED, ShipmentStatus.CANCELLED})
BEFORE_PICKUP = frozenset({ShipmentStatus.PENDING, ShipmentStatus.SCHEDULED})


def gives_up(shipment: Shipment) -> bool:
    """Whether this failed try of the shipment (a stop failed, a day's plan that left it
    out) is its last, the MAX_STOP_ATTEMPTS-th: it then fails for good."""
    return shipment.failed_attempts + 1 >= settings.MAX_STOP_ATTEMPTS


def lock_for_failing(shipments: Collection[Shipment], giving_up: Collection[Shipment]) -> None:
    """The locks taken before `shipments` (locked, their orders locked before them) fail a
    try, `giving_up` of them for good: first the listings of the goods of those still at
    the farm, which go back on sale, every listing at once in primary-key order, as a
    placement or a cancel locks them (order by order, this could deadlock with those); then
    the capacity of every center of `shipments` at once (their bookings move or go), before
    any route, as a cancel takes them."""
    at_farm = [s for s in giving_up if s.status in BEFORE_PICKUP]
    if at_farm:
        farmers_lines = OrderLine.objects.filter(
            reduce(or_, (Q(order_id=s.order_id, farmer_id=s.farmer_id) for s in at_farm)),
            status=LineStatus.ACTIVE,
        )
        listings_for_update(sorted(set(farmers_lines.values_list("listing_id", flat=True))))
    lock_capacity_of(shipments)


def shipments_fail_for_good(
    failing: Sequence[tuple[Shipment, str]],
    *,
    at: datetime,
    actor: User | None,
    note_prefix: str = "",
) -> None:
    """The shipments (locked, with lock_for_failing's locks held), each with why, failed
    their last try: they are failed (a tracking event at `at`, the try counted), free the
    days they hold (what they hold, weighed or not), and the legs they will never go are
    called off, as a cancel does; the legs they went stay done. Their farmers' lines in each
    order are not charged (the order totalled again; a prepaid order paid for them is owed
    the difference back), go back on sale if the goods never left the farm (waiting for
    their pickup), and the buyer is told once an order, each farmer of theirs
    (`goods_not_delivered`). The order itself follows its shipments: the caller moves it
    (order_follow_shipments) once its other goods are where they go."""
    if not failing:
        return
    shipments = [shipment for shipment, _ in failing]
    shipments_rebook((s, Decimal(0)) for s in shipments)
    ShipmentLeg.objects.filter(shipment__in=shipments, status=LegStatus.PENDING).update(
        status=LegStatus.CANCELLED
    )
    by_order: dict[int, tuple[list[int], list[int], list[str]]] = {}
    events, now = [], timezone.now()
    note_length = TrackingEvent._meta.get_field("note").max_length
    for shipment, reason in failing:
        farmers, restocked, reasons = by_order.setdefault(shipment.order_id, ([], [], []))
        farmers.append(shipment.farmer_id)
        if shipment.status in BEFORE_PICKUP:  # the goods never left the farm
            restocked.append(shipment.farmer_id)
        reasons.append(reason.strip())
        shipment.failed_attempts += 1
        shipment.status, shipment.updated_at = ShipmentStatus.FAILED, now
        events.append(
            TrackingEvent(
                shipment=shipment,
                status=ShipmentStatus.FAILED,
                occurred_at=at,
                actor=actor,
                # cut to fit: it may quote staff's reason (up to as long as the column) whole
                note=clip(note_prefix + reason, note_length),
            )
        )
    Shipment.objects.bulk_update(shipments, ["status", "failed_attempts", "updated_at"])
    TrackingEvent.objects.bulk_create(events)
    for order_id, (farmers, restocked, reasons) in sorted(by_order.items()):
        order_lines_not_delivered(  # one order's goods of several farmers: told once
            order_id=order_id,
            farmer_ids=farmers,
            restock_farmer_ids=restocked,
            reason="; ".join(dict.fromkeys(reasons)),
        )


def _tell_buyer_when_ready_for_collection(order: Order, statuses: list[str]) -> None:
    """An order collected at the buyer's center (locked): its buyer is told once, when the
    last of its goods still coming is waiting there (a transfer received, a local pickup
    done), so they come when there is something to collect."""
    waiting = [s for s in statuses if s not in FINAL]
    if (
        order.delivery_method != DeliveryMethod.PICKUP
        or not waiting
        or any(s != ShipmentStatus.AT_CENTER for s in waiting)
        or order.notifications.filter(kind=NotificationKind.READY_FOR_COLLECTION).exists()
    ):
        return
    shipment = order.shipments.select_related("destination_center").exclude(status__in=FINAL)[0]
    notify_ready_for_collection(order, shipment.destination_center)


def order_follow_shipments(order_id: int, actor: User | None) -> None:
    """The order follows its shipments: on the road after the first pickup; delivered when
    every shipment is delivered; partially delivered when some failed for good; failed
    when all did (from confirmed or scheduled, when no pickup ever happened)."""
    order = order_lock(order_id)
    statuses = list(
        Shipment.objects.filter(order_id=order_id)
        .exclude(status=ShipmentStatus.CANCELLED)
        .values_list("status", flat=True)
    )
    if not statuses:
        return
    # A pickup that failed for good picked nothing up: the order may still be called off.
    picked_up = any(s not in BEFORE_PICKUP | {ShipmentStatus.FAILED} for s in statuses)
    if order.status in (OrderStatus.CONFIRMED, OrderStatus.SCHEDULED) and picked_up:
        order = order_transition(
            order=order, to_status=OrderStatus.IN_TRANSIT, actor=actor, reason="first pickup"
        )
    _tell_buyer_when_ready_for_collection(order, statuses)
    on_its_way = (OrderStatus.CONFIRMED, OrderStatus.SCHEDULED, OrderStatus.IN_TRANSIT)
    if order.status not in on_its_way or not all(s in FINAL for s in statuses):
        return  # (every pickup failed for good: from confirmed or scheduled to failed)
    delivered = statuses.count(ShipmentStatus.DELIVERED)
    if delivered == len(statuses):
        final = OrderStatus.DELIVERED
    elif delivered:
        final = OrderStatus.PARTIALLY_DELIVERED
    else:
        final = OrderStatus.FAILED
    if delivered and order.payment_method == PaymentMethod.COD:
        order.payment_status, order.paid_at = PaymentStatus.COLLECTED, timezone.now()
        order.save(update_fields=["payment_status", "paid_at", "updated_at"])
    elif not delivered and order.payment_status == PaymentStatus.UNPAID:
        order.payment_status = PaymentStatus.NOT_DUE  # nothing came: nothing to collect
        order.save(update_fields=["payment_status", "updated_at"])
    order = order_transition(
        order=order, to_status=final, actor=actor, reason="all shipments finished"
    )
    if delivered:
        notify_order_delivered(order)
