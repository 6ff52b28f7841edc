"""Writes for surveys, org trees and anonymous intake."""

import csv
import datetime as dt
import hashlib
import io
import secrets
from collections import defaultdict
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from reports.services import org_tree_index, report_changes_record
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


@transaction.atomic
def survey_update(*, survey: Survey, fields: dict) -> Survey:
    """Changes title, status, access, closes_on or min_group_size. The period
    granularity is fixed once reports exist, since stored periods depend on it."""
    if "min_group_size" in fields:
        _validate_min_group_size(fields["min_group_size"])
    if "closes_on" in fields:
        _validate_closes_on(fields["closes_on"])
    if "period" in fields and fields["period"] != survey.period and survey.reports.exists():
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


def report_validate(*, survey: Survey, draft: ReportDraft, today: dt.date) -> OrgUnit:
    """Checks a draft against the survey; raises ValidationError with field errors."""
    errors: dict[str, list[str]] = {}
    unit = OrgUnit.objects.filter(survey=survey, path=draft.unit.strip()).first()
    if unit is None:
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
    return unit


class SurveyClosed(Exception):
    pass


@transaction.atomic
def report_create(*, survey: Survey, draft: ReportDraft) -> str:
    """Stores a report and returns its receipt, which is shown once and never
    stored: only its hash is kept, to let the holder withdraw the report.

    An invite-only survey uses up `draft.invite_code` in the same transaction,
    so a rejected report leaves its code usable. A missing, wrong or used code
    raises ValidationError on "invite_code" (answered as 400, like any other
    field error).
    """
    if not survey.is_open:
        raise SurveyClosed
    today = timezone.localdate()
    unit = report_validate(survey=survey, draft=draft, today=today)
    if survey.access == Survey.Access.INVITE:
        invite_redeem(survey=survey, code=draft.invite_code)
    period_start = period_start_for(period=survey.period, day=draft.period)
    receipt = secrets.token_urlsafe(16)
    Report.objects.create(
        survey=survey, unit=unit, period_start=period_start,
        signals=catalog.signals_to_mask(draft.signals), outcome=draft.outcome,
        comment=comment_scrub(draft.comment),
        received_week=period_start_for(period=Survey.Period.WEEK, day=today),
        receipt_hash=receipt_hash(receipt),
    )
    report_changes_record(survey=survey, changes=[(unit.id, period_start)])
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
