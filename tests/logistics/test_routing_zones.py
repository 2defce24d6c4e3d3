"""Splitting a large day into geographic zones and merging their plans (logistics.routing
.zones), and problems and plans as JSON (logistics.routing.codec); the plans come from the
real engine."""

import json
import math
import random
from collections import Counter
from dataclasses import replace

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
    Unassigned,
    UnassignedReason,
    VehicleSpec,
    solve,
)
from logistics.routing.codec import plan_from_data, problem_from_data, to_data
from logistics.routing.zones import merge, second_pass, split, stops_of

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


def solved(zones: list[Problem]) -> list:
    return [solve(zone, GreatCircleMatrix()) for zone in zones]


def solve_part(problem: Problem):
    return solve(problem, GreatCircleMatrix())


def left_out(plan) -> set[tuple[bool, int]]:
    return {(item.is_pair, item.job_id) for item in plan.unassigned}


def test_plain_work_the_vans_leave_out_rides_in_the_refrigerated_vehicles_spare_room():
    """Two small vans (50 kg out, 50 kg back each) for 400 kg of plain work and a big
    refrigerated truck with two small refrigerated jobs: the split keeps the truck for
    those two, so the vans' zones leave half their work out; the second pass puts it on
    the truck."""
    rnd = random.Random(7)
    day = Problem(
        depot=DEPOT,
        vehicles=(van(1, cold=True), van(2, capacity_kg=50), van(3, capacity_kg=50)),
        jobs=tuple(job(i, place(rnd, km=rnd.uniform(2, 8)), cold=i <= 2) for i in range(1, 23)),
    )
    zones = split(day, 2)
    plans = solved(zones)
    before = merge(plans)
    assert len(before.unassigned) >= 10  # the vans take 200 kg of 400
    assert {item.reason for item in before.unassigned} == {UnassignedReason.NO_ROOM}
    [truck] = [route for route in before.routes if route.vehicle_id == 1]
    assert {stop.job_id for stop in truck.stops} == {1, 2}

    second = second_pass(zones, plans, solve_part)
    plan = merge(second.plans)

    assert plan.unassigned == ()
    assert (second.offered, second.taken) == (len(before.unassigned), len(before.unassigned))
    [truck] = [route for route in plan.routes if route.vehicle_id == 1]
    assert {1, 2} < {stop.job_id for stop in truck.stops}
    assert all(stop.load_g <= 500_000 for stop in truck.stops)
    vans = {r.vehicle_id: r for r in before.routes if r.vehicle_id != 1}
    assert {r.vehicle_id: r for r in plan.routes if r.vehicle_id != 1} == vans  # as they were
    assert plan.summary["unassigned"] == 0


def test_the_second_pass_never_takes_refrigerated_work_off_for_plain_work():
    """The truck picks up the 60 kg of milk or the 120 kg too heavy for the vans, not both;
    the plain load weighs more in the engine's eyes (priority 100), yet the milk keeps its
    place."""
    rnd = random.Random(11)
    heavy = replace(job(6, place(rnd, km=5), kg=120), priority=100)
    day = Problem(
        depot=DEPOT,
        vehicles=(van(1, cold=True, capacity_kg=130), *(van(i, capacity_kg=100) for i in (2, 3))),
        jobs=(
            job(10, place(rnd, km=5), kg=60, cold=True),
            *(job(i, place(rnd, km=5), kg=10) for i in range(1, 5)),
            heavy,
        ),
    )
    zones = split(day, 2)
    plans = solved(zones)
    assert left_out(merge(plans)) == {(False, 6)}
    assert solve_part(replace(zones[-1], jobs=(*zones[-1].jobs, heavy))).unassigned == (
        Unassigned(10, UnassignedReason.NO_ROOM),  # what the engine alone would do
    )

    second = second_pass(zones, plans, solve_part)

    assert second.plans == plans
    assert (second.offered, second.taken) == (1, 0)


