"""Disclosure control: hand-made cases, and an LP attacker against random released tables.

The attacker knows the org tree, every released number, and that every count filed directly
at a unit (per period, per signal or outcome) is >= 0; a hidden count may be 0, so hiding
adds nothing.  For each suppressed count we ask scipy's LP for its minimum and maximum over
everything consistent with that, and require the range to be at least as wide as the
primary interval [0, k - 1] (``tests.primary``); a count filed directly at a unit, which is
no released figure, may instead be pinned to 0 or to a value >= k.  The constraint matrix
is totally unimodular (two laminar families), so the LP bounds
are integral and an integer-reasoning attacker learns nothing more.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from reports.disclosure import Released, Table, protect, protect_breakdown
from tests.primary import assert_protected

# -- helpers ----------------------------------------------------------------------------------


def subtree(parents, unit):
    kids = {}
    for u, p in parents.items():
        kids.setdefault(p, []).append(u)
    out, stack = [], [unit]
    while stack:
        u = stack.pop()
        out.append(u)
        stack.extend(kids.get(u, []))
    return out


def ancestors_and_self(parents, unit):
    while unit is not None:
        yield unit
        unit = parents[unit]


def roll_up(parents, reports):
    """``reports`` is a list of (unit, period, category); returns rolled-up cells per category."""
    cells: dict[str, Counter] = {}
    for unit, period, cat in reports:
        for a in ancestors_and_self(parents, unit):
            cells.setdefault(cat, Counter())[(a, period)] += 1
    return cells


def add(*counters):
    out = Counter()
    for c in counters:
        out.update(c)
    return out


class Attacker:
    """LP over the direct counts d[cat, unit, period] >= 0, with released facts as equalities."""

    def __init__(self, parents, periods, cats):
        self.parents, self.periods, self.cats = parents, tuple(periods), tuple(cats)
        self.units = sorted(parents)
        self.index = {
            key: i for i, key in enumerate(itertools.product(self.cats, self.units, self.periods))
        }
        self.sub = {u: subtree(parents, u) for u in self.units}
        self.rows: list[np.ndarray] = []
        self.rhs: list[int] = []

    def vec(self, cats, unit, period, *, direct=False):
        v = np.zeros(len(self.index))
        periods = self.periods if period is None else (period,)
        for c, w, t in itertools.product(cats, [unit] if direct else self.sub[unit], periods):
            v[self.index[(c, w, t)]] = 1
        return v

    def know(self, cats, released: Released):
        for (u, t), value in released.counts.items():
            self.rows.append(self.vec(cats, u, t))
            self.rhs.append(value)

    def range(self, v):
        a = np.array(self.rows) if self.rows else None
        b = np.array(self.rhs) if self.rows else None
        ends = []
        for sign in (1, -1):  # minimise v.x, then minimise -v.x
            res = linprog(sign * v, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
            if res.status == 3:
                ends.append(sign * -np.inf)
            else:
                assert res.status == 0, res.message
                ends.append(sign * res.fun)
        return ends[0], ends[1]

    def assert_safe(self, v, true, k, what, *, derived=False, zero=False):
        lo, hi = self.range(v)
        assert_protected(lo, hi, true, k, what, derived=derived, zero=zero)


def cells_of(table_cells, units, periods):
    return {(u, t): table_cells.get((u, t), 0) for u in units for t in periods}


def assert_no_small_counts(released: Released):
    """No released count is below k, zero included."""
    small = {key: v for key, v in released.counts.items() if v < released.k}
    assert not small


def assert_cells_safe(parents, periods, cells, released, k, cats=("n",), total_cells=None):
    """Every hidden cell / total and every direct count of ``released`` is protected."""
    att = Attacker(parents, periods, cats)
    att.know(cats, released)
    for u in sorted(parents):
        for t in (*periods, None):
            true = sum(cells.get((u, s), 0) for s in periods) if t is None else cells.get((u, t), 0)
            if (u, t) in released.hidden:
                att.assert_safe(att.vec(cats, u, t), true, k, f"hidden {(u, t)}")
        for t in periods:
            kids = [c for c, p in parents.items() if p == u]
            direct = cells.get((u, t), 0) - sum(cells.get((c, t), 0) for c in kids)
            att.assert_safe(att.vec(cats, u, t, direct=True), direct, k, f"direct {(u, t)}",
                            derived=True, zero=True)
    return att


# -- strategies -------------------------------------------------------------------------------


@st.composite
def forests(draw, max_units=30):
    n = draw(st.integers(1, max_units))
    parents: dict[str, str | None] = {}
    depth: dict[str, int] = {}
    for i in range(n):
        name = f"u{i:02d}"
        eligible = [u for u in parents if depth[u] < 3]
        parent = None
        if eligible and draw(st.integers(0, 9)) < 8:  # mostly trees, sometimes a forest
            parent = draw(st.sampled_from(eligible))
        parents[name] = parent
        depth[name] = 0 if parent is None else depth[parent] + 1
    return parents


@st.composite
def surveys(draw, max_units=30, max_periods=8):
    """A random forest and periods, with a mix of empty, small and large direct counts.

    Returns reports as (unit, period, category 0..7) triples; the tests map categories to
    signals or outcomes.
    """
    parents = draw(forests(max_units))
    periods = tuple(f"p{j}" for j in range(draw(st.integers(1, max_periods))))
    sizes = st.sampled_from([0, 0, 0, 1, 2, 3, 4, 6, 9])
    direct = draw(st.lists(sizes, min_size=len(parents) * len(periods),
                           max_size=len(parents) * len(periods)))
    rnd = draw(st.randoms(use_true_random=False))
    cells = itertools.product(sorted(parents), periods)
    reports = [
        (u, t, rnd.randrange(8)) for (u, t), m in zip(cells, direct, strict=True) for _ in range(m)
    ]
    k = draw(st.sampled_from([3, 4, 5]))
    return parents, periods, reports, k


# 40 random surveys per property in CI; CHORUS_PROPERTY_EXAMPLES raises it for a long hunt.
PROPERTY = settings(
    max_examples=int(os.environ.get("CHORUS_PROPERTY_EXAMPLES", "40")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- hand-made cases --------------------------------------------------------------------------


def test_a_small_team_hides_itself_and_the_next_smallest_sibling():
    parents = {"dept": None, "a": "dept", "b": "dept", "c": "dept"}
    cells = {("dept", "w1"): 19, ("a", "w1"): 2, ("b", "w1"): 10, ("c", "w1"): 7}
    released = protect(Table(parents, ("w1",), cells), 5)
    assert released.counts[("dept", "w1")] == 19
    assert released.counts[("b", "w1")] == 10
    assert {("a", "w1"), ("c", "w1")} <= released.hidden  # remainder 19 - 10 = 9 >= 5
    assert_cells_safe(parents, ("w1",), cells, released, 5)


def test_reports_filed_directly_at_a_parent_are_not_isolated_below_k():
    parents = {"dept": None, "a": "dept", "b": "dept"}
    cells = {("dept", "w1"): 23, ("a", "w1"): 10, ("b", "w1"): 11}  # 2 filed at dept itself
    released = protect(Table(parents, ("w1",), cells), 5)
    assert ("a", "w1") in released.hidden  # the smaller child joins the remainder: 2 + 10
    assert released.counts[("b", "w1")] == 11
    assert_cells_safe(parents, ("w1",), cells, released, 5)


def test_a_hidden_child_with_shown_grandchildren_is_not_a_free_remainder():
    # dept 20 = team 12 (its subteams 10, plus 2 direct) + other 6 + 2 direct.  Hiding the
    # team leaves dept - shown children = 14, yet the team is pinned to [10, 14].
    parents = {"dept": None, "team": "dept", "other": "dept", "sub": "team", "sub2": "team"}
    cells = {("dept", "w"): 20, ("team", "w"): 12, ("other", "w"): 6, ("sub", "w"): 5,
             ("sub2", "w"): 5}
    released = protect(Table(parents, ("w",), cells), 5, suppress=[("team", "w")])
    assert ("team", "w") in released.hidden
    assert_no_small_counts(released)
    assert_cells_safe(parents, ("w",), cells, released, 5)


def test_a_time_row_with_one_small_period_withholds_the_unit_total():
    parents = {"org": None, "u": "org", "v": "org"}
    periods = ("t0", "t1", "t2")
    u, v = [10, 2, 8], [6, 9, 7]
    cells = {}
    for j, t in enumerate(periods):
        cells[("u", t)], cells[("v", t)], cells[("org", t)] = u[j], v[j], u[j] + v[j]
    released = protect(Table(parents, periods, cells), 5)
    assert {("u", "t1"), ("v", "t1")} <= released.hidden
    assert released.counts[("u", "t0")] == 10
    assert released.counts[("u", "t2")] == 8
    # with u's total shown the 2 would be 20 - 10 - 8; the total goes instead
    assert {("u", None), ("v", None)} <= released.hidden
    assert released.counts[("org", None)] == 42
    att = assert_cells_safe(parents, periods, cells, released, 5)
    # 11 reports at t1 between two hidden teams: either may hold none or all of them
    assert att.range(att.vec(("n",), "u", "t1")) == pytest.approx((0, 11))


def test_a_released_unit_total_would_couple_periods_and_leak():
    # Why totals are withheld rather than the brief's time rule applied: u's total 12 shown
    # with both its periods hidden (time remainder 12 >= 5) still pins u at t1 to [2, 5].
    parents = {"org": None, "u": "org", "s": "org"}
    periods = ("t1", "t2")
    released = Released(
        k=5,
        counts={("org", "t1"): 5, ("org", "t2"): 10, ("s", "t2"): 0, ("u", None): 12},
    )
    att = Attacker(parents, periods, ("n",))
    att.know(("n",), released)
    assert att.range(att.vec(("n",), "u", "t1")) == pytest.approx((2, 5))


def test_a_zero_is_hidden_like_any_count_below_k_and_never_pinned():
    # dept 7 = team a 7 + team b 0.  Hiding only the 0 ("fewer than 5") would leave it
    # pinned by 7 - 7; the region needs k - 1 = 4 of free mass, so a goes too.
    parents = {"dept": None, "a": "dept", "b": "dept"}
    cells = {("dept", "w"): 7, ("a", "w"): 7, ("b", "w"): 0}
    released = protect(Table(parents, ("w",), cells), 5)
    assert released.counts == {("dept", "w"): 7, ("dept", None): 7}
    att = assert_cells_safe(parents, ("w",), cells, released, 5)
    assert att.range(att.vec(("n",), "b", "w")) == pytest.approx((0, 7))
    assert att.range(att.vec(("n",), "a", "w")) == pytest.approx((0, 7))


def test_a_listed_zero_beside_a_hidden_count_says_someone_reported():
    # What the old release gave away: with zeros listed, a hidden cell is known to be >= 1.
    parents = {"dept": None, "a": "dept", "b": "dept", "c": "dept"}
    old = Released(k=5, counts={("dept", "w"): 12, ("a", "w"): 0, ("b", "w"): 10})
    att = Attacker(parents, ("w",), ("n",))
    att.know(("n",), old)
    lo, hi = att.range(att.vec(("n",), "c", "w"))
    assert (lo, hi) == pytest.approx((0, 2))  # 12 - 10 leaves [0, 2] for the hidden c
    with pytest.raises(AssertionError, match="attacker sees"):
        att.assert_safe(att.vec(("n",), "c", "w"), 2, 5, "c")
    cells = {("dept", "w"): 12, ("a", "w"): 0, ("b", "w"): 10, ("c", "w"): 2}
    released = protect(Table(parents, ("w",), cells), 5)
    assert released.counts == {("dept", "w"): 12, ("dept", None): 12}
    assert_cells_safe(parents, ("w",), cells, released, 5)


def test_a_region_of_exactly_k_minus_one_is_enough():
    # dept 25 = a 4 + b 11 + c 10: the hidden 4 ranges over [0, 4], as wide as [0, k - 1].
    parents = {"dept": None, "a": "dept", "b": "dept", "c": "dept"}
    cells = {("dept", "w"): 25, ("a", "w"): 4, ("b", "w"): 11, ("c", "w"): 10}
    released = protect(Table(parents, ("w",), cells), 5)
    assert released.hidden == {("a", "w"), ("a", None)}
    assert_cells_safe(parents, ("w",), cells, released, 5)


def test_all_children_shown_release_their_parent_with_nothing_filed_directly():
    parents = {"dept": None, "a": "dept", "b": "dept"}
    cells = {("dept", "w"): 20, ("a", "w"): 10, ("b", "w"): 10}
    released = protect(Table(parents, ("w",), cells), 5)
    assert not released.hidden
    assert_cells_safe(parents, ("w",), cells, released, 5)


def test_a_unit_total_is_released_when_its_hidden_periods_keep_k_of_doubt():
    # Team a is small in both months and hidden with a sibling each time; its total 6 leaves
    # 6 to spread over two months in regions 13 wide, so each month of a still ranges over
    # 0..6.
    parents = {"dept": None, "a": "dept", "b": "dept", "c": "dept"}
    periods = ("t1", "t2")
    cells = {("dept", "t1"): 26, ("a", "t1"): 3, ("b", "t1"): 13, ("c", "t1"): 10,
             ("dept", "t2"): 26, ("a", "t2"): 3, ("b", "t2"): 13, ("c", "t2"): 10}
    released = protect(Table(parents, periods, cells), 5)
    assert {("a", "t1"), ("a", "t2"), ("c", "t1"), ("c", "t2")} <= released.hidden
    assert released.counts[("a", None)] == 6
    assert ("c", None) in released.hidden  # its regions are a's: one total per region
    att = assert_cells_safe(parents, periods, cells, released, 5)
    assert att.range(att.vec(("n",), "a", "t1")) == pytest.approx((0, 6))


def test_a_unit_total_below_k_stays_hidden_even_when_its_periods_keep_doubt():
    parents = {"dept": None, "a": "dept", "b": "dept", "c": "dept"}
    periods = ("t1", "t2")
    cells = {("dept", "t1"): 25, ("a", "t1"): 2, ("b", "t1"): 13, ("c", "t1"): 10,
             ("dept", "t2"): 25, ("a", "t2"): 2, ("b", "t2"): 13, ("c", "t2"): 10}
    released = protect(Table(parents, periods, cells), 5)
    assert ("a", None) in released.hidden  # 4 reports over both months
    assert_no_small_counts(released)
    assert_cells_safe(parents, periods, cells, released, 5)


def test_a_unit_total_that_would_pin_a_period_stays_hidden():
    # a's total 22 = 20 shown + 2 hidden in t2: the total would pin a at t2.
    parents = {"dept": None, "a": "dept", "b": "dept"}
    periods = ("t1", "t2")
    cells = {("dept", "t1"): 30, ("a", "t1"): 20, ("b", "t1"): 10,
             ("dept", "t2"): 9, ("a", "t2"): 2, ("b", "t2"): 7}
    released = protect(Table(parents, periods, cells), 5)
    assert ("a", "t2") in released.hidden
    assert {("a", None), ("b", None)} <= released.hidden
    assert_cells_safe(parents, periods, cells, released, 5)


def test_a_hidden_root_is_unbounded_and_its_empty_child_is_hidden_too():
    parents = {"r": None, "a": "r"}
    cells = {("r", "w"): 3, ("a", "w"): 0}
    released = protect(Table(parents, ("w",), cells), 5)
    assert released.counts == {}
    assert_cells_safe(parents, ("w",), cells, released, 5)


def test_a_signal_is_hidden_where_too_few_people_did_not_report_it():
    parents = {"dept": None, "a": "dept", "b": "dept"}
    n = {("dept", "w"): 20, ("a", "w"): 10, ("b", "w"): 10}
    released = protect(Table(parents, ("w",), n), 5)
    fine = {("dept", "w"): 10, ("a", "w"): 5, ("b", "w"): 5}
    nearly_all = {("dept", "w"): 14, ("a", "w"): 5, ("b", "w"): 9}  # 1 in b did not
    out = protect_breakdown(
        Table(parents, ("w",), n), released, {"fine": fine, "all": nearly_all}, exclusive=False
    )
    assert out["fine"].counts == {**fine, ("dept", None): 10, ("a", None): 5, ("b", None): 5}
    # b's 1 non-reporter hides the signal at b and, upward closed, at dept; a's 5 may stay
    assert out["all"].counts == {("a", "w"): 5, ("a", None): 5}


def test_outcomes_drop_the_smallest_until_no_outcome_is_safe():
    parents = {"dept": None}
    n = {("dept", "w"): 20}
    released = protect(Table(parents, ("w",), n), 5)
    outcomes = {"left": {("dept", "w"): 9}, "moved": {("dept", "w"): 8}}  # 3 with no outcome
    out = protect_breakdown(Table(parents, ("w",), n), released, outcomes, exclusive=True)
    assert out["left"].counts[("dept", "w")] == 9
    assert ("dept", "w") in out["moved"].hidden  # 8 + 3 = 11 left unexplained


def test_inconsistent_tables_are_rejected():
    with pytest.raises(ValueError, match="below its children"):
        protect(Table({"p": None, "c": "p"}, ("w",), {("p", "w"): 1, ("c", "w"): 2}), 3)
    with pytest.raises(ValueError, match="cycle"):
        protect(Table({"a": "b", "b": "a"}, ("w",), {}), 3)


# -- properties -------------------------------------------------------------------------------


@PROPERTY
@given(surveys())
def test_no_released_count_is_small_and_every_hidden_count_keeps_k_of_doubt(survey):
    parents, periods, reports, k = survey
    cells = roll_up(parents, [(u, t, "n") for u, t, _ in reports]).get("n", Counter())
    released = protect(Table(parents, periods, dict(cells)), k)
    assert_no_small_counts(released)
    # every count below k is hidden, an empty cell as much as a cell of one
    assert all((u, t) in released.hidden for u in parents for t in periods
               if cells.get((u, t), 0) < k)
    assert set(released.counts).isdisjoint(released.hidden)
    assert len(released.counts) + len(released.hidden) == len(parents) * (len(periods) + 1)
    for key, value in released.counts.items():
        u, t = key
        assert value == (sum(cells[(u, s)] for s in periods) if t is None else cells[key])
    assert_cells_safe(parents, periods, cells, released, k)


@PROPERTY
@given(surveys(max_units=12, max_periods=4))
def test_a_released_signal_leaves_k_of_doubt_in_it_and_in_its_complement(survey):
    parents, periods, reports, k = survey
    # category 0..3: carries the signal; 4..7: does not
    split = roll_up(parents, [(u, t, "s" if c < 4 else "c") for u, t, c in reports])
    s, c = split.get("s", Counter()), split.get("c", Counter())
    n = add(s, c)
    table = Table(parents, periods, dict(n))
    released = protect(table, k)
    out = protect_breakdown(table, released, {"sig": dict(s)}, exclusive=False)["sig"]
    assert_no_small_counts(out)
    assert set(out.counts) <= set(released.counts)
    for (u, t), value in out.counts.items():
        assert value == (sum(s[(u, x)] for x in periods) if t is None else s[(u, t)])
        rest = released.counts[(u, t)] - value
        assert rest == 0 or rest >= k
    att = assert_cells_safe(parents, periods, n, released, k, cats=("s", "c"))
    att.know(("s",), out)
    for u in sorted(parents):
        for t in periods:
            for cats, table_cells in ((("s",), s), (("c",), c), (("s", "c"), n)):
                if (u, t) in out.counts and cats != ("s", "c"):
                    continue
                if cats == ("s", "c") and (u, t) in released.counts:
                    continue
                true = table_cells.get((u, t), 0)
                att.assert_safe(att.vec(cats, u, t), true, k, f"{cats} at {(u, t)}")
            for cats in (("s",), ("c",)):
                kids = [x for x, p in parents.items() if p == u]
                table_cells = s if cats == ("s",) else c
                direct = table_cells.get((u, t), 0) - sum(table_cells.get((x, t), 0) for x in kids)
                att.assert_safe(att.vec(cats, u, t, direct=True), direct, k, f"direct {cats}",
                                derived=True, zero=True)


# Found by the property below: the rest (no released outcome) of u06 in p1 was 0 while
# "moved" was withheld there, which pinned "moved" at 0.
REST_OF_ZERO_PINS_A_WITHHELD_OUTCOME = (
    {'u00': None,
     'u01': 'u00',
     'u02': 'u00',
     'u03': 'u01',
     'u04': 'u01',
     'u05': 'u04',
     'u06': 'u04',
     'u07': 'u04',
     'u08': 'u03',
     'u09': 'u04',
     'u10': 'u04'},
    ('p0', 'p1'),
    [('u00', 'p0', 6), ('u00', 'p0', 4), ('u00', 'p0', 0), ('u00', 'p0', 5), ('u00', 'p0', 2),
     ('u00', 'p0', 2), ('u01', 'p0', 5), ('u01', 'p0', 5), ('u01', 'p0', 7), ('u01', 'p0', 0),
     ('u01', 'p0', 6), ('u01', 'p0', 2), ('u01', 'p1', 6), ('u01', 'p1', 6), ('u01', 'p1', 6),
     ('u01', 'p1', 5), ('u01', 'p1', 0), ('u01', 'p1', 5), ('u03', 'p0', 7), ('u03', 'p0', 2),
     ('u03', 'p0', 4), ('u03', 'p0', 7), ('u03', 'p1', 4), ('u03', 'p1', 0), ('u03', 'p1', 0),
     ('u03', 'p1', 1), ('u03', 'p1', 1), ('u03', 'p1', 3), ('u03', 'p1', 0), ('u03', 'p1', 7),
     ('u03', 'p1', 7), ('u04', 'p0', 1), ('u04', 'p0', 6), ('u04', 'p1', 6), ('u04', 'p1', 1),
     ('u05', 'p1', 2), ('u06', 'p0', 1), ('u06', 'p0', 6), ('u06', 'p1', 3), ('u06', 'p1', 0),
     ('u06', 'p1', 4), ('u07', 'p0', 5), ('u07', 'p0', 7), ('u07', 'p1', 0), ('u07', 'p1', 6),
     ('u07', 'p1', 2), ('u07', 'p1', 0), ('u07', 'p1', 5), ('u07', 'p1', 1), ('u07', 'p1', 6),
     ('u07', 'p1', 4), ('u07', 'p1', 5), ('u08', 'p0', 4), ('u08', 'p0', 4), ('u08', 'p0', 7),
     ('u08', 'p0', 1), ('u08', 'p0', 7), ('u08', 'p0', 2), ('u09', 'p1', 3), ('u09', 'p1', 5),
     ('u09', 'p1', 3), ('u09', 'p1', 3), ('u10', 'p1', 4), ('u10', 'p1', 2)],
    3,
)


@PROPERTY
@given(surveys(max_units=12, max_periods=4))
@example(REST_OF_ZERO_PINS_A_WITHHELD_OUTCOME)
def test_released_outcomes_leave_k_of_doubt_in_every_outcome_and_in_no_outcome(survey):
    parents, periods, reports, k = survey
    names = {0: "left", 1: "left", 2: "moved", 3: "moved", 4: "quiet"}
    split = roll_up(parents, [(u, t, names.get(c, "none")) for u, t, c in reports])
    n = add(*split.values())
    table = Table(parents, periods, dict(n))
    released = protect(table, k)
    parts = {name: dict(split.get(name, Counter())) for name in ("left", "moved", "quiet")}
    out = protect_breakdown(table, released, parts, exclusive=True)
    cats = ("left", "moved", "quiet", "none")
    att = Attacker(parents, periods, cats)
    att.know(cats, released)
    for name, rel in out.items():
        assert_no_small_counts(rel)
        assert set(rel.counts) <= set(released.counts)
        att.know((name,), rel)
    for (u, t) in released.counts:
        if t is not None:
            rest = released.counts[(u, t)] - sum(
                rel.counts.get((u, t), 0) for rel in out.values()
            )
            assert rest == 0 or rest >= k
    for u in sorted(parents):
        for t in periods:
            for cat in cats:
                if cat != "none" and (u, t) in out[cat].counts:
                    continue
                true = split.get(cat, Counter()).get((u, t), 0)
                att.assert_safe(att.vec((cat,), u, t), true, k, f"{cat} at {(u, t)}",
                                derived=cat == "none", zero=cat == "none")


@PROPERTY
@given(surveys(), st.randoms(use_true_random=False))
def test_protection_is_deterministic_and_a_fixed_point(survey, rnd: random.Random):
    parents, periods, reports, k = survey
    cells = dict(roll_up(parents, [(u, t, "n") for u, t, _ in reports]).get("n", Counter()))
    first = protect(Table(parents, periods, cells), k)
    shuffled_parents = list(parents.items())
    shuffled_cells = list(cells.items())
    rnd.shuffle(shuffled_parents)
    rnd.shuffle(shuffled_cells)
    again = protect(Table(dict(shuffled_parents), periods, dict(shuffled_cells)), k)
    assert again == first
    cell_hidden = [key for key in first.hidden if key[1] is not None]
    assert protect(Table(parents, periods, cells), k, suppress=cell_hidden) == first


# -- clusters: what a detection run releases --------------------------------------------------


def assert_as_wide_as_promised(att, v, true, k, what):
    # Windows of periods are sums no page shows: pinned to a value of at least k they
    # say no more than a released count would.
    lo, hi = att.range(v)
    assert_protected(lo, hi, true, k, what, derived=True)


class ClusterAttacker(Attacker):
    """Adds lower bounds (a cluster without a count still says it holds at least k) and
    two-sided bounds (a rounded percentage of a known count)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.bounds: list[tuple[np.ndarray, float]] = []  # v.x >= value

    def at_least(self, v, value):
        self.bounds.append((v, float(value)))

    def range(self, v):
        a = np.array(self.rows) if self.rows else None
        b = np.array(self.rhs) if self.rows else None
        a_ub = -np.array([row for row, _ in self.bounds]) if self.bounds else None
        b_ub = -np.array([value for _, value in self.bounds]) if self.bounds else None
        ends = []
        for sign in (1, -1):
            res = linprog(sign * v, A_eq=a, b_eq=b, A_ub=a_ub, b_ub=b_ub,
                          bounds=(0, None), method="highs")
            if res.status == 3:
                ends.append(sign * -np.inf)
            else:
                assert res.status == 0, res.message
                ends.append(sign * res.fun)
        return ends[0], ends[1]


