"""A shipment's road: pickups weighed, transfers received, deliveries checked by code,
failures put back, and who may see or touch what (others get 404, nothing changes)."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.throttling import ScopedRateThrottle

from listings.models import Listing
from listings.services import listing_update
from logistics.models import (
    CenterDayLoad,
    LegStatus,
    Route,
    RouteStatus,
    ScheduleRun,
    Shipment,
    ShipmentStatus,
    Stop,
    StopStatus,
    Vehicle,
)
from logistics.services import routing, schedule, shipments
from logistics.services.routing import order_route
from logistics.services.shipments import Completion, shipments_flag_late_transfers
from marketplace.accounts.models import User
from marketplace.exceptions import DomainError
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
from tests.listings.test_photos import wait_for_lock_waiters
from tests.orders.test_payments import in_thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    north = ServiceCenterFactory(lat=Decimal("30.400000"), lng=Decimal("119.600000"))
    south = ServiceCenterFactory(lat=Decimal("30.000000"), lng=Decimal("119.600000"))
    buyer = BuyerFactory(village=VillageFactory(service_center=south))
    farmer = FarmerFactory(village=VillageFactory(service_center=north))
    listing = create_listing(farmer, unit="kg", price=Decimal("10.00"))
    order = place_order(buyer, (listing, 8))
    order_route(order_id=order.pk)
    shipment = Shipment.objects.get(order=order)
    return {
        "north": north,
        "south": south,
        "buyer": buyer,
        "farmer": farmer,
        "order": order,
        "shipment": shipment,
        "listing": listing,
        "north_staff": StaffFactory(service_center=north),
        "south_staff": StaffFactory(service_center=south),
    }


@pytest.fixture
def collected(world):
    """An order of 2 kg from a farm of the buyer's center, to collect there: (order, its
    one shipment), routed."""
    farmer = FarmerFactory(village=VillageFactory(service_center=world["south"]))
    order = place_order(world["buyer"], (create_listing(farmer), 2), delivery_method="pickup")
    order_route(order_id=order.pk)
    return order, Shipment.objects.get(order=order)


def stop_for(shipment, center, kind, day=None):
    """A stop of `kind` for `shipment` on a route of `center` on `day` (today)."""
    route = Route.objects.create(service_center=center, date=day or timezone.localdate())
    stop = Stop.objects.create(
        route=route,
        sequence=Stop.objects.filter(route=route).count() + 1,
        kind=kind,
        lat=shipment.pickup_lat,
        lng=shipment.pickup_lng,
    )
    stop.shipments.add(shipment)
    return stop


def stops_each(route, kind, shipments) -> list[Stop]:
    """One stop of `kind` per shipment on `route`, in their order, where each is picked up
    or delivered."""
    stops = []
    for sequence, shipment in enumerate(shipments, start=1):
        at = "pickup" if kind == "pickup" else "delivery"
        stop = Stop.objects.create(
            route=route,
            sequence=sequence,
            kind=kind,
            lat=getattr(shipment, f"{at}_lat"),
            lng=getattr(shipment, f"{at}_lng"),
        )
        stop.shipments.add(shipment)
        stops.append(stop)
    return stops


def complete(client, stop, **body):
    return client.post(f"/api/v1/stops/{stop.pk}/complete/", body, format="json")


def wrong_codes(order, count: int) -> list[str]:
    """`count` different codes, none of them the order's."""
    return [code for code in (f"{n:06d}" for n in range(count + 1)) if code != order.delivery_code][
        :count
    ]


def test_the_whole_road_of_a_shipment(world, client_for):
    shipment, order = world["shipment"], world["order"]
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])

    pickup = stop_for(shipment, world["north"], "pickup")
    done = complete(north, pickup, outcome="done", weight_kg="7.800")
    assert done.status_code == 200, done.json()
    assert done.json()["status"] == "done"
    shipment.refresh_from_db()
    assert (shipment.status, shipment.picked_up_weight_kg) == (
        ShipmentStatus.IN_TRANSFER,
        Decimal("7.800"),
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.IN_TRANSIT
    # its only stop: the route was on the road, and is done
    assert pickup.route.__class__.objects.get(pk=pickup.route_id).status == RouteStatus.COMPLETED

    # Only the destination center receives the transfer.
    assert north.post(f"/api/v1/shipments/{shipment.pk}/receive/").status_code == 404
    received = south.post(f"/api/v1/shipments/{shipment.pk}/receive/")
    assert received.status_code == 200
    assert received.json()["status"] == "at_center"
    assert (
        south.post(f"/api/v1/shipments/{shipment.pk}/receive/").status_code == 200
    )  # again: no-op

    delivery = stop_for(shipment, world["south"], "delivery")
    assert (
        complete(south, delivery, outcome="done", delivery_code=order.delivery_code).status_code
        == 200
    )
    shipment.refresh_from_db()
    order.refresh_from_db()
    assert shipment.status == ShipmentStatus.DELIVERED
    assert (order.status, order.payment_status) == (OrderStatus.DELIVERED, PaymentStatus.COLLECTED)
    assert set(shipment.legs.values_list("status", flat=True)) == {LegStatus.DONE}
    assert list(shipment.events.values_list("status", flat=True)) == [
        "pending",
        "picked_up",
        "in_transfer",
        "at_center",
        "delivered",
    ]
    assert [e.to_status for e in order.events.all()] == [
        "placed",
        "confirmed",
        "in_transit",
        "delivered",
    ]
    told = Notification.objects.get(order=order, kind="order_delivered")
    assert (told.title, told.body) == ("订单已送达", f"订单 #{order.pk} 已送达。")

    # A device that was offline replays its completion: nothing changes.
    again = complete(south, delivery, outcome="done", delivery_code=order.delivery_code)
    assert again.status_code == 200
    assert order.events.count() == 4


def test_a_farms_pickup_of_many_orders_writes_its_goods_at_once(client_for):
    """One farm's stop picking up the goods of 1 or 5 orders: the shipments' weights and
    statuses, their legs and tracking events, and their day's booking (2 kg weighed for each
    1 kg ordered) are written by one statement each; only each order's own status (on the
    road, its event) costs statements of its own."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    listing = create_listing(FarmerFactory(village=village), unit="kg")
    staff = client_for(StaffFactory(service_center=center))

    def pickup_of(orders: int) -> tuple[int, Stop]:
        placed = [
            order_route(order_id=place_order(BuyerFactory(village=village), (listing, 1)).pk)
            for _ in range(orders)
        ]
        shipments = list(Shipment.objects.filter(order__in=placed).order_by("pk"))
        stop = stop_for(shipments[0], center, "pickup")
        stop.shipments.add(*shipments)
        with CaptureQueriesContext(connection) as captured:
            answer = complete(staff, stop, outcome="done", weight_kg=str(2 * orders))
        assert answer.status_code == 200, answer.json()
        return len(captured.captured_queries), stop

    one, _ = pickup_of(1)
    five, stop = pickup_of(5)

    per_order = 4  # its lock, its shipments' statuses, its event, its status
    assert five - one == 4 * per_order
    shipments = Shipment.objects.filter(stops=stop).order_by("pk")
    assert [s.picked_up_weight_kg for s in shipments] == [Decimal("2.000")] * 5
    assert [s.booked_kg for s in shipments] == [Decimal("2.000")] * 5
    [day] = set(shipments.values_list("pickup_date", flat=True))
    assert CenterDayLoad.objects.get(center=center, date=day).booked_kg == 12  # 1 + 5, × 2
    assert set(shipments.values_list("status", flat=True)) == {ShipmentStatus.AT_CENTER}
    assert set(shipments.values_list("legs__kind", "legs__status")) == {
        ("pickup", LegStatus.DONE),
        ("delivery", LegStatus.PENDING),
    }
    for shipment in shipments:
        assert list(shipment.events.order_by("pk").values_list("status", "note"))[1:] == [
            ("picked_up", "2.000 kg"),
            ("at_center", ""),
        ]


def test_a_farms_failed_pickup_of_many_orders_puts_its_goods_back_at_once(client_for):
    """One farm's stop for the goods of 3 or 9 orders (to be delivered from another center)
    fails: the shipments' new days, statuses and tries, their legs, their tracking events
    and both centers' day loads are written by one statement each, whatever their number;
    only each order's own status costs statements of its own."""
    north = ServiceCenterFactory(lat=Decimal("30.400000"), lng=Decimal("119.600000"))
    south = ServiceCenterFactory(lat=Decimal("30.000000"), lng=Decimal("119.600000"))
    listing = create_listing(FarmerFactory(village=VillageFactory(service_center=north)), unit="kg")
    home = VillageFactory(service_center=south)
    staff = client_for(StaffFactory(service_center=north))

    def failed_pickup_of(orders: int) -> tuple[int, list[Shipment]]:
        placed = [
            order_route(order_id=place_order(BuyerFactory(village=home), (listing, 1)).pk)
            for _ in range(orders)
        ]
        shipments = list(Shipment.objects.filter(order__in=placed).order_by("pk"))
        stop = stop_for(shipments[0], north, "pickup")
        stop.shipments.add(*shipments)
        with CaptureQueriesContext(connection) as captured:
            answer = complete(staff, stop, outcome="failed", reason="农户不在家")
        assert answer.status_code == 200, answer.json()
        return len(captured.captured_queries), shipments

    three, _ = failed_pickup_of(3)
    nine, before = failed_pickup_of(9)

    per_order = 3  # its lock and its shipments' statuses (on the road?), its lock (waiting?)
    assert nine - three == 6 * per_order
    day = timedelta(days=1)
    pickup, delivery = before[0].pickup_date, before[0].delivery_date
    shipments = Shipment.objects.filter(pk__in=[s.pk for s in before]).order_by("pk")
    assert set(
        shipments.values_list("status", "failed_attempts", "pickup_date", "delivery_date")
    ) == {(ShipmentStatus.PENDING, 1, pickup + day, delivery + day)}
    assert set(shipments.values_list("legs__kind", "legs__date")) == {
        ("pickup", pickup + day),
        ("transfer", delivery + day),
        ("delivery", delivery + day),
    }
    loads = CenterDayLoad.objects.values_list("center", "date", "booked_kg")
    assert {(c, d): kg for c, d, kg in loads if kg} == {  # 3 + 9 orders of 1 kg, moved
        (north.pk, pickup + day): Decimal(12),
        (south.pk, delivery + day): Decimal(12),
    }
    for shipment in shipments:
        assert list(shipment.events.order_by("pk").values_list("status", "note"))[1:] == [
            ("pending", f"stop failed, next try {pickup + day:%Y-%m-%d}: 农户不在家"),
        ]


def test_a_failed_delivery_of_3_farmers_goods_costs_as_many_statements_as_of_9(client_for):
    """One order's goods from 3 or 9 farms at its buyer's door, the buyer not at home: the
    shipments go to the next day together, in as many statements whatever their number."""
    south = ServiceCenterFactory()
    home = VillageFactory(service_center=south)
    staff = client_for(StaffFactory(service_center=south))

    def failed_delivery_of(farmers: int) -> tuple[int, Order]:
        near = [
            create_listing(FarmerFactory(village=VillageFactory(service_center=south)), unit="kg")
            for _ in range(farmers)
        ]
        order = place_home(BuyerFactory(village=home), *[(listing, 1) for listing in near])
        shipments = Shipment.objects.filter(order=order)
        shipments.update(status=ShipmentStatus.AT_CENTER)  # picked up, waiting for delivery
        stop = stop_for(shipments[0], south, "delivery")
        stop.shipments.set(shipments)
        with CaptureQueriesContext(connection) as captured:
            answer = complete(staff, stop, outcome="failed", reason="没人在家")
        assert answer.status_code == 200, answer.json()
        return len(captured.captured_queries), order

    three, _ = failed_delivery_of(3)
    nine, order = failed_delivery_of(9)

    assert three == nine
    [due] = {s.promised_date for s in order.shipments.all()}
    later = due + timedelta(days=1)
    assert set(order.shipments.values_list("status", "failed_attempts", "delivery_date")) == {
        (ShipmentStatus.AT_CENTER, 1, later)
    }
    assert set(order.shipments.values_list("legs__kind", "legs__date")) == {
        ("pickup", due),
        ("delivery", later),
    }
    assert CenterDayLoad.objects.get(center=south, date=due).booked_kg == 12  # 3 + 9, not moved
    assert rescheduled()[-1] == (
        order.buyer_id,
        order.pk,
        later.isoformat(),
        due.isoformat(),
        "delivery_failed",
    )


def test_a_cancel_of_3_farmers_goods_costs_as_many_statements_as_of_9(client_for):
    """An order of 3 or 9 farms' goods on a planned route (a pickup stop per farm, one
    delivery stop for them all), beside another buyer's goods, cancelled by its buyer: its
    shipments, legs, stops and bookings go together, in as many statements whatever their
    number, and the route keeps the other buyer's stops, numbered 1, 2."""
    south = ServiceCenterFactory()
    home = VillageFactory(service_center=south)

    def near():
        return create_listing(
            FarmerFactory(village=VillageFactory(service_center=south)), unit="kg"
        )

    def cancel_of(farmers: int) -> tuple[int, Order, Order, Route]:
        order = place_home(BuyerFactory(village=home), *[(near(), 1) for _ in range(farmers)])
        kept = place_home(BuyerFactory(village=home), (near(), 2))
        cancelled = list(Shipment.objects.filter(order=order).order_by("pk"))
        other = Shipment.objects.get(order=kept)
        [day] = {s.pickup_date for s in [*cancelled, other]}
        route = Route.objects.create(service_center=south, date=day)
        stops_each(route, "pickup", cancelled)
        for sequence, (kind, served) in enumerate(
            (("pickup", [other]), ("delivery", [other]), ("delivery", cancelled)),
            start=farmers + 1,
        ):
            stop = Stop.objects.create(
                route=route, sequence=sequence, kind=kind, lat=home.lat, lng=home.lng
            )
            stop.shipments.set(served)
        with CaptureQueriesContext(connection) as captured:
            answer = client_for(order.buyer).post(f"/api/v1/orders/{order.pk}/cancel/")
        assert answer.status_code == 200, answer.json()
        return len(captured.captured_queries), order, kept, route

    three, _, _, _ = cancel_of(3)
    nine, order, kept, route = cancel_of(9)

    assert three == nine
    assert set(order.shipments.values_list("status", "booked_kg")) == {
        (ShipmentStatus.CANCELLED, 0)
    }
    assert set(order.shipments.values_list("events__status", flat=True)) == {
        ShipmentStatus.PENDING,
        ShipmentStatus.CANCELLED,
    }
    assert order.shipments.filter(events__status=ShipmentStatus.CANCELLED).count() == 9
    assert set(order.shipments.values_list("legs__status", flat=True)) == {LegStatus.CANCELLED}
    assert not Stop.objects.filter(shipments__order=order).exists()
    assert list(route.stops.values_list("sequence", "kind", "shipments__order")) == [
        (1, "pickup", kept.pk),
        (2, "delivery", kept.pk),
    ]
    [day] = set(kept.shipments.values_list("pickup_date", flat=True))
    assert CenterDayLoad.objects.get(center=south, date=day).booked_kg == 4  # the kept 2, twice


def test_a_cancel_of_goods_on_3_planned_routes_costs_as_many_statements_as_on_1(client_for):
    """An order of 3 farms' goods picked up by one van, or by three vans of the center (a
    pickup stop each, after another buyer's pickup on every van): cancelled, each route
    follows its goods left, its stops renumbered, measured and loaded, in as many
    statements whatever the number of routes."""
    south = ServiceCenterFactory()
    home = VillageFactory(service_center=south)

    def near():
        return create_listing(
            FarmerFactory(village=VillageFactory(service_center=south)), unit="kg"
        )

    def cancel_on(vans: int) -> tuple[int, list[Route]]:
        order = place_home(BuyerFactory(village=home), *[(near(), 1) for _ in range(3)])
        cancelled = list(Shipment.objects.filter(order=order).order_by("pk"))
        routes = []
        for van in range(vans):
            kept = place_home(BuyerFactory(village=home), (near(), 2))
            other = Shipment.objects.get(order=kept)
            van_of = Vehicle.objects.create(
                service_center=south, name=f"{vans}-{van}", capacity_kg=500
            )
            route = Route.objects.create(
                service_center=south, date=other.pickup_date, vehicle=van_of
            )
            on_it = [other, *cancelled[van::vans]]
            for sequence, stop in enumerate(stops_each(route, "pickup", on_it), start=1):
                stop.eta = datetime.combine(route.date, time(8 + sequence), tzinfo=UTC)
                stop.save(update_fields=["eta"])
            routes.append(route)
        with CaptureQueriesContext(connection) as captured:
            answer = client_for(order.buyer).post(f"/api/v1/orders/{order.pk}/cancel/")
        assert answer.status_code == 200, answer.json()
        return len(captured.captured_queries), routes

    one, _ = cancel_on(1)
    three, routes = cancel_on(3)

    assert one == three
    for route in routes:
        route.refresh_from_db()
        assert list(route.stops.values_list("sequence", "load_kg")) == [(1, 2)]
        assert route.distance_km > 0  # measured over the kept buyer's pickup alone


def test_shipments_filtered_by_a_center_that_does_not_exist_are_none_not_400(world, client_for):
    staff = client_for(world["north_staff"])
    answers = {
        (name, center): staff.get("/api/v1/shipments/", {name: center})
        for name in ("origin_center", "destination_center")
        for center in (world["north"].pk, world["south"].pk, world["south"].pk + 1000)
    }
    assert {key: (a.status_code, a.json()["count"]) for key, a in answers.items()} == {
        ("origin_center", world["north"].pk): (200, 1),
        ("origin_center", world["south"].pk): (200, 0),
        ("origin_center", world["south"].pk + 1000): (200, 0),
        ("destination_center", world["north"].pk): (200, 0),
        ("destination_center", world["south"].pk): (200, 1),
        ("destination_center", world["south"].pk + 1000): (200, 0),
    }
    refused = staff.get("/api/v1/shipments/", {"origin_center": "0", "destination_center": "x"})
    assert [e["field"] for e in refused.json()["errors"]] == ["origin_center", "destination_center"]


def test_a_wrong_code_is_400_the_fifth_locks_the_stop_and_an_operator_unlocks_it(world, client_for):
    shipment = world["shipment"]
    Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.AT_CENTER)
    south = client_for(world["south_staff"])
    stop = stop_for(shipment, world["south"], "delivery")
    *wrong, last = wrong_codes(world["order"], 5)
    for code, left in zip(wrong, (4, 3, 2, 1), strict=True):
        for _ in range(2):  # the same code sent again (its answer lost) counts once
            response = complete(south, stop, outcome="done", delivery_code=code)
            assert response.status_code == 400
            assert (response.json()["code"], response.json()["attempts_left"]) == (
                "invalid_delivery_code",
                left,
            )
    fifth = complete(south, stop, outcome="done", delivery_code=last)
    assert (fifth.status_code, fifth.json()["attempts_left"]) == (400, 0)
    stop.refresh_from_db()
    assert (stop.status, stop.wrong_code_attempts) == (StopStatus.LOCKED, 5)
    locked = complete(south, stop, outcome="done", delivery_code=world["order"].delivery_code)
    assert (locked.status_code, locked.json()["code"]) == (409, "stop_locked")
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.AT_CENTER

    # Staff review it with the buyer; an operator unlocks it in the admin.
    operator = Client()
    operator.force_login(
        User.objects.create_superuser(
            phone="+8613000000009", password="an-op-passphrase", name="op"
        )
    )
    pending = Stop.objects.create(
        route=stop.route, sequence=99, kind="delivery", lat=stop.lat, lng=stop.lng
    )
    action = {"action": "unlock", "_selected_action": [stop.pk, pending.pk]}
    assert operator.post("/admin/logistics/stop/", action).status_code == 302
    stop.refresh_from_db()
    assert (stop.status, stop.wrong_code_attempts, stop.last_wrong_code) == (
        StopStatus.PENDING,
        0,
        "",
    )
    assert Stop.objects.get(pk=pending.pk).status == StopStatus.PENDING  # was not locked
    done = complete(south, stop, outcome="done", delivery_code=world["order"].delivery_code)
    assert done.status_code == 200
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.DELIVERED


