"""An order's events as each viewer sees them: a farmer sees every status change, but not
who made one that is another farmer's doing, nor why (their rejected line and its reason)."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from orders import services
from orders.models import LineStatus, Order, OrderEvent, OrderStatus
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
)

ORDERS = "/api/v1/orders/"


def events_of(answer: dict) -> list[tuple]:
    return [(e["from_status"], e["to_status"], e["actor"], e["reason"]) for e in answer["events"]]


@pytest.fixture
def two_farmers_rejected(client_for):
    """Farmer A rejects their line, then farmer B the last one, which cancels the order."""
    center = ServiceCenterFactory()
    buyer = BuyerFactory(village=VillageFactory(service_center=center))
    farmer_a = FarmerFactory(village=VillageFactory(service_center=center))
    farmer_b = FarmerFactory(village=VillageFactory(service_center=center))
    a, b = create_listing(farmer_a), create_listing(farmer_b)
    order = place_order(buyer, (a, 1), (b, 2))
    reasons = ((farmer_a, a, "下雨没摘"), (farmer_b, b, "家里有事，138-0000-1111"))
    for farmer, listing, reason in reasons:
        line = order.lines.get(listing=listing)
        answer = client_for(farmer).post(
            f"{ORDERS}{order.pk}/lines/{line.pk}/reject/", {"reason": reason}, format="json"
        )
        assert answer.status_code == 200
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    return {
        "order": order,
        "buyer": buyer,
        "farmer_a": farmer_a,
        "farmer_b": farmer_b,
        "staff": StaffFactory(service_center=center),
    }


@pytest.mark.django_db
def test_a_farmer_sees_another_farmers_cancel_without_its_actor_and_reason(
    client_for, two_farmers_rejected
):
    world = two_farmers_rejected
    order, buyer, farmer_b = world["order"], world["buyer"], world["farmer_b"]
    url = f"{ORDERS}{order.pk}/"
    full = [
        ("", "placed", buyer.pk, "placed"),
        ("placed", "cancelled", farmer_b.pk, "last line rejected: 家里有事，138-0000-1111"),
    ]
    seen_by_a = client_for(world["farmer_a"]).get(url).json()
    assert events_of(seen_by_a) == [
        ("", "placed", buyer.pk, "placed"),
        ("placed", "cancelled", None, ""),
    ]
    # their own line, rejected for their own reason, is theirs to see
    assert [(x["status"], x["reject_reason"]) for x in seen_by_a["lines"]] == [
        ("rejected", "下雨没摘")
    ]
    listed_for_a = client_for(world["farmer_a"]).get(ORDERS).json()["results"]
    assert [events_of(x) for x in listed_for_a] == [events_of(seen_by_a)]
    # the farmer whose doing it was, the buyer and staff see it all, as before
    for viewer in (farmer_b, buyer, world["staff"]):
        assert events_of(client_for(viewer).get(url).json()) == full
    assert list(OrderEvent.objects.filter(order=order).values_list("farmer", flat=True)) == [
        None,
        farmer_b.pk,
    ]


@pytest.mark.django_db
def test_a_cancel_by_the_buyer_or_staff_shows_every_farmer_who_and_why(client_for):
    buyer = BuyerFactory()
    a, b = create_listing(), create_listing()
    order = place_order(buyer, (a, 1), (b, 1))
    services.order_cancel(order_id=order.pk, actor=buyer, reason="买多了")
    for farmer in (a.farmer, b.farmer):
        seen = client_for(farmer).get(f"{ORDERS}{order.pk}/").json()
        assert events_of(seen)[-1] == ("placed", "cancelled", buyer.pk, "买多了")
    assert OrderEvent.objects.filter(farmer__isnull=False).count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_migration_names_the_farmer_of_each_cancel_by_a_last_rejected_line():
    """Events written before the column: a cancel by a farmer's last rejected line is theirs;
    one by the buyer, even with a reason that reads the same, is nobody's."""
    buyer, farmer = BuyerFactory(), FarmerFactory()
    listing = create_listing(farmer)
    order = place_order(buyer, (listing, 1), delivery_method="pickup")
    order.lines.update(status=LineStatus.REJECTED)
    executor = MigrationExecutor(connection)
    executor.migrate([("orders", "0005_notification_goods_not_delivered")])
    try:
        old_event = executor.loader.project_state(
            ("orders", "0005_notification_goods_not_delivered")
        ).apps.get_model("orders", "OrderEvent")
        written = [
            old_event.objects.create(
                order_id=order.pk,
                from_status=from_status,
                to_status=to_status,
                actor_id=actor.pk,
                reason=reason,
            ).pk
            for from_status, to_status, actor, reason in (
                ("placed", "cancelled", farmer, "last line rejected: 卖完了"),
                ("placed", "cancelled", buyer, "last line rejected: 开玩笑"),
                ("placed", "confirmed", farmer, "routed"),
            )
        ]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    farmers = dict(OrderEvent.objects.filter(pk__in=written).values_list("pk", "farmer"))
    assert [farmers[pk] for pk in written] == [farmer.pk, None, None]
    assert OrderEvent.objects.get(pk=written[0]).reason == "last line rejected: 卖完了"


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_pickup_orders_placed_before_off_their_buyers_home():
    """Pickup orders placed before order_place stopped copying the buyer's exact place held
    it, and their farmers read it: the migration gives them their village's point. Orders
    brought home keep the buyer's place (the driver needs it)."""
    buyer = BuyerFactory(lat="30.123456", lng="110.654321")
    listing = create_listing(FarmerFactory(village=buyer.village))
    pickup = place_order(buyer, (listing, 1), delivery_method="pickup")
    home = place_order(buyer, (listing, 1), delivery_method="home")
    Order.objects.filter(pk=pickup.pk).update(delivery_lat=buyer.lat, delivery_lng=buyer.lng)
    executor = MigrationExecutor(connection)
    executor.migrate([("orders", "0017_notification_given_up")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    points = dict(Order.objects.values_list("pk", "delivery_lat"))
    village = buyer.village
    assert Order.objects.filter(pk=pickup.pk).values_list("delivery_lat", "delivery_lng").get() == (
        village.lat,
        village.lng,
    )
    assert points[home.pk] == Decimal("30.123456")
