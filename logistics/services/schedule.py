"""A center's day as vehicle routes: gather the day's pickups and deliveries, solve them
with the routing engine (outside any transaction), and store the routes and stops. A day
of more than SCHEDULE_ZONE_THRESHOLD stops is solved as geographic zones instead, one task
per zone (schedule_zones.py), and stored the same way.

Re-running a day replaces its routes not yet on the road and keeps those on the road; the
shipments of a started route are not planned again, so no stop is ever doubled. What does
not fit is listed with its reason and rolled to the next day: a failed try, as a failed stop
is, and the MAX_STOP_ATTEMPTS-th fails the goods for good (failures.py).
"""

import logging
import time as clock
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from logistics.models import (
    LegKind,
    Route,
    RouteStatus,
    ScheduleRun,
    ScheduleRunStatus,
    ServiceCenter,
    Shipment,
    ShipmentStatus,
    Stop,
    StopKind,
    StopStatus,
    TrackingEvent,
    Vehicle,
)
from logistics.routing.matrix import GreatCircleMatrix
from logistics.routing.problem import (
    Job,
    JobKind,
    Location,
    PickupDelivery,
    Plan,
    PlannedRoute,
    PlannedStop,
    Problem,
    Skill,
    StepKind,
    TimeWindow,
    UnassignedReason,
    VehicleSpec,
)
from logistics.routing.vroom_solver import solve
from logistics.routing.zones import stops_of
from logistics.services.failures import (
    gives_up,
    lock_for_failing,
    order_follow_shipments,
    shipments_fail_for_good,
)
from logistics.services.routing import (
    first_to_spoil,
    loads_on_board,
    lock_centers_capacity,
    next_days,
    orders_due,
    orders_tell_later_delivery,
    orders_waiting_again,
    shipments_move_days,
)
from marketplace.accounts.models import User
from marketplace.exceptions import violated_constraint
from orders import notifications
from orders.models import Order, OrderStatus
from orders.services import orders_transition

logger = logging.getLogger(__name__)

GRAMS_PER_KG = 1000
PLANNABLE = (ShipmentStatus.PENDING, ShipmentStatus.SCHEDULED)
# VROOM stops and answers with its best plan so far after this long, counted over every
# solve of a day planned in one piece (a second one when its stops are solved again apart:
# _solve). A day of 500 stops is solved in ~26 s at the level chosen for its size
# (vroom_solver.EXPLORATION_BY_STOPS), but solved again a shipment a stop it has more
# stops, as many as its shipments: the two stay inside the task's soft time limit (240 s),
# as a zone's do (schedule_zones.ZONE_ENGINE_TIMEOUT_S).
DAY_ENGINE_TIMEOUT_S = 150


def _seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def _grams(kg: Decimal) -> int:
    return int((kg * GRAMS_PER_KG).to_integral_value())


def _time_at_a_place() -> dict[str, int]:
    """A stop's time, as a job's: STOP_SERVICE_SECONDS when the vehicle comes to its place
    (the engine's setup), and nothing more per job. Jobs the route serves one after another
    as one stop (_one_stop_per_visit: pickups at one farm, deliveries of one order at its
    buyer; the same `visit` to the engine) pay it once, as the stop does: a farm's shipments
    solved a stop each (_left_out_apart), or its goods for several same-day buyers (a pair
    each), take one service there, as they would as one stop of several shipments."""
    return {"setup_s": settings.STOP_SERVICE_SECONDS, "service_s": 0}


@dataclass
class _Day:
    """What a center has to do on a day, with the shipments behind every job id."""

    problem: Problem
    job_shipments: dict[int, list[Shipment]] = field(default_factory=dict)
    pair_shipments: dict[int, list[Shipment]] = field(default_factory=dict)


# --------------------------------------------------------------------------- requesting


def schedule_nightly_request(*, center: ServiceCenter, day: date) -> ScheduleRun | None:
    """The nightly beat asks for a center's day to be planned, once: its message delivered
    again (a worker lost before acknowledging it, whose runs had committed and finished)
    finds the day's nightly run and asks for none (None), so the day's routes are not
    written again, nor its farmers told their pickup times twice. The run it joins, if
    staff asked for one already, counts as the nightly one; one already running is asked
    again (`asked_again`: a run follows it once stored), as it may have read the day before
    the nightly hour, when routing still booked goods onto it, and one found done meanwhile
    is not joined. A nightly run that failed is not asked for again by the beat (the
    sweeper re-sends runs queued or running only): staff plan the day again, from the app
    or the admin's run list."""
    if ScheduleRun.objects.filter(service_center=center, date=day, nightly=True).exists():
        return None
    try:
        with transaction.atomic():
            return schedule_run_request(
                center=center, day=day, requested_by=None, nightly=True, again_after_running=True
            )
    except IntegrityError as error:  # a twin of this message got there first
        if violated_constraint(error) != _ONE_NIGHTLY_RUN:
            raise
        return None


def schedule_run_request(
    *,
    center: ServiceCenter,
    day: date,
    requested_by: User | None,
    enqueue: bool = True,
    nightly: bool = False,
    again_after_running: bool = False,
) -> ScheduleRun:
    """Staff (or the nightly beat) ask for a day to be planned. A request while one for the
    same center and day is queued or running joins it instead of starting a second; if that
    one finished between the two (an empty day takes milliseconds), this one tries anew:
    each collision means another request's run was written, so the loop always moves on.
    With enqueue=False a new run gets no task: its caller carries it out (simulate_day).

    A run already running read the day before the request: with again_after_running (staff
    asking, who want the day as it is now) it is marked `asked_again`, and a new run follows
    it once it is done (_store). Marking it waits for a run being stored, then finds it done
    and starts the next. Requests made under other locks (a vehicle or the center changed)
    do not: the storing checks those changes itself, and waits for those locks."""
    active = ScheduleRun.objects.filter(
        service_center=center,
        date=day,
        status__in=(ScheduleRunStatus.QUEUED, ScheduleRunStatus.RUNNING),
    )
    for _attempt in range(_REQUEST_ATTEMPTS):
        try:
            with transaction.atomic():
                run = ScheduleRun.objects.create(
                    service_center=center, date=day, requested_by=requested_by, nightly=nightly
                )
                if enqueue:
                    # robust: the run is answered as queued; the stale-runs sweeper
                    # sends its message if this one is lost (a lambda: Django's log of a
                    # robust callback's failure reads its __qualname__, which no partial has)
                    transaction.on_commit(lambda run_id=run.pk: _enqueue(run_id), robust=True)
                return run
        except IntegrityError as error:
            if violated_constraint(error) != _ONE_ACTIVE_RUN:
                raise
        if (joined := active.first()) is not None:
            if again_after_running and joined.status == ScheduleRunStatus.RUNNING:
                running = ScheduleRun.objects.filter(pk=joined.pk, status=ScheduleRunStatus.RUNNING)
                if not running.update(asked_again=True):
                    continue  # done meanwhile: the next run starts from the day as it is now
                joined.asked_again = True
            if nightly and not joined.nightly:  # not before: a run done meanwhile is not it
                ScheduleRun.objects.filter(pk=joined.pk).update(nightly=True)
                joined.nightly = True
            return joined
    raise RuntimeError(f"no run for {day} after {_REQUEST_ATTEMPTS} attempts")


