"""Order-placement load benchmark: POST /api/v1/orders/ against the raw-psycopg floor.

    .venv/bin/python bench/orders_generate.py   # once: 100 hot + 5 scarce listings, 40 buyers
    .venv/bin/python bench/orders_load.py       # ~3.5 minutes with the defaults

One command, all traffic to 127.0.0.1:

1. resets the `_bench` database to the fixture (TRUNCATE the order and idempotency tables,
   stock back to what orders_generate.py wrote, VACUUM ANALYZE);
2. starts gunicorn (bench.orders_settings: production settings, DEBUG off, CONN_MAX_AGE>0)
   on a free port, `--server gthread:4x4` by default (a comma list runs a short pick first);
3. warms up, then for each of --rounds rounds runs, one after the other, for --duration s:
   - ours   32 keep-alive HTTP/1.1 clients (RawHttp), one buyer each, POST /api/v1/orders/
            with 1–3 random lines of the 100 hot listings (1 kg each) and a fresh
            Idempotency-Key each;
   - floor  32 psycopg connections (threads), one buyer each, the same transaction straight
            in SQL: BEGIN; SELECT … WHERE id = ANY(%s) ORDER BY id FOR UPDATE; one UPDATE per
            line; INSERT order RETURNING id; one multi-row INSERT of the lines; INSERT event;
            COMMIT — the lower bound of what any implementation over this schema costs;
   - nokey  as ours, without the Idempotency-Key header (the idempotency overhead);
   - frame  the nokey bodies to POST /bench/frame/ (bench/orders_urls.py): the framework
            alone, no order work;
   - ceiling  the ours bodies and keys to POST /api/v1/bench/ceiling/ (bench/orders_urls.py):
            the frame, the Idempotency-Key's work, and the floor's statements run by Django,
            nothing else: the most any placement behind this framework reaches;
   (ANALYZE of the order's tables before each phase: autovacuum is off on this machine);
4. contention: the same 32 clients (keyed) order lines of the 5 scarce listings (50 kg each,
   1–3 kg per line) plus 0–2 hot lines until they are sold out: 201 then 409
   insufficient_stock, never oversold;
5. duplicates: each buyer sends the same request with the same key twice at once and once
   more afterwards: exactly one order per key (201 + replay, or 409 idempotency_key_in_use);
6. checks, over everything the run did: no listing below 0; for every listing stock taken ==
   the sum of its order lines; sold-out status iff 0 left; orders in the database == 201s
   answered (replays excluded, the ceiling's included) + floor commits; one idempotency
   record per keyed answer;
7. prints the table (ours / floor in each round: the same run, the same minute) and writes
   it between the markers of bench/ORDERS_RESULTS.md, and everything (per-phase numbers,
   status counts, CPU seconds per order of gunicorn / PostgreSQL / this load generator,
   machine facts) to bench/results/orders_load-<UTC time>.json.

Exit status 1 when a check fails or an answer other than 201/409 came back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SETTINGS = "bench.orders_settings"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench import orders_floor  # noqa: E402
from marketplace.gunicorn_workers import WORKER_CLASS_PATHS  # noqa: E402

FIXTURE = ROOT / ".data" / "orders_bench_fixture.json"
RESULTS_MD = ROOT / "bench" / "ORDERS_RESULTS.md"
RESULTS_DIR = ROOT / "bench" / "results"
ORDERS_PATH = "/api/v1/orders/"
FRAME_PATH = "/bench/frame/"  # bench/orders_urls.py: the framework alone
CEILING_PATH = "/api/v1/bench/ceiling/"  # bench/orders_urls.py: the framework + the floor's SQL
BEGIN_MARK = "<!-- orders_load:begin -->"
END_MARK = "<!-- orders_load:end -->"
GOAL = 1 / 3


# --- results -------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    target: str  # ours | nokey | floor | frame | ceiling | contention | duplicates | warmup
    round: int = 0
    clients: int = 0
    seconds: float = 0.0
    requests: int = 0
    orders: int = 0  # 201 (not replayed) / floor commits
    orders_per_s: float = 0.0
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")
    statuses: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)  # problem+json `code` of 4xx/5xx
    replayed: int = 0
    keyed_stored: int = 0  # answers the middleware stores (keyed, not 401/403/429/5xx/409-in-use)
    unexpected: int = 0  # anything but 201 and 409
    error_samples: list[str] = field(default_factory=list)
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    db_orders_delta: int = 0


def percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return float("nan")
    rank = pct / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(phase: Phase, latencies: list[float], elapsed: float) -> Phase:
    ordered = sorted(latencies)
    phase.requests, phase.seconds = len(ordered), round(elapsed, 3)
    phase.orders_per_s = round(phase.orders / elapsed, 1) if elapsed else 0.0
    if ordered:
        phase.p50_ms = round(percentile(ordered, 50) * 1000, 1)
        phase.p95_ms = round(percentile(ordered, 95) * 1000, 1)
        phase.p99_ms = round(percentile(ordered, 99) * 1000, 1)
        phase.mean_ms = round(statistics.fmean(ordered) * 1000, 1)
    return phase


# --- CPU accounting (2-core machines: who burns the CPU matters) --------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return 0.0


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _db_backends(db_name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmdline.startswith("postgres: ") and f" {db_name} " in cmdline:
                pids.append(int(entry.name))
    return pids


def _machine_busy() -> tuple[float, float]:
    """(busy seconds, total seconds) of all CPUs, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """CPU seconds spent by gunicorn (master + workers), the PostgreSQL backends of the bench
    database, this process, and the whole machine, between start() and stop()."""

    def __init__(self, db_name: str, gunicorn_pid: int | None):
        self.db_name, self.gunicorn_pid = db_name, gunicorn_pid

    def _sample(self) -> dict[str, float]:
        gun = 0.0
        if self.gunicorn_pid:
            gun = sum(_proc_cpu(p) for p in [self.gunicorn_pid, *_children(self.gunicorn_pid)])
        times = os.times()
        busy, total = _machine_busy()
        return {
            "gunicorn": gun,
            "postgres": sum(_proc_cpu(p) for p in _db_backends(self.db_name)),
            "loadgen": times.user + times.system,
            "machine_busy": busy,
            "machine_total": total,
        }

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        return {k: after[k] - self.before[k] for k in after}


