"""Writes for surveys, org trees and anonymous intake."""

import csv
import datetime as dt
import io
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from surveys import catalog, membership, selectors, slots
from surveys.holding import (
    content_of,
    content_period,
    held_content,
    receipt_hash,
    report_state,
    survey_changes_lock,
)
from surveys.models import (
    MIN_GROUP_SIZE_FLOOR,
    MIN_GROUP_SIZE_MAX,
    STUDY_WINDOW_MAX_YEARS,
    UNIT_PATH_MAX_LENGTH,
    HeldReport,
    InviteCode,
    OrgUnit,
    Report,
    Survey,
    UnitAncestor,
    default_study_start,
    years_before,
)
from surveys.periods import next_period_start, period_start_for
from surveys.scrub import comment_scrub
from surveys.sealing import receipt_lookup, seal

MAX_PATH_LENGTH = UNIT_PATH_MAX_LENGTH
MAX_UNITS = 20_000
UNIT_SEPARATOR = "/"
MAX_INVITES_PER_REQUEST = 5000
MAX_CSV_ERRORS = 50
# Crockford's base32: no I, L, O or U, so a code read aloud or retyped
# survives the usual confusions (normalised back in membership.invite_code_hash).
INVITE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
INVITE_GROUPS = 4
INVITE_GROUP_LENGTH = 4  # 16 symbols × 5 bits = 80 random bits


def _token() -> str:
    # 32 bytes = 256 random bits, URL-safe.
    return secrets.token_urlsafe(32)


def report_period_range(*, survey: Survey, today: dt.date) -> tuple[dt.date, dt.date]:
    """The days a report's period may name, both included: from the first day
    of the period holding the survey's study start to the last day of the
    current period (a later day of this month or week names this period)."""
    first = period_start_for(period=survey.period, day=survey.study_starts_on)
    current = period_start_for(period=survey.period, day=today)
    return first, next_period_start(period=survey.period, start=current) - dt.timedelta(days=1)


def report_period_error(*, survey: Survey, day: dt.date, today: dt.date) -> str | None:
    """The field message for a period outside report_period_range, else None."""
    first, last = report_period_range(survey=survey, today=today)
    if first <= day <= last:
        return None
    return _("Pick a date from %(first)s to %(last)s: this survey's study window runs from "
             "its start to the current period.") % {"first": first.isoformat(),
                                                      "last": last.isoformat()}


def _validate_min_group_size(value: int) -> None:
    if value < MIN_GROUP_SIZE_FLOOR:
        raise ValidationError(
            {"min_group_size": _("Must be at least %(floor)d.") % {"floor": MIN_GROUP_SIZE_FLOOR}}
        )
    if value > MIN_GROUP_SIZE_MAX:
        raise ValidationError(
            {"min_group_size": _("Must be at most %(n)d.") % {"n": MIN_GROUP_SIZE_MAX}})


def _validate_closes_on(value: dt.date | None) -> None:
    # A date already past would close the survey the moment it is saved,
    # which is what status "closed" is for.
    if value is not None and value < timezone.localdate():
        raise ValidationError({"closes_on": [_("The closing date cannot be in the past.")]})


def _validate_study_starts_on(value: dt.date, *, survey: Survey | None = None) -> None:
    today = timezone.localdate()
    earliest = years_before(today, STUDY_WINDOW_MAX_YEARS)
    if value > today:
        raise ValidationError({"study_starts_on": [_("The study cannot start in the future.")]})
    if value < earliest:
        raise ValidationError({"study_starts_on": [
            _("The study can start at most %(years)d years back, on %(day)s at the earliest.")
            % {"years": STUDY_WINDOW_MAX_YEARS, "day": earliest.isoformat()}]})
    # Once respondents can report the window only widens, so every stored report stays
    # inside it (and no answer tells how early the earliest report is).
    if (survey is not None and value > survey.study_starts_on
            and selectors.survey_takes_reports(survey=survey)):
        raise ValidationError({"study_starts_on": [
            _("Once units are loaded the study start can only move earlier than %(day)s.")
            % {"day": survey.study_starts_on.isoformat()}]})


