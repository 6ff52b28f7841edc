"""Verified membership through the public API: a code mailed to a work address buys one
blind-signed token, which the report spends; the server keeps nothing that ties the two."""

import datetime as dt
import email
import logging
import random
import re
import socket

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.utils import timezone

from reports.tasks import sweep
from surveys import membership, services, tokens
from surveys.models import (
    HeldReport,
    SpentToken,
    Survey,
    TokenIssuance,
    TokenIssuer,
    VerificationCode,
)
from tests import privacypass_client as client
from tests.conftest import VERIFIED_DOMAIN
from tests.factories import PASSWORD, publish, report_payload
from tests.test_pages import answers

pytestmark = pytest.mark.django_db

DOMAIN = VERIFIED_DOMAIN


def base(survey) -> str:
    return f"/api/v1/s/{survey.share_token}"


def code_from_mail() -> str:
    return re.search(r"\b(\d{8})\b", mail.outbox[-1].body)[1]


def ask_code(api, survey, email, capture):
    with capture(execute=True):
        return api.post(f"{base(survey)}/verification/", {"email": email}, format="json")


def token_key(api, survey):
    body = api.get(f"{base(survey)}/token-key/").json()
    return (tokens.load_token_key(tokens.b64url_decode(body["token_key"])),
            tokens.b64url_decode(body["challenge"]))


def buy_token(api, survey, email, capture) -> bytes:
    """The whole respondent side: a code by mail, a blinded request, the finalized token."""
    assert ask_code(api, survey, email, capture).status_code == 202
    code = code_from_mail()
    public_key, challenge = token_key(api, survey)
    request, pending = client.token_request(public_key, challenge)
    response = api.post(f"{base(survey)}/tokens/", {
        "email": email, "code": code, "token_request": tokens.b64url_encode(request)},
        format="json")
    assert response.status_code == 200, response.json()
    return client.finalize_token(public_key, pending,
                                 tokens.b64url_decode(response.json()["token_response"]))


def file(api, survey, token: bytes | None, **overrides):
    payload = report_payload(**overrides)
    if token is not None:
        payload["token"] = tokens.b64url_encode(token)
    return api.post(f"{base(survey)}/reports/", payload, format="json")


def test_a_verified_survey_publishes_its_token_key_and_challenge(api, verified):
    body = api.get(f"{base(verified)}/token-key/").json()
    assert body["token_type"] == 2
    issuer = TokenIssuer.objects.get(survey=verified)
    assert tokens.b64url_decode(body["token_key"]) == bytes(issuer.token_key)
    challenge = tokens.TokenChallenge.from_bytes(tokens.b64url_decode(body["challenge"]))
    assert challenge.redemption_context == b""
    assert challenge.origin_info == str(verified.id).encode()


def test_a_survey_that_does_not_verify_has_no_token_key(api, survey):
    assert api.get(f"{base(survey)}/token-key/").status_code == 404


def test_a_verified_survey_needs_a_domain(organizer):
    with pytest.raises(services.ValidationError) as refused:
        services.survey_create(owner=organizer, title="No domain",
                               access=Survey.Access.VERIFIED)
    assert "email_domains" in refused.value.message_dict


def test_the_private_key_is_sealed_at_rest(verified):
    issuer = TokenIssuer.objects.get(survey=verified)
    assert b"PRIVATE KEY" not in bytes(issuer.sealed_private_key)


