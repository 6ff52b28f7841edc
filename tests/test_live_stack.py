"""The walking skeleton with real processes: gunicorn takes reports over HTTP,
a Celery worker aggregates them through Redis, and the dashboard API shows
the released counts."""

import secrets
import subprocess

import pytest
from django.db import connection

from tests.factories import OrganizerFactory, survey_with_units
from tests.stack import wait_for

pytestmark = pytest.mark.services

# Header values only: no traffic goes to these documentation addresses.
FORWARDED_FOR = "203.0.113.77"
REAL_IP = "198.51.100.23"


def released(stack, survey) -> dict:
    status, body = stack.request("GET", f"/api/v1/d/{survey.dashboard_token}/aggregates/")
    assert status == 200
    return {cell["unit"]: cell["reports"] for cell in body["cells"]}


def post_report(stack, survey, unit: str, user_agent: str) -> None:
    status, body = stack.request(
        "POST", f"/api/v1/s/{survey.share_token}/reports/",
        {"unit": unit, "period": "2026-01-14", "signals": ["abrupt_reversal"]},
        headers={"User-Agent": user_agent, "X-Forwarded-For": FORWARDED_FOR,
                 "X-Real-IP": REAL_IP})
    assert status == 201, body
    assert body["receipt"]


def test_reports_over_http_reach_the_dashboard_with_exact_rolled_up_counts(stack):
    survey = survey_with_units(owner=OrganizerFactory(), min_group_size=3,
                               paths=["Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Cloud"])
    user_agent = f"ChorusProbe/{secrets.token_hex(8)}"
    web = stack.start_web()
    worker = stack.start_worker()
    assert released(stack, survey) == {}

    for _ in range(3):
        post_report(stack, survey, "Acme/Retail/Marketing", user_agent)
    # A publication needs k changes, so exactly these three appear together.
    first = wait_for(lambda: released(stack, survey), timeout=60,
                     what="the first publication")
    # Every unit is listed; beside an empty Sales and Cloud only the company's 3 can show.
    hidden = dict.fromkeys(["Acme/Retail", "Acme/Retail/Marketing", "Acme/Retail/Sales",
                            "Acme/Cloud"])
    assert first == {"Acme": 3, **hidden}

    for _ in range(3):
        post_report(stack, survey, "Acme/Cloud", user_agent)
    second = wait_for(lambda: (lambda now: now if now != first else None)(
        released(stack, survey)), timeout=60, what="the second publication")
    assert second == {**hidden, "Acme": 6, "Acme/Retail": 3, "Acme/Cloud": 3}

    dump = subprocess.run(
        ["pg_dump", "--data-only", "-h", "127.0.0.1", "-U", "postgres",
         "-p", str(connection.settings_dict["PORT"] or 5432), connection.settings_dict["NAME"]],
        capture_output=True, text=True, check=True, timeout=60).stdout
    assert "Acme/Retail/Marketing" in dump  # the dump really holds this survey
    logs = web.log() + worker.log()
    assert "ready." in logs
    for secret in (user_agent, "ChorusProbe", FORWARDED_FOR, REAL_IP):
        assert secret not in dump
        assert secret not in logs
