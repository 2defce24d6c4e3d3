"""Days of a county played at random through the API, with the real routing engine, and
the books checked after every step: buyers order from farmers of two centers, cancel,
farmers turn lines down, prepaid orders are paid, orders are routed, each center plans
tomorrow, and staff complete the stops (some fail, some pickups weigh more or less than
ordered), receive transfers and hand goods over at the center. Whatever happened, the
stock, the money, the day loads and each order's story must add up."""

import random
import threading
from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from listings.models import Listing, ListingStatus
from logistics.models import (
    CenterDayLoad,
    Route,
    Shipment,
    ShipmentStatus,
    Stop,
    StopStatus,
    Vehicle,
)
from logistics.services import schedule
from logistics.services.routing import (
    booked_days,
    loads_on_board,
    order_route,
    orders_route_batch,
)
from orders.models import (
    LineStatus,
    Order,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
)
from orders.payments import orders_expire_unpaid
from tests.clock import on_day
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    provider_notice,
)

STOCK = Decimal(40)
DAYS = 5


@pytest.fixture
def county():
    return make_county()


def make_county() -> dict:
    """Two centers 45 km apart, each with a van, staff, three farmers with two listings
    each, and three buyers."""
    centers, staff, farmers, buyers, listings = [], {}, [], [], []
    for lat in ("30.400000", "30.000000"):
        center = ServiceCenterFactory(lat=Decimal(lat), lng=Decimal("119.600000"))
        Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(600))
        centers.append(center)
        staff[center.pk] = StaffFactory(service_center=center)
        for n in range(3):
            village = VillageFactory(
                service_center=center,
                lat=center.lat + Decimal("0.01") * (n + 1),
                lng=center.lng + Decimal("0.02") * (n - 1),
            )
            farmer = FarmerFactory(village=village)
            farmers.append(farmer)
            listings.extend(
                create_listing(farmer, unit="kg", price=Decimal(price), quantity_available=STOCK)
                for price in ("4.00", "9.50")
            )
            buyers.append(BuyerFactory(village=village))
    return {
        "centers": centers,
        "staff": staff,
        "farmers": farmers,
        "buyers": buyers,
        "listings": listings,
    }


