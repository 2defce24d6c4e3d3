"""A shipment's life after routing: pickups and deliveries on the road, transfers received
at the destination center, failed stops put back, cancellations. Every change writes a
TrackingEvent and moves the order through the orders state machine."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Prefetch
from django.utils import timezone

from logistics import errors
from logistics.contacts import cash_to_collect
from logistics.models import (
    LegKind,
    LegStatus,
    Route,
    RouteStatus,
    Shipment,
    ShipmentLeg,
    ShipmentStatus,
    Stop,
    StopKind,
    StopStatus,
    TrackingEvent,
)
from logistics.services.failures import (
    BEFORE_PICKUP,
    FINAL,
    gives_up,
    lock_for_failing,
    order_follow_shipments,
    shipments_fail_for_good,
)
from logistics.services.routing import (
    GRAM,
    first_day_to_plan,
    loads_on_board,
    lock_capacity_of,
    next_days,
    order_waiting_again,
    orders_due,
    orders_tell_later_delivery,
    orders_waiting_again,
    shipment_move_days,
    shipments_move_days,
    shipments_rebook,
    spoils_before,
    to_grams,
)
from logistics.services.schedule import routes_measure
from marketplace.accounts.models import User
from marketplace.db import clip
from marketplace.exceptions import ConflictError, DomainError
from orders.cash import CashLedger, with_cash_figures
from orders.models import DeliveryMethod, LineStatus, Order, OrderLine
from orders.notifications import notify_out_for_delivery
from orders.services import order_lock


@dataclass(frozen=True)
class Completion:
    outcome: str  # "done" or "failed"
    weight_kg: Decimal | None = None
    delivery_code: str = ""
    reason: str = ""
    occurred_at: datetime | None = None
    # At a pickup done: the ids of the stop's shipments not handed over (a farmer of a stop
    # shared with other farms was out), which fail as a failed pickup's do, with `reason`.
    not_picked_up: tuple[int, ...] = ()


def _event(
    shipment: Shipment, status: str, at: datetime, actor: User | None, note="", *, center=None
) -> TrackingEvent:
    return TrackingEvent(
        shipment=shipment,
        status=status,
        occurred_at=at,
        actor=actor,
        # cut to fit: a note may quote staff's reason (up to as long as the column) whole
        note=clip(note, TrackingEvent._meta.get_field("note").max_length),
        center=center,
    )


def _track(
    shipment: Shipment, status: str, at: datetime, actor: User | None, note="", *, center=None
):
    shipment.status = status
    shipment.save(update_fields=["status", "updated_at"])
    _event(shipment, status, at, actor, note, center=center).save()


def _track_all(shipments: list[Shipment], events: list[TrackingEvent], *also: str) -> None:
    """Each shipment's status as set on it (and the fields `also`), and their tracking
    events: one UPDATE and one INSERT for all of them, however many (a farm's pickup of
    many orders)."""
    now = timezone.now()
    for shipment in shipments:
        shipment.updated_at = now
    Shipment.objects.bulk_update(shipments, ["status", "updated_at", *also])
    TrackingEvent.objects.bulk_create(events)


def _finish_legs(shipments: list[Shipment], kinds: tuple[str, ...]) -> None:
    ShipmentLeg.objects.filter(shipment__in=shipments, kind__in=kinds).update(status=LegStatus.DONE)


def _complete_pickup(
    stop: Stop, shipments: list[Shipment], staff: User, data: Completion, at: datetime
):
    if data.weight_kg is None:
        raise DomainError(
            errors.WEIGHT_REQUIRED,
            "Weigh the goods: weight_kg is required.",
            extra={"field": "weight_kg"},
        )
    # Shared by planned weight, each share down to the gram; the last takes what is left (as
    # much or a few grams more), so the parts add up to the scale and none is below zero.
    planned = sum((s.weight_kg for s in shipments), Decimal(0)) or Decimal(1)
    left = data.weight_kg
    events = []
    for n, shipment in enumerate(shipments, start=1):
        share = (
            left
            if n == len(shipments)
            else (data.weight_kg * shipment.weight_kg / planned).quantize(GRAM, ROUND_DOWN)
        )
        shipment.picked_up_weight_kg, left = share, left - share
        shipment.status = (
            ShipmentStatus.IN_TRANSFER if shipment.crosses_centers else ShipmentStatus.AT_CENTER
        )
        events += [
            _event(shipment, ShipmentStatus.PICKED_UP, at, staff, f"{share} kg"),
            _event(shipment, shipment.status, at, staff, center=shipment.origin_center),
        ]
    # The days they hold, the pickup's and the delivery's ahead, now hold what is on the
    # truck (more or less than ordered): once, as a stop is done once. After the shipments'
    # locks and before the route's (_route_follows), as a failed stop takes them.
    shipments_rebook((s, s.picked_up_weight_kg) for s in shipments)
    _finish_legs(shipments, (LegKind.PICKUP,))
    _track_all(shipments, events, "picked_up_weight_kg")
    stop.weight_kg = data.weight_kg


def _complete_delivery(
    shipments: list[Shipment], staff: User, at: datetime, stop: Stop | None = None
):
    """The shipments (their orders locked) are handed to the buyer, each with the cash
    collected for it by the cash-on-delivery rule (orders.cash): at a route's `stop`, what
    the route shows for it (_cash_due); at the center's hand-over, in key order. Read
    before any of them counts as delivered. Only a shipment not yet delivered comes here
    (a replayed completion or hand-over returns before), so cash is recorded once."""
    collected = _cash_due(shipments, stop)
    _finish_legs(shipments, (LegKind.DELIVERY, LegKind.HANDOVER))
    for shipment in shipments:
        shipment.status = ShipmentStatus.DELIVERED
        shipment.cash_collected = collected[shipment.pk]
    events = [_event(s, s.status, at, staff, "delivery code checked") for s in shipments]
    _track_all(shipments, events, "cash_collected")


def _cash_due(shipments: list[Shipment], stop: Stop | None = None) -> dict[int, Decimal]:
    """The cash due for each of `shipments` handed over together, by shipment id (one
    query, whatever their number). At a route's delivery `stop`, the cash the route shows
    for it (logistics.contacts.cash_to_collect: its order's goods at the route's open stops
    before it counted as handed over by then), so a driver who does one order's stops out
    of their visiting order takes at each what it showed, and they still add up to the
    order's total (two queries)."""
    if stop is not None:
        return _cash_shown(stop, {s.order_id for s in shipments})
    ledgers: dict[int, CashLedger] = {}
    due = {}
    figures = with_cash_figures(Shipment.objects.filter(pk__in=[s.pk for s in shipments]))
    for shipment in figures.select_related("order").order_by("pk"):
        if shipment.order_id not in ledgers:
            ledgers[shipment.order_id] = CashLedger.of(shipment)
        due[shipment.pk] = ledgers[shipment.order_id].hand_over(shipment.cash_goods)
    return due


