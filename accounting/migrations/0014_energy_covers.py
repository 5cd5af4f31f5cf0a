# Ledger entries say what a GPU's energy reading covered (issue 15): "gpu", "gpu+memory" or
# "gpu+cpu+memory" (a superchip module counter) on GPU components, "" on host and facility ones.
# Job-hours and job footprints sum GPU energy by it (covers_*_energy_j). Rows written before this
# are left "" / 0 (not recorded): attribution rewrites a batch's entries whole and the rollup
# their sums, so a recompute fills them; nothing is guessed here. Every new column keeps a
# database default (db_default), so raw inserts written before it and the previous release's
# code during a rolling deploy still insert rows.
# Jobs keep the Slurm 26.05 SLUIDs the prolog sends (Job.sluids): the agent reports
# "slurm:<SLUID>" for processes in SLUID-named cgroups, and the job answers to it.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0013_basis"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="sluids",
            field=models.JSONField(blank=True, db_default=[], default=list),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="energy_covers",
            field=models.CharField(blank=True, db_default="", default="", max_length=20),
        ),
        migrations.AddField(
            model_name="jobhour",
            name="covers_gpu_energy_j",
            field=models.FloatField(db_default=0.0, default=0),
        ),
        migrations.AddField(
            model_name="jobhour",
            name="covers_gpu_memory_energy_j",
            field=models.FloatField(db_default=0.0, default=0),
        ),
        migrations.AddField(
            model_name="jobhour",
            name="covers_gpu_cpu_memory_energy_j",
            field=models.FloatField(db_default=0.0, default=0),
        ),
        migrations.AddField(
            model_name="jobfootprint",
            name="covers_gpu_energy_j",
            field=models.FloatField(db_default=0.0, default=0),
        ),
        migrations.AddField(
            model_name="jobfootprint",
            name="covers_gpu_memory_energy_j",
            field=models.FloatField(db_default=0.0, default=0),
        ),
        migrations.AddField(
            model_name="jobfootprint",
            name="covers_gpu_cpu_memory_energy_j",
            field=models.FloatField(db_default=0.0, default=0),
        ),
    ]
