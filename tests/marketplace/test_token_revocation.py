"""Refresh tokens that can be revoked: logout, a new password, a deactivated account; and
the expired ones pruned."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import jwt
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from marketplace.accounts import services
from marketplace.accounts.models import User
from marketplace.accounts.tasks import prune_expired_tokens
from marketplace.accounts.tokens import RefreshToken
from marketplace.celery import app as celery_app
from tests.factories import PASSWORD, BuyerFactory, FarmerFactory, VillageFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register/"
TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"
ME = "/api/v1/me/"
ORDERS = "/api/v1/orders/"
PASSWORD_CHANGE = "/api/v1/auth/password/"


@pytest.fixture
def operator() -> Client:
    user = User.objects.create_superuser(
        phone="+8613000000001", password="an-operator-passphrase", name="op"
    )
    client = Client()
    client.force_login(user)
    return client


def login(api, user) -> dict:
    response = api.post(TOKEN, {"phone": user.phone, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()


def jti(refresh: str) -> str:
    return RefreshToken(refresh, verify=False)["jti"]


def blacklisted() -> list[str]:
    return sorted(BlacklistedToken.objects.values_list("token__jti", flat=True))


class FastPBKDF2(PBKDF2PasswordHasher):
    """The hasher of an upgrade, as fast as a test needs."""

    iterations = 1000


def test_a_password_rehashed_at_login_after_a_hasher_upgrade_refuses_older_tokens_once(
    api, settings
):
    """Django re-hashes a password at login under a new first hasher: as any new password
    hash, that refuses the tokens issued before (`password_changed`), once; the tokens of
    that login and of the next ones live on."""
    user = BuyerFactory()
    before = login(api, user)
    settings.PASSWORD_HASHERS = [
        "tests.marketplace.test_token_revocation.FastPBKDF2",
        *settings.PASSWORD_HASHERS,
    ]

    rehashed = login(api, user)
    assert User.objects.get(pk=user.pk).password.startswith("pbkdf2_sha256$1000$")
    after = login(api, user)

    refused = APIClient(HTTP_AUTHORIZATION=f"Bearer {before['access']}").get(ME)
    assert (refused.status_code, refused.json()["code"]) == (401, "password_changed")
    assert api.post(REFRESH, {"refresh": before["refresh"]}, format="json").status_code == 401
    for tokens_now in (rehashed, after):
        assert (
            APIClient(HTTP_AUTHORIZATION=f"Bearer {tokens_now['access']}").get(ME).status_code
            == 200
        )
        assert (
            api.post(REFRESH, {"refresh": tokens_now["refresh"]}, format="json").status_code == 200
        )


def test_a_login_records_its_refresh_token_as_outstanding(api):
    farmer = FarmerFactory()
    refresh = RefreshToken(login(api, farmer)["refresh"])
    outstanding = OutstandingToken.objects.get()
    assert (outstanding.jti, outstanding.user) == (refresh["jti"], farmer)
    assert outstanding.expires_at.timestamp() == refresh["exp"]


def register(api):
    body = {
        "phone": "138 1234 5678",
        "password": PASSWORD,
        "name": "王秀英",
        "role": "buyer",
        "village": VillageFactory().pk,
    }
    return api.post(REGISTER, body, format="json")


def test_a_registration_records_its_refresh_token_as_outstanding(api):
    response = register(api)
    assert response.status_code == 201
    outstanding = OutstandingToken.objects.get()
    assert (outstanding.jti, outstanding.user_id) == (
        jti(response.json()["refresh"]),
        response.json()["id"],
    )


# --- logout


def test_a_refresh_token_logged_out_refreshes_no_more_and_other_devices_stay(api):
    farmer = FarmerFactory()
    phone, tablet = login(api, farmer), login(api, farmer)
    response = api.post(LOGOUT, {"refresh": phone["refresh"]}, format="json")
    assert response.status_code == 204
    assert response.content == b""
    assert blacklisted() == [jti(phone["refresh"])]

    refused = api.post(REFRESH, {"refresh": phone["refresh"]}, format="json")
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_not_valid"
    assert refused.json()["detail"] == "Token is blacklisted"
    assert api.post(REFRESH, {"refresh": tablet["refresh"]}, format="json").status_code == 200


def test_a_logout_refuses_the_access_tokens_made_from_its_refresh_token_at_no_query_more(
    api, django_assert_num_queries
):
    farmer = FarmerFactory()
    phone, tablet = login(api, farmer), login(api, farmer)
    refreshed = api.post(REFRESH, {"refresh": phone["refresh"]}, format="json").json()["access"]
    for access in (phone["access"], refreshed):
        assert tokens.AccessToken(access)["sid"] == jti(phone["refresh"])

    assert api.post(LOGOUT, {"refresh": phone["refresh"]}, format="json").status_code == 204

    for access in (phone["access"], refreshed):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        with django_assert_num_queries(1):  # the user row, which every request reads anyway
            answer = api.get(ME)
        assert (answer.status_code, answer.json()["code"]) == (401, "signed_out")
        assert api.post(ORDERS, {}, format="json").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tablet['access']}")
    assert api.get(ME).status_code == 200
    assert User.objects.get(pk=farmer.pk).sign_outs == 0


def test_access_tokens_made_before_they_named_their_session_live_on_after_a_logout(api):
    """simplejwt's own access tokens carry no `sid`: they work until they expire."""
    farmer = FarmerFactory()
    refresh = RefreshToken.for_user(farmer)
    legacy = str(tokens.RefreshToken.access_token.fget(refresh))  # made without the claim
    assert "sid" not in tokens.AccessToken(legacy)
    api.post(LOGOUT, {"refresh": str(refresh)}, format="json")
    assert blacklisted() == [refresh["jti"]]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {legacy}")
    assert api.get(ME).status_code == 200


