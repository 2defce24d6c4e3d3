"""The test suite: the same PostgreSQL, Redis and Celery as production, tuned for speed."""

import os

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
