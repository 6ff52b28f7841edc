import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from reports import services as report_services
from reports.models import Cell
from reports.services import publication_maybe_publish
from reports.tasks import publish_survey, sweep
from surveys import catalog, services, slots
from surveys.models import HeldReport, OrgUnit, Report
from tests.factories import (
    PASSWORD,
    OrganizerFactory,
    file_reports,
    publish,
    report_payload,
    survey_with_units,
)

pytestmark = pytest.mark.django_db


def share_path(survey) -> str:
    return f"/api/v1/s/{survey.share_token}/reports/"


def aggregates(client, survey) -> dict:
    response = client.get(f"/api/v1/d/{survey.dashboard_token}/aggregates/")
    assert response.status_code == 200
    return {(cell["unit"], cell["period"]): cell["reports"] for cell in response.json()["cells"]}


def test_organizer_exchanges_credentials_for_a_token(api, organizer):
    response = api.post("/api/v1/auth/token/", {"username": organizer.username,
                                                "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/surveys/").status_code == 200


def test_wrong_password_answers_401(api, organizer):
    response = api.post("/api/v1/auth/token/", {"username": organizer.username,
                                                "password": "nope"}, format="json")
    assert response.status_code == 401


def test_survey_endpoints_need_authentication(api):
    assert api.get("/api/v1/surveys/").status_code == 401


def test_created_survey_has_absolute_links_and_defaults(organizer_api):
    response = organizer_api.post("/api/v1/surveys/", {"title": "Q1", "period": "week"},
                                  format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["min_group_size"] == 5
    assert body["status"] == "open"
    assert body["share_url"].startswith("http://testserver/s/")
    assert body["dashboard_url"].startswith("http://testserver/d/")
    assert body["share_url"].split("/")[-2] != body["dashboard_url"].split("/")[-2]
    assert len(body["share_url"].split("/")[-2]) >= 22  # ≥ 128 bits, URL-safe base64


def test_min_group_size_below_three_is_rejected(organizer_api):
    response = organizer_api.post("/api/v1/surveys/", {"title": "Q1", "min_group_size": 2},
                                  format="json")
    assert response.status_code == 400
    assert "min_group_size" in response.json()


def test_surveys_list_only_the_callers_own(organizer_api, survey):
    other = OrganizerFactory()
    from tests.factories import survey_with_units
    survey_with_units(owner=other, paths=["Other"])
    ids = [item["id"] for item in organizer_api.get("/api/v1/surveys/").json()]
    assert ids == [str(survey.id)]


def test_another_organizers_survey_is_404_everywhere(api, survey):
    intruder = OrganizerFactory()
    api.force_authenticate(intruder)
    for path in (f"/api/v1/surveys/{survey.id}/", f"/api/v1/surveys/{survey.id}/units/",
                 f"/api/v1/surveys/{survey.id}/aggregates/"):
        assert api.get(path).status_code == 404
    assert api.patch(f"/api/v1/surveys/{survey.id}/", {"status": "closed"},
                     format="json").status_code == 404
    survey.refresh_from_db()
    assert survey.status == "open"


def test_closing_a_survey_by_patch(organizer_api, survey):
    response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"status": "closed"},
                                   format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "closed"


def test_units_upsert_creates_implicit_parents_and_is_idempotent(organizer_api, survey):
    body = {"units": [{"path": "Acme/Retail/Marketing", "headcount": 40},
                      {"path": "Beta/Ops/Night shift", "headcount": 7}]}
    url = f"/api/v1/surveys/{survey.id}/units/"
    assert organizer_api.put(url, body, format="json").json() == {"units": 2}
    before = sorted(OrgUnit.objects.filter(survey=survey).values_list("path", "headcount"))
    assert organizer_api.put(url, body, format="json").status_code == 200
    after = sorted(OrgUnit.objects.filter(survey=survey).values_list("path", "headcount"))
    assert before == after
    assert ("Beta/Ops", None) in after
    assert ("Acme/Retail/Marketing", 40) in after
    listed = {unit["path"] for unit in organizer_api.get(url).json()}
    assert {"Beta", "Beta/Ops", "Beta/Ops/Night shift"} <= listed
    night = OrgUnit.objects.get(survey=survey, path="Beta/Ops/Night shift")
    assert night.parent.path == "Beta/Ops"


@pytest.mark.parametrize("units", [
    [{"path": ""}], [{"path": "Acme//Retail"}], [{"path": "Acme", "headcount": -1}],
    [{"headcount": 3}], [],
])
def test_bad_units_are_rejected_with_field_errors_and_nothing_written(organizer_api, survey,
                                                                      units):
    before = OrgUnit.objects.filter(survey=survey).count()
    response = organizer_api.put(f"/api/v1/surveys/{survey.id}/units/", {"units": units},
                                 format="json")
    assert response.status_code == 400
    assert response.json()
    assert OrgUnit.objects.filter(survey=survey).count() == before


def test_signal_catalog_lists_every_code_with_text(api):
    body = api.get("/api/v1/signals/").json()
    assert [item["code"] for item in body] == list(catalog.SIGNAL_CODES)
    assert all(item["label"] and item["description"] for item in body)


def test_report_is_stored_before_201_with_no_request_metadata(api, survey):
    response = api.post(share_path(survey), report_payload(comment="mail me at a@b.example.com"),
                        format="json", HTTP_USER_AGENT="Distinctive/1.0",
                        REMOTE_ADDR="203.0.113.77")
    assert response.status_code == 201
    assert len(response.json()["receipt"]) >= 16
    held = HeldReport.objects.get(survey=survey)
    sealed = bytes(held.sealed)
    assert b"mail me" not in sealed
    assert b"Marketing" not in sealed
    assert not Report.objects.filter(survey=survey).exists()
    publish(survey)
    report = Report.objects.get(survey=survey)
    assert report.period_start == dt.date(2026, 1, 1)
    assert report.received_week.weekday() == 0
    assert "a@b.example.com" not in report.comment
    assert catalog.mask_to_signals(report.signals) == ["prior_positive_standing",
                                                        "abrupt_reversal"]
    stored = " ".join(str(getattr(report, field.attname)) for field in Report._meta.fields)
    assert "203.0.113.77" not in stored
    assert "Distinctive" not in stored
    assert response.json()["receipt"] not in stored


def test_weekly_survey_stores_the_monday_of_the_change(api, organizer):
    from tests.factories import survey_with_units
    weekly = survey_with_units(owner=organizer, paths=["Acme"], period="week")
    response = api.post(share_path(weekly), report_payload(unit="Acme", period="2026-01-15"),
                        format="json")
    assert response.status_code == 201
    publish(weekly)
    assert Report.objects.get(survey=weekly).period_start == dt.date(2026, 1, 12)


def test_report_counts_for_its_unit_and_every_ancestor(api, survey, publish_at_once,
                                                       django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            api.post(share_path(survey), report_payload(), format="json")
        api.post(share_path(survey), report_payload(unit="Acme/Cloud"), format="json")
        file_reports(survey, 3, unit="Acme/Retail/Sales")  # past the API's rate limit
    publication_maybe_publish(survey_id=survey.id, force=True)  # all 7, whatever the batches
    cells = aggregates(api, survey)
    assert cells[("Acme", "2026-01-01")] == 7
    # 1 report in Acme/Cloud: below k = 3, so withheld; and since Acme − Retail would give
    # it away, Retail and Marketing are withheld with it (complementary suppression): Cloud
    # and Marketing share Acme − Sales = 4, so Cloud could be anything in 0..4.
    for unit in ("Acme/Cloud", "Acme/Retail", "Acme/Retail/Marketing"):
        assert cells[(unit, "2026-01-01")] is None
    assert cells[("Acme/Retail/Sales", "2026-01-01")] == 3


def test_suppressed_cells_say_so(api, survey, publish_at_once, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 3)
        file_reports(survey, 2, unit="Acme/Retail/Sales")
    body = api.get(f"/api/v1/d/{survey.dashboard_token}/aggregates/").json()
    assert body["min_group_size"] == 3
    sales = next(cell for cell in body["cells"] if cell["unit"] == "Acme/Retail/Sales")
    assert sales == {"unit": "Acme/Retail/Sales", "period": "2026-01-01", "reports": None,
                     "suppressed": True}
    assert all(cell["reports"] is None or cell["reports"] >= 3 for cell in body["cells"])


def test_organizer_and_shared_aggregates_agree(organizer_api, survey, publish_at_once,
                                               django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 4)
    mine = organizer_api.get(f"/api/v1/surveys/{survey.id}/aggregates/").json()
    shared = organizer_api.get(f"/api/v1/d/{survey.dashboard_token}/aggregates/").json()
    assert mine == shared
    assert mine["cells"]


def test_figures_change_only_at_publication_points(api, survey, publish_at_once,
                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 3)
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 3
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 2)
    # Two new reports are fewer than k = 3: nothing is published yet.
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 3
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 1)
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 6


