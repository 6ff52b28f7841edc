"""Synthetic Chorus survey data with planted attrition drives (pure numpy, no Django).

One call, :func:`simulate`, builds a whole dataset from a seed:

* an org tree ``Company -> orgs -> departments -> teams`` (topological order, parents
  before children) with a headcount for every team (inner units have own headcount 0);
* background reports filed at teams: Poisson with mean
  ``team headcount * base_rate * habit[team] * season[period]`` where ``habit`` is
  gamma-distributed with mean 1 and shape ``habit_shape`` (reporting-habit overdispersion)
  and ``season`` is ``season_multiplier`` in the company-wide review-season periods, else 1;
* planted drives: in every team of the drive's branch and every period of its window, extra
  reports Poisson with mean ``(relative_risk - 1)`` times the background mean of that cell
  (or a fixed number ``extra_reports`` spread over those cells in proportion to it); the
  drive's ``signals`` say how its reports' signals are drawn: ``"pattern"`` (the drive
  probabilities, a share ``signature_share`` carrying the attrition-drive signature),
  ``"background"`` (like everyone else's: the drive shows only in counts) or
  ``"halfway"`` (every signal's probability half way between the background and the
  pattern, the signature's signals included);
* per report a tuple of signal codes and an outcome, or None where the respondent gave
  none (``every_outcome=True``: every respondent gives one).

Ground truth (``SyntheticDataset.planted_cells``) is the set of (team, period) cells inside
some drive (leaf-level cells: a drive at a department covers its teams x window).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from reports.scan import ScanData

__all__ = [
    "DRIVE_SIGNALS",
    "LEVELS",
    "OUTCOMES",
    "SIGNALS",
    "SIGNATURE_ALTERNATIVES",
    "SIGNATURE_REQUIRED",
    "Drive",
    "OrgShape",
    "SyntheticDataset",
    "has_signature",
    "simulate",
]

SIGNALS = (
    "prior_positive_standing",
    "abrupt_reversal",
    "recap_contradicts_meeting",
    "completed_work_disputed",
    "shifting_goalposts",
    "transfer_blocked",
    "coaching_plan",
    "peers_same_treatment",
    "exit_pressure",
)
OUTCOMES = (
    "still_in_role",
    "transferred",
    "resigned",
    "let_go",
    "on_plan",
    "prefer_not_to_say",
)
SIGNATURE_REQUIRED = ("prior_positive_standing", "abrupt_reversal")
SIGNATURE_ALTERNATIVES = ("recap_contradicts_meeting", "coaching_plan")
LEVELS = ("company", "org", "department", "team")

# per-signal probabilities for background reports and for drive reports
_BACKGROUND_SIGNAL_P = {
    "prior_positive_standing": 0.30,
    "abrupt_reversal": 0.20,
    "recap_contradicts_meeting": 0.10,
    "completed_work_disputed": 0.15,
    "shifting_goalposts": 0.20,
    "transfer_blocked": 0.08,
    "coaching_plan": 0.10,
    "peers_same_treatment": 0.10,
    "exit_pressure": 0.05,
}
_DRIVE_SIGNAL_P = {
    "prior_positive_standing": 0.45,
    "abrupt_reversal": 0.40,
    "recap_contradicts_meeting": 0.25,
    "completed_work_disputed": 0.40,
    "shifting_goalposts": 0.50,
    "transfer_blocked": 0.30,
    "coaching_plan": 0.25,
    "peers_same_treatment": 0.50,
    "exit_pressure": 0.40,
}
# A drive report of the full pattern carries the signature: both required signals, and
# one of the two alternatives on top of its own draw of it.
_PATTERN_SIGNAL_P = {
    code: 1.0 if code in SIGNATURE_REQUIRED
    else 0.5 + 0.5 * p if code in SIGNATURE_ALTERNATIVES
    else p
    for code, p in _DRIVE_SIGNAL_P.items()
}
_HALFWAY_SIGNAL_P = {
    code: (_BACKGROUND_SIGNAL_P[code] + _PATTERN_SIGNAL_P[code]) / 2 for code in SIGNALS
}
DRIVE_SIGNALS = ("pattern", "background", "halfway")
# outcome probabilities, "None" (no answer) last
_BACKGROUND_OUTCOME_P = (0.60, 0.10, 0.10, 0.03, 0.05, 0.07, 0.05)
_DRIVE_OUTCOME_P = (0.25, 0.05, 0.25, 0.15, 0.20, 0.05, 0.05)


def has_signature(signals: Iterable[str]) -> bool:
    """prior_positive_standing + abrupt_reversal + (recap_contradicts_meeting or
    coaching_plan)."""
    s = set(signals)
    return all(x in s for x in SIGNATURE_REQUIRED) and any(x in s for x in SIGNATURE_ALTERNATIVES)


@dataclass(frozen=True)
class OrgShape:
    """Inclusive (low, high) ranges drawn uniformly per parent; team_size per team."""

    n_orgs: int = 3
    departments_per_org: tuple[int, int] = (2, 4)
    teams_per_department: tuple[int, int] = (3, 5)
    team_size: tuple[int, int] = (4, 12)
    company: str = "Acme"

    @property
    def mean_department_size(self) -> float:
        """Expected people per department (the draws are independent and uniform)."""
        teams = sum(self.teams_per_department) / 2
        return teams * sum(self.team_size) / 2


@dataclass(frozen=True)
class Drive:
    """A planted drive.

    unit: branch root index, or a level name ("org", "department", "team") for a unit of
      that level drawn at random from the seed.
    start: first period, or None for a random start in ``earliest_start .. T - length``;
      a negative start counts from the end (``-length``: the drive ends with the study).
    length: number of periods.  relative_risk: multiplier on the background mean (> 1).
    signature_share: share of the drive's extra reports carrying the signature
      (``signals="pattern"`` only).
    extra_reports: if set, exactly this many drive reports, spread over the branch's
      cells in the window in proportion to their background mean (``relative_risk`` is
      then not used).
    signals: how the drive reports' signals are drawn, one of ``DRIVE_SIGNALS``.
    """

    unit: int | str
    length: int
    relative_risk: float
    start: int | None = None
    signature_share: float = 0.0
    extra_reports: int | None = None
    signals: str = "pattern"

    def __post_init__(self) -> None:
        if self.signals not in DRIVE_SIGNALS:
            raise ValueError(f"signals must be one of {DRIVE_SIGNALS}, got {self.signals!r}")


@dataclass
class SyntheticDataset:
    """All arrays are numpy; unit indices refer to ``unit_paths``/``parents``.

    headcount: float [U] own headcount (teams only; inner units 0).
    report_units/report_periods: int [N].  report_signals: tuple of signal codes per
    report.  report_outcomes: outcome code or None per report.  report_planted: bool [N],
    report generated by a drive.  drives: resolved drives (unit index and start filled in).
    planted_cells: (team, period) cells inside a drive.  season_periods: review-season
    periods.  background_mean: float [U, T], the Poisson mean of the background reports of
    every cell (headcount x base rate x reporting habit x season; 0 at inner units), which
    no detector can know: the evaluation's oracle reference uses it.
    """

    seed: int
    n_periods: int
    unit_paths: list[str]
    unit_levels: list[str]
    parents: np.ndarray
    headcount: np.ndarray
    report_units: np.ndarray
    report_periods: np.ndarray
    report_signals: list[tuple[str, ...]]
    report_outcomes: list[str | None]
    report_planted: np.ndarray
    drives: tuple[Drive, ...]
    season_periods: tuple[int, ...]
    planted_cells: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    background_mean: np.ndarray | None = None

    @property
    def n_units(self) -> int:
        return int(self.parents.size)

    @property
    def n_reports(self) -> int:
        return int(self.report_units.size)

    @property
    def report_cases(self) -> np.ndarray:
        return np.array([has_signature(s) for s in self.report_signals], dtype=bool)

    def units_at_level(self, level: str) -> np.ndarray:
        return np.array([i for i, lv in enumerate(self.unit_levels) if lv == level], dtype=int)

    def branch_units(self, unit: int) -> np.ndarray:
        """unit and all its descendants."""
        return branch_units(self.parents, unit)

    def leaf_cells(self, unit: int, start: int, end: int) -> set[tuple[int, int]]:
        """(team, period) cells of the branch's leaves for periods start..end inclusive."""
        leaves = self.branch_units(unit)
        leaves = leaves[self.headcount[leaves] > 0]
        return {(int(u), t) for u in leaves for t in range(start, end + 1)}

    def to_scan_data(self, *, with_cases: bool = True, with_headcount: bool = True) -> ScanData:
        return ScanData(
            parents=self.parents,
            report_units=self.report_units,
            report_periods=self.report_periods,
            n_periods=self.n_periods,
            report_cases=self.report_cases if with_cases else None,
            headcount=self.headcount if with_headcount else None,
        )


