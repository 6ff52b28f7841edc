"""What a detection run could not see: how large a drive would have to be to be found.

Pure numpy and scipy, no Django.

A run finds a cut when its LLR reaches the run's *critical value*: the least LLR whose Monte
Carlo p-value, Bonferroni-adjusted over the models run, is at most the significance level
(:func:`critical_llr`, from the run's own replica maxima).  Take a unit that files ``lam``
reports per period in a company that files ``Lam``, over a survey of ``T`` periods, and a
drive that multiplies the unit's rate by ``r`` for ``w`` periods.  The unit's window then
holds ``X ~ Poisson(r * lam * w)`` reports, and the default model (``reports.scan``'s
``profile_floor``, whose counts part is ``profile``'s) scores that cut's counts by the
binomial LLR of ``X`` of the unit's ``lam * (T - w) + X`` reports against its reference
share, half way between the rest's window share and a uniform one, both ``w / T`` at the
rest's mean (:func:`window_llr`).
The cut is found once ``X`` reaches ``x*``, the least count (and at least ``k``) whose LLR
reaches the critical value (:func:`reports_needed`), so the drive is found with
probability ``P(X >= x*)``; the *minimum detectable relative risk* is the least ``r`` of
:data:`RELATIVE_RISKS` at which that is at least :data:`POWER`
(:func:`minimum_detectable_relative_risk`).

This is the hardest case, a drive seen in counts only: reports that carry the attrition
pattern add signature evidence to the same cut and are found at a smaller ``r``.  It takes
the unit's reports outside the window, and the rest's, at their means, and ignores that
the scan may find a better window than the drive's own.  In the simulation of
``tests/test_detectable.py`` (a company of 20 teams over 26 weeks with 74, 148 and 354
reports, counts-only department drives of 3 weeks, the default model, 99 replicas, 100
surveys each) drives at the stated size were found 90, 95 and 93 times in 100, and at
the grid step below it 73, 56 and 65 times.  Each call evaluates the LLR at most a few
dozen times per grid point: bounded, whatever the survey.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import poisson

from reports import scan

__all__ = [
    "DRIVE_PERIODS",
    "POWER",
    "RELATIVE_RISKS",
    "critical_llr",
    "minimum_detectable_relative_risk",
    "reports_needed",
    "window_llr",
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


def window_llr(window: float, *, unit_rate: float, company_rate: float, span: int,
               periods: int) -> float:
    """The default model's (``profile_floor``) counts LLR of a cut of ``periods`` periods holding
    ``window`` reports, in a unit whose reports outside it come at ``unit_rate`` per period,
    in a company filing ``company_rate`` per period over ``span`` periods: the binomial LLR
    of ``window`` of the unit's reports against the share half way between the rest's
    window share (at its mean) and a uniform one."""
    rest = (company_rate - unit_rate) * span
    if rest <= 0:
        return 0.0  # no rest to compare with: the cut is scored on its cases alone
    uniform = periods / span
    rest_share = max((company_rate - unit_rate) * periods, scan.LEAVE_OUT_FLOOR) / rest
    unit_total = unit_rate * (span - periods) + window
    return float(scan.binomial_llr(window, unit_total, (rest_share + uniform) / 2))


# Beyond this many reports in one window a cut counts as out of reach: a unit that is the
# whole company, or nearly, has no rest to be compared with.
_WINDOW_MAX = 1 << 20


def reports_needed(*, unit_rate: float, company_rate: float, span: int, periods: int,
                   critical: float, min_reports: int) -> int | None:
    """The least window count, at least ``min_reports`` and above the unit's expectation,
    whose table LLR (:func:`window_llr`) reaches ``critical``; None if none does."""
    if unit_rate <= 0 or not math.isfinite(critical):
        return None

    def reaches(count: int) -> bool:
        return window_llr(count, unit_rate=unit_rate, company_rate=company_rate, span=span,
                          periods=periods) >= critical

    low = max(int(min_reports), math.floor(unit_rate * periods) + 1)
    if reaches(low):
        return low
    high = low
    while not reaches(high):
        if high >= _WINDOW_MAX:
            return None
        high *= 2
    while high - low > 1:  # not reaches(low), reaches(high)
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle
    return high


def minimum_detectable_relative_risk(*, unit_rate: float, company_rate: float, span: int,
                                     critical: float, min_reports: int,
                                     periods: int = DRIVE_PERIODS) -> float | None:
    """The least relative risk of :data:`RELATIVE_RISKS` at which a drive of ``periods``
    periods in a unit filing ``unit_rate`` reports per period is found with probability at
    least :data:`POWER`; None when even the largest is not enough (or no cut can be
    significant)."""
    needed = reports_needed(unit_rate=unit_rate, company_rate=company_rate, span=span,
                            periods=periods, critical=critical, min_reports=min_reports)
    if needed is None:
        return None
    for risk in RELATIVE_RISKS:
        if poisson.sf(needed - 1, risk * unit_rate * periods) >= POWER:
            return risk
    return None