def schedule_days_again(*, center: ServiceCenter, routes: QuerySet[Route]) -> list[ScheduleRun]:
    """The days from today on when some of `routes` (the center's) are planned and not yet
    on the road are planned again, a run each (sent after the commit, requested by nobody):
    after a change of what their plan relied on (a vehicle, the center's hours or roads)."""
    days = (
        routes.filter(status=RouteStatus.PLANNED, date__gte=timezone.localdate())
        .order_by("date")
        .values_list("date", flat=True)
        .distinct()
    )
    return [schedule_run_request(center=center, day=day, requested_by=None) for day in days]


# ScheduleRun's partial unique constraints
_ONE_ACTIVE_RUN = "schedulerun_one_active_per_day"
_ONE_NIGHTLY_RUN = "schedulerun_one_nightly_per_day"
_REQUEST_ATTEMPTS = 100


def schedule_runs_redrive(*, now: datetime | None = None) -> list[int]:
    """The sweeper's half of reliability: runs queued, or running, for longer than
    SCHEDULE_RUN_STALE_MINUTES lost their message (a Redis restart) or their worker (a
    kill), so their task is sent again; it carries on from where the run is (a split run
    only re-sends its unsolved zones). Each run is re-sent once per stale period, not on
    every sweep: a queued one from when it was last sent (workers far behind would otherwise
    get one more copy each sweep), a running one from when it restarted. Each message is
    sent on its own once the sweep commits: one the broker refuses holds back no other.
    Returns the ids sent again."""
    now = now or timezone.now()
    stale = now - timedelta(minutes=settings.SCHEDULE_RUN_STALE_MINUTES)
    with transaction.atomic():
        runs = list(
            ScheduleRun.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=ScheduleRunStatus.QUEUED)
                & Q(Q(resent_at__isnull=True, created_at__lte=stale) | Q(resent_at__lte=stale))
                | Q(status=ScheduleRunStatus.RUNNING, started_at__lte=stale)
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        ScheduleRun.objects.filter(pk__in=runs).update(resent_at=now)
        ScheduleRun.objects.filter(pk__in=runs, status=ScheduleRunStatus.RUNNING).update(
            started_at=now
        )
        for run_id in runs:
            # robust: a message the broker refuses is logged and the next one still sent;
            # that run is sent again a stale period on, as a lost one is
            transaction.on_commit(lambda run_id=run_id: _enqueue(run_id), robust=True)
    return runs


def _enqueue(run_id: int) -> None:
    from logistics.tasks import schedule_center_day  # noqa: PLC0415 - tasks import services

    schedule_center_day.delay(run_id)


# --------------------------------------------------------------------------- gathering


def _started_shipment_ids(center: ServiceCenter, day: date) -> QuerySet[Shipment]:
    """A subquery: the day's shipments on a route already on the road."""
    return Shipment.objects.filter(
        stops__route__service_center=center,
        stops__route__date=day,
        stops__route__status__in=(RouteStatus.STARTED, RouteStatus.COMPLETED),
    ).values("pk")


def _priority(shipments: list[Shipment], spoil_days: dict[tuple[int, int], date]) -> int:
    """What the engine serves first when the day cannot take everything: perishables
    outrank the rest, and goods running late gain 10 a day. Perishables are refrigerated
    goods and goods that keep no longer than their delivery day (`spoil_days`, by order and
    farmer: first_to_spoil): left out, they would reach their buyer spoiled, a day later at
    least, while goods that keep lose nothing by waiting (those spoiling before arrival
    already are among them: every day more only makes it worse).
    Goods are late by the days their delivery has slipped past the date promised to the
    buyer: every day they missed (a pickup or delivery that did not fit its day, a failed
    stop, a transfer that came late) moved their delivery on, so this counts a pickup that
    missed its day as much as a delivery past its promise. Days in normal transit between
    the pickup and the promised delivery are no delay."""
    urgent = any(
        s.needs_refrigeration or _spoils_by(spoil_days.get((s.order_id, s.farmer_id)), s)
        for s in shipments
    )
    late = max((s.delivery_date - s.promised_date).days for s in shipments)
    return min(100, (60 if urgent else 0) + 10 * max(0, late))


def _spoils_by(first_spoiled: date | None, shipment: Shipment) -> bool:
    """Whether the goods are past their shelf life if their delivery moves a day on."""
    return first_spoiled is not None and first_spoiled <= shipment.delivery_date


def _skills(shipments: list[Shipment]) -> frozenset[Skill]:
    return (
        frozenset({Skill.REFRIGERATED})
        if any(s.needs_refrigeration for s in shipments)
        else frozenset()
    )


def _day_shipments(center: ServiceCenter, day: date) -> QuerySet[Shipment]:
    """What the center's vehicles handle on the day: pickups at farms, deliveries from the
    center; not what is on a route already on the road."""
    pickups_q = Q(origin_center=center, pickup_date=day, status__in=PLANNABLE)
    deliveries_q = Q(destination_center=center, delivery_date=day, status=ShipmentStatus.AT_CENTER)
    return (
        Shipment.objects.filter(pickups_q | deliveries_q)
        .exclude(pk__in=_started_shipment_ids(center, day))
        .order_by("pk")
    )


