"""A large day planned as geographic zones, one Celery task per zone, so workers share it.

`schedule_run_execute` (the run's own task) gathers the day; past SCHEDULE_ZONE_THRESHOLD
stops it hands the day to `schedule_run_split`, which cuts it into
ceil(stops / SCHEDULE_ZONE_STOPS) zones (logistics.routing.zones.split) and writes one
ScheduleRunZone per zone (the zone's problem and the shipments behind its job ids) in one
transaction with the run locked; a `schedule_zone` task per zone is enqueued once that
commits. Each zone task solves its zone with no transaction open, then saves the plan under
the run's row lock; whichever saves the last plan finishes the day: with no transaction open,
each zone is offered what the others left out at the places its routes stop at
(logistics.routing.exchange), then the second pass (logistics.routing.zones.second_pass)
offers the plain work still left out to the refrigerated vehicles, which the split kept for
refrigerated work alone; then,
under the run's lock, it merges the plans, stores the routes through the same `_store` as a
day solved in one piece, and marks the run done. Hence:
- a zone solved twice (a redelivered task) is saved and stored once: the second finds its
  plan set; a run done or failed stays so: every step checks the run's status under its lock;
- a run whose zones are all solved but which is not done (the task finishing it was lost)
  is finished by the next task of any of its zones: the sweeper re-sends the run's task,
  which sends one; two finishing at once store the day once (the second finds it done);
- a zone that fails fails the run, naming the zone and the reason;
- progress goes from 30 to 90 as the zones are solved, and to 100 when the day is stored.
The zones' problems are stored rather than gathered again, so orders arriving meanwhile
cannot shift job ids between the split and the merge.
"""

import math
import time as clock
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from logistics.models import (
    ScheduleRun,
    ScheduleRunStatus,
    ScheduleRunZone,
    Shipment,
)
from logistics.routing.codec import plan_from_data, problem_from_data, to_data
from logistics.routing.exchange import after_zones
from logistics.routing.problem import Problem
from logistics.routing.vroom_solver import solve
from logistics.routing.zones import merge, split, stops_of
from logistics.services.schedule import (
    _Day,
    _engine_by,
    _engine_within,
    _fail,
    _failed_by,
    _lock_run,
    _matrix,
    _solve,
    _store,
)

# VROOM stops and answers with its best plan so far after this long, counted over every
# solve of the zone (a second one when its stops are solved again apart: schedule._solve):
# well inside the zone task's soft time limit (240 s), so a slow zone still yields a plan
# instead of a killed task, even when the same task then finishes the day with the second
# pass (at most its own timeout more) and stores it.
ZONE_ENGINE_TIMEOUT_S = 150
# The engine's time for every solve of the passes after the zones (exchange, second_pass),
# all told: the exchange starts another pass only while twice its last pass's time is left.
SECOND_PASS_TIMEOUT_S = 30
# One thread per zone task: the parallelism comes from the workers, one zone each, as
# bench/routing_scale.py measured it (two processes, threads=1).
ZONE_THREADS = 1
# Exploration level of a zone (~SCHEDULE_ZONE_STOPS stops): a 1,000-stop day as 4 zones on
# two processes took 22.9 s at level 2 and came out 3.2 % cheaper, with fewer stops left out,
# than the best single solve (64 s); level 3 took 41 s for 0.05 % more (bench/SCALE_RESULTS.md).
ZONE_EXPLORATION_LEVEL = 2
PROGRESS_SPLIT, PROGRESS_SOLVED = 30, 90


def schedule_run_split(*, run_id: int, day_work: _Day) -> ScheduleRun:
    """Split a running run's day into zones and enqueue one task per zone. The zones are
    written once: a twin delivery of the run's task only enqueues the unsolved ones again."""
    k = math.ceil(stops_of(day_work.problem) / settings.SCHEDULE_ZONE_STOPS)
    parts = split(day_work.problem, k)
    with transaction.atomic():
        run = ScheduleRun.objects.select_for_update().get(pk=run_id)
        if run.status != ScheduleRunStatus.RUNNING:
            return run
        if not run.zones.exists():
            ScheduleRunZone.objects.bulk_create(
                ScheduleRunZone(
                    run=run,
                    index=index,
                    stops=stops_of(part),
                    problem=to_data(part),
                    shipments=_shipment_ids(part, day_work),
                )
                for index, part in enumerate(parts)
            )
        enqueue_unsolved(run)
    return run