@pytest.mark.parametrize("wrong", [2, 5])
def test_planning_the_day_again_keeps_the_wrong_codes_entered_at_a_stop(world, client_for, wrong):
    """Wrong codes at a delivery stop whose route is not yet on the road (they do not
    start it): a new plan of the day writes its stop again, with the count and the lock,
    so planning again gives no fresh guesses; only the admin's Unlock opens it."""
    shipment, order, south = world["shipment"], world["order"], world["south"]
    today = timezone.localdate()
    Shipment.objects.filter(pk=shipment.pk).update(
        status=ShipmentStatus.AT_CENTER, pickup_date=today, delivery_date=today
    )
    Vehicle.objects.create(service_center=south, name="van", capacity_kg=Decimal("300"))
    *bad, next_bad = wrong_codes(order, wrong + 1)
    # Today planned in the morning, with the van's whole shift ahead: planned later in the
    # day, a van with no time left for the trip takes nothing.
    with on_day(today):
        staff = client_for(world["south_staff"])

        def plan() -> Stop:
            run = ScheduleRun.objects.create(service_center=south, date=today)
            schedule.schedule_run_execute(run_id=run.pk)
            return Stop.objects.get(shipments=shipment, kind="delivery")

        stop = plan()
        for code in bad:
            assert complete(staff, stop, outcome="done", delivery_code=code).status_code == 400
        assert Route.objects.get(stops=stop).status == RouteStatus.PLANNED

        again = plan()
        assert again.pk != stop.pk
        locked = wrong >= 5
        assert (again.status, again.wrong_code_attempts, again.last_wrong_code) == (
            StopStatus.LOCKED if locked else StopStatus.PENDING,
            wrong,
            bad[-1],
        )
        answer = complete(staff, again, outcome="done", delivery_code=next_bad)
        if locked:
            assert (answer.status_code, answer.json()["code"]) == (409, "stop_locked")
        else:
            assert answer.json()["attempts_left"] == 5 - wrong - 1
            retried = complete(staff, again, outcome="done", delivery_code=next_bad)
            assert retried.json()["attempts_left"] == 5 - wrong - 1  # the last one again: a retry


def test_a_stop_locked_by_wrong_codes_can_still_be_reported_failed(world, client_for):
    shipment = world["shipment"]
    Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.AT_CENTER)
    south = client_for(world["south_staff"])
    stop = stop_for(shipment, world["south"], "delivery")
    Stop.objects.filter(pk=stop.pk).update(status=StopStatus.LOCKED, wrong_code_attempts=5)

    failed = complete(south, stop, outcome="failed", reason="买家不在家，不知道取货码")
    assert failed.status_code == 200
    stop.refresh_from_db()
    assert (stop.status, stop.reason) == (StopStatus.FAILED, "买家不在家，不知道取货码")
    shipment.refresh_from_db()
    assert (shipment.status, shipment.failed_attempts) == (ShipmentStatus.AT_CENTER, 1)
    assert Route.objects.get(pk=stop.route_id).status == RouteStatus.COMPLETED


def test_a_failed_pickup_goes_back_for_the_next_day(world, client_for):
    shipment = world["shipment"]
    north = client_for(world["north_staff"])
    stop = stop_for(shipment, world["north"], "pickup")
    assert complete(north, stop, outcome="failed").json()["code"] == "reason_required"
    response = complete(north, stop, outcome="failed", reason="农户不在家")
    assert response.status_code == 200
    before = shipment.pickup_date
    shipment.refresh_from_db()
    assert (shipment.status, shipment.pickup_date, shipment.failed_attempts) == (
        ShipmentStatus.PENDING,
        before + timedelta(days=1),
        1,
    )
    assert shipment.legs.get(kind="pickup").date == shipment.pickup_date
    assert Shipment.objects.get(pk=shipment.pk).order.status == OrderStatus.CONFIRMED


@pytest.mark.parametrize("reason", ["农户不在家\u202e 00.91", "农户\n不在家", "农户不在家\x1b[2J"])
def test_a_stop_failed_with_a_control_character_in_its_reason_is_refused(world, client_for, reason):
    """Staff's reason goes into the buyer's message of goods not delivered, ahead of what is
    paid back, and into the order's tracking: refused as a cancel's reason is, and the stop,
    its goods and their events stay as they were."""
    shipment = world["shipment"]
    stop = stop_for(shipment, world["north"], "pickup")
    events = shipment.events.count()

    response = complete(client_for(world["north_staff"]), stop, outcome="failed", reason=reason)

    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("reason", "control_characters_not_allowed")
    ]
    assert Stop.objects.get(pk=stop.pk).status == StopStatus.PENDING
    fresh = Shipment.objects.get(pk=shipment.pk)
    assert (fresh.status, fresh.pickup_date, fresh.failed_attempts) == (
        shipment.status,
        shipment.pickup_date,
        0,
    )
    assert fresh.events.count() == events


def test_a_stop_failed_with_the_longest_reason_allowed_keeps_it_whole(world, client_for):
    """The stop keeps staff's reason whole; the tracking event quoting it after the next
    day is cut to fit its note."""
    shipment = world["shipment"]
    # Tibetan: its vowel signs are combining marks, which Django's Truncator does not count
    reason = "\u0f40\u0f72" * 127 + "\u0f40"
    assert len(reason) == 255
    stop = stop_for(shipment, world["north"], "pickup")
    response = complete(client_for(world["north_staff"]), stop, outcome="failed", reason=reason)
    assert response.status_code == 200, response.content
    assert Stop.objects.get(pk=stop.pk).reason == reason
    shipment.refresh_from_db()
    note = shipment.events.order_by("pk").last().note
    assert note == f"stop failed, next try {shipment.pickup_date:%Y-%m-%d}: {reason}"[:254] + "…"


@pytest.mark.django_db(transaction=True)
def test_a_transfer_received_while_its_goods_are_handed_over_waits_and_never_deadlocks(world):
    """A hand-over locks the order, then the shipment; so does the receipt now (it took the
    shipment first, then the order, and the two could each wait for the other)."""
    shipment, order, staff = world["shipment"], world["order"], world["south_staff"]
    Order.objects.filter(pk=order.pk).update(delivery_method="pickup")
    Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.IN_TRANSFER)
    with transaction.atomic():
        orders.order_lock(order.pk)  # a hand-over has begun: it holds the order
        receiving, answer = in_thread(
            lambda: shipments.shipment_receive(shipment_id=shipment.pk, staff=staff)
        )
        assert wait_for_lock_waiters(1) == 1  # the receipt waits for the order
        # the hand-over takes the shipment
        with pytest.raises(DomainError) as not_ready, transaction.atomic():
            shipments.shipment_hand_over(
                shipment_id=shipment.pk, staff=staff, delivery_code=order.delivery_code
            )
        assert not_ready.value.code == "shipment_not_ready"
    receiving.join(timeout=30)
    assert [type(a).__name__ for a in answer] == ["Shipment"], answer
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.AT_CENTER


def rescheduled() -> list[tuple]:
    """(buyer, order, new day, day before, why) of each delivery_rescheduled, oldest first."""
    keys = ("delivery_date", "previous_delivery_date", "reason")
    return [
        (n.user_id, n.order_id, *(n.data[k] for k in keys))
        for n in Notification.objects.filter(kind="delivery_rescheduled").order_by("pk")
    ]


def place_home(buyer, *lines) -> Order:
    return order_route(order_id=place_order(buyer, *lines).pk)


def test_a_failed_delivery_tells_the_buyer_the_new_day_once_for_the_whole_order(world, client_for):
    south, buyer = world["south"], world["buyer"]
    near = [
        create_listing(FarmerFactory(village=VillageFactory(service_center=south)), unit="kg")
        for _ in range(2)
    ]
    order = place_home(buyer, (near[0], 2), (near[1], 3))
    both = Shipment.objects.filter(order=order)
    both.update(status=ShipmentStatus.AT_CENTER)  # picked up, waiting for their delivery
    [due] = set(both.values_list("delivery_date", flat=True))
    stop = stop_for(both[0], south, "delivery")
    stop.shipments.set(both)

    failed = complete(client_for(world["south_staff"]), stop, outcome="failed", reason="没人在家")

    assert failed.status_code == 200
    later = due + timedelta(days=1)
    assert set(both.values_list("delivery_date", flat=True)) == {later}
    assert rescheduled() == [
        (buyer.pk, order.pk, later.isoformat(), due.isoformat(), "delivery_failed")
    ]
    note = Notification.objects.get(kind="delivery_rescheduled")
    assert note.body == (
        f"订单 #{order.pk} 因上次配送未成功，改为 {later:%m月%d日} 送达"
        f"（此前预计 {due:%m月%d日}）。"
    )


def test_a_pickup_moved_within_the_days_its_order_is_due_anyway_tells_nobody(
    world, client_for, settings
):
    """The goods of a farmer near the buyer come the day they are picked up, those of a
    farmer in the north two days later (a day of transfer, then the day planned after it):
    the near pickup may slip two days unseen by the buyer; a third day makes the order
    late."""
    settings.MAX_STOP_ATTEMPTS = 4  # three failures, not yet for good
    south, buyer = world["south"], world["buyer"]
    near = create_listing(FarmerFactory(village=VillageFactory(service_center=south)), unit="kg")
    order = place_home(buyer, (near, 2), (world["listing"], 3))
    close = Shipment.objects.get(order=order, farmer=near.farmer)
    due = Shipment.objects.get(order=order, farmer=world["farmer"]).delivery_date
    assert close.delivery_date + timedelta(days=2) == due
    staff = client_for(world["south_staff"])

    for slipped in (1, 2):
        failed = complete(
            staff, stop_for(close, south, "pickup"), outcome="failed", reason="不在家"
        )
        assert failed.status_code == 200
        close.refresh_from_db()
        assert close.delivery_date == due - timedelta(days=2 - slipped)
        assert rescheduled() == []

    again = complete(staff, stop_for(close, south, "pickup"), outcome="failed", reason="不在家")

    assert again.status_code == 200
    later = due + timedelta(days=1)
    assert rescheduled() == [
        (buyer.pk, order.pk, later.isoformat(), due.isoformat(), "pickup_failed")
    ]


def test_a_failed_pickup_reported_days_late_goes_to_tomorrow_not_the_past(world, client_for):
    shipment, today = world["shipment"], timezone.localdate()
    gap = shipment.delivery_date - shipment.pickup_date
    routing.shipment_move_days(  # its day was three days ago; the failure is told only now
        shipment,
        pickup_date=today - timedelta(days=3),
        delivery_date=today - timedelta(days=3) + gap,
    )
    stop = stop_for(shipment, world["north"], "pickup")
    response = complete(client_for(world["north_staff"]), stop, outcome="failed", reason="没人")
    assert response.status_code == 200
    shipment.refresh_from_db()
    tomorrow = today + timedelta(days=1)
    assert (shipment.pickup_date, shipment.delivery_date) == (tomorrow, tomorrow + gap)
    assert set(shipment.legs.filter(status=LegStatus.PENDING).values_list("date", flat=True)) == {
        tomorrow,
        tomorrow + gap,
    }
    assert CenterDayLoad.objects.get(center=world["north"], date=tomorrow).booked_kg == 8


