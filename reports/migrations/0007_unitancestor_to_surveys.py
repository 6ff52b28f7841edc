from django.db import migrations


class Migration(migrations.Migration):
    """The tree closure moves to the surveys app, which writes the tree; the table stays."""

    dependencies = [
        ("reports", "0006_released_table_comments"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="UnitAncestor")],
            database_operations=[],
        ),
    ]
