"""Registration, login, refresh and the own profile, over HTTP."""

import re
import threading
import time
import warnings
from datetime import timedelta
from decimal import Decimal

import pytest
from axes.models import AccessAttempt, AccessLog
from django.contrib.auth import get_user_model
from django.core.cache import CacheKeyWarning
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from marketplace.accounts.api.views import LoginPhoneThrottle, LoginThrottle
from marketplace.accounts.models import Role
from marketplace.accounts.tasks import prune_login_logs
from tests.factories import PASSWORD, BuyerFactory, FarmerFactory, StaffFactory, VillageFactory

pytestmark = pytest.mark.django_db
User = get_user_model()

REGISTER = "/api/v1/auth/register/"
TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
ME = "/api/v1/me/"


def register_body(home, **overrides):
    return {
        "phone": "138 1234 5678",
        "password": PASSWORD,
        "name": "王秀英",
        "role": "farmer",
        "village": home.pk,
        **overrides,
    }


def test_register_farmer_normalises_phone_and_returns_tokens(api):
    village = VillageFactory()
    response = api.post(REGISTER, register_body(village), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["phone"] == "+8613812345678"
    assert body["role"] == "farmer"
    assert body["village"] == village.pk
    assert body["service_center"] == village.service_center_id
    assert body["access"]
    assert body["refresh"]
    assert "password" not in body
    user = User.objects.get(phone="+8613812345678")
    assert user.check_password(PASSWORD)
    assert user.name == "王秀英"


@pytest.mark.parametrize(
    "raw", ["+86 138-1234-5678", "8613812345678", "13812345678", "(+86) 138 1234 5678"]
)
def test_register_accepts_chinese_mobile_spellings(api, raw):
    response = api.post(REGISTER, register_body(VillageFactory(), phone=raw), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["phone"] == "+8613812345678"


def test_register_buyer_gets_default_kind(api):
    village = VillageFactory()
    response = api.post(REGISTER, register_body(village, role="buyer"), format="json")
    assert response.status_code == 201
    assert response.json()["buyer_kind"] == "household"


@pytest.mark.parametrize(("role", "stored"), [("farmer", ""), ("buyer", "household")])
def test_register_with_a_blank_buyer_kind_is_as_without_one(api, role, stored):
    """A sign-up form sends its empty kind box as "" (a farmer's, as `/me/` reads it back):
    blank is no kind given, as `/me/` takes a farmer's blank kind, not 400 `invalid_choice`."""
    body = register_body(VillageFactory(), role=role, buyer_kind="")
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["buyer_kind"] == stored
    assert User.objects.get().buyer_kind == stored


def test_register_farmer_with_a_buyer_kind_is_400_naming_it_and_creates_nothing(api):
    """As `/me/` refuses a farmer's buyer kind, so does sign-up, rather than dropping it."""
    response = api.post(REGISTER, register_body(VillageFactory(), buyer_kind="shop"), format="json")
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["field"], body["detail"]) == (
        "role_not_allowed",
        "buyer_kind",
        "Only buyers have a buyer kind.",
    )
    assert not User.objects.exists()


def test_duplicate_phone_in_any_spelling_is_400_phone_taken(api):
    village = VillageFactory()
    assert api.post(REGISTER, register_body(village), format="json").status_code == 201
    response = api.post(
        REGISTER, register_body(village, phone="+8613812345678", name="Other"), format="json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "code": "phone_taken",
        "detail": "This phone number is already registered.",
        "field": "phone",
        "errors": [
            {
                "field": "phone",
                "code": "phone_taken",
                "detail": "This phone number is already registered.",
            }
        ],
    }
    assert User.objects.get().name == "王秀英"


@pytest.mark.parametrize(
    "phone",
    [
        "12345",
        "not a phone",
        "+86 100 0000 0000",
        "",
        # valid to phonenumbers, longer than E.164's 15 digits (the phone column's 16)
        "+49 800 123456789012",
        "+234 800 12345678901",
    ],
)
def test_bad_phone_is_400_and_creates_nothing(api, phone):
    response = api.post(REGISTER, register_body(VillageFactory(), phone=phone), format="json")
    assert response.status_code == 400
    assert response.json()["code"] in {"invalid_phone", "validation_error"}
    if phone:
        assert (response.json()["code"], response.json()["field"]) == ("invalid_phone", "phone")
    assert not User.objects.exists()


def test_register_as_staff_is_refused(api):
    response = api.post(REGISTER, register_body(VillageFactory(), role="staff"), format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["errors"] == [
        {"field": "role", "code": "invalid_choice", "detail": '"staff" is not a valid choice.'}
    ]
    assert not User.objects.exists()


def test_register_names_every_missing_field(api):
    response = api.post(REGISTER, {}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {(e["field"], e["code"]) for e in errors} == {
        ("phone", "required"),
        ("password", "required"),
        ("name", "required"),
        ("role", "required"),
        ("village", "required"),
    }


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("\u200b", "blank"),  # a zero-width space: DRF's trim and blank check keep it
        ("\ufeff\u2060\u200b ", "blank"),
        ("王\n秀英", "control_characters_not_allowed"),
        ("王秀英\x1b[31m", "control_characters_not_allowed"),
        ("王\u202e秀英", "control_characters_not_allowed"),  # the line after it reversed
        ("\u2066王秀英", "control_characters_not_allowed"),
    ],
)
def test_a_name_with_nothing_visible_or_a_control_character_is_400_and_creates_nothing(
    api, name, code
):
    """A farmer shown to buyers, and to drivers on their stops, with no name at all, or one
    breaking across lines of a message."""
    response = api.post(REGISTER, register_body(VillageFactory(), name=name), format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "name", "code": code, "detail": response.json()["errors"][0]["detail"]}
    ]
    assert not User.objects.exists()


