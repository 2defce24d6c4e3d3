"""Settings shared by every environment; everything that differs comes from the environment.

Every variable read here is listed, with its default, in `.env.example`.
"""

from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)


def _trimmed(items: list[str]) -> list[str]:
    """A comma-separated variable's items, trimmed: django-environ keeps the space after a
    comma (`a.example, b.example`), and a host or origin so written matches no request."""
    return [item.strip() for item in items if item.strip()]


ALLOWED_HOSTS = _trimmed(env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]))
CSRF_TRUSTED_ORIGINS = _trimmed(env.list("CSRF_TRUSTED_ORIGINS", default=[]))

INSTALLED_APPS = [
    "marketplace.admin_site.MarketplaceAdminConfig",  # django.contrib.admin, 400 on bad values
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # Outstanding and blacklisted refresh tokens: logout, and pruning once they expire.
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "marketplace.api",
    "marketplace.accounts",
    "logistics",
    "listings",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "marketplace.api.query.RefuseNulInQueryMiddleware",
    "marketplace.api.exceptions.NotFoundAsProblemMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    # ETag from the body of every GET, and 304 for a matching If-None-Match: a phone on a
    # slow network re-reads an unchanged page for a few hundred bytes.
    "django.middleware.http.ConditionalGetMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Every POST under /api/ with an Idempotency-Key runs once (marketplace/api/idempotency.py).
    "marketplace.api.idempotency.IdempotencyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out admin login into a lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL only. marketplace.embedded sets DATABASE_URL when none is given.
DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/marketplace")
}
DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services open their own short transactions
# Parameters bound by the server and statements prepared on the connection once it has run
# them 5 times (psycopg's default): PostgreSQL stops parsing and planning the same ORM
# statements again on every request (a placement costs it about a third less CPU, see
# bench/ORDERS_RESULTS.md). Off for a PgBouncer in transaction mode older than 1.21.
if env.bool("DB_PREPARED_STATEMENTS", default=True):
    # Added to the URL's own options (the embedded PostgreSQL's socket comes as `?host=`).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5
    )
