"""Every operation in the OpenAPI schema, fuzzed by schemathesis against the
in-process WSGI app with every check it has: no 500s, and every answer
(status, headers, body) is one the schema declares."""

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from reports import jobs
from server.wsgi import application
from tests.factories import OrganizerFactory, file_reports, survey_with_units

# 413 rejects a body as surely as 400 does. Schema-valid input these operations
# refuse with 400 by the stored data or the date it meets, which a schema cannot
# express: a unit missing from the org tree or a future period (reports), a
# closing date already past (surveys), a malformed unit path (units), reports
# not yet published (detections), an address at another domain (verification), a code
# that is not the one mailed (tokens).
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428",
                     "429"]

[[operations]]
include-name = "POST /api/v1/surveys/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]

[[operations]]
include-name = "POST /api/v1/s/{share_token}/reports/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "410", "429"]

[[operations]]
include-name = "PATCH /api/v1/surveys/{survey_id}/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]

[[operations]]
include-name = "PUT /api/v1/surveys/{survey_id}/units/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]

[[operations]]
include-name = "POST /api/v1/surveys/{survey_id}/units/csv/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]

[[operations]]
include-name = "POST /api/v1/s/{share_token}/verification/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "410", "429"]

[[operations]]
include-name = "POST /api/v1/s/{share_token}/tokens/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "410"]

[[operations]]
include-name = "POST /api/v1/surveys/{survey_id}/detections/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]
"""

load_all_checks()
ALL_CHECKS = CHECKS.get_all()

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application,
                                        config=SchemathesisConfig.from_str(CONFIG))


@pytest.fixture
def connection_kept():
    """Keeps the test's database connection across requests, as Django's test
    client does: the WSGI handler would close it at the end of each request,
    and with it the transaction that holds the seeded data."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(db, connection_kept, settings, django_capture_on_commit_callbacks):
    """An organizer whose survey has units, published reports and a job, so
    that organizer operations answer with real figures rather than 404s."""
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 0
    organizer = OrganizerFactory()
    survey = survey_with_units(owner=organizer, min_group_size=3,
                               paths=["Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Cloud"])
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 4)
        file_reports(survey, 3, unit="Acme/Cloud",
                     signals=("abrupt_reversal", "prior_positive_standing"))
    job = jobs.rebuild_start(survey=survey)
    return {
        "token": Token.objects.create(user=organizer).key,
        "path": {"survey_id": str(survey.id), "job_id": str(job.id),
                 "share_token": survey.share_token, "dashboard_token": survey.dashboard_token},
    }


@pytest.mark.slow
@pytest.mark.parametrize("ids", ["real", "random"])
@schema.parametrize()
@settings(max_examples=30, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_schema(case, seeded, ids):
    """With the seeded objects' ids, and with the ids schemathesis makes up
    (which must be answered with the documented 404, as JSON)."""
    if ids == "real":
        for name, value in seeded["path"].items():
            if name in (case.path_parameters or {}):
                case.path_parameters[name] = value
    case.call_and_validate(headers={"Authorization": f"Token {seeded['token']}"},
                           checks=ALL_CHECKS)


def test_list_fields_that_refuse_an_empty_list_say_min_items_in_the_schema():
    from drf_spectacular.generators import SchemaGenerator

    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert schemas["UnitsApiReplaceInputRequest"]["properties"]["units"]["minItems"] == 1
    assert schemas["DetectionsApiInputRequest"]["properties"]["models"]["minItems"] == 1
    # An empty list of signals is a report with none seen: allowed, so no minItems.
    assert "minItems" not in schemas["ReportCreateApiInputRequest"]["properties"]["signals"]


def test_text_fields_say_in_the_schema_what_the_api_refuses():
    import re

    from drf_spectacular.generators import SchemaGenerator

    schemas = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    username = re.compile(schemas["AuthTokenApiInputRequest"]["properties"]["username"][
        "pattern"])
    title = re.compile(schemas["SurveyCollectionApiCreateInputRequest"]["properties"]["title"][
        "pattern"])
    comment = re.compile(schemas["PatchedReportAmendApiAmendInputRequest"]["properties"]["comment"][
        "oneOf"][0]["pattern"])
    # "\x1e" is white space to Python: trimmed to "" it is refused as blank.
    for blank in ("\x1e", " ", ""):
        assert not username.search(blank)
        assert not title.search(blank)
    assert username.search(" ann ")
    # Every text refuses NUL; a comment may be empty.
    for pattern in (username, title, comment):
        assert not pattern.search("a\x00b")
    assert comment.search("")
