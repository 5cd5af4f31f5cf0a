"""Request validation and response shapes of the v1 scheduler/integration API.

Serializers only validate and shape; the writes happen in ``accounting.services``. Every
number that reaches the database or a JSON response is finite, every datetime is aware and
within a sane range, and free-form keys are restricted so PostgreSQL never sees a NUL byte.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import threading
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounting.domain import bounds
from accounting.domain.catalog import PRECISIONS
from accounting.domain.errors import InputError
from accounting.domain.whatif.common import FAMILIES, KINDS
from accounting.models import Job, JobAllocation
from accounting.services.allocations import PENDING_UUID_PREFIX, AllocationSpec

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
SCHEDULER_JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+@\-]{0,199}$"
# Slurm's SLUID: "s" + 13 Crockford base32 digits (no I, L, O, U), either case (src/common/sluid.c).
SLUID_PATTERN = r"^[sS][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{13}$"
HOSTNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,252}$"
UNIT_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# The what-if API uses the same value lists: one enum per concept in the OpenAPI schema.
assert set(KINDS) == set(Job.Kind.values) and set(FAMILIES) == set(Job.Family.values)
EXIT_STATES = [Job.Status.COMPLETED, Job.Status.FAILED, Job.Status.PREEMPTED, Job.Status.CANCELLED]


# The schema states the 2000-2100 range of every date and datetime as the year's pattern
# (OpenAPI 3.0 has no bounds for formatted strings); the check is on the year as written.
YEAR_PATTERN = r"^20[0-9]{2}-"
_JSON_TYPES: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (serializers.BooleanField, (bool,), "Must be a boolean."),
    (serializers.CharField, (str,), "Must be a string."),
    (serializers.ChoiceField, (str,), "Must be a string."),
    (serializers.DateTimeField, (str,), "Must be a string (ISO 8601)."),
    (serializers.DateField, (str,), "Must be a string (ISO 8601 date)."),
)


def _json_type_error(field: serializers.Field, value) -> Any:
    """The error of a JSON value whose type is not the field's (None when it is). DRF coerces:
    ``"1.5"`` passes its FloatField, ``7`` its CharField, ``true`` its FloatField as 1.0. A JSON
    API says what type a field is, and answers 400 to another one. Lists and dicts are checked
    item by item."""
    if value is None:
        return None
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        errors = {i: e for i, item in enumerate(value) if (e := _json_type_error(field.child, item)) is not None}
        return errors or None
    if isinstance(field, serializers.DictField) and isinstance(value, dict):
        errors = {k: e for k, item in value.items() if (e := _json_type_error(field.child, item)) is not None}
        return errors or None
    if isinstance(field, serializers.IntegerField):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            return ["Must be an integer."]
        return None
    if isinstance(field, (serializers.FloatField, serializers.DecimalField)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return ["Must be a number."]
        return None
    for field_class, types, message in _JSON_TYPES:
        if isinstance(field, field_class):
            return None if isinstance(value, types) else [message]
    return None


class StrictSerializer(serializers.Serializer):
    """A JSON body: every value has its field's JSON type (no coercion of strings to numbers,
    numbers to strings or booleans to numbers). Query-string serializers stay plain: there
    every value is a string."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            errors: dict[str, Any] = {}
            for name, field in self.fields.items():
                if field.read_only or name not in data:
                    continue
                error = _json_type_error(field, data[name])
                if error is not None:
                    errors[name] = error
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class FiniteFloatField(serializers.FloatField):
    """A float that is finite (NaN/inf would break JSON rendering and every sum)."""

    default_error_messages = {"non_finite": "Must be a finite number."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("non_finite")
        return value


class _BoundedMixin:
    """A number within one of ``accounting.domain.bounds``' physical bounds: the schema shows
    the range (``minimum``/``maximum``), a value outside it is refused with the bound's message."""

    bound: bounds.Bound
    validators: list

    def _bounded(self, bound: bounds.Bound) -> None:
        self.bound = bound
        self.validators = [v for v in self.validators if not isinstance(v, (MinValueValidator, MaxValueValidator))] + [
            self._in_bound
        ]

    def _in_bound(self, value) -> None:
        try:
            self.bound.check(value, getattr(self, "field_name", "") or "value")
        except InputError as exc:
            raise serializers.ValidationError(exc.message) from None


def _narrowed(bound: bounds.Bound, kwargs: dict) -> bounds.Bound:
    """``bound``, narrowed to a field's own ``max_value`` (a tighter limit of one endpoint)."""
    if kwargs.get("max_value") is not None and kwargs["max_value"] < bound.high:
        bound = dataclasses.replace(bound, high=kwargs["max_value"])
    kwargs["min_value"] = bound.low if bound.low_inclusive else None
    kwargs["max_value"] = bound.high
    return bound


class BoundedFloatField(_BoundedMixin, FiniteFloatField):
    def __init__(self, *, bound: bounds.Bound, **kwargs) -> None:
        bound = _narrowed(bound, kwargs)
        super().__init__(**kwargs)
        self._bounded(bound)


class BoundedIntegerField(_BoundedMixin, serializers.IntegerField):
    def __init__(self, *, bound: bounds.Bound, **kwargs) -> None:
        bound = _narrowed(bound, kwargs)
        super().__init__(**kwargs)
        self._bounded(bound)


class BoundedFieldSchema(OpenApiSerializerFieldExtension):
    """Documents a bound's open lower end (``hours > 0``) as ``exclusiveMinimum`` (OpenAPI 3.0)."""

    target_class = "accounting.api.serializers.BoundedFloatField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        bound = self.target.bound
        if not bound.low_inclusive:
            schema.update(minimum=bound.low, exclusiveMinimum=True)
        return schema


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with an explicit offset, converted to UTC, between 2000 and 2100."""

    default_error_messages = {
        "naive": "Must include a UTC offset (e.g. 2026-11-26T10:00:00Z).",
        "range": "Must be between 2000-01-01 and 2100-01-01.",
    }

    def to_internal_value(self, value):
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            self.fail("invalid", format="ISO 8601")
        try:
            parsed = super().to_internal_value(value)
        except (OverflowError, ValueError):
            self.fail("range")
        if timezone.is_naive(parsed):
            self.fail("naive")
        # The year as written (the schema's pattern), so an offset near a bound cannot move it out.
        if not EARLIEST.replace(tzinfo=None) <= parsed.replace(tzinfo=None) < LATEST.replace(tzinfo=None):
            self.fail("range")
        try:
            parsed = parsed.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            self.fail("range")
        return parsed

    def enforce_timezone(self, value):
        # Keep offsets as given (checked above); a naive value is an error, not local time.
        return value


class BoundedDateField(serializers.DateField):
    """An ISO 8601 date between 2000-01-01 and 2100-01-01."""

    default_error_messages = {"range": "Must be between 2000-01-01 and 2100-01-01."}

    def to_internal_value(self, value):
        parsed = super().to_internal_value(value)
        if not EARLIEST.date() <= parsed < LATEST.date():
            self.fail("range")
        return parsed


class YearRangeSchema(OpenApiSerializerFieldExtension):
    """States the 2000-2100 range of dates and datetimes as the pattern of their year."""

    target_class = "accounting.api.serializers.AwareDateTimeField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["pattern"] = YEAR_PATTERN
        return schema


class BoundedDateSchema(YearRangeSchema):
    target_class = "accounting.api.serializers.BoundedDateField"


class UnitsField(serializers.DictField):
    """Functional units: {"tokens": 1.2e9, "samples": 5e6}; keys lower-case identifiers."""

    child = FiniteFloatField(min_value=0)
    max_units = 20

    def __init__(self, *, min_units: int = 0, **kwargs) -> None:
        self.min_units = min_units
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        if len(values) < self.min_units:
            raise serializers.ValidationError("At least one unit.")
        validator = serializers.RegexField(UNIT_KEY_PATTERN)
        for key in values:
            try:
                validator.run_validation(key)
            except serializers.ValidationError:
                raise serializers.ValidationError({key: [f"Unit names must match {UNIT_KEY_PATTERN}."]})
        if len(values) > self.max_units:
            raise serializers.ValidationError("At most 20 units.")
        return values


class UnitsFieldSchema(OpenApiSerializerFieldExtension):
    """The number of units as ``minProperties``/``maxProperties``. The key pattern is in the
    description: OpenAPI 3.0 has no ``propertyNames``."""

    target_class = "accounting.api.serializers.UnitsField"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["maxProperties"] = self.target.max_units
            if self.target.min_units:
                schema["minProperties"] = self.target.min_units
            schema["description"] = f"{schema.get('description', '')} Unit names match {UNIT_KEY_PATTERN}.".strip()
        return schema


class ProblemFieldSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="Dotted path of the offending field, e.g. allocation[0].gpus.")
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, as every error of this API is shaped."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    # Declared fields are popped from the class by DRF's metaclass: this does not shadow Serializer.errors.
    errors = ProblemFieldSerializer(many=True, required=False)  # type: ignore[assignment]


_REUSED = threading.local()


def _reused(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """One instance of ``serializer_class`` per thread, its fields built once.

    A serializer instance deep-copies its declared fields (nested serializers included) on
    first use: on a job registration that was ~85 % of validation time, on a footprint most of
    its rendering. ``run_validation`` and ``to_representation`` keep no state on the
    instance, so an instance can serve request after request (one per thread: DRF does not
    promise that concurrent calls are safe). Only for serializers that need no context (no
    request, no instance): the reused one has none."""
    instances = _REUSED.__dict__.setdefault("by_class", {})
    instance = instances.get(serializer_class)
    if instance is None:
        instance = instances[serializer_class] = serializer_class()
    return instance


def represented(serializer_class: type[serializers.Serializer], instance) -> dict:
    """``serializer_class(instance).data``, without building the serializer's fields again."""
    return _reused(serializer_class).to_representation(instance)


def validated(serializer_class: type[serializers.Serializer], data) -> dict:
    """``serializer_class(data=data)``'s validated data, raising its ``ValidationError``.

    Valid input is checked by a reused instance (see ``_reused``). Invalid input is validated
    again by a fresh instance with ``is_valid`` so the errors are exactly DRF's (they are
    rare; their cost does not matter)."""
    instance = _reused(serializer_class)
    try:
        return instance.run_validation(data)
    except serializers.ValidationError:
        fresh = serializer_class(data=data)
        fresh.is_valid(raise_exception=True)
        return fresh.validated_data  # pragma: no cover - is_valid raised for this input above


# --- jobs: requests ------------------------------------------------------------------------


class AllocationItemSerializer(StrictSerializer):
    host = serializers.RegexField(HOSTNAME_PATTERN, required=False, help_text="Hostname as the scheduler knows it.")
    gpus = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=1023),
        required=False,
        min_length=1,
        max_length=64,
        help_text="GPU indices on the host (as in CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS).",
    )
    gpu_uuid = serializers.RegexField(
        r"^(GPU|MIG)-[A-Za-z0-9\-/]{1,96}$",
        required=False,
        help_text="NVML UUID of a GPU already reported by an agent.",
    )
    fraction = FiniteFloatField(
        required=False,
        default=1.0,
        min_value=0.0,
        max_value=1.0,
        help_text="Share of the device held (MIG slice or shared GPU); 1 = whole device.",
    )

    def validate_fraction(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def validate(self, attrs):
        by_uuid = "gpu_uuid" in attrs
        by_host = "host" in attrs or "gpus" in attrs
        if by_uuid == by_host:
            raise serializers.ValidationError("Give either host and gpus, or gpu_uuid.")
        if by_host:
            if "host" not in attrs:
                raise serializers.ValidationError({"host": ["This field is required with gpus."]})
            if "gpus" not in attrs:
                raise serializers.ValidationError({"gpus": ["This field is required with host."]})
            if len(set(attrs["gpus"])) != len(attrs["gpus"]):
                raise serializers.ValidationError({"gpus": ["GPU indices must be unique."]})
        return attrs

    @staticmethod
    def to_spec(item: dict) -> AllocationSpec:
        return AllocationSpec(
            host=item.get("host"),
            gpus=tuple(item.get("gpus", ())),
            gpu_uuid=item.get("gpu_uuid"),
            fraction=item.get("fraction", 1.0),
        )


class ModelMetaSerializer(StrictSerializer):
    parameters = FiniteFloatField(required=False, min_value=0, help_text="Total parameters.")
    active_parameters = FiniteFloatField(required=False, min_value=0, help_text="Active per token (MoE).")
    precision = serializers.ChoiceField(required=False, choices=PRECISIONS)
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=10**9)
    sequence_length = serializers.IntegerField(required=False, min_value=1, max_value=10**9)
    dataset_tokens = FiniteFloatField(required=False, min_value=0, help_text="Training tokens planned.")
    experts = serializers.IntegerField(required=False, min_value=1, max_value=100_000)
    embedding_tables_gb = FiniteFloatField(required=False, min_value=0, help_text="Recommenders.")
    framework = serializers.RegexField(r"^[A-Za-z0-9 ._+\-]{1,60}$", required=False)


