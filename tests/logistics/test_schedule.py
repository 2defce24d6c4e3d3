"""Planning a center's day with the real routing engine: routes respect capacity, windows
and refrigeration; what does not fit rolls over with a reason; re-runs never double a stop."""

import csv
import io
import logging
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from listings.models import Listing
from logistics.models import (
    CenterDayLoad,
    Route,
    RouteStatus,
    ScheduleRun,
    ScheduleRunStatus,
    ServiceCenter,
    Shipment,
    ShipmentStatus,
    Stop,
    TrackingEvent,
    Vehicle,
)
from logistics.routing import Location, TimeWindow
from logistics.services import fleet, routing, schedule, shipments
from logistics.services.routing import order_route
from logistics.services.shipments import Completion
from logistics.tasks import (
    schedule_center_day,
    schedule_tomorrow,
    schedule_zone,
    sweep_stale_schedule_runs,
)
from marketplace.celery import app as celery_app
from marketplace.exceptions import DomainError
from orders import services as orders
from orders.models import Notification, Order, OrderLine, OrderStatus
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
from tests.listings.test_photos import wait_for_lock_waiters
from tests.logistics.test_shipments import rescheduled
from tests.orders.test_payments import in_thread


def village_near(center, dlat, dlng):
    return VillageFactory(
        service_center=center, lat=center.lat + Decimal(dlat), lng=center.lng + Decimal(dlng)
    )


def routed_order(buyer, *lines):
    return order_route(order_id=place_order(buyer, *lines).pk)


@pytest.fixture
def day():
    """One center with a van and a refrigerated truck; farms and buyers around it; orders
    routed so that their pickups fall on one day."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    van = Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("300"))
    cold = Vehicle.objects.create(
        service_center=center, name="cold", capacity_kg=Decimal("500"), refrigerated=True
    )
    farms = [
        FarmerFactory(village=village_near(center, f"0.0{n}", f"0.0{9 - n}")) for n in range(1, 6)
    ]
    listings = [create_listing(f, unit="kg", quantity_available=Decimal("1000")) for f in farms]
    milk = create_listing(farms[0], category="dairy", unit="kg", needs_refrigeration=True)
    buyers = [
        BuyerFactory(village=village_near(center, f"-0.0{n}", f"0.0{n}")) for n in range(1, 5)
    ]
    placed = [
        routed_order(buyers[0], (listings[0], 40), (listings[1], 30)),
        routed_order(buyers[1], (listings[2], 50), (milk, 20)),
        routed_order(buyers[2], (listings[3], 60)),
        routed_order(buyers[3], (listings[4], 25), (listings[0], 10)),
    ]
    pickup_day = Shipment.objects.filter(order__in=placed).values_list("pickup_date", flat=True)[0]
    assert set(Shipment.objects.filter(order__in=placed).values_list("pickup_date", flat=True)) == {
        pickup_day
    }
    return {
        "center": center,
        "van": van,
        "cold": cold,
        "orders": placed,
        "date": pickup_day,
        "staff": StaffFactory(service_center=center),
    }


def run_day(day) -> ScheduleRun:
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    return schedule.schedule_run_execute(run_id=run.pk)


def stops_by_route():
    return {
        route: list(route.stops.order_by("sequence").prefetch_related("shipments"))
        for route in Route.objects.select_related("vehicle").order_by("pk")
    }


@pytest.mark.django_db
def test_a_day_becomes_routes_within_capacity_windows_and_refrigeration(day):
    run = run_day(day)
    assert run.status == ScheduleRunStatus.DONE
    assert run.summary["unassigned"] == []
    plan = stops_by_route()
    assert plan
    planned = {s.pk for stops in plan.values() for stop in stops for s in stop.shipments.all()}
    assert planned == set(Shipment.objects.values_list("pk", flat=True))
    for route, stops in plan.items():
        assert [stop.sequence for stop in stops] == list(range(1, len(stops) + 1))
        for stop in stops:
            assert stop.load_kg <= route.vehicle.capacity_kg
            assert stop.window_start <= stop.eta <= stop.window_end
            if any(s.needs_refrigeration for s in stop.shipments.all()):
                assert route.vehicle.refrigerated
        assert route.distance_km > 0
    for shipment in Shipment.objects.all():
        assert shipment.status == ShipmentStatus.SCHEDULED
        assert shipment.stops.count() == 2  # its farm pickup and its delivery (a same-day pair)
    assert set(day["orders"][0].__class__.objects.values_list("status", flat=True)) == {
        OrderStatus.SCHEDULED
    }
    for stops in plan.values():
        seen = set()
        for stop in stops:  # a pair's pickup comes before its delivery, on the same vehicle
            ids = {s.pk for s in stop.shipments.all()}
            if stop.kind == "delivery":
                assert ids <= seen
            seen |= ids


@pytest.mark.django_db
def test_a_farm_is_one_stop_for_all_its_same_day_orders_and_a_buyer_for_all_of_an_orders_goods():
    """Same-day farm-to-buyer pairs are solved one pair per farm and order: a farm selling
    to three buyers of its own center is three pickups at one place, one after another,
    and an order of two farms' goods two deliveries at its buyer. The van stops once at
    each (one weighing, one code), the farmer is told of one visit, and the route is
    measured with one service time per stop."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("500"))
    farms = [FarmerFactory(village=village_near(center, f"0.0{n}", "0.02")) for n in (1, 2)]
    apples, pears = (create_listing(farm, unit="kg") for farm in farms)
    buyers = [BuyerFactory(village=village_near(center, f"-0.0{n}", "0.01")) for n in (1, 2, 3)]
    both = routed_order(buyers[0], (apples, 5), (pears, 4))
    others = [routed_order(buyer, (apples, 3)) for buyer in buyers[1:]]
    [pickup_day] = set(Shipment.objects.values_list("pickup_date", flat=True))

    run = run_day({"center": center, "date": pickup_day})

    [route] = Route.objects.all()
    stops = [
        (stop.kind, sorted(s.order_id for s in stop.shipments.all()))
        for stop in route.stops.order_by("sequence")
    ]
    at_apples = sorted([both.pk, *(o.pk for o in others)])
    assert sorted(stops) == sorted(
        [
            ("pickup", at_apples),
            ("pickup", [both.pk]),
            ("delivery", [both.pk, both.pk]),
            ("delivery", [others[0].pk]),
            ("delivery", [others[1].pk]),
        ]
    )
    assert run.summary["stops"] == 5
    [told] = Notification.objects.filter(kind="pickup_scheduled", user=farms[0])
    assert len(told.data["stops"]) == 1
    stored = route.stops.order_by("sequence")
    loads = routing.loads_on_board((s.kind == "pickup", list(s.shipments.all())) for s in stored)
    assert [s.load_kg for s in stored] == loads


@pytest.mark.django_db
def test_a_same_day_pair_is_tracked_on_a_route_once(day):
    """A same-day pair's goods are behind two stops (the farm's, the buyer's) and go on a
    route once: one "on a route" event each, not one per stop."""
    run_day(day)
    assert Shipment.objects.filter(stops__isnull=False).exists()
    for shipment in Shipment.objects.all():
        assert shipment.stops.count() == 2
        events = TrackingEvent.objects.filter(shipment=shipment, status=ShipmentStatus.SCHEDULED)
        assert events.count() == 1, shipment.pk


@pytest.mark.django_db
def test_each_farmer_is_told_when_their_pickup_is_due_and_each_buyer_when_it_sets_out(day):
    run_day(day)
    pickups = Stop.objects.filter(kind="pickup").prefetch_related("shipments")
    expected = sorted(
        (farmer_id, stop.pk)
        for stop in pickups
        for farmer_id in {s.farmer_id for s in stop.shipments.all()}
    )
    told = list(Notification.objects.filter(kind="pickup_scheduled"))
    assert sorted(n.user_id for n in told) == sorted({farmer for farmer, _ in expected})
    assert sorted((n.user_id, stop["stop"]) for n in told for stop in n.data["stops"]) == expected
    for note in told:
        first = min(timezone.localtime(s.eta) for s in pickups if s.pk in stops_of(note))
        assert note.data["eta"] == first.isoformat()
        assert f"{first:%m月%d日} 约 {first:%H:%M}" in note.body
    assert not Notification.objects.filter(kind="out_for_delivery").exists()

    route = Route.objects.filter(stops__kind="delivery").distinct().order_by("pk").first()
    first, second = route.stops.order_by("sequence")[:2]
    done = Completion(outcome="done", weight_kg=Decimal("1"))
    with on_day(route.date):
        shipments.stop_complete(stop_id=first.pk, staff=day["staff"], data=done)
    deliveries = route.stops.filter(kind="delivery").prefetch_related("shipments__order")
    on_the_way = sorted(  # once per order, however many stops it makes
        {
            (order.buyer_id, order.pk)
            for stop in deliveries
            for order in {s.order for s in stop.shipments.all()}
        }
    )
    out = Notification.objects.filter(kind="out_for_delivery")
    assert sorted(out.values_list("user_id", "order_id")) == on_the_way
    assert on_the_way

    if second.kind == "pickup":  # the route is on its way already: nobody is told again
        with on_day(route.date, time_of_day(10)):
            shipments.stop_complete(stop_id=second.pk, staff=day["staff"], data=done)
    assert out.count() == len(on_the_way)


def stops_of(note: Notification) -> set[int]:
    return {stop["stop"] for stop in note.data["stops"]}


@pytest.mark.django_db
def test_a_buyer_whose_order_makes_several_stops_on_a_route_is_told_once_with_the_first():
    """Two farmers' goods for one order are two farm-to-buyer pairs, delivered at one stop
    at the buyer on the one van's route. Setting out tells the buyer once, with its time."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("500"))
    farms = [FarmerFactory(village=village_near(center, f"0.0{n}", "0.02")) for n in (1, 2)]
    buyer = BuyerFactory(village=village_near(center, "-0.01", "0.01"))
    order = routed_order(buyer, *((create_listing(farm, unit="kg"), 5) for farm in farms))
    [pickup_day] = set(order.shipments.values_list("pickup_date", flat=True))
    run_day({"center": center, "date": pickup_day})
    [route] = Route.objects.all()
    deliveries = list(route.stops.filter(kind="delivery").order_by("sequence"))
    assert [d.shipments.count() for d in deliveries] == [2]  # both farmers' goods, one code

    first = route.stops.order_by("sequence").first()
    done = Completion(outcome="done", weight_kg=Decimal("5"))
    staff = StaffFactory(service_center=center)
    with on_day(pickup_day):
        shipments.stop_complete(stop_id=first.pk, staff=staff, data=done)

    [note] = Notification.objects.filter(kind="out_for_delivery")
    eta = timezone.localtime(deliveries[0].eta)
    assert (note.user_id, note.order_id, note.data) == (
        buyer.pk,
        order.pk,
        {"order": order.pk, "route": route.pk, "eta": eta.isoformat()},
    )
    assert f"预计 {eta:%H:%M} 送达" in note.body


@pytest.mark.django_db
def test_a_farmer_whose_goods_make_several_stops_is_told_once_with_their_times():
    """Two 200 kg orders (more than either 300 kg vehicle takes together) and milk (only on
    the refrigerated one) at one farm: two pickup stops, the van's and the refrigerated
    one's (taking the milk and the other 200 kg at one visit), one message to the farmer."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    elsewhere = ServiceCenterFactory(lat=Decimal("30.600000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("300"))
    Vehicle.objects.create(
        service_center=center, name="cold", capacity_kg=Decimal("300"), refrigerated=True
    )
    farm = FarmerFactory(village=village_near(center, "0.01", "0.02"))
    vegetables = create_listing(farm, unit="kg", quantity_available=Decimal("1000"))
    milk = create_listing(farm, category="dairy", unit="kg", needs_refrigeration=True)
    buyers = [BuyerFactory(village=village_near(elsewhere, "0.01", f"0.0{n}")) for n in (1, 2, 3)]
    placed = [
        routed_order(buyers[0], (vegetables, 200)),
        routed_order(buyers[1], (vegetables, 200)),
        routed_order(buyers[2], (milk, 10)),
    ]
    [pickup_day] = set(Shipment.objects.values_list("pickup_date", flat=True))

    run = run_day({"center": center, "date": pickup_day})

    assert run.summary["unassigned"] == []
    stops = list(Stop.objects.filter(kind="pickup").order_by("eta", "pk"))
    assert sorted(stop.shipments.count() for stop in stops) == [1, 2]
    assert len({stop.route_id for stop in stops}) == 2
    [note] = Notification.objects.filter(kind="pickup_scheduled")
    etas = [timezone.localtime(stop.eta) for stop in stops]
    assert note.user_id == farm.pk
    assert note.order_id is None  # three orders
    assert note.data["orders"] == sorted(order.pk for order in placed)
    assert note.data["date"] == pickup_day.isoformat()
    assert note.data["eta"] == etas[0].isoformat()
    assert [(s["stop"], s["eta"]) for s in note.data["stops"]] == [
        (stop.pk, eta.isoformat()) for stop, eta in zip(stops, etas, strict=True)
    ]
    times = sorted({f"{eta:%H:%M}" for eta in etas})
    assert note.body.startswith(f"{pickup_day:%m月%d日} 约 {'、'.join(times)} ")
    if len(times) > 1:
        assert f"分 {len(times)} 次上门取货" in note.body


