"""The client's network address, one rule for the login lockout and the API's throttles."""

from rest_framework.throttling import BaseThrottle


def client_address(request) -> str | None:
    """The peer's address; behind PROXY_COUNT reverse proxies (each appending the address it
    saw to X-Forwarded-For), the one the outermost proxy saw: the PROXY_COUNT-th entry from
    the right, never one the client wrote there itself. DRF's throttles read it this way
    (NUM_PROXIES); django-axes, given this, keys its lockout on the same address."""
    return BaseThrottle().get_ident(request) or None
