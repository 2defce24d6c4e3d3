"""Production: refuses to start without a real secret key and payment webhook secret;
passes `check --deploy`."""

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import _DEV_PAYMENT_WEBHOOK_SECRET, env

DEBUG = False
# base.py read DEBUG from the environment: whatever it said, no browsable API here
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SECRET_KEY = env("SECRET_KEY", default="")
# Django's own measure of a key (check --deploy's security.W009), which nothing runs at start:
# 50+ characters, 5+ different ones, not one startproject made for development.
if (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
):
    raise ImproperlyConfigured("SECRET_KEY must be set to a random value of 50+ characters.")
PAYMENT_WEBHOOK_SECRET = env("PAYMENT_WEBHOOK_SECRET", default="")
if (
    len(PAYMENT_WEBHOOK_SECRET) < 32
    or len(set(PAYMENT_WEBHOOK_SECRET)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or PAYMENT_WEBHOOK_SECRET == _DEV_PAYMENT_WEBHOOK_SECRET
):
    raise ImproperlyConfigured(
        "PAYMENT_WEBHOOK_SECRET must be set to the provider's signing secret (32+ characters)."
    )

# No demo accounts (their passwords are in the README) unless a demo deployment says so.
DEMO_DATA_ALLOWED = env.bool("DEMO_DATA_ALLOWED", default=False)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # container health checks speak plain HTTP
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
