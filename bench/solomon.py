"""Solomon VRPTW benchmark: our routing adapter against pyvroom called directly.

    .venv/bin/python bench/solomon.py                       # all 56 instances, ~7 minutes
    .venv/bin/python bench/solomon.py --limit 5             # the first five
    .venv/bin/python bench/solomon.py --instances R101,RC208 --budget 2.5

Conventions (README in the data folder): Euclidean distances, travel time = distance,
service time at each customer, waiting allowed, the depot's window is the horizon. VROOM
needs integers, so coordinates are scaled ×1000 and rounded (the TSPLIB way) for the engine;
distances are then recomputed in floating point from the routes and reported with 2
decimals. The comparison is `bks_distance.csv`: best-known totals when distance alone is
minimised (the number of vehicles is free), which is what VROOM minimises with the
default free vehicles and cost = travel.

Per instance, three runs in a row (so that a noisy machine hits them alike):
  direct  pyvroom, the adapter's engine settings: exploration level 5, 2 threads, the
          engine stopped at --budget seconds — "VROOM alone";
  same    our adapter `solve()` with exactly those settings (same input, so the same plan
          when the engine is not cut short): its overhead over `direct`;
  ours    our adapter with `budget_s=--budget`: VROOM at --level, then ruin-and-recreate
          rounds through the engine until the budget is spent (logistics/routing/improve.py):
          two chains of rounds at once, ours and one in a helper process (the second
          core) from a start with shorter routes; the better plan is returned. With
          --rounds N, N rounds in all, shared by the two chains.

CPU seconds count this process and its children (the helper process).

Writes bench/SOLOMON_RESULTS.md (table + summary) unless --no-write.
"""

import argparse
import csv
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
import vroom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logistics.routing import (  # noqa: E402 - after the path set-up for a plain script run
    Job,
    JobKind,
    Location,
    Matrices,
    Plan,
    Problem,
    TimeWindow,
    VehicleSpec,
    solve,
)

DATA = Path("/work/shared/benchmarks/solomon")
SCALE = 1000
CLASSES = ("C1", "C2", "R1", "R2", "RC1", "RC2")
DIRECT_LEVEL = 5
THREADS = 2


@dataclass(frozen=True)
class Instance:
    name: str
    vehicles: int
    capacity: int
    xy: np.ndarray  # node 0 is the depot
    demand: list[int]
    ready: list[int]
    due: list[int]
    service: list[int]

    @cached_property
    def distances(self) -> np.ndarray:
        return np.hypot(*(self.xy[:, None, :] - self.xy[None, :, :]).transpose(2, 0, 1))


def read_instance(path: Path) -> Instance:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    vehicles, capacity = map(int, lines[3])
    rows = [list(map(float, line)) for line in lines[6:]]
    return Instance(
        name=lines[0][0],
        vehicles=vehicles,
        capacity=capacity,
        xy=np.array([[r[1], r[2]] for r in rows]),
        demand=[int(r[3]) for r in rows],
        ready=[int(r[4]) for r in rows],
        due=[int(r[5]) for r in rows],
        service=[int(r[6]) for r in rows],
    )


def instance_class(name: str) -> str:
    return name[:-2]  # C101 → C1, RC208 → RC2


class EuclideanMatrix:
    """Plane coordinates (x in lng, y in lat) scaled ×SCALE: travel time = distance."""

    def matrices(self, locations: Sequence[Location]) -> Matrices:
        xy = np.array([[x.lng, x.lat] for x in locations], dtype=float)
        scaled = np.rint(SCALE * np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)))
        values = scaled.astype(np.int64).tolist()
        return Matrices(durations_s=values, distances_m=values)


def to_problem(inst: Instance) -> Problem:
    depot = Location(lat=inst.xy[0, 1], lng=inst.xy[0, 0])
    horizon = TimeWindow(inst.ready[0] * SCALE, inst.due[0] * SCALE)
    vehicles = tuple(
        VehicleSpec(id=k, capacity_g=inst.capacity, shift=horizon, start=depot, end=depot)
        for k in range(inst.vehicles)
    )
    jobs = tuple(
        Job(
            id=i,
            kind=JobKind.DELIVERY,
            location=Location(lat=inst.xy[i, 1], lng=inst.xy[i, 0]),
            amount_g=inst.demand[i],
            service_s=inst.service[i] * SCALE,
            windows=(TimeWindow(inst.ready[i] * SCALE, inst.due[i] * SCALE),),
        )
        for i in range(1, len(inst.demand))
    )
    return Problem(depot=depot, vehicles=vehicles, jobs=jobs)


