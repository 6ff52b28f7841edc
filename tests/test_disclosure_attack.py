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
import random
import re
from html import escape, unescape

import numpy as np
import pytest
from django.core.cache import cache
from scipy.optimize import linprog

from reports import services as report_services
from surveys import catalog
from surveys.models import Report
from tests.factories import survey_with_units
from tests.primary import assert_protected

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

    def range(self, v):
        ends = []
        for sign in (1, -1):
            res = linprog(sign * v, A_eq=np.array(self.rows), b_eq=np.array(self.rhs),
                          bounds=(0, None), method="highs")
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
    k = survey.min_group_size
    for kind, unit, window in sorted(hidden):
        cats = CATS if kind == "reports" else ("with",)
        attacker.assert_safe(attacker.rolled(cats, unit, window), truth_vec, k,
                             f"{kind} {unit} {window}")
    for kind, unit, window in sorted(windows):
        attacker.assert_safe(attacker.rolled(CATS, unit, window), truth_vec, k,
                             f"{kind} {unit} {window}", derived=True)


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
