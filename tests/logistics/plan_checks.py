"""What every stored plan of a center's day must hold, read from its rows alone (DESIGN.md:
"routes respecting capacity, time windows, shifts, refrigeration for produce that needs
it, with perishables first. What cannot fit is reported with a reason and rolled to the
next day"). `day_before(center, day)` reads the day's shipments as they are before the run;
`plan_violations(run, before)` then lists, in words, everything the run's routes, stops and
summary break; a test asserts the list is empty, so a failure names every violation."""

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise

from django.conf import settings
from django.db.models import Min
from django.utils import timezone

from logistics.models import (
    LegKind,
    Route,
    RouteStatus,
    ScheduleRun,
    ServiceCenter,
    Shipment,
    ShipmentStatus,
    StopKind,
    Vehicle,
)
from logistics.routing import Location
from logistics.routing.matrix import GreatCircleMatrix
from logistics.routing.problem import UnassignedReason
from orders.models import LineStatus, OrderLine

PLANNABLE = (ShipmentStatus.PENDING, ShipmentStatus.SCHEDULED)
REASONS = {str(reason) for reason in UnassignedReason} | {"vehicle_unavailable"}


@dataclass(frozen=True)
class Before:
    """A shipment of the day as it was before the plan."""

    pk: int
    order_id: int
    status: str
    load_kg: Decimal
    cold: bool
    urgency: int  # perishables first (cold, or spoiling if they miss the day), then days late
    pickup_date: date
    delivery_date: date
    failed_attempts: int
    pair: bool  # picked up and delivered on the same route, the same day
    delivers: bool  # taken from the center to the buyer's door
    place: tuple[Decimal, Decimal]  # where a vehicle takes it (a pair: where it is picked up)


def day_before(center: ServiceCenter, day: date) -> dict[int, Before]:
    """The shipments the center's vehicles handle on the day: pickups at its farms, and
    deliveries to the door of goods waiting at the center; not those on a route already on
    the road."""
    started = Shipment.objects.filter(
        stops__route__date=day,
        stops__route__status__in=(RouteStatus.STARTED, RouteStatus.COMPLETED),
    ).values("pk")
    shipments = (
        Shipment.objects.filter(origin_center=center, pickup_date=day, status__in=PLANNABLE)
        | Shipment.objects.filter(
            destination_center=center, delivery_date=day, status=ShipmentStatus.AT_CENTER
        )
    ).exclude(pk__in=started)
    spoils = {
        (order_id, farmer_id): first
        for order_id, farmer_id, first in OrderLine.objects.filter(
            order__shipments__in=shipments, status=LineStatus.ACTIVE, spoils_on__isnull=False
        )
        .values("order_id", "farmer_id")
        .annotate(first=Min("spoils_on"))
        .values_list("order_id", "farmer_id", "first")
    }
    before = {}
    for s in shipments.prefetch_related("legs"):
        home = any(leg.kind == LegKind.DELIVERY for leg in s.legs.all())
        at_farm = s.status in PLANNABLE
        if not at_farm and not home:
            continue  # handed over at the counter: no vehicle
        # goods that keep no longer than their delivery day spoil if they miss it
        first_to_spoil = spoils.get((s.order_id, s.farmer_id))
        urgent = s.needs_refrigeration or (
            first_to_spoil is not None and first_to_spoil <= s.delivery_date
        )
        late = (s.delivery_date - s.promised_date).days
        before[s.pk] = Before(
            pk=s.pk,
            order_id=s.order_id,
            status=s.status,
            load_kg=s.load_kg,
            cold=s.needs_refrigeration,
            urgency=min(100, (60 if urgent else 0) + 10 * max(0, late)),
            pickup_date=s.pickup_date,
            delivery_date=s.delivery_date,
            failed_attempts=s.failed_attempts,
            pair=at_farm and home and not s.crosses_centers and s.delivery_date == day,
            delivers=home and not at_farm,
            place=(s.pickup_lat, s.pickup_lng) if at_farm else (s.delivery_lat, s.delivery_lng),
        )
    return before


def _at(day: date, moment: time) -> datetime:
    return timezone.make_aware(datetime.combine(day, moment))


