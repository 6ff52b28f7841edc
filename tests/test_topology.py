"""The production topology without Docker: `honcho start -f Procfile` runs
gunicorn, two Celery workers and beat against the pytest test database, and
an organizer drives it over HTTP from org tree to published figures and a
detection whose chunks spread over both workers."""

import contextlib
import datetime as dt
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
from collections import Counter
from itertools import pairwise

import pytest
from django.contrib.auth import get_user_model

from reports.models import AggregationState, DetectionRun, Job
from surveys.models import HeldReport, Report
from tests.conftest import require
from tests.stack import (
    BASE_DIR,
    PYTHON,
    Stack,
    flush_redis,
    free_port,
    job_wait,
    require_postgres_and_redis,
    wait_for,
)

K = 5
REPORTS = 2000
PLANTED = 240
PLANTED_DEPARTMENT = "Acme/Org 2/Dept 3"
PLANTED_MONTHS = (7, 8)  # indices into the twelve months studied
SIGNATURE = ("prior_positive_standing", "abrupt_reversal")
SIGNALS = ("prior_positive_standing", "abrupt_reversal", "recap_contradicts_meeting",
           "completed_work_disputed", "shifting_goalposts", "transfer_blocked",
           "coaching_plan", "peers_same_treatment", "exit_pressure")
OUTCOMES = ("", "still_in_role", "transferred", "resigned", "let_go", "on_plan")

# Files one report per request from several threads, as separate clients
# would; prints how many of each status it got.
REPORTER = """
import json, sys, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

url, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
bodies = json.load(open(path))

def post(body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code

with ThreadPoolExecutor(threads) as pool:
    statuses = list(pool.map(post, bodies))
print(json.dumps({str(code): statuses.count(code) for code in set(statuses)}))
"""


def months_studied(today: dt.date) -> list[dt.date]:
    """The twelve complete months before the current one, oldest first."""
    first = today.replace(day=1)
    months = []
    for _ in range(12):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        months.append(first)
    return months[::-1]


def org_tree() -> list[dict]:
    """Exactly 500 units: Acme, 4 orgs, 24 departments and 471 teams with headcounts."""
    rng = random.Random(500)
    units = [{"path": "Acme"}]
    departments = 0
    for org in range(1, 5):
        units.append({"path": f"Acme/Org {org}"})
        for dept in range(1, 7):
            path = f"Acme/Org {org}/Dept {dept}"
            units.append({"path": path})
            teams = 20 if departments < 15 else 19
            departments += 1
            units.extend({"path": f"{path}/Team {team}", "headcount": rng.randint(4, 12)}
                         for team in range(1, teams + 1))
    return units


def report_bodies(units: list[dict], months: list[dt.date]) -> list[dict]:
    """Background reports spread by headcount over a year, and a drive: one
    department reporting the attrition signature in two consecutive months."""
    rng = random.Random(2000)
    teams = [unit for unit in units if "headcount" in unit]
    weights = [unit["headcount"] for unit in teams]
    planted_teams = [unit for unit in teams if unit["path"].startswith(PLANTED_DEPARTMENT + "/")]

    def body(unit, month, signals):
        return {"unit": unit["path"], "period": month.replace(day=10).isoformat(),
                "signals": sorted(signals), "outcome": rng.choice(OUTCOMES)}

    bodies = []
    for _ in range(REPORTS - PLANTED):
        signals = {code for code in SIGNALS if rng.random() < 0.15}
        bodies.append(body(rng.choices(teams, weights)[0], rng.choice(months), signals))
    for index in range(PLANTED):
        signals = {*SIGNATURE, rng.choice(("recap_contradicts_meeting", "coaching_plan"))}
        signals |= {code for code in SIGNALS if rng.random() < 0.3}
        month = months[PLANTED_MONTHS[index % 2]]
        bodies.append(body(rng.choice(planted_teams), month, signals))
    rng.shuffle(bodies)
    return bodies


def _leftovers(log: str) -> list[int]:
    """Pids of Procfile entries honcho started and did not see stop."""
    started = dict(re.findall(r"system\s*\| (\S+) started \(pid=(\d+)\)", log))
    stopped = set(re.findall(r"system\s*\| (\S+) stopped \(rc=", log))
    return [int(pid) for name, pid in started.items() if name not in stopped]


