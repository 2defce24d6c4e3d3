"""Writes of listings. Views, tasks, admin and commands all come through here."""

from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib.postgres.search import SearchVector
from django.db import connection, transaction
from django.db.models import F, ProtectedError, Q, QuerySet, Value
from django.utils import timezone

from listings import errors
from listings.models import (
    FIXED_UNIT_WEIGHT_KG,
    WHOLE_UNITS,
    Category,
    Listing,
    ListingPhoto,
    ListingStatus,
)
from listings.places import public_point
from listings.search import CONFIG, segment
from listings.selectors import listing_harvest_lock, listing_lock
from logistics.models import ShipmentStatus
from marketplace.accounts.models import Role, User
from marketplace.exceptions import DomainError
from orders.models import LineStatus, OrderLine, OrderStatus

# The status a farmer may move a listing to, from each status. sold_out and active also
# follow stock on their own (see _status_for_stock); archived is final.
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    ListingStatus.DRAFT: frozenset({ListingStatus.ACTIVE, ListingStatus.ARCHIVED}),
    ListingStatus.ACTIVE: frozenset({ListingStatus.PAUSED, ListingStatus.ARCHIVED}),
    ListingStatus.PAUSED: frozenset({ListingStatus.ACTIVE, ListingStatus.ARCHIVED}),
    ListingStatus.SOLD_OUT: frozenset({ListingStatus.PAUSED, ListingStatus.ARCHIVED}),
    ListingStatus.ARCHIVED: frozenset(),
}

# Orders whose lines may still go back to stock (cancelled, rejected, not delivered).
OPEN_ORDER_STATUSES = frozenset(
    {
        OrderStatus.AWAITING_PAYMENT,
        OrderStatus.PLACED,
        OrderStatus.CONFIRMED,
        OrderStatus.SCHEDULED,
        OrderStatus.IN_TRANSIT,
    }
)
EDITABLE_FIELDS = frozenset(
    {
        "category",
        "title",
        "description",
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
    }
)
SEARCHED_FIELDS = frozenset({"title", "description", "category"})


# Called with a listing just locked, before a write: raises to refuse it (the API's
# If-Match, which must see the listing as no other write can change it any more).
Precondition = Callable[[Listing], None]


def _locked(listing_id: int, precondition: Precondition | None) -> Listing:
    listing = listing_lock(listing_id)
    if precondition is not None:
        precondition(listing)
    return listing


def _status_for_stock(status: str, quantity: Decimal) -> str:
    """Stock drives active ⇄ sold_out; the farmer's own choices (draft, paused, archived)
    are left alone."""
    if status == ListingStatus.ACTIVE and quantity <= 0:
        return ListingStatus.SOLD_OUT
    if status == ListingStatus.SOLD_OUT and quantity > 0:
        return ListingStatus.ACTIVE
    return status


def _unit_weight(unit: str, unit_weight_kg: Decimal | None) -> Decimal:
    fixed = FIXED_UNIT_WEIGHT_KG.get(unit)
    if fixed is not None:
        if unit_weight_kg is not None and unit_weight_kg != fixed:
            raise DomainError(
                errors.UNIT_WEIGHT_FIXED,
                f"One {unit} weighs {fixed} kg.",
                extra={"field": "unit_weight_kg"},
            )
        return fixed
    if unit_weight_kg is None:
        raise DomainError(
            errors.UNIT_WEIGHT_REQUIRED,
            f"Give the weight of one {unit} in kg (needed to plan vehicle loads).",
            extra={"field": "unit_weight_kg"},
        )
    return unit_weight_kg


def _check_whole(unit: str, **quantities: Decimal) -> None:
    """A listing sold by the crate, box, bag, piece or bunch (WHOLE_UNITS) holds and sells
    whole ones."""
    if unit not in WHOLE_UNITS:
        return
    for field, value in quantities.items():
        if value % 1:
            raise DomainError(
                errors.QUANTITY_NOT_WHOLE,
                f"{field} must be a whole number of {unit}s.",
                extra={"field": field, "unit": unit},
            )


def _check_dates(
    harvest_date: date, available_until: date | None, *, field: str = "available_until"
) -> None:
    """`field` is the one the error names: the date the request set (an edit may move
    either one past the other)."""
    if available_until is not None and available_until < harvest_date:
        raise DomainError(
            errors.INVALID_DATES,
            "available_until is before harvest_date.",
            extra={"field": field},
        )


