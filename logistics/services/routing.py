"""Routing an order: one shipment per farmer, its legs through the service centers, and its
dates, within each center's daily handling capacity. Called by the route_order task."""

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Max, Min, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from listings.places import pickup_point
from listings.selectors import harvests_lock_for_routing
from logistics.geo import distance_km
from logistics.models import (
    CenterDayLoad,
    LegKind,
    LegStatus,
    ServiceCenter,
    Shipment,
    ShipmentLeg,
    ShipmentStatus,
    TrackingEvent,
)
from orders import notifications
from orders.models import DeliveryMethod, LineStatus, Order, OrderLine, OrderStatus
from orders.services import (
    order_fail_unroutable,
    order_lock,
    order_transition,
    orders_transition,
)

logger = logging.getLogger(__name__)

MAX_DAYS_AHEAD = 60
CAPACITY_LOCK_SPACE = 7301  # the first key of the (int, int) advisory locks on capacity
GRAM = Decimal("0.001")


def to_grams(kg: Decimal) -> Decimal:
    """A weight as a shipment stores it: to the gram, half up (as PostgreSQL rounds). A
    line's weight (quantity × unit weight) has up to six decimals; what is booked and what
    is released again must be the stored, rounded weight, or the day's load drifts."""
    return kg.quantize(GRAM, rounding=ROUND_HALF_UP)


def transfer_days(origin: ServiceCenter, destination: ServiceCenter) -> int:
    """Days between pickup and delivery: 0 within one center, else one day per
    TRANSFER_KM_PER_DAY of road (great-circle × the origin's detour factor), at least 1."""
    if origin.pk == destination.pk:
        return 0
    road_km = distance_km(origin.lat, origin.lng, destination.lat, destination.lng) * float(
        origin.detour_factor
    )
    return max(1, math.ceil(road_km / settings.TRANSFER_KM_PER_DAY))


def nightly_day(now: datetime | None = None) -> date:
    """The day a nightly message plans: the day after the evening it was sent, the last
    whose NIGHTLY_SCHEDULE_HOUR has passed. One taken only after midnight (the workers down
    through the night) plans the day that has begun, still unplanned, not the day after,
    whose own nightly turn is this evening."""
    local = timezone.localtime(now)
    sent_on = local.date() - timedelta(days=local.hour < settings.NIGHTLY_SCHEDULE_HOUR)
    return sent_on + timedelta(days=1)


def first_day_to_plan(now: datetime | None = None) -> date:
    """The first day whose plan is still to come: the day after the last nightly plan's
    (tomorrow, or the day after once tonight's plan of tomorrow ran). A plan runs once and
    takes the goods on its day then; no day gone by is planned."""
    return nightly_day(now) + timedelta(days=1)


def earliest_pickup(placed: datetime, now: datetime, harvest_dates: list[date]) -> date:
    """Not before the lead time from when the order was placed (one more day if that was
    past the daily cut-off, whenever it is routed), nor the lead time from now, nor a day
    already planned (an order routed late, after tonight's plan), nor any harvest."""
    local = timezone.localtime(placed)
    lead = settings.ROUTING_LEAD_DAYS + (1 if local.hour >= settings.ROUTING_CUTOFF_HOUR else 0)
    return max(
        [
            local.date() + timedelta(days=lead),
            timezone.localtime(now).date() + timedelta(days=settings.ROUTING_LEAD_DAYS),
            first_day_to_plan(now),
            *harvest_dates,
        ]
    )


# One statement adds every (center, day) booking of a batch to its row, creating it if new.
_ADD_LOADS = """
    INSERT INTO logistics_centerdayload AS load (center_id, date, booked_kg)
    SELECT * FROM unnest(%s::bigint[], %s::date[], %s::numeric[])
    ON CONFLICT (center_id, date) DO UPDATE SET booked_kg = load.booked_kg + EXCLUDED.booked_kg
"""
# And one takes kilograms off rows: an upsert of a negative amount would break the table's
# check on the row it proposes, before it finds the row to update. Never below 0: during a
# rolling deploy the release before may have freed part of a shipment's weight (a line
# turned down) without knowing its `booked_kg`; its day then holds less than it says.
_FREE_LOADS = """
    UPDATE logistics_centerdayload AS load SET booked_kg = GREATEST(load.booked_kg - freed.kg, 0)
    FROM unnest(%s::bigint[], %s::date[], %s::numeric[]) AS freed (center_id, date, kg)
    WHERE load.center_id = freed.center_id AND load.date = freed.date
"""