def test_a_profile_name_with_nothing_visible_is_400_and_nothing_changes(client_for):
    farmer = FarmerFactory(name="王秀英")
    for name, code in (("\u2060\u200b", "blank"), ("王\r秀英", "control_characters_not_allowed")):
        response = client_for(farmer).patch(ME, {"name": name}, format="json")
        assert response.status_code == 400
        assert (response.json()["errors"][0]["field"], response.json()["errors"][0]["code"]) == (
            "name",
            code,
        )
    farmer.refresh_from_db()
    assert farmer.name == "王秀英"
    taken = client_for(farmer).patch(ME, {"name": "Zoë 王"}, format="json")
    assert (taken.status_code, taken.json()["name"]) == (200, "Zoë 王")


def test_register_unknown_village_and_weak_password(api):
    response = api.post(REGISTER, register_body(VillageFactory(), village=999999), format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "village"
    assert response.json()["errors"][0]["code"] == "does_not_exist"

    response = api.post(REGISTER, register_body(VillageFactory(), password="123"), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "weak_password"
    assert response.json()["field"] == "password"
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("phone", "name", "password"),
    [
        ("+8613911112222", "王秀英", "+8613911112222"),  # the phone itself
        ("+8613911112223", "zhangwei2024", "zhangwei2024"),  # the name itself
    ],
)
def test_a_password_like_the_phone_or_the_name_is_weak(api, phone, name, password):
    body = register_body(VillageFactory(), phone=phone, name=name, password=password)
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "weak_password"
    assert not get_user_model().objects.filter(name=name).exists()


def test_the_register_limit_counts_an_address_the_client_cannot_write(api, monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"register": "2/hour"})
    answers = []
    for n in range(3):  # each claims another address in X-Forwarded-For, from one peer
        body = register_body(VillageFactory(), phone=f"+861391111300{n}")
        answer = api.post(
            REGISTER,
            body,
            format="json",
            REMOTE_ADDR="10.20.30.40",
            HTTP_X_FORWARDED_FOR=f"1.1.1.{n}",
        )
        answers.append(answer.status_code)
    assert answers == [201, 201, 429]


def wrong_guesses_from_addresses(api, phones) -> list[int]:
    """A wrong password for each phone (or spelling of one), each from an address of its
    own; the answers' status codes."""
    return [
        api.post(
            TOKEN,
            {"phone": phone, "password": f"guess-{n}"},
            format="json",
            REMOTE_ADDR=f"2001:db8::{n + 1:x}",
        ).status_code
        for n, phone in enumerate(phones)
    ]


