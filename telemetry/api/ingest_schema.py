"""OpenAPI description of the ingest request bodies, wire formats v1 and v2 (docs/wire-format.md).

Documentation only: the parsers (``telemetry.parsing``, ``telemetry.wire_v2``) validate a batch,
far faster than serializers would. These state the same shapes, types, bounds, enums, required
members and nullability; rules across fields (seq order, times, lengths of the columns, 5 kW)
are in the descriptions.
"""

from __future__ import annotations

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


def _optional(field: serializers.Field) -> serializers.Field:
    field.required = False
    field.allow_null = True
    return field


class _Header(serializers.Serializer):
    batch_id = serializers.UUIDField(help_text="A re-sent batch_id is acknowledged as a duplicate.")
    hostname = serializers.CharField(max_length=253, help_text="The host token's host.")
    agent_version = serializers.CharField(max_length=40, required=False, allow_null=True)
    sent_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="The agent's clock when sending (ISO 8601 with an offset)."
    )


# --- v1: one object per window -------------------------------------------------------------------


class ProcessV1(serializers.Serializer):
    pid = _optional(serializers.IntegerField(min_value=0, max_value=_MAX_INT))
    sm_util_pct = _optional(_pct())
    job_key = _optional(serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=False))


class MigInstance(serializers.Serializer):
    uuid = _optional(serializers.CharField(max_length=100))
    gpu_instance_id = _optional(serializers.IntegerField(min_value=0, max_value=1024))
    compute_instance_id = _optional(serializers.IntegerField(min_value=0, max_value=1024))
    profile = _optional(serializers.CharField(max_length=40, help_text="e.g. 3g.40gb"))
    slices = _optional(serializers.IntegerField(min_value=1, max_value=8, help_text="Else from the profile."))
    activity = _optional(serializers.FloatField(min_value=0.0, max_value=1.0))
    mem_used_mib = _optional(serializers.FloatField(min_value=0.0))
    pids = _optional(serializers.ListField(child=serializers.IntegerField()))
    job_keys = _optional(serializers.ListField(child=serializers.CharField(min_length=1, max_length=200)))


class GpuWindowV1(serializers.Serializer):
    uuid = serializers.CharField(max_length=100, help_text="Once per window.")
    index = serializers.IntegerField(min_value=0, max_value=MAX_DEVICE_INDEX)
    name = _optional(serializers.CharField(max_length=200))
    energy_j = _energy()
    counter_mj = _optional(serializers.IntegerField(min_value=0, max_value=_MAX_INT))
    avg_power_w = _power()
    max_power_w = _power()
    util_pct = _pct()
    mem_util_pct = _pct()
    mem_used_mib = serializers.FloatField(min_value=0.0)
    power_limit_w = _optional(_power())
    quality = serializers.ChoiceField(choices=_QUALITIES)
    energy_covers = _optional(serializers.ChoiceField(choices=_COVERS))
    processes = _optional(serializers.ListField(child=ProcessV1(), max_length=MAX_PROCESSES))
    mig_instances = _optional(serializers.ListField(child=MigInstance(), max_length=MAX_MIG_INSTANCES))


class HostWindowV1(serializers.Serializer):
    cpu_energy_j = _energy()
    dram_energy_j = _energy()
    wall_energy_j = _optional(_energy())
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
    wall_energy_j = _optional(_column(_energy(allow_null=True)))
    cpu_util_pct = _column(_pct())
    quality = _column(serializers.ChoiceField(choices=_QUALITIES))


class ProcessColumnsV2(serializers.Serializer):
    window = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=_MAX_INT),
        help_text="One row per process and window: the window's position among the GPU's windows, non-decreasing.",
    )
    pid = _optional(
        serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=_MAX_INT, allow_null=True))
    )
    sm_util_pct = _optional(serializers.ListField(child=_pct(allow_null=True)))
    job_key = _optional(
        serializers.ListField(
            child=serializers.CharField(max_length=200, allow_blank=True, allow_null=True, trim_whitespace=False)
        )
    )


class GpuColumnsV2(serializers.Serializer):
    uuid = serializers.CharField(max_length=100, help_text="Once per batch.")
    index = serializers.IntegerField(min_value=0, max_value=MAX_DEVICE_INDEX)
    name = _optional(serializers.CharField(max_length=200))
    energy_covers = _optional(serializers.ChoiceField(choices=_COVERS))
    window_index = _optional(
        serializers.ListField(
            child=serializers.IntegerField(min_value=0, max_value=_MAX_INT),
            min_length=1,
            help_text="The batch windows this GPU has data for (strictly increasing); absent: all of them.",
        )
    )
    energy_j = _column(_energy())
    counter_mj = _optional(_column(serializers.IntegerField(min_value=0, max_value=_MAX_INT, allow_null=True)))
    avg_power_w = _column(_power())
    max_power_w = _column(_power())
    util_pct = _column(_pct())
    mem_util_pct = _column(_pct())
    mem_used_mib = _column(serializers.FloatField(min_value=0.0))
    power_limit_w = _optional(_column(_power(allow_null=True)))
    quality = _column(serializers.ChoiceField(choices=_QUALITIES))
    processes = _optional(ProcessColumnsV2())
    mig_instances = _optional(
        serializers.ListField(
            child=serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2),
            help_text="Runs [count, [MIG instance, ...]] (count >= 1) covering the GPU's windows in order.",
        )
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
