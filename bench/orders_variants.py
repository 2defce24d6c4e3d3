"""Bench-only variants of the order-placement path, to measure proposed changes without
editing app code. Each is a monkeypatch applied at start-up when named in
ORDERS_BENCH_VARIANTS (comma list, or `all`), by bench/orders_wsgi.py (gunicorn) and
bench/orders_profile.py (in-process). None of them is applied unless asked for.

- lean_answer  POST /api/v1/orders/ answers from the objects order_place just wrote (order,
               its lines, its event) instead of reading the order back (1 SELECT + 2
               prefetches); for keyed requests that also shortens the time the listing rows
               stay locked, since the idempotency transaction commits after the answer.
               Proposed change: orders/api/views.py OrderViewSet.create/_answer, with
               order_place handing over the lines and event it wrote.
- one_publish  one Celery message per order for its 2–4 notifications instead of one per
               notification. Proposed change: orders/notifications.py _store enqueues one
               task with all ids (a `send_notifications(ids)` task).
- auth_village the JWT authentication loads the user with select_related("village"), so
               order_place's `buyer.village` costs no query of its own. Proposed change: a
               JWTAuthentication subclass in DEFAULT_AUTHENTICATION_CLASSES (or order_place
               using buyer.village_id and loading the village only when it needs its place).
- lean_lock    listings_for_update selects only the columns order_place uses (defers
               search_vector and description): listings/selectors.py listings_for_update
               with .defer("search_vector", "description"). Measured no gain (the hot rows'
               vectors are small); not part of `all`.
"""

from __future__ import annotations

import os
import threading

KNOWN = ("lean_answer", "one_publish", "auth_village", "lean_lock")
ALL = ("lean_answer", "one_publish", "auth_village")  # `all`: lean_lock showed no gain
_local = threading.local()


def requested() -> list[str]:
    raw = os.environ.get("ORDERS_BENCH_VARIANTS", "").strip()
    if not raw:
        return []
    names = list(ALL) if raw == "all" else [x.strip() for x in raw.split(",") if x.strip()]
    unknown = set(names) - set(KNOWN)
    if unknown:
        raise RuntimeError(f"unknown ORDERS_BENCH_VARIANTS: {sorted(unknown)}")
    return names


def _lean_answer() -> None:
    from rest_framework import status  # noqa: PLC0415
    from rest_framework.response import Response  # noqa: PLC0415

    from orders import services  # noqa: PLC0415
    from orders.api import views  # noqa: PLC0415
    from orders.api.serializers import OrderPlaceSerializer  # noqa: PLC0415
    from orders.models import OrderEvent, OrderLine  # noqa: PLC0415

    lines_manager, events_manager = OrderLine.objects, OrderEvent.objects
    real_bulk_create, real_create = lines_manager.bulk_create, events_manager.create

    def bulk_create(objs, *args, **kwargs):
        created = real_bulk_create(objs, *args, **kwargs)
        capture = getattr(_local, "capture", None)
        if capture is not None:
            capture["lines"] = list(created)
        return created

    def create(**kwargs):
        event = real_create(**kwargs)
        capture = getattr(_local, "capture", None)
        if capture is not None and "event" not in capture:
            capture["event"] = event
        return event

    lines_manager.bulk_create = bulk_create
    events_manager.create = create

    def cached(model, rows):
        queryset = model.objects.all()
        queryset._result_cache, queryset._prefetch_done = list(rows), True
        return queryset

    def lean_create(self, request):
        serializer = OrderPlaceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        _local.capture = {}
        try:
            order = services.order_place(buyer=request.user, **serializer.validated_data)
            capture = _local.capture
        finally:
            _local.capture = None
        order._prefetched_objects_cache = {
            "lines": cached(OrderLine, sorted(capture["lines"], key=lambda x: x.pk)),
            "events": cached(OrderEvent, [capture["event"]]),
        }
        return Response(self.get_serializer(order).data, status=status.HTTP_201_CREATED)

    lean_create.__name__ = "create"
    views.OrderViewSet.create = lean_create


def _one_publish() -> None:
    from celery import current_app  # noqa: PLC0415
    from django.db import transaction  # noqa: PLC0415

    from orders import notifications  # noqa: PLC0415
    from orders.models import Notification  # noqa: PLC0415

    def store(rows):
        Notification.objects.bulk_create(rows)
        ids = [n.pk for n in rows]
        if ids:
            transaction.on_commit(
                lambda: current_app.send_task("orders.notifications.send_notifications", args=[ids])
            )
        return rows

    notifications._store = store


def _auth_village() -> None:
    from rest_framework_simplejwt.authentication import JWTAuthentication  # noqa: PLC0415
    from rest_framework_simplejwt.exceptions import AuthenticationFailed  # noqa: PLC0415
    from rest_framework_simplejwt.settings import api_settings  # noqa: PLC0415

    def get_user(self, validated_token):
        user_id = validated_token[api_settings.USER_ID_CLAIM]
        try:
            user = self.user_model.objects.select_related("village").get(
                **{api_settings.USER_ID_FIELD: user_id}
            )
        except self.user_model.DoesNotExist as error:
            raise AuthenticationFailed("User not found", code="user_not_found") from error
        if not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        return user

    JWTAuthentication.get_user = get_user


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
    names = requested() if names is None else names
    for name in names:
        {
            "lean_answer": _lean_answer,
            "one_publish": _one_publish,
            "auth_village": _auth_village,
            "lean_lock": _lean_lock,
        }[name]()
    return names