def _cash_shown(stop: Stop, order_ids: set[int]) -> dict[int, Decimal]:
    """The cash the route shows for its delivery `stop`, by shipment id: the route's
    delivery stops up to it, in visiting order, with their shipments of `order_ids`."""
    up_to_it = Stop.objects.filter(
        route_id=stop.route_id, kind=StopKind.DELIVERY, sequence__lte=stop.sequence
    ).prefetch_related(
        Prefetch(
            "shipments",
            queryset=with_cash_figures(
                Shipment.objects.filter(order_id__in=order_ids).exclude(
                    status=ShipmentStatus.CANCELLED
                )
            ).select_related("order"),
            to_attr="of_the_orders",
        )
    )
    return cash_to_collect((s, s.of_the_orders) for s in up_to_it.order_by("sequence"))[stop.pk]


def _fail(stop: Stop, shipments: list[Shipment], staff: User, data: Completion, at: datetime):
    """Put the shipments back for the next day; after MAX_STOP_ATTEMPTS they fail for good
    (failures.shipments_fail_for_good, as goods a day's plan left out that often). A buyer
    whose order is now due later is told the new day. Their new days and bookings
    (shipments_move_days), statuses and tracking events are written together, however many
    (a farm's pickup of many orders): only each order costs statements of its own."""
    if not data.reason.strip():
        raise DomainError(
            errors.REASON_REQUIRED, "Say why the stop failed.", extra={"field": "reason"}
        )
    pickup = stop.kind == StopKind.PICKUP
    giving_up = [s for s in shipments if gives_up(s)]
    lock_for_failing(shipments, giving_up)  # before the route (_route_follows)
    due_before = orders_due(s.order_id for s in shipments)
    # not charged; back in stock if never picked up (a failed pickup's goods)
    shipments_fail_for_good([(s, data.reason) for s in giving_up], at=at, actor=staff)
    trying_again = [s for s in shipments if s not in giving_up]
    shipments_move_days([_next_days(s, pickup=pickup) for s in trying_again])
    events = []
    for shipment in trying_again:
        shipment.failed_attempts += 1
        shipment.status = ShipmentStatus.PENDING if pickup else ShipmentStatus.AT_CENTER
        next_day = shipment.pickup_date if pickup else shipment.delivery_date
        note = f"stop failed, next try {next_day:%Y-%m-%d}: {data.reason}"
        events.append(_event(shipment, shipment.status, at, staff, note))
    _track_all(trying_again, events, "failed_attempts")
    why = "pickup_failed" if pickup else "delivery_failed"
    orders_tell_later_delivery(due_before=due_before, reason=why)
    orders_waiting_again(s.order_id for s in shipments)
    stop.reason = data.reason.strip()


def _next_days(shipment: Shipment, *, pickup: bool) -> tuple[Shipment, date, date]:
    """A shipment whose pickup (or delivery) failed and its (pickup, delivery) days for the
    next try (next_days)."""
    return (shipment, *next_days(shipment, at_farm=pickup))


def _on_route_day(stop: Stop, at: datetime) -> None:
    """A stop is recorded, done or failed, from its route's day on (the local date at `at`):
    before it, the route would set out early (its buyers told their goods are on the way a
    day ahead), and a failure would send goods nobody went for to another day."""
    day = stop.route.date
    if timezone.localtime(at).date() < day:
        raise ConflictError(
            errors.BEFORE_ROUTE_DAY,
            f"This stop's route is on {day:%Y-%m-%d}: it is recorded from that day on.",
            extra={"route_date": day.isoformat()},
        )


# A device offline for longer than this is not telling of this round of deliveries.
OFFLINE_AT_MOST = timedelta(days=30)
# A phone's clock may run a little fast; a time further ahead did not happen yet.
CLOCK_SLACK = timedelta(minutes=5)


