"""Writes for derived data: the tree closure, the outbox, cells and publication.

Every function here recomputes from reports, so running it twice, late or
concurrently gives the same rows.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from reports.models import AggregationState, Cell, PendingChange, PublishedCell, UnitAncestor
from surveys import catalog
from surveys.models import OrgUnit, Report, Survey

PENDING_BATCH = 2000
_COUNT_FIELDS = ("reports", "signals", "outcomes")


@transaction.atomic
def org_tree_index(*, survey: Survey, units: Iterable[OrgUnit]) -> None:
    """Adds closure rows for new units (each unit is its own ancestor)."""
    rows = []
    for unit in units:
        parts = unit.path.split("/")
        ancestor_paths = ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
        rows.extend((unit, path) for path in ancestor_paths)
    if not rows:
        return
    ids = dict(OrgUnit.objects.filter(survey=survey, path__in={path for _, path in rows})
               .values_list("path", "id"))
    UnitAncestor.objects.bulk_create(
        [UnitAncestor(survey=survey, unit=unit, ancestor_id=ids[path]) for unit, path in rows],
        ignore_conflicts=True,
    )


def report_changes_record(*, survey: Survey, changes: list[tuple[int, dt.date]]) -> None:
    """Records in the caller's transaction which cells a report changed, and
    asks for aggregation once that transaction commits."""
    from reports.tasks import aggregate_survey

    PendingChange.objects.bulk_create(
        [PendingChange(survey=survey, unit_id=unit_id, period_start=period)
         for unit_id, period in changes]
    )
    aggregate_survey.delay_on_commit(str(survey.id))


def _state_locked(survey_id) -> AggregationState:
    AggregationState.objects.get_or_create(survey_id=survey_id)
    # NO KEY UPDATE: report inserts take KEY SHARE locks on the survey side
    # and must not wait for aggregation.
    return AggregationState.objects.select_for_update(no_key=True).get(survey_id=survey_id)


_ANCESTOR = "unit__ancestor_links__ancestor_id"


def _signal_sums() -> dict:
    # signals & bit is bit or 0, so the sum is bit × count; shifted back below.
    return {f"s{index}": Sum(F("signals").bitand(1 << index))
            for index in range(len(catalog.SIGNAL_CODES))}


def _rolled_up_counts(*, survey_id, period_start: dt.date | None,
                      ancestor_ids: Iterable[int] | None) -> dict[tuple[int, dt.date], dict]:
    """Counts per (ancestor, period) over the reports in each ancestor's subtree."""
    reports = Report.objects.filter(survey_id=survey_id)
    if period_start is not None:
        reports = reports.filter(period_start=period_start)
    if ancestor_ids is not None:
        reports = reports.filter(**{f"{_ANCESTOR}__in": list(ancestor_ids)})
    counts: dict[tuple[int, dt.date], dict] = {}
    for row in (reports.values(_ANCESTOR, "period_start")
                .annotate(n=Count("id"), **_signal_sums()).order_by()):
        signals = {}
        for index, code in enumerate(catalog.SIGNAL_CODES):
            total = (row[f"s{index}"] or 0) >> index
            if total:
                signals[code] = total
        counts[(row[_ANCESTOR], row["period_start"])] = {
            "reports": row["n"], "signals": signals, "outcomes": {}}
    for row in (reports.exclude(outcome="").values(_ANCESTOR, "period_start", "outcome")
                .annotate(n=Count("id")).order_by()):
        counts[(row[_ANCESTOR], row["period_start"])]["outcomes"][row["outcome"]] = row["n"]
    return counts


def _cells_write(*, survey_id, counts: dict, scope_keys: set | None) -> None:
    """Upserts the given cells; deletes cells within scope that now count nothing."""
    Cell.objects.bulk_create(
        [Cell(survey_id=survey_id, unit_id=unit_id, period_start=period, **values)
         for (unit_id, period), values in counts.items()],
        update_conflicts=True, unique_fields=["survey", "unit", "period_start"],
        update_fields=list(_COUNT_FIELDS), batch_size=2000,
    )
    if scope_keys is None:
        return
    emptied = scope_keys - counts.keys()
    by_period: dict[dt.date, list[int]] = defaultdict(list)
    for unit_id, period in emptied:
        by_period[period].append(unit_id)
    for period, unit_ids in by_period.items():
        Cell.objects.filter(survey_id=survey_id, period_start=period,
                            unit_id__in=unit_ids).delete()