def test_a_coworker_with_a_code_files_one_report_with_one_token(
        api, verified, django_capture_on_commit_callbacks):
    token = buy_token(api, verified, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    assert mail.outbox[-1].to == [f"dana@{DOMAIN}"]
    assert file(api, verified, token).status_code == 201
    again = file(api, verified, token)
    assert again.status_code == 400
    assert again.json()["token"] == ["This membership token was already used."]
    assert HeldReport.objects.filter(survey=verified).count() == 1


def test_a_report_without_a_token_is_refused_on_a_verified_survey(api, verified):
    response = file(api, verified, None)
    assert response.status_code == 400
    assert response.json()["token"] == ["This survey needs a membership token."]


@pytest.mark.parametrize("token", ["not base64!", "AAAA", "A" * 472])
def test_a_malformed_token_is_a_400(api, verified, token):
    response = api.post(f"{base(verified)}/reports/", {**report_payload(), "token": token},
                        format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["token"]


def test_a_token_for_another_survey_is_refused(api, organizer, verified,
                                               django_capture_on_commit_callbacks):
    other = services.survey_create(owner=organizer, title="Other", min_group_size=3,
                                   access=Survey.Access.VERIFIED, email_domains=[DOMAIN])
    services.units_upsert(survey=other, units=[{"path": "Acme/Retail/Marketing"}])
    token = buy_token(api, other, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    response = file(api, verified, token)
    assert response.status_code == 400
    assert response.json()["token"] == ["This membership token is not valid for this survey."]


def test_a_forged_token_is_refused(api, verified, django_capture_on_commit_callbacks):
    token = bytearray(buy_token(api, verified, f"dana@{DOMAIN}",
                                django_capture_on_commit_callbacks))
    token[-1] ^= 1
    assert file(api, verified, bytes(token)).status_code == 400
    assert not SpentToken.objects.exists()


def test_a_rejected_report_leaves_its_token_unspent(api, verified,
                                                    django_capture_on_commit_callbacks):
    token = buy_token(api, verified, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    assert file(api, verified, token, unit="Acme/Nowhere").status_code == 400
    assert file(api, verified, token).status_code == 201


def test_one_token_per_address_and_survey(api, verified, django_capture_on_commit_callbacks):
    buy_token(api, verified, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    # Asking again answers as for anyone, and mails nothing.
    sent = len(mail.outbox)
    assert ask_code(api, verified, f"Dana@{DOMAIN.upper()}",
                    django_capture_on_commit_callbacks).status_code == 202
    assert len(mail.outbox) == sent
    public_key, challenge = token_key(api, verified)
    request, _pending = client.token_request(public_key, challenge)
    response = api.post(f"{base(verified)}/tokens/", {
        "email": f"dana@{DOMAIN}", "code": "00000000",
        "token_request": tokens.b64url_encode(request)}, format="json")
    assert response.status_code == 409


@pytest.mark.parametrize("email", ["dana@elsewhere.example", "not an address",
                                   f"dana@sub.{DOMAIN}", "x" * 300 + f"@{DOMAIN}"])
def test_a_code_is_sent_only_to_an_address_at_an_allowed_domain(
        api, verified, email, django_capture_on_commit_callbacks):
    response = ask_code(api, verified, email, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert list(response.json()) == ["email"]
    assert not mail.outbox


def test_wrong_codes_are_counted_and_end_the_code(api, verified,
                                                  django_capture_on_commit_callbacks):
    email = f"dana@{DOMAIN}"
    ask_code(api, verified, email, django_capture_on_commit_callbacks)
    right = code_from_mail()
    wrong = f"{(int(right) + 1) % 10 ** 8:08d}"
    public_key, challenge = token_key(api, verified)
    request, _pending = client.token_request(public_key, challenge)
    body = {"email": email, "token_request": tokens.b64url_encode(request)}
    for _attempt in range(membership.CODE_WRONG_ATTEMPTS):
        response = api.post(f"{base(verified)}/tokens/", {**body, "code": wrong}, format="json")
        assert response.status_code == 400
        assert list(response.json()) == ["code"]
    # The right code no longer works once the wrong ones used it up.
    response = api.post(f"{base(verified)}/tokens/", {**body, "code": right}, format="json")
    assert response.status_code == 400
    assert not TokenIssuance.objects.exists()


def test_an_expired_code_buys_nothing(api, verified, django_capture_on_commit_callbacks):
    email = f"dana@{DOMAIN}"
    ask_code(api, verified, email, django_capture_on_commit_callbacks)
    VerificationCode.objects.update(expires="2000-01-01T00:00:00Z")
    public_key, challenge = token_key(api, verified)
    request, _pending = client.token_request(public_key, challenge)
    response = api.post(f"{base(verified)}/tokens/", {
        "email": email, "code": code_from_mail(),
        "token_request": tokens.b64url_encode(request)}, format="json")
    assert response.status_code == 400
    assert "expired" in response.json()["code"][0]


@pytest.mark.parametrize("token_request", [
    "!!", "AAAA", tokens.b64url_encode(b"\x00\x02" + bytes(257))])
def test_a_malformed_token_request_is_a_400(api, verified, token_request,
                                            django_capture_on_commit_callbacks):
    email = f"dana@{DOMAIN}"
    ask_code(api, verified, email, django_capture_on_commit_callbacks)
    response = api.post(f"{base(verified)}/tokens/", {
        "email": email, "code": code_from_mail(), "token_request": token_request},
        format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["token_request"]
    # A refused request leaves the code and the address free.
    assert not TokenIssuance.objects.exists()


def test_codes_per_address_are_limited(api, verified, django_capture_on_commit_callbacks):
    email = f"dana@{DOMAIN}"
    for _attempt in range(membership.CODES_PER_ADDRESS_PER_DAY):
        assert ask_code(api, verified, email,
                        django_capture_on_commit_callbacks).status_code == 202
    response = ask_code(api, verified, email, django_capture_on_commit_callbacks)
    assert response.status_code == 429
    assert "Retry-After" in response


def test_closing_the_survey_forgets_which_addresses_took_part(
        api, verified, django_capture_on_commit_callbacks):
    buy_token(api, verified, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    assert TokenIssuance.objects.filter(survey=verified).exists()
    services.survey_update(survey=verified, fields={"status": Survey.Status.CLOSED})
    assert not TokenIssuance.objects.filter(survey=verified).exists()
    assert not VerificationCode.objects.filter(survey=verified).exists()
    assert TokenIssuer.objects.get(survey=verified).address_salt is None


def stored_values(survey) -> dict[str, set[str]]:
    """Every value the server keeps for the survey's issuance and its spending."""
    issuance = {*TokenIssuance.objects.filter(survey=survey).values_list("address_digest",
                                                                          flat=True)}
    spent = {*SpentToken.objects.filter(survey=survey).values_list("spent_id", flat=True)}
    held = {bytes(row).hex() for row in
            HeldReport.objects.filter(survey=survey).values_list("sealed", flat=True)}
    return {"issuance": issuance, "spent": spent, "held": held}


def test_twenty_coworkers_leave_no_value_shared_by_issuance_and_reports(
        api, verified, django_capture_on_commit_callbacks, settings):
    settings.CHORUS_SUBMISSIONS_PER_DAY = 0  # twenty reports from one test client
    # Twenty respondents buy tokens in one order and file in a shuffled one; the server
    # keeps, for issuance, address HMACs only, and for reports, spent ids and sealed rows.
    issued = [buy_token(api, verified, f"person{n}@{DOMAIN}", django_capture_on_commit_callbacks)
              for n in range(20)]
    order = list(range(20))
    random.Random(7).shuffle(order)
    for n in order:
        assert file(api, verified, issued[n]).status_code == 201
    stored = stored_values(verified)
    assert len(stored["issuance"]) == 20
    assert len(stored["spent"]) == 20
    assert stored["issuance"].isdisjoint(stored["spent"])
    # Nothing of a token's signed input or signature was kept at issuance, and no address
    # digest appears on the report side.
    for token in issued:
        parsed = tokens.parse_token(token)
        for part in (parsed.nonce, parsed.authenticator, parsed.challenge_digest):
            assert part.hex() not in "".join(stored["issuance"])
    assert not any(digest in held for digest in stored["issuance"] for held in stored["held"])
    # The issuance rows carry no order either: random ids, no time.
    assert {field.name for field in TokenIssuance._meta.get_fields()} == {
        "id", "survey", "address_digest"}


def test_codes_per_network_are_limited(api, verified, django_capture_on_commit_callbacks,
                                       settings):
    settings.CHORUS_VERIFICATION_CODES_PER_DAY = 2
    for n in range(2):
        assert ask_code(api, verified, f"p{n}@{DOMAIN}",
                        django_capture_on_commit_callbacks).status_code == 202
    assert ask_code(api, verified, f"p9@{DOMAIN}",
                    django_capture_on_commit_callbacks).status_code == 429


class Inbox:
    """aiosmtpd's handler: keeps each delivered message, or refuses every recipient."""

    def __init__(self):
        self.messages: list[email.message.Message] = []
        self.refuse = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # aiosmtpd
        if self.refuse:
            return f"550 no mailbox {address}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd names the hook
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {"default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5}}}
    yield inbox
    controller.stop()


def test_the_code_arrives_through_a_real_smtp_server_and_buys_a_token(
        api, verified, smtp_server, django_capture_on_commit_callbacks):
    address = f"erin@{DOMAIN}"
    assert ask_code(api, verified, address, django_capture_on_commit_callbacks).status_code == 202
    [message] = smtp_server.messages
    assert message["To"] == address
    body = message.get_payload(decode=True).decode()
    code = re.search(r"\b(\d{8})\b", body)[1]
    public_key, challenge = token_key(api, verified)
    request, pending = client.token_request(public_key, challenge)
    response = api.post(f"{base(verified)}/tokens/", {
        "email": address, "code": code, "token_request": tokens.b64url_encode(request)},
        format="json")
    assert response.status_code == 200
    token = client.finalize_token(public_key, pending,
                                  tokens.b64url_decode(response.json()["token_response"]))
    assert file(api, verified, token).status_code == 201


def test_a_verified_survey_past_its_last_day_forgets_its_addresses_at_the_sweep(
        api, verified, django_capture_on_commit_callbacks):
    buy_token(api, verified, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    Survey.objects.filter(id=verified.id).update(
        closes_on=timezone.localdate() - dt.timedelta(days=1))
    sweep()
    assert not TokenIssuance.objects.filter(survey=verified).exists()
    assert TokenIssuer.objects.get(survey=verified).address_salt is None


def test_the_form_of_a_verified_survey_offers_the_token_step(client, verified):
    body = client.get(f"/s/{verified.share_token}/").content.decode()
    assert 'id="verify"' in body
    assert f"Only coworkers with an address at {DOMAIN} can report here." in body
    assert "mail system will see that an email from this service arrived" in body
    assert 'name="token"' in body
    assert "/static/surveys/vendor/tokens.js" in body


def test_the_form_of_an_open_survey_has_no_token_step(client, survey):
    body = client.get(f"/s/{survey.share_token}/").content.decode()
    assert 'id="verify"' not in body
    assert "tokens.js" not in body


def test_a_form_report_with_a_token_is_received_and_one_without_is_refused(
        client, api, verified, django_capture_on_commit_callbacks):
    refused = client.post(f"/s/{verified.share_token}/", answers())
    assert refused.status_code == 400
    assert "This survey needs a membership token." in refused.content.decode()
    token = buy_token(api, verified, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    filed = client.post(f"/s/{verified.share_token}/",
                        {**answers(), "token": tokens.b64url_encode(token)})
    assert filed.status_code == 201
    assert f'data-token-spent="{verified.id}"' in filed.content.decode()


def test_the_organizer_creates_a_verified_survey_in_the_pages(organizer, client):
    assert client.login(username=organizer.username, password=PASSWORD)
    response = client.post("/organizer/", {
        "title": "Verified", "period": "month", "min_group_size": 5, "access": "verified",
        "email_domains": "acme.example, Acme.co.uk"})
    assert response.status_code == 302
    created = Survey.objects.get(title="Verified")
    assert created.email_domains == ["acme.example", "acme.co.uk"]
    assert TokenIssuer.objects.filter(survey=created).exists()
    refused = client.post("/organizer/", {
        "title": "No domain", "period": "month", "min_group_size": 5, "access": "verified",
        "email_domains": ""})
    assert refused.status_code == 400
    assert "A verified survey needs at least one email domain." in refused.content.decode()


def test_a_mail_server_that_refuses_costs_no_500_and_logs_no_address(
        api, verified, smtp_server, django_capture_on_commit_callbacks, caplog):
    smtp_server.refuse = True
    address = f"frank@{DOMAIN}"
    with caplog.at_level(logging.DEBUG):
        response = ask_code(api, verified, address, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    assert not smtp_server.messages
    # Every record but the test mail server's own (aiosmtpd logs as "mail.log").
    logged = "\n".join(f"{record.getMessage()} {record.exc_text or ''}"
                       for record in caplog.records if not record.name.startswith("mail.log"))
    assert "MailNotSent" in logged
    assert "frank" not in logged


def test_the_dashboard_and_export_state_the_domains_and_addresses_verified_at_publications(
        api, client, verified, django_capture_on_commit_callbacks):
    bought = [buy_token(api, verified, f"person{i}@{DOMAIN}", django_capture_on_commit_callbacks)
              for i in range(7)]
    for token in bought[:3]:
        assert file(api, verified, token).status_code == 201
    dashboard = f"/d/{verified.dashboard_token}/"
    export = f"/api/v1/d/{verified.dashboard_token}/export/"
    assert "data-membership" not in client.get(dashboard).text  # nothing published yet
    publish(verified)
    # Seven addresses with k = 3: the lower edge of their band, never the band's top.
    page = client.get(dashboard).text
    assert "Every report carries a membership proof for acme.example" in page
    assert "At least 6 addresses verified." in page
    assert api.get(export).json()["membership"] == {
        "access": "verified", "domains": [DOMAIN], "addresses_at_least": 6}
    # Tokens bought between publications move nothing until the next one.
    for i in range(7, 9):
        buy_token(api, verified, f"person{i}@{DOMAIN}", django_capture_on_commit_callbacks)
    assert "At least 6 addresses verified." in client.get(dashboard).text
    assert file(api, verified, bought[3]).status_code == 201
    publish(verified)
    assert "At least 9 addresses verified." in client.get(dashboard).text
    # Closing forgets which addresses took part; what was stated stays.
    services.survey_update(survey=verified, fields={"status": Survey.Status.CLOSED})
    assert TokenIssuance.objects.filter(survey=verified).count() == 0
    publish(verified)
    assert api.get(export).json()["membership"]["addresses_at_least"] == 9


def test_fewer_addresses_than_k_are_not_counted_on_the_dashboard(
        api, client, verified, django_capture_on_commit_callbacks):
    token = buy_token(api, verified, f"dana@{DOMAIN}", django_capture_on_commit_callbacks)
    assert file(api, verified, token).status_code == 201
    publish(verified)
    page = client.get(f"/d/{verified.dashboard_token}/").text
    assert "Every report carries a membership proof for acme.example" in page
    assert "addresses verified" not in page


def test_a_link_survey_states_no_membership(api, client, survey):
    assert api.post(f"{base(survey)}/reports/", report_payload(), format="json").status_code == 201
    publish(survey)
    assert "data-membership" not in client.get(f"/d/{survey.dashboard_token}/").text
    assert api.get(f"/api/v1/d/{survey.dashboard_token}/export/").json()["membership"] == {}
