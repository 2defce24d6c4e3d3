"""A farmer's edit of a listing sent with If-Match, the ETag of the listing as the farmer
last read it: refused (412 precondition_failed) when the listing changed since, checked
under the listing's row lock, so an edit from the farmer's other phone is never lost."""

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from listings.models import Listing
from tests.factories import FarmerFactory, create_listing
from tests.listings.test_photos import wait_for_lock_waiters
from tests.orders.test_payments import in_thread

LISTINGS = "/api/v1/listings/"


def snapshot(listing):
    return Listing.objects.filter(pk=listing.pk).values().get()


def read_etag(client, listing, **headers) -> str:
    response = client.get(f"{LISTINGS}{listing.pk}/", **headers)
    assert response.status_code == 200
    return response["ETag"]


def assert_precondition_failed(response, listing) -> None:
    assert response.status_code == 412, response.content
    body = response.json()
    assert (body["code"], body["etag"]) == ("precondition_failed", read_etag_now(listing))


def read_etag_now(listing) -> str:
    client = APIClient()
    client.force_authenticate(listing.farmer)
    return read_etag(client, listing)


@pytest.mark.django_db
def test_an_edit_with_the_etag_read_before_another_edit_is_412_and_changes_nothing(client_for):
    farmer = FarmerFactory()
    listing = create_listing(farmer, title="西红柿")
    phone, other_phone = client_for(farmer), client_for(farmer)
    seen = read_etag(phone, listing)
    changed = other_phone.patch(f"{LISTINGS}{listing.pk}/", {"price": "9.00"}, format="json")
    assert changed.status_code == 200
    before = snapshot(listing)

    for stale in (
        phone.patch(
            f"{LISTINGS}{listing.pk}/", {"title": "番茄"}, format="json", HTTP_IF_MATCH=seen
        ),
        phone.delete(f"{LISTINGS}{listing.pk}/", HTTP_IF_MATCH=seen),
        phone.post(f"{LISTINGS}{listing.pk}/pause/", HTTP_IF_MATCH=seen),
        phone.patch(
            f"{LISTINGS}{listing.pk}/", {"title": "番茄"}, format="json", HTTP_IF_MATCH='"x", bad'
        ),
    ):
        assert_precondition_failed(stale, listing)
    assert snapshot(listing) == before


@pytest.mark.django_db
def test_an_edit_with_the_current_etag_weak_or_strong_or_any_is_made(client_for):
    farmer = FarmerFactory()
    listing = create_listing(farmer, title="西红柿")
    phone = client_for(farmer)
    url = f"{LISTINGS}{listing.pk}/"
    strong = read_etag(phone, listing)
    assert not strong.startswith("W/")
    made = phone.patch(url, {"title": "番茄"}, format="json", HTTP_IF_MATCH=strong)
    assert (made.status_code, made.json()["title"]) == (200, "番茄")
    # gzipped, as a phone reads it: the same body's tag, marked weak by the compression
    weak = read_etag(phone, listing, HTTP_ACCEPT_ENCODING="gzip")
    assert weak.startswith('W/"')
    made = phone.patch(url, {"title": "大番茄"}, format="json", HTTP_IF_MATCH=f'"old", {weak}')
    assert (made.status_code, made.json()["title"]) == (200, "大番茄")
    made = phone.patch(url, {"title": "小番茄"}, format="json", HTTP_IF_MATCH="*")
    assert (made.status_code, made.json()["title"]) == (200, "小番茄")
    assert phone.post(f"{url}pause/", HTTP_IF_MATCH=read_etag(phone, listing)).status_code == 200
    assert phone.delete(url, HTTP_IF_MATCH=read_etag(phone, listing)).status_code == 204


@pytest.mark.django_db(transaction=True)
def test_an_edit_waiting_for_another_phones_edit_is_checked_after_it(client_for):
    """The other phone's edit holds the listing's row lock when this one arrives with the
    ETag both read: checked before the lock, it would pass and write over the other."""
    farmer = FarmerFactory()
    listing = create_listing(farmer, title="西红柿")
    phone = client_for(farmer)
    seen = read_etag(phone, listing)

    with transaction.atomic():
        locked = Listing.objects.select_for_update().get(pk=listing.pk)
        thread, box = in_thread(
            lambda: phone.patch(
                f"{LISTINGS}{listing.pk}/", {"title": "番茄"}, format="json", HTTP_IF_MATCH=seen
            )
        )
        waiting = wait_for_lock_waiters(1)
        Listing.objects.filter(pk=locked.pk).update(title="樱桃番茄")
    thread.join()

    assert waiting == 1, "the edit did not wait for the listing's row lock"
    assert_precondition_failed(box[0], listing)
    assert Listing.objects.get(pk=listing.pk).title == "樱桃番茄"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "suffix", "body", "status"),
    [
        ("patch", "", {"title": "新西红柿"}, 200),
        ("post", "pause/", None, 200),
        ("delete", "", None, 204),
    ],
)
def test_a_retry_of_an_edit_made_with_if_match_replays_its_answer_not_412(
    client_for, method, suffix, body, status
):
    """The edit went through and changed the ETag; its retry under the same Idempotency-Key
    carries the ETag it was sent with: it is answered as the first time, not 412."""
    farmer = FarmerFactory()
    listing = create_listing(farmer)
    client = client_for(farmer)
    url = f"{LISTINGS}{listing.pk}/{suffix}"
    etag = read_etag(client, listing)

    def send():
        return getattr(client, method)(
            url, body, format="json", HTTP_IF_MATCH=etag, HTTP_IDEMPOTENCY_KEY="edit-1"
        )

    first = send()
    after = Listing.objects.filter(pk=listing.pk).values().first()
    again = send()

    assert (first.status_code, again.status_code) == (status, status)
    assert (again.content, again["Idempotent-Replayed"]) == (first.content, "true")
    assert Listing.objects.filter(pk=listing.pk).values().first() == after
