"""Idempotency-Key for every POST (and PATCH, PUT, DELETE) of the API, once, as middleware.

Follows the IETF Idempotency-Key draft and Stripe's practice:
- the key is scoped to the signed-in user (another user's same key is another key);
- a retry with the same key and the same body replays the stored status and body (with
  `Idempotent-Replayed: true`) and does nothing again;
- the same key with a different body (or path) → 422 `idempotency_key_reused`; a JSON body
  is compared by what it says, so the same object with its keys in another order or other
  whitespace (a phone app serializing its map again after a restart) is the same body, as
  Stripe compares a request's parameters (other bodies are compared by their bytes);
- a retry while the first request still runs → 409 `idempotency_key_in_use`;
- records expire after IDEMPOTENCY_KEY_TTL (a periodic task prunes them).

The record is written in the same transaction as the effect: the view runs inside one
transaction holding a transaction-scoped advisory lock on (user, key), and the record is
inserted before that transaction commits. A crash before the commit leaves neither the
effect nor the record (the retry runs afresh); a crash after it leaves both (the retry
replays). Task enqueues registered with on_commit run only after that commit.

The draft covers PATCH too: a farmer's stock set by a PATCH whose answer was lost, retried
after an order took some, would put the sold units back on sale; with its key the retry is
answered as the first. A DELETE retried with its key gets its 204 again rather than 404.

Anonymous POSTs (register, log in, refresh, log out, the payment webhook: views that read
no bearer token, even when a client sends one along) are not covered: a key needs an
owner, their answers are live token pairs, and they are safe to retry as they are (a
second register answers phone_taken, a second log out 204 again; the webhook is
idempotent per provider event id).

A view whose answers must not be kept sets `idempotency_stores_answers = False`: the key
still serializes its retries (409 while one runs) but nothing is stored, so a retry runs
afresh, and the view is one a retry cannot make act twice. The password change is one: its
answer is a live token pair and its body holds two passwords, of which the stored
fingerprint would be a fast, unsalted hash; its retry is refused by the new password.
"""

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, RawPostDataException
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, get_resolver
from django.utils import timezone
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from marketplace.api.authentication import JWTAuthentication, remember_access_token
from marketplace.api.exceptions import (
    PROBLEM_CONTENT_TYPE,
    REQUEST_TOO_LARGE,
    REQUEST_TOO_LARGE_DETAIL,
    problem,
)
from marketplace.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII, as the draft's examples
_VALID_KEY = re.compile(KEY_PATTERN)
# Answers that say who or when, not what the request did: never stored, so a retry after
# signing in again (or after a lock-out) runs the request.
_NOT_STORED = {401, 403, 429}
# Nor the refusals of a request's form before any view code ran (too large, a media type not
# taken): the same bytes sent again as JSON, or within the limit, must run under the key.
_NOT_STORED |= {413, 415}
KEYED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse(
        problem(status, code, detail), status=status, content_type=PROBLEM_CONTENT_TYPE
    )


