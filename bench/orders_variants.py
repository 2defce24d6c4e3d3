"""Bench-only variants of the order-placement path, to measure proposed changes without
editing app code. Each is a monkeypatch applied at start-up when named in
ORDERS_BENCH_VARIANTS (comma list, or `all`), by bench/orders_wsgi.py (gunicorn) and
bench/orders_profile.py (in-process). None of them is applied unless asked for.

Variants now in the app itself (APPLIED) are still accepted by name, so older command lines
run, but patch nothing: the baseline has them.

- lean_answer  APPLIED. POST /api/v1/orders/ answers from the objects order_place just
               wrote (order, its lines, its event) instead of reading the order back (1
               SELECT + 3 prefetches); for keyed requests that also shortens the time the
               listing rows stay locked, since the idempotency transaction commits after the
               answer. In the app: order_place leaves lines, events and (no) shipments in the
               order's prefetch cache, OrderViewSet.create serializes that order.
- one_publish  APPLIED. One Celery message per change for all its notifications instead
               of one per notification; since superseded by one waiting message for every
               change (orders.notifications.store wakes the sender unless a message waits).
- auth_village APPLIED. order_place's `buyer.village` cost a query of its own. The patch
               loaded the user with select_related("village") in JWTAuthentication (and
               skipped simplejwt's CHECK_REVOKE_TOKEN check); the app instead has
               order_place compare village ids and read the buyer's village only when its
               point is the delivery point (a buyer without coordinates of their own).
- lean_lock    APPLIED, further than the patch went. The patch had listings_for_update
               defer search_vector and description (measured no gain alone). The app now
               reads the locked rows in SQL of its own, those two columns deferred
               (listings/selectors.py): the ORM's query building was the cost.
"""

from __future__ import annotations

import os

KNOWN = ("lean_answer", "one_publish", "auth_village", "lean_lock")
ALL = KNOWN
APPLIED = KNOWN  # all in the app now: nothing is patched


def requested() -> list[str]:
    raw = os.environ.get("ORDERS_BENCH_VARIANTS", "").strip()
    if not raw:
        return []
    names = list(ALL) if raw == "all" else [x.strip() for x in raw.split(",") if x.strip()]
    unknown = set(names) - set(KNOWN)
    if unknown:
        raise RuntimeError(f"unknown ORDERS_BENCH_VARIANTS: {sorted(unknown)}")
    return names


def apply(names: list[str] | None = None) -> list[str]:
    """Patch the named variants in; returns those patched (APPLIED ones are skipped)."""
    names = requested() if names is None else names
    patched = [name for name in names if name not in APPLIED]
    if patched:
        raise RuntimeError(f"no patch for {patched}")
    return patched
