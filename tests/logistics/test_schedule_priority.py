"""When a day cannot take everything, goods running late go first, with the real engine:
a pickup that missed its day, a delivery past the date promised to its buyer; goods merely
in normal transit between two centers are not late."""

import math
import time
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal

import pytest
from django.conf import settings

from logistics.models import (
    Route,
    ScheduleRun,
    ServiceCenter,
    Shipment,
    ShipmentStatus,
    Stop,
    Vehicle,
)
from logistics.routing import Location
from logistics.services import schedule, schedule_zones, shipments
from logistics.services.routing import order_route
from logistics.services.shipments import Completion
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
from tests.logistics.plan_checks import day_before, plan_violations

pytestmark = pytest.mark.django_db


def village_at(center: ServiceCenter, km: float, degrees: float):
    angle = math.radians(degrees)
    return VillageFactory(
        service_center=center,
        lat=center.lat + Decimal(f"{km * math.sin(angle) / 111.32:.6f}"),
        lng=center.lng + Decimal(f"{km * math.cos(angle) / 96.2:.6f}"),
    )


def shipment_of(buyer, listing, kg: int, *, delivery_method: str = "home") -> Shipment:
    order = place_order(buyer, (listing, kg), delivery_method=delivery_method)
    order_route(order_id=order.pk)
    return Shipment.objects.get(order=order)


def plan(center: ServiceCenter, day) -> ScheduleRun:
    run = ScheduleRun.objects.create(service_center=center, date=day)
    return schedule.schedule_run_execute(run_id=run.pk)


def served(run: ScheduleRun) -> set[int]:
    return set(Shipment.objects.filter(stops__route__schedule_run=run).values_list("pk", flat=True))


def priorities(center: ServiceCenter, day) -> dict[int, int]:
    """Each shipment's priority in the day's routing problem."""
    work = schedule._gather(center, day)
    return {s.pk: job.priority for job in work.problem.jobs for s in work.job_shipments[job.id]}


def test_a_pickup_that_missed_its_day_goes_before_the_fresh_ones():
    """A van with room for two of four 40 kg pickups: three fresh farms near the center,
    and one far out whose pickup did not fit yesterday. The far one is dearer to reach, so
    only its lateness puts it on the van."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    van = Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(100))
    buyer = BuyerFactory(village=village_at(center, 1, 0))  # collects at the center
    far = create_listing(FarmerFactory(village=village_at(center, 15, 90)), unit="kg")
    late = shipment_of(buyer, far, 40, delivery_method="pickup")
    missed = late.pickup_date
    van.active = False  # the day of its pickup has no vehicle: it rolls to the next
    van.save()
    plan(center, missed)
    late.refresh_from_db()
    day = missed + timedelta(days=1)
    assert (late.pickup_date, late.delivery_date, late.promised_date) == (day, day, missed)
    van.active = True
    van.save()
    fresh = [
        shipment_of(
            buyer,
            create_listing(
                FarmerFactory(village=village_at(center, 2, 120 * n)), unit="kg", harvest_date=day
            ),
            40,
            delivery_method="pickup",
        )
        for n in range(3)
    ]
    assert {s.pickup_date for s in fresh} == {day}

    assert priorities(center, day) == {late.pk: 10} | {s.pk: 0 for s in fresh}
    run = plan(center, day)

    assert late.pk in served(run)
    assert len(served(run)) == 2
    left = {pk: item["reason"] for item in run.summary["unassigned"] for pk in item["shipments"]}
    assert set(left.values()) == {"no_room"}
    assert len(left) == 2
    assert late.pk not in left


def test_a_delivery_past_its_promised_date_goes_before_one_in_normal_transit():
    """Two 60 kg deliveries on one day and a van that carries 100 kg: one came from a far
    center in the days its transfer takes (on time), the other failed at the buyer's door
    the day before (a day late), and is farther out. The late one goes."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    far_center = ServiceCenterFactory(lat=Decimal("32.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(100))
    near_buyer = BuyerFactory(village=village_at(center, 3, 0))
    far_buyer = BuyerFactory(village=village_at(center, 12, 180))

    far_farm = create_listing(
        FarmerFactory(village=village_at(far_center, 2, 0)), unit="kg", shelf_life_days=30
    )
    in_transit = shipment_of(near_buyer, far_farm, 60)
    day = in_transit.delivery_date
    assert (day - in_transit.pickup_date).days >= 2  # days on the road between the centers
    assert in_transit.promised_date == day
    Shipment.objects.filter(pk=in_transit.pk).update(status=ShipmentStatus.AT_CENTER)

    # A same-day farm-to-buyer run the day before: picked up, then nobody was home.
    farm = create_listing(
        FarmerFactory(village=village_at(center, 4, 200)),
        unit="kg",
        harvest_date=day - timedelta(days=1),
    )
    late = shipment_of(far_buyer, farm, 60)
    assert (late.pickup_date, late.delivery_date) == (day - timedelta(days=1),) * 2
    before = plan(center, day - timedelta(days=1))
    pickup, delivery = late.stops.order_by("sequence")
    assert pickup.route.schedule_run == before
    staff = StaffFactory(service_center=center)
    done = Completion(outcome="done", weight_kg=Decimal(60))
    nobody_home = Completion(outcome="failed", reason="nobody home")
    with on_day(pickup.route.date):
        shipments.stop_complete(stop_id=pickup.pk, staff=staff, data=done)
        shipments.stop_complete(stop_id=delivery.pk, staff=staff, data=nobody_home)
    late.refresh_from_db()
    assert (late.status, late.delivery_date) == (ShipmentStatus.AT_CENTER, day)
    assert late.promised_date == day - timedelta(days=1)

    assert priorities(center, day) == {in_transit.pk: 0, late.pk: 10}
    run = plan(center, day)

    assert served(run) == {late.pk}
    assert run.summary["unassigned"] == [{"shipments": [in_transit.pk], "reason": "no_room"}]


