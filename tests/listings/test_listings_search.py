"""Public search: full text (Chinese too), every filter and ordering, distance, field
conditions (ETag, gzip, compact pages) and a constant number of queries per page."""

import gzip
import json
import math
import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from listings import selectors
from listings.models import Category, Listing
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
)

pytestmark = pytest.mark.django_db

LISTINGS = "/api/v1/listings/"
TODAY = timezone.localdate()


def ids(response):
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def haversine_km(lat1, lng1, lat2, lng2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("西红柿", {"tomato"}),
        ("苹果", {"apple"}),
        ("红富士", {"apple"}),
        ("有机", {"tomato"}),
        ("柿", {"tomato", "persimmon"}),
        ("tomato", {"english"}),  # prefix: finds "tomatoes"
        ("TOMATOES fresh", {"english"}),
        ("水果", {"apple", "persimmon"}),  # category name
        ("fruit", {"apple", "persimmon"}),
        ("李家村", {"tomato", "apple", "persimmon", "english"}),  # village name
        ("王大妈", {"apple"}),  # farmer name
        ("脆甜", {"apple"}),  # description
        ("西瓜", set()),
        ("！？", None),  # nothing searchable: no filter
    ],
)
def test_full_text_search(api, query, expected):
    village = VillageFactory(name="李家村")
    listings = {
        "tomato": create_listing(FarmerFactory(village=village), title="有机西红柿"),
        "apple": create_listing(
            FarmerFactory(village=village, name="王大妈"),
            category="fruit",
            title="红富士苹果",
            description="山坡果园，脆甜多汁",
        ),
        "persimmon": create_listing(FarmerFactory(village=village), category="fruit", title="柿子"),
        "english": create_listing(FarmerFactory(village=village), title="Fresh tomatoes"),
    }
    found = set(ids(api.get(LISTINGS, {"q": query})))
    if expected is None:
        assert found == {listing.pk for listing in listings.values()}
    else:
        assert found == {listings[name].pk for name in expected}


def test_title_matches_rank_above_description_matches(api):
    in_description = create_listing(title="土鸡蛋", description="散养草鸡，西红柿地里长大")
    in_title = create_listing(title="西红柿")
    assert ids(api.get(LISTINGS, {"q": "西红柿"})) == [in_title.pk, in_description.pk]


def test_only_active_listings_still_on_offer_are_public(api):
    active = create_listing()
    create_listing(quantity_available=Decimal("0"))  # sold out
    create_listing(publish=False)  # draft
    create_listing(
        harvest_date=TODAY - timedelta(days=20), available_until=TODAY - timedelta(days=1)
    )
    assert ids(api.get(LISTINGS)) == [active.pk]


def test_each_listing_says_whether_it_can_be_ordered_today(api, client_for):
    farmer = FarmerFactory()
    listings = {
        "active": create_listing(farmer),
        "last day": create_listing(farmer, available_until=TODAY),
        "expired": create_listing(
            farmer, harvest_date=TODAY - timedelta(days=20), available_until=TODAY - timedelta(1)
        ),
        "sold out": create_listing(farmer, quantity_available=Decimal("0")),
        "draft": create_listing(farmer, publish=False),
    }
    mine = client_for(farmer).get(LISTINGS, {"mine": "true"}).json()["results"]
    by_id = {row["id"]: (row["status"], row["on_offer"]) for row in mine}
    assert {name: by_id[listing.pk] for name, listing in listings.items()} == {
        "active": ("active", True),
        "last day": ("active", True),
        "expired": ("active", False),
        "sold out": ("sold_out", False),
        "draft": ("draft", False),
    }
    detail = api.get(f"{LISTINGS}{listings['expired'].pk}/").json()
    assert (detail["status"], detail["on_offer"]) == ("active", False)
    assert [row["on_offer"] for row in api.get(LISTINGS).json()["results"]] == [True, True]