class JobRegisterSerializer(StrictSerializer):
    scheduler_job_id = serializers.RegexField(
        SCHEDULER_JOB_ID_PATTERN, help_text="The scheduler's job id (Slurm job id, Kubernetes pod uid)."
    )
    cluster = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Cluster id. Implied by a scheduler token (must match if given); required for admin tokens.",
    )
    team = serializers.SlugField(max_length=50, help_text="Team slug in the token's organisation.")
    user = serializers.RegexField(r"^[A-Za-z0-9._@+\-]{1,150}$", required=False, help_text="Username that ran the job.")
    name = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=KINDS)
    family = serializers.ChoiceField(choices=FAMILIES, required=False, default=Job.Family.OTHER)
    started_at = AwareDateTimeField(required=False, help_text="Default: now.")
    requested_s = FiniteFloatField(required=False, min_value=0, max_value=10**9, help_text="Requested wall time (s).")
    power_cap_w = FiniteFloatField(required=False, min_value=1, max_value=10_000)
    model_meta = ModelMetaSerializer(required=False)
    allocation = AllocationItemSerializer(many=True, required=False, max_length=512)  # type: ignore[call-arg]
    sluid = serializers.RegexField(
        SLUID_PATTERN,
        required=False,
        help_text="Slurm 26.05+: the run's SLUID (the prolog's SLURM_JOB_SLUID). Slurm names the job's cgroup v2 "
        "directory with it, so the agent reports `slurm:<SLUID>` for its processes; the job then answers to both "
        "keys. Each run of a requeued job has its own: re-registering adds it.",
    )


