"""Builds a synthetic survey (org tree, reports, planted drives) through the
same services the API uses, publishes it, and prints its links."""

from dataclasses import replace

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from reports import detection, selectors, synthetic
from reports.simulate import DRIVE_SIGNALS, Drive, OrgShape, simulate

LEVELS = ("team", "department", "org")


class Command(BaseCommand):
    help = "Create a synthetic survey with planted attrition drives; print its links."

    def add_arguments(self, parser):
        parser.add_argument("--owner", default="demo",
                            help="Organizer username (created without a password if missing).")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--period", choices=["month", "week"], default="month")
        parser.add_argument("--periods", type=int, default=12)
        parser.add_argument("--orgs", type=int, default=3)
        parser.add_argument("--base-rate", type=float, default=0.08,
                            help="Background reports per person per period.")
        parser.add_argument("--drive", action="append", default=[],
                            metavar="LEVEL:LENGTH:RR[:SIGNALS]",
                            help="Planted drive, e.g. department:2:5 (repeatable; default one "
                                 "department drive of 2 periods at relative risk 5). SIGNALS "
                                 "is how its reports' signals are drawn: pattern (default: "
                                 "80%% carry the attrition-drive signature), background "
                                 "(like everyone else's: the drive shows only in counts) or "
                                 "halfway (every signal half way between the two).")
        parser.add_argument("--at-end", action="store_true",
                            help="Every drive ends with the last period.")
        parser.add_argument("--every-outcome", action="store_true",
                            help="Every respondent gives an outcome.")
        parser.add_argument("--min-group-size", type=int, default=5)
        parser.add_argument("--detect", action="store_true",
                            help="Also run a detection (999 replicas) and print its clusters.")
        parser.add_argument("--base-url", default=settings.CHORUS_PUBLIC_URL
                            or "http://127.0.0.1:8000")

    def handle(self, *args, **options):
        drives = [self._drive(text) for text in options["drive"] or ["department:2:5"]]
        if options["at_end"]:
            drives = [replace(drive, start=-drive.length) for drive in drives]
        if not 2 <= options["periods"] <= 104:
            raise CommandError("--periods must be between 2 and 104.")
        dataset = simulate(options["seed"], n_periods=options["periods"],
                           shape=OrgShape(n_orgs=options["orgs"]),
                           base_rate=options["base_rate"], drives=drives,
                           every_outcome=options["every_outcome"])
        owner, _ = get_user_model().objects.get_or_create(username=options["owner"])
        survey = synthetic.simulated_survey_create(
            owner=owner, title=f"Simulated survey (seed {options['seed']})", dataset=dataset,
            period=options["period"], min_group_size=options["min_group_size"])
        base = options["base_url"].rstrip("/")
        self.stdout.write(f"Survey {survey.id}: {dataset.n_units} units, "
                          f"{dataset.n_reports} reports over {dataset.n_periods} periods.")
        for drive in dataset.drives:
            self.stdout.write(f"  planted: {dataset.unit_paths[drive.unit]}, periods "
                              f"{drive.start}..{drive.start + drive.length - 1}, "
                              f"relative risk {drive.relative_risk:g}, {drive.signals} signals")
        self.stdout.write(f"  Share link (respondents): {base}/s/{survey.share_token}/\n"
                          f"  Shared dashboard:         {base}/d/{survey.dashboard_token}/")
        if options["detect"]:
            run = detection.detection_start(survey=survey)
            self.stdout.write(f"  Detection job {run.job_id} started.")
            latest = selectors.clusters_latest(survey=survey)
            for cluster in latest["clusters"][:5]:
                self.stdout.write(f"    {cluster['model']:<10} {cluster['unit']} "
                                  f"{cluster['start']}..{cluster['end']} "
                                  f"p={cluster['p_value']:.3f}  {cluster['summary']}")

    def _drive(self, text: str) -> Drive:
        try:
            level, length, risk, *signals = text.split(":")
            if len(signals) > 1:
                raise ValueError("too many fields")
            drive = Drive(level, int(length), float(risk), signature_share=0.8,
                          signals=signals[0] if signals else "pattern")
        except ValueError as error:
            raise CommandError(f"--drive {text!r}: expected LEVEL:LENGTH:RR[:SIGNALS] with "
                               f"SIGNALS one of {', '.join(DRIVE_SIGNALS)}") from error
        if level not in LEVELS or drive.length < 1 or drive.relative_risk <= 1:
            raise CommandError(f"--drive {text!r}: level is one of {', '.join(LEVELS)}, "
                               "length at least 1, relative risk above 1.")
        return drive
