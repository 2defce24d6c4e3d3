"""The orders admin: operators look, and change orders only through orders.services.

Nothing is edited here: an order's status, money and lines move only through the services
(the status table, restocking, events, notifications), which the cancel action calls; the
other action opens a hand-over that wrong codes locked, after staff reviewed it. Orders
are never deleted (cancelled instead); payment events, reviews and notifications are
records, shown as they are."""

from decimal import Decimal

from django.contrib import admin, messages
from django.db.models import Q
from django.db.models.constants import LOOKUP_SEP

from logistics.models import Shipment
from logistics.services.shipments import order_hand_over_unlock
from marketplace.accounts.models import Role, User
from marketplace.admin_site import ReadOnlyAdminMixin, rows_for
from marketplace.exceptions import DomainError
from orders import selectors, services
from orders.models import (
    Notification,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentEvent,
    Review,
)

OPERATOR_CANCEL_REASON = "cancelled by operator"
# How to reach the buyer, besides their phone: where the goods go and what they wrote with
# the order (free text, which may hold an address or a phone number).
BUYER_PLACE_AND_NOTE = ("delivery_address", "delivery_lat", "delivery_lng", "note")


def _orders_through(center_id: int) -> Q:
    """Orders through the center, as its staff see them in the API (order_visible_to)."""
    return Q(pk__in=_ids_of_orders_through(center_id))


def _records_of_orders_through(center_id: int) -> Q:
    return Q(order__in=_ids_of_orders_through(center_id))


def _ids_of_orders_through(center_id: int):
    staff = User(role=Role.STAFF, service_center_id=center_id)
    return selectors.order_visible_to(staff).values("pk")


def _people_of(center_id: int) -> Q:
    """What the center's people were told: its staff, and farmers and buyers of its
    villages."""
    return Q(user__service_center_id=center_id) | Q(user__village__service_center_id=center_id)


def _delivers(user: User, order: Order) -> bool:
    """Whether the admin user acts for the center delivering the order (operators for
    every center): as the API, only they read how to reach its buyer and call it off."""
    return user.is_superuser or selectors.order_delivered_from(order, user.service_center_id)


class OrderLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderLine
    extra = 0
    fields = (
        "listing",
        "farmer",
        "title",
        "unit",
        "unit_price",
        "quantity",
        "subtotal",
        "needs_refrigeration",
        "status",
        "reject_reason",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("listing", "farmer")


class OrderEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    # farmer: whose lines the change is about, if one farmer's (their last line rejected)
    fields = ("created_at", "from_status", "to_status", "actor", "farmer", "reason")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor", "farmer")


class PaymentEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    """What the provider reported for the order: payments and refunds, the evidence behind
    its refund due."""

    model = PaymentEvent
    verbose_name = "payment or refund"
    verbose_name_plural = "payments and refunds"
    extra = 0
    fields = ("received_at", "kind", "amount", "currency", "provider", "event_id")
    readonly_fields = fields


class ShipmentInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Each farmer's goods of the order, and the cash the buyer paid for them when they were
    handed over (cash on delivery; empty until then)."""

    model = Shipment
    extra = 0
    fields = (
        "farmer",
        "status",
        "origin_center",
        "destination_center",
        "pickup_date",
        "delivery_date",
        "weight_kg",
        "cash_collected",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        shipments = (
            super()
            .get_queryset(request)
            .select_related("farmer", "origin_center", "destination_center")
        )
        # a center's staff: the goods through their center, as the API shows them the order
        return rows_for(
            request,
            shipments,
            lambda center_id: Q(origin_center_id=center_id) | Q(destination_center_id=center_id),
        )


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """View-only pages (a saved form would write every column back, racing the services);
    the cancel action is for whoever may change orders."""

    list_display = (
        "id",
        "buyer",
        "status",
        "payment_method",
        "payment_status",
        "total",
        "refund_due",
        "hand_over_wrong_codes",
        "created_at",
    )
    readonly_fields = ("refund_due",)  # after the order's own fields on its page
    # The buyer's proof of delivery: whoever reads orders here must not be able to collect
    # the goods with it (the buyer reads it in the app).
    exclude = ("delivery_code",)
    list_filter = ("status", "payment_method", "delivery_method")
    # id__exact: Django compares the id as text, so a name or phone typed here is no error.
    search_fields = ("id__exact", "buyer__phone", "buyer__name")
    list_select_related = ("buyer",)
    inlines = [OrderLineInline, ShipmentInline, OrderEventInline, PaymentEventInline]
    actions = ["cancel", "unlock_hand_over"]
    date_hierarchy = "created_at"

    def lookup_allowed(self, lookup, value, request) -> bool:
        """Not by the delivery code either: a filter in the URL (`?delivery_code__startswith=
        4`) would tell a right guess from a wrong one and give the code away digit by digit
        (Django allows any of the model's own fields there); Django answers 400."""
        if lookup.split(LOOKUP_SEP)[0] == "delivery_code":
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_queryset(self, request):
        # amount_held for refund_due: in the list's one statement, and the page's
        orders = selectors.orders_with_amount_held(super().get_queryset(request))
        return rows_for(request, orders, _orders_through)

    def get_exclude(self, request, obj=None):
        """The buyer (their phone is in how a user reads), delivery place and note, as the
        API shows them to staff: only at the center delivering the order, not at one that
        only picks up some of its goods."""
        excluded = tuple(super().get_exclude(request, obj) or ())
        if obj is not None and not _delivers(request.user, obj):
            excluded += ("buyer", *BUYER_PLACE_AND_NOTE)
        return excluded

    def get_list_display(self, request):
        """Center staff's list names the buyer without their phone: it lists the orders
        their center only picks up for too; the order's page shows it where the API does."""
        shown = super().get_list_display(request)
        if request.user.is_superuser:
            return shown
        return tuple("buyer_name" if column == "buyer" else column for column in shown)

    @admin.display(description="buyer", ordering="buyer__name")
    def buyer_name(self, order) -> str:
        return order.buyer.name

    @admin.display(description="refund due")
    def refund_due(self, order) -> Decimal:
        """What the buyer is owed back, as the API shows it (orders.selectors)."""
        return selectors.order_refund_due(order)

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Cancel selected orders (and restock)", permissions=["cancel"])
    def cancel(self, request, queryset) -> None:
        """As the API's cancel: center staff call off only the orders their center
        delivers, not those it only picks up some goods of (their farmer rejects a line,
        or their stop fails)."""
        cancelled = 0
        selected = queryset.order_by("pk").select_related("delivery_village")
        for order in selected.prefetch_related("shipments"):
            order_id = order.pk
            if order.status == OrderStatus.CANCELLED:
                self.message_user(request, f"Order {order_id} was already cancelled.")
                continue
            if not _delivers(request.user, order):
                self.message_user(
                    request,
                    f"Order {order_id}: only staff of the center delivering it cancel it.",
                    messages.ERROR,
                )
                continue
            try:
                services.order_cancel(
                    order_id=order_id, actor=request.user, reason=OPERATOR_CANCEL_REASON
                )
            except DomainError as error:
                self.message_user(request, f"Order {order_id}: {error.detail}", messages.ERROR)
            else:
                cancelled += 1
        if cancelled:
            self.message_user(request, f"{cancelled} order(s) cancelled.", messages.SUCCESS)

    def has_unlock_hand_over_permission(self, request) -> bool:
        return self.has_cancel_permission(request)

    @admin.action(
        description="Allow the hand-over of selected orders again (wrong codes reviewed)",
        permissions=["unlock_hand_over"],
    )
    def unlock_hand_over(self, request, queryset) -> None:
        """By the staff of the center handing the order over (where the wrong codes were
        tried, and who review them with the buyer), or an operator."""
        ids = []
        selected = queryset.order_by("pk").select_related("delivery_village")
        for order in selected.prefetch_related("shipments"):
            if _delivers(request.user, order):
                ids.append(order.pk)
            else:
                self.message_user(
                    request,
                    f"Order {order.pk}: only staff of the center delivering it unlock it.",
                    messages.ERROR,
                )
        opened = [pk for pk in ids if order_hand_over_unlock(order_id=pk)]
        if opened:
            self.message_user(request, f"{len(opened)} order(s) unlocked.", messages.SUCCESS)
        if skipped := len(ids) - len(opened):
            self.message_user(request, f"{skipped} order(s) were not locked.", messages.WARNING)


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("order", "buyer", "rating", "created_at")
    list_filter = ("rating",)
    search_fields = ("buyer__phone", "buyer__name", "comment")
    list_select_related = ("order", "buyer")

    def get_queryset(self, request):
        return rows_for(request, super().get_queryset(request), _records_of_orders_through)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "kind",
        "title",
        "created_at",
        "sent_at",
        "attempts",
        "retry_at",
        "read_at",
    )
    list_filter = ("kind", "attempts")
    search_fields = ("user__phone", "user__name", "title")
    list_select_related = ("user",)

    def get_queryset(self, request):
        return rows_for(request, super().get_queryset(request), _people_of)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("provider", "event_id", "order", "kind", "amount", "currency", "received_at")
    list_filter = ("provider", "kind")
    search_fields = ("event_id",)
    list_select_related = ("order",)

    def get_queryset(self, request):
        return rows_for(request, super().get_queryset(request), _records_of_orders_through)
