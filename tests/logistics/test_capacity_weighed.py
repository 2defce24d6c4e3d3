"""A center's day capacity follows the weighed weight: a pickup brings the days its goods
hold (its own, and the delivery's ahead) from the ordered to the weighed kilograms, once;
moving or freeing them later (a failed stop, a day that did not fit, a late transfer, a
failure for good, a cancel) gives back exactly what they hold, no residue, never below 0."""

from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from logistics.models import CenterDayLoad, ScheduleRun, Shipment, ShipmentStatus
from logistics.services import schedule
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
from tests.logistics.test_shipments import complete, stop_for

pytestmark = pytest.mark.django_db

KG = Decimal


@pytest.fixture
def county(client_for):
    """A farm at the north center selling to a buyer at the south one: 20 kg ordered
    (`ours`); and another farm's 5 kg to another buyer on the same days (`theirs`)."""
    north = ServiceCenterFactory(lat=Decimal("30.400000"), lng=Decimal("119.600000"))
    south = ServiceCenterFactory(lat=Decimal("30.000000"), lng=Decimal("119.600000"))

    def routed(kg):
        farmer = FarmerFactory(village=VillageFactory(service_center=north))
        buyer = BuyerFactory(village=VillageFactory(service_center=south))
        order = place_order(buyer, (create_listing(farmer, unit="kg"), kg))
        order_route(order_id=order.pk)
        return Shipment.objects.get(order=order)

    ours, theirs = routed(20), routed(5)
    assert (ours.pickup_date, ours.delivery_date) == (theirs.pickup_date, theirs.delivery_date)
    assert ours.pickup_date < ours.delivery_date
    south_user = StaffFactory(service_center=south)
    return {
        "north": north,
        "south": south,
        "ours": ours,
        "theirs": theirs,
        "north_staff": client_for(StaffFactory(service_center=north)),
        "south_user": south_user,
        "south_staff": client_for(south_user),
    }


def loads() -> dict:
    """Every (center, day) with kilograms booked on it; a day freed to 0 shows as absent."""
    rows = CenterDayLoad.objects.values_list("center_id", "date", "booked_kg")
    return {(center, day): kg for center, day, kg in rows if kg}


def weigh(county, kg: str):
    stop = stop_for(county["ours"], county["north"], "pickup")
    answer = complete(county["north_staff"], stop, outcome="done", weight_kg=kg)
    assert answer.status_code == 200, answer.json()
    return stop


def receive(county) -> Shipment:
    ours = county["ours"]
    answer = county["south_staff"].post(f"/api/v1/shipments/{ours.pk}/receive/")
    assert answer.status_code == 200, answer.json()
    return Shipment.objects.get(pk=ours.pk)


def fail_delivery(county):
    stop = stop_for(county["ours"], county["south"], "delivery")
    answer = complete(county["south_staff"], stop, outcome="failed", reason="买家不在家")
    assert answer.status_code == 200, answer.json()


def test_goods_weighed_heavier_hold_their_weight_until_they_fail_for_good(county, settings):
    settings.MAX_STOP_ATTEMPTS = 1
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    pickup, delivery = ours.pickup_date, ours.delivery_date
    assert loads() == {(north, pickup): KG("25.000"), (south, delivery): KG("25.000")}

    weigh(county, "30")

    assert loads() == {(north, pickup): KG("35.000"), (south, delivery): KG("35.000")}
    assert Shipment.objects.get(pk=ours.pk).booked_kg == KG("30.000")
    assert receive(county).delivery_date == delivery  # on its way in time: its day stays

    fail_delivery(county)  # for good: its days are free of its 30 kg, not of the 20 ordered

    assert Shipment.objects.get(pk=ours.pk).status == ShipmentStatus.FAILED
    assert loads() == {(north, pickup): KG("5.000"), (south, delivery): KG("5.000")}


def test_goods_weighed_lighter_move_their_weight_with_a_failed_delivery_then_free_it(
    county, settings
):
    settings.MAX_STOP_ATTEMPTS = 2
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    pickup, delivery, day = ours.pickup_date, ours.delivery_date, timedelta(days=1)

    weigh(county, "12.5")
    assert loads() == {(north, pickup): KG("17.500"), (south, delivery): KG("17.500")}
    receive(county)
    fail_delivery(county)  # tried again tomorrow: what is on the truck moves, 12.5 kg

    assert Shipment.objects.get(pk=ours.pk).delivery_date == delivery + day
    assert loads() == {
        (north, pickup): KG("17.500"),
        (south, delivery): KG("5.000"),
        (south, delivery + day): KG("12.500"),
    }

    fail_delivery(county)  # the second time, for good

    assert loads() == {(north, pickup): KG("5.000"), (south, delivery): KG("5.000")}
    assert CenterDayLoad.objects.get(center_id=south, date=delivery + day).booked_kg == 0