def test_publication_waits_for_the_interval(api, survey, settings,
                                            django_capture_on_commit_callbacks):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 3600
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 3)
    assert ("Acme", "2026-01-01") not in aggregates(api, survey)
    boundary = slots.slot_next(timezone.now())
    report_services.publication_maybe_publish(survey_id=survey.id, now=boundary)
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 3
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 5)
    report_services.publication_maybe_publish(survey_id=survey.id,
                                              now=boundary + dt.timedelta(minutes=59))
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 3
    report_services.publication_maybe_publish(survey_id=survey.id,
                                              now=boundary + dt.timedelta(hours=1))
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 8


def test_withdrawn_reports_leave_the_cells_with_the_next_publication(
        api, survey, publish_at_once, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        receipts = file_reports(survey, 6)
    with django_capture_on_commit_callbacks(execute=True):
        for receipt in receipts[:3]:
            response = api.delete(f"{share_path(survey)}{receipt}/")
            assert response.status_code == 204
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 6
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 3, unit="Acme/Cloud")
    # Marketing's 3 left and Cloud's 3 new ones: the withdrawn three are gone.
    assert aggregates(api, survey)[("Acme", "2026-01-01")] == 6
    assert Report.objects.filter(survey=survey).count() == 6


def test_withdrawing_twice_or_with_a_wrong_receipt_is_404(api, survey):
    [receipt] = file_reports(survey, 1)
    assert api.delete(f"{share_path(survey)}{receipt}/").status_code == 204
    assert api.delete(f"{share_path(survey)}{receipt}/").status_code == 404
    assert api.delete(f"{share_path(survey)}not-a-receipt/").json() == {"detail": "Not found."}


