"""Writes for derived data: cells and publication.

Reports reach surveys.Report only at a publication (held_reports_publish), so
Report is always exactly the set the latest publication counted: cells
recomputed from it, by a rebuild or anything else, equal the published ones.
Every function here recomputes from reports, so running it twice, late or
concurrently gives the same rows.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from reports.models import (
    AggregationState,
    Cell,
    PendingChange,
    PublishedCell,
    ReleasedPart,
    ReleasedTable,
)
from surveys import catalog, slots
from surveys.models import HeldReport, Report, Survey, UnitAncestor

# Outbox rows per aggregation transaction. Each batch recomputes every affected ancestor
# cell once, so larger batches share the upper levels of the tree among more reports.
PENDING_BATCH = 10_000
_COUNT_FIELDS = ("reports", "signals", "outcomes")


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
    """Counts per (ancestor, period) over the reports in each ancestor's subtree.

    The portable recount: every other path must give exactly these numbers."""
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


# -- PostgreSQL: cells written by single statements ------------------------------------------
#
# Counts travel as one column per signal (s0..) and per outcome (o0..) until the last step
# builds the JSON, so no row passes through Python. Zero counts are left out of the JSON,
# as the portable recount does.

_SIGNAL_COLUMNS = [f"s{index}" for index in range(len(catalog.SIGNAL_CODES))]
_OUTCOME_COLUMNS = [f"o{index}" for index in range(len(catalog.OUTCOME_CODES))]


def _uses_sql() -> bool:
    return connection.vendor == "postgresql"


def _report_counts_sql() -> str:
    """Columns counting a group of surveys_report rows `r`."""
    # integer, not bigint: a sum of bigints is numeric, which is slow to add up again.
    signals = [f"sum((r.signals >> {index}) & 1)::integer AS s{index}"
               for index in range(len(catalog.SIGNAL_CODES))]
    outcomes = [f"(count(*) FILTER (WHERE r.outcome = '{code}'))::integer AS o{index}"
                for index, code in enumerate(catalog.OUTCOME_CODES)]
    return ", ".join(["count(*)::integer AS n", *signals, *outcomes])


def _cell_counts_sql() -> str:
    """The same columns summed over a group of reports_cell rows `c`."""
    signals = [f"sum((c.signals ->> '{code}')::integer)::integer AS s{index}"
               for index, code in enumerate(catalog.SIGNAL_CODES)]
    outcomes = [f"sum((c.outcomes ->> '{code}')::integer)::integer AS o{index}"
                for index, code in enumerate(catalog.OUTCOME_CODES)]
    return ", ".join(["sum(c.reports)::integer AS n", *signals, *outcomes])


def _summed_sql() -> str:
    return ", ".join(f"sum({column})::integer AS {column}"
                     for column in ["n", *_SIGNAL_COLUMNS, *_OUTCOME_COLUMNS])


def _json_sql(codes: tuple[str, ...], columns: list[str]) -> str:
    pairs = ", ".join(f"'{code}', NULLIF({column}, 0)" for code, column in zip(codes, columns,
                                                                              strict=True))
    return f"jsonb_strip_nulls(jsonb_build_object({pairs}))"


def _write_fresh_sql(*, scope: str) -> str:
    """Upserts the cells in `fresh` and deletes the cells of `scope` missing from it;
    selects how many cells `fresh` holds. Unchanged cells are not rewritten."""
    return f"""
        written AS (
            INSERT INTO reports_cell (survey_id, unit_id, period_start, reports, signals,
                                      outcomes)
            SELECT %(survey)s, unit_id, period_start, n,
                   {_json_sql(catalog.SIGNAL_CODES, _SIGNAL_COLUMNS)},
                   {_json_sql(catalog.OUTCOME_CODES, _OUTCOME_COLUMNS)}
            FROM fresh
            ON CONFLICT (survey_id, unit_id, period_start) DO UPDATE
            SET reports = EXCLUDED.reports, signals = EXCLUDED.signals,
                outcomes = EXCLUDED.outcomes
            WHERE (reports_cell.reports, reports_cell.signals, reports_cell.outcomes)
                  IS DISTINCT FROM (EXCLUDED.reports, EXCLUDED.signals, EXCLUDED.outcomes)),
        dropped AS (
            DELETE FROM reports_cell c WHERE {scope}
            AND NOT EXISTS (SELECT 1 FROM fresh f
                            WHERE f.unit_id = c.unit_id AND f.period_start = c.period_start))
        SELECT count(*) FROM fresh"""  # noqa: S608 - code names only


def _rebuild_sql(*, survey_id) -> int:
    # Reports are first counted per (unit, period): a few rows per cell instead of one
    # per report, which then roll up over the closure cheaply.
    # The target table leads the text, so it shows in pg_stat_activity's truncated query.
    sql = f"""/* rebuild of reports_cell */
        WITH own AS (
            SELECT r.unit_id, r.period_start, {_report_counts_sql()}
            FROM surveys_report r WHERE r.survey_id = %(survey)s
            GROUP BY r.unit_id, r.period_start),
        fresh AS MATERIALIZED (
            SELECT a.ancestor_id AS unit_id, own.period_start, {_summed_sql()}
            FROM own JOIN reports_unitancestor a
                ON a.unit_id = own.unit_id AND a.survey_id = %(survey)s
            GROUP BY a.ancestor_id, own.period_start),
        {_write_fresh_sql(scope="c.survey_id = %(survey)s")}"""  # noqa: S608 - names only
    with connection.cursor() as cursor:
        # Room to group tens of thousands of wide rows without spilling to disk; LOCAL
        # ends with the rebuild's transaction.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        # Every join here is survey-wide; with stale statistics a nested-loop anti-join
        # against `fresh` turns quadratic (minutes for 48,000 cells).
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute(sql, {"survey": str(survey_id)})
        return cursor.fetchone()[0]


def _apply_sql(*, survey_id, targets: list[tuple[int, dt.date]]) -> None:
    """Recomputes the cells of `targets`, all units of one depth, from the reports filed
    at each unit itself plus the cells of its children: the work is bounded by the cells
    touched, never by the reports below them."""
    sql = f"""/* update of reports_cell */
        WITH targets (unit_id, period_start) AS (
            SELECT * FROM unnest(%(units)s::integer[], %(periods)s::date[])),
        parts AS (
            SELECT r.unit_id, r.period_start, {_report_counts_sql()}
            FROM surveys_report r JOIN targets t
                ON t.unit_id = r.unit_id AND t.period_start = r.period_start
            WHERE r.survey_id = %(survey)s
            GROUP BY r.unit_id, r.period_start
            UNION ALL
            SELECT u.parent_id, c.period_start, {_cell_counts_sql()}
            FROM targets t JOIN surveys_orgunit u ON u.parent_id = t.unit_id
            JOIN reports_cell c ON c.survey_id = %(survey)s AND c.unit_id = u.id
                AND c.period_start = t.period_start
            GROUP BY u.parent_id, c.period_start),
        fresh AS MATERIALIZED (
            SELECT unit_id, period_start, {_summed_sql()} FROM parts
            GROUP BY unit_id, period_start),
        {_write_fresh_sql(scope='''c.survey_id = %(survey)s AND (c.unit_id, c.period_start)
                                   IN (SELECT unit_id, period_start FROM targets)''')}"""  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, {"survey": str(survey_id), "units": [unit for unit, _ in targets],
                             "periods": [period for _, period in targets]})


def _apply_pending_sql(*, survey_id, batch: int) -> int:
    with connection.cursor() as cursor:
        # Delete before counting: a report committed after this statement keeps its own
        # outbox row, and every report whose row is gone is visible to the counts below.
        cursor.execute("""
            DELETE FROM reports_pendingchange WHERE id IN (
                SELECT id FROM reports_pendingchange WHERE survey_id = %s LIMIT %s)
            RETURNING unit_id, period_start""", [str(survey_id), batch])
        pending = cursor.fetchall()
        if not pending:
            return 0
        changed = sorted(set(pending))
        cursor.execute("""
            SELECT DISTINCT u.depth, a.ancestor_id, c.period_start
            FROM unnest(%s::integer[], %s::date[]) AS c (unit_id, period_start)
            JOIN reports_unitancestor a ON a.unit_id = c.unit_id
            JOIN surveys_orgunit u ON u.id = a.ancestor_id""",
                       [[unit for unit, _ in changed], [period for _, period in changed]])
        by_depth: dict[int, list[tuple[int, dt.date]]] = defaultdict(list)
        for depth, unit_id, period in cursor.fetchall():
            by_depth[depth].append((unit_id, period))
    # Deepest first, so every parent sums children that are already up to date.
    for depth in sorted(by_depth, reverse=True):
        _apply_sql(survey_id=survey_id, targets=by_depth[depth])
    return len(pending)


def _apply_pending_portable(*, survey_id, batch: int) -> int:
    pending = list(PendingChange.objects.filter(survey_id=survey_id)
                   .values_list("id", "unit_id", "period_start")[:batch])
    if not pending:
        return 0
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
    return len(pending)


def _rebuild_portable(*, survey_id) -> int:
    counts = _rolled_up_counts(survey_id=survey_id, period_start=None, ancestor_ids=None)
    Cell.objects.filter(survey_id=survey_id).delete()
    _cells_write(survey_id=survey_id, counts=counts, scope_keys=None)
    return len(counts)


@transaction.atomic
def cells_apply_pending(*, survey_id, batch: int = PENDING_BATCH) -> int:
    """Recomputes the cells named by up to `batch` outbox rows; returns how many
    rows it handled (the caller goes again while that equals `batch`)."""
    _state_locked(survey_id)
    apply = _apply_pending_sql if _uses_sql() else _apply_pending_portable
    return apply(survey_id=survey_id, batch=batch)


def _cells_recount(*, survey_id, changes: list[tuple[int, dt.date]]) -> None:
    """Recomputes the cells of `changes` and their ancestors, in the caller's
    transaction, through the outbox the incremental path reads."""
    PendingChange.objects.bulk_create(
        [PendingChange(survey_id=survey_id, unit_id=unit_id, period_start=period)
         for unit_id, period in changes], batch_size=2000)
    while cells_apply_pending(survey_id=survey_id) == PENDING_BATCH:
        pass


@transaction.atomic
def cells_rebuild(*, survey_id, portable: bool = False) -> int:
    """Recomputes every cell of a survey from its reports; returns the cell count.

    Reports are the published set, so this never moves a released figure.
    `portable` forces the database-neutral path that SQLite always takes."""
    _state_locked(survey_id)
    PendingChange.objects.filter(survey_id=survey_id).delete()
    if _uses_sql() and not portable:
        return _rebuild_sql(survey_id=survey_id)
    return _rebuild_portable(survey_id=survey_id)


def publication_maybe_publish(*, survey_id, force: bool = False,
                              now: dt.datetime | None = None) -> bool:
    """Publishes the survey when a publication is due: at least k new reports
    held at the start of the current slot (surveys.slots) and no publication
    in this slot yet; without an interval, at least k new reports held.

    One transaction, under the survey's aggregation lock: the held reports
    become Reports in a shuffled order and the held changes are applied
    (held_reports_publish), the cells they touch are recomputed, copied to the
    published ones and released, and the publication is dated by its slot.
    Figures thus change only at slot boundaries, in batches of at least the
    survey's minimum group size, so watching the dashboard cannot date one
    report. `force` publishes whatever is held, even fewer than k (for
    surveys built by simulation, whose reports are inserted directly).
    """
    from surveys.periods import period_start_for
    from surveys.services import held_reports_publish

    now = now or timezone.now()
    with transaction.atomic():
        state = _state_locked(survey_id)
        survey = Survey.objects.get(id=survey_id)
        slot = slots.slot_of(now)
        if (not force and slots.scheduled() and state.published_at is not None
                and state.published_at >= slot):
            return False
        changed = held_reports_publish(
            survey=survey, arrived_before=slot if slots.scheduled() and not force else None,
            min_new=0 if force else survey.min_group_size,
            received_week=period_start_for(period=Survey.Period.WEEK, day=slot.date()))
        if changed is None:
            return False
        _cells_recount(survey_id=survey_id, changes=changed)
        PublishedCell.objects.filter(survey_id=survey_id).delete()
        # Copied inside the database: a large survey has hundreds of thousands of cells.
        # In a fixed order, so the stored order never depends on how cells were written.
        columns = ("survey_id", "unit_id", "period_start", "reports", "signals", "outcomes")
        select, params = (Cell.objects.filter(survey_id=survey_id)
                          .order_by("unit_id", "period_start")
                          .values_list(*columns).query.sql_with_params())
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO reports_publishedcell ({', '.join(columns)}) {select}",
                           params)
        state.published_at = slot
        state.publications += 1
        state.save(update_fields=["published_at", "publications"])
        # Disclosure control runs here, once per publication, so no read ever runs it; the
        # released table commits with the cells it was computed from. Imported here because
        # the selectors reach surveys.services, which imports this module.
        from reports.selectors import released_table_fields

        fields = released_table_fields(survey=survey, state=state)
        parts = fields.pop("parts")
        ReleasedTable.objects.update_or_create(survey_id=survey_id, defaults=fields)
        ReleasedPart.objects.filter(survey_id=survey_id).delete()
        ReleasedPart.objects.bulk_create(
            [ReleasedPart(survey_id=survey_id, unit=unit, parts=text)
             for unit, text in parts.items()], batch_size=2000)
        return True


def surveys_due_for_publication(*, now: dt.datetime | None = None) -> list:
    """Surveys whose publication is due (publication_maybe_publish checks again
    under the lock): at least k new reports held since before the current
    slot began, and no publication in this slot yet. One query each."""
    now = now or timezone.now()
    slot = slots.slot_of(now)
    held = HeldReport.objects.filter(kind=HeldReport.Kind.NEW)
    if slots.scheduled():
        held = held.filter(Q(slot__lt=slot) | Q(slot__isnull=True))
    enough = set(held.values("survey_id", "survey__min_group_size").annotate(n=Count("id"))
                 .filter(n__gte=F("survey__min_group_size")).values_list("survey_id", flat=True))
    if slots.scheduled() and enough:
        enough -= set(AggregationState.objects.filter(survey_id__in=enough, published_at__gte=slot)
                      .values_list("survey_id", flat=True))
    return sorted(enough, key=str)
