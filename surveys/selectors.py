"""Reads for surveys and org trees."""

from django.db.models import QuerySet
from django.http import Http404

from server.db import get_by_unique
from surveys import catalog
from surveys.models import OrgUnit, Report, Survey
from surveys.services import receipt_hash


def survey_list(*, owner) -> QuerySet[Survey]:
    return Survey.objects.filter(owner=owner).order_by("-created", "title")


def survey_get(*, owner, survey_id) -> Survey:
    """The owner's survey, or 404: another organizer's survey does not exist for you."""
    survey = Survey.objects.filter(owner=owner, id=survey_id).first()
    if survey is None:
        raise Http404
    return survey


def survey_by_share_token(*, token: str) -> Survey:
    # Every report filed starts here: the query is built once, not per call.
    survey = get_by_unique(Survey, "share_token", token)
    if survey is None:
        raise Http404
    return survey


def survey_by_dashboard_token(*, token: str) -> Survey:
    survey = Survey.objects.filter(dashboard_token=token).first()
    if survey is None:
        raise Http404
    return survey


def unit_list(*, survey: Survey) -> QuerySet[OrgUnit]:
    return OrgUnit.objects.filter(survey=survey).order_by("path")


def unit_paths(*, survey: Survey) -> list[str]:
    return list(OrgUnit.objects.filter(survey=survey).order_by("path")
                .values_list("path", flat=True))


def report_held(*, survey: Survey, receipt: str) -> bool:
    """Whether a report with this receipt is stored: lets its holder use the
    receipt as proof that the report was received and still counts."""
    return Report.objects.filter(survey=survey, receipt_hash=receipt_hash(receipt)).exists()


def report_answers(*, survey: Survey, receipt: str) -> dict | None:
    """The answers of the report with this receipt, for its holder to amend,
    or None. Only what the respondent typed or picked: never received_week."""
    report = (Report.objects.select_related("unit")
              .filter(survey=survey, receipt_hash=receipt_hash(receipt)).first())
    return None if report is None else answers_of(report)


def answers_of(report: Report) -> dict:
    return {"unit": report.unit.path, "period": report.period_start,
            "signals": catalog.mask_to_signals(report.signals), "outcome": report.outcome,
            "comment": report.comment}
