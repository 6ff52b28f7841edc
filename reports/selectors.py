"""Reads for dashboards. Everything released goes through `released_cells`,
the one place where suppression is applied, so the page, the API and the
exports cannot disagree."""

from dataclasses import dataclass

from reports.models import AggregationState, PublishedCell
from surveys.models import Survey


@dataclass(frozen=True)
class ReleasedCell:
    unit: str
    period: str
    reports: int | None

    @property
    def suppressed(self) -> bool:
        return self.reports is None


def released_cells(*, survey: Survey) -> list[ReleasedCell]:
    """Published cells, with every count between 1 and k − 1 withheld."""
    k = survey.min_group_size
    rows = (PublishedCell.objects.filter(survey=survey)
            .values_list("unit__path", "period_start", "reports")
            .order_by("unit__path", "period_start"))
    return [ReleasedCell(unit=path, period=period.isoformat(),
                         reports=count if count >= k else None)
            for path, period, count in rows]


def publication_status(*, survey: Survey) -> AggregationState | None:
    return AggregationState.objects.filter(survey=survey).first()


@dataclass(frozen=True)
class DashboardTable:
    min_group_size: int
    periods: list[str]
    rows: list[tuple[str, list[ReleasedCell | None]]]
    total_released: int | None
    published_at: object


def dashboard_table(*, survey: Survey) -> DashboardTable:
    """The released cells laid out as unit rows × period columns."""
    cells = released_cells(survey=survey)
    periods = sorted({cell.period for cell in cells})
    by_unit: dict[str, dict[str, ReleasedCell]] = {}
    for cell in cells:
        by_unit.setdefault(cell.unit, {})[cell.period] = cell
    rows = [(unit, [by_unit[unit].get(period) for period in periods])
            for unit in sorted(by_unit)]
    roots = [unit for unit in by_unit if "/" not in unit]
    root_counts = [cell.reports for unit in roots for cell in by_unit[unit].values()]
    total = (sum(root_counts) if root_counts and None not in root_counts else None)
    state = publication_status(survey=survey)
    return DashboardTable(min_group_size=survey.min_group_size, periods=periods, rows=rows,
                          total_released=total,
                          published_at=state.published_at if state else None)
