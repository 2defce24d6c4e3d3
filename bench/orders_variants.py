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
- lean_lock    listings_for_update selects only the columns order_place uses (defers
               search_vector and description): listings/selectors.py listings_for_update
               with .defer("search_vector", "description"). Measured no gain (the hot rows'
               vectors are small); not part of `all`.
"""

from __future__ import annotations

import os

KNOWN = ("lean_answer", "one_publish", "auth_village", "lean_lock")
ALL = ("lean_answer", "one_publish", "auth_village")  # `all`: lean_lock showed no gain
APPLIED = ("lean_answer", "auth_village", "one_publish")  # in the app now: nothing patched


def requested() -> list[str]:
    raw = os.environ.get("ORDERS_BENCH_VARIANTS", "").strip()
    if not raw:
        return []
    names = list(ALL) if raw == "all" else [x.strip() for x in raw.split(",") if x.strip()]
    unknown = set(names) - set(KNOWN)
    if unknown:
        raise RuntimeError(f"unknown ORDERS_BENCH_VARIANTS: {sorted(unknown)}")
    return names


def _lean_lock() -> None:
    from listings.models import Listing  # noqa: PLC0415
    from orders import services  # noqa: PLC0415

    def listings_for_update(listing_ids):
        return (
            Listing.objects.select_for_update(of=("self",))
            .filter(pk__in=listing_ids)
            .order_by("pk")
            .defer("search_vector", "description")
        )

    services.listings_for_update = listings_for_update


def apply(names: list[str] | None = None) -> list[str]:
    """Patch the named variants in; returns those patched (APPLIED ones are skipped)."""
    names = requested() if names is None else names
    patched = [name for name in names if name not in APPLIED]
    for name in patched:
        {"lean_lock": _lean_lock}[name]()
    return patched
