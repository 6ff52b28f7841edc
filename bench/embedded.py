"""How many concurrent respondents the embedded default holds (not a test).

Starts Chorus as `scripts/run` serves it (manage.py serve: gunicorn's threaded
workers, SQLite in a temporary directory, Celery tasks in the web process,
the rate limit off since every client here is one address), then for each
number of clients files reports from that many threads at once, each
waiting for its answer before sending the next. Prints, per run, how many
answers were 201 (the run fails otherwise, or when the database holds a
different number of new reports), reports/s and p50/p99 latency.

    .venv/bin/python bench/embedded.py [--clients 8 16] [--reports 25]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_embedded import (
    UNIT,
    embedded_server,
    last_month_start,
    report_body,
    stored_reports,
)


class _Factory:
    """tmp_path_factory's one method embedded_server uses."""

    def __init__(self, root: Path):
        self.root, self.count = root, 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        path = self.root / f"{name}{self.count}"
        path.mkdir()
        return path


def run(embedded, *, clients: int, reports: int) -> dict:
    client, path = embedded["client"], f"/api/v1/s/{embedded['share_token']}/reports/"
    before = stored_reports(embedded, unit=UNIT, period=last_month_start())
    latencies, statuses, lock = [], [], threading.Lock()

    def respondent():
        for _ in range(reports):
            started = time.perf_counter()
            status = client.request("POST", path, report_body())[0]
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(status)

    threads = [threading.Thread(target=respondent) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    stored = stored_reports(embedded, unit=UNIT, period=last_month_start()) - before
    latencies.sort()
    return {"clients": clients, "answers": len(statuses), "created": statuses.count(201),
            "stored": stored, "per_second": len(statuses) / wall,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "max_ms": 1000 * latencies[-1]}


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--reports", type=int, default=25, help="reports per client")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as root:
        server = embedded_server(_Factory(Path(root)))
        embedded = next(server)
        try:
            for clients in args.clients:
                result = run(embedded, clients=clients, reports=args.reports)
                print(f"{result['clients']:3d} clients: {result['created']}/{result['answers']}"
                      f" answered 201, {result['stored']} stored, {result['per_second']:.0f}"
                      f" reports/s, p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f}"
                      f" ms, max {result['max_ms']:.0f} ms")
                failed |= not (result["created"] == result["answers"] == result["stored"])
        finally:
            server.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
