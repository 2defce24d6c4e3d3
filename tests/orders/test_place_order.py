"""Placing an order over HTTP: totals, copies, every refusal leaves stock untouched."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from listings.models import Listing, ListingStatus
from orders.models import Order, OrderLine
from tests.factories import BuyerFactory, FarmerFactory, VillageFactory, create_listing

pytestmark = pytest.mark.django_db
ORDERS = "/api/v1/orders/"


def order_body(*lines, **overrides):
    return {
        "lines": [{"listing": listing.pk, "quantity": str(qty)} for listing, qty in lines],
        "delivery_method": "home",
        "payment_method": "cod",
        **overrides,
    }


def stock(*listings):
    return [Listing.objects.get(pk=x.pk).quantity_available for x in listings]


def test_an_order_from_two_farmers_copies_lines_and_adds_up(client_for):
    buyer = BuyerFactory()
    tomatoes = create_listing(
        title="西红柿", price=Decimal("3.50"), quantity_available=Decimal("100")
    )
    eggs = create_listing(
        title="土鸡蛋",
        category="eggs",
        unit="dozen",
        unit_weight_kg=Decimal("0.700"),
        price=Decimal("18.00"),
        quantity_available=Decimal("10"),
    )
    response = client_for(buyer).post(
        ORDERS, order_body((tomatoes, "4.5"), (eggs, 2)), format="json"
    )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "placed"
    assert [(x["title"], x["quantity"], x["unit_price"], x["subtotal"]) for x in data["lines"]] == [
        ("西红柿", "4.500", "3.50", "15.75"),
        ("土鸡蛋", "2.000", "18.00", "36.00"),
    ]
    assert [x["unit_weight_kg"] for x in data["lines"]] == ["0.500", "0.700"]
    # 51.75 of goods from two farmers, home delivery: 5.00 + 2.00
    assert (data["subtotal"], data["delivery_fee"], data["total"]) == ("51.75", "7.00", "58.75")
    assert len(data["delivery_code"]) == 6
    assert data["delivery_code"].isdigit()
    assert stock(tomatoes, eggs) == [Decimal("95.500"), Decimal("8.000")]
    assert [(e["from_status"], e["to_status"]) for e in data["events"]] == [("", "placed")]
    # The copy stays when the farmer changes the listing later.
    Listing.objects.filter(pk=tomatoes.pk).update(price=Decimal("9.99"), title="改名")
    line = OrderLine.objects.get(listing=tomatoes)
    assert (line.title, line.unit_price) == ("西红柿", Decimal("3.50"))


def test_fee_rule_pickup_free_and_free_from_99(client_for):
    client = client_for(BuyerFactory())
    listing = create_listing(price=Decimal("10.00"))
    pickup = client.post(ORDERS, order_body((listing, 1), delivery_method="pickup"), format="json")
    assert (pickup.json()["delivery_fee"], pickup.json()["total"]) == ("0.00", "10.00")
    big = client.post(ORDERS, order_body((listing, 10)), format="json")
    assert (big.json()["delivery_fee"], big.json()["total"]) == ("0.00", "100.00")
    small = client.post(ORDERS, order_body((listing, 1)), format="json")
    assert (small.json()["delivery_fee"], small.json()["total"]) == ("5.00", "15.00")


def test_home_delivery_is_free_from_exactly_99_and_each_further_farmer_adds_2(client_for):
    client = client_for(BuyerFactory())
    listing = create_listing(price=Decimal("9.90"), unit="kg")
    fees = [
        client.post(ORDERS, order_body((listing, quantity)), format="json").json()["delivery_fee"]
        for quantity in ("10", "9.999")  # 99.00 and 98.99 of goods
    ]
    assert fees == ["0.00", "5.00"]
    three_farms = [create_listing(price=Decimal("1.00")) for _ in range(3)]
    placed = client.post(ORDERS, order_body(*((x, 1) for x in three_farms)), format="json")
    assert (placed.json()["delivery_fee"], placed.json()["total"]) == ("9.00", "12.00")


def test_delivery_place_defaults_to_the_buyer_and_can_be_given(client_for):
    buyer = BuyerFactory(lat=Decimal("30.111111"), lng=Decimal("119.222222"), address="东头3号")
    listing = create_listing()
    client = client_for(buyer)
    mine = client.post(ORDERS, order_body((listing, 1)), format="json").json()
    assert [mine[k] for k in ("delivery_village", "delivery_lat", "delivery_lng")] == [
        buyer.village_id,
        "30.111111",
        "119.222222",
    ]
    assert mine["delivery_address"] == "东头3号"
    collected = order_body((listing, 1), delivery_method="pickup")
    assert client.post(ORDERS, collected, format="json").json()["delivery_address"] == ""
    elsewhere = VillageFactory(lat=Decimal("30.300000"), lng=Decimal("119.400000"))
    other = client.post(
        ORDERS,
        order_body((listing, 1), delivery_village=elsewhere.pk, delivery_address="食堂后门"),
        format="json",
    ).json()
    assert (other["delivery_village"], other["delivery_lat"], other["delivery_address"]) == (
        elsewhere.pk,
        "30.300000",
        "食堂后门",
    )


@pytest.mark.parametrize(
    ("lat", "lng", "placed"),
    [
        ("30.300000", "119.750000", True),  # ~5.8 km from the village's point: a home of it
        ("0.000000", "0.000000", False),  # a phone without a fix sends 0,0
        ("30.260000", "120.000000", False),  # ~28 km off: another county
    ],
)
def test_a_delivery_point_given_is_near_the_delivery_village(client_for, lat, lng, placed):
    """Goods are routed to the point given: one the village's center can never reach would
    roll from day to day, never delivered. So it must lie within PLACE_MAX_KM_FROM_VILLAGE
    of the village's own point (VillageFactory: 30.26, 119.71)."""
    buyer = BuyerFactory()
    listing = create_listing()
    response = client_for(buyer).post(
        ORDERS, order_body((listing, 1), delivery_lat=lat, delivery_lng=lng), format="json"
    )
    if placed:
        assert response.status_code == 201, response.json()
        assert (response.json()["delivery_lat"], response.json()["delivery_lng"]) == (lat, lng)
        return
    assert response.status_code == 400
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "code": "delivery_place_too_far",
        "detail": "The delivery point is more than 20 km from the delivery village.",
        "field": "delivery_lat",
        "max_km": 20,
        "errors": [
            {
                "field": "delivery_lat",
                "code": "delivery_place_too_far",
                "detail": "The delivery point is more than 20 km from the delivery village.",
            }
        ],
    }
    assert not Order.objects.exists()
    assert stock(listing) == [Decimal("100")]


