"""The primary interval: what an attacker knows of a hidden count before reading anything else.

Every count below k is hidden, zero included, so a hidden count lies in [0, k - 1] a priori
and "hidden" tells nothing but that it is >= 0.  A hidden figure is protected when its
feasible range under everything released (an attacker's LP bounds) is at least as wide as
that interval; shared by every attacker test (cells, breakdowns, clusters).
"""

from __future__ import annotations

import math

TOLERANCE = 1e-6


def primary_interval(k: int) -> tuple[int, int]:
    """The range of a hidden count as the primary rule alone leaves it."""
    return 0, k - 1


def is_protected(lo: float, hi: float, k: int) -> bool:
    """A feasible range ``[lo, hi]`` at least as wide as the primary interval (or unbounded)."""
    first, last = primary_interval(k)
    return math.isinf(hi) or hi - lo >= (last - first) - TOLERANCE


def assert_protected(lo: float, hi: float, true: float, k: int, what: str, *,
                     derived: bool = False, zero: bool = False) -> None:
    """``true`` lies in ``[lo, hi]`` and the range is as wide as the primary interval.

    ``derived`` marks a figure that is no released count but a sum a page could not show
    (a window of periods): it may also be pinned to a value ``>= k``, as if it were shown.
    ``zero`` marks a count filed directly at a unit: with all its children shown it is a
    subtraction of released counts, and may be pinned to 0 as well.
    """
    assert lo - TOLERANCE <= true <= hi + TOLERANCE, (what, lo, true, hi)
    pinned = hi - lo < TOLERANCE
    allowed = pinned and ((derived and true >= k) or (zero and true == 0))
    assert is_protected(lo, hi, k) or allowed, (
        f"{what}: true {true}, attacker sees [{lo}, {hi}], narrower than "
        f"{list(primary_interval(k))}")
