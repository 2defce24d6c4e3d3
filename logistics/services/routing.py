"""Routing an order: one shipment per farmer, its legs through the service centers, and its
dates, within each center's daily handling capacity. Called by the route_order task."""

import math
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from logistics.geo import distance_km
from logistics.models import (
    CenterDayLoad,
    LegKind,
    ServiceCenter,
    Shipment,
    ShipmentLeg,
    ShipmentStatus,
    TrackingEvent,
)
from orders.models import DeliveryMethod, LineStatus, Order, OrderLine, OrderStatus
from orders.notifications import notify_order_confirmed
from orders.services import order_lock, order_transition

MAX_DAYS_AHEAD = 60
CAPACITY_LOCK_SPACE = 7301  # the first key of the (int, int) advisory locks on capacity


def transfer_days(origin: ServiceCenter, destination: ServiceCenter) -> int:
    """Days between pickup and delivery: 0 within one center, else one day per
    TRANSFER_KM_PER_DAY of road (great-circle × the origin's detour factor), at least 1."""
    if origin.pk == destination.pk:
        return 0
    road_km = distance_km(origin.lat, origin.lng, destination.lat, destination.lng) * float(
        origin.detour_factor
    )
    return max(1, math.ceil(road_km / settings.TRANSFER_KM_PER_DAY))


def earliest_pickup(now: datetime, harvest_dates: list[date]) -> date:
    """Not before the lead time (one more day past the daily cut-off) nor any harvest."""
    local = timezone.localtime(now)
    lead = settings.ROUTING_LEAD_DAYS + (1 if local.hour >= settings.ROUTING_CUTOFF_HOUR else 0)
    return max([local.date() + timedelta(days=lead), *harvest_dates])


def book_capacity(*, center: ServiceCenter, earliest: date, weight_kg: Decimal) -> date:
    """Book `weight_kg` at `center` on the first day from `earliest` with room, and return
    that day. The conditional UPDATE is the check: two workers booking the same day cannot
    both squeeze past the capacity. A load bigger than a whole day's capacity gets an empty
    day of its own, so it is never silently added on top of others."""
    capacity = center.daily_capacity_kg
    for offset in range(MAX_DAYS_AHEAD):
        day = earliest + timedelta(days=offset)
        CenterDayLoad.objects.bulk_create(
            [CenterDayLoad(center=center, date=day)], ignore_conflicts=True
        )
        room = CenterDayLoad.objects.filter(center=center, date=day)
        if weight_kg > capacity:
            room = room.filter(booked_kg=0)
        else:
            room = room.filter(booked_kg__lte=capacity - weight_kg)
        if room.update(booked_kg=F("booked_kg") + weight_kg):
            return day
    raise RuntimeError(f"{center} has no room in the next {MAX_DAYS_AHEAD} days")


def lock_centers_capacity(center_ids) -> None:
    """Take the capacity bookings of these centers for the rest of the transaction, in
    ascending id order. Two routings booking the same (center, day) rows in different
    orders deadlocked (seen in the routing benchmark); now the second waits for the first."""
    with connection.cursor() as cursor:
        for center_id in sorted(center_ids):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [CAPACITY_LOCK_SPACE, center_id])


def release_capacity(*, center_id: int, day: date, weight_kg: Decimal) -> None:
    CenterDayLoad.objects.filter(center_id=center_id, date=day).update(
        booked_kg=F("booked_kg") - weight_kg
    )


def _legs(shipment: Shipment, delivery_method: str) -> list[ShipmentLeg]:
    legs = [
        ShipmentLeg(
            shipment=shipment,
            sequence=1,
            kind=LegKind.PICKUP,
            to_center=shipment.origin_center,
            date=shipment.pickup_date,
        )
    ]
    if shipment.crosses_centers:
        legs.append(
            ShipmentLeg(
                shipment=shipment,
                sequence=2,
                kind=LegKind.TRANSFER,
                from_center=shipment.origin_center,
                to_center=shipment.destination_center,
                date=shipment.delivery_date,
            )
        )
    last = LegKind.HANDOVER if delivery_method == DeliveryMethod.PICKUP else LegKind.DELIVERY
    legs.append(
        ShipmentLeg(
            shipment=shipment,
            sequence=len(legs) + 1,
            kind=last,
            from_center=shipment.destination_center,
            date=shipment.delivery_date,
        )
    )
    return legs