class NoRoomError(RuntimeError):
    """A center has no room for a load in the next MAX_DAYS_AHEAD days."""


class _Capacity:
    """The day loads of some centers, read once while their capacity locks are held (so no
    other routing books them meanwhile; a cancellation may only free room), booked in
    memory, then written with one statement."""

    def __init__(self, centers: dict[int, ServiceCenter], since: date):
        self.centers = centers
        rows = CenterDayLoad.objects.filter(center_id__in=centers, date__gte=since)
        self.booked = {
            (c, d): kg for c, d, kg in rows.values_list("center_id", "date", "booked_kg")
        }
        self.added: dict[tuple[int, date], Decimal] = defaultdict(Decimal)

    def book(self, center_id: int, earliest: date, weight_kg: Decimal) -> date:
        """Book `weight_kg` on the first day from `earliest` with room and return that day.
        A load bigger than a whole day's capacity gets an empty day of its own, so it is
        never silently added on top of others."""
        capacity = self.centers[center_id].daily_capacity_kg
        for offset in range(MAX_DAYS_AHEAD):
            day = earliest + timedelta(days=offset)
            booked = self.booked.get((center_id, day), Decimal(0))
            if (booked == 0) if weight_kg > capacity else (booked + weight_kg <= capacity):
                self._add(center_id, day, weight_kg)
                return day
        raise NoRoomError(f"center {center_id} has no room in the next {MAX_DAYS_AHEAD} days")

    def unbook(self, center_id: int, day: date, weight_kg: Decimal) -> None:
        self._add(center_id, day, -weight_kg)

    def _add(self, center_id: int, day: date, weight_kg: Decimal) -> None:
        key = (center_id, day)
        self.booked[key] = self.booked.get(key, Decimal(0)) + weight_kg
        self.added[key] += weight_kg

    def save(self) -> None:
        _add_loads([(center, day, kg) for (center, day), kg in self.added.items() if kg])


def _add_loads(rows: list[tuple[int, date, Decimal]]) -> None:
    """Add each (center, day, kg) to that day's booked load, in one statement (one row per
    (center, day): an upsert touches a row once)."""
    if rows:
        with connection.cursor() as cursor:
            cursor.execute(_ADD_LOADS, [list(column) for column in zip(*rows, strict=True)])


def _change_loads(changes: dict[tuple[int, date], Decimal]) -> None:
    """Add to or take off each (center, day)'s booked load its change: a statement for
    what is added, one for what is freed."""
    _add_loads([(center, day, kg) for (center, day), kg in changes.items() if kg > 0])
    freed = [(center, day, -kg) for (center, day), kg in changes.items() if kg < 0]
    if freed:
        with connection.cursor() as cursor:
            cursor.execute(_FREE_LOADS, [list(column) for column in zip(*freed, strict=True)])


def lock_centers_capacity(center_ids) -> None:
    """Take the capacity bookings of these centers for the rest of the transaction, in
    ascending id order, so two routings sharing centers wait for each other, never deadlock."""
    with connection.cursor() as cursor:
        for center_id in sorted(center_ids):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [CAPACITY_LOCK_SPACE, center_id])


def lock_capacity_of(shipments: Iterable[Shipment]) -> None:
    """lock_centers_capacity for every center these shipments' weight is booked at, at
    once: a writer of several shipments' bookings (a cancel, a failed stop, a pickup
    weighed, a plan rolling goods over) that took them shipment by shipment could hold one
    center's and wait for another's held by a writer going the other way. Every writer of
    the day loads takes them before it writes one, so none waits for a load row while
    holding another."""
    centers = set()
    for shipment in shipments:
        centers.add(shipment.origin_center_id)
        if shipment.crosses_centers:
            centers.add(shipment.destination_center_id)
    lock_centers_capacity(centers)


def booked_days(shipment: Shipment, *, pickup: date, delivery: date) -> list[tuple[int, date]]:
    """Where a shipment's weight is booked, for these days of it: the origin center on the
    pickup day and, across centers, the destination on the delivery day. It holds its
    `booked_kg` on each."""
    days = [(shipment.origin_center_id, pickup)]
    if shipment.crosses_centers:
        days.append((shipment.destination_center_id, delivery))
    return days


