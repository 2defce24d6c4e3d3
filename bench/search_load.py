"""Search load benchmark: our /api/v1/listings/ against the raw-SQL floor and a naive viewset.

    .venv/bin/python bench/generate_listings.py     # once: 100,000 listings into marketplace_bench
    .venv/bin/python bench/search_load.py           # ~4 minutes

For each scenario (text query in Chinese and in English, category + price range, near +
radius ordered by distance), pages 1–5 in rotation, 16 concurrent clients run for a fixed
time after a warm-up against each target, one target at a time:

- ours   GET /api/v1/listings/ on gunicorn (bench.settings: production settings, CONN_MAX_AGE>0)
- naive  GET /bench/naive/listings/ on the same gunicorn (bench/naive.py)
- floor  the SQL that `ours` runs for the same request (count + page, captured from the
         view itself), sent straight through psycopg (AsyncClientCursor, as Django uses),
         with as many connections as gunicorn has request threads, rows fetched, no HTTP
- variant names from bench/variants.py (e.g. --targets ours,floor,values,lean)

First a short pick between gunicorn configurations (--configs; the best requests/s on a
mix of all scenarios wins and serves the whole run). All traffic goes to 127.0.0.1. Prints
a table and writes everything (settings, machine, SQL, per-cell numbers) to
bench/results/search_load-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import httpx  # noqa: E402
import psycopg  # noqa: E402

from marketplace.gunicorn_workers import WORKER_CLASS_PATHS  # noqa: E402

SCENARIOS: dict[str, dict[str, str]] = {
    "text_zh": {"q": "西红柿"},
    "text_en": {"q": "tomato"},
    "category_price": {"category": "vegetables", "min_price": "2", "max_price": "8"},
    "near": {"near": "30.2,119.6", "radius_km": "10", "ordering": "distance"},
}
PAGES = (1, 2, 3, 4, 5)
OURS_PATH = "/api/v1/listings/"
NAIVE_PATH = "/bench/naive/listings/"
VARIANT_PATH = "/bench/variants/{name}/listings/"


@dataclass(frozen=True)
class ServerConfig:
    worker_class: str  # sync | gthread
    workers: int
    threads: int = 1

    @classmethod
    def parse(cls, text: str) -> ServerConfig:
        """sync:4 or gthread:2x4 (workers x threads)."""
        kind, _, size = text.partition(":")
        workers, _, threads = size.partition("x")
        if kind not in ("sync", "gthread"):
            raise argparse.ArgumentTypeError(f"unknown worker class in {text!r}")
        return cls(kind, int(workers), int(threads or 1) if kind == "gthread" else 1)

    @property
    def label(self) -> str:
        return f"{self.worker_class}:{self.workers}" + (
            f"x{self.threads}" if self.worker_class == "gthread" else ""
        )

    @property
    def db_connections(self) -> int:
        return self.workers * self.threads


@dataclass
class Cell:
    scenario: str
    target: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    rps_per_round: list[float] = field(default_factory=list)
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)


def percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return float("nan")
    rank = pct / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(cell: Cell, latencies: list[float], elapsed: float) -> Cell:
    ordered = sorted(latencies)
    cell.requests, cell.seconds = len(ordered), round(elapsed, 3)
    cell.rps = round(len(ordered) / elapsed, 1) if elapsed else 0.0
    cell.p50_ms = round(percentile(ordered, 50) * 1000, 1)
    cell.p95_ms = round(percentile(ordered, 95) * 1000, 1)
    cell.p99_ms = round(percentile(ordered, 99) * 1000, 1)
    cell.mean_ms = round(statistics.fmean(ordered) * 1000, 1) if ordered else float("nan")
    return cell


# --- the SQL our endpoint runs ------------------------------------------------------------
def capture_sql(sources: dict[str, dict[str, list[str]]]) -> dict:
    """For each source ("ours" or a variant), scenario and page: the (sql, params) the view
    sends, and what it answered. Runs the view in-process with the same settings."""
    import django  # noqa: PLC0415

    django.setup()
    from django.db import connection  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415

    client = Client(HTTP_HOST="127.0.0.1")
    captured: dict[str, dict[str, list[dict]]] = {}
    for source, paths in sources.items():
        captured[source] = {}
        for scenario, page_paths in paths.items():
            captured[source][scenario] = [capture_one(client, connection, p) for p in page_paths]
    db = connection.settings_dict
    dsn = (
        f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} "
        f"dbname={db['NAME']} user={db['USER']}"
    )
    if db.get("PASSWORD"):
        dsn += f" password={db['PASSWORD']}"
    connection.close()
    return {"dsn": dsn, "db_name": db["NAME"], "sources": captured}


def capture_one(client, connection, path: str) -> dict:
    statements: list[tuple[str, object]] = []

    def record(execute, sql, params, *rest):
        statements.append((sql, params))
        return execute(sql, params, *rest)

    client.get(path)  # once before, so that per-process caches (categories) are filled
    with connection.execute_wrapper(record):
        response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code} {response.content[:300]!r}")
    body = response.json()
    return {
        "path": path,
        "count": body["count"],
        "rows": len(body["results"]),
        "results": body["results"],
        "statements": [
            {"sql": sql, "params": list(params) if params is not None else None}
            for sql, params in statements
        ],
    }


def machine_facts(dsn: str) -> dict:
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    import django  # noqa: PLC0415
    import rest_framework  # noqa: PLC0415

    facts["django"], facts["drf"] = django.get_version(), rest_framework.VERSION
    facts["psycopg"], facts["httpx"] = psycopg.__version__, httpx.__version__
    with psycopg.connect(dsn) as conn:
        facts["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
        facts["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0]
        facts["listings_active"] = conn.execute(
            "SELECT count(*) FROM listings_listing WHERE status = 'active'"
        ).fetchone()[0]
    git = shutil.which("git")
    with contextlib.suppress(OSError, subprocess.SubprocessError, TypeError):
        rev = subprocess.run(  # noqa: S603 - fixed arguments
            [git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - fixed arguments
            [git, "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        facts["git"] = rev + (" (uncommitted changes in app code)" if dirty else "")
    # A run from an exported snapshot (git archive) names its commit this way.
    facts["git"] = os.environ.get("BENCH_APP_REVISION") or facts.get("git") or "unknown"
    return facts


def cpu_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over `seconds` (before the run: load from elsewhere)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    try:
        busy1, total1 = sample()
        time.sleep(seconds)
        busy2, total2 = sample()
    except OSError:
        return float("nan")
    return (busy2 - busy1) / max(total2 - total1, 1)


class CpuMeter:
    """CPU time used by the load client (this process), the app server (gunicorn master
    and workers) and the database (backends connected to the bench database), from /proc:
    unlike wall time, it hardly moves when other processes share the machine."""

    def __init__(self, dsn: str, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.db_name = self.conn.info.dbname
        self.own_pid = self.conn.info.backend_pid
        self.tick_ms = 1000 / os.sysconf("SC_CLK_TCK")

    def _proc_cpu_ms(self, pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) * self.tick_ms

    def _server_pids(self) -> list[int]:
        if self.server_pid is None:
            return []
        pids = [self.server_pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.server_pid:
                    pids.append(int(stat.parent.name))
        return pids

    def _db_pids(self) -> list[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
            "AND backend_type = 'client backend'",
            (self.db_name, self.own_pid),
        ).fetchall()
        return [pid for (pid,) in rows]

    def snapshot(self) -> dict:
        return {
            "client": {0: time.process_time() * 1000},
            "app": {p: self._proc_cpu_ms(p) or 0.0 for p in self._server_pids()},
            "db": {p: self._proc_cpu_ms(p) or 0.0 for p in self._db_pids()},
        }

    @staticmethod
    def delta(before: dict, after: dict) -> dict[str, float]:
        """ms per component; a process that appeared in between counts from zero."""
        return {
            part: sum(ms - before[part].get(pid, 0.0) for pid, ms in after[part].items())
            for part in after
        }


# --- gunicorn ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(config: ServerConfig, log_path: Path):
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "marketplace.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(config.workers),
        "--worker-class", WORKER_CLASS_PATHS[config.worker_class],  # ours: errors as problem+json
        "--threads", str(config.threads),
        "--timeout", "60",
        "--keep-alive", "5",
        "--worker-tmp-dir", "/dev/shm",  # noqa: S108 - gunicorn's heartbeat, as in the Dockerfile
        "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONPATH": str(ROOT)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"gunicorn exited ({process.returncode}); see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/api/v1/categories/", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not answer within 30 s; see {log_path}")
            time.sleep(0.2)
        yield base_url, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the session we started: master + workers
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(OSError):
            if log_path.stat().st_size == 0:
                log_path.unlink()  # nothing to say: no errors


# --- load ----------------------------------------------------------------------------------
async def _drive(clients: int, seconds: float, max_requests: int, one_request) -> tuple:
    """Run `one_request(client_no, i)` from `clients` tasks until the deadline."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    budget = [max_requests]

    async def client_loop(k: int) -> None:
        i = k
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            try:
                error = await one_request(i)
            except Exception as exc:  # every failure is a counted error
                error = f"{type(exc).__name__}: {exc}"[:200]
            if error is None:
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(error)
            i += clients

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(k) for k in range(clients)))
    return latencies, errors, time.perf_counter() - started


