"""The shared dashboard in a real browser: Debian's Chromium through Playwright, against the
live test server. Screenshots land in tests/artifacts/ (git-ignored)."""

import datetime as dt
import os
import random

import pytest
from django.utils import timezone

from reports import services as report_services
from reports.models import DetectionCluster, DetectionRun, Job
from surveys.models import Report
from tests.browser import AXE, RequestLog, axe_violations, screenshot
from tests.conftest import require
from tests.factories import OrganizerFactory, survey_with_units

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEAMS = {"Acme/Retail/Marketing": 7, "Acme/Retail/Sales": 3, "Acme/Retail/Stores": 1,
         "Acme/Cloud/Platform": 4, "Acme/Cloud/Support": 2, "Acme/Finance": 3}


@pytest.fixture
def seeded():
    rnd = random.Random(7)
    survey = survey_with_units(owner=OrganizerFactory(), paths=list(TEAMS), min_group_size=3,
                               title="Feedback changes in 2025")
    ids = dict(survey.units.values_list("path", "id"))
    reports = []
    for month in range(1, 10):
        for path, rate in TEAMS.items():
            surge = 4 if path == "Acme/Retail/Marketing" and month in (5, 6) else 1
            for _ in range(rnd.randint(0, rate * surge)):
                reports.append(Report(
                    survey=survey, unit_id=ids[path], period_start=dt.date(2025, month, 1),
                    signals=rnd.choice([3, 3, 7, 1, 11, 0]), received_week=dt.date(2025, 10, 6),
                    receipt_hash=f"{survey.id}-{len(reports)}"))
    Report.objects.bulk_create(reports)
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    job = Job.objects.create(survey=survey, kind=Job.Kind.DETECTION,
                             status=Job.Status.SUCCEEDED, progress=1.0)
    run = DetectionRun.objects.create(survey=survey, job=job, seed=1, replicas=999,
                                      chunk_size=100, finished=timezone.now(),
                                      parameters={"min_reports": 3},
                                      detectable={"critical_llr": 9.5, "periods": 9,
                                                  "headcount": 0})
    DetectionCluster.objects.create(
        run=run, rank=0, model="poisson", scope="unit", unit_path="Acme/Retail/Marketing",
        start=dt.date(2025, 5, 1), end=dt.date(2025, 6, 1), observed=40, n_reports=40,
        expected=9.8, relative_risk=4.1, llr=20.0, p_raw=0.001, p_value=0.001)
    return survey


def test_shared_dashboard_in_a_browser(browser, live_server, seeded):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    log = RequestLog(page)
    problems = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{live_server.url}/d/{seeded.dashboard_token}/")

    assert page.locator("h1").inner_text() == "Feedback changes in 2025"
    assert page.locator("svg.chart .bar").count() == 9
    screenshot(page, "dashboard-shared")

    retail = page.locator('details.hm-group[data-unit="Acme/Retail"]')
    assert not retail.evaluate("node => node.open")
    marketing = page.locator('.hm-row[data-unit="Acme/Retail/Marketing"]')
    assert not marketing.is_visible()
    retail.locator("summary").first.click()
    assert retail.evaluate("node => node.open")
    assert marketing.is_visible()

    hidden = page.locator(".heatmap .hm-cell.hidden")
    if hidden.count():
        assert "hidden" in hidden.first.inner_text()
        assert "fewer than 3" in hidden.first.get_attribute("title")

    page.locator("details.as-table > summary").nth(1).click()
    suppressed = page.locator("#figures-table td.suppressed[data-period]")
    assert suppressed.count() == hidden.count()
    if suppressed.count():
        assert suppressed.first.inner_text() == "hidden"
    assert "fewer than 3" in page.locator("#figures-table caption").inner_text()

    cards = page.locator("details.cluster")
    if cards.count():
        card = cards.first
        if not card.evaluate("node => node.open"):
            card.locator("summary").click()
        sentence = card.locator(".cluster-sentence").inner_text()
        assert sentence.startswith("Acme/Retail/Marketing, 1 May–30 Jun 2025")
        assert "(p ≤ 0.001)" in sentence
        assert "4.1×" not in sentence
    sizes = page.locator("table[data-detectable] tbody tr")
    assert sizes.count() == 3
    assert sizes.first.locator("th").inner_text() == "A unit with 5% of the reports"
    assert sizes.last.locator("td").inner_text().endswith("×")
    screenshot(page, "dashboard-shared-expanded")

    page.fill("#f-unit", "Acme/Cloud")
    page.locator(".filters button").click()
    page.wait_for_url("**unit=Acme%2FCloud**")
    assert "Reports over time in Acme/Cloud" in page.locator("#timeline-heading").inner_text()
    screenshot(page, "dashboard-shared-cloud")

    assert log.foreign(live_server.url) == []
    assert problems == []
    context.close()


def test_shared_dashboard_on_a_phone_has_no_serious_accessibility_problems(
        browser, live_server, seeded):
    require(AXE.exists(), f"axe-core is not installed at {AXE}")
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/d/{seeded.dashboard_token}/")
    screenshot(page, "dashboard-shared-phone")
    assert axe_violations(page) == []
    context.close()


def test_hidden_periods_are_drawn_hatched_not_as_bars(browser, live_server, seeded):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/d/{seeded.dashboard_token}/?unit=Acme%2FFinance")
    hidden = page.locator("svg.chart .bar.hidden rect")
    shown = page.locator("svg.chart .bar:not(.hidden) rect")
    assert hidden.count() > 0
    assert shown.count() > 0
    fill = "node => getComputedStyle(node).fill"
    assert hidden.first.evaluate(fill).startswith("url(")
    assert not shown.first.evaluate(fill).startswith("url(")
    assert hidden.first.evaluate(fill) != shown.first.evaluate(fill)
    context.close()


def test_nothing_on_the_dashboard_scrolls_sideways_on_a_phone(browser, live_server, seeded):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{live_server.url}/d/{seeded.dashboard_token}/")
    for toggle in page.locator("details > summary").all():
        if toggle.is_visible():
            toggle.click()
    width = page.evaluate("document.scrollingElement.scrollWidth")
    screenshot(page, "dashboard-shared-phone-open")
    context.close()
    assert width <= 390


def test_weekly_column_heads_and_every_legend_swatch_read_on_one_line(browser, live_server):
    survey = survey_with_units(owner=OrganizerFactory(), paths=["Acme/Ops"], min_group_size=3,
                               period="week")
    unit = survey.units.get(path="Acme/Ops")
    Report.objects.bulk_create([
        Report(survey=survey, unit_id=unit.id, period_start=dt.date(2025, 11, 3 + 7 * (n % 4)),
               signals=1, received_week=dt.date(2025, 12, 1), receipt_hash=f"{survey.id}-{n}")
        for n in range(16)])
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/d/{survey.dashboard_token}/")
    lines = ("node => { const range = document.createRange(); range.selectNodeContents(node);"
             " return range.getClientRects().length; }")
    heads = page.locator(".hm-row.head .hm-cell.head").all()
    assert len(heads) == 4
    assert [head.evaluate(lines) for head in heads] == [1] * 4
    swatches = page.locator(".hm-legend .hm-cell").all()
    assert all(swatch.inner_text().strip() for swatch in swatches)
    context.close()