def _in_time(occurred_at: datetime | None) -> None:
    """A change told at a time more than CLOCK_SLACK ahead is 400 `in_future`, one more
    than OFFLINE_AT_MOST ago 400 `too_long_ago`, before anything else is checked. Checked
    once a replay of what is recorded has been answered (each service returns it first), so
    a device uploading its day again, weeks on or with its clock running ahead, is answered
    as before, whatever time it tells."""
    if occurred_at is None:
        return
    now = timezone.now()
    if occurred_at > now + CLOCK_SLACK:
        raise DomainError(
            errors.IN_FUTURE, "That time has not come yet.", extra={"field": "occurred_at"}
        )
    if occurred_at < now - OFFLINE_AT_MOST:
        raise DomainError(
            errors.TOO_LONG_AGO, "That time is too long ago.", extra={"field": "occurred_at"}
        )


def _when(shipments: list[Shipment], occurred_at: datetime | None) -> datetime:
    """The time a change of `shipments` (their orders loaded) is recorded at: as told by a
    device that was offline, or now. A shipment's story never goes back: a time told before
    its latest tracking event (or its order's placing) is 400 `before_last_event`, nothing
    changed. Now is taken as no earlier than that either: a phone a few minutes fast (within
    the slack allowed) may have recorded the last event a little ahead.

    Only what people recorded counts (events with an actor: staff on the road, a cancel),
    not what the system wrote at its own time (routing, a day's plan, goods rolled to the
    next day): a plan made while a driver was offline must not refuse the pickup they made
    before it, when their phone uploads it."""
    latest_event = TrackingEvent.objects.filter(
        shipment__in=shipments, actor__isnull=False
    ).aggregate(at=Max("occurred_at"))["at"]
    recorded = [s.order.created_at for s in shipments]
    not_before = max([*recorded, latest_event] if latest_event else recorded, default=None)
    if occurred_at is None:
        now = timezone.now()
        return max(now, not_before) if not_before else now
    if not_before is not None and occurred_at < not_before:
        not_before = timezone.localtime(not_before)
        raise DomainError(
            errors.BEFORE_LAST_EVENT,
            f"That is before what is already recorded of these goods "
            f"({not_before:%Y-%m-%d %H:%M:%S}): record what happened in the order it happened.",
            extra={"field": "occurred_at", "not_before": not_before.isoformat()},
        )
    return occurred_at


def _ready_for(stop: Stop, shipments, outcome: str) -> list[Shipment]:
    """The stop's shipments to handle: those where the stop expects them, waiting at the
    farm for a pickup or at the center for a delivery. To complete it (`done`) every one
    not cancelled must be there (cancelled ones: the order or the farmer's lines were called
    off after the route set out). A stop reported `failed` only puts back those that are
    there: the others (cancelled, or a same-day delivery whose pickup failed) stay as they
    are, so any stop can be closed."""
    expected = BEFORE_PICKUP if stop.kind == StopKind.PICKUP else {ShipmentStatus.AT_CENTER}
    if outcome == "failed":
        return [s for s in shipments if s.status in expected]
    live = [s for s in shipments if s.status != ShipmentStatus.CANCELLED]
    if not live:
        raise ConflictError(
            errors.STOP_CANCELLED, "Everything at this stop was cancelled: there is nothing to do."
        )
    if elsewhere := [s for s in live if s.status not in expected]:
        raise ConflictError(
            errors.SHIPMENT_NOT_READY,
            f"Not ready for this {stop.kind}: "
            + ", ".join(f"shipment {s.pk} is {s.status}" for s in elsewhere)
            + ".",
            extra={"shipments": {s.pk: s.status for s in elsewhere}},
        )
    return live


@transaction.atomic
def _complete(*, stop_id: int, staff: User, data: Completion) -> tuple[Stop, bool]:
    # The orders first, then the stop, then its shipments: the order order_cancel takes
    # them in (it may delete the stop), so the two wait for each other and never deadlock.
    order_ids = Shipment.objects.filter(stops=stop_id).values_list("order_id", flat=True)
    list(
        Order.objects.select_for_update(of=("self",), no_key=True)  # as orders.order_lock
        .filter(pk__in=order_ids)
        .order_by("pk")
    )
    stop = (
        Stop.objects.select_for_update(of=("self",))
        .select_related("route")
        .filter(pk=stop_id)
        .first()
    )
    if stop is None:  # taken off its route while this waited: its goods were cancelled
        raise DomainError("not_found", "No such stop.", status_code=404)
    if stop.status == (StopStatus.DONE if data.outcome == "done" else StopStatus.FAILED):
        return stop, True  # the same completion again (an offline device retrying)
    _in_time(data.occurred_at)
    if stop.status in (StopStatus.DONE, StopStatus.FAILED):
        raise ConflictError(errors.STOP_ALREADY_COMPLETED, f"This stop is already {stop.status}.")
    _on_route_day(stop, data.occurred_at or timezone.now())
    # Locked against guessing the code: it may still be reported failed (that tells nothing
    # about the code), so the goods go back and the route can close.
    if stop.status == StopStatus.LOCKED and data.outcome == "done":
        raise ConflictError(
            errors.STOP_LOCKED, "Too many wrong delivery codes: staff must review this stop."
        )
    shipments = _ready_for(
        stop,
        Shipment.objects.select_for_update(of=("self",))
        .filter(stops=stop)
        .select_related("origin_center", "order")
        .order_by("pk"),
        data.outcome,
    )
    at = _when(shipments, data.occurred_at)
    if data.outcome == "done" and stop.kind == StopKind.DELIVERY:
        if data.not_picked_up:
            # A pickup's: unread here, goods the buyer did not take would be delivered
            raise DomainError(
                errors.NOT_AT_THIS_STOP,
                "A delivery picks nothing up: goods the buyer did not take make the "
                "delivery failed.",
                extra={"field": "not_picked_up"},
            )
        if not data.delivery_code:
            raise DomainError(
                errors.CODE_REQUIRED,
                "The buyer's delivery code is required.",
                extra={"field": "delivery_code"},
            )
        # A delivery stop serves one order (one address, one buyer): its code must match.
        if {s.order.delivery_code for s in shipments} != {data.delivery_code}:
            _count_wrong_code(stop, data.delivery_code)
            return stop, False  # committed: the attempt counts even though the answer is 400
        _complete_delivery(shipments, staff, at, stop)
    elif data.outcome == "done":
        _pick_up(stop, shipments, staff, data, at)
    else:
        _fail(stop, shipments, staff, data, at)
    stop.status = StopStatus.DONE if data.outcome == "done" else StopStatus.FAILED
    stop.occurred_at = at
    stop.save(update_fields=["status", "occurred_at", "weight_kg", "reason"])
    if stop.kind == StopKind.PICKUP and (data.outcome == "failed" or data.not_picked_up):
        _deliveries_follow_failed_pickup(stop, at)
    _route_follows(stop.route_id)
    # Any stop, not only a pickup: a writer that held the route while this one was being
    # recorded (goods cancelled, another pickup weighed) left it as it was.
    _routes_follow([stop.route_id], recorded=stop)
    for order_id in sorted({s.order_id for s in shipments}):
        order_follow_shipments(order_id, staff)
    return stop, True


