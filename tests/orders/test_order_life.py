"""Cancel, reject a line, the status table, and who sees which order."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext

from listings.models import Listing, ListingStatus
from logistics.models import Shipment
from logistics.services.routing import order_route
from marketplace.accounts.services import user_update_profile
from orders import services
from orders.models import LineStatus, Order, OrderEvent, OrderLine, OrderStatus
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
# Where the buyer is and what they wrote with the order (which may say how to reach them):
# a farmer reads them, as the buyer's phone, once the order was confirmed.
REACH = ("delivery_address", "delivery_lat", "delivery_lng", "note")
NOTE = "到了打13900002222，狗拴在后院"


def quantity(listing):
    return Listing.objects.get(pk=listing.pk).quantity_available


def test_buyer_cancels_and_stock_comes_back_once(client_for):
    buyer = BuyerFactory()
    listing = create_listing(quantity_available=Decimal("5"))
    order = place_order(buyer, (listing, 5))
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.SOLD_OUT
    client = client_for(buyer)
    first = client.post(f"{ORDERS}{order.pk}/cancel/", {"reason": "买多了"}, format="json")
    assert first.status_code == 200
    assert (first.json()["status"], first.json()["payment_status"]) == ("cancelled", "not_due")
    again = client.post(f"{ORDERS}{order.pk}/cancel/", format="json")
    assert again.status_code == 200
    assert quantity(listing) == Decimal("5.000")
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.ACTIVE
    events = list(
        OrderEvent.objects.filter(order=order).values_list("from_status", "to_status", "reason")
    )
    assert events == [("", "placed", "placed"), ("placed", "cancelled", "买多了")]
    assert set(order.lines.values_list("status", flat=True)) == {LineStatus.CANCELLED}


def test_no_cancel_once_on_the_road(client_for):
    buyer = BuyerFactory()
    listing = create_listing()
    order = place_order(buyer, (listing, 2))
    for status in (OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT):
        services.order_transition(order=services.order_lock(order.pk), to_status=status)
    response = client_for(buyer).post(f"{ORDERS}{order.pk}/cancel/", format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "cannot_cancel"
    assert quantity(listing) == Decimal("98.000")
    assert Order.objects.get().status == OrderStatus.IN_TRANSIT


def test_the_status_table_refuses_a_jump_and_writes_no_event():
    order = place_order(BuyerFactory(), (create_listing(), 1))
    with pytest.raises(services.ConflictError) as refused:
        services.order_transition(
            order=services.order_lock(order.pk), to_status=OrderStatus.DELIVERED
        )
    assert refused.value.code == "invalid_status_transition"
    assert OrderEvent.objects.count() == 1
    assert Order.objects.get().status == OrderStatus.PLACED


def test_every_status_has_a_row_in_the_table():
    assert set(services.TRANSITIONS) == set(OrderStatus.values)
    for targets in services.TRANSITIONS.values():
        assert targets <= set(OrderStatus.values)


def test_a_farmer_never_learns_where_the_buyer_of_an_order_cancelled_unconfirmed_lives(
    client_for,
):
    buyer, listing = BuyerFactory(), create_listing()
    order = place_order(buyer, (listing, 1), note=NOTE)
    services.order_cancel(order_id=order.pk, actor=buyer)
    seen = client_for(listing.farmer).get(f"{ORDERS}{order.pk}/").json()
    assert seen["status"] == "cancelled"
    assert seen["buyer"]["phone"] is None  # the field is there, empty
    assert [seen[key] for key in REACH] == ["", None, None, ""]


@pytest.mark.parametrize(
    ("a", "b", "before", "after"),
    [
        # two farmers: 5.00 + 2.00 delivery; one left: 5.00
        (("10.00", 2), ("4.00", 3), ("32.00", "7.00", "39.00"), ("20.00", "5.00", "25.00")),
        # free from 99.00, and still free below it: the fee never outweighs the line
        (("97.00", 1), ("3.00", 1), ("100.00", "0.00", "100.00"), ("97.00", "0.00", "97.00")),
    ],
)
def test_farmer_rejects_a_line_total_drops_and_the_order_goes_on(client_for, a, b, before, after):
    (price_a, quantity_a), (price_b, quantity_b) = a, b
    a, b = create_listing(price=Decimal(price_a)), create_listing(price=Decimal(price_b))
    order = place_order(BuyerFactory(), (a, quantity_a), (b, quantity_b))
    assert (order.subtotal, order.delivery_fee, order.total) == tuple(map(Decimal, before))
    line_b = order.lines.get(listing=b)
    response = client_for(b.farmer).post(
        f"{ORDERS}{order.pk}/lines/{line_b.pk}/reject/", {"reason": "下雨没摘"}, format="json"
    )
    assert response.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.subtotal, order.delivery_fee, order.total) == (
        OrderStatus.PLACED,
        *map(Decimal, after),
    )
    line_b.refresh_from_db()
    assert (line_b.status, line_b.reject_reason) == (LineStatus.REJECTED, "下雨没摘")
    assert quantity(b) == Decimal("100.000")
    assert quantity(a) == Decimal(100 - quantity_a)


def test_a_line_rejected_after_the_fee_rule_went_up_leaves_the_fee_no_higher_than_quoted(
    client_for, settings
):
    """Three farms (5.00 + 2.00 + 2.00 quoted); the fee for a first farm then goes up to
    10.00: one line rejected, the rule for two farms says 12.00, but the fee stays 9.00."""
    listings = [create_listing(price=Decimal("10.00")) for _ in range(3)]
    order = place_order(BuyerFactory(), *listings)
    assert (order.delivery_fee, order.total) == (Decimal("9.00"), Decimal("39.00"))
    settings.DELIVERY_FEE_BASE = Decimal("10.00")
    line = order.lines.get(listing=listings[2])

    response = client_for(listings[2].farmer).post(
        f"{ORDERS}{order.pk}/lines/{line.pk}/reject/", {"reason": "卖完了"}, format="json"
    )

    assert response.status_code == 200
    order.refresh_from_db()
    assert (order.subtotal, order.delivery_fee, order.total) == (
        Decimal("20.00"),
        Decimal("9.00"),
        Decimal("29.00"),
    )


def test_no_line_is_rejected_while_the_buyer_is_paying(client_for):
    buyer = BuyerFactory()
    a, b = create_listing(price=Decimal("10.00")), create_listing(price=Decimal("4.00"))
    order = place_order(buyer, (a, 1), (b, 1), payment_method="prepaid")
    line_b = order.lines.get(listing=b)
    response = client_for(b.farmer).post(
        f"{ORDERS}{order.pk}/lines/{line_b.pk}/reject/", {"reason": "坏了"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "order_awaiting_payment"
    order.refresh_from_db()
    assert (order.status, order.total) == (OrderStatus.AWAITING_PAYMENT, Decimal("21.00"))
    assert order.lines.get(listing=b).status == LineStatus.ACTIVE
    assert quantity(b) == Decimal("99.000")


@pytest.mark.parametrize(
    "reason",
    [
        "没货了\u202e 00.91",  # turned the rest of the buyer's message around: its new total
        "没货了\u2067明天",
        "没货了\n明天",
        "没货了\x1b[2J",
    ],
)
@pytest.mark.parametrize("by", ["farmer", "buyer"])
def test_a_reason_with_a_control_character_or_direction_override_is_refused(client_for, by, reason):
    """A farmer's reason for a rejected line, and a buyer's or staff's for a cancel, go into
    the buyer's message (and the order's events), ahead of its total and what is paid back:
    refused as names and titles are, and nothing changes."""
    listing, other = create_listing(), create_listing()
    order = place_order(BuyerFactory(), (listing, 2), (other, 1))
    line = order.lines.get(listing=listing)
    if by == "farmer":
        client, url = client_for(listing.farmer), f"{ORDERS}{order.pk}/lines/{line.pk}/reject/"
    else:
        client, url = client_for(order.buyer), f"{ORDERS}{order.pk}/cancel/"

    answer = client.post(url, {"reason": reason}, format="json")

    assert answer.status_code == 400
    assert [(e["field"], e["code"]) for e in answer.json()["errors"]] == [
        ("reason", "control_characters_not_allowed")
    ]
    fresh = Order.objects.get(pk=order.pk)
    assert (fresh.status, fresh.total) == (OrderStatus.PLACED, order.total)
    assert set(fresh.lines.values_list("status", flat=True)) == {LineStatus.ACTIVE}
    assert OrderEvent.objects.filter(order=order).count() == 1
    assert (quantity(listing), quantity(other)) == (Decimal("98.000"), Decimal("99.000"))


def test_rejecting_the_last_line_cancels_the_order(client_for):
    listing = create_listing()
    order = place_order(BuyerFactory(), (listing, 2))
    line = order.lines.get()
    client_for(listing.farmer).post(
        f"{ORDERS}{order.pk}/lines/{line.pk}/reject/", {"reason": "卖完了"}, format="json"
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert quantity(listing) == Decimal("100.000")  # given back once, not twice


@pytest.mark.parametrize("last", [False, True])
def test_a_line_rejected_for_goods_that_are_gone_is_not_put_back_on_sale(client_for, last):
    """Sold elsewhere, spoiled: `restock: false` keeps what the line took off the listing,
    whether the order goes on or the last line's rejection cancels it."""
    listing, other = create_listing(), create_listing()
    lines = [(listing, 2)] if last else [(listing, 2), (other, 3)]
    order = place_order(BuyerFactory(), *lines)
    line = order.lines.get(listing=listing)

    answer = client_for(listing.farmer).post(
        f"{ORDERS}{order.pk}/lines/{line.pk}/reject/",
        {"reason": "菜坏了", "restock": False},
        format="json",
    )

    assert answer.status_code == 200, answer.json()
    assert answer.json()["status"] == ("cancelled" if last else "placed")
    assert quantity(listing) == Decimal("98.000")
    assert quantity(other) == Decimal("97.000" if not last else "100.000")


