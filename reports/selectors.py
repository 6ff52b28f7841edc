"""Reads for dashboards.

Dashboards read published figures only, never reports. Disclosure control runs once per
publication, in the publishing task (`released_table_fields`, stored as a `ReleasedTable`),
over the whole published table: reports per cell along the tree,
unit totals along time, and signal and outcome counts within cells. Everything a dashboard,
the API or an export shows is then either a released number or a sum of released numbers
(a window or a set of roots is summed only when every term in it is released), so no
combination of pages, API calls and exports tells an attacker more than the release itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models.fields.json import KeyTextTransform
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from reports import comments, detectable, detection, disclosure, phrases
from reports.models import (
    AggregationState,
    DetectionRun,
    Job,
    PublishedCell,
    ReleasedPart,
    ReleasedTable,
)
from surveys import catalog, slots
from surveys import selectors as survey_selectors
from surveys.models import OrgUnit, Survey
from surveys.periods import next_period_start

_CACHE_SECONDS = 60 * 60


@dataclass(frozen=True)
class Release:
    """The released table of one survey at one publication point."""

    k: int
    parents: dict[str, str | None]
    periods: tuple[str, ...]
    reports: disclosure.Released
    signals: dict[str, disclosure.Released]
    outcomes: dict[str, disclosure.Released]
    published_at: dt.datetime | None = None
    publications: int = 0
    children: dict[str | None, list[str]] = field(default_factory=dict)
    # How reports were admitted, as of the publication (`membership_fields`).
    membership: dict = field(default_factory=dict)

    @property
    def units(self) -> list[str]:
        return sorted(self.parents)

    @property
    def roots(self) -> list[str]:
        return self.children.get(None, [])

    def cell(self, unit: str, period: str | None) -> int | None:
        return self.reports.counts.get((unit, period))

    def window(self, unit: str, periods: tuple[str, ...] | list[str]) -> int | None:
        """Reports over several periods: shown only when every period is."""
        return _sum_all(self.reports.counts.get((unit, period)) for period in periods)

    def overall(self, period: str | None) -> int | None:
        """All roots together: shown only when every root is."""
        return _sum_all(self.cell(root, period) for root in self.roots)

    def part_window(self, released: disclosure.Released, unit: str,
                    periods: tuple[str, ...] | list[str]) -> int | None:
        return _sum_all(released.counts.get((unit, period)) for period in periods)


def _sum_all(values) -> int | None:
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _parent_path(path: str) -> str | None:
    parent = path.rpartition("/")[0]
    return parent or None


def _period_range(periods: set[str], period: str) -> tuple[str, ...]:
    """Every period from the first published one to the last: a period in between where
    nobody reported is a hidden count like any other, not a gap."""
    if not periods:
        return ()
    day, last = dt.date.fromisoformat(min(periods)), dt.date.fromisoformat(max(periods))
    out = []
    while day <= last:
        out.append(day.isoformat())
        day = next_period_start(period=period, start=day)
    return tuple(out)


def _compute_release(*, survey: Survey, state: AggregationState | None) -> Release:
    """Disclosure control over the whole unit tree: a unit nobody reported at is listed
    like any other, so neither the list of units nor a cell says where anyone reported."""
    k = survey.min_group_size
    parents: dict[str, str | None] = {
        path: _parent_path(path)
        for path in OrgUnit.objects.filter(survey=survey).values_list("path", flat=True)}
    rows = list(PublishedCell.objects.filter(survey=survey)
                .values_list("unit__path", "period_start", "reports", "signals", "outcomes")
                .order_by())
    cells: dict[tuple[str, str], int] = {}
    signal_cells: dict[str, dict[tuple[str, str], int]] = {code: {} for code in
                                                            catalog.SIGNAL_CODES}
    outcome_cells: dict[str, dict[tuple[str, str], int]] = {code: {} for code in
                                                             catalog.OUTCOME_CODES}
    periods: set[str] = set()
    for path, period_start, count, signals, outcomes in rows:
        period = period_start.isoformat()
        periods.add(period)
        cells[(path, period)] = count
        for code, value in (signals or {}).items():
            if code in signal_cells:
                signal_cells[code][(path, period)] = value
        for code, value in (outcomes or {}).items():
            if code in outcome_cells:
                outcome_cells[code][(path, period)] = value
        # Units are never deleted (a removed unit only leaves the form), so every cell's unit
        # and its ancestors are in the tree; walking up keeps it whole if one were missing.
        while path is not None and path not in parents:
            parents[path] = _parent_path(path)
            path = parents[path]
    ordered_periods = _period_range(periods, survey.period)
    table = disclosure.Table(parents=parents, periods=ordered_periods, cells=cells)
    reports = disclosure.protect(table, k)
    signals = disclosure.protect_breakdown(table, reports, signal_cells, exclusive=False)
    outcomes = disclosure.protect_breakdown(table, reports, outcome_cells, exclusive=True)
    children: dict[str | None, list[str]] = {}
    for unit in sorted(parents):
        children.setdefault(parents[unit], []).append(unit)
    return Release(
        k=k, parents=parents, periods=ordered_periods, reports=reports, signals=signals,
        outcomes=outcomes,
        published_at=state.published_at if state else None,
        publications=state.publications if state else 0, children=children,
    )


def publication_status(*, survey: Survey) -> AggregationState | None:
    return AggregationState.objects.filter(survey=survey).first()


def release(*, survey: Survey) -> Release:
    """The released table computed from the published cells: the fallback when no stored
    release fits (published before releases were stored, or k changed since).

    Published cells change only at publication, which bumps the counter in the key, so a
    cached release is never stale; the cache only saves recomputing suppression.
    """
    state = publication_status(survey=survey)
    publications = state.publications if state else 0
    key = f"chorus:release:v2:{survey.id}:{publications}:{survey.min_group_size}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    computed = _compute_release(survey=survey, state=state)
    cache.set(key, computed, _CACHE_SECONDS)
    return computed


# -- the stored release -----------------------------------------------------------------------
#
# Disclosure control runs in the publication task (`released_table_fields`), and reads decode
# what it stored: the tree; the report counts as a units x periods matrix (its size follows
# the org tree, not the number of reports; a hidden count is null), read by pages that show
# every unit; and each unit's report, signal and outcome counts as one JSON text per unit,
# of which a read decodes only the units it shows. A read of one subtree (the filtered
# aggregates) takes its report counts from those texts too, and never fetches the matrix.

# Stored releases of another format (released zeros, units with reports only, signal counts
# inside the table's row, the tree inside the matrix's column) are not read.
RELEASE_FORMAT = 4


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _parts_payloads(rel: Release) -> dict[str, str]:
    """Each unit's released report ("c", "t"), signal and outcome counts, as the JSON text
    stored for it; periods by their index in the tree's list."""
    index = {period: str(j) for j, period in enumerate(rel.periods)}
    out = {unit: {"c": {}, "t": rel.cell(unit, None), "s": {}, "o": {}, "st": {}, "ot": {}}
           for unit in rel.units}
    for (unit, period), value in rel.reports.counts.items():
        if period is not None:
            out[unit]["c"][index[period]] = value
    for parts, cells_key, total_key in ((rel.signals, "s", "st"), (rel.outcomes, "o", "ot")):
        for code, part in parts.items():
            for (unit, period), value in part.counts.items():
                if period is None:
                    out[unit][total_key][code] = value
                else:
                    out[unit][cells_key].setdefault(code, {})[index[period]] = value
    return {unit: _compact(payload) for unit, payload in out.items()}


