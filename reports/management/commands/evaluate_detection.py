"""Runs the detection evaluation (`reports.evaluation`) and prints its table."""

import time

from django.core.management.base import BaseCommand, CommandError

from reports import evaluation
from reports.simulate import OrgShape


def _range(text: str) -> tuple[int, int]:
    try:
        return evaluation.parse_range(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = ("Evaluate the scan on seeded synthetic scenarios against baselines: type-I error on "
            "null cells, power and localisation on drive cells, and the detector's targets.")

    _default_cells = "null,department/L2,department/L4/RR3,signature,in-season"

    def add_arguments(self, parser):
        default = OrgShape()
        parser.add_argument("--scenarios", type=int, default=20,
                            help="Scenarios per drive cell.")
        parser.add_argument("--null-scenarios", type=int, default=None,
                            help="Scenarios per null cell (default: --scenarios).")
        parser.add_argument("--replicas", type=int, default=99,
                            help="Monte Carlo replicas per model and scenario.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cells", default=self._default_cells,
                            help="Comma-separated substrings of cell names (=NAME: exactly "
                                 "the cell NAME); 'all' for every cell.")
        parser.add_argument("--methods", default="",
                            help="Comma-separated methods to report (default: all of "
                                 f"{', '.join(evaluation.METHODS)}).")
        parser.add_argument("--team-size", default="{}-{}".format(*default.team_size),
                            help="People per team, LOW-HIGH drawn uniformly per team.")
        parser.add_argument("--teams-per-department",
                            default="{}-{}".format(*default.teams_per_department),
                            help="Teams per department, LOW-HIGH drawn uniformly.")
        parser.add_argument("--config", choices=sorted(evaluation.CONFIGS), default="default",
                            help="Scenario settings: 'default' (20 periods, the published "
                                 "cells) or 'weekly' (26 weeks, about 160 background "
                                 "reports in about 22 departments, the shapes of drive of "
                                 "evaluation.shape_cells; --team-size and "
                                 "--teams-per-department do not apply).")
        parser.add_argument("--intervals", action="store_true",
                            help="Also print every rate with its Wilson 95%% interval and the "
                                 "default detector against every baseline, survey by "
                                 "survey (paired differences with 95%% intervals).")

    def handle(self, *args, scenarios: int, null_scenarios: int | None, replicas: int,
               seed: int, cells: str, methods: str, team_size: str, teams_per_department: str,
               config: str = "default", intervals: bool = False, **options):
        if scenarios < 1 or replicas < 19 or (null_scenarios is not None and null_scenarios < 1):
            raise CommandError("Need --scenarios >= 1, --null-scenarios >= 1 and "
                               "--replicas >= 19.")
        weekly = config == "weekly"
        chosen = evaluation.shape_cells() if weekly else evaluation.default_cells()
        if weekly and cells == self._default_cells:
            cells = "all"
        if cells != "all":
            chosen = evaluation.select_cells(cells.split(","), chosen)
        if not chosen:
            raise CommandError("No scenario cell matches --cells.")
        wanted = [m.strip() for m in methods.split(",") if m.strip()] or None
        if wanted and set(wanted) - set(evaluation.METHODS):
            raise CommandError(f"Unknown methods; choose from {', '.join(evaluation.METHODS)}.")
        if weekly:
            eval_config = evaluation.weekly_config()
            shape = eval_config.shape
        else:
            shape = OrgShape(team_size=_range(team_size),
                             teams_per_department=_range(teams_per_department))
            eval_config = evaluation.EvalConfig(shape=shape)
        started = time.monotonic()

        def progress(name: str) -> None:
            self.stderr.write(f"{time.monotonic() - started:8.0f} s  {name}")

        rows = evaluation.evaluate(chosen, n_scenarios=scenarios,
                                   n_null_scenarios=null_scenarios, n_replicas=replicas,
                                   seed=seed, methods=wanted,
                                   config=eval_config, progress=progress)
        self.stdout.write(evaluation.format_table(rows))
        self.stdout.write(
            f"\n{len(chosen)} cells; {scenarios} scenarios per drive cell, "
            f"{null_scenarios or scenarios} per null cell; {replicas} replicas; rate = type-I "
            "error (null) or power (drive), loc = mean Jaccard of detected vs planted cells, "
            "ext = power with Jaccard >= 0.5"
            + ("; oracle = reference, not a detector (knows the planted branch, window and "
               "background mean)" if any(r.method == "oracle" for r in rows) else "")
            + f".\nShape: {evaluation.describe_shape(shape)}.\n")
        self.stdout.write("\n".join(evaluation.targets_summary(rows)))
        if intervals:
            self.stdout.write("\n" + evaluation.format_intervals(rows))
            self.stdout.write("\n" + evaluation.format_paired(evaluation.paired_comparisons(rows)))