def test_aggregation_run_twice_gives_the_same_cells(survey, publish_at_once,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 4)
        file_reports(survey, 3, unit="Acme/Cloud", period=dt.date(2026, 2, 3))

    def snapshot():
        return sorted(Cell.objects.filter(survey=survey)
                      .values_list("unit__path", "period_start", "reports", "signals"))

    first = snapshot()
    publish_survey(str(survey.id))
    publish_survey(str(survey.id))
    assert snapshot() == first
    report_services.cells_rebuild(survey_id=survey.id)
    assert snapshot() == first
    assert ("Acme", dt.date(2026, 1, 1), 4, {"abrupt_reversal": 4}) in first


def test_held_reports_whose_dispatch_was_lost_are_published_by_the_sweep(survey,
                                                                         publish_at_once):
    # No on-commit execution here: as if the broker had refused the message.
    file_reports(survey, 3)
    assert HeldReport.objects.filter(survey=survey).count() == 3
    assert not Cell.objects.filter(survey=survey).exists()
    sweep()
    assert HeldReport.objects.filter(survey=survey).count() == 0
    assert Cell.objects.get(survey=survey, unit__path="Acme").reports == 3


def test_unknown_tokens_are_404_without_detail(api):
    assert api.post("/api/v1/s/nope/reports/", report_payload(), format="json").status_code == 404
    assert api.get("/api/v1/d/nope/aggregates/").status_code == 404


def test_closed_survey_answers_410(api, survey):
    survey.status = "closed"
    survey.save()
    response = api.post(share_path(survey), report_payload(), format="json")
    assert response.status_code == 410
    assert Report.objects.count() == 0


@pytest.mark.parametrize(("payload", "field"), [
    (report_payload(unit="Acme/Nowhere"), "unit"),
    (report_payload(unit=""), "unit"),
    (report_payload(period="2999-01-01"), "period"),
    (report_payload(period="14/01/2026"), "period"),
    (report_payload(period=None), "period"),
    (report_payload(signals=["made_up"]), "signals"),
    (report_payload(signals="abrupt_reversal"), "signals"),
    (report_payload(outcome="promoted"), "outcome"),
    (report_payload(comment="x" * 2001), "comment"),
    ({"period": "2026-01-14", "signals": []}, "unit"),
    ({"unit": "Acme", "signals": []}, "period"),
    ({"unit": "Acme", "period": "2026-01-14"}, "signals"),
])
def test_bad_report_input_answers_400_with_field_errors(api, survey, payload, field):
    response = api.post(share_path(survey), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Report.objects.count() == 0
    assert HeldReport.objects.count() == 0


def test_malformed_json_answers_400(api, survey):
    response = api.post(share_path(survey), "{not json", content_type="application/json")
    assert response.status_code == 400


def test_oversized_body_answers_413(api, survey):
    response = api.post(share_path(survey), report_payload(comment="x" * 40_000), format="json")
    assert response.status_code == 413
    assert Report.objects.count() == 0


def test_openapi_schema_is_served(api):
    response = api.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert b"/api/v1/s/{share_token}/reports/" in response.content


def test_min_group_size_can_be_lowered_while_no_unit_is_loaded(organizer_api, organizer):
    survey = services.survey_create(owner=organizer, title="Draft", min_group_size=5)
    response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"min_group_size": 7},
                                   format="json")
    assert response.status_code == 200
    response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"min_group_size": 4},
                                   format="json")
    assert response.status_code == 200
    assert response.json()["min_group_size"] == 4


