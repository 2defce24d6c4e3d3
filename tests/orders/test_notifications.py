"""Notifications: who is told what when an order changes, the API over them, and the send
task (in process with a recording backend, and through a real Celery worker)."""

import threading
import time
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from types import SimpleNamespace

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.utils import timezone

from marketplace.celery import pending_taken
from orders import notifications, services
from orders.models import Notification, NotificationKind, Order, OrderStatus
from tests.factories import BuyerFactory, FarmerFactory, create_listing, place_order

NOTIFICATIONS = "/api/v1/notifications/"


class RecordingBackend:
    """Keeps what it was asked to send, in the class, so the test can read it."""

    sent: list[tuple[int, str]] = []

    def send(self, notification: Notification) -> None:
        RecordingBackend.sent.append((notification.pk, notification.user.phone))


class FailingBackend:
    calls = 0

    def send(self, notification: Notification) -> None:
        FailingBackend.calls += 1
        raise notifications.NotificationBackendError("the SMS gateway is down")


class RefusesBBackend:
    """Refuses the notification whose body is "b" (say, a number the gateway rejects)."""

    sent: list[int] = []
    refused = 0

    def send(self, notification: Notification) -> None:
        if notification.body == "b":
            RefusesBBackend.refused += 1
            raise ValueError("the gateway rejects this number")
        RefusesBBackend.sent.append(notification.pk)


class DyingBackend:
    """The worker dies while the gateway sends."""

    def send(self, notification: Notification) -> None:
        raise SystemExit(1)


class SlowGatewayBackend:
    """Delivers every message at once but "slow", on which the gateway hangs until the
    task's soft time limit strikes."""

    delivered: list[int] = []

    def send(self, notification: Notification) -> None:
        if notification.body == "slow":
            raise SoftTimeLimitExceeded
        SlowGatewayBackend.delivered.append(notification.pk)


class ReceiptStoringBackend:
    """Keeps the provider's receipt in the database; for the message "b" the statement
    fails (a receipt id it stored already, say)."""

    sent: list[int] = []

    def send(self, notification: Notification) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1/0" if notification.body == "b" else "SELECT 1")
        ReceiptStoringBackend.sent.append(notification.pk)


@pytest.fixture
def recording(settings):
    settings.NOTIFICATION_BACKEND = f"{__name__}.RecordingBackend"
    RecordingBackend.sent = []
    return RecordingBackend.sent


def told(order=None):
    """(user, kind) of every notification (of the order), oldest first."""
    rows = Notification.objects.order_by("id")
    if order is not None:
        rows = rows.filter(order=order)
    return [(n.user_id, n.kind) for n in rows]


@pytest.fixture
def two_farmers_order(db):
    buyer, farmer_a, farmer_b = BuyerFactory(), FarmerFactory(), FarmerFactory()
    tomatoes = create_listing(farmer_a, title="西红柿", price=Decimal("3.50"))
    cabbage = create_listing(farmer_a, title="白菜", unit="kg", price=Decimal("2.00"))
    eggs = create_listing(
        farmer_b,
        title="土鸡蛋",
        unit="dozen",
        unit_weight_kg=Decimal("0.7"),
        price=Decimal("18.00"),
    )
    order = place_order(buyer, (tomatoes, "4"), (cabbage, "2.5"), (eggs, "1"))
    return order, buyer, farmer_a, farmer_b


