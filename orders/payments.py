"""Prepaid orders: the payment provider's signed notices, and the expiry of unpaid orders.

A provider is anything with a `name`, `verify(headers, raw_body)` and `parse(raw_body)`
(`PaymentProvider`); `get_provider()` picks the one named by settings.PAYMENT_PROVIDER. The
sandbox provider stands in for a real one until it plugs in here. Cash on delivery never
passes through this module: it is recorded as collected at delivery.
"""

import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from listings.selectors import listings_for_update
from marketplace.exceptions import ConflictError, DomainError, violated_constraint
from orders import errors, notifications, selectors
from orders.models import (
    PAYMENT_SUCCEEDED,
    REFUND_SUCCEEDED,
    LineStatus,
    Order,
    OrderLine,
    OrderStatus,
    PaymentEvent,
    PaymentStatus,
)
from orders.services import PAYMENT_EXPIRED_REASON, order_cancel, order_lock, order_transition

logger = logging.getLogger(__name__)

_EVENT_ONCE = "paymentevent_once_per_provider"  # the UniqueConstraint on PaymentEvent


@dataclass(frozen=True)
class PaymentNotice:
    """What a provider told us, in our terms. `payload` is the provider's body as sent."""

    provider: str
    event_id: str
    kind: str
    order_id: int
    amount: Decimal
    currency: str
    payload: dict[str, Any]


