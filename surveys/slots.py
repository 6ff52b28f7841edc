"""Publication slots: the clock times at which released figures may change.

A slot is CHORUS_PUBLISH_INTERVAL_SECONDS long and aligned to the Unix epoch,
so 3600 starts every slot at the top of an hour and 86400 at midnight UTC. A
publication happens at the first sweep at or after a slot boundary and counts
the reports held before it; its timestamp is the boundary, never the moment
the publication committed. The one definition used by intake, publication,
the sweep and the pages that say when the next update is.
"""

import datetime as dt

from django.conf import settings

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# With no interval (the embedded demo publishes as soon as enough reports are
# held) released timestamps are still named by a slot of this length.
_SLOT_WITHOUT_INTERVAL_SECONDS = 60


def slot_seconds() -> int:
    return settings.CHORUS_PUBLISH_INTERVAL_SECONDS or _SLOT_WITHOUT_INTERVAL_SECONDS


def scheduled() -> bool:
    """Whether publications wait for slot boundaries (False: on arrival of enough reports)."""
    return settings.CHORUS_PUBLISH_INTERVAL_SECONDS > 0


def slot_of(at: dt.datetime) -> dt.datetime:
    """The start of the slot that `at` falls in."""
    seconds = slot_seconds()
    elapsed = int((at - _EPOCH).total_seconds())
    return _EPOCH + dt.timedelta(seconds=elapsed - elapsed % seconds)


def slot_next(at: dt.datetime) -> dt.datetime:
    """The first slot boundary after `at`."""
    return slot_of(at) + dt.timedelta(seconds=slot_seconds())


def next_publication(*, now: dt.datetime | None = None) -> dt.datetime | None:
    """The earliest a publication can next happen, the first boundary after now; None when
    publications are not scheduled (they follow arrivals of enough reports)."""
    if not scheduled():
        return None
    return slot_next(now or dt.datetime.now(dt.UTC))