@pytest.mark.django_db
def test_a_day_planned_again_keeps_vans_that_drove_on_another_day(day):
    for vehicle in (day["van"], day["cold"]):  # both drove yesterday
        Route.objects.create(
            service_center=day["center"],
            date=day["date"] - timedelta(days=1),
            vehicle=vehicle,
            status=RouteStatus.COMPLETED,
        )
    first = run_day(day)
    again = run_day(day)  # the morning after the nightly plan: planned routes are replaced
    assert (first.summary["vehicles_available"], again.summary["vehicles_available"]) == (2, 2)
    assert again.summary["unassigned"] == first.summary["unassigned"] == []
    assert again.summary["routes"] == first.summary["routes"] > 0


@pytest.mark.django_db
def test_an_order_whose_goods_are_back_to_waiting_is_confirmed_again(day):
    run_day(day)
    order = day["orders"][2]  # one farmer's 60 kg: one shipment, one pickup
    [shipment] = order.shipments.all()
    assert (shipment.status, Order.objects.get(pk=order.pk).status) == ("scheduled", "scheduled")
    pickup = shipment.stops.get(kind="pickup")
    failed = Completion(outcome="failed", reason="没人")
    with on_day(pickup.route.date):
        shipments.stop_complete(stop_id=pickup.pk, staff=day["staff"], data=failed)

    shipment.refresh_from_db()
    order.refresh_from_db()
    assert (shipment.status, order.status) == ("pending", OrderStatus.CONFIRMED)
    assert order.events.order_by("pk").last().reason == "waits for the next plan"
    other = day["orders"][0]  # another order, its goods still on a route
    assert Order.objects.get(pk=other.pk).status == OrderStatus.SCHEDULED


@pytest.mark.django_db
def test_a_past_day_planned_again_puts_what_does_not_fit_on_tomorrow(day):
    past, tomorrow = timezone.localdate() - timedelta(days=2), timezone.localdate() + timedelta(1)
    for shipment in Shipment.objects.all():  # the day was two days ago
        shift = past - shipment.pickup_date
        routing.shipment_move_days(
            shipment, pickup_date=past, delivery_date=shipment.delivery_date + shift
        )
    day["cold"].active = False
    day["cold"].save()
    run = run_day({**day, "date": past})
    [item] = run.summary["unassigned"]
    milk = Shipment.objects.get(pk__in=item["shipments"])
    assert (milk.pickup_date, milk.delivery_date, milk.status) == (tomorrow, tomorrow, "pending")


@pytest.mark.django_db
def test_today_planned_again_after_tonights_plan_ran_puts_what_does_not_fit_after_tomorrow(
    day, monkeypatch, settings
):
    """Staff plan today again at 22:00 and no vehicle is left: tomorrow's plan ran at 21:00,
    so what does not fit goes to the day after, whose plan is still ahead; on tomorrow no
    plan would take it (the nightly one runs once, and no day gone by is planned)."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    now = timezone.localtime().replace(hour=22, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(timezone, "now", lambda: now)
    today = now.date()
    for shipment in Shipment.objects.all():
        shift = today - shipment.pickup_date
        routing.shipment_move_days(
            shipment, pickup_date=today, delivery_date=shipment.delivery_date + shift
        )
    Vehicle.objects.update(active=False)

    run = run_day({**day, "date": today})

    assert {item["reason"] for item in run.summary["unassigned"]} == {"no_vehicle"}
    after_tomorrow = today + timedelta(days=2)
    assert set(Shipment.objects.values_list("pickup_date", flat=True)) == {after_tomorrow}
    assert set(schedule._day_shipments(day["center"], after_tomorrow)) == set(
        Shipment.objects.all()
    )


@pytest.mark.django_db
def test_no_refrigerated_vehicle_means_the_milk_waits_with_a_reason(day):
    day["cold"].active = False
    day["cold"].save()
    run = run_day(day)
    assert run.status == ScheduleRunStatus.DONE
    [item] = run.summary["unassigned"]
    assert item["reason"] == "no_vehicle_with_skills"
    milk = Shipment.objects.get(pk__in=item["shipments"])
    assert milk.needs_refrigeration
    assert (milk.pickup_date, milk.status) == (day["date"] + timedelta(days=1), "pending")
    assert not milk.stops.exists()
    # its booking moved with it: 235 kg booked on the day, 20 of them milk
    loads = CenterDayLoad.objects.filter(center=day["center"]).values_list("date", "booked_kg")
    assert dict(loads) == {
        day["date"]: Decimal("215.000"),
        day["date"] + timedelta(days=1): Decimal("20.000"),
    }


def plan_on_its_eve(center, day: date) -> ScheduleRun:
    """The day planned as the nightly plan plans it: the evening before, at 21:00."""
    with on_day(day - timedelta(days=1), time_of_day(21, 0)):
        run = ScheduleRun.objects.create(service_center=center, date=day)
        return schedule.schedule_run_execute(run_id=run.pk)


def told(kind: str) -> list[tuple[int, int | None]]:
    """(user, order) of each notification of `kind`, oldest first."""
    return list(
        Notification.objects.filter(kind=kind).order_by("pk").values_list("user_id", "order_id")
    )


@pytest.mark.django_db
def test_cold_goods_no_vehicle_can_carry_fail_for_good_on_the_third_day_left_out(day):
    """No refrigerated vehicle (as the demo's hill town has none): each day's plan leaves
    the milk out, a failed try each, as a failed stop is. Rolled twice, it fails for good
    on the third (MAX_STOP_ATTEMPTS): not charged, back in stock once, its days freed and
    its legs called off; its buyers told once that it will not come, not a third time that
    it comes later. An order of nothing else fails; the plain goods planned are untouched."""
    assert settings.MAX_STOP_ATTEMPTS == 3
    center, first_day = day["center"], day["date"]
    mixed = day["orders"][1]  # 50 kg of plain goods (farm 3) and 20 kg of milk (farm 1)
    milk_listing = OrderLine.objects.get(order=mixed, listing__needs_refrigeration=True).listing
    only_milk = routed_order(BuyerFactory(village=mixed.buyer.village), (milk_listing, 10))
    milk = list(Shipment.objects.filter(needs_refrigeration=True).order_by("pk"))
    assert [s.order_id for s in milk] == [mixed.pk, only_milk.pk]
    assert {s.pickup_date for s in milk} == {first_day}
    in_stock = lambda: Listing.objects.get(pk=milk_listing.pk).quantity_available  # noqa: E731
    stock_before = in_stock()
    day["cold"].active = False
    day["cold"].save()
    plain = set(Shipment.objects.exclude(pk__in=[s.pk for s in milk]))

    runs = [plan_on_its_eve(center, first_day + timedelta(days=n)) for n in range(3)]

    left_out = [  # a same-day pair each (farm and buyer of the center): two jobs
        {"shipments": [shipment.pk], "reason": "no_vehicle_with_skills"} for shipment in milk
    ]
    assert [run.summary["unassigned"] for run in runs] == [
        left_out,
        left_out,
        [{**item, "failed_for_good": item["shipments"]} for item in left_out],
    ]
    third_day = first_day + timedelta(days=2)
    for shipment in Shipment.objects.filter(pk__in=[s.pk for s in milk]):
        assert (shipment.status, shipment.failed_attempts) == ("failed", 3)
        assert (shipment.pickup_date, shipment.booked_kg) == (third_day, 0)
        assert set(shipment.legs.values_list("status", flat=True)) == {"cancelled"}
        assert list(shipment.events.values_list("status", "note").order_by("pk"))[-3:] == [
            (
                "pending",
                (
                    "did not fit the day (no_vehicle_with_skills); moved to "
                    f"{first_day + timedelta(days=1):%Y-%m-%d} (try 1 of 3)"
                ),
            ),
            (
                "pending",
                (
                    "did not fit the day (no_vehicle_with_skills); moved to "
                    f"{third_day:%Y-%m-%d} (try 2 of 3)"
                ),
            ),
            ("failed", "did not fit the day, its last try: no_vehicle_with_skills"),
        ]
    assert in_stock() == stock_before + 30  # 20 kg and 10 kg back on sale, once
    loads = CenterDayLoad.objects.filter(center=center, date__gt=first_day)
    assert set(loads.values_list("booked_kg", flat=True)) == {Decimal("0.000")}
    # the order of milk alone: nothing came, nothing is due
    only_milk.refresh_from_db()
    assert (only_milk.status, only_milk.total, only_milk.payment_status) == (
        OrderStatus.FAILED,
        Decimal("0.00"),
        "not_due",
    )
    assert set(only_milk.lines.values_list("status", flat=True)) == {"cancelled"}
    # the other order goes on with its plain goods, planned for the first day, and costs them
    mixed.refresh_from_db()
    assert (mixed.status, mixed.subtotal, mixed.delivery_fee, mixed.total) == (
        OrderStatus.SCHEDULED,
        Decimal("175.00"),
        Decimal("0.00"),
        Decimal("175.00"),
    )
    for shipment in plain:
        now = Shipment.objects.get(pk=shipment.pk)
        assert (now.status, now.failed_attempts) == ("scheduled", 0)
        assert (now.pickup_date, now.delivery_date) == (shipment.pickup_date, first_day)
    buyers = [mixed.buyer_id, only_milk.buyer_id]
    assert rescheduled() == [
        (
            buyer,
            order.pk,
            f"{moved_to:%Y-%m-%d}",
            f"{moved_to - timedelta(days=1):%Y-%m-%d}",
            "not_planned",
        )
        for moved_to in (first_day + timedelta(days=1), third_day)
        for buyer, order in zip(buyers, (mixed, only_milk), strict=True)
    ]
    farm_1 = milk[0].farmer_id
    assert told("goods_not_delivered") == [
        (mixed.buyer_id, mixed.pk),
        (farm_1, mixed.pk),
        (only_milk.buyer_id, only_milk.pk),
        (farm_1, only_milk.pk),
    ]
    to_buyer = Notification.objects.get(kind="goods_not_delivered", user_id=mixed.buyer_id)
    assert to_buyer.data["reason"] == "no_vehicle_with_skills"
    assert "服务站没有能运送该商品的车辆" in to_buyer.body
    to_farmer = Notification.objects.filter(kind="goods_not_delivered", user_id=farm_1).first()
    assert to_farmer.data["restocked"] is True
    assert told("order_failed") == []  # goods_not_delivered said it

    # the day planned again: the goods failed for good are no longer the day's
    again = plan_on_its_eve(center, third_day)
    assert again.summary["unassigned"] == []
    assert in_stock() == stock_before + 30
    assert len(told("goods_not_delivered")) == 4


@pytest.mark.django_db
def test_cold_goods_picked_up_and_left_out_of_their_delivery_days_fail_without_restock(day):
    """A failed delivery and days left out count alike: the milk is picked up and waits at
    the center, its delivery fails once (the buyer was out), then the refrigerated truck
    is retired and the next two days' plans leave it out. The third try fails it for good:
    not charged, and not back on sale (it left the farm); its delivery leg called off, its
    pickup leg done; the order of it alone fails, nothing due."""
    center, first_day = day["center"], day["date"]
    milk_listing = OrderLine.objects.get(
        order=day["orders"][1], listing__needs_refrigeration=True
    ).listing
    order = routed_order(BuyerFactory(village=day["orders"][1].buyer.village), (milk_listing, 10))
    milk = Shipment.objects.get(order=order)
    stock_after_order = Listing.objects.get(pk=milk_listing.pk).quantity_available
    plan_on_its_eve(center, first_day)
    pickup = Stop.objects.get(kind="pickup", shipments=milk)
    delivery = Stop.objects.get(kind="delivery", shipments=milk)
    weight = sum(s.weight_kg for s in pickup.shipments.all())
    with on_day(first_day, time_of_day(10, 0)):
        shipments.stop_complete(
            stop_id=pickup.pk, staff=day["staff"], data=Completion("done", weight_kg=weight)
        )
        shipments.stop_complete(
            stop_id=delivery.pk,
            staff=day["staff"],
            data=Completion("failed", reason="买家不在家"),
        )
    milk.refresh_from_db()
    assert (milk.status, milk.failed_attempts) == ("at_center", 1)
    assert milk.delivery_date == first_day + timedelta(days=1)
    day["cold"].active = False
    day["cold"].save()

    second, third = (plan_on_its_eve(center, first_day + timedelta(days=n)) for n in (1, 2))

    assert second.summary["unassigned"] == [
        {"shipments": [milk.pk], "reason": "no_vehicle_with_skills"}
    ]
    assert third.summary["unassigned"] == [
        {"shipments": [milk.pk], "reason": "no_vehicle_with_skills", "failed_for_good": [milk.pk]}
    ]
    milk.refresh_from_db()
    assert (milk.status, milk.failed_attempts, milk.booked_kg) == ("failed", 3, 0)
    assert dict(milk.legs.values_list("kind", "status")) == {
        "pickup": "done",
        "delivery": "cancelled",
    }
    assert Listing.objects.get(pk=milk_listing.pk).quantity_available == stock_after_order
    order.refresh_from_db()
    assert (order.status, order.total, order.payment_status) == (
        "failed",
        Decimal("0.00"),
        "not_due",
    )
    assert [(r[1], r[4]) for r in rescheduled() if r[1] == order.pk] == [
        (order.pk, "delivery_failed"),
        (order.pk, "not_planned"),
    ]
    assert told("goods_not_delivered") == [(order.buyer_id, order.pk), (milk.farmer_id, order.pk)]
    to_farmer = Notification.objects.get(kind="goods_not_delivered", user_id=milk.farmer_id)
    assert (to_farmer.title, to_farmer.data["restocked"]) == ("商品未能送达买家", False)


@pytest.mark.django_db
def test_a_buyer_whose_goods_roll_to_the_next_day_is_told_once_an_order(day):
    """No refrigerated vehicle: the milk rolls to tomorrow, and its order with it. Planned
    again without any vehicle, every order's goods roll (two farmers' in three of them):
    each buyer hears once, the milk's buyer not again (that order was due tomorrow)."""
    today, tomorrow = day["date"].isoformat(), (day["date"] + timedelta(days=1)).isoformat()
    first, milk, third, fourth = day["orders"]
    day["cold"].active = False
    day["cold"].save()

    run_day(day)

    assert rescheduled() == [(milk.buyer_id, milk.pk, tomorrow, today, "not_planned")]
    [note] = Notification.objects.filter(kind="delivery_rescheduled")
    assert note.body == (
        f"订单 #{milk.pk} 因当日未能排上车辆，改为 {day['date'] + timedelta(days=1):%m月%d日} 送达"
        f"（此前预计 {day['date']:%m月%d日}）。"
    )

    Vehicle.objects.update(active=False)
    run_day(day)

    assert Shipment.objects.filter(order=first).count() == 2
    assert rescheduled()[1:] == [
        (order.buyer_id, order.pk, tomorrow, today, "not_planned")
        for order in (first, third, fourth)
    ]


