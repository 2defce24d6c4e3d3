"""Solve a Problem with VROOM (pyvroom) and map the answer back to a Plan.

Every stop becomes a VROOM job (a pickup's goods ride back to the depot, a delivery's leave
with the vehicle) and every PickupDelivery a VROOM shipment; vehicles carry one capacity
dimension in grams, their shift as time window, skills as small ints and their cost per km
as VROOM's per-vehicle `per_km` over the distance matrix (time is free: it only has to fit).
VROOM says which jobs it left out but not why; reasons.py works that out.
"""

import math
import time
from collections import Counter
from datetime import timedelta

import vroom

from logistics.routing.engine import (
    COST_SCALE,
    EngineAnswer,
    EngineError,
    EngineModel,
    EngineRoute,
    TaskKind,
    read_answer,
)
from logistics.routing.improve import improve
from logistics.routing.matrix import MatrixProvider
from logistics.routing.problem import (
    JobKind,
    Plan,
    PlannedRoute,
    PlannedStop,
    Problem,
    StepKind,
    Unassigned,
)
from logistics.routing.reasons import unassigned_reason

# Exploration level (0–5: VROOM's number of searches and local-search depth) by number of
# stops, when the caller does not choose: the lowest level within 1-2 % of the best single
# solve with no more stops left out, on seeded county days at 2 threads on an idle machine
# (bench/SCALE_RESULTS.md): 100 stops 1.6 s at level 4 (5 costs no more), 250 stops 20.9 s at
# 4, 500 stops 26 s at 2 (4 is 1 % better but takes 89 s). Past 600 stops a day is split into
# zones (logistics.services.schedule_zones), and one solve stays at level 0.
EXPLORATION_BY_STOPS = ((150, 5), (300, 4), (600, 2))
EXPLORATION_LARGEST = 0
FINISH_RESERVE_S = 0.04  # of a budget, kept for reading and handing back the plan
ENGINE_ERRORS = (
    vroom._vroom.VroomInputException,
    vroom._vroom.VroomInternalException,
    vroom._vroom.VroomRoutingException,
)


def exploration_level_for(stops: int) -> int:
    return next(
        (level for size, level in EXPLORATION_BY_STOPS if stops <= size), EXPLORATION_LARGEST
    )


def solve(
    problem: Problem,
    matrix: MatrixProvider,
    *,
    exploration_level: int | None = None,
    threads: int = 2,
    timeout_s: float | None = None,
    budget_s: float | None = None,
    rounds: int | None = None,
    seed: int = 0,
) -> Plan:
    """Plan the day: VROOM's best answer at `exploration_level` (0–5; by size when None)
    on `threads` threads, stopped after `timeout_s` if given. With `budget_s`, whatever is
    left of that many seconds (counted from the call) after VROOM answers is spent
    improving the plan (improve.py; with `threads` ≥ 2 in two processes), at most `rounds`
    ruin-and-recreate rounds in all if given.
    A plan improved for a budget depends on how many rounds fit in it; one improved for
    `rounds` alone (no budget) is reproducible, like one without improvement.
    Raises ValueError for a malformed problem, MatrixError if the matrix provider fails,
    EngineError if VROOM refuses the input."""
    started = time.monotonic()
    _check(problem)
    stops = len(problem.jobs) + 2 * len(problem.pairs)
    level = exploration_level_for(stops) if exploration_level is None else exploration_level
    if not 0 <= level <= 5:
        raise ValueError(f"exploration_level must be within 0..5, not {level}")
    if not stops:
        return Plan(routes=(), summary=_summary(EngineAnswer({}, frozenset(), {}), level, {}))
    index = EngineModel.locations_of(problem)
    matrices = matrix.matrices(list(index))
    matrix_s = time.monotonic() - started
    model = EngineModel(problem, matrices, index)
    # With a budget and no engine timeout, the engine may use the whole budget at most.
    answer = _engine(model, level, threads, budget_s if timeout_s is None else timeout_s)
    engine_s = time.monotonic() - started - matrix_s
    summary = {"matrix_ms": round(matrix_s * 1000), "engine_ms": round(engine_s * 1000)}
    if budget_s is not None or rounds is not None:
        # The rounds stop a little early: the plan still has to be read and handed back
        # within the budget (measured at 10-20 ms on the Solomon instances).
        deadline = math.inf if budget_s is None else started + budget_s - FINISH_RESERVE_S
        answer, stats = improve(
            model, answer, deadline=deadline, max_rounds=rounds, seed=seed, workers=threads
        )
        summary["improve_ms"] = round(stats.seconds * 1000)
        summary["improve"] = {
            "rounds": stats.rounds,
            "accepted": stats.accepted,
            "improved": stats.improved,
            "chains": stats.chains,
        }
    return _plan(model, answer, level, summary)