class JobUpdateSerializer(StrictSerializer):
    allocation = AllocationItemSerializer(  # type: ignore[call-arg]
        many=True,
        required=False,
        max_length=512,
        help_text="The complete allocation from effective_at on (devices not named are released).",
    )
    effective_at = AwareDateTimeField(required=False, help_text="When the allocation change happened. Default: now.")
    name = serializers.CharField(max_length=300, required=False, allow_blank=True)
    requested_s = FiniteFloatField(required=False, min_value=0, max_value=10**9)
    power_cap_w = FiniteFloatField(required=False, min_value=1, max_value=10_000)
    model_meta = ModelMetaSerializer(required=False, help_text="Merged key by key into the stored metadata.")
    units = UnitsField(required=False, help_text="Functional units so far (cumulative totals), merged by key.")
    primary_unit = serializers.RegexField(UNIT_KEY_PATTERN, required=False, help_text="Unit SCI is reported per.")
    quality_metric = serializers.RegexField(r"^[A-Za-z0-9 ._/@%+\-]{1,60}$", required=False)
    quality_value = FiniteFloatField(required=False)

    def validate(self, attrs):
        if "effective_at" in attrs and "allocation" not in attrs:
            raise serializers.ValidationError({"effective_at": ["Only meaningful with allocation."]})
        return attrs


