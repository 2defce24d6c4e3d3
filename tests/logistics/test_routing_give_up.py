"""An order routing finds no room for is tried again ROUTING_RETRY_MINUTES later, not at
every sweep or batch, and given up once a try ROUTING_GIVE_UP_HOURS after it was placed
(paid, if prepaid) finds no room either: it fails, its stock goes back once, its buyer and
farmers are told, and what a prepaid buyer paid is owed back. A routable order goes on."""

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from listings.models import Listing
from logistics.models import CenterDayLoad, ServiceCenter
from logistics.services import routing
from logistics.tasks import sweep_unrouted_orders
from marketplace.accounts.models import User
from orders import services as orders
from orders.models import (
    LineStatus,
    Notification,
    NotificationKind,
    Order,
    OrderEvent,
    OrderStatus,
    PaymentStatus,
)
from orders.selectors import order_refund_due, orders_with_amount_held
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


class Clock:
    """The test's time (django.utils.timezone.now, so `auto_now` columns read it too)."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch, settings):
    """09:00 local today, before the daily cut-off; a try every minute would be retried."""
    settings.ROUTING_CUTOFF_HOUR = 16
    settings.ROUTING_SWEEP_GRACE_SECONDS = 60
    settings.ROUTING_RETRY_MINUTES = 30
    settings.ROUTING_GIVE_UP_HOURS = 24
    clock = Clock(timezone.localtime().replace(hour=9, minute=0, second=0, microsecond=0))
    monkeypatch.setattr(timezone, "now", clock)
    return clock


@dataclass
class Shop:
    center: ServiceCenter
    buyer: User
    farmer: User
    listing: Listing  # 50 kg in stock at 3.50


def new_shop() -> Shop:
    """A center of its own with a farmer and a buyer."""
    center = ServiceCenterFactory(daily_capacity_kg=Decimal("100.0"))
    village = VillageFactory(service_center=center)
    farmer = FarmerFactory(village=village)
    listing = create_listing(farmer, unit="kg", quantity_available=Decimal("50"))
    return Shop(center=center, buyer=BuyerFactory(village=village), farmer=farmer, listing=listing)


def fill(center: ServiceCenter, since: date) -> None:
    """No room at the center on any day routing looks at, from `since` on."""
    CenterDayLoad.objects.bulk_create(
        CenterDayLoad(
            center=center, date=since + timedelta(days=n), booked_kg=center.daily_capacity_kg
        )
        for n in range(routing.MAX_DAYS_AHEAD + 10)
    )


def events(order: Order) -> list[tuple[str, str, str, int | None]]:
    rows = OrderEvent.objects.filter(order=order).order_by("id")
    return list(rows.values_list("from_status", "to_status", "reason", "actor_id"))


def told(order: Order, kind: str) -> dict[int, dict]:
    """Each user told `kind` about the order, with what the notification's data says."""
    rows = Notification.objects.filter(order=order, kind=kind)
    told = list(rows.values_list("user_id", "data"))
    assert len(told) == len(dict(told)), "someone was told twice"
    return dict(told)


def stock(listing: Listing) -> Decimal:
    return Listing.objects.get(pk=listing.pk).quantity_available


