"""A user's own new password and sign-out of every device, over HTTP."""

import threading

import pytest
from axes.models import AccessAttempt
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from marketplace.accounts import services
from marketplace.accounts.models import User
from marketplace.api.models import IdempotencyRecord
from orders.models import Notification
from tests.factories import PASSWORD, FarmerFactory
from tests.listings.test_photos import wait_for_lock_waiters
from tests.marketplace.test_token_revocation import ME, REFRESH, TOKEN, blacklisted, jti, login
from tests.orders.test_payments import in_thread

pytestmark = pytest.mark.django_db

PASSWORD_CHANGE = "/api/v1/auth/password/"
LOGOUT_ALL = "/api/v1/auth/logout-all/"
NEW_PASSWORD = "a-new-and-long-passphrase"


def device(tokens: dict) -> APIClient:
    """A client signed in with the access token of `tokens`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    return client


def change(tokens: dict, current: str = PASSWORD, new: str = NEW_PASSWORD, **extra):
    body = {"current_password": current, "new_password": new}
    return device(tokens).post(PASSWORD_CHANGE, body, format="json", **extra)


def refresh_answer(refresh: str) -> tuple[int, str | None]:
    response = APIClient().post(REFRESH, {"refresh": refresh}, format="json")
    return response.status_code, response.json().get("code")


def me_answer(access: str) -> tuple[int, str | None]:
    response = device({"access": access}).get(ME)
    return response.status_code, response.json().get("code")


# --- a new password


def test_a_new_password_keeps_this_device_signed_in_and_every_other_device_out(api):
    farmer = FarmerFactory()
    phone, tablet = login(api, farmer), login(api, farmer)

    response = change(phone)

    assert response.status_code == 200
    fresh = response.json()
    assert set(fresh) == {"access", "refresh"}
    farmer.refresh_from_db()
    assert farmer.check_password(NEW_PASSWORD)
    assert not farmer.check_password(PASSWORD)
    assert blacklisted() == sorted([jti(phone["refresh"]), jti(tablet["refresh"])])
    assert OutstandingToken.objects.filter(jti=jti(fresh["refresh"]), user=farmer).exists()
    # every older refresh token is revoked, every older access token refused
    for old in (phone, tablet):
        assert refresh_answer(old["refresh"]) == (401, "token_not_valid")
        assert me_answer(old["access"]) == (401, "password_changed")
    # the pair answered works, and so does a login with the new password only
    assert me_answer(fresh["access"]) == (200, None)
    refreshed = APIClient().post(REFRESH, {"refresh": fresh["refresh"]}, format="json")
    assert me_answer(refreshed.json()["access"]) == (200, None)
    wrong = api.post(TOKEN, {"phone": farmer.phone, "password": PASSWORD}, format="json")
    assert wrong.status_code == 401
    right = api.post(TOKEN, {"phone": farmer.phone, "password": NEW_PASSWORD}, format="json")
    assert right.status_code == 200


def test_another_users_tokens_are_untouched(api):
    farmer, neighbour = FarmerFactory(), FarmerFactory()
    kept = login(api, neighbour)
    assert change(login(api, farmer)).status_code == 200
    assert refresh_answer(kept["refresh"]) == (200, None)
    assert me_answer(kept["access"]) == (200, None)
    assert not BlacklistedToken.objects.filter(token__user=neighbour).exists()


def assert_nothing_changed(user: User, tokens: dict) -> None:
    stored = User.objects.get(pk=user.pk).password
    assert stored == user.password  # not even re-hashed
    assert blacklisted() == []
    assert refresh_answer(tokens["refresh"]) == (200, None)
    assert me_answer(tokens["access"]) == (200, None)


def test_a_wrong_current_password_is_400_naming_the_field_and_changes_nothing(api):
    farmer = FarmerFactory()
    tokens = login(api, farmer)

    response = change(tokens, current="a-wrong-guess")

    assert response.status_code == 400
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "code": "wrong_password",
        "detail": "The current password is not correct.",
        "field": "current_password",
        "errors": [  # as a validation error names its fields
            {
                "field": "current_password",
                "code": "wrong_password",
                "detail": "The current password is not correct.",
            }
        ],
    }
    assert_nothing_changed(farmer, tokens)
    attempt = AccessAttempt.objects.get()  # counted as a failed login of this phone
    assert (attempt.username, attempt.failures_since_start) == (farmer.phone, 1)


def test_wrong_current_passwords_and_failed_logins_count_together_towards_the_lockout(
    api, settings
):
    settings.AXES_FAILURE_LIMIT = 3
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    codes = [change(tokens, current=f"guess-{n}").status_code for n in range(2)]
    assert codes == [400, 400]
    bad_login = {"phone": farmer.phone, "password": "guess-2"}
    assert api.post(TOKEN, bad_login, format="json").status_code == 429  # the third failure

    locked = change(tokens)  # the right password, while locked out

    assert locked.status_code == 429
    assert locked.json()["code"] == "too_many_login_attempts"
    assert_nothing_changed(farmer, tokens)


def test_a_locked_out_login_locks_the_password_change_too(api, settings):
    """A stolen access token is no way around the login's limit on guessing."""
    settings.AXES_FAILURE_LIMIT = 2
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    for n in range(2):
        api.post(TOKEN, {"phone": farmer.phone, "password": f"guess-{n}"}, format="json")

    codes = [change(tokens, current=guess).status_code for guess in ("guess-2", PASSWORD)]
    assert codes == [429, 429]
    assert_nothing_changed(farmer, tokens)