def _farmer_inactive() -> DomainError:
    return DomainError(
        errors.FARMER_INACTIVE,
        "The farmer's account is deactivated: nobody would hand the goods over.",
        status_code=409,
    )


def listing_place(farmer: User) -> dict[str, Any]:
    """A listing's village and its public point: where the produce waits (the farmer's exact
    place, else their village) rounded to the grid of listings.places. The exact place stays
    on the farmer's profile, whence logistics reads it."""
    lat, lng = public_point(farmer, farmer.village)
    return {"village": farmer.village, "lat": lat, "lng": lng}


def search_vector_for(*, title: str, description: str, category: Category, farmer: User) -> Any:
    """The weighted tsvector expression for one listing (title A, category B, names C, text D)."""
    village_name = farmer.village.name if farmer.village_id else ""
    parts = [
        (segment(title), "A"),
        (segment(f"{category.name} {category.name_zh} {category.slug}"), "B"),
        (segment(f"{farmer.name} {village_name}"), "C"),
        (segment(description), "D"),
    ]
    vector = None
    for text, weight in parts:
        term = SearchVector(Value(text), config=CONFIG, weight=weight)
        vector = term if vector is None else vector + term
    return vector


def _reindex(listing: Listing) -> None:
    Listing.objects.filter(pk=listing.pk).update(
        search_vector=search_vector_for(
            title=listing.title,
            description=listing.description,
            category=listing.category,
            farmer=listing.farmer,
        )
    )


@transaction.atomic
def listing_create(
    *,
    farmer: User,
    category: Category,
    title: str,
    unit: str,
    price: Decimal,
    quantity_available: Decimal,
    harvest_date: date,
    shelf_life_days: int,
    description: str = "",
    unit_weight_kg: Decimal | None = None,
    min_order_quantity: Decimal = Decimal(1),
    available_until: date | None = None,
    is_organic: bool = False,
    needs_refrigeration: bool = False,
    publish: bool = True,
) -> Listing:
    """A farmer lists produce: published at once (or kept as a draft). Kilograms and jin
    weigh what they weigh; other units need the farmer's weight per unit. A farmer
    deactivated since the request read them lists nothing (409 `farmer_inactive`)."""
    if farmer.role != Role.FARMER:
        raise DomainError(errors.NOT_A_FARMER, "Only farmers list produce.", status_code=403)
    # The farmer's place as it is now, the row locked as a move locks it (user_update_profile,
    # the admin): a move under way is waited for, and one after this waits in turn, so that
    # its refresh of the farmer's listings finds this one. Read as the request found it, the
    # listing kept the village the farmer had left. The village is read after the lock (a
    # join in the locking statement gives a row that waited for a move no village).
    farmer = User.objects.select_for_update(no_key=True).get(pk=farmer.pk)
    if not farmer.is_active:  # deactivated since the request was signed in
        raise _farmer_inactive()
    _check_dates(harvest_date, available_until)
    _check_whole(unit, quantity_available=quantity_available, min_order_quantity=min_order_quantity)
    status = ListingStatus.ACTIVE if publish else ListingStatus.DRAFT
    listing = Listing.objects.create(
        farmer=farmer,
        category=category,
        title=title.strip(),
        description=description.strip(),
        unit=unit,
        unit_weight_kg=_unit_weight(unit, unit_weight_kg),
        price=price,
        quantity_available=quantity_available,
        min_order_quantity=min_order_quantity,
        harvest_date=harvest_date,
        available_until=available_until,
        shelf_life_days=shelf_life_days,
        is_organic=is_organic,
        needs_refrigeration=needs_refrigeration,
        status=_status_for_stock(status, quantity_available),
        **listing_place(farmer),
    )
    _reindex(listing)
    return listing


