"""Sealed contents of held reports.

A report waits in the holding table until a publication moves it into the
reports table. While it waits, its answers are sealed (AES-GCM under a key
derived per survey from SECRET_KEY by HKDF), so the holding table's rows, its
dead row versions and the WAL show an opaque blob in arrival order, never
which unit, period or signals arrived when. Without SECRET_KEY nobody reading
the database files can open them.
"""

import json
import os
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.utils.crypto import salted_hmac

_NONCE_BYTES = 12
# Every blob is as long as the longest answers can make it. A blob's length
# would otherwise give its comment's length, which the published report shows
# in clear: matched up, a held row's arrival order (and the invite code whose
# deletion shares its transaction) would point at one published report. A
# comment is at most 2,000 characters, and JSON writes none of them in more
# than 6 bytes; the other answers take well under 512.
_SEALED_PLAIN_BYTES = 2000 * 6 + 512
_SEAL_INFO = b"chorus.held-report.seal:"
_LOOKUP_SALT = "chorus.held-report.lookup"


@lru_cache(maxsize=1024)
def _cipher(secret_key: str, survey_id: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=_SEAL_INFO + survey_id.encode()).derive(secret_key.encode())
    return AESGCM(key)


def _aad(survey_id: str, row_id: str) -> bytes:
    # Binds a blob to its survey and row: a blob copied to another row or
    # survey does not open.
    return f"{survey_id}:{row_id}".encode()


def seal(*, survey_id, row_id, content: dict) -> bytes:
    survey_id, row_id = str(survey_id), str(row_id)
    nonce = os.urandom(_NONCE_BYTES)
    plain = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
    if len(plain) > _SEALED_PLAIN_BYTES:
        raise ValueError("held report content is longer than any report can be")
    # Trailing white space: JSON reads the content back unchanged.
    plain = plain.ljust(_SEALED_PLAIN_BYTES)
    return nonce + _cipher(settings.SECRET_KEY, survey_id).encrypt(
        nonce, plain, _aad(survey_id, row_id))


def unseal(*, survey_id, row_id, sealed: bytes) -> dict:
    survey_id, row_id = str(survey_id), str(row_id)
    sealed = bytes(sealed)
    plain = _cipher(settings.SECRET_KEY, survey_id).decrypt(
        sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(survey_id, row_id))
    return json.loads(plain)


def receipt_lookup(receipt: str) -> str:
    """How a held report is found by its receipt: an HMAC under a key derived
    from SECRET_KEY, a different value from Report.receipt_hash, so the two
    tables cannot be joined without the key."""
    return salted_hmac(_LOOKUP_SALT, receipt, algorithm="sha256").hexdigest()
