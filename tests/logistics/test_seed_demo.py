"""seed_demo: the demo county is complete, plausible, usable to log in with, and idempotent."""

import itertools
import math
from io import StringIO

import pytest
from django.contrib.auth import password_validation
from django.core.management import call_command

from logistics.models import ServiceCenter, Village
from marketplace.accounts.models import BuyerKind, Role, User

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
        for model in (ServiceCenter, Village, User)
    }


def test_seed_creates_the_demo_county():
    _seed()

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


def test_phones_follow_the_numbering_rule():
    _seed()

    def phones(role: str) -> list[str]:
        return sorted(User.objects.filter(role=role).values_list("phone", flat=True))

    assert phones(Role.FARMER) == [f"+86138000000{n:02d}" for n in range(1, 61)]
    assert phones(Role.BUYER) == [f"+86139000000{n:02d}" for n in range(1, 41)]
    assert phones(Role.STAFF) == ["+8613700000001", "+8613700000002", "+8613700000003"]


def test_every_village_belongs_to_its_nearest_center():
    _seed()
    centers = list(ServiceCenter.objects.all())

    for village in Village.objects.select_related("service_center"):
        nearest = min(centers, key=lambda center, v=village: _km(v, center))
        assert village.service_center == nearest, village.name
    # Every center covers a fair share of the county, none a handful.
    per_center = [center.villages.count() for center in centers]
    assert sorted(per_center) == [10, 14, 16]


def test_every_place_lies_within_50_km_of_every_other():
    _seed()
    places = [
        *ServiceCenter.objects.all(),
        *Village.objects.all(),
        *User.objects.filter(lat__isnull=False),
    ]

    assert len(places) == 3 + 40 + 56
    assert max(_km(a, b) for a, b in itertools.combinations(places, 2)) < 50
    assert all(29.9 < p.lat < 30.5 and 119.3 < p.lng < 119.9 for p in places)


def test_people_belong_where_their_role_says():
    _seed()

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
    _seed()

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
    _seed()
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
    _seed()

    response = api.post(
        "/api/v1/auth/token/", {"phone": phone, "password": password}, format="json"
    )

    assert response.status_code == 200, response.content
    assert set(response.json()) >= {"access", "refresh"}


def test_another_role_password_is_refused(api):
    _seed()

    response = api.post(
        "/api/v1/auth/token/",
        {"phone": "+8613800000001", "password": "demo-buyer-pass"},
        format="json",
    )

    assert response.status_code == 401


def _natural_rows() -> tuple[list, list, list]:
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
    return list(centers), list(villages), list(users)


def test_seed_is_deterministic():
    _seed()
    first = _natural_rows()
    User.objects.all().delete()
    Village.objects.all().delete()
    ServiceCenter.objects.all().delete()

    _seed()

    assert _natural_rows() == first
    assert ServiceCenter.objects.get(name="溪口镇服务中心").villages.count() == 14


def test_second_run_changes_nothing():
    _seed()
    before = _snapshot()

    output = _seed()

    assert _snapshot() == before
    assert [len(rows) for rows in before.values()] == [3, 40, 103]
    assert "Nothing to add" in output
    assert "(0 new)" in output
    assert "(3 new)" not in output


def test_summary_prints_the_counts_and_the_demo_logins():
    output = _seed()

    for label, count in [
        ("service centers", 3),
        ("villages", 40),
        ("staff", 3),
        ("farmers", 60),
        ("buyers", 40),
    ]:
        assert f"{label:<16} {count:>4}  ({count} new)" in output
    for phone in ("+8613700000001", "+8613700000002", "+8613700000003"):
        assert f"staff   {phone}  demo-staff-pass" in output
    assert "farmer  +8613800000001  demo-farmer-pass" in output
    assert "buyer   +8613900000004  demo-buyer-pass" in output
    assert "+8613800000001 … +8613800000060  password demo-farmer-pass" in output
    assert "+8613900000001 … +8613900000040  password demo-buyer-pass" in output
