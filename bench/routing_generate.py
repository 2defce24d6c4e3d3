"""Load the routing benchmark's data into a `*_bench` database: placed orders, nothing enqueued.

    createdb -h 127.0.0.1 -U postgres marketplace_routing_bench                  # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/marketplace_routing_bench \\
        .venv/bin/python manage.py migrate                                        # once
    .venv/bin/python bench/routing_generate.py                    # 10,000 orders (~15 s)
    .venv/bin/python bench/routing_generate.py --capacity realistic   # centers at 5,000 kg/day

3 service centers about 35-45 km apart (a transfer between two of them takes 1 day),
40 villages spread over them, 200 farmers with 1-3 listings each (kg, jin, crates, boxes,
bunches; harvest dates from 3 days ago to 3 days ahead, shelf lives 2-30 days, a fifth
refrigerated), 1,000 buyers, and 10,000 orders in status `placed`, cash on delivery, with
lines from 1-4 distinct farmers (uniform, mean 2.5; 1-2 of each farmer's listings), 70 %
home delivery and 30 % pickup at the buyer's center.

Capacity: `--capacity large` (default) gives every center 1,000,000 kg/day, more than the
whole data set weighs (~300 t), so every booking succeeds on its first day and the benchmark
measures routing, not the day walk; each center's few hot (center, day) rows are then
shared by all orders, the worst case for row-lock contention between workers.
`--capacity realistic` keeps the model default (5,000 kg/day): bookings walk up to ~40 days.

The rows are written directly (bulk_create of users, listings, Order, OrderLine and the
`placed` OrderEvent), not through orders.services.order_place: only routing is measured,
and order_place would enqueue route_order and notification tasks. Nothing is enqueued here.
Every model constraint holds: totals add up (total = subtotal + delivery_fee, the fee from
orders.services.delivery_fee), delivery codes are 6 digits, line subtotals are price ×
quantity rounded to cents, one line per listing per order, and each listing's stock is what
was left after the orders took theirs. The placement notifications are not written.

Idempotent: every table it fills (users, geography, listings, orders, shipments, day loads,
notifications, …) is emptied first with TRUNCATE … RESTART IDENTITY CASCADE; the seeded
categories stay. Refuses any database whose name does not end in `_bench`.
"""

# Django is set up in main(), after the bench environment: the app's imports live there.
# ruff: noqa: PLC0415, PLR0915

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DB_NAME = "marketplace_routing_bench"
QUEUE = "bench-routing"
# One environment for this script, routing_throughput.py and its workers: production
# settings (DEBUG off, persistent connections, INFO logging) with what production.py
# demands to start (a 50+ char SECRET_KEY, a 32+ char webhook secret) and no SSL redirect.
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "marketplace.settings.production",
    "SECRET_KEY": "routing-bench-only-fixed-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "PAYMENT_WEBHOOK_SECRET": "routing-bench-only-webhook-secret-0123456789abcdef",
    "SECURE_SSL_REDIRECT": "false",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "CELERY_QUEUE": QUEUE,
}


def configure_env() -> dict[str, str]:
    """Apply BENCH_ENV (values already in the environment win, except that the database
    must end in _bench) and return the resulting environment for subprocesses."""
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.pop("DATABASE_NAME", None)  # base.py would let it override DATABASE_URL
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # after PYTHONPATH: a snapshot of the app code there wins
    return dict(os.environ)


def refuse_unless_bench(connection) -> str:
    name = connection.settings_dict["NAME"]
    if not name.endswith("_bench"):
        raise SystemExit(f"refusing {name!r}: the database name must end in _bench")
    return name


