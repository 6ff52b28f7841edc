"""Writes for surveys, org trees and anonymous intake."""

import contextlib
import csv
import datetime as dt
import hashlib
import io
import secrets
from collections import defaultdict
from dataclasses import dataclass

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from reports.services import org_tree_index, report_changes_record
from server.db import guard, value_where
from surveys import catalog
from surveys.models import MIN_GROUP_SIZE_FLOOR, InviteCode, OrgUnit, Report, Survey
from surveys.scrub import comment_scrub

MAX_PATH_LENGTH = 1000
MAX_UNITS = 20_000
UNIT_SEPARATOR = "/"
MAX_INVITES_PER_REQUEST = 5000
MAX_CSV_ERRORS = 50
# Crockford's base32: no I, L, O or U, so a code read aloud or retyped
# survives the usual confusions (normalised back in invite_code_normalize).
INVITE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
INVITE_GROUPS = 4
INVITE_GROUP_LENGTH = 4  # 16 symbols × 5 bits = 80 random bits


def _token() -> str:
    # 32 bytes = 256 random bits, URL-safe.
    return secrets.token_urlsafe(32)


def receipt_hash(receipt: str) -> str:
    # Receipts carry 128 random bits, so a fast hash is enough: there is
    # nothing to brute-force that a slow hash would protect.
    return hashlib.sha256(receipt.encode()).hexdigest()


def period_start_for(*, period: str, day: dt.date) -> dt.date:
    if period == Survey.Period.WEEK:
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def _validate_min_group_size(value: int) -> None:
    if value < MIN_GROUP_SIZE_FLOOR:
        raise ValidationError(
            {"min_group_size": _("Must be at least %(floor)d.") % {"floor": MIN_GROUP_SIZE_FLOOR}}
        )


def _validate_closes_on(value: dt.date | None) -> None:
    # A date already past would close the survey the moment it is saved,
    # which is what status "closed" is for.
    if value is not None and value < timezone.localdate():
        raise ValidationError({"closes_on": [_("The closing date cannot be in the past.")]})


@transaction.atomic
def survey_create(
    *, owner, title: str, period: str = Survey.Period.MONTH, min_group_size: int = 5,
    access: str = Survey.Access.LINK, closes_on: dt.date | None = None,
) -> Survey:
    _validate_min_group_size(min_group_size)
    _validate_closes_on(closes_on)
    return Survey.objects.create(
        owner=owner, title=title, period=period, min_group_size=min_group_size, access=access,
        closes_on=closes_on, share_token=_token(), dashboard_token=_token(),
    )


def _has_reports(survey: Survey) -> bool:
    """Whether anyone has filed a report, published or still waiting for publication."""
    return survey.reports.exists()


@transaction.atomic
def survey_update(*, survey: Survey, fields: dict) -> Survey:
    """Changes title, status, access, closes_on or min_group_size. The period
    granularity is fixed once reports exist, since stored periods depend on it.

    Once reports exist the minimum group size may rise but never fall: each respondent
    filed under the promise that any total smaller than the k shown then stays hidden, and
    a release at a lower k next to the earlier ones would narrow what they hid."""
    if "min_group_size" in fields:
        _validate_min_group_size(fields["min_group_size"])
        # The stored k, locked: two organizer tabs must not step it down between them.
        current = (Survey.objects.select_for_update().filter(pk=survey.pk)
                   .values_list("min_group_size", flat=True).get())
        if fields["min_group_size"] < current and _has_reports(survey):
            raise ValidationError({"min_group_size": [
                _("Reports were filed under the promise that any total smaller than "
                  "%(k)d is hidden, so the minimum group size can be raised but not "
                  "lowered.") % {"k": current}]})
    if "closes_on" in fields:
        _validate_closes_on(fields["closes_on"])
    if "period" in fields and fields["period"] != survey.period and _has_reports(survey):
        raise ValidationError({"period": _("Cannot change the period once reports exist.")})
    for name, value in fields.items():
        setattr(survey, name, value)
    survey.save(update_fields=list(fields))
    return survey


