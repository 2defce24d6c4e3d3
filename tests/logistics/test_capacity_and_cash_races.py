"""Weighed capacity and cash on delivery under real concurrent transactions, each on its own
connection, released together: a pickup weighed heavier while new orders are routed on its
days and other goods there are cancelled; two delivery stops of one order done at once; one
stop done twice at once (a retry racing the first request). The first of them to take the
contended lock keeps its transaction open until the others queue behind it, so they do
meet there on every run, not only when the timing happens to fall that way."""

import threading
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

import logistics.services.routing
import logistics.services.shipments
from logistics.models import (
    CenterDayLoad,
    Route,
    RouteStatus,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
)
from logistics.services.routing import order_route
from orders.models import OrderStatus, PaymentStatus
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
from tests.logistics.test_cash_on_delivery import at_center, cash, deliver, order_of
from tests.logistics.test_shipments import complete, stop_for, stops_each
from tests.orders.test_payments import in_thread

pytestmark = pytest.mark.django_db(transaction=True)

KG = Decimal
DAY = timedelta(days=1)
CAPACITY = KG("35.0")  # each center's day: room for what is routed below, and 10 kg more


def at_once(*calls) -> list:
    """Each call on its own thread (and connection), released together by a barrier; their
    answers (or exceptions) in order."""
    start = threading.Barrier(len(calls))

    def released(call):
        start.wait(10)
        return call()

    started = [in_thread(lambda call=call: released(call)) for call in calls]
    for thread, _ in started:
        thread.join(30)
    return [box[0] if box else "still running" for _, box in started]


def hold_first_call(monkeypatch, module, name: str, *, others: int) -> None:
    """`module.name` wrapped: the first call, on whichever thread, returns once `others`
    other sessions wait for a lock (at most 2 s): the transaction that got there first stays
    open, holding what it took, while the others run into it."""
    real, first = getattr(module, name), threading.Lock()

    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        if first.acquire(blocking=False):
            wait_for_lock_waiters(others, timeout=2)
        return result

    monkeypatch.setattr(module, name, wrapped)


def loads() -> dict:
    """Every CenterDayLoad row, 0 included: (center, day) → kilograms."""
    rows = CenterDayLoad.objects.values_list("center_id", "date", "booked_kg")
    return {(center, day): kg for center, day, kg in rows}


def held_by_live_shipments() -> dict:
    """What the days should hold, from the shipments table alone: each shipment neither
    cancelled nor failed holds its booked weight (null: as ordered) at its origin on its
    pickup day and, across centers, at its destination on its delivery day."""
    live = Shipment.objects.exclude(
        status__in=(ShipmentStatus.CANCELLED, ShipmentStatus.FAILED)
    ).annotate(held=Coalesce("booked_kg", "weight_kg"))
    pickups = live.values_list("origin_center_id", "pickup_date").annotate(kg=Sum("held"))
    deliveries = (
        live.filter(~Q(destination_center_id=F("origin_center_id")))
        .values_list("destination_center_id", "delivery_date")
        .annotate(kg=Sum("held"))
    )
    held: dict = defaultdict(Decimal)
    for center, day, kg in [*pickups, *deliveries]:
        held[(center, day)] += kg
    return held


def ordered_by_live_shipments() -> dict:
    """As held_by_live_shipments, by the weight ordered: what routing booked."""
    ordered: dict = defaultdict(Decimal)
    for s in Shipment.objects.exclude(status__in=(ShipmentStatus.CANCELLED, ShipmentStatus.FAILED)):
        ordered[(s.origin_center_id, s.pickup_date)] += s.weight_kg
        if s.crosses_centers:
            ordered[(s.destination_center_id, s.delivery_date)] += s.weight_kg
    return ordered