def test_min_group_size_rises_but_never_falls_once_a_report_exists(
        organizer_api, organizer, publish_at_once, django_capture_on_commit_callbacks):
    # A hidden 1 beside released figures: stepping k down 5 -> 4 -> 3 and keeping each
    # release would narrow it from [0, k - 1] to what the smallest k allows.
    survey = survey_with_units(owner=organizer, min_group_size=5,
                               paths=["Acme/Retail/Marketing", "Acme/Retail/Sales",
                                      "Acme/Cloud"])
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, 6)
        file_reports(survey, 1, unit="Acme/Retail/Sales")
    publication_maybe_publish(survey_id=survey.id, force=True)
    url = f"/api/v1/surveys/{survey.id}/"
    before = organizer_api.get(f"{url}aggregates/").json()
    for lower in (4, 3):
        response = organizer_api.patch(url, {"min_group_size": lower}, format="json")
        assert response.status_code == 400
        assert "raised but not lowered" in " ".join(response.json()["min_group_size"])
        assert organizer_api.get(url).json()["min_group_size"] == 5
        assert organizer_api.get(f"{url}aggregates/").json() == before
    sales = {(c["unit"], c["period"]): c for c in before["cells"]}[
        ("Acme/Retail/Sales", "2026-01-01")]
    assert sales == {"unit": "Acme/Retail/Sales", "period": "2026-01-01", "reports": None,
                     "suppressed": True}
    response = organizer_api.patch(url, {"min_group_size": 6}, format="json")
    assert response.status_code == 200
    assert response.json()["min_group_size"] == 6
    # Lowering back to the k a report was filed under is lowering too: later reports were
    # filed under 6.
    assert organizer_api.patch(url, {"min_group_size": 5}, format="json").status_code == 400
    assert organizer_api.patch(url, {"min_group_size": 6}, format="json").status_code == 200


def test_a_report_waiting_for_publication_fixes_the_minimum_group_size(
        organizer_api, survey, api):
    assert api.post(share_path(survey), report_payload(), format="json").status_code == 201
    response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"min_group_size": 3},
                                   format="json")
    assert response.status_code == 200  # unchanged k is no lowering
    response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/",
                                   {"min_group_size": 3, "title": "Renamed"}, format="json")
    assert response.status_code == 200
    assert organizer_api.patch(f"/api/v1/surveys/{survey.id}/", {"min_group_size": 4},
                               format="json").status_code == 200
    response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/",
                                   {"min_group_size": 3, "title": "Again"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"min_group_size"}
    assert organizer_api.get(f"/api/v1/surveys/{survey.id}/").json()["title"] == "Renamed"


def test_the_organizer_page_refuses_to_lower_k_with_the_reason(organizer, survey, client):
    file_reports(survey, 1)
    services.survey_update(survey=survey, fields={"min_group_size": 5})
    assert client.login(username=organizer.username, password=PASSWORD)
    url = reverse("organizer-min-group-size", args=[survey.id])
    response = client.post(url, {"min_group_size": 4})
    assert response.status_code == 400
    assert "raised but not lowered" in response.content.decode()
    survey.refresh_from_db()
    assert survey.min_group_size == 5
    response = client.post(url, {"min_group_size": 8})
    assert response.status_code == 302
    survey.refresh_from_db()
    assert survey.min_group_size == 8


SETTINGS_THAT_ONLY_TIGHTEN = [
    {"period": "week"},
    {"min_group_size": 3},
    {"study_starts_on": "2025-06-01"},
]


@pytest.mark.parametrize("change", SETTINGS_THAT_ONLY_TIGHTEN, ids=lambda c: next(iter(c)))
def test_whether_a_setting_may_loosen_never_tells_the_organizer_that_someone_reported(
        organizer_api, organizer, change):
    # A survey with nothing reported, one with a report waiting for publication and one
    # with published reports get the same answer: the organizer learns nothing hidden.
    answers = []
    for reported in ("nothing", "held", "published"):
        survey = services.survey_create(owner=organizer, title="Open", min_group_size=5,
                                        study_starts_on=dt.date(2025, 1, 1))
        services.units_upsert(survey=survey, units=[{"path": "Acme/Retail/Marketing"}])
        if reported != "nothing":
            file_reports(survey, 1)
        if reported == "published":
            publish(survey)
        response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/", change, format="json")
        answers.append((response.status_code, response.json()))
    assert answers[0][0] == 400
    assert set(answers[0][1]) == set(change)
    assert answers[1:] == [answers[0], answers[0]]


@pytest.mark.parametrize("change", SETTINGS_THAT_ONLY_TIGHTEN, ids=lambda c: next(iter(c)))
def test_a_survey_without_units_may_still_change_any_setting(organizer_api, organizer, change):
    survey = services.survey_create(owner=organizer, title="Draft", min_group_size=5,
                                    study_starts_on=dt.date(2025, 1, 1))
    response = organizer_api.patch(f"/api/v1/surveys/{survey.id}/", change, format="json")
    assert response.status_code == 200, response.json()
