"""Benchmark of report intake against the framework's own ceiling (not a test).

Starts gunicorn (sync workers: 2 x cores + 1 by default, as gunicorn advises;
--workers 2 is the Procfile's configuration) with bench/benchsite.py settings
against PostgreSQL and Redis, and one Celery worker as in production.
Seeds a monthly survey with 200 units (5 orgs x 8 departments x 5 teams),
then drives load with wrk, a separate process, for the same time against:

- trivial: GET of a trivial JSON view through the same middleware stack;
- intake: POST of a report (varied units, periods, signals) to the product's
  API, with the rate limit on (counting in Redis; CHORUS_SUBMISSIONS_PER_DAY
  = 10^9 so it never refuses) and the durable hand-off (the sealed report
  committed to the holding table; the production publication interval, so
  nothing is dispatched per report).

It prints requests/s and p99 latency of both and the ratio intake / trivial.
Only 201s count for intake; the run fails unless every response was a 201,
the holding table holds exactly as many reports as there were 201s, and, once
a publication has moved them, the root unit's cells count every report.

wrk's script stops sending at the deadline and lets requests in flight finish
(a wrk run cut off mid-request would leave reports nobody counted), so rates
are taken over the window from the first request to the last response.

Needs PostgreSQL and Redis on 127.0.0.1 and Debian's wrk (apt-get install -y
wrk); uses the database chorus_bench_intake (created if missing, emptied on
each run) and Redis db 5 (flushed on each run):

    .venv/bin/python bench/intake.py [--duration 20] [--workers 5] [--connections 10]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DB_NAME = "chorus_bench_intake"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/5"
SECRET_KEY = "bench-intake-secret-key-not-for-production-0123456789"  # noqa: S105
# gunicorn's own advice for sync workers: 2 x cores + 1, so that a worker
# waiting on PostgreSQL or Redis leaves the cores to the others.
WORKERS = 2 * (os.cpu_count() or 1) + 1

sys.path.insert(0, str(BASE_DIR))
os.environ.update({
    "DJANGO_SETTINGS_MODULE": "bench.benchsite",
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "SECRET_KEY": SECRET_KEY,
    "CHORUS_SUBMISSIONS_PER_DAY": str(10**9),
})
for name in ("CHORUS_TEST_DB_NAME", "CHORUS_CLIENT_IP_HEADER", "DEBUG"):
    os.environ.pop(name, None)

# wrk's script. Python fills in DURATION and REQUESTS (pre-formatted, so that
# wrk spends its CPU on sockets, not on building bodies).
LUA = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long s; long ns; } bench_ts; int clock_gettime(int, bench_ts *); ]]
local ts = ffi.new("bench_ts")
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.s) + tonumber(ts.ns) * 1e-9
end

local duration = %(duration)s
local specs = %(requests)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  prepared = {}
  for i, spec in ipairs(specs) do
    prepared[i] = wrk.format(spec[1], spec[2], spec[3], spec[4])
  end
  counter = math.random(#prepared)
  statuses = {}
  first, last, deadline = 0, 0, nil
end

function delay()
  local t = now()
  if deadline == nil then
    first, deadline = t, t + duration
  end
  -- Past the deadline a connection sends nothing more; wrk's own timer ends the run.
  if t >= deadline then return 3600000 end
  return 0
end

function request()
  counter = counter %% #prepared + 1
  return prepared[counter]
end

function response(status, headers, body)
  last = now()
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local first_all, last_all, counts = nil, 0, {}
  for _, thread in ipairs(threads) do
    local f, l = thread:get("first"), thread:get("last")
    if f > 0 and (first_all == nil or f < first_all) then first_all = f end
    if l > last_all then last_all = l end
    for key, n in pairs(thread:get("statuses")) do counts[key] = (counts[key] or 0) + n end
  end
  local parts = {}
  for key, n in pairs(counts) do table.insert(parts, string.format('"%%s": %%d', key, n)) end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"window": %%.6f, "responses": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d, '
    .. '"errors": %%d, "statuses": {%%s}}\n',
    last_all - (first_all or last_all), summary.requests, latency:percentile(50),
    latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def lua_requests(specs: list[tuple[str, str, dict, str | None]]) -> str:
    rows = []
    for method, path, headers, body in specs:
        header_table = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}"
                                 for k, v in headers.items())
        rows.append(f"{{{lua_string(method)}, {lua_string(path)}, {{{header_table}}}, "
                    f"{lua_string(body) if body is not None else 'nil'}}}")
    return "{\n" + ",\n".join(rows) + "\n}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def prepare_database() -> None:
    exists = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc",
         f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],  # noqa: S608 - a constant
        capture_output=True, text=True, check=True).stdout.strip()
    if not exists:
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True)
    subprocess.run([PYTHON, "manage.py", "migrate", "--verbosity", "0"], cwd=BASE_DIR,
                   check=True)


def seed():
    """A fresh survey in an emptied database; returns it with its unit paths."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from surveys import services

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE surveys_survey, auth_user CASCADE")
    owner = get_user_model().objects.create(username="bench")
    survey = services.survey_create(owner=owner, title="Intake benchmark", min_group_size=5)
    paths = [f"Co/O{o}/D{o}.{d}/T{o}.{d}.{t}" for o in range(5) for d in range(8)
             for t in range(5)]
    services.units_upsert(survey=survey, units=[{"path": p} for p in paths])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return survey, paths


