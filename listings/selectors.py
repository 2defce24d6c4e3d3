"""Reads of listings: public search, a farmer's own listings, one listing."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.contrib.postgres.search import SearchRank
from django.db import connection
from django.db.models import (
    Count,
    DecimalField,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import ASin, Cast, Cos, Least, Power, Radians, Round, Sin, Sqrt
from django.utils import timezone

from listings.models import Listing, ListingPhoto, ListingStatus
from listings.search import search_query
from logistics.geo import EARTH_RADIUS_KM
from marketplace.accounts.models import Role, User
from marketplace.db import select
from marketplace.exceptions import DomainError
from orders.models import LineStatus, OrderLine, Review

ORDERINGS = {
    "price": ("price", "id"),
    "-price": ("-price", "-id"),
    "-created_at": ("-created_at", "-id"),
    "harvest_date": ("harvest_date", "id"),
    "distance": ("distance_km", "id"),
}
PUBLIC_DETAIL_STATUSES = (ListingStatus.ACTIVE, ListingStatus.PAUSED, ListingStatus.SOLD_OUT)


@dataclass(frozen=True)
class Near:
    lat: float
    lng: float
    radius_km: float


@dataclass(frozen=True)
class ListingSearch:
    """Parsed, validated search parameters (see listings.api.serializers)."""

    q: str = ""
    category: str | None = None
    farmer: int | None = None
    village: int | None = None
    service_center: int | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    organic: bool | None = None
    available_on: date | None = None
    near: Near | None = None
    ordering: str | None = None


def _with_display_columns(listings: QuerySet[Listing]) -> QuerySet[Listing]:
    """Names and the cover thumbnail as columns of the same row: one query per page."""
    cover = ListingPhoto.objects.filter(listing=OuterRef("pk")).exclude(thumbnail="")
    return listings.annotate(
        farmer_name=F("farmer__name"),
        village_name=F("village__name"),
        service_center_id=F("village__service_center_id"),
        category_slug=F("category__slug"),
        cover_thumbnail=Subquery(cover.order_by("id").values("thumbnail")[:1]),
    ).defer("search_vector")


def distance_km_expression(lat: float, lng: float):
    """Haversine great-circle distance in km from (lat, lng) to the listing's public point
    (the farm on the grid of listings.places, never its exact place), in core PostgreSQL (no
    PostGIS or earthdistance)."""
    row_lat = Radians(Cast("lat", FloatField()))
    row_lng = Radians(Cast("lng", FloatField()))
    half_dlat = (row_lat - Value(math.radians(lat))) / 2
    half_dlng = (row_lng - Value(math.radians(lng))) / 2
    a = Power(Sin(half_dlat), 2) + Value(math.cos(math.radians(lat))) * Cos(row_lat) * Power(
        Sin(half_dlng), 2
    )
    return Value(2 * EARTH_RADIUS_KM) * ASin(Sqrt(Least(Value(1.0), a)))


def _bounding_box(near: Near) -> Q:
    """A box around the circle, so the (lat, lng) index narrows rows before the exact test."""
    angle = near.radius_km / EARTH_RADIUS_KM  # the circle's radius, in radians
    dlat = math.degrees(angle)
    box = Q(lat__gte=near.lat - dlat, lat__lte=near.lat + dlat)
    # The circle reaches furthest east and west at asin(sin r / cos lat) of longitude, more
    # than r / cos lat (r / (111.195 km · cos lat) cut off places inside it, near its rim);
    # a circle around a pole spans every longitude.
    reach = math.sin(angle) / max(math.cos(math.radians(near.lat)), 1e-12)
    if reach < 1:
        dlng = math.degrees(math.asin(reach))
        west, east = near.lng - dlng, near.lng + dlng
        # Past ±180° the circle goes on at the other end of the longitudes.
        if west < -180:
            box &= Q(lng__gte=west + 360) | Q(lng__lte=east)
        elif east > 180:
            box &= Q(lng__gte=west) | Q(lng__lte=east - 360)
        else:
            box &= Q(lng__gte=west, lng__lte=east)
    return box


def on_offer(today: date, *, through: str = "") -> Q:
    """Listings a buyer can order on `today`: active (active always has stock) and not past
    their available_until. `through` is the path from another model ("listings__").
    ListingSerializer.get_on_offer says the same of one listing in Python."""
    return Q(**{f"{through}status": ListingStatus.ACTIVE}) & (
        Q(**{f"{through}available_until__isnull": True})
        | Q(**{f"{through}available_until__gte": today})
    )


def listing_search(params: ListingSearch) -> QuerySet[Listing]:
    """Public search: active listings (active always has stock) still on offer today.

    Filters and order only: counting and paging run on this table alone, and the names and
    thumbnail are fetched for the page's rows afterwards (listing_page)."""
    listings = Listing.objects.filter(on_offer(timezone.localdate()))
    filters = {
        "category__slug": params.category,
        "farmer_id": params.farmer,
        "village_id": params.village,
        "village__service_center_id": params.service_center,
        "price__gte": params.min_price,
        "price__lte": params.max_price,
        "is_organic": params.organic,
    }
    listings = listings.filter(
        **{key: value for key, value in filters.items() if value is not None}
    )
    if params.available_on is not None:
        listings = listings.filter(harvest_date__lte=params.available_on).filter(
            Q(available_until__isnull=True) | Q(available_until__gte=params.available_on)
        )
    order: tuple[str, ...] = ORDERINGS[params.ordering or "-created_at"]
    query = search_query(params.q) if params.q else None
    if query is not None:
        listings = listings.filter(search_vector=query)
        if params.ordering is None:
            listings = listings.annotate(rank=SearchRank(F("search_vector"), query))
            order = ("-rank", "-created_at", "-id")
    if params.near is not None:
        near = params.near
        distance = distance_km_expression(near.lat, near.lng)
        listings = (
            listings.filter(_bounding_box(near))
            .annotate(distance_km=distance)
            .filter(distance_km__lte=near.radius_km)
        )
    return listings.order_by(*order)


