"""A large day planned as geographic zones, one task per zone (logistics.services
.schedule_zones), with the real engine: every shipment served once or left out with a
reason, redelivered tasks doing nothing twice, a failing zone failing the run, and a real
two-process worker sharing the zones."""

import math
import time
from collections import Counter
from datetime import time as time_of_day
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from logistics.models import (
    Route,
    ScheduleRun,
    ScheduleRunStatus,
    ScheduleRunZone,
    ServiceCenter,
    Shipment,
    Stop,
    Vehicle,
)
from logistics.routing import UnassignedReason
from logistics.services import schedule, schedule_zones
from logistics.services.routing import order_route
from marketplace.celery import app as celery_app
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    VillageFactory,
    create_listing,
    place_order,
)
from tests.worker import WorkerProcess

THRESHOLD, ZONE_STOPS = 20, 10


def village_at(center: ServiceCenter, km: float, degrees: float):
    angle = math.radians(degrees)
    return VillageFactory(
        service_center=center,
        lat=center.lat + Decimal(f"{km * math.sin(angle) / 111.32:.6f}"),
        lng=center.lng + Decimal(f"{km * math.cos(angle) / 96.2:.6f}"),
    )


def routed_order(buyer, *lines):
    return order_route(order_id=place_order(buyer, *lines).pk)


@pytest.fixture
def big_day():
    """One center with four vans and a refrigerated truck; eight farms and ten buyers all
    around it and three buyers at a center 30 km north. Same-day farm-to-buyer pairs, farm
    pickups bound for the other center, refrigerated milk and one order too heavy for any
    vehicle: 57 stops on one day."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    north = ServiceCenterFactory(lat=Decimal("30.470000"), lng=Decimal("119.600000"))
    vans = [
        Vehicle.objects.create(service_center=center, name=f"van {n}", capacity_kg=Decimal(300))
        for n in range(1, 5)
    ]
    cold = Vehicle.objects.create(
        service_center=center, name="cold", capacity_kg=Decimal(300), refrigerated=True
    )
    farms = [FarmerFactory(village=village_at(center, 6 + n % 3, 45 * n)) for n in range(8)]
    produce = [create_listing(f, unit="kg", quantity_available=Decimal(1000)) for f in farms]
    milk = create_listing(farms[0], category="dairy", unit="kg", needs_refrigeration=True)
    buyers = [BuyerFactory(village=village_at(center, 4, 36 * n + 10)) for n in range(10)]
    far_buyers = [BuyerFactory(village=village_at(north, 3, 120 * n)) for n in range(3)]
    placed = [
        routed_order(buyers[n % 10], (produce[n % 8], 5 + n), (produce[(n + 3) % 8], 8))
        for n in range(12)
    ]
    placed.append(routed_order(buyers[0], (milk, 15), (produce[1], 5)))
    placed.append(routed_order(buyers[5], (produce[4], 400)))  # heavier than any vehicle
    placed += [routed_order(b, (produce[2 * n + 1], 12)) for n, b in enumerate(far_buyers)]
    shipments = Shipment.objects.filter(order__in=placed)
    [pickup_day] = set(shipments.values_list("pickup_date", flat=True))
    return {
        "center": center,
        "vans": vans,
        "cold": cold,
        "date": pickup_day,
        "shipments": {s.pk: s for s in shipments},
    }


@pytest.fixture
def zoned(settings):
    settings.SCHEDULE_ZONE_THRESHOLD = THRESHOLD
    settings.SCHEDULE_ZONE_STOPS = ZONE_STOPS


def start_run(big_day) -> ScheduleRun:
    run = ScheduleRun.objects.create(service_center=big_day["center"], date=big_day["date"])
    return schedule.schedule_run_execute(run_id=run.pk)


def assert_day_planned(run: ScheduleRun, shipments: dict[int, Shipment]) -> None:
    """Every shipment of the day on exactly one pickup stop (and, a same-day pair, on one
    delivery stop after it on the same route), or left out with a reason and on no stop;
    no vehicle twice; no load above its vehicle's capacity; cold goods on cold vehicles."""
    assert (run.status, run.progress) == (ScheduleRunStatus.DONE, 100), run.error
    left = {pk: item["reason"] for item in run.summary["unassigned"] for pk in item["shipments"]}
    assert set(left.values()) <= set(UnassignedReason)
    routes = list(Route.objects.filter(schedule_run=run).select_related("vehicle"))
    assert routes
    assert len({route.vehicle_id for route in routes}) == len(routes)
    stops = Stop.objects.filter(route__in=routes).select_related("route__vehicle")
    served: dict[int, list[Stop]] = {}
    for stop in stops.prefetch_related("shipments"):
        assert stop.load_kg <= stop.route.vehicle.capacity_kg
        for shipment in stop.shipments.all():
            served.setdefault(shipment.pk, []).append(stop)
            if shipment.needs_refrigeration:
                assert stop.route.vehicle.refrigerated
    assert set(served) | set(left) == set(shipments)
    assert not set(served) & set(left)
    for pk, on in served.items():
        kinds = Counter(stop.kind for stop in on)
        assert kinds["pickup"] == 1
        if shipments[pk].crosses_centers:
            assert kinds["delivery"] == 0
        else:
            pickup, delivery = sorted(on, key=lambda stop: stop.kind != "pickup")
            assert (kinds["delivery"], delivery.route_id) == (1, pickup.route_id)
            assert pickup.sequence < delivery.sequence
    assert not Stop.objects.filter(route__in=routes, shipments__pk__in=left).exists()


