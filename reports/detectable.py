"""What a detection run could not see: how large a drive would have to be to be found.

Pure numpy and scipy, no Django.

A run finds a cut when its LLR reaches the run's *critical value*: the least LLR whose Monte
Carlo p-value, Bonferroni-adjusted over the models run, is at most the significance level
(:func:`critical_llr`, from the run's own replica maxima).  Take a unit that files ``lam``
reports per period and a drive that multiplies that rate by ``r`` for ``w`` periods.  Its
window then holds ``Poisson(r * lam * w)`` reports, and the scan's statistic for that cut
is, for a unit small beside the company, the Poisson LLR of the count against
``lam * w``: the cut is found once the window holds ``x*`` reports, the least count (and at
least ``k``) whose LLR reaches the critical value (:func:`reports_needed`).  The drive is
found with probability ``P(Poisson(r * lam * w) >= x*)``, and the *minimum detectable
relative risk* is the least ``r`` of :data:`RELATIVE_RISKS` at which that is at least
:data:`POWER` (:func:`minimum_detectable_relative_risk`).

This is the hardest case, a drive seen in counts only: reports that carry the attrition
pattern add signature evidence to the same cut and are found at a smaller ``r``.  It leaves
out that a drive may straddle windows (the scan takes the best one, which helps a little)
and that a large unit's drive moves the company's own profile (which the leave-branch-out
comparison corrects for): ``tests/test_detectable.py`` plants drives at the stated size in
simulated surveys and checks that the default detector finds them about as often as
stated.  Each call costs at most a few hundred Poisson terms per grid point: bounded,
whatever the survey.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import poisson

__all__ = [
    "DRIVE_PERIODS",
    "POWER",
    "RELATIVE_RISKS",
    "critical_llr",
    "minimum_detectable_relative_risk",
    "reports_needed",
]

# The grid a minimum detectable relative risk is stated on: coarse on purpose, since it is
# a guide to reading "no cluster", not a measurement.
RELATIVE_RISKS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
POWER = 0.8
DRIVE_PERIODS = 3


def critical_llr(maxima: np.ndarray, *, alpha: float, n_models: int) -> float:
    """The least LLR whose Monte Carlo p-value ``(1 + #{maxima >= llr}) / (S + 1)``, times
    ``n_models``, is at most ``alpha``; infinity when no LLR can be (too few replicas)."""
    maxima = np.sort(np.asarray(maxima, dtype=np.float64))[::-1]
    # At most `allowed` replica maxima may reach it.
    allowed = math.floor(alpha * (maxima.size + 1) / max(1, n_models) + 1e-9) - 1
    if allowed < 0:
        return math.inf
    if allowed >= maxima.size:
        return 0.0
    return float(np.nextafter(maxima[allowed], math.inf))


def _poisson_llr(count: float, expected: float) -> float:
    if count <= expected:
        return 0.0
    return count * math.log(count / expected) - (count - expected)


def reports_needed(*, expected: float, critical: float, min_reports: int) -> int:
    """The least count, at least ``min_reports``, whose Poisson LLR against ``expected``
    reaches ``critical``."""
    if expected <= 0:
        raise ValueError("need expected > 0")
    if not math.isfinite(critical):
        raise ValueError("need a finite critical value")
    low = max(int(min_reports), math.floor(expected) + 1)
    if _poisson_llr(low, expected) >= critical:
        return low
    high = low
    while _poisson_llr(high, expected) < critical:
        high *= 2
    while high - low > 1:  # _poisson_llr(low) < critical <= _poisson_llr(high)
        middle = (low + high) // 2
        if _poisson_llr(middle, expected) >= critical:
            high = middle
        else:
            low = middle
    return high


def minimum_detectable_relative_risk(*, rate_per_period: float, critical: float,
                                     min_reports: int,
                                     periods: int = DRIVE_PERIODS) -> float | None:
    """The least relative risk of :data:`RELATIVE_RISKS` at which a drive of ``periods``
    periods in a unit filing ``rate_per_period`` reports per period is found with
    probability at least :data:`POWER`; None when even the largest is not enough (or no
    cut can be significant)."""
    if rate_per_period <= 0 or not math.isfinite(critical):
        return None
    expected = rate_per_period * periods
    needed = reports_needed(expected=expected, critical=critical, min_reports=min_reports)
    for risk in RELATIVE_RISKS:
        if poisson.sf(needed - 1, risk * expected) >= POWER:
            return risk
    return None
