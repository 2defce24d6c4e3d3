"""Orders: what buyers buy, line by line, and every change of an order's status."""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from listings.models import Listing
from marketplace.accounts.models import User


class OrderStatus(models.TextChoices):
    PLACED = "placed"
    AWAITING_PAYMENT = "awaiting_payment"
    CONFIRMED = "confirmed"
    SCHEDULED = "scheduled"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    PARTIALLY_DELIVERED = "partially_delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


class DeliveryMethod(models.TextChoices):
    HOME = "home", "Delivery to the buyer's address"
    PICKUP = "pickup", "Pickup at the buyer's service center"


class PaymentMethod(models.TextChoices):
    COD = "cod", "Cash on delivery"
    PREPAID = "prepaid", "Prepaid"


class PaymentStatus(models.TextChoices):
    UNPAID = "unpaid"
    PAID = "paid"
    COLLECTED = "collected", "Collected at delivery"
    NOT_DUE = "not_due", "Nothing to pay (cancelled)"


class Order(models.Model):
    buyer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=20, choices=OrderStatus.choices)
    delivery_method = models.CharField(max_length=10, choices=DeliveryMethod.choices)
    delivery_village = models.ForeignKey(
        "logistics.Village", on_delete=models.PROTECT, related_name="+"
    )
    delivery_address = models.CharField(max_length=255, blank=True)
    delivery_lat = models.DecimalField(max_digits=9, decimal_places=6)
    delivery_lng = models.DecimalField(max_digits=9, decimal_places=6)
    payment_method = models.CharField(max_length=10, choices=PaymentMethod.choices)
    payment_status = models.CharField(
        max_length=10, choices=PaymentStatus.choices, default=PaymentStatus.UNPAID
    )
    payment_due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)
    subtotal = models.DecimalField(max_digits=12, decimal_places=2)
    delivery_fee = models.DecimalField(max_digits=8, decimal_places=2)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    delivery_code = models.CharField(max_length=6, help_text="Shown to the buyer only.")
    # Wrong codes shown at the buyer's center for goods to collect (a delivery stop counts
    # its own): at MAX_DELIVERY_CODE_ATTEMPTS the hand-over waits for staff review.
    hand_over_wrong_codes = models.PositiveSmallIntegerField(default=0, db_default=0)
    hand_over_last_wrong_code = models.CharField(
        max_length=6, blank=True, default="", db_default=""
    )
    # When routing made its shipments, set in that transaction; never unset, as shipments
    # go only with their order. Staff's list reads "not routed yet" from this column of the
    # order, where probing every order's shipments took most of a busy center's count.
    routed_at = models.DateTimeField(null=True, blank=True, default=None, db_default=None)
    # When routing last tried the order and could not route it (no center had room in time):
    # it is tried again ROUTING_RETRY_MINUTES later, not at every sweep, and given up once a
    # try ROUTING_GIVE_UP_HOURS after it was placed fails too (logistics.services.routing).
    routing_failed_at = models.DateTimeField(null=True, blank=True, default=None, db_default=None)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(subtotal__gte=0), name="order_subtotal_not_negative"
            ),
            models.CheckConstraint(condition=Q(delivery_fee__gte=0), name="order_fee_not_negative"),
            models.CheckConstraint(
                condition=Q(total=F("subtotal") + F("delivery_fee")), name="order_total_adds_up"
            ),
            models.CheckConstraint(
                condition=Q(status__in=OrderStatus.values), name="order_status_known"
            ),
            models.CheckConstraint(
                condition=Q(delivery_code__regex=r"^[0-9]{6}$"), name="order_code_six_digits"
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "-created_at"], name="order_buyer_newest"),
            # Staff's list, newest first: it filters by an OR over its center's shipments
            # and villages, which no index serves; walking this one stops at a page.
            models.Index(fields=["-created_at", "-id"], name="order_newest"),
            models.Index(
                fields=["payment_due_at"],
                condition=Q(status="awaiting_payment"),
                name="order_awaiting_payment_due",
            ),
            # The orders waiting to be routed, oldest first: each routing task and the
            # sweeper look for them, and they are few among all orders.
            models.Index(fields=["id"], condition=Q(status="placed"), name="order_placed_waiting"),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.status})"


class LineStatus(models.TextChoices):
    ACTIVE = "active"
    REJECTED = "rejected", "Rejected by the farmer"
    CANCELLED = "cancelled"


