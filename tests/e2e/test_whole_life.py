"""The whole life of orders over HTTP with a real Celery worker, real Redis, real
PostgreSQL and the real routing engine: farmers register and list, buyers order from
several farmers across two centers, workers route, staff plan both centers' days, complete
every pickup, receive the transfers, complete every delivery with the buyer's code, and the
orders end delivered with the right events, notifications and stock."""

import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from listings.models import Listing
from logistics.models import Shipment
from marketplace.accounts.services import user_create_staff
from orders.models import Notification, NotificationKind, Order
from tests.clock import on_day
from tests.factories import ServiceCenterFactory, VillageFactory

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "a-long-farm-password"


def signed_in(phone: str) -> APIClient:
    client = APIClient()
    tokens = client.post(
        "/api/v1/auth/token/", {"phone": phone, "password": PASSWORD}, format="json"
    )
    assert tokens.status_code == 200, tokens.json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}")
    return client


def register(phone: str, name: str, role: str, village) -> APIClient:
    body = {"phone": phone, "password": PASSWORD, "name": name, "role": role, "village": village.pk}
    response = APIClient().post("/api/v1/auth/register/", body, format="json")
    assert response.status_code == 201, response.json()
    return signed_in(phone)


def wait_for(check, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def plan_day(staff: APIClient, center_id: int, day: date) -> None:
    run = staff.post(
        f"/api/v1/service-centers/{center_id}/schedule/", {"date": str(day)}, format="json"
    )
    assert run.status_code == 202, run.json()
    url = f"/api/v1/schedule-runs/{run.json()['id']}/"
    done = wait_for(
        lambda: staff.get(url).json()["status"] in ("done", "failed") and staff.get(url).json(),
        what="the schedule run",
    )
    assert done["status"] == "done", done
    assert done["summary"]["unassigned"] == []


def stops_of_day(staff: APIClient, center_id: int, day: date) -> list[dict]:
    routes = staff.get("/api/v1/routes/", {"service_center": center_id, "date": str(day)}).json()
    stops = []
    for route in routes["results"]:
        detail = staff.get(f"/api/v1/routes/{route['id']}/").json()
        stops.extend(sorted(detail["stops"], key=lambda stop: stop["sequence"]))
    return stops


def complete_stops(staff: APIClient, stops: list[dict], codes: dict[int, str]) -> None:
    """Pickups with their weight, deliveries with the code of the order they serve."""
    for stop in stops:
        if stop["kind"] == "pickup":
            weight = sum(Shipment.objects.get(pk=s).weight_kg for s in stop["shipments"])
            body = {"outcome": "done", "weight_kg": str(weight)}
        else:
            (order_id,) = {Shipment.objects.get(pk=s).order_id for s in stop["shipments"]}
            body = {"outcome": "done", "delivery_code": codes[order_id]}
        response = staff.post(
            f"/api/v1/stops/{stop['id']}/complete/",
            body,
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"stop-{stop['id']}",
        )
        assert response.status_code == 200, response.json()


def test_the_whole_life_of_orders_across_two_centers(celery_worker):
    north = ServiceCenterFactory(name="北山", lat=Decimal("30.400000"), lng=Decimal("119.600000"))
    south = ServiceCenterFactory(name="南湖", lat=Decimal("30.000000"), lng=Decimal("119.600000"))
    north_village = VillageFactory(
        name="李家村", service_center=north, lat=Decimal("30.420000"), lng=Decimal("119.620000")
    )
    south_village = VillageFactory(
        name="王庄", service_center=south, lat=Decimal("30.020000"), lng=Decimal("119.580000")
    )
    staff, staff_phone = {}, {north.pk: "+8613700000101", south.pk: "+8613700000102"}
    for center, phone in ((north, staff_phone[north.pk]), (south, staff_phone[south.pk])):
        user_create_staff(
            phone=phone, password=PASSWORD, name=f"{center.name} staff", service_center=center
        )
        staff[center.pk] = signed_in(phone)
        vehicle = {
            "name": "金杯",
            "capacity_kg": "800",
            "refrigerated": True,
            "shift_start": "07:00",
            "shift_end": "18:00",
            "cost_per_km": "1.50",
        }
        created = staff[center.pk].post(
            f"/api/v1/service-centers/{center.pk}/vehicles/", vehicle, format="json"
        )
        assert created.status_code == 201, created.json()

    # Farmers register and list.
    today = timezone.localdate()
    produce = [
        (
            "+8613800000101",
            "王大妈",
            north_village,
            {"title": "有机西红柿", "category": "vegetables", "unit": "jin", "price": "3.50"},
        ),
        (
            "+8613800000102",
            "李大伯",
            north_village,
            {
                "title": "土鸡蛋",
                "category": "eggs",
                "unit": "dozen",
                "unit_weight_kg": "0.700",
                "price": "18.00",
            },
        ),
        (
            "+8613800000103",
            "张阿姨",
            south_village,
            {"title": "小白菜", "category": "vegetables", "unit": "kg", "price": "4.00"},
        ),
    ]
    listing_ids = []
    for phone, name, village, fields in produce:
        farmer = register(phone, name, "farmer", village)
        body = {
            **fields,
            "quantity_available": "100",
            "harvest_date": str(today),
            "shelf_life_days": 10,
        }
        response = farmer.post("/api/v1/listings/", body, format="json")
        assert response.status_code == 201, response.json()
        listing_ids.append(response.json()["id"])
    found = APIClient().get("/api/v1/listings/", {"q": "西红柿"}).json()
    assert [row["id"] for row in found["results"]] == [listing_ids[0]]

    # Buyers in the south order from farmers of both centers.
    buyers = [
        register("+8613900000101", "食堂", "buyer", south_village),
        register("+8613900000102", "赵家", "buyer", south_village),
    ]
    baskets = [[(0, "10"), (1, "2"), (2, "5")], [(0, "4"), (2, "3")]]
    codes, order_ids = {}, []
    for buyer, basket in zip(buyers, baskets, strict=True):
        body = {
            "lines": [{"listing": listing_ids[i], "quantity": q} for i, q in basket],
            "delivery_method": "home",
            "payment_method": "cod",
        }
        response = buyer.post(
            "/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="first-order"
        )
        assert response.status_code == 201, response.json()
        codes[response.json()["id"]] = response.json()["delivery_code"]
        order_ids.append(response.json()["id"])
    assert [float(Listing.objects.get(pk=pk).quantity_available) for pk in listing_ids] == [
        86,
        98,
        92,
    ]

    # Workers route every order.
    wait_for(
        lambda: set(Order.objects.values_list("status", flat=True)) == {"confirmed"}, what="routing"
    )
    shipments = Shipment.objects.filter(order_id__in=order_ids)
    assert shipments.count() == 5  # order 1: three farmers; order 2: two
    pickup_day = shipments.first().pickup_date
    assert set(shipments.values_list("pickup_date", flat=True)) == {pickup_day}

    # Both centers plan the pickup day ahead; on that day staff complete every stop in order
    # (the test's clock moves to the day, the workers' does not; a new day, a new sign-in).
    for center in (north, south):
        plan_day(staff[center.pk], center.pk, pickup_day)
    transfers = shipments.filter(origin_center=north)
    with on_day(pickup_day):
        for center in (north, south):
            on_road = signed_in(staff_phone[center.pk])
            complete_stops(on_road, stops_of_day(on_road, center.pk, pickup_day), codes)
        assert set(transfers.values_list("status", flat=True)) == {"in_transfer"}
        assert set(shipments.filter(origin_center=south).values_list("status", flat=True)) == {
            "delivered"
        }

        # The south center receives the transfers that day, and delivers them on their day:
        # the day after the transfer's, planned the evening of its arrival.
        at_south = signed_in(staff_phone[south.pk])
        for shipment in transfers:
            received = at_south.post(f"/api/v1/shipments/{shipment.pk}/receive/")
            assert received.status_code == 200, received.json()
    delivery_day = transfers.first().delivery_date
    assert delivery_day == pickup_day + timedelta(days=2)
    plan_day(staff[south.pk], south.pk, delivery_day)
    with on_day(delivery_day):
        at_south = signed_in(staff_phone[south.pk])
        complete_stops(at_south, stops_of_day(at_south, south.pk, delivery_day), codes)

    # Every order delivered, cash collected, with the right events and notifications.
    for order_id, buyer in zip(order_ids, buyers, strict=True):
        order = buyer.get(f"/api/v1/orders/{order_id}/").json()
        assert (order["status"], order["payment_status"]) == ("delivered", "collected")
        assert [e["to_status"] for e in order["events"]] == [
            "placed",
            "confirmed",
            "scheduled",
            "in_transit",
            "delivered",
        ]
        assert {s["status"] for s in order["shipments"]} == {"delivered"}
        kinds = set(
            Notification.objects.filter(
                order_id=order_id, user__phone__startswith="+86139"
            ).values_list("kind", flat=True)
        )
        assert kinds == {
            NotificationKind.ORDER_PLACED,
            NotificationKind.ORDER_CONFIRMED,
            NotificationKind.OUT_FOR_DELIVERY,
            NotificationKind.ORDER_DELIVERED,
        }
    wait_for(
        lambda: not Notification.objects.filter(sent_at__isnull=True).exists(),
        what="notifications sent",
    )
    assert [float(Listing.objects.get(pk=pk).quantity_available) for pk in listing_ids] == [
        86,
        98,
        92,
    ]