def aggregates_document(rel: Release) -> dict:
    """The aggregates API's body, in `AggregatesOutput`'s shape."""
    cells = cells_from(rel)
    return {
        "min_group_size": rel.k,
        "cells": [{"unit": c.unit, "period": c.period, "reports": c.reports,
                   "suppressed": c.suppressed} for c in cells],
        "units": [{"unit": t.unit, "reports": t.reports, "suppressed": t.suppressed}
                  for t in unit_totals_from(rel)],
        "breakdowns": [{"unit": c.unit, "period": c.period, "signals": c.signals,
                        "outcomes": c.outcomes} for c in cells if c.signals or c.outcomes],
    }


def membership_fields(*, survey: Survey, previous: dict | None) -> dict:
    """What the dashboard states about who could report, as of a publication: for a
    verified survey its domains and the addresses verified, released only as the lower
    edge of their band of k (`disclosure.lower_band`), never lower than `previous`
    stated (the rows counted are destroyed when the survey closes); for an invite-only
    survey only that codes admitted the reports; {} for a link survey."""
    if not survey.needs_token:
        return {}
    fields = {"access": survey.access}
    if survey.access == Survey.Access.VERIFIED:
        stated = (previous or {}).get("addresses_at_least", 0)
        fields["domains"] = list(survey.email_domains)
        fields["addresses_at_least"] = max(stated, disclosure.lower_band(
            survey_selectors.tokens_bought_count(survey=survey), survey.min_group_size))
    return fields


def released_table_fields(*, survey: Survey, state: AggregationState) -> dict:
    """Run disclosure control over the published cells; the fields of a `ReleasedTable`."""
    rel = _compute_release(survey=survey, state=state)
    previous = (ReleasedTable.objects.filter(survey=survey)
                .values_list("membership", flat=True).first())
    units = rel.units
    position = {unit: i for i, unit in enumerate(units)}
    cells = [[rel.cell(unit, period) for period in rel.periods] for unit in units]
    return {
        "publications": state.publications,
        "min_group_size": rel.k,
        "published_at": state.published_at,
        "tree": {
            "format": RELEASE_FORMAT, "periods": list(rel.periods), "units": units,
            "parents": [-1 if rel.parents[unit] is None else position[rel.parents[unit]]
                        for unit in units],
        },
        "release": {"cells": cells, "totals": [rel.cell(unit, None) for unit in units]},
        "parts": _parts_payloads(rel),
        "aggregates": _compact(aggregates_document(rel)),
        "comments": comments.comments_document(comments.comment_sets_compute(
            survey=survey, state=state, cell=rel.cell, tree=rel.children)),
        "membership": membership_fields(survey=survey, previous=previous),
    }