# ------------------------------------------------------------------ who is told what
@pytest.mark.django_db
class TestWhoIsTold:
    def test_placing_tells_the_buyer_and_each_farmer_once_and_sends_after_commit(
        self, django_capture_on_commit_callbacks
    ):
        buyer, farmer_a, farmer_b = BuyerFactory(), FarmerFactory(), FarmerFactory()
        tomatoes = create_listing(farmer_a, title="西红柿", price=Decimal("3.50"))
        cabbage = create_listing(farmer_a, title="白菜", unit="kg", price=Decimal("2.00"))
        eggs = create_listing(
            farmer_b,
            title="土鸡蛋",
            unit="dozen",
            unit_weight_kg=Decimal("0.7"),
            price=Decimal("18.00"),
        )

        with django_capture_on_commit_callbacks(execute=False) as enqueued:
            order = place_order(buyer, (tomatoes, "4"), (cabbage, "2.5"), (eggs, "1"))

        assert told(order) == [
            (buyer.pk, NotificationKind.ORDER_PLACED),
            (farmer_a.pk, NotificationKind.ORDER_PLACED),
            (farmer_b.pk, NotificationKind.ORDER_PLACED),
        ]
        # after the commit: one send task for the three, and the routing task
        assert len(enqueued) == 2
        to_buyer, to_a, to_b = Notification.objects.filter(order=order).order_by("id")
        # 14.00 + 5.00 + 18.00 = 37.00 of goods, home delivery from two farmers: + 7.00
        assert (to_buyer.title, to_buyer.body) == (
            "订单已下单",
            f"订单 #{order.pk} 已下单，合计 ¥44.00。",
        )
        assert to_buyer.data == {
            "order": order.pk,
            "status": "placed",
            "total": "44.00",
            "payment_due_at": None,
        }
        a_lines = list(
            order.lines.filter(farmer=farmer_a).order_by("id").values_list("pk", flat=True)
        )
        assert to_a.title == "新订单"
        assert to_a.body == f"订单 #{order.pk}：西红柿 4斤、白菜 2.5公斤，小计 ¥19.00。请及时备货。"
        assert to_a.data == {"order": order.pk, "lines": a_lines, "subtotal": "19.00"}
        assert to_b.data["subtotal"] == "18.00"
        assert [n.sent_at for n in (to_buyer, to_a, to_b)] == [None, None, None]

    def test_a_refused_order_tells_nobody(self):
        listing = create_listing(quantity_available=Decimal("1"))
        with pytest.raises(services.ConflictError):
            place_order(BuyerFactory(), (listing, "2"))
        assert Notification.objects.count() == 0

    def test_rejecting_a_line_tells_the_buyer_the_new_total(self, two_farmers_order):
        order, buyer, _, farmer_b = two_farmers_order
        eggs = order.lines.get(farmer=farmer_b)
        Notification.objects.all().delete()

        services.order_line_reject(
            order_id=order.pk, line_id=eggs.pk, farmer=farmer_b, reason="鸡不下蛋"
        )

        (notification,) = Notification.objects.all()
        assert (notification.user_id, notification.kind) == (buyer.pk, "line_rejected")
        # 19.00 of goods left from one farmer: + 5.00
        assert notification.body == (
            f"订单 #{order.pk} 中的「土鸡蛋」被农户拒绝：鸡不下蛋。该商品不收费，订单合计 ¥24.00。"
        )
        assert notification.data == {
            "order": order.pk,
            "line": eggs.pk,
            "reason": "鸡不下蛋",
            "total": "24.00",
            "refund_due": "0.00",  # cash on delivery: nothing was paid
        }
        # A retried rejection tells nobody again.
        services.order_line_reject(order_id=order.pk, line_id=eggs.pk, farmer=farmer_b, reason="x")
        assert Notification.objects.count() == 1

    def test_cancelling_tells_the_buyer_and_the_farmers_whose_lines_it_called_off(
        self, two_farmers_order
    ):
        order, buyer, farmer_a, farmer_b = two_farmers_order
        eggs = order.lines.get(farmer=farmer_b)
        services.order_line_reject(order_id=order.pk, line_id=eggs.pk, farmer=farmer_b, reason="x")
        Notification.objects.all().delete()

        services.order_cancel(order_id=order.pk, actor=buyer, reason="买多了")

        assert told() == [
            (buyer.pk, NotificationKind.ORDER_CANCELLED),
            (farmer_a.pk, NotificationKind.ORDER_CANCELLED),  # not farmer_b: already rejected
        ]
        to_a = Notification.objects.get(user=farmer_a)
        assert to_a.body == f"订单 #{order.pk} 已取消：西红柿 4斤、白菜 2.5公斤 无需备货。"
        to_buyer = Notification.objects.get(user=buyer)
        assert to_buyer.body == f"订单 #{order.pk} 已取消（买多了）。"
        services.order_cancel(order_id=order.pk, actor=buyer)  # a retry: nothing new
        assert Notification.objects.count() == 2

    def test_goods_failing_for_good_at_the_farm_and_at_the_center_are_told_once_each(
        self, two_farmers_order
    ):
        """A day's plan leaves out farmer_a's goods still at the farm and farmer_b's waiting
        at the center, both for the last time: the buyer hears once, of both; only
        farmer_a's go back in stock, and each farmer is told which it is."""
        order, buyer, farmer_a, farmer_b = two_farmers_order
        stock = {line.listing_id: line.listing.quantity_available for line in order.lines.all()}
        Notification.objects.all().delete()
        with transaction.atomic():
            services.order_lines_not_delivered(
                order_id=order.pk,
                farmer_ids=[farmer_a.pk, farmer_b.pk],
                restock_farmer_ids=[farmer_a.pk],
                reason="no_vehicle_with_skills",
            )
        assert told() == [
            (buyer.pk, NotificationKind.GOODS_NOT_DELIVERED),
            (farmer_a.pk, NotificationKind.GOODS_NOT_DELIVERED),
            (farmer_b.pk, NotificationKind.GOODS_NOT_DELIVERED),
        ]
        to_a, to_b = (Notification.objects.get(user=f) for f in (farmer_a, farmer_b))
        assert (to_a.title, to_a.data["restocked"]) == ("商品未能取货", True)
        assert (to_b.title, to_b.data["restocked"]) == ("商品未能送达买家", False)
        assert "（服务站没有能运送该商品的车辆（如冷藏车））" in to_b.body
        back = {
            line.listing_id: line.listing.quantity_available - stock[line.listing_id]
            for line in order.lines.select_related("listing")
        }
        assert sorted(back.values()) == [Decimal("0"), Decimal("2.5"), Decimal("4")]
        assert back[order.lines.get(farmer=farmer_b).listing_id] == 0
        order.refresh_from_db()
        assert (order.subtotal, order.total) == (Decimal("0.00"), Decimal("0.00"))

    def test_cancelling_does_not_tell_a_farmer_whose_goods_already_left_the_order(
        self, two_farmers_order
    ):
        """farmer_b's goods failed for good (and farmer_b was told so); the buyer then calls
        off the rest: only farmer_a's lines are called off by that, so only farmer_a hears."""
        order, buyer, farmer_a, farmer_b = two_farmers_order
        with transaction.atomic():
            services.order_lines_not_delivered(
                order_id=order.pk,
                farmer_ids=[farmer_b.pk],
                restock_farmer_ids=[farmer_b.pk],
                reason="路断了",
            )
        assert told()[-1] == (farmer_b.pk, NotificationKind.GOODS_NOT_DELIVERED)
        Notification.objects.all().delete()

        services.order_cancel(order_id=order.pk, actor=buyer, reason="买多了")

        assert told() == [
            (buyer.pk, NotificationKind.ORDER_CANCELLED),
            (farmer_a.pk, NotificationKind.ORDER_CANCELLED),
        ]

    def test_rejecting_the_last_line_tells_the_buyer_it_is_cancelled(self):
        buyer, listing = BuyerFactory(), create_listing(title="韭菜")
        order = place_order(buyer, (listing, "1"))
        Notification.objects.all().delete()

        services.order_line_reject(
            order_id=order.pk, line_id=order.lines.get().pk, farmer=listing.farmer, reason="卖完了"
        )

        (notification,) = Notification.objects.all()
        assert (notification.user_id, notification.kind) == (buyer.pk, "order_cancelled")
        assert notification.data == {
            "order": order.pk,
            "reason": "last line rejected: 卖完了",
            "refund_due": "0.00",  # cash on delivery: nothing was paid
        }
        # told in the words of every other message, not the event log's English
        assert (
            notification.body
            == f"订单 #{order.pk} 已取消：「韭菜」被农户拒绝：卖完了。订单中已无其他商品。"
        )

    def test_prepaid_farmers_hear_of_it_once_paid(self):
        buyer, farmer = BuyerFactory(), FarmerFactory()
        order = place_order(buyer, (create_listing(farmer), "2"), payment_method="prepaid")
        assert told() == [(buyer.pk, NotificationKind.ORDER_PLACED)]
        assert Notification.objects.get().title == "订单待付款"
        due = Notification.objects.get().data["payment_due_at"]
        assert due == timezone.localtime(order.payment_due_at).isoformat()
        assert due.endswith("+08:00")  # as every time a message shows

        notifications.notify_payment_received(order)

        assert told()[1:] == [
            (buyer.pk, NotificationKind.PAYMENT_RECEIVED),
            (farmer.pk, NotificationKind.ORDER_PLACED),
        ]

    def test_an_unpaid_order_expiring_tells_the_buyer_only(self):
        buyer = BuyerFactory()
        order = place_order(buyer, (create_listing(), "2"), payment_method="prepaid")
        Notification.objects.all().delete()

        services.order_cancel(order_id=order.pk, actor=None, reason="payment_expired", expired=True)

        assert told() == [(buyer.pk, NotificationKind.PAYMENT_EXPIRED)]
        assert Order.objects.get().status == OrderStatus.CANCELLED

    def test_a_buyer_whose_reason_reads_payment_expired_cancels_and_the_farmer_hears(
        self, client_for
    ):
        """The reason is the buyer's text: whatever it says, the cancel is the buyer's, not
        the expiry's (the farmer is told, the buyer hears it was called off)."""
        buyer, listing = BuyerFactory(), create_listing(title="韭菜")
        order = place_order(buyer, (listing, "2"))
        Notification.objects.all().delete()

        response = client_for(buyer).post(
            f"/api/v1/orders/{order.pk}/cancel/", {"reason": "payment_expired"}, format="json"
        )

        assert response.status_code == 200
        assert told() == [
            (buyer.pk, NotificationKind.ORDER_CANCELLED),
            (listing.farmer_id, NotificationKind.ORDER_CANCELLED),
        ]

    def test_an_unpaid_order_cancelled_by_the_buyer_does_not_bother_the_farmer(self):
        buyer = BuyerFactory()
        order = place_order(buyer, (create_listing(), "2"), payment_method="prepaid")
        Notification.objects.all().delete()
        services.order_cancel(order_id=order.pk, actor=buyer)
        assert told() == [(buyer.pk, NotificationKind.ORDER_CANCELLED)]

    def test_confirmed_tells_the_buyer_and_farmers_their_dates(self, two_farmers_order):
        order, buyer, farmer_a, farmer_b = two_farmers_order
        Notification.objects.all().delete()

        notifications.store(
            notifications.order_confirmed_messages(
                order,
                delivery_date=date(2026, 5, 3),
                pickup_dates={farmer_a.pk: date(2026, 5, 2)},
            )
        )

        assert told() == [
            (buyer.pk, NotificationKind.ORDER_CONFIRMED),
            (farmer_a.pk, NotificationKind.ORDER_CONFIRMED),
            (farmer_b.pk, NotificationKind.ORDER_CONFIRMED),
        ]
        to_buyer, to_a, to_b = Notification.objects.order_by("id")
        assert to_buyer.body == f"订单 #{order.pk} 已确认，预计 05月03日 送达。"
        assert to_a.body.endswith("小计 ¥19.00，05月02日 上门取货。")
        assert to_a.data["pickup_date"] == "2026-05-02"
        assert "pickup_date" not in to_b.data

    def test_a_farmer_with_many_pickups_reads_the_first_time_and_how_many(self):
        farmer, neighbour = FarmerFactory(), FarmerFactory()
        day = date(2026, 5, 2)

        def stop(pk: int, minute: int, *goods: tuple[int, int]):
            eta = timezone.make_aware(datetime.combine(day, time_of_day(8, minute)))
            shipments = [SimpleNamespace(farmer_id=f, order_id=o) for f, o in goods]
            return SimpleNamespace(pk=pk, route_id=7, eta=eta), shipments

        notifications.notify_pickups_scheduled(
            [
                stop(5, 50, (farmer.pk, 105)),
                *(stop(n, 10 * n, (farmer.pk, 100 + n)) for n in range(1, 5)),
                stop(6, 20, (neighbour.pk, 201), (neighbour.pk, 202), (farmer.pk, 102)),
            ]
        )

        mine, theirs = (
            Notification.objects.get(user=user, kind=NotificationKind.PICKUP_SCHEDULED)
            for user in (farmer, neighbour)
        )
        assert mine.body == (
            "05月02日 约 08:10 起分 5 次上门取货（订单 #101、#102、#103 等 5 单），请备好货。"
        )
        assert [s["stop"] for s in mine.data["stops"]] == [1, 2, 6, 3, 4, 5]
        assert mine.data["orders"] == [101, 102, 103, 104, 105]
        assert theirs.body == "05月02日 约 08:20 上门取货（订单 #201、#202），请备好货。"
        assert theirs.data["stops"] == [
            {"stop": 6, "route": 7, "eta": "2026-05-02T08:20:00+08:00", "orders": [201, 202]}
        ]

    def test_long_texts_are_clipped_to_the_columns(self):
        buyer = BuyerFactory()
        notification = notifications.notify(
            user=buyer, kind=NotificationKind.ORDER_DELIVERED, title="长" * 200, body="文" * 900
        )
        notification.refresh_from_db()
        assert (len(notification.title), len(notification.body)) == (120, 500)
        assert notification.body.endswith("文…")