def test_prepaid_waits_for_payment(client_for):
    listing = create_listing()
    data = (
        client_for(BuyerFactory())
        .post(ORDERS, order_body((listing, 1), payment_method="prepaid"), format="json")
        .json()
    )
    assert (data["status"], data["payment_status"]) == ("awaiting_payment", "unpaid")
    due = Order.objects.get().payment_due_at
    assert timedelta(minutes=29) < due - timezone.now() <= timedelta(minutes=30)


def test_short_lines_are_409_naming_every_one_and_nothing_changes(client_for):
    buyer = BuyerFactory()
    plenty = create_listing(quantity_available=Decimal("100"))
    few = create_listing(quantity_available=Decimal("2"))
    none = create_listing(quantity_available=Decimal("1"))
    client_for(BuyerFactory()).post(ORDERS, order_body((none, 1)), format="json")  # sells out
    response = client_for(buyer).post(
        ORDERS, order_body((plenty, 5), (few, 3), (none, 1)), format="json"
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "insufficient_stock"
    assert body["lines"] == [
        {"listing": few.pk, "requested": "3.000", "available": "2.000"},
        {"listing": none.pk, "requested": "1.000", "available": "0.000"},
    ]
    assert stock(plenty, few, none) == [Decimal("100.000"), Decimal("2.000"), Decimal("0.000")]
    assert Order.objects.filter(buyer=buyer).count() == 0


def test_a_line_priced_otherwise_than_the_buyer_saw_is_409_naming_every_one(client_for):
    """A line may carry the `unit_price` its buyer saw: the farmer changed the price since
    (3.50 to 35.00), so the order is refused, naming every such line with the price now,
    and nothing changes. A line without it, or with the price as it is, takes the price of
    the moment as before."""
    buyer = BuyerFactory()
    same = create_listing(price=Decimal("4.00"), quantity_available=Decimal("10"))
    raised = create_listing(price=Decimal("35.00"), quantity_available=Decimal("10"))
    lowered = create_listing(price=Decimal("2.00"), quantity_available=Decimal("10"))
    unseen = create_listing(price=Decimal("6.00"), quantity_available=Decimal("10"))
    body = order_body((same, 1), (raised, 1), (lowered, 1), (unseen, 1))
    for line, seen in zip(body["lines"], ["4.00", "3.50", "2.5", None], strict=True):
        if seen is not None:
            line["unit_price"] = seen

    response = client_for(buyer).post(ORDERS, body, format="json")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "price_changed"
    assert response.json()["lines"] == [
        {"listing": raised.pk, "seen": "3.50", "price": "35.00"},
        {"listing": lowered.pk, "seen": "2.50", "price": "2.00"},
    ]
    assert stock(same, raised, lowered, unseen) == [Decimal("10.000")] * 4
    assert Order.objects.filter(buyer=buyer).count() == 0

    body["lines"][1]["unit_price"], body["lines"][2]["unit_price"] = "35", "2.00"
    placed = client_for(buyer).post(ORDERS, body, format="json")
    assert placed.status_code == 201, placed.content
    assert [line["unit_price"] for line in placed.json()["lines"]] == [
        "4.00",
        "35.00",
        "2.00",
        "6.00",
    ]


@pytest.mark.parametrize("seen", ["-1.00", "0.001", "abc", "100000000.00"])
def test_a_price_seen_that_no_listing_can_have_is_400(client_for, seen):
    buyer = BuyerFactory()
    listing = create_listing(price=Decimal("4.00"), quantity_available=Decimal("10"))
    body = order_body((listing, 1))
    body["lines"][0]["unit_price"] = seen
    response = client_for(buyer).post(ORDERS, body, format="json")
    assert response.status_code == 400, response.content
    assert stock(listing) == [Decimal("10.000")]
    assert Order.objects.filter(buyer=buyer).count() == 0


def test_the_last_unit_makes_the_listing_sold_out(client_for):
    listing = create_listing(quantity_available=Decimal("3"))
    other = create_listing(category="eggs", quantity_available=Decimal("10"))
    answer = client_for(BuyerFactory()).post(
        ORDERS, order_body((listing, 3), (other, "2.5")), format="json"
    )
    assert answer.status_code == 201
    listing.refresh_from_db()
    other.refresh_from_db()
    # both taken in one statement, each its own quantity and status
    assert (listing.quantity_available, listing.status) == (
        Decimal("0.000"),
        ListingStatus.SOLD_OUT,
    )
    assert (other.quantity_available, other.status) == (Decimal("7.500"), ListingStatus.ACTIVE)


def test_what_is_left_below_the_minimum_is_sold_whole_not_stranded(client_for):
    """8 kg at a minimum of 5: once 5 are sold, the 3 left go to whoever takes all 3 (less
    is still refused, naming the 3); they would otherwise stay on offer, never to be sold."""
    listing = create_listing(
        unit="kg", min_order_quantity=Decimal("5"), quantity_available=Decimal("8")
    )
    first = client_for(BuyerFactory()).post(ORDERS, order_body((listing, 5)), format="json")
    assert first.status_code == 201
    client = client_for(BuyerFactory())

    less = client.post(ORDERS, order_body((listing, 2)), format="json")
    rest = client.post(ORDERS, order_body((listing, 3)), format="json")

    assert (less.status_code, less.json()["code"], less.json()["min_order_quantity"]) == (
        400,
        "below_min_order_quantity",
        "3.000",
    )
    assert rest.status_code == 201, rest.json()
    listing.refresh_from_db()
    assert (listing.quantity_available, listing.status) == (Decimal(0), ListingStatus.SOLD_OUT)
    assert Order.objects.count() == 2


@pytest.mark.parametrize(
    ("make_body", "code"),
    [
        (lambda own, archived, ok: order_body((own, 1)), "own_listing"),
        (lambda own, archived, ok: order_body((archived, 1)), "listing_unavailable"),
        (lambda own, archived, ok: order_body((ok, 1), (ok, 2)), "duplicate_lines"),
        (lambda own, archived, ok: order_body((ok, "0.5")), "below_min_order_quantity"),
        (
            lambda own, archived, ok: {
                **order_body(),
                "lines": [{"listing": 999999, "quantity": "1"}],
            },
            "listing_not_found",
        ),
    ],
)
def test_refused_orders_are_400_with_a_code_and_change_nothing(client_for, make_body, code):
    buyer = BuyerFactory()
    own = create_listing(FarmerFactory())
    Listing.objects.filter(pk=own.pk).update(farmer=buyer)  # the same user on both sides
    archived = create_listing()
    Listing.objects.filter(pk=archived.pk).update(status=ListingStatus.ARCHIVED)
    ok = create_listing()
    before = stock(own, archived, ok)
    response = client_for(buyer).post(ORDERS, make_body(own, archived, ok), format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert stock(own, archived, ok) == before
    assert not Order.objects.exists()


def test_pieces_are_ordered_whole(client_for):
    pieces = create_listing(unit="piece", unit_weight_kg=Decimal("0.300"))
    weighed = create_listing(unit="kg")
    client = client_for(BuyerFactory())
    half = client.post(ORDERS, order_body((weighed, "1.5"), (pieces, "2.5")), format="json")
    assert half.status_code == 400
    assert (half.json()["code"], half.json()["listing"], half.json()["unit"]) == (
        "quantity_not_whole",
        pieces.pk,
        "piece",
    )
    assert stock(pieces, weighed) == [Decimal("100.000")] * 2
    assert not Order.objects.exists()
    whole = client.post(ORDERS, order_body((weighed, "1.5"), (pieces, "2.000")), format="json")
    assert whole.status_code == 201
    assert stock(pieces, weighed) == [Decimal("98.000"), Decimal("98.500")]


def test_a_delivery_village_key_that_is_no_whole_number_is_400(client_for):
    listing, elsewhere = create_listing(), VillageFactory()
    body = order_body((listing, 1), delivery_village=elsewhere.pk + 0.5)
    response = client_for(BuyerFactory()).post(ORDERS, body, format="json")
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("delivery_village", "incorrect_type")
    ]
    assert stock(listing) == [listing.quantity_available]
    assert not Order.objects.exists()


@pytest.mark.parametrize("listing_id", [2**63, 10**30])
def test_a_listing_id_beyond_any_key_is_400(client_for, listing_id):
    """Listings are locked by id in SQL of our own, where a number beyond bigint failed the
    query (a 500); no listing can have such an id."""
    listing = create_listing()
    body = order_body((listing, 1))
    body["lines"].append({"listing": listing_id, "quantity": "1"})
    response = client_for(BuyerFactory()).post(ORDERS, body, format="json")
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("lines.1.listing", "max_value")
    ]
    assert stock(listing) == [listing.quantity_available]
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("listing_fields", "lines"),
    [
        # 12,500 units of each at 99,999,999.99: 2.5e12 CNY, beyond the total's 1e10
        ({"price": Decimal("99999999.99"), "unit": "kg"}, [12_500, 12_500]),
        # two lines from one farmer at 99,999.999 kg a piece: 10,000,000.99 kg in one shipment
        ({"unit": "piece", "unit_weight_kg": Decimal("99999.999")}, [50, 51]),
    ],
    ids=["total", "one-farmers-weight"],
)
def test_an_order_too_large_to_store_is_400_and_changes_nothing(client_for, listing_fields, lines):
    farmer = FarmerFactory()
    listings = [
        create_listing(farmer, quantity_available=Decimal("1000000"), **listing_fields)
        for _ in lines
    ]
    response = client_for(BuyerFactory()).post(
        ORDERS, order_body(*zip(listings, lines, strict=True)), format="json"
    )
    assert response.status_code == 400, response.json()
    problem = response.json()
    assert (problem["code"], problem["max_total"], problem["max_weight_kg"]) == (
        "order_too_large",
        "9999999999.99",
        "9999999.999",
    )
    assert stock(*listings) == [Decimal("1000000.000")] * len(lines)
    assert not Order.objects.exists()


