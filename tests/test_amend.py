"""Amending a report by its receipt (API and page), and reloads of the
receipt page that must not file a report twice."""

import datetime as dt
import re

import pytest
from django.core.cache import caches
from django.utils import timezone
from redis import Redis

from reports import services as report_services
from reports.models import Cell
from surveys import services
from surveys.models import Report
from tests.conftest import redis_reachable, redis_url, require
from tests.factories import file_reports, invite_token, publish, report_payload, survey_with_units
from tests.recording_cache import RECORDING

pytestmark = pytest.mark.django_db

JANUARY = dt.date(2026, 1, 1)
FEBRUARY = dt.date(2026, 2, 1)


def report_path(survey, receipt: str) -> str:
    return f"/api/v1/s/{survey.share_token}/reports/{receipt}/"


def amend_path(survey) -> str:
    return f"/s/{survey.share_token}/amend/"


def form_path(survey) -> str:
    return f"/s/{survey.share_token}/"


def filed(api, survey, **overrides) -> str:
    response = api.post(f"/api/v1/s/{survey.share_token}/reports/", report_payload(**overrides),
                        format="json")
    assert response.status_code == 201
    return response.json()["receipt"]


def cells(survey) -> dict:
    return {(cell.unit.path, cell.period_start): (cell.reports, cell.signals, cell.outcomes)
            for cell in Cell.objects.filter(survey=survey).select_related("unit")}


def recounted(survey) -> dict:
    report_services.cells_rebuild(survey_id=survey.id)
    return cells(survey)


def published(survey):
    """The survey's reports as the next publication leaves them: filed and
    amended reports are held until then."""
    publish(survey)
    return Report.objects.filter(survey=survey)


def counted(survey) -> dict:
    return {key: value[0] for key, value in cells(survey).items()}


# Through the API


def test_patch_changes_every_answer_and_returns_them(api, survey):
    receipt = filed(api, survey)
    response = api.patch(report_path(survey, receipt), {
        "unit": "Acme/Cloud", "period": "2026-02-17", "signals": ["coaching_plan"],
        "outcome": "resigned", "comment": "Moved teams."}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"unit": "Acme/Cloud", "period": "2026-02-01",
                               "signals": ["coaching_plan"], "outcome": "resigned",
                               "comment": "Moved teams."}
    report = published(survey).get()
    assert (report.unit.path, report.period_start, report.outcome) == ("Acme/Cloud", FEBRUARY,
                                                                      "resigned")
    assert report.receipt_hash == services.receipt_hash(receipt)


def test_patch_keeps_the_answers_it_does_not_name(api, survey):
    receipt = filed(api, survey, outcome="still_in_role", comment="Still here.")
    response = api.patch(report_path(survey, receipt), {"signals": []}, format="json")
    assert response.status_code == 200
    assert response.json() == {"unit": "Acme/Retail/Marketing", "period": "2026-01-01",
                               "signals": [], "outcome": "still_in_role", "comment": "Still here."}


def test_patch_scrubs_the_comment_as_create_does(api, survey):
    receipt = filed(api, survey)
    response = api.patch(report_path(survey, receipt),
                         {"comment": "Write to jo@example.com or call +44 20 7946 0958."},
                         format="json")
    assert response.json()["comment"] == "Write to [email] or call [phone]."
    assert published(survey).get().comment == "Write to [email] or call [phone]."


@pytest.mark.parametrize(("change", "field"), [
    ({"unit": "Acme/Nowhere"}, "unit"),
    ({"period": "2999-01-01"}, "period"),
    ({"period": "not a date"}, "period"),
    ({"signals": ["made_up"]}, "signals"),
    ({"signals": "abrupt_reversal"}, "signals"),
    ({"outcome": "promoted"}, "outcome"),
    ({"comment": "x" * 2001}, "comment"),
])
def test_bad_changes_answer_400_on_their_field_and_change_nothing(api, survey, change, field):
    receipt = filed(api, survey)
    before = published(survey).values().get()
    response = api.patch(report_path(survey, receipt), change, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert published(survey).values().get() == before


def test_a_wrong_receipt_answers_404_saying_nothing_else(api, survey):
    filed(api, survey)
    response = api.patch(report_path(survey, "not-a-receipt"), {"outcome": "resigned"},
                         format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_withdrawn_report_cannot_be_amended(api, survey):
    receipt = filed(api, survey)
    assert api.delete(report_path(survey, receipt)).status_code == 204
    response = api.patch(report_path(survey, receipt), {"outcome": "resigned"}, format="json")
    assert response.status_code == 404


def test_closed_survey_answers_410_and_keeps_the_report(api, survey, organizer_api):
    receipt = filed(api, survey)
    organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"status": "closed"}, format="json")
    response = api.patch(report_path(survey, receipt), {"unit": "Acme/Cloud"}, format="json")
    assert response.status_code == 410
    assert published(survey).get().unit.path == "Acme/Retail/Marketing"


