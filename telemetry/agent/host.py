"""Host power: CPU package and DRAM from RAPL, else a TDP x load model; optional wall/BMC power."""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import ssl

# csv/importlib.util (TDP table), subprocess/shlex (IPMI), base64/ssl/urllib/json (Redfish) are
# imported where used: a host with RAPL or a configured TDP and no BMC never loads them.

from telemetry.agent.energy import rapl_delta_uj
from telemetry.agent.log import kv

logger = logging.getLogger("carbonledger.agent.host")

_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


class RaplZone:
    __slots__ = ("energy_path", "kind", "last_uj", "max_range_uj", "zone_id")

    def __init__(
        self, zone_id: str, kind: str, energy_path: Path, max_range_uj: int, last_uj: int | None = None
    ) -> None:
        self.zone_id = zone_id
        self.kind = kind  # "cpu" | "dram"
        self.energy_path = energy_path
        self.max_range_uj = max_range_uj
        self.last_uj = last_uj


class RaplReader:
    """Reads RAPL zones under a powercap root (``/sys/class/powercap`` by default).

    Counted: top-level ``package-N`` zones as CPU; ``dram`` zones as DRAM, whether they sit
    top-level (some server BIOSes) or as a package subzone. Not counted: ``psys`` (the whole
    SoC/platform, which already contains package and DRAM), ``core``/``uncore`` subzones (inside
    the package), and the ``intel-rapl-mmio`` mirror of the package. A zone reachable by two
    paths (flat link and nested directory) is counted once, by its resolved energy file.
    """

    def __init__(self, root: str | os.PathLike[str] = "/sys/class/powercap") -> None:
        self.root = Path(root)
        self.zones: list[RaplZone] = []

    def discover(self) -> bool:
        """True when at least one CPU package zone is readable."""
        self.zones = []
        seen: set[str] = set()
        if not self.root.is_dir():
            return False
        candidates: list[Path] = []
        for entry in sorted(self.root.iterdir()):
            if _ZONE_RE.match(entry.name):
                candidates.append(entry)
            elif entry.name == "intel-rapl" and entry.is_dir():
                # Control-type directory: zones nested below (seen when only the tree is mounted).
                for sub in sorted(entry.rglob("intel-rapl:*")):
                    if _ZONE_RE.match(sub.name):
                        candidates.append(sub)
        for path in candidates:
            energy = path / "energy_uj"
            try:
                key = str(energy.resolve())
                name = (path / "name").read_text().strip().lower()
                max_range = int((path / "max_energy_range_uj").read_text().strip())
                current = int(energy.read_text().strip())
            except (OSError, ValueError) as exc:
                if isinstance(exc, PermissionError):
                    kv(logger, logging.WARNING, "rapl_unreadable", zone=path.name, error="permission denied")
                continue
            if key in seen:
                continue
            seen.add(key)
            if name.startswith("package") and _ZONE_RE.match(path.name).group(2) is None:  # type: ignore[union-attr]
                kind = "cpu"
            elif name == "dram":
                kind = "dram"
            else:
                continue  # psys, core, uncore: contained in what is counted
            self.zones.append(RaplZone(path.name, kind, energy, max_range, current))
        return any(z.kind == "cpu" for z in self.zones)

    def read_delta_j(self) -> tuple[float, float]:
        """(cpu_j, dram_j) since the previous call."""
        cpu = dram = 0.0
        for zone in self.zones:
            current = int(zone.energy_path.read_text().strip())
            if zone.last_uj is not None:
                delta = rapl_delta_uj(zone.last_uj, current, max_energy_range_uj=zone.max_range_uj) / 1e6
                if zone.kind == "cpu":
                    cpu += delta
                else:
                    dram += delta
            zone.last_uj = current
        return cpu, dram


def codecarbon_cpu_table_path() -> Path | None:
    """codecarbon's cpu_power.csv, located without importing codecarbon (it pulls in pandas)."""
    import importlib.util

    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "hardware" / "cpu_power.csv"
        if path.is_file():
            return path
    return None


def _tokens(text: str) -> list[str]:
    return re.sub(r"\(r\)|\(tm\)|\bcpu\b|@.*$|\bprocessor\b", " ", text.lower()).split()


def lookup_cpu_tdp_w(cpu_model: str, table: Path | None) -> float | None:
    """TDP for a CPU model string from codecarbon's table: longest table name whose tokens appear
    contiguously in the model string ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz" -> "Xeon Gold 6248")."""
    if table is None or not cpu_model:
        return None
    import csv

    model = " " + " ".join(_tokens(cpu_model)) + " "
    best: tuple[int, float] | None = None
    with table.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            name, tdp = (row.get("Name") or "").strip(), (row.get("TDP") or "").strip()
            if not name or not tdp:
                continue
            needle = " " + " ".join(_tokens(name)) + " "
            if needle.strip() and needle in model and (best is None or len(needle) > best[0]):
                try:
                    best = (len(needle), float(tdp))
                except ValueError:
                    continue
    return None if best is None else best[1]


