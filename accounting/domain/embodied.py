"""Embodied (manufacturing) carbon of accelerators and host components (pure, stdlib only).

Model (ACT, facebookresearch/ACT, Gupta et al. ISCA 2022) per logic die::

    die_g = area_cm2 × (fab_intensity_g_per_kwh × EPA_kwh_per_cm2 + GPA_g_per_cm2 + MPA_g_per_cm2) / yield

plus memory capacity × a per-GB factor, a per-IC packaging term, and (our extension, calibrated
on NVIDIA's HGX H100 product carbon footprint) a board/thermal/assembly term that scales with
board power. ACT's fixed yield (0.875) flatters reticle-sized dies, so yield here comes from a
negative-binomial defect model ``Y = (1 + A·D0/α)^−α`` with a declared D0 per node. Large GPUs
ship with defective units disabled (H100 SXM enables 132 of its 144 SMs): a die is sold if the
area outside the SM array is clean and at most ``total − enabled`` SMs hold a defect
(``harvested_yield``), so where the unit counts are published the die term uses that yield.

Every constant carries its source; low/high bands come from running the same model with a LOW
and a HIGH parameter set (``SCENARIOS``), never from a bare ± on the result.

``EMBODIED`` holds one figure per hardware catalog key: a published LCA where one exists
(NVIDIA HGX H100 / HGX B200 product carbon footprints, per-GPU share), otherwise the ACT
estimate, with ``kind`` saying which. ``HOST_EMBODIED`` holds host components.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypedDict

from accounting.domain.catalog import CATALOG, DeviceSpec, key_aliases

# Bump when any constant, source or EMBODIED figure below changes: HardwareModel rows loaded
# from this module record it, and load_factors creates a FactorChange when it moves.
EMBODIED_VERSION = "2026.12-1"
# 2026.12-1: harvested yield for GPUs with published SM counts (HARVEST); host DRAM and SSD per GB
# from server LCAs and Boavizta instead of fab-only figures (SCENARIO_SOURCES); B200 180 GB.

ACT_SOURCE = "ACT (facebookresearch/ACT, Gupta et al., ISCA 2022), logic/epa|gpa_95|gpa_99|materials tables"

# --- per-node fab factors ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFactors:
    node_nm: int
    epa_kwh_per_cm2: float  # fab electricity per die area (ACT logic/epa.json, Table 1)
    gpa95_g_per_cm2: float  # fab gases, 95 % abatement (ACT logic/gpa_95.json)
    gpa99_g_per_cm2: float  # fab gases, 99 % abatement (ACT logic/gpa_99.json)
    mpa_g_per_cm2: float  # raw materials per area (ACT logic/materials.json)
    d0_per_cm2: float  # defect density for the yield model (declared, see D0_SOURCE)


D0_SOURCE = (
    "declared: TSMC reported N7/N5 high-volume defect density of about 0.09-0.10 /cm2 "
    "(TSMC Technology Symposium 2020, as reported by AnandTech); mature 16/12 nm and older "
    "nodes set lower. Clustering parameter alpha = 3 (a common negative-binomial choice)."
)

NODE_FACTORS: Mapping[int, NodeFactors] = MappingProxyType(
    {
        n.node_nm: n
        for n in (
            NodeFactors(3, 3.250, 470.0, 275.0, 500.0, 0.10),
            NodeFactors(5, 2.750, 430.0, 225.0, 500.0, 0.10),
            NodeFactors(7, 2.150, 350.0, 200.0, 500.0, 0.09),
            NodeFactors(8, 1.520, 240.0, 150.0, 500.0, 0.09),
            NodeFactors(10, 1.475, 240.0, 150.0, 500.0, 0.09),
            NodeFactors(14, 1.200, 200.0, 125.0, 500.0, 0.08),
            NodeFactors(20, 1.200, 190.0, 110.0, 500.0, 0.08),
            NodeFactors(28, 0.900, 175.0, 100.0, 500.0, 0.06),
        )
    }
)

YIELD_ALPHA = 3.0

# ACT's default fab location ("loc_taiwan", carbon_intensity/location.json): the leading-edge
# logic of every catalog device is fabbed by TSMC in Taiwan.
FAB_INTENSITY_TAIWAN_G_PER_KWH = 583.0


def act_node_for(process_node_nm: float) -> int:
    """The ACT node whose factors apply: the smallest ACT node at or above the marketed node.

    Marketing names sit inside a family: TSMC 4N/N4 is an N5 derivative, N6 an N7 derivative,
    12FFN a 16 nm derivative (ACT's nearest is 14 nm)."""
    if process_node_nm <= 0:
        raise ValueError(f"process node must be positive, got {process_node_nm}")
    for node in sorted(NODE_FACTORS):
        if process_node_nm <= node + 1e-9:
            return node
    return max(NODE_FACTORS)


def die_yield(*, area_mm2: float, d0_per_cm2: float, alpha: float = YIELD_ALPHA) -> float:
    """Negative-binomial die yield ``(1 + A·D0/α)^−α`` (A in cm²)."""
    if area_mm2 <= 0 or d0_per_cm2 < 0 or alpha <= 0:
        raise ValueError("area and alpha must be positive, D0 non-negative")
    # float ** float is typed Any (a negative base gives a complex); the base here is >= 1.
    yield_fraction: float = (1.0 + (area_mm2 / 100.0) * d0_per_cm2 / alpha) ** -alpha
    return yield_fraction


@dataclass(frozen=True)
class Harvest:
    """A die sold with some of its repeated units (SMs) disabled."""

    units_total: int
    units_enabled: int
    source: str
    # Share of the die area in the repeated units (the SM array); the rest (L2, memory and I/O
    # controllers, NVLink, PCIe) must be defect-free. Declared from annotated die shots.
    repairable_fraction: float = 0.55


REPAIRABLE_FRACTION_SOURCE = (
    "declared: the SM array is about half to two thirds of a GV100/GA100/GH100 die in annotated die shots "
    "(NVIDIA architecture whitepapers' block diagrams, third-party die-shot annotations); 0.55 used"
)


def harvested_yield(
    *,
    area_mm2: float,
    d0_per_cm2: float,
    units_total: int,
    units_enabled: int,
    repairable_fraction: float,
    alpha: float = YIELD_ALPHA,
) -> float:
    """Yield of a die sold with up to ``units_total − units_enabled`` defective units disabled:
    P(fixed area clean) × P(at most that many of the units hold a defect), each unit's defect
    probability from the same negative-binomial model over its own area."""
    if not (0 < units_enabled <= units_total) or not (0 < repairable_fraction <= 1):
        raise ValueError("need 0 < enabled <= total units and 0 < repairable fraction <= 1")
    fixed_mm2 = area_mm2 * (1.0 - repairable_fraction)
    fixed = die_yield(area_mm2=fixed_mm2, d0_per_cm2=d0_per_cm2, alpha=alpha) if fixed_mm2 > 0 else 1.0
    unit_ok = die_yield(area_mm2=area_mm2 * repairable_fraction / units_total, d0_per_cm2=d0_per_cm2, alpha=alpha)
    p_bad = 1.0 - unit_ok
    spare = units_total - units_enabled
    repaired = math.fsum(math.comb(units_total, i) * p_bad**i * unit_ok ** (units_total - i) for i in range(spare + 1))
    return fixed * repaired


_SM = "NVIDIA architecture whitepapers (full die vs product SM counts)"
# Full-die and enabled SM counts where NVIDIA publishes both. B200 and the AMD parts: no
# published full-die count here, so their dies keep the plain yield (and say so).
HARVEST: Mapping[str, Harvest] = MappingProxyType(
    {
        "v100-sxm2-32gb": Harvest(84, 80, f"{_SM}: GV100 84 SMs, Tesla V100 80"),
        "a100-sxm4-40gb": Harvest(128, 108, f"{_SM}: GA100 128 SMs, A100 108"),
        "a100-sxm4-80gb": Harvest(128, 108, f"{_SM}: GA100 128 SMs, A100 108"),
        "h100-sxm5-80gb": Harvest(144, 132, f"{_SM}: GH100 144 SMs, H100 SXM5 132"),
        "h100-pcie-80gb": Harvest(144, 114, f"{_SM}: GH100 144 SMs, H100 PCIe 114"),
        "h200-sxm-141gb": Harvest(144, 132, f"{_SM}: GH100 144 SMs, H200 132"),
        "l4-24gb": Harvest(60, 58, f"{_SM}: AD104 60 SMs, L4 58"),
        "l40s-48gb": Harvest(144, 142, f"{_SM}: AD102 144 SMs, L40S 142"),
        "t4-16gb": Harvest(48, 40, f"{_SM}: TU104 48 SMs, T4 40"),
    }
)


# --- scenarios (central / low / high parameter sets) ------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    fab_intensity_g_per_kwh: float
    gas_abatement: str  # "95", "99" or "97" (ACT's default: mean of the 95 % and 99 % tables)
    d0_multiplier: float
    hbm_kg_per_gb: float
    gddr_kg_per_gb: float
    dram_kg_per_gb: float
    ssd_kg_per_gb: float
    packaging_kg_per_ic: float
    board_kg_per_w: float


# HGX H100 PCF (NVIDIA, 2024/25, ISO 14067): 1,312 kgCO2e cradle-to-gate per 8-GPU baseboard;
# HBM 42 %, integrated circuits 25 %, thermals 18 %, assembly 8.6 %, transport 0.4 %.
HGX_H100_PCF_KG = 1312.0
HGX_H100_GPUS = 8
HGX_H100_HBM_GB = 8 * 80.0
# 0.42 × 1312 / 640 GB = 0.861 kg per usable GB: the only published HBM-specific figure.
HBM_KG_PER_GB_FROM_PCF = 0.42 * HGX_H100_PCF_KG / HGX_H100_HBM_GB
# Share of the PCF that is neither HBM nor ICs (thermals, board materials, assembly, transport),
# per GPU and per watt of the 700 W H100 SXM5: heat sinks and power delivery track board power.
BOARD_KG_PER_W_FROM_PCF = (1.0 - 0.42 - 0.25) * HGX_H100_PCF_KG / HGX_H100_GPUS / 700.0

# Host memory and storage per GB. Fab-only figures (ACT's DRAM 65 g/GB, NAND 10 g/GB) leave out
# wafer materials, test, packaging and module assembly and sit ~13x below the HBM figure above:
# they are floors, not central values. Dell's R740 LCA (server-level, as ACT quotes it) and
# Boavizta's die factor (boaviztapi docs, components ram.md and ssd.md) bracket them.
DELL_R740_DRAM_KG_PER_GB = 533.0 / 432.0
DELL_R740_SSD_KG_PER_GB = 3373.0 / 30720.0
BOAVIZTA_DIE_KG_PER_CM2 = 2.20
BOAVIZTA_RAM_GB_PER_CM2 = 0.625
BOAVIZTA_SSD_GB_PER_CM2 = 48.5

SCENARIO_SOURCES: Mapping[str, str] = MappingProxyType(
    {
        "fab_intensity_g_per_kwh": "ACT carbon_intensity/location.json: taiwan 583 g/kWh",
        "gas_abatement": "ACT Fab_Logic gpa='97' default (mean of 95 % and 99 % abatement tables)",
        "hbm_kg_per_gb": "NVIDIA HGX H100 PCF: HBM 42 % of 1,312 kg over 640 GB; low/high x0.5/x1.5 (declared)",
        "gddr_kg_per_gb": "ACT dram_hynix: ddr4_10nm 65 g/GB (low lpddr4 48, high ddr3_30nm 230)",
        "dram_kg_per_gb": "central 1.234 kg/GB = Dell PowerEdge R740 LCA, DRAM 533 kg / 432 GB (as quoted in "
        "ACT exps/dellr740); low 0.065 kg/GB = ACT dram_hynix ddr4_10nm (fab only: a floor); high 3.52 kg/GB = "
        "Boavizta RAM die factor 2.20 kgCO2e/cm2 at its default density 0.625 GB/cm2",
        "ssd_kg_per_gb": "central 0.0454 kg/GB = Boavizta SSD die factor 2.20 kgCO2e/cm2 at its default density "
        "48.5 GB/cm2 (its 6.34 kg per drive left out); low 0.010 kg/GB = ACT ssd_hynix nand_10nm (fab only); "
        "high 0.1098 kg/GB = Dell R740 LCA, SSD 3,373 kg / 30,720 GB (ACT exps/dellr740)",
        "packaging_kg_per_ic": "ACT exps/dellr740: packaging_intensity 150 g CO2 per IC",
        "board_kg_per_w": "NVIDIA HGX H100 PCF: non-HBM non-IC share (33 %) of 1,312 kg / 8 GPUs / 700 W; "
        "low/high x0.5/x1.5 (declared)",
    }
)

CENTRAL = Scenario(
    name="central",
    fab_intensity_g_per_kwh=FAB_INTENSITY_TAIWAN_G_PER_KWH,
    gas_abatement="97",
    d0_multiplier=1.0,
    hbm_kg_per_gb=HBM_KG_PER_GB_FROM_PCF,
    gddr_kg_per_gb=0.065,
    dram_kg_per_gb=DELL_R740_DRAM_KG_PER_GB,
    ssd_kg_per_gb=BOAVIZTA_DIE_KG_PER_CM2 / BOAVIZTA_SSD_GB_PER_CM2,
    packaging_kg_per_ic=0.150,
    board_kg_per_w=BOARD_KG_PER_W_FROM_PCF,
)
LOW = Scenario(
    name="low",
    fab_intensity_g_per_kwh=FAB_INTENSITY_TAIWAN_G_PER_KWH,
    gas_abatement="99",
    d0_multiplier=0.5,
    hbm_kg_per_gb=0.5 * HBM_KG_PER_GB_FROM_PCF,
    gddr_kg_per_gb=0.048,
    dram_kg_per_gb=0.065,
    ssd_kg_per_gb=0.010,
    packaging_kg_per_ic=0.150,
    board_kg_per_w=0.5 * BOARD_KG_PER_W_FROM_PCF,
)
HIGH = Scenario(
    name="high",
    fab_intensity_g_per_kwh=FAB_INTENSITY_TAIWAN_G_PER_KWH,
    gas_abatement="95",
    d0_multiplier=1.5,
    hbm_kg_per_gb=1.5 * HBM_KG_PER_GB_FROM_PCF,
    gddr_kg_per_gb=0.230,
    dram_kg_per_gb=BOAVIZTA_DIE_KG_PER_CM2 / BOAVIZTA_RAM_GB_PER_CM2,
    ssd_kg_per_gb=DELL_R740_SSD_KG_PER_GB,
    packaging_kg_per_ic=0.150,
    board_kg_per_w=1.5 * BOARD_KG_PER_W_FROM_PCF,
)
SCENARIOS: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in (LOW, CENTRAL, HIGH)})


