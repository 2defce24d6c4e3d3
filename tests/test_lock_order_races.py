"""Operations of different apps that touch the same rows, run at once on real connections:
each pair must queue (take shared rows in one global order) or see each other's outcome,
never deadlock (a 500) nor leave a state neither would have left alone."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError, transaction
from django.utils import timezone

import listings.services
import logistics.services.routing
import logistics.services.shipments
from listings.models import Listing
from listings.services import listing_update
from logistics.models import (
    CenterDayLoad,
    Route,
    RouteStatus,
    ScheduleRun,
    Shipment,
    Stop,
    Vehicle,
)
from logistics.services import schedule, shipments
from logistics.services.fleet import vehicle_update
from logistics.services.routing import order_route
from logistics.services.shipments import Completion
from marketplace.accounts.models import User
from marketplace.accounts.services import user_update_profile
from orders import services as orders
from orders.models import Order, OrderStatus
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
from tests.orders.test_payments import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


def _pause_after(calls: int, then):
    """A wrapper for `real` that, on the main thread's `calls`-th call, runs `then()` after
    the real call returned (once): the point where the other operation is let in."""
    main, seen = threading.main_thread(), []

    def wrap(real):
        def wrapped(*args, **kwargs):
            result = real(*args, **kwargs)
            if threading.current_thread() is main:
                seen.append(1)
                if len(seen) == calls:
                    then()
            return result

        return wrapped

    return wrap


def two_routed_orders(village) -> tuple[Order, Order]:
    """Two buyers' orders of one kg each from two farmers of `village`, routed."""
    return tuple(
        order_route(
            order_id=place_order(
                BuyerFactory(village=village),
                create_listing(FarmerFactory(village=village), unit="kg"),
            ).pk
        )
        for _ in range(2)
    )


def deadlocks_of(operation) -> list[OperationalError]:
    """Run `operation` in a transaction of its own; the database errors (a deadlock) it
    ended with, [] when it committed."""
    try:
        with transaction.atomic():
            operation()
    except OperationalError as error:
        return [error]
    return []


def _plan_beside(run, started):
    """Plan the run's day while the thread it lets in (`started`, one (thread, box)) runs:
    the plan's own error (a deadlock) and the thread's answer box, once it is done."""
    try:
        schedule.schedule_run_execute(run_id=run.pk)
        mine = []
    except OperationalError as error:
        mine = [error]
    [(other, answer)] = started
    other.join(timeout=30)
    return mine, answer


def test_a_farmer_renamed_while_two_of_their_listings_are_ordered_never_deadlocks(monkeypatch):
    """A placement locks the listings in key order; the refresh after a farmer's move or
    new name wrote them newest first (the model's ordering): each held one and waited for
    the other, a deadlock and a 500 for one of them."""
    farmer = FarmerFactory()
    older, newer = create_listing(farmer), create_listing(farmer)
    buyer = BuyerFactory()
    started = []

    def let_the_order_in():  # the refresh wrote one listing and goes on to the next
        started.append(in_thread(lambda: place_order(buyer, older, newer)))
        wait_for_lock_waiters(1, timeout=3)  # the placement waits for a listing

    monkeypatch.setattr(
        listings.services,
        "listing_place",
        _pause_after(2, let_the_order_in)(listings.services.listing_place),
    )
    mine = deadlocks_of(
        lambda: user_update_profile(user=User.objects.get(pk=farmer.pk), name="王新名")
    )
    [(placing, answer)] = started
    placing.join(timeout=30)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert Listing.objects.get(pk=older.pk).quantity_available == Decimal("99.000")


def test_a_title_edited_while_the_farmer_moves_is_found_by_its_new_title(api):
    """The refresh read the listings without a lock, then wrote each one's search text
    from what it read: a new title committed in between was overwritten by the old one's."""
    farmer = FarmerFactory()
    listing = create_listing(farmer, title="西红柿")
    with transaction.atomic():
        listing_update(listing=listing, title="黄瓜")  # holds the listing until it commits
        moving, answer = in_thread(
            lambda: user_update_profile(user=User.objects.get(pk=farmer.pk), name="王新名")
        )
        assert wait_for_lock_waiters(1) == 1  # the refresh waits for the listing
    moving.join(timeout=30)
    assert [type(a).__name__ for a in answer] == ["User"], answer

    def found(q):
        return [x["id"] for x in api.get("/api/v1/listings/", {"q": q}).json()["results"]]

    assert found("黄瓜") == [listing.pk]
    assert found("西红柿") == []
    assert found("王新名") == [listing.pk]


