"""The listings admin: its pages render, and its actions go through listing_set_status."""

import shutil
from datetime import timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from PIL import Image

from listings import photos, services
from listings.models import Category, Listing, ListingStatus
from logistics.models import Shipment
from logistics.services.routing import order_route
from marketplace.accounts.models import User
from tests.factories import BuyerFactory, FarmerFactory, StaffFactory, place_order
from tests.listings.test_listings_write import ordering
from tests.listings.test_photos import wait_for_lock_waiters
from tests.orders.test_payments import in_thread

CHANGELIST = "/admin/listings/listing/"

pytestmark = pytest.mark.django_db


def make_listing(title: str = "Bok choy") -> Listing:
    return services.listing_create(
        farmer=FarmerFactory(),
        category=Category.objects.get(slug="vegetables"),
        title=title,
        unit="kg",
        price=Decimal("3.50"),
        quantity_available=Decimal("10"),
        harvest_date=timezone.localdate(),
        shelf_life_days=7,
    )


@pytest.fixture
def operator() -> Client:
    user = User.objects.create_superuser(
        phone="+8613000000001", password="an-operator-passphrase", name="op"
    )
    client = Client()
    # force_login: django-axes guards the login form and needs a request to authenticate.
    client.force_login(user)
    return client


def act(client: Client, action: str, *listings: Listing):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [listing.pk for listing in listings]},
        follow=True,
    )


@pytest.fixture
def listing_with_photo():
    listing = make_listing()
    buffer = BytesIO()
    Image.new("RGB", (640, 480), (0, 128, 0)).save(buffer, "JPEG")
    upload = SimpleUploadedFile("photo.jpg", buffer.getvalue(), content_type="image/jpeg")
    photo = photos.listing_photo_add(listing=listing, upload=upload)
    photos.listing_photo_make_thumbnail(photo=photo)
    yield listing
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "listings" / str(listing.pk), ignore_errors=True)


def test_the_pages_render(operator, listing_with_photo):
    listing = listing_with_photo
    assert operator.get(CHANGELIST).status_code == 200
    assert operator.get(CHANGELIST, {"q": "Bok", "status__exact": "active"}).status_code == 200
    page = operator.get(f"{CHANGELIST}{listing.pk}/change/")
    assert page.status_code == 200
    thumbnail = listing.photos.get().thumbnail
    assert f'<img src="{thumbnail.url}"'.encode() in page.content
    assert operator.get("/admin/listings/category/").status_code == 200
    assert operator.get(f"/admin/listings/category/{listing.category_id}/change/").status_code == (
        200
    )


def test_pause_action_pauses_an_active_listing(operator):
    listing = make_listing()

    response = act(operator, "pause", listing)

    assert response.status_code == 200
    listing.refresh_from_db()
    assert listing.status == ListingStatus.PAUSED
    assert [str(message) for message in get_messages(response.wsgi_request)] == [
        "1 listing(s) paused."
    ]


def test_a_refused_transition_is_reported_and_changes_nothing(operator):
    archived, active = make_listing("Leeks"), make_listing("Garlic")
    services.listing_set_status(listing=archived, status=ListingStatus.ARCHIVED)

    response = act(operator, "publish", archived, active)

    archived.refresh_from_db()
    active.refresh_from_db()
    assert (archived.status, active.status) == (ListingStatus.ARCHIVED, ListingStatus.ACTIVE)
    reported = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert [(level, text.split(":")[0]) for level, text in reported] == [
        ("error", "Leeks"),  # with the service's own explanation after the colon
        ("success", "1 listing(s) published."),  # the active one: nothing to do
    ]


def change_form(listing: Listing, **values) -> dict:
    return {
        "category": listing.category_id,
        "title": listing.title,
        "description": "",
        "unit": "kg",
        "unit_weight_kg": "1.000",
        "price": str(listing.price),
        "quantity_available": str(listing.quantity_available),
        "min_order_quantity": "1.000",
        "harvest_date": listing.harvest_date.isoformat(),
        "available_until": "",
        "shelf_life_days": "7",
        "photos-TOTAL_FORMS": "0",
        "photos-INITIAL_FORMS": "0",
        "photos-MIN_NUM_FORMS": "0",
        "photos-MAX_NUM_FORMS": "1000",
        **values,
    }


def test_an_edit_goes_through_the_service(operator):
    listing = make_listing()
    form = change_form(listing, title="Baby bok choy", price="4.20", quantity_available="0")

    response = operator.post(f"{CHANGELIST}{listing.pk}/change/", form)

    assert response.status_code == 302, response.content
    listing.refresh_from_db()
    assert (listing.title, listing.price) == ("Baby bok choy", Decimal("4.20"))
    # listing_update's rules ran: no stock left → sold out; the search text was rebuilt.
    assert listing.status == ListingStatus.SOLD_OUT
    assert "'baby'" in listing.search_vector


