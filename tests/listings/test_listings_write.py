"""Farmers create and change their own listings; nobody else can, and nothing leaks."""

import json
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from listings import services as listing_services
from listings.models import Listing, ListingStatus
from listings.services import OPEN_ORDER_STATUSES
from orders import services
from orders.services import TRANSITIONS
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    StaffFactory,
    create_listing,
    place_order,
)
from tests.listings.test_photos import wait_for_lock_waiters
from tests.orders.test_payments import in_thread

pytestmark = pytest.mark.django_db

LISTINGS = "/api/v1/listings/"
JSON = "application/json"


def body(**overrides):
    return {
        "category": "fruit",
        "title": "红富士苹果",
        "description": "山坡果园，脆甜多汁",
        "unit": "crate",
        "unit_weight_kg": "10.000",
        "price": "68.00",
        "quantity_available": "40",
        "min_order_quantity": "1",
        "harvest_date": str(timezone.localdate()),
        "shelf_life_days": 30,
        "is_organic": True,
        **overrides,
    }


def snapshot(listing):
    return Listing.objects.filter(pk=listing.pk).values().get()


def test_farmer_creates_a_listing_placed_at_their_village(client_for):
    farmer = FarmerFactory()
    response = client_for(farmer).post(LISTINGS, body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    listing = Listing.objects.get()
    assert data["id"] == listing.pk
    assert (data["farmer"], data["category"], data["status"]) == (farmer.pk, "fruit", "active")
    assert (data["price"], data["quantity_available"], data["unit_weight_kg"]) == (
        "68.00",
        "40.000",
        "10.000",
    )
    assert data["village"] == farmer.village_id
    assert (listing.lat, listing.lng) == (farmer.village.lat, farmer.village.lng)
    assert data["photos"] == []


def test_mass_assignment_cannot_forge_owner_status_or_place(client_for):
    farmer, other = FarmerFactory(), FarmerFactory()
    forged = body(farmer=other.pk, status="sold_out", village=other.village_id, lat="1", id=999)
    response = client_for(farmer).post(LISTINGS, forged, format="json")
    assert response.status_code == 201
    listing = Listing.objects.get()
    assert (listing.farmer_id, listing.status, listing.village_id) == (
        farmer.pk,
        ListingStatus.ACTIVE,
        farmer.village_id,
    )
    assert listing.pk != 999

    patch = {"farmer": other.pk, "status": "archived", "search_vector": "x", "price": "70.00"}
    response = client_for(farmer).patch(f"{LISTINGS}{listing.pk}/", patch, format="json")
    assert response.status_code == 200
    listing.refresh_from_db()
    assert (listing.farmer_id, listing.status, listing.price) == (
        farmer.pk,
        ListingStatus.ACTIVE,
        Decimal("70.00"),
    )


def test_kg_and_jin_weigh_what_they_weigh_other_units_need_a_weight(client_for):
    client = client_for(FarmerFactory())
    jin = client.post(LISTINGS, body(unit="jin", unit_weight_kg=None), format="json")
    assert jin.status_code == 201
    assert jin.json()["unit_weight_kg"] == "0.500"

    wrong = client.post(LISTINGS, body(unit="kg", unit_weight_kg="2"), format="json")
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "unit_weight_fixed"

    missing = body(unit="crate")
    del missing["unit_weight_kg"]
    response = client.post(LISTINGS, missing, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "unit_weight_required"
    assert Listing.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"price": "0"}, "price", "min_value"),
        ({"price": "-1"}, "price", "min_value"),
        ({"price": "1.234"}, "price", "max_decimal_places"),
        ({"quantity_available": "-5"}, "quantity_available", "min_value"),
        ({"shelf_life_days": 0}, "shelf_life_days", "min_value"),
        ({"unit": "ton"}, "unit", "invalid_choice"),
        ({"category": "spaceships"}, "category", "does_not_exist"),
        ({"harvest_date": "2001-01-01"}, "harvest_date", "out_of_range"),
        ({"harvest_date": "yesterday"}, "harvest_date", "invalid"),
        ({"title": ""}, "title", "blank"),
        # nothing a buyer could read: zero-width spaces, a byte-order mark, a word joiner
        ({"title": "\u200b\ufeff\u2060"}, "title", "blank"),
        ({"title": "红富士\n苹果"}, "title", "control_characters_not_allowed"),
        ({"title": "苹果\x1b[2J"}, "title", "control_characters_not_allowed"),
        # a text direction override or isolate turns what follows it around: "特价 100元"
        # shown for this, and a name or price after it on the same line reversed too
        ({"title": "\u202e元001 价特"}, "title", "control_characters_not_allowed"),
        ({"title": "苹果\u2067"}, "title", "control_characters_not_allowed"),
    ],
)
def test_bad_values_are_400_naming_the_field(client_for, overrides, field, code):
    response = client_for(FarmerFactory()).post(LISTINGS, body(**overrides), format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "field": field,
        "code": code,
        "detail": response.json()["errors"][0]["detail"],
    }
    assert not Listing.objects.exists()


