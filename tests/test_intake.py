import datetime as dt
import json

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.utils import timezone

from surveys import services
from surveys.models import Survey
from tests.factories import invite_token, report_payload, survey_with_units

pytestmark = pytest.mark.django_db


def share_path(survey) -> str:
    return f"/api/v1/s/{survey.share_token}/reports/"


def form_data(**overrides) -> dict:
    data = {"unit": "Acme/Retail/Marketing", "period": "2026-01-01",
            "signals": ["abrupt_reversal"]}
    data.update(overrides)
    return data


def close_after(survey, day: dt.date) -> None:
    # Written around the service, which refuses dates already past.
    Survey.objects.filter(id=survey.id).update(closes_on=day)
    survey.refresh_from_db()


def test_a_survey_takes_reports_until_the_end_of_its_closing_day(api, client, survey):
    close_after(survey, timezone.localdate())
    assert api.post(share_path(survey), report_payload(), format="json").status_code == 201
    assert client.post(f"/s/{survey.share_token}/", form_data()).status_code == 201


def test_after_its_closing_date_a_survey_answers_410_on_api_and_form(api, client, survey):
    close_after(survey, timezone.localdate() - dt.timedelta(days=1))
    response = api.post(share_path(survey), report_payload(), format="json")
    assert response.status_code == 410
    assert "closed" in response.json()["detail"]
    assert client.get(f"/s/{survey.share_token}/").status_code == 410
    assert client.post(f"/s/{survey.share_token}/", form_data()).status_code == 410


