"""Settings for Phase 3, configured from the environment.

With nothing set the project runs on an embedded default (SQLite in WAL mode under
``var/``, kombu's filesystem broker, a file cache) so a newcomer needs no server.
``DATABASE_URL`` switches to PostgreSQL, ``REDIS_URL`` / ``CELERY_BROKER_URL`` to
Redis, ``DJANGO_ENV=production`` to a hardened deployment and ``DJANGO_ENV=development``
(`make run`) to DEBUG; unset, DEBUG is off and only local Host names are answered.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PHASE3_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """Generated once and kept in var/ so sessions survive restarts without configuration."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


# Three modes. ``production``: hardened (below). ``development`` (what `make run` sets):
# DEBUG on, any Host accepted. Unset: the safe middle, for a deployment that forgot to say:
# DEBUG off and only local Host names, so an exposed server shows no tracebacks (settings,
# broker and cache URLs) and answers no other name, while the embedded default still runs
# and serves the admin with its CSS (WhiteNoise reads the apps' static files directly).
# DEBUG used to be on unless DJANGO_ENV=production.
DJANGO_ENV = os.environ.get("DJANGO_ENV", "").strip().lower()
PRODUCTION = DJANGO_ENV == "production"
DEVELOPMENT = DJANGO_ENV == "development"
TESTING = env_bool("PHASE3_TESTING")

SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", DEVELOPMENT)
LOCAL_HOSTS = "localhost,127.0.0.1,[::1]"
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "*" if DEVELOPMENT else LOCAL_HOSTS
)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# The six systems, in the order the overview lists them.
PHASE3_SYSTEMS = [
    "optimization",
    "personalization",
    "forecasting",
    "scaling",
    "insights",
    "anomalies",
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "phase3",
    "telemetry",
    *PHASE3_SYSTEMS,
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The optimization system's request profiler, on by default (PHASE3_PERFORMANCE_MIDDLEWARE=0
# turns it off). It aggregates in memory and flushes per minute, never per request.
if env_bool("PHASE3_PERFORMANCE_MIDDLEWARE", True) and importlib.util.find_spec(
    "optimization.middleware"
):
    MIDDLEWARE.append("optimization.middleware.PerformanceMiddleware")

ROOT_URLCONF = "phase3.urls"
WSGI_APPLICATION = "phase3.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------
if os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"], conn_max_age=60, conn_health_checks=True
        )
    }
else:
    # WAL + busy timeout + IMMEDIATE transactions so web, worker and beat share one file.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "phase3.sqlite3",
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
if TESTING and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A second alias, as a read replica would be, mirroring the test database: the request
    # profiler's tests check that statements on every alias are seen. Tests must list it in
    # ``django_db(databases=[...])`` to use it.
    DATABASES["replica"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, broker --------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("PHASE3_CACHE_PREFIX", "phase3"),
        }
    }
else:
    # A file cache is shared by the web server and the worker, unlike local memory.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": VAR_DIR / "cache",
        }
    }

# The embedded broker names its host: kombu logs "No hostname was supplied" for a bare
# "filesystem://" on every connection, six warnings in a newcomer's first minute.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "filesystem://localhost//"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None  # JobRun rows are the record of what ran.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("PHASE3_CELERY_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("PHASE3_TASK_SOFT_TIME_LIMIT", 600))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# How often a worker stamps the job runs it is executing (phase3.heartbeat); the lost-run
# sweep closes a run whose stamp is ten of these (at least ten minutes) old.
PHASE3_JOB_HEARTBEAT_SECONDS = float(os.environ.get("PHASE3_JOB_HEARTBEAT_SECONDS", 60))
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth, API --------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    # Deny by default: every view is authenticated and role-checked unless it says otherwise.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "phase3.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["phase3.permissions.HasRole"],
    # orjson for every JSON body: DRF's own parser turns deep nesting and 1e309 into 500s.
    "DEFAULT_PARSER_CLASSES": [
        "telemetry.parsers.OrjsonParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "phase3.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    # How many reverse proxies in front append to X-Forwarded-For: the client address is
    # read that many hops from the end. 0 (the default) uses REMOTE_ADDR only; DRF's own
    # default (None) took the whole client-supplied header as the address.
    "NUM_PROXIES": int(os.environ.get("PHASE3_NUM_PROXIES", "0")),
    "DEFAULT_THROTTLE_RATES": {
        "failed_auth": os.environ.get("PHASE3_FAILED_AUTH_RATE", "20/min"),
    },
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Reads that only ask for numbers should not pay for page-number counts on huge tables.
PHASE3_API_KEY_HEADER = "HTTP_X_ADMIN_KEY"
PHASE3_API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)

