"""Everything an organizer does is possible through the web pages, with messages that say
what happened and errors under the control that caused them."""

import datetime as dt
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from surveys import intake, selectors, services
from surveys.models import Report, Survey
from tests.factories import (
    OrganizerFactory,
    file_reports,
    publish,
    report_payload,
    survey_with_units,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def organizer_client(client, organizer):
    client.force_login(organizer)
    return client


def survey_page(client, survey):
    return client.get(reverse("organizer-survey", args=[survey.id]))


def test_a_survey_is_created_with_its_access_and_closing_day_through_the_page(
        organizer_client, organizer):
    closes = timezone.localdate() + dt.timedelta(days=30)
    response = organizer_client.post(reverse("organizer-surveys"), {
        "title": "Q4 feedback", "period": "week", "min_group_size": "6", "access": "invite",
        "closes_on": closes.isoformat()}, follow=True)
    survey = Survey.objects.get(owner=organizer)
    assert (survey.title, survey.period, survey.min_group_size, survey.access,
            survey.closes_on) == ("Q4 feedback", "week", 6, "invite", closes)
    assert "Survey created." in response.content.decode()


def test_the_create_form_explains_every_field(organizer_client):
    body = organizer_client.get(reverse("organizer-surveys")).content.decode()
    for field in ("title", "period", "min_group_size", "access", "email_domains", "closes_on"):
        assert f'id="id_{field}_helptext"' in body, field
    # Radio buttons for access (link, invite, verified), each with its own label.
    assert body.count('name="access"') == 3


def test_a_closing_day_in_the_past_is_refused_under_its_field(organizer_client, organizer):
    past = timezone.localdate() - dt.timedelta(days=1)
    response = organizer_client.post(reverse("organizer-surveys"), {
        "title": "Late", "period": "month", "min_group_size": "5", "access": "link",
        "closes_on": past.isoformat()})
    assert response.status_code == 400
    body = response.content.decode()
    assert re.search(r'id="id_closes_on_error".*?</div>\s*<input[^>]+name="closes_on"', body,
                     re.S)
    assert not Survey.objects.filter(owner=organizer).exists()


def test_settings_rename_the_survey_and_change_access_and_the_closing_day(
        organizer_client, survey):
    closes = timezone.localdate() + dt.timedelta(days=10)
    response = organizer_client.post(
        reverse("organizer-survey-settings", args=[survey.id]),
        {"title": "Renamed", "access": "invite", "closes_on": closes.isoformat()}, follow=True)
    survey.refresh_from_db()
    assert (survey.title, survey.access, survey.closes_on) == ("Renamed", "invite", closes)
    assert "Settings saved." in response.content.decode()


def test_settings_with_a_blank_title_are_refused_and_keep_the_old_ones(organizer_client, survey):
    response = organizer_client.post(reverse("organizer-survey-settings", args=[survey.id]),
                                     {"title": "", "access": "link", "closes_on": ""})
    assert response.status_code == 400
    assert 'id="id_title_error"' in response.content.decode()
    survey.refresh_from_db()
    assert survey.title != ""


def test_closing_and_reopening_the_survey_through_the_page(organizer_client, client, survey):
    status_url = reverse("organizer-survey-status", args=[survey.id])
    response = organizer_client.post(status_url, {"status": "closed"}, follow=True)
    survey.refresh_from_db()
    assert not survey.is_open
    assert "The survey is closed" in response.content.decode()
    assert client.get(reverse("respondent-form", args=[survey.share_token])).status_code == 410
    organizer_client.post(status_url, {"status": "open"})
    survey.refresh_from_db()
    assert survey.is_open


def test_reopening_a_survey_past_its_last_day_lifts_that_day(organizer_client, survey):
    Survey.objects.filter(id=survey.id).update(closes_on=timezone.localdate()
                                               - dt.timedelta(days=2))
    organizer_client.post(reverse("organizer-survey-status", args=[survey.id]),
                          {"status": "open"})
    survey.refresh_from_db()
    assert survey.is_open
    assert survey.closes_on is None


def test_an_unknown_status_changes_nothing(organizer_client, survey):
    response = organizer_client.post(reverse("organizer-survey-status", args=[survey.id]),
                                     {"status": "deleted"}, follow=True)
    survey.refresh_from_db()
    assert survey.status == Survey.Status.OPEN
    assert "Choose to close or to reopen" in response.content.decode()


def test_a_new_share_link_stops_the_old_one(organizer_client, client, survey):
    old = survey.share_token
    response = organizer_client.post(reverse("organizer-share-rotate", args=[survey.id]),
                                     follow=True)
    survey.refresh_from_db()
    assert survey.share_token != old
    assert client.get(reverse("respondent-form", args=[old])).status_code == 404
    assert client.get(reverse("respondent-form", args=[survey.share_token])).status_code == 200
    body = response.content.decode()
    assert "The share link is new" in body
    assert f"/s/{survey.share_token}/" in body


def test_a_new_dashboard_link_says_so(organizer_client, survey):
    response = organizer_client.post(reverse("organizer-dashboard-rotate", args=[survey.id]),
                                     follow=True)
    assert "The dashboard link is new" in response.content.decode()


def test_both_links_have_a_copy_button_and_a_qr_code_drawn_without_inline_style(
        organizer_client, survey):
    body = survey_page(organizer_client, survey).content.decode()
    assert 'data-copy="share-url"' in body
    assert 'data-copy="dashboard-url"' in body
    codes = re.findall(r"<svg[^>]*class=\"qr\".*?</svg>", body, re.S)
    assert len(codes) == 2
    for svg in codes:
        assert "style" not in svg
        assert "<path" in svg
        assert "http" not in svg


def test_the_tree_is_shown_with_its_counts_and_headcounts(organizer_client, organizer):
    survey = survey_with_units(owner=organizer, paths=["Co/Sales/East", "Co/Sales/West",
                                                       "Co/Ops"])
    organizer_client.post(reverse("organizer-survey", args=[survey.id]),
                          {"units": "Co/Sales/East,12\nCo/Ops,30"})
    body = survey_page(organizer_client, survey).content.decode()
    # Co, Co/Sales, Co/Sales/East, Co/Sales/West, Co/Ops.
    assert "5 units" in body
    assert "3 levels" in body
    assert "1 at the top" in body
    assert "headcount given for 2 units, 42 people in all" in body
    assert re.search(r'title="Co/Sales/East">East</span></th><td class="num">12</td>', body)


def test_loading_units_says_how_many_were_saved(organizer_client, survey):
    response = organizer_client.post(reverse("organizer-survey", args=[survey.id]),
                                     {"units": "Acme/New,4"}, follow=True)
    assert "Saved 1 unit." in response.content.decode()


def test_a_csv_with_errors_is_answered_under_the_file_control(organizer_client, survey):
    upload = ("units.csv", b"path,headcount\nAcme/Ok,3\nAcme//Broken,x\n", "text/csv")
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = organizer_client.post(reverse("organizer-units-csv", args=[survey.id]),
                                     {"file": SimpleUploadedFile(*upload)})
    assert response.status_code == 400
    body = response.content.decode()
    assert re.search(r'id="units-file-errors".*?line 3.*?</div>\s*<input type="file"', body,
                     re.S | re.I)
    assert not survey.units.filter(path="Acme/Ok").exists()


def test_another_organizer_can_change_nothing(client, survey):
    client.force_login(OrganizerFactory())
    for name, data in (("organizer-survey-settings", {"title": "x", "access": "link"}),
                       ("organizer-survey-status", {"status": "closed"}),
                       ("organizer-share-rotate", {})):
        assert client.post(reverse(name, args=[survey.id]), data).status_code == 404
    fresh = Survey.objects.get(id=survey.id)
    assert (fresh.title, fresh.status, fresh.share_token) == (
        survey.title, survey.status, survey.share_token)


def test_the_site_root_introduces_chorus_instead_of_a_login_form(client, db):
    body = client.get("/").content.decode()
    assert "Privacy, in three lines" in body
    assert "Start a survey" in body
    assert 'type="password"' not in body


def remove(client, survey, path):
    return client.post(reverse("organizer-unit-remove", args=[survey.id]), {"path": path},
                       follow=True)


def test_a_mistyped_unit_split_at_a_slash_is_removed_with_what_is_below_it(
        organizer_client, client, organizer):
    survey = survey_with_units(owner=organizer, paths=["Co/Sales", "Co/Sales East/North",
                                                       "Co/Ops"])
    body = remove(organizer_client, survey, "Co/Sales East").content.decode()
    assert "Removed Co/Sales East and the unit below it from the form." in body
    assert selectors.unit_paths(survey=survey) == ["Co", "Co/Ops", "Co/Sales"]
    form = client.get(reverse("respondent-form", args=[survey.share_token])).content.decode()
    assert "Sales East" not in form
    response = client.post(f"/api/v1/s/{survey.share_token}/reports/", report_payload(
        unit="Co/Sales East/North"), content_type="application/json")
    assert response.status_code == 400
    assert "unit" in response.json()


def test_removing_a_unit_answers_alike_whatever_was_reported_and_keeps_its_reports(
        organizer_client, client, survey):
    file_reports(survey, 3, unit="Acme/Cloud")
    publish(survey)
    file_reports(survey, 1, unit="Acme/Retail/Marketing")  # held for the next publication
    answers = [remove(organizer_client, survey, path).content.decode().split(
        '<ul class="messages"', 1)[1].split("</ul>")[0]
        for path in ("Acme/Cloud", "Acme/Retail/Marketing", "Acme/Retail/Sales")]
    assert [answer.replace(path, "UNIT") for answer, path in zip(
        answers, ("Acme/Cloud", "Acme/Retail/Marketing", "Acme/Retail/Sales"),
        strict=True)] == [answers[0].replace("Acme/Cloud", "UNIT")] * 3
    publish(survey)
    assert Report.objects.filter(survey=survey, unit__path="Acme/Cloud").count() == 3
    assert Report.objects.filter(survey=survey, unit__path="Acme/Retail/Marketing").count() == 1
    # Still in the figures, removed or not: no row drops out to say what was reported.
    units = {row["unit"] for row in client.get(
        f"/api/v1/d/{survey.dashboard_token}/aggregates/").json()["units"]}
    assert {"Acme/Cloud", "Acme/Retail/Marketing", "Acme/Retail/Sales"} <= units


def test_a_copy_of_the_survey_read_before_a_removal_cannot_file_to_the_removed_unit(
        organizer_client, survey):
    stale = Survey.objects.get(id=survey.id)
    refused = services.ReportDraft(unit="Acme/Retail/Sales", period=timezone.localdate(),
                                   signals=(), outcome="no such outcome")
    with pytest.raises(ValidationError):
        intake.report_create(survey=stale, draft=refused)  # the unit's id is now kept
    remove(organizer_client, survey, "Acme/Retail/Sales")
    with pytest.raises(intake.SurveyChanged):
        intake.report_create(survey=stale, draft=services.ReportDraft(
            unit="Acme/Retail/Sales", period=timezone.localdate(), signals=()))
    with pytest.raises(ValidationError):
        intake.report_create(survey=Survey.objects.get(id=survey.id), draft=services.ReportDraft(
            unit="Acme/Retail/Sales", period=timezone.localdate(), signals=()))


def test_loading_a_removed_unit_again_brings_it_back(organizer_client, survey):
    remove(organizer_client, survey, "Acme/Cloud")
    assert "Acme/Cloud" not in selectors.unit_paths(survey=survey)
    organizer_client.post(reverse("organizer-survey", args=[survey.id]), {"units": "Acme/Cloud,9"})
    assert "Acme/Cloud" in selectors.unit_paths(survey=survey)
    assert survey.units.get(path="Acme/Cloud").headcount == 9


def test_removing_an_unknown_unit_says_so(organizer_client, survey):
    body = remove(organizer_client, survey, "Nowhere").content.decode()
    assert "No unit Nowhere on this survey" in body


def test_a_report_under_a_removed_unit_can_still_be_changed_by_its_holder(
        organizer_client, api, survey):
    receipt = api.post(f"/api/v1/s/{survey.share_token}/reports/",
                       report_payload(unit="Acme/Cloud"), format="json").json()["receipt"]
    remove(organizer_client, survey, "Acme/Cloud")
    response = api.patch(f"/api/v1/s/{survey.share_token}/reports/{receipt}/",
                         {"signals": ["abrupt_reversal"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["unit"] == "Acme/Cloud"
    # Moving it to another removed unit is refused like any unknown unit.
    remove(organizer_client, survey, "Acme/Retail/Sales")
    response = api.patch(f"/api/v1/s/{survey.share_token}/reports/{receipt}/",
                         {"unit": "Acme/Retail/Sales"}, format="json")
    assert response.status_code == 400
    assert "unit" in response.json()
