"""An order's `refund_due`: what its buyer paid and was not paid back beyond what the order
costs now, shown to the buyer and staff ("0.00" when nothing is owed), null for its farmers;
and the refunds the payment provider reports, which lower it."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from marketplace.exceptions import DomainError
from orders import payments, services
from orders.models import Notification, Order, OrderStatus, PaymentEvent
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

pytestmark = pytest.mark.django_db
ORDERS = "/api/v1/orders/"


@pytest.fixture
def world():
    """A buyer, two farmers and the staff of their one center; A sells at 10.00, B at 4.00."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    farmer_a, farmer_b = FarmerFactory(village=village), FarmerFactory(village=village)
    return {
        "buyer": BuyerFactory(village=village),
        "farmer_a": farmer_a,
        "farmer_b": farmer_b,
        "staff": StaffFactory(service_center=center),
        "a": create_listing(farmer_a, price=Decimal("10.00")),
        "b": create_listing(farmer_b, price=Decimal("4.00")),
    }


def place(world, payment_method="prepaid") -> Order:
    """2 × 10.00 from A, 3 × 4.00 from B, home delivery from two farmers 7.00: 39.00."""
    lines = (world["a"], 2), (world["b"], 3)
    return place_order(world["buyer"], *lines, payment_method=payment_method)


def pay(order: Order, *, amount: str = "39.00", event_id: str = "evt_1") -> Order:
    return provider_notice(order, amount, event_id=event_id)


def refund(order: Order, amount: str, *, event_id: str = "rf_1", currency: str = "CNY") -> Order:
    """The provider's notice that it paid `amount` back to the buyer."""
    return provider_notice(
        order, amount, kind="refund.succeeded", event_id=event_id, currency=currency
    )


def refunds_told(order: Order) -> list[tuple[int, dict]]:
    told = Notification.objects.filter(order=order, kind="refund_sent").order_by("id")
    return list(told.values_list("user_id", "data"))


def seen_by(client_for, user, order) -> dict:
    answer = client_for(user).get(f"{ORDERS}{order.pk}/")
    assert answer.status_code == 200
    return answer.json()


def refund_seen(client_for, world, order) -> dict[str, str | None]:
    return {
        who: seen_by(client_for, world[who], order)["refund_due"]
        for who in ("buyer", "staff", "farmer_a", "farmer_b")
    }


def owed(amount: str) -> dict[str, str | None]:
    return {"buyer": amount, "staff": amount, "farmer_a": None, "farmer_b": None}


def test_a_line_rejected_after_payment_is_owed_back(client_for, world):
    order = place(world)
    assert refund_seen(client_for, world, order) == owed("0.00")  # not paid yet
    pay(order)
    assert refund_seen(client_for, world, order) == owed("0.00")  # paid what it costs
    line_b = order.lines.get(listing=world["b"])
    rejected = client_for(world["farmer_b"]).post(
        f"{ORDERS}{order.pk}/lines/{line_b.pk}/reject/", {"reason": "坏了"}, format="json"
    )
    assert rejected.status_code == 200
    assert rejected.json()["refund_due"] is None  # the farmer's own answer
    # 12.00 of goods and 2.00 of the second farmer's delivery: 39.00 paid, 25.00 due
    assert refund_seen(client_for, world, order) == owed("14.00")
    mine = seen_by(client_for, world["buyer"], order)
    assert (mine["total"], mine["payment_status"]) == ("25.00", "paid")


def test_goods_not_delivered_after_payment_are_owed_back(client_for, world):
    order = place(world)
    pay(order)
    services.order_lines_not_delivered(
        order_id=order.pk,
        farmer_ids=[world["farmer_a"].pk],
        restock_farmer_ids=[world["farmer_a"].pk],
        reason="路断了",
    )
    # 20.00 of goods and 2.00 of delivery: 39.00 paid, 17.00 due
    assert refund_seen(client_for, world, order) == owed("22.00")


def test_an_order_cancelled_after_payment_owes_back_all_that_was_paid(client_for, world):
    order = place(world)
    pay(order)
    cancelled = client_for(world["buyer"]).post(
        f"{ORDERS}{order.pk}/cancel/", {"reason": "不要了"}, format="json"
    )
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["refund_due"]) == ("cancelled", "39.00")
    assert refund_seen(client_for, world, order) == owed("39.00")


def test_a_payment_arriving_after_the_expiry_is_owed_back(client_for, world):
    order = place(world)
    Order.objects.filter(pk=order.pk).update(payment_due_at=timezone.now() - timedelta(minutes=1))
    assert payments.orders_expire_unpaid() == 1
    assert refund_seen(client_for, world, order) == owed("0.00")  # cancelled, never paid
    pay(order)
    fresh = Order.objects.get(pk=order.pk)
    assert (fresh.status, fresh.payment_status) == (OrderStatus.CANCELLED, "paid")
    assert refund_seen(client_for, world, order) == owed("39.00")