def test_the_last_line_rejected_with_the_longest_reason_cancels_the_order(client_for):
    """The cancel's event says why: "last line rejected: " and the farmer's reason, cut to
    fit the event's column; the line keeps the whole reason."""
    reason = "路" * 255
    assert_last_line_rejected_with(client_for, reason)
    # Tibetan: its vowel signs are combining marks, which a cut by "characters" as Django's
    # Truncator counts them passes over, overflowing the column
    assert_last_line_rejected_with(client_for, "\u0f40\u0f72" * 127 + "\u0f40")


def assert_last_line_rejected_with(client_for, reason):
    assert len(reason) == 255
    listing = create_listing(quantity_available=Decimal("10"))
    order = place_order(BuyerFactory(), (listing, 2))
    line = order.lines.get()

    answer = client_for(listing.farmer).post(
        f"{ORDERS}{order.pk}/lines/{line.pk}/reject/", {"reason": reason}, format="json"
    )

    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == OrderStatus.CANCELLED
    assert OrderLine.objects.get(pk=line.pk).reject_reason == reason
    event = OrderEvent.objects.get(order=order, to_status=OrderStatus.CANCELLED)
    assert event.reason == f"last line rejected: {reason}"[:254] + "…"
    assert quantity(listing) == Decimal("10.000")