@pytest.mark.django_db
def test_a_large_day_is_solved_zone_by_zone_and_stored_once(big_day, zoned):
    run = start_run(big_day)
    zones = list(ScheduleRunZone.objects.filter(run=run).order_by("index"))
    stops = sum(zone.stops for zone in zones)
    assert stops > THRESHOLD
    assert (run.status, len(zones)) == (ScheduleRunStatus.RUNNING, 5)  # 4 vans: 4 arcs + cold
    assert all(zone.plan is None for zone in zones)
    assert not Route.objects.exists()
    progress = []
    for zone in zones:
        run = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=zone.index)
        progress.append(run.progress)
    assert progress == [42, 54, 66, 78, 100]
    assert_day_planned(run, big_day["shipments"])
    [heavy] = run.summary["unassigned"]
    assert heavy["reason"] == "too_heavy"
    assert Shipment.objects.get(pk__in=heavy["shipments"]).pickup_date > big_day["date"]
    assert [z["stops"] for z in run.summary["zones"]] == [zone.stops for zone in zones]
    assert run.summary["stops"] == Stop.objects.count()
    assert run.summary["vehicles_available"] == 5


def enqueued_by(run, monkeypatch, capture) -> list[tuple[int, int]]:
    """The zone tasks the run's own task sends again, once it commits: (run, zone)."""
    enqueued = []
    with monkeypatch.context() as patch:
        patch.setattr(schedule_zones, "_enqueue", lambda *args: enqueued.append(args))
        with capture(execute=True):
            schedule.schedule_run_execute(run_id=run.pk)
    return enqueued


@pytest.mark.django_db
def test_redelivered_tasks_do_nothing_twice(
    big_day, zoned, monkeypatch, django_capture_on_commit_callbacks
):
    run = start_run(big_day)
    first = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=0)
    again = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=0)
    assert (first.progress, again.progress) == (42, 42)
    plan = ScheduleRunZone.objects.get(run=run, index=0).plan
    # The run's own task again: no second split, only the four unsolved zones enqueued.
    assert enqueued_by(run, monkeypatch, django_capture_on_commit_callbacks) == [
        (run.pk, i) for i in (1, 2, 3, 4)
    ]
    assert ScheduleRunZone.objects.filter(run=run).count() == 5
    for index in (1, 2, 3, 4):
        run = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=index)
    routes = set(Route.objects.values_list("pk", flat=True))
    assert ScheduleRunZone.objects.get(run=run, index=0).plan == plan
    for index in range(5):  # every zone redelivered after the day is stored
        assert schedule_zones.schedule_zone_solve(run_id=run.pk, zone=index).status == "done"
    assert schedule.schedule_run_execute(run_id=run.pk).status == "done"
    assert set(Route.objects.values_list("pk", flat=True)) == routes
    run.refresh_from_db()
    assert_day_planned(run, big_day["shipments"])