def test_amends_share_the_daily_limit_of_receipt_look_ups(api, survey, settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 2
    receipt = filed(api, survey)
    assert api.delete(report_path(survey, "guess")).status_code == 404
    assert api.patch(report_path(survey, receipt), {"outcome": "resigned"},
                     format="json").status_code == 200
    response = api.patch(report_path(survey, receipt), {"outcome": "still_in_role"}, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert published(survey).get().outcome == "resigned"


def test_a_report_on_an_invite_only_survey_is_amended_by_its_receipt(api, organizer_api, survey):
    organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"access": "invite"}, format="json")
    [code] = services.invites_create(survey=survey, count=1)
    receipt = filed(api, survey, token=invite_token(api, survey, code))
    response = api.patch(report_path(survey, receipt), {"unit": "Acme/Cloud"}, format="json")
    assert response.status_code == 200
    assert published(survey).get().unit.path == "Acme/Cloud"


def test_an_amend_moves_the_report_between_cells_at_the_next_publication(survey):
    [receipt] = file_reports(survey, 1)
    publish(survey)
    services.report_amend(survey=survey, receipt=receipt,
                          changes={"unit": "Acme/Cloud", "period": dt.date(2026, 2, 3)})
    assert counted(survey)[("Acme/Retail/Marketing", JANUARY)] == 1
    publish(survey)
    assert ("Acme/Retail/Marketing", JANUARY) not in counted(survey)
    assert counted(survey)[("Acme/Cloud", FEBRUARY)] == 1
    assert cells(survey) == recounted(survey)


def test_an_amend_of_signals_only_recounts_its_one_cell(survey):
    [receipt] = file_reports(survey, 1)
    publish(survey)
    services.report_amend(survey=survey, receipt=receipt, changes={"signals": ["coaching_plan"]})
    publish(survey)
    assert cells(survey)[("Acme/Retail/Marketing", JANUARY)][1] == {"coaching_plan": 1}
    assert cells(survey) == recounted(survey)


def test_an_amend_that_changes_nothing_counted_changes_no_cell(survey):
    [receipt] = file_reports(survey, 1)
    publish(survey)
    before = cells(survey)
    services.report_amend(survey=survey, receipt=receipt, changes={"comment": "Later thoughts."})
    services.report_amend(survey=survey, receipt=receipt, changes={})
    assert published(survey).get().comment == "Later thoughts."
    assert cells(survey) == before


def test_amending_keeps_the_week_of_publication_and_stores_no_time(api, survey):
    receipt = filed(api, survey)
    # As if the report had been published weeks ago.
    arrived = dt.date(2026, 1, 19)
    published(survey).update(received_week=arrived)
    columns = {field.name for field in Report._meta.get_fields()}
    api.patch(report_path(survey, receipt), {"unit": "Acme/Cloud"}, format="json")
    assert published(survey).get().received_week == arrived
    assert columns == {"id", "survey", "unit", "period_start", "signals", "outcome", "comment",
                       "received_week", "receipt_hash"}


