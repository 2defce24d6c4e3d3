"""Writes of orders: placement, the status machine, cancellation, rejected lines, reviews."""

import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from psycopg.errors import UniqueViolation

from listings.models import WHOLE_UNITS, Listing, ListingStatus
from listings.selectors import listings_for_update
from listings.services import listings_restock, listings_take_stock
from logistics.models import Shipment, Village
from marketplace.accounts.models import Role, User
from marketplace.celery import send_unless_pending
from marketplace.db import clip, insert
from marketplace.exceptions import ConflictError, DomainError
from orders import errors, notifications
from orders.models import (
    DeliveryMethod,
    LineStatus,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    Review,
)

MAX_LINES = 50
ROUTE_ORDER_TASK = "logistics.tasks.route_order"
CENT = Decimal("0.01")
PAYMENT_EXPIRED_REASON = "payment_expired"  # the reason the expiry sweep cancels with
NOT_ROUTABLE_REASON = "not_routable"  # the reason routing's give-up fails an order with

# The one table of allowed status changes. Services move orders only through
# order_transition; nothing else writes Order.status.
TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.AWAITING_PAYMENT: frozenset({OrderStatus.PLACED, OrderStatus.CANCELLED}),
    OrderStatus.PLACED: frozenset(
        {OrderStatus.CONFIRMED, OrderStatus.CANCELLED, OrderStatus.FAILED}
    ),
    OrderStatus.CONFIRMED: frozenset(
        {OrderStatus.SCHEDULED, OrderStatus.IN_TRANSIT, OrderStatus.CANCELLED, OrderStatus.FAILED}
    ),
    OrderStatus.SCHEDULED: frozenset(
        {OrderStatus.CONFIRMED, OrderStatus.IN_TRANSIT, OrderStatus.CANCELLED, OrderStatus.FAILED}
    ),
    OrderStatus.IN_TRANSIT: frozenset(
        {OrderStatus.DELIVERED, OrderStatus.PARTIALLY_DELIVERED, OrderStatus.FAILED}
    ),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.PARTIALLY_DELIVERED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.FAILED: frozenset(),
}
# Before the first pickup an order can still be called off.
CANCELLABLE = frozenset(
    {OrderStatus.AWAITING_PAYMENT, OrderStatus.PLACED, OrderStatus.CONFIRMED, OrderStatus.SCHEDULED}
)


@dataclass(frozen=True)
class LineRequest:
    listing_id: int
    quantity: Decimal
    seen_price: Decimal | None = None  # the unit price the buyer saw, when they say it


def delivery_fee(*, delivery_method: str, subtotal: Decimal, farmer_count: int) -> Decimal:
    """The delivery fee rule, in CNY:
    - pickup at the buyer's service center: free;
    - home delivery: 5.00 for the first farmer plus 2.00 for each further farmer (each is a
      separate farm pickup), free when the goods come to 99.00 or more.
    """
    if delivery_method == DeliveryMethod.PICKUP or subtotal >= settings.FREE_DELIVERY_FROM:
        return Decimal("0.00")
    return settings.DELIVERY_FEE_BASE + settings.DELIVERY_FEE_PER_EXTRA_FARMER * (farmer_count - 1)


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _new_delivery_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _check_request_shape(buyer: User, lines: list[LineRequest]) -> None:
    if buyer.role != Role.BUYER:
        raise DomainError(errors.NOT_A_BUYER, "Only buyers place orders.", status_code=403)
    if not lines:
        raise DomainError(errors.NO_LINES, "An order needs at least one line.")
    if len(lines) > MAX_LINES:
        raise DomainError(errors.TOO_MANY_LINES, f"At most {MAX_LINES} lines per order.")
    ids = [line.listing_id for line in lines]
    if len(set(ids)) != len(ids):
        raise DomainError(errors.DUPLICATE_LINES, "Each listing may appear once per order.")


