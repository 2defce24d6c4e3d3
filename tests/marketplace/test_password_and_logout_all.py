"""Sign-out of every device, over HTTP."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from marketplace.accounts.models import User
from tests.factories import PASSWORD, FarmerFactory
from tests.marketplace.test_token_revocation import ME, REFRESH, TOKEN, blacklisted, jti, login

pytestmark = pytest.mark.django_db

LOGOUT_ALL = "/api/v1/auth/logout-all/"


def device(tokens: dict) -> APIClient:
    """A client signed in with the access token of `tokens`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    return client


def refresh_answer(refresh: str) -> tuple[int, str | None]:
    response = APIClient().post(REFRESH, {"refresh": refresh}, format="json")
    return response.status_code, response.json().get("code")


def me_answer(access: str) -> tuple[int, str | None]:
    response = device({"access": access}).get(ME)
    return response.status_code, response.json().get("code")


# --- sign out of every device


def test_logout_all_revokes_every_live_refresh_token_of_the_user_only(api):
    farmer, neighbour = FarmerFactory(), FarmerFactory()
    phone, tablet, old = login(api, farmer), login(api, farmer), login(api, farmer)
    kept = login(api, neighbour)
    api.post("/api/v1/auth/logout/", {"refresh": old["refresh"]}, format="json")
    expired = OutstandingToken.objects.create(
        user=farmer, jti="expired", token="…", expires_at=timezone.now()
    )

    response = device(phone).post(LOGOUT_ALL)

    assert response.status_code == 204
    assert response.content == b""
    assert blacklisted() == sorted(jti(tokens["refresh"]) for tokens in (phone, tablet, old))
    assert not BlacklistedToken.objects.filter(token=expired).exists()  # left to pruning
    for tokens in (phone, tablet):
        assert refresh_answer(tokens["refresh"]) == (401, "token_not_valid")
    assert refresh_answer(kept["refresh"]) == (200, None)
    # access tokens live until they expire, as after a logout
    assert me_answer(phone["access"]) == (200, None)
    assert User.objects.get(pk=farmer.pk).password == farmer.password
    fresh = api.post(TOKEN, {"phone": farmer.phone, "password": PASSWORD}, format="json")
    assert refresh_answer(fresh.json()["refresh"]) == (200, None)  # a new login works


def test_logout_all_again_is_204_and_revokes_nothing_more(api):
    farmer = FarmerFactory()
    phone = login(api, farmer)
    first = device(phone).post(LOGOUT_ALL)
    revoked = blacklisted()
    retried = device(phone).post(LOGOUT_ALL)
    assert (first.status_code, retried.status_code) == (204, 204)
    assert blacklisted() == revoked == [jti(phone["refresh"])]


def test_logout_all_retried_with_its_idempotency_key_is_replayed(api):
    farmer = FarmerFactory()
    phone = login(api, farmer)
    first = device(phone).post(LOGOUT_ALL, HTTP_IDEMPOTENCY_KEY="out-1")
    later = login(api, farmer)  # signed in again meanwhile: the replay revokes nothing
    retried = device(phone).post(LOGOUT_ALL, HTTP_IDEMPOTENCY_KEY="out-1")
    assert (first.status_code, retried.status_code) == (204, 204)
    assert retried["Idempotent-Replayed"] == "true"
    assert retried.content == b""
    assert blacklisted() == [jti(phone["refresh"])]
    assert refresh_answer(later["refresh"]) == (200, None)


def test_logout_all_without_a_token_is_401_and_revokes_nothing(api):
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    response = api.post(LOGOUT_ALL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert blacklisted() == []
    assert refresh_answer(tokens["refresh"]) == (200, None)


# --- schema


def test_the_schema_shows_logout_all_signed_in_taking_nothing_and_answering_204(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    logout_all = schema["paths"][LOGOUT_ALL]["post"]
    assert "requestBody" not in logout_all
    assert set(logout_all["responses"]) == {"204"}
    assert "content" not in logout_all["responses"]["204"]
    assert logout_all["security"] == [{"jwtAuth": []}]
