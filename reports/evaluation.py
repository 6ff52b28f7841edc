"""Evaluation harness for the scan (pure numpy, no Django).

:func:`evaluate` runs seeded synthetic scenarios (:mod:`reports.simulate`) per scenario
*cell* and returns one :class:`EvalRow` per (cell, method):

* cells (:func:`default_cells`): drive level team/department/org x length 1/2/4/8 periods x
  relative risk 1.5/2/3/5; null without and with a review season; drives inside a review
  season; signature-carrying drives of modest relative risk.  :func:`shape_cells` with
  :func:`weekly_config` (26 weeks, ~160 background reports, ~100 teams in ~22
  departments): fixed numbers of drive reports carrying the attrition pattern, visible
  only in counts, or with a half-way signal mix, at the end of the study, two at once;
* methods: each scan model on its own (raw Monte Carlo p <= alpha), among them ``joint``
  (per cut the ``targeted`` LLR plus the ``signature`` LLR, calibrated on replicas that
  permute report periods and case labels together, so it needs no Bonferroni between the
  two) and ``profile`` (``joint`` with the counts scored against a time profile half way
  between the rest's and a uniform one), ``profile_floor`` (``profile`` whose signature
  LLR counts only on cuts holding at least ``CASE_FLOOR`` cases, the default),
  ``profile_counts`` (``profile``'s counts part alone, an experiment), ``best`` (an
  experiment: the min-p of ``profile_counts`` and ``profile``, calibrated on the same
  replicas, see :func:`_min_p`; its cut is that of the part with the smaller p),
  ``targeted_classic`` (targeted without
  leave-branch-out, to show the gain), ``combined`` (the detector a default run uses: any
  model of ``DEFAULT_MODELS`` with Bonferroni-adjusted p <= alpha, which for the single
  default model ``profile_floor`` is ``profile_floor`` itself; its cut is the one with the
  smallest adjusted p, ties broken by model order in ``reports.scan.MODELS``;
  ``targeted``, ``signature``, ``joint``, ``profile`` and ``profile_floor`` condition on
  each branch's own total, so unit reporting habits and company-wide seasons do not move
  their nulls, unlike ``wave`` and ``per_capita``), ``combined_all`` (the same over the
  four single models ``targeted``, ``wave``, ``signature`` and ``per_capita``, where
  available), and two baselines on the same data:
  ``naive_threshold`` (alarm when any team has >= k reports in one period) and ``ears_c2``
  (EARS C2 on every branch's series: 7-period baseline, 2-period lag, sd floored at 0.5),
  both calibrated on separate null scenarios (no review season) to a false-alarm rate
  of at most ``alpha``; and ``oracle``, a reference and not a detector: on drive cells
  only, a one-sided Poisson test at ``alpha`` of the planted branch and window against the
  true background mean of those cells (reporting habits and season included), i.e. the
  power of a test that knew where, when and against what to look;
* figures: ``alarm_rate`` (type-I error on null cells, power on drive cells),
  ``localization`` (mean Jaccard of detected vs planted (team, period) cells over the
  scenarios that alarmed), ``extended_power`` (alarm and Jaccard >= 0.5), each rate with
  its Wilson 95% interval, and :func:`paired_comparisons` of the default against every
  baseline on the same surveys (paired differences with Newcombe's interval).

The simulated company's shape (``EvalConfig.shape``, a :class:`reports.simulate.OrgShape`)
defaults to the one the published figures use; larger teams or more teams per department
show how power grows with the size of the surveyed units.

CI runs tiny evaluations (few cells, few scenarios, few replicas); the full one
(``python manage.py evaluate_detection --cells all``, or ``python -m reports.evaluation``)
runs offline and its table and :func:`targets_summary` go to BENCHMARKS.md.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from reports import scan
from reports.simulate import Drive, OrgShape, SyntheticDataset, simulate

__all__ = [
    "CONFIGS",
    "EvalConfig",
    "EvalRow",
    "PairedComparison",
    "ScenarioCell",
    "default_cells",
    "describe_shape",
    "evaluate",
    "format_intervals",
    "format_paired",
    "format_table",
    "paired_comparisons",
    "parse_range",
    "select_cells",
    "shape_cells",
    "targets_summary",
    "weekly_config",
    "wilson_interval",
]

LEVELS = ("team", "department", "org")
LENGTHS = (1, 2, 4, 8)
RELATIVE_RISKS = (1.5, 2.0, 3.0, 5.0)
SCAN_METHODS = ("targeted", "wave", "signature", "per_capita", "joint", "profile",
                "profile_floor")
# Kept equal to reports.detection.DEFAULT_MODELS (that module needs Django).
DEFAULT_MODELS = ("profile_floor",)
SINGLE_MODELS = ("targeted", "wave", "signature", "per_capita")
# The experimental min-p of profile's counts part alone and profile (see _min_p).
MIN_P_PARTS = ("profile_counts", "profile")
METHODS = (
    *SCAN_METHODS,
    "profile_counts",
    "best",
    "targeted_classic",
    "combined",
    "combined_all",
    "naive_threshold",
    "ears_c2",
    "oracle",
)
BASELINES = ("naive_threshold", "ears_c2")
# The references the default detector is compared with, scenario by scenario: both
# reference scans (space-time permutation and uniform-time branch scan), the signature
# scan, the two defaults before it (joint, profile), EARS C2 and the oracle.
PAIRED_BASELINES = ("targeted", "wave", "signature", "joint", "profile", "ears_c2",
                    "oracle")


@dataclass(frozen=True)
class ScenarioCell:
    """One scenario cell; ``level is None`` means a null scenario (no drive).

    ``start`` fixes the drive start (None: random in ``earliest_start .. T - length``;
    negative: from the end of the study, ``-length`` ends the drive with it).
    ``extra_reports`` plants that many drive reports instead of a relative risk;
    ``signals`` is the drive reports' signal distribution (:data:`DRIVE_SIGNALS`);
    ``n_drives`` drives of this kind are planted at once (distinct units unless the
    draw repeats one); ``every_outcome``: every respondent gives an outcome."""

    name: str
    level: str | None = None
    length: int = 0
    relative_risk: float = 1.0
    season: bool = False
    signature_share: float = 0.0
    start: int | None = None
    extra_reports: int | None = None
    signals: str = "pattern"
    n_drives: int = 1
    every_outcome: bool = False

    @property
    def is_null(self) -> bool:
        return self.level is None


@dataclass(frozen=True)
class EvalConfig:
    """Scenario settings shared by all cells (periods are abstract weeks/months)."""

    n_periods: int = 20
    base_rate: float = 0.04
    habit_shape: float = 2.0
    season_periods: tuple[int, ...] = (12, 13, 14)
    season_multiplier: float = 2.5
    earliest_start: int = 6
    min_reports: int = 5
    alpha: float = 0.05
    shape: OrgShape = field(default_factory=OrgShape)


@dataclass(frozen=True)
class EvalRow:
    cell: str
    kind: str  # "null" or "drive"
    level: str | None
    length: int
    relative_risk: float
    season: bool
    signature_share: float
    method: str
    n_scenarios: int
    alarm_rate: float
    localization: float
    extended_power: float
    # per scenario, in scenario order: alarm, and alarm on the right unit and periods
    # (Jaccard >= 0.5), so that methods can be compared on the same surveys
    alarms: tuple[bool, ...] = ()
    extended: tuple[bool, ...] = ()

    @property
    def alarm_interval(self) -> tuple[float, float]:
        return wilson_interval(sum(self.alarms), len(self.alarms))

    @property
    def extended_interval(self) -> tuple[float, float]:
        return wilson_interval(sum(self.extended), len(self.extended))


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a binomial proportion; (nan, nan) if n=0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PairedComparison:
    """Two methods on the same surveys of one cell: ``difference`` = rate of ``method``
    minus rate of ``baseline`` (alarm rate, or extended power with ``measure="extended"``),
    ``better``/``worse`` the surveys only one of them got right, and ``interval`` the 95%
    interval of the paired difference (Newcombe's method 10, from Wilson intervals and
    the phi correlation of the pairs)."""

    cell: str
    measure: str
    method: str
    baseline: str
    n: int
    difference: float
    interval: tuple[float, float]
    better: int
    worse: int
    kind: str = "drive"
    # why the pair does not count towards "not below any baseline": "reference" (the
    # oracle is no detector), "uncalibrated" (the baseline's false alarms on the matching
    # null cell exceed alpha + 0.02, so its alarms are not power), or ""
    excluded: str = ""

    @property
    def not_below(self) -> bool:
        """The method is not significantly below the baseline (upper bound >= 0)."""
        return self.interval[1] >= 0

    @property
    def counts(self) -> bool:
        """The pair is a power comparison the target is judged on."""
        return self.kind == "drive" and not self.excluded


def paired_difference(x: Sequence[bool], y: Sequence[bool]) -> tuple[float, tuple[float, float]]:
    """Difference of two paired proportions with Newcombe's (1998) method 10 interval."""
    x = np.asarray(x, dtype=bool)
    y = np.asarray(y, dtype=bool)
    n = x.size
    if n == 0:
        return math.nan, (math.nan, math.nan)
    a = int(np.sum(x & y))
    b = int(np.sum(x & ~y))
    c = int(np.sum(~x & y))
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n)
    l2, u2 = wilson_interval(a + c, n)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denom) if denom > 0 else 0.0
    diff = p1 - p2
    lower = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)
                                 + (u2 - p2) ** 2))
    upper = diff + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2)
                                 + (p2 - l2) ** 2))
    return diff, (max(-1.0, lower), min(1.0, upper))