def _day_shipments_locked(center: ServiceCenter, day: date) -> list[Shipment]:
    """The day's shipments as a plan takes them, read holding the center's capacity lock
    (lock_centers_capacity), in a transaction of its own: only for the read, and waiting for
    no other lock while it holds this one. Whoever puts goods on a day of the center holds
    that lock from before it reads the clock (first_day_to_plan) until it commits (a
    routing, a failed stop, a transfer received): one doing so now is waited for and its
    goods read; one taking the lock after this read finds tomorrow's nightly plan made, and
    uses the day after."""
    with transaction.atomic():
        lock_centers_capacity([center.pk])
        return list(_day_shipments(center, day).select_related("order").prefetch_related("legs"))


def _day_vehicles(center: ServiceCenter, day: date) -> QuerySet[Vehicle]:
    """The center's active vehicles not already on the road that day. (One subquery: an
    exclude across `routes` would test the day and the status on different routes, and a
    van with a route planned today and one driven yesterday would drop out.)"""
    on_the_road = Route.objects.filter(
        date=day, status__in=(RouteStatus.STARTED, RouteStatus.COMPLETED), vehicle__isnull=False
    ).values("vehicle_id")
    return (
        Vehicle.objects.filter(service_center=center, active=True)
        .exclude(pk__in=on_the_road)
        .order_by("pk")
    )


def _opening_hours(center: ServiceCenter) -> TimeWindow:
    return TimeWindow(_seconds(center.opens_at), _seconds(center.closes_at))


def _spec(vehicle: Vehicle, depot: Location, hours: TimeWindow) -> VehicleSpec | None:
    """The vehicle as the routing engine sees it. It leaves the center and comes back while
    the center is open (`hours`), within its own shift: the engine gets the two intersected.
    None when they do not meet: the vehicle has no time to work that day."""
    start = max(_seconds(vehicle.shift_start), hours.start)
    end = min(_seconds(vehicle.shift_end), hours.end)
    if start >= end:
        return None
    return VehicleSpec(
        id=vehicle.pk,
        capacity_g=_grams(vehicle.capacity_kg),
        shift=TimeWindow(start, end),
        start=depot,
        end=depot,
        skills=frozenset({Skill.REFRIGERATED}) if vehicle.refrigerated else frozenset(),
        cost_per_km=float(vehicle.cost_per_km),
    )


def _from_now(spec: VehicleSpec, day: date) -> VehicleSpec | None:
    """A vehicle planned on its day itself works from now on: the part of its shift gone by
    cannot be driven (None when all of it has)."""
    if day != timezone.localdate():
        return spec
    moment = timezone.localtime()
    start = max(spec.shift.start, _seconds(moment.time()) + (1 if moment.microsecond else 0))
    if start >= spec.shift.end:
        return None
    return replace(spec, shift=TimeWindow(start, spec.shift.end))


def _same_for_the_plan(solved: VehicleSpec, now: VehicleSpec | None) -> bool:
    """Whether a vehicle as it is now still takes what was planned onto it as it was:
    its price per km is no part of that (fleet.PLANNED_ON), only of the route's cost, and a
    shift solved from later on (a day planned on the day: _from_now) still holds if the
    vehicle's shift begins no later than that."""
    return (
        now is not None
        and now.shift.start <= solved.shift.start
        and now.shift.end == solved.shift.end
        and replace(solved, cost_per_km=0, shift=now.shift) == replace(now, cost_per_km=0)
    )


def _loads(group: list[Shipment], vehicles: tuple[VehicleSpec, ...]) -> list[list[Shipment]]:
    """Shipments at one place as stops the day's vehicles can carry (each by its load_kg:
    as weighed at the farm once picked up): more than the largest vehicle able to take them
    holds is split, heaviest first, into loads that each fit (one shipment too heavy for
    every vehicle stays a load of its own, reported too heavy), so two orders that each fit
    are not refused together."""
    skills = _skills(group)
    capacity = max((v.capacity_g for v in vehicles if skills <= v.skills), default=0)
    if not capacity:  # no vehicle can take any of it: one stop, reported unassigned
        return [group]
    loads: list[tuple[int, list[Shipment]]] = []
    for shipment in sorted(group, key=lambda s: (-s.load_kg, s.pk)):
        grams = _grams(shipment.load_kg)
        room = next((n for n, (g, _) in enumerate(loads) if g + grams <= capacity), None)
        if room is None:
            loads.append((grams, [shipment]))
        else:
            loads[room] = (loads[room][0] + grams, [*loads[room][1], shipment])
    return [sorted(load, key=lambda s: s.pk) for _, load in loads]