def _iso_periods(periods):
    return {p: dt.date(2025, 1 + j, 1).isoformat() for j, p in enumerate(periods)}


@st.composite
def surveys_with_clusters(draw):
    """A random survey with a planted surge, and clusters at the surge and at random cuts
    with random p-values, as a detection run might store them."""
    parents, periods, reports, k = draw(surveys(max_units=10, max_periods=5))
    units = sorted(parents)
    iso = _iso_periods(periods)
    plant_unit = draw(st.sampled_from(units))
    first = draw(st.integers(0, len(periods) - 1))
    last = draw(st.integers(first, len(periods) - 1))
    surge = draw(st.integers(0, 12))
    rnd = draw(st.randoms(use_true_random=False))
    reports = reports + [(plant_unit, periods[rnd.randint(first, last)], rnd.randrange(8))
                         for _ in range(surge)]
    cuts = [(plant_unit, first, last)]
    for _ in range(draw(st.integers(0, 4))):
        a = draw(st.integers(0, len(periods) - 1))
        cuts.append((draw(st.sampled_from(units)), a, draw(st.integers(a, len(periods) - 1))))
    clusters = [{"model": "joint", "unit": unit,
                 "start": dt.date.fromisoformat(iso[periods[a]]),
                 "end": dt.date.fromisoformat(iso[periods[b]]),
                 "p_value": draw(st.sampled_from([0.001, 0.004, 0.02, 0.05, 0.06, 1.0])),
                 "observed": 99, "expected": 1.0, "relative_risk": 99.0, "llr": 9.9}
                for unit, a, b in cuts]
    return parents, periods, reports, k, clusters


