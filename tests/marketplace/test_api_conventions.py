"""Role checks and the one error format (400, 401, 403, 404, 405), plus the schema and docs."""

import json
import re
import socket
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import yaml
from django.utils import timezone

from listings.models import Listing
from logistics.models import Route, ScheduleRun, Shipment, ShipmentStatus, Stop, Vehicle
from logistics.services.routing import order_route
from marketplace.accounts.models import User
from marketplace.api.docs import SchemaView
from marketplace.exceptions import PROBLEM_MEMBERS, DomainError
from orders.models import Order
from tests.factories import (
    PASSWORD,
    BuyerFactory,
    FarmerFactory,
    ServiceCenterFactory,
    StaffFactory,
    VillageFactory,
    create_listing,
    place_order,
)

pytestmark = pytest.mark.django_db

PROBLEM_KEYS = {"type", "title", "status", "code", "detail"}


@pytest.mark.urls("tests.marketplace.urls_roles")
@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/farmer-only/", "farmer"), ("/buyer-only/", "buyer"), ("/staff-only/", "staff")],
)
def test_each_role_check_admits_only_its_role(client_for, path, allowed):
    users = {"farmer": FarmerFactory(), "buyer": BuyerFactory(), "staff": StaffFactory()}
    for role, user in users.items():
        response = client_for(user).get(path)
        if role == allowed:
            assert response.status_code == 200
            assert response.json() == {"ok": role}
        else:
            assert response.status_code == 403
            assert response["Content-Type"] == "application/problem+json"
            assert response.json() == {
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "code": "permission_denied",
                "detail": "This action is not available to your role.",
            }


@pytest.mark.urls("tests.marketplace.urls_roles")
def test_role_check_without_token_is_401(api):
    response = api.get("/farmer-only/")
    assert response.status_code == 401
    assert set(response.json()) == PROBLEM_KEYS
    assert response.json()["code"] == "not_authenticated"


def test_unknown_api_path_is_json_404(api):
    response = api.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing/", "/api/v1/orders/١٢/", "/api/"])
def test_unknown_api_path_is_json_404_also_with_debug_on(api, settings, path):
    """`make run` runs with DEBUG on, where Django answers its HTML page for a 404 instead of
    calling handler404."""
    settings.DEBUG = True
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_an_api_path_without_its_slash_is_still_redirected_to_it(api):
    response = api.get("/api/v1/villages")
    assert response.status_code == 301
    assert response["Location"] == "/api/v1/villages/"


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_an_unknown_api_path_without_a_slash_is_a_json_404(api, settings, method, debug):
    """Not redirected to a slashed path that does not exist either (with DEBUG on, Django
    refuses to redirect a POST: a 500)."""
    settings.DEBUG = debug
    api.raise_request_exception = False
    response = getattr(api, method)("/api/v1/no-such-thing", {}, format="json")
    assert response.status_code == 404, (response.status_code, response.get("Location"))
    assert response["Content-Type"] == "application/problem+json"


def test_unknown_object_is_json_404(api):
    response = api.get("/api/v1/service-centers/987654/")
    assert response.status_code == 404
    assert set(response.json()) == PROBLEM_KEYS
    assert response.json()["code"] == "not_found"