def test_a_title_with_nothing_visible_is_refused_on_an_edit_too(client_for):
    listing = create_listing(title="西红柿")
    before = snapshot(listing)
    url = f"{LISTINGS}{listing.pk}/"
    for title, code in (("\u200b", "blank"), ("西红\t柿", "control_characters_not_allowed")):
        response = client_for(listing.farmer).patch(url, {"title": title}, format="json")
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == code
    assert snapshot(listing) == before
    # format characters within visible text are kept: an emoji sequence joined by U+200D
    taken = client_for(listing.farmer).patch(url, {"title": "西红柿 👨\u200d🌾"}, format="json")
    assert (taken.status_code, taken.json()["title"]) == (200, "西红柿 👨\u200d🌾")
    # and a right-to-left mark, which a word of Uyghur beside numbers may need
    marked = client_for(listing.farmer).patch(url, {"title": "ئالما\u200f 5"}, format="json")
    assert (marked.status_code, marked.json()["title"]) == (200, "ئالما\u200f 5")


def test_available_until_before_harvest_is_400(client_for):
    today = timezone.localdate()
    response = client_for(FarmerFactory()).post(
        LISTINGS, body(available_until=str(today - timedelta(days=1))), format="json"
    )
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == (
        "invalid_dates",
        "available_until",
    )
    assert not Listing.objects.exists()