def test_guesses_at_one_phone_spread_over_addresses_are_throttled(api, monkeypatch):
    """The lock-out counts a phone's failures per address; spread over addresses (an IPv6
    /64, a botnet) they would go on without end. Each spelling of the phone counts."""
    monkeypatch.setattr(LoginPhoneThrottle, "THROTTLE_RATES", {"login_phone": "4/hour"})
    FarmerFactory(phone="+8613912348888")
    spellings = ["+8613912348888", "13912348888", "+86 139 1234 8888", "008613912348888"]
    answers = wrong_guesses_from_addresses(api, spellings)
    right = api.post(
        TOKEN,
        {"phone": "+8613912348888", "password": PASSWORD},
        format="json",
        REMOTE_ADDR="2001:db8::ff",
    )
    assert answers == [401] * 4
    assert (right.status_code, right.json()["code"]) == (429, "throttled")
    assert int(right["Retry-After"]) > 0
    assert AccessAttempt.objects.count() == 4  # the throttled one was never tried
    other = FarmerFactory()  # another phone is not held back by this one's guesses
    login = {"phone": other.phone, "password": PASSWORD}
    assert api.post(TOKEN, login, format="json", REMOTE_ADDR="2001:db8::ff").status_code == 200


@pytest.mark.parametrize(
    ("phone", "other"),
    [
        ("é\x15\U000196b5 \U0006d538", "é\x15\U000196b5 \U0006d539"),  # control, astral
        ("用户名" * 40, "用户" * 40),  # read to the first 32 characters, as axes files it
        ("+86 139 1234 6666", "+86 139 1234 6667"),
    ],
)
def test_a_phones_login_throttle_key_is_safe_for_any_cache_and_counts_that_phone(
    api, monkeypatch, phone, other
):
    """The throttle's key held the phone as sent when it read as no phone: spaces, control
    characters and any Unicode, which Django warns of (CacheKeyWarning: memcached refuses
    such keys) and the schema fuzz raised by the dozen. The phone part is now a hash, and a
    phone's log-ins count together as before."""
    monkeypatch.setattr(LoginPhoneThrottle, "THROTTLE_RATES", {"login_phone": "2/hour"})
    request = RequestFactory().post(TOKEN, {"phone": phone})
    key = LoginPhoneThrottle().get_cache_key(request, None)
    assert re.fullmatch(r"throttle_login_phone_[0-9a-f]{64}", key)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        answers = wrong_guesses_from_addresses(api, [phone] * 3)
        another = api.post(TOKEN, {"phone": other, "password": "x"}, format="json")
    # refused as a wrong password (401) or as no phone (400, past the field's length), and
    # the third 429; another phone is not held back by this one's log-ins
    assert another.status_code in (400, 401)
    assert answers == [another.status_code, another.status_code, 429]


def test_a_phone_sent_as_a_json_number_counts_against_that_phone_too(api, monkeypatch):
    """The log in reads a number as its digits (13912348888, 8613912348888), as it reads
    text: sent so, the guesses counted against no phone, and went on past the limit from
    address after address."""
    monkeypatch.setattr(LoginPhoneThrottle, "THROTTLE_RATES", {"login_phone": "3/hour"})
    FarmerFactory(phone="+8613912347777")
    spellings = [13912347777, 8613912347777, "+8613912347777"]
    answers = wrong_guesses_from_addresses(api, spellings)
    right = api.post(
        TOKEN, {"phone": 13912347777, "password": PASSWORD}, format="json", REMOTE_ADDR="::9"
    )
    assert answers == [401] * 3
    assert (right.status_code, right.json()["code"]) == (429, "throttled")
    assert AccessAttempt.objects.count() == 3  # the throttled one was never tried


def test_one_address_trying_many_phones_is_throttled(api, monkeypatch):
    monkeypatch.setattr(LoginThrottle, "THROTTLE_RATES", {"login": "3/hour"})
    farmers = [FarmerFactory() for _ in range(4)]
    answers = [
        api.post(
            TOKEN,
            {"phone": farmer.phone, "password": "123456789a"},
            format="json",
            REMOTE_ADDR="198.51.100.77",
        ).status_code
        for farmer in farmers
    ]
    assert answers == [401, 401, 401, 429]