def _check_lines(buyer: User, lines: list[LineRequest], listings: dict[int, Listing]) -> None:
    """Every rule that holds for one line, checked on locked rows. Short lines are collected
    and refused together, so the buyer learns about all of them at once."""
    today = timezone.localdate()
    short, repriced = [], []
    for line in lines:
        listing = listings.get(line.listing_id)
        # A draft is its farmer's only: to anyone else it is no listing (its page is 404).
        if listing is None or (
            listing.status == ListingStatus.DRAFT and listing.farmer_id != buyer.pk
        ):
            raise DomainError(
                errors.LISTING_NOT_FOUND,
                f"No listing {line.listing_id}.",
                extra={"listing": line.listing_id},
            )
        if listing.farmer_id == buyer.pk:
            raise DomainError(errors.OWN_LISTING, "You cannot order your own listing.")
        available = listing.status in (ListingStatus.ACTIVE, ListingStatus.SOLD_OUT) and (
            listing.available_until is None or listing.available_until >= today
        )
        if not available:
            raise DomainError(
                errors.LISTING_UNAVAILABLE,
                f"Listing {listing.pk} is not on offer.",
                extra={"listing": listing.pk},
            )
        # What is left below the minimum is sold too, all of it: else it could never go.
        minimum = min(listing.min_order_quantity, listing.quantity_available)
        if line.quantity < minimum:
            raise DomainError(
                errors.BELOW_MIN_ORDER,
                f"Listing {listing.pk} sells at least {minimum} {listing.unit}.",
                extra={"listing": listing.pk, "min_order_quantity": str(minimum)},
            )
        if line.quantity % 1 and listing.unit in WHOLE_UNITS:
            raise DomainError(
                errors.QUANTITY_NOT_WHOLE,
                f"Listing {listing.pk} sells whole {listing.unit}s.",
                extra={"listing": listing.pk, "unit": listing.unit},
            )
        if line.seen_price is not None and line.seen_price != listing.price:
            repriced.append(
                {
                    "listing": listing.pk,
                    "seen": f"{line.seen_price:.2f}",
                    "price": str(listing.price),
                }
            )
        if line.quantity > listing.quantity_available:
            short.append(
                {
                    "listing": listing.pk,
                    "requested": str(line.quantity),
                    "available": str(listing.quantity_available),
                }
            )
    if repriced:  # the buyer agreed to other prices: they look again, stock and all
        raise ConflictError(
            errors.PRICE_CHANGED,
            "The price of some lines changed since they were shown; nothing was ordered.",
            extra={"lines": repriced},
        )
    if short:
        raise ConflictError(
            errors.INSUFFICIENT_STOCK,
            "Not enough stock for some lines; nothing was ordered.",
            extra={"lines": short},
        )


def _largest(model, field: str) -> Decimal:
    """The largest value a decimal column holds."""
    column = model._meta.get_field(field)
    return Decimal(10) ** (column.max_digits - column.decimal_places) - Decimal(1).scaleb(
        -column.decimal_places
    )


MAX_TOTAL = _largest(Order, "total")  # 9,999,999,999.99 CNY
MAX_SHIPMENT_KG = _largest(Shipment, "weight_kg")  # 9,999,999.999 kg from one farmer


def _check_size(total: Decimal, order_lines: list[OrderLine]) -> None:
    """Prices and quantities are bounded one by one; their products must fit too, in the
    order's total and in each farmer's shipment."""
    weights: dict[int, Decimal] = {}
    for line in order_lines:
        weights[line.farmer_id] = weights.get(line.farmer_id, Decimal(0)) + line.weight_kg
    if total > MAX_TOTAL or max(weights.values()) > MAX_SHIPMENT_KG:
        raise DomainError(
            errors.ORDER_TOO_LARGE,
            f"An order may come to at most {MAX_TOTAL} CNY, and at most {MAX_SHIPMENT_KG} kg "
            "from one farmer.",
            extra={"max_total": str(MAX_TOTAL), "max_weight_kg": str(MAX_SHIPMENT_KG)},
        )


def _check_delivery_point(village: Village, lat: Decimal, lng: Decimal) -> None:
    """A delivery point given with the order lies where its village's center can reach it
    (Village.reaches): one it never can would roll from one day's plan to the next, never
    delivered."""
    if not village.reaches(lat, lng):
        limit = settings.PLACE_MAX_KM_FROM_VILLAGE
        raise DomainError(
            errors.DELIVERY_PLACE_TOO_FAR,
            f"The delivery point is more than {limit} km from the delivery village.",
            extra={"field": "delivery_lat", "max_km": limit},
        )