def test_goods_that_spoil_if_they_miss_the_day_go_before_goods_that_keep():
    """A van with room for one of two 60 kg pickups: potatoes that keep for weeks near the
    center, and lettuce farther out whose last good day is its delivery day. Left out, the
    lettuce would reach its buyer spoiled the next day, while the potatoes lose nothing by
    waiting: the lettuce goes, though it is dearer to reach."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(100))
    buyer = BuyerFactory(village=village_at(center, 1, 0))  # collects at the center
    near = FarmerFactory(village=village_at(center, 2, 90))
    potatoes = create_listing(near, unit="kg", shelf_life_days=60)
    keeps = shipment_of(buyer, potatoes, 60, delivery_method="pickup")
    day = keeps.pickup_date
    assert keeps.delivery_date == day
    far = FarmerFactory(village=village_at(center, 15, 270))
    lettuce = create_listing(
        far, unit="kg", harvest_date=day - timedelta(days=2), shelf_life_days=2
    )
    spoils = shipment_of(buyer, lettuce, 60, delivery_method="pickup")
    assert (spoils.pickup_date, spoils.delivery_date) == (day, day)
    assert spoils.spoils_before_arrival is False  # on its day it is still good

    run = plan(center, day)

    assert served(run) == {spoils.pk}
    assert run.summary["unassigned"] == [{"shipments": [keeps.pk], "reason": "no_room"}]
    keeps.refresh_from_db()
    assert (keeps.pickup_date, keeps.spoils_before_arrival) == (day + timedelta(days=1), False)


def test_a_farms_perishables_are_not_left_out_with_its_goods_that_keep():
    """A 25 kg van; two farms with 10 kg of lettuce each, a farm with 4 kg of potatoes, and
    a farm with 1 kg of lettuce and 20 kg of potatoes, all lettuce in its last good day.
    The van takes all the lettuce: the mixed farm's lettuce is not left out with the
    potatoes beside it (one stop for all its goods, 21 kg, would not fit beside the rest)
    while another farm's potatoes ride."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(25))
    buyer = BuyerFactory(village=village_at(center, 1, 0))  # collects at the center
    farms = [FarmerFactory(village=village_at(center, 3, 90 * n)) for n in range(4)]
    potatoes = [create_listing(farm, unit="kg", shelf_life_days=60) for farm in farms[2:]]
    keeps = shipment_of(buyer, potatoes[0], 4, delivery_method="pickup")
    day = keeps.pickup_date

    def lettuce(farm):
        return create_listing(
            farm, unit="kg", harvest_date=day - timedelta(days=2), shelf_life_days=2
        )

    greens = [shipment_of(buyer, lettuce(farm), 10, delivery_method="pickup") for farm in farms[:2]]
    mixed_lettuce = shipment_of(buyer, lettuce(farms[3]), 1, delivery_method="pickup")
    mixed_potatoes = shipment_of(buyer, potatoes[1], 20, delivery_method="pickup")
    everything = [keeps, *greens, mixed_lettuce, mixed_potatoes]
    assert {(s.pickup_date, s.delivery_date) for s in everything} == {(day, day)}

    run = plan(center, day)

    assert served(run) == {keeps.pk, mixed_lettuce.pk} | {s.pk for s in greens}
    assert run.summary["unassigned"] == [{"shipments": [mixed_potatoes.pk], "reason": "no_room"}]
    [stop] = Stop.objects.filter(shipments=mixed_lettuce)
    assert list(stop.shipments.all()) == [mixed_lettuce]