def test_cells_after_amends_through_the_api_equal_a_recount(
        api, survey, publish_at_once, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        receipts = [filed(api, survey) for _ in range(3)]
        filed(api, survey, unit="Acme/Cloud", outcome="still_in_role")
        api.patch(report_path(survey, receipts[0]),
                  {"unit": "Acme/Cloud", "period": "2026-02-10", "outcome": "resigned"},
                  format="json")
        api.patch(report_path(survey, receipts[1]), {"signals": ["coaching_plan"]},
                  format="json")
    after = cells(survey)
    assert after[("Acme/Retail/Marketing", JANUARY)] == (
        2, {"prior_positive_standing": 1, "abrupt_reversal": 1, "coaching_plan": 1}, {})
    assert after[("Acme/Cloud", FEBRUARY)][0] == 1
    assert after[("Acme", JANUARY)][0] == 3
    assert after[("Acme", FEBRUARY)] == (
        1, {"prior_positive_standing": 1, "abrupt_reversal": 1}, {"resigned": 1})
    assert after == recounted(survey)


def test_moving_the_only_report_of_a_cell_empties_it(api, survey):
    receipt = filed(api, survey, unit="Acme/Retail/Sales")
    publish(survey)
    assert cells(survey)[("Acme/Retail/Sales", JANUARY)][0] == 1
    api.patch(report_path(survey, receipt), {"unit": "Acme/Cloud"}, format="json")
    publish(survey)
    after = cells(survey)
    assert ("Acme/Retail/Sales", JANUARY) not in after
    assert ("Acme/Retail", JANUARY) not in after
    assert after[("Acme/Cloud", JANUARY)][0] == 1
    assert after == recounted(survey)


# Through the page


def opened(client, survey, receipt: str):
    return client.post(amend_path(survey), {"step": "open", "receipt": f" {receipt} "})


def saved_answers(receipt: str, **overrides) -> dict:
    data = {"step": "save", "receipt": receipt, "unit": "Acme/Retail/Marketing",
            "period": "2026-01-01", "signals": ["abrupt_reversal"], "outcome": "",
            "comment": ""}
    data.update(overrides)
    return data


def test_the_amend_page_asks_for_the_receipt_first(client, survey):
    response = client.get(amend_path(survey))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="receipt"' in body
    assert 'name="unit"' not in body


def test_the_amend_page_shows_the_stored_answers_prefilled(client, api, survey):
    receipt = filed(api, survey, outcome="still_in_role", comment="Same desk.")
    response = opened(client, survey, receipt)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="Acme/Retail/Marketing"' in body
    assert re.search(r'<option value="2026-01-01" selected>', body)
    assert re.search(r'value="abrupt_reversal"[^>]* checked', body)
    assert re.search(r'value="prior_positive_standing"[^>]* checked', body)
    assert not re.search(r'value="coaching_plan"[^>]* checked', body)
    assert re.search(r'<option value="still_in_role" selected>', body)
    assert "Same desk.</textarea>" in body
    assert f'name="receipt" value="{receipt}"' in body


def test_a_period_older_than_those_offered_stays_on_offer(client, api, survey):
    # inside the study window (three years back), before the 24 months offered
    day = (timezone.localdate().replace(day=1) - dt.timedelta(days=31 * 29)).replace(day=20)
    receipt = filed(api, survey, period=day.isoformat())
    body = opened(client, survey, receipt).content.decode()
    assert re.search(f'<option value="{day.replace(day=1).isoformat()}" selected>', body)


def test_saving_on_the_page_changes_the_report_and_cells_equal_a_recount(
        client, api, survey, publish_at_once, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        receipts = [filed(api, survey) for _ in range(3)]
        assert opened(client, survey, receipts[0]).status_code == 200
        response = client.post(amend_path(survey), saved_answers(
            receipts[0], unit="Acme/Cloud", period="2026-02-01", outcome="resigned",
            comment="Call me on 0151 496 0000"))
    assert response.status_code == 200
    assert "Your answers were changed." in response.content.decode()
    report = published(survey).get(receipt_hash=services.receipt_hash(receipts[0]))
    assert (report.unit.path, report.period_start, report.signals, report.outcome,
            report.comment) == ("Acme/Cloud", FEBRUARY, 2, "resigned", "Call me on [phone]")
    after = cells(survey)
    assert after[("Acme/Retail/Marketing", JANUARY)][0] == 2
    assert after[("Acme/Cloud", FEBRUARY)][0] == 1
    assert after == recounted(survey)


def test_page_errors_keep_the_typed_answers_and_change_nothing(client, api, survey):
    receipt = filed(api, survey)
    before = published(survey).values().get()
    response = client.post(amend_path(survey), saved_answers(receipt, unit="Acme/Nowhere",
                                                              comment="Kept"))
    assert response.status_code == 400
    body = response.content.decode()
    assert "Pick a unit from this survey" in body
    assert "Kept</textarea>" in body
    assert published(survey).values().get() == before


def test_an_unknown_receipt_on_the_page_is_404(client, api, survey):
    filed(api, survey)
    response = opened(client, survey, "not-a-receipt")
    assert response.status_code == 404
    assert "No report matches that receipt." in response.content.decode()
    response = client.post(amend_path(survey), saved_answers("not-a-receipt"))
    assert response.status_code == 404


def test_an_empty_receipt_on_the_page_is_a_400_with_a_message(client, survey):
    response = client.post(amend_path(survey), {"step": "open", "receipt": " "})
    assert response.status_code == 400
    assert "Paste your receipt." in response.content.decode()


def test_the_amend_page_of_a_closed_survey_is_410(client, api, survey, organizer_api):
    receipt = filed(api, survey)
    organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"status": "closed"}, format="json")
    assert client.get(amend_path(survey)).status_code == 410
    response = client.post(amend_path(survey), saved_answers(receipt, unit="Acme/Cloud"))
    assert response.status_code == 410
    assert published(survey).get().unit.path == "Acme/Retail/Marketing"