class Play:
    """The county's people's moves, chosen by a seeded `rng`; `kept` holds the lines turned
    down without a restock: their listing and the stock they took for good."""

    def __init__(self, county, client_for, rng):
        self.county, self.client_for, self.rng = county, client_for, rng
        self.kept: dict[int, tuple[int, Decimal]] = {}
        self.events = 0
        self.alone = True  # no one else at work: counts of rows may be compared

    def client(self, user):
        return self.client_for(user)

    def answer(self, response, *allowed):
        """The answer is one the contract allows here; never a 5xx."""
        body = response.json() if response.content else {}
        status = (response.status_code, body.get("code")) if response.status_code >= 400 else None
        assert response.status_code < 400 or status in allowed, (response.status_code, body)
        return response

    def place(self):
        buyer = self.rng.choice(self.county["buyers"])
        lines = self.rng.sample(self.county["listings"], self.rng.randint(1, 3))
        body = {
            "lines": [
                {"listing": listing.pk, "quantity": str(self.rng.randint(1, 9))}
                for listing in lines
            ],
            "delivery_method": self.rng.choice(["home", "home", "pickup"]),
            "payment_method": self.rng.choice(["cod", "cod", "prepaid"]),
        }
        client, key = self.client(buyer), f"order-{self.rng.random()}"
        first = self.answer(
            client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key),
            (409, "insufficient_stock"),
            (400, "listing_unavailable"),
        )
        if self.rng.random() < 0.3:  # the answer was lost: the phone sends it again
            orders = Order.objects.count()
            again = client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
            assert (again.status_code, again.content) == (first.status_code, first.content)
            assert again.headers["Idempotent-Replayed"] == "true"
            assert Order.objects.count() == orders or not self.alone

    def cancel(self):
        order = self.some(Order.objects.exclude(status=OrderStatus.CANCELLED))
        if order is None:
            return
        who = self.rng.choice([order.buyer, self.county["staff"][self.buyer_center(order)]])
        self.answer(
            self.client(who).post(f"/api/v1/orders/{order.pk}/cancel/", {"reason": "r"}),
            (409, "cannot_cancel"),
            (404, "not_found"),
        )

    def reject(self):
        line = self.some(OrderLine.objects.filter(status=LineStatus.ACTIVE))
        if line is None:
            return
        # Whether the goods go back on sale is the line's own, the same for whoever sends
        # its rejection: two sent at once are one rejection, done once.
        restock = line.pk % 3 != 0
        answer = self.answer(
            self.client(line.farmer).post(
                f"/api/v1/orders/{line.order_id}/lines/{line.pk}/reject/",
                {"reason": "hail", "restock": restock},
                format="json",
            ),
            (409, "cannot_cancel"),
            (409, "order_awaiting_payment"),
            (409, "line_not_active"),
        )
        if answer.status_code == 200 and not restock:
            self.kept[line.pk] = (line.listing_id, line.quantity)

    def pay(self):
        order = self.some(Order.objects.filter(status=OrderStatus.AWAITING_PAYMENT))
        if order is not None:
            self.events += 1
            provider_notice(order, order.total, event_id=f"evt_{order.pk}_{self.events}")

    def expire(self):
        """The sweep, as if a day had gone by: every order still unpaid expires."""
        orders_expire_unpaid(now=timezone.now() + timedelta(days=1))

    def route(self):
        for pk in Order.objects.filter(status=OrderStatus.PLACED).values_list("pk", flat=True):
            order_route(order_id=pk)

    def plan(self, day):
        for center in self.county["centers"]:
            run = schedule.schedule_run_request(
                center=center, day=day, requested_by=None, enqueue=False
            )
            assert schedule.schedule_run_execute(run_id=run.pk).status == "done"

    def drive(self, day):
        """Every stop of the day's routes in order; some fail."""
        for route in Route.objects.filter(date=day).order_by("pk"):
            staff = self.client(self.county["staff"][route.service_center_id])
            for stop in route.stops.order_by("sequence"):
                stop.refresh_from_db()
                if stop.status != StopStatus.PENDING:
                    continue  # a delivery failed with its goods' pickup before it
                shipments = list(stop.shipments.all())
                # about one in six fails, and the day's first if none has failed yet
                first = not Stop.objects.filter(status=StopStatus.FAILED).exists()
                if first or self.rng.random() < 1 / 6:
                    body = {"outcome": "failed", "reason": "nobody there"}
                elif stop.kind == "pickup":
                    weighed = sum(s.weight_kg for s in shipments) * Decimal(
                        self.rng.choice(["0.9", "1", "1", "1.1"])
                    )
                    body = {"outcome": "done", "weight_kg": str(weighed.quantize(Decimal("0.001")))}
                else:
                    code = Order.objects.get(pk=shipments[0].order_id).delivery_code
                    body = {"outcome": "done", "delivery_code": code}
                self.answer(
                    staff.post(f"/api/v1/stops/{stop.pk}/complete/", body, format="json"),
                    (409, "stop_cancelled"),
                    (409, "shipment_not_ready"),
                )

    def arrive(self):
        """Transfers received at the buyer's center; goods waiting there handed over."""
        for shipment in Shipment.objects.filter(status=ShipmentStatus.IN_TRANSFER):
            staff = self.client(self.county["staff"][shipment.destination_center_id])
            self.answer(staff.post(f"/api/v1/shipments/{shipment.pk}/receive/", {}))
        waiting = Shipment.objects.filter(
            status=ShipmentStatus.AT_CENTER, order__delivery_method="pickup"
        )
        for shipment in waiting:
            if self.rng.random() < 0.5:
                continue  # the buyer comes another day
            staff = self.client(self.county["staff"][shipment.destination_center_id])
            code = Order.objects.get(pk=shipment.order_id).delivery_code
            self.answer(
                staff.post(
                    f"/api/v1/shipments/{shipment.pk}/hand-over/",
                    {"delivery_code": code},
                    format="json",
                )
            )

    def some(self, queryset):
        pks = list(queryset.values_list("pk", flat=True))
        return queryset.model.objects.get(pk=self.rng.choice(pks)) if pks else None

    def buyer_center(self, order):
        return order.delivery_village.service_center_id