def shipments_rebook(changes: Iterable[tuple[Shipment, Decimal]]) -> None:
    """Each shipment's bookings hold the kilograms paired with it from now on: as weighed
    at its pickup, as its lines left weigh after one was rejected, 0 when its days are
    freed (cancelled, failed for good). Every day it is booked on (booked_days) gets the
    difference from what it holds (`booked_kg`), so a day never keeps a residue of it nor
    loses more than it held; `booked_kg` is then saved. The capacity locks of all their
    centers are taken first, at once (lock_capacity_of); then one statement adds, one frees
    and one saves, however many shipments."""
    changed = [(shipment, kg) for shipment, kg in changes if kg != shipment.held_kg]
    if not changed:
        return
    lock_capacity_of(shipment for shipment, _ in changed)
    loads: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    for shipment, kg in changed:
        days = booked_days(shipment, pickup=shipment.pickup_date, delivery=shipment.delivery_date)
        for day in days:
            loads[day] += kg - shipment.held_kg
        shipment.booked_kg = kg
    _change_loads(loads)
    Shipment.objects.bulk_update([shipment for shipment, _ in changed], ["booked_kg"])


def loads_on_board(stops: Iterable[tuple[bool, list[Shipment]]]) -> list[Decimal]:
    """The kilograms on board after each of a route's stops, in visiting order, from the
    goods each serves (whether it picks up, and its shipments): the goods it delivers that
    no stop of it picks up leave the center on board, a pickup adds its goods and a
    delivery takes them off."""
    stops = list(stops)
    picked = {s.pk for picks_up, shipments in stops if picks_up for s in shipments}
    on_board = sum(
        (
            s.load_kg
            for picks_up, shipments in stops
            if not picks_up
            for s in shipments
            if s.pk not in picked
        ),
        Decimal(0),
    )
    loads = []
    for picks_up, shipments in stops:
        weight = sum((s.load_kg for s in shipments), Decimal(0))
        on_board += weight if picks_up else -weight
        loads.append(on_board)
    return loads


def next_try(day: date, *, first_open: date | None = None) -> timedelta:
    """How far a shipment's day moves when its stop failed or did not fit the plan: a day,
    and never onto a day whose plan already ran, which would not take the goods (a day gone
    by, today, and tomorrow once tonight's nightly plan ran at NIGHTLY_SCHEDULE_HOUR: a
    failure a phone told late, a past day planned again), as a transfer received late.
    `first_open`: the first day whose plan is still to come, when the caller knows better
    than the clock (first_day_to_plan): the nightly plan about to plan its day."""
    return max(timedelta(days=1), (first_open or first_day_to_plan()) - day)


def next_days(
    shipment: Shipment, *, at_farm: bool, first_open: date | None = None
) -> tuple[date, date]:
    """A shipment's (pickup, delivery) days for its next try: the day it missed (its
    pickup's while the goods are at the farm, else its delivery's) moved by next_try, the
    delivery as far (a delivery's pickup stays as it was)."""
    missed = shipment.pickup_date if at_farm else shipment.delivery_date
    move = next_try(missed, first_open=first_open)
    pickup = shipment.pickup_date + move if at_farm else shipment.pickup_date
    return pickup, max(shipment.delivery_date + move, pickup)


def shipment_move_days(
    shipment: Shipment, *, pickup_date: date, delivery_date: date, also: Sequence[str] = ()
) -> None:
    """One shipment's days move: shipments_move_days of it alone."""
    shipments_move_days([(shipment, pickup_date, delivery_date)], also=also)


