"""Prepaid orders: the signed payment webhook, once per event id, and the expiry of unpaid
orders with their stock given back, against the real PostgreSQL, Redis and a Celery worker."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

import orders.payments
import orders.services
from listings.models import Listing
from listings.services import listing_update
from marketplace.celery import app as celery_app
from orders.models import Notification, Order, OrderEvent, OrderStatus, PaymentEvent
from orders.tasks import expire_unpaid_orders
from tests.factories import BuyerFactory, create_listing, place_order

WEBHOOK = "/api/v1/payments/webhook/"
SECRET = "test-webhook-secret-0123456789abcdef"
BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.PAYMENT_PROVIDER = "sandbox"
    settings.PAYMENT_WEBHOOK_SECRET = SECRET
    settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300


def new_listing():
    return create_listing(quantity_available=Decimal("10"), price=Decimal("10.00"))


def place_prepaid(listing):
    """2 × 10.00 plus 5.00 home delivery: 25.00 to pay."""
    return place_order(BuyerFactory(), (listing, 2), payment_method="prepaid")


def notice(order_id, *, event_id="evt_1", amount="25.00", currency="CNY", kind=None) -> bytes:
    body = {
        "id": event_id,
        "type": kind or "payment.succeeded",
        "order": order_id,
        "amount": amount,
        "currency": currency,
    }
    return json.dumps(body).encode()


def changed(**fields) -> bytes:
    """A notice body with some fields changed."""
    body = {"id": "evt_1", "type": "payment.succeeded", "order": 1, "amount": "25.00"}
    return json.dumps({**body, "currency": "CNY", **fields}).encode()


def sign(raw: bytes, *, at=None, secret=SECRET) -> str:
    """What the provider sends, computed here independently of the code under test."""
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def upper_hex(header: str) -> str:
    timestamp, mac = header.split(",")
    return f"{timestamp},v1={mac.removeprefix('v1=').upper()}"


def signed_for_another_second(raw: bytes) -> str:
    """A genuine signature, but of the body at another time than the header claims."""
    now = int(time.time())
    return f"t={now}," + sign(raw, at=now - 1).split(",")[1]


def deliver(api, raw: bytes, signature: str | None = None):
    headers = {} if signature is None else {"HTTP_X_SIGNATURE": signature}
    return api.post(WEBHOOK, data=raw, content_type="application/json", **headers)


def quantity(listing) -> Decimal:
    return Listing.objects.get(pk=listing.pk).quantity_available


def transitions(order) -> list[tuple[str, str, str]]:
    return list(
        OrderEvent.objects.filter(order=order).values_list("from_status", "to_status", "reason")
    )


def told(order) -> list[tuple[str, int]]:
    """Who was told what about the order, in order."""
    notices = Notification.objects.filter(order=order).order_by("id")
    return list(notices.values_list("kind", "user_id"))


def api_refund_due(order) -> Decimal:
    """What the buyer is owed back, as the buyer reads it."""
    client = APIClient()
    client.force_authenticate(order.buyer)
    return Decimal(client.get(f"/api/v1/orders/{order.pk}/").json()["refund_due"])


def assert_untouched(order, listing):
    """Still exactly as order_place left it."""
    fresh = Order.objects.get(pk=order.pk)
    assert (fresh.status, fresh.payment_status, fresh.paid_at) == (
        OrderStatus.AWAITING_PAYMENT,
        "unpaid",
        None,
    )
    assert transitions(order) == [("", "awaiting_payment", "placed")]
    assert PaymentEvent.objects.count() == 0
    assert told(order) == [("order_placed", fresh.buyer_id)]
    assert quantity(listing) == Decimal("8.000")


@pytest.mark.django_db
class TestWebhook:
    def test_a_signed_payment_places_the_order(self, api):
        listing = new_listing()
        order = place_prepaid(listing)
        assert order.total == Decimal("25.00")
        raw = notice(order.pk)

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 200, response.content
        assert response.json() == {"received": True, "order": order.pk, "status": "placed"}
        order.refresh_from_db()
        assert (order.status, order.payment_status) == ("placed", "paid")
        assert order.paid_at is not None
        assert transitions(order) == [
            ("", "awaiting_payment", "placed"),
            ("awaiting_payment", "placed", "paid via sandbox"),
        ]
        assert order.events.get(to_status="placed", from_status="awaiting_payment").actor is None
        event = PaymentEvent.objects.get()
        assert (event.provider, event.event_id, event.order_id, event.kind) == (
            "sandbox",
            "evt_1",
            order.pk,
            "payment.succeeded",
        )
        assert (event.amount, event.currency) == (Decimal("25.00"), "CNY")
        assert event.payload == json.loads(raw)
        assert quantity(listing) == Decimal("8.000")  # paid: the stock stays taken
        # The buyer hears of the payment; the farmer of the order, only now it is paid.
        assert told(order) == [
            ("order_placed", order.buyer_id),
            ("payment_received", order.buyer_id),
            ("order_placed", listing.farmer_id),
        ]

    def test_the_same_event_again_changes_nothing(self, api):
        order = place_prepaid(new_listing())
        raw = notice(order.pk)
        signature = sign(raw)
        assert deliver(api, raw, signature).status_code == 200
        paid_at = Order.objects.get(pk=order.pk).paid_at

        replayed = deliver(api, raw, signature)  # the very same request
        resent = deliver(api, raw, sign(raw))  # the provider's retry, freshly signed

        for response in (replayed, resent):
            assert response.status_code == 200
            assert response.json() == {"received": True, "order": order.pk, "status": "placed"}
        assert PaymentEvent.objects.count() == 1
        assert order.events.filter(from_status="awaiting_payment", to_status="placed").count() == 1
        assert Order.objects.get(pk=order.pk).paid_at == paid_at
        assert len(told(order)) == 3  # nobody is told twice

    def test_another_event_for_a_paid_order_is_kept_and_not_applied(self, api):
        order = place_prepaid(new_listing())
        first, second = notice(order.pk, event_id="evt_1"), notice(order.pk, event_id="evt_2")
        deliver(api, first, sign(first))
        response = deliver(api, second, sign(second))
        assert response.status_code == 200
        assert response.json()["status"] == "placed"
        assert list(PaymentEvent.objects.values_list("event_id", flat=True)) == ["evt_1", "evt_2"]
        assert order.events.filter(to_status="placed").count() == 1

    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({"order": "second"}, id="another-order"),
            pytest.param({"amount": "24.00"}, id="another-amount"),
            pytest.param({"kind": "refund.succeeded"}, id="another-kind"),
        ],
    )
    def test_an_event_id_sent_again_saying_something_else_is_409_and_recorded_nowhere(
        self, api, changes
    ):
        """Not the provider's retry of the first (that is 200, changing nothing): answering
        it "received" would have the provider drop a notice nothing recorded."""
        listing = new_listing()
        first, second = place_prepaid(listing), place_prepaid(listing)
        raw = notice(first.pk)
        assert deliver(api, raw, sign(raw)).status_code == 200
        fields = {**changes, "order": second.pk} if "order" in changes else changes
        other = notice(fields.pop("order", first.pk), **fields)

        response = deliver(api, other, sign(other))

        assert response.status_code == 409, response.content
        assert (response.json()["code"], response.json()["event_id"]) == (
            "event_id_reused",
            "evt_1",
        )
        assert list(PaymentEvent.objects.values_list("event_id", "order_id", "amount")) == [
            ("evt_1", first.pk, Decimal("25.00"))
        ]
        fresh = Order.objects.get(pk=second.pk)
        assert (fresh.status, fresh.payment_status) == (OrderStatus.AWAITING_PAYMENT, "unpaid")
        assert transitions(second) == [("", "awaiting_payment", "placed")]
        assert Order.objects.get(pk=first.pk).payment_status == "paid"
        assert quantity(listing) == Decimal("6.000")
        assert deliver(api, raw, sign(raw)).status_code == 200  # the real retry still is

    @pytest.mark.parametrize(
        "make_signature",
        [
            pytest.param(lambda raw: sign(raw, secret="another-secret-0123456789abcdef"), id="key"),
            pytest.param(lambda raw: None, id="no-header"),
            pytest.param(lambda raw: "", id="empty"),
            pytest.param(lambda raw: "garbage", id="garbage"),
            pytest.param(lambda raw: sign(raw).split(",")[1], id="no-timestamp"),
            pytest.param(lambda raw: sign(raw).split(",")[0], id="no-v1"),
            pytest.param(lambda raw: sign(raw).replace("t=", "t=x"), id="bad-timestamp"),
            pytest.param(lambda raw: f"t=1,{sign(raw)}", id="two-timestamps"),
            pytest.param(lambda raw: sign(raw)[:-1] + "é", id="not-hex"),
            pytest.param(lambda raw: upper_hex(sign(raw)), id="uppercase-hex"),
            pytest.param(signed_for_another_second, id="other-timestamp"),
            pytest.param(lambda raw: sign(raw + b" "), id="other-body"),
        ],
    )
    def test_a_wrong_signature_is_401_and_nothing_changes(self, api, make_signature):
        listing = new_listing()
        order = place_prepaid(listing)
        raw = notice(order.pk)

        response = deliver(api, raw, make_signature(raw))

        assert response.status_code == 401, response.content
        assert response.json()["code"] == "invalid_signature"
        assert_untouched(order, listing)

    def test_a_tampered_body_with_the_original_signature_is_401(self, api):
        listing = new_listing()
        order = place_prepaid(listing)
        signature = sign(notice(order.pk, amount="1.00"))
        tampered = notice(order.pk, amount="25.00")

        response = deliver(api, tampered, signature)

        assert response.status_code == 401
        assert response.json()["code"] == "invalid_signature"
        assert_untouched(order, listing)

    # A past timestamp is exact at 301 s: `int()` only makes it older. A future one
    # shrinks towards the window while the request travels, so it gets 10 s of slack.
    @pytest.mark.parametrize("age", [301, 3600, -310, -3600])
    def test_a_timestamp_outside_the_window_is_401_signature_expired(self, api, age):
        listing = new_listing()
        order = place_prepaid(listing)
        raw = notice(order.pk)

        response = deliver(api, raw, sign(raw, at=int(time.time()) - age))

        assert response.status_code == 401
        assert response.json()["code"] == "signature_expired"
        assert_untouched(order, listing)

    def test_a_timestamp_inside_the_window_is_accepted(self, api):
        order = place_prepaid(new_listing())
        raw = notice(order.pk)
        response = deliver(api, raw, sign(raw, at=int(time.time()) - 290))
        assert response.status_code == 200
        assert response.json()["status"] == "placed"

    def test_while_the_secret_rotates_one_matching_signature_of_several_is_enough(self, api):
        order = place_prepaid(new_listing())
        raw = notice(order.pk)
        old = sign(raw, secret="the-previous-secret-0123456789abcdef").split(",")[1]
        response = deliver(api, raw, f"{sign(raw)},{old}")
        assert response.status_code == 200
        assert response.json()["status"] == "placed"

    @pytest.mark.parametrize(
        ("amount", "currency"), [("24.99", "CNY"), ("25.01", "CNY"), ("25.00", "USD")]
    )
    def test_a_wrong_amount_is_400_and_nothing_changes(self, api, amount, currency):
        listing = new_listing()
        order = place_prepaid(listing)
        raw = notice(order.pk, amount=amount, currency=currency)

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 400
        body = response.json()
        assert (body["code"], body["expected"], body["received"]) == (
            "payment_amount_mismatch",
            "25.00",
            amount,
        )
        assert_untouched(order, listing)  # the event row was rolled back with the rest

    def test_an_unknown_order_is_400_unknown_order(self, api):
        listing = new_listing()
        order = place_prepaid(listing)
        raw = notice(order.pk + 1000)

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 400
        assert (response.json()["code"], response.json()["order"]) == (
            "unknown_order",
            order.pk + 1000,
        )
        assert_untouched(order, listing)

    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"\xff\xfe",
            b"[1, 2]",
            b'{"id": "evt_1"}',
            changed(id=""),
            changed(id="e" * 101),
            changed(order="1"),
            changed(order=True),
            changed(order=2**63),
            changed(amount=25.0),
            changed(amount="25.001"),
            changed(amount="NaN"),
            changed(amount="-25.00"),
            changed(currency="cny"),
            # `$` matches before a final newline: four characters, beyond the column's three
            changed(currency="CNY\n"),
            changed(currency="USD\n", type="payment.failed"),
            changed(extra=float("nan")),
            # text PostgreSQL cannot store, anywhere in the payload it keeps
            changed(id="evt\x001"),
            changed(type="payment.succeeded\x00"),
            changed(extra={"note": ["fine", "not\x00fine"]}),
            changed(extra={"\ud800": 1}),
            changed(extra="\udfff"),
        ],
    )
    def test_a_signed_body_that_is_no_notice_is_400_parse_error(self, api, raw):
        listing = new_listing()
        order = place_prepaid(listing)

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 400, response.content
        assert response.json()["code"] == "parse_error"
        assert_untouched(order, listing)

    @pytest.mark.parametrize("number", [b"1e400", b"-1e400"])
    def test_a_number_beyond_a_double_anywhere_is_400_parse_error(self, api, number):
        """Python reads 1e400 as infinity, which the stored payload (jsonb) cannot hold:
        it failed the insert with a 500 after everything else was checked."""
        listing = new_listing()
        order = place_prepaid(listing)
        raw = notice(order.pk)[:-1] + b', "extra": ' + number + b"}"

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 400, response.content
        assert response.json()["code"] == "parse_error"
        assert_untouched(order, listing)

    def test_a_payment_for_a_cancelled_order_shows_as_paid_and_places_nothing(self, api):
        listing = new_listing()
        order = place_prepaid(listing)
        orders.services.order_cancel(order_id=order.pk, actor=order.buyer, reason="no")
        raw = notice(order.pk)

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 200
        assert response.json() == {"received": True, "order": order.pk, "status": "cancelled"}
        order.refresh_from_db()
        # "cancelled, paid": the money came, a refund is owed
        assert (order.status, order.payment_status) == ("cancelled", "paid")
        assert order.paid_at is not None
        assert [to for _, to, _ in transitions(order)] == ["awaiting_payment", "cancelled"]
        assert PaymentEvent.objects.get().order_id == order.pk  # the evidence for a refund
        assert quantity(listing) == Decimal("10.000")

        again = deliver(
            api, notice(order.pk, event_id="evt_2"), sign(notice(order.pk, event_id="evt_2"))
        )
        assert again.status_code == 200
        assert Order.objects.get(pk=order.pk).paid_at == order.paid_at  # paid once

    def test_money_paid_for_an_order_no_longer_awaiting_it_is_recorded_whatever_the_amount(
        self, api
    ):
        """Paid, then a line rejected (the total drops from 39.00 to 25.00), then the
        provider reports a second charge of the quoted 39.00, and one of 7.50 for the
        cancelled order: both are kept as money held, for refund_due; only the currency
        and a positive amount are checked."""
        listing = new_listing()
        other = create_listing(quantity_available=Decimal("10"), price=Decimal("4.00"))
        order = place_order(BuyerFactory(), (listing, 2), (other, 3), payment_method="prepaid")
        assert order.total == Decimal("39.00")  # 20.00 + 12.00 + 7.00 from two farmers
        first = notice(order.pk, amount="39.00")
        assert deliver(api, first, sign(first)).status_code == 200
        orders.services.order_line_reject(
            order_id=order.pk,
            line_id=order.lines.get(listing=other).pk,
            farmer=other.farmer,
            reason="none left",
        )
        assert Order.objects.get(pk=order.pk).total == Decimal("25.00")

        twice = notice(order.pk, event_id="evt_2", amount="39.00")
        assert deliver(api, twice, sign(twice)).json()["status"] == "placed"
        for amount, currency in (("0.00", "CNY"), ("39.00", "USD")):
            refused = notice(order.pk, event_id="evt_3", amount=amount, currency=currency)
            answer = deliver(api, refused, sign(refused))
            assert (answer.status_code, answer.json()["code"]) == (400, "payment_amount_mismatch")
        assert api_refund_due(order) == Decimal("53.00")  # 78.00 paid, 25.00 due

        orders.services.order_cancel(order_id=order.pk, actor=order.buyer, reason="no")
        late = notice(order.pk, event_id="evt_4", amount="7.50")
        assert deliver(api, late, sign(late)).json()["status"] == "cancelled"
        assert api_refund_due(order) == Decimal("85.50")  # all of it, nothing due
        assert list(PaymentEvent.objects.values_list("event_id", "amount")) == [
            ("evt_1", Decimal("39.00")),
            ("evt_2", Decimal("39.00")),
            ("evt_4", Decimal("7.50")),
        ]

    def test_a_signed_refund_is_recorded_and_one_too_large_is_400(self, api):
        listing = new_listing()
        order = place_prepaid(listing)
        paid = notice(order.pk)
        deliver(api, paid, sign(paid))
        orders.services.order_cancel(order_id=order.pk, actor=order.buyer, reason="no")
        too_much = notice(order.pk, event_id="rf_1", kind="refund.succeeded", amount="25.01")
        whole = notice(order.pk, event_id="rf_2", kind="refund.succeeded", amount="25.00")

        refused = deliver(api, too_much, sign(too_much))
        assert refused.status_code == 400
        assert refused.json()["code"] == "refund_amount_invalid"
        assert PaymentEvent.objects.filter(kind="refund.succeeded").count() == 0

        response = deliver(api, whole, sign(whole))
        assert response.status_code == 200
        assert response.json() == {"received": True, "order": order.pk, "status": "cancelled"}
        event = PaymentEvent.objects.get(kind="refund.succeeded")
        assert (event.event_id, event.amount, event.payload) == (
            "rf_2",
            Decimal("25.00"),
            json.loads(whole),
        )
        assert told(order)[-1] == ("refund_sent", order.buyer_id)
        assert Order.objects.get(pk=order.pk).payment_status == "paid"  # the money came once

    def test_another_kind_of_event_is_kept_and_changes_nothing(self, api):
        listing = new_listing()
        order = place_prepaid(listing)
        raw = notice(order.pk, kind="payment.failed")

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 200
        assert response.json()["status"] == "awaiting_payment"
        assert PaymentEvent.objects.get().kind == "payment.failed"
        assert transitions(order) == [("", "awaiting_payment", "placed")]

    def test_a_cod_order_never_waits_for_payment(self):
        order = place_order(BuyerFactory(), (new_listing(), 2))
        assert (order.status, order.payment_status, order.payment_due_at) == (
            "placed",
            "unpaid",
            None,
        )
        assert orders.payments.orders_expire_unpaid(now=timezone.now() + timedelta(days=1)) == 0

    def test_the_webhook_is_in_the_schema(self, api):
        schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
        operation = schema["paths"][WEBHOOK]["post"]
        assert operation["security"] == [{}]
        assert [p["name"] for p in operation["parameters"]] == ["X-Signature"]
        assert set(operation["responses"]) == {
            "200",
            "400",
            "401",
            "409",
            "413",
        }  # no 415: it parses nothing


def make_due(order, minutes_ago=1):
    Order.objects.filter(pk=order.pk).update(
        payment_due_at=timezone.now() - timedelta(minutes=minutes_ago)
    )


@pytest.mark.django_db
class TestExpiry:
    def test_only_orders_past_their_due_time_and_unpaid_expire_and_restock_exactly(self, api):
        due_listing, later_listing, paid_listing = new_listing(), new_listing(), new_listing()
        due, later, paid = (
            place_prepaid(due_listing),
            place_prepaid(later_listing),
            place_prepaid(paid_listing),
        )
        raw = notice(paid.pk)
        assert deliver(api, raw, sign(raw)).status_code == 200
        make_due(due)
        make_due(paid)  # paid in time: its due time no longer matters

        assert orders.payments.orders_expire_unpaid() == 1

        due.refresh_from_db()
        assert (due.status, due.payment_status) == ("cancelled", "not_due")
        assert transitions(due) == [
            ("", "awaiting_payment", "placed"),
            ("awaiting_payment", "cancelled", "payment_expired"),
        ]
        assert due.events.get(to_status="cancelled").actor is None
        assert told(due) == [("order_placed", due.buyer_id), ("payment_expired", due.buyer_id)]
        assert set(due.lines.values_list("status", flat=True)) == {"cancelled"}
        assert quantity(due_listing) == Decimal("10.000")
        assert Order.objects.get(pk=later.pk).status == "awaiting_payment"
        assert quantity(later_listing) == Decimal("8.000")
        assert Order.objects.get(pk=paid.pk).status == "placed"
        assert quantity(paid_listing) == Decimal("8.000")

        assert orders.payments.orders_expire_unpaid() == 0  # again: nothing more
        assert quantity(due_listing) == Decimal("10.000")
        assert OrderEvent.objects.filter(to_status="cancelled").count() == 1

    def test_the_due_time_is_the_configured_minutes_after_placing(self, settings):
        settings.PREPAID_PAYMENT_MINUTES = 45
        before = timezone.now()
        order = place_prepaid(new_listing())
        assert timedelta(minutes=45) <= order.payment_due_at - before < timedelta(minutes=46)
        assert orders.payments.orders_expire_unpaid(now=before + timedelta(minutes=44)) == 0
        assert orders.payments.orders_expire_unpaid(now=before + timedelta(minutes=46)) == 1

    def test_many_due_orders_expire_in_small_batches(self):
        listing = create_listing(quantity_available=Decimal("10"), price=Decimal("10.00"))
        placed = [place_prepaid(listing) for _ in range(5)]
        assert quantity(listing) == Decimal("0.000")
        for order in placed:
            make_due(order)

        assert orders.payments.orders_expire_unpaid(batch=2) == 5

        assert set(Order.objects.values_list("status", flat=True)) == {"cancelled"}
        assert quantity(listing) == Decimal("10.000")
        assert Listing.objects.get(pk=listing.pk).status == "active"

    def test_an_order_that_cannot_be_cancelled_holds_up_no_other(self):
        stuck_listing, listing = new_listing(), new_listing()
        stuck, other = place_prepaid(stuck_listing), place_prepaid(listing)
        # restocking it would overflow the stock column (as high as the admin may set it)
        listing_update(listing=stuck_listing, quantity_available=Decimal("999999999.999"))
        make_due(stuck)
        make_due(other)

        assert orders.payments.orders_expire_unpaid(batch=1) == 1

        assert Order.objects.get(pk=stuck.pk).status == "awaiting_payment"
        assert quantity(stuck_listing) == Decimal("999999999.999")
        assert Order.objects.get(pk=other.pk).status == "cancelled"
        assert quantity(listing) == Decimal("10.000")
        assert orders.payments.orders_expire_unpaid() == 0  # tried again, still stuck

    def test_a_sweep_out_of_time_stops_and_its_batch_changes_nothing(self, monkeypatch):
        """The task's soft time limit is no failure of one order to pass over: the sweep
        stops there, before the hard limit kills it, and the next one redoes the batch."""
        listing = new_listing()
        first, second = place_prepaid(listing), place_prepaid(listing)
        make_due(first)
        make_due(second)
        cancel = orders.payments.order_cancel

        def out_of_time_on_the_second(*, order_id, **kwargs):
            if order_id == second.pk:
                raise SoftTimeLimitExceeded()
            return cancel(order_id=order_id, **kwargs)

        monkeypatch.setattr(orders.payments, "order_cancel", out_of_time_on_the_second)
        with pytest.raises(SoftTimeLimitExceeded):
            orders.payments.orders_expire_unpaid()
        assert list(Order.objects.order_by("pk").values_list("status", flat=True)) == [
            "awaiting_payment",
            "awaiting_payment",
        ]
        assert quantity(listing) == Decimal("6.000")

        monkeypatch.setattr(orders.payments, "order_cancel", cancel)
        assert orders.payments.orders_expire_unpaid() == 2
        assert quantity(listing) == Decimal("10.000")

    def test_a_payment_after_the_expiry_is_kept_and_shows_as_paid(self, api):
        listing = new_listing()
        order = place_prepaid(listing)
        make_due(order)
        orders.payments.orders_expire_unpaid()
        raw = notice(order.pk)

        response = deliver(api, raw, sign(raw))

        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert PaymentEvent.objects.filter(order=order).count() == 1
        assert Order.objects.get(pk=order.pk).payment_status == "paid"  # a refund is owed
        assert quantity(listing) == Decimal("10.000")

    def test_the_beat_runs_the_sweeper_every_minute(self):
        entry = celery_app.conf.beat_schedule["expire-unpaid-orders"]
        assert entry["task"] == expire_unpaid_orders.name == "orders.tasks.expire_unpaid_orders"
        assert entry["schedule"].remaining_estimate(timezone.now()) <= timedelta(minutes=1)
        assert (expire_unpaid_orders.soft_time_limit, expire_unpaid_orders.time_limit) == (
            100,
            120,
        )


def in_thread(call):
    """Run `call` on its own connection; the result (or exception) is in box[0]."""
    box = []

    def run():
        try:
            box.append(call())
        except Exception as error:  # handed back to the test
            box.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


@pytest.mark.django_db(transaction=True)
class TestRaces:
    def test_an_order_being_paid_is_skipped_by_the_sweeper_not_waited_for(self):
        listing = new_listing()
        order = place_prepaid(listing)
        make_due(order)
        locked, release = threading.Event(), threading.Event()

        def hold_the_order_lock():
            with transaction.atomic():
                orders.services.order_lock(order.pk)
                locked.set()
                release.wait(10)

        holder, _ = in_thread(hold_the_order_lock)
        assert locked.wait(10)
        started = time.monotonic()
        assert orders.payments.orders_expire_unpaid() == 0  # SKIP LOCKED: no wait, no expiry
        assert time.monotonic() - started < 2
        release.set()
        holder.join(10)
        assert orders.payments.orders_expire_unpaid() == 1
        assert quantity(listing) == Decimal("10.000")

    def test_a_payment_waits_for_an_expiry_holding_the_order_then_is_not_applied(self, monkeypatch):
        listing = new_listing()
        order = place_prepaid(listing)
        make_due(order)
        cancelled = threading.Event()
        real_cancel = orders.payments.order_cancel

        def slow_cancel(**kwargs):
            result = real_cancel(**kwargs)
            cancelled.set()
            time.sleep(0.5)  # the order row stays locked until the batch commits
            return result

        monkeypatch.setattr(orders.payments, "order_cancel", slow_cancel)
        sweeper, swept = in_thread(orders.payments.orders_expire_unpaid)
        assert cancelled.wait(10)
        provider = orders.payments.get_provider()
        paid = orders.payments.payment_record(notice=provider.parse(notice(order.pk)))
        sweeper.join(10)

        assert swept == [1]
        assert (paid.status, paid.payment_status) == ("cancelled", "paid")  # a refund owed
        assert PaymentEvent.objects.filter(order=order).count() == 1
        assert quantity(listing) == Decimal("10.000")

    def test_payment_and_expiry_racing_end_one_way_never_both(self):
        provider = orders.payments.get_provider()
        outcomes = set()
        for round_ in range(8):
            listing = new_listing()
            order = place_prepaid(listing)
            make_due(order)
            payment_notice = provider.parse(notice(order.pk, event_id=f"evt_{round_}"))
            start = threading.Barrier(2)

            def pay(payment_notice=payment_notice, start=start):
                start.wait(10)
                return orders.payments.payment_record(notice=payment_notice)

            def expire(start=start):
                start.wait(10)
                return orders.payments.orders_expire_unpaid()

            (payer, paid), (sweeper, swept) = in_thread(pay), in_thread(expire)
            payer.join(20)
            sweeper.join(20)
            assert isinstance(paid[0], Order), paid
            assert swept[0] in (0, 1), swept

            order.refresh_from_db()
            to = set(order.events.values_list("to_status", flat=True)) - {"awaiting_payment"}
            assert PaymentEvent.objects.filter(order=order).count() == 1  # kept either way
            if order.status == OrderStatus.PLACED:
                assert (order.payment_status, swept[0], to) == ("paid", 0, {"placed"})
                assert quantity(listing) == Decimal("8.000")
            else:
                assert (order.status, order.payment_status, swept[0], to) == (
                    "cancelled",
                    "paid",  # and so a refund is owed
                    1,
                    {"cancelled"},
                )
                assert quantity(listing) == Decimal("10.000")
            outcomes.add(order.status)
        assert outcomes <= {"placed", "cancelled"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_expiry_task_runs_in_a_real_worker(celery_worker):
    listing = new_listing()
    order = place_prepaid(listing)
    make_due(order)

    expire_unpaid_orders.delay()

    told_buyer = Notification.objects.filter(order=order, kind="payment_expired")
    deadline = time.monotonic() + 20
    # Until the buyer's notice is sent too: the worker is then idle, not reading rows while
    # the end of this test empties the tables.
    while not told_buyer.filter(sent_at__isnull=False).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    order.refresh_from_db()
    assert order.status == "cancelled", f"not expired after 20 s; see {celery_worker.log_path}"
    assert order.events.get(to_status="cancelled").reason == "payment_expired"
    assert quantity(listing) == Decimal("10.000")
    assert told_buyer.get().sent_at is not None


def manage_production(**env):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "marketplace.settings.production"}
    environment.update(SECRET_KEY="k3y-" + "x8Qz!vR2#mW9" * 5, **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "too-short",
        "dev-only-insecure-payment-webhook-secret",
        # long enough, yet guessable: anyone who knows the secret signs "paid" for any order
        "s" * 32,
        "ab" * 20,
    ],
    ids=str,
)
def test_production_refuses_to_start_without_a_real_webhook_secret(secret):
    result = manage_production(PAYMENT_WEBHOOK_SECRET=secret)
    assert result.returncode != 0
    assert "PAYMENT_WEBHOOK_SECRET must be set" in result.stderr


def test_production_starts_with_a_real_webhook_secret():
    result = manage_production(PAYMENT_WEBHOOK_SECRET="wh-" + "Jq3vN8sPz2Lk" * 3)
    assert result.returncode == 0, result.stderr
