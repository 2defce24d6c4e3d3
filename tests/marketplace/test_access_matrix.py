"""Who may call what, for every operation of the API: an access-control (IDOR) matrix.

One county, built once for the module: centers A and B, each with staff and a vehicle;
farmers of A (two) and of B with listings; buyers of A (two) and of B with orders (a routed
one with two farmers' lines, one picked up at center A of a farm of B, a prepaid one not
paid, another buyer's), each center's day planned (runs, routes, stops), a listing photo
and notifications. Every operation of the schema is called as anonymous and as each party,
naming the rows of each party, and answers as DESIGN.md and README.md say: 2xx for whom
it is for, 401 for anonymous where signing in is needed, 403 for a role that may never call
the path, 404 for an object the caller may not see. A refused write changes nothing.
Lists hold only the caller's rows, whatever their filters say; an order shows each viewer
only what is theirs to see."""

import json
import re
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from listings.models import Listing, ListingPhoto, ListingStatus
from listings.photos import listing_photo_add
from logistics.models import (
    Route,
    ScheduleRun,
    Shipment,
    Stop,
    TrackingEvent,
    Vehicle,
)
from logistics.services import schedule
from logistics.services.routing import order_route
from marketplace.accounts.models import User
from marketplace.accounts.tokens import RefreshToken
from orders.models import Notification, Order, OrderEvent, OrderLine, Review
from orders.notifications import notify
from tests.clock import on_day
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
)
from tests.listings.test_photos import image_file

ROLES = ("anonymous", "buyer_a", "buyer_a2", "farmer_a", "farmer_a2", "farmer_b", "staff_a")
ROLES += ("staff_b",)  # staff of no center there is none (a check constraint)
SIGNED_IN = frozenset(ROLES) - {"anonymous"}
BUYERS = frozenset({"buyer_a", "buyer_a2"})
FARMERS = frozenset({"farmer_a", "farmer_a2", "farmer_b"})
STAFF = frozenset({"staff_a", "staff_b"})
V1 = "/api/v1"

COUNTY: dict = {}  # ids by name, filled by the module's county fixture


def _village_near(center, dlat: str, dlng: str):
    return VillageFactory(
        service_center=center, lat=center.lat + Decimal(dlat), lng=center.lng + Decimal(dlng)
    )


def _county() -> dict:
    a = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    b = ServiceCenterFactory(lat=Decimal("30.500000"), lng=Decimal("119.900000"))
    vehicle_a = Vehicle.objects.create(service_center=a, name="van", capacity_kg=Decimal(300))
    vehicle_b = Vehicle.objects.create(service_center=b, name="truck", capacity_kg=Decimal(500))
    # exact places and addresses, to tell who reads them (the village's point is public)
    farmer_a = FarmerFactory(
        village=_village_near(a, "0.01", "0.02"),
        lat=Decimal("30.213579"),
        lng=Decimal("119.624681"),
        address="李家村三组12号",
    )
    farmer_a2 = FarmerFactory(village=_village_near(a, "0.02", "0.02"))
    farmer_b = FarmerFactory(village=_village_near(b, "0.01", "0.01"))
    listing_a = create_listing(farmer_a, unit="kg", quantity_available=Decimal(500))
    listing_a2 = create_listing(farmer_a2, title="苹果", unit="jin")
    listing_b = create_listing(farmer_b, title="白菜", unit="kg")
    draft_a = create_listing(farmer_a, title="草稿")
    Listing.objects.filter(pk=draft_a.pk).update(status=ListingStatus.DRAFT)  # never published
    archived_a = create_listing(farmer_a, title="旧的")
    Listing.objects.filter(pk=archived_a.pk).update(status=ListingStatus.ARCHIVED)
    photo_a = listing_photo_add(listing=listing_a, upload=image_file("JPEG"))
    photo_a2 = listing_photo_add(listing=listing_a2, upload=image_file("JPEG"))
    buyer_a = BuyerFactory(
        village=_village_near(a, "-0.01", "0.01"),
        lat=Decimal("30.191357"),
        lng=Decimal("119.611357"),
        address="东门路88号",
    )
    buyer_a2 = BuyerFactory(village=_village_near(a, "-0.02", "0.01"))
    buyer_b = BuyerFactory(village=_village_near(b, "-0.01", "0.01"))
    home = order_route(
        order_id=place_order(buyer_a, (listing_a, 5), (listing_a2, 3), note="gate 1234").pk
    )
    pickup = order_route(order_id=place_order(buyer_a, (listing_b, 4), delivery_method="pickup").pk)
    prepaid = place_order(buyer_a, (listing_a, 1), payment_method="prepaid")
    other = order_route(order_id=place_order(buyer_a2, (listing_a, 2)).pk)
    order_b = order_route(order_id=place_order(buyer_b, (listing_b, 1)).pk)
    runs = {}
    for center, order in ((a, home), (b, order_b)):
        day = Shipment.objects.filter(order=order).values_list("pickup_date", flat=True)[0]
        run = ScheduleRun.objects.create(service_center=center, date=day)
        schedule.schedule_run_execute(run_id=run.pk)
        runs[center.pk] = run
    staff_a, staff_b = StaffFactory(service_center=a), StaffFactory(service_center=b)
    note_a = notify(user=buyer_a, kind="order_confirmed", title="t", body="b", order=home)
    note_a2 = notify(user=buyer_a2, kind="order_confirmed", title="t", body="b", order=other)
    note_fa = notify(user=farmer_a, kind="order_confirmed", title="t", body="b", order=home)

    def ship(order, farmer):
        return Shipment.objects.get(order=order, farmer=farmer).pk

    def line(order, farmer):
        return OrderLine.objects.get(order=order, farmer=farmer).pk

    route_a = Route.objects.filter(service_center=a).order_by("pk").first()
    route_b = Route.objects.filter(service_center=b).order_by("pk").first()
    users = {
        "buyer_a": buyer_a,
        "buyer_a2": buyer_a2,
        "buyer_b": buyer_b,
        "farmer_a": farmer_a,
        "farmer_a2": farmer_a2,
        "farmer_b": farmer_b,
        "staff_a": staff_a,
        "staff_b": staff_b,
    }
    return {
        "users": {name: user.pk for name, user in users.items()},
        "tokens": {
            name: str(RefreshToken.for_user(user).access_token) for name, user in users.items()
        },
        "center_a": a.pk,
        "center_b": b.pk,
        "vehicle_a": vehicle_a.pk,
        "vehicle_b": vehicle_b.pk,
        "listing_a": listing_a.pk,
        "listing_a2": listing_a2.pk,
        "listing_b": listing_b.pk,
        "draft_a": draft_a.pk,
        "archived_a": archived_a.pk,
        "photo_a": photo_a.pk,
        "photo_a2": photo_a2.pk,
        "home": home.pk,
        "pickup": pickup.pk,
        "prepaid": prepaid.pk,
        "other": other.pk,
        "order_b": order_b.pk,
        "line_home_a": line(home, farmer_a),
        "line_home_a2": line(home, farmer_a2),
        "line_other_a": line(other, farmer_a),
        "line_b": line(order_b, farmer_b),
        "ship_home_a": ship(home, farmer_a),
        "ship_home_a2": ship(home, farmer_a2),
        "ship_pickup": ship(pickup, farmer_b),
        "ship_other": ship(other, farmer_a),
        "ship_b": ship(order_b, farmer_b),
        "run_a": runs[a.pk].pk,
        "run_b": runs[b.pk].pk,
        "route_a": route_a.pk,
        "route_b": route_b.pk,
        "stop_a": route_a.stops.order_by("sequence").first().pk,
        "stop_b": route_b.stops.order_by("sequence").first().pk,
        "note_a": note_a.pk,
        "note_a2": note_a2.pk,
        "note_fa": note_fa.pk,
        "day": str(runs[a.pk].date),
        # what only some may read: an order's delivery code its buyer; a buyer's phone
        # those who bring them goods (farmers of a confirmed order, the delivering center)
        "codes": {order.delivery_code: {"buyer_a"} for order in (home, pickup, prepaid)}
        | {other.delivery_code: {"buyer_a2"}, order_b.delivery_code: set()},
        "phones": {
            buyer_a.phone: {"buyer_a", "farmer_a", "farmer_a2", "farmer_b", "staff_a"},
            buyer_a2.phone: {"buyer_a2", "farmer_a", "staff_a"},
            buyer_b.phone: {"farmer_b", "staff_b"},
            # a farmer's: theirs, and the staff who pick their goods up
            farmer_a.phone: {"farmer_a", "staff_a"},
            farmer_a2.phone: {"farmer_a2", "staff_a"},
            farmer_b.phone: {"farmer_b", "staff_b"},
            # a buyer's home: the farmers of a confirmed order and the delivering center
            "东门路88号": {"buyer_a", "farmer_a", "farmer_a2", "staff_a"},
            # (of a home delivery: an order collected at the center holds its village's point)
            "30.191357": {"buyer_a", "farmer_a", "farmer_a2", "staff_a"},
            # a farm: its farmer, and the staff who pick its goods up
            "李家村三组12号": {"farmer_a", "staff_a"},
            "30.213579": {"farmer_a", "staff_a"},
        },
    }


