"""Cash on delivery: the driver at a delivery stop, and staff at a hand-over, are told the
cash to take (the goods handed over and the part of the delivery fee then due), and what
they took is recorded per shipment, once; all the hand-overs of an order add up to the
total it ends with."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from logistics.models import Route, Shipment, ShipmentStatus, Stop
from logistics.services.routing import order_route
from marketplace.accounts.models import User
from orders import services as orders
from orders.models import Notification, Order, OrderStatus, PaymentStatus
from tests.clock import on_day
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
    provider_notice,
)
from tests.logistics.test_shipments import complete, stop_for, stops_each

pytestmark = pytest.mark.django_db


@pytest.fixture
def county():
    """One center; its staff, a buyer and farmers in its villages."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    return {
        "center": center,
        "village": village,
        "staff": StaffFactory(service_center=center),
        "buyer": BuyerFactory(village=village),
    }


def order_of(county, *lines, **how) -> tuple[Order, list[Shipment]]:
    """An order routed, of `lines` given as (farmer number, price per kg, kg): each number
    a farmer of the county's village; its shipments in farmer number order."""
    farmers: dict[int, object] = {}
    requests = []
    for number, price, kg in lines:
        if number not in farmers:
            farmers[number] = FarmerFactory(village=county["village"])
        listing = create_listing(farmers[number], unit="kg", price=Decimal(price))
        requests.append((listing, Decimal(kg)))
    order = place_order(county["buyer"], *requests, **how)
    if order.status == OrderStatus.AWAITING_PAYMENT:
        provider_notice(order, order.total)
    order_route(order_id=order.pk)
    order.refresh_from_db()
    shipments = [Shipment.objects.get(order=order, farmer=farmers[n]) for n in sorted(farmers)]
    return order, shipments


def at_center(*shipments):
    """Picked up and waiting at the center for the driver (or the buyer)."""
    Shipment.objects.filter(pk__in=[s.pk for s in shipments]).update(
        status=ShipmentStatus.AT_CENTER
    )


def deliver(client, county, *shipments, day=None):
    """One delivery stop of `shipments` (one order's), completed with the buyer's code."""
    stop = stop_for(shipments[0], county["center"], "delivery", day)
    stop.shipments.add(*shipments)
    order = Order.objects.get(pk=shipments[0].order_id)
    done = complete(client, stop, outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200, done.json()
    return stop


def cash(*shipments) -> list[Decimal | None]:
    return [Shipment.objects.get(pk=s.pk).cash_collected for s in shipments]


def buyer_contact(client, stop) -> dict:
    """The buyer's contact at `stop`, as the route's staff read it."""
    route = client.get(f"/api/v1/routes/{stop.route_id}/").json()
    (contact,) = next(s["contacts"] for s in route["stops"] if s["id"] == stop.pk)
    assert contact["role"] == "buyer"
    return contact


def route_cash(client, route) -> tuple[str, str]:
    """The route's cash still to take and cash taken, as its staff read them."""
    answer = client.get(f"/api/v1/routes/{route.pk}/").json()
    return answer["cash_to_collect"], answer["cash_collected"]


def test_one_farmers_order_collects_its_total_at_its_delivery(county, client_for):
    order, (shipment,) = order_of(county, (1, "10.00", 8))  # 80.00 + 5.00
    at_center(shipment)
    staff = client_for(county["staff"])
    stop = stop_for(shipment, county["center"], "delivery")

    assert buyer_contact(staff, stop)["cash_to_collect"] == "85.00"
    done = complete(staff, stop, outcome="done", delivery_code=order.delivery_code)

    assert (done.status_code, done.json()["cash_collected"]) == (200, "85.00")
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.total) == (
        OrderStatus.DELIVERED,
        PaymentStatus.COLLECTED,
        Decimal("85.00"),
    )
    assert cash(shipment) == [Decimal("85.00")]
    contact = buyer_contact(staff, stop)  # the stop done: nothing left to take
    assert (contact["cash_to_collect"], contact["cash_collected"]) == ("0.00", "85.00")


