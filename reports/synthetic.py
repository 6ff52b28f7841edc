"""Synthetic surveys: `reports.simulate` datasets stored as real surveys, for the
`simulate` command, the demo seed, benchmarks and tests."""

import datetime as dt

from django.utils import timezone

from surveys.models import Survey, default_study_start
from surveys.periods import period_start_for


def simulated_period_starts(*, period: str, n_periods: int, today: dt.date) -> list[dt.date]:
    """The n_periods complete periods before the current one, oldest first."""
    current = period_start_for(period=period, day=today)
    starts = []
    day = current
    for _ in range(n_periods):
        day = period_start_for(period=period, day=day - dt.timedelta(days=1))
        starts.append(day)
    return starts[::-1]


def simulated_survey_create(*, owner, title: str, dataset, period: str = Survey.Period.MONTH,
                            min_group_size: int = 5) -> Survey:
    """A survey holding a `reports.simulate` dataset, built with the services
    the API uses, its cells rebuilt and published."""
    from reports.services import cells_rebuild, publication_maybe_publish
    from surveys.services import reports_bulk_create, survey_create, units_upsert

    starts = simulated_period_starts(period=period, n_periods=dataset.n_periods,
                                     today=timezone.localdate())
    # the study window holds every simulated period
    survey = survey_create(owner=owner, title=title, period=period,
                           min_group_size=min_group_size,
                           study_starts_on=min(starts[0], default_study_start()))
    units_upsert(survey=survey, units=[
        {"path": path, "headcount": int(head) if head > 0 else None}
        for path, head in zip(dataset.unit_paths, dataset.headcount.tolist(), strict=True)])
    reports_bulk_create(survey=survey, rows=[
        (dataset.unit_paths[unit], starts[period_index], signals, outcome or "")
        for unit, period_index, signals, outcome in zip(
            dataset.report_units.tolist(), dataset.report_periods.tolist(),
            dataset.report_signals, dataset.report_outcomes, strict=True)])
    cells_rebuild(survey_id=survey.id)
    publication_maybe_publish(survey_id=survey.id, force=True)
    return survey