def _decode(*, k: int, published_at, publications: int, tree: dict, release: dict | None,
            parts: dict[str, str], membership: dict) -> Release:
    """The Release stored as `tree`, `release` (the count matrix) and `parts` (per unit).
    Without `release`, report counts come from `parts`, for the units it holds."""
    periods = tuple(tree["periods"])
    units = tree["units"]
    parents = {unit: (None if p < 0 else units[p])
               for unit, p in zip(units, tree["parents"], strict=True)}
    counts: dict[disclosure.Key, int] = {}
    if release is not None:
        for unit, row, total in zip(units, release["cells"], release["totals"], strict=True):
            for period, value in zip(periods, row, strict=True):
                if value is not None:
                    counts[(unit, period)] = value
            if total is not None:
                counts[(unit, None)] = total
    signals: dict[str, dict] = {code: {} for code in catalog.SIGNAL_CODES}
    outcomes: dict[str, dict] = {code: {} for code in catalog.OUTCOME_CODES}
    for unit, text in parts.items():
        if text is None:
            continue
        payload = json.loads(text)
        if release is None:
            counts.update({(unit, periods[int(j)]): value for j, value in payload["c"].items()})
            if payload["t"] is not None:
                counts[(unit, None)] = payload["t"]
        for target, cells_key, total_key in ((signals, "s", "st"), (outcomes, "o", "ot")):
            for code, values in payload[cells_key].items():
                target.setdefault(code, {}).update(
                    {(unit, periods[int(j)]): value for j, value in values.items()})
            for code, value in payload[total_key].items():
                target.setdefault(code, {})[(unit, None)] = value
    children: dict[str | None, list[str]] = {}
    for unit in units:
        children.setdefault(parents[unit], []).append(unit)
    # Readers use the released counts only; what is hidden is everything else.
    return Release(
        k=k, parents=parents, periods=periods,
        reports=disclosure.Released(k=k, counts=counts),
        signals={code: disclosure.Released(k=k, counts=c) for code, c in signals.items()},
        outcomes={code: disclosure.Released(k=k, counts=c) for code, c in outcomes.items()},
        published_at=published_at, publications=publications,
        children=children, membership=membership,
    )


def _stored(survey: Survey, *fields: str) -> dict | None:
    """The survey's stored release, when it was computed for the survey's current k and in
    this format."""
    row = (ReleasedTable.objects.filter(survey=survey, min_group_size=survey.min_group_size)
           .values("publications", "published_at", "membership", *fields,
                   release_format=KeyTextTransform("format", "tree")).first())
    if row is None or str(row["release_format"]) != str(RELEASE_FORMAT):
        return None
    return row


def _release_of(survey: Survey, *,
                part_units: Callable[[list[str], list[str]], Iterable[str]] | None,
                only_part_units: bool = False) -> Release:
    """The released table from the stored row.

    With ``part_units`` None every unit's signal and outcome counts are decoded; else only
    those of the units it picks given (units, roots), fetched by one more query. With
    ``only_part_units`` the report counts too are those units' alone, and the count matrix
    is not fetched.
    """
    row = _stored(survey, "tree", *(() if only_part_units else ("release",)))
    if row is None:
        # Published before releases were stored, or k changed since the last publication.
        computed = release(survey=survey)
        stated = (ReleasedTable.objects.filter(survey=survey)
                  .values_list("membership", flat=True).first())
        return dataclasses.replace(computed, membership=stated or {})
    rows = ReleasedPart.objects.filter(survey=survey)
    if part_units is not None:
        units = row["tree"]["units"]
        roots = [u for u, p in zip(units, row["tree"]["parents"], strict=True) if p < 0]
        wanted = sorted(set(part_units(units, roots)) & set(units))
        rows = rows.filter(unit__in=wanted) if wanted else rows.none()
    parts = dict(rows.values_list("unit", "parts"))
    return _decode(k=survey.min_group_size, published_at=row["published_at"],
                   publications=row["publications"], tree=row["tree"],
                   release=None if only_part_units else row["release"], parts=parts,
                   membership=row["membership"])


def aggregates_json(*, survey: Survey, unit: str | None = None, start: dt.date | None = None,
                    end: dt.date | None = None) -> str:
    """The aggregates API's body as JSON text, as stored at the last publication.

    With a filter, the released body is narrowed to ``unit`` and its descendants and to the
    periods starting from ``start`` to ``end`` (inclusive). Only released rows are dropped:
    disclosure control ran over the whole table, and running it again over a subset would
    release a different (and differenceable) set of counts. Raises `UnknownUnit` when
    ``unit`` is not in the tree.
    """
    if unit is not None:
        # Only the subtree's rows, decoded from its units' stored counts alone: the read
        # follows the answer, not the tree.
        prefix = unit + "/"

        def in_subtree(path: str) -> bool:
            return path == unit or path.startswith(prefix)

        rel = _release_of(survey, part_units=lambda units, roots: filter(in_subtree, units),
                          only_part_units=True)
        if unit not in rel.parents:
            raise UnknownUnit(unit)
        subtree = dataclasses.replace(
            rel, parents={path: up for path, up in rel.parents.items() if in_subtree(path)})
        return _compact(aggregates_filter(aggregates_document(subtree), unit=None,
                                          start=start, end=end))
    row = _stored(survey, "aggregates")
    if row is not None and row["aggregates"]:
        text = row["aggregates"]
    else:
        text = _compact(aggregates_document(release(survey=survey)))
    if start is None and end is None:
        return text
    return _compact(aggregates_filter(json.loads(text), unit=None, start=start, end=end))


class UnknownUnit(LookupError):
    """A filter names a unit that is not in the survey's tree."""


def aggregates_filter(document: dict, *, unit: str | None, start: dt.date | None,
                      end: dt.date | None) -> dict:
    """The rows of a released aggregates body in ``unit``'s subtree and the period range;
    unit totals are over every period, so only the unit filter narrows them."""
    if unit is not None and not any(t["unit"] == unit for t in document["units"]):
        raise UnknownUnit(unit)
    prefix = None if unit is None else unit + "/"
    first = start.isoformat() if start else None
    last = end.isoformat() if end else None

    def in_subtree(path: str) -> bool:
        return prefix is None or path == unit or path.startswith(prefix)

    def in_range(period: str) -> bool:
        return (first is None or period >= first) and (last is None or period <= last)

    return {
        "min_group_size": document["min_group_size"],
        "cells": [c for c in document["cells"] if in_subtree(c["unit"]) and in_range(c["period"])],
        "units": [t for t in document["units"] if in_subtree(t["unit"])],
        "breakdowns": [b for b in document["breakdowns"]
                       if in_subtree(b["unit"]) and in_range(b["period"])],
    }


