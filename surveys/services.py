"""Writes for surveys, org trees and anonymous intake."""

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from reports.services import org_tree_index, report_changes_record
from surveys import catalog
from surveys.models import MIN_GROUP_SIZE_FLOOR, OrgUnit, Report, Survey
from surveys.scrub import comment_scrub

MAX_PATH_LENGTH = 1000
MAX_UNITS = 20_000
UNIT_SEPARATOR = "/"


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


@transaction.atomic
def survey_create(
    *, owner, title: str, period: str = Survey.Period.MONTH, min_group_size: int = 5,
    access: str = Survey.Access.LINK,
) -> Survey:
    _validate_min_group_size(min_group_size)
    return Survey.objects.create(
        owner=owner, title=title, period=period, min_group_size=min_group_size, access=access,
        share_token=_token(), dashboard_token=_token(),
    )


@transaction.atomic
def survey_update(*, survey: Survey, fields: dict) -> Survey:
    """Changes title, status, access or min_group_size. The period granularity
    is fixed once reports exist, since stored periods depend on it."""
    if "min_group_size" in fields:
        _validate_min_group_size(fields["min_group_size"])
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

    created: list[OrgUnit] = []
    changed: list[OrgUnit] = []
    # Parents before children, so each new unit can point at its parent.
    for path in sorted(wanted, key=lambda p: p.count(UNIT_SEPARATOR)):
        unit = existing.get(path)
        headcount = headcounts.get(path)
        if unit is None:
            parent_path = path.rpartition(UNIT_SEPARATOR)[0]
            unit = OrgUnit(survey=survey, path=path, parent=existing.get(parent_path),
                           depth=path.count(UNIT_SEPARATOR), headcount=headcount)
            unit.save()
            existing[path] = unit
            created.append(unit)
        elif path in headcounts and unit.headcount != headcount:
            unit.headcount = headcount
            changed.append(unit)
    OrgUnit.objects.bulk_update(changed, ["headcount"])
    org_tree_index(survey=survey, units=created)
    return len(headcounts)


@dataclass(frozen=True)
class ReportDraft:
    unit: str
    period: dt.date
    signals: tuple[str, ...]
    outcome: str = ""
    comment: str = ""


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
    if errors:
        raise ValidationError(errors)
    return unit


class SurveyClosed(Exception):
    pass


@transaction.atomic
def report_create(*, survey: Survey, draft: ReportDraft) -> str:
    """Stores a report and returns its receipt, which is shown once and never
    stored: only its hash is kept, to let the holder withdraw the report."""
    if not survey.is_open:
        raise SurveyClosed
    today = timezone.localdate()
    unit = report_validate(survey=survey, draft=draft, today=today)
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