def branch_units(parents: np.ndarray, unit: int) -> np.ndarray:
    inside = np.zeros(parents.size, dtype=bool)
    inside[unit] = True
    for u in range(unit + 1, parents.size):
        p = parents[u]
        if p >= 0 and inside[p]:
            inside[u] = True
    return np.flatnonzero(inside)


def _build_org(rng: np.random.Generator, shape: OrgShape):
    paths = [shape.company]
    levels = ["company"]
    parents = [-1]
    head = [0.0]
    org_ids = []
    for o in range(shape.n_orgs):
        org_ids.append(len(paths))
        paths.append(f"{shape.company}/Org {o + 1}")
        levels.append("org")
        parents.append(0)
        head.append(0.0)
    dept_ids = []
    for oi, org in enumerate(org_ids):
        for d in range(int(rng.integers(shape.departments_per_org[0],
                                        shape.departments_per_org[1] + 1))):
            dept_ids.append(len(paths))
            paths.append(f"{shape.company}/Org {oi + 1}/Dept {d + 1}")
            levels.append("department")
            parents.append(org)
            head.append(0.0)
    for dept in dept_ids:
        prefix = paths[dept]
        for t in range(int(rng.integers(shape.teams_per_department[0],
                                        shape.teams_per_department[1] + 1))):
            paths.append(f"{prefix}/Team {t + 1}")
            levels.append("team")
            parents.append(dept)
            head.append(float(rng.integers(shape.team_size[0], shape.team_size[1] + 1)))
    return paths, levels, np.array(parents, dtype=np.int64), np.array(head, dtype=np.float64)