@pytest.mark.parametrize(
    "case", [(20, "pickup", 1), (22, "pickup", 2), (20, "delivery", 1), (22, "delivery", 2)]
)
def test_a_stop_failed_after_tonights_plan_ran_goes_to_a_day_still_to_be_planned(
    world, client_for, at_local_hour, case
):
    """A phone that was offline tells at 22:00 that today's stop failed: tomorrow's plan ran
    at 21:00 without those goods, and no plan takes them there after (the nightly one runs
    once, and no day gone by is planned), so on tomorrow they would wait for good. They go
    to the day after, whose plan is still ahead; told at 20:00, to tomorrow, as before."""
    (hour, kind, days_on) = case  # told at, the stop's kind, days the goods move on
    today = at_local_hour(hour)
    shipment, center = world["shipment"], world["north" if kind == "pickup" else "south"]
    if kind == "pickup":
        routing.shipment_move_days(
            shipment, pickup_date=today, delivery_date=today + timedelta(days=1)
        )
    else:
        routing.shipment_move_days(
            shipment, pickup_date=today - timedelta(days=1), delivery_date=today
        )
        Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.AT_CENTER)
    stop = stop_for(shipment, center, kind)
    staff = world["north_staff" if kind == "pickup" else "south_staff"]

    failed = complete(client_for(staff), stop, outcome="failed", reason="没人")

    assert failed.status_code == 200, failed.json()
    shipment.refresh_from_db()
    next_day = today + timedelta(days=days_on)
    assert getattr(shipment, f"{kind}_date") == next_day
    assert shipment in schedule._day_shipments(center, next_day)
    assert CenterDayLoad.objects.get(center=center, date=next_day).booked_kg == 8


def test_a_pickup_failed_for_good_picks_nothing_up_so_the_order_can_still_be_cancelled(
    world, client_for, settings
):
    settings.MAX_STOP_ATTEMPTS = 1
    other = FarmerFactory(village=world["farmer"].village)
    order = place_order(world["buyer"], (world["listing"], 1), (create_listing(other), 1))
    order_route(order_id=order.pk)
    theirs = Shipment.objects.get(order=order, farmer=other)
    stop = stop_for(theirs, world["north"], "pickup")
    failed = complete(client_for(world["north_staff"]), stop, outcome="failed", reason="不在家")
    assert failed.status_code == 200
    assert Shipment.objects.get(pk=theirs.pk).status == ShipmentStatus.FAILED
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED  # nothing picked up yet
    cancel = client_for(world["buyer"]).post(f"/api/v1/orders/{order.pk}/cancel/")
    assert cancel.status_code == 200


def test_an_order_whose_every_pickup_failed_for_good_fails(world, client_for, settings):
    settings.MAX_STOP_ATTEMPTS = 1
    stop = stop_for(world["shipment"], world["north"], "pickup")
    failed = complete(client_for(world["north_staff"]), stop, outcome="failed", reason="没货")
    assert failed.status_code == 200
    order = world["order"]
    order.refresh_from_db()
    assert order.status == OrderStatus.FAILED
    assert [e.to_status for e in order.events.order_by("pk")][-1] == OrderStatus.FAILED
    # nothing came, nothing is due; the goods never left the farm: back on sale
    assert (order.payment_status, order.total) == (PaymentStatus.NOT_DUE, Decimal("0.00"))
    assert Listing.objects.get(pk=world["listing"].pk).quantity_available == Decimal(100)
    assert set(CenterDayLoad.objects.values_list("booked_kg", flat=True)) == {Decimal(0)}


def test_goods_failed_for_good_have_no_leg_still_to_go(world, client_for, settings):
    """Goods that failed for good go nowhere: the legs they had still to go are called off
    (as a cancel does), not left pending on the days they will never travel; the legs
    they went stay done."""
    settings.MAX_STOP_ATTEMPTS = 1
    shipment, order = world["shipment"], world["order"]
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
    assert (
        complete(
            north, stop_for(shipment, world["north"], "pickup"), outcome="done", weight_kg="8"
        ).status_code
        == 200
    )
    assert south.post(f"/api/v1/shipments/{shipment.pk}/receive/").status_code == 200
    delivery = stop_for(shipment, world["south"], "delivery")
    assert complete(south, delivery, outcome="failed", reason="没人在家").status_code == 200

    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.FAILED
    assert dict(shipment.legs.values_list("kind", "status")) == {
        "pickup": LegStatus.DONE,
        "transfer": LegStatus.DONE,
        "delivery": LegStatus.CANCELLED,
    }
    legs = client_for(world["buyer"]).get(f"/api/v1/orders/{order.pk}/").json()["shipments"][0]
    assert [leg["status"] for leg in legs["legs"]] == ["done", "done", "cancelled"]


def test_goods_failed_for_good_at_the_farm_have_no_leg_still_to_go(world, client_for, settings):
    settings.MAX_STOP_ATTEMPTS = 1
    shipment = world["shipment"]
    stop = stop_for(shipment, world["north"], "pickup")
    assert (
        complete(
            client_for(world["north_staff"]), stop, outcome="failed", reason="没货"
        ).status_code
        == 200
    )

    assert set(shipment.legs.values_list("status", flat=True)) == {LegStatus.CANCELLED}


def test_goods_that_failed_for_good_are_not_charged_and_go_back_on_sale(
    world, client_for, settings
):
    settings.MAX_STOP_ATTEMPTS = 1
    south, buyer = world["south"], world["buyer"]
    farmers = [FarmerFactory(village=VillageFactory(service_center=south)) for _ in range(2)]
    fresh = create_listing(farmers[0], unit="kg", price=Decimal("10.00"))
    gone = create_listing(farmers[1], unit="kg", price=Decimal("3.00"))
    order = place_order(buyer, (fresh, 8), (gone, 5))
    assert (order.subtotal, order.delivery_fee, order.total) == (
        Decimal("95.00"),
        Decimal("7.00"),
        Decimal("102.00"),
    )
    order_route(order_id=order.pk)
    delivered = Shipment.objects.get(order=order, farmer=farmers[0])
    failed = Shipment.objects.get(order=order, farmer=farmers[1])
    staff = client_for(world["south_staff"])

    def booked_at_south():
        return sum(CenterDayLoad.objects.filter(center=south).values_list("booked_kg", flat=True))

    booked = booked_at_south()

    assert (
        complete(
            staff, stop_for(failed, south, "pickup"), outcome="failed", reason="不在家"
        ).status_code
        == 200
    )
    assert (
        complete(
            staff, stop_for(delivered, south, "pickup"), outcome="done", weight_kg="8"
        ).status_code
        == 200
    )
    handed = complete(
        staff,
        stop_for(delivered, south, "delivery"),
        outcome="done",
        delivery_code=order.delivery_code,
    )
    assert handed.status_code == 200

    order.refresh_from_db()
    assert (order.status, order.payment_status) == (
        OrderStatus.PARTIALLY_DELIVERED,
        PaymentStatus.COLLECTED,
    )
    assert (order.subtotal, order.delivery_fee, order.total) == (  # one farmer's goods, fee
        Decimal("80.00"),
        Decimal("5.00"),
        Decimal("85.00"),
    )
    assert set(order.lines.filter(farmer=farmers[1]).values_list("status", flat=True)) == {
        "cancelled"
    }
    assert Listing.objects.get(pk=gone.pk).quantity_available == Decimal(100)
    assert booked_at_south() == booked - Decimal("5.000")  # the failed goods' day is free
    told = order.notifications.filter(kind="goods_not_delivered").order_by("pk")
    assert [(n.user_id, n.data.get("total")) for n in told] == [
        (buyer.pk, "85.00"),
        (farmers[1].pk, None),
    ]
    farmer_told = told[1]  # never picked up: back in the farmer's stock, and told so
    assert (farmer_told.title, farmer_told.data) == (
        "商品未能取货",
        {
            "order": order.pk,
            "lines": [order.lines.get(farmer=farmers[1]).pk],
            "subtotal": "15.00",
            "reason": "不在家",
            "restocked": True,
        },
    )
    assert farmer_told.body == (
        f"订单 #{order.pk} 中您的 {gone.title} 5公斤 多次未能取货（不在家），"
        "已从订单中取消（¥15.00），已退回您的库存，可继续出售。"
    )


def test_a_failed_stop_moves_the_booked_capacity_with_its_days_and_a_cancel_frees_them(
    world, client_for
):
    shipment, north, south = world["shipment"], world["north"], world["south"]
    pickup, delivery = shipment.pickup_date, shipment.delivery_date
    day = timedelta(days=1)

    def loads():
        rows = CenterDayLoad.objects.values_list("center", "date", "booked_kg")
        return {(center, date): kg for center, date, kg in rows}

    assert loads() == {(north.pk, pickup): Decimal("8.000"), (south.pk, delivery): Decimal("8.000")}
    stop = stop_for(shipment, north, "pickup")
    failed = complete(client_for(world["north_staff"]), stop, outcome="failed", reason="不在家")
    assert failed.status_code == 200
    assert loads() == {
        (north.pk, pickup): Decimal("0.000"),
        (north.pk, pickup + day): Decimal("8.000"),
        (south.pk, delivery): Decimal("0.000"),
        (south.pk, delivery + day): Decimal("8.000"),
    }

    cancelled = client_for(world["buyer"]).post(f"/api/v1/orders/{world['order'].pk}/cancel/")
    assert cancelled.status_code == 200, cancelled.json()
    assert set(loads().values()) == {Decimal("0.000")}


def test_a_failed_stops_event_names_the_day_of_its_own_next_try(world, client_for):
    """A pickup is tried again on the new pickup day, not on the delivery day after it (the
    goods cross to another center); a delivery on the new delivery day."""
    shipment = world["shipment"]
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
    pickup = stop_for(shipment, world["north"], "pickup")
    assert complete(north, pickup, outcome="failed", reason="农户不在家").status_code == 200
    shipment.refresh_from_db()
    assert shipment.pickup_date < shipment.delivery_date
    assert shipment.events.last().note == (
        f"stop failed, next try {shipment.pickup_date:%Y-%m-%d}: 农户不在家"
    )

    Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.AT_CENTER)
    delivery = stop_for(shipment, world["south"], "delivery")
    assert complete(south, delivery, outcome="failed", reason="买家不在家").status_code == 200
    shipment.refresh_from_db()
    assert shipment.events.last().note == (
        f"stop failed, next try {shipment.delivery_date:%Y-%m-%d}: 买家不在家"
    )


def test_a_route_is_completed_once_its_last_stop_is_done_or_failed(world, client_for):
    first = world["shipment"]
    second_order = place_order(world["buyer"], (world["listing"], 1))
    order_route(order_id=second_order.pk)
    second = Shipment.objects.get(order=second_order)
    route = Route.objects.create(service_center=world["north"], date=first.pickup_date)
    stops = stops_each(route, "pickup", (first, second))

    with on_day(route.date):
        north = client_for(world["north_staff"])
        assert complete(north, stops[0], outcome="done", weight_kg="8").status_code == 200
        assert Route.objects.get(pk=route.pk).status == RouteStatus.STARTED
        assert complete(north, stops[1], outcome="failed", reason="农户不在家").status_code == 200
    assert Route.objects.get(pk=route.pk).status == RouteStatus.COMPLETED
    shown = client_for(world["north_staff"]).get(f"/api/v1/routes/{route.pk}/").json()
    assert (shown["status"], [s["status"] for s in shown["stops"]]) == (
        "completed",
        ["done", "failed"],
    )


def test_goods_cancelled_after_the_route_set_out_are_not_picked_up(world, client_for):
    shipment, order = world["shipment"], world["order"]
    stop = stop_for(shipment, world["north"], "pickup")
    Route.objects.filter(pk=stop.route_id).update(status=RouteStatus.STARTED)
    cancelled = client_for(world["buyer"]).post(f"/api/v1/orders/{order.pk}/cancel/")
    assert cancelled.status_code == 200

    north = client_for(world["north_staff"])
    response = complete(north, stop, outcome="done", weight_kg="8")
    assert (response.status_code, response.json()["code"]) == (409, "stop_cancelled")
    stop.refresh_from_db()
    assert stop.status == StopStatus.PENDING
    # the driver closes it: failed, and the cancelled goods stay as they are
    assert complete(north, stop, outcome="failed", reason="已取消").status_code == 200
    stop.refresh_from_db()
    shipment.refresh_from_db()
    assert (stop.status, shipment.status) == (StopStatus.FAILED, ShipmentStatus.CANCELLED)
    assert shipment.failed_attempts == 0
    assert list(shipment.events.values_list("status", flat=True)) == ["pending", "cancelled"]


@pytest.mark.django_db(transaction=True)
def test_a_cancel_and_the_first_pickup_at_once_wait_for_each_other(world):
    shipment, order = world["shipment"], world["order"]
    stop = stop_for(shipment, world["north"], "pickup")  # a planned route: cancel takes it off
    done = Completion(outcome="done", weight_kg=Decimal("8"))
    with transaction.atomic():
        orders.order_lock(order.pk)  # a cancel has begun: it holds the order
        pickup, answer = in_thread(
            lambda: shipments.stop_complete(stop_id=stop.pk, staff=world["north_staff"], data=done)
        )
        assert wait_for_lock_waiters(1) == 1  # the pickup waits, holding nothing the cancel needs
        orders.order_cancel(order_id=order.pk, actor=order.buyer, reason="changed mind")
    pickup.join(timeout=30)

    [refused] = answer
    assert isinstance(refused, DomainError), refused
    assert (refused.status_code, refused.code) == (404, "not_found")
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.CANCELLED
    assert not Stop.objects.filter(pk=stop.pk).exists()
    assert Listing.objects.get(pk=world["listing"].pk).quantity_available == Decimal("100.000")


