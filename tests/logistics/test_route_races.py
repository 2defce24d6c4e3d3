"""A route's stops recorded while its goods change, on real connections of their own: an
order on the route cancelled, or another of its pickups weighed. Whoever writes the route's
loads and numbers holds the route and leaves a stop being recorded at that moment (its row
locked) alone, since waiting for it would deadlock; that stop's own completion then brings
its route along once it holds the route. The interleavings are forced: one operation is
paused at a known point while the other runs into it."""

import threading
from decimal import Decimal

import pytest
from django.utils import timezone

import logistics.services.shipments
from logistics.models import Route, RouteStatus, Shipment, ShipmentStatus, Stop, StopStatus
from logistics.services import shipments
from logistics.services.shipments import Completion
from orders import services as orders
from orders.models import Order, OrderStatus
from tests.factories import ServiceCenterFactory, StaffFactory, VillageFactory
from tests.listings.test_photos import wait_for_lock_waiters
from tests.orders.test_payments import in_thread
from tests.test_lock_order_races import deadlocks_of, two_routed_orders

pytestmark = pytest.mark.django_db(transaction=True)

KG = Decimal


def _once_on_main_thread(module, name: str, monkeypatch, then) -> None:
    """`module.name` wrapped: its first call on the main thread runs `then()` once the real
    call returned, inside the main thread's transaction."""
    real, done = getattr(module, name), []

    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        if threading.current_thread() is threading.main_thread() and not done:
            done.append(1)
            then()
        return result

    monkeypatch.setattr(module, name, wrapped)


def lay_road(*layout: tuple[str, str, int]) -> dict:
    """A center's planned route of today, 1 kg goods each, its stops as `layout` says in
    visiting order (the shipment's order, `w` or `y`, the stop's kind, its planned load):
    W's goods are at the farm, Y's were picked up before and wait at the center, so Y's
    kilogram leaves the center on board."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    w, y = two_routed_orders(village)
    goods = {"w": Shipment.objects.get(order=w), "y": Shipment.objects.get(order=y)}
    Shipment.objects.filter(pk=goods["y"].pk).update(status=ShipmentStatus.AT_CENTER)
    route = Route.objects.create(service_center=center, date=timezone.localdate())
    stops = {}
    for sequence, (name, kind, load) in enumerate(layout, start=1):
        shipment = goods[name]
        at = "pickup" if kind == "pickup" else "delivery"
        stops[f"{name}_{kind}"] = Stop.objects.create(
            route=route,
            sequence=sequence,
            kind=kind,
            lat=getattr(shipment, f"{at}_lat"),
            lng=getattr(shipment, f"{at}_lng"),
            load_kg=KG(load),
        )
        stops[f"{name}_{kind}"].shipments.add(shipment)
    return {
        "route": route,
        "stops": stops,
        "w": w,
        "y": y,
        "staff": StaffFactory(service_center=center),
    }


@pytest.fixture
def road():
    """W's pickup, Y's delivery, W's delivery."""
    return lay_road(("w", "pickup", 2), ("y", "delivery", 1), ("w", "delivery", 0))


def y_delivered(road):
    y = Order.objects.get(pk=road["y"].pk)
    return lambda: shipments.stop_complete(
        stop_id=road["stops"]["y_delivery"].pk,
        staff=road["staff"],
        data=Completion(outcome="done", delivery_code=y.delivery_code),
    )


def w_cancelled(road):
    w = road["w"]
    return lambda: orders.order_cancel(order_id=w.pk, actor=w.buyer, reason="不要了")


def shown(route: Route) -> list[tuple]:
    return list(route.stops.order_by("sequence").values_list("pk", "sequence", "status", "load_kg"))