def gas_g_per_cm2(node: NodeFactors, abatement: str) -> float:
    if abatement == "95":
        return node.gpa95_g_per_cm2
    if abatement == "99":
        return node.gpa99_g_per_cm2
    if abatement == "97":
        return (node.gpa95_g_per_cm2 + node.gpa99_g_per_cm2) / 2.0
    raise ValueError(f"gas abatement must be '95', '97' or '99', got {abatement!r}")


def carbon_per_area_g_per_cm2(*, process_node_nm: float, scenario: Scenario = CENTRAL) -> float:
    """Fab carbon per good-or-bad cm² of die (before yield): energy + gases + materials."""
    node = NODE_FACTORS[act_node_for(process_node_nm)]
    return (
        scenario.fab_intensity_g_per_kwh * node.epa_kwh_per_cm2
        + gas_g_per_cm2(node, scenario.gas_abatement)
        + node.mpa_g_per_cm2
    )


def die_yield_for(
    *, area_mm2: float, process_node_nm: float, scenario: Scenario = CENTRAL, harvest: Harvest | None = None
) -> float:
    """The yield a logic die is charged at: harvested where its unit counts are known, else plain."""
    d0 = NODE_FACTORS[act_node_for(process_node_nm)].d0_per_cm2 * scenario.d0_multiplier
    if harvest is None:
        return die_yield(area_mm2=area_mm2, d0_per_cm2=d0)
    return harvested_yield(
        area_mm2=area_mm2,
        d0_per_cm2=d0,
        units_total=harvest.units_total,
        units_enabled=harvest.units_enabled,
        repairable_fraction=harvest.repairable_fraction,
    )


