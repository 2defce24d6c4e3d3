from datetime import date, timedelta
from decimal import Decimal

from django.core.files.storage import default_storage
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from listings.models import Category, Listing, ListingPhoto, ListingStatus, Unit
from listings.selectors import ORDERINGS, ListingSearch, Near
from marketplace.api.serializers import SlugRelatedField, TextLineField

MAX_QUANTITY = Decimal("1000000")
MAX_RADIUS_KM = 200.0
DISTANCE_DECIMALS = 1  # km to a place known to ~0.8 km (listings.places)


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ("id", "slug", "name", "name_zh")
        read_only_fields = fields


# "lat,lng" in decimal degrees, as clients send it: what the schema offers. The search also
# reads spaces and exponents (float()), so nothing this pattern takes is refused.
NEAR_PATTERN = (
    r"^-?(?:90(?:\.0+)?|[1-8]?\d(?:\.\d+)?),"
    r"-?(?:180(?:\.0+)?|(?:1[0-7]\d|[1-9]?\d)(?:\.\d+)?)$"
)


@extend_schema_field({"type": "string", "pattern": NEAR_PATTERN, "example": "30.25,119.72"})
class NearField(serializers.CharField):
    """A place as "lat,lng" (validated by ListingSearchParamsSerializer.validate_near)."""


def _field_error(field: str, message: str, code: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: serializers.ErrorDetail(message, code=code)})


class OwnListingsParamsSerializer(serializers.Serializer):
    """Query parameters of GET /api/v1/listings/?mine=true; an unknown status is a 400, and
    so is a search parameter (q, category, …), which this list does not read: answered
    all the same, it listed every listing of the farmer as if it matched."""

    status = serializers.ChoiceField(
        choices=ListingStatus.choices, required=False, allow_blank=True
    )

    def validate(self, attrs: dict) -> dict:
        searched = [
            name
            for name in ListingSearchParamsSerializer().fields
            if name not in self.fields and self.initial_data.get(name, "") != ""
        ]
        if searched:
            message = "Not read with mine=true, whose listings are chosen by status only."
            raise serializers.ValidationError(
                {name: serializers.ErrorDetail(message, code="not_with_mine") for name in searched}
            )
        return attrs


