"""Every operation of the OpenAPI schema fuzzed with schemathesis, as each role that may
call it and as anonymous, against a small county: two centers with a van each, farmers
with listings, a buyer with orders (routed, one prepaid and unpaid, one picked up at the
center, one of another center's farm) and the day's routes planned with their stops.

Requests are generated from the schema, valid (positive) and invalid (negative), and sent
in process through Django's WSGI handler. Valid requests often name the county's own rows
(ids, category slugs, phones with their password, delivery codes, days near today), and
a valid payment notice is signed as the provider signs it, so that they reach past the
404s and 401s to the services. Each answer must be:
- never a 5xx (not_a_server_error);
- for every 4xx, a problem: application/problem+json whose JSON has `code` and the other
  members every problem has, its `status` the answer's;
- as the schema says: a status it lists, of the content type, headers and body it lists
  (status_code, content_type, response_headers and response_schema conformance), an
  `Allow` header on a 405 (allow_header_conformance), an unsupported method refused
  (unsupported_method), a missing required header refused (missing_required_header);
- for an invalid request, refused (negative_data_rejection). Two kinds of generated
  request are not sent as invalid ones: an empty query value or form field
  (`?status=`), which the API reads as no value given, as an HTML form's empty field
  (django-filter, DRF's paginator and its form fields all do; of a repeated one, the
  last is read), and a form body that is no object (a form is fields: an integer sent
  as one is a malformed form, read as none).
  A case schemathesis marks negative with nothing of it negated as sent is not held to
  be refused (its file samples make a photo upload a real, valid image), nor one whose
  faults DRF's CharField reads away: a string too long by the whitespace around it,
  which it trims first, or a number where text goes, taken as its digits.

Left off, and why:
- positive_data_acceptance: a request valid by the schema is refused for reasons no schema
  holds (another farmer's listing, stock, a day gone by, an order already cancelled);
- max_response_time: it measures this machine, not the API;
- ignored_auth, use_after_free, ensure_resource_availability: they send requests of their
  own over the network (not to the app in process), or follow links between operations
  that the schema does not declare; anonymous is one of the roles here, and the role
  tests (tests/*/…) check who may do what.

Deterministic (derandomized, no example database written) and bounded by EXAMPLES per
operation and role, so the whole file runs in under a minute."""

import hashlib
import hmac
import itertools
import json
import os
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from listings.models import Category, Listing, ListingPhoto
from logistics.models import Route, ScheduleRun, ServiceCenter, Shipment, Stop, Vehicle, Village
from logistics.services import schedule
from logistics.services.routing import order_route
from marketplace.accounts.models import User
from marketplace.accounts.tokens import RefreshToken
from marketplace.api.exceptions import PROBLEM_CONTENT_TYPE
from marketplace.api.idempotency import HEADER as IDEMPOTENCY_KEY
from orders.models import Notification, Order, OrderLine
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

# 12 a case: the file runs in under a minute; more for a longer hunt (the same examples
# for the same number: derandomized)
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "12"))
PROBLEM_KEYS = {"type", "title", "status", "code", "detail"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    allow_header_conformance,
    unsupported_method,
    missing_required_header,
    negative_data_rejection,
]
BASE_URL = "http://localhost"
FORMS = {"multipart/form-data", "application/x-www-form-urlencoded"}
WEBHOOK = "POST /api/v1/payments/webhook/"
APP = WSGIHandler()

SCHEMA = schemathesis.openapi.from_dict(
    json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True))),
    # the role's bearer token is sent as given: none is generated, nor taken off
    config=schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}}),
)
OPERATIONS = {
    f"{operation.method.upper()} {operation.path}": operation
    for operation in (result.ok() for result in SCHEMA.get_all_operations())
}

# Who may call an operation beside anonymous: its path's first match (method, part of path).
CALLERS = [
    ("", "/vehicles/", {"staff"}),
    ("POST", "/schedule/", {"staff"}),
    ("", "/schedule-runs/", {"staff"}),
    ("", "/routes/", {"staff"}),
    ("", "/stops/", {"staff"}),
    ("POST", "/shipments/", {"staff"}),
    ("GET", "/my/pickups/", {"farmer"}),
    ("POST", "/reject/", {"farmer"}),
    ("GET", "/listings/", {"buyer", "farmer", "staff"}),
    ("", "/listings/", {"farmer"}),
    ("POST", "/cancel/", {"buyer", "staff"}),
    ("POST", "/review/", {"buyer"}),
    ("POST", "/api/v1/orders/", {"buyer"}),
    ("", "/api/v1/payments/", set()),  # the payment provider, with no bearer token
    ("", "", {"buyer", "farmer", "staff"}),
]


