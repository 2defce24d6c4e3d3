"""Staff see how to reach an order's buyer (phone, delivery address and place, and the
buyer's note, which may hold either) only at the center delivering it: a center that only
picks up a farmer's goods sees the farmer's side, the fields there and null (the address and
note blank), as a farmer sees an order not confirmed."""

from decimal import Decimal

import pytest

from logistics.services.routing import order_route
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
REACH = ("delivery_address", "delivery_lat", "delivery_lng", "note")
NOTE = "到了打13900002222，狗拴在后院"


def place_order_to(buyer, *listings, routed: bool):
    """An order of one of each listing, delivered home to an exact place."""
    order = place_order(buyer, *listings, note=NOTE)
    order.delivery_address = "柳树湾东头3号"
    order.delivery_lat, order.delivery_lng = Decimal("30.012345"), Decimal("119.654321")
    order.save(update_fields=["delivery_address", "delivery_lat", "delivery_lng"])
    if routed:
        order_route(order_id=order.pk)
    return order


def hidden(seen: dict) -> bool:
    """Whether this view of an order hides how to reach its buyer, keeping the fields."""
    if seen["buyer"]["phone"] is None and [seen[key] for key in REACH] == ["", None, None, ""]:
        return True
    assert "phone" in seen["buyer"]
    return False


def reachable(order) -> list:
    """The buyer's phone, delivery place and note as their own view and the delivering
    center show them."""
    return [order.buyer.phone, order.delivery_address, "30.012345", "119.654321", NOTE]


def shown(seen: dict) -> list:
    return [seen["buyer"]["phone"], *(seen[key] for key in REACH)]


@pytest.fixture
def centers(client_for):
    """North picks up its farmer's goods for buyers of the south, which delivers them (and
    picks up its own farmer's)."""
    north, south = ServiceCenterFactory(), ServiceCenterFactory()
    return {
        "north": north,
        "south": south,
        "north_farm": create_listing(FarmerFactory(village=VillageFactory(service_center=north))),
        "south_farm": create_listing(FarmerFactory(village=VillageFactory(service_center=south))),
        "south_buyer": BuyerFactory(village=VillageFactory(service_center=south)),
        "north_staff": client_for(StaffFactory(service_center=north)),
        "south_staff": client_for(StaffFactory(service_center=south)),
    }


@pytest.mark.parametrize("routed", [True, False])
def test_staff_of_a_center_only_picking_up_do_not_see_how_to_reach_the_buyer(centers, routed):
    order = place_order_to(
        centers["south_buyer"], centers["north_farm"], centers["south_farm"], routed=routed
    )
    url = f"{ORDERS}{order.pk}/"

    picking_up = centers["north_staff"].get(url).json()
    delivering = centers["south_staff"].get(url).json()  # also picks up a farmer's goods

    assert hidden(picking_up)
    assert picking_up["buyer"] == {
        "id": order.buyer_id,
        "name": order.buyer.name,
        "phone": None,
    }
    assert [line["listing"] for line in picking_up["lines"]] == [
        centers["north_farm"].pk,
        centers["south_farm"].pk,
    ]
    assert shown(delivering) == reachable(order)
    [listed] = centers["north_staff"].get(ORDERS).json()["results"]
    assert hidden(listed)
    # goods picked up and delivered by one center: its staff see where they go
    local = place_order_to(centers["south_buyer"], centers["south_farm"], routed=routed)
    assert shown(centers["south_staff"].get(f"{ORDERS}{local.pk}/").json()) == reachable(local)


def test_a_staff_list_of_orders_it_delivers_and_only_picks_up_costs_fixed_queries(
    centers, django_assert_num_queries
):
    """South delivers to its buyers and picks up its farmer's goods for north's buyers:
    its list shows the buyers it delivers to, not the others, whatever the page holds."""
    north_buyer = BuyerFactory(village=VillageFactory(service_center=centers["north"]))
    north_farm, south_farm = centers["north_farm"], centers["south_farm"]
    staff = centers["south_staff"]

    def place_both(routed: bool) -> tuple:
        delivered = place_order_to(centers["south_buyer"], north_farm, routed=routed)
        picked_up = place_order_to(north_buyer, south_farm, north_farm, routed=routed)
        return delivered.pk, picked_up.pk

    orders = [place_both(routed=True), place_both(routed=False)]
    page = {seen["id"]: seen for seen in staff.get(ORDERS).json()["results"]}
    assert [(hidden(page[d]), hidden(page[p])) for d, p in orders] == [(False, True)] * 2

    # user, count, orders, lines, events, shipments, their legs and their events
    with django_assert_num_queries(8):
        staff.get(ORDERS)
    orders += [place_both(routed=True), place_both(routed=False)]
    with django_assert_num_queries(8):
        page = {seen["id"]: seen for seen in staff.get(ORDERS).json()["results"]}
    assert [(hidden(page[d]), hidden(page[p])) for d, p in orders] == [(False, True)] * 4
