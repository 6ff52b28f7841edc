"""Benchmark of the detection core (not a test).

2,000 units (company -> 10 orgs -> 100 departments -> 1,889 teams) x 52 weekly periods,
20,000 reports, targeted model (leave-branch-out), 999 replicas, min_reports=5.
Prints the wall time of observed cuts + all replicas in one process, the time for half
the replicas (one of two workers), and their ratio.

Run:  .venv/bin/python bench/detection_core.py [--replicas 999] [--model targeted]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reports.scan import ScanData, observed_cuts, replica_maxima

N_UNITS = 2000
N_PERIODS = 52
N_REPORTS = 20_000
MIN_REPORTS = 5


def build(seed: int = 7) -> ScanData:
    rng = np.random.default_rng(seed)
    parents = [-1]
    orgs = list(range(1, 11))
    parents += [0] * len(orgs)
    depts = list(range(11, 111))
    parents += [orgs[i // 10] for i in range(100)]
    n_teams = N_UNITS - len(parents)
    parents += [depts[i % 100] for i in range(n_teams)]
    parents = np.array(parents, dtype=np.int64)
    teams = np.arange(111, N_UNITS)
    habit = rng.gamma(2.0, 0.5, size=teams.size)
    units = rng.choice(teams, size=N_REPORTS, p=habit / habit.sum())
    periods = rng.integers(0, N_PERIODS, size=N_REPORTS)
    # a department-level drive of ~300 reports over 4 weeks
    dept_teams = teams[parents[teams] == 42]
    k = 300
    units[:k] = rng.choice(dept_teams, size=k)
    periods[:k] = rng.integers(20, 24, size=k)
    head = np.full(N_UNITS, np.nan)
    head[teams] = rng.integers(4, 15, size=teams.size)
    return ScanData(parents, units, periods, N_PERIODS, headcount=head)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=999)
    ap.add_argument("--model", default="targeted")
    args = ap.parse_args()
    data = build()
    s = args.replicas

    t0 = time.perf_counter()
    cuts = observed_cuts(data, args.model, min_reports=MIN_REPORTS)
    t_obs = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = replica_maxima(
        data, args.model, entropy=2024, start=0, stop=s, min_reports=MIN_REPORTS
    )
    t_all = time.perf_counter() - t0
    total = t_obs + t_all

    data2 = build()  # fresh object: includes the per-data set-up a worker pays
    t0 = time.perf_counter()
    observed_cuts(data2, args.model, min_reports=MIN_REPORTS)
    half = replica_maxima(
        data2, args.model, entropy=2024, start=0, stop=s // 2, min_reports=MIN_REPORTS
    )
    t_half = time.perf_counter() - t0
    assert np.array_equal(half, full[: s // 2])

    p = (1 + np.count_nonzero(full >= cuts[0].llr)) / (s + 1) if cuts else 1.0
    print(f"model={args.model} units={data.n_units} periods={data.n_periods} "
          f"reports={data.n_reports} replicas={s}")
    print(f"top cut: branch={cuts[0].branch} periods={cuts[0].start}..{cuts[0].end} "
          f"llr={cuts[0].llr:.2f} p={p:.4f}")
    print(f"observed cuts:                 {t_obs:8.3f} s")
    print(f"all replicas:                  {t_all:8.3f} s  ({1000 * t_all / s:.2f} ms/replica)")
    print(f"observed + all replicas:       {total:8.3f} s")
    print(f"observed + half the replicas:  {t_half:8.3f} s  (one of two workers)")
    print(f"ratio half / full:             {t_half / total:8.3f}")


if __name__ == "__main__":
    main()