@pytest.fixture
def topology(transactional_db, tmp_path):
    """`honcho start` on the repository's Procfile, as one process group."""
    require_postgres_and_redis()
    require(importlib.util.find_spec("honcho") is not None,
            "needs honcho (the dev extra: pip install -e '.[dev]')")
    require((BASE_DIR / ".venv" / "bin" / "celery").exists(),
            "the Procfile runs .venv/bin/...: run scripts/bootstrap.sh first")
    port = free_port()
    with Stack(tmp_path) as stack:
        flush_redis(stack.redis_url)
        # --env /dev/null: a developer's .env must not point the processes elsewhere.
        honcho = stack.spawn("honcho", [
            PYTHON, "-m", "honcho", "start", "--env", os.devnull, "-f", "Procfile",
        ], PORT=str(port), CHORUS_SUBMISSIONS_PER_DAY="0", CHORUS_SWEEP_SECONDS="1")
        stack.web_url = f"http://127.0.0.1:{port}"
        try:
            def ready():
                if not honcho.alive:
                    raise AssertionError(f"honcho exited:\n{honcho.log()[-4000:]}")
                log = honcho.log()
                if not all(f"{name}@" in log and "ready." in log
                           for name in ("worker1", "worker2")):
                    return False
                try:
                    return stack.request("GET", "/api/v1/signals/", timeout=2)[0] == 200
                except OSError:
                    return False

            wait_for(ready, timeout=90, interval=0.5, what="web and both workers to start")
            yield stack, honcho
        finally:
            honcho.stop(timeout=30)
            # honcho gives every entry a session of its own; had it to be
            # killed, what it started is still running.
            for pid in _leftovers(honcho.log()):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, signal.SIGKILL)


def _authorized(token: str) -> dict:
    return {"Authorization": f"Token {token}"}


def _settled(survey_id, honcho) -> AggregationState | None:
    """The survey's state once every report is aggregated and published."""
    if not honcho.alive:
        raise AssertionError(f"honcho exited:\n{honcho.log()[-4000:]}")
    state = AggregationState.objects.filter(survey_id=survey_id).first()
    if state is None or state.publications == 0 or _held(survey_id):
        return None
    return state


def _held(survey_id) -> int:
    return HeldReport.objects.filter(survey_id=survey_id, kind=HeldReport.Kind.NEW).count()


def _recount(survey_id) -> Counter:
    """Reports per (unit, period) from the Report table, each counted for its
    unit and every ancestor."""
    counts = Counter()
    for path, period in Report.objects.filter(survey_id=survey_id).values_list(
            "unit__path", "period_start"):
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            counts["/".join(parts[:depth]), period.isoformat()] += 1
    return counts