def cpu_per_order(used: dict[str, float], orders: int) -> dict[str, float]:
    if not orders:
        return {}
    out = {k: round(used[k] * 1000 / orders, 2) for k in ("gunicorn", "postgres", "loadgen")}
    out["machine_busy"] = round(used["machine_busy"] * 1000 / orders, 2)
    out["machine_util_pct"] = round(100 * used["machine_busy"] / used["machine_total"], 1)
    # CPU that neither gunicorn, the bench database's backends nor this process used: other
    # work on the machine (and PostgreSQL's own background processes), in % of all CPUs.
    ours = used["gunicorn"] + used["postgres"] + used["loadgen"]
    out["others_pct"] = round(100 * max(used["machine_busy"] - ours, 0) / used["machine_total"], 1)
    return out


# --- the bench's own Celery queue -----------------------------------------------------------
BENCH_QUEUE = os.environ.get("CELERY_QUEUE", "orders-bench")  # as bench/orders_settings.py
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


CACHE_PREFIX = "orders-bench"  # the cache's KEY_PREFIX in bench/orders_settings.py


def purge_bench_queue() -> int:
    """Drop the routing and notification messages that placed orders enqueued (no worker
    consumes the bench queue; a development worker must never run them against its own
    database), and their "a message is waiting" flags (marketplace.celery.send_unless_pending),
    so that every phase starts as the first did: the first order of a phase publishes both
    messages, and the later ones none while those wait (no worker takes them here)."""
    if not BENCH_QUEUE.startswith("orders-bench"):
        raise SystemExit(f"refusing to purge queue {BENCH_QUEUE!r}")
    import redis  # noqa: PLC0415 - installed with Django's Redis cache backend

    client = redis.Redis.from_url(REDIS_URL)
    try:
        pending = client.llen(BENCH_QUEUE)
        client.delete(BENCH_QUEUE)
        for flag in client.scan_iter(match=f"{CACHE_PREFIX}:*:task-pending:*"):
            client.delete(flag)
        return pending
    finally:
        client.close()


def app_fingerprint() -> dict:
    """What code was measured: the work tree may change under a benchmark here."""
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256()
    files = sorted(
        p
        for folder in ("orders", "listings", "logistics", "marketplace")
        for p in (ROOT / folder).rglob("*.py")
        if "migrations" not in p.parts
    )
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    changed = subprocess.run(  # noqa: S603 - fixed arguments
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "orders", "listings",  # noqa: S607
         "logistics", "marketplace"],
        capture_output=True, text=True, timeout=5, check=False,
    ).stdout.split("\n")  # fmt: skip
    return {"sha256": digest.hexdigest()[:16], "changed": [x for x in changed if x.strip()]}


def migrate(db_name: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS,
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}"}  # fmt: skip
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"migrate failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


# --- the database --------------------------------------------------------------------------
def dsn_for(db_name: str) -> str:
    return f"host=127.0.0.1 port=5432 dbname={db_name} user=postgres"


def reset_database(dsn: str, fixture: dict) -> None:
    stocks = [(int(x["id"]), Decimal(x["stock"])) for x in fixture["hot"] + fixture["scarce"]]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE orders_notification, orders_review, orders_paymentevent, "
            "orders_orderevent, orders_orderline, orders_order, api_idempotencyrecord "
            "RESTART IDENTITY CASCADE"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE listings_listing SET quantity_available = %s, status = 'active' "
                "WHERE id = %s",
                [(stock, pk) for pk, stock in stocks],
            )
        for table in ("listings_listing", "orders_order", "orders_orderline",
                      "orders_orderevent", "api_idempotencyrecord"):  # fmt: skip
            conn.execute(f"VACUUM ANALYZE {table}")


ANALYZED = (
    "orders_order", "orders_orderline", "orders_orderevent", "orders_notification",
    "api_idempotencyrecord", "listings_listing", "accounts_user",
)  # fmt: skip


