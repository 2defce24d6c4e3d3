"""Goods stranded on a day gone by (no plan of it ran, or their route never set out) move on
to the next day to plan: the sweeper (hourly, and at the start of the nightly plan)."""

import threading
from datetime import date, timedelta
from datetime import time as time_of_day
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from listings.models import Listing
from logistics.models import (
    CenterDayLoad,
    LegKind,
    LegStatus,
    Route,
    RouteStatus,
    ScheduleRun,
    ScheduleRunStatus,
    Shipment,
    ShipmentLeg,
    ShipmentStatus,
    Stop,
    StopKind,
    StopStatus,
    TrackingEvent,
    Vehicle,
)
from logistics.routing import Location
from logistics.services import schedule, shipments, stranded
from logistics.services.routing import lock_centers_capacity, order_route, shipment_move_days
from logistics.services.shipments import Completion
from logistics.services.stranded import shipments_roll_stranded
from logistics.tasks import roll_stranded_shipments, schedule_tomorrow
from marketplace.celery import app as celery_app
from orders import services as orders
from orders.models import Notification, Order, OrderStatus
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


def near(center, dlat: str, dlng: str):
    return VillageFactory(
        service_center=center, lat=center.lat + Decimal(dlat), lng=center.lng + Decimal(dlng)
    )