def paired_comparisons(rows: Sequence[EvalRow], *, method: str = "combined",
                       baselines: Sequence[str] = PAIRED_BASELINES,
                       alpha: float = 0.05) -> list[PairedComparison]:
    """``method`` against every baseline on every cell where both ran: alarm rate on null
    cells, power and extended power on drive cells.  A drive cell's matching null cell is
    ``null+season`` if it has a review season, else ``null``."""
    by = {(r.cell, r.method): r for r in rows}

    def excluded(row: EvalRow, base: str, measure: str) -> str:
        if base == "oracle":
            return "reference"
        null = by.get(("null+season" if row.season else "null", base))
        if measure == "alarm" and null is not None and null.alarm_rate > alpha + 0.02:
            return "uncalibrated"
        return ""

    out = []
    for cell in dict.fromkeys(r.cell for r in rows):
        mine = by.get((cell, method))
        if mine is None:
            continue
        for base in baselines:
            other = by.get((cell, base))
            if other is None or base == method or len(other.alarms) != len(mine.alarms):
                continue
            measures = [("alarm", mine.alarms, other.alarms)]
            if mine.kind == "drive":
                measures.append(("extended", mine.extended, other.extended))
            for measure, x, y in measures:
                diff, interval = paired_difference(x, y)
                xa, ya = np.asarray(x, dtype=bool), np.asarray(y, dtype=bool)
                out.append(PairedComparison(cell, measure, method, base, int(xa.size), diff,
                                            interval, int(np.sum(xa & ~ya)),
                                            int(np.sum(~xa & ya)), mine.kind,
                                            excluded(mine, base, measure)))
    return out