def analyze(dsn: str) -> None:
    """Before each timed phase, what autovacuum's ANALYZE does in production: this machine's
    PostgreSQL runs with autovacuum off. Without it, the gunicorn workers' persistent
    connections keep the plans of the foreign-key checks they made while the orders tables
    were empty (after the reset): sequential scans. Each order's ~5 checks against
    orders_order then read the whole table, and PostgreSQL CPU per order grew from 2.7 to
    15.7 ms over one run (pg_stat_user_tables: ~5 sequential scans of orders_order per HTTP
    order, none by the floor, whose connections are new in each phase). ANALYZE updates the
    statistics and so invalidates those cached plans."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ANALYZE {', '.join(ANALYZED)}")


def db_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("orders_order", "orders_orderline", "api_idempotencyrecord")
        }


def order_count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM orders_order").fetchone()[0]


def check_stock(dsn: str, fixture: dict) -> dict:
    """Oversell check over every listing of the fixture."""
    initial = {int(x["id"]): Decimal(x["stock"]) for x in fixture["hot"] + fixture["scarce"]}
    scarce_ids = {int(x["id"]) for x in fixture["scarce"]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT l.id, l.quantity_available, l.status,
                   COALESCE((SELECT sum(ol.quantity) FROM orders_orderline ol
                             WHERE ol.listing_id = l.id AND ol.status = 'active'), 0)
            FROM listings_listing l WHERE l.id = ANY(%s) ORDER BY l.id
            """,
            [list(initial)],
        ).fetchall()
        orphan_orders = conn.execute(
            "SELECT count(*) FROM orders_order o WHERE NOT EXISTS "
            "(SELECT 1 FROM orders_orderline ol WHERE ol.order_id = o.id)"
        ).fetchone()[0]
        no_event = conn.execute(
            "SELECT count(*) FROM orders_order o WHERE NOT EXISTS "
            "(SELECT 1 FROM orders_orderevent e WHERE e.order_id = o.id)"
        ).fetchone()[0]
        wrong_subtotal = conn.execute(
            "SELECT count(*) FROM orders_order o WHERE o.subtotal <> "
            "(SELECT sum(ol.subtotal) FROM orders_orderline ol WHERE ol.order_id = o.id)"
        ).fetchone()[0]
    problems = []
    below_zero = mismatched = status_wrong = 0
    scarce_left = {}
    for pk, left, status, ordered in rows:
        if left < 0:
            below_zero += 1
            problems.append(f"listing {pk}: {left} left")
        if initial[pk] - left != ordered:
            mismatched += 1
            problems.append(f"listing {pk}: took {initial[pk] - left}, lines say {ordered}")
        if (left == 0) != (status == "sold_out"):
            status_wrong += 1
            problems.append(f"listing {pk}: {left} left but {status}")
        if pk in scarce_ids:
            scarce_left[pk] = str(left)
    return {
        "listings_checked": len(rows),
        "below_zero": below_zero,
        "taken_ne_ordered": mismatched,
        "status_wrong": status_wrong,
        "orders_without_lines": orphan_orders,
        "orders_without_event": no_event,
        "orders_subtotal_wrong": wrong_subtotal,
        "scarce_left": scarce_left,
        "scarce_sold": str(sum(initial[pk] - Decimal(v) for pk, v in scarce_left.items())),
        "problems": problems[:20],
    }


# --- gunicorn ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerConfig:
    worker_class: str
    workers: int
    threads: int = 1

    @classmethod
    def parse(cls, text: str) -> ServerConfig:
        match = re.fullmatch(r"(sync):(\d+)|(gthread):(\d+)x(\d+)", text.strip())
        if not match:
            raise argparse.ArgumentTypeError(f"{text!r}: use sync:N or gthread:NxT")
        if match.group(1):
            return cls("sync", int(match.group(2)))
        return cls("gthread", int(match.group(4)), int(match.group(5)))

    @property
    def label(self) -> str:
        return f"{self.worker_class}:{self.workers}" + (
            f"x{self.threads}" if self.worker_class == "gthread" else ""
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(config: ServerConfig, db_name: str, log_path: Path, token: str, variants: str = ""):
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        # bench.orders_wsgi is marketplace.wsgi plus the bench-only variants (orders_variants)
        "bench.orders_wsgi:application" if variants else "marketplace.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(config.workers),
        "--worker-class", WORKER_CLASS_PATHS[config.worker_class],  # ours: errors as problem+json
        "--threads", str(config.threads),
        "--timeout", "60",
        "--keep-alive", "5",
        "--backlog", "256",
        "--worker-tmp-dir", "/dev/shm",  # noqa: S108 - gunicorn's advice for heartbeats
        "--log-level", "warning",
    ]  # fmt: skip
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
        "ORDERS_BENCH_VARIANTS": variants,
    }
    env.pop("DATABASE_NAME", None)
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
                answer = httpx.get(
                    f"{base_url}{ORDERS_PATH}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=2,
                )
                if answer.status_code == 200:
                    break
                raise SystemExit(f"GET {ORDERS_PATH}: {answer.status_code} {answer.text[:300]}")
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


# --- HTTP load -----------------------------------------------------------------------------
def order_body(rng: random.Random, hot: list[int], scarce: list[int] | None) -> dict:
    if scarce:
        lines = [{"listing": rng.choice(scarce), "quantity": str(rng.randint(1, 3))}]
        lines += [{"listing": pk, "quantity": "1"} for pk in rng.sample(hot, rng.randint(0, 2))]
    else:
        lines = [{"listing": pk, "quantity": "1"} for pk in rng.sample(hot, rng.randint(1, 3))]
    return {"lines": lines, "delivery_method": "home", "payment_method": "cod"}


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: collections.Counter[str] = collections.Counter()
        self.codes: collections.Counter[str] = collections.Counter()
        self.orders = self.replayed = self.stored = self.unexpected = 0
        self.samples: list[str] = []

    def record(self, status: int | str, body: bytes, replayed: bool, keyed: bool, seconds: float):
        self.latencies.append(seconds)
        self.statuses[str(status)] += 1
        code = None
        if isinstance(status, int) and status >= 400:
            with contextlib.suppress(ValueError, AttributeError):
                code = json.loads(body).get("code")
            self.codes[f"{status} {code}"] += 1
        if status == 201 and not replayed:
            self.orders += 1
        if replayed:
            self.replayed += 1
        # What the idempotency middleware stores: every keyed answer except its own 409
        # (key in use), replays, 401/403/429 and 5xx (rolled back).
        if (
            keyed
            and isinstance(status, int)
            and not replayed
            and status < 500
            and status not in (401, 403, 429)
            and code != "idempotency_key_in_use"
        ):
            self.stored += 1
        if status not in (201, 409):
            self.unexpected += 1
            if len(self.samples) < 5:
                self.samples.append(f"{status}: {body[:200]!r}")

    def into(self, phase: Phase, elapsed: float) -> Phase:
        phase.orders, phase.replayed, phase.keyed_stored = self.orders, self.replayed, self.stored
        phase.statuses, phase.codes = dict(self.statuses), dict(self.codes)
        phase.unexpected, phase.error_samples = self.unexpected, self.samples
        return summarize(phase, self.latencies, elapsed)


