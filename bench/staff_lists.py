"""Time a service center's staff order list on a big database (bench/staff_generate.py).

    .venv/bin/python bench/staff_generate.py          # once: 200,000 orders, ~25 s
    .venv/bin/python bench/staff_lists.py             # the busy center, 9 rounds
    .venv/bin/python bench/staff_lists.py --center 4 --rounds 15

What the app does for `GET /api/v1/orders/` as the center's staff member, and its parts:

- `view`: the whole request through the Django test client (JWT, middleware, the
  paginator's COUNT, the first page of 20 with its prefetches, serialization);
- `count`: the paginator's COUNT alone (`order_visible_to(staff).count()`);
- `page`: the first page alone (`list(order_visible_to(staff)[:20])`, prefetches included);
- `before count`, `before page`: the same with the staff filter as it was before orders
  carried `routed_at` (an order not routed: no shipment, probed per order; copied below);
- `baseline`: the same COUNT in plain SQL, written by hand as the sum of its two disjoint
  parts: the distinct orders of the center's shipments, and the orders without shipments
  (an anti-join, planned once, not probed per order) delivered to or holding goods from its
  villages; it reads no column this change added, so it is the same SQL before and after;
- `floor`: the first part alone (the routed orders only): work no way of counting this
  list avoids.

Every round runs each target once, in an order that rotates; the table gives the median
and the fastest of the rounds, and each target against the baseline of the same run (the
machine is shared: absolute times drift, ratios within a run much less). The counts of
`count`, `before count` and `baseline` must agree, or the script stops. Results also go to
bench/results/staff_lists-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.staff_settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet  # noqa: E402
from django.test import Client  # noqa: E402

from bench.staff_generate import FIRST_STAFF  # noqa: E402
from logistics.models import Shipment, TrackingEvent  # noqa: E402
from marketplace.accounts.models import User  # noqa: E402
from marketplace.accounts.tokens import RefreshToken  # noqa: E402
from orders.models import Order, OrderEvent, OrderLine  # noqa: E402
from orders.selectors import order_visible_to, orders_with_amount_held  # noqa: E402

PAGE = 20

BASELINE = """
SELECT (SELECT count(DISTINCT order_id) FROM logistics_shipment
        WHERE origin_center_id = %(center)s OR destination_center_id = %(center)s)
     + (SELECT count(*) FROM orders_order o
        WHERE NOT EXISTS (SELECT 1 FROM logistics_shipment s WHERE s.order_id = o.id)
          AND (o.delivery_village_id IN (SELECT id FROM logistics_village
                                         WHERE service_center_id = %(center)s)
               OR EXISTS (SELECT 1 FROM orders_orderline l
                          JOIN listings_listing li ON li.id = l.listing_id
                          JOIN logistics_village v ON v.id = li.village_id
                          WHERE l.order_id = o.id AND v.service_center_id = %(center)s)))
"""
# The routed part alone: work no way of counting this list avoids.
FLOOR = """
SELECT count(DISTINCT order_id) FROM logistics_shipment
WHERE origin_center_id = %(center)s OR destination_center_id = %(center)s
"""


def before_visible_to(staff: User) -> QuerySet[Order]:
    """order_visible_to's staff branch as it was before `routed_at` (commit 758b7e5)."""
    center = staff.service_center_id
    orders = orders_with_amount_held(
        Order.objects.select_related("buyer", "delivery_village", "review")
    )
    ours = Q(origin_center_id=center) | Q(destination_center_id=center)
    through_center = Shipment.objects.filter(ours).values("order_id")
    shipments = (
        Shipment.objects.prefetch_related(
            "legs",
            Prefetch("events", queryset=TrackingEvent.objects.order_by("occurred_at", "id")),
        )
        .order_by("id")
        .filter(ours)
    )
    in_center_villages = Q(delivery_village__service_center_id=center) | Q(
        pk__in=OrderLine.objects.filter(listing__village__service_center_id=center).values(
            "order_id"
        )
    )
    not_routed = ~Exists(Shipment.objects.filter(order_id=OuterRef("pk")))
    orders = orders.filter(Q(pk__in=through_center) | Q(not_routed) & in_center_villages)
    return orders.prefetch_related(
        Prefetch("lines", queryset=OrderLine.objects.order_by("id")),
        Prefetch("events", queryset=OrderEvent.objects.order_by("created_at", "id")),
        Prefetch("shipments", queryset=shipments),
    )


def sql_count(sql: str, center: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, {"center": center})
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--center", type=int, default=1, help="1 is the busy one")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    db_name = connection.settings_dict["NAME"]
    if not db_name.endswith("_bench"):
        raise SystemExit(f"refusing {db_name!r}: the database name must end in _bench")
    staff = User.objects.get(pk=FIRST_STAFF + args.center - 1)
    if staff.service_center_id != args.center:
        raise SystemExit(f"user {staff.pk} is no staff of center {args.center}: generate again")
    client = Client(
        HTTP_HOST="localhost",
        HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(staff).access_token}",
    )

    def view():
        response = client.get("/api/v1/orders/")
        if response.status_code != 200:
            raise SystemExit(
                f"GET /api/v1/orders/: {response.status_code} {response.content[:300]}"
            )
        body = response.json()
        return body["count"], len(body["results"])

    targets = {
        "view": view,
        "count": lambda: order_visible_to(staff).count(),
        "page": lambda: len(list(order_visible_to(staff)[:PAGE])),
        "before count": lambda: before_visible_to(staff).count(),
        "before page": lambda: len(list(before_visible_to(staff)[:PAGE])),
        "baseline": lambda: sql_count(BASELINE, args.center),
        "floor": lambda: sql_count(FLOOR, args.center),
    }
    answers = {name: target() for name, target in targets.items()}  # and a warm cache
    counts = {answers["count"], answers["before count"], answers["baseline"], answers["view"][0]}
    if len(counts) != 1:
        raise SystemExit(f"the counts disagree: {answers}")
    if answers["page"] != answers["before page"] or answers["page"] != answers["view"][1]:
        raise SystemExit(f"the pages disagree: {answers}")
    first_ids = [o.pk for o in order_visible_to(staff)[:PAGE]]
    if first_ids != [o.pk for o in before_visible_to(staff)[:PAGE]]:
        raise SystemExit("the first pages hold different orders")

    times: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            targets[name]()
            times[name].append((time.perf_counter() - started) * 1000)

    base = statistics.median(times["baseline"])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"{db_name}, center {args.center}: {answers['count']:,} orders visible to its staff "
        f"of {Order.objects.count():,}; commit {commit}; {args.rounds} rounds; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| target | median ms | fastest ms | median ÷ baseline |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {min(values):.1f} | {median / base:.2f}× |")

    out = args.out or ROOT / "bench" / "results" / (
        f"staff_lists-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "db_name": db_name,
                "commit": commit,
                "center": args.center,
                "visible": answers["count"],
                "orders": Order.objects.count(),
                "rounds": args.rounds,
                "ms": times,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