def _pick_up(stop: Stop, shipments: list[Shipment], staff: User, data: Completion, at: datetime):
    """A pickup done: its goods picked up, weighed together, but those named not handed
    over (`not_picked_up`), which fail first as a failed pickup's do. The locks of both
    are taken at once, as a failed stop takes them: the listings of goods going back on
    sale, then the capacity of every center of the stop's goods, in id order."""
    left = _left_at_farm(stop, shipments, data.not_picked_up)
    if left:
        lock_for_failing(shipments, [s for s in left if gives_up(s)])
        _fail(stop, left, staff, data, at)
    _complete_pickup(stop, [s for s in shipments if s not in left], staff, data, at)


def _left_at_farm(
    stop: Stop, shipments: list[Shipment], not_picked_up: Sequence[int]
) -> list[Shipment]:
    """Of a pickup's shipments (to pick up, locked), those named not handed over: some of
    them, not all (a pickup of nothing is reported failed). Goods cancelled after the route
    set out are the stop's too (its route lists them): named, they are skipped, as they are
    when not named; only goods of no shipment of the stop are refused."""
    if not not_picked_up:
        return []
    at_stop = set(stop.shipments.values_list("pk", flat=True))
    if others := set(not_picked_up) - at_stop:
        raise DomainError(
            errors.NOT_AT_THIS_STOP,
            f"Not picked up at this stop: {', '.join(map(str, sorted(others)))}.",
            extra={"field": "not_picked_up"},
        )
    left = [s for s in shipments if s.pk in not_picked_up]
    if len(left) == len(shipments):
        raise DomainError(
            errors.NOTHING_PICKED_UP,
            "Nothing was picked up here: report the stop failed.",
            extra={"field": "not_picked_up"},
        )
    return left


def _count_wrong_code(stop: Stop, code: str) -> None:
    """A wrong code at a delivery stop counts; the fifth locks it. The last one sent again
    (a retry whose answer was lost) is no second guess."""
    if stop.last_wrong_code and code == stop.last_wrong_code:
        return
    stop.wrong_code_attempts += 1
    stop.last_wrong_code = code
    if stop.wrong_code_attempts >= settings.MAX_DELIVERY_CODE_ATTEMPTS:
        stop.status = StopStatus.LOCKED
    stop.save(update_fields=["wrong_code_attempts", "last_wrong_code", "status"])


NOT_PICKED_UP = "its goods were not picked up"


def _deliveries_follow_failed_pickup(pickup: Stop, at: datetime) -> None:
    """A pickup failed, or was done without some of its goods (`not_picked_up`): those
    goods are not on board. A delivery later on the same route that still brings other
    goods (on board, or to be picked up at a pickup of the route not yet recorded: another
    farm's goods of the order) goes on without them: they leave it, to be delivered on the
    day they now wait for, so it is done with the code for what it brings, and takes the
    cash for that. One (pending) of none but goods still at a farm (that one, or another
    that failed too) has nothing to bring, so it is closed as failed, naming them, and the
    driver is not sent to the buyer empty-handed. The goods themselves were moved by the
    failed pickup; the buyer was told their new day then. Its orders are locked already
    (the same orders as the pickup's goods)."""
    not_on_board = {*BEFORE_PICKUP, *FINAL}
    later = Stop.objects.filter(
        route_id=pickup.route_id,
        kind=StopKind.DELIVERY,
        status__in=(StopStatus.PENDING, StopStatus.LOCKED),
        shipments__stops=pickup,
    )
    deliveries = (
        Stop.objects.select_for_update(of=("self",))
        .filter(pk__in=later.values("pk"))
        .prefetch_related("shipments")
        .order_by("pk")
    )
    to_pick_up = set(
        Stop.shipments.through.objects.filter(
            stop__route_id=pickup.route_id,
            stop__kind=StopKind.PICKUP,
            stop__status=StopStatus.PENDING,
        ).values_list("shipment_id", flat=True)
    )
    left_at_farm = {
        s.pk for s in pickup.shipments.all() if s.status in (*BEFORE_PICKUP, ShipmentStatus.FAILED)
    }
    for delivery in deliveries:
        if any(
            s.status not in not_on_board or (s.status in BEFORE_PICKUP and s.pk in to_pick_up)
            for s in delivery.shipments.all()
        ):
            delivery.shipments.remove(*left_at_farm)
        elif delivery.status == StopStatus.PENDING:
            delivery.status, delivery.occurred_at, delivery.reason = (
                StopStatus.FAILED,
                at,
                NOT_PICKED_UP,
            )
            delivery.save(update_fields=["status", "occurred_at", "reason"])