def format_paired(comparisons: Sequence[PairedComparison]) -> str:
    """One line per (cell, measure, baseline): difference [95% interval], the surveys
    only the method / only the baseline got right (+ / -), and BELOW where the method is
    significantly below a baseline it is judged against (or why it is not judged)."""
    lines = [f"{'cell':32} {'measure':8} {'baseline':10} {'n':>4} {'diff':>6} "
             f"{'95% interval':>16} {'+':>4} {'-':>4}"]
    for c in comparisons:
        flag = ("" if c.kind == "null" else f"  ({c.excluded})" if c.excluded
                else "" if c.not_below else "  BELOW")
        lines.append(f"{c.cell:32} {c.measure:8} {c.baseline:10} {c.n:>4} {c.difference:+6.3f} "
                     f"[{c.interval[0]:+6.3f}, {c.interval[1]:+6.3f}] {c.better:>4} "
                     f"{c.worse:>4}{flag}")
    return "\n".join(lines)


def format_intervals(rows: Sequence[EvalRow]) -> str:
    """One line per (cell, method): alarm rate and extended power, each with its Wilson
    95% interval."""
    lines = [f"{'cell':32} {'method':16} {'n':>4} {'rate':>5} {'95% interval':>14} "
             f"{'ext':>5} {'95% interval':>14}"]
    for r in rows:
        low, high = r.alarm_interval
        line = f"{r.cell:32} {r.method:16} {r.n_scenarios:>4} {r.alarm_rate:5.2f} " \
               f"[{low:4.2f}, {high:4.2f}]"
        if r.kind == "drive":
            elow, ehigh = r.extended_interval
            line += f" {r.extended_power:5.2f} [{elow:4.2f}, {ehigh:4.2f}]"
        lines.append(line)
    return "\n".join(lines)


def weekly_config() -> EvalConfig:
    """A weekly survey like the ones filed through the public API: 26 weeks, about 100
    teams of 4-12 people in about 22 departments of 5 orgs, about 160 background reports,
    a three-week review season late in the half-year (in the cells that have one)."""
    shape = OrgShape(n_orgs=5, departments_per_org=(3, 6), teams_per_department=(3, 6))
    people = shape.n_orgs * sum(shape.departments_per_org) / 2 * shape.mean_department_size
    return EvalConfig(n_periods=26, base_rate=160 / (26 * people), season_periods=(18, 19, 20),
                      earliest_start=4, shape=shape)


CONFIGS = {"default": EvalConfig, "weekly": weekly_config}


