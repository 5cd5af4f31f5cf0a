"""AMD Instinct through AMD SMI's bindings, driven by a fake that raises the library's classes."""

from __future__ import annotations

import pytest

from telemetry.agent.agent import Agent, make_reader
from telemetry.agent.amd import AmdSmiReader
from telemetry.agent.config import AgentConfig
from telemetry.agent.window import WindowBuilder
from tests.agent.fake_amdsmi import (
    AMDSMI_STATUS_DRIVER_NOT_LOADED,
    AMDSMI_STATUS_NOT_INIT,
    AmdSmiLibraryException,
    AmdSmiParameterException,
    FakeAmdSmi,
)

MI300X = {"name": "AMD Instinct MI300X", "uuid": "3dff74b5-0000-1000-80ff-d2e3e8d6b7e5", "power_w": 600.0}


def _mj(fake: FakeAmdSmi, energy_uj: float) -> int:
    """The counter value the reader reports for ``energy_uj``: whole counts, then whole mJ."""
    counts = int(energy_uj / fake.COUNTER_RESOLUTION_UJ)
    return int(counts * fake.COUNTER_RESOLUTION_UJ / 1000.0)


def test_mi300x_energy_counter_power_and_process_utilisation(clock):
    spec = {**MI300X, "gfx_pct": 71, "umc_pct": 33, "vram_used_mb": 81920, "processes": {4242: 60.0, 4343: 15.0}}
    amd = FakeAmdSmi([spec], clock=clock)
    reader = AmdSmiReader(amd, clock=clock)
    reader.open()
    (device,) = reader.devices
    assert (device.uuid, device.name, device.power_limit_w, device.has_counter) == (
        MI300X["uuid"],
        "AMD Instinct MI300X",
        750.0,
        True,
    )
    assert (device.compute_partition, device.memory_partition, reader.driver_version) == ("SPX", "NPS1", "6.10.5")

    builder = WindowBuilder()
    first = reader.sample()
    builder.add_tick(wall_s=0.0, gpus=first, host=None, jobs={})
    assert first[0].processes == {4242: None, 4343: None}  # first sight: no interval yet
    clock.advance(10.0)
    (second,) = reader.sample()
    builder.add_tick(wall_s=10.0, gpus=[second], host=None, jobs={})
    assert second.processes == {4242: pytest.approx(60.0, abs=1e-6), 4343: pytest.approx(15.0, abs=1e-6)}
    assert (second.power_w, second.util_pct, second.mem_util_pct, second.mem_used_mib) == (600.0, 71.0, 33.0, 81920.0)

    (gpu,) = builder.close(end_wall_s=10.0)["gpus"]
    e0 = _mj(amd, 5.0e12)
    e1 = _mj(amd, 5.0e12 + 600.0 * 10.0 * 1e6)
    assert (gpu["counter_mj"], gpu["energy_j"], gpu["quality"]) == (e1, round((e1 - e0) / 1000.0, 3), "measured")
    assert gpu["energy_j"] == pytest.approx(6000.0, abs=0.02)
    assert gpu["name"] == "AMD Instinct MI300X"


def test_no_energy_counter_falls_back_to_integrated_power(clock):
    amd = FakeAmdSmi([{**MI300X, "power_w": 500.0, "unsupported": ("energy", "processes", "partition")}], clock=clock)
    reader = AmdSmiReader(amd, clock=clock)
    reader.open()
    (device,) = reader.devices
    assert (device.has_counter, device.compute_partition) == (False, None)
    builder = WindowBuilder()
    for i in range(3):
        builder.add_tick(wall_s=5.0 * i, gpus=reader.sample(), host=None, jobs={})
        clock.advance(5.0)
    (gpu,) = builder.close(end_wall_s=10.0)["gpus"]
    assert (gpu["energy_j"], gpu["quality"], gpu["counter_mj"], gpu["processes"]) == (5000.0, "integrated", None, [])


def test_cpx_partitions_are_devices_of_their_own(clock):
    specs = [
        {**MI300X, "uuid": f"part-{i}", "compute_partition": "CPX", "memory_partition": "NPS4", "asic_serial": "0xA1"}
        for i in range(2)
    ]
    reader = AmdSmiReader(FakeAmdSmi(specs, clock=clock), clock=clock)
    reader.open()
    assert [(d.index, d.uuid, d.compute_partition, d.memory_partition, d.asic_serial) for d in reader.devices] == [
        (0, "part-0", "CPX", "NPS4", "0xA1"),
        (1, "part-1", "CPX", "NPS4", "0xA1"),
    ]


def test_fake_raises_the_librarys_exception_classes(clock):
    broken = FakeAmdSmi([MI300X], clock=clock, init_error=AMDSMI_STATUS_DRIVER_NOT_LOADED)
    with pytest.raises(AmdSmiLibraryException) as caught:
        AmdSmiReader(broken, clock=clock).open()
    assert caught.value.err_code == AMDSMI_STATUS_DRIVER_NOT_LOADED
    assert str(caught.value) == "Error code:\n\t34 | AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded"
    fresh = FakeAmdSmi([MI300X], clock=clock)
    with pytest.raises(AmdSmiLibraryException) as not_init:
        fresh.amdsmi_get_processor_handles()
    assert not_init.value.err_code == AMDSMI_STATUS_NOT_INIT
    fresh.amdsmi_init()
    with pytest.raises(AmdSmiParameterException):
        fresh.amdsmi_get_energy_count("not a handle")


def test_agent_backend_amdsmi_uses_the_amd_reader(tmp_path, clock):
    config = AgentConfig(
        hostname="mi300-node", backend="amdsmi", spool_dir=str(tmp_path / "spool"), tick_s=1.0, window_s=10.0
    )
    amd = FakeAmdSmi([MI300X], clock=clock)
    assert isinstance(make_reader(config, amd), AmdSmiReader)
    agent = Agent(config, nvml=amd, host_power=None, clock=clock, wall_clock=clock)
    assert isinstance(agent.reader, AmdSmiReader)


def test_run_and_probe_without_amd_smi_exit_2_with_message(tmp_path, capsys):
    from telemetry.agent.cli import main

    try:
        import amdsmi  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("AMD SMI's bindings are installed here")
    for command in ("probe", "run"):
        rc = main([command, "--backend", "amdsmi", "--spool-dir", str(tmp_path / command)])
        assert rc == 2
        assert "AMD SMI is not available (backend=amdsmi needs AMD SMI's Python bindings" in capsys.readouterr().err


def test_an_amd_host_without_its_driver_exits_2_with_message(tmp_path, capsys, clock, monkeypatch):
    from telemetry.agent import agent as agent_module
    from telemetry.agent.cli import main

    broken = FakeAmdSmi([MI300X], clock=clock, init_error=AMDSMI_STATUS_DRIVER_NOT_LOADED)
    monkeypatch.setattr(agent_module, "load_nvml", lambda config: broken)
    rc = main(["probe", "--backend", "amdsmi", "--spool-dir", str(tmp_path)])
    assert rc == 2
    assert "AMD SMI is not available (AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded)" in capsys.readouterr().err


def test_an_mi300a_apu_counter_covers_its_cpu_and_memory(clock):
    amd = FakeAmdSmi([{**MI300X, "name": "AMD Instinct MI300A"}, MI300X], clock=clock)
    reader = AmdSmiReader(amd, clock=clock)
    reader.open()
    apu, gpu = reader.sample()
    assert (apu.energy_covers, gpu.energy_covers) == ("gpu+cpu+memory", "gpu")
