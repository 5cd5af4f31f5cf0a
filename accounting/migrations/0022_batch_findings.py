"""A batch's attribution findings (gaps and how they were filled, diagnostics) move from
telemetry's batch row to accounting's own ``BatchFindings`` (issue 12: the apps stop writing each
other's tables). Existing values are copied here, only for batches with something to report;
``telemetry/0007`` then drops the columns. Reversible: the reverse copies them back before the
table goes (``telemetry/0007`` reversed first recreates the columns, empty)."""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
INSERT INTO accounting_batchfindings (batch_id, gaps, diagnostics)
SELECT id, gaps, diagnostics FROM telemetry_telemetrybatch
WHERE gaps <> '[]'::jsonb OR diagnostics <> '[]'::jsonb
"""

BACKWARD = """
UPDATE telemetry_telemetrybatch b SET gaps = f.gaps, diagnostics = f.diagnostics
FROM accounting_batchfindings f WHERE f.batch_id = b.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0021_merge_fillfactor"),
        ("telemetry", "0006_gpuseries"),
    ]

    operations = [
        migrations.CreateModel(
            name="BatchFindings",
            fields=[
                (
                    "batch",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="findings",
                        serialize=False,
                        to="telemetry.telemetrybatch",
                    ),
                ),
                ("gaps", models.JSONField(blank=True, default=list)),
                ("diagnostics", models.JSONField(blank=True, default=list)),
            ],
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