def shape_cells() -> list[ScenarioCell]:
    """The shapes of drive the weekly survey is evaluated on, with fixed numbers of drive
    reports: department drives carrying the attrition pattern (9 reports in 3 weeks, and
    a weak one of 6), a team drive (5 in 2 weeks), a drive in the last two weeks, two drives
    at once, a drive visible only in counts (9 in 3 weeks, signals like everyone else's,
    also at the end of the study, in a review season and with outcomes from every
    respondent) and one whose signal mix is half way between the background and the
    pattern (6 in 3 weeks); and the null cells without and with a review season."""
    dept = dict(level="department", length=3)
    return [
        ScenarioCell("null"),
        ScenarioCell("null+season", season=True),
        ScenarioCell("pattern/department", **dept, extra_reports=9, signature_share=0.8),
        ScenarioCell("pattern/weak-department", **dept, extra_reports=6, signature_share=0.8),
        ScenarioCell("pattern/team", level="team", length=2, extra_reports=5,
                     signature_share=0.8),
        ScenarioCell("pattern/end", level="department", length=2, start=-2, extra_reports=6,
                     signature_share=0.8),
        ScenarioCell("pattern/two-drives", **dept, extra_reports=6, signature_share=0.8,
                     n_drives=2),
        ScenarioCell("counts/department", **dept, extra_reports=9, signals="background"),
        ScenarioCell("counts/end", level="department", length=2, start=-2, extra_reports=8,
                     signals="background"),
        ScenarioCell("counts/in-season", **dept, extra_reports=9, signals="background",
                     season=True, start=17),
        ScenarioCell("counts/every-outcome", **dept, extra_reports=9, signals="background",
                     every_outcome=True),
        ScenarioCell("halfway/department", **dept, extra_reports=6, signals="halfway"),
    ]


def default_cells() -> list[ScenarioCell]:
    cells = [
        ScenarioCell("null"),
        ScenarioCell("null+season", season=True),
    ]
    for level in LEVELS:
        for length in LENGTHS:
            for rr in RELATIVE_RISKS:
                cells.append(ScenarioCell(f"{level}/L{length}/RR{rr:g}", level, length, rr))
    for length, rr in ((2, 3.0), (4, 3.0), (4, 5.0)):
        cells.append(
            ScenarioCell(
                f"department/L{length}/RR{rr:g}/in-season", "department", length, rr,
                season=True, start=11,
            )
        )
    for rr in (1.5, 2.0):
        cells.append(
            ScenarioCell(
                f"department/L4/RR{rr:g}/signature", "department", 4, rr, signature_share=0.9
            )
        )
    return cells


# --------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------


def _leaf_counts(ds: SyntheticDataset) -> np.ndarray:
    counts = np.zeros((ds.n_units, ds.n_periods), dtype=np.int64)
    np.add.at(counts, (ds.report_units, ds.report_periods), 1)
    return counts


def _branch_counts(ds: SyntheticDataset) -> np.ndarray:
    counts = _leaf_counts(ds)
    for u in range(ds.n_units - 1, 0, -1):  # children after parents: accumulate upwards
        p = ds.parents[u]
        if p >= 0:
            counts[p] += counts[u]
    return counts


def _naive_stat(ds: SyntheticDataset) -> float:
    return float(_leaf_counts(ds).max(initial=0))


def _naive_cells(ds: SyntheticDataset, k: float) -> set[tuple[int, int]]:
    u, t = np.nonzero(_leaf_counts(ds) >= k)
    return {(int(a), int(b)) for a, b in zip(u, t, strict=True)}


_C2_BASELINE = 7
_C2_LAG = 2
_C2_SD_FLOOR = 0.5


def _c2_matrix(ds: SyntheticDataset) -> np.ndarray:
    """EARS C2 statistic [U, T] (NaN where the baseline is not available)."""
    x = _branch_counts(ds).astype(np.float64)
    out = np.full(x.shape, np.nan)
    first = _C2_BASELINE + _C2_LAG
    for t in range(first, ds.n_periods):
        base = x[:, t - first : t - _C2_LAG]
        mu = base.mean(axis=1)
        sd = np.maximum(base.std(axis=1, ddof=1), _C2_SD_FLOOR)
        out[:, t] = (x[:, t] - mu) / sd
    return out


def _c2_stat(ds: SyntheticDataset) -> float:
    c2 = _c2_matrix(ds)
    return float(np.nanmax(c2)) if np.isfinite(c2).any() else -math.inf


def _c2_cells(ds: SyntheticDataset, h: float) -> set[tuple[int, int]]:
    c2 = _c2_matrix(ds)
    cells: set[tuple[int, int]] = set()
    for g, t in zip(*np.nonzero(np.nan_to_num(c2, nan=-np.inf) > h), strict=True):
        cells |= ds.leaf_cells(int(g), int(t), int(t))
    return cells


# --------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------


def _seed(seed: int, name: str, k: int) -> tuple[int, int, int]:
    return (int(seed), zlib.crc32(name.encode()), int(k))