def test_only_the_lines_farmer_rejects(client_for):
    a, b = create_listing(), create_listing()
    order = place_order(BuyerFactory(), (a, 1), (b, 1))
    line_b = order.lines.get(listing=b)
    response = client_for(a.farmer).post(
        f"{ORDERS}{order.pk}/lines/{line_b.pk}/reject/", {"reason": "x"}, format="json"
    )
    assert response.status_code == 404
    assert order.lines.get(listing=b).status == LineStatus.ACTIVE
    missing_reason = client_for(b.farmer).post(
        f"{ORDERS}{order.pk}/lines/{line_b.pk}/reject/", {}, format="json"
    )
    assert missing_reason.status_code == 400


def test_a_farmer_who_rejected_every_line_never_learns_where_the_buyer_lives(client_for):
    buyer, kept, rejected = BuyerFactory(), create_listing(), create_listing()
    order = place_order(buyer, (kept, 1), (rejected, 1), note=NOTE)
    line = order.lines.get(listing=rejected)
    services.order_line_reject(
        order_id=order.pk, line_id=line.pk, farmer=rejected.farmer, reason="下雨没摘"
    )
    services.order_transition(order=services.order_lock(order.pk), to_status=OrderStatus.CONFIRMED)

    seen = {
        f: client_for(f).get(f"{ORDERS}{order.pk}/").json() for f in (kept.farmer, rejected.farmer)
    }

    assert seen[kept.farmer]["buyer"]["phone"] == buyer.phone
    assert seen[kept.farmer]["delivery_address"] == order.delivery_address
    assert seen[kept.farmer]["note"] == NOTE
    assert [x["status"] for x in seen[rejected.farmer]["lines"]] == ["rejected"]
    assert seen[rejected.farmer]["buyer"]["phone"] is None
    assert [seen[rejected.farmer][key] for key in REACH] == ["", None, None, ""]