def test_a_farms_goods_too_heavy_together_for_the_idle_van_go_on_it_apart():
    """A 40 kg truck filled by a farm's 40 kg of lettuce, and a 15 kg van. Another farm has
    9 kg and 7 kg of potatoes for two buyers, 16 kg together: more than the van holds, so as
    one stop it fits no vehicle left, and both were left out "no room" while the van stayed
    at the center. The van takes the 9 kg; only the 7 kg waits."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="truck", capacity_kg=Decimal(40))
    van = Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(15))
    buyers = [BuyerFactory(village=village_at(center, 1, 90 * n)) for n in range(2)]
    farms = [FarmerFactory(village=village_at(center, 3, 120 * n)) for n in range(2)]
    potatoes = create_listing(farms[1], unit="kg", shelf_life_days=60)
    heavier = shipment_of(buyers[0], potatoes, 9, delivery_method="pickup")
    lighter = shipment_of(buyers[1], potatoes, 7, delivery_method="pickup")
    day = heavier.pickup_date
    lettuce = create_listing(
        farms[0], unit="kg", harvest_date=day - timedelta(days=2), shelf_life_days=2
    )
    greens = shipment_of(buyers[0], lettuce, 40, delivery_method="pickup")
    assert {s.pickup_date for s in (heavier, lighter, greens)} == {day}

    run = plan(center, day)

    assert served(run) == {greens.pk, heavier.pk}
    assert Stop.objects.get(shipments=heavier).route.vehicle == van
    assert run.summary["unassigned"] == [{"shipments": [lighter.pk], "reason": "no_room"}]
    lighter.refresh_from_db()
    assert (lighter.pickup_date, lighter.failed_attempts) == (day + timedelta(days=1), 1)


def test_a_zone_puts_goods_too_heavy_together_on_its_idle_van_apart(settings):
    """The same day split into zones (the truck's and the van's share of the day's work in
    one zone: the lettuce and the potatoes lie the same way from the center): the van takes
    the 9 kg there too."""
    settings.SCHEDULE_ZONE_THRESHOLD, settings.SCHEDULE_ZONE_STOPS = 1, 3
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="truck", capacity_kg=Decimal(40))
    van = Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(15))
    buyer = BuyerFactory(village=village_at(center, 1, 0))
    farms = [FarmerFactory(village=village_at(center, 3 + n, 90)) for n in range(2)]
    potatoes = create_listing(farms[1], unit="kg", shelf_life_days=60)
    heavier = shipment_of(buyer, potatoes, 9, delivery_method="pickup")
    lighter = shipment_of(
        BuyerFactory(village=buyer.village), potatoes, 7, delivery_method="pickup"
    )
    day = heavier.pickup_date
    lettuce = create_listing(
        farms[0], unit="kg", harvest_date=day - timedelta(days=2), shelf_life_days=2
    )
    greens = shipment_of(buyer, lettuce, 40, delivery_method="pickup")

    run = plan(center, day)
    zones = list(run.zones.order_by("index"))
    assert len(zones) == 1
    run = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=0)

    assert run.status == "done"
    assert served(run) == {greens.pk, heavier.pk}
    assert Stop.objects.get(shipments=heavier).route.vehicle == van
    assert run.summary["unassigned"] == [{"shipments": [lighter.pk], "reason": "no_room"}]


def test_an_idle_van_takes_what_it_can_carry_of_goods_too_heavy_together_for_it():
    """A 40 kg truck and a 25 kg van. A farm on one side of the center has 31 kg and 7 kg
    for two buyers (38 kg), a farm farther out on the other side 36 kg and 1 kg (37 kg): as
    a stop each, the truck takes the near one, the far one fits no vehicle left, and the van
    stays at the center. Solved again with only the stop left out apart, the engine served
    two stops either way (the truck with the far farm's two, or with the near farm's while
    the van took the 1 kg) and kept the cheaper plan, one trip, worth no more than the
    first: the far farm's 1 kg left out "no room" while the van stood idle. Only the 31 kg
    or the 36 kg, too heavy for the van, waits."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="truck", capacity_kg=Decimal(40))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(25))
    buyers = [BuyerFactory(village=village_at(center, 1, 90 * n)) for n in range(2)]
    near, far = (
        create_listing(FarmerFactory(village=village_at(center, km, angle)), unit="kg")
        for km, angle in ((2, 135), (4, 315))
    )
    near_heavy = shipment_of(buyers[0], near, 31, delivery_method="pickup")
    near_light = shipment_of(buyers[1], near, 7, delivery_method="pickup")
    far_heavy = shipment_of(buyers[0], far, 36, delivery_method="pickup")
    far_light = shipment_of(buyers[1], far, 1, delivery_method="pickup")
    everything = [near_heavy, near_light, far_heavy, far_light]
    day = near_heavy.pickup_date
    assert {s.pickup_date for s in everything} == {day}

    run = plan(center, day)

    [(left_out, reason)] = [
        (pk, item["reason"]) for item in run.summary["unassigned"] for pk in item["shipments"]
    ]
    assert (left_out, reason) in {(near_heavy.pk, "no_room"), (far_heavy.pk, "no_room")}
    assert served(run) == {s.pk for s in everything} - {left_out}