def test_filters(api):
    north, south = ServiceCenterFactory(), ServiceCenterFactory()
    v_north, v_south = VillageFactory(service_center=north), VillageFactory(service_center=south)
    farmer_n, farmer_s = FarmerFactory(village=v_north), FarmerFactory(village=v_south)
    cheap = create_listing(farmer_n, price=Decimal("2.00"))
    mid = create_listing(farmer_n, category="fruit", price=Decimal("5.00"), is_organic=True)
    dear = create_listing(
        farmer_s,
        price=Decimal("9.50"),
        harvest_date=TODAY + timedelta(days=3),
        available_until=TODAY + timedelta(days=10),
    )
    cases = [
        ({"category": "fruit"}, {mid}),
        ({"category": "vegetables"}, {cheap, dear}),
        ({"farmer": farmer_s.pk}, {dear}),
        ({"village": v_north.pk}, {cheap, mid}),
        ({"service_center": south.pk}, {dear}),
        ({"min_price": "5"}, {mid, dear}),
        ({"max_price": "5.00"}, {cheap, mid}),
        ({"min_price": "2.01", "max_price": "9.49"}, {mid}),
        ({"organic": "true"}, {mid}),
        ({"organic": "false"}, {cheap, dear}),
        ({"available_on": str(TODAY)}, {cheap, mid}),
        ({"available_on": str(TODAY + timedelta(days=5))}, {cheap, mid, dear}),
        ({"available_on": str(TODAY + timedelta(days=11))}, {cheap, mid}),
        ({"category": "vegetables", "max_price": "3"}, {cheap}),
    ]
    for params, expected in cases:
        assert set(ids(api.get(LISTINGS, params))) == {x.pk for x in expected}, params


def test_a_parameter_left_empty_filters_nothing_as_in_every_other_list(api):
    """A search form sends the fields left blank (`?category=&min_price=&max_price=5`):
    each empty one is no filter, as an empty filter of the villages (`service_center=`) or
    notifications is, and an empty page_size is the default. The search answered 400 for
    most of them, and so never ran."""
    cheap = create_listing(price=Decimal("2.00"))
    create_listing(category="fruit", title="苹果", price=Decimal("9.00"))
    empty = dict.fromkeys(
        (
            "q",
            "category",
            "farmer",
            "village",
            "service_center",
            "min_price",
            "max_price",
            "organic",
            "available_on",
            "near",
            "radius_km",
            "ordering",
            "status",
        ),
        "",
    )
    assert ids(api.get(LISTINGS, empty)) == ids(api.get(LISTINGS))
    assert ids(api.get(LISTINGS, {**empty, "max_price": "5"})) == [cheap.pk]
    assert ids(api.get(LISTINGS, {**empty, "category": " ", "q": "西红柿"})) == [cheap.pk]
    assert api.get("/api/v1/villages/", {"service_center": ""}).status_code == 200


def test_orderings(api):
    old = create_listing(price=Decimal("5.00"), harvest_date=TODAY - timedelta(days=5))
    new = create_listing(price=Decimal("3.00"), harvest_date=TODAY - timedelta(days=1))
    mid = create_listing(price=Decimal("9.00"), harvest_date=TODAY - timedelta(days=3))
    assert ids(api.get(LISTINGS, {"ordering": "price"})) == [new.pk, old.pk, mid.pk]
    assert ids(api.get(LISTINGS, {"ordering": "-price"})) == [mid.pk, old.pk, new.pk]
    assert ids(api.get(LISTINGS, {"ordering": "harvest_date"})) == [old.pk, mid.pk, new.pk]
    assert ids(api.get(LISTINGS, {"ordering": "-created_at"})) == [mid.pk, new.pk, old.pk]
    assert ids(api.get(LISTINGS)) == [mid.pk, new.pk, old.pk]


