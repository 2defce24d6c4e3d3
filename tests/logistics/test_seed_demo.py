"""seed_demo: the demo county is complete, plausible, usable to log in with, and idempotent."""

import itertools
import math
from collections import Counter
from datetime import date, time, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import password_validation
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from listings import demo as listings_demo
from listings.models import Category, Listing, ListingStatus
from listings.places import coarse
from listings.services import listings_refresh_for_farmer
from logistics.demo import VILLAGE_NAMES
from logistics.models import ScheduleRun, ScheduleRunStatus, ServiceCenter, Vehicle, Village
from marketplace.accounts.models import BuyerKind, Role, User
from marketplace.celery import app as celery_app
from orders.models import Order, OrderLine
from tests.factories import BuyerFactory, FarmerFactory, create_listing
from tests.logistics.test_routing_messages import queued

pytestmark = pytest.mark.django_db

PASSWORDS = {
    Role.FARMER: "demo-farmer-pass",
    Role.BUYER: "demo-buyer-pass",
    Role.STAFF: "demo-staff-pass",
}


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module", autouse=True)
def county(django_db_setup, django_db_blocker):
    """The demo county, seeded once for the whole module (seeding takes a second); yields
    the first run's output. Every test runs in its own savepoint inside this transaction,
    so what a test changes is undone after it, and the seed itself after the module."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield _seed()
        transaction.set_rollback(True)


def _km(a, b) -> float:
    """Haversine distance between two rows with lat and lng; written here, not imported, so
    the test does not trust the code it checks."""
    lat1, lng1, lat2, lng2 = map(math.radians, (a.lat, a.lng, b.lat, b.lng))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _snapshot() -> dict[str, list[dict]]:
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (ServiceCenter, Village, User, Listing, Vehicle)
    }


def test_seed_creates_the_demo_county():
    assert ServiceCenter.objects.count() == 3
    assert Village.objects.count() == 40
    assert User.objects.filter(role=Role.FARMER).count() == 60
    assert User.objects.filter(role=Role.BUYER).count() == 40
    assert User.objects.filter(role=Role.STAFF).count() == 3
    assert User.objects.count() == 103
    assert set(Village.objects.values_list("county", flat=True)) == {"青山县"}
    assert set(ServiceCenter.objects.values_list("name", flat=True)) == {
        "青山镇服务中心",
        "石门镇服务中心",
        "溪口镇服务中心",
    }
    buyer_kinds = User.objects.filter(role=Role.BUYER).values_list("buyer_kind", flat=True)
    assert sorted(buyer_kinds) == sorted(
        [BuyerKind.HOUSEHOLD] * 22
        + [BuyerKind.SHOP] * 8
        + [BuyerKind.RESTAURANT] * 6
        + [BuyerKind.CANTEEN] * 4
    )


def test_every_center_has_a_small_fleet():
    fleets = {
        center.name: list(center.vehicles.order_by("capacity_kg"))
        for center in ServiceCenter.objects.all()
    }

    assert {name: [v.name for v in fleet] for name, fleet in fleets.items()} == {
        "青山镇服务中心": ["电动三轮车", "金杯面包车", "冷藏车", "小货车"],
        "石门镇服务中心": ["金杯面包车", "小货车"],
        "溪口镇服务中心": ["金杯面包车", "冷藏车", "小货车"],
    }
    vehicles = Vehicle.objects.all()
    assert {(v.name, v.capacity_kg, v.refrigerated) for v in vehicles} == {
        ("电动三轮车", Decimal(300), False),
        ("金杯面包车", Decimal(800), False),
        ("冷藏车", Decimal(1500), True),
        ("小货车", Decimal(2000), False),
    }
    assert {(v.shift_start, v.shift_end) for v in vehicles} == {(time(7, 0), time(18, 0))}
    assert all(v.active and v.cost_per_km > 0 for v in vehicles)


def test_phones_follow_the_numbering_rule():
    def phones(role: str) -> list[str]:
        return sorted(User.objects.filter(role=role).values_list("phone", flat=True))

    assert phones(Role.FARMER) == [f"+86138000000{n:02d}" for n in range(1, 61)]
    assert phones(Role.BUYER) == [f"+86139000000{n:02d}" for n in range(1, 41)]
    assert phones(Role.STAFF) == ["+8613700000001", "+8613700000002", "+8613700000003"]


def test_every_village_belongs_to_its_nearest_center():
    centers = list(ServiceCenter.objects.all())

    for village in Village.objects.select_related("service_center"):
        nearest = min(centers, key=lambda center, v=village: _km(v, center))
        assert village.service_center == nearest, village.name
    # Every center covers a fair share of the county, none a handful.
    per_center = [center.villages.count() for center in centers]
    assert sorted(per_center) == [10, 14, 16]


def test_every_place_lies_within_50_km_of_every_other():
    places = [
        *ServiceCenter.objects.all(),
        *Village.objects.all(),
        *User.objects.filter(lat__isnull=False),
    ]

    assert len(places) == 3 + 40 + 56
    assert max(_km(a, b) for a, b in itertools.combinations(places, 2)) < 50
    assert all(29.9 < p.lat < 30.5 and 119.3 < p.lng < 119.9 for p in places)


def test_people_belong_where_their_role_says():
    staff = list(User.objects.filter(role=Role.STAFF))
    assert all(user.service_center_id and user.village_id is None for user in staff)
    assert len({user.service_center_id for user in staff}) == 3
    villagers = User.objects.filter(role__in=[Role.FARMER, Role.BUYER])
    assert not villagers.filter(village__isnull=True).exists()
    assert not villagers.filter(service_center__isnull=False).exists()
    assert not User.objects.exclude(role=Role.BUYER).exclude(buyer_kind="").exists()
    # Every village has a farmer, and no farmer's name is shared.
    assert User.objects.filter(role=Role.FARMER).values("village").distinct().count() == 40
    farmer_names = User.objects.filter(role=Role.FARMER).values_list("name", flat=True)
    assert len(set(farmer_names)) == 60


def test_exact_places_lie_near_their_village():
    with_place = User.objects.filter(lat__isnull=False).select_related("village")
    assert with_place.filter(role=Role.FARMER).count() == 30
    assert with_place.filter(role=Role.BUYER, buyer_kind=BuyerKind.HOUSEHOLD).count() == 8
    # Businesses always give their exact place.
    assert with_place.filter(role=Role.BUYER).exclude(buyer_kind=BuyerKind.HOUSEHOLD).count() == 18
    for user in with_place:
        assert 0.15 < _km(user, user.village) < 1.25, user.phone
        assert user.address.startswith("青山县")
        assert user.village.name in user.address
    assert not User.objects.filter(lat__isnull=True).exclude(address="").exists()


@pytest.mark.parametrize("role", [Role.FARMER, Role.BUYER, Role.STAFF])
def test_demo_passwords_pass_the_default_validators(role):
    user = User.objects.filter(role=role).first()

    password_validation.validate_password(PASSWORDS[role], user)  # raises if too weak


@pytest.mark.parametrize(
    ("phone", "password"),
    [
        ("+8613800000001", "demo-farmer-pass"),
        ("+8613800000060", "demo-farmer-pass"),
        ("+8613900000001", "demo-buyer-pass"),
        ("+8613900000040", "demo-buyer-pass"),
        ("+8613700000003", "demo-staff-pass"),
    ],
)
def test_demo_logins_get_tokens(api, phone, password):
    response = api.post(
        "/api/v1/auth/token/", {"phone": phone, "password": password}, format="json"
    )

    assert response.status_code == 200, response.content
    assert set(response.json()) >= {"access", "refresh"}


def test_another_role_password_is_refused(api):
    response = api.post(
        "/api/v1/auth/token/",
        {"phone": "+8613800000001", "password": "demo-buyer-pass"},
        format="json",
    )

    assert response.status_code == 401


def _natural_rows() -> tuple[list, list, list, list, list]:
    """Every seeded value that does not depend on when or into which database it was seeded."""
    centers = ServiceCenter.objects.order_by("name").values_list(
        "name", "county", "address", "lat", "lng", "average_speed_kmh", "detour_factor"
    )
    villages = Village.objects.order_by("name").values_list(
        "name", "county", "lat", "lng", "service_center__name"
    )
    users = User.objects.order_by("phone").values_list(
        "phone",
        "name",
        "role",
        "village__name",
        "service_center__name",
        "address",
        "lat",
        "lng",
        "buyer_kind",
    )
    # Not the dates: they are relative to the day of seeding.
    listings = Listing.objects.order_by("farmer__phone", "title").values_list(
        "farmer__phone",
        "title",
        "category__slug",
        "description",
        "unit",
        "unit_weight_kg",
        "price",
        "quantity_available",
        "min_order_quantity",
        "shelf_life_days",
        "is_organic",
        "needs_refrigeration",
        "status",
        "village__name",
        "lat",
        "lng",
    )
    vehicles = Vehicle.objects.order_by("service_center__name", "name").values_list(
        "service_center__name",
        "name",
        "capacity_kg",
        "refrigerated",
        "shift_start",
        "shift_end",
        "cost_per_km",
        "active",
    )
    return list(centers), list(villages), list(users), list(listings), list(vehicles)


def test_seed_is_deterministic():
    first = _natural_rows()
    Listing.objects.all().delete()
    User.objects.all().delete()
    Village.objects.all().delete()
    ServiceCenter.objects.all().delete()

    _seed()

    assert _natural_rows() == first
    assert ServiceCenter.objects.get(name="溪口镇服务中心").villages.count() == 14


def test_second_run_changes_nothing():
    before = _snapshot()

    output = _seed()

    assert _snapshot() == before
    assert [len(rows) for rows in before.values()] == [3, 40, 103, 1000, 9]
    assert "Nothing to add" in output
    assert "(0 new)" in output
    assert "(3 new)" not in output


def test_a_seed_stopped_half_way_leaves_nothing_behind(monkeypatch):
    """Ctrl-C (or any failure) during a seed undoes all of it: one transaction, as its
    docstring says. The decorator sat on refuse_unless_allowed, put between them, so a seed
    stopped at the vehicles left the centers, villages, people and listings written."""
    Listing.objects.all().delete()
    User.objects.all().delete()
    Vehicle.objects.all().delete()
    Village.objects.all().delete()
    ServiceCenter.objects.all().delete()

    def stopped(centers):
        raise KeyboardInterrupt

    monkeypatch.setattr("logistics.demo.seed_vehicles", stopped)
    with pytest.raises(KeyboardInterrupt):
        _seed()

    assert [len(rows) for rows in _snapshot().values()] == [0, 0, 0, 0, 0]


def test_summary_prints_the_counts_and_the_demo_logins(county):
    output = county

    for label, count in [
        ("service centers", 3),
        ("villages", 40),
        ("staff", 3),
        ("farmers", 60),
        ("buyers", 40),
        ("listings", 1000),
        ("vehicles", 9),
    ]:
        assert f"{label:<16} {count:>4}  ({count} new)" in output
    for phone in ("+8613700000001", "+8613700000002", "+8613700000003"):
        assert f"staff   {phone}  demo-staff-pass" in output
    assert "farmer  +8613800000001  demo-farmer-pass" in output
    assert "buyer   +8613900000004  demo-buyer-pass" in output
    assert "+8613800000001 … +8613800000060  password demo-farmer-pass" in output
    assert "+8613900000001 … +8613900000040  password demo-buyer-pass" in output


# The listings of the demo farmers (listings.demo).

LISTINGS = "/api/v1/listings/"
MAIN_CATEGORIES_SHARE = 0.75


def test_the_catalog_is_complete_and_consistent():
    products = listings_demo.CATALOG
    titles = [product.title for product in products]

    assert 80 <= len(products) <= 100
    assert len(set(titles)) == len(titles)
    assert {product.category for product in products} == set(
        Category.objects.values_list("slug", flat=True)
    )
    assert len(Category.objects.all()) == 15
    for product in products:
        low, high = map(Decimal, product.price)
        assert 0 < low < high, product.title
        assert 0 < product.quantity[0] < product.quantity[1], product.title
        assert Decimal(product.min_order) <= product.quantity[0], product.title
        # kg and jin weigh what they weigh; every other unit says what it weighs.
        assert (product.unit_weight_kg is None) == (product.unit in ("kg", "jin")), product.title
    # Every demo village says what its land suits, 2 to 5 categories.
    assert set(listings_demo.VILLAGE_PROFILE) == set(VILLAGE_NAMES)
    assert all(2 <= len(c) <= 5 for c in listings_demo.VILLAGE_PROFILE.values())


def test_seed_lists_the_farmers_produce():
    listings = Listing.objects.select_related("category", "farmer")

    assert listings.count() == 1000
    assert set(listings.values_list("category__slug", flat=True)) == set(
        Category.objects.values_list("slug", flat=True)
    )
    statuses = Counter(listings.values_list("status", flat=True))
    assert set(statuses) == {"active", "draft", "paused", "sold_out"}
    assert statuses["active"] >= 900
    assert all(statuses[status] >= 10 for status in ("draft", "paused", "sold_out"))
    assert 20 < listings.filter(is_organic=True).count() < 200
    by_farmer: dict[int, list[Listing]] = {}
    for listing in listings:
        by_farmer.setdefault(listing.farmer_id, []).append(listing)
    assert len(by_farmer) == 60
    assert {listing.farmer.role for listing in listings} == {Role.FARMER}
    for farmer_listings in by_farmer.values():
        assert 10 <= len(farmer_listings) <= 25
        titles = [listing.title for listing in farmer_listings]
        assert len(set(titles)) == len(titles)
        # Mostly from 2 to 4 categories that suit the village.
        categories = Counter(listing.category.slug for listing in farmer_listings)
        main = sum(count for _, count in categories.most_common(4))
        assert main >= MAIN_CATEGORIES_SHARE * len(farmer_listings)
    assert "有机西红柿" in set(listings.values_list("title", flat=True))


def test_seeded_listings_are_plausible():
    # The day of the seed, not of this test: the module seeds once, maybe before midnight.
    today = timezone.localdate(Listing.objects.earliest("created_at").created_at)

    for listing in Listing.objects.select_related("category", "farmer__village"):
        where = f"{listing.farmer.phone} {listing.title}"
        assert listing.price > 0, where
        assert listing.shelf_life_days >= 1, where
        if listing.unit == "kg":
            assert listing.unit_weight_kg == Decimal(1), where
        elif listing.unit == "jin":
            assert listing.unit_weight_kg == Decimal("0.5"), where
        else:
            assert Decimal("0.05") <= listing.unit_weight_kg <= 10, where
        if listing.status == ListingStatus.SOLD_OUT:
            assert listing.quantity_available == 0, where
        else:
            assert listing.quantity_available >= listing.min_order_quantity > 0, where
        # Harvested from ten days ago to five days ahead, and still on offer today.
        assert today - timedelta(days=10) <= listing.harvest_date <= today + timedelta(days=5)
        if listing.available_until is not None:
            assert listing.available_until >= max(listing.harvest_date, today), where
        if listing.category.slug in ("dairy", "meat", "fish", "poultry"):
            assert listing.needs_refrigeration, where
        if listing.title.startswith("有机"):
            assert listing.is_organic, where
        assert listing.description, where
        # Shown where the farmer is (their exact place, else their village) on the ~1 km grid.
        farmer = listing.farmer
        place = farmer if farmer.lat is not None else farmer.village
        assert listing.village_id == farmer.village_id, where
        assert (listing.lat, listing.lng) == (coarse(place.lat), coarse(place.lng)), where
    assert not Listing.objects.filter(search_vector__isnull=True).exists()


def test_prices_are_realistic():
    def prices(title: str) -> list[Decimal]:
        return list(Listing.objects.filter(title=title).values_list("price", flat=True))

    assert prices("西红柿")
    assert all(Decimal("2.5") <= p <= 5 for p in prices("西红柿"))  # 元 a jin
    assert all(Decimal(25) <= p <= 40 for p in prices("黑猪肉"))  # 元 a jin
    assert all(Decimal(18) <= p <= 30 for p in prices("土鸡蛋"))  # 元 a dozen
    assert Listing.objects.filter(unit="jin").count() > 500
    assert set(Listing.objects.values_list("unit", flat=True)) == {
        "kg",
        "jin",
        "crate",
        "box",
        "bag",
        "piece",
        "bunch",
        "dozen",
        "liter",
    }


def test_seeded_search_text_is_the_one_listing_services_keep():
    farmer = User.objects.get(phone="+8613800000001")
    before = dict(farmer.listings.values_list("pk", "search_vector"))

    listings_refresh_for_farmer(farmer=farmer)  # writes each listing's vector anew

    assert dict(farmer.listings.values_list("pk", "search_vector")) == before


@pytest.mark.parametrize("word", ["西红柿", "苹果"])
def test_seeded_listings_are_found_by_search(api, word):
    with_word = Listing.objects.filter(status=ListingStatus.ACTIVE, title__contains=word)

    response = api.get(LISTINGS, {"q": word})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] >= with_word.count() > 0
    # Title matches rank first.
    assert body["results"]
    assert word in body["results"][0]["title"]
    assert all(word in row["title"] for row in body["results"][: min(with_word.count(), 20)]), [
        row["title"] for row in body["results"]
    ]


def test_second_run_keeps_edited_listings_and_restores_deleted_ones():
    edited, deleted = Listing.objects.order_by("pk")[:2]
    Listing.objects.filter(pk=edited.pk).update(price=Decimal("99.99"))
    deleted.delete()

    output = _seed()

    assert "listings         1000  (1 new)" in output
    assert Listing.objects.count() == 1000
    assert Listing.objects.get(pk=edited.pk).price == Decimal("99.99")
    restored = Listing.objects.get(farmer=deleted.farmer, title=deleted.title)
    assert restored.pk != deleted.pk
    assert restored.search_vector


def test_simulate_day_plans_every_center_and_carries_out_a_run_already_asked_for(
    django_capture_on_commit_callbacks,
):
    celery_app.control.purge()
    center = ServiceCenter.objects.order_by("name").first()
    today = timezone.localdate()
    asked = {  # staff asked for the next days already: the one the command plans is among them
        ScheduleRun.objects.create(service_center=center, date=today + timedelta(days=n)).pk
        for n in range(4)
    }
    out = StringIO()

    with django_capture_on_commit_callbacks(execute=True):  # its messages are sent
        call_command("simulate_day", orders=12, seed=7, stdout=out)

    [line] = [x for x in out.getvalue().splitlines() if x.startswith("Day ")]
    day = date.fromisoformat(line.split()[1].rstrip(":"))
    planned = ScheduleRun.objects.filter(date=day)
    assert planned.count() == ServiceCenter.objects.count()
    assert set(planned.values_list("status", flat=True)) == {ScheduleRunStatus.DONE}
    assert planned.get(service_center=center).pk in asked
    for name in ServiceCenter.objects.values_list("name", flat=True):
        assert any(row.startswith(name) for row in out.getvalue().splitlines())
    # carried out here: no task for a worker to solve them again
    assert queued("logistics.tasks.schedule_center_day") == []
    celery_app.control.purge()


def test_simulate_day_orders_for_demo_accounts_only():
    """It is the demo county's day: on a database that also holds real people (a server the
    operator tries it on), it places no order for a real buyer nor on a real farmer's
    produce, whose stock it would take and whom it would notify."""
    village = Village.objects.order_by("pk").first()
    real_buyers = [BuyerFactory(phone=f"+86150000001{n:02d}", village=village) for n in range(40)]
    real_farmer = FarmerFactory(phone="+8615000000200", village=village)
    real_listings = [create_listing(real_farmer, title=f"真的白菜{n}") for n in range(20)]
    stock = {x.pk: x.quantity_available for x in real_listings}
    celery_app.control.purge()

    call_command("simulate_day", orders=30, seed=7, stdout=StringIO())

    assert Order.objects.count() > 0
    assert Order.objects.filter(buyer__in=real_buyers).count() == 0
    assert OrderLine.objects.filter(farmer=real_farmer).count() == 0
    assert {x.pk: x.quantity_available for x in Listing.objects.filter(farmer=real_farmer)} == stock
    celery_app.control.purge()


@pytest.mark.parametrize("count", ["0", "-5"])
def test_simulate_day_refuses_no_orders_or_fewer(count):
    """A day of no orders (or fewer) is a typing mistake: said so, nothing placed or planned,
    rather than "Nothing to plan." as if the county had no produce."""
    with pytest.raises(CommandError, match="--orders"):
        call_command("simulate_day", "--orders", count, stdout=StringIO())
    assert not Order.objects.exists()
    assert not ScheduleRun.objects.exists()
