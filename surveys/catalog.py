"""The signal and outcome catalog.

Codes are part of the public API. A report stores its signals as a bit set, so
the position of a code in SIGNALS is part of the stored data: append new codes,
never reorder or remove one.
"""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Entry:
    code: str
    label: str
    description: str


SIGNALS: tuple[Entry, ...] = (
    Entry(
        "prior_positive_standing",
        _("I was in good standing before"),
        _("Recent reviews, ratings or words from your manager said you were doing well or were "
          "a high-value contributor."),
    ),
    Entry(
        "abrupt_reversal",
        _("The feedback turned suddenly"),
        _("Within weeks, with no new event to explain it, the story about your performance "
          "changed."),
    ),
    Entry(
        "recap_contradicts_meeting",
        _("A written recap did not match the meeting"),
        _("After a 1:1 you received a written summary claiming problems that were not discussed "
          "in the meeting."),
    ),
    Entry(
        "completed_work_disputed",
        _("Finished work was called incomplete"),
        _("Work that had been accepted or marked complete was later described as incomplete or "
          "poor."),
    ),
    Entry(
        "shifting_goalposts",
        _("The goalposts kept moving"),
        _("Expectations changed after you met them, or new criteria appeared without notice."),
    ),
    Entry(
        "transfer_blocked",
        _("An internal move was blocked"),
        _("A transfer to another team suddenly needed extra approval (for example a VP) or was "
          "refused."),
    ),
    Entry(
        "coaching_plan",
        _("A coaching or improvement plan was mentioned"),
        _("Someone hinted at or started a plan such as 'Focus', 'Pivot' or a PIP."),
    ),
    Entry(
        "peers_same_treatment",
        _("Coworkers got the same treatment"),
        _("You know of others on your team who went through something similar in the same "
          "weeks."),
    ),
    Entry(
        "exit_pressure",
        _("I was nudged towards leaving"),
        _("You were offered a package, told to 'consider options', or encouraged to resign."),
    ),
)

OUTCOMES: tuple[Entry, ...] = (
    Entry("still_in_role", _("Still in the same role"), ""),
    Entry("transferred", _("Moved to another team"), ""),
    Entry("resigned", _("Resigned"), ""),
    Entry("let_go", _("Was let go"), ""),
    Entry("on_plan", _("On an improvement plan"), ""),
    Entry("prefer_not_to_say", _("Prefer not to say"), ""),
)

SIGNAL_CODES: tuple[str, ...] = tuple(entry.code for entry in SIGNALS)
OUTCOME_CODES: tuple[str, ...] = tuple(entry.code for entry in OUTCOMES)
_SIGNAL_BIT = {code: 1 << index for index, code in enumerate(SIGNAL_CODES)}

# Reports carrying all of these, plus one of SIGNATURE_ANY, fit the pattern of an
# attrition drive: good standing, a sudden turn, and a paper trail being built.
SIGNATURE_ALL = ("prior_positive_standing", "abrupt_reversal")
SIGNATURE_ANY = ("recap_contradicts_meeting", "coaching_plan")


def signals_to_mask(codes: list[str] | tuple[str, ...] | set[str]) -> int:
    mask = 0
    for code in codes:
        mask |= _SIGNAL_BIT[code]
    return mask


def mask_to_signals(mask: int) -> list[str]:
    return [code for code, bit in _SIGNAL_BIT.items() if mask & bit]


def signal_bit(code: str) -> int:
    return _SIGNAL_BIT[code]