def _gather(center: ServiceCenter, day: date) -> _Day:
    """The day's farm pickups (grouped by farm), deliveries (grouped by order: one code per
    stop) and same-day farm-to-buyer pairs inside this center; goods needing a refrigerated
    vehicle apart from the rest, goods of a higher priority apart from those of a lower one
    (a farm's perishables are not left out with the goods that keep beside them, too heavy
    together: served one after another, the two are one stop again, _one_stop_per_visit),
    and no stop more than a vehicle can carry (_loads). The
    vehicles are those with time to work while the center is open (_spec), from now on
    when the day is today (_from_now)."""
    depot, hours = Location(float(center.lat), float(center.lng)), _opening_hours(center)
    specs = (_spec(v, depot, hours) for v in _day_vehicles(center, day))
    working = (_from_now(spec, day) for spec in specs if spec is not None)
    vehicles = tuple(spec for spec in working if spec is not None)
    shipments = _day_shipments_locked(center, day)
    spoil_days = first_to_spoil(shipments)
    home_delivery = {
        s.pk for s in shipments if any(leg.kind == LegKind.DELIVERY for leg in s.legs.all())
    }
    pickup_window = TimeWindow(
        _seconds(settings.PICKUP_WINDOW_START), _seconds(settings.PICKUP_WINDOW_END)
    )
    delivery_window = hours
    farms: dict[tuple, list[Shipment]] = defaultdict(list)
    drops: dict[int, list[Shipment]] = defaultdict(list)
    pairs: dict[tuple, list[Shipment]] = defaultdict(list)
    for s in shipments:
        same_day_pair = (
            s.status in PLANNABLE
            and not s.crosses_centers
            and s.delivery_date == day
            and s.pk in home_delivery
        )
        cold, rank = s.needs_refrigeration, _priority([s], spoil_days)
        if same_day_pair:
            pairs[(s.pickup_lat, s.pickup_lng, s.order_id, cold)].append(s)
        elif s.status in PLANNABLE:
            farms[(s.pickup_lat, s.pickup_lng, cold, rank)].append(s)
        elif s.pk in home_delivery:
            drops[(s.order_id, cold, rank)].append(s)
        # a hand-over at the center needs no vehicle
    result = _Day(problem=Problem(depot=depot, vehicles=()))
    jobs, pair_jobs, next_id = [], [], 1
    farm_loads = [
        (lat, lng, load) for (lat, lng, _, _), at in farms.items() for load in _loads(at, vehicles)
    ]
    for lat, lng, group in farm_loads:
        jobs.append(
            Job(
                id=next_id,
                kind=JobKind.PICKUP,
                location=Location(float(lat), float(lng)),
                amount_g=sum(_grams(s.load_kg) for s in group),
                **_time_at_a_place(),
                windows=(pickup_window,),
                priority=_priority(group, spoil_days),
                skills=_skills(group),
            )
        )
        result.job_shipments[next_id] = group
        next_id += 1
    for group in (load for to in drops.values() for load in _loads(to, vehicles)):
        first = group[0]
        jobs.append(
            Job(
                id=next_id,
                kind=JobKind.DELIVERY,
                location=Location(float(first.delivery_lat), float(first.delivery_lng)),
                amount_g=sum(_grams(s.load_kg) for s in group),
                **_time_at_a_place(),
                visit=first.order_id,  # a delivery stop serves one order (_same_visit)
                windows=(delivery_window,),
                priority=_priority(group, spoil_days),
                skills=_skills(group),
            )
        )
        result.job_shipments[next_id] = group
        next_id += 1
    pair_loads = [
        (lat, lng, load) for (lat, lng, _, _), at in pairs.items() for load in _loads(at, vehicles)
    ]
    for lat, lng, group in pair_loads:
        first, amount = group[0], sum(_grams(s.load_kg) for s in group)
        pickup = Job(
            id=next_id,
            kind=JobKind.PICKUP,
            location=Location(float(lat), float(lng)),
            amount_g=amount,
            **_time_at_a_place(),
            windows=(pickup_window,),
        )
        drop = Job(
            id=next_id,
            kind=JobKind.DELIVERY,
            location=Location(float(first.delivery_lat), float(first.delivery_lng)),
            amount_g=amount,
            **_time_at_a_place(),
            visit=first.order_id,
            windows=(delivery_window,),
        )
        pair_jobs.append(
            PickupDelivery(
                id=next_id,
                pickup=pickup,
                delivery=drop,
                amount_g=amount,
                priority=_priority(group, spoil_days),
                skills=_skills(group),
            )
        )
        result.pair_shipments[next_id] = group
        next_id += 1
    result.problem = Problem(
        depot=result.problem.depot, vehicles=vehicles, jobs=tuple(jobs), pairs=tuple(pair_jobs)
    )
    return result


def _solve(
    day_work: _Day, solver: Callable[[Problem], Plan], *, first_new_id: int | None = None
) -> tuple[_Day, Plan]:
    """The day's plan, and the day as it was solved. A stop of several shipments (a farm's
    goods for several buyers, an order's of several farms) is as heavy as they are together,
    up to the largest vehicle able to take them (_loads): when the plan leaves such a stop
    out for want of room while a vehicle gets no route, that vehicle may be too small for
    the stop but not for its shipments, so the day is solved again with each shipment of
    every such stop a stop of its own (_left_out_apart, numbered from `first_new_id`: a
    zone's are apart from every other zone's), and that plan is kept if it serves more."""
    plan = solver(day_work.problem)
    apart = _left_out_apart(day_work, plan, first_new_id)
    if apart is None:
        return day_work, plan
    again = solver(apart.problem)
    return (apart, again) if _worth(apart, again) > _worth(day_work, plan) else (day_work, plan)


def _engine_within(seconds: float, solver: Callable[..., Plan]) -> Callable[[Problem], Plan]:
    """`solver` (taking `timeout_s`) with every solve it makes from now on told to stop by
    `seconds` from now, when the engine answers with its best plan so far: a day solved
    again (_solve) has what its first solve left."""
    return _engine_by(clock.monotonic() + seconds, solver)


def _engine_by(deadline: float, solver: Callable[..., Plan]) -> Callable[[Problem], Plan]:
    """`solver` with every solve told to stop by `deadline` (time.monotonic())."""

    def solve_by_the_deadline(problem: Problem) -> Plan:
        return solver(problem, timeout_s=max(0.0, deadline - clock.monotonic()))

    return solve_by_the_deadline


def _left_out_apart(day_work: _Day, plan: Plan, first_new_id: int | None) -> _Day | None:
    """The day with every stop of several shipments split into one stop per shipment, when
    the plan left such a stop out for want of room while a vehicle of the day got no route;
    None when there is no such stop or no such vehicle. Every one, not only those left out:
    the engine serves as many stops as it can (by priority, then number), whatever each
    carries, so a stop of two shipments still whole counts as one beside the split ones,
    and the engine traded it for one of them: two stops either way, the cheaper plan. Each
    shipment a stop, what the engine counts is what the day serves."""
    used = {route.vehicle_id for route in plan.routes}
    if all(vehicle.id in used for vehicle in day_work.problem.vehicles):
        return None
    if not any(
        not item.is_pair
        and item.reason == UnassignedReason.NO_ROOM
        and len(day_work.job_shipments[item.job_id]) > 1
        for item in plan.unassigned
    ):
        return None
    split = {job_id for job_id, shipments in day_work.job_shipments.items() if len(shipments) > 1}
    apart = _Day(problem=day_work.problem, pair_shipments=day_work.pair_shipments)
    jobs = []
    next_id = first_new_id or max([*day_work.job_shipments, *day_work.pair_shipments]) + 1
    for job in day_work.problem.jobs:
        if job.id not in split:
            jobs.append(job)
            apart.job_shipments[job.id] = day_work.job_shipments[job.id]
            continue
        for shipment in day_work.job_shipments[job.id]:
            jobs.append(replace(job, id=next_id, amount_g=_grams(shipment.load_kg)))
            apart.job_shipments[next_id] = [shipment]
            next_id += 1
    apart.problem = replace(day_work.problem, jobs=tuple(jobs))
    return apart


