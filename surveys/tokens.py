"""Privacy Pass publicly verifiable tokens: blind RSA issuance and redemption.

A coworker is to get one token per verified work address and spend it with an
anonymous report. The issuer signs a blinded message (RFC 9474), so it never
sees the token it signs, and a spent token carries nothing that ties it back to
the address it was issued for; anyone holding the issuer's public key can
check that the token is genuine.

The wire formats are Privacy Pass token type 0x0002, "Blind RSA (2048-bit)":
the TokenChallenge and Token structures of RFC 9577 and the TokenRequest and
TokenResponse of RFC 9578, section 6. That token type runs the blind RSA
variant RFC 9474 names RSABSSA-SHA384-PSS-Deterministic: SHA-384, MGF1 with
SHA-384, a 48-byte PSS salt and no message randomizer prefix (the identity
preparation). The prefix is not needed because the signed message already
starts with the client's fresh 32-byte nonce. RFC 9474's sLen=0 variant is the
one it calls PSSZERO; this token type verifies with sLen=48 (RFC 9578 section
6.4, and its token key encoding says saltLength 48).

The module holds the issuer's and the verifier's side: blind signing, token key
encoding, message parsing, token verification and the replay key. The client's
side (blinding and finalizing) lives with the tests as a reference client.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass

import gmpy2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TOKEN_TYPE = 0x0002
MODULUS_BITS = 2048
NK = MODULUS_BITS // 8  # authenticator, blinded message and blind signature length
NID = 32  # token_key_id length
NONCE_LENGTH = 32
DIGEST_LENGTH = 32
SALT_LENGTH = 48  # RSASSA-PSS sLen of token type 0x0002 (the hash length of SHA-384)
PUBLIC_EXPONENT = 65537

TOKEN_REQUEST_LENGTH = 2 + 1 + NK
TOKEN_AUTHENTICATOR_INPUT_LENGTH = 2 + NONCE_LENGTH + DIGEST_LENGTH + NID
TOKEN_LENGTH = TOKEN_AUTHENTICATOR_INPUT_LENGTH + NK
REDEMPTION_CONTEXT_LENGTHS = (0, 32)

# The AlgorithmIdentifier of RFC 9578 section 6.5's token key: id-RSASSA-PSS
# (1.2.840.113549.1.1.10) with RSASSA-PSS-params {hashAlgorithm sha384,
# maskGenAlgorithm mgf1 with sha384, saltLength 48}, the hash identifiers with
# absent parameters as in the RFC's example and test vectors. `cryptography`
# writes RSA public keys only under rsaEncryption, and no ASN.1 library is a
# dependency; this value never changes with the key, so it is spelled out once
# here as DER and checked against the RFC's pkS test vectors.
_RSASSA_PSS_SHA384_ALGORITHM = bytes.fromhex(
    "303d"  # SEQUENCE (AlgorithmIdentifier)
    "06092a864886f70d01010a"  # OID id-RSASSA-PSS
    "3030"  # SEQUENCE (RSASSA-PSS-params)
    "a00d300b0609608648016503040202"  # [0] hashAlgorithm: sha384
    "a11a301806092a864886f70d010108300b0609608648016503040202"  # [1] mgf1(sha384)
    "a203020130"  # [2] saltLength: 48
)

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=SALT_LENGTH)


class TokenError(ValueError):
    """A message of the protocol is refused; `reason` says why, as a short code."""

    reasons: tuple[str, ...] = ()

    def __init__(self, reason: str, detail: str = ""):
        if reason not in self.reasons:
            raise ValueError(f"unknown reason {reason!r} for {type(self).__name__}")
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class TokenInvalid(TokenError):
    """A Token (or its TokenChallenge) is refused at redemption."""

    reasons = ("malformed", "wrong_type", "wrong_challenge", "wrong_key", "bad_signature")


class TokenRequestInvalid(TokenError):
    """A TokenRequest is refused at issuance (RFC 9578 answers these with HTTP 422)."""

    reasons = ("malformed", "wrong_type", "wrong_key", "out_of_range")


class BlindSignError(TokenError):
    """RFC 9474 BlindSign refused its input or failed its own check."""

    reasons = ("wrong_length", "out_of_range", "signing_failure")


class Base64Invalid(ValueError):
    """A base64url text is not one this module accepts."""


# base64url --------------------------------------------------------------------

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64url_encode(data: bytes, *, pad: bool = False) -> str:
    """base64url of `data`, without "=" padding unless `pad`.

    The PrivateToken HTTP authentication scheme (RFC 9577, sections 2.1.1 and
    2.2.1) wants the padding in its header parameters: pass pad=True there.
    """
    text = base64.urlsafe_b64encode(data).decode("ascii")
    return text if pad else text.rstrip("=")


def b64url_decode(text: str | bytes) -> bytes:
    """Bytes of a base64url text, with or without its "=" padding.

    Refuses (Base64Invalid) any character outside the base64url alphabet,
    including "+", "/" and whitespace, wrong padding, and a text whose unused
    low bits are not zero, so that each byte string has one accepted text.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise Base64Invalid("not ASCII") from None
    if not _BASE64URL.fullmatch(text):
        raise Base64Invalid("a character outside the base64url alphabet")
    body = text.rstrip("=")
    padding_given = len(text) - len(body)
    if len(body) % 4 == 1:
        raise Base64Invalid("a length no base64 text can have")
    if padding_given and (len(text) % 4 or padding_given != -len(body) % 4):
        raise Base64Invalid("wrong padding")
    try:
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except binascii.Error as error:  # pragma: no cover - the checks above leave none
        raise Base64Invalid(str(error)) from None
    if b64url_encode(data) != body:
        raise Base64Invalid("non-zero unused bits")
    return data