def test_registering_and_a_new_password_give_access_tokens_naming_their_session(api):
    registered = register(api).json()
    assert tokens.AccessToken(registered["access"])["sid"] == jti(registered["refresh"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {registered['access']}")
    changed = api.post(
        PASSWORD_CHANGE,
        {"current_password": PASSWORD, "new_password": "another long passphrase"},
        format="json",
    ).json()
    assert tokens.AccessToken(changed["access"])["sid"] == jti(changed["refresh"])


def test_logging_out_twice_answers_204_twice_and_revokes_once(api):
    refresh = login(api, FarmerFactory())["refresh"]
    first = api.post(LOGOUT, {"refresh": refresh}, format="json")
    retried = api.post(LOGOUT, {"refresh": refresh}, format="json")
    assert (first.status_code, retried.status_code) == (204, 204)
    assert blacklisted() == [jti(refresh)]
    assert OutstandingToken.objects.count() == 1


def test_logout_asks_for_no_access_token_even_a_stale_one(api):
    """An access token that expired meanwhile must not keep a user from logging out."""
    refresh = login(api, FarmerFactory())["refresh"]
    api.credentials(HTTP_AUTHORIZATION="Bearer expired-or-garbage")
    assert api.post(LOGOUT, {"refresh": refresh}, format="json").status_code == 204
    assert blacklisted() == [jti(refresh)]


def test_whoever_holds_a_refresh_token_may_revoke_it(api, client_for):
    """A refresh token is a bearer credential: holding it is all it takes to use it, so it
    is all it takes to give it up, whoever sends it."""
    owner, other = FarmerFactory(), BuyerFactory()
    refresh = login(api, owner)["refresh"]
    response = client_for(other).post(LOGOUT, {"refresh": refresh}, format="json")
    assert response.status_code == 204
    assert blacklisted() == [jti(refresh)]
    assert BlacklistedToken.objects.get().token.user == owner


def expired_refresh(user) -> str:
    token = RefreshToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(days=31))
    return str(token)


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("garbage", "Token is invalid"),
        ("an access token", "Token has wrong type"),
        ("an expired refresh token", "Token is expired"),
        ("a refresh token signed with another key", "Token is invalid"),
    ],
)
def test_a_token_that_is_no_live_refresh_token_of_ours_is_401_as_on_refresh(api, token, detail):
    farmer = FarmerFactory()
    raw = {
        "garbage": "not-a-token",
        "an access token": str(RefreshToken.for_user(farmer).access_token),
        "an expired refresh token": expired_refresh(farmer),
        "a refresh token signed with another key": _signed_elsewhere(farmer),
    }[token]
    outstanding = sorted(OutstandingToken.objects.values_list("jti", flat=True))
    response = api.post(LOGOUT, {"refresh": raw}, format="json")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "code": "token_not_valid",
        "detail": detail,
    }
    assert response.json() == api.post(REFRESH, {"refresh": raw}, format="json").json()
    assert sorted(OutstandingToken.objects.values_list("jti", flat=True)) == outstanding
    assert blacklisted() == []


def _signed_elsewhere(user) -> str:
    payload = RefreshToken.for_user(user).payload
    return jwt.encode(payload, "another-key-of-at-least-32-bytes-long", algorithm="HS256")


