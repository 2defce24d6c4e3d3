"""The improvement rounds with two chains (improve.py): the second chain runs in a helper
process, a start with shorter routes stays within the problem, and a helper that dies costs
its chain, not the plan. Real engine, real processes; no database."""

import random

from logistics.routing import Job, JobKind, Problem, solve
from logistics.routing import improve as improve_module
from logistics.routing.engine import EngineModel
from logistics.routing.improve import _CappedModel, _shorter_routes
from logistics.routing.vroom_solver import _engine
from tests.logistics.test_routing_adapter import (
    DEPOT,
    MATRIX,
    county_day,
    near,
    replay,
    served_key,
    van,
)


def model_of(problem):
    index = EngineModel.locations_of(problem)
    return EngineModel(problem, MATRIX.matrices(list(index)), index)


def test_two_chains_share_the_rounds_and_agree_every_time():
    problem = county_day(11, jobs=50, pairs=4, vehicles=4)
    start = solve(problem, MATRIX, exploration_level=0)

    first = solve(problem, MATRIX, exploration_level=0, rounds=40, seed=3, threads=2)
    second = solve(problem, MATRIX, exploration_level=0, rounds=40, seed=3, threads=2)

    replay(problem, first)
    assert first.summary["improve"]["chains"] == 2
    assert first.summary["improve"]["rounds"] == 40
    assert (first.routes, first.unassigned) == (second.routes, second.unassigned)
    assert served_key(problem, first) <= served_key(problem, start)


def test_one_thread_runs_one_chain():
    problem = county_day(12, jobs=40, pairs=2, vehicles=3)

    plan = solve(problem, MATRIX, exploration_level=0, rounds=20, threads=1)

    replay(problem, plan)
    assert plan.summary["improve"]["chains"] == 1
    assert plan.summary["improve"]["rounds"] == 20


def deliveries(seed, jobs, vehicles):
    """Light deliveries without windows or skills: any van can take any of them."""
    rng = random.Random(seed)
    stops = tuple(
        Job(id=k, kind=JobKind.DELIVERY, location=near(rng), amount_g=5000, service_s=600)
        for k in range(jobs)
    )
    fleet = tuple(van(k) for k in range(vehicles))
    return Problem(depot=DEPOT, vehicles=fleet, jobs=stops)


def test_a_start_with_shorter_routes_keeps_every_stop_on_routes_of_at_most_the_cap():
    problem = deliveries(13, jobs=60, vehicles=12)
    model = model_of(problem)
    answer = _engine(model, 0, 1, None)
    steps = sum(len(route.steps) for route in answer.routes.values())
    cap = round(improve_module.SHORTER_ROUTES * steps / len(answer.routes))

    shorter = _shorter_routes(model, answer)

    assert not answer.unassigned
    assert not shorter.unassigned
    assert max(len(route.steps) for route in shorter.routes.values()) <= cap
    assert len(shorter.routes) > len(answer.routes)
    served = sorted(step.rank for route in shorter.routes.values() for step in route.steps)
    assert served == list(range(60))


def test_a_capped_vehicle_is_the_engine_vehicle_with_a_stop_limit_and_nothing_else():
    """The capped start copies each vroom.Vehicle field by field: should the engine model
    set another field one day, this fails instead of the start silently dropping it."""
    model = model_of(county_day(15, jobs=20, pairs=2, vehicles=3))
    remap = {index: index for index in range(len(model.index))}

    for rank in range(3):
        plain = repr(model._vehicle(rank, remap, ()))
        capped = repr(_CappedModel(model, 7)._vehicle(rank, remap, ()))

        assert capped == plain.removesuffix(")") + ", max_tasks=7)"


def test_no_shorter_start_when_the_fleet_could_not_serve_every_stop_with_the_cap():
    problem = deliveries(13, jobs=60, vehicles=3)
    model = model_of(problem)
    answer = _engine(model, 0, 1, None)
    assert not answer.unassigned

    assert _shorter_routes(model, answer) is answer


def test_a_helper_that_died_costs_its_chain_and_the_next_call_starts_another():
    problem = county_day(14, jobs=40, pairs=2, vehicles=3)
    solve(problem, MATRIX, exploration_level=0, rounds=10)  # starts the helper
    (pid, process), *_ = improve_module._HELPER._pool._processes.items()
    process.kill()
    process.join()

    alone = solve(problem, MATRIX, exploration_level=0, rounds=10)
    again = solve(problem, MATRIX, exploration_level=0, rounds=10)

    replay(problem, alone)
    assert alone.summary["improve"]["chains"] == 1
    replay(problem, again)
    assert again.summary["improve"]["chains"] == 2
    assert improve_module._HELPER._pool._processes.keys() != {pid}
