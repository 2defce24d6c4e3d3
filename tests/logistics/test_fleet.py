"""A center's fleet: its staff add, change and retire vehicles; the rules answer with codes;
anyone else gets 404 (anonymous 401) and nothing changes."""

import threading
from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.forms import modelform_factory
from django.utils import timezone

from logistics.models import Route, RouteStatus, ScheduleRun, ScheduleRunStatus, Vehicle
from logistics.services.fleet import vehicle_create, vehicle_update
from marketplace.exceptions import DomainError
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
)

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "name",
    "capacity_kg",
    "refrigerated",
    "shift_start",
    "shift_end",
    "cost_per_km",
    "active",
}


def vehicles_url(center) -> str:
    return f"/api/v1/service-centers/{center.pk}/vehicles/"


def vehicle_url(vehicle) -> str:
    return f"/api/v1/service-centers/{vehicle.service_center_id}/vehicles/{vehicle.pk}/"


@pytest.fixture
def center():
    return ServiceCenterFactory()


@pytest.fixture
def staff(center, client_for):
    return client_for(StaffFactory(service_center=center))


@pytest.fixture
def van(center):
    return vehicle_create(center_id=center.pk, name="金杯面包车", capacity_kg=Decimal(800))


def test_staff_add_a_vehicle_and_see_their_fleet(center, staff, django_assert_num_queries):
    body = {
        "name": " 冷藏车 ",
        "capacity_kg": "1500.0",
        "refrigerated": True,
        "shift_start": "06:30",
        "shift_end": "16:00",
        "cost_per_km": "2.60",
    }

    created = staff.post(vehicles_url(center), body, format="json")

    assert created.status_code == 201, created.json()
    vehicle = Vehicle.objects.get()
    assert created.json() == {
        "id": vehicle.pk,
        "name": "冷藏车",
        "capacity_kg": "1500.0",
        "refrigerated": True,
        "shift_start": "06:30:00",
        "shift_end": "16:00:00",
        "cost_per_km": "2.60",
        "active": True,
    }
    assert vehicle.service_center == center
    vehicle_create(center_id=center.pk, name="小货车", capacity_kg=Decimal(2000))
    with django_assert_num_queries(3):  # the user, the count, the page
        listed = staff.get(vehicles_url(center))
    assert [v["name"] for v in listed.json()["results"]] == ["冷藏车", "小货车"]
    assert staff.get(vehicle_url(vehicle)).json() == created.json()


def test_a_new_vehicle_gets_the_default_shift_and_cost(center, staff):
    response = staff.post(vehicles_url(center), {"name": "金杯", "capacity_kg": "800"})

    assert response.status_code == 201
    assert {k: response.json()[k] for k in ("shift_start", "shift_end", "cost_per_km")} == {
        "shift_start": "07:00:00",
        "shift_end": "18:00:00",
        "cost_per_km": "1.50",
    }
    assert response.json()["refrigerated"] is False
    assert response.json()["active"] is True


@pytest.mark.parametrize("field", ["shift_start", "shift_end"])
@pytest.mark.parametrize("given", ["10:00+05:00", "10:00Z", "10:00:00-03:30", "10:00:00.5+08:00"])
def test_a_shift_with_a_utc_offset_is_400_and_nothing_changes(center, staff, van, field, given):
    """A shift is the center's local time of day (TIME_ZONE): one sent with an offset or a
    Z would be taken as that wall-clock time here, its offset dropped (10:00+05:00 as
    10:00 in Shanghai), so it is refused with a code of its own."""
    body = {"name": "小货车", "capacity_kg": "2000", "shift_start": "06:00", "shift_end": "20:00"}
    added = staff.post(vehicles_url(center), {**body, field: given}, format="json")
    changed = staff.patch(vehicle_url(van), {field: given}, format="json")

    for response in (added, changed):
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "validation_error"
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            (field, "time_zone_not_allowed")
        ]
    assert list(Vehicle.objects.values_list("name", "shift_start", "shift_end")) == [
        ("金杯面包车", time(7, 0), time(18, 0))
    ]


