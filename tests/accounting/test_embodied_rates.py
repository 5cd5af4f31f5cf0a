"""The attribution's embodied rates (``mappers.embodied_rates_for``): read as plain values and
shared between like devices, each rate is exactly the one computed device by device from the
model instances (the device's own terms plus its slot share of its host's components)."""

from __future__ import annotations

import pytest

from accounting.domain.carbon import EmbodiedRate, embodied_rate_g_per_s
from accounting.mappers import ZERO_RATE, embodied_rates_for
from accounting.models import Device
from accounting.selectors.factors import embodied_for_hardware, embodied_for_host
from tests.factories import ClusterFactory, DeviceFactory, HardwareModelFactory, HostFactory

pytestmark = pytest.mark.django_db


def _one_by_one(device: Device) -> EmbodiedRate:
    """The rate of one device from its model instances, term by term in catalog order."""
    host = device.host
    terms = embodied_for_hardware(
        hardware=device.hardware_model, site=host.cluster.site, device_lifetime_years=device.lifetime_years
    )
    parts = embodied_for_host(host=host)
    slots = max(host.gpu_slots, 1)

    def rate(kg: float, lifetime_years: float, expected_utilisation: float) -> float:
        return embodied_rate_g_per_s(
            embodied_kg=kg, lifetime_years=lifetime_years, expected_utilisation=expected_utilisation
        )

    def host_share(name: str) -> float:
        return sum(rate(getattr(t, name), t.lifetime_years, t.expected_utilisation) for t in parts) / slots

    own = (terms.lifetime_years, terms.expected_utilisation)
    return EmbodiedRate(
        central_g_per_s=rate(terms.embodied_kg, *own) + host_share("embodied_kg"),
        low_g_per_s=rate(terms.low_kg, *own) + host_share("low_kg"),
        high_g_per_s=rate(terms.high_kg, *own) + host_share("high_kg"),
        version=max(terms.version, max((t.version for t in parts), default=0)),
    )


def test_rates_equal_the_device_by_device_computation():
    h100 = HardwareModelFactory()
    a100 = HardwareModelFactory(key="a100-sxm4-80gb", embodied_kg=120.0, version=3, lifetime_years=4.0)
    cluster = ClusterFactory()
    site = cluster.site
    site.hardware_overrides = {"a100-sxm4-80gb": {"expected_utilisation": 0.6}, "dram-per-gb": {"lifetime_years": 7}}
    site.save()
    genoa = dict(cpu_model="AMD EPYC 9654 96-Core Processor", dram_gb=2048, ssd_gb=7680)
    like_a = HostFactory(cluster=cluster, **genoa)
    like_b = HostFactory(cluster=cluster, **genoa)  # the same figures: one shared rate
    xeon_4 = HostFactory(cluster=cluster, cpu_model="Intel Xeon Platinum 8480+", dram_gb=1024, ssd_gb=0, gpu_slots=4)
    no_slots = HostFactory(cluster=cluster, gpu_slots=0, dram_gb=512)
    moved = HostFactory(dram_gb=2048)  # a host of another site (its own overrides apply)
    moved.cluster.site.hardware_overrides = {"h100-sxm5-80gb": {"lifetime_years": 3}}
    moved.cluster.site.save()
    devices = [
        DeviceFactory(host=like_a, hardware_model=h100),
        DeviceFactory(host=like_a, hardware_model=h100, lifetime_years=6.0),
        DeviceFactory(host=like_b, hardware_model=h100),
        DeviceFactory(host=like_b, hardware_model=a100),
        DeviceFactory(host=xeon_4, hardware_model=a100),
        DeviceFactory(host=no_slots, hardware_model=h100),
        DeviceFactory(host=moved, hardware_model=h100),
    ]
    unknown = DeviceFactory(host=like_a, hardware_model=None)

    rates = embodied_rates_for(device_ids=[d.pk for d in [*devices, unknown]], site=site)

    assert rates == {
        **{d.pk: _one_by_one(Device.objects.get(pk=d.pk)) for d in devices},
        unknown.pk: ZERO_RATE,
    }
    assert rates[devices[0].pk] is rates[devices[2].pk]  # like devices share one rate
    assert rates[devices[0].pk] != rates[devices[1].pk]  # the device's own lifetime override
    assert rates[devices[0].pk] != rates[devices[6].pk]  # the other site's override
    assert rates[devices[0].pk].central_g_per_s > 0.0


def test_devices_without_a_model_have_no_embodied_rate():
    device = DeviceFactory(hardware_model=None)
    assert embodied_rates_for(device_ids=[device.pk], site=device.host.cluster.site) == {device.pk: ZERO_RATE}
    assert embodied_rates_for(device_ids=[], site=device.host.cluster.site) == {}
