import hashlib

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from marketplace.accounts import selectors, services
from marketplace.accounts.api.serializers import (
    LogoutSerializer,
    PasswordChangeSerializer,
    ProfileUpdateSerializer,
    RegisterResponseSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    TokenRefreshSerializer,
    UserSerializer,
)
from marketplace.accounts.phones import lockout_username
from marketplace.accounts.tokens import RefreshToken


class RegisterView(APIView):
    """A farmer or a buyer signs up with their phone number; answers with tokens too."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    @extend_schema(request=RegisterSerializer, responses={201: RegisterResponseSerializer})
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        refresh = RefreshToken.for_user(user)
        body = {
            **UserSerializer(user).data,
            "access": str(refresh.access_token),
            "refresh": str(refresh),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class LoginThrottle(SimpleRateThrottle):
    """Log-in attempts from one address, whatever phones they name (LOGIN_THROTTLE_RATE)."""

    scope = "login"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginPhoneThrottle(SimpleRateThrottle):
    """Log-in attempts naming one phone, in any spelling, from any address
    (LOGIN_PHONE_THROTTLE_RATE). The key holds the phone's SHA-256, not the phone: what is
    sent as one may be any text (spaces, control characters, any Unicode), which no cache
    key should hold (Django warns, memcached refuses), and the key names nobody."""

    scope = "login_phone"

    def get_cache_key(self, request, view) -> str | None:
        phone = lockout_username(request)
        if phone is None:
            return None
        ident = hashlib.sha256(phone.encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


@extend_schema_view(
    post=extend_schema(
        responses={
            200: TokenPairSerializer,
            401: OpenApiResponse(description="no_active_account: wrong phone or password"),
            429: OpenApiResponse(
                description="too_many_login_attempts: locked out after failures of this "
                "phone from this address; throttled: too many log-ins from this address, or "
                "of this phone from anywhere (Retry-After)"
            ),
        }
    )
)
class TokenObtainView(jwt_views.TokenObtainPairView):
    """Log in: phone and password give an access token and a refresh token. Beside the
    lock-out (django-axes: failures of a phone from an address), two throttles: one
    address's log-ins whatever the phone, one phone's from any address."""

    throttle_classes = [LoginThrottle, LoginPhoneThrottle]


@extend_schema_view(
    post=extend_schema(
        responses={
            200: TokenRefreshSerializer,
            401: OpenApiResponse(
                description="token_not_valid (logged out, expired or not ours), "
                "password_changed, user_inactive or user_not_found: log in again"
            ),
        }
    )
)
class TokenRefreshView(jwt_views.TokenRefreshView):
    """A refresh token gives a new access token; it does not rotate, so a retry is safe."""


class LogoutView(jwt_views.TokenViewBase):
    """Log out: the refresh token given refreshes no more, and the access tokens made from
    it are refused. Asks for no access token (one may have expired meanwhile); holding the
    refresh token is enough to revoke it."""

    serializer_class = LogoutSerializer

    @extend_schema(
        responses={
            204: OpenApiResponse(
                description="Revoked; also when it was revoked already (a retried logout)."
            ),
            400: OpenApiResponse(description="validation_error: no refresh token given"),
            401: OpenApiResponse(
                description="token_not_valid: not a refresh token of ours, or expired; "
                "nothing was revoked"
            ),
        },
    )
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as error:
            raise InvalidToken(error.args[0]) from error
        services.refresh_token_revoke(token=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """Sign out of every device: every token of the user, refresh and access, this
    device's too, is refused from now on (what the admin's "Sign out of every device"
    does). A retry with its Idempotency-Key replays the 204; one without carries a token
    now refused (401 signed_out)."""

    # Its effect refuses the token it came with: its retry is replayed all the same (an
    # empty 204, nothing to leak), to that token (marketplace.api.idempotency).
    idempotency_replays_to_refused_tokens = True

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(
                description="Every token of the user issued until now, refresh and access, "
                "is refused (401 signed_out)."
            )
        },
    )
    def post(self, request):
        services.user_tokens_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordChangeView(APIView):
    """A new password, given the current one. Every older token of the user is refused from
    now on (other devices: 401, log in again); this device goes on with the pair answered."""

    # Not kept under an Idempotency-Key (marketplace.api.idempotency): the answer is a live
    # token pair, and the stored fingerprint would be a fast hash of both passwords. A retry
    # of a change that went through is 401 password_changed, changing nothing; the client
    # logs in with the new password it sent.
    idempotency_stores_answers = False

    @extend_schema(
        request=PasswordChangeSerializer,
        responses={
            200: TokenPairSerializer,
            400: OpenApiResponse(
                description="wrong_password (field current_password), weak_password or "
                "password_unchanged (field new_password) or validation_error; nothing was changed"
            ),
            401: OpenApiResponse(
                description="not signed in, or the token is refused: password_changed also "
                "when this change went through and its answer was lost"
            ),
            429: OpenApiResponse(
                description="too_many_login_attempts: the login lockout of this phone and "
                "address, which wrong current passwords count towards"
            ),
        },
    )
    def post(self, request):
        serializer = PasswordChangeSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = services.user_change_password(**serializer.validated_data)
        refresh = RefreshToken.for_user(user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    def _me(self, request):
        return selectors.user_with_places().get(pk=request.user.pk)

    @extend_schema(responses=UserSerializer)
    def get(self, request):
        return Response(UserSerializer(self._me(request)).data)

    @extend_schema(request=ProfileUpdateSerializer, responses=UserSerializer)
    def patch(self, request):
        me = self._me(request)
        serializer = ProfileUpdateSerializer(data=request.data, partial=True, context={"user": me})
        serializer.is_valid(raise_exception=True)
        services.user_update_profile(user=me, **serializer.validated_data)
        return Response(UserSerializer(self._me(request)).data)