def test_a_stop_recorded_while_an_order_on_its_planned_route_is_cancelled_is_numbered_and_loaded(
    road, monkeypatch
):
    """Y's delivery is recorded (its stop locked) when W is cancelled: the cancel takes W's
    stops off the route, still planned, but leaves Y's stop alone, as it is being recorded.
    Y's stop kept number 2 and its load of 1 kg after it, W's kilogram that nobody picks
    up; once Y's completion holds the route it numbers and loads it."""
    started = []

    def let_the_cancel_through():  # Y's stop and goods locked, the route not yet
        cancelling = in_thread(w_cancelled(road))
        started.append(cancelling)
        cancelling[0].join(timeout=30)  # waits for nothing Y's completion holds

    _once_on_main_thread(
        logistics.services.shipments, "_complete_delivery", monkeypatch, let_the_cancel_through
    )
    mine = deadlocks_of(y_delivered(road))
    [(_, answer)] = started

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Order"], answer
    assert answer[0].status == OrderStatus.CANCELLED
    y_stop = road["stops"]["y_delivery"].pk
    assert shown(road["route"]) == [(y_stop, 1, StopStatus.DONE, KG("0.000"))]
    road["route"].refresh_from_db()
    assert road["route"].status == RouteStatus.COMPLETED


def test_an_order_cancelled_while_a_stop_sets_its_route_out_leaves_the_loads_without_it(
    monkeypatch,
):
    """Y's delivery, then W's pickup and delivery: Y's delivery sets the route out (the
    route locked) when W is cancelled. The cancel waits for the route, then finds it on
    the road, where W's stops stay (the driver skips them); their loads still counted W's
    kilogram on board after W's pickup."""
    road = lay_road(("y", "delivery", 0), ("w", "pickup", 1), ("w", "delivery", 0))
    started = []

    def let_the_cancel_in():  # the route set out and held
        started.append(in_thread(w_cancelled(road)))
        wait_for_lock_waiters(1, timeout=3)  # the cancel waits for the route

    _once_on_main_thread(
        logistics.services.shipments, "_route_follows", monkeypatch, let_the_cancel_in
    )
    mine = deadlocks_of(y_delivered(road))
    [(cancelling, answer)] = started
    cancelling.join(timeout=30)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Order"], answer
    stops = road["stops"]
    assert shown(road["route"]) == [
        (stops["y_delivery"].pk, 1, StopStatus.DONE, KG("0.000")),
        (stops["w_pickup"].pk, 2, StopStatus.PENDING, KG("0.000")),
        (stops["w_delivery"].pk, 3, StopStatus.PENDING, KG("0.000")),
    ]
    road["route"].refresh_from_db()
    assert road["route"].status == RouteStatus.STARTED


def test_a_stop_recorded_while_another_pickup_of_its_route_is_weighed_carries_that_weight(
    road, monkeypatch
):
    """W's pickup weighed at 1.5 kg holds the route while Y's delivery is recorded (its
    stop locked, waiting for the route). The weighing carries its half kilogram on over the
    stops it can lock, not Y's: Y's delivery, done next, kept 1 kg on board after it where
    W's 1.5 kg ride on to W's delivery."""
    started = []

    def let_y_in():  # the route set out and held
        started.append(in_thread(y_delivered(road)))
        wait_for_lock_waiters(1, timeout=3)  # Y's completion waits for the route

    _once_on_main_thread(logistics.services.shipments, "_route_follows", monkeypatch, let_y_in)
    weighed = Completion(outcome="done", weight_kg=KG("1.5"))
    mine = deadlocks_of(
        lambda: shipments.stop_complete(
            stop_id=road["stops"]["w_pickup"].pk, staff=road["staff"], data=weighed
        )
    )
    [(completing, answer)] = started
    completing.join(timeout=30)

    assert mine == [], mine
    assert [type(a).__name__ for a in answer] == ["Stop"], answer
    stops = road["stops"]
    assert shown(road["route"]) == [
        (stops["w_pickup"].pk, 1, StopStatus.DONE, KG("2.500")),
        (stops["y_delivery"].pk, 2, StopStatus.DONE, KG("1.500")),
        (stops["w_delivery"].pk, 3, StopStatus.PENDING, KG("0.000")),
    ]
