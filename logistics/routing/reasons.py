"""Why a job was left out: VROOM only says *that* it was, so the adapter works out why.

The checks go from the most to the least definite: there is no vehicle at all, no vehicle
has the skills, the goods are heavier than every vehicle that has them, no such vehicle can
reach it inside a window and still get home within its shift (even with nothing else to
do); otherwise the day simply ran out of room (capacity or time taken by other stops).
"""

from collections.abc import Sequence

from logistics.routing.engine import EngineModel, TaskKind
from logistics.routing.problem import Job, TimeWindow, UnassignedReason, VehicleSpec

ALL_DAY = (TimeWindow(0, 2**31 - 1),)


def unassigned_reason(model: EngineModel, kind: TaskKind, rank: int) -> UnassignedReason:
    problem = model.problem
    if kind is TaskKind.JOB:
        job = problem.jobs[rank]
        skills, amount = job.skills, job.amount_g
    else:
        pair = problem.pairs[rank]
        skills = pair.skills | pair.pickup.skills | pair.delivery.skills
        amount = pair.amount_g
    if not problem.vehicles:
        return UnassignedReason.NO_VEHICLE
    capable = [v for v, spec in enumerate(problem.vehicles) if skills <= spec.skills]
    if not capable:
        return UnassignedReason.NO_VEHICLE_WITH_SKILLS
    capable = [v for v in capable if amount <= problem.vehicles[v].capacity_g]
    if not capable:
        return UnassignedReason.TOO_HEAVY
    if not any(_reachable(model, v, kind, rank) for v in capable):
        return UnassignedReason.OUTSIDE_SHIFTS
    return UnassignedReason.NO_ROOM


def _reachable(model: EngineModel, vehicle: int, kind: TaskKind, rank: int) -> bool:
    """Could this vehicle, leaving its start at shift start and doing nothing else, serve
    the job (or the pair, pickup first) inside a window and be back before shift end?"""
    spec: VehicleSpec = model.problem.vehicles[vehicle]
    start, end = model.vehicle_location[vehicle]
    travel = model.durations
    if kind is TaskKind.JOB:
        job, here = model.problem.jobs[rank], model.job_location[rank]
        served = _earliest_service(job, spec.shift.start + int(travel[start, here]))
        return (
            served is not None
            and served + job.setup_s + job.service_s + travel[here, end] <= spec.shift.end
        )
    pair = model.problem.pairs[rank]
    pickup_at, delivery_at = model.pair_location[rank]
    picked = _earliest_service(pair.pickup, spec.shift.start + int(travel[start, pickup_at]))
    if picked is None:
        return False
    arrival = (
        picked + pair.pickup.setup_s + pair.pickup.service_s + int(travel[pickup_at, delivery_at])
    )
    delivered = _earliest_service(pair.delivery, arrival)
    return (
        delivered is not None
        and delivered + pair.delivery.setup_s + pair.delivery.service_s + travel[delivery_at, end]
        <= spec.shift.end
    )


def _earliest_service(job: Job, arrival: int) -> int | None:
    """When service can start at the earliest (waiting for a window to open), if at all."""
    windows: Sequence[TimeWindow] = job.windows or ALL_DAY
    starts = [max(arrival, w.start) for w in windows if max(arrival, w.start) <= w.end]
    return min(starts, default=None)
