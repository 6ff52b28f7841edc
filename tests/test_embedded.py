"""The embedded default served the way `scripts/run` serves it (manage.py
serve: gunicorn's threaded workers, SQLite in a directory of its own, Celery
tasks in the web process), driven over HTTP by concurrent clients.

Needs no PostgreSQL or Redis, so it runs in the SQLite pass of scripts/test."""

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

from tests.stack import BASE_DIR, PYTHON, Process, free_port, wait_for

pytestmark = [
    pytest.mark.slow,
    # Its servers never use the pytest database: once, in the SQLite pass, is enough.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")),
                       reason="the embedded default runs in the SQLite pass of scripts/test"),
]

CLIENTS, REPORTS_PER_CLIENT = 8, 25
UNIT = "Acme/Cloud/Platform/Storage"


def last_month_start(today: dt.date | None = None) -> dt.date:
    """The first day of the month before today's: in the past on any day."""
    first = (today or dt.date.today()).replace(day=1)
    return (first - dt.timedelta(days=1)).replace(day=1)


def embedded_env(var_dir: Path, **overrides) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CHORUS_", "CELERY_", "PYTEST", "DJANGO_"))
           and key not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY"}}
    env.update({
        "DJANGO_SETTINGS_MODULE": "server.settings", "PYTHONUNBUFFERED": "1",
        "CHORUS_VAR_DIR": str(var_dir), "CHORUS_PUBLISH_INTERVAL_SECONDS": "0",
        # Every client here is 127.0.0.1: one network filing 200 reports.
        "CHORUS_SUBMISSIONS_PER_DAY": "0",
    })
    env.update(overrides)
    return env


def serve(var_dir: Path, address: str, log_path: Path, **env) -> Process:
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            [PYTHON, "manage.py", "serve", "--address", address], cwd=BASE_DIR,
            env=embedded_env(var_dir, **env), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name=f"serve-{address}", popen=popen, log_path=log_path)


class Client:
    def __init__(self, base: str):
        self.base = base
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port = parsed.hostname, parsed.port

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                raw: bytes | None = None, content_type: str = "application/json"):
        """(status, headers, body bytes), on a connection of its own."""
        import http.client

        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                             else None)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=data,
                               headers={"Content-Type": content_type, **(headers or {})})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, method, path, body=None, headers=None):
        status, _headers, content = self.request(method, path, body, headers)
        return status, json.loads(content or b"null")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """An embedded server as scripts/run starts it, and what seed_demo printed."""
    yield from embedded_server(tmp_path_factory)


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    """The same, with a busy timeout of one second, for tests that hold the
    write lock past it."""
    yield from embedded_server(tmp_path_factory, CHORUS_SQLITE_BUSY_TIMEOUT="1")


def embedded_server(tmp_path_factory, **env):
    var_dir = tmp_path_factory.mktemp("var")
    address = f"127.0.0.1:{free_port()}"
    process = serve(var_dir, address, var_dir / "serve.log", **env)
    client = Client(f"http://{address}")

    def ready():
        if not process.alive:
            raise AssertionError(f"manage.py serve exited:\n{process.log()}")
        try:
            return client.request("GET", "/api/v1/signals/")[0] == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=120, interval=0.5, what="the embedded server to answer")
        printed = process.log()
        share_token = re.search(r"/s/([^/\s]+)/", printed)[1]
        password = re.search(r"password (\S+)", printed)[1]
        status, body = client.json("POST", "/api/v1/auth/token/",
                                   {"username": "demo", "password": password})
        assert status == 200, body
        auth = {"Authorization": f"Token {body['token']}"}
        _status, surveys = client.json("GET", "/api/v1/surveys/", headers=auth)
        yield {"client": client, "process": process, "var_dir": var_dir, "address": address,
               "share_token": share_token, "password": password, "auth": auth,
               "survey_id": surveys[0]["id"], "database": var_dir / "chorus.sqlite3"}
    finally:
        process.stop()


def report_body(**overrides) -> dict:
    return {"unit": UNIT, "period": last_month_start().isoformat(),
            "signals": ["abrupt_reversal"], **overrides}


def stored_reports(embedded, *, unit: str, period: dt.date) -> int:
    """Reports in the database file: the published ones for one unit and
    period, plus every new report held for the next publication (sealed, so
    not told apart by unit). Read from the file itself: released figures are
    rounded away by disclosure control."""
    with sqlite3.connect(embedded["database"], timeout=30) as database:
        (published,) = database.execute(
            "SELECT COUNT(*) FROM surveys_report JOIN surveys_orgunit"
            " ON surveys_orgunit.id = surveys_report.unit_id"
            " WHERE surveys_orgunit.path = ? AND surveys_report.period_start = ?",
            [unit, period.isoformat()]).fetchone()
        (held,) = database.execute(
            "SELECT COUNT(*) FROM surveys_heldreport WHERE kind = 'new'").fetchone()
    return published + held