# -- the API's cells --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasedCell:
    unit: str
    period: str
    reports: int | None
    signals: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def suppressed(self) -> bool:
        return self.reports is None


@dataclass(frozen=True)
class ReleasedTotal:
    unit: str
    reports: int | None

    @property
    def suppressed(self) -> bool:
        return self.reports is None


def _parts_at(parts: dict[str, disclosure.Released], unit: str, period: str | None) -> dict:
    return {code: value for code, part in parts.items()
            if (value := part.counts.get((unit, period))) is not None}


def _parts_by_key(parts: dict[str, disclosure.Released]) -> dict[disclosure.Key, dict]:
    out: dict[disclosure.Key, dict] = {}
    for code, part in parts.items():
        for key, value in part.counts.items():
            out.setdefault(key, {})[code] = value
    return out


def cells_from(rel: Release) -> list[ReleasedCell]:
    """Every unit of the tree in every period: a hidden count, 0 included, is listed as
    withheld, so which cells are listed says nothing."""
    signals, outcomes = _parts_by_key(rel.signals), _parts_by_key(rel.outcomes)
    counts = rel.reports.counts
    return [
        ReleasedCell(unit=unit, period=period, reports=counts.get((unit, period)),
                     signals=signals.get((unit, period), {}),
                     outcomes=outcomes.get((unit, period), {}))
        for unit in rel.units for period in rel.periods
    ]


def unit_totals_from(rel: Release) -> list[ReleasedTotal]:
    return [ReleasedTotal(unit=unit, reports=rel.cell(unit, None)) for unit in rel.units]


# -- what the dashboard shows -----------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    reports: int | None
    reports_at_least: int
    units_total: int
    first_period: str | None
    last_period: str | None
    published_at: dt.datetime | None
    next_publication_at: dt.datetime | None

    @property
    def first_date(self) -> dt.date | None:
        return dt.date.fromisoformat(self.first_period) if self.first_period else None

    @property
    def last_date(self) -> dt.date | None:
        return dt.date.fromisoformat(self.last_period) if self.last_period else None


@dataclass(frozen=True)
class Bar:
    period: str
    reports: int | None

    @property
    def suppressed(self) -> bool:
        return self.reports is None

    @property
    def date(self) -> dt.date:
        return dt.date.fromisoformat(self.period)


@dataclass(frozen=True)
class Timeline:
    unit: str | None  # None: all units
    bars: list[Bar]
    total: int | None


@dataclass(frozen=True)
class HeatNode:
    unit: str
    name: str
    depth: int
    cells: list[Bar]
    total: int | None
    children: list[HeatNode]
    more: bool = False  # has sub-units that are not drawn


@dataclass(frozen=True)
class Share:
    code: str
    label: str
    count: int
    percent: int


@dataclass(frozen=True)
class Breakdown:
    unit: str
    periods: tuple[str, ...]
    reports: int
    signals: list[Share]
    outcomes: list[Share]
    hidden_signals: int

    @property
    def first_date(self) -> dt.date:
        return dt.date.fromisoformat(self.periods[0])

    @property
    def last_date(self) -> dt.date:
        return dt.date.fromisoformat(self.periods[-1])


@dataclass(frozen=True)
class Dashboard:
    survey: Survey
    k: int
    periods: tuple[str, ...]
    overview: Overview
    timeline: Timeline
    heatmap: list[HeatNode]
    breakdown: Breakdown | None
    clusters: list[ReleasedCluster]
    units: list[str]
    selected_unit: str | None
    table_rows: list[tuple[str, list[Bar], int | None]]
    published: bool = True  # any period published at all
    membership: dict = field(default_factory=dict)
    detectable: list[DetectableSize] = field(default_factory=list)

    @property
    def date_format(self) -> str:
        return "j M Y" if self.survey.period == Survey.Period.WEEK else "M Y"

    @property
    def period_dates(self) -> list[dt.date]:
        return [dt.date.fromisoformat(period) for period in self.periods]



def overview_from(rel: Release) -> Overview:
    shown_root_cells = [value for (unit, period), value in rel.reports.counts.items()
                        if period is not None and rel.parents.get(unit) is None]
    return Overview(
        reports=rel.overall(None) if rel.roots else 0,
        reports_at_least=sum(shown_root_cells),
        units_total=len(rel.parents),
        first_period=rel.periods[0] if rel.periods else None,
        last_period=rel.periods[-1] if rel.periods else None,
        published_at=rel.published_at,
        next_publication_at=slots.next_publication() if rel.published_at else None,
    )


def timeline_from(rel: Release, *, unit: str | None, periods: tuple[str, ...]) -> Timeline:
    if unit is None:
        bars = [Bar(period, rel.overall(period)) for period in periods]
    else:
        bars = [Bar(period, rel.cell(unit, period)) for period in periods]
    return Timeline(unit=unit, bars=bars, total=_sum_all(bar.reports for bar in bars))


# Below this depth a unit's sub-units are drawn only on the way to the selected unit, so a
# large organisation's page stays small; any unit opens on its own with ?unit=.
OPEN_DEPTH = 2


def heatmap_from(rel: Release, *, periods: tuple[str, ...],
                 selected: str | None) -> list[HeatNode]:
    on_path = set()
    while selected is not None:
        on_path.add(selected)
        selected = rel.parents.get(selected)

    def node(unit: str, depth: int) -> HeatNode:
        cells = [Bar(period, rel.cell(unit, period)) for period in periods]
        kids = rel.children.get(unit, [])
        shown = depth < OPEN_DEPTH or unit in on_path
        return HeatNode(unit=unit, name=unit.rsplit("/", 1)[-1], depth=depth, cells=cells,
                        total=_sum_all(cell.reports for cell in cells),
                        children=[node(child, depth + 1) for child in kids] if shown else [],
                        more=bool(kids) and not shown)

    return [node(root, 0) for root in rel.roots]