def _worth(day_work: _Day, plan: Plan) -> tuple[int, int]:
    """What a plan serves, as the engine weighs it: its shipments' priorities first, then
    how many they are."""
    jobs = {job.id: job.priority for job in day_work.problem.jobs}
    pairs = {pair.id: pair.priority for pair in day_work.problem.pairs}
    served = [
        (pairs[step.job_id], len(day_work.pair_shipments[step.job_id]))
        if step.kind == StepKind.PAIR_PICKUP
        else (jobs[step.job_id], len(day_work.job_shipments[step.job_id]))
        for route in plan.routes
        for step in route.stops
        if step.kind != StepKind.PAIR_DELIVERY  # a pair once
    ]
    return sum(priority * n for priority, n in served), sum(n for _, n in served)


# --------------------------------------------------------------------------- storing


def _at(day: date, seconds: int) -> datetime:
    midnight = timezone.make_aware(datetime.combine(day, time()))
    return midnight + timedelta(seconds=seconds)


def _roll_to_next_day(left_over: list[tuple[str, list[Shipment]]], now: datetime) -> None:
    """The shipments the plan left over, each group with its reason, move to their next
    day all together (shipments_move_days), the try counted (`failed_attempts`), and are
    tracked by one INSERT."""
    moves, events = [], []
    for reason, shipments in left_over:
        for shipment in shipments:
            at_farm = shipment.status in PLANNABLE
            pickup, delivery = next_days(shipment, at_farm=at_farm)
            if at_farm:
                shipment.status = ShipmentStatus.PENDING
            shipment.failed_attempts += 1
            moves.append((shipment, pickup, delivery))
            events.append(
                TrackingEvent(
                    shipment=shipment,
                    status=shipment.status,
                    occurred_at=now,
                    note=f"did not fit the day ({reason}); moved to {delivery:%Y-%m-%d}"
                    f" (try {shipment.failed_attempts} of {settings.MAX_STOP_ATTEMPTS})",
                )
            )
    shipments_move_days(moves, also=["status", "failed_attempts"])
    TrackingEvent.objects.bulk_create(events)
    orders_waiting_again(shipment.order_id for shipment, _, _ in moves)


