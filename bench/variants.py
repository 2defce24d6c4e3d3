"""Bench-only variants of GET /api/v1/listings/, to measure a change before making it.

Each is the real ListingViewSet with one more change than the one before it, mounted at
/bench/variants/<name>/listings/ and answering the same JSON as /api/v1/listings/ (the
load script checks the results of page 1 are identical):

- values     rows rendered from `.values()` dicts by one function instead of ListingSerializer
- leancount  + the count runs on the filters alone: no joins to user and village for display
             names, no cover-photo subquery, category slug resolved to its id beforehand
- leanpage   + the page in two steps: ids of the page on the filters alone (ordered, sliced),
             then names and cover thumbnail for those ≤ 20 ids (a "deferred join")
- capped     + the count stops at 1,001 (`SELECT count(*) FROM (… LIMIT 1001)`), read as
             "more than 1,000": an API change; pages past 51 answer 404

The query logic mirrors listings.selectors.listing_search (same filters, orderings, distance
and rank expressions, imported from there) split into "filter" and "display" halves.
"""

from __future__ import annotations

import decimal
from functools import cache

from django.contrib.postgres.search import SearchRank
from django.db.models import F, OuterRef, Q, Subquery
from django.urls import include, path
from django.utils import timezone
from rest_framework.routers import SimpleRouter

from listings import selectors
from listings.api.serializers import ListingSearchParamsSerializer, _media_url
from listings.api.views import ListingViewSet
from listings.models import Category, Listing, ListingPhoto, ListingStatus
from listings.search import search_query

COUNT_CAP = 1000
MODEL_VALUES = (
    "id", "farmer_id", "title", "description", "unit", "unit_weight_kg", "price",
    "quantity_available", "min_order_quantity", "harvest_date", "available_until",
    "shelf_life_days", "is_organic", "needs_refrigeration", "status", "village_id",
    "created_at", "updated_at",
)  # fmt: skip
DISPLAY_VALUES = ("farmer_name", "village_name", "service_center_id", "category_slug")


def _decimal(value: decimal.Decimal, places: int) -> str:
    # What DRF's DecimalField prints (COERCE_DECIMAL_TO_STRING): quantized, fixed-point.
    return f"{value.quantize(decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP):f}"


def render(row: dict) -> dict:
    """One listing as ListingSerializer renders it, from a `.values()` row."""
    tz = timezone.get_current_timezone()
    distance = row.get("distance_km")

    def when(value):
        text = value.astimezone(tz).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    until = row["available_until"]
    return {
        "id": row["id"],
        "farmer": row["farmer_id"],
        "farmer_name": row["farmer_name"],
        "title": row["title"],
        "description": row["description"],
        "category": row["category_slug"],
        "unit": row["unit"],
        "unit_weight_kg": _decimal(row["unit_weight_kg"], 3),
        "price": _decimal(row["price"], 2),
        "quantity_available": _decimal(row["quantity_available"], 3),
        "min_order_quantity": _decimal(row["min_order_quantity"], 3),
        "harvest_date": row["harvest_date"].isoformat(),
        "available_until": until.isoformat() if until else None,
        "shelf_life_days": row["shelf_life_days"],
        "is_organic": row["is_organic"],
        "needs_refrigeration": row["needs_refrigeration"],
        "status": row["status"],
        "on_offer": row["status"] == "active" and (until is None or until >= timezone.localdate()),
        "village": row["village_id"],
        "village_name": row["village_name"],
        "service_center": row["service_center_id"],
        "thumbnail": _media_url(row["cover_thumbnail"]),
        "distance_km": None if distance is None else round(distance, 2),
        "created_at": when(row["created_at"]),
        "updated_at": when(row["updated_at"]),
    }


@cache
def category_ids() -> dict[str, int]:
    """Slug → id of the seeded reference categories (read once per process)."""
    return dict(Category.objects.values_list("slug", "id"))


