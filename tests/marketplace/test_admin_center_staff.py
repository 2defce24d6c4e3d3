"""Staff of a service center given the admin (is_staff, with view permissions) see there
what the API shows them: their center's orders, stops, listings and people, never another
center's. Operators (superusers) see everything."""

import re

import pytest
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from logistics.models import Route, ScheduleRun, Shipment, Stop, StopStatus, Vehicle
from logistics.services.routing import order_route
from marketplace.accounts.models import User
from marketplace.accounts.tokens import RefreshToken
from orders.models import Notification, Order, Review
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
)
from tests.marketplace.test_admin import saved

pytestmark = pytest.mark.django_db

PAGES = {
    "order": "/admin/orders/order/",
    "stop": "/admin/logistics/stop/",
    "listing": "/admin/listings/listing/",
    "user": "/admin/accounts/user/",
    "notification": "/admin/orders/notification/",
    "review": "/admin/orders/review/",
    "schedulerun": "/admin/logistics/schedulerun/",
    "vehicle": "/admin/logistics/vehicle/",
}


def _center_with_an_order():
    center = ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=center))
    buyer = BuyerFactory(village=VillageFactory(service_center=center))
    listing = create_listing(farmer)
    order = place_order(buyer, listing)
    order_route(order_id=order.pk)
    run = ScheduleRun.objects.create(service_center=center, date=timezone.localdate())
    route = Route.objects.create(
        service_center=center,
        date=run.date,
        schedule_run=run,
        distance_km="12.50",
        driving_s=1470,
    )
    stop = Stop.objects.create(route=route, sequence=1, kind="pickup", lat=0, lng=0)
    told = Notification.objects.create(
        user=buyer, order=order, kind="order_confirmed", title="t", body="b"
    )
    review = Review.objects.create(order=order, buyer=buyer, rating=5)
    return {
        "order": order,
        "stop": stop,
        "listing": listing,
        "user": farmer,
        "notification": told,
        "review": review,
        "schedulerun": run,
        "vehicle": Vehicle.objects.create(service_center=center, name="van", capacity_kg=300),
        "center": center,
    }


def _shown(client: Client, model: str) -> set[int]:
    response = client.get(PAGES[model])
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_center_staff_in_the_admin_see_their_centers_rows_only():
    ours, theirs = _center_with_an_order(), _center_with_an_order()
    staff = StaffFactory(service_center=ours["center"], is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=[f"view_{model}" for model in PAGES])
    )
    client = Client()
    client.force_login(staff)

    for model, changelist in PAGES.items():
        shown = _shown(client, model)
        assert ours[model].pk in shown, model
        assert theirs[model].pk not in shown, model
        page = client.get(f"{changelist}{theirs[model].pk}/change/")
        assert page.status_code == 302, model  # Django's answer for a row not found

    operator = Client()
    operator.force_login(
        User.objects.create_superuser(phone="+8613000000001", password="op-passphrase-1", name="o")
    )
    for model in PAGES:
        assert {ours[model].pk, theirs[model].pk} <= _shown(operator, model)


def test_center_staff_who_may_only_view_read_the_page_of_each_of_their_rows():
    """Every field read only (no change permission): the listing's form, which marks its
    stock field, had none to mark (a 500)."""
    ours = _center_with_an_order()
    staff = StaffFactory(service_center=ours["center"], is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=[f"view_{model}" for model in PAGES])
    )
    client = Client()
    client.force_login(staff)

    pages = {
        model: client.get(f"{changelist}{ours[model].pk}/change/").status_code
        for model, changelist in PAGES.items()
    }

    assert pages == dict.fromkeys(PAGES, 200)
    assert (
        "西红柿" in client.get(f"{PAGES['listing']}{ours['listing'].pk}/change/").content.decode()
    )


