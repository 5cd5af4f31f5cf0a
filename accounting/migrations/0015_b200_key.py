# The B200 catalog key names the memory HGX B200 ships (180 GB usable per GPU, 192 GB physical):
# "b200-sxm-192gb" becomes "b200-sxm-180gb" (issue 13 follow-up). Stored HardwareModel rows and
# sites' hardware_overrides are renamed; the old key stays accepted as an alias
# (accounting.domain.catalog.KEY_ALIASES). A renamed row keeps its pk, figures and version (the
# devices pointing at it and the ledger are unchanged) and gets a FactorChange saying so.
# Depends on 0013; the lead re-chains it after another helper's 0014.

from django.db import migrations

OLD_KEY = "b200-sxm-192gb"
NEW_KEY = "b200-sxm-180gb"
REASON = "catalog key renamed: HGX B200 ships 180 GB HBM3E per GPU (192 GB physical); figures unchanged"


def _rename(apps, old: str, new: str, reason: str) -> None:
    HardwareModel = apps.get_model("accounting", "HardwareModel")
    FactorChange = apps.get_model("accounting", "FactorChange")
    Site = apps.get_model("accounting", "Site")
    # Where both keys exist (a row created by hand under the new key), the old row is left as
    # it is: its devices keep their figures, and the alias still reads the new row.
    if not HardwareModel.objects.filter(key=new).exists():
        renamed = HardwareModel.objects.filter(key=old).update(key=new)
        if renamed:
            FactorChange.objects.create(
                changed_by=None,
                reason=reason,
                factor_type="hardware",
                factor_key=new,
                before={"key": old},
                after={"key": new},
                recompute_status="none",
            )
    for site in Site.objects.filter(hardware_overrides__has_key=old):
        overrides = dict(site.hardware_overrides)
        value = overrides.pop(old)
        overrides.setdefault(new, value)
        Site.objects.filter(pk=site.pk).update(hardware_overrides=overrides)


def forward(apps, schema_editor):
    _rename(apps, OLD_KEY, NEW_KEY, REASON)


def backward(apps, schema_editor):
    _rename(apps, NEW_KEY, OLD_KEY, "catalog key rename reverted (migration 0015_b200_key reversed)")


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0014_energy_covers"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