def test_two_cancels_giving_back_the_same_days_in_opposite_orders_never_deadlock(monkeypatch):
    """A cancel gave back each shipment's booked (center, day) in the order of its
    shipments, one UPDATE each: order A books the early day then the late one, order B the
    late day then the early one; cancelled at once, each held the row the other needed
    next. Every writer of the day loads now takes its centers' capacity locks first."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    late_day = timezone.localdate() + timedelta(days=5)

    def farmer_listing(late):
        harvest = late_day if late else timezone.localdate() - timedelta(days=1)
        return create_listing(FarmerFactory(village=village), unit="kg", harvest_date=harvest)

    a_early, a_late = farmer_listing(False), farmer_listing(True)
    b_late, b_early = farmer_listing(True), farmer_listing(False)
    a = order_route(order_id=place_order(BuyerFactory(village=village), a_early, a_late).pk)
    b = order_route(order_id=place_order(BuyerFactory(village=village), b_late, b_early).pk)
    assert (a.status, b.status) == (OrderStatus.CONFIRMED, OrderStatus.CONFIRMED)
    a_days = Shipment.objects.filter(order=a).order_by("pk").values_list("pickup_date", flat=True)
    b_days = Shipment.objects.filter(order=b).order_by("pk").values_list("pickup_date", flat=True)
    early_day = a_days[0]  # tomorrow, or the day after past the cut-off (tests/conftest.py)
    assert early_day < late_day
    assert (list(a_days), list(b_days)) == ([early_day, late_day], [late_day, early_day])
    assert CenterDayLoad.objects.filter(center=center).count() == 2
    started = []

    def let_the_other_cancel_in():  # B has given back its shipments' days
        started.append(
            in_thread(lambda: orders.order_cancel(order_id=a.pk, actor=a.buyer, reason="a"))
        )
        wait_for_lock_waiters(1, timeout=3)

    monkeypatch.setattr(
        logistics.services.shipments,
        "_track_all",
        _pause_after(1, let_the_other_cancel_in)(logistics.services.shipments._track_all),
    )
    mine = deadlocks_of(lambda: orders.order_cancel(order_id=b.pk, actor=b.buyer, reason="b"))
    [(cancelling, answer)] = started
    cancelling.join(timeout=30)

    assert mine == [], mine
    assert [type(x).__name__ for x in answer] == ["Order"], answer
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.CANCELLED}
    assert set(CenterDayLoad.objects.values_list("booked_kg", flat=True)) == {Decimal("0.000")}


def test_a_cancel_while_the_routes_first_stop_is_done_leaves_the_route_completed():
    """A cancel took its goods' stop off a route it read as not yet on the road, without
    locking the route; the route's other stop done at that moment set it out and saw the
    cancelled stop still open: the route stayed on the road for good. The cancel now locks
    the route first, and the stop's completion waits for it."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    staff = StaffFactory(service_center=center)
    a, b = two_routed_orders(village)
    route = Route.objects.create(service_center=center, date=timezone.localdate())
    stops = {}
    for sequence, order in enumerate((b, a), start=1):
        shipment = Shipment.objects.get(order=order)
        stops[order.pk] = Stop.objects.create(
            route=route,
            sequence=sequence,
            kind="pickup",
            lat=shipment.pickup_lat,
            lng=shipment.pickup_lng,
        )
        stops[order.pk].shipments.add(shipment)
    done = Completion(outcome="done", weight_kg=Decimal("0.5"))

    with transaction.atomic():
        orders.order_cancel(order_id=a.pk, actor=a.buyer, reason="changed mind")
        completing, answer = in_thread(
            lambda: shipments.stop_complete(stop_id=stops[b.pk].pk, staff=staff, data=done)
        )
        completing.join(timeout=5)  # it waits for this cancel's commit
    completing.join(timeout=30)

    assert [type(x).__name__ for x in answer] == ["Stop"], answer
    assert not Stop.objects.filter(pk=stops[a.pk].pk).exists()
    assert list(route.stops.values_list("status", flat=True)) == ["done"]
    route.refresh_from_db()
    assert route.status == RouteStatus.COMPLETED


