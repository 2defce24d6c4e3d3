"""Error codes of accounts (stable: clients branch on them)."""

PHONE_TAKEN = "phone_taken"
ROLE_NOT_ALLOWED = "role_not_allowed"
VILLAGE_NOT_FOUND = "village_not_found"
SERVICE_CENTER_NOT_FOUND = "service_center_not_found"
WEAK_PASSWORD = "weak_password"  # noqa: S105 - an error code, not a password
WRONG_PASSWORD = "wrong_password"  # noqa: S105 - an error code, not a password
PASSWORD_UNCHANGED = "password_unchanged"  # noqa: S105 - an error code, not a password
WRONG_PASSWORD_DETAIL = "The current password is not correct."  # noqa: S105
COORDINATES_INCOMPLETE = "coordinates_incomplete"
PLACE_TOO_FAR = "place_too_far"
INVALID_NAME = "invalid_name"
LOGIN_LOCKED = "too_many_login_attempts"
LOGIN_LOCKED_DETAIL = "Too many failed logins for this phone number; try again later."