def _user_id(request: HttpRequest, view_class: type | None) -> int | None:
    """The key's owner: the user of a bearer token that is good now, as DRF's
    authentication checks it (not logged out, no password changed or sign-out of every
    device since, the user active). None else, and the view answers 401: a phone signed
    out after it lost its owner gets no stored answer back (an order and its delivery
    code), as it gets nothing else. A view whose effect refuses the very token it was sent
    with (sign out of every device) says so with `idempotency_replays_to_refused_tokens`:
    its retry is replayed (an empty 204) to that token, whose signature and expiry are
    still checked."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme not in jwt_settings.AUTH_HEADER_TYPES or not raw:
        return None
    raw = raw.strip()
    try:
        token = AccessToken(raw)
        user_id = int(token[jwt_settings.USER_ID_CLAIM])
    except (TokenError, KeyError, ValueError):
        return None  # the view answers 401
    if getattr(view_class, "idempotency_replays_to_refused_tokens", False):
        remember_access_token(request, raw, token)
        return user_id
    try:
        user = JWTAuthentication().get_user(token)
    except (AuthenticationFailed, InvalidToken):
        return None  # the view answers 401, with the code
    # DRF's authentication decodes it, and reads its user, no more
    remember_access_token(request, raw, token, user)
    return user.pk


def _view(request: HttpRequest) -> Callable | None:
    """The view the request goes to; None for no view. A path no view answers is 404
    whatever the key, with nothing run and nothing stored: a path missing its final slash
    is redirected to the slashed one from that 404 (APPEND_SLASH), where the same request
    under the same key must run, not meet a 422 for a key its redirect used."""
    try:
        return get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info).func
    except Resolver404:
        return None


def _view_class(view: Callable) -> type | None:
    """The class of a view (DRF's viewsets name it `cls`, other class-based views
    `view_class`); None for a function."""
    return getattr(view, "cls", None) or getattr(view, "view_class", None)


def _takes_method(view: Callable, method: str) -> bool:
    """Whether the view handles `method`: a viewset's route maps methods to its actions,
    another class-based view has a method of that name (a function view: assumed so). One
    it does not take is 405 with nothing run, whatever the key: not 422 for a key used
    before by another request, and not stored to be replayed to the next one."""
    actions = getattr(view, "actions", None)
    if actions is not None:
        return method.lower() in actions
    view_class = _view_class(view)
    return view_class is None or hasattr(view_class, method.lower())


def _view_reads_the_user(view_class: type | None) -> bool:
    """Anonymous views (register, log in, refresh, log out, the payment webhook) read no
    bearer token, so a key sent to one has no owner: were it scoped to whoever a token
    beside it names, their live token pairs would be stored, and a token of a user
    deleted since would fail the record's insert."""
    return view_class is None or bool(getattr(view_class, "authentication_classes", True))