def report_bodies(paths: list[str], count: int) -> list[str]:
    from surveys import catalog

    rng = random.Random(7)
    # The twelve months before the current one: any day drawn from them is in
    # the past, whatever today's date (the current month's later days are not).
    today = dt.date.today()
    months = [dt.date(year, month + 1, 1) for year, month in (
        divmod(today.year * 12 + today.month - 1 - back, 12) for back in range(1, 13))]
    bodies = []
    for _ in range(count):
        body = {"unit": rng.choice(paths),
                # Never after today: early in a month, a day of this month may be.
                "period": min(rng.choice(months).replace(day=rng.randint(1, 28)),
                              today).isoformat(),
                "signals": rng.sample(catalog.SIGNAL_CODES, rng.randint(0, 4))}
        if rng.random() < 0.3:
            body["outcome"] = rng.choice(catalog.OUTCOME_CODES)
        bodies.append(json.dumps(body))
    return bodies


class Processes:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.popens: list[subprocess.Popen] = []

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            popen = subprocess.Popen(argv, cwd=BASE_DIR, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.popens.append(popen)
        return popen

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for popen in reversed(self.popens):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
        for popen in self.popens:
            try:
                popen.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def start_stack(processes: Processes, port: int, *, workers: int) -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    # No access log: gunicorn then writes no client addresses at all.
    processes.spawn("gunicorn", [
        PYTHON, "-m", "gunicorn", "server.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--no-control-socket", "--timeout", "60"])
    processes.spawn("worker", [
        PYTHON, "-m", "celery", "-A", "server", "worker", "-c", "1", "-P", "prefork",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-n",
        f"bench-intake-{port}@%h", "--loglevel", "WARNING"])

    def web_ready() -> bool:
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/bench/trivial/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(web_ready, timeout=60, what="gunicorn")
    wait_for(lambda: _worker_pinged(port), timeout=60, what="the Celery worker")


def _worker_pinged(port: int) -> bool:
    from server.celery import app

    try:
        return bool(app.control.ping(destination=[f"bench-intake-{port}@{socket.gethostname()}"],
                                     timeout=1))
    except OSError:
        return False


def profile(processes: Processes, directory: Path, *, name: str, seconds: float) -> None:
    """py-spy on every gunicorn worker for the next run (py-spy from PyPI, in the venv)."""
    directory.mkdir(parents=True, exist_ok=True)
    master = processes.popens[0].pid
    workers = [int(pid) for pid in subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()]
    for pid in workers:
        processes.spawn(f"py-spy-{pid}", [
            str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid), "--format", "raw",
            "--duration", str(int(seconds)), "--rate", "250", "--nonblocking", "--gil",
            "--output", str(directory / f"{name}-{pid}.txt")])


def _children(pid: int) -> list[int]:
    return [int(child) for child in subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_group(processes: Processes) -> dict[str, float]:
    """CPU seconds so far of the processes serving the benchmark, by kind."""
    from django.db import connection

    gunicorn, worker = processes.popens[0].pid, processes.popens[1].pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                       "pg_backend_pid()", [DB_NAME])
        backends = [row[0] for row in cursor.fetchall()]
    return {
        "gunicorn": sum(map(_cpu_seconds, _children(gunicorn))),
        "celery": sum(map(_cpu_seconds, [worker, *_children(worker)])),
        "postgres": sum(map(_cpu_seconds, backends)),
    }


