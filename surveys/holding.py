"""Where a report stands: held (sealed, waiting for a publication) or published.

Shared by the services that amend and withdraw reports and the selectors that
show a receipt holder their answers, so that both see the held state first:
a held change to a published report stands for what the report will be.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass

from surveys.models import HeldReport, Report, Survey
from surveys.sealing import receipt_lookup, unseal


def receipt_hash(receipt: str) -> str:
    # Receipts carry 128 random bits, so a fast hash is enough: there is
    # nothing to brute-force that a slow hash would protect.
    return hashlib.sha256(receipt.encode()).hexdigest()


def content_of(report: Report) -> dict:
    """A report's answers as a held row seals them."""
    return {"u": report.unit_id, "p": report.period_start.isoformat(), "s": report.signals,
            "o": report.outcome, "c": report.comment, "r": report.receipt_hash}


def content_period(content: dict) -> dt.date:
    return dt.date.fromisoformat(content["p"])


def held_content(held: HeldReport) -> dict:
    return unseal(survey_id=held.survey_id, row_id=held.id, sealed=held.sealed)


@dataclass(frozen=True)
class ReportState:
    held: HeldReport | None
    # The published row, when nothing about the report is held.
    report: Report | None
    # The current answers; None when the receipt names no report (or a withdrawn one).
    content: dict | None


def survey_changes_lock(*, survey: Survey) -> None:
    """Queues, in the caller's transaction, every change to the survey's held
    and published reports (amends, withdrawals, publications) behind one
    another. Without it an amend that found no held change would lock the
    published row, then find the change another amend had just held, while a
    publication held that change and waited for the published row: a cycle.
    NO KEY UPDATE, so intake (whose inserts take KEY SHARE on the survey) never
    waits for it."""
    list(Survey.objects.select_for_update(no_key=True).filter(pk=survey.pk)
         .values_list("pk", flat=True))


def report_state(*, survey: Survey, receipt: str, lock: bool = False) -> ReportState:
    """The current state of the report with this receipt. With `lock`, in the
    caller's transaction, changes to the survey's reports queue behind this
    one (survey_changes_lock) and its rows stay locked until it ends."""
    reports = Report.objects.filter(survey=survey, receipt_hash=receipt_hash(receipt))
    held_rows = HeldReport.objects.filter(survey=survey, lookup=receipt_lookup(receipt))
    if lock:
        survey_changes_lock(survey=survey)
        reports, held_rows = reports.select_for_update(), held_rows.select_for_update()
    held = held_rows.first()
    report = reports.first()
    if held is not None:
        content = held_content(held)
        if held.kind != HeldReport.Kind.NEW and content.get("w"):
            return ReportState(held=held, report=None, content=None)
        return ReportState(held=held, report=None, content=content)
    if report is None:
        return ReportState(held=None, report=None, content=None)
    return ReportState(held=None, report=report, content=content_of(report))
