"""Real processes for services tests: gunicorn, Celery workers, beat and a
private redis-server, all pointed at the pytest-django test database.

Every process starts in its own session so that teardown can signal the
whole group (a prefork worker's pool children included) and nothing else.
Output goes to files under the test's tmp dir, so tests can read log lines.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET_KEY = "stack-test-secret-key-not-for-production-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The URL of the test database this pytest process is using."""
    from django.db import connection

    conf = connection.settings_dict
    auth = quote(conf["USER"] or "", safe="")
    if conf.get("PASSWORD"):
        auth += ":" + quote(conf["PASSWORD"], safe="")
    return (f"postgres://{auth}@{conf['HOST'] or '127.0.0.1'}:{conf['PORT'] or 5432}"
            f"/{conf['NAME']}")


def require_postgres_and_redis() -> None:
    from django.db import connection

    from tests.conftest import redis_reachable, redis_url, require

    require(connection.vendor == "postgresql",
            "needs PostgreSQL (set DATABASE_URL) for processes to share the test database")
    require(redis_reachable(redis_url()), f"needs Redis at {redis_url()}")


def flush_redis(url: str) -> None:
    import redis

    with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5) as client:
        client.flushdb()


def broker_client(url: str):
    """A Celery client of its own: the pytest process runs tasks eagerly."""
    from celery import Celery

    app = Celery("stack-client", broker=url, set_as_current=False)
    app.conf.broker_connection_timeout = 2
    app.conf.broker_connection_retry_on_startup = False
    return app


