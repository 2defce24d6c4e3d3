"""An order routed just as the nightly plan reads its day, on real connections of their own:
the routing decided by the clock, a moment before NIGHTLY_SCHEDULE_HOUR, to pick the goods
up tomorrow, and committed just after tomorrow's plan read the day. The goods were then in
neither: on a day whose plan had been made without them (no stop, not left out in the run's
summary), until the stranded sweeper moved them on once the day had gone by. The
interleavings are forced: the routing is paused at a known point while the plan runs."""

import threading
from datetime import datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal

import pytest
from django.utils import timezone

import logistics.services.routing
from logistics.models import (
    CenterDayLoad,
    Route,
    ScheduleRun,
    Shipment,
    ShipmentStatus,
    Stop,
    Vehicle,
)
from logistics.services import schedule, shipments
from logistics.services.routing import order_route, shipment_move_days
from logistics.services.shipments import Completion
from logistics.tasks import schedule_tomorrow
from marketplace.celery import app as celery_app
from orders.models import OrderStatus
from tests.clock import on_day
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    create_listing,
    place_order,
)
from tests.listings.test_photos import wait_for_lock_waiters
from tests.logistics.test_shipments import stop_for
from tests.logistics.test_stranded import near
from tests.orders.test_payments import in_thread

pytestmark = pytest.mark.django_db(transaction=True)

KG = Decimal


