"""Routing survives what production throws at it: a worker killed mid-routing, a Redis
restart with routing messages queued, duplicate concurrent runs; cancellation unwinds it."""

import contextlib
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from listings.models import Listing
from logistics.models import CenterDayLoad, Route, Shipment, ShipmentStatus, Stop
from logistics.services.routing import order_route, orders_route_batch
from logistics.tasks import sweep_unrouted_orders
from marketplace.accounts.models import User
from marketplace.celery import app as celery_app
from orders import services as orders
from orders.models import Notification, NotificationKind, Order, OrderStatus
from tests.factories import BuyerFactory, FarmerFactory, create_listing, place_order
from tests.worker import RedisServer, WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def new_shop() -> tuple[User, list[Listing]]:
    """A buyer and four farmers' listings with plenty in stock."""
    farmers = [FarmerFactory() for _ in range(4)]
    listings = [create_listing(f, quantity_available=Decimal("100000")) for f in farmers]
    return BuyerFactory(), listings


def place_orders(count: int, shop: tuple[User, list[Listing]] | None = None) -> list[Order]:
    """`count` cash-on-delivery orders, each from two farmers (of `shop`, or a new one)."""
    buyer, listings = shop or new_shop()
    placed = []
    for n in range(count):
        pair = (listings[n % 4], listings[(n + 1) % 4])
        placed.append(place_order(buyer, *pair))
    return placed


def statuses(placed) -> Counter:
    return Counter(
        Order.objects.filter(pk__in=[o.pk for o in placed]).values_list("status", flat=True)
    )


def wait_until(condition, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def assert_one_set_of_shipments_each(placed) -> None:
    per_order = Counter(
        Shipment.objects.filter(order__in=placed).values_list("order_id", flat=True)
    )
    assert per_order == {order.pk: 2 for order in placed}


@contextlib.contextmanager
def broker(url: str):
    """Point this process's Celery producer at another broker."""
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    try:
        yield
    finally:
        celery_app.conf.broker_url = previous
        celery_app._pool = None
        celery_app.amqp._producer_pool = None


def test_a_worker_killed_mid_routing_loses_no_order(settings):
    settings.ROUTING_SWEEP_GRACE_SECONDS = 0
    celery_app.control.purge()
    placed = place_orders(100)  # their routing (and notification) messages wait in Redis
    # Batches of one, so the kill lands between and inside them (a batch is one transaction)
    # and the worker cannot finish the hundred between two looks (it did with batches of 3).
    worker = WorkerProcess("killed", concurrency=2, env={"ROUTING_BATCH": "1"})
    worker.start()
    try:
        confirmed_some = lambda: statuses(placed)[OrderStatus.CONFIRMED] >= 5  # noqa: E731
        assert wait_until(confirmed_some, timeout=60, step=0.01)
        worker.kill()  # SIGKILL to the worker and its pool, mid-task
        at_kill = statuses(placed)
        assert at_kill[OrderStatus.PLACED] > 0, "the worker finished before it could be killed"

        worker.start()
        sweep_unrouted_orders()  # one sweeper pass
        assert wait_until(lambda: statuses(placed) == {OrderStatus.CONFIRMED: 100}, timeout=60)
    finally:
        worker.stop()
    assert_one_set_of_shipments_each(placed)
    confirmed = Notification.objects.filter(kind=NotificationKind.ORDER_CONFIRMED, order__in=placed)
    assert Counter(confirmed.values_list("order_id", flat=True)) == {o.pk: 3 for o in placed}


def test_a_redis_restart_with_routing_queued_costs_one_sweep(settings, tmp_path):
    settings.ROUTING_SWEEP_GRACE_SECONDS = 0
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    worker = WorkerProcess("redis-restart", broker_url=redis.url)
    try:
        with broker(redis.url):
            placed = place_orders(20)  # no worker yet: the messages sit in Redis
            redis.kill()  # no persistence: the queued messages are gone
            redis.start()
            worker.start()
            time.sleep(2)
            assert statuses(placed) == {OrderStatus.PLACED: 20}  # nothing left to route them

            started = time.monotonic()
            assert sweep_unrouted_orders() == 20
            assert wait_until(lambda: statuses(placed) == {OrderStatus.CONFIRMED: 20}, timeout=60)
            assert time.monotonic() - started < 60  # within the sweeper's interval
            worker.stop()
    finally:
        worker.stop()
        redis.kill()
    assert_one_set_of_shipments_each(placed)


def test_two_concurrent_routings_make_one_set_and_one_notification_each():
    (order,) = place_orders(1)
    barrier = threading.Barrier(2)
    results = []

    def route():
        try:
            barrier.wait()
            results.append(order_route(order_id=order.pk).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=route) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [OrderStatus.CONFIRMED, OrderStatus.CONFIRMED]
    assert_one_set_of_shipments_each([order])
    assert order.events.filter(to_status=OrderStatus.CONFIRMED).count() == 1
    confirmed = Notification.objects.filter(kind=NotificationKind.ORDER_CONFIRMED, order=order)
    assert confirmed.count() == 3  # the buyer and two farmers, once each


def test_cancelling_before_pickup_unwinds_shipments_stops_and_capacity():
    (order,) = place_orders(1)
    order_route(order_id=order.pk)
    first, second = Shipment.objects.filter(order=order).order_by("pk")
    planned = Route.objects.create(service_center=first.origin_center, date=first.pickup_date)
    started = Route.objects.create(
        service_center=second.origin_center, date=second.pickup_date, status="started"
    )
    shared_stop = Stop.objects.create(route=planned, sequence=1, kind="pickup", lat=0, lng=0)
    shared_stop.shipments.add(first)
    on_the_road = Stop.objects.create(route=started, sequence=1, kind="pickup", lat=0, lng=0)
    on_the_road.shipments.add(second)

    orders.order_cancel(order_id=order.pk, actor=order.buyer, reason="不要了")

    assert set(Shipment.objects.filter(order=order).values_list("status", flat=True)) == {
        ShipmentStatus.CANCELLED
    }
    assert not Stop.objects.filter(pk=shared_stop.pk).exists()  # its route had not started
    assert Stop.objects.filter(pk=on_the_road.pk).exists()  # staff see it and skip it
    assert set(CenterDayLoad.objects.values_list("booked_kg", flat=True)) == {Decimal("0")}


def test_concurrent_batches_route_every_order_once():
    """Four batches at once over the same waiting orders: each takes the orders no other
    holds (SKIP LOCKED), so every order is routed exactly once, with no deadlock."""
    placed = place_orders(40)
    barrier = threading.Barrier(4)
    routed: list[int] = []
    errors: list[Exception] = []

    def route(order_id: int):
        try:
            barrier.wait()
            routed.extend(orders_route_batch(order_id=order_id, size=15))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=route, args=(placed[n * 10].pk,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(routed) == sorted(set(routed))  # nobody routed an order twice
    for order_id in {o.pk for o in placed} - set(routed):  # left by a full batch: the sweeper's
        orders_route_batch(order_id=order_id, size=1)
    assert statuses(placed) == Counter({OrderStatus.CONFIRMED: 40})
    assert_one_set_of_shipments_each(placed)
    per_order = Counter(
        Notification.objects.filter(kind=NotificationKind.ORDER_CONFIRMED).values_list(
            "order_id", flat=True
        )
    )
    assert set(per_order.values()) == {3}  # the buyer and two farmers, once each
