"""A farmer's upcoming pickups (GET /api/v1/my/pickups/): their own, not yet picked up,
with the time windows of the pickups to come, in a fixed number of queries."""

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from logistics.models import Shipment, Stop
from logistics.services.routing import order_route
from tests.clock import on_day
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
)
from tests.logistics.test_shipments import stop_for

pytestmark = pytest.mark.django_db


def _pickups_of(farmer, buyer, count: int) -> list[Shipment]:
    shipments = []
    for _ in range(count):
        order = place_order(buyer, (create_listing(farmer, unit="kg", price=Decimal("5.00")), 2))
        order_route(order_id=order.pk)
        shipments.append(Shipment.objects.get(order=order))
    return shipments


def test_my_pickups_reads_in_a_fixed_number_of_queries(client_for):
    center = ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=center))
    buyer = BuyerFactory(village=VillageFactory(service_center=center))
    client = client_for(farmer)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/api/v1/my/pickups/")
        assert response.status_code == 200
        return len(captured)

    for shipment in _pickups_of(farmer, buyer, 1):
        stop_for(shipment, center, "pickup")
    one = queries()
    for shipment in _pickups_of(farmer, buyer, 3):
        stop_for(shipment, center, "pickup")
    assert client.get("/api/v1/my/pickups/").json()["count"] == 4
    assert queries() == one


def test_my_pickups_show_the_windows_of_the_pickups_to_come_only(client_for):
    """A pickup that failed is tried again another day: the farmer is shown the window of
    the next try once it is planned, not the failed stop's, nor the buyer's delivery."""
    center = ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=center))
    buyer = BuyerFactory(village=VillageFactory(service_center=center))
    staff = StaffFactory(service_center=center)
    (shipment,) = _pickups_of(farmer, buyer, 1)
    with on_day(shipment.pickup_date):
        failed = stop_for(shipment, center, "pickup", day=shipment.pickup_date)
        start = timezone.make_aware(datetime.combine(shipment.pickup_date, time(9)))
        Stop.objects.filter(pk=failed.pk).update(window_start=start, window_end=start)
        response = client_for(staff).post(
            f"/api/v1/stops/{failed.pk}/complete/",
            {"outcome": "failed", "reason": "nobody at the farm"},
            format="json",
        )
        assert response.status_code == 200, response.json()
        shipment.refresh_from_db()
        delivery = stop_for(shipment, center, "delivery", day=shipment.delivery_date)
        (row,) = client_for(farmer).get("/api/v1/my/pickups/").json()["results"]
        assert row["stops"] == []  # the next try is not planned yet
        again = stop_for(shipment, center, "pickup", day=shipment.pickup_date)
        (row,) = client_for(farmer).get("/api/v1/my/pickups/").json()["results"]
    assert [stop["id"] for stop in row["stops"]] == [again.pk]
    assert delivery.pk not in [stop["id"] for stop in row["stops"]]


def test_a_stop_left_on_a_day_gone_by_is_not_the_pickup_to_come(client_for):
    """A route planned for yesterday that never set out keeps its stops; the goods wait for
    a pickup from today on, and the farmer is not shown yesterday's window."""
    center = ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=center))
    buyer = BuyerFactory(village=VillageFactory(service_center=center))
    (shipment,) = _pickups_of(farmer, buyer, 1)
    stop_for(shipment, center, "pickup", day=timezone.localdate() - timedelta(days=1))
    planned = stop_for(shipment, center, "pickup", day=shipment.pickup_date)

    (row,) = client_for(farmer).get("/api/v1/my/pickups/").json()["results"]

    assert [stop["id"] for stop in row["stops"]] == [planned.pk]
