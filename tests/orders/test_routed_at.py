"""An order's `routed_at`: set with its shipments, filled in for orders routed before the
column, and what staff see by it (orders.selectors.order_visible_to)."""

import json
import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Min

from logistics.models import Shipment, ShipmentStatus
from logistics.services.routing import order_route
from marketplace.accounts.services import user_update_profile
from orders import services
from orders.models import Order, OrderStatus
from orders.selectors import order_visible_to
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


def test_an_order_not_routed_is_no_longer_seen_by_the_center_of_a_farmer_who_turned_it_down(
    client_for, centers
):
    """Before routing, a center sees an order by the goods of its villages' farmers in it:
    once the north farmer turned their line down, the north has nothing to do with the
    order (a line of the east farmer keeps it going to the south), and no longer sees its
    buyer, lines and totals; the south, which delivers it, and the east, whose goods it
    holds, still do."""
    buyer = BuyerFactory(village=VillageFactory(service_center=centers["south"]))
    north = create_listing(FarmerFactory(village=VillageFactory(service_center=centers["north"])))
    east = create_listing(FarmerFactory(village=VillageFactory(service_center=centers["east"])))
    order = place_order(buyer, north, east)
    line = order.lines.get(listing=north)
    services.order_line_reject(
        order_id=order.pk, line_id=line.pk, farmer=north.farmer, reason="霜冻"
    )
    assert Order.objects.values_list("status", "routed_at").get(pk=order.pk) == (
        OrderStatus.PLACED,
        None,
    )

    assert seen_by(client_for(StaffFactory(service_center=centers["north"])), order) == (404, [])
    for name in ("south", "east"):
        staff = client_for(StaffFactory(service_center=centers[name]))
        assert seen_by(staff, order) == (200, [order.pk])


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


def copies(table: str, row_id: int, column: str, values: list[int]) -> list[int]:
    """Copies of a row made by SQL, one per value of `values` for its `column`, the other
    columns as the row has them; their ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
            [table],
        )
        names = [name for (name,) in cursor.fetchall() if name != "id"]
        picked = ["value" if name == column else name for name in names]
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(picked)} "  # noqa: S608 - the table's own columns
            f"FROM {table}, unnest(%s::bigint[]) AS value WHERE id = %s RETURNING id",
            [values, row_id],
        )
        return [new_id for (new_id,) in cursor.fetchall()]


def scans_repeated_per_row(plan: dict) -> list[str]:
    """The tables a plan (EXPLAIN's JSON) reads whole inside a subplan that runs again for
    every outer row, one not hashed: a cost that grows as the product of two tables."""
    hashed = set(re.findall(r"hashed (SubPlan \d+)", json.dumps(plan)))

    def scans(node: dict, repeated: bool) -> list[str]:
        if node.get("Parent Relationship") == "SubPlan":
            repeated = node["Subplan Name"] not in hashed
        found = [node["Relation Name"]] if repeated and node["Node Type"] == "Seq Scan" else []
        for child in node.get("Plans", []):
            found += scans(child, repeated)
        return found

    return scans(plan, repeated=False)


def test_a_busy_centers_list_never_scans_its_shipments_once_per_order(centers):
    """Once a center's shipments outgrow work_mem, `id IN (its shipments)` inside the
    list's OR is no longer hashed, and PostgreSQL scans them again for every order (at
    200k orders the list never came back). Here 10,000 routed orders and a work_mem too
    small for their shipments: the list still reads each table once."""
    order, _ = order_from_north_to_south(centers)
    order_route(order_id=order.pk)
    orders = copies("orders_order", order.pk, "buyer_id", [order.buyer_id] * 9999)
    copies("logistics_shipment", Shipment.objects.get(order=order).pk, "order_id", orders)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")
        cursor.execute("ANALYZE logistics_shipment")
    visible = order_visible_to(StaffFactory(service_center=centers["south"]))
    sql, params = visible.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64kB'")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        ((plan,),) = cursor.fetchall()

    assert scans_repeated_per_row(plan[0]["Plan"]) == []
    assert visible.count() == 10000
