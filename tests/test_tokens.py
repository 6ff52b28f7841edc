"""Privacy Pass token type 0x0002: the RFCs' test vectors, refusals and a fresh round trip."""

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from surveys import tokens
from tests import privacypass_client as client

DATA = Path(__file__).parent / "data"
BLIND_RSA = json.loads((DATA / "rfc9474_blind_rsa_vectors.json").read_text())["vectors"]
ISSUANCE = json.loads((DATA / "rfc9578_token_type2_vectors.json").read_text())["vectors"]
CHALLENGES = json.loads((DATA / "rfc9577_challenge_vectors.json").read_text())["vectors"]

DETERMINISTIC = "RSABSSA-SHA384-PSS-Deterministic"


def _hex(vector: dict) -> dict:
    return {name: bytes.fromhex(value) for name, value in vector.items() if name != "variant"}


def _rfc9474_key(vector: dict) -> rsa.RSAPrivateKey:
    p, q, d, e, n = (int(vector[name], 16) for name in "pqden")
    return rsa.RSAPrivateNumbers(
        p=p, q=q, d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p), dmq1=rsa.rsa_crt_dmq1(d, q), iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, n),
    ).private_key()


def _issuance(index: int) -> tuple[dict, rsa.RSAPrivateKey]:
    vector = _hex(ISSUANCE[index])
    return vector, tokens.load_private_key_pem(vector["skS"])


@pytest.fixture(scope="module")
def issuer_key() -> rsa.RSAPrivateKey:
    return tokens.generate_issuer_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return tokens.generate_issuer_key()


CHALLENGE = tokens.token_challenge(
    "chorus.example", redemption_context=bytes(range(32)), origin_info=["chorus.example"]
)


@pytest.fixture(scope="module")
def issued(issuer_key) -> bytes:
    """A token issued under issuer_key for CHALLENGE, through the reference client."""
    public_key = issuer_key.public_key()
    request, pending = client.token_request(public_key, CHALLENGE)
    return client.finalize_token(public_key, pending, tokens.token_response(issuer_key, request))


# RFC 9474: blind RSA ------------------------------------------------------------


def test_the_vectors_name_rsabssa_pss_deterministic_as_a_48_byte_salt_and_no_prefix():
    vector = BLIND_RSA[DETERMINISTIC]
    assert len(bytes.fromhex(vector["salt"])) == tokens.SALT_LENGTH
    assert vector["msg_prefix"] == ""
    assert vector["prepared_msg"] == vector["msg"]


@pytest.mark.parametrize("variant", sorted(BLIND_RSA))
def test_blind_sign_reproduces_the_rfc_9474_blind_signature(variant):
    vector = _hex(BLIND_RSA[variant])
    key = _rfc9474_key(BLIND_RSA[variant])
    assert tokens.blind_sign(key, vector["blinded_msg"]) == vector["blind_sig"]


@pytest.mark.parametrize("variant", sorted(BLIND_RSA))
def test_the_reference_client_reproduces_the_rfc_9474_blinding_and_signature(variant):
    vector = _hex(BLIND_RSA[variant])
    public_key = _rfc9474_key(BLIND_RSA[variant]).public_key()
    n = public_key.public_numbers().n
    inv = int.from_bytes(vector["inv"], "big")
    salt_length = len(vector["salt"])
    msg = vector["prepared_msg"]

    assert client.emsa_pss_encode(msg, n.bit_length() - 1, vector["salt"]) == vector["encoded_msg"]
    blinded_msg, client_inv = client.blind(
        public_key, msg, salt_length=salt_length, salt=vector["salt"], r=pow(inv, -1, n)
    )
    assert (blinded_msg, client_inv) == (vector["blinded_msg"], inv)
    sig = client.finalize(public_key, msg, vector["blind_sig"], inv, salt_length=salt_length)
    assert sig == vector["sig"]
    public_key.verify(
        sig, msg, padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=salt_length),
        hashes.SHA384(),
    )


def test_the_deterministic_vectors_signature_verifies_as_a_token_authenticator_would():
    vector = _hex(BLIND_RSA[DETERMINISTIC])
    public_key = _rfc9474_key(BLIND_RSA[DETERMINISTIC]).public_key()
    assert tokens.verify_signature(public_key, vector["msg"], vector["sig"])
    assert not tokens.verify_signature(public_key, vector["msg"] + b"!", vector["sig"])