def check_books(county, rejected_kept):
    """Everything that must add up, whatever happened."""
    kept: dict[int, Decimal] = {}
    for listing_id, quantity in rejected_kept.values():
        kept[listing_id] = kept.get(listing_id, 0) + quantity
    check_stock(county, kept)
    for order in Order.objects.prefetch_related("lines", "events", "shipments"):
        check_order(order)
    check_day_loads()
    check_routes()


def check_stock(county, kept):
    """What active lines hold, and what left the farm or was kept without a restock, is off
    the listing; everything else went back, once."""
    for listing in Listing.objects.filter(pk__in=[x.pk for x in county["listings"]]):
        lines = OrderLine.objects.filter(listing=listing)
        held = lines.filter(status=LineStatus.ACTIVE).aggregate(q=Sum("quantity"))["q"] or 0
        gone = sum(
            line.quantity
            for line in lines.filter(status=LineStatus.CANCELLED)
            if Shipment.objects.filter(
                order=line.order_id, farmer=line.farmer_id, picked_up_weight_kg__isnull=False
            ).exists()
        )
        expected = STOCK - held - gone - kept.get(listing.pk, 0)
        assert listing.quantity_available == expected, (listing.pk, listing.quantity_available)
        assert (listing.status == ListingStatus.SOLD_OUT) == (expected == 0), listing.status


def check_order(order):
    """Its story, its money, its cash and its shipments."""
    # Each event starts where the last one ended, and the last ends where it is.
    events = sorted(order.events.all(), key=lambda e: e.pk)
    assert [e.from_status for e in events[1:]] == [e.to_status for e in events[:-1]], order
    assert events[-1].to_status == order.status, order
    active = [x for x in order.lines.all() if x.status == LineStatus.ACTIVE]
    shipments = list(order.shipments.all())
    if order.status == OrderStatus.CANCELLED:
        assert not active, order
        assert {s.status for s in shipments} <= {ShipmentStatus.CANCELLED}, order
        assert order.payment_status in (PaymentStatus.NOT_DUE, PaymentStatus.PAID), order
        return
    # The active lines and a fee.
    assert order.subtotal == sum((x.subtotal for x in active), Decimal("0.00")), order
    assert order.total == order.subtotal + order.delivery_fee, order
    if order.status in (OrderStatus.DELIVERED, OrderStatus.PARTIALLY_DELIVERED):
        if order.payment_method == PaymentMethod.COD:
            cash = sum((s.cash_collected or 0 for s in shipments), Decimal("0.00"))
            assert cash == order.total, (order, cash)
            assert order.payment_status == PaymentStatus.COLLECTED, order
        delivered = {s.farmer_id for s in shipments if s.status == ShipmentStatus.DELIVERED}
        assert {x.farmer_id for x in active} == delivered, order
    if order.status not in (OrderStatus.PLACED, OrderStatus.AWAITING_PAYMENT):
        # One shipment on its way per farmer with active lines.
        going = [s.farmer_id for s in shipments if s.status not in ("cancelled", "failed")]
        assert sorted(going) == sorted({x.farmer_id for x in active}), order
    for shipment in shipments:  # goods that go no further have no leg still to go
        if shipment.status in ("cancelled", "failed", "delivered"):
            assert not shipment.legs.filter(status="pending").exists(), shipment