@pytest.fixture
def county(client_for):
    """A farm at the north center selling 20 kg to a buyer at the south one (`ours`), and
    another farm 5 kg on the same days (`theirs`): each of those two days holds 25 of its
    35 kg. Two more orders of 10 kg from north to south wait to be routed (`waiting`)."""
    north = ServiceCenterFactory(
        lat=KG("30.400000"), lng=KG("119.600000"), daily_capacity_kg=CAPACITY
    )
    south = ServiceCenterFactory(
        lat=KG("30.000000"), lng=KG("119.600000"), daily_capacity_kg=CAPACITY
    )

    def placed(kg):
        farmer = FarmerFactory(village=VillageFactory(service_center=north))
        buyer = BuyerFactory(village=VillageFactory(service_center=south))
        return place_order(buyer, (create_listing(farmer, unit="kg"), kg))

    ours, theirs = (
        Shipment.objects.get(order=order_route(order_id=placed(kg).pk)) for kg in (20, 5)
    )
    assert (ours.pickup_date, ours.delivery_date) == (theirs.pickup_date, theirs.delivery_date)
    assert loads() == {
        (north.pk, ours.pickup_date): KG("25.000"),
        (south.pk, ours.delivery_date): KG("25.000"),
    }
    return {
        "north": north,
        "south": south,
        "ours": ours,
        "theirs": theirs,
        "waiting": [placed(10), placed(10)],
        "north_staff": client_for(StaffFactory(service_center=north)),
        "theirs_buyer": client_for(theirs.order.buyer),
    }


def test_a_pickup_weighed_heavier_while_orders_are_routed_and_cancelled_on_its_days(
    county, monkeypatch
):
    """Four writers of the same two day loads at once: the pickup of `ours` weighed 30 kg
    (10 more than booked), two routings of 10 kg each, the buyer of `theirs` cancelling.
    Each takes the capacity locks of both centers; none deadlocks or fails, every day holds
    exactly what its live shipments hold, and no routing booked past a day's capacity."""
    north, south, ours, theirs = (county[k] for k in ("north", "south", "ours", "theirs"))
    pickup_day = ours.pickup_date
    stop = stop_for(ours, north, "pickup")
    hold_first_call(monkeypatch, logistics.services.routing, "lock_centers_capacity", others=3)

    answers = at_once(
        lambda: complete(county["north_staff"], stop, outcome="done", weight_kg="30"),
        lambda: county["theirs_buyer"].post(f"/api/v1/orders/{theirs.order_id}/cancel/"),
        *(lambda order=order: order_route(order_id=order.pk) for order in county["waiting"]),
    )

    weighed, cancelled, *routed = answers
    assert (weighed.status_code, cancelled.status_code) == (200, 200), answers
    assert [getattr(order, "status", order) for order in routed] == [OrderStatus.CONFIRMED] * 2
    assert loads() == held_by_live_shipments()
    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert (ours.status, ours.picked_up_weight_kg, ours.booked_kg) == (
        ShipmentStatus.IN_TRANSFER,
        KG("30.000"),
        KG("30.000"),
    )
    assert (theirs.status, theirs.booked_kg) == (ShipmentStatus.CANCELLED, KG("0.000"))
    new = Shipment.objects.filter(order__in=county["waiting"])
    assert sorted(new.values_list("booked_kg", flat=True)) == [KG("10.000")] * 2
    # Each routing saw the others' work whole: ours' days held 20 to 35 kg, whichever of the
    # cancel and the weighing came first, so one 10 kg order at most fits beside it, not two.
    assert new.filter(pickup_date=pickup_day).count() <= 1
    assert set(new.values_list("pickup_date", flat=True)) <= {pickup_day, pickup_day + DAY}
    assert all(kg <= CAPACITY for kg in ordered_by_live_shipments().values())
    # Whatever the order they ran in: 30 + 10 + 10 kg at each center over its days.
    by_center: dict = defaultdict(Decimal)
    for (center, _), kg in loads().items():
        by_center[center] += kg
    assert by_center == {north.pk: KG("50.000"), south.pk: KG("50.000")}


