"""A DKIM-signed message already delivered to a work address proves it, with no mail from
this service: checked against a static DNS record here (CHORUS_DKIM_TXT_LOOKUP), read in
memory and dropped."""

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from surveys import tokens
from surveys.models import TokenIssuance
from tests import privacypass_client as client
from tests.conftest import VERIFIED_DOMAIN
from tests.factories import report_payload

pytestmark = pytest.mark.django_db

DOMAIN = VERIFIED_DOMAIN
SELECTOR = b"chorus"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
_RECORD = b"v=DKIM1; k=rsa; p=" + base64.b64encode(_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def static_txt(name, timeout=5):
    """The DNS the tests see: acme.example's DKIM key and nothing else."""
    return _RECORD if name.rstrip(b".") == SELECTOR + b"._domainkey." + DOMAIN.encode() else None


@pytest.fixture(autouse=True)
def static_dns(settings):
    settings.CHORUS_DKIM_TXT_LOOKUP = "tests.test_membership_dkim.static_txt"


def message(*, to=f"dana@{DOMAIN}", cc=None, signer=DOMAIN,
            headers=(b"from", b"to", b"subject")) -> bytes:
    lines = [f"From: Payroll <payroll@{DOMAIN}>", f"To: {to}",
             *([f"Cc: {cc}"] if cc else []), "Subject: Your payslip",
             "Message-ID: <1@acme.example>", "", "Your payslip for November is ready.", ""]
    body = "\r\n".join(lines).encode()
    signature = dkim.sign(body, SELECTOR, signer.encode(), _PEM, include_headers=list(headers))
    return signature + body


def buy(api, survey, proof: bytes):
    key = api.get(f"/api/v1/s/{survey.share_token}/token-key/").json()
    public_key = tokens.load_token_key(tokens.b64url_decode(key["token_key"]))
    challenge = tokens.b64url_decode(key["challenge"])
    request, pending = client.token_request(public_key, challenge)
    response = api.post(f"/api/v1/s/{survey.share_token}/tokens/", {
        "proof": tokens.b64url_encode(proof), "token_request": tokens.b64url_encode(request)},
        format="json")
    if response.status_code != 200:
        return response, None
    return response, client.finalize_token(
        public_key, pending, tokens.b64url_decode(response.json()["token_response"]))


def test_a_signed_message_to_a_work_address_buys_a_token_a_report_can_spend(api, verified):
    response, token = buy(api, verified, message())
    assert response.status_code == 200
    filed = api.post(f"/api/v1/s/{verified.share_token}/reports/",
                     {**report_payload(), "token": tokens.b64url_encode(token)}, format="json")
    assert filed.status_code == 201
    # One token per address, whichever way it was proven.
    again, _token = buy(api, verified, message())
    assert again.status_code == 409
    assert TokenIssuance.objects.filter(survey=verified).count() == 1


@pytest.mark.parametrize(("proof", "why"), [
    (message(signer="elsewhere.example"), "signed by another domain"),
    (message(to="dana@elsewhere.example"), "sent to another domain"),
    (message(headers=(b"from", b"subject")), "its recipient not signed"),
    (message(cc=f"erin@{DOMAIN}"), "sent to two coworkers"),
    (message().replace(b"November", b"December"), "tampered body"),
    (message().replace(b"To: dana@", b"To: erin@"), "tampered recipient"),
    (b"not a message at all", "no signature"),
])
def test_a_message_that_does_not_prove_one_work_address_is_refused(api, verified, proof, why):
    response, _token = buy(api, verified, proof)
    assert response.status_code == 400, why
    assert list(response.json()) == ["proof"], why
    assert not TokenIssuance.objects.exists()


def test_neither_code_nor_proof_is_a_400_naming_the_fields(api, verified):
    response = api.post(f"/api/v1/s/{verified.share_token}/tokens/",
                        {"token_request": "A" * 346}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"email", "code"}