@pytest.fixture(scope="module")
def county(django_db_setup, django_db_blocker):
    """The county, built once and rolled back after the module; each test runs in a
    savepoint of it, so a write one test lets through the next never sees."""
    cut_off = (timezone.localtime().hour + 12) % 24 or 23
    days = override_settings(ROUTING_CUTOFF_HOUR=cut_off, NIGHTLY_SCHEDULE_HOUR=24)
    with django_db_blocker.unblock(), transaction.atomic():
        with days:
            COUNTY.update(_county())
        yield COUNTY
        COUNTY.clear()
        transaction.set_rollback(True)


def client(role: str) -> APIClient:
    api = APIClient()
    if role != "anonymous":
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {COUNTY['tokens'][role]}")
    return api


def fingerprint() -> str:
    """Every row a refused write might touch, as it stands."""
    models = (Listing, ListingPhoto, Order, OrderLine, OrderEvent, Shipment, TrackingEvent)
    models += (Stop, Route, ScheduleRun, Vehicle, Notification, Review, User)
    return json.dumps(
        [list(model.objects.order_by("pk").values()) for model in models], default=str
    )


def call(role: str, method: str, path: str, body=None):
    api = client(role)
    url = V1 + path.format(**COUNTY)
    if method == "GET":
        return api.get(url)
    if body == "photo":
        return api.post(url, {"image": image_file("JPEG")}, format="multipart")
    if isinstance(body, dict):  # county names in braces, as in paths
        body = {k: v.format(**COUNTY) if isinstance(v, str) else v for k, v in body.items()}
    return getattr(api, method.lower())(url, body if body is not None else {}, format="json")


# --- the matrix -----------------------------------------------------------------------------
# (schema operation, method, path (county names in braces), body, {role: status of success},
#  roles answered 403 (a role that may never call it), whether anonymous may call it).
# Everyone else signed in: 404 (the object is not theirs to see); anonymous: 401.
def row(operation, path, ok, *, body=None, forbidden=(), public=False):
    method = operation.split(" ")[0]
    return (operation, method, path, body, dict(ok), frozenset(forbidden), public)


def every(roles, status):
    return dict.fromkeys(roles, status)