def _callers(label: str) -> list[str]:
    method, path = label.split(" ")
    for only, part, roles in CALLERS:
        if only in ("", method) and part in path:
            return ["anonymous", *sorted(roles)]
    raise AssertionError(label)  # pragma: no cover


CASES = [(label, role) for label in OPERATIONS for role in _callers(label)]


def _village_near(center, dlat: str, dlng: str) -> Village:
    return VillageFactory(
        service_center=center, lat=center.lat + Decimal(dlat), lng=center.lng + Decimal(dlng)
    )


def _county() -> dict[str, User]:
    center = ServiceCenterFactory(lat=Decimal("30.200000"), lng=Decimal("119.600000"))
    other = ServiceCenterFactory(lat=Decimal("30.500000"), lng=Decimal("119.900000"))
    Vehicle.objects.create(service_center=center, name="van", capacity_kg=Decimal(300))
    Vehicle.objects.create(service_center=other, name="truck", capacity_kg=Decimal(500))
    farmers = [FarmerFactory(village=_village_near(center, f"0.0{n}", "0.02")) for n in (1, 2)]
    far_farmer = FarmerFactory(village=_village_near(other, "0.01", "0.01"))
    tomatoes = create_listing(farmers[0], unit="kg", quantity_available=Decimal(500))
    eggs = create_listing(
        farmers[0], title="土鸡蛋", unit="dozen", unit_weight_kg=Decimal("0.75"), category="eggs"
    )
    apples = create_listing(farmers[1], title="苹果", unit="jin")
    cabbage = create_listing(far_farmer, title="白菜", unit="kg")
    buyer = BuyerFactory(village=_village_near(center, "-0.01", "0.01"))
    other_buyer = BuyerFactory(village=_village_near(other, "-0.01", "0.01"))
    first = order_route(order_id=place_order(buyer, (tomatoes, 5), (apples, 3)).pk)
    order_route(order_id=place_order(buyer, (eggs, 2)).pk)
    order_route(order_id=place_order(buyer, (cabbage, 4), delivery_method="pickup").pk)
    place_order(buyer, (tomatoes, 1), payment_method="prepaid")
    order_route(order_id=place_order(other_buyer, (cabbage, 1)).pk)
    day = Shipment.objects.filter(order=first).values_list("pickup_date", flat=True)[0]
    run = ScheduleRun.objects.create(service_center=center, date=day)
    schedule.schedule_run_execute(run_id=run.pk)
    StaffFactory(service_center=other)
    return {"buyer": buyer, "farmer": farmers[0], "staff": StaffFactory(service_center=center)}


def _ids(model) -> list[int]:
    return list(model.objects.order_by("pk").values_list("pk", flat=True))


def _known() -> dict[str, list]:
    """What valid requests may name, by the path segment or field that names it."""
    today = timezone.localdate()
    return {
        "listings": _ids(Listing),
        "photos": _ids(ListingPhoto),
        "orders": _ids(Order),
        "lines": _ids(OrderLine),
        "service-centers": _ids(ServiceCenter),
        "vehicles": _ids(Vehicle),
        "categories": _ids(Category),
        "farmers": _ids(User),
        "notifications": _ids(Notification),
        "routes": _ids(Route),
        "schedule-runs": _ids(ScheduleRun),
        "shipments": _ids(Shipment),
        "stops": _ids(Stop),
        "villages": _ids(Village),
        "category-slugs": sorted(Category.objects.values_list("slug", flat=True)),
        "phones": sorted(User.objects.values_list("phone", flat=True)),
        "passwords": [PASSWORD],
        "delivery-codes": sorted(Order.objects.values_list("delivery_code", flat=True)),
        "refresh-tokens": [str(RefreshToken.for_user(user)) for user in User.objects.all()[:3]],
        "quantities": ["1", "2.5", "0.5", "40"],
        "weights": ["1.5", "25"],
        "prices": ["3.50", "12"],
        "amounts": ["8.50", "3.50", "0.01"],
        "notice-kinds": ["payment.succeeded", "refund.succeeded"],
        "currencies": ["CNY"],
        "days": [str(today + timedelta(days=n)) for n in (0, 1, 2)],
        "later-days": [str(today + timedelta(days=n)) for n in (3, 10)],
    }


