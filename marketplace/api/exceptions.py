"""One exception handler: every API error becomes problem+json with a stable `code`.

Shape (RFC 9457 problem details with a `code` member):
    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "code": "validation_error", "detail": "…",
     "errors": [{"field": "phone", "code": "invalid_phone", "detail": "…"}]}
`errors` appears on validation errors, and on domain errors that name a field (their
`field` member, also kept at the top level); domain errors may add members of their own.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.accounts.errors import LOGIN_LOCKED, LOGIN_LOCKED_DETAIL
from marketplace.api.problems import PROBLEM_CONTENT_TYPE, encodable, problem
from marketplace.exceptions import DomainError

logger = logging.getLogger(__name__)

SERVICE_UNAVAILABLE = "service_unavailable"
SERVICE_UNAVAILABLE_DETAIL = "The service is unavailable for a moment; try again shortly."
SERVICE_UNAVAILABLE_RETRY_AFTER = 30  # seconds
REQUEST_TOO_LARGE = "request_too_large"
REQUEST_TOO_LARGE_DETAIL = "The request body is too large."


def _flatten_validation(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error structure into a flat list naming each field path."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            field = prefix if key == "non_field_errors" else f"{prefix}{key}"
            errors.extend(_flatten_validation(value, f"{field}." if field else ""))
        return errors
    if isinstance(detail, list):
        errors = []
        for index, item in enumerate(detail):
            if isinstance(item, dict | list) and not isinstance(item, exceptions.ErrorDetail):
                errors.extend(_flatten_validation(item, f"{prefix}{index}."))
            else:
                errors.extend(_flatten_validation(item, prefix))
        return errors
    field = prefix.rstrip(".") or None
    code = getattr(detail, "code", "invalid")
    return [{"field": field, "code": code, "detail": encodable(str(detail))}]


def _validation_problem(exc: exceptions.ValidationError) -> dict[str, Any]:
    errors = _flatten_validation(exc.detail)
    first = errors[0] if errors else {"field": None, "detail": "Invalid input."}
    summary = f"{first['field']}: {first['detail']}" if first["field"] else first["detail"]
    return problem(400, "validation_error", summary, errors=errors)


def _api_exception_problem(exc: exceptions.APIException) -> dict[str, Any]:
    """DRF's default codes are already stable names (`not_authenticated`, `not_found`, …)."""
    detail = exc.detail
    if isinstance(detail, dict):  # simplejwt: {"detail", "code", "messages"}
        code, text = detail.get("code", exc.default_code), detail.get("detail", exc.default_detail)
    else:
        code, text = getattr(detail, "code", None) or exc.default_code, detail
    return problem(exc.status_code, str(code), str(text))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        body = problem(exc.status_code, exc.code, exc.detail, **exc.extra)
        if isinstance(field := exc.extra.get("field"), str):
            # as a validation error names it, so clients read every field error one way
            body["errors"] = [{"field": field, "code": exc.code, "detail": body["detail"]}]
        return Response(body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, RequestDataTooBig):  # as the idempotency middleware answers it
        body = problem(413, REQUEST_TOO_LARGE, REQUEST_TOO_LARGE_DETAIL)
        return Response(body, status=413, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        # Redis holds the throttles' counts, which run before the view: nothing was done,
        # and the client may try again. Its text (host and port) goes to the log only.
        logger.error("Redis unreachable; answered 503", exc_info=exc)
        body = problem(503, SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE_DETAIL)
        return Response(
            body,
            status=503,
            content_type=PROBLEM_CONTENT_TYPE,
            headers={"Retry-After": str(SERVICE_UNAVAILABLE_RETRY_AFTER)},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    if isinstance(exc, exceptions.ValidationError):
        body = _validation_problem(exc)
    else:
        body = _api_exception_problem(exc)
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def lockout_response(request, credentials=None, *args, **kwargs) -> JsonResponse:
    """django-axes lockout (admin login form): the same problem shape as the API."""
    return JsonResponse(
        problem(429, LOGIN_LOCKED, LOGIN_LOCKED_DETAIL),
        status=status.HTTP_429_TOO_MANY_REQUESTS,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _plain_problem_view(status_code: int, code: str, detail: str):
    def view(request, exception=None):
        return JsonResponse(
            problem(status_code, code, detail),
            status=status_code,
            content_type=PROBLEM_CONTENT_TYPE,
        )

    return view


# Django-level handlers (paths no API view matched, crashes outside DRF): JSON too.
not_found_view = _plain_problem_view(404, "not_found", "Not found.")
server_error_view = _plain_problem_view(500, "server_error", "Server error.")
bad_request_view = _plain_problem_view(400, "bad_request", "Bad request.")
permission_denied_view = _plain_problem_view(403, "permission_denied", "Permission denied.")


class NotFoundAsProblemMiddleware:
    """A path under /api/ that nothing answers is the JSON 404 also with DEBUG on (`make
    run`), where Django answers its HTML page instead of calling handler404. Above
    CommonMiddleware, so a path missing its slash is still redirected when the slashed one
    exists (APPEND_SLASH), and is this 404 when it does not."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith(
                (PROBLEM_CONTENT_TYPE, "application/json")
            )
        ):
            return not_found_view(request)
        return response
