"""Goods stranded on a day gone by: waiting at the farm past their pickup day, or at their
destination center past their delivery day, because no plan of that day ever ran (the
nightly message lost, staff never asked) or their route was planned and never set out.
Nothing else moves them: a plan takes only its own day's goods, and /my/pickups/ shows
no day gone by. The sweeper (a beat task, and the start of the nightly plan) moves them on
to the first day whose plan is still to come, as goods a plan left out are moved
(schedule._roll_to_next_day), but as no failed try of theirs: they did nothing wrong."""

from collections import defaultdict
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from logistics.models import (
    LegKind,
    LegStatus,
    RouteStatus,
    ScheduleRun,
    ScheduleRunStatus,
    Shipment,
    ShipmentLeg,
    ShipmentStatus,
    Stop,
    StopStatus,
    TrackingEvent,
)
from logistics.services.failures import BEFORE_PICKUP
from logistics.services.routing import (
    first_day_to_plan,
    lock_capacity_of,
    next_days,
    nightly_day,
    orders_due,
    orders_tell_later_delivery,
    orders_waiting_again,
    shipments_move_days,
)
from logistics.services.shipments import lock_routes_of, shipments_leave_planned_routes
from orders.models import Order

OPEN_STOP = (StopStatus.PENDING, StopStatus.LOCKED)


def _stranded(now: datetime) -> QuerySet[Shipment]:
    """Goods at the farm (pending, scheduled) whose pickup day is before today (the local
    date at `now`), and goods at their destination center for a delivery to the buyer's
    door whose delivery day is; goods collected at the center need no plan, and wait there
    for their buyer. Left alone: goods on an open stop of a route that set out (staff may
    still record it late) or locked for staff review (wrong codes), and, until the nightly
    plan of the day after next is due, goods on a route planned for a day gone by: a phone
    offline all day may still tell the stops its driver made, and no plan before that one
    could take them anyway (next_try)."""
    today = timezone.localdate(now)
    kept = Stop.shipments.through.objects.filter(stop__status__in=OPEN_STOP).filter(
        Q(stop__status=StopStatus.LOCKED)
        | Q(stop__route__status__in=(RouteStatus.STARTED, RouteStatus.COMPLETED))
        | Q(stop__route__date__gte=nightly_day(now) - timedelta(days=1))
    )
    to_the_door = ShipmentLeg.objects.filter(
        shipment=OuterRef("pk"), kind=LegKind.DELIVERY, status=LegStatus.PENDING
    )
    return Shipment.objects.filter(
        Q(status__in=BEFORE_PICKUP, pickup_date__lt=today)
        | Q(Exists(to_the_door), status=ShipmentStatus.AT_CENTER, delivery_date__lt=today)
    ).exclude(pk__in=kept.values("shipment_id"))


def shipments_roll_stranded(*, now: datetime | None = None, planning: date | None = None) -> int:
    """Every stranded shipment (_stranded) moves to its next day to plan (next_try, from
    the day it missed), its delivery as far, its bookings with it (shipments_move_days);
    `failed_attempts` unchanged. Each gets a tracking event saying why and its new day;
    goods on a route that never set out leave its stops, a stop left empty goes and the
    route is measured and numbered again (a route left with none goes, as after a cancel);
    an order scheduled with nothing on a route any more waits for a plan again (confirmed);
    a buyer whose order is now due later is told once (`day_missed`). `planning`: the day
    the nightly plan is about to plan (schedule_tomorrow): goods may move onto it at every
    center whose nightly plan of it is still to come (none asked for, nor one running).

    In batches of STRANDED_SWEEP_BATCH orders, each in a transaction of its own, locking
    as a cancel does (orders, then shipments, then capacity, then routes), so it waits for,
    and never deadlocks with, a placement, a cancel, a stop recorded or a plan stored.
    Idempotent: moved goods are on a day still ahead. Returns how many shipments moved."""
    now = now or timezone.now()
    moved, after = 0, 0
    while order_ids := list(
        _stranded(now)
        .filter(order_id__gt=after)
        .order_by("order_id")
        .values_list("order_id", flat=True)
        .distinct()[: settings.STRANDED_SWEEP_BATCH]
    ):
        moved += _roll_orders(order_ids, now, planning)
        after = order_ids[-1]
    return moved


