"""Hourly intensity and PUE CSV imports, and the batch lookups the ledger uses."""

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounting.factors.csv_import import CsvFormatError, parse_electricitymaps, parse_watttime
from accounting.models import AuditEvent, FactorChange, HourlyIntensity, SitePue, SiteWue
from accounting.selectors.factors import intensity_at, intensity_lookup, pue_at, pue_lookup
from tests.factories import GridZoneFactory, OrganizationFactory, SiteFactory, UserFactory

DATA = Path(__file__).parent / "data"
H = timedelta(hours=1)
T = datetime(2024, 1, 1, tzinfo=UTC)

# File line numbers: the header is line 1, so the first data row is line 2.
EM_EXPECTED_REJECTS = [
    (5, "Carbon Intensity gCO₂eq/kWh (LCA) is not a number: 'n/a'"),
    (6, "negative intensity -3.0"),
    (7, "timestamp '2024-01-01 05:30:00' is not on the hour"),
    (8, "Invalid isoformat string: 'not-a-date'"),
    (9, "duplicate of row 3 (DE 2024-01-01T01:00:00+00:00)"),
    (11, "intensity 2450 g/kWh above plausible maximum 2000 g/kWh (unit?)"),
]


def test_electricitymaps_parser_reports_each_bad_row():
    parsed = parse_electricitymaps((DATA / "electricitymaps_DE_hourly.csv").read_text(encoding="utf-8"))
    assert parsed.total == 10
    assert [(r.row, r.reason) for r in parsed.rejects] == EM_EXPECTED_REJECTS
    # Direct by default (location-based Scope 2, issue 13), the LCA value beside it; an hour with
    # an empty direct cell keeps its LCA value, labelled life-cycle.
    assert [(r.zone_code, r.hour, r.intensity_g_per_kwh, r.basis, r.lifecycle_g_per_kwh) for r in parsed.rows] == [
        ("DE", T, 203.41, "direct", 253.18),
        ("DE", T + H, 198.02, "direct", 247.55),
        ("DE", T + 2 * H, 241.3, "lifecycle", 241.3),
        ("DE", T + 6 * H, 192.33, "direct", 240.91),
    ]
    lca = parse_electricitymaps((DATA / "electricitymaps_DE_hourly.csv").read_text(encoding="utf-8"), column="lca")
    assert [(r.intensity_g_per_kwh, r.basis) for r in lca.rows] == [
        (253.18, "lifecycle"),
        (247.55, "lifecycle"),
        (241.3, "lifecycle"),
        (240.91, "lifecycle"),
    ]


def test_missing_columns_reject_the_whole_file():
    with pytest.raises(CsvFormatError):
        parse_electricitymaps("Datetime (UTC),value\n2024-01-01 00:00:00,1\n")


def test_watttime_moer_lbs_per_mwh_averaged_into_hours():
    parsed = parse_watttime((DATA / "watttime_CAISO_NORTH_moer.csv").read_text(), zone="US-CA")
    assert {(r.row, r.reason) for r in parsed.rejects} == {
        (4, "missing value"),
        (7, "value is not a number: 'abc'"),
        (8, "duplicate of row 6 (2024-03-01T01:00:00+00:00)"),
    }
    lb = 0.45359237
    assert [(r.hour, r.intensity_g_per_kwh) for r in parsed.rows] == [
        (datetime(2024, 3, 1, 0, tzinfo=UTC), pytest.approx((850.0 + 870.0 + 880.0) / 3 * lb, rel=1e-12)),
        (datetime(2024, 3, 1, 1, tzinfo=UTC), pytest.approx(900.0 * lb, rel=1e-12)),
    ]