def plan_violations(run: ScheduleRun, before: dict[int, Before]) -> list[str]:
    """Everything the run's stored plan breaks, in words."""
    run.refresh_from_db()
    if run.status != "done":
        return [f"run {run.pk} is {run.status}: {run.error}"]
    routes = list(
        Route.objects.filter(schedule_run=run)
        .select_related("vehicle", "service_center")
        .prefetch_related("stops__shipments")
        .order_by("pk")
    )
    found: list[str] = []
    served: dict[int, list[tuple[Route, str, int]]] = {}
    places: dict[tuple[int, Decimal, Decimal], list[int]] = {}  # what a route took where
    for route in routes:
        found += route_violations(route, not_before=run.started_at)
        found += _visit_violations(route)
        for stop in route.stops.all():
            for shipment in stop.shipments.all():
                served.setdefault(shipment.pk, []).append((route, stop.kind, stop.sequence))
                places.setdefault((route.pk, stop.lat, stop.lng), []).append(shipment.pk)
    found += _coverage_violations(run, before, served)
    found += _perishable_violations(run, before, places)
    found += _reason_violations(run, before)
    found += _summary_violations(run, routes)
    return found


def route_violations(route: Route, *, not_before: datetime | None = None) -> list[str]:
    """What a planned route breaks, from its rows as they are now (after a plan, or after
    goods left it): its load, refrigeration, pickups before deliveries, times and figures.
    `not_before`: when the plan was made; a route of that day starts no earlier."""
    found = []
    vehicle, day = route.vehicle, route.date
    name = f"route {route.pk} ({vehicle.name})"
    stops = sorted(route.stops.all(), key=lambda s: s.sequence)
    if not stops or [s.sequence for s in stops] != list(range(1, len(stops) + 1)):
        found.append(f"{name}: stops numbered {[s.sequence for s in stops]}")
    if Route.objects.filter(date=day, vehicle=vehicle).count() > 1:
        found.append(f"{name}: its vehicle has two routes on {day}")
    found += _load_violations(name, vehicle, stops)
    for stop in stops:
        goods = [s for s in stop.shipments.all() if s.status != ShipmentStatus.CANCELLED]
        if not goods:
            found.append(f"{name} stop {stop.sequence}: no goods")
        for s in goods:
            if s.needs_refrigeration and not vehicle.refrigerated:
                found.append(f"{name} stop {stop.sequence}: shipment {s.pk} cold, van not")
            if stop.kind == StopKind.DELIVERY and s.status != ShipmentStatus.AT_CENTER:
                pickups = [
                    x.sequence
                    for x in stops
                    if x.kind == StopKind.PICKUP and s in x.shipments.all()
                ]
                if not (pickups and pickups[0] < stop.sequence):
                    found.append(f"{name} stop {stop.sequence}: delivers {s.pk} not picked up")
        if stop.kind == StopKind.DELIVERY and len({s.order_id for s in goods}) > 1:
            found.append(f"{name} stop {stop.sequence}: delivers several orders")
    return found + _time_violations(route, stops, name, not_before)


def _visit_violations(route: Route) -> list[str]:
    """A plan stops once per visit: the engine pays a place's service once for what a
    vehicle does there one step after another (pickups at one place, deliveries of one order
    to its buyer), so two stops of one visit in a row would each be given a service (and an
    ETA) the plan did not give them. Checked on the plan as made: a stop that went since can
    leave two stops of a visit side by side."""
    stops = sorted(route.stops.all(), key=lambda s: s.sequence)
    found = []
    for before, stop in pairwise(stops):
        if (before.lat, before.lng, before.kind) != (stop.lat, stop.lng, stop.kind):
            continue
        orders = [{s.order_id for s in x.shipments.all()} for x in (before, stop)]
        if stop.kind == StopKind.PICKUP or orders[0] == orders[1]:
            found.append(f"route {route.pk} stop {stop.sequence}: one visit with the stop before")
    return found


