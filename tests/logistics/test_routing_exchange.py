"""Work one zone left out, offered to a zone whose routes stop at its place anyway
(logistics.routing.exchange), with the real engine."""

import time

import pytest

from logistics.routing import (
    GreatCircleMatrix,
    Job,
    JobKind,
    Location,
    Plan,
    PlannedRoute,
    PlannedStop,
    Problem,
    StepKind,
    TimeWindow,
    Unassigned,
    UnassignedReason,
    VehicleSpec,
    solve,
)
from logistics.routing.exchange import exchange
from logistics.routing.zones import merge

DEPOT = Location(30.2, 119.6)
FARM = Location(30.23, 119.62)  # both zones' vans have work here
ELSEWHERE = Location(30.17, 119.57)
H = 3600


def van(vehicle_id: int, capacity_kg: int = 10) -> VehicleSpec:
    return VehicleSpec(
        id=vehicle_id,
        capacity_g=capacity_kg * 1000,
        shift=TimeWindow(7 * H, 18 * H),
        start=DEPOT,
        end=DEPOT,
    )


def pickup(job_id: int, where: Location, kg: int, priority: int = 0) -> Job:
    return Job(
        id=job_id,
        kind=JobKind.PICKUP,
        location=where,
        amount_g=kg * 1000,
        windows=(TimeWindow(7 * H, 12 * H),),
        priority=priority,
    )


def engine(problem: Problem):
    return solve(problem, GreatCircleMatrix())


def served(plan) -> set[int]:
    return {stop.job_id for route in plan.routes for stop in route.stops}


def two_zones(own_priority: int) -> tuple[list[Problem], list]:
    """Zone 1's 10 kg van fits one of its two 8 kg perishables at the farm; zone 0's van
    stops at the farm for 1 kg and takes 8 kg of goods from elsewhere whose priority is
    `own_priority`."""
    zones = [
        Problem(
            depot=DEPOT,
            vehicles=(van(1),),
            jobs=(pickup(1, FARM, 1), pickup(2, ELSEWHERE, 8, own_priority)),
        ),
        Problem(
            depot=DEPOT,
            vehicles=(van(2),),
            jobs=(pickup(3, FARM, 8, priority=60), pickup(4, FARM, 8, priority=60)),
        ),
    ]
    plans = [engine(zone) for zone in zones]
    assert served(plans[0]) == {1, 2}
    assert len(served(plans[1])) == 1
    assert [item.reason for item in plans[1].unassigned] == [UnassignedReason.NO_ROOM]
    return zones, plans


def test_perishables_another_zone_left_out_make_way_for_goods_that_keep():
    zones, plans = two_zones(own_priority=0)
    [left] = plans[1].unassigned

    after = exchange(zones, plans, engine)

    assert (after.offered, after.taken) == (1, 1)
    assert served(after.plans[0]) == {1, left.job_id}
    assert after.plans[0].unassigned == (Unassigned(2, UnassignedReason.NO_ROOM),)
    assert after.plans[1].routes == plans[1].routes
    assert after.plans[1].unassigned == ()
    assert after.plans[1].summary["unassigned"] == 0
    assert {job.id for job in after.zones[0].jobs} == {1, 2, left.job_id}
    assert {job.id for job in after.zones[1].jobs} == {3, 4} - {left.job_id}
    assert after.zones[0].vehicles == zones[0].vehicles
    day = merge(after.plans)  # every job once, served or left out
    assert sorted([*served(day), *(item.job_id for item in day.unassigned)]) == [1, 2, 3, 4]


def test_goods_as_urgent_keep_their_place():
    zones, plans = two_zones(own_priority=60)

    after = exchange(zones, plans, engine)

    assert (after.offered, after.taken) == (1, 0)
    assert after.zones == zones
    assert after.plans == plans


def test_no_zone_is_solved_again_when_no_route_stops_where_work_was_left_out():
    def refused(problem: Problem):
        raise AssertionError("no solve expected")

    zones, plans = two_zones(own_priority=0)
    away = [
        Problem(depot=DEPOT, vehicles=(van(1),), jobs=(pickup(2, ELSEWHERE, 8),)),
        zones[1],
    ]
    plans = [engine(away[0]), plans[1]]

    assert exchange(away, plans, refused) == (away, plans, 0, 0)
    with pytest.raises(ValueError, match="2 zones but 1 plans"):
        exchange(away, plans[:1], refused)


def test_a_zone_with_a_vehicle_it_did_not_need_takes_what_another_zone_left_out():
    """Zone 0's 5 kg fit one of its two vans; its routes never go to the farm where zone 1
    left 8 kg of perishables out."""
    zones, plans = two_zones(own_priority=0)
    [left] = plans[1].unassigned
    roomy = Problem(depot=DEPOT, vehicles=(van(1), van(5)), jobs=(pickup(2, ELSEWHERE, 5),))
    zones[0], plans[0] = roomy, engine(roomy)
    assert len(plans[0].routes) == 1
    assert FARM not in {stop.location for stop in plans[0].routes[0].stops}

    after = exchange(zones, plans, engine)

    assert (after.offered, after.taken) == (1, 1)
    assert served(after.plans[0]) == {2, left.job_id}
    assert after.plans[0].unassigned == ()
    assert after.plans[1].unassigned == ()
    assert {job.id for job in after.zones[0].jobs} == {2, left.job_id}


