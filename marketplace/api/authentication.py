"""How the API knows who calls: simplejwt's bearer tokens, at less cost per request.

Every authenticated request decodes its access token and reads its user. Two savings on
simplejwt's JWTAuthentication, with its rules unchanged:
- the token is decoded, and its user read and checked, once per request: the idempotency
  middleware does it first, to scope a key to its owner (and to replay nothing to a token
  refused since), and leaves both on the request (`remember_access_token`);
- the user is read by one statement of our own instead of `User.objects.get`, whose query
  building cost four times the read itself (0.5 against 0.1 ms of CPU,
  bench/ORDERS_RESULTS.md).
"""

from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.request import Request
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from marketplace.accounts.models import User
from marketplace.accounts.tokens import SESSION_CLAIM, SIGN_OUTS_CLAIM
from marketplace.db import select

_REMEMBERED = "_validated_access_token"


def remember_access_token(
    request: HttpRequest, raw_token: str, token: Token, user: User | None = None
) -> None:
    """Keep a token validated before DRF's authentication runs (and the user it names,
    if read and checked already), for it to reuse."""
    setattr(request, _REMEMBERED, (raw_token, token, user))


class JWTAuthentication(authentication.JWTAuthentication):
    def authenticate(self, request: Request) -> tuple[User, Token] | None:
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        remembered = getattr(request._request, _REMEMBERED, None)
        if remembered is not None and remembered[0] == raw_token.decode():
            token, user = remembered[1], remembered[2]
            return user if user is not None else self.get_user(token), token
        token = self.get_validated_token(raw_token)
        return self.get_user(token), token

    def get_user(self, validated_token: Token) -> User:
        """simplejwt's checks, in its order and with its codes: user_not_found,
        user_inactive, password_changed (tests/marketplace/test_token_revocation.py); then
        ours, signed_out: a sign-out of every device since the token was issued, or a
        logout of the refresh token an access token was made from
        (marketplace.accounts.tokens)."""
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as error:
            raise InvalidToken(_("Token contained no recognizable user identification")) from error
        user = user_by_id(user_id, validated_token.get(SESSION_CLAIM))
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(
                _("The user's password has been changed."), code="password_changed"
            )
        if validated_token.get(SIGN_OUTS_CLAIM, 0) != user.sign_outs:
            raise AuthenticationFailed(
                _("The user signed out of every device since this token was issued."),
                code="signed_out",
            )
        if user.session_logged_out:
            raise AuthenticationFailed(
                _("This device logged out since this token was issued."), code="signed_out"
            )
        return user


# Whether the refresh token an access token was made from (its session) was logged out:
# read with the user, so that the check costs no statement of its own.
_SESSION_LOGGED_OUT = (
    "session_logged_out",
    (
        "SELECT EXISTS (SELECT 1 FROM token_blacklist_outstandingtoken outstanding"
        " JOIN token_blacklist_blacklistedtoken blacklisted"
        " ON blacklisted.token_id = outstanding.id WHERE outstanding.jti = %s)"
    ),
)


def user_by_id(user_id: object, session: object = None) -> User | None:
    """The user with this key, every column read, or None; its `session_logged_out` tells
    whether the refresh token whose jti is `session` is blacklisted (False for none). The
    key must be a whole number (or its ASCII digits) in the column's range: 2.5 finds no
    one, where a lookup by the ORM would read it as 2."""
    if isinstance(user_id, str) and user_id.isascii() and user_id.isdigit():
        user_id = int(user_id)
    if isinstance(user_id, bool) or not isinstance(user_id, int) or not 0 < user_id < 2**63:
        return None
    if not isinstance(session, str):
        session = None
    found = select(User, 'WHERE "id" = %s', [session, user_id], annotate=(_SESSION_LOGGED_OUT,))
    return found[0] if found else None


class JWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme drf-spectacular gives simplejwt's class, for ours."""

    target_class = JWTAuthentication