def test_a_stop_is_refused_until_its_goods_are_where_it_expects_them(world, client_for):
    shipment, order = world["shipment"], world["order"]
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
    delivery = stop_for(shipment, world["south"], "delivery")

    early = complete(south, delivery, outcome="done", delivery_code=order.delivery_code)
    assert (early.status_code, early.json()["code"]) == (409, "shipment_not_ready")
    assert early.json()["shipments"] == {str(shipment.pk): "pending"}
    # reported failed, a stop whose goods are elsewhere is closed and moves none of them
    other_delivery = stop_for(shipment, world["south"], "delivery")
    assert complete(south, other_delivery, outcome="failed", reason="没货").status_code == 200
    assert Shipment.objects.filter(pk=shipment.pk).values_list(
        "status", "failed_attempts", "delivery_date"
    ).get() == (ShipmentStatus.PENDING, 0, shipment.delivery_date)
    assert (
        complete(
            north, stop_for(shipment, world["north"], "pickup"), outcome="done", weight_kg="8"
        ).status_code
        == 200
    )
    # picked up, on its way to the other center: not yet there to deliver, nor to pick up
    in_transfer = complete(south, delivery, outcome="done", delivery_code=order.delivery_code)
    assert in_transfer.json()["shipments"] == {str(shipment.pk): "in_transfer"}
    again = complete(
        north, stop_for(shipment, world["north"], "pickup"), outcome="done", weight_kg="8"
    )
    assert (again.status_code, again.json()["code"]) == (409, "shipment_not_ready")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.wrong_code_attempts) == (StopStatus.PENDING, 0)
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.IN_TRANSFER

    assert south.post(f"/api/v1/shipments/{shipment.pk}/receive/").status_code == 200
    done = complete(south, delivery, outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.DELIVERED


def test_a_rejected_line_lightens_its_farmers_shipment_and_the_last_one_cancels_it(
    world, client_for
):
    buyer, farmer = world["buyer"], world["farmer"]
    other_farmer = FarmerFactory(village=farmer.village)
    apples = create_listing(farmer, unit="kg", category="fruit")
    eggs = create_listing(other_farmer, unit="kg", category="eggs")
    order = place_order(buyer, (world["listing"], 8), (apples, 2), (eggs, 5))
    order_route(order_id=order.pk)
    mine = Shipment.objects.get(order=order, farmer=farmer)
    theirs = Shipment.objects.get(order=order, farmer=other_farmer)
    assert (mine.weight_kg, theirs.weight_kg) == (Decimal("10.000"), Decimal("5.000"))

    def booked():  # fresh from the world fixture's order (8 kg) and this one (15 kg)
        return sorted(CenterDayLoad.objects.values_list("booked_kg", flat=True))

    assert booked() == [Decimal("23.000")] * 2
    client = client_for(farmer)
    line = {x.listing_id: x.pk for x in order.lines.all()}

    def reject(listing):
        url = f"/api/v1/orders/{order.pk}/lines/{line[listing.pk]}/reject/"
        return client.post(url, {"reason": "卖完了"}, format="json")

    assert reject(apples).status_code == 200
    mine.refresh_from_db()
    assert (mine.weight_kg, mine.status) == (Decimal("8.000"), ShipmentStatus.PENDING)
    assert booked() == [Decimal("21.000")] * 2

    assert reject(world["listing"]).status_code == 200
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == (ShipmentStatus.CANCELLED, ShipmentStatus.PENDING)
    assert set(mine.legs.values_list("status", flat=True)) == {LegStatus.CANCELLED}
    assert booked() == [Decimal("13.000")] * 2
    order.refresh_from_db()
    # 17.50 of goods, delivered free as quoted (from 99.00), though now below it
    assert (order.status, order.delivery_fee, order.total) == (
        OrderStatus.CONFIRMED,
        Decimal("0.00"),
        Decimal("17.50"),
    )


def test_an_order_whose_only_goods_on_a_route_are_turned_down_waits_for_a_plan_again(
    world, client_for
):
    """Scheduled means some of the order's goods are on a vehicle route. The north farm's
    goods were (its pickup day planned), the buyer's own village's not yet: once the north
    farmer turns their line down, nothing of the order is on a route, and it is confirmed
    again (waiting for a plan), as after a failed pickup."""
    north, buyer, farmer = world["north"], world["buyer"], world["farmer"]
    Vehicle.objects.create(service_center=north, name="van", capacity_kg=Decimal("300"))
    eggs = create_listing(FarmerFactory(village=buyer.village), unit="kg")
    order = place_order(buyer, (world["listing"], 3), (eggs, 2))
    order_route(order_id=order.pk)
    mine = Shipment.objects.get(order=order, farmer=farmer)
    run = ScheduleRun.objects.create(service_center=north, date=mine.pickup_date)
    assert schedule.schedule_run_execute(run_id=run.pk).status == "done"
    assert Order.objects.get(pk=order.pk).status == OrderStatus.SCHEDULED
    line = order.lines.get(farmer=farmer)

    answer = client_for(farmer).post(
        f"/api/v1/orders/{order.pk}/lines/{line.pk}/reject/", {"reason": "卖完了"}, format="json"
    )

    assert (answer.status_code, answer.json()["status"]) == (200, OrderStatus.CONFIRMED)
    assert sorted(Shipment.objects.filter(order=order).values_list("status", flat=True)) == [
        ShipmentStatus.CANCELLED,
        ShipmentStatus.PENDING,
    ]
    assert list(order.events.values_list("to_status", "reason"))[-2:] == [
        (OrderStatus.SCHEDULED, "on a vehicle route"),
        (OrderStatus.CONFIRMED, "waits for the next plan"),
    ]


def test_goods_left_once_the_cold_line_is_turned_down_go_on_a_plain_van(world, client_for):
    """The farmer turns down the milk and keeps the eggs: what is left needs no cold, so
    the center's plain van takes it (else a center with no refrigerated vehicle would leave
    it out day after day, until it failed for good)."""
    north, buyer, farmer = world["north"], world["buyer"], world["farmer"]
    Vehicle.objects.create(service_center=north, name="van", capacity_kg=Decimal("300"))
    milk = create_listing(farmer, unit="kg", needs_refrigeration=True)
    eggs = create_listing(farmer, unit="kg", category="eggs")
    order = place_order(buyer, (milk, 2), (eggs, 3))
    order_route(order_id=order.pk)
    shipment = Shipment.objects.get(order=order)
    assert shipment.needs_refrigeration is True
    line = order.lines.get(listing=milk)

    answer = client_for(farmer).post(
        f"/api/v1/orders/{order.pk}/lines/{line.pk}/reject/", {"reason": "坏了"}, format="json"
    )

    assert answer.status_code == 200
    shipment.refresh_from_db()
    assert (shipment.weight_kg, shipment.needs_refrigeration) == (Decimal("3.000"), False)
    run = ScheduleRun.objects.create(service_center=north, date=shipment.pickup_date)
    run = schedule.schedule_run_execute(run_id=run.pk)
    assert (run.status, run.summary["unassigned"]) == ("done", [])
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.SCHEDULED


def test_a_weighed_pickup_shared_between_shipments_adds_up_and_none_is_negative(world, client_for):
    """Nine orders of 1 kg and one of 1 g at one farm, weighed 9.006 kg together: shares
    rounded half up would give the first nine 1.001 kg each and leave the last -0.003."""
    farmer, buyer = world["farmer"], world["buyer"]
    listing = create_listing(farmer, unit="kg", min_order_quantity=Decimal("0.001"))
    placed = [place_order(buyer, (listing, kg)) for kg in ["1"] * 9 + ["0.001"]]
    for order in placed:
        order_route(order_id=order.pk)
    together = list(Shipment.objects.filter(order__in=placed).order_by("pk"))
    stop = stop_for(together[0], world["north"], "pickup")
    stop.shipments.set(together)

    done = complete(client_for(world["north_staff"]), stop, outcome="done", weight_kg="9.006")

    assert done.status_code == 200
    shares = [
        s.picked_up_weight_kg
        for s in Shipment.objects.filter(pk__in=[x.pk for x in together]).order_by("pk")
    ]
    assert shares == [Decimal("1.000")] * 9 + [Decimal("0.006")]
    assert sum(shares) == Decimal("9.006")


def test_a_rejected_line_leaves_the_shipment_at_what_its_other_lines_weigh(world, client_for):
    """Two lines of 1.001 jin (0.5005 kg each): 1.001 kg together; one left: 0.501 kg."""
    farmer, buyer = world["farmer"], world["buyer"]
    jin, more_jin = create_listing(farmer, unit="jin"), create_listing(farmer, unit="jin")
    order = place_order(buyer, (jin, "1.001"), (more_jin, "1.001"))
    order_route(order_id=order.pk)
    shipment = Shipment.objects.get(order=order)
    assert shipment.weight_kg == Decimal("1.001")
    loads = CenterDayLoad.objects.filter(center=world["north"], date=shipment.pickup_date)
    before = loads.get().booked_kg

    line = order.lines.get(listing=jin)
    url = f"/api/v1/orders/{order.pk}/lines/{line.pk}/reject/"
    assert client_for(farmer).post(url, {"reason": "卖完了"}, format="json").status_code == 200

    shipment.refresh_from_db()
    assert shipment.weight_kg == Decimal("0.501")
    assert loads.get().booked_kg == before - Decimal("0.500")


def test_a_pickup_needs_its_weight_and_occurred_at_is_kept(world, client_for):
    north = client_for(world["north_staff"])
    two_days_ago = timezone.localtime() - timedelta(days=2)
    with on_day(two_days_ago.date(), time(7)):  # ordered early that morning
        order = place_home(world["buyer"], (world["listing"], 8))
    shipment = Shipment.objects.get(order=order)
    stop = stop_for(shipment, world["north"], "pickup", day=two_days_ago.date())
    assert complete(north, stop, outcome="done").json()["code"] == "weight_required"
    nothing = complete(north, stop, outcome="done", weight_kg="0")
    assert nothing.status_code == 400
    errors = [(e["field"], e["code"]) for e in nothing.json()["errors"]]
    assert errors == [("weight_kg", "min_value")]
    assert Stop.objects.get(pk=stop.pk).status == StopStatus.PENDING
    offline = two_days_ago.replace(hour=8, minute=15, second=0, microsecond=0).isoformat()
    assert (
        complete(north, stop, outcome="done", weight_kg="8", occurred_at=offline).status_code == 200
    )
    event = shipment.events.get(status="picked_up")
    assert timezone.localtime(event.occurred_at).isoformat() == offline


def test_a_pickup_weighed_past_what_any_vehicle_carries_is_400_and_changes_nothing(
    world, client_for
):
    """No vehicle carries more than the largest a center may have (20 t): a weight beyond
    it is a slip of the finger, 400 naming weight_kg, and nothing changes. 9999999.999 kg
    fits the column but not the route's loads (goods on board for a delivery after it):
    it was a 500 (numeric field overflow)."""
    shipment = world["shipment"]
    pickup = stop_for(shipment, world["north"], "pickup")
    neighbour = BuyerFactory(village=VillageFactory(service_center=world["north"]))
    waiting = Shipment.objects.get(order=place_home(neighbour, (world["listing"], 1)))
    Shipment.objects.filter(pk=waiting.pk).update(status=ShipmentStatus.AT_CENTER)
    delivery = Stop.objects.create(
        route=pickup.route, sequence=2, kind="delivery", lat=waiting.delivery_lat, lng=0
    )
    delivery.shipments.add(waiting)
    before = recorded(shipment, pickup, delivery)
    north = client_for(world["north_staff"])

    for kg in ("9999999.999", "20000.001"):
        refused = complete(north, pickup, outcome="done", weight_kg=kg)
        assert refused.status_code == 400, (kg, refused.content)
        errors = [(e["field"], e["code"]) for e in refused.json()["errors"]]
        assert errors == [("weight_kg", "max_value")], kg
    assert recorded(shipment, pickup, delivery) == before

    done = complete(north, pickup, outcome="done", weight_kg="20000")
    assert done.status_code == 200, done.json()
    # on board after it: what it picked up and the goods for the delivery after it
    assert Stop.objects.get(pk=pickup.pk).load_kg == Decimal("20001")


def test_what_a_completion_lacks_or_gets_wrong_names_its_field(world, client_for):
    """Errors name the field they are about, as a validation error does: a missing weight,
    reason or delivery code, and a wrong code (on a stop and on a hand-over). Nothing
    changes."""
    shipment, order = world["shipment"], world["order"]
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
    pickup = stop_for(shipment, world["north"], "pickup")
    wrong = "000000" if order.delivery_code != "000000" else "111111"

    answers = [complete(north, pickup, outcome="done"), complete(north, pickup, outcome="failed")]
    Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.AT_CENTER)
    delivery = stop_for(shipment, world["south"], "delivery")
    answers += [
        complete(south, delivery, outcome="done"),
        complete(south, delivery, outcome="done", delivery_code=wrong),
    ]
    Order.objects.filter(pk=order.pk).update(delivery_method="pickup")
    url = f"/api/v1/shipments/{shipment.pk}/hand-over/"
    answers.append(south.post(url, {"delivery_code": wrong}, format="json"))

    assert [(a.status_code, a.json()["code"], a.json().get("field")) for a in answers] == [
        (400, "weight_required", "weight_kg"),
        (400, "reason_required", "reason"),
        (400, "delivery_code_required", "delivery_code"),
        (400, "invalid_delivery_code", "delivery_code"),
        (400, "invalid_delivery_code", "delivery_code"),
    ]
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.AT_CENTER
    assert [Stop.objects.get(pk=s.pk).status for s in (pickup, delivery)] == ["pending"] * 2


def in_transfer(shipment, north_staff, *, due) -> Shipment:
    """The shipment picked up the day before it is due, and on its way to the south."""
    picked = complete(
        north_staff,
        stop_for(shipment, shipment.origin_center, "pickup"),
        outcome="done",
        weight_kg="8",
    )
    assert picked.status_code == 200
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.IN_TRANSFER
    routing.shipment_move_days(shipment, pickup_date=due - timedelta(days=1), delivery_date=due)
    return shipment


