"""The OpenAPI schema's view of our conventions (REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"])."""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import get_lib_doc_excludes, get_view_model
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import permissions, serializers
from rest_framework.schemas.utils import get_pk_description
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle, SimpleRateThrottle

from marketplace.api.exceptions import PROBLEM_CONTENT_TYPE
from marketplace.api.idempotency import HEADER as IDEMPOTENCY_KEY
from marketplace.api.idempotency import KEY_PATTERN, KEYED_METHODS, REPLAYED_HEADER
from marketplace.api.routers import ID_PATTERN
from marketplace.api.serializers import (
    FieldsOnce,
    FieldsOnceModelSerializer,
    FieldsOnceSerializer,
)

_DIGITS = {"type": "string", "pattern": f"^{ID_PATTERN}$"}
TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


class ProblemFieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True, help_text="the field's path; null: the body")
    code = serializers.CharField()
    detail = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """An error (application/problem+json, RFC 9457): clients branch on `code`, which is
    stable; `detail` is for people. A domain error may add members of its own."""

    type = serializers.CharField(help_text="about:blank")
    title = serializers.CharField(help_text="the HTTP status's phrase")
    status = serializers.IntegerField()
    code = serializers.CharField()
    detail = serializers.CharField()
    errors = ProblemFieldErrorSerializer(
        many=True,
        required=False,
        help_text="one per field: a validation_error's, and a domain error's that names its "
        "field (also its top-level `field`)",
    )


THROTTLED = OpenApiResponse(
    ProblemSerializer,
    description="throttled: more requests than this endpoint's rate allows; nothing was done. "
    "Retry-After gives the seconds to wait.",
)
RETRY_AFTER = {
    "schema": {"type": "integer"},
    "description": "Seconds to wait before the request can go through.",
}


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_KEY,
    {"type": "string", "pattern": KEY_PATTERN},
    OpenApiParameter.HEADER,
    description=(
        "1 to 255 visible ASCII characters, new for each action (a UUID). A retry with the "
        "same key and body answers what the first request answered (header "
        "`Idempotent-Replayed: true`) and does nothing again; the same key with another "
        "body is 422 `idempotency_key_reused`; a retry while the first still runs is 409 "
        "`idempotency_key_in_use`. Keys are the caller's own and kept 24 hours."
    ),
)

# Reads (django.middleware.http.ConditionalGetMiddleware): every GET's answer carries an
# ETag, and a GET naming it in If-None-Match is answered 304 with no body.
IF_NONE_MATCH_PARAMETER = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    description="The ETag of the answer held: 304 with no body if it is still the answer.",
)
ETAG = {
    "schema": {"type": "string"},
    "description": "The answer's version, for If-None-Match.",
}
NOT_MODIFIED = {"description": "Not Modified: the If-None-Match ETag is the answer's; no body."}
REPLAYED = {
    "schema": {"type": "string", "enum": ["true"]},
    "description": "On an answer replayed for a retry with the same Idempotency-Key only.",
}

# The errors the framework answers whatever the view does (marketplace.api.exceptions,
# marketplace.api.idempotency), by what an operation takes; its own are declared on the view.
_REFUSED_BEARER = (
    "token_not_valid, signed_out, password_changed, user_inactive, user_not_found: the "
    "bearer token sent is no longer good (expired, signed out, …)"
)
FRAMEWORK_ERRORS = {
    "400": "validation_error: a field or query parameter is not valid (`errors` names each)",
    "400-key": "invalid_idempotency_key: the Idempotency-Key header is malformed",
    "400-query": "invalid_query: the query string holds a NUL character",
    "401": "not_authenticated: no bearer token; " + _REFUSED_BEARER,
    "401-anyone": _REFUSED_BEARER,  # an operation anyone may call: only a bad token is 401
    "403": "permission_denied: not allowed to the caller's role",
    "404": "not_found: no such object for the caller, or no such page of the list",
    "409": "idempotency_key_in_use: a request with this Idempotency-Key is still running",
    "413": "request_too_large: the body is over the size limit",
    "415": "unsupported_media_type: the body's Content-Type is not one this endpoint reads",
    "422": "idempotency_key_reused: this Idempotency-Key came with another body",
}
_OPEN_PERMISSIONS = (
    permissions.AllowAny,
    permissions.IsAuthenticated,
    permissions.IsAuthenticatedOrReadOnly,
)