def _shipment_ids(part: Problem, day_work: _Day) -> dict:
    return {
        "jobs": [[job.id, [s.pk for s in day_work.job_shipments[job.id]]] for job in part.jobs],
        "pairs": [
            [pair.id, [s.pk for s in day_work.pair_shipments[pair.id]]] for pair in part.pairs
        ],
    }


def enqueue_unsolved(run: ScheduleRun) -> None:
    """Once the transaction commits, a schedule_zone task for every zone without a plan; when
    every zone has one (the run still running: the task finishing it was lost), one task to
    finish the day."""
    indexes = list(run.zones.filter(plan__isnull=True).values_list("index", flat=True))
    if not indexes:
        indexes = list(run.zones.order_by("-index").values_list("index", flat=True)[:1])
    for index in indexes:
        # robust: a message the broker refuses is logged and the next zone's still sent;
        # the stale-runs sweeper sends the run again, which sends the zones still unsolved
        # (a lambda: Django's log of a robust callback's failure reads its __qualname__)
        transaction.on_commit(lambda index=index: _enqueue(run.pk, index), robust=True)


def _enqueue(run_id: int, zone: int) -> None:
    from logistics.tasks import schedule_zone  # noqa: PLC0415 - tasks import services

    schedule_zone.delay(run_id, zone)


def schedule_zone_solve(*, run_id: int, zone: int) -> ScheduleRun:
    """Solve one zone of a split day (no transaction open) and save its plan; the zone that
    saves the last plan finishes the day (_finish). A zone already solved, or a run no
    longer running, is left alone, unless every zone is solved and the run still runs: its
    finishing task was lost, and this one finishes the day. A failure fails the run, naming
    the zone and the reason."""
    row = ScheduleRunZone.objects.select_related("run__service_center").get(
        run_id=run_id, index=zone
    )
    if row.run.status != ScheduleRunStatus.RUNNING:
        return row.run
    try:
        if row.plan is None:
            run, last = _solve_zone(row)
            if not last:
                return run
        elif row.run.zones.filter(plan__isnull=True).exists():
            return row.run
        return _finish(run_id)
    except Exception as exc:
        _fail(run_id, f"zone {zone}: {_failed_by(run_id, exc)}")
        raise


def _solve_zone(row: ScheduleRunZone) -> tuple[ScheduleRun, bool]:
    """Solve the zone and save its plan under the run's lock; True with the run if this plan
    was the last one the run waited for."""
    started = clock.monotonic()
    solver = _engine_within(
        ZONE_ENGINE_TIMEOUT_S,
        partial(
            solve,
            matrix=_matrix(row.run.service_center),
            exploration_level=ZONE_EXPLORATION_LEVEL,
            threads=ZONE_THREADS,
        ),
    )
    zone_day, plan = _solve(_zone_day(row), solver, first_new_id=_first_free_id(row))
    seconds = round(clock.monotonic() - started, 2)
    with transaction.atomic():
        run = ScheduleRun.objects.select_for_update().get(pk=row.run_id)
        row.refresh_from_db(fields=["plan"])
        if run.status != ScheduleRunStatus.RUNNING or row.plan is not None:
            return run, False
        row.plan, row.solve_seconds, row.solved_at = to_data(plan), seconds, timezone.now()
        # solved with some stops apart (_solve): the zone is that day now, for the merge
        row.problem = to_data(zone_day.problem)
        row.shipments = _shipment_ids(zone_day.problem, zone_day)
        row.save(update_fields=["plan", "solve_seconds", "solved_at", "problem", "shipments"])
        zones = run.zones.count()
        solved = run.zones.filter(plan__isnull=False).count()
        run.progress = PROGRESS_SPLIT + (PROGRESS_SOLVED - PROGRESS_SPLIT) * solved // zones
        run.restarts = 0  # it moves on: a long day of many zones is not a killed run
        run.save(update_fields=["progress", "restarts"])
        return run, solved == zones


def _zone_day(row: ScheduleRunZone) -> _Day:
    """The zone as split, with its shipments (read now) behind every job id."""
    return _day_of([row])


