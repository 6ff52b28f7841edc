"""The respondent pages in a real browser: Debian's Chromium through Playwright,
against the live test server, with tasks running in-process."""

import os

import pytest
from django.utils import timezone

from surveys.models import Report
from tests.browser import (
    AXE,
    RequestLog,
    axe_violations,
    screenshot,
)
from tests.conftest import require
from tests.factories import OrganizerFactory, file_reports, publish, survey_with_units

# Playwright's sync API runs an event loop in this thread; Django's ORM calls
# made by the tests around it are still plain synchronous calls.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

UNITS = ["Acme/Retail/Marketing", "Acme/Retail/Sales", "Acme/Retail/Stores/North",
         "Acme/Cloud/Platform", "Acme/Cloud/Support", "Acme/Finance"]


@pytest.fixture
def publish_now(settings):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 0


@pytest.fixture
def survey(publish_now):
    return survey_with_units(owner=OrganizerFactory(), paths=UNITS, min_group_size=3,
                             title="Feedback changes in 2026")


def this_month():
    return timezone.localdate().replace(day=1)


def open_page(browser, url, **context_options):
    context = browser.new_context(**{"viewport": {"width": 1000, "height": 900},
                                     **context_options})
    page = context.new_page()
    return context, page, RequestLog(page)


def test_respondent_picks_a_unit_by_typing_and_reaches_the_published_dashboard(
        browser, live_server, survey):
    file_reports(survey, survey.min_group_size - 1, unit="Acme/Retail/Marketing",
                 period=this_month())
    context, page, requests = open_page(browser, live_server.url)
    page.goto(f"{live_server.url}/s/{survey.share_token}/")

    unit = page.get_by_role("combobox", name="Your unit")
    unit.press_sequentially("ac")
    options = page.get_by_role("listbox", name="Matching units").get_by_role("option")
    assert options.count() == len(UNITS) + 4  # and the parents they imply
    screenshot(page, "form-unit-filter")
    unit.press_sequentially("me ret market")
    assert options.all_inner_texts() == ["Acme / Retail / Marketing"]
    unit.press("ArrowDown")
    unit.press("Enter")
    assert unit.input_value() == "Acme/Retail/Marketing"
    # The invitation to name a larger group instead.
    assert page.get_by_role("button", name="Acme / Retail", exact=True).is_visible()
    page.get_by_label("When did the feedback change?").select_option(this_month().isoformat())
    page.get_by_label("I was in good standing before").check()
    page.get_by_label("The feedback turned suddenly").check()
    page.get_by_label("Anything else? (optional)").fill("Mail me at me@example.com")
    screenshot(page, "form-filled")
    page.get_by_role("button", name="Send my report").click()

    page.get_by_role("heading", name="Your report was received").wait_for()
    receipt = page.locator("#receipt").inner_text().strip()
    assert len(receipt) >= 22
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("status").filter(has_text="Copied").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == receipt
    onward = page.get_by_role("link", name="See whether it's just you")
    assert not onward.is_visible()
    screenshot(page, "receipt")
    page.get_by_label("I have saved my receipt").check()
    assert onward.is_visible()
    screenshot(page, "receipt-saved")
    onward.click()

    page.get_by_role("heading", name=survey.title).wait_for()
    # Beside their empty siblings, Marketing's 3 are shown only at the top of the tree.
    cell = page.locator(f'tr[data-unit="Acme"] td[data-period="{this_month().isoformat()}"]')
    assert cell.text_content().strip() == "3"
    screenshot(page, "shared-dashboard")
    assert Report.objects.filter(comment="Mail me at [email]").count() == 1
    assert requests.foreign(live_server.url) == []
    assert len(requests.urls) >= 4
    context.close()


def test_form_submits_with_javascript_disabled(browser, live_server, survey):
    context, page, requests = open_page(browser, live_server.url, java_script_enabled=False)
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    # Without the script the unit field stays a plain text input with a datalist.
    unit = page.get_by_label("Your unit")
    assert unit.get_attribute("list") == "unit-list"
    assert not page.get_by_role("button", name="Copy").count()
    unit.fill("Acme/Cloud")
    page.get_by_label("When did the feedback change?").select_option(this_month().isoformat())
    page.get_by_label("Finished work was called incomplete").check()
    screenshot(page, "form-no-js")
    page.get_by_role("button", name="Send my report").click()

    page.get_by_role("heading", name="Your report was received").wait_for()
    publish(survey)
    assert Report.objects.get().unit.path == "Acme/Cloud"
    # The copy button needs the script; the "I have saved it" step does not.
    assert not page.get_by_role("button", name="Copy").is_visible()
    onward = page.get_by_role("link", name="See whether it's just you")
    assert not onward.is_visible()
    page.get_by_label("I have saved my receipt").check()
    assert onward.is_visible()
    assert requests.foreign(live_server.url) == []
    context.close()


