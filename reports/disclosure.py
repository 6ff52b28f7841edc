"""Disclosure control for the counts Chorus releases.

Pure Python + numpy; no Django.  Everything here is deterministic: units are ordered by
their key, parts (signals, outcomes) by their name, and ties are broken on that order.

The attacker model
------------------
A report is filed at one unit and one period.  Write ``d(u, t) >= 0`` for the reports filed
*directly* at ``u`` (not at a descendant).  Every count we release is a sum of those:
``n(u, t)`` sums ``d`` over the subtree of ``u``; the unit total ``n(u, *)`` sums ``n(u, t)``
over the periods.  An attacker knows the tree (all of it: every unit is listed whether or not
anyone reported there), every released number, that every ``d >= 0``, and this rule.

The primary rule hides every count below ``k``, zero included: a released count is ``>= k``
and a hidden one reads "fewer than k" whatever its value, so hiding says nothing about
whether anyone reported.  A hidden count is thus in ``[0, k - 1]`` a priori (the *primary
interval*), and hidden says nothing more than ``>= 0``.  The guarantee: every hidden count
(cell, unit total, signal or outcome count) ranges, under every released figure, over an
interval at least as wide as ``[0, k - 1]`` (width ``>= k - 1``) or is unbounded; none is
pinned, 0 included.

Cells (``protect``)
-------------------
Per period, given the shown cells, the hidden cells fall into independent *regions*: those
whose nearest shown ancestor is ``A`` (or a hidden root's whole hidden part, unbounded).
``A``'s *frontier* is the shown cells below it reached through hidden cells only, and its
*remainder* ``R(A) = n(A) - sum(frontier)`` is the mass filed directly at ``A`` or at a
hidden unit in between.  A hidden ``h`` in the region with shown frontier sum ``F(h)`` holds
``F(h)`` plus whatever part of ``R(A)`` lies in its hidden subtree, and nothing else
constrains it: ``h`` ranges over exactly ``[F(h), F(h) + R(A)]`` (all of ``R(A)`` filed at
``A`` itself, or all of it directly at ``h``), every hidden cell of the region has width
``R(A)``, and the direct count at ``A`` ranges over ``[0, R(A)]``.  So the rule, for every
shown ``A``:

- if ``A`` has a hidden child (its region is not empty): ``R(A) >= k - 1``;
- else ``R(A)`` is the count filed directly at ``A``, released by subtraction: it is 0 or
  ``>= k``.

With no hidden cell in a region there is nothing to protect but the direct count; with one,
``R(A) = 0`` would pin each hidden cell to its frontier (a hidden 0 to exactly 0, the
"someone here reported" tell of a listed zero beside a hidden count), and ``R(A)`` below
``k - 1`` narrows every one of them below the primary interval.  The rule is taken over the
*frontier*, not the shown children: a parent of 20 with a hidden child of 12 whose shown
children sum to 10 and a shown child of 6 leaves the hidden child in ``[10, 14]``.  A hidden
root has no upper bound.  A direct count of 0 at a unit whose children are all shown is the
one exact zero an attacker derives; it says nobody filed at the unit itself, next to cells
that are all released.

It is enforced in one post-order pass per period: while ``A`` fails, hide the smallest
frontier cell ``w`` whose hiding widens the region (it adds ``R(w)``); failing that, one
that opens a frontier below it; with nothing left, hide ``A`` itself, which passes the
problem to its own nearest shown ancestor, processed later.

Unit totals.  A total over a row with hidden periods ties those periods together (the brief's
time rule alone can pin a hidden cell: see the tests).  Given the shown cells, each hidden
cell's range is exactly its region's interval above, and regions are independent, so a
released total ``n(u, *)`` whose regions no other released total reaches into is a 1-D
problem: ``u``'s hidden periods, each within ``[F_t, F_t + R_t]``, must sum to the total
minus the shown periods.  The total is released when that sum is ``>= k`` (it becomes
known, so it is a count like any other) and each of them still ranges over at least
``k - 1`` under it (``_total_widths``, exact); other cells of
those regions share the region's free mass with ``u``'s cell and lose no more range than it
does.  Units are taken in key order; a total whose regions are already taken, or that fails,
stays hidden.  A total over a fully shown row is released (a sum of released cells, so
``>= k``).

Breakdowns (``protect_breakdown``)
----------------------------------
Signals are not additive within a cell, but each signal's table ``s`` and its complement
``c = n - s`` (people who did not report it) are both non-negative additive tables.  Where
``s`` is hidden but ``n`` shown, ``s + c = n`` couples the two tables, and the per-table
remainder rule no longer bounds what an attacker learns.  So the cells where a signal is
hidden (among the released cells) are kept *upward closed*: hiding ``s(u)`` hides it at every
released ancestor of ``u`` too.  Then a released ``s(A)``'s frontier over the released cells
is all ``s``-released, ``s`` and ``c`` in ``A``'s region share the cells' regions, and the
cell rule applies to each table with the cells' hidden children: ``s(A) >= k`` (a signal
nobody in the cell reported is hidden like any count below ``k``), ``c(A)`` is 0 or
``>= k`` (``c`` is a subtraction, never a released count: "everybody in the cell reported
it" may stand), and ``R_s(A)``, ``R_c(A)`` pass as ``R(A)`` does above.  A hidden
``s(u)`` with ``n(u)`` shown ranges over exactly ``[F_s(u), n(u) - F_c(u)]`` (frontiers
over the cells where ``s`` is shown), whose width ``n(u) - F_n(u)`` must be ``>= k - 1``,
else the signal is withheld in ``u``'s whole subtree for that period (then the width is
``n(u) >= k``).
Outcomes partition a cell (with "no outcome"), so they are handled together: a set of
outcomes is released per (root tree, period), each passing as a table on its own, and the
remainder ``n - sum(released outcomes)`` passing as a table too (0 or ``>= k`` in shown
cells, like ``c``); the smallest released
outcome is dropped into the remainder until it does.  Breakdown totals are released only
over fully released rows, where they are sums of released cells.

Counts beside the table (``lower_band``)
-----------------------------------------
A verified survey states how many addresses were verified.  Each report spends one token and
an address buys one, so that count ``N`` bounds every sum of reports from above: released in
a band ``[L, L + k - 1]``, its upper edge would narrow a hidden count (seven reports shown in
one period with ``N`` in ``[5, 9]`` pins the hidden rest to ``[0, 2]``).  So only the lower
edge ``L = k * (N // k)`` is released, read "at least L": a lower bound on ``N`` bounds no
report count at all, since ``N`` may be as large as it likes above it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["Key", "Released", "Table", "lower_band", "protect", "protect_breakdown"]

Cell = tuple[str, str]
Key = tuple[str, str | None]  # (unit, period); period None is the unit's total over all periods


@dataclass(frozen=True)
class Table:
    """One additive measure (reports) over units x periods.

    ``parents`` maps every unit key to its parent key, or None for a root (a forest is fine).
    ``cells`` holds rolled-up counts ``n(u, t)`` (reports at ``u`` or any descendant);
    missing cells are 0.
    """

    parents: Mapping[str, str | None]
    periods: tuple[str, ...]
    cells: Mapping[Cell, int]


@dataclass(frozen=True)
class Released:
    """What may be published for one table.

    ``counts`` maps ``(unit, period)`` to a cell and ``(unit, None)`` to a unit total; every
    other count of ``units`` x ``periods`` (and their totals) is suppressed and listed in
    ``hidden``.  The per-root, per-period grand totals are the root units' cells.
    """

    k: int
    counts: Mapping[Key, int]
    units: tuple[str, ...] = ()
    periods: tuple[str, ...] = ()

    @cached_property
    def hidden(self) -> frozenset[Key]:
        keys = itertools.product(self.units, (*self.periods, None))
        return frozenset(key for key in keys if key not in self.counts)

    def shown(self, unit: str, period: str | None = None) -> bool:
        return (unit, period) in self.counts


class _Frame:
    """Units and periods as array indices, with the tree in the shapes the passes need."""

    def __init__(self, parents: Mapping[str, str | None], periods: tuple[str, ...]):
        self.units = sorted(parents)
        self.periods = tuple(periods)
        if len(set(self.periods)) != len(self.periods):
            raise ValueError("duplicate period")
        self.uidx = {u: i for i, u in enumerate(self.units)}
        self.tidx = {t: j for j, t in enumerate(self.periods)}
        n = len(self.units)
        self.parent = np.full(n, -1, dtype=np.int64)
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, u in enumerate(self.units):
            p = parents[u]
            if p is None:
                continue
            if p not in self.uidx:
                raise ValueError(f"unit {u!r} has unknown parent {p!r}")
            self.parent[i] = self.uidx[p]
            self.children[self.uidx[p]].append(i)
        self.depth = np.zeros(n, dtype=np.int64)
        self.root = np.arange(n, dtype=np.int64)
        self.post: list[int] = []
        roots = [i for i in range(n) if self.parent[i] < 0]
        for r in roots:  # iterative DFS; children lists are already in key order
            stack = [(r, False)]
            while stack:
                i, done = stack.pop()
                if done:
                    self.post.append(i)
                    continue
                stack.append((i, True))
                for c in reversed(self.children[i]):
                    self.depth[c] = self.depth[i] + 1
                    self.root[c] = self.root[i]
                    stack.append((c, False))
        if len(self.post) != n:
            raise ValueError("the unit tree has a cycle")
        self.roots = np.array(roots, dtype=np.int64)
        self.comp = np.searchsorted(self.roots, self.root)  # root tree index of each unit
        deepest = int(self.depth.max(initial=0))
        self.levels = [np.flatnonzero(self.depth == d) for d in range(deepest + 1)]

    def matrix(self, cells: Mapping[Cell, int], what: str) -> np.ndarray:
        x = np.zeros((len(self.units), len(self.periods)), dtype=np.int64)
        for (u, t), v in cells.items():
            if u not in self.uidx or t not in self.tidx:
                raise ValueError(f"{what}: unknown cell {(u, t)!r}")
            if int(v) != v or v < 0:
                raise ValueError(f"{what}: count {v!r} at {(u, t)!r} is not a non-negative int")
            x[self.uidx[u], self.tidx[t]] = int(v)
        return x

    def check_additive(self, x: np.ndarray, what: str) -> None:
        """A rolled-up table has every parent >= the sum of its children."""
        below = np.zeros_like(x)
        kids = np.flatnonzero(self.parent >= 0)
        np.add.at(below, self.parent[kids], x[kids])
        if (below > x).any():
            i, j = np.argwhere(below > x)[0]
            raise ValueError(
                f"{what}: {self.units[i]!r} at {self.periods[j]!r} is below its children's sum"
            )

    def remainders(self, x: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """``x - (sum of x over each cell's frontier of shown cells)``, per cell."""
        below = np.zeros_like(x)
        for level in reversed(self.levels[1:]):
            contrib = np.where(shown[level], x[level], below[level])
            np.add.at(below, self.parent[level], contrib)
        return x - below


def _hidden_child(frame: _Frame, shown: np.ndarray) -> np.ndarray:
    """Per cell: does the unit have a hidden child in that period (is its region non-empty)?"""
    out = np.zeros(shown.shape, dtype=bool)
    kids = np.flatnonzero(frame.parent >= 0)
    np.logical_or.at(out, frame.parent[kids], ~shown[kids])
    return out


def _remainder_ok(r: np.ndarray, hidden_child: np.ndarray, k: int) -> np.ndarray:
    """The remainder rule: ``R >= k - 1`` over a non-empty region, else 0 or ``>= k``."""
    return np.where(hidden_child, r >= k - 1, (r == 0) | (r >= k))


def _protect_period(frame: _Frame, x: list[int], shown: list[bool], k: int) -> None:
    """Enforce the remainder rule in one period, in place on ``shown``.

    Per unit ``u``: ``front[u]`` its shown frontier.  A shown ``A`` passes when it has a
    hidden child and ``R(A) >= k - 1``, or has none and ``R(A)`` is 0 or ``>= k``.
    """
    front: list[list[int]] = [[] for _ in x]
    rem = [0] * len(x)

    for u in frame.post:
        f: list[int] = []
        region = False
        for c in frame.children[u]:
            if shown[c]:
                f.append(c)
            else:
                f.extend(front[c])
                region = True
        front[u] = f
        if not shown[u]:
            continue
        r = x[u] - sum(x[w] for w in f)
        while (r < k - 1) if region else (0 < r < k):
            # Hiding a shown frontier cell w merges its region into this one: the width
            # grows by R(w).
            useful = [w for w in f if rem[w] > 0]
            # Hiding a cell that gains nothing still opens its own frontier to the search.
            useful = useful or [w for w in f if front[w]]
            if not useful:
                shown[u] = False  # its region joins its nearest shown ancestor's
                break
            w = min(useful, key=lambda w: (x[w], w))
            shown[w] = False
            f.remove(w)
            f.extend(front[w])
            region = True
            r += rem[w]
        rem[u] = r


def _regions(frame: _Frame, x: list[int], shown: list[bool]) -> tuple[list, list, list]:
    """What an attacker knows of each hidden cell of one period, for the unit totals.

    Returns, per unit: its region (the nearest shown ancestor, or the top of an unbounded
    hidden part as ``-1 - unit``), the least value ``lo`` consistent with the released cells
    (its frontier sum), and the region's width (``inf`` when unbounded): every hidden cell
    ranges over exactly ``[lo, lo + width]``, all of them sharing one free mass.
    """
    n = len(x)
    fsum = [0] * n
    for u in frame.post:
        f = 0
        for c in frame.children[u]:
            f += x[c] if shown[c] else fsum[c]
        fsum[u] = f
    width = [float(x[u] - fsum[u]) if shown[u] else 0.0 for u in range(n)]
    region = [0] * n
    for u in reversed(frame.post):  # parents first
        p = int(frame.parent[u])
        if shown[u]:
            region[u] = u
        elif p < 0:
            region[u] = -1 - u
        else:
            region[u] = region[p] if not shown[p] else p
    widths = [width[r] if r >= 0 else float("inf") for r in region]
    return region, [float(f) for f in fsum], widths


def _total_widths(lo: list[float], width: list[float], hidden_sum: float) -> list[float]:
    """Range of each hidden period of a unit once its total fixes their sum (exact, 1-D)."""
    total_lo = sum(lo)
    highs = [a + w for a, w in zip(lo, width, strict=True)]
    unbounded = sum(1 for h in highs if h == float("inf"))
    finite_hi = sum(h for h in highs if h != float("inf"))
    out = []
    for a, high_alone in zip(lo, highs, strict=True):
        # the others' largest sum, without inf - inf when this period is the unbounded one
        others_unbounded = unbounded - (high_alone == float("inf"))
        others_hi = (float("inf") if others_unbounded
                     else finite_hi - (0.0 if high_alone == float("inf") else high_alone))
        low = max(a, hidden_sum - others_hi)
        high = min(high_alone, hidden_sum - (total_lo - a))
        out.append(high - low)
    return out


def _unit_totals(frame: _Frame, k: int, x: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Which unit totals may be released beside the cells ``shown``.

    A total over a row with hidden periods ties those periods together.  Each hidden cell
    lives in one region (its period's hidden part under one shown ancestor); regions are
    independent of each other given the released cells, so when no two released totals
    reach into the same region, each total is a 1-D problem over its own row: the hidden
    periods, each within ``[lo, lo + width]`` of its region, must sum to the total minus the
    shown periods, and each must keep a range of at least ``k - 1`` under that sum; that
    sum, which the total gives away, must be ``>= k`` itself.  Fixing the
    row's sum narrows every other cell of those regions by no more than it narrows the
    row's own cell (they share the region's free mass), so the row's check covers them.
    Units are taken in key order (ancestors first); a total whose regions are taken stays
    hidden.
    """
    cols_x, cols_shown = x.T.tolist(), shown.T.tolist()
    info = [_regions(frame, cols_x[j], cols_shown[j]) for j in range(len(frame.periods))]
    released = shown.all(axis=1) & (len(frame.periods) > 0)
    taken: set[tuple[int, int]] = set()
    for i in range(len(frame.units)):
        if released[i]:
            continue
        hidden = [j for j in range(len(frame.periods)) if not cols_shown[j][i]]
        regions = {(info[j][0][i], j) for j in hidden}
        if regions & taken:
            continue
        hidden_sum = float(sum(cols_x[j][i] for j in hidden))
        if hidden_sum < k:  # the hidden periods' sum becomes known: a count like any other
            continue
        widths = _total_widths([info[j][1][i] for j in hidden],
                               [info[j][2][i] for j in hidden], hidden_sum)
        if min(widths) >= k - 1:
            released[i] = True
            taken |= regions
    return released


def _released(frame: _Frame, k: int, x: np.ndarray, shown: np.ndarray,
              totals: np.ndarray | None = None) -> Released:
    row_total = shown.all(axis=1) if totals is None else totals
    units, periods = frame.units, frame.periods
    # The primary rule once more, on whatever the passes leave: nothing below k is released.
    cells = np.argwhere(shown & (x >= k))
    counts: dict[Key, int] = {(units[i], periods[j]): int(x[i, j]) for i, j in cells.tolist()}
    sums = x.sum(axis=1)
    for i in np.flatnonzero(row_total & (sums >= k)).tolist():
        counts[(units[i], None)] = int(sums[i])
    return Released(k=k, counts=counts, units=tuple(units), periods=tuple(periods))


def protect(table: Table, k: int, *, suppress: Iterable[Cell] = ()) -> Released:
    """Choose the cells and unit totals of ``table`` that may be released for group size ``k``.

    ``suppress`` names extra ``(unit, period)`` cells to hide (policy, or a previous result's
    hidden cells: feeding ``protect(t, k).hidden`` back returns the same result).
    """
    if k < 2:
        raise ValueError("k must be at least 2")
    frame = _Frame(table.parents, table.periods)
    x = frame.matrix(table.cells, "cells")
    frame.check_additive(x, "cells")
    shown = x >= k
    for u, t in suppress:
        if t is not None:
            shown[frame.uidx[u], frame.tidx[t]] = False
    xs = x.T.tolist()
    cols = shown.T.tolist()
    for j in range(len(frame.periods)):
        _protect_period(frame, xs[j], cols[j], k)
    shown = np.array(cols, dtype=bool).T.reshape(x.shape)
    return _released(frame, k, x, shown, _unit_totals(frame, k, x, shown))


def protect_breakdown(
    table: Table,
    released: Released,
    parts: Mapping[str, Mapping[Cell, int]],
    *,
    exclusive: bool,
) -> dict[str, Released]:
    """Choose which breakdown counts may be released inside the released cells of ``table``.

    ``released`` is ``protect(table, k)``.  ``parts`` maps a part's name (a signal code, or an
    outcome) to its rolled-up cells over the same units and periods; each part counts a subset
    of the reports in each cell.  ``exclusive=False`` for signals (a report may carry any
    number of them); ``exclusive=True`` for outcomes (a report has at most one; the rest have
    "no outcome", which must not be passed as a part: it is the remainder).  Returns, per
    part, its own ``Released`` (cells and unit totals), shown only where ``table``'s cell is.
    """
    k = released.k
    frame = _Frame(table.parents, table.periods)
    n = frame.matrix(table.cells, "cells")
    frame.check_additive(n, "cells")
    shown = np.zeros(n.shape, dtype=bool)
    for i, u in enumerate(frame.units):
        for j, t in enumerate(frame.periods):
            shown[i, j] = (u, t) in released.counts
    names = sorted(parts)
    xs = [frame.matrix(parts[p], f"part {p!r}") for p in names]
    for p, x in zip(names, xs, strict=True):
        frame.check_additive(x, f"part {p!r}")
        frame.check_additive(n - x, f"reports without part {p!r}")
        if (x > n).any():
            raise ValueError(f"part {p!r} exceeds the report count somewhere")
    if exclusive and names:
        frame.check_additive(n - sum(xs), "reports with no outcome")
        if (sum(xs) > n).any():
            raise ValueError("outcomes exceed the report count somewhere")
    rn = frame.remainders(n, shown)
    region = _hidden_child(frame, shown)
    ncomp = len(frame.roots)

    def fails(x: np.ndarray, r: np.ndarray, *, zero_ok: np.ndarray | bool = False) -> np.ndarray:
        """Per (root tree, period): does table ``x`` with remainders ``r`` break a rule?

        ``zero_ok``: where ``x`` may be 0 (per cell), as the reports with no outcome may.
        """
        small = (x < k) & ~((x == 0) & zero_ok)
        bad = shown & (small | ~_remainder_ok(r, region, k))
        out = np.zeros((ncomp, n.shape[1]), dtype=bool)
        np.logical_or.at(out, frame.comp, bad)
        return out

    rs = [frame.remainders(x, shown) for x in xs]
    if exclusive:
        keep = np.array([~fails(x, r) for x, r in zip(xs, rs, strict=True)], dtype=bool)
        keep = keep.reshape(len(names), ncomp, n.shape[1])
        roots_size = np.array([x[frame.roots] for x in xs], dtype=float).reshape(keep.shape)
        for _ in range(len(names) + 1):
            on = keep[:, frame.comp, :]  # (parts, units, periods)
            rest = n - (on * np.array(xs).reshape(on.shape)).sum(axis=0)
            rrest = rn - (on * np.array(rs).reshape(on.shape)).sum(axis=0)
            # The rest holds the reports with no outcome and those of every withheld outcome:
            # a rest of 0 would pin each withheld outcome at 0, so it may be 0 only where
            # every outcome is released.
            bad = fails(rest, rrest, zero_ok=on.all(axis=0))
            if not bad.any():
                break
            size = np.where(keep, roots_size, np.inf)
            drop = np.argmin(size, axis=0)  # first (by name) of the smallest
            c_idx, t_idx = np.nonzero(bad & keep.any(axis=0))
            keep[drop[c_idx, t_idx], c_idx, t_idx] = False
        masks = [shown & keep[i][frame.comp, :] for i in range(len(names))]
    else:
        masks = [_signal_mask(frame, k, n, shown, rn, region, x, r)
                 for x, r in zip(xs, rs, strict=True)]
    return {p: _released(frame, k, xs[i], masks[i]) for i, p in enumerate(names)}


def _signal_mask(
    frame: _Frame, k: int, n: np.ndarray, shown: np.ndarray, rn: np.ndarray,
    region: np.ndarray, s: np.ndarray, rs: np.ndarray,
) -> np.ndarray:
    """Released cells of one signal ``s``: ``shown`` minus an upward-closed hidden set.

    A cell fails on its own when ``s`` is below ``k``, ``c = n - s`` is in 1..k-1 (``c = 0``,
    everybody reported it, is a subtraction of released counts), or their remainders
    over the shown frontier break the remainder rule of the cell's region.  Hiding ``s``
    there means hiding it at every shown ancestor too (upward closed), and then a hidden
    ``s(u)`` with ``n(u)`` shown can be anything in ``[F_s(u), n(u) - F_c(u)]`` (frontiers
    over the cells where ``s`` is still shown): that width ``n(u) - F_n(u)`` must be
    ``>= k - 1``, else the signal goes for ``u``'s whole subtree.
    """
    c, rc = n - s, rn - rs
    hide = shown & ~((s >= k) & ((c == 0) | (c >= k)) & _remainder_ok(rs, region, k)
                     & _remainder_ok(rc, region, k))
    while True:
        below = hide.copy()  # close upward, through hidden-n units as well
        for level in reversed(frame.levels[1:]):
            np.logical_or.at(below, frame.parent[level], below[level])
        hide = below & shown
        width = frame.remainders(n, shown & ~hide)
        bad = hide & (width < k - 1)
        if not bad.any():
            return shown & ~hide
        for level in frame.levels[1:]:  # hide the bad cells' whole subtrees
            bad[level] |= bad[frame.parent[level]]
        hide |= bad & shown


def lower_band(count: int, k: int) -> int:
    """The lower edge of the band of ``k`` that holds ``count`` (0 below ``k``), the only
    form in which a count that bounds the reports from above is released: "at least"."""
    if count < 0 or k < 1:
        raise ValueError("need count >= 0 and k >= 1")
    return k * (count // k)