async def http_samples(base_url: str, paths: list[str], seconds: float, args, *, meter) -> tuple:
    """Warm up, then `seconds` of load: (latencies, errors, elapsed, CPU ms by component)."""
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def one_request(i: int) -> str | None:
            async with client.stream("GET", paths[i % len(paths)]) as response:
                async for _ in response.aiter_raw():  # read it all; no need to gunzip
                    pass
            return None if response.status_code == 200 else f"HTTP {response.status_code}"

        await _drive(args.clients, args.warmup, args.max_requests, one_request)
        before = meter.snapshot() if meter else None
        result = await _drive(args.clients, seconds, args.max_requests, one_request)
        cpu = meter.delta(before, meter.snapshot()) if meter else {}
        return (*result, cpu)


class FairPool:
    """Connections handed over first come, first served (an asyncio.Queue lets the task
    that just released a connection take it straight back, starving the others)."""

    def __init__(self, items: list) -> None:
        self.free = list(items)
        self.waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self):
        if self.free and not self.waiters:
            return self.free.pop()
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, item) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self.free.append(item)


async def floor_samples(
    dsn: str, pages: list[dict], connections: int, seconds: float, args, *, meter
) -> tuple:
    """The captured statements of each page, as one "request": (latencies, errors, elapsed,
    CPU ms by component)."""
    conns = [
        await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, cursor_factory=psycopg.AsyncClientCursor
        )
        for _ in range(connections)
    ]
    for conn in conns:
        await conn.execute("SET TIME ZONE 'UTC'")  # as Django's connections are
    async with conns[0].cursor() as cur:  # the SQL answers what the view answered
        for page in pages:
            first, *rest = page["statements"]
            await cur.execute(first["sql"], first["params"])
            count = (await cur.fetchone())[0]
            rows = 0
            for statement in rest[:1]:
                await cur.execute(statement["sql"], statement["params"])
                rows = len(await cur.fetchall())
            if (count, rows) != (page["count"], page["rows"]):
                raise SystemExit(f"floor: {page['path']} gave {count}/{rows} rows")
    pool = FairPool(conns)

    async def one_request(i: int) -> str | None:
        page = pages[i % len(pages)]
        conn = await pool.acquire()
        try:
            async with conn.cursor() as cur:
                for statement in page["statements"]:
                    if statement["params"] is None:
                        await cur.execute(statement["sql"])
                    else:
                        await cur.execute(statement["sql"], statement["params"])
                    await cur.fetchall()
        finally:
            pool.release(conn)
        return None

    try:
        await _drive(args.clients, args.warmup, args.max_requests, one_request)
        before = meter.snapshot()
        result = await _drive(args.clients, seconds, args.max_requests, one_request)
        return (*result, meter.delta(before, meter.snapshot()))
    finally:
        for conn in conns:
            await conn.close()