def _dataset(cell: ScenarioCell, cfg: EvalConfig, seed) -> SyntheticDataset:
    drives = []
    if not cell.is_null:
        drives = [
            Drive(cell.level, cell.length, cell.relative_risk, start=cell.start,
                  signature_share=cell.signature_share, extra_reports=cell.extra_reports,
                  signals=cell.signals)
        ] * cell.n_drives
    return simulate(
        seed,
        n_periods=cfg.n_periods,
        shape=cfg.shape,
        base_rate=cfg.base_rate,
        habit_shape=cfg.habit_shape,
        season_periods=cfg.season_periods if cell.season else (),
        season_multiplier=cfg.season_multiplier,
        drives=drives,
        earliest_start=cfg.earliest_start,
        every_outcome=cell.every_outcome,
    )


def _jaccard(a: set, b: set) -> float:
    if not a and not b:
        return math.nan
    return len(a & b) / len(a | b)


def _poisson_sf(c: int, mu: float) -> float:
    """P(X >= c) for X ~ Poisson(mu), summed on the side without cancellation."""
    if c <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    log_mu = math.log(mu)

    def pmf(k: int) -> float:
        return math.exp(k * log_mu - mu - math.lgamma(k + 1))

    if c <= mu:
        return max(0.0, 1.0 - math.fsum(pmf(k) for k in range(c)))
    # beyond c + 40 sd + 50 the terms are below double precision relative to the first
    return min(1.0, math.fsum(pmf(k) for k in range(c, c + int(40 * math.sqrt(c)) + 50)))


def _oracle(ds: SyntheticDataset, alpha: float) -> tuple[bool, set]:
    """Alarm of the reference test that knows each planted branch, window and true
    background mean (one-sided Poisson at ``alpha`` per drive; a drive cell plants one)."""
    alarm = False
    for drive in ds.drives:
        cells = ds.leaf_cells(drive.unit, drive.start, drive.start + drive.length - 1)
        leaves = np.array(sorted({u for u, _ in cells}), dtype=np.int64)
        window = slice(drive.start, drive.start + drive.length)
        mu = float(ds.background_mean[leaves, window].sum())
        inside = np.isin(ds.report_units, leaves) & (ds.report_periods >= drive.start) & (
            ds.report_periods < drive.start + drive.length)
        alarm |= _poisson_sf(int(inside.sum()), mu) <= alpha
    return alarm, set(ds.planted_cells) if alarm else set()


def _scan_outcomes(ds, cfg: EvalConfig, n_replicas: int, entropy, include_classic: bool,
                   wanted: Sequence[str] = METHODS):
    """{method: (p, cells)} for each scan model, targeted_classic and combined that
    ``wanted`` needs (models are scanned only if asked for, directly or by a combination;
    each draws its replicas from the same seeds whatever else is run)."""
    data = ds.to_scan_data()
    models = scan.available_models(data)
    needed = {m for m in wanted if m in models}
    if "combined" in wanted:
        needed |= set(DEFAULT_MODELS)
    if "combined_all" in wanted:
        needed |= set(models) & set(SINGLE_MODELS)
    out: dict[str, tuple[float, set]] = {}
    if ("best" in wanted or "profile_counts" in wanted) and "profile" in models:
        # both parts from one draw per replica; profile's maxima are then the ones its
        # own column would draw (same entropy, same generator), so they are reused
        parts, best = _min_p(ds, data, cfg, n_replicas, entropy)
        out.update(parts)
        if "best" in wanted:
            out["best"] = best
        needed.discard("profile")
    runs = [(m, m, True) for m in models if m in needed]
    if include_classic and "targeted" in models and "targeted_classic" in wanted:
        runs.append(("targeted_classic", "targeted", False))
    for label, model, lbo in runs:
        cuts = scan.observed_cuts(
            data, model, min_reports=cfg.min_reports, limit=1, leave_branch_out=lbo
        )
        if not cuts:
            out[label] = (1.0, set())
            continue
        maxima = scan.replica_maxima(
            data, model, entropy=entropy, start=0, stop=n_replicas,
            min_reports=cfg.min_reports, leave_branch_out=lbo,
        )
        cut = cuts[0]
        out[label] = (scan.monte_carlo_p(cut.llr, maxima), ds.leaf_cells(cut.branch, cut.start,
                                                                          cut.end))
    for label, group in (("combined", DEFAULT_MODELS), ("combined_all", SINGLE_MODELS)):
        if label not in wanted:
            continue
        used = [m for m in scan.MODELS if m in group and m in models]
        best = (1.0, set())
        for m in used:
            adj = scan.bonferroni(out[m][0], len(used))
            if adj < best[0]:
                best = (adj, out[m][1])
        out[label] = best
    return out