@transaction.atomic
def survey_dashboard_token_rotate(*, survey: Survey) -> Survey:
    survey.dashboard_token = _token()
    survey.save(update_fields=["dashboard_token"])
    return survey


def _clean_path(raw: str) -> str:
    parts = [part.strip() for part in raw.split(UNIT_SEPARATOR)]
    if not raw.strip() or any(not part for part in parts):
        raise ValueError(_("A unit path needs non-empty names separated by '/'."))
    path = UNIT_SEPARATOR.join(parts)
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(_("A unit path may be at most %(n)d characters.") % {"n": MAX_PATH_LENGTH})
    return path


@transaction.atomic
def units_upsert(*, survey: Survey, units: list[dict]) -> int:
    """Adds the given units (and their implicit parents) and sets headcounts.

    Idempotent: loading the same list twice changes nothing. Units already
    present but not listed are kept, since reports may point at them. Either
    every unit is valid and all are written, or nothing is.
    """
    errors: dict[str, list[str]] = {}
    headcounts: dict[str, int | None] = {}
    for index, unit in enumerate(units):
        try:
            path = _clean_path(unit["path"])
        except ValueError as error:
            errors[f"units[{index}].path"] = [str(error)]
            continue
        headcount = unit.get("headcount")
        if headcount is not None and (isinstance(headcount, bool) or not isinstance(headcount, int)
                                      or headcount < 0):
            errors[f"units[{index}].headcount"] = [_("Must be a whole number, 0 or more.")]
            continue
        headcounts[path] = headcount
    if errors:
        raise ValidationError(errors)

    wanted: dict[str, int | None] = {}
    for path, headcount in headcounts.items():
        parts = path.split(UNIT_SEPARATOR)
        for depth in range(1, len(parts)):
            wanted.setdefault(UNIT_SEPARATOR.join(parts[:depth]), None)
        wanted[path] = headcount
    existing = {unit.path: unit for unit in OrgUnit.objects.filter(survey=survey)}
    if len(existing.keys() | wanted.keys()) > MAX_UNITS:
        raise ValidationError({"units": [_("A survey may have at most %(n)d units.")
                                         % {"n": MAX_UNITS}]})

    new_by_depth: dict[int, list[str]] = defaultdict(list)
    changed: list[OrgUnit] = []
    for path in wanted:
        unit = existing.get(path)
        if unit is None:
            new_by_depth[path.count(UNIT_SEPARATOR)].append(path)
        elif path in headcounts and unit.headcount != headcounts[path]:
            unit.headcount = headcounts[path]
            changed.append(unit)
    created: list[OrgUnit] = []
    # One level at a time, so every parent has its id before its children are built.
    for depth in sorted(new_by_depth):
        level = [OrgUnit(survey=survey, path=path, depth=depth, headcount=headcounts.get(path),
                         parent=existing.get(path.rpartition(UNIT_SEPARATOR)[0]))
                 for path in new_by_depth[depth]]
        OrgUnit.objects.bulk_create(level, batch_size=2000)
        existing.update((unit.path, unit) for unit in level)
        created.extend(level)
    OrgUnit.objects.bulk_update(changed, ["headcount"], batch_size=2000)
    org_tree_index(survey=survey, units=created)
    return len(headcounts)