def _load_violations(name: str, vehicle, stops: list) -> list[str]:
    """What it delivers and does not pick up leaves the center on board; pickups add,
    deliveries take off, in stop order, never above the vehicle's capacity."""
    found = []

    def goods(stop) -> list[Shipment]:
        return [s for s in stop.shipments.all() if s.status != ShipmentStatus.CANCELLED]

    picked = {s.pk for stop in stops if stop.kind == StopKind.PICKUP for s in goods(stop)}
    load = sum(
        (
            s.load_kg
            for stop in stops
            if stop.kind == StopKind.DELIVERY
            for s in goods(stop)
            if s.pk not in picked
        ),
        Decimal(0),
    )
    if load > vehicle.capacity_kg:
        found.append(f"{name}: leaves with {load} kg on a {vehicle.capacity_kg} kg vehicle")
    for stop in stops:
        weight = sum((s.load_kg for s in goods(stop)), Decimal(0))
        load += weight if stop.kind == StopKind.PICKUP else -weight
        if load != stop.load_kg:
            found.append(f"{name} stop {stop.sequence}: load {stop.load_kg}, carries {load}")
        if not 0 <= load <= vehicle.capacity_kg:
            found.append(f"{name} stop {stop.sequence}: {load} kg on {vehicle.capacity_kg} kg")
    return found


def _shift(route: Route) -> tuple[datetime, datetime]:
    vehicle, center = route.vehicle, route.service_center
    start = max(vehicle.shift_start, center.opens_at)
    end = min(vehicle.shift_end, center.closes_at)
    return _at(route.date, start), _at(route.date, end)


def _time_violations(
    route: Route, stops: list, name: str, not_before: datetime | None
) -> list[str]:
    """Each ETA (when service starts) inside its stop's window and the vehicle's shift, each
    stop reachable from the one before, and the route's distance, duration, driving time
    and cost what its stops give, measured as the plan measures them (great circle, the
    center's detour and speed)."""
    if not stops:
        return []
    found = []
    center, day = route.service_center, route.date
    service = timedelta(seconds=settings.STOP_SERVICE_SECONDS)
    shift_start, shift_end = _shift(route)
    if not_before is not None and timezone.localdate(not_before) == day:
        shift_start = max(shift_start, not_before)
    pickup_window = (_at(day, settings.PICKUP_WINDOW_START), _at(day, settings.PICKUP_WINDOW_END))
    delivery_window = (_at(day, center.opens_at), _at(day, center.closes_at))
    for stop in stops:
        window = pickup_window if stop.kind == StopKind.PICKUP else delivery_window
        if (stop.window_start, stop.window_end) != window:
            found.append(f"{name} stop {stop.sequence}: window {stop.window_start}..")
        if not stop.window_start <= stop.eta <= stop.window_end:
            found.append(f"{name} stop {stop.sequence}: eta {stop.eta:%H:%M:%S} outside window")
        if not shift_start <= stop.eta <= shift_end - service:
            found.append(f"{name} stop {stop.sequence}: eta {stop.eta:%H:%M:%S} outside shift")
    depot = Location(float(center.lat), float(center.lng))
    places = [depot, *(Location(float(s.lat), float(s.lng)) for s in stops), depot]
    matrix = GreatCircleMatrix(float(center.detour_factor), float(center.average_speed_kmh))
    m = matrix.matrices(places)
    legs = range(len(places) - 1)
    drive = [timedelta(seconds=m.durations_s[i][i + 1]) for i in legs]
    departure = stops[0].eta - drive[0]
    back = stops[-1].eta + service + drive[-1]
    if departure < shift_start or back > shift_end:
        found.append(f"{name}: out {departure:%H:%M:%S} to {back:%H:%M:%S}, outside the shift")
    found += [
        f"{name} stop {n + 1}: eta {stops[n].eta:%H:%M:%S} unreachable"
        for n in range(1, len(stops))
        if stops[n].eta < stops[n - 1].eta + service + drive[n]
    ]
    km = Decimal(sum(m.distances_m[i][i + 1] for i in legs)) / 1000
    if abs(route.distance_km - km) > Decimal("0.01"):
        found.append(f"{name}: distance {route.distance_km} km, its stops {km} km")
    driving_s = sum(m.durations_s[i][i + 1] for i in legs)
    if route.driving_s != driving_s:
        found.append(f"{name}: driving {route.driving_s} s, its stops {driving_s} s")
    minutes = (back - departure).total_seconds() / 60
    if abs(route.duration_min - minutes) > 1:
        found.append(f"{name}: duration {route.duration_min} min, its stops {minutes:.1f}")
    cost = (route.distance_km * route.vehicle.cost_per_km).quantize(Decimal("0.01"))
    if abs(route.cost - cost) > Decimal("0.02"):
        found.append(f"{name}: cost {route.cost}, its distance {cost}")
    return found