def read_cpu_model(proc_root: str = "/proc") -> str:
    try:
        for line in Path(proc_root, "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def read_mem_total_gb(proc_root: str = "/proc") -> float:
    try:
        for line in Path(proc_root, "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class CpuLoad:
    """Whole-host CPU busy fraction since the previous call (psutil if present, else /proc/stat)."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._prev: tuple[int, int] | None = None
        self._psutil = None
        if proc_root == "/proc":
            try:
                import psutil

                self._psutil = psutil
                psutil.cpu_percent(interval=None)
            except ImportError:
                self._psutil = None
        if self._psutil is None:
            self._prev = self._read_stat()

    def _read_stat(self) -> tuple[int, int] | None:
        try:
            with open(os.path.join(self.proc_root, "stat")) as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        total = sum(fields[:8])  # guest time is already inside user/nice
        return idle, total

    def fraction(self) -> float:
        if self._psutil is not None:
            return self._psutil.cpu_percent(interval=None) / 100.0
        cur = self._read_stat()
        prev, self._prev = self._prev, cur
        if cur is None or prev is None or cur[1] <= prev[1]:
            return 0.0
        return max(0.0, min(1.0, 1.0 - (cur[0] - prev[0]) / (cur[1] - prev[1])))


class CpuModel:
    """CPU power = TDP x load; DRAM power = declared W/GB x installed GB. Quality 'modelled'."""

    def __init__(self, *, tdp_w: float, dram_w: float, load: CpuLoad) -> None:
        self.tdp_w = tdp_w
        self.dram_w = dram_w
        self.load = load

    def power_w(self) -> tuple[float, float, float]:
        """(cpu_w, dram_w, load_fraction) averaged since the previous call."""
        fraction = self.load.fraction()
        return self.tdp_w * fraction, self.dram_w, fraction


def parse_ipmi_dcmi(output: str) -> float | None:
    """Watts from ``ipmitool dcmi power reading`` ("Instantaneous power reading:   220 Watts")."""
    for line in output.splitlines():
        m = re.match(r"\s*Instantaneous power reading\s*:\s*([0-9.]+)\s*Watts", line, re.IGNORECASE)
        if m:
            return float(m.group(1))
    return None


class IpmiWall:
    def __init__(self, command: str, timeout_s: float = 5.0) -> None:
        import shlex

        self.argv = shlex.split(command)
        self.timeout_s = timeout_s

    def power_w(self) -> float | None:
        import subprocess

        try:
            result = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            kv(logger, logging.WARNING, "wall_read_failed", source="ipmi", error=str(exc))
            return None
        watts = parse_ipmi_dcmi(result.stdout)
        if watts is None:
            kv(
                logger,
                logging.WARNING,
                "wall_read_failed",
                source="ipmi",
                rc=result.returncode,
                stderr=result.stderr.strip()[:200],
            )
        return watts


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    import ssl as ssl_mod

    return ssl_mod.create_default_context(cafile=ca_file or None)


class RedfishWall:
    """GET <redfish_url> (a Chassis Power resource) -> PowerControl[0].PowerConsumedWatts."""

    def __init__(self, url: str, user: str = "", password: str = "", timeout_s: float = 5.0, ca_file: str = "") -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"redfish_url: must be http(s), got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.headers = {"Accept": "application/json"}
        if user:
            import base64

            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.context = _ssl_context(ca_file) if url.startswith("https") else None

    def power_w(self) -> float | None:
        import json
        import urllib.request

        request = urllib.request.Request(self.url, headers=self.headers)  # noqa: S310 (scheme checked in __init__)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.context) as resp:  # noqa: S310
                body = json.loads(resp.read())
            return float(body["PowerControl"][0]["PowerConsumedWatts"])
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            kv(logger, logging.WARNING, "wall_read_failed", source="redfish", error=str(exc))
            return None


class HostReading(NamedTuple):
    cpu_energy_j: float
    dram_energy_j: float
    cpu_util_pct: float
    wall_power_w: float | None
    quality: str  # "measured" (RAPL) | "modelled"


class HostPower:
    """Per tick: CPU/DRAM energy since the previous tick and the wall power, if configured."""

    def __init__(
        self,
        *,
        powercap_root: str = "/sys/class/powercap",
        proc_root: str = "/proc",
        cpu_tdp_w: float | None = None,
        default_cpu_tdp_w: float = 100.0,
        dram_w_per_gb: float = 0.375,
        wall: IpmiWall | RedfishWall | None = None,
        clock=time.monotonic,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.load = CpuLoad(proc_root)
        self.rapl = RaplReader(powercap_root)
        self.source = "rapl" if self.rapl.discover() else "model"
        self.model: CpuModel | None = None
        self.cpu_model_name = read_cpu_model(proc_root)
        if self.source == "model":
            tdp = cpu_tdp_w
            tdp_source = "config"
            if tdp is None:
                # The table is located (never imported) only when there is a model name to look up.
                table = codecarbon_cpu_table_path() if self.cpu_model_name else None
                tdp = lookup_cpu_tdp_w(self.cpu_model_name, table)
                tdp_source = "codecarbon_table"
            if tdp is None:
                tdp, tdp_source = default_cpu_tdp_w, "default"
            dram_w = dram_w_per_gb * read_mem_total_gb(proc_root)
            self.model = CpuModel(tdp_w=tdp, dram_w=dram_w, load=self.load)
            kv(
                logger,
                logging.INFO,
                "host_power_source",
                source="model",
                cpu=self.cpu_model_name,
                tdp_w=tdp,
                tdp_source=tdp_source,
                dram_w=round(dram_w, 2),
            )
        else:
            kv(
                logger,
                logging.INFO,
                "host_power_source",
                source="rapl",
                zones=",".join(f"{z.zone_id}:{z.kind}" for z in self.rapl.zones),
            )
        self._last = clock()

    @property
    def quality(self) -> str:
        return "measured" if self.source == "rapl" else "modelled"

    def read(self) -> HostReading:
        now = self.clock()
        dt, self._last = max(0.0, now - self._last), now
        if self.model is None:
            cpu_j, dram_j = self.rapl.read_delta_j()
            util = self.load.fraction() * 100.0
        else:
            cpu_w, dram_w, fraction = self.model.power_w()
            cpu_j, dram_j, util = cpu_w * dt, dram_w * dt, fraction * 100.0
        wall = self.wall.power_w() if self.wall is not None else None
        return HostReading(cpu_j, dram_j, util, wall, self.quality)
