"""The bundled browser client (surveys/static/surveys/vendor/tokens.js, built from
@cloudflare/privacypass-ts by scripts/build-js) buys a token in real Chromium that the
server accepts on a report, once."""

import json
import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail

from surveys import services
from surveys.models import HeldReport, InviteCode, Survey
from tests.browser import axe_violations, screenshot
from tests.conftest import require
from tests.factories import OrganizerFactory, report_payload
from tests.test_membership_dkim import message as dkim_message

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BUNDLE = Path(settings.BASE_DIR) / "surveys" / "static" / "surveys" / "vendor" / "tokens.js"

BUY = """async ([base, email, code]) => {
  const key = await (await fetch(base + "/token-key/")).json();
  const {tokenRequest, state} = await ChorusTokens.request(key.token_key, key.challenge);
  const issued = await fetch(base + "/tokens/", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({email, code, token_request: tokenRequest})});
  if (issued.status !== 200) { return {status: issued.status, body: await issued.text()}; }
  const token = await ChorusTokens.finalize(state, (await issued.json()).token_response);
  return {status: 200, token};
}"""

FILE = """async ([base, body]) => {
  const filed = await fetch(base + "/reports/", {method: "POST",
    headers: {"Content-Type": "application/json"}, body});
  return {status: filed.status, body: await filed.text()};
}"""


def test_the_bundled_client_buys_a_token_the_server_accepts_once(browser, live_server):
    require(BUNDLE.is_file(), "needs the token bundle: run scripts/build-js")
    survey = services.survey_create(owner=OrganizerFactory(), title="Verified", min_group_size=3,
                                    access=Survey.Access.VERIFIED, email_domains=["acme.example"])
    services.units_upsert(survey=survey, units=[{"path": "Acme/Retail/Marketing"}])
    base = f"{live_server.url}/api/v1/s/{survey.share_token}"
    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    # Served from the site itself, under its content policy.
    page.add_script_tag(url="/static/surveys/vendor/tokens.js")
    assert page.evaluate("ChorusTokens.tokenType") == 2

    asked = page.evaluate("""async ([base, email]) => (await fetch(base + "/verification/", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({email})})).status""", [base, "dana@acme.example"])
    assert asked == 202
    code = re.search(r"\b(\d{8})\b", mail.outbox[-1].body)[1]

    bought = page.evaluate(BUY, [base, "dana@acme.example", code])
    assert bought["status"] == 200, bought
    body = json.dumps({**report_payload(), "token": bought["token"]})
    filed = page.evaluate(FILE, [base, body])
    assert filed["status"] == 201, filed
    # No content-policy or script error on the way (the replay below logs its 400).
    assert errors == []
    again = page.evaluate(FILE, [base, body])
    assert again["status"] == 400
    assert json.loads(again["body"])["token"] == ["This membership token was already used."]
    assert HeldReport.objects.filter(survey=survey).count() == 1
    context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_a_coworker_verifies_and_reports_through_the_form_alone(browser, live_server, width):
    require(BUNDLE.is_file(), "needs the token bundle: run scripts/build-js")
    survey = services.survey_create(owner=OrganizerFactory(), title="Verified", min_group_size=3,
                                    access=Survey.Access.VERIFIED, email_domains=["acme.example"])
    services.units_upsert(survey=survey, units=[{"path": "Acme/Retail/Marketing"}])
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    assert axe_violations(page) == []

    page.get_by_label("Your work email address").fill("dana@acme.example")
    page.get_by_role("button", name="Email me a code").click()
    page.locator(".verify-status").filter(has_text="a code is on its way").wait_for()
    code = re.search(r"\b(\d{8})\b", mail.outbox[-1].body)[1]
    page.get_by_label("The code from the email").fill(code)
    page.get_by_role("button", name="Get my token").click()
    page.locator(".verify-status").filter(has_text="token is ready").wait_for()
    key = f"chorus-token:{survey.id}"
    assert page.evaluate(f"localStorage.getItem('{key}')")
    screenshot(page, f"form-verified-{width}")
    # Nothing scrolls sideways on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    unit = page.get_by_role("combobox", name="Your unit")
    unit.fill("Acme/Retail/Marketing")
    page.get_by_label("When did the feedback change?").select_option(index=1)
    page.get_by_label("The feedback turned suddenly").check()
    page.get_by_role("button", name="Send my report").click()
    page.get_by_role("heading", name="Your report was received").wait_for()
    # The spent token is forgotten by the browser too.
    assert page.evaluate(f"localStorage.getItem('{key}')") is None
    assert HeldReport.objects.filter(survey=survey).count() == 1
    context.close()


