"""Comments are released only in sets of at least k from one unit and period."""

import datetime as dt
import random

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from reports import selectors
from reports import services as report_services
from reports.comments import _shuffled, comment_sets
from surveys import intake, services
from surveys.models import Report
from tests.factories import OrganizerFactory, publish, survey_with_units

pytestmark = pytest.mark.django_db

JAN, FEB = dt.date(2026, 1, 1), dt.date(2026, 2, 1)
TEAMS = ["Co/D0/T0", "Co/D0/T1", "Co/D1/T0"]


def _published(survey, rows):
    """rows: (path, period, comment) filed and published."""
    ids = dict(survey.units.values_list("path", "id"))
    Report.objects.bulk_create([
        Report(survey=survey, unit_id=ids[path], period_start=period, comment=comment,
               received_week=dt.date(2026, 1, 5), receipt_hash=f"{survey.id}-{n}")
        for n, (path, period, comment) in enumerate(rows)])
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)


def _every_view(client, survey):
    client.force_login(survey.owner)
    pages = [client.get(reverse("shared-dashboard", args=[survey.dashboard_token])).content
             .decode()]
    token = Token.objects.create(user=survey.owner)
    pages.append(client.get(f"/api/v1/surveys/{survey.id}/export/",
                            HTTP_AUTHORIZATION=f"Token {token.key}").content.decode())
    pages.append(client.get(reverse("organizer-export-csv", args=[survey.id])).content.decode())
    return "\n".join(pages)


def test_a_comment_in_a_cell_with_fewer_than_k_comments_is_shown_nowhere(client):
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=3)
    _published(survey, [("Co/D0/T0", JAN, "lonely remark"), ("Co/D0/T0", JAN, "")] +
               [("Co/D0/T1", JAN, "") for _ in range(5)])
    assert comment_sets(survey=survey) == []
    assert "lonely remark" not in _every_view(client, survey)


def test_k_comments_in_one_team_are_shown_together_everywhere(client):
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=3)
    # Every team's count is released (each holds k reports), so T0's set stands alone.
    _published(survey, [("Co/D0/T0", JAN, f"remark {n}") for n in range(3)]
               + [(team, JAN, "") for team in TEAMS[1:] for _ in range(3)])
    sets = comment_sets(survey=survey)
    assert [(s.unit, s.period, sorted(s.comments)) for s in sets] == [
        ("Co/D0/T0", "2026-01-01", ["remark 0", "remark 1", "remark 2"])]
    shown = _every_view(client, survey)
    assert all(f"remark {n}" in shown for n in range(3))


def test_a_team_short_of_k_makes_its_department_one_set_with_no_team_sets_beside_it():
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=3)
    _published(survey, [("Co/D0/T0", JAN, f"a{n}") for n in range(3)]
               + [("Co/D0/T1", JAN, "b0")] + [("Co/D1/T0", JAN, "") for _ in range(3)])
    sets = comment_sets(survey=survey)
    # A T0 set beside a D0 set would leave "b0" pinned to T1 by difference.
    assert [(s.unit, s.period, sorted(s.comments)) for s in sets] == [
        ("Co/D0", "2026-01-01", ["a0", "a1", "a2", "b0"])]


def test_a_period_short_of_k_pools_every_period_of_its_root():
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=3)
    _published(survey, [("Co/D0/T0", JAN, f"j{n}") for n in range(3)]
               + [("Co/D0/T0", FEB, "f0")]
               + [(team, period, "") for team in TEAMS[1:] for period in (JAN, FEB)
                  for _ in range(3)])
    sets = comment_sets(survey=survey)
    assert [(s.unit, s.period, sorted(s.comments)) for s in sets] == [
        ("Co", None, ["f0", "j0", "j1", "j2"])]


