"""Routes for the staff of their center: the list and detail with ordered stops, the route
drawn as SVG, the printable load list as CSV; anyone else 404 (anonymous 401)."""

import csv
import io
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from logistics.maps import KM_PER_DEGREE, MapStop, RouteMap, draw_route_map
from logistics.models import Route, RouteStatus, Shipment, Stop, Vehicle
from logistics.services.fleet import vehicle_create
from logistics.services.routing import order_route
from orders import services as orders
from orders.models import Order
from tests.factories import (
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
)

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _order(buyer, *lines):
    order = place_order(buyer, *lines)
    order_route(order_id=order.pk)
    return order


@pytest.fixture
def world():
    """One center; two farmers and two buyers in its villages; order A buys from both
    farmers, order B from the first. Route: pick up at farmer 1 (A and B), at farmer 2 (A),
    deliver A, deliver B."""
    center = ServiceCenterFactory(name="青山镇服务中心", lat=Decimal("30.250000"))

    def village(name, lat, lng):
        return VillageFactory(name=name, lat=Decimal(lat), lng=Decimal(lng), service_center=center)

    farmer1 = FarmerFactory(
        name="李建国",
        phone="+8613911110001",
        address="李家村三组12号",
        village=village("李家村", "30.300000", "119.650000"),
    )
    farmer2 = FarmerFactory(
        name="王秀英", phone="+8613911110002", village=village("王庄", "30.220000", "119.760000")
    )
    buyer_a = BuyerFactory(
        name="赵丽", phone="+8613922220001", village=village("柳树湾", "30.180000", "119.690000")
    )
    buyer_b = BuyerFactory(
        name="陈明", phone="+8613922220002", village=village("石桥村", "30.270000", "119.740000")
    )
    tomatoes = create_listing(farmer1, title="西红柿", unit="kg")
    eggs = create_listing(
        farmer1, title="土鸡蛋", unit="dozen", unit_weight_kg=Decimal("0.75"), category="eggs"
    )
    apples = create_listing(farmer2, title="苹果", unit="jin")
    order_a = _order(buyer_a, (tomatoes, Decimal(8)), (eggs, Decimal(2)), (apples, Decimal(10)))
    order_b = _order(buyer_b, (tomatoes, Decimal("2.5")))
    # Order A is delivered to an address typed with the order; order B to the village.
    Order.objects.filter(pk=order_a.pk).update(delivery_address="柳树湾村口小卖部旁")
    a1 = Shipment.objects.get(order=order_a, farmer=farmer1)
    a2 = Shipment.objects.get(order=order_a, farmer=farmer2)
    b1 = Shipment.objects.get(order=order_b)

    vehicle = vehicle_create(center_id=center.pk, name="金杯面包车", capacity_kg=Decimal(800))
    route = Route.objects.create(
        service_center=center,
        date=a1.pickup_date,
        vehicle=vehicle,
        distance_km=Decimal("41.27"),
        duration_min=95,
        driving_s=1470,  # 24.5 minutes: rounded half to even, as a run's summary rounds
        cost=Decimal("49.52"),
    )
    day = datetime.combine(route.date, datetime.min.time(), tzinfo=SHANGHAI)

    def stop(sequence, kind, shipments, *, eta, load):
        first = shipments[0]
        pickup = kind == "pickup"
        made = Stop.objects.create(
            route=route,
            sequence=sequence,
            kind=kind,
            lat=first.pickup_lat if pickup else first.delivery_lat,
            lng=first.pickup_lng if pickup else first.delivery_lng,
            window_start=day + timedelta(hours=8),
            window_end=day + timedelta(hours=12),
            eta=eta,
            load_kg=Decimal(load),
        )
        made.shipments.add(*shipments)
        return made

    utc_midnight = datetime.combine(route.date, datetime.min.time(), tzinfo=UTC)
    stops = [
        stop(1, "pickup", [b1, a1], eta=day + timedelta(hours=8, minutes=5), load="20.0"),
        # An ETA stored in UTC: 01:30 UTC is 09:30 in the center's time.
        stop(2, "pickup", [a2], eta=utc_midnight + timedelta(hours=1, minutes=30), load="25.0"),
        stop(3, "delivery", [a1, a2], eta=day + timedelta(hours=10, minutes=45), load="2.5"),
        stop(4, "delivery", [b1], eta=None, load="0.0"),
    ]
    return {
        "center": center,
        "staff": StaffFactory(service_center=center),
        "route": route,
        "vehicle": vehicle,
        "stops": stops,
        "orders": (order_a, order_b),
        "shipments": (a1, a2, b1),
        "farmers": (farmer1, farmer2),
        "buyers": (buyer_a, buyer_b),
    }