def test_the_largest_order_that_fits_is_placed(client_for):
    farmer = FarmerFactory()
    heavy = create_listing(
        farmer,
        unit="piece",
        unit_weight_kg=Decimal("99999.999"),
        quantity_available=Decimal("1000000"),
    )
    light = create_listing(farmer, unit="kg", quantity_available=Decimal("1000000"))
    # 99 × 99,999.999 + 99,900.099 kg = 9,999,999.999 kg: exactly one shipment's most
    response = client_for(BuyerFactory()).post(
        ORDERS, order_body((heavy, 99), (light, "99900.099")), format="json"
    )
    assert response.status_code == 201, response.json()
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("quantity", "code"), [("0", "min_value"), ("-1", "min_value"), ("abc", "invalid")]
)
def test_zero_negative_or_bad_quantity_is_400(client_for, quantity, code):
    listing = create_listing()
    response = client_for(BuyerFactory()).post(
        ORDERS, order_body((listing, quantity)), format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "field": "lines.0.quantity",
        "code": code,
        "detail": response.json()["errors"][0]["detail"],
    }
    assert stock(listing) == [Decimal("100.000")]


def test_more_than_fifty_lines_or_none_is_400(client_for):
    listings = [create_listing() for _ in range(51)]
    client = client_for(BuyerFactory())
    response = client.post(ORDERS, order_body(*[(x, 1) for x in listings]), format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "max_length"
    empty = client.post(ORDERS, order_body(), format="json")
    assert empty.status_code == 400
    assert empty.json()["errors"][0]["code"] == "empty"
    assert not Order.objects.exists()


def test_only_buyers_order(client_for, api):
    listing = create_listing()
    assert (
        client_for(FarmerFactory())
        .post(ORDERS, order_body((listing, 1)), format="json")
        .status_code
        == 403
    )
    assert api.post(ORDERS, order_body((listing, 1)), format="json").status_code == 401
    assert stock(listing) == [Decimal("100.000")]


@pytest.mark.parametrize(
    ("payment_method", "buyer_point", "deliver_elsewhere"),
    [
        ("cod", True, False),  # the buyer's own point
        ("prepaid", False, False),  # no point of their own: their village's
        ("cod", True, True),  # another village, and its point
    ],
)
def test_the_answer_is_byte_for_byte_what_a_get_by_the_buyer_gives(
    client_for, payment_method, buyer_point, deliver_elsewhere
):
    """The answer is serialized from what order_place wrote, not read back: it must not
    differ from the order as read from the database by a single byte."""
    point = {"lat": Decimal("30.111111"), "lng": Decimal("119.222222")} if buyer_point else {}
    buyer = BuyerFactory(**point)
    tomatoes = create_listing(title="西红柿", price=Decimal("3.50"))
    beans = create_listing(tomatoes.farmer, title="豆角", price=Decimal("4.20"))
    eggs = create_listing(
        title="土鸡蛋",
        category="eggs",
        unit="dozen",
        unit_weight_kg=Decimal("0.700"),
        price=Decimal("18.00"),
    )
    elsewhere = {"delivery_village": VillageFactory().pk} if deliver_elsewhere else {}
    body = order_body(
        (eggs, 2),
        (tomatoes, "4.5"),
        (beans, 1),
        payment_method=payment_method,
        delivery_address=" 食堂后门 ",
        note=" 请敲门 ",
        **elsewhere,
    )
    client = client_for(buyer)
    posted = client.post(ORDERS, body, format="json")
    assert posted.status_code == 201, posted.json()
    fetched = client.get(f"{ORDERS}{posted.json()['id']}/")
    assert fetched.status_code == 200
    assert posted.json() == fetched.json()
    assert posted.content == fetched.content
    data = posted.json()
    assert [x["listing"] for x in data["lines"]] == [eggs.pk, tomatoes.pk, beans.pk]
    assert {x["farmer"] for x in data["lines"]} == {eggs.farmer_id, tomatoes.farmer_id}
    assert (data["delivery_address"], data["note"], data["shipments"]) == ("食堂后门", "请敲门", [])


def test_a_keyed_placement_replays_the_answer_a_get_gives(client_for):
    buyer = BuyerFactory()
    tomatoes, eggs = create_listing(), create_listing(category="eggs")
    client = client_for(buyer)
    body = order_body((tomatoes, 1), (eggs, 2))
    first = client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="place-1")
    retry = client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="place-1")
    assert first.status_code == retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    fetched = client.get(f"{ORDERS}{first.json()['id']}/")
    assert retry.content == first.content == fetched.content
    assert Order.objects.count() == 1
    assert stock(tomatoes, eggs) == [Decimal("99.000"), Decimal("98.000")]