@pytest.mark.parametrize(("given", "taken"), [("10:00", "10:00:00"), ("10:00:00", "10:00:00")])
def test_a_shift_of_local_time_is_taken_as_given(center, staff, given, taken):
    body = {"name": "小货车", "capacity_kg": "2000", "shift_start": given, "shift_end": "19:30"}

    response = staff.post(vehicles_url(center), body, format="json")

    assert response.status_code == 201, response.json()
    assert (response.json()["shift_start"], response.json()["shift_end"]) == (taken, "19:30:00")


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"capacity_kg": "0"}, "vehicle_capacity_out_of_range"),
        ({"capacity_kg": "-10"}, "vehicle_capacity_out_of_range"),
        ({"capacity_kg": "20000.1"}, "vehicle_capacity_out_of_range"),
        ({"shift_start": "18:00", "shift_end": "07:00"}, "vehicle_shift_order"),
        ({"shift_start": "09:00", "shift_end": "09:00"}, "vehicle_shift_order"),
        ({"cost_per_km": "-0.01"}, "vehicle_cost_negative"),
        ({"name": "金杯面包车"}, "vehicle_name_taken"),
        ({"name": "   "}, "validation_error"),
        ({"capacity_kg": "many"}, "validation_error"),
    ],
)
def test_an_invalid_vehicle_is_400_with_a_code_and_nothing_is_added(
    center, staff, van, changes, code
):
    body = {"name": "小货车", "capacity_kg": "2000", **changes}

    response = staff.post(vehicles_url(center), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert list(Vehicle.objects.values_list("name", flat=True)) == ["金杯面包车"]


NAMES_NOT_ONE_LINE_THAT_SHOWS = [
    ("金杯\n面包车", "control_characters_not_allowed"),
    ("金杯\t面包车", "control_characters_not_allowed"),
    ("小货车\x1b[31m", "control_characters_not_allowed"),
    ("小\u202e货车", "control_characters_not_allowed"),  # the rest of the line reversed
    ("\u200b\u2060", "blank"),  # nothing that shows
]


@pytest.mark.parametrize(("name", "code"), NAMES_NOT_ONE_LINE_THAT_SHOWS)
def test_a_vehicle_name_is_one_line_that_shows_when_added_or_changed(
    staff, center, van, name, code
):
    """The name heads the route a driver reads and its map: a new line, a control character
    or a text direction override would break or turn it around, as in a user's name."""
    added = staff.post(vehicles_url(center), {"name": name, "capacity_kg": "2000"}, format="json")
    renamed = staff.patch(vehicle_url(van), {"name": name}, format="json")

    for response in (added, renamed):
        assert response.status_code == 400
        assert response.json()["code"] == "validation_error"
        assert response.json()["errors"] == [
            {"field": "name", "code": code, "detail": response.json()["errors"][0]["detail"]}
        ]
    assert list(Vehicle.objects.values_list("name", flat=True)) == ["金杯面包车"]


@pytest.mark.parametrize(("name", "code"), NAMES_NOT_ONE_LINE_THAT_SHOWS)
def test_the_fleet_services_refuse_a_name_the_api_refuses(center, van, name, code):
    """Whoever calls them (the API, a shell, a command): the same code, naming the field,
    which the API answers 400 as it answers the field's own error."""
    with pytest.raises(DomainError) as added:
        vehicle_create(center_id=center.pk, name=name, capacity_kg=Decimal(2000))
    with pytest.raises(DomainError) as renamed:
        vehicle_update(vehicle_id=van.pk, changes={"name": name, "capacity_kg": Decimal(900)})

    for refused in (added, renamed):
        assert (refused.value.code, refused.value.extra) == (code, {"field": "name"})
    assert list(Vehicle.objects.values_list("name", "capacity_kg")) == [("金杯面包车", 800)]


@pytest.mark.parametrize(("name", "code"), NAMES_NOT_ONE_LINE_THAT_SHOWS)
def test_a_form_of_vehicles_refuses_such_a_name_as_a_form_error(center, van, name, code):
    """The rule is the model field's too (its validator), so a form made of the model, as
    the admin makes one, shows it as the field's error, for a new vehicle and a renamed
    one, and saves nothing."""
    vehicle_form = modelform_factory(
        Vehicle, fields=("service_center", "name", "capacity_kg", "shift_start", "shift_end")
    )
    data = {
        "service_center": center.pk,
        "name": name,
        "capacity_kg": "900",
        "shift_start": "07:00",
        "shift_end": "18:00",
    }

    for form in (vehicle_form(data), vehicle_form(data, instance=van)):
        assert not form.is_valid()
        assert [error.code for error in form.errors.as_data()["name"]] == [code]
    assert list(Vehicle.objects.values_list("name", "capacity_kg")) == [("金杯面包车", 800)]


def test_the_largest_capacity_is_accepted_and_names_are_unique_per_center_only(center, staff, van):
    other = ServiceCenterFactory()
    vehicle_create(center_id=other.pk, name="小货车", capacity_kg=Decimal(2000))

    response = staff.post(vehicles_url(center), {"name": "小货车", "capacity_kg": "20000"})

    assert response.status_code == 201, response.json()
    assert Vehicle.objects.filter(name="小货车").count() == 2


def test_staff_change_a_vehicle_and_the_rules_hold_for_the_result(staff, van):
    changed = staff.patch(
        vehicle_url(van), {"capacity_kg": "900.5", "shift_end": "19:00"}, format="json"
    )
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["capacity_kg"], changed.json()["shift_end"]) == ("900.5", "19:00:00")

    # A new end before the start the vehicle already has.
    early = staff.patch(vehicle_url(van), {"shift_end": "06:00"}, format="json")
    assert (early.status_code, early.json()["code"]) == (400, "vehicle_shift_order")

    vehicle_create(center_id=van.service_center_id, name="小货车", capacity_kg=Decimal(2000))
    taken = staff.patch(vehicle_url(van), {"name": "小货车", "capacity_kg": "1000"}, format="json")
    assert (taken.status_code, taken.json()["code"]) == (400, "vehicle_name_taken")

    van.refresh_from_db()
    assert (van.name, van.capacity_kg, van.shift_start, van.shift_end) == (
        "金杯面包车",
        Decimal("900.5"),
        time(7, 0),
        time(19, 0),
    )
    assert staff.put(vehicle_url(van), {"name": "x", "capacity_kg": "1"}).status_code == 405


