"""Tree-temporal scan statistics: the attrition-drive detection core.

Plain numpy, no Django and no Celery: arrays in, cuts and replica maxima out.

Data model
----------
Org units form a forest given by ``parents`` (``parents[u]`` is the parent index or ``-1``;
units are in topological order, ``parents[u] < u``).  A *branch* ``g`` is a unit together
with all its descendants; a report filed at a unit counts for that unit and all its
ancestors.  Periods are ``0 .. n_periods - 1`` (weeks or months).  A *window* is a run of
consecutive periods of length ``1 .. max_window`` (default ``max(1, n_periods // 2)``).  A
*cut* is a branch x window; the scan computes a log-likelihood ratio (LLR) for every cut
and the test statistic is the maximum LLR over cuts that hold at least ``min_reports``
observed reports (``c >= min_reports``; callers pass the survey's minimum group size).

Models (``MODELS``)
-------------------
``targeted``
    Conditioned on branch and time (space-time permutation flavour).  ``n_g`` = reports in
    branch g, ``C`` = all reports, ``C_W`` = all reports in window W, ``c`` = reports of g
    in W.  With ``leave_branch_out=True`` (default) the branch is compared with the rest of
    the company: the LLR is that of the 2 x 2 table branch/rest x window/rest (inside share
    ``c / n_g`` against the rest's share ``(C_W - c) / (C - n_g)``, the Bernoulli formula
    with window reports as cases), so a big drive does not hide in the company-wide time
    profile it inflates, and a large branch is not credited with the rest's noise as if
    its time profile were known exactly (which made a plain leave-out Poisson statistic
    heavy-tailed on org-sized branches and cost power on departments).  ``Cut.expected``
    is ``n_g * max(C_W - c, 0.5) / (C - n_g)`` (the count at the rest's rate; the 0.5
    keeps a window in which nobody outside reported finite); branches with ``n_g == C``
    yield no ``targeted`` cut, and their ``joint`` cuts (scored on cases alone) take the
    classic ``n_g * C_W / C``, which equals ``c``.  With ``leave_branch_out=False`` the
    classic ``E = n_g * C_W / C`` and the Poisson LLR ``c ln(c/E) + (C-c) ln((C-c)/(C-E))``
    for ``c > E`` are used (a big drive inflates ``C_W`` and hides itself).  Null replicas
    permute report periods against report units.
``wave``
    Conditioned on branch, uniform in time.  Binomial LLR of ``c`` out of ``n_g`` against
    share ``w/T``.  Null replicas redraw every report's period uniformly.
``signature``
    Bernoulli: reports carrying the attrition-drive signature are cases.  ``c`` cases of the
    ``n`` reports in the cut, ``C`` cases of ``N`` reports overall.  Null replicas permute
    the case labels.  ``min_reports`` applies to the number of *cases* in the cut
    (``c``), which also implies ``n >= min_reports``.  ``Cut.expected`` is
    ``n * (C - c) / (N - n)`` (cases expected at the outside rate) so that
    ``observed / expected`` is the inside/outside share ratio.  A cut holding every report
    yields no cut.  Every ``Cut`` field is finite.
``joint``
    ``targeted`` and ``signature`` as one statistic: per cut (at least ``min_reports``
    reports) the leave-branch-out table LLR of its reports plus the Bernoulli LLR of its
    cases among them.  The likelihood factorises into report periods given units and case
    labels given cuts, so the two LLRs add; one maximum per replica calibrates both, and no
    Bonferroni split between the two is needed.  Null replicas permute report periods and
    then case labels with the same generator.  ``Cut.observed`` and ``n_reports`` are the
    cut's reports, ``Cut.expected`` the ``targeted`` expectation.  ``leave_branch_out``
    does not apply (always on).
``profile``
    ``joint`` with a counts part that does not pay for the rest's sampling noise.  Per cut
    (at least ``min_reports`` reports) the binomial LLR of its ``c`` reports out of the
    branch's ``n_g`` against the reference share ``q = (r + w/T) / 2``, half way between
    the rest of the company's window share ``r = max(C_W - c, 0.5) / (C - n_g)`` and a
    uniform profile, plus the ``signature`` Bernoulli LLR of its cases among its reports.
    Why half way: the rest's share alone (the 2 x 2 table of ``targeted``, or the rest's
    share as if known) carries the sampling noise of the twenty-odd reports a window holds
    in a weekly survey of ~160 reports, which cost a department drive visible only in
    counts about a sixth of its power against the uniform-time scan; the uniform share
    alone is fooled by a company-wide review season.  The replicas are ``joint``'s
    (permute report periods against units, then case labels), so the null holds whatever
    the company's time profile, season included: the reference share only decides where
    the statistic looks.  The counts LLR grows with ``c`` and falls with ``C_W``, so
    ``joint``'s branch and bound applies unchanged.  ``Cut.expected`` is ``n_g * q``;
    branches with ``n_g == C`` score their cases only and take ``n_g * C_W / C``.
``profile_counts`` (experimental; not in ``MODELS`` nor ``available_models``)
    ``profile``'s counts part alone: per cut (at least ``min_reports`` reports) the
    binomial LLR of its ``c`` reports out of ``n_g`` against ``profile``'s half-way share
    ``q``, without the signature LLR.  Its replicas are ``profile``'s draws (periods, then
    case labels, with the same generator; the case labels are drawn and not read), so
    :func:`replica_maxima_pair` scores one draw with both statistics.  Its replica maximum
    is ``profile``'s branch and bound without the signature bound (the counts LLR grows
    with ``c`` and falls with ``C_W``).  Available wherever ``profile`` is.
``profile_floor`` (the default of ``reports.detection``)
    ``profile`` whose signature LLR counts only on cuts holding at least
    ``ProfileFloorModel.CASE_FLOOR`` cases (the counts LLR counts on every cut).  Why: in
    a null replica a cut with one case among few reports takes a large Bernoulli LLR, which
    raised ``profile``'s replica maxima where signatures carry nothing and kept it below
    ``wave`` on drives visible only in counts.  Its replicas are ``profile``'s draws (same
    generator, same order); its replica maximum is ``profile``'s branch and bound with the
    floor in the signature bound (a pair whose largest window case count is below the floor
    gets none).  The floor is 2: a floor of 3 lost the half-way drive in BENCHMARKS.md's
    evaluation, since few of its reports carry the whole pattern.
``per_capita``
    Poisson against headcount.  ``headcount[u]`` is the unit's *own* headcount (people
    attached directly to it: normally only leaf teams carry one; NaN or 0 = unknown/none).
    The population of a branch is the sum of own headcounts over the branch (its own plus
    all descendants').  Available only when every unit that has reports has a known
    positive own headcount if it is a leaf, and every unit that has reports has a positive
    branch population.  ``mu = C * pop_g / pop_total * w / T``.  Null replicas draw the C
    reports multinomially over (unit, period) cells with probability proportional to own
    headcount, uniform over periods.

Inference
---------
Replica ``i`` draws from ``numpy.random.default_rng(SeedSequence(entropy, spawn_key=(i,)))``
so :func:`replica_maxima` is bit-identical however the replica range is split into
chunks (workers).  Monte Carlo p-value ``(1 + #{maxima >= llr}) / (S + 1)``; every cut,
including secondary ones, is compared with the distribution of the replica maxima.
When several models are run the caller applies :func:`bonferroni` (``p * n_models``).
Each model's replicas come from their own seed stream, so a joint min-p over models would
only be Sidak's correction here, no stronger than Bonferroni at Monte Carlo resolution.

Secondary clusters: cuts ranked by LLR, greedily keeping those that share no unit-period
cell with a better kept cut (branch ancestor-or-self of the other AND windows intersect).

Performance: reports are expanded once to their ancestors (a dense ``N x depth`` table),
so branch x period counts for one replica are a single ``bincount``; windows come from
cumulative sums, one vectorised pass per window length.  Replica maxima use exact
branch-and-bound: per (branch, window length) an upper bound from the largest window count
and the most favourable window total, and a lower bound that is attained, so only the
(branch, length) pairs that can still beat the best lower bound are evaluated cut by cut.
For the leave-branch-out ``targeted`` model the bounds are computed only on the pairs whose
largest window holds at least ``min_reports`` reports, which in a large tree are few;
``joint`` bounds the same pairs by the targeted bounds plus a signature upper bound from
the pair's largest window case count and smallest eligible window report count.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = [
    "LEAVE_OUT_FLOOR",
    "MODELS",
    "SCAN_MODELS",
    "Cut",
    "Detection",
    "ScanData",
    "ScanModel",
    "available_models",
    "bonferroni",
    "cut_cells",
    "detect",
    "monte_carlo_p",
    "observed_cuts",
    "observed_maximum",
    "replica_maxima",
    "replica_maxima_pair",
    "resolve_max_window",
]

DEFAULT_REPLICAS = 999
# The smallest count a window of the rest of the company is taken to hold, so that a
# window nobody outside the branch reported in keeps a finite expectation.
LEAVE_OUT_FLOOR = 0.5
# observed_cuts keeps at most this many candidate cuts (the highest LLRs) while it
# scans the window lengths, so its memory does not grow with reports x windows; the
# secondary cuts are chosen among them (20 are kept, each removing its overlaps).
MAX_CANDIDATE_CUTS = 1_000_000
_TOL_REL = 1e-9
_TOL_ABS = 1e-9


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def _as_int_array(name: str, values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if (
        arr.size
        and not np.issubdtype(arr.dtype, np.integer)
        and not np.all(np.equal(np.mod(arr, 1), 0))
    ):
        raise ValueError(f"{name} must hold integers")
    return arr.astype(np.int64, copy=True)


@dataclass(frozen=True, eq=False)
class ScanData:
    """Input of the scan.

    parents: int [U], parent unit index or -1 (root); ``parents[u] < u``.
    report_units: int [N], unit at which each report was filed.
    report_periods: int [N], period index (0 .. n_periods-1) of each report.
    n_periods: T, number of periods (>= 1).
    report_cases: optional bool [N], report carries the attrition-drive signature.
    headcount: optional float [U], own headcount of each unit (NaN or 0 = unknown/none).
    """

    parents: np.ndarray
    report_units: np.ndarray
    report_periods: np.ndarray
    n_periods: int
    report_cases: np.ndarray | None = None
    headcount: np.ndarray | None = None

    def __post_init__(self) -> None:
        parents = _as_int_array("parents", self.parents)
        units = _as_int_array("report_units", self.report_units)
        periods = _as_int_array("report_periods", self.report_periods)
        n_periods = int(self.n_periods)
        n_units = parents.size
        if n_periods < 1:
            raise ValueError("n_periods must be at least 1")
        idx = np.arange(n_units)
        if np.any((parents < -1) | (parents >= idx)):
            raise ValueError("parents must be -1 or a smaller unit index (topological order)")
        if units.size != periods.size:
            raise ValueError("report_units and report_periods differ in length")
        if units.size and (units.min() < 0 or units.max() >= n_units):
            raise ValueError("report_units out of range")
        if periods.size and (periods.min() < 0 or periods.max() >= n_periods):
            raise ValueError("report_periods out of range")
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "report_units", units)
        object.__setattr__(self, "report_periods", periods)
        object.__setattr__(self, "n_periods", n_periods)
        if self.report_cases is not None:
            cases = np.asarray(self.report_cases).astype(bool)
            if cases.shape != units.shape:
                raise ValueError("report_cases must have one entry per report")
            object.__setattr__(self, "report_cases", cases)
        if self.headcount is not None:
            head = np.asarray(self.headcount, dtype=np.float64).copy()
            if head.shape != parents.shape:
                raise ValueError("headcount must have one entry per unit")
            if np.any(head[np.isfinite(head)] < 0):
                raise ValueError("headcount must be non-negative")
            object.__setattr__(self, "headcount", head)

    @property
    def n_units(self) -> int:
        return int(self.parents.size)

    @property
    def n_reports(self) -> int:
        return int(self.report_units.size)

    @cached_property
    def _tree(self) -> _Tree:
        return _Tree(self.parents)


class _Tree:
    """Depths and a dense ancestor table ``anc[u, d]`` (ancestor of u at depth d, or U)."""

    def __init__(self, parents: np.ndarray) -> None:
        n_units = parents.size
        depth = np.zeros(n_units, dtype=np.int64)
        plist = parents.tolist()
        dl = depth.tolist()
        for u, p in enumerate(plist):
            if p >= 0:
                dl[u] = dl[p] + 1
        depth = np.asarray(dl, dtype=np.int64)
        n_levels = int(depth.max()) + 1 if n_units else 1
        anc = np.full((n_units, n_levels), n_units, dtype=np.int64)
        for d in range(n_levels):
            level = np.flatnonzero(depth == d)
            if d:
                anc[level, :d] = anc[parents[level], :d]
            anc[level, d] = level
        self.n_units = n_units
        self.depth = depth
        self.anc = anc
        self.n_levels = n_levels

    def counts_from_index(self, idx: np.ndarray, n_periods: int) -> np.ndarray:
        size = (self.n_units + 1) * n_periods
        flat = np.bincount(idx.ravel(), minlength=size)
        return flat[: self.n_units * n_periods].reshape(self.n_units, n_periods)

    def time_major(self, anc_rows: np.ndarray, periods: np.ndarray, n_periods: int):
        """int64 [T, U] (time-major view) from ``anc[units]`` rows (N x depth) and periods."""
        width = self.n_units + 1
        idx = anc_rows + (periods * width)[:, None]
        flat = np.bincount(idx.ravel(), minlength=n_periods * width)
        return flat.reshape(n_periods, width)[:, : self.n_units]

    def subtree_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum a per-unit vector over each branch (unit plus descendants)."""
        out = np.zeros(self.n_units + 1, dtype=np.float64)
        np.add.at(out, self.anc.ravel(), np.repeat(values, self.n_levels))
        return out[: self.n_units]

    def related(self, g: int, others: np.ndarray) -> np.ndarray:
        """bool: ``g`` is an ancestor-or-self of ``others`` or vice versa."""
        dg = self.depth[g]
        down = (self.depth[others] >= dg) & (self.anc[others, min(dg, self.n_levels - 1)] == g)
        up = self.anc[g, self.depth[others]] == others
        return down | up

    def members(self, g: int) -> np.ndarray:
        """Units in branch g (g and its descendants)."""
        return np.flatnonzero(self.anc[:, self.depth[g]] == g)


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    """A branch x window.  ``start``/``end`` are period indices, ``end`` inclusive.

    ``observed``: reports in the cut (signature model: cases in the cut).
    ``expected``: expected count under the model's null (see module docstring).
    ``n_reports``: all reports in the cut (equals ``observed`` except for ``signature``).
    """

    model: str
    branch: int
    start: int
    end: int
    observed: int
    expected: float
    llr: float
    n_reports: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def relative_risk(self) -> float:
        if self.expected <= 0:
            return float("inf")
        return self.observed / self.expected


