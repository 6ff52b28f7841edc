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
from collections.abc import Callable
from dataclasses import dataclass

from reports.models import AggregationState, ReleasedTable
from surveys.models import Report, Survey

Cell = Callable[[str, str | None], int | None]


@dataclass(frozen=True)
class CommentSet:
    """At least k comments from one unit subtree; `period` None means all periods."""

    unit: str
    period: str | None
    comments: tuple[str, ...]


def _parent(path: str) -> str | None:
    return path.rpartition("/")[0] or None


def _published_comments(survey: Survey) -> dict[tuple[str, str], list[str]]:
    # surveys.Report holds exactly the reports publications have counted.
    rows = (Report.objects.filter(survey=survey).exclude(comment="")
            .values_list("unit__path", "period_start", "comment").order_by())
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path, period_start, comment in rows:
        found[(path, period_start.isoformat())].append(comment)
    return found


def _period_sets(own: dict[str, list[str]], k: int, period: str, cell: Cell,
                 tree: dict[str | None, list[str]]) -> dict[str, list | None]:
    """Each root's sets in one period as (unit, comments), or None when the root has fewer
    than k. Walks only the units with comments and their ancestors, children before
    parents and without recursion: an org tree may be deeper than the interpreter's stack.
    A subtree short of k, or whose count is withheld, leaves its comments to its parent.
    A set's size is a released figure: it is a lower bound on the count of its scope, so a
    set stands only over a released count, and a unit's own comments apart from its
    children only when every child's count is released too."""
    children: dict[str | None, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for path in own:
        while path is not None and path not in seen:
            seen.add(path)
            children[_parent(path)].append(path)
            path = _parent(path)
    postorder, stack = [], list(children[None])
    while stack:
        unit = stack.pop()
        postorder.append(unit)
        stack.extend(children[unit])
    sets: dict[str, list | None] = {}
    short: dict[str, list[str]] = {}
    for unit in reversed(postorder):
        mine, kids = own.get(unit, []), children[unit]
        kid_sets = [sets.pop(kid) for kid in kids]
        kid_short = [short.pop(kid, []) for kid in kids]
        pooled = [comment for found in kid_short for comment in found]
        released = [item for found in kid_sets if found for item in found]
        total = len(mine) + len(pooled) + sum(len(comments) for _u, comments in released)
        everything = [*mine, *pooled]
        everything += [comment for _u, comments in released for comment in comments]
        if total < k or cell(unit, period) is None:
            # A set's size bounds its scope's count from below: only over a released one.
            sets[unit], short[unit] = None, everything
        elif None in kid_sets or (mine and (len(mine) < k or any(
                cell(child, period) is None for child in tree.get(unit, [])))):
            # A set of the unit's own comments bounds what its children hold together, so
            # it stands apart only when every child's count is released.
            sets[unit] = [(unit, everything)]
        else:
            sets[unit] = ([(unit, list(mine))] if mine else []) + released
    return {root: sets[root] for root in children[None]}


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


def comment_sets_compute(*, survey: Survey, state: AggregationState, cell: Cell,
                         tree: dict[str | None, list[str]]) -> list[CommentSet]:
    """The comment sets of a publication, each in its own random order: run by the
    publication, over the reports it published. `cell(unit, period)` is the released count
    (None: withheld; period None: all periods) and `tree` the children of each unit."""
    if state.published_at is None:
        return []
    k = survey.min_group_size
    by_period: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for (path, period), comments in _published_comments(survey).items():
        by_period[period][path] = comments
    per_period = {period: _period_sets(own, k, period, cell, tree)
                  for period, own in sorted(by_period.items())}
    roots = sorted({root for sets in per_period.values() for root in sets})
    raw: list[tuple[str, str | None, list[str]]] = []
    for root in roots:
        root_sets = {period: sets[root] for period, sets in per_period.items() if root in sets}
        if None not in root_sets.values():
            raw += [(unit, period, comments) for period, found in root_sets.items()
                    for unit, comments in found]
            continue
        # Short of k in some period: the root's comments over all periods, or nothing.
        everything = [comment for own in by_period.values()
                      for path, comments in own.items()
                      if path == root or path.startswith(root + "/") for comment in comments]
        if len(everything) >= k and cell(root, None) is not None:
            raw.append((root, None, everything))
    return [CommentSet(unit=unit, period=period, comments=_shuffled(comments))
            for unit, period, comments in raw]


def comments_document(sets: list[CommentSet]) -> list[dict]:
    return [{"unit": item.unit, "period": item.period, "comments": list(item.comments)}
            for item in sets]