def route_url(route, suffix: str = "") -> str:
    return f"/api/v1/routes/{route.pk}/{suffix}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else timezone.localtime(value).isoformat()


def test_route_detail_has_vehicle_and_stops_in_visiting_order(world, client_for):
    route, (s1, s2, s3, s4) = world["route"], world["stops"]
    a1, a2, b1 = world["shipments"]

    response = client_for(world["staff"]).get(route_url(route))

    assert response.status_code == 200, response.json()
    body = response.json()
    stops = body.pop("stops")
    assert body == {
        "id": route.pk,
        "service_center": world["center"].pk,
        "date": str(route.date),
        "vehicle": {
            "id": world["vehicle"].pk,
            "name": "金杯面包车",
            "capacity_kg": "800.0",
            "refrigerated": False,
        },
        "status": "planned",
        "distance_km": "41.27",
        "duration_min": 95,
        "driving_min": 24,
        "cost": "49.52",
        "cash_to_collect": "90.75",  # its two deliveries' (77.00 + 13.75, below)
        "cash_collected": "0.00",
    }
    assert [(s["id"], s["sequence"], s["kind"], s["shipments"]) for s in stops] == [
        (s1.pk, 1, "pickup", sorted([a1.pk, b1.pk])),
        (s2.pk, 2, "pickup", [a2.pk]),
        (s3.pk, 3, "delivery", sorted([a1.pk, a2.pk])),
        (s4.pk, 4, "delivery", [b1.pk]),
    ]
    first = stops[0]
    assert first == {
        "id": s1.pk,
        "sequence": 1,
        "kind": "pickup",
        "shipments": sorted([a1.pk, b1.pk]),
        "lat": f"{a1.pickup_lat:.6f}",
        "lng": f"{a1.pickup_lng:.6f}",
        "window_start": _iso(s1.window_start),
        "window_end": _iso(s1.window_end),
        "eta": _iso(s1.eta),
        "load_kg": "20.000",
        "status": "pending",
        "contacts": [
            {
                "role": "farmer",
                "name": "李建国",
                "phone": "+8613911110001",
                "village": "李家村",
                "address": "李家村三组12号",
                "shipments": sorted([a1.pk, b1.pk]),
                "cash_to_collect": None,
                "cash_collected": None,
            }
        ],
    }
    assert stops[3]["eta"] is None