@transaction.atomic
def listing_update(
    *,
    listing: Listing,
    stock_seen: Decimal | None = None,
    precondition: Precondition | None = None,
    **changes: Any,
) -> Listing:
    """The owner edits a listing. Restocking a sold-out listing makes it active again and
    selling the stock down to zero makes it sold out; an archived listing is frozen.
    `stock_seen`, the stock the editor was shown: a new stock is refused (409
    `stock_changed`) when orders took some since, which it would put back on sale. An edit
    that changes nothing writes nothing (updated_at stays). A harvest moved later than the
    pickup day of goods routed is refused (listing_check_harvest). `precondition` is called
    with the listing once locked, before anything (the API's If-Match)."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"not editable: {sorted(unknown)}")
    listing = _locked(listing.pk, precondition)
    if listing.status == ListingStatus.ARCHIVED:
        raise DomainError(
            errors.LISTING_ARCHIVED, "An archived listing cannot be changed.", status_code=409
        )
    if (
        "quantity_available" in changes
        and stock_seen is not None
        and stock_seen != listing.quantity_available
    ):
        raise DomainError(
            errors.STOCK_CHANGED,
            f"The stock is {listing.quantity_available} now, not {stock_seen}: orders took "
            "some since it was read. Read it again before setting it.",
            status_code=409,
            extra={"field": "quantity_available", "now": str(listing.quantity_available)},
        )
    if "unit" in changes or "unit_weight_kg" in changes:
        unit = changes.get("unit", listing.unit)
        # a new unit needs its weight again; the same unit sent again keeps it
        weight = changes.get(
            "unit_weight_kg", listing.unit_weight_kg if unit == listing.unit else None
        )
        changes["unit_weight_kg"] = _unit_weight(unit, weight)
        if (unit, changes["unit_weight_kg"]) != (listing.unit, listing.unit_weight_kg):
            _check_no_open_orders(listing)
    _check_dates(
        changes.get("harvest_date", listing.harvest_date),
        changes.get("available_until", listing.available_until),
        field="available_until" if "available_until" in changes else "harvest_date",
    )
    _check_whole(
        changes.get("unit", listing.unit),
        quantity_available=changes.get("quantity_available", listing.quantity_available),
        min_order_quantity=changes.get("min_order_quantity", listing.min_order_quantity),
    )
    harvest_date = changes.get("harvest_date", listing.harvest_date)
    if _harvest_put_off(listing, harvest_date):
        # Held until this commits: routings that read the date have committed their pickup
        # days, which the check finds, and routings to come read the new date.
        listing_harvest_lock(listing.pk)
        listing_check_harvest(listing=listing, harvest_date=harvest_date)
    elif listing.harvest_date < harvest_date:  # the harvest is in: on to the next one
        listing.harvest_round += 1
    changed = set()
    for field, sent in changes.items():
        value = sent.strip() if isinstance(sent, str) else sent
        if getattr(listing, field) != value:
            setattr(listing, field, value)
            changed.add(field)
    status = _status_for_stock(listing.status, listing.quantity_available)
    if not changed and status == listing.status:
        # What it holds already (a form saved untouched, a retried edit): nothing is written,
        # so updated_at, and the ETags of the listing and the pages showing it, stay.
        return listing
    listing.status = status
    listing.save()
    if SEARCHED_FIELDS & changed:
        _reindex(listing)
    return listing


# Goods still at the farm: their pickup is yet to be done.
_AT_THE_FARM = (ShipmentStatus.PENDING, ShipmentStatus.SCHEDULED)


def _harvest_put_off(listing: Listing, harvest_date: date) -> bool:
    """A harvest still ahead moved later: the one change of the date that may leave goods
    routed to be picked up before it (listing_check_harvest)."""
    return listing.harvest_date < harvest_date and listing.harvest_date > timezone.localdate()


def listing_check_harvest(*, listing: Listing, harvest_date: date) -> None:
    """A harvest moved later than the pickup day of the listing's goods routed and still at
    the farm (their line active, their order open) is refused (409 `harvest_after_pickup`,
    naming each such line with its order and pickup day): a driver would call for produce
    not yet harvested. The farmer turns those lines down or keeps the date. listing_update
    checks it holding listing_harvest_lock (routing books pickups from the harvest under
    the lock this waits for); the admin's form checks it first, for a form error.

    Only while the listing's harvest is still ahead: once it is in (today or before), the
    goods ordered are in the farmer's hands, and a later date is the next harvest the
    listing moves on to (each line keeps its own `spoils_on`). Only that harvest's goods
    then: a line keeps the harvest it was ordered from (`harvest_round`, which a harvest
    still ahead keeps when it moves), and goods of an earlier one are in hand whenever their
    pickup is. A line ordered before lines kept it counts as this harvest's, as all did."""
    if not _harvest_put_off(listing, harvest_date):
        return
    # One filter() call: the shipment joined is the line's farmer's of the line's order.
    waiting = list(
        OrderLine.objects.filter(
            Q(harvest_round=listing.harvest_round) | Q(harvest_round__isnull=True),
            listing=listing,
            status=LineStatus.ACTIVE,
            order__status__in=OPEN_ORDER_STATUSES,
            order__shipments__farmer_id=F("farmer_id"),
            order__shipments__status__in=_AT_THE_FARM,
            order__shipments__pickup_date__lt=harvest_date,
        )
        .order_by("order_id", "pk")
        .values_list("order_id", "pk", "order__shipments__pickup_date")
    )
    if not waiting:
        return
    days = ", ".join(f"order {order} on {day}" for order, _, day in waiting)
    raise DomainError(
        errors.HARVEST_AFTER_PICKUP,
        f"Goods of this listing are to be picked up before {harvest_date}: {days}. Turn "
        "those lines down (POST /api/v1/orders/{id}/lines/{line_id}/reject/) or harvest by "
        f"{min(day for _, _, day in waiting)}; nothing was changed.",
        status_code=409,
        extra={
            "field": "harvest_date",
            "orders": [
                {"order": order, "line": line, "pickup_date": day.isoformat()}
                for order, line, day in waiting
            ],
        },
    )


