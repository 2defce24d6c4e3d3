"""An order's `routed_at`: set with its shipments, filled in for orders routed before the
column, and what staff see by it (orders.selectors.order_visible_to)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Min

from logistics.models import Shipment, ShipmentStatus
from logistics.services.routing import order_route
from marketplace.accounts.services import user_update_profile
from orders import services
from orders.models import Order, OrderStatus
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
)

pytestmark = pytest.mark.django_db
ORDERS = "/api/v1/orders/"


def seen_by(client, order) -> tuple[int, list[int]]:
    """The order's page's status and the ids of the staff list."""
    listed = [o["id"] for o in client.get(ORDERS).json()["results"]]
    return client.get(f"{ORDERS}{order.pk}/").status_code, listed


@pytest.fixture
def centers():
    """North, where the farmer lives; south, where the buyer does; east, neither."""
    return {name: ServiceCenterFactory() for name in ("north", "south", "east")}


def order_from_north_to_south(centers):
    buyer = BuyerFactory(village=VillageFactory(service_center=centers["south"]))
    farmer = FarmerFactory(village=VillageFactory(service_center=centers["north"]))
    return place_order(buyer, create_listing(farmer)), farmer


@pytest.mark.parametrize(
    "statuses",
    [
        (OrderStatus.CONFIRMED,),
        (OrderStatus.CONFIRMED, OrderStatus.SCHEDULED),
        (OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT),
        (OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED),
        (OrderStatus.CANCELLED,),
    ],
    ids=lambda statuses: statuses[-1],
)
def test_an_order_past_placed_without_shipments_is_seen_by_the_centers_of_its_villages(
    client_for, centers, statuses
):
    """Status says nothing of shipments: an order moved on without routing (as the status
    table allows: tests of refunds, reviews and the admin do so) has none, so its farmer's
    and its buyer's centers see it, by their villages; another center does not."""
    order, _ = order_from_north_to_south(centers)
    for status in statuses:
        services.order_transition(order=services.order_lock(order.pk), to_status=status)
    assert Order.objects.values_list("status", "routed_at").get(pk=order.pk) == (statuses[-1], None)
    assert not Shipment.objects.exists()

    for name in ("north", "south"):
        staff = client_for(StaffFactory(service_center=centers[name]))
        assert seen_by(staff, order) == (200, [order.pk])
    assert seen_by(client_for(StaffFactory(service_center=centers["east"])), order) == (404, [])


def test_a_routed_order_cancelled_and_its_farmer_moved_is_seen_by_its_shipments_centers(
    client_for, centers
):
    """Cancelled after routing, an order keeps its shipments (cancelled) and so its mark:
    the centers it was routed through see it; the one its farmer moved to since does not."""
    order, farmer = order_from_north_to_south(centers)
    order_route(order_id=order.pk)
    services.order_cancel(order_id=order.pk, actor=order.buyer)
    user_update_profile(user=farmer, village=VillageFactory(service_center=centers["east"]))
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.routed_at is not None
    assert list(Shipment.objects.values_list("status", flat=True)) == [ShipmentStatus.CANCELLED]

    for name in ("north", "south"):
        staff = client_for(StaffFactory(service_center=centers[name]))
        assert seen_by(staff, order) == (200, [order.pk])
    assert seen_by(client_for(StaffFactory(service_center=centers["east"])), order) == (404, [])


@pytest.mark.django_db(transaction=True)
def test_the_migration_marks_the_orders_routed_before_it_and_no_other(centers):
    """Orders routed before the column (this one since cancelled) get the time of their
    first shipment; orders never routed (placed, cancelled before routing) stay unmarked."""
    routed, _ = order_from_north_to_south(centers)
    routed_then_cancelled, _ = order_from_north_to_south(centers)
    placed, _ = order_from_north_to_south(centers)
    cancelled_first, _ = order_from_north_to_south(centers)
    for order in (routed, routed_then_cancelled):
        order_route(order_id=order.pk)
    services.order_cancel(order_id=routed_then_cancelled.pk, actor=routed_then_cancelled.buyer)
    services.order_cancel(order_id=cancelled_first.pk, actor=cancelled_first.buyer)
    first_shipment = dict(
        Shipment.objects.values("order_id")
        .annotate(made=Min("created_at"))
        .values_list("order_id", "made")
    )

    executor = MigrationExecutor(connection)
    executor.migrate([("orders", "0012_order_newest")])  # the column goes, the rows stay
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert dict(Order.objects.values_list("pk", "routed_at")) == {
        routed.pk: first_shipment[routed.pk],
        routed_then_cancelled.pk: first_shipment[routed_then_cancelled.pk],
        placed.pk: None,
        cancelled_first.pk: None,
    }
