"""Routing throughput: placed orders routed by Celery workers (1 and 2 processes), orders/s.

    .venv/bin/python bench/routing_generate.py                  # once: 10,000 placed orders
    .venv/bin/python bench/routing_throughput.py --code 997f0bd # the benchmark (≈ 5-6 min)
    .venv/bin/python bench/routing_throughput.py --code HEAD    # the committed code, not edits
    .venv/bin/python bench/routing_throughput.py --code /tmp/copy   # another checkout's code
    .venv/bin/python bench/routing_throughput.py --configs 1x1,2x1 --max-phase-seconds 0
    .venv/bin/python bench/routing_throughput.py --reconnect-orders 500 --configs ""
    .venv/bin/python bench/routing_throughput.py profile        # pyinstrument + SQL, 500 orders
    .venv/bin/python bench/routing_throughput.py profile --prefill-days 30   # the day walk

Phases, each after a reset (orders back to `placed`, their non-`placed` events, shipments,
legs, tracking events, stops, center day loads and notifications deleted, VACUUM ANALYZE,
the queue purged):

1. **in-process** — `order_route(order_id=…)` in a plain loop over `--baseline-orders`
   orders in this process (no Celery; the notification tasks it enqueues after each commit
   are published to the bench queue as in a worker, and purged after).
   **in-proc+conn** (`--reconnect-orders`) — the same with the connection closed before
   every order, as Celery's Django fix-up does around every task.
2. **celery PxC** for each of `--configs` (default `1x1,2x1,1x2`: 1 and 2 worker
   *processes* with `--concurrency 1 --pool prefork` each, and one process with
   `--concurrency 2` as docker-compose runs it): the workers are started and pinged, then
   `route_order` is sent for every order (`send_task("logistics.tasks.route_order",
   args=[id], queue="bench-routing")`, one producer connection) and the clock runs from
   the first send until every order is `confirmed` (polled every 0.5 s; the end time is
   the orders' latest `updated_at`, so the poll does not round it). A phase is cut at
   `--max-phase-seconds` (0: no limit; the default 75 s keeps the whole run near 6 min)
   and then reports the orders confirmed by then over the time.
3. **notifications**, with the same workers: they consume the one queue, as in
   production, so the send_notifications messages routing enqueued after its commits wait
   behind the routing tasks (Redis lists are FIFO; one message stands for every
   notification written while it waits, and each task sends all that are due). After the
   routing phase (if it was cut: after emptying the queue and sending one send task per
   worker slot) the
   script counts notifications sent for `--notify-seconds` and reports notifications/s
   and the combined rate: orders/s if every order's notifications are sent too.

Per phase it also reports the steady rate (10 % → 90 % of the orders, when reached), CPU
ms per order of the routing Python (workers, or this script in-process) and of the
bench database's PostgreSQL backends (see CpuMeter: an upper bound when others run
short-lived processes), the cores the rest of the machine used meanwhile (other
benchmarks share these 2 cores: `--wait-quiet` waits for a quiet moment first), the
PostgreSQL sessions opened, deadlocks (pg_stat_database), backends seen waiting on a
lock, and task retries (worker log). `--prefill-days N` books every center's next N days
full first, as late in a run at realistic capacity.

Environment (the same for this script and the workers): `marketplace.settings.production`
with a fixed SECRET_KEY and PAYMENT_WEBHOOK_SECRET, SECURE_SSL_REDIRECT=false,
DATABASE_URL=…/marketplace_routing_bench, CELERY_QUEUE=bench-routing (see
bench/routing_generate.py BENCH_ENV). Workers: `python -m celery -A marketplace worker
--pool prefork --concurrency C -Q bench-routing -l INFO --without-mingle --without-gossip`
(`--pool`, `--loglevel`; INFO as in docker-compose), logs in
bench/results/routing_worker-<UTC>-<phase>.log. The app code is this working tree unless
`--code` names a directory or a git revision (exported to .data/routing-code-<sha>/, so
that edits in progress in the working tree cannot break or change a run). Results:
printed, and written to bench/results/routing_throughput-<UTC>.json (profile:
routing_profile-<UTC>.txt/.json).
"""