def test_goods_weighed_heavier_roll_their_weight_to_the_next_day_when_no_vehicle_takes_them(
    county,
):
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    pickup, delivery, day = ours.pickup_date, ours.delivery_date, timedelta(days=1)
    weigh(county, "30")
    receive(county)

    run = ScheduleRun.objects.create(service_center=county["south"], date=delivery)
    run = schedule.schedule_run_execute(run_id=run.pk)  # the south center has no vehicle

    assert [item["shipments"] for item in run.summary["unassigned"]] == [[ours.pk]]
    assert loads() == {
        (north, pickup): KG("35.000"),
        (south, delivery): KG("5.000"),
        (south, delivery + day): KG("30.000"),
    }


def test_a_transfer_received_late_moves_the_weighed_weight_to_its_new_day(county, client_for):
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    pickup, delivery = ours.pickup_date, ours.delivery_date
    weigh(county, "7.25")

    with on_day(delivery, time(22)):  # its day's plan ran while it was on its way
        county["south_staff"] = client_for(county["south_user"])
        received = receive(county)

    assert received.delivery_date > delivery
    assert loads() == {
        (north, pickup): KG("12.250"),
        (south, delivery): KG("5.000"),
        (south, received.delivery_date): KG("7.250"),
    }


def test_a_completion_retried_weighs_the_days_once(county):
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    pickup, delivery = ours.pickup_date, ours.delivery_date
    stop = weigh(county, "30")

    for retry in ("30", "26"):  # the same answer lost; or a second reading of the scale
        again = complete(county["north_staff"], stop, outcome="done", weight_kg=retry)
        assert again.status_code == 200

    assert loads() == {(north, pickup): KG("35.000"), (south, delivery): KG("35.000")}
    assert Shipment.objects.get(pk=ours.pk).picked_up_weight_kg == KG("30.000")


def test_other_goods_cancelled_leave_the_days_holding_the_weighed_weight(county, client_for):
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    weigh(county, "30")
    theirs = county["theirs"]

    cancelled = client_for(theirs.order.buyer).post(f"/api/v1/orders/{theirs.order_id}/cancel/")

    assert cancelled.status_code == 200, cancelled.json()
    assert loads() == {
        (north, ours.pickup_date): KG("30.000"),
        (south, ours.delivery_date): KG("30.000"),
    }
    assert Shipment.objects.get(pk=theirs.pk).booked_kg == 0


def test_goods_within_one_center_weighed_lighter_free_what_they_hold(client_for, settings):
    """One center picks up and delivers: its one booked day (the pickup's, which its
    delivery shares) holds the weighed weight; a delivery failing for good frees it."""
    settings.MAX_STOP_ATTEMPTS = 1
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    listing = create_listing(FarmerFactory(village=village), unit="kg")
    staff = client_for(StaffFactory(service_center=center))
    order = order_route(order_id=place_order(BuyerFactory(village=village), (listing, 20)).pk)
    shipment = Shipment.objects.get(order=order)
    other = order_route(order_id=place_order(BuyerFactory(village=village), (listing, 5)).pk)
    assert Shipment.objects.get(order=other).pickup_date == shipment.pickup_date
    day = (center.pk, shipment.pickup_date)

    picked = complete(staff, stop_for(shipment, center, "pickup"), outcome="done", weight_kg="9")
    assert picked.status_code == 200
    assert loads() == {day: KG("14.000")}

    failed = complete(
        staff, stop_for(shipment, center, "delivery"), outcome="failed", reason="没人"
    )
    assert failed.status_code == 200
    assert loads() == {day: KG("5.000")}