@transaction.atomic
def cells_apply_pending(*, survey_id, batch: int = PENDING_BATCH) -> int:
    """Recomputes the cells named by up to `batch` outbox rows; returns how many
    rows it handled (the caller goes again while that equals `batch`)."""
    state = _state_locked(survey_id)
    pending = list(PendingChange.objects.filter(survey_id=survey_id)
                   .values_list("id", "unit_id", "period_start")[:batch])
    if not pending:
        publication_maybe_publish(survey_id=survey_id, state=state)
        return 0
    # Delete before counting: a report committed after this statement keeps
    # its own outbox row, and every report whose row is gone is visible to
    # the counting queries below.
    PendingChange.objects.filter(id__in=[row[0] for row in pending]).delete()
    units_by_period: dict[dt.date, set[int]] = defaultdict(set)
    for _, unit_id, period in pending:
        units_by_period[period].add(unit_id)
    for period, unit_ids in units_by_period.items():
        ancestor_ids = set(UnitAncestor.objects.filter(unit_id__in=unit_ids)
                           .values_list("ancestor_id", flat=True))
        counts = _rolled_up_counts(survey_id=survey_id, period_start=period,
                                   ancestor_ids=ancestor_ids)
        _cells_write(survey_id=survey_id, counts=counts,
                     scope_keys={(unit_id, period) for unit_id in ancestor_ids})
    state.changes_since_publication += len(pending)
    state.save(update_fields=["changes_since_publication"])
    publication_maybe_publish(survey_id=survey_id, state=state)
    return len(pending)


@transaction.atomic
def cells_rebuild(*, survey_id) -> int:
    """Recomputes every cell of a survey from its reports; returns the cell count."""
    _state_locked(survey_id)
    PendingChange.objects.filter(survey_id=survey_id).delete()
    counts = _rolled_up_counts(survey_id=survey_id, period_start=None, ancestor_ids=None)
    Cell.objects.filter(survey_id=survey_id).delete()
    _cells_write(survey_id=survey_id, counts=counts, scope_keys=None)
    return len(counts)


def publication_due(*, state: AggregationState, min_group_size: int, now: dt.datetime) -> bool:
    if state.changes_since_publication < min_group_size:
        return False
    if state.published_at is None:
        return True
    interval = dt.timedelta(seconds=settings.CHORUS_PUBLISH_INTERVAL_SECONDS)
    return now - state.published_at >= interval


def publication_maybe_publish(*, survey_id, state: AggregationState | None = None,
                              force: bool = False) -> bool:
    """Copies the live cells to the published ones when a publication is due.

    Figures change only at these points, in batches of at least the survey's
    minimum group size, so watching the dashboard cannot date one report.
    """
    with transaction.atomic():
        state = state or _state_locked(survey_id)
        survey = Survey.objects.only("min_group_size").get(id=survey_id)
        now = timezone.now()
        if not force and not publication_due(state=state, min_group_size=survey.min_group_size,
                                             now=now):
            return False
        PublishedCell.objects.filter(survey_id=survey_id).delete()
        PublishedCell.objects.bulk_create(
            [PublishedCell(survey_id=survey_id, unit_id=cell.unit_id,
                           period_start=cell.period_start, reports=cell.reports,
                           signals=cell.signals, outcomes=cell.outcomes)
             for cell in Cell.objects.filter(survey_id=survey_id).iterator(chunk_size=5000)],
            batch_size=5000,
        )
        state.changes_since_publication = 0
        state.published_at = now
        state.publications += 1
        state.save(update_fields=["changes_since_publication", "published_at", "publications"])
        return True


def survey_report_count(*, survey_id) -> int:
    return Report.objects.filter(survey_id=survey_id).count()


def surveys_with_pending_work() -> list:
    """Surveys with outbox rows, or with unpublished changes that may be due."""
    with_outbox = set(PendingChange.objects.values_list("survey_id", flat=True).distinct())
    unpublished = set(AggregationState.objects.filter(changes_since_publication__gt=0)
                      .values_list("survey_id", flat=True))
    return sorted(with_outbox | unpublished, key=str)
