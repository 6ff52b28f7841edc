"""The smallest drive a run could have found (reports.detectable)."""

import math

import numpy as np
import pytest

from reports import detectable, scan


@pytest.mark.parametrize(("replicas", "n_models"), [(999, 1), (999, 2), (199, 1), (99, 4)])
def test_the_critical_value_is_the_least_llr_the_run_calls_significant(replicas, n_models):
    maxima = np.random.default_rng(replicas + n_models).gamma(3.0, 2.0, size=replicas)
    critical = detectable.critical_llr(maxima, alpha=0.05, n_models=n_models)
    assert scan.bonferroni(scan.monte_carlo_p(critical, maxima), n_models) <= 0.05
    below = np.nextafter(critical, -math.inf)
    assert scan.bonferroni(scan.monte_carlo_p(below, maxima), n_models) > 0.05


COMPANY = {"company_rate": 40.0, "span": 26, "periods": 3}


def test_too_few_replicas_make_nothing_significant():
    assert detectable.critical_llr(np.ones(9), alpha=0.05, n_models=1) == math.inf
    assert detectable.minimum_detectable_relative_risk(
        unit_rate=5.0, critical=math.inf, min_reports=5, **COMPANY) is None


@pytest.mark.parametrize("unit_rate", [0.1, 0.33, 0.9, 4.0, 16.0])
@pytest.mark.parametrize("critical", [2.0, 6.5, 11.0])
def test_the_reports_needed_are_the_least_count_the_default_scores_at_the_critical_value(
        unit_rate, critical):
    needed = detectable.reports_needed(unit_rate=unit_rate, critical=critical, min_reports=3,
                                       **COMPANY)

    def llr(window):
        # The default model's counts part for that cut: the unit's reports in the window
        # against the share half way between the rest's (3 of 26 periods, at its mean)
        # and a uniform one.
        return float(scan.binomial_llr(window, unit_rate * 23 + window, 3 / 26))

    assert needed >= 3
    assert llr(needed) >= critical
    assert needed == 3 or llr(needed - 1) < critical


def test_a_unit_that_is_the_whole_company_is_out_of_reach():
    assert detectable.reports_needed(unit_rate=40.0, critical=5.0, min_reports=3,
                                     **COMPANY) is None


def test_a_larger_unit_needs_a_smaller_relative_risk_to_be_found():
    risks = [detectable.minimum_detectable_relative_risk(
        unit_rate=rate, critical=9.0, min_reports=5, **COMPANY)
        for rate in (0.05, 0.2, 0.5, 1, 2, 5, 10)]
    assert risks[0] is None  # a unit this quiet is out of reach on the grid
    found = [risk for risk in risks if risk is not None]
    assert found == sorted(found, reverse=True)
    assert len(set(found)) >= 3


def test_the_stated_risk_is_found_with_the_stated_power_and_the_grid_step_below_is_not():
    rate, critical = 1.2, 9.0
    risk = detectable.minimum_detectable_relative_risk(unit_rate=rate, critical=critical,
                                                       min_reports=5, **COMPANY)
    assert risk is not None
    needed = detectable.reports_needed(unit_rate=rate, critical=critical, min_reports=5,
                                       **COMPANY)
    draws = np.random.default_rng(1).poisson(risk * rate * detectable.DRIVE_PERIODS, 20_000)
    assert np.mean(draws >= needed) >= detectable.POWER - 0.01
    lower = detectable.RELATIVE_RISKS[detectable.RELATIVE_RISKS.index(risk) - 1]
    draws = np.random.default_rng(2).poisson(lower * rate * detectable.DRIVE_PERIODS, 20_000)
    assert np.mean(draws >= needed) < detectable.POWER


@pytest.fixture
def scanned(organizer, organizer_api, django_capture_on_commit_callbacks):
    """Five teams with three reports a month for four months, published and scanned."""
    from tests.test_disclosure_attack import REPRO_TEAMS, cluster_survey, run_default_detection

    survey, *_ = cluster_survey(organizer, {(team, month): 3 for team in REPRO_TEAMS
                                            for month in range(4)})
    run_default_detection(organizer_api, survey, django_capture_on_commit_callbacks)
    return survey


def recomputed(stored: dict, total: int, sizes, *, by_people: bool, k: int = 5) -> list:
    """The rows from the released total and the run's critical value alone."""
    span = stored["periods"]
    return [{"people": size if by_people else None, "share": None if by_people else size,
             "relative_risk": detectable.minimum_detectable_relative_risk(
                 unit_rate=total * (size / stored["headcount"] if by_people else size) / span,
                 company_rate=total / span, span=span, critical=stored["critical_llr"],
                 min_reports=k, periods=3),
             "periods": 3} for size in sizes]


