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


def report_state(*, survey: Survey, receipt: str, lock: bool = False) -> ReportState:
    """The current state of the report with this receipt. With `lock`, in the
    caller's transaction, its rows stay locked until it ends.

    The held row is locked first, as a publication locks them (then the
    published rows it changes), so the two never wait on each other in a
    cycle; a held row a publication moved is then already in Report."""
    reports = Report.objects.filter(survey=survey, receipt_hash=receipt_hash(receipt))
    held_rows = HeldReport.objects.filter(survey=survey, lookup=receipt_lookup(receipt))
    if lock:
        reports, held_rows = reports.select_for_update(), held_rows.select_for_update()
    held = held_rows.first()
    report = reports.first()
    if lock and held is None and report is not None:
        # Two changes to one published report queue on its row; the second
        # then finds the change the first one held.
        held = held_rows.first()
    if held is not None:
        content = held_content(held)
        if held.kind != HeldReport.Kind.NEW and content.get("w"):
            return ReportState(held=held, report=None, content=None)
        return ReportState(held=held, report=None, content=content)
    if report is None:
        return ReportState(held=None, report=None, content=None)
    return ReportState(held=None, report=report, content=content_of(report))
