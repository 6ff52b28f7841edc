"""Every detection run on any survey is stored and reads back: random org trees,
periods, reports and signals through prepare, chunks and rank, on whichever database
the suite runs on (SQLite, then PostgreSQL)."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports import synthetic
from reports.models import DetectionCluster, DetectionRun, Job
from reports.scan import MODELS
from surveys import catalog
from surveys.models import Survey

pytestmark = pytest.mark.django_db

SIGNATURE = ("prior_positive_standing", "abrupt_reversal", "coaching_plan")


@st.composite
def surveys(draw):
    n_units = draw(st.integers(1, 25))
    # parents before children: each unit hangs under any earlier one
    parents = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n_units)]
    paths = ["Acme"]
    for i in range(1, n_units):
        paths.append(f"{paths[parents[i]]}/U{i}")
    headcount = [float(draw(st.sampled_from([0, 0, 1, 4, 12, 40]))) for _ in range(n_units)]
    n_periods = draw(st.integers(1, 30))
    # skewed towards a few units and periods, so that cuts reach k
    unit = st.integers(0, n_units - 1) | st.sampled_from([0, n_units - 1])
    report = st.tuples(
        unit, st.integers(0, n_periods - 1),
        st.just(SIGNATURE) | st.sets(st.sampled_from(catalog.SIGNAL_CODES)).map(tuple),
        st.sampled_from([*catalog.OUTCOME_CODES, None]))
    reports = draw(st.lists(report, min_size=1, max_size=150))
    return SimpleNamespace(
        unit_paths=paths, headcount=np.array(headcount), n_periods=n_periods,
        report_units=np.array([r[0] for r in reports]),
        report_periods=np.array([r[1] for r in reports]),
        report_signals=[r[2] for r in reports], report_outcomes=[r[3] for r in reports])


def finite_json(content: bytes):
    def refuse(constant):
        raise AssertionError(f"{constant} in a JSON answer")
    return json.loads(content, parse_constant=refuse)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(dataset=surveys(), period=st.sampled_from(list(Survey.Period.values)),
       k=st.integers(3, 6), models=st.lists(st.sampled_from(MODELS), min_size=1, unique=True),
       seed=st.integers(0, 2**32))
def test_every_run_on_a_random_survey_is_stored_and_reads_back(
        organizer, organizer_api, django_capture_on_commit_callbacks,
        dataset, period, k, models, seed):
    survey = synthetic.simulated_survey_create(owner=organizer, title="Random", dataset=dataset,
                                               period=period, min_group_size=k)
    with django_capture_on_commit_callbacks(execute=True):
        response = organizer_api.post(f"/api/v1/surveys/{survey.id}/detections/",
                                      {"replicas": 99, "seed": seed, "models": models},
                                      format="json")
    assert response.status_code == 202
    job_id = response.json()["id"]
    job = finite_json(organizer_api.get(
        f"/api/v1/surveys/{survey.id}/jobs/{job_id}/").content)
    assert (job["status"], job["error"]) == (Job.Status.SUCCEEDED, "")
    run = DetectionRun.objects.get(job_id=job_id)
    for cuts in run.observed.values():
        for cut in cuts:
            assert all(math.isfinite(cut[name]) for name in ("expected", "llr"))
    for values in DetectionCluster.objects.filter(run=run).values_list(
            "expected", "relative_risk", "llr", "p_raw", "p_value"):
        assert all(v is None or math.isfinite(v) for v in values)
    body = finite_json(organizer_api.get(f"/api/v1/surveys/{survey.id}/clusters/").content)
    assert body["run"]["id"] == job_id
    # Only significant clusters with enough released reports leave the server.
    assert len(body["clusters"]) <= run.clusters.count()
    finite_json(organizer_api.get(f"/api/v1/d/{survey.dashboard_token}/clusters/").content)
    finite_json(organizer_api.get(f"/api/v1/surveys/{survey.id}/export/").content)