def test_a_blinded_message_not_below_n_is_refused():
    key = _rfc9474_key(BLIND_RSA[DETERMINISTIC])
    n = key.public_key().public_numbers().n
    modulus_len = key.key_size // 8
    for m in (n, n + 1, 2 ** (8 * modulus_len) - 1):
        with pytest.raises(tokens.BlindSignError) as refused:
            tokens.blind_sign(key, m.to_bytes(modulus_len, "big"))
        assert refused.value.reason == "out_of_range"


def test_a_blinded_message_of_the_wrong_length_is_refused():
    key = _rfc9474_key(BLIND_RSA[DETERMINISTIC])
    blinded_msg = bytes.fromhex(BLIND_RSA[DETERMINISTIC]["blinded_msg"])
    for wrong in (blinded_msg[1:], b"\x00" + blinded_msg, b""):
        with pytest.raises(tokens.BlindSignError) as refused:
            tokens.blind_sign(key, wrong)
        assert refused.value.reason == "wrong_length"


def test_blind_signing_is_rsasp1_whatever_the_signer_side_blinding(issuer_key):
    numbers = issuer_key.private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    for m in (0, 1, 2, n - 1, 0x1234567890ABCDEF << 1000):
        assert tokens.blind_sign(issuer_key, m.to_bytes(256, "big")) == pow(m, d, n).to_bytes(
            256, "big"
        )


# RFC 9578: token type 0x0002 issuance ---------------------------------------------


@pytest.mark.parametrize("index", range(len(ISSUANCE)))
def test_the_token_key_encoding_reproduces_the_rfc_9578_pks(index):
    vector, key = _issuance(index)
    assert tokens.token_key_bytes(key.public_key()) == vector["pkS"]
    loaded = tokens.load_token_key(vector["pkS"])
    assert loaded.public_numbers() == key.public_key().public_numbers()


def test_the_token_key_carries_the_rsassa_pss_sha384_parameters_with_salt_length_48():
    vector, key = _issuance(0)
    encoded = tokens.token_key_bytes(key.public_key())
    assert encoded[4:17] == bytes.fromhex("303d06092a864886f70d01010a")  # id-RSASSA-PSS
    assert encoded[62:67] == bytes.fromhex("a203020130")  # saltLength 48
    assert tokens.token_key_id(key.public_key()) == hashlib.sha256(vector["pkS"]).digest()


def test_the_token_key_encoding_of_a_fresh_key_is_read_back(issuer_key):
    public_key = issuer_key.public_key()
    encoded = tokens.token_key_bytes(public_key)
    assert tokens.load_token_key(encoded).public_numbers() == public_key.public_numbers()


def test_a_token_key_under_rsa_encryption_is_refused(issuer_key):
    spki = issuer_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for wrong in (spki, b"", b"\x30\x00", tokens.token_key_bytes(issuer_key.public_key())[:-1]):
        with pytest.raises(ValueError, match="token key"):
            tokens.load_token_key(wrong)


@pytest.mark.parametrize("index", range(len(ISSUANCE)))
def test_the_rfc_9578_token_request_parses_for_its_key(index):
    vector, key = _issuance(index)
    request = tokens.parse_token_request(vector["token_request"])
    assert request.token_type == tokens.TOKEN_TYPE
    assert request.truncated_token_key_id == tokens.truncated_token_key_id(key.public_key())
    assert len(request.blinded_msg) == tokens.NK
    assert request.to_bytes() == vector["token_request"]


@pytest.mark.parametrize("index", range(len(ISSUANCE)))
def test_the_issuer_reproduces_the_rfc_9578_token_response(index):
    vector, key = _issuance(index)
    assert tokens.token_response(key, vector["token_request"]) == vector["token_response"]


@pytest.mark.parametrize("index", range(len(ISSUANCE)))
def test_the_reference_client_reproduces_the_rfc_9578_request_and_token(index):
    vector, key = _issuance(index)
    public_key = key.public_key()
    request, pending = client.token_request(
        public_key, vector["token_challenge"], nonce=vector["nonce"], salt=vector["salt"],
        r=int.from_bytes(vector["blind"], "big"),
    )
    assert request == vector["token_request"]
    assert client.finalize_token(public_key, pending, vector["token_response"]) == vector["token"]


@pytest.mark.parametrize("index", range(len(ISSUANCE)))
def test_the_rfc_9578_token_parses_and_verifies_under_its_challenge(index):
    vector, key = _issuance(index)
    token = tokens.parse_token(vector["token"])
    assert token.nonce == vector["nonce"]
    assert token.challenge_digest == hashlib.sha256(vector["token_challenge"]).digest()
    assert token.token_key_id == hashlib.sha256(vector["pkS"]).digest()
    assert token.to_bytes() == vector["token"]
    verified = tokens.token_verify(key.public_key(), vector["token_challenge"], vector["token"])
    assert verified == token