def test_two_farmers_delivered_on_two_days_pay_each_their_goods_and_the_fee_then_due(
    county, client_for
):
    """80.00 from one farm, 15.00 from another, 7.00 for two farms: the first delivery takes
    its goods and one farm's fee (5.00), the second its goods and the 2.00 two farms add."""
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    assert order.total == Decimal("102.00")
    at_center(first, second)
    today = timezone.localdate()
    staff = client_for(county["staff"])
    later = stop_for(second, county["center"], "delivery", today + timedelta(days=1))
    assert buyer_contact(staff, later)["cash_to_collect"] == "20.00"  # as if it came first

    deliver(staff, county, first)
    assert cash(first, second) == [Decimal("85.00"), None]
    assert buyer_contact(staff, later)["cash_to_collect"] == "17.00"
    with on_day(later.route.date):
        staff = client_for(county["staff"])
        done = complete(staff, later, outcome="done", delivery_code=order.delivery_code)
        assert done.status_code == 200

    order.refresh_from_db()
    assert order.status == OrderStatus.DELIVERED
    assert cash(first, second) == [Decimal("85.00"), Decimal("17.00")]
    assert sum(cash(first, second)) == order.total == Decimal("102.00")


def test_an_order_whose_goods_make_two_stops_of_one_route_shows_each_what_it_takes(
    county, client_for
):
    """Two stops at the buyer's on one route (goods of two farms kept apart): the second
    counts the first as handed over by then, as its completion will."""
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    route = Route.objects.create(service_center=county["center"], date=timezone.localdate())
    stops = stops_each(route, "delivery", (first, second))
    staff = client_for(county["staff"])

    assert [buyer_contact(staff, stop)["cash_to_collect"] for stop in stops] == [
        "85.00",
        "17.00",
    ]
    assert route_cash(staff, route) == ("102.00", "0.00")
    done = complete(staff, stops[0], outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    assert route_cash(staff, route) == ("17.00", "85.00")
    done = complete(staff, stops[1], outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    assert cash(first, second) == [Decimal("85.00"), Decimal("17.00")]
    assert route_cash(staff, route) == ("0.00", "102.00")  # what the driver hands in


def test_cash_taken_after_a_failed_stop_shows_where_it_was_taken(county, client_for):
    """A delivery stop failed; the goods came the next day on another route. The cash was
    taken there: the failed stop, and its route's driver, took none."""
    _order, (shipment,) = order_of(county, (1, "10.00", 8))
    at_center(shipment)
    staff = client_for(county["staff"])
    failed = stop_for(shipment, county["center"], "delivery")
    done = complete(staff, failed, outcome="failed", reason="买家不在家")
    assert done.status_code == 200

    with on_day(timezone.localdate() + timedelta(days=1)):
        staff = client_for(county["staff"])
        delivered = deliver(staff, county, shipment, day=timezone.localdate())
        assert (buyer_contact(staff, delivered)["cash_collected"], cash(shipment)) == (
            "85.00",
            [Decimal("85.00")],
        )
        assert route_cash(staff, delivered.route) == ("0.00", "85.00")
        contact = buyer_contact(staff, failed)
        assert (contact["cash_to_collect"], contact["cash_collected"]) == ("0.00", None)
        assert route_cash(staff, failed.route) == ("0.00", "0.00")


def test_goods_failing_for_good_after_a_delivery_leave_the_rest_to_pay_the_lower_total(
    county, client_for, settings
):
    """Three farms' 20.00 each and 9.00 of fee (69.00). The first is delivered (20.00 and
    one farm's fee, 5.00); the third fails for good, so the order is two farms' goods and
    7.00; the second then pays its goods and the 2.00 still owed: 47.00 in all."""
    settings.MAX_STOP_ATTEMPTS = 1
    order, (first, second, third) = order_of(
        county, (1, "10.00", 2), (2, "10.00", 2), (3, "10.00", 2)
    )
    assert order.total == Decimal("69.00")
    at_center(first, second, third)
    staff = client_for(county["staff"])

    deliver(staff, county, first)
    failed = complete(
        staff, stop_for(third, county["center"], "delivery"), outcome="failed", reason="没人"
    )
    assert failed.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.delivery_fee, order.total) == (
        OrderStatus.IN_TRANSIT,
        Decimal("7.00"),
        Decimal("47.00"),
    )
    deliver(staff, county, second)

    order.refresh_from_db()
    assert (order.status, order.total) == (OrderStatus.PARTIALLY_DELIVERED, Decimal("47.00"))
    assert cash(first, second, third) == [Decimal("25.00"), Decimal("22.00"), None]
    assert sum(cash(first, second)) == order.total


def test_the_last_goods_failing_for_good_leave_what_was_taken_equal_to_the_total(
    county, client_for, settings
):
    """Delivered first, 80.00 and one farm's fee; the other farm's goods then fail for good:
    the order comes to 85.00, what was taken."""
    settings.MAX_STOP_ATTEMPTS = 1
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    staff = client_for(county["staff"])

    deliver(staff, county, first)
    failed = complete(
        staff, stop_for(second, county["center"], "delivery"), outcome="failed", reason="没人"
    )

    assert failed.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.total) == (OrderStatus.PARTIALLY_DELIVERED, Decimal("85.00"))
    assert cash(first, second) == [Decimal("85.00"), None]