def _ship_farmer(order: Order, lines: list[OrderLine], now: datetime) -> Shipment:
    listing_of = {line.pk: line.listing for line in lines}
    first = listing_of[lines[0].pk]
    origin = first.village.service_center
    destination = order.delivery_village.service_center
    weight = sum((line.quantity * line.unit_weight_kg for line in lines), Decimal(0))
    pickup = book_capacity(
        center=origin,
        earliest=earliest_pickup(now, [listing_of[x.pk].harvest_date for x in lines]),
        weight_kg=weight,
    )
    delivery = pickup + timedelta(days=transfer_days(origin, destination))
    if origin.pk != destination.pk:
        delivery = book_capacity(center=destination, earliest=delivery, weight_kg=weight)
    spoils = any(
        listing_of[x.pk].harvest_date + timedelta(days=listing_of[x.pk].shelf_life_days) < delivery
        for x in lines
    )
    shipment = Shipment.objects.create(
        order=order,
        farmer_id=lines[0].farmer_id,
        origin_center=origin,
        destination_center=destination,
        weight_kg=weight,
        needs_refrigeration=any(x.needs_refrigeration for x in lines),
        pickup_lat=first.lat,
        pickup_lng=first.lng,
        delivery_lat=destination.lat
        if order.delivery_method == DeliveryMethod.PICKUP
        else order.delivery_lat,
        delivery_lng=destination.lng
        if order.delivery_method == DeliveryMethod.PICKUP
        else order.delivery_lng,
        pickup_date=pickup,
        delivery_date=delivery,
        spoils_before_arrival=spoils,
    )
    ShipmentLeg.objects.bulk_create(_legs(shipment, order.delivery_method))
    TrackingEvent.objects.create(
        shipment=shipment,
        status=ShipmentStatus.PENDING,
        occurred_at=now,
        center=origin,
        note=f"pickup {pickup:%Y-%m-%d}, delivery {delivery:%Y-%m-%d}",
    )
    return shipment


@transaction.atomic
def order_route(*, order_id: int) -> Order:
    """Route a placed order: one shipment per farmer with legs and dates, then confirm it.
    Idempotent: the order row is locked first and only a `placed` order is routed, so a
    repeated or concurrent call finds it confirmed and does nothing; the unique (order,
    farmer) constraint backs this up."""
    order = order_lock(order_id)
    if order.status != OrderStatus.PLACED:
        return order
    lines = list(
        order.lines.filter(status=LineStatus.ACTIVE)
        .select_related("listing__village__service_center")
        .order_by("farmer_id", "id")
    )
    order = Order.objects.select_related("delivery_village__service_center").get(pk=order.pk)
    by_farmer: dict[int, list[OrderLine]] = defaultdict(list)
    for line in lines:
        by_farmer[line.farmer_id].append(line)
    centers = {line.listing.village.service_center_id for line in lines}
    centers.add(order.delivery_village.service_center_id)
    lock_centers_capacity(centers)
    now = timezone.now()
    shipments = [_ship_farmer(order, farmer_lines, now) for farmer_lines in by_farmer.values()]
    first_pickup = min(s.pickup_date for s in shipments)
    last_delivery = max(s.delivery_date for s in shipments)
    order = order_transition(
        order=order,
        to_status=OrderStatus.CONFIRMED,
        reason=f"routed: pickup from {first_pickup:%Y-%m-%d}, delivery by {last_delivery:%Y-%m-%d}",
    )
    notify_order_confirmed(
        order,
        delivery_date=last_delivery,
        pickup_dates={s.farmer_id: s.pickup_date for s in shipments},
    )
    return order