def test_near_radius_and_distance_match_a_hand_computed_haversine(api):
    here = (30.2, 119.6)
    places = {
        "close": (Decimal("30.210000"), Decimal("119.610000")),  # ~1.4 km
        "town": (Decimal("30.250000"), Decimal("119.700000")),  # ~11 km
        "far": (Decimal("30.500000"), Decimal("120.100000")),  # ~58 km
    }
    listings = {
        name: create_listing(FarmerFactory(village=VillageFactory(lat=lat, lng=lng)))
        for name, (lat, lng) in places.items()
    }
    response = api.get(LISTINGS, {"near": "30.2,119.6", "radius_km": "20", "ordering": "distance"})
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [listings["close"].pk, listings["town"].pk]
    for row, name in zip(rows, ["close", "town"], strict=True):
        lat, lng = places[name]  # village points, on the public grid already
        assert row["distance_km"] == pytest.approx(
            round(haversine_km(*here, float(lat), float(lng)), 1), abs=1e-9
        )
    assert [row["distance_km"] for row in rows] == [1.5, 11.1]  # tenths of a km

    wide = api.get(LISTINGS, {"near": "30.2,119.6", "radius_km": "60", "ordering": "distance"})
    assert [row["id"] for row in wide.json()["results"]][-1] == listings["far"].pk
    # Just inside and just outside a radius equal to the exact distance.
    exact = haversine_km(*here, 30.25, 119.7)
    inside = api.get(LISTINGS, {"near": "30.2,119.6", "radius_km": f"{exact + 0.01:.2f}"})
    outside = api.get(LISTINGS, {"near": "30.2,119.6", "radius_km": f"{exact - 0.01:.2f}"})
    assert listings["town"].pk in ids(inside)
    assert listings["town"].pk not in ids(outside)
    assert api.get(LISTINGS).json()["results"][0]["distance_km"] is None


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"min_price": "abc"}, "min_price", "invalid"),
        ({"min_price": "-1"}, "min_price", "min_value"),
        ({"min_price": "9", "max_price": "1"}, "min_price", "invalid_range"),
        ({"organic": "maybe"}, "organic", "invalid"),
        ({"available_on": "tomorrow"}, "available_on", "invalid"),
        ({"near": "30.2"}, "near", "invalid_near"),
        ({"near": "91,10"}, "near", "invalid_near"),
        ({"near": "a,b"}, "near", "invalid_near"),
        ({"near": "30,119", "radius_km": "0"}, "radius_km", "min_value"),
        ({"near": "30,119", "radius_km": "5000"}, "radius_km", "max_value"),
        ({"radius_km": "5"}, "radius_km", "near_required"),
        ({"ordering": "distance"}, "ordering", "near_required"),
        ({"ordering": "title"}, "ordering", "invalid_choice"),
        ({"farmer": "x"}, "farmer", "invalid"),
        ({"village": "0"}, "village", "min_value"),
        ({"category": "a b"}, "category", "invalid"),
        ({"q": "x" * 101}, "q", "max_length"),
        ({"status": "AAA"}, "status", "invalid_choice"),  # read with mine=true only
    ],
)
def test_invalid_parameters_are_400_with_a_code(api, params, field, code):
    response = api.get(LISTINGS, params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert (body["errors"][0]["field"], body["errors"][0]["code"]) == (field, code)


@pytest.mark.parametrize("status", ["paused", "draft", "sold_out", "archived"])
def test_a_status_the_public_does_not_see_is_400_mine_required_not_ignored(api, client_for, status):
    """The public search lists active listings only: ?status=paused answered them all the
    same, as if paused ones were what was shown. A status other than active is now 400
    mine_required, to anyone, the listing's farmer too; active, or none, is the search."""
    farmer = FarmerFactory()
    active = create_listing(farmer)
    create_listing(farmer, publish=False)

    for asker in (api, client_for(farmer)):
        response = asker.get(LISTINGS, {"status": status})
        assert response.status_code == 400
        assert response.json()["code"] == "validation_error"
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            ("status", "mine_required")
        ]
        assert ids(asker.get(LISTINGS, {"status": "active"})) == [active.pk]
        assert ids(asker.get(LISTINGS, {"status": ""})) == [active.pk]
    mine = client_for(farmer).get(LISTINGS, {"mine": "true", "status": "draft"})
    assert (mine.status_code, mine.json()["count"]) == (200, 1)