def test_organizer_sets_shows_and_clears_the_closing_date(organizer_api):
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    created = organizer_api.post("/api/v1/surveys/", {"title": "Q1", "closes_on": tomorrow},
                                 format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["closes_on"] == tomorrow
    assert body["accepting_reports"] is True
    url = f"/api/v1/surveys/{body['id']}/"
    cleared = organizer_api.patch(url, {"closes_on": None}, format="json")
    assert cleared.json()["closes_on"] is None
    closed = organizer_api.patch(url, {"status": "closed"}, format="json")
    assert closed.json()["accepting_reports"] is False


def test_access_mode_is_set_on_create_and_update(organizer_api):
    created = organizer_api.post("/api/v1/surveys/", {"title": "Q1", "access": "invite"},
                                 format="json").json()
    assert created["access"] == "invite"
    updated = organizer_api.patch(f"/api/v1/surveys/{created['id']}/", {"access": "link"},
                                  format="json")
    assert updated.json()["access"] == "link"


# ---- Bad input: every case answers 4xx with a message and writes nothing. ----

def row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


class Scene:
    """What the bad requests aim at, built before the row counts are taken."""

    def __init__(self, organizer, organizer_api, api, survey):
        self.organizer_api = organizer_api
        self.api = api
        self.form = Client()
        self.survey = survey
        self.invite = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing"])
        services.survey_update(survey=self.invite, fields={"access": Survey.Access.INVITE})
        self.invite_codes = services.invites_create(survey=self.invite, count=2)
        self.invite_token = invite_token(api, self.invite, self.invite_codes[0])
        self.closed = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing"])
        services.survey_update(survey=self.closed, fields={"status": Survey.Status.CLOSED})

    def report(self, payload, survey=None):
        return self.api.post(share_path(survey or self.survey), payload, format="json")

    def buy_token(self, invite_code):
        return self.api.post(f"/api/v1/s/{self.invite.share_token}/tokens/",
                             {"invite_code": invite_code, "token_request": "A" * 346},
                             format="json")

    def raw_report(self, body: str, content_type="application/json"):
        return self.api.generic("POST", share_path(self.survey), body, content_type=content_type)

    def form_post(self, data, survey=None):
        return self.form.post(f"/s/{(survey or self.survey).share_token}/", data)

    def create_survey(self, payload):
        return self.organizer_api.post("/api/v1/surveys/", payload, format="json")

    def update_survey(self, payload):
        return self.organizer_api.patch(f"/api/v1/surveys/{self.survey.id}/", payload,
                                        format="json")

    def units_csv(self, text: bytes):
        return self.organizer_api.generic("POST", f"/api/v1/surveys/{self.survey.id}/units/csv/",
                                          text, content_type="text/csv")

    def invites(self, payload):
        return self.organizer_api.post(f"/api/v1/surveys/{self.invite.id}/invites/", payload,
                                       format="json")


def future() -> str:
    return (timezone.localdate() + dt.timedelta(days=40)).isoformat()


def past() -> str:
    return (timezone.localdate() - dt.timedelta(days=1)).isoformat()


# (id, request, status, text the answer must contain)
BAD_INPUTS = [
    ("api-malformed-json", lambda s: s.raw_report("{not json"), 400, "JSON"),
    ("api-body-is-a-list", lambda s: s.raw_report(json.dumps([report_payload()])), 400,
     "dictionary"),
    ("api-form-encoded-garbage", lambda s: s.raw_report("a=b", "text/plain"), 415, "text/plain"),
    ("api-signals-wrong-type", lambda s: s.report(report_payload(signals="abrupt_reversal")),
     400, "signals"),
    ("api-period-wrong-type", lambda s: s.report(report_payload(period=20260114)), 400,
     "period"),
    ("api-unit-wrong-type", lambda s: s.report(report_payload(unit={"path": "Acme"})), 400,
     "unit"),
    ("api-unknown-unit", lambda s: s.report(report_payload(unit="Acme/Nowhere")), 400,
     "Pick a unit"),
    ("api-unknown-signal", lambda s: s.report(report_payload(signals=["made_up"])), 400,
     "Unknown signal"),
    ("api-unknown-outcome", lambda s: s.report(report_payload(outcome="promoted")), 400,
     "Unknown outcome"),
    ("api-future-period", lambda s: s.report(report_payload(period=future())), 400,
     "study window"),
    ("api-malformed-period", lambda s: s.report(report_payload(period="2026-13-45")), 400,
     "period"),
    ("api-missing-unit", lambda s: s.report({"period": "2026-01-14", "signals": []}), 400,
     "unit"),
    ("api-missing-everything", lambda s: s.report({}), 400, "required"),
    ("api-oversized-comment", lambda s: s.report(report_payload(comment="x" * 2001)), 400,
     "comment"),
    ("api-oversized-body", lambda s: s.report(report_payload(comment="x" * 40_000)), 413,
     "too large"),
    ("api-too-many-signals", lambda s: s.report(report_payload(signals=["abrupt_reversal"] * 200)),
     400, "signals"),
    ("api-missing-token", lambda s: s.report(report_payload(), s.invite), 400,
     "bought with the invite code"),
    ("api-forged-token", lambda s: s.report(report_payload(token="A" * 400), s.invite), 400,
     "not valid for this survey"),
    ("api-wrong-invite-code", lambda s: s.buy_token("ZZZZ-ZZZZ-ZZZZ-ZZZZ"), 400,
     "already used"),
    ("api-invite-code-wrong-type", lambda s: s.buy_token(["AAAA"]), 400, "invite_code"),
    ("api-valid-token-bad-unit",
     lambda s: s.report(report_payload(unit="Nope", token=s.invite_token), s.invite),
     400, "Pick a unit"),
    ("api-closed-survey", lambda s: s.report(report_payload(), s.closed), 410, "closed"),
    ("api-unknown-token",
     lambda s: s.api.post("/api/v1/s/no-such-token/reports/", report_payload(), format="json"),
     404, "Not found"),
    ("api-unknown-receipt",
     lambda s: s.api.delete(f"{share_path(s.survey)}no-such-receipt/"), 404, "Not found"),
    ("csv-bad-headcount", lambda s: s.units_csv(b"Beta,3\nGamma,lots\n"), 400, "Line 2"),
    ("csv-empty-path", lambda s: s.units_csv(b"path,headcount\nBeta,1\n ,2\n"), 400, "Line 3"),
    ("csv-not-utf8", lambda s: s.units_csv(b"Beta\xff,1\n"), 400, "UTF-8"),
    ("csv-too-many-columns", lambda s: s.units_csv(b"Beta,1,2,3\n"), 400, "columns"),
    ("invites-zero", lambda s: s.invites({"count": 0}), 400, "count"),
    ("invites-too-many", lambda s: s.invites({"count": 5001}), 400, "count"),
    ("invites-not-a-number", lambda s: s.invites({"count": "lots"}), 400, "count"),
    ("invites-missing-count", lambda s: s.invites({}), 400, "count"),
    ("create-min-group-size-2", lambda s: s.create_survey({"title": "Q", "min_group_size": 2}),
     400, "min_group_size"),
    ("update-min-group-size-2", lambda s: s.update_survey({"min_group_size": 2}), 400,
     "min_group_size"),
    ("create-unknown-access", lambda s: s.create_survey({"title": "Q", "access": "secret"}),
     400, "access"),
    ("create-missing-title", lambda s: s.create_survey({"period": "week"}), 400, "title"),
    ("create-malformed-closing-date",
     lambda s: s.create_survey({"title": "Q", "closes_on": "next friday"}), 400, "closes_on"),
    ("update-past-closing-date", lambda s: s.update_survey({"closes_on": past()}), 400,
     "cannot be in the past"),
    ("units-bad-path",
     lambda s: s.organizer_api.put(f"/api/v1/surveys/{s.survey.id}/units/",
                                   {"units": [{"path": "Acme//Retail"}]}, format="json"),
     400, "non-empty names"),
    ("form-unknown-unit", lambda s: s.form_post(form_data(unit="Acme/Nowhere")), 400,
     "Pick a unit"),
    ("form-period-not-offered", lambda s: s.form_post(form_data(period="1999-01-01")), 400,
     "Select a valid choice"),
    ("form-unknown-signal", lambda s: s.form_post(form_data(signals=["made_up"])), 400,
     "Select a valid choice"),
    ("form-oversized-comment", lambda s: s.form_post(form_data(comment="x" * 2001)), 400,
     "at most 2000 characters"),
    ("form-missing-unit", lambda s: s.form_post(form_data(unit="")), 400, "unit"),
    ("form-forged-token", lambda s: s.form_post(form_data(token="A" * 400), s.invite), 400,
     "not valid for this survey"),
    ("form-missing-token", lambda s: s.form_post(form_data(), s.invite), 400,
     "bought with the invite code"),
    ("form-closed-survey", lambda s: s.form_post(form_data(), s.closed), 410, "closed"),
    ("form-unknown-token", lambda s: s.form.post("/s/no-such-token/", form_data()), 404, ""),
]


@pytest.mark.parametrize(("send", "status", "says"), [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_answers_4xx_with_a_message_and_changes_nothing(
        organizer, organizer_api, api, survey, send, status, says):
    scene = Scene(organizer, organizer_api, api, survey)
    before = row_counts()
    response = send(scene)
    assert response.status_code == status
    assert says in response.content.decode()
    assert row_counts() == before



def test_a_report_to_a_warm_survey_costs_a_pinned_number_of_statements(survey,
                                                                       django_assert_num_queries):
    """With intake's caches warm a report costs the check that the survey is still open as
    it was read and the insert of its sealed held report: on PostgreSQL one statement in
    autocommit (INSERT ... SELECT from a guard), on SQLite the two inside the transaction
    that takes its write lock first (savepoints inside a test's transaction). A new
    statement on the hot path shows up here."""
    client = Client()
    path = share_path(survey)
    first = client.post(path, json.dumps(report_payload()), content_type="application/json")
    assert first.status_code == 201
    with django_assert_num_queries(WARM_INTAKE_STATEMENTS[connection.vendor]):
        second = client.post(path, json.dumps(report_payload()),
                             content_type="application/json")
    assert second.status_code == 201


WARM_INTAKE_STATEMENTS = {"postgresql": 1, "sqlite": 4}