# No JIT compilation: PostgreSQL compiles a query whose estimated cost passes jit_above_cost,
# such as a busy center's staff order list counted over 200k orders, where compiling took
# about 590 ms of a 1.2 s count; a request's queries never win that time back.
_options = DATABASES["default"].setdefault("OPTIONS", {})
_options["options"] = f"{_options.get('options', '')} -c jit=off".strip()
# A new connection gives up after this many seconds (a URL's own connect_timeout wins):
# libpq waits without end by default, so a database that takes the connection and never
# answers (hung, or a proxy in front of a dead one) held a request, or a /health/ thread,
# for good.
_options.setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=10))
if env("DATABASE_NAME", default=""):
    # Overrides the name in DATABASE_URL; the test suite points its Celery worker at the
    # test database this way.
    DATABASES["default"]["NAME"] = env("DATABASE_NAME")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the Celery broker and the cache.
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "marketplace.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "marketplace",
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {  # our users have a phone and a name (Django's defaults look for username and email)
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("phone", "name")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Locale: English by default, Simplified Chinese available; prices in CNY.
LANGUAGE_CODE = env("LANGUAGE_CODE", default="en")
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True
CURRENCY = "CNY"
PHONE_DEFAULT_REGION = env("PHONE_DEFAULT_REGION", default="CN")

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(BASE_DIR / "media")))
# Largest listing photo accepted, in bytes (checked before the image is decoded).
LISTING_PHOTO_MAX_BYTES = env.int("LISTING_PHOTO_MAX_BYTES", default=5 * 1024 * 1024)
# Uploaded files above this size are spooled to a temporary file instead of held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # 2.5 MiB
# A multipart body longer than a photo and its form fields is refused before it is read.
FILE_UPLOAD_HANDLERS = [
    "marketplace.api.uploads.BodySizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# A request body without its files (JSON, form fields) may be at most this large.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # 2.5 MiB
# One photo per upload request; a body carrying many files is refused outright.
DATA_UPLOAD_MAX_NUMBER_FILES = 10
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- REST API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.api.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "marketplace.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "marketplace.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "marketplace.api.schema.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_THROTTLE_RATES": {
        "register": env("REGISTER_THROTTLE_RATE", default="20/hour"),
        # log-ins per address whatever the phone (password spraying; a village shares one
        # address), and per phone from any address (the lock-out counts phone and address
        # together, so guesses spread over addresses would go on without end)
        "login": env("LOGIN_THROTTLE_RATE", default="300/hour"),
        "login_phone": env("LOGIN_PHONE_THROTTLE_RATE", default="30/hour"),
        # per staff member: a counter's busy hour, far from guessing a 6-digit code
        "hand_over": env("HAND_OVER_THROTTLE_RATE", default="120/hour"),
        # per user, orders placed and cancelled together: one a minute for an hour is far
        # beyond a canteen's busiest morning (one order holds up to 50 lines from any
        # farmers), and a retry with its Idempotency-Key is replayed without counting
        "orders": env("ORDER_THROTTLE_RATE", default="60/hour"),
    },
    # Throttles key on the client's address: behind PROXY_COUNT proxies, the one the first
    # proxy saw (X-Forwarded-For), never one a client wrote there itself.
    "NUM_PROXIES": env.int("PROXY_COUNT", default=0),
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=30)),
    # Off: a refresh retried over a flaky network must not invalidate the token it used.
    "ROTATE_REFRESH_TOKENS": False,
    "UPDATE_LAST_LOGIN": False,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "TOKEN_OBTAIN_SERIALIZER": "marketplace.accounts.api.serializers.TokenObtainSerializer",
    # Tokens carry a digest of the password hash they were issued under; a new password
    # (any set_password and save) refuses them, 401 `password_changed`. Compared with the
    # user row each request reads anyway, so it costs no query. A deactivated user's are
    # refused too (`user_inactive`). The refresh serializer makes the same checks.
    "CHECK_REVOKE_TOKEN": True,
    "CHECK_USER_IS_ACTIVE": True,
    "TOKEN_REFRESH_SERIALIZER": "marketplace.accounts.api.serializers.TokenRefreshSerializer",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Village marketplace API",
    "DESCRIPTION": (
        "Farmers list produce, buyers order it, village service-center staff arrange pickups "
        "and deliveries. Errors are problem+json with a stable `code`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # assets served from this server: no CDN reachable
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "GET_LIB_DOC_EXCLUDES": "marketplace.api.schema.lib_doc_excludes",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "marketplace.accounts.models.Role",
        "SelfRegisterRoleEnum": "marketplace.accounts.services.SELF_REGISTER_ROLE_CHOICES",
        "ListingStatusEnum": "listings.models.ListingStatus",
        "OrderStatusEnum": "orders.models.OrderStatus",
        "LineStatusEnum": "orders.models.LineStatus",
        "PaymentStatusEnum": "orders.models.PaymentStatus",
        "NotificationKindEnum": "orders.models.NotificationKind",
        "ShipmentStatusEnum": "logistics.models.ShipmentStatus",
        "LegKindEnum": "logistics.models.LegKind",
        "LegStatusEnum": "logistics.models.LegStatus",
        "StopKindEnum": "logistics.models.StopKind",
        "StopStatusEnum": "logistics.models.StopStatus",
        "ContactRoleEnum": "logistics.contacts.ContactRole",
    },
}

# --- Login rate limiting (django-axes): 5 failures per phone and address, then a cool-off.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "marketplace.accounts.phones.lockout_username"  # API and admin
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "marketplace.api.exceptions.lockout_response"
AXES_CLIENT_IP_CALLABLE = "marketplace.api.clients.client_address"  # PROXY_COUNT, as DRF
AXES_VERBOSE = False
# Masked in the request data a failed attempt logs (a form-encoded password change), as
# "password" is; django-axes' own two kept.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "current_password", "new_password"]

