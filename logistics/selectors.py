"""Reads of logistics, with who may see what."""

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from logistics.models import ServiceCenter, Shipment, ShipmentStatus, Stop, TrackingEvent, Village
from marketplace.accounts.models import Role, User


def village_list() -> QuerySet[Village]:
    return Village.objects.select_related("service_center")


def service_center_list() -> QuerySet[ServiceCenter]:
    return ServiceCenter.objects.all()


def shipment_visible_to(user: User) -> QuerySet[Shipment]:
    """Staff of its origin or destination center, its farmer, its buyer; others see none
    (so they get 404)."""
    if user.role == Role.STAFF and user.service_center_id is not None:
        visible = Q(origin_center_id=user.service_center_id) | Q(
            destination_center_id=user.service_center_id
        )
    elif user.role == Role.FARMER:
        visible = Q(farmer=user)
    elif user.role == Role.BUYER:
        visible = Q(order__buyer=user)
    else:
        return Shipment.objects.none()
    return (
        Shipment.objects.filter(visible)
        .select_related("order")
        .prefetch_related(
            "legs",
            Prefetch("events", queryset=TrackingEvent.objects.order_by("occurred_at", "id")),
            Prefetch("stops", queryset=Stop.objects.order_by("route__date", "sequence")),
        )
        .order_by("-pickup_date", "-id")
    )


def pickups_of_farmer(farmer: User) -> QuerySet[Shipment]:
    """A farmer's upcoming pickups: not yet picked up, from today on."""
    return (
        shipment_visible_to(farmer)
        .filter(
            status__in=(ShipmentStatus.PENDING, ShipmentStatus.SCHEDULED),
            pickup_date__gte=timezone.localdate(),
        )
        .order_by("pickup_date", "id")
    )


def stops_of_staff(staff: User) -> QuerySet[Stop]:
    """Stops on the routes of the staff member's center; others' answer 404."""
    return Stop.objects.filter(route__service_center_id=staff.service_center_id)