def logic_die_kg(
    *, area_mm2: float, process_node_nm: float, scenario: Scenario = CENTRAL, harvest: Harvest | None = None
) -> float:
    """Embodied kgCO2e of one good logic die: fab carbon per area × area ÷ yield."""
    y = die_yield_for(area_mm2=area_mm2, process_node_nm=process_node_nm, scenario=scenario, harvest=harvest)
    return (
        (area_mm2 / 100.0) * carbon_per_area_g_per_cm2(process_node_nm=process_node_nm, scenario=scenario) / y / 1000.0
    )


# --- accelerators --------------------------------------------------------------------------


@dataclass(frozen=True)
class Die:
    area_mm2: float
    process_node_nm: float


@dataclass(frozen=True)
class AcceleratorBom:
    """What the estimate needs: logic dies, memory, packaged ICs, board power."""

    dies: tuple[Die, ...]
    memory_gb: float
    memory_kind: str  # "hbm" | "gddr"
    memory_ics: int  # packaged memory devices (HBM stacks / GDDR chips), for the packaging term
    max_power_w: float
    notes: str = ""
    harvest: Harvest | None = None  # applies to each logic die


@dataclass(frozen=True)
class EmbodiedBreakdown:
    """Per-term breakdown of one accelerator estimate (for the methodology page)."""

    dies_kg: float
    memory_kg: float
    packaging_kg: float
    board_kg: float
    yields: tuple[float, ...] = field(default_factory=tuple)

    @property
    def total_kg(self) -> float:
        return self.dies_kg + self.memory_kg + self.packaging_kg + self.board_kg