def units_csv_parse(*, text: str) -> list[dict]:
    """Reads `path,headcount` lines (headcount optional, header row optional).

    Raises ValidationError on "file" listing each bad line by its number, so
    that an organizer can fix the file in one pass.
    """
    units: list[dict] = []
    errors: list[str] = []

    def error(line: int, message: str) -> None:
        errors.append(_("Line %(n)d: %(message)s") % {"n": line, "message": message})

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            line = reader.line_num
            cells = [cell.strip() for cell in row]
            while cells and not cells[-1]:
                cells.pop()
            if not cells:
                continue
            if not units and not errors and cells[0].lower() == "path":
                continue
            if len(cells) > 2:
                error(line, _("expected path,headcount but found %(n)d columns.")
                      % {"n": len(cells)})
                continue
            try:
                path = _clean_path(cells[0])
            except ValueError as problem:
                error(line, str(problem))
                continue
            headcount = cells[1] if len(cells) == 2 else ""
            if headcount and not (headcount.isascii() and headcount.isdigit()):
                error(line, _("the headcount must be a whole number, 0 or more."))
                continue
            units.append({"path": path, "headcount": int(headcount) if headcount else None})
            if len(units) > MAX_UNITS:
                error(line, _("a file may list at most %(n)d units.") % {"n": MAX_UNITS})
                break
    except csv.Error as problem:
        error(reader.line_num, _("not valid CSV (%(problem)s).") % {"problem": problem})
    if not units and not errors:
        errors.append(_("The file lists no units."))
    if errors:
        shown = errors[:MAX_CSV_ERRORS]
        if len(errors) > MAX_CSV_ERRORS:
            shown.append(_("… and %(n)d more.") % {"n": len(errors) - MAX_CSV_ERRORS})
        raise ValidationError({"file": shown})
    return units


@transaction.atomic
def units_import_csv(*, survey: Survey, text: str) -> int:
    """Loads an org tree from CSV: every line is written, or none is."""
    return units_upsert(survey=survey, units=units_csv_parse(text=text))


def invite_code_hash(code: str) -> str:
    # 80 random bits: a fast hash leaves nothing worth brute-forcing.
    return hashlib.sha256(code.encode()).hexdigest()


def invite_code_normalize(raw: str) -> str:
    """Undoes what typing does to a code: case, spaces, dashes, look-alikes."""
    cleaned = "".join(raw.split()).replace("-", "").upper()
    return cleaned.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def _invite_code() -> str:
    symbols = "".join(secrets.choice(INVITE_ALPHABET)
                      for _index in range(INVITE_GROUPS * INVITE_GROUP_LENGTH))
    return "-".join(symbols[start:start + INVITE_GROUP_LENGTH]
                    for start in range(0, len(symbols), INVITE_GROUP_LENGTH))


@transaction.atomic
def invites_create(*, survey: Survey, count: int) -> list[str]:
    """Issues `count` new invite codes and returns them; only their hashes are
    kept, so this is the one time anyone sees them."""
    if isinstance(count, bool) or not isinstance(count, int) or not (
            1 <= count <= MAX_INVITES_PER_REQUEST):
        raise ValidationError({"count": [_("Ask for between 1 and %(n)d codes.")
                                         % {"n": MAX_INVITES_PER_REQUEST}]})
    codes = [_invite_code() for _index in range(count)]
    InviteCode.objects.bulk_create(
        [InviteCode(survey=survey, code_hash=invite_code_hash(invite_code_normalize(code)))
         for code in codes], batch_size=1000)
    return codes


def invite_redeem(*, survey: Survey, code: str) -> None:
    """Uses up an invite code, in the caller's transaction.

    A single DELETE decides: under concurrent redemptions of one code exactly
    one sees a deleted row, the others see none. A wrong and a used code are
    the same to us (the row is gone), so both raise the same field error.
    """
    deleted, _rows = InviteCode.objects.filter(
        survey=survey, code_hash=invite_code_hash(invite_code_normalize(code))).delete()
    if deleted != 1:
        raise ValidationError({"invite_code": [
            _("This invite code is not valid for this survey, or it was already used.")]})


def invite_unused_count(*, survey: Survey) -> int:
    return InviteCode.objects.filter(survey=survey).count()


@dataclass(frozen=True)
class ReportDraft:
    unit: str
    period: dt.date
    signals: tuple[str, ...]
    outcome: str = ""
    comment: str = ""
    invite_code: str = ""


# Unit ids by (survey id, path), per process. A unit keeps its id for good
# (units are never renamed or deleted), so an id once found stays right; a
# path not found is looked up again, since it may have been added since.
_UNIT_IDS_KEPT = 50_000
_unit_ids: dict[tuple, int] = {}


