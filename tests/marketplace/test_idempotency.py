"""Idempotency-Key on every POST, PATCH and DELETE: replay, mismatch, scope, concurrency,
atomicity, expiry."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from listings.api import views as listing_views
from listings.models import Listing
from marketplace.accounts.models import User
from marketplace.accounts.tokens import RefreshToken as SessionRefreshToken
from marketplace.api.models import IdempotencyRecord
from marketplace.tasks import prune_idempotency_records
from orders.models import Order
from tests.factories import PASSWORD, BuyerFactory, FarmerFactory, create_listing, place_order

LISTINGS = "/api/v1/listings/"
ORDERS = "/api/v1/orders/"
LOGOUT = "/api/v1/auth/logout/"
LOGOUT_ALL = "/api/v1/auth/logout-all/"


def body(**overrides):
    return {
        "category": "vegetables",
        "title": "小白菜",
        "unit": "jin",
        "price": "2.50",
        "quantity_available": "50",
        "harvest_date": str(timezone.localdate()),
        "shelf_life_days": 5,
        **overrides,
    }


def signed_in(user, **kwargs) -> APIClient:
    client = APIClient(**kwargs)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.mark.django_db
def test_a_retry_replays_the_first_answer_and_acts_once():
    client = signed_in(FarmerFactory())
    first = client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    retry = client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert retry["Content-Type"] == first["Content-Type"] == "application/json"
    assert Listing.objects.count() == 1

    record = IdempotencyRecord.objects.get()
    assert (record.user_id, record.key, record.status_code, record.content_type) == (
        Listing.objects.get().farmer_id,
        "k-1",
        201,
        "application/json",
    )
    assert bytes(record.body) == first.content
    assert len(record.fingerprint) == 64
    assert record.expires_at - record.created_at == timedelta(hours=24)


@pytest.mark.django_db
def test_same_key_different_body_is_422_and_changes_nothing():
    client = signed_in(FarmerFactory())
    client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    other = client.post(LISTINGS, body(price="9.00"), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert list(Listing.objects.values_list("price", flat=True)) == [pytest.approx(2.5)]


@pytest.mark.django_db
def test_the_same_json_in_another_key_order_or_spacing_is_the_same_body():
    """A phone app that serializes its map again after a restart may send the keys in
    another order, or spaced otherwise: what the body says decides, not its bytes."""
    client = signed_in(FarmerFactory())
    first = client.post(
        LISTINGS, json.dumps(body()), content_type="application/json", HTTP_IDEMPOTENCY_KEY="j"
    )
    reordered = json.dumps(dict(reversed(body().items())), indent=2, ensure_ascii=True)
    retry = client.post(
        LISTINGS, reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="j"
    )
    assert (first.status_code, retry.status_code, retry["Idempotent-Replayed"]) == (
        201,
        201,
        "true",
    )
    assert retry.content == first.content
    other = client.post(
        LISTINGS,
        json.dumps(body(price="2.5")),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="j",
    )
    assert other.status_code == 422  # 2.5 is not what 2.50 was written as: another body
    assert Listing.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000])
def test_a_body_that_is_no_json_is_answered_400_and_replayed_by_its_bytes(raw):
    client = signed_in(FarmerFactory())
    answers = [
        client.post(LISTINGS, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="n")
        for _ in range(2)
    ]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(400, "parse_error")] * 2
    assert answers[1]["Idempotent-Replayed"] == "true"
    assert not Listing.objects.exists()


@pytest.mark.django_db
def test_a_number_and_the_string_of_it_are_not_the_same_body():
    """`"1.0"` is no boolean to the view, `1.0` is: the corrected retry under the same key
    is another body (422), not the stored 400 again."""
    client = signed_in(FarmerFactory())

    def send(organic):
        raw = json.dumps(body(is_organic=organic))
        return client.post(
            LISTINGS, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="organic"
        )

    assert send("1.0").status_code == 400
    fixed = send(1.0)
    assert (fixed.status_code, "Idempotent-Replayed" in fixed) == (422, False)
    assert not Listing.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "encode",
    [lambda text: text.encode("utf-16"), lambda text: b"\xef\xbb\xbf" + text.encode()],
    ids=["utf-16", "utf-8-bom"],
)
def test_a_body_the_view_cannot_read_is_not_the_same_as_the_readable_one(encode):
    client = signed_in(FarmerFactory())
    text = json.dumps(body())
    refused = client.post(
        LISTINGS, encode(text), content_type="application/json", HTTP_IDEMPOTENCY_KEY="enc"
    )
    fixed = client.post(
        LISTINGS, text.encode(), content_type="application/json", HTTP_IDEMPOTENCY_KEY="enc"
    )
    assert (refused.status_code, fixed.status_code) == (400, 422)
    assert not Listing.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", [None, "huge"])
def test_a_number_beyond_any_range_is_the_views_400_with_or_without_a_key(key):
    client = signed_in(FarmerFactory())
    text = json.dumps(body(price="PRICE")).replace('"PRICE"', "1e9999999999999999999999")
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = client.post(LISTINGS, text, content_type="application/json", **headers)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "price")
    assert not Listing.objects.exists()


@pytest.mark.django_db
def test_a_multipart_patch_with_another_body_under_the_same_key_is_422():
    """Django parses a multipart body for a POST only: another method's is compared by its
    bytes."""
    farmer = FarmerFactory()
    listing = create_listing(farmer)
    client, url = signed_in(farmer), f"{LISTINGS}{listing.pk}/"
    first = client.patch(url, {"title": "Bok choy"}, format="multipart", HTTP_IDEMPOTENCY_KEY="m")
    other = client.patch(url, {"title": "Spinach"}, format="multipart", HTTP_IDEMPOTENCY_KEY="m")
    assert (first.status_code, other.status_code) == (200, 422)
    assert Listing.objects.get(pk=listing.pk).title == "Bok choy"


@pytest.mark.django_db
@pytest.mark.parametrize("key", [None, "no-boundary"])
def test_a_multipart_body_without_a_boundary_is_the_views_parse_error_with_or_without_a_key(
    key,
):
    farmer = FarmerFactory()
    listing = create_listing(farmer)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = signed_in(farmer).post(
        f"{LISTINGS}{listing.pk}/photos/",
        b"--x\r\nContent-Disposition: form-data; name=image\r\n\r\nab\r\n--x--\r\n",
        content_type="multipart/form-data",
        **headers,
    )
    assert (response.status_code, response.json()["code"]) == (400, "parse_error")
    assert response.json()["detail"].endswith("Invalid boundary in multipart: None")
    assert not listing.photos.exists()


@pytest.mark.django_db
def test_a_method_the_endpoint_does_not_take_is_405_whatever_its_key_says():
    """A key already used for the cancel, sent with a PUT (which the cancel does not take):
    405, not 422 for a different request; and the 405 is not stored, as nothing ran."""
    buyer = BuyerFactory()
    order = place_order(buyer, (create_listing(), 1))
    client, url = signed_in(buyer), f"{ORDERS}{order.pk}/cancel/"
    assert client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="c").status_code == 200
    put = client.put(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="c")
    assert (put.status_code, put.json()["code"]) == (405, "method_not_allowed")
    again = client.put(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="fresh")
    assert (again.status_code, "Idempotent-Replayed" in again) == (405, False)
    assert not IdempotencyRecord.objects.filter(key="fresh").exists()


@pytest.mark.django_db
def test_a_path_no_view_answers_is_404_whatever_its_key_and_the_key_stays_free():
    """A cancel posted without its final slash is redirected to the slashed path (Django's
    APPEND_SLASH, from the 404 answered under it): nothing ran there, so nothing is stored,
    and the same request sent to the slashed path with the same key cancels the order,
    rather than 422 for a key "used" by the path that does not exist."""
    buyer = BuyerFactory()
    order = place_order(buyer, (create_listing(), 1))
    client, url = signed_in(buyer), f"{ORDERS}{order.pk}/cancel/"
    slashless = client.post(url.rstrip("/"), {}, format="json", HTTP_IDEMPOTENCY_KEY="s")
    assert (slashless.status_code, slashless["Location"]) == (301, url)
    nowhere = client.post("/api/v1/nowhere/", {}, format="json", HTTP_IDEMPOTENCY_KEY="n")
    assert (nowhere.status_code, nowhere.json()["code"]) == (404, "not_found")
    assert not IdempotencyRecord.objects.exists()
    assert Order.objects.get(pk=order.pk).status == "placed"

    cancelled = client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="s")

    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert Order.objects.get(pk=order.pk).status == "cancelled"


@pytest.mark.django_db
def test_a_request_refused_for_its_media_type_runs_under_its_key_once_sent_as_json():
    """Nothing ran for the 415: the same bytes sent again as JSON under the same key are
    placed, not answered the stored 415 for a day."""
    client = signed_in(FarmerFactory())
    raw = json.dumps(body())
    refused = client.post(LISTINGS, raw, content_type="text/plain", HTTP_IDEMPOTENCY_KEY="t")
    placed = client.post(LISTINGS, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="t")
    assert (refused.status_code, placed.status_code) == (415, 201)
    assert "Idempotent-Replayed" not in placed
    assert Listing.objects.count() == 1


@pytest.mark.django_db
def test_a_stock_patch_retried_with_its_key_after_an_order_leaves_the_order_its_stock():
    """The farmer sets the stock to 10; the answer is lost; a buyer orders 3; the phone
    sends the same PATCH with its key again: answered as the first, and 7 stay on sale."""
    farmer = FarmerFactory()
    listing = create_listing(farmer, unit="kg", quantity_available=4)
    client, url = signed_in(farmer), f"{LISTINGS}{listing.pk}/"
    first = client.patch(url, {"quantity_available": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="s")
    place_order(BuyerFactory(), (listing, 3))

    retry = client.patch(url, {"quantity_available": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="s")

    assert (first.status_code, retry.status_code, retry["Idempotent-Replayed"]) == (
        200,
        200,
        "true",
    )
    assert retry.content == first.content
    assert Listing.objects.get(pk=listing.pk).quantity_available == 7
    changed = client.patch(
        url, {"quantity_available": "9"}, format="json", HTTP_IDEMPOTENCY_KEY="s"
    )
    assert changed.status_code == 422


@pytest.mark.django_db
def test_a_delete_retried_with_its_key_gets_its_204_again():
    farmer = FarmerFactory()
    listing = create_listing(farmer)
    client, url = signed_in(farmer), f"{LISTINGS}{listing.pk}/"
    answers = [client.delete(url, HTTP_IDEMPOTENCY_KEY="d") for _ in range(2)]
    assert [a.status_code for a in answers] == [204, 204]
    assert answers[1]["Idempotent-Replayed"] == "true"
    assert client.delete(url).status_code == 404  # without its key: gone, as HTTP says
    assert not Listing.objects.exists()


@pytest.mark.django_db
def test_the_key_is_scoped_to_the_user():
    first, second = FarmerFactory(), FarmerFactory()
    a = signed_in(first).post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    b = signed_in(second).post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b
    assert a.json()["id"] != b.json()["id"]
    assert sorted(Listing.objects.values_list("farmer_id", flat=True)) == [first.pk, second.pk]


@pytest.mark.django_db
def test_validation_errors_are_replayed_too_and_a_new_key_runs_again():
    client = signed_in(FarmerFactory())
    bad = body(price="0")
    assert client.post(LISTINGS, bad, format="json", HTTP_IDEMPOTENCY_KEY="k-3").status_code == 400
    again = client.post(LISTINGS, bad, format="json", HTTP_IDEMPOTENCY_KEY="k-3")
    assert (again.status_code, again["Idempotent-Replayed"]) == (400, "true")
    assert not Listing.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "非ascii"])
def test_a_malformed_key_is_400(key):
    client = signed_in(FarmerFactory())
    response = client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert not Listing.objects.exists()


@pytest.mark.django_db
def test_without_a_token_the_view_answers_401_and_nothing_is_stored(api):
    response = api.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-4")
    assert response.status_code == 401
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_a_role_refused_is_403_and_nothing_is_stored_under_its_key():
    """A buyer's listing is 403 (a farmer's action): no answer is kept under the key."""
    response = signed_in(BuyerFactory()).post(
        LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-403"
    )
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert not IdempotencyRecord.objects.exists()
    assert not Listing.objects.exists()


@pytest.mark.django_db
def test_a_crash_after_the_effect_undoes_it_so_the_retry_runs_afresh(monkeypatch):
    """The effect and the record share one transaction: a 500 after the listing was
    written leaves neither, and the retry then creates exactly one."""
    farmer = FarmerFactory()
    client = signed_in(farmer, raise_request_exception=False)
    real_detail = listing_views.ListingViewSet._detail

    def crash(self, listing, status_code=200):
        raise RuntimeError("the process died before answering")

    monkeypatch.setattr(listing_views.ListingViewSet, "_detail", crash)
    failed = client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    assert failed.status_code == 500
    assert not Listing.objects.exists()
    assert not IdempotencyRecord.objects.exists()

    monkeypatch.setattr(listing_views.ListingViewSet, "_detail", real_detail)
    retried = client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert Listing.objects.count() == 1


@pytest.mark.django_db
def test_expired_keys_run_again_and_are_pruned():
    client = signed_in(FarmerFactory())
    client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-6")
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    again = client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="k-6")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert Listing.objects.count() == 2

    record = IdempotencyRecord.objects.get()
    assert record.expires_at > timezone.now() + timedelta(hours=23)
    IdempotencyRecord.objects.create(
        user=record.user,
        key="old",
        fingerprint="x",
        status_code=201,
        content_type="application/json",
        body=b"{}",
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    assert prune_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-6"]


@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_requests_with_one_key_act_once():
    farmer = FarmerFactory()
    token = str(RefreshToken.for_user(farmer).access_token)
    barrier = threading.Barrier(20)
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def send():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            response = client.post(LISTINGS, body(), format="json", HTTP_IDEMPOTENCY_KEY="race")
            with lock:
                results.append((response.status_code, response.has_header("Idempotent-Replayed")))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 20
    assert Listing.objects.count() == 1
    fresh = [r for r in results if r == (201, False)]
    assert len(fresh) == 1
    assert all(r in {(201, True), (409, False)} for r in results if r != (201, False))


@pytest.mark.django_db(transaction=True)
def test_a_key_sent_to_an_anonymous_view_is_ignored_whatever_token_comes_along():
    """Log in, refresh and sign up read no bearer token: a key sent to them with a token
    beside it (an app that adds its token to every request) has no owner. Nothing is
    stored (their answers are live token pairs), and the token of a user deleted since
    is no 500 (the record's insert would fail at COMMIT)."""
    farmer, gone = FarmerFactory(), FarmerFactory()
    stale = str(RefreshToken.for_user(gone).access_token)
    gone.delete()
    for token in (str(RefreshToken.for_user(farmer).access_token), stale):
        client = APIClient(raise_request_exception=False)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        login = client.post(
            "/api/v1/auth/token/",
            {"phone": farmer.phone, "password": PASSWORD},
            format="json",
            HTTP_IDEMPOTENCY_KEY="login-1",
        )
        assert login.status_code == 200, login.content
        assert "Idempotent-Replayed" not in login
        refresh = client.post(
            "/api/v1/auth/token/refresh/",
            {"refresh": login.json()["refresh"]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="refresh-1",
        )
        assert refresh.status_code == 200, refresh.content
        signup = client.post(
            "/api/v1/auth/register/", {}, format="json", HTTP_IDEMPOTENCY_KEY="signup-1"
        )
        assert (signup.status_code, signup.json()["code"]) == (400, "validation_error")
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["logout", "logout_all", "deactivate", "new_password"])
def test_a_token_refused_since_gets_no_stored_answer_back(how):
    """A phone signed out (or whose owner changed the password, or was deactivated) after
    it placed an order under a key: its retry is 401 like any request of that token, not
    the order and its delivery code."""
    buyer = BuyerFactory()
    body = {
        "lines": [{"listing": create_listing().pk, "quantity": "1"}],
        "delivery_method": "home",
        "payment_method": "cod",
    }
    refresh = SessionRefreshToken.for_user(buyer)  # its access tokens name it (sid)
    lost_phone = APIClient()
    lost_phone.credentials(HTTP_AUTHORIZATION=f"Bearer {refresh.access_token}")
    first = lost_phone.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="place-1")
    assert first.status_code == 201
    assert first.json()["delivery_code"]
    if how == "logout":
        assert APIClient().post(LOGOUT, {"refresh": str(refresh)}).status_code == 204
    elif how == "logout_all":
        assert signed_in(buyer).post(LOGOUT_ALL).status_code == 204
    elif how == "deactivate":
        User.objects.filter(pk=buyer.pk).update(is_active=False)
    else:
        buyer.set_password("a-brand-new-passphrase")
        buyer.save()

    replay = lost_phone.post(ORDERS, body, format="json", HTTP_IDEMPOTENCY_KEY="place-1")

    assert replay.status_code == 401, replay.content
    assert b"delivery_code" not in replay.content
    assert lost_phone.get(ORDERS).status_code == 401
    assert Order.objects.count() == 1
