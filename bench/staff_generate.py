"""Load the staff-lists benchmark's data into a `*_bench` database (about half a minute).

    .venv/bin/python bench/staff_generate.py                    # marketplace_staff_bench
    .venv/bin/python bench/staff_generate.py --orders 50000

A county of 6 service centers with 10 villages each; the first center is the busy one (40 %
of orders are delivered to its villages, the rest spread over the others). 100 farmers per
center with one listing each, 2,000 buyers, one staff member per center. Each order has two
lines from two farmers (70 % of them from the delivery center, the rest from anywhere).
Orders are spread over a year, one every ~2.6 minutes, newest last. By default 200,000
orders, 400,000 lines and 363,834 shipments:

- 91.5 % of the orders are routed: one shipment per farmer (origin: the farmer's center,
  destination: the delivery village's center), delivered when older than a week, else
  pending; 3 % of them were cancelled after routing (shipments cancelled);
- the rest never were: the newest 1,000 orders placed (waiting for the worker), the others
  cancelled or expired unpaid before routing (no shipment).

Written by INSERT … SELECT over generate_series with a seeded random(), not the ORM, so the
same arguments give the same rows. The database is emptied first (TRUNCATE … RESTART
IDENTITY CASCADE of the users, geography, listings, orders and logistics tables; the seeded
categories stay), then VACUUM ANALYZE. Refuses any database whose name does not end in
`_bench`. Writes the order's routed fact (`routed_at`) when the schema has it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.staff_settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

CENTERS = 6
VILLAGES_PER_CENTER = 10
FARMERS_PER_CENTER = 100
BUYERS = 2000
FIRST_BUYER, FIRST_STAFF = 100_001, 200_001  # user ids: farmers from 1
TABLES = (
    "logistics_trackingevent",
    "logistics_shipmentleg",
    "logistics_shipment",
    "orders_orderevent",
    "orders_orderline",
    "orders_order",
    "listings_listing",
    "accounts_user",
    "logistics_village",
    "logistics_servicecenter",
)

# Every order's plan: its delivery village, two farmers, whether it was routed and whether
# it was cancelled. random() follows setseed(), so the plan is the same every time.
PLAN = """
CREATE TEMP TABLE plan ON COMMIT DROP AS
SELECT g AS id,
       village,
       (village - 1) / %(villages)s + 1 AS center,
       f1,
       CASE WHEN f2 = f1 THEN f1 %% %(farmers)s + 1 ELSE f2 END AS f2,
       %(now)s::timestamptz - (%(orders)s - g) * interval '157 seconds' AS created_at,
       r_routed < %(routed_share)s AND g <= %(orders)s - 1000 AS routed,
       r_cancel < 0.03 AS cancelled_later
FROM (
    SELECT g,
           CASE WHEN r_village < 0.4 THEN 1 + floor(r_pick * %(villages)s)::int
                ELSE %(villages)s + 1
                     + floor(r_pick * (%(centers)s - 1) * %(villages)s)::int END AS village,
           r_routed, r_cancel, r_f1, r_f2, r_local
    FROM (SELECT g, random() AS r_village, random() AS r_pick, random() AS r_routed,
                 random() AS r_cancel, random() AS r_f1, random() AS r_f2, random() AS r_local
          FROM generate_series(1, %(orders)s) g) r
) v,
LATERAL (
    SELECT CASE WHEN r_local < 0.7
                THEN ((village - 1) / %(villages)s) * %(per_center)s
                     + 1 + floor(r_f1 * %(per_center)s)::int
                ELSE 1 + floor(r_f1 * %(farmers)s)::int END AS f1,
           1 + floor(r_f2 * %(farmers)s)::int AS f2
) f
"""

CENTERS_SQL = """
INSERT INTO logistics_servicecenter (id, name, county, address, lat, lng, opens_at, closes_at,
    average_speed_kmh, detour_factor, daily_capacity_kg)
SELECT c, 'Bench center ' || c, 'Bench county', '', 30 + c * 0.1, 119.6, '07:00', '19:00',
       35, 1.35, 5000
FROM generate_series(1, %(centers)s) c
"""
VILLAGES_SQL = """
INSERT INTO logistics_village (id, name, county, lat, lng, service_center_id)
SELECT v, 'Bench village ' || v, 'Bench county', 30 + ((v - 1) / %(villages)s + 1) * 0.1
       + (v %% %(villages)s) * 0.005, 119.6 + (v %% %(villages)s) * 0.005,
       (v - 1) / %(villages)s + 1
FROM generate_series(1, %(centers)s * %(villages)s) v
"""
USERS_SQL = """
INSERT INTO accounts_user (id, password, is_superuser, phone, name, role, address, buyer_kind,
    is_active, is_staff, date_joined, sign_outs, village_id, service_center_id, lat, lng)
SELECT id, '!', false, '+86139' || lpad(id::text, 8, '0'), role || ' ' || id, role, '',
       CASE WHEN role = 'buyer' THEN 'household' ELSE '' END, true, false, %(now)s, 0,
       village, CASE WHEN role = 'staff' THEN id - %(first_staff)s + 1 END, 30.3, 119.6
FROM (
    SELECT f AS id, 'farmer' AS role, (f - 1) %% (%(centers)s * %(villages)s) + 1 AS village
    FROM generate_series(1, %(farmers)s) f
    UNION ALL
    SELECT %(first_buyer)s + b, 'buyer', b %% (%(centers)s * %(villages)s) + 1
    FROM generate_series(0, %(buyers)s - 1) b
    UNION ALL
    SELECT %(first_staff)s + s - 1, 'staff', NULL FROM generate_series(1, %(centers)s) s
) u
"""
# One listing per farmer, in the farmer's village, with the farmer's id as its own.
LISTINGS_SQL = """
INSERT INTO listings_listing (id, title, description, unit, unit_weight_kg, price,
    quantity_available, min_order_quantity, harvest_date, shelf_life_days, is_organic,
    needs_refrigeration, status, lat, lng, created_at, updated_at, category_id, farmer_id,
    village_id)