@pytest.mark.django_db
def test_import_command_keeps_good_rows_and_is_idempotent():
    zone = GridZoneFactory(code="DE", annual_intensity_g_per_kwh=380.95)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "import_intensity",
            str(DATA / "electricitymaps_DE_hourly.csv"),
            "--format",
            "electricitymaps",
            "--no-progress",
            stdout=out,
        )
    assert exit_info.value.code == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "10 data rows read, 6 rejected; 4 hours: 4 created, 0 updated, 0 unchanged"
    assert lines[1] == "1 hour(s) without a direct value kept on the life-cycle basis (labelled)"
    assert lines[2:] == [f"row {n}: {reason}" for n, reason in EM_EXPECTED_REJECTS]
    rows = list(
        HourlyIntensity.objects.filter(zone=zone)
        .order_by("hour")
        .values_list("hour", "intensity_g_per_kwh", "signal", "version", "source", "basis", "lifecycle_g_per_kwh")
    )
    assert rows == [
        (T, 203.41, "average", 1, "electricitymaps", "direct", 253.18),
        (T + H, 198.02, "average", 1, "electricitymaps", "direct", 247.55),
        (T + 2 * H, 241.3, "average", 1, "electricitymaps", "lifecycle", 241.3),
        (T + 6 * H, 192.33, "average", 1, "electricitymaps", "direct", 240.91),
    ]
    fc = FactorChange.objects.get()
    assert (fc.factor_type, fc.factor_key, fc.affects_from, fc.affects_to, fc.recompute_status) == (
        "hourly_intensity",
        "DE/average",
        T,
        T + 7 * H,
        "pending",
    )

    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command(
            "import_intensity",
            str(DATA / "electricitymaps_DE_hourly.csv"),
            "--format",
            "electricitymaps",
            "--no-progress",
            stdout=out,
        )
    assert out.getvalue().splitlines()[0] == "10 data rows read, 6 rejected; 4 hours: 0 created, 0 updated, 4 unchanged"
    assert FactorChange.objects.count() == 1


@pytest.mark.django_db
def test_revised_value_bumps_version_and_unknown_zone_is_reported(tmp_path):
    GridZoneFactory(code="DE")
    csv_text = (
        "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct),Carbon Intensity gCO₂eq/kWh (LCA)\n"
        "2024-01-01 00:00:00,DE,200,250\n"
    )
    f = tmp_path / "a.csv"
    f.write_text(csv_text, encoding="utf-8")
    call_command("import_intensity", str(f), "--format", "electricitymaps", "--no-progress", stdout=io.StringIO())
    f.write_text(csv_text.replace("200,250", "200,260") + "2024-01-01 00:00:00,XX,1,2\n", encoding="utf-8")
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("import_intensity", str(f), "--format", "electricitymaps", "--no-progress", stdout=out)
    assert "skipped 1 hours for unknown zone 'XX' (create it first, e.g. load_factors)" in out.getvalue()
    row = HourlyIntensity.objects.get(zone__code="DE", hour=T)
    # The direct value is unchanged; the revised LCA value beside it is a new version.
    assert (row.intensity_g_per_kwh, row.lifecycle_g_per_kwh, row.version) == (200.0, 260.0, 2)


@pytest.mark.django_db
def test_watttime_import_is_marginal_signal():
    zone = GridZoneFactory(code="US-CA")
    with pytest.raises(SystemExit):
        call_command(
            "import_intensity",
            str(DATA / "watttime_CAISO_NORTH_moer.csv"),
            "--format",
            "watttime",
            "--zone",
            "US-CA",
            "--no-progress",
            stdout=io.StringIO(),
        )
    v = intensity_at(zone=zone, hour=datetime(2024, 3, 1, 1, 30, tzinfo=UTC), signal="marginal")
    assert (v.intensity_g_per_kwh, v.source, v.is_hourly) == (pytest.approx(900.0 * 0.45359237), "watttime", True)


