"""Ruin and recreate around the engine: spend spare seconds improving a plan.

VROOM runs its heuristics and one local-search descent, then stops in a local optimum. With
time to spare, each round here picks a random stop, takes the few routes serving the stops
nearest to it, removes some of those stops, and asks the engine to re-plan just those
vehicles (plus an idle one) from what is left — the engine re-inserts the removed stops and
runs its local search on that part of the day. The result replaces the old routes if it
serves at least as much priority and as many stops, and costs less than the best plan so
far plus a shrinking tolerance (record-to-record travel, so the search can leave a local
optimum early on and settles by the deadline). Every constraint stays the engine's: each
candidate is a real VROOM solution of a real part of the problem.
"""

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import vroom

from logistics.routing.engine import (
    EngineAnswer,
    EngineModel,
    EngineRoute,
    Step,
    Task,
    TaskKind,
    read_answer,
    run,
)

# Tuned on 17 Solomon instances (bench/SOLOMON_RESULTS.md): 4 routes and 5–25 stops per
# round beat 2–3 routes / 3–15 stops and 5 routes / 10–35 stops at equal time.
ROUTES_PER_ROUND = 4  # routes re-planned together
IDLE_PER_ROUND = 1  # unused vehicles offered to each round
REMOVED = (5, 25)  # stops taken out per round, drawn uniformly
UNASSIGNED_PER_ROUND = 10  # nearest unassigned stops offered to each round
TOLERANCE = 0.0005  # record-to-record: accept up to best cost × (1 + 0.05 %), shrinking to 0
ENGINE_ERRORS = (vroom._vroom.VroomInputException, vroom._vroom.VroomInternalException)


@dataclass
class Stats:
    rounds: int = 0
    accepted: int = 0
    improved: int = 0
    refused: int = 0  # the engine rejected a part (e.g. a trimmed route it found infeasible)
    seconds: float = 0.0


@dataclass
class _Plan:
    routes: dict[int, EngineRoute]
    unassigned: set[Task]

    def copy(self) -> "_Plan":
        return _Plan(dict(self.routes), set(self.unassigned))


def improve(
    model: EngineModel,
    answer: EngineAnswer,
    *,
    deadline: float,
    seed: int = 0,
    max_rounds: int | None = None,
) -> tuple[EngineAnswer, Stats]:
    """Improve `answer` until `deadline` (a time.monotonic() value, or math.inf) or after
    `max_rounds` rounds; with a round limit and no deadline the result is reproducible."""
    stats = Stats()
    started = time.monotonic()
    if len(model.tasks) < 2 or not model.problem.vehicles or started >= deadline:
        return answer, stats
    if max_rounds is None and deadline == math.inf:
        raise ValueError("improve needs a deadline or a number of rounds")
    rng = random.Random(seed)  # noqa: S311 - a search, not a secret
    search = _Search(model)
    current = _Plan(dict(answer.routes), set(answer.unassigned))
    best, best_key = current.copy(), search.key(current)
    while (now := time.monotonic()) < deadline and stats.rounds != max_rounds:
        stats.rounds += 1
        left = [(deadline - now) / (deadline - started)] if deadline < math.inf else []
        left += [1 - stats.rounds / max_rounds] if max_rounds else []
        tolerance = TOLERANCE * min(left)
        outcome = search.round(current, best_key, tolerance, rng)
        if outcome is None:
            stats.refused += 1
            continue
        if outcome:
            stats.accepted += 1
            key = search.key(current)
            if key < best_key:
                best, best_key = current.copy(), key
                stats.improved += 1
    stats.seconds = time.monotonic() - started
    improved = EngineAnswer(
        routes=dict(sorted(best.routes.items())),
        unassigned=frozenset(best.unassigned),
        computing_times=answer.computing_times,
    )
    return improved, stats