class JobEndSerializer(StrictSerializer):
    exit_state = serializers.ChoiceField(choices=EXIT_STATES)
    ended_at = AwareDateTimeField(required=False, help_text="Default: now.")


class JobUnitsSerializer(StrictSerializer):
    units = UnitsField(min_units=1, help_text='Counts per unit, e.g. {"tokens": 1.2e9}.')
    mode = serializers.ChoiceField(
        choices=["set", "add"],
        required=False,
        default="set",
        help_text="set: cumulative totals (retry-safe); add: increments since the last report.",
    )
    primary_unit = serializers.RegexField(UNIT_KEY_PATTERN, required=False)
    quality_metric = serializers.RegexField(r"^[A-Za-z0-9 ._/@%+\-]{1,60}$", required=False)
    quality_value = FiniteFloatField(required=False)


class JobListQuerySerializer(serializers.Serializer):
    team = serializers.SlugField(max_length=50, required=False)
    status = serializers.ChoiceField(choices=Job.Status.choices, required=False)
    family = serializers.ChoiceField(choices=FAMILIES, required=False)
    kind = serializers.ChoiceField(choices=KINDS, required=False)
    user = serializers.RegexField(r"^[A-Za-z0-9._@+\-]{1,150}$", required=False)
    cluster = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    started_after = AwareDateTimeField(required=False, help_text="started_at >= this")
    started_before = AwareDateTimeField(required=False, help_text="started_at < this")


