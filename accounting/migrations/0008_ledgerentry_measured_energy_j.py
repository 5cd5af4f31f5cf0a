from django.db import migrations, models

# Entries written before this migration knew only their worst window's quality: an entry labelled
# 'measured' came wholly from measured windows, any other gets none. That is the rule the measured
# fraction used until now, so existing job-hours and footprints stay exactly as they were; entries
# rebuilt from then on (re-attribution, recompute) carry their measured energy per window.
BACKFILL_SQL = "UPDATE accounting_ledgerentry SET measured_energy_j = energy_j WHERE quality = 'measured'"


class Migration(migrations.Migration):

    dependencies = [
        ('accounting', '0007_teamhour'),
    ]

    operations = [
        migrations.AddField(
            model_name='ledgerentry',
            name='measured_energy_j',
            field=models.FloatField(default=0),
        ),
        migrations.RunSQL(BACKFILL_SQL, migrations.RunSQL.noop),
    ]