def test_an_order_without_room_is_tried_again_after_the_retry_minutes_not_every_minute(clock):
    full, roomy = new_shop(), new_shop()
    fill(full.center, clock.now.date())
    stuck = place_order(full.buyer, (full.listing, 5))

    assert routing.orders_route_batch(order_id=stuck.pk, size=10) == []
    tried = clock.now
    assert Order.objects.get(pk=stuck.pk).routing_failed_at == tried

    clock.move(minutes=29)
    assert sweep_unrouted_orders() == 0  # not sent again yet
    routable = place_order(roomy.buyer, (roomy.listing, 5))
    # A batch taking the orders waiting takes the routable one, not the one waiting to retry.
    assert routing.orders_route_batch(order_id=None, size=10) == [routable.pk]
    assert Order.objects.get(pk=stuck.pk).routing_failed_at == tried

    clock.move(minutes=1)
    assert sweep_unrouted_orders() == 1
    assert routing.orders_route_batch(order_id=None, size=10) == []  # tried: still no room
    stuck.refresh_from_db()
    assert (stuck.status, stuck.routing_failed_at) == (OrderStatus.PLACED, clock.now)

    CenterDayLoad.objects.filter(center=full.center).delete()  # room again
    clock.move(minutes=30)
    assert routing.orders_route_batch(order_id=None, size=10) == [stuck.pk]
    assert Order.objects.get(pk=stuck.pk).status == OrderStatus.CONFIRMED


def test_an_order_still_without_room_a_day_after_it_was_placed_fails_and_restocks_once(clock):
    full, roomy = new_shop(), new_shop()
    fill(full.center, clock.now.date())
    stuck = place_order(full.buyer, (full.listing, 5))
    routable = place_order(roomy.buyer, (roomy.listing, 5))
    assert routing.orders_route_batch(order_id=stuck.pk, size=10) == [routable.pk]
    assert stock(full.listing) == Decimal("45.000")

    clock.move(hours=23, minutes=59)  # the last try before the day is up: no room
    assert routing.orders_route_batch(order_id=stuck.pk, size=1) == []
    sweep_unrouted_orders()
    assert Order.objects.get(pk=stuck.pk).status == OrderStatus.PLACED

    clock.move(minutes=1)  # a day after it was placed, a try finds no room either
    assert routing.orders_route_batch(order_id=stuck.pk, size=1) == []
    assert sweep_unrouted_orders() == 0  # given up on, not sent again
    sweep_unrouted_orders()  # and the next sweep does nothing twice

    stuck.refresh_from_db()
    assert (stuck.status, stuck.payment_status) == (OrderStatus.FAILED, PaymentStatus.NOT_DUE)
    assert events(stuck) == [
        ("", OrderStatus.PLACED, "placed", full.buyer.pk),
        (OrderStatus.PLACED, OrderStatus.FAILED, orders.NOT_ROUTABLE_REASON, None),
    ]
    assert list(stuck.lines.values_list("status", flat=True)) == [LineStatus.CANCELLED]
    assert stock(full.listing) == Decimal("50.000")  # given back, once
    line = stuck.lines.get()
    assert told(stuck, NotificationKind.ORDER_FAILED) == {
        full.buyer.pk: {"order": stuck.pk, "reason": "not_routable", "refund_due": "0.00"},
        full.farmer.pk: {"order": stuck.pk, "lines": [line.pk], "subtotal": "17.50"},
    }
    assert order_refund_due(orders_with_amount_held(Order.objects).get(pk=stuck.pk)) == 0

    routable.refresh_from_db()  # routed, and left alone
    assert routable.status == OrderStatus.CONFIRMED
    assert [e[1] for e in events(routable)] == [OrderStatus.PLACED, OrderStatus.CONFIRMED]
    assert stock(roomy.listing) == Decimal("45.000")
    assert not Notification.objects.filter(kind=NotificationKind.ORDER_FAILED).exclude(order=stuck)


def test_an_order_never_tried_is_not_given_up_however_old(clock):
    """The workers down for two days: the order is sent to be routed, not failed untried."""
    full = new_shop()
    fill(full.center, clock.now.date())
    stuck = place_order(full.buyer, (full.listing, 5))

    clock.move(hours=48)
    assert sweep_unrouted_orders() == 1
    assert Order.objects.get(pk=stuck.pk).status == OrderStatus.PLACED
    assert stock(full.listing) == Decimal("45.000")


