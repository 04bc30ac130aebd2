"""Shardwatch settings. Every value that varies between machines comes from the environment
through config.env, which refuses bad values at start-up."""

import hashlib
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from config.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_mapping,
    env_secret_key,
    env_str,
    env_url,
)
from dashboard.roles import ROLES

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret_key("SECRET_KEY", fallback_file=VAR_DIR / "secret_key", allow_fallback=DEBUG)
# The key of masking rules' hash mode (streams.masking): a value hashes the same for as long as
# this stays the same, so set it to keep hashes stable across a SECRET_KEY rotation. Without
# it, a key is derived from SECRET_KEY.
SHARDWATCH_MASKING_KEY = (
    env_str("SHARDWATCH_MASKING_KEY", "") or hashlib.sha256(b"shardwatch.masking:" + SECRET_KEY.encode()).hexdigest()
).encode()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Whether the audit log takes a request's address from the first X-Forwarded-For hop: only
# behind a proxy that overwrites that header, else a client could write any address there.
AUDIT_TRUST_X_FORWARDED_FOR = env_bool("AUDIT_TRUST_X_FORWARDED_FOR", False)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "config.apps.ShardwatchAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "meters",
    "audit",
    "streams",
    "workers",
    "alerts",
    "dashboard",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.origins.FetchSiteMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.capture.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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
                "dashboard.context_processors.alerts_firing_banner",
            ],
        },
    },
]

DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'shardwatch.sqlite3'}",
    schemes={"sqlite", "postgres", "postgresql", "pgsql"},
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # WAL lets the web server read while a worker writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on the busy timeout instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# uPlot draws the charts, served from the npm package pinned in package.json (`npm ci`, which
# `make install` runs), not a copy kept here: static/vendor/uplot/uPlot.iife.min.js and .min.css.
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist")]
# Serve straight from the app folders in development and tests, so no collectstatic step is needed.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "admin:login"

# Who may sign in how (config/oidc.py). Local accounts: the username and password form.
# OpenID Connect: on when OIDC_ISSUER is set; the provider must list
# <SHARDWATCH_PUBLIC_URL>/oidc/callback/ among the client's redirect URIs.
LOCAL_LOGIN = env_bool("LOCAL_LOGIN", True)
OIDC_ISSUER = env_url("OIDC_ISSUER", schemes={"https", "http"}) if env_str("OIDC_ISSUER", "") else ""
oidc_on = bool(OIDC_ISSUER)
if not (LOCAL_LOGIN or oidc_on):
    raise ImproperlyConfigured("LOCAL_LOGIN is off and OIDC_ISSUER is not set: nobody could log in.")
AUTHENTICATION_BACKENDS = [
    *(["config.oidc.ShardwatchOIDCBackend"] if oidc_on else []),
    *(["django.contrib.auth.backends.ModelBackend"] if LOCAL_LOGIN else []),
]
# What the login page's button says: "Sign in with <OIDC_PROVIDER_NAME>".
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_RP_CLIENT_ID = env_str("OIDC_CLIENT_ID") if oidc_on else ""
OIDC_RP_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET") if oidc_on else ""
OIDC_RP_SCOPES = env_str("OIDC_SCOPES", "openid email profile")
OIDC_RP_SIGN_ALGO = env_choice("OIDC_SIGN_ALGO", "RS256", choices=("RS256", "RS384", "RS512", "ES256", "ES384", "ES512"))
# The claim that names the Django user, and the one that carries the role-bearing groups.
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_ROLES_CLAIM = env_str("OIDC_ROLES_CLAIM", "groups")
# claim value -> role, e.g. "sw-viewers=Viewer,sw-operators=Operator,sw-admins=Admin".
OIDC_ROLE_MAP = env_mapping("OIDC_ROLE_MAP", {}, values=ROLES)
if oidc_on and not OIDC_ROLE_MAP:
    raise ImproperlyConfigured("OIDC_ROLE_MAP is empty: every OIDC login would be refused.")
# Endpoints discovered from <OIDC_ISSUER>/.well-known/openid-configuration unless set here.
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_JWKS_ENDPOINT", "")
OIDC_TIMEOUT = env_float("OIDC_TIMEOUT_S", 10.0, minimum=1)
OIDC_USE_PKCE = True
# client_secret_basic: the token endpoint's default method (OpenID Connect Core 1.0, 9).
OIDC_TOKEN_USE_BASIC_AUTH = True
LOGIN_REDIRECT_URL = "/"

