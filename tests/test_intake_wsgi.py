"""Middleware that does nothing for report intake stands aside for it (server.middleware):
every answer of the intake endpoint must be the one the whole stack gives."""

import io
import json
import wsgiref.util

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from django.urls import path
from django.utils.module_loading import import_string

from server import middleware, wsgi
from surveys.models import Survey
from tests.factories import report_payload, stored_count

pytestmark = pytest.mark.django_db

# Differ between any two answers, whichever stack gives them.
VARYING = {"receipt"}


@pytest.fixture
def call():
    """Calls a WSGI application as gunicorn would, inside the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    def run(app, method: str, path: str, body: bytes = b"", **extra):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body),
                   "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "203.0.113.9", **extra}
        wsgiref.util.setup_testing_defaults(environ)
        started = []
        chunks = app(environ, lambda status, headers, exc_info=None: started.append(
            (status, headers)))
        try:
            content = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        status, headers = started[0]
        return status, headers, content

    yield run
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def unwrapped(paths: list[str]) -> list[str]:
    """The settings' middleware with each stand-aside wrapper replaced by what it wraps."""
    found = []
    for dotted in paths:
        factory = import_string(dotted)
        is_wrapper = isinstance(factory, type) and issubclass(factory, middleware.NotForIntake)
        found.append(factory.wrapped if is_wrapper else dotted)
    return found


@pytest.fixture
def full(settings):
    # The handler loads its middleware once, when it is made.
    with override_settings(MIDDLEWARE=unwrapped(settings.MIDDLEWARE)):
        return WSGIHandler()


def body_without_varying(content: bytes):
    try:
        data = json.loads(content)
    except ValueError:
        return content
    if isinstance(data, dict):
        return {key: (key in VARYING) or value for key, value in data.items()}
    return data


def both(call, full, method, path, body=b"", **extra):
    lean = call(wsgi.application, method, path, body, **extra)
    whole = call(full, method, path, body, **extra)
    assert lean[0] == whole[0]
    assert lean[1] == whole[1]
    assert body_without_varying(lean[2]) == body_without_varying(whole[2])
    return lean


def json_body(**overrides) -> bytes:
    return json.dumps(report_payload(**overrides)).encode()


def path_of(survey) -> str:
    return f"/api/v1/s/{survey.share_token}/reports/"


def test_a_filed_report_gets_the_same_status_headers_and_body_as_through_the_full_stack(
        call, full, survey):
    status, headers, _content = both(call, full, "POST", path_of(survey), json_body(),
                                     CONTENT_TYPE="application/json")
    assert status.startswith("201")
    names = {name for name, _value in headers}
    assert {"X-Frame-Options", "Content-Security-Policy", "X-Content-Type-Options",
            "Referrer-Policy", "Cross-Origin-Opener-Policy", "Content-Length"} <= names
    assert stored_count(survey) == 2


@pytest.mark.parametrize(("body", "content_type", "expected"), [
    (json_body(unit="Nowhere"), "application/json", "400"),
    (json_body(signals="not a list"), "application/json", "400"),
    (b"{not json", "application/json", "400"),
    # Nested deeper than the interpreter's recursion limit, in 10 kB.
    (b"[" * 5000 + b"]" * 5000, "application/json", "400"),
    (json_body(), "text/plain", "415"),
    (b"{" + b" " * 20_000 + b"}", "application/json", "413"),
])
def test_refused_reports_are_answered_as_by_the_full_stack(call, full, survey, body,
                                                           content_type, expected):
    status, headers, content = both(call, full, "POST", path_of(survey), body,
                                    CONTENT_TYPE=content_type)
    assert status.startswith(expected)
    assert dict(headers)["Content-Type"] == "application/json"
    # A message: "detail", or one per field.
    assert json.loads(content)
    assert not stored_count(survey)


def test_unknown_and_closed_surveys_are_answered_as_by_the_full_stack(call, full, survey):
    status, _headers, _content = both(call, full, "POST", "/api/v1/s/no-such-token/reports/",
                                      json_body(), CONTENT_TYPE="application/json")
    assert status.startswith("404")
    Survey.objects.filter(id=survey.id).update(status=Survey.Status.CLOSED)
    status, _headers, _content = both(call, full, "POST", path_of(survey), json_body(),
                                      CONTENT_TYPE="application/json")
    assert status.startswith("410")


def test_the_daily_limit_is_answered_as_by_the_full_stack(call, full, survey, settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 2
    both(call, full, "POST", path_of(survey), json_body(), CONTENT_TYPE="application/json")
    status, headers, _content = both(call, full, "POST", path_of(survey), json_body(),
                                     CONTENT_TYPE="application/json")
    assert status.startswith("429")
    assert "Retry-After" in dict(headers)


def test_only_posts_to_the_intake_path_skip_the_middleware_that_stands_aside():
    pattern = middleware.intake_paths()
    assert pattern.fullmatch("/api/v1/s/AbC-12_x/reports/")
    assert not pattern.fullmatch("/api/v1/s/AbC/reports/receipt/")
    assert not pattern.fullmatch("/api/v1/s/a/b/reports/")
    assert not pattern.fullmatch("/s/AbC/")


def test_other_posts_still_go_through_csrf_protection(call, organizer):
    status, _headers, _content = call(
        wsgi.application, "POST", "/accounts/login/", b"username=x&password=y",
        CONTENT_TYPE="application/x-www-form-urlencoded")
    assert status.startswith("403")


def test_other_requests_get_every_wrapped_middleware(call, organizer):
    # Sessions and CSRF set their cookies; static files are served.
    status, headers, _content = call(wsgi.application, "GET", "/accounts/login/")
    assert status.startswith("200")
    cookies = " ".join(value for name, value in headers if name == "Set-Cookie")
    assert "csrftoken=" in cookies


def test_only_middleware_that_does_nothing_for_intake_stands_aside(settings):
    wrapped = {path for path in settings.MIDDLEWARE
               if issubclass(import_string(path), middleware.NotForIntake)}
    assert {import_string(path).wrapped for path in wrapped} == {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
    # Security, language, common, framing, content policy and busy answers run for intake too.
    assert [path for path in settings.MIDDLEWARE if path not in wrapped] == [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django.middleware.csp.ContentSecurityPolicyMiddleware",
        "server.errors.BusyMiddleware",
    ]


def _not_exempt(request, share_token):
    return None


urlpatterns = [path("api/v1/s/<str:share_token>/reports/", _not_exempt,
                    name=middleware.INTAKE_URL_NAME)]


def test_nothing_stands_aside_for_a_view_that_needs_csrf_protection():
    with override_settings(ROOT_URLCONF=__name__):
        assert middleware.intake_paths() is None