def test_logout_without_a_refresh_token_is_400_naming_the_field(api):
    response = api.post(LOGOUT, {}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"] == [
        {"field": "refresh", "code": "required", "detail": "This field is required."}
    ]
    assert blacklisted() == []


@pytest.mark.django_db(transaction=True)
def test_logouts_racing_with_a_token_never_recorded_all_answer_204_and_revoke_it_once():
    """A token issued before the blacklist app (no outstanding row) is recorded by the first
    logout; eight at once insert one row each way, and none fails."""
    refresh = str(RefreshToken.for_user(FarmerFactory()))
    OutstandingToken.objects.all().delete()
    start = threading.Event()

    def logout() -> int:
        try:
            start.wait()
            return APIClient().post(LOGOUT, {"refresh": refresh}, format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(logout) for _ in range(8)]
        start.set()
        codes = Counter(future.result() for future in futures)
    assert codes == {204: 8}
    assert blacklisted() == [jti(refresh)]
    assert OutstandingToken.objects.count() == 1


# --- a new password, a deactivated or deleted account


def refused(api, tokens: dict) -> tuple[dict, dict]:
    """What a refresh with the refresh token and a request with the access token answer."""
    refresh = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = api.get(ME)
    api.credentials()
    assert (refresh.status_code, me.status_code) == (401, 401)
    return refresh.json(), me.json()


def test_a_new_password_refuses_the_old_refresh_and_access_tokens(api, django_assert_num_queries):
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    farmer.set_password("a-new-and-long-passphrase")
    farmer.save()

    refresh, me = refused(api, tokens)
    assert (refresh["code"], me["code"]) == ("password_changed", "password_changed")
    assert refresh["detail"] == "The user's password has been changed."
    assert "access" not in refresh
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    with django_assert_num_queries(1):  # the user row, which every request reads anyway
        assert api.get(ME).status_code == 401


def test_after_a_new_password_a_new_login_works_and_the_old_tokens_stay_refused(api):
    farmer = FarmerFactory()
    old = login(api, farmer)
    farmer.set_password("a-new-and-long-passphrase")
    farmer.save()
    wrong = api.post(TOKEN, {"phone": farmer.phone, "password": PASSWORD}, format="json")
    assert wrong.status_code == 401
    fresh = api.post(
        TOKEN, {"phone": farmer.phone, "password": "a-new-and-long-passphrase"}, format="json"
    ).json()
    access = api.post(REFRESH, {"refresh": fresh["refresh"]}, format="json").json()["access"]
    for token in (fresh["access"], access):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert api.get(ME).json()["id"] == farmer.pk
    api.credentials()
    assert refused(api, old)[0]["code"] == "password_changed"


def test_a_password_an_operator_sets_in_the_admin_refuses_the_old_tokens(api, operator):
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    response = operator.post(
        f"/admin/accounts/user/{farmer.pk}/password/",
        {"password1": "a-new-and-long-passphrase", "password2": "a-new-and-long-passphrase"},
    )
    assert response.status_code == 302
    refresh, me = refused(api, tokens)
    # as after the user's own change: the refresh token revoked, the access token refused
    assert (refresh["code"], me["code"]) == ("token_not_valid", "password_changed")


def test_a_deactivated_user_is_refused_on_refresh_and_on_every_request_others_are_not(api):
    farmer, neighbour = FarmerFactory(), FarmerFactory()
    tokens, kept = login(api, farmer), login(api, neighbour)
    farmer.is_active = False
    farmer.save(update_fields=["is_active"])
    neighbour.name = "李明"  # a save that changes neither password nor is_active
    neighbour.save()

    refresh, me = refused(api, tokens)
    assert (refresh["code"], me["code"]) == ("user_inactive", "user_inactive")
    response = api.post(REFRESH, {"refresh": kept["refresh"]}, format="json")
    assert response.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert api.get(ME).json()["name"] == "李明"
    assert OutstandingToken.objects.count() == 2  # a refresh records nothing new


def test_a_sign_out_of_every_device_refuses_every_older_access_token_at_no_query_more(
    api, django_assert_num_queries
):
    """An access token cannot be blacklisted (it is never stored), so each carries the
    user's count of sign-outs when issued (marketplace.accounts.tokens); the user row every
    request reads holds the current one."""
    farmer, neighbour = FarmerFactory(), FarmerFactory()
    phone, kept = login(api, farmer), login(api, neighbour)
    minted = str(RefreshToken(phone["refresh"]).access_token)  # as a refresh makes one

    services.user_tokens_revoke(user=farmer)

    for access in (phone["access"], minted):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        with django_assert_num_queries(1):  # the user row, which every request reads anyway
            answer = api.get(ME)
        assert (answer.status_code, answer.json()["code"]) == (401, "signed_out")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {kept['access']}")
    assert api.get(ME).status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {login(api, farmer)['access']}")
    assert api.get(ME).status_code == 200  # a new login carries the new count


