"""The OpenAPI schema's view of our conventions (REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"])."""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import get_view_model
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.schemas.utils import get_pk_description
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle, SimpleRateThrottle

from marketplace.api.exceptions import PROBLEM_CONTENT_TYPE
from marketplace.api.routers import ID_PATTERN

_DIGITS = {"type": "string", "pattern": f"^{ID_PATTERN}$"}


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
        many=True, required=False, help_text="validation_error only: one per field"
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


def _may_refuse(view, throttle: BaseThrottle) -> bool:
    """Whether `throttle` limits `view`, as DRF decides when a request comes."""
    if isinstance(throttle, ScopedRateThrottle):  # limits only a view with a rated scope
        scope = getattr(view, throttle.scope_attr, None)
        return scope is not None and throttle.THROTTLE_RATES.get(scope) is not None
    if isinstance(throttle, SimpleRateThrottle):
        return throttle.rate is not None
    return True  # a throttle of another kind: it may refuse any request


class AutoSchema(openapi.AutoSchema):
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
        return headers

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