@pytest.mark.django_db
def test_a_route_lasts_from_leaving_the_center_to_coming_back(settings):
    """Driving, the service at each stop and any waiting: what a driver's day takes."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("300"))
    farmer = FarmerFactory(village=village_near(center, "0.05", "0"))
    buyer = BuyerFactory(village=village_near(center, "0", "0.08"))
    order = routed_order(buyer, (create_listing(farmer, unit="kg"), 10))
    shipment = Shipment.objects.get(order=order)

    run = run_day({"center": center, "date": shipment.pickup_date})

    route = Route.objects.get()
    pickup, delivery = route.stops.order_by("sequence")  # a same-day pair: farm, then buyer
    places = [Location(float(p.lat), float(p.lng)) for p in (center, pickup, delivery)]
    t = schedule._matrix(center).matrices(places).durations_s
    driving = t[0][1] + t[1][2] + t[2][0]
    assert pickup.eta + timedelta(seconds=settings.STOP_SERVICE_SECONDS) <= delivery.eta
    # no window to wait for: the farm opens at 07:00 with the shift, the buyer is open all day
    whole = driving + 2 * settings.STOP_SERVICE_SECONDS
    assert round(whole / 60) != round(driving / 60)
    assert route.duration_min == round(whole / 60)
    assert (route.driving_s, route.driving_min) == (driving, round(driving / 60))
    assert (run.summary["duration_min"], run.summary["driving_min"]) == (
        round(whole / 60),
        round(driving / 60),
    )


def test_a_vehicle_works_within_its_shift_while_the_center_is_open():
    hours = TimeWindow(8 * 3600, 17 * 3600)  # 08:00-17:00
    depot = Location(30.2, 119.6)

    def window(start: int, end: int) -> TimeWindow | None:
        vehicle = Vehicle(
            pk=1,
            capacity_kg=Decimal(300),
            shift_start=time_of_day(start),
            shift_end=time_of_day(end),
        )
        spec = schedule._spec(vehicle, depot, hours)
        return None if spec is None else spec.shift

    assert window(6, 20) == hours
    assert window(9, 12) == TimeWindow(9 * 3600, 12 * 3600)
    assert window(7, 10) == TimeWindow(8 * 3600, 10 * 3600)
    assert window(15, 22) == TimeWindow(15 * 3600, 17 * 3600)
    assert window(17, 22) is None  # starts as the center closes: no time to work
    assert window(5, 8) is None


@pytest.mark.django_db
def test_routes_leave_and_come_back_while_the_center_is_open(day, settings):
    center = day["center"]
    center.opens_at, center.closes_at = (
        time_of_day(9),
        time_of_day(13),
    )  # the vans' shifts: 07:00-18:00
    center.save()

    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    depot = Location(float(center.lat), float(center.lng))
    opens = timezone.make_aware(datetime.combine(day["date"], time_of_day(9)))
    closes = timezone.make_aware(datetime.combine(day["date"], time_of_day(13)))
    service = timedelta(seconds=settings.STOP_SERVICE_SECONDS)
    routes = stops_by_route()
    assert routes
    for stops in routes.values():
        first, last = stops[0], stops[-1]
        places = [depot, *(Location(float(s.lat), float(s.lng)) for s in (first, last))]
        t = schedule._matrix(center).matrices(places).durations_s
        assert first.eta >= opens + timedelta(seconds=t[0][1])  # left at 09:00 at the earliest
        assert last.eta + service + timedelta(seconds=t[2][0]) <= closes  # back by 13:00


@pytest.mark.django_db
@pytest.mark.parametrize("why", ["none_active", "all_on_the_road", "shifts_after_closing"])
def test_a_day_without_any_vehicle_says_so_and_everything_waits_for_the_next(day, why):
    if why == "none_active":
        Vehicle.objects.update(active=False)
    elif why == "shifts_after_closing":  # the center closes at 19:00
        Vehicle.objects.update(shift_start=time_of_day(19), shift_end=time_of_day(23))
    else:  # each drove a route of that day already (planned and started by hand)
        for vehicle in (day["van"], day["cold"]):
            Route.objects.create(
                service_center=day["center"],
                date=day["date"],
                vehicle=vehicle,
                status=RouteStatus.STARTED,
            )
    waiting = set(Shipment.objects.values_list("pk", flat=True))

    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert (run.summary["routes"], run.summary["vehicles_available"]) == (0, 0)
    assert {item["reason"] for item in run.summary["unassigned"]} == {"no_vehicle"}
    assert {pk for item in run.summary["unassigned"] for pk in item["shipments"]} == waiting
    nexts = set(Shipment.objects.values_list("pickup_date", "status"))
    assert nexts == {(day["date"] + timedelta(days=1), ShipmentStatus.PENDING)}
    assert not Stop.objects.exists()


@pytest.mark.django_db
def test_a_rerun_replaces_planned_routes_and_never_doubles_a_stop(day):
    run_day(day)
    first = set(Route.objects.values_list("pk", flat=True))
    again = run_day(day)
    assert again.status == ScheduleRunStatus.DONE
    assert not Route.objects.filter(pk__in=first).exists()
    for shipment in Shipment.objects.all():
        assert shipment.stops.count() == 2


@pytest.mark.django_db
def test_a_route_on_the_road_is_kept_and_its_shipments_not_planned_again(day):
    run_day(day)
    on_road = Route.objects.order_by("pk").first()
    Route.objects.filter(pk=on_road.pk).update(status=RouteStatus.STARTED)
    kept_stops = set(on_road.stops.values_list("pk", flat=True))
    kept_shipments = set(Shipment.objects.filter(stops__route=on_road).values_list("pk", flat=True))
    run = run_day(day)
    assert set(Route.objects.get(pk=on_road.pk).stops.values_list("pk", flat=True)) == kept_stops
    assert not Stop.objects.exclude(route=on_road).filter(shipments__in=kept_shipments).exists()
    assert on_road.vehicle_id not in {r.vehicle_id for r in Route.objects.exclude(pk=on_road.pk)}
    assert run.status == ScheduleRunStatus.DONE


def solving_while(monkeypatch, change):
    """The routing engine, with `change` made while it solves (a request of its own: no
    transaction of the run is open then)."""
    real = schedule.solve

    def solve_and_change(*args, **kwargs):
        plan = real(*args, **kwargs)
        change()
        return plan

    monkeypatch.setattr(schedule, "solve", solve_and_change)


def cancelled_while_solving(monkeypatch, *cancelled):
    """Each of the `cancelled` orders cancelled by its buyer while the engine solves."""

    def cancel():
        for order in cancelled:
            orders.order_cancel(order_id=order.pk, actor=order.buyer, reason="changed mind")

    solving_while(monkeypatch, cancel)


def assert_each_shipment_on_one_route_at_most():
    for shipment in Shipment.objects.all():
        assert Counter(shipment.stops.values_list("kind", flat=True)) in (
            Counter(),
            Counter({"pickup": 1, "delivery": 1}),
        ), shipment.pk
        assert len(set(shipment.stops.values_list("route", flat=True))) <= 1


@pytest.mark.django_db
def test_a_route_that_sets_out_while_the_day_is_solved_again_keeps_its_stops(day, monkeypatch):
    run_day(day)
    first = Route.objects.order_by("pk").first()
    first_stops = set(first.stops.values_list("pk", flat=True))
    on_first = set(Shipment.objects.filter(stops__route=first).values_list("pk", flat=True))
    pickup = first.stops.filter(kind="pickup").order_by("sequence").first()

    def set_out():  # the morning of the day, while staff plan it again
        done = Completion(outcome="done", weight_kg=Decimal("1"))
        with on_day(day["date"]):
            shipments.stop_complete(stop_id=pickup.pk, staff=day["staff"], data=done)

    solving_while(monkeypatch, set_out)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    first.refresh_from_db()
    assert first.status == RouteStatus.STARTED
    assert set(first.stops.values_list("pk", flat=True)) == first_stops
    assert not Stop.objects.exclude(route=first).filter(shipments__in=on_first).exists()
    assert Route.objects.filter(vehicle=first.vehicle).count() == 1
    assert_each_shipment_on_one_route_at_most()
    # what the new plan gave that vehicle waits, on the day, for the next run
    waiting = [pk for item in run.summary["unassigned"] for pk in item["shipments"]]
    assert set(waiting).isdisjoint(on_first)
    for shipment in Shipment.objects.filter(pk__in=waiting):
        assert (shipment.status, shipment.stops.count()) == (ShipmentStatus.PENDING, 0)
    assert run.summary["routes"] == Route.objects.exclude(pk=first.pk).count()


@pytest.mark.django_db
def test_a_vehicle_retired_while_the_day_is_solved_gets_no_route(day, monkeypatch):
    spare = Vehicle.objects.create(
        service_center=day["center"], name="spare", capacity_kg=Decimal("800"), refrigerated=True
    )
    Vehicle.objects.filter(pk__in=[day["van"].pk, day["cold"].pk]).update(active=False)

    def retire():
        assert fleet.vehicle_deactivate(vehicle_id=spare.pk) is None  # no route: deleted

    solving_while(monkeypatch, retire)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert not Vehicle.objects.filter(pk=spare.pk).exists()
    assert not Route.objects.exists()
    assert run.summary["routes"] == 0
    [item] = run.summary["unassigned"]
    assert item["reason"] == "vehicle_unavailable"
    assert set(item["shipments"]) == set(Shipment.objects.values_list("pk", flat=True))
    assert set(Shipment.objects.values_list("status", "pickup_date")) == {
        (ShipmentStatus.PENDING, day["date"])  # still on the day, for the next run
    }


@pytest.mark.django_db
def test_a_vehicle_made_smaller_while_the_day_is_solved_gets_no_route(day, monkeypatch):
    day["cold"].active = False
    day["cold"].save()
    milk = Shipment.objects.get(needs_refrigeration=True)
    Shipment.objects.filter(pk=milk.pk).update(needs_refrigeration=False)  # the van takes it

    def shrink():
        fleet.vehicle_update(vehicle_id=day["van"].pk, changes={"capacity_kg": Decimal("5")})

    solving_while(monkeypatch, shrink)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert not Route.objects.exists()  # the plan filled 300 kg; the van now takes 5
    [item] = run.summary["unassigned"]
    assert item["reason"] == "vehicle_unavailable"
    assert set(item["shipments"]) == set(Shipment.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_center_closing_earlier_while_the_day_is_solved_gets_no_route(day, monkeypatch):
    def close_early():
        ServiceCenter.objects.filter(pk=day["center"].pk).update(closes_at=time_of_day(10))

    solving_while(monkeypatch, close_early)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert not Route.objects.exists()  # planned to come back as late as 19:00
    assert {item["reason"] for item in run.summary["unassigned"]} == {"vehicle_unavailable"}
    left = {pk for item in run.summary["unassigned"] for pk in item["shipments"]}
    assert left == set(Shipment.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_an_order_cancelled_while_the_day_is_solved_gets_no_stop(day, monkeypatch):
    cancelled = day["orders"][2]

    cancelled_while_solving(monkeypatch, cancelled)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert not Stop.objects.filter(shipments__order=cancelled).exists()
    assert not Stop.objects.filter(shipments__isnull=True).exists()
    for route in Route.objects.all():
        sequences = list(route.stops.order_by("sequence").values_list("sequence", flat=True))
        assert sequences == list(range(1, len(sequences) + 1))
    assert_each_shipment_on_one_route_at_most()


@pytest.mark.django_db(transaction=True)
def test_a_stop_completed_while_the_day_is_stored_again_waits_for_it(day, monkeypatch):
    run_day(day)
    stop = Stop.objects.filter(kind="pickup").order_by("pk").first()
    storing, go_on = threading.Event(), threading.Event()
    mark_scheduled = schedule._mark_scheduled

    def paused(*args, **kwargs):  # the re-run stops inside its storing transaction
        storing.set()
        go_on.wait(30)
        return mark_scheduled(*args, **kwargs)

    monkeypatch.setattr(schedule, "_mark_scheduled", paused)
    rerun, ran = in_thread(lambda: run_day(day))
    assert storing.wait(30)
    done = Completion(outcome="done", weight_kg=Decimal("1"))
    pickup, answer = in_thread(
        lambda: shipments.stop_complete(stop_id=stop.pk, staff=day["staff"], data=done)
    )
    assert wait_for_lock_waiters(1) == 1  # the pickup waits, holding nothing the re-run needs
    go_on.set()
    rerun.join(60)
    pickup.join(60)

    [run] = ran
    assert isinstance(run, ScheduleRun), run
    assert run.status == ScheduleRunStatus.DONE
    [refused] = answer  # its stop went with the route the re-run replaced
    assert isinstance(refused, DomainError), refused
    assert (refused.status_code, refused.code) == (404, "not_found")
    assert_each_shipment_on_one_route_at_most()


@pytest.mark.django_db
def test_a_failed_run_says_what_failed_and_leaves_its_text_to_the_log(day, monkeypatch):
    """Staff read a run's `error`: what went wrong, not the exception's text, which may name
    a host, an address or a port (a database refusing the connection). That goes to the
    worker's log, as /health/ does with its checks' errors."""

    def broken(*args, **kwargs):
        raise RuntimeError("could not connect to db-primary.internal:5432")

    monkeypatch.setattr(schedule, "solve", broken)
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger(schedule.__name__).addHandler(handler)
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    try:
        with pytest.raises(RuntimeError):
            schedule.schedule_run_execute(run_id=run.pk)
    finally:
        logging.getLogger(schedule.__name__).removeHandler(handler)
    run.refresh_from_db()
    assert (run.status, run.error) == (
        ScheduleRunStatus.FAILED,
        "RuntimeError (the worker's log has the details)",
    )
    assert logged == [
        f"schedule run {run.pk} failed: RuntimeError: could not connect to db-primary.internal:5432"
    ]
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_staff_of_another_center_get_404_on_runs(day, client_for):
    other = client_for(StaffFactory(service_center=ServiceCenterFactory()))
    url = f"/api/v1/service-centers/{day['center'].pk}/schedule/"
    assert other.post(url, {"date": str(day["date"])}, format="json").status_code == 404
    assert not ScheduleRun.objects.exists()
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    assert other.get(f"/api/v1/schedule-runs/{run.pk}/").status_code == 404
    assert client_for(day["staff"]).get(f"/api/v1/schedule-runs/{run.pk}/").status_code == 200
    bad = client_for(day["staff"]).post(url, {"date": "soon"}, format="json")
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (400, "date")


@pytest.mark.django_db
def test_a_day_gone_by_or_beyond_a_year_is_not_planned(day, client_for):
    staff, url = client_for(day["staff"]), f"/api/v1/service-centers/{day['center'].pk}/schedule/"
    today = timezone.localdate()
    for asked, code in (
        (today - timedelta(days=1), "in_past"),
        (date(1, 1, 1), "in_past"),
        (today + timedelta(days=366), "too_far_ahead"),
        (date(9999, 12, 31), "too_far_ahead"),
    ):
        refused = staff.post(url, {"date": str(asked)}, format="json")
        assert refused.status_code == 400
        assert refused.json()["errors"] == [
            {"field": "date", "code": code, "detail": refused.json()["errors"][0]["detail"]}
        ]
    assert not ScheduleRun.objects.exists()
    for asked in (today, today + timedelta(days=365)):
        assert staff.post(url, {"date": str(asked)}, format="json").status_code == 202
    celery_app.control.purge()  # no worker here


@pytest.mark.django_db(transaction=True)
def test_staff_schedule_a_day_and_a_worker_plans_it(day, client_for, celery_worker):
    client = client_for(day["staff"])
    url = f"/api/v1/service-centers/{day['center'].pk}/schedule/"
    response = client.post(url, {"date": str(day["date"])}, format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    run_id = response.json()["id"]
    joined = client.post(url, {"date": str(day["date"])}, format="json")
    assert joined.json()["id"] == run_id or joined.json()["status"] in ("done", "queued")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/schedule-runs/{run_id}/").json()
        if body["status"] in ("done", "failed"):
            break
        time.sleep(0.3)
    assert body["status"] == "done", body
    assert body["progress"] == 100
    assert body["summary"]["routes"] >= 1
    assert set(body["summary"]) >= {"routes", "distance_km", "vehicles_used", "unassigned"}


@pytest.mark.django_db(transaction=True)
def test_a_new_run_answers_queued_however_fast_a_worker_takes_it_up(day, client_for, monkeypatch):
    """The run is read back for the 202 before its message goes out: a worker that starts it
    the instant the message is sent (here, at once, in the sending thread) does not turn the
    answer into `running`, keyed request or not."""

    def worker_at_once(run_id):
        ScheduleRun.objects.filter(pk=run_id).update(status=ScheduleRunStatus.RUNNING)

    monkeypatch.setattr(schedule, "_enqueue", worker_at_once)
    client = client_for(day["staff"])
    url = f"/api/v1/service-centers/{day['center'].pk}/schedule/"
    for n, headers in enumerate(({}, {"HTTP_IDEMPOTENCY_KEY": "schedule-1"})):
        asked = day["date"] + timedelta(days=n)

        response = client.post(url, {"date": str(asked)}, format="json", **headers)

        assert (response.status_code, response.json()["status"]) == (202, "queued")
        run = ScheduleRun.objects.get(pk=response.json()["id"])
        assert (run.date, run.status) == (asked, ScheduleRunStatus.RUNNING)


@pytest.mark.django_db(transaction=True)
def test_requests_racing_runs_that_finish_join_one_or_start_the_next():
    """A request that collides with an active run looks it up to join it; when that run has
    finished in between (an empty day takes milliseconds), the request starts the next."""
    center, day = ServiceCenterFactory(), date(2030, 1, 7)
    finishing = threading.Event()
    answered, failures = [], []

    def finisher():  # a worker that plans every empty day at once
        while not finishing.is_set():
            ScheduleRun.objects.filter(
                service_center=center, status=ScheduleRunStatus.QUEUED
            ).update(status=ScheduleRunStatus.DONE)
        connection.close()

    def requester():
        try:
            for _ in range(40):
                run = schedule.schedule_run_request(center=center, day=day, requested_by=None)
                answered.append(run.pk)
        except Exception as error:  # collected, asserted below
            failures.append(error)
        finally:
            connection.close()

    worker = threading.Thread(target=finisher)
    worker.start()
    requesters = [threading.Thread(target=requester) for _ in range(4)]
    for thread in requesters:
        thread.start()
    for thread in requesters:
        thread.join()
    finishing.set()
    worker.join()

    assert failures == []
    assert len(answered) == 160
    runs = ScheduleRun.objects.filter(service_center=center, date=day)
    assert set(answered) == set(runs.values_list("pk", flat=True))
    assert 1 < runs.count() < 160  # some joined a run, some started the next
    celery_app.control.purge()  # their messages: no worker here


def _day_of(orders: int) -> ScheduleRun:
    """A center with one big van and `orders` one-line orders of 5 farms of one village,
    routed to one pickup day (each a same-day farm-to-buyer pair)."""
    center = ServiceCenterFactory(daily_capacity_kg=Decimal("100000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("9000"))
    village = VillageFactory(service_center=center)
    listings = [
        create_listing(FarmerFactory(village=village), unit="kg", quantity_available=Decimal(999))
        for _ in range(5)
    ]
    placed = [
        routed_order(BuyerFactory(village=village), (listings[n % 5], 1)) for n in range(orders)
    ]
    day = Shipment.objects.filter(order__in=placed).values_list("pickup_date", flat=True)[0]
    return ScheduleRun.objects.create(service_center=center, date=day)


@pytest.mark.django_db
def test_planning_a_day_costs_as_many_statements_for_3_shipments_as_for_9():
    """Stops, their shipments, the shipments' new status and tracking, the orders' status
    and events are each written by one statement for the whole day."""
    small, large = _day_of(3), _day_of(9)
    counts = []
    for run in (small, large):
        with CaptureQueriesContext(connection) as captured:
            schedule.schedule_run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert (run.summary["routes"], run.summary["unassigned"]) == (1, [])
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1], counts
    assert Stop.objects.filter(route__schedule_run=large).count() == 18  # 9 pairs
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.SCHEDULED}
    assert set(Shipment.objects.values_list("status", flat=True)) == {"scheduled"}
    assert set(
        Shipment.objects.filter(events__status="scheduled").values_list("pk", flat=True)
    ) == set(Shipment.objects.values_list("pk", flat=True))
    celery_app.control.purge()


@pytest.mark.django_db
def test_goods_picked_up_are_planned_and_listed_by_the_weight_weighed_at_the_farm(client_for):
    """8 kg ordered, 30 kg weighed at the farm (crates, a generous farmer): the delivery day
    plans what is on the truck, too heavy for its 20 kg van (unassigned, as an order of 30
    kg is), and a 40 kg van takes it, its load list printing 30."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    van = Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("20"))
    farmer = FarmerFactory(village=village_near(center, "0.01", "0.01"))
    listing = create_listing(farmer, unit="kg", price=Decimal("10.00"))
    order = routed_order(BuyerFactory(village=village_near(center, "-0.01", "-0.01")), (listing, 8))
    shipment = Shipment.objects.get(order=order)
    today = timezone.localdate()
    tomorrow = today + timedelta(days=1)
    Shipment.objects.filter(pk=shipment.pk).update(pickup_date=today, delivery_date=tomorrow)
    staff = StaffFactory(service_center=center)
    pickup = Route.objects.create(service_center=center, date=today)
    stop = Stop.objects.create(route=pickup, sequence=1, kind="pickup", lat=1, lng=1)
    stop.shipments.add(shipment)
    weighed = {"outcome": "done", "weight_kg": "30"}
    assert client_for(staff).post(f"/api/v1/stops/{stop.pk}/complete/", weighed).status_code == 200
    assert Shipment.objects.get(pk=shipment.pk).picked_up_weight_kg == Decimal(30)

    def plan(day):
        run = ScheduleRun.objects.create(service_center=center, date=day)
        return schedule.schedule_run_execute(run_id=run.pk)

    too_heavy = plan(tomorrow)
    assert [entry["shipments"] for entry in too_heavy.summary["unassigned"]] == [[shipment.pk]]
    assert not Stop.objects.filter(kind="delivery", shipments=shipment).exists()

    Vehicle.objects.filter(pk=van.pk).update(capacity_kg=Decimal("40"))
    plan(Shipment.objects.get(pk=shipment.pk).delivery_date)  # left out: moved a day on
    delivery = Stop.objects.get(kind="delivery", shipments=shipment)
    load_list = client_for(staff).get(f"/api/v1/routes/{delivery.route_id}/load-list.csv")
    rows = list(csv.DictReader(io.StringIO(load_list.content.decode("utf-8-sig"))))
    assert [(row["shipment"], row["weight_kg"]) for row in rows] == [(str(shipment.pk), "30")]