class ClusterQuerySerializer(serializers.Serializer):
    cluster = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Cluster id; implied by a scheduler token, required otherwise.",
    )


# --- jobs: responses -----------------------------------------------------------------------


class PrebuiltFieldsMixin:
    """A ModelSerializer builds its fields from the model (introspection, per field kwargs) on
    every instantiation, i.e. on every response. They depend only on the class and its Meta:
    build them once per class and hand each instance copies, as DRF does with declared fields."""

    def get_fields(self):
        cls = type(self)
        prebuilt = cls.__dict__.get("_prebuilt_fields")
        if prebuilt is None:
            prebuilt = super().get_fields()  # type: ignore[misc]
            cls._prebuilt_fields = prebuilt  # type: ignore[attr-defined]
        return copy.deepcopy(prebuilt)


class AllocationOutSerializer(PrebuiltFieldsMixin, serializers.ModelSerializer):
    host = serializers.CharField(source="device.host.hostname")
    gpu_index = serializers.IntegerField(source="device.index")
    gpu_uuid = serializers.CharField(source="device.uuid")
    pending_device = serializers.SerializerMethodField(
        help_text="True while the agent has not reported this GPU yet (placeholder uuid)."
    )

    class Meta:
        model = JobAllocation
        fields = ["host", "gpu_index", "gpu_uuid", "pending_device", "fraction", "start", "end"]

    def get_pending_device(self, obj: JobAllocation) -> bool:
        return obj.device.uuid.startswith(PENDING_UUID_PREFIX)

    def to_representation(self, instance: JobAllocation) -> dict:
        # Hot path (every job response): the declared fields above define the schema; building
        # and deep-copying them per response cost more than the request's queries. Same output.
        return _allocation_out(instance)


_DATETIME = serializers.DateTimeField()  # DRF's rendering (current time zone, "Z" for UTC)


def _datetime(value: dt.datetime | None) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def _float(value) -> float | None:
    return None if value is None else float(value)


def _allocation_out(a: JobAllocation) -> dict:
    device = a.device
    return {
        "host": str(device.host.hostname),
        "gpu_index": int(device.index),
        "gpu_uuid": str(device.uuid),
        "pending_device": device.uuid.startswith(PENDING_UUID_PREFIX),
        "fraction": float(a.fraction),
        "start": _datetime(a.start),
        "end": _datetime(a.end),
    }


class JobSerializer(PrebuiltFieldsMixin, serializers.ModelSerializer):
    cluster = serializers.IntegerField(source="cluster_id")
    cluster_slug = serializers.CharField(source="cluster.slug")
    team = serializers.CharField(source="team.slug")
    user = serializers.CharField(source="username")
    allocations = AllocationOutSerializer(many=True)
    model_meta = serializers.DictField()
    units = serializers.DictField(child=serializers.FloatField())
    kind = serializers.ChoiceField(choices=KINDS)
    family = serializers.ChoiceField(choices=FAMILIES)

    class Meta:
        model = Job
        fields = [
            "id",
            "scheduler_job_id",
            "cluster",
            "cluster_slug",
            "team",
            "user",
            "name",
            "kind",
            "family",
            "status",
            "started_at",
            "ended_at",
            "requested_s",
            "power_cap_w",
            "model_meta",
            "units",
            "primary_unit",
            "quality_metric",
            "quality_value",
            "allocations",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, job: Job) -> dict:
        # As the fields declared above render it (they define the schema), without building
        # them per response: ModelSerializer field construction dominated the job endpoints.
        return {
            "id": int(job.pk),
            "scheduler_job_id": str(job.scheduler_job_id),
            "cluster": int(job.cluster_id),
            "cluster_slug": str(job.cluster.slug),
            "team": str(job.team.slug),
            "user": str(job.username),
            "name": str(job.name),
            "kind": str(job.kind),
            "family": str(job.family),
            "status": str(job.status),
            "started_at": _datetime(job.started_at),
            "ended_at": _datetime(job.ended_at),
            "requested_s": _float(job.requested_s),
            "power_cap_w": _float(job.power_cap_w),
            "model_meta": None if job.model_meta is None else {str(k): v for k, v in job.model_meta.items()},
            "units": None if job.units is None else {str(k): float(v) for k, v in job.units.items()},
            "primary_unit": str(job.primary_unit),
            "quality_metric": str(job.quality_metric),
            "quality_value": _float(job.quality_value),
            "allocations": [_allocation_out(a) for a in job.allocations.all()],
            "created_at": _datetime(job.created_at),
            "updated_at": _datetime(job.updated_at),
        }


