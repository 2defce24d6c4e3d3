"""Instructions per keyed order placement, in-process, counted by valgrind's callgrind.

    .venv/bin/python bench/orders_instructions.py                  # 120 requests
    .venv/bin/python bench/orders_instructions.py --requests 200

CPU seconds on these shared machines drift by ±10 % and more between runs; instructions do
not, whatever else the machine does. This runs itself twice under `valgrind --tool=callgrind`
(about 50× slower than natively): once doing the warm-up alone and once doing the warm-up and
`--requests` keyed POST /api/v1/orders/ through Django's test Client, the same request as
bench/orders_profile.py, against the database orders_generate.py filled. The difference divided
by the request count is the instructions one placement costs, start-up excluded. For an A/B,
run it in a worktree of each commit (the fixture file copied into each), one after the other
or side by side. Needs valgrind (Debian's package).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / ".data" / "orders_bench_fixture.json"
WARM_UP = 10


def place(requests: int) -> None:
    """The measured process: WARM_UP + `requests` keyed placements, answered 201, each the
    request bench/orders_profile.py times (orders_profile.post_order)."""
    sys.path.insert(0, str(ROOT))
    from django.db import connection  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415

    from bench.orders_profile import drop_queued_tasks, post_order  # noqa: PLC0415 - sets Django up

    if not connection.settings_dict["NAME"].endswith("_bench"):
        raise SystemExit("refusing a database whose name does not end in _bench")
    fixture = json.loads(FIXTURE.read_text())
    hot = [int(x["id"]) for x in fixture["hot"]]
    client, rng = Client(HTTP_HOST="127.0.0.1"), random.Random(5)
    for _ in range(WARM_UP + requests):
        post_order(client, rng, hot, fixture["buyers"], keyed=True)
    drop_queued_tasks()


def instructions(requests: int) -> int:
    """Instructions callgrind counts for a process placing `requests` orders after the
    warm-up."""
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(  # noqa: S603
            [  # noqa: S607 - valgrind from the PATH, as a user runs it
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={scratch}/out",
                sys.executable,
                __file__,
                "--inner",
                str(requests),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is not None:
        place(args.inner)
        return
    place(0)  # compiles what the first run would, outside the count; checks the database
    base, loaded = instructions(0), instructions(args.requests)
    per_request = (loaded - base) / args.requests
    print(
        f"{per_request / 1e6:.2f} million instructions per keyed placement "
        f"({loaded:,} with {args.requests} requests, {base:,} with none; "
        f"{WARM_UP} warm-up requests in both)"
    )


if __name__ == "__main__":
    main()