def test_behind_a_proxy_the_lockout_keys_on_the_address_the_proxy_saw(api, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}  # PROXY_COUNT=1
    victim = FarmerFactory(phone="+8613912340001")
    proxy = {"REMOTE_ADDR": "10.0.0.1"}  # every request comes through it

    def login(password: str, seen_by_proxy: str, written_by_client: str = ""):
        forwarded = ", ".join(filter(None, [written_by_client, seen_by_proxy]))
        body = {"phone": victim.phone, "password": password}
        return api.post(TOKEN, body, format="json", HTTP_X_FORWARDED_FOR=forwarded, **proxy)

    for _ in range(2):  # an attacker, claiming to be the victim's address
        assert login("wrong", "6.6.6.6", written_by_client="7.7.7.7").status_code in (401, 429)
    assert login(PASSWORD, "6.6.6.6").status_code == 429  # the attacker is locked out
    assert login(PASSWORD, "7.7.7.7").status_code == 200  # the victim is not
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"6.6.6.6"}


@pytest.mark.parametrize(("given", "missing"), [("lat", "lng"), ("lng", "lat")])
def test_register_needs_both_coordinates_and_names_the_missing_one(api, given, missing):
    body = register_body(VillageFactory(), **{given: "30.1"})
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == (
        "coordinates_incomplete",
        missing,
    )
    assert not User.objects.exists()


def test_register_refuses_a_place_far_from_the_village(api):
    """0,0 is what a phone without a GPS fix sends: pickups and deliveries there would never
    be routed. The place must lie within PLACE_MAX_KM_FROM_VILLAGE of the village's point."""
    body = register_body(VillageFactory(), lat="0", lng="0")
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "code": "place_too_far",
        "detail": "The place is more than 20 km from the village.",
        "field": "lat",
        "max_km": 20,
        "errors": [
            {
                "field": "lat",
                "code": "place_too_far",
                "detail": "The place is more than 20 km from the village.",
            }
        ],
    }
    assert not User.objects.exists()


def test_me_patch_refuses_a_place_far_from_the_village_and_changes_nothing(client_for):
    farmer = FarmerFactory(name="王秀英", lat=Decimal("30.250000"), lng=Decimal("119.700000"))
    home = farmer.village_id
    client = client_for(farmer)
    far = client.patch(ME, {"lat": "0", "lng": "0", "name": "新名字"}, format="json")
    assert (far.status_code, far.json()["code"], far.json()["field"]) == (
        400,
        "place_too_far",
        "lat",
    )
    elsewhere = VillageFactory(lat=Decimal("30.600000"), lng=Decimal("119.700000"))  # ~38 km
    moved = client.patch(ME, {"village": elsewhere.pk}, format="json")
    # the village is what was changed, and what the app shows the error beside
    assert (moved.status_code, moved.json()["code"], moved.json()["field"]) == (
        400,
        "place_too_far",
        "village",
    )
    assert moved.json()["errors"][0]["field"] == "village"
    farmer.refresh_from_db()
    assert (farmer.lat, farmer.lng, farmer.village_id, farmer.name) == (
        Decimal("30.250000"),
        Decimal("119.700000"),
        home,
        "王秀英",
    )
    near = client.patch(ME, {"village": elsewhere.pk, "lat": "30.61", "lng": "119.71"})
    assert near.status_code == 200, near.json()