@pytest.mark.parametrize("index", range(len(ISSUANCE)))
def test_the_rfc_9578_challenge_parses_and_encodes_back(index):
    vector, _ = _issuance(index)
    challenge = tokens.TokenChallenge.from_bytes(vector["token_challenge"])
    assert challenge.token_type == tokens.TOKEN_TYPE
    assert challenge.issuer_name == b"issuer.example"
    assert challenge.to_bytes() == vector["token_challenge"]


# RFC 9577: challenges and the token authenticator input ---------------------------


@pytest.mark.parametrize("index", range(len(CHALLENGES)))
def test_the_challenge_and_authenticator_input_reproduce_the_rfc_9577_vector(index):
    vector = _hex(CHALLENGES[index])
    origin_info = vector["origin_info"].decode("ascii")
    challenge = tokens.token_challenge(
        vector["issuer_name"].decode("ascii"),
        redemption_context=vector["redemption_context"],
        origin_info=origin_info.split(",") if origin_info else "",
    )
    token = tokens.Token(
        nonce=vector["nonce"],
        challenge_digest=hashlib.sha256(challenge).digest(),
        token_key_id=vector["token_key_id"],
        authenticator=b"",
    )
    assert token.authenticator_input == vector["token_authenticator_input"]


def test_a_challenge_is_built_field_by_field():
    assert tokens.token_challenge("i.example", b"", "") == (
        b"\x00\x02" + b"\x00\x09i.example" + b"\x00" + b"\x00\x00"
    )
    assert tokens.token_challenge("i", b"\x07" * 32, ["a.example", "b.example"]) == (
        b"\x00\x02\x00\x01i" + b"\x20" + b"\x07" * 32 + b"\x00\x13a.example,b.example"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("",), "issuer_name"),
        (("i.example", b"\x00" * 31), "redemption_context"),
        (("i.example", b"\x00" * 33), "redemption_context"),
        (("i.example", b"", "x" * 0x10000), "origin_info"),
        (("issuer.exämple",), "ASCII"),
        (("i.example", b"", ["a.example", ""]), "origin name"),
    ],
)
def test_a_challenge_with_a_field_out_of_bounds_is_not_built(arguments, message):
    with pytest.raises(ValueError, match=message):
        tokens.token_challenge(*arguments)


def test_a_challenge_takes_its_fields_as_bytes():
    with pytest.raises(TypeError, match="issuer_name"):
        tokens.TokenChallenge(issuer_name="issuer.example")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x02\x00",
        b"\x00\x02\x00\x00\x00\x00\x00",  # empty issuer_name
        CHALLENGE[:-1],
        CHALLENGE + b"\x00",
        b"\x00\x02\x00\x01i\x05abcde\x00\x00",  # a 5-byte redemption_context
    ],
)
def test_a_malformed_challenge_is_refused(data):
    with pytest.raises(tokens.TokenInvalid) as refused:
        tokens.TokenChallenge.from_bytes(data)
    assert refused.value.reason == "malformed"


# Refusals at issuance --------------------------------------------------------------


def test_a_token_request_of_the_wrong_length_is_refused():
    vector, key = _issuance(0)
    for wrong in (b"", b"\x00", vector["token_request"][:-1], vector["token_request"] + b"\x00"):
        with pytest.raises(tokens.TokenRequestInvalid) as refused:
            tokens.token_response(key, wrong)
        assert refused.value.reason == "malformed"


def test_a_token_request_of_another_token_type_is_refused():
    vector, key = _issuance(0)
    for token_type in (b"\x00\x01", b"\x00\x03", b"\x00\x00"):
        with pytest.raises(tokens.TokenRequestInvalid) as refused:
            tokens.token_response(key, token_type + vector["token_request"][2:])
        assert refused.value.reason == "wrong_type"


def test_a_token_request_for_another_key_is_refused():
    vector, key = _issuance(0)
    request = bytearray(vector["token_request"])
    request[2] ^= 0x01
    with pytest.raises(tokens.TokenRequestInvalid) as refused:
        tokens.token_response(key, bytes(request))
    assert refused.value.reason == "wrong_key"