def test_delivery_free_for_the_order_is_free_at_a_first_delivery_under_99(county, client_for):
    """60.00 and 50.00 from two farms: 110.00, delivered free. The first delivery alone is
    under 99.00, and still nothing is charged for delivery: never more than quoted."""
    order, (first, second) = order_of(county, (1, "10.00", 6), (2, "5.00", 10))
    assert (order.delivery_fee, order.total) == (Decimal("0.00"), Decimal("110.00"))
    at_center(first, second)
    staff = client_for(county["staff"])

    deliver(staff, county, first)
    deliver(staff, county, second)

    assert cash(first, second) == [Decimal("60.00"), Decimal("50.00")]
    order.refresh_from_db()
    assert sum(cash(first, second)) == order.total == Decimal("110.00")


def test_a_rejected_line_is_not_collected(county, client_for):
    """One farm's 30.00 and 10.00, another's 15.00, 7.00 of fee; the 10.00 line is turned
    down: 45.00 + 7.00, taken as 30.00 + 5.00 and 15.00 + 2.00."""
    order, (first, second) = order_of(county, (1, "10.00", 3), (1, "5.00", 2), (2, "3.00", 5))
    assert order.total == Decimal("62.00")
    turned_down = order.lines.get(subtotal=Decimal("10.00"))
    orders.order_line_reject(
        order_id=order.pk, line_id=turned_down.pk, farmer=turned_down.farmer, reason="坏了"
    )
    at_center(first, second)
    staff = client_for(county["staff"])
    stop = stop_for(first, county["center"], "delivery")
    assert buyer_contact(staff, stop)["cash_to_collect"] == "35.00"

    done = complete(staff, stop, outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    deliver(staff, county, second)

    order.refresh_from_db()
    assert cash(first, second) == [Decimal("35.00"), Decimal("17.00")]
    assert sum(cash(first, second)) == order.total == Decimal("52.00")


def test_a_prepaid_order_has_nothing_to_collect(county, client_for):
    order, (shipment,) = order_of(county, (1, "10.00", 8), payment_method="prepaid")
    assert order.payment_status == PaymentStatus.PAID
    at_center(shipment)
    staff = client_for(county["staff"])
    stop = stop_for(shipment, county["center"], "delivery")

    assert buyer_contact(staff, stop)["cash_to_collect"] == "0.00"
    done = complete(staff, stop, outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    _, *rows = (
        staff.get(f"/api/v1/routes/{stop.route_id}/load-list.csv")
        .content.decode("utf-8-sig")
        .splitlines()
    )

    assert cash(shipment) == [Decimal("0.00")]
    assert [row.rsplit(",", 1)[1] for row in rows] == ["0.00"]  # the stop done
    order.refresh_from_db()
    assert order.payment_status == PaymentStatus.PAID


def test_goods_collected_at_the_center_show_and_record_the_cash_of_their_hand_over(
    county, client_for
):
    """Collected at the center (no fee): each shipment's detail shows its staff the cash to
    take at its hand-over, which records it; the buyer sees what they paid, the farmer not."""
    order, (first, second) = order_of(
        county, (1, "10.00", 8), (2, "3.00", 5), delivery_method="pickup"
    )
    assert order.total == Decimal("95.00")
    at_center(first, second)
    staff = client_for(county["staff"])

    def detail(client, shipment) -> dict:
        return client.get(f"/api/v1/shipments/{shipment.pk}/").json()

    assert [detail(staff, s)["cash_to_collect"] for s in (first, second)] == ["80.00", "15.00"]
    assert detail(client_for(county["buyer"]), first)["cash_to_collect"] is None  # staff's
    url = f"/api/v1/shipments/{first.pk}/hand-over/"
    handed = staff.post(url, {"delivery_code": order.delivery_code}, format="json")

    assert handed.status_code == 200
    assert (handed.json()["cash_to_collect"], handed.json()["cash_collected"]) == (None, "80.00")
    again = staff.post(url, {"delivery_code": order.delivery_code}, format="json")
    assert (again.status_code, again.json()["cash_collected"]) == (200, "80.00")
    assert detail(staff, second)["cash_to_collect"] == "15.00"
    second_url = f"/api/v1/shipments/{second.pk}/hand-over/"
    assert staff.post(second_url, {"delivery_code": order.delivery_code}).status_code == 200

    order.refresh_from_db()
    assert (order.status, order.payment_status) == (OrderStatus.DELIVERED, "collected")
    assert cash(first, second) == [Decimal("80.00"), Decimal("15.00")]
    assert sum(cash(first, second)) == order.total
    assert detail(client_for(county["buyer"]), first)["cash_collected"] == "80.00"
    farmer = client_for(first.farmer)
    assert detail(farmer, first)["cash_collected"] is None
    seen = farmer.get(f"/api/v1/orders/{order.pk}/").json()["shipments"]
    assert [s["cash_collected"] for s in seen] == [None]
    bought = client_for(county["buyer"]).get(f"/api/v1/orders/{order.pk}/").json()
    assert sorted(s["cash_collected"] for s in bought["shipments"]) == ["15.00", "80.00"]


def test_a_retried_completion_records_the_cash_once(county, client_for):
    """A driver's phone sends the first delivery again after the second one: recorded again,
    the first would now count its own fee as collected before (80.00, not 85.00)."""
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    staff = client_for(county["staff"])
    stop = deliver(staff, county, first)
    deliver(staff, county, second)

    again = complete(staff, stop, outcome="done", delivery_code=order.delivery_code)

    assert again.status_code == 200
    assert cash(first, second) == [Decimal("85.00"), Decimal("17.00")]
    order.refresh_from_db()
    assert sum(cash(first, second)) == order.total == Decimal("102.00")


def test_a_delivery_recorded_before_cash_was_counts_the_fee_the_rule_owed_then(county, client_for):
    """An order on its way when cash began to be recorded: its first delivery has no cash
    recorded, and counts as having taken its goods and one farm's fee."""
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    staff = client_for(county["staff"])
    deliver(staff, county, first)
    Shipment.objects.filter(pk=first.pk).update(cash_collected=None)

    deliver(staff, county, second)

    assert cash(first, second) == [None, Decimal("17.00")]
    order.refresh_from_db()
    assert Decimal("85.00") + Decimal("17.00") == order.total


def test_the_shipments_list_reads_its_cash_in_as_many_queries_for_any_number(
    county, client_for, django_assert_num_queries
):
    staff = client_for(county["staff"])
    order_of(county, (1, "10.00", 8), (2, "3.00", 5), delivery_method="pickup")

    # the user, the count, the shipments with their orders and cash, legs, events, stops
    with django_assert_num_queries(6):
        few = staff.get("/api/v1/shipments/")
    for _ in range(3):
        _order, shipments = order_of(county, (1, "2.00", 1), delivery_method="pickup")
        at_center(*shipments)
    with django_assert_num_queries(6):
        more = staff.get("/api/v1/shipments/")

    assert (few.json()["count"], more.json()["count"]) == (2, 5)
    assert [s["cash_to_collect"] for s in more.json()["results"][:3]] == ["2.00"] * 3


def test_the_orders_admin_shows_each_shipments_cash_collected(county, client_for):
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    deliver(client_for(county["staff"]), county, first)
    operator = Client()
    operator.force_login(
        User.objects.create_superuser(phone="+8613000000007", password="op-passphrase", name="op")
    )

    page = operator.get(f"/admin/orders/order/{order.pk}/change/")

    assert page.status_code == 200
    shipments = " ".join(page.content.decode().split()).split('id="shipments-group"', 1)[1]
    assert '<th class="column-cash_collected">Cash collected' in shipments
    cells = [c.split("</td>", 1)[0] for c in shipments.split('<td class="field-cash_collected">')]
    assert [cell.strip() for cell in cells[1:]] == ["<p>85.00</p>", "<p>-</p>"]


def test_an_order_delivered_whole_collects_its_total_though_the_fee_rule_changed_since(
    county, client_for, settings
):
    """Placed at 80.00 of goods and 5.00 of fee; free delivery then starts at 50.00 (the
    setting changed with a release): the buyer still owes the 85.00 their order says, and
    the driver is shown and records that, the fee included."""
    order, (shipment,) = order_of(county, (1, "10.00", 8))
    assert order.total == Decimal("85.00")
    settings.FREE_DELIVERY_FROM = Decimal("50.00")
    at_center(shipment)
    staff = client_for(county["staff"])
    stop = stop_for(shipment, county["center"], "delivery")

    assert buyer_contact(staff, stop)["cash_to_collect"] == "85.00"
    done = complete(staff, stop, outcome="done", delivery_code=order.delivery_code)

    assert done.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.total) == (OrderStatus.DELIVERED, Decimal("85.00"))
    assert cash(shipment) == [Decimal("85.00")]


@pytest.mark.parametrize("base_fee", ["6.00", "3.00"])
def test_goods_failing_for_good_after_the_fee_rule_changed_leave_the_total_what_was_taken(
    county, client_for, settings, base_fee
):
    """One farm's goods delivered (80.00 and one farm's fee, 5.00); the fee for a first
    farm then changes (a release); the other farm's goods fail for good, so what came is
    all the order is: it comes to the 85.00 the buyer paid, not to what the rule says now
    (86.00, and the buyer owed 1.00 nobody would take; 83.00, and 2.00 taken too much)."""
    settings.MAX_STOP_ATTEMPTS = 1
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    staff = client_for(county["staff"])
    deliver(staff, county, first)
    settings.DELIVERY_FEE_BASE = Decimal(base_fee)

    failed = complete(
        staff, stop_for(second, county["center"], "delivery"), outcome="failed", reason="没人"
    )

    assert failed.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.delivery_fee, order.total) == (
        OrderStatus.PARTIALLY_DELIVERED,
        Decimal("5.00"),
        Decimal("85.00"),
    )
    assert cash(first, second) == [Decimal("85.00"), None]
    told = Notification.objects.filter(user=county["buyer"]).order_by("pk")
    assert [
        n.data["total"] for n in told if n.kind in ("goods_not_delivered", "order_delivered")
    ] == [
        "85.00",
        "85.00",
    ]