def test_each_stop_says_whom_the_driver_meets_and_how_to_reach_them(world, client_for):
    """A pickup names its farmer with their own village and address; a delivery its buyer
    with the order's delivery village and address, not the buyer's home."""
    (a1, a2, b1), (_order_a, order_b) = world["shipments"], world["orders"]
    buyer_a, _buyer_b = world["buyers"]
    buyer_a.address = "城东小区5栋"  # the buyer's home: not where this order goes
    buyer_a.save()
    new_town = VillageFactory(name="石桥新村", service_center=world["center"])
    Order.objects.filter(pk=order_b.pk).update(delivery_village=new_town)

    response = client_for(world["staff"]).get(route_url(world["route"]))

    assert response.status_code == 200
    assert [stop["contacts"] for stop in response.json()["stops"]] == [
        [
            {
                "role": "farmer",
                "name": "李建国",
                "phone": "+8613911110001",
                "village": "李家村",
                "address": "李家村三组12号",
                "shipments": sorted([a1.pk, b1.pk]),
                "cash_to_collect": None,
                "cash_collected": None,
            }
        ],
        [
            {
                "role": "farmer",
                "name": "王秀英",
                "phone": "+8613911110002",
                "village": "王庄",
                "address": "",
                "shipments": [a2.pk],
                "cash_to_collect": None,
                "cash_collected": None,
            }
        ],
        [
            {
                "role": "buyer",
                "name": "赵丽",
                "phone": "+8613922220001",
                "village": "柳树湾",
                "address": "柳树湾村口小卖部旁",
                "shipments": sorted([a1.pk, a2.pk]),
                # 8 kg × 3.50 + 2 dozen × 3.50 + 10 jin × 3.50, two farmers' fee 7.00
                "cash_to_collect": "77.00",
                "cash_collected": None,
            }
        ],
        [
            {
                "role": "buyer",
                "name": "陈明",
                "phone": "+8613922220002",
                "village": "石桥新村",
                "address": "",
                "shipments": [b1.pk],
                "cash_to_collect": "13.75",  # 2.5 kg × 3.50 + 5.00
                "cash_collected": None,
            }
        ],
    ]
    listed = client_for(world["staff"]).get("/api/v1/routes/").json()["results"]
    assert [s["contacts"] for s in listed[0]["stops"]] == [
        s["contacts"] for s in response.json()["stops"]
    ]


def test_farms_sharing_a_stop_are_each_named_and_cancelled_goods_name_nobody(world, client_for):
    """Two farms at one place share a pickup: one contact each, in the order of their first
    shipment. Goods called off after the route set out keep their stop and shipment ids,
    but nobody is to be met for them."""
    route, staff, (s1, _s2, _s3, s4) = world["route"], world["staff"], world["stops"]
    (a1, a2, b1), (_order_a, order_b) = world["shipments"], world["orders"]
    s1.shipments.add(a2)
    Route.objects.filter(pk=route.pk).update(status=RouteStatus.STARTED)
    orders.order_cancel(order_id=order_b.pk, actor=staff, reason="买家不要了")

    stops = client_for(staff).get(route_url(route)).json()["stops"]

    farmers = sorted([("李建国", [a1.pk]), ("王秀英", [a2.pk])], key=lambda contact: contact[1][0])
    assert stops[0]["shipments"] == sorted([a1.pk, a2.pk, b1.pk])
    assert [(c["role"], c["name"], c["shipments"]) for c in stops[0]["contacts"]] == [
        ("farmer", name, shipments) for name, shipments in farmers
    ]
    assert (stops[3]["id"], stops[3]["shipments"], stops[3]["contacts"]) == (s4.pk, [b1.pk], [])