VIEW_ORDER = "GET /api/v1/orders/{id}/"
MATRIX = [
    # reference data and public reads
    row("GET /api/v1/villages/", "/villages/", every(ROLES, 200), public=True),
    row("GET /api/v1/service-centers/", "/service-centers/", every(ROLES, 200), public=True),
    row(
        "GET /api/v1/service-centers/{id}/",
        "/service-centers/{center_b}/",
        every(ROLES, 200),
        public=True,
    ),
    row("GET /api/v1/categories/", "/categories/", every(ROLES, 200), public=True),
    row("GET /api/v1/farmers/{id}/", "/farmers/{users[farmer_b]}/", every(ROLES, 200), public=True),
    # a farmer's public profile is a farmer's: a buyer's or staff's id is no farmer
    *[
        row("GET /api/v1/farmers/{id}/", f"/farmers/{{users[{who}]}}/", {}, public=True)
        for who in ("buyer_a", "staff_a")
    ],
    row("GET /api/v1/listings/", "/listings/", every(ROLES, 200), public=True),
    row("GET /api/v1/listings/{id}/", "/listings/{listing_b}/", every(ROLES, 200), public=True),
    # a draft is its farmer's only
    row("GET /api/v1/listings/{id}/", "/listings/{draft_a}/", {"farmer_a": 200}, public=True),
    # listings: their farmer writes; buyers and staff may never (403)
    *[
        row(
            op,
            path,
            {"farmer_a": status},
            body=body,
            forbidden=BUYERS | STAFF,
        )
        for op, path, body, status in (
            ("PATCH /api/v1/listings/{id}/", "/listings/{listing_a}/", {"title": "x"}, 200),
            ("DELETE /api/v1/listings/{id}/", "/listings/{listing_a}/", None, 200),
            ("POST /api/v1/listings/{id}/pause/", "/listings/{listing_a}/pause/", None, 200),
            ("POST /api/v1/listings/{id}/archive/", "/listings/{listing_a}/archive/", None, 200),
            ("POST /api/v1/listings/{id}/publish/", "/listings/{draft_a}/publish/", None, 200),
            ("POST /api/v1/listings/{id}/photos/", "/listings/{listing_a}/photos/", "photo", 201),
            (
                "DELETE /api/v1/listings/{id}/photos/{photo_id}/",
                "/listings/{listing_a}/photos/{photo_a}/",
                None,
                204,
            ),
        )
    ],
    # another farmer's photo named under one's own listing
    row(
        "DELETE /api/v1/listings/{id}/photos/{photo_id}/",
        "/listings/{listing_a}/photos/{photo_a2}/",
        {},
        forbidden=BUYERS | STAFF,
    ),
    row(
        "POST /api/v1/listings/",
        "/listings/",
        every(FARMERS, 400),  # an empty body: the farmer got past the role check
        forbidden=BUYERS | STAFF,
    ),
    # own profile and session
    row("GET /api/v1/me/", "/me/", every(SIGNED_IN, 200)),
    row("PATCH /api/v1/me/", "/me/", every(SIGNED_IN, 200), body={}),
    row(
        "POST /api/v1/auth/password/",
        "/auth/password/",
        every(SIGNED_IN, 400),
        body={"current_password": "wrong-wrong-wrong", "new_password": "x"},
    ),
    row("POST /api/v1/auth/register/", "/auth/register/", every(ROLES, 400), public=True),
    row("POST /api/v1/auth/token/", "/auth/token/", every(ROLES, 400), public=True),
    row("POST /api/v1/auth/token/refresh/", "/auth/token/refresh/", every(ROLES, 400), public=True),
    row("POST /api/v1/auth/logout/", "/auth/logout/", every(ROLES, 400), public=True),
    row("POST /api/v1/payments/webhook/", "/payments/webhook/", every(ROLES, 401), public=True),
    # orders: the buyer, the farmers of its lines, staff of the centers it goes through
    row(VIEW_ORDER, "/orders/{home}/", every({"buyer_a", "farmer_a", "farmer_a2", "staff_a"}, 200)),
    row(VIEW_ORDER, "/orders/{pickup}/", every({"buyer_a", "farmer_b", "staff_a", "staff_b"}, 200)),
    row(VIEW_ORDER, "/orders/{prepaid}/", every({"buyer_a", "farmer_a", "staff_a"}, 200)),
    row(VIEW_ORDER, "/orders/{other}/", every({"buyer_a2", "farmer_a", "staff_a"}, 200)),
    row(VIEW_ORDER, "/orders/{order_b}/", every({"farmer_b", "staff_b"}, 200)),
    row("GET /api/v1/orders/", "/orders/", every(SIGNED_IN, 200)),
    row(
        "POST /api/v1/orders/",
        "/orders/",
        every(BUYERS, 400),
        forbidden=FARMERS | STAFF,
    ),
    # cancel: the buyer, or staff of the delivering center; a farmer or a pickup-only
    # center that sees the order is refused with 403
    row(
        "POST /api/v1/orders/{id}/cancel/",
        "/orders/{home}/cancel/",
        every({"buyer_a", "staff_a"}, 200),
        forbidden={"farmer_a", "farmer_a2"},
    ),
    row(
        "POST /api/v1/orders/{id}/cancel/",
        "/orders/{pickup}/cancel/",
        every({"buyer_a", "staff_a"}, 200),
        forbidden={"farmer_b", "staff_b"},
    ),
    row(
        "POST /api/v1/orders/{id}/cancel/",
        "/orders/{prepaid}/cancel/",
        every({"buyer_a", "staff_a"}, 200),
        forbidden={"farmer_a"},
    ),
    row(
        "POST /api/v1/orders/{id}/cancel/",
        "/orders/{other}/cancel/",
        every({"buyer_a2", "staff_a"}, 200),
        forbidden={"farmer_a"},
    ),
    row(
        "POST /api/v1/orders/{id}/cancel/",
        "/orders/{order_b}/cancel/",
        {"staff_b": 200},
        forbidden={"farmer_b"},
    ),
    # review: buyers only (403 for others); the buyer's order is not delivered yet (409)
    row(
        "POST /api/v1/orders/{id}/review/",
        "/orders/{home}/review/",
        {"buyer_a": 409},
        body={"rating": 5},
        forbidden=FARMERS | STAFF,
    ),
    # reject: the line's farmer only; another farmer's line of an order one sees, or one's
    # line named under another order, is 404
    *[
        row(
            "POST /api/v1/orders/{id}/lines/{line_id}/reject/",
            path,
            ok,
            body={"reason": "hail"},
            forbidden=BUYERS | STAFF,
        )
        for path, ok in (
            ("/orders/{home}/lines/{line_home_a}/reject/", {"farmer_a": 200}),
            ("/orders/{home}/lines/{line_home_a2}/reject/", {"farmer_a2": 200}),
            ("/orders/{home}/lines/{line_other_a}/reject/", {}),
            ("/orders/{other}/lines/{line_home_a}/reject/", {}),
            ("/orders/{order_b}/lines/{line_b}/reject/", {"farmer_b": 200}),
        )
    ],
    # shipments: staff of its centers, its farmer, its buyer
    row(
        "GET /api/v1/shipments/{id}/",
        "/shipments/{ship_home_a}/",
        every({"buyer_a", "farmer_a", "staff_a"}, 200),
    ),
    row(
        "GET /api/v1/shipments/{id}/",
        "/shipments/{ship_pickup}/",
        every({"buyer_a", "farmer_b", "staff_a", "staff_b"}, 200),
    ),
    row(
        "GET /api/v1/shipments/{id}/",
        "/shipments/{ship_b}/",
        every({"farmer_b", "staff_b"}, 200),
    ),
    row("GET /api/v1/shipments/", "/shipments/", every(SIGNED_IN, 200)),
    # receive and hand-over: staff of the destination center (the goods are not there
    # yet: 409); staff of the origin center see the shipment but may not (404)
    row(
        "POST /api/v1/shipments/{id}/receive/",
        "/shipments/{ship_pickup}/receive/",
        {"staff_a": 409},
        forbidden=BUYERS | FARMERS,
    ),
    row(
        "POST /api/v1/shipments/{id}/hand-over/",
        "/shipments/{ship_pickup}/hand-over/",
        {"staff_a": 409},
        body={"delivery_code": "000000"},
        forbidden=BUYERS | FARMERS,
    ),
    row(
        "POST /api/v1/shipments/{id}/receive/",
        "/shipments/{ship_b}/receive/",
        {"staff_b": 409},
        forbidden=BUYERS | FARMERS,
    ),
    row("GET /api/v1/my/pickups/", "/my/pickups/", every(FARMERS, 200), forbidden=BUYERS | STAFF),
    # a center's fleet: its staff only; anyone else, whatever their role, 404
    row(
        "GET /api/v1/service-centers/{center_id}/vehicles/",
        "/service-centers/{center_a}/vehicles/",
        {"staff_a": 200},
    ),
    row(
        "POST /api/v1/service-centers/{center_id}/vehicles/",
        "/service-centers/{center_a}/vehicles/",
        {"staff_a": 201},
        body={"name": "new van", "capacity_kg": "200"},
    ),
    row(
        "GET /api/v1/service-centers/{center_id}/vehicles/{id}/",
        "/service-centers/{center_a}/vehicles/{vehicle_a}/",
        {"staff_a": 200},
    ),
    row(
        "PATCH /api/v1/service-centers/{center_id}/vehicles/{id}/",
        "/service-centers/{center_a}/vehicles/{vehicle_a}/",
        {"staff_a": 200},
        body={"name": "renamed"},
    ),
    row(
        "DELETE /api/v1/service-centers/{center_id}/vehicles/{id}/",
        "/service-centers/{center_a}/vehicles/{vehicle_a}/",
        {"staff_a": 200},  # routes refer to it: deactivated
    ),
    # another center's vehicle under one's own center
    *[
        row(op, "/service-centers/{center_a}/vehicles/{vehicle_b}/", {}, body=body)
        for op, body in (
            ("GET /api/v1/service-centers/{center_id}/vehicles/{id}/", None),
            ("PATCH /api/v1/service-centers/{center_id}/vehicles/{id}/", {"name": "mine"}),
            ("DELETE /api/v1/service-centers/{center_id}/vehicles/{id}/", None),
        )
    ],
    # another center's fleet, planning, runs, routes and stops
    row(
        "GET /api/v1/service-centers/{center_id}/vehicles/",
        "/service-centers/{center_b}/vehicles/",
        {"staff_b": 200},
    ),
    row(
        "POST /api/v1/service-centers/{center_id}/vehicles/",
        "/service-centers/{center_b}/vehicles/",
        {"staff_b": 201},
        body={"name": "new truck", "capacity_kg": "200"},
    ),
    row(
        "POST /api/v1/service-centers/{id}/schedule/",
        "/service-centers/{center_b}/schedule/",
        {"staff_b": 202},
        body={"date": "{day}"},
        forbidden=BUYERS | FARMERS,
    ),
    row(
        "GET /api/v1/schedule-runs/{id}/",
        "/schedule-runs/{run_b}/",
        {"staff_b": 200},
        forbidden=BUYERS | FARMERS,
    ),
    row("GET /api/v1/routes/{id}/map.svg", "/routes/{route_b}/map.svg", {"staff_b": 200}),
    row(
        "GET /api/v1/routes/{id}/load-list.csv",
        "/routes/{route_b}/load-list.csv",
        {"staff_b": 200},
    ),
    row(
        "POST /api/v1/stops/{id}/complete/",
        "/stops/{stop_b}/complete/",
        {"staff_b": 409},
        body={"outcome": "failed", "reason": "closed road"},
        forbidden=BUYERS | FARMERS,
    ),
    row(
        "POST /api/v1/notifications/{id}/read/",
        "/notifications/{note_a2}/read/",
        {"buyer_a2": 200},
    ),
    row("GET /api/v1/listings/{id}/", "/listings/{archived_a}/", {"farmer_a": 200}, public=True),
    row(
        "PATCH /api/v1/listings/{id}/",
        "/listings/{listing_b}/",
        {"farmer_b": 200},
        body={"title": "x"},
        forbidden=BUYERS | STAFF,
    ),
    row(
        "POST /api/v1/listings/{id}/photos/",
        "/listings/{listing_a2}/photos/",
        {"farmer_a2": 201},
        body="photo",
        forbidden=BUYERS | STAFF,
    ),
    # planning: staff of that center (other roles may never: 403)
    row(
        "POST /api/v1/service-centers/{id}/schedule/",
        "/service-centers/{center_a}/schedule/",
        {"staff_a": 202},
        body={"date": "{day}"},
        forbidden=BUYERS | FARMERS,
    ),
    row(
        "GET /api/v1/schedule-runs/{id}/",
        "/schedule-runs/{run_a}/",
        {"staff_a": 200},
        forbidden=BUYERS | FARMERS,
    ),
    row(
        "GET /api/v1/schedule-runs/",
        "/schedule-runs/",
        every(STAFF, 200),
        forbidden=BUYERS | FARMERS,
    ),
    # routes answer anyone but their center's staff as if they did not exist
    row("GET /api/v1/routes/{id}/", "/routes/{route_a}/", {"staff_a": 200}),
    row("GET /api/v1/routes/{id}/", "/routes/{route_b}/", {"staff_b": 200}),
    row("GET /api/v1/routes/{id}/map.svg", "/routes/{route_a}/map.svg", {"staff_a": 200}),
    row(
        "GET /api/v1/routes/{id}/load-list.csv",
        "/routes/{route_a}/load-list.csv",
        {"staff_a": 200},
    ),
    row("GET /api/v1/routes/", "/routes/", every(SIGNED_IN, 200)),
    # stops: staff of the route's center (the route's day has not come: 409)
    row(
        "POST /api/v1/stops/{id}/complete/",
        "/stops/{stop_a}/complete/",
        {"staff_a": 409},
        body={"outcome": "failed", "reason": "closed road"},
        forbidden=BUYERS | FARMERS,
    ),
    # notifications: one's own
    row("GET /api/v1/notifications/", "/notifications/", every(SIGNED_IN, 200)),
    row(
        "POST /api/v1/notifications/{id}/read/",
        "/notifications/{note_a}/read/",
        {"buyer_a": 200},
    ),
    row(
        "POST /api/v1/notifications/{id}/read/",
        "/notifications/{note_fa}/read/",
        {"farmer_a": 200},
    ),
    row(
        "POST /api/v1/notifications/read-all/",
        "/notifications/read-all/",
        every(SIGNED_IN, 200),
    ),
]
# Not in the matrix: POST /auth/logout-all/ (it signs the caller's every token out, and
# the module's tokens are shared), tested as anonymous only below.
NOT_IN_MATRIX = {"POST /api/v1/auth/logout-all/", "GET /api/v1/categories/{id}/"}
NOT_IN_MATRIX |= {"GET /api/v1/villages/{id}/"}  # reference data, as their lists