def _plan(model: EngineModel, answer: EngineAnswer, level: int, extra: dict) -> Plan:
    improved = extra.pop("improve", None)
    summary = _summary(answer, level, extra)
    return Plan(
        routes=tuple(_route(model, route) for route in answer.routes.values()),
        unassigned=tuple(
            Unassigned(
                job_id=_caller_id(model, kind, rank),
                reason=unassigned_reason(model, kind, rank),
                is_pair=kind is TaskKind.PAIR,
            )
            for kind, rank in sorted(answer.unassigned)
        ),
        summary=summary | ({"improve": improved} if improved else {}),
    )


def _check(problem: Problem) -> None:
    """Refuse what the engine would misread: duplicate ids, negative amounts, priorities
    outside 0..100."""
    for name, ids in (
        ("vehicle", [v.id for v in problem.vehicles]),
        ("job", [job.id for job in problem.jobs]),
        ("pair", [pair.id for pair in problem.pairs]),
    ):
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate {name} ids: {duplicates}")
    amounts = [job.amount_g for job in problem.jobs] + [p.amount_g for p in problem.pairs]
    amounts += [v.capacity_g for v in problem.vehicles]
    if any(amount < 0 for amount in amounts):
        raise ValueError("amounts and capacities must not be negative")
    priorities = [job.priority for job in problem.jobs] + [p.priority for p in problem.pairs]
    if any(not 0 <= priority <= 100 for priority in priorities):
        raise ValueError("priorities must be within 0..100")


def _engine(model: EngineModel, level: int, threads: int, timeout_s: float | None):
    if not model.problem.vehicles:
        return EngineAnswer(routes={}, unassigned=frozenset(model.tasks), computing_times={})
    timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
    try:
        solution = model.input().solve(exploration_level=level, nb_threads=threads, timeout=timeout)
    except ENGINE_ERRORS as error:
        raise EngineError(str(error)) from error
    return read_answer(solution)


def _route(model: EngineModel, route: EngineRoute) -> PlannedRoute:
    problem = model.problem
    stops = []
    for step in route.steps:
        if step.type == "job":
            job = problem.jobs[step.rank]
            kind = StepKind.PICKUP if job.kind is JobKind.PICKUP else StepKind.DELIVERY
            job_id, location = job.id, job.location
        else:
            pair = problem.pairs[step.rank]
            part = pair.pickup if step.type == "pickup" else pair.delivery
            kind = StepKind.PAIR_PICKUP if step.type == "pickup" else StepKind.PAIR_DELIVERY
            job_id, location = pair.id, part.location
        stops.append(
            PlannedStop(
                job_id=job_id,
                kind=kind,
                location=location,
                arrival_s=step.arrival,
                service_s=step.service,
                load_g=step.load,
                wait_s=step.waiting,
            )
        )
    return PlannedRoute(
        vehicle_id=problem.vehicles[route.vehicle].id,
        stops=tuple(stops),
        departure_s=route.departure,
        return_s=route.arrival,
        distance_m=route.distance,
        duration_s=route.duration + route.service + route.waiting,
        cost=route.cost / COST_SCALE,
        driving_s=route.duration,
    )


def _caller_id(model: EngineModel, kind: TaskKind, rank: int) -> int:
    return model.problem.jobs[rank].id if kind is TaskKind.JOB else model.problem.pairs[rank].id


def _summary(answer: EngineAnswer, level: int, times: dict) -> dict:
    routes = answer.routes.values()
    return {
        "cost": sum(route.cost for route in routes) / COST_SCALE,
        "distance_m": sum(route.distance for route in routes),
        "duration_s": sum(route.duration + route.service + route.waiting for route in routes),
        "driving_s": sum(route.duration for route in routes),
        "routes": len(answer.routes),
        "unassigned": len(answer.unassigned),
        "exploration_level": level,
        "computing_times": {**answer.computing_times, **times},
    }