def test_the_schema_gives_near_the_lat_lng_form_the_search_takes(api):
    """near is "lat,lng" in degrees: the schema's pattern takes only what the search does, a
    latitude within 90 and a longitude within 180 (it took any text, which was 400)."""
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    parameters = schema["paths"][LISTINGS]["get"]["parameters"]
    pattern = next(p for p in parameters if p["name"] == "near")["schema"]["pattern"]
    taken = ("30.2,119.6", "-90,-180", "90.0,180.000", "0,0", "-33.8688,151.2093", "89.99,179.9")
    # (an empty near is none: the search unfiltered, as for any parameter left empty)
    refused = ("30.2", "a,b", "91,10", "90.5,0", "10,180.1", "10,-181", "1,2,3", "30,")
    for near in taken + refused:
        status = api.get(LISTINGS, {"near": near}).status_code
        assert (status, bool(re.match(pattern, near))) == (
            (200, True) if near in taken else (400, False)
        ), near


def test_bad_page_is_404_with_a_code(api):
    create_listing()
    for page in ("0", "-1", "abc"):
        refused = api.get(LISTINGS, {"page": page})
        assert (refused.status_code, refused.json()["code"]) == (404, "not_found"), page
    response = api.get(LISTINGS, {"page": 99})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": "西红柿"},
        {"category": "vegetables", "min_price": "1", "max_price": "8"},
        {"near": "30.26,119.71", "radius_km": "30", "ordering": "distance"},
    ],
)
def test_a_page_runs_three_queries_whatever_its_size(api, params):
    for _ in range(3):
        create_listing()
    with CaptureQueriesContext(connection) as small:
        assert api.get(LISTINGS, params).status_code == 200
    for _ in range(25):
        create_listing()
    with CaptureQueriesContext(connection) as large:
        response = api.get(LISTINGS, params)
    assert len(response.json()["results"]) == 20
    # count and page ids on the listings table alone, then the page's rows with their names
    assert len(small.captured_queries) == len(large.captured_queries) == 3
    count, ids, rows = (q["sql"] for q in large.captured_queries)
    assert "accounts_user" not in count
    assert "accounts_user" not in ids
    assert "accounts_user" in rows