def test_procfile_is_valid_runs_web_first_and_keeps_no_access_log():
    require(importlib.util.find_spec("honcho") is not None,
            "needs honcho (the dev extra: pip install -e '.[dev]')")
    from honcho.environ import parse_procfile

    check = subprocess.run([PYTHON, "-m", "honcho", "check", "-f", "Procfile"], cwd=BASE_DIR,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    processes = parse_procfile((BASE_DIR / "Procfile").read_text()).processes
    # honcho and foreman hand $PORT itself only to the first entry.
    assert list(processes) == ["web", "worker1", "worker2", "beat"]
    assert "${PORT" in processes["web"]
    assert "--workers 2" in processes["web"]
    assert "access-log" not in processes["web"]
    assert {re.search(r"--hostname (\S+)@", processes[name]).group(1)
            for name in ("worker1", "worker2")} == {"worker1", "worker2"}
    assert "--schedule var/" in processes["beat"]
    assert not any(" /" in command for command in processes.values())


@pytest.mark.services
@pytest.mark.slow
def test_procfile_serves_exact_published_counts_and_finds_a_planted_drive_on_both_workers(
        topology, tmp_path, settings):
    stack, honcho = topology
    # The web processes check passwords with Django's default hashers.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    get_user_model().objects.create_user(username="organizer", password="a long passphrase 42")
    status, body = stack.request("POST", "/api/v1/auth/token/",
                                 {"username": "organizer", "password": "a long passphrase 42"})
    assert status == 200, body
    headers = _authorized(body["token"])

    status, survey = stack.request("POST", "/api/v1/surveys/", {
        "title": "Topology", "period": "month", "min_group_size": K, "access": "link"},
        headers=headers)
    assert status == 201, survey
    survey_id = survey["id"]
    share_token = re.search(r"/s/([^/]+)/", survey["share_url"]).group(1)
    units = org_tree()
    status, body = stack.request("PUT", f"/api/v1/surveys/{survey_id}/units/",
                                 {"units": units}, headers=headers)
    assert (status, body) == (200, {"units": 500})

    months = months_studied(dt.date.today())
    bodies_path = tmp_path / "reports.json"
    bodies_path.write_text(json.dumps(report_bodies(units, months)))
    (tmp_path / "reporter.py").write_text(REPORTER)
    reporter = subprocess.run(
        [PYTHON, str(tmp_path / "reporter.py"),
         f"{stack.web_url}/api/v1/s/{share_token}/reports/", str(bodies_path), "8"],
        capture_output=True, text=True, timeout=240)
    assert reporter.returncode == 0, reporter.stderr
    assert json.loads(reporter.stdout) == {"201": REPORTS}, honcho.log()[-4000:]

    # A publication needs k new reports: a remainder below k stays held by
    # design, so top it up to exactly k with a few more reports.
    wait_for(lambda: _held(survey_id) < K, timeout=120, interval=0.5,
             what="every due publication")
    remainder = _held(survey_id)
    for _ in range(K - remainder if remainder else 0):
        status, body = stack.request(
            "POST", f"/api/v1/s/{share_token}/reports/",
            {"unit": "Acme/Org 4/Dept 6/Team 1", "period": months[0].isoformat(),
             "signals": []})
        assert status == 201, body
    state = wait_for(lambda: _settled(survey_id, honcho), timeout=120, interval=0.5,
                     what="every report to be published")
    assert state.publications >= 2

    # Beat's sweep starts a detection after a publication; let it finish
    # so that the run started below is the survey's latest.
    wait_for(lambda: DetectionRun.objects.filter(
        survey_id=survey_id, publication=state.publications).exists() and not Job.objects.filter(
        survey_id=survey_id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).exists(),
        timeout=120, interval=0.5, what="the sweep's detection after the last publication")

    status, job = stack.request("POST", f"/api/v1/surveys/{survey_id}/detections/",
                                {"replicas": 199, "seed": 20261128}, headers=headers)
    assert status == 202, job
    job_wait(stack, survey_id=survey_id, job_id=job["id"], headers=headers, timeout=120,
             log=honcho.log)

    # The sweep never runs two detections of one survey at once.
    spans = sorted(Job.objects.filter(survey_id=survey_id, kind=Job.Kind.DETECTION)
                   .values_list("created", "finished"))
    assert all(later[0] > earlier[1] for earlier, later in pairwise(spans))

    run = DetectionRun.objects.get(job_id=job["id"])
    chunk_lines = re.findall(rf"^\S+ (\S+)\s*\| .*detection run {run.id}: ", honcho.log(),
                             flags=re.MULTILINE)
    assert len(chunk_lines) == run.chunks.count() > 2
    assert set(chunk_lines) == {"worker1.1", "worker2.1"}

    status, aggregates = stack.request("GET", f"/api/v1/surveys/{survey_id}/aggregates/",
                                       headers=headers)
    assert status == 200
    recount = _recount(survey_id)
    released = {(cell["unit"], cell["period"]): cell["reports"]
                for cell in aggregates["cells"] if not cell["suppressed"]}
    assert {key: recount[key] for key in released} == released
    assert all(cell["reports"] is None for cell in aggregates["cells"] if cell["suppressed"])
    assert sum(count for (unit, _), count in released.items() if unit == "Acme") == (
        Report.objects.filter(survey_id=survey_id).count())
    # The company is far above k in every month, and the check reaches below it.
    assert {("Acme", month.isoformat()) for month in months} <= released.keys()
    assert any(unit != "Acme" for unit, _ in released)

    status, clusters = stack.request("GET", f"/api/v1/surveys/{survey_id}/clusters/",
                                     headers=headers)
    assert status == 200
    assert clusters["run"]["id"] == job["id"]
    # The run itself finds the planted drive; what of it is released is the release's call.
    first, last = (months[index] for index in PLANTED_MONTHS)
    best = run.clusters.order_by("rank").first()
    assert best.unit_path == PLANTED_DEPARTMENT or best.unit_path.startswith(
        PLANTED_DEPARTMENT + "/")
    assert first <= best.start <= best.end <= last
    assert best.p_value <= 0.05
    for cluster in clusters["clusters"]:
        assert cluster["p_value"] in ("at most 0.001", "at most 0.01", "at most 0.05")
        assert "observed" not in cluster

    # No access log: no request line, and so no share token, reaches the output.
    assert share_token not in honcho.log()