def test_a_line_rejected_while_an_order_across_the_same_centers_is_routed_never_deadlocks(
    monkeypatch,
):
    """A rejected line that leaves the farmer other lines makes their shipment lighter:
    its days were given back one center at a time, the origin's (B) before the
    destination's (A), against the id order a routing takes them in (A, then B)."""
    buyers_center = ServiceCenterFactory()  # A: the lower id
    farmers_center = ServiceCenterFactory()  # B
    assert buyers_center.pk < farmers_center.pk
    buyers_village = VillageFactory(service_center=buyers_center)
    farmer = FarmerFactory(village=VillageFactory(service_center=farmers_center))
    kept, rejected = create_listing(farmer, unit="kg"), create_listing(farmer, unit="kg")
    x = order_route(order_id=place_order(BuyerFactory(village=buyers_village), kept, rejected).pk)
    assert x.status == OrderStatus.CONFIRMED
    shipment = Shipment.objects.get(order=x)
    assert (shipment.origin_center_id, shipment.destination_center_id) == (
        farmers_center.pk,
        buyers_center.pk,
    )
    y = place_order(BuyerFactory(village=buyers_village), create_listing(farmer, unit="kg"))
    line = x.lines.get(listing=rejected)
    started = []

    def let_the_routing_in():  # the reject holds its first capacity lock
        started.append(in_thread(lambda: order_route(order_id=y.pk)))
        wait_for_lock_waiters(1, timeout=3)

    monkeypatch.setattr(
        logistics.services.routing,
        "lock_centers_capacity",
        _pause_after(1, let_the_routing_in)(logistics.services.routing.lock_centers_capacity),
    )
    mine = deadlocks_of(
        lambda: orders.order_line_reject(order_id=x.pk, line_id=line.pk, farmer=farmer, reason="雹")
    )
    [(routing, answer)] = started
    routing.join(timeout=30)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert answer[0].status == OrderStatus.CONFIRMED


def test_a_cancel_while_the_route_sets_out_and_tells_its_buyers_never_deadlocks(monkeypatch):
    """Route R: Y's pickup, then X's pickup and delivery. Y's pickup done sets R out (R
    locked) and tells X's buyer "on the way": a notification whose foreign key to X is
    checked at commit. X cancelled meanwhile holds X and waits for R. With X locked FOR
    UPDATE the check waited for the cancel: a deadlock; FOR NO KEY UPDATE lets it through."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    staff = StaffFactory(service_center=center)
    x, y = two_routed_orders(village)
    assert (x.status, y.status) == (OrderStatus.CONFIRMED, OrderStatus.CONFIRMED)
    route = Route.objects.create(service_center=center, date=timezone.localdate())
    sx, sy = Shipment.objects.get(order=x), Shipment.objects.get(order=y)
    stops = []
    for sequence, (shipment, kind) in enumerate(
        ((sy, "pickup"), (sx, "pickup"), (sx, "delivery")), start=1
    ):
        stop = Stop.objects.create(
            route=route,
            sequence=sequence,
            kind=kind,
            lat=shipment.pickup_lat,
            lng=shipment.pickup_lng,
        )
        stop.shipments.add(shipment)
        stops.append(stop)
    started = []

    def let_the_cancel_in():  # the route is set out (locked), X's buyer told
        started.append(
            in_thread(lambda: orders.order_cancel(order_id=x.pk, actor=x.buyer, reason="不要了"))
        )
        wait_for_lock_waiters(1, timeout=3)  # the cancel waits for the route

    monkeypatch.setattr(
        logistics.services.shipments,
        "notify_out_for_delivery",
        _pause_after(1, let_the_cancel_in)(logistics.services.shipments.notify_out_for_delivery),
    )
    done = Completion(outcome="done", weight_kg=Decimal("0.5"))
    mine = deadlocks_of(
        lambda: shipments.stop_complete(stop_id=stops[0].pk, staff=staff, data=done)
    )
    [(cancelling, answer)] = started
    cancelling.join(timeout=30)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert Order.objects.get(pk=x.pk).status == OrderStatus.CANCELLED


def test_a_day_planned_while_an_order_is_routed_through_its_center_never_deadlocks(monkeypatch):
    """A day's plan stores its routes holding its run; a routing of a new order takes its
    centers' capacity locks, then writes shipments whose foreign keys to those centers are
    checked (FOR KEY SHARE of the center's row). The plan read its run FOR UPDATE with the
    run's center joined, so it held the center's row too, and the routing waited for it
    while holding the capacity lock that the plan's goods rolled to the next day then
    waited for: a deadlock, and the plan (the nightly one is not asked for again) or the
    routing failed."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    left_out = order_route(
        order_id=place_order(
            BuyerFactory(village=village), create_listing(FarmerFactory(village=village), unit="kg")
        ).pk
    )
    day = Shipment.objects.get(order=left_out).pickup_date
    run = ScheduleRun.objects.create(service_center=center, date=day)  # no vehicle: rolled over
    waiting = place_order(
        BuyerFactory(village=village), create_listing(FarmerFactory(village=village), unit="kg")
    )
    started = []

    def let_the_routing_in():  # the plan stores its day, holding its run
        started.append(in_thread(lambda: order_route(order_id=waiting.pk)))
        wait_for_lock_waiters(1, timeout=3)  # the routing waits for the center's row

    monkeypatch.setattr(
        schedule, "_mark_scheduled", _pause_after(1, let_the_routing_in)(schedule._mark_scheduled)
    )
    mine, answer = _plan_beside(run, started)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert answer[0].status == OrderStatus.CONFIRMED
    run.refresh_from_db()
    assert (run.status, run.summary["unassigned"][0]["reason"]) == ("done", "no_vehicle")