def test_page_look_ups_share_the_receipt_limit(client, api, survey, settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 2
    receipt = filed(api, survey)
    assert opened(client, survey, receipt).status_code == 200
    assert client.post(f"/s/{survey.share_token}/withdraw/",
                       {"receipt": receipt, "action": "check"}).status_code == 200
    response = client.post(amend_path(survey), saved_answers(receipt, unit="Acme/Cloud"))
    assert response.status_code == 429
    assert published(survey).get().unit.path == "Acme/Retail/Marketing"


def test_the_receipt_page_and_the_form_link_to_the_amend_page(client, survey):
    link = f'href="{amend_path(survey)}"'
    assert link in client.get(form_path(survey)).content.decode()
    receipt_page = client.post(form_path(survey), {
        "unit": "Acme/Cloud", "period": timezone.localdate().replace(day=1).isoformat()})
    assert link in receipt_page.content.decode()


# Reloading the receipt page


def fresh_form(client, survey) -> tuple[str, dict]:
    body = client.get(form_path(survey)).content.decode()
    token = re.search(r'name="submission_token" value="([^"]+)"', body).group(1)
    return token, {"unit": "Acme/Retail/Marketing",
                   "period": timezone.localdate().replace(day=1).isoformat(),
                   "signals": ["abrupt_reversal"], "submission_token": token}


def receipt_on(response) -> str | None:
    match = re.search(r'<code id="receipt">([^<]+)</code>', response.content.decode())
    return match and match.group(1)


def test_each_rendering_of_the_form_carries_a_fresh_token(client, survey):
    first, _data = fresh_form(client, survey)
    second, _data = fresh_form(client, survey)
    assert len(first) >= 43  # 256 bits, URL-safe base64
    assert first != second


def test_reposting_a_sent_form_files_nothing_and_shows_no_receipt(client, survey):
    _token, data = fresh_form(client, survey)
    first = client.post(form_path(survey), data)
    assert first.status_code == 201
    receipt = receipt_on(first)
    again = client.post(form_path(survey), data)
    assert again.status_code == 200
    body = again.content.decode()
    assert "This report was already received" in body
    assert receipt_on(again) is None
    assert receipt not in body
    assert published(survey).count() == 1


def test_another_rendering_of_the_form_files_another_report(client, survey):
    for _index in range(2):
        _token, data = fresh_form(client, survey)
        assert client.post(form_path(survey), data).status_code == 201
    assert published(survey).count() == 2


def test_a_reload_after_the_last_report_of_the_day_is_not_refused(client, survey, settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 1
    _token, data = fresh_form(client, survey)
    assert client.post(form_path(survey), data).status_code == 201
    response = client.post(form_path(survey), data)
    assert response.status_code == 200
    assert "This report was already received" in response.content.decode()


def test_a_form_sent_back_for_corrections_keeps_its_token_usable(client, survey):
    token, data = fresh_form(client, survey)
    rejected = client.post(form_path(survey), {**data, "unit": "Acme/Nowhere"})
    assert rejected.status_code == 400
    assert f'name="submission_token" value="{token}"' in rejected.content.decode()
    assert client.post(form_path(survey), data).status_code == 201
    assert published(survey).count() == 1


def test_a_membership_token_rejected_with_the_submission_token_leaves_both_usable(
        client, api, organizer_api, survey):
    organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"access": "invite"}, format="json")
    [code] = services.invites_create(survey=survey, count=1)
    membership_token = invite_token(api, survey, code)
    _token, data = fresh_form(client, survey)
    assert client.post(form_path(survey), {**data, "token": "A" * 400}).status_code == 400
    assert client.post(form_path(survey), {**data, "token": membership_token}).status_code == 201


def test_a_form_without_a_token_still_files(client, survey):
    _token, data = fresh_form(client, survey)
    del data["submission_token"]
    assert client.post(form_path(survey), data).status_code == 201
    assert client.post(form_path(survey), data).status_code == 201
    assert published(survey).count() == 2