@pytest.fixture
def at_local_hour(monkeypatch, settings):
    """at_local_hour(h): now is today at h o'clock, and the nightly plan of tomorrow runs at
    21:00; it returns today."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21

    def now_at(hour: int) -> date:
        now = timezone.localtime().replace(hour=hour, minute=0, second=0, microsecond=0)
        monkeypatch.setattr(timezone, "now", lambda: now)
        return now.date()

    return now_at


def test_a_receipt_retried_after_the_goods_moved_on_is_answered_as_before(world, client_for):
    """The receiving phone lost the answer; by its retry the driver delivered the goods:
    200, nothing recorded twice (a transfer still on its way stays 409 not_in_transfer
    for goods that never were)."""
    shipment, order = world["shipment"], world["order"]
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
    pickup = stop_for(shipment, world["north"], "pickup")
    assert complete(north, pickup, outcome="done", weight_kg="7.8").status_code == 200
    url = f"/api/v1/shipments/{shipment.pk}/receive/"
    assert south.post(url).status_code == 200
    delivery = stop_for(shipment, world["south"], "delivery")
    done = complete(south, delivery, outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    events = list(shipment.events.values_list("status", "note"))

    retried = south.post(url)

    assert (retried.status_code, retried.json()["status"]) == (200, "delivered")
    assert list(shipment.events.values_list("status", "note")) == events


def test_goods_of_a_farm_of_the_buyers_center_are_no_transfer_to_receive(
    world, collected, client_for
):
    """Picked up and waiting at the buyer's center, which is their farm's: they never were
    on their way between centers, so there is nothing to receive (409 not_in_transfer, as
    once they are handed over), not a 200 as if a transfer had arrived."""
    _order, shipment = collected
    south = client_for(world["south_staff"])
    pickup = stop_for(shipment, world["south"], "pickup")
    assert complete(south, pickup, outcome="done", weight_kg="2").status_code == 200
    shipment.refresh_from_db()
    assert shipment.status == "at_center"
    events = list(shipment.events.values_list("status", "note"))

    answer = south.post(f"/api/v1/shipments/{shipment.pk}/receive/")

    assert (answer.status_code, answer.json()["code"]) == (409, "not_in_transfer")
    assert list(shipment.events.values_list("status", "note")) == events


@pytest.mark.parametrize(
    "case",  # (now at, due in days from today, delivered in days from today)
    [
        (9, -2, 1),  # late: delivered from tomorrow
        (22, -2, 2),  # late, and tomorrow was planned at 21:00 without it
        (9, 0, 1),  # due today, whose plan ran last night while it was on its way
        (22, 0, 2),
        (9, 1, 1),  # due tomorrow, planned tonight: in time
        (22, 1, 2),  # due tomorrow, planned an hour ago without it
        (22, 2, 2),
    ],
    ids=[
        "late",
        "late-evening",
        "due-today",
        "due-today-evening",
        "due-tomorrow",
        "due-tomorrow-evening",
        "due-later-evening",
    ],
)
def test_a_transfer_received_is_delivered_on_a_day_whose_plan_is_still_ahead(
    world, client_for, at_local_hour, case
):
    (hour, due_in, delivered_in), shipment, south = case, world["shipment"], world["south"]
    today = at_local_hour(hour)
    due, delivered = today + timedelta(days=due_in), today + timedelta(days=delivered_in)
    in_transfer(shipment, client_for(world["north_staff"]), due=due)

    received = client_for(world["south_staff"]).post(f"/api/v1/shipments/{shipment.pk}/receive/")

    assert received.status_code == 200
    assert received.json()["delivery_date"] == delivered.isoformat()
    assert shipment.legs.get(kind="delivery").date == delivered
    buyer, order = world["buyer"].pk, world["order"].pk
    assert rescheduled() == (
        [(buyer, order, delivered.isoformat(), due.isoformat(), "transfer_late")]
        if delivered != due
        else []
    )
    loads = dict(CenterDayLoad.objects.filter(center=south).values_list("date", "booked_kg"))
    assert loads[delivered] == Decimal("8.000")
    assert shipment in schedule._day_shipments(south, delivered)
    note = shipment.events.get(status=ShipmentStatus.AT_CENTER).note
    if delivered == due:
        assert note == "transfer received"
    else:
        assert loads[due] == 0
        assert not schedule._day_shipments(south, due).exists()
        assert note == f"transfer received; delivery moved to {delivered:%Y-%m-%d}"


def test_goods_crossing_centers_on_their_days_are_delivered_on_the_day_promised(world, client_for):
    """Picked up on their day, in transfer a day, received at noon the day they arrive: the
    next day's plan, made that evening, takes them, as routing promised. A delivery day
    promised on the arrival day itself would be planned while the goods are on the road and
    missed by every such order."""
    shipment = world["shipment"]
    arrival = shipment.pickup_date + timedelta(days=1)  # 45 km: one day of transfer
    assert shipment.delivery_date == shipment.promised_date == arrival + timedelta(days=1)
    with on_day(shipment.pickup_date):
        pickup = stop_for(shipment, world["north"], "pickup", shipment.pickup_date)
        done = complete(client_for(world["north_staff"]), pickup, outcome="done", weight_kg="8")
        assert done.status_code == 200, done.json()
    with on_day(arrival, time(12, 0)):
        staff = client_for(world["south_staff"])
        received = staff.post(f"/api/v1/shipments/{shipment.pk}/receive/")

    assert received.status_code == 200, received.json()
    shipment.refresh_from_db()
    assert (shipment.status, shipment.delivery_date, shipment.transfer_late) == (
        ShipmentStatus.AT_CENTER,
        shipment.promised_date,
        False,
    )
    assert rescheduled() == []
    assert shipment.events.get(status=ShipmentStatus.AT_CENTER).note == "transfer received"


@pytest.mark.parametrize(("due_in", "delivered_in"), [(0, 0), (1, 1), (-2, 1)])
def test_goods_collected_at_the_center_keep_their_day_unless_it_is_gone(
    world, client_for, at_local_hour, due_in, delivered_in
):
    """No vehicle takes them: no plan to miss. The buyer may come for them on their day."""
    order = place_order(world["buyer"], (world["listing"], 8), delivery_method="pickup")
    order_route(order_id=order.pk)
    shipment = Shipment.objects.get(order=order)
    today = at_local_hour(22)
    in_transfer(shipment, client_for(world["north_staff"]), due=today + timedelta(days=due_in))

    received = client_for(world["south_staff"]).post(f"/api/v1/shipments/{shipment.pk}/receive/")

    assert received.status_code == 200
    delivered = today + timedelta(days=delivered_in)
    assert received.json()["delivery_date"] == delivered.isoformat()
    assert shipment.legs.get(kind="handover").date == delivered
    assert [(n[1], n[2]) for n in rescheduled()] == (
        [(order.pk, delivered.isoformat())] if delivered_in != due_in else []
    )


def test_a_time_not_yet_come_or_long_gone_is_400_and_changes_nothing(world, client_for):
    shipment = world["shipment"]
    north = client_for(world["north_staff"])
    stop = stop_for(shipment, world["north"], "pickup")
    ahead = (timezone.now() + timedelta(hours=1)).isoformat()
    long_ago = (timezone.now() - timedelta(days=31)).isoformat()

    for when, code in [
        (ahead, "in_future"),
        (long_ago, "too_long_ago"),
        ("1900-01-01T00:00:00", "too_long_ago"),
        ("0001-01-01T00:00:00", "overflow"),  # before year 1 in UTC: an OverflowError
    ]:
        refused = complete(north, stop, outcome="done", weight_kg="8", occurred_at=when)
        receive = client_for(world["south_staff"]).post(
            f"/api/v1/shipments/{shipment.pk}/receive/", {"occurred_at": when}, format="json"
        )
        for response in (refused, receive):
            assert response.status_code == 400, (when, response.content)
            assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
                ("occurred_at", code)
            ]
    stop.refresh_from_db()
    assert (stop.status, stop.occurred_at) == (StopStatus.PENDING, None)
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.PENDING
    slightly_fast = (timezone.now() + timedelta(minutes=1)).isoformat()
    done = complete(north, stop, outcome="done", weight_kg="8", occurred_at=slightly_fast)
    assert done.status_code == 200


def recorded(shipment, *stops) -> tuple:
    """All a refused completion, receipt or hand-over must leave as it was."""
    shipment = Shipment.objects.get(pk=shipment.pk)
    fields = ("status", "occurred_at", "weight_kg", "reason", "wrong_code_attempts")
    return (
        [Stop.objects.filter(pk=stop.pk).values_list(*fields).get() for stop in stops],
        [Route.objects.get(pk=stop.route_id).status for stop in stops],
        (
            shipment.status,
            shipment.picked_up_weight_kg,
            shipment.pickup_date,
            shipment.delivery_date,
            shipment.failed_attempts,
        ),
        list(shipment.events.values_list("status", "occurred_at")),
        sorted(shipment.legs.values_list("kind", "status")),
        list(Order.objects.get(pk=shipment.order_id).events.values_list("to_status", flat=True)),
        list(Notification.objects.order_by("pk").values_list("kind", "user_id", "order_id")),
        sorted(CenterDayLoad.objects.values_list("center_id", "date", "booked_kg")),
    )


def test_a_stop_is_recorded_from_its_routes_day_on_done_or_failed(world, client_for):
    """A route of tomorrow: today its pickup is refused, done or failed, and nothing changes
    (the route does not set out, the buyer of a delivery on it is not told it is on the way);
    from tomorrow's first minute, local time, it is recorded."""
    shipment, tomorrow = world["shipment"], timezone.localdate() + timedelta(days=1)
    pickup = stop_for(shipment, world["north"], "pickup", day=tomorrow)
    neighbour = BuyerFactory(village=VillageFactory(service_center=world["north"]))
    waiting = Shipment.objects.get(order=place_home(neighbour, (world["listing"], 1)))
    Shipment.objects.filter(pk=waiting.pk).update(status=ShipmentStatus.AT_CENTER)
    delivery = Stop.objects.create(
        route=pickup.route,
        sequence=2,
        kind="delivery",
        lat=waiting.pickup_lat,
        lng=waiting.pickup_lng,
    )
    delivery.shipments.add(waiting)
    before = recorded(shipment, pickup, delivery)
    north = client_for(world["north_staff"])
    midnight = timezone.make_aware(datetime.combine(tomorrow, time()))

    for body in (
        {"outcome": "done", "weight_kg": "1.7"},
        {"outcome": "failed", "reason": "去早了"},
        {"outcome": "done", "weight_kg": "1.7", "occurred_at": timezone.now().isoformat()},
    ):
        early = complete(north, pickup, **body)
        assert (early.status_code, early.json()["code"], early.json()["route_date"]) == (
            409,
            "before_route_day",
            tomorrow.isoformat(),
        ), body
    assert recorded(shipment, pickup, delivery) == before

    with on_day(tomorrow, time(0, 1)):
        north = client_for(world["north_staff"])
        told_late = (midnight - timedelta(seconds=30)).isoformat()  # still today, locally
        late = complete(north, pickup, outcome="done", weight_kg="1.7", occurred_at=told_late)
        assert (late.status_code, late.json()["code"]) == (409, "before_route_day")
        assert recorded(shipment, pickup, delivery) == before
        # 00:00:30 in Shanghai is 16:00:30 UTC of the day before: the local date counts
        first_minute = midnight + timedelta(seconds=30)
        assert first_minute.astimezone(UTC).date() < tomorrow
        done = complete(
            north, pickup, outcome="done", weight_kg="1.7", occurred_at=first_minute.isoformat()
        )
    assert done.status_code == 200, done.json()
    assert Route.objects.get(pk=pickup.route_id).status == RouteStatus.STARTED
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.IN_TRANSFER
    out = Notification.objects.filter(kind="out_for_delivery")
    assert list(out.values_list("user_id", "order_id")) == [(neighbour.pk, waiting.order_id)]


def test_a_time_before_what_is_recorded_is_400_and_changes_nothing(world, client_for):
    """An offline device tells when things happened; never before the shipment's latest
    tracking event (nor its order's placing). Three hours after the order was placed:
    picked up at +1 h, received at +2 h, delivered after that. A replay of what is
    recorded is still 200, whatever time it tells."""
    shipment, order = world["shipment"], world["order"]
    placed = order.created_at
    first_day = timezone.localdate(placed - timedelta(hours=1))
    pickup = stop_for(shipment, world["north"], "pickup", day=first_day)
    delivery = stop_for(shipment, world["south"], "delivery", day=first_day)

    def at(minutes: int) -> str:
        return (placed + timedelta(minutes=minutes)).isoformat()

    def refused(response, not_before) -> None:
        assert response.status_code == 400, response.json()
        assert (response.json()["code"], response.json()["field"]) == (
            "before_last_event",
            "occurred_at",
        )
        assert response.json()["not_before"] == timezone.localtime(not_before).isoformat()

    with time_machine.travel(placed + timedelta(hours=3), tick=True):
        north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
        receive = f"/api/v1/shipments/{shipment.pk}/receive/"
        before = recorded(shipment, pickup, delivery)
        refused(complete(north, pickup, outcome="done", weight_kg="8", occurred_at=at(-1)), placed)
        refused(
            complete(north, pickup, outcome="failed", reason="没人", occurred_at=at(-1)), placed
        )
        assert recorded(shipment, pickup, delivery) == before

        assert (
            complete(north, pickup, outcome="done", weight_kg="8", occurred_at=at(60)).status_code
            == 200
        )
        picked_at = placed + timedelta(minutes=60)
        before = recorded(shipment, pickup, delivery)
        refused(south.post(receive, {"occurred_at": at(30)}, format="json"), picked_at)
        assert recorded(shipment, pickup, delivery) == before
        assert south.post(receive, {"occurred_at": at(120)}, format="json").status_code == 200

        before = recorded(shipment, pickup, delivery)
        again = complete(north, pickup, outcome="done", weight_kg="8", occurred_at=at(-1))
        assert (again.status_code, again.json()["status"]) == (200, "done")
        again = south.post(receive, {"occurred_at": at(30)}, format="json")
        assert (again.status_code, again.json()["status"]) == (200, "at_center")
        assert recorded(shipment, pickup, delivery) == before

        code, wrong = order.delivery_code, "000000" if order.delivery_code != "000000" else "111111"
        received_at = placed + timedelta(minutes=120)
        for given in (code, wrong):  # a wrong code told too early does not count as a guess
            early = complete(
                south, delivery, outcome="done", delivery_code=given, occurred_at=at(90)
            )
            refused(early, received_at)
        assert recorded(shipment, pickup, delivery) == before
        delivered = complete(south, delivery, outcome="done", delivery_code=code)
    assert delivered.status_code == 200, delivered.json()
    assert list(Shipment.objects.get(pk=shipment.pk).events.values_list("status", flat=True)) == [
        "pending",
        "picked_up",
        "in_transfer",
        "at_center",
        "delivered",
    ]


def test_a_plan_made_while_the_driver_was_offline_does_not_refuse_their_pickup(world, client_for):
    """The day's plan (a system event, written at the server's time) came after the pickup
    the driver's phone recorded offline: the upload is taken at the time it tells."""
    shipment, order = world["shipment"], world["order"]
    placed = order.created_at
    pickup = stop_for(shipment, world["north"], "pickup", day=timezone.localdate(placed))
    shipment.events.create(
        status="scheduled", occurred_at=placed + timedelta(minutes=90), note="on a route"
    )
    picked_offline = placed + timedelta(minutes=60)

    with time_machine.travel(placed + timedelta(hours=2), tick=True):
        north = client_for(world["north_staff"])
        response = complete(
            north, pickup, outcome="done", weight_kg="8", occurred_at=picked_offline.isoformat()
        )

    assert response.status_code == 200, response.json()
    event = Shipment.objects.get(pk=shipment.pk).events.get(status="picked_up")
    assert event.occurred_at == picked_offline


def test_goods_are_not_handed_over_before_they_arrived(world, collected, client_for):
    south, (order, shipment) = world["south"], collected
    placed = order.created_at
    url = f"/api/v1/shipments/{shipment.pk}/hand-over/"

    with time_machine.travel(placed + timedelta(hours=3), tick=True):
        staff = client_for(world["south_staff"])
        pickup = stop_for(shipment, south, "pickup", day=timezone.localdate(placed))
        arrived = placed + timedelta(hours=1)
        body = {"outcome": "done", "weight_kg": "2", "occurred_at": arrived.isoformat()}
        assert complete(staff, pickup, **body).status_code == 200
        before = recorded(shipment, pickup)
        early = {
            "delivery_code": order.delivery_code,
            "occurred_at": (arrived - timedelta(seconds=1)).isoformat(),
        }
        answer = staff.post(url, early, format="json")
        assert (answer.status_code, answer.json()["code"], answer.json()["field"]) == (
            400,
            "before_last_event",
            "occurred_at",
        )
        assert recorded(shipment, pickup) == before
        on_time = {"delivery_code": order.delivery_code, "occurred_at": arrived.isoformat()}
        assert staff.post(url, on_time, format="json").status_code == 200
        assert staff.post(url, early, format="json").status_code == 200  # a replay
    assert Order.objects.get(pk=order.pk).status == OrderStatus.DELIVERED
    assert shipment.events.get(status="delivered").occurred_at == arrived


def test_what_is_recorded_replayed_a_month_on_is_answered_as_before(world, collected, client_for):
    """A phone offline for weeks uploads its day again: every completion, failed report,
    receipt and hand-over it tells exactly as recorded is 200 as before, whatever time it
    tells (longer ago than OFFLINE_AT_MOST by then), and nothing changes."""
    shipment, order = world["shipment"], world["order"]
    collected_order, at_center = collected
    placed = order.created_at
    first_day = timezone.localdate(placed)
    pickup = stop_for(shipment, world["north"], "pickup", day=first_day)
    delivery = stop_for(shipment, world["south"], "delivery", day=first_day)
    own_pickup = stop_for(at_center, world["south"], "pickup", day=first_day)

    def at(minutes: int) -> str:
        return (placed + timedelta(minutes=minutes)).isoformat()

    pickup_done = {"outcome": "done", "weight_kg": "8", "occurred_at": at(60)}
    received = {"occurred_at": at(120)}
    delivery_failed = {"outcome": "failed", "reason": "没人在家", "occurred_at": at(150)}
    own_done = {"outcome": "done", "weight_kg": "2", "occurred_at": at(60)}
    handed = {"delivery_code": collected_order.delivery_code, "occurred_at": at(90)}
    receive = f"/api/v1/shipments/{shipment.pk}/receive/"
    hand_over = f"/api/v1/shipments/{at_center.pk}/hand-over/"

    def tell_all(north, south) -> list:
        answers = [
            complete(north, pickup, **pickup_done),
            south.post(receive, received, format="json"),
            complete(south, delivery, **delivery_failed),
            complete(south, own_pickup, **own_done),
            south.post(hand_over, handed, format="json"),
        ]
        return [(answer.status_code, answer.json()["status"]) for answer in answers]

    told = [(200, "done"), (200, "at_center"), (200, "failed"), (200, "done"), (200, "delivered")]
    with time_machine.travel(placed + timedelta(hours=3), tick=True):
        assert tell_all(client_for(world["north_staff"]), client_for(world["south_staff"])) == told
    before = (recorded(shipment, pickup, delivery), recorded(at_center, own_pickup))

    with time_machine.travel(placed + timedelta(days=31), tick=True):
        again = tell_all(client_for(world["north_staff"]), client_for(world["south_staff"]))

    assert again == told
    assert (recorded(shipment, pickup, delivery), recorded(at_center, own_pickup)) == before