class _Search:
    def __init__(self, model: EngineModel) -> None:
        self.model = model
        jobs, pairs = model.problem.jobs, model.problem.pairs
        self.priority = {
            (kind, rank): jobs[rank].priority if kind is TaskKind.JOB else pairs[rank].priority
            for kind, rank in model.tasks
        }
        self.near = self._neighbours()
        self.kinds = self._vehicle_kinds()

    def key(self, plan: _Plan) -> tuple[int, int, int]:
        """Lower is better: more priority served, then more stops, then less cost."""
        served = [_task(step) for route in plan.routes.values() for step in route.plan]
        tasks = set(served)
        return (
            -sum(self.priority[t] for t in tasks),
            -len(tasks),
            sum(route.cost for route in plan.routes.values()),
        )

    def round(
        self, current: _Plan, best_key: tuple[int, int, int], tolerance: float, rng: random.Random
    ) -> bool | None:
        """One ruin-and-recreate round; True if `current` changed, None if the engine
        refused the part."""
        vehicles, tasks, initial = self._ruin(current, rng)
        try:
            # One search per round: two in parallel bought no more per second here.
            solution = run(
                self.model.input(vehicles, tasks, initial), searches=1, depth=1, threads=1
            )
        except ENGINE_ERRORS:
            return None
        part = read_answer(solution)
        before = _Plan({v: current.routes[v] for v in vehicles if v in current.routes}, set())
        old_key, new_key = self.key(before), self.key(_Plan(part.routes, set()))
        if new_key[:2] > old_key[:2]:
            return False  # serves less
        if new_key[:2] == old_key[:2] and new_key[2] > old_key[2]:
            cost = self.key(current)[2] - old_key[2] + new_key[2]
            if cost > best_key[2] * (1 + tolerance):
                return False
        for v in vehicles:
            current.routes.pop(v, None)
        current.routes.update(part.routes)
        current.unassigned = (current.unassigned - set(tasks)) | set(part.unassigned)
        return True

    def _ruin(
        self, current: _Plan, rng: random.Random
    ) -> tuple[list[int], list[Task], dict[int, list[Step]]]:
        where = {_task(s): v for v, route in current.routes.items() for s in route.plan}
        to_remove = rng.randint(*REMOVED)
        vehicles: list[int] = []
        removed: set[Task] = set()
        offered: list[Task] = []
        for task in self.near[rng.randrange(len(self.near))]:
            vehicle = where.get(task)
            if vehicle is None:
                if task in current.unassigned and len(offered) < UNASSIGNED_PER_ROUND:
                    offered.append(task)
                continue
            if vehicle not in vehicles:
                if len(vehicles) == ROUTES_PER_ROUND:
                    continue
                vehicles.append(vehicle)
            if len(removed) < to_remove:
                removed.add(task)
            if len(vehicles) == ROUTES_PER_ROUND and len(removed) == to_remove:
                break
        initial = {
            v: [s for s in current.routes[v].plan if _task(s) not in removed] for v in vehicles
        }
        tasks = list(dict.fromkeys(_task(s) for v in vehicles for s in current.routes[v].plan))
        idle = [next((v for v in kind if v not in current.routes), None) for kind in self.kinds]
        idle = [v for v in idle if v is not None]
        rng.shuffle(idle)
        vehicles += idle[:IDLE_PER_ROUND]
        return vehicles, tasks + offered, initial

    def _neighbours(self) -> list[list[Task]]:
        """For every task, all tasks from the closest (itself) to the farthest, by the
        round-trip travel time between their (first) stops."""
        model = self.model
        where = [
            model.job_location[rank] if kind is TaskKind.JOB else model.pair_location[rank][0]
            for kind, rank in model.tasks
        ]
        rows = model.durations[np.ix_(where, where)]
        order = np.argsort(rows + rows.T, axis=1, kind="stable")
        return [[model.tasks[k] for k in row] for row in order.tolist()]

    def _vehicle_kinds(self) -> list[list[int]]:
        """Vehicles grouped by kind (same capacity, skills, shift, depots, cost): one idle
        vehicle offered to a round stands for all idle ones of its kind."""
        kinds: dict[tuple, list[int]] = {}
        for rank, spec in enumerate(self.model.problem.vehicles):
            signature = (spec.capacity_g, spec.skills, spec.shift, spec.start, spec.end)
            kinds.setdefault((*signature, spec.cost_per_km), []).append(rank)
        return list(kinds.values())


def _task(step: Step) -> Task:
    kind, rank = step
    return (TaskKind.JOB if kind == "job" else TaskKind.PAIR, rank)
