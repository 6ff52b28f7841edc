"""Report intake: the path every filed report takes, from the API or the form.

It owns the rules of that path in one place: the size bound and the lean check of a usual,
well-formed body; the per-process copies (open link surveys, unit ids, the filing
statement's guards) and the retry when a survey copy turns out stale; the daily limit and
when an attempt is given back; the single statement that holds a report for publication,
and the once-only filing of a form. The API view and the form view parse and render
around it. Validation rules and messages are services.report_validate's, shared with
amends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from redis.exceptions import RedisError

from server import errors
from server.db import guard, insert_rows, value_where
from surveys import catalog, membership, ratelimit, selectors, services, slots
from surveys.holding import content_of, receipt_hash
from surveys.models import (
    REPORT_BODY_MAX_BYTES,
    REPORT_CODE_MAX_LENGTH,
    REPORT_COMMENT_MAX_LENGTH,
    REPORT_TOKEN_MAX_LENGTH,
    UNIT_PATH_MAX_LENGTH,
    HeldReport,
    OrgUnit,
    Report,
    Survey,
)
from surveys.periods import period_start_for
from surveys.scrub import comment_scrub
from surveys.sealing import receipt_lookup, seal
from surveys.signals import report_held

# At most every signal twice: a list that long is refused before it is looked at.
SIGNALS_MAX = len(catalog.SIGNAL_CODES) * 2
OPTIONAL_TEXT = (("outcome", REPORT_CODE_MAX_LENGTH), ("comment", REPORT_COMMENT_MAX_LENGTH),
                 ("token", REPORT_TOKEN_MAX_LENGTH))


class BodyTooLarge(Exception):
    pass


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


def body_too_large(request) -> bool:
    return int(request.META.get("CONTENT_LENGTH") or 0) > REPORT_BODY_MAX_BYTES


_SIGNALS = frozenset(catalog.SIGNAL_CODES)


def _plain_text(value: str, max_length: int) -> bool:
    """What the API's text fields accept once stripped: not blank is left to the caller;
    no NUL, no lone surrogate, not too long."""
    if len(value) > max_length or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def lean_values(data) -> dict | None:
    """What the API's input serializer would validate a usual, well-formed body to, at a
    small part of its cost; None for anything else, which the serializer then answers with
    its field errors. Accepts only what the serializer accepts."""
    if not isinstance(data, dict):
        return None
    unit, period, signals = data.get("unit"), data.get("period"), data.get("signals")
    if type(unit) is not str or type(period) is not str or type(signals) is not list:
        return None
    unit = unit.strip()
    if not unit or not _plain_text(unit, UNIT_PATH_MAX_LENGTH) or (
            len(signals) > SIGNALS_MAX
            or not all(type(code) is str and code in _SIGNALS for code in signals)):
        return None
    try:
        # The serializer's DateField parses with date.fromisoformat first, too.
        day = dt.date.fromisoformat(period)
    except ValueError:
        return None
    values = {"unit": unit, "period": day, "signals": signals}
    for name, max_length in OPTIONAL_TEXT:
        value = data.get(name)
        if value is not None and (type(value) is not str
                                  or not _plain_text(value := value.strip(), max_length)):
            return None
        values[name] = value or ""
    return values


def report_file(*, request, share_token: str, values: Callable[[], dict],
                kept: bool = True) -> str:
    """Stores the report whose validated answers `values()` returns; returns its receipt.
    Raises BodyTooLarge, services.SurveyClosed (closed or unknown to the copy), RateLimited,
    ValidationError (field errors) or Http404 (no such survey).

    The survey comes from the process's copy (`kept`): if it changed since, nothing is
    stored, the attempt is given back and the report is filed again against the survey as
    it is now, which answers a closed, re-linked or invite-only survey as it would have at
    once. `values` is called once, after the survey is known to be open."""
    if body_too_large(request):
        raise BodyTooLarge
    survey = (survey_kept(token=share_token) if kept
              else selectors.survey_by_share_token(token=share_token))
    if not survey.is_open:
        raise services.SurveyClosed
    answers = values()
    draft = services.ReportDraft(
        unit=answers["unit"], period=answers["period"], signals=tuple(answers["signals"]),
        outcome=answers["outcome"] or "", comment=answers["comment"] or "",
        token=answers.get("token") or "")
    try:
        return report_counted(request=request, survey=survey,
                              file=lambda: report_create(survey=survey, draft=draft))
    except SurveyChanged:
        if not kept:
            raise
        survey_kept_forget(token=share_token)
        return report_file(request=request, share_token=share_token, values=lambda: answers,
                           kept=False)


def report_counted(*, request, survey: Survey, file: Callable[[], str]) -> str:
    """Counts one attempt against the survey's daily limit (RateLimited over it), then runs
    `file`, and gives the attempt back when it stored nothing: a stale survey copy, a report
    already received, a database too busy to take it (503), or rejected input."""
    verdict = ratelimit.hit(request=request, survey_id=survey.id, scope=ratelimit.SUBMIT)
    if not verdict.allowed:
        raise RateLimited(verdict.retry_after)

    def give_back() -> None:
        ratelimit.refund(request=request, survey_id=survey.id, scope=ratelimit.SUBMIT)

    try:
        return file()
    except (SurveyChanged, AlreadyReceived):
        give_back()
        raise
    except OperationalError as error:
        if errors.database_busy(error):
            give_back()
        raise
    except ValidationError:
        give_back()
        raise


# Open link surveys by share token, per process: (survey, read again after).
_KEPT_SECONDS = 60.0
_KEPT_SURVEYS = 1000
_kept: dict[str, tuple[Survey, float]] = {}


def survey_kept(*, token: str) -> Survey:
    """survey_by_share_token, from a copy kept in this process for up to a
    minute when the survey is an open link survey. The copy may be stale, so
    use it only for a write that re-checks the survey in the same statement
    (report_create does), and on SurveyChanged forget it and ask
    again. Others are read each time, so a closed survey is answered as such
    at once."""
    kept = _kept.get(token)
    if kept is not None and time.monotonic() < kept[1]:
        return kept[0]
    survey = selectors.survey_by_share_token(token=token)
    if survey.access == Survey.Access.LINK and survey.is_open:
        if len(_kept) >= _KEPT_SURVEYS:
            _kept.clear()
        _kept[token] = (survey, time.monotonic() + _KEPT_SECONDS)
    else:
        _kept.pop(token, None)
    return survey


def survey_kept_forget(*, token: str) -> None:
    _kept.pop(token, None)


# Unit ids by (survey id, units version, path), per process. A unit keeps its id for
# good (units are never renamed or deleted), and a removal moves the survey's units
# version on, so an id found under one version stays right for it; a path not found is
# looked up again, since it may have been added since.
_UNIT_IDS_KEPT = 50_000
_unit_ids: dict[tuple, int] = {}


def _unit_id(*, survey: Survey, path: str) -> int | None:
    key = (survey.id, survey.units_version, path)
    unit_id = _unit_ids.get(key)
    if unit_id is None:
        unit_id = value_where(OrgUnit, "id", survey=survey.id, path=path, retired=False)
        if unit_id is None:
            return None
        if len(_unit_ids) >= _UNIT_IDS_KEPT:
            _unit_ids.clear()
        _unit_ids[key] = unit_id
    return unit_id


class SurveyChanged(services.SurveyClosed):
    """The survey no longer takes reports as the copy the caller passed says
    (closed, another share link, access, period or units): nothing was stored."""


# Guards by what they check, per process: the same few for every report.
_GUARDS_KEPT = 1000
_guards: dict[tuple, tuple[str, list]] = {}


def _still_as_read(survey: Survey, today: dt.date) -> tuple[str, list]:
    # Everything of the survey that decides whether and how a report is
    # stored. A copy read a while ago may be stale; this is checked by the
    # INSERT itself, so a survey closed or re-linked a moment ago never
    # takes a report through an old copy.
    key = (survey.id, survey.share_token, survey.access, survey.period,
           survey.study_starts_on, survey.units_version, today)
    found = _guards.get(key)
    if found is None:
        open_equal, open_at_least = Survey.open_on(today)
        found = guard(Survey, equal={"id": survey.id, "share_token": survey.share_token,
                                     "access": survey.access, "period": survey.period,
                                     "study_starts_on": survey.study_starts_on,
                                     "units_version": survey.units_version, **open_equal},
                      null_or_at_least=open_at_least)
        if len(_guards) >= _GUARDS_KEPT:
            _guards.clear()
        _guards[key] = found
    return found


def report_create(*, survey: Survey, draft: services.ReportDraft) -> str:
    """Holds a report for the next publication and returns its receipt, which
    is shown once and never stored: only a hash of it is kept, to let the
    holder check, amend or withdraw the report.

    The report is durable when this returns, but sealed in the holding table
    (HeldReport): it reaches Report, and the counted figures, only at a
    publication, shuffled among at least k others (held_reports_publish).

    A survey that needs a token (verified or invite-only) spends `draft.token`
    (surveys.membership.token_spend) in the same transaction, so a rejected report leaves
    its token unspent; a missing, bad or spent token raises ValidationError on "token"
    (answered as 400, like any other field error). That transaction writes the spent
    token's replay id and the sealed held row and nothing else: the report it becomes is
    written later, by the publication, and the invite code or address that bought the
    token was used in another transaction, which the blind signature leaves nothing to
    pair with this one.

    Otherwise no transaction is opened: the held row is written by one
    statement, atomic by itself, which spares the hot path a BEGIN and a
    COMMIT round trip.

    `survey` may be a copy read earlier (survey_kept):
    the statement stores the report only if the survey is still open with
    that share token, access and period, and raises SurveyChanged otherwise.
    """
    if not survey.is_open:
        raise services.SurveyClosed
    today = timezone.localdate()
    unit_id = services.report_validate(
        survey=survey, draft=draft, today=today,
        unit_id=lambda path: _unit_id(survey=survey, path=path))
    period_start = period_start_for(period=survey.period, day=draft.period)
    receipt = secrets.token_urlsafe(16)
    needs_token = survey.needs_token
    row_id = uuid.uuid4()
    content = content_of(Report(
        unit_id=unit_id, period_start=period_start,
        signals=catalog.signals_to_mask(draft.signals), outcome=draft.outcome,
        comment=comment_scrub(draft.comment), receipt_hash=receipt_hash(receipt)))
    held = (HeldReport, {
        "id": row_id, "survey_id": survey.id, "kind": HeldReport.Kind.NEW,
        "lookup": receipt_lookup(receipt),
        "slot": slots.slot_of(timezone.now()) if slots.scheduled() else None,
        "sealed": seal(survey_id=survey.id, row_id=row_id, content=content),
    })
    with transaction.atomic() if needs_token else contextlib.nullcontext():
        if needs_token:
            membership.token_spend(survey=survey, token=draft.token)
        if not insert_rows([held], only_if=_still_as_read(survey, today)):
            # In a transaction, this rolls back the spent token too.
            raise SurveyChanged
        report_held.send(sender=HeldReport, survey_id=survey.id)
    return receipt


class AlreadyReceived(Exception):
    """The submission token was used before: the report is already stored."""


_SUBMISSION_PREFIX = "chorus:submission"


def submission_token_new() -> str:
    """A random token for one rendering of the report form. It is not stored
    when issued, only its HMAC once a report is filed with it."""
    return secrets.token_urlsafe(32)


def _submission_key(token: str) -> str:
    digest = salted_hmac(_SUBMISSION_PREFIX, token, algorithm="sha256").hexdigest()
    return f"{_SUBMISSION_PREFIX}:{digest}"


def _submission_ttl() -> int:
    # Expire at a UTC midnight at least a day away: the key's TTL then tells
    # the day a report was filed, as received_week does, never its time.
    now = timezone.now().astimezone(dt.UTC)
    expiry = dt.datetime.combine(now.date() + dt.timedelta(days=2), dt.time(), tzinfo=dt.UTC)
    return int((expiry - now).total_seconds())


def submission_token_spent(*, token: str) -> bool:
    if not token:
        return False
    try:
        return cache.get(_submission_key(token)) is not None
    except RedisError:
        return False


def report_create_once(*, survey: Survey, draft: services.ReportDraft,
                       submission_token: str) -> str:
    """report_create, at most once per submission token: a reloaded receipt
    page re-posts the form, and must not file the report twice.

    Raises AlreadyReceived for a token already used. Not atomic itself, on
    purpose: the cache is not transactional, so report_create commits inside
    the try below and any failure, including at commit, gives the token back
    for the corrected form to use. An empty token (a page rendered before
    tokens existed) files as before; with the cache down, reports are taken
    rather than refused, as the rate limit does.
    """
    key = _submission_key(submission_token) if submission_token else None
    if key is not None:
        try:
            claimed = cache.add(key, 1, timeout=_submission_ttl())
        except RedisError:
            key, claimed = None, True
        if not claimed:
            raise AlreadyReceived
    try:
        return report_create(survey=survey, draft=draft)
    except BaseException:
        if key is not None:
            with contextlib.suppress(RedisError):
                cache.delete(key)
        raise