def test_tokens_issued_before_sign_outs_were_counted_work_until_the_first(api):
    """Tokens issued before this change carry no count: they read as none, which is right
    until the user's first sign-out of every device."""
    farmer = FarmerFactory()
    legacy = str(tokens.RefreshToken.for_user(farmer).access_token)  # simplejwt's own
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {legacy}")
    assert api.get(ME).status_code == 200
    services.user_tokens_revoke(user=farmer)
    answer = api.get(ME)
    assert (answer.status_code, answer.json()["code"]) == (401, "signed_out")


def test_a_deleted_user_refresh_token_is_401_user_not_found(api):
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    farmer.delete()
    refresh, me = refused(api, tokens)
    assert (refresh["code"], me["code"]) == ("user_not_found", "user_not_found")


def test_the_schema_shows_logout_taking_a_refresh_token_and_answering_204(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"][LOGOUT]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] == {
        "type": "object",
        "properties": {"refresh": {"type": "string", "writeOnly": True, "minLength": 1}},
        "required": ["refresh"],
    }
    assert set(operation["responses"]) == {"204", "400", "401", "413", "415"}
    assert "content" not in operation["responses"]["204"]
    assert "security" not in operation  # no access token asked for


def test_the_schema_shows_what_login_and_refresh_answer(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    def answer(path: str) -> dict:
        ok = schema["paths"][path]["post"]["responses"]["200"]
        name = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        return schema["components"]["schemas"][name]["properties"]

    assert set(answer(TOKEN)) == {"access", "refresh"}
    assert set(answer(REFRESH)) == {"access"}
    refused = schema["paths"][REFRESH]["post"]["responses"]["401"]["description"]
    assert all(code in refused for code in ("token_not_valid", "password_changed", "user_inactive"))


# --- pruning


def test_pruning_deletes_the_expired_tokens_only_blacklisted_or_not(settings):
    """Once expired for longer than an access token lives: none made from them is left."""
    farmer = FarmerFactory()
    now = timezone.now()
    access_lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    tokens = {}
    for name, expires_at in [
        ("expired", now - access_lifetime - timedelta(seconds=1)),
        ("expired and revoked", now - timedelta(days=3)),
        ("expired, its access tokens live", now - access_lifetime + timedelta(seconds=60)),
        ("live", now + timedelta(seconds=60)),
        ("live and revoked", now + timedelta(days=29)),
    ]:
        tokens[name] = OutstandingToken.objects.create(
            user=farmer, jti=name, token="…", created_at=now, expires_at=expires_at
        )
        if name.endswith("revoked"):
            BlacklistedToken.objects.create(token=tokens[name])

    assert prune_expired_tokens() == 2
    assert sorted(OutstandingToken.objects.values_list("jti", flat=True)) == [
        "expired, its access tokens live",
        "live",
        "live and revoked",
    ]
    assert blacklisted() == ["live and revoked"]
    assert prune_expired_tokens() == 0


def test_a_logged_out_refresh_token_pruned_as_it_expires_revives_no_access_token_of_it(api):
    """An access token made from a refresh token in its last minutes lives on past it (for
    JWT_ACCESS_MINUTES from when it was made), and a logout refuses it by that refresh
    token's blacklist row. Pruning the refresh token once it expired took the row along, and
    the logged-out access token worked again until its own end."""
    farmer = FarmerFactory()
    phone = login(api, farmer)
    access = api.post(REFRESH, {"refresh": phone["refresh"]}, format="json").json()["access"]
    assert api.post(LOGOUT, {"refresh": phone["refresh"]}, format="json").status_code == 204
    # the refresh token ran out a minute ago; the access token made from it has ~59 to go
    OutstandingToken.objects.filter(jti=jti(phone["refresh"])).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    pruned = prune_expired_tokens()

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    answer = api.get(ME)
    assert answer.status_code == 401
    assert answer.json()["code"] == "signed_out"
    assert (pruned, blacklisted()) == (0, [jti(phone["refresh"])])


def test_the_beat_prunes_expired_tokens_daily():
    entry = celery_app.conf.beat_schedule["prune-expired-tokens"]
    assert entry["task"] == prune_expired_tokens.name
    assert entry["task"] == "marketplace.accounts.tasks.prune_expired_tokens"
    assert entry["schedule"].remaining_estimate(timezone.now()) <= timedelta(days=1)