# Everything from DynamoDB is untrusted and pages insert it with textContent only; the policy
# is the second line of defence: no inline or foreign script can run. Inline styles stay
# allowed for the Django admin's templates. uPlot (the charts) sets sizes and colours through
# the CSSOM (element.style), which style-src does not govern: it would draw without them too.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes={"redis", "rediss", "unix"})

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times reads out after 5 s, the length of channels_redis's own blocking
            # read, which kills idle consumers; and it caps a pool at 100 connections, which
            # refuses the 101st simultaneous handshake (django/channels_redis#422).
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 1000}],
            # Workers send one message per saved batch; a browser that falls this far behind
            # reconnects and fetches what it missed over HTTP, so nothing is lost by the cap.
            "capacity": env_int("CHANNEL_CAPACITY", 500, minimum=10),
            "expiry": 60,
            "prefix": env_str("CHANNEL_PREFIX", "shardwatch"),
        },
    }
}

# Celery. Tasks are short and idempotent, except the stream readers (see below).
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60, minimum=5)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# Above the hard time limit, so a running task is never handed to a second worker.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 4}
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "shardwatch")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Stream reading. Lambda polls a shard with data 4 times a second; DynamoDB allows 5.
# Readers are long-running tasks on a queue of their own (streams/tasks.py), which the
# Procfile's `reader` worker consumes; each holds many shards for SHARDWATCH_READER_RUN_S.
SHARDWATCH_READER_QUEUE = env_str("SHARDWATCH_READER_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}.readers")
CELERY_TASK_ROUTES = {"streams.tasks.read_shards": {"queue": SHARDWATCH_READER_QUEUE}}
SHARDWATCH_READER_RUN_S = env_float("SHARDWATCH_READER_RUN_S", 600.0, minimum=5)
# GetRecords calls in flight at once per reader; streams/aws.py sizes its connection pools to match.
SHARDWATCH_READER_THREADS = env_int("SHARDWATCH_READER_THREADS", 32, minimum=1, maximum=64)
# How often a reader looks for free shards and for readers that hold more than their share.
SHARDWATCH_READER_BALANCE_S = env_float("SHARDWATCH_READER_BALANCE_S", 1.0, minimum=0.2)
SHARDWATCH_POLL_INTERVAL_S = env_float("SHARDWATCH_POLL_INTERVAL_S", 0.25, minimum=0.2)
SHARDWATCH_IDLE_POLL_INTERVAL_S = env_float("SHARDWATCH_IDLE_POLL_INTERVAL_S", 1.0, minimum=0.2)
SHARDWATCH_IDLE_AFTER_S = env_float("SHARDWATCH_IDLE_AFTER_S", 60.0, minimum=0)
SHARDWATCH_LEASE_S = env_int("SHARDWATCH_LEASE_S", 15, minimum=3)
SHARDWATCH_DISPATCH_INTERVAL_S = env_float("SHARDWATCH_DISPATCH_INTERVAL_S", 5.0, minimum=0.5)
SHARDWATCH_DISCOVERY_INTERVAL_S = env_float("SHARDWATCH_DISCOVERY_INTERVAL_S", 30.0, minimum=1)
SHARDWATCH_RETENTION_INTERVAL_S = env_float("SHARDWATCH_RETENTION_INTERVAL_S", 600.0, minimum=1)
SHARDWATCH_MAX_BACKOFF_S = env_float("SHARDWATCH_MAX_BACKOFF_S", 30.0, minimum=1)
SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S = env_float("SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S", 2.0, minimum=0.5)
# A trigger runner that stops renewing (its worker died) loses its cursor after this, plus the
# trigger's own timeout while an invocation is under way.
SHARDWATCH_TRIGGER_LEASE_S = env_int("SHARDWATCH_TRIGGER_LEASE_S", 30, minimum=5)
SHARDWATCH_DEFAULT_RETENTION_DAYS = env_int("SHARDWATCH_DEFAULT_RETENTION_DAYS", 7, minimum=1)
# How often each process adds its counted meters into the database (meters.store); 0 means
# only when meters_flush() is called (the tests).
SHARDWATCH_METERS_FLUSH_S = env_float("SHARDWATCH_METERS_FLUSH_S", 5.0, minimum=0)
# How often each worker and beat process writes its heartbeat (meters.heartbeats); /readyz
# wants one within 30 s.
SHARDWATCH_HEARTBEAT_S = env_float("SHARDWATCH_HEARTBEAT_S", 10.0, minimum=1)
# Celery's default scheduler, which also writes beat's heartbeat as it schedules, and evaluates
# and sends the "no worker alive" alerts itself (config.beat: workers may all be dead).
CELERY_BEAT_SCHEDULER = "config.beat:AlertingScheduler"
# How often discovery asks Lambda which event source mappings read each stream
# (ListEventSourceMappings, streams/consumers.py): mappings change rarely, and each look-up is a
# call to the Lambda API per stream.
SHARDWATCH_CONSUMERS_INTERVAL_S = env_float("SHARDWATCH_CONSUMERS_INTERVAL_S", 300.0, minimum=30)
# Alerts (alerts/): how often beat evaluates the rules, and the dashboard's address as the
# links in notifications give it.
SHARDWATCH_ALERTS_INTERVAL_S = env_float("SHARDWATCH_ALERTS_INTERVAL_S", 15.0, minimum=1)
SHARDWATCH_PUBLIC_URL = env_url("SHARDWATCH_PUBLIC_URL", "http://127.0.0.1:8000", schemes={"http", "https"}).rstrip("/")
# The bearer token Prometheus sends to GET /metrics (Authorization: Bearer <token>). Empty: only
# a logged-in user may read it.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# How often beat samples the charted gauges (workers.gauges): lag and trigger iterator age.
SHARDWATCH_GAUGES_SAMPLE_S = env_float("SHARDWATCH_GAUGES_SAMPLE_S", 15.0, minimum=1)

