"""Geography: service centers and the villages each one covers."""

from datetime import time
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from logistics.geo import distance_km

LAT_VALIDATORS = [MinValueValidator(Decimal(-90)), MaxValueValidator(Decimal(90))]
LNG_VALIDATORS = [MinValueValidator(Decimal(-180)), MaxValueValidator(Decimal(180))]


def coordinate_constraints(prefix: str) -> list[models.CheckConstraint]:
    return [
        models.CheckConstraint(condition=Q(lat__gte=-90, lat__lte=90), name=f"{prefix}_lat_range"),
        models.CheckConstraint(
            condition=Q(lng__gte=-180, lng__lte=180), name=f"{prefix}_lng_range"
        ),
    ]


# Times of day as defaults are functions: Django's check of fixed defaults (fields.W161)
# takes a fixed time as one today and warns when it is within 10 s of now, so
# `check --deploy --fail-level WARNING` failed when run at 07:00:00 or 19:00:00 UTC.
def seven_am() -> time:
    return time(7, 0)


def seven_pm() -> time:
    return time(19, 0)


def six_pm() -> time:
    return time(18, 0)


class ServiceCenter(models.Model):
    """Where staff arrange the pickups and deliveries of the villages it covers."""

    name = models.CharField(max_length=100, unique=True)
    county = models.CharField(max_length=100)
    address = models.CharField(max_length=255, blank=True)
    lat = models.DecimalField(max_digits=9, decimal_places=6, validators=LAT_VALIDATORS)
    lng = models.DecimalField(max_digits=9, decimal_places=6, validators=LNG_VALIDATORS)
    opens_at = models.TimeField(default=seven_am)
    closes_at = models.TimeField(default=seven_pm)
    average_speed_kmh = models.DecimalField(
        max_digits=5,
        decimal_places=1,
        default=Decimal("35.0"),
        help_text="Average road speed used for travel-time estimates.",
    )
    detour_factor = models.DecimalField(
        max_digits=4,
        decimal_places=2,
        default=Decimal("1.35"),
        help_text="Road distance ÷ great-circle distance in this area.",
    )
    daily_capacity_kg = models.DecimalField(
        max_digits=10,
        decimal_places=1,
        default=Decimal("5000.0"),
        help_text="Goods this center can handle in one day (pickups out, transfers in).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            *coordinate_constraints("servicecenter"),
            models.CheckConstraint(
                condition=Q(opens_at__lt=models.F("closes_at")), name="servicecenter_hours_order"
            ),
            models.CheckConstraint(
                condition=Q(average_speed_kmh__gt=0), name="servicecenter_speed_positive"
            ),
            models.CheckConstraint(
                condition=Q(detour_factor__gte=1), name="servicecenter_detour_at_least_one"
            ),
            models.CheckConstraint(
                condition=Q(daily_capacity_kg__gt=0), name="servicecenter_capacity_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Village(models.Model):
    """A village; it belongs to exactly one service center."""

    name = models.CharField(max_length=100)
    county = models.CharField(max_length=100)
    lat = models.DecimalField(max_digits=9, decimal_places=6, validators=LAT_VALIDATORS)
    lng = models.DecimalField(max_digits=9, decimal_places=6, validators=LNG_VALIDATORS)
    service_center = models.ForeignKey(
        ServiceCenter, on_delete=models.PROTECT, related_name="villages"
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            *coordinate_constraints("village"),
            models.UniqueConstraint(fields=["county", "name"], name="village_unique_in_county"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.county})"

    def reaches(self, lat, lng) -> bool:
        """Whether a place given for this village (a user's exact place, an order's delivery
        point) lies within PLACE_MAX_KM_FROM_VILLAGE of its point: its center could never
        reach 0,0 (what a phone without a GPS fix sends) or a place in another county."""
        return distance_km(self.lat, self.lng, lat, lng) <= settings.PLACE_MAX_KM_FROM_VILLAGE
