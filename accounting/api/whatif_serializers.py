"""Request serializers of the what-if API: every physical input is checked against its bound
(``accounting.domain.bounds``), the device-dependent ones (a power cap, an average draw) against
the device named in the same request."""

from __future__ import annotations

import math
from collections.abc import Callable

from rest_framework import serializers

from accounting.api.serializers import BoundedFloatField, BoundedIntegerField, StrictSerializer
from accounting.domain import bounds
from accounting.domain.catalog import PRECISIONS, canonical_key
from accounting.domain.embodied import DEFAULT_LIFETIME
from accounting.domain.errors import InputError
from accounting.domain.whatif.common import FAMILIES, KINDS
from accounting.domain.whatif.host import DEFAULT_GPU_SLOTS
from accounting.services.whatif import device_spec_from_args


def domain_checked(*checks: Callable[[], object]) -> None:
    """Run each domain check; every ``InputError`` becomes that field's 400 message (all of
    them together, as the serializer's own field errors are)."""
    errors: dict[str, list[str]] = {}
    for check in checks:
        try:
            check()
        except InputError as exc:
            errors.setdefault(exc.field, []).append(exc.message)
    if errors:
        raise serializers.ValidationError(errors)


class FiniteFloat(serializers.FloatField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("must be a finite number")
        return value


def _device_key_field(**kw):
    return serializers.CharField(max_length=64, **kw)


def _check_device(serializer: serializers.Serializer, value: str) -> str:
    """The device's key as the engine knows it: an old catalog key (catalog.KEY_ALIASES, e.g.
    b200-sxm-192gb) is accepted and read as its current key."""
    specs = serializer.context["specs"]
    if value not in specs and canonical_key(value) in specs:
        return canonical_key(value)
    if value not in specs:
        raise serializers.ValidationError(f"unknown device {value!r}; known: {', '.join(sorted(specs))}")
    return value


def _check_embodied_band(attrs) -> None:
    """Embodied low <= central <= high; a low or high figure only with its central one."""
    kg = attrs.get("embodied_kg")
    if kg is None and ("embodied_low_kg" in attrs or "embodied_high_kg" in attrs):
        raise serializers.ValidationError({"embodied_kg": "give embodied_kg with its low/high"})
    if kg is not None and attrs.get("embodied_low_kg", kg) > kg:
        raise serializers.ValidationError({"embodied_low_kg": "must be <= embodied_kg"})
    if kg is not None and attrs.get("embodied_high_kg", kg) < kg:
        raise serializers.ValidationError({"embodied_high_kg": "must be >= embodied_kg"})


class EmbodiedSerializer(StrictSerializer):
    embodied_kg = FiniteFloat(min_value=0)
    embodied_low_kg = FiniteFloat(min_value=0, required=False)
    embodied_high_kg = FiniteFloat(min_value=0, required=False)
    lifetime_years = FiniteFloat(
        min_value=0.1, max_value=30, required=False, default=DEFAULT_LIFETIME["gpu"].lifetime_years
    )
    expected_utilisation = FiniteFloat(
        min_value=0.01,
        max_value=1,
        required=False,
        default=DEFAULT_LIFETIME["gpu"].expected_utilisation,
        help_text="Share of its life the device is held by jobs; the ledger's default 0.8.",
    )

    def validate(self, attrs):
        _check_embodied_band(attrs)
        return attrs


class DeviceFiguresSerializer(StrictSerializer):
    """A device outside the catalog (a TPU, a new part), described by its datasheet figures."""

    key = serializers.CharField(max_length=64, default="described-device")
    name = serializers.CharField(max_length=200, required=False, default="")
    peak_tflops = serializers.DictField(
        child=FiniteFloat(min_value=0.001, max_value=1e7),
        allow_empty=False,
        help_text=f"Dense peak TFLOP/s by precision ({', '.join(PRECISIONS)}).",
    )
    memory_bandwidth_gb_s = FiniteFloat(min_value=1, max_value=1e6)
    memory_gb = FiniteFloat(min_value=0.1, max_value=1e5)
    max_power_w = FiniteFloat(min_value=1, max_value=5000, help_text="Power limit (TDP) per device, W.")
    idle_power_w = FiniteFloat(min_value=0, max_value=5000, required=False)
    interconnect_gb_s = FiniteFloat(min_value=0, max_value=1e5, default=0.0)
    embodied_kg = FiniteFloat(min_value=0, max_value=1e5, required=False)
    embodied_low_kg = FiniteFloat(min_value=0, max_value=1e5, required=False)
    embodied_high_kg = FiniteFloat(min_value=0, max_value=1e5, required=False)
    citation = serializers.CharField(
        max_length=500, default="given in request", help_text="Where the figures come from."
    )

    def validate(self, attrs):
        try:
            attrs["spec"] = device_spec_from_args(attrs)
        except ValueError as exc:
            name, _, message = str(exc).partition(": ")
            raise serializers.ValidationError({name if name in self.fields else "peak_tflops": message}) from exc
        _check_embodied_band(attrs)
        return attrs


class HostSerializer(StrictSerializer):
    """The GPU server's host, shared by its GPU slots as the ledger shares it; each figure not
    given takes the default (docs/whatif.md, accounting/domain/whatif/host.py)."""

    power_w = BoundedFloatField(bound=bounds.HOST_POWER_W, required=False, help_text="Whole-host CPU + DRAM W.")
    gpu_slots = serializers.IntegerField(min_value=1, max_value=64, required=False)
    cpu_sockets = serializers.IntegerField(min_value=0, max_value=8, required=False)
    dram_gb = FiniteFloat(min_value=0, max_value=1e5, required=False)
    ssd_gb = FiniteFloat(min_value=0, max_value=1e7, required=False)
    embodied_kg = FiniteFloat(min_value=0, max_value=1e5, required=False, help_text="Whole host, GPUs excluded.")
    embodied_low_kg = FiniteFloat(min_value=0, max_value=1e5, required=False)
    embodied_high_kg = FiniteFloat(min_value=0, max_value=1e5, required=False)
    lifetime_years = FiniteFloat(min_value=0.1, max_value=30, required=False)
    expected_utilisation = FiniteFloat(min_value=0.01, max_value=1, required=False)

    def validate(self, attrs):
        _check_embodied_band(attrs)
        return attrs


class CarbonFieldsMixin(StrictSerializer):
    pue = BoundedFloatField(bound=bounds.PUE)
    intensity_g_per_kwh = BoundedFloatField(bound=bounds.INTENSITY_G_PER_KWH, required=False)
    zone_code = serializers.CharField(max_length=64, required=False)

    def _check_carbon(self, attrs):
        if attrs.get("intensity_g_per_kwh") is None and not attrs.get("zone_code"):
            raise serializers.ValidationError({"intensity_g_per_kwh": "give intensity_g_per_kwh or zone_code"})


_RUNTIME_INPUTS = ("hours", "device_hours", "flops", "parameters")


class EstimateRequest(CarbonFieldsMixin):
    device_key = _device_key_field(required=False)
    device = DeviceFiguresSerializer(required=False, help_text="A device outside the catalog, by its figures.")
    device_count = BoundedIntegerField(bound=bounds.DEVICE_COUNT)
    hours = BoundedFloatField(bound=bounds.HOURS, required=False, help_text="Wall-clock hours.")
    device_hours = BoundedFloatField(
        bound=bounds.DEVICE_HOURS, required=False, help_text="GPU-hours (device-hours) over all devices."
    )
    flops = FiniteFloat(min_value=1, max_value=1e30, required=False)
    parameters = FiniteFloat(
        min_value=1, max_value=1e15, required=False, help_text="LLM training: FLOPs = 6 × parameters × tokens."
    )
    tokens = FiniteFloat(min_value=1, max_value=1e16, required=False)
    efficiency = BoundedFloatField(bound=bounds.MFU, required=False)
    precision = serializers.ChoiceField(choices=PRECISIONS, default="bf16")
    avg_power_w = FiniteFloat(min_value=1, max_value=5000, required=False)  # within the device's: validate()
    utilisation = BoundedFloatField(bound=bounds.UTILISATION, required=False)
    embodied = EmbodiedSerializer(required=False)
    host = HostSerializer(required=False)
    include_host = serializers.BooleanField(
        default=True,
        help_text="False leaves the host out (a power figure that already includes the host's share).",
    )
    units = serializers.DictField(child=FiniteFloat(min_value=0), required=False, default=dict)

    def validate_device_key(self, value):
        return _check_device(self, value)

    def validate(self, attrs):
        if ("device_key" in attrs) == ("device" in attrs):
            raise serializers.ValidationError({"device_key": "give exactly one of device_key or device"})
        if ("parameters" in attrs) != ("tokens" in attrs):
            raise serializers.ValidationError({"tokens": "give parameters and tokens together"})
        if sum(name in attrs for name in _RUNTIME_INPUTS) != 1:
            raise serializers.ValidationError(
                {"hours": "give exactly one of hours, device_hours, flops or parameters with tokens"}
            )
        if "efficiency" in attrs and "flops" not in attrs and "parameters" not in attrs:
            raise serializers.ValidationError({"efficiency": "only used with flops or parameters"})
        if ("avg_power_w" in attrs) == ("utilisation" in attrs):
            raise serializers.ValidationError({"avg_power_w": "give exactly one of avg_power_w or utilisation"})
        if "host" in attrs and not attrs["include_host"]:
            raise serializers.ValidationError({"host": "not used with include_host false"})
        self._check_carbon(attrs)
        spec = attrs["device"]["spec"] if "device" in attrs else self.context["specs"][attrs["device_key"]]
        if "avg_power_w" in attrs:
            if attrs["include_host"]:
                domain_checked(lambda: bounds.avg_power_w(spec, attrs["avg_power_w"], "avg_power_w"))
            else:
                # The figure includes the device's share of its host: up to the limit plus one slot's
                # share of the largest host (HOST_POWER_W over the default 8 slots).
                top = spec.max_power_w + bounds.HOST_POWER_W.high / DEFAULT_GPU_SLOTS
                domain_checked(
                    lambda: bounds.avg_power_w(spec, min(attrs["avg_power_w"], spec.max_power_w), "avg_power_w")
                )
                if attrs["avg_power_w"] > top:
                    raise serializers.ValidationError(
                        {"avg_power_w": f"must be at most {top:g} W with the host's share included"}
                    )
        return attrs


class ProjectRequest(StrictSerializer):
    target_key = _device_key_field()
    target_count = BoundedIntegerField(bound=bounds.DEVICE_COUNT, max_value=100_000, required=False)
    target_precision = serializers.ChoiceField(choices=PRECISIONS, required=False)
    target_power_cap_w = FiniteFloat(
        min_value=1, max_value=5000, required=False, help_text="W per device, within the target's power-limit range."
    )
    target_zone_code = serializers.CharField(max_length=64, required=False)
    target_pue = BoundedFloatField(bound=bounds.PUE, required=False)

    def validate_target_key(self, value):
        return _check_device(self, value)

    def validate(self, attrs):
        if attrs.get("target_power_cap_w") is not None:
            spec = self.context["specs"][attrs["target_key"]]
            domain_checked(lambda: bounds.power_cap_w(spec, attrs["target_power_cap_w"], "target_power_cap_w"))
        return attrs


class WorkloadSerializer(StrictSerializer):
    family = serializers.ChoiceField(choices=FAMILIES)
    kind = serializers.ChoiceField(choices=KINDS)
    device_hours_per_year = FiniteFloat(min_value=0, max_value=1e9)
    precision = serializers.ChoiceField(choices=PRECISIONS, default="bf16")
    avg_util = BoundedFloatField(bound=bounds.UTILISATION, required=False)
    avg_power_w = FiniteFloat(min_value=1, max_value=5000, required=False)  # the old device's: validate()
    split = serializers.ListField(
        child=FiniteFloat(min_value=0, max_value=1),
        min_length=3,
        max_length=3,
        required=False,
        help_text="Busy-time shares compute/memory/communication, each in [0, 1]; not all 0 (400 otherwise).",
    )

    def validate_split(self, value):
        if sum(value) <= 0:
            raise serializers.ValidationError("shares must not all be 0")
        return tuple(value)


class FleetPlanRequest(CarbonFieldsMixin):
    old_key = _device_key_field()
    old_count = BoundedIntegerField(bound=bounds.DEVICE_COUNT)
    new_key = _device_key_field()
    new_count = BoundedIntegerField(bound=bounds.DEVICE_COUNT)
    # DRF passes max_length on to the ListSerializer (many=True); the stubs' __init__ omits it.
    workloads = WorkloadSerializer(many=True, allow_empty=False, min_length=1, max_length=200)  # type: ignore[call-arg]
    old_age_years = FiniteFloat(min_value=0, max_value=30, default=0.0)
    old_embodied = EmbodiedSerializer(required=False)
    new_embodied = EmbodiedSerializer(required=False)

    def validate_old_key(self, value):
        return _check_device(self, value)

    def validate_new_key(self, value):
        return _check_device(self, value)

    def validate(self, attrs):
        self._check_carbon(attrs)
        old = self.context["specs"][attrs["old_key"]]
        domain_checked(
            *(
                (lambda w=w, i=i: bounds.avg_power_w(old, w["avg_power_w"], f"workloads[{i}].avg_power_w"))
                for i, w in enumerate(attrs["workloads"])
                if w.get("avg_power_w") is not None
            )
        )
        return attrs


class ForecastPoint(StrictSerializer):
    hour = serializers.DateTimeField()
    intensity_g_per_kwh = BoundedFloatField(bound=bounds.INTENSITY_G_PER_KWH)


class BestWindowRequest(StrictSerializer):
    duration_s = BoundedFloatField(bound=bounds.DURATION_S)
    earliest_start = serializers.DateTimeField()
    deadline = serializers.DateTimeField()
    forecast = ForecastPoint(many=True, required=False, max_length=24 * 31)  # type: ignore[call-arg]  # as above
    zone_code = serializers.CharField(max_length=64, required=False)
    energy_j = FiniteFloat(min_value=0, max_value=1e18, required=False)
    pue = BoundedFloatField(bound=bounds.PUE, default=1.0)

    def validate(self, attrs):
        if not attrs.get("forecast") and not attrs.get("zone_code"):
            raise serializers.ValidationError({"forecast": "give forecast points or zone_code"})
        if attrs["deadline"] <= attrs["earliest_start"]:
            raise serializers.ValidationError({"deadline": "must be after earliest_start"})
        return attrs