# ------------------------------------------------------------------ the API
@pytest.mark.django_db
class TestApi:
    def test_the_list_shows_only_own_newest_first_with_constant_queries(
        self, client_for, two_farmers_order, django_assert_num_queries
    ):
        order, buyer, farmer_a, _ = two_farmers_order
        services.order_cancel(order_id=order.pk, actor=buyer)
        client = client_for(buyer)

        data = client.get(NOTIFICATIONS).json()

        assert data["count"] == 2
        assert [(n["kind"], n["order"]) for n in data["results"]] == [
            ("order_cancelled", order.pk),
            ("order_placed", order.pk),
        ]
        assert set(data["results"][0]) == {
            "id",
            "kind",
            "order",
            "title",
            "body",
            "data",
            "created_at",
            "read_at",
        }
        mine = {n["id"] for n in client_for(farmer_a).get(NOTIFICATIONS).json()["results"]}
        assert mine == set(Notification.objects.filter(user=farmer_a).values_list("id", flat=True))
        assert client_for(BuyerFactory()).get(NOTIFICATIONS).json()["count"] == 0
        with django_assert_num_queries(3):  # user, count, page
            client.get(NOTIFICATIONS)

    def test_filtering_by_an_order_tells_nothing_of_orders_that_are_not_ones_own(
        self, client_for, two_farmers_order
    ):
        order, buyer, _, _ = two_farmers_order
        stranger = client_for(BuyerFactory())
        answers = {
            "own": client_for(buyer).get(NOTIFICATIONS, {"order": order.pk}),
            "another's": stranger.get(NOTIFICATIONS, {"order": order.pk}),
            "none": stranger.get(NOTIFICATIONS, {"order": order.pk + 1000}),
        }
        assert {k: (a.status_code, a.json()["count"]) for k, a in answers.items()} == {
            "own": (200, 1),
            "another's": (200, 0),
            "none": (200, 0),
        }
        half = stranger.get(NOTIFICATIONS, {"order": f"{order.pk}.5"})
        assert [(e["field"], e["code"]) for e in half.json()["errors"]] == [("order", "invalid")]

    def test_filtering_by_an_order_finds_the_pickup_day_it_shares_with_others(self, client_for):
        """A day's pickups of one farmer's goods for several orders are one notification,
        with no one `order` (`data.orders` names them): each of those orders finds it, as an
        order picked up alone finds its own."""
        farmer, buyer = FarmerFactory(), BuyerFactory()
        listing = create_listing(farmer)
        shared, other, alone = (place_order(buyer, (listing, "1")) for _ in range(3))
        eta = timezone.make_aware(datetime.combine(date(2026, 5, 2), time_of_day(8, 10)))

        def stop(pk: int, *orders: Order):
            shipments = [SimpleNamespace(farmer_id=farmer.pk, order_id=o.pk) for o in orders]
            return SimpleNamespace(pk=pk, route_id=7, eta=eta + timedelta(days=pk)), shipments

        notifications.notify_pickups_scheduled([stop(1, shared, other), stop(2, alone)])
        client = client_for(farmer)

        def pickups_of(order: Order) -> list[list[int]]:
            answer = client.get(NOTIFICATIONS, {"order": order.pk, "kind": "pickup_scheduled"})
            assert answer.status_code == 200
            return [n["data"]["orders"] for n in answer.json()["results"]]

        assert pickups_of(shared) == [[shared.pk, other.pk]]
        assert pickups_of(other) == [[shared.pk, other.pk]]
        assert pickups_of(alone) == [[alone.pk]]
        placed = client.get(NOTIFICATIONS, {"order": shared.pk}).json()["results"]
        assert [n["kind"] for n in placed] == ["pickup_scheduled", "order_placed"]
        assert client_for(buyer).get(NOTIFICATIONS, {"order": shared.pk}).json()["count"] == 1

    def test_mark_read_is_idempotent_and_filters_follow(self, client_for, two_farmers_order):
        order, buyer, _, _ = two_farmers_order
        services.order_cancel(order_id=order.pk, actor=buyer)
        client = client_for(buyer)
        placed = Notification.objects.get(user=buyer, kind="order_placed")

        first = client.post(f"{NOTIFICATIONS}{placed.pk}/read/")
        assert first.status_code == 200
        assert first.json()["read_at"] is not None
        again = client.post(f"{NOTIFICATIONS}{placed.pk}/read/")
        assert again.json()["read_at"] == first.json()["read_at"]  # the first read time stays

        unread = client.get(NOTIFICATIONS, {"unread": "true"}).json()["results"]
        assert [n["kind"] for n in unread] == ["order_cancelled"]
        read = client.get(NOTIFICATIONS, {"unread": "false"}).json()["results"]
        assert [n["id"] for n in read] == [placed.pk]

    def test_a_filter_left_empty_filters_nothing(self, client_for, two_farmers_order):
        order, buyer, _, _ = two_farmers_order
        services.order_cancel(order_id=order.pk, actor=buyer)
        client = client_for(buyer)
        every = client.get(NOTIFICATIONS).json()
        assert every["count"] == 2
        assert client.get(NOTIFICATIONS, {"unread": "", "order": ""}).json() == every

    def test_unread_other_than_true_or_false_is_400_not_every_notification(
        self, client_for, two_farmers_order
    ):
        order, buyer, _, _ = two_farmers_order
        services.order_cancel(order_id=order.pk, actor=buyer)
        client = client_for(buyer)
        client.post(
            f"{NOTIFICATIONS}{Notification.objects.get(user=buyer, kind='order_placed').pk}/read/"
        )
        counts = {
            value: client.get(NOTIFICATIONS, {"unread": value}).json().get("count")
            for value in ("true", "True", "1", "false", "0", "")
        }
        assert counts == {"true": 1, "True": 1, "1": 1, "false": 1, "0": 1, "": 2}
        for value in ("yes", "null", "2", "truth"):
            response = client.get(NOTIFICATIONS, {"unread": value})
            assert response.status_code == 400, value
            assert response.json()["code"] == "validation_error"
            assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
                ("unread", "invalid")
            ]

    def test_read_all_marks_only_own_unread(self, client_for, two_farmers_order):
        order, buyer, farmer_a, _ = two_farmers_order
        services.order_cancel(order_id=order.pk, actor=buyer)
        client = client_for(buyer)

        response = client.post(f"{NOTIFICATIONS}read-all/")

        assert response.status_code == 200
        assert response.json() == {"marked": 2}
        assert client.post(f"{NOTIFICATIONS}read-all/").json() == {"marked": 0}
        assert client.get(NOTIFICATIONS, {"unread": "true"}).json()["count"] == 0
        assert Notification.objects.filter(user=farmer_a, read_at__isnull=True).count() == 2

    def test_read_all_up_to_the_newest_seen_leaves_later_ones_unread(
        self, client_for, two_farmers_order
    ):
        """The app marks read what it showed: a notification that came after its list was
        read (the order cancelled meanwhile), or while a retry of the request waited for a
        network, stays unread for the buyer to see."""
        order, buyer, _, _ = two_farmers_order
        client = client_for(buyer)
        shown = client.get(NOTIFICATIONS).json()["results"]
        assert [n["kind"] for n in shown] == ["order_placed"]
        services.order_cancel(order_id=order.pk, actor=buyer)  # told after the list was read

        response = client.post(
            f"{NOTIFICATIONS}read-all/", {"newest_seen": shown[0]["id"]}, format="json"
        )

        assert (response.status_code, response.json()) == (200, {"marked": 1})
        unread = client.get(NOTIFICATIONS, {"unread": "true"}).json()["results"]
        assert [n["kind"] for n in unread] == ["order_cancelled"]
        assert client.post(f"{NOTIFICATIONS}read-all/", {}, format="json").json() == {"marked": 1}

    @pytest.mark.parametrize("seen", [0, -1, "abc", 1.5, True, 2**63])
    def test_read_all_with_a_newest_seen_that_is_no_id_is_400_and_marks_nothing(
        self, client_for, two_farmers_order, seen
    ):
        _, buyer, _, _ = two_farmers_order

        response = client_for(buyer).post(
            f"{NOTIFICATIONS}read-all/", {"newest_seen": seen}, format="json"
        )

        assert response.status_code == 400
        assert [e["field"] for e in response.json()["errors"]] == ["newest_seen"]
        assert Notification.objects.filter(user=buyer, read_at__isnull=True).count() == 1

    def test_someone_elses_notification_is_404_and_stays_unread(
        self, client_for, two_farmers_order
    ):
        _, buyer, farmer_a, _ = two_farmers_order
        theirs = Notification.objects.get(user=buyer)

        response = client_for(farmer_a).post(f"{NOTIFICATIONS}{theirs.pk}/read/")

        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        theirs.refresh_from_db()
        assert theirs.read_at is None
        assert client_for(buyer).post(f"{NOTIFICATIONS}999999/read/").status_code == 404

    def test_anonymous_is_401(self, api):
        assert api.get(NOTIFICATIONS).status_code == 401
        assert api.post(f"{NOTIFICATIONS}read-all/").status_code == 401


