"""A host's stream state (``last_seq``, ``last_seen_at``) is telemetry's (``telemetry.HostStream``),
where ``telemetry/0008`` copied it before these columns go."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0022_batch_findings"),
        ("telemetry", "0008_hoststream"),
    ]

    operations = [
        migrations.RemoveField(model_name="host", name="last_seen_at"),
        migrations.RemoveField(model_name="host", name="last_seq"),
    ]