def _lock_id(user_id: int, key: str) -> int:
    digest = hashlib.sha256(f"{user_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _fingerprint(request: HttpRequest) -> str:
    """sha256 of method, path and body. A multipart POST (an upload) is hashed by its
    fields and files rather than its bytes: a client retrying the same upload draws a new
    random boundary, and files are not held in memory whole (Django spools them); Django
    parses those for a POST only, so another method's multipart body is hashed by its bytes.
    A JSON body is hashed as what it says (keys sorted, no whitespace, each number as
    written), not as its bytes; one that the view could not read as JSON, by its bytes."""
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    if request.method == "POST" and (request.content_type or "").startswith("multipart/"):
        try:
            fields = sorted(request.POST.lists())
        except MultiPartParserError as error:
            digest.update(_unparsed(request, error))
            return digest.hexdigest()
        for name, values in fields:
            digest.update(repr((name, values)).encode())
        for name, upload in sorted(request.FILES.items()):
            digest.update(repr((name, upload.name, upload.size)).encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    elif request.content_type == "application/json":
        digest.update(_canonical_json(request.body))
    else:
        digest.update(request.body)
    return digest.hexdigest()


def _unparsed(request: HttpRequest, error: MultiPartParserError) -> bytes:
    """The bytes of a multipart body Django could not parse (no boundary): the view parses
    it again and answers 400 parse_error saying why, as it does with no key. When the parser
    failed after reading part of it, the bytes are gone: Django answers that 400 itself."""
    try:
        return request.body
    except RawPostDataException:
        raise error from None


class _Number(str):
    """A JSON number (or NaN, Infinity) as written: `1.0` is not the string `"1.0"`, nor
    `2.5` the number `2.50` (a field may read them differently)."""


def _canonical_json(body: bytes) -> bytes:
    """What a JSON body says, written one way; its bytes when the view could not read it as
    JSON (it reads UTF-8 only; no JSON, or nested too deeply): the view answers 400, and
    that answer is kept under those bytes."""
    try:
        data = json.loads(
            body.decode("utf-8"), parse_float=_Number, parse_int=_Number, parse_constant=_Number
        )
        return _written(data).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return body


def _written(value) -> str:
    if isinstance(value, _Number):
        return value
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_written(k)}:{_written(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_written(item) for item in value) + "]"
    return json.dumps(value)  # true, false, null


class _Stored(NamedTuple):
    fingerprint: str
    status_code: int
    content_type: str
    body: bytes
    expires_at: datetime


# The record is read and written in SQL of our own, not through the ORM: this runs on every
# keyed POST, and the ORM spent 0.5 ms of CPU building the lookup and 0.2 ms the insert (on
# the machine of bench/ORDERS_RESULTS.md, of ~20 ms per order placed); these cost 0.07 ms
# each. The table and its columns are IdempotencyRecord's, which the pruning task uses.
_TABLE = IdempotencyRecord._meta.db_table
_LOOKUP = (
    f"SELECT fingerprint, status_code, content_type, body, expires_at FROM {_TABLE} "  # noqa: S608
    "WHERE user_id = %s AND key = %s"
)
_INSERT = (
    f"INSERT INTO {_TABLE} (user_id, key, fingerprint, status_code, content_type, body, "  # noqa: S608
    "created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def _lookup(user_id: int, key: str) -> _Stored | None:
    with connection.cursor() as cursor:
        cursor.execute(_LOOKUP, [user_id, key])
        row = cursor.fetchone()
    return None if row is None else _Stored(*row)


def _store(user_id: int, key: str, fingerprint: str, response: HttpResponse, now: datetime) -> None:
    expires_at = now + timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)
    content_type = response.get("Content-Type", "application/json")
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT,
            [
                user_id,
                key,
                fingerprint,
                response.status_code,
                content_type,
                response.content,
                now,
                expires_at,
            ],
        )


def _replay(record: _Stored) -> HttpResponse:
    response = HttpResponse(
        bytes(record.body), status=record.status_code, content_type=record.content_type
    )
    response[REPLAYED_HEADER] = "true"
    return response


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        if (
            key is None
            or request.method not in KEYED_METHODS
            or not request.path.startswith("/api/")
        ):
            return self.get_response(request)
        if not _VALID_KEY.match(key):
            return _problem(
                400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            )
        view = _view(request)
        if view is None or not _takes_method(view, request.method):
            return self.get_response(request)
        view_class = _view_class(view)
        user_id = _user_id(request, view_class) if _view_reads_the_user(view_class) else None
        if user_id is None:
            return self.get_response(request)
        return self._once(request, user_id, key, view_class)

    def _once(
        self, request: HttpRequest, user_id: int, key: str, view_class: type | None
    ) -> HttpResponse:
        try:
            fingerprint = _fingerprint(request)
        except RequestDataTooBig:
            return _problem(413, REQUEST_TOO_LARGE, REQUEST_TOO_LARGE_DETAIL)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_lock_id(user_id, key)])
                (locked,) = cursor.fetchone()
            if not locked:
                return _problem(
                    409,
                    "idempotency_key_in_use",
                    "A request with this Idempotency-Key is still being processed; retry later.",
                )
            now = timezone.now()
            # A statement of its own, after the lock: its snapshot then includes the record of
            # a first request that committed (and so let go of the lock) an instant before this
            # one took it. Read in the lock's own statement, whose snapshot is taken before the
            # lock, that record could be missed and the request run a second time.
            record = _lookup(user_id, key)
            if record is not None and record.expires_at <= now:
                IdempotencyRecord.objects.filter(user_id=user_id, key=key).delete()
                record = None
            if record is not None:
                if record.fingerprint != fingerprint:
                    return _problem(
                        422,
                        "idempotency_key_reused",
                        "This Idempotency-Key was used with a different request.",
                    )
                return _replay(record)

            response = self.get_response(request)
            if response.status_code >= 500:
                transaction.set_rollback(True)  # the effect is undone; a retry runs afresh
            elif (
                response.status_code not in _NOT_STORED
                and not response.streaming
                and getattr(view_class, "idempotency_stores_answers", True)
            ):
                _store(user_id, key, fingerprint, response, now)
            return response
