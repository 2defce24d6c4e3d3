"""Splitting a large day into geographic zones and merging their plans (logistics.routing
.zones), and problems and plans as JSON (logistics.routing.codec); the plans come from the
real engine."""

import json
import math
import random
from collections import Counter

import pytest

from logistics.routing import (
    GreatCircleMatrix,
    Job,
    JobKind,
    Location,
    PickupDelivery,
    Problem,
    Skill,
    StepKind,
    TimeWindow,
    UnassignedReason,
    VehicleSpec,
    solve,
)
from logistics.routing.codec import plan_from_data, problem_from_data, to_data
from logistics.routing.zones import merge, split, stops_of

DEPOT = Location(30.2, 119.6)
H = 3600
COLD = frozenset({Skill.REFRIGERATED})


def place(rnd: random.Random, km: float | None = None, angle: float | None = None) -> Location:
    km = rnd.uniform(2, 20) if km is None else km
    angle = rnd.uniform(0, 2 * math.pi) if angle is None else angle
    return Location(
        round(DEPOT.lat + km * math.sin(angle) / 111.32, 6),
        round(DEPOT.lng + km * math.cos(angle) / (111.32 * math.cos(math.radians(DEPOT.lat))), 6),
    )


def van(vehicle_id: int, *, cold: bool = False, capacity_kg: int = 500) -> VehicleSpec:
    return VehicleSpec(
        id=vehicle_id,
        capacity_g=capacity_kg * 1000,
        shift=TimeWindow(7 * H, 19 * H),
        start=DEPOT,
        end=DEPOT,
        skills=COLD if cold else frozenset(),
    )


def job(job_id: int, where: Location, *, kg: int = 20, cold: bool = False) -> Job:
    pickup = job_id % 2 == 0
    return Job(
        id=job_id,
        kind=JobKind.PICKUP if pickup else JobKind.DELIVERY,
        location=where,
        amount_g=kg * 1000,
        windows=(TimeWindow(7 * H, 11 * H) if pickup else TimeWindow(9 * H, 17 * H),),
        skills=COLD if cold else frozenset(),
    )


def pair(pair_id: int, rnd: random.Random, *, cold: bool = False) -> PickupDelivery:
    farm, buyer = place(rnd), place(rnd)
    return PickupDelivery(
        id=pair_id,
        pickup=Job(0, JobKind.PICKUP, farm, 10_000, 300, (TimeWindow(7 * H, 11 * H),)),
        delivery=Job(0, JobKind.DELIVERY, buyer, 10_000, 300, (TimeWindow(9 * H, 17 * H),)),
        amount_g=10_000,
        skills=COLD if cold else frozenset(),
    )


def county_day(*, jobs: int = 40, pairs: int = 4, cold_jobs: int = 3, seed: int = 1) -> Problem:
    """Jobs all around the depot, a few same-day pairs, a few refrigerated jobs and one
    refrigerated pair (when any job is); five plain vans and one refrigerated."""
    rnd = random.Random(seed)
    return Problem(
        depot=DEPOT,
        vehicles=(van(1, cold=True), *(van(i) for i in range(2, 7))),
        jobs=tuple(
            job(i, place(rnd), kg=rnd.randint(5, 60), cold=i <= cold_jobs)
            for i in range(1, jobs + 1)
        ),
        pairs=tuple(pair(1000 + p, rnd, cold=p == 0 and cold_jobs > 0) for p in range(pairs)),
    )


def ids(zones: list[Problem]) -> tuple[Counter, Counter, Counter]:
    return (
        Counter(job.id for zone in zones for job in zone.jobs),
        Counter(p.id for zone in zones for p in zone.pairs),
        Counter(v.id for zone in zones for v in zone.vehicles),
    )


def test_every_job_pair_and_vehicle_lands_in_exactly_one_zone():
    day = county_day()
    zones = split(day, 3)
    jobs, pairs, vehicles = ids(zones)
    assert jobs == Counter(job.id for job in day.jobs)
    assert pairs == Counter(p.id for p in day.pairs)
    assert vehicles == Counter(v.id for v in day.vehicles)
    assert len(zones) == 4  # three arcs and the refrigerated zone
    assert all(zone.depot == DEPOT and zone.vehicles for zone in zones)
    # pairs stay whole: the very same PickupDelivery, pickup and delivery together
    assert {p for zone in zones for p in zone.pairs} == set(day.pairs)


