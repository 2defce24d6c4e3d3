"""Notifications: what the system tells a user, and how it reaches them.

A notification row is written in the transaction of the change it reports (`notify` and the
`notify_*` message builders), so it exists exactly when the change does. The unsent rows are
the sender's queue: after that commit a task sends those that are due, 50 at a time (waking
another task for the rest), through the configured backend (settings.NOTIFICATION_BACKEND,
a dotted path to a class with `send(notification)`); the logging backend stands in until an
SMS or e-mail adapter plugs in there. One task message stands for all: a change sends none
while one is still waiting for a worker (`send_unless_pending`). A notification the backend
refuses is tried again later, on its own, while the others go on (`retry_at`, at most
MAX_ATTEMPTS times); a sweeper sends a message when something is due and none came (a lost
message, a retry whose time came).

Prepaid orders: farmers hear of one once it is paid (before that it may still expire), so
`notify_order_placed` tells them only about an order placed outright, and
`notify_payment_received` tells them about a paid one.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from marketplace.accounts.models import User
from marketplace.celery import pending_taken, send_unless_pending
from marketplace.db import clip, insert
from marketplace.exceptions import DomainError
from orders import selectors
from orders.models import (
    LineStatus,
    Notification,
    NotificationKind,
    Order,
    OrderLine,
    OrderStatus,
    PaymentMethod,
)

logger = logging.getLogger(__name__)

TITLE_MAX = Notification._meta.get_field("title").max_length
BODY_MAX = Notification._meta.get_field("body").max_length
SEND_TASK = "orders.notifications.send_notifications"
SEND_BATCH = 50  # notifications per send task (their rows stay locked while it sends them)
# A failed send waits RETRY_FIRST, then twice as long each time, up to RETRY_LONGEST; after
# MAX_ATTEMPTS failures, or once a day old (news that late is noise), it is no longer sent.
RETRY_FIRST = timedelta(minutes=1)
RETRY_LONGEST = timedelta(minutes=30)
MAX_ATTEMPTS = 6
SEND_WITHIN = timedelta(days=1)
# A sender's claim on the notifications it is sending (their `retry_at` meanwhile): longer
# than the send task's time limit, so only a sender that crashed loses its claim.
SENDING_LEASE = timedelta(minutes=2)


# --------------------------------------------------------------------------- backends
class NotificationBackend(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver one notification (user and order are loaded). Raise
        NotificationBackendError, or an OSError such as a timeout, when it may work later."""


class NotificationBackendError(Exception):
    """The backend could not deliver now; the notification is tried again later."""


class LoggingBackend:
    """The default: one log line per notification, nothing leaves the server."""

    def send(self, notification: Notification) -> None:
        logger.info(
            "notification %s %s to user %s (order %s): %s",
            notification.pk,
            notification.kind,
            notification.user_id,
            notification.order_id,
            notification.title,
        )


def get_backend() -> NotificationBackend:
    return import_string(settings.NOTIFICATION_BACKEND)()