def test_goods_failing_for_good_before_the_rest_came_leave_them_the_fee_the_rule_says_now(
    county, client_for, settings
):
    """Three farms' 20.00 each (9.00 of fee). The first is delivered (5.00 of fee taken);
    the fee for a first farm is then 6.00; the third fails for good while the second is
    still to come: the order is 7.00 + 1.00 of fee by the rule now, and the second's
    hand-over takes its goods and what is left of it."""
    settings.MAX_STOP_ATTEMPTS = 1
    order, (first, second, third) = order_of(
        county, (1, "10.00", 2), (2, "10.00", 2), (3, "10.00", 2)
    )
    at_center(first, second, third)
    staff = client_for(county["staff"])
    deliver(staff, county, first)
    settings.DELIVERY_FEE_BASE = Decimal("6.00")

    failed = complete(
        staff, stop_for(third, county["center"], "delivery"), outcome="failed", reason="没人"
    )
    assert failed.status_code == 200
    deliver(staff, county, second)

    order.refresh_from_db()
    assert (order.status, order.total) == (OrderStatus.PARTIALLY_DELIVERED, Decimal("48.00"))
    assert cash(first, second, third) == [Decimal("25.00"), Decimal("23.00"), None]


def test_a_stop_after_one_locked_by_wrong_codes_shows_what_its_completion_records(
    county, client_for
):
    """Two stops at the buyer's on one route; the first is locked by wrong codes (staff
    must review it, the driver goes on): its goods are not handed over, so the second
    shows, and records, its goods with one farm's fee."""
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    route = Route.objects.create(service_center=county["center"], date=timezone.localdate())
    stops = stops_each(route, "delivery", (first, second))
    Stop.objects.filter(pk=stops[0].pk).update(status="locked", wrong_code_attempts=5)
    staff = client_for(county["staff"])

    shown = [buyer_contact(staff, stop)["cash_to_collect"] for stop in stops]
    done = complete(staff, stops[1], outcome="done", delivery_code=order.delivery_code)

    assert done.status_code == 200, done.json()
    assert shown == ["85.00", "20.00"]
    assert cash(first, second) == [None, Decimal("20.00")]


