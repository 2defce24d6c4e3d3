"""Staff given the group pages pass on only what they may do themselves (Django's rule of
thumb for delegated admin): a group gets from them no permission they lack, so they cannot
widen a group of their own, or any other, beyond what they hold. Operators give any."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from marketplace.accounts.models import User
from tests.factories import FarmerFactory, ServiceCenterFactory, StaffFactory, VillageFactory
from tests.marketplace.test_admin import saved

pytestmark = pytest.mark.django_db

GROUPS = "/admin/auth/group/"


def _perms(*codenames: str) -> list[Permission]:
    permissions = list(Permission.objects.filter(codename__in=codenames))
    assert len(permissions) == len(codenames)
    return permissions


def _ids(permissions) -> list[str]:
    return [str(permission.pk) for permission in permissions]


def _staff_in(group: Group, *own_codenames: str) -> Client:
    staff = StaffFactory(service_center=ServiceCenterFactory(), is_staff=True)
    staff.groups.add(group)
    staff.user_permissions.add(*_perms(*own_codenames))
    client = Client()
    client.force_login(staff)
    return client


def _group_perms(group: Group) -> set[str]:
    return set(group.permissions.values_list("codename", flat=True))


def test_center_staff_give_a_group_no_permission_they_lack():
    held = ("view_group", "change_group", "add_group", "view_listing")
    group = Group.objects.create(name="Center staff")
    group.permissions.add(*_perms(*held))
    client = _staff_in(group, "view_order")
    url = f"{GROUPS}{group.pk}/change/"
    widened = [*group.permissions.all(), *_perms("delete_listing", "change_user")]

    refused = saved(client, url, permissions=_ids(widened))
    added = client.post(
        f"{GROUPS}add/", {"name": "Wider", "permissions": _ids(_perms("delete_user"))}
    )

    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors.as_data()
    assert [error.code for error in errors["permissions"]] == ["permission_not_held"]
    assert "Can delete listing" in str(errors["permissions"][0].message)
    assert _group_perms(group) == set(held)
    assert added.status_code == 200
    assert "permissions" in added.context["adminform"].form.errors
    assert not Group.objects.filter(name="Wider").exists()

    # what they hold themselves (their own permission, or the group's), and fewer, they give
    narrowed = [p for p in group.permissions.all() if p.codename != "view_listing"]
    kept = saved(client, url, permissions=_ids([*narrowed, *_perms("view_order")]))

    assert kept.status_code == 302
    assert _group_perms(group) == {"view_group", "change_group", "add_group", "view_order"}


def test_an_operator_gives_a_group_any_permission():
    group = Group.objects.create(name="Center staff")
    operator = User.objects.create_superuser(
        phone="+8613000000001", password="op-passphrase-1", name="o"
    )
    client = Client()
    client.force_login(operator)

    response = saved(client, f"{GROUPS}{group.pk}/change/", permissions=_ids(_perms("delete_user")))

    assert response.status_code == 302
    assert _group_perms(group) == {"delete_user"}


def test_center_staff_who_may_change_users_put_nobody_in_a_group():
    """Group membership is an access field (UserAdmin.ACCESS_FIELDS), an operator's to set:
    staff put no one, themselves included, in a group with permissions they lack."""
    wide = Group.objects.create(name="Operators")
    wide.permissions.add(*Permission.objects.all())
    center = ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=center))
    staff = StaffFactory(service_center=center, is_staff=True)
    staff.user_permissions.add(*_perms("view_user", "change_user", "add_user"))
    client = Client()
    client.force_login(staff)

    for user in (staff, farmer):
        url = f"/admin/accounts/user/{user.pk}/change/"
        response = saved(client, url, groups=[str(wide.pk)])
        assert response.status_code == 302
    form = {"phone": "13900000021", "name": "新人", "role": "buyer", "groups": [str(wide.pk)]}
    form |= {"village": farmer.village_id, "usable_password": "false"}
    assert client.post("/admin/accounts/user/add/", form).status_code == 302

    assert not wide.user_set.exists()
    assert User.objects.filter(phone="+8613900000021").exists()
