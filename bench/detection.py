"""Benchmark of a detection run through the Celery chord (not a test).

2,000 units (company -> 10 orgs -> 100 departments -> 1,889 teams) x 52 weekly
periods, 20,000 reports with one department-level drive, one model (targeted by
default, ``--model``), 999 replicas. The same run (same seed) goes through the
chord twice, once with one worker process and once with two, on PostgreSQL and
Redis; the script prints both wall times (POST-equivalent start to job succeeded)
and their ratio, and checks that both runs stored identical clusters.

It uses its own database (created and migrated if missing) and empties the
given Redis database first, so point it at ones nobody else uses:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_detection \\
    REDIS_URL=redis://127.0.0.1:6379/9 \\
    .venv/bin/python bench/detection.py [--replicas 999] [--chunk-size N] [--repeat 4] \\
        [--model profile]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

N_UNITS = 2000
N_PERIODS = 52
N_REPORTS = 20_000


def ensure_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                    [name]).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def org_paths() -> tuple[list[str], np.ndarray]:
    paths = ["Bench"]
    orgs = [f"Bench/Org {i}" for i in range(10)]
    depts = [f"{orgs[i // 10]}/Dept {i}" for i in range(100)]
    teams = [f"{depts[i % 100]}/Team {i}" for i in range(N_UNITS - 111)]
    paths += orgs + depts + teams
    return paths, np.arange(111, N_UNITS)


def build_survey(owner):
    from django.utils import timezone

    from reports import synthetic
    from reports.services import cells_rebuild, publication_maybe_publish
    from surveys import services as survey_services
    from surveys.services import survey_create, units_upsert

    rng = np.random.default_rng(7)
    paths, teams = org_paths()
    survey = survey_create(owner=owner, title="Bench detection", period="week",
                           min_group_size=5)
    units_upsert(survey=survey, units=[{"path": path} for path in paths])
    habit = rng.gamma(2.0, 0.5, size=teams.size)
    units = rng.choice(teams, size=N_REPORTS, p=habit / habit.sum())
    periods = rng.integers(0, N_PERIODS, size=N_REPORTS)
    dept_teams = [t for t in teams if paths[t].startswith("Bench/Org 4/Dept 42/")]
    units[:300] = rng.choice(dept_teams, size=300)
    periods[:300] = rng.integers(20, 24, size=300)
    starts = synthetic.simulated_period_starts(period="week", n_periods=N_PERIODS,
                                               today=timezone.localdate())
    survey_services.reports_bulk_create(survey=survey, rows=[
        (paths[u], starts[p], ("abrupt_reversal",), "") for u, p in zip(
            units.tolist(), periods.tolist(), strict=True)])
    cells_rebuild(survey_id=survey.id)
    publication_maybe_publish(survey_id=survey.id, force=True)
    return survey


def start_worker(concurrency: int, log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "server", "worker", "-c", str(concurrency),
             "-P", "prefork", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"bench-{concurrency}@%h", "--loglevel", "WARNING"],
            cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def timed_run(survey, *, concurrency: int, replicas: int, chunk_size: int | None,
              log_path: Path, model: str = "targeted"):
    from reports import detection
    from reports.models import Job
    from server.celery import app

    worker = start_worker(concurrency, log_path)
    try:
        # The clock starts once the worker answers, so boot time is not counted.
        deadline = time.monotonic() + 120
        while not app.control.ping(destination=[f"bench-{concurrency}@{socket.gethostname()}"],
                                   timeout=1):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"worker did not start; see {log_path}")
        started = time.perf_counter()
        run = detection.detection_start(survey=survey, replicas=replicas, seed=2024,
                                        chunk_size=chunk_size, models=[model])
        while True:
            job = Job.objects.get(id=run.job_id)
            if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
                break
            if worker.poll() is not None:
                raise SystemExit(f"worker exited; see {log_path}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        stop_worker(worker)
    if job.status != Job.Status.SUCCEEDED:
        raise SystemExit(f"run failed; see {log_path}")
    return run, elapsed


def bench_owner():
    """Sets Django up on a migrated PostgreSQL benchmark database and an empty Redis
    database, and returns the organizer owning the benchmark surveys."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get(
            "REDIS_URL"):
        raise SystemExit("Set DATABASE_URL (PostgreSQL) and REDIS_URL; see the docstring.")
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    import redis
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    owner, _ = get_user_model().objects.get_or_create(username="bench")
    return owner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=999)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1,
                    help="Runs per worker count, alternating; the fastest counts (the "
                         "machine is shared, so the slower ones mostly measure neighbours).")
    ap.add_argument("--model", default="targeted", help="The scan model the run uses.")
    args = ap.parse_args()
    owner = bench_owner()
    from reports.models import DetectionCluster

    t0 = time.perf_counter()
    survey = build_survey(owner)
    print(f"built survey: {N_UNITS} units, {N_PERIODS} weeks, {N_REPORTS} reports "
          f"in {time.perf_counter() - t0:.1f} s")
    log_path = Path(tempfile.gettempdir()) / f"bench-detection-{os.getpid()}.log"
    results: dict[int, tuple] = {}
    for _ in range(max(1, args.repeat)):
        for concurrency in (1, 2):
            run, elapsed = timed_run(survey, concurrency=concurrency, replicas=args.replicas,
                                     chunk_size=args.chunk_size, log_path=log_path,
                                     model=args.model)
            print(f"{concurrency} worker process(es): {elapsed:7.2f} s "
                  f"({run.replicas} replicas, chunk size {run.chunk_size}, {args.model}, "
                  f"started {dt.datetime.now().isoformat(timespec='seconds')}, "
                  f"load {os.getloadavg()[0]:.2f})")
            if concurrency not in results or elapsed < results[concurrency][1]:
                results[concurrency] = (run, elapsed)

    def clusters(run):
        return list(DetectionCluster.objects.filter(run=run).order_by("rank").values_list(
            "unit_path", "start", "end", "observed", "llr", "p_value"))

    one, two = results[1], results[2]
    assert clusters(one[0]) == clusters(two[0]), "runs with the same seed must agree"
    top = clusters(one[0])[0] if clusters(one[0]) else None
    print(f"top cluster: {top}")
    print(f"fastest: 1 worker {one[1]:.2f} s, 2 workers {two[1]:.2f} s; "
          f"ratio 2 workers / 1 worker: {two[1] / one[1]:.3f} "
          f"(speed-up {one[1] / two[1]:.2f})")


if __name__ == "__main__":
    main()