def _preorder(nodes: list[HeatNode]) -> list[HeatNode]:
    out: list[HeatNode] = []
    stack = list(reversed(nodes))
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(current.children))
    return out


_SIGNAL_LABELS = {entry.code: str(entry.label) for entry in catalog.SIGNALS}
_OUTCOME_LABELS = {entry.code: str(entry.label) for entry in catalog.OUTCOMES}


def breakdown_from(rel: Release, *, unit: str, periods: tuple[str, ...]) -> Breakdown | None:
    """Signals and outcomes for a unit over a window, when its report count is released.

    Falls back from the whole window to its latest single period whose count (and, if any
    period has one, a signal count) is released.
    """
    candidates = [periods] + [(period,) for period in reversed(periods)]
    usable = [(window, total) for window in candidates if (total := rel.window(unit, window))]
    if not usable:
        return None
    # Prefer a window where some signal count can be shown at all.
    window, total = next(
        ((window, total) for window, total in usable
         if any(rel.part_window(rel.signals[code], unit, window)
                for code in catalog.SIGNAL_CODES)),
        usable[0])

    def shares(parts, labels, codes) -> list[Share]:
        out = []
        for code in codes:
            count = rel.part_window(parts[code], unit, window)
            if count:
                out.append(Share(code, labels[code], count, round(100 * count / total)))
        return sorted(out, key=lambda share: -share.count)

    signals = shares(rel.signals, _SIGNAL_LABELS, catalog.SIGNAL_CODES)
    hidden = sum(1 for code in catalog.SIGNAL_CODES
                 if rel.part_window(rel.signals[code], unit, window) is None)
    return Breakdown(unit=unit, periods=window, reports=total, signals=signals,
                     outcomes=shares(rel.outcomes, _OUTCOME_LABELS, catalog.OUTCOME_CODES),
                     hidden_signals=hidden)


def period_window(rel: Release, *, start: dt.date | None, end: dt.date | None) -> tuple[str, ...]:
    return tuple(period for period in rel.periods
                 if (start is None or period >= start.isoformat())
                 and (end is None or period <= end.isoformat()))


# -- what a detection run releases -----------------------------------------------------------
#
# A detection run scans the reports themselves, so everything it knows about a cut (its
# observed and expected counts, the ratio, the LLR, signal shares against the rest) is exact
# and reaches into hidden cells. None of that leaves the server. `cluster_release` is the one
# step between a stored cluster and the page, the API, the export and the sentences: it keeps
# the cut's identity (model, branch, window) and a p-value band, and takes every number from
# the released table, as a sum of released figures or a function of such sums.

# Bands a released p-value is given in, as (upper bound, text); the last is the level a
# cluster must reach to be released at all.
P_VALUE_BANDS = tuple((bound, f"at most {bound:g}")
                      for bound in (0.001, 0.01, detection.SIGNIFICANCE_LEVEL))


# A plain verdict for each band, read before any number: only clusters at the significance
# level or below are findings, so none of them "could easily be chance".
P_VALUE_VERDICTS = {
    P_VALUE_BANDS[0][1]: gettext_lazy("Very unlikely to be chance"),
    P_VALUE_BANDS[1][1]: gettext_lazy("Unlikely to be chance"),
    P_VALUE_BANDS[2][1]: gettext_lazy("Not likely to be chance, though chance alone would "
                                      "do this in up to one survey in twenty"),
}


def p_value_band(p_value: float) -> str | None:
    """The band of a (Bonferroni-adjusted) p-value; None above the significance level."""
    for bound, text in P_VALUE_BANDS:
        if p_value <= bound:
            return text
    return None


@dataclass(frozen=True)
class ClusterShare:
    """A signal or outcome among a released cluster's reports, from released cells only."""

    code: str
    label: str
    count: int
    percent: int
    baseline_percent: int | None  # among every report outside the cut
    lift: float | None  # share / baseline share, one decimal


@dataclass(frozen=True)
class ReleasedCluster:
    model: str
    scope: str
    unit: str
    start: dt.date  # first day of the first period
    end: dt.date  # first day of the last period
    last_day: dt.date
    reports: int | None  # None: shown without any number
    ratio: float | None
    p_value: str
    signals: list[ClusterShare]
    attrition_signature: bool
    summary: str
    sentence: str

    @property
    def verdict(self) -> str:
        return str(P_VALUE_VERDICTS[self.p_value])

    @property
    def top_signal(self) -> ClusterShare | None:
        shown = [s for s in self.signals if s.code in catalog.SIGNAL_CODES]
        return max(shown, key=lambda s: (s.count, -catalog.SIGNAL_CODES.index(s.code)),
                   default=None)


def _row_total(rel: Release, unit: str) -> int | None:
    total = rel.cell(unit, None)
    return total if total is not None else rel.window(unit, rel.periods)


def _company(rel: Release, periods: tuple[str, ...]) -> int | None:
    return _sum_all(rel.overall(period) for period in periods)


def _everyone(rel: Release) -> int | None:
    total = rel.overall(None)
    return total if total is not None else _company(rel, rel.periods)


def _part_sum(rel: Release, released: disclosure.Released, unit: str,
              periods: tuple[str, ...]) -> int | None:
    """A signal's or outcome's count over periods, when released in each; a period whose
    report count is a released 0 holds none of it."""
    return _sum_all(0 if rel.cell(unit, period) == 0 else released.counts.get((unit, period))
                    for period in periods)