def test_a_pickup_locks_its_centers_capacity_after_its_goods_and_before_writing_a_day(county):
    """In id order, both centers (the delivery's day is booked too), after the shipments'
    rows and before the route's: the order a failed stop and a cancel take them in."""
    with CaptureQueriesContext(connection) as captured:
        weigh(county, "30")
    sql = [q["sql"] for q in captured.captured_queries]

    def first(text: str) -> int:
        return next(n for n, statement in enumerate(sql) if text in statement)

    def locked(table: str) -> int:
        return next(
            n for n, statement in enumerate(sql) if table in statement and "FOR UPDATE" in statement
        )

    locks = [n for n, statement in enumerate(sql) if "pg_advisory_xact_lock" in statement]
    centers = sorted([county["north"].pk, county["south"].pk])
    assert [sql[n].rsplit(",", 1)[1].strip(" )") for n in locks] == [str(c) for c in centers]
    assert locked('FROM "logistics_shipment"') < locks[0]
    assert locks[-1] < first("INSERT INTO logistics_centerdayload")
    assert locks[-1] < locked('FROM "logistics_route"')


@pytest.mark.django_db(transaction=True)
def test_the_migration_books_each_shipment_as_its_days_hold_it():
    """Shipments routed before `booked_kg` existed hold their ordered weight on their days,
    until cancelled or failed for good, when they hold nothing."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    listing = create_listing(FarmerFactory(village=village), unit="kg")

    def routed(kg):
        order = order_route(order_id=place_order(BuyerFactory(village=village), (listing, kg)).pk)
        return Shipment.objects.get(order=order)

    waiting, weighed, cancelled = routed(3), routed(4), routed(5)
    Shipment.objects.filter(pk=weighed.pk).update(
        status=ShipmentStatus.AT_CENTER, picked_up_weight_kg=KG(6)
    )
    Shipment.objects.filter(pk=cancelled.pk).update(status=ShipmentStatus.CANCELLED)

    executor = MigrationExecutor(connection)
    executor.migrate([("logistics", "0010_shipment_cash_collected")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    booked = {s.pk: (s.booked_kg, s.held_kg) for s in Shipment.objects.all()}
    assert booked == {
        waiting.pk: (None, KG(3)),  # null: as ordered
        weighed.pk: (None, KG(4)),
        cancelled.pk: (KG(0), KG(0)),
    }


def _as_the_release_before_routed_it(shipment: Shipment) -> None:
    """The release before this column routes orders without naming it (a rolling deploy
    runs both): its row gets the column's database default, its days its ordered weight."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE logistics_shipment SET booked_kg = DEFAULT WHERE id = %s", [shipment.pk]
        )


def test_goods_routed_by_the_release_before_free_their_ordered_weight_when_cancelled(
    county, client_for
):
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    _as_the_release_before_routed_it(ours)

    cancelled = client_for(ours.order.buyer).post(f"/api/v1/orders/{ours.order_id}/cancel/")

    assert cancelled.status_code == 200, cancelled.json()
    assert loads() == {
        (north, ours.pickup_date): KG("5.000"),
        (south, ours.delivery_date): KG("5.000"),
    }


def test_goods_routed_by_the_release_before_hold_their_weighed_weight_once_picked_up(county):
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    _as_the_release_before_routed_it(ours)

    weigh(county, "30")

    assert loads() == {
        (north, ours.pickup_date): KG("35.000"),
        (south, ours.delivery_date): KG("35.000"),
    }
    assert Shipment.objects.get(pk=ours.pk).booked_kg == KG("30.000")


def test_a_day_holding_less_than_its_goods_is_freed_to_zero_not_refused(county, client_for):
    """A day may hold less than a shipment says: during a rolling deploy the release before
    turns down a line and frees its weight from the days, but knows nothing of `booked_kg`.
    Freeing the shipment then takes the day to 0: not below, which its check refuses (the
    buyer's cancel would fail with a 500), and not a residue."""
    north, south, ours = county["north"].pk, county["south"].pk, county["ours"]
    CenterDayLoad.objects.filter(date__in=(ours.pickup_date, ours.delivery_date)).update(
        booked_kg=KG(15)  # ours 20 and theirs 5, less 10 of ours freed by the release before
    )

    cancelled = client_for(ours.order.buyer).post(f"/api/v1/orders/{ours.order_id}/cancel/")

    assert cancelled.status_code == 200, cancelled.json()
    assert dict(CenterDayLoad.objects.values_list("center_id", "booked_kg")) == {
        north: KG(0),
        south: KG(0),
    }
    assert Shipment.objects.get(pk=ours.pk).booked_kg == 0