def _route_follows(route_id: int) -> None:
    """The route follows its stops: on the road from the first one recorded, completed once
    none is left open (pending, or locked for review). Its row is locked, so of two last
    stops recorded at once the second sees the first."""
    route = Route.objects.select_for_update(of=("self",)).get(pk=route_id)
    if route.status == RouteStatus.PLANNED:
        route.status = RouteStatus.STARTED
        route.save(update_fields=["status"])
        _tell_buyers_on_the_way(route)
    open_stops = route.stops.filter(status__in=(StopStatus.PENDING, StopStatus.LOCKED))
    if route.status == RouteStatus.STARTED and not open_stops.exists():
        route.status = RouteStatus.COMPLETED
        route.save(update_fields=["status"])


def _tell_buyers_on_the_way(route: Route) -> None:
    """A route has set out: the buyer of each order delivered on it later on is told once,
    with its first stop ahead (one order's goods from several farms, or refrigerated and
    not, may make several stops at the buyer's)."""
    ahead = route.stops.filter(kind=StopKind.DELIVERY, status=StopStatus.PENDING)
    first_stop: dict[int, tuple[Stop, int, int]] = {}
    for stop in ahead.order_by("sequence").prefetch_related("shipments__order"):
        for order in {shipment.order for shipment in stop.shipments.all()}:
            first_stop.setdefault(order.pk, (stop, order.pk, order.buyer_id))
    notify_out_for_delivery(first_stop.values())


def stop_complete(*, stop_id: int, staff: User, data: Completion) -> Stop:
    """Staff record a stop on the road: a pickup with the weighed kilograms, a delivery with
    the buyer's 6-digit code (a wrong code is 400 `invalid_delivery_code`; the fifth wrong
    code locks the stop for staff review), or a failure with its reason (the shipments go
    back for the next day). Completing a stop twice the same way is harmless, so a device
    that was offline can replay its completions, in the order they happened. Goods
    cancelled after the route set out are skipped (409 `stop_cancelled` when nothing else
    is left), and goods not where the stop expects them are 409 `shipment_not_ready` (a
    delivery before its pickup, or before a transfer is received; a second pickup). A stop
    reported failed is accepted whatever its goods, and puts back only those that are there.
    Either way only from the route's day on, by the completion's time (409
    `before_route_day`), never at a time before what is already recorded of its goods
    (400 `before_last_event`) nor more than OFFLINE_AT_MOST ago (400 `too_long_ago`) or
    CLOCK_SLACK ahead (400 `in_future`); a
    replay of what is recorded is answered as before, whatever time it tells."""
    stop, accepted = _complete(stop_id=stop_id, staff=staff, data=data)
    if not accepted:
        left = max(0, settings.MAX_DELIVERY_CODE_ATTEMPTS - stop.wrong_code_attempts)
        raise DomainError(
            errors.INVALID_DELIVERY_CODE,
            "Wrong delivery code." + ("" if left else " The stop is now locked for staff review."),
            extra={"field": "delivery_code", "attempts_left": left},
        )
    return stop


@transaction.atomic
def shipment_receive(
    *, shipment_id: int, staff: User, occurred_at: datetime | None = None
) -> Shipment:
    """Staff at the destination center record a transfer's arrival: the shipment is then
    ready for local delivery, on a day whose plan will still take it: one due today is
    delivered from tomorrow, as one received after its day (_delivery_day_on_arrival), and
    the buyer is told when that makes the order due later. Receiving it again changes
    nothing, also once the goods moved on (a phone's retry after the driver delivered
    them), whatever time it tells; a time before the shipment's latest event is 400
    `before_last_event`, one told out of time 400 `too_long_ago` or `in_future`
    (_in_time). The order is locked before its shipment, as elsewhere, then the centers'
    capacity: a hand-over or a stop of the same order recorded at the same time waits,
    never deadlocks."""
    order_id = Shipment.objects.filter(pk=shipment_id).values_list("order_id", flat=True).get()
    order = order_lock(order_id)
    shipment = Shipment.objects.select_for_update(of=("self",)).get(pk=shipment_id)
    shipment.order = order
    if shipment.crosses_centers and (
        shipment.status == ShipmentStatus.AT_CENTER or _transfer_received(shipment)
    ):
        return shipment  # received already: a retry, perhaps after the goods moved on
    _in_time(occurred_at)
    if shipment.status != ShipmentStatus.IN_TRANSFER:  # also goods that never cross centers
        raise ConflictError(
            errors.NOT_IN_TRANSFER, f"This shipment is {shipment.status}, not in transfer."
        )
    at = _when([shipment], occurred_at)
    _finish_legs([shipment], (LegKind.TRANSFER,))
    note = "transfer received"
    # Held before the clock is read, as a routing does: a plan reading the delivery day
    # waits for this receipt, or this receipt finds that day's plan made (first_day_to_plan).
    lock_capacity_of([shipment])
    if (day := _delivery_day_on_arrival(shipment)) != shipment.delivery_date:
        due_before = orders_due([shipment.order_id])
        shipment_move_days(shipment, pickup_date=shipment.pickup_date, delivery_date=day)
        orders_tell_later_delivery(due_before=due_before, reason="transfer_late")
        note += f"; delivery moved to {day:%Y-%m-%d}"
    shipment.transfer_late = False
    shipment.save(update_fields=["transfer_late"])
    _track(
        shipment,
        ShipmentStatus.AT_CENTER,
        at,
        staff,
        note,
        center=shipment.destination_center,
    )
    order_follow_shipments(shipment.order_id, staff)  # goods to collect: all there now, perhaps
    return shipment