def _min_p(ds, data, cfg: EvalConfig, n_replicas: int, entropy):
    """({part: (p, cells)} for ``MIN_P_PARTS``, (p, cells) of ``best``).

    ``best`` combines ``profile_counts`` (profile's counts LLR alone) and ``profile`` by
    min-p on the same replicas (:func:`reports.scan.replica_maxima_pair`): each part's
    Monte Carlo p ``(1 + #{M_i >= m}) / (S + 1)``, ``P = min(p1, p2)``; each replica's
    ``P_i`` is the same min of its two maxima's rank p-values in the pool of the S
    replicas and the observed value (``#{j in pool: M_j >= M_i} / (S + 1)``, ties
    against), so the observed and the replicas are scored alike; the final p is
    ``(1 + #{P_i <= P}) / (S + 1)``.  No Bonferroni.  Its cut is that of the part with
    the smaller p (ties: profile)."""
    maxima = scan.replica_maxima_pair(data, MIN_P_PARTS, entropy=entropy, start=0,
                                      stop=n_replicas, min_reports=cfg.min_reports)
    parts: dict[str, tuple[float, set]] = {}
    observed, cells = [], []
    for model in MIN_P_PARTS:
        cuts = scan.observed_cuts(data, model, min_reports=cfg.min_reports, limit=1)
        observed.append(cuts[0].llr if cuts else 0.0)
        cells.append(ds.leaf_cells(cuts[0].branch, cuts[0].start, cuts[0].end) if cuts
                     else set())
    ps = []
    for j, model in enumerate(MIN_P_PARTS):
        p = scan.monte_carlo_p(observed[j], maxima[:, j]) if observed[j] > 0 else 1.0
        ps.append(p)
        parts[model] = (p, cells[j] if observed[j] > 0 else set())
    p_obs = min(ps)
    size = n_replicas + 1
    rep_p = np.ones(n_replicas)
    for j in range(len(MIN_P_PARTS)):
        pool = np.append(maxima[:, j], observed[j])
        # #{pool >= M_i} for every replica i
        at_least = size - np.searchsorted(np.sort(pool), maxima[:, j], side="left")
        rep_p = np.minimum(rep_p, at_least / size)
    p = float((1 + np.count_nonzero(rep_p <= p_obs)) / size)
    part = int(np.argmin(ps[::-1]))  # ties go to the last part, profile
    chosen = MIN_P_PARTS[len(MIN_P_PARTS) - 1 - part]
    return parts, (p, parts[chosen][1])


@dataclass
class _Calibration:
    naive_k: float
    c2_h: float


def calibrate_baselines(
    cfg: EvalConfig, n_scenarios: int, seed: int = 0
) -> _Calibration:
    """Thresholds giving a null false-alarm rate <= alpha on separate null scenarios."""
    cell = ScenarioCell("calibration-null")
    naive, c2 = [], []
    for k in range(n_scenarios):
        ds = _dataset(cell, cfg, _seed(seed, cell.name, k))
        naive.append(_naive_stat(ds))
        c2.append(_c2_stat(ds))
    naive = np.array(naive)
    c2 = np.array(c2)
    k_thr = 1.0
    while np.mean(naive >= k_thr) > cfg.alpha:
        k_thr += 1.0
    h = float(np.quantile(c2, 1 - cfg.alpha, method="higher"))
    return _Calibration(k_thr, h)