def test_placing_an_order_costs_a_fixed_number_of_queries(client_for, django_assert_num_queries):
    """Two lines from two farmers. The answer reads nothing back, and the buyer's village
    is read only when its point is the delivery point."""
    tomatoes, eggs = create_listing(), create_listing(category="eggs")
    body = order_body((tomatoes, 1), (eggs, 1))
    client = client_for(BuyerFactory(lat=Decimal("30.111111"), lng=Decimal("119.222222")))
    # user; savepoint; listings locked; their stock taken (one UPDATE); order, lines,
    # event; the 3 notifications (from the lines in hand); release
    with django_assert_num_queries(9):
        assert client.post(ORDERS, body, format="json").status_code == 201
    # and the idempotency record: savepoint, advisory lock, record looked up, record
    # written, release
    with django_assert_num_queries(14):
        keyed = client.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="count-1")
        assert keyed.status_code == 201
    # A buyer without a point of their own: their village's, read for it.
    client = client_for(BuyerFactory())
    with django_assert_num_queries(10):
        assert client.post(ORDERS, body, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", [None, "order-1"])
def test_an_order_placed_while_the_broker_is_down_is_answered_201(broker_down, client_for, key):
    """The order is committed before its routing and notification messages are sent: a
    broker that fails then must not turn it into a 500, which a client would retry into a
    second order (without a key). The sweepers send the messages later."""

    listing = create_listing(quantity_available=Decimal("10"))
    client = client_for(BuyerFactory())
    client.raise_request_exception = False
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}

    answer = client.post(ORDERS, order_body((listing, 2)), format="json", **headers)

    assert answer.status_code == 201, answer.content
    assert list(Order.objects.values_list("pk", "status")) == [(answer.json()["id"], "placed")]
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("8.000")
    if key:
        replay = client.post(ORDERS, order_body((listing, 2)), format="json", **headers)
        assert (replay.status_code, replay.content) == (201, answer.content)
        assert Order.objects.count() == 1


@pytest.mark.parametrize("address", ["村口\n左转第二家", "村口\x1b[2J", "\u202e号01村口"])
def test_a_delivery_address_breaking_lines_is_400_and_nothing_is_ordered(client_for, address):
    """The address is printed on a driver's stop and sent in messages: a new line, a
    terminal escape or a text direction override broke them (or reversed the rest)."""
    tomatoes = create_listing(quantity_available=Decimal("10"))
    response = client_for(BuyerFactory()).post(
        ORDERS, order_body((tomatoes, 1), delivery_address=address), format="json"
    )
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("delivery_address", "control_characters_not_allowed")
    ]
    assert (Order.objects.count(), stock(tomatoes)) == (0, [Decimal("10.000")])