def _transfer_received(shipment: Shipment) -> bool:
    """Its transfer was received (done), whatever became of the goods since."""
    transfers = shipment.legs.filter(kind=LegKind.TRANSFER).values_list("status", flat=True)
    return bool(transfers) and set(transfers) == {LegStatus.DONE}


def _delivery_day_on_arrival(shipment: Shipment) -> date:
    """The day a transfer received now is delivered. To the buyer's door it needs its day's
    plan, and a plan takes only goods already at the center: the nightly plan of each day
    runs at NIGHTLY_SCHEDULE_HOUR the day before (schedule_tomorrow), so goods due on a day
    whose plan ran while they were on their way (a day gone by, today, or tomorrow once
    tonight's plan ran) go to the first day whose plan is still ahead. Goods handed over at
    the center need no plan: they keep their day, or go to tomorrow once it is gone."""
    now = timezone.localtime()
    due = shipment.delivery_date
    if not shipment.legs.filter(kind=LegKind.DELIVERY).exists():
        return due if due >= now.date() else now.date() + timedelta(days=1)
    return max(due, first_day_to_plan(now))


def shipment_hand_over(
    *, shipment_id: int, staff: User, delivery_code: str, occurred_at: datetime | None = None
) -> Shipment:
    """Staff at the buyer's service center hand a pickup-at-center order's goods to the
    buyer, who shows the order's 6-digit code: the shipment is delivered and the order
    follows (delivered, cash collected). Only goods waiting at the center; handing them
    over again changes nothing, whatever time it tells; a time before the shipment's
    latest event is 400 `before_last_event`, one told out of time 400 `too_long_ago` or
    `in_future` (_in_time). The order is locked before its shipment, as elsewhere.

    The code is checked last, once the goods are here to hand over (or were handed over:
    a retry too must show it): checked first, a wrong code's 400 against a right one's 409
    would tell the code of an order delivered home, or not yet here, for free. Wrong codes
    count per order, as a delivery stop's do (the last one sent again, a retry, counts
    once): the fifth (MAX_DELIVERY_CODE_ATTEMPTS) makes
    the hand-over 409 `hand_over_locked` until staff review it (order_hand_over_unlock)."""
    shipment, order, accepted = _hand_over(
        shipment_id=shipment_id, staff=staff, delivery_code=delivery_code, occurred_at=occurred_at
    )
    if not accepted:
        left = max(0, settings.MAX_DELIVERY_CODE_ATTEMPTS - order.hand_over_wrong_codes)
        raise DomainError(
            errors.INVALID_DELIVERY_CODE,
            "That is not this order's code."
            + ("" if left else " Its hand-over is now locked for staff review."),
            extra={"field": "delivery_code", "attempts_left": left},
        )
    return shipment


@transaction.atomic
def _hand_over(
    *, shipment_id: int, staff: User, delivery_code: str, occurred_at: datetime | None
) -> tuple[Shipment, Order, bool]:
    """shipment_hand_over's transaction: False for a wrong code, counted and committed."""
    order_id = Shipment.objects.filter(pk=shipment_id).values_list("order_id", flat=True).get()
    order = order_lock(order_id)
    shipment = Shipment.objects.select_for_update(of=("self",)).get(pk=shipment_id)
    locked = order.hand_over_wrong_codes >= settings.MAX_DELIVERY_CODE_ATTEMPTS
    if (
        order.delivery_method == DeliveryMethod.PICKUP
        and shipment.status == ShipmentStatus.DELIVERED
        and (delivery_code == order.delivery_code or locked)
    ):
        # Handed over already: a replay is answered as recorded, whatever its time, and
        # once the hand-over is locked whatever its code (as a stop done is), which tells
        # nothing of it: the goods were handed over before the lock.
        return shipment, order, True
    _in_time(occurred_at)
    if order.delivery_method != DeliveryMethod.PICKUP:
        raise ConflictError(
            errors.NOT_FOR_HAND_OVER, "This order is delivered to the buyer, not collected."
        )
    if shipment.status not in (ShipmentStatus.AT_CENTER, ShipmentStatus.DELIVERED):
        raise ConflictError(
            errors.SHIPMENT_NOT_READY,
            f"This shipment is {shipment.status}, not waiting at the center.",
            extra={"shipments": {shipment.pk: shipment.status}},
        )
    if locked:
        raise ConflictError(
            errors.HAND_OVER_LOCKED, "Too many wrong codes: staff must review this hand-over."
        )
    if delivery_code != order.delivery_code:
        if delivery_code != order.hand_over_last_wrong_code:  # the same one again: a retry
            order.hand_over_wrong_codes += 1
            order.hand_over_last_wrong_code = delivery_code
            order.save(update_fields=["hand_over_wrong_codes", "hand_over_last_wrong_code"])
        return shipment, order, False  # committed: the attempt counts though the answer is 400
    shipment.order = order
    _complete_delivery([shipment], staff, _when([shipment], occurred_at))
    order_follow_shipments(order.pk, staff)
    return shipment, order, True


