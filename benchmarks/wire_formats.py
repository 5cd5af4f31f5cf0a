"""Wire formats v1 and v2 side by side (not a test): server CPU to decode and validate a batch, and
its size on the wire (issue 18; docs/wire-format.md, "Format 2").

8 GPU windows is one POST per window of an 8-GPU host (the agent's default batching). Batches
shaped like the agent's (``telemetry.agent.window``): one host, 8 GPUs, consecutive 10 s
windows with millisecond ISO times in v1, energies and powers rounded to 3 decimals, a raw NVML
counter, one process per busy GPU (its utilisation varying per window), GPU 7 idle. The v2 body
is what the agent sends (``telemetry.agent.wire.columns_v2`` over the same windows). Every body is
gzip-compressed as the agent sends it (level 6), and the figure includes everything the ingest
view does before the service: gunzip (``telemetry.parsing.decompress``), decode (orjson for JSON,
msgpack for MessagePack), validate and build the parsed batch. For v1 a second figure adds
grouping its rows into series (``ParsedBatch.gpu_series``, what the columnar store reads), which
v2's parser returns directly. Agent-side figures: building and gzipping the body in plain Python.

    .venv/bin/python benchmarks/wire_formats.py            # 8, 240 and 1,920 GPU windows per batch
    .venv/bin/python benchmarks/wire_formats.py --rounds 9

Reported: the best (minimum) round of CPU time (``time.process_time``) per GPU window in µs, the
ratio to v1, and the body bytes (gzip) with bytes per GPU window. All formats run interleaved in
the same process, and each v2 parse is checked to give the same series as the v1 parse.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import gzip
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

import msgpack
import numpy as np
import orjson

from telemetry.agent.wire import FORMAT, columns_v2
from telemetry.parsing import decompress, parse_batch
from telemetry.wire_v2 import parse_batch_v2

GPUS = 8
WINDOW_S = 10
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
LIMITS = {"clock_skew_s": 300.0, "retention_days": 90, "max_windows": 1_000_000}
MAX_BYTES = 64 * 1024 * 1024


def _iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def agent_windows(n_windows: int, *, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    t0 = NOW - dt.timedelta(seconds=WINDOW_S * n_windows + 5)
    counters = [123_456_789_000 + 10**9 * g for g in range(GPUS)]
    windows = []
    for i in range(n_windows):
        start = t0 + dt.timedelta(seconds=WINDOW_S * i)
        gpus = []
        for g in range(GPUS):
            busy = g < GPUS - 1
            power_w = rng.uniform(550, 690) if busy else rng.uniform(68, 72)
            energy_j = round(power_w * WINDOW_S, 3)
            counters[g] += int(energy_j * 1000)
            gpus.append(
                {
                    "uuid": f"GPU-5c3c6e2e-0000-4000-8000-00000000000{g}",
                    "index": g,
                    "name": "NVIDIA H100 80GB HBM3",
                    "energy_j": energy_j,
                    "counter_mj": counters[g],
                    "avg_power_w": round(energy_j / WINDOW_S, 3),
                    "max_power_w": round(power_w + rng.uniform(5, 40), 3),
                    "util_pct": round(rng.uniform(85, 100), 3) if busy else 0.0,
                    "mem_util_pct": round(rng.uniform(40, 70), 3) if busy else 0.0,
                    "mem_used_mib": 71000.0 if busy else 0.0,
                    "power_limit_w": 700.0,
                    "quality": "measured",
                    "processes": (
                        [{"pid": 4242 + g, "sm_util_pct": round(rng.uniform(85, 100), 3), "job_key": "slurm:88123"}]
                        if busy
                        else []
                    ),
                }
            )
        windows.append(
            {
                "seq": 1_764_000_000 + i,
                "start": _iso(start),
                "end": _iso(start + dt.timedelta(seconds=WINDOW_S)),
                "host": {
                    "cpu_energy_j": round(rng.uniform(1200, 1600), 3),
                    "dram_energy_j": round(rng.uniform(180, 220), 3),
                    "wall_energy_j": None,
                    "cpu_util_pct": round(rng.uniform(20, 40), 3),
                    "quality": "measured",
                },
                "gpus": gpus,
            }
        )
    return windows


def _header() -> dict:
    return {
        "batch_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "hostname": "gpu-node-07",
        "agent_version": "0.1.0",
        "sent_at": _iso(NOW),
    }


def v1_doc(windows: list[dict]) -> dict:
    return {**_header(), "windows": windows}


def v2_doc(windows: list[dict]) -> dict:
    columns = columns_v2(windows)
    assert columns is not None
    return {**_header(), "format": FORMAT, **columns}


def encode_json(doc: dict) -> bytes:  # as telemetry.agent.sender does
    return gzip.compress(json.dumps(doc, separators=(",", ":"), allow_nan=False).encode(), compresslevel=6)


def encode_msgpack(doc: dict) -> bytes:
    return gzip.compress(msgpack.packb(doc, use_bin_type=True), compresslevel=6)


def decode_v1(body: bytes):
    raw = decompress(body=body, encoding="gzip", max_bytes=MAX_BYTES)
    return parse_batch(data=orjson.loads(raw), now=NOW, **LIMITS)


def decode_v1_series(body: bytes):
    batch = decode_v1(body)
    batch.gpu_series  # noqa: B018 - the grouping is the cost measured
    return batch


def decode_v2_json(body: bytes):
    raw = decompress(body=body, encoding="gzip", max_bytes=MAX_BYTES)
    return parse_batch_v2(data=orjson.loads(raw), now=NOW, **LIMITS)


def decode_v2_msgpack(body: bytes):
    # What a MessagePack body would cost the view (not accepted: docs/wire-format.md, "Format 2").
    raw = decompress(body=body, encoding="gzip", max_bytes=MAX_BYTES)
    return parse_batch_v2(data=msgpack.unpackb(raw, raw=False, strict_map_key=True), now=NOW, **LIMITS)


def _cpu_us(fn: Callable[[], object], repeat: int) -> float:
    gc.collect()
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat * 1e6


def _same_series(a, b) -> None:
    assert [s.uuid for s in a.gpu_series] == [s.uuid for s in b.gpu_series]
    for x, y in zip(a.gpu_series, b.gpu_series, strict=True):
        for name in ("seq", "start_us", "end_us", "energy_j", "counter_mj", "has_counter", "util_pct", "max_power_w"):
            assert np.array_equal(getattr(x, name), getattr(y, name)), name
        assert np.array_equal(x.power_limit_w, y.power_limit_w, equal_nan=True)
        assert x.processes == y.processes and x.quality == y.quality


def run(gpu_windows: int, rounds: int) -> None:
    windows = agent_windows(gpu_windows // GPUS)
    bodies = {
        "v1 JSON": encode_json(v1_doc(windows)),
        "v2 JSON": encode_json(v2_doc(windows)),
        "v2 MessagePack": encode_msgpack(v2_doc(windows)),
    }
    decoders: dict[str, tuple[str, Callable]] = {
        "v1 JSON": ("v1 JSON", decode_v1),
        "v1 JSON + series": ("v1 JSON", decode_v1_series),
        "v2 JSON": ("v2 JSON", decode_v2_json),
        "v2 MessagePack": ("v2 MessagePack", decode_v2_msgpack),
    }
    reference = decode_v1(bodies["v1 JSON"])
    for body_key, fn in decoders.values():
        _same_series(reference, fn(bodies[body_key]))
    encoders: dict[str, Callable[[], bytes]] = {
        "v1 JSON": lambda: encode_json(v1_doc(windows)),
        "v2 JSON": lambda: encode_json(v2_doc(windows)),
        "v2 MessagePack": lambda: encode_msgpack(v2_doc(windows)),
    }
    repeat = max(3, 24_000 // gpu_windows)
    best = {label: float("inf") for label in decoders}
    best_encode = {label: float("inf") for label in encoders}
    for _ in range(rounds):
        for label, (body_key, fn) in decoders.items():
            body = bodies[body_key]
            best[label] = min(best[label], _cpu_us(lambda fn=fn, body=body: fn(body), repeat))
        for label, enc in encoders.items():
            best_encode[label] = min(best_encode[label], _cpu_us(enc, max(1, repeat // 4)))
    print(f"\n{gpu_windows} GPU windows per batch ({gpu_windows // GPUS} windows x {GPUS} GPUs), best of {rounds}")
    print(f"  {'server: gunzip + decode + validate':<36} {'µs/GPU window':>14} {'vs v1':>7}")
    base = best["v1 JSON"] / gpu_windows
    for label, us in best.items():
        per = us / gpu_windows
        print(f"  {label:<36} {per:>14.2f} {base / per:>6.1f}x")
    print(f"  {'body (gzip)':<36} {'bytes':>14} {'B/GPU window':>13} {'vs v1':>7}")
    size_v1 = len(bodies["v1 JSON"])
    for label, body in bodies.items():
        print(f"  {label:<36} {len(body):>14,} {len(body) / gpu_windows:>13.1f} {size_v1 / len(body):>6.1f}x")
    print(f"  {'agent: build body + gzip':<36} {'µs/GPU window':>14} {'vs v1':>7}")
    enc_base = best_encode["v1 JSON"] / gpu_windows
    for label, us in best_encode.items():
        per = us / gpu_windows
        print(f"  {label:<36} {per:>14.2f} {enc_base / per:>6.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gpu-windows", type=int, nargs="+", default=[8, 240, 1920])
    args = parser.parse_args()
    for gpu_windows in args.gpu_windows:
        run(gpu_windows, args.rounds)


if __name__ == "__main__":
    main()