def _check_no_open_orders(listing: Listing) -> None:
    """Orders not yet over hold stock of the listing counted in its unit: a cancel gives
    back each line's quantity in that unit. Sold by another unit (kg to 10 kg crates), the
    listing would take back 2 crates for 2 kg. Checked under the listing's lock, which a
    placement takes too, so no order comes in between."""
    if OrderLine.objects.filter(
        listing=listing, status=LineStatus.ACTIVE, order__status__in=OPEN_ORDER_STATUSES
    ).exists():
        raise DomainError(
            errors.UNIT_IN_OPEN_ORDERS,
            "Orders not yet delivered or cancelled hold this listing's stock in "
            f"{listing.unit}; change its unit once they are over, or list the produce anew.",
            status_code=409,
            extra={"field": "unit"},
        )


@transaction.atomic
def listing_set_status(
    *, listing: Listing, status: str, precondition: Precondition | None = None
) -> Listing:
    """Publish, pause, resume or archive, along STATUS_TRANSITIONS. Publishing or resuming a
    listing with no stock leaves it sold out. A deactivated farmer's listing is not put on
    sale (listings_pause_for_farmer took it off): an operator's publish is refused."""
    # Put on sale: the farmer's row is locked as a deactivation writes it, before it pauses
    # their listings, and so before the listing (as a deactivation and a move take them): a
    # deactivation under way is waited for and seen, and one after this finds it on sale.
    farmer_active = status != ListingStatus.ACTIVE or (
        User.objects.select_for_update(no_key=True)
        .filter(pk=listing.farmer_id, is_active=True)
        .exists()
    )
    listing = _locked(listing.pk, precondition)
    if _status_for_stock(status, listing.quantity_available) == listing.status:
        # a retried request changes nothing: also a publish or resume retried once it left
        # the listing sold out
        return listing
    if status not in STATUS_TRANSITIONS[listing.status]:
        raise DomainError(
            errors.INVALID_STATUS_TRANSITION,
            f"A {listing.status} listing cannot become {status}.",
            status_code=409,
            extra={"from": listing.status, "to": status},
        )
    if not farmer_active:
        raise _farmer_inactive()
    listing.status = _status_for_stock(status, listing.quantity_available)
    listing.save(update_fields=["status", "updated_at"])
    return listing