# --- Celery (see marketplace/celery.py for the beat schedule)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Tasks are idempotent: acknowledge after running, redeliver if the worker dies mid-task,
# and take one message at a time so a dying worker strands at most one.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# An unacknowledged message goes back to the queue after this long; longer than any task.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
}
# Celery's Django fix-up closes the database connection before and after every task unless
# this is set, so each task would pay a new PostgreSQL session. Set, it leaves connections
# alone; marketplace/celery.py closes them the way Django does around requests
# (CONN_MAX_AGE, CONN_HEALTH_CHECKS, errors). Measured in bench/ROUTING_RESULTS.md.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1_000_000_000)
CELERY_TASK_IGNORE_RESULT = True  # results are opt-in per task
CELERY_RESULT_EXPIRES = timedelta(hours=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = env(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(BASE_DIR / ".data" / "celerybeat-schedule")
)
# Only the beat holding the database's beat lock sends (marketplace/beat.py); another waits,
# trying for the lock this often, and takes over once the first is gone.
CELERY_BEAT_SCHEDULER = "marketplace.beat:SingleBeatScheduler"
BEAT_LOCK_POLL_SECONDS = env.float("BEAT_LOCK_POLL_SECONDS", default=5.0)
LOGIN_LOG_RETENTION_DAYS = env.int("LOGIN_LOG_RETENTION_DAYS", default=30)

# --- Orders (the delivery fee rule is documented in orders.services.delivery_fee)
DELIVERY_FEE_BASE = Decimal(env("DELIVERY_FEE_BASE", default="5.00"))
DELIVERY_FEE_PER_EXTRA_FARMER = Decimal(env("DELIVERY_FEE_PER_EXTRA_FARMER", default="2.00"))
FREE_DELIVERY_FROM = Decimal(env("FREE_DELIVERY_FROM", default="99.00"))
PREPAID_PAYMENT_MINUTES = env.int("PREPAID_PAYMENT_MINUTES", default=30)
# How far from its village a user's exact place, or an order's own delivery point, may be.
PLACE_MAX_KM_FROM_VILLAGE = env.int("PLACE_MAX_KM_FROM_VILLAGE", default=20)
# The payment provider's signed webhook (orders.payments). The default secret is for
# development and tests only; production settings refuse it.
PAYMENT_PROVIDER = env("PAYMENT_PROVIDER", default="sandbox")
# seed_demo and simulate_day: the demo county's accounts have published passwords (README).
DEMO_DATA_ALLOWED = env.bool("DEMO_DATA_ALLOWED", default=True)
_DEV_PAYMENT_WEBHOOK_SECRET = "dev-only-insecure-payment-webhook-secret"  # noqa: S105
PAYMENT_WEBHOOK_SECRET = env("PAYMENT_WEBHOOK_SECRET", default=_DEV_PAYMENT_WEBHOOK_SECRET)
PAYMENT_WEBHOOK_TOLERANCE_SECONDS = env.int("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Where notifications go: a dotted path to a class with send(notification) (orders.notifications).
NOTIFICATION_BACKEND = env("NOTIFICATION_BACKEND", default="orders.notifications.LoggingBackend")
# A send message not yet taken by a worker stands for every notification written meanwhile;
# after this long without a worker taking it, the next change sends another.
NOTIFICATION_PENDING_SECONDS = env.int("NOTIFICATION_PENDING_SECONDS", default=30)

# --- Logistics: routing orders into shipments
ROUTING_LEAD_DAYS = env.int("ROUTING_LEAD_DAYS", default=1)
ROUTING_CUTOFF_HOUR = env.int("ROUTING_CUTOFF_HOUR", default=16)  # orders placed later: +1 day
TRANSFER_KM_PER_DAY = env.float("TRANSFER_KM_PER_DAY", default=120.0)
ROUTING_SWEEP_GRACE_SECONDS = env.int("ROUTING_SWEEP_GRACE_SECONDS", default=60)
ROUTING_SWEEP_BATCH = env.int("ROUTING_SWEEP_BATCH", default=500)
# An order routing found no room for (no center's day free within routing's horizon) is
# tried again this long after, not at every sweep; once a try this many hours after it was
# placed (paid, if prepaid) fails too, it is given up: failed, restocked, its buyer told.
ROUTING_RETRY_MINUTES = env.int("ROUTING_RETRY_MINUTES", default=30)
ROUTING_GIVE_UP_HOURS = env.int("ROUTING_GIVE_UP_HOURS", default=24)
# Orders one routing task routes together when several wait (one transaction, one set of
# inserts): measured in bench/ROUTING_RESULTS.md.
ROUTING_BATCH = env.int("ROUTING_BATCH", default=50)
# A routing message not yet taken by a worker stands for every order placed meanwhile; after
# this long without a worker taking it, the next order sends another (orders.services).
ROUTING_PENDING_SECONDS = env.int("ROUTING_PENDING_SECONDS", default=30)
MAX_STOP_ATTEMPTS = env.int("MAX_STOP_ATTEMPTS", default=3)  # then a shipment fails for good
MAX_DELIVERY_CODE_ATTEMPTS = env.int("MAX_DELIVERY_CODE_ATTEMPTS", default=5)
# --- Logistics: planning a center's day (logistics.services.schedule)
PICKUP_WINDOW_START = time.fromisoformat(env("PICKUP_WINDOW_START", default="07:00"))
PICKUP_WINDOW_END = time.fromisoformat(env("PICKUP_WINDOW_END", default="11:00"))
STOP_SERVICE_SECONDS = env.int("STOP_SERVICE_SECONDS", default=300)
NIGHTLY_SCHEDULE_HOUR = env.int("NIGHTLY_SCHEDULE_HOUR", default=21)  # plans tomorrow
# Orders whose goods stranded on a day gone by one transaction of the hourly sweeper moves
# on (logistics.services.stranded).
STRANDED_SWEEP_BATCH = env.int("STRANDED_SWEEP_BATCH", default=100)
# A day with more stops than this is split into zones of about SCHEDULE_ZONE_STOPS stops,
# one Celery task each (logistics.services.schedule_zones); bench/SCALE_RESULTS.md measured
# why: 1,000 stops take > 130 s as one solve, 7-28 s as four zones on two cores.
SCHEDULE_ZONE_THRESHOLD = env.int("SCHEDULE_ZONE_THRESHOLD", default=600)
SCHEDULE_ZONE_STOPS = env.int("SCHEDULE_ZONE_STOPS", default=250)
SCHEDULE_ZONE_KEEP_DAYS = env.int("SCHEDULE_ZONE_KEEP_DAYS", default=7)  # then pruned daily
# A run queued or running this long lost its message or worker: the beat sends it again.
SCHEDULE_RUN_STALE_MINUTES = env.int("SCHEDULE_RUN_STALE_MINUTES", default=15)
# A run whose task, sent again, finds it still running (started before and killed each
# time: the solver past the hard time limit, out of memory) this many times is failed.
SCHEDULE_RUN_MAX_RESTARTS = env.int("SCHEDULE_RUN_MAX_RESTARTS", default=3)

IDEMPOTENCY_KEY_TTL_SECONDS = env.int("IDEMPOTENCY_KEY_TTL_SECONDS", default=24 * 60 * 60)

# Seconds /health/ gives the database and Redis each to answer; the page answers within
# this and a second (the worker's own timeout and its queue check within theirs).
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=3.0)
HEALTH_CHECK_WORKER_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_WORKER_TIMEOUT_SECONDS", default=1.0)
# Seconds each web process answers /health/ from its last report before it checks again
# (0: every call checks): the page needs no login, and each check pings every worker.
HEALTH_CHECK_CACHE_SECONDS = env.float("HEALTH_CHECK_CACHE_SECONDS", default=5.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