def order_hand_over_unlock(*, order_id: int) -> bool:
    """After staff reviewed an order whose hand-over too many wrong codes locked (with the
    buyer, in person or by phone): its goods can be handed over again, its count back to 0.
    False when it was not locked (nothing changes)."""
    locked = Order.objects.filter(
        pk=order_id, hand_over_wrong_codes__gte=settings.MAX_DELIVERY_CODE_ATTEMPTS
    )
    return bool(locked.update(hand_over_wrong_codes=0, hand_over_last_wrong_code=""))


@transaction.atomic
def stop_unlock(*, stop_id: int) -> bool:
    """After staff reviewed a delivery stop locked by too many wrong codes (with the buyer,
    by phone): it is open again, its count of wrong codes back to 0. False when it was not
    locked (nothing changes)."""
    return bool(
        Stop.objects.filter(pk=stop_id, status=StopStatus.LOCKED).update(
            status=StopStatus.PENDING, wrong_code_attempts=0, last_wrong_code=""
        )
    )


def _open_shipments(order: Order, farmer_id: int | None = None) -> list[Shipment]:
    shipments = Shipment.objects.select_for_update(of=("self",)).filter(order=order)
    if farmer_id is not None:
        shipments = shipments.filter(farmer_id=farmer_id)
    return list(shipments.exclude(status__in=FINAL).order_by("pk"))


def shipments_cancel_for_order(
    *, order: Order, actor: User | None, farmer_id: int | None = None, note="order cancelled"
) -> int:
    """Called inside order_cancel (and for one farmer's shipment when their last line in
    the order is rejected): the shipments are cancelled, their booked capacity released and
    their stops taken off routes not yet on the road (a route left with none goes too)."""
    shipments = _open_shipments(order, farmer_id)
    # Locks in the order a stop's completion takes them: the capacity of their centers
    # (their bookings go), then the routes their stops are on, in key order, before
    # reading whether those set out: a stop recorded on one at this moment then either sees
    # the cancelled stop gone (and can complete the route) or has set the route out, and
    # the stop stays on it.
    lock_capacity_of(shipments)
    routes = lock_routes_of(shipments)
    shipments_rebook((s, Decimal(0)) for s in shipments)  # their days freed of what they hold
    ShipmentLeg.objects.filter(shipment__in=shipments, status=LegStatus.PENDING).update(
        status=LegStatus.CANCELLED
    )
    now = timezone.now()
    for shipment in shipments:
        shipment.status = ShipmentStatus.CANCELLED
    _track_all(shipments, [_event(s, s.status, now, actor, note) for s in shipments])
    shipments_leave_planned_routes(shipments, routes)  # loads without the goods cancelled
    return len(shipments)