# Everything this generator fills, children first (CASCADE also covers the rest).
TABLES = (
    "orders_notification",
    "orders_review",
    "orders_paymentevent",
    "logistics_stop_shipments",
    "logistics_stop",
    "logistics_route",
    "logistics_vehicle",
    "logistics_trackingevent",
    "logistics_shipmentleg",
    "logistics_shipment",
    "logistics_centerdayload",
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
CENTERS = (  # ~35-45 km apart: transfer_days = ceil(km × 1.35 / 120) = 1
    ("Bench north center", Decimal("30.420000"), Decimal("119.600000")),
    ("Bench south-west center", Decimal("30.100000"), Decimal("119.420000")),
    ("Bench south-east center", Decimal("30.110000"), Decimal("119.800000")),
)
PRODUCE = (  # title, unit, unit weight (None: fixed by the unit), price range in cents
    ("Tomatoes", "kg", None, (400, 1200)),
    ("Cucumbers", "jin", None, (200, 600)),
    ("Bok choy", "bunch", Decimal("0.400"), (150, 500)),
    ("Eggs", "dozen", Decimal("0.750"), (1200, 2400)),
    ("Rice", "bag", Decimal("10.000"), (6000, 12000)),
    ("Pears", "box", Decimal("5.000"), (3000, 8000)),
    ("Sweet potatoes", "crate", Decimal("15.000"), (4000, 9000)),
    ("Garlic", "kg", None, (800, 2000)),
)
FIXED_WEIGHT = {"kg": Decimal("1.000"), "jin": Decimal("0.500")}
CAPACITY = {"large": Decimal("1000000.0"), "realistic": Decimal("5000.0")}
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


def jitter(rng: random.Random, value: Decimal, spread: float) -> Decimal:
    return (value + Decimal(str(round(rng.uniform(-spread, spread), 6)))).quantize(MICRO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--farmers", type=int, default=200)
    parser.add_argument("--buyers", type=int, default=1_000)
    parser.add_argument("--villages", type=int, default=40)
    parser.add_argument("--capacity", choices=sorted(CAPACITY), default="large")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    configure_env()
    import django

    django.setup()

    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.utils import timezone

    from listings.models import Category, Listing, ListingStatus
    from listings.services import listing_place
    from logistics.models import ServiceCenter, Village
    from marketplace.accounts.models import BuyerKind, Role, User
    from orders.models import (
        DeliveryMethod,
        Order,
        OrderEvent,
        OrderLine,
        OrderStatus,
        PaymentMethod,
        PaymentStatus,
    )
    from orders.services import delivery_fee

    db_name = refuse_unless_bench(connection)
    categories = list(Category.objects.order_by("id"))
    if not categories:
        raise SystemExit("no categories: run `manage.py migrate` on this database first")
    rng = random.Random(args.seed)
    started = time.perf_counter()
    today = timezone.localdate()
    password = make_password(None)  # unusable: nobody logs in

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        centers = ServiceCenter.objects.bulk_create(
            ServiceCenter(
                name=name,
                county="Bench county",
                lat=lat,
                lng=lng,
                daily_capacity_kg=CAPACITY[args.capacity],
            )
            for name, lat, lng in CENTERS
        )
        villages = Village.objects.bulk_create(
            Village(
                name=f"Bench village {i:02d}",
                county="Bench county",
                lat=jitter(rng, centers[i % 3].lat, 0.08),
                lng=jitter(rng, centers[i % 3].lng, 0.08),
                service_center=centers[i % 3],
            )
            for i in range(args.villages)
        )

        def people(role: str, count: int, prefix: str) -> list[User]:
            rows = []
            for i in range(count):
                village = villages[i % len(villages)]
                rows.append(
                    User(
                        phone=f"{prefix}{i:08d}",
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

        farmers = people(Role.FARMER, args.farmers, "+86136")
        buyers = people(Role.BUYER, args.buyers, "+86135")

        listings: list[Listing] = []
        for farmer in farmers:
            for title, unit, weight, (low, high) in rng.sample(PRODUCE, rng.randint(1, 3)):
                listings.append(
                    Listing(
                        farmer=farmer,
                        category=rng.choice(categories),
                        title=f"{title} from {farmer.name}",
                        description="Routing benchmark listing.",
                        unit=unit,
                        unit_weight_kg=weight or FIXED_WEIGHT[unit],
                        price=Decimal(rng.randint(low, high)) / 100,
                        quantity_available=Decimal("100000.000"),  # minus what is sold below
                        harvest_date=today + timedelta(days=rng.randint(-3, 3)),
                        shelf_life_days=rng.randint(2, 30),
                        needs_refrigeration=rng.random() < 0.2,
                        status=ListingStatus.ACTIVE,
                        **listing_place(farmer),
                    )
                )
        by_farmer: dict[int, list[Listing]] = {}
        for listing in listings:
            by_farmer.setdefault(listing.farmer_id, []).append(listing)
        farmer_ids = list(by_farmer)

        orders: list[Order] = []
        order_lines: list[list[OrderLine]] = []
        for _ in range(args.orders):
            buyer = rng.choice(buyers)
            lines = []
            for farmer_id in rng.sample(farmer_ids, rng.randint(1, 4)):
                own = by_farmer[farmer_id]
                for listing in rng.sample(own, min(len(own), rng.randint(1, 2))):
                    quantity = Decimal(rng.randint(1, 8 if listing.unit in ("kg", "jin") else 3))
                    listing.quantity_available -= quantity
                    lines.append(
                        OrderLine(
                            listing=listing,
                            farmer_id=farmer_id,
                            title=listing.title,
                            unit=listing.unit,
                            unit_price=listing.price,
                            unit_weight_kg=listing.unit_weight_kg,
                            quantity=quantity,
                            subtotal=(listing.price * quantity).quantize(CENT, ROUND_HALF_UP),
                            needs_refrigeration=listing.needs_refrigeration,
                            spoils_on=listing.harvest_date
                            + timedelta(days=listing.shelf_life_days),
                        )
                    )
            method = DeliveryMethod.HOME if rng.random() < 0.7 else DeliveryMethod.PICKUP
            village = buyer.village
            lat, lng = (
                (buyer.lat, buyer.lng)
                if method == DeliveryMethod.HOME
                else (
                    village.lat,
                    village.lng,
                )
            )
            subtotal = sum((line.subtotal for line in lines), Decimal("0.00"))
            fee = delivery_fee(
                delivery_method=method,
                subtotal=subtotal,
                farmer_count=len({line.farmer_id for line in lines}),
            )
            orders.append(
                Order(
                    buyer=buyer,
                    status=OrderStatus.PLACED,
                    delivery_method=method,
                    delivery_village=village,
                    delivery_address="Bench road 1" if method == DeliveryMethod.HOME else "",
                    delivery_lat=lat,
                    delivery_lng=lng,
                    payment_method=PaymentMethod.COD,
                    payment_status=PaymentStatus.UNPAID,
                    subtotal=subtotal,
                    delivery_fee=fee,
                    total=subtotal + fee,
                    delivery_code=f"{rng.randrange(1_000_000):06d}",
                )
            )
            order_lines.append(lines)
        if min(x.quantity_available for x in listings) <= 0:
            raise SystemExit("a listing ran out of stock: raise its initial stock")
        Listing.objects.bulk_create(listings, batch_size=2_000)
        Order.objects.bulk_create(orders, batch_size=2_000)
        flat = []
        for order, lines in zip(orders, order_lines, strict=True):
            for line in lines:
                line.order = order
                line.listing_id = line.listing.pk
                flat.append(line)
        OrderLine.objects.bulk_create(flat, batch_size=5_000)
        OrderEvent.objects.bulk_create(
            (
                OrderEvent(
                    order=order,
                    to_status=OrderStatus.PLACED,
                    actor_id=order.buyer_id,
                    reason="placed",
                )
                for order in orders
            ),
            batch_size=5_000,
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    farmers_per_order = sum(len({x.farmer_id for x in lines}) for lines in order_lines) / len(
        orders
    )
    weight = sum(x.quantity * x.unit_weight_kg for x in flat)
    print(
        f"{db_name}: {len(centers)} centers ({args.capacity}: "
        f"{CAPACITY[args.capacity]:,.0f} kg/day), {len(villages)} villages, {len(farmers)} "
        f"farmers, {len(listings)} listings, {len(buyers)} buyers, {len(orders):,} placed "
        f"orders, {len(flat):,} lines ({farmers_per_order:.2f} farmers/order, "
        f"{weight / 1000:,.0f} t) in {time.perf_counter() - started:.1f} s; nothing enqueued"
    )


if __name__ == "__main__":
    main()