@pytest.mark.django_db
def test_the_nightly_plan_delivered_twice_plans_tomorrow_once(day, settings):
    """The beat's message comes again (its worker lost before the ack, after the runs it
    asked for committed and were carried out): tomorrow is not planned a second time, its
    routes not written again nor its farmers told their pickup times twice."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    with on_day(day["date"] - timedelta(days=1), time_of_day(21, 0)):
        assert schedule_tomorrow() == 1
        (run,) = ScheduleRun.objects.filter(date=day["date"])
        assert run.nightly
        schedule.schedule_run_execute(run_id=run.pk)
        told = Notification.objects.filter(kind="pickup_scheduled").count()
        stops = list(Stop.objects.order_by("pk").values_list("pk", flat=True))
        assert told > 0

        assert schedule_tomorrow() == 0  # the same message, delivered again

    assert list(ScheduleRun.objects.filter(date=day["date"]).values_list("pk", flat=True)) == [
        run.pk
    ]
    assert Notification.objects.filter(kind="pickup_scheduled").count() == told
    assert list(Stop.objects.order_by("pk").values_list("pk", flat=True)) == stops
    celery_app.control.purge()  # the run's message: carried out here, no worker


@pytest.mark.django_db
def test_the_nightly_plan_joins_a_run_staff_asked_for_and_counts_it_as_its_own(day, settings):
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    staff_run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    with on_day(day["date"] - timedelta(days=1), time_of_day(21, 0)):
        assert schedule_tomorrow() == 1  # joined
        staff_run.refresh_from_db()
        assert staff_run.nightly
        schedule.schedule_run_execute(run_id=staff_run.pk)
        assert schedule_tomorrow() == 0
    assert ScheduleRun.objects.filter(date=day["date"]).count() == 1
    # staff may still plan the day again, as often as they ask
    again = schedule.schedule_run_request(
        center=day["center"], day=day["date"], requested_by=None, enqueue=False
    )
    assert (again.pk != staff_run.pk, again.nightly) == (True, False)


@pytest.mark.django_db
def test_the_nightly_plan_taken_after_midnight_plans_the_day_begun_and_leaves_tonights_turn(
    day, settings
):
    """The workers were down from before the nightly hour until after midnight: the beat's
    message, taken at 02:00, plans the day that has begun (still unplanned), not the day
    after, whose own nightly message this evening then plans it."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    with on_day(day["date"], time_of_day(2, 0)):
        assert schedule_tomorrow() == 1
    with on_day(day["date"], time_of_day(21, 0)):
        assert schedule_tomorrow() == 1
    runs = ScheduleRun.objects.filter(service_center=day["center"]).order_by("date")
    assert list(runs.values_list("date", "nightly")) == [
        (day["date"], True),
        (day["date"] + timedelta(days=1), True),
    ]
    celery_app.control.purge()  # the runs' messages: no worker here