def accelerator_breakdown(bom: AcceleratorBom, *, scenario: Scenario = CENTRAL) -> EmbodiedBreakdown:
    yields = tuple(
        die_yield_for(area_mm2=d.area_mm2, process_node_nm=d.process_node_nm, scenario=scenario, harvest=bom.harvest)
        for d in bom.dies
    )
    if bom.memory_kind == "hbm":
        per_gb = scenario.hbm_kg_per_gb
    elif bom.memory_kind == "gddr":
        per_gb = scenario.gddr_kg_per_gb
    else:
        raise ValueError(f"memory_kind must be 'hbm' or 'gddr', got {bom.memory_kind!r}")
    return EmbodiedBreakdown(
        dies_kg=sum(
            logic_die_kg(area_mm2=d.area_mm2, process_node_nm=d.process_node_nm, scenario=scenario, harvest=bom.harvest)
            for d in bom.dies
        ),
        memory_kg=bom.memory_gb * per_gb,
        packaging_kg=(len(bom.dies) + bom.memory_ics) * scenario.packaging_kg_per_ic,
        board_kg=bom.max_power_w * scenario.board_kg_per_w,
        yields=yields,
    )


def accelerator_estimate_kg(bom: AcceleratorBom, *, scenario: Scenario = CENTRAL) -> float:
    return accelerator_breakdown(bom, scenario=scenario).total_kg


