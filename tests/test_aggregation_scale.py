"""Aggregation paths agree: incremental cells, a rebuild, and the portable recount.

On PostgreSQL the incremental path sums children's cells bottom-up and the rebuild is one
statement; SQLite (and `portable=True`) recount from reports. Whatever the path, the cells
must be the same numbers. Speed is measured in bench/aggregation.py, not here.
"""

import datetime as dt
import random
import re

import pytest
from django.template.defaultfilters import date as date_filter
from django.urls import reverse
from django.utils import timezone

from reports import services as report_services
from reports.models import AggregationState, Cell, PendingChange
from surveys import catalog, intake, services, slots
from surveys.models import OrgUnit, UnitAncestor
from tests.factories import OrganizerFactory, file_reports, publish, survey_with_units

pytestmark = pytest.mark.django_db

PERIODS = [dt.date(2025, month, 10) for month in range(1, 9)]


def random_tree(rng: random.Random) -> list[str]:
    paths = []
    for org in range(rng.randint(2, 4)):
        for dept in range(rng.randint(1, 4)):
            for team in range(rng.randint(1, 5)):
                paths.append(f"Co/O{org}/D{org}.{dept}/T{org}.{dept}.{team}")
    return paths


def file_random_reports(survey, rng: random.Random, count: int) -> list[str]:
    units = list(OrgUnit.objects.filter(survey=survey).values_list("path", flat=True))
    receipts = []
    for _ in range(count):
        draft = services.ReportDraft(
            unit=rng.choice(units), period=rng.choice(PERIODS),
            signals=tuple(rng.sample(catalog.SIGNAL_CODES, rng.randint(0, 4))),
            outcome=rng.choice(("", *catalog.OUTCOME_CODES)))
        receipts.append(intake.report_create(survey=survey, draft=draft))
    return receipts


def drain(survey) -> None:
    """Publishes what the survey holds: the incremental path recomputes the
    cells the held reports and changes touch."""
    publish(survey)


def cells(survey) -> dict:
    return {(cell.unit_id, cell.period_start): {"reports": cell.reports, "signals": cell.signals,
                                                "outcomes": cell.outcomes}
            for cell in Cell.objects.filter(survey=survey)}


def survey_aggregated_incrementally(seed: int):
    """A random survey whose cells were only ever updated incrementally, at
    publications, with reports filed and withdrawn (held or published) between them."""
    rng = random.Random(seed)
    survey = survey_with_units(owner=OrganizerFactory(), paths=random_tree(rng))
    receipts = []
    for _ in range(4):
        receipts += file_random_reports(survey, rng, rng.randint(60, 120))
        for receipt in rng.sample(receipts, 15):
            receipts.remove(receipt)
            assert services.report_withdraw(survey=survey, receipt=receipt)
        drain(survey)
    assert not PendingChange.objects.filter(survey=survey).exists()
    return survey


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_cells_equal_a_full_rebuild(seed):
    survey = survey_aggregated_incrementally(seed)
    incremental = cells(survey)

    report_services.cells_rebuild(survey_id=survey.id)

    assert len(incremental) > 50
    assert cells(survey) == incremental


@pytest.mark.parametrize("seed", [4, 5])
def test_every_path_gives_the_numbers_of_the_portable_recount(seed):
    survey = survey_aggregated_incrementally(seed)
    recount = report_services._rolled_up_counts(survey_id=survey.id, period_start=None,
                                                ancestor_ids=None)
    assert cells(survey) == recount

    report_services.cells_rebuild(survey_id=survey.id)
    assert cells(survey) == recount

    report_services.cells_rebuild(survey_id=survey.id, portable=True)
    assert cells(survey) == recount


def test_a_rebuild_deletes_cells_whose_reports_are_gone():
    survey = survey_with_units(owner=OrganizerFactory(), paths=["Co/A/X", "Co/B/Y"])
    receipts = file_reports(survey, 2, unit="Co/A/X")
    drain(survey)
    for receipt in receipts:
        services.report_withdraw(survey=survey, receipt=receipt)
    drain(survey)

    assert report_services.cells_rebuild(survey_id=survey.id) == 0

    assert not Cell.objects.filter(survey=survey).exists()


def test_a_withdrawal_empties_the_cells_of_the_unit_and_its_ancestors():
    survey = survey_with_units(owner=OrganizerFactory(), paths=["Co/A/X", "Co/B/Y"])
    kept = file_reports(survey, 1, unit="Co/B/Y")
    gone = file_reports(survey, 1, unit="Co/A/X")
    drain(survey)

    services.report_withdraw(survey=survey, receipt=gone[0])
    drain(survey)

    assert kept
    paths = {path: {cell.period_start: cell.reports for cell in Cell.objects.filter(
        survey=survey, unit__path=path)} for path in ("Co", "Co/A", "Co/A/X", "Co/B/Y")}
    assert paths == {"Co": {dt.date(2026, 1, 1): 1}, "Co/A": {}, "Co/A/X": {},
                     "Co/B/Y": {dt.date(2026, 1, 1): 1}}