def shipments_move_days(
    moves: Sequence[tuple[Shipment, date, date]], *, also: Sequence[str] = ()
) -> None:
    """Each shipment's pickup and delivery go to the (pickup, delivery) days paired with it
    (a failed stop, a day that was full), saved with its other changed fields `also`. Its
    pending legs take the new dates and its bookings move with them, what it holds on each
    (`booked_kg`: as weighed, once picked up): the new day takes the load whether or not it
    has room, since the goods must go some day; a cancellation then releases the days
    really booked. The capacity locks of all their centers are taken first, at once
    (lock_capacity_of); then one statement reads their goods' shelf lives, one saves them,
    one adds and one frees loads, one dates their legs, however many shipments (a farm's
    failed pickup of many orders)."""
    if not moves:
        return
    shipments = [shipment for shipment, _, _ in moves]
    lock_capacity_of(shipments)
    spoil_days = first_to_spoil(shipments)
    loads: dict[tuple[int, date], Decimal] = defaultdict(Decimal)
    now = timezone.now()
    for shipment, pickup, delivery in moves:
        before = booked_days(shipment, pickup=shipment.pickup_date, delivery=shipment.delivery_date)
        after = booked_days(shipment, pickup=pickup, delivery=delivery)
        for old, new in zip(before, after, strict=True):
            if old != new:
                loads[old] -= shipment.held_kg
                loads[new] += shipment.held_kg
        shipment.pickup_date, shipment.delivery_date = pickup, delivery
        shipment.spoils_before_arrival = _spoiled(
            spoil_days.get((shipment.order_id, shipment.farmer_id)), delivery
        )
        shipment.updated_at = now  # bulk_update leaves auto_now to us
    fields = ["pickup_date", "delivery_date", "spoils_before_arrival", "updated_at", *also]
    Shipment.objects.bulk_update(shipments, list(dict.fromkeys(fields)))
    _change_loads(loads)
    # The legs read their shipment's new days, just saved: one statement of one size.
    saved = Shipment.objects.filter(pk=OuterRef("shipment_id"))
    ShipmentLeg.objects.filter(shipment__in=shipments, status=LegStatus.PENDING).update(
        date=Case(
            When(kind=LegKind.PICKUP, then=Subquery(saved.values("pickup_date"))),
            default=Subquery(saved.values("delivery_date")),
        )
    )


def first_to_spoil(shipments: list[Shipment]) -> dict[tuple[int, int], date]:
    """The first day the goods of each shipment (its farmer's lines still ordered) pass
    their shelf life, by (order id, farmer id); no entry when none of them spoils. Some of
    them spoil before a delivery after that day (spoils_before, for many at once)."""
    first = (
        OrderLine.objects.filter(
            order_id__in={s.order_id for s in shipments},
            farmer_id__in={s.farmer_id for s in shipments},
            status=LineStatus.ACTIVE,
            spoils_on__isnull=False,
        )
        .order_by()
        .values("order_id", "farmer_id")
        .annotate(first=Min("spoils_on"))
        .values_list("order_id", "farmer_id", "first")
    )
    return {(order_id, farmer_id): day for order_id, farmer_id, day in first}


def spoils_before(shipment: Shipment, delivery: date) -> bool:
    """Whether some of the shipment's goods (its farmer's lines still ordered) pass their
    shelf life before `delivery`, as routing first flagged it for its first day."""
    first = first_to_spoil([shipment]).get((shipment.order_id, shipment.farmer_id))
    return _spoiled(first, delivery)


def _spoiled(spoils_on: date | None, delivery: date) -> bool:
    """Whether goods that keep until `spoils_on` (copied with their line when ordered; the
    listing may have moved on to a new harvest since) are past it on `delivery`."""
    return spoils_on is not None and spoils_on < delivery


def _last_deliveries(order_ids: Iterable[int]) -> QuerySet:
    """(order id, buyer id, last delivery day) of these orders' shipments still coming or
    delivered; no row for an order with none."""
    return (
        Shipment.objects.filter(order_id__in=order_ids)
        .exclude(status__in=(ShipmentStatus.CANCELLED, ShipmentStatus.FAILED))
        .order_by()
        .values("order_id")
        .annotate(day=Max("delivery_date"))
        .values_list("order_id", "order__buyer_id", "day")
    )


def orders_due(order_ids: Iterable[int]) -> dict[int, date]:
    """Each order's expected delivery, as its confirmation told the buyer: the day the last
    of its goods still coming (or delivered) is due. Read before moving shipments' days,
    for orders_tell_later_delivery."""
    return {order_id: day for order_id, _, day in _last_deliveries(set(order_ids))}


def orders_tell_later_delivery(*, due_before: dict[int, date], reason: str) -> None:
    """After shipments of these orders moved to other days (shipments_move_days), in the
    same transaction: the buyer of each order due later than `due_before` (orders_due,
    read before the moves) is told the new day (`delivery_rescheduled`; `reason` is a key
    of notifications.RESCHEDULED_BECAUSE), once however many of its shipments moved. A
    pickup moved within the days the order was due anyway tells nobody."""
    notifications.notify_delivery_rescheduled(
        [
            (order_id, buyer_id, due_before[order_id], day)
            for order_id, buyer_id, day in sorted(_last_deliveries(list(due_before)))
            if day > due_before[order_id]
        ],
        reason=reason,
    )