class PaymentProvider(Protocol):
    name: str

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Raise DomainError (401) unless the body is signed by the provider, and recently."""

    def parse(self, raw_body: bytes) -> PaymentNotice:
        """The notice in a verified body; DomainError `parse_error` (400) if it is not one."""


def _invalid_signature(detail: str) -> DomainError:
    return DomainError(errors.INVALID_SIGNATURE, detail, status_code=401)


def _parse_error(detail: str) -> DomainError:
    return DomainError(errors.PARSE_ERROR, detail)


# Matched whole (fullmatch): `$` also matches before a final newline, and "CNY\n" passed as
# a currency, to fail the insert into its three-character column with a 500.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_AMOUNT = Decimal("1e10")  # PaymentEvent.amount: 12 digits, 2 after the point
_CENT = Decimal("0.01")
_MAX_ID = 2**63 - 1  # bigint primary keys


def _signature_parts(header: str) -> tuple[int, list[str]]:
    """`t=<unix seconds>,v1=<hex>[,v1=<hex>…]`: one timestamp, one or more signatures (more
    than one while the provider rotates its secret); other schemes are ignored."""
    timestamps, signatures = [], []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]) or not signatures:
        raise _invalid_signature("X-Signature must read t=<unix time>,v1=<hex HMAC-SHA256>.")
    return int(timestamps[0]), signatures


class SandboxProvider:
    """A Stripe-style signed webhook. The provider sends
        X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>
    and a JSON body
        {"id": "evt_…", "type": "payment.succeeded", "order": 42, "amount": "25.00",
         "currency": "CNY"}
    (amount as a decimal string, as everywhere in our API; "refund.succeeded" with the
    amount paid back when staff refund the buyer from the provider's side). The timestamp
    is signed too, so a captured request replays only within the tolerance window; inside
    it, the event id makes a replay a no-op."""

    name = "sandbox"
    signature_header = "X-Signature"

    def __init__(self, *, secret: str, tolerance_seconds: int) -> None:
        if not secret:
            raise ImproperlyConfigured("PAYMENT_WEBHOOK_SECRET is empty.")
        self._secret = secret.encode()
        self._tolerance = tolerance_seconds

    @classmethod
    def from_settings(cls) -> "SandboxProvider":
        return cls(
            secret=settings.PAYMENT_WEBHOOK_SECRET,
            tolerance_seconds=settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS,
        )

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """The signature is checked before the timestamp, so `signature_expired` is only
        ever said of a body the provider really signed."""
        timestamp, signatures = _signature_parts(headers.get(self.signature_header, ""))
        signed = f"{timestamp}.".encode() + raw_body
        expected = hmac.new(self._secret, signed, hashlib.sha256).hexdigest()
        # Each candidate is compared in constant time, and all of them are compared.
        matches = [hmac.compare_digest(expected, s) for s in signatures if _HEX_SHA256.fullmatch(s)]
        if not any(matches):
            raise _invalid_signature("The signature does not match the body.")
        if abs(time.time() - timestamp) > self._tolerance:
            raise DomainError(
                errors.SIGNATURE_EXPIRED,
                f"The signature is older (or newer) than {self._tolerance} seconds.",
                status_code=401,
            )

    def parse(self, raw_body: bytes) -> PaymentNotice:
        payload = _json_object(raw_body)
        return PaymentNotice(
            provider=self.name,
            event_id=_text(payload, "id", max_length=100),
            kind=_text(payload, "type", max_length=30),
            order_id=_order_id(payload),
            amount=_amount(payload),
            currency=_currency(payload),
            payload=payload,
        )


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A number Python reads as infinity (1e400): PostgreSQL's jsonb cannot store it."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a double")
    return value


def _json_object(raw_body: bytes) -> dict[str, Any]:
    """The body as a JSON object that PostgreSQL can store whole (it keeps the payload)."""
    try:
        payload = json.loads(raw_body, parse_constant=_refuse_constant, parse_float=_finite_float)
        storable = _storable(payload)
    except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, NaN, 1e400, deep nesting
        raise _parse_error("The body is not valid JSON.") from error
    if not isinstance(payload, dict):
        raise _parse_error("The body must be a JSON object.")
    if not storable:
        raise _parse_error("The body holds a NUL character or an unpaired surrogate.")
    return payload


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # valid JSON escapes; not in PostgreSQL text


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return not _UNSTORABLE.search(value)
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


def _text(payload: dict[str, Any], field: str, *, max_length: int) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise _parse_error(f"`{field}` must be a string of 1 to {max_length} characters.")
    return value


def _order_id(payload: dict[str, Any]) -> int:
    value = payload.get("order")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_ID:
        raise _parse_error("`order` must be an order id.")
    return value


def _amount(payload: dict[str, Any]) -> Decimal:
    value = payload.get("amount")
    try:
        amount = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        amount = None
    if (
        amount is None
        or not amount.is_finite()
        or not 0 <= amount < _MAX_AMOUNT
        or amount != amount.quantize(_CENT)
    ):
        raise _parse_error('`amount` must be a decimal string such as "25.00".')
    return amount


def _currency(payload: dict[str, Any]) -> str:
    value = payload.get("currency")
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise _parse_error("`currency` must be a three-letter code such as CNY.")
    return value


PROVIDERS: dict[str, Callable[[], PaymentProvider]] = {
    SandboxProvider.name: SandboxProvider.from_settings,
}


def get_provider() -> PaymentProvider:
    """The provider named by settings.PAYMENT_PROVIDER; a real one registers in PROVIDERS."""
    make = PROVIDERS.get(settings.PAYMENT_PROVIDER)
    if make is None:
        raise ImproperlyConfigured(
            f"PAYMENT_PROVIDER={settings.PAYMENT_PROVIDER!r}; known: {', '.join(PROVIDERS)}."
        )
    return make()


def _lock_order_of(notice: PaymentNotice) -> Order:
    try:
        return order_lock(notice.order_id)
    except Order.DoesNotExist:
        raise DomainError(
            errors.UNKNOWN_ORDER, f"No order {notice.order_id}.", extra={"order": notice.order_id}
        ) from None


def _mark_paid(order: Order) -> None:
    order.payment_status = PaymentStatus.PAID
    order.paid_at = timezone.now()
    order.save(update_fields=["payment_status", "paid_at", "updated_at"])


def _insert_event(order: Order, notice: PaymentNotice) -> bool:
    """Store the notice; False when the provider sent this event id before. The unique
    constraint decides, not a prior lookup, so two deliveries racing cannot both insert."""
    try:
        with transaction.atomic():  # a savepoint: a duplicate undoes this insert only
            PaymentEvent.objects.create(
                provider=notice.provider,
                event_id=notice.event_id,
                order=order,
                kind=notice.kind,
                amount=notice.amount,
                currency=notice.currency,
                payload=notice.payload,
            )
    except IntegrityError as error:
        if violated_constraint(error) != _EVENT_ONCE:
            raise
        _check_same_event(notice)
        return False
    return True


def _check_same_event(notice: PaymentNotice) -> None:
    """An event id sent again is the same event (a provider's retry) only if it says the
    same thing: the same order, kind, amount and currency. One that says something else
    is refused with 409 `event_id_reused` rather than acknowledged as received: the
    provider (or whoever reads its delivery log) learns it was not recorded."""
    stored = PaymentEvent.objects.values_list("order_id", "kind", "amount", "currency").get(
        provider=notice.provider, event_id=notice.event_id
    )
    if stored != (notice.order_id, notice.kind, notice.amount, notice.currency):
        raise ConflictError(
            errors.EVENT_ID_REUSED,
            f"Event {notice.event_id} was received before with another order, kind or "
            "amount; this notice was not recorded.",
            extra={"event_id": notice.event_id},
        )


def _check_refund(order: Order, notice: PaymentNotice) -> None:
    """A refund (already inserted, so the caller's transaction undoes it when this raises)
    is more than nothing, in CNY, and no more than the buyer paid and had not been paid back
    before it. That is read under the order's lock, so two refunds racing see each other.
    It may be more than `refund_due`: staff may give money back for goods the buyer was
    unhappy with."""
    refundable = selectors.order_amount_held(order.pk) + notice.amount  # before this one
    if notice.currency != settings.CURRENCY or not 0 < notice.amount <= refundable:
        raise DomainError(
            errors.REFUND_AMOUNT_INVALID,
            f"Order {order.pk} holds {refundable} {settings.CURRENCY} paid and not refunded; "
            f"the refund was {notice.amount} {notice.currency}.",
            extra={"refundable": str(refundable), "received": str(notice.amount)},
        )


def _check_amount(order: Order, notice: PaymentNotice) -> None:
    """A payment for an order awaiting it is its total, in CNY. Money for an order no
    longer awaiting payment (paid already, cancelled, expired, its total lowered since by a
    rejected line) is recorded whatever the amount, as long as it is CNY: it was taken from
    the buyer, and refund_due must show it."""
    if order.status != OrderStatus.AWAITING_PAYMENT:
        expected = "more than 0.00"
        wrong = notice.amount <= 0
    else:
        expected = str(order.total)
        wrong = notice.amount != order.total
    if wrong or notice.currency != settings.CURRENCY:
        raise DomainError(
            errors.PAYMENT_AMOUNT_MISMATCH,
            f"Order {order.pk} (total {order.total} {settings.CURRENCY}, {order.status}) "
            f"takes a payment of {expected} {settings.CURRENCY}; the payment was "
            f"{notice.amount} {notice.currency}.",
            extra={"expected": expected, "received": str(notice.amount)},
        )


@transaction.atomic
def payment_record(*, notice: PaymentNotice) -> Order:
    """Record a verified provider notice once per (provider, event id), and apply it.

    - The order is locked first, so a payment and the expiry sweep of the same order queue
      one behind the other and see each other's outcome.
    - An event id seen before changes nothing: the order is returned as it is. One that
      says something else than the first time (another order, kind or amount) is 409
      `event_id_reused`, and nothing is stored.
    - `payment.succeeded` for an order awaiting payment must carry exactly its total in
      CNY; otherwise `payment_amount_mismatch` (400) and nothing is stored, not even the
      event. For an order no longer awaiting payment any amount in CNY is recorded: the
      buyer paid it (twice, or after a line was rejected), and refund_due shows it.
    - `refund.succeeded` is money paid back: more than nothing, in CNY, and at most what
      the buyer paid and was not paid back yet; otherwise `refund_amount_invalid` (400) and
      nothing is stored. It lowers the order's `refund_due` (never below nothing) and the
      buyer is told; the order's status stays.
    - An order awaiting payment becomes paid and `placed` (an event row with the provider),
      and the buyer and its farmers are notified.
    - An order no longer awaiting payment is not placed again. A cancelled (or expired)
      one not yet paid is marked paid all the same, so it reads "cancelled, paid": a refund
      is owed, as for an order paid and then cancelled. One already paid by another event
      is left as it is. The event is kept as evidence either way, and the buyer is told
      that what is owed back (refund_due) will be. Other kinds of event are kept and change
      nothing.
    - An unknown order id is `unknown_order` with 400, not 404: the endpoint exists, the
      notice is what is wrong, and a provider (or an operator reading its delivery log)
      should not take it for a missing webhook URL.
    """
    order = _lock_order_of(notice)
    if not _insert_event(order, notice):
        return order
    if notice.kind == REFUND_SUCCEEDED:
        _check_refund(order, notice)
        notifications.notify_refund_sent(order, notice.amount)
        return order
    if notice.kind != PAYMENT_SUCCEEDED:
        return order
    _check_amount(order, notice)
    if order.status != OrderStatus.AWAITING_PAYMENT:
        logger.warning(
            "Payment %s:%s for order %s that is %s (%s): recorded, not applied; refund it.",
            notice.provider,
            notice.event_id,
            order.pk,
            order.status,
            order.payment_status,
        )
        if order.status == OrderStatus.CANCELLED and order.payment_status != PaymentStatus.PAID:
            _mark_paid(order)
        order.amount_held = selectors.order_amount_held(order.pk)
        if (refund_due := selectors.order_refund_due(order)) > 0:
            notifications.notify_payment_to_refund(order, notice.amount, refund_due)
        return order
    _mark_paid(order)
    order = order_transition(
        order=order, to_status=OrderStatus.PLACED, actor=None, reason=f"paid via {notice.provider}"
    )
    notifications.notify_payment_received(order)
    return order


@transaction.atomic
def _expire_batch(*, now: datetime, batch: int, failed: set[int]) -> tuple[int, int]:
    """(orders taken, orders cancelled) of one batch; adds to `failed` the orders whose
    cancel failed, which the sweep's later batches pass over."""
    due = list(
        Order.objects.select_for_update(of=("self",), skip_locked=True, no_key=True)
        .filter(status=OrderStatus.AWAITING_PAYMENT, payment_due_at__lte=now)
        .exclude(pk__in=failed)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch]
    )
    # Lock every listing of the batch up front, in primary-key order: cancelling order by
    # order would take them in no global order and could deadlock with a buyer's order.
    listing_ids = OrderLine.objects.filter(order_id__in=due, status=LineStatus.ACTIVE).values_list(
        "listing_id", flat=True
    )
    listings_for_update(sorted(set(listing_ids)))
    cancelled = 0
    for order_id in due:
        try:
            with transaction.atomic():  # one order that cannot be cancelled stops no other
                order_cancel(
                    order_id=order_id, actor=None, reason=PAYMENT_EXPIRED_REASON, expired=True
                )
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: this batch rolls back, the next sweep redoes it
        except Exception:
            logger.exception(
                "unpaid order %s could not expire; the next sweep tries again", order_id
            )
            failed.add(order_id)
        else:
            cancelled += 1
    return len(due), cancelled


def orders_expire_unpaid(*, now: datetime | None = None, batch: int = 100) -> int:
    """Cancel prepaid orders still awaiting payment at their due time, and restock them.

    Each batch is one transaction holding its orders with FOR UPDATE SKIP LOCKED: an order a
    payment is being recorded for right now is skipped (the payment wins, or the next sweep
    finds it still unpaid), and two sweepers never take the same order. Cancelling goes
    through order_cancel with the reason `payment_expired` (the buyer is told so), which
    gives the stock back exactly once. A payment arriving after
    the due time but before the sweep still counts. An order whose cancel fails is logged
    and left for the next sweep; the others expire. Returns how many orders expired."""
    now = now or timezone.now()
    expired, failed = 0, set()
    while True:
        taken, cancelled = _expire_batch(now=now, batch=batch, failed=failed)
        expired += cancelled
        if taken < batch:  # each batch cancels or passes over what it takes: this ends
            return expired