def test_stops_done_out_of_their_order_take_the_cash_each_showed(county, client_for):
    """Two stops at the buyer's on one route, each shown as if done in visiting order
    (85.00, then 17.00: the second farm's goods and the fee's second-farm part). Done the
    other way round, each takes what it showed, not what the rule says of the goods handed
    over by then (20.00: one farm's goods and fee, then 82.00): the driver takes what the
    route told them, the completion's answer says the same, and the two add up to the
    order's total."""
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    route = Route.objects.create(service_center=county["center"], date=timezone.localdate())
    stops = stops_each(route, "delivery", (first, second))
    staff = client_for(county["staff"])
    shown = [buyer_contact(staff, stop)["cash_to_collect"] for stop in stops]

    answers = [
        complete(staff, stop, outcome="done", delivery_code=order.delivery_code)
        for stop in reversed(stops)
    ]

    assert shown == ["85.00", "17.00"]
    assert [(a.status_code, a.json()["cash_collected"]) for a in answers] == [
        (200, "17.00"),
        (200, "85.00"),
    ]
    assert cash(first, second) == [Decimal("85.00"), Decimal("17.00")]
    assert route_cash(staff, route) == ("0.00", "102.00")
    order.refresh_from_db()
    assert (order.status, order.total) == (OrderStatus.DELIVERED, Decimal("102.00"))
    replayed = complete(staff, stops[1], outcome="done", delivery_code=order.delivery_code)
    assert (replayed.status_code, replayed.json()["cash_collected"]) == (200, "17.00")