def _part_total(rel: Release, released: disclosure.Released, unit: str) -> int | None:
    total = released.counts.get((unit, None))
    return total if total is not None else _part_sum(rel, released, unit, rel.periods)


def released_ratio(rel: Release, *, unit: str, window: tuple[str, ...]) -> float | None:
    """How many more of the branch's reports fall in the window than the rest of the
    organisation's rate predicts: ``c (C - n) / (n (C_W - c))`` with ``c`` the branch over the
    window, ``n`` the branch over every period, ``C_W`` everyone over the window and ``C``
    everyone. Only when all four are released (so the ratio is a function of released
    figures), and ``n``, ``C - n`` and ``C_W - c`` are positive; one decimal."""
    inside = rel.window(unit, window)
    branch = _row_total(rel, unit)
    everyone_window = _company(rel, window)
    everyone = _everyone(rel)
    if None in (inside, branch, everyone_window, everyone):
        return None
    rest_window, rest = everyone_window - inside, everyone - branch
    if branch <= 0 or rest <= 0 or rest_window <= 0:
        return None
    return round(inside * rest / (branch * rest_window), 1)


def _cluster_shares(rel: Release, *, unit: str, window: tuple[str, ...],
                    reports: int) -> list[ClusterShare]:
    everyone = _everyone(rel)
    out = []
    for parts, labels, codes in ((rel.signals, _SIGNAL_LABELS, catalog.SIGNAL_CODES),
                                 (rel.outcomes, _OUTCOME_LABELS, catalog.OUTCOME_CODES)):
        for code in codes:
            count = _part_sum(rel, parts[code], unit, window)
            if not count:
                continue
            share = count / reports
            overall = _sum_all(_part_total(rel, parts[code], root) for root in rel.roots)
            baseline = lift = None
            if overall is not None and everyone is not None and everyone > reports:
                baseline = (overall - count) / (everyone - reports)
                lift = round(share / baseline, 1) if baseline > 0 else None
            out.append(ClusterShare(
                code=code, label=labels[code], count=count, percent=round(100 * share),
                baseline_percent=None if baseline is None else round(100 * baseline),
                lift=lift))
    return out


def released_floor(rel: Release, *, unit: str, period: str) -> int:
    """The least count of ``unit`` in ``period`` that the released cells alone imply: the
    cell itself when released, else the sum of the released cells below it reached through
    hidden ones (every count filed below is at least 0)."""
    value = rel.cell(unit, period)
    if value is not None:
        return value
    return sum(released_floor(rel, unit=child, period=period)
               for child in rel.children.get(unit, []))


def cluster_release(rel: Release, cluster: dict, *, period: str) -> ReleasedCluster | None:
    """The disclosure step for one stored cluster: what may be shown of it, or None.

    A cluster is released only when its adjusted p-value is at most the significance level.
    Its count is the sum of the released cells of its branch over its window, when all are
    released; its signal counts are sums of released signal cells, its ratio and signal
    baselines functions of released figures (`released_ratio`), its p-value a band. When
    a cell of the window is hidden the cluster is shown without any number, and only if the
    released cells already imply that the cut holds at least k reports
    (`released_floor`), since a cluster's existence says so; otherwise not at all. The stored
    cluster's own counts, expectation, ratio, LLR and shares are never read.
    """
    band = p_value_band(cluster["p_value"])
    unit = cluster["unit"]
    if band is None or unit not in rel.parents:
        return None
    start, end = cluster["start"], cluster["end"]
    window = tuple(p for p in rel.periods if start.isoformat() <= p <= end.isoformat())
    if not window:
        return None
    reports = rel.window(unit, window)
    if reports is None and sum(released_floor(rel, unit=unit, period=p)
                               for p in window) < rel.k:
        return None
    if reports == 0:
        return None
    shares = [] if reports is None else _cluster_shares(rel, unit=unit, window=window,
                                                        reports=reports)
    ratio = None if reports is None else released_ratio(rel, unit=unit, window=window)
    marked = reports is not None and phrases.signature_marked(
        {s.code: s.count / reports for s in shares})
    summary = "" if reports is None else phrases.cluster_summary(
        shares=[phrases.SignalShare(s.code, s.count, s.count / reports,
                                      None if s.baseline_percent is None else
                                      s.baseline_percent / 100, s.lift) for s in shares],
        signature_dominant=marked)
    last_day = _period_end(end, period)
    released = ReleasedCluster(
        model=cluster["model"], scope="company" if rel.parents[unit] is None else "unit",
        unit=unit, start=start, end=end, last_day=last_day, reports=reports, ratio=ratio,
        p_value=band, signals=shares, attrition_signature=marked, summary=summary,
        sentence="")
    return dataclasses.replace(released, sentence=cluster_sentence(released))


def clusters_from(rel: Release, *, survey: Survey,
                  clusters: list[dict] | None = None) -> list[ReleasedCluster]:
    """The latest run's clusters as released: significant ones with a released count, through
    `cluster_release`, in p-value band order, then by ratio, unit and window (never by the
    run's own ranking, which orders cuts by their exact LLR)."""
    if clusters is None:
        clusters = clusters_latest(survey=survey)["clusters"]
    released = [card for cluster in clusters
                if (card := cluster_release(rel, cluster, period=survey.period)) is not None]
    bands = [text for _, text in P_VALUE_BANDS]
    return sorted(released, key=lambda c: (bands.index(c.p_value), -(c.ratio or 0.0), c.unit,
                                           c.start, c.end, c.model))


def _period_end(start: dt.date, period: str) -> dt.date:
    return next_period_start(period=period, start=start) - dt.timedelta(days=1)