# The field (of a body, or a query parameter) a valid request may fill from `KNOWN`.
BODY_FIELDS = {
    "listing": "listings",
    "village": "villages",
    "delivery_village": "villages",
    "order": "orders",
    "category": "category-slugs",
    "phone": "phones",
    "password": "passwords",
    "current_password": "passwords",
    "refresh": "refresh-tokens",
    "delivery_code": "delivery-codes",
    "quantity": "quantities",
    "weight_kg": "weights",
    "unit_weight_kg": "weights",
    "price": "prices",
    "date": "days",
    "amount": "amounts",
    "type": "notice-kinds",
    "currency": "currencies",
    "harvest_date": "days",
    "available_until": "later-days",
}
QUERY_FIELDS = {
    "farmer": "farmers",
    "village": "villages",
    "service_center": "service-centers",
    "origin_center": "service-centers",
    "destination_center": "service-centers",
    "category": "category-slugs",
    "order": "orders",
    "date": "days",
}
KNOWN: dict[str, list] = {}
KEYS = itertools.count()


@pytest.fixture(scope="module")
def tokens(django_db_setup, django_db_blocker):
    """The county, built once for the module and rolled back after it; each test runs in
    a savepoint of it (pytest-django's), so what one test changes the next never sees."""
    # the days of tests/conftest.py: routing's cut-off far from now, tonight's plan ahead
    cut_off = (timezone.localtime().hour + 12) % 24 or 23
    days = override_settings(ROUTING_CUTOFF_HOUR=cut_off, NIGHTLY_SCHEDULE_HOUR=24)
    with django_db_blocker.unblock(), transaction.atomic():
        with days:
            users = _county()
        KNOWN.update(_known())
        yield {
            role: {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}
            for role, user in users.items()
        } | {"anonymous": {}}
        KNOWN.clear()
        transaction.set_rollback(True)


@pytest.fixture
def in_process():
    """Requests through the WSGI handler, as Django's test client sends them: the
    connection (and so the test's transaction) is not closed at the end of a request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _resource(path: str, name: str) -> str:
    parts = path.strip("/").split("/")
    return parts[parts.index(f"{{{name}}}") - 1]


def _mutations(case) -> tuple:
    """What schemathesis negated in a case, as it will send it (none for a positive one)."""
    return getattr(case.meta.phase.data, "mutations", ()) if case.meta else ()


def _path_of_known_rows(case, data) -> None:
    """Some cases name the county's rows in their path (not one whose path is what was
    made invalid), so that they reach past the 404s to the services."""
    if not case.path_parameters or not data.draw(st.booleans()):
        return
    if any(m.parameter_location == ParameterLocation.PATH for m in _mutations(case)):
        return
    case.path_parameters = {
        name: data.draw(
            st.sampled_from([str(pk) for pk in KNOWN[_resource(case.path, name)]] or ["1"])
        )
        for name in case.path_parameters
    }


def _empty(value) -> bool:
    """A query parameter or form field the API reads as none given: sent empty (an empty
    object or list goes as nothing), or a repeated one whose last value is."""
    if isinstance(value, list) and value:
        return _empty(value[-1])
    return value in ("", None, {}, [])


def _sendable(case, mode: GenerationMode, json_body: bool) -> bool:
    if mode.is_positive:
        # a form or multipart body cannot carry the nested objects the schema has
        return not json_body or case.media_type == "application/json"
    if case.media_type in FORMS and (
        not isinstance(case.body, dict) or any(map(_empty, case.body.values()))
    ):
        return False
    return not any(map(_empty, (case.query or {}).values()))


def _read_as_text(mutation) -> bool:
    """A fault DRF's CharField reads away: a string too long by the whitespace around it,
    which it trims first (a reason of 255 characters after a leading U+0085), or a number
    where text goes, which it takes as its digits ({"reason": 409})."""
    value = mutation.new_value
    if mutation.keywords == ("maxLength",):
        return isinstance(value, str) and value != value.strip()
    return mutation.keywords == ("type",) and (mutation.original_value, value) in {
        ("string", "integer"),
        ("string", "number"),
    }


def _checks(case) -> list:
    """A case schemathesis marks negative with nothing of it negated as sent (a photo
    upload it could not make invalid stays a real image: "Positive test case"), or whose
    faults DRF's CharField all reads away, is not held to be refused."""
    if case.meta.generation.mode.is_negative and all(map(_read_as_text, _mutations(case))):
        return [check for check in CHECKS if check is not negative_data_rejection]
    return CHECKS