class RawHttp:
    """A keep-alive HTTP/1.1 client on one socket, just enough for these POSTs.

    The load generator shares the machine's two CPUs with gunicorn and PostgreSQL, so its
    own cost counts against ours: httpx spent about 2 ms of CPU per request here (the
    floor's psycopg threads 0.35 ms per order), this about 0.1 ms. It writes the request in
    one piece and reads the status line, the headers and a Content-Length body; a
    `Connection: close` or a dropped socket opens a new connection for the next request."""

    def __init__(self, base_url: str, timeout: float = 30) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawHttp:
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict, bytes]:
        return await asyncio.wait_for(self._request(method, path, body, headers), self.timeout)

    async def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("the server closed the connection")
            answer_headers = {}
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                answer_headers[name.strip().lower()] = value.strip()
            content = await self.reader.readexactly(int(answer_headers.get("content-length", 0)))
        except BaseException:
            self.close()
            raise
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        return int(status_line.split()[1]), answer_headers, content


async def post_order(client: RawHttp, tally: Tally, token: str, body: bytes,  # noqa: PLR0917
                     key: str | None, path: str = ORDERS_PATH) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    started = time.perf_counter()
    try:
        status, answer_headers, content = await client.request("POST", path, body, headers)
        replayed = answer_headers.get("idempotent-replayed") == "true"
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        status, content, replayed = f"exception {type(exc).__name__}", str(exc).encode(), False
    tally.record(status, content, replayed, key is not None, time.perf_counter() - started)


async def http_phase(phase: Phase, base_url: str, buyers: list[dict], hot: list[int],  # noqa: PLR0917
                     seconds: float, keyed: bool, scarce: list[int] | None = None,
                     seed: int = 0, path: str = ORDERS_PATH) -> tuple[Phase, float]:  # fmt: skip
    tally = Tally()
    phase.clients = len(buyers)

    async def one_buyer(n: int, buyer: dict, deadline: float) -> None:
        rng = random.Random(seed * 1000 + n)
        async with RawHttp(base_url) as client:
            while time.perf_counter() < deadline:
                body = json.dumps(order_body(rng, hot, scarce)).encode()
                key = uuid.uuid4().hex if keyed else None
                await post_order(client, tally, buyer["token"], body, key, path)

    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(one_buyer(n, b, deadline) for n, b in enumerate(buyers)))
    elapsed = time.perf_counter() - started
    return tally.into(phase, elapsed), elapsed


async def duplicates_phase(base_url: str, buyers: list[dict], hot: list[int]) -> Phase:
    """Same key, same body: twice at once, then once more. One order per key."""
    tally = Tally()
    rng = random.Random(7)

    async def one_buyer(buyer: dict) -> None:
        async with RawHttp(base_url) as first, RawHttp(base_url) as second:
            body = json.dumps(order_body(rng, hot, None)).encode()
            key = uuid.uuid4().hex
            await asyncio.gather(
                post_order(first, tally, buyer["token"], body, key),
                post_order(second, tally, buyer["token"], body, key),
            )
            await post_order(first, tally, buyer["token"], body, key)

    started = time.perf_counter()
    await asyncio.gather(*(one_buyer(b) for b in buyers))
    phase = Phase("duplicates", "duplicates", clients=len(buyers))
    return tally.into(phase, time.perf_counter() - started)


# --- the floor ---------------------------------------------------------------------------
def floor_worker(dsn: str, buyer: dict, hot: list[int], seed: int, start: threading.Barrier,  # noqa: PLR0917
                 end: threading.Barrier, clock: dict, tally: Tally,
                 lock: threading.Lock) -> None:  # fmt: skip
    rng = random.Random(seed)
    latencies: list[float] = []
    committed = conflicts = 0
    samples: list[str] = []
    # psycopg defaults: server-side parameters, statements prepared after 5 runs.
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor()
        start.wait()
        deadline = clock["deadline"]
        while time.perf_counter() < deadline:
            ids = sorted(rng.sample(hot, rng.randint(1, 3)))
            quantity = Decimal(1)
            began = time.perf_counter()
            try:
                cur.execute("BEGIN")
                if orders_floor.place(cur, buyer, ids, quantity) is None:
                    cur.execute("ROLLBACK")
                    conflicts += 1
                    latencies.append(time.perf_counter() - began)
                    continue
                cur.execute("COMMIT")
                committed += 1
                latencies.append(time.perf_counter() - began)
            except psycopg.Error as exc:
                with contextlib.suppress(psycopg.Error):
                    cur.execute("ROLLBACK")
                latencies.append(time.perf_counter() - began)
                if len(samples) < 3:
                    samples.append(f"{type(exc).__name__}: {exc}")
                with lock:
                    tally.unexpected += 1
        end.wait()  # the CPU meter reads the backends while they still exist
    with lock:
        tally.latencies += latencies
        tally.orders += committed
        tally.statuses["commit"] += committed
        if conflicts:
            tally.statuses["rollback (short)"] += conflicts
        if samples:
            tally.statuses["error"] += len(samples)
            tally.samples += samples