class ListingSearchParamsSerializer(serializers.Serializer):
    """Query parameters of GET /api/v1/listings/; every bad value is a 400 naming it."""

    q = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    category = serializers.SlugField(required=False, default=None)
    farmer = serializers.IntegerField(required=False, min_value=1, default=None)
    village = serializers.IntegerField(required=False, min_value=1, default=None)
    service_center = serializers.IntegerField(required=False, min_value=1, default=None)
    min_price = serializers.DecimalField(
        max_digits=10, decimal_places=2, min_value=Decimal(0), required=False, default=None
    )
    max_price = serializers.DecimalField(
        max_digits=10, decimal_places=2, min_value=Decimal(0), required=False, default=None
    )
    organic = serializers.BooleanField(required=False, allow_null=True, default=None)
    available_on = serializers.DateField(required=False, default=None)
    near = NearField(required=False, default=None, help_text="lat,lng")
    radius_km = serializers.FloatField(
        required=False, min_value=0.1, max_value=MAX_RADIUS_KM, default=None
    )
    ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default=None)
    # Read with mine=true only (OwnListingsParamsSerializer); a value that is no status is
    # refused here too, rather than the search quietly run without it, and so is a status
    # the search does not list (validate_status).
    status = serializers.ChoiceField(
        choices=ListingStatus.choices, required=False, allow_blank=True
    )

    def to_internal_value(self, data):
        # An empty parameter is none (a search form sends the fields left blank), as an
        # empty filter of the villages or notifications (django-filter's) and an empty
        # page_size are.
        given = {name: value for name, value in data.items() if str(value).strip()}
        return super().to_internal_value(given)

    def validate_near(self, value: str | None) -> tuple[float, float] | None:
        if value is None:
            return None
        try:
            lat_text, lng_text = value.split(",")
            lat, lng = float(lat_text), float(lng_text)
        except ValueError:
            raise serializers.ValidationError(
                "Give near as lat,lng.", code="invalid_near"
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            raise serializers.ValidationError("Coordinates out of range.", code="invalid_near")
        return lat, lng

    def validate_status(self, value: str) -> str:
        """The search lists active listings only: ?status=paused answered them all the same,
        as if paused ones were what it showed. Another farmer's are never public, and one's
        own are ?mine=true&status=…; active is what the search lists, so it is taken."""
        if value != ListingStatus.ACTIVE:
            raise serializers.ValidationError(
                "The search lists active listings only; a farmer's own of any status are "
                "listed with mine=true.",
                code="mine_required",
            )
        return value

    def validate(self, attrs):
        low, high = attrs["min_price"], attrs["max_price"]
        if low is not None and high is not None and low > high:
            raise _field_error("min_price", "Above max_price.", "invalid_range")
        if attrs["near"] is None and attrs["radius_km"] is not None:
            raise _field_error("radius_km", "Needs near=lat,lng.", "near_required")
        if attrs["near"] is None and attrs["ordering"] == "distance":
            raise _field_error("ordering", "Needs near=lat,lng.", "near_required")
        return attrs

    def to_search(self) -> ListingSearch:
        data = dict(self.validated_data)
        data.pop("status", None)
        near, radius = data.pop("near"), data.pop("radius_km")
        if near is not None:
            data["near"] = Near(lat=near[0], lng=near[1], radius_km=radius or 10.0)
        return ListingSearch(**data)


def _media_url(path: str | None) -> str | None:
    return default_storage.url(path) if path else None


class ListingSerializer(serializers.ModelSerializer):
    """A listing as buyers see it: flat and compact (a page of 20 is a few KB gzipped)."""

    category = serializers.CharField(source="category_slug", read_only=True)
    farmer_name = serializers.CharField(read_only=True)
    village_name = serializers.CharField(read_only=True)
    service_center = serializers.IntegerField(source="service_center_id", read_only=True)
    thumbnail = serializers.SerializerMethodField()
    on_offer = serializers.SerializerMethodField(
        help_text="Whether it can be ordered today: active and not past available_until. A "
        "status stays active after that date (it is the farmer's choice); this says the rest."
    )
    distance_km = serializers.SerializerMethodField(
        help_text="With near=lat,lng: km to the listing's public place (the farm rounded to a "
        "0.01° grid, up to ~0.8 km off), to one decimal; null otherwise."
    )

    class Meta:
        model = Listing
        fields = (
            "id",
            "farmer",
            "farmer_name",
            "title",
            "description",
            "category",
            "unit",
            "unit_weight_kg",
            "price",
            "quantity_available",
            "min_order_quantity",
            "harvest_date",
            "available_until",
            "shelf_life_days",
            "is_organic",
            "needs_refrigeration",
            "status",
            "on_offer",
            "village",
            "village_name",
            "service_center",
            "thumbnail",
            "distance_km",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_on_offer(self, listing) -> bool:
        # listings.selectors.on_offer, for one listing already read
        until = listing.available_until
        return listing.status == ListingStatus.ACTIVE and (
            until is None or until >= timezone.localdate()
        )

    def get_thumbnail(self, listing) -> str | None:
        return _media_url(getattr(listing, "cover_thumbnail", None))

    def get_distance_km(self, listing) -> float | None:
        distance = getattr(listing, "distance_km", None)
        return None if distance is None else round(distance, DISTANCE_DECIMALS)


class ListingPhotoSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = ListingPhoto
        fields = ("id", "url", "thumbnail_url", "width", "height")
        read_only_fields = fields

    def get_url(self, photo) -> str:
        return _media_url(photo.image.name)

    def get_thumbnail_url(self, photo) -> str | None:
        return _media_url(photo.thumbnail.name)


class ListingDetailSerializer(ListingSerializer):
    photos = ListingPhotoSerializer(many=True, read_only=True)

    class Meta(ListingSerializer.Meta):
        fields = (*ListingSerializer.Meta.fields, "photos")
        read_only_fields = fields


def _check_harvest_date(value):
    today = timezone.localdate()
    if not today - timedelta(days=365) <= value <= today + timedelta(days=365):
        raise serializers.ValidationError("Within a year of today.", code="out_of_range")
    return value


class ListingWriteSerializer(serializers.Serializer):
    """What a farmer may set. Owner, status, place and search text are not here, so a
    request cannot forge them."""

    category = SlugRelatedField(slug_field="slug", queryset=Category.objects.all())
    title = TextLineField(max_length=120)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    unit = serializers.ChoiceField(choices=Unit.choices)
    unit_weight_kg = serializers.DecimalField(
        max_digits=8, decimal_places=3, min_value=Decimal("0.001"), required=False, allow_null=True
    )
    price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0.01"))
    quantity_available = serializers.DecimalField(
        max_digits=12, decimal_places=3, min_value=Decimal(0), max_value=MAX_QUANTITY
    )
    min_order_quantity = serializers.DecimalField(
        max_digits=12,
        decimal_places=3,
        min_value=Decimal("0.001"),
        max_value=MAX_QUANTITY,
        required=False,
    )
    harvest_date = serializers.DateField()
    available_until = serializers.DateField(required=False, allow_null=True)
    shelf_life_days = serializers.IntegerField(min_value=1, max_value=3650)
    is_organic = serializers.BooleanField(required=False)
    needs_refrigeration = serializers.BooleanField(required=False)

    def validate_harvest_date(self, value: date) -> date:
        """Within a year of today when set. An edit sending the date the listing holds (a
        form saved with only its price changed) keeps it, however old it has grown: rice
        or dried beans listed within the year of their harvest stay on offer past it."""
        listing = self.context.get("listing")
        if listing is not None and value == listing.harvest_date:
            return value
        return _check_harvest_date(value)


class ListingUpdateSerializer(ListingWriteSerializer):
    quantity_seen = serializers.DecimalField(
        max_digits=12,
        decimal_places=3,
        required=False,
        help_text="The stock the farmer was shown when they typed the new one. With it, a new "
        "quantity_available is refused (409 stock_changed, with the stock `now`) when orders "
        "took some since: it would put what they bought back on sale.",
    )


class ListingCreateSerializer(ListingWriteSerializer):
    publish = serializers.BooleanField(
        required=False, default=True, help_text="false keeps it as a draft"
    )


class FarmerProfileSerializer(serializers.Serializer):
    """A farmer as anyone may see them: no phone number, no exact address."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    village = serializers.IntegerField(source="village_id")
    village_name = serializers.CharField(source="village.name")
    service_center = serializers.IntegerField(source="village.service_center_id")
    service_center_name = serializers.CharField(source="village.service_center.name")
    listing_count = serializers.IntegerField()
    rating = serializers.DecimalField(
        max_digits=3,
        decimal_places=2,
        allow_null=True,
        help_text="Average review rating, 1.00 to 5.00; null before the first review.",
    )
    review_count = serializers.IntegerField()
    member_since = serializers.DateTimeField(source="date_joined")
