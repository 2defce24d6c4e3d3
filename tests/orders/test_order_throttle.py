"""Placing and cancelling orders are limited per user (ORDER_THROTTLE_RATE), together; the
limit's 429 is the API's problem+json, and a retry replayed by its key does not count."""

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from rest_framework.throttling import ScopedRateThrottle

from listings.models import Listing
from orders.models import Order, OrderStatus
from tests.factories import BuyerFactory, StaffFactory, create_listing

ORDERS = "/api/v1/orders/"
BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_an_hour(monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"orders": "2/hour"})


def body(listing) -> dict:
    return {
        "lines": [{"listing": listing.pk, "quantity": "1"}],
        "delivery_method": "pickup",
        "payment_method": "cod",
    }


def stock(listing) -> Decimal:
    return Listing.objects.get(pk=listing.pk).quantity_available


@pytest.mark.django_db
@pytest.mark.usefixtures("two_an_hour")
def test_a_buyer_past_the_limit_places_and_cancels_nothing(client_for):
    listing = create_listing()
    buyer = BuyerFactory(village__service_center=listing.farmer.village.service_center)
    client = client_for(buyer)
    first = client.post(ORDERS, body(listing), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    replayed = client.post(ORDERS, body(listing), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    second = client.post(ORDERS, body(listing), format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert [first.status_code, replayed.status_code, second.status_code] == [201, 201, 201]
    assert replayed["Idempotent-Replayed"] == "true"  # a retry: not counted

    third = client.post(ORDERS, body(listing), format="json", HTTP_IDEMPOTENCY_KEY="k3")
    assert third.status_code == 429
    assert third["Content-Type"] == "application/problem+json"
    assert third.json()["code"] == "throttled"
    assert set(third.json()) == {"type", "title", "status", "code", "detail"}
    assert 0 < int(third["Retry-After"]) <= 3600
    assert Order.objects.filter(buyer=buyer).count() == 2
    assert stock(listing) == Decimal("98.000")

    cancel = client.post(f"{ORDERS}{first.json()['id']}/cancel/", format="json")
    assert (cancel.status_code, cancel.json()["code"]) == (429, "throttled")
    assert Order.objects.get(pk=first.json()["id"]).status == OrderStatus.PLACED
    assert stock(listing) == Decimal("98.000")

    assert client.get(ORDERS).json()["count"] == 2  # reading is not limited
    # per user: another buyer orders, and staff cancel this buyer's order
    other = client_for(BuyerFactory()).post(ORDERS, body(listing), format="json")
    assert other.status_code == 201
    staff = client_for(StaffFactory(service_center=buyer.village.service_center))
    assert staff.post(f"{ORDERS}{first.json()['id']}/cancel/", format="json").status_code == 200
    assert Order.objects.get(pk=first.json()["id"]).status == OrderStatus.CANCELLED


@pytest.mark.django_db
@pytest.mark.usefixtures("two_an_hour")
def test_staff_calling_off_many_orders_are_not_limited(client_for):
    listing = create_listing()
    center = listing.farmer.village.service_center
    placed = [
        client_for(BuyerFactory(village__service_center=center)).post(
            ORDERS, body(listing), format="json"
        )
        for _ in range(3)
    ]
    staff = client_for(StaffFactory(service_center=center))
    answers = [staff.post(f"{ORDERS}{p.json()['id']}/cancel/", format="json") for p in placed]
    assert [a.status_code for a in answers] == [200, 200, 200]
    cancelled = Order.objects.filter(pk__in=[p.json()["id"] for p in placed])
    assert set(cancelled.values_list("status", flat=True)) == {OrderStatus.CANCELLED}
    assert stock(listing) == Decimal("100.000")


@pytest.mark.django_db
@pytest.mark.usefixtures("two_an_hour")
def test_cancels_count_and_a_throttled_key_is_retried_once_the_hour_is_over(
    client_for, monkeypatch
):
    listing, buyer = create_listing(), BuyerFactory()
    client = client_for(buyer)
    placed = client.post(ORDERS, body(listing), format="json")
    cancelled = client.post(f"{ORDERS}{placed.json()['id']}/cancel/", format="json")
    assert [placed.status_code, cancelled.status_code] == [201, 200]
    refused = client.post(ORDERS, body(listing), format="json", HTTP_IDEMPOTENCY_KEY="later")
    assert refused.status_code == 429
    assert Order.objects.filter(buyer=buyer).count() == 1

    an_hour_later = time.time() + 3601
    monkeypatch.setattr(ScopedRateThrottle, "timer", staticmethod(lambda: an_hour_later))
    retried = client.post(ORDERS, body(listing), format="json", HTTP_IDEMPOTENCY_KEY="later")
    assert retried.status_code == 201  # the 429 was not stored under the key
    assert "Idempotent-Replayed" not in retried
    assert Order.objects.filter(buyer=buyer).count() == 2
    assert stock(listing) == Decimal("99.000")


def throttle_rate(settings_module: str, **env: str) -> str:
    """The orders throttle's rate as `settings_module` reads it from a clean environment."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"ORDER_THROTTLE_RATE", "DJANGO_SETTINGS_MODULE"}
    }
    environment.update(env)
    read = f"import {settings_module} as s; print(s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']"
    result = subprocess.run(  # noqa: S603 (our own settings modules, named here)
        [sys.executable, "-c", f"{read}['orders'])"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_production_limits_orders_and_the_benchmark_never_reaches_its_rate():
    production = throttle_rate(
        "marketplace.settings.production",
        SECRET_KEY="k3y-" + "x8Qz!vR2#mW9" * 5,
        PAYMENT_WEBHOOK_SECRET="wh-" + "Jq3vN8sPz2Lk" * 3,
    )
    assert production == "60/hour"
    # the benchmark's settings refuse any database but a *_bench one; this one is never opened
    bench = throttle_rate(
        "bench.orders_settings", DATABASE_URL="postgres://nobody@127.0.0.1:1/throttle_check_bench"
    )
    assert bench == "1000000/second"
    assert ScopedRateThrottle().parse_rate(bench) == (1_000_000, 1)