@pytest.mark.django_db
def test_a_zone_whose_message_the_broker_refuses_holds_back_no_other_zone(
    big_day, zoned, monkeypatch, django_capture_on_commit_callbacks
):
    """The zones' messages are sent once the split commits, one by one: the broker refusing
    one (a connection dropped) leaves the others sent; the refused zone is sent again when
    the stale-runs sweeper re-sends the run."""
    sent = []

    def send_task(name, args=None, kwargs=None, **options):
        if list(args)[1] == 0:
            raise KombuOperationalError("Error 104 while writing to socket. Connection reset.")
        sent.append(list(args))

    monkeypatch.setattr(celery_app, "send_task", send_task)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(big_day)

    assert sent == [[run.pk, index] for index in (1, 2, 3, 4)]
    assert ScheduleRunZone.objects.filter(run=run).count() == 5


@pytest.mark.django_db
def test_a_run_whose_finishing_task_was_lost_is_finished_by_the_next_one(
    big_day, zoned, monkeypatch, django_capture_on_commit_callbacks
):
    run = start_run(big_day)
    with monkeypatch.context() as crash:  # the worker dies right after saving the last plan
        crash.setattr(schedule_zones, "_finish", lambda run_id: ScheduleRun.objects.get(pk=run_id))
        for index in range(5):
            schedule_zones.schedule_zone_solve(run_id=run.pk, zone=index)
    run.refresh_from_db()
    assert (run.status, run.progress) == (ScheduleRunStatus.RUNNING, 90)
    assert not Route.objects.exists()
    # The sweeper re-sends the run's task: every zone is solved, so it sends one to finish.
    assert enqueued_by(run, monkeypatch, django_capture_on_commit_callbacks) == [(run.pk, 4)]
    run = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=4)
    assert_day_planned(run, big_day["shipments"])
    routes = set(Route.objects.values_list("pk", flat=True))
    assert schedule_zones.schedule_zone_solve(run_id=run.pk, zone=2).status == "done"
    assert set(Route.objects.values_list("pk", flat=True)) == routes


