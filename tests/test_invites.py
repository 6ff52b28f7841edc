import re
import threading
from html import unescape

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from surveys import services, tokens
from surveys.models import HeldReport, InviteCode, Report, Survey
from tests import privacypass_client
from tests.conftest import require
from tests.factories import (
    invite_token,
    invite_token_request,
    publish,
    report_payload,
    stored_count,
    survey_with_units,
)

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


def test_an_invite_code_buys_one_token_and_the_token_one_report(api, organizer_api,
                                                                 invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    missing = api.post(share_path(invite_survey), report_payload(), format="json")
    assert missing.status_code == 400
    assert missing.json()["token"] == [
        "This survey needs a token bought with the invite code you were given."]
    wrong, _finalize = invite_token_request(api, invite_survey, "AAAA-BBBB-CCCC-DDDD")
    assert wrong.status_code == 400
    assert "invite_code" in wrong.json()
    token = invite_token(api, invite_survey, code)
    again, _finalize = invite_token_request(api, invite_survey, code)
    assert again.status_code == 400
    assert again.json()["invite_code"] == [
        "This invite code is not valid for this survey, or it was already used."]
    first = api.post(share_path(invite_survey), report_payload(token=token), format="json")
    assert first.status_code == 201
    replay = api.post(share_path(invite_survey), report_payload(token=token), format="json")
    assert replay.status_code == 400
    assert replay.json()["token"] == ["This membership token was already used."]
    assert stored_count(invite_survey) == 1


def test_a_code_sent_with_the_report_itself_admits_nothing(api, organizer_api, invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    response = api.post(share_path(invite_survey), report_payload(invite_code=code),
                        format="json")
    assert response.status_code == 400
    assert "token" in response.json()
    # Nothing was used up: the code still buys its token.
    assert InviteCode.objects.filter(survey=invite_survey).count() == 1
    assert invite_token(api, invite_survey, code)


def test_codes_survive_lowercase_spaces_and_look_alike_letters(api, organizer_api,
                                                               invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    typed = " " + code.lower().replace("-", " ").replace("0", "o").replace("1", "l") + " "
    token = invite_token(api, invite_survey, typed)
    response = api.post(share_path(invite_survey), report_payload(token=token), format="json")
    assert response.status_code == 201


def test_a_code_of_one_survey_does_not_open_another(api, organizer, organizer_api,
                                                    invite_survey):
    other = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing"])
    services.survey_update(survey=other, fields={"access": Survey.Access.INVITE})
    [code] = issue(organizer_api, other, 1)
    response, _finalize = invite_token_request(api, invite_survey, code)
    assert response.status_code == 400
    assert InviteCode.objects.filter(survey=other).count() == 1


def test_a_token_bought_for_one_survey_does_not_open_another(api, organizer, organizer_api,
                                                             invite_survey):
    other = survey_with_units(owner=organizer, paths=["Acme/Retail/Marketing"])
    services.survey_update(survey=other, fields={"access": Survey.Access.INVITE})
    [code] = issue(organizer_api, other, 1)
    token = invite_token(api, other, code)
    response = api.post(share_path(invite_survey), report_payload(token=token), format="json")
    assert response.status_code == 400
    assert response.json()["token"] == ["This membership token is not valid for this survey."]


def test_a_rejected_report_leaves_its_token_unspent(api, organizer_api, invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    token = invite_token(api, invite_survey, code)
    bad = api.post(share_path(invite_survey),
                   report_payload(unit="Acme/Nowhere", token=token), format="json")
    assert bad.status_code == 400
    assert "unit" in bad.json()
    good = api.post(share_path(invite_survey), report_payload(token=token), format="json")
    assert good.status_code == 201


def test_a_token_request_that_cannot_be_signed_leaves_its_code_usable(api, organizer_api,
                                                                     invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    body = api.get(f"/api/v1/s/{invite_survey.share_token}/token-key/").json()
    public_key = tokens.load_token_key(tokens.b64url_decode(body["token_key"]))
    request, _pending = privacypass_client.token_request(
        public_key, tokens.b64url_decode(body["challenge"]))
    # The truncated key id (third byte) names another key.
    other_key = request[:2] + bytes([request[2] ^ 0xFF]) + request[3:]
    refused, _finalize = invite_token_request(api, invite_survey, code, token_request=other_key)
    assert refused.status_code == 400
    assert "token_request" in refused.json()
    assert InviteCode.objects.filter(survey=invite_survey).count() == 1
    assert invite_token(api, invite_survey, code)


def test_invite_codes_tried_are_limited_per_network_and_a_right_one_is_given_back(
        api, organizer_api, invite_survey, settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 3
    codes = issue(organizer_api, invite_survey, 4)
    # Right codes cost nothing: four tokens under a limit of three.
    assert all(invite_token(api, invite_survey, code) for code in codes)
    for _attempt in range(3):
        wrong, _finalize = invite_token_request(api, invite_survey, "AAAA-BBBB-CCCC-DDDD")
        assert wrong.status_code == 400
    over, _finalize = invite_token_request(api, invite_survey, "AAAA-BBBB-CCCC-DDDD")
    assert over.status_code == 429
    assert int(over["Retry-After"]) > 0


def test_redemption_leaves_nothing_that_pairs_a_code_with_its_report(api, organizer_api,
                                                                     invite_survey):
    codes = issue(organizer_api, invite_survey, 4)
    before = set(InviteCode.objects.values_list("id", flat=True))
    token = invite_token(api, invite_survey, codes[2])
    after = set(InviteCode.objects.values_list("id", flat=True))
    # The used code's row is gone rather than marked, with its id and hash, and it went
    # when the token was bought: filing the report touches no invite code.
    assert len(before - after) == 1
    assert after < before
    assert api.post(share_path(invite_survey), report_payload(token=token),
                    format="json").status_code == 201
    assert set(InviteCode.objects.values_list("id", flat=True)) == after
    invite_fields = {field.name for field in InviteCode._meta.get_fields()}
    assert invite_fields == {"id", "survey", "code_hash"}
    for model in (Report, HeldReport):
        assert not any("invite" in field.name or "code" in field.name
                       for field in model._meta.get_fields())


def test_the_unused_count_moves_when_a_token_is_bought_never_when_a_report_arrives(
        api, organizer_api, invite_survey):
    codes = issue(organizer_api, invite_survey, 3)
    unused = f"/api/v1/surveys/{invite_survey.id}/invites/"
    bought = [invite_token(api, invite_survey, code) for code in codes[:2]]
    assert organizer_api.get(unused).json() == {"unused": 1}
    for token in bought:
        assert api.post(share_path(invite_survey), report_payload(token=token),
                        format="json").status_code == 201
    assert organizer_api.get(unused).json() == {"unused": 1}


def test_link_surveys_need_no_code(api, survey):
    assert api.post(share_path(survey), report_payload(), format="json").status_code == 201


def form_data(**overrides) -> dict:
    data = {"unit": "Acme/Retail/Marketing", "period": "2026-01-01",
            "signals": ["abrupt_reversal"]}
    data.update(overrides)
    return data


def test_the_form_asks_for_a_code_only_in_invite_surveys(client, survey, invite_survey):
    page = client.get(f"/s/{invite_survey.share_token}/").text
    assert 'id="verify-invite"' in page
    assert 'name="token"' in page
    assert 'name="invite_code"' not in page
    plain = client.get(f"/s/{survey.share_token}/").text
    assert 'id="verify-invite"' not in plain
    assert 'name="token"' not in plain


def test_the_form_spends_a_token_and_refuses_it_the_second_time(client, api, organizer_api,
                                                                invite_survey):
    [code] = issue(organizer_api, invite_survey, 1)
    token = invite_token(api, invite_survey, code)
    url = f"/s/{invite_survey.share_token}/"
    assert client.post(url, form_data(invite_code=code)).status_code == 400
    assert client.post(url, form_data(token=token)).status_code == 201
    again = client.post(url, form_data(token=token))
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
    token = invite_token(api, invite_survey, lines[3])
    assert api.post(share_path(invite_survey), report_payload(token=token),
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
def test_fifty_concurrent_redemptions_of_one_code_give_exactly_one_token(organizer, settings):
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
            response, _finalize = invite_token_request(client, survey, code)
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 49
    assert InviteCode.objects.filter(survey=survey).count() == 0


def test_an_invite_only_dashboard_says_codes_admitted_the_reports_and_counts_nothing(
        api, client, organizer_api, invite_survey):
    codes = issue(organizer_api, invite_survey, 3)
    for code in codes:
        token = invite_token(api, invite_survey, code)
        assert api.post(share_path(invite_survey), report_payload(token=token),
                        format="json").status_code == 201
    publish(invite_survey)
    page = client.get(f"/d/{invite_survey.dashboard_token}/").text
    assert "data-membership" in page
    assert "bought with one of the organizer's invite codes" in unescape(page)
    export = api.get(f"/api/v1/d/{invite_survey.dashboard_token}/export/").json()
    assert export["membership"] == {"access": "invite"}
