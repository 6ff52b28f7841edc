"""Peak memory of a detection run per Celery worker process (not a test).

20,000 units (company -> 10 orgs -> 200 departments -> 19,789 teams) x 156 weekly
periods (three years, the default study window), 60,000 reports, the default joint
model. One worker with two prefork processes runs the chord on PostgreSQL and Redis;
the script reads each pool process's peak resident set (VmHWM in /proc, Linux only)
once the job has finished, and prints it with the run's wall time. The survey is
marked published directly: detection is measured, not publication.

    PYTHONUNBUFFERED=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_detection_memory \\
    REDIS_URL=redis://127.0.0.1:6379/9 \\
    .venv/bin/python bench/detection_memory.py [--units 20000] [--weeks 156] \\
        [--reports 60000] [--replicas 199] [--model joint]

Memory does not depend on the replica count (replicas run one after another in a
chunk), so the default is small; the wall time does.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BASE_DIR.parent))
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

from detection import bench_owner, start_worker, stop_worker  # noqa: E402


def org_paths(n_units: int) -> tuple[list[str], np.ndarray]:
    orgs = [f"Bench/Org {i}" for i in range(10)]
    depts = [f"{orgs[i % 10]}/Dept {i}" for i in range(200)]
    teams = [f"{depts[i % 200]}/Team {i}" for i in range(n_units - 211)]
    return ["Bench", *orgs, *depts, *teams], np.arange(211, n_units)


def build_survey(owner, *, n_units: int, n_weeks: int, n_reports: int):
    from django.utils import timezone

    from reports import synthetic
    from reports.models import AggregationState
    from surveys import services as survey_services
    from surveys.models import years_before
    from surveys.services import survey_create, units_upsert

    rng = np.random.default_rng(11)
    paths, teams = org_paths(n_units)
    today = timezone.localdate()
    survey = survey_create(owner=owner, title="Bench detection memory", period="week",
                           study_starts_on=years_before(today, 1 + n_weeks // 52))
    units_upsert(survey=survey, units=[{"path": path} for path in paths])
    habit = rng.gamma(2.0, 0.5, size=teams.size)
    units = rng.choice(teams, size=n_reports, p=habit / habit.sum())
    periods = rng.integers(0, n_weeks, size=n_reports)
    signature = ("prior_positive_standing", "abrupt_reversal", "coaching_plan")
    plain = ("abrupt_reversal",)
    cases = rng.random(n_reports) < 0.1
    starts = synthetic.simulated_period_starts(period="week", n_periods=n_weeks, today=today)
    survey_services.reports_bulk_create(survey=survey, rows=[
        (paths[u], starts[p], signature if case else plain, "") for u, p, case in zip(
            units.tolist(), periods.tolist(), cases.tolist(), strict=True)])
    # Detection runs on published figures only. Publishing this survey's 87,000
    # cells through disclosure control is not what is measured here (and takes
    # minutes), so the survey is marked as published.
    AggregationState.objects.update_or_create(survey=survey, defaults={
        "published_at": timezone.now()})
    return survey


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=20_000)
    ap.add_argument("--weeks", type=int, default=156)
    ap.add_argument("--reports", type=int, default=60_000)
    ap.add_argument("--replicas", type=int, default=199)
    ap.add_argument("--model", default="joint")
    args = ap.parse_args()
    owner = bench_owner()
    from reports import detection
    from reports.models import Job
    from server.celery import app

    t0 = time.perf_counter()
    survey = build_survey(owner, n_units=args.units, n_weeks=args.weeks,
                          n_reports=args.reports)
    cells = args.units * args.weeks
    print(f"built survey: {args.units} units x {args.weeks} weeks = {cells:,} unit-periods "
          f"(limit {detection.MAX_DETECTION_CELLS:,}), {args.reports} reports "
          f"in {time.perf_counter() - t0:.1f} s")
    log_path = Path(tempfile.gettempdir()) / f"bench-detection-memory-{os.getpid()}.log"
    worker = start_worker(2, log_path)
    try:
        deadline = time.monotonic() + 120
        while not app.control.ping(destination=[f"bench-2@{socket.gethostname()}"], timeout=1):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"worker did not start; see {log_path}")
        pool = children(worker.pid)
        baseline = {pid: peak_rss_mb(pid) for pid in pool}
        started = time.perf_counter()
        run = detection.detection_start(survey=survey, replicas=args.replicas, seed=2024,
                                        models=[args.model])
        while True:
            job = Job.objects.get(id=run.job_id)
            if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
                break
            if worker.poll() is not None:
                raise SystemExit(f"worker exited; see {log_path}")
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        peaks = {pid: peak_rss_mb(pid) for pid in pool if Path(f"/proc/{pid}").exists()}
        main_peak = peak_rss_mb(worker.pid)
    finally:
        stop_worker(worker)
    run.refresh_from_db()
    print(f"job {job.status} {job.error!r} in {elapsed:.1f} s ({run.replicas} replicas, "
          f"chunk size {run.chunk_size}, model {args.model}, load {os.getloadavg()[0]:.2f})")
    for pid, peak in sorted(peaks.items()):
        print(f"pool process {pid}: peak RSS {peak:.0f} MB (idle {baseline[pid]:.0f} MB)")
    print(f"worker main process: peak RSS {main_peak:.0f} MB", flush=True)
    print(f"largest per worker process: {max(peaks.values()):.0f} MB", flush=True)


if __name__ == "__main__":
    main()
