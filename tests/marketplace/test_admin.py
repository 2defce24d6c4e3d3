"""The admin's user, village and category forms: phones stored as the API stores them, a
role that listings or orders depend on kept, and listings that follow what they copy; users
signed out of every device, and no refresh token shown; and no admin page answers 500 to
a value its lookups cannot take."""

from datetime import timedelta
from decimal import Decimal

import pytest
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.forms import CheckboxInput, MultiWidget
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from listings.models import Category, Listing
from listings.selectors import ListingSearch, listing_search
from logistics.models import Route, ScheduleRun, Village
from marketplace.accounts.models import Role, User
from marketplace.accounts.tokens import RefreshToken
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
)

pytestmark = pytest.mark.django_db
REFRESH = "/api/v1/auth/token/refresh/"


@pytest.fixture
def operator() -> Client:
    user = User.objects.create_superuser(
        phone="+8613000000001", password="an-operator-passphrase", name="op"
    )
    client = Client()
    client.force_login(user)  # django-axes guards the login form
    return client


def saved(client: Client, url: str, **changes):
    """POST the admin form at `url` (and its inline forms) as shown, with `changes`."""
    page = client.get(url).context
    data = _values(page["adminform"].form)
    for inline in page["inline_admin_formsets"]:
        data.update(_values(inline.formset.management_form))
        for form in inline.formset.forms:
            data.update(_values(form))
    data.update(changes)
    return client.post(url, data)


