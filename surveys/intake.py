"""Report intake: the path every filed report takes, whatever parsed its body.

It owns the rules of that path in one place: the size bound, the survey copy kept by the
process (selectors.survey_by_share_token_kept) and the retry when that copy turns out
stale, the daily limit and when an attempt is given back, and the lean check of a usual,
well-formed body. The API view parses and renders around it; services.report_create
stores the report under the guard that makes a stale copy harmless.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.db import OperationalError

from server import errors
from surveys import catalog, ratelimit, selectors, services
from surveys.models import (
    REPORT_BODY_MAX_BYTES,
    REPORT_CODE_MAX_LENGTH,
    REPORT_COMMENT_MAX_LENGTH,
    UNIT_PATH_MAX_LENGTH,
)

# At most every signal twice: a list that long is refused before it is looked at.
SIGNALS_MAX = len(catalog.SIGNAL_CODES) * 2
OPTIONAL_TEXT = (("outcome", REPORT_CODE_MAX_LENGTH), ("comment", REPORT_COMMENT_MAX_LENGTH),
                 ("invite_code", REPORT_CODE_MAX_LENGTH))


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
    survey = (selectors.survey_by_share_token_kept(token=share_token) if kept
              else selectors.survey_by_share_token(token=share_token))
    if not survey.is_open:
        raise services.SurveyClosed
    answers = values()
    draft = services.ReportDraft(
        unit=answers["unit"], period=answers["period"], signals=tuple(answers["signals"]),
        outcome=answers["outcome"] or "", comment=answers["comment"] or "",
        invite_code=answers["invite_code"] or "")
    verdict = ratelimit.hit(request=request, survey_id=survey.id, scope=ratelimit.SUBMIT)
    if not verdict.allowed:
        raise RateLimited(verdict.retry_after)

    def give_back() -> None:
        ratelimit.refund(request=request, survey_id=survey.id, scope=ratelimit.SUBMIT)

    try:
        return services.report_create(survey=survey, draft=draft)
    except services.SurveyChanged:
        if not kept:
            raise
        selectors.survey_kept_forget(token=share_token)
        give_back()
        return report_file(request=request, share_token=share_token, values=lambda: answers,
                           kept=False)
    except OperationalError as error:
        # Too busy to store it (503): the attempt is given back.
        if errors.database_busy(error):
            give_back()
        raise
    except ValidationError as error:
        # Rejected input stores nothing and costs nothing, except guessing invite codes,
        # which keeps counting.
        if "invite_code" not in error.message_dict:
            give_back()
        raise
