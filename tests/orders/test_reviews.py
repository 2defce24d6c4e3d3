"""Reviews: once delivered, one per order, 1 to 5 (by the database too), and the farmers'
rating on their public profile."""

import pytest
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from orders import services
from orders.models import Order, OrderStatus, Review
from tests.factories import BuyerFactory, FarmerFactory, create_listing, place_order

pytestmark = pytest.mark.django_db
ORDERS = "/api/v1/orders/"
DELIVERY = (OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED)


def move(order, *statuses):
    with transaction.atomic():
        locked = services.order_lock(order.pk)
        for status in statuses:
            services.order_transition(order=locked, to_status=status)


def review_url(order):
    return f"{ORDERS}{order.pk}/review/"


def profile(api, farmer):
    data = api.get(f"/api/v1/farmers/{farmer.pk}/").json()
    return data["rating"], data["review_count"]


def test_a_delivered_order_is_reviewed_once_and_counts_for_each_of_its_farmers(api, client_for):
    buyer, farmer_a, farmer_b = BuyerFactory(), FarmerFactory(), FarmerFactory()
    order = place_order(
        buyer, create_listing(farmer_a), create_listing(farmer_a), create_listing(farmer_b)
    )
    move(order, *DELIVERY)

    response = client_for(buyer).post(
        review_url(order), {"rating": 4, "comment": " 很新鲜 "}, format="json"
    )

    assert response.status_code == 201, response.json()
    review = Review.objects.get()
    assert response.json() == {
        "id": review.pk,
        "order": order.pk,
        "buyer": buyer.pk,
        "rating": 4,
        "comment": "很新鲜",
        "created_at": response.json()["created_at"],
    }
    # farmer_a has two lines in the order: the review still counts once.
    assert profile(api, farmer_a) == ("4.00", 1)
    assert profile(api, farmer_b) == ("4.00", 1)

    second = place_order(buyer, create_listing(farmer_a))
    move(second, *DELIVERY)
    client_for(buyer).post(review_url(second), {"rating": 5}, format="json")
    assert profile(api, farmer_a) == ("4.50", 2)
    assert profile(api, farmer_b) == ("4.00", 1)


def test_the_order_shows_its_review_once_given(client_for, django_assert_num_queries):
    buyer, listing = BuyerFactory(), create_listing()
    order = place_order(buyer, listing)
    move(order, *DELIVERY)
    url = f"{ORDERS}{order.pk}/"
    assert client_for(buyer).get(url).json()["review"] is None

    client_for(buyer).post(review_url(order), {"rating": 5, "comment": "好吃"}, format="json")

    review = Review.objects.get()
    expected = {"rating": 5, "comment": "好吃", "created_at": review.created_at}
    for viewer in (buyer, listing.farmer):
        client = client_for(viewer)
        with django_assert_num_queries(5):  # user, order (its review joined), 3 prefetches
            seen = client.get(url).json()["review"]
        seen["created_at"] = parse_datetime(seen["created_at"])
        assert seen == expected
    listed = client_for(buyer).get(ORDERS).json()["results"]
    assert [o["review"]["rating"] for o in listed] == [5]


def test_the_average_is_rounded_to_two_decimals(api, client_for):
    buyer, farmer = BuyerFactory(), FarmerFactory()
    for rating in (5, 4, 4):
        order = place_order(buyer, create_listing(farmer))
        move(order, *DELIVERY)
        assert client_for(buyer).post(review_url(order), {"rating": rating}).status_code == 201
    assert profile(api, farmer) == ("4.33", 3)


def test_a_farmer_whose_line_was_rejected_is_not_rated_for_the_order(api, client_for):
    buyer, kept, rejecting = BuyerFactory(), FarmerFactory(), FarmerFactory()
    order = place_order(buyer, create_listing(kept), create_listing(rejecting))
    line = order.lines.get(farmer=rejecting)
    services.order_line_reject(order_id=order.pk, line_id=line.pk, farmer=rejecting, reason="x")
    move(order, *DELIVERY)

    client_for(buyer).post(review_url(order), {"rating": 2}, format="json")

    assert profile(api, kept) == ("2.00", 1)
    assert profile(api, rejecting) == (None, 0)