def test_a_paid_order_given_up_is_owed_back_what_was_paid_counting_from_its_payment(clock):
    full = new_shop()
    fill(full.center, clock.now.date())
    stuck = place_order(full.buyer, (full.listing, 10), payment_method="prepaid")
    assert stuck.total == Decimal("40.00")  # 35.00 of goods, 5.00 delivery
    clock.move(hours=1)
    provider_notice(stuck, "40.00")  # paid at 10:00: placed now, farmers told

    clock.move(hours=23, minutes=30)  # 24.5 hours after ordering, 23.5 after paying
    assert routing.orders_route_batch(order_id=stuck.pk, size=1) == []
    sweep_unrouted_orders()
    assert Order.objects.get(pk=stuck.pk).status == OrderStatus.PLACED

    clock.move(minutes=30)
    assert routing.orders_route_batch(order_id=stuck.pk, size=1) == []
    sweep_unrouted_orders()

    stuck = orders_with_amount_held(Order.objects).get(pk=stuck.pk)
    assert (stuck.status, stuck.payment_status) == (OrderStatus.FAILED, PaymentStatus.PAID)
    assert order_refund_due(stuck) == Decimal("40.00")
    assert stock(full.listing) == Decimal("50.000")
    line = stuck.lines.get()
    assert told(stuck, NotificationKind.ORDER_FAILED) == {
        full.buyer.pk: {"order": stuck.pk, "reason": "not_routable", "refund_due": "40.00"},
        full.farmer.pk: {"order": stuck.pk, "lines": [line.pk], "subtotal": "35.00"},
    }
    buyer_told = Notification.objects.get(
        order=stuck, kind=NotificationKind.ORDER_FAILED, user=full.buyer
    )
    assert "¥40.00" in buyer_told.body


def test_only_a_placed_order_is_given_up_on(clock):
    """An order routed or cancelled meanwhile is left as it is."""
    shop = new_shop()
    placed = place_order(shop.buyer, (shop.listing, 5))
    routed = routing.order_route(order_id=placed.pk)
    assert orders.order_fail_unroutable(order_id=routed.pk).status == OrderStatus.CONFIRMED

    cancelled = place_order(shop.buyer, (shop.listing, 5))
    orders.order_cancel(order_id=cancelled.pk, actor=shop.buyer, reason="不要了")
    assert orders.order_fail_unroutable(order_id=cancelled.pk).status == OrderStatus.CANCELLED
    assert stock(shop.listing) == Decimal("45.000")  # the cancel's restock, not a second one
    assert not Notification.objects.filter(kind=NotificationKind.ORDER_FAILED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_worker_finds_no_room_and_the_sweeper_gives_up_and_tells_the_buyer(
    celery_worker, settings
):
    """End to end with a real worker: it routes one order and finds no room for the other;
    with no time to wait (ROUTING_GIVE_UP_HOURS 0) the sweeper fails that one, and the
    worker sends the buyer the news."""
    settings.ROUTING_GIVE_UP_HOURS = 0
    full, roomy = new_shop(), new_shop()
    fill(full.center, timezone.localdate())
    stuck = place_order(full.buyer, (full.listing, 5))
    routable = place_order(roomy.buyer, (roomy.listing, 5))

    def tried() -> bool:
        routable.refresh_from_db()
        stuck.refresh_from_db()
        return routable.status == OrderStatus.CONFIRMED and stuck.routing_failed_at is not None

    deadline = time.monotonic() + 60
    while not tried() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tried()
    assert stuck.status == OrderStatus.PLACED

    sweep_unrouted_orders()

    stuck.refresh_from_db()
    assert stuck.status == OrderStatus.FAILED
    assert stock(full.listing) == Decimal("50.000")
    news = Notification.objects.filter(
        order=stuck, kind=NotificationKind.ORDER_FAILED, user=full.buyer
    )
    deadline = time.monotonic() + 60
    while not news.filter(sent_at__isnull=False).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert news.filter(sent_at__isnull=False).count() == 1
    routable.refresh_from_db()
    assert routable.status == OrderStatus.CONFIRMED
