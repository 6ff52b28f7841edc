"""Reports reach the counted data only at publications: at scheduled slot
boundaries, at least k new reports at a time, with amends and withdrawals
carried along but never counted towards k; detection reads exactly what the
latest publication counted. Through the public API, on SQLite or PostgreSQL."""

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from reports import detection
from reports import services as report_services
from reports.models import AggregationState, DetectionRun, PublishedCell
from reports.tasks import sweep
from surveys import services
from surveys.models import HeldReport, Report, Survey
from surveys.selectors import report_answers, report_held
from tests.factories import PASSWORD, report_payload, survey_with_units

pytestmark = pytest.mark.django_db(transaction=True)

UNITS = ["Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Cloud"]


@pytest.fixture(autouse=True)
def no_daily_limit(settings):
    # Every report here comes from one test client's address.
    settings.CHORUS_SUBMISSIONS_PER_DAY = 0


@pytest.fixture
def hourly(settings):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 3600


@pytest.fixture
def k3(organizer):
    return survey_with_units(owner=organizer, min_group_size=3, paths=UNITS)


def file(api, survey, count: int, **overrides) -> list[str]:
    receipts = []
    for index in range(count):
        response = api.post(f"/api/v1/s/{survey.share_token}/reports/",
                            report_payload(unit=UNITS[index % 3], **overrides), format="json")
        assert response.status_code == 201, response.content
        receipts.append(response.json()["receipt"])
    return receipts


def published_total(survey) -> int:
    return sum(cell.reports for cell in PublishedCell.objects.filter(
        survey=survey, unit__path="Acme"))


def publications(survey) -> int:
    state = AggregationState.objects.filter(survey=survey).first()
    return state.publications if state else 0


def next_slot() -> dt.datetime:
    from surveys import slots

    return slots.slot_next(timezone.now())


# -- detection reads the latest publication ------------------------------------------------


def test_detection_runs_on_what_the_latest_publication_counted_whatever_waits(
        api, organizer_api, k3, publish_at_once):
    file(api, k3, 7)  # two publications of three, one report waiting
    assert published_total(k3) == 6

    response = organizer_api.post(f"/api/v1/surveys/{k3.id}/detections/",
                                  {"replicas": 99, "seed": 1}, format="json")

    assert response.status_code == 202, response.content
    run = DetectionRun.objects.get(job_id=response.json()["id"])
    assert detection._unpack(run.inputs)["report_units"].size == 6
    assert run.publication == publications(k3)


def test_the_automatic_run_follows_a_publication_even_with_reports_waiting(
        api, k3, publish_at_once):
    file(api, k3, 4)
    assert [str(s) for s in detection.surveys_due_for_detection()] == [str(k3.id)]
    run = detection.detection_start_if_due(survey_id=k3.id)
    assert run is not None
    assert detection.surveys_due_for_detection() == []
    file(api, k3, 2)  # the next publication makes the survey due again
    assert [str(s) for s in detection.surveys_due_for_detection()] == [str(k3.id)]


def test_detection_before_any_publication_is_refused_with_the_reason(api, organizer_api, k3,
                                                                     publish_at_once):
    file(api, k3, 2)
    response = organizer_api.post(f"/api/v1/surveys/{k3.id}/detections/", {}, format="json")
    assert response.status_code == 400
    reason = response.json()["detail"]
    assert reason.startswith("Nothing is published yet.")
    assert "at least 3 reports" in reason


def test_a_closed_survey_keeps_fewer_than_k_waiting_unpublished_and_says_so(
        api, organizer, k3, publish_at_once):
    file(api, k3, 4)
    services.survey_update(survey=k3, fields={"status": Survey.Status.CLOSED})
    sweep()
    assert published_total(k3) == 3
    browser = Client()
    browser.login(username=organizer.username, password=PASSWORD)
    page = Client().get(f"/d/{k3.dashboard_token}/").content.decode()
    assert "these are its final figures" in page
    assert "fewer than 3, that arrived after the last publication" in page
    organizer_page = browser.get(f"/organizer/surveys/{k3.id}/").content.decode()
    assert "these are its final figures" in organizer_page


# -- amends and withdrawals never count towards k -------------------------------------------


def test_changing_a_report_back_and_forth_forces_no_publication(api, k3, publish_at_once):
    [attacker, _, _] = file(api, k3, 3)
    first = publications(k3)
    file(api, k3, 1)  # the victim's report
    for unit in ["Acme/Cloud", "Acme/Retail/Marketing"] * 2:
        response = api.patch(f"/api/v1/s/{k3.share_token}/reports/{attacker}/",
                             {"unit": unit}, format="json")
        assert response.status_code == 200, response.content

    assert publications(k3) == first
    assert published_total(k3) == 3
    assert Report.objects.filter(survey=k3).count() == 3

    file(api, k3, 2)  # three new reports: the next publication carries the amends
    assert publications(k3) == first + 1
    assert published_total(k3) == 6


