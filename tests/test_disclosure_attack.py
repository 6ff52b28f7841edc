"""An attacker replays difference queries across every dashboard read and learns nothing below k.

For random seeded surveys the attacker collects every number Chorus hands out: the
aggregates API (cells, unit totals, signal breakdowns), the export (all-units timeline,
unit totals with their signals), and dashboard pages for random units and time windows
(subtree timelines and window totals). Each number is a linear fact about the reports
filed directly at each unit and period (split by whether they carry one signal). For
every figure that was withheld, an LP (scipy) then finds the smallest and largest value
consistent with all facts, with every count being >= 0 and with what the rule itself gives
away (a withheld report count is never 0): parent minus child, subtree
minus whole, window minus window and export minus page are all inside that LP. A withheld
figure must keep a range at least k wide, or be pinned to a value that could have been
shown anyway (0 or >= k).
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
        self.at_least_one: list[np.ndarray] = []

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

    def know_nonzero(self, v):
        """A withheld report count is never 0: the rule shows every zero."""
        self.at_least_one.append(v)

    def range(self, v):
        ends = []
        a_ub = -np.array(self.at_least_one) if self.at_least_one else None
        b_ub = -np.ones(len(self.at_least_one)) if self.at_least_one else None
        for sign in (1, -1):
            res = linprog(sign * v, A_eq=np.array(self.rows), b_eq=np.array(self.rhs),
                          A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
            assert res.status in (0, 3), res.message
            ends.append(sign * -np.inf if res.status == 3 else sign * res.fun)
        return ends

    def assert_safe(self, v, truth, k, what):
        true = float(v @ truth)
        lo, hi = self.range(v)
        assert lo - 1e-6 <= true <= hi + 1e-6, (what, lo, true, hi)
        pinned_ok = hi - lo < 1e-6 and (true == 0 or true >= k)
        assert hi - lo >= k - 1e-6 or pinned_ok, f"{what}: true {true}, attacker sees [{lo}, {hi}]"


ROW = re.compile(r'<tr data-unit="([^"]+)">(.*?)</tr>', re.S)
CELL = re.compile(r"<td([^>]*)>([^<]*)</td>")
PERIOD = re.compile(r'data-period="([^"]+)"')
TIMELINE_ROW = re.compile(r'<tr data-period="([^"]+)"><th scope="row">[^<]*</th><td[^>]*>([^<]*)'
                          r'</td>')


def collect(client, survey, attacker, periods, rnd):
    """Every released number, as facts; returns what was withheld, to be checked."""
    token = survey.dashboard_token
    everything = tuple(periods)
    hidden = set()
    body = client.get(f"/api/v1/d/{token}/aggregates/").json()
    for cell in body["cells"]:
        key = (cell["unit"], (cell["period"],))
        if cell["reports"] is None:
            hidden.add(("reports", *key))
            attacker.know_nonzero(attacker.rolled(CATS, *key))
        else:
            attacker.know(attacker.rolled(CATS, *key), cell["reports"])
    for total in body["units"]:
        if total["reports"] is None:
            hidden.add(("reports", total["unit"], everything))
            attacker.know_nonzero(attacker.rolled(CATS, total["unit"], everything))
        else:
            attacker.know(attacker.rolled(CATS, total["unit"], everything), total["reports"])
    for row in body["breakdowns"]:
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
        # A unit with no published cell at all is unknown to the dashboard: it shows all units.
        shown = unit if f"Reports over time in {escape(unit)}<" in html else "Co"
        for period, value in TIMELINE_ROW.findall(html):
            if value.strip().isdigit():
                attacker.know(attacker.rolled(CATS, shown, (period,)), int(value))
        for row_unit, cells in ROW.findall(html):
            row_unit = unescape(row_unit)
            values = CELL.findall(cells)
            for attrs, value in values[:-1]:
                period = PERIOD.search(attrs).group(1)
                if value.strip().isdigit():
                    attacker.know(attacker.rolled(CATS, row_unit, (period,)), int(value))
            total = values[-1][1].strip()
            if total.isdigit():
                attacker.know(attacker.rolled(CATS, row_unit, window), int(total))
            else:
                hidden.add(("reports", row_unit, window))
    return hidden


@pytest.mark.parametrize("seed", range(24))
def test_difference_queries_across_api_pages_and_exports_recover_nothing_below_k(
        organizer, client, seed):
    cache.clear()
    survey, parents, periods, truth, rnd = seeded_survey(organizer, seed)
    attacker = Attacker(parents, periods)
    truth_vec = np.zeros(len(attacker.index))
    for key, value in truth.items():
        truth_vec[attacker.index[key]] = value
    hidden = collect(client, survey, attacker, periods, rnd)
    for row, value in zip(attacker.rows, attacker.rhs, strict=True):
        assert row @ truth_vec == value, [key for key, i in attacker.index.items() if row[i]]
    k = survey.min_group_size
    for kind, unit, window in sorted(hidden):
        cats = CATS if kind == "reports" else ("with",)
        attacker.assert_safe(attacker.rolled(cats, unit, window), truth_vec, k,
                             f"{kind} {unit} {window}")


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