def _report_unit_id(*, survey: Survey, path: str) -> int | None:
    unit_id = _unit_ids.get((survey.id, path))
    if unit_id is None:
        unit_id = value_where(OrgUnit, "id", survey=survey.id, path=path)
        if unit_id is None:
            return None
        if len(_unit_ids) >= _UNIT_IDS_KEPT:
            _unit_ids.clear()
        _unit_ids[(survey.id, path)] = unit_id
    return unit_id


def report_validate(*, survey: Survey, draft: ReportDraft, today: dt.date) -> OrgUnit:
    """Checks a draft against the survey; raises ValidationError with field errors."""
    unit_id = _report_unit_id_validated(survey=survey, draft=draft, today=today)
    return OrgUnit(id=unit_id, survey=survey, path=draft.unit.strip())


def _report_unit_id_validated(*, survey: Survey, draft: ReportDraft, today: dt.date) -> int:
    # report_validate without building the unit, which filing a report does not need.
    errors: dict[str, list[str]] = {}
    unit_id = _report_unit_id(survey=survey, path=draft.unit.strip())
    if unit_id is None:
        errors["unit"] = [_("Pick a unit from this survey's list.")]
    if draft.period > today:
        errors["period"] = [_("The period cannot be in the future.")]
    unknown = sorted(set(draft.signals) - set(catalog.SIGNAL_CODES))
    if unknown:
        errors["signals"] = [_("Unknown signal: %(codes)s.") % {"codes": ", ".join(unknown)}]
    if draft.outcome and draft.outcome not in catalog.OUTCOME_CODES:
        errors["outcome"] = [_("Unknown outcome.")]
    if survey.access == Survey.Access.INVITE and not draft.invite_code.strip():
        errors["invite_code"] = [_("This survey needs the invite code you were given.")]
    if errors:
        raise ValidationError(errors)
    return unit_id


class SurveyClosed(Exception):
    pass


class SurveyChanged(SurveyClosed):
    """The survey no longer takes reports as the copy the caller passed says
    (closed, another share link, access or period): nothing was stored."""


# Guards by what they check, per process: the same few for every report.
_GUARDS_KEPT = 1000
_guards: dict[tuple, tuple[str, list]] = {}


def _still_as_read(survey: Survey, today: dt.date) -> tuple[str, list]:
    # Everything of the survey that decides whether and how a report is
    # stored. A copy read a while ago may be stale; this is checked by the
    # INSERT itself, so a survey closed or re-linked a moment ago never
    # takes a report through an old copy.
    key = (survey.id, survey.share_token, survey.access, survey.period, today)
    found = _guards.get(key)
    if found is None:
        found = guard(Survey, equal={"id": survey.id, "share_token": survey.share_token,
                                     "status": Survey.Status.OPEN, "access": survey.access,
                                     "period": survey.period},
                      null_or_at_least={"closes_on": today})
        if len(_guards) >= _GUARDS_KEPT:
            _guards.clear()
        _guards[key] = found
    return found


def report_create(*, survey: Survey, draft: ReportDraft) -> str:
    """Stores a report and returns its receipt, which is shown once and never
    stored: only its hash is kept, to let the holder withdraw the report.

    An invite-only survey uses up `draft.invite_code` in the same transaction,
    so a rejected report leaves its code usable. A missing, wrong or used code
    raises ValidationError on "invite_code" (answered as 400, like any other
    field error).

    Otherwise no transaction is opened: the report and its outbox row are
    written by one statement, atomic by itself, which spares the hot path a
    BEGIN and a COMMIT round trip.

    `survey` may be a copy read earlier (selectors.survey_by_share_token_kept):
    the statement stores the report only if the survey is still open with
    that share token, access and period, and raises SurveyChanged otherwise.
    """
    if not survey.is_open:
        raise SurveyClosed
    today = timezone.localdate()
    unit_id = _report_unit_id_validated(survey=survey, draft=draft, today=today)
    period_start = period_start_for(period=survey.period, day=draft.period)
    receipt = secrets.token_urlsafe(16)
    report = (Report, {
        "survey_id": survey.id, "unit_id": unit_id, "period_start": period_start,
        "signals": catalog.signals_to_mask(draft.signals), "outcome": draft.outcome,
        "comment": comment_scrub(draft.comment),
        "received_week": period_start_for(period=Survey.Period.WEEK, day=today),
        "receipt_hash": receipt_hash(receipt),
    })
    with (transaction.atomic() if survey.access == Survey.Access.INVITE
          else contextlib.nullcontext()):
        if survey.access == Survey.Access.INVITE:
            invite_redeem(survey=survey, code=draft.invite_code)
        if not report_changes_record(survey=survey, changes=[(unit_id, period_start)],
                                     with_rows=[report],
                                     only_if=_still_as_read(survey, today)):
            # In a transaction (invite), this rolls back the redeemed code too.
            raise SurveyChanged
    return receipt