def evaluate(
    cells: Iterable[ScenarioCell] | None = None,
    *,
    n_scenarios: int = 20,
    n_replicas: int = 99,
    n_calibration: int | None = None,
    seed: int = 0,
    config: EvalConfig | None = None,
    include_classic: bool = True,
    methods: Sequence[str] | None = None,
    n_null_scenarios: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[EvalRow]:
    """Run ``n_scenarios`` seeded scenarios per drive cell (``n_null_scenarios``, default
    the same, per null cell) and return one row per (cell, method).

    n_replicas: Monte Carlo replicas per model and scenario (p-value resolution
    1/(n_replicas+1)).  n_calibration: null scenarios used to calibrate the baselines
    (default ``max(100, 2 * n_scenarios)``).  seed: master seed; every scenario's seed is
    derived from (seed, cell name, scenario index) so cells are reproducible on their own.
    progress: called with each cell's name once the cell is done.
    """
    cfg = config or EvalConfig()
    cells = list(default_cells() if cells is None else cells)
    wanted = list(METHODS if methods is None else methods)
    unknown = set(wanted) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; expected some of {METHODS}")
    calib = None
    if set(wanted) & set(BASELINES):
        calib = calibrate_baselines(
            cfg, n_calibration if n_calibration is not None else max(100, 2 * n_scenarios),
            seed,
        )
    rows: list[EvalRow] = []
    for cell in cells:
        alarms: dict[str, list[bool]] = {m: [] for m in wanted}
        jacc: dict[str, list[float]] = {m: [] for m in wanted}
        count = n_null_scenarios if cell.is_null and n_null_scenarios else n_scenarios
        for k in range(count):
            sseed = _seed(seed, cell.name, k)
            ds = _dataset(cell, cfg, sseed)
            planted = set(ds.planted_cells)
            res = _scan_outcomes(ds, cfg, n_replicas, (*sseed, 1), include_classic, wanted)
            for m in wanted:
                if m in res:
                    p, cells_hit = res[m]
                    alarm = p <= cfg.alpha
                elif m == "naive_threshold":
                    alarm = _naive_stat(ds) >= calib.naive_k
                    cells_hit = _naive_cells(ds, calib.naive_k) if alarm else set()
                elif m == "ears_c2":
                    alarm = _c2_stat(ds) > calib.c2_h
                    cells_hit = _c2_cells(ds, calib.c2_h) if alarm else set()
                elif m == "oracle" and not cell.is_null:
                    alarm, cells_hit = _oracle(ds, cfg.alpha)
                else:
                    continue
                alarms[m].append(bool(alarm))
                jacc[m].append(_jaccard(cells_hit, planted) if alarm and planted else math.nan)
        for m in wanted:
            if not alarms[m]:
                continue
            a = np.array(alarms[m])
            j = np.array(jacc[m])
            hit = j[a & np.isfinite(j)]
            rows.append(
                EvalRow(
                    cell=cell.name,
                    kind="null" if cell.is_null else "drive",
                    level=cell.level,
                    length=cell.length,
                    relative_risk=cell.relative_risk,
                    season=cell.season,
                    signature_share=cell.signature_share,
                    method=m,
                    n_scenarios=int(a.size),
                    alarm_rate=float(a.mean()),
                    localization=float(hit.mean()) if hit.size else math.nan,
                    extended_power=(
                        math.nan if cell.is_null
                        else float(np.mean(a & (np.nan_to_num(j, nan=0.0) >= 0.5)))
                    ),
                    alarms=tuple(bool(x) for x in a),
                    extended=tuple(bool(x) for x in (a & (np.nan_to_num(j, nan=0.0) >= 0.5))),
                )
            )
        if progress is not None:
            progress(cell.name)
    return rows


def format_table(rows: Sequence[EvalRow]) -> str:
    """Plain-text table: one line per cell, one column group per method
    (rate = type-I error for null cells, power for drives; loc = mean Jaccard; ext =
    extended power)."""
    methods = [m for m in METHODS if any(r.method == m for r in rows)]
    by_cell: dict[str, dict[str, EvalRow]] = {}
    for r in rows:
        by_cell.setdefault(r.cell, {})[r.method] = r

    def fmt(x: float) -> str:
        return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:5.2f}"

    width = max([len("cell"), *(len(c) for c in by_cell)])
    head1 = f"{'':{width}}  {'n':>3}  " + "  ".join(f"{m:^17}" for m in methods)
    head2 = f"{'cell':{width}}  {'':>3}  " + "  ".join(
        f"{'rate':>5} {'loc':>5} {'ext':>5}" for _ in methods
    )
    lines = [head1, head2, "-" * len(head2)]
    for cell, per in by_cell.items():
        n = next(iter(per.values())).n_scenarios
        parts = []
        for m in methods:
            r = per.get(m)
            if r is None:
                parts.append(f"{'':17}")
            else:
                parts.append(f"{fmt(r.alarm_rate)} {fmt(r.localization)} {fmt(r.extended_power)}")
        lines.append(f"{cell:{width}}  {n:>3}  " + "  ".join(parts))
    return "\n".join(lines)


SMALL_DRIVES = ("team/L1/", "team/L2/")


