"""Notifications: what the system tells a user, and how it reaches them.

A notification row is written in the transaction of the change it reports (`notify` and the
`notify_*` message builders), so it exists exactly when the change does. After that commit a
task sends it through the configured backend (settings.NOTIFICATION_BACKEND, a dotted path to
a class with `send(notification)`); the logging backend stands in until an SMS or e-mail
adapter plugs in there. A sweeper re-drives what a lost message left unsent.

Prepaid orders: farmers hear of one once it is paid (before that it may still expire), so
`notify_order_placed` tells them only about an order placed outright, and
`notify_payment_received` tells them about a paid one.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from marketplace.accounts.models import User
from marketplace.exceptions import DomainError
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
# The sweeper re-sends what is still unsent this long after it was written (the task has
# had its retries by then), and gives up on what is older than a day: news that late is noise.
RESEND_AFTER = timedelta(minutes=15)
RESEND_WITHIN = timedelta(days=1)
RESEND_BATCH = 500
SEND_BATCH = 50  # notifications per send task


# --------------------------------------------------------------------------- backends
class NotificationBackend(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver one notification (user and order are loaded). Raise
        NotificationBackendError, or an OSError such as a timeout, when it may work later."""


class NotificationBackendError(Exception):
    """The backend could not deliver now; the task retries with backoff."""


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
def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _build(
    *,
    user_id: int,
    kind: str,
    title: str,
    body: str,
    order: Order | None = None,
    data: dict[str, Any] | None = None,
) -> Notification:
    return Notification(
        user_id=user_id,
        kind=kind,
        order=order,
        title=_clip(title, TITLE_MAX),
        body=_clip(body, BODY_MAX),
        data=data or {},
    )


def store(notifications: list[Notification]) -> list[Notification]:
    """Insert in the caller's transaction; after it commits (and never, if it rolls back)
    one task sends them, or one per SEND_BATCH: a message costs about a millisecond to
    publish and a task a few more to run, so a change tells its buyer and farmers in one."""
    Notification.objects.bulk_create(notifications)
    for batch in _send_batches([notification.pk for notification in notifications]):
        send_notifications.delay_on_commit(batch)
    return notifications


def _send_batches(ids: list[int]) -> list[list[int]]:
    """The ids in order, SEND_BATCH to a send task."""
    return [ids[start : start + SEND_BATCH] for start in range(0, len(ids), SEND_BATCH)]


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


def notifications_send(*, notification_ids: Iterable[int]) -> int:
    """Send these notifications through the backend, each once, and return how many this
    call sent. Their rows stay locked (in id order) while they are sent and marked, so a
    duplicated or redelivered task waits, then finds them sent; those already sent, or
    deleted with their order, are skipped. The locks are held across the backend calls on
    purpose (the task's time limit bounds them), and on these rows only: user and order
    are joined without locks. When the backend fails on one, those sent before it are
    still marked, then the error goes up for the task to retry the rest. Only a crash
    between the sends and the commit sends any twice."""
    sent: list[Notification] = []
    failure: Exception | None = None
    with transaction.atomic():
        pending = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("user", "order")
            .filter(pk__in=list(notification_ids), sent_at__isnull=True)
            .order_by("pk")
        )
        backend = get_backend()
        for notification in pending:
            try:
                backend.send(notification)
            except Exception as exc:
                failure = exc
                break
            sent.append(notification)
        if sent:
            now = timezone.now()
            Notification.objects.filter(pk__in=[x.pk for x in sent]).update(sent_at=now)
    if failure is not None:
        raise failure
    return len(sent)


def notification_mark_read(*, user: User, notification_id: int) -> Notification:
    """Mark one of the user's own notifications read; again changes nothing (the first
    read time stays). Someone else's answers 404."""
    own = Notification.objects.filter(user=user, pk=notification_id)
    own.filter(read_at__isnull=True).update(read_at=timezone.now())
    notification = own.first()
    if notification is None:
        raise DomainError("not_found", "No such notification.", status_code=404)
    return notification


def notification_mark_all_read(*, user: User) -> int:
    """Mark every unread notification of the user read; returns how many were unread."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    return unread.update(read_at=timezone.now())


# --------------------------------------------------------------------------- tasks
@shared_task(
    autoretry_for=(NotificationBackendError, OSError, SoftTimeLimitExceeded),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=20,
    time_limit=30,
)
def send_notifications(notification_ids: list[int]) -> int:
    """Returns how many this call sent. Idempotent: a retry (or a redelivered message)
    skips those already sent."""
    return notifications_send(notification_ids=notification_ids)


def notifications_unsent(*, now: datetime | None = None) -> QuerySet[Notification]:
    """Unsent, written long enough ago that its task is lost, and recent enough to matter."""
    now = now or timezone.now()
    return Notification.objects.filter(
        sent_at__isnull=True,
        created_at__lte=now - RESEND_AFTER,
        created_at__gte=now - RESEND_WITHIN,
    ).order_by("pk")


@shared_task(soft_time_limit=50, time_limit=60)
def send_unsent_notifications() -> int:
    """The sweeper: enqueue again what a lost message (or exhausted retries) left unsent."""
    ids = list(notifications_unsent().values_list("pk", flat=True)[:RESEND_BATCH])
    for batch in _send_batches(ids):
        send_notifications.delay(batch)
    return len(ids)


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
            "payment_due_at": order.payment_due_at.isoformat() if awaiting else None,
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
    return store(
        [
            _build(
                user_id=order.buyer_id,
                kind=NotificationKind.PAYMENT_EXPIRED,
                title="订单已过期",
                body=f"订单 #{order.pk} 未在规定时间内付款，已自动取消。",
                order=order,
                data={"order": order.pk, "total": _money(order.total)},
            )
        ]
    )


def notify_line_rejected(order: Order, line: OrderLine) -> list[Notification]:
    """The buyer: which line, why, and the new total."""
    reason = f"：{line.reject_reason}" if line.reject_reason else ""
    return store(
        [
            _build(
                user_id=order.buyer_id,
                kind=NotificationKind.LINE_REJECTED,
                title="商品无法供应",
                body=(
                    f"订单 #{order.pk} 中的「{line.title}」被农户拒绝{reason}。"
                    f"该商品不收费，订单合计 ¥{order.total}。"
                ),
                order=order,
                data={
                    "order": order.pk,
                    "line": line.pk,
                    "reason": line.reject_reason,
                    "total": _money(order.total),
                },
            )
        ]
    )


def notify_order_cancelled(order: Order, *, reason: str = "") -> list[Notification]:
    """The buyer; and the farmers whose lines the cancel called off (those lines are now
    `cancelled`; a rejected line's farmer already knows), if they had heard of the order."""
    because = f"（{reason}）" if reason else ""
    buyer = _build(
        user_id=order.buyer_id,
        kind=NotificationKind.ORDER_CANCELLED,
        title="订单已取消",
        body=f"订单 #{order.pk} 已取消{because}。",
        order=order,
        data={"order": order.pk, "reason": reason},
    )
    farmers = []
    if _farmers_know(order):
        farmers = _for_farmers(
            order,
            _lines_by_farmer(order, LineStatus.CANCELLED),
            kind=NotificationKind.ORDER_CANCELLED,
            title="订单已取消",
            body=lambda _, items, __: f"订单 #{order.pk} 已取消{because}：{items} 无需备货。",
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
