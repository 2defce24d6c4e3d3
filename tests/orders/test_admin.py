"""The orders admin: its pages render, nothing is edited in it, and its cancel action goes
through order_cancel (restock, event, notifications) and reports what it refuses."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from listings.models import Listing
from marketplace.accounts.models import User
from orders import services
from orders.admin import OPERATOR_CANCEL_REASON
from orders.models import LineStatus, Notification, OrderEvent, OrderStatus, Review
from tests.factories import BuyerFactory, create_listing

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


def place(buyer, listing, quantity="2"):
    return services.order_place(
        buyer=buyer,
        lines=[services.LineRequest(listing_id=listing.pk, quantity=Decimal(quantity))],
        delivery_method="home",
        payment_method="cod",
    )


def cancel(client: Client, *orders):
    return client.post(
        CHANGELIST,
        {"action": "cancel", "_selected_action": [order.pk for order in orders]},
        follow=True,
    )


def test_the_pages_render(operator):
    buyer = BuyerFactory(name="王五")
    order = place(buyer, create_listing())
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
    for model in ("notification", "review", "paymentevent"):
        assert operator.get(f"/admin/orders/{model}/").status_code == 200
    notification = Notification.objects.filter(order=order).first()
    assert operator.get(f"/admin/orders/notification/{notification.pk}/change/").status_code == 200


def test_nothing_is_saved_from_the_change_page(operator):
    order = place(BuyerFactory(), create_listing())
    response = operator.post(f"{CHANGELIST}{order.pk}/change/", {"status": "delivered"})
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == OrderStatus.PLACED


def test_the_cancel_action_cancels_and_restocks(operator, operator_user):
    listing = create_listing(quantity_available=Decimal("10"))
    buyer = BuyerFactory()
    order = place(buyer, listing, "4")
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
    on_the_road, still_placed = place(BuyerFactory(), listing), place(BuyerFactory(), listing)
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
    order = place(buyer, create_listing())
    review = Review.objects.create(order=order, buyer=buyer, rating=5)
    response = operator.post(f"/admin/orders/review/{review.pk}/change/", {"rating": 1})
    assert response.status_code == 403
    review.refresh_from_db()
    assert review.rating == 5
    assert operator.get("/admin/orders/review/add/").status_code == 403