def test_a_van_serving_a_farms_goods_apart_stops_there_once():
    """A 40 kg truck filled by a farm's 40 kg of lettuce, and a 12 kg van whose shift leaves
    time to drive to the other farm, stop there once (STOP_SERVICE_SECONDS) and come back,
    with two minutes to spare. That farm has 13 kg, 4 kg and 3 kg of potatoes for three
    buyers, 20 kg together: solved again a shipment a stop, the van takes the 4 kg and the
    3 kg, two stops there one after another. Each paid a whole service, so the van had time
    for one of them only; the place's time is paid once per arrival, so it takes both, one
    stop on its route, and its duration and its return are one service's."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    Vehicle.objects.create(service_center=center, name="truck", capacity_kg=Decimal(40))
    farms = [FarmerFactory(village=village_at(center, 3, 120 * n)) for n in range(2)]
    depot = Location(float(center.lat), float(center.lng))
    farm = Location(float(farms[1].village.lat), float(farms[1].village.lng))
    drive = schedule._matrix(center).matrices([depot, farm]).durations_s[0][1]
    out = time_of_day(7, 0)
    back = datetime.combine(date.min, out) + timedelta(
        seconds=2 * drive + settings.STOP_SERVICE_SECONDS + 120
    )
    van = Vehicle.objects.create(
        service_center=center,
        name="van",
        capacity_kg=Decimal(12),
        shift_start=out,
        shift_end=back.time(),
    )
    buyers = [BuyerFactory(village=village_at(center, 1, 90 * n)) for n in range(3)]
    potatoes = create_listing(farms[1], unit="kg", shelf_life_days=60)
    heavy, *light = (
        shipment_of(buyer, potatoes, kg, delivery_method="pickup")
        for buyer, kg in zip(buyers, (13, 4, 3), strict=True)
    )
    day = heavy.pickup_date
    lettuce = create_listing(
        farms[0], unit="kg", harvest_date=day - timedelta(days=2), shelf_life_days=2
    )
    greens = shipment_of(buyers[0], lettuce, 40, delivery_method="pickup")
    before = day_before(center, day)

    run = plan(center, day)

    assert served(run) == {greens.pk, *(s.pk for s in light)}
    assert run.summary["unassigned"] == [{"shipments": [heavy.pk], "reason": "no_room"}]
    [route] = Route.objects.filter(schedule_run=run, vehicle=van)
    [stop] = route.stops.all()
    assert set(stop.shipments.all()) == set(light)
    assert stop.eta == schedule._at(day, 7 * 3600 + drive)
    assert route.duration_min == round((2 * drive + settings.STOP_SERVICE_SECONDS) / 60)
    assert plan_violations(run, before) == []


def a_van_too_small_for_a_farms_goods_together(center: ServiceCenter) -> Shipment:
    """The day of the tests above: a 40 kg truck filled by 40 kg of lettuce, a 15 kg van,
    and a farm's 9 kg and 7 kg of potatoes for two buyers; the 9 kg (returned) goes on the
    van only once the day is solved again with the farm's goods apart."""
    Vehicle.objects.create(service_center=center, name="truck", capacity_kg=Decimal(40))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(15))
    buyer = BuyerFactory(village=village_at(center, 1, 0))
    farms = [FarmerFactory(village=village_at(center, 3 + n, 90)) for n in range(2)]
    potatoes = create_listing(farms[1], unit="kg", shelf_life_days=60)
    heavier = shipment_of(buyer, potatoes, 9, delivery_method="pickup")
    shipment_of(BuyerFactory(village=buyer.village), potatoes, 7, delivery_method="pickup")
    day = heavier.pickup_date
    lettuce = create_listing(
        farms[0], unit="kg", harvest_date=day - timedelta(days=2), shelf_life_days=2
    )
    shipment_of(buyer, lettuce, 40, delivery_method="pickup")
    return heavier