@transaction.atomic
def survey_create(
    *, owner, title: str, period: str = Survey.Period.MONTH, min_group_size: int = 5,
    access: str = Survey.Access.LINK, closes_on: dt.date | None = None,
    study_starts_on: dt.date | None = None, email_domains: Iterable[str] = (),
) -> Survey:
    """`study_starts_on` defaults to STUDY_WINDOW_DEFAULT_YEARS before today. A verified
    survey (access "verified") needs `email_domains` and gets its token issuer here."""
    _validate_min_group_size(min_group_size)
    _validate_closes_on(closes_on)
    study_starts_on = study_starts_on or default_study_start()
    _validate_study_starts_on(study_starts_on)
    domains = _validate_access(access, list(email_domains))
    survey = Survey.objects.create(
        owner=owner, title=title, period=period, min_group_size=min_group_size, access=access,
        closes_on=closes_on, study_starts_on=study_starts_on, share_token=_token(),
        dashboard_token=_token(), email_domains=domains,
    )
    if survey.needs_token:
        membership.issuer_create(survey=survey)
    return survey


def _validate_access(access: str, email_domains: list) -> list[str]:
    domains = membership.email_domains_clean(email_domains)
    if access == Survey.Access.VERIFIED and not domains:
        raise ValidationError({"email_domains": [
            _("A verified survey needs at least one email domain.")]})
    return domains


@transaction.atomic
def survey_update(*, survey: Survey, fields: dict) -> Survey:
    """Changes title, status, access, closes_on, study_starts_on or
    min_group_size. The period granularity is fixed once respondents can report (the
    first unit is loaded: `selectors.survey_takes_reports`), since stored periods depend
    on it.

    From then on the minimum group size may rise but never fall: each respondent filed
    under the promise that any total smaller than the k shown then stays hidden, and a
    release at a lower k next to the earlier ones would narrow what they hid."""
    if "min_group_size" in fields:
        _validate_min_group_size(fields["min_group_size"])
        # The stored k, locked: two organizer tabs must not step it down between them.
        current = (Survey.objects.select_for_update().filter(pk=survey.pk)
                   .values_list("min_group_size", flat=True).get())
        if fields["min_group_size"] < current and selectors.survey_takes_reports(survey=survey):
            raise ValidationError({"min_group_size": [
                _("Respondents can report once units are loaded, under the promise that any "
                  "total smaller than %(k)d is hidden, so the minimum group size can be "
                  "raised but not lowered.") % {"k": current}]})
    if "closes_on" in fields:
        _validate_closes_on(fields["closes_on"])
    if "study_starts_on" in fields:
        _validate_study_starts_on(fields["study_starts_on"], survey=survey)
    if "period" in fields and fields["period"] != survey.period and (
            selectors.survey_takes_reports(survey=survey)):
        raise ValidationError({"period": _("The period is fixed once units are loaded, since "
                                           "reports are stored by it.")})
    if "access" in fields or "email_domains" in fields:
        fields = {**fields, "email_domains": _validate_access(
            fields.get("access", survey.access), fields.get("email_domains",
                                                            survey.email_domains))}
    for name, value in fields.items():
        setattr(survey, name, value)
    survey.save(update_fields=list(fields))
    if survey.needs_token and survey.status == Survey.Status.OPEN:
        membership.issuer_create(survey=survey)
    if fields.get("status") == Survey.Status.CLOSED:
        # Which addresses took part is forgotten for good; reopened, it starts afresh.
        membership.membership_forget(survey=survey)
    return survey


@transaction.atomic
def survey_share_token_rotate(*, survey: Survey) -> Survey:
    """A new share link; the old one stops taking reports at once (the filing statement
    checks the token it was read with)."""
    survey.share_token = _token()
    survey.save(update_fields=["share_token"])
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
def org_tree_index(*, survey: Survey, units: Iterable[OrgUnit]) -> None:
    """Adds closure rows (each unit is its own ancestor) for the given new units and
    any other unit of the survey still without them, by one statement walking up
    `parent`, so 20,000 units cost one round trip."""
    if not list(units):
        return
    survey_value = Survey._meta.pk.get_db_prep_value(survey.id, connection)
    with connection.cursor() as cursor:
        # "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint.
        cursor.execute("""
            WITH RECURSIVE chain (unit_id, ancestor_id) AS (
                SELECT u.id, u.id FROM surveys_orgunit u
                WHERE u.survey_id = %s AND NOT EXISTS (
                    SELECT 1 FROM reports_unitancestor a
                    WHERE a.unit_id = u.id AND a.ancestor_id = u.id)
                UNION ALL
                SELECT chain.unit_id, p.parent_id
                FROM chain JOIN surveys_orgunit p ON p.id = chain.ancestor_id
                WHERE p.parent_id IS NOT NULL)
            INSERT INTO reports_unitancestor (survey_id, unit_id, ancestor_id)
            SELECT %s, unit_id, ancestor_id FROM chain WHERE true
            ON CONFLICT DO NOTHING""", [survey_value, survey_value])


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
        else:
            # Listed again, a unit taken off the form (and its ancestors) goes back on it.
            restored = unit.retired
            unit.retired = False
            recounted = path in headcounts and unit.headcount != headcounts[path]
            if recounted:
                unit.headcount = headcounts[path]
            if restored or recounted:
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
    OrgUnit.objects.bulk_update(changed, ["headcount", "retired"], batch_size=2000)
    org_tree_index(survey=survey, units=created)
    return len(headcounts)