def test_etag_gives_304_until_something_changes(client_for, api):
    listing = create_listing()
    first = api.get(LISTINGS)
    etag = first["ETag"]
    assert etag
    again = api.get(LISTINGS, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""

    client_for(listing.farmer).patch(f"{LISTINGS}{listing.pk}/", {"price": "4.20"}, format="json")
    changed = api.get(LISTINGS, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed.json()["results"][0]["price"] == "4.20"
    assert changed["ETag"] != etag
    detail = api.get(f"{LISTINGS}{listing.pk}/")
    assert api.get(f"{LISTINGS}{listing.pk}/", HTTP_IF_NONE_MATCH=detail["ETag"]).status_code == 304


def test_a_page_of_twenty_is_compact_when_gzipped(api):
    farmer = FarmerFactory(name="王秀英")
    for n in range(20):
        create_listing(
            farmer,
            title=f"有机西红柿 第{n}批",
            description="自家菜园种植，不打农药，当天采摘。" * 3,
        )
    response = api.get(LISTINGS, HTTP_ACCEPT_ENCODING="gzip")
    assert response["Content-Encoding"] == "gzip"
    body = gzip.decompress(response.content)
    assert len(json.loads(body)["results"]) == 20
    assert len(response.content) <= 8 * 1024, len(response.content)


def test_farmer_public_profile(api):
    farmer = FarmerFactory(name="李四")
    create_listing(farmer)
    create_listing(farmer)
    create_listing(farmer, quantity_available=Decimal("0"))
    response = api.get(f"/api/v1/farmers/{farmer.pk}/")
    assert response.status_code == 200
    assert response.json() == {
        "id": farmer.pk,
        "name": "李四",
        "village": farmer.village_id,
        "village_name": farmer.village.name,
        "service_center": farmer.village.service_center_id,
        "service_center_name": farmer.village.service_center.name,
        "listing_count": 2,
        "rating": None,
        "review_count": 0,
        "member_since": response.json()["member_since"],
    }
    assert "phone" not in response.json()
    buyer_or_missing = api.get("/api/v1/farmers/999999/")
    assert buyer_or_missing.status_code == 404


def test_a_buyer_or_staff_has_no_public_farmer_profile(api):
    for user in (BuyerFactory(), StaffFactory()):
        response = api.get(f"/api/v1/farmers/{user.pk}/")
        assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_a_farmers_listing_count_is_what_a_search_by_farmer_finds(api):
    """A listing whose available_until has passed stays active (the farmer may extend it)
    but is no longer on offer: the profile does not count it, as the search does not show it."""
    today = timezone.localdate()
    farmer = FarmerFactory()
    create_listing(farmer, available_until=today)  # its last day
    create_listing(farmer, harvest_date=today - timedelta(5), available_until=today - timedelta(1))
    profile = api.get(f"/api/v1/farmers/{farmer.pk}/").json()
    found = api.get(LISTINGS, {"farmer": farmer.pk}).json()
    assert (profile["listing_count"], found["count"]) == (1, 1)


def test_categories_are_seeded_with_chinese_names(api):
    response = api.get("/api/v1/categories/")
    assert response.status_code == 200
    assert (response.json()["count"], response.json()["next"]) == (Category.objects.count(), None)
    by_slug = {row["slug"]: row for row in response.json()["results"]}
    assert {
        "vegetables",
        "fruit",
        "grain",
        "eggs",
        "meat",
        "poultry",
        "dairy",
        "tea",
        "honey",
        "mushrooms",
        "nuts",
        "herbs",
    } <= set(by_slug)
    assert by_slug["vegetables"]["name_zh"] == "蔬菜"


def test_a_page_leaves_out_a_listing_deleted_after_its_id_was_paged(api, monkeypatch):
    """A farmer's DELETE (nobody ordered it: the row goes) committing between the query of
    the page's ids and the query of their rows."""
    kept = create_listing(title="白菜")
    gone = create_listing(title="萝卜")
    original = selectors.listing_page

    def deleted_meanwhile(ids, **kwargs):
        Listing.objects.filter(pk=gone.pk).delete()
        return original(ids, **kwargs)

    monkeypatch.setattr(selectors, "listing_page", deleted_meanwhile)
    response = api.get(LISTINGS)
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [kept.pk]


def test_full_width_letters_are_searched_and_found_as_ascii(api):
    """As Chinese input methods type them in full-width mode."""
    tomato = create_listing(title="Fresh tomatoes")
    fuji = create_listing(title="红富士 Ｆｕｊｉ")
    create_listing(title="Cabbage")
    for q, found in (("ｔｏｍａｔｏ", [tomato.pk]), ("fuji", [fuji.pk]), ("ＦＵＪＩ", [fuji.pk])):
        response = api.get(LISTINGS, {"q": q})
        assert [row["id"] for row in response.json()["results"]] == found, q


def test_near_finds_a_listing_inside_the_radius_at_its_east_rim(api):
    """(45.02, 122.55) is 199.996 km from (45.0, 120.006): inside a radius of 200 km,
    further east than 200 km / (111.195 km · cos 45°) of longitude."""
    village = VillageFactory(lat=Decimal("45.020000"), lng=Decimal("122.550000"))
    rim = create_listing(FarmerFactory(village=village))
    for radius, found in (("200", [rim.pk]), ("199.9", [])):
        response = api.get(LISTINGS, {"near": "45.0,120.006", "radius_km": radius})
        assert response.status_code == 200
        assert [row["id"] for row in response.json()["results"]] == found, radius


@pytest.mark.parametrize(
    ("near", "farm_lng"), [("-16.5,179.95", "-179.95"), ("-16.5,-179.95", "179.95")]
)
def test_near_finds_a_listing_across_the_antimeridian(api, near, farm_lng):
    """A farm 10.7 km away, on the other side of the 180th meridian (Fiji's Taveuni): the
    box around the circle ran past ±180° of longitude, where no place is, and left out the
    places on the other side, whose distance the search measures right."""
    village = VillageFactory(lat=Decimal("-16.500000"), lng=Decimal(farm_lng))
    across = create_listing(FarmerFactory(village=village))
    response = api.get(LISTINGS, {"near": near, "radius_km": "20", "ordering": "distance"})
    assert [(row["id"], row["distance_km"]) for row in response.json()["results"]] == [
        (across.pk, 10.7)
    ]
    narrow = api.get(LISTINGS, {"near": near, "radius_km": "10"})
    assert narrow.json()["count"] == 0


def test_rare_chinese_characters_are_searched_as_any_other(api):
    """Names and places are often written with rare characters outside Unicode's basic
    plane (𠮷, CJK extension B): they were left out of the search text and of the query, so
    a search for one found every listing there is (a query of nothing searchable filters
    nothing), and 王𠮷 found every 王."""
    rare = create_listing(FarmerFactory(name="王𠮷"), title="新米")
    create_listing(FarmerFactory(name="王芳"), title="新米")
    create_listing(title="二〇二六年新茶")
    for q in ("𠮷", "王𠮷", "新米 𠮷"):
        assert ids(api.get(LISTINGS, {"q": q})) == [rare.pk], q
    assert len(ids(api.get(LISTINGS, {"q": "二〇二六"}))) == 1


def test_words_in_every_script_are_searched_not_left_out(api):
    """Uyghur (Arabic script), Tibetan, Mongolian and Korean are written in counties of
    China: only Chinese characters and Latin letters went into the search text and the
    query, so a search in them found every listing there is (a query of nothing searchable
    filters nothing), and a farmer named in them was found by no search."""
    apple = create_listing(FarmerFactory(name="ئەخمەت"), title="ئالما 苹果")
    tibetan = create_listing(title="ཀུ་ཤུ་དམར་པོ")  # red apples, its vowels marks
    mongolian = create_listing(title="ᠠᠯᠮᠤᠷᠠᠳ")
    korean = create_listing(title="사과 10kg")
    vietnamese = create_listing(title="Rau muống")  # ố: beyond Latin Extended-B
    create_listing(title="大白菜")
    for q, found in (
        ("ئالما", [apple]),
        ("ئەخمەت", [apple]),
        ("ཀུ", [tibetan]),
        ("ཤུ་དམར", [tibetan]),
        ("ᠠᠯᠮᠤ", [mongolian]),
        ("사과", [korean]),
        ("muống", [vietnamese]),
        ("яблоко", []),
    ):
        assert ids(api.get(LISTINGS, {"q": q})) == [listing.pk for listing in found], q
    assert len(ids(api.get(LISTINGS, {"q": "！？ 🍎"}))) == 6  # nothing searchable: no filter


def test_listings_indexed_before_full_width_folding_are_found_after_reindex_listings(
    api, monkeypatch
):
    """A listing whose search text was written before NFKC folding (`５斤装` kept whole):
    `manage.py reindex_listings` writes it again, and a search finds it."""
    import listings.search  # noqa: PLC0415

    monkeypatch.setattr(listings.search, "_folded", lambda text: (text or "").lower())
    before = create_listing(title="５斤装红富士")  # indexed as the code before folded it
    monkeypatch.undo()
    assert [r["id"] for r in api.get(LISTINGS, {"q": "5斤装"}).json()["results"]] == []

    out = StringIO()
    call_command("reindex_listings", stdout=out)

    assert out.getvalue() == "1 listings indexed again.\n"
    for q in ("5斤装", "５斤装"):
        assert [r["id"] for r in api.get(LISTINGS, {"q": q}).json()["results"]] == [before.pk]