def orders_waiting_again(order_ids) -> None:
    """Orders on a route (scheduled) none of whose shipments is on one any more (a failed
    pickup, a day that did not fit, a vehicle gone) wait for a plan again: confirmed."""
    for order_id in sorted(set(order_ids)):
        order_waiting_again(order_lock(order_id))


def order_waiting_again(order: Order) -> None:
    """orders_waiting_again of one order the caller holds locked (a farmer's goods turned
    down, which were its only ones on a route)."""
    on_a_route = Shipment.objects.filter(order_id=order.pk, status=ShipmentStatus.SCHEDULED)
    if order.status == OrderStatus.SCHEDULED and not on_a_route.exists():
        order_transition(
            order=order, to_status=OrderStatus.CONFIRMED, reason="waits for the next plan"
        )


def _legs(shipment: Shipment, delivery_method: str) -> list[ShipmentLeg]:
    legs = [
        ShipmentLeg(
            shipment=shipment,
            sequence=1,
            kind=LegKind.PICKUP,
            to_center=shipment.origin_center,
            date=shipment.pickup_date,
        )
    ]
    if shipment.crosses_centers:
        legs.append(
            ShipmentLeg(
                shipment=shipment,
                sequence=2,
                kind=LegKind.TRANSFER,
                from_center=shipment.origin_center,
                to_center=shipment.destination_center,
                date=shipment.delivery_date,
            )
        )
    last = LegKind.HANDOVER if delivery_method == DeliveryMethod.PICKUP else LegKind.DELIVERY
    legs.append(
        ShipmentLeg(
            shipment=shipment,
            sequence=len(legs) + 1,
            kind=last,
            from_center=shipment.destination_center,
            date=shipment.delivery_date,
        )
    )
    return legs


@dataclass
class _Shipping:
    """One farmer's part of an order while its days are booked."""

    order: Order
    lines: list[OrderLine]
    origin: ServiceCenter
    destination: ServiceCenter
    weight: Decimal
    earliest: date
    pickup: date | None = None
    delivery: date | None = None

    def book(self, capacity: _Capacity) -> None:
        """The pickup at the origin; then, across centers, the delivery at the destination
        from the day the transfer arrives, or to the buyer's door from the day after: a
        day's delivery routes are planned the evening before (NIGHTLY_SCHEDULE_HOUR) from
        the goods at the center then, and goods arriving that day are not yet there."""
        self.pickup = capacity.book(self.origin.pk, self.earliest, self.weight)
        if self.origin.pk == self.destination.pk:
            self.delivery = self.pickup
            return
        days = transfer_days(self.origin, self.destination)
        if self.order.delivery_method == DeliveryMethod.HOME:
            days += 1
        # set only once booked: unbook() gives back exactly what was booked
        self.delivery = capacity.book(
            self.destination.pk, self.pickup + timedelta(days=days), self.weight
        )

    def unbook(self, capacity: _Capacity) -> None:
        if self.pickup is not None:
            capacity.unbook(self.origin.pk, self.pickup, self.weight)
            if self.origin.pk != self.destination.pk and self.delivery is not None:
                capacity.unbook(self.destination.pk, self.delivery, self.weight)
        self.pickup = self.delivery = None

    def shipment(self, now: datetime) -> Shipment:
        first = self.lines[0]
        # The farm's exact place, from the farmer: the listing holds only its public point.
        pickup_lat, pickup_lng = pickup_point(first.farmer, first.listing.village)
        at_center = self.order.delivery_method == DeliveryMethod.PICKUP
        return Shipment(
            order=self.order,
            farmer_id=self.lines[0].farmer_id,
            origin_center=self.origin,
            destination_center=self.destination,
            weight_kg=self.weight,
            needs_refrigeration=any(line.needs_refrigeration for line in self.lines),
            pickup_lat=pickup_lat,
            pickup_lng=pickup_lng,
            delivery_lat=self.destination.lat if at_center else self.order.delivery_lat,
            delivery_lng=self.destination.lng if at_center else self.order.delivery_lng,
            booked_kg=self.weight,  # as book() booked it on each of its days
            pickup_date=self.pickup,
            delivery_date=self.delivery,
            promised_date=self.delivery,
            spoils_before_arrival=any(
                _spoiled(line.spoils_on, self.delivery) for line in self.lines
            ),
        )


