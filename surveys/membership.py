"""Membership tokens: only coworkers (verified) or invitees (invite codes) can report,
and nobody can tell which of them filed which report.

A survey whose access needs a token (`Survey.needs_token`: "verified" or "invite") has a
Privacy Pass issuer (RFC 9578 token type 0x0002, surveys.tokens). On a verified survey a
respondent proves they hold an address at one of the survey's `email_domains`, with a
one-time code mailed to it or a DKIM-signed message delivered to it, and buys the
survey's one token for that address; on an invite-only survey an invite code buys one
token, and is used up by it. Either way the respondent sends a blinded TokenRequest: the
issuer signs without seeing the token. The report then carries the finalized token, which
is checked against the survey's key and challenge and spent in the report's own
transaction, so no transaction and no row holds a code or an address with a report.

What is kept: an HMAC of each address that bought a token (to refuse a second), keyed by
a per-survey salt that is destroyed with those rows when the survey closes; the last code
mailed to an address, as an HMAC, until it buys a token or expires; the unused invite
codes' hashes; the spent tokens' replay ids. Never the address, the code in clear, the
token request or anything of the issuance on a report: blinding leaves the spent token
and its issuance no shared value.
"""

from __future__ import annotations

import datetime as dt
import email.parser as email_parser
import email.policy as email_policy
import hashlib
import hmac
import os
import secrets
from email.utils import getaddresses

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from surveys import ratelimit, tokens
from surveys.models import (
    InviteCode,
    SpentToken,
    Survey,
    TokenIssuance,
    TokenIssuer,
    VerificationCode,
)

VERIFY = "verify"  # the rate-limit scope of code requests, per client and per address
INVITE = "invite"  # the rate-limit scope of invite codes tried, per client
CODE_DIGITS = 8
CODE_VALID_MINUTES = 30
CODE_WRONG_ATTEMPTS = 5
CODES_PER_ADDRESS_PER_DAY = 3
EMAIL_DOMAINS_MAX = 20
ADDRESS_MAX_LENGTH = 254  # RFC 5321's path limit
PROOF_MAX_BYTES = 256 * 1024  # a message kept as proof: headers and a modest body
# Every survey's challenge names this issuer and the survey: a token answers one survey.
ISSUER_NAME = "chorus"

_KEY_INFO = b"chorus.token-issuer.private-key:"
_ADDRESS_INFO = b"chorus.token-issuer.address:"
_NONCE_BYTES = 12