@pytest.mark.parametrize(
    ("new", "detail"),
    [
        (
            "12345",
            (
                "This password is too short. It must contain at least 8 characters. "
                "This password is too common. This password is entirely numeric."
            ),
        ),
        ("password", "This password is too common."),
        ("+8613912340001", "The password is too similar to the phone."),
    ],
)
def test_a_new_password_the_validators_refuse_is_400_naming_the_field_and_changes_nothing(
    api, new, detail
):
    farmer = FarmerFactory(phone="+8613912340001")
    tokens = login(api, farmer)

    response = change(tokens, new=new)

    assert response.status_code == 400
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "code": "weak_password",
        "detail": detail,
        "field": "new_password",
        "errors": [{"field": "new_password", "code": "weak_password", "detail": detail}],
    }
    assert_nothing_changed(farmer, tokens)
    assert not AccessAttempt.objects.exists()  # the current password was right


def test_the_current_password_as_the_new_one_is_400_and_changes_nothing(api):
    farmer = FarmerFactory(phone="+8613912340002")
    tokens = login(api, farmer)

    response = change(tokens, new=PASSWORD)

    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == (
        "password_unchanged",
        "new_password",
    )
    assert_nothing_changed(farmer, tokens)
    assert not AccessAttempt.objects.exists()


def test_missing_passwords_are_400_naming_the_fields_and_count_as_no_attempt(api):
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    response = device(tokens).post(PASSWORD_CHANGE, {}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"] == [
        {"field": "current_password", "code": "required", "detail": "This field is required."},
        {"field": "new_password", "code": "required", "detail": "This field is required."},
    ]
    assert not AccessAttempt.objects.exists()
    assert_nothing_changed(farmer, tokens)


def test_a_form_encoded_change_logs_no_password_with_its_failed_attempt(api):
    """django-axes logs the form data of a failed attempt; it masks "password" only, unless
    told which other fields are passwords."""
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    body = {"current_password": "a-wrong-guess", "new_password": NEW_PASSWORD}
    response = device(tokens).post(PASSWORD_CHANGE, body, format="multipart")
    assert response.status_code == 400
    logged = AccessAttempt.objects.get().post_data
    assert "current_password=********************" in logged
    assert "a-wrong-guess" not in logged
    assert NEW_PASSWORD not in logged


