"""GPU windows keep the MIG instance list the agent or dcgm-exporter sends (measured per-instance
activity, slices, job keys: attribution splits a MIG GPU by them) and what the energy counter
covers (``gpu``, or ``gpu+cpu+memory`` for a Grace Hopper / Grace Blackwell module).

The table is partitioned and unmanaged: the columns are added with SQL (a column added to the
partitioned parent reaches every partition), the model state beside it."""

from django.db import migrations, models

ADD = """
ALTER TABLE telemetry_gpuwindow ADD COLUMN mig_instances jsonb NOT NULL DEFAULT '[]';
ALTER TABLE telemetry_gpuwindow ADD COLUMN energy_covers varchar(20) NOT NULL DEFAULT 'gpu';
"""
DROP = """
ALTER TABLE telemetry_gpuwindow DROP COLUMN energy_covers;
ALTER TABLE telemetry_gpuwindow DROP COLUMN mig_instances;
"""


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0004_batch_clock_offset")]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(ADD, DROP)],
            state_operations=[
                migrations.AddField(model_name="gpuwindow", name="mig_instances", field=models.JSONField(default=list)),
                migrations.AddField(
                    model_name="gpuwindow", name="energy_covers", field=models.CharField(default="gpu", max_length=20)
                ),
            ],
        )
    ]
