"""An object's id in a URL is ASCII digits, on every route: Python's int() also reads other
scripts' digits, underscores, a sign and spaces, so `/orders/١٢/` would answer order 12."""

import pytest
from django.urls import NoReverseMatch, get_resolver, reverse

from orders.models import Order, OrderStatus
from tests.factories import BuyerFactory, create_listing, place_order

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/orders/"


def not_ascii_digits(number: int) -> list[str]:
    """What int() reads as `number`, spelt without ASCII digits only."""
    digits = str(number)
    arabic_indic = digits.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    full_width = digits.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    spellings = [arabic_indic, full_width, f"0_{digits}", f"+{digits}", f" {digits}"]
    assert all(int(spelling) == number for spelling in spellings)
    return spellings


def id_params(params: list[str]) -> list[str]:
    return [param for param in params if param in ("pk", "id") or param.endswith("_id")]


def api_routes_with_ids() -> list[tuple[str, list[str]]]:
    """Every named route under /api/ taking an id, with its URL parameters."""
    resolver = get_resolver()
    routes = []
    for name in resolver.reverse_dict:
        if not isinstance(name, str):
            continue  # the view callables the dict also holds
        for possibilities, _pattern, _defaults, _converters in resolver.reverse_dict.getlist(name):
            for _format, params in possibilities:
                if id_params(params):
                    example = reverse(name, kwargs=dict.fromkeys(params, "12"))
                    if example.startswith("/api/"):
                        routes.append((name, params))
    return routes


def test_every_api_route_takes_only_ascii_digits_as_an_id():
    routes = api_routes_with_ids()
    names = {name for name, _params in routes}
    # Routers' detail routes and actions, and hand-written paths: the sweep sees them all.
    assert {
        "order-detail",
        "order-cancel",
        "order-reject-line",
        "notification-read",
        "listing-detail",
        "listing-photos",
        "vehicle-detail",
        "route-map",
        "stop-complete",
        "shipment-hand-over",
    } <= names
    taken = []
    for name, params in routes:
        for param in id_params(params):
            for spelling in not_ascii_digits(12):
                try:
                    reverse(name, kwargs={**dict.fromkeys(params, "12"), param: spelling})
                except NoReverseMatch:
                    continue  # no URL of this route holds it: a request for it is a 404
                taken.append((name, param, spelling))
    assert taken == []


@pytest.fixture
def placed():
    listing = create_listing()
    buyer = BuyerFactory(village__service_center=listing.farmer.village.service_center)
    order = place_order(buyer, (listing, 1), delivery_method="pickup")
    return buyer, order


def test_an_order_is_found_by_its_ascii_id_only(client_for, placed):
    buyer, order = placed
    client = client_for(buyer)
    assert client.get(f"{ORDERS}{order.pk}/").json()["id"] == order.pk
    for spelling in not_ascii_digits(order.pk):
        response = client.get(f"{ORDERS}{spelling}/")
        assert response.status_code == 404, spelling
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"


def test_a_cancel_by_another_spelling_of_the_id_cancels_nothing(client_for, placed):
    buyer, order = placed
    client = client_for(buyer)
    for spelling in not_ascii_digits(order.pk):
        response = client.post(f"{ORDERS}{spelling}/cancel/", {}, format="json")
        assert response.status_code == 404, spelling
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PLACED


def test_the_schema_gives_every_id_in_a_path_as_an_integer(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    ids = {
        (path, parameter["name"]): parameter["schema"]
        for path, operations in schema["paths"].items()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    assert ("/api/v1/orders/{id}/lines/{line_id}/reject/", "line_id") in ids
    assert ("/api/v1/notifications/{id}/read/", "id") in ids
    assert all(value == {"type": "integer"} for value in ids.values()), ids