class OrderLine(models.Model):
    """One listing in an order; title, unit, price, weight and the day its goods spoil are
    copied at order time."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    # Indexed with the order (orderline_listing_order), not alone.
    listing = models.ForeignKey(
        Listing, on_delete=models.PROTECT, related_name="order_lines", db_index=False
    )
    farmer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="order_lines")
    title = models.CharField(max_length=120)
    unit = models.CharField(max_length=10)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    unit_weight_kg = models.DecimalField(max_digits=8, decimal_places=3)
    quantity = models.DecimalField(max_digits=12, decimal_places=3)
    subtotal = models.DecimalField(max_digits=12, decimal_places=2)
    needs_refrigeration = models.BooleanField(default=False)
    spoils_on = models.DateField(
        null=True,
        blank=True,
        help_text="The day its goods pass their shelf life (the listing's harvest date and "
        "shelf life at order time; the listing may move on to the next harvest).",
    )
    harvest_round = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The harvest its goods come from: the listing's harvest_round at order time "
        "(null for lines ordered before it was kept). A listing moved on to its next harvest "
        "leaves earlier harvests' goods out of the next one's checks.",
    )
    status = models.CharField(max_length=10, choices=LineStatus.choices, default=LineStatus.ACTIVE)
    reject_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orderline_quantity_positive"),
            models.CheckConstraint(condition=Q(unit_price__gt=0), name="orderline_price_positive"),
            models.UniqueConstraint(fields=["order", "listing"], name="orderline_listing_once"),
        ]
        indexes = [
            models.Index(fields=["farmer", "order"], name="orderline_farmer_order"),
            # The orders holding a center's listings, read from the index alone: staff's list
            # looks them up for the orders not routed yet (orders.selectors).
            models.Index(fields=["listing", "order"], name="orderline_listing_order"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.title}"

    @property
    def weight_kg(self) -> Decimal:
        """What the line weighs: its quantity of units at the unit weight copied with it."""
        return self.quantity * self.unit_weight_kg


class OrderEvent(models.Model):
    """Every status change of an order: who, when, from, to and why. A change that is about
    one farmer's lines (their last line rejected, which cancels the order) names that
    farmer: the order's other farmers see the change, not its actor or reason."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, choices=OrderStatus.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=OrderStatus.choices)
    actor = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=255, blank=True)
    # Never looked up by: no index (one more on every order placed's event insert), and
    # PROTECT as OrderLine.farmer, so the event keeps naming its farmer.
    farmer = models.ForeignKey(
        User,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="+",
        help_text="The farmer whose lines the change is about, if it is about one farmer's; "
        "the order's other farmers see it without its actor and reason.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status or '∅'} → {self.to_status}"


PAYMENT_SUCCEEDED = "payment.succeeded"  # the kind of PaymentEvent that is money paid
REFUND_SUCCEEDED = "refund.succeeded"  # the kind that is money paid back to the buyer


class PaymentEvent(models.Model):
    """A payment provider's notification, stored once per (provider, event id): a provider
    that re-sends an event finds it here and nothing happens twice."""

    provider = models.CharField(max_length=30)
    event_id = models.CharField(max_length=100)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payment_events")
    kind = models.CharField(max_length=30, help_text="e.g. payment.succeeded")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="CNY")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"], name="paymentevent_once_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id}"


class Review(models.Model):
    """The buyer's review of a delivered order; it counts for every farmer whose goods
    were delivered in it."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="review")
    buyer = models.ForeignKey(User, on_delete=models.CASCADE, related_name="reviews")
    rating = models.PositiveSmallIntegerField()
    comment = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rating__gte=1, rating__lte=5), name="review_rating_1_to_5"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rating}★ on order {self.order_id}"


class NotificationKind(models.TextChoices):
    ORDER_PLACED = "order_placed"
    ORDER_CONFIRMED = "order_confirmed"
    LINE_REJECTED = "line_rejected"
    ORDER_CANCELLED = "order_cancelled"
    PAYMENT_RECEIVED = "payment_received"
    PAYMENT_EXPIRED = "payment_expired"
    PICKUP_SCHEDULED = "pickup_scheduled"
    OUT_FOR_DELIVERY = "out_for_delivery"
    ORDER_DELIVERED = "order_delivered"
    GOODS_NOT_DELIVERED = "goods_not_delivered"
    DELIVERY_RESCHEDULED = "delivery_rescheduled"
    REFUND_SENT = "refund_sent"
    READY_FOR_COLLECTION = "ready_for_collection"
    ORDER_FAILED = "order_failed"
    PAYMENT_TO_REFUND = "payment_to_refund"


class Notification(models.Model):
    """What the system told a user. Written in the transaction of the change it reports;
    sent through the configured backend by a task after that commits. A failed send is
    tried again at `retry_at`, a few times (orders.notifications)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=30, choices=NotificationKind.choices)
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    title = models.CharField(max_length=120)
    body = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="failed sends so far")
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="after a failed send: not before this"
    )
    given_up_at = models.DateTimeField(
        null=True,
        blank=True,
        default=None,
        db_default=None,
        help_text="no more tries: its last one failed, or it was not sent within a day",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="notification_user_newest"),
            # The sender's queue: what may still be sent, oldest first (given up: out).
            models.Index(
                fields=["id"],
                condition=models.Q(sent_at__isnull=True, given_up_at__isnull=True),
                name="notification_unsent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.user_id}"
