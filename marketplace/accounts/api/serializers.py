import contextlib

from django.contrib.auth import authenticate
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers as jwt_serializers

from logistics.models import Village
from marketplace.accounts import errors
from marketplace.accounts.models import BuyerKind, User
from marketplace.accounts.phones import PHONE_AS_TYPED_MAX, normalize_phone
from marketplace.accounts.services import SELF_REGISTER_ROLE_CHOICES
from marketplace.accounts.tokens import RefreshToken, RevocableRefreshToken
from marketplace.api.authentication import JWTAuthentication
from marketplace.api.serializers import PrimaryKeyRelatedField, TextLineField
from marketplace.exceptions import DomainError


class UserSerializer(serializers.ModelSerializer):
    """A user's own profile (`/me/`, the answer to register)."""

    service_center = serializers.SerializerMethodField()
    # null for staff, who live in no village: the schema says so too
    village_name = serializers.CharField(
        source="village.name", read_only=True, default=None, allow_null=True
    )
    # blank for farmers and staff: the schema says so too
    buyer_kind = serializers.ChoiceField(BuyerKind.choices, allow_blank=True, read_only=True)

    class Meta:
        model = User
        fields = (
            "id",
            "phone",
            "name",
            "role",
            "village",
            "village_name",
            "service_center",
            "address",
            "lat",
            "lng",
            "buyer_kind",
            "date_joined",
        )
        read_only_fields = fields

    def get_service_center(self, user: User) -> int | None:
        return user.home_service_center_id


class RegisterSerializer(serializers.Serializer):
    phone = serializers.CharField(max_length=PHONE_AS_TYPED_MAX)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    name = TextLineField(max_length=100)
    role = serializers.ChoiceField(choices=SELF_REGISTER_ROLE_CHOICES)
    village = PrimaryKeyRelatedField(queryset=Village.objects.all())
    address = TextLineField(max_length=255, required=False, default="", allow_blank=True)
    lat = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-90, max_value=90, required=False, default=None
    )
    lng = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-180, max_value=180, required=False, default=None
    )
    # blank (a form's empty box, a farmer's kind as /me/ reads it) is no kind given
    buyer_kind = serializers.ChoiceField(
        choices=BuyerKind.choices, required=False, default="", allow_blank=True
    )


class ProfileUpdateSerializer(serializers.Serializer):
    """A profile screen saves all it read: a farmer's blank `buyer_kind` and staff's null
    `village` are what their profile holds, so they are taken (and change nothing);
    blanking a buyer's kind or nulling a farmer's or buyer's village is refused as before.
    The context's `user` is whose profile it is."""

    name = TextLineField(max_length=100, required=False)
    village = PrimaryKeyRelatedField(
        queryset=Village.objects.all(), required=False, allow_null=True
    )
    address = TextLineField(max_length=255, required=False, allow_blank=True)
    lat = serializers.DecimalField(
        max_digits=9,
        decimal_places=6,
        min_value=-90,
        max_value=90,
        required=False,
        allow_null=True,
    )
    lng = serializers.DecimalField(
        max_digits=9,
        decimal_places=6,
        min_value=-180,
        max_value=180,
        required=False,
        allow_null=True,
    )
    buyer_kind = serializers.ChoiceField(
        choices=BuyerKind.choices, required=False, allow_blank=True
    )

    def validate_village(self, value: Village | None) -> Village | None:
        if value is None and self.context["user"].village_id is not None:
            self.fields["village"].fail("null")
        return value

    def validate_buyer_kind(self, value: str) -> str:
        if value == "" and self.context["user"].buyer_kind != "":
            self.fields["buyer_kind"].fail("invalid_choice", input=value)
        return value


class TokenObtainSerializer(jwt_serializers.TokenObtainPairSerializer):
    """Accepts the phone as typed (`138 1234 5678`); looks it up in E.164."""

    token_class = RefreshToken

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # As long as registration accepts: a longer one is no phone, and django-axes would
        # fail to record it as a failed login.
        self.fields[self.username_field] = serializers.CharField(
            write_only=True, max_length=PHONE_AS_TYPED_MAX
        )
        # As typed, as registration and a password change keep it: simplejwt's field trims
        # spaces at the ends, so such a password could be set and never used.
        self.fields["password"] = jwt_serializers.PasswordField(trim_whitespace=False)

    def validate(self, attrs):
        with contextlib.suppress(DomainError):  # a bad phone then fails like any unknown login
            attrs[self.username_field] = normalize_phone(attrs[self.username_field])
        try:
            return super().validate(attrs)
        except AuthenticationFailed:
            # django-axes marks the request when this phone and address are locked out;
            # Django's authenticate() swallows its PermissionDenied, so we answer it here.
            if getattr(self.context["request"], "axes_locked_out", False):
                raise DomainError(
                    errors.LOGIN_LOCKED, errors.LOGIN_LOCKED_DETAIL, status_code=429
                ) from None
            raise


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """A refresh token gives an access token while its user may still sign in with it."""

    refresh = serializers.CharField(write_only=True)  # refresh tokens do not rotate
    token_class = RefreshToken  # ours: the access token names its session

    def validate(self, attrs):
        # The checks JWTAuthentication makes on every request, all 401: user_not_found
        # (deleted), user_inactive, password_changed (a new password since it was issued).
        # simplejwt's refresh checks is_active only (and a deleted user is a 500 there).
        JWTAuthentication().get_user(self.token_class(attrs["refresh"]))
        return super().validate(attrs)


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField(write_only=True)

    def validate_refresh(self, value: str) -> RevocableRefreshToken:
        # A TokenError (forged, expired, not a refresh token) goes past DRF's validation
        # errors to the view, which answers 401 token_not_valid as /auth/token/refresh/ does.
        return RevocableRefreshToken(value)


class PasswordChangeSerializer(serializers.Serializer):
    # Spaces kept, as register keeps them; no limit on the current one, which an operator
    # may have set longer than register allows.
    current_password = serializers.CharField(write_only=True, trim_whitespace=False)
    new_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)

    def validate(self, attrs):
        """The current password is checked as a login checks it, by authenticate(): django-axes
        counts a wrong one against this phone and address together with failed logins, and
        refuses any while they are locked out, so this is no way around the login's limit to
        guess a password with a stolen access token. Gives the user as that check read it."""
        request = self.context["request"]
        phone = request.user.phone
        user = authenticate(request, phone=phone, password=attrs["current_password"])
        if user is not None and user.pk == request.user.pk:
            if attrs["new_password"] == attrs["current_password"]:
                raise DomainError(
                    errors.PASSWORD_UNCHANGED,
                    "The new password is the current one.",
                    extra={"field": "new_password"},
                )
            return {"user": user, "new_password": attrs["new_password"]}
        if getattr(request, "axes_locked_out", False):
            raise DomainError(errors.LOGIN_LOCKED, errors.LOGIN_LOCKED_DETAIL, status_code=429)
        raise DomainError(
            errors.WRONG_PASSWORD, errors.WRONG_PASSWORD_DETAIL, extra={"field": "current_password"}
        )


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RegisterResponseSerializer(UserSerializer):
    access = serializers.CharField()
    refresh = serializers.CharField()

    class Meta(UserSerializer.Meta):
        fields = (*UserSerializer.Meta.fields, "access", "refresh")
        read_only_fields = fields