def _signals(rng: np.random.Generator, probs: dict[str, float], signature: bool):
    chosen = [s for s in SIGNALS if rng.random() < probs[s]]
    if signature:
        extra = SIGNATURE_ALTERNATIVES[int(rng.integers(2))]
        chosen = set(chosen) | set(SIGNATURE_REQUIRED) | {extra}
        chosen = [s for s in SIGNALS if s in chosen]
    return tuple(chosen)


def simulate(
    seed: int,
    *,
    n_periods: int = 20,
    shape: OrgShape | None = None,
    base_rate: float = 0.04,
    habit_shape: float = 2.0,
    season_periods: Sequence[int] = (),
    season_multiplier: float = 2.5,
    drives: Sequence[Drive] = (),
    earliest_start: int = 0,
    every_outcome: bool = False,
) -> SyntheticDataset:
    """Build one synthetic dataset, fully determined by ``seed`` and the arguments.

    base_rate: background reports per person per period.  habit_shape: gamma shape of the
    per-team reporting-habit multiplier (mean 1; smaller = more overdispersion; ``inf``
    disables it).  season_periods / season_multiplier: company-wide review season.
    drives: planted drives (see :class:`Drive`); a drive's start defaults to a random
    period in ``earliest_start .. n_periods - length``.  every_outcome: every respondent
    gives an outcome (the outcome probabilities without "no answer", renormalised).
    """
    shape = shape or OrgShape()
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    paths, levels, parents, head = _build_org(rng, shape)
    n_units = parents.size
    teams = np.flatnonzero(head > 0)
    if np.isfinite(habit_shape):
        habit = rng.gamma(habit_shape, 1.0 / habit_shape, size=n_units)
    else:
        habit = np.ones(n_units)
    season = np.ones(n_periods)
    season_periods = tuple(int(p) for p in season_periods if 0 <= int(p) < n_periods)
    season[list(season_periods)] = season_multiplier
    mean = np.zeros((n_units, n_periods))
    mean[teams] = (head[teams] * base_rate * habit[teams])[:, None] * season[None, :]

    background = rng.poisson(mean)
    resolved: list[Drive] = []
    extra = np.zeros((n_units, n_periods), dtype=np.int64)
    sig_share = np.zeros((n_units, n_periods))
    sig_kind = np.zeros((n_units, n_periods), dtype=np.int64)
    planted: set[tuple[int, int]] = set()
    for drive in drives:
        unit = drive.unit
        if isinstance(unit, str):
            candidates = [i for i, lv in enumerate(levels) if lv == unit]
            if not candidates:
                raise ValueError(f"no unit at level {unit!r}")
            unit = int(candidates[int(rng.integers(len(candidates)))])
        length = int(min(max(1, drive.length), n_periods))
        start = drive.start
        if start is None:
            lo = min(earliest_start, n_periods - length)
            start = int(rng.integers(lo, n_periods - length + 1))
        elif start < 0:
            start = max(0, n_periods + int(start))
        start = min(int(start), n_periods - length)
        drive = replace(drive, unit=unit, start=int(start), length=length)
        resolved.append(drive)
        members = branch_units(parents, unit)
        leaves = members[head[members] > 0]
        window = slice(drive.start, drive.start + length)
        if drive.extra_reports is None:
            lam = mean[leaves, window] * max(drive.relative_risk - 1.0, 0.0)
            extra[leaves, window] += rng.poisson(lam)
        else:
            weight = mean[leaves, window].ravel()
            share = weight / weight.sum() if weight.sum() > 0 else None
            spread = rng.multinomial(int(drive.extra_reports), share if share is not None
                                     else np.full(weight.size, 1.0 / weight.size))
            extra[leaves, window] += spread.reshape(leaves.size, length)
        sig_share[leaves, window] = drive.signature_share
        sig_kind[leaves, window] = DRIVE_SIGNALS.index(drive.signals)
        planted |= {(int(u), t) for u in leaves for t in range(drive.start, drive.start + length)}

    # expand cell counts to reports (background first, then drive reports)
    cells = np.arange(n_units * n_periods)
    bg_cells = np.repeat(cells, background.ravel())
    dr_cells = np.repeat(cells, extra.ravel())
    all_cells = np.concatenate([bg_cells, dr_cells])
    planted_flag = np.concatenate(
        [np.zeros(bg_cells.size, dtype=bool), np.ones(dr_cells.size, dtype=bool)]
    )
    units = all_cells // n_periods
    periods = all_cells % n_periods
    signals: list[tuple[str, ...]] = []
    outcomes: list[str | None] = []
    choices = (*OUTCOMES, None)
    drive_outcome_p = np.array(_DRIVE_OUTCOME_P)
    background_outcome_p = np.array(_BACKGROUND_OUTCOME_P)
    if every_outcome:
        choices = OUTCOMES
        drive_outcome_p = drive_outcome_p[:-1] / drive_outcome_p[:-1].sum()
        background_outcome_p = background_outcome_p[:-1] / background_outcome_p[:-1].sum()
    share_flat = sig_share.ravel()
    kind_flat = sig_kind.ravel()
    drive_probs = (_DRIVE_SIGNAL_P, _BACKGROUND_SIGNAL_P, _HALFWAY_SIGNAL_P)
    for cell, is_drive in zip(all_cells.tolist(), planted_flag.tolist(), strict=True):
        if is_drive:
            kind = int(kind_flat[cell])
            sig = kind == 0 and bool(rng.random() < share_flat[cell])
            signals.append(_signals(rng, drive_probs[kind], sig))
            outcomes.append(choices[int(rng.choice(len(choices), p=drive_outcome_p))])
        else:
            signals.append(_signals(rng, _BACKGROUND_SIGNAL_P, False))
            outcomes.append(choices[int(rng.choice(len(choices), p=background_outcome_p))])
    return SyntheticDataset(
        seed=seed,
        n_periods=n_periods,
        unit_paths=paths,
        unit_levels=levels,
        parents=parents,
        headcount=head,
        report_units=units.astype(np.int64),
        report_periods=periods.astype(np.int64),
        report_signals=signals,
        report_outcomes=outcomes,
        report_planted=planted_flag,
        drives=tuple(resolved),
        season_periods=season_periods,
        planted_cells=frozenset(planted),
        background_mean=mean,
    )
