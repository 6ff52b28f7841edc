import re
import threading

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from surveys import services
from surveys.models import InviteCode, Report, Survey
from tests.conftest import require
from tests.factories import report_payload, stored_count, survey_with_units

pytestmark = pytest.mark.django_db

CODE_FORMAT = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$")


@pytest.fixture
def invite_survey(organizer):
    survey = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing", "Acme/Cloud"])
    return services.survey_update(survey=survey, fields={"access": Survey.Access.INVITE})


def share_path(survey) -> str:
    return f"/api/v1/s/{survey.share_token}/reports/"


def issue(organizer_api, survey, count: int) -> list[str]:
    response = organizer_api.post(f"/api/v1/surveys/{survey.id}/invites/", {"count": count},
                                  format="json")
    assert response.status_code == 201
    return response.json()["codes"]


def test_organizer_gets_new_codes_once_and_only_their_hashes_are_kept(organizer_api,
                                                                     invite_survey):
    response = organizer_api.post(f"/api/v1/surveys/{invite_survey.id}/invites/",
                                  {"count": 3}, format="json")
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    codes = response.json()["codes"]
    assert len(set(codes)) == 3
    assert all(CODE_FORMAT.match(code) for code in codes)
    stored = list(InviteCode.objects.filter(survey=invite_survey).values_list("code_hash",
                                                                              flat=True))
    assert len(stored) == 3
    assert not any(code.replace("-", "") in value or code in value
                   for code in codes for value in stored)
    assert organizer_api.get(f"/api/v1/surveys/{invite_survey.id}/invites/").json() == {
        "unused": 3}


@pytest.mark.parametrize("count", [0, -1, 5001, "ten", None, 2.5])
def test_impossible_invite_counts_are_rejected(organizer_api, invite_survey, count):
    response = organizer_api.post(f"/api/v1/surveys/{invite_survey.id}/invites/",
                                  {"count": count}, format="json")
    assert response.status_code == 400
    assert "count" in response.json()
    assert InviteCode.objects.count() == 0


def test_another_organizers_survey_gets_no_codes(api, invite_survey):
    from tests.factories import OrganizerFactory
    api.force_authenticate(OrganizerFactory())
    response = api.post(f"/api/v1/surveys/{invite_survey.id}/invites/", {"count": 1},
                        format="json")
    assert response.status_code == 404
    assert InviteCode.objects.count() == 0