def test_what_is_recorded_replayed_by_a_phone_whose_clock_runs_ahead_is_answered_as_before(
    world, collected, client_for
):
    """Recorded by one phone; another, whose clock runs an hour ahead (a wrong time zone),
    uploads the same day from its offline queue: every completion, failed report, receipt
    and hand-over it tells exactly as recorded is 200 as before, whatever time it tells
    (more than five minutes ahead too), and nothing changes."""
    shipment = world["shipment"]
    collected_order, at_center = collected
    pickup = stop_for(shipment, world["north"], "pickup")
    delivery = stop_for(shipment, world["south"], "delivery")
    own_pickup = stop_for(at_center, world["south"], "pickup")
    receive = f"/api/v1/shipments/{shipment.pk}/receive/"
    hand_over = f"/api/v1/shipments/{at_center.pk}/hand-over/"

    def tell_all(north, south, **at) -> list:
        answers = [
            complete(north, pickup, outcome="done", weight_kg="8", **at),
            south.post(receive, at, format="json"),
            complete(south, delivery, outcome="failed", reason="没人在家", **at),
            complete(south, own_pickup, outcome="done", weight_kg="2", **at),
            south.post(
                hand_over, {"delivery_code": collected_order.delivery_code, **at}, format="json"
            ),
        ]
        return [(answer.status_code, answer.json().get("status")) for answer in answers]

    told = [(200, "done"), (200, "at_center"), (200, "failed"), (200, "done"), (200, "delivered")]
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
    assert tell_all(north, south) == told
    before = (recorded(shipment, pickup, delivery), recorded(at_center, own_pickup))

    ahead = (timezone.now() + timedelta(hours=1)).isoformat()
    assert tell_all(north, south, occurred_at=ahead) == told
    assert (recorded(shipment, pickup, delivery), recorded(at_center, own_pickup)) == before


@pytest.mark.parametrize(
    ("told", "code"), [(-timedelta(days=31), "too_long_ago"), (timedelta(hours=1), "in_future")]
)
def test_a_new_outcome_told_longer_ago_than_a_device_stays_offline_or_ahead_is_400(
    world, collected, client_for, told, code
):
    """Only a replay of what is recorded is taken whatever its time: a stop reported the
    other way, a stop still to record, a receipt or a hand-over still to happen, told more
    than OFFLINE_AT_MOST back (or more than five minutes ahead), are 400 `too_told_at`
    (`in_future`), before any 409 of theirs, as the time was checked first; nothing
    changed: no wrong code counted either."""
    shipment, order = world["shipment"], world["order"]
    collected_order, at_center = collected
    north, south = client_for(world["north_staff"]), client_for(world["south_staff"])
    pickup = stop_for(shipment, world["north"], "pickup")
    delivery = stop_for(shipment, world["south"], "delivery")
    own_pickup = stop_for(at_center, world["south"], "pickup")
    assert complete(north, pickup, outcome="done", weight_kg="8").status_code == 200
    assert complete(south, own_pickup, outcome="done", weight_kg="2").status_code == 200
    told_at = (timezone.now() + told).isoformat()
    receive = f"/api/v1/shipments/{shipment.pk}/receive/"
    hand_over = f"/api/v1/shipments/{at_center.pk}/hand-over/"
    wrong = wrong_codes(collected_order, 1)[0]
    before = (recorded(shipment, pickup, delivery), recorded(at_center, own_pickup))

    answers = [
        complete(north, pickup, outcome="failed", reason="没人", occurred_at=told_at),
        complete(south, delivery, outcome="failed", reason="没人", occurred_at=told_at),
        complete(
            south, delivery, outcome="done", delivery_code=order.delivery_code, occurred_at=told_at
        ),
        south.post(receive, {"occurred_at": told_at}, format="json"),
        south.post(
            hand_over,
            {"delivery_code": collected_order.delivery_code, "occurred_at": told_at},
            format="json",
        ),
        south.post(hand_over, {"delivery_code": wrong, "occurred_at": told_at}, format="json"),
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.content
        assert [(e["field"], e["code"]) for e in answer.json()["errors"]] == [("occurred_at", code)]
    assert (recorded(shipment, pickup, delivery), recorded(at_center, own_pickup)) == before
    assert Order.objects.get(pk=collected_order.pk).hand_over_wrong_codes == 0


def test_now_never_goes_back_before_a_time_told_a_little_ahead(world, client_for):
    """A phone four minutes fast records the pickup (within the slack allowed); a receipt
    recorded right after without a time is kept at the pickup's time, not before it."""
    shipment = world["shipment"]
    pickup = stop_for(shipment, world["north"], "pickup")
    fast = timezone.now() + timedelta(minutes=4)
    body = {"outcome": "done", "weight_kg": "8", "occurred_at": fast.isoformat()}
    assert complete(client_for(world["north_staff"]), pickup, **body).status_code == 200
    received = client_for(world["south_staff"]).post(f"/api/v1/shipments/{shipment.pk}/receive/")
    assert received.status_code == 200, received.json()
    assert shipment.events.get(status="at_center").occurred_at == fast


def test_permission_matrix_others_get_404_and_nothing_changes(world, client_for):
    shipment = world["shipment"]
    stop = stop_for(shipment, world["north"], "pickup")
    url = f"/api/v1/shipments/{shipment.pk}/"
    allowed = [world["north_staff"], world["south_staff"], world["farmer"], world["buyer"]]
    for user in allowed:
        assert client_for(user).get(url).status_code == 200
    strangers = [
        StaffFactory(service_center=ServiceCenterFactory()),
        FarmerFactory(),
        BuyerFactory(),
    ]
    for user in strangers:
        client = client_for(user)
        assert client.get(url).status_code == 404
        assert client.get("/api/v1/shipments/").json()["count"] == 0
        assert client.post(f"{url}receive/").status_code in (403, 404)
        assert complete(client, stop, outcome="done", weight_kg="8").status_code in (403, 404)
    # Staff of the other center of this very shipment cannot complete this center's stop.
    assert (
        complete(client_for(world["south_staff"]), stop, outcome="done", weight_kg="8").status_code
        == 404
    )
    stop.refresh_from_db()
    assert stop.status == StopStatus.PENDING
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.PENDING


def test_my_pickups_shows_the_farmers_upcoming_pickups_only(world, client_for):
    response = client_for(world["farmer"]).get("/api/v1/my/pickups/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [world["shipment"].pk]
    assert rows[0]["pickup_date"] == str(world["shipment"].pickup_date)
    assert client_for(FarmerFactory()).get("/api/v1/my/pickups/").json()["count"] == 0
    assert client_for(world["buyer"]).get("/api/v1/my/pickups/").status_code == 403


def test_a_transfer_not_received_a_day_late_is_flagged(world):
    shipment = world["shipment"]
    Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.IN_TRANSFER)
    transfer_day = shipment.legs.get(kind="transfer").date
    assert shipments_flag_late_transfers(today=transfer_day + timedelta(days=1)) == 0
    assert shipments_flag_late_transfers(today=transfer_day + timedelta(days=2)) == 1
    assert shipments_flag_late_transfers(today=transfer_day + timedelta(days=2)) == 0
    assert Shipment.objects.get(pk=shipment.pk).transfer_late is True


def test_the_order_shows_its_shipments_to_the_buyer_and_each_farmer_their_own(world, client_for):
    order = world["order"]
    other_farmer = FarmerFactory(village=VillageFactory(service_center=world["south"]))
    extra = create_listing(other_farmer)
    second = place_order(world["buyer"], (world["listing"], 1), (extra, 1))
    order_route(order_id=second.pk)
    as_buyer = client_for(world["buyer"]).get(f"/api/v1/orders/{second.pk}/").json()
    assert sorted(s["farmer"] for s in as_buyer["shipments"]) == sorted(
        [world["farmer"].pk, other_farmer.pk]
    )
    remote = next(s for s in as_buyer["shipments"] if s["farmer"] == world["farmer"].pk)
    assert [leg["kind"] for leg in remote["legs"]] == ["pickup", "transfer", "delivery"]
    as_farmer = client_for(other_farmer).get(f"/api/v1/orders/{second.pk}/").json()
    assert [s["farmer"] for s in as_farmer["shipments"]] == [other_farmer.pk]
    first = client_for(world["buyer"]).get(f"/api/v1/orders/{order.pk}/").json()
    assert [s["id"] for s in first["shipments"]] == [world["shipment"].pk]


def test_the_order_shows_each_shipments_tracking_events(world, client_for):
    shipment, order = world["shipment"], world["order"]
    pickup = stop_for(shipment, world["north"], "pickup")
    done = complete(client_for(world["north_staff"]), pickup, outcome="done", weight_kg="7.9")
    assert done.status_code == 200
    [shown] = client_for(world["buyer"]).get(f"/api/v1/orders/{order.pk}/").json()["shipments"]
    tracked = client_for(world["buyer"]).get(f"/api/v1/shipments/{shipment.pk}/").json()
    assert [e["status"] for e in shown["events"]] == ["pending", "picked_up", "in_transfer"]
    assert shown["events"] == tracked["events"]
    assert shown["events"][1]["note"] == "7.900 kg"


def test_goods_collected_at_the_center_are_handed_over_with_the_buyers_code(
    world, collected, client_for
):
    south, (order, shipment) = world["south"], collected
    staff = client_for(world["south_staff"])
    url = f"/api/v1/shipments/{shipment.pk}/hand-over/"
    code = order.delivery_code

    early = staff.post(url, {"delivery_code": code}, format="json")
    assert (early.status_code, early.json()["code"]) == (409, "shipment_not_ready")
    picked = complete(staff, stop_for(shipment, south, "pickup"), outcome="done", weight_kg="2")
    assert picked.status_code == 200
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.AT_CENTER

    wrong = staff.post(url, {"delivery_code": "000000" if code != "000000" else "111111"})
    assert (wrong.status_code, wrong.json()["code"]) == (400, "invalid_delivery_code")
    assert client_for(world["north_staff"]).post(url, {"delivery_code": code}).status_code == 404
    assert client_for(shipment.farmer).post(url, {"delivery_code": code}).status_code == 403
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.AT_CENTER

    handed = staff.post(url, {"delivery_code": code}, format="json")
    assert handed.status_code == 200, handed.json()
    assert handed.json()["status"] == "delivered"
    assert set(shipment.legs.values_list("kind", "status")) == {
        ("pickup", "done"),
        ("handover", "done"),
    }
    order.refresh_from_db()
    assert (order.status, order.payment_status) == (OrderStatus.DELIVERED, PaymentStatus.COLLECTED)
    again = staff.post(url, {"delivery_code": code}, format="json")
    assert (again.status_code, again.json()["status"]) == (200, "delivered")
    guess = staff.post(url, {"delivery_code": "000000" if code != "000000" else "111111"})
    assert (guess.status_code, guess.json()["code"]) == (400, "invalid_delivery_code")
    assert order.events.filter(to_status=OrderStatus.DELIVERED).count() == 1


def test_a_buyer_collecting_at_the_center_is_told_once_all_the_goods_are_there(world, client_for):
    """One farmer near the buyer's (south) center, one in the north whose goods come by
    transfer: the buyer hears "ready to collect" once, when the last of them arrives."""
    south, buyer = world["south"], world["buyer"]
    near = FarmerFactory(village=VillageFactory(service_center=south))
    order = place_order(
        buyer,
        (create_listing(near), 2),
        (world["listing"], 3),  # the north farmer's
        delivery_method="pickup",
    )
    order_route(order_id=order.pk)
    local = Shipment.objects.get(order=order, farmer=near)
    far = Shipment.objects.get(order=order, farmer=world["farmer"])
    south_staff, north_staff = client_for(world["south_staff"]), client_for(world["north_staff"])

    def ready():
        return list(Notification.objects.filter(order=order, kind="ready_for_collection"))

    picked = complete(south_staff, stop_for(local, south, "pickup"), outcome="done", weight_kg="1")
    assert picked.status_code == 200
    assert ready() == []  # the north farmer's goods are not there yet
    far_pickup = stop_for(far, world["north"], "pickup")
    assert complete(north_staff, far_pickup, outcome="done", weight_kg="3").status_code == 200
    assert ready() == []  # on their way
    received = south_staff.post(f"/api/v1/shipments/{far.pk}/receive/")
    assert received.status_code == 200
    again = south_staff.post(f"/api/v1/shipments/{far.pk}/receive/")
    assert again.status_code == 200

    [note] = ready()
    assert (note.user_id, note.title, note.data) == (
        buyer.pk,
        "可以自提了",
        {"order": order.pk, "service_center": south.pk},
    )
    assert note.body == f"订单 #{order.pk} 的商品已到 {south.name}，请凭收货码自提。"


def test_the_buyer_hears_ready_to_collect_once_the_rest_of_the_goods_failed_for_good(
    world, client_for, settings
):
    """Goods of a farm near the buyer's center wait there; the north farmer's pickup fails
    for good: what waits at the center is now the last of the goods still coming, so the
    buyer is told once to collect it."""
    settings.MAX_STOP_ATTEMPTS = 1
    south, buyer = world["south"], world["buyer"]
    near = FarmerFactory(village=VillageFactory(service_center=south))
    order = place_order(
        buyer, (create_listing(near), 2), (world["listing"], 3), delivery_method="pickup"
    )
    order_route(order_id=order.pk)
    local = Shipment.objects.get(order=order, farmer=near)
    far = Shipment.objects.get(order=order, farmer=world["farmer"])
    south_staff, north_staff = client_for(world["south_staff"]), client_for(world["north_staff"])

    def ready():
        return list(Notification.objects.filter(order=order, kind="ready_for_collection"))

    picked = complete(south_staff, stop_for(local, south, "pickup"), outcome="done", weight_kg="1")
    assert picked.status_code == 200
    assert ready() == []  # the north farmer's goods are still coming
    far_pickup = stop_for(far, world["north"], "pickup")
    failed = complete(north_staff, far_pickup, outcome="failed", reason="农户不在")
    assert failed.status_code == 200

    assert Shipment.objects.get(pk=far.pk).status == ShipmentStatus.FAILED
    [note] = ready()
    assert (note.user_id, note.data) == (buyer.pk, {"order": order.pk, "service_center": south.pk})


def test_goods_delivered_home_tell_nobody_to_collect_them(world, client_for):
    shipment = world["shipment"]
    in_transfer(shipment, client_for(world["north_staff"]), due=timezone.localdate() + timedelta(3))
    received = client_for(world["south_staff"]).post(f"/api/v1/shipments/{shipment.pk}/receive/")
    assert (received.status_code, Shipment.objects.get(pk=shipment.pk).status) == (200, "at_center")
    assert not Notification.objects.filter(kind="ready_for_collection").exists()


def test_goods_delivered_home_are_not_handed_over_at_the_center(world, client_for):
    shipment, order = world["shipment"], world["order"]
    url = f"/api/v1/shipments/{shipment.pk}/hand-over/"
    answer = client_for(world["south_staff"]).post(url, {"delivery_code": order.delivery_code})
    assert (answer.status_code, answer.json()["code"]) == (409, "not_for_hand_over")
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.PENDING


def test_goods_failing_for_good_lock_their_listings_at_once_in_key_order(world, settings):
    """Order A holds the farmer's second listing and order B the first, both at one pickup
    that fails for good: restocking order by order would lock the second, then the first,
    and deadlock with a cancel or a placement locking both in key order."""
    settings.MAX_STOP_ATTEMPTS = 1
    farmer, buyer = world["farmer"], world["buyer"]
    first, second = create_listing(farmer), create_listing(farmer)
    placed = [place_order(buyer, (listing, 1)) for listing in (second, first)]
    for order in placed:
        order_route(order_id=order.pk)
    together = list(Shipment.objects.filter(order__in=placed).order_by("pk"))
    stop = stop_for(together[0], world["north"], "pickup")
    stop.shipments.set(together)

    with CaptureQueriesContext(connection) as queries:
        shipments.stop_complete(
            stop_id=stop.pk,
            staff=world["north_staff"],
            data=Completion(outcome="failed", reason="路断了"),
        )

    locks = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "listings_listing"' in q["sql"] and "FOR UPDATE" in q["sql"]
    ]
    assert locks, "no listing was locked"
    assert f"ANY('{{{first.pk},{second.pk}}}'" in locks[0]  # both, the first one first
    assert [Listing.objects.get(pk=x.pk).quantity_available for x in (first, second)] == [
        Decimal(100),
        Decimal(100),
    ]