def test_wrong_method_is_405_with_code(api):
    response = api.delete("/api/v1/villages/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_validation_errors_name_fields(api):
    response = api.post("/api/v1/auth/register/", {"phone": "+8613812345678"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {*PROBLEM_KEYS, "errors"}
    assert body["code"] == "validation_error"
    assert body["detail"] == "password: This field is required."
    assert all(set(error) == {"field", "code", "detail"} for error in body["errors"])


def test_schema_and_docs_are_served_without_a_cdn(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {
        "/api/v1/auth/register/",
        "/api/v1/auth/token/",
        "/api/v1/me/",
        "/api/v1/villages/",
        "/api/v1/service-centers/",
    } <= set(paths)
    docs = api.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    # Every file the page loads is one of ours, none from another host (a CDN). Not "no
    # 'cdn' in the page": its CSRF token, random letters, held "cdn" now and then.
    loaded = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert loaded
    assert [url for url in loaded if not url.startswith("/") or url.startswith("//")] == []
    assert re.findall(r"\b(?:https?:)?//[a-z0-9.-]+", html, flags=re.IGNORECASE) == []


def test_the_schema_is_built_once_per_format_and_then_served_as_built(api, monkeypatch):
    """Building it took 0.9–1.5 s a request, and it changes only with the code: each
    format is built on its first request, and later ones get the same bytes and headers,
    those of a schema built anew (a language asked for, which is not kept)."""
    built = []

    class CountingGenerator(SchemaView.generator_class):
        def get_schema(self, *args, **kwargs):
            built.append(1)
            return super().get_schema(*args, **kwargs)

    monkeypatch.setattr(SchemaView, "generator_class", CountingGenerator)
    monkeypatch.setattr(SchemaView, "built", {}, raising=False)  # none kept by other tests
    formats = ("application/vnd.oai.openapi", "application/vnd.oai.openapi+json")
    answers = {
        media: [api.get("/api/schema/", HTTP_ACCEPT=media) for _ in range(2)] for media in formats
    }

    assert len(built) == 2
    for media, (first, second) in answers.items():
        anew = api.get("/api/schema/", {"lang": "en"}, HTTP_ACCEPT=media)
        assert [a.status_code for a in (first, second, anew)] == [200, 200, 200]
        assert first["Content-Type"].split(";")[0] == media
        for header in ("Content-Type", "Content-Disposition", "Vary", "Allow"):
            assert first[header] == second[header] == anew[header]
        assert first.content == second.content == anew.content
    assert len(built) == 4  # the language asked for, in each format
    yaml_answer, json_answer = (answers[media][1].content for media in formats)
    assert yaml.safe_load(yaml_answer) == json.loads(json_answer)
    assert "/api/v1/orders/" in json.loads(json_answer)["paths"]


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (lambda api: api.post("/api/schema/"), 405, "method_not_allowed"),
        (lambda api: api.get("/api/schema/", HTTP_ACCEPT="text/xml"), 406, "not_acceptable"),
        (lambda api: api.get("/api/schema/?format=xml"), 404, "not_found"),
        (lambda api: api.get("/api/docs/", HTTP_AUTHORIZATION="Bearer x"), 401, "token_not_valid"),
        (lambda api: api.delete("/api/docs/"), 405, "method_not_allowed"),
    ],
)
def test_the_schema_and_docs_answer_errors_as_problem_json(api, send, status, code):
    """They answer YAML and HTML, which their errors were written in too."""
    response = send(api)
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    assert set(response.json()) == PROBLEM_KEYS
    assert response.json()["code"] == code


def test_responses_are_gzipped_when_asked(api):
    response = api.get("/api/schema/", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"


NESTED_TOO_DEEP = "[" * 100_000 + "]" * 100_000


def test_a_body_nested_too_deeply_is_400_parse_error(api, client_for):
    anyone = api.post("/api/v1/auth/token/", NESTED_TOO_DEEP, content_type="application/json")
    buyer = client_for(BuyerFactory()).post(
        "/api/v1/orders/",
        NESTED_TOO_DEEP,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="deep-1",
    )
    for response in (anyone, buyer):
        assert response.status_code == 400
        assert set(response.json()) == PROBLEM_KEYS
        assert response.json()["code"] == "parse_error"
    assert not Order.objects.exists()


def test_a_body_too_large_is_413_with_or_without_an_idempotency_key(api, client_for, settings):
    """The same answer to the same request, whether or not it carries a key (with one, the
    idempotency middleware meets the size first)."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    village = VillageFactory()
    too_large = json.dumps(
        {"phone": "13912345678", "password": "x" * 2_000, "name": "王", "village": village.pk}
    )
    anyone = api.post("/api/v1/auth/register/", too_large, content_type="application/json")
    client = client_for(BuyerFactory())
    body = json.dumps({"lines": [], "note": "x" * 2_000})
    keyless = client.post("/api/v1/orders/", body, content_type="application/json")
    keyed = client.post(
        "/api/v1/orders/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="big-1"
    )
    for response in (anyone, keyless, keyed):
        assert response.status_code == 413
        assert response["Content-Type"] == "application/problem+json"
        assert response.json() == {
            "type": "about:blank",
            "title": "Request Entity Too Large",
            "status": 413,
            "code": "request_too_large",
            "detail": "The request body is too large.",
        }
    assert not User.objects.filter(phone="+8613912345678").exists()
    assert not Order.objects.exists()


def test_an_unpaired_surrogate_repeated_in_an_error_is_400_not_500(api, client_for):
    """A choice's error repeats the value sent. JSON may carry an unpaired surrogate
    (`"\\ud800"`) that UTF-8 cannot encode, so the answer could not be written (a 500):
    it is repeated as U+FFFD, the replacement character."""
    listing = create_listing()
    users = User.objects.count()
    # json.dumps writes an unpaired surrogate as its escape, as a client's JSON may
    register = api.post(
        "/api/v1/auth/register/",
        json.dumps(
            {
                "phone": "+8613812345678",
                "password": "a-long-pass-123",
                "name": "x",
                "role": "\ud800",
                "village": VillageFactory().pk,
            }
        ),
        content_type="application/json",
    )
    order = client_for(BuyerFactory()).post(
        "/api/v1/orders/",
        json.dumps(
            {
                "lines": [{"listing": listing.pk, "quantity": "1"}],
                "delivery_method": "\udfff",
                "payment_method": "cod",
            }
        ),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="surrogate-1",
    )
    for response, field in ((register, "role"), (order, "delivery_method")):
        assert response.status_code == 400
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["errors"] == [
            {
                "field": field,
                "code": "invalid_choice",
                "detail": '"\ufffd" is not a valid choice.',
            }
        ]
    assert User.objects.count() == users + 1  # the buyer who ordered, no one registered
    assert Listing.objects.get(pk=listing.pk).quantity_available == listing.quantity_available
    assert not Order.objects.exists()


@pytest.mark.parametrize("member", ["status", "code", "detail", "errors"])
def test_a_domain_error_cannot_replace_a_member_every_problem_has(member):
    with pytest.raises(ValueError, match=member):
        DomainError("some_code", "Some detail.", extra={member: "x", "other": 1})
    assert DomainError("some_code", "Some detail.", extra={"other": 1}).extra == {"other": 1}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/listings/?q=%00",
        "/api/v1/villages/?search=a%00b",
        "/admin/accounts/user/?role__exact=%00",
        "/api/v1/listings/?%00=1",
    ],
)
def test_a_nul_in_the_query_string_is_400_on_every_path(api, path):
    response = api.get(path)
    assert response.status_code == 400
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "code": "invalid_query",
        "detail": "The query string holds a NUL character.",
    }


def test_the_schema_allows_the_blank_and_null_values_the_api_answers(api):
    """An order's first event has no from_status, a farmer's profile no buyer_kind, a staff
    member's profile no village_name, and a farmer's view of an order no delivery fee or
    total (nor, before it is confirmed, the buyer's place): the schema must allow them."""
    schemas = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    schemas = schemas["components"]["schemas"]

    def allows(schema: dict, value) -> bool:
        if "$ref" in schema:
            return allows(schemas[schema["$ref"].rsplit("/", 1)[1]], value)
        if "oneOf" in schema or "allOf" in schema or "anyOf" in schema:
            parts = schema.get("oneOf") or schema.get("allOf") or schema.get("anyOf")
            return any(allows(part, value) for part in parts) or (
                value is None and schema.get("nullable", False)
            )
        if value is None:
            return schema.get("nullable", False)
        return value in schema["enum"] if "enum" in schema else True

    assert allows(schemas["Event"]["properties"]["from_status"], "")
    assert allows(schemas["User"]["properties"]["buyer_kind"], "")
    assert allows(schemas["User"]["properties"]["village_name"], None)
    assert allows(schemas["Order"]["properties"]["delivery_fee"], None)
    assert allows(schemas["Order"]["properties"]["total"], None)
    assert not allows(schemas["Order"]["properties"]["subtotal"], None)
    # nor where the buyer lives, before the order is confirmed
    assert allows(schemas["Order"]["properties"]["delivery_lat"], None)
    assert allows(schemas["Order"]["properties"]["delivery_lng"], None)


def test_the_schema_lists_429_with_retry_after_where_a_throttle_can_answer_it(api):
    """Register, order placement and cancel, and the hand-over have throttles (get_throttles
    per action); the password change answers 429 of its own (the lockout), and login both
    (its lockout and its throttles). Nothing else does."""
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    answers_429 = {
        (method, path): operation["responses"]["429"]
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "429" in operation["responses"]
    }
    throttled = {
        ("post", "/api/v1/auth/register/"),
        ("post", "/api/v1/orders/"),
        ("post", "/api/v1/orders/{id}/cancel/"),
        ("post", "/api/v1/shipments/{id}/hand-over/"),
    }
    lockout = {("post", "/api/v1/auth/password/")}
    login = ("post", "/api/v1/auth/token/")
    assert set(answers_429) == throttled | lockout | {login}
    for operation in throttled:
        response = answers_429[operation]
        assert response["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, operation
        assert response["headers"]["Retry-After"]["schema"] == {"type": "integer"}, operation
        assert response["description"].startswith("throttled: ")
    for operation in lockout:
        assert "Retry-After" not in answers_429[operation].get("headers", {}), operation
    assert answers_429[login]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert answers_429[login]["description"].startswith("too_many_login_attempts: ")
    assert "; throttled: " in answers_429[login]["description"]
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == PROBLEM_MEMBERS
    assert set(problem["required"]) == PROBLEM_KEYS


def test_the_schema_gives_every_error_it_lists_as_a_problem(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    errors = {
        (method, path, code): response
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for code, response in operation["responses"].items()
        if code >= "400"
    }
    assert ("post", "/api/v1/auth/token/", "401") in errors  # declared by a description
    assert ("post", "/api/v1/payments/webhook/", "400") in errors
    for key, response in errors.items():
        assert response["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, key
        assert response["description"], key


def _schema(api) -> dict:
    return api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def test_the_schema_lists_the_framework_errors_an_operation_can_get_beside_its_own(api):
    """Beside what a view declares: 400 for a body or a query to validate (and a NUL in any
    query string), 401 for a bearer token, 403 where a role is needed, 404 for an object
    in the path or a page of a list, 409 and 422 for an Idempotency-Key, 413 and 415 for
    a body."""
    paths = _schema(api)["paths"]

    def answers(method: str, path: str) -> dict[str, str]:
        responses = paths[path][method]["responses"]
        return {code: response["description"] for code, response in responses.items()}

    place = answers("post", "/api/v1/orders/")
    assert set(place) == {"201", "400", "401", "403", "409", "413", "415", "422", "429"}
    assert place["409"].startswith("insufficient_stock: ")  # the view's own, kept first
    assert "; idempotency_key_in_use: " in place["409"]
    assert place["400"].startswith("validation_error; no_lines, ")
    assert "; invalid_idempotency_key: " in place["400"]
    assert "; invalid_query: " in place["400"]
    assert place["403"] == "permission_denied: only buyers place orders"
    assert place["401"].startswith("not_authenticated: no bearer token; token_not_valid, ")

    me = answers("get", "/api/v1/me/")
    assert set(me) == {"200", "304", "400", "401"}
    assert me["400"] == "invalid_query: the query string holds a NUL character"

    categories = answers("get", "/api/v1/categories/")  # anyone: only a bad token is 401
    assert set(categories) == {"200", "304", "400", "401", "404"}
    assert categories["401"].startswith("token_not_valid, signed_out, ")
    assert "no such page" in categories["404"]

    assert set(answers("get", "/api/v1/orders/{id}/")) == {"200", "304", "400", "401", "404"}
    removed = answers("delete", "/api/v1/listings/{id}/photos/{photo_id}/")
    assert removed["409"].startswith("listing_archived: ")  # as test_photos answers it
    patch = answers("patch", "/api/v1/listings/{id}/")
    assert set(patch) == {*("200", "400", "401", "403", "404", "409", "412", "413", "415", "422")}
    assert patch["409"].startswith("listing_archived: ")
    assert patch["412"].startswith("precondition_failed: ")  # an If-Match no longer met
    assert "; idempotency_key_in_use: " in patch["409"]
    assert set(answers("post", "/api/v1/stops/{id}/complete/")) == {
        *("200", "400", "401", "403", "404", "409", "413", "415", "422"),
    }
    for path, status, codes in (
        ("/api/v1/stops/{id}/complete/", "400", ("invalid_delivery_code", "weight_required")),
        ("/api/v1/stops/{id}/complete/", "409", ("stop_locked", "before_route_day")),
        ("/api/v1/shipments/{id}/receive/", "409", ("not_in_transfer",)),
        ("/api/v1/shipments/{id}/hand-over/", "409", ("not_for_hand_over", "shipment_not_ready")),
    ):
        described = answers("post", path)[status]
        assert all(code in described for code in codes), (path, status, described)
        assert "idempotency_key_in_use" in described or status == "400", described
    cancel = answers("post", "/api/v1/orders/{id}/cancel/")
    assert cancel["403"].startswith("permission_denied: only the buyer or staff of the center")
    assert cancel["409"].startswith("cannot_cancel: ")
    assert answers("post", "/api/v1/orders/{id}/review/")["409"].startswith("order_not_delivered")
    webhook = answers("post", "/api/v1/payments/webhook/")
    assert set(webhook) == {"200", "400", "401", "409", "413"}  # reads its raw body: no 415
    assert webhook["409"].startswith("event_id_reused: ")
    assert webhook["400"].startswith("parse_error, unknown_order, ")


def test_the_schema_gives_the_idempotency_key_header_to_the_writes_that_run_once_per_key(api):
    """Keys are scoped to the signed-in caller: registering, signing in, logging out with a
    refresh token and the provider's webhook take none; the password change stores no
    answer."""
    schema = _schema(api)

    def keyed_paths(method: str) -> set[str]:
        return {
            path
            for path, operations in schema["paths"].items()
            for verb, operation in operations.items()
            if verb == method
            and any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
        }

    assert keyed_paths("patch") == {
        "/api/v1/listings/{id}/",
        "/api/v1/me/",
        "/api/v1/service-centers/{center_id}/vehicles/{id}/",
    }
    assert keyed_paths("delete") == {
        "/api/v1/listings/{id}/",
        "/api/v1/listings/{id}/photos/{photo_id}/",
        "/api/v1/service-centers/{center_id}/vehicles/{id}/",
    }
    assert not keyed_paths("get") | keyed_paths("put")
    keyed = keyed_paths("post")
    assert keyed == {
        "/api/v1/auth/logout-all/",
        "/api/v1/listings/",
        "/api/v1/listings/{id}/archive/",
        "/api/v1/listings/{id}/pause/",
        "/api/v1/listings/{id}/photos/",
        "/api/v1/listings/{id}/publish/",
        "/api/v1/notifications/read-all/",
        "/api/v1/notifications/{id}/read/",
        "/api/v1/orders/",
        "/api/v1/orders/{id}/cancel/",
        "/api/v1/orders/{id}/lines/{line_id}/reject/",
        "/api/v1/orders/{id}/review/",
        "/api/v1/service-centers/{center_id}/vehicles/",
        "/api/v1/service-centers/{id}/schedule/",
        "/api/v1/shipments/{id}/hand-over/",
        "/api/v1/shipments/{id}/receive/",
        "/api/v1/stops/{id}/complete/",
    }
    header = next(
        p
        for p in schema["paths"]["/api/v1/orders/"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    )
    assert (header["in"], header.get("required", False)) == ("header", False)
    assert header["schema"] == {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"}


def test_the_schema_gives_times_of_day_as_local_wall_clock_times_as_answered(api):
    """RFC 3339's `time` needs a UTC offset ("07:00:00Z"); a center's hours and a vehicle's
    shift have none, so the schema calls them partial-time, with a pattern the answers
    match."""
    VillageFactory()  # and its center
    schemas = _schema(api)["components"]["schemas"]
    opens_at = schemas["ServiceCenter"]["properties"]["opens_at"]
    assert (opens_at["type"], opens_at["format"]) == ("string", "partial-time")
    assert schemas["VehicleInputRequest"]["properties"]["shift_start"] == {
        "type": "string",
        "format": "partial-time",
        "pattern": opens_at["pattern"],
        "example": "07:30:00",
    }
    center = api.get("/api/v1/service-centers/").json()["results"][0]
    for value in (center["opens_at"], center["closes_at"], "07:30", "23:59:59.5"):
        assert re.match(opens_at["pattern"], value), value
    for value in ("07:00:00Z", "07:00:00+08:00", "24:00", "7:30"):
        assert not re.match(opens_at["pattern"], value), value


def test_the_schema_gives_reads_their_etag_and_304_and_keyed_posts_their_replay_header(api):
    paths = _schema(api)["paths"]
    for path in ("/api/v1/orders/{id}/", "/api/v1/categories/", "/api/v1/routes/{id}/map.svg"):
        read = paths[path]["get"]
        assert read["responses"]["304"] == {
            "description": "Not Modified: the If-None-Match ETag is the answer's; no body."
        }
        assert read["responses"]["200"]["headers"]["ETag"]["schema"] == {"type": "string"}
        assert any(
            (p["name"], p["in"]) == ("If-None-Match", "header") for p in read["parameters"]
        ), path
    placed = paths["/api/v1/orders/"]["post"]["responses"]["201"]
    assert placed["headers"]["Idempotent-Replayed"]["schema"] == {
        "type": "string",
        "enum": ["true"],
    }
    assert "headers" not in paths["/api/v1/auth/register/"]["post"]["responses"]["201"]
    assert "304" not in paths["/api/v1/orders/"]["post"]["responses"]

    # what the schema says, as the API does it
    VillageFactory()
    first = api.get("/api/v1/service-centers/")
    again = api.get("/api/v1/service-centers/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert (first.status_code, again.status_code, again.content) == (200, 304, b"")


def test_the_schema_gives_every_read_its_etag_and_304(api):
    """The contract's "Reads send an ETag and answer If-None-Match with 304", for each GET."""
    paths = _schema(api)["paths"]
    reads = {path: ops["get"] for path, ops in paths.items() if "get" in ops}
    assert len(reads) > 20
    for path, read in reads.items():
        assert "304" in read["responses"], path
        assert "ETag" in read["responses"]["200"]["headers"], path
        assert any(p["name"] == "If-None-Match" for p in read["parameters"]), path


def test_every_read_answers_its_etag_with_304(client_for, a_center_at_work):
    """Each kind of reader's GETs, signed in: an ETag, and 304 with no body when it is sent
    back in If-None-Match."""
    world = a_center_at_work
    center, route = world["center"], world["route"]
    vehicles = f"/api/v1/service-centers/{center.pk}/vehicles/"
    reads = {
        world["staff"]: [
            f"/api/v1/orders/{world['order'].pk}/",
            "/api/v1/shipments/",
            f"/api/v1/shipments/{world['shipment'].pk}/",
            "/api/v1/routes/",
            f"/api/v1/routes/{route.pk}/",
            f"/api/v1/routes/{route.pk}/map.svg",
            f"/api/v1/routes/{route.pk}/load-list.csv",
            "/api/v1/schedule-runs/",
            f"/api/v1/schedule-runs/{world['run'].pk}/",
            vehicles,
            f"{vehicles}{route.vehicle_id}/",
        ],
        world["buyer"]: ["/api/v1/me/", "/api/v1/orders/", "/api/v1/notifications/"],
        world["farmer"]: [
            "/api/v1/my/pickups/",
            f"/api/v1/farmers/{world['farmer'].pk}/",
            f"/api/v1/villages/{world['village'].pk}/",
            f"/api/v1/service-centers/{center.pk}/",
            "/api/v1/categories/",
        ],
    }
    for user, paths in reads.items():
        client = client_for(user)
        for path in paths:
            first = client.get(path)
            assert first.status_code == 200, path
            again = client.get(path, HTTP_IF_NONE_MATCH=first["ETag"])
            assert (again.status_code, again.content) == (304, b""), path


@pytest.fixture
def a_center_at_work():
    """A center with its farmer, buyer and staff member, two orders routed, two listings,
    two vehicles with a route each (the first with a stop) and two schedule runs."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    farmer, buyer = FarmerFactory(village=village), BuyerFactory(village=village)
    orders = [
        order_route(order_id=place_order(buyer, (create_listing(farmer, unit="kg"), 2)).pk)
        for _ in range(2)
    ]
    routes = []
    for n in range(2):
        vehicle = Vehicle.objects.create(service_center=center, name=f"小货车{n}", capacity_kg=500)
        routes.append(
            Route.objects.create(service_center=center, date=timezone.localdate(), vehicle=vehicle)
        )
        ScheduleRun.objects.create(
            service_center=center, date=timezone.localdate() + timedelta(days=n)
        )
    shipment = orders[0].shipments.get()
    stop = Stop.objects.create(
        route=routes[0],
        sequence=1,
        kind="pickup",
        lat=shipment.pickup_lat,
        lng=shipment.pickup_lng,
    )
    stop.shipments.add(shipment)
    return {
        "center": center,
        "village": village,
        "farmer": farmer,
        "buyer": buyer,
        "staff": StaffFactory(service_center=center),
        "order": orders[0],
        "shipment": shipment,
        "route": routes[0],
        "run": ScheduleRun.objects.filter(service_center=center).first(),
    }


def test_every_list_is_paged_alike(client_for, a_center_at_work):
    """The contract's lists, each reader's: {count, next, previous, results}, page_size
    taken (a whole number from 1), a page past the end 404."""
    world = a_center_at_work
    lists = {
        world["staff"]: [
            "/api/v1/orders/",
            "/api/v1/shipments/",
            "/api/v1/routes/",
            "/api/v1/schedule-runs/",
            f"/api/v1/service-centers/{world['center'].pk}/vehicles/",
        ],
        world["buyer"]: ["/api/v1/orders/", "/api/v1/notifications/"],
        world["farmer"]: [
            "/api/v1/my/pickups/",
            "/api/v1/listings/?mine=true",
            "/api/v1/categories/",
            "/api/v1/villages/",
            "/api/v1/service-centers/",
        ],
    }
    VillageFactory()
    ServiceCenterFactory()
    for user, paths in lists.items():
        client = client_for(user)
        for path in paths:
            page = client.get(path, {"page_size": 1}).json()
            assert set(page) == {"count", "next", "previous", "results"}, path
            assert (len(page["results"]), page["count"] >= 2, page["previous"]) == (1, True, None)
            assert "page=2" in page["next"], path
            refused = client.get(path, {"page_size": "abc"})
            assert (refused.status_code, refused.json()["code"]) == (400, "validation_error"), path
            past = client.get(path, {"page": 99})
            assert (past.status_code, past.json()["code"]) == (404, "not_found"), path


def test_the_field_names_clients_rely_on_are_answered(api, client_for, a_center_at_work):
    """The contract's list of field names that keep their names, each as its reader gets it;
    money as decimal strings."""
    world = a_center_at_work
    staff, buyer = client_for(world["staff"]), client_for(world["buyer"])
    order = buyer.get(f"/api/v1/orders/{world['order'].pk}/").json()
    route = staff.get(f"/api/v1/routes/{world['route'].pk}/").json()
    login = {"phone": world["buyer"].phone, "password": PASSWORD}
    answers = {
        "village": api.get(f"/api/v1/villages/{world['village'].pk}/").json(),
        "service center": api.get(f"/api/v1/service-centers/{world['center'].pk}/").json(),
        "listing": api.get(f"/api/v1/listings/{world['order'].lines.get().listing_id}/").json(),
        "order": order,
        "order line": order["lines"][0],
        "shipment": staff.get(f"/api/v1/shipments/{world['shipment'].pk}/").json(),
        "schedule run": staff.get(f"/api/v1/schedule-runs/{world['run'].pk}/").json(),
        "route": route,
        "stop": route["stops"][0],
        "token": api.post("/api/v1/auth/token/", login, format="json").json(),
    }
    kept = {
        "village": "id name county lat lng service_center",
        "service center": "id name lat lng",
        "listing": "id farmer title description category unit unit_weight_kg price "
        "quantity_available min_order_quantity harvest_date available_until shelf_life_days "
        "is_organic needs_refrigeration status",
        "order": "id status lines subtotal delivery_fee total delivery_method delivery_village "
        "delivery_address payment_method delivery_code events shipments",
        "order line": "id listing farmer quantity unit_price subtotal status",
        "shipment": "id order farmer origin_center destination_center pickup_date "
        "delivery_date status weight_kg legs events",
        "schedule run": "id service_center date status progress summary",
        "route": "id service_center date vehicle distance_km duration_min stops",
        "stop": "id kind shipments lat lng window_start window_end eta load_kg status",
        "token": "access refresh",
    }
    assert {name: set(fields.split()) - set(answers[name]) for name, fields in kept.items()} == {
        name: set() for name in kept
    }
    money = [order[x] for x in ("subtotal", "delivery_fee", "total")] + [
        order["lines"][0][x] for x in ("unit_price", "subtotal")
    ]
    assert all(isinstance(x, str) for x in money)


def test_the_schema_gives_id_filters_as_the_whole_numbers_they_take(api):
    paths = _schema(api)["paths"]
    for path, name in (
        ("/api/v1/routes/", "service_center"),
        ("/api/v1/notifications/", "order"),
        ("/api/v1/villages/", "service_center"),
        ("/api/v1/shipments/", "origin_center"),
        ("/api/v1/shipments/", "destination_center"),
    ):
        parameter = next(p for p in paths[path]["get"]["parameters"] if p["name"] == name)
        assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


def test_the_schema_gives_decimals_only_the_values_the_api_takes(api, client_for):
    """A decimal's pattern needs a digit, and no minus sign where the minimum is 0: "-" or
    "." (and a negative price) are refused with a 400, so the schema must not offer them.
    (An empty min_price is none: the search unfiltered, as for any parameter left empty.)"""
    schema = _schema(api)
    parameters = schema["paths"]["/api/v1/listings/"]["get"]["parameters"]
    min_price = next(p for p in parameters if p["name"] == "min_price")["schema"]["pattern"]
    taken = ("0", "12", "12.5", "12.50", ".5", "12.", "12345678.99")
    refused = ("-", ".", "-.", "-1", "1.234", "123456789")
    for value in taken + refused:
        status = api.get("/api/v1/listings/", {"min_price": value}).status_code
        assert (status, bool(re.match(min_price, value))) == (
            (200, True) if value in taken else (400, False)
        ), value
    order = schema["components"]["schemas"]["OrderPlaceRequest"]["properties"]
    for value in ("-30.5", "30", "30.123456", ".5"):
        assert re.match(order["delivery_lat"]["pattern"], value), value
    for value in ("", "-", "30.1234567"):
        assert not re.match(order["delivery_lat"]["pattern"], value), value


def test_the_schema_gives_a_nested_list_the_length_it_takes(api):
    """An order's lines: none is 400 `empty` and more than 50 is 400 `max_length`
    (tests/orders/test_place_order.py), so the schema says 1 to 50."""
    schemas = _schema(api)["components"]["schemas"]
    lines = schemas["OrderPlaceRequest"]["properties"]["lines"]
    assert (lines["type"], lines["minItems"], lines["maxItems"]) == ("array", 1, 50)
    assert "minItems" not in schemas["Order"]["properties"]["lines"]  # an answer's, any length


def test_the_schema_describes_no_body_by_how_its_serializer_builds_its_fields(api):
    """FieldsOnce's docstring is about building fields once per class: a serializer with no
    docstring of its own had it as its description (an order's placement, its lines)."""
    schemas = _schema(api)["components"]["schemas"]
    for name in ("OrderPlaceRequest", "LineInputRequest", "Line", "ShipmentLeg", "TrackingEvent"):
        assert "description" not in schemas[name], name
    assert "work out its fields once" not in json.dumps(schemas)


def test_with_redis_down_a_throttled_request_is_503_to_retry_later_and_does_nothing(
    api, client_for, settings
):
    """Redis holds the throttles' counts: with it down, a log in, a sign-up, an order or a
    cancel was 500 server_error, which a phone on a flaky network takes for a bug, not a
    moment to retry. It is 503 service_unavailable with Retry-After; the throttle runs
    before the view, so nothing was done (no order, stock as it was)."""
    buyer = BuyerFactory()
    listing = create_listing(quantity_available=Decimal("10"))
    client = client_for(buyer)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket closes
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{closed}/0"}
    }
    order = {
        "lines": [{"listing": listing.pk, "quantity": "2"}],
        "delivery_method": "home",
        "payment_method": "cod",
    }
    login = {"phone": buyer.phone, "password": "a-good-pass-00"}
    for response in (
        client.post("/api/v1/orders/", order, format="json"),
        api.post("/api/v1/auth/token/", login, format="json"),
    ):
        assert response.status_code == 503
        assert response["Content-Type"] == "application/problem+json"
        assert response["Retry-After"] == "30"
        assert response.json() == {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "code": "service_unavailable",
            "detail": "The service is unavailable for a moment; try again shortly.",
        }
    assert not Order.objects.exists()
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("10")


def test_with_redis_down_a_sign_up_cancel_or_hand_over_is_503_and_does_nothing(
    api, client_for, settings
):
    """The README's other throttled requests: a sign-up, a buyer's cancel and a hand-over
    did nothing either, and may be sent again."""
    center = ServiceCenterFactory()
    village = VillageFactory(service_center=center)
    buyer = BuyerFactory(village=village)
    cancelled = place_order(buyer, create_listing())
    collected = order_route(
        order_id=place_order(
            buyer, (create_listing(FarmerFactory(village=village)), 2), delivery_method="pickup"
        ).pk
    )
    waiting = collected.shipments.get()
    Shipment.objects.filter(pk=waiting.pk).update(status=ShipmentStatus.AT_CENTER)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{closed}/0"}
    }
    sign_up = {
        "phone": "+8613912345678",
        "password": "a-good-pass-00",
        "name": "新用户",
        "role": "buyer",
        "village": village.pk,
    }
    for response in (
        api.post("/api/v1/auth/register/", sign_up, format="json"),
        client_for(buyer).post(f"/api/v1/orders/{cancelled.pk}/cancel/", {}, format="json"),
        client_for(StaffFactory(service_center=center)).post(
            f"/api/v1/shipments/{waiting.pk}/hand-over/",
            {"delivery_code": collected.delivery_code},
            format="json",
        ),
    ):
        assert (response.status_code, response.json()["code"]) == (503, "service_unavailable")
        assert response["Retry-After"] == "30"
    assert not User.objects.filter(phone="+8613912345678").exists()
    assert Order.objects.get(pk=cancelled.pk).status == "placed"
    assert Shipment.objects.get(pk=waiting.pk).status == ShipmentStatus.AT_CENTER


def test_with_redis_hung_a_throttled_request_is_503_in_seconds(client_for, settings):
    """A Redis that takes the connection and never answers (hung, or a proxy in front of a
    dead one): the throttle gives up at redis-py's socket timeout (5 s), and the request is
    503 as with Redis down, nothing done."""
    buyer = BuyerFactory()
    listing = create_listing(quantity_available=Decimal("10"))
    client = client_for(buyer)
    order = {
        "lines": [{"listing": listing.pk, "quantity": "2"}],
        "delivery_method": "home",
        "payment_method": "cod",
    }
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel takes connections; nothing ever reads or answers them
        port = silent.getsockname()[1]
        settings.CACHES = {
            "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{port}/0"}
        }
        give_up = threading.Timer(30, silent.close)  # a request that waits still ends
        give_up.start()
        try:
            started = time.monotonic()
            response = client.post("/api/v1/orders/", order, format="json")
            elapsed = time.monotonic() - started
        finally:
            give_up.cancel()
    assert elapsed < 15, f"{elapsed:.1f} s waiting for a Redis that does not answer"
    assert (response.status_code, response.json()["code"]) == (503, "service_unavailable")
    assert not Order.objects.exists()
    assert Listing.objects.get(pk=listing.pk).quantity_available == Decimal("10")