def listing_page(ids: list[int], *, near: Near | None = None) -> list[Listing]:
    """One page of search results, in the page's order, with names, thumbnail and (when
    searching near a place) distance: one query for up to a page of ids."""
    rows = _with_display_columns(Listing.objects.filter(pk__in=ids))
    if near is not None:
        rows = rows.annotate(distance_km=distance_km_expression(near.lat, near.lng))
    by_id = {row.pk: row for row in rows}
    # a listing deleted since its id was paged (requests run in autocommit) is left out
    return [by_id[pk] for pk in ids if pk in by_id]


def listing_list_for_farmer(*, farmer: User, status: str | None = None) -> QuerySet[Listing]:
    """A farmer's own listings, in any status."""
    listings = Listing.objects.filter(farmer=farmer)
    if status:
        listings = listings.filter(status=status)
    return _with_display_columns(listings).order_by("-created_at", "-id")


def listing_detail_queryset(*, user: User | None) -> QuerySet[Listing]:
    """What one may open by id: anything listed publicly, and one's own listings."""
    visible = Q(status__in=PUBLIC_DETAIL_STATUSES)
    if user is not None and user.is_authenticated:
        visible |= Q(farmer_id=user.pk)
    return (
        _with_display_columns(Listing.objects.filter(visible))
        .select_related("category")
        .prefetch_related("photos")
    )


def listing_owned_by(*, farmer: User) -> QuerySet[Listing]:
    """The listings a farmer may change; other people's answer 404."""
    return Listing.objects.filter(farmer_id=farmer.pk)


def _farmer_reviews() -> QuerySet[Review]:
    """Reviews of the orders holding an active line of the outer farmer (each review once,
    however many of the farmer's lines its order holds)."""
    orders = OrderLine.objects.filter(
        farmer_id=OuterRef(OuterRef("pk")), status=LineStatus.ACTIVE
    ).values("order_id")
    return Review.objects.filter(order_id__in=orders).order_by()