def test_an_edit_sending_a_harvest_date_over_a_year_old_that_the_listing_holds_goes_through(
    client_for,
):
    """Rice or dried beans keep for years: a listing made within the year of its harvest
    stays on offer past it. A form saved with only the price changed sends the harvest date
    the listing holds, which the year's limit refused (400 out_of_range): the farmer could
    change nothing without moving the harvest. The limit is for a date being set."""
    today = timezone.localdate()
    farmer = FarmerFactory()
    listing = create_listing(farmer, category="grain", shelf_life_days=730)
    harvested = today - timedelta(days=400)
    Listing.objects.filter(pk=listing.pk).update(harvest_date=harvested)
    url = f"{LISTINGS}{listing.pk}/"

    kept = client_for(farmer).patch(
        url, {"harvest_date": str(harvested), "price": "4.20"}, format="json"
    )

    assert kept.status_code == 200, kept.json()
    assert (kept.json()["harvest_date"], kept.json()["price"]) == (str(harvested), "4.20")
    before = snapshot(listing)
    moved = client_for(farmer).patch(
        url, {"harvest_date": str(harvested - timedelta(days=1)), "price": "5"}, format="json"
    )
    assert moved.status_code == 400
    assert moved.json()["errors"][0]["field"] == "harvest_date"
    assert moved.json()["errors"][0]["code"] == "out_of_range"
    assert snapshot(listing) == before


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"harvest_date": "+5"}, "harvest_date"), ({"available_until": "-5"}, "available_until")],
)
def test_an_edit_putting_the_dates_out_of_order_names_the_field_changed(client_for, patch, field):
    today = timezone.localdate()
    farmer = FarmerFactory()
    listing = create_listing(farmer, harvest_date=today, available_until=today + timedelta(3))
    days = {key: str(today + timedelta(days=int(value))) for key, value in patch.items()}
    response = client_for(farmer).patch(f"{LISTINGS}{listing.pk}/", days, format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("invalid_dates", field)
    listing.refresh_from_db()
    assert (listing.harvest_date, listing.available_until) == (today, today + timedelta(3))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity_available": "40.5"}, "quantity_available"),
        ({"unit": "piece", "min_order_quantity": "0.5"}, "min_order_quantity"),
    ],
)
def test_crates_pieces_and_bunches_are_whole(client_for, overrides, field):
    client = client_for(FarmerFactory())
    response = client.post(LISTINGS, body(**overrides), format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("quantity_not_whole", field)
    assert not Listing.objects.exists()
    weighed = body(unit="kg", unit_weight_kg=None, quantity_available="40.5")
    assert client.post(LISTINGS, weighed, format="json").status_code == 201


def test_an_edit_to_a_whole_unit_keeps_its_quantities_whole(client_for):
    farmer = FarmerFactory()
    listing = create_listing(farmer, unit="kg", quantity_available=Decimal("12.5"))
    to_crates = {"unit": "crate", "unit_weight_kg": "10"}
    response = client_for(farmer).patch(f"{LISTINGS}{listing.pk}/", to_crates, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "quantity_not_whole")
    assert snapshot(listing) == snapshot(Listing.objects.get(pk=listing.pk))
    to_crates["quantity_available"] = "12"
    assert (
        client_for(farmer).patch(f"{LISTINGS}{listing.pk}/", to_crates, format="json").status_code
        == 200
    )


def test_the_unit_stays_while_open_orders_hold_stock_counted_in_it(client_for):
    """2 kg ordered; sold by the 10 kg crate now, a cancel would give back 2 crates. The
    unit and a unit's weight change once no open order holds stock of the listing; its
    other fields change any time."""
    farmer = FarmerFactory()
    listing = create_listing(farmer, unit="kg", quantity_available=Decimal("10"))
    order = place_order(BuyerFactory(), (listing, 2))
    url, client = f"{LISTINGS}{listing.pk}/", client_for(farmer)
    before = snapshot(Listing.objects.get(pk=listing.pk))
    for change in (
        {"unit": "crate", "unit_weight_kg": "10", "quantity_available": "7"},
        {"unit": "jin"},
    ):
        refused = client.patch(url, change, format="json")
        assert (refused.status_code, refused.json()["code"]) == (409, "unit_in_open_orders")
        assert refused.json()["field"] == "unit"
        assert snapshot(Listing.objects.get(pk=listing.pk)) == before
    for same in ({"unit": "kg"}, {"unit_weight_kg": "1"}, {"price": "4.00", "unit": "kg"}):
        assert client.patch(url, same, format="json").status_code == 200, same

    services.order_cancel(order_id=order.pk, actor=order.buyer)
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("10.000")
    to_crates = {"unit": "crate", "unit_weight_kg": "10", "quantity_available": "1"}
    changed = client.patch(url, to_crates, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["unit"], changed.json()["quantity_available"]) == ("crate", "1.000")


def test_the_open_statuses_are_those_the_status_table_leads_on_from():
    assert {s for s, after in TRANSITIONS.items() if after} == OPEN_ORDER_STATUSES


@pytest.mark.parametrize("make_user", [BuyerFactory, StaffFactory])
def test_only_farmers_create(client_for, make_user):
    response = client_for(make_user()).post(LISTINGS, body(), format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not Listing.objects.exists()


def test_anonymous_cannot_write(api):
    listing = create_listing()
    before = snapshot(listing)
    assert api.post(LISTINGS, body(), format="json").status_code == 401
    assert api.patch(f"{LISTINGS}{listing.pk}/", {"price": "1"}, format="json").status_code == 401
    assert api.delete(f"{LISTINGS}{listing.pk}/").status_code == 401
    assert snapshot(listing) == before


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("patch", "", {"price": "1.00"}),
        ("delete", "", None),
        ("post", "pause/", None),
        ("post", "archive/", None),
    ],
)
def test_another_farmer_gets_404_and_a_buyer_403_and_nothing_changes(
    client_for, method, path, payload
):
    listing = create_listing()
    before = snapshot(listing)
    url = f"{LISTINGS}{listing.pk}/{path}"
    other = getattr(client_for(FarmerFactory()), method)(url, payload, format="json")
    assert other.status_code == 404
    assert other.json()["code"] == "not_found"
    buyer = getattr(client_for(BuyerFactory()), method)(url, payload, format="json")
    assert buyer.status_code == 403
    assert snapshot(listing) == before