def test_a_token_request_whose_blinded_message_is_not_below_n_is_refused():
    vector, key = _issuance(0)
    request = vector["token_request"][:3] + b"\xff" * tokens.NK
    with pytest.raises(tokens.TokenRequestInvalid) as refused:
        tokens.token_response(key, request)
    assert refused.value.reason == "out_of_range"


def test_an_issuer_key_of_another_size_is_not_loaded():
    # Token type 0x0002 fixes the modulus at 2048 bits; a larger key is refused as well.
    larger = _rfc9474_key(BLIND_RSA[DETERMINISTIC])
    with pytest.raises(ValueError, match="2048-bit"):
        tokens.load_private_key_pem(tokens.private_key_pem(larger))


def test_an_issuer_key_survives_its_pem(issuer_key):
    loaded = tokens.load_private_key_pem(tokens.private_key_pem(issuer_key))
    assert loaded.private_numbers() == issuer_key.private_numbers()


# Refusals at redemption ------------------------------------------------------------


def _refusal(public_key, challenge, token) -> str:
    with pytest.raises(tokens.TokenInvalid) as refused:
        tokens.token_verify(public_key, challenge, token)
    return refused.value.reason


def test_a_token_of_the_wrong_length_is_refused(issuer_key, issued):
    public_key = issuer_key.public_key()
    for wrong in (b"", b"\x00", issued[:-1], issued + b"\x00", issued[: tokens.TOKEN_LENGTH // 2]):
        assert _refusal(public_key, CHALLENGE, wrong) == "malformed"


def test_a_token_of_another_token_type_is_refused(issuer_key, issued):
    for token_type in (b"\x00\x01", b"\x00\x03", b"\xff\xff"):
        assert _refusal(issuer_key.public_key(), CHALLENGE, token_type + issued[2:]) == "wrong_type"


def test_a_challenge_of_another_token_type_is_refused(issuer_key, issued):
    challenge = b"\x00\x01" + CHALLENGE[2:]
    assert _refusal(issuer_key.public_key(), challenge, issued) == "wrong_type"


def test_a_malformed_challenge_is_refused_at_redemption(issuer_key, issued):
    assert _refusal(issuer_key.public_key(), CHALLENGE + b"\x00", issued) == "malformed"


def test_a_token_for_another_challenge_is_refused(issuer_key, issued):
    other = tokens.token_challenge(
        "chorus.example", redemption_context=bytes(32), origin_info=["chorus.example"]
    )
    assert _refusal(issuer_key.public_key(), other, issued) == "wrong_challenge"


def test_the_rfc_9578_token_is_refused_under_another_vectors_challenge():
    vector, key = _issuance(0)
    other, _ = _issuance(1)
    assert _refusal(key.public_key(), other["token_challenge"], vector["token"]) == (
        "wrong_challenge"
    )


def test_a_token_for_another_key_is_refused(issuer_key, other_key, issued):
    assert _refusal(other_key.public_key(), CHALLENGE, issued) == "wrong_key"


def test_a_token_claiming_another_key_id_is_refused(issuer_key, other_key, issued):
    token = tokens.parse_token(issued)
    forged = tokens.Token(
        nonce=token.nonce,
        challenge_digest=token.challenge_digest,
        token_key_id=tokens.token_key_id(other_key.public_key()),
        authenticator=token.authenticator,
    )
    assert _refusal(other_key.public_key(), CHALLENGE, forged.to_bytes()) == "bad_signature"


def test_a_tampered_authenticator_is_refused(issuer_key, issued):
    public_key = issuer_key.public_key()
    for at in (tokens.TOKEN_AUTHENTICATOR_INPUT_LENGTH, tokens.TOKEN_LENGTH - 1):
        tampered = bytearray(issued)
        tampered[at] ^= 0x01
        assert _refusal(public_key, CHALLENGE, bytes(tampered)) == "bad_signature"
    zero = issued[: tokens.TOKEN_AUTHENTICATOR_INPUT_LENGTH] + bytes(tokens.NK)
    assert _refusal(public_key, CHALLENGE, zero) == "bad_signature"
    over_n = issued[: tokens.TOKEN_AUTHENTICATOR_INPUT_LENGTH] + b"\xff" * tokens.NK
    assert _refusal(public_key, CHALLENGE, over_n) == "bad_signature"


def test_a_tampered_nonce_is_refused(issuer_key, issued):
    tampered = bytearray(issued)
    tampered[2] ^= 0x80
    assert _refusal(issuer_key.public_key(), CHALLENGE, bytes(tampered)) == "bad_signature"


def _request_for(key, challenge):
    """(PendingToken, TokenResponse) for a fresh request to `key`."""
    request, pending = client.token_request(key.public_key(), challenge)
    return pending, tokens.token_response(key, request)


def test_a_token_signed_by_another_key_under_this_keys_id_is_refused(issuer_key, other_key):
    public_key = issuer_key.public_key()
    pending, response = _request_for(other_key, CHALLENGE)
    token = tokens.parse_token(client.finalize_token(other_key.public_key(), pending, response))
    forged = tokens.Token(
        nonce=token.nonce,
        challenge_digest=token.challenge_digest,
        token_key_id=tokens.token_key_id(public_key),
        authenticator=token.authenticator,
    )
    assert _refusal(public_key, CHALLENGE, forged.to_bytes()) == "bad_signature"


def test_every_refusal_has_a_known_reason():
    with pytest.raises(ValueError, match="unknown reason"):
        tokens.TokenInvalid("expired")


# Replay ------------------------------------------------------------------------------


def test_the_spent_id_is_the_hash_of_the_signed_input_and_not_of_the_authenticator(issued):
    token = tokens.parse_token(issued)
    spent = tokens.token_spent_id(issued)
    assert spent == hashlib.sha256(issued[: tokens.TOKEN_AUTHENTICATOR_INPUT_LENGTH]).digest()
    other_authenticator = token.authenticator_input + bytes(tokens.NK)
    assert tokens.token_spent_id(other_authenticator) == spent


def test_two_tokens_for_one_challenge_have_different_spent_ids(issuer_key, issued):
    public_key = issuer_key.public_key()
    pending, response = _request_for(issuer_key, CHALLENGE)
    second = client.finalize_token(public_key, pending, response)
    tokens.token_verify(public_key, CHALLENGE, second)
    assert tokens.token_spent_id(second) != tokens.token_spent_id(issued)


def test_the_spent_id_of_a_malformed_token_is_refused():
    with pytest.raises(tokens.TokenInvalid) as refused:
        tokens.token_spent_id(b"\x00\x02" + bytes(10))
    assert refused.value.reason == "malformed"


# base64url ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\xfb", b"\xfb\xff", b"\xfb\xff\xbf", bytes(range(256))])
def test_base64url_round_trips_with_and_without_padding(data):
    text = tokens.b64url_encode(data)
    assert "=" not in text
    assert "+" not in text
    assert "/" not in text
    assert tokens.b64url_decode(text) == data
    padded = tokens.b64url_encode(data, pad=True)
    assert len(padded) % 4 == 0
    assert tokens.b64url_decode(padded) == data
    assert tokens.b64url_decode(padded.encode("ascii")) == data


def test_a_token_survives_base64url(issuer_key, issued):
    text = tokens.b64url_encode(issued)
    tokens.token_verify(issuer_key.public_key(), CHALLENGE, tokens.b64url_decode(text))


@pytest.mark.parametrize(
    "text",
    [
        "+_8",  # standard alphabet
        "-/8",
        "-_8 ",  # whitespace
        " -_8",
        "-_\n8",
        "-_8===",  # too much padding
        "-_=8",  # padding in the middle
        "-_8==",
        "A",  # a length base64 never has
        "AAAAA",
        "AB==",  # unused bits not zero
        "-_9",
        "AA=",
        "é",
        b"\xff\xfe",
    ],
)
def test_malformed_base64url_is_refused(text):
    with pytest.raises(tokens.Base64Invalid):
        tokens.b64url_decode(text)


# A fresh key, end to end -----------------------------------------------------------


def test_a_fresh_2048_bit_key_issues_and_verifies_a_token_end_to_end(issuer_key):
    public_key = issuer_key.public_key()
    assert public_key.key_size == 2048
    challenge = tokens.token_challenge("issuer.chorus.example", origin_info="chorus.example")

    request, pending = client.token_request(public_key, challenge)  # client blinds
    response = tokens.token_response(issuer_key, request)  # issuer signs
    token = client.finalize_token(public_key, pending, response)  # client finalizes

    verified = tokens.token_verify(public_key, challenge, token)  # origin verifies
    assert verified.nonce == pending.token_input[2:34]
    assert verified.token_key_id == tokens.token_key_id(public_key)
    # The issuer saw the blinded message only: it is not the token's signed input,
    # nor does the blind signature appear in the token.
    assert request[3:] != tokens.parse_token(token).authenticator
    assert response != tokens.parse_token(token).authenticator
