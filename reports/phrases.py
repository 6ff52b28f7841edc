"""Display phrases for detected clusters: plain sentences over the signal catalog
(surveys/catalog.py).

Kept in reports, not beside the catalog, because they describe clusters: a cluster's
share of each signal against the reports outside it, and whether it carries the
attrition-drive signature."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from surveys import catalog

# What a share of a cluster's reports say, as a whole clause per signal so that each
# language can word it ("40% say ..."); %(share)s is a percentage from `percent_text`.
SIGNAL_CLAIMS = {
    "prior_positive_standing": gettext_lazy("%(share)s say they were in good standing before"),
    "abrupt_reversal": gettext_lazy("%(share)s say the feedback turned suddenly"),
    "recap_contradicts_meeting": gettext_lazy(
        "%(share)s say a written recap contradicted the meeting"),
    "completed_work_disputed": gettext_lazy("%(share)s say finished work was called incomplete"),
    "shifting_goalposts": gettext_lazy("%(share)s say the goalposts kept moving"),
    "transfer_blocked": gettext_lazy("%(share)s say an internal move was blocked"),
    "coaching_plan": gettext_lazy("%(share)s say a coaching or improvement plan was mentioned"),
    "peers_same_treatment": gettext_lazy("%(share)s say coworkers got the same treatment"),
    "exit_pressure": gettext_lazy("%(share)s say they were nudged towards leaving"),
    "still_in_role": gettext_lazy("%(share)s say they are still in the same role"),
    "transferred": gettext_lazy("%(share)s say they moved to another team"),
    "resigned": gettext_lazy("%(share)s say they resigned"),
    "let_go": gettext_lazy("%(share)s say they were let go"),
    "on_plan": gettext_lazy("%(share)s say they are on an improvement plan"),
    "prefer_not_to_say": gettext_lazy("%(share)s say they prefer not to say what happened"),
}
# A signal "stands out" when this many times as common as elsewhere.
SUMMARY_MIN_LIFT = 1.5
SUMMARY_MAX_SIGNALS = 2
SIGNATURE_DOMINANT_SHARE = 0.5


@dataclass(frozen=True)
class SignalShare:
    code: str
    count: int
    share: float
    baseline_share: float | None
    lift: float | None


def percent_text(percent: int) -> str:
    return _("%(percent)s%%") % {"percent": percent}


def signal_claim(code: str, percent: int) -> str:
    """"40% say the feedback turned suddenly", in the active language."""
    return SIGNAL_CLAIMS[code] % {"share": percent_text(percent)}


def ratio_text(ratio: float) -> str:
    return number_format(ratio, decimal_pos=1)


def signature_marked(shares: dict[str, float]) -> bool:
    """Whether most of a cluster's reports carry each mark of the attrition-drive pattern:
    every one of `SIGNATURE_ALL` and at least one of `SIGNATURE_ANY`, each on its own.
    Decided from per-signal shares, so that a released cluster decides it from released
    signal counts alone."""
    def most(code: str) -> bool:
        return shares.get(code, 0.0) >= SIGNATURE_DOMINANT_SHARE

    return (all(most(code) for code in catalog.SIGNATURE_ALL)
            and any(most(code) for code in catalog.SIGNATURE_ANY))


def cluster_summary(*, shares: list[SignalShare], signature_dominant: bool) -> str:
    signals = [s for s in shares if s.code in catalog.SIGNAL_CODES]
    standing_out = [s for s in signals
                    if s.baseline_share == 0 or (s.lift or 0) >= SUMMARY_MIN_LIFT]
    if not standing_out and all(s.baseline_share is None for s in signals):
        # Nothing to compare with: say what is most common here instead.
        standing_out = sorted(signals, key=lambda s: (-s.share, s.code))
    parts = []
    for s in standing_out[:SUMMARY_MAX_SIGNALS]:
        line = signal_claim(s.code, round(s.share * 100))
        if s.baseline_share is not None:
            line = _("%(claim)s, vs %(baseline)s elsewhere") % {
                "claim": line, "baseline": percent_text(round(s.baseline_share * 100))}
        parts.append(line)
    text = (_("%(claims)s.") % {"claims": "; ".join(parts)} if parts
            else _("No signal stands out against the other reports."))
    if signature_dominant:
        text += " " + _("Most reports here carry each mark of the attrition-drive pattern: good "
                        "standing, an abrupt reversal, and a recap or coaching plan building a "
                        "paper trail.")
    return text[0].upper() + text[1:]
