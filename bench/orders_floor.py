"""The floor's transaction body: an order placed straight in SQL, shared by the two targets
of bench/orders_load.py that run it.

- floor    32 psycopg connections run BEGIN, `place()`, COMMIT: what any implementation over
           this schema costs at least;
- ceiling  the keyed POST /api/v1/bench/ceiling/ (bench/orders_urls.py) runs `place()` on
           Django's connection inside the idempotency middleware's transaction: what any
           implementation behind this framework (middleware, DRF, JWT and the user read,
           the Idempotency-Key's lock, lookup and record) costs at least, with none of the
           order's own checks, notifications, routing message or answer.

The same statements either way: lock the listings in id order, take 1 unit per line (sold
out at 0), INSERT the order, one multi-row INSERT of its lines, INSERT its event. Totals
follow orders.services.delivery_fee with the default settings.
"""

import secrets
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# orders.services.delivery_fee with the default settings (base.py)
FEE_BASE, FEE_EXTRA, FREE_FROM = Decimal("5.00"), Decimal("2.00"), Decimal("99.00")

LOCK = """
SELECT id, farmer_id, title, unit, price, unit_weight_kg, quantity_available, status,
       min_order_quantity, available_until, needs_refrigeration
FROM listings_listing WHERE id = ANY(%s) ORDER BY id FOR UPDATE
"""
TAKE = """
UPDATE listings_listing
SET quantity_available = quantity_available - %(q)s,
    status = CASE WHEN status = 'active' AND quantity_available - %(q)s <= 0
                  THEN 'sold_out' ELSE status END
WHERE id = %(id)s
"""
ORDER = """
INSERT INTO orders_order (buyer_id, status, delivery_method, delivery_village_id,
    delivery_address, delivery_lat, delivery_lng, payment_method, payment_status,
    payment_due_at, paid_at, note, subtotal, delivery_fee, total, delivery_code,
    created_at, updated_at)
VALUES (%s, 'placed', 'home', %s, '', %s, %s, 'cod', 'unpaid', NULL, NULL, '', %s, %s, %s, %s,
        now(), now())
RETURNING id
"""
LINE_COLUMNS = (
    "order_id, listing_id, farmer_id, title, unit, unit_price, unit_weight_kg, quantity, "
    "subtotal, needs_refrigeration, status, reject_reason"
)
LINE_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'active', '')"
EVENT = """
INSERT INTO orders_orderevent (order_id, from_status, to_status, actor_id, reason, created_at)
VALUES (%s, '', 'placed', %s, 'placed', now())
"""


def place(cursor, buyer: dict, ids: list[int], quantity: Decimal = Decimal(1)) -> int | None:
    """The order's statements on `cursor` (a psycopg or Django cursor) in the caller's
    transaction: the new order's id, or None with nothing written when a listing is gone,
    not active or short (the caller rolls back). `buyer`: id, village, lat, lng."""
    cursor.execute(LOCK, [sorted(ids)])
    rows = cursor.fetchall()
    if len(rows) != len(ids) or any(r[6] < quantity or r[7] != "active" for r in rows):
        return None
    for row in rows:
        cursor.execute(TAKE, {"q": quantity, "id": row[0]})
    subtotals = [(row[4] * quantity).quantize(CENT, ROUND_HALF_UP) for row in rows]
    subtotal = sum(subtotals, Decimal("0.00"))
    farmers = len({row[1] for row in rows})
    fee = Decimal("0.00") if subtotal >= FREE_FROM else FEE_BASE + FEE_EXTRA * (farmers - 1)
    code = f"{secrets.randbelow(1_000_000):06d}"
    cursor.execute(
        ORDER,
        [buyer["id"], buyer["village"], buyer["lat"], buyer["lng"], subtotal, fee,
         subtotal + fee, code],
    )  # fmt: skip
    (order_id,) = cursor.fetchone()
    params: list = []
    for row, line_subtotal in zip(rows, subtotals, strict=True):
        params += [order_id, row[0], row[1], row[2], row[3], row[4], row[5], quantity,
                   line_subtotal, row[10]]  # fmt: skip
    values = ", ".join([LINE_ROW] * len(rows))
    cursor.execute(f"INSERT INTO orders_orderline ({LINE_COLUMNS}) VALUES {values}", params)
    cursor.execute(EVENT, [order_id, buyer["id"]])
    return order_id
