"""Phone numbers are the login: stored in E.164, so one person has one spelling."""

import phonenumbers
from django.conf import settings

from marketplace.exceptions import DomainError

INVALID_PHONE = "invalid_phone"
# The longest phone accepted as typed, spaces and dashes included (`+86 138-1234-5678`).
PHONE_AS_TYPED_MAX = 32


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
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