@transaction.atomic
def _roll_orders(order_ids: list[int], now: datetime, planning: date | None) -> int:
    list(
        Order.objects.select_for_update(of=("self",), no_key=True)  # as orders.order_lock
        .filter(pk__in=order_ids)
        .order_by("pk")
    )
    shipments = list(
        _stranded(now).filter(order_id__in=order_ids).select_for_update(of=("self",)).order_by("pk")
    )
    if not shipments:
        return 0
    lock_capacity_of(shipments)
    routes = lock_routes_of(shipments)
    # Read again with the routes held: a stop of another order recorded on one of them
    # before (its transaction holds no lock of these orders) set it out: those goods stay.
    still = set(
        _stranded(now).filter(pk__in=[s.pk for s in shipments]).values_list("pk", flat=True)
    )
    shipments = [s for s in shipments if s.pk in still]
    if not shipments:
        return 0
    on_routes = set(
        Stop.shipments.through.objects.filter(
            shipment__in=shipments, stop__route__status=RouteStatus.PLANNED
        ).values_list("shipment_id", flat=True)
    )
    due_before = orders_due(s.order_id for s in shipments)
    events = _move_on(shipments, on_routes, now, _first_open(shipments, now, planning))
    shipments_leave_planned_routes(shipments, routes)
    TrackingEvent.objects.bulk_create(events)
    orders_waiting_again(s.order_id for s in shipments)
    orders_tell_later_delivery(due_before=due_before, reason="day_missed")  # once an order
    return len(shipments)


def _center(shipment: Shipment) -> int:
    """The center whose plan takes the shipment next: its origin's at the farm, else its
    destination's."""
    at_farm = shipment.status in BEFORE_PICKUP
    return shipment.origin_center_id if at_farm else shipment.destination_center_id


def _first_open(shipments: list[Shipment], now: datetime, planning: date | None) -> dict[int, date]:
    """By center: the first day whose plan is still to come. `planning` at a center with no
    nightly run of it and none running (one running read the day already, and the nightly
    message would join it); else the day after the last nightly plan (first_day_to_plan)."""
    later = first_day_to_plan(now)
    first_open: dict[int, date] = defaultdict(lambda: later)
    if planning is None:
        return first_open
    planned = set(
        ScheduleRun.objects.filter(
            Q(nightly=True) | Q(status=ScheduleRunStatus.RUNNING),
            service_center__in={_center(s) for s in shipments},
            date=planning,
        ).values_list("service_center_id", flat=True)
    )
    for shipment in shipments:
        if (center := _center(shipment)) not in planned:
            first_open[center] = planning
    return first_open


def _move_on(
    shipments: list[Shipment], on_routes: set[int], now: datetime, first_open: dict[int, date]
) -> list[TrackingEvent]:
    """The shipments (locked) move to their next day to plan, all together; returns their
    tracking events."""
    moves, events = [], []
    for shipment in shipments:
        at_farm = shipment.status in BEFORE_PICKUP
        missed = shipment.pickup_date if at_farm else shipment.delivery_date
        pickup, delivery = next_days(
            shipment, at_farm=at_farm, first_open=first_open[_center(shipment)]
        )
        if at_farm:
            shipment.status = ShipmentStatus.PENDING  # off its route, if it was on one
        moves.append((shipment, pickup, delivery))
        kind, new_day = ("pickup", pickup) if at_farm else ("delivery", delivery)
        why = "its route never set out" if shipment.pk in on_routes else "no plan took it"
        events.append(
            TrackingEvent(
                shipment=shipment,
                status=shipment.status,
                occurred_at=now,
                note=f"{kind} day {missed:%Y-%m-%d} went by ({why}); "
                f"{kind} moved to {new_day:%Y-%m-%d}",
            )
        )
    shipments_move_days(moves, also=["status"])
    return events