# Geometry the catalog does not carry: multi-die parts, memory type and memory package count.
# Memory IC counts are physical packages (H100/A100 carry one spare HBM site; counted, it is
# packaged). GDDR counts follow bus width / 2 GB parts (clamshell where capacity requires).
class _BomOverride(TypedDict, total=False):
    dies: tuple[Die, ...]
    memory_kind: str
    memory_ics: int
    notes: str


_BOM_OVERRIDES: Mapping[str, _BomOverride] = MappingProxyType(
    {
        "v100-sxm2-32gb": {"memory_kind": "hbm", "memory_ics": 4},
        "a100-sxm4-40gb": {"memory_kind": "hbm", "memory_ics": 6},
        "a100-sxm4-80gb": {"memory_kind": "hbm", "memory_ics": 6},
        "h100-sxm5-80gb": {"memory_kind": "hbm", "memory_ics": 6},
        "h100-pcie-80gb": {"memory_kind": "hbm", "memory_ics": 6},
        "h200-sxm-141gb": {"memory_kind": "hbm", "memory_ics": 6},
        "b200-sxm-180gb": {
            "memory_kind": "hbm",
            "memory_ics": 8,
            "dies": (Die(800.0, 4.0), Die(800.0, 4.0)),
            "notes": "two ~800 mm2 dies (catalog total 1600 mm2)",
        },
        "l4-24gb": {"memory_kind": "gddr", "memory_ics": 12},
        "l40s-48gb": {"memory_kind": "gddr", "memory_ics": 24},
        "t4-16gb": {"memory_kind": "gddr", "memory_ics": 8},
        "mi250x-128gb": {
            "memory_kind": "hbm",
            "memory_ics": 8,
            "dies": (Die(724.0, 6.0), Die(724.0, 6.0)),
            "notes": "two ~724 mm2 GCDs on N6 (catalog total 1448 mm2)",
        },
        "mi300x-192gb": {
            "memory_kind": "hbm",
            "memory_ics": 8,
            "dies": tuple([Die(115.0, 5.0)] * 8 + [Die(370.0, 6.0)] * 4),
            "notes": "8 XCD ~115 mm2 on N5 + 4 IOD ~370 mm2 on N6 (catalog total 2400 mm2)",
        },
    }
)


def bom_for(spec: DeviceSpec) -> AcceleratorBom:
    o = _BOM_OVERRIDES.get(spec.key, {})
    return AcceleratorBom(
        dies=o.get("dies", (Die(spec.die_area_mm2, spec.process_node_nm),)),
        memory_gb=spec.memory_gb,
        memory_kind=o.get("memory_kind", "hbm"),
        memory_ics=o.get("memory_ics", 0),
        max_power_w=spec.max_power_w,
        notes=o.get("notes", ""),
        harvest=HARVEST.get(spec.key),
    )


@dataclass(frozen=True)
class EmbodiedFigure:
    kg: float
    low_kg: float
    high_kg: float
    kind: str  # "lca" | "estimate"
    source: str
    version: str = EMBODIED_VERSION

    def __post_init__(self) -> None:
        if not (0 <= self.low_kg <= self.kg <= self.high_kg):
            raise ValueError(f"embodied range not ordered: {self.low_kg} <= {self.kg} <= {self.high_kg}")
        if self.kind not in ("lca", "estimate"):
            raise ValueError(f"kind must be 'lca' or 'estimate', got {self.kind!r}")


def act_estimate(spec: DeviceSpec) -> EmbodiedFigure:
    bom = bom_for(spec)
    central, low, high = (accelerator_estimate_kg(bom, scenario=s) for s in (CENTRAL, LOW, HIGH))
    detail = f"; {bom.notes}" if bom.notes else ""
    if bom.harvest is not None:
        h = bom.harvest
        detail += (
            f"; harvested yield: {h.units_enabled} of {h.units_total} SMs enabled ({h.source}), SM array "
            f"{h.repairable_fraction:g} of the die (declared)"
        )
    else:
        detail += "; plain yield (no published full-die unit count)"
    return EmbodiedFigure(
        kg=central,
        low_kg=min(low, central),
        high_kg=max(high, central),
        kind="estimate",
        source=(
            f"ACT-style estimate {EMBODIED_VERSION}: {len(bom.dies)} logic die(s), "
            f"{bom.memory_gb:g} GB {bom.memory_kind.upper()}, {len(bom.dies) + bom.memory_ics} packaged ICs, "
            f"board term at {bom.max_power_w:g} W; low/high = LOW/HIGH scenarios{detail}"
        ),
    )


