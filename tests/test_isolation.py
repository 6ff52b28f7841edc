"""One organizer can neither read nor change another organizer's surveys,
through any operation of the OpenAPI schema or any organizer page.

The operations come from the generated schema, not from a list kept by hand:
an operation that names an object by a parameter this file does not know, or
a new collection or public operation, fails the classification test until it
is covered here.
"""

import itertools
import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from reports import jobs
from reports.models import Cell, Job
from surveys import services
from surveys.models import InviteCode, OrgUnit, Report, Survey
from tests.factories import OrganizerFactory, file_reports, survey_with_units

pytestmark = pytest.mark.django_db

# Path parameters that name an organizer's object: another organizer gets 404.
ORGANIZER_IDS = {"survey_id", "job_id"}
# Path parameters that are capabilities in themselves (share link, dashboard
# link, receipt): whoever holds one may use it, so they need no owner.
CAPABILITIES = {"share_token", "dashboard_token", "receipt"}
# Query parameters that select rows of what the caller may read anyway (the aggregates
# filters): they grant nothing, so they need no owner of their own.
FILTERS = {"unit", "from", "to"}
# Operations without a path id. The organizer collection is covered below by
# test_survey_collection_holds_only_the_callers_own; the rest need no account.
COLLECTIONS = {("GET", "/api/v1/surveys/"), ("POST", "/api/v1/surveys/")}
PUBLIC = {("POST", "/api/v1/auth/token/"), ("GET", "/api/v1/signals/")}

# A body each write would accept on the caller's own survey, so that a refusal
# is about ownership and not about the input.
VALID_BODIES = {
    ("PATCH", "/api/v1/surveys/{survey_id}/"): {"title": "Taken over", "status": "closed"},
    ("PUT", "/api/v1/surveys/{survey_id}/units/"): {"units": [{"path": "Intruder/Unit",
                                                               "headcount": 3}]},
    ("POST", "/api/v1/surveys/{survey_id}/units/csv/"): ("text/csv", "Intruder/Unit,3\n"),
    ("POST", "/api/v1/surveys/{survey_id}/invites/"): {"count": 2},
    ("POST", "/api/v1/surveys/{survey_id}/detections/"): {"replicas": 99},
}

SECRET_TITLE = "Bravo confidential reorg"
SECRET_UNITS = ["Bravo/Skunkworks", "Bravo/Skunkworks/Night shift", "Bravo/Legal"]


def openapi_operations() -> list[tuple[str, str, dict]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [(method.upper(), path, operation)
            for path, operations in schema["paths"].items()
            for method, operation in operations.items()]


def parameters(operation: dict, location: str) -> list[str]:
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == location]


def organizer_scoped() -> list[tuple[str, str, dict]]:
    return [op for op in openapi_operations() if ORGANIZER_IDS & set(parameters(op[2], "path"))]


@pytest.fixture
def tenants(publish_at_once, django_capture_on_commit_callbacks):
    """Organizer A, and organizer B with a survey that has something of each
    kind: units, published reports, invites and a job."""
    alpha, bravo = OrganizerFactory(), OrganizerFactory()
    own = survey_with_units(owner=alpha, paths=["Alpha/Team"], title="Alpha survey")
    theirs = survey_with_units(owner=bravo, paths=SECRET_UNITS, title=SECRET_TITLE)
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(theirs, 4, unit="Bravo/Skunkworks/Night shift")
        file_reports(own, 4, unit="Alpha/Team")
    services.invites_create(survey=theirs, count=3)
    with django_capture_on_commit_callbacks(execute=True):
        theirs_job = jobs.rebuild_start(survey=theirs)
    own_job = jobs.rebuild_start(survey=own)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alpha).key}")
    return {"client": client, "alpha": alpha, "own": own, "theirs": theirs,
            "ids": {"survey_id": (own.id, theirs.id), "job_id": (own_job.id, theirs_job.id)}}


def secrets_of(survey: Survey, job_ids) -> list[str]:
    return [SECRET_TITLE, *SECRET_UNITS, survey.share_token, survey.dashboard_token,
            str(survey.id), *(str(job_id) for job_id in job_ids)]


def snapshot(survey: Survey) -> dict:
    survey.refresh_from_db()
    return {
        "survey": {field: getattr(survey, field) for field in (
            "title", "status", "access", "min_group_size", "period", "closes_on",
            "share_token", "dashboard_token")},
        "units": sorted(OrgUnit.objects.filter(survey=survey).values_list("path", "headcount")),
        "reports": Report.objects.filter(survey=survey).count(),
        "invites": InviteCode.objects.filter(survey=survey).count(),
        "jobs": sorted(str(job) for job in Job.objects.filter(survey=survey)
                       .values_list("id", "status")),
        "cells": sorted(Cell.objects.filter(survey=survey).values_list("unit_id", "period_start",
                                                                      "reports")),
    }


