"""Every page at a desktop and a phone width: a screenshot of each in tests/artifacts/pages/
(kept by CI as its artifacts), nothing that scrolls sideways on the phone, and no request
the content policy blocks."""

import os

import pytest

from tests.browser import ARTIFACTS
from tests.factories import PASSWORD, OrganizerFactory, file_reports, publish, survey_with_units

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (1280, 390)


@pytest.fixture
def demo(settings):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 0
    organizer = OrganizerFactory()
    survey = survey_with_units(owner=organizer, min_group_size=3, paths=[
        "Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Cloud/Platform", "Acme/Finance"])
    for unit in ("Acme/Retail/Marketing", "Acme/Cloud/Platform", "Acme/Finance"):
        file_reports(survey, 4, unit=unit, signals=("abrupt_reversal",))
    publish(survey)
    return organizer, survey


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_is_captured_and_fits_the_screen(browser, live_server, demo, width):
    organizer, survey = demo
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    out = ARTIFACTS / "pages"
    out.mkdir(parents=True, exist_ok=True)

    def capture(name: str, path: str) -> None:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status < 400, (name, response.status)
        page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
        wide = page.evaluate("document.scrollingElement.scrollWidth")
        assert wide <= width, (name, wide)

    capture("home", "/")
    capture("login", "/accounts/login/")
    capture("form", f"/s/{survey.share_token}/")
    capture("withdraw", f"/s/{survey.share_token}/withdraw/")
    capture("amend", f"/s/{survey.share_token}/amend/")
    capture("dashboard-shared", f"/d/{survey.dashboard_token}/")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", organizer.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/organizer/")
    capture("organizer-list", "/organizer/")
    capture("organizer-survey", f"/organizer/surveys/{survey.id}/")
    capture("api-docs", "/api/docs/")
    assert problems == []
    assert len(list(out.glob(f"*-{width}.png"))) >= 9
    context.close()