def lock_routes_of(shipments: list[Shipment]) -> list[int]:
    """The routes the shipments (locked, their centers' capacity locked) have stops on,
    locked in key order, before reading whether those set out; their ids."""
    on_routes = Stop.objects.filter(shipments__in=shipments).values("route_id")
    return list(
        Route.objects.select_for_update(of=("self",))
        .filter(pk__in=on_routes)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def shipments_leave_planned_routes(shipments: list[Shipment], route_ids: list[int]) -> None:
    """The shipments (locked, the routes they are on locked: lock_routes_of) leave their
    stops on routes not yet on the road (_stops_drop); a planned route left with no stop
    goes (it has nothing to drive: it would stay planned for good), and the others follow
    the goods left on them (_routes_follow): a cancel, goods stranded on a day gone by
    (stranded.py). On a route already on the road the goods keep their stops (the driver
    skips them), and only its loads follow."""
    _stops_drop(shipments)
    Route.objects.filter(pk__in=route_ids, status=RouteStatus.PLANNED, stops__isnull=True).delete()
    _routes_follow(route_ids)


def _stops_drop(shipments: list[Shipment]) -> None:
    """The shipments (their routes locked) leave the stops they have on routes not yet on
    the road, and a stop left with none goes: a statement for each, however many
    shipments and stops (an order of many farms' goods)."""
    served = Stop.shipments.through.objects.filter(
        shipment__in=shipments,
        stop__route__status=RouteStatus.PLANNED,
        stop__status=StopStatus.PENDING,
    )
    stop_ids = set(served.values_list("stop_id", flat=True))
    if not stop_ids:
        return
    Stop.shipments.through.objects.filter(stop_id__in=stop_ids, shipment__in=shipments).delete()
    Stop.objects.filter(pk__in=stop_ids, shipments__isnull=True).delete()


def _routes_follow(route_ids: list[int], *, recorded: Stop | None = None) -> None:
    """These routes (locked) follow the goods left on them (goods cancelled, lighter, or
    weighed at a pickup of theirs, or not picked up): each stop not yet recorded (and the
    stop being `recorded`, by whoever holds it) carries what is on board after it
    (routing.loads_on_board): what leaves the center for delivery, each pickup adding its
    goods and each delivery taking them off. A route's stops are numbered 1, 2, … again in
    visiting order once some went, and a route still planned is measured over them as the
    plan measured it (schedule.routes_measure).

    A stop being recorded at this moment (its row locked, waiting for its route) is left as
    it is: waiting for it while holding the routes would deadlock with its completion, which
    takes its stop before its route. So every completion, once it holds its route, does this
    for its route: the last writer to hold the route sees every stop of it free and brings
    them all along, numbers included, whichever came first (a cancel, another pickup
    weighed, another stop recorded). All the routes' stops are read, locked, measured and
    loaded together: as many statements for the routes of an order of many farms' goods as
    for one."""
    routes = list(
        Route.objects.filter(pk__in=route_ids)
        .select_related("service_center", "vehicle")
        .order_by("pk")
    )
    if not routes:
        return
    stops_of: dict[int, list[Stop]] = {route.pk: [] for route in routes}
    for stop in (
        Stop.objects.filter(route__in=routes)
        .order_by("route_id", "sequence")
        .prefetch_related("shipments")
    ):
        stops_of[stop.route_id].append(stop)
    free = set(
        Stop.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(route__in=routes)
        .order_by("route_id", "sequence")
        .values_list("pk", flat=True)
    )
    # a stop recorded keeps the load it had then, but the one being recorded now
    to_load = {
        stop.pk
        for stops in stops_of.values()
        for stop in stops
        if stop.pk in free
        and (stop.status in (StopStatus.PENDING, StopStatus.LOCKED) or stop == recorded)
    }
    loaded = []
    for route in routes:
        stops = stops_of[route.pk]
        if all(stop.pk in free for stop in stops):
            _renumber(stops)
        loaded += _loads_follow(stops, to_load)
    # as every plan's stops have ETAs (one made by hand has none)
    routes_measure(
        measured=[
            (r, stops_of[r.pk])
            for r in routes
            if r.status == RouteStatus.PLANNED and all(s.eta for s in stops_of[r.pk])
        ]
    )
    Stop.objects.bulk_update(loaded, ["load_kg"])


def _renumber(stops: list[Stop]) -> None:
    """A route's stops (locked, in visiting order) numbered 1, 2, …: one UPDATE per stop
    whose number changes, from the first on, so that none takes a number another one
    still has (the unique constraint is checked row by row, not at the end)."""
    for sequence, stop in enumerate(stops, start=1):
        if stop.sequence != sequence:
            stop.sequence = sequence
            stop.save(update_fields=["sequence"])


def _loads_follow(stops: list[Stop], free: set[int]) -> list[Stop]:
    """The loads of a route's `stops` (all of them, in visiting order, their shipments
    loaded) follow the goods they still serve, on the stops of `free` (locked): neither
    goods cancelled nor goods whose pickup on the route failed are on board. Returns those
    whose load changed, to be saved."""
    not_loaded = {
        s.pk
        for stop in stops
        if stop.kind == StopKind.PICKUP and stop.status in (StopStatus.DONE, StopStatus.FAILED)
        for s in stop.shipments.all()
        # a pickup done leaves behind the goods it names not picked up (never weighed)
        if stop.status == StopStatus.FAILED or s.picked_up_weight_kg is None
    }

    def carried(stop: Stop) -> list[Shipment]:
        return [
            s
            for s in stop.shipments.all()
            if s.status != ShipmentStatus.CANCELLED and s.pk not in not_loaded
        ]

    loads = loads_on_board((stop.kind == StopKind.PICKUP, carried(stop)) for stop in stops)
    changed = []
    for stop, load in zip(stops, loads, strict=True):
        if stop.pk in free and stop.load_kg != load:
            stop.load_kg = load
            changed.append(stop)
    return changed


def shipments_after_line_rejected(*, order: Order, line: OrderLine, actor: User) -> None:
    """Called inside order_line_reject while the order goes on with other lines: the
    farmer's shipment is cancelled when that was their last line in the order, and is
    otherwise lighter by the line, its booked days with it; an order whose only goods on a
    route were that farmer's waits for a plan again (confirmed). Before the first pickup
    only (an order on the road can no longer be changed)."""
    others = order.lines.filter(farmer_id=line.farmer_id, status=LineStatus.ACTIVE)
    if not others.exists():
        shipments_cancel_for_order(
            order=order, actor=actor, farmer_id=line.farmer_id, note="the farmer's lines rejected"
        )
        order_waiting_again(order)
        return
    # What the lines left weigh, as routing weighed them: the bookings follow the difference.
    left = to_grams(sum((x.weight_kg for x in others), Decimal(0)))
    lighter = _open_shipments(order, line.farmer_id)
    # every center's capacity lock at once, in id order, as routing takes them
    shipments_rebook((s, min(s.held_kg, left)) for s in lighter)
    for shipment in lighter:
        shipment.weight_kg = min(shipment.weight_kg, left)
        # the line that spoiled, or the one needing cold, may be the one turned down
        shipment.spoils_before_arrival = spoils_before(shipment, shipment.delivery_date)
        shipment.needs_refrigeration = any(x.needs_refrigeration for x in others)
        shipment.save(
            update_fields=[
                "weight_kg",
                "spoils_before_arrival",
                "needs_refrigeration",
                "updated_at",
            ]
        )
    on_routes = Stop.objects.filter(shipments__in=lighter).values("route_id")
    _routes_follow(
        list(
            Route.objects.select_for_update(of=("self",))
            .filter(pk__in=on_routes)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    )


def shipments_flag_late_transfers(*, today=None) -> int:
    """Transfers not received a day after their date are flagged late (idempotent)."""
    today = today or timezone.localdate()
    late = ShipmentLeg.objects.filter(
        kind=LegKind.TRANSFER, status=LegStatus.PENDING, date__lt=today - timedelta(days=1)
    ).values("shipment_id")
    return Shipment.objects.filter(
        pk__in=late, status=ShipmentStatus.IN_TRANSFER, transfer_late=False
    ).update(transfer_late=True)