def test_a_bad_answer_comes_back_with_a_message_and_the_other_answers_kept(
        browser, live_server, survey):
    context, page, _requests = open_page(browser, live_server.url)
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    page.get_by_role("combobox", name="Your unit").fill("Acme/Nowhere")
    page.get_by_label("The goalposts kept moving").check()
    page.get_by_role("button", name="Send my report").click()
    page.get_by_role("alert").wait_for()
    assert page.get_by_text("Pick the month or week when it started.").is_visible()
    page.get_by_label("When did the feedback change?").select_option(this_month().isoformat())
    page.get_by_role("button", name="Send my report").click()
    page.get_by_text("Pick a unit from this survey's list.").wait_for()
    assert page.get_by_label("The goalposts kept moving").is_checked()
    assert (page.get_by_label("When did the feedback change?").input_value()
            == this_month().isoformat())
    assert page.get_by_role("combobox", name="Your unit").input_value() == "Acme/Nowhere"
    screenshot(page, "form-errors")
    assert not Report.objects.exists()
    context.close()


@pytest.mark.slow
def test_type_to_filter_finds_one_unit_among_twenty_thousand(browser, live_server, publish_now):
    paths = [f"Acme/Division {d}/Department {d}-{e}/Team {d}-{e}-{t}"
             for d in range(20) for e in range(40) for t in range(23)]
    survey = survey_with_units(owner=OrganizerFactory(), paths=paths)
    assert survey.units.count() > 19_000
    context, page, requests = open_page(browser, live_server.url,
                                        viewport={"width": 390, "height": 844})
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    unit = page.get_by_role("combobox", name="Your unit")
    unit.press_sequentially("team 7-31-2")
    options = page.get_by_role("listbox", name="Matching units").get_by_role("option")
    assert options.first.inner_text() == "Acme / Division 7 / Department 7-31 / Team 7-31-2"
    assert options.count() <= 50
    unit.press("ArrowDown")
    unit.press("Enter")
    assert unit.input_value() == "Acme/Division 7/Department 7-31/Team 7-31-2"
    page.get_by_role("button", name="Acme / Division 7 / Department 7-31", exact=True).click()
    assert unit.input_value() == "Acme/Division 7/Department 7-31"
    screenshot(page, "form-mobile-20k-units")
    assert requests.foreign(live_server.url) == []
    context.close()


def test_respondent_pages_have_no_serious_accessibility_violations(browser, live_server, survey):
    require(AXE.exists(), "axe-core is not installed: run npm ci")
    file_reports(survey, survey.min_group_size, unit="Acme/Retail/Sales", period=this_month())
    # Only here is the CSP bypassed, so that axe-core can be injected.
    context, page, requests = open_page(browser, live_server.url, bypass_csp=True)
    found = {}
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    page.get_by_role("combobox", name="Your unit").press_sequentially("sales")
    found["form"] = axe_violations(page)
    page.get_by_role("combobox", name="Your unit").press("Escape")
    page.get_by_role("combobox", name="Your unit").fill("Acme/Retail")
    page.get_by_label("When did the feedback change?").select_option(this_month().isoformat())
    page.get_by_role("button", name="Send my report").click()
    page.get_by_role("heading", name="Your report was received").wait_for()
    page.get_by_label("I have saved my receipt").check()
    found["receipt"] = axe_violations(page)
    page.get_by_role("link", name="See whether it's just you").click()
    page.get_by_role("heading", name=survey.title).wait_for()
    found["shared dashboard"] = axe_violations(page)
    page.goto(f"{live_server.url}/s/{survey.share_token}/withdraw/")
    found["withdraw"] = axe_violations(page)
    assert found == {name: [] for name in found}
    assert requests.foreign(live_server.url) == []
    context.close()


def test_form_fits_a_phone_screen(browser, live_server, survey):
    context, page, _requests = open_page(browser, live_server.url,
                                         viewport={"width": 360, "height": 740})
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    screenshot(page, "form-mobile")
    context.close()