# Django is set up at run time (settings from the bench environment, app code from --code),
# so the app's imports live in the functions; the subprocesses run fixed argument lists.
# ruff: noqa: PLC0415, S603, S607, PLR0912, PLR0915

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TASK = "logistics.tasks.route_order"
NOTIFY_TASK = "orders.notifications.send_notifications"
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- set-up
def resolve_code(code: str) -> tuple[Path, str]:
    """`.`: this working tree as it is; a path: another checkout; anything else is a git
    revision of this repository, exported once (git archive) to .data/routing-code-<sha>/
    so that edits going on in the working tree cannot change the code under test."""
    if code == ".":
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return ROOT, f"{sha}{' + uncommitted changes' if dirty else ''} (working tree)"
    if Path(code).is_dir():
        return Path(code).resolve(), f"{code} (directory)"
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{code}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = ROOT / ".data" / f"routing-code-{sha[:12]}"
    if not target.is_dir():
        tmp = target.with_name(target.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        tmp.rename(target)
    return target, f"{sha} (git archive → {target.relative_to(ROOT)})"


def setup(code: Path | None) -> dict[str, str]:
    """Configure the bench environment and Django; with --code, import the app from there."""
    sys.path.insert(0, str(ROOT))
    from bench.routing_generate import QUEUE, configure_env, refuse_unless_bench

    env = configure_env()
    if env["CELERY_QUEUE"] != QUEUE:
        raise SystemExit(f"CELERY_QUEUE must be {QUEUE!r}, not {env['CELERY_QUEUE']!r}")
    if code and code != ROOT:
        sys.path.insert(0, str(code))
        env["PYTHONPATH"] = str(code)
    import django

    django.setup()
    from django.db import connection

    refuse_unless_bench(connection)
    return env


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------- CPU accounting
def proc_stat(pid: int) -> tuple[str, float, float] | None:
    """(command, CPU seconds used, start time in seconds since boot), None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return comm, (int(fields[11]) + int(fields[12])) / TICK, int(fields[19]) / TICK


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(x) for x in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


class CpuMeter:
    """Where the machine's CPU went during a phase. Every process is sampled every 0.5 s
    (a thread with a connection of its own) and put in one class: `workers` (the worker
    processes this script started, with their pool children), `script` (this process:
    in-process routing, or sending the tasks and polling), `pg_mine` (client backends of
    the bench database, but the monitoring ones), `pg_other` (client backends of other
    databases), `pg_aux` (other PostgreSQL processes: WAL writer, checkpointer,
    autovacuum, parallel workers, the monitoring backends), `other` (everything else:
    other benchmarks, Redis, …), `monitor` (the sampling thread). What processes born and
    gone between two samples used is seen by no class: `unseen` = busy CPU − the classes.
    Celery's Django fix-up closes the database connection around every task, so in the
    Celery phases each routing task runs in a fresh, short-lived backend and most of the
    bench database's PostgreSQL work lands in `unseen` (with others' short-lived
    processes, if any)."""

    CLASSES = ("workers", "script", "pg_mine", "pg_other", "pg_aux", "other", "monitor")

    def __init__(self, db_name: str, exclude_backend: int, interval: float = 0.5) -> None:
        import psycopg

        # A connection of its own: the sampling thread runs beside the phase's polls.
        self.conn = psycopg.connect(
            f"host=127.0.0.1 port=5432 user=postgres dbname={db_name}", autocommit=True
        )
        self.cursor, self.db_name, self.interval = self.conn.cursor(), db_name, interval
        self.exclude = {exclude_backend, self.conn.info.backend_pid}
        self.seen: dict[int, list] = {}  # pid -> [cpu at start, latest cpu, class]
        self.roots: list[int] = []
        self.sampler_cpu = 0.0  # the sampling thread's own CPU, taken out of `script`
        self.done = threading.Event()

    def start(self, roots: list[int]) -> None:
        self.roots = roots
        self.started_up, self.busy0, self.wall0 = uptime(), machine_busy(), time.perf_counter()
        self.script0 = time.process_time()
        self.sample()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        cpu0 = time.thread_time()
        while not self.done.wait(self.interval):
            self.sample()
        self.sampler_cpu = time.thread_time() - cpu0

    def sample(self) -> None:
        mine, todo = set(), list(self.roots)
        while todo:
            pid = todo.pop()
            if pid not in mine:
                mine.add(pid)
                todo += children(pid)
        self.cursor.execute(
            "SELECT pid, datname = %s FROM pg_stat_activity WHERE backend_type = "
            "'client backend' AND NOT pid = ANY(%s)",
            [self.db_name, list(self.exclude)],
        )
        backends = dict(self.cursor.fetchall())
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = proc_stat(pid)
            if stat is None:
                continue
            comm, used, started = stat
            if pid == me:
                kind = "script"
            elif pid in mine:
                kind = "workers"
            elif pid in backends:
                kind = "pg_mine" if backends[pid] else "pg_other"
            elif pid in self.exclude:
                kind = "pg_aux"  # the monitor connections: polling, not routing
            elif comm == "postgres" or comm.startswith("postgres"):
                kind = "pg_aux"
            else:
                kind = "other"
            if pid not in self.seen:
                # A process born during the phase counts from zero.
                self.seen[pid] = [0.0 if started >= self.started_up else used, used, kind]
            row = self.seen[pid]
            row[1] = used
            if row[2] == "pg_aux" and kind.startswith("pg_") and kind != "pg_aux":
                row[2] = kind  # a backend seen before pg_stat_activity listed it

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        self.sample()
        self.conn.close()
        wall = time.perf_counter() - self.wall0
        busy = machine_busy() - self.busy0
        used = dict.fromkeys(self.CLASSES, 0.0)
        for first, last, kind in self.seen.values():
            used[kind] += max(0.0, last - first)
        # This process: its CPU less the sampling thread's (monitoring, like the polls).
        script = time.process_time() - self.script0
        used["script"] = max(0.0, script - self.sampler_cpu)
        used["monitor"] = self.sampler_cpu
        unseen = max(0.0, busy - sum(used.values()))
        return {
            "wall_s": wall,
            **{f"{kind}_cpu_s": value for kind, value in used.items()},
            "unseen_cpu_s": unseen,
            "machine_busy_cores": busy / wall,
            "others_cores": (used["pg_other"] + used["other"]) / wall,
        }


def wait_quiet(limit: float, threshold: float = 0.3) -> tuple[float, float]:
    """(cores busy over the last second, seconds waited): waits up to `limit` seconds for
    the machine to be busy with less than `threshold` cores."""
    started = time.perf_counter()
    while True:
        busy = quiet_check()
        waited = time.perf_counter() - started
        if busy < threshold or waited >= limit:
            return busy, waited


def quiet_check(seconds: float = 1.0) -> float:
    """Cores the machine is busy with right now (before a phase starts)."""
    busy0, wall0 = machine_busy(), time.perf_counter()
    time.sleep(seconds)
    return (machine_busy() - busy0) / (time.perf_counter() - wall0)


# --------------------------------------------------------------------------- database
def reset(cursor, queue_purge, prefill_days: int = 0) -> None:
    """Orders back to `placed`, everything routing wrote removed, the queue emptied. With
    `prefill_days`, every center's next N days (from today) are booked full, as late in a
    run at realistic capacity: each booking then walks N days before it finds room."""
    cursor.execute(
        "TRUNCATE logistics_stop_shipments, logistics_stop, logistics_trackingevent, "
        "logistics_shipmentleg, logistics_shipment, logistics_centerdayload, "
        "orders_notification"
    )
    cursor.execute("DELETE FROM orders_orderevent WHERE to_status <> 'placed'")
    cursor.execute("UPDATE orders_order SET status = 'placed' WHERE status <> 'placed'")
    if prefill_days:
        cursor.execute(
            "INSERT INTO logistics_centerdayload (center_id, date, booked_kg) "
            "SELECT c.id, (now() AT TIME ZONE 'Asia/Shanghai')::date + d, c.daily_capacity_kg "
            "FROM logistics_servicecenter c, generate_series(0, %s - 1) d",
            [prefill_days],
        )
    for table in ("orders_order", "orders_orderevent", "logistics_centerdayload"):
        cursor.execute(f"VACUUM ANALYZE {table}")
    queue_purge()


def pg_counters(cursor, db_name: str) -> dict[str, int]:
    cursor.execute(
        "SELECT xact_commit, xact_rollback, deadlocks, sessions FROM pg_stat_database "
        "WHERE datname = %s",
        [db_name],
    )
    commit, rollback, deadlocks, sessions = cursor.fetchone()
    return {"commits": commit, "rollbacks": rollback, "deadlocks": deadlocks, "sessions": sessions}


def pg_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in before}


def poll(cursor, db_name: str) -> tuple[int, int, int, int]:
    """(orders confirmed, notifications sent, backends waiting on a lock, backends active)."""
    cursor.execute(
        "SELECT (SELECT count(*) FROM orders_order WHERE status = 'confirmed'),"
        " (SELECT count(*) FROM orders_notification WHERE sent_at IS NOT NULL),"
        " (SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'),"
        " (SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
        "  AND pid <> pg_backend_pid())",
        [db_name, db_name],
    )
    return cursor.fetchone()


# --------------------------------------------------------------------------- workers
class Workers:
    """N `celery worker` processes, each in a session of its own (so that stopping one
    takes its pool child too), on the bench queue and database."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        *,
        procs: int,
        concurrency: int,
        tag: str,
        pool: str = "prefork",
        loglevel: str = "INFO",
    ):
        self.env, self.cwd, self.tag, self.pool, self.loglevel = env, cwd, tag, pool, loglevel
        self.procs, self.concurrency = procs, concurrency
        self.hostnames = [f"routing-bench-{tag}-{i}@{os.uname().nodename}" for i in range(procs)]
        self.log_path = RESULTS / f"routing_worker-{tag}.log"
        self.processes: list[subprocess.Popen] = []

    def start(self, app, queue: str, timeout: float = 60) -> float:
        started = time.perf_counter()
        log = self.log_path.open("ab")
        for hostname in self.hostnames:
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "marketplace",
                        "worker",
                        "--pool",
                        self.pool,
                        "--concurrency",
                        str(self.concurrency),
                        "-Q",
                        queue,
                        "--hostname",
                        hostname,
                        "--loglevel",
                        self.loglevel,
                        "--without-mingle",
                        "--without-gossip",
                    ],
                    cwd=self.cwd,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        waiting = set(self.hostnames)
        deadline = time.monotonic() + timeout
        while waiting:
            for reply in app.control.ping(destination=sorted(waiting), timeout=0.5):
                waiting -= set(reply)
            if any(p.poll() is not None for p in self.processes) or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"workers did not start; see {self.log_path}")
        return time.perf_counter() - started

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Warm shutdown (the task in hand finishes), then SIGKILL to the group of each
        process this script started if it is still there after 20 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []

    def retries(self) -> int:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return len(re.findall(r"\bretry: Retry in\b", text))

    def errors(self) -> list[str]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return re.findall(r"^.*(?:ERROR|CRITICAL).*$", text, flags=re.MULTILINE)[:5]


