"""Real concurrent transactions against the real PostgreSQL: nothing oversells, nothing
deadlocks, a cancel gives stock back once, and the row lock comes before the write."""

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

import listings.services
import orders.services
from listings.models import Listing
from orders.models import Notification, Order, OrderLine, OrderStatus
from tests.factories import BuyerFactory, FarmerFactory, create_listing, place_order

pytestmark = pytest.mark.django_db(transaction=True)
ORDERS = "/api/v1/orders/"
THREADS = 32  # concurrent connections; PostgreSQL allows 100 by default


def quantity(listing):
    return Listing.objects.get(pk=listing.pk).quantity_available


def token(user):
    return str(RefreshToken.for_user(user).access_token)


def run_concurrently(calls):
    """Run the calls on THREADS threads, released together once all are queued."""
    start = threading.Event()

    def run(call):
        try:
            start.wait()
            return call()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(run, call) for call in calls]
        start.set()
        return [future.result() for future in futures]


def post_order(access, listing_ids):
    def call():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        body = {
            "lines": [{"listing": pk, "quantity": "1"} for pk in listing_ids],
            "delivery_method": "home",
            "payment_method": "cod",
        }
        return client.post(ORDERS, body, format="json").status_code

    return call


def test_200_buyers_race_for_50_units():
    listing = create_listing(quantity_available=Decimal("50"))
    buyers = [token(BuyerFactory()) for _ in range(200)]
    codes = Counter(run_concurrently([post_order(t, [listing.pk]) for t in buyers]))
    assert codes == {201: 50, 409: 150}
    listing.refresh_from_db()
    assert listing.quantity_available == Decimal("0.000")
    assert listing.status == "sold_out"
    assert Order.objects.count() == 50
    assert OrderLine.objects.count() == 50


def test_50_carts_with_the_same_listings_in_shuffled_order_never_deadlock():
    items = [create_listing(quantity_available=Decimal("1000")) for _ in range(3)]
    calls = []
    for _ in range(50):
        ids = [x.pk for x in items]
        random.shuffle(ids)
        calls.append(post_order(token(BuyerFactory()), ids))
    codes = Counter(run_concurrently(calls))
    assert codes == {201: 50}  # a deadlock would surface as a 500
    assert [Listing.objects.get(pk=x.pk).quantity_available for x in items] == [Decimal("950")] * 3


def keyed_order(access, listing_ids, key, quantity="1"):
    def call():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        body = {
            "lines": [{"listing": pk, "quantity": quantity} for pk in listing_ids],
            "delivery_method": "home",
            "payment_method": "cod",
        }
        answer = client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        return answer.status_code, answer.get("Idempotent-Replayed"), answer.content

    return call


def test_twenty_placements_with_one_key_at_once_make_one_order():
    """One buyer's app retrying hard: exactly one order and one stock decrement; every
    other request replays its answer byte for byte or is told the first still runs."""
    listing = create_listing(quantity_available=Decimal("50"))
    buyer = BuyerFactory()
    answers = run_concurrently([keyed_order(token(buyer), [listing.pk], "k1")] * 20)

    first = [a for a in answers if a[:2] == (201, None)]
    assert len(first) == 1
    others = Counter(a[:2] for a in answers if a not in first)
    assert set(others) <= {(201, "true"), (409, None)}
    assert all(a[2] == first[0][2] for a in answers if a[:2] == (201, "true"))
    assert Order.objects.count() == 1
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("49.000")

    # The same key with another body: 422, and still one order. Another buyer's same key:
    # their own order, not the first buyer's answer.
    changed = keyed_order(token(buyer), [listing.pk], "k1", quantity="2")()
    assert changed[0] == 422
    other = keyed_order(token(BuyerFactory()), [listing.pk], "k1")()
    assert (other[0], other[1]) == (201, None)
    assert other[2] != first[0][2]
    assert Order.objects.count() == 2
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("48.000")


def test_two_cancels_at_once_give_stock_back_exactly_once():
    buyer = BuyerFactory()
    listing = create_listing(quantity_available=Decimal("10"))
    order = place_order(buyer, (listing, 4))
    access = token(buyer)

    def cancel():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        return client.post(f"{ORDERS}{order.pk}/cancel/", format="json").status_code

    assert run_concurrently([cancel, cancel]) == [200, 200]
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("10.000")
    assert Order.objects.get().status == OrderStatus.CANCELLED
    assert order.events.filter(to_status=OrderStatus.CANCELLED).count() == 1


def test_the_lock_is_taken_before_the_stock_is_written():
    listing = create_listing()
    buyer = BuyerFactory()
    with CaptureQueriesContext(connection) as queries:
        place_order(buyer, (listing, 1))
    sql = [q["sql"] for q in queries.captured_queries]
    table = '"listings_listing"'
    lock = next(i for i, s in enumerate(sql) if table in s and "FOR UPDATE" in s)
    write = next(i for i, s in enumerate(sql) if s.startswith(f"UPDATE {table}"))
    assert lock < write
    assert 'FOR UPDATE OF "listings_listing"' in sql[lock]
    assert "ORDER BY" in sql[lock]