def test_an_order_paid_twice_owes_the_second_payment_back(client_for, world):
    order = place(world)
    pay(order, event_id="evt_1")
    pay(order, event_id="evt_2")  # the buyer paid again; recorded, not applied
    assert PaymentEvent.objects.filter(order=order).count() == 2
    assert refund_seen(client_for, world, order) == owed("39.00")
    pay(order, event_id="evt_2")  # the provider re-sends an event: nothing more is owed
    assert refund_seen(client_for, world, order) == owed("39.00")


def test_a_failed_order_owes_back_all_that_was_paid(client_for, world):
    order = place(world)
    pay(order)
    services.order_transition(order=services.order_lock(order.pk), to_status=OrderStatus.FAILED)
    assert refund_seen(client_for, world, order) == owed("39.00")


def test_other_kinds_of_payment_event_are_no_payment(client_for, world):
    order = place(world)
    provider_notice(order, "39.00", kind="payment.failed")
    services.order_cancel(order_id=order.pk, actor=world["buyer"])
    assert refund_seen(client_for, world, order) == owed("0.00")


def test_cash_on_delivery_owes_nothing_back(client_for, world):
    order = place(world, payment_method="cod")
    line_b = order.lines.get(listing=world["b"])
    services.order_line_reject(
        order_id=order.pk, line_id=line_b.pk, farmer=world["farmer_b"], reason="坏了"
    )
    assert refund_seen(client_for, world, order) == owed("0.00")
    services.order_cancel(order_id=order.pk, actor=world["buyer"])
    assert refund_seen(client_for, world, order) == owed("0.00")


def test_money_the_provider_reports_for_a_cash_order_is_all_owed_back(client_for, world):
    """The buyer pays a cash-on-delivery order in cash at the door: a payment the provider
    reports for it anyway was paid on top of that, and owed back whole. It read as paying
    for the order ("0.00" owed) while the driver still collected the total in cash."""
    order = place(world, payment_method="cod")
    pay(order)
    assert refund_seen(client_for, world, order) == owed("39.00")
    refund(order, "9.00")
    assert refund_seen(client_for, world, order) == owed("30.00")
    services.order_cancel(order_id=order.pk, actor=world["buyer"])
    assert refund_seen(client_for, world, order) == owed("30.00")


def test_the_list_shows_each_orders_refund(client_for, world):
    paid_and_cancelled, unpaid = place(world), place(world)
    pay(paid_and_cancelled)
    services.order_cancel(order_id=paid_and_cancelled.pk, actor=world["buyer"])
    listed = client_for(world["buyer"]).get(ORDERS).json()["results"]
    assert [(x["id"], x["refund_due"]) for x in listed] == [
        (unpaid.pk, "0.00"),
        (paid_and_cancelled.pk, "39.00"),
    ]
    placed = client_for(world["buyer"]).post(
        ORDERS,
        {
            "lines": [{"listing": world["a"].pk, "quantity": "1"}],
            "delivery_method": "pickup",
            "payment_method": "prepaid",
        },
        format="json",
    )
    assert (placed.status_code, placed.json()["refund_due"]) == (201, "0.00")


def test_a_refund_lowers_what_is_owed_and_tells_the_buyer(client_for, world):
    order = place(world)
    pay(order)
    services.order_cancel(order_id=order.pk, actor=world["buyer"])
    assert refund_seen(client_for, world, order) == owed("39.00")

    refund(order, "30.00", event_id="rf_1")
    assert refund_seen(client_for, world, order) == owed("9.00")
    refund(order, "9.00", event_id="rf_2")
    assert refund_seen(client_for, world, order) == owed("0.00")

    fresh = Order.objects.get(pk=order.pk)
    assert (fresh.status, fresh.payment_status) == (OrderStatus.CANCELLED, "paid")  # it was
    assert list(PaymentEvent.objects.filter(order=order).values_list("kind", "amount")) == [
        ("payment.succeeded", Decimal("39.00")),
        ("refund.succeeded", Decimal("30.00")),
        ("refund.succeeded", Decimal("9.00")),
    ]
    buyer = world["buyer"].pk
    assert refunds_told(order) == [
        (buyer, {"order": order.pk, "amount": "30.00"}),
        (buyer, {"order": order.pk, "amount": "9.00"}),
    ]
    body = Notification.objects.filter(kind="refund_sent").order_by("id").first().body
    assert body == f"订单 #{order.pk} 已退款 ¥30.00，请留意到账。"