def test_refrigerated_work_goes_only_with_the_refrigerated_vehicle():
    day = county_day()
    *arcs, cold = split(day, 3)
    assert [v.id for v in cold.vehicles] == [1]
    assert [job.id for job in cold.jobs] == [1, 2, 3]
    assert [p.id for p in cold.pairs] == [1000]
    for zone in arcs:
        assert all(Skill.REFRIGERATED not in v.skills for v in zone.vehicles)
        assert all(not job.skills for job in zone.jobs)
        assert all(not p.skills for p in zone.pairs)


def test_without_refrigerated_work_the_refrigerated_vehicle_serves_an_arc():
    day = county_day(cold_jobs=0, pairs=0)
    zones = split(day, 2)
    assert len(zones) == 2
    assert ids(zones)[2] == Counter(range(1, 7))


def test_with_only_refrigerated_vehicles_everything_is_swept_together():
    day = county_day()
    day = Problem(depot=DEPOT, vehicles=(van(1, cold=True), van(2, cold=True)), jobs=day.jobs)
    zones = split(day, 2)
    assert len(zones) == 2
    assert sum(len(zone.jobs) for zone in zones) == len(day.jobs)
    assert all(len(zone.vehicles) == 1 for zone in zones)


def test_refrigerated_work_without_a_refrigerated_vehicle_waits_with_its_reason():
    """It is swept with the rest, not left in a zone of its own without vehicles: such a
    zone would say there is no vehicle at all, and the day has five."""
    day = county_day()
    day = Problem(depot=DEPOT, vehicles=day.vehicles[1:], jobs=day.jobs, pairs=day.pairs)
    zones = split(day, 2)
    assert len(zones) == 2
    assert all(zone.vehicles for zone in zones)
    assert ids(zones) == (
        Counter(job.id for job in day.jobs),
        Counter(p.id for p in day.pairs),
        Counter(range(2, 7)),
    )
    plan = merge([solve(zone, GreatCircleMatrix()) for zone in zones])
    cold = {(False, 1), (False, 2), (False, 3), (True, 1000)}
    assert {(item.is_pair, item.job_id) for item in plan.unassigned} >= cold
    assert {item.reason for item in plan.unassigned if (item.is_pair, item.job_id) in cold} == {
        UnassignedReason.NO_VEHICLE_WITH_SKILLS
    }


def test_a_day_without_any_vehicle_is_one_zone_whose_work_has_no_vehicle():
    day = county_day()
    day = Problem(depot=DEPOT, vehicles=(), jobs=day.jobs, pairs=day.pairs)
    [zone] = split(day, 3)
    assert zone == day
    plan = solve(zone, GreatCircleMatrix())
    assert plan.routes == ()
    assert len(plan.unassigned) == len(day.jobs) + len(day.pairs)
    assert {item.reason for item in plan.unassigned} == {UnassignedReason.NO_VEHICLE}


def test_zones_are_arcs_around_the_depot_with_equal_stop_counts():
    day = county_day(jobs=60, pairs=6, cold_jobs=0)
    zones = split(day, 4)
    counts = [stops_of(zone) for zone in zones]
    assert sum(counts) == stops_of(day) == 72
    assert max(counts) - min(counts) <= 2  # a pair is two stops
    # Around the circle, each zone's places form one run: the zone changes exactly 4 times.
    zone_of = {job.id: z for z, zone in enumerate(zones) for job in zone.jobs}
    by_angle = sorted(
        day.jobs,
        key=lambda j: math.atan2(
            j.location.lat - DEPOT.lat,
            (j.location.lng - DEPOT.lng) * math.cos(math.radians(DEPOT.lat)),
        ),
    )
    labels = [zone_of[j.id] for j in by_angle]
    assert sum(a != b for a, b in zip(labels, labels[1:] + labels[:1], strict=True)) == 4


def test_the_circle_opens_at_its_emptiest_direction():
    """Two clusters, east and west (where the angle jumps from pi to -pi): the circle
    opens between them, so the two zones are the two clusters, not a zone of half of
    each."""
    rnd = random.Random(3)
    east = [job(i, place(rnd, angle=rnd.uniform(-0.3, 0.3))) for i in range(1, 11)]
    west = [job(i, place(rnd, angle=math.pi + rnd.uniform(-0.3, 0.3))) for i in range(11, 21)]
    day = Problem(depot=DEPOT, vehicles=(van(1), van(2)), jobs=tuple(east + west))
    zones = split(day, 2)
    assert {frozenset(j.id for j in zone.jobs) for zone in zones} == {
        frozenset(range(1, 11)),
        frozenset(range(11, 21)),
    }