SELECT u.id, 'Bench produce ' || u.id, '', 'kg', 1, 5, 100000, 1, %(now)s::date, 30, false,
       false, 'active', 30.3, 119.6, %(now)s, %(now)s,
       (SELECT min(id) FROM listings_category), u.id, u.village_id
FROM accounts_user u WHERE u.role = 'farmer'
"""
ORDERS_SQL = """
INSERT INTO orders_order (id, status, delivery_method, delivery_address, delivery_lat,
    delivery_lng, payment_method, payment_status, note, subtotal, delivery_fee, total,
    delivery_code, created_at, updated_at, buyer_id, delivery_village_id,
    hand_over_last_wrong_code, hand_over_wrong_codes{routed_column})
SELECT id,
       CASE WHEN routed AND cancelled_later THEN 'cancelled'
            WHEN routed AND created_at < %(now)s::timestamptz - interval '7 days'
                THEN 'delivered'
            WHEN routed THEN 'confirmed'
            WHEN id > %(orders)s - 1000 THEN 'placed'
            ELSE 'cancelled' END,
       'home', '', 30.3, 119.6, 'cod', 'unpaid', '', 20, 5, 25, '123456', created_at,
       created_at, %(first_buyer)s + id %% %(buyers)s, village, '', 0{routed_value}
FROM plan
"""
LINES_SQL = """
INSERT INTO orders_orderline (order_id, listing_id, farmer_id, title, unit, unit_price,
    unit_weight_kg, quantity, subtotal, needs_refrigeration, status, reject_reason)
SELECT id, farmer, farmer, 'Bench produce ' || farmer, 'kg', 5, 1, 2, 10, false,
       CASE WHEN routed AND NOT cancelled_later OR NOT routed AND id > %(orders)s - 1000
            THEN 'active' ELSE 'cancelled' END, ''
FROM plan, LATERAL (VALUES (f1), (f2)) AS l (farmer)
ORDER BY id, farmer
"""
SHIPMENTS_SQL = """
INSERT INTO logistics_shipment (order_id, farmer_id, origin_center_id, destination_center_id,
    status, weight_kg, needs_refrigeration, pickup_lat, pickup_lng, delivery_lat,
    delivery_lng, pickup_date, delivery_date, promised_date, spoils_before_arrival,
    transfer_late, failed_attempts, created_at, updated_at)
SELECT id, farmer, (farmer - 1) %% (%(centers)s * %(villages)s) / %(villages)s + 1, center,
       CASE WHEN cancelled_later THEN 'cancelled'
            WHEN created_at < %(now)s::timestamptz - interval '7 days' THEN 'delivered'
            ELSE 'pending' END,
       2, false, 30.3, 119.6, 30.3, 119.6, created_at::date + 2, created_at::date + 3,
       created_at::date + 3, false, false, 0, created_at, created_at
FROM plan, LATERAL (VALUES (f1), (f2)) AS l (farmer)
WHERE routed
ORDER BY id, farmer
"""


def has_routed_column() -> bool:
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, "orders_order")
    return any(column.name == "routed_at" for column in columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--routed-share", type=float, default=0.915)
    parser.add_argument("--seed", type=float, default=0.42, help="setseed(), -1 to 1")
    args = parser.parse_args()

    db_name = connection.settings_dict["NAME"]
    if not db_name.endswith("_bench"):
        raise SystemExit(f"refusing {db_name!r}: the database name must end in _bench")
    params = {
        "orders": args.orders,
        "routed_share": args.routed_share,
        "centers": CENTERS,
        "villages": VILLAGES_PER_CENTER,
        "per_center": FARMERS_PER_CENTER,
        "farmers": CENTERS * FARMERS_PER_CENTER,
        "buyers": BUYERS,
        "first_buyer": FIRST_BUYER,
        "first_staff": FIRST_STAFF,
        "now": "2026-12-01T12:00:00+08:00",
    }
    routed = has_routed_column()
    orders_sql = ORDERS_SQL.format(
        routed_column=", routed_at" if routed else "",
        routed_value=", CASE WHEN routed THEN created_at + interval '1 minute' END"
        if routed
        else "",
    )
    started = time.perf_counter()
    counts = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        cursor.execute("SELECT setseed(%s)", [args.seed])
        cursor.execute(PLAN, params)
        for table, sql in (
            ("centers", CENTERS_SQL),
            ("villages", VILLAGES_SQL),
            ("users", USERS_SQL),
            ("listings", LISTINGS_SQL),
            ("orders", orders_sql),
            ("lines", LINES_SQL),
            ("shipments", SHIPMENTS_SQL),
        ):
            cursor.execute(sql, params)
            counts[table] = cursor.rowcount
        for table in ("orders_order", "orders_orderline", "logistics_shipment", "accounts_user"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM {table}))",
                [table],
            )
    loaded = time.perf_counter() - started
    connection.close()  # VACUUM runs outside a transaction, on a fresh connection
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(
        f"{db_name}: {counts['centers']} centers, {counts['villages']} villages, "
        f"{counts['users']} users, {counts['orders']:,} orders, {counts['lines']:,} lines, "
        f"{counts['shipments']:,} shipments (routed_at {'written' if routed else 'absent'}); "
        f"loaded in {loaded:.1f} s, vacuumed in {time.perf_counter() - started - loaded:.1f} s"
    )


if __name__ == "__main__":
    main()