def slow_engine(monkeypatch, module) -> list[float]:
    """The engine as `module` calls it, its first solve taking a second more than it is
    told: when each solve was told to stop, one after another."""
    deadlines = []
    engine = module.solve

    def solve(problem, *, timeout_s=None, **options):
        deadlines.append(math.inf if timeout_s is None else time.monotonic() + timeout_s)
        plan = engine(problem, timeout_s=timeout_s, **options)
        time.sleep(1 if len(deadlines) == 1 else 0)
        return plan

    monkeypatch.setattr(module, "solve", solve)
    return deadlines


def test_a_day_solved_again_has_what_its_first_solve_left_of_the_engines_time(monkeypatch):
    """A day solved again with its stops apart gives the engine no more time in all than
    DAY_ENGINE_TIMEOUT_S, inside the task's soft time limit: neither solve had any, so a
    large day solved again a shipment a stop could outlast the task, which was killed and
    failed the day. Here the first solve takes a second: the second is given the rest."""
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    heavier = a_van_too_small_for_a_farms_goods_together(center)
    deadlines = slow_engine(monkeypatch, schedule)
    started = time.monotonic()

    run = plan(center, heavier.pickup_date)

    assert run.status == "done"
    assert Stop.objects.get(shipments=heavier).route.vehicle.name == "van"  # solved again
    first, again = deadlines
    assert first - started == pytest.approx(schedule.DAY_ENGINE_TIMEOUT_S, abs=1)
    assert again <= first + 0.05


def test_a_zone_solved_again_has_what_its_first_solve_left_of_the_engines_time(
    settings, monkeypatch
):
    """The same day split into zones gives the engine no more time in all than the zone has
    (ZONE_ENGINE_TIMEOUT_S, inside the task's soft time limit with the second pass): each
    solve was given all of it, so a slow first solve and a slow second one together
    outlasted the task. Here the first solve takes a second: the second is given the rest,
    to the same deadline."""
    settings.SCHEDULE_ZONE_THRESHOLD, settings.SCHEDULE_ZONE_STOPS = 1, 3
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    heavier = a_van_too_small_for_a_farms_goods_together(center)
    deadlines = slow_engine(monkeypatch, schedule_zones)

    run = plan(center, heavier.pickup_date)
    run = schedule_zones.schedule_zone_solve(run_id=run.pk, zone=0)

    assert run.status == "done"
    assert Stop.objects.get(shipments=heavier).route.vehicle.name == "van"  # solved again
    first, again = deadlines
    assert again <= first + 0.05