@pytest.mark.django_db(transaction=True)
def test_two_copies_of_the_nightly_message_at_once_ask_for_one_run_per_center(settings):
    settings.NIGHTLY_SCHEDULE_HOUR = 0  # tonight's has passed, whatever the hour now
    centers = [ServiceCenterFactory() for _ in range(3)]
    start = threading.Barrier(2)

    def copy():
        start.wait()
        return schedule_tomorrow()

    threads = [in_thread(copy) for _ in range(2)]
    for thread, _ in threads:
        thread.join()

    answers = [box[0] for _, box in threads]
    assert all(isinstance(answer, int) for answer in answers), answers  # no error
    tomorrow = timezone.localdate() + timedelta(days=1)
    runs = ScheduleRun.objects.filter(date=tomorrow)
    assert sorted(runs.values_list("service_center_id", "nightly")) == [
        (center.pk, True) for center in centers
    ]
    celery_app.control.purge()  # their messages: no worker here


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_message_was_lost_is_sent_again_by_the_sweeper(day, celery_worker):
    lost = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    fresh = ScheduleRun.objects.create(
        service_center=day["center"], date=day["date"] + timedelta(1)
    )
    stale = timezone.now() - timedelta(minutes=16)
    ScheduleRun.objects.filter(pk=lost.pk).update(created_at=stale)

    assert schedule.schedule_runs_redrive() == [lost.pk]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lost.refresh_from_db()
        if lost.status in ("done", "failed"):
            break
        time.sleep(0.3)
    assert lost.status == "done"
    assert Route.objects.filter(service_center=day["center"], date=day["date"]).exists()
    fresh.refresh_from_db()
    assert fresh.status == "queued"  # young enough: its own message may still be on the way


@pytest.mark.django_db
def test_a_run_left_running_by_a_killed_worker_is_sent_again_once_per_period(
    day, django_capture_on_commit_callbacks
):
    run = ScheduleRun.objects.create(
        service_center=day["center"],
        date=day["date"],
        status="running",
        started_at=timezone.now() - timedelta(minutes=20),
    )
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert schedule.schedule_runs_redrive() == [run.pk]
        assert schedule.schedule_runs_redrive() == []  # its clock restarted
    assert len(sent) == 1
    run.refresh_from_db()
    assert run.status == "running"
    assert timezone.now() - run.started_at < timedelta(minutes=1)


class WorkerKilled(BaseException):
    """Stands for the worker's process killed mid-task: no `except Exception` sees it."""


@pytest.mark.django_db
def test_a_run_killed_every_time_it_runs_fails_instead_of_running_forever(
    day, monkeypatch, django_capture_on_commit_callbacks
):
    """A day whose planning kills its worker every time (the solver past the hard time
    limit, out of memory) is sent again by the sweeper and started a few times, then failed
    with its reason: left running, every request for the day joined it, and the day was
    never planned."""

    def killed(*args, **kwargs):
        raise WorkerKilled

    monkeypatch.setattr(schedule, "solve", killed)
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    now, starts = timezone.now(), 0
    with django_capture_on_commit_callbacks(execute=False):
        for period in range(1, 10):
            try:
                schedule.schedule_run_execute(run_id=run.pk)
            except WorkerKilled:
                starts += 1
            schedule.schedule_runs_redrive(now=now + timedelta(minutes=16 * period))
    run.refresh_from_db()
    assert starts == settings.SCHEDULE_RUN_MAX_RESTARTS + 1
    assert run.status == "failed"
    assert run.error == f"killed or lost {starts} times before it finished"
    assert run.finished_at is not None
    again = schedule.schedule_run_request(
        center=day["center"], day=day["date"], requested_by=None, enqueue=False
    )
    assert again.pk != run.pk


