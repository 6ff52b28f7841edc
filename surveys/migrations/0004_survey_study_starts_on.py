from django.db import migrations, models
from django.db.models import Min

import surveys.models


def set_study_starts(apps, schema_editor):
    """Existing surveys: three years before their creation, or earlier to keep
    their earliest report inside the window, but never more than the maximum
    window back."""
    Survey = apps.get_model("surveys", "Survey")
    Report = apps.get_model("surveys", "Report")
    for survey in Survey.objects.only("id", "created"):
        created = survey.created.date()
        start = surveys.models.years_before(created, surveys.models.STUDY_WINDOW_DEFAULT_YEARS)
        earliest = Report.objects.filter(survey_id=survey.id).aggregate(
            first=Min("period_start"))["first"]
        if earliest is not None and earliest < start:
            start = max(earliest, surveys.models.years_before(
                created, surveys.models.STUDY_WINDOW_MAX_YEARS))
        Survey.objects.filter(id=survey.id).update(study_starts_on=start)


class Migration(migrations.Migration):

    dependencies = [
        ("surveys", "0003_heldreport"),
    ]

    operations = [
        migrations.AddField(
            model_name="survey",
            name="study_starts_on",
            field=models.DateField(default=surveys.models.default_study_start),
        ),
        migrations.RunPython(set_study_starts, migrations.RunPython.noop),
    ]
