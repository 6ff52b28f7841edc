"""Detection's size is bounded: a survey beyond MAX_DETECTION_CELLS units x periods, or
reports spanning more than the longest study window, end the job failed with a message
before any array is built; the request that started it still answers 202."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from reports import detection, jobs, synthetic
from reports.models import DetectionRun
from reports.services import cells_rebuild, publication_maybe_publish
from surveys import services
from surveys import services as survey_services
from surveys.models import STUDY_WINDOW_MAX_YEARS, OrgUnit, Report, years_before

pytestmark = pytest.mark.django_db


def published(survey) -> None:
    cells_rebuild(survey_id=survey.id)
    publication_maybe_publish(survey_id=survey.id, force=True)


def start(organizer_api, survey, capture) -> dict:
    with capture(execute=True):
        response = organizer_api.post(f"/api/v1/surveys/{survey.id}/detections/",
                                      {"replicas": 99, "seed": 1}, format="json")
    assert response.status_code == 202
    return organizer_api.get(
        f"/api/v1/surveys/{survey.id}/jobs/{response.json()['id']}/").json()


def test_a_survey_beyond_the_size_limit_fails_its_job_with_the_limit_named(
        organizer, organizer_api, django_capture_on_commit_callbacks):
    today = timezone.localdate()
    survey = services.survey_create(owner=organizer, title="Large", period="week",
                                    study_starts_on=years_before(today, STUDY_WINDOW_MAX_YEARS))
    n_units = detection.MAX_DETECTION_CELLS // 500 + 1
    services.units_upsert(survey=survey, units=[
        {"path": f"Acme/D{i // 100}/T{i}"} for i in range(n_units - 1 - n_units // 100)])
    first, _last = services.report_period_range(survey=survey, today=today)
    units = OrgUnit.objects.filter(survey=survey).count()
    assert units >= n_units - 1
    survey_services.reports_bulk_create(survey=survey, rows=[
        ("Acme/D0/T0", first + dt.timedelta(days=7 * 10), ("abrupt_reversal",), ""),
        ("Acme/D0/T0", today, ("abrupt_reversal",), "")])
    published(survey)
    job = start(organizer_api, survey, django_capture_on_commit_callbacks)
    assert job["status"] == "failed"
    assert "too large" in job["error"]
    assert f"{detection.MAX_DETECTION_CELLS:,}" in job["error"]
    run = DetectionRun.objects.get(job_id=job["id"])
    assert run.inputs is None


def test_reports_spanning_more_than_the_longest_window_fail_the_job_quickly(
        organizer, organizer_api, django_capture_on_commit_callbacks):
    # Rows from before periods were bounded: year one on a weekly survey.
    survey = services.survey_create(owner=organizer, title="Old", period="week")
    services.units_upsert(survey=survey, units=[{"path": "Acme/Retail"}])
    survey_services.reports_bulk_create(survey=survey, rows=[
        ("Acme/Retail", timezone.localdate(), ("abrupt_reversal",), "")] * 5)
    Report.objects.filter(survey=survey).order_by("id").filter(
        id__in=Report.objects.filter(survey=survey).values("id")[:1]).update(
        period_start=dt.date(1, 1, 1))
    published(survey)
    began = time.monotonic()
    job = start(organizer_api, survey, django_capture_on_commit_callbacks)
    assert time.monotonic() - began < 10
    assert job["status"] == "failed"
    assert f"{STUDY_WINDOW_MAX_YEARS} years" in job["error"]
    assert "0001" not in job["error"]


@pytest.mark.services
def test_a_worker_process_killed_mid_run_fails_the_job_and_the_run_is_not_redelivered(stack):
    import os
    import signal

    from rest_framework.authtoken.models import Token

    from reports.simulate import OrgShape, simulate
    from tests.factories import OrganizerFactory
    from tests.stack import wait_for

    organizer = OrganizerFactory()
    dataset = simulate(5, n_periods=40, shape=OrgShape(n_orgs=4, teams_per_department=(6, 8)),
                       base_rate=0.2)
    survey = synthetic.simulated_survey_create(owner=organizer, title="Killed", dataset=dataset,
                                               period="week")
    auth = {"Authorization": f"Token {Token.objects.create(user=organizer).key}"}
    stack.start_web()
    worker = stack.start_worker()
    # the largest run there is: a few long chunks, so that one is under way when killed
    status, started = stack.request("POST", f"/api/v1/surveys/{survey.id}/detections/",
                                    {"replicas": detection.MAX_REPLICAS}, headers=auth)
    assert status == 202, started
    job_path = f"/api/v1/surveys/{survey.id}/jobs/{started['id']}/"
    wait_for(lambda: stack.request("GET", job_path, headers=auth)[1]["status"] == "running",
             timeout=60, what="the job to run")
    time.sleep(1)
    # what the kernel's out-of-memory killer does to the pool process holding the run
    for pid in worker.children():
        os.kill(pid, signal.SIGKILL)
    job = wait_for(lambda: (lambda j: j if j["status"] != "running" else None)(
        stack.request("GET", job_path, headers=auth)[1]), timeout=60, what="the job to end")
    assert job["status"] == "failed", stack.logs()[-3000:]
    assert job["error"] == jobs.JOB_ERROR_WORKER_LOST
    chunks = DetectionRun.objects.get(job_id=started["id"]).chunks.count()
    # the worker's new pool process does not pick the run up again
    time.sleep(8)
    assert worker.alive
    assert DetectionRun.objects.get(job_id=started["id"]).chunks.count() == chunks
    assert stack.request("GET", job_path, headers=auth)[1]["status"] == "failed"