def check_http(base_url: str, paths: dict[str, dict[str, list[str]]], ours: dict) -> None:
    """Every target answers 200 with a page of results; ours and the variants answer what
    the captured request answered (same count, same results), page by page."""
    for target, by_scenario in paths.items():
        for scenario, page_paths in by_scenario.items():
            for number, path in enumerate(page_paths):
                response = httpx.get(base_url + path, timeout=60)
                body = response.json() if response.status_code == 200 else {}
                if response.status_code != 200 or "results" not in body:
                    raise SystemExit(f"{target} {scenario}: HTTP {response.status_code}")
                if target == "naive":
                    break  # its own answer; page 1 answering is enough
                expected = ours[scenario][number]  # variants answer what ours answers
                count = expected["count"]
                if target == "capped":
                    from bench.variants import COUNT_CAP  # noqa: PLC0415

                    count = min(count, COUNT_CAP + 1)  # 1,001 reads "more than 1,000"
                if body["count"] != count or body["results"] != expected["results"]:
                    raise SystemExit(f"{target} {scenario} page {number + 1}: differs from ours")


# --- report --------------------------------------------------------------------------------
def ratio(a: Cell | None, b: Cell | None) -> str:
    if not a or not b or not b.rps:
        return ""
    return f"{a.rps / b.rps:.2f}×"


