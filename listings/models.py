"""Produce that farmers offer: categories, listings and their photos."""

from decimal import Decimal

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Round

from listings.places import GRID_DECIMALS
from marketplace.accounts.models import User


class Category(models.Model):
    """Reference data (seeded by a migration); names in English and Simplified Chinese."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=60)
    name_zh = models.CharField(max_length=30)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "slug"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return f"{self.name} / {self.name_zh}"


class Unit(models.TextChoices):
    KG = "kg", "kilogram"
    JIN = "jin", "jin (斤, 0.5 kg)"
    CRATE = "crate", "crate"
    BOX = "box", "box"
    BAG = "bag", "bag"
    PIECE = "piece", "piece"
    BUNCH = "bunch", "bunch"
    DOZEN = "dozen", "dozen"
    LITER = "liter", "liter"


# Units whose weight is fixed by definition; the others carry the farmer's figure.
FIXED_UNIT_WEIGHT_KG = {Unit.KG: Decimal("1.000"), Unit.JIN: Decimal("0.500")}
# Units held and sold whole: nobody hands over half a crate or 2.5 bunches (a dozen may be
# halved, a weight or a volume divided).
WHOLE_UNITS = frozenset({Unit.CRATE, Unit.BOX, Unit.BAG, Unit.PIECE, Unit.BUNCH})


class ListingStatus(models.TextChoices):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    SOLD_OUT = "sold_out"
    ARCHIVED = "archived"


class Listing(models.Model):
    farmer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="listings")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="listings")
    title = models.CharField(max_length=120)
    description = models.TextField(max_length=4000, blank=True)
    unit = models.CharField(max_length=10, choices=Unit.choices)
    unit_weight_kg = models.DecimalField(max_digits=8, decimal_places=3)
    price = models.DecimalField(max_digits=10, decimal_places=2, help_text="CNY per unit")
    quantity_available = models.DecimalField(max_digits=12, decimal_places=3)
    min_order_quantity = models.DecimalField(
        max_digits=12, decimal_places=3, default=Decimal("1.000")
    )
    harvest_date = models.DateField()
    harvest_round = models.PositiveIntegerField(
        default=0,
        db_default=0,
        editable=False,
        help_text="Which harvest of the listing its harvest_date is: one more each time the "
        "date moves later once the harvest is in (the listing moves on to its next one); a "
        "harvest still ahead moved earlier or later stays the same one. Order lines keep it.",
    )
    available_until = models.DateField(null=True, blank=True)
    shelf_life_days = models.PositiveSmallIntegerField()
    is_organic = models.BooleanField(default=False)
    needs_refrigeration = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=ListingStatus.choices, default=ListingStatus.ACTIVE
    )
    # Where the produce waits, copied from the farmer (exact place, else the village) so that
    # search filters and distance run on this table's own indexed columns; lat/lng only on
    # the public grid of listings.places (~1 km): the exact place stays on the farmer.
    village = models.ForeignKey(
        "logistics.Village", on_delete=models.PROTECT, related_name="listings"
    )
    lat = models.DecimalField(
        max_digits=9, decimal_places=6, help_text="the farm's latitude rounded to 0.01°"
    )
    lng = models.DecimalField(
        max_digits=9, decimal_places=6, help_text="the farm's longitude rounded to 0.01°"
    )
    # Title, description, category and farmer/village names, segmented (CJK bigrams), in
    # the `simple` configuration; kept by listings.services on every write that changes them.
    search_vector = SearchVectorField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="listing_price_positive"),
            models.CheckConstraint(
                condition=Q(quantity_available__gte=0), name="listing_quantity_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(min_order_quantity__gt=0), name="listing_min_order_positive"
            ),
            models.CheckConstraint(
                condition=Q(unit_weight_kg__gt=0), name="listing_unit_weight_positive"
            ),
            models.CheckConstraint(
                condition=Q(shelf_life_days__gte=1), name="listing_shelf_life_positive"
            ),
            models.CheckConstraint(
                condition=Q(available_until__isnull=True)
                | Q(available_until__gte=F("harvest_date")),
                name="listing_available_after_harvest",
            ),
            models.CheckConstraint(
                condition=~Q(status=ListingStatus.ACTIVE) | Q(quantity_available__gt=0),
                name="listing_active_has_stock",
            ),
            models.CheckConstraint(
                condition=~Q(unit=Unit.KG) | Q(unit_weight_kg=Decimal("1")),
                name="listing_kg_weighs_one_kg",
            ),
            models.CheckConstraint(
                condition=~Q(unit=Unit.JIN) | Q(unit_weight_kg=Decimal("0.5")),
                name="listing_jin_weighs_half_kg",
            ),
            # Public: no exact farm location here (listings.places).
            models.CheckConstraint(
                condition=Q(lat=Round("lat", GRID_DECIMALS), lng=Round("lng", GRID_DECIMALS)),
                name="listing_place_on_grid",
            ),
        ]
        indexes = [
            GinIndex(fields=["search_vector"], name="listing_search_gin"),
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(status="active"),
                name="listing_active_newest",
            ),
            models.Index(
                fields=["category", "price"],
                condition=Q(status="active"),
                name="listing_active_category_price",
            ),
            models.Index(
                fields=["price"], condition=Q(status="active"), name="listing_active_price"
            ),
            models.Index(
                fields=["lat", "lng"], condition=Q(status="active"), name="listing_active_place"
            ),
            models.Index(fields=["farmer", "status"], name="listing_farmer_status"),
        ]

    def __str__(self) -> str:
        return self.title


def listing_photo_path(photo: "ListingPhoto", filename: str) -> str:
    return f"listings/{photo.listing_id}/{filename}"


class ListingPhoto(models.Model):
    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="photos")
    image = models.ImageField(
        upload_to=listing_photo_path, width_field="width", height_field="height"
    )
    thumbnail = models.ImageField(upload_to=listing_photo_path, blank=True)
    thumbnail_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="its image file was gone when the thumbnail was made"
    )
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.image.name
