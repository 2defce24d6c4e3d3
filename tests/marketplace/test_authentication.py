"""marketplace.api.authentication: simplejwt's rules, the token decoded once per request and
the user read by one statement of our own."""

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.tokens import AccessToken

from marketplace.accounts.models import User
from marketplace.api.authentication import user_by_id
from tests.factories import BuyerFactory, StaffFactory

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"
REGISTER = "/api/v1/auth/register/"


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every token decoded, by class name."""
    seen: list[str] = []
    real_init = tokens.Token.__init__

    def counting_init(self, *args, **kwargs):
        seen.append(type(self).__name__)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(tokens.Token, "__init__", counting_init)
    return seen


def bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {AccessToken.for_user(user)}"}


def test_a_keyed_post_decodes_its_token_once(api, decodes):
    """The idempotency middleware decodes it to scope the key; DRF reuses that."""
    user = BuyerFactory()
    headers = bearer(user)
    decodes.clear()

    answer = api.post(
        "/api/v1/notifications/read-all/", format="json", HTTP_IDEMPOTENCY_KEY="k-1", **headers
    )

    assert answer.status_code == 200
    assert decodes == ["AccessToken"]


def test_a_request_without_a_key_decodes_its_token_once_too(api, decodes):
    user = BuyerFactory()
    headers = bearer(user)
    decodes.clear()

    assert api.get(ME, **headers).status_code == 200
    assert decodes == ["AccessToken"]


def test_the_user_is_read_in_one_statement_as_the_orm_reads_it(api):
    user = StaffFactory()
    headers = bearer(user)

    with CaptureQueriesContext(connection) as queries:
        found = user_by_id(user.pk)

    assert len(queries.captured_queries) == 1
    expected = User.objects.get(pk=user.pk)
    assert model_to_dict(found) == model_to_dict(expected)
    assert (found.password, found.last_login, found.date_joined) == (
        expected.password,
        expected.last_login,
        expected.date_joined,
    )
    assert not found._state.adding
    assert api.get(ME, **headers).json()["id"] == user.pk


@pytest.mark.parametrize("claim", ["abc", None, 2**63, -1, 0, True, "near", "near-str"])
def test_a_user_id_claim_that_names_no_row_is_user_not_found(api, claim):
    user = BuyerFactory()
    token = AccessToken.for_user(user)
    token["user_id"] = {"near": user.pk + 0.5, "near-str": f"{user.pk}.5"}.get(claim, claim)

    answer = api.get(ME, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert answer.status_code == 401
    assert answer.json()["code"] == "user_not_found"


def test_a_user_id_claim_in_digits_finds_its_user(api):
    user = BuyerFactory()
    token = AccessToken.for_user(user)
    token["user_id"] = str(user.pk)

    assert api.get(ME, HTTP_AUTHORIZATION=f"Bearer {token}").json()["id"] == user.pk


def test_a_token_without_a_user_id_claim_is_refused(api):
    token = AccessToken.for_user(BuyerFactory())
    del token["user_id"]

    answer = api.get(ME, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert answer.status_code == 401
    assert answer.json()["code"] == "token_not_valid"


def test_a_deleted_user_is_user_not_found(api):
    user = BuyerFactory()
    headers = bearer(user)
    User.objects.filter(pk=user.pk).delete()

    answer = api.get(ME, **headers)

    assert answer.status_code == 401
    assert answer.json()["code"] == "user_not_found"