def test_a_day_planned_while_its_van_is_changed_never_deadlocks(monkeypatch):
    """A van made smaller has the other days it is planned on planned again: a new run,
    whose foreign key to the center is checked, while the van's row is held. The day being
    stored held the center's row FOR UPDATE and went on to lock its vans: a deadlock."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    van = Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal("500"))
    order = order_route(
        order_id=place_order(
            BuyerFactory(village=village), create_listing(FarmerFactory(village=village), unit="kg")
        ).pk
    )
    day = Shipment.objects.get(order=order).pickup_date
    Route.objects.create(service_center=center, date=day + timedelta(days=3), vehicle=van)
    run = ScheduleRun.objects.create(service_center=center, date=day)
    started = []

    def let_the_change_in():  # the plan stores its day, before it locks the vans
        smaller = {"capacity_kg": Decimal("400")}
        started.append(in_thread(lambda: vehicle_update(vehicle_id=van.pk, changes=smaller)))
        wait_for_lock_waiters(1, timeout=3)  # the change waits for the center's row

    # the second call: the first gathers the day, before the run is stored
    monkeypatch.setattr(
        schedule, "_day_vehicles", _pause_after(2, let_the_change_in)(schedule._day_vehicles)
    )
    mine, answer = _plan_beside(run, started)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Vehicle"], answer
    assert ScheduleRun.objects.get(pk=run.pk).status == "done"
    assert ScheduleRun.objects.filter(date=day + timedelta(days=3)).count() == 1  # planned again


def test_two_pickups_of_a_route_weighed_at_once_never_deadlock_and_both_weights_ride_on(
    monkeypatch,
):
    """Route R: X's pickup, Y's pickup, X's delivery, Y's delivery (1 kg each). X's pickup
    weighed holds R and the center's day; Y's, recorded then, holds its stop and waits for
    the day. X's loads follow its weight on R's open stops: waiting for Y's stop would be
    a deadlock, so it is left to Y's own completion, which carries both weights on."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    staff = StaffFactory(service_center=center)
    x, y = two_routed_orders(village)
    route = Route.objects.create(service_center=center, date=timezone.localdate())
    sx, sy = Shipment.objects.get(order=x), Shipment.objects.get(order=y)
    stops = []
    for sequence, (shipment, kind, load) in enumerate(
        ((sx, "pickup", 1), (sy, "pickup", 2), (sx, "delivery", 1), (sy, "delivery", 0)),
        start=1,
    ):
        stop = Stop.objects.create(
            route=route,
            sequence=sequence,
            kind=kind,
            lat=shipment.pickup_lat,
            lng=shipment.pickup_lng,
            load_kg=Decimal(load),
        )
        stop.shipments.add(shipment)
        stops.append(stop)
    started = []

    def let_y_in():  # R set out and held, the day's capacity too
        weighed = Completion(outcome="done", weight_kg=Decimal("0.8"))
        started.append(
            in_thread(
                lambda: shipments.stop_complete(stop_id=stops[1].pk, staff=staff, data=weighed)
            )
        )
        wait_for_lock_waiters(1, timeout=3)  # Y's completion waits, its stop locked

    monkeypatch.setattr(
        logistics.services.shipments,
        "_route_follows",
        _pause_after(1, let_y_in)(logistics.services.shipments._route_follows),
    )
    weighed = Completion(outcome="done", weight_kg=Decimal("1.5"))
    mine = deadlocks_of(
        lambda: shipments.stop_complete(stop_id=stops[0].pk, staff=staff, data=weighed)
    )
    [(completing, answer)] = started
    completing.join(timeout=30)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Stop"], answer
    loads = list(route.stops.order_by("sequence").values_list("status", "load_kg"))
    assert loads == [
        ("done", Decimal("1.500")),
        ("done", Decimal("2.300")),
        ("pending", Decimal("0.800")),
        ("pending", Decimal("0.000")),
    ]