def due_for_routing(now: datetime) -> Q:
    """Placed orders to route now: never tried, or whose last try found no room
    ROUTING_RETRY_MINUTES ago or more (room comes back slowly: a cancel, a day further on
    coming within reach), so one no center has room for is not tried at every sweep."""
    retry_from = now - timedelta(minutes=settings.ROUTING_RETRY_MINUTES)
    return Q(routing_failed_at__isnull=True) | Q(routing_failed_at__lte=retry_from)


def _lock_orders(order_id: int | None, *, more: int, wait: bool) -> list[Order]:
    """The order `order_id` (if given) if it is placed (waiting for its lock, or skipping it
    when another transaction holds it and `wait` is false), then up to `more` other placed
    orders due for routing, oldest first, skipping any another transaction holds: those are
    being routed, cancelled or changed by it. Ids are locked first, rows read after: when
    nothing waits (the message of an order a batch already routed) that is two small
    queries."""
    placed = Order.objects.filter(status=OrderStatus.PLACED).order_by()
    ids = []
    if order_id is not None:
        ids = list(
            placed.select_for_update(skip_locked=not wait, no_key=True)  # as order_lock
            .filter(pk=order_id)
            .values_list("pk", flat=True)
        )
        placed = placed.exclude(pk=order_id)
    if more:
        ids += (
            placed.select_for_update(skip_locked=True, no_key=True)
            .filter(due_for_routing(timezone.now()))
            .order_by("pk")
            .values_list("pk", flat=True)[:more]
        )
    if not ids:
        return []
    rows = Order.objects.select_related("delivery_village__service_center").in_bulk(ids)
    return [rows[pk] for pk in ids]


def _route(orders: list[Order]) -> list[Order]:
    """Route locked, placed orders together: one read of their lines, the capacity of their
    centers locked and booked in memory, then one INSERT per table and one UPDATE of the
    orders (confirmed, and `routed_at` now: an order with shipments always has it). An
    order that cannot be routed (no center has room within MAX_DAYS_AHEAD, no active line)
    is left placed with `routing_failed_at` now, logged, and the others go on (it is tried
    again later, and given up on in the end: orders_give_up_routing). Returns the routed
    ones."""
    if not orders:
        return []
    # The harvest dates the pickups are booked from, held until this commits: a farmer's
    # harvest moved later waits for these pickup days and finds them (listing_update), or
    # is read here as moved.
    harvests_lock_for_routing([order.pk for order in orders])
    lines = (
        OrderLine.objects.filter(order__in=orders, status=LineStatus.ACTIVE)
        .select_related("listing__village__service_center", "farmer")
        .defer("listing__description", "listing__search_vector")
        .order_by("order_id", "farmer_id", "id")
    )
    parts: dict[int, dict[int, list[OrderLine]]] = {order.pk: {} for order in orders}
    centers: dict[int, ServiceCenter] = {}
    for line in lines:
        center = centers.setdefault(
            line.listing.village.service_center_id, line.listing.village.service_center
        )
        line.listing.village.service_center = center
        parts[line.order_id].setdefault(line.farmer_id, []).append(line)
    for order in orders:
        center = order.delivery_village.service_center
        order.delivery_village.service_center = centers.setdefault(center.pk, center)
    # The clock is read once the centers are held: a day's plan reads the day under the
    # center's lock (schedule._day_shipments_locked), so a routing it waited for has its
    # goods read, and one that waited for it finds that day closed (first_day_to_plan).
    lock_centers_capacity(centers)
    now = timezone.now()
    shippings = {
        order.pk: [
            _Shipping(
                order=order,
                lines=farmer_lines,
                origin=farmer_lines[0].listing.village.service_center,
                destination=order.delivery_village.service_center,
                weight=to_grams(sum((x.weight_kg for x in farmer_lines), Decimal(0))),
                earliest=earliest_pickup(
                    order.paid_at or order.created_at,  # when it was placed, or paid for
                    now,
                    [x.listing.harvest_date for x in farmer_lines],
                ),
            )
            for farmer_lines in parts[order.pk].values()
        ]
        for order in orders
    }
    capacity = _Capacity(
        centers,
        since=min((x.earliest for xs in shippings.values() for x in xs), default=now.date()),
    )
    routed, failed = [], []
    for order in orders:
        if not shippings[order.pk]:
            logger.error("order %s not routed: it has no active line", order.pk)
            failed.append(order.pk)
            continue
        try:
            for shipping in shippings[order.pk]:
                shipping.book(capacity)
        except NoRoomError as exc:
            for shipping in shippings[order.pk]:
                shipping.unbook(capacity)
            logger.error("order %s not routed: %s", order.pk, exc)
            failed.append(order.pk)
            continue
        routed.append(order)
    capacity.save()
    if failed:
        Order.objects.filter(pk__in=failed).update(routing_failed_at=now)
    shipments = Shipment.objects.bulk_create(
        shipping.shipment(now) for order in routed for shipping in shippings[order.pk]
    )
    ShipmentLeg.objects.bulk_create(
        leg for shipment in shipments for leg in _legs(shipment, shipment.order.delivery_method)
    )
    TrackingEvent.objects.bulk_create(
        TrackingEvent(
            shipment=shipment,
            status=ShipmentStatus.PENDING,
            occurred_at=now,
            center=shipment.origin_center,
            note=f"pickup {shipment.pickup_date:%Y-%m-%d}, "
            f"delivery {shipment.delivery_date:%Y-%m-%d}",
        )
        for shipment in shipments
    )
    reasons, messages = {}, []
    for order in routed:
        own = shippings[order.pk]
        first_pickup = min(x.pickup for x in own)
        last_delivery = max(x.delivery for x in own)
        reasons[order.pk] = (
            f"routed: pickup from {first_pickup:%Y-%m-%d}, delivery by {last_delivery:%Y-%m-%d}"
        )
        messages += notifications.order_confirmed_messages(
            order,
            delivery_date=last_delivery,
            pickup_dates={x.lines[0].farmer_id: x.pickup for x in own},
            lines_by_farmer=parts[order.pk],
        )
    # "Routed" is a column of the order (staff's list reads it), set with its shipments.
    orders_transition(
        orders=routed, to_status=OrderStatus.CONFIRMED, reasons=reasons, also={"routed_at": now}
    )
    notifications.store(messages)
    return routed


