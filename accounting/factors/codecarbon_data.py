"""Annual grid intensities from codecarbon's shipped data files, read directly (offline).

codecarbon's own loaders (``codecarbon.input.DataSource``) are internal API, and its online
tracker silently substitutes a default intensity when it cannot geolocate, so we read the
JSON/CSV files of the pinned release (codecarbon==3.3.2) ourselves and convert every unit to
gCO2e/kWh. Zone codes follow Electricity Maps zone ids where one exists, so hourly imports and
the live API land on the same GridZone:

- countries: ISO 3166-1 alpha-2 ("FR"), from global_energy_mix.json (alpha-3 keys, g/kWh)
- US states: "US-WA", from 2023/usa_emissions.json (EPA eGRID2023, lbs/MWh)
- Canadian provinces: "CA-QC", from 2023/canada_energy_mix.json (generation mix %, converted
  with codecarbon's own per-fuel factors, exactly as codecarbon does)
- Chinese provinces: "CN-BJ", from 2023/china_provincial_emissions.json (gCO2/kWh, CO2 only)
- Nordic bidding zones: "SE-SE1".."SE-SE4", "NO-NO1".."NO-NO5" (Electricity Maps ids) and "FI"
  from nordic_emissions.json (gCO2eq/kWh, 2025)
- Google Cloud regions: "gcp:europe-west1", from cloud/impact.csv (g/kWh; file starts with a BOM)

The country rows of global_energy_mix.json also carry the year's generation by technology
(TWh): ``load_codecarbon_generation_mixes`` reads it for the grid water intensity of each
country zone (accounting.domain.water.mix_water_factor).

Basis and gases differ by file and each zone says which (``ZoneFactor.basis``/``gases``):

========================= ========== ====== ===============================================
zones                     basis      gases  why
========================= ========== ====== ===============================================
countries (OWID/Ember)    life-cycle CO2e   Ember's per-fuel factors are IPCC AR5 life-cycle
                                            medians (coal 820, gas 490, solar 48 g/kWh)
US states (eGRID)         direct     CO2e   STC2ERTA: stack CO2e output emission rate
Canadian provinces        direct     CO2    fossil shares x EIA combustion CO2 factors,
                                            non-fossil counted 0
Chinese provinces         direct     CO2    MEE/NBS official factors, "CO2 only, no lifecycle"
Nordic bidding zones      life-cycle CO2e   mix x carbon_intensity_per_source.json (WNA and
                                            IPCC life-cycle factors: hydro 26, wind 26)
Google Cloud regions      life-cycle CO2e   Google's grid intensity: Electricity Maps life-
                                            cycle average
========================= ========== ====== ===============================================
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pycountry  # a codecarbon dependency, pinned with it

# 1 lb = 453.59237 g (exact, international avoirdupois pound); 1 MWh = 1000 kWh.
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237

CODECARBON_VERSION_EXPECTED = "3.3.2"

# codecarbon's Canadian mix conversion (core/emissions.py _region_energy_mix_to_emissions_rate):
# only fossil shares carry emissions, in kg/kWh; hydro/nuclear/wind/solar/biomass count as zero.
_CANADA_FUEL_KG_PER_KWH = {"coal": 0.995725971, "petroleum": 0.8166885263, "naturalGas": 0.7438415916}

_CANADA_PROVINCE_CODES = {
    "alberta": "AB",
    "british columbia": "BC",
    "manitoba": "MB",
    "new brunswick": "NB",
    "newfoundland and labrador": "NL",
    "northwest territories": "NT",
    "nova scotia": "NS",
    "nunavut": "NU",
    "ontario": "ON",
    "prince edward island": "PE",
    "quebec": "QC",
    "saskatchewan": "SK",
    "yukon": "YT",
}

# codecarbon's cloud/impact.csv misspells one GCP region; the zone uses Google's real name.
_GCP_REGION_FIXES = {"me-cenrtal1": "me-central1"}


BASIS_DIRECT = "direct"
BASIS_LIFECYCLE = "lifecycle"
GASES_CO2E = "co2e"
GASES_CO2 = "co2"


@dataclass(frozen=True)
class ZoneFactor:
    code: str
    name: str
    annual_intensity_g_per_kwh: float
    source_detail: str
    vintage: str
    basis: str = BASIS_LIFECYCLE  # what annual_intensity_g_per_kwh counts (see the table above)
    gases: str = GASES_CO2E


def codecarbon_data_dir() -> Path:
    import codecarbon  # imported lazily: only the data directory is needed, not the tracker

    return Path(codecarbon.__file__).resolve().parent / "data"


def codecarbon_version() -> str:
    return metadata.version("codecarbon")


def _countries(data: Path, version: str) -> list[ZoneFactor]:
    path = data / "private_infra" / "global_energy_mix.json"
    mix = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for alpha3, row in mix.items():
        country = pycountry.countries.get(alpha_3=alpha3)
        if country is None or row.get("carbon_intensity") is None:
            continue
        out.append(
            ZoneFactor(
                code=country.alpha_2,
                name=row.get("country_name") or country.name,
                annual_intensity_g_per_kwh=float(row["carbon_intensity"]),
                source_detail=f"codecarbon {version} data/private_infra/global_energy_mix.json [{alpha3}] "
                "carbon_intensity (gCO2e/kWh)",
                vintage=str(row.get("year", "")),
            )
        )
    return out


def _us_states(data: Path, version: str) -> list[ZoneFactor]:
    path = data / "private_infra" / "2023" / "usa_emissions.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    unit = doc.get("_unit", {}).get("emissions")
    if unit != "lbs/MWh":
        raise ValueError(f"{path}: expected emissions in lbs/MWh, file says {unit!r}")
    src = doc.get("_source", {})
    out = []
    for name, row in doc.items():
        if name.startswith("_"):
            continue
        region = row["regionCode"]
        if len(region) != 2:  # the national "usa" total: the country zone "US" comes from the global mix
            continue
        out.append(
            ZoneFactor(
                code=f"US-{region.upper()}",
                name=name.title(),
                annual_intensity_g_per_kwh=float(row["emissions"]) * LBS_PER_MWH_TO_G_PER_KWH,
                source_detail=f"codecarbon {version} data/private_infra/2023/usa_emissions.json [{name}] "
                f"{row['emissions']} lbs/MWh x 0.45359237; {src.get('name', 'EPA eGRID')} ({src.get('field', '')})",
                vintage=f"eGRID{src.get('year', 2023)}",
                basis=BASIS_DIRECT,
            )
        )
    return out


def canada_mix_to_g_per_kwh(mix: dict) -> float:
    """codecarbon's conversion of a provincial generation mix (percent shares) to g/kWh."""
    total = mix["total"]
    kg = sum(mix[fuel] / total * factor for fuel, factor in _CANADA_FUEL_KG_PER_KWH.items())
    return kg * 1000.0