@pytest.mark.django_db
def test_plain_goods_the_vans_cannot_take_ride_on_the_refrigerated_truck(big_day, zoned):
    """Vans out only until 08:30: the arcs leave most of their goods out, while the
    refrigerated truck, set apart with the milk, has room and time for them; the second
    pass gives it plain goods."""
    Vehicle.objects.filter(pk__in=[van.pk for van in big_day["vans"]]).update(
        shift_end=time_of_day(8, 30)
    )
    run = start_run(big_day)
    for index in range(5):
        run = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=index)

    assert_day_planned(run, big_day["shipments"])
    truck = Route.objects.get(schedule_run=run, vehicle=big_day["cold"])
    carried = Shipment.objects.filter(stops__route=truck).distinct()
    assert carried.filter(needs_refrigeration=True).exists()
    plain = carried.filter(needs_refrigeration=False)
    assert plain.exists()
    left = {pk for item in run.summary["unassigned"] for pk in item["shipments"]}
    assert run.summary["second_pass"]["taken"] > 0
    assert run.summary["second_pass"]["offered"] >= run.summary["second_pass"]["taken"]
    zones_left = sum(zone["unassigned"] for zone in run.summary["zones"])
    assert len(run.summary["unassigned"]) == zones_left - run.summary["second_pass"]["taken"]
    assert not left & set(plain.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_failing_zone_fails_the_run_and_stores_nothing(big_day, zoned, monkeypatch):
    run = start_run(big_day)
    schedule_zones.schedule_zone_solve(run_id=run.pk, zone=0)

    def broken(*args, **kwargs):
        raise RuntimeError("engine crashed")

    monkeypatch.setattr(schedule_zones, "solve", broken)
    with pytest.raises(RuntimeError):
        schedule_zones.schedule_zone_solve(run_id=run.pk, zone=1)
    monkeypatch.undo()
    for index in (2, 3, 4):  # the zones left do nothing for a failed run
        assert schedule_zones.schedule_zone_solve(run_id=run.pk, zone=index).status == "failed"
    run.refresh_from_db()
    assert (run.status, run.error) == (
        ScheduleRunStatus.FAILED,
        "zone 1: RuntimeError (the worker's log has the details)",
    )
    assert not Route.objects.exists()
    assert ScheduleRunZone.objects.filter(run=run, plan__isnull=False).count() == 1
    assert set(Shipment.objects.values_list("status", flat=True)) == {"pending"}


@pytest.mark.django_db
def test_a_day_under_the_threshold_is_solved_in_one_piece(big_day):
    run = start_run(big_day)
    assert not ScheduleRunZone.objects.exists()
    assert "zones" not in run.summary
    assert_day_planned(run, big_day["shipments"])


@pytest.fixture
def zone_workers(transactional_db, zoned, monkeypatch):
    """A real worker of two processes, started with the lowered threshold in its
    environment (it reads its own settings)."""
    monkeypatch.setenv("SCHEDULE_ZONE_THRESHOLD", str(THRESHOLD))
    monkeypatch.setenv("SCHEDULE_ZONE_STOPS", str(ZONE_STOPS))
    celery_app.control.purge()
    worker = WorkerProcess("zones", concurrency=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.mark.django_db(transaction=True)
def test_workers_solve_a_large_day_one_task_per_zone(big_day, zone_workers):
    run = schedule.schedule_run_request(
        center=big_day["center"], day=big_day["date"], requested_by=None
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in (ScheduleRunStatus.DONE, ScheduleRunStatus.FAILED):
            break
        time.sleep(0.2)
    assert_day_planned(run, big_day["shipments"])
    zones = ScheduleRunZone.objects.filter(run=run)
    assert zones.count() == len(run.summary["zones"]) == 5
    assert not zones.filter(plan__isnull=True).exists()  # each solved by its own task


@pytest.mark.django_db
def test_zones_of_runs_finished_long_ago_are_pruned_and_the_runs_stay():
    center = ServiceCenterFactory()
    now = timezone.now()

    def run_with_zone(day: int, status: str, finished_days_ago: int | None) -> ScheduleRun:
        finished = (
            now - timedelta(days=finished_days_ago) if finished_days_ago is not None else None
        )
        run = ScheduleRun.objects.create(
            service_center=center,
            date=now.date() + timedelta(days=day),
            status=status,
            finished_at=finished,
        )
        ScheduleRunZone.objects.create(run=run, index=0, stops=1, problem={}, shipments={})
        return run

    old_done = run_with_zone(0, "done", 8)
    old_failed = run_with_zone(1, "failed", 30)
    recent = run_with_zone(2, "done", 6)
    running = run_with_zone(3, "running", None)

    assert schedule_zones.schedule_zones_prune(now=now) == 2

    assert set(ScheduleRunZone.objects.values_list("run_id", flat=True)) == {recent.pk, running.pk}
    assert ScheduleRun.objects.filter(pk__in=[old_done.pk, old_failed.pk]).count() == 2


@pytest.mark.django_db
def test_the_passes_after_the_zones_share_one_deadline(big_day, zoned, monkeypatch):
    """The exchange between zones, pass after pass, and the refrigerated vehicles' pass
    share SECOND_PASS_TIMEOUT_S: the exchange is told the deadline every solve of theirs
    is told to stop by, so it starts no pass it has no time for."""
    seen: dict[str, float] = {}
    stops_by: list[float] = []
    after_zones, engine = schedule_zones.after_zones, schedule_zones.solve

    def told(zones, plans, solve, *, deadline):
        seen["deadline"], seen["from"] = deadline, time.monotonic()
        return after_zones(zones, plans, solve, deadline=deadline)

    def solve(problem, *, timeout_s=None, **options):
        if seen:
            stops_by.append(time.monotonic() + timeout_s)
        return engine(problem, timeout_s=timeout_s, **options)

    monkeypatch.setattr(schedule_zones, "after_zones", told)
    monkeypatch.setattr(schedule_zones, "solve", solve)
    Vehicle.objects.filter(pk__in=[van.pk for van in big_day["vans"]]).update(
        shift_end=time_of_day(8, 30)
    )
    run = start_run(big_day)
    for index in range(5):
        run = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=index)

    assert_day_planned(run, big_day["shipments"])
    assert seen["deadline"] - seen["from"] == pytest.approx(
        schedule_zones.SECOND_PASS_TIMEOUT_S, abs=0.5
    )
    assert stops_by
    assert all(deadline <= seen["deadline"] + 0.05 for deadline in stops_by)