def _first_free_id(row: ScheduleRunZone) -> int:
    """Where the zone numbers stops it splits apart (_solve): past every job and pair id of
    the day, in a range of its own (as many ids as the day has shipments), so zones solved
    at once never give two stops one id."""
    zones = list(
        ScheduleRunZone.objects.filter(run_id=row.run_id).values_list("shipments", flat=True)
    )
    ids = [job_id for zone in zones for key in ("jobs", "pairs") for job_id, _ in zone[key]]
    shipments = sum(len(pks) for zone in zones for key in ("jobs", "pairs") for _, pks in zone[key])
    return max(ids, default=0) + 1 + row.index * (shipments + 1)


def _finish(run_id: int) -> ScheduleRun:
    """Every zone solved: the second pass (no transaction open), then, under the run's lock,
    merge, store and mark the run done; a run finished meanwhile is left alone."""
    zones = list(
        ScheduleRunZone.objects.filter(run_id=run_id)
        .select_related("run__service_center")
        .order_by("index")
    )
    started = clock.monotonic()
    deadline = started + SECOND_PASS_TIMEOUT_S
    solve_again = _engine_by(
        deadline,
        partial(
            solve,
            matrix=_matrix(zones[0].run.service_center),
            exploration_level=ZONE_EXPLORATION_LEVEL,
            threads=ZONE_THREADS,
        ),
    )
    swap, refill = after_zones(
        [problem_from_data(zone.problem) for zone in zones],
        [plan_from_data(zone.plan) for zone in zones],
        solve_again,
        deadline=deadline,
    )
    seconds = round(clock.monotonic() - started, 2)
    with transaction.atomic():
        run = _lock_run(run_id)
        if run.status != ScheduleRunStatus.RUNNING:
            return run
        summary = _store(run, _day_of(zones), merge(refill.plans))
        summary["solve_seconds"] = round(sum(zone.solve_seconds for zone in zones), 2)
        summary["zones"] = [
            {
                "stops": zone.stops,
                "vehicles": len(zone.problem["vehicles"]),
                "unassigned": len(zone.plan["unassigned"]),
                "solve_seconds": zone.solve_seconds,
            }
            for zone in zones
        ]
        summary["second_pass"] = {
            "offered": refill.offered,  # plain work the zones left out
            "taken": refill.taken,  # of it, now on a refrigerated vehicle
            # work left out, offered to another zone whose routes stop at its place
            "between_zones": {"offered": swap.offered, "taken": swap.taken},
            "solve_seconds": seconds,  # of both
        }
        run.status, run.progress, run.summary = ScheduleRunStatus.DONE, 100, summary
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "progress", "summary", "finished_at"])
    return run


def schedule_zones_prune(*, now: datetime | None = None) -> int:
    """Delete the zones (problems and plans, the bulk of a split run's data) of runs that
    finished more than SCHEDULE_ZONE_KEEP_DAYS ago; the run, its summary and its routes stay.
    A finished run never reads its zones again. Returns how many zones were deleted."""
    now = now or timezone.now()
    finished = (ScheduleRunStatus.DONE, ScheduleRunStatus.FAILED)
    deleted, _ = ScheduleRunZone.objects.filter(
        run__status__in=finished,
        run__finished_at__lt=now - timedelta(days=settings.SCHEDULE_ZONE_KEEP_DAYS),
    ).delete()
    return deleted


def _day_of(zones: list[ScheduleRunZone]) -> _Day:
    """The day as the split saw it: the zones' problems joined, and their shipments (read
    again now, in the storing transaction) behind every job id."""
    problems = [problem_from_data(zone.problem) for zone in zones]
    ids = {
        pk
        for zone in zones
        for key in ("jobs", "pairs")
        for _job_id, pks in zone.shipments[key]
        for pk in pks
    }
    shipments = Shipment.objects.select_related("order").in_bulk(ids)

    def behind(key: str) -> dict[int, list[Shipment]]:
        return {
            job_id: [shipments[pk] for pk in pks if pk in shipments]
            for zone in zones
            for job_id, pks in zone.shipments[key]
        }

    return _Day(
        problem=Problem(
            depot=problems[0].depot,
            vehicles=tuple(v for p in problems for v in p.vehicles),
            jobs=tuple(job for p in problems for job in p.jobs),
            pairs=tuple(pair for p in problems for pair in p.pairs),
        ),
        job_shipments=behind("jobs"),
        pair_shipments=behind("pairs"),
    )
