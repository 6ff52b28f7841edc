"""Reads for surveys and org trees."""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404

from server.db import get_by_unique
from surveys import catalog
from surveys.holding import content_period, report_state
from surveys.models import HeldReport, OrgUnit, Report, Survey, TokenIssuance


def survey_list(*, owner) -> QuerySet[Survey]:
    return Survey.objects.filter(owner=owner).order_by("-created", "title")


def survey_get(*, owner, survey_id) -> Survey:
    """The owner's survey, or 404: another organizer's survey does not exist for you."""
    survey = Survey.objects.filter(owner=owner, id=survey_id).first()
    if survey is None:
        raise Http404
    return survey


def survey_takes_reports(*, survey: Survey) -> bool:
    """Whether respondents can have reported: from the first unit loaded (a report names
    one), what they were promised when they filed (k, the period, the study window) may
    only get stricter.

    Decided from the units, which only the organizer changes, and never from the reports:
    a refusal that came only once someone had reported would tell the organizer that a
    report exists while every figure is still hidden."""
    return survey.units.exists()


def tokens_bought_count(*, survey: Survey) -> int:
    """Addresses that bought a verified survey's token since it last opened (the rows are
    destroyed when it closes)."""
    return TokenIssuance.objects.filter(survey=survey).count()


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
    return OrgUnit.objects.filter(survey=survey, retired=False).order_by("path")


@dataclass(frozen=True)
class TreeRow:
    path: str
    name: str
    depth: int
    headcount: int | None

    @property
    def indent(self) -> int:
        # Deeper levels are drawn at the deepest indent the page styles.
        return min(self.depth, 8)


@dataclass(frozen=True)
class TreeSummary:
    """The org tree as its organizer loaded it: no report figures, which only the
    released table shows."""

    units: int
    top_level: int
    levels: int
    with_headcount: int
    headcount_total: int
    rows: list[TreeRow]
    not_shown: int
    removed: int = 0


def unit_tree_summary(*, survey: Survey, shown: int) -> TreeSummary:
    """Counts of the tree, and its first `shown` units in path order."""
    rows = list(OrgUnit.objects.filter(survey=survey).order_by("path")
                .values_list("path", "headcount", "retired"))
    units = [(path, headcount) for path, headcount, retired in rows if not retired]
    # Removed units stay in the figures but not on the form: counted apart.
    removed = len(rows) - len(units)
    depths = [path.count("/") for path, _headcount in units]
    counted = [headcount for _path, headcount in units if headcount is not None]
    return TreeSummary(
        units=len(units), top_level=depths.count(0), levels=max(depths, default=-1) + 1,
        with_headcount=len(counted), headcount_total=sum(counted),
        rows=[TreeRow(path=path, name=path.rpartition("/")[2], depth=depth, headcount=count)
              for (path, count), depth in zip(units[:shown], depths, strict=False)],
        not_shown=max(len(units) - shown, 0), removed=removed)


def unit_paths(*, survey: Survey) -> list[str]:
    return list(OrgUnit.objects.filter(survey=survey, retired=False).order_by("path")
                .values_list("path", flat=True))


def report_held(*, survey: Survey, receipt: str) -> bool:
    """Whether a report with this receipt is stored, held or published: lets
    its holder use the receipt as proof that the report was received and
    counts, or will at the next publication."""
    return report_state(survey=survey, receipt=receipt).content is not None


def report_answers(*, survey: Survey, receipt: str) -> dict | None:
    """The current answers of the report with this receipt (a held change
    included), for its holder to amend, or None. Only what the respondent
    typed or picked: never received_week."""
    content = report_state(survey=survey, receipt=receipt).content
    if content is None:
        return None
    return {"unit": OrgUnit.objects.values_list("path", flat=True).get(id=content["u"]),
            "period": content_period(content), "signals": catalog.mask_to_signals(content["s"]),
            "outcome": content["o"], "comment": content["c"]}


def answers_of(report: Report) -> dict:
    return {"unit": report.unit.path, "period": report.period_start,
            "signals": catalog.mask_to_signals(report.signals), "outcome": report.outcome,
            "comment": report.comment}


def report_batch_ready(*, survey: Survey) -> bool:
    """Whether enough new reports are held for the next publication. The one
    thing pages say about what waits: a count would date each arrival."""
    held = HeldReport.objects.filter(survey=survey, kind=HeldReport.Kind.NEW)
    return held[:survey.min_group_size].count() >= survey.min_group_size