def check_day_loads():
    """Each center's day holds what the shipments booked on it hold."""
    booked: dict = {}
    for shipment in Shipment.objects.all():
        days = booked_days(shipment, pickup=shipment.pickup_date, delivery=shipment.delivery_date)
        for key in days:
            booked[key] = booked.get(key, 0) + shipment.held_kg
    for load in CenterDayLoad.objects.all():
        assert load.booked_kg == booked.pop((load.center_id, load.date), 0), load
    assert not {key: kg for key, kg in booked.items() if kg}, booked


def check_routes():
    """Routes still to drive: stops numbered 1..n, none empty; one not yet on the road
    carries, after each stop, what its stops' goods weigh (loads_on_board)."""
    for route in Route.objects.exclude(status="completed").prefetch_related("stops__shipments"):
        stops = sorted(route.stops.all(), key=lambda s: s.sequence)
        assert [s.sequence for s in stops] == list(range(1, len(stops) + 1)), route
        for stop in stops:
            if stop.status == StopStatus.PENDING:
                assert stop.shipments.exists(), stop
        if route.status == "planned":
            goods = [(s.kind == "pickup", list(s.shipments.all())) for s in stops]
            assert [s.load_kg for s in stops] == loads_on_board(goods), route


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 4])
def test_random_days_keep_the_books(county, client_for, settings, seed):
    settings.ROUTING_CUTOFF_HOUR = 16
    rng = random.Random(seed)
    play = Play(county, client_for, rng)
    today = timezone.localdate()
    moves = [play.place] * 5 + [play.cancel, play.reject, play.pay, play.pay]
    for n in range(DAYS):
        day = today + timedelta(days=n)
        with on_day(day, time(9, 0)):
            play.drive(day)
            check_books(county, play.kept)
            play.arrive()
            check_books(county, play.kept)
        with on_day(day, time(12, 0)):
            for _ in range(12):
                rng.choice(moves)()
                check_books(county, play.kept)
            play.route()
            check_books(county, play.kept)
            for _ in range(3):
                rng.choice([play.cancel, play.reject])()
                check_books(county, play.kept)
        with on_day(day, time(15, 0)):
            play.plan(day + timedelta(days=1))
            check_books(county, play.kept)
        with on_day(day, time(17, 0)):  # changes to the plan made for tomorrow
            for _ in range(4):
                rng.choice([play.cancel, play.reject])()
                check_books(county, play.kept)
            if rng.random() < 0.5:
                play.expire()
                check_books(county, play.kept)
    finished = (OrderStatus.DELIVERED, OrderStatus.PARTIALLY_DELIVERED)
    assert Order.objects.filter(status__in=finished).exists()
    assert Stop.objects.filter(status=StopStatus.FAILED).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("seed", [1, 2])
def test_random_moves_at_once_keep_the_books(county, client_for, settings, seed):
    """Four people at once, each on a connection of their own, ordering, cancelling,
    turning lines down, paying, routing and planning tomorrow over and over: no request
    fails (a deadlock would), and the books add up as when they took turns."""
    settings.ROUTING_CUTOFF_HOUR = 16
    tomorrow = timezone.localdate() + timedelta(days=1)
    plays = [Play(county, client_for, random.Random(seed * 10 + n)) for n in range(4)]
    for play in plays:
        play.alone = False
    errors = []

    def moves(play):
        def plan():
            play.plan(tomorrow)

        def route():
            orders_route_batch(order_id=None, size=5)

        every = [play.place] * 4 + [play.cancel, play.reject, play.pay, route, plan]
        try:
            for _ in range(30):
                play.rng.choice(every)()
        except Exception as error:  # handed to the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=moves, args=(play,)) for play in plays]
    with on_day(timezone.localdate(), time(12, 0)):  # the clock is the process's, not a thread's
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    with on_day(timezone.localdate(), time(13, 0)):
        plays[0].route()
        plays[0].plan(tomorrow)
    check_books(county, {line: kept for play in plays for line, kept in play.kept.items()})
    assert Route.objects.filter(date=tomorrow).exists()
