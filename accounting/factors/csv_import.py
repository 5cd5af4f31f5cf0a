"""Parsers for provider CSV exports and PUE series. They validate row by row: a bad row is
reported (file line number + reason) and skipped, good rows are kept. No database access.

Formats
- Electricity Maps historical export (hourly): "Datetime (UTC)", "Zone Id",
  "Carbon Intensity gCO₂eq/kWh (direct)", "Carbon Intensity gCO₂eq/kWh (LCA)", ... By default
  the direct column is the hour's intensity (location-based Scope 2 is the generation factor,
  GHG Protocol Scope 2 Guidance) and the LCA column is kept beside it (the upstream part is
  their difference, Scope 3 category 3). An hour with no direct value but an LCA one is kept on
  the life-cycle basis and labelled so; ``column="lca"`` makes the LCA column the intensity.
  Both are CO2e (CO2, CH4, N2O).
- WattTime historical export: point_time, value (+ optional frequency, market, ba, datatype,
  version, unit). MOER values are marginal, in lbs/MWh unless a unit column or the caller says
  otherwise; 5-minute points are averaged into the hour that contains them.
- PUE: site, valid_from, pue (+ optional source, wue_l_per_kwh).
- Residual mixes: zone, year, g_per_kwh, gases (co2 | co2e), source_detail (+ optional vintage):
  one row per zone and year, from a published residual-mix table (AIB European Residual Mixes,
  Green-e). Rows still marked as the template's examples (source_detail starting "EXAMPLE") are
  refused, so a copied template cannot load invented figures.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from accounting.factors.codecarbon_data import LBS_PER_MWH_TO_G_PER_KWH

EM_DATETIME = "Datetime (UTC)"
EM_ZONE = "Zone Id"
EM_DIRECT = "Carbon Intensity gCO₂eq/kWh (direct)"
EM_LCA = "Carbon Intensity gCO₂eq/kWh (LCA)"

# A physically plausible ceiling: the dirtiest lignite plants emit about 1,200-1,400 g/kWh;
# anything far above is a unit mistake (e.g. lbs/MWh read as g/kWh), not a grid.
MAX_PLAUSIBLE_G_PER_KWH = 2000.0

UNIT_FACTORS_TO_G_PER_KWH = {
    "g/kwh": 1.0,
    "gco2/kwh": 1.0,
    "gco2e/kwh": 1.0,
    "gco2eq/kwh": 1.0,
    "kg/mwh": 1.0,
    "lbs/mwh": LBS_PER_MWH_TO_G_PER_KWH,
    "lb/mwh": LBS_PER_MWH_TO_G_PER_KWH,
    "lbs_co2_per_mwh": LBS_PER_MWH_TO_G_PER_KWH,
}


@dataclass(frozen=True)
class Reject:
    row: int  # line number in the file (the header is line 1)
    reason: str


@dataclass(frozen=True)
class HourlyRow:
    zone_code: str
    hour: datetime
    intensity_g_per_kwh: float
    basis: str = "direct"  # what intensity_g_per_kwh counts: "direct" | "lifecycle"
    gases: str = "co2e"  # "co2e" | "co2"
    lifecycle_g_per_kwh: float | None = None  # the life-cycle value of the hour, where known


@dataclass(frozen=True)
class PueRow:
    row: int
    site_slug: str
    valid_from: datetime
    pue: float
    source: str
    wue_l_per_kwh: float | None = None


@dataclass(frozen=True)
class ResidualMixRow:
    row: int
    zone_code: str
    year: int
    g_per_kwh: float
    gases: str
    source_detail: str
    vintage: str = ""


@dataclass
class ParseResult:
    rows: list = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    total: int = 0  # data rows seen


class CsvFormatError(ValueError):
    """The file as a whole is unusable (missing columns, empty): nothing is imported."""


def parse_utc(text: str) -> datetime:
    """ISO 8601 / "YYYY-MM-DD HH:MM[:SS]" to an aware UTC datetime; naive means UTC (both
    providers export UTC columns), an explicit offset is converted."""
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _number(text: str | None, what: str) -> float:
    if text is None or not text.strip():
        raise ValueError(f"missing {what}")
    try:
        v = float(text.strip())
    except ValueError:
        raise ValueError(f"{what} is not a number: {text.strip()!r}")
    if not math.isfinite(v):
        raise ValueError(f"{what} is not finite: {text.strip()!r}")
    return v


def _reader(text_or_lines: str | Iterable[str]) -> csv.DictReader:
    if isinstance(text_or_lines, str):
        text_or_lines = io.StringIO(text_or_lines.lstrip("\ufeff"))
    return csv.DictReader(text_or_lines)


def _require(reader: csv.DictReader, columns: Iterable[str]) -> None:
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        raise CsvFormatError(f"missing column(s) {missing}; header is {header}")


def _check_intensity(v: float) -> None:
    if v < 0:
        raise ValueError(f"negative intensity {v}")
    if v > MAX_PLAUSIBLE_G_PER_KWH:
        raise ValueError(f"intensity {v:g} g/kWh above plausible maximum {MAX_PLAUSIBLE_G_PER_KWH:g} g/kWh (unit?)")


def _optional_intensity(raw: dict, column: str) -> float | None:
    """An intensity cell: empty is missing (None); anything else must be a plausible number."""
    text = raw.get(column)
    if text is None or not text.strip():
        return None
    value = _number(text, column)
    _check_intensity(value)
    return value


def parse_electricitymaps(
    text_or_lines: str | Iterable[str], *, zone_override: str | None = None, column: str = "direct"
) -> ParseResult:
    """Hourly rows from an Electricity Maps export. ``column="direct"`` (default): the direct
    value is the intensity and the LCA value rides beside it; an hour without a direct value is
    kept on the LCA value with ``basis="lifecycle"``. ``column="lca"``: the LCA value is the
    intensity (basis life-cycle). A row is rejected when a cell it has is not a plausible
    intensity, or when it has no value in the columns it may use."""
    if column not in ("lca", "direct"):
        raise ValueError("column must be 'lca' or 'direct'")
    reader = _reader(text_or_lines)
    required = [EM_DATETIME, EM_LCA] if column == "lca" else [EM_DATETIME, EM_DIRECT, EM_LCA]
    header = reader.fieldnames or []
    if column == "direct" and EM_DIRECT in header and EM_LCA not in header:
        required = [EM_DATETIME, EM_DIRECT]  # an export of the direct column alone
    _require(reader, required + ([] if zone_override else [EM_ZONE]))
    result = ParseResult()
    seen: dict[tuple[str, datetime], int] = {}
    for line_no, raw in enumerate(reader, start=2):
        result.total += 1
        try:
            hour = parse_utc(raw.get(EM_DATETIME) or "")
            if (hour.minute, hour.second, hour.microsecond) != (0, 0, 0):
                raise ValueError(f"timestamp {raw[EM_DATETIME]!r} is not on the hour")
            zone = zone_override or (raw.get(EM_ZONE) or "").strip()
            if not zone:
                raise ValueError("missing zone id")
            direct = _optional_intensity(raw, EM_DIRECT) if column == "direct" else None
            lca = _optional_intensity(raw, EM_LCA)
            if direct is not None:
                row = HourlyRow(zone, hour, direct, basis="direct", lifecycle_g_per_kwh=lca)
            elif lca is not None:
                row = HourlyRow(zone, hour, lca, basis="lifecycle", lifecycle_g_per_kwh=lca)
            else:
                raise ValueError(f"missing {EM_LCA if column == 'lca' else EM_DIRECT}")
            if (zone, hour) in seen:
                raise ValueError(f"duplicate of row {seen[(zone, hour)]} ({zone} {hour.isoformat()})")
        except ValueError as exc:
            result.rejects.append(Reject(line_no, str(exc)))
            continue
        seen[(zone, hour)] = line_no
        result.rows.append(row)
    return result


def parse_watttime(text_or_lines: str | Iterable[str], *, zone: str, unit: str = "lbs/MWh") -> ParseResult:
    """Hourly marginal rows (g/kWh) from a WattTime export: points averaged within each hour."""
    reader = _reader(text_or_lines)
    _require(reader, ["point_time", "value"])
    has_unit_col = "unit" in (reader.fieldnames or []) or "units" in (reader.fieldnames or [])
    result = ParseResult()
    buckets: dict[datetime, list[float]] = {}
    seen: dict[datetime, int] = {}
    for line_no, raw in enumerate(reader, start=2):
        result.total += 1
        try:
            point = parse_utc(raw.get("point_time") or "")
            row_unit = (raw.get("unit") or raw.get("units") or "").strip() if has_unit_col else ""
            factor = UNIT_FACTORS_TO_G_PER_KWH.get((row_unit or unit).strip().lower())
            if factor is None:
                raise ValueError(f"unknown unit {(row_unit or unit)!r}")
            value = _number(raw.get("value"), "value") * factor
            _check_intensity(value)
            if point in seen:
                raise ValueError(f"duplicate of row {seen[point]} ({point.isoformat()})")
        except ValueError as exc:
            result.rejects.append(Reject(line_no, str(exc)))
            continue
        seen[point] = line_no
        buckets.setdefault(point.replace(minute=0, second=0, microsecond=0), []).append(value)
    # MOER: the emission rate of the marginal plant, combustion CO2 only.
    result.rows = [HourlyRow(zone, h, sum(v) / len(v), basis="direct", gases="co2") for h, v in sorted(buckets.items())]
    return result


def parse_pue(text_or_lines: str | Iterable[str], *, default_source: str = "operator CSV import") -> ParseResult:
    reader = _reader(text_or_lines)
    _require(reader, ["site", "valid_from", "pue"])
    result = ParseResult()
    seen: dict[tuple[str, datetime], int] = {}
    for line_no, raw in enumerate(reader, start=2):
        result.total += 1
        try:
            site = (raw.get("site") or "").strip()
            if not site:
                raise ValueError("missing site")
            valid_from = parse_utc(raw.get("valid_from") or "")
            pue = _number(raw.get("pue"), "pue")
            if pue < 1.0:
                raise ValueError(f"PUE {pue:g} below 1.0 (facility energy cannot be less than IT energy)")
            if pue > 5.0:
                raise ValueError(f"PUE {pue:g} above 5.0 (implausible; check the column)")
            wue_text = (raw.get("wue_l_per_kwh") or "").strip()
            wue = _number(wue_text, "wue_l_per_kwh") if wue_text else None
            if wue is not None and wue < 0:
                raise ValueError(f"negative WUE {wue:g}")
            if (site, valid_from) in seen:
                raise ValueError(f"duplicate of row {seen[(site, valid_from)]} ({site} {valid_from.isoformat()})")
        except ValueError as exc:
            result.rejects.append(Reject(line_no, str(exc)))
            continue
        seen[(site, valid_from)] = line_no
        source = (raw.get("source") or "").strip() or default_source
        result.rows.append(PueRow(line_no, site, valid_from, pue, source, wue))
    return result


RESIDUAL_MIX_EXAMPLE_MARK = "EXAMPLE"


def parse_residual_mix(text_or_lines: str | Iterable[str]) -> ParseResult:
    reader = _reader(text_or_lines)
    _require(reader, ["zone", "year", "g_per_kwh", "gases", "source_detail"])
    result = ParseResult()
    seen: dict[tuple[str, int], int] = {}
    for line_no, raw in enumerate(reader, start=2):
        result.total += 1
        try:
            zone = (raw.get("zone") or "").strip()
            if not zone:
                raise ValueError("missing zone")
            year_text = (raw.get("year") or "").strip()
            if not year_text.isdigit() or not 1990 <= int(year_text) <= 2100:
                raise ValueError(f"year is not a calendar year: {year_text!r}")
            year = int(year_text)
            g_per_kwh = _number(raw.get("g_per_kwh"), "g_per_kwh")
            if g_per_kwh < 0:
                raise ValueError(f"negative residual mix {g_per_kwh:g}")
            if g_per_kwh > MAX_PLAUSIBLE_G_PER_KWH:
                raise ValueError(f"residual mix {g_per_kwh:g} g/kWh above plausible maximum 2000 g/kWh (unit?)")
            gases = (raw.get("gases") or "").strip().lower()
            if gases not in ("co2", "co2e"):
                raise ValueError(f"gases must be co2 or co2e, got {gases!r}")
            detail = (raw.get("source_detail") or "").strip()
            if not detail:
                raise ValueError("missing source_detail (the dataset and its release)")
            if detail.upper().startswith(RESIDUAL_MIX_EXAMPLE_MARK):
                raise ValueError("template example row: put the published figure and its source_detail in")
            if (zone, year) in seen:
                raise ValueError(f"duplicate of row {seen[(zone, year)]} ({zone} {year})")
        except ValueError as exc:
            result.rejects.append(Reject(line_no, str(exc)))
            continue
        seen[(zone, year)] = line_no
        vintage = (raw.get("vintage") or "").strip()
        result.rows.append(ResidualMixRow(line_no, zone, year, g_per_kwh, gases, detail, vintage))
    return result