def assert_nothing_hidden_from(role: str, response) -> None:
    """No delivery code but the caller's own orders', no buyer's phone but those the caller
    may call, and no password hash, anywhere in an answer."""
    text = response.content.decode("utf-8", "replace")
    for secret, readers in (*COUNTY["codes"].items(), *COUNTY["phones"].items()):
        if role not in readers:
            assert not re.search(rf"(?<![0-9]){re.escape(secret)}(?![0-9])", text), secret
    assert "pbkdf2_" not in text
    assert "argon2" not in text


def expected(ok, forbidden, public, role) -> int:
    if role in ok:
        return ok[role]
    if role == "anonymous" and not public:
        return 401
    if role in forbidden:
        return 403
    return 404


CASES = [
    pytest.param(
        (method, path, body),
        role,
        expected(ok, forbidden, public, role),
        id=f"{path} {method} as {role}",
    )
    for _op, method, path, body, ok, forbidden, public in MATRIX
    for role in ROLES
]


def test_the_matrix_covers_every_operation_of_the_schema():
    schema = SchemaGenerator().get_schema(public=True)
    operations = {
        f"{method.upper()} {path}"
        for path, methods in schema["paths"].items()
        for method in methods
        if method in ("get", "post", "put", "patch", "delete")
    }
    covered = {op for op, *_ in MATRIX}
    assert covered <= operations
    assert operations - covered == NOT_IN_MATRIX


