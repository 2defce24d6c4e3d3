"""Where the time of one search request goes: SQL (count, page) against Python, then a
pyinstrument profile split into count query, page query, serialization, rendering, etc.

    .venv/bin/python bench/profile_request.py                      # every scenario, ours
    .venv/bin/python bench/profile_request.py --target naive --profile text_zh

Requests go straight into the WSGI application (as gunicorn calls it: same settings,
middleware, gzip, persistent connection), one at a time, no HTTP, no concurrency; pages 1–5
in rotation. Writes bench/results/profile-<target>-<scenario>.txt (and .html with --html).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

# One connection for the whole run (not replaced after CONN_MAX_AGE seconds), so that its
# backend's CPU time, read from /proc, covers every request.
connection.settings_dict["CONN_MAX_AGE"] = None

from django.core.wsgi import get_wsgi_application  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from bench.search_load import NAIVE_PATH, OURS_PATH, PAGES, SCENARIOS, VARIANT_PATH  # noqa: E402

# (label, function name, file path fragment): a frame's time goes to the first label whose
# frame is its outermost match, so nested matches are not counted twice.
PHASES = (
    ("count query", "count", "django/db/models/query.py"),
    ("page query (fetch + build instances)", "_fetch_all", "django/db/models/query.py"),
    ("parse params + build queryset", "get_queryset", "listings/api/views.py"),
    ("serialization", "to_representation", "rest_framework/serializers.py"),
    ("JSON rendering", "render", "rest_framework/renderers.py"),
    ("gzip", "process_response", "django/middleware/gzip.py"),
    ("ETag", "process_response", "django/middleware/http.py"),
)
SQL_FRAME = ("_execute", "django/db/backends/utils.py")


def wsgi_environ(path: str) -> dict:
    path_info, _, query = path.partition("?")
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def call(app, path: str) -> bytes:
    statuses: list[str] = []
    body = app(wsgi_environ(path), lambda status, headers, exc_info=None: statuses.append(status))
    try:
        data = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    if not statuses or not statuses[0].startswith("200"):
        raise SystemExit(f"{path}: {statuses}")
    return data


def paths(target: str, scenario: str) -> list[str]:
    from urllib.parse import urlencode  # noqa: PLC0415

    base = {"ours": OURS_PATH, "naive": NAIVE_PATH}.get(target, VARIANT_PATH.format(name=target))
    return [f"{base}?{urlencode({**SCENARIOS[scenario], 'page': p})}" for p in PAGES]


def backend_cpu_ms(pid: int) -> float:
    """CPU time (user + system) a PostgreSQL backend process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def timed(app, target: str, scenario: str, requests: int) -> dict:
    """Per request: wall ms, Python CPU ms, PostgreSQL CPU ms, and wall ms per statement.

    CPU times hardly move when other processes share the machine; wall times do."""
    sql_ms: dict[int, float] = defaultdict(float)
    statements: dict[int, tuple[str, object]] = {}
    position = [0]

    def clock(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_ms[position[0]] += (time.perf_counter() - started) * 1000
            statements.setdefault(position[0], (sql, params))
            position[0] += 1

    urls = paths(target, scenario)
    for url in urls * 2:  # warm: connection, plans, caches
        call(app, url)
    pid = backend_pid()
    size = 0
    with connection.execute_wrapper(clock):
        pg_before, cpu_before = backend_cpu_ms(pid), time.process_time()
        started = time.perf_counter()
        for i in range(requests):
            position[0] = 0
            size += len(call(app, urls[i % len(urls)]))
        total = (time.perf_counter() - started) * 1000 / requests
        python_cpu = (time.process_time() - cpu_before) * 1000 / requests
        pg_cpu = (backend_cpu_ms(pid) - pg_before) / requests
    if backend_pid() != pid:
        print("  (the database connection was replaced mid-run: PostgreSQL CPU is partial)")
    return {
        "total_ms": total,
        "sql_ms": {k: v / requests for k, v in sorted(sql_ms.items())},
        "python_cpu_ms": python_cpu,
        "pg_cpu_ms": pg_cpu,
        "gzip_bytes": size / requests,
        "statements": statements,
    }


def statement_cpu(statement: tuple[str, object], repeat: int) -> tuple[float, float]:
    """(PostgreSQL CPU ms, wall ms) of one captured statement, run `repeat` times alone."""
    sql, params = statement
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        pg_before, started = backend_cpu_ms(pid), time.perf_counter()
        for _ in range(repeat):
            cursor.execute(sql, params)
            cursor.fetchall()
        wall = (time.perf_counter() - started) * 1000 / repeat
    return (backend_cpu_ms(pid) - pg_before) / repeat, wall


def split(frame, out: dict[str, float], sql_in: dict[str, float], label: str | None = None):
    """Add each frame's time to the phase of its outermost matching ancestor."""
    here = label
    if here is None:
        for name, function, fragment in PHASES:
            if frame.function == function and fragment in (frame.file_path or ""):
                here = name
                out[name] += frame.time
                break
    if (
        here is not None
        and frame.function == SQL_FRAME[0]
        and SQL_FRAME[1] in (frame.file_path or "")
    ):
        sql_in[here] += frame.time
        return
    for child in frame.children:
        split(child, out, sql_in, here)


def profile(app, target: str, scenario: str, requests: int, *, html: bool = False) -> None:
    urls = paths(target, scenario)
    for url in urls:
        call(app, url)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for i in range(requests):
        call(app, urls[i % len(urls)])
    profiler.stop()
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stem = results / f"profile-{target}-{scenario}"
    stem.with_suffix(".txt").write_text(profiler.output_text(unicode=True, show_all=False))
    if html:
        stem.with_suffix(".html").write_text(profiler.output_html())  # large: several MB
    root = profiler.last_session.root_frame()
    out: dict[str, float] = defaultdict(float)
    sql_in: dict[str, float] = defaultdict(float)
    split(root, out, sql_in)
    total = root.time
    print(f"\npyinstrument, {target} {scenario}, {requests} requests "
          f"(sampling adds overhead; shares matter, not absolute ms):")  # fmt: skip
    print("| phase | ms/request | share | of which SQL wait |")
    print("|---|---:|---:|---:|")
    for name, _, _ in PHASES:
        sql = f"{sql_in[name] * 1000 / requests:.2f}" if sql_in.get(name) else ""
        print(f"| {name} | {out[name] * 1000 / requests:.2f} | {out[name] / total:.0%} | {sql} |")
    rest = total - sum(out.values())
    print(f"| framework, middleware, rest | {rest * 1000 / requests:.2f} | {rest / total:.0%} | |")
    print(f"| total | {total * 1000 / requests:.2f} | 100% | |")
    print(f"profile: {stem.relative_to(ROOT)}.txt" + (" / .html" if html else ""))


def cpu_breakdown(scenario: str, requests: int) -> dict[str, float]:
    """Python CPU ms per request of each step of our list view, done by hand the way the
    view does them (process time: PostgreSQL's work is not in it, other processes hardly
    move it)."""
    from rest_framework.renderers import JSONRenderer  # noqa: PLC0415

    from listings.api.serializers import (  # noqa: PLC0415
        ListingSearchParamsSerializer,
        ListingSerializer,
    )
    from listings.selectors import listing_page, listing_search  # noqa: PLC0415

    spent: dict[str, float] = defaultdict(float)

    def step(name: str, work):
        started = time.process_time()
        result = work()
        spent[name] += time.process_time() - started
        return result

    for i in range(requests + 10):
        if i == 10:  # the first ten warm up
            spent.clear()
        page = PAGES[i % len(PAGES)]
        data = {**SCENARIOS[scenario], "page": str(page)}

        def parse(data=data):
            params = ListingSearchParamsSerializer(data=data)
            params.is_valid(raise_exception=True)
            return params.to_search()

        search = step("parse params (ListingSearchParamsSerializer)", parse)
        listings = step("build queryset (listing_search)", lambda s=search: listing_search(s))
        count = step("count query: ORM + driver", listings.count)
        offset = (page - 1) * 20
        ids = step(
            "page ids query: ORM + driver",
            lambda q=listings, o=offset: list(q.values_list("pk", flat=True)[o : o + 20]),
        )
        rows = step(
            "page rows query (listing_page): ORM + driver + model instances",
            lambda i=ids, s=search: listing_page(i, near=s.near),
        )
        results = step(
            "serialization (ListingSerializer, 20 rows)",
            lambda r=rows: ListingSerializer(r, many=True).data,
        )
        body = {"count": count, "next": None, "previous": None, "results": results}
        step("JSON rendering", lambda b=body: JSONRenderer().render(b))
    return {name: seconds * 1000 / requests for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="ours", help="ours, naive or a variant name")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--profile", default="text_zh", help="scenario to profile ('' for none)")
    parser.add_argument("--html", action="store_true", help="also write pyinstrument's HTML")
    args = parser.parse_args()
    app = get_wsgi_application()
    print(f"{args.target}: one request at a time, mean of {args.requests} (pages 1–5 in turn)")
    print("| scenario | wall ms | Python CPU ms | PostgreSQL CPU ms "
          "| each statement alone (page 1): PG CPU / wall ms | gzip bytes |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|")
    python_cpu: dict[str, float] = {}
    for scenario in args.scenarios.split(","):
        r = timed(app, args.target, scenario, args.requests)
        python_cpu[scenario] = r["python_cpu_ms"]
        split_sql = []
        for position in sorted(r["statements"]):
            sql, params = r["statements"][position]
            pg, wall = statement_cpu((sql, params), max(args.requests // 2, 20))
            kind = "count" if sql.lstrip().upper().startswith("SELECT COUNT") else "select"
            split_sql.append(f"{kind} {pg:.1f} / {wall:.1f}")
        cells = [f"{r['total_ms']:.2f}", f"{r['python_cpu_ms']:.2f}", f"{r['pg_cpu_ms']:.2f}"]
        cells += [", ".join(split_sql), f"{r['gzip_bytes']:.0f}"]
        print(f"| {scenario} | {' | '.join(cells)} |")
    if args.target == "ours":
        print("\nPython CPU per request by step (ours; the rest of the request's Python CPU "
              "is Django + DRF + middleware + gzip + ETag):")  # fmt: skip
        scenarios = args.scenarios.split(",")
        breakdowns = {s: cpu_breakdown(s, args.requests) for s in scenarios}
        names = list(next(iter(breakdowns.values())))
        print("| step | " + " | ".join(scenarios) + " |")
        print("|---|" + "---:|" * len(scenarios))
        for name in names:
            values = " | ".join(f"{breakdowns[s][name]:.2f}" for s in scenarios)
            print(f"| {name} | {values} |")
        totals = " | ".join(f"{sum(breakdowns[s].values()):.2f}" for s in scenarios)
        print(f"| sum of the steps | {totals} |")
        whole = " | ".join(f"{python_cpu[s]:.2f}" for s in scenarios)
        print(f"| whole request (from the first table) | {whole} |")
    if args.profile:
        profile(app, args.target, args.profile, args.requests, html=args.html)


if __name__ == "__main__":
    main()