def _release_for(parents, periods, reports, k):
    """A `selectors.Release` of the random survey: reports, and one signal (categories 0..3
    carry it)."""
    from reports import selectors
    from surveys import catalog

    iso = _iso_periods(periods)
    split = roll_up(parents, [(u, iso[t], "s" if c < 4 else "c") for u, t, c in reports])
    s, c = split.get("s", Counter()), split.get("c", Counter())
    n = add(s, c)
    dates = tuple(iso[p] for p in periods)
    table = Table(parents, dates, dict(n))
    released = protect(table, k)
    signal = catalog.SIGNAL_CODES[0]
    out = protect_breakdown(table, released, {signal: dict(s)}, exclusive=False)[signal]
    empty = Released(k=k, counts={}, units=tuple(sorted(parents)), periods=dates)
    children: dict = {}
    for unit in sorted(parents):
        children.setdefault(parents[unit], []).append(unit)
    rel = selectors.Release(
        k=k, parents=dict(parents), periods=dates, reports=released,
        signals={code: (out if code == signal else empty) for code in catalog.SIGNAL_CODES},
        outcomes={code: empty for code in catalog.OUTCOME_CODES}, children=children)
    return rel, dates, n, s, c, released, out, signal


@PROPERTY
@given(surveys_with_clusters())
def test_released_clusters_add_nothing_to_the_released_table(survey):
    """Every figure of a released cluster is recomputed here from the released table alone
    (count, signal counts and percentages, ratio), only clusters at the significance level
    are released, and with every cluster fact in the attacker's constraints (counts, signal
    counts, the at-least-k a cluster without a count stands for, percentages as the bands
    they were rounded from) no hidden count is narrower than the promised interval."""
    from reports import selectors

    parents, periods, reports, k, clusters = survey
    rel, dates, n, s, _, released, out, signal = _release_for(parents, periods, reports, k)
    # A run stores only cuts holding at least k reports.
    clusters = [cl for cl in clusters if sum(
        n.get((cl["unit"], t), 0) for t in dates
        if cl["start"].isoformat() <= t <= cl["end"].isoformat()) >= k]
    shown = [card for cluster in clusters
        if (card := selectors.cluster_release(rel, cluster, period="month")) is not None]
    att = ClusterAttacker(parents, dates, ("s", "c"))
    att.know(("s", "c"), released)
    att.know(("s",), out)
    def root_total(r):
        # A root's total as the released table gives it: its own cell, else its periods'.
        if (r, None) in released.counts:
            return released.counts[(r, None)]
        if all((r, t) in released.counts for t in dates):
            return sum(released.counts[(r, t)] for t in dates)
        return None

    root_totals = [root_total(r) for r in sorted(parents) if parents[r] is None]
    everyone = None if None in root_totals else sum(root_totals)
    for card in shown:
        assert min(cl["p_value"] for cl in clusters if cl["unit"] == card.unit
                   and cl["start"] == card.start and cl["end"] == card.end) <= 0.05
        window = tuple(t for t in dates if card.start.isoformat() <= t <= card.end.isoformat())
        cells = [released.counts.get((card.unit, t)) for t in window]
        if card.reports is None:
            assert None in cells
            assert not card.signals
            assert card.ratio is None
            assert "reports" not in card.sentence.split(":", 1)[1]
            att.at_least(sum(att.vec(("s", "c"), card.unit, t) for t in window), k)
            continue
        assert None not in cells
        assert card.reports == sum(cells)
        window_vec = sum(att.vec(("s", "c"), card.unit, t) for t in window)
        att.rows.append(window_vec)
        att.rhs.append(card.reports)
        for share in card.signals:
            signal_cells = [out.counts.get((card.unit, t)) for t in window]
            assert share.code == signal
            assert None not in signal_cells
            assert share.count == sum(signal_cells)
            assert share.percent == round(100 * share.count / card.reports)
            signal_vec = sum(att.vec(("s",), card.unit, t) for t in window)
            att.rows.append(signal_vec)
            att.rhs.append(share.count)
            # the percentage as the band it was rounded from, over the known count
            att.at_least(signal_vec - (share.percent - 0.5) / 100 * window_vec, 0)
            att.at_least((share.percent + 0.5) / 100 * window_vec - signal_vec, 0)
        branch = (released.counts.get((card.unit, None)) if (card.unit, None) in released.counts
                  else (sum(released.counts[(card.unit, t)] for t in dates)
                        if all((card.unit, t) in released.counts for t in dates) else None))
        roots = [r for r in parents if parents[r] is None]
        window_all = (sum(released.counts[(r, t)] for r in roots for t in window)
                      if all((r, t) in released.counts for r in roots for t in window)
                      else None)
        if card.ratio is not None:
            assert None not in (branch, window_all, everyone)
            assert card.ratio == round(card.reports * (everyone - branch)
                                       / (branch * (window_all - card.reports)), 1)
    for u in sorted(parents):
        for t in (*dates, None):
            true = sum(n.get((u, x), 0) for x in dates) if t is None else n.get((u, t), 0)
            if (u, t) in released.hidden:
                assert_as_wide_as_promised(att, att.vec(("s", "c"), u, t), true, k,
                                           f"hidden {(u, t)}")
            if t is None:
                continue
            if (u, t) in released.counts and (u, t) not in out.counts:
                assert_as_wide_as_promised(att, att.vec(("s",), u, t), s.get((u, t), 0), k,
                                           f"hidden signal {(u, t)}")
