"""Benchmark of aggregation at scale (not a test).

Loads 1,000,000 synthetic reports over a 4-level tree of 2,000 units (company -> 10 orgs
-> 100 departments -> 1,889 teams; 99% of reports on teams, skewed, 1% on departments;
24 monthly periods; random signals and outcomes) into PostgreSQL with COPY, then times:

  (a) the full rebuild, reports.services.cells_rebuild, from no cells and again over
      unchanged cells;
  (b) the same rolled-up result as one plain SQL statement (reports joined to the unit
      closure, grouped by ancestor and period, per-signal sums and per-outcome counts,
      materialised into a temporary table), and prints rebuild / raw (target <= 2);
  (c) incremental throughput: N more reports and their outbox rows are COPYed in batches,
      then cells_apply_pending drains them in this one process (target >= 2,000/s).

It also times the units upsert (with the tree closure) of 20,000 units and one publication,
and checks that the cells equal the raw SQL result after (a) and after (c).

Needs its own PostgreSQL database, which it migrates and empties (its name must contain
"bench"):

    createdb -h 127.0.0.1 -U postgres chorus_bench_agg
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chorus_bench_agg \\
        .venv/bin/python bench/aggregation.py [--reports 1000000] [--incremental 50000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

import django

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from reports import services as report_services  # noqa: E402
from reports.models import AggregationState, Cell  # noqa: E402
from surveys import catalog, services  # noqa: E402
from surveys.models import OrgUnit, UnitAncestor  # noqa: E402

PERIODS = [dt.date(2024 + month // 12, month % 12 + 1, 1) for month in range(24)]
OUTCOMES = ("", "", "", *catalog.OUTCOME_CODES)


def unit_paths(teams: int = 1889) -> list[str]:
    paths = []
    for org in range(10):
        for dept in range(10):
            for team in range(19):
                paths.append(f"Co/O{org}/D{org}.{dept}/T{org}.{dept}.{team}")
    return paths[:teams]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(label: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    elapsed = time.perf_counter() - start
    print(f"  {label}: {elapsed:.2f} s   (load {load_average()})", flush=True)
    return result, elapsed


def copy_reports(survey, *, count: int, seed: int, with_outbox: bool, batch: int) -> None:
    """COPYs `count` reports (and their outbox rows) in transactions of `batch` rows."""
    rng = np.random.default_rng(seed)
    units = OrgUnit.objects.filter(survey=survey)
    teams = np.array(sorted(units.filter(depth=3).values_list("id", flat=True)))
    depts = np.array(sorted(units.filter(depth=2).values_list("id", flat=True)))
    raw = connection.connection  # the psycopg connection
    survey_id = str(survey.id)
    for start in range(0, count, batch):
        size = min(batch, count - start)
        # Busy teams take far more reports than quiet ones (power law on the index).
        unit_ids = np.where(rng.random(size) < 0.01,
                            depts[rng.integers(0, len(depts), size)],
                            teams[(rng.random(size) ** 2 * len(teams)).astype(int)])
        periods = rng.integers(0, len(PERIODS), size)
        masks = rng.integers(0, 1 << len(catalog.SIGNAL_CODES), size)
        outcomes = rng.integers(0, len(OUTCOMES), size)
        hashes = rng.bytes(32 * size).hex()
        reports, outbox = io.StringIO(), io.StringIO()
        for i in range(size):
            period = PERIODS[periods[i]].isoformat()
            reports.write(f"{uuid.uuid4()}\t{survey_id}\t{unit_ids[i]}\t{period}\t{masks[i]}\t"
                          f"{OUTCOMES[outcomes[i]]}\t\t2026-01-05\t{hashes[64 * i:64 * i + 64]}\n")
            if with_outbox:
                outbox.write(f"{uuid.uuid4()}\t{survey_id}\t{unit_ids[i]}\t{period}\n")
        with raw.transaction(), raw.cursor() as cursor:
            with cursor.copy("COPY surveys_report (id, survey_id, unit_id, period_start, "
                             "signals, outcome, comment, received_week, receipt_hash) "
                             "FROM STDIN") as copy:
                copy.write(reports.getvalue())
            if with_outbox:
                with cursor.copy("COPY reports_pendingchange (id, survey_id, unit_id, "
                                 "period_start) FROM STDIN") as copy:
                    copy.write(outbox.getvalue())


def raw_group_by_sql() -> str:
    signals = ", ".join(f"sum((r.signals >> {i}) & 1) AS s{i}"
                        for i in range(len(catalog.SIGNAL_CODES)))
    outcomes = ", ".join(f"count(*) FILTER (WHERE r.outcome = '{code}') AS o{i}"
                         for i, code in enumerate(catalog.OUTCOME_CODES))
    return f"""
        SELECT a.ancestor_id AS unit_id, r.period_start, count(*) AS n, {signals}, {outcomes}
        FROM surveys_report r JOIN reports_unitancestor a ON a.unit_id = r.unit_id
        WHERE r.survey_id = %s
        GROUP BY a.ancestor_id, r.period_start"""  # noqa: S608 - code names only


def raw_group_by(survey) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw")
        cursor.execute(f"CREATE TEMP TABLE bench_raw AS {raw_group_by_sql()}", [str(survey.id)])


def raw_cells() -> dict:
    """bench_raw in the shape of Cell counts (zero counts left out)."""
    nsig, nout = len(catalog.SIGNAL_CODES), len(catalog.OUTCOME_CODES)
    result = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM bench_raw")
        for row in cursor.fetchall():
            unit_id, period, n = row[:3]
            signals = {code: int(v) for code, v in zip(catalog.SIGNAL_CODES, row[3:3 + nsig],
                                                        strict=True) if v}
            outcomes = {code: int(v) for code, v in zip(catalog.OUTCOME_CODES,
                                                         row[3 + nsig:3 + nsig + nout],
                                                         strict=True) if v}
            result[(unit_id, period)] = {"reports": n, "signals": signals, "outcomes": outcomes}
    return result


def stored_cells(survey) -> dict:
    return {(unit_id, period): {"reports": n, "signals": signals, "outcomes": outcomes}
            for unit_id, period, n, signals, outcomes in Cell.objects.filter(survey=survey)
            .values_list("unit_id", "period_start", "reports", "signals", "outcomes")}


def check_equal(survey, label: str) -> None:
    raw_group_by(survey)
    stored, expected = stored_cells(survey), raw_cells()
    if stored != expected:
        differing = [key for key in expected.keys() | stored.keys()
                     if stored.get(key) != expected.get(key)]
        sys.exit(f"FAIL {label}: {len(differing)} cells differ, e.g. {differing[:3]}")
    print(f"  {label}: the {len(stored):,} cells equal the raw SQL result")


def drain(survey) -> int:
    handled = 0
    while count := report_services.cells_apply_pending(survey_id=survey.id):
        handled += count
    return handled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--incremental", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="timings kept: the best of")
    args = parser.parse_args()
    name = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in name:
        sys.exit("Set DATABASE_URL to a PostgreSQL database whose name contains 'bench'.")
    print(f"database {name}, {os.cpu_count()} cores, load {load_average()}")
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE surveys_survey CASCADE")
    owner, _ = get_user_model().objects.get_or_create(username="bench-aggregation")

    print("units")
    big = services.survey_create(owner=owner, title="20,000 units", min_group_size=5)
    big_paths = [f"Co/O{o}/D{o}.{d}/T{o}.{d}.{t}" for o in range(10) for d in range(20)
                 for t in range(99)][:20_000 - 211]
    timed(f"units_upsert of {len(big_paths) + 211:,} units with their closure",
          services.units_upsert, survey=big, units=[{"path": p} for p in big_paths])
    UnitAncestor.objects.filter(survey=big).delete()
    timed("org_tree_index alone for the same 20,000 units", services.org_tree_index,
          survey=big, units=list(OrgUnit.objects.filter(survey=big)))
    survey = services.survey_create(owner=owner, title="1M reports", min_group_size=5)
    services.units_upsert(survey=survey, units=[{"path": p} for p in unit_paths()])
    print(f"  {OrgUnit.objects.filter(survey=survey).count():,} units in the benchmark tree")

    print(f"load {args.reports:,} reports with COPY")
    timed("COPY", copy_reports, survey, count=args.reports, seed=1, with_outbox=False,
          batch=100_000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE surveys_report")
        cursor.execute("ANALYZE reports_unitancestor; ANALYZE surveys_orgunit")

    print("(a) full rebuild, (b) raw SQL GROUP BY")
    cold = []
    for _ in range(args.repeat):
        Cell.objects.filter(survey=survey).delete()
        cold.append(timed("cells_rebuild from no cells", report_services.cells_rebuild,
                          survey_id=survey.id)[1])
    warm = [timed("cells_rebuild over unchanged cells", report_services.cells_rebuild,
                  survey_id=survey.id)[1] for _ in range(args.repeat)]
    raw = [timed("raw SQL GROUP BY into a temporary table", raw_group_by, survey)[1]
           for _ in range(args.repeat)]
    check_equal(survey, "after the rebuild")
    with connection.cursor() as cursor:
        # As autovacuum would after such a load; the incremental plans depend on it.
        cursor.execute("ANALYZE reports_cell; ANALYZE surveys_orgunit")
    rebuild, baseline = min(cold), min(raw)
    print(f"  rebuild {rebuild:.2f} s, raw {baseline:.2f} s: ratio {rebuild / baseline:.2f} "
          f"(over unchanged cells {min(warm) / baseline:.2f}); target <= 2")

    print(f"(c) incremental: {args.incremental:,} reports with outbox rows, then one drain")
    # Keep publication out of the aggregation timing; it is timed on its own below.
    AggregationState.objects.update_or_create(
        survey=survey, defaults={"published_at": timezone.now()})
    timed("COPY reports and outbox rows in batches of 1,000", copy_reports, survey,
          count=args.incremental, seed=2, with_outbox=True, batch=1_000)
    handled, elapsed = timed("cells_apply_pending until the outbox is empty", drain, survey)
    assert handled == args.incremental, handled
    print(f"  {handled / elapsed:,.0f} reports aggregated per second in one worker; "
          "target >= 2,000")
    check_equal(survey, "after the incremental drain")
    timed("one publication (copy of every cell)", report_services.publication_maybe_publish,
          survey_id=survey.id, force=True)
    print(f"done, load {load_average()}")


if __name__ == "__main__":
    main()