def test_a_page_saved_after_orders_took_stock_gives_none_of_it_back(operator):
    """The page showed 10 kg; a buyer orders 3; the operator fixes the title and saves (the
    form sends back every field as the page showed it): 7 kg stay on offer, not 10. A new
    stock typed on that page is refused, 7 kept: orders took some since it was shown."""
    listing = make_listing()
    page = f"{CHANGELIST}{listing.pk}/change/"
    shown = operator.get(page).content.decode()
    assert 'name="initial-quantity_available" value="10.000"' in shown
    form = change_form(listing, title="Baby bok choy")
    form["initial-quantity_available"] = "10.000"  # as the browser sends the page back
    place_order(BuyerFactory(), (listing, 3))

    saved = operator.post(page, form)

    assert saved.status_code == 302, saved.content
    listing.refresh_from_db()
    assert (listing.title, listing.quantity_available) == ("Baby bok choy", Decimal("7.000"))

    restocked = operator.post(page, {**form, "quantity_available": "12"}, follow=True)
    *_, (level, text) = [(m.level_tag, str(m)) for m in get_messages(restocked.wsgi_request)]
    assert (level, text.split(":")[0]) == ("error", "The stock is 7.000 now, not 10.000")
    listing.refresh_from_db()
    assert listing.quantity_available == Decimal("7.000")

    form["initial-quantity_available"] = "7.000"  # read again
    assert operator.post(page, {**form, "quantity_available": "12"}).status_code == 302
    listing.refresh_from_db()
    assert listing.quantity_available == Decimal("12.000")


def test_an_edit_the_service_refuses_is_reported_and_not_saved(operator):
    listing = make_listing()
    services.listing_set_status(listing=listing, status=ListingStatus.ARCHIVED)
    page = f"{CHANGELIST}{listing.pk}/change/"

    response = operator.post(page, change_form(listing, title="Renamed"), follow=True)

    assert response.redirect_chain == [(page, 302)]
    ((level, text),) = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert level == "error"
    assert "archived" in text  # the service's own explanation
    listing.refresh_from_db()
    assert listing.title == "Bok choy"


def test_deleting_in_the_admin_deletes_a_listing_nobody_ordered(operator):
    kept, deleted, also_deleted = make_listing("Leeks"), make_listing("Garlic"), make_listing()

    single = operator.post(f"{CHANGELIST}{deleted.pk}/delete/", {"post": "yes"}, follow=True)
    bulk = operator.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [also_deleted.pk], "post": "yes"},
    )

    assert single.status_code == 200
    assert bulk.status_code == 302
    assert list(Listing.objects.values_list("pk", flat=True)) == [kept.pk]
    logged = LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True)
    assert sorted(logged) == sorted([str(deleted.pk), str(also_deleted.pk)])
    confirm = operator.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [kept.pk]}
    )
    assert b"Are you sure" in confirm.content  # Django's confirmation page, nothing deleted
    assert list(Listing.objects.values_list("pk", flat=True)) == [kept.pk]


@pytest.mark.parametrize("may_delete_photos", [False, True])
def test_a_listing_with_photos_is_deleted_by_whoever_may_delete_photos_only(
    listing_with_photo, may_delete_photos
):
    """Its photos go with it: Django's rule for what a delete takes along (the delete
    page's, and its action's before it deletes) holds for the bulk action with `post` sent
    straight away too, which went through without asking."""
    listing = listing_with_photo
    staff = StaffFactory(service_center=listing.village.service_center, is_staff=True)
    codenames = ["view_listing", "delete_listing"]
    codenames += ["delete_listingphoto"] if may_delete_photos else []
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    bulk = {"action": "delete_selected", "_selected_action": [listing.pk], "post": "yes"}

    if not may_delete_photos:
        asked = client.post(CHANGELIST, {**bulk, "post": ""})  # the confirmation page says why
        assert set(asked.context["perms_lacking"]) == {"listing photo"}
        assert client.post(CHANGELIST, bulk).status_code == 403
        assert client.post(f"{CHANGELIST}{listing.pk}/delete/", {"post": "yes"}).status_code == 403
        assert listing.photos.count() == 1
        assert Listing.objects.filter(pk=listing.pk).exists()
        assert not LogEntry.objects.exists()
    else:
        assert client.post(CHANGELIST, bulk).status_code == 302
        assert not Listing.objects.filter(pk=listing.pk).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["single", "bulk"])