def test_the_api_files_every_post(api, survey):
    filed(api, survey)
    filed(api, survey)
    assert published(survey).count() == 2


def test_the_cache_keeps_only_an_hmac_of_a_used_token(client, survey, settings):
    settings.CACHES = RECORDING
    recording = caches["default"]
    token, data = fresh_form(client, survey)
    assert recording.written == []  # issuing a token stores nothing
    client.post(form_path(survey), data)
    stored = [key for key in recording.written if "submission" in key]
    assert len(stored) == 1
    assert token not in stored[0]
    assert recording.get(stored[0]) is not None


@pytest.mark.services
def test_redis_holds_the_token_hmac_for_a_day_or_two_at_most(client, survey, settings):
    url = redis_url()
    require(redis_reachable(url), f"needs Redis at {url}")
    prefix = f"chorus-test-{survey.id}"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url, "KEY_PREFIX": prefix}}
    settings.CHORUS_SUBMISSIONS_PER_DAY = 0
    token, data = fresh_form(client, survey)
    assert client.post(form_path(survey), data).status_code == 201
    assert client.post(form_path(survey), data).status_code == 200
    redis = Redis.from_url(url)
    keys = redis.keys(f"{prefix}:*")
    try:
        assert len(keys) == 1
        assert token.encode() not in keys[0]
        assert token.encode() not in redis.get(keys[0])
        # Until a UTC midnight at least a day away: the TTL dates the day, not the time.
        assert 24 * 60 * 60 <= redis.ttl(keys[0]) <= 48 * 60 * 60
    finally:
        redis.delete(*keys)
    assert published(survey).count() == 1


def test_amend_on_a_week_survey_stores_the_monday(api, organizer):
    survey = survey_with_units(owner=organizer, paths=["Acme/Cloud", "Acme/Ops"], period="week")
    receipt = filed(api, survey, unit="Acme/Cloud")
    response = api.patch(report_path(survey, receipt), {"period": "2026-02-05"}, format="json")
    assert response.json()["period"] == "2026-02-02"


# In a real browser


@pytest.fixture(scope="module")
def chromium():
    import os

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    require(os.path.exists(CHROMIUM), f"Chromium is not installed at {CHROMIUM}")
    # Playwright's sync API runs an event loop in this thread.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def fill_report(page, survey, live_server):
    page.goto(f"{live_server.url}{form_path(survey)}")
    page.get_by_label("Your unit").fill("Acme/Retail/Marketing")
    page.get_by_label("When did the feedback change?").select_option(
        timezone.localdate().replace(day=1).isoformat())
    page.get_by_label("The feedback turned suddenly").check()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_form_lets_only_its_first_submit_through(chromium, live_server, survey):
    # A second click while the first answer loads would cancel that answer,
    # the one page that shows the receipt.
    context = chromium.new_context()
    page = context.new_page()
    fill_report(page, survey, live_server)
    prevented = page.evaluate("""() => {
        const form = document.querySelector("form[data-submit-once]");
        return [1, 2].map(() => {
            const event = new Event("submit", {cancelable: true});
            form.dispatchEvent(event);
            return event.defaultPrevented;
        });
    }""")
    assert prevented == [False, True]
    context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_respondent_reloads_the_receipt_page_then_amends_the_report(chromium, live_server,
                                                                       survey):
    context = chromium.new_context()
    page = context.new_page()
    fill_report(page, survey, live_server)
    page.get_by_role("button", name="Send my report").click()
    page.get_by_role("heading", name="Your report was received").wait_for()
    receipt = page.locator("#receipt").inner_text()
    page.reload()
    page.get_by_role("heading", name="This report was already received").wait_for()
    assert receipt not in page.content()
    assert published(survey).count() == 1

    page.get_by_role("link", name="Change a report you sent").click()
    page.get_by_label("Your receipt").fill(receipt)
    page.get_by_role("button", name="Show my answers").click()
    unit = page.get_by_label("Your unit")
    assert unit.input_value() == "Acme/Retail/Marketing"
    assert page.get_by_label("The feedback turned suddenly").is_checked()
    unit.fill("Acme/Cloud")
    page.get_by_label("The feedback turned suddenly").uncheck()
    page.get_by_role("button", name="Save my changes").click()
    page.get_by_text("Your answers were changed.").wait_for()
    report = published(survey).get()
    assert (report.unit.path, report.signals) == ("Acme/Cloud", 0)
    context.close()