def _store(run: ScheduleRun, day_work: _Day, plan: Plan) -> dict:
    """Write the plan, as far as it still holds: the day may have changed while it was
    solved (no transaction is open then). The day's shipments and vehicles are read again
    and locked; a shipment no longer there (cancelled, picked up, moved, now on a route that
    set out) is left out of its stop, and a stop left empty is dropped; a route whose
    vehicle is gone, inactive, now on the road or changed is not written, and its shipments
    are reported unplanned (`vehicle_unavailable`) and stay on the day for a new run, asked
    for once this one is done."""
    center, day, now = run.service_center, run.date, timezone.now()
    planned_routes = Route.objects.filter(
        service_center=center, date=day, status=RouteStatus.PLANNED
    )
    # The orders first, then the stops (deleted with their routes), then the shipments: the
    # order a stop's completion and an order's cancel take them in, so none of the three
    # waits for another while holding what that one needs.
    involved = (
        _day_shipments(center, day)
        .values("order_id")
        .union(Shipment.objects.filter(stops__route__in=planned_routes).values("order_id"))
    )
    list(
        Order.objects.select_for_update(of=("self",), no_key=True)  # as orders.order_lock
        .filter(pk__in=involved)
        .order_by("pk")
    )
    # Wrong delivery codes entered at a stop of a route not yet on the road stay with its
    # goods: planning the day again gives no fresh guesses, nor opens a stop locked for
    # staff review (only the admin's "Unlock" does).
    tried: dict[int, tuple[int, str]] = {}  # by shipment: wrong codes, and the last one
    for shipment_id, attempts, last in Stop.objects.filter(
        route__in=planned_routes, kind=StopKind.DELIVERY, wrong_code_attempts__gt=0
    ).values_list("shipments", "wrong_code_attempts", "last_wrong_code"):
        tried[shipment_id] = max((attempts, last), tried.get(shipment_id, (0, "")))
    planned_routes.delete()
    fresh = {
        s.pk: s
        for s in _day_shipments(center, day).select_for_update(of=("self",)).select_related("order")
    }
    # A vehicle changed meanwhile (a smaller capacity, a shorter shift, or the center's
    # hours) counts as gone: the plan may no longer fit it.
    solved_for = {spec.id: spec for spec in day_work.problem.vehicles}
    depot, hours = day_work.problem.depot, _opening_hours(center)
    vehicles = {
        v.pk: v
        for v in _day_vehicles(center, day).select_for_update(of=("self",)).order_by("pk")
        if v.pk in solved_for and _same_for_the_plan(solved_for[v.pk], _spec(v, depot, hours))
    }

    def still(shipments: list[Shipment]) -> list[Shipment]:
        return [fresh[s.pk] for s in shipments if s.pk in fresh]

    scheduled: list[Shipment] = []
    pickups: list[tuple[Stop, list[Shipment]]] = []  # the farmers are told their time
    new_stops: list[tuple[Stop, list[Shipment]]] = []  # written together, after the loop
    unassigned = []
    written, stops = [], 0
    for planned in plan.routes:
        vehicle = vehicles.get(planned.vehicle_id)
        if vehicle is None:
            left = [
                s
                for step in planned.stops
                if step.kind != StepKind.PAIR_DELIVERY  # a pair's shipments, once
                for s in still(_behind(day_work, step))
            ]
            _unschedule(left, now)
            if left:
                unassigned.append(
                    {"shipments": [s.pk for s in left], "reason": "vehicle_unavailable"}
                )
            continue
        # One stop per visit as planned, then what is still there: a visit whose first
        # step's goods went keeps that step's time (the van still comes then, and the
        # engine had the visit's later steps pay no setup there).
        steps = [(step, _behind(day_work, step)) for step in planned.stops]
        served = [(step, still(shipments)) for step, shipments in _one_stop_per_visit(steps)]
        served = [(step, shipments) for step, shipments in served if shipments]
        if not served:  # everything on it went meanwhile: the vehicle stays at the center
            continue
        scheduled.extend(
            s
            for step, shipments in steps
            if step.kind != StepKind.PAIR_DELIVERY  # a pair's shipments, once
            for s in still(shipments)
        )
        driven = _as_kept(planned, [step for step, _ in served], depot, _matrix(center))
        written.append(driven)
        route = Route.objects.create(
            service_center=center,
            date=day,
            vehicle=vehicle,
            schedule_run=run,
            **_figures(driven.distance_m, driven.duration_s, driven.driving_s, vehicle),
        )
        stops += len(served)
        loads = loads_on_board(
            (step.kind in (StepKind.PICKUP, StepKind.PAIR_PICKUP), shipments)
            for step, shipments in served
        )
        for sequence, ((step, shipments), load) in enumerate(
            zip(served, loads, strict=True), start=1
        ):
            window = _stop_window(step.kind, center)
            attempts, last_wrong_code = max(
                (tried.get(s.pk, (0, "")) for s in shipments), default=(0, "")
            )
            stop = Stop(
                route=route,
                sequence=sequence,
                kind=StopKind.PICKUP
                if step.kind in (StepKind.PICKUP, StepKind.PAIR_PICKUP)
                else StopKind.DELIVERY,
                wrong_code_attempts=attempts,
                last_wrong_code=last_wrong_code,
                status=StopStatus.LOCKED
                if attempts >= settings.MAX_DELIVERY_CODE_ATTEMPTS
                else StopStatus.PENDING,
                lat=Decimal(str(round(step.location.lat, 6))),
                lng=Decimal(str(round(step.location.lng, 6))),
                window_start=_at(day, window.start),
                window_end=_at(day, window.end),
                eta=_at(day, step.arrival_s + step.wait_s),  # when service starts
                load_kg=load,
            )
            new_stops.append((stop, shipments))
            if stop.kind == StopKind.PICKUP:
                pickups.append((stop, shipments))
    _write_stops(new_stops)
    if run.asked_again or any(item["reason"] == "vehicle_unavailable" for item in unassigned):
        # Those goods wait on the day for a plan with the vehicles as they are now, or staff
        # asked for the day as it is now while this run solved it as it was. A request to
        # plan it again made while this run solved joined this one, so a new run is asked
        # for once this one is done (robust: the sweeper re-sends a lost message).
        transaction.on_commit(
            lambda: schedule_run_request(center=center, day=day, requested_by=None), robust=True
        )
    _mark_scheduled(scheduled, now)
    notifications.notify_pickups_scheduled(pickups)
    left_over = [(item.reason, still(_unplanned(day_work, item))) for item in plan.unassigned]
    unassigned += _roll_left_over(left_over, now)
    return {
        "routes": len(written),
        "stops": stops,
        "distance_km": round(sum(r.distance_m for r in written) / 1000, 2),
        "duration_min": round(sum(r.duration_s for r in written) / 60),
        "driving_min": round(sum(r.driving_s for r in written) / 60),
        "vehicles_used": len({r.vehicle_id for r in written}),
        "vehicles_available": len(day_work.problem.vehicles),
        "unassigned": unassigned,
    }


_PICKING_UP = frozenset({StepKind.PICKUP, StepKind.PAIR_PICKUP})


def _one_stop_per_visit(
    served: list[tuple[PlannedStop, list[Shipment]]],
) -> list[tuple[PlannedStop, list[Shipment]]]:
    """The plan's steps one after another at one place as one stop: same-day pairs are
    solved one per farm and order, so a farm selling to three buyers of its center is three
    pickups there in a row, and an order of two farms' goods two deliveries at its buyer.
    The van stops once (one weighing, one code: a delivery stop serves one order), at the
    first step's time, for the time the steps took together: the engine had them one visit
    (the same `visit` of their jobs, _gather), paying the place's setup at the first one
    only, and the route is measured with one service there (_as_kept)."""
    visits: list[tuple[PlannedStop, list[Shipment]]] = []
    for step, shipments in served:
        if visits and _same_visit(visits[-1], step, shipments):
            first, goods = visits[-1]
            first = replace(first, service_s=first.service_s + step.service_s)
            visits[-1] = (first, [*goods, *shipments])
        else:
            visits.append((step, shipments))
    return visits


def _same_visit(
    visit: tuple[PlannedStop, list[Shipment]], step: PlannedStop, shipments: list[Shipment]
) -> bool:
    first, goods = visit
    if first.location != step.location or (first.kind in _PICKING_UP) != (step.kind in _PICKING_UP):
        return False
    return first.kind in _PICKING_UP or {s.order_id for s in goods} == {
        s.order_id for s in shipments
    }


def _roll_left_over(left_over: list[tuple[str, list[Shipment]]], now: datetime) -> list[dict]:
    """The goods the plan left out, each group with its reason, reported: a day left out is
    a failed try of theirs, as a failed stop is. Those trying again roll to their next day;
    those whose last try (MAX_STOP_ATTEMPTS) this was fail for good, the plan's reason their
    reason (failures.shipments_fail_for_good), and are listed as such (`failed_for_good`).
    A group whose goods all went while the day was solved (a cancelled order) is no longer
    the day's to report. Locks after the orders and the shipments (_store): the listings of
    goods going back on sale, then every center's capacity, as a failed stop takes them."""
    left_over = [(reason, shipments) for reason, shipments in left_over if shipments]
    every = [s for _, shipments in left_over for s in shipments]
    giving_up = [
        (s, str(reason)) for reason, shipments in left_over for s in shipments if gives_up(s)
    ]
    failed = {s.pk for s, _ in giving_up}
    lock_for_failing(every, [s for s, _ in giving_up])
    due_before = orders_due(s.order_id for s in every)
    shipments_fail_for_good(
        giving_up, at=now, actor=None, note_prefix="did not fit the day, its last try: "
    )
    _roll_to_next_day(
        [(reason, [s for s in shipments if s.pk not in failed]) for reason, shipments in left_over],
        now,
    )
    orders_tell_later_delivery(due_before=due_before, reason="not_planned")  # once an order
    for order_id in sorted({s.order_id for s, _ in giving_up}):
        order_follow_shipments(order_id, None)  # failed, or partly delivered, perhaps
    report = []
    for reason, shipments in left_over:
        item: dict = {"shipments": [s.pk for s in shipments], "reason": str(reason)}
        if failed_for_good := [s.pk for s in shipments if s.pk in failed]:
            item["failed_for_good"] = failed_for_good
        report.append(item)
    return report


