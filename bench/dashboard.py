"""Benchmark of dashboard reads (not a test).

Two surveys on the same org tree of 2,000 units (company -> 10 orgs -> 100 departments ->
1,889 teams) over 24 monthly periods: one with 1,000,000 reports, one with 10,000. Reports
and their live cells are inserted with SQL (the cells by one roll-up over the tree closure,
as the aggregation would write them; signals included, outcomes left empty), then the
survey is published by the real service, which runs disclosure control and stores the
released table (its time is printed: it runs in the Celery task, not in a request).
Then the shared dashboard page and the aggregates API are requested through Django's test
client (the aggregates API also filtered to one team and one month), and the p95
latency of each is printed per survey with the ratio large / small.
"cold" clears the cache before every request; reads serve the stored release either way.

Needs PostgreSQL; creates and drops its own database (default name bench_dashboard):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \\
        CHORUS_TEST_DB_NAME=bench_dashboard .venv/bin/python bench/dashboard.py [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
os.environ.setdefault("CHORUS_TEST_DB_NAME", "bench_dashboard")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from reports import services as report_services  # noqa: E402
from surveys import catalog, services  # noqa: E402

PERIODS = 24
# The filtered aggregates read: one team over one month.
FILTER = "unit=Co/O0/D0.0/T0.0.0&from=2024-03-01&to=2024-03-31"


def unit_paths() -> list[str]:
    paths = []
    for org in range(10):
        for dept in range(10):
            for team in range(19 if org * 10 + dept < 89 else 18):
                paths.append(f"Co/O{org}/D{org}.{dept}/T{org}.{dept}.{team}")
    return paths[:1889]


def build(owner, *, reports: int, title: str):
    survey = services.survey_create(owner=owner, title=title, min_group_size=5)
    services.units_upsert(survey=survey, units=[{"path": p} for p in unit_paths()])
    signal_sums = ", ".join(
        f"'{code}', SUM((r.signals >> {i}) & 1)" for i, code in enumerate(catalog.SIGNAL_CODES))
    with connection.cursor() as cursor:
        # Reports land on teams with a skewed rate (some teams are far busier), spread
        # over 24 months; ~1% are filed at a department directly.
        cursor.execute("""
            WITH teams AS (
                SELECT id, row_number() OVER (ORDER BY path) AS n, count(*) OVER () AS total
                FROM surveys_orgunit WHERE survey_id = %(survey)s AND depth = 3),
            depts AS (
                SELECT id, row_number() OVER (ORDER BY path) AS n, count(*) OVER () AS total
                FROM surveys_orgunit WHERE survey_id = %(survey)s AND depth = 2),
            picks AS (
                SELECT g, 1 + floor(power(random(), 2) * (SELECT count(*) FROM teams))::int AS t,
                       (random() * 511)::int AS s
                FROM generate_series(1, %(reports)s) AS g)
            INSERT INTO surveys_report (id, survey_id, unit_id, period_start, signals, outcome,
                                        comment, received_week, receipt_hash)
            SELECT gen_random_uuid(), %(survey)s,
                   CASE WHEN p.g %% 100 = 0 THEN d.id ELSE t.id END,
                   (date '2024-01-01'
                    + make_interval(months => ((p.g::bigint * 7919) %% %(periods)s)::int))::date,
                   p.s, '', '', date '2026-01-05', md5(%(survey)s::text || p.g::text)
            FROM picks p JOIN teams t ON t.n = p.t
            JOIN depts d ON d.n = 1 + (p.g / 100) %% (SELECT count(*) FROM depts)
        """, {"survey": str(survey.id), "reports": reports, "periods": PERIODS})
        cursor.execute(f"""
            INSERT INTO reports_cell (survey_id, unit_id, period_start, reports,
                                      signals, outcomes)
            SELECT %(survey)s, a.ancestor_id, r.period_start, count(*),
                   jsonb_build_object({signal_sums}), '{{}}'::jsonb
            FROM surveys_report r JOIN reports_unitancestor a ON a.unit_id = r.unit_id
            WHERE r.survey_id = %(survey)s
            GROUP BY a.ancestor_id, r.period_start
        """, {"survey": str(survey.id)})  # noqa: S608 - the f-string holds code names only
        cursor.execute("ANALYZE surveys_report; ANALYZE reports_cell")
    started = time.perf_counter()
    report_services.publication_maybe_publish(survey_id=survey.id, force=True)
    print(f"{title}: published (copy + disclosure control + store) in "
          f"{time.perf_counter() - started:.1f} s")
    return survey


def p95(client: Client, path: str, *, requests: int, cold: bool) -> float:
    times = []
    for _ in range(requests):
        if cold:
            cache.clear()
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
    return statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a PostgreSQL server.")
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        owner = get_user_model().objects.create(username="bench")
        started = time.perf_counter()
        large = build(owner, reports=args.large, title="large")
        small = build(owner, reports=args.small, title="small")
        print(f"built in {time.perf_counter() - started:.0f} s")
        client = Client()
        results = {}
        for name, survey in (("large", large), ("small", small)):
            cells = survey.published_cells.count()
            print(f"{name}: {survey.reports.count():,} reports, {cells:,} published cells")
            aggregates = f"/api/v1/d/{survey.dashboard_token}/aggregates/"
            for what, path in (("page", f"/d/{survey.dashboard_token}/"),
                               ("aggregates API", aggregates),
                               ("filtered API", f"{aggregates}?{FILTER}")):
                for cold in (True, False):
                    client.get(path)  # warm the code paths
                    results[(name, what, cold)] = p95(client, path, requests=args.requests,
                                                      cold=cold)
        print(f"\n{'read':<16}{'cache':<7}{'p95 1M (ms)':>13}{'p95 10k (ms)':>14}{'ratio':>8}")
        for what in ("page", "aggregates API", "filtered API"):
            for cold in (True, False):
                big, little = results[("large", what, cold)], results[("small", what, cold)]
                print(f"{what:<16}{'cold' if cold else 'warm':<7}{big * 1000:>13.1f}"
                      f"{little * 1000:>14.1f}{big / little:>8.2f}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