class MembershipRefused(Exception):
    """Verification or issuance refused; `status` is the HTTP status to answer."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


class CodesThrottled(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


def _secret() -> bytes:
    return (settings.CHORUS_TOKEN_KEY_SECRET or settings.SECRET_KEY).encode()


def _sealing(survey_id) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=_KEY_INFO + str(survey_id).encode()).derive(_secret())
    return AESGCM(key)


def email_domains_clean(domains) -> list[str]:
    """Lower-case domain names, each checked as the domain of an address; ValidationError
    on "email_domains"."""
    if not isinstance(domains, list | tuple) or len(domains) > EMAIL_DOMAINS_MAX:
        raise ValidationError({"email_domains": [
            _("Give a list of at most %(n)d domains.") % {"n": EMAIL_DOMAINS_MAX}]})
    cleaned = []
    for domain in domains:
        name = str(domain).strip().lower().removeprefix("@")
        try:
            validate_email(f"someone@{name}")
        except ValidationError:
            raise ValidationError({"email_domains": [
                _("“%(domain)s” is not a domain name.") % {"domain": str(domain)[:100]}]}) from None
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


@transaction.atomic
def issuer_create(*, survey: Survey) -> TokenIssuer:
    """The survey's issuer with a fresh 2048-bit key, made once (when the survey comes to
    need tokens); the private key sealed, bound to the survey."""
    found = TokenIssuer.objects.select_for_update().filter(survey=survey).first()
    if found is not None:
        if found.address_salt is None:
            found.address_salt = os.urandom(32)
            found.save(update_fields=["address_salt"])
        return found
    private_key = tokens.generate_issuer_key()
    nonce = os.urandom(_NONCE_BYTES)
    sealed = nonce + _sealing(survey.id).encrypt(nonce, tokens.private_key_pem(private_key),
                                                 str(survey.id).encode())
    return TokenIssuer.objects.create(
        survey=survey, token_key=tokens.token_key_bytes(private_key.public_key()),
        sealed_private_key=sealed, address_salt=os.urandom(32))


def _private_key(issuer: TokenIssuer):
    sealed = bytes(issuer.sealed_private_key)
    pem = _sealing(issuer.survey_id).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:],
                                             str(issuer.survey_id).encode())
    return tokens.load_private_key_pem(pem)


def membership_forget(*, survey: Survey) -> None:
    """Destroys the address salt and every row keyed by it (a survey that closes): nothing
    is left that tells which addresses bought a token, even with every secret."""
    TokenIssuer.objects.filter(survey=survey).update(address_salt=None)
    TokenIssuance.objects.filter(survey=survey).delete()
    VerificationCode.objects.filter(survey=survey).delete()


def membership_forget_closed() -> int:
    """membership_forget for every verified survey closed by its last day or its status
    that still holds an address salt; returns how many."""
    today = timezone.localdate()
    held = TokenIssuer.objects.filter(address_salt__isnull=False)
    closed = Survey.objects.filter(
        Q(status=Survey.Status.CLOSED) | Q(closes_on__lt=today),
        pk__in=held.values("survey_id"))
    surveys = list(closed)
    for survey in surveys:
        membership_forget(survey=survey)
    return len(surveys)


def challenge_of(survey: Survey) -> bytes:
    """The TokenChallenge a token for this survey answers (RFC 9577): no redemption
    context, which would let issuance and redemption be matched."""
    return tokens.token_challenge(ISSUER_NAME, b"", str(survey.id))


def issuer_of(survey: Survey, *, access: str | None = None) -> TokenIssuer:
    """The issuer of a survey whose reports spend a token (of that `access`, if given);
    MembershipRefused 404 otherwise. Made here if missing, for a survey that needed no
    token when it was created."""
    if not survey.needs_token or access not in (None, survey.access):
        raise MembershipRefused(404, "detail", _(
            "This survey does not verify membership.") if access != Survey.Access.INVITE
            else _("This survey takes no invite codes."))
    issuer = TokenIssuer.objects.filter(survey=survey).first()
    return issuer if issuer is not None else issuer_create(survey=survey)


def address_normalize(*, survey: Survey, email) -> str:
    """The address, lower case; MembershipRefused (400 on "email") if it is not an address
    at one of the survey's domains."""
    if not isinstance(email, str) or len(email) > ADDRESS_MAX_LENGTH:
        raise MembershipRefused(400, "email", _("Enter your work email address."))
    address = email.strip().lower()
    try:
        validate_email(address)
    except ValidationError:
        raise MembershipRefused(400, "email", _("Enter your work email address.")) from None
    if address.rsplit("@", 1)[1] not in survey.email_domains:
        raise MembershipRefused(400, "email", _(
            "This survey takes addresses at %(domains)s only.")
            % {"domains": ", ".join(survey.email_domains)})
    return address


def _address_key(issuer: TokenIssuer) -> bytes:
    if issuer.address_salt is None:
        raise MembershipRefused(410, "detail", _("This survey is closed."))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(issuer.address_salt),
                info=_ADDRESS_INFO + str(issuer.survey_id).encode()).derive(_secret())