def test_a_hand_over_replayed_after_wrong_codes_locked_the_order_is_answered_as_before(
    world, collected, client_for
):
    """The clerk's phone replays a hand-over whose 200 it never got, after someone tried
    codes on the goods handed over and locked the order's hand-over: 200 as recorded, as a
    stop done is answered whatever its code."""
    south, (order, shipment) = world["south"], collected
    staff = client_for(world["south_staff"])
    picked = complete(staff, stop_for(shipment, south, "pickup"), outcome="done", weight_kg="2")
    assert picked.status_code == 200
    url = f"/api/v1/shipments/{shipment.pk}/hand-over/"
    handed = staff.post(url, {"delivery_code": order.delivery_code}, format="json")
    assert (handed.status_code, handed.json()["status"]) == (200, "delivered")
    for code in wrong_codes(order, 5):
        assert staff.post(url, {"delivery_code": code}, format="json").status_code == 400
    events = list(shipment.events.values_list("status", flat=True))

    again = staff.post(url, {"delivery_code": order.delivery_code}, format="json")

    assert (again.status_code, again.json()["status"]) == (200, "delivered")
    assert list(shipment.events.values_list("status", flat=True)) == events


def test_the_hand_over_tells_nothing_of_the_code_before_the_goods_wait_for_the_buyer(
    world, client_for
):
    """Goods delivered home, or collected but not at the center yet: a wrong code and the
    right one get the same answer, so the hand-over is no way to learn a code."""
    shipment, order = world["shipment"], world["order"]
    url = f"/api/v1/shipments/{shipment.pk}/hand-over/"
    staff = client_for(world["south_staff"])
    wrong = "000000" if order.delivery_code != "000000" else "111111"
    for method, status, code in (
        ("home", ShipmentStatus.AT_CENTER, "not_for_hand_over"),
        ("pickup", ShipmentStatus.IN_TRANSFER, "shipment_not_ready"),
        ("pickup", ShipmentStatus.PENDING, "shipment_not_ready"),
    ):
        Order.objects.filter(pk=order.pk).update(delivery_method=method)
        Shipment.objects.filter(pk=shipment.pk).update(status=status)
        for guess in (wrong, order.delivery_code):
            answer = staff.post(url, {"delivery_code": guess})
            assert (answer.status_code, answer.json()["code"]) == (409, code), (method, status)
        assert Shipment.objects.get(pk=shipment.pk).status == status


def test_the_hand_over_code_cannot_be_guessed(world, client_for, monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"hand_over": "3/hour"})
    shipment, order = world["shipment"], world["order"]
    Order.objects.filter(pk=order.pk).update(delivery_method="pickup")
    Shipment.objects.filter(pk=shipment.pk).update(status=ShipmentStatus.AT_CENTER)
    url = f"/api/v1/shipments/{shipment.pk}/hand-over/"
    staff = client_for(world["south_staff"])
    wrong = [f"{n:06d}" for n in range(4) if f"{n:06d}" != order.delivery_code][:3]
    answers = [staff.post(url, {"delivery_code": code}).status_code for code in wrong]
    answers.append(staff.post(url, {"delivery_code": order.delivery_code}).status_code)
    assert answers == [400, 400, 400, 429]  # the right code too, once the limit is reached
    other_staff = client_for(StaffFactory(service_center=world["south"]))
    handed = other_staff.post(url, {"delivery_code": order.delivery_code})
    assert handed.status_code == 200  # the limit is each staff member's


def test_wrong_codes_at_a_hand_over_count_per_order_and_the_fifth_locks_it(world, client_for):
    """As at a delivery stop: four wrong codes say how many are left, the fifth locks the
    order's hand-over (each of its shipments: the code is the order's) until staff review it
    in the admin. A wrong code's count is kept though its answer is 400, also when the
    request carried an Idempotency-Key (its answer is stored in the same transaction)."""
    south, buyer = world["south"], world["buyer"]
    north_farmer, south_farmer = (
        world["farmer"],
        FarmerFactory(village=VillageFactory(service_center=south)),
    )
    order = place_order(
        buyer,
        (create_listing(north_farmer), 2),
        (create_listing(south_farmer), 3),
        delivery_method="pickup",
    )
    order_route(order_id=order.pk)
    first, second = Shipment.objects.filter(order=order).order_by("pk")
    Shipment.objects.filter(order=order).update(status=ShipmentStatus.AT_CENTER)
    staff = client_for(world["south_staff"])
    wrong = wrong_codes(order, 5)

    def hand_over(shipment, code, **headers):
        url = f"/api/v1/shipments/{shipment.pk}/hand-over/"
        return staff.post(url, {"delivery_code": code}, format="json", headers=headers)

    answers = [
        hand_over(first, wrong[0], **{"Idempotency-Key": "guess-1"}),
        hand_over(second, wrong[1]),
        hand_over(second, wrong[1]),  # the same code again (its answer lost): counted once
        hand_over(first, wrong[2]),
        hand_over(second, wrong[3]),
    ]
    assert [(a.status_code, a.json()["code"], a.json()["attempts_left"]) for a in answers] == [
        (400, "invalid_delivery_code", left) for left in (4, 3, 3, 2, 1)
    ]
    fifth = hand_over(first, wrong[4])
    assert (fifth.status_code, fifth.json()["attempts_left"]) == (400, 0)
    assert "locked" in fifth.json()["detail"]
    assert Order.objects.get(pk=order.pk).hand_over_wrong_codes == 5
    for shipment in (first, second):
        locked = hand_over(shipment, order.delivery_code)
        assert (locked.status_code, locked.json()["code"]) == (409, "hand_over_locked")
    assert set(Shipment.objects.filter(order=order).values_list("status", flat=True)) == {
        ShipmentStatus.AT_CENTER
    }
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CONFIRMED

    # Staff review it with the buyer; an operator allows the hand-over again in the admin.
    operator = Client()
    operator.force_login(
        User.objects.create_superuser(phone="+8613000000009", password="an-op-passphrase")
    )
    other = world["order"]  # not locked: left as it is
    action = {"action": "unlock_hand_over", "_selected_action": [order.pk, other.pk]}
    assert operator.post("/admin/orders/order/", action).status_code == 302
    assert Order.objects.filter(pk=order.pk).values_list(
        "hand_over_wrong_codes", "hand_over_last_wrong_code"
    ).get() == (0, "")
    for shipment in (first, second):
        assert hand_over(shipment, order.delivery_code).status_code == 200
    assert Order.objects.get(pk=order.pk).status == OrderStatus.DELIVERED


def test_a_failed_pickup_closes_the_routes_delivery_of_nothing_but_its_goods(world, client_for):
    """A farmer was out: the delivery later on the same route brings nothing and is closed
    (failed, with why); a delivery that still has goods on board goes on."""
    south, buyer = world["south"], world["buyer"]
    farmer = FarmerFactory(village=VillageFactory(service_center=south))
    order = place_order(buyer, (create_listing(farmer), 2))
    order_route(order_id=order.pk)
    shipment = Shipment.objects.get(order=order)
    on_board = world["shipment"]
    Shipment.objects.filter(pk=on_board.pk).update(status=ShipmentStatus.AT_CENTER)
    route = Route.objects.create(service_center=south, date=timezone.localdate())
    place = {"lat": shipment.pickup_lat, "lng": shipment.pickup_lng}
    pickup = Stop.objects.create(route=route, sequence=1, kind="pickup", **place)
    empty = Stop.objects.create(route=route, sequence=2, kind="delivery", **place)
    going = Stop.objects.create(route=route, sequence=3, kind="delivery", **place)
    pickup.shipments.add(shipment)
    empty.shipments.add(shipment)
    going.shipments.add(on_board)

    failed = complete(client_for(world["south_staff"]), pickup, outcome="failed", reason="农户不在")

    assert failed.status_code == 200, failed.json()
    stops = Stop.objects.filter(route=route).order_by("sequence")
    assert list(stops.values_list("status", "reason")) == [
        ("failed", "农户不在"),
        ("failed", "its goods were not picked up"),
        ("pending", ""),
    ]
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.PENDING  # at the farm
    assert Route.objects.get(pk=route.pk).status == RouteStatus.STARTED  # one delivery to go


@pytest.fixture
def two_farmer_order(request):
    """Cash on delivery (or, parametrized indirectly, "prepaid" and paid), home: 8 kg ×
    10.00 from A, 5 kg × 3.00 from B = 95.00 + 7.00 fee = 102.00, everyone in one center,
    routed."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    fa, fb = FarmerFactory(village=village), FarmerFactory(village=village)
    buyer = BuyerFactory(village=village)
    a = create_listing(fa, unit="kg", price=Decimal("10.00"))
    b = create_listing(fb, unit="kg", price=Decimal("3.00"))
    payment_method = getattr(request, "param", "cod")
    order = place_order(buyer, (a, 8), (b, 5), payment_method=payment_method)
    assert order.total == Decimal("102.00")
    if payment_method == "prepaid":
        order = provider_notice(order, "102.00")
    order_route(order_id=order.pk)
    return {
        "center": center,
        "buyer": buyer,
        "order": order,
        "staff": StaffFactory(service_center=center),
        "sa": Shipment.objects.get(order=order, farmer=fa),
        "sb": Shipment.objects.get(order=order, farmer=fb),
    }


def one_route_of_two_farms_to_their_buyer(w) -> tuple[Stop, Stop, Stop]:
    """Today's route of the order's two farms, then its buyer: a pickup at each farm and
    one delivery stop of both farms' goods (one order at one place: one stop, one code)."""
    route = Route.objects.create(service_center=w["center"], date=timezone.localdate())
    pickup_a, pickup_b = stops_each(route, "pickup", [w["sa"], w["sb"]])
    delivery = Stop.objects.create(
        route=route, sequence=3, kind="delivery", lat=w["sa"].delivery_lat, lng=0
    )
    delivery.shipments.add(w["sa"], w["sb"])
    return pickup_a, pickup_b, delivery


@pytest.mark.parametrize("failed_first", [True, False])
def test_a_farm_out_leaves_the_other_farms_goods_of_the_order_to_deliver(
    two_farmer_order, client_for, failed_first
):
    """Farm A's pickup fails, farm B's goods are picked up (after it, or before it): the
    delivery stop goes on with B's goods, without A's (back at the farm for another day),
    and takes their cash, as for B's goods alone (15.00 and one farm's fee, 5.00). It was
    closed as empty while B was still to come, B's goods then left at the center with no
    delivery; or refused (409 shipment_not_ready, A's goods not there), so it could only
    fail, moving B's goods to another day too."""
    w = two_farmer_order
    staff = client_for(w["staff"])
    pickup_a, pickup_b, delivery = one_route_of_two_farms_to_their_buyer(w)

    def fail_a():
        failed = complete(staff, pickup_a, outcome="failed", reason="农户不在")
        assert failed.status_code == 200, failed.json()

    if failed_first:
        fail_a()
        assert Stop.objects.get(pk=delivery.pk).status == StopStatus.PENDING
    assert complete(staff, pickup_b, outcome="done", weight_kg="5").status_code == 200
    if not failed_first:
        fail_a()
    done = complete(staff, delivery, outcome="done", delivery_code=w["order"].delivery_code)

    assert done.status_code == 200, done.json()
    assert (done.json()["status"], done.json()["cash_collected"]) == ("done", "20.00")
    sa, sb = (Shipment.objects.get(pk=w[s].pk) for s in ("sa", "sb"))
    assert (sa.status, sa.failed_attempts) == (ShipmentStatus.PENDING, 1)  # another day
    assert (sb.status, sb.cash_collected) == (ShipmentStatus.DELIVERED, Decimal("20.00"))
    assert list(Stop.objects.get(pk=delivery.pk).shipments.all()) == [sb]
    assert Route.objects.get(pk=delivery.route_id).status == RouteStatus.COMPLETED


def test_a_farmer_out_at_a_stop_shared_with_another_farm_leaves_only_their_goods(
    two_farmer_order, client_for
):
    """Farms at one place share a pickup stop. Farmer A is out, B hands over 5 kg: the
    stop is done for B's goods and names A's as not picked up (`not_picked_up`, with the
    reason), which fail as a failed pickup's do (back at the farm for another day, a try
    counted) and leave the buyer's delivery, done with B's goods and their cash. Recorded
    as done, A's goods were taken as picked up (a share of B's 5 kg) though they were
    never on board; reported failed, B's goods handed over were left at the farm too."""
    w = two_farmer_order
    staff = client_for(w["staff"])
    route = Route.objects.create(service_center=w["center"], date=timezone.localdate())
    shared = Stop.objects.create(
        route=route, sequence=1, kind="pickup", lat=w["sa"].pickup_lat, lng=w["sa"].pickup_lng
    )
    shared.shipments.add(w["sa"], w["sb"])
    delivery = Stop.objects.create(
        route=route, sequence=2, kind="delivery", lat=w["sa"].delivery_lat, lng=0
    )
    delivery.shipments.add(w["sa"], w["sb"])
    body = {"outcome": "done", "weight_kg": "5", "not_picked_up": [w["sa"].pk]}

    assert complete(staff, shared, **body).json()["code"] == "reason_required"
    assert Shipment.objects.get(pk=w["sa"].pk).status == ShipmentStatus.PENDING
    done = complete(staff, shared, **body, reason="农户不在")

    assert done.status_code == 200, done.json()
    assert (done.json()["status"], done.json()["weight_kg"], done.json()["reason"]) == (
        "done",
        "5.000",
        "农户不在",
    )
    sa, sb = (Shipment.objects.get(pk=w[s].pk) for s in ("sa", "sb"))
    assert (sa.status, sa.picked_up_weight_kg, sa.failed_attempts) == (
        ShipmentStatus.PENDING,
        None,
        1,
    )
    assert sa.pickup_date == w["sa"].pickup_date + timedelta(days=1)
    assert (sb.status, sb.picked_up_weight_kg) == (ShipmentStatus.AT_CENTER, Decimal("5.000"))
    assert Stop.objects.get(pk=shared.pk).load_kg == Decimal("5.000")  # B's goods on board
    assert list(Stop.objects.get(pk=delivery.pk).shipments.all()) == [sb]
    delivered = complete(staff, delivery, outcome="done", delivery_code=w["order"].delivery_code)
    assert (delivered.status_code, delivered.json()["cash_collected"]) == (200, "20.00")


