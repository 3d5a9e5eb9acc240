"""All settings, read from the environment (README.md lists every variable).

With no environment at all the portal runs on the embedded default: SQLite under var/, a Celery
worker on a filesystem broker, and the Azure emulator. Production sets DATABASE_URL, REDIS_URL,
SECRET_KEY, ALLOWED_HOSTS and AZURE_MODE=azure.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any

import csp.constants as csp
import dj_database_url
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import ImproperlyConfigured

from provisioning.clouds import CloudConfigurationError, resolve_cloud

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or set DEBUG=1 for "
            "local development."
        )
    # Local development only: a per-checkout key kept under the git-ignored var/ directory.
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()


def _field_encryption_keys() -> list[str]:
    """FIELD_ENCRYPTION_KEYS: comma-separated Fernet keys (the first encrypts, all decrypt) for
    secrets stored reversibly (identities.encryption). Required when DEBUG is off; with DEBUG a
    key is derived from SECRET_KEY (HKDF), so a checkout needs nothing more."""
    keys = env_list("FIELD_ENCRYPTION_KEYS", [])
    if not keys:
        if not DEBUG:
            raise ImproperlyConfigured(
                "FIELD_ENCRYPTION_KEYS is required when DEBUG is off: it encrypts webhook signing "
                "secrets at rest. Set it to a Fernet key (python -c 'from cryptography.fernet "
                "import Fernet; print(Fernet.generate_key().decode())'); to rotate, put a new key "
                "first, run `manage.py reencrypt_secrets`, then remove the old one."
            )
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"portal field encryption"
        ).derive(SECRET_KEY.encode())
        return [base64.urlsafe_b64encode(derived).decode()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            # Never echo the value: it is a secret.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {position} is not a Fernet key (32 url-safe "
                "base64-encoded bytes)."
            ) from None
    return keys


FIELD_ENCRYPTION_KEYS = _field_encryption_keys()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "identities",
    "provisioning",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Oversized and too-deep bodies are refused before anything reads them (413 / 400).
    "portal.request_limits.RequestBodyLimitMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees a view's database error first (process_exception runs bottom-up).
    "portal.middleware.DatabaseUnavailableMiddleware",
]

# --- Content-Security-Policy (django-csp 4) -----------------------------------------------------
# Strict and the same in every mode: scripts and styles only from the portal's own static files
# or carrying the per-response nonce (request.csp_nonce), no inline style attributes, no
# framing (frame-ancestors 'none', with X-Frame-Options DENY for old browsers), no plugins, no
# <base>, forms post only to the portal. Images may be data: URIs (Swagger UI's icons).
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [csp.NONE],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.NONCE],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "manifest-src": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
        "base-uri": [csp.NONE],
        "object-src": [csp.NONE],
    }
}

# --- Request body limits ------------------------------------------------------------------------
# A body larger than this answers 413 (by its Content-Length, unread); JSON nested deeper than
# REQUEST_JSON_MAX_DEPTH answers 400 (problem documents under /api/, error pages elsewhere).
REQUEST_BODY_MAX_BYTES = env_int("REQUEST_BODY_MAX_BYTES", 1024 * 1024)
REQUEST_JSON_MAX_DEPTH = env_int("REQUEST_JSON_MAX_DEPTH", 32)
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "accounts.sso.context",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "portal.sqlite3"
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{SQLITE_PATH}")
DATABASES: dict[str, dict[str, Any]] = {
    "default": dict(
        dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share one SQLite file: WAL lets readers run beside the
    # writer and IMMEDIATE transactions make writers queue instead of failing with "locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that worker processes started by the tests see the test database.
    # Per process, so two test runs on one checkout never share (and corrupt) one file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "DB_CONNECT_TIMEOUT", 5
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
# Brute-force throttling of the sign-in pages (accounts.login_throttle): this many failed sign-ins
# for one username (or LOGIN_IP_FAILURE_LIMIT from one address) within LOGIN_LOCKOUT_SECONDS
# lock it for LOGIN_LOCKOUT_SECONDS. The counters live in the cache (CACHE_URL).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_IP_FAILURE_LIMIT = env_int("LOGIN_IP_FAILURE_LIMIT", 4 * LOGIN_FAILURE_LIMIT)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900)
for _name in ("LOGIN_FAILURE_LIMIT", "LOGIN_IP_FAILURE_LIMIT", "LOGIN_LOCKOUT_SECONDS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1.")
# Proxies in front of the portal that append to X-Forwarded-For (0: use the peer address). The
# client address of the login throttle and of the API's anonymous throttle is the entry the
# outermost trusted proxy wrote; anything before it is written by the client and not trusted.
NUM_PROXIES = env_int("NUM_PROXIES", 0)

# Optional single sign-on with Microsoft Entra ID over OpenID Connect (accounts/sso.py; README
# "Single sign-on"). Off unless OIDC_RP_CLIENT_ID is set; local accounts keep working.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts.sso.EntraIdBackend",
]
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
ENTRA_TENANT_ID = os.environ.get("ENTRA_TENANT_ID", "")
# The sign-in authority; endpoints are derived from it and the tenant (accounts.sso.oidc_setting)
# unless OIDC_OP_AUTHORIZATION_ENDPOINT / OIDC_OP_TOKEN_ENDPOINT / OIDC_OP_JWKS_ENDPOINT are set.
ENTRA_AUTHORITY_HOST = os.environ.get(
    "ENTRA_AUTHORITY_HOST",
    os.environ.get("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com"),
)
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
# "<group-object-id>=<role>, ..." and "<group-object-id>=<team name>, ...".
SSO_GROUP_ROLES = os.environ.get("SSO_GROUP_ROLES", "")
SSO_GROUP_TEAMS = os.environ.get("SSO_GROUP_TEAMS", "")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid profile email"
OIDC_USE_PKCE = True
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT", 10)
# A CA bundle for the identity provider's TLS (the emulator's CA in development); default: system.
OIDC_VERIFY_SSL: bool | str = os.environ.get("OIDC_CA_BUNDLE") or True
OIDC_AUTHENTICATION_CALLBACK_URL = "sso-callback"
LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/"

# --- I18n / static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# WhiteNoise warns on every request when the directory is missing (before collectstatic).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [p for p in [BASE_DIR / "static"] if p.exists()]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production defaults; `manage.py check --deploy` is clean with DEBUG off) --------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # the UI's fetch() calls read the token from the form, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Probes reach the pods over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^healthz/workers$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging ------------------------------------------------------------------------------------
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', got {LOG_FORMAT!r}.")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "portal.logging.RedactSecretsFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "portal.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # azure-core logs full request URLs and headers at DEBUG; keep it at WARNING.
        "azure": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# --- Cache (API throttle counters, login throttling) -------------------------------------------
# Shared across web processes and machines with CACHE_URL (a Redis database of its own: a cache
# clear must never flush the broker's queues). Without it, a folder under var/ (CACHE_DIR) that
# every process of this machine shares: a lockout set by the web server is seen, and lifted, by
# `manage.py login_unlock` in its own process. Never a per-process memory cache.
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "wip",
            "TIMEOUT": 300,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.environ.get("CACHE_DIR", str(VAR_DIR / "cache")),
            "TIMEOUT": 300,
            # The file cache culls a third of its entries past MAX_ENTRIES; keep that far above
            # the lockouts and throttle counters a single machine holds.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

# --- Celery -------------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
BROKER_DIR = Path(os.environ.get("BROKER_DIR", VAR_DIR / "broker"))
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 900)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
# Redelivery of an unacknowledged (acks_late) task happens after this; it must exceed the longest
# task or a running task would be handed to a second worker.
CELERY_VISIBILITY_TIMEOUT = max(
    env_int("CELERY_VISIBILITY_TIMEOUT", 3600), CELERY_TASK_TIME_LIMIT * 2
)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 5,
    }
    # A worker takes a message only while one of its pool processes is free. Otherwise every
    # countdown task it holds (a run deferred for ARM's write budget) raises its prefetch by
    # one, it buffers that many queued messages, and a countdown that falls due runs behind all
    # of them, late (issue 18, goal 2). Redis brokers only: Celery 5.6's
    # celery/worker/consumer/tasks.py checks its reserved requests against the pool's size.
    CELERY_WORKER_DISABLE_PREFETCH = True
    # Message priorities (kombu's Redis transport: one list per step of priority_steps, by
    # default 0, 3, 6, 9, popped lowest first; kombu/transport/redis.py, Channel._put and
    # _brpop_start): every task is sent at 3, and a run deferred for ARM's write budget comes
    # back at 0, ahead of the queue, so that its countdown starts when it is sent rather than
    # when the queue in front of it has drained (issue 18, goal 2).
    CELERY_TASK_DEFAULT_PRIORITY = 3
    PROVISIONING_DEFERRED_PRIORITY: int | None = 0
else:
    # Embedded default: kombu's filesystem transport, so a real worker process runs with no server.
    # Its folders must exist before the first publish (web) or poll (worker).
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    # The filesystem transport has no priorities.
    PROVISIONING_DEFERRED_PRIORITY = None
# One named queue; tests give each run its own so a developer's running worker never steals work.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "portal")
# The scheduled drift run has a queue of its own, consumed by its own worker (`celery worker
# -Q portal-drift --concurrency=1`), so provisioning never waits behind drift reads.
CELERY_DRIFT_QUEUE = os.environ.get("CELERY_DRIFT_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}-drift")
CELERY_TASK_ROUTES = {
    "provisioning.check_drift": {"queue": CELERY_DRIFT_QUEUE},
    "provisioning.drift_batch": {"queue": CELERY_DRIFT_QUEUE},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Requests approved but not picked up after this, or provisioning with no step progress for
# SWEEPER_STALE_SECONDS, are re-enqueued by the sweeper (the engine is idempotent).
SWEEPER_INTERVAL_SECONDS = env_int("SWEEPER_INTERVAL_SECONDS", 60)
SWEEPER_APPROVED_AFTER_SECONDS = env_int("SWEEPER_APPROVED_AFTER_SECONDS", 60)
SWEEPER_STALE_SECONDS = env_int("SWEEPER_STALE_SECONDS", 300)
# Resource groups (ARM ids) whose roles the portal never grants, beside every cluster's identity
# resource group, which is protected anyway: roles there could take other teams' identities over.
PROTECTED_RESOURCE_GROUPS = env_list("PROTECTED_RESOURCE_GROUPS", [])
# Before a request is filed or approved each scope is looked up in Azure Resource Graph (the
# portal's identity needs Reader on the subscriptions); a scope that does not exist is refused,
# one that cannot be checked (outage, throttling) is accepted with the finding scope_unverified.
# Answers are cached this long. Resources tagged OWNERSHIP_TAG=<team> are owned by that team.
SCOPE_EXISTENCE_CHECK = env_bool("SCOPE_EXISTENCE_CHECK", True)
SCOPE_LOOKUP_CACHE_SECONDS = env_int("SCOPE_LOOKUP_CACHE_SECONDS", 300)
OWNERSHIP_TAG = os.environ.get("OWNERSHIP_TAG", "owner-team")
DRIFT_CHECK_INTERVAL_SECONDS = env_int("DRIFT_CHECK_INTERVAL_SECONDS", 3600)
# The drift run (provisioning.drift, README "Drift"): beat ticks every DRIFT_TICK_SECONDS; a
# run starts when the interval has passed since the last one started and none is active, and is
# done in batches of up to DRIFT_BATCH_SECONDS on the drift queue, its cursor in the database.
# A batch not heard from for DRIFT_LEASE_SECONDS is presumed dead and handed out again.
# Reads are paced per subscription at DRIFT_READS_PER_SECOND (ARM: a read bucket of 250
# refilled at 25/s per subscription and principal; Learn request-limits-and-throttling), from a
# burst of DRIFT_READ_BURST, pausing while ARM's x-ms-ratelimit-remaining-subscription-reads is
# below DRIFT_READS_RESERVE; a 429's Retry-After up to DRIFT_MAX_INLINE_WAIT_SECONDS is slept,
# a longer one hands the run on with that countdown.
DRIFT_TICK_SECONDS = env_int("DRIFT_TICK_SECONDS", 60)
DRIFT_BATCH_SECONDS = env_int("DRIFT_BATCH_SECONDS", 60)
DRIFT_LEASE_SECONDS = env_int("DRIFT_LEASE_SECONDS", 120)
DRIFT_CHUNK = env_int("DRIFT_CHUNK", 200)
DRIFT_READS_PER_SECOND = float(os.environ.get("DRIFT_READS_PER_SECOND", "25"))
DRIFT_READ_BURST = float(os.environ.get("DRIFT_READ_BURST", "25"))
DRIFT_READS_RESERVE = env_int("DRIFT_READS_RESERVE", 25)
DRIFT_MAX_INLINE_WAIT_SECONDS = float(os.environ.get("DRIFT_MAX_INLINE_WAIT_SECONDS", "10"))
if DRIFT_READS_PER_SECOND <= 0:
    raise ImproperlyConfigured("DRIFT_READS_PER_SECOND must be a positive number.")
# The whole audit chain is walked by a worker this often (and on demand from the audit page);
# the page itself walks only the rows added since the last full check, up to this many.
AUDIT_VERIFY_INTERVAL_SECONDS = env_int("AUDIT_VERIFY_INTERVAL_SECONDS", 3600)
AUDIT_TAIL_VERIFY_LIMIT = env_int("AUDIT_TAIL_VERIFY_LIMIT", 20_000)
# Checkpoints of the chain (rows, head hash, time; signed) appended to a write-once sink outside
# the database after every full check and every AUDIT_ANCHOR_INTERVAL_SECONDS: `folder` (read-only
# files under AUDIT_ANCHOR_DIR, development), `blob` (an Azure append blob in a container with an
# immutability policy, production) or `none`. See identities/audit/anchor.py.
AUDIT_ANCHOR_SINK = os.environ.get("AUDIT_ANCHOR_SINK", "folder")
if AUDIT_ANCHOR_SINK not in {"folder", "blob", "none"}:
    raise ImproperlyConfigured("AUDIT_ANCHOR_SINK must be 'folder', 'blob' or 'none'.")
AUDIT_ANCHOR_DIR = Path(os.environ.get("AUDIT_ANCHOR_DIR", VAR_DIR / "audit-anchors"))
AUDIT_ANCHOR_BLOB_ACCOUNT_URL = os.environ.get("AUDIT_ANCHOR_BLOB_ACCOUNT_URL", "")
AUDIT_ANCHOR_BLOB_CONNECTION_STRING = os.environ.get("AUDIT_ANCHOR_BLOB_CONNECTION_STRING", "")
AUDIT_ANCHOR_BLOB_CONTAINER = os.environ.get("AUDIT_ANCHOR_BLOB_CONTAINER", "audit-anchors")
AUDIT_ANCHOR_BLOB_NAME = os.environ.get("AUDIT_ANCHOR_BLOB_NAME", "checkpoints.jsonl")
if AUDIT_ANCHOR_SINK == "blob" and not (
    AUDIT_ANCHOR_BLOB_ACCOUNT_URL or AUDIT_ANCHOR_BLOB_CONNECTION_STRING
):
    raise ImproperlyConfigured("AUDIT_ANCHOR_SINK=blob needs AUDIT_ANCHOR_BLOB_ACCOUNT_URL.")
AUDIT_ANCHOR_INTERVAL_SECONDS = env_int("AUDIT_ANCHOR_INTERVAL_SECONDS", 300)
# --- Notifications (README "Notifications") ---------------------------------------------------
# Email goes through Django's email framework: SMTP by default (EMAIL_HOST, EMAIL_PORT,
# EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS / EMAIL_USE_SSL); `dev.py run` writes
# messages to files under var/mail instead. Links in messages start with PORTAL_BASE_URL.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set at most one of EMAIL_USE_TLS and EMAIL_USE_SSL.")
# Seconds: a hung mail server fails the attempt (retried later) instead of holding the worker.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = os.environ.get(
    "DEFAULT_FROM_EMAIL", "Workload Identity Portal <portal@localhost>"
)
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000")
if not PORTAL_BASE_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured(
        f"PORTAL_BASE_URL must be an absolute http(s) URL, got {PORTAL_BASE_URL!r}."
    )
# Off: no notification is recorded (no inbox, email or webhook rows); on by default.
NOTIFICATIONS_ENABLED = env_bool("NOTIFICATIONS_ENABLED", True)
NOTIFICATION_MESSAGE_ID_DOMAIN = os.environ.get("NOTIFICATION_MESSAGE_ID_DOMAIN", "portal.local")
# A failed send is retried after NOTIFICATION_BACKOFF_SECONDS, doubling up to the max, and given
# up after NOTIFICATION_MAX_ATTEMPTS (defaults: 30 s … 1 h, about a day in all).
NOTIFICATION_BACKOFF_SECONDS = float(os.environ.get("NOTIFICATION_BACKOFF_SECONDS", "30"))
NOTIFICATION_BACKOFF_MAX_SECONDS = float(os.environ.get("NOTIFICATION_BACKOFF_MAX_SECONDS", "3600"))
NOTIFICATION_MAX_ATTEMPTS = env_int("NOTIFICATION_MAX_ATTEMPTS", 30)
NOTIFICATION_SWEEP_SECONDS = env_int("NOTIFICATION_SWEEP_SECONDS", 60)
NOTIFICATION_SWEEP_BATCH = env_int("NOTIFICATION_SWEEP_BATCH", 500)
NOTIFICATION_DIGEST_INTERVAL_SECONDS = env_int("NOTIFICATION_DIGEST_INTERVAL_SECONDS", 86400)
NOTIFICATION_DIGEST_CHECK_SECONDS = env_int("NOTIFICATION_DIGEST_CHECK_SECONDS", 3600)
# Webhooks (README "Webhooks"): https only unless DEBUG or WEBHOOK_ALLOW_HTTP; receivers on
# private, loopback, link-local, unique-local, multicast or unspecified addresses are refused
# unless their host name is in WEBHOOK_ALLOWED_HOSTS or their address in WEBHOOK_ALLOWED_CIDRS
# (on-premises receivers). Retries back off from 60 s, doubling to 1 h, over about a day; the
# endpoint is disabled (its team told) when a delivery is given up.
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", False)
WEBHOOK_ALLOWED_HOSTS = [h.lower() for h in env_list("WEBHOOK_ALLOWED_HOSTS", [])]
WEBHOOK_ALLOWED_CIDRS = env_list("WEBHOOK_ALLOWED_CIDRS", [])
try:
    _webhook_cidrs = [ipaddress.ip_network(cidr, strict=False) for cidr in WEBHOOK_ALLOWED_CIDRS]
except ValueError as exc:
    raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_CIDRS: {exc}") from exc
# A PEM file of extra CAs trusted for https receivers (an on-premises CA), beside the system's.
WEBHOOK_CA_BUNDLE = os.environ.get("WEBHOOK_CA_BUNDLE", "")
if WEBHOOK_CA_BUNDLE and not os.path.isfile(WEBHOOK_CA_BUNDLE):
    raise ImproperlyConfigured(f"WEBHOOK_CA_BUNDLE: {WEBHOOK_CA_BUNDLE!r} is not a file.")
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))
WEBHOOK_MAX_RESPONSE_BYTES = env_int("WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024)
WEBHOOK_BACKOFF_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_SECONDS", "60"))
WEBHOOK_BACKOFF_MAX_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_MAX_SECONDS", "3600"))
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 30)
WEBHOOK_SECRET_GRACE_SECONDS = env_int("WEBHOOK_SECRET_GRACE_SECONDS", 86400)
# --- Worker health ------------------------------------------------------------------------------
# The prefork pool whose processes can be killed (OOM killer, kill -9) without wedging the worker:
# see portal/worker_pool.py. The worker touches WORKER_LIVENESS_FILE while its pool runs jobs;
# `python -m portal.worker_probe` (the liveness probe) fails when it is older than the max age.
CELERY_WORKER_POOL = "portal.worker_pool:TaskPool"
WORKER_LIVENESS_FILE = Path(os.environ.get("WORKER_LIVENESS_FILE", VAR_DIR / "worker-liveness"))
WORKER_LIVENESS_INTERVAL_SECONDS = env_int("WORKER_LIVENESS_INTERVAL_SECONDS", 10)
HEARTBEAT_INTERVAL_SECONDS = env_int("HEARTBEAT_INTERVAL_SECONDS", 60)
# /healthz/workers answers 503 when the newest heartbeat a worker recorded is older than this.
WORKER_HEARTBEAT_STALE_SECONDS = env_int(
    "WORKER_HEARTBEAT_STALE_SECONDS", 3 * HEARTBEAT_INTERVAL_SECONDS
)
# Access reviews: how often overdue items are escalated and, past the grace period, revoked.
ACCESS_REVIEW_SWEEP_SECONDS = env_int("ACCESS_REVIEW_SWEEP_SECONDS", 3600)
# Time-bound access (README "Time-bound access"): the longest end date a request may ask for, in
# days (0 = unlimited; while a maximum is set, every role it covers must have an end date), how
# often the expiry sweep runs, and how many days before an end the owning team is reminded.
ACCESS_MAX_DAYS = env_int("ACCESS_MAX_DAYS", 0)
ACCESS_MAX_DAYS_PRIVILEGED = env_int("ACCESS_MAX_DAYS_PRIVILEGED", 30)
ACCESS_EXPIRY_REMIND_DAYS = env_int("ACCESS_EXPIRY_REMIND_DAYS", 7)
ACCESS_EXPIRY_SWEEP_SECONDS = env_int("ACCESS_EXPIRY_SWEEP_SECONDS", 300)
# The tenant has time-bound active assignments (Entra ID P2 / ID Governance): a role with an end
# date is written as a role assignment schedule request, which Azure ends itself.
AZURE_TIME_BOUND_ASSIGNMENTS = env_bool("AZURE_TIME_BOUND_ASSIGNMENTS", False)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "worker-heartbeat": {
        "task": "portal.tasks.heartbeat",
        "schedule": float(HEARTBEAT_INTERVAL_SECONDS),
    },
    "sweep-stuck-requests": {
        "task": "provisioning.sweep_stuck_requests",
        "schedule": float(SWEEPER_INTERVAL_SECONDS),
    },
    "check-drift": {
        "task": "provisioning.check_drift",
        "schedule": float(DRIFT_TICK_SECONDS),
    },
    "verify-audit-chain": {
        "task": "identities.verify_audit_chain",
        "schedule": float(AUDIT_VERIFY_INTERVAL_SECONDS),
    },
    "anchor-audit-chain": {
        "task": "identities.anchor_audit_chain",
        "schedule": float(AUDIT_ANCHOR_INTERVAL_SECONDS),
    },
    "sweep-access-reviews": {
        "task": "provisioning.sweep_access_reviews",
        "schedule": float(ACCESS_REVIEW_SWEEP_SECONDS),
    },
    "sweep-expired-access": {
        "task": "provisioning.sweep_expired_access",
        "schedule": float(ACCESS_EXPIRY_SWEEP_SECONDS),
    },
    "sweep-notifications": {
        "task": "notifications.sweep",
        "schedule": float(NOTIFICATION_SWEEP_SECONDS),
    },
    "send-notification-digests": {
        "task": "notifications.send_digests",
        "schedule": float(NOTIFICATION_DIGEST_CHECK_SECONDS),
    },
    "purge-idempotency-records": {
        "task": "portal.tasks.purge_idempotency_records",
        "schedule": 3600.0,
    },
}

# --- Azure --------------------------------------------------------------------------------------
AZURE_MODE = os.environ.get("AZURE_MODE", "emulator")
if AZURE_MODE not in {"emulator", "azure"}:
    raise ImproperlyConfigured(f"AZURE_MODE must be 'emulator' or 'azure', got {AZURE_MODE!r}.")
# The emulator writes its CA (ca.pem), its URL (url) and the portal's own service principal
# (portal-client.json) into its state directory; in emulator mode the portal reads them there.
EMULATOR_STATE_DIR = Path(os.environ.get("EMULATOR_STATE_DIR", VAR_DIR / "emulator"))
EMULATOR_URL = os.environ.get("EMULATOR_URL", "")
# --- Azure cloud: sovereign clouds, private authorities (README "Sovereign and private clouds")
# AZURE_CLOUD (public, usgov, china; custom = name them all) fills the ARM endpoint, the Entra
# authority and the ARM token scope, each overridable; MSAL instance discovery runs only for the
# known clouds' hosts unless AZURE_INSTANCE_DISCOVERY (auto, on, off) says otherwise.
try:
    _cloud = resolve_cloud(
        os.environ.get("AZURE_CLOUD", "public"),
        arm_endpoint=os.environ.get("AZURE_RESOURCE_MANAGER_URL", ""),
        authority_host=os.environ.get("AZURE_AUTHORITY_HOST", ""),
        arm_scope=os.environ.get("AZURE_RESOURCE_MANAGER_SCOPE", ""),
        instance_discovery=os.environ.get("AZURE_INSTANCE_DISCOVERY", "auto").lower(),
    )
except CloudConfigurationError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
AZURE_CLOUD = _cloud.name
AZURE_RESOURCE_MANAGER_URL = _cloud.arm_endpoint
AZURE_AUTHORITY_HOST = _cloud.authority_host
AZURE_RESOURCE_MANAGER_SCOPE = _cloud.arm_scope
AZURE_INSTANCE_DISCOVERY = _cloud.instance_discovery
AZURE_CA_BUNDLE = os.environ.get("AZURE_CA_BUNDLE", "")  # a private cloud's CA; default: system
ENTRA_AUTHORITY_HOST = os.environ.get("ENTRA_AUTHORITY_HOST") or AZURE_AUTHORITY_HOST
# ---
# Seconds. The engine is the one retry layer (attempts recorded on each step, Retry-After
# honoured), so the SDK's own retries are off by default; raise them to add a second layer.
AZURE_HTTP_CONNECT_TIMEOUT = env_int("AZURE_HTTP_CONNECT_TIMEOUT", 10)
AZURE_HTTP_READ_TIMEOUT = env_int("AZURE_HTTP_READ_TIMEOUT", 30)
AZURE_SDK_RETRY_TOTAL = env_int("AZURE_SDK_RETRY_TOTAL", 0)
# The engine's own retry of a step that failed with a transient error (throttling, 5xx, timeouts,
# PrincipalNotFound replication delay, concurrent FIC writes): attempts and backoff base.
PROVISIONING_STEP_ATTEMPTS = env_int("PROVISIONING_STEP_ATTEMPTS", 8)
PROVISIONING_BACKOFF_SECONDS = float(os.environ.get("PROVISIONING_BACKOFF_SECONDS", "1.0"))
PROVISIONING_BACKOFF_MAX_SECONDS = float(os.environ.get("PROVISIONING_BACKOFF_MAX_SECONDS", "30"))
# Throttling (429) is retried for this many seconds of waiting per step, not counted as attempts:
# with many writers on one subscription's ARM write bucket, one write can be turned away often.
PROVISIONING_THROTTLE_BUDGET_SECONDS = float(
    os.environ.get("PROVISIONING_THROTTLE_BUDGET_SECONDS", "600")
)
# The write limiter (provisioning.ratelimit): a copy of ARM's per-subscription write and delete
# buckets shared by every worker through Redis ("redis"; without REDIS_URL it falls back to a
# bucket per process, "local"), consulted before each phase of writes; "off" leaves pacing to
# ARM's 429s. Sizes default to ARM's documented buckets (Learn request-limits-and-throttling:
# writes 200 refilled at 10/s, deletes 200 at 10/s, per subscription and principal). A phase
# whose tokens are further away than PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS is sent again
# with that countdown instead of holding its worker.
PROVISIONING_WRITE_LIMITER = os.environ.get(
    "PROVISIONING_WRITE_LIMITER", "redis" if REDIS_URL else "local"
)
if PROVISIONING_WRITE_LIMITER not in {"redis", "local", "off"}:
    raise ImproperlyConfigured("PROVISIONING_WRITE_LIMITER must be redis, local or off.")
PROVISIONING_WRITE_BUCKET_CAPACITY = float(
    os.environ.get("PROVISIONING_WRITE_BUCKET_CAPACITY", "200")
)
PROVISIONING_WRITE_REFILL_PER_SECOND = float(
    os.environ.get("PROVISIONING_WRITE_REFILL_PER_SECOND", "10")
)
PROVISIONING_DELETE_BUCKET_CAPACITY = float(
    os.environ.get("PROVISIONING_DELETE_BUCKET_CAPACITY", "200")
)
PROVISIONING_DELETE_REFILL_PER_SECOND = float(
    os.environ.get("PROVISIONING_DELETE_REFILL_PER_SECOND", "10")
)
if (
    min(
        PROVISIONING_WRITE_BUCKET_CAPACITY,
        PROVISIONING_WRITE_REFILL_PER_SECOND,
        PROVISIONING_DELETE_BUCKET_CAPACITY,
        PROVISIONING_DELETE_REFILL_PER_SECOND,
    )
    <= 0
):
    raise ImproperlyConfigured("The PROVISIONING_WRITE/DELETE bucket sizes must be positive.")
PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS = float(
    os.environ.get("PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS", "1")
)
# A provisioning task that loses PostgreSQL (connect refused, connection cut) closes the broken
# connection and runs again later, up to this many times, with jittered exponential backoff
# capped at the maximum: with the defaults, about three minutes in all, inside the sweeper's
# SWEEPER_STALE_SECONDS. The engine is idempotent, so a rerun repeats no Azure write twice.
PROVISIONING_DATABASE_RETRIES = env_int("PROVISIONING_DATABASE_RETRIES", 10)
PROVISIONING_DATABASE_BACKOFF_SECONDS = float(
    os.environ.get("PROVISIONING_DATABASE_BACKOFF_SECONDS", "1.0")
)
PROVISIONING_DATABASE_BACKOFF_MAX_SECONDS = float(
    os.environ.get("PROVISIONING_DATABASE_BACKOFF_MAX_SECONDS", "30")
)
# Verification: run automatically after provisioning; while a new FIC propagates (any "no
# matching federated identity record" code with Azure's copy matching the token) check again
# every VERIFY_RETRY_SECONDS for up to the window.
VERIFY_AFTER_PROVISIONING = env_bool("VERIFY_AFTER_PROVISIONING", True)
VERIFY_PROPAGATION_WINDOW_SECONDS = env_int("VERIFY_PROPAGATION_WINDOW_SECONDS", 600)
VERIFY_RETRY_SECONDS = env_int("VERIFY_RETRY_SECONDS", 20)

# --- Pipelines' own OIDC tokens (accounts.oidc) -----------------------------------------------
# Issuers' keys are fetched over https only; plain http to a loopback host only when this is on
# (the tests' local issuer, a DEBUG checkout).
OIDC_ALLOW_HTTP_LOOPBACK = env_bool("OIDC_ALLOW_HTTP_LOOPBACK", DEBUG)
# The SSRF guard (identities.outbound) refuses issuers and jwks_uris on loopback, link-local,
# private, multicast or reserved addresses unless the host name is in OIDC_ALLOWED_HOSTS or the
# address in OIDC_ALLOWED_CIDRS (an on-premises GitLab; the tests' local issuer). Empty by
# default, DEBUG included: a local issuer is admitted by naming it.
OIDC_ALLOWED_HOSTS = [h.lower() for h in env_list("OIDC_ALLOWED_HOSTS", [])]
OIDC_ALLOWED_CIDRS = env_list("OIDC_ALLOWED_CIDRS", [])
try:
    _oidc_cidrs = [ipaddress.ip_network(cidr, strict=False) for cidr in OIDC_ALLOWED_CIDRS]
except ValueError as exc:
    raise ImproperlyConfigured(f"OIDC_ALLOWED_CIDRS: {exc}") from exc
OIDC_JWKS_TTL_SECONDS = env_int("OIDC_JWKS_TTL_SECONDS", 3600)
# A token naming an unknown key fetches the key set again at most this often per issuer.
OIDC_JWKS_REFETCH_SECONDS = env_int("OIDC_JWKS_REFETCH_SECONDS", 60)
OIDC_LEEWAY_SECONDS = env_int("OIDC_LEEWAY_SECONDS", 60)
OIDC_HTTP_TIMEOUT_SECONDS = env_int("OIDC_HTTP_TIMEOUT_SECONDS", 5)
# Refused pipeline tokens: audited up to this many per client address and window, then only
# logged and counted (accounts/oidc.py): an anonymous caller cannot fill the audit trail.
OIDC_REFUSAL_AUDIT_LIMIT = env_int("OIDC_REFUSAL_AUDIT_LIMIT", 5)
OIDC_REFUSAL_AUDIT_WINDOW_SECONDS = max(1, env_int("OIDC_REFUSAL_AUDIT_WINDOW_SECONDS", 60))
# A PEM file of extra CAs trusted for pipeline OIDC issuers (an on-premises GitLab's private CA),
# beside the system's: the discovery document and the key set are fetched with both.
OIDC_ISSUER_CA_BUNDLE = os.environ.get("OIDC_ISSUER_CA_BUNDLE", "")
if OIDC_ISSUER_CA_BUNDLE and not os.path.isfile(OIDC_ISSUER_CA_BUNDLE):
    raise ImproperlyConfigured(f"OIDC_ISSUER_CA_BUNDLE: {OIDC_ISSUER_CA_BUNDLE!r} is not a file.")

# --- REST framework -----------------------------------------------------------------------------
REST_FRAMEWORK: dict[str, Any] = {
    # Pipelines send `Authorization: Bearer wip_…` (accounts.authentication); the UI its session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.OidcTokenAuthentication",
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
    # Every error is an RFC 9457 problem document (domain errors mapped centrally).
    "EXCEPTION_HANDLER": "api.problems.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.ApiCursorPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # The token, user and anonymous limits, checked in one read and one write of the default
    # cache (a folder the machine's processes share, or Redis with CACHE_URL).
    "DEFAULT_THROTTLE_CLASSES": [
        "api.throttling.ApiRateThrottle",
    ],
    # Without it DRF keys the anonymous throttle on the whole X-Forwarded-For header, which any
    # client can vary to escape the limit.
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_THROTTLE_RATES": {
        "token": os.environ.get("API_THROTTLE_TOKEN", "600/min"),
        "user": os.environ.get("API_THROTTLE_USER", "1200/min"),
        "anon": os.environ.get("API_THROTTLE_ANON", "60/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# `Prefer: wait=N` on GET /api/v1/identity-requests/{id}/ is capped here: each waiting call holds
# a web thread (not a database connection) for up to this long.
API_WAIT_MAX_SECONDS = env_int("API_WAIT_MAX_SECONDS", 60)
# How many such waits run at once: per web process (a gunicorn worker, 4 threads in the image
# and deploy/kubernetes/base/web.yaml: half of them, so plain calls always find a thread) and
# per user across processes (counted in the cache, like the throttles). A wait over either cap
# is answered at once, without `Preference-Applied: wait`. Raise them with --threads.
API_WAIT_MAX_PER_PROCESS = env_int("API_WAIT_MAX_PER_PROCESS", 2)
API_WAIT_MAX_PER_PRINCIPAL = env_int("API_WAIT_MAX_PER_PRINCIPAL", 2)
SPECTACULAR_SETTINGS = {
    "TITLE": "Workload Identity Portal API",
    "DESCRIPTION": (
        "Self-service Azure AKS Workload Identity for pipelines. Authenticate with "
        "`Authorization: Bearer <API token>` (scopes: read, request, approve) or the web UI's "
        "session. Errors are RFC 9457 problem details (`application/problem+json`) naming each "
        "invalid field. Send an `Idempotency-Key` header on POSTs to retry them safely. Lists "
        "are cursor-paginated: follow `next`."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RequestStatusEnum": "identities.models.RequestStatus",
        "IdentityStatusEnum": "identities.models.IdentityStatus",
        "ChildStatusEnum": "identities.models.ChildStatus",
        "DriftStateEnum": "identities.models.DriftState",
        "StepStatusEnum": "provisioning.models.StepStatus",
        "QueuedStatusEnum": ["queued"],
        # API tokens may hold any scope; a team's machines read and request only.
        "TokenScopeEnum": "accounts.tokens.SCOPES",
        "ServiceScopeEnum": "accounts.tokens.SERVICE_SCOPES",
        "RequestKindEnum": "identities.models.RequestKind",
        "FiledKindEnum": ["new", "add_service_account"],
    },
    # Served from the drf-spectacular-sidecar static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Metrics (Prometheus; README "Metrics") -----------------------------------------------------
# GET /metrics answers only a scraper sending `Authorization: Bearer <METRICS_TOKEN>` (404 when
# unset, 401 without it); a worker serves its own on WORKER_METRICS_PORT (0: none) with the same
# token. gunicorn and Celery prefork add up their processes through PROMETHEUS_MULTIPROC_DIR,
# which prometheus-client reads from the environment itself.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 24:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 24 characters.")
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
if not DEBUG:
    # Prometheus scrapes pods over plain HTTP inside the cluster, like the probes.
    SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$"]
