"""Agent configuration: a TOML file (tomllib) overlaid by CARBONLEDGER_* environment variables.

Parsing is strict: an unknown key or a malformed value stops the agent with a message naming it,
because a silently ignored typo in a telemetry agent shows up weeks later as missing data.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from telemetry.agent.wire import WIRE_FORMATS

BACKENDS = ("nvml", "amdsmi", "sim", "replay")
# "window": energy counters and per-process utilisation read at window boundaries only (the
# counter delta is exact at any interval; NVML returns every process sample since a timestamp),
# power each tick only on devices without a counter. "tick": everything every tick (the former
# behaviour, kept for comparison: benchmarks/agent_overhead.py runs both).
READ_POLICIES = ("window", "tick")
MIN_TICK_S = 0.1  # NVML's energy counter updates about every 100 ms: faster ticks read the same value


class ConfigError(ValueError):
    pass


class AgentConfig(NamedTuple):
    """Immutable once loaded. (A NamedTuple, not a dataclass: see the note in gpu.py.)"""

    server_url: str = ""
    token: str = ""
    hostname: str = socket.gethostname()  # this host's name, read once (at import)
    tick_s: float = 1.0
    window_s: float = 10.0
    spool_dir: str = "/var/lib/carbonledger-agent"
    backend: str = "nvml"
    read_policy: str = "window"
    # Host introspection roots, configurable so tests (and containers) can point elsewhere.
    proc_root: str = "/proc"
    powercap_root: str = "/sys/class/powercap"
    # CPU model when RAPL is not readable: TDP from codecarbon's table, else this value.
    cpu_tdp_w: float | None = None
    default_cpu_tdp_w: float = 100.0
    dram_w_per_gb: float = 0.375  # codecarbon's 3 W per 8 GB DIMM
    # Wall/BMC power (optional).
    ipmi: bool = False
    ipmi_command: str = "ipmitool dcmi power reading"
    redfish_url: str = ""  # full URL of the Chassis Power resource
    redfish_user: str = ""
    redfish_password: str = ""
    # Delivery.
    max_batch_windows: int = 30
    batch_interval_s: float = 60.0  # hold closed windows up to this long to send them together
    spool_max_windows: int = 100_000
    http_timeout_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    ca_file: str = ""
    wire_format: str = "v2"  # "v2": columnar (docs/wire-format.md, "Format 2"); "v1": one object per window
    shutdown_flush_s: float = 5.0
    # Simulation / replay.
    sim_gpus: list[dict[str, Any]] = []  # one shared default: configs are never mutated
    sim_seed: int = 0
    # Simulated CPU cost (ms) of one call, for benchmarks: 0 = free. A real H200 (driver 580):
    # energy counter 2.8-4.3 ms, per-process utilisation 2.1-2.2 ms (docs/agent.md, "Overhead").
    sim_energy_call_ms: float = 0.0
    sim_process_util_call_ms: float = 0.0
    replay_file: str = ""
    replay_speed: float = 1.0  # trace seconds per real second; 0 = no pacing. Changes no value.
    replay_loop: bool = False
    log_level: str = "INFO"

    def validate(self, *, min_tick_s: float = MIN_TICK_S) -> AgentConfig:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.read_policy not in READ_POLICIES:
            raise ConfigError(f"read_policy: must be one of {', '.join(READ_POLICIES)}, got {self.read_policy!r}")
        if not self.tick_s >= min_tick_s:
            raise ConfigError(f"tick_s: must be >= {min_tick_s}, got {self.tick_s}")
        if not self.window_s >= self.tick_s:
            raise ConfigError(f"window_s: must be >= tick_s ({self.tick_s}), got {self.window_s}")
        if self.server_url and not self.server_url.startswith(("http://", "https://")):
            raise ConfigError(f"server_url: must start with http:// or https://, got {self.server_url!r}")
        if self.max_batch_windows < 1:
            raise ConfigError("max_batch_windows: must be >= 1")
        if not 0 <= self.batch_interval_s <= 3600:
            raise ConfigError(f"batch_interval_s: must be between 0 and 3600, got {self.batch_interval_s}")
        if self.wire_format not in WIRE_FORMATS:
            raise ConfigError(f"wire_format: must be one of {', '.join(WIRE_FORMATS)}, got {self.wire_format!r}")
        if self.spool_max_windows < 1:
            raise ConfigError("spool_max_windows: must be >= 1")
        if self.backend == "replay" and not self.replay_file:
            raise ConfigError("replay_file: required with backend=replay")
        if not 0 <= self.replay_speed < float("inf"):
            raise ConfigError(f"replay_speed: must be >= 0 (0: as fast as possible), got {self.replay_speed}")
        if not self.hostname:
            raise ConfigError("hostname: must not be empty")
        return self


# Field name -> its annotation as text ("float | None"), which _coerce parses values by.
_FIELDS: dict[str, str] = {
    name: str(getattr(t, "__forward_arg__", t)) for name, t in AgentConfig.__annotations__.items()
}
_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _BOOL_TRUE:
                return True
            if text in _BOOL_FALSE:
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind in ("float", "float | None"):
            if value is None or (isinstance(value, str) and value.strip() == "" and kind == "float | None"):
                return None
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if kind.startswith("list"):
            if not isinstance(value, list):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot parse {value!r} as {kind}")
    raise ConfigError(f"{name}: unsupported type {kind}")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """File < environment (CARBONLEDGER_<KEY>) < explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    file_path = path or env.get("CARBONLEDGER_CONFIG")
    if file_path:
        try:
            data = tomllib.loads(Path(file_path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file_path}")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file_path}: {exc}")
        section = data.get("agent", data)
        for key, value in section.items():
            if key not in _FIELDS:
                raise ConfigError(f"{file_path}: unknown key {key!r}")
            values[key] = _coerce(key, value)
    for key in _FIELDS:
        env_key = f"CARBONLEDGER_{key.upper()}"
        if env_key in env and not _FIELDS[key].startswith("list"):
            values[key] = _coerce(key, env[env_key])
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown option {key!r}")
        values[key] = _coerce(key, value)
    return AgentConfig(**values).validate()