@transaction.atomic
def report_withdraw(*, survey: Survey, receipt: str) -> bool:
    report = (Report.objects.select_for_update()
              .filter(survey=survey, receipt_hash=receipt_hash(receipt)).first())
    if report is None:
        return False
    report.delete()
    report_changes_record(survey=survey, changes=[(report.unit_id, report.period_start)])
    return True


AMENDABLE_FIELDS = ("unit", "period", "signals", "outcome", "comment")


@transaction.atomic
def report_amend(*, survey: Survey, receipt: str, changes: dict) -> Report | None:
    """Changes the answers of the report with this receipt; returns it, or
    None when no report matches (a wrong and a withdrawn receipt look alike).

    `changes` holds any of AMENDABLE_FIELDS ("period" a date, "signals" a
    sequence of codes); the rest keep their stored values. The result is
    validated and scrubbed exactly as a new report is.
    """
    if not survey.is_open:
        raise SurveyClosed
    unknown = set(changes) - set(AMENDABLE_FIELDS)
    if unknown:
        raise ValidationError({name: [_("This answer cannot be changed.")]
                               for name in sorted(unknown)})
    report = (Report.objects.select_for_update().select_related("unit")
              .filter(survey=survey, receipt_hash=receipt_hash(receipt)).first())
    if report is None:
        return None
    draft = ReportDraft(
        unit=changes.get("unit", report.unit.path),
        period=changes.get("period", report.period_start),
        signals=tuple(changes.get("signals", catalog.mask_to_signals(report.signals))),
        outcome=changes.get("outcome", report.outcome) or "",
        comment=changes.get("comment", report.comment) or "",
        # On an invite-only survey the code was used up when the report was
        # filed; holding the receipt is what admits this change instead.
        invite_code=receipt,
    )
    unit = report_validate(survey=survey, draft=draft, today=timezone.localdate())
    before = (report.unit_id, report.period_start)
    counted_before = (report.unit_id, report.period_start, report.signals, report.outcome)
    report.unit = unit
    report.period_start = period_start_for(period=survey.period, day=draft.period)
    report.signals = catalog.signals_to_mask(draft.signals)
    report.outcome = draft.outcome
    report.comment = comment_scrub(draft.comment)
    # received_week stays: it records when the report arrived, which an amend
    # does not change. Moving it would store a second date tied to this
    # report (when its holder came back) and show the amend as a new arrival.
    # Nothing else records that an amend happened.
    report.save(update_fields=["unit", "period_start", "signals", "outcome", "comment"])
    after = (report.unit_id, report.period_start)
    if (report.unit_id, report.period_start, report.signals, report.outcome) != counted_before:
        # Both cells: the old one loses the report, the new one gains it.
        # Comments are in no cell, so a comment-only change recounts nothing.
        report_changes_record(survey=survey, changes=sorted({before, after}))
    return report


class AlreadyReceived(Exception):
    """The submission token was used before: the report is already stored."""


SUBMISSION_TOKEN_MAX_LENGTH = 64
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


def report_create_once(*, survey: Survey, draft: ReportDraft, submission_token: str) -> str:
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
