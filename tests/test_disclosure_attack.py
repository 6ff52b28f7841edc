"""An attacker replays difference queries across every dashboard read and learns nothing below k.

For random seeded surveys the attacker collects every number Chorus hands out: the
aggregates API (cells, unit totals, signal breakdowns), the export (all-units timeline,
unit totals with their signals), and dashboard pages for random units and time windows
(subtree timelines and window totals). Each number is a linear fact about the reports
filed directly at each unit and period (split by whether they carry one signal). For
every figure that was withheld, an LP (scipy) then finds the smallest and largest value
consistent with all facts, with every count being >= 0 (a withheld count may be 0, so
withholding tells nothing more): parent minus child, subtree minus whole, window minus
window and export minus page are all inside that LP. A withheld figure must keep a range
at least as wide as the primary interval [0, k - 1] (`tests.primary`). The set of cells and
units listed is checked too: the whole tree in every period, whoever reported.
"""

import datetime as dt
import itertools
import json
import random
import re
import urllib.parse
import urllib.request
from html import escape, unescape

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from scipy.optimize import linprog

from reports import services as report_services
from surveys import catalog, services
from surveys.models import Report, Survey, TokenIssuance
from tests.factories import OrganizerFactory, survey_with_units
from tests.primary import assert_protected
from tests.stack import detection_over_http

pytestmark = pytest.mark.django_db

SIGNAL = catalog.SIGNAL_CODES[0]
CATS = ("with", "without")


def seeded_survey(owner, seed: int):
    rnd = random.Random(seed)
    departments = [f"Co/D{d}" for d in range(rnd.randint(1, 3))]
    teams = [f"{d}/T{t}" for d in departments for t in range(rnd.randint(1, 3))]
    periods = [dt.date(2025, 1 + p, 1) for p in range(rnd.randint(2, 4))]
    k = rnd.choice([3, 4, 5])
    survey = survey_with_units(owner=owner, paths=teams, min_group_size=k)
    ids = dict(survey.units.values_list("path", "id"))
    reports = []
    for path in ["Co", *departments, *teams]:
        for period in periods:
            size = rnd.choice([0, 0, 1, 2, 3, 4, 6, 9] if path in teams else [0, 0, 0, 1, 2])
            for _ in range(size):
                mask = rnd.randrange(1 << 4)
                reports.append(Report(
                    survey=survey, unit_id=ids[path], period_start=period, signals=mask,
                    received_week=dt.date(2026, 1, 5),
                    receipt_hash=f"{survey.id}-{len(reports)}"))
    Report.objects.bulk_create(reports)
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    parents = {path: (path.rpartition("/")[0] or None) for path in ids}
    truth = {}
    for report in reports:
        path = next(p for p, i in ids.items() if i == report.unit_id)
        cat = "with" if report.signals & catalog.signal_bit(SIGNAL) else "without"
        key = (cat, path, report.period_start.isoformat())
        truth[key] = truth.get(key, 0) + 1
    return survey, parents, [p.isoformat() for p in periods], truth, rnd