# Published LCAs have no published uncertainty; the band we attach is declared.
LCA_BAND_FRACTION = 0.20

# HGX B200 PCF: 2,274 kgCO2e cradle-to-gate per 8-GPU board (NVIDIA, 2025). Cross-check: NVIDIA's
# blog on the two PCFs gives 0.66 vs 0.50 gCO2e per exaFLOP (FP16) at 2.3x the throughput,
# i.e. 1,312 × 2.3 × 0.50/0.66 ≈ 2,286 kg, consistent within rounding.
HGX_B200_PCF_KG = 2274.0

_PUBLISHED: Mapping[str, tuple[float, str]] = MappingProxyType(
    {
        "h100-sxm5-80gb": (
            HGX_H100_PCF_KG / HGX_H100_GPUS,
            "NVIDIA HGX H100 Product Carbon Footprint summary (ISO 14067, cradle-to-gate): 1,312 kgCO2e "
            "per 8-GPU baseboard; per-GPU share = 1,312 / 8 = 164 kg (includes 1/8 of NVSwitch, "
            "baseboard and thermals); low/high = ±20 % declared",
        ),
        "b200-sxm-180gb": (
            HGX_B200_PCF_KG / 8,
            "NVIDIA HGX B200 Product Carbon Footprint summary (cradle-to-gate): 2,274 kgCO2e per 8-GPU "
            "board; per-GPU share = 284.25 kg; low/high = ±20 % declared",
        ),
    }
)


def _lca(kg: float, source: str) -> EmbodiedFigure:
    return EmbodiedFigure(
        kg=kg, low_kg=kg * (1 - LCA_BAND_FRACTION), high_kg=kg * (1 + LCA_BAND_FRACTION), kind="lca", source=source
    )


EMBODIED: Mapping[str, EmbodiedFigure] = MappingProxyType(
    {key: (_lca(*_PUBLISHED[key]) if key in _PUBLISHED else act_estimate(spec)) for key, spec in CATALOG.items()}
)

# --- host components -----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuProfile:
    key: str
    name: str
    dies: tuple[Die, ...]
    source: str


CPU_PROFILES: Mapping[str, CpuProfile] = MappingProxyType(
    {
        p.key: p
        for p in (
            CpuProfile(
                "epyc-genoa-96c",
                "AMD EPYC 9004 (Genoa) 96-core",
                tuple([Die(72.0, 5.0)] * 12 + [Die(397.0, 6.0)]),
                "12 CCD ~72 mm2 (N5) + IOD ~397 mm2 (N6), third-party die measurements (approx.)",
            ),
            CpuProfile(
                "epyc-rome-64c",
                "AMD EPYC 7002 (Rome) 64-core",
                tuple([Die(74.0, 7.0)] * 8 + [Die(416.0, 12.0)]),
                "8 CCD ~74 mm2 (N7) + IOD ~416 mm2 (GF 12 nm), AMD ISSCC 2020 (approx.)",
            ),
            CpuProfile(
                "xeon-spr-56c",
                "Intel Xeon 4th gen (Sapphire Rapids XCC) 56-core",
                tuple([Die(400.0, 10.0)] * 4),
                "4 tiles ~400 mm2 on Intel 7 (10 nm class), third-party die measurements (approx.)",
            ),
        )
    }
)
DEFAULT_CPU_PROFILE = "epyc-genoa-96c"


def cpu_kg(profile: CpuProfile, *, scenario: Scenario = CENTRAL) -> float:
    dies_kg = sum(
        logic_die_kg(area_mm2=d.area_mm2, process_node_nm=d.process_node_nm, scenario=scenario) for d in profile.dies
    )
    return dies_kg + len(profile.dies) * scenario.packaging_kg_per_ic


def dram_kg(*, capacity_gb: float, scenario: Scenario = CENTRAL) -> float:
    return capacity_gb * scenario.dram_kg_per_gb


def ssd_kg(*, capacity_gb: float, scenario: Scenario = CENTRAL) -> float:
    return capacity_gb * scenario.ssd_kg_per_gb


