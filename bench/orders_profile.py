"""Where one POST /api/v1/orders/ spends its time, in-process (no HTTP server, no client).

    .venv/bin/python bench/orders_profile.py               # 300 keyed + 300 unkeyed requests
    .venv/bin/python bench/orders_profile.py --html /tmp/p.html

Runs the request through Django's test Client against bench.orders_settings (the same
middleware stack as production), one at a time, after orders_generate.py. For keyed and
unkeyed requests prints: CPU and wall ms per request, SQL statements per request and the
wall time spent in them, then a pyinstrument profile of the keyed batch (its Python side).
Orders it creates stay in the database (orders_load.py resets it before it runs); the
notification tasks they enqueue are dropped from the bench's own queue at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.orders_settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from bench import orders_variants  # noqa: E402

FIXTURE = ROOT / ".data" / "orders_bench_fixture.json"


def post_order(
    client: Client, rng: random.Random, hot: list[int], buyers: list[dict], *, keyed: bool
):
    """One POST /api/v1/orders/ by a buyer picked by `rng`: 1–3 distinct hot listings, 1 kg
    each, home delivery, cash on delivery, with a new Idempotency-Key when `keyed` (never a
    replay). (buyer, answer); anything but a 201 ends the script."""
    buyer = rng.choice(buyers)
    lines = [{"listing": pk, "quantity": "1"} for pk in rng.sample(hot, rng.randint(1, 3))]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {buyer['token']}"}
    if keyed:
        headers["HTTP_IDEMPOTENCY_KEY"] = uuid.uuid4().hex
    answer = client.post(
        "/api/v1/orders/",
        data=json.dumps({"lines": lines, "delivery_method": "home", "payment_method": "cod"}),
        content_type="application/json",
        **headers,
    )
    if answer.status_code != 201:
        raise SystemExit(f"{answer.status_code}: {answer.content[:300]!r}")
    return buyer, answer


def drop_queued_tasks() -> None:
    """The notification tasks the orders placed enqueued: the bench's own queue, which no
    worker reads."""
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    if queue.startswith("orders-bench"):
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--html", type=Path, help="also write the pyinstrument HTML here")
    parser.add_argument("--show-sql", action="store_true", help="print one request's SQL")
    parser.add_argument("--variants", default="", help="bench/orders_variants.py names, or all")
    parser.add_argument("--no-profile", action="store_true", help="numbers only, no pyinstrument")
    args = parser.parse_args()
    os.environ["ORDERS_BENCH_VARIANTS"] = args.variants
    applied = orders_variants.apply()
    print(f"variants: {', '.join(applied) or 'none'}")
    fixture = json.loads(FIXTURE.read_text())
    if not connection.settings_dict["NAME"].endswith("_bench"):
        raise SystemExit("refusing a database whose name does not end in _bench")
    hot = [int(x["id"]) for x in fixture["hot"]]
    buyers = fixture["buyers"]
    client = Client(HTTP_HOST="127.0.0.1")
    rng = random.Random(5)

    sql_seconds = [0.0]
    statements: Counter[str] = Counter()
    captured: list[str] = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_seconds[0] += time.perf_counter() - started
            statements[sql.split(None, 1)[0].upper()] += 1
            if args.show_sql:
                captured.append(sql[:150])

    def backend_cpu() -> float:
        """CPU seconds of this connection's PostgreSQL backend (same machine)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def one(keyed: bool) -> tuple[dict, dict]:
        buyer, answer = post_order(client, rng, hot, buyers, keyed=keyed)
        return buyer, answer.json()

    # The answer to the POST must be what a GET of the same order answers (the variants
    # must not change a byte of it).
    for keyed in (True, False):
        buyer, posted = one(keyed)
        fetched = client.get(
            f"/api/v1/orders/{posted['id']}/", HTTP_AUTHORIZATION=f"Bearer {buyer['token']}"
        ).json()
        if posted != fetched:
            raise SystemExit(f"POST answer differs from GET:\n{posted}\n{fetched}")

    for keyed in (True, False):  # warm up: imports, URL resolver, the connection
        for _ in range(20):
            one(keyed)

    profiler = None
    for keyed in (True, False):
        sql_seconds[0] = 0.0
        statements.clear()
        if keyed and not args.no_profile:
            profiler = Profiler(interval=0.0005)
            profiler.start()
        pg = backend_cpu()
        cpu, wall = time.process_time(), time.perf_counter()
        with connection.execute_wrapper(timed):
            for _ in range(args.requests):
                one(keyed)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        pg = backend_cpu() - pg
        if profiler is not None and profiler.is_running:
            profiler.stop()
        n = args.requests
        print(
            f"{'keyed' if keyed else 'nokey'}: {1000 * wall / n:.2f} ms wall, "
            f"{1000 * cpu / n:.2f} ms CPU (this process) + {1000 * pg / n:.2f} ms CPU "
            f"(its PostgreSQL backend) per request; "
            f"{sum(statements.values()) / n:.1f} statements per request "
            f"({', '.join(f'{k} {v / n:.1f}' for k, v in statements.most_common())}), "
            f"{1000 * sql_seconds[0] / n:.2f} ms wall in them"
        )
    drop_queued_tasks()
    if args.show_sql:
        print("\n".join(captured[-20:]))
    if profiler is None:
        return
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.html:
        args.html.write_text(profiler.output_html())


if __name__ == "__main__":
    main()