# --------------------------------------------------------------------------- phases
def steady_rate(samples: list[tuple[float, int]], total: int) -> float | None:
    """Orders/s between the polls where 10 % and 90 % of the orders were confirmed."""
    low = next((s for s in samples if s[1] >= total * 0.1), None)
    high = next((s for s in samples if s[1] >= total * 0.9), None)
    if not low or not high or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


def run_inprocess(ctx, count: int, args, *, reconnect: bool = False) -> dict:
    """order_route in a loop in this process. With `reconnect`, the database connection is
    closed before every order, as Celery's Django fix-up does around every task, and each
    backend's CPU is read from /proc just before it goes (short-lived backends are
    otherwise missed by the sampling)."""
    from django.db import connection

    from logistics.services.routing import order_route

    ids = ctx["ids"][:count]
    reset(ctx["cursor"], ctx["purge"], ctx["prefill_days"])
    others, waited = wait_quiet(args.wait_quiet)
    meter = CpuMeter(ctx["db"], ctx["monitor_pid"])
    before = pg_counters(ctx["cursor"], ctx["db"])
    meter.start([])
    backends_cpu = 0.0
    started = time.perf_counter()
    for order_id in ids:
        if reconnect and connection.connection is not None:
            stat = proc_stat(connection.connection.info.backend_pid)
            backends_cpu += stat[1] if stat else 0.0
            connection.close()
        order_route(order_id=order_id)
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    if reconnect:
        # Closed backends are counted exactly above; the sampler may also have caught
        # some of them alive: count them once, from the exact figure.
        cpu["unseen_cpu_s"] = 0.0
        cpu["pg_mine_cpu_s"] = backends_cpu
    confirmed, *_ = poll(ctx["cursor"], ctx["db"])
    ctx["cursor"].execute("SELECT count(*) FROM orders_notification")
    (notifications,) = ctx["cursor"].fetchone()
    if confirmed != len(ids):
        raise SystemExit(f"in-process: {confirmed} of {len(ids)} orders confirmed")
    ctx["purge"]()  # the notification tasks it published: no worker runs them here
    return {
        "phase": "in-proc+conn" if reconnect else "in-process",
        "orders": len(ids),
        "seconds": elapsed,
        "orders_per_s": len(ids) / elapsed,
        "notifications": notifications,
        "busy_before_cores": others,
        "waited_for_quiet_s": waited,
        **cpu,
        **pg_delta(before, pg_counters(ctx["cursor"], ctx["db"])),
    }