# ------------------------------------------------------------------ sending
def notify_each(*bodies: str) -> list[Notification]:
    user = BuyerFactory()
    return [
        notifications.notify(user=user, kind=NotificationKind.ORDER_DELIVERED, title="t", body=b)
        for b in bodies
    ]


@pytest.mark.django_db
class TestSendingInProcess:
    def test_the_task_twice_sends_once(self, recording):
        buyer = BuyerFactory()
        notification = notifications.notify(
            user=buyer, kind=NotificationKind.ORDER_DELIVERED, title="已送达", body="…"
        )

        assert notifications.send_notifications() == 1
        assert notifications.send_notifications() == 0

        assert recording == [(notification.pk, buyer.phone)]
        notification.refresh_from_db()
        assert notification.sent_at is not None
        assert (notification.attempts, notification.retry_at) == (0, None)

    def test_a_waiting_message_stands_for_every_change_until_a_worker_takes_it(self):
        pending_taken(notifications.SEND_TASK)
        assert notifications.wake_sender() is True
        assert notifications.wake_sender() is False  # one is waiting: it will send this too
        notifications.send_notifications()  # a worker took it
        assert notifications.wake_sender() is True
        pending_taken(notifications.SEND_TASK)

    def test_a_refused_notification_waits_for_its_retry_and_holds_up_no_other(self, settings):
        settings.NOTIFICATION_BACKEND = f"{__name__}.RefusesBBackend"
        RefusesBBackend.sent, RefusesBBackend.refused = [], 0
        first, second, third = notify_each("a", "b", "c")

        assert notifications.send_notifications() == 2

        assert RefusesBBackend.sent == [first.pk, third.pk]
        first.refresh_from_db()
        second.refresh_from_db()
        assert second.sent_at is None
        assert second.attempts == 1
        assert second.retry_at == first.sent_at + timedelta(minutes=1)
        # Not due before then: the next runs leave it alone.
        assert list(notifications.notifications_due()) == []
        assert notifications.send_notifications() == 0
        assert RefusesBBackend.refused == 1
        # Its time comes: tried again, refused again, and the wait doubles.
        Notification.objects.filter(pk=second.pk).update(retry_at=timezone.now())
        assert notifications.send_notifications() == 0
        assert RefusesBBackend.refused == 2
        before = timezone.now()
        second.refresh_from_db()
        assert second.attempts == 2
        assert before + timedelta(minutes=1) < second.retry_at <= before + timedelta(minutes=2)

    def test_retries_wait_longer_each_time_and_stop_after_max_attempts(self, settings):
        settings.NOTIFICATION_BACKEND = f"{__name__}.FailingBackend"
        FailingBackend.calls = 0
        (notification,) = notify_each("x")
        waits = []
        for attempt in range(1, notifications.MAX_ATTEMPTS + 1):
            started = timezone.now()
            assert notifications.send_notifications() == 0
            notification.refresh_from_db()
            assert notification.attempts == attempt
            waits.append(round((notification.retry_at - started).total_seconds() / 60))
            Notification.objects.filter(pk=notification.pk).update(retry_at=timezone.now())

        assert waits == [1, 2, 4, 8, 16, 30]
        assert FailingBackend.calls == notifications.MAX_ATTEMPTS
        # Given up: never due again, never sent, the sweeper does not wake the sender for it.
        assert list(notifications.notifications_due()) == []
        assert notifications.send_notifications() == 0
        assert notifications.send_unsent_notifications() is False
        assert FailingBackend.calls == notifications.MAX_ATTEMPTS
        notification.refresh_from_db()
        assert notification.sent_at is None

    def test_given_up_notifications_leave_the_senders_queue(self, settings):
        """The sender's queue (the partial index it walks every minute, oldest first) holds
        only what may still be sent: a notification given up on, its last try failed or
        unsent for a day (a gateway down that long), is marked given up and leaves it, so
        the queue does not grow by every number that never takes a message."""
        settings.NOTIFICATION_BACKEND = f"{__name__}.FailingBackend"
        refused, stale, fresh = notify_each("refused", "stale", "fresh")
        Notification.objects.filter(pk=refused.pk).update(attempts=notifications.MAX_ATTEMPTS - 1)
        a_day_ago = timezone.now() - notifications.SEND_WITHIN - timedelta(seconds=1)
        Notification.objects.filter(pk=stale.pk).update(created_at=a_day_ago)

        notifications.send_notifications()  # refused and fresh tried, both refused
        assert notifications.send_unsent_notifications() is False  # fresh waits for its retry

        rows = {n.pk: n for n in Notification.objects.all()}
        assert rows[refused.pk].given_up_at is not None
        assert rows[refused.pk].attempts == notifications.MAX_ATTEMPTS
        assert rows[stale.pk].given_up_at is not None  # never tried: too old
        assert rows[stale.pk].attempts == 0
        assert (rows[fresh.pk].given_up_at, rows[fresh.pk].attempts) == (None, 1)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'notification_unsent'"
            )
            (definition,) = cursor.fetchone()
        assert "sent_at IS NULL" in definition
        assert "given_up_at IS NULL" in definition

    def test_out_of_time_keeps_what_went_out_and_puts_the_slow_one_behind(self, settings):
        """The gateway hangs on one message until the task's soft time limit: those sent
        before it are marked sent (never sent again), it counts as a failed try, and the
        next run sends the others first."""
        settings.NOTIFICATION_BACKEND = f"{__name__}.SlowGatewayBackend"
        SlowGatewayBackend.delivered = []
        first, slow, last = notify_each("a", "slow", "c")

        assert notifications.send_notifications() == 1
        assert notifications.send_notifications() == 1

        assert SlowGatewayBackend.delivered == [first.pk, last.pk]
        rows = Notification.objects.order_by("pk")
        assert [(n.sent_at is not None, n.attempts) for n in rows] == [
            (True, 0),
            (False, 1),
            (True, 0),
        ]
        assert rows.get(pk=slow.pk).retry_at is not None

    def test_what_a_sender_that_died_claimed_is_due_again_once_its_claim_is_over(self, settings):
        """No lock stands for the claim of a sender sending: its lease does. A worker that
        died before marking what it sent leaves it to be sent again after the lease."""
        settings.NOTIFICATION_BACKEND = f"{__name__}.DyingBackend"
        (notification,) = notify_each("x")

        with pytest.raises(SystemExit):
            notifications.send_notifications()

        notification.refresh_from_db()
        assert (notification.sent_at, notification.attempts) == (None, 0)
        assert list(notifications.notifications_due()) == []  # claimed: no other sender
        later = notification.retry_at + timedelta(seconds=1)
        assert list(notifications.notifications_due(now=later)) == [notification]
        assert notification.retry_at - notification.created_at >= notifications.SENDING_LEASE

    def test_a_database_error_in_the_backend_holds_up_no_other(self, settings):
        """An adapter that keeps the provider's receipt in the database, whose statement
        fails for one message: that one counts as a failed try, the others are sent."""
        settings.NOTIFICATION_BACKEND = f"{__name__}.ReceiptStoringBackend"
        ReceiptStoringBackend.sent = []
        a, b, c = notify_each("a", "b", "c")

        assert notifications.send_notifications() == 2

        assert ReceiptStoringBackend.sent == [a.pk, c.pk]
        b.refresh_from_db()
        assert (b.sent_at, b.attempts) == (None, 1)

    def test_a_full_batch_wakes_the_sender_for_the_rest(self, recording, monkeypatch):
        monkeypatch.setattr(notifications, "SEND_BATCH", 2)
        written = notify_each("a", "b", "c", "d", "e")
        pending_taken(notifications.SEND_TASK)

        assert notifications.send_notifications() == 2
        assert notifications.wake_sender() is False  # the full batch woke it: one is waiting
        assert notifications.send_notifications() == 2
        assert notifications.send_notifications() == 1
        assert notifications.wake_sender() is True  # the last batch was not full: none waits
        pending_taken(notifications.SEND_TASK)

        assert [pk for pk, _ in recording] == [x.pk for x in written]

    def test_due_is_unsent_never_tried_or_retry_time_come_and_recent(self):
        user = BuyerFactory()
        now = timezone.now()

        def make(age: timedelta, **fields) -> Notification:
            notification = notifications.notify(
                user=user, kind=NotificationKind.ORDER_DELIVERED, title="t", body="b"
            )
            Notification.objects.filter(pk=notification.pk).update(created_at=now - age, **fields)
            return notification

        fresh = make(timedelta(minutes=1))
        retry_now = make(timedelta(minutes=20), attempts=2, retry_at=now)
        make(timedelta(minutes=20), attempts=1, retry_at=now + timedelta(seconds=1))
        make(timedelta(minutes=20), sent_at=now)
        make(timedelta(days=1, seconds=1))  # too late to be news
        make(timedelta(minutes=20), attempts=notifications.MAX_ATTEMPTS, retry_at=now)

        assert list(notifications.notifications_due(now=now)) == [fresh, retry_now]

    def test_the_sweeper_wakes_the_sender_only_when_something_is_due(self):
        pending_taken(notifications.SEND_TASK)
        assert notifications.send_unsent_notifications() is False
        assert notifications.wake_sender() is True  # the sweeper sent nothing
        pending_taken(notifications.SEND_TASK)

        Notification.objects.create(
            user=BuyerFactory(), kind=NotificationKind.ORDER_DELIVERED, title="t", body="b"
        )  # written without waking the sender, as if its message was lost
        assert notifications.send_unsent_notifications() is True
        assert notifications.wake_sender() is False  # the sweeper's message is waiting
        pending_taken(notifications.SEND_TASK)