def test_pause_publish_archive_follow_the_transition_table(client_for):
    listing = create_listing()
    client = client_for(listing.farmer)
    url = f"{LISTINGS}{listing.pk}/"

    assert client.post(f"{url}pause/").json()["status"] == "paused"
    assert client.post(f"{url}pause/").json()["status"] == "paused"  # a retry is harmless
    assert client.post(f"{url}publish/").json()["status"] == "active"
    assert client.post(f"{url}archive/").json()["status"] == "archived"

    refused = client.post(f"{url}publish/")
    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid_status_transition"
    assert (refused.json()["from"], refused.json()["to"]) == ("archived", "active")
    edit = client.patch(url, {"price": "9.99"}, format="json")
    assert edit.status_code == 409
    assert edit.json()["code"] == "listing_archived"
    listing.refresh_from_db()
    assert (listing.status, listing.price) == (ListingStatus.ARCHIVED, Decimal("3.50"))


def test_stock_drives_sold_out_and_back(client_for):
    listing = create_listing()
    client = client_for(listing.farmer)
    url = f"{LISTINGS}{listing.pk}/"
    assert client.patch(url, {"quantity_available": "0"}, format="json").json()["status"] == (
        "sold_out"
    )
    assert client.patch(url, {"quantity_available": "25"}, format="json").json()["status"] == (
        "active"
    )
    # A paused listing stays paused when restocked: the farmer paused it on purpose.
    client.post(f"{url}pause/")
    assert client.patch(url, {"quantity_available": "30"}, format="json").json()["status"] == (
        "paused"
    )


def test_a_stock_set_after_orders_took_some_since_it_was_read_is_refused(client_for):
    """A farmer's phone shows 40; a buyer orders 3; the farmer, counting 45 in the field,
    sends 45 with the 40 they saw: 409 `stock_changed`, naming the stock now, and nothing
    changes (45 would put the 3 sold back on sale). Sent again with the 37 they now see,
    it is taken. Without `quantity_seen` the stock is set as sent, as before."""
    listing = create_listing(quantity_available=Decimal(40))
    client = client_for(listing.farmer)
    url = f"{LISTINGS}{listing.pk}/"
    place_order(BuyerFactory(), (listing, 3))
    before = snapshot(listing)

    stale = client.patch(url, {"quantity_available": "45", "quantity_seen": "40"}, format="json")

    assert stale.status_code == 409
    assert (stale.json()["code"], stale.json()["now"]) == ("stock_changed", "37.000")
    assert snapshot(listing) == before
    fresh = client.patch(url, {"quantity_available": "45", "quantity_seen": "37"}, format="json")
    assert (fresh.status_code, fresh.json()["quantity_available"]) == (200, "45.000")
    blind = client.patch(url, {"quantity_available": "50"}, format="json")
    assert (blind.status_code, blind.json()["quantity_available"]) == (200, "50.000")


def test_an_edit_that_changes_nothing_leaves_the_listing_and_its_etag_as_they_were(client_for, api):
    """A PATCH sending what the listing already holds (a form saved untouched, a retry of an
    edit that went through) changed nothing but `updated_at`, and so the ETag of the
    listing and of every search page showing it: phones downloaded them again for nothing.
    It is answered as the listing is; a real change still moves both."""
    listing = create_listing(quantity_available=Decimal(40))
    client = client_for(listing.farmer)
    url = f"{LISTINGS}{listing.pk}/"
    detail, page = api.get(url), api.get(LISTINGS)
    before = snapshot(listing)

    same = {"title": " 西红柿 ", "price": "3.5", "quantity_available": "40.000", "unit": "jin"}
    for sent in ({}, same, {**same, "quantity_seen": "40"}):
        answer = client.patch(url, sent, format="json")
        assert answer.status_code == 200, sent
        assert answer.json()["updated_at"] == detail.json()["updated_at"]

    assert snapshot(listing) == before
    assert api.get(url, HTTP_IF_NONE_MATCH=detail["ETag"]).status_code == 304
    assert api.get(LISTINGS, HTTP_IF_NONE_MATCH=page["ETag"]).status_code == 304
    changed = client.patch(url, {**same, "price": "3.60"}, format="json")
    assert changed.json()["updated_at"] != detail.json()["updated_at"]
    assert api.get(url, HTTP_IF_NONE_MATCH=detail["ETag"]).status_code == 200