def run_celery(ctx, procs: int, concurrency: int, args) -> dict:
    cursor, db, app, ids = ctx["cursor"], ctx["db"], ctx["app"], ctx["ids"]
    tag = f"{ctx['stamp']}-{procs}x{concurrency}"
    reset(cursor, ctx["purge"], ctx["prefill_days"])
    workers = Workers(
        ctx["env"],
        ctx["cwd"],
        procs=procs,
        concurrency=concurrency,
        tag=tag,
        pool=args.pool,
        loglevel=args.loglevel,
    )
    startup = workers.start(app, ctx["queue"])
    try:
        others, waited = wait_quiet(args.wait_quiet)
        meter = CpuMeter(db, ctx["monitor_pid"])
        before = pg_counters(cursor, db)
        meter.start(workers.pids)
        wall0, started = time.time(), time.perf_counter()
        with app.producer_or_acquire() as producer:
            for order_id in ids:
                app.send_task(TASK, args=[order_id], queue=ctx["queue"], producer=producer)
        enqueued = time.perf_counter() - started
        samples: list[tuple[float, int]] = [(0.0, 0)]
        lock_waits, active_polls, polls, cut = 0, 0, 0, False
        while True:
            time.sleep(0.5)
            confirmed, _, waiting, active = poll(cursor, db)
            at = time.perf_counter() - started
            samples.append((at, confirmed))
            polls, lock_waits, active_polls = polls + 1, lock_waits + waiting, active_polls + active
            if confirmed >= len(ids):
                break
            if args.max_phase_seconds and at >= args.max_phase_seconds:
                cut = True
                break
        cpu = meter.stop()
        counters = pg_delta(before, pg_counters(cursor, db))
        cursor.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM max(updated_at)) FROM orders_order "
            "WHERE status = 'confirmed'"
        )
        confirmed, last = cursor.fetchone()
        elapsed = (float(last) - wall0) if confirmed and not cut else samples[-1][0]
        # Notifications: queued behind the routing tasks, sent from now on.
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE sent_at IS NOT NULL) FROM orders_notification"
        )
        notifications, sent0 = cursor.fetchone()
        notify = {}
        if args.notify_seconds > 0:
            # The send messages routing enqueued wait behind the routing tasks (FIFO);
            # after a cut, routing tasks are still queued: empty the queue and send one
            # send_notifications message per worker slot (the senders skip each other's
            # rows), then time the workers on them for --notify-seconds (or until all are
            # sent).
            if cut:
                ctx["purge"]()
                with app.producer_or_acquire() as producer:
                    for _ in range(procs * concurrency):
                        app.send_task(NOTIFY_TASK, args=[], queue=ctx["queue"], producer=producer)
                _, sent0, _, _ = poll(cursor, db)
            meter = CpuMeter(db, ctx["monitor_pid"])
            meter.start(workers.pids)
            t0, sent = time.perf_counter(), sent0
            while time.perf_counter() - t0 < args.notify_seconds and sent < notifications:
                time.sleep(0.5)
                _, sent, _, _ = poll(cursor, db)
            seconds = time.perf_counter() - t0
            ncpu = meter.stop()
            # All in: from the first routing message sent until every order is routed and
            # every notification sent, so the routing messages that found their order
            # already routed by a batch (consumed before the last notifications: FIFO) count.
            all_sent_s = None
            if not cut:
                deadline = time.perf_counter() + args.drain_seconds
                while sent < notifications and time.perf_counter() < deadline:
                    time.sleep(0.25)
                    _, sent, _, _ = poll(cursor, db)
                if sent >= notifications:
                    all_sent_s = time.time() - wall0
            rate = (sent - sent0) / seconds
            per_order = notifications / max(confirmed, 1)
            route_rate = confirmed / elapsed
            done = max(sent - sent0, 1)
            notify = {
                "notifications": notifications,
                "notifications_per_order": per_order,
                "notifications_sent_in_window": sent - sent0,
                "notify_window_s": seconds,
                "notifications_per_s": rate,
                "notify_workers_cpu_ms": ncpu["workers_cpu_s"] / done * 1000,
                "notify_pg_cpu_ms": (ncpu["pg_mine_cpu_s"] + ncpu["unseen_cpu_s"]) / done * 1000,
                "notify_others_cores": ncpu["others_cores"],
                "combined_orders_per_s": 1 / (1 / route_rate + per_order / rate) if rate else None,
                "all_sent_s": all_sent_s,
                "all_in_orders_per_s": len(ids) / all_sent_s if all_sent_s else None,
            }
    finally:
        workers.stop()
        ctx["purge"]()
    return {
        "phase": f"celery {procs}x{concurrency}"
        + ("" if args.pool == "prefork" else f" {args.pool}")
        + ("" if args.loglevel == "INFO" else f" {args.loglevel}"),
        "procs": procs,
        "concurrency": concurrency,
        "orders": len(ids),
        "confirmed": confirmed,
        "cut_at_max_seconds": cut,
        "seconds": elapsed,
        "orders_per_s": confirmed / elapsed,
        "steady_orders_per_s": steady_rate(samples, len(ids)),
        "enqueue_s": enqueued,
        "worker_startup_s": startup,
        "busy_before_cores": others,
        "waited_for_quiet_s": waited,
        "lock_waiting_backends_avg": lock_waits / max(polls, 1),
        "active_backends_avg": active_polls / max(polls, 1),
        "retries": workers.retries(),
        "worker_errors": workers.errors(),
        "worker_log": str(workers.log_path.relative_to(ROOT)),
        **cpu,
        **counters,
        **notify,
    }


