import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """The tree closure, until now the reports app's model, over the same table."""

    dependencies = [
        ("surveys", "0004_survey_study_starts_on"),
        ("reports", "0007_unitancestor_to_surveys"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="UnitAncestor",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("ancestor", models.ForeignKey(
                            on_delete=django.db.models.deletion.CASCADE, related_name="+",
                            to="surveys.orgunit")),
                        ("survey", models.ForeignKey(
                            on_delete=django.db.models.deletion.CASCADE, related_name="+",
                            to="surveys.survey")),
                        ("unit", models.ForeignKey(
                            on_delete=django.db.models.deletion.CASCADE,
                            related_name="ancestor_links", to="surveys.orgunit")),
                    ],
                    options={
                        "db_table": "reports_unitancestor",
                        "indexes": [models.Index(fields=["ancestor", "unit"],
                                                 name="unitancestor_ancestor_idx")],
                        "constraints": [models.UniqueConstraint(fields=("unit", "ancestor"),
                                                                name="unitancestor_unique")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