def test_a_partially_delivered_order_may_be_reviewed(client_for):
    buyer = BuyerFactory()
    order = place_order(buyer, create_listing())
    move(order, OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT, OrderStatus.PARTIALLY_DELIVERED)
    assert client_for(buyer).post(review_url(order), {"rating": 3}).status_code == 201


@pytest.mark.parametrize(
    "statuses",
    [(), (OrderStatus.CONFIRMED,), (OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT)],
    ids=["placed", "confirmed", "in_transit"],
)
def test_not_before_delivery_and_nothing_is_stored(client_for, statuses):
    buyer = BuyerFactory()
    order = place_order(buyer, create_listing())
    move(order, *statuses)

    response = client_for(buyer).post(review_url(order), {"rating": 5}, format="json")

    assert response.status_code == 409
    problem = response.json()
    assert (problem["status"], problem["code"]) == (409, "order_not_delivered")
    assert problem["order_status"] == Order.objects.get(pk=order.pk).status
    assert Review.objects.count() == 0


def test_the_same_review_sent_again_is_answered_as_the_first(client_for):
    """The phone lost the 201 and sends the same review again (no key): no failure to show
    for a review that was saved, and still one review."""
    buyer = BuyerFactory()
    order = place_order(buyer, create_listing())
    move(order, *DELIVERY)
    client = client_for(buyer)
    body = {"rating": 4, "comment": "很新鲜 "}
    first = client.post(review_url(order), body, format="json")

    again = client.post(review_url(order), body, format="json")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert list(Review.objects.values_list("rating", "comment")) == [(4, "很新鲜")]


def test_a_second_review_is_refused_and_the_first_stays(client_for):
    buyer = BuyerFactory()
    order = place_order(buyer, create_listing())
    move(order, *DELIVERY)
    client = client_for(buyer)
    assert client.post(review_url(order), {"rating": 5}, format="json").status_code == 201

    again = client.post(review_url(order), {"rating": 1, "comment": "改主意了"}, format="json")

    assert again.status_code == 409
    assert again.json()["code"] == "already_reviewed"
    assert list(Review.objects.values_list("rating", "comment")) == [(5, "")]


@pytest.mark.parametrize("rating", [0, 6, "", None])
def test_a_rating_outside_one_to_five_is_400(client_for, rating):
    buyer = BuyerFactory()
    order = place_order(buyer, create_listing())
    move(order, *DELIVERY)

    response = client_for(buyer).post(review_url(order), {"rating": rating}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "rating"
    assert Review.objects.count() == 0


def test_only_the_orders_buyer_reviews(client_for):
    farmer = FarmerFactory()
    order = place_order(BuyerFactory(), create_listing(farmer))
    move(order, *DELIVERY)

    stranger = client_for(BuyerFactory()).post(review_url(order), {"rating": 5}, format="json")
    the_farmer = client_for(farmer).post(review_url(order), {"rating": 5}, format="json")

    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_found")
    assert (the_farmer.status_code, the_farmer.json()["code"]) == (403, "permission_denied")
    assert Review.objects.count() == 0
    with pytest.raises(services.DomainError) as refused:
        services.order_review(order_id=order.pk, buyer=BuyerFactory(), rating=5)
    assert refused.value.status_code == 404


def test_the_database_refuses_a_rating_of_six():
    buyer = BuyerFactory()
    order = place_order(buyer, create_listing())
    move(order, *DELIVERY)
    review = services.order_review(order_id=order.pk, buyer=buyer, rating=5)

    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.filter(pk=review.pk).update(rating=6)

    review.refresh_from_db()
    assert review.rating == 5
    # Through the service too: the check violation stays an error, not "already reviewed".
    other = place_order(buyer, create_listing())
    move(other, *DELIVERY)
    with pytest.raises(IntegrityError):
        services.order_review(order_id=other.pk, buyer=buyer, rating=6)


def test_the_profile_is_one_query(api, client_for, django_assert_num_queries):
    buyer, farmer = BuyerFactory(), FarmerFactory()
    for _ in range(3):
        order = place_order(buyer, create_listing(farmer))
        move(order, *DELIVERY)
        client_for(buyer).post(review_url(order), {"rating": 5}, format="json")
    with django_assert_num_queries(1):
        response = api.get(f"/api/v1/farmers/{farmer.pk}/")
    assert (response.json()["rating"], response.json()["review_count"]) == ("5.00", 3)
