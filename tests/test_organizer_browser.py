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


def _logged_in(context, live_server, organizer):
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", organizer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/organizer/")
    return page


@pytest.mark.parametrize("width", [1280, 390])
def test_every_survey_setting_is_changed_through_the_pages_at_both_widths(
        browser, live_server, organizer, width):
    from tests.browser import axe_violations

    context = browser.new_context(viewport={"width": width, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = _logged_in(context, live_server, organizer)
    problems: list[str] = []
    # The refused form below answers 400 on purpose; anything else (a blocked style or
    # script, a failed request) is a problem.
    page.on("console", lambda message: message.type == "error"
            and "status of 400" not in message.text and problems.append(message.text))
    screenshot(page, f"organizer-list-{width}")

    page.fill("#id_title", "Spring changes")
    page.check("#id_access_1")  # invite codes
    page.click("main form:has(#id_title) button[type=submit]")
    page.wait_for_url("**/organizer/surveys/*/")
    survey = Survey.objects.get(owner=organizer)
    assert survey.access == Survey.Access.INVITE
    assert "Survey created." in page.inner_text("#messages")
    page.fill("#id_units", "Acme/Retail/Marketing,40\nAcme/Cloud,12")
    with page.expect_navigation():
        page.click("form:has(#id_units) button[type=submit]")
    assert "headcount given for 2 units, 52 people in all" in page.content()
    screenshot(page, f"organizer-survey-{width}")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width

    page.click("button[data-copy=share-url]")
    page.locator("#share-copied").filter(has_text="Copied").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.endswith(f"/s/{survey.share_token}/")
    assert page.locator("svg.qr").count() == 2

    page.fill("#id_title", "Spring changes, renamed")
    page.check("#id_access_0")
    with page.expect_navigation():
        page.click("#settings-form button[type=submit]")
    survey.refresh_from_db()
    assert (survey.title, survey.access) == ("Spring changes, renamed", Survey.Access.LINK)

    page.fill("#id_closes_on", "2001-01-01")
    with page.expect_navigation():
        page.click("#settings-form button[type=submit]")
    # Refused under its field, and the error has focus.
    assert page.evaluate("document.activeElement.className") == "errors summary"
    assert page.locator("#id_closes_on_error").is_visible()

    with page.expect_navigation():
        page.get_by_role("button", name="Close the survey").click()
    survey.refresh_from_db()
    assert not survey.is_open
    with page.expect_navigation():
        page.get_by_role("button", name="Reopen the survey").click()
    survey.refresh_from_db()
    assert survey.is_open

    old = survey.share_token
    with page.expect_navigation():
        page.get_by_role("button", name="Replace the share link").click()
    survey.refresh_from_db()
    assert survey.share_token != old
    assert f"/s/{survey.share_token}/" in page.inner_text("#share-url")
    assert problems == []
    context.close()

    checked = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = _logged_in(checked, live_server, organizer)
    assert axe_violations(page) == []
    page.goto(f"{live_server.url}/organizer/surveys/{survey.id}/")
    assert axe_violations(page) == []
    page.goto(f"{live_server.url}/")
    assert axe_violations(page) == []
    screenshot(page, f"home-{width}")
    checked.close()
