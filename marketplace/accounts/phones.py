"""Phone numbers are the login: stored in E.164, so one person has one spelling."""

import phonenumbers
from django.conf import settings

from marketplace.exceptions import DomainError

INVALID_PHONE = "invalid_phone"
# The longest phone accepted as typed, spaces and dashes included (`+86 138-1234-5678`).
PHONE_AS_TYPED_MAX = 32
PHONE_E164_MAX = 16  # "+" and 15 digits: User.phone's length


def normalize_phone(raw: str) -> str:
    """Return `raw` as E.164 (`+8613812345678`), or raise DomainError `invalid_phone`.

    Chinese mobile numbers may be given nationally (`138 1234 5678`), with the country code
    and no plus (`8613812345678`) or in international form (`+86 138-1234-5678`).
    """
    text = (raw or "").strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not text.startswith("+") and len(digits) == 13 and digits.startswith("86"):
        text = f"+{digits}"
    try:
        number = phonenumbers.parse(text, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException as exc:
        raise DomainError(INVALID_PHONE, "Not a phone number.", extra={"field": "phone"}) from exc
    if not phonenumbers.is_valid_number(number):
        raise DomainError(INVALID_PHONE, "Not a valid phone number.", extra={"field": "phone"})
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # E.164 has at most 15 digits; phonenumbers also passes some longer national numbers
    # (German toll-free 0800 ones), which the phone column does not hold.
    if len(e164) > PHONE_E164_MAX:
        raise DomainError(
            INVALID_PHONE,
            f"A phone number has at most {PHONE_E164_MAX - 1} digits.",
            extra={"field": "phone"},
        )
    return e164


def lockout_username(request, credentials: dict | None = None) -> str | None:
    """The phone a login attempt names, as django-axes keys its failures and lockouts
    (AXES_USERNAME_CALLABLE). The API's log in and password change pass it as `phone`;
    Django's admin login form as `username` (the user's USERNAME_FIELD is the phone), which
    axes' AXES_USERNAME_FORM_FIELD alone would file under no one, so the admin's failures
    never locked the right password out. In E.164 when it reads as a phone, so spellings of
    one number count together."""
    source = credentials or getattr(request, "data", None) or request.POST
    value = source.get("phone") or source.get("username") if hasattr(source, "get") else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # as the log in's CharField reads a JSON number: its digits, a phone to try
        value = str(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return normalize_phone(value[:PHONE_AS_TYPED_MAX])
    except DomainError:
        return value[:PHONE_AS_TYPED_MAX]
