"""factory_boy factories for the core fleet and job objects (shared by all test packages)."""

from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model

from accounting import models as m

UTC = dt.UTC


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Organization
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Team

    org = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.org")
    password = factory.django.Password("correct-horse-battery")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Membership

    user = factory.SubFactory(UserFactory)
    org = factory.SubFactory(OrganizationFactory)
    team = None
    role = m.Membership.Role.MEMBER


class GridZoneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.GridZone
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"ZZ-{n}")
    name = factory.LazyAttribute(lambda o: f"Zone {o.code}")
    annual_intensity_g_per_kwh = 400.0
    source = m.FactorSource.OPERATOR
    vintage = "2024"


class HardwareModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.HardwareModel
        django_get_or_create = ("key",)

    key = "h100-sxm5-80gb"
    name = "NVIDIA H100 SXM5 80GB"
    vendor = "NVIDIA"
    kind = m.HardwareModel.Kind.GPU
    match_names = ["H100 80GB HBM3"]
    idle_power_w = 70.0
    max_power_w = 700.0
    memory_gb = 80.0
    embodied_kg = 150.0
    embodied_low_kg = 100.0
    embodied_high_kg = 200.0
    embodied_kind = m.HardwareModel.EmbodiedKind.ESTIMATE
    embodied_source = "test fixture"
    lifetime_years = 5.0
    expected_utilisation = 0.8


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Site

    org = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    slug = factory.Sequence(lambda n: f"site-{n}")
    zone = factory.SubFactory(GridZoneFactory)
    pue = 1.5


class ClusterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Cluster

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"Cluster {n}")
    slug = factory.Sequence(lambda n: f"cluster-{n}")


class HostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Host

    cluster = factory.SubFactory(ClusterFactory)
    hostname = factory.Sequence(lambda n: f"gpu-node-{n:03d}")
    gpu_slots = 8


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Device

    host = factory.SubFactory(HostFactory)
    uuid = factory.Sequence(lambda n: f"GPU-00000000-0000-4000-8000-{n:012d}")
    index = factory.Sequence(lambda n: n % 8)
    reported_name = "NVIDIA H100 80GB HBM3"
    hardware_model = factory.SubFactory(HardwareModelFactory)


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Job

    org = factory.LazyAttribute(lambda o: o.cluster.site.org)
    cluster = factory.SubFactory(ClusterFactory)
    team = factory.SubFactory(TeamFactory, org=factory.SelfAttribute("..org"))
    scheduler_job_id = factory.Sequence(lambda n: str(10000 + n))
    name = factory.Sequence(lambda n: f"job-{n}")
    kind = m.Job.Kind.TRAINING
    family = m.Job.Family.LLM
    status = m.Job.Status.RUNNING
    started_at = dt.datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class JobAllocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.JobAllocation

    job = factory.SubFactory(JobFactory)
    device = factory.SubFactory(DeviceFactory)
    start = factory.LazyAttribute(lambda o: o.job.started_at)
    end = None


def pending_uuid(hostname: str, index: int, *, cluster: m.Cluster | None = None) -> str:
    """The placeholder uuid the API gives GPU ``index`` of a not-yet-reported host."""
    from accounting.services.allocations import pending_device_uuid

    hosts = m.Host.objects.filter(hostname=hostname)
    if cluster is not None:
        hosts = hosts.filter(cluster=cluster)
    return pending_device_uuid(host_id=hosts.get().pk, index=index)