def floor_phase(phase: Phase, dsn: str, buyers: list[dict], hot: list[int], seconds: float,  # noqa: PLR0917
                seed: int, meter: CpuMeter) -> tuple[Phase, float]:  # fmt: skip
    tally, lock = Tally(), threading.Lock()
    clock: dict = {}

    def go() -> None:  # runs once, in the last thread to reach the barrier
        meter.start()
        clock["started"] = time.perf_counter()
        clock["deadline"] = clock["started"] + seconds

    def stop() -> None:
        clock["ended"] = time.perf_counter()
        clock["cpu"] = meter.stop()

    start = threading.Barrier(len(buyers), action=go, timeout=60)
    end = threading.Barrier(len(buyers), action=stop, timeout=seconds + 60)
    threads = [
        threading.Thread(
            target=floor_worker,
            args=(dsn, b, hot, seed * 1000 + n, start, end, clock, tally, lock),
        )
        for n, b in enumerate(buyers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = clock["ended"] - clock["started"]
    phase.clients = len(buyers)
    out = tally.into(phase, elapsed)
    out.statuses = dict(tally.statuses)
    out.cpu_ms_per_order = cpu_per_order(clock["cpu"], out.orders)
    return out, elapsed


# --- the run -------------------------------------------------------------------------------
def buyer_places(dsn: str, buyers: list[dict]) -> list[dict]:
    """Each buyer's delivery place as order_place computes it (own place in own village)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = {
            r[0]: r
            for r in conn.execute(
                "SELECT u.id, u.village_id, COALESCE(u.lat, v.lat), COALESCE(u.lng, v.lng) "
                "FROM accounts_user u JOIN logistics_village v ON v.id = u.village_id "
                "WHERE u.id = ANY(%s)",
                [[b["id"] for b in buyers]],
            ).fetchall()
        }
    return [
        {**b, "village": rows[b["id"]][1], "lat": rows[b["id"]][2], "lng": rows[b["id"]][3]}
        for b in buyers
    ]


def machine_facts(dsn: str) -> dict:
    import django  # noqa: PLC0415
    import rest_framework  # noqa: PLC0415

    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "django": django.get_version(),
        "drf": rest_framework.VERSION,
        "psycopg": psycopg.__version__,
        "httpx": httpx.__version__,
        "loadavg_before": os.getloadavg(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in ("server_version", "shared_buffers", "synchronous_commit", "fsync",
                     "max_connections"):  # fmt: skip
            facts[f"pg_{name}"] = conn.execute(f"SHOW {name}").fetchone()[0]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()  # fmt: skip
        facts["git"] = rev + (" (uncommitted changes in the work tree)" if dirty else "")
    return facts


def fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def render(report: dict) -> str:
    """The Markdown block written between the markers of ORDERS_RESULTS.md."""
    args, phases, checks = report["args"], report["phases"], report["checks"]
    machine = report["machine"]
    lines = [
        (
            f"Run {report['started_at']} · gunicorn {args['server']} · {args['clients']} "
            f"clients · {args['duration']:.0f} s per phase · {args['rounds']} round(s) · "
            f"{machine['cpus']} CPUs ({machine.get('cpu', '?')}) · load average before "
            f"{machine['loadavg_before'][0]:.2f}, after {report['loadavg_after'][0]:.2f} · "
            f"PostgreSQL {machine['pg_server_version']} (synchronous_commit "
            f"{machine['pg_synchronous_commit']}) · git {machine.get('git', '?')}, app code "
            f"sha256 {machine['app_code']['sha256']}"
        ),
        "",
        (
            "| round | target | orders/s | p50 ms | p95 ms | p99 ms | requests | answers | "
            "vs floor | CPU ms/order gunicorn · postgres · loadgen (machine busy %, of it "
            "others) |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    floors = {p["round"]: p["orders_per_s"] for p in phases if p["target"] == "floor"}
    for p in phases:
        if p["target"] == "warmup":
            continue
        floor = floors.get(p["round"])
        ratio = (
            f"{100 * p['orders_per_s'] / floor:.1f} %"
            if floor and p["target"] in ("ours", "nokey", "floor", "variant", "frame", "ceiling")
            else ""
        )
        cpu = p["cpu_ms_per_order"]
        cpu_text = (
            f"{cpu['gunicorn']:.2f} · {cpu['postgres']:.2f} · {cpu['loadgen']:.2f} "
            f"({cpu['machine_util_pct']:.0f} %, others {cpu['others_pct']:.0f} %)"
            if cpu
            else ""
        )
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(p["statuses"].items()))
        if p["replayed"]:
            answers += f" (replayed {p['replayed']})"
        codes = ", ".join(
            f"{k} ×{v}" for k, v in sorted(p["codes"].items()) if not k.startswith("201")
        )
        if codes:
            answers += f"; {codes}"
        lines.append(
            f"| {p['round'] or ''} | {p['target']} | {p['orders_per_s']:.1f} | {fmt(p['p50_ms'])} "
            f"| {fmt(p['p95_ms'])} | {fmt(p['p99_ms'])} | {p['requests']} | {answers} | {ratio} "
            f"| {cpu_text} |"
        )
    summary = report["summary"]
    cost = summary["cpu_ms_per_order"]
    capacity = summary["cpu_capacity_pct"]
    per_round = ", ".join(f"{x:.1f} %" for x in summary["ours_vs_floor_per_round"])
    variant_capacity = f", variant {capacity['variant']:.1f} %" if args.get("variants") else ""
    oversell = "0 oversell" if summary["no_oversell"] else "OVERSOLD"
    lines += [
        "",
        (
            f"- **ours / floor**: {summary['ours_vs_floor_pct']:.1f} % (sum of ours ÷ sum of "
            f"floor over the rounds; per round {per_round}); goal ≥ {100 * GOAL:.0f} % → "
            f"**{'met' if summary['ratio_met'] else 'NOT met'}**"
        ),
        (
            f"- **CPU per order** (server = gunicorn + PostgreSQL backends, client = the load "
            f"generator): ours {cost['ours']['server']:.1f} + {cost['ours']['client']:.1f} ms, "
            f"floor {cost['floor']['server']:.2f} + {cost['floor']['client']:.2f} ms → with "
            f"every CPU busy, ours could reach at most ≈ {capacity['ours']:.1f} % of the floor "
            f"(nokey {capacity['nokey']:.1f} %{variant_capacity}); this ratio does not depend "
            f"on how much CPU other work on the machine took"
        ),
        (
            f"- **nokey / floor**: {summary['nokey_vs_floor_pct']:.1f} %; the Idempotency-Key: "
            f"{summary['idempotency_cpu_pct']:+.1f} % server CPU per order (keyed "
            f"{cost['ours']['server']:.1f} ms vs {cost['nokey']['server']:.1f} ms), "
            f"{-summary['idempotency_overhead_pct']:+.1f} % orders/s, p50 "
            f"{summary['ours_p50_ms']:.1f} ms keyed vs {summary['nokey_p50_ms']:.1f} ms "
            f"(throughput and latency follow the other load on the machine; the CPU figure "
            f"much less)"
        ),
        (
            f"- **oversell**: {checks['below_zero']} listings below 0, "
            f"{checks['taken_ne_ordered']} where stock taken ≠ ordered lines, "
            f"{checks['status_wrong']} with a wrong sold-out status, over "
            f"{checks['listings_checked']} listings; scarce stock sold {checks['scarce_sold']} "
            f"of {summary['scarce_initial']} kg, left "
            f"{', '.join(checks['scarce_left'].values())} → **{oversell}**"
        ),
        (
            f"- **orders in the database**: {checks['db']['orders_order']} = "
            f"{checks['expected_orders']} answered 201 (not replayed) + floor commits "
            f"→ {'ok' if checks['orders_match'] else 'MISMATCH'}; idempotency records "
            f"{checks['db']['api_idempotencyrecord']} = {checks['expected_records']} stored "
            f"keyed answers → {'ok' if checks['records_match'] else 'MISMATCH'}; orders "
            f"without lines {checks['orders_without_lines']}, without event "
            f"{checks['orders_without_event']}, subtotal ≠ lines "
            f"{checks['orders_subtotal_wrong']}"
        ),
        (
            f"- **answers other than 201/409**: {summary['unexpected']} → "
            f"**{'only 409' if summary['unexpected'] == 0 else 'ERRORS'}**"
        ),
        f"- duplicates (same key twice at once, then again): {summary['duplicates']}",
    ]
    if summary.get("frame_per_s"):
        frame = cost["frame"]
        lines.append(
            f"- **frame** (`POST {FRAME_PATH}`, bench/orders_urls.py, on the same server: "
            f"middleware, DRF, JWT and one user read, the same JSON bodies parsed, a small JSON "
            f"answer, no order work; its column is answers/s): "
            f"{summary['frame_per_s']:.1f}/s = {summary['frame_vs_floor_pct']:.1f} % of the "
            f"floor's orders/s, {frame['server']:.2f} + {frame['client']:.2f} ms CPU per "
            f"request (at most ≈ {capacity['frame']:.1f} % of the floor by CPU): what the "
            f"framework alone costs, before the order's own work"
        )
    if summary.get("ceiling_per_s"):
        ceiling = cost["ceiling"]
        lines.append(
            f"- **ceiling** (keyed `POST {CEILING_PATH}`, bench/orders_urls.py: the frame, the "
            f"Idempotency-Key's lock, lookup and record, and the floor's own statements, no "
            f"check, notification, routing message or serializer): "
            f"{summary['ceiling_per_s']:.1f} orders/s = {summary['ceiling_vs_floor_pct']:.1f} % "
            f"of the floor, {ceiling['server']:.2f} + {ceiling['client']:.2f} ms CPU per order "
            f"(at most ≈ {capacity['ceiling']:.1f} % of the floor by CPU): the most any "
            f"placement behind this framework reaches"
        )
    if args.get("variants"):
        lines.append(
            f"- **variant** ({args['variants']}, bench/orders_variants.py, keyed): "
            f"{summary['variant_vs_floor_pct']:.1f} % of floor, "
            f"{summary['variant_vs_ours_pct']:+.1f} % orders/s vs ours, "
            f"{summary['variant_cpu_pct']:+.1f} % server CPU per order vs ours "
            f"({cost['variant']['server']:.1f} ms)"
        )
    lines += [
        (
            f"- goal (≥ {100 * GOAL:.0f} % of floor, 0 oversell, no errors but 409): "
            f"**{'MET' if summary['goal_met'] else 'NOT MET'}**"
        ),
        f"- raw numbers: `{report['json_path']}`",
    ]
    if report.get("pick"):
        lines.append(
            "- gunicorn pick (keyed orders/s, short runs): "
            + ", ".join(f"{k} {v:.1f}" for k, v in report["pick"].items())
        )
    return "\n".join(lines) + "\n"


def write_markdown(block: str) -> None:
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    inner = f"{BEGIN_MARK}\n{block}{END_MARK}"
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        text = head + inner + rest.split(END_MARK, 1)[1]
    else:
        text = (text or "# Order placement benchmark\n\n") + inner + "\n"
    RESULTS_MD.write_text(text)


def main() -> int:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument(
        "--server",
        default="gthread:4x4",
        help="gunicorn: sync:N or gthread:NxT; a comma list picks the best first",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per timed phase")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds of HTTP warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of ours, floor, nokey")
    parser.add_argument("--contention", type=float, default=6.0, help="seconds of the scarce phase")
    parser.add_argument("--pick-seconds", type=float, default=8.0)
    parser.add_argument("--no-markdown", action="store_true", help="don't touch ORDERS_RESULTS.md")
    parser.add_argument(
        "--variants",
        default="",
        help="also run target `variant` (keyed) in each round on a second gunicorn with these "
        "bench/orders_variants.py patches (comma list or all)",
    )
    args = parser.parse_args()
    configs = [ServerConfig.parse(x) for x in args.server.split(",")]
    if not all(2 <= c.workers <= 4 for c in configs):
        print("note: the issue asks for 2–4 gunicorn workers")

    fixture = json.loads(args.fixture.read_text())
    db_name = fixture["db_name"]
    if not db_name.endswith("_bench"):
        raise SystemExit(f"refusing {db_name!r}: the database name must end in _bench")
    dsn = dsn_for(db_name)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    if len(fixture["buyers"]) < args.clients:
        raise SystemExit(f"the fixture has {len(fixture['buyers'])} buyers; need {args.clients}")
    buyers = buyer_places(dsn, fixture["buyers"][: args.clients])
    hot = [int(x["id"]) for x in fixture["hot"]]
    scarce = [int(x["id"]) for x in fixture["scarce"]]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / f"orders_gunicorn-{stamp}.log"
    json_path = RESULTS_DIR / f"orders_load-{stamp}.json"
    machine = machine_facts(dsn)
    run_started = time.perf_counter()
    print(f"{db_name}: {len(hot)} hot, {len(scarce)} scarce listings, {args.clients} buyers; "
          f"load average {machine['loadavg_before'][0]:.2f} on {machine['cpus']} CPUs")  # fmt: skip

    migrate(db_name)
    reset_database(dsn, fixture)
    purge_bench_queue()
    machine["app_code"] = app_fingerprint()
    phases: list[Phase] = []
    pick: dict[str, float] = {}
    token = buyers[0]["token"]

    def show(p: Phase) -> None:
        print(f"  {p.name:<18} {p.orders_per_s:7.1f} orders/s  p50 {fmt(p.p50_ms):>6}  "
              f"p95 {fmt(p.p95_ms):>6}  p99 {fmt(p.p99_ms):>6} ms  {p.requests:6d} req  "
              f"{dict(sorted(p.statuses.items()))}", flush=True)  # fmt: skip

    def run_http(p: Phase, url: str, seconds: float, keyed: bool, meter: CpuMeter,  # noqa: PLR0917
                 scarce_ids: list[int] | None = None, seed: int = 0,
                 path: str = ORDERS_PATH) -> Phase:  # fmt: skip
        analyze(dsn)
        before = order_count(dsn)
        meter.start()
        p, _ = asyncio.run(http_phase(p, url, buyers, hot, seconds, keyed, scarce_ids, seed, path))
        p.cpu_ms_per_order = cpu_per_order(meter.stop(), p.orders)
        p.db_orders_delta = order_count(dsn) - before
        purge_bench_queue()
        phases.append(p)
        show(p)
        return p

    if len(configs) > 1:
        for n, config in enumerate(configs):
            with gunicorn(config, db_name, log_path, token) as (url, pid):
                meter = CpuMeter(db_name, pid)
                run_http(
                    Phase(f"pick warmup {config.label}", "warmup"), url, 2, True, meter, seed=90 + n
                )
                p = run_http(Phase(f"pick {config.label}", "warmup"), url, args.pick_seconds, True,
                             meter, seed=80 + n)  # fmt: skip
                pick[config.label] = p.orders_per_s
        config = max(configs, key=lambda c: pick[c.label])
        print(f"serving with gunicorn {config.label}")
    else:
        config = configs[0]
    args.server = config.label

    with contextlib.ExitStack() as stack:
        url, pid = stack.enter_context(gunicorn(config, db_name, log_path, token))
        meter = CpuMeter(db_name, pid)
        if args.variants:
            v_url, v_pid = stack.enter_context(
                gunicorn(config, db_name, log_path, token, variants=args.variants)
            )
            v_meter = CpuMeter(db_name, v_pid)
            run_http(Phase("warmup variant", "warmup"), v_url, args.warmup, True, v_meter, seed=2)
        run_http(Phase("warmup", "warmup"), url, args.warmup, True, meter, seed=1)
        for r in range(1, args.rounds + 1):
            print(f"round {r}")
            run_http(Phase(f"ours r{r}", "ours", r), url, args.duration, True, meter, seed=10 + r)
            analyze(dsn)
            before = order_count(dsn)
            p, _ = floor_phase(Phase(f"floor r{r}", "floor", r), dsn, buyers, hot, args.duration,
                               seed=20 + r, meter=CpuMeter(db_name, None))  # fmt: skip
            p.db_orders_delta = order_count(dsn) - before
            phases.append(p)
            show(p)
            run_http(
                Phase(f"nokey r{r}", "nokey", r), url, args.duration, False, meter, seed=30 + r
            )
            # The frame: the same clients and bodies, no order work (bench/orders_urls.py).
            run_http(Phase(f"frame r{r}", "frame", r), url, args.duration, False, meter,
                     seed=30 + r, path=FRAME_PATH)  # fmt: skip
            # The ceiling: the frame + the floor's SQL, keyed (bench/orders_urls.py).
            run_http(Phase(f"ceiling r{r}", "ceiling", r), url, args.duration, True, meter,
                     seed=10 + r, path=CEILING_PATH)  # fmt: skip
            if args.variants:
                run_http(
                    Phase(f"variant r{r}", "variant", r),
                    v_url,
                    args.duration,
                    True,
                    v_meter,
                    seed=10 + r,
                )  # fmt: skip - the same bodies as ours
        print("contention and duplicates")
        run_http(Phase("contention (scarce)", "contention"), url, args.contention, True, meter,
                 scarce_ids=scarce, seed=40)  # fmt: skip
        before = order_count(dsn)
        p = asyncio.run(duplicates_phase(url, buyers, hot))
        p.db_orders_delta = order_count(dsn) - before
        phases.append(p)
        show(p)

    purge_bench_queue()
    # --- checks over the whole run
    checks = check_stock(dsn, fixture)
    checks["db"] = db_counts(dsn)
    ordering = [p for p in phases if p.target != "frame"]  # the frame's POSTs order nothing
    checks["expected_orders"] = sum(p.orders for p in ordering)
    checks["orders_match"] = checks["db"]["orders_order"] == checks["expected_orders"]
    checks["expected_records"] = sum(p.keyed_stored for p in phases)
    checks["records_match"] = checks["db"]["api_idempotencyrecord"] == checks["expected_records"]
    checks["phase_deltas_match"] = all(p.db_orders_delta == p.orders for p in ordering)
    timed = [p for p in phases if p.target not in ("warmup",)]
    unexpected = sum(p.unexpected for p in timed)
    dup = next(p for p in phases if p.target == "duplicates")
    dup_ok = dup.orders == len(buyers) and dup.db_orders_delta == len(buyers)

    def total(target: str, attr: str = "orders") -> float:
        return sum(getattr(p, attr) for p in phases if p.target == target)

    def rate(target: str) -> float:
        secs = total(target, "seconds")
        return total(target) / secs if secs else 0.0

    ours_rate, floor_rate, nokey_rate = rate("ours"), rate("floor"), rate("nokey")
    variant_rate = rate("variant")
    per_round = []
    for r in range(1, args.rounds + 1):
        o = next(p for p in phases if p.target == "ours" and p.round == r)
        f = next(p for p in phases if p.target == "floor" and p.round == r)
        per_round.append(100 * o.orders_per_s / f.orders_per_s if f.orders_per_s else 0.0)
    no_oversell = (
        checks["below_zero"] == 0
        and checks["taken_ne_ordered"] == 0
        and checks["status_wrong"] == 0
        and checks["orders_match"]
        and checks["orders_without_lines"] == 0
        and checks["orders_subtotal_wrong"] == 0
    )
    ratio_met = floor_rate > 0 and ours_rate / floor_rate >= GOAL
    contention = next(p for p in phases if p.target == "contention")

    def cpu_cost(target: str) -> dict[str, float]:
        """CPU ms per order over all phases of a target: server side (gunicorn + the bench
        database's backends) and client side (this process: RawHttp clients, or the floor's threads)."""
        picked = [p for p in phases if p.target == target and p.cpu_ms_per_order]
        orders = sum(p.orders for p in picked)
        if not orders:
            return {}

        def ms(key: str) -> float:
            return sum(p.cpu_ms_per_order[key] * p.orders for p in picked) / orders

        return {
            "server": round(ms("gunicorn") + ms("postgres"), 2),
            "client": round(ms("loadgen"), 2),
        }

    costs = {t: cpu_cost(t) for t in ("ours", "floor", "nokey", "variant", "frame", "ceiling")}

    def capacity_pct(target: str) -> float:
        """ours/floor if both were CPU-bound on the same CPUs: floor CPU ÷ target CPU."""
        a, b = costs.get(target), costs.get("floor")
        if not a or not b:
            return float("nan")
        return 100 * (b["server"] + b["client"]) / (a["server"] + a["client"])

    summary = {
        "cpu_ms_per_order": costs,
        "cpu_capacity_pct": {
            t: round(capacity_pct(t), 1) for t in ("ours", "nokey", "variant", "frame", "ceiling")
        },
        "ceiling_per_s": round(rate("ceiling"), 1),
        "ceiling_vs_floor_pct": 100 * rate("ceiling") / floor_rate if floor_rate else 0.0,
        "frame_per_s": round(rate("frame"), 1),
        "frame_vs_floor_pct": 100 * rate("frame") / floor_rate if floor_rate else 0.0,
        "ours_orders_per_s": round(ours_rate, 1),
        "floor_orders_per_s": round(floor_rate, 1),
        "nokey_orders_per_s": round(nokey_rate, 1),
        "ours_vs_floor_pct": 100 * ours_rate / floor_rate if floor_rate else 0.0,
        "ours_vs_floor_per_round": per_round,
        "nokey_vs_floor_pct": 100 * nokey_rate / floor_rate if floor_rate else 0.0,
        "idempotency_overhead_pct": 100 * (1 - ours_rate / nokey_rate) if nokey_rate else 0.0,
        "idempotency_cpu_pct": 100 * (costs["ours"]["server"] / costs["nokey"]["server"] - 1)
        if costs.get("ours") and costs.get("nokey")
        else float("nan"),
        "variant_cpu_pct": 100 * (costs["variant"]["server"] / costs["ours"]["server"] - 1)
        if costs.get("variant") and costs.get("ours")
        else float("nan"),
        "ours_p50_ms": statistics.median(p.p50_ms for p in phases if p.target == "ours"),
        "nokey_p50_ms": statistics.median(p.p50_ms for p in phases if p.target == "nokey"),
        "variant_orders_per_s": round(variant_rate, 1),
        "variant_vs_floor_pct": 100 * variant_rate / floor_rate if floor_rate else 0.0,
        "variant_vs_ours_pct": 100 * (variant_rate / ours_rate - 1) if ours_rate else 0.0,
        "ratio_met": ratio_met,
        "no_oversell": no_oversell,
        "unexpected": unexpected,
        "contention_409": sum(v for k, v in contention.codes.items() if k.startswith("409")),
        "scarce_initial": str(sum(Decimal(x["stock"]) for x in fixture["scarce"])),
        "duplicates": (
            f"{len(buyers)} keys → {dup.orders} orders, {dup.replayed} replays, "
            f"{dup.codes.get('409 idempotency_key_in_use', 0)} × 409 key in use → "
            f"{'ok' if dup_ok else 'WRONG'}"
        ),
        "goal_met": ratio_met
        and no_oversell
        and unexpected == 0
        and dup_ok
        and checks["records_match"],
    }
    report = {
        "started_at": stamp,
        "seconds": round(time.perf_counter() - run_started, 1),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine,
        "loadavg_after": os.getloadavg(),
        "pick": pick,
        "phases": [asdict(p) for p in phases],
        "checks": checks,
        "summary": summary,
        "json_path": str(json_path.relative_to(ROOT)),
        "gunicorn_log": str(log_path.relative_to(ROOT)),
    }
    json_path.write_text(json.dumps(report, indent=1, default=str))
    block = render(report)
    print()
    print(block)
    if not args.no_markdown:
        write_markdown(block)
        print(f"wrote {RESULTS_MD.relative_to(ROOT)} and {json_path.relative_to(ROOT)} "
              f"in {report['seconds']:.0f} s")  # fmt: skip
    if checks["problems"]:
        print("problems:", *checks["problems"], sep="\n  ")
    failed = not no_oversell or unexpected or not dup_ok or not checks["records_match"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