# Boavizta (boaviztapi data/factors.yml, GWP manufacture): rack case 150 kg, motherboard 66.1 kg,
# assembly 6.68 kg, power supply 24.3 kg per kg of PSU at Boavizta's default 2.99 kg per unit.
BOAVIZTA_RACK_CASE_KG = 150.0
BOAVIZTA_MOTHERBOARD_KG = 66.10
BOAVIZTA_ASSEMBLY_KG = 6.68
BOAVIZTA_PSU_KG_PER_UNIT = 24.30 * 2.99
# GPU servers carry more supplies than the 2 of a general-purpose 1U/2U box: HGX-class 8-GPU
# systems ship 4-6 (DGX H100: 6). Central 4, low 2, high 6.
PSU_COUNT = {"low": 2, "central": 4, "high": 6}
CHASSIS_SOURCE = (
    "Boavizta boaviztapi factors.yml (GWP manufacture): rack case 150 + motherboard 66.1 + assembly 6.68 "
    "+ n x PSU (24.3 kg/kg x 2.99 kg); n = 4 central (2 low, 6 high) for a GPU server"
)


def chassis_kg(*, psu_count: int) -> float:
    return BOAVIZTA_RACK_CASE_KG + BOAVIZTA_MOTHERBOARD_KG + BOAVIZTA_ASSEMBLY_KG + psu_count * BOAVIZTA_PSU_KG_PER_UNIT


def _figure(low: float, central: float, high: float, source: str) -> EmbodiedFigure:
    return EmbodiedFigure(
        kg=central, low_kg=min(low, central), high_kg=max(high, central), kind="estimate", source=source
    )


def cpu_figure(profile_key: str = DEFAULT_CPU_PROFILE) -> EmbodiedFigure:
    p = CPU_PROFILES[profile_key]
    low, central, high = (cpu_kg(p, scenario=s) for s in (LOW, CENTRAL, HIGH))
    return _figure(low, central, high, f"ACT-style estimate {EMBODIED_VERSION}: {p.name}; {p.source}")


def host_embodied(
    *, cpu_count: int, dram_gb: float, ssd_gb: float, cpu_profile: str = DEFAULT_CPU_PROFILE
) -> EmbodiedFigure:
    """Whole host minus accelerators: CPUs + DRAM + SSD + chassis/mainboard/PSUs."""
    if cpu_count < 0 or dram_gb < 0 or ssd_gb < 0:
        raise ValueError("host component counts and capacities must be non-negative")
    p = CPU_PROFILES[cpu_profile]
    band = {}
    for s in (LOW, CENTRAL, HIGH):
        band[s.name] = (
            cpu_count * cpu_kg(p, scenario=s)
            + dram_kg(capacity_gb=dram_gb, scenario=s)
            + ssd_kg(capacity_gb=ssd_gb, scenario=s)
            + chassis_kg(psu_count=PSU_COUNT[s.name])
        )
    return _figure(
        band["low"],
        band["central"],
        band["high"],
        f"host estimate {EMBODIED_VERSION}: {cpu_count} x {p.name}, {dram_gb:g} GB DRAM, {ssd_gb:g} GB SSD, chassis "
        f"({CHASSIS_SOURCE})",
    )


# Host components as catalog rows (HardwareModel kind cpu/dram/ssd/chassis). DRAM and SSD are
# per GB (HardwareModel.Kind labels say so).
HOST_EMBODIED: Mapping[str, tuple[str, str, EmbodiedFigure]] = MappingProxyType(
    {
        **{f"cpu-{k}": ("cpu", p.name, cpu_figure(k)) for k, p in CPU_PROFILES.items()},
        "dram-per-gb": (
            "dram",
            "Server DRAM (per GB)",
            _figure(
                LOW.dram_kg_per_gb, CENTRAL.dram_kg_per_gb, HIGH.dram_kg_per_gb, SCENARIO_SOURCES["dram_kg_per_gb"]
            ),
        ),
        "ssd-per-gb": (
            "ssd",
            "Server SSD (per GB)",
            _figure(LOW.ssd_kg_per_gb, CENTRAL.ssd_kg_per_gb, HIGH.ssd_kg_per_gb, SCENARIO_SOURCES["ssd_kg_per_gb"]),
        ),
        "chassis-gpu-server": (
            "chassis",
            "GPU server chassis, mainboard and PSUs",
            _figure(
                chassis_kg(psu_count=PSU_COUNT["low"]),
                chassis_kg(psu_count=PSU_COUNT["central"]),
                chassis_kg(psu_count=PSU_COUNT["high"]),
                CHASSIS_SOURCE,
            ),
        ),
    }
)

# --- lifetime and expected utilisation -----------------------------------------------------


@dataclass(frozen=True)
class LifetimePolicy:
    lifetime_years: float
    expected_utilisation: float
    source: str


LIFETIME_RATIONALE = (
    "5 years: hyperscaler server depreciation lives moved to 5-6 years in 2022-2023 (Alphabet, "
    "Microsoft, Meta annual reports) and LLMCarbon (Faiz et al., ICLR 2024) amortises over 5 years. "
    "0.8 expected utilisation for accelerators: a scheduled GPU cluster keeps devices allocated "
    "most hours but not all (maintenance, drain, fragmentation); amortising over expected rather "
    "than total hours charges the idle remainder to the jobs that ran."
)