@pytest.mark.django_db
def test_the_dashboard_api_and_export_say_how_large_a_drive_the_run_could_see(
        client, organizer_api, scanned):
    from reports.models import DetectionRun

    token = scanned.dashboard_token
    stored = DetectionRun.objects.get(survey=scanned).detectable
    assert stored["periods"] == 4
    assert stored["headcount"] == 0
    assert math.isfinite(stored["critical_llr"])
    export = client.get(f"/api/v1/d/{token}/export/").json()
    total = export["overview"]["reports"]
    assert total == 60
    rows = client.get(f"/api/v1/d/{token}/clusters/").json()["detectable"]
    assert rows == recomputed(stored, total, (0.05, 0.10, 0.20), by_people=False)
    assert [row["relative_risk"] for row in rows][-1] is not None
    assert organizer_api.get(f"/api/v1/surveys/{scanned.id}/clusters/").json()[
        "detectable"] == rows
    assert export["detectable"] == rows
    page = client.get(f"/d/{token}/").content.decode()
    assert "How large a drive detection can see" in page
    assert "A unit with 20% of the reports" in page
    assert "over 3 months" in page


@pytest.mark.django_db
def test_with_headcounts_the_sizes_are_people(client, organizer_api, scanned,
                                              django_capture_on_commit_callbacks):
    from reports.models import DetectionRun
    from surveys import services
    from tests.test_disclosure_attack import REPRO_TEAMS, run_default_detection

    services.units_upsert(survey=scanned, units=[{"path": team, "headcount": 12}
                                                 for team in REPRO_TEAMS])
    run_default_detection(organizer_api, scanned, django_capture_on_commit_callbacks, seed=2)
    stored = DetectionRun.objects.filter(survey=scanned).order_by("-finished")[0].detectable
    assert stored["headcount"] == 60
    rows = client.get(f"/api/v1/d/{scanned.dashboard_token}/clusters/").json()["detectable"]
    assert rows == recomputed(stored, 60, (10, 25, 50), by_people=True)
    assert "A unit of 25 people" in client.get(f"/d/{scanned.dashboard_token}/").content.decode()


@pytest.mark.django_db
def test_a_run_with_no_cut_of_k_reports_finishes_and_states_no_size(
        client, organizer, organizer_api, django_capture_on_commit_callbacks):
    from reports.models import DetectionRun
    from tests.test_disclosure_attack import REPRO_TEAMS, cluster_survey, run_default_detection

    survey, *_ = cluster_survey(organizer, {(team, 0): 1 for team in REPRO_TEAMS[:4]})
    run_default_detection(organizer_api, survey, django_capture_on_commit_callbacks)
    run = DetectionRun.objects.get(survey=survey)
    assert run.finished is not None
    assert run.detectable["critical_llr"] is None
    body = client.get(f"/api/v1/d/{survey.dashboard_token}/clusters/").json()
    assert body["detectable"] == []


def planted_company(rng, *, team_rate: float, periods: int, drive: float | None):
    """A company of 4 departments of 5 teams, `team_rate` reports per team and period, one
    in ten carrying the attrition pattern; with `drive`, department 1's rate times `drive`
    for three periods, its extra reports looking like everyone else's (counts only)."""
    parents = [-1] + [0] * 4 + [1 + d for d in range(4) for _team in range(5)]
    teams = {1 + d: [5 + 5 * d + t for t in range(5)] for d in range(4)}
    units, when = [], []
    for department in teams.values():
        for team in department:
            for period, count in enumerate(rng.poisson(team_rate, periods)):
                units += [team] * int(count)
                when += [period] * int(count)
    if drive is not None:
        start = int(rng.integers(0, periods - detectable.DRIVE_PERIODS + 1))
        for _extra in range(int(rng.poisson((drive - 1) * team_rate * 5
                                            * detectable.DRIVE_PERIODS))):
            units.append(int(rng.choice(teams[1])))
            when.append(start + int(rng.integers(0, detectable.DRIVE_PERIODS)))
    return scan.ScanData(parents=np.array(parents), report_units=np.array(units),
                         report_periods=np.array(when), n_periods=periods,
                         report_cases=rng.random(len(units)) < 0.1)


def test_drives_planted_at_the_stated_size_are_found_at_least_as_often_as_stated():
    from reports.evaluation import DEFAULT_MODELS

    rng = np.random.default_rng(16)
    periods, team_rate, k = 26, 0.3, 5
    null = planted_company(rng, team_rate=team_rate, periods=periods, drive=None)
    maxima = scan.replica_maxima(null, DEFAULT_MODELS[0], entropy=1, start=0, stop=199,
                                 min_reports=k)
    critical = detectable.critical_llr(maxima, alpha=0.05, n_models=len(DEFAULT_MODELS))
    total = null.n_reports
    risk = detectable.minimum_detectable_relative_risk(
        unit_rate=total / 4 / periods, company_rate=total / periods, span=periods,
        critical=critical, min_reports=k)
    assert risk is not None
    found = 0
    for index in range(30):
        data = planted_company(rng, team_rate=team_rate, periods=periods, drive=risk)
        best = scan.detect(data, min_reports=k, entropy=(16, index), n_replicas=99,
                           models=list(DEFAULT_MODELS))[:1]
        # Found: significant, at department 1, the company above it or a team inside it.
        found += bool(best and best[0].p_adjusted <= 0.05
                      and best[0].cut.branch in {0, 1, 5, 6, 7, 8, 9})
    assert found >= 0.7 * 30
