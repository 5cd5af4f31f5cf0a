"""The batch row keeps only the queue's state: its attribution findings (``gaps``,
``diagnostics``) are accounting's (``accounting.BatchFindings``), where ``accounting/0022``
copied them before these columns go."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0006_gpuseries"),
        ("accounting", "0022_batch_findings"),
    ]

    operations = [
        migrations.RemoveField(model_name="telemetrybatch", name="diagnostics"),
        migrations.RemoveField(model_name="telemetrybatch", name="gaps"),
    ]
