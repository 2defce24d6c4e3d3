"""Settings for the order-placement benchmark: production settings on `marketplace_orders_bench`.

Production as deployed (the same middleware including the Idempotency-Key middleware,
JSON renderer, persistent connections), with only what a plain-HTTP server on 127.0.0.1
needs changed: a fixed secret key, no HTTPS redirect, no HSTS, no collectstatic,
access tokens that live long enough for a prepared token file (JWT_ACCESS_MINUTES), and an
order throttle rate no client reaches (ORDER_THROTTLE_RATE).

Not bench/settings.py: that one routes to the search benchmark's own URLconf
(bench.naive_urls) and defaults to its `marketplace_bench` database.

    DJANGO_SETTINGS_MODULE=bench.orders_settings PYTHONPATH=. ...
"""

import os
import warnings

# Before production.py / base.py read the environment.
os.environ.setdefault(
    "SECRET_KEY", "orders-bench-only-fixed-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
)
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketplace_orders_bench")
# production.py refuses to start without a webhook secret (any 32+ characters but the dev one).
os.environ.setdefault("PAYMENT_WEBHOOK_SECRET", "orders-bench-only-webhook-secret-0123456789abcdef")
os.environ.setdefault("JWT_ACCESS_MINUTES", str(7 * 24 * 60))  # a week: tokens in a file
# Tasks enqueued after an order commits (notifications) go to a queue of the benchmark's own
# on the shared Redis, so that no development worker runs them against another database;
# orders_load.py empties it after each phase.
os.environ.setdefault("CELERY_QUEUE", "orders-bench")
# Each client is one buyer ordering as fast as it can, far past the production rate
# (60/hour). The throttle stays on, as deployed (its cache read and write are part of a
# placement's cost), at a rate no client reaches, over one second: DRF keeps every request
# of the window, which over an hour would be the whole run's for each buyer.
os.environ.setdefault("ORDER_THROTTLE_RATE", "1000000/second")

from marketplace.settings.production import *  # noqa: F403
from marketplace.settings.production import DATABASES, STORAGES

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECURE_SSL_REDIRECT = False  # plain HTTP on the loopback; TLS ends at a proxy in production
SECURE_HSTS_SECONDS = 0
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

if not DATABASES["default"]["NAME"].endswith("_bench"):
    raise RuntimeError(
        f"bench.orders_settings: {DATABASES['default']['NAME']!r} is not a *_bench database"
    )

# Persistent connections, as in production (base.py defaults to 60 s). Refuse 0 so that a
# stray CONN_MAX_AGE=0 in the environment cannot skew a run.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "600"))
if DATABASES["default"]["CONN_MAX_AGE"] <= 0:
    raise RuntimeError("bench.orders_settings needs CONN_MAX_AGE > 0 (persistent connections)")

CACHES["default"]["KEY_PREFIX"] = "orders-bench"  # noqa: F405

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic

# The app's URLs plus the bench-only frame endpoint (bench/orders_urls.py).
ROOT_URLCONF = "bench.orders_urls"
