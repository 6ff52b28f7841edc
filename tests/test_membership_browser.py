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
from surveys.models import HeldReport, Survey
from tests.conftest import require
from tests.factories import OrganizerFactory, report_payload

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