@pytest.mark.django_db
@pytest.mark.parametrize(("sent", "role", "status"), CASES)
def test_each_party_is_answered_as_the_contract_says(county, sent, role, status):
    method, path, body = sent
    before = fingerprint() if method != "GET" and status in (401, 403, 404) else None
    response = call(role, method, path, body)
    assert response.status_code == status, response.content[:300]
    assert_nothing_hidden_from(role, response)
    if before is not None:
        assert fingerprint() == before, "a refused write changed the database"
        assert response["Content-Type"] == "application/problem+json"


@pytest.mark.django_db
def test_logout_all_needs_a_sign_in(county):
    assert call("anonymous", "POST", "/auth/logout-all/").status_code == 401


# --- lists: only the caller's rows, whatever the filters ------------------------------------
def ids(role: str, path: str) -> set[int]:
    response = call(role, "GET", path)
    assert response.status_code == 200, response.content[:300]
    assert_nothing_hidden_from(role, response)
    return {item["id"] for item in response.json()["results"]}


def named(*names: str) -> set[int]:
    return {COUNTY[name] for name in names}


ORDERS_OF = {
    "buyer_a": ("home", "pickup", "prepaid"),
    "buyer_a2": ("other",),
    "farmer_a": ("home", "prepaid", "other"),
    "farmer_a2": ("home",),
    "farmer_b": ("pickup", "order_b"),
    "staff_a": ("home", "pickup", "prepaid", "other"),
    "staff_b": ("pickup", "order_b"),
}
SHIPMENTS_OF = {
    "buyer_a": ("ship_home_a", "ship_home_a2", "ship_pickup"),
    "buyer_a2": ("ship_other",),
    "farmer_a": ("ship_home_a", "ship_other"),
    "farmer_a2": ("ship_home_a2",),
    "farmer_b": ("ship_pickup", "ship_b"),
    "staff_a": ("ship_home_a", "ship_home_a2", "ship_pickup", "ship_other"),
    "staff_b": ("ship_pickup", "ship_b"),
}
NOTIFICATIONS_OF = {  # those the county told beside what routing did
    "buyer_a": ("note_a",),
    "buyer_a2": ("note_a2",),
    "farmer_a": ("note_fa",),
}
ORDER_QUERIES = (
    "",
    "?page_size=100",
    "?status=confirmed&status=awaiting_payment",
    "?buyer={users[buyer_b]}",
)
SHIPMENT_QUERIES = (
    "",
    "?origin_center={center_b}",
    "?destination_center={center_b}",
    "?origin_center={center_a}&destination_center={center_a}",
    "?farmer={users[farmer_b]}",
    "?order={order_b}",
)


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(SIGNED_IN))
def test_lists_hold_only_the_callers_rows_whatever_the_filters(county, role):
    for query in ORDER_QUERIES:
        assert ids(role, "/orders/" + query) <= named(*ORDERS_OF[role]), query
    assert ids(role, "/orders/") == named(*ORDERS_OF[role])
    for query in SHIPMENT_QUERIES:
        assert ids(role, "/shipments/" + query) <= named(*SHIPMENTS_OF[role]), query
    assert ids(role, "/shipments/") == named(*SHIPMENTS_OF[role])
    own_routes = {
        "staff_a": set(
            Route.objects.filter(service_center=COUNTY["center_a"]).values_list("pk", flat=True)
        ),
        "staff_b": set(
            Route.objects.filter(service_center=COUNTY["center_b"]).values_list("pk", flat=True)
        ),
    }.get(role, set())
    assert ids(role, "/routes/") == own_routes
    for center in ("center_a", "center_b"):
        assert ids(role, f"/routes/?service_center={{{center}}}&date={{day}}") <= own_routes
    told = set(
        Notification.objects.filter(user_id=COUNTY["users"][role]).values_list("pk", flat=True)
    )
    assert told >= named(*NOTIFICATIONS_OF.get(role, ()))
    assert ids(role, "/notifications/?page_size=100") == told
    for order in ("home", "other", "order_b"):
        assert ids(role, f"/notifications/?order={{{order}}}") <= told
    # a farmer's own listings are theirs only; the public search never lists a draft
    if role in FARMERS:
        mine = set(
            Listing.objects.filter(farmer_id=COUNTY["users"][role]).values_list("pk", flat=True)
        )
        assert ids(role, "/listings/?mine=true") == mine
        assert ids(role, "/listings/?mine=true&status=draft") <= mine
    else:
        assert call(role, "GET", "/listings/?mine=true").status_code == 403
    public = ids(role, "/listings/?page_size=100") | ids(
        role, "/listings/?farmer={users[farmer_a]}"
    )
    assert not public & named("draft_a", "archived_a")


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(STAFF))
def test_staff_list_their_own_centers_runs_only(county, role):
    own = "run_a" if role == "staff_a" else "run_b"
    assert ids(role, "/schedule-runs/") == named(own)
    assert ids(
        role, "/schedule-runs/?service_center={center_a}&service_center={center_b}"
    ) == named(own)


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(FARMERS))
def test_a_farmers_pickups_are_their_own(county, role):
    response = call(role, "GET", "/my/pickups/?farmer={users[farmer_b]}&page_size=100")
    assert response.status_code == 200
    farmers = {item["farmer"] for item in response.json()["results"]}
    assert farmers <= {COUNTY["users"][role]}