@pytest.fixture
def county():
    """One center with a van; two farms and two buyers around it. `mixed` is 10 kg from
    farm 0 and 20 kg from farm 1 for buyer 0, `single` 5 kg from farm 0 for buyer 1, both
    delivered home and routed onto one day (`day`), picked up and delivered on it."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("300"))
    farms = [FarmerFactory(village=near(center, f"0.0{n}", f"0.0{n + 2}")) for n in (1, 2)]
    listings = [create_listing(farm, unit="kg") for farm in farms]
    buyers = [BuyerFactory(village=near(center, f"-0.0{n}", f"0.0{n}")) for n in (1, 2)]
    mixed = order_route(order_id=place_order(buyers[0], (listings[0], 10), (listings[1], 20)).pk)
    single = order_route(order_id=place_order(buyers[1], (listings[0], 5)).pk)
    (day,) = set(Shipment.objects.values_list("pickup_date", flat=True))
    assert set(Shipment.objects.values_list("delivery_date", flat=True)) == {day}
    return {
        "center": center,
        "farms": farms,
        "listings": listings,
        "mixed": mixed,
        "single": single,
        "day": day,
        "staff": StaffFactory(service_center=center),
    }


def plan_on_its_eve(center, day: date) -> ScheduleRun:
    """The day planned as the nightly plan plans it: the evening before, at 21:00."""
    with on_day(day - timedelta(days=1), time_of_day(21, 0)):
        run = ScheduleRun.objects.create(service_center=center, date=day)
        return schedule.schedule_run_execute(run_id=run.pk)


def days_of(*shipments_) -> list[tuple]:
    """(pickup, delivery, status, failed attempts) of each shipment, as stored."""
    return [
        Shipment.objects.filter(pk=s.pk)
        .values_list("pickup_date", "delivery_date", "status", "failed_attempts")
        .get()
        for s in shipments_
    ]


def loads(center) -> dict[date, Decimal]:
    rows = CenterDayLoad.objects.filter(center=center).exclude(booked_kg=0)
    return dict(rows.values_list("date", "booked_kg"))


def notes(shipment) -> list[str]:
    return list(
        TrackingEvent.objects.filter(shipment=shipment)
        .order_by("pk")
        .values_list("note", flat=True)
    )


def the_state() -> tuple:
    """Everything a sweep could change, to show one changed nothing."""
    return (
        list(
            Shipment.objects.order_by("pk").values_list(
                "pk", "pickup_date", "delivery_date", "status", "failed_attempts"
            )
        ),
        list(
            Stop.objects.order_by("pk").values_list(
                "pk", "route_id", "sequence", "status", "load_kg"
            )
        ),
        list(Stop.shipments.through.objects.order_by("pk").values_list("stop_id", "shipment_id")),
        list(
            Route.objects.order_by("pk").values_list("pk", "status", "distance_km", "duration_min")
        ),
        list(Order.objects.order_by("pk").values_list("pk", "status")),
        TrackingEvent.objects.count(),
        Notification.objects.count(),
        sorted(CenterDayLoad.objects.values_list("center_id", "date", "booked_kg")),
    )


@pytest.mark.django_db
def test_goods_of_a_day_whose_plan_never_ran_move_on_to_the_next_day_to_plan(county, client_for):
    """No plan of the day ran (the nightly message lost, staff never asked): the next
    morning its goods wait for tomorrow's plan, their bookings with them, no try counted;
    each buyer is told once, each shipment tracked, and the farmer sees the pickup to come."""
    center, day, mixed, single = county["center"], county["day"], county["mixed"], county["single"]
    goods = list(Shipment.objects.order_by("pk"))
    tomorrow = day + timedelta(days=2)
    with on_day(day + timedelta(days=1)):
        assert client_for(county["farms"][0]).get("/api/v1/my/pickups/").json()["count"] == 0

        assert shipments_roll_stranded() == 3

        assert days_of(*goods) == [(tomorrow, tomorrow, ShipmentStatus.PENDING, 0)] * 3
        pending_legs = ShipmentLeg.objects.filter(status=LegStatus.PENDING)
        assert set(pending_legs.values_list("date", flat=True)) == {tomorrow}
        assert loads(center) == {tomorrow: Decimal("35.000")}
        assert [notes(s)[-1] for s in goods] == [
            (
                f"pickup day {day:%Y-%m-%d} went by (no plan took it); "
                f"pickup moved to {tomorrow:%Y-%m-%d}"
            )
        ] * 3
        assert rescheduled() == [
            (mixed.buyer_id, mixed.pk, str(tomorrow), str(day), "day_missed"),
            (single.buyer_id, single.pk, str(tomorrow), str(day), "day_missed"),
        ]
        body = Notification.objects.filter(order=single, kind="delivery_rescheduled").get().body
        assert "原定当天未能取送" in body
        pickups = client_for(county["farms"][0]).get("/api/v1/my/pickups/").json()["results"]
        assert sorted(row["id"] for row in pickups) == sorted(
            s.pk for s in goods if s.farmer_id == county["farms"][0].pk
        )
        assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.CONFIRMED}

        before = the_state()
        assert shipments_roll_stranded() == 0  # idempotent: nothing left behind
        assert the_state() == before


@pytest.mark.django_db
def test_goods_of_a_day_to_come_or_today_stay_where_they_are(county):
    before = the_state()
    with on_day(county["day"]):
        assert shipments_roll_stranded() == 0
    assert the_state() == before


@pytest.mark.django_db
def test_goods_of_a_route_never_driven_leave_it_and_the_next_plan_takes_them(county):
    """The day was planned and its route never set out. The next morning its goods stay (a
    driver's phone offline all day may still tell the stops it made, and no plan before the
    one of the day after could take them anyway); a day on, they leave the route (gone with
    its stops) and wait for the next day to plan, whose plan takes them."""
    center, day = county["center"], county["day"]
    run = plan_on_its_eve(center, day)
    assert run.summary["unassigned"] == []
    (route,) = Route.objects.all()
    goods = list(Shipment.objects.order_by("pk"))
    assert {s.status for s in goods} == {ShipmentStatus.SCHEDULED}
    with on_day(day + timedelta(days=1)):
        before = the_state()
        assert shipments_roll_stranded() == 0
        assert the_state() == before

    next_day = day + timedelta(days=3)
    with on_day(day + timedelta(days=2)):
        assert shipments_roll_stranded() == 3

    assert not Route.objects.exists()
    assert not Stop.objects.exists()
    assert days_of(*goods) == [(next_day, next_day, ShipmentStatus.PENDING, 0)] * 3
    assert [notes(s)[-1] for s in goods] == [
        (
            f"pickup day {day:%Y-%m-%d} went by (its route never set out); "
            f"pickup moved to {next_day:%Y-%m-%d}"
        )
    ] * 3
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.CONFIRMED}
    assert loads(center) == {next_day: Decimal("35.000")}

    again = plan_on_its_eve(center, next_day)

    assert again.summary["unassigned"] == []
    assert {s.status for s in Shipment.objects.all()} == {ShipmentStatus.SCHEDULED}
    (route,) = Route.objects.all()
    assert route.date == next_day
    on_it = set(Stop.shipments.through.objects.values_list("shipment_id", flat=True))
    assert on_it == {s.pk for s in goods}
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.SCHEDULED}


@pytest.mark.django_db
def test_a_route_never_driven_follows_the_goods_left_on_it(county, settings):
    """One order's goods leave a route never driven while another's are still on it (the
    sweep's first batch): its stops left empty go, the others are numbered again, loaded
    with what they still carry and the route measured over them; the next batch empties it
    and it goes."""
    center, day, mixed, single = county["center"], county["day"], county["mixed"], county["single"]
    plan_on_its_eve(center, day)
    (route,) = Route.objects.all()
    with on_day(day + timedelta(days=2)):
        assert stranded._roll_orders([mixed.pk], timezone.now(), None) == 2

        kept = list(route.stops.order_by("sequence").prefetch_related("shipments"))
        (left,) = Shipment.objects.filter(order=single)
        assert [(s.sequence, s.kind, [x.pk for x in s.shipments.all()]) for s in kept] == [
            (1, StopKind.PICKUP, [left.pk]),
            (2, StopKind.DELIVERY, [left.pk]),
        ]
        assert [s.load_kg for s in kept] == [Decimal("5.000"), Decimal("0.000")]
        midnight = schedule._at(day, 0)
        road = schedule._road(
            Location(float(center.lat), float(center.lng)),
            schedule._matrix(center),
            [
                (
                    Location(float(s.lat), float(s.lng)),
                    int((s.eta - midnight).total_seconds()),
                    settings.STOP_SERVICE_SECONDS,
                )
                for s in kept
            ],
        )
        route.refresh_from_db()
        assert route.distance_km == (Decimal(road.distance_m) / 1000).quantize(Decimal("0.01"))
        assert route.duration_min == round((road.return_s - road.departure_s) / 60)
        depot = Location(float(center.lat), float(center.lng))
        places = [depot, *(Location(float(s.lat), float(s.lng)) for s in kept), depot]
        seconds = schedule._matrix(center).matrices(places).durations_s
        assert route.driving_s == sum(seconds[i][i + 1] for i in range(len(places) - 1))
        assert Order.objects.get(pk=mixed.pk).status == OrderStatus.CONFIRMED
        assert Order.objects.get(pk=single.pk).status == OrderStatus.SCHEDULED

        assert shipments_roll_stranded() == 1

    assert not Route.objects.exists()


@pytest.mark.django_db
def test_a_route_that_set_out_keeps_its_stops_not_yet_recorded(county, settings):
    """Staff recorded the first stop of the day's route: it set out, and its other stops
    may still be recorded late. Nothing of it moves, however many days go by."""
    center, day = county["center"], county["day"]
    plan_on_its_eve(center, day)
    first = Stop.objects.get(sequence=1)
    assert first.kind == StopKind.PICKUP
    weight = sum(s.weight_kg for s in first.shipments.all())
    with on_day(day):
        shipments.stop_complete(
            stop_id=first.pk,
            staff=county["staff"],
            data=Completion(outcome="done", weight_kg=weight),
        )
    assert Route.objects.get().status == RouteStatus.STARTED
    assert Stop.objects.filter(status=StopStatus.PENDING).count() > 1
    before = the_state()
    with on_day(day + timedelta(days=5)):
        settings.NIGHTLY_SCHEDULE_HOUR = 0  # tonight's plan ran too

        assert shipments_roll_stranded() == 0

    assert the_state() == before


@pytest.mark.django_db
def test_goods_at_the_center_for_a_delivery_day_gone_by_move_on(settings):
    """Goods that came to the buyer's center for a delivery no plan took: the next day to
    plan delivers them, their pickup as it was; goods collected at the center need no plan
    and wait there for their buyer, as they are."""
    north = ServiceCenterFactory(lat=Decimal("30.400000"), lng=Decimal("119.600000"))
    south = ServiceCenterFactory(lat=Decimal("30.000000"), lng=Decimal("119.600000"))
    listing = create_listing(FarmerFactory(village=VillageFactory(service_center=north)), unit="kg")
    home, collect = (
        order_route(
            order_id=place_order(
                BuyerFactory(village=VillageFactory(service_center=south)),
                (listing, 8),
                delivery_method=method,
            ).pk
        )
        for method in ("home", "pickup")
    )
    today = timezone.localdate()
    due = today - timedelta(days=1)
    for shipment in Shipment.objects.all():
        shipment_move_days(shipment, pickup_date=due - timedelta(days=2), delivery_date=due)
        shipment.legs.exclude(kind__in=(LegKind.DELIVERY, LegKind.HANDOVER)).update(
            status=LegStatus.DONE
        )
    Shipment.objects.update(status=ShipmentStatus.AT_CENTER)
    at_door, collected = Shipment.objects.get(order=home), Shipment.objects.get(order=collect)

    assert shipments_roll_stranded() == 1

    tomorrow = today + timedelta(days=1)
    assert days_of(at_door, collected) == [
        (due - timedelta(days=2), tomorrow, ShipmentStatus.AT_CENTER, 0),
        (due - timedelta(days=2), due, ShipmentStatus.AT_CENTER, 0),
    ]
    assert notes(at_door)[-1] == (
        f"delivery day {due:%Y-%m-%d} went by (no plan took it); "
        f"delivery moved to {tomorrow:%Y-%m-%d}"
    )
    assert rescheduled() == [(home.buyer_id, home.pk, str(tomorrow), str(due), "day_missed")]
    assert loads(south) == {tomorrow: Decimal("8.000"), due: Decimal("8.000")}
    assert at_door in schedule._day_shipments(south, tomorrow)


@pytest.mark.django_db
def test_the_nightly_plan_takes_what_yesterday_left(county, settings):
    """Yesterday's plan never ran: tonight's nightly plan first moves yesterday's goods
    onto tomorrow (whose plan it is about to ask for; not the day after, as the hourly sweep
    would at this hour), and plans them. Its message delivered again moves nothing more."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    day = county["day"]
    goods = list(Shipment.objects.order_by("pk"))
    tomorrow = day + timedelta(days=2)
    with on_day(day + timedelta(days=1), time_of_day(21, 0)):
        assert schedule_tomorrow() == 1

        assert days_of(*goods) == [(tomorrow, tomorrow, ShipmentStatus.PENDING, 0)] * 3
        (run,) = ScheduleRun.objects.filter(date=tomorrow, nightly=True)
        schedule.schedule_run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert run.summary["unassigned"] == []
        assert {s.status for s in Shipment.objects.all()} == {ShipmentStatus.SCHEDULED}
        before = the_state()

        assert schedule_tomorrow() == 0
        assert roll_stranded_shipments() == 0
    assert the_state() == before
    celery_app.control.purge()  # the run's message: carried out here, no worker


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("nightly", "status", "asked"),
    [(True, ScheduleRunStatus.DONE, 0), (False, ScheduleRunStatus.RUNNING, 1)],
)
def test_the_nightly_plan_moves_nothing_onto_a_day_planned_already(
    county, settings, nightly, status, asked
):
    """Tomorrow's nightly plan ran already (its message comes again), or a run staff asked
    for is solving it (the nightly message joins it): it read the day before the goods
    came. Goods found stranded now go past tomorrow, to a day whose plan is still to come."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    center, day = county["center"], county["day"]
    tomorrow, after = day + timedelta(days=2), day + timedelta(days=3)
    ScheduleRun.objects.create(service_center=center, date=tomorrow, nightly=nightly, status=status)
    with on_day(day + timedelta(days=1), time_of_day(21, 0)):
        assert schedule_tomorrow() == asked
    assert (
        days_of(*Shipment.objects.order_by("pk")) == [(after, after, ShipmentStatus.PENDING, 0)] * 3
    )


@pytest.mark.django_db
def test_a_sweep_that_fails_keeps_no_nightly_plan_from_being_asked_for(
    county, settings, monkeypatch
):
    """The sweep before the nightly plan fails (the database went away a moment): the plans
    are asked for all the same, and the hourly sweep moves what it left."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    day = county["day"]

    def broken(**kwargs):
        raise RuntimeError("connection lost")

    monkeypatch.setattr("logistics.tasks.shipments_roll_stranded", broken)
    with on_day(day + timedelta(days=1), time_of_day(21, 0)):
        assert schedule_tomorrow() == 1
    assert list(ScheduleRun.objects.values_list("date", "nightly")) == [
        (day + timedelta(days=2), True)
    ]
    assert set(Shipment.objects.values_list("pickup_date", flat=True)) == {day}  # left
    celery_app.control.purge()  # the run's message: no worker here