def test_me_patch_clearing_one_coordinate_names_it_and_changes_nothing(client_for):
    buyer = BuyerFactory(name="王秀英", lat=Decimal("30.111111"), lng=Decimal("119.222222"))
    response = client_for(buyer).patch(ME, {"lat": None, "name": "新名字"}, format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("coordinates_incomplete", "lat")
    buyer.refresh_from_db()
    assert (buyer.lat, buyer.lng, buyer.name) == (
        Decimal("30.111111"),
        Decimal("119.222222"),
        "王秀英",
    )


def test_malformed_json_is_400_parse_error(api):
    response = api.post(REGISTER, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_token_login_with_phone_as_typed_then_me(api):
    farmer = FarmerFactory(phone="+8613912345678")
    response = api.post(TOKEN, {"phone": "139 1234 5678", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"access", "refresh"}

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = api.get(ME)
    assert me.status_code == 200
    assert me.json()["id"] == farmer.pk
    assert me.json()["role"] == "farmer"
    assert me.json()["service_center"] == farmer.village.service_center_id


def test_a_password_with_spaces_at_its_ends_signs_in_as_it_was_set(api):
    """Register keeps a password as typed, spaces included; so does login."""
    spaced = "  spring onion harvest  "
    body = register_body(VillageFactory(), password=spaced)
    assert api.post(REGISTER, body, format="json").status_code == 201

    login = {"phone": body["phone"], "password": spaced}
    assert api.post(TOKEN, login, format="json").status_code == 200
    trimmed = api.post(TOKEN, {**login, "password": spaced.strip()}, format="json")
    assert (trimmed.status_code, trimmed.json()["code"]) == (401, "no_active_account")


def test_wrong_password_is_401_with_code(api):
    FarmerFactory(phone="+8613912345678")
    response = api.post(TOKEN, {"phone": "+8613912345678", "password": "nope"}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


@pytest.mark.parametrize("length", [33, 256, 10_000])
def test_a_phone_longer_than_registration_accepts_is_400_and_no_attempt_is_logged(api, length):
    response = api.post(TOKEN, {"phone": "9" * length, "password": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "phone",
            "code": "max_length",
            "detail": "Ensure this field has no more than 32 characters.",
        }
    ]
    assert not AccessAttempt.objects.exists()


def test_refresh_is_repeatable_because_rotation_is_off(api):
    FarmerFactory(phone="+8613912345678")
    refresh = api.post(
        TOKEN, {"phone": "+8613912345678", "password": PASSWORD}, format="json"
    ).json()["refresh"]
    first = api.post(REFRESH, {"refresh": refresh}, format="json")
    retried = api.post(REFRESH, {"refresh": refresh}, format="json")
    assert first.status_code == retried.status_code == 200
    assert set(retried.json()) == {"access"}


def test_login_failures_are_rate_limited(api, settings):
    settings.AXES_FAILURE_LIMIT = 3
    FarmerFactory(phone="+8613912345678")
    bad = {"phone": "+8613912345678", "password": "wrong"}
    codes = [api.post(TOKEN, bad, format="json").status_code for _ in range(2)]
    assert codes == [401, 401]
    locked = api.post(TOKEN, bad, format="json")  # the third failure locks
    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_login_attempts"
    assert api.post(TOKEN, bad, format="json").status_code == 429
    # Even the right password is refused while locked out.
    good = api.post(TOKEN, {"phone": "+8613912345678", "password": PASSWORD}, format="json")
    assert good.status_code == 429


def test_me_requires_a_token(api):
    response = api.get(ME)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.json()["status"] == 401


def test_bad_token_is_401_token_not_valid(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = api.get(ME)
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_me_patch_changes_only_profile_fields(client_for):
    buyer = BuyerFactory()
    new_village = VillageFactory()
    response = client_for(buyer).patch(
        ME,
        {
            "name": "新名字",
            "village": new_village.pk,
            "role": "staff",
            "phone": "+8613000000000",
            "lat": "30.3",
            "lng": "119.7",
            "buyer_kind": "canteen",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    buyer.refresh_from_db()
    assert (buyer.name, buyer.village_id, buyer.role, buyer.buyer_kind) == (
        "新名字",
        new_village.pk,
        Role.BUYER,
        "canteen",
    )
    assert buyer.phone != "+8613000000000"
    assert response.json()["service_center"] == new_village.service_center_id


@pytest.mark.parametrize(
    "key",
    [
        lambda pk: pk + 0.5,  # int() would make it pk
        lambda pk: f"{pk}.5",
        lambda pk: True,  # int() would make it 1
        lambda pk: [pk],
        lambda pk: {"id": pk},
    ],
)
def test_a_village_key_that_is_no_whole_number_is_400_and_nothing_changes(client_for, key):
    buyer, village = BuyerFactory(name="Before"), VillageFactory()
    home = buyer.village_id
    response = client_for(buyer).patch(
        ME, {"village": key(village.pk), "name": "After"}, format="json"
    )
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("village", "incorrect_type")
    ]
    buyer.refresh_from_db()
    assert (buyer.village_id, buyer.name) == (home, "Before")


@pytest.mark.parametrize(
    "digits",
    [str, lambda pk: "".join(chr(0x0660 + int(d)) for d in str(pk))],  # also Arabic-Indic
)
def test_a_village_key_as_digits_is_taken(client_for, digits):
    buyer, village = BuyerFactory(), VillageFactory()
    response = client_for(buyer).patch(ME, {"village": digits(village.pk)}, format="json")
    assert response.status_code == 200
    buyer.refresh_from_db()
    assert buyer.village_id == village.pk


def test_staff_cannot_move_into_a_village(client_for):
    staff = StaffFactory()
    response = client_for(staff).patch(ME, {"village": VillageFactory().pk}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "role_not_allowed"
    staff.refresh_from_db()
    assert staff.village_id is None


def test_a_profile_field_not_for_ones_role_is_refused_naming_it(client_for):
    staff, farmer = StaffFactory(), FarmerFactory()
    answers = [
        client_for(staff).patch(ME, {"village": VillageFactory().pk}, format="json"),
        client_for(farmer).patch(ME, {"buyer_kind": "shop"}, format="json"),
    ]
    assert [(a.status_code, a.json()["code"], a.json().get("field")) for a in answers] == [
        (400, "role_not_allowed", "village"),
        (400, "role_not_allowed", "buyer_kind"),
    ]
    staff.refresh_from_db()
    farmer.refresh_from_db()
    assert (staff.village_id, farmer.buyer_kind) == (None, "")


@pytest.mark.parametrize("make", [FarmerFactory, BuyerFactory, StaffFactory])
def test_a_profile_sent_back_as_read_with_a_new_name_is_saved(client_for, make):
    """A profile screen saves the whole profile it read: a farmer's holds the blank
    buyer_kind, staff's the null village too, which were refused (400 invalid_choice, null)
    although they are what the profile holds, so a farmer or staff member could not change
    their name. What the profile holds already is no change, whatever one's role."""
    user = make()
    client = client_for(user)
    profile = client.get(ME).json()

    response = client.patch(ME, {**profile, "name": "新名字"}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json() == {**profile, "name": "新名字"}
    user.refresh_from_db()
    assert user.name == "新名字"


@pytest.mark.parametrize(
    ("make", "sent", "field", "code"),
    [
        (FarmerFactory, {"village": None}, "village", "null"),
        (BuyerFactory, {"village": None}, "village", "null"),
        (BuyerFactory, {"buyer_kind": ""}, "buyer_kind", "invalid_choice"),
    ],
)
def test_a_village_or_buyer_kind_taken_away_is_400(client_for, make, sent, field, code):
    user = make()
    before = (user.village_id, user.buyer_kind, user.name)
    response = client_for(user).patch(ME, {**sent, "name": "新名字"}, format="json")
    assert response.status_code == 400
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]
    user.refresh_from_db()
    assert (user.village_id, user.buyer_kind, user.name) == before


def test_staff_me_shows_their_center(client_for):
    staff = StaffFactory()
    body = client_for(staff).get(ME).json()
    assert (body["role"], body["service_center"], body["village"]) == (
        "staff",
        staff.service_center_id,
        None,
    )


def test_lockout_is_per_phone_not_for_everyone_behind_the_address(api, settings):
    settings.AXES_FAILURE_LIMIT = 2
    FarmerFactory(phone="+8613912345678")
    other = FarmerFactory(phone="+8613912345679")
    for _ in range(2):
        api.post(TOKEN, {"phone": "+8613912345678", "password": "wrong"}, format="json")
    response = api.post(TOKEN, {"phone": other.phone, "password": PASSWORD}, format="json")
    assert response.status_code == 200


def test_the_admin_login_is_locked_out_like_the_apps_right_password_included(settings):
    """Django's admin login form names the phone `username`: its failures count against
    that phone (in any spelling) and address like the app's, and once locked out even the
    right password is refused."""
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser(phone="+8613000000001", password="operator-pass-1", name="op")
    attacker = Client()
    guesses = [
        attacker.post("/admin/login/", {"username": phone, "password": f"guess-{n}"})
        for n, phone in enumerate(["+8613000000001", "130 0000 0001", "+8613000000001"])
    ]
    assert [g.status_code for g in guesses] == [200, 200, 429]
    assert list(AccessAttempt.objects.values_list("username", "failures_since_start")) == [
        ("+8613000000001", 3)
    ]
    right = attacker.post(
        "/admin/login/", {"username": "+8613000000001", "password": "operator-pass-1"}
    )
    assert right.status_code == 429
    assert "_auth_user_id" not in attacker.session
    app = APIClient().post(
        TOKEN, {"phone": "+8613000000001", "password": "operator-pass-1"}, format="json"
    )
    assert (app.status_code, app.json()["code"]) == (429, "too_many_login_attempts")


def test_prune_login_logs_keeps_recent_rows(settings):
    settings.LOGIN_LOG_RETENTION_DAYS = 30
    now = timezone.now()
    old = AccessLog.objects.create(username="+8613900000001", attempt_time=now)
    AccessLog.objects.filter(pk=old.pk).update(attempt_time=now - timedelta(days=31))
    recent = AccessLog.objects.create(username="+8613900000002", attempt_time=now)
    assert prune_login_logs() == 1
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [recent.pk]


@pytest.mark.django_db(transaction=True)
def test_two_profile_changes_at_once_never_leave_a_place_far_from_the_village(
    client_for, monkeypatch
):
    """One phone moves the buyer to another village (its place cleared), another sets a place
    near the old village at the same moment: each is checked against the row as the other
    left it, so the buyer never ends in the new village with a place ~38 km away from it
    (no delivery there could ever be planned)."""
    from marketplace.accounts import services  # noqa: PLC0415

    buyer = BuyerFactory(lat=Decimal("30.250000"), lng=Decimal("119.700000"))
    elsewhere = VillageFactory(lat=Decimal("30.600000"), lng=Decimal("119.700000"))  # ~38 km
    moved = threading.Event()
    check_place = services.check_place

    def slow_check_place(village, lat, lng, **named):
        if threading.current_thread().name == "near-old-village":
            moved.wait(timeout=3)  # the move commits meanwhile, unless it waits for this one
        check_place(village, lat, lng, **named)

    monkeypatch.setattr(services, "check_place", slow_check_place)
    answers = {}

    def patch(name, body, then=None):
        try:
            answers[name] = client_for(buyer).patch(ME, body, format="json").status_code
        finally:
            if then is not None:
                then.set()
            connection.close()

    near_old = threading.Thread(
        target=patch,
        name="near-old-village",
        args=("near", {"lat": "30.260000", "lng": "119.710000"}),
    )
    near_old.start()
    time.sleep(0.5)  # it has read the buyer and waits in its check
    move = threading.Thread(
        target=patch,
        name="move",
        args=("move", {"village": elsewhere.pk, "lat": None, "lng": None}, moved),
    )
    move.start()
    near_old.join(timeout=20)
    move.join(timeout=20)

    buyer.refresh_from_db()
    assert answers["near"] == 200
    if buyer.village_id == elsewhere.pk:
        assert buyer.lat is None
        assert answers["move"] == 200
    else:
        assert answers["move"] == 400
    assert buyer.lat is None or buyer.village.reaches(buyer.lat, buyer.lng)


def test_an_address_breaking_lines_is_400_on_sign_up_and_on_the_profile(api, client_for):
    """A buyer's address goes onto drivers' stops and into messages, as their name does."""
    refused = api.post(
        REGISTER, register_body(VillageFactory(), address="村口\n左转第二家"), format="json"
    )
    assert refused.status_code == 400
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [
        ("address", "control_characters_not_allowed")
    ]
    assert not User.objects.exists()

    buyer = BuyerFactory(address="村口第二家")
    for address in ("村口\r第二家", "\u2066村口第二家"):
        response = client_for(buyer).patch(ME, {"address": address}, format="json")
        assert response.status_code == 400
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            ("address", "control_characters_not_allowed")
        ]
    buyer.refresh_from_db()
    assert buyer.address == "村口第二家"
    cleared = client_for(buyer).patch(ME, {"address": ""}, format="json")
    assert (cleared.status_code, cleared.json()["address"]) == (200, "")
