"""Load the order-placement benchmark's data into a `*_bench` database (a few seconds).

    .venv/bin/python bench/orders_generate.py                   # marketplace_orders_bench
    .venv/bin/python bench/orders_generate.py --buyers 64 --hot-stock 500000

One service center, 10 villages, 100 farmers with one hot active listing each (stock
1,000,000 kg by default, so the timed phases practically never run out), 5 more farmers with
one *scarce* listing each (50 kg: the contention phase sells them out to prove 0 oversell and
to draw 409 insufficient_stock), and 40 buyers (one per concurrent client; 32 are used by
default). Listings are created through listings.services.listing_create, as the API does.

The database is emptied first (TRUNCATE … RESTART IDENTITY CASCADE of the users, geography,
listings, orders and idempotency tables; the seeded categories stay). Refuses any database
whose name does not end in `_bench`.

Writes .data/orders_bench_fixture.json (git-ignored): listing ids and initial stocks, buyer
ids and their access tokens (simplejwt `RefreshToken.for_user(user).access_token`, living
JWT_ACCESS_MINUTES minutes: a week by default, set in bench/orders_settings.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.orders_settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from listings.models import Category  # noqa: E402
from listings.services import listing_create  # noqa: E402
from logistics.models import ServiceCenter, Village  # noqa: E402
from marketplace.accounts.models import BuyerKind, Role, User  # noqa: E402
from marketplace.accounts.tokens import RefreshToken  # noqa: E402

FIXTURE = ROOT / ".data" / "orders_bench_fixture.json"
MIDDLE = (Decimal("30.200000"), Decimal("119.600000"))
TABLES = (
    "orders_notification",
    "orders_review",
    "orders_paymentevent",
    "orders_orderevent",
    "orders_orderline",
    "orders_order",
    "api_idempotencyrecord",
    "listings_listingphoto",
    "listings_listing",
    "accounts_user",
    "logistics_village",
    "logistics_servicecenter",
)
TITLES = ("Tomatoes", "Cucumbers", "Bok choy", "Eggs", "Rice", "Tea", "Pears", "Garlic")


def jitter(rng: random.Random, value: Decimal, spread: float = 0.05) -> Decimal:
    return (value + Decimal(str(round(rng.uniform(-spread, spread), 6)))).quantize(
        Decimal("0.000001")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hot", type=int, default=100, help="hot listings (one per farmer)")
    parser.add_argument("--hot-stock", type=Decimal, default=Decimal("1000000"))
    parser.add_argument("--scarce", type=int, default=5, help="scarce listings")
    parser.add_argument("--scarce-stock", type=Decimal, default=Decimal("50"))
    parser.add_argument("--buyers", type=int, default=40)
    parser.add_argument("--villages", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()

    db_name = connection.settings_dict["NAME"]
    if not db_name.endswith("_bench"):
        raise SystemExit(f"refusing {db_name!r}: the database name must end in _bench")
    rng = random.Random(args.seed)
    started = time.perf_counter()
    password = make_password("bench-orders-pass")  # hashed once, shared by every bench user
    categories = list(Category.objects.order_by("id"))
    if not categories:
        raise SystemExit("no categories: run `manage.py migrate` on this database first")
    today = timezone.localdate()

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        center = ServiceCenter.objects.create(
            name="Bench center", county="Bench county", lat=MIDDLE[0], lng=MIDDLE[1]
        )
        villages = Village.objects.bulk_create(
            Village(
                name=f"Bench village {i:02d}",
                county="Bench county",
                lat=jitter(rng, MIDDLE[0], 0.3),
                lng=jitter(rng, MIDDLE[1], 0.3),
                service_center=center,
            )
            for i in range(args.villages)
        )

        def people(role: str, count: int, offset: int) -> list[User]:
            rows = []
            for i in range(count):
                village = villages[(offset + i) % len(villages)]
                rows.append(
                    User(
                        phone=f"+86139{offset + i:08d}",
                        name=f"Bench {role} {i}",
                        role=role,
                        village=village,
                        lat=jitter(rng, village.lat, 0.01),
                        lng=jitter(rng, village.lng, 0.01),
                        buyer_kind=BuyerKind.HOUSEHOLD if role == Role.BUYER else "",
                        password=password,
                    )
                )
            return User.objects.bulk_create(rows)

        farmers = people(Role.FARMER, args.hot + args.scarce, 0)
        buyers = people(Role.BUYER, args.buyers, 100_000)

        def listing_for(farmer: User, stock: Decimal, label: str):
            return listing_create(
                farmer=farmer,
                category=rng.choice(categories),
                title=f"{rng.choice(TITLES)} {label}",
                description="Benchmark listing.",
                unit="kg",
                price=Decimal(rng.randint(200, 3000)) / 100,
                quantity_available=stock,
                harvest_date=today - timedelta(days=1),
                shelf_life_days=30,
            )

        hot = [
            listing_for(f, args.hot_stock, f"hot {i}") for i, f in enumerate(farmers[: args.hot])
        ]
        scarce = [
            listing_for(f, args.scarce_stock, f"scarce {i}")
            for i, f in enumerate(farmers[args.hot :])
        ]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    minutes = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() / 60
    fixture = {
        "db_name": db_name,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "access_token_minutes": minutes,
        "tokens_expire_at": (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(
            timespec="seconds"
        ),
        "hot": [
            {"id": x.pk, "stock": str(x.quantity_available), "farmer": x.farmer_id} for x in hot
        ],
        "scarce": [
            {"id": x.pk, "stock": str(x.quantity_available), "farmer": x.farmer_id} for x in scarce
        ],
        "buyers": [
            {
                "id": b.pk,
                "village": b.village_id,
                "token": str(RefreshToken.for_user(b).access_token),
            }
            for b in buyers
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, indent=1))
    print(
        f"{db_name}: 1 center, {len(villages)} villages, {len(farmers)} farmers, "
        f"{len(hot)} hot listings × {args.hot_stock}, {len(scarce)} scarce × {args.scarce_stock}, "
        f"{len(buyers)} buyers (tokens for {minutes:.0f} min) in "
        f"{time.perf_counter() - started:.1f} s → {args.out.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
