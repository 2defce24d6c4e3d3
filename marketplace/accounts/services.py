"""Writes of accounts."""

from decimal import Decimal

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from listings.services import listings_refresh_for_farmer
from logistics.models import ServiceCenter, Village
from marketplace.accounts import errors
from marketplace.accounts.models import BuyerKind, Role, User
from marketplace.accounts.phones import normalize_phone
from marketplace.exceptions import DomainError

SELF_REGISTER_ROLES = (Role.FARMER, Role.BUYER)
SELF_REGISTER_ROLE_CHOICES = [(role.value, role.label) for role in SELF_REGISTER_ROLES]


def _check_password(password: str, user: User, *, field: str) -> None:
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise DomainError(
            errors.WEAK_PASSWORD, " ".join(exc.messages), extra={"field": field}
        ) from exc


def _create(user: User, password: str) -> User:
    """Insert; the unique phone index, not a prior lookup, decides who registered first."""
    _check_password(password, user, field="password")
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:
        if "phone" in str(exc):
            raise DomainError(
                errors.PHONE_TAKEN,
                "This phone number is already registered.",
                extra={"field": "phone"},
            ) from exc
        raise
    return user


def _check_coordinates(lat: Decimal | None, lng: Decimal | None) -> None:
    if (lat is None) != (lng is None):
        raise DomainError(
            errors.COORDINATES_INCOMPLETE,
            "Give both lat and lng, or neither.",
            extra={"field": "lat" if lat is None else "lng"},  # the one missing
        )


def check_place(
    village: Village | None, lat: Decimal | None, lng: Decimal | None, *, field: str = "lat"
) -> None:
    """An exact place lies where the village's center can reach it (Village.reaches): goods
    are picked up and delivered there. `field` is the one the error names: what was set."""
    if village is None or lat is None or lng is None:
        return
    if not village.reaches(lat, lng):
        limit = settings.PLACE_MAX_KM_FROM_VILLAGE
        raise DomainError(
            errors.PLACE_TOO_FAR,
            f"The place is more than {limit} km from the village.",
            extra={"field": field, "max_km": limit},
        )


def _check_buyer_kind(role: str, buyer_kind: str) -> None:
    """Only buyers have a kind (a farmer's or staff's is blank), at sign-up as in a profile."""
    if buyer_kind and role != Role.BUYER:
        raise DomainError(
            errors.ROLE_NOT_ALLOWED, "Only buyers have a buyer kind.", extra={"field": "buyer_kind"}
        )


def user_register(
    *,
    phone: str,
    password: str,
    name: str,
    role: str,
    village: Village,
    address: str = "",
    lat: Decimal | None = None,
    lng: Decimal | None = None,
    buyer_kind: str = "",
) -> User:
    """A farmer or buyer signs up. Staff are made by operators (`user_create_staff`).
    Only a buyer has a kind: a farmer's is refused, as a profile change refuses it."""
    if role not in SELF_REGISTER_ROLES:
        raise DomainError(errors.ROLE_NOT_ALLOWED, "Register as a farmer or a buyer.")
    _check_buyer_kind(role, buyer_kind)
    _check_coordinates(lat, lng)
    check_place(village, lat, lng)
    user = User(
        phone=normalize_phone(phone),
        name=name.strip(),
        role=role,
        village=village,
        address=address.strip(),
        lat=lat,
        lng=lng,
        buyer_kind=(buyer_kind or BuyerKind.HOUSEHOLD) if role == Role.BUYER else "",
    )
    return _create(user, password)


def user_create_staff(
    *, phone: str, password: str, name: str, service_center: ServiceCenter
) -> User:
    """An operator adds a staff member of one service center, with a name."""
    name, longest = name.strip(), User._meta.get_field("name").max_length
    if not 0 < len(name) <= longest:
        raise DomainError(errors.INVALID_NAME, f"A staff name is 1 to {longest} characters.")
    user = User(
        phone=normalize_phone(phone),
        name=name,
        role=Role.STAFF,
        service_center=service_center,
    )
    return _create(user, password)


PROFILE_FIELDS = frozenset({"name", "village", "address", "lat", "lng", "buyer_kind"})
# A farmer's listings carry their pickup place and are found by farmer and village name.
FIELDS_COPIED_TO_LISTINGS = frozenset({"name", "village", "lat", "lng"})


