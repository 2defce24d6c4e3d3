"""Shipments: one farmer's goods of one order, the legs they travel through the service
centers, what happened to them on the way, and the stops of vehicle routes."""

from decimal import Decimal

from django.db import models
from django.db.models import Q

from logistics.models.geography import ServiceCenter
from marketplace.accounts.models import User


class ShipmentStatus(models.TextChoices):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    PICKED_UP = "picked_up"
    IN_TRANSFER = "in_transfer"
    AT_CENTER = "at_center", "At the destination center"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Shipment(models.Model):
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="shipments")
    farmer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="shipments")
    origin_center = models.ForeignKey(
        ServiceCenter, on_delete=models.PROTECT, related_name="outgoing_shipments"
    )
    destination_center = models.ForeignKey(
        ServiceCenter, on_delete=models.PROTECT, related_name="incoming_shipments"
    )
    status = models.CharField(
        max_length=20, choices=ShipmentStatus.choices, default=ShipmentStatus.PENDING
    )
    weight_kg = models.DecimalField(max_digits=10, decimal_places=3)
    picked_up_weight_kg = models.DecimalField(
        max_digits=10, decimal_places=3, null=True, blank=True
    )
    # Null: as ordered (weight_kg), what a row routed by the release before this column
    # holds (it books, moves and frees weight_kg; during a rolling deploy it still routes).
    booked_kg = models.DecimalField(
        max_digits=10,
        decimal_places=3,
        null=True,
        blank=True,
        default=None,
        db_default=None,
        help_text="What it holds of its centers' capacity on each day it is booked on: as "
        "ordered, as weighed once picked up, 0 once its days are freed (cancelled, failed); "
        "null: as ordered (weight_kg).",
    )
    needs_refrigeration = models.BooleanField(default=False)
    # Where the goods wait on the farm and where they go.
    pickup_lat = models.DecimalField(max_digits=9, decimal_places=6)
    pickup_lng = models.DecimalField(max_digits=9, decimal_places=6)
    delivery_lat = models.DecimalField(max_digits=9, decimal_places=6)
    delivery_lng = models.DecimalField(max_digits=9, decimal_places=6)
    pickup_date = models.DateField()
    delivery_date = models.DateField(
        help_text="The day the goods are to reach the buyer: the promised date, later once a "
        "day was missed (a day that did not fit, a failed stop, a late transfer)."
    )
    promised_date = models.DateField(
        help_text="The delivery date promised to the buyer when the order was routed; it never "
        "moves, so delivery_date past it is how many days the goods are late."
    )
    spoils_before_arrival = models.BooleanField(
        default=False, help_text="Some produce would pass its shelf life before delivery."
    )
    transfer_late = models.BooleanField(default=False)
    # failed tries: its stops reported failed and the days plans left it out (failures.py)
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    # Null until the goods are handed to the buyer; a delivery recorded before the column
    # existed stays null (orders.cash reads such an order's fee as the rule would have it).
    cash_collected = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        default=None,
        db_default=None,
        help_text="Cash the buyer paid for these goods when they were handed over (cash on "
        "delivery: the goods and the part of the delivery fee then due; 0.00 when prepaid).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "farmer"], name="shipment_one_per_farmer"),
            models.CheckConstraint(
                condition=Q(weight_kg__gte=0), name="shipment_weight_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(booked_kg__gte=0), name="shipment_booked_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(delivery_date__gte=models.F("pickup_date")),
                name="shipment_delivery_after_pickup",
            ),
        ]
        indexes = [
            models.Index(
                fields=["origin_center", "pickup_date", "status"], name="shipment_pickups"
            ),
            models.Index(
                fields=["destination_center", "delivery_date", "status"], name="shipment_deliveries"
            ),
            # Staff's list in its order (an OR of their center's two columns filters it).
            models.Index(fields=["-pickup_date", "-id"], name="shipment_newest_pickup"),
        ]

    def __str__(self) -> str:
        return f"Shipment {self.pk} of order {self.order_id}"

    @property
    def load_kg(self) -> Decimal:
        """What it weighs on a vehicle: as weighed at its pickup once picked up, else as
        ordered."""
        return self.weight_kg if self.picked_up_weight_kg is None else self.picked_up_weight_kg

    @property
    def held_kg(self) -> Decimal:
        """What it holds on each day it is booked on (`booked_kg`; null: as ordered)."""
        return self.weight_kg if self.booked_kg is None else self.booked_kg

    @property
    def crosses_centers(self) -> bool:
        return self.origin_center_id != self.destination_center_id


class LegKind(models.TextChoices):
    PICKUP = "pickup", "Farm to the farmer's center"
    TRANSFER = "transfer", "Between centers"
    DELIVERY = "delivery", "To the buyer's address"
    HANDOVER = "handover", "Handed over at the buyer's center"


class LegStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


class ShipmentLeg(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="legs")
    sequence = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=LegKind.choices)
    from_center = models.ForeignKey(
        ServiceCenter, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    to_center = models.ForeignKey(
        ServiceCenter, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    date = models.DateField()
    status = models.CharField(max_length=10, choices=LegStatus.choices, default=LegStatus.PENDING)

    class Meta:
        ordering = ["shipment_id", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["shipment", "sequence"], name="leg_sequence_unique")
        ]

    def __str__(self) -> str:
        return f"{self.shipment_id}#{self.sequence} {self.kind}"


class TrackingEvent(models.Model):
    """Each change of a shipment: when it happened, where, who did it."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=20, choices=ShipmentStatus.choices)
    occurred_at = models.DateTimeField()
    center = models.ForeignKey(
        ServiceCenter, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=255, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.shipment_id} {self.status} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class CenterDayLoad(models.Model):
    """Kilograms booked at a center on a day; a conditional UPDATE keeps it under capacity."""

    center = models.ForeignKey(ServiceCenter, on_delete=models.CASCADE, related_name="day_loads")
    date = models.DateField()
    booked_kg = models.DecimalField(max_digits=12, decimal_places=3, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["center", "date"], name="centerdayload_unique"),
            models.CheckConstraint(
                condition=Q(booked_kg__gte=0), name="centerdayload_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.center_id} {self.date}: {self.booked_kg} kg"