def lib_doc_excludes() -> list[type]:
    """Classes whose docstrings describe no body (SPECTACULAR_SETTINGS["GET_LIB_DOC_EXCLUDES"]):
    drf-spectacular's, and our FieldsOnce's, which tells how fields are built; a serializer
    with none of its own had it as its description in the schema (an order's placement)."""
    return [*get_lib_doc_excludes(), FieldsOnce, FieldsOnceSerializer, FieldsOnceModelSerializer]


def decimal_pattern(field: serializers.DecimalField) -> str:
    """The decimal strings `field` takes: at least one digit, at most its whole digits and
    decimal places, and a minus sign only where a negative number may pass its minimum.
    drf-spectacular's pattern makes every digit optional, so "", "-" and "." matched it,
    and a price of "-1" where the minimum is 0: a client could not tell from the schema
    that the API refuses them (400)."""
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    places = field.decimal_places
    whole = "0" if field.max_whole_digits == 0 else rf"\d{{1,{field.max_whole_digits}}}"
    if not places:
        return rf"^{sign}{whole}\.?$"
    return rf"^{sign}(?:{whole}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})$"


def _list_length(field: serializers.ListSerializer) -> dict[str, int]:
    """minItems and maxItems of a nested list (`many=True`) as it checks them: DRF's
    ListSerializer refuses an empty list unless allow_empty, and one outside min_length and
    max_length, but drf-spectacular describes none of it (an order's `lines` took [] and 51
    lines by the schema, both 400)."""
    length = {}
    least = max(field.min_length or 0, 0 if field.allow_empty else 1)
    if least:
        length["minItems"] = least
    if field.max_length is not None:
        length["maxItems"] = field.max_length
    return length