@pytest.mark.django_db
def test_anonymous_lists_no_one_s_own_listings(county):
    response = call("anonymous", "GET", "/listings/?mine=true")
    assert response.status_code in (200, 401)
    if response.status_code == 200:
        assert response.json()["results"] == []


# --- what each viewer of an order sees ------------------------------------------------------
def order_as(role: str, order: str) -> dict:
    response = call(role, "GET", f"/orders/{{{order}}}/")
    assert response.status_code == 200, response.content[:300]
    assert_nothing_hidden_from(role, response)
    return response.json()


@pytest.mark.django_db
def test_an_order_shows_each_viewer_their_part(county):
    users = COUNTY["users"]
    buyer = order_as("buyer_a", "home")
    assert buyer["delivery_code"]
    assert buyer["buyer"]["phone"]
    assert buyer["note"] == "gate 1234"
    assert len(buyer["lines"]) == 2
    assert buyer["total"] is not None
    for farmer in ("farmer_a", "farmer_a2"):
        seen = order_as(farmer, "home")
        assert seen["delivery_code"] is None
        assert {line["farmer"] for line in seen["lines"]} == {users[farmer]}
        assert {shipment["farmer"] for shipment in seen["shipments"]} == {users[farmer]}
        assert seen["total"] is None
        assert seen["delivery_fee"] is None
        assert seen["refund_due"] is None
        assert seen["buyer"]["phone"] == buyer["buyer"]["phone"]  # confirmed: theirs to call
    staff = order_as("staff_a", "home")
    assert staff["delivery_code"] is None
    assert staff["buyer"]["phone"] == buyer["buyer"]["phone"]
    # not confirmed (awaiting payment): the farmer sees no way to reach the buyer
    waiting = order_as("farmer_a", "prepaid")
    assert waiting["buyer"]["phone"] is None
    assert waiting["delivery_address"] == ""
    assert waiting["note"] == ""
    assert waiting["delivery_lat"] is None
    assert waiting["delivery_code"] is None
    # a center that only picks up sees neither the buyer's phone nor the other center's legs
    pickup_only = order_as("staff_b", "pickup")
    assert pickup_only["buyer"]["phone"] is None
    assert pickup_only["delivery_code"] is None
    assert pickup_only["delivery_address"] == ""
    assert pickup_only["note"] == ""
    assert order_as("staff_a", "pickup")["delivery_code"] is None
    # collected at the center: the order holds its village's point, not the buyer's home
    collected = order_as("farmer_b", "pickup")
    village = Order.objects.get(pk=COUNTY["pickup"]).delivery_village
    assert (collected["delivery_lat"], collected["delivery_address"]) == (str(village.lat), "")