def capacity_held_elsewhere(center) -> tuple[threading.Thread, threading.Event]:
    """Another connection's transaction holding the center's capacity lock, once it holds
    it, until the event given back is set."""
    held, release = threading.Event(), threading.Event()

    def hold_capacity():
        with transaction.atomic():
            lock_centers_capacity([center.pk])
            held.set()
            release.wait(30)

    holder, _ = in_thread(hold_capacity)
    assert held.wait(10)
    return holder, release


@pytest.mark.django_db(transaction=True)
class TestRaces:
    def test_a_cancel_of_an_order_the_sweeper_waits_for_leaves_it_cancelled(self, county):
        """A cancel holds the order as the sweeper comes to it: the sweeper waits, then
        moves only the other order's goods; the cancelled goods stay cancelled, in stock
        again, and the route never driven goes with the last goods on it."""
        center, day, mixed, single = (
            county["center"],
            county["day"],
            county["mixed"],
            county["single"],
        )
        plan_on_its_eve(center, day)
        next_day = day + timedelta(days=3)
        with on_day(day + timedelta(days=2)):
            with transaction.atomic():
                orders.order_lock(single.pk)  # a cancel has begun: it holds the order
                sweep, answer = in_thread(shipments_roll_stranded)
                assert wait_for_lock_waiters(1) == 1
                orders.order_cancel(order_id=single.pk, actor=single.buyer, reason="不要了")
            sweep.join(timeout=30)

        assert answer == [2]
        assert list(Shipment.objects.filter(order=single).values_list("status", flat=True)) == [
            ShipmentStatus.CANCELLED
        ]
        assert (
            days_of(*Shipment.objects.filter(order=mixed).order_by("pk"))
            == [(next_day, next_day, ShipmentStatus.PENDING, 0)] * 2
        )
        assert not Route.objects.exists()
        assert not Stop.objects.exists()
        assert loads(center) == {next_day: Decimal("30.000")}
        assert Listing.objects.get(pk=county["listings"][0].pk).quantity_available == Decimal(
            "90.000"
        )
        assert list(Order.objects.order_by("pk").values_list("status", flat=True)) == [
            OrderStatus.CONFIRMED,
            OrderStatus.CANCELLED,
        ]
        assert [(n[1], n[4]) for n in rescheduled()] == [(mixed.pk, "day_missed")]

    def test_a_stop_recorded_while_the_sweeper_waits_keeps_the_route_that_set_out(
        self, county, settings
    ):
        """The sweeper has read one order's goods on a route never driven and waits for the
        capacity of their center; meanwhile staff record a stop of another order on that
        route, late: it set out. The sweeper, once through, sees it on the road and leaves
        every stop of it as it is, no deadlock."""
        settings.STRANDED_SWEEP_BATCH = 1
        center, day, single = county["center"], county["day"], county["single"]
        plan_on_its_eve(center, day)
        (route,) = Route.objects.all()
        (delivery,) = Stop.objects.filter(kind=StopKind.DELIVERY, shipments__order=single)
        holder, release = capacity_held_elsewhere(center)
        with on_day(day + timedelta(days=2)):
            before = the_state()
            sweep, answer = in_thread(shipments_roll_stranded)
            assert wait_for_lock_waiters(1) == 1  # the sweeper: mixed's goods read, locked
            shipments.stop_complete(
                stop_id=delivery.pk,
                staff=county["staff"],
                data=Completion(outcome="failed", reason="不在家"),
            )
            release.set()
            holder.join(timeout=30)
            sweep.join(timeout=30)

        assert answer == [0]
        route.refresh_from_db()
        assert route.status == RouteStatus.STARTED
        after = the_state()
        assert after[0] == before[0]  # every shipment's days and status as they were
        assert after[2] == before[2]  # every stop serves what it served
        assert Stop.objects.get(pk=delivery.pk).status == StopStatus.FAILED
        assert not [n for n in rescheduled() if n[4] == "day_missed"]

    def test_a_cancel_of_an_order_the_sweeper_holds_waits_and_frees_its_new_days(self, county):
        """The sweeper holds both orders (it waits for their center's capacity, held
        elsewhere) as the buyer cancels one: the cancel waits, then finds its goods on
        their new day and frees it; no deadlock, and the stock is back once."""
        center, day, mixed, single = (
            county["center"],
            county["day"],
            county["mixed"],
            county["single"],
        )
        plan_on_its_eve(center, day)
        next_day = day + timedelta(days=3)
        holder, release = capacity_held_elsewhere(center)
        with on_day(day + timedelta(days=2)):
            sweep, swept = in_thread(shipments_roll_stranded)
            assert wait_for_lock_waiters(1) == 1  # the sweeper, holding the orders
            cancel, cancelled = in_thread(
                lambda: orders.order_cancel(order_id=single.pk, actor=single.buyer, reason="不要了")
            )
            assert wait_for_lock_waiters(2) == 2  # the cancel waits for the sweeper
            release.set()
            for thread in (holder, sweep, cancel):
                thread.join(timeout=30)

        assert swept == [3]
        assert cancelled[0].status == OrderStatus.CANCELLED
        assert list(Shipment.objects.filter(order=single).values_list("status", "pickup_date")) == [
            (ShipmentStatus.CANCELLED, next_day)
        ]
        assert (
            days_of(*Shipment.objects.filter(order=mixed).order_by("pk"))
            == [(next_day, next_day, ShipmentStatus.PENDING, 0)] * 2
        )
        assert not Route.objects.exists()
        assert loads(center) == {next_day: Decimal("30.000")}
        assert Listing.objects.get(pk=county["listings"][0].pk).quantity_available == Decimal(
            "90.000"
        )
        assert [(n[1], n[4]) for n in rescheduled()] == [
            (mixed.pk, "day_missed"),
            (single.pk, "day_missed"),
        ]
