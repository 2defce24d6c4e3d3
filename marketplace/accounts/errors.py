"""Error codes of accounts (stable: clients branch on them)."""

PHONE_TAKEN = "phone_taken"
ROLE_NOT_ALLOWED = "role_not_allowed"
VILLAGE_NOT_FOUND = "village_not_found"
SERVICE_CENTER_NOT_FOUND = "service_center_not_found"
WEAK_PASSWORD = "weak_password"
COORDINATES_INCOMPLETE = "coordinates_incomplete"