def test_center_staff_see_only_their_centers_shipments_of_an_order():
    """An order of goods from two centers' farms: staff of one see its shipment through their
    center on the order's page, not the other center's (as in the API)."""
    ours, theirs, buyers = ServiceCenterFactory(), ServiceCenterFactory(), ServiceCenterFactory()
    ours_farmer = FarmerFactory(village=VillageFactory(service_center=ours))
    theirs_farmer = FarmerFactory(village=VillageFactory(service_center=theirs))
    buyer = BuyerFactory(village=VillageFactory(service_center=buyers))
    order = place_order(buyer, create_listing(ours_farmer), create_listing(theirs_farmer))
    order_route(order_id=order.pk)
    staff = StaffFactory(service_center=ours, is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_order", "view_shipment"])
    )
    client = Client()
    client.force_login(staff)

    page = client.get(f"{PAGES['order']}{order.pk}/change/")

    assert page.status_code == 200
    [shipments] = [
        inline.formset
        for inline in page.context["inline_admin_formsets"]
        if inline.formset.model is Shipment
    ]
    assert [form.instance.farmer_id for form in shipments.forms] == [ours_farmer.pk]


def _order_fields(client: Client, order) -> set[str]:
    page = client.get(f"{PAGES['order']}{order.pk}/change/")
    assert page.status_code == 200
    return set(flatten_fieldsets(page.context["adminform"].fieldsets))