def test_visibility(client_for):
    north = ServiceCenterFactory()
    south = ServiceCenterFactory()
    buyer = BuyerFactory(village=VillageFactory(service_center=south))
    farmer_a = FarmerFactory(village=VillageFactory(service_center=north))
    farmer_b = FarmerFactory(village=VillageFactory(service_center=north))
    a, b = create_listing(farmer_a, price=Decimal("10.00")), create_listing(farmer_b)
    order = place_order(buyer, (a, 2), (b, 1), note=NOTE)
    url = f"{ORDERS}{order.pk}/"

    mine = client_for(buyer).get(url).json()
    assert len(mine["lines"]) == 2
    assert mine["delivery_code"] == order.delivery_code
    assert mine["buyer"]["phone"] == buyer.phone
    assert mine["note"] == NOTE

    as_farmer = client_for(farmer_a).get(url).json()
    assert [line["listing"] for line in as_farmer["lines"]] == [a.pk]
    assert (as_farmer["subtotal"], as_farmer["total"], as_farmer["delivery_code"]) == (
        "20.00",
        None,
        None,
    )
    assert as_farmer["buyer"]["phone"] is None  # not until the order is confirmed
    assert [as_farmer[key] for key in REACH] == ["", None, None, ""]
    assert [mine[key] for key in REACH] == [
        order.delivery_address,
        f"{order.delivery_lat:.6f}",
        f"{order.delivery_lng:.6f}",
        NOTE,
    ]
    services.order_transition(order=services.order_lock(order.pk), to_status=OrderStatus.CONFIRMED)
    confirmed = client_for(farmer_a).get(url).json()
    assert confirmed["buyer"]["phone"] == buyer.phone
    assert [confirmed[key] for key in REACH] == [mine[key] for key in REACH]

    for staff in (StaffFactory(service_center=north), StaffFactory(service_center=south)):
        seen = client_for(staff).get(url)
        assert seen.status_code == 200
        assert seen.json()["delivery_code"] is None
    strangers = [
        BuyerFactory(),
        FarmerFactory(),
        StaffFactory(service_center=ServiceCenterFactory()),
    ]
    for stranger in strangers:
        assert client_for(stranger).get(url).status_code == 404
        assert client_for(stranger).get(ORDERS).json()["count"] == 0
        assert client_for(stranger).post(f"{url}cancel/", format="json").status_code == 404
    assert Order.objects.get().status == OrderStatus.CONFIRMED


def test_staff_see_an_order_through_the_centers_its_goods_go_through_after_a_farmer_moves(
    client_for,
):
    """Once routed, an order goes through the centers of its shipments: a farmer moving to
    another center's village afterwards (their listings follow them) neither hides it from
    the center that picks it up nor shows it, or lets it be cancelled, at the new one."""
    north, south, east = ServiceCenterFactory(), ServiceCenterFactory(), ServiceCenterFactory()
    buyer = BuyerFactory(village=VillageFactory(service_center=south))
    farmer = FarmerFactory(village=VillageFactory(service_center=north))
    listing = create_listing(farmer, quantity_available=Decimal("10"))
    order = place_order(buyer, (listing, 2))
    order_route(order_id=order.pk)
    user_update_profile(user=farmer, village=VillageFactory(service_center=east))
    assert Listing.objects.get(pk=listing.pk).village.service_center == east
    url = f"{ORDERS}{order.pk}/"

    east_staff = client_for(StaffFactory(service_center=east))
    assert east_staff.get(url).status_code == 404
    assert east_staff.get(ORDERS).json()["count"] == 0
    assert east_staff.post(f"{url}cancel/", format="json").status_code == 404
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CONFIRMED
    assert quantity(listing) == Decimal("8.000")

    for center in (north, south):
        staff = client_for(StaffFactory(service_center=center))
        assert staff.get(url).status_code == 200
        assert [o["id"] for o in staff.get(ORDERS).json()["results"]] == [order.pk]


