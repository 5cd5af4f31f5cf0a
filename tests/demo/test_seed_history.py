"""seed_history: deterministic, internally consistent aggregates, every family/kind/status."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from accounting import models as m

ARGS = ["--gpus", "24", "--jobs", "150", "--days", "4", "--seed", "11", "--end", "2026-03-20T12:00", "-v", "0"]


def _sums(org: str) -> dict:
    return {
        "jobs": m.Job.objects.filter(org__slug=org).count(),
        "fp": m.JobFootprint.objects.filter(job__org__slug=org).aggregate(
            e=Sum("energy_j"), op=Sum("co2e_operational_g"), emb=Sum("co2e_embodied_g")
        ),
        "dh": m.DeviceHour.objects.filter(device__host__cluster__site__org__slug=org).aggregate(
            n=Count("id"), e=Sum("energy_j"), a=Sum("allocated_s")
        ),
        "statuses": dict(m.Job.objects.filter(org__slug=org).values_list("status").annotate(n=Count("id"))),
    }


@pytest.mark.django_db
def test_seed_is_deterministic_and_consistent():
    call_command("seed_history", "--org", "seed-a", *ARGS)
    call_command("seed_history", "--org", "seed-b", *ARGS)
    a, b = _sums("seed-a"), _sums("seed-b")
    # Same rows; SQL SUM adds floats in no fixed order, hence approx on the sums.
    assert (a["jobs"], a["statuses"], a["dh"]["n"]) == (b["jobs"], b["statuses"], b["dh"]["n"])
    assert a["fp"] == pytest.approx(b["fp"], rel=1e-12)
    assert (a["dh"]["e"], a["dh"]["a"]) == (
        pytest.approx(b["dh"]["e"], rel=1e-12),
        pytest.approx(b["dh"]["a"], rel=1e-12),
    )
    assert a["jobs"] == 150 and a["dh"]["n"] == 24 * 4 * 24
    # TeamDay team rows are the sum of the team's JobHour rows; JobHour sums to JobFootprint.
    jh = m.JobHour.objects.filter(job__org__slug="seed-a").aggregate(e=Sum("energy_j"))["e"]
    td = m.TeamDay.objects.filter(org__slug="seed-a", team__isnull=False).aggregate(e=Sum("energy_j"))["e"]
    assert jh == pytest.approx(a["fp"]["e"], rel=1e-9) and td == pytest.approx(jh, rel=1e-9)
    assert m.TeamDay.objects.filter(org__slug="seed-a", team__isnull=True).exists()
    # Every footprint is the sum of its job-hours, as the ledger's rollup recomputes it.
    for fp in m.JobFootprint.objects.filter(job__org__slug="seed-a").select_related("job")[:40]:
        hours = m.JobHour.objects.filter(job=fp.job).aggregate(
            idle=Sum("gpu_idle_energy_j"),
            host=Sum("host_energy_j"),
            fac=Sum("facility_energy_j"),
            low=Sum("co2e_low_g"),
            high=Sum("co2e_high_g"),
            held=Sum("held_s"),
            measured=Sum("measured_gpu_energy_j"),
            gpu=Sum("gpu_energy_j"),
        )
        assert hours["idle"] == pytest.approx(fp.gpu_idle_energy_j, rel=1e-9)
        assert hours["host"] == pytest.approx(fp.host_energy_j, rel=1e-9)
        assert hours["fac"] == pytest.approx(fp.facility_energy_j, rel=1e-9)
        assert (hours["low"], hours["high"]) == (
            pytest.approx(fp.co2e_low_g, rel=1e-9),
            pytest.approx(fp.co2e_high_g, rel=1e-9),
        )
        assert hours["held"] / 3600 == pytest.approx(fp.device_hours, rel=1e-9)
        assert hours["measured"] == pytest.approx(fp.measured_fraction * hours["gpu"], rel=1e-9, abs=1e-9)
        assert m.JobHour.objects.filter(job=fp.job).order_by("-hour").first().last_window_end == fp.last_window_end
    # No device is held more than the hour it was observed.
    assert not m.DeviceHour.objects.filter(
        device__host__cluster__site__org__slug="seed-a", allocated_s__gt=3600.001
    ).exists()
    org = m.Organization.objects.get(slug="seed-a")
    assert set(org.sites.values_list("zone__code", flat=True)) == {"FR", "DE", "PL", "US-WA", "IN"}
    assert set(m.Job.objects.filter(org=org).values_list("family", flat=True)) == {"llm", "moe", "recommender", "other"}
    assert set(m.Job.objects.filter(org=org).values_list("kind", flat=True)) == {"training", "inference"}
    assert {"completed", "failed", "running"} <= set(a["statuses"])
    assert m.CarbonBudget.objects.filter(team__org=org).count() == 6
    with pytest.raises(CommandError, match="already has seeded sites"):
        call_command("seed_history", "--org", "seed-a", *ARGS)
    # The run command re-runs it on every start: then it changes nothing and succeeds.
    call_command("seed_history", "--org", "seed-a", "--skip-if-seeded", *ARGS)
    again = _sums("seed-a")
    assert (again["jobs"], again["statuses"], again["dh"]["n"]) == (a["jobs"], a["statuses"], a["dh"]["n"])


@pytest.mark.django_db
def test_hourly_curves_are_seeded_around_the_loaded_annual_factor():
    # Zones loaded beforehand (e.g. from codecarbon) keep their factor; the seeded hourly curve
    # averages to it, not to the demo's own figure (PL 750, IN 700).
    m.GridZone.objects.create(code="PL", name="Poland", annual_intensity_g_per_kwh=661.9, vintage="2023")
    m.GridZone.objects.create(code="IN", name="India", annual_intensity_g_per_kwh=713.4, vintage="2023")
    call_command("seed_history", "--org", "seed-z", *ARGS)
    for code, annual in (("PL", 661.9), ("IN", 713.4), ("FR", 56.0)):
        values = list(
            m.HourlyIntensity.objects.filter(zone__code=code, signal=m.IntensitySignal.AVERAGE).values_list(
                "intensity_g_per_kwh", flat=True
            )
        )
        assert len(values) == 4 * 24
        assert abs(sum(values) / len(values) - annual) <= 0.05  # the mean, to the 0.1 g rounding
        assert max(values) > annual * 1.02 and min(values) < annual * 0.98  # still a daily shape