def test_the_buyers_note_and_place_are_for_the_center_delivering_the_order_only():
    """As in the API: staff of a center that only picks up some of the order's goods do not
    read the buyer's phone, where they live or what they wrote with the order (it may say
    how to reach them); staff of the center delivering it, and operators, do."""
    picking_up, delivering = ServiceCenterFactory(), ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=picking_up))
    buyer = BuyerFactory(village=VillageFactory(service_center=delivering))
    note, reach = "到了打13900002222", {"delivery_address", "delivery_lat", "delivery_lng", "note"}
    orders = [place_order(buyer, create_listing(farmer), note=note) for _ in range(2)]
    order_route(order_id=orders[1].pk)  # one routed, one not: both go by the center's villages
    clients = {}
    for name, center in (("picking_up", picking_up), ("delivering", delivering)):
        staff = StaffFactory(service_center=center, is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_order"))
        clients[name] = Client()
        clients[name].force_login(staff)
    clients["operator"] = Client()
    clients["operator"].force_login(
        User.objects.create_superuser(phone="+8613000000001", password="op-passphrase-1", name="o")
    )

    for order in orders:
        assert reach.isdisjoint(_order_fields(clients["picking_up"], order))
        page = clients["picking_up"].get(f"{PAGES['order']}{order.pk}/change/")
        assert note not in page.content.decode()
        assert buyer.phone not in page.content.decode()
        for name in ("delivering", "operator"):
            assert reach <= _order_fields(clients[name], order), name
            page = clients[name].get(f"{PAGES['order']}{order.pk}/change/")
            assert note in page.content.decode(), name
            assert buyer.phone in page.content.decode(), name
    # The list names the buyer; their phone only to operators.
    for name, phone_shown in (("picking_up", False), ("delivering", False), ("operator", True)):
        listed = clients[name].get(PAGES["order"]).content.decode()
        assert buyer.name in listed, name
        assert (buyer.phone in listed) == phone_shown, name


def test_center_staff_who_may_change_users_cannot_raise_their_own_access():
    """Staff given the user pages (to fix a farmer's name or phone) do not make themselves
    operators, give themselves permissions, or move to another center."""
    center = ServiceCenterFactory()
    elsewhere = ServiceCenterFactory()
    staff = StaffFactory(service_center=center, is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    client = Client()
    client.force_login(staff)
    url = f"{PAGES['user']}{staff.pk}/change/"

    response = saved(
        client,
        url,
        is_superuser="on",
        service_center=elsewhere.pk,
        user_permissions=[str(p.pk) for p in Permission.objects.all()],
    )

    assert response.status_code in (200, 302)
    staff.refresh_from_db()
    assert (staff.is_superuser, staff.service_center_id) == (False, center.pk)
    assert staff.user_permissions.count() == 2


def test_center_staff_adding_a_staff_user_are_told_staff_need_a_center():
    staff = StaffFactory(service_center=ServiceCenterFactory(), is_staff=True)
    codenames = ["view_user", "add_user", "change_user"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    form = {"phone": "13900000011", "name": "新同事", "role": "staff"}
    form |= {"password1": "a-good-pass-77", "password2": "a-good-pass-77"}

    response = client.post(f"{PAGES['user']}add/", {**form, "usable_password": "true"})

    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    assert not User.objects.filter(phone="+8613900000011").exists()


def test_center_staff_who_may_change_users_leave_roles_as_they_are():
    """A role is an operator's to change: a staff member turning their own account into a
    buyer's would keep their center, which only staff have (the database refused: a 500)."""
    center = ServiceCenterFactory()
    staff = StaffFactory(service_center=center, is_staff=True)
    codenames = ["view_user", "change_user"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    village = VillageFactory(service_center=center)

    response = saved(client, f"{PAGES['user']}{staff.pk}/change/", role="buyer", village=village.pk)

    assert response.status_code in (200, 302)
    staff.refresh_from_db()
    assert (staff.role, staff.service_center_id) == ("staff", center.pk)


@pytest.mark.parametrize(
    ("make", "changes", "field"),
    [
        (FarmerFactory, {"village": ""}, "village"),
        (BuyerFactory, {"village": ""}, "village"),
        (FarmerFactory, {"buyer_kind": "shop"}, "buyer_kind"),
        (StaffFactory, {"buyer_kind": "canteen"}, "buyer_kind"),
    ],
)
def test_center_staff_breaking_a_rule_of_the_users_role_get_a_form_error(make, changes, field):
    """The role is read only to center staff, and Django then leaves the rules naming it to
    the database (a farmer or buyer lives in a village, only buyers have a kind): a 500."""
    center = ServiceCenterFactory()
    staff = StaffFactory(service_center=center, is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    client = Client()
    client.force_login(staff)
    if make is StaffFactory:
        user = make(service_center=center)
    else:
        user = make(village=VillageFactory(service_center=center))
    before = User.objects.filter(pk=user.pk).values_list("village", "buyer_kind", "name").get()

    response = saved(client, f"{PAGES['user']}{user.pk}/change/", name="新名字", **changes)

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    after = User.objects.filter(pk=user.pk).values_list("village", "buyer_kind", "name").get()
    assert after == before


def test_center_staff_move_or_add_no_farmer_or_buyer_to_another_centers_village():
    """As with villages (VillageAdmin): a farmer or buyer of another center's village is
    that center's, whose staff then see them; an operator moves people across centers."""
    center, elsewhere = ServiceCenterFactory(), ServiceCenterFactory()
    ours, theirs = VillageFactory(service_center=center), VillageFactory(service_center=elsewhere)
    farmer = FarmerFactory(village=ours)
    staff = StaffFactory(service_center=center, is_staff=True)
    codenames = ["view_user", "add_user", "change_user"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    form = {"phone": "13900000012", "name": "新农户", "role": "farmer", "usable_password": "true"}
    form |= {"password1": "a-good-pass-77", "password2": "a-good-pass-77"}

    moved = saved(client, f"{PAGES['user']}{farmer.pk}/change/", village=theirs.pk)
    added = client.post(f"{PAGES['user']}add/", {**form, "village": theirs.pk})

    for response in (moved, added):
        assert response.status_code == 200
        assert list(response.context["adminform"].form.errors) == ["village"]
    assert User.objects.get(pk=farmer.pk).village_id == ours.pk
    assert not User.objects.filter(phone="+8613900000012").exists()
    assert client.post(f"{PAGES['user']}add/", {**form, "village": ours.pk}).status_code == 302
    assert User.objects.get(phone="+8613900000012").village_id == ours.pk


def test_center_staff_see_the_sign_ins_of_their_centers_people_only():
    center = ServiceCenterFactory()
    ours = FarmerFactory(village=VillageFactory(service_center=center))
    theirs = FarmerFactory(village=VillageFactory(service_center=ServiceCenterFactory()))
    for user in (ours, theirs):
        RefreshToken.for_user(user)
    staff = StaffFactory(service_center=center, is_staff=True)
    codenames = ["view_outstandingtoken", "view_blacklistedtoken"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    for user in (ours, theirs):
        BlacklistedToken.objects.create(token=OutstandingToken.objects.get(user=user))
    client = Client()
    client.force_login(staff)

    tokens = client.get("/admin/token_blacklist/outstandingtoken/")
    revoked = client.get("/admin/token_blacklist/blacklistedtoken/")

    assert [row.user_id for row in tokens.context["cl"].result_list] == [ours.pk]
    assert [row.token.user_id for row in revoked.context["cl"].result_list] == [ours.pk]


def test_center_staff_revoke_the_sign_ins_of_their_centers_people_only():
    """A refresh token is revoked here by its id: one of another center's people is not
    theirs to revoke (that user would be signed out), though its id is easy to guess."""
    center = ServiceCenterFactory()
    ours = FarmerFactory(village=VillageFactory(service_center=center))
    theirs = FarmerFactory(village=VillageFactory(service_center=ServiceCenterFactory()))
    for user in (ours, theirs):
        RefreshToken.for_user(user)
    staff = StaffFactory(service_center=center, is_staff=True)
    codenames = ["view_outstandingtoken", "view_blacklistedtoken", "add_blacklistedtoken"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)
    add = "/admin/token_blacklist/blacklistedtoken/add/"

    refused = client.post(add, {"token": OutstandingToken.objects.get(user=theirs).pk})
    done = client.post(add, {"token": OutstandingToken.objects.get(user=ours).pk})

    assert refused.status_code == 200
    assert list(refused.context["adminform"].form.errors) == ["token"]
    assert done.status_code == 302
    assert list(BlacklistedToken.objects.values_list("token__user", flat=True)) == [ours.pk]


def test_center_staff_cancel_in_the_admin_only_the_orders_their_center_delivers():
    """As in the API (403 there): staff of a center that only picks up an order's goods do
    not call it off for the center delivering it; that center's staff do."""
    picking_up, delivering = ServiceCenterFactory(), ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=picking_up))
    buyer = BuyerFactory(village=VillageFactory(service_center=delivering))
    listing = create_listing(farmer, quantity_available=10)
    order = place_order(buyer, (listing, 2))
    order_route(order_id=order.pk)
    clients = {}
    for name, center in (("picking_up", picking_up), ("delivering", delivering)):
        staff = StaffFactory(service_center=center, is_staff=True)
        staff.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_order", "change_order"])
        )
        clients[name] = Client()
        clients[name].force_login(staff)

    def cancel(client: Client):
        return client.post(
            PAGES["order"], {"action": "cancel", "_selected_action": [order.pk]}, follow=True
        )

    refused = cancel(clients["picking_up"])

    assert [(m.tags, str(m)) for m in get_messages(refused.wsgi_request)] == [
        ("error", f"Order {order.pk}: only staff of the center delivering it cancel it.")
    ]
    order.refresh_from_db()
    assert order.status == "confirmed"
    assert list(order.events.values_list("to_status", flat=True)) == ["placed", "confirmed"]
    assert Shipment.objects.get(order=order).status == "pending"
    listing.refresh_from_db()
    assert listing.quantity_available == 8

    done = cancel(clients["delivering"])

    assert [str(m) for m in get_messages(done.wsgi_request)] == ["1 order(s) cancelled."]
    order.refresh_from_db()
    assert order.status == "cancelled"
    listing.refresh_from_db()
    assert listing.quantity_available == 10


def test_only_staff_of_the_center_handing_an_order_over_unlock_its_hand_over():
    """The wrong codes were tried at the counter of the center delivering the order, whose
    staff review them with the buyer: staff of a center that only picks up some of its
    goods do not undo that lock."""
    picking_up, delivering = ServiceCenterFactory(), ServiceCenterFactory()
    farmer = FarmerFactory(village=VillageFactory(service_center=picking_up))
    buyer = BuyerFactory(village=VillageFactory(service_center=delivering))
    order = place_order(buyer, create_listing(farmer), delivery_method="pickup")
    order_route(order_id=order.pk)
    Order.objects.filter(pk=order.pk).update(
        hand_over_wrong_codes=5, hand_over_last_wrong_code="123456"
    )
    clients = {}
    for name, center in (("picking_up", picking_up), ("delivering", delivering)):
        staff = StaffFactory(service_center=center, is_staff=True)
        staff.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_order", "change_order"])
        )
        clients[name] = Client()
        clients[name].force_login(staff)
    action = {"action": "unlock_hand_over", "_selected_action": [order.pk]}

    refused = clients["picking_up"].post(PAGES["order"], action, follow=True)

    assert [(m.tags, str(m)) for m in get_messages(refused.wsgi_request)] == [
        ("error", f"Order {order.pk}: only staff of the center delivering it unlock it.")
    ]
    locked = Order.objects.values_list("hand_over_wrong_codes", "hand_over_last_wrong_code")
    assert locked.get(pk=order.pk) == (5, "123456")

    done = clients["delivering"].post(PAGES["order"], action, follow=True)

    assert [str(m) for m in get_messages(done.wsgi_request)] == ["1 order(s) unlocked."]
    assert locked.get(pk=order.pk) == (0, "")


def test_center_staff_who_may_change_centers_change_their_own_only():
    """Staff given the center and village pages (to set their center's hours) change their
    own center and its villages; another center's, which its day plans rely on, they only
    see: its form is refused (403) and nothing changes."""
    ours, theirs = ServiceCenterFactory(), ServiceCenterFactory(name="石门镇")
    their_village = VillageFactory(service_center=theirs, name="李家村")
    codenames = [
        f"{verb}_{model}" for verb in ("view", "change") for model in ("servicecenter", "village")
    ]
    staff = StaffFactory(service_center=ours, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(staff)

    own = saved(client, f"/admin/logistics/servicecenter/{ours.pk}/change/", name="我们的站")
    assert own.status_code == 302
    ours.refresh_from_db()
    assert ours.name == "我们的站"

    center_page = f"/admin/logistics/servicecenter/{theirs.pk}/change/"
    assert client.get(center_page).status_code == 200  # shown, read only
    assert saved(client, center_page, name="改了").status_code == 403
    village_page = f"/admin/logistics/village/{their_village.pk}/change/"
    assert client.get(village_page).status_code == 200
    assert saved(client, village_page, name="改了").status_code == 403
    # nor do they move a village of theirs to another center
    our_village = VillageFactory(service_center=ours)
    moved = saved(
        client, f"/admin/logistics/village/{our_village.pk}/change/", service_center=theirs.pk
    )
    assert moved.status_code == 200  # the form again, the center refused
    assert "service_center" in moved.context["adminform"].form.errors
    theirs.refresh_from_db()
    their_village.refresh_from_db()
    our_village.refresh_from_db()
    assert (theirs.name, their_village.name) == ("石门镇", "李家村")
    assert our_village.service_center_id == ours.pk


def test_a_schedule_run_in_the_admin_shows_what_its_routes_are_now():
    """As the API's routes_now: a stop failed on the road counts as failed, not open."""
    ours = _center_with_an_order()
    run, stop = ours["schedulerun"], ours["stop"]
    Stop.objects.create(route=stop.route, sequence=2, kind="delivery", lat=0, lng=0)
    Stop.objects.filter(pk=stop.pk).update(status=StopStatus.FAILED)
    staff = StaffFactory(service_center=ours["center"], is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_schedulerun"))
    client = Client()
    client.force_login(staff)

    listed = client.get(PAGES["schedulerun"])
    [row] = listed.context["cl"].result_list
    page = client.get(f"{PAGES['schedulerun']}{run.pk}/change/")

    assert (row.now_routes, row.now_stops, row.now_stops_open, row.now_stops_failed) == (1, 2, 1, 1)
    assert str(row.now_distance_km) == "12.50"
    assert row.now_driving_s == 1470
    assert page.status_code == 200
    shown = page.content.decode()
    assert "Stops failed:" in shown
    assert "12.50" in shown
    # 24.5 minutes of driving, rounded as the run's summary and the API round them
    assert re.search(r'Driving minutes now:</label>\s*<div class="readonly">24</div>', shown)
    assert '<td class="field-driving_min_now">24</td>' in listed.content.decode()
