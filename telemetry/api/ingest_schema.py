"""OpenAPI description of the ingest request bodies, wire formats v1 and v2 (docs/wire-format.md).

Documentation only: the parsers (``telemetry.parsing``, ``telemetry.wire_v2``) validate a batch,
far faster than serializers would. These state the same shapes, types, bounds, enums, required
members and nullability; rules across fields (seq order, times, lengths of the columns, 5 kW)
are in the descriptions.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from telemetry.parsing import ENERGY_COVERS, MAX_DEVICE_INDEX, MAX_MIG_INSTANCES, MAX_PROCESSES, QUALITIES

_MAX_INT = 2**63 - 1
_QUALITIES = sorted(QUALITIES)
_COVERS = sorted(ENERGY_COVERS)


def _energy(**kwargs) -> serializers.FloatField:
    return serializers.FloatField(min_value=0.0, help_text="Joules, finite, >= 0.", **kwargs)


def _power(**kwargs) -> serializers.FloatField:
    return serializers.FloatField(min_value=0.0, max_value=5000.0, help_text="Watts, 0-5000.", **kwargs)


def _pct(**kwargs) -> serializers.FloatField:
    return serializers.FloatField(min_value=0.0, max_value=100.0, help_text="Percent, 0-100.", **kwargs)


_OPT: dict[str, Any] = {"required": False, "allow_null": True}  # an optional member that may be null


class _Header(serializers.Serializer):
    batch_id = serializers.UUIDField(help_text="A re-sent batch_id is acknowledged as a duplicate.")
    hostname = serializers.CharField(max_length=253, help_text="The host token's host.")
    agent_version = serializers.CharField(max_length=40, required=False, allow_null=True)
    sent_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="The agent's clock when sending (ISO 8601 with an offset)."
    )


# --- v1: one object per window -------------------------------------------------------------------


class ProcessV1(serializers.Serializer):
    pid = serializers.IntegerField(min_value=0, max_value=_MAX_INT, **_OPT)
    sm_util_pct = _pct(**_OPT)
    job_key = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=False, **_OPT)


class MigInstance(serializers.Serializer):
    uuid = serializers.CharField(max_length=100, **_OPT)
    gpu_instance_id = serializers.IntegerField(min_value=0, max_value=1024, **_OPT)
    compute_instance_id = serializers.IntegerField(min_value=0, max_value=1024, **_OPT)
    profile = serializers.CharField(max_length=40, help_text="e.g. 3g.40gb", **_OPT)
    slices = serializers.IntegerField(min_value=1, max_value=8, help_text="Else from the profile.", **_OPT)
    activity = serializers.FloatField(min_value=0.0, max_value=1.0, **_OPT)
    mem_used_mib = serializers.FloatField(min_value=0.0, **_OPT)
    pids = serializers.ListField(child=serializers.IntegerField(), **_OPT)
    job_keys = serializers.ListField(child=serializers.CharField(min_length=1, max_length=200), **_OPT)


class GpuWindowV1(serializers.Serializer):
    uuid = serializers.CharField(max_length=100, help_text="Once per window.")
    index = serializers.IntegerField(min_value=0, max_value=MAX_DEVICE_INDEX)
    name = serializers.CharField(max_length=200, **_OPT)
    energy_j = _energy()
    counter_mj = serializers.IntegerField(min_value=0, max_value=_MAX_INT, **_OPT)
    avg_power_w = _power()
    max_power_w = _power()
    util_pct = _pct()
    mem_util_pct = _pct()
    mem_used_mib = serializers.FloatField(min_value=0.0, help_text="null: not readable on this GPU.", **_OPT)
    power_limit_w = _power(**_OPT)
    quality = serializers.ChoiceField(choices=_QUALITIES)
    energy_covers = serializers.ChoiceField(choices=_COVERS, **_OPT)
    processes = serializers.ListField(child=ProcessV1(), max_length=MAX_PROCESSES, **_OPT)
    mig_instances = serializers.ListField(child=MigInstance(), max_length=MAX_MIG_INSTANCES, **_OPT)


class HostWindowV1(serializers.Serializer):
    cpu_energy_j = _energy()
    dram_energy_j = _energy()
    wall_energy_j = _energy(**_OPT)
    cpu_util_pct = _pct()
    quality = serializers.ChoiceField(choices=_QUALITIES)
    cpu_dram_in_gpu_modules = serializers.BooleanField(required=False, help_text="Informational.")


class WindowV1(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0, max_value=_MAX_INT, help_text="Strictly increasing.")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(help_text="After start, at most 3600 s later.")
    host = HostWindowV1()
    gpus = serializers.ListField(child=GpuWindowV1())


class IngestBatchV1(_Header):
    format = serializers.ChoiceField(choices=[1], required=False, help_text="1 or absent.")
    windows = serializers.ListField(child=WindowV1(), min_length=1)


# --- v2: columns ---------------------------------------------------------------------------------


def _column(child: serializers.Field, **kwargs) -> serializers.ListField:
    return serializers.ListField(child=child, help_text="One element per window.", **kwargs)


class WindowColumnsV2(serializers.Serializer):
    seq = _column(serializers.IntegerField(min_value=0, max_value=_MAX_INT), min_length=1)
    start_us = _column(serializers.IntegerField(min_value=0, max_value=_MAX_INT))
    end_us = _column(serializers.IntegerField(min_value=0, max_value=_MAX_INT))


class HostColumnsV2(serializers.Serializer):
    cpu_energy_j = _column(_energy())
    dram_energy_j = _column(_energy())
    wall_energy_j = _column(_energy(allow_null=True), **_OPT)
    cpu_util_pct = _column(_pct())
    quality = _column(serializers.ChoiceField(choices=_QUALITIES))


class ProcessColumnsV2(serializers.Serializer):
    window = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=_MAX_INT),
        help_text="One row per process and window: the window's position among the GPU's windows, non-decreasing.",
    )
    pid = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=_MAX_INT, allow_null=True), **_OPT
    )
    sm_util_pct = serializers.ListField(child=_pct(allow_null=True), **_OPT)
    job_key = serializers.ListField(
        child=serializers.CharField(max_length=200, allow_blank=True, allow_null=True, trim_whitespace=False), **_OPT
    )


class GpuColumnsV2(serializers.Serializer):
    uuid = serializers.CharField(max_length=100, help_text="Once per batch.")
    index = serializers.IntegerField(min_value=0, max_value=MAX_DEVICE_INDEX)
    name = serializers.CharField(max_length=200, **_OPT)
    energy_covers = serializers.ChoiceField(choices=_COVERS, **_OPT)
    window_index = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=_MAX_INT),
        min_length=1,
        help_text="The batch windows this GPU has data for (strictly increasing); absent: all of them.",
        **_OPT,
    )
    energy_j = _column(_energy())
    counter_mj = _column(serializers.IntegerField(min_value=0, max_value=_MAX_INT, allow_null=True), **_OPT)
    avg_power_w = _column(_power())
    max_power_w = _column(_power())
    util_pct = _column(_pct())
    mem_util_pct = _column(_pct())
    mem_used_mib = _column(serializers.FloatField(min_value=0.0, allow_null=True), **_OPT)
    power_limit_w = _column(_power(allow_null=True), **_OPT)
    quality = _column(serializers.ChoiceField(choices=_QUALITIES))
    processes = ProcessColumnsV2(**_OPT)
    mig_instances = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2),
        help_text="Runs [count, [MIG instance, ...]] (count >= 1) covering the GPU's windows in order.",
        **_OPT,
    )


class IngestBatchV2(_Header):
    format = serializers.ChoiceField(choices=[2])
    windows = WindowColumnsV2()
    host = HostColumnsV2()
    gpus = serializers.ListField(child=GpuColumnsV2())


INGEST_BATCH = PolymorphicProxySerializer(
    component_name="IngestBatch",
    serializers=[IngestBatchV1, IngestBatchV2],
    resource_type_field_name=None,
)