def _canada(data: Path, version: str) -> list[ZoneFactor]:
    path = data / "private_infra" / "2023" / "canada_energy_mix.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for name, mix in doc.items():
        code = _CANADA_PROVINCE_CODES.get(name)
        if code is None:
            raise ValueError(f"{path}: unknown Canadian province {name!r}")
        out.append(
            ZoneFactor(
                code=f"CA-{code}",
                name=name.title(),
                annual_intensity_g_per_kwh=canada_mix_to_g_per_kwh(mix),
                source_detail=f"codecarbon {version} data/private_infra/2023/canada_energy_mix.json [{name}] "
                "generation mix x codecarbon fossil factors (coal 995.7, petroleum 816.7, gas 743.8 g/kWh; "
                "non-fossil counted as 0)",
                vintage="2023",
                basis=BASIS_DIRECT,
                gases=GASES_CO2,
            )
        )
    return out


def _china(data: Path, version: str) -> list[ZoneFactor]:
    path = data / "private_infra" / "2023" / "china_provincial_emissions.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    meta = doc.get("metadata", {})
    out = []
    for code, row in doc["data"].items():
        if row.get("unit") not in ("gCO2/kWh", "gCO2eq/kWh"):
            raise ValueError(f"{path}: unexpected unit {row.get('unit')!r} for {code}")
        out.append(
            ZoneFactor(
                code=code,
                name=row.get("description", code),
                annual_intensity_g_per_kwh=float(row["emission_factor"]),
                source_detail=f"codecarbon {version} china_provincial_emissions.json [{code}]; MEE/NBS "
                f"announcement {meta.get('announcement', '')}; CO2 only (not CO2e)",
                vintage=str(row.get("year", meta.get("year", ""))),
                basis=BASIS_DIRECT,
                gases=GASES_CO2,
            )
        )
    return out


def nordic_zone_code(codecarbon_zone: str) -> str:
    """codecarbon's "SE1"/"NO4"/"FI" -> Electricity Maps' "SE-SE1"/"NO-NO4"/"FI"."""
    if len(codecarbon_zone) == 3 and codecarbon_zone[:2] in ("SE", "NO") and codecarbon_zone[2].isdigit():
        return f"{codecarbon_zone[:2]}-{codecarbon_zone}"
    return codecarbon_zone