@pytest.mark.django_db
def test_a_run_waiting_long_in_the_queue_is_sent_again_once_per_period(
    day, django_capture_on_commit_callbacks
):
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    ScheduleRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    later = timezone.now() + timedelta(minutes=16)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert schedule.schedule_runs_redrive() == [run.pk]
        assert schedule.schedule_runs_redrive() == []  # sent a moment ago
        assert schedule.schedule_runs_redrive(now=later) == [run.pk]  # a period on
    assert len(sent) == 2
    run.refresh_from_db()
    assert (run.status, run.resent_at) == ("queued", later)


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_message_the_broker_refuses_holds_back_no_other_run(monkeypatch):
    """The sweep's messages are sent once it commits, one by one: the broker refusing one
    (a connection dropped mid-sweep) leaves the others sent, not waiting for the next sweep
    behind it; the refused run is sent again a stale period on, as a lost message is."""
    center, today = ServiceCenterFactory(), timezone.localdate()
    runs = [
        ScheduleRun.objects.create(service_center=center, date=today + timedelta(days=n))
        for n in range(3)
    ]
    ScheduleRun.objects.update(created_at=timezone.now() - timedelta(minutes=16))
    refused, sent = runs[0].pk, []

    def send_task(name, args=None, kwargs=None, **options):
        if list(args) == [refused]:
            raise KombuOperationalError("Error 104 while writing to socket. Connection reset.")
        sent.append((name, list(args)))

    monkeypatch.setattr(celery_app, "send_task", send_task)

    assert sweep_stale_schedule_runs() == 3

    assert sent == [(schedule_center_day.name, [run.pk]) for run in runs[1:]]
    assert set(ScheduleRun.objects.values_list("status", flat=True)) == {"queued"}


@pytest.mark.django_db
def test_a_twin_delivery_finishing_first_leaves_the_run_at_100(day, monkeypatch):
    """Two deliveries of one run's task: the second solves while the first stores and
    finishes; its progress steps after that must not write over the done run's 100."""
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    real_solve, twins = schedule.solve, []

    def solve_while_a_twin_finishes(*args, **kwargs):
        if not twins:
            twins.append(None)  # the twin's own solve runs plainly
            twins[0] = schedule.schedule_run_execute(run_id=run.pk)
        return real_solve(*args, **kwargs)

    monkeypatch.setattr(schedule, "solve", solve_while_a_twin_finishes)
    schedule.schedule_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (twins[0].status, run.status, run.progress) == ("done", "done", 100)


@pytest.mark.django_db
def test_a_second_delivery_of_a_running_run_never_takes_its_progress_back(day, monkeypatch):
    """The run's task delivered again while the first copy solves at 80 % (redelivered
    after the visibility timeout, or sent again by the sweeper): staff polling the run see
    its progress stay or rise, never drop back to 10 and 30."""
    run = ScheduleRun.objects.create(
        service_center=day["center"],
        date=day["date"],
        status="running",
        progress=80,
        started_at=timezone.now(),
    )
    real_solve, seen = schedule.solve, []

    def solve_and_look(*args, **kwargs):
        seen.append(ScheduleRun.objects.get(pk=run.pk).progress)
        return real_solve(*args, **kwargs)

    monkeypatch.setattr(schedule, "solve", solve_and_look)
    schedule.schedule_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (seen, run.status, run.progress) == ([80], "done", 100)


@pytest.mark.django_db
def test_a_task_for_a_run_or_zone_deleted_after_it_was_sent_does_nothing(day):
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    ScheduleRun.objects.filter(pk=run.pk).delete()
    assert schedule_center_day(run.pk) == "gone"
    assert schedule_zone(run.pk, 0) == "gone"
    assert not Route.objects.exists()


