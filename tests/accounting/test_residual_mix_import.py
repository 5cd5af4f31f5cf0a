"""import_residual_mix: an operator loads residual mixes from a published table (no data ships:
no redistributable, checkable source). Row by row validation, each good row through
residual_mix_set (versioned, audited), the shipped template refused until filled in."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import accounting
from accounting import models as m
from accounting.factors.csv_import import CsvFormatError, ResidualMixRow, parse_residual_mix
from tests.factories import GridZoneFactory

TEMPLATE = Path(accounting.__file__).parent / "factors" / "data" / "residual_mix_template.csv"
HEADER = "zone,year,g_per_kwh,gases,source_detail,vintage\n"


def test_parser_reports_each_bad_row():
    text = HEADER + (
        "DE,2024,512.5,co2,AIB European Residual Mixes 2024 v1.0,2024\n"
        "FR,24,50,co2,AIB,\n"
        "PL,2024,-1,co2,AIB,\n"
        "PL,2024,4000,co2,AIB,\n"
        "PL,2024,700,ch4,AIB,\n"
        "PL,2024,700,co2,,\n"
        ",2024,700,co2,AIB,\n"
        "DE,2024,500,co2,again,\n"
        "PL,2023,n/a,co2,AIB,\n"
        "FR,2024,31.5,CO2E,Operator's supplier disclosure 2024,\n"
    )
    parsed = parse_residual_mix(text)
    assert parsed.total == 10
    assert [(r.row, r.reason) for r in parsed.rejects] == [
        (3, "year is not a calendar year: '24'"),
        (4, "negative residual mix -1"),
        (5, "residual mix 4000 g/kWh above plausible maximum 2000 g/kWh (unit?)"),
        (6, "gases must be co2 or co2e, got 'ch4'"),
        (7, "missing source_detail (the dataset and its release)"),
        (8, "missing zone"),
        (9, "duplicate of row 2 (DE 2024)"),
        (10, "g_per_kwh is not a number: 'n/a'"),
    ]
    assert parsed.rows == [
        ResidualMixRow(2, "DE", 2024, 512.5, "co2", "AIB European Residual Mixes 2024 v1.0", "2024"),
        ResidualMixRow(11, "FR", 2024, 31.5, "co2e", "Operator's supplier disclosure 2024", ""),
    ]
    with pytest.raises(CsvFormatError, match=r"missing column\(s\) \['gases', 'source_detail'\]"):
        parse_residual_mix("zone,year,g_per_kwh\nDE,2024,1\n")


def test_the_shipped_template_names_the_demo_zones_and_is_refused_until_filled_in():
    parsed = parse_residual_mix(TEMPLATE.read_text(encoding="utf-8"))
    assert (parsed.total, parsed.rows) == (3, [])
    assert [r.row for r in parsed.rejects] == [2, 3, 4]
    assert {r.reason for r in parsed.rejects} == {
        "template example row: put the published figure and its source_detail in"
    }
    assert [line.split(",")[0] for line in TEMPLATE.read_text(encoding="utf-8").splitlines()[1:]] == ["DE", "FR", "PL"]


@pytest.mark.django_db
def test_import_residual_mix_creates_revises_and_audits(tmp_path):
    de, pl = GridZoneFactory(code="DE"), GridZoneFactory(code="PL")
    path = tmp_path / "aib.csv"
    path.write_text(
        HEADER + "DE,2024,512.5,co2,AIB European Residual Mixes 2024 v1.0,2024\n"
        "PL,2024,801.25,co2,AIB European Residual Mixes 2024 v1.0,2024\n"
        "XX,2024,100,co2,AIB European Residual Mixes 2024 v1.0,2024\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_residual_mix", str(path), "--no-progress", "--reason", "AIB 2024 release", stdout=out)
    assert exit_info.value.code == 1
    assert out.getvalue().splitlines() == [
        "3 data rows read, 1 rejected; 2 created, 0 updated, 0 unchanged",
        "row 4: unknown zone 'XX'",
    ]
    rows = m.ResidualMix.objects.order_by("zone__code").values_list(
        "zone__code", "year", "g_per_kwh", "gases", "source", "source_detail", "vintage", "version"
    )
    assert list(rows) == [
        ("DE", 2024, 512.5, "co2", "published", "AIB European Residual Mixes 2024 v1.0", "2024", 1),
        ("PL", 2024, 801.25, "co2", "published", "AIB European Residual Mixes 2024 v1.0", "2024", 1),
    ]
    events = m.AuditEvent.objects.filter(object_type="residual_mix").order_by("object_id")
    assert [(e.action, e.object_id, e.reason, e.org_id) for e in events] == [
        ("factor.create", "DE/2024", "AIB 2024 release", None),
        ("factor.create", "PL/2024", "AIB 2024 release", None),
    ]

    # A corrected release: DE revised (before/after kept), PL the same.
    path.write_text(
        HEADER + "DE,2024,498,co2,AIB European Residual Mixes 2024 v1.1,2024\n"
        "PL,2024,801.25,co2,AIB European Residual Mixes 2024 v1.0,2024\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    call_command("import_residual_mix", str(path), "--no-progress", stdout=out)
    assert out.getvalue().splitlines() == ["2 data rows read, 0 rejected; 0 created, 1 updated, 1 unchanged"]
    change = m.FactorChange.objects.filter(factor_type="residual_mix", factor_key="DE/2024").order_by("-pk").first()
    assert (change.reason, change.before, change.after, change.recompute_status) == (
        "import_residual_mix aib.csv",
        {"g_per_kwh": 512.5, "source_detail": "AIB European Residual Mixes 2024 v1.0", "version": 1},
        {"g_per_kwh": 498.0, "source_detail": "AIB European Residual Mixes 2024 v1.1", "version": 2},
        "none",
    )
    assert (de.residual_mixes.get().version, pl.residual_mixes.get().version) == (2, 1)


@pytest.mark.django_db
def test_import_of_the_unfilled_template_writes_nothing():
    GridZoneFactory(code="DE")
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("import_residual_mix", str(TEMPLATE), "--no-progress", stdout=out)
    assert out.getvalue().splitlines()[0] == "3 data rows read, 3 rejected; 0 created, 0 updated, 0 unchanged"
    assert (m.ResidualMix.objects.count(), m.AuditEvent.objects.count(), m.FactorChange.objects.count()) == (0, 0, 0)


@pytest.mark.django_db
def test_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_residual_mix", str(tmp_path / "none.csv"))