def test_work_still_left_out_keeps_the_less_definite_of_its_two_reasons():
    """Too heavy for the vans, and no room left on the truck, which could carry it: the day
    had no room for it, it was not too heavy for the day."""
    rnd = random.Random(11)
    day = Problem(
        depot=DEPOT,
        vehicles=(van(1, cold=True, capacity_kg=130), *(van(i, capacity_kg=100) for i in (2, 3))),
        jobs=(
            replace(job(10, place(rnd, km=5), kg=60, cold=True), priority=60),
            *(job(i, place(rnd, km=5), kg=10) for i in range(1, 5)),
            job(6, place(rnd, km=5), kg=120),
            job(8, place(rnd, km=5), kg=150),  # too heavy for the truck as well
        ),
    )
    zones = split(day, 2)
    plans = solved(zones)
    reasons = {item.job_id: item.reason for item in merge(plans).unassigned}
    assert reasons == {6: UnassignedReason.TOO_HEAVY, 8: UnassignedReason.TOO_HEAVY}

    second = second_pass(zones, plans, solve_part)
    plan = merge(second.plans)

    reasons = {item.job_id: item.reason for item in plan.unassigned}
    assert reasons == {6: UnassignedReason.NO_ROOM, 8: UnassignedReason.TOO_HEAVY}
    assert (second.offered, second.taken) == (2, 0)
    [truck] = [route for route in plan.routes if route.vehicle_id == 1]
    assert [stop.job_id for stop in truck.stops] == [10]


def test_without_a_refrigerated_zone_or_anything_left_out_there_is_no_second_pass():
    def refused(problem: Problem):
        raise AssertionError("no second pass expected")

    day = county_day(cold_jobs=0, pairs=0)  # the refrigerated van serves an arc
    day = replace(day, vehicles=tuple(replace(v, capacity_g=60_000) for v in day.vehicles))
    zones = split(day, 2)
    plans = solved(zones)
    assert merge(plans).unassigned
    assert second_pass(zones, plans, refused) == (plans, 0, 0)
    roomy = county_day(jobs=12, pairs=0)
    zones = split(roomy, 2)
    plans = solved(zones)
    assert not merge(plans).unassigned
    assert second_pass(zones, plans, refused) == (plans, 0, 0)
    with pytest.raises(ValueError, match="2 zones but 1 plans"):
        second_pass(zones[:2], plans[:1], refused)


def test_a_job_too_heavy_for_its_arcs_vehicles_goes_to_a_zone_with_one_that_carries_it():
    rnd = random.Random(7)
    east = [
        job(2, place(rnd, km=8, angle=0.1), kg=350),  # only the truck carries it
        job(4, place(rnd, km=8, angle=-0.1), kg=10),
    ]
    west = [job(i, place(rnd, km=8, angle=math.pi + 0.1 * i), kg=200) for i in (6, 8)]
    truck = van(1, capacity_kg=1000)
    day = Problem(
        depot=DEPOT,
        vehicles=(truck, van(2, capacity_kg=100), van(3, capacity_kg=100)),
        jobs=tuple(east + west),
    )
    matrix = GreatCircleMatrix()

    zones = split(day, 2)
    whole = solve(day, matrix)
    merged = merge([solve(zone, matrix) for zone in zones])

    assert whole.unassigned == ()  # the truck alone takes the 760 kg
    heavy = next(zone for zone in zones if any(j.id == 2 for j in zone.jobs))
    assert truck in heavy.vehicles
    assert merged.unassigned == ()


def test_a_pickup_its_zones_vehicles_work_too_late_for_goes_to_a_zone_with_a_morning_shift():
    rnd = random.Random(8)
    east = [job(i, place(rnd, km=8, angle=0.1 * i), kg=100) for i in (2, 4)]  # 07:00-11:00
    west = [job(i, place(rnd, km=8, angle=math.pi + 0.1 * i), kg=50) for i in (6, 8)]
    afternoon = replace(van(1, capacity_kg=500), shift=TimeWindow(13 * H, 19 * H))
    morning = van(2, capacity_kg=300)
    day = Problem(depot=DEPOT, vehicles=(afternoon, morning), jobs=tuple(east + west))
    matrix = GreatCircleMatrix()

    zones = split(day, 2)
    whole = solve(day, matrix)
    merged = merge([solve(zone, matrix) for zone in zones])

    assert whole.unassigned == ()  # the morning van alone picks all four up
    for zone in zones:
        assert not zone.jobs or morning in zone.vehicles
    assert merged.unassigned == ()
