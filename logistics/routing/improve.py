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

With two workers a second chain of rounds runs in a helper process on the other core (the
pyvroom call holds the GIL: a thread would only wait for ours), from a start of its own with
shorter routes, and the better of the two plans wins. A chain stays near the basin of its
start; two different starts gain far more than two seeds from one (bench/SOLOMON_RESULTS.md).
"""

import math
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
SHORTER_ROUTES = 0.6  # the helper's own start: at most 60 % of our mean stops per route
ENGINE_ERRORS = (vroom._vroom.VroomInputException, vroom._vroom.VroomInternalException)
HELPER_ERRORS = (BrokenProcessPool, OSError, RuntimeError)


@dataclass
class Stats:
    rounds: int = 0
    accepted: int = 0
    improved: int = 0
    refused: int = 0  # the engine rejected a part (e.g. a trimmed route it found infeasible)
    seconds: float = 0.0
    chains: int = 1  # chains run side by side (the helper process makes two)

    def add(self, other: "Stats") -> None:
        self.rounds += other.rounds
        self.accepted += other.accepted
        self.improved += other.improved
        self.refused += other.refused


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
    workers: int = 1,
) -> tuple[EngineAnswer, Stats]:
    """Improve `answer` until `deadline` (a time.monotonic() value, or math.inf) or after
    `max_rounds` rounds in all (shared by the chains); with a round limit and no deadline
    the result is reproducible. `workers` > 1 adds a second chain in a helper process."""
    stats = Stats()
    started = time.monotonic()
    if len(model.tasks) < 2 or not model.problem.vehicles or started >= deadline:
        return answer, stats
    if max_rounds is None and deadline == math.inf:
        raise ValueError("improve needs a deadline or a number of rounds")
    search = _Search(model)
    helper = _HELPER.pool() if workers > 1 else None
    theirs: Future | None = None
    mine_rounds = max_rounds
    if helper is not None and (max_rounds is None or max_rounds >= 2):
        theirs_rounds = None if max_rounds is None else max_rounds // 2
        mine_rounds = None if max_rounds is None else max_rounds - max_rounds // 2
        try:
            theirs = helper.submit(
                _chain, search, answer, deadline, seed + 1, theirs_rounds, shorter=True
            )
        except HELPER_ERRORS:
            _HELPER.drop()
    results = [_chain(search, answer, deadline, seed, mine_rounds)]
    if theirs is not None:
        try:
            results.append(theirs.result())
        except HELPER_ERRORS:
            _HELPER.drop()  # our chain's plan stands; the next call starts a new helper
    for _, chain_stats in results:
        stats.add(chain_stats)
    stats.chains = len(results)
    # The better plan; ours on a tie, so that a rounds-only run stays reproducible.
    best = min(results, key=lambda result: search.key(result[0]))[0]
    stats.seconds = time.monotonic() - started
    improved = EngineAnswer(
        routes=dict(sorted(best.routes.items())),
        unassigned=frozenset(best.unassigned),
        computing_times=answer.computing_times,
    )
    return improved, stats


def _chain(
    search: "_Search",
    answer: EngineAnswer,
    deadline: float,
    seed: int,
    max_rounds: int | None,
    *,
    shorter: bool = False,
) -> tuple[EngineAnswer, Stats]:
    """One chain of rounds from `answer` (in this process or in the helper), or from a
    plan with shorter routes if `shorter`."""
    stats = Stats()
    if shorter:
        answer = _shorter_routes(search.model, answer)
    started = time.monotonic()
    rng = random.Random(seed)  # noqa: S311 - a search, not a secret
    current = _Plan(dict(answer.routes), set(answer.unassigned))
    best, best_key = current.copy(), search.key(current)
    # No round is started that would end past the deadline, by the mean round so far: the
    # caller waits for both chains, so a late round would make the whole call late.
    while (now := time.monotonic()) + (now - started) / max(stats.rounds, 1) < deadline:
        if stats.rounds == max_rounds:
            break
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
    answer = EngineAnswer(best.routes, frozenset(best.unassigned), answer.computing_times)
    return answer, stats


def _shorter_routes(model: EngineModel, answer: EngineAnswer) -> EngineAnswer:
    """VROOM's plan (level 0) when no vehicle may take more than SHORTER_ROUTES of the mean
    stops per route in `answer`, or `answer` if that leaves stops out or fails.

    A chain of rounds stays in the basin of its start: on long routes (Solomon R2/RC2) the
    rounds from VROOM's plan keep its few long routes, while the best known plans use more,
    shorter ones. A start forced to shorter routes lands elsewhere; the rounds may merge
    routes again (they run without the cap), and the better plan of the two chains wins."""
    steps = sum(len(route.steps) for route in answer.routes.values())
    cap = round(SHORTER_ROUTES * steps / max(len(answer.routes), 1))
    if not answer.routes or answer.unassigned or cap * len(model.problem.vehicles) < steps:
        return answer
    try:
        solution = _CappedModel(model, cap).input().solve(exploration_level=0, nb_threads=1)
    except ENGINE_ERRORS:
        return answer
    shorter = read_answer(solution)
    return answer if shorter.unassigned else shorter


class _CappedModel(EngineModel):
    """The same indexed problem with at most `max_tasks` stops per vehicle."""

    def __init__(self, model: EngineModel, max_tasks: int) -> None:
        vars(self).update(vars(model))
        self.max_tasks = max_tasks

    def _vehicle(self, rank: int, remap: dict[int, int], steps: Sequence[Step]) -> vroom.Vehicle:
        vehicle = super()._vehicle(rank, remap, steps)
        return vroom.Vehicle(
            vehicle.id,
            start=vehicle.start,
            end=vehicle.end,
            profile=vehicle.profile,
            capacity=vehicle.capacity,
            skills=vehicle.skills,
            time_window=vehicle.time_window,
            costs=vehicle.costs,
            max_tasks=self.max_tasks,
            steps=vehicle.steps,
        )


class _Helper:
    """One helper process per process that asks for one, started on first use and kept:
    starting a process for every call would cost more than the rounds it buys. Forked, so
    it starts in milliseconds with everything imported; a forked child of ours (a Celery
    pool worker) notices the pid and starts its own."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                try:
                    context = multiprocessing.get_context("fork")
                except ValueError:  # no fork on this platform: one chain
                    return None
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
                self._pid = os.getpid()
            return self._pool

    def drop(self) -> None:
        """Forget a helper that failed; the next call starts a new one."""
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


_HELPER = _Helper()


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

    def key(self, plan: _Plan | EngineAnswer) -> tuple[int, int, int]:
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
        for k in self.near[rng.randrange(len(self.near))].tolist():
            task = self.model.tasks[k]
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

    def _neighbours(self) -> np.ndarray:
        """For every task, the ranks of all tasks from the closest (itself) to the farthest,
        by the round-trip travel time between their (first) stops. An array, not lists of
        tasks: the search is pickled to the helper every epoch."""
        model = self.model
        where = [
            model.job_location[rank] if kind is TaskKind.JOB else model.pair_location[rank][0]
            for kind, rank in model.tasks
        ]
        rows = model.durations[np.ix_(where, where)]
        return np.argsort(rows + rows.T, axis=1, kind="stable").astype(np.int32)

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
