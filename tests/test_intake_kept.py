"""Intake keeps each open link survey per process for a while; a stale copy
must never let a report through that the survey as stored would refuse."""

import datetime as dt

import pytest
from django.utils import timezone

from surveys import intake, services
from surveys.models import Report, Survey
from tests.factories import invite_token, publish, report_payload, stored_count

pytestmark = pytest.mark.django_db


def share_path(token: str) -> str:
    return f"/api/v1/s/{token}/reports/"


def post(api, token: str, **overrides):
    return api.post(share_path(token), report_payload(**overrides), format="json")


def stored(survey) -> int:
    return stored_count(survey)


@pytest.fixture
def kept(api, survey):
    """The survey, with intake holding a copy of it (a filed report reads it)."""
    assert post(api, survey.share_token).status_code == 201
    assert intake.survey_kept(token=survey.share_token).id == survey.id
    return survey


def test_a_survey_closed_after_intake_kept_it_takes_no_report(api, organizer_api, kept):
    closed = organizer_api.patch(f"/api/v1/surveys/{kept.id}/", {"status": "closed"},
                                 format="json")
    assert closed.status_code == 200
    before = stored(kept)
    response = post(api, kept.share_token)
    assert response.status_code == 410
    assert "closed" in response.json()["detail"]
    assert stored(kept) == before


def test_a_survey_past_its_closing_day_after_intake_kept_it_takes_no_report(api, kept):
    # Written around the service, which refuses dates already past: the
    # same as the closing day ending while the copy is kept.
    Survey.objects.filter(id=kept.id).update(closes_on=timezone.localdate() - dt.timedelta(1))
    before = stored(kept)
    assert post(api, kept.share_token).status_code == 410
    assert stored(kept) == before


def test_a_relinked_survey_takes_no_report_through_its_old_link(api, kept):
    old_token = kept.share_token
    Survey.objects.filter(id=kept.id).update(share_token="a-new-share-token-" + "x" * 30)
    before = stored(kept)
    assert post(api, old_token).status_code == 404
    assert stored(kept) == before
    assert post(api, "a-new-share-token-" + "x" * 30).status_code == 201


def test_a_survey_made_invite_only_after_intake_kept_it_asks_for_a_token(api, kept):
    services.survey_update(survey=kept, fields={"access": Survey.Access.INVITE})
    before = stored(kept)
    response = post(api, kept.share_token)
    assert response.status_code == 400
    assert "token" in response.json()
    assert stored(kept) == before
    code = services.invites_create(survey=kept, count=1)[0]
    membership_token = invite_token(api, kept, code)
    response = api.post(share_path(kept.share_token), report_payload(token=membership_token),
                        format="json")
    assert response.status_code == 201


def test_a_changed_period_is_used_for_the_next_report(api, organizer):
    # The period may change until the first unit is loaded.
    survey = services.survey_create(owner=organizer, title="Draft", min_group_size=3)
    # A rejected body still reads the survey, so intake keeps it with no report stored.
    assert post(api, survey.share_token).status_code == 400
    services.survey_update(survey=survey, fields={"period": Survey.Period.WEEK})
    services.units_upsert(survey=survey, units=[{"path": "Acme/Retail/Marketing"}])
    assert post(api, survey.share_token, period="2026-01-14").status_code == 201
    # 2026-01-14 is a Wednesday: a weekly survey files it under Monday the 12th.
    publish(survey)
    assert list(Report.objects.filter(survey=survey).values_list("period_start", flat=True)) == [
        dt.date(2026, 1, 12)]


def test_a_report_refused_because_the_kept_survey_closed_costs_no_attempt(
        api, survey, settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 1
    # Rejected input costs nothing, and leaves the survey kept.
    assert post(api, survey.share_token, unit="Nowhere").status_code == 400
    Survey.objects.filter(id=survey.id).update(status=Survey.Status.CLOSED)
    assert post(api, survey.share_token).status_code == 410
    Survey.objects.filter(id=survey.id).update(status=Survey.Status.OPEN)
    assert post(api, survey.share_token).status_code == 201
    assert post(api, survey.share_token).status_code == 429


def test_the_report_service_refuses_a_stale_copy_of_a_closed_survey(survey):
    stale = Survey.objects.get(id=survey.id)
    Survey.objects.filter(id=survey.id).update(status=Survey.Status.CLOSED)
    draft = services.ReportDraft(unit="Acme/Cloud", period=dt.date(2026, 1, 5),
                                 signals=("abrupt_reversal",))
    with pytest.raises(intake.SurveyChanged):
        intake.report_create(survey=stale, draft=draft)
    assert stored(survey) == 0