def run_wrk(port: int, specs: list, *, duration: float, connections: int,
            work_dir: Path, name: str) -> dict:
    script = work_dir / f"{name}.lua"
    script.write_text(LUA % {"duration": duration, "requests": lua_requests(specs)})
    before = os.times()
    completed = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration + 3:.0f}s",
         "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True)
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rate"] = result["responses"] / result["window"]
    after = os.times()
    result["cpu"] = {"wrk": after.children_user + after.children_system
                     - before.children_user - before.children_system}
    return result


def check_intake(survey, runs: list[dict]) -> None:
    """The counts that make the figure honest (warm-up included: its reports are stored too)."""
    from django.db import close_old_connections

    from reports.models import Cell
    from reports.services import publication_maybe_publish
    from surveys.models import HeldReport, Report

    close_old_connections()
    for run in runs:
        if run["errors"] or set(run["statuses"]) != {"201"}:
            raise SystemExit(f"not every response was a 201: {run}")
    created = sum(run["statuses"]["201"] for run in runs)
    stored = HeldReport.objects.filter(survey=survey, kind=HeldReport.Kind.NEW).count()
    if stored != created:
        raise SystemExit(f"{created} responses were 201 but {stored} reports are stored")
    publication_maybe_publish(survey_id=survey.id, force=True)
    if Report.objects.filter(survey=survey).count() != stored:
        raise SystemExit("the publication did not move every held report")
    root = survey.units.get(path="Co")
    counted = sum(Cell.objects.filter(survey=survey, unit=root)
                  .values_list("reports", flat=True))
    if counted != stored:
        raise SystemExit(f"the cells count {counted} reports of {stored}")
    print(f"checked: {created} responses, all 201; {stored} reports stored; "
          f"the root unit's cells count {counted}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=8, help="seconds of load before each")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--connections", type=int,
                        help="wrk connections (default: twice the workers)")
    parser.add_argument("--only", choices=["trivial", "intake"])
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record each gunicorn worker with py-spy (collapsed stacks)")
    args = parser.parse_args()
    args.connections = args.connections or 2 * args.workers

    prepare_database()
    survey, paths = seed()
    path = f"/api/v1/s/{survey.share_token}/reports/"
    port = free_port()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        work_dir = Path(tmp)
        processes = Processes(work_dir)
        try:
            start_stack(processes, port, workers=args.workers)
            plans = {
                "trivial": [("GET", "/bench/trivial/", {}, None)],
                "intake": [("POST", path, {"Content-Type": "application/json"}, body)
                           for body in report_bodies(paths, 2000)],
            }
            for name, specs in plans.items():
                if args.only and name != args.only:
                    continue
                # Long enough for every worker to meet most units once: a server
                # that has run for a while knows them all (surveys.services).
                warmup = run_wrk(port, specs, duration=args.warmup, connections=args.connections,
                                 work_dir=work_dir, name=f"{name}-warmup")
                result = results[name] = {"load_before": load_average()}
                cpu_before = cpu_by_group(processes)
                if args.profile:
                    profile(processes, args.profile, name=name, seconds=args.duration)
                result.update(run_wrk(port, specs, duration=args.duration,
                                      connections=args.connections, work_dir=work_dir,
                                      name=name))
                result["load_after"] = load_average()
                # Backends that exited during the run (none, with persistent
                # connections) would be missing: a lower bound for postgres.
                cpu_after = cpu_by_group(processes)
                result["cpu"].update({group: cpu_after[group] - cpu_before[group]
                                      for group in cpu_after})
                print(f"{name}: {json.dumps(result)}", flush=True)
                if name == "intake":
                    check_intake(survey, [warmup, result])
        finally:
            processes.close()

    print(f"\ngunicorn {args.workers} sync workers, wrk -t1 -c{args.connections}, "
          f"{args.duration:.0f} s per view")
    print(f"{'view':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}   load avg before -> after")
    for name, result in results.items():
        print(f"{name:<10}{result['rate']:>9.0f}{result['p50_us'] / 1000:>9.1f}"
              f"{result['p99_us'] / 1000:>9.1f}   {result['load_before']} -> "
              f"{result['load_after']}")
    print("CPU ms per request: " + "; ".join(
        f"{name}: " + ", ".join(f"{group} {seconds * 1000 / result['responses']:.2f}"
                                for group, seconds in result["cpu"].items())
        for name, result in results.items()))
    if len(results) == 2:
        ratio = results["intake"]["rate"] / results["trivial"]["rate"]
        print(f"ratio intake / trivial: {ratio:.3f}")


if __name__ == "__main__":
    main()