def _as_kept(
    planned: PlannedRoute, steps: list[PlannedStop], depot: Location, matrix: GreatCircleMatrix
) -> PlannedRoute:
    """The route as driven once some of its stops were dropped (their goods went while the
    day was solved), measured as a route always is (_road). A route that lost no stop is
    the plan's, which the engine measured the same way."""
    if len(steps) == len(planned.stops):
        return planned
    road = _road(depot, matrix, [(s.location, s.arrival_s + s.wait_s, s.service_s) for s in steps])
    return replace(
        planned,
        stops=tuple(steps),
        departure_s=road.departure_s,
        return_s=road.return_s,
        distance_m=road.distance_m,
        driving_s=road.driving_s,
        duration_s=road.return_s - road.departure_s,
    )


@dataclass(frozen=True)
class _Road:
    departure_s: int  # seconds from midnight
    return_s: int
    distance_m: int
    driving_s: int


def _road(
    depot: Location, matrix: GreatCircleMatrix, stops: list[tuple[Location, int, int]]
) -> _Road:
    """The road of a route from the center through its stops and back, each stop a place,
    when its service starts and how long it lasts: the stops keep their times (a van early
    at one, now that one before it went, waits), it leaves the center in time for the
    first, as the engine has a van leave (it waits at no first stop), and it is back from
    the last after its service."""
    places = [depot, *(place for place, _, _ in stops), depot]
    matrices = matrix.matrices(places)
    legs = range(len(places) - 1)
    (_, first_s, _), (_, last_s, last_service_s) = stops[0], stops[-1]
    return _Road(
        departure_s=first_s - matrices.durations_s[0][1],
        return_s=last_s + last_service_s + matrices.durations_s[-2][-1],
        distance_m=sum(matrices.distances_m[i][i + 1] for i in legs),
        driving_s=sum(matrices.durations_s[i][i + 1] for i in legs),
    )


def _figures(distance_m: int, duration_s: int, driving_s: int, vehicle: Vehicle) -> dict:
    """A route's distance, duration, driving time and cost as stored, from its road."""
    km = Decimal(distance_m) / 1000
    return {
        "distance_km": km,
        "duration_min": round(duration_s / 60),
        "driving_s": driving_s,
        "cost": (km * vehicle.cost_per_km).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
    }


def routes_measure(*, measured: list[tuple[Route, list[Stop]]]) -> None:
    """Planned routes (locked) whose stops changed after the plan (goods cancelled), each
    with the stops it has now in visiting order, are measured over them as the plan
    measured them (_road): their distance, duration, driving time and cost are what their
    stops give, saved in one statement however many routes. Their ETAs stay: the driver
    only skips the stops that went, so each is still reached in time, and the farmers told
    their pickup time keep it."""
    for route, stops in measured:
        center = route.service_center
        midnight = _at(route.date, 0)
        road = _road(
            Location(float(center.lat), float(center.lng)),
            _matrix(center),
            [
                (
                    Location(float(stop.lat), float(stop.lng)),
                    int((stop.eta - midnight).total_seconds()),
                    settings.STOP_SERVICE_SECONDS,
                )
                for stop in stops
            ],
        )
        figures = _figures(
            road.distance_m, road.return_s - road.departure_s, road.driving_s, route.vehicle
        )
        for field_name, value in figures.items():
            setattr(route, field_name, value)
    Route.objects.bulk_update(
        [route for route, _ in measured], ["distance_km", "duration_min", "driving_s", "cost"]
    )


def _behind(day_work: _Day, step) -> list[Shipment]:
    """The shipments behind a planned stop, as gathered."""
    is_pair = step.kind in (StepKind.PAIR_PICKUP, StepKind.PAIR_DELIVERY)
    return (day_work.pair_shipments if is_pair else day_work.job_shipments)[step.job_id]


def _unplanned(day_work: _Day, item) -> list[Shipment]:
    """The shipments behind a job or pair the plan left out, as gathered."""
    return (day_work.pair_shipments if item.is_pair else day_work.job_shipments)[item.job_id]


def _stop_window(kind: StepKind, center: ServiceCenter) -> TimeWindow:
    if kind in (StepKind.PICKUP, StepKind.PAIR_PICKUP):
        return TimeWindow(
            _seconds(settings.PICKUP_WINDOW_START), _seconds(settings.PICKUP_WINDOW_END)
        )
    return _opening_hours(center)


def _write_stops(stops: list[tuple[Stop, list[Shipment]]]) -> None:
    """The plan's stops and which shipments each serves: one INSERT each, however many."""
    Stop.objects.bulk_create([stop for stop, _ in stops])
    Stop.shipments.through.objects.bulk_create(
        Stop.shipments.through(stop_id=stop.pk, shipment_id=shipment.pk)
        for stop, shipments in stops
        for shipment in shipments
    )


def _move(shipments: list[Shipment], *, source: str, target: str, note: str, now) -> None:
    """The shipments (locked) in status `source` go to `target`, each with its tracking
    event: one UPDATE and one INSERT, however many."""
    moving = [shipment for shipment in shipments if shipment.status == source]
    if not moving:
        return
    Shipment.objects.filter(pk__in=[shipment.pk for shipment in moving]).update(
        status=target, updated_at=now
    )
    TrackingEvent.objects.bulk_create(
        TrackingEvent(shipment=shipment, status=target, occurred_at=now, note=note)
        for shipment in moving
    )
    for shipment in moving:
        shipment.status, shipment.updated_at = target, now


