# Fleet-file audit actions and the inference-serving counters (issue 16). Hand-written: only
# this change (other models were being edited in the same tree at the time).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0010_intensity_basis_market_water"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("factor.create", "Factor created"),
                    ("factor.update", "Factor changed"),
                    ("budget.create", "Budget created"),
                    ("budget.update", "Budget changed"),
                    ("budget.delete", "Budget deleted"),
                    ("token.create", "Token issued"),
                    ("token.revoke", "Token revoked"),
                    ("token.rotate", "Token rotated"),
                    ("policy.update", "Organisation policy changed"),
                    ("recipient.change", "Report recipients changed"),
                    ("fleet.create", "Created by the fleet file"),
                    ("fleet.update", "Changed by the fleet file"),
                ],
                max_length=30,
            ),
        ),
        migrations.CreateModel(
            name="ServingCounters",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField()),
                ("server", models.CharField(max_length=10)),
                ("requests_total", models.FloatField()),
                ("input_tokens_total", models.FloatField(blank=True, null=True)),
                ("output_tokens_total", models.FloatField(blank=True, null=True)),
                ("received_at", models.DateTimeField(auto_now_add=True)),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="serving_counters",
                        to="accounting.job",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("job", "at"), name="servingcounters_job_at_uniq"),
                    models.CheckConstraint(
                        condition=models.Q(("requests_total__gte", 0)), name="servingcounters_requests_nonneg"
                    ),
                ],
            },
        ),
    ]