def cpu_total(cell: Cell | None) -> float:
    return sum(cell.cpu_ms_per_request.values()) if cell and cell.cpu_ms_per_request else 0.0


def cpu_ratio(a: Cell | None, b: Cell | None) -> str:
    """b's CPU per request ÷ a's: the throughput ratio a/b when both are CPU-bound on the
    same cores, whatever else runs on the machine."""
    if not cpu_total(a) or not cpu_total(b):
        return ""
    return f"{cpu_total(b) / cpu_total(a):.2f}×"


def floor_of(target: str) -> str:
    """The floor target that runs `target`'s own SQL."""
    return "floor" if target == "ours" else f"floor:{target}"


def table(cells: list[Cell], targets: list[str]) -> str:
    by_key = {(c.scenario, c.target): c for c in cells}
    lines = [
        (
            "| scenario | target | req/s | p50 ms | p95 ms | p99 ms | errors | ÷ floor "
            "| ÷ floor by CPU | ÷ own floor | ours ÷ naive | ÷ ours "
            "| CPU ms/req: client + app + db |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for scenario in dict.fromkeys(c.scenario for c in cells):
        ours = by_key.get((scenario, "ours"))
        floor = by_key.get((scenario, "floor"))
        for target in targets:
            cell = by_key.get((scenario, target))
            if cell is None:
                continue
            is_floor = target.startswith("floor")
            vs_floor = ratio(cell, floor) if target != "floor" else ""
            vs_floor_cpu = cpu_ratio(cell, floor) if target != "floor" else ""
            own = by_key.get((scenario, floor_of(target)))
            vs_own = ratio(cell, own) if not is_floor else ""
            ours_vs = ratio(ours, cell) if target == "naive" else ""
            vs_ours = ratio(cell, ours) if target not in ("ours", "naive") and not is_floor else ""
            cpu = cell.cpu_ms_per_request
            parts = [cpu.get(p, 0.0) for p in ("client", "app", "db")]
            cpu_text = " + ".join(f"{p:.1f}" for p in parts) + f" = {sum(parts):.1f}" if cpu else ""
            lines.append(
                f"| {scenario} | {target} | {cell.rps:.1f} | {cell.p50_ms:.1f} | "
                f"{cell.p95_ms:.1f} | {cell.p99_ms:.1f} | {cell.errors} | {vs_floor} "
                f"| {vs_floor_cpu} | {vs_own} "
                f"| {ours_vs} | {vs_ours} | {cpu_text} |"
            )
    return "\n".join(lines)


def goals(cells: list[Cell]) -> str:
    by_key = {(c.scenario, c.target): c for c in cells}
    lines = []
    for scenario in dict.fromkeys(c.scenario for c in cells):
        ours = by_key.get((scenario, "ours"))
        floor, naive = by_key.get((scenario, "floor")), by_key.get((scenario, "naive"))
        if not ours:
            continue
        parts = [f"{scenario}:"]
        if floor and floor.rps:
            r = ours.rps / floor.rps
            parts.append(f"ours/floor {r:.2f} ({'meets' if r >= 0.5 else 'MISSES'} ≥ 0.50)")
            if cpu_total(ours) and cpu_total(floor):
                parts.append(f"by CPU {cpu_total(floor) / cpu_total(ours):.2f}")
        if naive and naive.rps:
            r = ours.rps / naive.rps
            parts.append(f"ours/naive {r:.1f} ({'meets' if r >= 10 else 'MISSES'} ≥ 10)")
        lines.append("  ".join(parts))
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--targets",
        default="ours,naive,floor",
        help="ours, naive, floor and variant names from bench/variants.py",
    )
    parser.add_argument(
        "--configs",
        default="sync:3,sync:4,gthread:2x4,gthread:4x2",
        help="gunicorn configurations to pick from (sync:N, gthread:NxT)",
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="split each cell's duration into interleaved rounds"
    )
    parser.add_argument("--pick-duration", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=50_000, help="per cell, a bound")
    parser.add_argument(
        "--setup-sql",
        type=Path,
        default=None,
        help="SQL run on the bench database before the run; the part after a line "
        "'-- teardown' runs after it (e.g. bench/index_experiment.sql)",
    )
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def paths_for(target: str, scenario: str) -> list[str]:
    base = {"ours": OURS_PATH, "naive": NAIVE_PATH}.get(target, VARIANT_PATH.format(name=target))
    return [f"{base}?{urlencode({**SCENARIOS[scenario], 'page': p})}" for p in PAGES]


def pick_config(configs: list[ServerConfig], scenarios: list[str], args, log_path: Path):
    """The gunicorn configuration serving the most requests/s on a mix of all scenarios."""
    pick: dict[str, float] = {}
    if len(configs) > 1:
        mixed = [p for s in scenarios for p in paths_for("ours", s)]
        for config in configs:
            with gunicorn(config, log_path) as (base_url, _):
                latencies, errors, elapsed, _ = asyncio.run(
                    http_samples(base_url, mixed, args.pick_duration, args, meter=None)
                )
            cell = summarize(Cell("mixed", "ours"), latencies, elapsed)
            pick[config.label] = cell.rps
            print(f"pick {config.label:>12}: {cell.rps:6.1f} req/s  p50 {cell.p50_ms} ms  "
                  f"p99 {cell.p99_ms} ms  errors {len(errors)}", flush=True)  # fmt: skip
    return max(configs, key=lambda c: pick.get(c.label, 0.0)), pick


def run_scenario(scenario: str, targets: list[str], run_target, rounds: int) -> list[Cell]:
    """Each target gets duration/rounds per round, in an order rotating every round, so that
    load from elsewhere on the machine falls on all of them alike."""
    latencies: dict[str, list[float]] = {t: [] for t in targets}
    errors: dict[str, list[str]] = {t: [] for t in targets}
    elapsed = dict.fromkeys(targets, 0.0)
    per_round: dict[str, list[float]] = {t: [] for t in targets}
    cpu: dict[str, dict[str, float]] = {t: {} for t in targets}
    for round_no in range(rounds):
        shift = round_no % len(targets)
        for target in targets[shift:] + targets[:shift]:
            done, failed, seconds, used = run_target(target)
            latencies[target].extend(done)
            errors[target].extend(failed)
            elapsed[target] += seconds
            per_round[target].append(round(len(done) / seconds, 1))
            for part, ms in used.items():
                cpu[target][part] = cpu[target].get(part, 0.0) + ms
    cells = []
    for target in targets:
        cell = summarize(Cell(scenario, target), latencies[target], elapsed[target])
        cell.errors, cell.error_samples = len(errors[target]), sorted(set(errors[target]))[:5]
        cell.rps_per_round = per_round[target]
        requests = max(len(latencies[target]), 1)
        cell.cpu_ms_per_request = {k: round(v / requests, 2) for k, v in cpu[target].items()}
        cells.append(cell)
        print(f"{scenario:>15} {target:>10}: {cell.rps:7.1f} req/s  p50 {cell.p50_ms:7.1f}"
              f"  p95 {cell.p95_ms:7.1f}  p99 {cell.p99_ms:7.1f} ms  errors {cell.errors}"
              f"  rounds {cell.rps_per_round}  CPU ms/req {cell.cpu_ms_per_request}"
              + (f"  {cell.error_samples}" if cell.errors else ""), flush=True)  # fmt: skip
    return cells


def run_sql_file(dsn: str, path: Path | None, part: str) -> None:
    """Run the setup (before '-- teardown') or teardown part of an SQL file."""
    if path is None:
        return
    setup, _, teardown = path.read_text().partition("-- teardown")
    sql = setup if part == "setup" else teardown
    if sql.strip():
        print(f"{path.name}: {part}", flush=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)


def prepare(scenarios: list[str], targets: list[str]) -> tuple[dict, str, dict]:
    """Capture our SQL (and that of variants with a floor), check the database, describe
    the machine."""
    print("capturing the SQL of our endpoint …", flush=True)
    sources = ["ours"] + [t.partition(":")[2] for t in targets if t.startswith("floor:")]
    captured = capture_sql({src: {s: paths_for(src, s) for s in scenarios} for src in sources})
    captured["scenarios"] = captured["sources"]["ours"]
    dsn = captured["dsn"]
    if not captured["db_name"].endswith("_bench"):
        raise SystemExit(f"refusing to benchmark against {captured['db_name']!r} (not *_bench)")
    facts = machine_facts(dsn)
    if facts["listings_active"] < 1000:
        raise SystemExit("few listings: run bench/generate_listings.py first")
    print(
        f"{facts['listings_active']:,} active listings; {facts.get('cpu', '?')} × {facts['cpus']}"
    )
    facts["cpu_busy_before"] = round(cpu_busy(), 3)
    facts["loadavg_before"] = os.getloadavg()
    if facts["cpu_busy_before"] > 0.15:
        print(f"WARNING: the CPUs were {facts['cpu_busy_before']:.0%} busy before the run "
              "(other processes): absolute numbers will be low; the ratios still compare "
              "targets under the same conditions.")  # fmt: skip
    facts["conn_max_age"] = os.environ.get("CONN_MAX_AGE", "60 (bench.settings default)")
    if os.environ.get("CONN_MAX_AGE") == "0":
        print("NOTE: CONN_MAX_AGE=0: each request opens its own database connection, "
              "whose short-lived backend the CPU meter cannot see: db CPU of HTTP targets "
              "reads 0.")  # fmt: skip
    for scenario in scenarios:
        pages = captured["scenarios"][scenario]
        print(f"  {scenario}: count {pages[0]['count']}, "
              f"{len(pages[0]['statements'])} statements per request")  # fmt: skip
    return captured, dsn, facts


def main() -> None:
    args = parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    targets = [t for t in args.targets.split(",") if t]
    configs = [ServerConfig.parse(c) for c in args.configs.split(",") if c]
    run_started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    log_path = results_dir / f"gunicorn-{stamp}.log"

    captured, dsn, facts = prepare(scenarios, targets)
    run_sql_file(dsn, args.setup_sql, "setup")
    try:
        config, pick = pick_config(configs, scenarios, args, log_path)
        print(f"serving with gunicorn {config.label}; floor uses {config.db_connections} "
              "connections")  # fmt: skip
        cells: list[Cell] = []
        with gunicorn(config, log_path) as (base_url, server_pid):
            meter = CpuMeter(dsn, server_pid)
            check_http(
                base_url,
                {
                    t: {s: paths_for(t, s) for s in scenarios}
                    for t in targets
                    if not t.startswith("floor")
                },
                captured["scenarios"],
            )
            seconds = args.duration / args.rounds
            for scenario in scenarios:

                def run_target(target: str, scenario=scenario):
                    if target.startswith("floor"):
                        source = target.partition(":")[2] or "ours"
                        pages = captured["sources"][source][scenario]
                        run = floor_samples(
                            dsn, pages, config.db_connections, seconds, args, meter=meter
                        )
                    else:
                        urls = paths_for(target, scenario)
                        run = http_samples(base_url, urls, seconds, args, meter=meter)
                    return asyncio.run(run)

                cells.extend(run_scenario(scenario, targets, run_target, args.rounds))
    finally:
        run_sql_file(dsn, args.setup_sql, "teardown")

    facts["loadavg_after"] = os.getloadavg()
    report = table(cells, targets)
    print()
    print(report)
    print()
    print(goals(cells))
    out = args.out or results_dir / f"search_load-{stamp}.json"
    elapsed = time.perf_counter() - run_started
    write_results(
        out,
        args=args,
        facts=facts,
        config=config,
        pick=pick,
        cells=cells,
        captured=captured,
        stamp=stamp,
        elapsed=elapsed,
    )
    shown = out.resolve()
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    print(f"\nwhole run {elapsed:.0f} s; results in {shown}")


def write_results(out: Path, *, args, facts, config, pick, cells, captured, stamp, elapsed):
    python = os.path.relpath(sys.executable, ROOT)
    python = sys.executable if python.startswith("..") else python
    settings = {
        "clients": args.clients,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s_per_round": args.warmup,
        "scenarios": {s: SCENARIOS[s] for s in captured["scenarios"]},
        "pages": list(PAGES),
        "gunicorn": asdict(config),
        "gunicorn_pick_rps": pick,
        "floor_connections": config.db_connections,
        "setup_sql": args.setup_sql.read_text() if args.setup_sql else None,
    }
    result = {
        "command": " ".join([python, "bench/search_load.py", *sys.argv[1:]]),
        "started_utc": stamp,
        "seconds": round(elapsed, 1),
        "machine": facts,
        "settings": settings,
        "cells": [asdict(c) for c in cells],
        "table_markdown": table(cells, list(dict.fromkeys(c.target for c in cells))),
        "sql": {
            source: {
                scenario: [{k: v for k, v in page.items() if k != "results"} for page in pages]
                for scenario, pages in by_scenario.items()
            }
            for source, by_scenario in captured["sources"].items()
        },
    }
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