@pytest.mark.django_db
def test_goods_at_one_farm_go_as_stops_the_vehicles_can_take():
    """Two 200 kg orders and 10 kg of milk at one farm, a 300 kg van without a fridge: one
    order goes, the other finds no room, the milk finds no vehicle; as one stop all three
    were refused (too heavy, and needing a fridge)."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    elsewhere = ServiceCenterFactory(lat=Decimal("30.600000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("300"))
    farm = FarmerFactory(village=village_near(center, "0.01", "0.02"))
    vegetables = create_listing(farm, unit="kg", quantity_available=Decimal("1000"))
    milk = create_listing(farm, category="dairy", unit="kg", needs_refrigeration=True)
    buyers = [BuyerFactory(village=village_near(elsewhere, "0.01", f"0.0{n}")) for n in (1, 2, 3)]
    heavy = [routed_order(buyers[n], (vegetables, 200)) for n in (0, 1)]
    cold = routed_order(buyers[2], (milk, 10))
    shipments = Shipment.objects.filter(order__in=[*heavy, cold])
    [day] = set(shipments.values_list("pickup_date", flat=True))

    run = schedule.schedule_run_execute(
        run_id=ScheduleRun.objects.create(service_center=center, date=day).pk
    )

    reasons = {item["reason"]: item["shipments"] for item in run.summary["unassigned"]}
    assert set(reasons) == {"no_room", "no_vehicle_with_skills"}
    assert reasons["no_vehicle_with_skills"] == [shipments.get(order=cold).pk]
    [left] = reasons["no_room"]
    assert shipments.get(pk=left).order in heavy
    scheduled = shipments.filter(status=ShipmentStatus.SCHEDULED)
    assert [s.order for s in scheduled] == [
        o for o in heavy if o.pk != shipments.get(pk=left).order_id
    ]


@pytest.mark.django_db(transaction=True)
def test_a_day_asked_for_while_the_broker_is_down_is_queued_and_answered_202(
    day, client_for, broker_down
):
    """The run is committed before its message is sent; the stale-runs sweeper sends it
    again if it is lost. A 500 would leave staff thinking nothing was asked for."""

    client = client_for(day["staff"])
    client.raise_request_exception = False
    url = f"/api/v1/service-centers/{day['center'].pk}/schedule/"
    answer = client.post(url, {"date": str(day["date"])}, format="json")
    assert answer.status_code == 202, answer.content
    assert list(ScheduleRun.objects.values_list("pk", "status")) == [
        (answer.json()["id"], ScheduleRunStatus.QUEUED)
    ]


def _only_the_van(day):
    """The truck off the road and the milk plain: every stop of the day goes on the van."""
    day["cold"].active = False
    day["cold"].save()
    Shipment.objects.update(needs_refrigeration=False)


@pytest.mark.django_db
def test_a_vehicle_repriced_while_the_day_is_solved_keeps_its_route(day, monkeypatch):
    """Its price per km is no part of what a plan relies on (fleet.PLANNED_ON): the route
    planned onto it is written, costed at the new price."""
    _only_the_van(day)

    def reprice():
        fleet.vehicle_update(vehicle_id=day["van"].pk, changes={"cost_per_km": Decimal("2.00")})

    solving_while(monkeypatch, reprice)
    run = run_day(day)

    assert run.summary["unassigned"] == []
    route = Route.objects.get(vehicle=day["van"])
    assert route.cost == (route.distance_km * 2).quantize(Decimal("0.01"))


@pytest.mark.django_db
def test_a_vehicle_changed_while_its_day_is_solved_has_the_day_planned_again(
    day, monkeypatch, django_capture_on_commit_callbacks
):
    """The change asks for the day to be planned again, which joins the run solving it;
    that run drops the van's route (planned for the van as it was): a new run is queued
    once it is done, so the goods left waiting on the day get a plan."""
    _only_the_van(day)
    run_day(day)

    def grow():
        fleet.vehicle_update(vehicle_id=day["van"].pk, changes={"capacity_kg": Decimal("400")})

    solving_while(monkeypatch, grow)
    with django_capture_on_commit_callbacks(execute=True):
        run = run_day(day)

    [dropped] = run.summary["unassigned"]
    assert dropped["reason"] == "vehicle_unavailable"
    again = ScheduleRun.objects.get(status=ScheduleRunStatus.QUEUED)
    assert (again.service_center_id, again.date, again.requested_by) == (
        day["center"].pk,
        day["date"],
        None,
    )
    monkeypatch.undo()  # the engine as it is
    assert schedule.schedule_run_execute(run_id=again.pk).summary["unassigned"] == []
    assert Route.objects.filter(vehicle=day["van"]).exists()
    celery_app.control.purge()  # its message: no worker here


@pytest.mark.django_db
def test_staff_asking_for_a_day_while_it_is_solved_get_a_new_plan_after_the_run(
    day, client_for, monkeypatch, django_capture_on_commit_callbacks
):
    """Staff's request joins the run solving the day (202, that run), which read the day
    before they asked: an order routed onto the day meanwhile has no place in its plan, nor
    in its summary. A new run follows it, once it is done, which plans that order."""
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    staff = client_for(day["staff"])
    url = f"/api/v1/service-centers/{day['center'].pk}/schedule/"
    asked = {}

    def order_and_ask():
        farmer = FarmerFactory(village=village_near(day["center"], "0.03", "0.03"))
        buyer = BuyerFactory(village=village_near(day["center"], "-0.03", "0.03"))
        asked["order"] = routed_order(buyer, (create_listing(farmer, unit="kg"), 5))
        asked["answer"] = staff.post(url, {"date": str(day["date"])}, format="json")

    solving_while(monkeypatch, order_and_ask)
    with django_capture_on_commit_callbacks(execute=True):
        schedule.schedule_run_execute(run_id=run.pk)

    assert (asked["answer"].status_code, asked["answer"].json()["id"]) == (202, run.pk)
    late = Shipment.objects.get(order=asked["order"])
    assert late.pickup_date == day["date"]
    assert (late.status, late.stops.count()) == (ShipmentStatus.PENDING, 0)
    assert asked["answer"].json()["asked_again"] is True
    again = ScheduleRun.objects.get(status=ScheduleRunStatus.QUEUED)
    assert (again.service_center_id, again.date) == (day["center"].pk, day["date"])
    monkeypatch.undo()  # the engine as it is
    assert schedule.schedule_run_execute(run_id=again.pk).summary["unassigned"] == []
    late.refresh_from_db()
    assert (late.status, late.stops.count()) == (ShipmentStatus.SCHEDULED, 2)
    celery_app.control.purge()  # its message: no worker here


@pytest.mark.django_db(transaction=True)
def test_staff_asking_for_a_day_while_it_is_stored_wait_for_it_and_start_the_next(day, monkeypatch):
    """The request comes while the run writes its plan (the run's row locked): it waits,
    finds the run done, and starts the next run, of the day as it is now."""
    storing, go_on = threading.Event(), threading.Event()
    mark_scheduled = schedule._mark_scheduled

    def paused(*args, **kwargs):  # the run stops inside its storing transaction
        storing.set()
        go_on.wait(30)
        return mark_scheduled(*args, **kwargs)

    monkeypatch.setattr(schedule, "_mark_scheduled", paused)
    first, ran = in_thread(lambda: run_day(day))
    assert storing.wait(30)
    request, asked = in_thread(
        lambda: schedule.schedule_run_request(
            center=day["center"],
            day=day["date"],
            requested_by=day["staff"],
            enqueue=False,
            again_after_running=True,
        )
    )
    assert wait_for_lock_waiters(1) == 1
    go_on.set()
    first.join(60)
    request.join(60)

    [run], [next_run] = ran, asked
    assert isinstance(run, ScheduleRun), run
    assert isinstance(next_run, ScheduleRun), next_run
    assert (run.status, run.asked_again) == (ScheduleRunStatus.DONE, False)
    assert next_run.pk != run.pk
    assert ScheduleRun.objects.get(pk=next_run.pk).status == ScheduleRunStatus.QUEUED


@pytest.mark.django_db
def test_a_request_for_a_day_queued_but_not_yet_solved_joins_it_and_asks_for_nothing_more(
    day, client_for, django_capture_on_commit_callbacks
):
    """A run still queued reads the day when it starts, after the request: it is the plan
    asked for, and no run follows it."""
    run = ScheduleRun.objects.create(service_center=day["center"], date=day["date"])
    url = f"/api/v1/service-centers/{day['center'].pk}/schedule/"
    joined = client_for(day["staff"]).post(url, {"date": str(day["date"])}, format="json")
    assert (joined.status_code, joined.json()["id"], joined.json()["asked_again"]) == (
        202,
        run.pk,
        False,
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert schedule.schedule_run_execute(run_id=run.pk).status == ScheduleRunStatus.DONE
    assert list(ScheduleRun.objects.values_list("pk", flat=True)) == [run.pk]


@pytest.mark.django_db
def test_goods_rolled_past_their_shelf_life_are_flagged_as_spoiling(day):
    shipment = Shipment.objects.filter(needs_refrigeration=False).order_by("pk").first()
    assert shipment.spoils_before_arrival is False
    lines = OrderLine.objects.filter(order_id=shipment.order_id, farmer_id=shipment.farmer_id)
    lines.update(spoils_on=shipment.delivery_date)  # keeps to its delivery, no more
    Vehicle.objects.update(active=False)  # no vehicle: the day's goods roll to the next
    run_day(day)

    shipment.refresh_from_db()
    assert lines.first().spoils_on < shipment.delivery_date
    assert shipment.spoils_before_arrival is True


@pytest.mark.django_db
def test_a_day_without_room_rolls_its_goods_over_in_statements_per_order_only():
    """A day no vehicle can take (the center's van is gone): every shipment moves to the
    next day. Their days, bookings, legs and tracking are written together; what is left
    per order is its own (its lock, as orders_waiting_again takes it): 47 and 95
    statements for 3 and 9 before, 33 and 39 now."""
    small, large = _day_of(3), _day_of(9)
    counts = []
    for run in (small, large):
        Vehicle.objects.filter(service_center=run.service_center).delete()
        with CaptureQueriesContext(connection) as captured:
            schedule.schedule_run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert run.summary["routes"] == 0
        assert len(run.summary["unassigned"]) == (3 if run == small else 9)
        counts.append(len(captured.captured_queries))
    assert counts[1] - counts[0] == 6, counts  # one per order more: 6 more orders
    moved = Shipment.objects.all()
    assert {s.pickup_date for s in moved} == {small.date + timedelta(days=1)}
    assert set(
        TrackingEvent.objects.filter(note__startswith="did not fit the day").values_list(
            "shipment_id", flat=True
        )
    ) == set(moved.values_list("pk", flat=True))
    celery_app.control.purge()


@pytest.mark.django_db
def test_a_route_whose_every_order_was_cancelled_while_the_day_was_solved_is_not_written(
    day, monkeypatch
):
    """Every order cancelled while the engine worked: no stop is left on any route, and no
    route is written (a van sent out with nothing to do, a driver with an empty list), nor
    counted with its kilometres in the run's summary."""

    cancelled_while_solving(monkeypatch, *day["orders"])
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert not Route.objects.exists()
    assert run.summary["routes"] == run.summary["stops"] == run.summary["vehicles_used"] == 0
    assert run.summary["distance_km"] == 0


@pytest.mark.django_db
def test_a_day_planned_on_the_day_itself_starts_from_now(day):
    at_ten = timezone.make_aware(datetime.combine(day["date"], time_of_day(10)))
    with on_day(day["date"], time_of_day(10)):
        run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    stops = Stop.objects.all()
    assert stops  # the pickup window (07:00-11:00) is still open for an hour
    assert all(stop.eta >= at_ten for stop in stops), sorted(s.eta for s in stops)


@pytest.mark.django_db
def test_a_day_planned_after_every_shift_is_over_plans_nothing_and_rolls_it_all(day):
    waiting = set(Shipment.objects.values_list("pk", flat=True))
    with on_day(day["date"], time_of_day(20)):  # the shifts end at 18:00, the center at 19:00
        run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert (run.summary["routes"], run.summary["vehicles_available"]) == (0, 0)
    assert not Route.objects.exists()
    assert {item["reason"] for item in run.summary["unassigned"]} == {"no_vehicle"}
    assert {pk for item in run.summary["unassigned"] for pk in item["shipments"]} == waiting
    nexts = set(Shipment.objects.values_list("pickup_date", "status"))
    assert nexts == {(day["date"] + timedelta(days=1), ShipmentStatus.PENDING)}


def assert_loads_are_the_shipments_on_board():
    """Every stop's load_kg is what its route carries after it: the goods delivered later
    on (loaded at the center) and those picked up so far, less those delivered so far."""
    for route in Route.objects.all():
        stops = list(route.stops.order_by("sequence").prefetch_related("shipments"))
        picked = {s.pk for stop in stops if stop.kind == "pickup" for s in stop.shipments.all()}
        on_board = sum(
            (
                s.load_kg
                for stop in stops
                if stop.kind == "delivery"
                for s in stop.shipments.all()
                if s.pk not in picked
            ),
            Decimal(0),
        )
        for stop in stops:
            weight = sum((s.load_kg for s in stop.shipments.all()), Decimal(0))
            on_board += weight if stop.kind == "pickup" else -weight
            assert stop.load_kg == on_board, (route.pk, stop.sequence)


@pytest.mark.django_db
def test_an_order_cancelled_while_the_day_is_solved_leaves_no_weight_on_board(day, monkeypatch):
    cancelled = day["orders"][2]  # 60 kg, picked up and delivered the same day

    cancelled_while_solving(monkeypatch, cancelled)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert Stop.objects.exists()
    assert_loads_are_the_shipments_on_board()


@pytest.mark.django_db
def test_a_stops_load_is_the_weight_of_its_goods_to_the_gram():
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("300"))
    farmer = FarmerFactory(village=village_near(center, "0.02", "0.02"))
    eggs = create_listing(farmer, unit="piece", unit_weight_kg=Decimal("0.125"))
    order = routed_order(BuyerFactory(village=village_near(center, "-0.02", "0.01")), (eggs, 3))
    shipment = Shipment.objects.get(order=order)
    assert shipment.weight_kg == Decimal("0.375")

    run = schedule.schedule_run_execute(
        run_id=ScheduleRun.objects.create(service_center=center, date=shipment.pickup_date).pk
    )

    assert run.status == ScheduleRunStatus.DONE
    loads = list(Stop.objects.order_by("sequence").values_list("kind", "load_kg"))
    assert loads == [("pickup", Decimal("0.375")), ("delivery", Decimal("0"))]


@pytest.mark.django_db
def test_a_route_that_lost_stops_while_the_day_was_solved_measures_the_road_it_drives(
    day, monkeypatch
):
    center = day["center"]  # the fixture's farms and buyers lie on two lines: a detour
    farmer = FarmerFactory(village=village_near(center, "-0.03", "-0.06"))
    eggs = create_listing(farmer, unit="kg", quantity_available=Decimal("100"))
    cancelled = routed_order(BuyerFactory(village=village_near(center, "0.05", "-0.05")), (eggs, 5))
    assert Shipment.objects.get(order=cancelled).pickup_date == day["date"]

    cancelled_while_solving(monkeypatch, cancelled)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    depot = Location(float(center.lat), float(center.lng))
    total, total_driving = Decimal(0), 0
    for route, stops in stops_by_route().items():
        places = [depot, *(Location(float(s.lat), float(s.lng)) for s in stops), depot]
        matrices = schedule._matrix(center).matrices(places)
        legs = range(len(places) - 1)
        road = sum(matrices.distances_m[i][i + 1] for i in legs)
        driving = sum(matrices.durations_s[i][i + 1] for i in legs)
        assert route.distance_km == (Decimal(road) / 1000).quantize(Decimal("0.01"))
        assert route.driving_s == driving
        total += Decimal(road) / 1000
        total_driving += driving
    assert run.summary["distance_km"] == round(float(total), 2)
    assert run.summary["driving_min"] == round(total_driving / 60)


@pytest.mark.django_db
def test_goods_left_out_and_cancelled_while_the_day_is_solved_are_not_reported_unplanned(
    day, monkeypatch
):
    day["cold"].active = False  # the milk waits for a refrigerated vehicle
    day["cold"].save()
    with_milk = day["orders"][1]

    cancelled_while_solving(monkeypatch, with_milk)
    run = run_day(day)

    assert run.status == ScheduleRunStatus.DONE
    assert run.summary["unassigned"] == []
    assert set(Shipment.objects.filter(order=with_milk).values_list("status", flat=True)) == {
        ShipmentStatus.CANCELLED
    }


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["cancelled", "line_rejected", "lighter"])
def test_a_planned_routes_loads_follow_goods_taken_off_it_after_the_plan(day, change):
    order = day["orders"][0]  # 40 kg from one farm and 30 kg from another, same day
    if change == "lighter":  # two lines from one farm: one shipment, 15 kg lighter later
        farm = FarmerFactory(village=village_near(day["center"], "0.03", "-0.02"))
        beans, peas = (create_listing(farm, unit="kg", title=t) for t in ("beans", "peas"))
        buyer = BuyerFactory(village=village_near(day["center"], "-0.04", "-0.03"))
        order = routed_order(buyer, (beans, 15), (peas, 25))
    run_day(day)

    take_goods_off(day, "cancelled" if change == "cancelled" else "line_rejected", order)

    assert Stop.objects.exists()
    assert_loads_are_the_shipments_on_board()


@pytest.mark.django_db
def test_a_planned_route_whose_every_order_is_cancelled_after_the_plan_is_taken_off(day):
    run_day(day)
    assert Route.objects.exists()

    for order in day["orders"]:
        orders.order_cancel(order_id=order.pk, actor=order.buyer, reason="changed mind")

    assert not Stop.objects.exists()
    assert not Route.objects.exists()


@pytest.fixture
def two_routes(day):
    """The day planned on two routes: the van's, with an order from a farm to a buyer off
    the lines the others lie on (`detour`: 10 kg of eggs and 5 kg from another farm), and
    the cold truck's, made too small for more than the milk (one farm, one buyer)."""
    center = day["center"]
    eggs = create_listing(FarmerFactory(village=village_near(center, "-0.03", "-0.06")), unit="kg")
    other = day["orders"][0].lines.order_by("pk").first().listing
    buyer = BuyerFactory(village=village_near(center, "0.05", "-0.05"))
    day["detour"] = routed_order(buyer, (eggs, 10), (other, 5))
    day["cold"].capacity_kg = Decimal("25")
    day["cold"].save()
    run_day(day)
    van, cold = (Route.objects.get(vehicle=day[name]) for name in ("van", "cold"))
    assert (van.stops.count(), cold.stops.count()) == (11, 2)
    return van, cold


def as_shown(route: Route) -> tuple:
    """A route as the API shows it: its figures and its stops in order."""
    route.refresh_from_db()
    stops = route.stops.order_by("sequence")
    return (
        route.distance_km,
        route.duration_min,
        route.driving_s,
        route.cost,
        list(stops.values_list("pk", "sequence", "kind", "eta", "load_kg")),
    )