@pytest.mark.django_db(transaction=True)
def test_a_sender_skips_the_rows_another_holds_instead_of_waiting(recording):
    first, second, third = notify_each("a", "b", "c")
    holding, release = threading.Event(), threading.Event()

    def other_sender() -> None:
        try:
            with transaction.atomic():
                Notification.objects.select_for_update().get(pk=second.pk)
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_sender)
    thread.start()
    try:
        assert holding.wait(10)
        assert notifications.send_notifications() == 2
        assert [pk for pk, _ in recording] == [first.pk, third.pk]
    finally:
        release.set()
        thread.join(10)

    assert notifications.send_notifications() == 1
    assert [pk for pk, _ in recording] == [first.pk, third.pk, second.pk]


class HangingGatewayBackend:
    """The gateway takes its time over each message: until the test lets it go."""

    sending = threading.Event()
    release = threading.Event()
    sent: list[int] = []

    def send(self, notification: Notification) -> None:
        HangingGatewayBackend.sending.set()
        HangingGatewayBackend.release.wait(10)
        HangingGatewayBackend.sent.append(notification.pk)


@pytest.mark.django_db(transaction=True)
def test_marking_read_does_not_wait_for_a_slow_gateway_sending_them(settings, client_for):
    """The sender held its rows locked while the gateway sent them (up to the task's 50 s
    for a batch): a buyer marking them read, one or all, waited that long for an answer."""
    settings.NOTIFICATION_BACKEND = f"{__name__}.HangingGatewayBackend"
    HangingGatewayBackend.sending.clear()
    HangingGatewayBackend.release.clear()
    HangingGatewayBackend.sent = []
    first, second = notify_each("a", "b")
    buyer = first.user

    def sender() -> None:
        try:
            notifications.send_notifications()
        finally:
            connection.close()

    thread = threading.Thread(target=sender)
    thread.start()
    gateway_gives_up = threading.Timer(3, HangingGatewayBackend.release.set)
    gateway_gives_up.start()
    try:
        assert HangingGatewayBackend.sending.wait(10)
        client = client_for(buyer)
        started = time.monotonic()
        one = client.post(f"{NOTIFICATIONS}{first.pk}/read/")
        every = client.post(f"{NOTIFICATIONS}read-all/")
        waited = time.monotonic() - started
    finally:
        HangingGatewayBackend.release.set()
        gateway_gives_up.cancel()
        thread.join(20)

    assert waited < 1.5
    assert (one.status_code, one.json()["read_at"] is not None) == (200, True)
    assert every.json() == {"marked": 1}
    # and each was still sent once, and marked so
    assert HangingGatewayBackend.sent == [first.pk, second.pk]
    rows = Notification.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk")
    assert [(n.sent_at is not None, n.read_at is not None, n.retry_at) for n in rows] == [
        (True, True, None),
        (True, True, None),
    ]
    assert notifications.send_notifications() == 0


