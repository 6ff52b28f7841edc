"""Releases respondents' comments, only in sets of at least k from one released cell.

A comment is never shown alone or with any attribute of its report (no time, signals or
receipt). Comments of published reports are gathered per unit subtree and period; a unit
whose own comments and every child's subtree each reach k releases them as separate sets,
otherwise its whole subtree is one set. So a set is always everything under one unit for
one period (or for all periods), never a remainder left after other sets, and no
difference of sets points to a smaller group. A root that falls short of k in some period
pools all its periods into one set; one that falls short over all periods shows nothing.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass

from reports.models import AggregationState, PublishedCell, ReleasedTable
from surveys.models import OrgUnit, Report, Survey


@dataclass(frozen=True)
class CommentSet:
    """At least k comments from one unit subtree; `period` None means all periods."""

    unit: str
    period: str | None
    comments: tuple[str, ...]


def _parent(path: str) -> str | None:
    return path.rpartition("/")[0] or None


def _published_comments(survey: Survey, state: AggregationState) -> dict[tuple[str, str], list]:
    published_cells = set(PublishedCell.objects.filter(survey=survey)
                          .values_list("unit__path", "period_start").order_by())
    rows = (Report.objects.filter(survey=survey, received_week__lte=state.published_at.date())
            .exclude(comment="").values_list("unit__path", "period_start", "comment").order_by())
    found: dict[tuple[str, str], list] = defaultdict(list)
    for path, period_start, comment in rows:
        if (path, period_start) in published_cells:
            found[(path, period_start.isoformat())].append(comment)
    return found


def _subtree_sets(unit: str, own: dict[str, list[str]], children: dict[str | None, list[str]],
                  k: int) -> list[tuple[str, list[str]]] | None:
    """The sets of one unit's subtree in one period, or None when it has fewer than k."""
    child_sets = [(child, _subtree_sets(child, own, children, k))
                  for child in children.get(unit, [])]
    mine = own.get(unit, [])
    everything = list(mine)
    for child, _sets in child_sets:
        everything += _gather(child, own, children)
    if not everything:
        return []
    if len(everything) < k:
        return None
    split_ok = (not mine or len(mine) >= k) and all(sets is not None for _c, sets in child_sets)
    if not split_ok:
        return [(unit, everything)]
    out = [(unit, list(mine))] if mine else []
    for _child, sets in child_sets:
        out += sets
    return out


def _gather(unit: str, own: dict[str, list[str]], children: dict[str | None, list[str]]) -> list:
    found = list(own.get(unit, []))
    for child in children.get(unit, []):
        found += _gather(child, own, children)
    return found


def _shuffled(comments: list[str]) -> tuple[str, ...]:
    # Shuffled by the system's random source once per publication and stored, so a reload
    # shows the same order, a new publication a new one, and no order follows arrival.
    ordered = list(comments)
    secrets.SystemRandom().shuffle(ordered)
    return tuple(ordered)


def comment_sets(*, survey: Survey) -> list[CommentSet]:
    """The comment sets stored at the last publication; none when k changed since.

    Reads the released table only, never reports, like every dashboard read."""
    stored = (ReleasedTable.objects.filter(survey=survey, min_group_size=survey.min_group_size)
              .values_list("comments", flat=True).first())
    return [CommentSet(unit=item["unit"], period=item["period"],
                       comments=tuple(item["comments"])) for item in stored or []]


def comment_sets_compute(*, survey: Survey, state: AggregationState) -> list[CommentSet]:
    """The comment sets of a publication, each in its own random order: run by the
    publication, over the reports it published."""
    if state.published_at is None:
        return []
    k = survey.min_group_size
    found = _published_comments(survey, state)
    if not found:
        return []
    paths = set(OrgUnit.objects.filter(survey=survey).values_list("path", flat=True))
    paths |= {path for path, _period in found}
    children: dict[str | None, list[str]] = defaultdict(list)
    for path in sorted(paths):
        children[_parent(path)].append(path)
    by_period: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (path, period), comments in found.items():
        by_period[period][path] += comments
    raw: list[tuple[str, str | None, list[str]]] = []
    for root in children.get(None, []):
        per_period = {period: _subtree_sets(root, own, children, k)
                      for period, own in sorted(by_period.items())}
        if all(sets is not None for sets in per_period.values()):
            raw += [(unit, period, comments) for period, sets in per_period.items()
                    for unit, comments in sets]
            continue
        everything = [comment for own in by_period.values()
                      for comment in _gather(root, own, children)]
        if len(everything) >= k:
            raw.append((root, None, everything))
    return [CommentSet(unit=unit, period=period, comments=_shuffled(comments))
            for unit, period, comments in raw]


def comments_document(sets: list[CommentSet]) -> list[dict]:
    return [{"unit": item.unit, "period": item.period, "comments": list(item.comments)}
            for item in sets]