def test_a_refund_of_a_rejected_line_leaves_the_order_going(client_for, world):
    order = place(world)
    pay(order)
    line_b = order.lines.get(listing=world["b"])
    services.order_line_reject(
        order_id=order.pk, line_id=line_b.pk, farmer=world["farmer_b"], reason="坏了"
    )
    assert refund_seen(client_for, world, order) == owed("14.00")
    refund(order, "14.00")
    assert refund_seen(client_for, world, order) == owed("0.00")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PLACED


def test_the_same_refund_sent_again_counts_once(client_for, world):
    order = place(world)
    pay(order)
    services.order_cancel(order_id=order.pk, actor=world["buyer"])
    refund(order, "39.00")
    again = refund(order, "39.00")  # the provider's retry: nothing held is left, yet no error

    assert again.pk == order.pk
    assert PaymentEvent.objects.filter(order=order, kind="refund.succeeded").count() == 1
    assert len(refunds_told(order)) == 1
    assert refund_seen(client_for, world, order) == owed("0.00")


def test_money_given_back_beyond_what_is_due_owes_nothing_more(client_for, world):
    """Staff may pay back something for goods the buyer was unhappy with: not owed, but
    refunded; nothing is owed back then, and never less than nothing."""
    order = place(world)
    pay(order)
    refund(order, "5.00")
    assert refund_seen(client_for, world, order) == owed("0.00")
    services.order_cancel(order_id=order.pk, actor=world["buyer"])
    assert refund_seen(client_for, world, order) == owed("34.00")


@pytest.mark.parametrize(
    ("amount", "currency", "refundable"),
    [
        pytest.param("39.01", "CNY", "39.00", id="more-than-paid"),
        pytest.param("0.00", "CNY", "39.00", id="nothing"),
        pytest.param("39.00", "USD", "39.00", id="currency"),
    ],
)
def test_a_refund_that_cannot_be_is_refused_and_nothing_changes(
    client_for, world, amount, currency, refundable
):
    order = place(world)
    pay(order)
    services.order_cancel(order_id=order.pk, actor=world["buyer"])

    with pytest.raises(DomainError) as refused:
        refund(order, amount, currency=currency)

    assert (refused.value.code, refused.value.status_code) == ("refund_amount_invalid", 400)
    assert refused.value.extra == {"refundable": refundable, "received": amount}
    assert PaymentEvent.objects.filter(order=order, kind="refund.succeeded").count() == 0
    assert refunds_told(order) == []
    assert refund_seen(client_for, world, order) == owed("39.00")


def test_nothing_paid_nothing_refunded(world):
    cod, unpaid = place(world, payment_method="cod"), place(world)
    for order in (cod, unpaid):
        with pytest.raises(DomainError) as refused:
            refund(order, "1.00")
        assert refused.value.code == "refund_amount_invalid"
    assert PaymentEvent.objects.count() == 0
    assert Notification.objects.filter(kind="refund_sent").count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_refunds_at_once_never_pay_back_more_than_was_paid(client_for, world, monkeypatch):
    """30.00 and 30.00 of 39.00 paid, as two events: the second arrives while the first is
    recorded and not yet committed. The order's lock puts it behind the first, and it finds
    only 9.00 left to refund."""
    order = place(world)
    pay(order)
    services.order_cancel(order_id=order.pk, actor=world["buyer"])
    first_inside, outcomes = threading.Event(), {}
    tell = payments.notifications.notify_refund_sent

    def tell_slowly(order, amount):
        told = tell(order, amount)
        if not first_inside.is_set():
            first_inside.set()
            time.sleep(0.5)  # its transaction still open: the event not yet committed
        return told

    monkeypatch.setattr(payments.notifications, "notify_refund_sent", tell_slowly)

    def send(event_id: str) -> None:
        try:
            outcomes[event_id] = refund(order, "30.00", event_id=event_id).pk
        except DomainError as error:
            outcomes[event_id] = error.code
        finally:
            connection.close()

    first = threading.Thread(target=send, args=("rf_1",))
    first.start()
    assert first_inside.wait(10)
    send("rf_2")
    first.join(10)

    assert outcomes == {"rf_1": order.pk, "rf_2": "refund_amount_invalid"}
    assert PaymentEvent.objects.filter(order=order, kind="refund.succeeded").count() == 1
    assert len(refunds_told(order)) == 1
    assert refund_seen(client_for, world, order) == owed("9.00")


