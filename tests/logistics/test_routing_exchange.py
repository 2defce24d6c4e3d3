"""Work one zone left out, offered to a zone whose routes stop at its place anyway
(logistics.routing.exchange), with the real engine."""

import pytest

from logistics.routing import (
    GreatCircleMatrix,
    Job,
    JobKind,
    Location,
    Problem,
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