@pytest.mark.django_db
@pytest.mark.parametrize("role", sorted(SIGNED_IN))
def test_a_shipment_shows_no_delivery_code_and_the_cash_only_to_whom_it_is_for(county, role):
    for name in SHIPMENTS_OF[role]:
        response = call(role, "GET", f"/shipments/{{{name}}}/")
        assert response.status_code == 200
        data = response.json()
        assert "delivery_code" not in json.dumps(data)
        if role in FARMERS:
            assert data["cash_collected"] is None
        if role not in STAFF:
            assert data["cash_to_collect"] is None


# --- what a body, a key or an ETag might widen ----------------------------------------------
@pytest.mark.django_db
def test_a_body_names_no_role_center_or_owner_of_its_own(county):
    users = COUNTY["users"]
    before = User.objects.filter(pk=users["buyer_a"]).values("role", "service_center", "is_staff")
    before = before.get()
    escalate = {"role": "staff", "service_center": COUNTY["center_a"], "is_staff": True}
    assert call("buyer_a", "PATCH", "/me/", escalate).status_code in (200, 400)
    after = User.objects.filter(pk=users["buyer_a"]).values("role", "service_center", "is_staff")
    assert after.get() == before
    taken = {"farmer": users["farmer_a"], "status": "active"}
    assert call("farmer_a2", "PATCH", "/listings/{listing_a2}/", taken).status_code in (200, 400)
    assert Listing.objects.get(pk=COUNTY["listing_a2"]).farmer_id == users["farmer_a2"]
    van = {"name": "elsewhere", "capacity_kg": "100", "service_center": COUNTY["center_b"]}
    response = call("staff_a", "POST", "/service-centers/{center_a}/vehicles/", van)
    assert response.status_code == 201
    assert Vehicle.objects.get(pk=response.json()["id"]).service_center_id == COUNTY["center_a"]
    signup = {"phone": "+8613999990000", "password": "correct-horse-battery", "name": "x"}
    signup |= {"role": "staff", "village": Order.objects.get(pk=COUNTY["home"]).delivery_village_id}
    assert call("anonymous", "POST", "/auth/register/", signup).status_code == 400
    assert not User.objects.filter(phone=signup["phone"]).exists()


@pytest.mark.django_db
def test_another_users_idempotency_key_replays_nothing(county):
    key = {"HTTP_IDEMPOTENCY_KEY": "same-key-1"}
    url = V1 + "/orders/{home}/cancel/".format(**COUNTY)
    first = client("buyer_a").post(url, {}, format="json", **key)
    assert first.status_code == 200
    again = client("buyer_a2").post(url, {}, format="json", **key)
    assert again.status_code == 404
    assert "Idempotent-Replayed" not in again


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("owner", "path"),
    [
        ("buyer_a", "/orders/{home}/"),
        ("buyer_a", "/shipments/{ship_home_a}/"),
        ("staff_a", "/routes/{route_a}/"),
        ("staff_a", "/schedule-runs/{run_a}/"),
        ("staff_a", "/routes/{route_a}/map.svg"),
        ("staff_a", "/service-centers/{center_a}/vehicles/{vehicle_a}/"),
        ("farmer_a", "/listings/{draft_a}/"),
    ],
)
def test_an_etag_tells_nobody_else_that_the_object_exists(county, owner, path):
    url = V1 + path.format(**COUNTY)
    etag = client(owner).get(url)["ETag"]
    assert client(owner).get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    for role in ("anonymous", "buyer_a2", "farmer_b", "staff_b"):
        status = client(role).get(url, HTTP_IF_NONE_MATCH=etag).status_code
        assert status in (401, 403, 404), role  # as without the ETag: never 304


# --- no oracle: out of sight is as good as made up ------------------------------------------
MALFORMED = {"rating": "x", "reason": ["x"], "name": [], "title": [], "date": "no day"}
MALFORMED |= {"outcome": "maybe", "capacity_kg": "heavy", "delivery_code": "x", "price": "x"}
MALFORMED |= {"newest_seen": "x", "quantity_available": "x", "lines": "x", "image": "x"}
OUT_OF_SIGHT = [
    pytest.param(method, path, body, role, id=f"{path} {method} as {role}")
    for op, method, path, body, ok, forbidden, public in MATRIX
    for role in ROLES
    if expected(ok, forbidden, public, role) == 404
    # staff of the origin center see the shipment, so its "not at your center" tells nothing
    and not (role == "staff_b" and "{ship_pickup}/" in path)
]


def made_up(path: str) -> str:
    """The path with its last object swapped for one that does not exist."""
    *_, last = re.findall(r"\{([a-z_0-9\[\]]+)\}", path)
    return path.replace(f"{{{last}}}", "99999999")


def answer(role, method, path, body):
    response = call(role, method, path, body)
    problem = response.json() if response.status_code >= 400 else {}
    return response.status_code, problem.get("code"), problem.get("detail")


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "body", "role"), OUT_OF_SIGHT)
def test_an_object_out_of_sight_answers_as_one_that_does_not_exist(
    county, method, path, body, role
):
    """Its 404 is the one a made-up id gets on the same path (code and detail), with a
    valid body and with one not valid: nothing tells that the object exists. A write
    changes nothing either way."""
    before = fingerprint()
    assert answer(role, method, path, body) == answer(role, method, made_up(path), body)
    if method != "GET":
        malformed = MALFORMED if body != "photo" else "photo"
        seen = answer(role, method, path, malformed)
        assert seen == answer(role, method, made_up(path), malformed)
        assert fingerprint() == before