def test_a_draft_is_published_later_and_without_stock_is_sold_out(client_for):
    farmer = FarmerFactory()
    client = client_for(farmer)
    draft = client.post(LISTINGS, body(publish=False, quantity_available="0"), format="json")
    assert draft.json()["status"] == "draft"
    assert client.post(f"{LISTINGS}{draft.json()['id']}/publish/").json()["status"] == "sold_out"
    # the answer was lost: the same publish again is answered as the first, not 409
    retried = client.post(f"{LISTINGS}{draft.json()['id']}/publish/")
    assert (retried.status_code, retried.json()["status"]) == (200, "sold_out")


def test_the_database_refuses_an_active_listing_without_stock():
    from django.db import IntegrityError, transaction  # noqa: PLC0415

    listing = create_listing()
    with pytest.raises(IntegrityError), transaction.atomic():
        Listing.objects.filter(pk=listing.pk).update(quantity_available=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Listing.objects.filter(pk=listing.pk).update(quantity_available=-1, status="paused")


def test_delete_without_orders_removes_it(client_for):
    listing = create_listing()
    response = client_for(listing.farmer).delete(f"{LISTINGS}{listing.pk}/")
    assert response.status_code == 204
    assert not Listing.objects.exists()


def test_mine_lists_own_listings_in_every_status(client_for, api):
    farmer = FarmerFactory()
    active = create_listing(farmer, title="白菜")
    paused = create_listing(farmer, title="萝卜")
    client = client_for(farmer)
    client.post(f"{LISTINGS}{paused.pk}/pause/")
    create_listing(title="别人的")

    mine = client.get(LISTINGS, {"mine": "true"}).json()
    assert [row["id"] for row in mine["results"]] == [paused.pk, active.pk]
    only_paused = client.get(LISTINGS, {"mine": "true", "status": "paused"}).json()
    assert [row["id"] for row in only_paused["results"]] == [paused.pk]
    public = api.get(LISTINGS).json()
    assert paused.pk not in [row["id"] for row in public["results"]]

    assert api.get(LISTINGS, {"mine": "true"}).status_code == 401
    assert client_for(BuyerFactory()).get(LISTINGS, {"mine": "true"}).status_code == 403


def test_mine_other_than_true_or_false_is_400_not_the_public_search(client_for, api):
    """?mine=yes answered everyone's listings on offer, as if mine had not been asked."""
    farmer = FarmerFactory()
    own = create_listing(farmer)
    client = client_for(farmer)
    paused = create_listing(farmer)
    client.post(f"{LISTINGS}{paused.pk}/pause/")
    create_listing(title="别人的")
    counts = {
        mine: client.get(LISTINGS, {"mine": mine}).json()["count"]
        for mine in ("true", "1", "TRUE", "false", "0", "")
    }
    assert counts == {"true": 2, "1": 2, "TRUE": 2, "false": 2, "0": 2, "": 2}
    assert {row["id"] for row in client.get(LISTINGS, {"mine": "false"}).json()["results"]} == {
        own.pk,
        Listing.objects.exclude(farmer=farmer).get().pk,
    }
    for mine in ("yes", "null", "2"):
        for asker in (client, api):
            response = asker.get(LISTINGS, {"mine": mine})
            assert response.status_code == 400, mine
            assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
                ("mine", "invalid")
            ]


@pytest.mark.parametrize("status", ["bogus", "Active", "active "])
def test_mine_with_an_unknown_status_is_400(client_for, status):
    farmer = FarmerFactory()
    create_listing(farmer)
    client = client_for(farmer)
    response = client.get(LISTINGS, {"mine": "true", "status": status})
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("status", "invalid_choice")
    ]
    assert client.get(LISTINGS, {"mine": "true", "status": ""}).json()["count"] == 1


@pytest.mark.parametrize(
    "search",
    [
        {"q": "白菜"},
        {"category": "fruit"},
        {"min_price": "abc"},
        {"organic": "true", "available_on": "xyz"},
        {"near": "30.2,119.6", "ordering": "distance"},
    ],
)
def test_mine_with_a_search_parameter_is_400_not_every_own_listing(client_for, search):
    """With mine=true only status is read: ?mine=true&q=白菜 answered every listing of the
    farmer, 萝卜 too, and a value no search takes (?mine=true&min_price=abc) 200 all the
    same. A search parameter is now 400 naming it; an empty one is none given."""
    farmer = FarmerFactory()
    create_listing(farmer, title="白菜")
    create_listing(farmer, title="萝卜")
    client = client_for(farmer)

    response = client.get(LISTINGS, {"mine": "true", **search})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        (name, "not_with_mine") for name in search
    ]
    empty = client.get(LISTINGS, {"mine": "true", **dict.fromkeys(search, "")})
    assert (empty.status_code, empty.json()["count"]) == (200, 2)