def test_two_delivery_stops_of_one_order_done_at_once_collect_its_total_with_one_fee(
    monkeypatch, client_for
):
    """80.00 from one farm and 15.00 from another, 7.00 delivery for two farms: 102.00.
    Two staff complete the two stops at the same moment. Each stop's cash depends on what
    the other took (the fee owed so far less the fee collected), so the second waits for
    the first on the order's lock, and reads it delivered: 85.00 + 17.00 or 20.00 + 82.00,
    never each stop the first (5.00 twice)."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    county = {"center": center, "village": village, "buyer": BuyerFactory(village=village)}
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    assert order.total == Decimal("102.00")
    at_center(first, second)
    route = Route.objects.create(service_center=center, date=timezone.localdate())
    stops = stops_each(route, "delivery", [first, second])
    staff = [client_for(StaffFactory(service_center=center)) for _ in stops]
    hold_first_call(monkeypatch, logistics.services.shipments, "_cash_due", others=1)

    answers = at_once(
        *(
            lambda client=client, stop=stop: complete(
                client, stop, outcome="done", delivery_code=order.delivery_code
            )
            for client, stop in zip(staff, stops, strict=True)
        )
    )

    assert [answer.status_code for answer in answers] == [200, 200], answers
    assert cash(first, second) in (
        [Decimal("85.00"), Decimal("17.00")],
        [Decimal("82.00"), Decimal("20.00")],
    )
    order.refresh_from_db()
    assert (order.status, order.payment_status) == (OrderStatus.DELIVERED, PaymentStatus.COLLECTED)
    assert sum(cash(first, second)) == order.total == Decimal("102.00")
    delivered = TrackingEvent.objects.filter(status=ShipmentStatus.DELIVERED)
    assert sorted(delivered.values_list("shipment_id", flat=True)) == [first.pk, second.pk]
    route.refresh_from_db()
    assert route.status == RouteStatus.COMPLETED


def test_one_delivery_stop_done_twice_at_once_records_its_cash_once(monkeypatch, client_for):
    """The first farm's goods were delivered (85.00); the second farm's stop is sent twice
    at the same moment (the phone retried a request whose answer it had not yet got). The
    retry waits for the first and answers as it did: 17.00 recorded once, one event, the
    order delivered once, and the day loads as they were."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    county = {"center": center, "village": village, "buyer": BuyerFactory(village=village)}
    order, (first, second) = order_of(county, (1, "10.00", 8), (2, "3.00", 5))
    at_center(first, second)
    staff = StaffFactory(service_center=center)
    deliver(client_for(staff), county, first)
    stop = stop_for(second, center, "delivery")
    before = loads()
    hold_first_call(monkeypatch, logistics.services.shipments, "_cash_due", others=1)

    answers = at_once(  # one phone's request and its retry: the same staff, two connections
        *(
            lambda client=client: complete(
                client, stop, outcome="done", delivery_code=order.delivery_code
            )
            for client in (client_for(staff), client_for(staff))
        )
    )

    assert [answer.status_code for answer in answers] == [200, 200], answers
    assert [answer.json()["status"] for answer in answers] == ["done", "done"]
    assert cash(first, second) == [Decimal("85.00"), Decimal("17.00")]
    assert TrackingEvent.objects.filter(shipment=second, status="delivered").count() == 1
    order.refresh_from_db()
    assert (order.status, order.total) == (OrderStatus.DELIVERED, Decimal("102.00"))
    assert order.events.filter(to_status=OrderStatus.DELIVERED).count() == 1
    assert loads() == before == held_by_live_shipments()


def test_one_pickup_done_twice_at_once_weighs_its_days_once(county, monkeypatch):
    """The pickup of `ours` (20 kg booked) sent twice at once with two readings of the
    scale, 30 and 26 kg: the one that comes second waits for the first and finds the stop
    done, so its days hold the first's weight, once: 35 or 31 kg, not 41."""
    north, south, ours = county["north"], county["south"], county["ours"]
    stop = stop_for(ours, north, "pickup")
    hold_first_call(monkeypatch, logistics.services.shipments, "shipments_rebook", others=1)

    answers = at_once(
        *(
            lambda kg=kg: complete(county["north_staff"], stop, outcome="done", weight_kg=kg)
            for kg in ("30", "26")
        )
    )

    assert [answer.status_code for answer in answers] == [200, 200], answers
    ours.refresh_from_db()
    assert ours.picked_up_weight_kg in (KG("30.000"), KG("26.000"))
    assert ours.booked_kg == ours.picked_up_weight_kg
    day_holds = ours.picked_up_weight_kg + KG("5.000")
    assert loads() == {
        (north.pk, ours.pickup_date): day_holds,
        (south.pk, ours.delivery_date): day_holds,
    }
    assert loads() == held_by_live_shipments()
    picked_up = TrackingEvent.objects.filter(shipment=ours, status=ShipmentStatus.PICKED_UP)
    assert picked_up.count() == 1