@transaction.atomic
def order_place(
    *,
    buyer: User,
    lines: list[LineRequest],
    delivery_method: str,
    payment_method: str,
    delivery_village: Village | None = None,
    delivery_address: str = "",
    delivery_lat: Decimal | None = None,
    delivery_lng: Decimal | None = None,
    note: str = "",
) -> Order:
    """A buyer orders lines from one or many farmers, in one short transaction: the
    listings are locked in primary-key order, checked, decremented, and the order and its
    lines are written with titles, units, prices and weights copied from the listings.
    Stock never goes below zero however many buyers race. Cash on delivery is `placed` at
    once; prepaid waits in `awaiting_payment` until paid or expired.

    The order comes back holding what was written with it, as if prefetched: its lines, its
    event and its shipments (none yet: routing writes them after the commit), so an answer
    serialized from it reads nothing back."""
    _check_request_shape(buyer, lines)
    if delivery_lat is not None and delivery_lng is not None:  # before any row is locked
        _check_delivery_point(delivery_village or buyer.village, delivery_lat, delivery_lng)
    listings = {
        listing.pk: listing for listing in listings_for_update([x.listing_id for x in lines])
    }
    _check_lines(buyer, lines, listings)

    village_id = delivery_village.pk if delivery_village else buyer.village_id
    # The buyer's own place and address (their profile's) only for goods brought home: an
    # order collected at the center goes nowhere near it, and farmers and staff read both.
    at_home = delivery_method == DeliveryMethod.HOME and village_id == buyer.village_id
    if delivery_lat is None or delivery_lng is None:
        if at_home and buyer.lat is not None:
            delivery_lat, delivery_lng = buyer.lat, buyer.lng
        else:  # the village's own point; the buyer's village is read only for it
            village = delivery_village or buyer.village
            delivery_lat, delivery_lng = village.lat, village.lng
    delivery_address = delivery_address.strip()
    if not delivery_address and at_home:
        delivery_address = buyer.address
    order_lines = []
    for line in lines:
        listing = listings[line.listing_id]
        order_lines.append(
            OrderLine(
                listing=listing,
                farmer_id=listing.farmer_id,
                title=listing.title,
                unit=listing.unit,
                unit_price=listing.price,
                unit_weight_kg=listing.unit_weight_kg,
                quantity=line.quantity,
                subtotal=_money(listing.price * line.quantity),
                needs_refrigeration=listing.needs_refrigeration,
                spoils_on=listing.harvest_date + timedelta(days=listing.shelf_life_days),
                harvest_round=listing.harvest_round,
            )
        )
    subtotal = sum((line.subtotal for line in order_lines), Decimal("0.00"))
    fee = delivery_fee(
        delivery_method=delivery_method,
        subtotal=subtotal,
        farmer_count=len({line.farmer_id for line in order_lines}),
    )
    _check_size(subtotal + fee, order_lines)
    listings_take_stock(takes=[(listings[line.listing_id], line.quantity) for line in lines])
    prepaid = payment_method == PaymentMethod.PREPAID
    order = Order(
        buyer=buyer,
        status=OrderStatus.AWAITING_PAYMENT if prepaid else OrderStatus.PLACED,
        delivery_method=delivery_method,
        delivery_village_id=village_id,
        delivery_address=delivery_address,
        delivery_lat=delivery_lat,
        delivery_lng=delivery_lng,
        payment_method=payment_method,
        payment_due_at=timezone.now() + timedelta(minutes=settings.PREPAID_PAYMENT_MINUTES)
        if prepaid
        else None,
        note=note.strip(),
        subtotal=subtotal,
        delivery_fee=fee,
        total=subtotal + fee,
        delivery_code=_new_delivery_code(),
    )
    insert([order])
    for line in order_lines:
        line.order = order
    insert(order_lines)
    event = OrderEvent(order=order, to_status=order.status, actor=buyer, reason="placed")
    insert([event])
    notifications.notify_order_placed(order, order_lines)
    if order.status == OrderStatus.PLACED:
        _route_after_commit(order.pk)
    _hold_as_prefetched(
        order,
        lines=sorted(order_lines, key=lambda line: line.pk),
        events=[event],
        shipments=[],
    )
    Order.review.related.set_cached_value(order, None)  # not reviewed: no read to learn it
    return order


def _hold_as_prefetched(instance: Order, **related: list) -> None:
    """Make `instance.<name>.all()` answer the given rows without a query, the way
    prefetch_related leaves them (and refresh_from_db() drops them); a .filter() or .get()
    on the manager still reads the database."""
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    for name, rows in related.items():
        queryset = getattr(instance, name).all()
        queryset._result_cache, queryset._prefetch_done = list(rows), True
        cache[name] = queryset