@pytest.mark.parametrize(
    ("category", "code"),
    [
        ("fruit\x00", "null_characters_not_allowed"),
        ("\ud800", "surrogate_characters_not_allowed"),
        ("no-such-category", "does_not_exist"),
    ],
)
def test_a_category_that_cannot_be_looked_up_is_400_and_changes_nothing(client_for, category, code):
    farmer = FarmerFactory()
    listing = create_listing(farmer)
    before = snapshot(listing)
    client = client_for(farmer)

    # json.dumps escapes what cannot be sent as UTF-8 (`\ud800`), as a client's JSON may
    created = client.post(LISTINGS, json.dumps(body(category=category)), content_type=JSON)
    changed = client.patch(
        f"{LISTINGS}{listing.pk}/", json.dumps({"category": category}), content_type=JSON
    )

    for response in (created, changed):
        assert response.status_code == 400
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("category", code)]
    assert list(Listing.objects.values_list("pk", flat=True)) == [listing.pk]
    assert snapshot(listing) == before


def test_drafts_are_visible_to_their_owner_only(client_for, api):
    farmer = FarmerFactory()
    draft = client_for(farmer).post(LISTINGS, body(publish=False), format="json").json()
    assert api.get(f"{LISTINGS}{draft['id']}/").status_code == 404
    assert client_for(FarmerFactory()).get(f"{LISTINGS}{draft['id']}/").status_code == 404
    assert client_for(farmer).get(f"{LISTINGS}{draft['id']}/").status_code == 200


