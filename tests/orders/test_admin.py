"""The orders admin: its pages render, nothing is edited in it, and its cancel action goes
through order_cancel (restock, event, notifications) and reports what it refuses."""

import re
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from listings.models import Listing
from marketplace.accounts.models import User
from orders import services
from orders.admin import OPERATOR_CANCEL_REASON
from orders.models import LineStatus, Notification, OrderEvent, OrderStatus, Review
from tests.factories import BuyerFactory, create_listing, place_order, provider_notice

CHANGELIST = "/admin/orders/order/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_user() -> User:
    return User.objects.create_superuser(
        phone="+8613000000001", password="an-operator-passphrase", name="op"
    )


@pytest.fixture
def operator(operator_user) -> Client:
    client = Client()
    client.force_login(operator_user)  # django-axes guards the login form
    return client


def cancel(client: Client, *orders):
    return client.post(
        CHANGELIST,
        {"action": "cancel", "_selected_action": [order.pk for order in orders]},
        follow=True,
    )


def test_the_pages_render(operator):
    buyer = BuyerFactory(name="王五")
    order = place_order(buyer, (create_listing(), 2))
    for query in ({}, {"q": str(order.pk)}, {"q": "王五"}, {"status__exact": "placed"}):
        page = operator.get(CHANGELIST, query)
        assert page.status_code == 200
        assert f"{CHANGELIST}{order.pk}/change/".encode() in page.content, query
    nobody = operator.get(CHANGELIST, {"q": "nobody"})
    assert f"{CHANGELIST}{order.pk}/change/".encode() not in nobody.content
    change = operator.get(f"{CHANGELIST}{order.pk}/change/")
    assert change.status_code == 200
    assert b'name="status"' not in change.content  # shown, not editable
    assert b'name="_save"' not in change.content
    assert "西红柿" in change.content.decode()  # the lines inline
    assert b"delivery code" not in change.content.lower()  # the buyer's secret, not shown
    assert b"delivery_code" not in change.content
    for model in ("notification", "review", "paymentevent"):
        assert operator.get(f"/admin/orders/{model}/").status_code == 200
    notification = Notification.objects.filter(order=order).first()
    assert operator.get(f"/admin/orders/notification/{notification.pk}/change/").status_code == 200


def test_the_list_cannot_be_filtered_by_the_delivery_code(operator):
    """Else a filter in the URL would tell right guesses from wrong ones, digit by digit."""
    order = place_order(BuyerFactory(), (create_listing(), 2))
    wrong = "000000" if order.delivery_code != "000000" else "111111"
    for lookup in ("delivery_code", "delivery_code__startswith", "delivery_code__regex"):
        for guess in (order.delivery_code, order.delivery_code[0], wrong):
            page = operator.get(CHANGELIST, {"id": order.pk, lookup: guess})
            assert page.status_code == 400, (lookup, guess)
    assert order.pk in [
        o.pk for o in operator.get(CHANGELIST, {"id": order.pk}).context["cl"].result_list
    ]


def test_nothing_is_saved_from_the_change_page(operator):
    order = place_order(BuyerFactory(), (create_listing(), 2))
    response = operator.post(f"{CHANGELIST}{order.pk}/change/", {"status": "delivered"})
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == OrderStatus.PLACED


def test_the_cancel_action_cancels_and_restocks(operator, operator_user):
    listing = create_listing(quantity_available=Decimal("10"))
    buyer = BuyerFactory()
    order = place_order(buyer, (listing, 4))
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("6.000")

    response = cancel(operator, order)

    assert response.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.payment_status) == (OrderStatus.CANCELLED, "not_due")
    assert set(order.lines.values_list("status", flat=True)) == {LineStatus.CANCELLED}
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("10.000")
    event = OrderEvent.objects.filter(order=order).last()
    assert (event.to_status, event.actor_id, event.reason) == (
        OrderStatus.CANCELLED,
        operator_user.pk,
        OPERATOR_CANCEL_REASON,
    )
    assert Notification.objects.filter(order=order, kind="order_cancelled").count() == 2
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["1 order(s) cancelled."]

    again = cancel(operator, order)  # an order already cancelled is not counted again
    assert [str(m) for m in get_messages(again.wsgi_request)] == [
        f"Order {order.pk} was already cancelled."
    ]
    assert OrderEvent.objects.filter(order=order).count() == 2
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("10.000")


def test_a_refused_cancel_is_reported_and_changes_nothing(operator):
    listing = create_listing(quantity_available=Decimal("10"))
    on_the_road = place_order(BuyerFactory(), (listing, 2))
    still_placed = place_order(BuyerFactory(), (listing, 2))
    for status in (OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT):
        services.order_transition(order=services.order_lock(on_the_road.pk), to_status=status)

    response = cancel(operator, on_the_road, still_placed)

    on_the_road.refresh_from_db()
    still_placed.refresh_from_db()
    assert (on_the_road.status, still_placed.status) == (
        OrderStatus.IN_TRANSIT,
        OrderStatus.CANCELLED,
    )
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("8.000")
    reported = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert reported == [
        (
            "error",
            f"Order {on_the_road.pk}: An order that is in_transit can no longer be cancelled.",
        ),
        ("success", "1 order(s) cancelled."),
    ]


