"""Routing orders into shipments: legs, dates, capacity, spoilage, idempotence."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from listings.selectors import HARVEST_LOCK_SPACE
from logistics.models import CenterDayLoad, LegKind, Shipment, ShipmentStatus
from logistics.services import routing
from logistics.services.routing import order_route
from orders import services as orders
from orders.models import Order, OrderEvent, OrderStatus
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    VillageFactory,
    create_listing,
    place_order,
    provider_notice,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def county():
    """Two centers ~45 km apart (one transfer day), a village each."""
    north = ServiceCenterFactory(name="北", lat=Decimal("30.400000"), lng=Decimal("119.600000"))
    south = ServiceCenterFactory(name="南", lat=Decimal("30.000000"), lng=Decimal("119.600000"))
    return {
        "north": north,
        "south": south,
        "north_village": VillageFactory(
            service_center=north, lat=Decimal("30.410000"), lng=Decimal("119.610000")
        ),
        "south_village": VillageFactory(
            service_center=south, lat=Decimal("30.010000"), lng=Decimal("119.590000")
        ),
    }


@pytest.fixture
def morning(monkeypatch, settings):
    """Route at 09:00 local time, before the daily cut-off."""
    settings.ROUTING_CUTOFF_HOUR = 16
    now = timezone.localtime().replace(hour=9, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(routing.timezone, "now", lambda: now)
    return now.date()


def test_one_shipment_per_farmer_with_legs_and_dates(county, morning):
    buyer = BuyerFactory(village=county["south_village"])
    near = FarmerFactory(village=county["south_village"])
    far = FarmerFactory(village=county["north_village"])
    a = create_listing(near, unit="kg", quantity_available=Decimal("50"))
    b = create_listing(near, unit="jin")
    c = create_listing(
        far,
        category="eggs",
        unit="dozen",
        unit_weight_kg=Decimal("0.700"),
        needs_refrigeration=True,
    )
    order = place_order(buyer, (a, 3), (b, 4), (c, 2))

    order = order_route(order_id=order.pk)
    assert order.status == OrderStatus.CONFIRMED
    local, remote = Shipment.objects.filter(order=order).order_by("farmer_id")
    local, remote = (local, remote) if local.farmer_id == near.pk else (remote, local)

    assert (local.weight_kg, local.needs_refrigeration) == (Decimal("5.000"), False)  # 3 kg + 4 jin
    assert (remote.weight_kg, remote.needs_refrigeration) == (Decimal("1.400"), True)
    tomorrow = morning + timedelta(days=1)
    assert (local.pickup_date, local.delivery_date) == (tomorrow, tomorrow)
    # A day of transfer, then to the buyer's door the day after: that day's routes are
    # planned the evening before, from the goods at the center then.
    assert (remote.pickup_date, remote.delivery_date) == (tomorrow, tomorrow + timedelta(days=2))
    assert [leg.kind for leg in local.legs.all()] == [LegKind.PICKUP, LegKind.DELIVERY]
    assert [(leg.kind, leg.from_center_id, leg.to_center_id) for leg in remote.legs.all()] == [
        (LegKind.PICKUP, None, county["north"].pk),
        (LegKind.TRANSFER, county["north"].pk, county["south"].pk),
        (LegKind.DELIVERY, county["south"].pk, None),
    ]
    assert (remote.origin_center_id, remote.destination_center_id) == (
        county["north"].pk,
        county["south"].pk,
    )
    assert remote.events.get().status == ShipmentStatus.PENDING
    event = order.events.last()
    assert (event.from_status, event.to_status) == ("placed", "confirmed")


def test_pickup_orders_end_with_a_handover_at_the_center(county, morning):
    buyer = BuyerFactory(village=county["south_village"])
    listing = create_listing(FarmerFactory(village=county["south_village"]))
    order = order_route(order_id=place_order(buyer, (listing, 1), delivery_method="pickup").pk)
    shipment = order.shipments.get()
    assert [leg.kind for leg in shipment.legs.all()] == [LegKind.PICKUP, LegKind.HANDOVER]
    assert (shipment.delivery_lat, shipment.delivery_lng) == (
        county["south"].lat,
        county["south"].lng,
    )


def test_the_pickup_is_at_the_farm_though_its_listing_shows_a_grid_point(county, morning):
    """Buyers see a listing at its farm's place rounded to ~1 km; the vehicle goes to the
    farm itself: the farmer's exact place, else their village's point."""
    buyer = BuyerFactory(village=county["south_village"])
    on_farm = FarmerFactory(
        village=county["south_village"], lat=Decimal("30.014400"), lng=Decimal("119.586100")
    )
    village = VillageFactory(
        service_center=county["south"], lat=Decimal("30.021700"), lng=Decimal("119.603300")
    )
    in_village = FarmerFactory(village=village)
    a, b = create_listing(on_farm), create_listing(in_village)
    assert (a.lat, a.lng, b.lat, b.lng) == (
        Decimal("30.01"),
        Decimal("119.59"),
        Decimal("30.02"),
        Decimal("119.60"),
    )
    order = order_route(order_id=place_order(buyer, (a, 1), (b, 1)).pk)
    pickups = {s.farmer_id: (s.pickup_lat, s.pickup_lng) for s in order.shipments.all()}
    assert pickups == {
        on_farm.pk: (Decimal("30.014400"), Decimal("119.586100")),
        in_village.pk: (Decimal("30.021700"), Decimal("119.603300")),
    }


def test_after_the_cut_off_pickup_moves_a_day(county, monkeypatch, settings):
    settings.ROUTING_CUTOFF_HOUR = 16
    late = timezone.localtime().replace(hour=17, minute=30)
    monkeypatch.setattr(routing.timezone, "now", lambda: late)
    listing = create_listing(FarmerFactory(village=county["south_village"]))
    order = order_route(
        order_id=place_order(BuyerFactory(village=county["south_village"]), (listing, 1)).pk
    )
    assert order.shipments.get().pickup_date == late.date() + timedelta(days=2)


def test_the_cut_off_is_judged_when_the_order_was_placed_not_when_it_is_routed(
    county, monkeypatch, settings
):
    settings.ROUTING_CUTOFF_HOUR = 16
    clock = timezone.localtime().replace(hour=15, minute=59, second=50, microsecond=0)
    monkeypatch.setattr(routing.timezone, "now", lambda: clock)
    listing = create_listing(FarmerFactory(village=county["south_village"]))
    buyer = BuyerFactory(village=county["south_village"])
    before_cut_off = place_order(buyer, (listing, 1))

    clock += timedelta(seconds=30)  # 16:00:20: routed after the cut-off
    after_cut_off = place_order(buyer, (listing, 1))
    routed = {
        o.pk: o for o in (order_route(order_id=x.pk) for x in (before_cut_off, after_cut_off))
    }

    today = clock.date()
    assert routed[before_cut_off.pk].shipments.get().pickup_date == today + timedelta(days=1)
    assert routed[after_cut_off.pk].shipments.get().pickup_date == today + timedelta(days=2)


def test_a_prepaid_order_paid_after_the_cut_off_is_picked_up_a_day_later(
    county, monkeypatch, settings
):
    """Placed in the morning, paid only at 17:00: the cut-off is judged when it was paid."""
    settings.ROUTING_CUTOFF_HOUR = 16
    clock = timezone.localtime().replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(routing.timezone, "now", lambda: clock)
    listing = create_listing(FarmerFactory(village=county["south_village"]))
    buyer = BuyerFactory(village=county["south_village"])
    paid_in_time = place_order(buyer, (listing, 1), payment_method="prepaid")
    paid_late = place_order(buyer, (listing, 1), payment_method="prepaid")
    provider_notice(paid_in_time, paid_in_time.total, event_id="evt_in_time")

    clock = clock.replace(hour=17)
    provider_notice(paid_late, paid_late.total, event_id="evt_late")
    routed = [order_route(order_id=x.pk) for x in (paid_in_time, paid_late)]

    today = clock.date()
    assert [x.shipments.get().pickup_date for x in routed] == [
        today + timedelta(days=1),
        today + timedelta(days=2),
    ]


def test_an_order_routed_days_late_gets_no_day_already_past(county, monkeypatch, settings):
    settings.ROUTING_CUTOFF_HOUR = 16
    clock = timezone.localtime().replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(routing.timezone, "now", lambda: clock)
    listing = create_listing(FarmerFactory(village=county["south_village"]))
    order = place_order(BuyerFactory(village=county["south_village"]), (listing, 1))
    placed_on = clock.date()

    clock += timedelta(days=3)  # its message lost, the sweeper down: routed three days on
    order = order_route(order_id=order.pk)

    assert order.shipments.get().pickup_date == placed_on + timedelta(days=4)


def test_an_order_routed_after_tonights_plan_ran_gets_no_day_already_planned(
    county, monkeypatch, settings
):
    """Placed at 10:00, routed only at 21:30 (its message lost, the workers down for the
    evening): tomorrow's plan ran at 21:00 and would never take it, nor would any other
    (the nightly plan runs once a day, no day gone by is planned). Its pickup is the day
    after, whose plan is still ahead."""
    settings.ROUTING_CUTOFF_HOUR, settings.NIGHTLY_SCHEDULE_HOUR = 16, 21
    clock = timezone.localtime().replace(hour=10, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(routing.timezone, "now", lambda: clock)
    listing = create_listing(FarmerFactory(village=county["south_village"]))
    order = place_order(BuyerFactory(village=county["south_village"]), (listing, 1))

    clock = clock.replace(hour=21, minute=30)
    order = order_route(order_id=order.pk)

    assert order.shipments.get().pickup_date == clock.date() + timedelta(days=2)


def test_not_before_harvest_and_spoilage_is_flagged(county, morning):
    farmer = FarmerFactory(village=county["north_village"])
    later = create_listing(farmer, harvest_date=morning + timedelta(days=4), shelf_life_days=10)
    order = order_route(
        order_id=place_order(BuyerFactory(village=county["south_village"]), (later, 1)).pk
    )
    shipment = order.shipments.get()
    assert shipment.pickup_date == morning + timedelta(days=4)
    assert shipment.spoils_before_arrival is False

    wilting = create_listing(farmer, harvest_date=morning - timedelta(days=2), shelf_life_days=3)
    order = order_route(
        order_id=place_order(BuyerFactory(village=county["south_village"]), (wilting, 1)).pk
    )
    # harvested 2 days ago, keeps 3 days, arrives in 2: one day past its shelf life
    assert order.shipments.get().spoils_before_arrival is True


def test_center_capacity_rolls_to_the_next_day_with_room(county, morning):
    center = county["south"]
    center.daily_capacity_kg = Decimal("100.0")
    center.save()
    farmer = FarmerFactory(village=county["south_village"])
    listing = create_listing(farmer, unit="kg", quantity_available=Decimal("1000"))
    dates = []
    for _ in range(3):
        order = place_order(BuyerFactory(village=county["south_village"]), (listing, 60))
        dates.append(order_route(order_id=order.pk).shipments.get().pickup_date)
    tomorrow = morning + timedelta(days=1)
    assert dates == [tomorrow, tomorrow + timedelta(days=1), tomorrow + timedelta(days=2)]
    loads = dict(CenterDayLoad.objects.filter(center=center).values_list("date", "booked_kg"))
    assert all(kg <= Decimal("100") for kg in loads.values())
    # a load bigger than a whole day gets an empty day of its own
    huge = place_order(BuyerFactory(village=county["south_village"]), (listing, 150))
    assert order_route(order_id=huge.pk).shipments.get().pickup_date == tomorrow + timedelta(days=3)


def test_what_is_booked_is_what_a_cancel_gives_back_to_the_gram(county, morning):
    """Two farmers' 1.001 jin weigh 0.5005 kg each: each shipment stores 0.501 kg, and the
    day books those, not their unrounded sum (1.001), which a cancel took below zero."""
    village = county["south_village"]
    jins = [create_listing(FarmerFactory(village=village), unit="jin") for _ in range(2)]
    buyer = BuyerFactory(village=village)
    order = order_route(order_id=place_order(buyer, (jins[0], "1.001"), (jins[1], "1.001")).pk)
    loads = CenterDayLoad.objects.filter(center=county["south"])
    assert sorted(order.shipments.values_list("weight_kg", flat=True)) == [Decimal("0.501")] * 2
    assert list(loads.values_list("booked_kg", flat=True)) == [Decimal("1.002")]

    orders.order_cancel(order_id=order.pk, actor=buyer)

    assert list(loads.values_list("booked_kg", flat=True)) == [Decimal("0.000")]


def test_routing_three_times_makes_one_set_of_shipments(county, morning):
    listing = create_listing(FarmerFactory(village=county["north_village"]))
    order = place_order(BuyerFactory(village=county["south_village"]), (listing, 2))
    for _ in range(3):
        order_route(order_id=order.pk)
    assert Shipment.objects.filter(order=order).count() == 1
    assert order.events.filter(to_status=OrderStatus.CONFIRMED).count() == 1
    assert CenterDayLoad.objects.get(center=county["north"]).booked_kg == Decimal("1.000")


def test_an_order_is_marked_routed_in_the_transaction_that_writes_its_shipments(
    county, morning, monkeypatch
):
    """Seen from inside the routing's transaction, before it commits, the order is routed
    and has its shipment; when a later step of that transaction fails, it has neither: no
    moment shows shipments without the mark, or the mark without shipments."""
    order = place_order(
        BuyerFactory(village=county["south_village"]),
        create_listing(FarmerFactory(village=county["north_village"])),
    )
    seen = {}

    def store_fails(messages):  # the last write of a routing: its notifications
        seen["routed_at"] = Order.objects.values_list("routed_at", flat=True).get(pk=order.pk)
        seen["shipments"] = Shipment.objects.filter(order=order).count()
        raise RuntimeError("notifications table unavailable")

    monkeypatch.setattr(routing.notifications, "store", store_fails)
    with pytest.raises(RuntimeError):
        order_route(order_id=order.pk)

    assert seen == {"routed_at": routing.timezone.now(), "shipments": 1}
    order.refresh_from_db()
    assert (order.status, order.routed_at) == (OrderStatus.PLACED, None)
    assert not Shipment.objects.exists()


def test_unpaid_and_cancelled_orders_are_not_routed(county, morning):
    listing = create_listing(FarmerFactory(village=county["south_village"]))
    buyer = BuyerFactory(village=county["south_village"])
    prepaid = place_order(buyer, (listing, 1), payment_method="prepaid")
    cancelled = place_order(buyer, (listing, 1))
    orders.order_cancel(order_id=cancelled.pk, actor=buyer)
    assert order_route(order_id=prepaid.pk).status == OrderStatus.AWAITING_PAYMENT
    assert order_route(order_id=cancelled.pk).status == OrderStatus.CANCELLED
    assert not Shipment.objects.exists()


def test_transfer_days_grow_with_distance():
    a = ServiceCenterFactory(
        lat=Decimal("30.0"), lng=Decimal("119.0"), detour_factor=Decimal("1.00")
    )
    near = ServiceCenterFactory(
        lat=Decimal("30.5"), lng=Decimal("119.0"), detour_factor=Decimal("1.00")
    )
    far = ServiceCenterFactory(
        lat=Decimal("32.0"), lng=Decimal("119.0"), detour_factor=Decimal("1.00")
    )
    assert routing.transfer_days(a, a) == 0
    assert routing.transfer_days(a, near) == 1  # 55.6 km
    assert routing.transfer_days(a, far) == 2  # 222 km at 120 km a day


def test_capacity_locks_are_taken_per_center_in_id_order_before_any_booking(county, morning):
    buyer = BuyerFactory(village=county["south_village"])
    far = create_listing(FarmerFactory(village=county["north_village"]))
    near = create_listing(FarmerFactory(village=county["south_village"]))
    order = place_order(buyer, (far, 1), (near, 1))
    with CaptureQueriesContext(connection) as queries:
        order_route(order_id=order.pk)
    sql = [q["sql"] for q in queries.captured_queries]
    locks = [i for i, s in enumerate(sql) if "pg_advisory_xact_lock(" in s]  # not _shared
    first_booking = next(i for i, s in enumerate(sql) if "logistics_centerdayload" in s)
    assert len(locks) == 2
    assert max(locks) < first_booking
    locked = [sql[i].split(",")[-1].strip(" )") for i in locks]
    assert locked == [str(pk) for pk in sorted([county["north"].pk, county["south"].pk])]


def test_the_harvest_dates_are_read_holding_their_listings_harvest_locks(county, morning):
    """Shared, in one statement for the batch, before the lines (and their listings'
    harvest dates) are read: a harvest moved later waits for the pickups booked from it."""
    buyer = BuyerFactory(village=county["south_village"])
    far = create_listing(FarmerFactory(village=county["north_village"]))
    near = create_listing(FarmerFactory(village=county["south_village"]))
    order = place_order(buyer, (far, 1), (near, 1))
    with CaptureQueriesContext(connection) as queries:
        order_route(order_id=order.pk)
    sql = [q["sql"] for q in queries.captured_queries]
    shared = [i for i, s in enumerate(sql) if "pg_advisory_xact_lock_shared" in s]
    lines_read = next(i for i, s in enumerate(sql) if '"listings_listing"."harvest_date"' in s)
    assert len(shared) == 1
    assert shared[0] < lines_read
    with connection.cursor() as cursor:  # still held: the test's transaction goes on
        cursor.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            " AND mode = 'ShareLock' AND pid = pg_backend_pid() ORDER BY objid",
            [HARVEST_LOCK_SPACE],
        )
        assert [row[0] for row in cursor.fetchall()] == sorted([far.pk, near.pk])


# ------------------------------------------------------------------ batches (the task's way)
def test_a_batch_routes_the_given_order_and_the_oldest_waiting_ones(county, morning):
    listing = create_listing(FarmerFactory(village=county["north_village"]))
    buyer = BuyerFactory(village=county["south_village"])
    placed = [place_order(buyer, (listing, 1)) for _ in range(5)]
    prepaid = place_order(buyer, (listing, 1), payment_method="prepaid")

    routed = routing.orders_route_batch(order_id=placed[3].pk, size=3)

    assert routed == [placed[3].pk, placed[0].pk, placed[1].pk]
    status = dict(Order.objects.values_list("pk", "status"))
    assert [status[x.pk] for x in placed] == [
        "confirmed",
        "confirmed",
        "placed",
        "confirmed",
        "placed",
    ]
    assert status[prepaid.pk] == OrderStatus.AWAITING_PAYMENT
    assert Shipment.objects.filter(order_id__in=routed).count() == 3
    assert not Shipment.objects.exclude(order_id__in=routed).exists()
    for order_id in routed:
        (event,) = OrderEvent.objects.filter(order_id=order_id, to_status="confirmed")
        assert event.from_status == OrderStatus.PLACED
        assert event.reason.startswith("routed: pickup from ")


def test_a_batch_books_capacity_as_one_order_after_another(county, morning):
    """The same days as routing them one by one: each order fills what the ones before it
    left; one row per (center, day), never above capacity."""
    county["north"].daily_capacity_kg = Decimal("100.0")
    county["north"].save()
    listing = create_listing(
        FarmerFactory(village=county["north_village"]),
        unit="kg",
        quantity_available=Decimal("1000"),
    )
    placed = [
        place_order(BuyerFactory(village=county["north_village"]), (listing, kg))
        for kg in (60, 30, 60, 150, 10)
    ]

    routing.orders_route_batch(order_id=placed[0].pk, size=10)

    tomorrow = morning + timedelta(days=1)
    pickups = [Shipment.objects.get(order=x).pickup_date for x in placed]
    day = [tomorrow + timedelta(days=n) for n in range(3)]
    # 60 + 30 fit the first day, 60 the second, 150 (more than a day) takes an empty third,
    # and 10 still fits the first day
    assert pickups == [day[0], day[0], day[1], day[2], day[0]]
    loads = dict(
        CenterDayLoad.objects.filter(center=county["north"]).values_list("date", "booked_kg")
    )
    assert loads == {
        day[0]: Decimal("100.000"),
        day[1]: Decimal("60.000"),
        day[2]: Decimal("150.000"),
    }


def test_an_order_without_room_stays_placed_and_the_rest_of_the_batch_goes_on(
    county, morning, monkeypatch
):
    monkeypatch.setattr(routing, "MAX_DAYS_AHEAD", 2)
    county["north"].daily_capacity_kg = Decimal("100.0")
    county["north"].save()
    listing = create_listing(
        FarmerFactory(village=county["north_village"]),
        unit="kg",
        quantity_available=Decimal("1000"),
    )
    buyer = BuyerFactory(village=county["north_village"])
    first, second, third = (place_order(buyer, (listing, kg)) for kg in (90, 90, 90))

    assert routing.orders_route_batch(order_id=first.pk, size=10) == [first.pk, second.pk]

    third.refresh_from_db()
    assert third.status == OrderStatus.PLACED
    assert not Shipment.objects.filter(order=third).exists()
    # An order with shipments has `routed_at` (staff's list reads "not routed yet" from it,
    # orders.selectors); the one without room has neither.
    now = routing.timezone.now()
    assert dict(Order.objects.values_list("pk", "routed_at")) == {
        first.pk: now,
        second.pk: now,
        third.pk: None,
    }
    assert sorted(
        CenterDayLoad.objects.filter(center=county["north"]).values_list("booked_kg", flat=True)
    ) == [Decimal("90.000"), Decimal("90.000")]


def test_a_batch_costs_the_same_statements_for_two_orders_or_twenty(county, morning):
    listings = [
        create_listing(FarmerFactory(village=county[v]), quantity_available=Decimal("1000"))
        for v in ("north_village", "south_village", "north_village")
    ]

    def route_batch(count: int) -> int:
        placed = [
            place_order(BuyerFactory(village=county["south_village"]), *[(x, 1) for x in listings])
            for _ in range(count)
        ]
        with CaptureQueriesContext(connection) as queries:
            assert len(routing.orders_route_batch(order_id=placed[0].pk, size=count)) == count
        return len(queries)

    assert route_batch(2) == route_batch(20)


def test_a_transfer_without_room_at_the_destination_gives_its_pickup_day_back(
    county, morning, monkeypatch
):
    monkeypatch.setattr(routing, "MAX_DAYS_AHEAD", 2)
    tomorrow = morning + timedelta(days=1)
    full = {tomorrow + timedelta(days=n): Decimal("100.000") for n in (2, 3)}
    for day, kg in full.items():
        CenterDayLoad.objects.create(center=county["south"], date=day, booked_kg=kg)
    county["south"].daily_capacity_kg = Decimal("100.0")
    county["south"].save()
    far = create_listing(
        FarmerFactory(village=county["north_village"]),
        unit="kg",
        quantity_available=Decimal("1000"),
    )
    near = create_listing(FarmerFactory(village=county["south_village"]), unit="kg")
    buyer = BuyerFactory(village=county["south_village"])
    stuck = place_order(buyer, (far, 90))  # north pickup tomorrow; south full on both days due
    local = place_order(buyer, (near, 5))  # south, tomorrow: still room

    assert routing.orders_route_batch(order_id=stuck.pk, size=10) == [local.pk]

    stuck.refresh_from_db()
    assert stuck.status == OrderStatus.PLACED
    assert not CenterDayLoad.objects.filter(center=county["north"]).exclude(booked_kg=0).exists()
    south = dict(
        CenterDayLoad.objects.filter(center=county["south"]).values_list("date", "booked_kg")
    )
    assert south == {tomorrow: Decimal("5.000"), **full}


def test_a_batch_without_an_order_takes_the_oldest_waiting_ones(county, morning):
    listing = create_listing(FarmerFactory(village=county["north_village"]))
    buyer = BuyerFactory(village=county["south_village"])
    placed = [place_order(buyer, (listing, 1)) for _ in range(3)]

    assert routing.orders_route_batch(order_id=None, size=2) == [placed[0].pk, placed[1].pk]
    assert Order.objects.get(pk=placed[2].pk).status == OrderStatus.PLACED