def _digest(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _count(*, name: str, survey: Survey, limit: int) -> None:
    if limit <= 0:
        return
    key = ratelimit.bucket_key(address=name, survey_id=survey.id, scope=VERIFY)
    try:
        count = ratelimit.count_up(key, timeout=ratelimit.seconds_left())
    except RedisError:
        # Unlike a report, a code can wait: with the counters gone, none is sent.
        raise CodesThrottled(60) from None
    if count > limit:
        raise CodesThrottled(ratelimit.seconds_left())


def _count_network(*, request, survey: Survey) -> None:
    _count(name=ratelimit.client_address(request), survey=survey,
           limit=settings.CHORUS_VERIFICATION_CODES_PER_DAY)


def verification_code_send(*, request, survey: Survey, email) -> tuple[str, str] | None:
    """Makes a one-time code for the address and returns (normalized address, code), to be
    mailed (and forgotten) by the caller; None when the address already bought its token
    (the answer is the same, so a code request tells nobody whether an address took part).
    Raises MembershipRefused or CodesThrottled."""
    issuer = issuer_of(survey, access=Survey.Access.VERIFIED)
    address = address_normalize(survey=survey, email=email)
    _count(name=address, survey=survey, limit=CODES_PER_ADDRESS_PER_DAY)
    _count_network(request=request, survey=survey)
    key = _address_key(issuer)
    address_digest = _digest(key, address)
    if TokenIssuance.objects.filter(survey=survey, address_digest=address_digest).exists():
        return None
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    expires = (timezone.now() + dt.timedelta(minutes=CODE_VALID_MINUTES)).replace(
        second=0, microsecond=0)
    VerificationCode.objects.update_or_create(
        survey=survey, address_digest=address_digest,
        defaults={"code_digest": _digest(key, f"{address_digest}:{code}"), "expires": expires,
                  "wrong_attempts": 0})
    return address, code


def proof_address(*, request, survey: Survey, proof: bytes) -> str:
    """The one recipient at the survey's domains of a message DKIM-signed by one of them,
    the To header included in the signature; the message is read in memory only and
    dropped. MembershipRefused (400 on "proof") otherwise; CodesThrottled over the
    network's daily limit (each proof costs a DNS lookup)."""
    issuer_of(survey, access=Survey.Access.VERIFIED)
    _count_network(request=request, survey=survey)
    if len(proof) > PROOF_MAX_BYTES:
        raise MembershipRefused(400, "proof", _("The message is larger than an email can be "
                                                "for this check."))
    lookup = settings.CHORUS_DKIM_TXT_LOOKUP
    try:
        signed = dkim.DKIM(proof, minkey=1024)
        verified = (signed.verify(dnsfunc=import_string(lookup)) if lookup
                    else signed.verify())
    except dkim.DKIMException:
        signed, verified = None, False
    domain = (signed.domain or b"").decode("ascii", "replace").lower() if verified else ""
    # Only a verified signature's fields are read: verify() has set them.
    if (not verified or domain not in survey.email_domains
            or b"to" not in signed.include_headers):
        raise MembershipRefused(400, "proof", _(
            "This message carries no valid signature of %(domains)s over its recipient.")
            % {"domains": ", ".join(survey.email_domains)})
    message = email_parser.BytesParser(policy=email_policy.default).parsebytes(proof)
    recipients = {address.lower() for _name, address in
                  getaddresses(message.get_all("to", []) + message.get_all("cc", []))}
    allowed = [address for address in recipients
               if address.rpartition("@")[2] in survey.email_domains]
    if len(allowed) != 1:
        # A message to a whole team would otherwise buy a token for every recipient.
        raise MembershipRefused(400, "proof", _(
            "Use a message sent to you alone at your work address."))
    return address_normalize(survey=survey, email=allowed[0])


def token_missing_message(survey: Survey) -> str:
    if survey.access == Survey.Access.INVITE:
        return _("This survey needs a token bought with the invite code you were given.")
    return _("This survey needs a membership token.")


def token_issue(*, survey: Survey, email, code, token_request: bytes,
                proven_address: str | None = None) -> bytes:
    """The blind signature (TokenResponse) for a TokenRequest from an address with a valid
    code, or `proven_address` from `proof_address`; the address is recorded as served, and
    its code used up, in one transaction.
    MembershipRefused: 400 (bad address, code or request), 409 (token already issued)."""
    issuer = issuer_of(survey, access=Survey.Access.VERIFIED)
    address = proven_address or address_normalize(survey=survey, email=email)
    key = _address_key(issuer)
    address_digest = _digest(key, address)
    if proven_address is not None:
        return _issue(survey=survey, issuer=issuer, address_digest=address_digest,
                      token_request=token_request, pending=None)
    if not isinstance(code, str) or not code.strip().isdigit():
        raise MembershipRefused(400, "code", _("Enter the code from the email."))
    with transaction.atomic():
        if TokenIssuance.objects.filter(survey=survey, address_digest=address_digest).exists():
            raise MembershipRefused(409, "email", _(
                "This address already has its token for this survey."))
        pending = (VerificationCode.objects.select_for_update()
                   .filter(survey=survey, address_digest=address_digest).first())
        if pending is None or pending.expires < timezone.now():
            raise MembershipRefused(400, "code", _(
                "This code has expired or was never sent. Ask for a new one."))
        right = hmac.compare_digest(pending.code_digest,
                                    _digest(key, f"{address_digest}:{code.strip()}"))
        if not right:
            # Counted in this transaction, which commits: the refusal is raised after it.
            pending.wrong_attempts += 1
            if pending.wrong_attempts >= CODE_WRONG_ATTEMPTS:
                pending.delete()
            else:
                pending.save(update_fields=["wrong_attempts"])
    if not right:
        raise MembershipRefused(400, "code", _("This code is not the one we sent."))
    return _issue(survey=survey, issuer=issuer, address_digest=address_digest,
                  token_request=token_request, pending=pending)


def _issue(*, survey, issuer, address_digest: str, token_request: bytes,
           pending: VerificationCode | None) -> bytes:
    """Signs, records the address as served and uses up its code, in one transaction."""
    with transaction.atomic():
        if pending is not None:
            pending = (VerificationCode.objects.select_for_update()
                       .filter(pk=pending.pk, wrong_attempts=pending.wrong_attempts).first())
            if pending is None:
                raise MembershipRefused(400, "code", _(
                    "This code has expired or was never sent. Ask for a new one."))
        elif TokenIssuance.objects.filter(survey=survey, address_digest=address_digest).exists():
            raise MembershipRefused(409, "email", _(
                "This address already has its token for this survey."))
        try:
            response = tokens.token_response(_private_key(issuer), token_request)
        except tokens.TokenError:
            raise MembershipRefused(400, "token_request", _(
                "This token request is not one this survey can sign.")) from None
        if pending is not None:
            pending.delete()
        try:
            with transaction.atomic():
                TokenIssuance.objects.create(survey=survey, address_digest=address_digest)
        except IntegrityError:
            raise MembershipRefused(409, "email", _(
                "This address already has its token for this survey.")) from None
    return response


def invite_code_hash(code: str) -> str:
    """The stored form of an invite code, after undoing what typing does to it: case,
    spaces, dashes, look-alike letters. 80 random bits: a fast hash leaves nothing worth
    brute-forcing."""
    cleaned = "".join(code.split()).replace("-", "").upper()
    cleaned = cleaned.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))
    return hashlib.sha256(cleaned.encode()).hexdigest()