def _route_after_commit(order_id: int) -> None:
    """A placed order (cash on delivery at once, prepaid once paid) is routed by a worker
    after the transaction commits, by a routing message of its own or, when one is still
    queued, by that one: each routing task takes the oldest placed orders with its own. The
    task is sent by name: logistics imports orders, not the other way round. If the message
    is lost, logistics' sweeper sends it again."""
    transaction.on_commit(lambda: wake_router(order_id), robust=True)


def wake_router(order_id: int | None) -> bool:
    """Have a worker route `order_id` (None: the oldest placed orders), unless a routing
    message is already waiting: that one takes the oldest placed orders with its own."""
    return send_unless_pending(
        ROUTE_ORDER_TASK, [order_id], pending_seconds=settings.ROUTING_PENDING_SECONDS
    )


def order_lock(order_id: int) -> Order:
    """The order row, locked for the rest of the transaction. FOR NO KEY UPDATE, as every
    lock of an order row here: it excludes every other such lock, and lets through the
    foreign-key checks of rows other transactions write for the order (an "on the way"
    notification of a route setting out, whose transaction holds the route this one may
    wait for): FOR UPDATE blocked those, and the two deadlocked. An order's id never
    changes, so nothing needs the stronger lock."""
    return Order.objects.select_for_update(of=("self",), no_key=True).get(pk=order_id)


def order_transition(
    *,
    order: Order,
    to_status: str,
    actor: User | None = None,
    reason: str = "",
    farmer: User | None = None,
) -> Order:
    """Move a locked order along TRANSITIONS and record the event, in the caller's
    transaction. Any other change is refused with `invalid_status_transition`. A change
    about one farmer's lines names that `farmer`: the order's other farmers see it without
    its actor and reason."""
    orders_transition(
        orders=[order],
        to_status=to_status,
        actor=actor,
        reasons={order.pk: reason},
        farmer=farmer,
    )
    return order


def orders_transition(
    *,
    orders: Sequence[Order],
    to_status: str,
    reasons: Mapping[int, str],
    actor: User | None = None,
    farmer: User | None = None,
    also: Mapping[str, object] | None = None,
) -> None:
    """`order_transition` for several locked orders at once (routing confirms a batch): all
    are checked first, then one UPDATE and one INSERT of their events (reason by order id).
    `also` gives other columns the same UPDATE sets on every order (routing's `routed_at`)."""
    for order in orders:
        if to_status not in TRANSITIONS[order.status]:
            raise ConflictError(
                errors.INVALID_TRANSITION,
                f"An order that is {order.status} cannot become {to_status}.",
                extra={"from": order.status, "to": to_status},
            )
    OrderEvent.objects.bulk_create(
        OrderEvent(
            order=order,
            from_status=order.status,
            to_status=to_status,
            actor=actor,
            reason=reasons[order.pk],
            farmer=farmer,
        )
        for order in orders
    )
    now = timezone.now()
    also = also or {}
    Order.objects.filter(pk__in=[order.pk for order in orders]).update(
        status=to_status, updated_at=now, **also
    )
    for order in orders:
        order.status, order.updated_at = to_status, now
        for field, value in also.items():
            setattr(order, field, value)
        if to_status == OrderStatus.PLACED:
            _route_after_commit(order.pk)


def _restock_lines(order: Order, lines: list[OrderLine]) -> None:
    listings = {x.pk: x for x in listings_for_update([line.listing_id for line in lines])}
    listings_restock(restocks=[(listings[line.listing_id], line.quantity) for line in lines])


def _call_off_lines(order: Order) -> list[OrderLine]:
    """Cancel a locked order's active lines and give their stock back; a buyer who has not
    paid owes nothing now. Returns the lines called off."""
    active = list(order.lines.filter(status=LineStatus.ACTIVE))
    _restock_lines(order, active)
    OrderLine.objects.filter(pk__in=[line.pk for line in active]).update(
        status=LineStatus.CANCELLED
    )
    for line in active:
        line.status = LineStatus.CANCELLED
    if order.payment_status == PaymentStatus.UNPAID:
        order.payment_status = PaymentStatus.NOT_DUE
        order.save(update_fields=["payment_status", "updated_at"])
    return active


