"""django-axes' pages in the admin (login attempts, failures, sign-ins) name the phone tried
and the address it came from. A center's staff given them see the rows naming one of their
center's people only, as their other pages show them; a row naming nobody's phone is for
operators (superusers), who see every row."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.accounts.models import User
from tests.factories import (
    PASSWORD,
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
)

pytestmark = pytest.mark.django_db

PAGES = {
    AccessAttempt: "/admin/axes/accessattempt/",
    AccessFailureLog: "/admin/axes/accessfailurelog/",
    AccessLog: "/admin/axes/accesslog/",
}
NOBODYS_PHONE = "+8613700000000"


def _people_of_a_center():
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    farmer, buyer = FarmerFactory(village=village), BuyerFactory(village=village)
    return center, farmer, buyer, StaffFactory(service_center=center, is_staff=True)


def _admin_client(user: User, *codenames: str) -> Client:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def _fail_login(phone_as_typed: str) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/", {"phone": phone_as_typed, "password": "wrong"}, format="json"
    )
    assert response.status_code == 401


def _shown(client: Client, model) -> set[str]:
    response = client.get(PAGES[model])
    assert response.status_code == 200
    return {row.username for row in response.context["cl"].result_list}


def test_center_staff_see_the_login_records_of_their_centers_people_only():
    _, farmer, buyer, staff = _people_of_a_center()
    _, their_farmer, _, their_staff = _people_of_a_center()
    # typed nationally, stored as the user's phone (E.164: lockout_username)
    _fail_login(f"{farmer.phone[3:6]} {farmer.phone[6:10]} {farmer.phone[10:]}")
    for phone in (buyer.phone, their_farmer.phone, NOBODYS_PHONE, "not a phone"):
        _fail_login(phone)
    for user in (staff, their_staff):  # a sign-in (AccessLog) through the admin's login
        signed_in = Client().post("/admin/login/", {"username": user.phone, "password": PASSWORD})
        assert signed_in.status_code == 302
    # failures are logged only with AXES_ENABLE_ACCESS_FAILURE_LOG (off): as axes logs them
    for attempt in AccessAttempt.objects.all():
        AccessFailureLog.objects.create(username=attempt.username, ip_address="10.0.0.1")
    codenames = ("view_accessattempt", "view_accessfailurelog", "view_accesslog")
    client = _admin_client(staff, *codenames)

    failed = {farmer.phone, buyer.phone}
    assert _shown(client, AccessAttempt) == failed
    assert _shown(client, AccessFailureLog) == failed
    assert _shown(client, AccessLog) == {staff.phone}
    for model, changelist in PAGES.items():
        ours = model.objects.filter(username__in=[farmer.phone, staff.phone]).first()
        theirs = model.objects.filter(username__in=[their_farmer.phone, their_staff.phone])
        nobodys = model.objects.exclude(username__in=User.objects.values("phone"))
        assert client.get(f"{changelist}{ours.pk}/change/").status_code == 200, model
        for row in [*theirs, *nobodys]:
            page = client.get(f"{changelist}{row.pk}/change/")
            assert page.status_code == 302, model  # Django's answer for a row not found

    operator = User.objects.create_superuser(
        phone="+8613000000001", password="op-passphrase-1", name="o"
    )
    everyone = _admin_client(operator)
    assert _shown(everyone, AccessAttempt) == {
        farmer.phone,
        buyer.phone,
        their_farmer.phone,
        NOBODYS_PHONE,
        "not a phone",
    }
    assert _shown(everyone, AccessLog) == {staff.phone, their_staff.phone, operator.phone}


def _attempt(username: str, *, expired: bool) -> AccessAttempt:
    attempt = AccessAttempt.objects.create(
        username=username, ip_address="10.0.0.1", failures_since_start=1, user_agent="x"
    )
    if expired:
        day_ago = timezone.now() - timedelta(days=1)
        AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=day_ago)
    return attempt


def test_center_staff_clean_up_and_delete_only_their_centers_attempts():
    """django-axes' "Clean up expired attempts" deletes every expired attempt there is,
    whatever is selected: here those the admin user may see. It deletes, so it needs the
    delete permission, as Django's own delete action does."""
    center, farmer, buyer, staff = _people_of_a_center()
    _, their_farmer, _, _ = _people_of_a_center()
    # logged in first: a login clears every expired attempt (django-axes' user_logged_in)
    viewer = _admin_client(StaffFactory(service_center=center, is_staff=True), "view_accessattempt")
    client = _admin_client(staff, "view_accessattempt", "delete_accessattempt")
    ours_expired = _attempt(farmer.phone, expired=True)
    ours_fresh = _attempt(buyer.phone, expired=False)
    kept = {
        ours_fresh.pk,
        _attempt(their_farmer.phone, expired=True).pk,
        _attempt(NOBODYS_PHONE, expired=True).pk,
    }
    everything = [ours_expired.pk, *kept]
    clean_up = {"action": "cleanup_expired_attempts", "_selected_action": everything}

    refused = viewer.post(PAGES[AccessAttempt], clean_up)

    assert refused.status_code == 200  # the action is not offered: "No action selected"
    assert set(AccessAttempt.objects.values_list("pk", flat=True)) == {ours_expired.pk, *kept}

    done = client.post(PAGES[AccessAttempt], clean_up)

    assert done.status_code == 302
    assert set(AccessAttempt.objects.values_list("pk", flat=True)) == kept

    delete = {"action": "delete_selected", "_selected_action": everything, "post": "yes"}
    assert client.post(PAGES[AccessAttempt], delete).status_code == 302
    assert set(AccessAttempt.objects.values_list("pk", flat=True)) == kept - {ours_fresh.pk}
