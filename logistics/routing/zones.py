"""Split a large day into geographic zones, each a Problem of its own, and merge their plans.

VROOM's time grows much faster than the number of stops: a 1,000-stop day takes over 130 s
even at exploration level 0, but as four zones of 250 it is solved in 7–28 s on two cores,
and no dearer (bench/routing_scale.py, bench/SCALE_RESULTS.md). The scheduling service
hands each zone to a task of its own, so the workers share the day.

How the day is cut:
- work that needs refrigeration goes with the refrigerated vehicles, as a zone of its own
  (when there are plain vehicles too; with no refrigerated work, a refrigerated vehicle is
  one more vehicle, and with only refrigerated vehicles, or none, everything is swept
  together: refrigerated work no vehicle can take then waits in some arc, reported
  `no_vehicle_with_skills`, never in a zone without vehicles, which would report it
  `no_vehicle` on a day that has some);
- the rest is ordered by angle around the depot (a pickup-delivery pair by the midpoint of
  its two places, so a pair always stays whole), the circle is opened at the widest angular
  gap (the emptiest direction, so no zone straddles a busy one) and cut into k arcs with
  equal numbers of stops;
- the vehicles are shared by the arcs' weight: every zone gets one first (largest vehicles
  to the heaviest zones), then each next vehicle goes to the zone whose capacity lags its
  share of the weight the most; a job or pair no vehicle of its zone can carry (by weight,
  skills or shift) then moves to the zone of the largest vehicle that can.
Once the zones are solved, `second_pass` offers the plain work they left out to the
refrigerated vehicles' spare room (capacity and time the refrigerated work did not take), so
a day does not leave plain goods behind while a refrigerated truck could still carry them.
Nothing here knows Django or the engine (the second pass is handed a solve function);
`split` is deterministic (same problem, same zones).
"""

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NamedTuple

from logistics.routing.problem import (
    Location,
    PickupDelivery,
    Plan,
    Problem,
    Skill,
    StepKind,
    TimeWindow,
    Unassigned,
    UnassignedReason,
    VehicleSpec,
)

FULL_TURN = 2 * math.pi
PAIR_STEPS = (StepKind.PAIR_PICKUP, StepKind.PAIR_DELIVERY)


class _Item(NamedTuple):
    """One job or pair to place in a zone, by its index in the problem."""

    angle: float
    stops: int
    weight_g: int
    is_pair: bool
    index: int


def stops_of(problem: Problem) -> int:
    return len(problem.jobs) + 2 * len(problem.pairs)


def _pair_skills(pair: PickupDelivery) -> frozenset[Skill]:
    return pair.skills | pair.pickup.skills | pair.delivery.skills