# --- on the road: each step is the right center's, and its answers tell no one else more ---
@pytest.fixture
def module_tokens(county):
    """The county's tokens as they were, whatever a test on another day signed in with."""
    tokens = county["tokens"]
    yield
    county["tokens"] = tokens


@pytest.mark.django_db
def test_on_the_road_each_step_is_the_right_centers_only(module_tokens):
    """The goods of a farm of B for a buyer of A who collects them at A: B's staff pick
    them up, A's receive them and hand them over against the buyer's code; the buyer then
    reviews. At each step the other center, the other buyer and the farmers are refused as
    the contract says, with nothing changed, and no answer shows what is not theirs."""
    shipment = Shipment.objects.get(pk=COUNTY["ship_pickup"])
    stop = Stop.objects.get(shipments=shipment, kind="pickup")
    order = Order.objects.get(pk=COUNTY["pickup"])
    with on_day(stop.route.date):
        COUNTY["tokens"] = {  # signed in that day; the module's are back after the test
            name: str(RefreshToken.for_user(User.objects.get(pk=pk)).access_token)
            for name, pk in COUNTY["users"].items()
        }

        def refused(role, method, path, body, status):
            before = fingerprint()
            response = call(role, method, path, body)
            assert response.status_code == status, (role, path, response.content[:300])
            assert fingerprint() == before

        def done(role, method, path, body, status=200):
            response = call(role, method, path, body)
            assert response.status_code == status, (role, path, response.content[:300])
            assert_nothing_hidden_from(role, response)

        picked = {"outcome": "done", "weight_kg": "4"}
        refused("staff_a", "POST", f"/stops/{stop.pk}/complete/", picked, 404)
        refused("farmer_b", "POST", f"/stops/{stop.pk}/complete/", picked, 403)
        done("staff_b", "POST", f"/stops/{stop.pk}/complete/", picked)
        refused("staff_b", "POST", "/shipments/{ship_pickup}/receive/", {}, 404)
        refused("staff_a", "POST", "/shipments/{ship_b}/receive/", {}, 404)
        done("staff_a", "POST", "/shipments/{ship_pickup}/receive/", {})
        code = {"delivery_code": order.delivery_code}
        refused("staff_b", "POST", "/shipments/{ship_pickup}/hand-over/", code, 404)
        refused("buyer_a", "POST", "/shipments/{ship_pickup}/hand-over/", code, 403)
        done("staff_a", "POST", "/shipments/{ship_pickup}/hand-over/", code)
        for role in SIGNED_IN:
            for path in ("/orders/", "/shipments/", "/notifications/", "/routes/"):
                done(role, "GET", path + "?page_size=100", None)
        refused("buyer_a2", "POST", "/orders/{pickup}/review/", {"rating": 5}, 404)
        refused("farmer_b", "POST", "/orders/{pickup}/review/", {"rating": 5}, 403)
        refused("staff_a", "POST", "/orders/{pickup}/review/", {"rating": 5}, 403)
        done("buyer_a", "POST", "/orders/{pickup}/review/", {"rating": 5}, 201)
        for role in ("farmer_b", "staff_a", "staff_b"):
            seen = call(role, "GET", "/orders/{pickup}/").json()
            assert seen["delivery_code"] is None
            assert seen["review"]["rating"] == 5


@pytest.mark.django_db
def test_a_listing_never_published_is_no_listing_to_order(county):
    """A draft is its farmer's only (its page is 404 to anyone else): an order naming it
    is answered as one naming a listing that does not exist, and orders nothing."""

    def placed(listing_id: int) -> dict:
        lines = [{"listing": listing_id, "quantity": "1"}]
        body = {"lines": lines, "delivery_method": "pickup", "payment_method": "cod"}
        before = fingerprint()
        response = call("buyer_a", "POST", "/orders/", body)
        assert response.status_code == 400
        assert fingerprint() == before
        return response.json()

    draft, made_up = placed(COUNTY["draft_a"]), placed(99999999)
    assert (draft["code"], draft["listing"]) == ("listing_not_found", COUNTY["draft_a"])
    assert draft["detail"] == made_up["detail"].replace("99999999", str(COUNTY["draft_a"]))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "/listings/{listing_a}/", {"title": "x"}),
        ("delete", "/listings/{listing_a}/", None),
        ("post", "/listings/{listing_a}/pause/", None),
        ("post", "/listings/{listing_a}/archive/", None),
        ("post", "/listings/{draft_a}/publish/", None),
    ],
)
def test_a_precondition_tells_no_other_farmer_that_the_listing_exists(county, method, path, body):
    """Another farmer's write with an `If-Match` is 404 whatever the tag: a 412 would
    tell that the listing exists, and its tag now."""
    url = V1 + path.format(**COUNTY)
    before = fingerprint()
    for role in ("farmer_a2", "farmer_b"):
        response = getattr(client(role), method)(url, body, format="json", HTTP_IF_MATCH='"x"')
        assert response.status_code == 404, (role, response.content[:300])
    assert fingerprint() == before


@pytest.mark.django_db
def test_a_farmers_rejection_and_a_buyers_note_are_read_by_whom_they_are_for(county):
    """A farmer's reason for turning a line down is theirs, the buyer's and the delivering
    staff's: not the other farmer's of the order, nor anyone else's, in any answer."""
    reason = "冰雹打坏了7731"
    rejected = call(
        "farmer_a", "POST", "/orders/{home}/lines/{line_home_a}/reject/", {"reason": reason}
    )
    assert rejected.status_code == 200
    assert reason in call("buyer_a", "GET", "/orders/{home}/").content.decode()
    readers = {"buyer_a", "farmer_a", "staff_a"}
    for role in SIGNED_IN:
        for path in ("/orders/?page_size=100", "/notifications/?page_size=100", "/orders/{home}/"):
            response = call(role, "GET", path)
            if role not in readers:
                assert reason not in response.content.decode(), (role, path)