def _nordic(data: Path, version: str) -> list[ZoneFactor]:
    path = data / "private_infra" / "nordic_emissions.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for zone, row in doc["data"].items():
        out.append(
            ZoneFactor(
                code=nordic_zone_code(zone),
                name=row.get("description", zone),
                annual_intensity_g_per_kwh=float(row["emission_factor"]),
                source_detail=f"codecarbon {version} data/private_infra/nordic_emissions.json [{zone}] "
                f"({row.get('unit', '')}, ENTSO-E generation mix)",
                vintage=str(row.get("year", "")),
            )
        )
    return out


def _gcp(data: Path, version: str) -> list[ZoneFactor]:
    path = data / "cloud" / "impact.csv"
    out = []
    # utf-8-sig strips the byte-order mark that would otherwise glue itself to "provider".
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["provider"] != "gcp":
                continue
            region = _GCP_REGION_FIXES.get(row["region"], row["region"])
            out.append(
                ZoneFactor(
                    code=f"gcp:{region}",
                    name=f"Google Cloud {region} ({row.get('city') or row.get('country_name')})",
                    annual_intensity_g_per_kwh=float(row["impact"]),
                    source_detail=f"codecarbon {version} data/cloud/impact.csv [{row['region']}] (gCO2e/kWh; "
                    f"{row.get('source', '')})",
                    vintage="codecarbon " + version,
                )
            )
    return out


# Generation columns (TWh) of global_energy_mix.json -> the technology keys of
# accounting.domain.water.TECHNOLOGY_WATER. "other_renewable_TWh" includes biofuel, so its
# "exc_biofuel" column is taken: the nine columns sum to total_TWh for every country.
MIX_COLUMNS: Mapping[str, str] = {
    "coal": "coal_TWh",
    "gas": "gas_TWh",
    "oil": "oil_TWh",
    "nuclear": "nuclear_TWh",
    "biofuel": "biofuel_TWh",
    "hydro": "hydroelectricity_TWh",
    "solar": "solar_TWh",
    "wind": "wind_TWh",
    "other_renewable": "other_renewable_exc_biofuel_TWh",
}


@dataclass(frozen=True)
class ZoneMix:
    """A country's annual generation by technology (TWh) from codecarbon's global mix (Our
    World in Data, from Ember and the Energy Institute)."""

    code: str  # ISO 3166-1 alpha-2, the country zone's code
    generation_twh: Mapping[str, float]
    source_detail: str
    vintage: str  # the data year


def load_codecarbon_generation_mixes(data_dir: Path | None = None) -> list[ZoneMix]:
    """Every country of global_energy_mix.json whose nine generation columns are numbers with
    some generation, keyed like the country zones (``_countries``)."""
    data = data_dir or codecarbon_data_dir()
    version = codecarbon_version()
    mix = json.loads((data / "private_infra" / "global_energy_mix.json").read_text(encoding="utf-8"))
    out = []
    for alpha3, row in mix.items():
        country = pycountry.countries.get(alpha_3=alpha3)
        values = {tech: row.get(column) for tech, column in MIX_COLUMNS.items()}
        if country is None or not all(isinstance(v, int | float) and v >= 0 for v in values.values()):
            continue
        generation = {tech: float(v) for tech, v in values.items() if v is not None}
        if not sum(generation.values()) > 0:
            continue
        out.append(
            ZoneMix(
                code=country.alpha_2,
                generation_twh=generation,
                source_detail=f"codecarbon {version} data/private_infra/global_energy_mix.json [{alpha3}] "
                f"generation {row.get('year', '')} (TWh by source)",
                vintage=str(row.get("year", "")),
            )
        )
    return sorted(out, key=lambda z: z.code)


def load_codecarbon_zones(data_dir: Path | None = None) -> list[ZoneFactor]:
    """Every zone codecarbon ships, converted to gCO2e/kWh, most specific source winning.

    Order matters for the one overlap: Finland is both a country in the global mix and the
    single Nordic bidding zone "FI"; the Nordic file is the zone-specific, newer (2025) figure
    and is the one codecarbon itself applies to region FI, so it replaces the country value."""
    data = data_dir or codecarbon_data_dir()
    version = codecarbon_version()
    by_code: dict[str, ZoneFactor] = {}
    for loader in (_countries, _us_states, _canada, _china, _nordic, _gcp):
        for z in loader(data, version):
            by_code[z.code] = z
    return sorted(by_code.values(), key=lambda z: z.code)
