"""Settings for the search benchmark: production settings, on the `_bench` database.

Production as deployed (same middleware, JSON renderer, pagination, CONN_MAX_AGE), with
only what a plain-HTTP server on 127.0.0.1 needs changed: a fixed secret key, no HTTPS
redirect, and a URLconf that adds the naive viewset and bench-only variants.

    DJANGO_SETTINGS_MODULE=bench.settings PYTHONPATH=. ...
"""

import os
import warnings

# Before production.py reads the environment: it refuses a short key, and base.py would
# default to the development database.
os.environ.setdefault(
    "SECRET_KEY", "bench-only-fixed-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
)
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketplace_bench")
# Newer production.py also refuses to start without a payment webhook secret; unused here.
os.environ.setdefault("PAYMENT_WEBHOOK_SECRET", "search-bench-only-webhook-secret-0123456789abcdef")

from marketplace.settings.production import *  # noqa: F403
from marketplace.settings.production import DATABASES, STORAGES

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.naive_urls"
SECURE_SSL_REDIRECT = False  # plain HTTP on the loopback; TLS ends at a proxy in production
SECURE_HSTS_SECONDS = 0
# No collectstatic on a bench machine; the API serves no static files.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Persistent connections, as in production (base.py defaults to 60 s); the benchmark relies
# on it and refuses 0 so that a stray CONN_MAX_AGE=0 in the environment cannot skew a run.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "60"))
if not os.environ.get("BENCH_ALLOW_CONN_MAX_AGE_0") and DATABASES["default"]["CONN_MAX_AGE"] <= 0:
    raise RuntimeError("bench.settings needs CONN_MAX_AGE > 0 (persistent connections)")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# whitenoise warns once per worker that staticfiles/ (collectstatic's output) is missing.
warnings.filterwarnings("ignore", message="No directory at")
