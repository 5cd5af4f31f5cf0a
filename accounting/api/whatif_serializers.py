"""Request serializers of the what-if API: every physical input is checked against its bound
(``accounting.domain.bounds``), the device-dependent ones (a power cap, an average draw) against
the device named in the same request."""

from __future__ import annotations

import math
from collections.abc import Callable

from rest_framework import serializers

from accounting.api.serializers import BoundedFloatField, BoundedIntegerField, StrictSerializer
from accounting.domain import bounds
from accounting.domain.catalog import PRECISIONS
from accounting.domain.errors import InputError
from accounting.domain.whatif.common import FAMILIES, KINDS


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
    specs = serializer.context["specs"]
    if value not in specs:
        raise serializers.ValidationError(f"unknown device {value!r}; known: {', '.join(sorted(specs))}")
    return value


class EmbodiedSerializer(StrictSerializer):
    embodied_kg = FiniteFloat(min_value=0)
    embodied_low_kg = FiniteFloat(min_value=0, required=False)
    embodied_high_kg = FiniteFloat(min_value=0, required=False)
    lifetime_years = FiniteFloat(min_value=0.1, max_value=30, required=False, default=5.0)
    expected_utilisation = FiniteFloat(min_value=0.01, max_value=1, required=False, default=1.0)

    def validate(self, attrs):
        kg = attrs["embodied_kg"]
        if attrs.get("embodied_low_kg", kg) > kg:
            raise serializers.ValidationError({"embodied_low_kg": "must be <= embodied_kg"})
        if attrs.get("embodied_high_kg", kg) < kg:
            raise serializers.ValidationError({"embodied_high_kg": "must be >= embodied_kg"})
        return attrs


class CarbonFieldsMixin(StrictSerializer):
    pue = BoundedFloatField(bound=bounds.PUE)
    intensity_g_per_kwh = BoundedFloatField(bound=bounds.INTENSITY_G_PER_KWH, required=False)
    zone_code = serializers.CharField(max_length=64, required=False)

    def _check_carbon(self, attrs):
        if attrs.get("intensity_g_per_kwh") is None and not attrs.get("zone_code"):
            raise serializers.ValidationError({"intensity_g_per_kwh": "give intensity_g_per_kwh or zone_code"})


class EstimateRequest(CarbonFieldsMixin):
    device_key = _device_key_field()
    device_count = BoundedIntegerField(bound=bounds.DEVICE_COUNT)
    hours = BoundedFloatField(bound=bounds.HOURS, required=False)
    flops = FiniteFloat(min_value=1, max_value=1e30, required=False)
    efficiency = BoundedFloatField(bound=bounds.MFU, required=False)
    precision = serializers.ChoiceField(choices=PRECISIONS, default="bf16")
    avg_power_w = FiniteFloat(min_value=1, max_value=5000, required=False)  # within the device's: validate()
    utilisation = BoundedFloatField(bound=bounds.UTILISATION, required=False)
    embodied = EmbodiedSerializer(required=False)
    units = serializers.DictField(child=FiniteFloat(min_value=0), required=False, default=dict)

    def validate_device_key(self, value):
        return _check_device(self, value)

    def validate(self, attrs):
        if ("hours" in attrs) == ("flops" in attrs):
            raise serializers.ValidationError({"hours": "give exactly one of hours or flops"})
        if "efficiency" in attrs and "flops" not in attrs:
            raise serializers.ValidationError({"efficiency": "only used with flops"})
        if ("avg_power_w" in attrs) == ("utilisation" in attrs):
            raise serializers.ValidationError({"avg_power_w": "give exactly one of avg_power_w or utilisation"})
        self._check_carbon(attrs)
        spec = self.context["specs"][attrs["device_key"]]
        if "avg_power_w" in attrs:
            domain_checked(lambda: bounds.avg_power_w(spec, attrs["avg_power_w"], "avg_power_w"))
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
