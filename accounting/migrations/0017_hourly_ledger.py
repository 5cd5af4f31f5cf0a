# The hourly ledger (issue 18), step 1: the per-batch record, the entry's line counters and latest
# window end, exact (numeric) sums.

import accounting.models
import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0016_reports_optout"),
        ("telemetry", "0005_gpuwindow_mig_instances_energy_covers"),
    ]

    operations = [
        # Kept until 0019 drops it: the merged rows 0018 writes belong to no single batch.
        migrations.AlterField(
            model_name="ledgerentry",
            name="batch",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="ledger_entries",
                to="telemetry.telemetrybatch",
            ),
        ),
        migrations.CreateModel(
            name="BatchAttribution",
            fields=[
                (
                    "batch",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="attribution",
                        serialize=False,
                        to="telemetry.telemetrybatch",
                    ),
                ),
                ("org_id", models.BigIntegerField()),
                ("site_id", models.BigIntegerField()),
                ("host_id", models.BigIntegerField()),
                ("last_end", models.DateTimeField()),
                ("attributed_at", models.DateTimeField()),
                ("method_version", models.CharField(max_length=20)),
                (
                    "accounts",
                    django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=20), size=None),
                ),
                (
                    "job_ids",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(null=True), size=None),
                ),
                (
                    "team_ids",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(null=True), size=None),
                ),
                (
                    "device_ids",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(null=True), size=None),
                ),
                (
                    "components",
                    django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=20), size=None),
                ),
                ("hours", django.contrib.postgres.fields.ArrayField(base_field=models.DateTimeField(), size=None)),
                ("energy_j", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                ("held_s", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                (
                    "co2e_operational_g",
                    django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None),
                ),
                (
                    "co2e_operational_marginal_g",
                    django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(null=True), size=None),
                ),
                (
                    "co2e_embodied_g",
                    django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None),
                ),
                ("co2e_low_g", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                ("co2e_high_g", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                (
                    "co2e_upstream_g",
                    django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(null=True), size=None),
                ),
                (
                    "measured_energy_j",
                    django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None),
                ),
                (
                    "qualities",
                    django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=12), size=None),
                ),
            ],
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="last_window_end",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="lines_integrated",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="lines_interpolated",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="lines_measured",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="lines_modelled",
            field=models.IntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="co2e_embodied_g",
            field=accounting.models.ExactSumField(default=0),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="co2e_high_g",
            field=accounting.models.ExactSumField(),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="co2e_low_g",
            field=accounting.models.ExactSumField(),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="co2e_operational_g",
            field=accounting.models.ExactSumField(),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="co2e_operational_marginal_g",
            field=accounting.models.ExactSumField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="co2e_upstream_g",
            field=accounting.models.ExactSumField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="energy_j",
            field=accounting.models.ExactSumField(),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="held_s",
            field=accounting.models.ExactSumField(default=0),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="measured_energy_j",
            field=accounting.models.ExactSumField(default=0),
        ),
    ]