def test_invite_survey_takes_one_report_per_code(api, organizer_api, invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    missing = api.post(share_path(invite_survey), report_payload(), format="json")
    assert missing.status_code == 400
    assert "invite_code" in missing.json()
    wrong = api.post(share_path(invite_survey),
                     report_payload(invite_code="AAAA-BBBB-CCCC-DDDD"), format="json")
    assert wrong.status_code == 400
    assert "invite_code" in wrong.json()
    first = api.post(share_path(invite_survey), report_payload(invite_code=code), format="json")
    assert first.status_code == 201
    again = api.post(share_path(invite_survey), report_payload(invite_code=code), format="json")
    assert again.status_code == 400
    assert again.json()["invite_code"] == [
        "This invite code is not valid for this survey, or it was already used."]
    assert stored_count(invite_survey) == 1


def test_codes_survive_lowercase_spaces_and_look_alike_letters(api, organizer_api,
                                                               invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    typed = " " + code.lower().replace("-", " ").replace("0", "o").replace("1", "l") + " "
    response = api.post(share_path(invite_survey), report_payload(invite_code=typed),
                        format="json")
    assert response.status_code == 201


def test_a_code_of_one_survey_does_not_open_another(api, organizer, organizer_api,
                                                    invite_survey):
    other = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing"])
    services.survey_update(survey=other, fields={"access": Survey.Access.INVITE})
    [code] = issue(organizer_api, other, 1)
    response = api.post(share_path(invite_survey), report_payload(invite_code=code),
                        format="json")
    assert response.status_code == 400
    assert InviteCode.objects.filter(survey=other).count() == 1


def test_a_rejected_report_does_not_use_up_its_code(api, organizer_api, invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    bad = api.post(share_path(invite_survey),
                   report_payload(unit="Acme/Nowhere", invite_code=code), format="json")
    assert bad.status_code == 400
    assert "unit" in bad.json()
    good = api.post(share_path(invite_survey), report_payload(invite_code=code), format="json")
    assert good.status_code == 201


def test_redemption_leaves_nothing_that_pairs_a_code_with_its_report(api, organizer_api,
                                                                     invite_survey):
    codes = issue(organizer_api, invite_survey, 4)
    before = set(InviteCode.objects.values_list("id", flat=True))
    assert api.post(share_path(invite_survey), report_payload(invite_code=codes[2]),
                    format="json").status_code == 201
    after = set(InviteCode.objects.values_list("id", flat=True))
    # The used code's row is gone rather than marked, with its id and hash.
    assert len(before - after) == 1
    assert after < before
    invite_fields = {field.name for field in InviteCode._meta.get_fields()}
    assert invite_fields == {"id", "survey", "code_hash"}
    report_fields = {field.name for field in Report._meta.get_fields()}
    assert not any("invite" in name for name in report_fields)


def test_link_surveys_need_no_code(api, survey):
    assert api.post(share_path(survey), report_payload(), format="json").status_code == 201


def form_data(**overrides) -> dict:
    data = {"unit": "Acme/Retail/Marketing", "period": "2026-01-01",
            "signals": ["abrupt_reversal"]}
    data.update(overrides)
    return data


def test_the_form_asks_for_a_code_only_in_invite_surveys(client, survey, invite_survey):
    assert 'name="invite_code"' in client.get(f"/s/{invite_survey.share_token}/").text
    assert 'name="invite_code"' not in client.get(f"/s/{survey.share_token}/").text


def test_the_form_redeems_a_code_and_refuses_it_the_second_time(client, organizer_api,
                                                                invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    url = f"/s/{invite_survey.share_token}/"
    assert client.post(url, form_data(invite_code=code)).status_code == 201
    again = client.post(url, form_data(invite_code=code))
    assert again.status_code == 400
    assert "already used" in again.text
    assert stored_count(invite_survey) == 1


def test_organizer_page_offers_invite_codes_only_for_invite_surveys(organizer, survey,
                                                                    invite_survey):
    client = Client()
    client.force_login(organizer)
    page = client.get(reverse("organizer-survey", args=[invite_survey.id]))
    assert reverse("organizer-invites-csv", args=[invite_survey.id]) in page.text
    page = client.get(reverse("organizer-survey", args=[survey.id]))
    assert reverse("organizer-invites-csv", args=[survey.id]) not in page.text


def test_organizer_downloads_new_codes_as_csv(organizer, invite_survey, api):
    client = Client()
    client.force_login(organizer)
    response = client.post(reverse("organizer-invites-csv", args=[invite_survey.id]),
                           {"count": "5"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "no-store" in response["Cache-Control"]
    lines = response.content.decode().splitlines()
    assert lines[0] == "invite_code"
    assert len(lines) == 6
    assert InviteCode.objects.filter(survey=invite_survey).count() == 5
    assert api.post(share_path(invite_survey), report_payload(invite_code=lines[3]),
                    format="json").status_code == 201


def test_organizer_csv_download_refuses_a_bad_count(organizer, invite_survey):
    client = Client()
    client.force_login(organizer)
    response = client.post(reverse("organizer-invites-csv", args=[invite_survey.id]),
                           {"count": "9999"})
    assert response.status_code == 302
    notices = [str(message) for message in get_messages(response.wsgi_request)]
    assert any("5000" in notice for notice in notices)
    assert InviteCode.objects.count() == 0


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_redemptions_of_one_code_give_exactly_one_report(organizer, settings):
    require(connection.vendor == "postgresql", "needs PostgreSQL for real concurrency")
    settings.CHORUS_SUBMISSIONS_PER_DAY = 0
    survey = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing"])
    services.survey_update(survey=survey, fields={"access": Survey.Access.INVITE})
    [code] = services.invites_create(survey=survey, count=1)
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def redeem():
        try:
            client = APIClient()
            barrier.wait()
            response = client.post(share_path(survey), report_payload(invite_code=code),
                                   format="json")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [400] * 49
    assert stored_count(survey) == 1
    assert InviteCode.objects.filter(survey=survey).count() == 0
