"""Reads of orders, with who may see what."""

from django.db.models import Prefetch, Q, QuerySet

from logistics.models import Shipment, TrackingEvent
from marketplace.accounts.models import Role, User
from orders.models import Notification, Order, OrderEvent, OrderLine, OrderStatus


def order_was_confirmed(order: Order) -> bool:
    """Whether the order was ever confirmed (from its events, which order_visible_to
    prefetches). Until then, a farmer sees the lines, not how to reach the buyer (phone,
    delivery address and place); an order cancelled or failed before never shows them."""
    return any(event.to_status == OrderStatus.CONFIRMED for event in order.events.all())


def order_visible_to(user: User) -> QuerySet[Order]:
    """Buyers: their own orders. Farmers: orders holding their lines, with only those lines.
    Staff: orders picked up in or delivered to their center's villages. Anyone else: none,
    so a stranger's lookup answers 404."""
    orders = Order.objects.select_related("buyer", "delivery_village")
    lines = OrderLine.objects.order_by("id")
    shipments = Shipment.objects.prefetch_related(
        "legs", Prefetch("events", queryset=TrackingEvent.objects.order_by("occurred_at", "id"))
    ).order_by("id")
    if user.role == Role.BUYER:
        orders = orders.filter(buyer=user)
    elif user.role == Role.FARMER:
        orders = orders.filter(pk__in=OrderLine.objects.filter(farmer=user).values("order_id"))
        lines = lines.filter(farmer=user)
        shipments = shipments.filter(farmer=user)
    elif user.role == Role.STAFF and user.service_center_id is not None:
        center = user.service_center_id
        orders = orders.filter(
            Q(delivery_village__service_center_id=center)
            | Q(
                pk__in=OrderLine.objects.filter(listing__village__service_center_id=center).values(
                    "order_id"
                )
            )
        )
    else:
        return Order.objects.none()
    return orders.prefetch_related(
        Prefetch("lines", queryset=lines),
        Prefetch("events", queryset=OrderEvent.objects.order_by("created_at", "id")),
        Prefetch("shipments", queryset=shipments),
    )


def notifications_of(user: User) -> QuerySet[Notification]:
    """A user's own notifications, newest first; nobody sees anyone else's."""
    return Notification.objects.filter(user=user).order_by("-created_at", "-id")