@transaction.atomic
def user_update_profile(*, user: User, **changes: object) -> User:
    """A user edits their own profile. Staff cannot move themselves to another center,
    and only farmers and buyers have a village. A farmer's listings follow the farmer's
    place and name. The row is locked and read again first: the place is checked against
    the village and coordinates as they are now, not as the request read them, so two
    phones changing one each at once never leave a place far from the village."""
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise TypeError(f"not profile fields: {sorted(unknown)}")
    # FOR NO KEY UPDATE: rows being written that refer to the user (an order placed, a
    # listing) hold KEY SHARE on it, which FOR UPDATE would wait for.
    user = (
        User.objects.select_for_update(of=("self",), no_key=True)
        .select_related("village")
        .get(pk=user.pk)
    )
    # What the profile holds already is no change, whatever one's role: a profile screen
    # saves all it read, a farmer's blank buyer_kind and staff's null village with it.
    sent = {
        field: value.strip() if isinstance(value, str) else value
        for field, value in changes.items()
    }
    changes = {field: value for field, value in sent.items() if getattr(user, field) != value}
    if "village" in changes and user.role == Role.STAFF:
        raise DomainError(
            errors.ROLE_NOT_ALLOWED,
            "Staff belong to a service center, not a village.",
            extra={"field": "village"},
        )
    _check_buyer_kind(user.role, changes.get("buyer_kind", ""))  # type: ignore[arg-type]
    lat = changes.get("lat", user.lat)
    lng = changes.get("lng", user.lng)
    _check_coordinates(lat, lng)  # type: ignore[arg-type]
    if {"village", "lat", "lng"} & set(changes):
        # a move to a village far from the place kept names the village, as the one set
        named = "lat" if {"lat", "lng"} & set(changes) else "village"
        check_place(changes.get("village", user.village), lat, lng, field=named)  # type: ignore[arg-type]
    for field, value in changes.items():
        setattr(user, field, value)
    user.save(update_fields=list(changes))  # nothing changed: no statement
    if user.role == Role.FARMER and FIELDS_COPIED_TO_LISTINGS & set(changes):
        listings_refresh_for_farmer(farmer=user)
    return user


@transaction.atomic
def user_change_password(*, user: User, new_password: str) -> User:
    """A user sets a new password, their current one checked first as a login checks it
    (`authenticate()`, which django-axes counts and locks out): `user` is the row that
    check read. A password set since (a change racing this one, an operator) is refused
    `wrong_password` rather than overwritten. The new one must pass the password validators
    (`weak_password`). Every refresh token of the user is revoked: the new password refuses
    them and every access token anyway (`password_changed`), and revoked they stay refused
    whatever becomes of the password. The caller issues the pair the device goes on with."""
    locked = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    if locked.password != user.password:
        raise DomainError(
            errors.WRONG_PASSWORD, errors.WRONG_PASSWORD_DETAIL, extra={"field": "current_password"}
        )
    _check_password(new_password, locked, field="new_password")
    locked.set_password(new_password)
    locked.save(update_fields=["password"])
    user_tokens_revoke(user=locked)
    return locked


@transaction.atomic
def refresh_token_revoke(*, token: RefreshToken) -> None:
    """Logout: the refresh token is blacklisted, so it refreshes no more (401
    `token_not_valid`), and the access tokens made from it are refused from now on (401
    `signed_out`: each names it as its session, read with the user on every request).
    Whoever holds a refresh token may revoke it: it is a bearer credential, and revoking it
    only takes away what holding it gives. Revoking one already revoked changes nothing."""
    token.blacklist()  # get_or_create of both rows: a retry or a race adds none


def user_tokens_revoke(*, user: User) -> int:
    """Sign a user out on every device: their count of sign-outs goes up by one, which
    refuses every token issued before (access tokens too: `signed_out`), and each refresh
    token of theirs not yet expired nor revoked is blacklisted, for the admin's token pages.
    For a lost phone, and on deactivation, so that reactivating the account revives no old
    token. `user` then holds the new count, for tokens issued to it next. Returns how many
    refresh tokens were revoked."""
    User.objects.filter(pk=user.pk).update(sign_outs=F("sign_outs") + 1)
    user.refresh_from_db(fields=["sign_outs"])
    live = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    ).values_list("pk", flat=True)
    # ignore_conflicts: a logout of one of them at the same moment has revoked it already
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token_id=pk) for pk in live], ignore_conflicts=True
    )
    return len(revoked)
