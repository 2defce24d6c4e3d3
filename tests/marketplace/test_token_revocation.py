"""Refresh tokens that can be revoked: logout, a new password, a deactivated account; and
the expired ones pruned."""

import pytest
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from tests.factories import PASSWORD, FarmerFactory, VillageFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register/"
TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"


def login(api, user) -> dict:
    response = api.post(TOKEN, {"phone": user.phone, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()


def test_a_login_records_its_refresh_token_as_outstanding(api):
    farmer = FarmerFactory()
    refresh = RefreshToken(login(api, farmer)["refresh"])
    outstanding = OutstandingToken.objects.get()
    assert (outstanding.jti, outstanding.user) == (refresh["jti"], farmer)
    assert outstanding.expires_at.timestamp() == refresh["exp"]


def test_a_registration_records_its_refresh_token_as_outstanding(api):
    body = {
        "phone": "138 1234 5678",
        "password": PASSWORD,
        "name": "王秀英",
        "role": "buyer",
        "village": VillageFactory().pk,
    }
    response = api.post(REGISTER, body, format="json")
    assert response.status_code == 201
    refresh = RefreshToken(response.json()["refresh"])
    outstanding = OutstandingToken.objects.get()
    assert (outstanding.jti, outstanding.user_id) == (refresh["jti"], response.json()["id"])
