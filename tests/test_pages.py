import datetime as dt
import html
import re
from html.parser import HTMLParser

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from surveys import catalog, services
from surveys.models import Report
from surveys.scrub import comment_scrub
from tests.factories import (
    OrganizerFactory,
    file_reports,
    publish,
    stored_count,
    survey_with_units,
)

pytestmark = pytest.mark.django_db


class Tags(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(response) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(response.content.decode())
    return parser.tags


def form_path(survey) -> str:
    return f"/s/{survey.share_token}/"


def this_month() -> str:
    return timezone.localdate().replace(day=1).isoformat()


def answers(**overrides) -> dict:
    data = {"unit": "Acme/Retail/Marketing", "period": this_month(),
            "signals": ["prior_positive_standing", "abrupt_reversal"], "outcome": "", "comment": ""}
    data.update(overrides)
    return data


def receipt_of(response) -> str:
    match = re.search(r'<code id="receipt">([^<]+)</code>', response.content.decode())
    assert match, "no receipt on the page"
    return match.group(1)


# The form


def test_form_offers_every_unit_to_pick_from(client, survey):
    response = client.get(form_path(survey))
    assert response.status_code == 200
    offered = {attrs["value"] for tag, attrs in tags(response) if tag == "option"
               and "value" in attrs and attrs["value"].startswith("Acme")}
    assert offered == {"Acme", "Acme/Retail", "Acme/Retail/Marketing", "Acme/Retail/Sales",
                       "Acme/Cloud"}


def test_form_invites_a_coarser_unit(client, survey):
    body = client.get(form_path(survey)).content.decode()
    assert "Pick the smallest group you are comfortable naming" in body
    assert "larger groups protect you better" in body


def test_form_offers_periods_as_choices_not_a_free_date(client, survey):
    page = tags(client.get(form_path(survey)))
    assert not [attrs for tag, attrs in page if tag == "input" and attrs.get("type") == "date"]
    select = [attrs for tag, attrs in page if tag == "select" and attrs.get("name") == "period"]
    assert select
    values = [attrs["value"] for tag, attrs in page if tag == "option"
              and re.fullmatch(r"\d{4}-\d{2}-01", attrs.get("value", ""))]
    assert values[0] == this_month()
    assert len(values) == 24


def test_weekly_survey_offers_mondays(client, organizer):
    survey = survey_with_units(owner=organizer, paths=["Acme"], period="week")
    page = tags(client.get(form_path(survey)))
    values = [dt.date.fromisoformat(attrs["value"]) for tag, attrs in page if tag == "option"
              and re.fullmatch(r"\d{4}-\d{2}-\d{2}", attrs.get("value", ""))]
    assert values
    assert {day.weekday() for day in values} == {0}


def test_every_signal_is_a_checkbox_with_its_description(client, survey):
    response = client.get(form_path(survey))
    body = response.content.decode()
    boxes = {attrs["value"] for tag, attrs in tags(response) if tag == "input"
             and attrs.get("type") == "checkbox" and attrs.get("name") == "signals"}
    assert boxes == set(catalog.SIGNAL_CODES)
    for entry in catalog.SIGNALS:
        assert str(entry.description).replace("'", "&#x27;") in body


def test_every_form_control_has_a_label(client, survey):
    response = client.get(form_path(survey))
    page = tags(response)
    label_targets = {attrs["for"] for tag, attrs in page if tag == "label" and "for" in attrs}
    controls = [attrs for tag, attrs in page if tag in {"input", "select", "textarea"}
                and attrs.get("type") != "hidden"]
    assert controls
    for attrs in controls:
        assert attrs.get("id") in label_targets, attrs


def fields_by_form(response) -> dict[str, set[str]]:
    """The names each form of a page sends, by the form's action."""
    forms: dict[str, set[str]] = {}
    action = None
    for tag, attrs in tags(response):
        if tag == "form":
            action = attrs.get("action", "")
            forms.setdefault(action, set())
        elif tag in {"input", "select", "textarea", "button"} and "name" in attrs:
            forms[action].add(attrs["name"])
    return forms


def test_form_collects_nothing_beyond_its_fields(client, survey):
    forms = fields_by_form(client.get(form_path(survey)))
    # The report form posts to the page itself. submission_token is random per rendering
    # and kept only as an HMAC once used.
    assert forms.pop("") == {"unit", "period", "signals", "outcome", "comment",
                                            "submission_token"}
    # The language switcher at the foot of the page: the language and where to come back.
    assert forms == {"/i18n/setlang/": {"language", "next"}}


def test_form_post_is_accepted_with_the_null_origin_no_referrer_causes(survey):
    # Under `Referrer-Policy: no-referrer` browsers send `Origin: null`.
    client = Client(enforce_csrf_checks=True)
    response = client.post(form_path(survey), answers(), HTTP_ORIGIN="null")
    assert response.status_code == 201
    receipt = receipt_of(response)
    response = client.post(f"/s/{survey.share_token}/withdraw/", {"receipt": receipt},
                           HTTP_ORIGIN="null")
    assert response.status_code == 200


def test_form_warns_against_names_in_the_comment(client, survey):
    body = client.get(form_path(survey)).content.decode()
    assert "No names, please." in body
    assert 'maxlength="2000"' in body


def test_form_states_what_is_stored_and_who_sees_what(client, survey):
    body = client.get(form_path(survey)).content.decode()
    for heading in ("What is stored", "What is not stored", "Who sees what", "Your receipt"):
        assert heading in body
    assert "smaller than 3 is hidden" in body


def test_form_has_no_inline_script_and_loads_only_local_assets(client, survey):
    response = client.get(form_path(survey))
    body = response.content.decode()
    for tag, attrs in tags(response):
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/"), attrs
        for name in ("src", "href", "action"):
            value = attrs.get(name, "")
            assert not re.match(r"(?i)(https?:)?//", value), (tag, attrs)
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
    assert "style=" not in body


def test_scripts_and_styles_the_pages_load_exist_in_static_files(client, survey):
    page = tags(client.get(form_path(survey)))
    assets = [attrs.get("src") or attrs.get("href") for tag, attrs in page
              if tag == "script" or (tag == "link" and attrs.get("rel") == "stylesheet")]
    assert len(assets) == 2
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset


def test_a_report_sent_through_the_form_is_stored_with_its_answers(client, survey):
    response = client.post(form_path(survey), answers(outcome="resigned",
                                                      comment="Call me on +1 415 555 0132"))
    assert response.status_code == 201
    publish(survey)
    report = Report.objects.get()
    assert report.unit.path == "Acme/Retail/Marketing"
    assert report.period_start == timezone.localdate().replace(day=1)
    assert catalog.mask_to_signals(report.signals) == ["prior_positive_standing",
                                                        "abrupt_reversal"]
    assert report.outcome == "resigned"
    assert report.comment == "Call me on [phone]"


def test_extra_posted_fields_are_ignored(client, survey):
    response = client.post(form_path(survey), answers(timezone="Europe/Berlin",
                                                      screen="390x844", referrer="x"))
    assert response.status_code == 201
    publish(survey)
    stored = Report.objects.values().get()
    assert "Europe/Berlin" not in str(stored)
    assert "390x844" not in str(stored)


def test_unknown_unit_is_a_400_with_a_message_at_the_field(client, survey):
    response = client.post(form_path(survey), answers(unit="Acme/Nowhere"))
    assert response.status_code == 400
    body = response.content.decode()
    assert "Pick a unit from this survey" in body
    assert 'id="unit-errors"' in body
    assert 'value="Acme/Nowhere"' in body
    assert not stored_count()


def test_missing_unit_and_period_are_400_with_messages(client, survey):
    response = client.post(form_path(survey), answers(unit="", period=""))
    assert response.status_code == 400
    body = response.content.decode()
    assert "Type or pick your unit." in body
    assert "Pick the month or week when it started." in body


@pytest.mark.parametrize(("field", "value"), [
    ("period", "1999-01-01"),
    ("period", "not-a-date"),
    ("signals", ["made_up"]),
    ("outcome", "promoted"),
    ("comment", "x" * 2001),
])
def test_malformed_answers_are_400_not_500(client, survey, field, value):
    response = client.post(form_path(survey), answers(**{field: value}))
    assert response.status_code == 400
    assert f'id="{field}-errors"' in response.content.decode()
    assert not stored_count()


def test_unknown_share_token_is_a_friendly_404(client, db):
    response = client.get("/s/no-such-token/")
    assert response.status_code == 404
    assert "This page does not exist" in response.content.decode()


# Closed surveys


def test_closed_survey_answers_410_with_a_friendly_page(client, survey):
    services.survey_update(survey=survey, fields={"status": "closed"})
    response = client.get(form_path(survey))
    assert response.status_code == 410
    body = response.content.decode()
    assert "This survey is closed" in body
    assert set(fields_by_form(response)) == {"/i18n/setlang/"}


def test_closed_survey_refuses_a_posted_report_with_410(client, survey):
    services.survey_update(survey=survey, fields={"status": "closed"})
    response = client.post(form_path(survey), answers())
    assert response.status_code == 410
    assert not stored_count()


# The receipt


def test_receipt_is_shown_once_and_never_cached(client, survey):
    response = client.post(form_path(survey), answers())
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    receipt = receipt_of(response)
    assert len(receipt) >= 22
    assert receipt not in client.get(form_path(survey)).content.decode()
    publish(survey)
    assert Report.objects.get().receipt_hash == services.receipt_hash(receipt)


def test_receipt_page_warns_it_cannot_be_recovered_and_gates_the_dashboard_link(client, survey):
    body = client.post(form_path(survey), answers()).content.decode()
    assert "It cannot be recovered." in body
    saved = body.index('id="saved"')
    link = body.index(f'href="/d/{survey.dashboard_token}/"')
    assert saved < link
    assert "See whether it" in body[link:]
    assert 'data-copy="receipt"' in body


def test_the_form_links_to_the_shared_dashboard_before_anyone_reports(client, survey):
    body = client.get(form_path(survey)).content.decode()
    form_start = body.index("<form")
    assert f'href="/d/{survey.dashboard_token}/"' in body[:form_start]


def test_receipt_names_the_chosen_period_and_says_no_time_of_sending_is_kept(client, survey):
    """A respondent who chose an earlier month must not read the receipt as having dated
    the report to this week."""
    earlier = (timezone.localdate().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    body = html.unescape(client.post(form_path(survey),
                                     answers(period=earlier.isoformat())).content.decode())
    assert f"under the period you chose: {earlier:%B %Y}" in body
    assert "keeps no date or time of sending" in body
    assert "It is dated to the week of" not in body


def test_receipt_proves_the_report_is_held(client, survey):
    receipt = receipt_of(client.post(form_path(survey), answers()))
    withdraw = f"/s/{survey.share_token}/withdraw/"
    response = client.post(withdraw, {"receipt": f"  {receipt} ", "action": "check"})
    assert response.status_code == 200
    assert "a report with this receipt is held" in response.content.decode()
    assert stored_count() == 1


def test_checking_an_unknown_receipt_is_404(client, survey):
    response = client.post(f"/s/{survey.share_token}/withdraw/",
                           {"receipt": "not-a-receipt", "action": "check"})
    assert response.status_code == 404
    assert "No report matches that receipt." in response.content.decode()


def test_withdrawing_through_the_page_deletes_the_report_once(client, survey):
    receipt = receipt_of(client.post(form_path(survey), answers()))
    withdraw = f"/s/{survey.share_token}/withdraw/"
    response = client.post(withdraw, {"receipt": receipt, "action": "withdraw"})
    assert response.status_code == 200
    assert "Your report was withdrawn." in response.content.decode()
    assert not stored_count()
    assert client.post(withdraw, {"receipt": receipt, "action": "withdraw"}).status_code == 404


def test_withdrawing_without_an_action_still_withdraws(client, survey):
    [receipt] = file_reports(survey, 1)
    response = client.post(f"/s/{survey.share_token}/withdraw/", {"receipt": receipt})
    assert response.status_code == 200
    assert not stored_count()


def test_empty_receipt_is_a_400_with_a_message(client, survey):
    response = client.post(f"/s/{survey.share_token}/withdraw/", {"receipt": "  "})
    assert response.status_code == 400
    assert "Paste your receipt." in response.content.decode()


def test_withdrawing_still_works_after_the_survey_closes(client, survey):
    [receipt] = file_reports(survey, 1)
    services.survey_update(survey=survey, fields={"status": "closed"})
    response = client.post(f"/s/{survey.share_token}/withdraw/", {"receipt": receipt})
    assert response.status_code == 200
    assert not stored_count()


# Headers on every respondent page


def respondent_responses(survey) -> dict:
    client = Client()
    closed = survey_with_units(owner=OrganizerFactory(), paths=["Other"])
    services.survey_update(survey=closed, fields={"status": "closed"})
    return {
        "form": client.get(form_path(survey)),
        "form with errors": client.post(form_path(survey), answers(unit="")),
        "receipt": client.post(form_path(survey), answers()),
        "withdraw": client.get(f"/s/{survey.share_token}/withdraw/"),
        "closed": client.get(form_path(closed)),
        "not found": client.get("/s/nothing-here/"),
        "shared dashboard": client.get(f"/d/{survey.dashboard_token}/"),
    }


def test_every_respondent_page_sends_the_protective_headers(survey):
    for name, response in respondent_responses(survey).items():
        assert response["Referrer-Policy"] == "no-referrer", name
        assert response["X-Frame-Options"] == "DENY", name
        assert response["X-Content-Type-Options"] == "nosniff", name
        policy = response["Content-Security-Policy"]
        directives = dict([*part.strip().split(" ", 1), ""][:2]
                          for part in policy.split(";") if part.strip())
        assert directives["default-src"] == "'self'", name
        assert "'unsafe-inline'" not in directives["script-src"], name
        assert "'unsafe-eval'" not in directives["script-src"], name
        assert directives["frame-ancestors"] == "'none'", name
        assert not re.search(r"https?:|\*|//", policy), (name, policy)


def test_respondent_pages_are_never_cached(survey):
    for name, response in respondent_responses(survey).items():
        if name in {"closed", "not found"}:
            continue
        assert "no-store" in response["Cache-Control"], name


def test_respondent_pages_set_no_cookie(survey):
    for name, response in respondent_responses(survey).items():
        assert not response.cookies, name
        assert "Set-Cookie" not in response, name


# Comment scrubbing: what is removed, and what must survive.

SCRUB_CASES = [
    # emails
    ("Write to jane.doe@acme.com please", "Write to [email] please"),
    ("JANE_DOE+hr@mail.acme.co.uk told me", "[email] told me"),
    # phone numbers in several formats
    ("call me on +1 (415) 555-0132", "call me on [phone]"),
    ("my mobile is 07700 900123.", "my mobile is [phone]."),
    ("+44 20 7946 0958", "[phone]"),
    ("office 030 1234 5678, ask for HR", "office [phone], ask for HR"),
    ("415.555.0132 after six", "[phone] after six"),
    ("(0)30-12345678", "[phone]"),
    # links
    ("see https://intranet.acme.com/people/jdoe?x=1 for the plan",
     "see [link] for the plan"),
    ("www.example.org/page", "[link]"),
    ("look at linkedin.com/in/janedoe", "look at [link]"),
    # handles
    ("ping @jdoe_42 on slack", "ping [handle] on slack"),
    ("ask @maria.k or @tom-b", "ask [handle] or [handle]"),
    # innocent text that must survive unchanged
    ("My rating went from 4.5 to 2.0 in 3 weeks", None),
    ("The 1:1 on 12.03.2025 did not mention any of it", None),
    ("It happened on 2024-11-05 and again on 2024-12-03", None),
    ("Meeting at 10:30-11:00 with 8 people, Q3 2025", None),
    ("Version 1.2.3 of the plan, e.g. the goals, i.e. targets", None),
    ("Salary band went from 120,000 to 95,000", None),
    ("We were 12 of 40 on the team; 5 got the same 'Focus' plan", None),
    ("DM me @ lunch, lol", None),
]


@pytest.mark.parametrize(("text", "expected"), SCRUB_CASES)
def test_comment_scrub_removes_contact_details_and_keeps_the_rest(text, expected):
    assert comment_scrub(text) == (text if expected is None else expected)