class EnergyBreakdownSerializer(serializers.Serializer):
    total_j = serializers.FloatField(source="energy_j")
    total_kwh = serializers.SerializerMethodField()
    gpu_j = serializers.FloatField(source="gpu_energy_j")
    gpu_active_j = serializers.FloatField(source="gpu_active_energy_j")
    gpu_idle_j = serializers.FloatField(source="gpu_idle_energy_j")
    host_j = serializers.FloatField(source="host_energy_j")
    facility_j = serializers.FloatField(source="facility_energy_j")

    def get_total_kwh(self, obj) -> float:
        return obj.energy_j / 3.6e6


class EnergyCoversSerializer(serializers.Serializer):
    gpu_j = serializers.FloatField(source="covers_gpu_energy_j", help_text="From readings of the GPU alone.")
    gpu_memory_j = serializers.FloatField(
        source="covers_gpu_memory_energy_j", help_text="From readings that cover the GPU and its memory."
    )
    gpu_cpu_memory_j = serializers.FloatField(
        source="covers_gpu_cpu_memory_energy_j",
        help_text="From superchip module counters (Grace Hopper / Grace Blackwell, MI300A) that also cover the CPU "
        "and its memory: no host CPU/DRAM energy was added for them.",
    )
    unrecorded_j = serializers.FloatField(
        source="covers_unrecorded_energy_j", help_text="From ledger entries written before coverage was recorded."
    )


class CarbonSerializer(serializers.Serializer):
    operational_g = serializers.FloatField(source="co2e_operational_g")
    embodied_g = serializers.FloatField(source="co2e_embodied_g")
    total_g = serializers.FloatField(source="co2e_g")
    low_g = serializers.FloatField(source="co2e_low_g")
    high_g = serializers.FloatField(source="co2e_high_g")


class UnitEfficiencySerializer(serializers.Serializer):
    unit = serializers.CharField()
    count = serializers.FloatField()
    energy_j_per_unit = serializers.FloatField()
    co2e_g_per_unit = serializers.FloatField()


class BasisSerializer(serializers.Serializer):
    """Which intensity basis a location-based figure rests on, by energy share."""

    direct_share = serializers.FloatField()
    lifecycle_share = serializers.FloatField()
    co2_only_share = serializers.FloatField()
    label = serializers.CharField()  # type: ignore[assignment]


class JobScope2Serializer(serializers.Serializer):
    """Dual Scope 2 reporting of a job, upstream electricity emissions and water
    (``accounting.selectors.disclosure.job_market_water``)."""

    location_based_g = serializers.FloatField(help_text="Scope 2 location-based: = co2e.operational_g.")
    location_basis = BasisSerializer()
    market_based_g = serializers.FloatField(
        help_text="Scope 2 market-based: the job's share, pro rata to its energy by hour, of its site's instruments "
        "and residual mix."
    )
    market_matching = serializers.CharField(help_text="`hourly`, `annual`, `hourly + annual` or `none`.")
    residual_sources = serializers.ListField(child=serializers.CharField())
    upstream_g = serializers.FloatField(help_text="Scope 3 cat. 3 (life-cycle minus direct intensity), where known.")
    water_onsite_l = serializers.FloatField(allow_null=True, help_text="IT energy x site WUE; null: no WUE.")
    water_offsite_l = serializers.FloatField(allow_null=True, help_text="All energy x grid water; null: none known.")
    water_low_l = serializers.FloatField()
    water_high_l = serializers.FloatField()
    water_it_kwh_without_wue = serializers.FloatField(help_text="IT energy of hours before the site's first WUE.")


class FootprintQuerySerializer(serializers.Serializer):
    include = serializers.ChoiceField(
        choices=["scope2"],
        required=False,
        help_text="`scope2`: add the `scope2` section (market-based Scope 2, upstream, water); a few more queries.",
    )