def test_the_schema_says_refund_due_is_a_decimal_string_or_null(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    order = schema["components"]["schemas"]["Order"]
    assert "refund_due" in order["required"]
    field = order["properties"]["refund_due"]
    assert (field["type"], field["format"], field["nullable"], field["readOnly"]) == (
        "string",
        "decimal",
        True,
        True,
    )


def told_to_refund(order: Order) -> list[tuple[int, dict]]:
    told = Notification.objects.filter(order=order, kind="payment_to_refund").order_by("id")
    return list(told.values_list("user_id", "data"))


def test_a_buyer_whose_payment_came_after_the_cancel_is_told_it_will_be_paid_back(world):
    """The money reached the provider after the order was called off: the buyer, who sees
    "cancelled" and was charged all the same, is told once that it is owed back; its
    farmers, who never heard of the unpaid order, are told nothing."""
    order = place(world)
    services.order_cancel(order_id=order.pk, actor=world["buyer"], reason="不要了")
    pay(order)
    pay(order)  # the provider sends the same event again: told once

    assert told_to_refund(order) == [
        (world["buyer"].pk, {"order": order.pk, "amount": "39.00", "refund_due": "39.00"})
    ]
    assert not Notification.objects.filter(
        user__in=[world["farmer_a"], world["farmer_b"]], order=order
    ).exists()


def test_a_buyer_who_paid_twice_is_told_the_second_payment_will_be_paid_back(world):
    order = place(world)
    pay(order, event_id="evt_1")
    assert told_to_refund(order) == []  # the payment the order waited for
    pay(order, event_id="evt_2")
    assert told_to_refund(order) == [
        (world["buyer"].pk, {"order": order.pk, "amount": "39.00", "refund_due": "39.00"})
    ]


def told_of_refund(order: Order) -> list[tuple[int, str, str]]:
    """Whom a notification about the order told that money would be paid back, how much,
    and in which kind of notification."""
    told = Notification.objects.filter(order=order, data__has_key="refund_due").order_by("id")
    return [
        (n.user_id, n.kind, n.data["refund_due"]) for n in told if n.data["refund_due"] != "0.00"
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["payment", "cancel"])
def test_a_payment_and_a_cancel_at_once_tell_the_buyer_once_of_the_refund(
    world, monkeypatch, first
):
    """The buyer pays and calls the order off at the same moment. Whichever takes the
    order's lock first, the other waits for it, and the order ends cancelled, paid, with all
    39.00 owed back; and the buyer is told so once: by the payment that finds the order
    cancelled (payment_to_refund), or by the cancel of the order paid (order_cancelled)."""
    order = place(world)
    first_inside = threading.Event()
    slowed = "notify_payment_received" if first == "payment" else "notify_order_cancelled"
    tell = getattr(payments.notifications, slowed)

    def tell_slowly(*args, **kwargs):
        told = tell(*args, **kwargs)
        first_inside.set()
        time.sleep(0.5)  # its transaction still open, the order still locked
        return told

    monkeypatch.setattr(payments.notifications, slowed, tell_slowly)
    calls = {
        "payment": lambda: pay(order),
        "cancel": lambda: services.order_cancel(order_id=order.pk, actor=world["buyer"]),
    }

    def run_first() -> None:
        try:
            calls[first]()
        finally:
            connection.close()

    thread = threading.Thread(target=run_first)
    thread.start()
    assert first_inside.wait(10)
    calls["cancel" if first == "payment" else "payment"]()  # waits for the order's lock
    thread.join(10)

    order.refresh_from_db()
    assert (order.status, order.payment_status) == (OrderStatus.CANCELLED, "paid")
    kind = "order_cancelled" if first == "payment" else "payment_to_refund"
    assert told_of_refund(order) == [(world["buyer"].pk, kind, "39.00")]
    if first == "payment":
        told = Notification.objects.get(order=order, kind="order_cancelled", user=world["buyer"])
        assert told.body == f"订单 #{order.pk} 已取消。已付的 ¥39.00 将退还给您。"


def test_a_buyer_who_paid_for_goods_taken_out_of_the_order_is_told_what_comes_back(world):
    """39.00 paid; farmer B turns down their line (12.00 of goods and 2.00 of the fee), then
    farmer A's goods fail for good: each time the buyer is told the new total and what of
    their money is owed back now, as a cancel or a failed order tells them."""
    order = place(world)
    pay(order)
    line_b = order.lines.get(listing=world["b"])
    services.order_line_reject(
        order_id=order.pk, line_id=line_b.pk, farmer=world["farmer_b"], reason="坏了"
    )
    services.order_lines_not_delivered(
        order_id=order.pk,
        farmer_ids=[world["farmer_a"].pk],
        restock_farmer_ids=[world["farmer_a"].pk],
        reason="路断了",
    )

    assert told_of_refund(order) == [
        (world["buyer"].pk, "line_rejected", "14.00"),
        (world["buyer"].pk, "goods_not_delivered", "39.00"),
    ]
    rejected = Notification.objects.get(order=order, kind="line_rejected")
    assert rejected.body.endswith("该商品不收费，订单合计 ¥25.00。多付的 ¥14.00 将退还给您。")
    failed = Notification.objects.get(order=order, kind="goods_not_delivered", user=world["buyer"])
    assert failed.body.endswith("不收费，订单合计 ¥0.00。多付的 ¥39.00 将退还给您。")
