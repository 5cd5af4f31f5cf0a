# The ledger keyed per (account, job, host, device, component, hour): the batch column goes, the
# merge key becomes unique, and the single-column indexes a composite one already leads with go.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0018_hourly_ledger_data"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="ledgerentry",
            name="accounting__batch_i_9755b1_idx",
        ),
        migrations.RemoveField(
            model_name="ledgerentry",
            name="batch",
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="device",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                to="accounting.device",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="job",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="ledger_entries",
                to="accounting.job",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="org",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, to="accounting.organization"
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(
                fields=("account", "job", "host", "device", "component", "hour"),
                name="ledger_entry_key_uniq",
                nulls_distinct=False,
            ),
        ),
    ]