def split(problem: Problem, k: int) -> list[Problem]:
    """The day as at most `k` geographic zones (plus one for refrigerated work), each job,
    pair and vehicle in exactly one of them. Fewer zones when there are fewer vehicles or
    jobs to go round; the whole problem as one zone when there is nothing to sweep."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    cold = Skill.REFRIGERATED
    plain_vehicles = [v for v in problem.vehicles if cold not in v.skills]
    cold_vehicles = [v for v in problem.vehicles if cold in v.skills]
    cold_jobs = {i for i, job in enumerate(problem.jobs) if cold in job.skills}
    cold_pairs = {i for i, pair in enumerate(problem.pairs) if cold in _pair_skills(pair)}
    separate_cold = bool(cold_jobs or cold_pairs) and bool(plain_vehicles) and bool(cold_vehicles)
    if separate_cold:
        vehicles = plain_vehicles
        items = _items(problem, skip_jobs=cold_jobs, skip_pairs=cold_pairs)
    else:
        vehicles = list(problem.vehicles)
        items = _items(problem, skip_jobs=set(), skip_pairs=set())
    if not items:
        return [problem]
    arcs = [arc for arc in _arcs(items, min(k, len(items), max(1, len(vehicles)))) if arc]
    fleets = _share(vehicles, [sum(item.weight_g for item in arc) for arc in arcs])
    arcs = _carried(problem, arcs, fleets)
    zones = [_zone(problem, fleet, arc) for arc, fleet in zip(arcs, fleets, strict=True)]
    if separate_cold:
        zones.append(
            Problem(
                depot=problem.depot,
                vehicles=tuple(cold_vehicles),
                jobs=tuple(problem.jobs[i] for i in sorted(cold_jobs)),
                pairs=tuple(problem.pairs[i] for i in sorted(cold_pairs)),
            )
        )
    return zones


def _items(problem: Problem, *, skip_jobs: set[int], skip_pairs: set[int]) -> list[_Item]:
    depot = problem.depot
    squeeze = math.cos(math.radians(depot.lat))  # a degree of longitude is shorter

    def angle(place: Location) -> float:
        return math.atan2(place.lat - depot.lat, (place.lng - depot.lng) * squeeze)

    items = [
        _Item(angle(job.location), 1, job.amount_g, False, i)
        for i, job in enumerate(problem.jobs)
        if i not in skip_jobs
    ]
    for i, pair in enumerate(problem.pairs):
        if i not in skip_pairs:
            middle = Location(
                (pair.pickup.location.lat + pair.delivery.location.lat) / 2,
                (pair.pickup.location.lng + pair.delivery.location.lng) / 2,
            )
            items.append(_Item(angle(middle), 2, pair.amount_g, True, i))
    return items


def _arcs(items: list[_Item], k: int) -> list[list[_Item]]:
    """k arcs of about equal stop counts, the circle opened at its widest angular gap."""
    ordered = sorted(items, key=lambda item: (item.angle, item.is_pair, item.index))
    n = len(ordered)
    gaps = [((ordered[(i + 1) % n].angle - ordered[i].angle) % FULL_TURN, i) for i in range(n)]
    cut = max(gaps)[1] + 1
    ordered = ordered[cut:] + ordered[:cut]
    total = sum(item.stops for item in ordered)
    arcs: list[list[_Item]] = [[] for _ in range(k)]
    done = 0
    for item in ordered:
        arcs[min(k - 1, done * k // total)].append(item)
        done += item.stops
    return arcs


def _share(vehicles: list[VehicleSpec], weights: list[int]) -> list[list[VehicleSpec]]:
    """Vehicles to zones in proportion to the zones' weights (by capacity): one each first,
    largest vehicles to the heaviest zones, then each next one where capacity lags most."""
    zones = range(len(weights))
    if sum(weights) == 0:  # weightless work: share by number of zones alone
        weights = [1] * len(weights)
    capacity = sum(v.capacity_g for v in vehicles)
    target = [capacity * w / sum(weights) for w in weights]
    given = [0] * len(weights)
    fleets: list[list[VehicleSpec]] = [[] for _ in zones]
    by_size = sorted(vehicles, key=lambda v: (-v.capacity_g, v.id))
    heaviest_first = sorted(zones, key=lambda z: (-weights[z], z))
    for n, vehicle in enumerate(by_size):
        if n < len(weights):
            zone = heaviest_first[n]
        else:
            zone = max(zones, key=lambda z: (target[z] - given[z], -z))
        fleets[zone].append(vehicle)
        given[zone] += vehicle.capacity_g
    rank = {id(v): i for i, v in enumerate(vehicles)}
    return [sorted(fleet, key=lambda v: rank[id(v)]) for fleet in fleets]


def _carried(
    problem: Problem, arcs: list[list[_Item]], fleets: list[list[VehicleSpec]]
) -> list[list[_Item]]:
    """The arcs, each job or pair that no vehicle of its own zone can carry (too heavy for
    all of them, needing a skill none has, or with a window outside every one's shift: an
    afternoon van's zone given morning pickups) moved to the zone of the largest vehicle of
    the day that can: the engine would report it too heavy, or outside the shifts, while a
    vehicle elsewhere had room. Work no vehicle of the day can carry stays where it is,
    with its reason."""
    moved: list[list[_Item]] = [[] for _ in arcs]
    for here, arc in enumerate(arcs):
        for item in arc:
            if item.is_pair:
                pair = problem.pairs[item.index]
                skills, stops = _pair_skills(pair), (pair.pickup, pair.delivery)
            else:
                skills, stops = problem.jobs[item.index].skills, (problem.jobs[item.index],)

            def carries(vehicle: VehicleSpec, skills=skills, stops=stops, item=item) -> bool:
                return (
                    skills <= vehicle.skills
                    and item.weight_g <= vehicle.capacity_g
                    and all(_in_shift(stop.windows, vehicle.shift) for stop in stops)
                )

            able = [
                (vehicle.capacity_g, -zone, zone)
                for zone, fleet in enumerate(fleets)
                for vehicle in fleet
                if carries(vehicle)
            ]
            if able and not any(carries(vehicle) for vehicle in fleets[here]):
                moved[max(able)[2]].append(item)
            else:
                moved[here].append(item)
    return moved


def _in_shift(windows: Sequence[TimeWindow], shift: TimeWindow) -> bool:
    """Whether one of a stop's windows (none: any time) meets the shift."""
    return not windows or any(w.start <= shift.end and shift.start <= w.end for w in windows)


def _zone(problem: Problem, fleet: list[VehicleSpec], arc: list[_Item]) -> Problem:
    """A zone keeps the problem's own order of jobs, pairs and vehicles."""
    jobs = sorted(item.index for item in arc if not item.is_pair)
    pairs = sorted(item.index for item in arc if item.is_pair)
    return Problem(
        depot=problem.depot,
        vehicles=tuple(fleet),
        jobs=tuple(problem.jobs[i] for i in jobs),
        pairs=tuple(problem.pairs[i] for i in pairs),
    )


class SecondPass(NamedTuple):
    plans: list[Plan]  # one per zone, as `merge` takes them
    offered: int  # plain jobs and pairs the zones left out, offered to the refrigerated vehicles
    taken: int  # of those, how many the refrigerated vehicles serve now


# As reasons.py tries them, most definite first. Work two fleets each left out is, for the
# two together, left out for the less definite reason (the first check that fails for all
# vehicles of both): too heavy for the vans but out of room on the truck is out of room.
_REASONS_MOST_DEFINITE_FIRST = (
    UnassignedReason.NO_VEHICLE,
    UnassignedReason.NO_VEHICLE_WITH_SKILLS,
    UnassignedReason.TOO_HEAVY,
    UnassignedReason.OUTSIDE_SHIFTS,
    UnassignedReason.NO_ROOM,
)


def second_pass(
    zones: Sequence[Problem], plans: Sequence[Plan], solve: Callable[[Problem], Plan]
) -> SecondPass:
    """The zones' plans (`plans[i]` solves `zones[i]`, as `split` made them), with the plain
    work the arcs left out offered to the refrigerated vehicles, which `split` kept for the
    refrigerated work alone: their zone is solved again (`solve`) with that work added. Its
    new plan replaces the old one only if it still serves everything the old one served, so
    refrigerated work never makes way for plain work; what the refrigerated vehicles take
    leaves its arc's unassigned, and what is still left out keeps the less definite of its
    two reasons. Without a refrigerated zone or anything left out, the plans as they are."""
    if len(zones) != len(plans):
        raise ValueError(f"{len(zones)} zones but {len(plans)} plans")
    cold = _cold_zone(zones)
    left = {_key(item) for z, plan in enumerate(plans) if z != cold for item in plan.unassigned}
    if cold is None or not left:
        return SecondPass(list(plans), 0, 0)
    again = solve(_with_left_out(zones, cold, left))
    served = _served(again)
    if not _served(plans[cold]) <= served:
        return SecondPass(list(plans), len(left), 0)
    reasons = {_key(item): item.reason for item in again.unassigned}
    result = []
    for z, plan in enumerate(plans):
        if z == cold:
            result.append(_unassigned(again, [i for i in again.unassigned if _key(i) not in left]))
        else:
            still_left = [
                replace(item, reason=_less_definite(item.reason, reasons.get(_key(item))))
                for item in plan.unassigned
                if _key(item) not in served
            ]
            result.append(_unassigned(plan, still_left))
    return SecondPass(result, len(left), len(served & left))


def _with_left_out(zones: Sequence[Problem], target: int, left: set[tuple[bool, int]]) -> Problem:
    """Zone `target` with the work the other zones left out (`left`: their jobs and pairs,
    by key) added."""
    zone, others = zones[target], [zone for z, zone in enumerate(zones) if z != target]
    return Problem(
        depot=zone.depot,
        vehicles=zone.vehicles,
        jobs=zone.jobs + tuple(j for o in others for j in o.jobs if (False, j.id) in left),
        pairs=zone.pairs + tuple(p for o in others for p in o.pairs if (True, p.id) in left),
    )


def _unassigned(plan: Plan, items: list[Unassigned]) -> Plan:
    return replace(plan, unassigned=tuple(items), summary=plan.summary | {"unassigned": len(items)})


def _cold_zone(zones: Sequence[Problem]) -> int | None:
    """The zone `split` set apart for refrigerated work: refrigerated vehicles and work only,
    on a day whose other zones have plain vehicles. None when the day was not cut that way."""
    cold = Skill.REFRIGERATED

    def all_cold(zone: Problem) -> bool:
        return (
            bool(zone.vehicles and (zone.jobs or zone.pairs))
            and all(cold in v.skills for v in zone.vehicles)
            and all(cold in job.skills for job in zone.jobs)
            and all(cold in _pair_skills(pair) for pair in zone.pairs)
        )

    found = [z for z, zone in enumerate(zones) if all_cold(zone)]
    plain_vehicles = any(cold not in v.skills for zone in zones for v in zone.vehicles)
    return found[0] if len(found) == 1 and plain_vehicles else None


def _key(item: Unassigned) -> tuple[bool, int]:
    return (item.is_pair, item.job_id)


def _served(plan: Plan) -> set[tuple[bool, int]]:
    return {(stop.kind in PAIR_STEPS, stop.job_id) for route in plan.routes for stop in route.stops}


def _less_definite(reason: UnassignedReason, other: UnassignedReason | None) -> UnassignedReason:
    if other is None:
        return reason
    return max(reason, other, key=_REASONS_MOST_DEFINITE_FIRST.index)


def merge(plans: Sequence[Plan]) -> Plan:
    """One plan from the plans of disjoint zones: their routes and unassigned jobs side by
    side, their figures summed. Raises ValueError if two plans share a vehicle or a job
    (the zones overlapped), which would double a stop."""
    vehicles = Counter(route.vehicle_id for plan in plans for route in plan.routes)
    shared = sorted(v for v, n in vehicles.items() if n > 1)
    if shared:
        raise ValueError(f"vehicles in more than one zone: {shared}")
    tasks = Counter(task for plan in plans for task in _tasks(plan))
    doubled = sorted(task for task, n in tasks.items() if n > 1)
    if doubled:
        raise ValueError(f"jobs (is_pair, id) in more than one zone: {doubled}")
    return Plan(
        routes=tuple(route for plan in plans for route in plan.routes),
        unassigned=tuple(item for plan in plans for item in plan.unassigned),
        summary=_merged_summary(plans),
    )


def _tasks(plan: Plan) -> set[tuple[bool, int]]:
    return _served(plan) | {_key(item) for item in plan.unassigned}


def _merged_summary(plans: Sequence[Plan]) -> dict:
    times: Counter[str] = Counter()
    for plan in plans:
        times.update(plan.summary.get("computing_times", {}))
    return {
        "cost": sum(plan.summary.get("cost", 0) for plan in plans),
        "distance_m": sum(route.distance_m for plan in plans for route in plan.routes),
        "duration_s": sum(route.duration_s for plan in plans for route in plan.routes),
        "driving_s": sum(route.driving_s for plan in plans for route in plan.routes),
        "routes": sum(len(plan.routes) for plan in plans),
        "unassigned": sum(len(plan.unassigned) for plan in plans),
        "zones": len(plans),
        "exploration_levels": [plan.summary.get("exploration_level") for plan in plans],
        "computing_times": dict(times),  # summed over the zones: work, not wall clock
    }