@transaction.atomic
def units_retire(*, survey: Survey, path: str) -> int:
    """Takes a unit and every unit below it off the form (a mistyped unit, a name split at
    a "/"); returns how many. Raises OrgUnit.DoesNotExist for an unknown or already removed
    unit.

    What was reported decides nothing here, so removing a unit tells the organizer nothing
    about its reports: whatever was filed under it stays counted under it, and the unit
    stays in the figures (a row that drops out of the table, or a refusal, would say
    whether a hidden count is 0). The survey's units_version moves on, so no copy of the
    survey or of a unit id kept before can file to the removed units."""
    unit = OrgUnit.objects.get(survey=survey, path=path, retired=False)
    subtree = list(UnitAncestor.objects.filter(ancestor=unit).values_list("unit_id", flat=True))
    OrgUnit.objects.filter(id__in=subtree).update(retired=True)
    Survey.objects.filter(pk=survey.pk).update(units_version=F("units_version") + 1)
    survey.refresh_from_db(fields=["units_version"])
    return len(subtree)


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
        [InviteCode(survey=survey, code_hash=membership.invite_code_hash(code))
         for code in codes], batch_size=1000)
    return codes


def invite_unused_count(*, survey: Survey) -> int:
    """Codes that bought no token yet. A code buys a token, not a report, so the count
    moves when a token is bought and never when, or whether, a report arrives."""
    return InviteCode.objects.filter(survey=survey).count()


@dataclass(frozen=True)
class ReportDraft:
    unit: str
    period: dt.date
    signals: tuple[str, ...]
    outcome: str = ""
    comment: str = ""
    token: str = ""  # the Privacy Pass token of a survey that needs one, base64url
    # A change to a report already filed, by its receipt's holder: no token is spent again.
    admitted: bool = False


def report_validate(*, survey: Survey, draft: ReportDraft, today: dt.date,
                    unit_id: Callable[[str], int | None] | None = None) -> int:
    """Checks a draft against the survey and returns its unit's id; raises ValidationError
    with field errors. `unit_id(path)` finds a unit (default: a query)."""
    path = draft.unit.strip()
    found = (unit_id(path) if unit_id is not None else
             OrgUnit.objects.filter(survey=survey, path=path, retired=False)
             .values_list("id", flat=True)
             .first())
    errors = report_errors(survey=survey, unit_known=found is not None, day=draft.period,
                           signals=draft.signals, outcome=draft.outcome, today=today)
    if survey.needs_token and not draft.admitted and not draft.token.strip():
        errors["token"] = [membership.token_missing_message(survey)]
    if errors:
        raise ValidationError(errors)
    return found


def report_errors(*, survey: Survey, unit_known: bool, day: dt.date, signals, outcome: str,
                  today: dt.date) -> dict[str, list[str]]:
    """The field errors of a report's answers: the one set of rules and messages."""
    errors: dict[str, list[str]] = {}
    if not unit_known:
        errors["unit"] = [_("Pick a unit from this survey's list.")]
    period_error = report_period_error(survey=survey, day=day, today=today)
    if period_error:
        errors["period"] = [period_error]
    unknown = sorted(set(signals) - set(catalog.SIGNAL_CODES))
    if unknown:
        errors["signals"] = [_("Unknown signal: %(codes)s.") % {"codes": ", ".join(unknown)}]
    if outcome and outcome not in catalog.OUTCOME_CODES:
        errors["outcome"] = [_("Unknown outcome.")]
    return errors


class SurveyClosed(Exception):
    pass


