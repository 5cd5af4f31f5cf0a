"""Market-based Scope 2 and water through the ledger (issue 13): exact values computed by hand
from the fleet fixture's one hour, conservation (the period's market-based total is the sum over
jobs and fleet overhead), and idempotency (reading twice, attributing twice)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from accounting.api.permissions import Scope
from accounting.models import ContractualInstrument, GridZone, JobFootprint, TeamHour
from accounting.selectors.access import Principal
from accounting.selectors.disclosure import disclosure_period, job_market_water
from accounting.services.attribution import batches_attribute
from accounting.services.instruments import instrument_record, residual_mix_set, zone_water_set
from telemetry.models import TelemetryBatch
from tests.accounting.test_ledger_slice import fleet  # noqa: F401 - fixture reuse
from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

pytestmark = pytest.mark.django_db
H = dt.timedelta(hours=1)
J_PER_KWH = 3.6e6
# The fleet fixture's hour: the job used 9225 J (6150 J IT: 5300 active + 700 idle + 150 host;
# 3075 J facility at PUE 1.5); fleet overhead 2625 J (700 J idle GPU, 1050 J host, 875 J
# facility). The site used 11850 J in that hour.
JOB_J, JOB_IT_J, OVERHEAD_J, SITE_J = 9225.0, 6150.0, 2625.0, 11850.0
RESIDUAL_G_PER_KWH = 500.0


def _admin(org_id: int) -> Principal:
    return Principal(scope=Scope.ADMIN, via_token=True, org_id=org_id, admin_org_ids=frozenset({org_id}))


def _attribute(client, fleet):  # noqa: F811
    host, gpu0, gpu1, job, start, secret = fleet
    gpus = [gpu_entry(uuid_=gpu0.uuid, index=0, energy_j=6000.0), gpu_entry(uuid_=gpu1.uuid, index=1, energy_j=700.0)]
    post_batch(client, secret, batch(hostname=host.hostname, windows=[window(seq=1, start=start, gpus=gpus)]))
    batches_attribute(batch_pks=[TelemetryBatch.objects.get().pk], now=dt.datetime.now(dt.UTC))
    return JobFootprint.objects.get(job=job)


def _residual(zone: GridZone, year: int) -> None:
    residual_mix_set(
        zone=zone,
        year=year,
        g_per_kwh=RESIDUAL_G_PER_KWH,
        source_detail="AIB European Residual Mixes (test release)",
        reason="residual mix for the test",
    )


def test_annual_instrument_then_residual_mix_pro_rata_to_energy(client, fleet):  # noqa: F811
    host, *_rest, job, start, _secret = fleet
    site = host.cluster.site
    _residual(site.zone, start.year)
    # A GO bundle of 2 Wh (7200 J) at 0 g/kWh over the day around the job: annual matching.
    day = start.replace(hour=0)
    instrument_record(
        site=site,
        kind="go",
        period_start=day,
        period_end=day + 24 * H,
        mwh=2e-6,
        g_per_kwh=0.0,
        source="cancellation statement T-1",
        certificate_ids=["GO-1", "GO-2"],
        reason="test GO",
    )
    fp = _attribute(client, fleet)
    # The site: 7200 J covered at 0, 4650 J at 500 g/kWh = 0.6458333 g; the job's share 9225/11850.
    site_g = 4650.0 / J_PER_KWH * RESIDUAL_G_PER_KWH
    mw = job_market_water(job=job, footprint=fp)
    assert mw.market_based_g == pytest.approx(site_g * JOB_J / SITE_J, rel=1e-12)
    assert mw.market_based_g == pytest.approx(0.5027689873417722, rel=1e-12)
    assert mw.market_matching == "annual"
    assert mw.residual_sources == [
        f"{site.zone.code} {start.year}: residual mix 500 g/kWh, AIB European Residual Mixes (test release) v1"
    ]

    d = disclosure_period(scope=_admin(site.org_id), start=day.date(), end=(day + 24 * H).date(), team_id=None)
    # Conservation: the period's market-based total (job + fleet overhead) is the site's.
    assert d.market.co2e_g == pytest.approx(site_g, rel=1e-12)
    assert (d.market.covered_kwh, d.market.residual_kwh) == (
        pytest.approx(7200.0 / J_PER_KWH, rel=1e-12),
        pytest.approx(4650.0 / J_PER_KWH, rel=1e-12),
    )
    assert d.market.matching == "annual"
    # The location-based figure beside it: 11850 J at the zone's 400 g/kWh.
    assert d.location_based_g == pytest.approx(SITE_J / J_PER_KWH * 400.0, rel=1e-12)
    assert d.energy_kwh == pytest.approx(SITE_J / J_PER_KWH, rel=1e-12)
    team = d.team_id
    assert team is None
    by_team = disclosure_period(
        scope=_admin(site.org_id), start=day.date(), end=(day + 24 * H).date(), team_id=job.team_id
    )
    assert by_team.market.co2e_g == pytest.approx(mw.market_based_g, rel=1e-12)


def test_hourly_instrument_matches_its_hour_only(client, fleet):  # noqa: F811
    host, *_rest, job, start, _secret = fleet
    site = host.cluster.site
    _residual(site.zone, start.year)
    # A PPA delivering 1 Wh (3600 J) in the job's hour and 5 Wh in the next (the site used
    # nothing then: not banked), at 20 g/kWh.
    instrument_record(
        site=site,
        kind="ppa",
        period_start=start,
        period_end=start + 2 * H,
        mwh=6e-6,
        g_per_kwh=20.0,
        source="PPA-2026-7 settlement",
        deliveries_mwh={start: 1e-6, start + H: 5e-6},
        reason="test PPA",
    )
    fp = _attribute(client, fleet)
    # 3600 J x 20 g/kWh + 8250 J x 500 g/kWh = 0.02 + 1.1458333 = 1.1658333 g for the site.
    site_g = 3600.0 / J_PER_KWH * 20.0 + 8250.0 / J_PER_KWH * RESIDUAL_G_PER_KWH
    assert site_g == pytest.approx(1.1658333333333333, rel=1e-12)
    mw = job_market_water(job=job, footprint=fp)
    assert (mw.market_based_g, mw.market_matching) == (pytest.approx(site_g * JOB_J / SITE_J, rel=1e-12), "hourly")
    d = disclosure_period(
        scope=_admin(site.org_id), start=start.date(), end=start.date() + dt.timedelta(days=1), team_id=None
    )
    assert (d.market.co2e_g, d.market.matching) == (pytest.approx(site_g, rel=1e-12), "hourly")
    assert d.market.covered_kwh == pytest.approx(3600.0 / J_PER_KWH, rel=1e-12)
    # Conservation per account: the job's share plus the overhead's is the site's figure.
    overhead_g = site_g * OVERHEAD_J / SITE_J
    assert mw.market_based_g + overhead_g == pytest.approx(d.market.co2e_g, rel=1e-12)


def test_no_residual_mix_falls_back_to_the_zone_average_and_says_so(client, fleet):  # noqa: F811
    host, *_rest, job, start, _secret = fleet
    fp = _attribute(client, fleet)
    mw = job_market_water(job=job, footprint=fp)
    zone = host.cluster.site.zone
    assert mw.market_based_g == pytest.approx(JOB_J / J_PER_KWH * 400.0, rel=1e-12)
    assert (mw.market_matching, mw.residual_sources) == (
        "none",
        [f"{zone.code} {start.year}: no residual mix; grid average 400 g/kWh ({zone.annual_basis}) used instead"],
    )


def test_water_onsite_by_wue_offsite_by_grid_with_range(client, fleet):  # noqa: F811
    host, *_rest, job, start, _secret = fleet
    site = host.cluster.site
    site.wue_l_per_kwh = 1.8
    site.save()
    zone_water_set(
        zone=site.zone,
        l_per_kwh=2.0,
        low_l_per_kwh=1.0,
        high_l_per_kwh=4.0,
        source_detail="Macknick et al. 2012 medians x test mix",
        reason="water for the test",
    )
    fp = _attribute(client, fleet)
    mw = job_market_water(job=job, footprint=fp)
    # On-site: 6150 J IT x 1.8 L/kWh = 0.003075 L; off-site: 9225 J x 2 L/kWh = 0.005125 L.
    assert (mw.water_onsite_l, mw.water_offsite_l) == (
        pytest.approx(0.003075, rel=1e-12),
        pytest.approx(0.005125, rel=1e-12),
    )
    # Range: on-site as is, off-site 1..4 L/kWh.
    assert (mw.water_low_l, mw.water_high_l) == (
        pytest.approx(0.003075 + 0.0025625, rel=1e-12),
        pytest.approx(0.003075 + 0.01025, rel=1e-12),
    )
    d = disclosure_period(
        scope=_admin(site.org_id), start=start.date(), end=start.date() + dt.timedelta(days=1), team_id=None
    )
    # The site: IT 7900 J (11850 J less 3075 + 875 J facility), all 11850 J.
    assert (d.water.onsite_l, d.water.offsite_l) == (
        pytest.approx(7900.0 / J_PER_KWH * 1.8, rel=1e-12),
        pytest.approx(SITE_J / J_PER_KWH * 2.0, rel=1e-12),
    )
    assert (d.water.sites_without_wue, d.water.zones_without_water) == ([], [])


def test_water_follows_the_site_wue_series_by_hour(client, fleet):  # noqa: F811
    from accounting.services.instruments import site_wue_set

    host, *_rest, job, start, _secret = fleet
    site = host.cluster.site
    # Static 1.8 L/kWh until the job's hour, 3.0 L/kWh from it (a summer cooling season).
    site.wue_l_per_kwh = 1.8
    site.save()
    site_wue_set(site=site, valid_from=start, wue_l_per_kwh=3.0, source="meter W-1", reason="cooling season")
    fp = _attribute(client, fleet)
    mw = job_market_water(job=job, footprint=fp)
    # The job's 6150 J of IT energy in that hour x 3.0 L/kWh = 0.005125 L; no grid water known.
    assert (mw.water_onsite_l, mw.water_offsite_l) == (pytest.approx(6150.0 / J_PER_KWH * 3.0, rel=1e-12), None)
    day = start.date()
    d = disclosure_period(scope=_admin(site.org_id), start=day, end=day + dt.timedelta(days=1), team_id=None)
    assert d.water.onsite_l == pytest.approx(7900.0 / J_PER_KWH * 3.0, rel=1e-12)
    assert (d.water.zones_without_water, d.water.it_kwh_without_wue) == ([site.zone.code], 0.0)
    # Without the static value, hours before the series' first row are named, not counted.
    site.wue_l_per_kwh = None
    site.save()
    site_wue_set(site=site, valid_from=start + H, wue_l_per_kwh=3.0, source="meter W-1", reason="moved")
    from accounting.models import SiteWue

    SiteWue.objects.filter(valid_from=start).delete()
    d = disclosure_period(scope=_admin(site.org_id), start=day, end=day + dt.timedelta(days=1), team_id=None)
    assert (d.water.onsite_l, d.water.sites_without_wue) == (0.0, [site.slug])


def test_reads_are_idempotent_and_reattribution_changes_nothing(client, fleet):  # noqa: F811
    host, *_rest, job, start, _secret = fleet
    site = host.cluster.site
    _residual(site.zone, start.year)
    fp = _attribute(client, fleet)
    scope = _admin(site.org_id)
    first = disclosure_period(scope=scope, start=start.date(), end=start.date() + dt.timedelta(days=1), team_id=None)
    again = disclosure_period(scope=scope, start=start.date(), end=start.date() + dt.timedelta(days=1), team_id=None)
    assert first == again
    before = job_market_water(job=job, footprint=fp)
    batches_attribute(batch_pks=[TelemetryBatch.objects.get().pk], now=dt.datetime.now(dt.UTC))
    assert TeamHour.objects.count() == 2
    assert job_market_water(job=job, footprint=JobFootprint.objects.get(job=job)) == before
    assert first.market.co2e_g == pytest.approx(SITE_J / J_PER_KWH * RESIDUAL_G_PER_KWH, rel=1e-12)
    assert math.isclose(before.market_based_g, first.market.co2e_g * JOB_J / SITE_J, rel_tol=1e-12)
    assert ContractualInstrument.objects.count() == 0


def test_dashboard_job_page_overview_and_methodology_show_both_scope2_figures(client, fleet):  # noqa: F811
    from django.contrib.auth import get_user_model

    host, *_rest, job, start, _secret = fleet
    site = host.cluster.site
    _residual(site.zone, start.year)
    _attribute(client, fleet)
    admin = get_user_model().objects.create_superuser("auditor", "auditor@example.com", "pw")
    client.force_login(admin)
    page = client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200
    s2 = page.context["d"]["scope2"]
    assert s2.market_based_g == pytest.approx(JOB_J / J_PER_KWH * RESIDUAL_G_PER_KWH, rel=1e-12)
    html = page.content.decode()
    assert 'id="row-market"' in html and "market-based" in html and "residual mix 500 g/kWh" in html
    day = start.date()
    overview = client.get(f"/?period=custom&start={day}&end={day}")
    assert overview.status_code == 200
    d = overview.context["disclosure"]
    assert (d.start, d.end) == (day, day + dt.timedelta(days=1))
    assert d.market.co2e_g == pytest.approx(SITE_J / J_PER_KWH * RESIDUAL_G_PER_KWH, rel=1e-12)
    assert 'id="period-market"' in overview.content.decode()
    method = client.get("/methodology/")
    text = method.content.decode()
    # The worked example's figures, as tests/domain/test_market_based.py checks them by hand.
    for figure in ("15000", "18000", "30000", "25000", "3750", "108", "183–408", "37.4173"):
        assert figure in text, figure