def test_a_withdrawal_of_a_published_report_waits_for_k_new_reports(api, k3, publish_at_once):
    receipts = file(api, k3, 3)
    for receipt in receipts:
        assert api.delete(f"/api/v1/s/{k3.share_token}/reports/{receipt}/").status_code == 204
    assert published_total(k3) == 3
    # Withdrawn is withdrawn at once for its holder.
    check = api.delete(f"/api/v1/s/{k3.share_token}/reports/{receipts[0]}/")
    assert check.status_code == 404

    file(api, k3, 3)
    assert published_total(k3) == 3  # three in, three out, in one publication
    assert Report.objects.filter(survey=k3).count() == 3


def test_a_held_report_shows_its_current_answers_to_its_holder(api, k3, hourly):
    [receipt] = file(api, k3, 1)
    path = f"/api/v1/s/{k3.share_token}/reports/{receipt}/"
    amended = api.patch(path, {"unit": "Acme/Cloud", "comment": "later"}, format="json")
    assert amended.status_code == 200
    assert amended.json()["unit"] == "Acme/Cloud"
    assert report_held(survey=k3, receipt=receipt)
    assert report_answers(survey=k3, receipt=receipt)["comment"] == "later"
    assert not Report.objects.filter(survey=k3).exists()


# -- publications at slot boundaries, dated by the slot --------------------------------------


def test_reports_arriving_within_a_slot_wait_for_its_end_and_are_dated_by_the_boundary(
        api, k3, hourly):
    file(api, k3, 5)
    sweep()
    assert publications(k3) == 0
    assert not Report.objects.filter(survey=k3).exists()

    boundary = next_slot()
    assert report_services.surveys_due_for_publication(now=boundary - dt.timedelta(seconds=1)) \
        == []
    assert report_services.surveys_due_for_publication(
        now=boundary + dt.timedelta(seconds=20)) == [k3.id]
    assert report_services.publication_maybe_publish(
        survey_id=k3.id, now=boundary + dt.timedelta(seconds=20, microseconds=123))

    state = AggregationState.objects.get(survey=k3)
    assert state.published_at == boundary
    body = api.get(f"/api/v1/d/{k3.dashboard_token}/export/").json()
    assert dt.datetime.fromisoformat(body["published_at"]) == boundary
    assert published_total(k3) == 5
    # One publication per slot, however many sweeps run in it.
    file(api, k3, 3)
    assert not report_services.publication_maybe_publish(
        survey_id=k3.id, now=boundary + dt.timedelta(seconds=50))


def test_the_organizer_sees_only_whether_enough_waits(api, organizer, k3, hourly):
    browser = Client()
    browser.login(username=organizer.username, password=PASSWORD)
    file(api, k3, 2)
    page = browser.get(f"/organizer/surveys/{k3.id}/").content.decode()
    assert "not yet (a publication needs at least 3 new reports)" in page
    file(api, k3, 5)
    page = browser.get(f"/organizer/surveys/{k3.id}/").content.decode()
    assert "enough for the next publication" in page
    assert "<dd>7</dd>" not in page
    assert next_slot().strftime("%H:%M") in page


def test_the_period_cannot_change_while_reports_are_held(api, k3, hourly):
    file(api, k3, 1)
    with pytest.raises(services.ValidationError):
        services.survey_update(survey=k3, fields={"period": Survey.Period.WEEK})


def test_a_finished_detection_is_dated_by_its_slot_on_both_clusters_endpoints(
        api, organizer_api, k3, hourly):
    file(api, k3, 3)
    report_services.publication_maybe_publish(survey_id=k3.id, force=True)
    response = organizer_api.post(f"/api/v1/surveys/{k3.id}/detections/",
                                  {"replicas": 99, "seed": 1}, format="json")
    assert response.status_code == 202, response.content
    finished = DetectionRun.objects.get(job_id=response.json()["id"]).finished
    assert finished is not None

    for url in (f"/api/v1/surveys/{k3.id}/clusters/",
                f"/api/v1/d/{k3.dashboard_token}/clusters/"):
        client = organizer_api if "/surveys/" in url else api
        released = dt.datetime.fromisoformat(client.get(url).json()["run"]["finished"])
        assert released <= finished
        assert released.minute == released.second == released.microsecond == 0


def test_sealed_held_reports_are_all_one_length_whatever_their_answers(api, k3, hourly):
    # A blob's length would give its comment's length, which the published report
    # shows in clear, and so tie a held row's arrival to one published report.
    file(api, k3, 1)
    file(api, k3, 1, comment="x" * 2000)
    file(api, k3, 1, comment="\u00e9\u4e2d" * 1000, signals=[])
    receipt = file(api, k3, 1, comment="short")[0]
    assert api.delete(f"/api/v1/s/{k3.share_token}/reports/{receipt}/").status_code == 204
    lengths = {len(bytes(sealed)) for sealed in
               HeldReport.objects.filter(survey=k3).values_list("sealed", flat=True)}
    assert len(lengths) == 1