@transaction.atomic
def order_cancel(
    *,
    order_id: int,
    actor: User | None,
    reason: str = "",
    rejected: OrderLine | None = None,
    expired: bool = False,
) -> Order:
    """The buyer (before the first pickup) or staff call an order off. What was taken from
    stock is given back exactly once: the order row is locked first, so a second, concurrent
    cancel waits and then finds the order already cancelled. A cancel that is one farmer's
    doing (their last line `rejected`) names that farmer in its event, and the buyer is
    told which line went and why. `expired`: the expiry
    sweep's, of an order left unpaid (the buyer alone is told so); said by the caller, not
    read from the reason, which is whatever a buyer or staff typed."""
    order = order_lock(order_id)
    if order.status == OrderStatus.CANCELLED:
        return order  # a retried or concurrent cancel: already done, nothing more to give back
    if order.status not in CANCELLABLE:
        raise ConflictError(
            errors.CANNOT_CANCEL, f"An order that is {order.status} can no longer be cancelled."
        )
    active = _call_off_lines(order)
    # Shipments go too, and their stops leave routes not yet on the road. Imported here:
    # logistics builds on orders, so orders cannot import it at module level.
    from logistics.services.shipments import shipments_cancel_for_order  # noqa: PLC0415

    shipments_cancel_for_order(order=order, actor=actor)
    order = order_transition(
        order=order,
        to_status=OrderStatus.CANCELLED,
        actor=actor,
        reason=reason,
        farmer=rejected.farmer if rejected else None,
    )
    if expired:
        notifications.notify_payment_expired(order)
    else:
        notifications.notify_order_cancelled(order, reason=reason, lines=active, rejected=rejected)
    return order


@transaction.atomic
def order_fail_unroutable(*, order_id: int) -> Order:
    """Routing gave up on a placed order (no center had room for its goods, try after try):
    it fails (`not_routable`), its lines are called off and their stock given back, a buyer
    who has not paid owes nothing and one who paid is owed it back (refund_due), and the
    buyer and the farmers who heard of it are told. Only a placed order fails: its row is
    locked first, so a repeated or concurrent call, or one for an order routed or cancelled
    meanwhile, changes nothing and gives nothing back twice."""
    order = order_lock(order_id)
    if order.status != OrderStatus.PLACED:
        return order
    active = _call_off_lines(order)
    order = order_transition(order=order, to_status=OrderStatus.FAILED, reason=NOT_ROUTABLE_REASON)
    notifications.notify_order_failed(order, lines=active, reason=NOT_ROUTABLE_REASON)
    return order


@transaction.atomic
def order_line_reject(
    *, order_id: int, line_id: int, farmer: User, reason: str, restock: bool = True
) -> Order:
    """A farmer turns down one of their lines: its stock goes back (unless `restock` is
    False: the goods are gone, sold elsewhere or spoiled), the buyer's total drops
    by the line (the delivery fee is recomputed for the lines left, never above the fee the
    buyer was quoted), the order goes on with the other lines or is cancelled when none is
    left. Not while a prepaid order waits for its payment: the buyer is paying the quoted
    total, which the provider's notice must match."""
    order = order_lock(order_id)
    line = order.lines.filter(pk=line_id, farmer=farmer).first()
    if line is None:
        raise DomainError("not_found", "No such line.", status_code=404)
    line.farmer = farmer  # its farmer, held: a cancel by this line names them, read nothing
    if line.status != LineStatus.ACTIVE:
        if line.status == LineStatus.REJECTED:
            return order  # a retry: already rejected
        raise ConflictError(errors.LINE_NOT_ACTIVE, f"This line is {line.status}.")
    if order.status not in CANCELLABLE:
        raise ConflictError(
            errors.CANNOT_CANCEL, f"An order that is {order.status} can no longer be changed."
        )
    if order.status == OrderStatus.AWAITING_PAYMENT:
        raise ConflictError(
            errors.AWAITING_PAYMENT,
            "The buyer is paying the quoted total; reject the line once the order is paid.",
        )
    if restock:
        _restock_lines(order, [line])
    line.status, line.reject_reason = LineStatus.REJECTED, reason.strip()
    line.save(update_fields=["status", "reject_reason"])
    if not order.lines.filter(status=LineStatus.ACTIVE).exists():
        # the line keeps the whole reason; the event's may be cut to fit its column
        event_reason = clip(
            f"last line rejected: {line.reject_reason}",
            OrderEvent._meta.get_field("reason").max_length,
        )
        return order_cancel(order_id=order.pk, actor=farmer, reason=event_reason, rejected=line)
    _total_again(order)
    # Imported here: logistics builds on orders (as in order_cancel).
    from logistics.services.shipments import shipments_after_line_rejected  # noqa: PLC0415

    shipments_after_line_rejected(order=order, line=line, actor=farmer)
    notifications.notify_line_rejected(order, line)
    return order