def three_kinds_of_work() -> tuple[list[Problem], list]:
    """Zone 0 has a 10 kg van, which takes one of the farm's two 8 kg of perishables, and a
    5 kg van too small for the other. Zone 1's 10 kg van takes 4 kg at the farm and 5 kg
    elsewhere, goods that keep, and has no room for zone 0's perishables beside them."""
    zones = [
        Problem(
            depot=DEPOT,
            vehicles=(van(1), van(2, capacity_kg=5)),
            jobs=(pickup(1, FARM, 8, priority=60), pickup(2, FARM, 8, priority=60)),
        ),
        Problem(
            depot=DEPOT,
            vehicles=(van(3),),
            jobs=(pickup(3, FARM, 4), pickup(4, ELSEWHERE, 5)),
        ),
    ]
    plans = [engine(zone) for zone in zones]
    assert len(served(plans[0])) == 1
    assert {route.vehicle_id for route in plans[0].routes} == {1}
    assert served(plans[1]) == {3, 4}
    return zones, plans


def test_what_a_later_zone_leaves_out_is_offered_to_an_earlier_one_in_another_pass():
    """Zone 1 takes zone 0's perishables at the farm and leaves its own goods that keep
    out; zone 0, whose turn came first, is offered them in a second pass, and its idle 5 kg
    van takes one (4 kg or 5 kg: not both). One pass left both out while that van stayed at
    the center."""
    zones, plans = three_kinds_of_work()
    [left] = plans[0].unassigned

    after = exchange(zones, plans, engine)

    assert served(after.plans[1]) == {left.job_id}
    assert {item.job_id for item in after.plans[1].unassigned} in ({3}, {4})
    [kept] = {3, 4} - {item.job_id for item in after.plans[1].unassigned}
    assert served(after.plans[0]) == {1, 2, kept} - {left.job_id}
    assert {route.vehicle_id for route in after.plans[0].routes} == {1, 2}
    assert after.plans[0].unassigned == ()
    assert after.taken == 2
    assert {job.id for job in after.zones[0].jobs} == {1, 2, kept} - {left.job_id}
    day = merge(after.plans)  # every job once, served or left out
    assert sorted([*served(day), *(item.job_id for item in day.unassigned)]) == [1, 2, 3, 4]


def test_no_pass_after_the_first_once_the_deadline_is_near():
    zones, plans = three_kinds_of_work()

    after = exchange(zones, plans, engine, deadline=time.monotonic())

    assert after.taken == 1
    assert {item.job_id for item in after.plans[1].unassigned} == {3, 4}


def test_work_a_zone_gave_away_is_not_offered_back_to_it():
    """A stand-in engine (a van each takes the most urgent job, wherever it is). Zone 0
    takes zone 1's job 3 at the farm; zone 2 then takes zone 3's job 8 elsewhere and leaves
    its own job 5 at the farm out, which zone 0 takes in a second pass, leaving job 3 out.
    Job 3 is not offered back to zone 1, which gave it away: zone 1 is solved only once,
    when offered zone 0's job 1, and not again for the same offer."""
    solves = []

    def most_urgent(problem: Problem) -> Plan:
        solves.append(({v.id for v in problem.vehicles}, {job.id for job in problem.jobs}))
        return urgent_first(problem)

    zones = [
        Problem(depot=DEPOT, vehicles=(van(10),), jobs=(pickup(1, FARM, 1, 20),)),
        Problem(
            depot=DEPOT,
            vehicles=(van(11),),
            jobs=(pickup(2, FARM, 1, 60), pickup(3, FARM, 1, 30)),
        ),
        Problem(
            depot=DEPOT,
            vehicles=(van(12), van(13)),
            jobs=(pickup(6, ELSEWHERE, 1, 60), pickup(5, FARM, 1, 40)),
        ),
        Problem(
            depot=DEPOT,
            vehicles=(van(14),),
            jobs=(pickup(7, ELSEWHERE, 1, 80), pickup(8, ELSEWHERE, 1, 70)),
        ),
    ]
    plans = [urgent_first(zone) for zone in zones]

    after = exchange(zones, plans, most_urgent)

    assert solves == [({10}, {1, 3}), ({11}, {1, 2}), ({12, 13}, {1, 5, 6, 8}), ({10}, {1, 3, 5})]
    assert [served(plan) for plan in after.plans] == [{5}, {2}, {6, 8}, {7}]
    assert [{item.job_id for item in plan.unassigned} for plan in after.plans] == [
        {1, 3},
        set(),
        set(),
        set(),
    ]
    assert (after.offered, after.taken) == (5, 3)


def urgent_first(problem: Problem) -> Plan:
    """Each van takes one job, the most urgent first."""
    jobs = sorted(problem.jobs, key=lambda job: (-job.priority, job.id))
    taken = jobs[: len(problem.vehicles)]
    return Plan(
        routes=tuple(
            PlannedRoute(
                vehicle_id=vehicle.id,
                stops=(PlannedStop(job.id, StepKind.PICKUP, job.location, 0, 0, 0),),
                departure_s=0,
                return_s=0,
                distance_m=0,
                duration_s=0,
                cost=0.0,
            )
            for vehicle, job in zip(problem.vehicles, taken, strict=False)
        ),
        unassigned=tuple(
            Unassigned(job.id, UnassignedReason.NO_ROOM) for job in jobs[len(taken) :]
        ),
        summary={},
    )
