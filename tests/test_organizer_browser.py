"""The organizer's side in a real browser: log in, create a survey, load units,
recount with the progress bar, replace the dashboard link, log out. Every POST
here passes Django's CSRF origin check, which a `no-referrer` policy on these
pages would break (browsers then send `Origin: null`)."""

import os
import time

import pytest

from reports.models import Job
from surveys.models import OrgUnit, Survey
from tests.browser import RequestLog, screenshot
from tests.factories import PASSWORD, OrganizerFactory, file_reports

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def wait_for(condition, *, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


@pytest.fixture
def organizer(settings):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 0
    return OrganizerFactory()


def test_organizer_creates_a_survey_and_manages_it_in_a_browser(browser, live_server,
                                                                 organizer):
    page = browser.new_page()
    log = RequestLog(page)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", organizer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/organizer/")

    page.fill("#id_title", "Feedback changes, spring")
    page.select_option("#id_period", "month")
    page.fill("#id_min_group_size", "3")
    page.click("main form button[type=submit]")
    page.wait_for_url("**/organizer/surveys/*/")
    survey = Survey.objects.get(owner=organizer)
    assert survey.min_group_size == 3

    page.fill("#id_units", "Acme/Retail/Marketing,40\nAcme/Cloud,12")
    page.click("form:has(#id_units) button[type=submit]")
    page.wait_for_load_state()
    assert set(OrgUnit.objects.filter(survey=survey).values_list("path", flat=True)) == {
        "Acme", "Acme/Retail", "Acme/Retail/Marketing", "Acme/Cloud"}
    assert f"/s/{survey.share_token}/" in page.content()

    file_reports(survey, 3)
    page.reload()
    page.click("text=Recount figures")
    wait_for(lambda: Job.objects.filter(survey=survey, kind=Job.Kind.REBUILD,
                                        status=Job.Status.SUCCEEDED).exists())
    screenshot(page, "organizer-survey")

    old_token = survey.dashboard_token
    page.click("text=Replace the link")
    page.wait_for_load_state()
    survey.refresh_from_db()
    assert survey.dashboard_token != old_token
    assert page.goto(f"{live_server.url}/d/{old_token}/").status == 404
    assert page.goto(f"{live_server.url}/d/{survey.dashboard_token}/").status == 200

    assert log.foreign(live_server.url) == []


def test_a_refused_detection_says_why_on_the_page(browser, live_server, organizer):
    from tests.factories import survey_with_units

    survey = survey_with_units(owner=organizer, min_group_size=3, paths=["Acme/Cloud"])
    file_reports(survey, 2, unit="Acme/Cloud")  # fewer than k: nothing published yet
    page = browser.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", organizer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/organizer/")
    page.goto(f"{live_server.url}/organizer/surveys/{survey.id}/")

    page.click("text=Detect clusters")
    status = page.locator(".job-status")
    status.filter(has_text="could not start").wait_for()
    assert "Nothing is published yet" in status.inner_text()
    assert not Job.objects.filter(survey=survey, kind=Job.Kind.DETECTION).exists()