# --------------------------------------------------------------------------- profile
def statement_key(sql: str) -> str:
    verb = sql.split(None, 1)[0].upper()
    match = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql)
    key = f"{verb} {match.group(1) if match else '?'}"
    if "FOR UPDATE" in sql:
        key += " FOR UPDATE"
    if "ON CONFLICT" in sql:
        key += " ON CONFLICT DO UPDATE" if "DO UPDATE" in sql else " ON CONFLICT DO NOTHING"
    if verb == "SELECT" and "JOIN" in sql:
        key += " (joins)"
    return key


def profile(ctx, count: int) -> dict:
    from django.db import connection
    from pyinstrument import Profiler

    from logistics.services.routing import order_route

    ids = ctx["ids"][:count]
    reset(ctx["cursor"], ctx["purge"], ctx["prefill_days"])
    stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = stats[statement_key(sql)]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    commits = [0, 0.0]
    real_commit = connection.commit

    def timed_commit():
        started = time.perf_counter()
        try:
            return real_commit()
        finally:
            commits[0] += 1
            commits[1] += time.perf_counter() - started

    order_route(order_id=ids[0])  # warm: first-query costs stay out of the numbers
    ids = ids[1:]
    connection.commit = timed_commit  # order_route's atomic() commits through this
    profiler = Profiler(interval=0.001)
    cpu0, started = time.process_time(), time.perf_counter()
    with connection.execute_wrapper(timed):
        profiler.start()
        for order_id in ids:
            order_route(order_id=order_id)
        profiler.stop()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    del connection.commit
    ctx["purge"]()
    n = len(ids)
    ctx["cursor"].execute(
        "SELECT count(*), count(*) FILTER (WHERE origin_center_id <> destination_center_id)"
        " FROM logistics_shipment"
    )
    shipments, crossing = ctx["cursor"].fetchone()
    ctx["cursor"].execute("SELECT count(*) FROM orders_notification")
    (notifications,) = ctx["cursor"].fetchone()
    statements = sorted(stats.items(), key=lambda x: -x[1][1])
    total_q = sum(c for c, _ in stats.values())
    total_t = sum(t for _, t in stats.values())
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    stamp = ctx["stamp"]
    (RESULTS / f"routing_profile-{stamp}.txt").write_text(text)
    if ctx["html"]:
        (RESULTS / f"routing_profile-{stamp}.html").write_text(profiler.output_html())
    print(text)
    print(
        f"{n} orders in-process under pyinstrument: {elapsed / n * 1000:.1f} ms wall, "
        f"{cpu / n * 1000:.1f} ms CPU per order; {shipments / n:.2f} shipments "
        f"({crossing / n:.2f} crossing centers), {notifications / n:.2f} notifications/order"
    )
    print(
        f"SQL: {total_q / n:.1f} statements/order ({total_t / n * 1000:.1f} ms) "
        f"+ BEGIN/COMMIT (commit {commits[1] / max(commits[0], 1) * 1000:.2f} ms)"
    )
    print(f"{'statement':58} {'per order':>9} {'ms/order':>9} {'ms each':>8}")
    for key, (count_, seconds) in statements:
        print(
            f"{key:58} {count_ / n:9.2f} {seconds / n * 1000:9.2f} {seconds / count_ * 1000:8.3f}"
        )
    reset(ctx["cursor"], ctx["purge"])
    return {
        "code": ctx["code_label"],
        "prefill_days": ctx["prefill_days"],
        "orders": n,
        "wall_ms_per_order": elapsed / n * 1000,
        "cpu_ms_per_order": cpu / n * 1000,
        "statements_per_order": total_q / n,
        "sql_ms_per_order": total_t / n * 1000,
        "commit_ms": commits[1] / max(commits[0], 1) * 1000,
        "shipments_per_order": shipments / n,
        "crossing_per_order": crossing / n,
        "notifications_per_order": notifications / n,
        "statements": {
            k: {"per_order": c / n, "ms_per_order": t / n * 1000} for k, (c, t) in statements
        },
        "profile_txt": f"bench/results/routing_profile-{stamp}.txt",
    }