# --------------------------------------------------------------------------- writes
def _build(
    *,
    user_id: int,
    kind: str,
    title: str,
    body: str,
    order: Order | None = None,
    order_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> Notification:
    return Notification(
        user_id=user_id,
        kind=kind,
        order_id=order.pk if order is not None else order_id,
        title=clip(title, TITLE_MAX),
        body=clip(body, BODY_MAX),
        data=data or {},
    )


def store(notifications: list[Notification]) -> list[Notification]:
    """Insert in the caller's transaction; after it commits (and never, if it rolls back)
    the sender runs, by a message of this change's own or by one still waiting: publishing
    a message costs about as much CPU as building and inserting the notifications. Nothing
    to store sends nothing."""
    if not notifications:
        return notifications
    insert(notifications)
    transaction.on_commit(wake_sender, robust=True)  # lost: the sweeper sends it
    return notifications


def _tell_buyer(
    order: Order, *, kind: str, title: str, body: str, data: dict
) -> list[Notification]:
    """One message to the order's buyer alone, stored."""
    return store(
        [_build(user_id=order.buyer_id, kind=kind, title=title, body=body, order=order, data=data)]
    )


def wake_sender() -> bool:
    """Have a worker send what is due, unless a message for that is already waiting."""
    return send_unless_pending(SEND_TASK, [], pending_seconds=settings.NOTIFICATION_PENDING_SECONDS)


def notify(
    *,
    user: User,
    kind: str,
    title: str,
    body: str,
    order: Order | None = None,
    data: dict[str, Any] | None = None,
) -> Notification:
    """Tell one user something, in the caller's transaction; sent after it commits."""
    (notification,) = store(
        [_build(user_id=user.pk, kind=kind, title=title, body=body, order=order, data=data)]
    )
    return notification


def notifications_due(*, now: datetime | None = None) -> QuerySet[Notification]:
    """Unsent and due, oldest first: never tried, or failed and its retry time has come;
    not given up on, and less than SEND_WITHIN old."""
    now = now or timezone.now()
    return Notification.objects.filter(
        Q(retry_at__isnull=True) | Q(retry_at__lte=now),
        sent_at__isnull=True,
        given_up_at__isnull=True,
        attempts__lt=MAX_ATTEMPTS,
        created_at__gte=now - SEND_WITHIN,
    ).order_by("pk")


def notifications_send_due(*, limit: int) -> int:
    """Send up to `limit` due notifications, each once; returns how many were sent.

    They are claimed first, in a transaction of their own: their rows locked in id order,
    skipping rows another sender is claiming, and given a `retry_at` SENDING_LEASE ahead,
    so no other sender finds them due while this one sends them. No row stays locked while
    the backend sends (a user marking them read would wait for the gateway, up to the
    task's time limit). User and order are joined without locks. When `limit` rows were
    due, more may be: the sender is woken once these are claimed, so another worker takes
    the next rows meanwhile. A notification the backend refuses (any exception: it may be
    this one's fault, e.g. a bad number) is logged and given a later `retry_at`; the others
    go on. Out of time, the sender stops after marking what went out, and gives back the
    ones it did not try. A crash before the sent ones are marked sends them again once
    their lease is over (the sweeper finds them due again): only then is one sent twice."""
    now = timezone.now()
    with transaction.atomic():
        # The ids first, from the notifications alone (the partial index `notification_unsent`
        # in id order): joined in the same statement, the planner may join every unsent row
        # to its user and order before it sorts and takes `limit` of them.
        ids = list(
            notifications_due(now=now)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        Notification.objects.filter(pk__in=ids).update(retry_at=now + SENDING_LEASE)
    if len(ids) == limit:
        wake_sender()
    due = list(
        Notification.objects.filter(pk__in=ids).select_related("user", "order").order_by("pk")
    )
    backend = get_backend()
    sent: list[int] = []
    tried = 0
    for notification in due:
        tried += 1
        try:
            with transaction.atomic():  # an adapter's database error spoils its try only
                backend.send(notification)
        except SoftTimeLimitExceeded:
            # The task's time is up (the gateway hangs on this one, or is slow): what
            # went out is marked sent, this one counts as a failed try (so it goes
            # behind the others), and the rest wait for the next run. Raised on, the
            # ones sent would stay unmarked and be sent again once their lease is over.
            logger.warning("notification %s: the sender ran out of time", notification.pk)
            _failed(notification, now)
            break
        except Exception:
            logger.warning("notification %s not sent", notification.pk, exc_info=True)
            _failed(notification, now)
            continue
        sent.append(notification.pk)
    if sent:
        Notification.objects.filter(pk__in=sent).update(sent_at=now, retry_at=None)
    if untried := [notification.pk for notification in due[tried:]]:
        Notification.objects.filter(pk__in=untried).update(retry_at=None)  # due again
    return len(sent)


def _failed(notification: Notification, now: datetime) -> None:
    attempts = notification.attempts + 1
    wait = min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_LONGEST)
    Notification.objects.filter(pk=notification.pk).update(
        attempts=attempts,
        retry_at=now + wait,
        given_up_at=now if attempts >= MAX_ATTEMPTS else None,  # its last try
    )


def notifications_give_up_stale(*, now: datetime | None = None) -> int:
    """Notifications not sent within SEND_WITHIN (never tried: the gateway or the workers
    were down that long) are given up, which takes them out of the sender's queue (the
    partial index `notification_unsent`) as a last try failed does. Returns how many."""
    now = now or timezone.now()
    return Notification.objects.filter(
        sent_at__isnull=True, given_up_at__isnull=True, created_at__lt=now - SEND_WITHIN
    ).update(given_up_at=now)


def notification_mark_read(*, user: User, notification_id: int) -> Notification:
    """Mark one of the user's own notifications read; again changes nothing (the first
    read time stays). Someone else's answers 404."""
    own = Notification.objects.filter(user=user, pk=notification_id)
    own.filter(read_at__isnull=True).update(read_at=timezone.now())
    notification = own.first()
    if notification is None:
        raise DomainError("not_found", "No such notification.", status_code=404)
    return notification


def notification_mark_all_read(*, user: User, newest_seen: int | None = None) -> int:
    """Mark every unread notification of the user read, or, given `newest_seen` (the id of
    the newest one the app showed), those up to it: one told since the app read its list,
    or while the request waited for a network, stays unread. Returns how many it marked."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if newest_seen is not None:
        unread = unread.filter(pk__lte=newest_seen)
    return unread.update(read_at=timezone.now())


# --------------------------------------------------------------------------- tasks
@shared_task(soft_time_limit=50, time_limit=60)
def send_notifications() -> int:
    """Send the next SEND_BATCH due notifications; returns how many this task sent. A short
    task, so routing messages queued meanwhile are not held up behind a long one; when the
    batch was full it has woken the sender for the rest (see notifications_send_due). Any
    number of these may run at once, or again: each takes rows the others don't hold, and
    sent ones are done."""
    pending_taken(SEND_TASK)  # what is written from now on needs a message of its own
    return notifications_send_due(limit=SEND_BATCH)


@shared_task(soft_time_limit=20, time_limit=30)
def send_unsent_notifications() -> bool:
    """The sweeper: when something is due (a message was lost, or a retry's time has come),
    wake the sender. Returns whether anything was due. What is too old to send is given up
    first (notifications_give_up_stale)."""
    notifications_give_up_stale()
    if not notifications_due().exists():
        return False
    wake_sender()
    return True


# --------------------------------------------------------------------------- messages
UNIT_ZH = {
    "kg": "公斤",
    "jin": "斤",
    "crate": "筐",
    "box": "箱",
    "bag": "袋",
    "piece": "个",
    "bunch": "把",
    "dozen": "打",
    "liter": "升",
}


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _refund_due_now(order: Order) -> Decimal:
    """What the buyer of the order (locked, its total as it is now) is owed back, as the
    order shows it (orders.selectors.order_refund_due)."""
    order.amount_held = selectors.order_amount_held(order.pk)
    return selectors.order_refund_due(order)


def _lines_by_farmer(
    order: Order, status: str, lines: Iterable[OrderLine] | None = None
) -> dict[int, list[OrderLine]]:
    """The order's lines in `status` by farmer, in id order: those given (the caller has
    them in hand), or read from the database."""
    if lines is None:
        lines = order.lines.filter(status=status).order_by("id")
    else:
        lines = sorted((line for line in lines if line.status == status), key=lambda x: x.pk)
    by_farmer: dict[int, list[OrderLine]] = defaultdict(list)
    for line in lines:
        by_farmer[line.farmer_id].append(line)
    return dict(by_farmer)


def _farmers_know(order: Order) -> bool:
    """Farmers were told of the order: it was placed outright, or paid."""
    return order.payment_method != PaymentMethod.PREPAID or order.paid_at is not None


FarmerBody = Callable[[int, str, str], str]


def _for_farmers(
    order: Order,
    lines_by_farmer: Mapping[int, Iterable[OrderLine]],
    *,
    kind: str,
    title: str,
    body: FarmerBody,
    extra: Mapping[int, dict[str, Any]] | None = None,
) -> list[Notification]:
    """One notification per farmer; `body(farmer_id, items, subtotal)` writes its text from
    the farmer's lines (titles with quantities) and their subtotal."""
    notifications = []
    for farmer_id, farmer_lines in lines_by_farmer.items():
        lines = list(farmer_lines)
        subtotal = sum((line.subtotal for line in lines), Decimal("0.00"))
        items = "、".join(
            f"{line.title} {line.quantity.normalize():f}{UNIT_ZH.get(line.unit, line.unit)}"
            for line in lines
        )
        data = {
            "order": order.pk,
            "lines": [line.pk for line in lines],
            "subtotal": _money(subtotal),
            **(extra or {}).get(farmer_id, {}),
        }
        notifications.append(
            _build(
                user_id=farmer_id,
                kind=kind,
                title=title,
                body=body(farmer_id, items, _money(subtotal)),
                order=order,
                data=data,
            )
        )
    return notifications


def _new_order_for_farmers(
    order: Order, lines: Iterable[OrderLine] | None = None
) -> list[Notification]:
    return _for_farmers(
        order,
        _lines_by_farmer(order, LineStatus.ACTIVE, lines),
        kind=NotificationKind.ORDER_PLACED,
        title="新订单",
        body=lambda _, items, subtotal: (
            f"订单 #{order.pk}：{items}，小计 ¥{subtotal}。请及时备货。"
        ),
    )


def notify_order_placed(
    order: Order, lines: Iterable[OrderLine] | None = None
) -> list[Notification]:
    """The buyer; and each farmer with lines in it, unless it waits for a prepayment.
    `lines`: the order's lines as just written (saves reading them back)."""
    awaiting = order.status == OrderStatus.AWAITING_PAYMENT
    if awaiting:
        due = timezone.localtime(order.payment_due_at).strftime("%H:%M")
        title, body = "订单待付款", f"订单 #{order.pk} 已创建，请在 {due} 前支付 ¥{order.total}。"
    else:
        title, body = "订单已下单", f"订单 #{order.pk} 已下单，合计 ¥{order.total}。"
    buyer = _build(
        user_id=order.buyer_id,
        kind=NotificationKind.ORDER_PLACED,
        title=title,
        body=body,
        order=order,
        data={
            "order": order.pk,
            "status": order.status,
            "total": _money(order.total),
            "payment_due_at": timezone.localtime(order.payment_due_at).isoformat()
            if awaiting
            else None,
        },
    )
    farmers = [] if awaiting else _new_order_for_farmers(order, lines)
    return store([buyer, *farmers])


def notify_payment_received(order: Order) -> list[Notification]:
    """The buyer; and the farmers, who learn of the order now."""
    buyer = _build(
        user_id=order.buyer_id,
        kind=NotificationKind.PAYMENT_RECEIVED,
        title="付款成功",
        body=f"订单 #{order.pk} 已收到付款 ¥{order.total}。",
        order=order,
        data={"order": order.pk, "total": _money(order.total)},
    )
    return store([buyer, *_new_order_for_farmers(order)])


def notify_payment_expired(order: Order) -> list[Notification]:
    """The buyer only: the farmers never heard of an unpaid order."""
    return _tell_buyer(
        order,
        kind=NotificationKind.PAYMENT_EXPIRED,
        title="订单已过期",
        body=f"订单 #{order.pk} 未在规定时间内付款，已自动取消。",
        data={"order": order.pk, "total": _money(order.total)},
    )


def notify_refund_sent(order: Order, amount: Decimal) -> list[Notification]:
    """The buyer: money the provider paid back to them for the order."""
    return _tell_buyer(
        order,
        kind=NotificationKind.REFUND_SENT,
        title="退款成功",
        body=f"订单 #{order.pk} 已退款 ¥{_money(amount)}，请留意到账。",
        data={"order": order.pk, "amount": _money(amount)},
    )


def notify_payment_to_refund(
    order: Order, amount: Decimal, refund_due: Decimal
) -> list[Notification]:
    """The buyer: money the provider took for an order that no longer waited for it (called
    off, expired, paid already), which is owed back to them."""
    return _tell_buyer(
        order,
        kind=NotificationKind.PAYMENT_TO_REFUND,
        title="收到款项，将退款",
        body=f"订单 #{order.pk} 收到付款 ¥{_money(amount)}，该订单无需此款项，"
        f"¥{_money(refund_due)} 将退还给您。",
        data={"order": order.pk, "amount": _money(amount), "refund_due": _money(refund_due)},
    )


def _paid_back(refund_due: Decimal) -> str:
    """The sentence telling a buyer whose order costs nothing now (called off, failed) that
    what they paid comes back; none when they paid nothing."""
    return f"已付的 ¥{_money(refund_due)} 将退还给您。" if refund_due else ""


def _paid_too_much(refund_due: Decimal) -> str:
    """The sentence telling a buyer whose order now costs less than they paid what comes
    back; none when nothing does."""
    return f"多付的 ¥{_money(refund_due)} 将退还给您。" if refund_due else ""


def notify_order_delivered(order: Order) -> list[Notification]:
    """The buyer: their order (locked) delivered, or partly, the goods not brought not
    charged: the new total, and what of their money is owed back (`refund_due`) when they
    paid for more."""
    refund_due = _refund_due_now(order)
    if order.status == OrderStatus.DELIVERED:
        title, body = "订单已送达", f"订单 #{order.pk} 已送达。"
    else:
        title = "订单部分送达"
        body = (
            f"订单 #{order.pk} 部分送达，未能送达的商品不收费，订单合计 ¥{_money(order.total)}。"
            f"{_paid_too_much(refund_due)}"
        )
    return _tell_buyer(
        order,
        kind=NotificationKind.ORDER_DELIVERED,
        title=title,
        body=body,
        data={
            "order": order.pk,
            "status": order.status,
            "total": _money(order.total),
            "refund_due": _money(refund_due),
        },
    )


def notify_line_rejected(order: Order, line: OrderLine) -> list[Notification]:
    """The buyer: which line, why, the new total, and what of their money is owed back
    (`refund_due`) when they paid for it already."""
    reason = f"：{line.reject_reason}" if line.reject_reason else ""
    refund_due = _refund_due_now(order)
    return _tell_buyer(
        order,
        kind=NotificationKind.LINE_REJECTED,
        title="商品无法供应",
        body=(
            f"订单 #{order.pk} 中的「{line.title}」被农户拒绝{reason}。"
            f"该商品不收费，订单合计 ¥{order.total}。{_paid_too_much(refund_due)}"
        ),
        data={
            "order": order.pk,
            "line": line.pk,
            "reason": line.reject_reason,
            "total": _money(order.total),
            "refund_due": _money(refund_due),
        },
    )


def notify_goods_not_delivered(
    order: Order, lines: list[OrderLine], *, reason: str, restocked: Collection[int]
) -> list[Notification]:
    """The buyer: which goods could not be brought after every try, that they are not
    charged, and the new total. Each farmer whose goods they were: which of theirs left the
    order, and whether they are back in their stock (`restocked`: the farmers whose goods
    never left the farm). `reason` is staff's, or a day's plan's (a key of
    NOT_PLANNED_BECAUSE, told in words; the data keeps the key). A buyer who paid for
    them already is told what of their money is owed back (`refund_due`)."""
    because = NOT_PLANNED_BECAUSE.get(reason, reason)
    titles = "、".join(f"「{line.title}」" for line in lines)
    refund_due = _refund_due_now(order)
    buyer = _build(
        user_id=order.buyer_id,
        kind=NotificationKind.GOODS_NOT_DELIVERED,
        title="商品未能送达",
        body=(
            f"订单 #{order.pk} 中的{titles}多次未能取送（{because}），"
            f"不收费，订单合计 ¥{order.total}。{_paid_too_much(refund_due)}"
        ),
        order=order,
        data={
            "order": order.pk,
            "lines": [line.pk for line in lines],
            "reason": reason,
            "total": _money(order.total),
            "refund_due": _money(refund_due),
        },
    )
    farmers = []
    for back_in_stock in (True, False):
        theirs = [line for line in lines if (line.farmer_id in restocked) == back_in_stock]
        if not theirs:
            continue
        tried = "取货" if back_in_stock else "送达买家"
        then = "已退回您的库存，可继续出售" if back_in_stock else "不再计入该订单"
        farmers += _for_farmers(
            order,
            _lines_by_farmer(order, LineStatus.CANCELLED, theirs),
            kind=NotificationKind.GOODS_NOT_DELIVERED,
            title=f"商品未能{tried}",
            body=lambda _, items, subtotal, tried=tried, then=then: (
                f"订单 #{order.pk} 中您的 {items} 多次未能{tried}（{because}），"
                f"已从订单中取消（¥{subtotal}），{then}。"
            ),
            extra={
                line.farmer_id: {"reason": reason, "restocked": back_in_stock} for line in theirs
            },
        )
    return store([buyer, *farmers])


# Why a day's plan left goods out (logistics.routing.UnassignedReason), as the buyer and
# the farmers are told when that fails them for good.
NOT_PLANNED_BECAUSE = {
    "no_vehicle": "服务站当天没有可用车辆",
    "no_vehicle_with_skills": "服务站没有能运送该商品的车辆（如冷藏车）",
    "too_heavy": "超出所有车辆的载重",
    "outside_shifts": "不在任何车辆的工作时间内",
    "no_room": "车辆运力或时间不足",
}


# Why a delivery moved, as notify_delivery_rescheduled tells the buyer (the key is in data).
RESCHEDULED_BECAUSE = {
    "pickup_failed": "在农户处取货未成功",
    "delivery_failed": "上次配送未成功",
    "not_planned": "当日未能排上车辆",
    "transfer_late": "货物转运到站较晚",
    "day_missed": "原定当天未能取送",
}


def notify_delivery_rescheduled(
    moves: Iterable[tuple[int, int, date, date]], *, reason: str
) -> list[Notification]:
    """The buyer of each order whose expected delivery moved later: why (a key of
    RESCHEDULED_BECAUSE), the new day and the day it replaces. `moves` are (order id, buyer
    id, the day before, the new day), one per order: goods of one order moving together are
    one change to its buyer."""
    because = RESCHEDULED_BECAUSE[reason]
    return store(
        [
            _build(
                user_id=buyer_id,
                kind=NotificationKind.DELIVERY_RESCHEDULED,
                title="送达日期推迟",
                body=(
                    f"订单 #{order_id} 因{because}，改为 {new:%m月%d日} 送达"
                    f"（此前预计 {old:%m月%d日}）。"
                ),
                order_id=order_id,
                data={
                    "order": order_id,
                    "delivery_date": new.isoformat(),
                    "previous_delivery_date": old.isoformat(),
                    "reason": reason,
                },
            )
            for order_id, buyer_id, old, new in moves
        ]
    )


def notify_order_cancelled(
    order: Order, *, lines: Iterable[OrderLine], reason: str = "", rejected: OrderLine | None = None
) -> list[Notification]:
    """The buyer; and the farmers whose lines the cancel called off (`lines`, now
    `cancelled`), if they had heard of the order. A rejected line's farmer already knows,
    and so does one whose goods failed for good before (their lines were cancelled then,
    and they were told `goods_not_delivered`).
    The reason goes to the buyer only: typed by a buyer or staff, it is not a message to
    send farmers (once a real SMS backend is plugged in, a free channel to their phones).
    A cancel by the last line `rejected` tells the buyer which line went and why, in the
    words of the other messages (`reason` is the event's). A buyer who paid is told that
    what they paid is owed back (`refund_due`), as when the payment comes after the cancel
    (notify_payment_to_refund): which of the two came first is a race the buyer never sees."""
    if rejected is not None:
        why = f"：{rejected.reject_reason}" if rejected.reject_reason else ""
        body = f"订单 #{order.pk} 已取消：「{rejected.title}」被农户拒绝{why}。订单中已无其他商品。"
    else:
        because = f"（{reason}）" if reason else ""
        body = f"订单 #{order.pk} 已取消{because}。"
    refund_due = _refund_due_now(order)  # all that was paid: a cancelled order costs nothing
    body += _paid_back(refund_due)
    buyer = _build(
        user_id=order.buyer_id,
        kind=NotificationKind.ORDER_CANCELLED,
        title="订单已取消",
        body=body,
        order=order,
        data={"order": order.pk, "reason": reason, "refund_due": _money(refund_due)},
    )
    farmers = _for_farmers_called_off(
        order,
        lines,
        kind=NotificationKind.ORDER_CANCELLED,
        title="订单已取消",
        body=lambda _, items, __: f"订单 #{order.pk} 已取消：{items} 无需备货。",
    )
    return store([buyer, *farmers])


def _for_farmers_called_off(
    order: Order, lines: Iterable[OrderLine], *, kind: str, title: str, body: FarmerBody
) -> list[Notification]:
    """_for_farmers of the farmers whose lines were called off (`lines`, now `cancelled`),
    if they had heard of the order; none otherwise."""
    if not _farmers_know(order):
        return []
    called_off = _lines_by_farmer(order, LineStatus.CANCELLED, lines)
    return _for_farmers(order, called_off, kind=kind, title=title, body=body)


# Why an order failed before it went anywhere, as notify_order_failed tells the buyer.
FAILED_BECAUSE = {
    "not_routable": "服务站连日无法安排取送",
}


def notify_order_failed(
    order: Order, *, lines: Iterable[OrderLine], reason: str
) -> list[Notification]:
    """The buyer: the order failed (why: a key of FAILED_BECAUSE), nothing is charged, and
    what they paid is owed back (`refund_due`); and the farmers whose lines it called off
    (`lines`, now `cancelled`), if they had heard of the order: their goods are back in
    stock, not to be prepared."""
    refund_due = selectors.order_amount_held(order.pk)  # a failed order costs nothing
    buyer = _build(
        user_id=order.buyer_id,
        kind=NotificationKind.ORDER_FAILED,
        title="订单未能配送",
        body=f"订单 #{order.pk} 因{FAILED_BECAUSE[reason]}，已关闭，不收费。"
        + _paid_back(refund_due),
        order=order,
        data={"order": order.pk, "reason": reason, "refund_due": _money(refund_due)},
    )
    farmers = _for_farmers_called_off(
        order,
        lines,
        kind=NotificationKind.ORDER_FAILED,
        title="订单已关闭",
        body=lambda _, items, __: (
            f"订单 #{order.pk} 未能安排取送，已关闭：{items} 无需备货，已退回您的库存。"
        ),
    )
    return store([buyer, *farmers])


def order_confirmed_messages(
    order: Order,
    *,
    delivery_date: date | None = None,
    pickup_dates: Mapping[int, date] | None = None,
    lines_by_farmer: Mapping[int, Iterable[OrderLine]] | None = None,
) -> list[Notification]:
    """The buyer (with the promised delivery date) and each farmer with active lines (with
    their pickup date, from `pickup_dates` keyed by farmer id), built but not stored: routing
    stores a whole batch of orders' messages at once (`store`). `lines_by_farmer` saves reading the
    active lines again when the caller has them."""
    when = f"，预计 {delivery_date:%m月%d日} 送达" if delivery_date else ""
    buyer = _build(
        user_id=order.buyer_id,
        kind=NotificationKind.ORDER_CONFIRMED,
        title="订单已确认",
        body=f"订单 #{order.pk} 已确认{when}。",
        order=order,
        data={
            "order": order.pk,
            "total": _money(order.total),
            "delivery_date": delivery_date.isoformat() if delivery_date else None,
        },
    )
    pickup_dates = pickup_dates or {}

    def farmer_body(farmer_id: int, items: str, subtotal: str) -> str:
        day = pickup_dates.get(farmer_id)
        pickup = f"，{day:%m月%d日} 上门取货" if day else ""
        return f"订单 #{order.pk} 已确认：{items}，小计 ¥{subtotal}{pickup}。"

    farmers = _for_farmers(
        order,
        _lines_by_farmer(order, LineStatus.ACTIVE) if lines_by_farmer is None else lines_by_farmer,
        kind=NotificationKind.ORDER_CONFIRMED,
        title="订单已确认",
        body=farmer_body,
        extra={farmer: {"pickup_date": day.isoformat()} for farmer, day in pickup_dates.items()},
    )
    return [buyer, *farmers]


PICKUP_TIMES_LISTED = 3  # more pickups on a day: the first time and how many
PICKUP_ORDERS_LISTED = 3  # more orders: these and how many in all


def _pickup_times(etas: list[datetime]) -> str:
    """When the vehicles come, as a farmer reads it on a small screen, before "上门取货":
    "约 08:10 ", "约 08:10、09:30 分 2 次", or past PICKUP_TIMES_LISTED "约 08:10 起分 5 次"."""
    times = sorted({f"{eta:%H:%M}" for eta in etas})
    if len(times) == 1:
        return f"约 {times[0]} "
    if len(times) <= PICKUP_TIMES_LISTED:
        return f"约 {'、'.join(times)} 分 {len(times)} 次"
    return f"约 {times[0]} 起分 {len(times)} 次"


def _orders_listed(order_ids: list[int]) -> str:
    listed = "、".join(f"#{pk}" for pk in order_ids[:PICKUP_ORDERS_LISTED])
    more = len(order_ids) > PICKUP_ORDERS_LISTED
    return f"订单 {listed}" + (f" 等 {len(order_ids)} 单" if more else "")


def notify_pickups_scheduled(stops: Iterable[tuple[Any, list[Any]]]) -> list[Notification]:
    """Each farmer with goods at planned pickup stops, once per day however many stops their
    goods make (refrigerated goods go apart, a load too heavy for one vehicle is split): the
    day, the times the vehicles are expected (the first one and how many, past a few) and
    the orders; each stop with its time and orders in `data["stops"]`. `stops` are (stop,
    its shipments) as the plan wrote them; a day planned again tells them again, with the
    new times."""
    visits: dict[tuple[int, date], list[tuple[datetime, Any, set[int]]]] = defaultdict(list)
    for stop, shipments in stops:
        orders_of: dict[int, set[int]] = defaultdict(set)
        for shipment in shipments:
            orders_of[shipment.farmer_id].add(shipment.order_id)
        eta = timezone.localtime(stop.eta)
        for farmer_id, order_ids in orders_of.items():
            visits[(farmer_id, eta.date())].append((eta, stop, order_ids))
    messages = []
    for (farmer_id, day), at in sorted(visits.items()):
        at.sort(key=lambda visit: (visit[0], visit[1].pk))
        order_ids = sorted(set().union(*(ids for _, _, ids in at)))
        times = _pickup_times([eta for eta, _, _ in at])
        messages.append(
            _build(
                user_id=farmer_id,
                kind=NotificationKind.PICKUP_SCHEDULED,
                title="取货时间已定",
                body=f"{day:%m月%d日} {times}上门取货（{_orders_listed(order_ids)}），请备好货。",
                order_id=order_ids[0] if len(order_ids) == 1 else None,
                data={
                    "date": day.isoformat(),
                    "eta": at[0][0].isoformat(),
                    "orders": order_ids,
                    "stops": [
                        {
                            "stop": stop.pk,
                            "route": stop.route_id,
                            "eta": eta.isoformat(),
                            "orders": sorted(ids),
                        }
                        for eta, stop, ids in at
                    ],
                },
            )
        )
    return store(messages)


def notify_ready_for_collection(order: Order, center: Any) -> list[Notification]:
    """The buyer of an order collected at their service center: all its goods wait there."""
    return _tell_buyer(
        order,
        kind=NotificationKind.READY_FOR_COLLECTION,
        title="可以自提了",
        body=f"订单 #{order.pk} 的商品已到 {center.name}，请凭收货码自提。",
        data={"order": order.pk, "service_center": center.pk},
    )


def notify_out_for_delivery(stops: Iterable[tuple[Any, int, int]]) -> list[Notification]:
    """The buyer of each delivery stop on a route that has set out: today, about when.
    `stops` are (stop, its order's id, its buyer's id)."""
    messages = [
        _build(
            user_id=buyer_id,
            kind=NotificationKind.OUT_FOR_DELIVERY,
            title="订单配送中",
            body=(
                f"订单 #{order_id} 已出发配送，预计 {timezone.localtime(stop.eta):%H:%M} 送达，"
                "请准备好收货码。"
            ),
            order_id=order_id,
            data={
                "order": order_id,
                "route": stop.route_id,
                "eta": timezone.localtime(stop.eta).isoformat(),
            },
        )
        for stop, order_id, buyer_id in stops
    ]
    return store(messages)