def report_received_week(*, at: dt.datetime) -> dt.date:
    """The week a report filed at `at` is dated to: the week of the publication
    that will count it at the earliest, so that no stored date orders reports
    within their publication batch."""
    published = slots.slot_next(at) if slots.scheduled() else at
    return period_start_for(period=Survey.Period.WEEK, day=published.date())


@transaction.atomic
def report_withdraw(*, survey: Survey, receipt: str) -> bool:
    """Withdraws the report with this receipt; False when none is found (a
    wrong and a withdrawn receipt look alike).

    A held report is emptied at once and leaves nothing to publish. A
    published one stays counted until the next publication of at least k new
    reports carries its withdrawal: leaving the figures on its own, between
    publications, it would show which cell it was in."""
    state = report_state(survey=survey, receipt=receipt, lock=True)
    if state.content is None:
        return False
    if state.held is not None and state.held.kind == HeldReport.Kind.NEW:
        # Kept, empty, until the next publication: the holding table's size
        # then changes only at publications, like every figure of arrivals.
        state.held.kind, state.held.lookup = HeldReport.Kind.VOID, None
        state.held.sealed = seal(survey_id=survey.id, row_id=state.held.id, content={})
        state.held.save(update_fields=["kind", "lookup", "sealed"])
        return True
    withdrawal = {"r": state.content["r"], "w": True}
    if state.held is not None:
        state.held.sealed = seal(survey_id=survey.id, row_id=state.held.id, content=withdrawal)
        state.held.save(update_fields=["sealed"])
        return True
    _held_change_create(survey=survey, receipt=receipt, content=withdrawal)
    return True


def _held_change_create(*, survey: Survey, receipt: str, content: dict) -> None:
    row_id = uuid.uuid4()
    HeldReport.objects.create(
        id=row_id, survey=survey, kind=HeldReport.Kind.CHANGE, lookup=receipt_lookup(receipt),
        sealed=seal(survey_id=survey.id, row_id=row_id, content=content))


AMENDABLE_FIELDS = ("unit", "period", "signals", "outcome", "comment")


@transaction.atomic
def report_amend(*, survey: Survey, receipt: str, changes: dict) -> Report | None:
    """Changes the answers of the report with this receipt; returns its
    answers as an unsaved Report, or None when no report matches (a wrong and
    a withdrawn receipt look alike).

    `changes` holds any of AMENDABLE_FIELDS ("period" a date, "signals" a
    sequence of codes); the rest keep their current values. The result is
    validated and scrubbed exactly as a new report is.

    A held report is changed where it is held. A change to a published report
    is itself held, replacing any earlier held change, and applied by the next
    publication of at least k new reports: changes never count towards k, so
    changing a report back and forth cannot force a publication.
    """
    if not survey.is_open:
        raise SurveyClosed
    unknown = set(changes) - set(AMENDABLE_FIELDS)
    if unknown:
        raise ValidationError({name: [_("This answer cannot be changed.")]
                               for name in sorted(unknown)})
    state = report_state(survey=survey, receipt=receipt, lock=True)
    if state.content is None:
        return None
    current = state.content
    current_path = OrgUnit.objects.values_list("path", flat=True).get(id=current["u"])
    draft = ReportDraft(
        unit=changes.get("unit", current_path),
        period=changes.get("period", content_period(current)),
        signals=tuple(changes.get("signals", catalog.mask_to_signals(current["s"]))),
        outcome=changes.get("outcome", current["o"]) or "",
        comment=changes.get("comment", current["c"]) or "",
        # A survey that needs a token had it spent when the report was filed; holding
        # the receipt is what admits this change instead.
        admitted=True,
    )
    def unit_id_of(path: str) -> int | None:
        # The report's own unit stays valid after the organizer took it off the form.
        if path == current_path:
            return current["u"]
        return (OrgUnit.objects.filter(survey=survey, path=path, retired=False)
                .values_list("id", flat=True).first())

    unit_id = report_validate(survey=survey, draft=draft, today=timezone.localdate(),
                              unit_id=unit_id_of)
    amended = Report(survey=survey, unit_id=unit_id,
                     period_start=period_start_for(period=survey.period, day=draft.period),
                     signals=catalog.signals_to_mask(draft.signals), outcome=draft.outcome,
                     comment=comment_scrub(draft.comment), receipt_hash=current["r"])
    content = content_of(amended)
    # Nothing records when the report arrived or that an amend happened: the
    # held row is rewritten in place, and a published report keeps its
    # received_week, which is its publication's week.
    if state.held is not None:
        state.held.sealed = seal(survey_id=survey.id, row_id=state.held.id, content=content)
        state.held.save(update_fields=["sealed"])
    elif content != current:
        _held_change_create(survey=survey, receipt=receipt, content=content)
    return amended