@pytest.mark.parametrize(
    ("left", "code"),
    [("all", "nothing_picked_up"), ("other", "not_at_this_stop")],
)
def test_goods_named_not_picked_up_must_be_some_of_the_stops(
    two_farmer_order, client_for, left, code
):
    """Naming every farm's goods is a failed pickup (say so: `outcome` failed), and goods
    of another stop are none of this one's: 400 naming `not_picked_up`, nothing changes."""
    w = two_farmer_order
    stop = stop_for(w["sa"], w["center"], "pickup")
    stop.shipments.add(w["sb"])
    ids = [w["sa"].pk, w["sb"].pk] if left == "all" else [w["sa"].pk, 10**9]
    before = recorded(w["sa"], stop), recorded(w["sb"], stop)
    refused = complete(
        client_for(w["staff"]),
        stop,
        outcome="done",
        weight_kg="5",
        reason="农户不在",
        not_picked_up=ids,
    )
    assert (refused.status_code, refused.json()["code"], refused.json()["field"]) == (
        400,
        code,
        "not_picked_up",
    )
    assert (recorded(w["sa"], stop), recorded(w["sb"], stop)) == before


def test_goods_cancelled_after_the_route_set_out_may_be_named_not_picked_up(
    two_farmer_order, client_for
):
    """A stop keeps the goods cancelled after its route set out (the route lists them): a
    driver who did not hear of it names them not picked up, as the farmer handed nothing
    over for them. They are the stop's, not another stop's: skipped, as they are at a
    pickup done, and the rest is picked up; with every other farm's goods named too, nothing
    was picked up."""
    w = two_farmer_order
    staff = client_for(w["staff"])
    route = Route.objects.create(
        service_center=w["center"], date=timezone.localdate(), status=RouteStatus.STARTED
    )
    shared = Stop.objects.create(
        route=route, sequence=1, kind="pickup", lat=w["sa"].pickup_lat, lng=w["sa"].pickup_lng
    )
    shared.shipments.add(w["sa"], w["sb"])
    line_b = w["order"].lines.get(farmer=w["sb"].farmer)
    orders.order_line_reject(
        order_id=w["order"].pk, line_id=line_b.pk, farmer=w["sb"].farmer, reason="卖完了"
    )
    listed = client_for(w["staff"]).get(f"/api/v1/routes/{route.pk}/").json()
    assert listed["stops"][0]["shipments"] == [w["sa"].pk, w["sb"].pk]
    body = {"outcome": "done", "weight_kg": "8", "reason": "B 的货取消了"}

    before = recorded(w["sa"], shared), recorded(w["sb"], shared)
    everything = complete(staff, shared, **body, not_picked_up=[w["sa"].pk, w["sb"].pk])
    assert (everything.status_code, everything.json()["code"]) == (400, "nothing_picked_up")
    assert (recorded(w["sa"], shared), recorded(w["sb"], shared)) == before

    done = complete(staff, shared, **body, not_picked_up=[w["sb"].pk])

    assert done.status_code == 200, done.json()
    assert (done.json()["status"], done.json()["weight_kg"]) == ("done", "8.000")
    sa, sb = (Shipment.objects.get(pk=w[s].pk) for s in ("sa", "sb"))
    assert (sa.status, sa.picked_up_weight_kg, sa.failed_attempts) == (
        ShipmentStatus.AT_CENTER,
        Decimal("8.000"),
        0,
    )
    assert (sb.status, sb.picked_up_weight_kg, sb.failed_attempts) == (
        ShipmentStatus.CANCELLED,
        None,
        0,
    )


def test_goods_named_not_picked_up_at_a_delivery_done_are_refused_not_delivered(
    two_farmer_order, client_for
):
    """`not_picked_up` is a pickup's: at a delivery, a driver naming goods the buyer did not
    take would have had them recorded as delivered, their cash as taken, the field unread.
    400 `not_at_this_stop` naming `not_picked_up`, nothing changes, no wrong code counted
    (a delivery the buyer turned down is reported failed)."""
    w = two_farmer_order
    staff = client_for(w["staff"])
    pickup_a, pickup_b, delivery = one_route_of_two_farms_to_their_buyer(w)
    for pickup in (pickup_a, pickup_b):
        assert complete(staff, pickup, outcome="done", weight_kg="5").status_code == 200
    before = recorded(w["sa"], delivery), recorded(w["sb"], delivery)

    refused = complete(
        staff,
        delivery,
        outcome="done",
        delivery_code=w["order"].delivery_code,
        not_picked_up=[w["sb"].pk],
        reason="买家不要",
    )

    assert (refused.status_code, refused.json()["code"], refused.json()["field"]) == (
        400,
        "not_at_this_stop",
        "not_picked_up",
    )
    assert (recorded(w["sa"], delivery), recorded(w["sb"], delivery)) == before
    assert Shipment.objects.filter(order=w["order"], cash_collected__isnull=False).count() == 0
    # no list, or an empty one, is a delivery as ever
    done = complete(
        staff, delivery, outcome="done", delivery_code=w["order"].delivery_code, not_picked_up=[]
    )
    assert (done.status_code, done.json()["cash_collected"]) == (200, "102.00")


def test_a_delivery_left_with_only_goods_whose_pickups_failed_is_closed(
    two_farmer_order, client_for
):
    """Both farms out: A's goods leave the delivery while B's are still to come; once B's
    pickup fails too, nothing is left to bring, and the delivery closes (failed), naming
    B's goods, with why."""
    w = two_farmer_order
    staff = client_for(w["staff"])
    pickup_a, pickup_b, delivery = one_route_of_two_farms_to_their_buyer(w)
    for pickup in (pickup_a, pickup_b):
        assert complete(staff, pickup, outcome="failed", reason="农户不在").status_code == 200
    delivery.refresh_from_db()
    assert (delivery.status, delivery.reason) == (StopStatus.FAILED, shipments.NOT_PICKED_UP)
    assert list(delivery.shipments.all()) == [w["sb"]]
    assert Route.objects.get(pk=delivery.route_id).status == RouteStatus.COMPLETED
    assert set(Shipment.objects.filter(order=w["order"]).values_list("status", flat=True)) == {
        ShipmentStatus.PENDING
    }


def test_a_delivery_stop_failing_for_good_tells_the_buyer_once_with_the_true_total(
    two_farmer_order, client_for, settings
):
    """Both farmers' goods go out on one delivery stop; the buyer is never home and the
    stop fails for good: one message, of both farmers' goods and the order's real total
    (each farmer's in turn told a total that only existed halfway, 20.00, then 0.00)."""
    settings.MAX_STOP_ATTEMPTS = 1
    w = two_farmer_order
    Shipment.objects.filter(pk__in=[w["sa"].pk, w["sb"].pk]).update(status=ShipmentStatus.AT_CENTER)
    route = Route.objects.create(service_center=w["center"], date=timezone.localdate())
    stop = Stop.objects.create(
        route=route,
        sequence=1,
        kind="delivery",
        lat=w["sa"].delivery_lat,
        lng=w["sa"].delivery_lng,
    )
    stop.shipments.add(w["sa"], w["sb"])

    failed = complete(client_for(w["staff"]), stop, outcome="failed", reason="没人")

    assert failed.status_code == 200
    order = w["order"]
    order.refresh_from_db()
    assert (order.status, order.payment_status, order.total) == ("failed", "not_due", 0)
    told = Notification.objects.filter(user=w["buyer"], kind="goods_not_delivered")
    assert [(n.data["total"], len(n.data["lines"])) for n in told] == [("0.00", 2)]
    farmers = Notification.objects.filter(kind="goods_not_delivered").exclude(user=w["buyer"])
    assert sorted((n.user_id, n.data["subtotal"], n.data["restocked"]) for n in farmers) == [
        (w["sa"].farmer_id, "80.00", False),  # picked up: not back in stock
        (w["sb"].farmer_id, "15.00", False),
    ]
    assert {n.title for n in farmers} == {"商品未能送达买家"}


def test_a_partially_delivered_order_is_not_announced_as_delivered(
    two_farmer_order, client_for, settings
):
    settings.MAX_STOP_ATTEMPTS = 1
    w = two_farmer_order
    staff = client_for(w["staff"])
    failed = complete(
        staff, stop_for(w["sb"], w["center"], "pickup"), outcome="failed", reason="没货"
    )
    assert failed.status_code == 200
    picked = complete(
        staff, stop_for(w["sa"], w["center"], "pickup"), outcome="done", weight_kg="8"
    )
    assert picked.status_code == 200
    order = w["order"]
    delivery = stop_for(w["sa"], w["center"], "delivery")
    done = complete(staff, delivery, outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.total) == ("partially_delivered", Decimal("85.00"))

    told = Notification.objects.get(user=w["buyer"], kind="order_delivered")
    assert (told.title, told.body, told.data) == (
        "订单部分送达",
        f"订单 #{order.pk} 部分送达，未能送达的商品不收费，订单合计 ¥85.00。",
        {
            "order": order.pk,
            "status": "partially_delivered",
            "total": "85.00",
            "refund_due": "0.00",
        },
    )


@pytest.mark.parametrize("two_farmer_order", ["prepaid"], indirect=True)
def test_a_buyer_who_paid_for_goods_partly_delivered_is_told_what_comes_back(
    two_farmer_order, client_for, settings
):
    """Paid 102.00; farm B's goods never came (15.00 and B's 2.00 of the fee): the notice of
    the delivery tells the buyer the 17.00 comes back, as a line turned down or a cancel
    does. It gave only the new total."""
    settings.MAX_STOP_ATTEMPTS = 1
    w = two_farmer_order
    staff = client_for(w["staff"])
    complete(staff, stop_for(w["sb"], w["center"], "pickup"), outcome="failed", reason="没货")
    complete(staff, stop_for(w["sa"], w["center"], "pickup"), outcome="done", weight_kg="8")
    order = w["order"]
    delivery = stop_for(w["sa"], w["center"], "delivery")
    done = complete(staff, delivery, outcome="done", delivery_code=order.delivery_code)
    assert done.status_code == 200
    order.refresh_from_db()
    assert (order.status, order.total, order.payment_status) == (
        "partially_delivered",
        Decimal("85.00"),
        "paid",
    )

    told = Notification.objects.get(user=w["buyer"], kind="order_delivered")
    said = f"订单 #{order.pk} 部分送达，未能送达的商品不收费，订单合计 ¥85.00。"
    assert (told.body, told.data) == (
        said + "多付的 ¥17.00 将退还给您。",
        {
            "order": order.pk,
            "status": "partially_delivered",
            "total": "85.00",
            "refund_due": "17.00",
        },
    )


@pytest.fixture
def spoiling():
    """One farmer's goods in one routed order: a kg that keeps a day (harvested yesterday,
    so it spoils before it arrives) and a kg that keeps a month."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    farmer = FarmerFactory(village=village)
    short = create_listing(farmer, unit="kg", shelf_life_days=1)
    other = create_listing(farmer, unit="kg", shelf_life_days=30)
    order = order_route(order_id=place_order(BuyerFactory(village=village), short, other).pk)
    shipment = Shipment.objects.get(order=order)
    assert shipment.spoils_before_arrival is True
    return {
        "center": center,
        "farmer": farmer,
        "short": short,
        "other": other,
        "order": order,
        "shipment": shipment,
        "staff": StaffFactory(service_center=center),
    }


def test_the_spoiling_flag_follows_the_goods_ordered_not_the_listings_next_harvest(
    spoiling, client_for
):
    """The farmer lists the next harvest on the same listing: the goods already ordered
    still spoil before they arrive, after a failed pickup moves them, and after another of
    the farmer's lines is turned down (each recomputes the flag from the lines' own
    spoils_on, copied when ordered)."""
    center, farmer, short, other = (spoiling[k] for k in ("center", "farmer", "short", "other"))
    order, shipment = spoiling["order"], spoiling["shipment"]
    listing_update(
        listing=Listing.objects.get(pk=short.pk),
        harvest_date=timezone.localdate() + timedelta(days=3),
    )
    orders.order_line_reject(
        order_id=order.pk, line_id=order.lines.get(listing=other).pk, farmer=farmer, reason="雹"
    )
    shipment.refresh_from_db()
    assert shipment.spoils_before_arrival is True
    stop = stop_for(shipment, center, "pickup")
    staff = client_for(spoiling["staff"])
    assert complete(staff, stop, outcome="failed", reason="不在家").status_code == 200
    shipment.refresh_from_db()
    assert (shipment.failed_attempts, shipment.spoils_before_arrival) == (1, True)


def test_the_spoiling_flag_goes_when_the_line_that_spoils_is_turned_down(spoiling):
    """The farmer turns down the line that spoils and keeps the other: the flag then says
    whether what is left spoils, also after a failed pickup moves it to another day."""
    center, farmer, short, staff = (spoiling[k] for k in ("center", "farmer", "short", "staff"))
    order, shipment = spoiling["order"], spoiling["shipment"]
    orders.order_line_reject(
        order_id=order.pk, line_id=order.lines.get(listing=short).pk, farmer=farmer, reason="坏了"
    )
    shipment.refresh_from_db()
    assert shipment.spoils_before_arrival is False
    stop = stop_for(shipment, center, "pickup")
    shipments.stop_complete(
        stop_id=stop.pk, staff=staff, data=Completion(outcome="failed", reason="不在家")
    )
    shipment.refresh_from_db()
    assert (shipment.failed_attempts, shipment.spoils_before_arrival) == (1, False)


@pytest.mark.django_db(transaction=True)
def test_the_migration_copies_each_lines_spoil_day_and_keeps_the_flags_shipments_have():
    """Lines ordered before spoils_on take it from their listing; a shipment already
    flagged whose listing has since moved on to its next harvest keeps its flag through its
    next move (its lines spoil the day before its delivery)."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    moved_on, fresh = FarmerFactory(village=village), FarmerFactory(village=village)
    short = create_listing(moved_on, unit="kg", shelf_life_days=1)  # harvested yesterday
    keeps = create_listing(fresh, unit="kg", shelf_life_days=30)
    order = order_route(order_id=place_order(BuyerFactory(village=village), short, keeps).pk)
    flagged = Shipment.objects.get(order=order, farmer=moved_on)
    not_flagged = Shipment.objects.get(order=order, farmer=fresh)
    assert (flagged.spoils_before_arrival, not_flagged.spoils_before_arrival) == (True, False)
    next_harvest = timezone.localdate() + timedelta(days=3)
    Listing.objects.filter(pk=short.pk).update(harvest_date=next_harvest)

    executor = MigrationExecutor(connection)
    executor.migrate([("orders", "0009_notification_ready_for_collection")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    spoils_on = dict(order.lines.values_list("listing_id", "spoils_on"))
    assert spoils_on == {
        short.pk: flagged.delivery_date - timedelta(days=1),
        keeps.pk: keeps.harvest_date + timedelta(days=30),
    }
    routing.shipment_move_days(
        flagged,
        pickup_date=flagged.pickup_date + timedelta(days=1),
        delivery_date=flagged.delivery_date + timedelta(days=1),
    )
    assert Shipment.objects.get(pk=flagged.pk).spoils_before_arrival is True
