"""Creates (or refreshes) a demo organizer and a demo survey with an org tree
and a few dozen reports, and prints how to reach them."""

import datetime as dt
import random
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from reports import detection
from surveys import intake, services
from surveys.models import Survey

DEMO_USERNAME = "demo"
DEMO_TITLE = "Demo: Acme feedback changes"
TEAMS = {
    "Acme/Retail/Marketing": ["Brand", "Growth", "Lifecycle"],
    "Acme/Retail/Stores": ["North", "South"],
    "Acme/Cloud/Platform": ["Compute", "Storage", "Network"],
    "Acme/Cloud/Developer Tools": ["SDK", "Console"],
}


class Command(BaseCommand):
    help = "Create the demo organizer, survey and reports; print the links and login."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, base_url: str, **options):
        user_model = get_user_model()
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user, _ = user_model.objects.get_or_create(username=DEMO_USERNAME)
            user.set_password(password)
            user.save()
            survey = Survey.objects.filter(owner=user, title=DEMO_TITLE).first()
            created = survey is None
            if created:
                survey = services.survey_create(owner=user, title=DEMO_TITLE, period="month",
                                                min_group_size=5)
                units = [{"path": f"{department}/{team}", "headcount": 12}
                         for department, teams in TEAMS.items() for team in teams]
                services.units_upsert(survey=survey, units=units)
        if created:
            self._add_reports(survey)
            if detection.detection_sees_only_published(survey_id=survey.id):
                detection.detection_start(survey=survey, replicas=999, seed=2026)
        base = base_url.rstrip("/")
        self.stdout.write(
            "\nChorus is running (embedded: SQLite, tasks in-process).\n"
            f"  Share link (respondents): {base}/s/{survey.share_token}/\n"
            f"  Shared dashboard:         {base}/d/{survey.dashboard_token}/\n"
            f"  Organizer login:          {base}/accounts/login/\n"
            f"      username {DEMO_USERNAME}, password {password}\n"
        )

    def _add_reports(self, survey: Survey) -> None:
        """A background of scattered reports plus a burst in Retail/Marketing; 65 in
        all, a multiple of k = 5, so every report is published."""
        rng = random.Random(7)  # noqa: S311 - demo data, not a secret
        today = timezone.localdate()
        months = [(today.replace(day=1) - dt.timedelta(days=31 * back)).replace(day=1)
                  for back in range(1, 7)]
        teams = [f"{department}/{team}" for department, teams in TEAMS.items() for team in teams]
        drafts = []
        for _ in range(40):
            drafts.append(services.ReportDraft(
                unit=rng.choice(teams), period=rng.choice(months),
                signals=tuple(rng.sample(["shifting_goalposts", "completed_work_disputed",
                                          "prior_positive_standing"], k=rng.randint(0, 2)))))
        for _ in range(25):
            drafts.append(services.ReportDraft(
                unit=f"Acme/Retail/Marketing/{rng.choice(TEAMS['Acme/Retail/Marketing'])}",
                period=months[1],
                signals=("prior_positive_standing", "abrupt_reversal",
                         "recap_contradicts_meeting", "coaching_plan"),
                outcome=rng.choice(["still_in_role", "on_plan", "resigned"])))
        for draft in drafts:
            intake.report_create(survey=survey, draft=draft)