def test_the_order_of_a_set_does_not_follow_arrival_and_holds_between_reloads():
    texts = [f"remark {n:02}" for n in range(12)]
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=3)
    _published(survey, [("Co/D0/T0", JAN, text) for text in texts])
    order = comment_sets(survey=survey)[0].comments
    assert comment_sets(survey=survey)[0].comments == order
    assert sorted(order) == texts
    # Arrival decides nothing: the order changes only with a new publication's shuffle.
    assert len({_shuffled(texts) for _ in range(5)}) > 1


def test_comments_of_held_reports_are_never_shown_until_published(client):
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=3)
    for n in range(3):
        intake.report_create(survey=survey, draft=services.ReportDraft(
            unit="Co/D0/T0", period=dt.date(2026, 1, 14), signals=("abrupt_reversal",),
            comment=f"held remark {n}"))
    assert comment_sets(survey=survey) == []
    assert "held remark" not in _every_view(client, survey)
    publish(survey)
    assert sorted(comment_sets(survey=survey)[0].comments) == [
        f"held remark {n}" for n in range(3)]


def test_the_respondent_form_says_how_comments_are_shown(client):
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=4)
    page = client.get(reverse("respondent-form", args=[survey.share_token])).content.decode()
    assert "Comments are shown only in groups of at least 4" in page


@pytest.mark.parametrize("seed", range(12))
def test_set_membership_and_the_table_never_pin_a_comment_below_k_reports(seed):
    """The attacker knows the tree, every set's unit and period, and that each comment
    is in exactly one set. Whatever a set's scope leaves after taking out every other
    set's comments must hold all its comments and at least k reports."""
    rnd = random.Random(seed)
    k = rnd.choice([3, 4])
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=k)
    periods = [JAN, FEB]
    rows, truth = [], {}
    for path in ["Co", "Co/D0", "Co/D1", *TEAMS]:
        for period in periods:
            for n in range(rnd.choice([0, 0, 1, 2, 3, 5])):
                text = f"{path}|{period.isoformat()}|{n}" if rnd.random() < 0.6 else ""
                rows.append((path, period, text))
                truth[(path, period.isoformat())] = truth.get((path, period.isoformat()), 0) + 1
    _published(survey, rows)
    sets = comment_sets(survey=survey)
    seen = [c for s in sets for c in s.comments]
    assert len(seen) == len(set(seen))
    where = {c: tuple(c.split("|")[:2]) for c in seen}
    for item in sets:
        assert len(item.comments) >= k
        scope = {cell for cell in truth
                 if (cell[0] == item.unit or cell[0].startswith(item.unit + "/"))
                 and (item.period is None or cell[1] == item.period)}
        others = {where[c] for s in sets if s is not item for c in s.comments}
        region = scope - others
        assert {where[c] for c in item.comments} <= region
        # Every published comment in the region is in this set: nothing to subtract.
        in_region = [text for path, period, text in rows
                     if text and (path, period.isoformat()) in region]
        assert sorted(in_region) == sorted(item.comments)
        assert sum(truth[cell] for cell in region) >= k


def test_a_set_stands_only_over_a_released_count_so_its_size_narrows_nothing_withheld():
    # T1's single report is withheld; T0's three would give it away by difference from D0,
    # so one of them is withheld too. A set of T0's three comments would say T0 >= 3 and,
    # beside D0's released 4, pin T1 at 1.
    survey = survey_with_units(owner=OrganizerFactory(), paths=TEAMS, min_group_size=3)
    _published(survey, [("Co/D0/T0", JAN, f"a{n}") for n in range(3)]
               + [("Co/D0/T1", JAN, "")] + [("Co/D1/T0", JAN, "") for _ in range(5)])
    rel = selectors.release(survey=survey)
    sets = comment_sets(survey=survey)
    assert sets, "the department's comments are still shown, pooled"
    for found in sets:
        assert rel.cell(found.unit, found.period) is not None, found
        for child in rel.children.get(found.unit, []):
            if rel.cell(child, found.period) is None:
                # Comments kept apart from a withheld child would bound it from above.
                assert found.unit not in {s.unit for s in sets if s is not found}
    assert ("Co/D0/T0", "2026-01-01") not in {(s.unit, s.period) for s in sets}
