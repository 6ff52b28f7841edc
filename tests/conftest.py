import datetime as dt
import os
import socket
from urllib.parse import urlparse

import pytest
from rest_framework.test import APIClient

from surveys import services
from surveys.models import Survey
from tests.factories import OrganizerFactory, file_reports, survey_with_units

IN_CI = os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Skips a test whose service is missing; in CI the same is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def redis_url() -> str:
    return os.environ.get("CHORUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def organizer(db):
    return OrganizerFactory()


@pytest.fixture
def organizer_api(organizer) -> APIClient:
    client = APIClient()
    client.force_authenticate(organizer)
    return client


@pytest.fixture
def survey(organizer):
    return survey_with_units(owner=organizer, min_group_size=3,
                             paths=["Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Cloud"])


# The one domain whose addresses may take part in `verified`.
VERIFIED_DOMAIN = "acme.example"


@pytest.fixture
def verified(organizer):
    """A survey with verified membership (surveys.membership) and one unit."""
    survey = services.survey_create(owner=organizer, title="Verified", min_group_size=3,
                                    access=Survey.Access.VERIFIED,
                                    email_domains=[VERIFIED_DOMAIN])
    services.units_upsert(survey=survey, units=[{"path": "Acme/Retail/Marketing"}])
    return survey


@pytest.fixture
def publish_at_once(settings):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 0


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, shared by a test module."""
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    require(os.path.exists(CHROMIUM), f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def stack(transactional_db, tmp_path):
    """Real gunicorn, Celery and redis-server processes against the test
    database (PostgreSQL only); each test starts the ones it needs."""
    from tests.stack import Stack, flush_redis, require_postgres_and_redis

    require_postgres_and_redis()
    with Stack(tmp_path) as running:
        flush_redis(running.redis_url)
        yield running


@pytest.fixture
def published(survey, publish_at_once, django_capture_on_commit_callbacks):
    """Marketing 6 and 4 reports, Sales 1, Cloud 5: Sales is below k = 3."""
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 6, signals=("abrupt_reversal", "recap_contradicts_meeting"))
        file_reports(survey, 4, period=dt.date(2026, 2, 10))
        file_reports(survey, 1, unit="Acme/Retail/Sales")
        file_reports(survey, 5, unit="Acme/Cloud", period=dt.date(2026, 2, 10))
    return survey