def test_the_first_stop_failing_for_good_after_the_second_leaves_the_total_what_was_taken(
    county, client_for, settings
):
    """The second stop done first takes what it showed (17.00: no first-farm fee); the first
    then fails for good, so the second farm's goods are all that came: the order comes to
    the 17.00 taken, not to the 20.00 the fee rule says of them alone."""
    settings.MAX_STOP_ATTEMPTS = 1
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    route = Route.objects.create(service_center=county["center"], date=timezone.localdate())
    stops = stops_each(route, "delivery", (first, second))
    staff = client_for(county["staff"])

    done = complete(staff, stops[1], outcome="done", delivery_code=order.delivery_code)
    failed = complete(staff, stops[0], outcome="failed", reason="没人")

    assert (done.status_code, failed.status_code) == (200, 200)
    order.refresh_from_db()
    assert (order.status, order.delivery_fee, order.total) == (
        OrderStatus.PARTIALLY_DELIVERED,
        Decimal("2.00"),
        Decimal("17.00"),
    )
    assert cash(first, second) == [None, Decimal("17.00")]


def test_a_pickups_answer_has_no_cash(county, client_for):
    _order, (shipment,) = order_of(county, (1, "10.00", 8))
    stop = stop_for(shipment, county["center"], "pickup")

    done = complete(client_for(county["staff"]), stop, outcome="done", weight_kg="8")

    assert (done.status_code, done.json()["cash_collected"]) == (200, None)