@transaction.atomic
def order_route(*, order_id: int) -> Order:
    """Route one placed order: one shipment per farmer with legs and dates, then confirm
    it. Idempotent: the order row is locked first (waiting for it) and only a `placed`
    order is routed, so a repeated or concurrent call finds it confirmed and does nothing;
    the unique (order, farmer) constraint backs this up."""
    routed = _route(_lock_orders(order_id, more=0, wait=True))
    return routed[0] if routed else Order.objects.get(pk=order_id)


@transaction.atomic
def orders_route_batch(*, order_id: int | None, size: int) -> list[int]:
    """The routing task's work: the order `order_id` and other placed orders with it, up to
    `size` in one transaction (without an order id: the `size` oldest placed). Under load
    this serves many orders with one set of statements (a message whose order a batch
    already routed finds it confirmed, routes the others waiting, or stops at one query);
    when quiet it is one order. An order another transaction holds is skipped:
    that one is routing, cancelling or changing it, and the sweeper re-sends what is still
    placed after that. Returns the ids routed."""
    more = size if order_id is None else size - 1
    return [order.pk for order in _route(_lock_orders(order_id, more=more, wait=False))]


def orders_give_up_routing(*, now: datetime | None = None) -> list[int]:
    """Fail the placed orders whose last try found no room ROUTING_GIVE_UP_HOURS or more
    after they were placed (paid, if prepaid; routing counts its lead time from then too):
    each in a transaction of its own (orders' order_fail_unroutable: restocked once, the
    buyer told, a payment owed back). An order never tried is not given up, however old
    (the workers were down): the sweeper sends it to be routed first. One that cannot be
    failed is logged and left for the next sweep. Returns the ids failed."""
    now = now or timezone.now()
    placed_at = Coalesce("paid_at", "created_at")
    give_up_from = placed_at + timedelta(hours=settings.ROUTING_GIVE_UP_HOURS)
    due = (
        Order.objects.filter(status=OrderStatus.PLACED, routing_failed_at__gte=give_up_from)
        .order_by("pk")
        .values_list("pk", flat=True)[: settings.ROUTING_SWEEP_BATCH]
    )
    failed = []
    for order_id in due:
        try:
            order = order_fail_unroutable(order_id=order_id)
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: the next sweep goes on
        except Exception:
            logger.exception("order %s could not be given up on; the next sweep tries", order_id)
            continue
        if order.status == OrderStatus.FAILED:
            logger.warning("order %s given up: no room to route it since it was placed", order_id)
            failed.append(order_id)
    return failed