def test_staff_see_only_the_shipments_of_an_order_through_their_own_center(client_for):
    """An order from two farmers of two centers: each center's staff see the order, and of
    its shipments only those their center picks up or delivers, as GET /shipments/ does."""
    north, south = ServiceCenterFactory(), ServiceCenterFactory()
    buyer = BuyerFactory(village=VillageFactory(service_center=south))
    near = FarmerFactory(village=VillageFactory(service_center=south))
    far = FarmerFactory(village=VillageFactory(service_center=north))
    order = place_order(buyer, (create_listing(near), 1), (create_listing(far), 1))
    order_route(order_id=order.pk)
    local = Shipment.objects.get(order=order, farmer=near)
    travelling = Shipment.objects.get(order=order, farmer=far)
    assert (local.origin_center_id, local.destination_center_id) == (south.pk, south.pk)
    assert (travelling.origin_center_id, travelling.destination_center_id) == (north.pk, south.pk)

    for center, seen in ((north, [travelling.pk]), (south, sorted([local.pk, travelling.pk]))):
        staff = client_for(StaffFactory(service_center=center))
        detail = staff.get(f"{ORDERS}{order.pk}/").json()
        assert sorted(s["id"] for s in detail["shipments"]) == seen
        listed = staff.get(ORDERS).json()["results"]
        assert [sorted(s["id"] for s in o["shipments"]) for o in listed] == [seen]
        for shipment in (local, travelling):
            expected = 200 if shipment.pk in seen else 404
            assert staff.get(f"/api/v1/shipments/{shipment.pk}/").status_code == expected
    assert sorted(
        s["id"] for s in client_for(buyer).get(f"{ORDERS}{order.pk}/").json()["shipments"]
    ) == sorted([local.pk, travelling.pk])


@pytest.mark.parametrize("routed", [True, False])
def test_staff_of_the_center_delivering_an_order_cancel_it_not_those_picking_up(client_for, routed):
    """North picks up one farmer's goods of an order south delivers: north's staff see it,
    but calling it off would cancel south's own shipment too. South's staff may."""
    north, south = ServiceCenterFactory(), ServiceCenterFactory()
    buyer = BuyerFactory(village=VillageFactory(service_center=south))
    near = create_listing(FarmerFactory(village=VillageFactory(service_center=south)))
    far = create_listing(FarmerFactory(village=VillageFactory(service_center=north)))
    order = place_order(buyer, (near, 2), (far, 2))
    if routed:
        order_route(order_id=order.pk)
    status = Order.objects.get(pk=order.pk).status
    url = f"{ORDERS}{order.pk}/"
    north_staff = client_for(StaffFactory(service_center=north))

    assert north_staff.get(url).status_code == 200
    refused = north_staff.post(f"{url}cancel/", {"reason": "路断了"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert Order.objects.get(pk=order.pk).status == status
    assert (quantity(near), quantity(far)) == (Decimal("98.000"), Decimal("98.000"))
    assert set(Shipment.objects.filter(order=order).values_list("status", flat=True)) == (
        {"pending"} if routed else set()
    )

    south_staff = client_for(StaffFactory(service_center=south))
    cancelled = south_staff.post(f"{url}cancel/", {"reason": "路断了"}, format="json")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, OrderStatus.CANCELLED)
    assert (quantity(near), quantity(far)) == (Decimal("100.000"), Decimal("100.000"))


def test_farmer_cannot_cancel_a_buyers_order(client_for):
    listing = create_listing()
    order = place_order(BuyerFactory(), (listing, 1))
    response = client_for(listing.farmer).post(f"{ORDERS}{order.pk}/cancel/", format="json")
    assert response.status_code == 403
    assert Order.objects.get().status == OrderStatus.PLACED


def test_list_filters_by_status_and_date_with_constant_queries(
    client_for, django_assert_num_queries
):
    buyer = BuyerFactory()
    listing = create_listing()
    orders = [place_order(buyer, (listing, 1)) for _ in range(3)]
    services.order_cancel(order_id=orders[0].pk, actor=buyer)
    client = client_for(buyer)
    cancelled = client.get(ORDERS, {"status": "cancelled"}).json()
    assert [o["id"] for o in cancelled["results"]] == [orders[0].pk]
    placed = client.get(ORDERS, {"status": "placed"}).json()
    assert [o["id"] for o in placed["results"]] == [orders[2].pk, orders[1].pk]
    later = client.get(ORDERS, {"created_after": "2999-01-01T00:00:00Z"}).json()
    assert later["count"] == 0
    assert client.get(ORDERS, {"status": "lost"}).status_code == 400
    # user, count, orders, lines, events, shipments (and their legs once there are some)
    with django_assert_num_queries(6):
        client.get(ORDERS)
    for _ in range(5):
        place_order(buyer, (listing, 1))
    with django_assert_num_queries(6):
        client.get(ORDERS)
    # a status is a column of the order: no DISTINCT over every column of the page, nor a
    # count of such a subquery
    with CaptureQueriesContext(connection) as captured:
        both = client.get(ORDERS, {"status": ["placed", "cancelled"]}).json()
    assert both["count"] == 8
    assert [q["sql"] for q in captured.captured_queries if "DISTINCT" in q["sql"]] == []


def test_a_filter_left_empty_filters_nothing_as_in_every_other_list(client_for):
    """A form sends the fields left blank: `?status=` is no status asked for, as an empty
    filter of the listings, villages or notifications is, not a 400."""
    buyer = BuyerFactory()
    listing = create_listing()
    orders = [place_order(buyer, (listing, 1)) for _ in range(2)]
    services.order_cancel(order_id=orders[0].pk, actor=buyer)
    client = client_for(buyer)

    every = client.get(ORDERS, {"status": "", "payment_method": "", "created_after": ""})
    assert every.status_code == 200, every.content
    assert [o["id"] for o in every.json()["results"]] == [orders[1].pk, orders[0].pk]
    cancelled = client.get(ORDERS, {"status": ["", "cancelled"]})
    assert [o["id"] for o in cancelled.json()["results"]] == [orders[0].pk]


def test_an_order_of_4_farms_goods_is_answered_with_as_many_querysets_as_of_1(
    client_for, monkeypatch
):
    """Its shipments' legs and events come as lists: held as a relation's cache, Django
    built a queryset per shipment for each of them, about a fifth of the CPU of a staff
    list of 100 orders. The answer holds them all, in their order."""
    center = ServiceCenterFactory()
    staff = client_for(StaffFactory(service_center=center))

    def answered(farmers: int) -> tuple[int, dict]:
        listings = [
            create_listing(FarmerFactory(village=VillageFactory(service_center=center)))
            for _ in range(farmers)
        ]
        buyer = BuyerFactory(village=VillageFactory(service_center=center))
        order = order_route(order_id=place_order(buyer, *listings).pk)
        built = []
        real_init = QuerySet.__init__

        def counted(self, *args, **kwargs):
            built.append(1)
            real_init(self, *args, **kwargs)

        with monkeypatch.context() as patched:
            patched.setattr(QuerySet, "__init__", counted)
            answer = staff.get(f"{ORDERS}{order.pk}/")
        assert answer.status_code == 200
        return len(built), answer.json()

    answered(1)  # the first answer builds what every later one reuses
    one, _ = answered(1)
    four, order = answered(4)

    assert one == four
    assert len(order["shipments"]) == 4
    for shipment in order["shipments"]:
        assert [leg["kind"] for leg in shipment["legs"]] == ["pickup", "delivery"]
        assert [event["status"] for event in shipment["events"]] == ["pending"]


def test_the_lists_staff_read_have_an_index_in_their_order():
    """Staff's orders (newest first) and shipments (latest pickup first) are filtered by an
    OR over their center's columns, which no index serves: without an index in the list's
    order PostgreSQL reads and sorts all of the center's rows for a page (seconds at 200k
    orders)."""

    def indexes(model) -> list[tuple[list[str], list[str]]]:
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, model._meta.db_table)
        return [(c["columns"], c["orders"]) for c in found.values() if c["index"]]

    assert (["created_at", "id"], ["DESC", "DESC"]) in indexes(Order)
    assert (["pickup_date", "id"], ["DESC", "DESC"]) in indexes(Shipment)