def test_records_are_not_editable(operator):
    buyer = BuyerFactory()
    order = place_order(buyer, (create_listing(), 2))
    review = Review.objects.create(order=order, buyer=buyer, rating=5)
    response = operator.post(f"/admin/orders/review/{review.pk}/change/", {"rating": 1})
    assert response.status_code == 403
    review.refresh_from_db()
    assert review.rating == 5
    assert operator.get("/admin/orders/review/add/").status_code == 403


def paid(order, amount):
    """The provider's notice of a payment, recorded as the webhook records it."""
    return provider_notice(order, amount, event_id=f"evt_{order.pk}")


def refund_owed(price="10.00"):
    """A prepaid order (1 × price, picked up: no fee), paid, then cancelled by its farmer
    rejecting its only line: all it cost is owed back, and its cancel names the farmer."""
    listing = create_listing(price=Decimal(price))
    order = place_order(
        BuyerFactory(), (listing, 1), delivery_method="pickup", payment_method="prepaid"
    )
    paid(order, order.total)
    line = order.lines.get()
    services.order_line_reject(
        order_id=order.pk, line_id=line.pk, farmer=listing.farmer, reason="坏了"
    )
    return order, listing.farmer


def changelist_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(CHANGELIST).status_code == 200
    return len(queries)


def refunds_listed(page: str) -> dict[int, str]:
    """The refund due the list shows, by order id."""
    listed = {}
    for row in page.split("<tr")[1:]:
        if '<td class="field-refund_due">' in row:
            order_id = int(row.split(f'href="{CHANGELIST}', 1)[1].split("/", 1)[0])
            listed[order_id] = row.split('<td class="field-refund_due">', 1)[1].split("<", 1)[0]
    return listed


def test_the_list_shows_each_orders_refund_due_in_as_many_queries_for_any_number(operator):
    owed, _farmer = refund_owed("12.50")
    nothing_owed = place_order(BuyerFactory(), (create_listing(), 2))
    page = operator.get(CHANGELIST).content.decode()
    assert "Refund due" in page
    assert refunds_listed(page) == {owed.pk: "12.50", nothing_owed.pk: "0.00"}

    few = changelist_queries(operator)
    for price in ("3.00", "4.00", "5.00"):
        refund_owed(price)
    assert changelist_queries(operator) == few


def change_page(client: Client, order) -> tuple[str, int]:
    """The order's page, its whitespace squeezed, and the queries it took."""
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"{CHANGELIST}{order.pk}/change/")
    assert page.status_code == 200
    return " ".join(page.content.decode().split()), len(queries)


def test_the_page_shows_refund_due_and_whose_lines_an_event_is_about(operator):
    order, farmer = refund_owed("12.50")
    change_page(operator, order)  # once first: the process's first admin page fills caches
    page, queries = change_page(operator, order)
    assert '<label>Refund due:</label> <div class="readonly">12.50</div>' in page
    events = page.split('id="events-group"', 1)[1]
    assert '<th class="column-farmer">Farmer' in events
    farmers = [cell.split("</td>", 1)[0] for cell in events.split('<td class="field-farmer">')[1:]]
    assert farmers == [  # awaiting payment, paid, cancelled by the farmer's rejection
        " <p>-</p> ",
        " <p>-</p> ",
        f' <p><a href="/admin/accounts/user/{farmer.pk}/change/">{farmer}</a></p> ',
    ]
    # A farmer named by every event: no more queries for the page.
    order.events.update(farmer=farmer)
    assert change_page(operator, order)[1] == queries


def test_the_page_shows_the_payments_and_refunds_behind_the_refund_due(operator):
    order, _farmer = refund_owed("12.50")
    provider_notice(order, "10.00", kind="refund.succeeded", event_id="rf_1")
    page, _queries = change_page(operator, order)
    assert '<label>Refund due:</label> <div class="readonly">2.50</div>' in page
    rows = page.split('id="payment_events-group"', 1)[1].split("</table>", 1)[0]
    shown = [
        re.findall(r'<td class="field-(?!received_at)[^"]+"> <p>([^<]*)</p>', row)
        for row in rows.split("<tr")[2:]
    ]
    assert shown == [
        ["payment.succeeded", "12.50", "CNY", "sandbox", f"evt_{order.pk}"],
        ["refund.succeeded", "10.00", "CNY", "sandbox", "rf_1"],
    ]