# Keys -------------------------------------------------------------------------


def generate_issuer_key() -> rsa.RSAPrivateKey:
    """A fresh issuer key: RSA, 2048-bit modulus (token type 0x0002's Nk), e = 65537."""
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=MODULUS_BITS)


def private_key_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM, the form of RFC 9578's skS test vectors."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> rsa.RSAPrivateKey:
    """An issuer key back from PEM; refuses (ValueError) anything but a 2048-bit RSA key."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != MODULUS_BITS:
        raise ValueError("an issuer key is a 2048-bit RSA key")
    return key


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def token_key_bytes(public_key: rsa.RSAPublicKey) -> bytes:
    """The token key encoding of RFC 9578 section 6.5.

    A DER SubjectPublicKeyInfo whose algorithm is id-RSASSA-PSS with SHA-384,
    MGF1-SHA-384 and saltLength 48, around the PKCS#1 RSAPublicKey.
    """
    rsa_public_key = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    bit_string = b"\x00" + rsa_public_key  # no unused bits
    bit_string = b"\x03" + _der_length(len(bit_string)) + bit_string
    body = _RSASSA_PSS_SHA384_ALGORITHM + bit_string
    return b"\x30" + _der_length(len(body)) + body


def load_token_key(data: bytes) -> rsa.RSAPublicKey:
    """The public key of a token key encoding; refuses (ValueError) any other encoding.

    Only the exact encoding token_key_bytes writes for a 2048-bit key is taken,
    so a key whose PSS parameters differ (another hash or salt length) is refused.
    """
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a token key: {error}") from None
    if (
        not isinstance(key, rsa.RSAPublicKey)
        or key.key_size != MODULUS_BITS
        or token_key_bytes(key) != data
    ):
        raise ValueError("not a token key of token type 0x0002")
    return key


def token_key_id(public_key: rsa.RSAPublicKey) -> bytes:
    """SHA-256 of the token key encoding (RFC 9578 section 6.5)."""
    return hashlib.sha256(token_key_bytes(public_key)).digest()


def truncated_token_key_id(public_key: rsa.RSAPublicKey) -> int:
    """The last byte of token_key_id, the only part a TokenRequest carries."""
    return token_key_id(public_key)[-1]


# Blind RSA, the signer's side (RFC 9474) --------------------------------------


def _random_unit(n: int) -> int:
    while True:
        r = secrets.randbelow(n - 1) + 1
        if gmpy2.gcd(r, n) == 1:
            return r


def blind_sign(private_key: rsa.RSAPrivateKey, blinded_msg: bytes) -> bytes:
    """RFC 9474 BlindSign: RSASP1 on the client's blinded message, then RSAVP1 to check it.

    The private exponentiation runs in gmpy2.powmod_sec, GMP's constant-time
    modular exponentiation, over the CRT halves of the key. As well, the input
    is blinded here, at the signer (m * u^e mod n for a fresh random u, then
    divided by u after signing): the blinded message comes from the client, so
    without this the base of the exponentiation, and with it the timing of the
    big-integer arithmetic around powmod_sec (reductions mod p and q, the CRT
    recombination, which use Python's variable-time integers), would be a
    value the client picks. The cost is one exponentiation by e and one
    inverse, small beside the private exponentiation. The final check that
    s^e = m mod n is RFC 9474's, and it also refuses the wrong output a fault
    in one CRT half would give, which would otherwise give away a factor of n.
    """
    numbers = private_key.private_numbers()
    public = numbers.public_numbers
    n, e = public.n, public.e
    modulus_len = (n.bit_length() + 7) // 8
    if len(blinded_msg) != modulus_len:
        raise BlindSignError("wrong_length", f"{len(blinded_msg)} bytes, not {modulus_len}")
    m = int.from_bytes(blinded_msg, "big")
    if m >= n:
        raise BlindSignError("out_of_range", "the blinded message is not below n")

    u = _random_unit(n)
    m_blinded = gmpy2.mpz(m) * gmpy2.powmod(u, e, n) % n
    p, q = gmpy2.mpz(numbers.p), gmpy2.mpz(numbers.q)
    s_p = gmpy2.powmod_sec(m_blinded % p, numbers.dmp1, p)
    s_q = gmpy2.powmod_sec(m_blinded % q, numbers.dmq1, q)
    h = numbers.iqmp * (s_p - s_q) % p
    s_blinded = s_q + q * h
    s = int(s_blinded * gmpy2.invert(u, n) % n)

    if pow(s, e, n) != m:
        raise BlindSignError("signing_failure", "the signature does not verify")
    return s.to_bytes(modulus_len, "big")


def verify_signature(public_key: rsa.RSAPublicKey, message: bytes, signature: bytes) -> bool:
    """RSASSA-PSS-VERIFY with SHA-384, MGF1-SHA-384 and a 48-byte salt, through `cryptography`."""
    try:
        public_key.verify(signature, message, _PSS, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


# Privacy Pass structures (RFC 9577, RFC 9578) ---------------------------------


def _ascii(value: str | bytes, field: str) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{field} is an ASCII string") from None
    return bytes(value)


@dataclass(frozen=True)
class TokenChallenge:
    """The default TokenChallenge of RFC 9577 section 2.1.

    issuer_name and origin_info are ASCII server names (origin_info: none, one,
    or several joined by commas); redemption_context is empty or 32 bytes.
    """

    issuer_name: bytes
    redemption_context: bytes = b""
    origin_info: bytes = b""
    token_type: int = TOKEN_TYPE

    def __post_init__(self):
        for field in ("issuer_name", "redemption_context", "origin_info"):
            if not isinstance(getattr(self, field), bytes):
                raise TypeError(f"{field} is bytes")
        if not 1 <= len(self.issuer_name) <= 0xFFFF:
            raise ValueError("issuer_name is 1 to 65535 bytes")
        if len(self.redemption_context) not in REDEMPTION_CONTEXT_LENGTHS:
            raise ValueError("redemption_context is empty or 32 bytes")
        if len(self.origin_info) > 0xFFFF:
            raise ValueError("origin_info is at most 65535 bytes")
        if not 0 <= self.token_type <= 0xFFFF:
            raise ValueError("token_type is a 16-bit integer")

    def to_bytes(self) -> bytes:
        return b"".join((
            struct.pack("!HH", self.token_type, len(self.issuer_name)),
            self.issuer_name,
            struct.pack("!B", len(self.redemption_context)),
            self.redemption_context,
            struct.pack("!H", len(self.origin_info)),
            self.origin_info,
        ))

    def digest(self) -> bytes:
        """challenge_digest: SHA-256 of the encoded challenge."""
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TokenChallenge":
        """Parse an encoded challenge; refuses (TokenInvalid "malformed") any other bytes."""
        data = bytes(data)
        try:
            token_type, issuer_length = struct.unpack_from("!HH", data, 0)
            at = 4
            issuer_name = data[at:at + issuer_length]
            at += issuer_length
            (context_length,) = struct.unpack_from("!B", data, at)
            at += 1
            redemption_context = data[at:at + context_length]
            at += context_length
            (origin_length,) = struct.unpack_from("!H", data, at)
            at += 2
            origin_info = data[at:at + origin_length]
            at += origin_length
        except struct.error:
            raise TokenInvalid("malformed", "the challenge is cut short") from None
        if (
            at != len(data)
            or len(issuer_name) != issuer_length
            or len(redemption_context) != context_length
            or len(origin_info) != origin_length
        ):
            raise TokenInvalid("malformed", "the challenge's lengths do not add up")
        try:
            return cls(issuer_name, redemption_context, origin_info, token_type)
        except ValueError as error:
            raise TokenInvalid("malformed", str(error)) from None


def token_challenge(
    issuer_name: str | bytes,
    redemption_context: bytes = b"",
    origin_info: str | bytes | list[str] | tuple[str, ...] = b"",
) -> bytes:
    """The bytes of a token type 0x0002 TokenChallenge (RFC 9577 section 2.1).

    origin_info may be given as a list of origin names; they are joined by
    commas, as the RFC writes several names.
    """
    if isinstance(origin_info, list | tuple):
        if any(not name or "," in name for name in origin_info):
            raise ValueError("an origin name is non-empty and has no comma")
        origin_info = ",".join(origin_info)
    return TokenChallenge(
        issuer_name=_ascii(issuer_name, "issuer_name"),
        redemption_context=bytes(redemption_context),
        origin_info=_ascii(origin_info, "origin_info"),
    ).to_bytes()


@dataclass(frozen=True)
class TokenRequest:
    """A token type 0x0002 TokenRequest (RFC 9578 section 6.1)."""

    truncated_token_key_id: int
    blinded_msg: bytes
    token_type: int = TOKEN_TYPE

    def to_bytes(self) -> bytes:
        return struct.pack("!HB", self.token_type, self.truncated_token_key_id) + self.blinded_msg


def parse_token_request(data: bytes) -> TokenRequest:
    """Parse a TokenRequest; refuses (TokenRequestInvalid) other lengths and token types."""
    data = bytes(data)
    if len(data) < 2:
        raise TokenRequestInvalid("malformed", "shorter than a token type")
    (token_type,) = struct.unpack_from("!H", data, 0)
    if token_type != TOKEN_TYPE:
        raise TokenRequestInvalid("wrong_type", f"token type {token_type:#06x}")
    if len(data) != TOKEN_REQUEST_LENGTH:
        raise TokenRequestInvalid("malformed", f"{len(data)} bytes, not {TOKEN_REQUEST_LENGTH}")
    return TokenRequest(truncated_token_key_id=data[2], blinded_msg=data[3:])


def token_response(private_key: rsa.RSAPrivateKey, token_request_bytes: bytes) -> bytes:
    """The issuer's TokenResponse to a TokenRequest: the blind signature (RFC 9578 section 6.2).

    Refuses (TokenRequestInvalid) a malformed request, another token type, a
    request for another key, and a blinded message that is not below n.
    Whether this client may have a token is for the caller to decide first.
    """
    request = parse_token_request(token_request_bytes)
    if request.truncated_token_key_id != truncated_token_key_id(private_key.public_key()):
        raise TokenRequestInvalid("wrong_key", "the truncated token key id is not this key's")
    try:
        return blind_sign(private_key, request.blinded_msg)
    except BlindSignError as error:
        if error.reason != "out_of_range":
            raise
        raise TokenRequestInvalid("out_of_range", "the blinded message is not below n") from None


@dataclass(frozen=True)
class Token:
    """A token type 0x0002 Token (RFC 9577 section 2.2, RFC 9578 section 6.3)."""

    nonce: bytes
    challenge_digest: bytes
    token_key_id: bytes
    authenticator: bytes
    token_type: int = TOKEN_TYPE

    @property
    def authenticator_input(self) -> bytes:
        """token_type || nonce || challenge_digest || token_key_id: what the issuer signed."""
        return (
            struct.pack("!H", self.token_type)
            + self.nonce
            + self.challenge_digest
            + self.token_key_id
        )

    def to_bytes(self) -> bytes:
        return self.authenticator_input + self.authenticator


def parse_token(data: bytes) -> Token:
    """Parse a Token; refuses (TokenInvalid) other lengths and token types."""
    data = bytes(data)
    if len(data) < 2:
        raise TokenInvalid("malformed", "shorter than a token type")
    (token_type,) = struct.unpack_from("!H", data, 0)
    if token_type != TOKEN_TYPE:
        raise TokenInvalid("wrong_type", f"token type {token_type:#06x}")
    if len(data) != TOKEN_LENGTH:
        raise TokenInvalid("malformed", f"{len(data)} bytes, not {TOKEN_LENGTH}")
    at = 2
    nonce = data[at:at + NONCE_LENGTH]
    at += NONCE_LENGTH
    challenge_digest = data[at:at + DIGEST_LENGTH]
    at += DIGEST_LENGTH
    key_id = data[at:at + NID]
    at += NID
    return Token(nonce, challenge_digest, key_id, data[at:])


def token_verify(public_key: rsa.RSAPublicKey, challenge_bytes: bytes, token_bytes: bytes) -> Token:
    """Check a Token against the challenge it must answer and the issuer's key.

    Returns the parsed Token. Raises TokenInvalid, whose reason is "malformed",
    "wrong_type" (of the token or of the challenge), "wrong_challenge" (the
    token answers another challenge), "wrong_key" (issued under another key)
    or "bad_signature". Replay is the caller's to refuse, by token_spent_id.
    """
    token = parse_token(token_bytes)
    challenge = TokenChallenge.from_bytes(challenge_bytes)
    if challenge.token_type != TOKEN_TYPE:
        raise TokenInvalid("wrong_type", f"challenge of token type {challenge.token_type:#06x}")
    if not hmac.compare_digest(token.challenge_digest, hashlib.sha256(challenge_bytes).digest()):
        raise TokenInvalid("wrong_challenge", "the token answers another challenge")
    if not hmac.compare_digest(token.token_key_id, token_key_id(public_key)):
        raise TokenInvalid("wrong_key", "the token was issued under another key")
    if not verify_signature(public_key, token.authenticator_input, token.authenticator):
        raise TokenInvalid("bad_signature", "the authenticator does not verify")
    return token


def token_spent_id(token_bytes: bytes) -> bytes:
    """The value to store once a token is spent, and to look up to refuse it again.

    SHA-256 of the token's authenticator input (token type, nonce, challenge
    digest, token key id), not of the whole token: the authenticator is left
    out, so that one signed input counts once whatever authenticator comes with
    it. Nothing in it ties to issuance: the issuer only ever saw the blinded
    message, which is uniformly random whatever the token, so the stored value
    cannot be matched to the request, or the work address, it was issued for.
    Call it on a token that token_verify accepted.
    """
    return hashlib.sha256(parse_token(token_bytes).authenticator_input).digest()