def search_filter(params: selectors.ListingSearch):
    """listing_search without the display columns: (filtered queryset, ordering)."""
    today = timezone.localdate()
    listings = Listing.objects.filter(status=ListingStatus.ACTIVE).filter(
        Q(available_until__isnull=True) | Q(available_until__gte=today)
    )
    category_id = None
    if params.category is not None:
        category_id = category_ids().get(params.category, -1)  # unknown slug: no rows
    filters = {
        "category_id": category_id,
        "farmer_id": params.farmer,
        "village_id": params.village,
        "village__service_center_id": params.service_center,
        "price__gte": params.min_price,
        "price__lte": params.max_price,
        "is_organic": params.organic,
    }
    listings = listings.filter(**{k: v for k, v in filters.items() if v is not None})
    if params.available_on is not None:
        listings = listings.filter(harvest_date__lte=params.available_on).filter(
            Q(available_until__isnull=True) | Q(available_until__gte=params.available_on)
        )
    order: tuple[str, ...] = selectors.ORDERINGS[params.ordering or "-created_at"]
    query = search_query(params.q) if params.q else None
    if query is not None:
        listings = listings.filter(search_vector=query)
        if params.ordering is None:
            listings = listings.annotate(rank=SearchRank(F("search_vector"), query))
            order = ("-rank", "-created_at", "-id")
    if params.near is not None:
        near = params.near
        listings = (
            listings.filter(selectors._bounding_box(near))
            .annotate(distance_km=selectors.distance_km_expression(near.lat, near.lng))
            .filter(distance_km__lte=near.radius_km)
        )
    return listings, order


def display_values(ids: list[int], near: selectors.Near | None):
    """Names, cover thumbnail (and distance) for a page of listing ids."""
    cover = ListingPhoto.objects.filter(listing=OuterRef("pk")).exclude(thumbnail="")
    listings = Listing.objects.filter(pk__in=ids)
    if near is not None:
        listings = listings.annotate(
            distance_km=selectors.distance_km_expression(near.lat, near.lng)
        )
    listings = listings.annotate(
        farmer_name=F("farmer__name"),
        village_name=F("village__name"),
        service_center_id=F("village__service_center_id"),
        category_slug=F("category__slug"),
        cover_thumbnail=Subquery(cover.order_by("id").values("thumbnail")[:1]),
    )
    extra = ("distance_km",) if near is not None else ()
    return listings.values(*MODEL_VALUES, *DISPLAY_VALUES, "cover_thumbnail", *extra)


class Rows:
    """What Django's Paginator needs: count() and slicing, each done our own way."""

    def __init__(self, count, rows) -> None:
        self._count, self._rows = count, rows

    def count(self) -> int:
        return self._count()

    def __getitem__(self, page: slice) -> list:
        return self._rows(page.start, page.stop)


class ValuesListingViewSet(ListingViewSet):
    lean_count = False
    lean_page = False
    count_cap: int | None = None

    def list(self, request, *args, **kwargs):
        params = ListingSearchParamsSerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        search = params.to_search()
        ours = selectors.listing_search(search)  # exactly what /api/v1/listings/ runs
        filtered, order = search_filter(search)
        with_distance = search.near is not None

        def count() -> int:
            counted = filtered if self.lean_count else ours
            if self.count_cap is None:
                return counted.count()
            return counted.order_by().values("pk")[: self.count_cap + 1].count()

        def rows(start: int, stop: int) -> list[dict]:
            if not self.lean_page:
                fields = (*MODEL_VALUES, *DISPLAY_VALUES, "cover_thumbnail")
                extra = ("distance_km",) if with_distance else ()
                return list(ours.values(*fields, *extra)[start:stop])
            ids = list(filtered.order_by(*order).values_list("pk", flat=True)[start:stop])
            by_id = {row["id"]: row for row in display_values(ids, search.near)}
            return [by_id[pk] for pk in ids]

        page = self.paginate_queryset(Rows(count, rows))
        return self.get_paginated_response([render(row) for row in page])


class LeanCountViewSet(ValuesListingViewSet):
    lean_count = True


class LeanPageViewSet(LeanCountViewSet):
    lean_page = True


class CappedViewSet(LeanPageViewSet):
    count_cap = COUNT_CAP


VARIANTS = {
    "values": ValuesListingViewSet,
    "leancount": LeanCountViewSet,
    "leanpage": LeanPageViewSet,
    "capped": CappedViewSet,
}


def _routes(name: str, viewset) -> list:
    router = SimpleRouter()
    router.register("listings", viewset, basename=f"variant-{name}-listing")
    return router.urls


urlpatterns = [path(f"{name}/", include(_routes(name, vs))) for name, vs in VARIANTS.items()]