def test_the_schema_says_a_routes_duration_is_its_whole_time_out(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    duration = schema["components"]["schemas"]["Route"]["properties"]["duration_min"]
    assert duration["type"] == "integer"
    assert all(word in duration["description"] for word in ("driving", "service", "waiting"))


def test_the_schema_says_a_routes_driving_is_part_of_its_time_out_and_may_be_unknown(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    schemas = schema["components"]["schemas"]
    driving = schemas["Route"]["properties"]["driving_min"]
    assert (driving["type"], driving["nullable"]) == ("integer", True)
    assert all(word in driving["description"] for word in ("duration_min", "null"))
    now = schemas["RunRoutesNow"]["properties"]["driving_min"]
    assert (now["type"], now["nullable"]) == ("integer", True)
    assert "null" in now["description"].lower()


def test_the_schema_describes_a_stops_contacts(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    schemas = schema["components"]["schemas"]
    contacts = schemas["RouteStop"]["properties"]["contacts"]
    assert contacts["items"] == {"$ref": "#/components/schemas/StopContact"}
    assert contacts["readOnly"] is True
    contact = schemas["StopContact"]
    assert set(contact["required"]) == {
        "role",
        "name",
        "phone",
        "village",
        "address",
        "shipments",
        "cash_to_collect",
        "cash_collected",
    }
    assert contact["properties"]["role"]["allOf"] == [
        {"$ref": "#/components/schemas/ContactRoleEnum"}
    ]
    assert schemas["ContactRoleEnum"]["enum"] == ["farmer", "buyer"]
    assert contact["properties"]["village"]["nullable"] is True
    assert "nullable" not in contact["properties"]["address"]  # blank, never null
    for cash in ("cash_to_collect", "cash_collected"):  # a decimal string; null for a farmer
        assert contact["properties"][cash]["type"] == "string"
        assert contact["properties"][cash]["format"] == "decimal"
        assert contact["properties"][cash]["nullable"] is True


def _route_with_stops(center, day, stops: int, shipment) -> Route:
    route = Route.objects.create(service_center=center, date=day)
    for sequence in range(1, stops + 1):
        stop = Stop.objects.create(
            route=route, sequence=sequence, kind="pickup", lat=Decimal(30), lng=Decimal(119)
        )
        stop.shipments.add(shipment)
    return route


def test_the_list_shows_the_own_centers_routes_filtered_in_constant_queries(
    world, client_for, django_assert_num_queries
):
    center, route = world["center"], world["route"]
    staff = client_for(world["staff"])
    next_day = route.date + timedelta(days=1)
    later = [_route_with_stops(center, next_day, n, world["shipments"][0]) for n in (1, 5, 9)]
    elsewhere = ServiceCenterFactory()
    _route_with_stops(elsewhere, route.date, 2, world["shipments"][0])

    # The user, the count, the routes, their stops, the stops' shipments with whom to meet.
    with django_assert_num_queries(5):
        one_day = staff.get("/api/v1/routes/", {"date": str(route.date)})
    with django_assert_num_queries(5):
        every_day = staff.get("/api/v1/routes/")

    assert [r["id"] for r in one_day.json()["results"]] == [route.pk]
    assert [r["id"] for r in every_day.json()["results"]] == [route.pk] + [r.pk for r in later]
    assert [len(r["stops"]) for r in every_day.json()["results"]] == [4, 1, 5, 9]
    own = staff.get("/api/v1/routes/", {"service_center": center.pk, "date": str(next_day)})
    assert [r["id"] for r in own.json()["results"]] == [r.pk for r in later]
    other = staff.get("/api/v1/routes/", {"service_center": elsewhere.pk})
    assert (other.status_code, other.json()["count"]) == (200, 0)
    for query in ({"date": "yesterday"}, {"service_center": f"{center.pk}.5"}):
        bad = staff.get("/api/v1/routes/", query)
        assert (bad.status_code, bad.json()["code"]) == (400, "validation_error"), query
        assert [e["field"] for e in bad.json()["errors"]] == list(query)


def test_the_detail_takes_four_queries_however_many_stops_and_contacts(
    world, client_for, django_assert_num_queries
):
    (a1, a2, b1), staff = world["shipments"], client_for(world["staff"])
    long = _route_with_stops(world["center"], world["route"].date, 9, a1)
    for stop in long.stops.all():
        stop.shipments.add(a2, b1)

    # The user, the route, its stops, their shipments with farmer, buyer and villages.
    with django_assert_num_queries(4):
        short = staff.get(route_url(world["route"]))
    with django_assert_num_queries(4):
        nine = staff.get(route_url(long))

    assert [len(s["contacts"]) for s in short.json()["stops"]] == [1, 1, 1, 1]
    assert [len(s["contacts"]) for s in nine.json()["stops"]] == [2] * 9


def test_others_get_404_for_every_route_and_see_none_listed(world, api, client_for):
    route = world["route"]
    before = list(Route.objects.values())
    (farmer, _), (buyer, _) = world["farmers"], world["buyers"]
    strangers = [StaffFactory(service_center=ServiceCenterFactory()), farmer, buyer]
    for user in strangers:
        client = client_for(user)
        listed = client.get("/api/v1/routes/", {"service_center": world["center"].pk})
        assert (listed.status_code, listed.json()["count"]) == (200, 0)
        for suffix in ("", "map.svg", "load-list.csv"):
            response = client.get(route_url(route, suffix))
            assert response.status_code == 404, (user.role, suffix)
            assert response.json()["code"] == "not_found"
            assert "+86139" not in response.content.decode()  # no farmer's or buyer's phone
    assert api.get("/api/v1/routes/").status_code == 401
    for suffix in ("", "map.svg", "load-list.csv"):
        assert api.get(route_url(route, suffix)).status_code == 401
    assert list(Route.objects.values()) == before


# The map.


def _classes(element) -> set[str]:
    return set(element.get("class", "").split())


def _with_class(root, name: str) -> list:
    return [element for element in root.iter() if name in _classes(element)]


def _texts(element) -> list[str]:
    return [text.text for text in element.iter(f"{SVG}text")]


def test_the_map_draws_center_numbered_stops_path_legend_and_scale(world, client_for):
    route = world["route"]

    response = client_for(world["staff"]).get(route_url(route, "map.svg"), HTTP_ACCEPT="image/*")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)  # noqa: S314 - our own output
    assert root.tag == f"{SVG}svg"
    markers = _with_class(root, "stop-marker")
    assert [m.get("data-sequence") for m in markers] == ["1", "2", "3", "4"]
    assert [_texts(m) for m in markers] == [["1"], ["2"], ["3"], ["4"]]
    assert [m.get("data-kind") for m in markers] == ["pickup", "pickup", "delivery", "delivery"]
    assert len(_with_class(root, "stop-pickup")) == 2
    assert all(len(list(m.iter(f"{SVG}circle"))) == 1 for m in markers)
    assert len(_with_class(root, "center-marker")) == 1
    # The path: center → four stops → center.
    (path,) = _with_class(root, "route-path")
    points = path.find(f"{SVG}polyline").get("points").split()
    assert len(points) == 6
    assert points[0] == points[-1]
    (legend,) = _with_class(root, "legend")
    assert _texts(legend) == ["Service center 青山镇服务中心", "Pickup", "Delivery"]
    (scale,) = _with_class(root, "scale-bar")
    km = scale.get("data-km")
    assert km in {"0.5", "1", "2", "5", "10", "20"}
    assert _texts(scale) == [f"{km} km"]
    title = f"Route {route.pk} · {route.date:%Y-%m-%d} · 金杯面包车 (800 kg) · 41.3 km"
    assert root.find(f"{SVG}title").text == title
    assert _with_class(root, "map-title")[0].text == title


def test_map_text_is_escaped(world, client_for):
    route, vehicle = world["route"], world["vehicle"]
    vehicle.name = '冷藏车 <b>&"1"</b>'
    vehicle.save()

    response = client_for(world["staff"]).get(route_url(route, "map.svg"))

    root = ET.fromstring(response.content)  # noqa: S314 - our own output
    assert '冷藏车 <b>&"1"</b>' in root.find(f"{SVG}title").text
    assert b"<b>" not in response.content


def test_a_route_without_stops_or_vehicle_still_has_a_map(world, client_for):
    empty = Route.objects.create(service_center=world["center"], date=world["route"].date)

    response = client_for(world["staff"]).get(route_url(empty, "map.svg"))

    root = ET.fromstring(response.content)  # noqa: S314 - our own output
    assert _with_class(root, "stop-marker") == []
    assert len(_with_class(root, "center-marker")) == 1
    assert "no vehicle" in root.find(f"{SVG}title").text


def _marker_spot(root, sequence: int) -> tuple[float, float]:
    (marker,) = [m for m in _with_class(root, "stop-marker") if m.get("data-sequence") == sequence]
    circle = marker.find(f"{SVG}circle")
    return float(circle.get("cx")), float(circle.get("cy"))


def test_the_projection_keeps_kilometres_equal_both_ways_and_north_up():
    """At 60°N a degree of longitude is half a degree of latitude long: without the cos(lat)
    correction the stop 3 km east would be drawn twice as far as the one 3 km north."""
    lat, lng = 60.0, 10.0
    north = MapStop(1, "pickup", lat + 3 / KM_PER_DEGREE, lng)
    east = MapStop(2, "delivery", lat, lng + 3 / (KM_PER_DEGREE * math.cos(math.radians(lat))))
    plan = RouteMap("t", "c", lat, lng, (north, east))

    root = ET.fromstring(draw_route_map(plan))  # noqa: S314 - our own output

    (center,) = _with_class(root, "center-marker")
    home = (
        float(center.get("x")) + float(center.get("width")) / 2,
        float(center.get("y")) + float(center.get("height")) / 2,
    )
    to_north, to_east = _marker_spot(root, "1"), _marker_spot(root, "2")
    assert to_north[1] < home[1]  # north is up
    assert to_east[0] > home[0]  # east is right
    assert abs(to_north[0] - home[0]) < 0.2
    assert abs(to_east[1] - home[1]) < 0.2
    px_per_km = math.dist(home, to_east) / 3
    assert math.dist(home, to_north) / 3 == pytest.approx(px_per_km, rel=0.01)
    # The scale bar is as long as its kilometres are on the map.
    (scale,) = _with_class(root, "scale-bar")
    x1, x2 = map(float, re.findall(r"M([\d.]+),.* H([\d.]+)", scale.find(f"{SVG}path").get("d"))[0])
    assert x2 - x1 == pytest.approx(float(scale.get("data-km")) * px_per_km, abs=0.2)


def test_stops_at_one_place_are_fanned_out_not_hidden():
    plan = RouteMap(
        "t",
        "c",
        30.0,
        119.0,
        (MapStop(1, "pickup", 30.1, 119.1), MapStop(2, "delivery", 30.1, 119.1)),
    )

    root = ET.fromstring(draw_route_map(plan))  # noqa: S314 - our own output

    assert math.dist(_marker_spot(root, "1"), _marker_spot(root, "2")) >= 22


# The load list.


def _load_list(client, route) -> list[list[str]]:
    response = client.get(route_url(route, "load-list.csv"))
    assert response.status_code == 200
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel looks for
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_the_load_list_has_a_row_per_shipment_per_stop_in_visiting_order(world, client_for):
    route = world["route"]
    (order_a, order_b), (a1, a2, b1) = world["orders"], world["shipments"]

    response = client_for(world["staff"]).get(route_url(route, "load-list.csv"))

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="route-{route.pk}-{route.date:%Y-%m-%d}-load-list.csv"'
    )
    header, *rows = _load_list(client_for(world["staff"]), route)
    assert header == [
        "stop",
        "kind",
        "eta",
        "village",
        "lat",
        "lng",
        "shipment",
        "order",
        "farmer",
        "weight_kg",
        "refrigerated",
        "lines",
        "contact",
        "phone",
        "address",
        "cash_to_collect",
    ]
    a1_lines, a2_lines, b1_lines = (
        "西红柿 × 8 kg; 土鸡蛋 × 2 dozen",
        "苹果 × 10 jin",
        "西红柿 × 2.5 kg",
    )
    pickup1 = ["1", "pickup", "08:05", "李家村", str(a1.pickup_lat), str(a1.pickup_lng)]
    pickup2 = ["2", "pickup", "09:30", "王庄", str(a2.pickup_lat), str(a2.pickup_lng)]
    drop_a = ["3", "delivery", "10:45", "柳树湾", str(a1.delivery_lat), str(a1.delivery_lng)]
    drop_b = ["4", "delivery", "", "石桥村", str(b1.delivery_lat), str(b1.delivery_lng)]
    a1_row = [str(a1.pk), str(order_a.pk), "李建国", "9.5", "no", a1_lines]
    a2_row = [str(a2.pk), str(order_a.pk), "王秀英", "5", "no", a2_lines]
    b1_row = [str(b1.pk), str(order_b.pk), "李建国", "2.5", "no", b1_lines]
    # Whom to meet: the farmer at a pickup, the buyer at a delivery (the order's address).
    # A phone starts with "+", so it too is printed as text, not a formula or a number.
    # Nothing to collect at a pickup.
    li = ["李建国", "'+8613911110001", "李家村三组12号", ""]
    wang = ["王秀英", "'+8613911110002", "", ""]
    zhao, chen = ["赵丽", "'+8613922220001", "柳树湾村口小卖部旁"], ["陈明", "'+8613922220002", ""]
    # The cash to take, shipment by shipment in id order (35.00 of goods each): the first
    # with the fee of one farmer (5.00), the second what two farmers' fee (7.00) adds.
    drops_a = [drop_a + row + zhao for row in sorted([a1_row, a2_row], key=lambda r: int(r[0]))]
    drops_a[0].append("40.00")
    drops_a[1].append("37.00")
    expected = [
        *sorted([pickup1 + a1_row + li, pickup1 + b1_row + li], key=lambda row: int(row[6])),
        pickup2 + a2_row + wang,
        *drops_a,
        drop_b + b1_row + chen + ["13.75"],
    ]
    assert rows == expected
    # The weights are the shipments' own: 8 kg + 2 dozen × 0.75 kg, 10 jin, 2.5 kg.
    assert [Decimal(w) for w in (a1_row[3], a2_row[3], b1_row[3])] == [
        a1.weight_kg,
        a2.weight_kg,
        b1.weight_kg,
    ]


def test_goods_cancelled_after_the_route_set_out_are_not_on_its_load_list(world, client_for):
    """Cancelled once the route is on the road, order B keeps its stops (completing them is
    409 stop_cancelled) but nothing of it is to be loaded or handed over: no rows."""
    route, staff = world["route"], world["staff"]
    (order_a, order_b), (a1, a2, _b1) = world["orders"], world["shipments"]
    Route.objects.filter(pk=route.pk).update(status=RouteStatus.STARTED)
    orders.order_cancel(order_id=order_b.pk, actor=staff, reason="买家不要了")
    assert Stop.objects.filter(route=route).count() == 4

    _, *rows = _load_list(client_for(staff), route)

    assert [(row[0], row[6], row[7]) for row in rows] == [
        ("1", str(a1.pk), str(order_a.pk)),
        ("2", str(a2.pk), str(order_a.pk)),
        ("3", str(a1.pk), str(order_a.pk)),
        ("3", str(a2.pk), str(order_a.pk)),
    ]


def test_load_list_queries_do_not_grow_with_its_rows(world, client_for, django_assert_num_queries):
    client = client_for(world["staff"])
    with django_assert_num_queries(6):  # user, route, its stops; stops, shipments, lines
        client.get(route_url(world["route"], "load-list.csv"))
    short = _route_with_stops(world["center"], world["route"].date, 1, world["shipments"][0])
    with django_assert_num_queries(6):
        client.get(route_url(short, "load-list.csv"))


def test_a_name_or_address_that_is_a_formula_is_printed_as_text(world, client_for):
    farmer, buyer = world["farmers"][1], world["buyers"][1]
    farmer.name = '=HYPERLINK("http://x")'
    farmer.address = "@SUM(1+1)"
    farmer.save()
    Order.objects.filter(pk=world["orders"][1].pk).update(delivery_address="-2+3")
    buyer.name = "+赵"
    buyer.save()

    _, *rows = _load_list(client_for(world["staff"]), world["route"])

    assert {row[8] for row in rows} == {"李建国", '\'=HYPERLINK("http://x")'}
    by_stop = {row[0]: row[12:15] for row in rows}
    assert by_stop["2"] == ['\'=HYPERLINK("http://x")', "'+8613911110002", "'@SUM(1+1)"]
    assert by_stop["4"] == ["'+赵", "'+8613922220002", "'-2+3"]


def test_a_name_with_a_control_character_still_gives_a_well_formed_map(client_for):
    """A backspace pasted from a spreadsheet into a vehicle's or a center's name (in the
    admin, or a vehicle named before the API refused it): the map shows U+FFFD there rather
    than a document no SVG viewer reads."""
    center = ServiceCenterFactory(name="Center\x01 north")
    staff = client_for(StaffFactory(service_center=center))
    # stored before the API, the admin and the services refused it (as a migration keeps it)
    van = Vehicle.objects.create(service_center=center, name="Van\x08 1", capacity_kg=800)
    route = Route.objects.create(service_center=center, date=timezone.localdate(), vehicle=van)
    response = staff.get(f"/api/v1/routes/{route.pk}/map.svg")
    assert response.status_code == 200
    root = ET.fromstring(response.content)  # noqa: S314 - our own output
    text = "".join(root.itertext())
    assert "Van\ufffd 1" in text
    assert "\x08" not in text