@pytest.fixture
def eve(settings):
    """A center with a van; in the morning of the eve of `day` (D), one order routed onto D
    (`early`) and another placed before the cut-off, still to route (`late`: its routing is
    a retry, or a backlog's), both 10 kg from one farm to one buyer."""
    settings.NIGHTLY_SCHEDULE_HOUR, settings.ROUTING_CUTOFF_HOUR = 21, 16
    center = ServiceCenterFactory(lat=KG("30.200000"), lng=KG("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=KG("300"))
    listing = create_listing(FarmerFactory(village=near(center, "0.01", "0.03")), unit="kg")
    buyer = BuyerFactory(village=near(center, "-0.01", "0.01"))
    day = timezone.localdate() + timedelta(days=5)
    with on_day(day - timedelta(days=1), time_of_day(10, 0)):
        early = order_route(order_id=place_order(buyer, (listing, 10)).pk)
        late = place_order(buyer, (listing, 10))
    assert Shipment.objects.get(order=early).pickup_date == day
    return {"center": center, "day": day, "early": early, "late": late}


def _at(day, hour: int, minute: int, second: int) -> datetime:
    return timezone.make_aware(datetime.combine(day, time_of_day(hour, minute, second)))


def _pause(
    monkeypatch, name: str, *, before: bool, module=logistics.services.routing
) -> tuple[threading.Event, threading.Event]:
    """`module.name` wrapped: on its first call it sets the first event given back (before
    or after the real call) and waits for the second."""
    real = getattr(module, name)
    reached, go = threading.Event(), threading.Event()

    def wrapped(*args, **kwargs):
        if before and not reached.is_set():
            reached.set()
            go.wait(30)
        result = real(*args, **kwargs)
        if not before and not reached.is_set():
            reached.set()
            go.wait(30)
        return result

    monkeypatch.setattr(module, name, wrapped)
    return reached, go


def _goods(order) -> tuple:
    """(pickup, delivery, status) of the order's one shipment, and the order's status."""
    shipment = Shipment.objects.get(order=order)
    order.refresh_from_db()
    return shipment.pickup_date, shipment.delivery_date, shipment.status, order.status


def _on_routes(day) -> list[int]:
    """The orders whose goods the routes of the day stop for, each once."""
    return sorted(
        set(Route.objects.filter(date=day).values_list("stops__shipments__order_id", flat=True))
    )


def test_an_order_routed_while_the_nightly_plan_reads_its_day_is_planned_with_it(eve, monkeypatch):
    """The routing holds the center's capacity lock (it decided at 20:59:50 to pick the goods
    up tomorrow, booked them, and has not committed) when tomorrow's nightly plan, asked for
    at 21:00, reads the day: the read waits for the routing's commit and finds its goods,
    which the plan puts on the route with the others. Negative control: without the plan's
    lock (schedule._day_shipments_locked reading the day unlocked) the plan read the day
    without them and left them on it, on no route and in no summary: this test fails."""
    center, day, early, late = eve["center"], eve["day"], eve["early"], eve["late"]
    routed, go = _pause(monkeypatch, "orders_transition", before=False)  # just before commit
    with on_day(day - timedelta(days=1), time_of_day(20, 59, 50)) as clock:
        routing, answer = in_thread(lambda: order_route(order_id=late.pk))
        assert routed.wait(10)
        clock.move_to(_at(day - timedelta(days=1), 21, 0, 5))
        run = ScheduleRun.objects.create(service_center=center, date=day, nightly=True)
        planning, planned = in_thread(lambda: schedule.schedule_run_execute(run_id=run.pk))
        waiting = wait_for_lock_waiters(1, timeout=3)
        go.set()
        routing.join(30)
        planning.join(120)

    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert [getattr(a, "status", a) for a in planned] == ["done"], planned
    assert _goods(late) == (day, day, ShipmentStatus.SCHEDULED, OrderStatus.SCHEDULED)
    assert _goods(early) == (day, day, ShipmentStatus.SCHEDULED, OrderStatus.SCHEDULED)
    assert _on_routes(day) == [early.pk, late.pk]
    run.refresh_from_db()
    assert (run.summary["routes"], run.summary["unassigned"]) == (1, [])
    assert dict(CenterDayLoad.objects.filter(center=center).values_list("date", "booked_kg")) == {
        day: KG("20.000")
    }
    assert waiting == 1  # the plan's read waited for the routing


def test_an_order_whose_routing_reaches_the_lock_after_the_plan_read_goes_a_day_later(
    eve, monkeypatch
):
    """The routing began at 20:59:50 and waits, before the center's capacity lock, while
    tomorrow's nightly plan reads the day at 21:00 and plans it: once it holds the lock it
    reads the clock, finds tomorrow's plan made, and books the goods the day after, whose
    plan is still to come; tomorrow's plan and its route are as they were, without them.
    Negative control: with the clock read before the lock (as routing did) the routing
    booked them onto tomorrow, already planned without them: this test fails."""
    center, day, early, late = eve["center"], eve["day"], eve["early"], eve["late"]
    after = day + timedelta(days=1)
    reached, go = _pause(monkeypatch, "lock_centers_capacity", before=True)
    with on_day(day - timedelta(days=1), time_of_day(20, 59, 50)) as clock:
        routing, answer = in_thread(lambda: order_route(order_id=late.pk))
        assert reached.wait(10)
        clock.move_to(_at(day - timedelta(days=1), 21, 0, 5))
        run = ScheduleRun.objects.create(service_center=center, date=day, nightly=True)
        run = schedule.schedule_run_execute(run_id=run.pk)
        go.set()
        routing.join(30)

    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert run.status == "done"
    assert (run.summary["routes"], run.summary["unassigned"]) == (1, [])
    assert _on_routes(day) == [early.pk]
    assert _goods(early) == (day, day, ShipmentStatus.SCHEDULED, OrderStatus.SCHEDULED)
    assert _goods(late) == (after, after, ShipmentStatus.PENDING, OrderStatus.CONFIRMED)
    assert dict(CenterDayLoad.objects.filter(center=center).values_list("date", "booked_kg")) == {
        day: KG("10.000"),
        after: KG("10.000"),
    }


def test_a_staff_run_the_nightly_plan_joins_after_it_read_the_day_is_followed_by_another(
    eve, monkeypatch
):
    """Staff asked for tomorrow's plan at 20:55; it read the day and is still solving it at
    21:00, when the nightly message joins it as the nightly plan. An order routed at 20:58,
    tomorrow still open then, came after its read: the nightly message asks for the day
    again (`asked_again`), and the run that follows once it is stored puts those goods on
    the route too. Negative control: without asking again the goods were left on the day,
    on no route, until the stranded sweeper moved them on after it."""
    center, day, early, late = eve["center"], eve["day"], eve["early"], eve["late"]
    solving, go = threading.Event(), threading.Event()
    real_solve = schedule._solve

    def paused_solve(*args, **kwargs):
        solving.set()
        go.wait(30)
        return real_solve(*args, **kwargs)

    monkeypatch.setattr(schedule, "_solve", paused_solve)
    eve_of = day - timedelta(days=1)
    with on_day(eve_of, time_of_day(20, 55)) as clock:
        staff_run = schedule.schedule_run_request(
            center=center, day=day, requested_by=None, enqueue=False
        )
        planning, planned = in_thread(lambda: schedule.schedule_run_execute(run_id=staff_run.pk))
        assert solving.wait(10)
        clock.move_to(_at(eve_of, 20, 58, 0))
        assert _goods(order_route(order_id=late.pk)) == (
            day,
            day,
            ShipmentStatus.PENDING,
            OrderStatus.CONFIRMED,
        )
        clock.move_to(_at(eve_of, 21, 0, 0))
        assert schedule_tomorrow() == 1  # joined
        go.set()
        planning.join(120)
        monkeypatch.setattr(schedule, "_solve", real_solve)
        staff_run.refresh_from_db()
        following = ScheduleRun.objects.exclude(pk=staff_run.pk).get(date=day)
        following = schedule.schedule_run_execute(run_id=following.pk)
    celery_app.control.purge()  # the runs' messages: carried out here, no worker

    assert [getattr(a, "status", a) for a in planned] == ["done"], planned
    assert (staff_run.nightly, staff_run.asked_again) == (True, True)
    assert (following.status, following.nightly) == ("done", False)
    assert (following.summary["routes"], following.summary["unassigned"]) == (1, [])
    assert _goods(late) == (day, day, ShipmentStatus.SCHEDULED, OrderStatus.SCHEDULED)
    assert _goods(early) == (day, day, ShipmentStatus.SCHEDULED, OrderStatus.SCHEDULED)
    assert _on_routes(day) == [early.pk, late.pk]


def test_the_nightly_plan_coming_while_a_staff_run_is_stored_asks_for_one_of_its_own(
    eve, monkeypatch
):
    """The nightly message comes while staff's run of tomorrow writes its plan (the run's
    row locked): it waits, finds that run done, and asks for a nightly run of its own, of
    the day as it is now; the staff run is not counted as the nightly one."""
    center, day = eve["center"], eve["day"]
    storing, go = threading.Event(), threading.Event()
    mark_scheduled = schedule._mark_scheduled

    def paused(*args, **kwargs):  # the run stops inside its storing transaction
        storing.set()
        go.wait(30)
        return mark_scheduled(*args, **kwargs)

    monkeypatch.setattr(schedule, "_mark_scheduled", paused)
    eve_of = day - timedelta(days=1)
    with on_day(eve_of, time_of_day(20, 59, 50)) as clock:
        staff_run = schedule.schedule_run_request(
            center=center, day=day, requested_by=None, enqueue=False
        )
        planning, planned = in_thread(lambda: schedule.schedule_run_execute(run_id=staff_run.pk))
        assert storing.wait(30)
        clock.move_to(_at(eve_of, 21, 0, 0))
        nightly, asked = in_thread(schedule_tomorrow)
        waiting = wait_for_lock_waiters(1)
        go.set()
        planning.join(60)
        nightly.join(60)
    celery_app.control.purge()  # the new run's message: no worker here

    assert [getattr(a, "status", a) for a in planned] == ["done"], planned
    assert asked == [1]
    assert waiting == 1
    runs = ScheduleRun.objects.filter(date=day).order_by("pk")
    assert list(runs.values_list("pk", "status", "nightly", "asked_again")) == [
        (staff_run.pk, "done", False, False),
        (runs.last().pk, "queued", True, False),
    ]


def test_a_transfer_received_while_the_nightly_plan_reads_its_day_is_delivered_by_it(
    monkeypatch, settings
):
    """Goods due at the buyer's center tomorrow are received there at 20:59:50, tomorrow's
    plan still to come then, so they keep their day; the receipt commits after 21:00, when
    tomorrow's nightly plan reads the day. The receipt holds the centers' capacity locks
    from before it reads the clock, so the plan's read waits for it and the delivery is on
    the route. Negative control: a receipt reading the clock without the locks (as it did
    when its day did not move) left the goods at the center, on no route, until the
    stranded sweeper moved them on."""
    settings.NIGHTLY_SCHEDULE_HOUR = 21
    north = ServiceCenterFactory(lat=KG("30.400000"), lng=KG("119.600000"))
    south = ServiceCenterFactory(lat=KG("30.000000"), lng=KG("119.600000"))
    Vehicle.objects.create(service_center=south, name="van", capacity_kg=KG("300"))
    listing = create_listing(FarmerFactory(village=near(north, "0.01", "0.03")), unit="kg")
    buyer = BuyerFactory(village=near(south, "-0.01", "0.01"))
    order = order_route(order_id=place_order(buyer, (listing, 8)).pk)
    shipment = Shipment.objects.get(order=order)
    shipments.stop_complete(
        stop_id=stop_for(shipment, north, "pickup").pk,
        staff=StaffFactory(service_center=north),
        data=Completion(outcome="done", weight_kg=KG("8")),
    )
    day = timezone.localdate() + timedelta(days=5)
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.IN_TRANSFER
    shipment_move_days(shipment, pickup_date=day - timedelta(days=1), delivery_date=day)
    staff = StaffFactory(service_center=south)
    received, go = _pause(monkeypatch, "_track", before=False, module=shipments)
    with on_day(day - timedelta(days=1), time_of_day(20, 59, 50)) as clock:
        receiving, answer = in_thread(
            lambda: shipments.shipment_receive(shipment_id=shipment.pk, staff=staff)
        )
        assert received.wait(10)
        clock.move_to(_at(day - timedelta(days=1), 21, 0, 5))
        run = ScheduleRun.objects.create(service_center=south, date=day, nightly=True)
        planning, planned = in_thread(lambda: schedule.schedule_run_execute(run_id=run.pk))
        waiting = wait_for_lock_waiters(1, timeout=3)
        go.set()
        receiving.join(30)
        planning.join(120)

    assert [type(a).__name__ for a in answer] == ["Shipment"], answer
    assert [getattr(a, "status", a) for a in planned] == ["done"], planned
    shipment.refresh_from_db()
    assert (shipment.status, shipment.delivery_date) == (ShipmentStatus.AT_CENTER, day)
    assert list(
        Stop.objects.filter(shipments=shipment, route__date=day).values_list(
            "kind", "route__service_center_id"
        )
    ) == [("delivery", south.pk)]
    run.refresh_from_db()
    assert (run.summary["routes"], run.summary["unassigned"]) == (1, [])
    assert waiting == 1  # the plan's read waited for the receipt