def test_a_farmer_who_moves_takes_their_listings_along(client_for, api):
    from tests.factories import VillageFactory  # noqa: PLC0415

    farmer = FarmerFactory(name="张三")
    listing = create_listing(farmer)
    new_village = VillageFactory(name="柳树湾", lat=Decimal("30.400000"), lng=Decimal("119.900000"))
    response = client_for(farmer).patch(
        "/api/v1/me/", {"village": new_village.pk, "name": "张三丰"}, format="json"
    )
    assert response.status_code == 200
    listing.refresh_from_db()
    assert (listing.village_id, listing.lat, listing.lng) == (
        new_village.pk,
        Decimal("30.400000"),
        Decimal("119.900000"),
    )
    found = api.get(LISTINGS, {"q": "柳树湾"}).json()["results"]
    assert [row["id"] for row in found] == [listing.pk]
    assert api.get(LISTINGS, {"q": "张三丰"}).json()["count"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_listing_created_while_its_farmer_moves_goes_where_they_moved(client_for):
    """An operator (or the farmer's other phone) moves the farmer while a new listing is
    posted: the move's refresh of the farmer's listings could not see the one not yet
    committed, which kept the old village and point for good, found there by the search."""
    from marketplace.accounts.models import User  # noqa: PLC0415
    from marketplace.accounts.services import user_update_profile  # noqa: PLC0415
    from tests.factories import VillageFactory  # noqa: PLC0415

    farmer = FarmerFactory()
    new_village = VillageFactory(lat=Decimal("30.400000"), lng=Decimal("119.900000"))
    client = client_for(farmer)
    with transaction.atomic():
        user_update_profile(user=User.objects.get(pk=farmer.pk), village=new_village)
        posting, answer = in_thread(lambda: client.post(LISTINGS, body(), format="json"))
        wait_for_lock_waiters(1, timeout=3)  # the move commits while the post is under way
    posting.join(timeout=30)

    [response] = answer
    assert response.status_code == 201, response.json()
    listing = Listing.objects.get()
    assert (listing.village_id, listing.lat, listing.lng) == (
        new_village.pk,
        Decimal("30.400000"),
        Decimal("119.900000"),
    )
    assert response.json()["village"] == new_village.pk


@pytest.mark.django_db(transaction=True)
def test_a_listing_published_while_its_farmer_is_deactivated_stays_off_sale(client_for):
    """An operator deactivates a farmer (the admin writes the user, then pauses what they
    have on sale) while the farmer's phone publishes a paused listing: the publish read the
    farmer as active, the deactivation not yet committed, after the pause had found nothing
    on sale. The listing was on sale for a farmer nobody would hear from again."""
    from marketplace.accounts.models import User  # noqa: PLC0415

    farmer = FarmerFactory()
    listing = create_listing(farmer)
    listing_services.listing_set_status(listing=listing, status=ListingStatus.PAUSED)
    client = client_for(farmer)
    with transaction.atomic():  # as the admin's save of the user
        User.objects.filter(pk=farmer.pk).update(is_active=False)
        assert listing_services.listings_pause_for_farmer(farmer=farmer) == 0
        publishing, answer = in_thread(lambda: client.post(f"{LISTINGS}{listing.pk}/publish/"))
        wait_for_lock_waiters(1, timeout=3)
    publishing.join(timeout=30)

    [response] = answer
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "farmer_inactive"
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.PAUSED


@pytest.mark.django_db(transaction=True)
def test_a_listing_posted_while_its_farmer_is_deactivated_is_refused(client_for):
    """The phone's request was signed in before the deactivation committed: the listing
    went on sale after the deactivation had paused everything the farmer offered."""
    from marketplace.accounts.models import User  # noqa: PLC0415

    farmer = FarmerFactory()
    client = client_for(farmer)
    with transaction.atomic():  # as the admin's save of the user
        User.objects.filter(pk=farmer.pk).update(is_active=False)
        assert listing_services.listings_pause_for_farmer(farmer=farmer) == 0
        posting, answer = in_thread(lambda: client.post(LISTINGS, body(), format="json"))
        wait_for_lock_waiters(1, timeout=3)
    posting.join(timeout=30)

    [response] = answer
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "farmer_inactive"
    assert not Listing.objects.exists()


@contextmanager
def ordering(listing: Listing, quantity: str = "2"):
    """An order of `listing` being placed: its line written, not yet committed."""
    with transaction.atomic():
        place_order(BuyerFactory(), (listing, quantity), delivery_method="pickup")
        yield


@pytest.mark.django_db(transaction=True)
def test_deleting_a_listing_while_it_is_being_ordered_archives_it(client_for):
    farmer = FarmerFactory()
    listing = create_listing(farmer)
    with ordering(listing):
        deleting, answer = in_thread(lambda: client_for(farmer).delete(f"{LISTINGS}{listing.pk}/"))
        assert wait_for_lock_waiters(1) == 1
    deleting.join(timeout=30)

    [response] = answer
    assert response.status_code == 200, response
    assert response.json()["status"] == "archived"
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("98.000")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [("patch", "", {"price": "9.00"}), ("post", "pause/", None), ("post", "archive/", None)],
)
def test_a_write_racing_a_delete_of_the_same_listing_is_404(client_for, method, suffix, payload):
    """The farmer's other phone deletes the listing (nobody ordered it) while this write,
    which found it, waits for its lock."""
    listing = create_listing()
    client = client_for(listing.farmer)
    with transaction.atomic():
        Listing.objects.select_for_update().get(pk=listing.pk)
        writing, answer = in_thread(
            lambda: getattr(client, method)(
                f"{LISTINGS}{listing.pk}/{suffix}", payload, format="json"
            )
        )
        assert wait_for_lock_waiters(1) == 1
        assert listing_services.listing_delete(listing=listing) is None
    writing.join(timeout=30)
    [response] = answer
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert not Listing.objects.exists()


def test_the_same_unit_sent_again_keeps_its_weight(client_for):
    farmer = FarmerFactory()
    listing = create_listing(farmer, unit="crate", unit_weight_kg=Decimal("10"))
    again = client_for(farmer).patch(f"{LISTINGS}{listing.pk}/", {"unit": "crate"}, format="json")
    assert again.status_code == 200, again.content
    assert (again.json()["unit"], again.json()["unit_weight_kg"]) == ("crate", "10.000")
    changed = client_for(farmer).patch(f"{LISTINGS}{listing.pk}/", {"unit": "box"}, format="json")
    assert (changed.status_code, changed.json()["code"]) == (400, "unit_weight_required")