class Attacker:
    def __init__(self, parents, periods):
        self.units = sorted(parents)
        self.periods = periods
        self.kids = {u: [c for c, p in parents.items() if p == u] for u in self.units}
        self.index = {key: i for i, key in
                      enumerate(itertools.product(CATS, self.units, self.periods))}
        self.rows: list[np.ndarray] = []
        self.rhs: list[float] = []
        self.lower_rows: list[np.ndarray] = []
        self.lower_rhs: list[float] = []

    def subtree(self, unit):
        out, stack = [], [unit]
        while stack:
            u = stack.pop()
            out.append(u)
            stack.extend(self.kids[u])
        return out

    def vec(self, cats, units, periods):
        v = np.zeros(len(self.index))
        for c, u, t in itertools.product(cats, units, periods):
            v[self.index[(c, u, t)]] = 1
        return v

    def rolled(self, cats, unit, periods):
        return self.vec(cats, self.subtree(unit), periods)

    def know(self, v, value):
        self.rows.append(v)
        self.rhs.append(value)

    def know_at_least(self, v, value):
        self.lower_rows.append(v)
        self.lower_rhs.append(value)

    def range(self, v):
        ends = []
        a_ub = -np.array(self.lower_rows) if self.lower_rows else None
        b_ub = -np.array(self.lower_rhs) if self.lower_rows else None
        for sign in (1, -1):
            res = linprog(sign * v, A_eq=np.array(self.rows), b_eq=np.array(self.rhs),
                          A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
            assert res.status in (0, 3), res.message
            ends.append(sign * -np.inf if res.status == 3 else sign * res.fun)
        return ends

    def assert_safe(self, v, truth, k, what, *, derived=False):
        lo, hi = self.range(v)
        assert_protected(lo, hi, float(v @ truth), k, what, derived=derived)


ROW = re.compile(r'<tr data-unit="([^"]+)">(.*?)</tr>', re.S)
CELL = re.compile(r"<td([^>]*)>([^<]*)</td>")
PERIOD = re.compile(r'data-period="([^"]+)"')
UNIT_OPTION = re.compile(r'<option value="([^"]+)">')
TIMELINE_ROW = re.compile(r'<tr data-period="([^"]+)"><th scope="row">[^<]*</th><td[^>]*>([^<]*)'
                          r'</td>')


def assert_withheld_figures_safe(attacker, hidden, windows, truth_vec, k):
    """Every withheld figure (and every sum over several periods no page shows) keeps a
    range as wide as the primary interval under everything the attacker collected."""
    for kind, unit, window in sorted(hidden):
        cats = CATS if kind == "reports" else ("with",)
        attacker.assert_safe(attacker.rolled(cats, unit, window), truth_vec, k,
                             f"{kind} {unit} {window}")
    for kind, unit, window in sorted(windows):
        attacker.assert_safe(attacker.rolled(CATS, unit, window), truth_vec, k,
                             f"{kind} {unit} {window}", derived=True)


def collect(client, survey, attacker, periods, rnd):
    """Every released number, as facts; returns what was withheld, to be checked."""
    token = survey.dashboard_token
    everything = tuple(periods)
    hidden = set()
    windows = set()  # sums over periods a page does not add up: derivable when >= k
    body = client.get(f"/api/v1/d/{token}/aggregates/").json()
    k = body["min_group_size"]
    listed = [(cell["unit"], cell["period"]) for cell in body["cells"]]
    released_periods = sorted({period for _, period in listed})
    assert released_periods == list(everything[everything.index(released_periods[0]):][
        :len(released_periods)])  # a run of periods, with no gap where nobody reported
    assert sorted(listed) == sorted(itertools.product(attacker.units, released_periods))
    assert [total["unit"] for total in body["units"]] == attacker.units
    for cell in body["cells"]:
        key = (cell["unit"], (cell["period"],))
        assert cell["suppressed"] is (cell["reports"] is None)
        if cell["reports"] is None:
            hidden.add(("reports", *key))
        else:
            assert cell["reports"] >= k
            attacker.know(attacker.rolled(CATS, *key), cell["reports"])
    for total in body["units"]:
        if total["reports"] is None:
            hidden.add(("reports", total["unit"], everything))
        else:
            assert total["reports"] >= k
            attacker.know(attacker.rolled(CATS, total["unit"], everything), total["reports"])
    for row in body["breakdowns"]:
        assert all(value >= k for value in (*row["signals"].values(), *row["outcomes"].values()))
        if SIGNAL in row["signals"]:
            attacker.know(attacker.rolled(("with",), row["unit"], (row["period"],)),
                          row["signals"][SIGNAL])
    for cell in body["cells"]:
        if cell["reports"] is not None and not any(
                r["unit"] == cell["unit"] and r["period"] == cell["period"]
                and SIGNAL in r["signals"] for r in body["breakdowns"]):
            hidden.add(("signal", cell["unit"], (cell["period"],)))
    export = client.get(f"/api/v1/d/{token}/export/").json()
    assert [{key: c[key] for key in ("unit", "period", "reports", "suppressed")}
            for c in export["cells"]] == body["cells"]
    for bar in export["timeline"]:
        if bar["reports"] is not None:
            attacker.know(attacker.rolled(CATS, "Co", (bar["period"],)), bar["reports"])
    for total in export["units"]:
        if SIGNAL in total["signals"]:
            attacker.know(attacker.rolled(("with",), total["unit"], everything),
                          total["signals"][SIGNAL])
    units = attacker.units
    for _ in range(6):
        unit = rnd.choice(units)
        first, last = sorted(rnd.sample(range(len(periods)), 2)) if len(periods) > 1 else (0, 0)
        window = tuple(periods[first:last + 1])
        html = client.get(f"/d/{token}/", {"unit": unit, "start": window[0],
                                           "end": window[-1]}).content.decode()
        # The filter offers every unit, whoever reported, and any of them opens.
        assert sorted(unescape(u) for u in UNIT_OPTION.findall(html)) == attacker.units
        assert f"Reports over time in {escape(unit)}<" in html
        for period, value in TIMELINE_ROW.findall(html):
            if value.strip().isdigit():
                assert int(value) >= k
                attacker.know(attacker.rolled(CATS, unit, (period,)), int(value))
        for row_unit, cells in ROW.findall(html):
            row_unit = unescape(row_unit)
            values = CELL.findall(cells)
            for attrs, value in values[:-1]:
                period = PERIOD.search(attrs).group(1)
                if value.strip().isdigit():
                    assert int(value) >= k
                    attacker.know(attacker.rolled(CATS, row_unit, (period,)), int(value))
            total = values[-1][1].strip()
            if total.isdigit():
                assert int(total) >= k
                attacker.know(attacker.rolled(CATS, row_unit, window), int(total))
            elif len(window) > 1:
                windows.add(("reports", row_unit, window))
    return hidden, windows - hidden


@pytest.mark.parametrize("seed", range(24))
def test_difference_queries_across_api_pages_and_exports_recover_nothing_below_k(
        organizer, client, seed):
    cache.clear()
    survey, parents, periods, truth, rnd = seeded_survey(organizer, seed)
    attacker = Attacker(parents, periods)
    truth_vec = np.zeros(len(attacker.index))
    for key, value in truth.items():
        truth_vec[attacker.index[key]] = value
    hidden, windows = collect(client, survey, attacker, periods, rnd)
    for row, value in zip(attacker.rows, attacker.rhs, strict=True):
        assert row @ truth_vec == value, [key for key, i in attacker.index.items() if row[i]]
    assert_withheld_figures_safe(attacker, hidden, windows, truth_vec, survey.min_group_size)


def test_the_attacker_does_catch_a_primary_only_release():
    """The harness can fail: releasing a parent and one child next to a hidden small child
    (primary suppression alone) lets subtraction pin the small child."""
    parents = {"Co": None, "Co/A": "Co", "Co/B": "Co"}
    attacker = Attacker(parents, ["2025-01-01"])
    truth = np.zeros(len(attacker.index))
    truth[attacker.index[("without", "Co/A", "2025-01-01")]] = 1
    truth[attacker.index[("without", "Co/B", "2025-01-01")]] = 5
    for unit in ("Co", "Co/B"):
        vector = attacker.rolled(CATS, unit, ("2025-01-01",))
        attacker.know(vector, float(vector @ truth))
    with pytest.raises(AssertionError, match="attacker sees"):
        attacker.assert_safe(attacker.rolled(CATS, "Co/A", ("2025-01-01",)), truth, 5, "Co/A")


# -- detection runs release clusters: the attacker reads them too ------------------------------

REPRO_TEAMS = ("Co/D1/T1", "Co/D1/T2", "Co/D1/T3", "Co/D2/T4", "Co/D2/T5")
REPRO_MONTHS = [dt.date(2025, month, 1) for month in (1, 2, 3, 4)]


PATTERN = catalog.signals_to_mask(("prior_positive_standing", "abrupt_reversal",
                                   "recap_contradicts_meeting"))


def verified_survey_with_addresses(owner, *, addresses: int):
    """Seven reports shown in January, one hidden in February (k = 5), and `addresses`
    addresses that bought a token: every report spent one, so they bound the reports."""
    survey = survey_with_units(owner=owner, paths=["Co/T0", "Co/T1"], min_group_size=5)
    ids = dict(survey.units.values_list("path", "id"))
    reports = [Report(survey=survey, unit_id=ids["Co/T0"], period_start=period, signals=0,
                      received_week=dt.date(2026, 1, 5), receipt_hash=f"{survey.id}-{i}")
               for i, period in enumerate([dt.date(2025, 1, 1)] * 7 + [dt.date(2025, 2, 1)])]
    Report.objects.bulk_create(reports)
    services.survey_update(survey=survey, fields={"access": Survey.Access.VERIFIED,
                                                  "email_domains": ["acme.example"]})
    TokenIssuance.objects.bulk_create([TokenIssuance(survey=survey, address_digest=f"{i:064x}")
                                       for i in range(addresses)])
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    parents = {path: (path.rpartition("/")[0] or None) for path in ids}
    truth = {("without", "Co/T0", "2025-01-01"): 7, ("without", "Co/T0", "2025-02-01"): 1}
    return survey, parents, ["2025-01-01", "2025-02-01"], truth


def range_with_addresses(attacker, v, *, at_least: int, at_most: float | None = None):
    """The range of `v` when the attacker also knows that the reports number at most the
    addresses verified, N, and what was said of N: one more LP column for N."""
    rows = np.hstack([np.array(attacker.rows), np.zeros((len(attacker.rows), 1))])
    total = np.append(np.ones(len(attacker.index)), -1.0)  # reports - N <= 0
    lower_n = np.append(np.zeros(len(attacker.index)), -1.0)  # -N <= -at_least
    a_ub, b_ub = [total, lower_n], [0.0, -at_least]
    if at_most is not None:
        a_ub.append(np.append(np.zeros(len(attacker.index)), 1.0))
        b_ub.append(at_most)
    ends = []
    for sign in (1, -1):
        res = linprog(sign * np.append(v, 0.0), A_eq=rows, b_eq=np.array(attacker.rhs),
                      A_ub=np.array(a_ub), b_ub=np.array(b_ub), bounds=(0, None),
                      method="highs")
        assert res.status in (0, 3), res.message
        ends.append(sign * -np.inf if res.status == 3 else sign * res.fun)
    return ends


def test_the_addresses_verified_are_released_as_a_lower_bound_that_narrows_no_hidden_count(
        organizer, client):
    cache.clear()
    survey, parents, periods, truth = verified_survey_with_addresses(organizer, addresses=9)
    attacker = Attacker(parents, periods)
    truth_vec = np.zeros(len(attacker.index))
    for key, value in truth.items():
        truth_vec[attacker.index[key]] = value
    hidden, windows = collect(client, survey, attacker, periods, random.Random(0))
    stated = client.get(f"/api/v1/d/{survey.dashboard_token}/export/").json()["membership"]
    assert stated == {"access": "verified", "domains": ["acme.example"],
                      "addresses_at_least": 5}
    february = attacker.rolled(CATS, "Co", ("2025-02-01",))
    assert ("reports", "Co", ("2025-02-01",)) in hidden
    for kind, unit, window in sorted(hidden | windows):
        v = attacker.rolled(CATS if kind == "reports" else ("with",), unit, window)
        lo, hi = range_with_addresses(attacker, v, at_least=stated["addresses_at_least"])
        assert_protected(lo, hi, float(v @ truth_vec), survey.min_group_size,
                         f"{kind} {unit} {window}", derived=(kind, unit, window) in windows)
    # The attacker does catch the band's upper edge: at most 9 addresses leave February's
    # hidden count (at least 1 beside January's 7 and the team's total of 8) in [1, 2].
    assert attacker.range(february) == [1, np.inf]
    lo, hi = range_with_addresses(attacker, february, at_least=5, at_most=9)
    assert (lo, hi) == (1, 2)


def cluster_survey(owner, counts: dict[tuple[str, int], int], *, k: int = 5, seed: int = 7,
                   planted: frozenset = frozenset()):
    """Reports filed at the teams, ``counts[(team, month index)]`` of them, signals seeded;
    reports in ``planted`` cells carry the attrition-drive pattern."""
    rnd = random.Random(seed)
    survey = survey_with_units(owner=owner, paths=list(REPRO_TEAMS), min_group_size=k)
    ids = dict(survey.units.values_list("path", "id"))
    reports, truth = [], {}
    for (path, month), size in sorted(counts.items()):
        for _ in range(size):
            mask = rnd.randrange(1 << 4) | (PATTERN if (path, month) in planted else 0)
            reports.append(Report(
                survey=survey, unit_id=ids[path], period_start=REPRO_MONTHS[month],
                signals=mask, received_week=dt.date(2026, 1, 5),
                receipt_hash=f"{survey.id}-{len(reports)}"))
            cat = "with" if mask & catalog.signal_bit(SIGNAL) else "without"
            key = (cat, path, REPRO_MONTHS[month].isoformat())
            truth[key] = truth.get(key, 0) + 1
    Report.objects.bulk_create(reports)
    report_services.cells_rebuild(survey_id=survey.id)
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    parents = {path: (path.rpartition("/")[0] or None) for path in ids}
    return survey, parents, [m.isoformat() for m in REPRO_MONTHS], truth


def run_default_detection(organizer_api, survey, capture, *, seed=1):
    with capture(execute=True):
        response = organizer_api.post(f"/api/v1/surveys/{survey.id}/detections/",
                                      {"replicas": 99, "seed": seed}, format="json")
    assert response.status_code == 202, response.content


def _window(periods, start, end):
    return tuple(p for p in periods if start[:7] <= p[:7] <= end[:7])


NUMBER = re.compile(r"\d+(?:\.\d+)?")
CARD_SENTENCE = re.compile(r'<p class="cluster-sentence">([^<]*)</p>')


def collect_clusters(client, organizer_api, survey, attacker, periods):
    """Every figure the clusters carry, in the organizer's and the shared API, the export and
    the page, as facts; returns the clusters as the shared API gave them.

    A count of a cut is a fact about the rolled-up reports of its branch over its window,
    whatever the field is called; a signal share times that count is the cut's signal count;
    an expected count gives the branch's total (n = e C / (C_W - c + e)) once the company's
    reports overall and in the window are known; a percentage printed in a sentence bounds
    the signal count it was rounded from.
    """
    token = survey.dashboard_token
    shared = client.get(f"/api/v1/d/{token}/clusters/").json()
    own = organizer_api.get(f"/api/v1/surveys/{survey.id}/clusters/").json()
    export = client.get(f"/api/v1/d/{token}/export/").json()
    html = unescape(client.get(f"/d/{token}/").content.decode())
    everything = tuple(periods)
    company = attacker.rolled(CATS, "Co", everything)
    known_company = [value for row, value in zip(attacker.rows, attacker.rhs, strict=True)
                     if np.array_equal(row, company)]
    for cluster in shared["clusters"] + own["clusters"]:
        window = _window(periods, cluster["start"], cluster["end"])
        count = cluster.get("reports", cluster.get("observed"))
        if count is None:
            attacker.know_at_least(attacker.rolled(CATS, cluster["unit"], window), survey
                                   .min_group_size)
            continue
        attacker.know(attacker.rolled(CATS, cluster["unit"], window), count)
        for signal in cluster.get("signals", []):
            if signal["code"] != SIGNAL:
                continue
            with_signal = signal.get("count")
            if with_signal is None and "share" in signal:
                with_signal = round(signal["share"] * count)
            if with_signal is not None:
                attacker.know(attacker.rolled(("with",), cluster["unit"], window), with_signal)
        expected = cluster.get("expected")
        window_company = [value for row, value in zip(attacker.rows, attacker.rhs, strict=True)
                          if np.array_equal(row, attacker.rolled(CATS, "Co", window))]
        if expected and known_company and window_company and cluster["model"] == "joint":
            big_c, big_cw = known_company[0], window_company[0]
            rest = max(big_cw - count, 0.5)
            branch = expected * big_c / (rest + expected)
            attacker.know(attacker.rolled(CATS, cluster["unit"], everything), round(branch))
    for card in export.get("clusters", []):
        window = _window(periods, card["start"], card["end"])
        if card.get("reports") is not None:
            attacker.know(attacker.rolled(CATS, card["unit"], window), card["reports"])
    for sentence in CARD_SENTENCE.findall(html):
        match = re.search(r": (\d+) reports", sentence)
        card = next((c for c in export.get("clusters", []) if c["sentence"] == sentence), None)
        if match and card:
            unit = card["unit"]
            window = _window(periods, card["start"], card["end"])
            reports = int(match.group(1))
            attacker.know(attacker.rolled(CATS, unit, window), reports)
    return shared


def attack_with_clusters(client, organizer_api, survey, parents, periods, truth):
    attacker = Attacker(parents, periods)
    truth_vec = np.zeros(len(attacker.index))
    for key, value in truth.items():
        truth_vec[attacker.index[key]] = value
    hidden, windows = collect(client, survey, attacker, periods, random.Random(0))
    released = collect_clusters(client, organizer_api, survey, attacker, periods)
    for row, value in zip(attacker.rows, attacker.rhs, strict=True):
        assert abs(row @ truth_vec - value) < 1e-6, (
            "a released figure is not what it claims",
            [key for key, i in attacker.index.items() if row[i]], value)
    assert_withheld_figures_safe(attacker, hidden, windows, truth_vec, survey.min_group_size)
    return released


REPRO_COUNTS = {
    ("Co/D1/T1", 0): 1, ("Co/D1/T1", 1): 9, ("Co/D1/T1", 2): 7, ("Co/D1/T1", 3): 6,
    ("Co/D1/T2", 0): 7, ("Co/D1/T2", 1): 6, ("Co/D1/T2", 2): 11, ("Co/D1/T2", 3): 2,
    ("Co/D1/T3", 0): 8, ("Co/D1/T3", 1): 5, ("Co/D1/T3", 2): 6, ("Co/D1/T3", 3): 10,
    ("Co/D2/T4", 0): 12, ("Co/D2/T4", 1): 5, ("Co/D2/T4", 2): 8, ("Co/D2/T4", 3): 7,
    ("Co/D2/T5", 0): 6, ("Co/D2/T5", 1): 10, ("Co/D2/T5", 2): 5, ("Co/D2/T5", 3): 9,
}


def test_the_default_clusters_do_not_undo_the_suppression_of_small_team_months(
        organizer, organizer_api, client, django_capture_on_commit_callbacks):
    cache.clear()
    survey, parents, periods, truth = cluster_survey(organizer, REPRO_COUNTS)
    run_default_detection(organizer_api, survey, django_capture_on_commit_callbacks)
    attack_with_clusters(client, organizer_api, survey, parents, periods, truth)


def recomputed_clusters(client, survey) -> dict:
    """Every cluster figure as the released table alone gives it, per (unit, start, end)."""
    token = survey.dashboard_token
    body = client.get(f"/api/v1/d/{token}/aggregates/").json()
    export = client.get(f"/api/v1/d/{token}/export/").json()
    periods = export["periods"]
    cells = {(c["unit"], c["period"]): c["reports"] for c in body["cells"]}
    signals = {(b["unit"], b["period"]): b["signals"] for b in body["breakdowns"]}
    outcomes = {(b["unit"], b["period"]): b["outcomes"] for b in body["breakdowns"]}
    totals = {t["unit"]: t for t in export["units"]}
    roots = sorted(u for u in totals if "/" not in u)

    def window_sum(unit, window):
        values = [cells.get((unit, p), 0) if (unit, p) in cells else 0 for p in window]
        return None if any(v is None for v in values) else sum(values)

    def part_sum(parts, unit, window, code):
        if any(cells.get((unit, p)) is None and (unit, p) in cells for p in window):
            return None
        values = [parts.get((unit, p), {}).get(code) if cells.get((unit, p)) else 0
                  for p in window]
        return None if any(v is None for v in values) else sum(values)

    def total(unit):
        if totals[unit]["reports"] is not None:
            return totals[unit]["reports"]
        return window_sum(unit, periods)

    def part_total(parts_of, unit, code, parts):
        value = parts_of(totals[unit]).get(code)
        return value if value is not None else part_sum(parts, unit, periods, code)

    def floor(unit, period):
        if cells.get((unit, period), 0) is not None:
            return cells.get((unit, period), 0)
        return sum(floor(child, period) for child in totals
                   if child.rpartition("/")[0] == unit)

    def figures(unit, window):
        reports = window_sum(unit, window)
        if reports is None:
            return {"reports": None, "ratio": None, "signals": {},
                    "floor": sum(floor(unit, p) for p in window)}
        if not reports:
            return None
        everyone = sum(total(r) for r in roots) if all(total(r) is not None
                                                       for r in roots) else None
        everyone_window = sum(window_sum(r, window) for r in roots) if all(
            window_sum(r, window) is not None for r in roots) else None
        branch = total(unit)
        ratio = None
        if None not in (everyone, everyone_window, branch):
            rest, rest_window = everyone - branch, everyone_window - reports
            if branch > 0 and rest > 0 and rest_window > 0:
                ratio = round(reports * rest / (branch * rest_window), 1)
        shares = {}
        for parts, parts_of, codes in (
                (signals, lambda t: t["signals"], catalog.SIGNAL_CODES),
                (outcomes, lambda t: t["outcomes"], catalog.OUTCOME_CODES)):
            for code in codes:
                count = part_sum(parts, unit, window, code)
                if not count:
                    continue
                overall = [part_total(parts_of, r, code, parts) for r in roots]
                baseline = lift = None
                if None not in overall and everyone is not None and everyone > reports:
                    base = (sum(overall) - count) / (everyone - reports)
                    baseline = round(100 * base)
                    lift = round(count / reports / base, 1) if base > 0 else None
                shares[code] = {"code": code, "count": count,
                                "percent": round(100 * count / reports),
                                "baseline_percent": baseline, "lift": lift}
        return {"reports": reports, "ratio": ratio, "signals": shares}

    return figures, periods


CLUSTER_KEYS = {"model", "scope", "unit", "start", "end", "last_day", "reports", "ratio",
                "p_value", "signals", "attrition_signature", "summary", "verdict", "sentence"}
BANDS = {"at most 0.001": "0.001", "at most 0.01": "0.01", "at most 0.05": "0.05"}


def assert_every_cluster_figure_is_recomputable(client, organizer_api, survey):
    """Each number a cluster carries, in both APIs, the export and the page's sentences, is
    what the released table alone gives (so it adds no fact the table did not), and its
    p-value is a band. Returns how many clusters were checked."""
    figures, periods = recomputed_clusters(client, survey)
    token = survey.dashboard_token
    shared = client.get(f"/api/v1/d/{token}/clusters/").json()["clusters"]
    own = organizer_api.get(f"/api/v1/surveys/{survey.id}/clusters/").json()["clusters"]
    export = client.get(f"/api/v1/d/{token}/export/").json()["clusters"]
    html = unescape(client.get(f"/d/{token}/").content.decode())
    assert own == shared
    checked = 0
    for cluster in shared + export:
        assert set(cluster) <= CLUSTER_KEYS, set(cluster) - CLUSTER_KEYS
        window = _window(periods, cluster["start"], cluster["end"])
        expected = figures(cluster["unit"], window)
        assert expected is not None, f"{cluster['unit']} {window}: an empty cut"
        assert cluster["reports"] == expected["reports"]
        if expected["reports"] is None:
            # Shown without numbers: its existence (at least k reports) follows from the
            # released cells.
            assert expected["floor"] >= survey.min_group_size
        assert cluster["ratio"] == expected["ratio"]
        assert cluster["p_value"] in BANDS
        # Words for the band alone: no figure of its own.
        assert not NUMBER.findall(cluster["verdict"]), cluster["verdict"]
        if "signals" in cluster:
            assert {s["code"]: s for s in cluster["signals"]} == expected["signals"]
        allowed = {BANDS[cluster["p_value"]]}
        if expected["reports"] is not None:
            allowed.add(str(expected["reports"]))
        if expected["ratio"] is not None:
            allowed.add(f"{expected['ratio']:.1f}")
        for share in expected["signals"].values():
            allowed |= {str(share["percent"]), str(share["baseline_percent"])}
        dates = r"\d{1,2} [A-Z][a-z]{2}|[A-Z][a-z]{2} \d{4}|\d{4}|\d{1,2}–\d{1,2}"
        for text in (cluster["sentence"].split(":", 1)[-1], cluster.get("summary", "")):
            numbers = set(NUMBER.findall(re.sub(dates, "", text)))
            assert numbers <= allowed, (text, numbers - allowed)
        assert cluster["sentence"] in html
        checked += 1
    assert len(CARD_SENTENCE.findall(html)) == len(shared)
    assert_detectable_sizes_follow_the_released_total(client, organizer_api, survey)
    return checked


def assert_detectable_sizes_follow_the_released_total(client, organizer_api, survey):
    """The sizes a drive needs to be found (`detectable`) are the same everywhere and follow
    from the released all-units total and the run's critical value alone, a figure of no
    count (like the p-value band): they add no fact about any count."""
    from reports import detectable
    from reports.models import DetectionRun

    token = survey.dashboard_token
    shared = client.get(f"/api/v1/d/{token}/clusters/").json()["detectable"]
    export = client.get(f"/api/v1/d/{token}/export/").json()
    assert organizer_api.get(f"/api/v1/surveys/{survey.id}/clusters/").json()[
        "detectable"] == shared == export["detectable"]
    if not shared:
        return
    total = export["overview"]["reports"]
    assert total is not None
    stored = (DetectionRun.objects.filter(survey=survey, finished__isnull=False)
              .order_by("-finished")[0].detectable)
    span = stored["periods"]
    for row in shared:
        fraction = row["share"] if row["people"] is None else row["people"] / stored["headcount"]
        assert row["relative_risk"] == detectable.minimum_detectable_relative_risk(
            unit_rate=total * fraction / span, company_rate=total / span, span=span,
            critical=stored["critical_llr"], min_reports=survey.min_group_size,
            periods=row["periods"])


PLANTED_COUNTS = {**REPRO_COUNTS, ("Co/D1/T3", 2): 30, ("Co/D1/T3", 3): 34}


def test_a_significant_cluster_releases_only_figures_of_the_released_table(
        organizer, organizer_api, client, django_capture_on_commit_callbacks):
    cache.clear()
    survey, parents, periods, truth = cluster_survey(
        organizer, PLANTED_COUNTS, planted=frozenset({("Co/D1/T3", 2), ("Co/D1/T3", 3)}))
    run_default_detection(organizer_api, survey, django_capture_on_commit_callbacks)
    released = attack_with_clusters(client, organizer_api, survey, parents, periods, truth)
    assert released["clusters"], "the planted drive is released"
    assert released["clusters"][0]["unit"].startswith("Co/D1")
    assert assert_every_cluster_figure_is_recomputable(client, organizer_api, survey)


@pytest.mark.parametrize("seed", range(12))
def test_random_surveys_with_a_planted_drive_release_no_cluster_figure_that_narrows_a_count(
        organizer, organizer_api, client, django_capture_on_commit_callbacks, seed):
    """Random counts (small ones among them) on the five-team tree, a drive of random size
    planted in a random team or department over random months, the default detection run:
    every cluster figure in the APIs, the export and the page recomputes from the released
    table, and with all of them the attacker narrows no hidden count."""
    cache.clear()
    rnd = random.Random(seed)
    counts = {(team, month): rnd.choice([0, 1, 2, 3, 5, 6, 8, 11])
              for team in REPRO_TEAMS for month in range(len(REPRO_MONTHS))}
    drive = rnd.choice(["Co/D1", "Co/D2", *REPRO_TEAMS])
    first = rnd.randrange(len(REPRO_MONTHS))
    months = range(first, min(first + rnd.randint(1, 2), len(REPRO_MONTHS)))
    planted = set()
    for team in REPRO_TEAMS:
        if team == drive or team.startswith(drive + "/"):
            for month in months:
                counts[(team, month)] += rnd.randint(6, 20)
                planted.add((team, month))
    survey, parents, periods, truth = cluster_survey(
        organizer, counts, k=rnd.choice([3, 4, 5]), seed=seed, planted=frozenset(planted))
    run_default_detection(organizer_api, survey, django_capture_on_commit_callbacks, seed=seed)
    attack_with_clusters(client, organizer_api, survey, parents, periods, truth)
    assert_every_cluster_figure_is_recomputable(client, organizer_api, survey)


class _HttpResponse:
    def __init__(self, status: int, body: bytes):
        self.status_code, self.content = status, body

    def json(self):
        return json.loads(self.content)


class HttpClient:
    """What `collect` and the cluster attacks read, over HTTP from a running web process."""

    def __init__(self, stack, headers: dict | None = None):
        self.stack, self.headers = stack, headers or {}

    def get(self, path: str, params: dict | None = None) -> _HttpResponse:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        # Always the stack's own http://127.0.0.1:<port>.
        request = urllib.request.Request(f"{self.stack.web_url}{path}{query}",  # noqa: S310
                                         headers=self.headers)
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return _HttpResponse(response.status, response.read())


@pytest.mark.services
def test_a_running_server_releases_no_cluster_figure_that_narrows_a_small_team_month(stack):
    organizer = OrganizerFactory()
    survey, parents, periods, truth = cluster_survey(
        organizer, PLANTED_COUNTS, planted=frozenset({("Co/D1/T3", 2), ("Co/D1/T3", 3)}))
    token = Token.objects.create(user=organizer).key
    detection_over_http(stack, survey=survey, token=token, body={"replicas": 99, "seed": 1})
    client = HttpClient(stack)
    organizer_http = HttpClient(stack, {"Authorization": f"Token {token}"})
    released = attack_with_clusters(client, organizer_http, survey, parents, periods, truth)
    assert released["clusters"]
    assert assert_every_cluster_figure_is_recomputable(client, organizer_http, survey)
