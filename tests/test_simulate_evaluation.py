"""Tests of the synthetic-data generator and the evaluation harness (no Django needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports import evaluation, scan
from reports.evaluation import EvalConfig, ScenarioCell, evaluate, format_table
from reports.scan import available_models
from reports.simulate import (
    OUTCOMES,
    SIGNALS,
    Drive,
    OrgShape,
    has_signature,
    simulate,
)


def test_simulate_is_reproducible_from_the_seed():
    a = simulate(5, drives=[Drive("department", 4, 3.0, signature_share=0.5)])
    b = simulate(5, drives=[Drive("department", 4, 3.0, signature_share=0.5)])
    assert np.array_equal(a.report_units, b.report_units)
    assert np.array_equal(a.report_periods, b.report_periods)
    assert a.report_signals == b.report_signals
    assert a.report_outcomes == b.report_outcomes
    assert a.drives == b.drives
    c = simulate(6, drives=[Drive("department", 4, 3.0)])
    assert not np.array_equal(a.report_units, c.report_units)


def test_simulated_tree_has_paths_levels_headcounts_and_topological_parents():
    ds = simulate(1)
    assert ds.unit_paths[0] == "Acme"
    assert ds.unit_levels[0] == "company"
    for u, p in enumerate(ds.parents):
        if u == 0:
            assert p == -1
            continue
        assert 0 <= p < u
        assert ds.unit_paths[u].startswith(ds.unit_paths[p] + "/")
    teams = ds.units_at_level("team")
    assert all(ds.unit_paths[t].count("/") == 3 for t in teams)
    assert np.all(ds.headcount[teams] > 0)
    assert np.all(ds.headcount[ds.units_at_level("department")] == 0)
    assert set(ds.report_units.tolist()) <= set(teams.tolist())


def test_reports_carry_known_signals_and_outcomes():
    ds = simulate(2, drives=[Drive("org", 4, 3.0, signature_share=1.0)])
    assert ds.n_reports > 0
    for signals, outcome in zip(ds.report_signals, ds.report_outcomes, strict=True):
        assert set(signals) <= set(SIGNALS)
        assert outcome is None or outcome in OUTCOMES
    assert has_signature(("prior_positive_standing", "abrupt_reversal", "coaching_plan"))
    assert not has_signature(("prior_positive_standing", "abrupt_reversal"))


def test_planted_reports_carry_the_signature_and_background_mostly_does_not():
    ds = simulate(3, drives=[Drive("org", 6, 4.0, signature_share=0.9)])
    cases = ds.report_cases
    assert cases[ds.report_planted].mean() > 0.75
    assert cases[~ds.report_planted].mean() < 0.1


def test_planted_cells_are_the_drive_branch_teams_during_the_window():
    ds = simulate(4, drives=[Drive("department", 3, 5.0, start=7)])
    (drive,) = ds.drives
    assert ds.unit_levels[drive.unit] == "department"
    assert drive.start == 7
    assert ds.planted_cells == frozenset(ds.leaf_cells(drive.unit, 7, 9))
    planted_units = {u for u, _ in ds.planted_cells}
    assert all(ds.parents[u] == drive.unit for u in planted_units)
    inside = ds.report_planted
    assert all((int(u), int(t)) in ds.planted_cells
               for u, t in zip(ds.report_units[inside], ds.report_periods[inside], strict=True))


def test_review_season_raises_company_wide_reporting():
    ds = simulate(5, season_periods=(10, 11), season_multiplier=4.0, habit_shape=math.inf)
    per_period = np.bincount(ds.report_periods, minlength=ds.n_periods)
    assert per_period[[10, 11]].mean() > 2.5 * np.delete(per_period, [10, 11]).mean()


def test_simulated_dataset_feeds_every_scan_model():
    data = simulate(6).to_scan_data()
    assert available_models(data) == ["targeted", "wave", "signature", "per_capita", "joint",
                                      "profile", "profile_floor"]


def test_tiny_evaluation_is_structurally_sane_and_finds_a_strong_department_drive():
    cells = [
        ScenarioCell("null"),
        ScenarioCell("department/L4/RR5", "department", 4, 5.0),
    ]
    rows = evaluate(cells, n_scenarios=12, n_replicas=99, n_calibration=60, seed=3,
                    include_classic=False)
    methods = {r.method for r in rows}
    assert methods == set(evaluation.METHODS) - {"targeted_classic"}
    assert {r.cell for r in rows} == {"null", "department/L4/RR5"}
    for r in rows:
        assert r.n_scenarios == 12
        assert 0.0 <= r.alarm_rate <= 1.0
        if r.kind == "null":
            assert math.isnan(r.localization)
            assert math.isnan(r.extended_power)
        else:
            assert r.extended_power <= r.alarm_rate
            assert math.isnan(r.localization) or 0.0 <= r.localization <= 1.0
    by = {(r.cell, r.method): r for r in rows}
    assert by[("department/L4/RR5", "combined")].alarm_rate >= 0.6
    assert by[("department/L4/RR5", "wave")].alarm_rate >= 0.4
    for m in ("targeted", "wave", "signature", "combined"):
        assert by[("null", m)].alarm_rate <= 0.25, m
    table = format_table(rows)
    assert "department/L4/RR5" in table
    assert "combined" in table


def test_per_capita_model_is_calibrated_when_reporting_habits_do_not_vary():
    cfg = EvalConfig(habit_shape=math.inf)
    rows = evaluate([ScenarioCell("null")], n_scenarios=12, n_replicas=99, n_calibration=20,
                    config=cfg, methods=["per_capita", "combined"], include_classic=False)
    by = {r.method: r for r in rows}
    assert by["per_capita"].alarm_rate <= 0.25
    assert by["combined"].alarm_rate <= 0.25


@pytest.mark.parametrize("level", ["team", "department", "org"])
def test_default_cells_cover_every_level_length_and_relative_risk(level):
    names = {c.name for c in evaluation.default_cells()}
    for length in (1, 2, 4, 8):
        for rr in (1.5, 2, 3, 5):
            assert f"{level}/L{length}/RR{rr:g}" in names
    assert {"null", "null+season"} <= names
    assert any("in-season" in n for n in names)
    assert any("signature" in n for n in names)


def test_default_detector_keeps_its_false_alarms_through_a_review_season_that_fools_wave():
    cells = [ScenarioCell("null+season", season=True)]
    rows = evaluate(cells, n_scenarios=12, n_replicas=99, n_calibration=20, seed=5,
                    methods=["wave", "combined"], include_classic=False)
    by = {r.method: r for r in rows}
    assert by["wave"].alarm_rate >= 0.5
    assert by["combined"].alarm_rate <= 0.25


def test_targets_summary_names_every_target_with_pass_or_miss():
    cells = [ScenarioCell("null"), ScenarioCell("department/L4/RR3", "department", 4, 3.0),
             ScenarioCell("team/L2/RR5", "team", 2, 5.0)]
    rows = evaluate(cells, n_scenarios=3, n_replicas=19, n_calibration=10, seed=1)
    lines = evaluation.targets_summary(rows)
    assert all(line.startswith(("PASS ", "MISS ")) for line in lines)
    text = "\n".join(lines)
    assert "false alarms on null" in text
    assert "power on department/L4/RR3" in text
    assert "above ears_c2" in text
    assert "above naive_threshold" in text
    assert "above per_capita on" in text


def test_background_mean_is_headcount_times_rate_times_season_at_teams_only():
    ds = simulate(7, season_periods=(3,), season_multiplier=2.0, habit_shape=math.inf,
                  base_rate=0.05)
    teams = ds.units_at_level("team")
    expected = ds.headcount[teams, None] * 0.05 * np.where(np.arange(ds.n_periods) == 3, 2, 1)
    assert np.allclose(ds.background_mean[teams], expected)
    inner = np.setdiff1d(np.arange(ds.n_units), teams)
    assert not ds.background_mean[inner].any()


def test_larger_org_shape_gives_larger_departments():
    small = simulate(8)
    shape = OrgShape(teams_per_department=(5, 7), team_size=(18, 32))
    large = simulate(8, shape=shape)
    assert shape.mean_department_size == 150
    assert OrgShape().mean_department_size == 32

    def mean_department(ds):
        depts = ds.units_at_level("department")
        return np.mean([ds.headcount[ds.branch_units(d)].sum() for d in depts])

    assert mean_department(small) < 50 < 100 < mean_department(large)


@pytest.mark.parametrize(("c", "mu"), [(0, 3.0), (1, 0.5), (5, 5.1), (12, 5.1), (40, 24.0),
                                       (90, 24.0), (150, 160.0), (3, 0.0)])
def test_oracle_poisson_tail_matches_scipy(c, mu):
    from scipy.stats import poisson

    want = 1.0 if c <= 0 else (0.0 if mu == 0 else poisson.sf(c - 1, mu))
    assert evaluation._poisson_sf(c, mu) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_oracle_is_a_reference_on_drive_cells_and_absent_on_null_cells():
    cells = [ScenarioCell("null"), ScenarioCell("department/L4/RR5", "department", 4, 5.0)]
    rows = evaluate(cells, n_scenarios=10, seed=2, methods=["oracle"])
    (row,) = rows
    assert row.cell == "department/L4/RR5"
    assert row.alarm_rate >= 0.8
    assert row.localization == 1.0


def test_power_on_a_department_drive_grows_with_the_size_of_departments():
    cell = [ScenarioCell("department/L4/RR3", "department", 4, 3.0)]
    power = {}
    for size, shape in (("today", OrgShape()),
                        ("150", OrgShape(teams_per_department=(5, 7), team_size=(18, 32)))):
        rows = evaluate(cell, n_scenarios=20, n_replicas=39, seed=4,
                        methods=["combined", "oracle"], config=EvalConfig(shape=shape))
        power[size] = {r.method: r.alarm_rate for r in rows}
    assert power["150"]["combined"] >= power["today"]["combined"] + 0.4
    assert power["150"]["oracle"] >= power["today"]["oracle"]


def test_cells_are_chosen_by_substring_or_exactly_by_name():
    names = [c.name for c in evaluation.select_cells(["department/L4/RR3"])]
    assert names == ["department/L4/RR3", "department/L4/RR3/in-season"]
    names = [c.name for c in evaluation.select_cells(["=department/L4/RR3", "=null"])]
    assert names == ["null", "department/L4/RR3"]
    assert evaluation.parse_range("8-16") == (8, 16)
    assert evaluation.parse_range("12") == (12, 12)
    with pytest.raises(ValueError, match="LOW <= HIGH"):
        evaluation.parse_range("16-8")


def test_evaluate_detection_command_takes_the_company_shape_and_reports_the_oracle():
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("evaluate_detection", "--cells", "=department/L4/RR5", "--scenarios", "3",
                 "--replicas", "19", "--methods", "combined,oracle", "--teams-per-department",
                 "4-6", "--team-size", "8-16", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "oracle" in text
    assert "department/L4/RR5/in-season" not in text
    assert "4-6 teams per department, 8-16 people per team (60 people per department" in text
    with pytest.raises(CommandError, match="LOW <= HIGH"):
        call_command("evaluate_detection", "--team-size", "9-3", stdout=StringIO())


def test_the_evaluated_default_detector_is_the_profile_floor_model_the_product_runs():
    from reports import detection

    assert evaluation.DEFAULT_MODELS == detection.DEFAULT_MODELS == ("profile_floor",)
    cells = [ScenarioCell("department/L4/RR2/signature", "department", 4, 2.0,
                          signature_share=0.5)]
    rows = evaluate(cells, n_scenarios=6, n_replicas=19, seed=3,
                    methods=["profile_floor", "combined"], include_classic=False)
    by = {r.method: r for r in rows}
    assert by["combined"].alarms == by["profile_floor"].alarms
    assert by["combined"].localization == pytest.approx(by["profile_floor"].localization,
                                                        nan_ok=True)


def test_the_default_statistic_keeps_its_false_alarms_on_weekly_null_surveys_with_a_season():
    cells = [ScenarioCell("null"), ScenarioCell("null+season", season=True)]
    rows = evaluate(cells, n_scenarios=30, n_replicas=39, seed=6,
                    methods=["profile_floor", "wave"], config=evaluation.weekly_config())
    by = {(r.cell, r.method): r for r in rows}
    for cell in ("null", "null+season"):
        assert by[(cell, "profile_floor")].alarm_rate <= 0.2, cell
    assert by[("null+season", "wave")].alarm_rate >= 0.5


def test_the_min_p_column_runs_and_its_false_alarms_are_a_rate_on_a_tiny_null():
    cells = [ScenarioCell("null")]
    rows = evaluate(cells, n_scenarios=4, n_replicas=19, seed=2,
                    methods=["best", "profile", "profile_counts"],
                    config=evaluation.weekly_config())
    by = {r.method: r for r in rows}
    assert set(by) == {"best", "profile", "profile_counts"}
    assert by["best"].n_scenarios == 4
    assert 0.0 <= by["best"].alarm_rate <= 1.0
    # profile's column is the profile part of best, drawn from the same replicas
    alone = evaluate(cells, n_scenarios=4, n_replicas=19, seed=2, methods=["profile"],
                     config=evaluation.weekly_config())
    assert alone[0].alarms == by["profile"].alarms


def test_the_case_floor_column_scores_profile_replicas_without_changing_profile():
    cells = [ScenarioCell("null")]
    cfg = evaluation.weekly_config()
    rows = evaluate(cells, n_scenarios=3, n_replicas=19, seed=2,
                    methods=["profile_floor", "profile"], config=cfg)
    by = {r.method: r for r in rows}
    assert set(by) == {"profile_floor", "profile"}
    alone = evaluate(cells, n_scenarios=3, n_replicas=19, seed=2, methods=["profile"],
                     config=cfg)
    assert alone[0].alarms == by["profile"].alarms
    ds = evaluation._dataset(cells[0], cfg, evaluation._seed(2, "null", 0))
    data = ds.to_scan_data()
    cut = scan.observed_cuts(data, "profile_floor", min_reports=cfg.min_reports, limit=1)[0]
    entropy = (*evaluation._seed(2, "null", 0), 1)
    maxima = scan.replica_maxima(data, "profile_floor", entropy=entropy, start=0, stop=19,
                                 min_reports=cfg.min_reports)
    p = scan.monte_carlo_p(cut.llr, maxima)
    assert (p <= cfg.alpha) == by["profile_floor"].alarms[0]


def test_the_min_p_of_two_parts_is_calibrated_on_the_same_replicas():
    data = evaluation._dataset(ScenarioCell("null"), evaluation.weekly_config(),
                               evaluation._seed(0, "null", 0)).to_scan_data()
    cfg = evaluation.weekly_config()

    class Dataset:
        def leaf_cells(self, branch, start, end):
            return {(branch, start, end)}

    parts, (p, cells) = evaluation._min_p(Dataset(), data, cfg, 39, (1, 2))
    p_parts = [parts[m][0] for m in evaluation.MIN_P_PARTS]
    # the min of two p-values calibrated on their joint null is no smaller than the
    # smaller part's p
    assert min(p_parts) <= p <= 1.0
    assert p in {k / 40 for k in range(1, 41)}
    assert cells == parts["profile_counts" if p_parts[0] < p_parts[1] else "profile"][1]


def test_joint_statistic_keeps_its_false_alarms_on_null_surveys_with_and_without_a_season():
    cells = [ScenarioCell("null"), ScenarioCell("null+season", season=True)]
    rows = evaluate(cells, n_scenarios=30, n_replicas=39, seed=6, methods=["joint"])
    for row in rows:
        assert row.alarm_rate <= 0.2, row.cell


def test_a_counts_only_drive_plants_its_reports_with_background_signals():
    drive = Drive("department", 3, 1.0, extra_reports=40, signals="background")
    ds = simulate(21, n_periods=12, drives=[drive])
    planted = ds.report_planted
    assert planted.sum() == 40
    assert len(ds.drives) == 1
    assert all((int(u), int(t)) in ds.planted_cells
               for u, t in zip(ds.report_units[planted], ds.report_periods[planted],
                               strict=True))
    # no forced signature: planted reports carry it about as rarely as the background
    assert ds.report_cases[planted].mean() < 0.1
    share = np.mean([("abrupt_reversal" in s) for s, p in zip(ds.report_signals, planted,
                                                                strict=True) if p])
    assert share < 0.4


def test_a_halfway_drive_carries_signals_between_the_background_and_the_pattern():
    def signature_share(signals: str) -> float:
        drive = Drive("org", 6, 1.0, extra_reports=400, signals=signals, signature_share=1.0)
        ds = simulate(22, n_periods=12, drives=[drive])
        return float(ds.report_cases[ds.report_planted].mean())

    background, halfway, pattern = (signature_share(s)
                                    for s in ("background", "halfway", "pattern"))
    assert background < 0.05
    assert 0.15 < halfway < 0.35
    assert pattern == 1.0


def test_a_drive_with_a_negative_start_ends_with_the_study():
    ds = simulate(23, n_periods=26, drives=[Drive("department", 2, 3.0, start=-2)])
    (drive,) = ds.drives
    assert (drive.start, drive.length) == (24, 2)
    assert {t for _, t in ds.planted_cells} == {24, 25}


def test_every_respondent_gives_an_outcome_when_asked_to():
    ds = simulate(24, every_outcome=True, drives=[Drive("org", 4, 3.0)])
    assert None not in ds.report_outcomes
    assert None in simulate(24, drives=[Drive("org", 4, 3.0)]).report_outcomes


def test_an_unknown_drive_signal_mix_is_refused():
    with pytest.raises(ValueError, match="signals must be one of"):
        Drive("team", 2, 2.0, signals="loud")


def test_weekly_config_is_a_half_year_of_about_160_reports_in_about_22_departments():
    cfg = evaluation.weekly_config()
    null = ScenarioCell("null")
    sizes = [evaluation._dataset(null, cfg, (0, 0, k)) for k in range(20)]
    assert cfg.n_periods == 26
    assert 140 <= np.mean([ds.n_reports for ds in sizes]) <= 180
    assert 18 <= np.mean([ds.units_at_level("department").size for ds in sizes]) <= 27
    assert 85 <= np.mean([ds.units_at_level("team").size for ds in sizes]) <= 120


def test_shape_cells_plant_the_drives_they_name():
    cfg = evaluation.weekly_config()
    cells = {c.name: c for c in evaluation.shape_cells()}
    assert {"null", "null+season", "counts/department", "halfway/department", "pattern/end",
            "pattern/two-drives", "counts/every-outcome"} <= set(cells)
    two = evaluation._dataset(cells["pattern/two-drives"], cfg, (0, 1, 2))
    assert len(two.drives) == 2
    assert two.report_planted.sum() == 12
    end = evaluation._dataset(cells["pattern/end"], cfg, (0, 1, 2))
    assert end.drives[0].start == cfg.n_periods - 2
    counts = evaluation._dataset(cells["counts/department"], cfg, (0, 1, 2))
    assert counts.report_planted.sum() == 9
    assert not counts.report_cases[counts.report_planted].all()


def test_wilson_interval_matches_the_closed_form_and_stays_inside_zero_one():
    low, high = evaluation.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert evaluation.wilson_interval(0, 20)[0] == 0.0
    assert evaluation.wilson_interval(20, 20)[1] == 1.0
    assert all(math.isnan(x) for x in evaluation.wilson_interval(0, 0))


def test_paired_difference_interval_is_newcombes_square_and_add_of_wilson_limits():
    # pairs (both, first only, second only, neither) = (8, 4, 4, 2): a d = b c, so the
    # correlation term vanishes and the limits are the hybrid score ones
    x = [True] * 12 + [False] * 6
    y = [True] * 8 + [False] * 4 + [True] * 4 + [False] * 2
    diff, (low, high) = evaluation.paired_difference(x, y)
    l1, u1 = evaluation.wilson_interval(12, 18)
    l2, u2 = evaluation.wilson_interval(12, 18)
    assert diff == 0.0
    assert low == pytest.approx(-math.hypot(12 / 18 - l1, u2 - 12 / 18))
    assert high == pytest.approx(math.hypot(u1 - 12 / 18, 12 / 18 - l2))
    # positively correlated pairs (most surveys agree) give a narrower interval
    agree = [True] * 12 + [False] * 6
    other = [True] * 11 + [False] * 6 + [True]
    _, (low2, high2) = evaluation.paired_difference(agree, other)
    assert high2 - low2 < high - low
    assert low2 < 0 < high2


def test_paired_comparisons_compare_the_default_with_every_baseline_on_the_same_surveys():
    cells = [ScenarioCell("null"),
             ScenarioCell("counts/department", "department", 3, extra_reports=9,
                          signals="background")]
    rows = evaluate(cells, n_scenarios=6, n_replicas=19, n_calibration=10, seed=2,
                    config=evaluation.weekly_config(),
                    methods=["combined", "wave", "targeted", "ears_c2", "oracle"])
    for row in rows:
        assert len(row.alarms) == len(row.extended) == row.n_scenarios
        assert row.alarm_rate == pytest.approx(np.mean(row.alarms))
        low, high = row.alarm_interval
        assert low <= row.alarm_rate <= high
    pairs = evaluation.paired_comparisons(rows)
    drive = {(p.measure, p.baseline) for p in pairs if p.cell == "counts/department"}
    assert drive == {(m, b) for m in ("alarm", "extended")
                     for b in ("wave", "targeted", "ears_c2", "oracle")}
    assert {p.baseline for p in pairs if p.cell == "null"} == {"wave", "targeted", "ears_c2"}
    assert all(p.excluded == "reference" for p in pairs if p.baseline == "oracle")
    assert all(not p.counts for p in pairs if p.cell == "null")
    for p in pairs:
        assert p.interval[0] <= p.difference <= p.interval[1]
        assert p.better - p.worse == round(p.difference * p.n)
    text = evaluation.format_paired(pairs)
    assert "counts/department" in text
    assert "95% interval" in text