def _may_refuse(view, throttle: BaseThrottle) -> bool:
    """Whether `throttle` limits `view`, as DRF decides when a request comes."""
    if isinstance(throttle, ScopedRateThrottle):  # limits only a view with a rated scope
        scope = getattr(view, throttle.scope_attr, None)
        return scope is not None and throttle.THROTTLE_RATES.get(scope) is not None
    if isinstance(throttle, SimpleRateThrottle):
        return throttle.rate is not None
    return True  # a throttle of another kind: it may refuse any request


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        """drf-spectacular's, with the framework's own errors (FRAMEWORK_ERRORS) listed
        where the operation can get them, each as a Problem. Where the view declares an
        answer of that status, it stands, and the middleware's errors of that status are
        added to its description."""
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code, description in self._framework_errors(operation).items():
            if code not in responses:
                declared = OpenApiResponse(ProblemSerializer, description)
                responses[code] = self._problem(declared, code, "response")
            else:
                for error in self._beside_the_view(code):
                    responses[code]["description"] += "; " + FRAMEWORK_ERRORS[error]
        if self.method == "GET":
            responses.setdefault("304", NOT_MODIFIED)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _beside_the_view(self, code: str) -> list[str]:
        """The errors of this status the middleware answers before the view runs."""
        keyed = self._takes_idempotency_key()
        if code == "400":
            return ["400-key", "400-query"] if keyed else ["400-query"]
        return [code] if keyed and code in ("409", "422") else []

    def _framework_errors(self, operation: dict[str, Any]) -> dict[str, str]:
        """Status → description of the framework's errors this operation can get, joined
        from FRAMEWORK_ERRORS; the middleware's come from _beside_the_view, as for a status
        the view declares."""
        has_body = "requestBody" in operation
        queries = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        errors = {code: self._beside_the_view(code) for code in ("400", "409", "422")}
        if has_body or queries - {"page", "page_size"}:
            errors["400"].insert(0, "400")
        if self.get_auth():
            anyone = {} in operation.get("security", [])
            errors["401"] = ["401-anyone" if anyone else "401"]
        if not all(isinstance(p, _OPEN_PERMISSIONS) for p in self.view.get_permissions()):
            errors["403"] = ["403"]
        if "{" in self.path or (self._is_list_view() and self._get_paginator() is not None):
            errors["404"] = ["404"]
        if has_body:
            errors["413"] = ["413"]
        if has_body and not getattr(type(self.view), "reads_raw_body", False):
            errors["415"] = ["415"]
        return {
            code: "; ".join(FRAMEWORK_ERRORS[error] for error in found)
            for code, found in sorted(errors.items())
            if found
        }

    def _takes_idempotency_key(self) -> bool:
        """A POST, PUT, PATCH or DELETE that runs once per key (marketplace.api.idempotency):
        one under /api/ by a signed-in caller (keys are scoped to the user), to a view that
        lets its answers be stored."""
        auth = self.get_auth()
        return (
            self.method in KEYED_METHODS
            and self.path.startswith("/api/")
            and bool(auth)
            and {} not in auth
            and getattr(type(self.view), "idempotency_stores_answers", True)
        )

    def get_override_parameters(self) -> list:
        parameters = list(super().get_override_parameters())
        if self._takes_idempotency_key():
            parameters.append(IDEMPOTENCY_KEY_PARAMETER)
        if self.method == "GET":
            parameters.append(IF_NONE_MATCH_PARAMETER)
        return parameters

    def _throttled(self) -> bool:
        """Whether this operation may answer 429 `throttled`: the view's throttles for it
        (get_throttles, which sees the action, as for a request) include one with a rate."""
        return any(_may_refuse(self.view, throttle) for throttle in self.view.get_throttles())

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        """The view's answers; an error one declared by its description only (login's 401,
        the webhook's 400) is a Problem, as the exception handler answers every error."""
        responses = super()._get_response_bodies(direction)
        for code, response in responses.items():
            if code >= "400" and "content" not in response:
                declared = OpenApiResponse(ProblemSerializer, response.get("description", ""))
                responses[code] = self._problem(declared, code, direction)
        if "429" not in responses and self._throttled():
            responses["429"] = self._problem(THROTTLED, "429", direction)
        return responses

    def _problem(self, response: OpenApiResponse, code: str, direction: str) -> dict[str, Any]:
        return self._get_response_for_code(
            response, code, media_types=[PROBLEM_CONTENT_TYPE], direction=direction
        )

    def _get_response_headers_for_code(self, status_code: str, direction="response") -> dict:
        headers = super()._get_response_headers_for_code(status_code, direction)
        if status_code == "429" and self._throttled():
            headers.setdefault("Retry-After", RETRY_AFTER)
        if status_code == "200" and self.method == "GET":
            headers.setdefault("ETag", ETAG)
        if status_code.startswith("2") and self._takes_idempotency_key():
            headers.setdefault(REPLAYED_HEADER, REPLAYED)
        return headers

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """A time of day (a center's hours, a vehicle's shift) is local wall-clock time with
        no UTC offset: RFC 3339's partial-time, not the `time` format (full-time, which
        needs an offset: "07:00:00Z")."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.TimeField) and schema.get("format") == "time":
            schema.update(format="partial-time", pattern=TIME_OF_DAY_PATTERN, example="07:30:00")
        if isinstance(field, serializers.DecimalField) and "pattern" in schema:
            schema["pattern"] = decimal_pattern(field)
        if isinstance(field, serializers.ListSerializer) and schema.get("type") == "array":
            schema.update(_list_length(field))
        return schema

    def _resolve_path_parameters(self, variables: list[str]) -> list[dict[str, Any]]:
        """An id in a path is an integer, whether a `<int:…>` converter or our router's
        digits-only pattern takes it: drf-spectacular calls a pattern a string, and does
        not describe the object's id (`{id}`) as it does for DRF's default pattern."""
        parameters = super()._resolve_path_parameters(variables)
        model = get_view_model(self.view, emit_warnings=False)
        for parameter in parameters:
            if parameter["schema"] != _DIGITS:
                continue
            parameter["schema"] = {"type": "integer"}
            if parameter["name"] == "id" and model is not None:
                parameter["description"] = get_pk_description(model, model._meta.pk)
        return parameters