def held_reports_publish(*, survey: Survey, arrived_before: dt.datetime | None, min_new: int,
                         received_week: dt.date) -> list[tuple[int, dt.date]] | None:
    """Moves held reports into Report, in the caller's transaction (a
    publication's): the new reports held before `arrived_before` (all, when
    None), if there are at least `min_new` of them, and every held change.

    Returns the (unit, period) cells whose counts changed, or None (nothing
    done) when fewer than `min_new` new reports are held. New reports are
    inserted in an order drawn by the system's cryptographic generator, with
    random ids and the publication's week, and changes are applied in another
    such order: neither the rows' placement nor their transaction ids say
    which arrived first."""
    survey_changes_lock(survey=survey)
    rows = list(HeldReport.objects.select_for_update().filter(survey=survey)
                .only("id", "survey_id", "kind", "slot", "sealed"))
    arrived = [row for row in rows if row.kind == HeldReport.Kind.NEW and (
        arrived_before is None or row.slot is None or row.slot < arrived_before)]
    if len(arrived) < min_new:
        return None
    shuffle = secrets.SystemRandom().shuffle
    new = [held_content(row) for row in arrived]
    shuffle(new)
    Report.objects.bulk_create(
        [Report(id=uuid.uuid4(), survey=survey, unit_id=content["u"],
                period_start=content_period(content), signals=content["s"],
                outcome=content["o"], comment=content["c"], received_week=received_week,
                receipt_hash=content["r"])
         for content in new], batch_size=2000)
    changed = {(content["u"], content_period(content)) for content in new}
    held_changes = [held_content(row) for row in rows if row.kind == HeldReport.Kind.CHANGE]
    shuffle(held_changes)
    published = {report.receipt_hash: report for report in Report.objects.select_for_update()
                 .filter(survey=survey, receipt_hash__in=[c["r"] for c in held_changes])}
    withdrawn, amended = [], []
    for content in held_changes:
        report = published.get(content["r"])
        if report is None:
            continue
        changed.add((report.unit_id, report.period_start))
        if content.get("w"):
            withdrawn.append(report.id)
            continue
        report.unit_id, report.period_start = content["u"], content_period(content)
        report.signals, report.outcome, report.comment = content["s"], content["o"], content["c"]
        changed.add((report.unit_id, report.period_start))
        amended.append(report)
    Report.objects.filter(id__in=withdrawn).delete()
    Report.objects.bulk_update(amended, ["unit", "period_start", "signals", "outcome",
                                         "comment"], batch_size=2000)
    HeldReport.objects.filter(id__in=[row.id for row in rows if row.kind != HeldReport.Kind.NEW]
                              + [row.id for row in arrived]).delete()
    return sorted(changed)


@transaction.atomic
def reports_bulk_create(*, survey: Survey, rows: list[tuple[str, dt.date, tuple, str]]) -> int:
    """Inserts many (unit path, period day, signals, outcome) reports at once,
    under the same rules as `report_create` (open survey, known unit, period in
    the study window, catalog codes). For synthetic and demo surveys only: receipts
    are not kept by anyone, so none is shown. The cells are not touched: the caller
    rebuilds them."""
    if not survey.is_open:
        raise SurveyClosed
    today = timezone.localdate()
    units = dict(OrgUnit.objects.filter(survey=survey, retired=False)
                 .values_list("path", "id"))
    errors: dict[str, list[str]] = {}
    reports = []
    week = period_start_for(period=Survey.Period.WEEK, day=today)
    for index, (path, day, signals, outcome) in enumerate(rows):
        found = report_errors(survey=survey, unit_known=path in units, day=day,
                              signals=signals, outcome=outcome, today=today)
        errors.update({f"reports[{index}].{name}": messages
                       for name, messages in found.items()})
        if errors:
            continue
        reports.append(Report(
            survey=survey, unit_id=units[path],
            period_start=period_start_for(period=survey.period, day=day),
            signals=catalog.signals_to_mask(signals), outcome=outcome or "",
            received_week=week, receipt_hash=receipt_hash(secrets.token_urlsafe(16))))
    if errors:
        raise ValidationError(errors)
    Report.objects.bulk_create(reports, batch_size=2000)
    return len(reports)