@dataclass(frozen=True)
class Detection:
    """A cut with its Monte Carlo p-value and the Bonferroni-adjusted p-value."""

    cut: Cut
    p_value: float
    p_adjusted: float
    n_models: int = 1
    n_replicas: int = 0


# --------------------------------------------------------------------------------------
# LLR formulas (vectorised; zero where the cut is not an excess)
# --------------------------------------------------------------------------------------


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def poisson_llr(c, expected, total) -> np.ndarray:
    """``c ln(c/E) + (C-c) ln((C-c)/(C-E))`` for ``c > E`` (and ``E < C``), else 0."""
    c = np.asarray(c, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    ok = (c > e) & (e < total) & (e > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = total - c
        t1 = c * np.log(c / e)
        t2 = np.where(rest > 0, rest * np.log(rest / (total - e)), 0.0)
        llr = t1 + t2
    return np.where(ok, np.maximum(llr, 0.0), 0.0)


def binomial_llr(c, n, share) -> np.ndarray:
    """Wave model: ``c`` of ``n`` in a window with null share ``w/T``; zero unless c/n > share."""
    c = np.asarray(c, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    q = np.asarray(share, dtype=np.float64)
    ok = (n > 0) & (c * 1.0 > n * q) & (q < 1) & (q > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        qs = np.where(ok, q, 0.5)
        llr = (
            _xlogx(c)
            + _xlogx(n - c)
            - _xlogx(n)
            - c * np.log(qs)
            - (n - c) * np.log1p(-qs)
        )
    return np.where(ok, np.maximum(llr, 0.0), 0.0)


def bernoulli_llr(c, n, cases_total, reports_total) -> np.ndarray:
    """Signature model Bernoulli LLR; zero unless inside share > outside share."""
    c = np.asarray(c, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    big_c = float(cases_total)
    big_n = float(reports_total)
    out_n = big_n - n
    out_c = big_c - c
    ok = (n > 0) & (out_n > 0) & (c * out_n > out_c * n)
    null = _xlogx(big_c) + _xlogx(big_n - big_c) - _xlogx(big_n)
    llr = (
        _xlogx(c)
        + _xlogx(n - c)
        - _xlogx(n)
        + _xlogx(out_c)
        + _xlogx(np.maximum(out_n - out_c, 0.0))
        - _xlogx(out_n)
        - null
    )
    return np.where(ok, np.maximum(llr, 0.0), 0.0)


class _XLogXTable:
    """``x ln x`` for integers 0..n, for table-driven Bernoulli LLRs in replicas."""

    def __init__(self, n: int) -> None:
        self.tab = _xlogx(np.arange(n + 1, dtype=np.float64))

    def bernoulli(self, c: np.ndarray, n: np.ndarray, big_c: int, big_n: int) -> np.ndarray:
        t = self.tab
        out_n = big_n - n
        out_c = big_c - c
        ok = (n > 0) & (out_n > 0) & (c * out_n > out_c * n)
        null = t[big_c] + t[big_n - big_c] - t[big_n]
        ctrl = np.maximum(out_n - out_c, 0)
        llr = t[c] + t[n - c] - t[n] + t[out_c] + t[ctrl] - t[out_n] - null
        return np.where(ok, np.maximum(llr, 0.0), 0.0)

    def table2x2(self, c, n, cw, big_n: int) -> np.ndarray:
        """Targeted leave-branch-out LLR: ``c`` of the branch's ``n`` reports in a window
        holding ``cw`` of all ``big_n`` reports (the Bernoulli LLR with window reports as
        cases, arguments broadcast); zero unless the branch's share is the larger."""
        t = self.tab
        out_n = big_n - n
        out_c = cw - c
        ok = (out_n > 0) & (c * out_n > out_c * n)
        llr = (t[c] + t[n - c] - t[n] + t[out_c] + t[np.maximum(out_n - out_c, 0)] - t[out_n]
               - t[cw] - t[big_n - cw] + t[big_n])
        return np.where(ok, np.maximum(llr, 0.0), 0.0)


# --------------------------------------------------------------------------------------
# model set-up
# --------------------------------------------------------------------------------------


def resolve_max_window(n_periods: int, max_window: int | None) -> int:
    """Default ``max(1, T // 2)``; clamped to ``1..T``."""
    if max_window is None:
        max_window = n_periods // 2
    return int(min(max(1, int(max_window)), n_periods))


def _per_capita_available(data: ScanData) -> bool:
    if data.headcount is None or data.n_reports == 0:
        return False
    own = np.where(np.isfinite(data.headcount), data.headcount, 0.0)
    tree = data._tree
    pop = tree.subtree_sum(own)
    if pop.sum() <= 0:
        return False
    reporting = np.unique(data.report_units)
    is_leaf = np.ones(data.n_units, dtype=bool)
    is_leaf[data.parents[data.parents >= 0]] = False
    leaves = reporting[is_leaf[reporting]]
    if np.any(own[leaves] <= 0):
        return False
    return bool(np.all(pop[reporting] > 0))


def available_models(data: ScanData) -> list[str]:
    """Models that can run on ``data``: targeted and wave always (if there are reports),
    signature, joint, profile and profile_floor when ``report_cases`` is given, per_capita
    when headcounts cover reporters."""
    if data.n_reports == 0:
        return []
    models = ["targeted", "wave"]
    if data.report_cases is not None:
        models.append("signature")
    if _per_capita_available(data):
        models.append("per_capita")
    if data.report_cases is not None:
        models.extend(("joint", "profile", "profile_floor"))
    return models


class ScanModel(ABC):
    """One scan model set up on one data set: everything fixed across its replicas.

    The scan needs four things of a model: the counts its cuts are counted on
    (:meth:`observed_counts`), every cut of one window length scored
    (:meth:`window_cuts`) with its expectation (:meth:`cut_expected`), and the maximum
    statistic (:meth:`max_statistic`) of the observed data or of a null replica
    (:meth:`replica_counts`)."""

    name: str
    # a model run only by callers that name it (not in available_models) is available
    # where the model named here is
    available_as: str | None = None

    def __init__(self, data: ScanData, max_window: int | None, leave_branch_out: bool) -> None:
        if data.n_reports and (self.available_as or self.name) not in available_models(data):
            raise ValueError(f"model {self.name!r} is not available for this data")
        self.data = data
        self.model = self.name
        self.tree = data._tree
        self.T = data.n_periods
        self.wmax = resolve_max_window(self.T, max_window)
        self.leave_out = bool(leave_branch_out)
        self.N = data.n_reports
        self.C = self.N
        tree = self.tree
        T = self.T
        # report -> ancestor cell base index (N x depth)
        self.anc_rows = tree.anc[data.report_units]
        self.base = self.anc_rows * T
        counts = tree.counts_from_index(self.base + data.report_periods[:, None], T)
        self.counts = counts
        self.n_g = counts.sum(axis=1)
        self.widths = np.arange(1, self.wmax + 1)

    # ---- observed cuts --------------------------------------------------------------
    def observed_counts(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Branch x period counts the cuts are counted on, and the case counts that
        score them alongside (joint) or None."""
        return self.counts, None

    def observed_tm(self):
        """The observed counts in the time-major form :meth:`max_statistic` takes."""
        return self.observed_counts()[0].T

    def window_cuts(self, w: int, cs: np.ndarray, ks: np.ndarray | None):
        """Every cut of length ``w`` from cumulative counts ``cs`` (and case counts ``ks``):
        counts ``c``, reports ``n`` and LLRs, each branch x start."""
        c = cs[:, w:] - cs[:, :-w]
        return c, c, self.llr(w, c, np.arange(c.shape[0]))

    def cut_expected(self, w: int, g: int, s: int, c: int, n: int) -> float:
        return float(self.expected(w, np.array([c]), np.array([g]), np.array([s]))[0])

    @abstractmethod
    def expected(self, w: int, c: np.ndarray, rows: np.ndarray | slice, start=None):
        """Expected count(s) for cuts of length ``w`` on branches ``rows``.

        ``c`` has shape (len(rows), n_starts) or (len(rows),) when ``start`` is an array of
        the same length (paired cuts)."""

    @abstractmethod
    def llr(self, w: int, c: np.ndarray, rows, start=None) -> np.ndarray:
        """LLRs of cuts of length ``w`` with counts ``c`` on branches ``rows``."""

    # ---- replicas -------------------------------------------------------------------
    @abstractmethod
    def replica_counts(self, rng: np.random.Generator):
        """Time-major [T, U] branch counts of one null replica."""

    def max_statistic(self, counts_tm: np.ndarray, min_reports: int) -> float:
        """Exact maximum LLR over cuts with ``c >= min_reports`` (branch and bound).

        ``counts_tm``: time-major [T, U] branch counts."""
        if self.N == 0:
            return 0.0
        T = self.T
        buf = np.ascontiguousarray(counts_tm, dtype=np.int32)
        one = buf.copy()
        cmax_wu = np.empty((self.wmax, buf.shape[1]), dtype=np.int32)
        cmax_wu[0] = buf.max(axis=0)
        for w in range(2, self.wmax + 1):
            view = buf[: T - w + 1]
            view += one[w - 1 :]
            cmax_wu[w - 1] = view.max(axis=0)
        return self._max_from_window_maxima(cmax_wu, one, min_reports)

    @abstractmethod
    def _max_from_window_maxima(self, cmax_wu: np.ndarray, one: np.ndarray,
                                min_reports: int) -> float:
        """The maximum statistic from the largest window count per (width, branch)
        ``cmax_wu`` and the time-major counts ``one``."""

    def _bounds(self, cmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upper and attained lower bound of the LLR per (branch, width) pair."""
        raise NotImplementedError

    def _exact(self, w: int, c: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """LLRs of the cuts of length ``w`` with counts ``c`` [rows, starts]."""
        return self.llr(w, c, rows)

    def _branch_and_bound(self, cmax_wu: np.ndarray, one: np.ndarray,
                          min_reports: int) -> float:
        """Bound every (branch, width) pair by :meth:`_bounds` and evaluate cut by cut
        only the pairs that can still beat the best lower bound."""
        T = self.T
        cmax = cmax_wu.T  # [U, W]
        eligible = cmax >= min_reports
        if not eligible.any():
            return 0.0
        upper, lower = self._bounds(cmax)
        upper = np.where(eligible, upper, 0.0)
        best = float(np.max(np.where(eligible, lower, 0.0)))
        cutoff = best - _TOL_REL * abs(best) - _TOL_ABS
        cand = (upper >= cutoff) & (upper > 0)
        cols = np.flatnonzero(cand.any(axis=0))
        if cols.size == 0:
            return best
        cs = np.zeros((T + 1, one.shape[1]), dtype=np.int64)
        np.cumsum(one, axis=0, out=cs[1:])
        for wi in cols:
            rows = np.flatnonzero(cand[:, wi])
            w = int(self.widths[wi])
            c = (cs[w:, rows] - cs[:-w, rows]).T
            val = self._exact(w, c, rows)
            val = np.where(c >= min_reports, val, 0.0)
            best = max(best, float(val.max()))
        return best


class TargetedModel(ScanModel):
    """``targeted``: conditioned on branch and time; replicas permute report periods."""

    name = "targeted"

    def __init__(self, data: ScanData, max_window: int | None, leave_branch_out: bool) -> None:
        super().__init__(data, max_window, leave_branch_out)
        T = self.T
        c_t = np.bincount(data.report_periods, minlength=T)
        cs = np.concatenate([[0], np.cumsum(c_t)])
        self.cw = [cs[w:] - cs[:-w] for w in range(1, self.wmax + 1)]
        self.cw_min = np.array([a.min() for a in self.cw], dtype=np.int64)
        self.cw_max = np.array([a.max() for a in self.cw], dtype=np.int64)
        self.table = _XLogXTable(self.N)

    def expected(self, w: int, c: np.ndarray, rows: np.ndarray | slice, start=None):
        cw = self.cw[w - 1] if start is None else self.cw[w - 1][start]
        n_g = self.n_g[rows].astype(np.float64)
        if c.ndim == 2:
            n_g = n_g[:, None]
        if self.leave_out:
            rest = (self.C - n_g).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                e = n_g * np.maximum(cw - c, LEAVE_OUT_FLOOR) / rest
            # A branch holding every report has no rest to take a rate from
            # (joint still scores its cases): its expectation is the
            # company's own profile, n_g * C_W / C.
            return np.where(rest > 0, e, n_g * cw / self.C)
        return n_g * cw / self.C

    def llr(self, w: int, c: np.ndarray, rows, start=None) -> np.ndarray:
        if self.leave_out:
            cw = self.cw[w - 1] if start is None else self.cw[w - 1][start]
            n_g = self.n_g[rows]
            if c.ndim == 2:
                n_g = n_g[:, None]
                cw = np.broadcast_to(cw, c.shape)
            return self.table.table2x2(np.asarray(c, dtype=np.int64), n_g, cw, self.N)
        return poisson_llr(c, self.expected(w, c, rows, start), self.C)

    def replica_counts(self, rng: np.random.Generator):
        return self.tree.time_major(self.anc_rows, rng.permutation(self.data.report_periods),
                                    self.T)

    def _max_from_window_maxima(self, cmax_wu, one, min_reports):
        if self.leave_out:
            return self._max_table_llr(cmax_wu, one, min_reports)
        return self._branch_and_bound(cmax_wu, one, min_reports)

    def _bounds(self, cmax):
        cwmin = np.array([a.min() for a in self.cw], dtype=np.float64)[None, :]
        cwmax = np.array([a.max() for a in self.cw], dtype=np.float64)[None, :]
        n_g = self.n_g[:, None].astype(np.float64)
        e_lo = n_g * cwmin / self.C
        e_hi = n_g * cwmax / self.C
        # a window nobody reported in gives no bound (E -> 0), so check such pairs
        upper = np.where(e_lo > 0, poisson_llr(cmax, e_lo, self.C), np.inf)
        lower = poisson_llr(cmax, e_hi, self.C)
        return upper, lower

    def _max_table_llr(self, cmax_wu: np.ndarray, one: np.ndarray, min_reports: int) -> float:
        """Branch and bound for the targeted 2 x 2 table LLR on the eligible (width, branch)
        pairs only (most pairs of a large tree hold fewer than k reports).  The LLR grows
        with ``c`` and falls with the window's company total, so the largest window count
        with the smallest total bounds a pair from above, and with the largest total from
        below (a value some cut of the pair reaches or beats)."""
        w_idx, u_idx = np.nonzero(cmax_wu >= min_reports)
        if w_idx.size == 0:
            return 0.0
        c = cmax_wu[w_idx, u_idx].astype(np.int64)
        n = self.n_g[u_idx]
        table = self.table
        lower = table.table2x2(c, n, self.cw_max[w_idx], self.N)
        best = float(lower.max())
        upper = table.table2x2(c, n, np.maximum(self.cw_min[w_idx], c), self.N)
        cutoff = best - _TOL_REL * abs(best) - _TOL_ABS
        keep = (upper >= cutoff) & (upper > 0)
        if not keep.any():
            return best
        w_idx, u_idx = w_idx[keep], u_idx[keep]
        cs = np.zeros((self.T + 1, one.shape[1]), dtype=np.int64)
        np.cumsum(one, axis=0, out=cs[1:])
        for wi in np.unique(w_idx):
            rows = u_idx[w_idx == wi]
            w = int(wi) + 1
            c = cs[w:, rows] - cs[:-w, rows]  # [starts, rows]
            val = table.table2x2(c, self.n_g[rows][None, :], self.cw[wi][:, None], self.N)
            val = np.where(c >= min_reports, val, 0.0)
            best = max(best, float(val.max()))
        return best


class _UniformInTime(ScanModel):
    """Models whose expectation depends only on (branch, window length), so a pair's
    largest window count is its best cut."""

    def _max_from_window_maxima(self, cmax_wu, one, min_reports):
        cmax = cmax_wu.T  # [U, W]
        eligible = cmax >= min_reports
        if not eligible.any():
            return 0.0
        val = self._pair_llr(cmax, self.widths[None, :])
        return float(np.max(np.where(eligible, val, 0.0)))

    @abstractmethod
    def _pair_llr(self, cmax: np.ndarray, w_row: np.ndarray) -> np.ndarray:
        """LLR of every (branch, width) pair's largest window count."""


class WaveModel(_UniformInTime):
    """``wave``: conditioned on branch, uniform in time; replicas redraw report periods."""

    name = "wave"

    def expected(self, w: int, c: np.ndarray, rows: np.ndarray | slice, start=None):
        n_g = self.n_g[rows].astype(np.float64)
        e = n_g * (w / self.T)
        return np.broadcast_to(e[:, None] if c.ndim == 2 else e, c.shape)

    def llr(self, w: int, c: np.ndarray, rows, start=None) -> np.ndarray:
        n_g = self.n_g[rows]
        if c.ndim == 2:
            n_g = n_g[:, None]
        return binomial_llr(c, n_g, w / self.T)

    def replica_counts(self, rng: np.random.Generator):
        return self.tree.time_major(self.anc_rows, rng.integers(0, self.T, size=self.N), self.T)

    def _pair_llr(self, cmax, w_row):
        return binomial_llr(cmax, self.n_g[:, None], w_row / self.T)


class PerCapitaModel(_UniformInTime):
    """``per_capita``: Poisson against headcount; replicas draw reports over (unit, period)
    cells with probability proportional to own headcount."""

    name = "per_capita"

    def __init__(self, data: ScanData, max_window: int | None, leave_branch_out: bool) -> None:
        super().__init__(data, max_window, leave_branch_out)
        own = np.where(np.isfinite(data.headcount), data.headcount, 0.0)
        pop = self.tree.subtree_sum(own)
        self.share = pop / own.sum()
        p = own / own.sum()
        self.cell_units = np.flatnonzero(p > 0)
        self.cell_cdf = np.cumsum(p[self.cell_units])
        self.cell_cdf /= self.cell_cdf[-1]

    def expected(self, w: int, c: np.ndarray, rows: np.ndarray | slice, start=None):
        e = self.C * self.share[rows] * (w / self.T)
        return np.broadcast_to(e[:, None] if c.ndim == 2 else e, c.shape)

    def llr(self, w: int, c: np.ndarray, rows, start=None) -> np.ndarray:
        return poisson_llr(c, self.expected(w, c, rows, start), self.C)

    def replica_counts(self, rng: np.random.Generator):
        tree = self.tree
        pick = np.searchsorted(self.cell_cdf, rng.random(self.N), side="right")
        units = self.cell_units[np.minimum(pick, self.cell_units.size - 1)]
        periods = rng.integers(0, self.T, size=self.N)
        return tree.time_major(tree.anc[units], periods, self.T)

    def _pair_llr(self, cmax, w_row):
        return poisson_llr(cmax, self.C * self.share[:, None] * (w_row / self.T), self.C)


class SignatureModel(ScanModel):
    """``signature``: Bernoulli on the reports carrying the signature (cases); replicas
    permute the case labels."""

    name = "signature"

    def __init__(self, data: ScanData, max_window: int | None, leave_branch_out: bool) -> None:
        super().__init__(data, max_window, leave_branch_out)
        cases = data.report_cases
        self.cases = cases
        self.C = int(cases.sum())
        self.case_counts = self.tree.counts_from_index(
            self.base[cases] + data.report_periods[cases][:, None], self.T
        )
        # window report counts are taken from the cumulative sums when needed:
        # kept for every window length they would cost U x T x max_window
        self.report_cs = _cumsum_time(self.counts)
        self.nmin = np.stack([self.window_reports(w).min(axis=1)
                              for w in range(1, self.wmax + 1)], axis=1)
        self.nmax = np.stack([self.window_reports(w).max(axis=1)
                              for w in range(1, self.wmax + 1)], axis=1)
        self.table = _XLogXTable(self.N)

    def window_reports(self, w: int, rows=slice(None)) -> np.ndarray:
        """Reports of branches ``rows`` in every window of length ``w``."""
        cs = self.report_cs[rows]
        return cs[:, w:] - cs[:, :-w]

    def observed_counts(self):
        return self.case_counts, None

    def window_cuts(self, w, cs, ks):
        c = cs[:, w:] - cs[:, :-w]
        n = self.window_reports(w)
        return c, n, bernoulli_llr(c, n, self.C, self.N)

    def cut_expected(self, w: int, g: int, s: int, c: int, n: int) -> float:
        out_n = self.N - n
        return n * (self.C - c) / out_n if out_n > 0 else n * self.C / self.N

    def expected(self, w, c, rows, start=None):
        raise AssertionError("signature has no simple expected count")

    def llr(self, w, c, rows, start=None):
        raise AssertionError("signature scores cases against the cut's reports")

    def replica_counts(self, rng: np.random.Generator):
        cases = rng.permutation(self.cases)
        return self.tree.time_major(self.anc_rows[cases], self.data.report_periods[cases],
                                    self.T)

    def _max_from_window_maxima(self, cmax_wu, one, min_reports):
        return self._branch_and_bound(cmax_wu, one, min_reports)

    def _bounds(self, cmax):
        tab = self.table
        upper = tab.bernoulli(cmax, np.maximum(self.nmin, cmax), self.C, self.N)
        lower = tab.bernoulli(cmax, self.nmax, self.C, self.N)
        return upper, lower

    def _exact(self, w, c, rows):
        return self.table.bernoulli(c, self.window_reports(w, rows), self.C, self.N)


class JointModel(TargetedModel):
    """``joint``: the targeted table LLR plus the signature Bernoulli LLR per cut; replicas
    permute report periods, then case labels with the same generator."""

    name = "joint"

    def __init__(self, data: ScanData, max_window: int | None, leave_branch_out: bool) -> None:
        # joint always compares a branch with the rest of the company
        super().__init__(data, max_window, True)
        self.cases = data.report_cases
        self.K = int(self.cases.sum())
        self.case_counts = self.tree.counts_from_index(
            self.base[self.cases] + data.report_periods[self.cases][:, None], self.T
        )

    def observed_counts(self):
        return self.counts, self.case_counts

    def observed_tm(self):
        return self.counts.T, self.case_counts.T

    def window_cuts(self, w, cs, ks):
        c = cs[:, w:] - cs[:, :-w]
        rows = np.arange(c.shape[0])
        val = self.llr(w, c, rows) + self._signature_llr(ks[:, w:] - ks[:, :-w], c)
        return c, c, val

    def _signature_llr(self, kc, n) -> np.ndarray:
        """The signature part of a cut's statistic: the Bernoulli LLR of its ``kc`` cases
        among its ``n`` reports (arrays broadcast)."""
        return self.table.bernoulli(kc, n, self.K, self.N)

    def _counts_llr(self, c, n, cw, w) -> np.ndarray:
        """The counts part of a cut's statistic from its reports ``c``, its branch's
        reports ``n``, its window's company total ``cw`` and its length ``w`` (arrays
        broadcast); it grows with ``c`` and falls with ``cw``, which the bounds use."""
        return self.table.table2x2(c, n, cw, self.N)

    def replica_counts(self, rng: np.random.Generator):
        """The pair (report counts, case counts), each time-major [T, U]."""
        periods = rng.permutation(self.data.report_periods)
        cases = rng.permutation(self.cases)
        return (self.tree.time_major(self.anc_rows, periods, self.T),
                self.tree.time_major(self.anc_rows[cases], periods[cases], self.T))

    def max_statistic(self, counts_tm, min_reports: int) -> float:
        """``counts_tm``: the pair (report counts, case counts), each time-major."""
        if self.N == 0:
            return 0.0
        return self._max_joint(*counts_tm, min_reports)

    def _max_joint(self, counts_tm: np.ndarray, cases_tm: np.ndarray, min_reports: int
                   ) -> float:
        """Branch and bound for targeted table LLR + signature Bernoulli LLR, on the
        (width, branch) pairs whose largest window holds at least k reports.  A pair's
        upper bound adds the targeted bound of :meth:`_max_table_llr` and a signature
        bound: the Bernoulli LLR grows with the cut's cases and falls with its reports
        while the inside share is the larger, so the pair's largest window case count over
        its smallest eligible report count (at least k, at least that case count) bounds
        it.  The lower bound is the targeted lower bound of the pair's fullest window, a
        real cut whose signature LLR is at least 0."""
        T = self.T
        buf = np.ascontiguousarray(counts_tm, dtype=np.int32)
        one = buf.copy()
        n_units = buf.shape[1]
        cmax_wu = np.empty((self.wmax, n_units), dtype=np.int32)
        cmax_wu[0] = buf.max(axis=0)
        # cases are rare: their window maxima and the smallest report counts are only
        # needed on the branches holding a case
        kone = np.ascontiguousarray(cases_tm, dtype=np.int32)
        kcols = np.flatnonzero(kone.any(axis=0))
        kone = kone[:, kcols]
        kbuf = kone.copy()
        cone = one[:, kcols]
        cbuf = cone.copy()
        kmax_wk = np.empty((self.wmax, kcols.size), dtype=np.int32)
        cmin_wk = np.empty((self.wmax, kcols.size), dtype=np.int32)
        kmax_wk[0] = kbuf.max(axis=0, initial=0)
        cmin_wk[0] = cbuf.min(axis=0, initial=self.N)
        for w in range(2, self.wmax + 1):
            view = buf[: T - w + 1]
            view += one[w - 1 :]
            cmax_wu[w - 1] = view.max(axis=0)
            kview = kbuf[: T - w + 1]
            kview += kone[w - 1 :]
            kmax_wk[w - 1] = kview.max(axis=0, initial=0)
            cview = cbuf[: T - w + 1]
            cview += cone[w - 1 :]
            cmin_wk[w - 1] = cview.min(axis=0, initial=self.N)
        w_idx, u_idx = np.nonzero(cmax_wu >= min_reports)
        if w_idx.size == 0:
            return 0.0
        kmax_wu = np.zeros((self.wmax, n_units), dtype=np.int64)
        kmax_wu[:, kcols] = kmax_wk
        cmin_wu = np.zeros((self.wmax, n_units), dtype=np.int64)
        cmin_wu[:, kcols] = cmin_wk
        c = cmax_wu[w_idx, u_idx].astype(np.int64)
        n = self.n_g[u_idx]
        lower = self._counts_llr(c, n, self.cw_max[w_idx], w_idx + 1)
        best = float(lower.max())
        k = kmax_wu[w_idx, u_idx]
        n_lo = np.maximum(np.maximum(cmin_wu[w_idx, u_idx], min_reports), k)
        upper = (self._counts_llr(c, n, np.maximum(self.cw_min[w_idx], c), w_idx + 1)
                 + self._signature_llr(k, n_lo))
        cutoff = best - _TOL_REL * abs(best) - _TOL_ABS
        keep = (upper >= cutoff) & (upper > 0)
        if not keep.any():
            return best
        w_idx, u_idx = w_idx[keep], u_idx[keep]
        cols = np.unique(u_idx)
        cs = np.zeros((T + 1, cols.size), dtype=np.int64)
        np.cumsum(one[:, cols], axis=0, out=cs[1:])
        ks = np.zeros((T + 1, cols.size), dtype=np.int64)
        np.cumsum(np.ascontiguousarray(cases_tm)[:, cols], axis=0, out=ks[1:])
        for wi in np.unique(w_idx):
            rows = u_idx[w_idx == wi]
            pos = np.searchsorted(cols, rows)
            w = int(wi) + 1
            c = cs[w:, pos] - cs[:-w, pos]  # [starts, rows]
            kc = ks[w:, pos] - ks[:-w, pos]
            val = self._counts_llr(c, self.n_g[rows][None, :], self.cw[wi][:, None], w)
            val = val + self._signature_llr(kc, c)
            val = np.where(c >= min_reports, val, 0.0)
            best = max(best, float(val.max()))
        return best


class ProfileModel(JointModel):
    """``profile``: per cut a counts LLR against a time profile half way between the
    rest of the company's and a uniform one, plus the signature Bernoulli LLR; replicas
    are ``joint``'s (permute report periods, then case labels, with one generator)."""

    name = "profile"
    # weight of the rest of the company's window share in the reference share (the
    # rest, a uniform profile); see the module docstring for why half way
    REST_WEIGHT = 0.5

    def _share(self, c, n, cw, w) -> np.ndarray:
        """The reference window share of a cut (arrays broadcast)."""
        rest = (self.N - n).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rest_share = np.where(rest > 0, np.maximum(cw - c, LEAVE_OUT_FLOOR) / rest, 1.0)
        return self.REST_WEIGHT * np.minimum(rest_share, 1.0) + (1 - self.REST_WEIGHT) * (
            np.asarray(w, dtype=np.float64) / self.T)

    def _counts_llr(self, c, n, cw, w) -> np.ndarray:
        c, n = np.broadcast_arrays(np.asarray(c, dtype=np.int64), np.asarray(n))
        llr = binomial_llr(c, n, self._share(c, n, cw, w))
        return np.where(n < self.N, llr, 0.0)

    def llr(self, w: int, c: np.ndarray, rows, start=None) -> np.ndarray:
        cw = self.cw[w - 1] if start is None else self.cw[w - 1][start]
        n_g = self.n_g[rows]
        if c.ndim == 2:
            n_g = n_g[:, None]
            cw = np.broadcast_to(cw, c.shape)
        return self._counts_llr(np.asarray(c, dtype=np.int64), n_g, cw, w)

    def expected(self, w: int, c: np.ndarray, rows: np.ndarray | slice, start=None):
        cw = self.cw[w - 1] if start is None else self.cw[w - 1][start]
        n_g = self.n_g[rows]
        if c.ndim == 2:
            n_g = n_g[:, None]
        # a branch holding every report is scored on its cases alone; its expectation is
        # the company's own profile, n_g * C_W / C, as for joint
        return np.where(n_g < self.N, n_g * self._share(c, n_g, cw, w), n_g * cw / self.N)


class ProfileCountsModel(ProfileModel):
    """``profile_counts`` (experimental): ``profile``'s counts LLR alone, on ``profile``'s
    replicas (the pair of report and case counts; the case counts are not read)."""

    name = "profile_counts"
    available_as = "profile"

    def window_cuts(self, w, cs, ks):
        c = cs[:, w:] - cs[:, :-w]
        return c, c, self.llr(w, c, np.arange(c.shape[0]))

    def max_statistic(self, counts_tm, min_reports: int) -> float:
        """``counts_tm``: the pair (report counts, case counts) of :meth:`replica_counts`
        or :meth:`observed_tm`; only the report counts are scored."""
        return ScanModel.max_statistic(self, counts_tm[0], min_reports)

    def _max_from_window_maxima(self, cmax_wu, one, min_reports):
        """Branch and bound on the eligible (width, branch) pairs: the pair's largest
        window count with the smallest window total bounds it from above, with the largest
        total from below (a value some cut of the pair reaches or beats)."""
        w_idx, u_idx = np.nonzero(cmax_wu >= min_reports)
        if w_idx.size == 0:
            return 0.0
        c = cmax_wu[w_idx, u_idx].astype(np.int64)
        n = self.n_g[u_idx]
        lower = self._counts_llr(c, n, self.cw_max[w_idx], w_idx + 1)
        best = float(lower.max())
        upper = self._counts_llr(c, n, np.maximum(self.cw_min[w_idx], c), w_idx + 1)
        cutoff = best - _TOL_REL * abs(best) - _TOL_ABS
        keep = (upper >= cutoff) & (upper > 0)
        if not keep.any():
            return best
        w_idx, u_idx = w_idx[keep], u_idx[keep]
        cols = np.unique(u_idx)
        cs = np.zeros((self.T + 1, cols.size), dtype=np.int64)
        np.cumsum(one[:, cols], axis=0, out=cs[1:])
        for wi in np.unique(w_idx):
            rows = u_idx[w_idx == wi]
            pos = np.searchsorted(cols, rows)
            w = int(wi) + 1
            c = cs[w:, pos] - cs[:-w, pos]  # [starts, rows]
            val = self._counts_llr(c, self.n_g[rows][None, :], self.cw[wi][:, None], w)
            val = np.where(c >= min_reports, val, 0.0)
            best = max(best, float(val.max()))
        return best


class ProfileFloorModel(ProfileModel):
    """``profile_floor``: ``profile`` whose signature LLR counts only on cuts holding at
    least ``CASE_FLOOR`` cases; ``profile``'s replicas."""

    name = "profile_floor"
    CASE_FLOOR = 2

    def _signature_llr(self, kc, n) -> np.ndarray:
        # the branch and bound's signature bound is this at the pair's largest window
        # case count: a pair below the floor there gets none
        kc = np.asarray(kc)
        return np.where(kc >= self.CASE_FLOOR, super()._signature_llr(kc, n), 0.0)


def _cumsum_time(counts: np.ndarray) -> np.ndarray:
    cs = np.zeros((counts.shape[0], counts.shape[1] + 1), dtype=np.int64)
    np.cumsum(counts, axis=1, out=cs[:, 1:])
    return cs


# Appended, never reordered: a model's index seeds its replicas (reports.detection).
SCAN_MODELS: dict[str, type[ScanModel]] = {
    model.name: model
    for model in (TargetedModel, WaveModel, SignatureModel, PerCapitaModel, JointModel,
                  ProfileModel, ProfileCountsModel, ProfileFloorModel)
}
# Scanned only by callers that name them (the evaluation); not offered to runs.
EXPERIMENTAL_MODELS = ("profile_counts",)
MODELS = tuple(name for name in SCAN_MODELS if name not in EXPERIMENTAL_MODELS)

_MODEL_CACHE_ATTR = "_scan_model_cache"


def _model(data: ScanData, model: str, max_window: int | None,
           leave_branch_out: bool) -> ScanModel:
    if model not in SCAN_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    key = (model, resolve_max_window(data.n_periods, max_window), bool(leave_branch_out))
    cache = data.__dict__.setdefault(_MODEL_CACHE_ATTR, {})
    if key not in cache:
        cache[key] = SCAN_MODELS[model](data, max_window, leave_branch_out)
    return cache[key]


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def _all_cuts(m: ScanModel, counts: np.ndarray, min_reports: int,
              case_counts: np.ndarray | None = None):
    """All cuts with positive LLR and c >= min_reports, as parallel arrays (joint: with
    the case counts ``case_counts``, branch x period)."""
    cs = _cumsum_time(counts)
    ks = None if case_counts is None else _cumsum_time(case_counts)
    parts = []
    for w in m.widths:
        w = int(w)
        c, n, val = m.window_cuts(w, cs, ks)
        keep = (c >= min_reports) & (val > 0)
        g, s = np.nonzero(keep)
        if g.size == 0:
            continue
        parts.append((g, s, np.full(g.size, w), c[g, s], n[g, s], val[g, s]))
        if sum(part[0].size for part in parts) > 2 * MAX_CANDIDATE_CUTS:
            parts = [_best_cuts(parts, MAX_CANDIDATE_CUTS)]
    if len(parts) > 1 and sum(part[0].size for part in parts) > MAX_CANDIDATE_CUTS:
        parts = [_best_cuts(parts, MAX_CANDIDATE_CUTS)]
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty, empty, np.zeros(0)
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def _best_cuts(parts: list, limit: int) -> tuple:
    """The ``limit`` cuts of ``parts`` with the highest LLR (ties: any of them, the
    same on every run)."""
    g, s, w, c, n, val = (np.concatenate(x) for x in zip(*parts, strict=True))
    top = np.argpartition(-val, limit - 1)[:limit] if val.size > limit else slice(None)
    return g[top], s[top], w[top], c[top], n[top], val[top]


def observed_cuts(
    data: ScanData,
    model: str,
    *,
    min_reports: int,
    max_window: int | None = None,
    limit: int = 20,
    leave_branch_out: bool = True,
) -> list[Cut]:
    """Most likely cut and secondary non-overlapping cuts, ranked by LLR (descending).

    Only cuts with ``observed >= min_reports`` and LLR > 0 are considered; at most
    ``limit`` cuts are returned.  ``leave_branch_out`` only affects ``targeted``.
    """
    if data.n_reports == 0:
        return []
    m = _model(data, model, max_window, leave_branch_out)
    counts, case_counts = m.observed_counts()
    g, s, w, c, n, val = _all_cuts(m, counts, int(min_reports), case_counts)
    if val.size == 0 or limit <= 0:
        return []
    order = np.lexsort((w, s, g, -val))
    g, s, w, c, n, val = g[order], s[order], w[order], c[order], n[order], val[order]
    e_end = s + w - 1
    alive = np.ones(val.size, dtype=bool)
    tree = m.tree
    cuts: list[Cut] = []
    pos = 0
    while len(cuts) < limit:
        nxt = np.flatnonzero(alive[pos:])
        if nxt.size == 0:
            break
        i = pos + int(nxt[0])
        gi, si, wi, ei = int(g[i]), int(s[i]), int(w[i]), int(e_end[i])
        ci, ni = int(c[i]), int(n[i])
        expected = m.cut_expected(wi, gi, si, ci, ni)
        cuts.append(Cut(model, gi, si, ei, ci, float(expected), float(val[i]), ni))
        # drop every later cut sharing a unit-period cell with this one
        overlap = (s[i:] <= ei) & (e_end[i:] >= si) & tree.related(gi, g[i:])
        alive[i:] &= ~overlap
        pos = i + 1
    return cuts


def _rng(entropy, i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(int(i),)))


def replica_maxima(
    data: ScanData,
    model: str,
    *,
    entropy: int | Sequence[int],
    start: int,
    stop: int,
    min_reports: int,
    max_window: int | None = None,
    leave_branch_out: bool = True,
) -> np.ndarray:
    """float64 [stop - start]: maximum LLR over cuts (with c >= min_reports) of null
    replicas ``start .. stop-1``.  Replica i uses
    ``default_rng(SeedSequence(entropy, spawn_key=(i,)))``, so any chunking of the replica
    range concatenates to the same array."""
    if not 0 <= start <= stop:
        raise ValueError("need 0 <= start <= stop")
    out = np.zeros(stop - start, dtype=np.float64)
    if data.n_reports == 0:
        return out
    m = _model(data, model, max_window, leave_branch_out)
    for k, i in enumerate(range(start, stop)):
        out[k] = m.max_statistic(m.replica_counts(_rng(entropy, i)), int(min_reports))
    return out


def replica_maxima_pair(
    data: ScanData,
    models: tuple[str, str],
    *,
    entropy: int | Sequence[int],
    start: int,
    stop: int,
    min_reports: int,
    max_window: int | None = None,
) -> np.ndarray:
    """float64 [stop - start, 2]: the maxima of both ``models`` on the same null replicas
    ``start .. stop-1``, each replica drawn once (replica i from
    ``default_rng(SeedSequence(entropy, spawn_key=(i,)))``) and scored by both.  The two
    models must draw their replicas alike (e.g. ``profile_counts`` and ``profile``);
    column j equals :func:`replica_maxima` of ``models[j]`` with the same entropy."""
    if not 0 <= start <= stop:
        raise ValueError("need 0 <= start <= stop")
    out = np.zeros((stop - start, 2), dtype=np.float64)
    if data.n_reports == 0:
        return out
    first, second = (_model(data, name, max_window, True) for name in models)
    if type(first).replica_counts is not type(second).replica_counts:
        raise ValueError(f"models {models} do not draw their replicas alike")
    for k, i in enumerate(range(start, stop)):
        counts = second.replica_counts(_rng(entropy, i))
        out[k, 0] = first.max_statistic(counts, int(min_reports))
        out[k, 1] = second.max_statistic(counts, int(min_reports))
    return out


def observed_maximum(
    data: ScanData,
    model: str,
    *,
    min_reports: int,
    max_window: int | None = None,
    leave_branch_out: bool = True,
) -> float:
    """The test statistic on the observed data (same code path as the replicas)."""
    if data.n_reports == 0:
        return 0.0
    m = _model(data, model, max_window, leave_branch_out)
    return m.max_statistic(m.observed_tm(), int(min_reports))


def monte_carlo_p(llr: float, maxima: np.ndarray) -> float:
    """``(1 + #{maxima >= llr}) / (S + 1)``; ties count against the cluster."""
    maxima = np.asarray(maxima, dtype=np.float64)
    return float((1 + np.count_nonzero(maxima >= llr)) / (maxima.size + 1))


def bonferroni(p: float, n_models: int) -> float:
    """Bonferroni adjustment across models: ``min(1, p * n_models)``."""
    return float(min(1.0, p * max(1, int(n_models))))


def detect(
    data: ScanData,
    *,
    min_reports: int,
    entropy: int | Sequence[int],
    n_replicas: int = DEFAULT_REPLICAS,
    models: Sequence[str] | None = None,
    max_window: int | None = None,
    limit: int = 20,
    leave_branch_out: bool = True,
) -> list[Detection]:
    """Single-process convenience: run every model in ``models`` (default: all available),
    score cuts with Monte Carlo p-values and Bonferroni-adjust over the models run.
    Returns detections sorted by adjusted p-value, then LLR (descending)."""
    models = list(available_models(data) if models is None else models)
    out: list[Detection] = []
    for model in models:
        cuts = observed_cuts(
            data, model, min_reports=min_reports, max_window=max_window, limit=limit,
            leave_branch_out=leave_branch_out,
        )
        if not cuts:
            continue
        maxima = replica_maxima(
            data, model, entropy=entropy, start=0, stop=n_replicas, min_reports=min_reports,
            max_window=max_window, leave_branch_out=leave_branch_out,
        )
        for cut in cuts:
            p = monte_carlo_p(cut.llr, maxima)
            out.append(Detection(cut, p, bonferroni(p, len(models)), len(models), n_replicas))
    out.sort(key=lambda d: (d.p_adjusted, -d.cut.llr))
    return out


def cut_cells(data: ScanData, cut: Cut) -> set[tuple[int, int]]:
    """Unit-period cells covered by a cut (every unit of the branch x every period)."""
    units = data._tree.members(cut.branch)
    return {(int(u), t) for u in units for t in range(cut.start, cut.end + 1)}