def targets_summary(rows: Sequence[EvalRow], *, alpha: float = 0.05) -> list[str]:
    """One line per target of the combined detector (the default model set), each
    starting with PASS or MISS, so a reader sees at once which ones hold."""
    by = {(r.cell, r.method): r for r in rows}
    lines = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    for cell in ("null", "null+season"):
        r = by.get((cell, "combined"))
        if r is None:
            continue
        se = math.sqrt(alpha * (1 - alpha) / r.n_scenarios)
        ok = abs(r.alarm_rate - alpha) <= 0.02
        lines.append(f"{verdict(ok)} false alarms on {cell}: {r.alarm_rate:.3f} "
                     f"(target {alpha} +- 0.02; {r.n_scenarios} scenarios, binomial sd "
                     f"{se:.3f})")
    r = by.get(("department/L4/RR3", "combined"))
    if r is not None:
        lines.append(f"{verdict(r.alarm_rate >= 0.9)} power on department/L4/RR3: "
                     f"{r.alarm_rate:.2f} (target >= 0.9; extended {r.extended_power:.2f})")
    drive_cells = sorted({r.cell for r in rows if r.kind == "drive"
                          and r.relative_risk >= 2 and (r.cell, "combined") in by})
    for base in BASELINES:
        compared = [c for c in drive_cells if (c, base) in by]
        if not compared:
            continue
        lost = [c for c in compared
                if not by[(c, "combined")].extended_power > by[(c, base)].extended_power]
        lines.append(f"{verdict(not lost)} extended power above {base} on "
                     f"{len(compared) - len(lost)}/{len(compared)} drive cells with RR >= 2"
                     + (f"; not on: {', '.join(lost)}" if lost else ""))
    paired = [p for p in paired_comparisons(rows, alpha=alpha) if p.counts]
    if paired:
        below = sorted({f"{p.cell} ({p.measure} vs {p.baseline})" for p in paired
                        if not p.not_below})
        lines.append(f"{verdict(not below)} not below any baseline on the same surveys "
                     f"(power and extended power, paired 95% intervals) on "
                     f"{len({p.cell for p in paired})} drive cells"
                     + (f"; below on: {', '.join(below)}" if below else ""))
    small = sorted({r.cell for r in rows if r.kind == "drive"
                    and any(r.cell.startswith(p) for p in SMALL_DRIVES)
                    and (r.cell, "combined") in by})
    for single in SINGLE_MODELS:
        compared = [c for c in small if (c, single) in by]
        if not compared:
            continue
        lost = [c for c in compared
                if not by[(c, "combined")].extended_power > by[(c, single)].extended_power]
        lines.append(f"{verdict(not lost)} extended power above {single} on "
                     f"{len(compared) - len(lost)}/{len(compared)} team-level 1-2 period cells"
                     + (f"; not on: {', '.join(lost)}" if lost else ""))
    return lines


def select_cells(keys: Iterable[str], cells: Sequence[ScenarioCell] | None = None
                 ) -> list[ScenarioCell]:
    """Cells whose name contains one of ``keys``; a key starting with ``=`` names one cell
    exactly (``department/L4/RR3`` also matches its in-season variant, ``=department/L4/RR3``
    does not)."""
    cells = default_cells() if cells is None else cells
    keys = [k.strip() for k in keys if k.strip()]
    exact = {k[1:] for k in keys if k.startswith("=")}
    parts = [k for k in keys if not k.startswith("=")]
    return [c for c in cells if c.name in exact or any(k in c.name for k in parts)]


def parse_range(text: str) -> tuple[int, int]:
    """``"8-16"`` -> (8, 16); ``"12"`` -> (12, 12)."""
    lo, _, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"expected LOW-HIGH or N, got {text!r}") from None
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= LOW <= HIGH, got {text!r}")
    return low, high


def describe_shape(shape: OrgShape) -> str:
    return (f"{shape.n_orgs} orgs, {shape.departments_per_org[0]}-{shape.departments_per_org[1]} "
            f"departments per org, {shape.teams_per_department[0]}-"
            f"{shape.teams_per_department[1]} teams per department, {shape.team_size[0]}-"
            f"{shape.team_size[1]} people per team ({shape.mean_department_size:g} people per "
            "department on average)")


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    default = OrgShape()
    ap = argparse.ArgumentParser(description="Run the Chorus scan evaluation")
    ap.add_argument("--scenarios", type=int, default=20)
    ap.add_argument("--null-scenarios", type=int, default=None)
    ap.add_argument("--replicas", type=int, default=99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cells", default="",
                    help="comma-separated substrings of cell names (=NAME: exactly NAME)")
    ap.add_argument("--methods", default="", help="comma-separated methods (default: all)")
    ap.add_argument("--team-size", type=parse_range, default=default.team_size)
    ap.add_argument("--teams-per-department", type=parse_range,
                    default=default.teams_per_department)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="default")
    args = ap.parse_args(argv)
    weekly = args.config == "weekly"
    all_cells = shape_cells() if weekly else default_cells()
    cells = select_cells(args.cells.split(","), all_cells) if args.cells else all_cells
    if weekly:
        config = weekly_config()
    else:
        config = EvalConfig(shape=OrgShape(team_size=args.team_size,
                                           teams_per_department=args.teams_per_department))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] or None
    rows = evaluate(cells, n_scenarios=args.scenarios, n_null_scenarios=args.null_scenarios,
                    n_replicas=args.replicas, seed=args.seed, methods=methods, config=config)
    print(format_table(rows))
    print(f"\nshape: {describe_shape(config.shape)}")
    print("\n".join(targets_summary(rows)))
    print(format_intervals(rows))
    print(format_paired(paired_comparisons(rows)))


if __name__ == "__main__":
    main()