def _coverage_violations(
    run: ScheduleRun, before: dict[int, Before], served: dict[int, list[tuple[Route, str, int]]]
) -> list[str]:
    """Every shipment of the day on exactly one stop of each kind it needs (a same-day pair:
    a pickup, then a delivery on the same route), or reported unassigned with a reason and
    moved on; none twice, none from elsewhere."""
    found = []
    left: dict[int, str] = {}
    for item in run.summary["unassigned"]:
        for pk in item["shipments"]:
            if pk in left:
                found.append(f"shipment {pk} reported unassigned twice")
            left[pk] = item["reason"]
            if item["reason"] not in REASONS:
                found.append(f"shipment {pk} left out for {item['reason']!r}")
    found += [
        f"shipment {pk} planned or reported but not the day's"
        for pk in set(served) | set(left)
        if pk not in before
    ]
    for pk, b in before.items():
        on = served.get(pk, [])
        if pk in left:
            if on:
                found.append(f"shipment {pk} reported {left[pk]} and on {len(on)} stops")
            found += _rolled(pk, b, left[pk])
            continue
        kinds = Counter(kind for _, kind, _ in on)
        wanted = (
            {"pickup": 1, "delivery": 1}
            if b.pair
            else {"delivery": 1}
            if b.delivers
            else {"pickup": 1}
        )
        if dict(kinds) != wanted:
            found.append(f"shipment {pk} on stops {dict(kinds)}, needs {wanted}")
        elif b.pair:
            (r1, _, s1), (r2, _, s2) = sorted(on, key=lambda x: x[1] != "pickup")
            if r1.pk != r2.pk or s1 >= s2:
                found.append(f"shipment {pk}: pickup {r1.pk}/{s1}, delivery {r2.pk}/{s2}")
    return found


def _perishable_violations(
    run: ScheduleRun, before: dict[int, Before], places: dict[tuple, list[int]]
) -> list[str]:
    """Goods left out for want of room while a route that stopped at their place anyway
    took less urgent goods of the same kind of need (and stop), as heavy or heavier:
    taking them instead cost that route no more room, and no more time than the goods
    it took."""
    found = []
    routes_at: dict[tuple, set[int]] = {}
    for route_id, lat, lng in places:
        routes_at.setdefault((lat, lng), set()).add(route_id)
    for item in run.summary["unassigned"]:
        for pk in item["shipments"]:
            b = before.get(pk)
            if item["reason"] != UnassignedReason.NO_ROOM or b is None or b.pair:
                continue
            taken = [
                before[x]
                for (route_id, _, _), on in places.items()
                if route_id in routes_at.get(b.place, ())
                for x in on
                if x in before
            ]
            found += [
                f"shipment {pk} (urgency {b.urgency}, {b.load_kg} kg) left out while "
                f"{o.pk} (urgency {o.urgency}, {o.load_kg} kg) went on a route by its place"
                for o in taken
                if (o.cold, o.delivers) == (b.cold, b.delivers)
                and o.urgency < b.urgency
                and o.load_kg >= b.load_kg
            ]
    return found