def test_a_listing_ordered_while_the_admin_deletes_it_is_archived_instead(operator, how):
    listing = make_listing()
    if how == "single":
        url, form = f"{CHANGELIST}{listing.pk}/delete/", {"post": "yes"}
    else:
        form = {"action": "delete_selected", "_selected_action": [listing.pk], "post": "yes"}
        url = CHANGELIST
    with ordering(listing):
        deleting, answer = in_thread(lambda: operator.post(url, form, follow=True))
        assert wait_for_lock_waiters(1) == 1
    deleting.join(timeout=30)

    [response] = answer
    assert response.status_code == 200, response
    listing.refresh_from_db()
    assert (listing.status, listing.quantity_available) == (ListingStatus.ARCHIVED, Decimal(8))
    told = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert told == [("warning", f"{listing}: ordered meanwhile, so archived instead of deleted.")]
    # the bulk action logs only what it deleted (the single delete view logs before it asks)
    assert LogEntry.objects.filter(action_flag=DELETION).count() == (1 if how == "single" else 0)


def test_a_deactivated_farmers_listing_is_not_put_back_on_sale(operator):
    """A farmer an operator deactivated has their listings paused (listings_pause_for_farmer):
    nobody would hand the goods over. Publishing one from the admin is refused with the
    service's reason, and buyers still cannot order it."""
    listing = make_listing("Leeks")
    farmer = listing.farmer
    User.objects.filter(pk=farmer.pk).update(is_active=False)
    services.listings_pause_for_farmer(farmer=farmer)

    response = act(operator, "publish", listing)

    listing.refresh_from_db()
    assert listing.status == ListingStatus.PAUSED
    reported = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert [(level, text.split(":")[0]) for level, text in reported] == [("error", "Leeks")]
    assert User.objects.filter(pk=farmer.pk, is_active=False).exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("harvest_date", "2062-11-30"),  # a typo for 2026: picked up in 2062
        ("harvest_date", "9999-12-31"),  # its goods would spoil past the last date: a 500
        ("quantity_available", "999999999"),
        ("min_order_quantity", "5000000"),
        ("shelf_life_days", "30000"),
    ],
)
def test_an_edit_the_api_would_refuse_is_a_form_error_and_not_saved(operator, field, value):
    """The admin's form checked only the columns: a harvest years away, a billion in stock,
    a shelf life of 80 years went in where a farmer's PATCH is 400. Its changed fields are
    checked by the API's rules now (ListingWriteSerializer), and nothing is saved."""
    listing = make_listing()
    before = Listing.objects.filter(pk=listing.pk).values().get()

    response = operator.post(
        f"{CHANGELIST}{listing.pk}/change/", change_form(listing, **{field: value})
    )

    assert response.status_code == 200  # the form again, with the error
    assert list(response.context["adminform"].form.errors) == [field]
    assert Listing.objects.filter(pk=listing.pk).values().get() == before


def test_a_harvest_moved_past_a_pickup_day_is_a_form_error_and_not_saved(operator):
    """As a farmer's PATCH is 409 `harvest_after_pickup`: goods routed have their pickup
    day before the new harvest. The form says why, on the harvest date, and saves nothing;
    a harvest on the pickup day is saved. (A harvest still ahead: once it is in, a later
    date is the listing's next harvest, and the goods ordered are in hand.)"""
    listing = services.listing_update(
        listing=make_listing(), harvest_date=timezone.localdate() + timedelta(days=2)
    )
    order = order_route(order_id=place_order(BuyerFactory(village=listing.village), listing).pk)
    pickup = Shipment.objects.get(order=order).pickup_date
    before = Listing.objects.filter(pk=listing.pk).values().get()
    page = f"{CHANGELIST}{listing.pk}/change/"
    late = pickup + timedelta(days=1)

    response = operator.post(page, change_form(listing, harvest_date=str(late), title="Leeks"))

    assert response.status_code == 200  # the form again, with the error
    said = (
        f"Goods of this listing are to be picked up before {late}: order {order.pk} on "
        f"{pickup}. Turn those lines down (POST /api/v1/orders/{{id}}/lines/{{line_id}}/"
        f"reject/) or harvest by {pickup}; nothing was changed."
    )
    assert response.context["adminform"].form.errors == {"harvest_date": [said]}
    assert Listing.objects.filter(pk=listing.pk).values().get() == before

    saved = operator.post(page, change_form(listing, harvest_date=str(pickup)))
    assert saved.status_code == 302, saved.content
    assert Listing.objects.get(pk=listing.pk).harvest_date == pickup