def _total_again(order: Order, *, handed_over: tuple[Decimal, Decimal] | None = None) -> None:
    """The order's money for its active lines only, after some were turned down or not
    delivered. A smaller subtotal may fall below free delivery: the fee stays at most the
    one quoted, so the total never rises; with no line left, nothing is due. When every
    line left was handed over and paid for in cash already (`handed_over`: the goods and
    the fee those hand-overs took, orders.cash.cash_taken), the fee is the one taken: the
    total is what the buyer paid, though the fee rule was configured otherwise since."""
    remaining = list(order.lines.filter(status=LineStatus.ACTIVE))
    order.subtotal = sum((x.subtotal for x in remaining), Decimal("0.00"))
    recomputed = (
        delivery_fee(
            delivery_method=order.delivery_method,
            subtotal=order.subtotal,
            farmer_count=len({x.farmer_id for x in remaining}),
        )
        if remaining
        else Decimal("0.00")
    )
    order.delivery_fee = min(recomputed, order.delivery_fee)
    if handed_over is not None and handed_over[0] == order.subtotal:
        order.delivery_fee = handed_over[1]
    order.total = order.subtotal + order.delivery_fee
    order.save(update_fields=["subtotal", "delivery_fee", "total", "updated_at"])


def order_lines_not_delivered(
    *, order_id: int, farmer_ids: Sequence[int], restock_farmer_ids: Collection[int], reason: str
) -> Order:
    """Farmers' goods in the order failed for good (their stop failed too often, or the
    day's plans left them out that often), inside that transaction: their lines are called
    off and not charged (the total drops as for a rejected line), given back to stock for
    the farmers of `restock_farmer_ids` (goods that never left the farm), and the buyer is
    told once, of all of them, with the new total; each of those farmers is told of
    theirs."""
    order = order_lock(order_id)
    lines = list(order.lines.filter(farmer_id__in=farmer_ids, status=LineStatus.ACTIVE))
    if not lines:
        return order
    if restocked := [line for line in lines if line.farmer_id in restock_farmer_ids]:
        _restock_lines(order, restocked)
    OrderLine.objects.filter(pk__in=[line.pk for line in lines]).update(status=LineStatus.CANCELLED)
    for line in lines:
        line.status = LineStatus.CANCELLED
    from orders.cash import cash_taken  # noqa: PLC0415 - orders.cash builds on this module

    _total_again(order, handed_over=cash_taken(order))
    notifications.notify_goods_not_delivered(
        order, lines, reason=reason, restocked=restock_farmer_ids
    )
    return order


# Terminal statuses: once an order is in one, nothing moves it, so checking it and then
# writing the review cannot race with a status change.
REVIEWABLE = frozenset({OrderStatus.DELIVERED, OrderStatus.PARTIALLY_DELIVERED})


@transaction.atomic
def order_review(*, order_id: int, buyer: User, rating: int, comment: str = "") -> Review:
    """The buyer reviews their order once it is delivered (in full or in part): one review
    per order, which counts for every farmer with goods in it. Someone else's order answers
    404, an order not yet delivered `order_not_delivered`, a second review `already_reviewed`
    (the unique order of a review decides, so two racing requests cannot both write one);
    the same rating and comment again is no second review but the first, answered again.
    The rating is 1 to 5 by a database constraint."""
    order = Order.objects.filter(pk=order_id, buyer=buyer).first()
    if order is None:
        raise DomainError("not_found", "No such order.", status_code=404)
    if order.status not in REVIEWABLE:
        raise ConflictError(
            errors.NOT_DELIVERED,
            f"An order that is {order.status} cannot be reviewed yet.",
            extra={"order_status": order.status},
        )
    try:
        with transaction.atomic():  # a savepoint, so the outer transaction stays usable
            return Review.objects.create(
                order=order, buyer=buyer, rating=rating, comment=comment.strip()
            )
    except IntegrityError as error:
        # The order is the review's only unique column; a rating outside 1..5 is another
        # violation (a CheckViolation) and stays an error.
        if not isinstance(error.__cause__, UniqueViolation):
            raise
        given = Review.objects.get(order=order)
        if (given.rating, given.comment) == (rating, comment.strip()):
            return given  # the same review sent again (its answer was lost): answered alike
        raise ConflictError(
            errors.ALREADY_REVIEWED, "This order has been reviewed already."
        ) from error