def _reason_violations(run: ScheduleRun, before: dict[int, Before]) -> list[str]:
    """Each reason true of the goods it is given for, by the center's vehicles that could
    work that day (active, not on the road, with time in their shift while it is open)."""
    center, day = run.service_center, run.date
    on_the_road = Route.objects.filter(
        date=day, status__in=(RouteStatus.STARTED, RouteStatus.COMPLETED)
    ).values("vehicle_id")
    started = timezone.localtime(run.started_at)
    now = [started.time()] if started.date() == day else []  # planned on the day: from now
    vehicles = [
        v
        for v in Vehicle.objects.filter(service_center=center, active=True).exclude(
            pk__in=on_the_road
        )
        if max(v.shift_start, center.opens_at, *now) < min(v.shift_end, center.closes_at)
    ]
    idle = [v for v in vehicles if not Route.objects.filter(date=day, vehicle=v).exists()]
    found = []
    for item in run.summary["unassigned"]:
        reason = item["reason"]
        for pk in item["shipments"]:
            b = before.get(pk)
            if b is None or reason == "vehicle_unavailable":
                continue
            able = [v for v in vehicles if v.refrigerated or not b.cold]
            roomy = [v for v in able if v.capacity_kg >= b.load_kg]
            true = {
                UnassignedReason.NO_VEHICLE: not vehicles,
                UnassignedReason.NO_VEHICLE_WITH_SKILLS: bool(vehicles) and not able,
                UnassignedReason.TOO_HEAVY: bool(able) and not roomy,
                UnassignedReason.OUTSIDE_SHIFTS: bool(roomy),
                UnassignedReason.NO_ROOM: bool(roomy),
            }[UnassignedReason(reason)]
            if not true:
                found.append(f"shipment {pk} ({b.load_kg} kg, cold {b.cold}) left out: {reason}")
            found += [
                f"shipment {pk} ({b.load_kg} kg) left out ({reason}) while {v.name} stayed idle"
                for v in idle
                if reason == UnassignedReason.NO_ROOM
                and not b.pair
                and v in roomy
                and _reaches(v, center, b, now)
            ]
    return found


def _reaches(vehicle: Vehicle, center: ServiceCenter, b: Before, now: list[time]) -> bool:
    """Whether the vehicle, with nothing else to do, serves the goods in their stop's window
    and is back within its shift while the center is open."""
    day = date(2000, 1, 1)
    start = _at(day, max(vehicle.shift_start, center.opens_at, *now))
    end = _at(day, min(vehicle.shift_end, center.closes_at))
    window = (
        (center.opens_at, center.closes_at)
        if b.delivers
        else (settings.PICKUP_WINDOW_START, settings.PICKUP_WINDOW_END)
    )
    depot = Location(float(center.lat), float(center.lng))
    there = Location(float(b.place[0]), float(b.place[1]))
    matrix = GreatCircleMatrix(float(center.detour_factor), float(center.average_speed_kmh))
    travel = timedelta(seconds=matrix.matrices([depot, there]).durations_s[0][1])
    served = max(start + travel, _at(day, window[0]))
    service = timedelta(seconds=settings.STOP_SERVICE_SECONDS)
    return served <= _at(day, window[1]) and served + service + travel <= end


def _rolled(pk: int, b: Before, reason: str) -> list[str]:
    """Goods left out move to a later day (a failed try) or fail for good; goods whose
    vehicle became unavailable wait on the day for a new plan."""
    now = Shipment.objects.get(pk=pk)
    if reason == "vehicle_unavailable":
        return [] if now.pickup_date == b.pickup_date else [f"shipment {pk} moved"]
    if now.status == ShipmentStatus.FAILED:
        return []
    moved = (
        now.pickup_date > b.pickup_date
        if b.status in PLANNABLE
        else now.delivery_date > b.delivery_date
    )
    if not moved or now.failed_attempts != b.failed_attempts + 1:
        return [f"shipment {pk} left out ({reason}) but not rolled to the next day"]
    return []


def _summary_violations(run: ScheduleRun, routes: list[Route]) -> list[str]:
    summary, found = run.summary, []
    if summary["routes"] != len(routes):
        found.append(f"summary routes {summary['routes']}, stored {len(routes)}")
    if summary["stops"] != sum(len(route.stops.all()) for route in routes):
        found.append(f"summary stops {summary['stops']}")
    km = sum((route.distance_km for route in routes), Decimal(0))
    if abs(Decimal(str(summary["distance_km"])) - km) > Decimal("0.02"):
        found.append(f"summary distance {summary['distance_km']} km, routes {km}")
    driving_min = round(sum(route.driving_s for route in routes) / 60)
    if summary["driving_min"] != driving_min:
        found.append(f"summary driving {summary['driving_min']} min, routes {driving_min}")
    if summary["vehicles_used"] != len({route.vehicle_id for route in routes}):
        found.append(f"summary vehicles_used {summary['vehicles_used']}")
    return found
