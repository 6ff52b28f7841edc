"""Errors are answered in the format asked for, bounded, and logged without
request metadata."""

import json
import logging

import pytest
from django.test import Client
from django.urls import include, path

from surveys import services
from tests.factories import PASSWORD, file_reports

pytestmark = pytest.mark.django_db

# About 10 kB of JSON nested far deeper than Python's recursion limit.
NESTED = b"[" * 5000 + b"]" * 5000


def failing_view(request, token):
    raise RuntimeError("forced failure for the test")


# A URLconf with one view that fails, besides the real ones, and their error views.
urlpatterns = [path("failing/<str:token>/", failing_view), path("", include("server.urls"))]
handler404 = "server.errors.page_not_found"
handler500 = "server.errors.server_error"


def nested_targets(survey, receipt):
    survey_id, share = survey.id, survey.share_token
    return [
        ("post", f"/api/v1/s/{share}/reports/"),
        ("patch", f"/api/v1/s/{share}/reports/{receipt}/"),
        ("post", "/api/v1/auth/token/"),
        ("put", f"/api/v1/surveys/{survey_id}/units/"),
        ("post", "/api/v1/surveys/"),
        ("post", f"/api/v1/surveys/{survey_id}/detections/"),
    ]


def test_deeply_nested_json_is_refused_with_a_json_400_on_every_body_it_reaches(
        survey, organizer):
    (receipt,) = file_reports(survey, 1)
    client = Client(raise_request_exception=False)
    client.login(username=organizer.username, password=PASSWORD)
    token = client.post("/api/v1/auth/token/", {"username": organizer.username,
                                                "password": PASSWORD},
                        content_type="application/json").json()["token"]
    assert len(NESTED) == 10_000
    for method, url in nested_targets(survey, receipt):
        response = getattr(client, method)(url, NESTED, content_type="application/json",
                                           HTTP_AUTHORIZATION=f"Token {token}")
        assert response.status_code == 400, (method, url, response.content[:200])
        assert response["Content-Type"] == "application/json", (method, url)
        assert "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/api/v1/surveys/not-a-uuid/",
                                 "/api/v1/surveys/not-a-uuid/units/",
                                 "/api/v1/no-such-operation/",
                                 "/organizer/surveys/not-a-uuid/"])
def test_an_unknown_path_asked_for_in_json_is_a_json_404(client, url):
    response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_an_unknown_page_asked_for_by_a_browser_is_the_html_404(client):
    response = client.get("/organizer/surveys/not-a-uuid/",
                          HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert response["Referrer-Policy"] == "no-referrer"


def test_the_dashboard_of_a_500_level_org_tree_renders_for_any_unit_asked_for(
        client, survey, settings, django_capture_on_commit_callbacks):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 0
    deep = "/".join(["a"] * 500)
    services.units_upsert(survey=survey, units=[{"path": deep}])
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 6, unit=deep)
    for unit in [deep, deep.rsplit("/", 1)[0], "/".join(["b"] * 500)]:
        response = client.get(f"/d/{survey.dashboard_token}/", {"unit": unit})
        assert response.status_code == 200
    assert client.get(f"/d/{survey.dashboard_token}/").status_code == 200


@pytest.mark.urls(__name__)
def test_an_unhandled_exception_is_logged_with_its_traceback_and_no_request_metadata(caplog):
    logger = logging.getLogger("django.request")
    logger.addHandler(caplog.handler)
    try:
        client = Client(raise_request_exception=False, REMOTE_ADDR="198.51.100.77",
                        HTTP_USER_AGENT="SecretAgent/1.0")
        response = client.get("/failing/SHARETOKEN123/?q=private-query",
                              HTTP_ACCEPT="application/json")
    finally:
        logger.removeHandler(caplog.handler)
    assert response.status_code == 500
    assert response.json() == {"detail": "Something went wrong."}
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    logged = logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)
    assert "Unhandled RuntimeError" in logged
    assert "Traceback (most recent call last)" in logged
    assert "failing_view" in logged
    assert not hasattr(record, "request")
    for secret in ["198.51.100.77", "SecretAgent", "private-query", "SHARETOKEN123",
                   "/failing/"]:
        assert secret not in logged
        assert secret not in json.dumps({key: str(value) for key, value in
                                         record.__dict__.items()})


def test_refusals_are_not_logged(client, caplog):
    logger = logging.getLogger("django.request")
    logger.addHandler(caplog.handler)
    try:
        client.get("/api/v1/surveys/not-a-uuid/?token=abc")
        client.post("/api/v1/s/SHARETOKEN123/reports/", {}, content_type="application/json")
    finally:
        logger.removeHandler(caplog.handler)
    assert [r for r in caplog.records if r.name == "django.request"] == []
