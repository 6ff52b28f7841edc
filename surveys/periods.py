"""Periods (a week from Monday, or a calendar month): their arithmetic and their names,
the one definition for intake, aggregation, detection and the pages."""

import datetime as dt

from django.utils.formats import date_format
from django.utils.translation import gettext as _

WEEK = "week"
MONTH = "month"


def period_start_for(*, period: str, day: dt.date) -> dt.date:
    if period == WEEK:
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period_start(*, period: str, start: dt.date) -> dt.date:
    """The first day of the period after the one starting on `start`."""
    if period == WEEK:
        return start + dt.timedelta(days=7)
    return dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)


def periods_between(*, period: str, first: dt.date, last: dt.date) -> int:
    """How many periods run from the one holding `first` to the one holding `last`."""
    first = period_start_for(period=period, day=first)
    last = period_start_for(period=period, day=last)
    if period == WEEK:
        return (last - first).days // 7 + 1
    return (last.year - first.year) * 12 + last.month - first.month + 1


def period_label(*, period: str, start: dt.date, short: bool = False) -> str:
    """The period's name in the active language; `short` for chart axes and column heads."""
    if period == MONTH:
        return date_format(start, "M" if short else "YEAR_MONTH_FORMAT")
    if short:
        return date_format(start, "j M")
    return _("Week of %(day)s") % {"day": date_format(start, "j M Y")}