def invite_redeem(*, survey: Survey, code: str) -> None:
    """Uses up an invite code, in the caller's transaction.

    A single DELETE decides: under concurrent redemptions of one code exactly
    one sees a deleted row, the others see none. A wrong and a used code are
    the same to us (the row is gone), so both raise the same field error.
    """
    deleted, _rows = InviteCode.objects.filter(
        survey=survey, code_hash=invite_code_hash(code)).delete()
    if deleted != 1:
        raise ValidationError({"invite_code": [
            _("This invite code is not valid for this survey, or it was already used.")]})


def token_issue_for_invite(*, request, survey: Survey, invite_code,
                           token_request: bytes) -> bytes:
    """The blind signature (TokenResponse) for a TokenRequest that comes with an unused
    invite code of the survey, which it uses up: the code is deleted and the request signed
    in one transaction, so a request that cannot be signed leaves its code usable.
    Codes tried count per network and day like reports, and a right one is given back.
    MembershipRefused: 400 (bad code or request); CodesThrottled over the limit."""
    issuer = issuer_of(survey, access=Survey.Access.INVITE)
    verdict = ratelimit.hit(request=request, survey_id=survey.id, scope=INVITE)
    if not verdict.allowed:
        raise CodesThrottled(verdict.retry_after)
    if not isinstance(invite_code, str) or not invite_code.strip():
        raise MembershipRefused(400, "invite_code", _(
            "This survey needs the invite code you were given."))
    with transaction.atomic():
        try:
            invite_redeem(survey=survey, code=invite_code)
        except ValidationError as refused:
            raise MembershipRefused(400, "invite_code",
                                    refused.message_dict["invite_code"][0]) from None
        try:
            response = tokens.token_response(_private_key(issuer), token_request)
        except tokens.TokenError:
            # Raised inside the transaction: the code is not used up.
            raise MembershipRefused(400, "token_request", _(
                "This token request is not one this survey can sign.")) from None
    ratelimit.refund(request=request, survey_id=survey.id, scope=INVITE)
    return response


def token_spend(*, survey: Survey, token) -> None:
    """Checks a report's token and spends it, in the caller's (the report's) transaction.
    ValidationError on "token": missing, malformed, for another survey or key, forged or
    already used."""
    issuer = TokenIssuer.objects.filter(survey=survey).first()
    if not token or issuer is None:
        raise ValidationError({"token": [token_missing_message(survey)]})
    try:
        raw = tokens.b64url_decode(token)
        tokens.token_verify(tokens.load_token_key(bytes(issuer.token_key)), challenge_of(survey),
                            raw)
    except (tokens.TokenError, tokens.Base64Invalid):
        raise ValidationError({"token": [_(
            "This membership token is not valid for this survey.")]}) from None
    spent_id = tokens.token_spent_id(raw).hex()
    try:
        with transaction.atomic():
            SpentToken.objects.create(survey=survey, spent_id=spent_id)
    except IntegrityError:
        raise ValidationError({"token": [_("This membership token was already used.")]}) from None
