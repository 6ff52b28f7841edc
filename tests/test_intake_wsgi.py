"""The WSGI application files reports through a shorter middleware stack:
every answer of the intake endpoint must be the one the full stack gives."""

import io
import json
import wsgiref.util

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from server import wsgi
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


@pytest.fixture(scope="module")
def full():
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


def test_only_posts_to_the_intake_path_take_the_short_stack():
    pattern = wsgi.intake_path_pattern()
    assert pattern.match("/api/v1/s/AbC-12_x/reports/")
    assert not pattern.match("/api/v1/s/AbC/reports/receipt/")
    assert not pattern.match("/api/v1/s/a/b/reports/")
    assert not pattern.match("/s/AbC/")


def test_other_posts_still_go_through_csrf_protection(call, organizer):
    status, _headers, _content = call(
        wsgi.application, "POST", "/accounts/login/", b"username=x&password=y",
        CONTENT_TYPE="application/x-www-form-urlencoded")
    assert status.startswith("403")


def test_the_short_stack_leaves_out_only_middleware_that_does_nothing_for_intake(settings):
    handler = wsgi.IntakeHandler()
    handler.load_middleware()
    chain, kept = handler._middleware_chain, []
    # Each layer is a middleware wrapped by convert_exception_to_response.
    while (middleware := getattr(chain, "__wrapped__", None)) is not None and hasattr(
            middleware, "get_response"):
        kept.append(f"{type(middleware).__module__}.{type(middleware).__name__}")
        chain = middleware.get_response
    assert kept == [path for path in settings.MIDDLEWARE if path not in wsgi.NOT_FOR_INTAKE]
    # The settings are as they were for everyone else.
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE
    assert set(settings.MIDDLEWARE) > wsgi.NOT_FOR_INTAKE


def test_the_short_stack_routes_an_intake_path_as_the_urlconf_does():
    from django.test import RequestFactory
    from django.urls import resolve

    sample, pattern = wsgi.intake_route()
    handler = wsgi.IntakeHandler(route=sample, pattern=pattern)
    for token in ["AbC-12_x", "t\u00e9st", "x" * 43]:
        request = RequestFactory().post(f"/api/v1/s/{token}/reports/")
        made, resolved = handler.resolve_request(request), resolve(request.path_info)
        assert request.resolver_match is made
        assert (made.func, made.args, made.kwargs, made.url_name, made.route,
                made.captured_kwargs, made.extra_kwargs) == (
            resolved.func, resolved.args, resolved.kwargs, resolved.url_name, resolved.route,
            resolved.captured_kwargs, resolved.extra_kwargs)