def wait_until_sent(notification_ids, timeout: float = 20) -> list[Notification]:
    deadline = time.monotonic() + timeout
    while True:
        rows = list(Notification.objects.filter(pk__in=notification_ids).order_by("id"))
        if all(row.sent_at for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
class TestWithTheWorker:
    def test_the_worker_sends_every_notification_of_a_placed_order(self, celery_worker):
        buyer, farmer_a, farmer_b = BuyerFactory(), FarmerFactory(), FarmerFactory()
        order = place_order(buyer, (create_listing(farmer_a), "1"), (create_listing(farmer_b), "1"))
        ids = list(Notification.objects.filter(order=order).values_list("id", flat=True))
        assert len(ids) == 3

        sent = wait_until_sent(ids)

        assert [row.sent_at is not None for row in sent] == [True, True, True]

    def test_the_sweeper_redrives_a_lost_notification(self, celery_worker):
        # Written without its task (a lost message), a while ago.
        lost = Notification.objects.create(
            user=BuyerFactory(), kind=NotificationKind.ORDER_DELIVERED, title="t", body="b"
        )
        Notification.objects.filter(pk=lost.pk).update(
            created_at=timezone.now() - timedelta(minutes=30)
        )

        assert notifications.send_unsent_notifications() is True

        (row,) = wait_until_sent([lost.pk])
        assert row.sent_at is not None