def _json_or_text(raw: bytes) -> dict:
    try:
        return json.loads(raw or b"{}")
    except ValueError:  # an HTML error page
        return {"text": raw.decode(errors="replace")[:2000]}


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        """Pids whose parent is this process (the pool of a prefork worker)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the parenthesised command: state, ppid, ...
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.popen.pid:
                pids.append(int(entry.name))
        return pids

    def stop(self, timeout: float = 15) -> None:
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)


def wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Polls until predicate() is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Stack:
    """Starts processes on demand and stops every one of them on close()."""

    def __init__(self, tmp_path: Path, *, redis: str | None = None, env: dict | None = None):
        from tests.conftest import redis_url

        self.tmp_path = tmp_path
        self.redis_url = redis or redis_url()
        self.extra_env = env or {}
        self.processes: list[Process] = []
        self.web_url = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def env(self, **overrides) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("CHORUS_", "CELERY_", "PYTEST"))}
        env.update({
            "DJANGO_SETTINGS_MODULE": "server.settings",
            "DATABASE_URL": database_url(),
            "REDIS_URL": self.redis_url,
            "CHORUS_PUBLISH_INTERVAL_SECONDS": "0",
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
            # Every test request comes from 127.0.0.1: one "network" filing
            # many reports. The limiter stays on, its Redis path exercised.
            "CHORUS_SUBMISSIONS_PER_DAY": "1000000",
        })
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def spawn(self, name: str, argv: list[str], **env) -> Process:
        log_path = self.tmp_path / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(argv, cwd=BASE_DIR, env=self.env(**env),
                                     stdin=subprocess.DEVNULL, stdout=log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(name=name, popen=popen, log_path=log_path)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(process.log() for process in self.processes)

    # Web

    def start_web(self, *, workers: int = 1, timeout: float = 60) -> Process:
        port = free_port()
        # No --access-logfile: gunicorn then writes no access log at all, so
        # neither client addresses nor user agents reach the output.
        process = self.spawn(f"web-{port}", [
            PYTHON, "-m", "gunicorn", "server.wsgi", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--timeout", "60", "--graceful-timeout", "5",
            # The default control socket is one path per user: parallel runs would clash.
            "--no-control-socket",
        ])
        self.web_url = f"http://127.0.0.1:{port}"

        def ready():
            if not process.alive:
                raise AssertionError(f"gunicorn exited:\n{process.log()}")
            try:
                return self.request("GET", "/api/v1/signals/", timeout=2)[0] == 200
            except OSError:  # URLError included: not listening yet
                return False

        wait_for(ready, timeout=timeout, what="gunicorn to answer")
        return process

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        # Always http://127.0.0.1:<port>, never a scheme from input.
        request = urllib.request.Request(  # noqa: S310
            f"{self.web_url}{path}", data=data, method=method,
            headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, _json_or_text(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json_or_text(error.read())

    # Celery

    def start_worker(self, *, timeout: float = 60, **env) -> Process:
        name = f"stack-{uuid.uuid4().hex[:8]}"
        process = self.spawn(name, [
            PYTHON, "-m", "celery", "-A", "server", "worker", "-c", "1", "-P", "prefork",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"{name}@%h", "--loglevel", "INFO",
        ], **env)
        process.extra["node"] = f"{name}@{socket.gethostname()}"
        client = broker_client(self.redis_url)

        def ready():
            if not process.alive:
                raise AssertionError(f"worker exited:\n{process.log()}")
            if "ready." not in process.log():
                return False
            try:
                return bool(client.control.ping(destination=[process.extra["node"]],
                                                timeout=1))
            except OSError:
                return False

        wait_for(ready, timeout=timeout, interval=0.5, what=f"worker {name} to answer a ping")
        return process

    def start_beat(self, *, sweep_seconds: float = 1, **env) -> Process:
        schedule = self.tmp_path / f"beat-{uuid.uuid4().hex[:8]}"
        return self.spawn(schedule.name, [
            PYTHON, "-m", "celery", "-A", "server", "beat", "-s", str(schedule),
            "--loglevel", "INFO",
        ], CHORUS_SWEEP_SECONDS=str(sweep_seconds), **env)

    def send_task(self, name: str, *args) -> None:
        client = broker_client(self.redis_url)
        with client.connection_for_write() as connection:
            client.send_task(name, args=list(args), connection=connection)

    def start_reporters(self, *, survey_id, units: list[str], total: int,
                        processes: int) -> list[Process]:
        """Processes that file `total` reports between them through the
        service, each dispatching aggregation through the broker."""
        share = total // processes
        return [self.spawn(f"reporter-{index}", [
            PYTHON, "-m", "tests.stack", "file-reports", str(survey_id), ",".join(units),
            str(share if index < processes - 1 else total - share * index), str(share * index),
        ]) for index in range(processes)]

    # A private Redis, for outages

    def start_redis(self, port: int | None = None, *, timeout: float = 10) -> Process:
        from tests.conftest import redis_reachable

        port = port or free_port()
        process = self.spawn(f"redis-{port}-{len(self.processes)}", [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no",
        ])
        process.extra["port"] = port
        wait_for(lambda: redis_reachable(f"redis://127.0.0.1:{port}/0"), timeout=timeout,
                 interval=0.1, what=f"redis-server on port {port}")
        return process


def file_reports_main(argv: list[str]) -> None:
    """`python -m tests.stack file-reports SURVEY_ID UNIT_PATH,... COUNT OFFSET`:
    files COUNT reports through the service, cycling through the units,
    each dispatching its aggregation through the configured broker."""
    import django

    django.setup()
    import datetime as dt

    from surveys import intake, services
    from surveys.models import Survey

    survey_id, units, count, offset = argv[0], argv[1].split(","), int(argv[2]), int(argv[3])
    survey = Survey.objects.get(id=survey_id)
    for index in range(offset, offset + count):
        intake.report_create(survey=survey, draft=services.ReportDraft(
            unit=units[index % len(units)], period=dt.date(2026, 1 + index % 3, 10),
            signals=("abrupt_reversal",) if index % 2 else ()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["file-reports"]:
        file_reports_main(sys.argv[2:])
    else:
        raise SystemExit(f"unknown command: {sys.argv[1:]}")


def detection_over_http(stack, *, survey, token: str, body: dict) -> tuple[str, dict]:
    """Starts a detection through a running stack's API with two workers and
    waits for its job; returns the job id and the job as last polled."""
    auth = {"Authorization": f"Token {token}"}
    stack.start_web()
    stack.start_worker()
    stack.start_worker()
    status, started = stack.request("POST", f"/api/v1/surveys/{survey.id}/detections/", body,
                                    headers=auth)
    assert status == 202, started
    job = job_wait(stack, survey_id=survey.id, job_id=started["id"], headers=auth,
                   timeout=180, log=stack.logs)
    return started["id"], job


def job_wait(stack, *, survey_id, job_id, headers: dict, timeout: float, log) -> dict:
    """Polls a job through the API until it ends; asserts it succeeded (showing
    the tail of `log()` if not) and returns it as last polled."""

    def finished():
        _, job = stack.request("GET", f"/api/v1/surveys/{survey_id}/jobs/{job_id}/",
                               headers=headers)
        return job if job["status"] in ("succeeded", "failed") else None

    job = wait_for(finished, timeout=timeout, interval=0.5, what="the detection job")
    assert job["status"] == "succeeded", log()[-4000:]
    return job