def test_without_a_token_it_is_401_and_changes_nothing(api):
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    response = api.post(PASSWORD_CHANGE, body, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert_nothing_changed(farmer, tokens)


def test_a_retry_of_a_change_that_went_through_is_401_and_changes_nothing_twice(api):
    """Not kept under its Idempotency-Key (the answer is a live token pair, the body two
    passwords): the retry runs again, and the old access token it carries is refused."""
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    first = change(tokens, HTTP_IDEMPOTENCY_KEY="pw-1")
    assert first.status_code == 200
    after_first = User.objects.get(pk=farmer.pk).password

    retried = change(tokens, HTTP_IDEMPOTENCY_KEY="pw-1")

    assert retried.status_code == 401
    assert retried.json()["code"] == "password_changed"
    assert "Idempotent-Replayed" not in retried
    assert not IdempotencyRecord.objects.exists()
    assert User.objects.get(pk=farmer.pk).password == after_first
    assert blacklisted() == [jti(tokens["refresh"])]  # the first pair's refresh is live
    assert me_answer(first.json()["access"]) == (200, None)


def test_no_answer_of_a_password_change_is_kept_under_an_idempotency_key(api):
    farmer = FarmerFactory()
    tokens = login(api, farmer)
    wrong = change(tokens, current="a-wrong-guess", HTTP_IDEMPOTENCY_KEY="pw-2")
    weak = change(tokens, new="12345", HTTP_IDEMPOTENCY_KEY="pw-3")
    assert (wrong.status_code, weak.status_code) == (400, 400)
    assert not IdempotencyRecord.objects.exists()
    assert_nothing_changed(farmer, tokens)


@pytest.mark.django_db(transaction=True)
def test_of_two_changes_at_once_one_goes_through_and_the_other_is_wrong_password():
    """Both check the current password before either sets a new one; the second to take the
    row's lock finds a password other than the one it checked, and sets none."""
    farmer = FarmerFactory()
    api = APIClient()
    phone, tablet = login(api, farmer), login(api, farmer)
    with transaction.atomic():
        User.objects.select_for_update().get(pk=farmer.pk)
        runs = [
            in_thread(lambda tokens=tokens, new=new: change(tokens, new=new))
            for tokens, new in ((phone, "phone-passphrase-1"), (tablet, "tablet-passphrase-2"))
        ]
        assert wait_for_lock_waiters(2) == 2
    for thread, _ in runs:
        thread.join()

    answers = {new: box[0] for (_, box), new in zip(runs, ("phone", "tablet"), strict=True)}
    assert sorted(answer.status_code for answer in answers.values()) == [200, 400]
    winner = next(new for new, answer in answers.items() if answer.status_code == 200)
    loser = next(answer for answer in answers.values() if answer.status_code == 400)
    assert loser.json()["code"] == "wrong_password"
    stored = User.objects.get(pk=farmer.pk)
    passphrase = {"phone": "phone-passphrase-1", "tablet": "tablet-passphrase-2"}
    assert stored.check_password(passphrase[winner])
    assert me_answer(answers[winner].json()["access"]) == (200, None)
    assert refresh_answer(answers[winner].json()["refresh"]) == (200, None)


@pytest.mark.django_db(transaction=True)
def test_a_change_does_not_wait_for_a_write_that_points_to_the_user():
    """A row written that refers to the user (an order placed, a notification stored) takes a
    KEY SHARE lock on the user's row when its foreign key is checked (at its commit, or at
    once with the constraints immediate, as here to hold it): the change's own lock of that
    row must not wait for it (nor it for the change, which hashes a password meanwhile), as
    it changes no key."""
    farmer = FarmerFactory()
    phone = login(APIClient(), farmer)
    written, release = threading.Event(), threading.Event()

    def write_a_notification_and_hold():
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            Notification.objects.create(user=farmer, kind="order_placed", title="t", body="b")
            written.set()
            release.wait(timeout=10)

    holder, box = in_thread(write_a_notification_and_hold)
    assert written.wait(timeout=10)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            services.user_change_password(
                user=User.objects.get(pk=farmer.pk), new_password=NEW_PASSWORD
            )
    finally:
        release.set()
        holder.join()
    assert box == [None]
    assert User.objects.get(pk=farmer.pk).check_password(NEW_PASSWORD)
    assert refresh_answer(phone["refresh"])[0] == 401


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
    # the access tokens issued before are refused at once, this device's too
    assert me_answer(phone["access"]) == me_answer(tablet["access"]) == (401, "signed_out")
    assert me_answer(kept["access"]) == (200, None)
    assert User.objects.get(pk=farmer.pk).password == farmer.password
    fresh = api.post(TOKEN, {"phone": farmer.phone, "password": PASSWORD}, format="json")
    assert refresh_answer(fresh.json()["refresh"]) == (200, None)  # a new login works
    assert me_answer(fresh.json()["access"]) == (200, None)


def test_logout_all_again_is_204_and_revokes_nothing_more(api):
    farmer = FarmerFactory()
    phone, tablet = login(api, farmer), login(api, farmer)
    first = device(phone).post(LOGOUT_ALL)
    revoked = blacklisted()
    # retried without a key, with the token the first refused: 401, and that says it is done
    retried = device(phone).post(LOGOUT_ALL)
    assert (first.status_code, retried.status_code) == (204, 401)
    assert retried.json()["code"] == "signed_out"
    assert blacklisted() == revoked == sorted(jti(t["refresh"]) for t in (phone, tablet))
    assert User.objects.get(pk=farmer.pk).sign_outs == 1
    again = login(api, farmer)
    assert device(again).post(LOGOUT_ALL).status_code == 204  # a later sign-out is one more
    assert User.objects.get(pk=farmer.pk).sign_outs == 2


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


def test_the_schema_shows_both_endpoints_signed_in_with_what_they_take_and_answer(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    def component(ref: dict) -> dict:
        return components[ref["$ref"].rsplit("/", 1)[1]]

    password = schema["paths"][PASSWORD_CHANGE]["post"]
    body = component(password["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["properties"]) == {"current_password", "new_password"}
    assert all(field["writeOnly"] for field in body["properties"].values())
    assert set(body["required"]) == {"current_password", "new_password"}
    assert set(password["responses"]) == {"200", "400", "401", "413", "415", "429"}
    answer = password["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(component(answer)["properties"]) == {"access", "refresh"}
    refused = password["responses"]["400"]["description"]
    assert all(code in refused for code in ("wrong_password", "weak_password"))
    assert "too_many_login_attempts" in password["responses"]["429"]["description"]

    logout_all = schema["paths"][LOGOUT_ALL]["post"]
    assert "requestBody" not in logout_all
    assert set(logout_all["responses"]) == {"204", "400", "401", "409", "422"}
    assert "content" not in logout_all["responses"]["204"]
    for operation in (password, logout_all):
        assert operation["security"] == [{"jwtAuth": []}]