def take_goods_off(day, change, order=None):
    """The detour order (or `order`) cancelled by its buyer, or its first line turned down
    by its farmer (the detour's eggs, their last line in it): the stops of those goods go."""
    order = order or day["detour"]
    if change == "cancelled":
        orders.order_cancel(order_id=order.pk, actor=order.buyer, reason="changed mind")
    else:
        line = order.lines.order_by("pk").first()
        orders.order_line_reject(
            order_id=order.pk, line_id=line.pk, farmer=line.farmer, reason="hail"
        )


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["cancelled", "line_rejected"])
def test_a_planned_route_that_loses_stops_after_the_plan_numbers_the_rest_1_to_n(
    day, two_routes, change
):
    van, cold = two_routes
    cold_before = as_shown(cold)
    in_order = list(van.stops.order_by("sequence").values_list("pk", flat=True))

    # an order of one farm's goods to one buyer, visited early, cancelled: its farm's stop
    # and its buyer's go; the detour's eggs turned down: their farm's stop goes (the buyer's
    # stop stays, for the detour's other goods)
    take_goods_off(day, change, day["orders"][2] if change == "cancelled" else None)

    kept = [pk for pk in in_order if Stop.objects.filter(pk=pk).exists()]
    assert len(kept) == len(in_order) - {"cancelled": 2, "line_rejected": 1}[change]
    assert in_order[: len(kept)] != kept  # one that went was before one left: a gap
    stops = list(van.stops.order_by("sequence").values_list("pk", "sequence"))
    assert stops == [(pk, n) for n, pk in enumerate(kept, start=1)]
    assert as_shown(cold) == cold_before


def measured(route: Route) -> tuple:
    """A route's distance, duration, driving seconds and cost measured over its stops as
    they are, as a plan measures a route: from the center through them and back on the
    center's matrix, leaving in time for the first stop's ETA and back after the last one's
    service, driving each leg; its distance at its vehicle's price per km."""
    center = route.service_center
    stops = list(route.stops.order_by("sequence"))
    depot = Location(float(center.lat), float(center.lng))
    places = [depot, *(Location(float(s.lat), float(s.lng)) for s in stops), depot]
    matrices = schedule._matrix(center).matrices(places)
    metres = sum(matrices.distances_m[i][i + 1] for i in range(len(places) - 1))
    driving = sum(matrices.durations_s[i][i + 1] for i in range(len(places) - 1))
    leaves = stops[0].eta - timedelta(seconds=matrices.durations_s[0][1])
    back = stops[-1].eta + timedelta(
        seconds=settings.STOP_SERVICE_SECONDS + matrices.durations_s[-2][-1]
    )
    km = Decimal(metres) / 1000
    return (
        km.quantize(Decimal("0.01")),
        round((back - leaves).total_seconds() / 60),
        driving,
        (km * route.vehicle.cost_per_km).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["cancelled", "line_rejected"])
def test_a_planned_route_that_loses_stops_after_the_plan_is_measured_over_those_left(
    day, two_routes, change
):
    van, cold = two_routes
    for route in (van, cold):  # as planned, each is what its stops measure
        assert as_shown(route)[:4] == measured(route)
    cold_before = as_shown(cold)
    planned_km, planned_driving_s = van.distance_km, van.driving_s
    etas = dict(van.stops.values_list("pk", "eta"))

    take_goods_off(day, change)

    distance_km, duration_min, driving_s, cost, stops = as_shown(van)
    assert (distance_km, duration_min, driving_s, cost) == measured(van)
    assert distance_km < planned_km
    assert driving_s < planned_driving_s
    # the stops left keep their times: the driver only skips those that went
    assert {pk: eta for pk, _, _, eta, _ in stops} == {pk: etas[pk] for pk, *_ in stops}
    assert as_shown(cold) == cold_before


@pytest.mark.django_db
def test_a_pickup_failed_on_the_road_takes_its_goods_off_the_loads_until_their_delivery(
    day, two_routes
):
    """The first farm's pickup fails (nobody there): its 25 kg are not on board, so it and
    the stops after it carry 25 kg less until the stop that would have delivered them
    (closed: its goods were not picked up), and the same from there on."""
    van, cold = two_routes
    first = van.stops.get(sequence=1)
    shipment = first.shipments.get()
    delivered_at = van.stops.get(kind="delivery", shipments=shipment).sequence
    van_before, cold_before = as_shown(van), as_shown(cold)

    with on_day(van.date):
        shipments.stop_complete(
            stop_id=first.pk,
            staff=day["staff"],
            data=Completion(outcome="failed", reason="nobody there"),
        )

    less = Decimal("25")
    loads = [(pk, load - less if n < delivered_at else load) for pk, n, _, _, load in van_before[4]]
    assert list(van.stops.order_by("sequence").values_list("pk", "load_kg")) == loads
    assert loads[0][1] == 0
    # on the road: it keeps the figures it set out with, as planned (no stop left it)
    assert as_shown(van)[:4] == van_before[:4] == measured(van)
    assert as_shown(cold) == cold_before


@pytest.mark.django_db
@pytest.mark.parametrize("weighed", ["27.000", "22.500"])
def test_a_pickup_weighed_heavier_or_lighter_carries_that_weight_until_delivered(
    day, two_routes, weighed
):
    van, cold = two_routes
    first = van.stops.get(sequence=1)
    shipment = first.shipments.get()
    assert shipment.weight_kg == Decimal("25")
    delivered_at = van.stops.get(kind="delivery", shipments=shipment).sequence
    assert delivered_at == 6
    van_before, cold_before = as_shown(van), as_shown(cold)
    weighed = Decimal(weighed)

    with on_day(van.date):
        shipments.stop_complete(
            stop_id=first.pk,
            staff=day["staff"],
            data=Completion(outcome="done", weight_kg=weighed),
        )

    more = weighed - Decimal("25")  # on board from the farm to the buyer
    loads = [(pk, load + more if n < delivered_at else load) for pk, n, _, _, load in van_before[4]]
    assert list(van.stops.order_by("sequence").values_list("pk", "load_kg")) == loads
    assert loads[0][1] == weighed
    assert as_shown(van)[:4] == van_before[:4]
    assert as_shown(cold) == cold_before


# A run as staff read it: its summary is what the plan made when it was stored, and
# `routes_now` what its routes are when asked, after goods went or stops were recorded.


def run_as_read(client_for, day, run: ScheduleRun) -> dict:
    """A run as its center's staff read it."""
    answer = client_for(day["staff"]).get(f"/api/v1/schedule-runs/{run.pk}/")
    assert answer.status_code == 200, answer.json()
    return answer.json()


def routes_as_stored(run: ScheduleRun) -> dict:
    """A run's routes and stops as the tables hold them, as `routes_now` shows them: its
    driving minutes rounded from the seconds of all its routes, as its summary rounds them,
    and null if one of them has no such figure."""
    routes = Route.objects.filter(schedule_run=run)
    stops = Stop.objects.filter(route__schedule_run=run)
    totals = routes.aggregate(km=Sum("distance_km"), min=Sum("duration_min"), cost=Sum("cost"))
    driving = list(routes.values_list("driving_s", flat=True))
    return {
        "routes": routes.count(),
        "vehicles_used": routes.values("vehicle").distinct().count(),
        "stops": stops.count(),
        "stops_open": stops.filter(status__in=("pending", "locked")).count(),
        "stops_failed": stops.filter(status="failed").count(),
        "distance_km": str(totals["km"] or Decimal("0.00")),
        "duration_min": totals["min"] or 0,
        "driving_min": None if None in driving else round(sum(driving) / 60),
        "cost": str(totals["cost"] or Decimal("0.00")),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["cancelled", "line_rejected"])
def test_a_run_read_after_goods_went_shows_its_routes_as_they_are_and_its_plan_as_made(
    day, two_routes, client_for, change
):
    """The detour's goods go after the plan: the van's stops for them go and it drives
    less. The summary, the plan as made, still says what the plan made; routes_now what
    the routes are."""
    run = ScheduleRun.objects.get()
    planned = run_as_read(client_for, day, run)
    assert planned["routes_now"] == routes_as_stored(run)
    assert (planned["routes_now"]["routes"], planned["routes_now"]["stops"]) == (
        planned["summary"]["routes"],
        planned["summary"]["stops"],
    )
    assert float(planned["routes_now"]["distance_km"]) == planned["summary"]["distance_km"]
    assert planned["routes_now"]["driving_min"] == planned["summary"]["driving_min"] > 0

    take_goods_off(day, change)

    now = run_as_read(client_for, day, run)
    assert now["summary"] == planned["summary"]
    assert now["routes_now"] == routes_as_stored(run)
    assert now["routes_now"]["stops"] < planned["routes_now"]["stops"]
    assert Decimal(now["routes_now"]["distance_km"]) < Decimal(planned["routes_now"]["distance_km"])
    assert now["routes_now"]["driving_min"] < planned["routes_now"]["driving_min"]


@pytest.mark.django_db
def test_a_run_read_after_a_stop_failed_counts_it_failed_not_open(day, client_for):
    run = run_day(day)
    first = Stop.objects.filter(route__schedule_run=run, sequence=1).order_by("pk").first()
    before = run_as_read(client_for, day, run)["routes_now"]

    with on_day(day["date"]):
        shipments.stop_complete(
            stop_id=first.pk,
            staff=day["staff"],
            data=Completion(outcome="failed", reason="nobody there"),
        )

    after = run_as_read(client_for, day, run)["routes_now"]
    assert after == routes_as_stored(run)
    assert (after["stops_open"], after["stops_failed"]) == (before["stops_open"] - 1, 1)


@pytest.mark.django_db
def test_a_run_whose_day_was_planned_again_has_no_routes_now(day, client_for):
    first = run_day(day)
    again = run_day(day)

    assert run_as_read(client_for, day, first)["routes_now"] == {
        "routes": 0,
        "vehicles_used": 0,
        "stops": 0,
        "stops_open": 0,
        "stops_failed": 0,
        "distance_km": "0.00",
        "duration_min": 0,
        "driving_min": 0,
        "cost": "0.00",
    }
    assert run_as_read(client_for, day, again)["routes_now"] == routes_as_stored(again)
    assert run_as_read(client_for, day, again)["routes_now"]["routes"] > 0


@pytest.mark.django_db
def test_a_run_with_a_route_stored_before_routes_kept_their_driving_has_no_driving_now(
    day, two_routes, client_for
):
    """A route stored before routes kept their driving time has none (null); a run with
    such a route has no driving time now either, rather than that of its other routes."""
    run = ScheduleRun.objects.get()
    old, new = sorted(two_routes, key=lambda route: route.pk)
    Route.objects.filter(pk=old.pk).update(driving_s=None)

    now = run_as_read(client_for, day, run)["routes_now"]
    routes = client_for(day["staff"]).get("/api/v1/routes/").json()["results"]

    assert now == routes_as_stored(run)
    assert (now["driving_min"], now["routes"]) == (None, 2)
    assert [(r["id"], r["driving_min"]) for r in routes] == [
        (old.pk, None),
        (new.pk, round(new.driving_s / 60)),
    ]
    assert new.driving_s > 0


@pytest.mark.django_db
def test_the_runs_list_reads_its_figures_in_as_many_queries_for_any_number_of_runs(
    day, client_for, django_assert_num_queries
):
    staff = client_for(day["staff"])
    run_day(day)
    with django_assert_num_queries(3):  # the user, the count, the page
        one = staff.get("/api/v1/schedule-runs/")
    run_day(day)
    run_day(day)
    with django_assert_num_queries(3):
        three = staff.get("/api/v1/schedule-runs/")
    assert (one.json()["count"], three.json()["count"]) == (1, 3)
    newest = three.json()["results"][0]
    assert newest["routes_now"]["routes"] == newest["summary"]["routes"] > 0