def _cases(operation, mode: GenerationMode) -> st.SearchStrategy:
    json_body = any(body.media_type == "application/json" for body in operation.body)
    return operation.as_strategy(generation_mode=mode).filter(
        lambda case: _sendable(case, mode, json_body)
    )


def _with_known(data, value, fields: dict[str, str]):
    """The value with some fields swapped for what the county holds."""
    if isinstance(value, list):
        return [_with_known(data, item, fields) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: (
            data.draw(st.sampled_from(KNOWN[fields[key]]))
            if key in fields and KNOWN[fields[key]] and data.draw(st.booleans())
            else _with_known(data, item, fields)
        )
        for key, item in value.items()
    }


def _make_valid_requests_reach_rows(case, data) -> None:
    if isinstance(case.body, dict | list):
        case.body = _with_known(data, case.body, BODY_FIELDS)
    if case.query:
        case.query = _with_known(data, case.query, QUERY_FIELDS)
    if case.headers and IDEMPOTENCY_KEY in case.headers:
        case.headers[IDEMPOTENCY_KEY] = f"fuzz-{next(KEYS)}"  # a new request, not a retry


def _signed_by_the_provider(case) -> None:
    """A valid notice to the payment webhook is signed, as the provider signs it, so it
    reaches the payment records rather than 401 invalid_signature."""
    raw = json.dumps(case.body).encode()  # the bytes schemathesis sends for it
    timestamp = int(time.time())
    secret = django_settings.PAYMENT_WEBHOOK_SECRET.encode()
    digest = hmac.new(secret, f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    case.headers = {**(case.headers or {}), "X-Signature": f"t={timestamp},v1={digest}"}


def _assert_problem(case, response) -> None:
    where = f"{case.method} {case.formatted_path} answered {response.status_code}"
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM_CONTENT_TYPE, f"{where} as {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict), f"{where}: {body!r}"
    assert body.keys() >= PROBLEM_KEYS, f"{where}: {body!r}"
    assert isinstance(body["code"], str), f"{where}: {body!r}"
    assert body["code"], f"{where}: {body!r}"
    assert body["status"] == response.status_code, f"{where}: {body!r}"


@pytest.mark.django_db
# A cache key memcached would refuse (the login throttle's held the phone as sent) fails the
# request it came from, and so the operation's fuzz.
@pytest.mark.filterwarnings("error::django.core.cache.CacheKeyWarning")
@pytest.mark.parametrize(("label", "role"), CASES, ids=[f"{label} as {r}" for label, r in CASES])
def test_every_operation_answers_as_its_schema_says(tokens, in_process, label, role):
    operation = OPERATIONS[label]
    headers = {**tokens[role], "Accept-Encoding": "identity"}  # no gzip to read

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(
        case=st.one_of(
            _cases(operation, GenerationMode.POSITIVE), _cases(operation, GenerationMode.NEGATIVE)
        ),
        data=st.data(),
    )
    def answers_as_its_schema_says(case, data):
        _path_of_known_rows(case, data)
        if case.meta.generation.mode.is_positive:
            _make_valid_requests_reach_rows(case, data)
            if label == WEBHOOK:
                _signed_by_the_provider(case)
        response = case.call(base_url=BASE_URL, app=APP, headers=headers)
        case.validate_response(
            response, checks=_checks(case), headers=headers, transport_kwargs={"app": APP}
        )
        if 400 <= response.status_code < 500:
            _assert_problem(case, response)

    answers_as_its_schema_says()


def test_every_operation_is_fuzzed_as_anonymous_and_as_each_role_that_may_call_it():
    assert len(OPERATIONS) >= 53
    assert {label for label, role in CASES if role == "anonymous"} == set(OPERATIONS)
    roles = {label: {role for other, role in CASES if other == label} for label in OPERATIONS}
    assert roles["POST /api/v1/orders/"] == {"anonymous", "buyer"}
    assert roles["POST /api/v1/orders/{id}/cancel/"] == {"anonymous", "buyer", "staff"}
    assert roles["PATCH /api/v1/listings/{id}/"] == {"anonymous", "farmer"}
    assert roles["GET /api/v1/listings/"] == {"anonymous", "buyer", "farmer", "staff"}
    assert roles["POST /api/v1/stops/{id}/complete/"] == {"anonymous", "staff"}
    assert roles["GET /api/v1/orders/"] == {"anonymous", "buyer", "farmer", "staff"}
    assert roles["POST /api/v1/payments/webhook/"] == {"anonymous"}