class JobFootprintSerializer(serializers.Serializer):
    job = serializers.IntegerField(source="job.id")
    scheduler_job_id = serializers.CharField(source="job.scheduler_job_id")
    status = serializers.CharField(source="job.status")
    is_final = serializers.BooleanField()
    has_ledger = serializers.BooleanField(help_text="False until the first telemetry is attributed (all zeros).")
    method_version = serializers.CharField()
    energy = EnergyBreakdownSerializer(source="*")
    co2e = CarbonSerializer(source="*")
    device_hours = serializers.FloatField()
    measured_fraction = serializers.FloatField(help_text="Share of GPU energy from energy counters.")
    energy_covers = EnergyCoversSerializer(
        source="*", help_text="The job's GPU energy (`energy.gpu_j`) by what the device's readings covered."
    )
    efficiency = UnitEfficiencySerializer(many=True)
    primary_unit = serializers.CharField(source="job.primary_unit")
    sci_g_per_unit = serializers.FloatField(allow_null=True, help_text="(operational + embodied) / primary unit.")
    last_window_end = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    scope2 = JobScope2Serializer(
        allow_null=True, help_text="With `include=scope2` and a ledger: dual Scope 2, upstream and water; else null."
    )


# --- budgets -------------------------------------------------------------------------------


class BudgetCheckSerializer(StrictSerializer):
    team = serializers.SlugField(max_length=50)
    co2e_g = FiniteFloatField(min_value=0, max_value=1e15, help_text="The job's estimated footprint (gCO2e).")
    at = AwareDateTimeField(required=False, help_text="Planned start; selects the budget period. Default: now.")


class BudgetSetSerializer(StrictSerializer):
    team = serializers.SlugField(max_length=50)
    period_start = BoundedDateField()
    period_end = BoundedDateField(help_text="Exclusive; after period_start.")
    co2e_budget_g = FiniteFloatField(min_value=0, max_value=1e15)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if attrs["period_end"] <= attrs["period_start"]:
            raise serializers.ValidationError({"period_end": ["Must be after period_start."]})
        return attrs


class BudgetListQuerySerializer(serializers.Serializer):
    team = serializers.SlugField(max_length=50, required=False)
    active = serializers.BooleanField(
        required=False, default=None, help_text="Only budgets whose period contains today."
    )


class BudgetStatusSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="budget.id")
    team = serializers.CharField(source="budget.team.slug")
    period_start = serializers.DateField(source="budget.period_start")
    period_end = serializers.DateField(source="budget.period_end")
    co2e_budget_g = serializers.FloatField(source="budget.co2e_budget_g")
    note = serializers.CharField(source="budget.note")
    as_of = serializers.DateTimeField()
    spent_g = serializers.FloatField()
    forecast_g = serializers.FloatField(help_text="Spent extrapolated linearly to the period end.")
    remaining_g = serializers.FloatField()
    used_fraction = serializers.FloatField(allow_null=True)
    elapsed_fraction = serializers.FloatField()


class ThresholdsSerializer(serializers.Serializer):
    warn_fraction = serializers.FloatField()
    hold_fraction = serializers.FloatField()


class BudgetDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["ok", "warn", "hold"])
    team = serializers.CharField(source="team.slug")
    estimate_g = serializers.FloatField()
    projected_g = serializers.FloatField(help_text="Spent so far in the period + this estimate.")
    projected_fraction = serializers.FloatField(allow_null=True, help_text="projected / budget (null: no budget or 0).")
    thresholds = ThresholdsSerializer(source="*")
    budget = BudgetStatusSerializer(source="status", allow_null=True)


# --- advice --------------------------------------------------------------------------------