def test_negative_control_without_the_lock_the_race_oversells(monkeypatch):
    """Proves the race test above can fail: with the row lock taken out (and a short pause
    between reading and writing stock), concurrent buyers oversell."""
    listing = create_listing(quantity_available=Decimal("10"))
    monkeypatch.setattr(
        orders.services,
        "listings_for_update",
        lambda ids: Listing.objects.filter(pk__in=ids).order_by("pk"),
    )
    real_take = listings.services.listings_take_stock

    def slow_take(**kwargs):
        time.sleep(0.05)
        return real_take(**kwargs)

    monkeypatch.setattr(orders.services, "listings_take_stock", slow_take)
    buyers = [token(BuyerFactory()) for _ in range(20)]
    codes = Counter(run_concurrently([post_order(t, [listing.pk]) for t in buyers]))
    taken = Decimal("10") - Listing.objects.get(pk=listing.pk).quantity_available
    assert codes[201] > taken  # more orders than units taken: an oversell


def post_as(user, url, body):
    access = token(user)

    def call():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        answer = client.post(url, body, format="json")
        return answer.status_code, answer.json().get("code")

    return call


def two_farmers_order():
    """2 of farmer A's listing and 3 of farmer B's (10 each in stock), cash on delivery."""
    buyer, farmer_a, farmer_b = BuyerFactory(), FarmerFactory(), FarmerFactory()
    a = create_listing(farmer_a, quantity_available=Decimal("10"))
    b = create_listing(farmer_b, quantity_available=Decimal("10"))
    order = place_order(buyer, (a, 2), (b, 3))
    return order, buyer, (farmer_a, a), (farmer_b, b)


def told(order):
    notices = Notification.objects.filter(order=order).exclude(kind="order_placed")
    return Counter(notices.values_list("user_id", "kind"))


def test_a_farmer_rejecting_their_line_while_the_buyer_cancels_gives_each_line_back_once():
    """Either the rejection comes first (the cancel calls off the other line) or the cancel
    does (the rejection finds its line cancelled: 409 line_not_active); each listing gets
    its stock back once, the order is cancelled once, and each person is told once."""
    outcomes = set()
    for _ in range(4):
        order, buyer, (farmer_a, a), (farmer_b, b) = two_farmers_order()
        line_a = order.lines.get(farmer=farmer_a)
        rejected, cancelled = run_concurrently(
            [
                post_as(farmer_a, f"{ORDERS}{order.pk}/lines/{line_a.pk}/reject/", {"reason": "x"}),
                post_as(buyer, f"{ORDERS}{order.pk}/cancel/", {}),
            ]
        )
        assert cancelled == (200, None)
        assert [quantity(a), quantity(b)] == [Decimal("10.000")] * 2
        assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
        assert order.events.filter(to_status=OrderStatus.CANCELLED).count() == 1
        if rejected == (200, None):  # the rejection first: farmer A knows already
            expected = {(buyer.pk, "line_rejected"): 1, (buyer.pk, "order_cancelled"): 1}
        else:
            assert rejected == (409, "line_not_active")
            expected = {(buyer.pk, "order_cancelled"): 1, (farmer_a.pk, "order_cancelled"): 1}
        assert told(order) == {**expected, (farmer_b.pk, "order_cancelled"): 1}
        outcomes.add(rejected)
    assert outcomes <= {(200, None), (409, "line_not_active")}


def test_two_farmers_rejecting_the_last_two_lines_at_once_cancel_the_order_once():
    """The second rejection to take the order's lock finds no line left and cancels the
    order, naming its farmer; each line's stock comes back once."""
    for _ in range(4):
        order, buyer, (farmer_a, a), (farmer_b, b) = two_farmers_order()
        line_a, line_b = order.lines.get(farmer=farmer_a), order.lines.get(farmer=farmer_b)
        answers = run_concurrently(
            [
                post_as(farmer, f"{ORDERS}{order.pk}/lines/{line.pk}/reject/", {"reason": "x"})
                for farmer, line in ((farmer_a, line_a), (farmer_b, line_b))
            ]
        )
        assert answers == [(200, None), (200, None)]
        assert [quantity(a), quantity(b)] == [Decimal("10.000")] * 2
        assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
        (cancel,) = order.events.filter(to_status=OrderStatus.CANCELLED)
        assert cancel.farmer_id in (farmer_a.pk, farmer_b.pk)
        assert (cancel.actor_id, cancel.reason) == (cancel.farmer_id, "last line rejected: x")
        assert told(order) == {(buyer.pk, "line_rejected"): 1, (buyer.pk, "order_cancelled"): 1}
