import pytest
from rest_framework.authtoken.models import Token

from reports import detection, jobs, synthetic
from reports.models import Cell, DetectionCluster, DetectionRun, Job
from reports.simulate import Drive, OrgShape, simulate
from tests.factories import OrganizerFactory, file_reports
from tests.stack import (
    detection_over_http,
)


def job_path(survey, job_id) -> str:
    return f"/api/v1/surveys/{survey.id}/jobs/{job_id}/"


@pytest.mark.django_db
def test_rebuild_job_recomputes_cells_and_reports_success(
        organizer_api, survey, publish_at_once, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 4)
    Cell.objects.filter(survey=survey).delete()
    with django_capture_on_commit_callbacks(execute=True):
        response = organizer_api.post(f"/api/v1/surveys/{survey.id}/rebuild/")
    assert response.status_code == 202
    started = response.json()
    assert started["status"] == "queued"
    job = organizer_api.get(job_path(survey, started["id"])).json()
    assert job == {"id": started["id"], "kind": "rebuild", "status": "succeeded",
                   "progress": 1.0, "error": ""}
    assert Cell.objects.filter(survey=survey).exists()


@pytest.mark.django_db
def test_detection_job_progress_reaches_one_and_succeeds(
        organizer_api, survey, publish_at_once, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 6)
        file_reports(survey, 3, unit="Acme/Cloud")
    with django_capture_on_commit_callbacks(execute=True):
        response = organizer_api.post(f"/api/v1/surveys/{survey.id}/detections/",
                                      {"replicas": 99, "seed": 3}, format="json")
    assert response.status_code == 202
    job = organizer_api.get(job_path(survey, response.json()["id"])).json()
    assert job["kind"] == "detection"
    assert job["status"] == "succeeded"
    assert job["progress"] == 1.0


@pytest.mark.django_db
def test_another_organizers_job_is_404(api, organizer_api, survey,
                                       django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job_id = organizer_api.post(f"/api/v1/surveys/{survey.id}/rebuild/").json()["id"]
    api.force_authenticate(OrganizerFactory())
    assert api.get(job_path(survey, job_id)).status_code == 404
    assert api.post(f"/api/v1/surveys/{survey.id}/rebuild/").status_code == 404


@pytest.mark.django_db
def test_a_job_is_found_only_under_its_own_survey(organizer, organizer_api, survey,
                                                  django_capture_on_commit_callbacks):
    from tests.factories import survey_with_units

    other = survey_with_units(owner=organizer, paths=["Elsewhere"])
    with django_capture_on_commit_callbacks(execute=True):
        job_id = organizer_api.post(f"/api/v1/surveys/{survey.id}/rebuild/").json()["id"]
    assert organizer_api.get(job_path(other, job_id)).status_code == 404
    assert organizer_api.get(job_path(survey, "not-a-uuid")).status_code == 404


@pytest.mark.django_db
def test_progress_only_moves_forward_and_stops_at_the_end(survey):
    job = Job.objects.create(survey=survey, kind=Job.Kind.DETECTION)
    assert jobs.job_mark_running(job_id=job.id)
    assert jobs.job_progress_set(job_id=job.id, progress=0.5)
    assert not jobs.job_progress_set(job_id=job.id, progress=0.25)
    assert jobs.job_finish(job_id=job.id, succeeded=False)
    assert not jobs.job_progress_set(job_id=job.id, progress=0.75)
    assert not jobs.job_finish(job_id=job.id, succeeded=True)
    job.refresh_from_db()
    assert (job.status, job.progress) == (Job.Status.FAILED, 0.5)


@pytest.mark.django_db
def test_a_failing_chunk_marks_the_job_failed(
        organizer, organizer_api, monkeypatch, django_capture_on_commit_callbacks):
    dataset = simulate(1, n_periods=8, shape=OrgShape(n_orgs=2), base_rate=0.1)
    survey = synthetic.simulated_survey_create(owner=organizer, title="S", dataset=dataset)
    # The one seam where a worker can die mid-run: the scan's replica loop.
    monkeypatch.setattr(detection.scan, "replica_maxima",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("worker lost")))
    with django_capture_on_commit_callbacks(execute=True):
        response = organizer_api.post(f"/api/v1/surveys/{survey.id}/detections/",
                                      {"replicas": 99}, format="json")
    # in-process, the run fails inside this request: the answer is still the job
    assert response.status_code == 202
    job = organizer_api.get(job_path(survey, response.json()["id"])).json()
    assert job["status"] == "failed"
    assert job["error"] == jobs.JOB_ERROR_UNEXPECTED
    # the error text of the exception itself is never shown
    assert "worker lost" not in job["error"]
    assert organizer_api.get(f"/api/v1/surveys/{survey.id}/clusters/").json()["run"] is None


def _stored(run) -> list[tuple]:
    return list(DetectionCluster.objects.filter(run=run).order_by("rank").values_list(
        "model", "unit_path", "start", "end", "observed", "expected", "llr", "p_raw", "p_value",
        "signals", "summary"))


@pytest.mark.services
def test_detection_across_real_workers_equals_the_in_process_run(stack):
    organizer = OrganizerFactory()
    dataset = simulate(4, n_periods=10, shape=OrgShape(n_orgs=2), base_rate=0.1,
                       drives=[Drive("department", 2, 5.0, start=6, signature_share=0.8)])
    survey = synthetic.simulated_survey_create(owner=organizer, title="S", dataset=dataset)
    eager = detection.detection_start(survey=survey, replicas=200, seed=77, chunk_size=50)
    assert _stored(eager)
    token = Token.objects.create(user=organizer).key
    job_id, job = detection_over_http(stack, survey=survey, token=token,
                                      body={"replicas": 200, "seed": 77})
    assert job["progress"] == 1.0
    distributed = DetectionRun.objects.get(job_id=job_id)
    assert distributed.chunks.count() == eager.chunks.count()
    assert distributed.fingerprint == DetectionRun.objects.get(id=eager.id).fingerprint
    assert _stored(distributed) == _stored(eager)
