from __future__ import annotations

from pathlib import Path

from telemetry.agent.host import (
    CpuLoad,
    HostPower,
    RaplReader,
    codecarbon_cpu_table_path,
    lookup_cpu_tdp_w,
    parse_ipmi_dcmi,
)


def zone(root: Path, name: str, kind: str, energy_uj: int, max_uj: int = 262_143_328_850) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(kind + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_energy(d: Path, value: int) -> None:
    (d / "energy_uj").write_text(f"{value}\n")


def test_rapl_counts_packages_and_dram_once_and_wraps(tmp_path):
    root = tmp_path / "powercap"
    pkg0 = zone(root, "intel-rapl:0", "package-0", 1_000_000, max_uj=10_000_000)
    core0 = zone(root, "intel-rapl:0:0", "core", 500_000)
    dram0 = zone(root, "intel-rapl:0:1", "dram", 2_000_000, max_uj=5_000_000)
    pkg1 = zone(root, "intel-rapl:1", "package-1", 3_000_000)
    psys = zone(root, "intel-rapl:2", "psys", 9_000_000)
    mmio = zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    # The same dram zone reachable again through the nested control-type tree (a symlink in sysfs).
    (root / "intel-rapl").mkdir()
    (root / "intel-rapl" / "intel-rapl:0:1").symlink_to(dram0)

    r = RaplReader(root)
    assert r.discover() is True
    assert sorted((z.zone_id, z.kind) for z in r.zones) == [
        ("intel-rapl:0", "cpu"),
        ("intel-rapl:0:1", "dram"),
        ("intel-rapl:1", "cpu"),
    ]

    set_energy(pkg0, 9_500_000)  # +8.5 J
    set_energy(pkg1, 4_000_000)  # +1 J
    set_energy(dram0, 4_900_000)  # +2.9 J
    for d, v in ((core0, 900_000), (psys, 20_000_000), (mmio, 9_000_000)):
        set_energy(d, v)  # ignored zones move too
    assert r.read_delta_j() == (9.5, 2.9)

    set_energy(pkg0, 500_000)  # wrapped at 10 J: 0.5 J to the top + 0.5 J after
    set_energy(pkg1, 4_250_000)
    set_energy(dram0, 100_000)  # wrapped at 5 J: 0.1 + 0.1
    cpu, dram = r.read_delta_j()
    assert round(cpu, 6) == 1.25
    assert round(dram, 6) == 0.2


def test_rapl_missing_or_psys_only_is_not_enough(tmp_path):
    assert RaplReader(tmp_path / "absent").discover() is False
    zone(tmp_path / "pc", "intel-rapl:0", "psys", 1)
    assert RaplReader(tmp_path / "pc").discover() is False


def test_host_power_prefers_rapl(tmp_path):
    root = tmp_path / "powercap"
    pkg = zone(root, "intel-rapl:0", "package-0", 0)
    hp = HostPower(powercap_root=root)
    assert hp.source == "rapl"
    set_energy(pkg, 3_000_000)
    reading = hp.read()
    assert (reading.cpu_energy_j, reading.dram_energy_j, reading.quality) == (3.0, 0.0, "measured")


def test_host_power_model_from_tdp_table_and_proc_stat(tmp_path, clock):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\n")
    (proc / "meminfo").write_text("MemTotal:       16000000 kB\n")
    (proc / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    hp = HostPower(powercap_root=tmp_path / "none", proc_root=str(proc), clock=clock)
    assert hp.source == "model"
    assert hp.model.tdp_w == 150.0  # codecarbon's table: Xeon Gold 6248
    # 16 GB x 0.375 W/GB
    assert round(hp.model.dram_w, 6) == 6.144
    (proc / "stat").write_text("cpu  250 0 250 1000 0 0 0 0 0 0\n")  # busy 300 of 500 jiffies
    clock.advance(2.0)
    reading = hp.read()
    assert reading.quality == "modelled"
    assert round(reading.cpu_util_pct, 6) == 60.0
    assert round(reading.cpu_energy_j, 6) == 180.0  # 150 W x 0.6 x 2 s
    assert round(reading.dram_energy_j, 6) == 12.288


def test_host_power_model_configured_tdp_when_unknown_cpu(tmp_path, clock):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("model name\t: Mystery CPU 9000\n")
    (proc / "stat").write_text("cpu  0 0 0 100 0 0 0 0\n")
    hp = HostPower(powercap_root=tmp_path / "none", proc_root=str(proc), default_cpu_tdp_w=95.0, clock=clock)
    assert hp.model.tdp_w == 95.0
    hp2 = HostPower(powercap_root=tmp_path / "none", proc_root=str(proc), cpu_tdp_w=270.0, clock=clock)
    assert hp2.model.tdp_w == 270.0


def test_tdp_lookup_prefers_longest_match():
    table = codecarbon_cpu_table_path()
    assert table is not None and table.name == "cpu_power.csv"
    assert lookup_cpu_tdp_w("AMD EPYC 7763 64-Core Processor", table) == 280.0
    assert lookup_cpu_tdp_w("Intel(R) Xeon(R) Processor", table) is None


def test_cpu_load_from_proc_stat(tmp_path):
    (tmp_path / "stat").write_text("cpu  10 0 10 80 0 0 0 0\n")
    load = CpuLoad(str(tmp_path))
    (tmp_path / "stat").write_text("cpu  40 0 10 100 10 0 0 0\n")  # busy +30 of +60 (iowait counts idle)
    assert load.fraction() == 0.5


def test_parse_ipmi_dcmi():
    out = """
    Instantaneous power reading:                   412 Watts
    Minimum during sampling period:                 90 Watts
    Maximum during sampling period:                640 Watts
    Power reading state is:                   activated
    """
    assert parse_ipmi_dcmi(out) == 412.0
    assert parse_ipmi_dcmi("Error: no DCMI") is None