def test_eight_respondents_filing_at_once_all_get_201_and_every_report_is_counted(embedded):
    client, path = embedded["client"], f"/api/v1/s/{embedded['share_token']}/reports/"
    before = stored_reports(embedded, unit=UNIT, period=last_month_start())
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def respondent(index: int):
        for number in range(REPORTS_PER_CLIENT):
            status, headers, _content = client.request(
                "POST", path, report_body(comment=f"client {index} report {number}"))
            with lock:
                answers.append((status, headers.get("Content-Type", "")))

    threads = [threading.Thread(target=respondent, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [status for status, _type in answers]
    assert statuses == [201] * CLIENTS * REPORTS_PER_CLIENT, sorted(set(answers))
    after = stored_reports(embedded, unit=UNIT, period=last_month_start())
    assert after - before == statuses.count(201)


def test_eight_organizer_calls_loading_units_at_once_all_succeed(embedded):
    client, auth = embedded["client"], embedded["auth"]
    path = f"/api/v1/surveys/{embedded['survey_id']}/units/"
    answers = []

    def load(index: int):
        units = [{"path": f"Acme/Loaded{index}/Team{team}", "headcount": 4} for team in range(40)]
        answers.append(client.json("PUT", path, {"units": units}, headers=auth))

    threads = [threading.Thread(target=load, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _body in answers] == [200] * 8, answers
    _status, units = client.json("GET", path, headers=auth)
    paths = {unit["path"] for unit in units}
    assert all(f"Acme/Loaded{index}/Team39" in paths for index in range(8))


def hold_write_lock(database: Path) -> sqlite3.Connection:
    """Another writer holding SQLite's one write lock, as a long write would."""
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    return holder


@pytest.mark.parametrize(("accept", "unit"), [
    # The lean intake path, and the APIView (which the lean path leaves this Accept to).
    ("application/json", "Acme/Retail/Stores/North"),
    ("application/json, text/html", "Acme/Retail/Stores/South"),
])
def test_a_report_that_waits_past_the_busy_timeout_answers_503_and_is_not_stored(
        impatient, accept, unit):
    embedded = impatient
    client, path = embedded["client"], f"/api/v1/s/{embedded['share_token']}/reports/"
    period = (last_month_start() - dt.timedelta(days=1)).replace(day=1)
    body = report_body(unit=unit, period=period.isoformat())
    before = stored_reports(embedded, unit=unit, period=period)
    holder = hold_write_lock(embedded["database"])
    try:
        status, headers, content = client.request("POST", path, body, {"Accept": accept})
    finally:
        holder.rollback()
        holder.close()
    assert status == 503, content
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Retry-After"]) > 0
    assert "stored nothing" in json.loads(content)["detail"]
    assert stored_reports(embedded, unit=unit, period=period) == before
    # Sent again as told, it is stored.
    assert client.request("POST", path, body)[0] == 201
    assert stored_reports(embedded, unit=unit, period=period) == before + 1


def test_the_form_sent_while_the_database_stays_busy_comes_back_with_the_answers(impatient):
    embedded = impatient
    client, page = embedded["client"], f"/s/{embedded['share_token']}/"
    _status, _headers, form = client.request("GET", page)
    token = re.search(rb'name="submission_token" value="([^"]+)"', form)[1].decode()
    fields = {"unit": UNIT, "period": last_month_start().isoformat(),
              "signals": "coaching_plan", "comment": "Told my work was incomplete",
              "submission_token": token}
    holder = hold_write_lock(embedded["database"])
    try:
        status, headers, content = client.request(
            "POST", page, raw=urllib.parse.urlencode(fields).encode(),
            content_type="application/x-www-form-urlencoded")
    finally:
        holder.rollback()
        holder.close()
    assert status == 503
    assert int(headers["Retry-After"]) > 0
    text = content.decode()
    assert "many people are sending at the same moment" in text
    assert "Told my work was incomplete" in text
    assert f'value="{token}"' in text
    assert re.search(r'value="coaching_plan"[^>]*checked', text)


def test_a_second_run_while_one_is_serving_stops_before_changing_anything(embedded, tmp_path):
    second = subprocess.run(
        [PYTHON, "manage.py", "serve", "--address", f"127.0.0.1:{free_port()}"],
        cwd=BASE_DIR, env=embedded_env(embedded["var_dir"]), capture_output=True, text=True,
        timeout=60, check=False)
    assert second.returncode != 0
    assert "already being served" in second.stderr
    assert "password" not in second.stdout
    status, _body = embedded["client"].json(
        "POST", "/api/v1/auth/token/", {"username": "demo", "password": embedded["password"]})
    assert status == 200


def test_changes_saved_while_the_database_stays_busy_come_back_on_the_page(impatient):
    embedded = impatient
    client, share = embedded["client"], embedded["share_token"]
    status, body = client.json("POST", f"/api/v1/s/{share}/reports/", report_body())
    assert status == 201
    fields = {"step": "save", "receipt": body["receipt"], "unit": UNIT,
              "period": last_month_start().isoformat(), "signals": "exit_pressure",
              "comment": "Moved to a plan after the recap"}
    holder = hold_write_lock(embedded["database"])
    try:
        status, headers, content = client.request(
            "POST", f"/s/{share}/amend/", raw=urllib.parse.urlencode(fields).encode(),
            content_type="application/x-www-form-urlencoded")
    finally:
        holder.rollback()
        holder.close()
    assert status == 503
    assert int(headers["Retry-After"]) > 0
    text = content.decode()
    assert "Your changes were not saved" in text
    assert "Moved to a plan after the recap" in text
