"""The fleet in the admin: a center's staff add, change and retire their own center's
vehicles there, operators any center's, each write through logistics.services.fleet as the
API's: its rules as form errors, days planned again when what plans use changes, a vehicle
that routes refer to deactivated rather than deleted."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from logistics.models import Route, ScheduleRun, Vehicle
from tests.factories import ServiceCenterFactory, StaffFactory
from tests.marketplace.test_admin import saved

pytestmark = pytest.mark.django_db

VEHICLES = "/admin/logistics/vehicle/"


def fleet_staff(center, *verbs: str) -> Client:
    staff = StaffFactory(service_center=center, is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=[f"{verb}_vehicle" for verb in verbs])
    )
    client = Client()
    client.force_login(staff)
    return client


def van(center, **fields) -> Vehicle:
    return Vehicle.objects.create(
        service_center=center, **{"name": "van", "capacity_kg": Decimal("300"), **fields}
    )


def rows() -> list[tuple]:
    return list(
        Vehicle.objects.order_by("pk").values_list(
            "service_center", "name", "capacity_kg", "cost_per_km", "active"
        )
    )


def test_staff_add_a_vehicle_to_their_own_center_only():
    ours, theirs = ServiceCenterFactory(), ServiceCenterFactory()
    client = fleet_staff(ours, "view", "add")
    page = client.get(f"{VEHICLES}add/")
    assert list(page.context["adminform"].form.fields["service_center"].queryset) == [ours]

    added = saved(
        client, f"{VEHICLES}add/", service_center=ours.pk, name="  冷藏车 ", capacity_kg="800"
    )

    assert added.status_code == 302, added.context and added.context["adminform"].form.errors
    assert rows() == [(ours.pk, "冷藏车", Decimal("800.0"), Decimal("1.50"), True)]
    refused = saved(client, f"{VEHICLES}add/", service_center=theirs.pk, name="x", capacity_kg="5")
    assert refused.status_code == 200
    assert "service_center" in refused.context["adminform"].form.errors
    assert rows() == [(ours.pk, "冷藏车", Decimal("800.0"), Decimal("1.50"), True)]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"capacity_kg": "20000.1"}, "capacity_kg"),  # above what village roads take
        ({"capacity_kg": "0"}, "capacity_kg"),
        ({"cost_per_km": "-1"}, "cost_per_km"),
        ({"shift_start": "18:00:00", "shift_end": "07:00:00"}, "shift_end"),
        ({"name": "卡车 "}, "name"),  # another vehicle of the center has it
        ({"name": "a\u202eb"}, "name"),  # a control character in a line a driver reads
    ],
)
def test_the_fleets_rules_are_form_errors_and_nothing_changes(changes, field):
    center = ServiceCenterFactory()
    vehicle = van(center)
    van(center, name="卡车")
    client = fleet_staff(center, "view", "change")
    before = rows()

    answer = saved(client, f"{VEHICLES}{vehicle.pk}/change/", **changes)

    assert answer.status_code == 200
    assert field in answer.context["adminform"].form.errors
    assert rows() == before


def test_a_change_plans_use_plans_the_vehicles_days_again_and_a_name_does_not():
    center = ServiceCenterFactory()
    vehicle = van(center)
    tomorrow = timezone.localdate() + timedelta(days=1)
    Route.objects.create(service_center=center, date=tomorrow, vehicle=vehicle)
    client = fleet_staff(center, "view", "change")
    page = f"{VEHICLES}{vehicle.pk}/change/"

    assert saved(client, page, name="小货车").status_code == 302
    assert not ScheduleRun.objects.exists()
    assert saved(client, page, capacity_kg="250").status_code == 302

    assert rows() == [(center.pk, "小货车", Decimal("250.0"), Decimal("1.50"), True)]
    runs = ScheduleRun.objects.values_list("service_center", "date", "status")
    assert list(runs) == [(center.pk, tomorrow, "queued")]


def test_staff_neither_see_nor_change_another_centers_vehicles():
    ours, theirs = ServiceCenterFactory(), ServiceCenterFactory()
    mine, other = van(ours), van(theirs)
    client = fleet_staff(ours, "view", "change", "delete")

    listed = client.get(VEHICLES)
    assert [row.pk for row in listed.context["cl"].result_list] == [mine.pk]
    assert client.get(f"{VEHICLES}{other.pk}/change/").status_code == 302  # not found
    retired = client.post(VEHICLES, {"action": "retire", "_selected_action": [other.pk]})
    assert retired.status_code == 302
    assert Vehicle.objects.filter(pk=other.pk, active=True).exists()


def test_retiring_deletes_a_vehicle_no_route_has_and_deactivates_the_others():
    center = ServiceCenterFactory()
    unused, used = van(center, name="旧车"), van(center)
    tomorrow = timezone.localdate() + timedelta(days=1)
    Route.objects.create(service_center=center, date=tomorrow, vehicle=used)
    client = fleet_staff(center, "view", "delete")

    done = client.post(VEHICLES, {"action": "retire", "_selected_action": [unused.pk, used.pk]})

    assert done.status_code == 302
    assert [str(m) for m in get_messages(done.wsgi_request)] == [
        "1 vehicle(s) deleted.",
        "1 vehicle(s) deactivated: routes refer to them.",
    ]
    assert rows() == [(center.pk, "van", Decimal("300.0"), Decimal("1.50"), False)]
    assert list(ScheduleRun.objects.values_list("date", "status")) == [(tomorrow, "queued")]


def test_vehicles_are_retired_by_the_action_only_and_by_whoever_may_delete_them():
    center = ServiceCenterFactory()
    vehicle = van(center)
    may_change = fleet_staff(center, "view", "change")

    assert may_change.get(f"{VEHICLES}{vehicle.pk}/delete/").status_code == 403
    assert may_change.get(VEHICLES).context["action_form"] is None  # no action for them
    refused = may_change.post(VEHICLES, {"action": "retire", "_selected_action": [vehicle.pk]})
    assert refused.status_code == 200  # no such action for them: the list again
    assert rows() == [(center.pk, "van", Decimal("300.0"), Decimal("1.50"), True)]