class AdviceRequestSerializer(StrictSerializer):
    hardware_model = serializers.SlugField(
        max_length=64, help_text="Device key of the what-if catalog (e.g. h100-sxm5-80gb) or an inventory model."
    )
    gpu_count = BoundedIntegerField(bound=bounds.DEVICE_COUNT, max_value=100_000)
    hours = BoundedFloatField(bound=bounds.HOURS, max_value=2160, help_text="Expected run time in hours.")
    avg_power_w = FiniteFloatField(
        required=False,
        min_value=1,
        max_value=10_000,
        help_text="Average draw per GPU, within the device's idle draw and power limit.",
    )
    utilisation = BoundedFloatField(
        bound=bounds.UTILISATION,
        required=False,
        help_text="Average utilisation (power = idle + (max - idle) x u); default 0.8 when no avg_power_w.",
    )
    clusters = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        min_length=1,
        max_length=50,
        help_text="Candidate cluster ids (default: all of the organisation's; a scheduler's own cluster first).",
    )
    earliest_start = AwareDateTimeField(required=False, help_text="Default: now.")
    deadline = AwareDateTimeField(required=False, help_text="Latest end. Default: earliest_start + hours + 24 h.")

    def validate_clusters(self, value):
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Cluster ids must be unique.")
        return value

    def validate(self, attrs):
        if "avg_power_w" in attrs and "utilisation" in attrs:
            raise serializers.ValidationError({"utilisation": ["Give avg_power_w or utilisation, not both."]})
        return attrs


class AdviceTimingSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    co2e_operational_g = serializers.FloatField()
    intensity_g_per_kwh = serializers.FloatField(help_text="Mean over the run.")


class AdviceCandidateSerializer(serializers.Serializer):
    cluster = serializers.IntegerField(source="cluster.id")
    cluster_slug = serializers.CharField(source="cluster.slug")
    site = serializers.CharField(source="cluster.site.slug")
    zone = serializers.CharField(source="cluster.site.zone.code")
    pue = serializers.FloatField(source="estimate.footprint.pue")
    avg_power_w = serializers.FloatField(source="estimate.footprint.avg_power_w", help_text="Per GPU.")
    it_energy_kwh = serializers.SerializerMethodField()
    total_energy_kwh = serializers.SerializerMethodField(help_text="IT x PUE.")
    annual_intensity_g_per_kwh = serializers.FloatField(source="estimate.footprint.intensity_g_per_kwh")
    co2e_operational_annual_g = serializers.FloatField(
        source="estimate.footprint.operational_co2e_g", help_text="On the zone's annual factor."
    )
    co2e_embodied_g = serializers.FloatField()
    co2e_low_g = serializers.FloatField(source="estimate.footprint.co2e_low_g")
    co2e_high_g = serializers.FloatField(source="estimate.footprint.co2e_high_g")
    at_earliest = AdviceTimingSerializer()
    best = AdviceTimingSerializer()
    saving_g = serializers.FloatField(help_text="at_earliest - best (operational).")
    window_source = serializers.ChoiceField(choices=["hourly", "annual"])
    window_candidates = serializers.IntegerField(help_text="Start times compared.")

    def get_it_energy_kwh(self, obj) -> float:
        return obj.estimate.footprint.it_energy_j / 3.6e6

    def get_total_energy_kwh(self, obj) -> float:
        return obj.estimate.footprint.total_energy_j / 3.6e6


class AdviceRecommendationSerializer(serializers.Serializer):
    cluster = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    co2e_g = serializers.FloatField(help_text="Operational + embodied.")
    baseline_co2e_g = serializers.FloatField(help_text="First candidate, starting at earliest_start.")
    saving_g = serializers.FloatField()
    saving_fraction = serializers.FloatField()


class AdviceResponseSerializer(serializers.Serializer):
    hardware_model = serializers.CharField()
    gpu_count = serializers.IntegerField()
    hours = serializers.FloatField()
    earliest_start = serializers.DateTimeField()
    deadline = serializers.DateTimeField()
    candidates = AdviceCandidateSerializer(many=True)
    recommendation = serializers.SerializerMethodField()
    assumptions = serializers.ListField(child=serializers.CharField())

    @extend_schema_field(AdviceRecommendationSerializer)
    def get_recommendation(self, obj) -> dict:
        best = obj.recommended
        baseline = obj.baseline
        baseline_g = baseline.at_earliest.co2e_operational_g + baseline.co2e_embodied_g
        best_g = best.best_total_g
        return AdviceRecommendationSerializer(
            {
                "cluster": best.cluster.id,
                "start": best.best.start,
                "end": best.best.end,
                "co2e_g": best_g,
                "baseline_co2e_g": baseline_g,
                "saving_g": baseline_g - best_g,
                "saving_fraction": (baseline_g - best_g) / baseline_g if baseline_g > 0 else 0.0,
            }
        ).data
