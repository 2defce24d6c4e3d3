"""Routing messages under load: one waiting message stands for every order placed meanwhile,
and a full batch sends the next one, so orders are routed with far fewer messages than
orders, and none is left behind."""

import base64
import json
import time
from collections import Counter

import pytest
import redis
from django.conf import settings

from logistics.tasks import route_order
from marketplace.celery import app as celery_app
from marketplace.celery import pending_taken, send_unless_pending
from orders.models import Order, OrderStatus
from orders.services import ROUTE_ORDER_TASK
from tests.logistics.test_routing_reliability import new_shop, place_orders

pytestmark = pytest.mark.django_db(transaction=True)


def queued(task: str) -> list[list]:
    """The args of `task`'s messages waiting in the run's queue, oldest first."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    found = []
    for raw in reversed(broker.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)):
        message = json.loads(raw)
        if message["headers"]["task"] == task:
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append(args)
    return found


@pytest.fixture
def empty_queue():
    celery_app.control.purge()
    pending_taken(ROUTE_ORDER_TASK)
    yield
    celery_app.control.purge()
    pending_taken(ROUTE_ORDER_TASK)


def test_orders_placed_while_a_message_waits_send_none_and_full_batches_send_the_next(
    settings, empty_queue
):
    settings.ROUTING_BATCH = 2
    placed = place_orders(5)
    assert queued(ROUTE_ORDER_TASK) == [[placed[0].pk]]  # one message for the five

    routed = []
    for message in ([placed[0].pk], [None], [None]):
        celery_app.control.purge()  # the worker took it
        routed.append(route_order(*message))
        # a full batch sends one more message, without an order: others may be waiting
        assert queued(ROUTE_ORDER_TASK) == ([[None]] if routed[-1] == 2 else [])
    assert routed == [2, 2, 1]
    assert Counter(Order.objects.values_list("status", flat=True)) == {OrderStatus.CONFIRMED: 5}

    (late,) = place_orders(1)  # nothing pending any more: it sends its own
    assert queued(ROUTE_ORDER_TASK) == [[late.pk]]


def test_a_send_that_fails_leaves_nothing_pending(empty_queue, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    with monkeypatch.context() as patched:
        patched.setattr(celery_app, "send_task", broker_down)
        with pytest.raises(ConnectionError):
            send_unless_pending(ROUTE_ORDER_TASK, [1], pending_seconds=30)
    assert queued(ROUTE_ORDER_TASK) == []

    assert send_unless_pending(ROUTE_ORDER_TASK, [2], pending_seconds=30) is True
    assert send_unless_pending(ROUTE_ORDER_TASK, [3], pending_seconds=30) is False
    assert queued(ROUTE_ORDER_TASK) == [[2]]


def test_a_lost_message_holds_up_the_next_one_for_its_pending_seconds_at_most(
    settings, empty_queue
):
    settings.ROUTING_PENDING_SECONDS = 1
    shop = new_shop()  # made beforehand: the second order must come well within the second
    (first,) = place_orders(1, shop)
    celery_app.control.purge()  # its message is lost; its flag stays until it expires
    (second,) = place_orders(1, shop)
    assert queued(ROUTE_ORDER_TASK) == []  # still stands for the lost one

    time.sleep(1.2)
    (third,) = place_orders(1, shop)
    assert queued(ROUTE_ORDER_TASK) == [[third.pk]]
    assert route_order(third.pk) == 3  # and it takes the two left waiting with it
    routed = Order.objects.filter(pk__in=[first.pk, second.pk, third.pk])
    assert set(routed.values_list("status", flat=True)) == {OrderStatus.CONFIRMED}