def _day_span(first: dt.date, last: dt.date) -> str:
    """"3–16 Mar 2026", month names in the active language."""
    if first == last:
        return date_format(first, "j M Y")
    if first.year == last.year and first.month == last.month:
        return _("%(first)s–%(last)s") % {"first": date_format(first, "j"),
                                           "last": date_format(last, "j M Y")}
    first_format = "j M" if first.year == last.year else "j M Y"
    return _("%(first)s–%(last)s") % {"first": date_format(first, first_format),
                                       "last": date_format(last, "j M Y")}


def _p_text(band: str) -> str:
    bound = float(band.removeprefix("at most "))
    return _("p ≤ %(bound)s") % {"bound": number_format(bound)}


def cluster_sentence(cluster: ReleasedCluster) -> str:
    """The card's sentence: every number in it is a figure of the released cluster."""
    count = (ngettext("%(n)d report", "%(n)d reports", cluster.reports) % {"n": cluster.reports}
             if cluster.reports is not None
             else _("a count that stays hidden to protect small groups"))
    sentence = _("%(unit)s, %(when)s: %(count)s") % {
        "unit": cluster.unit, "when": _day_span(cluster.start, cluster.last_day), "count": count}
    if cluster.ratio is not None:
        sentence = _("%(sentence)s, %(ratio)s× what the rest of the organisation would "
                     "predict") % {"sentence": sentence,
                                   "ratio": phrases.ratio_text(cluster.ratio)}
    sentence = _("%(sentence)s (%(p)s)") % {"sentence": sentence,
                                            "p": _p_text(cluster.p_value)}
    top = cluster.top_signal
    if top is not None:
        sentence = _("%(sentence)s; %(claim)s") % {
            "sentence": sentence, "claim": phrases.signal_claim(top.code, top.percent)}
    return _("%(sentence)s.") % {"sentence": sentence}


# The unit sizes a minimum detectable relative risk is stated for: people when the tree
# carries headcounts, else a unit's share of the reports.
DETECTABLE_PEOPLE = (10, 25, 50, 100, 250)
DETECTABLE_SHARES = (0.05, 0.10, 0.20)


@dataclass(frozen=True)
class DetectableSize:
    """How large a drive seen in counts alone must be to be found `detectable.POWER` of the
    time: a rate `relative_risk` times the unit's usual one for `periods` periods (None:
    more than the grid's largest)."""

    people: int | None
    share: float | None
    relative_risk: float | None
    periods: int

    @property
    def label(self) -> str:
        if self.people is not None:
            return _("A unit of %(people)d people") % {"people": self.people}
        return _("A unit with %(share)s of the reports") % {
            "share": phrases.percent_text(round(100 * self.share))}

    @property
    def largest(self) -> float:
        return detectable.RELATIVE_RISKS[-1]


def detectable_sizes(rel: Release, *, survey: Survey, stored: dict | None
                     ) -> list[DetectableSize]:
    """The least relative risk a drive needs to be found, per unit size, from the run's
    critical value (`reports.detectable`) and released figures only: the all-units total of
    the released table. Nothing is stated while that total is hidden."""
    if not stored or stored.get("critical_llr") is None:
        return []
    total = rel.overall(None)
    if total is None:
        return []
    return list(_detectable_sizes(total=total, span=max(1, int(stored["periods"])),
                                  headcount=float(stored.get("headcount") or 0.0),
                                  critical=float(stored["critical_llr"]),
                                  k=survey.min_group_size))


# Pure in its arguments, which change only at a publication or a run, and a few
# milliseconds of Poisson tails each time: kept per process rather than paid on every read.
@functools.lru_cache(maxsize=1024)
def _detectable_sizes(*, total: int, span: int, headcount: float, critical: float,
                      k: int) -> tuple[DetectableSize, ...]:
    periods = min(detectable.DRIVE_PERIODS, span)
    if headcount > 0:
        sizes = [(people, None, people / headcount)
                 for people in DETECTABLE_PEOPLE if people <= headcount]
    else:
        sizes = [(None, share, share) for share in DETECTABLE_SHARES]
    return tuple(DetectableSize(people, share, detectable.minimum_detectable_relative_risk(
        unit_rate=total * fraction / span, company_rate=total / span, span=span,
        critical=critical, min_reports=k, periods=periods), periods)
        for people, share, fraction in sizes)


def detectable_fields(row: DetectableSize) -> dict:
    return {"people": row.people, "share": row.share, "relative_risk": row.relative_risk,
            "periods": row.periods}


def clusters_document(*, survey: Survey) -> dict:
    """The clusters API's body (`ClustersOutput`), the same for the organizer and the
    dashboard link."""
    latest = clusters_latest(survey=survey)
    clusters = latest["clusters"]
    run = latest["run"]
    if run is not None:
        # Named by its slot like every released time: an automatic run ends
        # seconds after a publication, and a finer time says no more than that.
        run = {**run, "finished": slots.slot_of(run["finished"])}
    if run is None:
        return {"run": None, "clusters": [], "detectable": []}
    significant = any(p_value_band(cluster["p_value"]) for cluster in clusters)
    wanted = {cluster["unit"] for cluster in clusters} if significant else set()
    # With no cluster to release, the detectable sizes need the roots' totals alone: the
    # units x periods matrix is not fetched.
    rel = _release_of(survey, part_units=lambda units, roots: wanted | set(roots),
                      only_part_units=not significant)
    return {"run": run,
            "clusters": [cluster_fields(c) for c in clusters_from(rel, survey=survey,
                                                                  clusters=clusters)]
            if significant else [],
            "detectable": [detectable_fields(row) for row in detectable_sizes(
                rel, survey=survey, stored=latest["detectable"])]}


