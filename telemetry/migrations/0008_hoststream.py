"""Each host's stream state (last stored seq and window end) moves from accounting's ``Host`` to
telemetry's own ``HostStream``: ingest then locks and writes only telemetry's tables. The values
are copied here, before ``accounting/0023`` drops the host's columns; going back copies them
home again."""

import django.db.models.deletion
from django.db import migrations, models

COPY_FORWARD = """
    INSERT INTO telemetry_hoststream (host_id, last_seq, last_seen_at)
    SELECT id, last_seq, last_seen_at FROM accounting_host
    WHERE last_seq IS NOT NULL OR last_seen_at IS NOT NULL
"""
COPY_BACK = """
    UPDATE accounting_host h SET last_seq = s.last_seq, last_seen_at = s.last_seen_at
    FROM telemetry_hoststream s WHERE s.host_id = h.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0007_batch_findings_to_accounting"),
        ("accounting", "0022_batch_findings"),
    ]

    operations = [
        migrations.CreateModel(
            name="HostStream",
            fields=[
                (
                    "host",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="stream",
                        serialize=False,
                        to="accounting.host",
                    ),
                ),
                ("last_seq", models.BigIntegerField(blank=True, null=True)),
                ("last_seen_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.RunSQL(COPY_FORWARD, COPY_BACK),
    ]