DEFAULT_LIFETIME: Mapping[str, LifetimePolicy] = MappingProxyType(
    {
        "gpu": LifetimePolicy(5.0, 0.8, LIFETIME_RATIONALE),
        # Host parts live as long as the GPU server they sit in, and are used when its GPUs are.
        "cpu": LifetimePolicy(5.0, 0.8, LIFETIME_RATIONALE),
        "dram": LifetimePolicy(5.0, 0.8, LIFETIME_RATIONALE),
        "ssd": LifetimePolicy(5.0, 0.8, LIFETIME_RATIONALE),
        "chassis": LifetimePolicy(5.0, 0.8, LIFETIME_RATIONALE),
    }
)

from accounting.domain.units import G_PER_KG, HOURS_PER_YEAR  # noqa: E402 - one home for units


def _check_policy(lifetime_years: float, expected_utilisation: float, where: str) -> None:
    if not (isinstance(lifetime_years, int | float) and math.isfinite(lifetime_years) and lifetime_years > 0):
        raise ValueError(f"{where}: lifetime_years must be a positive number, got {lifetime_years!r}")
    if not (
        isinstance(expected_utilisation, int | float)
        and math.isfinite(expected_utilisation)
        and 0 < expected_utilisation <= 1
    ):
        raise ValueError(f"{where}: expected_utilisation must be in (0, 1], got {expected_utilisation!r}")


def resolve_lifetime(
    *,
    key: str,
    catalog_lifetime_years: float,
    catalog_expected_utilisation: float,
    site_overrides: Mapping[str, Mapping[str, float]] | None = None,
    device_lifetime_years: float | None = None,
) -> LifetimePolicy:
    """Lifetime and utilisation for one device: device override > site override > catalog.

    ``site_overrides`` is ``Site.hardware_overrides``: ``{"<key>": {"lifetime_years": 4,
    "expected_utilisation": 0.6}}``; either field may be absent. Unknown fields are rejected so
    a typo cannot silently fall back to the catalog."""
    lifetime, util = float(catalog_lifetime_years), float(catalog_expected_utilisation)
    parts = ["catalog"]
    overrides = site_overrides or {}
    # An override written under a renamed catalog key (catalog.KEY_ALIASES) still applies; the
    # current key wins when both are present.
    override = next((overrides[k] for k in (key, *key_aliases(key)) if k in overrides), None)
    if override is not None:
        if not isinstance(override, Mapping):
            raise ValueError(f"site override for {key!r} must be an object, got {override!r}")
        unknown = set(override) - {"lifetime_years", "expected_utilisation"}
        if unknown:
            raise ValueError(f"site override for {key!r} has unknown fields {sorted(unknown)}")
        if "lifetime_years" in override:
            lifetime = override["lifetime_years"]
            parts.append("site lifetime_years")
        if "expected_utilisation" in override:
            util = override["expected_utilisation"]
            parts.append("site expected_utilisation")
    if device_lifetime_years is not None:
        lifetime = device_lifetime_years
        parts.append("device lifetime_years")
    _check_policy(lifetime, util, key)
    return LifetimePolicy(float(lifetime), float(util), " > ".join(parts))


def validate_hardware_overrides(overrides: object) -> None:
    """Raise ValueError unless ``overrides`` is a well-formed Site.hardware_overrides value."""
    if not isinstance(overrides, Mapping):
        raise ValueError("hardware_overrides must be an object keyed by hardware key")
    for key in overrides:
        resolve_lifetime(
            key=key, catalog_lifetime_years=5.0, catalog_expected_utilisation=0.8, site_overrides=overrides
        )


def embodied_charge_g_per_h(*, embodied_g: float, lifetime_h: float, expected_utilisation: float) -> float:
    """Embodied carbon charged per device-hour held (gCO2e/h): the one amortisation rule.

    SCI time share (ISO/IEC 21031:2024, DESIGN.md §3): ``embodied / (lifetime hours × expected
    utilisation)``. Dividing by the expected utilisation charges the idle part of a device's
    life to the hours it is held, so the whole footprint is recovered over the lifetime. The
    ledger's per-second rate, the catalog share, the what-if policies and the dashboard's
    device table all call this."""
    return embodied_g / (lifetime_h * expected_utilisation)


def embodied_share_kg(*, embodied_kg: float, held_h: float, policy: LifetimePolicy) -> float:
    """SCI time share: held hours × embodied ÷ (lifetime hours × expected utilisation)."""
    if held_h < 0:
        raise ValueError("held hours must be non-negative")
    charge_g_per_h = embodied_charge_g_per_h(
        embodied_g=embodied_kg * G_PER_KG,
        lifetime_h=policy.lifetime_years * HOURS_PER_YEAR,
        expected_utilisation=policy.expected_utilisation,
    )
    return held_h * charge_g_per_h / G_PER_KG