@pytest.mark.django_db
def test_intensity_batch_lookup_one_query_and_annual_fallback():
    zone = GridZoneFactory(code="FR", annual_intensity_g_per_kwh=56.039, vintage="2023")
    HourlyIntensity.objects.bulk_create(
        [
            HourlyIntensity(zone=zone, hour=T + i * H, intensity_g_per_kwh=40.0 + i, source="electricitymaps")
            for i in range(48)
        ]
    )
    HourlyIntensity.objects.create(
        zone=zone, hour=T + 2 * H, intensity_g_per_kwh=999.0, is_forecast=True, source="electricitymaps"
    )
    with CaptureQueriesContext(connection) as ctx:
        lookup = intensity_lookup(zone=zone, start=T, end=T + 72 * H)
        values = [lookup(T + i * H + timedelta(minutes=30)) for i in range(72)]
    assert len(ctx.captured_queries) == 1
    assert values[2].intensity_g_per_kwh == 42.0  # the actual, never the forecast
    assert values[47].intensity_g_per_kwh == 87.0
    assert (values[48].intensity_g_per_kwh, values[48].is_hourly, values[48].vintage) == (56.039, False, "2023")
    assert intensity_at(zone=zone, hour=T + 48 * H, signal="marginal") is None


@pytest.mark.django_db
def test_import_pue_series_and_pue_lookup():
    org = OrganizationFactory()
    site = SiteFactory(org=org, slug="dc-paris", pue=1.5)
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("import_pue", str(DATA / "pue_series.csv"), "--no-progress", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "6 data rows read, 3 rejected; 3 created, 0 updated, 0 unchanged; WUE series: 1 created, 0 updated, 0 unchanged"
    )
    assert lines[1:] == [
        "row 4: PUE 0.95 below 1.0 (facility energy cannot be less than IT energy)",
        "row 5: unknown site 'nowhere'",
        "row 7: duplicate of row 3 (dc-paris 2024-02-01T00:00:00+00:00)",
    ]
    assert list(SitePue.objects.filter(site=site).order_by("valid_from").values_list("pue", "source")) == [
        (1.32, "BMS monthly report"),
        (1.28, "BMS monthly report"),
        (1.25, "import_pue pue_series.csv"),
    ]
    # The WUE column is a series row from the row's valid_from; the static value is untouched.
    site.refresh_from_db()
    assert site.wue_l_per_kwh is None
    assert list(SiteWue.objects.filter(site=site).values_list("valid_from", "wue_l_per_kwh", "source", "version")) == [
        (datetime(2024, 4, 1, tzinfo=UTC), 1.8, "import_pue pue_series.csv", 1)
    ]
    before = pue_at(site=site, at=datetime(2023, 12, 31, 23, tzinfo=UTC))
    assert (before.pue, before.valid_from) == (1.5, None)
    feb = pue_at(site=site, at=datetime(2024, 2, 1, tzinfo=UTC))
    assert (feb.pue, feb.version, feb.source) == (1.28, 1, "BMS monthly report")
    with CaptureQueriesContext(connection) as ctx:
        lookup = pue_lookup(site=site, start=datetime(2024, 1, 15, tzinfo=UTC), end=datetime(2024, 5, 1, tzinfo=UTC))
        got = [lookup(datetime(2024, m, 20, tzinfo=UTC)).pue for m in (1, 2, 3, 4)]
    assert got == [1.32, 1.28, 1.28, 1.25]
    # One statement for the range (the row in force at its start and those inside it), then
    # every instant answered from memory.
    assert len(ctx.captured_queries) == 1