def farmer_public_profile_queryset() -> QuerySet[User]:
    """Farmers with their village, its center, how many listings they offer now (as the
    public search finds them: active and not past their available_until), and their
    rating: the average (2 decimals; null with no review) and count of the reviews of orders
    with their goods in them. All columns of one row: the profile is one query."""
    active = on_offer(timezone.localdate(), through="listings__")
    # Plain SQL aggregates over the subquery's rows (not Django aggregates, which would
    # add a GROUP BY): one row each, AVG null and COUNT 0 when there is no review.
    average = Func(F("rating"), function="AVG", output_field=DecimalField())
    count = Func(F("id"), function="COUNT", output_field=IntegerField())
    return (
        User.objects.filter(role=Role.FARMER, is_active=True)
        .select_related("village__service_center")
        .annotate(
            listing_count=Count("listings", filter=active),
            rating=Round(
                Subquery(_farmer_reviews().annotate(value=average).values("value")),
                2,
                output_field=DecimalField(max_digits=3, decimal_places=2),
            ),
            review_count=Subquery(_farmer_reviews().annotate(value=count).values("value")),
        )
    )


def listings_for_update(listing_ids: Sequence[int]) -> list[Listing]:
    """Row-locks the listings in primary-key order, so two transactions locking the same
    listings always queue instead of deadlocking; call it inside the transaction. Returns
    them in that order, without the long texts (the description and its search vector),
    which no write of stock reads: they load on access.

    In SQL of our own (marketplace.db.select), as `select_for_update(of=("self",))
    .filter(pk__in=…).order_by("pk")` would read them: every order placement and
    cancellation runs it, and the ORM spent ~0.7 ms of CPU building that query and its
    instances, this ~0.1 ms (bench/ORDERS_RESULTS.md)."""
    return select(Listing, _LOCK, [list(listing_ids)], defer=_LONG_TEXTS)


def listing_lock(listing_id: int) -> Listing:
    """The listing row, locked for the rest of the transaction; 404 `not_found` when it is
    gone: deleted (by the farmer's other phone) since the caller read it."""
    listing = Listing.objects.select_for_update(of=("self",)).filter(pk=listing_id).first()
    if listing is None:
        raise DomainError("not_found", "No such listing.", status_code=404)
    return listing


_LONG_TEXTS = frozenset({"description", "search_vector"})
_LOCK = f'WHERE "id" = ANY(%s::bigint[]) ORDER BY "id" FOR UPDATE OF "{Listing._meta.db_table}"'


# The first key of the (int, int) advisory locks on a listing's harvest date (routing's
# capacity locks are 7301).
HARVEST_LOCK_SPACE = 7302
_LOCK_HARVESTS_READ = f"""SELECT pg_advisory_xact_lock_shared(%s, line.listing_id::integer)
FROM (SELECT DISTINCT listing_id FROM "{OrderLine._meta.db_table}"
      WHERE order_id = ANY(%s::bigint[]) AND status = %s) AS line
ORDER BY line.listing_id"""  # noqa: S608 - the table name is our own model's


def harvests_lock_for_routing(order_ids: Sequence[int]) -> None:
    """The harvest dates of these orders' active lines' listings, held for reading for the
    rest of the transaction (shared: routings never wait for each other here), so a harvest
    moved later (listing_harvest_lock) waits for the pickup days routing books from them,
    and routing waits for such a move: it reads the date that move leaves. Call it before
    reading the dates. An advisory lock, not the listing's row: a share lock on the row
    would hold off every order placed of the listing (FOR UPDATE) until routing commits.
    Taken in listing id order (PostgreSQL calls a volatile function of the select list
    after its ORDER BY): a routing queued behind a move waiting at one listing holds only
    lower ones, so no ring of waits forms."""
    with connection.cursor() as cursor:
        cursor.execute(
            _LOCK_HARVESTS_READ, [HARVEST_LOCK_SPACE, list(order_ids), LineStatus.ACTIVE]
        )


def listing_harvest_lock(listing_id: int) -> None:
    """The listing's harvest date, held against routing (harvests_lock_for_routing) for the
    rest of the transaction: once this returns, every routing that read the date has
    committed its pickup days, and none reads it until this transaction ends. One listing
    per transaction, taken after its row lock: locks go orders, listing rows, these, then
    centers' capacity (routing takes these between its orders and its capacity, and
    nobody holding capacity or these waits for a listing row), so no wait comes round."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [HARVEST_LOCK_SPACE, listing_id])