def call(client, method: str, path: str, body):
    if body is None:
        return client.generic(method, path)
    if isinstance(body, tuple):
        content_type, text = body
        return client.generic(method, path, text, content_type=content_type)
    return client.generic(method, path, json.dumps(body), content_type="application/json")


def test_every_operation_in_the_schema_is_classified():
    unclassified = []
    for method, path, operation in openapi_operations():
        names = set(parameters(operation, "path")) | set(parameters(operation, "query"))
        unknown = names - ORGANIZER_IDS - CAPABILITIES - FILTERS
        if unknown:
            unclassified.append(f"{method} {path}: unknown parameter(s) {sorted(unknown)}")
        elif not names and (method, path) not in COLLECTIONS | PUBLIC:
            unclassified.append(f"{method} {path}: no id, and neither a collection nor public")
        if ORGANIZER_IDS & names and "requestBody" in operation and (
                (method, path) not in VALID_BODIES):
            unclassified.append(f"{method} {path}: give it a valid body in VALID_BODIES")
    assert not unclassified, "cover these in tests/test_isolation.py:\n" + "\n".join(unclassified)


def test_the_schema_has_the_organizer_operations_this_file_expects():
    # Guards the derivation itself: an empty list would pass every test below.
    scoped = {(method, path) for method, path, _ in organizer_scoped()}
    assert set(VALID_BODIES) <= scoped
    assert ("GET", "/api/v1/surveys/{survey_id}/jobs/{job_id}/") in scoped
    assert len(scoped) >= 13


def test_another_organizers_ids_answer_404_on_every_operation_and_leak_nothing(tenants):
    client, theirs = tenants["client"], tenants["theirs"]
    before = snapshot(theirs)
    forbidden = secrets_of(theirs, [tenants["ids"]["job_id"][1]])
    tried = []
    for method, path, operation in organizer_scoped():
        names = [name for name in parameters(operation, "path") if name in ORGANIZER_IDS]
        query = [name for name in parameters(operation, "query") if name in ORGANIZER_IDS]
        # Every mix of own and foreign ids in which at least one is foreign.
        for choice in itertools.product((0, 1), repeat=len(names) + len(query)):
            if not any(choice):
                continue
            values = {name: tenants["ids"][name][pick]
                      for name, pick in zip(names + query, choice, strict=True)}
            url = path.format(**{name: values[name] for name in names})
            if query:
                url += "?" + "&".join(f"{name}={values[name]}" for name in query)
            response = call(client, method, url, VALID_BODIES.get((method, path)))
            tried.append(f"{method} {url}")
            assert response.status_code in (403, 404), (method, url, response.status_code)
            leaked = [secret for secret in forbidden if secret in response.text]
            assert not leaked, (method, url, leaked)
    assert len(tried) >= len(organizer_scoped())
    assert snapshot(theirs) == before


def test_the_same_operations_succeed_on_the_callers_own_survey(tenants):
    # Without this, a broken route answering 404 to everyone would pass the test above.
    client, own = tenants["client"], tenants["own"]
    for method, path, operation in organizer_scoped():
        names = parameters(operation, "path")
        url = path.format(**{name: tenants["ids"][name][0] for name in names})
        response = call(client, method, url, VALID_BODIES.get((method, path)))
        assert 200 <= response.status_code < 300, (method, url, response.status_code,
                                                   response.content[:300])
    assert own.id


def test_survey_collection_holds_only_the_callers_own(tenants):
    client, theirs = tenants["client"], tenants["theirs"]
    listed = client.get("/api/v1/surveys/")
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == [str(tenants["own"].id)]
    assert not [secret for secret in secrets_of(theirs, []) if secret in listed.text]
    created = client.post("/api/v1/surveys/", {"title": "Another"}, format="json")
    assert created.status_code == 201
    assert Survey.objects.get(id=created.json()["id"]).owner == tenants["alpha"]


def organizer_page_patterns(resolver=None, prefix="") -> list[str]:
    """Every non-API URL pattern that takes a survey_id, from the URLconf."""
    found = []
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += organizer_page_patterns(entry, route)
        elif isinstance(entry, URLPattern) and "<uuid:survey_id>" in route and (
                not route.startswith("api/")):
            found.append("/" + route)
    return found


def test_organizer_pages_answer_404_for_another_organizers_survey(client, tenants):
    theirs = tenants["theirs"]
    client.force_login(tenants["alpha"])
    before = snapshot(theirs)
    pages = organizer_page_patterns()
    assert len(pages) >= 5
    forbidden = secrets_of(theirs, [])
    for page in pages:
        url = page.replace("<uuid:survey_id>", str(theirs.id))
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (403, 404, 405), (method, url, response.status_code)
            body = response.content.decode(errors="replace")
            assert not [secret for secret in forbidden if secret in body], (method, url)
    assert snapshot(theirs) == before
