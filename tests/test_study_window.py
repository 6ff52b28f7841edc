"""A report names a period inside its survey's study window: from the period holding
the organizer's study start to the current period, in the API, the form, amends and
bulk loads alike."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from surveys import services
from surveys import services as survey_services
from surveys.forms import ReportForm
from surveys.models import STUDY_WINDOW_MAX_YEARS, Report, Survey, years_before
from tests.factories import publish, report_payload, stored_count

pytestmark = pytest.mark.django_db

UNIT = "Acme/Retail/Marketing"


@pytest.fixture(autouse=True)
def no_daily_limit(settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 0


def window_survey(owner, *, period="week", study_starts_on=None) -> Survey:
    # The study start is set before the units are loaded: from then on it only moves earlier.
    survey = services.survey_create(owner=owner, title="Window", period=period,
                                    min_group_size=3, study_starts_on=study_starts_on)
    services.units_upsert(survey=survey, units=[{"path": UNIT}])
    return survey


def post_report(api, survey, day):
    return api.post(f"/api/v1/s/{survey.share_token}/reports/",
                    report_payload(unit=UNIT, period=str(day)), format="json")


def current_period_last_day(survey) -> dt.date:
    start = services.period_start_for(period=survey.period, day=timezone.localdate())
    return services.next_period_start(period=survey.period, start=start) - dt.timedelta(days=1)


def test_the_year_one_on_a_weekly_survey_is_refused_naming_the_allowed_range(api, organizer):
    survey = window_survey(organizer)
    response = post_report(api, survey, "0001-01-01")
    assert response.status_code == 400
    first, last = services.report_period_range(survey=survey, today=timezone.localdate())
    message = response.json()["period"][0]
    assert first.isoformat() in message
    assert last.isoformat() in message
    assert stored_count(survey) == 0


@pytest.mark.parametrize("period", ["week", "month"])
def test_a_later_day_of_the_current_period_is_taken_and_the_next_period_is_not(
        api, organizer, period):
    survey = window_survey(organizer, period=period)
    last = current_period_last_day(survey)
    assert post_report(api, survey, last).status_code == 201
    response = post_report(api, survey, last + dt.timedelta(days=1))
    assert response.status_code == 400
    assert last.isoformat() in response.json()["period"][0]
    assert stored_count(survey) == 1


def test_the_organizers_study_start_is_the_earliest_period(api, organizer):
    today = timezone.localdate()
    survey = window_survey(organizer, period="month",
                           study_starts_on=today - dt.timedelta(days=100))
    first = services.period_start_for(period="month", day=survey.study_starts_on)
    assert post_report(api, survey, first).status_code == 201
    assert post_report(api, survey, first - dt.timedelta(days=1)).status_code == 400


def test_an_amend_cannot_move_a_report_out_of_the_window(api, organizer):
    survey = window_survey(organizer)
    receipt = post_report(api, survey, timezone.localdate()).json()["receipt"]
    response = api.patch(f"/api/v1/s/{survey.share_token}/reports/{receipt}/",
                         {"period": "0001-01-01"}, format="json")
    assert response.status_code == 400
    assert "study window" in response.json()["period"][0]
    publish(survey)
    assert Report.objects.get().period_start == services.period_start_for(
        period="week", day=timezone.localdate())


def test_the_amend_page_refuses_a_period_out_of_the_window(client, api, organizer):
    survey = window_survey(organizer)
    receipt = post_report(api, survey, timezone.localdate()).json()["receipt"]
    response = client.post(f"/s/{survey.share_token}/amend/", {
        "step": "save", "receipt": receipt, "unit": UNIT, "period": "0001-01-01",
        "signals": ["abrupt_reversal"]})
    assert response.status_code == 400
    assert "study window" in response.content.decode()
    publish(survey)
    assert Report.objects.get().period_start > dt.date(2000, 1, 1)


def test_the_form_offers_no_period_before_the_study_start(organizer):
    today = timezone.localdate()
    survey = window_survey(organizer, period="month",
                           study_starts_on=today - dt.timedelta(days=40))
    offered = [value for value, _label in ReportForm(survey=survey, today=today)
               .fields["period"].choices if value]
    first, _last = services.report_period_range(survey=survey, today=today)
    assert min(dt.date.fromisoformat(value) for value in offered) == first
    assert len(offered) <= 3


def test_a_bulk_load_refuses_rows_out_of_the_window(organizer):
    survey = window_survey(organizer)
    with pytest.raises(ValidationError) as refused:
        survey_services.reports_bulk_create(survey=survey, rows=[
            (UNIT, timezone.localdate(), ("abrupt_reversal",), ""),
            (UNIT, dt.date(1, 1, 1), ("abrupt_reversal",), "")])
    assert list(refused.value.message_dict) == ["reports[1].period"]
    assert not Report.objects.exists()


# The organizer's side


def test_a_new_survey_starts_its_window_three_years_back_unless_told(organizer_api):
    today = timezone.localdate()
    body = organizer_api.post("/api/v1/surveys/", {"title": "Q"}, format="json").json()
    assert body["study_starts_on"] == years_before(today, 3).isoformat()
    chosen = (today - dt.timedelta(days=30)).isoformat()
    body = organizer_api.post("/api/v1/surveys/", {"title": "Q", "study_starts_on": chosen},
                              format="json").json()
    assert body["study_starts_on"] == chosen


@pytest.mark.parametrize(("day", "words"), [
    (lambda today: today + dt.timedelta(days=1), "future"),
    (lambda today: years_before(today, STUDY_WINDOW_MAX_YEARS) - dt.timedelta(days=1),
     f"{STUDY_WINDOW_MAX_YEARS} years"),
])
def test_a_study_start_in_the_future_or_too_far_back_is_refused(organizer_api, day, words):
    value = day(timezone.localdate()).isoformat()
    response = organizer_api.post("/api/v1/surveys/", {"title": "Q", "study_starts_on": value},
                                  format="json")
    assert response.status_code == 400
    assert words in response.json()["study_starts_on"][0]
    assert not Survey.objects.exists()


def test_once_units_are_loaded_the_study_start_only_moves_earlier(api, organizer, organizer_api):
    today = timezone.localdate()
    survey = window_survey(organizer, study_starts_on=today - dt.timedelta(days=200))
    assert post_report(api, survey, today).status_code == 201
    path = f"/api/v1/surveys/{survey.id}/"
    later = (today - dt.timedelta(days=100)).isoformat()
    response = organizer_api.patch(path, {"study_starts_on": later}, format="json")
    assert response.status_code == 400
    assert "only move earlier" in response.json()["study_starts_on"][0]
    earlier = (today - dt.timedelta(days=300)).isoformat()
    response = organizer_api.patch(path, {"study_starts_on": earlier}, format="json")
    assert response.status_code == 200
    assert response.json()["study_starts_on"] == earlier
