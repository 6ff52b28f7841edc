"""A reference Privacy Pass client for token type 0x0002, to test the issuer against.

Blind and Finalize of RFC 9474 section 4 (EMSA-PSS-ENCODE of RFC 8017 section
9.1.1 with SHA-384 and MGF1-SHA-384, written out here so the test does not
lean on the code it checks), and the client's steps of RFC 9578 section 6:
building a TokenRequest and turning the TokenResponse into a Token. The
randomness (salt, blind, nonce) can be fixed, to replay the RFCs' test vectors.
"""

import hashlib
import secrets
import struct
from dataclasses import dataclass
from math import gcd

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from surveys import tokens

HASH_LENGTH = 48  # SHA-384


def mgf1_sha384(seed: bytes, length: int) -> bytes:
    out = b"".join(
        hashlib.sha384(seed + struct.pack("!I", counter)).digest()
        for counter in range(-(-length // HASH_LENGTH))
    )
    return out[:length]


def emsa_pss_encode(msg: bytes, em_bits: int, salt: bytes) -> bytes:
    """RFC 8017 section 9.1.1 with SHA-384 and MGF1-SHA-384."""
    em_len = -(-em_bits // 8)
    m_hash = hashlib.sha384(msg).digest()
    if em_len < HASH_LENGTH + len(salt) + 2:
        raise ValueError("encoding error")
    h = hashlib.sha384(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - len(salt) - HASH_LENGTH - 2) + b"\x01" + salt
    masked_db = bytearray(a ^ b for a, b in zip(db, mgf1_sha384(h, len(db)), strict=True))
    masked_db[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked_db) + h + b"\xbc"


def _pss(salt_length: int) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=salt_length)


def blind(
    public_key: rsa.RSAPublicKey,
    msg: bytes,
    *,
    salt_length: int = tokens.SALT_LENGTH,
    salt: bytes | None = None,
    r: int | None = None,
) -> tuple[bytes, int]:
    """RFC 9474 Blind: (blinded_msg, inv)."""
    numbers = public_key.public_numbers()
    n, e = numbers.n, numbers.e
    modulus_len = (n.bit_length() + 7) // 8
    if salt is None:
        salt = secrets.token_bytes(salt_length)
    if len(salt) != salt_length:
        raise ValueError("salt of the wrong length")
    # emBits = modBits - 1, as RSASSA-PSS-SIGN of RFC 8017 section 8.1.1 has it,
    # so that the result verifies as an ordinary RSA-PSS signature.
    encoded_msg = emsa_pss_encode(msg, n.bit_length() - 1, salt)
    m = int.from_bytes(encoded_msg, "big")
    if gcd(m, n) != 1:
        raise ValueError("invalid input")
    if r is None:
        r = secrets.randbelow(n - 1) + 1
    inv = pow(r, -1, n)  # raises ValueError ("blinding error") if r is no unit
    z = m * pow(r, e, n) % n
    return z.to_bytes(modulus_len, "big"), inv


def finalize(
    public_key: rsa.RSAPublicKey,
    msg: bytes,
    blind_sig: bytes,
    inv: int,
    *,
    salt_length: int = tokens.SALT_LENGTH,
) -> bytes:
    """RFC 9474 Finalize: unblind the blind signature and check it as RSASSA-PSS."""
    n = public_key.public_numbers().n
    modulus_len = (n.bit_length() + 7) // 8
    if len(blind_sig) != modulus_len:
        raise ValueError("unexpected input size")
    s = int.from_bytes(blind_sig, "big") * inv % n
    sig = s.to_bytes(modulus_len, "big")
    try:
        public_key.verify(sig, msg, _pss(salt_length), hashes.SHA384())
    except InvalidSignature:
        raise ValueError("invalid signature") from None
    return sig


@dataclass(frozen=True)
class PendingToken:
    """What the client keeps between its TokenRequest and the issuer's TokenResponse."""

    token_input: bytes
    inv: int


def token_request(
    public_key: rsa.RSAPublicKey,
    challenge: bytes,
    *,
    nonce: bytes | None = None,
    salt: bytes | None = None,
    r: int | None = None,
) -> tuple[bytes, PendingToken]:
    """RFC 9578 section 6.1: the TokenRequest bytes and what to keep for finalizing."""
    if nonce is None:
        nonce = secrets.token_bytes(tokens.NONCE_LENGTH)
    key_id = tokens.token_key_id(public_key)
    token_input = (
        struct.pack("!H", tokens.TOKEN_TYPE) + nonce + hashlib.sha256(challenge).digest() + key_id
    )
    blinded_msg, inv = blind(public_key, token_input, salt=salt, r=r)
    request = struct.pack("!HB", tokens.TOKEN_TYPE, key_id[-1]) + blinded_msg
    return request, PendingToken(token_input, inv)


def finalize_token(public_key: rsa.RSAPublicKey, pending: PendingToken, response: bytes) -> bytes:
    """RFC 9578 section 6.3: the Token from the issuer's TokenResponse."""
    return pending.token_input + finalize(public_key, pending.token_input, response, pending.inv)
