"""The problem as VROOM sees it, and VROOM's answer as we read it.

`EngineModel` indexes a Problem once (locations deduplicated into matrix rows, one per
visit: Job.visit; vehicles, jobs and pairs by rank) and builds `vroom.Input`s from it: the
whole problem, or a part of it with initial routes (what the improvement loop in
improve.py re-solves). Engine ids are ranks — vehicle i is `problem.vehicles[i]`, job j is
`problem.jobs[j]`, shipment p is `problem.pairs[p]` — so ids chosen by callers can never
collide inside the engine.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import vroom
from vroom.solution.solution import Solution

from logistics.routing.matrix import Matrices
from logistics.routing.problem import JobKind, Location, Problem, Skill, TimeWindow

# VROOM costs are integers: a vehicle's per_km is its cost_per_km in thousandths, so the
# engine's cost is money × COST_SCALE.
COST_SCALE = 1000
SKILL_IDS = {skill: rank for rank, skill in enumerate(Skill)}
PROFILE = "car"


class TaskKind(IntEnum):
    JOB = 0  # a Job: one stop
    PAIR = 1  # a PickupDelivery: two stops, same vehicle, pickup first


Task = tuple[TaskKind, int]  # (kind, rank)
Step = tuple[str, int]  # ("job" | "pickup" | "delivery", rank), as VROOM names steps


class EngineError(Exception):
    """VROOM refused the problem (e.g. an inconsistent input) or failed while solving."""


@dataclass(frozen=True)
class EngineStep:
    type: str  # "job", "pickup" or "delivery"
    rank: int
    arrival: int
    service: int  # its setup (0 when the step before was of the same visit) and service
    load: int
    waiting: int = 0  # before service may start: the job's window opens later


@dataclass(frozen=True)
class EngineRoute:
    vehicle: int  # rank
    steps: tuple[EngineStep, ...]
    departure: int
    arrival: int
    cost: int  # engine units (money × COST_SCALE)
    distance: int
    duration: int  # travel seconds
    service: int = 0  # seconds spent at its stops (VROOM's setup and service)
    waiting: int = 0  # seconds waiting for a stop's window to open

    @property
    def plan(self) -> list[Step]:
        return [(step.type, step.rank) for step in self.steps]


@dataclass(frozen=True)
class EngineAnswer:
    routes: dict[int, EngineRoute]  # non-empty routes by vehicle rank
    unassigned: frozenset[Task]
    computing_times: dict

    @property
    def cost(self) -> int:
        return sum(route.cost for route in self.routes.values())


class EngineModel:
    def __init__(self, problem: Problem, matrices: Matrices, index: dict[Location, int]) -> None:
        self.problem = problem
        self.index = index
        durations = np.asarray(matrices.durations_s, dtype=np.int64)
        distances = np.asarray(matrices.distances_m, dtype=np.int64)
        n = len(index)
        if durations.shape != (n, n) or distances.shape != (n, n):
            raise EngineError(f"the matrix provider answered the wrong shape for {n} locations")
        if (durations < 0).any() or (distances < 0).any():
            raise EngineError("the matrix provider answered negative values")
        # The engine's locations are visits, not places: VROOM pays a job's setup unless the
        # step before was at the same location, so jobs of one kind and visit at a place
        # share one (one setup for a farm's pickups one after another), while two visits at
        # one place (two orders' deliveries to one buyer, a pickup beside a delivery, the
        # depot's vehicles beside a job there) are locations of their own, zero apart. On a
        # day without two visits at one place the locations are the places, in their order.
        rows: dict[tuple, int] = {}

        def row(place: Location, visit: tuple) -> int:
            return rows.setdefault((index[place], *visit), len(rows))

        row(problem.depot, ("vehicle",))
        starts = [row(v.start, ("vehicle",)) for v in problem.vehicles]
        ends = [row(v.end, ("vehicle",)) for v in problem.vehicles]
        self.vehicle_location = list(zip(starts, ends, strict=True))
        self.job_location = [
            row(job.location, (job.kind is JobKind.PICKUP, job.visit)) for job in problem.jobs
        ]
        self.pair_location = [
            (
                row(pair.pickup.location, (True, pair.pickup.visit)),
                row(pair.delivery.location, (False, pair.delivery.visit)),
            )
            for pair in problem.pairs
        ]
        places = [key[0] for key in rows]
        self.durations = durations[np.ix_(places, places)]
        self.distances = distances[np.ix_(places, places)]
        self.tasks: list[Task] = [(TaskKind.JOB, j) for j in range(len(problem.jobs))] + [
            (TaskKind.PAIR, p) for p in range(len(problem.pairs))
        ]

    @classmethod
    def locations_of(cls, problem: Problem) -> dict[Location, int]:
        """Every location the engine needs, deduplicated, in first-seen order."""
        seen: dict[Location, int] = {problem.depot: 0}
        places: list[Location] = [v.start for v in problem.vehicles] + [
            v.end for v in problem.vehicles
        ]
        places += [job.location for job in problem.jobs]
        for pair in problem.pairs:
            places += [pair.pickup.location, pair.delivery.location]
        for place in places:
            seen.setdefault(place, len(seen))
        return seen

    def task_steps(self, task: Task) -> list[Step]:
        kind, rank = task
        return [("job", rank)] if kind is TaskKind.JOB else [("pickup", rank), ("delivery", rank)]

    def input(
        self,
        vehicles: Iterable[int] | None = None,
        tasks: Iterable[Task] | None = None,
        initial: dict[int, Sequence[Step]] | None = None,
    ) -> vroom.Input:
        """The whole problem, or only these vehicles and tasks, optionally with initial
        routes (steps per vehicle rank) for the engine to start from."""
        vehicle_ranks = list(range(len(self.problem.vehicles)) if vehicles is None else vehicles)
        task_list = list(self.tasks if tasks is None else tasks)
        used = self._used_locations(vehicle_ranks, task_list)
        remap = {old: new for new, old in enumerate(used)}
        engine_input = vroom.Input()
        engine_input.set_durations_matrix(PROFILE, self._sub(self.durations, used))
        engine_input.set_distances_matrix(PROFILE, self._sub(self.distances, used))
        initial = initial or {}
        engine_input.add_vehicle(
            [self._vehicle(v, remap, initial.get(v, ())) for v in vehicle_ranks]
        )
        for kind, rank in task_list:
            if kind is TaskKind.JOB:
                engine_input.add_job(self._job(rank, remap))
            else:
                engine_input.add_job(self._shipment(rank, remap))
        return engine_input

    def _used_locations(self, vehicles: list[int], tasks: list[Task]) -> list[int]:
        used = {index for v in vehicles for index in self.vehicle_location[v]}
        for kind, rank in tasks:
            if kind is TaskKind.JOB:
                used.add(self.job_location[rank])
            else:
                used.update(self.pair_location[rank])
        return sorted(used)

    @staticmethod
    def _sub(matrix: np.ndarray, used: list[int]) -> np.ndarray:
        # A fresh array for every Input: the engine takes ownership of what it is given.
        return np.ascontiguousarray(matrix[np.ix_(used, used)], dtype=np.uint32)

    def _vehicle(self, rank: int, remap: dict[int, int], steps: Sequence[Step]) -> vroom.Vehicle:
        spec = self.problem.vehicles[rank]
        start, end = self.vehicle_location[rank]
        initial = []
        if steps:
            initial = [vroom.VehicleStepStart(), *map(_vehicle_step, steps), vroom.VehicleStepEnd()]
        return vroom.Vehicle(
            rank,
            start=remap[start],
            end=remap[end],
            profile=PROFILE,
            capacity=[spec.capacity_g],
            skills={SKILL_IDS[s] for s in spec.skills},
            time_window=vroom.TimeWindow(spec.shift.start, spec.shift.end),
            # At least 1: a vehicle that costs nothing to run still drives as little as it
            # can (at 0 every route costs the same to the engine).
            costs=vroom.VehicleCosts(
                fixed=0, per_hour=0, per_km=max(1, round(spec.cost_per_km * COST_SCALE))
            ),
            steps=initial,
        )

    def _job(self, rank: int, remap: dict[int, int]) -> vroom.Job:
        job = self.problem.jobs[rank]
        amount = {"pickup" if job.kind is JobKind.PICKUP else "delivery": [job.amount_g]}
        return vroom.Job(
            rank,
            location=remap[self.job_location[rank]],
            default_setup=job.setup_s,
            default_service=job.service_s,
            skills={SKILL_IDS[s] for s in job.skills},
            priority=job.priority,
            time_windows=_windows(job.windows),
            **amount,
        )

    def _shipment(self, rank: int, remap: dict[int, int]) -> vroom.Shipment:
        pair = self.problem.pairs[rank]
        pickup, delivery = self.pair_location[rank]
        skills = pair.skills | pair.pickup.skills | pair.delivery.skills
        return vroom.Shipment(
            vroom.ShipmentStep(
                rank,
                location=remap[pickup],
                default_setup=pair.pickup.setup_s,
                default_service=pair.pickup.service_s,
                time_windows=_windows(pair.pickup.windows),
            ),
            vroom.ShipmentStep(
                rank,
                location=remap[delivery],
                default_setup=pair.delivery.setup_s,
                default_service=pair.delivery.service_s,
                time_windows=_windows(pair.delivery.windows),
            ),
            amount=[pair.amount_g],
            skills={SKILL_IDS[s] for s in skills},
            priority=pair.priority,
        )


def _vehicle_step(step: Step) -> vroom.VehicleStep:
    kind, rank = step
    if kind == "job":
        return vroom.VehicleStepSingle(rank)
    if kind == "pickup":
        return vroom.VehicleStepPickup(rank)
    return vroom.VehicleStepDelivery(rank)


def _windows(windows: Sequence[TimeWindow]) -> list[vroom.TimeWindow]:
    """Sorted, overlapping ones merged: the engine refuses anything else."""
    merged: list[list[int]] = []
    for window in sorted(windows, key=lambda w: (w.start, w.end)):
        if merged and window.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], window.end)
        else:
            merged.append([window.start, window.end])
    return [vroom.TimeWindow(start, end) for start, end in merged]


def run(
    engine_input: vroom.Input, *, searches: int, depth: int, threads: int, timeout=None
) -> Solution:
    """One engine run with an explicit number of searches and local-search depth.

    `exploration_level` x is VROOM's shorthand for (4·(x+1) [+4 at 4, +8 at 5] searches,
    depth x); re-solving a part of a plan from initial routes wants fewer searches than
    any level gives, so this calls the engine's (searches, depth) entry point, falling back
    to the nearest exploration level if a pyvroom release lacks it."""
    try:
        # The binding's (searches, depth) overload of Input::solve; pyvroom's public
        # solve() only exposes the exploration-level one.
        raw = engine_input._solve(
            nb_searches=searches, depth=depth, nb_threads=threads, timeout=timeout
        )
    except TypeError:
        return engine_input.solve(exploration_level=depth, nb_threads=threads, timeout=timeout)
    solution = Solution(raw)
    solution._distances = True  # as Input.solve does: the distances matrix is set
    return solution


def read_answer(solution: Solution) -> EngineAnswer:
    """VROOM's solution as typed routes (its `to_dict` is the documented JSON output)."""
    answer = solution.to_dict()
    routes = {}
    for route in answer.get("routes", []):
        steps = route["steps"]
        tasks = tuple(
            EngineStep(
                type=step["type"],
                rank=int(step["id"]),
                arrival=int(step["arrival"]),
                service=int(step.get("setup", 0)) + int(step.get("service", 0)),
                load=int(step["load"][0]) if step.get("load") else 0,
                waiting=int(step.get("waiting_time", 0)),
            )
            for step in steps
            if step["type"] in ("job", "pickup", "delivery")
        )
        if not tasks:
            continue
        routes[int(route["vehicle"])] = EngineRoute(
            vehicle=int(route["vehicle"]),
            steps=tasks,
            departure=int(steps[0]["arrival"]),
            arrival=int(steps[-1]["arrival"]),
            cost=int(route["cost"]),
            distance=int(route.get("distance", 0)),
            duration=int(route["duration"]),
            service=int(route.get("setup", 0)) + int(route.get("service", 0)),
            waiting=int(route.get("waiting_time", 0)),
        )
    unassigned = frozenset(
        (TaskKind.JOB if item["type"] == "job" else TaskKind.PAIR, int(item["id"]))
        for item in answer.get("unassigned", [])
    )
    times = answer.get("summary", {}).get("computing_times", {})
    return EngineAnswer(routes=routes, unassigned=unassigned, computing_times=times)