@transaction.atomic
def listing_delete(*, listing: Listing, precondition: Precondition | None = None) -> Listing | None:
    """Delete a listing nobody ordered; archive one that orders refer to (they keep
    pointing at it). Returns the archived listing, or None when it was deleted. The row is
    locked first, as a placement locks it: an order being placed commits its lines before
    the check for them, or finds the listing gone."""
    _locked(listing.pk, precondition)
    files = [
        (field.storage, field.name)
        for photo in ListingPhoto.objects.filter(listing=listing)
        for field in (photo.image, photo.thumbnail)
        if field
    ]
    try:
        with transaction.atomic():
            Listing.objects.filter(pk=listing.pk).delete()
    except ProtectedError:
        return listing_set_status(listing=listing, status=ListingStatus.ARCHIVED)
    # its photos went with it: their files go too, once that is committed (as a photo
    # removed on its own); robust: a file left over is no failure of the delete
    transaction.on_commit(lambda: [storage.delete(name) for storage, name in files], robust=True)
    return None


def listings_pause_for_farmer(*, farmer: User) -> int:
    """A farmer an operator deactivated: what they offer is taken off sale (paused, as they
    could pause it themselves, and resume once back), so no buyer orders goods nobody will
    hand over. Each row is locked as a placement locks it. Returns how many were paused."""
    with transaction.atomic():
        on_sale = Listing.objects.select_for_update(of=("self",)).filter(
            farmer=farmer, status__in=(ListingStatus.ACTIVE, ListingStatus.SOLD_OUT)
        )
        pks = list(on_sale.order_by("pk").values_list("pk", flat=True))
        return Listing.objects.filter(pk__in=pks).update(
            status=ListingStatus.PAUSED, updated_at=timezone.now()
        )


def listings_refresh_for_farmer(*, farmer: User) -> int:
    """After a farmer moves or is renamed: their listings' public place and search text."""
    return listings_refresh(listings=Listing.objects.filter(farmer=farmer))


@transaction.atomic
def listings_refresh(*, listings: QuerySet[Listing]) -> int:
    """The listings' public place and search text again, from their farmer, the farmer's
    village and the category as they are now: after one of those changed (a farmer moved
    or renamed, a village moved or renamed, a category renamed). Archived ones stay as
    they were. Returns how many were refreshed."""
    # Locked in key order, as a placement locks them (in the model's newest-first order,
    # the two deadlocked), and read under the lock: an edit of the title committed while
    # this waited is what the search text is built from, not the text read before it.
    rows = list(
        listings.exclude(status=ListingStatus.ARCHIVED)
        .select_related("category", "farmer__village")
        .select_for_update(of=("self",))
        .order_by("pk")
    )
    for listing in rows:
        Listing.objects.filter(pk=listing.pk).update(
            **listing_place(listing.farmer),
            search_vector=search_vector_for(
                title=listing.title,
                description=listing.description,
                category=listing.category,
                farmer=listing.farmer,
            ),
        )
    return len(rows)


# Every listing of an order in one statement; a row per listing from the three arrays.
_TAKE_STOCK = f"""UPDATE "{Listing._meta.db_table}" AS listing
SET quantity_available = taken.quantity_available, status = taken.status
FROM unnest(%s::bigint[], %s::numeric[], %s::text[]) AS taken(id, quantity_available, status)
WHERE listing.id = taken.id
"""  # noqa: S608 - the table name is our own model's


def listings_take_stock(*, takes: Sequence[tuple[Listing, Decimal]]) -> None:
    """Take each quantity from its listing, which the caller has locked
    (listings_for_update) and lists once: one UPDATE for all of them, not one per listing,
    as an order's lines take stock in the shortest time the rows stay locked. Taking the
    last unit makes a listing sold out. The CHECK (quantity >= 0) is the last line of
    defence."""
    for listing, quantity in takes:
        listing.quantity_available -= quantity
        listing.status = _status_for_stock(listing.status, listing.quantity_available)
    with connection.cursor() as cursor:
        cursor.execute(
            _TAKE_STOCK,
            [
                [listing.pk for listing, _ in takes],
                [listing.quantity_available for listing, _ in takes],
                [listing.status for listing, _ in takes],
            ],
        )


def listings_restock(*, restocks: Sequence[tuple[Listing, Decimal]]) -> None:
    """Give back each quantity to its listing, which the caller has locked and lists once:
    one UPDATE for all of them (a cancel of many farmers' goods), as stock is taken. A
    sold-out one is active again."""
    if restocks:
        listings_take_stock(takes=[(listing, -quantity) for listing, quantity in restocks])