def test_unit_closure_names_every_ancestor_of_units_added_in_several_loads():
    survey = survey_with_units(owner=OrganizerFactory(), paths=["Co/A"])
    services.units_upsert(survey=survey, units=[{"path": "Co/A/X/1"}, {"path": "Co/B"}])
    services.units_upsert(survey=survey, units=[{"path": "Co/A/X/1"}, {"path": "Co/A/X/2"}])

    closure = {(link.unit.path, link.ancestor.path)
               for link in UnitAncestor.objects.filter(survey=survey)
               .select_related("unit", "ancestor")}
    expected = set()
    for path in OrgUnit.objects.filter(survey=survey).values_list("path", flat=True):
        parts = path.split("/")
        expected |= {(path, "/".join(parts[:depth])) for depth in range(1, len(parts) + 1)}
    assert closure == expected
    assert len(expected) == 1 + 2 + 3 + 4 + 4 + 2


def survey_facts(client, survey) -> dict[str, str]:
    page = client.get(reverse("organizer-survey", args=[survey.id])).content.decode()
    return {term: re.sub(r"\s+", " ", value).strip() for term, value in
            re.findall(r"<dt>([^<]*)</dt>\s*<dd>(.*?)</dd>", page, flags=re.S)}


def test_organizer_sees_that_fewer_than_k_wait_and_when_figures_can_next_appear(
        client, publish_at_once):
    organizer = OrganizerFactory()
    survey = survey_with_units(owner=organizer, paths=["Co/A"], min_group_size=3)
    client.force_login(organizer)
    file_reports(survey, 2, unit="Co/A")

    facts = survey_facts(client, survey)

    assert facts["New reports waiting for publication"] == (
        "not yet (a publication needs at least 3 new reports)")
    assert facts["Next publication"] == "once at least 3 new reports are in"


def test_organizer_sees_only_that_enough_wait_and_the_next_scheduled_time(client, settings):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 86400
    organizer = OrganizerFactory()
    survey = survey_with_units(owner=organizer, paths=["Co/A"], min_group_size=3)
    client.force_login(organizer)
    file_reports(survey, 4, unit="Co/A")

    facts = survey_facts(client, survey)

    assert facts["New reports waiting for publication"] == "enough for the next publication"
    midnight = slots.slot_next(timezone.now())
    assert midnight.astimezone(dt.UTC).time() == dt.time(0, 0)
    assert facts["Next publication"] == f"at {date_filter(midnight, 'j M Y, H:i e')}"


def test_sweep_wakes_a_survey_only_once_its_publication_is_due(survey, settings,
                                                                django_capture_on_commit_callbacks):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 0
    with django_capture_on_commit_callbacks(execute=True):
        file_reports(survey, survey.min_group_size - 1)
    # Fewer than k new reports held: nothing for the sweep to do.
    assert report_services.surveys_due_for_publication() == []
    file_reports(survey, 1)  # as if its dispatch had been lost
    assert report_services.surveys_due_for_publication() == [survey.id]
    report_services.publication_maybe_publish(survey_id=survey.id)
    assert report_services.surveys_due_for_publication() == []
    assert AggregationState.objects.get(survey=survey).publications == 1


def test_sweep_waits_for_the_next_slot_boundary(survey, settings):
    settings.CHORUS_PUBLISH_INTERVAL_SECONDS = 3600
    file_reports(survey, survey.min_group_size)
    boundary = slots.slot_next(timezone.now())
    assert report_services.surveys_due_for_publication(
        now=boundary - dt.timedelta(seconds=1)) == []
    assert report_services.surveys_due_for_publication(now=boundary) == [survey.id]
    assert report_services.publication_maybe_publish(survey_id=survey.id, now=boundary)
    file_reports(survey, survey.min_group_size)
    # One publication per slot; the next slot takes the next batch.
    assert report_services.surveys_due_for_publication(
        now=boundary + dt.timedelta(minutes=59)) == []
    assert report_services.surveys_due_for_publication(
        now=boundary + dt.timedelta(minutes=60)) == [survey.id]


def test_the_simulator_uses_the_catalogs_codes_and_signature():
    from reports import simulate

    assert simulate.SIGNALS == catalog.SIGNAL_CODES
    assert simulate.OUTCOMES == catalog.OUTCOME_CODES
    assert simulate.SIGNATURE_REQUIRED == catalog.SIGNATURE_ALL
    assert simulate.SIGNATURE_ALTERNATIVES == catalog.SIGNATURE_ANY