def test_deleting_an_unused_vehicle_removes_it(staff, van):
    response = staff.delete(vehicle_url(van))

    assert response.status_code == 204
    assert not Vehicle.objects.filter(pk=van.pk).exists()
    assert staff.get(vehicle_url(van)).status_code == 404


def test_deleting_a_vehicle_routes_refer_to_deactivates_it(staff, van):
    route = Route.objects.create(
        service_center_id=van.service_center_id, date=timezone.localdate(), vehicle=van
    )

    response = staff.delete(vehicle_url(van))

    assert response.status_code == 200
    assert response.json()["active"] is False
    van.refresh_from_db()
    assert van.active is False
    assert Route.objects.get(pk=route.pk).vehicle_id == van.pk
    assert staff.delete(vehicle_url(van)).status_code == 200  # again: still kept, inactive
    # Back in service: staff switch it on again.
    assert staff.patch(vehicle_url(van), {"active": True}, format="json").json()["active"]


def _routes_of(van, **dated_statuses):
    today = timezone.localdate()
    for days, status in dated_statuses.values():
        Route.objects.create(
            service_center_id=van.service_center_id,
            date=today + timedelta(days=days),
            vehicle=van,
            status=status,
        )


def runs() -> list[tuple]:
    rows = ScheduleRun.objects.order_by("date")
    return list(rows.values_list("service_center_id", "date", "status", "requested_by"))


def test_retiring_a_vehicle_plans_again_the_days_it_was_planned_for(
    staff, van, django_capture_on_commit_callbacks
):
    today = timezone.localdate()
    _routes_of(
        van,
        yesterday=(-1, RouteStatus.PLANNED),
        today_on_the_road=(0, RouteStatus.STARTED),
        tomorrow=(1, RouteStatus.PLANNED),
        in_three_days=(3, RouteStatus.PLANNED),
    )
    with django_capture_on_commit_callbacks() as sent:
        response = staff.delete(vehicle_url(van))
    assert (response.status_code, response.json()["active"]) == (200, False)
    center = van.service_center_id
    assert runs() == [
        (center, today + timedelta(days=1), "queued", None),
        (center, today + timedelta(days=3), "queued", None),
    ]
    assert len(sent) == 2  # a task each, once committed
    assert staff.delete(vehicle_url(van)).status_code == 200  # again: no more runs
    assert len(runs()) == 2


def test_a_vehicle_changed_in_what_a_plan_relies_on_has_its_days_planned_again(staff, van):
    _routes_of(van, tomorrow=(1, RouteStatus.PLANNED))
    renamed = staff.patch(
        vehicle_url(van), {"name": "白色面包车", "cost_per_km": "1.5"}, format="json"
    )
    assert (renamed.status_code, runs()) == (200, [])
    smaller = staff.patch(vehicle_url(van), {"capacity_kg": "300"}, format="json")
    assert smaller.status_code == 200
    assert runs() == [
        (van.service_center_id, timezone.localdate() + timedelta(days=1), "queued", None)
    ]