# Email alerts go through Django's email backend (Django 6.1's MAILERS): SMTP at
# EMAIL_HOST:EMAIL_PORT.
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": env_str("EMAIL_HOST", "localhost"),
            "port": env_int("EMAIL_PORT", 25, minimum=1, maximum=65535),
            "username": env_str("EMAIL_HOST_USER", ""),
            "password": env_str("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "timeout": env_int("EMAIL_TIMEOUT", 10, minimum=1),
        },
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "shardwatch@localhost")

# text: readable lines. json: one JSON object a line (python-json-logger), with the source, shard
# and trigger the line is about as fields where they apply (meters.logcontext). Celery's worker
# and beat log through this too (config/celery.py).
LOG_FORMAT = env_choice("LOG_FORMAT", "text", choices=("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger", "process": "pid"},
            # ISO 8601 in UTC, to the microsecond: "2026-11-30T08:50:00.123456+00:00".
            "timestamp": "time",
        },
    },
    "filters": {"context": {"()": "meters.logcontext.LogContextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Django's DEFAULT_LOGGING gives "django" a text console handler of its own (with DEBUG on)
    # and "django.server" one that does not propagate: naming them here without handlers takes
    # those off, so each of their records reaches the root's handler once, in LOG_FORMAT.
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "botocore": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# The task names are the ones the tasks were registered under when they all lived in
# workers/tasks.py. The stream readers' tasks (dispatch_readers, discover_all,
# enforce_retention) are in streams/tasks.py now and keep those names, so that a deploy
# neither loses queued messages nor needs a new schedule.
CELERY_BEAT_SCHEDULE = {
    "dispatch-readers": {
        "task": "workers.tasks.dispatch_readers",
        "schedule": SHARDWATCH_DISPATCH_INTERVAL_S,
        "options": {"expires": SHARDWATCH_DISPATCH_INTERVAL_S},
    },
    "discover-shards": {
        "task": "workers.tasks.discover_all",
        "schedule": SHARDWATCH_DISCOVERY_INTERVAL_S,
        "options": {"expires": SHARDWATCH_DISCOVERY_INTERVAL_S},
    },
    "dispatch-triggers": {
        "task": "workers.tasks.dispatch_triggers",
        "schedule": SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S,
        "options": {"expires": SHARDWATCH_TRIGGER_DISPATCH_INTERVAL_S},
    },
    "evaluate-alerts": {
        "task": "alerts.tasks.evaluate_alerts",
        "schedule": SHARDWATCH_ALERTS_INTERVAL_S,
        "options": {"expires": SHARDWATCH_ALERTS_INTERVAL_S},
    },
    "sample-gauges": {
        "task": "workers.tasks.sample_gauges",
        "schedule": SHARDWATCH_GAUGES_SAMPLE_S,
        "options": {"expires": SHARDWATCH_GAUGES_SAMPLE_S},
    },
    "enforce-retention": {
        "task": "workers.tasks.enforce_retention",
        "schedule": SHARDWATCH_RETENTION_INTERVAL_S,
        "options": {"expires": SHARDWATCH_RETENTION_INTERVAL_S},
    },
}