def _unschedule(shipments: list[Shipment], now: datetime) -> None:
    """Back to waiting for a plan on the same day (their vehicle could not take them)."""
    note = "its vehicle became unavailable; waits for the next plan of the day"
    _move(
        shipments,
        source=ShipmentStatus.SCHEDULED,
        target=ShipmentStatus.PENDING,
        note=note,
        now=now,
    )
    orders_waiting_again(s.order_id for s in shipments)


def _mark_scheduled(shipments: list[Shipment], now: datetime) -> None:
    _move(
        shipments,
        source=ShipmentStatus.PENDING,
        target=ShipmentStatus.SCHEDULED,
        note="on a route",
        now=now,
    )
    confirmed = list(
        Order.objects.select_for_update(of=("self",), no_key=True)  # held already (_store)
        .filter(pk__in={s.order_id for s in shipments}, status=OrderStatus.CONFIRMED)
        .order_by("pk")
    )
    orders_transition(
        orders=confirmed,
        to_status=OrderStatus.SCHEDULED,
        reasons=dict.fromkeys((order.pk for order in confirmed), "on a vehicle route"),
    )


# --------------------------------------------------------------------------- running


def _progress(run_id: int, percent: int) -> None:
    """While the run is running: a twin delivery may have finished it meanwhile, or be
    further on (a copy delivered again starts over): what staff read never goes back."""
    ScheduleRun.objects.filter(pk=run_id, status=ScheduleRunStatus.RUNNING).update(
        progress=Greatest("progress", percent)
    )


def _failed_by(run_id: int, exc: Exception) -> str:
    """What a run failed by, as staff read it (`error`): the exception's kind; its text,
    which may name a host, an address or a port, goes to the log, as /health/ does."""
    logger.warning("schedule run %s failed: %s: %s", run_id, type(exc).__name__, exc)
    return f"{type(exc).__name__} (the worker's log has the details)"


def _fail(run_id: int, reason: str) -> None:
    """Record why a run failed; a run already done stays done."""
    ScheduleRun.objects.filter(
        pk=run_id, status__in=(ScheduleRunStatus.QUEUED, ScheduleRunStatus.RUNNING)
    ).update(status=ScheduleRunStatus.FAILED, error=reason, finished_at=timezone.now())


def _matrix(center: ServiceCenter) -> GreatCircleMatrix:
    return GreatCircleMatrix(
        detour_factor=float(center.detour_factor), speed_kmh=float(center.average_speed_kmh)
    )


def _lock_run(run_id: int) -> ScheduleRun:
    """The run and its center, locked for the rest of the transaction (an operator's change
    of the center waits for the day being stored, and plans it again after). FOR NO KEY
    UPDATE, as an order's lock: the rows others write meanwhile that point to the center
    (a routing's shipments, a tracking event, a vehicle change asking for a run) have their
    foreign keys checked with FOR KEY SHARE, which FOR UPDATE blocked. Those writers hold
    capacity or vehicle locks the day's storing then waits for: it deadlocked with them."""
    return (
        ScheduleRun.objects.select_for_update(no_key=True)
        .select_related("service_center")
        .get(pk=run_id)
    )


def schedule_run_execute(*, run_id: int) -> ScheduleRun:
    """Carry out a queued run: gather, solve (no transaction open), store in one transaction.
    A day of more than SCHEDULE_ZONE_THRESHOLD stops is split into zones, each solved by a
    task of its own (schedule_zones.py). A run already done or failed is left alone, and a
    run already split only has its unsolved zones enqueued again, so a redelivered task
    does nothing twice; a failure is recorded on the run with its reason. A run found
    running when its task starts was started before and did not finish (its worker killed:
    the solver past the hard time limit, out of memory); the sweeper sends it again, and
    past SCHEDULE_RUN_MAX_RESTARTS such starts it is failed, with that reason, rather than
    left running for ever, where every request to plan the day would join it."""
    from logistics.services import schedule_zones  # noqa: PLC0415 - it builds on this module

    with transaction.atomic():
        run = _lock_run(run_id)
        if run.status not in (ScheduleRunStatus.QUEUED, ScheduleRunStatus.RUNNING):
            return run
        if run.status == ScheduleRunStatus.RUNNING:  # its worker was killed, or lost
            if run.restarts >= settings.SCHEDULE_RUN_MAX_RESTARTS:
                _fail(run_id, f"killed or lost {run.restarts + 1} times before it finished")
                run.refresh_from_db()
                return run
            run.restarts += 1
            run.save(update_fields=["restarts"])
        if run.zones.exists():
            schedule_zones.enqueue_unsolved(run)
            return run
        # a copy delivered again while the run is running keeps the progress it shows
        run.status, run.started_at = ScheduleRunStatus.RUNNING, timezone.now()
        run.progress = max(run.progress, 10)
        run.save(update_fields=["status", "started_at", "progress"])
    try:
        day_work = _gather(run.service_center, run.date)
        _progress(run_id, 30)
        if stops_of(day_work.problem) > settings.SCHEDULE_ZONE_THRESHOLD:
            return schedule_zones.schedule_run_split(run_id=run_id, day_work=day_work)
        started = clock.monotonic()
        solver = _engine_within(
            DAY_ENGINE_TIMEOUT_S, partial(solve, matrix=_matrix(run.service_center))
        )
        day_work, plan = _solve(day_work, solver)
        solve_seconds = round(clock.monotonic() - started, 2)
        _progress(run_id, 80)
        with transaction.atomic():
            run = _lock_run(run_id)
            if run.status != ScheduleRunStatus.RUNNING:  # a twin delivery got here first
                return run
            summary = _store(run, day_work, plan)
            summary["solve_seconds"] = solve_seconds
            run.status, run.progress, run.summary = ScheduleRunStatus.DONE, 100, summary
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "progress", "summary", "finished_at"])
    except Exception as exc:
        _fail(run_id, _failed_by(run_id, exc))
        raise
    return run
