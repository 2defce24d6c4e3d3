"""The test suite: the same PostgreSQL, Redis and Celery as production, tuned for speed."""

import os
from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = "test-only-insecure-key-long-enough-for-hmac-sha256"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
# A queue and cache prefix of this run's own, so a development worker sharing this Redis never
# takes test tasks. The suite's Celery worker gets the same TEST_RUN_ID in its environment.
TEST_RUN_ID = env("TEST_RUN_ID", default=str(os.getpid()))
CELERY_TASK_DEFAULT_QUEUE = f"test-{TEST_RUN_ID}"
CACHES["default"]["KEY_PREFIX"] = f"test-{TEST_RUN_ID}"  # noqa: F405
MEDIA_ROOT = BASE_DIR / ".data" / "test-media"  # noqa: F405
# `make test` runs the suite in several processes (pytest-xdist: gw0, gw1, …). Process gwN
# takes the Redis database N after the one given, and so do the Celery workers it starts (they
# inherit PYTEST_XDIST_WORKER): a broadcast, such as the health page's worker ping, which takes the
# first worker that answers, reaches only the process's own workers, never another's that
# consumes another queue (Redis's publish/subscribe spans databases; kombu names its fanout
# channels by database).
# pytest-xdist sets it, no operator: not one of .env.example's variables.
if (_process := os.environ.get("PYTEST_XDIST_WORKER", "")).startswith("gw"):
    _url = urlsplit(REDIS_URL)  # noqa: F405
    _db = (int(_url.path.strip("/") or 0) + int(_process[2:])) % 16
    REDIS_URL = urlunsplit(_url._replace(path=f"/{_db}"))
    CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
# The suite registers many users from one address and places hundreds of orders at once;
# throttling has no place in those tests (the throttles' own tests set low rates).
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {
        "register": "100000/hour",
        "login": "100000/hour",
        "login_phone": "100000/hour",
        "hand_over": "100000/hour",
        "orders": "100000/hour",
    },
}
# The suite's worker shares two busy cores with the tests: give it time to answer a ping.
HEALTH_CHECK_WORKER_TIMEOUT_SECONDS = 3.0
HEALTH_CHECK_CACHE_SECONDS = 0.0  # each test's /health/ checks afresh