def test_vehicles_are_shared_by_the_zones_weight():
    rnd = random.Random(5)
    east = [job(i, place(rnd, angle=rnd.uniform(-0.3, 0.3)), kg=100) for i in range(1, 11)]
    west = [
        job(i, place(rnd, angle=math.pi + rnd.uniform(-0.3, 0.3)), kg=10) for i in range(11, 21)
    ]
    day = Problem(depot=DEPOT, vehicles=tuple(van(i) for i in range(1, 7)), jobs=tuple(east + west))
    heavy, light = sorted(split(day, 2), key=lambda zone: -sum(j.amount_g for j in zone.jobs))
    assert (len(heavy.vehicles), len(light.vehicles)) == (5, 1)


def test_fewer_vehicles_than_zones_makes_fewer_zones_each_with_a_vehicle():
    day = county_day(cold_jobs=0, pairs=0)
    day = Problem(depot=DEPOT, vehicles=(van(7), van(8)), jobs=day.jobs)
    zones = split(day, 5)
    assert [len(zone.vehicles) for zone in zones] == [1, 1]
    assert sum(len(zone.jobs) for zone in zones) == len(day.jobs)


def test_split_is_deterministic_and_k_must_be_positive():
    day = county_day()
    assert split(day, 3) == split(day, 3)
    assert len(split(day, 1)) == 2  # the one arc and the refrigerated zone
    with pytest.raises(ValueError, match="at least 1"):
        split(day, 0)
    empty = Problem(depot=DEPOT, vehicles=(van(1),))
    assert split(empty, 3) == [empty]


def test_merged_plan_keeps_every_route_and_every_unassigned_job():
    day = county_day(jobs=50, cold_jobs=6)
    # little room: some work is left out, with its reason
    day = Problem(
        depot=DEPOT,
        vehicles=(van(1, cold=True, capacity_kg=60), *(van(i, capacity_kg=250) for i in (2, 3))),
        jobs=day.jobs,
        pairs=day.pairs,
    )
    zones = split(day, 2)
    plans = [solve(zone, GreatCircleMatrix()) for zone in zones]
    plan = merge(plans)
    assert plan.routes == tuple(r for p in plans for r in p.routes)
    assert plan.unassigned == tuple(u for p in plans for u in p.unassigned)
    assert plan.unassigned  # the scenario is meant to leave something out
    served = Counter(
        (stop.kind in (StepKind.PAIR_PICKUP, StepKind.PAIR_DELIVERY), stop.job_id)
        for route in plan.routes
        for stop in route.stops
    )
    left = Counter((item.is_pair, item.job_id) for item in plan.unassigned)
    every = {(False, job.id) for job in day.jobs} | {(True, p.id) for p in day.pairs}
    assert set(served) | set(left) == every
    assert not set(served) & set(left)
    assert all(n == (2 if is_pair else 1) for (is_pair, _id), n in served.items())
    assert set(left.values()) == {1}
    assert len({route.vehicle_id for route in plan.routes}) == len(plan.routes)
    for route in plan.routes:
        capacity = next(v.capacity_g for v in day.vehicles if v.id == route.vehicle_id)
        assert all(stop.load_g <= capacity for stop in route.stops)
    summary = plan.summary
    assert summary["routes"] == len(plan.routes)
    assert summary["unassigned"] == len(plan.unassigned)
    assert summary["zones"] == len(zones)
    assert summary["cost"] == pytest.approx(sum(p.summary["cost"] for p in plans))
    assert summary["distance_m"] == sum(p.summary["distance_m"] for p in plans)


def test_merge_refuses_zones_that_overlap():
    day = county_day(jobs=12, pairs=0, cold_jobs=0)
    plan = solve(day, GreatCircleMatrix())
    with pytest.raises(ValueError, match="more than one zone"):
        merge([plan, plan])
    assert merge([]).routes == ()


def test_problems_and_plans_survive_json_unchanged():
    day = county_day(jobs=20)
    plan = solve(day, GreatCircleMatrix())
    assert plan.unassigned or plan.routes
    assert problem_from_data(json.loads(json.dumps(to_data(day)))) == day
    assert plan_from_data(json.loads(json.dumps(to_data(plan)))) == plan


def test_a_plan_stored_before_driving_was_kept_apart_reads_its_whole_duration():
    """A zone's plan saved by the previous release held the driving time as duration_s."""
    plan = solve(county_day(jobs=20), GreatCircleMatrix())
    data = json.loads(json.dumps(to_data(plan)))
    for route in data["routes"]:
        route["duration_s"] = route.pop("driving_s")
    assert plan_from_data(data) == plan
    assert all(route.duration_s > route.driving_s for route in plan.routes)