def fill_answers_and_send(page):
    page.get_by_role("combobox", name="Your unit").fill("Acme/Retail/Marketing")
    page.get_by_label("When did the feedback change?").select_option(index=1)
    page.get_by_label("The feedback turned suddenly").check()
    page.get_by_role("button", name="Send my report").click()
    page.get_by_role("heading", name="Your report was received").wait_for()


def test_a_coworker_proves_the_address_with_a_message_already_received(
        browser, live_server, settings, tmp_path):
    require(BUNDLE.is_file(), "needs the token bundle: run scripts/build-js")
    settings.CHORUS_DKIM_TXT_LOOKUP = "tests.test_membership_dkim.static_txt"
    survey = services.survey_create(owner=OrganizerFactory(), title="Verified", min_group_size=3,
                                    access=Survey.Access.VERIFIED, email_domains=["acme.example"])
    services.units_upsert(survey=survey, units=[{"path": "Acme/Retail/Marketing"}])
    saved = tmp_path / "payslip.eml"
    saved.write_bytes(dkim_message(to="dana@acme.example"))
    context = browser.new_context(viewport={"width": 390, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    page.get_by_text("Or use an email you already received").click()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Get my token with this message").click()
    page.locator(".verify-status").filter(has_text="Choose the message file first").wait_for()
    page.get_by_label("The message file (.eml)").set_input_files(str(saved))
    page.get_by_role("button", name="Get my token with this message").click()
    page.locator(".verify-status").filter(has_text="token is ready").wait_for()
    assert mail.outbox == []  # nothing arrived at work
    fill_answers_and_send(page)
    assert HeldReport.objects.filter(survey=survey).count() == 1
    # The same message buys no second token.
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    page.get_by_text("Or use an email you already received").click()
    page.get_by_label("The message file (.eml)").set_input_files(str(saved))
    page.get_by_role("button", name="Get my token with this message").click()
    page.locator(".verify-status").filter(has_text="already has its token").wait_for()
    context.close()


def test_an_invitee_buys_a_token_with_the_code_and_reports_through_the_form(
        browser, live_server):
    require(BUNDLE.is_file(), "needs the token bundle: run scripts/build-js")
    survey = services.survey_create(owner=OrganizerFactory(), title="Invited", min_group_size=3,
                                    access=Survey.Access.INVITE)
    services.units_upsert(survey=survey, units=[{"path": "Acme/Retail/Marketing"}])
    [code] = services.invites_create(survey=survey, count=1)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/s/{survey.share_token}/")
    assert axe_violations(page) == []
    page.get_by_role("textbox", name="Your invite code").fill("AAAA-BBBB-CCCC-DDDD")
    page.get_by_role("button", name="Get my token").click()
    page.locator(".verify-status").filter(has_text="not valid for this survey").wait_for()
    page.get_by_role("textbox", name="Your invite code").fill(code.lower())
    page.get_by_role("button", name="Get my token").click()
    page.locator(".verify-status").filter(has_text="token is ready").wait_for()
    screenshot(page, "form-invite-1280")
    assert InviteCode.objects.filter(survey=survey).count() == 0
    fill_answers_and_send(page)
    assert HeldReport.objects.filter(survey=survey).count() == 1
    assert page.evaluate(f"localStorage.getItem('chorus-token:{survey.id}')") is None
    context.close()