@pytest.mark.django_db
def test_import_pue_wue_column_adds_and_revises_site_wue_series_rows_audited(tmp_path):
    site = SiteFactory(slug="dc-paris", pue=1.5, wue_l_per_kwh=1.1)
    SiteFactory(slug="dc-lyon", org=site.org, pue=1.4)
    path = tmp_path / "bms.csv"
    path.write_text(
        "site,valid_from,pue,source,wue_l_per_kwh\n"
        "dc-paris,2024-01-01T00:00:00Z,1.32,BMS Jan,1.6\n"
        "dc-paris,2024-07-01T00:00:00Z,1.28,BMS Jul,2.4\n"
        "dc-lyon,2024-01-01T00:00:00Z,1.35,BMS Jan,\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    call_command("import_pue", str(path), "--no-progress", "--reason", "BMS 2024", stdout=out)
    assert out.getvalue().splitlines() == [
        "3 data rows read, 0 rejected; 3 created, 0 updated, 0 unchanged; WUE series: 2 created, 0 updated, 0 unchanged"
    ]
    rows = SiteWue.objects.order_by("site_id", "valid_from").values_list(
        "site__slug", "valid_from", "wue_l_per_kwh", "source", "version"
    )
    assert list(rows) == [
        ("dc-paris", datetime(2024, 1, 1, tzinfo=UTC), 1.6, "BMS Jan", 1),
        ("dc-paris", datetime(2024, 7, 1, tzinfo=UTC), 2.4, "BMS Jul", 1),
    ]
    site.refresh_from_db()
    assert site.wue_l_per_kwh == 1.1  # the static value, before the series' first row
    events = AuditEvent.objects.filter(object_type="site_wue").order_by("pk")
    assert [(e.action, e.object_id, e.org_id, e.reason, e.after) for e in events] == [
        (
            "factor.create",
            "dc-paris@2024-01-01T00:00:00+00:00",
            site.org_id,
            "BMS 2024",
            {"wue_l_per_kwh": 1.6, "source": "BMS Jan", "version": 1},
        ),
        (
            "factor.create",
            "dc-paris@2024-07-01T00:00:00+00:00",
            site.org_id,
            "BMS 2024",
            {"wue_l_per_kwh": 2.4, "source": "BMS Jul", "version": 1},
        ),
    ]
    assert FactorChange.objects.filter(factor_type="site_wue").count() == 2

    # A corrected file: one WUE revised (before/after kept), one the same, PUE unchanged.
    path.write_text(
        "site,valid_from,pue,source,wue_l_per_kwh\n"
        "dc-paris,2024-01-01T00:00:00Z,1.32,BMS Jan,1.6\n"
        "dc-paris,2024-07-01T00:00:00Z,1.28,BMS Jul,2.1\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    call_command("import_pue", str(path), "--no-progress", "--reason", "BMS July corrected", stdout=out)
    assert out.getvalue().splitlines() == [
        "2 data rows read, 0 rejected; 0 created, 0 updated, 2 unchanged; WUE series: 0 created, 1 updated, 1 unchanged"
    ]
    july = SiteWue.objects.get(site=site, valid_from=datetime(2024, 7, 1, tzinfo=UTC))
    assert (july.wue_l_per_kwh, july.version) == (2.1, 2)
    change = FactorChange.objects.filter(factor_type="site_wue").order_by("-pk").first()
    assert (change.factor_key, change.reason, change.before, change.after, change.recompute_status) == (
        "dc-paris@2024-07-01T00:00:00+00:00",
        "BMS July corrected",
        {"wue_l_per_kwh": 2.4, "version": 1},
        {"wue_l_per_kwh": 2.1, "version": 2},
        "none",
    )


@pytest.mark.django_db
def test_import_pue_attributes_wue_rows_to_the_importing_user():
    from accounting.factors.csv_import import parse_pue
    from accounting.services.factors import pue_import

    user = UserFactory(username="facilities")
    site = SiteFactory(slug="dc-paris")
    parsed = parse_pue("site,valid_from,pue,wue_l_per_kwh\ndc-paris,2024-01-01,1.3,0.9\n", default_source="bms.csv")
    report = pue_import(rows=parsed.rows, reason="facilities upload", user=user)
    assert (report.created, report.wue_created) == (1, 1)
    event = AuditEvent.objects.get(object_type="site_wue")
    assert (event.actor_user, event.object_id, event.after) == (
        user,
        "dc-paris@2024-01-01T00:00:00+00:00",
        {"wue_l_per_kwh": 0.9, "source": "bms.csv", "version": 1},
    )
    assert (FactorChange.objects.get(factor_type="site_wue").changed_by, SiteWue.objects.get().site) == (user, site)
