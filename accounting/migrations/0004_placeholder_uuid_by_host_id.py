"""Placeholder devices are keyed by host id (``pending:<host id>:<index>``), not hostname: the
same hostname in two clusters collided on the unique uuid, and a long hostname did not fit."""

from django.db import migrations


def _by_host_id(apps, schema_editor):
    Device = apps.get_model("accounting", "Device")
    for device in Device.objects.filter(uuid__startswith="pending:").only("pk", "host_id", "index"):
        Device.objects.filter(pk=device.pk).update(uuid=f"pending:{device.host_id}:{device.index}")


def _by_hostname(apps, schema_editor):
    Device = apps.get_model("accounting", "Device")
    for device in Device.objects.filter(uuid__startswith="pending:").select_related("host"):
        Device.objects.filter(pk=device.pk).update(uuid=f"pending:{device.host.hostname}:{device.index}")


class Migration(migrations.Migration):
    dependencies = [("accounting", "0003_dashboard_indexes")]

    operations = [migrations.RunPython(_by_host_id, _by_hostname)]
