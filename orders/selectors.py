"""Reads of orders, with who may see what."""

from decimal import Decimal

from django.db.models import (
    Case,
    DecimalField,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from listings.models import Listing
from logistics.models import Shipment, TrackingEvent, Village
from marketplace.accounts.models import Role, User
from orders.models import (
    PAYMENT_SUCCEEDED,
    REFUND_SUCCEEDED,
    LineStatus,
    Notification,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentEvent,
    PaymentMethod,
)

NOTHING = Decimal("0.00")
MONEY = DecimalField(max_digits=14, decimal_places=2)
MONEY_MOVED = (PAYMENT_SUCCEEDED, REFUND_SUCCEEDED)  # the provider's events that move money
# An order in these statuses costs nothing: called off (by anyone, or expired unpaid), or
# nothing of it came.
NOTHING_DUE = frozenset({OrderStatus.CANCELLED, OrderStatus.FAILED})


def order_was_confirmed(order: Order) -> bool:
    """Whether the order was ever confirmed (from its events, which order_visible_to
    prefetches). Until then, a farmer sees the lines, not how to reach the buyer (phone,
    delivery address and place); an order cancelled or failed before never shows them."""
    return any(event.to_status == OrderStatus.CONFIRMED for event in order.events.all())


def _amount_held() -> Coalesce:
    """What the buyer paid for the order and was not paid back: the payments its provider
    reported (the first, its total; any later one, money paid again) less the refunds it
    reported."""
    held = (
        PaymentEvent.objects.filter(order=OuterRef("pk"), kind__in=MONEY_MOVED)
        .order_by()
        .values("order")
        .annotate(held=Sum(_signed_amount()))
        .values("held")
    )
    return Coalesce(Subquery(held), Value(NOTHING), output_field=MONEY)


def _signed_amount() -> Case:
    return Case(When(kind=REFUND_SUCCEEDED, then=-F("amount")), default=F("amount"))


def order_amount_held(order_id: int) -> Decimal:
    """`amount_held` of one order, read now (under its lock, for a refund's check)."""
    held = PaymentEvent.objects.filter(order_id=order_id, kind__in=MONEY_MOVED).aggregate(
        held=Sum(_signed_amount(), output_field=MONEY)
    )["held"]
    return held if held is not None else NOTHING


def order_refund_due(order: Order) -> Decimal:
    """What is owed back to the buyer: what they paid and were not paid back
    (`amount_held`, which order_visible_to annotates) beyond what the order costs now. That
    is its total, lower once lines were rejected or not delivered; nothing once it was
    cancelled or expired, or failed; and nothing of a cash-on-delivery order, which is paid
    in cash at the door: money the provider reports for one was paid on top. 0.00 when
    nothing is owed (a refund beyond what was due, for goods the buyer was unhappy with)."""
    paid_by_provider = order.payment_method == PaymentMethod.PREPAID
    costs = order.total if paid_by_provider and order.status not in NOTHING_DUE else NOTHING
    return max(order.amount_held - costs, NOTHING)


def orders_with_amount_held(orders: QuerySet[Order]) -> QuerySet[Order]:
    """`orders`, each annotated with `amount_held` (for order_refund_due): one subquery in
    the same statement, not a query per order."""
    return orders.annotate(amount_held=_amount_held())


def order_visible_to(user: User) -> QuerySet[Order]:
    """Buyers: their own orders. Farmers: orders holding their lines, with only those lines
    and shipments. Staff: orders whose shipments go through their center (before routing:
    picked up in or delivered to its villages), with those shipments only. Anyone else:
    none, so a stranger's lookup answers 404. Each order is annotated with `amount_held`
    (for order_refund_due)."""
    orders = orders_with_amount_held(
        Order.objects.select_related("buyer", "delivery_village", "review")
    )
    lines = OrderLine.objects.order_by("id")
    # Each shipment's legs and events as plain lists (to_attr), which its serializer reads:
    # held as a relation's cache, Django builds a queryset per shipment for each of them,
    # about a fifth of the CPU of a staff member's list of 100 orders.
    shipments = Shipment.objects.prefetch_related(
        Prefetch("legs", to_attr="legs_listed"),
        Prefetch(
            "events",
            queryset=TrackingEvent.objects.order_by("occurred_at", "id"),
            to_attr="events_listed",
        ),
    ).order_by("id")
    if user.role == Role.BUYER:
        orders = orders.filter(buyer=user)
    elif user.role == Role.FARMER:
        orders = orders.filter(pk__in=OrderLine.objects.filter(farmer=user).values("order_id"))
        lines = lines.filter(farmer=user)
        shipments = shipments.filter(farmer=user)
    elif user.role == Role.STAFF and user.service_center_id is not None:
        center = user.service_center_id
        # Routed, an order goes through its shipments' centers, fixed then; the villages say
        # where it would go now (a farmer may move since, and their listings with them).
        ours = Q(origin_center_id=center) | Q(destination_center_id=center)
        # EXISTS, not IN: inside an OR, PostgreSQL runs `id IN (subquery)` as a hash of the
        # subquery when that fits work_mem and otherwise scans the subquery again for every
        # order; a busy center's shipments outgrow it (200k orders: the list never came
        # back). An EXISTS may also probe the shipments' order index per order instead.
        through_center = Exists(Shipment.objects.filter(ours, order_id=OuterRef("pk")))
        shipments = shipments.filter(ours)  # another center's legs, stops and notes: its own
        orders = orders.filter(through_center | _not_routed_in_villages_of(center))
    else:
        return Order.objects.none()
    return orders.prefetch_related(
        Prefetch("lines", queryset=lines),
        Prefetch("events", queryset=OrderEvent.objects.order_by("created_at", "id")),
        Prefetch("shipments", queryset=shipments),
    )


def _not_routed_in_villages_of(center: int) -> Q:
    """Orders not routed yet (`routed_at` is set with their shipments) delivered to or
    holding goods (not turned down) from the center's villages. "Not routed" is a column
    of the order, where a probe of the shipments for every order took most of a busy
    center's count (BENCHMARKS.md). Villages are matched by id, not through a join: with
    one, PostgreSQL checks the whole filter once per table, building the shipments'
    subquery twice."""
    villages = Village.objects.filter(service_center_id=center).values("pk")
    listings = Listing.objects.filter(village__in=villages).values("pk")
    # A line its farmer turned down takes their goods, and their center, out of the order.
    holds_their_goods = Exists(
        OrderLine.objects.filter(order_id=OuterRef("pk"), listing__in=listings).exclude(
            status=LineStatus.REJECTED
        )
    )
    return Q(routed_at__isnull=True) & (Q(delivery_village__in=villages) | holds_their_goods)


def order_delivered_from(order: Order, center_id: int | None) -> bool:
    """Whether the center delivers the order to its buyer: its shipments' destination once
    routed (fixed then); before, the center of its delivery village. Read from the order's
    shipments and delivery village as order_visible_to fetches them, so a list asks no
    query per order: a staff member's are those through their center, which hold every
    one it delivers, and none before routing (an order reaches them otherwise only
    through its villages)."""
    shipments = order.shipments.all()
    if shipments:
        return any(shipment.destination_center_id == center_id for shipment in shipments)
    return order.delivery_village.service_center_id == center_id


def notifications_of(user: User) -> QuerySet[Notification]:
    """A user's own notifications, newest first; nobody sees anyone else's."""
    return Notification.objects.filter(user=user).order_by("-created_at", "-id")
