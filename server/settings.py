"""Chorus settings: one module, driven by environment variables.

With nothing set, Chorus runs embedded: SQLite in ./var, Celery tasks executed
in-process, DEBUG off. Setting DATABASE_URL and REDIS_URL switches to
PostgreSQL, a Redis broker and separate worker processes. Every value is parsed
by environs, which raises on a malformed value instead of guessing.
"""

import secrets
from pathlib import Path

from django.utils.csp import CSP
from environs import Env

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env()
env.read_env(BASE_DIR / ".env", recurse=False)

# The embedded default's state: SQLite database, generated secret key, the
# lock of the running `scripts/run`. One directory per running instance.
VAR_DIR = env.path("CHORUS_VAR_DIR", BASE_DIR / "var").resolve()

DEBUG = env.bool("DEBUG", False)
PRODUCTION = env.bool("CHORUS_PRODUCTION", False)


def _dev_secret_key() -> str:
    """A key generated once per checkout and kept in a git-ignored file."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


# Production must be given its key; a generated one would differ per container.
SECRET_KEY = env.str("SECRET_KEY") if PRODUCTION else env.str("SECRET_KEY", "") or _dev_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "surveys",
    "reports",
]

# The server.middleware entries are the named middleware, standing aside for report intake
# alone (see that module).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "server.middleware.StaticFiles",  # whitenoise
    "server.middleware.Sessions",
    # Listed as itself: intake's field messages speak the respondent's language too.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Listed as itself, as the deploy check wants; it costs little for an exempt view.
    "django.middleware.csrf.CsrfViewMiddleware",
    "server.middleware.Authentication",
    "server.middleware.Messages",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "server.errors.BusyMiddleware",
]

ROOT_URLCONF = "server.urls"
WSGI_APPLICATION = "server.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "server" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.dj_db_url(
        "DATABASE_URL", f"sqlite:///{VAR_DIR / 'chorus.sqlite3'}", conn_max_age=60
    )
}
# Lets parallel test runs on one server use separate test databases. SQLite
# tests run in memory and need no name.
if (test_database_name := env.str("CHORUS_TEST_DB_NAME", "")) and (
        DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": test_database_name}
# How long a write waits for SQLite's one writer before the request answers
# 503 with Retry-After (server.errors.database_busy).
SQLITE_BUSY_TIMEOUT_SECONDS = env.float("CHORUS_SQLITE_BUSY_TIMEOUT", 20.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Readers never wait for the writer, nor the writer for readers.
        "init_command": "PRAGMA journal_mode=WAL;",
        # Every transaction takes the write lock when it begins, so writers
        # queue for it (up to the timeout) instead of failing at once when
        # a read turns into a write under another writer.
        "transaction_mode": "IMMEDIATE",
        "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
    }
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "organizer-surveys"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# Chosen per request from the language cookie (the switcher at the foot of every
# page) or Accept-Language; the catalogs are in locale/.
# The switcher shows each by its own name (Django's language info), whatever the page's.
LANGUAGES = [("en", "English"), ("es", "Spanish"), ("de", "German")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SECURE = PRODUCTION
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "server" / "static"]
# Without collectstatic (scripts/run), static files are served from the apps.
WHITENOISE_USE_FINDERS = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Requests: a report is a few hundred bytes; nothing legitimate comes near this.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("CHORUS_MAX_BODY_BYTES", 2 * 1024 * 1024)

# Security headers. Respondent pages must not leak the share token.
# Never across origins. Pages whose URL carries a token send no referrer at
# all (server.http.no_referrer); organizer pages need same-origin, since under
# no-referrer browsers send `Origin: null` and CSRF's origin check fails.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "server.schema.ChorusAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only (views that take files add their own parsers): form encodings
    # cannot say null or an empty list, so they would not mean what the schema says.
    "DEFAULT_PARSER_CLASSES": ["server.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "server.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chorus API",
    "DESCRIPTION": "Anonymous team-pattern surveys: organizer, intake and dashboard endpoints.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: the docs page loads nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "server.errors.document_error_responses"],
}

# Verified surveys: the secret their token signing keys are sealed under (default: SECRET_KEY),
# and the mail that carries verification codes. Without EMAIL_HOST mail is printed to the
# console (the embedded default).
CHORUS_TOKEN_KEY_SECRET = env.str("CHORUS_TOKEN_KEY_SECRET", "")
# Codes mailed per client address (a whole office behind one NAT) per survey per day; each
# work address gets at most 3 a day whatever this says. 0 turns the network limit off.
CHORUS_VERIFICATION_CODES_PER_DAY = env.int("CHORUS_VERIFICATION_CODES_PER_DAY", 50)
# The DNS TXT lookup that DKIM proofs are checked with, as a dotted path to a function of
# (name, timeout=...) -> bytes; empty: dkimpy's own (dnspython).
CHORUS_DKIM_TXT_LOOKUP = env.str("CHORUS_DKIM_TXT_LOOKUP", "")
# Django's own variable names, read into MAILERS (Django 6.1's mail configuration).
email_host = env.str("EMAIL_HOST", "")
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": email_host or "localhost", "port": env.int("EMAIL_PORT", 25),
            "username": env.str("EMAIL_HOST_USER", ""),
            "password": env.str("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env.bool("EMAIL_USE_TLS", False), "timeout": env.int("EMAIL_TIMEOUT", 10),
        },
    # In production mail is always sent, by default through a relay on this host.
    } if email_host or PRODUCTION
    else {"BACKEND": "django.core.mail.backends.console.EmailBackend"},
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "Chorus <chorus@localhost>")

# Celery. No REDIS_URL: tasks run in-process on commit (the embedded default).
REDIS_URL = env.str("REDIS_URL", "")
# The cache holds only rate-limit counters and their daily salt (surveys.ratelimit),
# and HMACs of used report-form tokens (surveys.intake.report_create_once).
CACHES = {
    # Bounded like the broker below: a hung Redis must not hang a request.
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                "KEY_PREFIX": "chorus",
                "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "chorus"},
}
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_LOG_FORMAT = "%(levelname)s %(processName)s %(message)s"
CELERY_WORKER_TASK_LOG_FORMAT = "%(levelname)s %(task_name)s %(message)s"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request must never hang on a dead broker: connect and publish are bounded,
# and the outbox keeps the work until the sweep dispatches it again.
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2,
}
CELERY_BROKER_VISIBILITY_TIMEOUT = env.int("CHORUS_BROKER_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": 1.0,
    "socket_timeout": 2.0,
    "max_retries": 1,
}
# Below the visibility timeout, so a running task is never handed out twice.
CELERY_TASK_TIME_LIMIT = env.int("CHORUS_TASK_TIME_LIMIT", 1800)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "reports.sweep", "schedule": env.float("CHORUS_SWEEP_SECONDS", 30.0)},
}

# Logs carry no request metadata: Django's request logger keeps only unhandled
# exceptions, as their type and traceback (its records include the request
# object, and so the client address; its messages the path, and so tokens).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "filters": {"without_request": {"()": "server.logs.WithoutRequest"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.log_level("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False,
                           "filters": ["without_request"]},
        "django.server": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "django.security.DisallowedHost": {"handlers": [], "propagate": False},
        # Per-task lines would date each report's arrival to the second.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.worker.request": {"level": "WARNING"},
    },
}

# Chorus
# Absolute links handed to organizers; default: the host of the request.
CHORUS_PUBLIC_URL = env.str("CHORUS_PUBLIC_URL", "")
# Length of a publication slot (surveys.slots): figures change only at the first
# sweep after a slot boundary (aligned to the epoch: 3600 is the top of every hour,
# 86400 midnight UTC), and only with at least min_group_size new reports. 0: as
# soon as that many are held (the embedded demo, which runs no beat).
CHORUS_PUBLISH_INTERVAL_SECONDS = env.int("CHORUS_PUBLISH_INTERVAL_SECONDS", 24 * 60 * 60)
if CHORUS_PUBLISH_INTERVAL_SECONDS < 0:
    raise ValueError("CHORUS_PUBLISH_INTERVAL_SECONDS must be 0 or more")
# Reports (and, separately, receipt look-ups) per client address, survey and
# day; 0 turns the limit off.
CHORUS_SUBMISSIONS_PER_DAY = env.int("CHORUS_SUBMISSIONS_PER_DAY", 5)
if CHORUS_SUBMISSIONS_PER_DAY < 0:
    raise ValueError("CHORUS_SUBMISSIONS_PER_DAY must be 0 or more")
# The header a trusted reverse proxy sets to the client address (X-Real-IP, or
# X-Forwarded-For, of which only the rightmost entry is used). Unset: the
# address of the connection. Never set it without such a proxy in front.
CHORUS_CLIENT_IP_HEADER = env.str("CHORUS_CLIENT_IP_HEADER", "")
# Failed organizer logins per username and per client within a window
# (server.auth); 0 turns the limit off.
CHORUS_LOGIN_ATTEMPTS = env.int("CHORUS_LOGIN_ATTEMPTS", 10)
CHORUS_LOGIN_WINDOW_SECONDS = env.int("CHORUS_LOGIN_WINDOW_SECONDS", 15 * 60)
if CHORUS_LOGIN_ATTEMPTS < 0:
    raise ValueError("CHORUS_LOGIN_ATTEMPTS must be 0 or more")
if CHORUS_LOGIN_WINDOW_SECONDS < 1:
    raise ValueError("CHORUS_LOGIN_WINDOW_SECONDS must be 1 or more")