def test_the_orders_holding_a_centers_listings_are_read_from_one_index():
    """Staff's list looks up the orders not routed yet holding their center's listings:
    (listing, order) answers from the index alone, where the listing's own index read every
    line's row (a busy center's 68k lines on 200k orders: 56 ms, now 11 ms, of a count of
    about 150 ms; bench/staff_lists.py). It serves every lookup by listing, so the lines keep
    one index on it, not two."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, OrderLine._meta.db_table)
    on_listing = [
        c["columns"] for c in found.values() if c["index"] and c["columns"][0] == "listing_id"
    ]
    assert sorted(on_listing) == [["listing_id", "order_id"]]


def test_rejecting_the_last_line_reads_no_user_it_holds_already():
    """The cancel it leads to names the line's farmer in its event: the farmer rejecting
    it, in hand, not read again."""
    listing = create_listing()
    order = place_order(BuyerFactory(), (listing, 1))
    with CaptureQueriesContext(connection) as captured:
        services.order_line_reject(
            order_id=order.pk, line_id=order.lines.get().pk, farmer=listing.farmer, reason="x"
        )
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    assert OrderEvent.objects.get(order=order, to_status="cancelled").farmer_id == listing.farmer_id
    read_users = [q["sql"] for q in captured.captured_queries if 'FROM "accounts_user"' in q["sql"]]
    assert read_users == []