def cluster_fields(cluster: ReleasedCluster) -> dict:
    return {"model": cluster.model, "scope": cluster.scope, "unit": cluster.unit,
            "start": cluster.start, "end": cluster.end, "last_day": cluster.last_day,
            "reports": cluster.reports,
            "ratio": cluster.ratio, "p_value": cluster.p_value,
            "signals": [{"code": s.code, "count": s.count, "percent": s.percent,
                         "baseline_percent": s.baseline_percent, "lift": s.lift}
                        for s in cluster.signals],
            "attrition_signature": cluster.attrition_signature, "summary": cluster.summary,
            "verdict": cluster.verdict, "sentence": cluster.sentence}


def dashboard(*, survey: Survey, unit: str | None = None, start: dt.date | None = None,
              end: dt.date | None = None) -> Dashboard:
    """Everything the dashboard page shows, from one release.

    Decodes the signal and outcome counts of the units the page shows them for only.
    """
    latest = clusters_latest(survey=survey)
    clusters = latest["clusters"]

    def part_units(units: list[str], roots: list[str]) -> set[str]:
        focus = unit if unit in units else (roots[0] if len(roots) == 1 else None)
        return {focus, *roots, *(cluster["unit"] for cluster in clusters)} - {None}

    rel = _release_of(survey, part_units=part_units)
    if unit is not None and unit not in rel.parents:
        unit = None
    periods = period_window(rel, start=start, end=end)
    focus = unit or (rel.roots[0] if len(rel.roots) == 1 else None)
    heat = heatmap_from(rel, periods=periods, selected=unit)
    table_rows = [(node.unit, node.cells, node.total) for node in _preorder(heat)]
    return Dashboard(
        survey=survey, k=rel.k, periods=periods, overview=overview_from(rel),
        timeline=timeline_from(rel, unit=unit, periods=periods),
        heatmap=heat,
        breakdown=breakdown_from(rel, unit=focus, periods=periods) if focus else None,
        clusters=clusters_from(rel, survey=survey, clusters=clusters), units=rel.units,
        selected_unit=unit,
        table_rows=table_rows, published=bool(rel.periods), membership=rel.membership,
        detectable=detectable_sizes(rel, survey=survey, stored=latest["detectable"]),
    )


def export_document(*, survey: Survey) -> dict:
    """What the dashboard shows, as plain data: the API export and the JSON download."""
    rel = _release_of(survey, part_units=None)
    latest = clusters_latest(survey=survey)
    overview = overview_from(rel)
    signals, outcomes = _parts_by_key(rel.signals), _parts_by_key(rel.outcomes)
    return {
        "survey": survey.title,
        "min_group_size": rel.k,
        "published_at": rel.published_at.isoformat() if rel.published_at else None,
        "next_publication_at": (overview.next_publication_at.isoformat()
                                if overview.next_publication_at else None),
        "overview": {"reports": overview.reports, "reports_at_least": overview.reports_at_least,
                     "units": overview.units_total,
                     "first_period": overview.first_period, "last_period": overview.last_period},
        "periods": list(rel.periods),
        "timeline": [{"period": bar.period, "reports": bar.reports}
                     for bar in timeline_from(rel, unit=None, periods=rel.periods).bars],
        "cells": [{"unit": cell.unit, "period": cell.period, "reports": cell.reports,
                   "suppressed": cell.suppressed, "signals": cell.signals,
                   "outcomes": cell.outcomes} for cell in cells_from(rel)],
        "units": [{"unit": total.unit, "reports": total.reports, "suppressed": total.suppressed,
                   "signals": signals.get((total.unit, None), {}),
                   "outcomes": outcomes.get((total.unit, None), {})}
                  for total in unit_totals_from(rel)],
        "clusters": [{**cluster_fields(card), "start": card.start.isoformat(),
                      "end": card.end.isoformat(), "last_day": card.last_day.isoformat()}
                     for card in clusters_from(rel, survey=survey, clusters=latest["clusters"])],
        "detectable": [detectable_fields(row) for row in detectable_sizes(
            rel, survey=survey, stored=latest["detectable"])],
        "comments": comments.comments_document(comments.comment_sets(survey=survey)),
        "membership": rel.membership,
    }


def latest_run(*, survey: Survey) -> DetectionRun | None:
    """The latest successful run made with the survey's current k or a larger
    one: after k is raised, figures cleared under the old k are not released."""
    return (DetectionRun.objects.filter(survey=survey, finished__isnull=False,
                                        job__status=Job.Status.SUCCEEDED,
                                        parameters__min_reports__gte=survey.min_group_size)
            .defer("inputs", "observed").order_by("-finished").first())


def clusters_latest(*, survey: Survey) -> dict:
    """The latest completed run and its stored clusters, best first, with their exact
    figures: for the server only (the `simulate` command, and `cluster_release`, which is
    the only way a cluster reaches a page, the API or an export)."""
    run = latest_run(survey=survey)
    if run is None:
        return {"run": None, "clusters": [], "detectable": None}
    clusters = run.clusters.order_by("rank")
    return {
        "run": {"id": run.job_id, "finished": run.finished, "replicas": run.replicas,
                "seed": run.seed},
        "detectable": run.detectable,
        "clusters": [
            {"model": c.model, "scope": c.scope, "unit": c.unit_path, "start": c.start,
             "end": c.end, "observed": c.observed, "expected": c.expected,
             "relative_risk": c.relative_risk, "llr": c.llr, "p_value": c.p_value,
             "signals": c.signals,
             "attrition_signature": c.signature_dominant, "summary": c.summary}
            for c in clusters],
    }
