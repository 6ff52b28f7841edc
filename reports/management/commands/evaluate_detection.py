"""Runs the detection evaluation (`reports.evaluation`) and prints its table."""

import time

from django.core.management.base import BaseCommand, CommandError

from reports import evaluation


class Command(BaseCommand):
    help = ("Evaluate the scan on seeded synthetic scenarios against baselines: type-I error on "
            "null cells, power and localisation on drive cells, and the detector's targets.")

    def add_arguments(self, parser):
        parser.add_argument("--scenarios", type=int, default=20,
                            help="Scenarios per drive cell.")
        parser.add_argument("--null-scenarios", type=int, default=None,
                            help="Scenarios per null cell (default: --scenarios).")
        parser.add_argument("--replicas", type=int, default=99,
                            help="Monte Carlo replicas per model and scenario.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cells", default="null,department/L2,department/L4/RR3,"
                            "signature,in-season",
                            help="Comma-separated substrings of cell names; 'all' for every "
                                 "cell.")

    def handle(self, *args, scenarios: int, null_scenarios: int | None, replicas: int,
               seed: int, cells: str, **options):
        if scenarios < 1 or replicas < 19 or (null_scenarios is not None and null_scenarios < 1):
            raise CommandError("Need --scenarios >= 1, --null-scenarios >= 1 and "
                               "--replicas >= 19.")
        chosen = evaluation.default_cells()
        if cells != "all":
            keys = [key.strip() for key in cells.split(",") if key.strip()]
            chosen = [cell for cell in chosen if any(key in cell.name for key in keys)]
        if not chosen:
            raise CommandError("No scenario cell matches --cells.")
        started = time.monotonic()

        def progress(name: str) -> None:
            self.stderr.write(f"{time.monotonic() - started:8.0f} s  {name}")

        rows = evaluation.evaluate(chosen, n_scenarios=scenarios,
                                   n_null_scenarios=null_scenarios, n_replicas=replicas,
                                   seed=seed, progress=progress)
        self.stdout.write(evaluation.format_table(rows))
        self.stdout.write(
            f"\n{len(chosen)} cells; {scenarios} scenarios per drive cell, "
            f"{null_scenarios or scenarios} per null cell; {replicas} replicas; rate = type-I "
            "error (null) or power (drive), loc = mean Jaccard of detected vs planted cells, "
            "ext = power with Jaccard >= 0.5.\n")
        self.stdout.write("\n".join(evaluation.targets_summary(rows)))