def test_a_vehicle_patch_that_changes_nothing_plans_no_day_again(staff, van):
    """The same PATCH retried once its run finished (its answer was lost), or a whole form
    sent back with one field changed: what equals the row is no change."""
    _routes_of(van, tomorrow=(1, RouteStatus.PLANNED))
    assert staff.patch(vehicle_url(van), {"capacity_kg": "300"}, format="json").status_code == 200
    ScheduleRun.objects.update(status=ScheduleRunStatus.DONE, finished_at=timezone.now())

    same = staff.patch(
        vehicle_url(van), {"capacity_kg": "300.0", "name": " 金杯面包车 "}, format="json"
    )
    form = {"capacity_kg": "300", "shift_start": "07:00", "cost_per_km": "2"}
    form = staff.patch(vehicle_url(van), form, format="json")

    assert (same.status_code, form.status_code) == (200, 200)
    assert [status for *_, status, _ in runs()] == ["done"]  # the first PATCH's run alone
    assert Vehicle.objects.filter(pk=van.pk).values_list("capacity_kg", "cost_per_km").get() == (
        Decimal(300),
        Decimal(2),
    )


def test_others_get_404_for_every_read_and_write_and_nothing_changes(center, van, api, client_for):
    strangers = [
        StaffFactory(service_center=ServiceCenterFactory()),
        FarmerFactory(village=VillageFactory(service_center=center)),
        BuyerFactory(village=VillageFactory(service_center=center)),
    ]
    Route.objects.create(service_center=center, date=timezone.localdate())
    body = {"name": "小货车", "capacity_kg": "2000"}
    for user in strangers:
        client = client_for(user)
        assert client.get(vehicles_url(center)).status_code == 404
        assert client.post(vehicles_url(center), body, format="json").status_code == 404
        assert client.get(vehicle_url(van)).status_code == 404
        assert client.patch(vehicle_url(van), {"capacity_kg": "1"}, format="json").status_code == (
            404
        )
        assert client.delete(vehicle_url(van)).status_code == 404
    # Their own center's id does not reach this center's vehicle either.
    own = strangers[0].service_center
    other_path = f"/api/v1/service-centers/{own.pk}/vehicles/{van.pk}/"
    assert client_for(strangers[0]).delete(other_path).status_code == 404

    for response in (
        api.get(vehicles_url(center)),
        api.post(vehicles_url(center), body, format="json"),
        api.patch(vehicle_url(van), {"capacity_kg": "1"}, format="json"),
        api.delete(vehicle_url(van)),
    ):
        assert response.status_code == 401

    assert list(Vehicle.objects.values_list("pk", "name", "capacity_kg", "active")) == [
        (van.pk, "金杯面包车", Decimal(800), True)
    ]


@pytest.mark.django_db(transaction=True)
def test_two_staff_naming_two_vehicles_alike_at_once_one_wins():
    """No lookup before the insert: the unique index makes the second insert wait for the
    first and then fail, and that failure is answered as vehicle_name_taken."""
    center = ServiceCenterFactory()
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def add() -> None:
        start.wait()
        try:
            vehicle_create(center_id=center.pk, name="金杯面包车", capacity_kg=Decimal(800))
            outcomes.append("created")
        except DomainError as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=add) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["created", "vehicle_name_taken"]
    assert Vehicle.objects.filter(service_center=center).count() == 1


def test_a_new_price_per_km_prices_the_routes_not_yet_on_the_road(staff, van):
    """A plan does not rest on the price (no day is planned again), but a planned route's
    cost is its distance at the vehicle's price: it follows the new one. A route on the road
    or done, and one of a day gone by, keep the cost they set out with."""
    today = timezone.localdate()
    routes = {
        name: Route.objects.create(
            service_center_id=van.service_center_id,
            date=today + timedelta(days=days),
            vehicle=van,
            status=status,
            distance_km=Decimal("12.35"),
            cost=Decimal("18.53"),  # 12.35 km at 1.50
        )
        for name, (days, status) in {
            "yesterday": (-1, RouteStatus.COMPLETED),
            "on_the_road": (0, RouteStatus.STARTED),
            "today": (0, RouteStatus.PLANNED),
            "tomorrow": (1, RouteStatus.PLANNED),
        }.items()
    }

    response = staff.patch(vehicle_url(van), {"cost_per_km": "2.10"}, format="json")

    assert response.status_code == 200, response.json()
    costs = {name: Route.objects.get(pk=route.pk).cost for name, route in routes.items()}
    assert costs == {
        "yesterday": Decimal("18.53"),
        "on_the_road": Decimal("18.53"),
        "today": Decimal("25.94"),  # 12.35 × 2.10 = 25.935, half up
        "tomorrow": Decimal("25.94"),
    }
    assert runs() == []