def _values(form) -> dict:
    data = {}
    for bound in form:
        if bound.field.disabled:
            continue
        value, widget = bound.value(), bound.field.widget
        if isinstance(widget, MultiWidget):
            for index, part in enumerate(widget.decompress(value)):
                data[f"{bound.html_name}_{index}"] = "" if part is None else part
        elif isinstance(widget, CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(value, list | tuple):
            data[bound.html_name] = [str(item) for item in value]
        else:
            data[bound.html_name] = "" if value is None else value
        if bound.field.show_hidden_initial:  # as a browser sends it: a callable default's
            data[bound.html_initial_name] = "" if bound.initial is None else str(bound.initial)
    return data


def found(words: str) -> set[int]:
    return set(listing_search(ListingSearch(q=words)).values_list("pk", flat=True))


@pytest.mark.parametrize("typed", ["139 0000 0001", "+86 139-0000-0001", "13900000001"])
def test_a_user_added_in_the_admin_gets_the_phone_as_the_api_stores_it(operator, typed):
    response = saved(
        operator,
        "/admin/accounts/user/add/",
        phone=typed,
        name="王芳",
        role=Role.BUYER,
        village=VillageFactory().pk,
        password1="a-long-enough-pass-1",
        password2="a-long-enough-pass-1",
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert User.objects.filter(role=Role.BUYER).get().phone == "+8613900000001"


def test_a_phone_that_is_no_phone_is_a_form_error(operator):
    farmer = FarmerFactory(phone="+8613800000011")
    response = saved(operator, f"/admin/accounts/user/{farmer.pk}/change/", phone="hello")
    assert response.status_code == 200
    assert "phone" in response.context["adminform"].form.errors
    assert User.objects.get(pk=farmer.pk).phone == "+8613800000011"


def test_an_unchanged_phone_is_kept_as_stored(operator):
    admin = User.objects.create_superuser(phone="admin", password="another-passphrase", name="a")
    response = saved(operator, f"/admin/accounts/user/{admin.pk}/change/", name="the admin")
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert User.objects.filter(pk=admin.pk).values_list("phone", "name").get() == (
        "admin",
        "the admin",
    )


def test_staff_added_without_a_service_center_is_a_form_error(operator):
    response = saved(
        operator,
        "/admin/accounts/user/add/",
        phone="13900000002",
        name="李明",
        role=Role.STAFF,
        password1="a-long-enough-pass-1",
        password2="a-long-enough-pass-1",
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors.as_data()
    assert [error.code for error in errors["service_center"]] == ["required"]
    assert not User.objects.filter(name="李明").exists()


@pytest.mark.parametrize("field", ["lat", "lng"])
def test_a_coordinate_of_snan_is_a_form_error(operator, field):
    farmer = FarmerFactory(lat=Decimal("30.1"), lng=Decimal("120.2"), name="Before")
    url = f"/admin/accounts/user/{farmer.pk}/change/"
    response = saved(operator, url, **{field: "sNaN", "name": "After"})
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert User.objects.filter(pk=farmer.pk).values_list("lat", "lng", "name").get() == (
        Decimal("30.1"),
        Decimal("120.2"),
        "Before",
    )


def test_login_and_join_dates_are_shown_not_typed(operator):
    farmer = FarmerFactory()
    joined = farmer.date_joined
    url = f"/admin/accounts/user/{farmer.pk}/change/"
    response = saved(operator, url, date_joined_0="0001-01-01", date_joined_1="00:00:00")
    assert response.status_code == 302
    assert User.objects.get(pk=farmer.pk).date_joined == joined


def test_a_village_inline_coordinate_of_snan_is_a_400(operator):
    village = VillageFactory(name="Before")
    url = f"/admin/logistics/servicecenter/{village.service_center_id}/change/"
    page = operator.get(url).context
    [inline] = page["inline_admin_formsets"]
    prefix = inline.formset.prefix
    response = saved(operator, url, **{f"{prefix}-0-lat": "sNaN", f"{prefix}-0-name": "After"})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert Village.objects.get(pk=village.pk).name == "Before"


def test_the_expired_login_attempts_clean_up_action_works(operator):
    old = AccessAttempt.objects.create(
        username="+8613900000003", ip_address="10.0.0.1", failures_since_start=1, user_agent="x"
    )
    AccessAttempt.objects.filter(pk=old.pk).update(attempt_time=timezone.now() - timedelta(days=1))
    fresh = AccessAttempt.objects.create(
        username="+8613900000004", ip_address="10.0.0.2", failures_since_start=1, user_agent="x"
    )
    response = operator.post(
        "/admin/axes/accessattempt/",
        {"action": "cleanup_expired_attempts", "_selected_action": [old.pk, fresh.pk]},
    )
    assert response.status_code == 302
    assert list(AccessAttempt.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_a_farmer_moved_or_renamed_in_the_admin_takes_their_listings_along(operator):
    farmer = FarmerFactory(name="张三")
    listing = create_listing(farmer)
    elsewhere = VillageFactory(name="桃花村")

    response = saved(
        operator,
        f"/admin/accounts/user/{farmer.pk}/change/",
        village=elsewhere.pk,
        name="李四",
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    listing.refresh_from_db()
    assert (listing.village_id, listing.lat, listing.lng) == (
        elsewhere.pk,
        elsewhere.lat,
        elsewhere.lng,
    )
    assert found("桃花村") == found("李四") == {listing.pk}
    assert found("张三") == set()


def test_the_role_of_a_user_with_listings_or_orders_stays(operator):
    farmer = FarmerFactory()
    create_listing(farmer)
    response = saved(operator, f"/admin/accounts/user/{farmer.pk}/change/", role=Role.BUYER)
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    assert User.objects.get(pk=farmer.pk).role == Role.FARMER

    newcomer = BuyerFactory()  # nothing depends on it yet
    page = f"/admin/accounts/user/{newcomer.pk}/change/"
    response = saved(operator, page, role=Role.FARMER, buyer_kind="")
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert User.objects.get(pk=newcomer.pk).role == Role.FARMER


def test_a_village_moved_or_renamed_in_the_admin_moves_its_farmers_listings(operator):
    village = VillageFactory(name="旧村")
    farmer = FarmerFactory(village=village, lat=None, lng=None)  # the village's own place
    listing = create_listing(farmer)

    response = saved(
        operator,
        f"/admin/logistics/village/{village.pk}/change/",
        name="新村",
        lat="30.500000",
        lng="119.700000",
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    listing.refresh_from_db()
    assert (listing.lat, listing.lng) == (Decimal("30.500000"), Decimal("119.700000"))
    assert found("新村") == {listing.pk}
    assert found("旧村") == set()


def test_a_village_renamed_on_its_service_centers_page_renames_it_in_listings(operator):
    village = VillageFactory(name="旧村")
    listing = create_listing(FarmerFactory(village=village))
    center = village.service_center
    index = list(center.villages.order_by("pk").values_list("pk", flat=True)).index(village.pk)

    response = saved(
        operator,
        f"/admin/logistics/servicecenter/{center.pk}/change/",
        **{f"villages-{index}-name": "新村"},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert found("新村") == {listing.pk}


def test_new_opening_hours_of_a_center_plan_its_planned_days_again(operator):
    center = ServiceCenterFactory()
    today = timezone.localdate()
    for days, status in ((-1, "planned"), (0, "started"), (1, "planned"), (2, "planned")):
        Route.objects.create(service_center=center, date=today + timedelta(days), status=status)
    elsewhere = Route.objects.create(service_center=ServiceCenterFactory(), date=today)
    page = f"/admin/logistics/servicecenter/{center.pk}/change/"

    assert saved(operator, page, name="新名字").status_code == 302  # plans do not use names
    assert not ScheduleRun.objects.exists()
    assert saved(operator, page, closes_at="15:00:00").status_code == 302

    runs = ScheduleRun.objects.order_by("date").values_list("service_center", "date", "status")
    assert list(runs) == [
        (center.pk, today + timedelta(days=1), "queued"),
        (center.pk, today + timedelta(days=2), "queued"),
    ]
    assert Route.objects.get(pk=elsewhere.pk).service_center_id != center.pk


def test_a_category_renamed_in_the_admin_finds_its_listings_by_the_new_name(operator):
    listing = create_listing(category="fruit")
    category = Category.objects.get(slug="fruit")

    response = saved(operator, f"/admin/listings/category/{category.pk}/change/", name="Quuxfruit")

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert found("Quuxfruit") == {listing.pk}
    assert Listing.objects.filter(category=category).count() == 1


ODD_QUERIES = [
    {"created_at__year": "99999"},
    {"created_at__year": "2026", "created_at__month": "13"},
    {"created_at__year": "abc"},
    {"id__exact": "abc"},
    {"id__exact": "99999999999999999999"},
    {"pk__in": "1,a"},
    {"p": "abc"},
    {"o": "x.-99"},
]
ODD_SELECTIONS = [["abc"], ["99999999999999999999"], ["1.5"]]


def changelists() -> list[str]:
    return [
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for model in admin.site._registry
    ]


def test_odd_values_in_any_changelist_url_or_action_are_never_a_500(operator):
    """Every admin page, ours and the installed apps': a filter or a selection its lookups
    cannot take answers 400 (or the page, where Django itself copes), never 500."""
    VillageFactory()  # a row on some pages, so their queries run
    answers = {}
    for url in changelists():
        for query in ODD_QUERIES:
            answers[url, str(query)] = operator.get(url, query).status_code
        for selection in ODD_SELECTIONS:
            answer = operator.post(
                url, {"action": "delete_selected", "_selected_action": selection}
            )
            answers[url, f"delete {selection}"] = answer.status_code
        answers[url, "change abc"] = operator.get(f"{url}abc/change/").status_code
    assert {key: code for key, code in answers.items() if code >= 500} == {}
    assert answers["/admin/listings/listing/", str(ODD_QUERIES[0])] == 400
    assert answers["/admin/listings/category/", "delete ['abc']"] == 400
    assert Village.objects.count() == 1


def test_a_bad_value_answers_400_bad_request(operator):
    answer = operator.get("/admin/orders/notification/", {"created_at__year": "99999"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "bad_request"


def test_the_admin_shows_no_refresh_token_itself(operator):
    refresh = str(RefreshToken.for_user(FarmerFactory()))
    outstanding = OutstandingToken.objects.get()
    for url in (
        "/admin/token_blacklist/outstandingtoken/",
        f"/admin/token_blacklist/outstandingtoken/{outstanding.pk}/change/",
    ):
        response = operator.get(url)
        assert response.status_code == 200
        assert outstanding.jti in response.content.decode()
        assert refresh not in response.content.decode()


@pytest.mark.parametrize("lookup", ["token__startswith", "token__regex", "token"])
def test_the_token_list_cannot_be_filtered_by_the_token_itself(operator, lookup):
    """Whether a row is listed would tell a right guess from a wrong one, and the token
    would come out a character at a time."""
    refresh = str(RefreshToken.for_user(FarmerFactory()))
    answer = operator.get("/admin/token_blacklist/outstandingtoken/", {lookup: refresh[:40]})
    assert (answer.status_code, answer.json()["code"]) == (400, "bad_request")


def test_only_an_operator_who_may_change_users_signs_them_out(client_for):
    viewer = StaffFactory(is_staff=True)  # support staff who may look users up
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    operator = Client()
    operator.force_login(viewer)
    victim = FarmerFactory()
    app = client_for(victim)

    page = operator.get("/admin/accounts/user/")
    tried = operator.post(
        "/admin/accounts/user/",
        {"action": "sign_out_everywhere", "_selected_action": [victim.pk], "index": 0},
    )

    assert page.status_code == 200
    assert "sign_out_everywhere" not in page.content.decode()
    assert tried.status_code in (200, 302)
    assert User.objects.get(pk=victim.pk).sign_outs == 0
    assert app.get("/api/v1/me/").status_code == 200


def test_an_operator_revokes_one_token_by_its_id(operator):
    tokens = [str(RefreshToken.for_user(FarmerFactory())) for _ in range(2)]
    chosen = OutstandingToken.objects.order_by("pk").first()
    page = operator.get("/admin/token_blacklist/blacklistedtoken/add/").content.decode()
    assert "<option" not in page  # no list of every outstanding token
    response = operator.post("/admin/token_blacklist/blacklistedtoken/add/", {"token": chosen.pk})
    assert response.status_code == 302
    codes = [
        APIClient().post(REFRESH, {"refresh": token}, format="json").status_code for token in tokens
    ]
    assert codes == [401, 200]


def refresh_with(refresh: str) -> tuple[int, str | None]:
    response = APIClient().post(REFRESH, {"refresh": refresh}, format="json")
    return response.status_code, response.json().get("code")


def me_with(refresh: str) -> tuple[int, str | None]:
    """What a request answers with an access token of that refresh token's login."""
    access = RefreshToken(refresh, verify=False).access_token
    response = APIClient().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {access}")
    return response.status_code, response.json().get("code")


def test_a_user_deactivated_in_the_admin_stays_signed_out_once_reactivated(operator):
    farmer, neighbour = FarmerFactory(), FarmerFactory()
    phone, tablet, kept = (str(RefreshToken.for_user(user)) for user in (farmer, farmer, neighbour))
    page = f"/admin/accounts/user/{farmer.pk}/change/"

    assert saved(operator, page, is_active="").status_code == 302
    assert refresh_with(phone) == (401, "token_not_valid")  # revoked, not only inactive
    assert saved(operator, page, is_active="on").status_code == 302

    assert User.objects.get(pk=farmer.pk).is_active
    assert refresh_with(phone) == refresh_with(tablet) == (401, "token_not_valid")
    assert refresh_with(kept) == (200, None)
    fresh = str(RefreshToken.for_user(User.objects.get(pk=farmer.pk)))
    assert refresh_with(fresh) == (200, None)  # a new login works


def test_a_farmer_deactivated_in_the_admin_has_nothing_left_on_sale(operator):
    farmer, neighbour = FarmerFactory(), FarmerFactory()
    statuses = ("active", "sold_out", "paused", "draft", "archived")
    listings = [create_listing(farmer, title=f"{s} 白菜") for s in statuses]
    for listing, status in zip(listings, statuses, strict=True):
        Listing.objects.filter(pk=listing.pk).update(status=status)
    theirs = create_listing(neighbour, title="邻居 白菜")

    assert (
        saved(operator, f"/admin/accounts/user/{farmer.pk}/change/", is_active="").status_code
        == 302
    )

    after = dict(Listing.objects.filter(farmer=farmer).values_list("title", "status"))
    assert after == {
        "active 白菜": "paused",
        "sold_out 白菜": "paused",
        "paused 白菜": "paused",
        "draft 白菜": "draft",
        "archived 白菜": "archived",
    }
    assert Listing.objects.get(pk=theirs.pk).status == "active"
    found = APIClient().get("/api/v1/listings/", {"q": "白菜"}).json()["results"]
    assert [x["id"] for x in found] == [theirs.pk]
    buyer = APIClient()
    buyer.force_authenticate(BuyerFactory())
    refused = buyer.post(
        "/api/v1/orders/",
        {
            "lines": [{"listing": listings[0].pk, "quantity": "1"}],
            "delivery_method": "pickup",
            "payment_method": "cod",
        },
        format="json",
    )
    assert (refused.status_code, refused.json()["code"]) == (400, "listing_unavailable")
    assert Listing.objects.get(pk=listings[0].pk).quantity_available == Decimal("100.000")


def test_sign_out_of_every_device_revokes_the_chosen_users_live_tokens_only(operator):
    farmer, buyer, neighbour = FarmerFactory(), BuyerFactory(), FarmerFactory()
    tokens = {
        user: [str(RefreshToken.for_user(user)) for _ in range(2)]
        for user in (farmer, buyer, neighbour)
    }
    APIClient().post("/api/v1/auth/logout/", {"refresh": tokens[farmer][0]}, format="json")
    expired = OutstandingToken.objects.create(
        user=farmer, jti="expired", token="…", expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = operator.post(
        "/admin/accounts/user/",
        {"action": "sign_out_everywhere", "_selected_action": [farmer.pk, buyer.pk]},
    )

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["3 refresh tokens revoked."]
    for user in (farmer, buyer):
        assert [refresh_with(token) for token in tokens[user]] == [(401, "token_not_valid")] * 2
    assert [refresh_with(token) for token in tokens[neighbour]] == [(200, None)] * 2
    for user in (farmer, buyer):  # their access tokens too, at once
        assert [me_with(token) for token in tokens[user]] == [(401, "signed_out")] * 2
    assert [me_with(token) for token in tokens[neighbour]] == [(200, None)] * 2
    assert BlacklistedToken.objects.count() == 4
    assert not BlacklistedToken.objects.filter(token=expired).exists()  # left to pruning


def test_a_password_an_operator_sets_signs_the_user_out_of_every_device(operator):
    farmer, neighbour = FarmerFactory(), FarmerFactory()
    phone, kept = str(RefreshToken.for_user(farmer)), str(RefreshToken.for_user(neighbour))
    page = f"/admin/accounts/user/{farmer.pk}/password/"
    new = {"password1": "an-operator-chosen-pass", "password2": "an-operator-chosen-pass"}

    assert operator.post(page, new).status_code == 302

    farmer.refresh_from_db()
    assert farmer.check_password("an-operator-chosen-pass")
    assert farmer.sign_outs == 1
    assert list(BlacklistedToken.objects.values_list("token__user_id", flat=True)) == [farmer.pk]
    assert refresh_with(phone) == (401, "token_not_valid")
    assert refresh_with(kept) == (200, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"lat": "0", "lng": "0"},  # a phone with no GPS fix
        {"village": "far"},  # moved to a village 100 km from the place kept
    ],
)
def test_an_exact_place_the_village_cannot_reach_is_a_form_error(operator, changes):
    """As through the API (user_update_profile): a farmer's exact place, where their goods
    are picked up and their listings are found, lies within reach of their village."""
    near = VillageFactory(lat=Decimal("30.000000"), lng=Decimal("119.600000"))
    far = VillageFactory(lat=Decimal("30.900000"), lng=Decimal("119.600000"))
    farmer = FarmerFactory(village=near, lat=Decimal("30.010000"), lng=Decimal("119.600000"))
    listing = create_listing(farmer)
    if changes.get("village") == "far":
        changes = {"village": far.pk}

    response = saved(operator, f"/admin/accounts/user/{farmer.pk}/change/", **changes)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "lat" in errors, errors
    assert User.objects.filter(
        pk=farmer.pk, village=near, lat=Decimal("30.010000"), lng=Decimal("119.600000")
    ).exists()
    listing.refresh_from_db()
    assert (listing.village_id, listing.lat) == (near.pk, Decimal("30.010000"))