def direct(inst: Instance, level: int, timeout_s: float) -> list[list[int]]:
    """pyvroom by hand: what the adapter hands the engine, without the adapter."""
    matrix = np.rint(SCALE * inst.distances).astype(np.uint32)
    engine = vroom.Input()
    engine.set_durations_matrix("car", matrix)
    engine.set_distances_matrix("car", matrix.copy())
    engine.add_vehicle(
        [
            vroom.Vehicle(
                k,
                start=0,
                end=0,
                capacity=[inst.capacity],
                time_window=vroom.TimeWindow(inst.ready[0] * SCALE, inst.due[0] * SCALE),
                costs=vroom.VehicleCosts(fixed=0, per_hour=0, per_km=SCALE),
            )
            for k in range(inst.vehicles)
        ]
    )
    for i in range(1, len(inst.demand)):
        engine.add_job(
            vroom.Job(
                i - 1,
                location=i,
                default_service=inst.service[i] * SCALE,
                delivery=[inst.demand[i]],
                time_windows=[vroom.TimeWindow(inst.ready[i] * SCALE, inst.due[i] * SCALE)],
            )
        )
    solution = engine.solve(
        exploration_level=level, nb_threads=THREADS, timeout=timedelta(seconds=timeout_s)
    )
    answer = solution.to_dict()
    if answer["unassigned"]:
        raise RuntimeError(f"{inst.name}: direct run left customers out")
    routes = [[s["location_index"] for s in r["steps"][1:-1]] for r in answer["routes"]]
    return [r for r in routes if r]


def plan_routes(inst: Instance, plan: Plan) -> list[list[int]]:
    if plan.unassigned:
        raise RuntimeError(f"{inst.name}: adapter left customers out: {plan.unassigned}")
    return [[stop.job_id for stop in route.stops] for route in plan.routes]


def evaluate(inst: Instance, routes: list[list[int]]) -> tuple[float, float]:
    """Total distance in floating point, and the worst lateness found replaying the
    routes in floating point (0.0 when every window and the horizon hold)."""
    d = inst.distances
    total, late = 0.0, 0.0
    if sorted(c for r in routes for c in r) != list(range(1, len(inst.demand))):
        raise RuntimeError(f"{inst.name}: customers missing or served twice")
    for route in routes:
        if sum(inst.demand[c] for c in route) > inst.capacity:
            raise RuntimeError(f"{inst.name}: over capacity")
        now, here = float(inst.ready[0]), 0
        for c in route:
            now += d[here, c]
            late = max(late, now - inst.due[c])
            now = max(now, inst.ready[c]) + inst.service[c]
            here = c
        total += sum(d[a, b] for a, b in zip([0, *route], [*route, 0], strict=True))
        late = max(late, now + d[here, 0] - inst.due[0])
    return total, max(0.0, late)