SPECTACULAR_SETTINGS = {
    "TITLE": "Phase 3 API",
    "DESCRIPTION": "Optimization, personalization, forecasting, scaling, insights and anomalies.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["phase3.permissions.HasRole"],  # the schema is no exception
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for a choice set that several fields share (complexity and risk).
    "ENUM_NAME_OVERRIDES": {"LevelEnum": "optimization.models.Recommendation.Level"},
    "APPEND_COMPONENTS": {
        "securitySchemes": {"AdminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key"}}
    },
    "SECURITY": [{"AdminKey": []}],
}

# --- I18N, static ------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
_plotly_spec = importlib.util.find_spec("plotly")
STATICFILES_DIRS = []
if _plotly_spec and _plotly_spec.submodule_search_locations:
    # Plotly's own bundled JS, served locally so charts work with no internet.
    STATICFILES_DIRS.append(
        ("plotly", Path(next(iter(_plotly_spec.submodule_search_locations))) / "package_data")
    )
# Outside production the apps' static files are served from where they lie, with DEBUG off
# too (no collectstatic before the first start); production serves the collected ones.
WHITENOISE_USE_FINDERS = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Systems' knobs -------------------------------------------------------------------
PHASE3_RAW_RETENTION_DAYS = int(os.environ.get("PHASE3_RAW_RETENTION_DAYS", 90))
# Closed anomalies (not false positives) are deleted this long after they ended.
PHASE3_ANOMALY_RETENTION_DAYS = int(os.environ.get("PHASE3_ANOMALY_RETENTION_DAYS", 400))
PHASE3_INGEST_MAX_FUTURE_SECONDS = float(os.environ.get("PHASE3_INGEST_MAX_FUTURE_SECONDS", 300))
PHASE3_INGEST_MAX_BODY_BYTES = int(os.environ.get("PHASE3_INGEST_MAX_BODY_BYTES", 64 * 1024 * 1024))
# Where operators reach this deployment: links in alerts (webhook payloads, e-mails) are
# absolute, since they are opened from PagerDuty, Slack or a mail client.
PHASE3_EXTERNAL_URL = os.environ.get("PHASE3_EXTERNAL_URL", "http://localhost:8000").rstrip("/")
# PagerDuty's Events API v2 endpoint (an EU account: https://events.eu.pagerduty.com/v2/enqueue).
PHASE3_PAGERDUTY_EVENTS_URL = os.environ.get(
    "PHASE3_PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue"
)
PHASE3_MAX_RAW_POINTS = int(os.environ.get("PHASE3_MAX_RAW_POINTS", 50_000))
FORECASTING_USE_PROPHET = env_bool("PHASE3_FORECASTING_PROPHET", True)

EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = VAR_DIR / "mail"
# Seconds to wait on the mail server (Django's default, None, waits forever: a hung relay
# held the anomaly e-mail action until the task's time limit).
EMAIL_TIMEOUT = float(os.environ.get("DJANGO_EMAIL_TIMEOUT", 10))
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "phase3@localhost")

# --- Production hardening (makes `check --deploy` pass) --------------------------------
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("PHASE3_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