# --------------------------------------------------------------------------- main
def print_table(rows: list[dict]) -> None:
    """py: CPU ms per order of the routing Python (the workers; in-process: this script);
    enq: this script's CPU ms per task sent (sending, polling); pg: CPU ms per order of this
    database's backends plus of processes too short-lived to be sampled (an upper bound,
    see CpuMeter); ceil: 2 cores / (py + pg), the rate CPU alone would allow; others:
    cores used meanwhile by everything not this benchmark's; conns: PostgreSQL sessions
    opened; lockw: backends seen waiting on a lock (average of the polls); dlk: deadlocks;
    notif/s: notification tasks sent per second; w/notif: orders/s counting each order's
    notifications too."""
    nan = float("nan")
    print(
        f"{'phase':13} {'orders':>6} {'s':>6} {'orders/s':>8} {'steady':>6} {'py':>6} "
        f"{'enq':>5} {'pg':>6} {'ceil':>5} {'others':>6} {'conns':>6} {'lockw':>5} {'dlk':>4} "
        f"{'retry':>5} {'notif/s':>7} {'w/notif':>7} {'all-in':>7}"
    )
    for r in rows:
        done = r.get("confirmed", r["orders"])
        inproc = r["phase"].startswith("in-proc")
        py = (r["script_cpu_s"] if inproc else r["workers_cpu_s"]) / done * 1000
        enq = 0.0 if inproc else r["script_cpu_s"] / r["orders"] * 1000
        pg = (r["pg_mine_cpu_s"] + r["unseen_cpu_s"]) / done * 1000
        r["cpu_ms_per_order"], r["ceiling_2_cores"] = py + pg, 2000 / (py + pg)

        def num(key, width=7, digits=1, r=r):
            value = r.get(key)
            return f"{value if value is not None else nan:{width}.{digits}f}"

        print(
            f"{r['phase']:13} {done:6d} {r['seconds']:6.1f} {r['orders_per_s']:8.1f} "
            f"{num('steady_orders_per_s', 6)} {py:6.2f} {enq:5.2f} {pg:6.2f} "
            f"{r['ceiling_2_cores']:5.0f} {r['others_cores']:6.2f} {r['sessions']:6d} "
            f"{r.get('lock_waiting_backends_avg', 0):5.2f} {r['deadlocks']:4d} "
            f"{r.get('retries', 0):5d} {num('notifications_per_s')} {num('combined_orders_per_s')}"
            f" {num('all_in_orders_per_s')}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "profile"), default="run")
    parser.add_argument(
        "--configs", default="1x1,2x1,1x2", help="PROCSxCONCURRENCY,… e.g. 1x1,2x1,1x2"
    )
    parser.add_argument("--baseline-orders", type=int, default=2_000, help="0: skip")
    parser.add_argument(
        "--reconnect-orders",
        type=int,
        default=0,
        help="also route this many in-process with a new connection per order, as "
        "Celery's Django fix-up does per task (0: skip)",
    )
    parser.add_argument("--profile-orders", type=int, default=500)
    parser.add_argument(
        "--html", action="store_true", help="profile: also write pyinstrument's HTML (~20 MB)"
    )
    parser.add_argument("--max-phase-seconds", type=float, default=75, help="0: no limit")
    parser.add_argument("--notify-seconds", type=float, default=8, help="0: skip")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=180,
        help="after a complete phase, wait this long at most for every notification (all-in)",
    )
    parser.add_argument("--pool", default="prefork", help="worker --pool")
    parser.add_argument("--loglevel", default="INFO", help="worker --loglevel (compose: INFO)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help="before each phase wait up to this many seconds for the machine to be quiet "
        "(< 0.3 cores busy); other benchmarks share these cores",
    )
    parser.add_argument(
        "--code",
        default=".",
        help="the app code to run: . (this working tree, default), a directory, or a git "
        "revision such as HEAD (exported to .data/routing-code-<sha>/)",
    )
    parser.add_argument("--label", default="", help="a note stored with the results")
    parser.add_argument(
        "--prefill-days",
        type=int,
        default=0,
        help="book every center's next N days full before each phase (the day walk late "
        "in a run at realistic capacity)",
    )
    args = parser.parse_args()

    code, code_label = resolve_code(args.code)
    env = setup(code)
    from django.db import connection

    from marketplace.celery import app, pending_taken

    queue = env["CELERY_QUEUE"]
    RESULTS.mkdir(parents=True, exist_ok=True)

    def purge() -> None:
        """Empty the bench queue, and clear the flags of the messages it held
        (send_unless_pending), so the next change sends a message again at once."""
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)
        for name in (NOTIFY_TASK, TASK):
            pending_taken(name)

    from orders.models import Order

    ctx = {
        "app": app,
        "env": env,
        "cwd": code,
        "queue": queue,
        "purge": purge,
        "db": connection.settings_dict["NAME"],
        "stamp": now_utc(),
        "prefill_days": args.prefill_days,
        "code_label": code_label,
        "html": args.html,
        "ids": list(Order.objects.order_by("pk").values_list("pk", flat=True)),
    }
    # A connection of its own for polls and resets, in autocommit (VACUUM needs it).
    import psycopg

    monitor = psycopg.connect(
        f"host=127.0.0.1 port=5432 user=postgres dbname={ctx['db']}", autocommit=True
    )
    ctx["cursor"] = monitor.cursor()
    ctx["monitor_pid"] = monitor.info.backend_pid
    if args.command == "profile":
        result = profile(ctx, args.profile_orders)
        out = RESULTS / f"routing_profile-{ctx['stamp']}.json"
        out.write_text(json.dumps(result, indent=1))
        return

    started = time.perf_counter()
    rows = []
    if args.baseline_orders:
        rows.append(run_inprocess(ctx, args.baseline_orders, args))
        print_table(rows[-1:])
    if args.reconnect_orders:
        rows.append(run_inprocess(ctx, args.reconnect_orders, args, reconnect=True))
        print_table(rows[-1:])
    for config in filter(None, args.configs.split(",")):
        procs, concurrency = (int(x) for x in config.lower().split("x"))
        rows.append(run_celery(ctx, procs, concurrency, args))
        print_table(rows[-1:])
    reset(ctx["cursor"], purge)
    print(f"\n{ctx['db']}, code {code_label}, {time.perf_counter() - started:.0f} s in all")
    print_table(rows)
    by = {r["phase"]: r for r in rows}
    one = by.get("celery 1x1")
    for r in rows:
        if one and r["phase"] != one["phase"] and r["phase"].startswith("celery"):
            r["scaling_vs_1x1"] = r["orders_per_s"] / one["orders_per_s"]
            print(f"scaling {r['phase']} / {one['phase']}: {r['scaling_vs_1x1']:.2f}×")
    out = RESULTS / f"routing_throughput-{ctx['stamp']}.json"
    out.write_text(
        json.dumps(
            {
                "label": args.label,
                "code": code_label,
                "db": ctx["db"],
                "orders": len(ctx["ids"]),
                "args": {k: str(v) for k, v in vars(args).items()},
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"→ {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