def cpu() -> float:
    """CPU seconds of this process (all threads) and of its live children: the adapter's
    helper process (improve.py) is never waited for, so getrusage alone would miss it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + _children_cpu()


def _children_cpu() -> float:
    total, me, tick = 0.0, str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
        except OSError:  # gone meanwhile
            continue
        if fields[1] == me:  # parent pid; then utime and stime in clock ticks
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_instance(inst: Instance, bks: float, args: argparse.Namespace) -> dict:
    """direct, same and ours for one instance; each with wall and CPU seconds (the
    machine is shared: CPU seconds show how much of the wall time we actually ran)."""
    problem, matrix, budget = to_problem(inst), EuclideanMatrix(), args.budget
    row: dict = {"name": inst.name, "bks": bks}
    clock = (time.perf_counter(), cpu())
    routes = direct(inst, DIRECT_LEVEL, budget)
    row["direct"] = (*_since(clock), routes)
    clock = (time.perf_counter(), cpu())
    plan = solve(problem, matrix, exploration_level=DIRECT_LEVEL, threads=THREADS, timeout_s=budget)
    row["same"] = (*_since(clock), plan_routes(inst, plan))
    row["same_engine_s"] = plan.summary["computing_times"]["engine_ms"] / 1000
    clock = (time.perf_counter(), cpu())
    if args.rounds:  # reproducible: a number of rounds instead of a time budget
        plan = solve(problem, matrix, exploration_level=args.level, rounds=args.rounds)
    else:
        plan = solve(problem, matrix, exploration_level=args.level, budget_s=budget)
    row["ours"] = (*_since(clock), plan_routes(inst, plan))
    row["rounds"] = plan.summary.get("improve", {}).get("rounds", 0)
    for variant in ("direct", "same", "ours"):
        seconds, cpu_seconds, routes = row[variant]
        distance, late = evaluate(inst, routes)
        row[variant] = {
            "seconds": seconds,
            "cpu": cpu_seconds,
            "vehicles": len(routes),
            "distance": distance,
            "gap": (distance / bks - 1) * 100,
            "late": late,
        }
    return row


def _since(clock: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - clock[0], cpu() - clock[1]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", help="comma-separated names, e.g. C101,R201")
    parser.add_argument("--limit", type=int, help="only the first N instances")
    parser.add_argument("--budget", type=float, default=2.5, help="seconds per instance")
    parser.add_argument("--level", type=int, default=0, help="our first-stage level")
    parser.add_argument(
        "--rounds", type=int, help="ours: this many improvement rounds instead of --budget"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the .md")
    args = parser.parse_args(argv)
    bks = {r["instance"]: float(r["distance"]) for r in csv.DictReader(open_csv("distance"))}
    names = sorted(bks, key=lambda n: (CLASSES.index(instance_class(n)), n))
    if args.instances:
        names = [n for n in names if n in set(args.instances.split(","))]
    names = names[: args.limit] if args.limit else names
    rows = []
    for name in names:
        row = run_instance(read_instance(DATA / f"{name}.txt"), bks[name], args)
        rows.append(row)
        print(line(row), flush=True)
    report = summarise(rows, args)
    print(report)
    if not args.no_write:
        write(rows, report, args)


def open_csv(kind: str):
    return (DATA / f"bks_{kind}.csv").open()


def line(row: dict) -> str:
    cells = [f"{row['name']:6}", f"bks {row['bks']:8.2f}"]
    for variant in ("direct", "same", "ours"):
        v = row[variant]
        cells.append(
            f"{variant} {v['vehicles']:2d} {v['distance']:8.2f} {v['gap']:+6.2f}% "
            f"{v['seconds']:5.2f}s cpu {v['cpu']:5.2f}s"
        )
    return " | ".join(cells) + f" | rounds {row['rounds']} | load {os.getloadavg()[0]:.1f}"


def summarise(rows: list[dict], args: argparse.Namespace) -> str:
    out = [
        (
            "| class | n | direct gap % | same gap % | ours gap % "
            "| direct s | same s | ours s | ours CPU s |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {k: [r for r in rows if instance_class(r["name"]) == k] for k in CLASSES}
    for klass, group in [*groups.items(), ("all", rows)]:
        if group:
            gaps = [_mean(group, v, "gap") for v in ("direct", "same", "ours")]
            seconds = [_mean(group, v, "seconds") for v in ("direct", "same", "ours")]
            cells = [f"{x:.2f}" for x in (*gaps, *seconds, _mean(group, "ours", "cpu"))]
            out.append(f"| {klass} | {len(group)} | " + " | ".join(cells) + " |")
    direct_s = sum(r["direct"]["seconds"] for r in rows)
    same_s = sum(r["same"]["seconds"] for r in rows)
    own_s = sum(r["same"]["seconds"] - r["same_engine_s"] for r in rows)
    identical = sum(abs(r["same"]["distance"] - r["direct"]["distance"]) < 1e-6 for r in rows)
    late = max(r[v]["late"] for r in rows for v in ("direct", "same", "ours"))
    cpu_share = sum(r["direct"]["cpu"] for r in rows) / direct_s
    mode = f"{args.rounds} rounds" if args.rounds else f"budget {args.budget} s"
    out += [
        "",
        f"- adapter vs direct, wall clock summed: {100 * (same_s / direct_s - 1):+.1f} %",
        (
            f"- adapter's own work (matrix, input, reading the answer) in `same`: {own_s:.2f} s "
            f"of {same_s:.2f} s = {100 * own_s / same_s:.2f} %"
        ),
        f"- `same` found the same plan as `direct` on {identical}/{len(rows)} instances",
        (
            f"- ours: {mode}, first stage level {args.level}; "
            f"slowest instance {max(r['ours']['seconds'] for r in rows):.2f} s"
        ),
        f"- CPU share of `direct` (2 threads; 2.0 = both cores to ourselves): {cpu_share:.2f}",
        f"- worst lateness replaying every plan in floating point: {late:.4f}",
    ]
    return "\n".join(out)


def _mean(rows: list[dict], variant: str, key: str) -> float:
    return statistics.fmean(r[variant][key] for r in rows) if rows else math.nan


def write(rows: list[dict], report: str, args: argparse.Namespace) -> None:
    """Replace this mode's generated section of SOLOMON_RESULTS.md (budget runs and
    rounds runs keep a section each); the hand-written text around them stays."""
    table = [
        (
            "| instance | BKS | direct veh | direct dist | direct gap % | direct s "
            "| ours veh | ours dist | ours gap % | ours s | ours CPU s | rounds |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d, o = r["direct"], r["ours"]
        table.append(
            f"| {r['name']} | {r['bks']:.2f} | {d['vehicles']} | {d['distance']:.2f} "
            f"| {d['gap']:.2f} | {d['seconds']:.2f} | {o['vehicles']} | {o['distance']:.2f} "
            f"| {o['gap']:.2f} | {o['seconds']:.2f} | {o['cpu']:.2f} | {r['rounds']} |"
        )
    mode = "rounds" if args.rounds else "budget"
    begin, end = f"<!-- {mode} run: begin -->", f"<!-- {mode} run: end -->"
    command = " ".join(["`.venv/bin/python bench/solomon.py", *sys.argv[1:]]) + "`"
    section = "\n".join(
        [
            begin,
            "",
            f"{command} — {time.strftime('%Y-%m-%d %H:%M')}",
            "",
            report,
            "",
            "<details><summary>per instance</summary>",
            "",
            *table,
            "",
            "</details>",
            "",
            end,
        ]
    )
    path = ROOT / "bench" / "SOLOMON_RESULTS.md"
    text = path.read_text() if path.exists() else "# Solomon VRPTW results\n"
    if begin in text and end in text:
        text = text.split(begin)[0] + section + text.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
