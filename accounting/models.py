"""Accounting data model: tenancy, fleet, factors, jobs, allocations and the carbon ledger.

Units live in field names (``energy_j``, ``co2e_g``, ``power_w``, ``lifetime_h``). All
datetimes are aware UTC. Factor rows are versioned; every ledger row records the method
version and the factor versions it used so an auditor can re-derive it.
"""

from __future__ import annotations

from typing import NamedTuple

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q


class Organization(models.Model):
    """A tenant: everything below (teams, sites, jobs, tokens) belongs to exactly one organisation."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    # Policy for redistributing the fleet-overhead account in reports (declared, never hidden).
    overhead_policy = models.CharField(
        max_length=20,
        choices=[("separate", "Report separately"), ("pro_rata", "Redistribute pro rata by energy")],
        default="separate",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    """A team of an organisation: the unit jobs are charged to and budgets are set for."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=200)
    slug = models.SlugField()
    report_email = models.EmailField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="team_org_slug_uniq")]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's access to an organisation: to one team's data, or (admin, no team) to all of it."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Organisation admin"
        MEMBER = "member", "Team member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    # Null team with role=admin: sees the whole organisation.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "org", "team"], name="membership_uniq"),
        ]


class CarbonBudget(models.Model):
    """A team's carbon budget for a period of dates [period_start, period_end), in gCO2e."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budgets")
    period_start = models.DateField()
    period_end = models.DateField()  # exclusive
    co2e_budget_g = models.FloatField()
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "period_start"], name="budget_team_period_uniq"),
            models.CheckConstraint(condition=Q(co2e_budget_g__gte=0), name="budget_nonneg"),
        ]


# --- factors -------------------------------------------------------------------------------


class FactorSource(models.TextChoices):
    CODECARBON = "codecarbon", "codecarbon shipped data"
    ELECTRICITYMAPS = "electricitymaps", "Electricity Maps"
    WATTTIME = "watttime", "WattTime"
    OPERATOR = "operator", "Operator entry"
    PUBLISHED = "published", "Published figure"
    ESTIMATE = "estimate", "Architecture-level estimate"


class IntensityBasis(models.TextChoices):
    """What an intensity counts. Location-based Scope 2 (GHG Protocol Scope 2 Guidance) is the
    generation (direct, combustion) factor; the upstream and infrastructure part of a life-cycle
    factor belongs to Scope 3 category 3, reported beside it, never inside it."""

    DIRECT = "direct", "Direct (combustion at the plant)"
    LIFECYCLE = "lifecycle", "Life-cycle (direct + upstream + infrastructure)"


class GasCoverage(models.TextChoices):
    CO2E = "co2e", "CO2e (CO2, CH4, N2O)"
    CO2 = "co2", "CO2 only"


class GridZone(models.Model):
    """A grid region with an annual average intensity in gCO2e/kWh (fallback when no hourly data).

    ``annual_basis`` and ``annual_gases`` say what ``annual_intensity_g_per_kwh`` counts;
    ``annual_lifecycle_g_per_kwh`` is the zone's life-cycle figure beside a direct one, where a
    source gives it (the upstream part is their difference)."""

    code = models.CharField(max_length=64, unique=True)  # e.g. "FR", "US-WA", "CA-QC", "gcp:europe-west1"
    name = models.CharField(max_length=200)
    annual_intensity_g_per_kwh = models.FloatField()
    annual_marginal_g_per_kwh = models.FloatField(null=True, blank=True)
    annual_basis = models.CharField(max_length=10, choices=IntensityBasis.choices, default=IntensityBasis.LIFECYCLE)
    annual_gases = models.CharField(max_length=5, choices=GasCoverage.choices, default=GasCoverage.CO2E)
    annual_lifecycle_g_per_kwh = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=40, choices=FactorSource.choices)
    source_detail = models.CharField(max_length=300, blank=True)  # file, dataset, URL
    vintage = models.CharField(max_length=40, blank=True)  # year or dataset release
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(annual_intensity_g_per_kwh__gte=0), name="zone_intensity_nonneg"),
            models.CheckConstraint(
                condition=Q(annual_lifecycle_g_per_kwh__isnull=True) | Q(annual_lifecycle_g_per_kwh__gte=0),
                name="zone_lifecycle_nonneg",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.annual_intensity_g_per_kwh:.0f} g/kWh)"


class IntensitySignal(models.TextChoices):
    AVERAGE = "average", "Location-based average"
    MARGINAL = "marginal", "Marginal"


class HourlyIntensity(models.Model):
    """Grid intensity of a zone for one UTC hour (``hour`` is its start), in gCO2e/kWh; imported or
    fetched, average or marginal signal."""

    zone = models.ForeignKey(GridZone, on_delete=models.CASCADE, related_name="hourly")
    hour = models.DateTimeField()  # start of the hour, UTC
    signal = models.CharField(max_length=10, choices=IntensitySignal.choices, default=IntensitySignal.AVERAGE)
    intensity_g_per_kwh = models.FloatField()
    # What intensity_g_per_kwh counts, and the life-cycle value of the same hour beside a direct
    # one (an Electricity Maps export carries both columns).
    basis = models.CharField(max_length=10, choices=IntensityBasis.choices, default=IntensityBasis.DIRECT)
    gases = models.CharField(max_length=5, choices=GasCoverage.choices, default=GasCoverage.CO2E)
    lifecycle_g_per_kwh = models.FloatField(null=True, blank=True)
    is_forecast = models.BooleanField(default=False)
    # True when the provider was unreachable and the value was carried from the last good
    # value or the annual factor.
    is_fallback = models.BooleanField(default=False)
    source = models.CharField(max_length=40, choices=FactorSource.choices)
    version = models.PositiveIntegerField(default=1)
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["zone", "signal", "hour", "is_forecast"], name="hourly_intensity_uniq"),
            models.CheckConstraint(condition=Q(intensity_g_per_kwh__gte=0), name="hourly_intensity_nonneg"),
        ]
        indexes = [models.Index(fields=["zone", "signal", "hour"])]


class HardwareModel(models.Model):
    """Catalog entry: an accelerator or host component, with specs and embodied carbon."""

    class Kind(models.TextChoices):
        GPU = "gpu", "Accelerator"
        CPU = "cpu", "CPU"
        DRAM = "dram", "DRAM (per GB)"
        SSD = "ssd", "SSD (per GB)"
        CHASSIS = "chassis", "Server chassis"

    class EmbodiedKind(models.TextChoices):
        LCA = "lca", "Published LCA"
        ESTIMATE = "estimate", "Architecture-level estimate"

    key = models.SlugField(max_length=64, unique=True)  # e.g. "h100-sxm-80gb"
    name = models.CharField(max_length=200)
    vendor = models.CharField(max_length=40)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GPU)
    # Substrings of the NVML/vendor name that identify this model (for devices seen on hosts).
    match_names = models.JSONField(default=list, blank=True)
    idle_power_w = models.FloatField(null=True, blank=True)
    max_power_w = models.FloatField(null=True, blank=True)
    # {"fp64": 3.4e13, "bf16": 9.89e14, ...} FLOP/s, dense.
    peak_flops = models.JSONField(default=dict, blank=True)
    memory_gb = models.FloatField(null=True, blank=True)
    memory_bandwidth_gb_s = models.FloatField(null=True, blank=True)
    interconnect_gb_s = models.FloatField(null=True, blank=True)
    process_node_nm = models.FloatField(null=True, blank=True)
    die_area_mm2 = models.FloatField(null=True, blank=True)
    release_year = models.PositiveIntegerField(null=True, blank=True)
    embodied_kg = models.FloatField()
    embodied_low_kg = models.FloatField()
    embodied_high_kg = models.FloatField()
    embodied_kind = models.CharField(max_length=10, choices=EmbodiedKind.choices)
    embodied_source = models.CharField(max_length=500)
    lifetime_years = models.FloatField(default=5.0)
    expected_utilisation = models.FloatField(default=0.8)
    # {"max_power_w": "NVIDIA H100 datasheet 2023", ...}
    sources = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(embodied_low_kg__lte=models.F("embodied_kg"))
                & Q(embodied_kg__lte=models.F("embodied_high_kg")),
                name="hw_embodied_range_ordered",
            ),
            models.CheckConstraint(condition=Q(lifetime_years__gt=0), name="hw_lifetime_pos"),
            models.CheckConstraint(
                condition=Q(expected_utilisation__gt=0) & Q(expected_utilisation__lte=1), name="hw_util_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class FactorChange(models.Model):
    """Audit trail of every factor edit: who, why, before/after; drives recomputes."""

    changed_at = models.DateTimeField(auto_now_add=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    reason = models.CharField(max_length=500)
    factor_type = models.CharField(max_length=40)  # "zone", "hourly_intensity", "pue", "hardware"
    factor_key = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    # Period of ledger rows the change affects (null = all).
    affects_from = models.DateTimeField(null=True, blank=True)
    affects_to = models.DateTimeField(null=True, blank=True)
    recompute_status = models.CharField(
        max_length=12,
        choices=[("pending", "pending"), ("running", "running"), ("done", "done"), ("none", "not needed")],
        default="pending",
    )


# --- fleet ---------------------------------------------------------------------------------


class Site(models.Model):
    """A data centre in one grid zone, with its PUE (dimensionless, >= 1) and its source and version;
    ``wue_l_per_kwh`` is litres of water per kWh of IT energy."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    slug = models.SlugField()
    zone = models.ForeignKey(GridZone, on_delete=models.PROTECT, related_name="sites")
    pue = models.FloatField(default=1.4)
    pue_source = models.CharField(max_length=300, default="operator estimate")
    pue_version = models.PositiveIntegerField(default=1)
    wue_l_per_kwh = models.FloatField(null=True, blank=True)
    # Per-site overrides of catalog lifetime/utilisation: {"h100-sxm-80gb": {"lifetime_years": 4}}
    hardware_overrides = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "slug"], name="site_org_slug_uniq"),
            models.CheckConstraint(condition=Q(pue__gte=1.0), name="site_pue_ge_1"),
        ]

    def __str__(self) -> str:
        return self.name


class SitePue(models.Model):
    """PUE time series / history for a site; the newest row at or before t applies."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="pue_series")
    valid_from = models.DateTimeField()
    pue = models.FloatField()
    source = models.CharField(max_length=300)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "valid_from"], name="site_pue_uniq"),
            models.CheckConstraint(condition=Q(pue__gte=1.0), name="site_pue_series_ge_1"),
        ]


class Cluster(models.Model):
    """A scheduler's cluster (Slurm, Kubernetes) at a site; job ids are unique within it."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="clusters")
    name = models.CharField(max_length=200)
    slug = models.SlugField()
    scheduler = models.CharField(
        max_length=20, choices=[("slurm", "Slurm"), ("kubernetes", "Kubernetes"), ("other", "Other")], default="slurm"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "slug"], name="cluster_site_slug_uniq")]

    def __str__(self) -> str:
        return self.name


class Host(models.Model):
    """A server running the agent. ``gpu_slots`` is the denominator of each job's share of host
    energy. What telemetry has stored of its stream (the last batch's seq and window end) is
    telemetry's: ``host.stream`` (``telemetry.models.HostStream``)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="hosts")
    hostname = models.CharField(max_length=253)
    cpu_model = models.CharField(max_length=200, blank=True)
    cpu_tdp_w = models.FloatField(null=True, blank=True)
    dram_gb = models.FloatField(default=0)
    ssd_gb = models.FloatField(default=0)
    gpu_slots = models.PositiveIntegerField(default=8)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "hostname"], name="host_cluster_name_uniq")]

    def __str__(self) -> str:
        return self.hostname


class Device(models.Model):
    """A GPU (or MIG instance) by its NVML UUID, with its catalog hardware model; a non-null
    ``lifetime_years`` overrides the catalog's for embodied amortisation."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="devices")
    uuid = models.CharField(max_length=100, unique=True)  # NVML UUID ("GPU-..." or "MIG-...")
    index = models.PositiveIntegerField(default=0)
    reported_name = models.CharField(max_length=200, blank=True)
    hardware_model = models.ForeignKey(HardwareModel, on_delete=models.PROTECT, null=True, blank=True)
    deployed_on = models.DateField(null=True, blank=True)
    lifetime_years = models.FloatField(null=True, blank=True)  # override of the catalog
    power_limit_w = models.FloatField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.host.hostname}/{self.index} {self.reported_name}"


# --- jobs ----------------------------------------------------------------------------------


class Job(models.Model):
    """A scheduler job (unique per cluster and scheduler id), charged to one team; ``units`` are
    its functional units (tokens, samples, queries) and ``requested_s`` its requested wall time."""

    class Kind(models.TextChoices):
        TRAINING = "training", "Training"
        INFERENCE = "inference", "Inference"

    class Family(models.TextChoices):
        RECOMMENDER = "recommender", "Recommender"
        LLM = "llm", "LLM"
        MOE = "moe", "Mixture-of-Experts"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        PREEMPTED = "preempted", "Preempted"
        CANCELLED = "cancelled", "Cancelled"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="jobs")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="jobs")
    scheduler_job_id = models.CharField(max_length=200)
    name = models.CharField(max_length=300, blank=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="jobs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    username = models.CharField(max_length=150, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    family = models.CharField(max_length=12, choices=Family.choices, default=Family.OTHER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    requested_s = models.FloatField(null=True, blank=True)
    # {"parameters": 7e9, "active_parameters": ..., "precision": "bf16", "batch_size": 32, ...}
    model_meta = models.JSONField(default=dict, blank=True)
    # Functional units reported by the job: {"tokens": 1.2e9, "samples": ..., "queries": ...}
    units = models.JSONField(default=dict, blank=True)
    primary_unit = models.CharField(max_length=20, blank=True)  # which key of units SCI uses
    quality_metric = models.CharField(max_length=60, blank=True)
    quality_value = models.FloatField(null=True, blank=True)
    power_cap_w = models.FloatField(null=True, blank=True)
    # Slurm 26.05 SLUIDs of the job's runs ("s" + 13 base32 digits, as Slurm prints them), sent by
    # the prolog (SLURM_JOB_SLUID): the agent reports "slurm:<SLUID>" for processes it finds in a
    # SLUID-named cgroup, and they are this job's as much as "slurm:<scheduler_job_id>".
    sluids = models.JSONField(default=list, blank=True, db_default=[])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cluster", "scheduler_job_id"], name="job_cluster_schedid_uniq"),
        ]
        indexes = [
            models.Index(fields=["org", "started_at"]),
            models.Index(fields=["team", "started_at"]),
            models.Index(fields=["status"]),
            # Trade-offs page and filtered job lists.
            models.Index(fields=["org", "family", "kind", "started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.scheduler_job_id} {self.name}"


class JobAllocation(models.Model):
    """A job holds a device (or a MIG slice / shared share of it) over [start, end)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="allocations")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="allocations")
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)  # null = still held
    # Fraction of the device the allocation holds when sliced (MIG 1g of 7 = 1/7); 1 = whole.
    fraction = models.FloatField(default=1.0)
    mig_instance = models.CharField(max_length=100, blank=True)

    class Source(models.TextChoices):
        SCHEDULER = "scheduler", "Scheduler"
        # A job registered without an allocation (e.g. a Kubernetes pod from the watcher) holds
        # the GPUs the agent sees its processes on, for the job's life.
        OBSERVED = "observed", "Observed by the agent"

    source = models.CharField(max_length=12, choices=Source.choices, default=Source.SCHEDULER)

    class Meta:
        indexes = [models.Index(fields=["device", "start"])]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "device"], condition=Q(source="observed"), name="alloc_observed_once"
            ),
            models.CheckConstraint(condition=Q(fraction__gt=0) & Q(fraction__lte=1), name="alloc_fraction_range"),
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gt=models.F("start")), name="alloc_end_after_start"
            ),
        ]


# --- ledger --------------------------------------------------------------------------------


class LedgerAccount(models.TextChoices):
    JOB = "job", "Job"
    FLEET_OVERHEAD = "fleet_overhead", "Fleet overhead (unallocated)"


class EnergyComponent(models.TextChoices):
    GPU_ACTIVE = "gpu_active", "GPU active"
    GPU_IDLE = "gpu_idle", "GPU idle baseline"
    HOST_CPU = "host_cpu", "Host CPU"
    HOST_DRAM = "host_dram", "Host DRAM"
    HOST_UNMEASURED = "host_unmeasured", "Wall power not explained by components"
    FACILITY = "facility", "Facility overhead (PUE)"


class ExactSumField(models.FloatField):
    """A float in Python, an exact decimal accumulator in PostgreSQL (``numeric``).

    Ledger entries are merged as batches arrive: each (re-)attribution adds its lines and
    subtracts the ones it replaces. In ``numeric`` every such sum is exact and independent of the
    order batches arrive in (each float enters as its 15-significant-digit decimal, the same value
    whenever it is added or taken away), so re-attributing a batch restores the entry bit for bit
    where float addition would drift. Reads (ORM values, aggregates) come back as floats."""

    def db_type(self, connection) -> str:
        return "numeric"

    def from_db_value(self, value, expression, connection):
        return None if value is None else float(value)


class LedgerEntry(models.Model):
    """Energy and carbon attributed to one account for one device (or host) and component in one
    hour: one row per (account, job, host, device, component, hour), however the agent batched its
    windows (issue 18).

    Batches are merged in as they are attributed: the sums (``ExactSumField``) add the batch's lines
    and subtract the lines its previous attribution contributed (kept in ``BatchAttribution``), so
    attributing a batch twice changes nothing and the order batches arrive in does not matter. The
    ``lines_*`` counters say how many batch lines of each quality the entry holds (exact integers):
    ``quality`` is the worst of them, and an entry whose counters fall to zero is deleted.
    Factors (intensity, PUE, their sources and versions) are the hour's: every line of an hour has
    the same. Conservation: for every batch, its lines' IT energy sums to the batch's measured
    device + host energy (``BatchAttribution``); the entries are the sums of those lines.
    """

    account = models.CharField(max_length=20, choices=LedgerAccount.choices)
    # Foreign keys whose single-column index a composite index below already leads with are not
    # indexed again (issue 18: four of the table's twelve indexes were redundant).
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, null=True, blank=True, related_name="ledger_entries", db_index=False
    )
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, db_index=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE)
    host = models.ForeignKey(Host, on_delete=models.CASCADE)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, null=True, blank=True, db_index=False)
    component = models.CharField(max_length=20, choices=EnergyComponent.choices)
    hour = models.DateTimeField()
    energy_j = ExactSumField()
    held_s = ExactSumField(default=0)  # device-seconds held (for embodied)
    co2e_operational_g = ExactSumField()
    co2e_operational_marginal_g = ExactSumField(null=True, blank=True)
    co2e_embodied_g = ExactSumField(default=0)
    co2e_low_g = ExactSumField()
    co2e_high_g = ExactSumField()
    intensity_g_per_kwh = models.FloatField()
    intensity_source = models.CharField(max_length=80)
    # Basis and gases of intensity_g_per_kwh ("" on rows computed before they were recorded);
    # co2e_upstream_g = energy x (life-cycle - direct) where both are known, else null.
    intensity_basis = models.CharField(max_length=10, blank=True, default="")
    intensity_gases = models.CharField(max_length=5, blank=True, default="")
    co2e_upstream_g = ExactSumField(null=True, blank=True)
    pue = models.FloatField()
    quality = models.CharField(max_length=12)  # worst quality among the entry's lines (a label)
    # Part of energy_j from windows of quality 'measured': the measured fraction sums this, so it
    # does not depend on how the agent batched its windows (issue 19).
    measured_energy_j = ExactSumField(default=0)
    # How many batch lines of each quality the entry holds (see the class docstring). Signed: the
    # merge proposes a key's net change as a row, and PostgreSQL checks a row before it finds the
    # conflict that turns it into an update; an entry's counters are never below zero.
    lines_measured = models.IntegerField(default=0)
    lines_integrated = models.IntegerField(default=0)
    lines_interpolated = models.IntegerField(default=0)
    lines_modelled = models.IntegerField(default=0)
    # End of the latest batch merged in (the job footprint's freshness).
    last_window_end = models.DateTimeField(null=True, blank=True)
    # GPU components: what the device's energy reading covered in the entry's hour ("gpu",
    # "gpu+memory", "gpu+cpu+memory": a superchip module counter holds its CPU and memory, so no
    # host CPU/DRAM entry adds them again); host and facility components, and rows computed
    # before it was recorded: "".
    energy_covers = models.CharField(max_length=20, blank=True, default="", db_default="")
    method_version = models.CharField(max_length=20)
    factor_versions = models.JSONField(default=dict)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "job", "host", "device", "component", "hour"],
                name="ledger_entry_key_uniq",
                nulls_distinct=False,
            )
        ]
        indexes = [
            models.Index(fields=["job", "hour"]),
            models.Index(fields=["org", "hour"]),
            models.Index(fields=["device", "hour"]),
        ]


class BatchAttribution(models.Model):
    """Accounting's own record of one telemetry batch's attribution: the ledger lines it merged
    into ``LedgerEntry``, as parallel arrays (one row per batch, however many lines).

    A re-attribution (an allocation changed, a factor was corrected) subtracts these lines from
    the entries and adds the new ones; the rollup reads the keys it touched from here. Kept while
    its raw windows are (they are what a re-attribution starts from): past the raw retention
    ``batch_records_prune`` deletes it, and the batch is never attributed again."""

    batch = models.OneToOneField(
        "telemetry.TelemetryBatch", on_delete=models.CASCADE, primary_key=True, related_name="attribution"
    )
    org_id = models.BigIntegerField()
    site_id = models.BigIntegerField()
    host_id = models.BigIntegerField()
    last_end = models.DateTimeField()
    attributed_at = models.DateTimeField()
    method_version = models.CharField(max_length=20)
    accounts = ArrayField(models.CharField(max_length=20))
    job_ids = ArrayField(models.BigIntegerField(null=True))
    team_ids = ArrayField(models.BigIntegerField(null=True))
    device_ids = ArrayField(models.BigIntegerField(null=True))
    components = ArrayField(models.CharField(max_length=20))
    hours = ArrayField(models.DateTimeField())
    energy_j = ArrayField(models.FloatField())
    held_s = ArrayField(models.FloatField())
    co2e_operational_g = ArrayField(models.FloatField())
    co2e_operational_marginal_g = ArrayField(models.FloatField(null=True))
    co2e_embodied_g = ArrayField(models.FloatField())
    co2e_low_g = ArrayField(models.FloatField())
    co2e_high_g = ArrayField(models.FloatField())
    co2e_upstream_g = ArrayField(models.FloatField(null=True))
    measured_energy_j = ArrayField(models.FloatField())
    qualities = ArrayField(models.CharField(max_length=12))
    # The batch's raw GPU windows per (device, hour of their start): seconds observed, utilisation
    # x seconds (% s) and energy (J), for the device-hours' average utilisation and power. Added to
    # the device-hours once (``DeviceHourSource``): raw windows do not change on re-attribution.
    raw_device_ids = ArrayField(models.BigIntegerField(), default=list)
    raw_hours = ArrayField(models.DateTimeField(), default=list)
    raw_window_s = ArrayField(models.FloatField(), default=list)
    raw_util_pct_s = ArrayField(models.FloatField(), default=list)
    raw_energy_j = ArrayField(models.FloatField(), default=list)

    class Meta:
        # Records arrive in time order and go once their raw windows are dropped (retention).
        indexes = [BrinIndex(fields=["last_end"], name="batchattribution_end_brin")]


class DeviceHourSource(models.Model):
    """A batch whose raw-window statistics (``BatchAttribution.raw_*``) the device-hours hold:
    written by the rollup that adds them, under its lock, so they are added exactly once."""

    batch = models.OneToOneField("telemetry.TelemetryBatch", on_delete=models.CASCADE, primary_key=True)


class BatchFindings(models.Model):
    """What the latest attribution of one telemetry batch found and reported rather than hid: the
    gaps in its GPU windows and how each was resolved (counter / interpolated / unfilled, with the
    energy filled in), and the attribution's diagnostics (e.g. wall power below the component sum).

    Accounting's own result, so it is kept here rather than on telemetry's batch row. A row only
    for a batch with something to report (none: no gaps and no diagnostics); unlike the
    ``BatchAttribution`` record it is not pruned with the raw windows, so a batch's findings stay
    as long as the batch does."""

    batch = models.OneToOneField(
        "telemetry.TelemetryBatch", on_delete=models.CASCADE, primary_key=True, related_name="findings"
    )
    # [{"device_id", "start", "end" (ISO 8601), "duration_s", "resolution", "energy_j"}, ...]
    gaps = models.JSONField(default=list, blank=True)
    diagnostics = models.JSONField(default=list, blank=True)


class JobFootprint(models.Model):
    """Cached per-job totals, rebuilt from ledger entries (live while running, final at end)."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="footprint", primary_key=True)
    energy_j = models.FloatField(default=0)
    gpu_energy_j = models.FloatField(default=0)
    gpu_idle_energy_j = models.FloatField(default=0)
    host_energy_j = models.FloatField(default=0)
    facility_energy_j = models.FloatField(default=0)
    co2e_operational_g = models.FloatField(default=0)
    co2e_embodied_g = models.FloatField(default=0)
    co2e_low_g = models.FloatField(default=0)
    co2e_high_g = models.FloatField(default=0)
    # Basis of the operational figure, by energy (a total over mixed bases says so with these),
    # and the upstream (Scope 3 cat. 3) carbon of the entries where it is known.
    direct_basis_energy_j = models.FloatField(default=0)
    lifecycle_basis_energy_j = models.FloatField(default=0)
    co2_only_energy_j = models.FloatField(default=0)
    co2e_upstream_g = models.FloatField(default=0)
    device_hours = models.FloatField(default=0)
    measured_fraction = models.FloatField(default=0)  # share of GPU energy that was measured
    # GPU energy by what its readings covered (ledger entries' energy_covers): the GPU alone, the GPU
    # and its memory, a superchip module with its CPU and memory. Entries from before that was
    # recorded are in none of them (gpu_energy_j minus the three). A database default as well, so
    # raw inserts that predate these columns (and code of the previous release) still work.
    covers_gpu_energy_j = models.FloatField(default=0, db_default=0.0)
    covers_gpu_memory_energy_j = models.FloatField(default=0, db_default=0.0)
    covers_gpu_cpu_memory_energy_j = models.FloatField(default=0, db_default=0.0)
    is_final = models.BooleanField(default=False)
    method_version = models.CharField(max_length=20, blank=True)
    last_window_end = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    @property
    def co2e_g(self) -> float:
        return self.co2e_operational_g + self.co2e_embodied_g


class FootprintRevision(models.Model):
    """Audit trail: a job's totals before a recompute replaced them."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="footprint_revisions")
    revised_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=500)
    factor_change = models.ForeignKey(FactorChange, on_delete=models.SET_NULL, null=True, blank=True)
    energy_j = models.FloatField()
    co2e_operational_g = models.FloatField()
    co2e_embodied_g = models.FloatField()
    method_version = models.CharField(max_length=20)


class _TeamTotals(models.Model):
    """What a team (or fleet overhead when team is null) used at a site over a period."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE)
    energy_j = models.FloatField(default=0)
    gpu_idle_energy_j = models.FloatField(default=0)
    co2e_operational_g = models.FloatField(default=0)
    co2e_embodied_g = models.FloatField(default=0)
    # Basis of the operational figure, by energy (a total over mixed bases says so with these),
    # and the upstream (Scope 3 cat. 3) carbon of the entries where it is known.
    direct_basis_energy_j = models.FloatField(default=0)
    lifecycle_basis_energy_j = models.FloatField(default=0)
    co2_only_energy_j = models.FloatField(default=0)
    co2e_upstream_g = models.FloatField(default=0)

    class Meta:
        abstract = True


class TeamDay(_TeamTotals):
    """Aggregate per team (or fleet overhead when team is null), site and day: kept indefinitely."""

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "team", "site", "day"], name="teamday_uniq", nulls_distinct=False)
        ]
        indexes = [models.Index(fields=["org", "day"])]


class TeamHour(_TeamTotals):
    """Per team (or fleet overhead), site and hour: the step between ledger entries and TeamDay,
    so a rollup re-sums an hour of a team's entries rather than a whole day of them."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "team", "site", "hour"], name="teamhour_uniq", nulls_distinct=False)
        ]


class DeviceHour(models.Model):
    """Aggregate per device and UTC hour: energy (J), held and observed time (s), utilisation (%),
    carbon (gCO2e); kept indefinitely."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE)
    hour = models.DateTimeField()
    energy_j = models.FloatField(default=0)
    idle_energy_j = models.FloatField(default=0)
    allocated_s = models.FloatField(default=0)
    observed_s = models.FloatField(default=0)
    avg_util_pct = models.FloatField(default=0)
    avg_power_w = models.FloatField(default=0)
    co2e_operational_g = models.FloatField(default=0)
    co2e_embodied_g = models.FloatField(default=0)
    # Sums over the hour's raw windows (exact, added once per batch): seconds observed, utilisation
    # x seconds, energy; avg_util_pct and avg_power_w are their ratios.
    window_s = ExactSumField(default=0, db_default=0)
    util_pct_s = ExactSumField(default=0, db_default=0)
    window_energy_j = ExactSumField(default=0, db_default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "hour"], name="devicehour_uniq")]
        # Rows arrive in time order: a BRIN index serves the devices page's range scans cheaply.
        indexes = [BrinIndex(fields=["hour"], name="devicehour_hour_brin")]


class JobHour(models.Model):
    """Aggregate per job and UTC hour, in J, s and gCO2e: kept indefinitely (the job detail page
    reads this)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="hours")
    hour = models.DateTimeField()
    energy_j = models.FloatField(default=0)
    gpu_energy_j = models.FloatField(default=0)
    co2e_operational_g = models.FloatField(default=0)
    co2e_embodied_g = models.FloatField(default=0)
    intensity_g_per_kwh = models.FloatField(default=0)
    # The rest of a footprint's sums, per hour: the job's footprint is the sum of its hours
    # (bounded by the job's length in hours, not by its number of ledger entries).
    gpu_idle_energy_j = models.FloatField(default=0)
    host_energy_j = models.FloatField(default=0)
    facility_energy_j = models.FloatField(default=0)
    co2e_low_g = models.FloatField(default=0)
    co2e_high_g = models.FloatField(default=0)
    held_s = models.FloatField(default=0)
    measured_gpu_energy_j = models.FloatField(default=0)
    last_window_end = models.DateTimeField(null=True, blank=True)
    # Basis of the operational figure, by energy (a total over mixed bases says so with these),
    # and the upstream (Scope 3 cat. 3) carbon of the entries where it is known.
    direct_basis_energy_j = models.FloatField(default=0)
    lifecycle_basis_energy_j = models.FloatField(default=0)
    co2_only_energy_j = models.FloatField(default=0)
    co2e_upstream_g = models.FloatField(default=0)
    # GPU energy by what its readings covered (ledger entries' energy_covers): the GPU alone, the GPU
    # and its memory, a superchip module with its CPU and memory. Entries from before that was
    # recorded are in none of them (gpu_energy_j minus the three). A database default as well, so
    # raw inserts that predate these columns (and code of the previous release) still work.
    covers_gpu_energy_j = models.FloatField(default=0, db_default=0.0)
    covers_gpu_memory_energy_j = models.FloatField(default=0, db_default=0.0)
    covers_gpu_cpu_memory_energy_j = models.FloatField(default=0, db_default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "hour"], name="jobhour_uniq")]
        indexes = [BrinIndex(fields=["hour"], name="jobhour_hour_brin")]


class ServingCounters(models.Model):
    """Cumulative counters of a service's inference server (vLLM, TGI, Triton), read from its
    Prometheus endpoint at ``at``: requests, prompt (input) and generated (output) tokens, summed
    over the server's label sets. Counters restart from 0 when the server restarts; the rates
    (accounting.domain.serving) count a drop as a reset. Null: the server has no such counter."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="serving_counters")
    at = models.DateTimeField()
    server = models.CharField(max_length=10)  # accounting.domain.serving.SERVERS
    requests_total = models.FloatField()
    input_tokens_total = models.FloatField(null=True, blank=True)
    output_tokens_total = models.FloatField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "at"], name="servingcounters_job_at_uniq"),
            models.CheckConstraint(condition=Q(requests_total__gte=0), name="servingcounters_requests_nonneg"),
        ]


# --- API tokens ----------------------------------------------------------------------------


class TokenHost(NamedTuple):
    """A host token's host as ingest needs it, read with the token by the API's lookup
    (``accounting.tokens``): its name and the ids of all its devices by uuid."""

    hostname: str
    device_ids: dict[str, int]


class ApiToken(models.Model):
    """High-entropy bearer token stored as a SHA-256 digest (never the secret itself)."""

    # Not a field: set by the API's token lookup for a host token (``accounting.tokens``), so
    # that ingest reads its host's name and devices without a statement of its own.
    token_host: TokenHost | None = None

    class Scope(models.TextChoices):
        HOST = "host", "Host (ingest for one host)"
        SCHEDULER = "scheduler", "Scheduler (jobs of one cluster)"
        USER = "user", "User (read what the user may see)"
        ADMIN = "admin", "Admin (whole organisation)"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=10, choices=Scope.choices)
    prefix = models.CharField(max_length=16)  # first characters, shown to identify the token
    digest = models.CharField(max_length=64, unique=True)  # sha256 hex of the full token
    host = models.ForeignKey(Host, on_delete=models.CASCADE, null=True, blank=True)
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Refused from this instant on (null: never; tokens issued before expiry existed). Rotation
    # sets the old token's expiry to the end of the overlap (accounting.tokens).
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(scope="host") | Q(host__isnull=False), name="token_host_scope_needs_host"
            ),
            models.CheckConstraint(
                condition=~Q(scope="scheduler") | Q(cluster__isnull=False), name="token_sched_scope_needs_cluster"
            ),
        ]


# --- audit log -----------------------------------------------------------------------------


class AuditEvent(models.Model):
    """Append-only record of who changed which factor, budget, token or policy, and when.

    Written by the services that make the change (accounting.services.audit.audit_record), in
    the change's transaction. Never updated or deleted by the application; the admin is
    read-only. Actors are kept as a label too, so the row still says who after the user or token
    is deleted."""

    class Action(models.TextChoices):
        FACTOR_CREATE = "factor.create", "Factor created"
        FACTOR_UPDATE = "factor.update", "Factor changed"
        BUDGET_CREATE = "budget.create", "Budget created"
        BUDGET_UPDATE = "budget.update", "Budget changed"
        BUDGET_DELETE = "budget.delete", "Budget deleted"
        TOKEN_CREATE = "token.create", "Token issued"
        TOKEN_REVOKE = "token.revoke", "Token revoked"
        TOKEN_ROTATE = "token.rotate", "Token rotated"
        POLICY_UPDATE = "policy.update", "Organisation policy changed"
        RECIPIENT_CHANGE = "recipient.change", "Report recipients changed"
        FLEET_CREATE = "fleet.create", "Created by the fleet file"
        FLEET_UPDATE = "fleet.update", "Changed by the fleet file"
        REPORT_RESEND = "report.resend", "Report re-sent (forced)"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Null for global factors (grid zones, hardware models) that belong to no organisation.
    org = models.ForeignKey(Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_token = models.ForeignKey(ApiToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=200)  # "alice", "token clk_AbCdEfGh (admin)", "system"
    action = models.CharField(max_length=30, choices=Action.choices)
    object_type = models.CharField(max_length=40)  # "zone", "pue", "site", "hardware", "budget", "token", ...
    object_id = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["org", "-created_at"], name="audit_org_created_idx"),
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_type} {self.object_id}"


# --- market-based Scope 2 and water --------------------------------------------------------


class ResidualMix(models.Model):
    """A zone's residual-mix emission factor for a year (gCO2e/kWh): the intensity of the
    electricity left once every tracked attribute (GO, REC) was claimed; market-based Scope 2
    charges uncovered consumption at it (GHG Protocol Scope 2 Guidance, quality criteria 5)."""

    zone = models.ForeignKey(GridZone, on_delete=models.CASCADE, related_name="residual_mixes")
    year = models.PositiveIntegerField()
    g_per_kwh = models.FloatField()
    gases = models.CharField(max_length=5, choices=GasCoverage.choices, default=GasCoverage.CO2E)
    source = models.CharField(max_length=40, choices=FactorSource.choices)
    source_detail = models.CharField(max_length=300)  # dataset and release, e.g. "AIB European Residual Mixes 2023"
    vintage = models.CharField(max_length=40, blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["zone", "year"], name="residual_mix_zone_year_uniq"),
            models.CheckConstraint(condition=Q(g_per_kwh__gte=0), name="residual_mix_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.zone.code} {self.year} residual mix ({self.g_per_kwh:.0f} g/kWh)"


class ContractualInstrument(models.Model):
    """A PPA or energy attribute certificate bundle (GO, REC) a site claims over [period_start,
    period_end): ``mwh`` at ``g_per_kwh`` (0 for renewable attributes). With delivery rows it is
    matched hour by hour; without, over its whole period (annual matching)."""

    class Kind(models.TextChoices):
        PPA = "ppa", "Power purchase agreement"
        GO = "go", "Guarantee of origin"
        REC = "rec", "Renewable energy certificate"
        OTHER = "other", "Other contractual instrument"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="instruments")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="instruments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()  # exclusive
    mwh = models.FloatField()
    g_per_kwh = models.FloatField(default=0.0)
    certificate_ids = models.JSONField(default=list, blank=True)
    registry = models.CharField(max_length=200, blank=True)  # e.g. "AIB hub / Grexel", "M-RETS"
    source = models.CharField(max_length=300)  # contract or cancellation statement reference
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(mwh__gt=0), name="instrument_mwh_pos"),
            models.CheckConstraint(condition=Q(g_per_kwh__gte=0), name="instrument_factor_nonneg"),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="instrument_period"),
        ]
        indexes = [models.Index(fields=["site", "period_start"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.mwh:g} MWh {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"


class InstrumentDelivery(models.Model):
    """MWh an hourly-matched instrument delivers in one UTC hour (start of the hour)."""

    instrument = models.ForeignKey(ContractualInstrument, on_delete=models.CASCADE, related_name="deliveries")
    hour = models.DateTimeField()
    mwh = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["instrument", "hour"], name="delivery_instrument_hour_uniq"),
            models.CheckConstraint(condition=Q(mwh__gte=0), name="delivery_mwh_nonneg"),
        ]


class SiteWue(models.Model):
    """A site's WUE over time (litres of site water per kWh of IT energy): the newest row at or
    before an hour applies; before the first row, ``Site.wue_l_per_kwh`` (the static value)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="wue_series")
    valid_from = models.DateTimeField()
    wue_l_per_kwh = models.FloatField()
    source = models.CharField(max_length=300)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "valid_from"], name="site_wue_uniq"),
            models.CheckConstraint(condition=Q(wue_l_per_kwh__gte=0), name="site_wue_nonneg"),
        ]


class ZoneWaterIntensity(models.Model):
    """Off-site water: litres consumed (evaporated) per kWh generated in a zone, with its range."""

    zone = models.OneToOneField(GridZone, on_delete=models.CASCADE, related_name="water")
    l_per_kwh = models.FloatField()
    low_l_per_kwh = models.FloatField()
    high_l_per_kwh = models.FloatField()
    source = models.CharField(max_length=40, choices=FactorSource.choices)
    source_detail = models.CharField(max_length=500)
    vintage = models.CharField(max_length=40, blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(low_l_per_kwh__gte=0)
                & Q(low_l_per_kwh__lte=models.F("l_per_kwh"))
                & Q(l_per_kwh__lte=models.F("high_l_per_kwh")),
                name="zone_water_range_ordered",
            ),
        ]


# --- monthly report delivery ---------------------------------------------------------------


def validate_time_zone(value: str) -> None:
    import zoneinfo

    from django.core.exceptions import ValidationError

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from exc


class ReportSchedule(models.Model):
    """An organisation's report time zone (IANA name): the monthly run is due on
    settings.REPORTS_SEND_DAY at REPORTS_SEND_TIME in it. No row: settings.REPORTS_TIME_ZONE."""

    org = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="report_schedule")
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone])

    def __str__(self) -> str:
        return f"{self.org} reports in {self.time_zone}"


class ReportRecipient(models.Model):
    """An address that receives a team's report (or, team null, the organisation roll-up)
    beside the team's members (the organisation's admins for the roll-up)."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="report_recipients")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="report_recipients")
    email = models.EmailField()
    note = models.CharField(max_length=200, blank=True)  # "sustainability lead", "finance"
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "team", "email"], name="report_recipient_uniq", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.team or 'organisation roll-up'})"


class ReportOptOut(models.Model):
    """A user who does not want the monthly e-mail of an organisation (as member or admin)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="report_opt_outs")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="report_opt_outs")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "org"], name="report_opt_out_uniq")]


class ReportScopeOptOut(models.Model):
    """An address that does not want one report any more: a team's (or, team null, the
    organisation roll-up's). Set by the recipient through the unsubscribe link of a report
    e-mail (no login) or by a signed-in user on the reports page; ``email`` is lower-cased."""

    class Via(models.TextChoices):
        LINK = "link", "Unsubscribe link in the e-mail"
        PAGE = "page", "Reports page (signed in)"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="report_scope_opt_outs")
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, null=True, blank=True, related_name="report_scope_opt_outs"
    )
    email = models.EmailField()
    via = models.CharField(max_length=4, choices=Via.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "team", "email"], name="report_scope_opt_out_uniq", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} out of {self.team or 'organisation roll-up'}"


class BouncedAddress(models.Model):
    """An address a mail server refused for good (5xx on RCPT TO): no report is sent to it
    until an admin deletes the flag. ``email`` is stored lower-cased."""

    email = models.EmailField(unique=True)
    smtp_code = models.PositiveIntegerField()
    error = models.TextField()
    flagged_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.email} ({self.smtp_code})"


class ReportRun(models.Model):
    """The monthly run of an organisation's reports was planned (its delivery rows created):
    beat plans a month once, after the month closed. Later recipients get nothing from beat."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="report_runs")
    month = models.DateField()  # first day
    planned_at = models.DateTimeField()
    scopes = models.PositiveIntegerField()  # reports planned (teams with data + the roll-up)
    deliveries = models.PositiveIntegerField()  # ledger rows created

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "month"], name="report_run_uniq")]

    def __str__(self) -> str:
        return f"{self.org} {self.month:%Y-%m}"


class ReportDelivery(models.Model):
    """The delivery ledger: one row per (organisation, team or roll-up, month, recipient,
    revision), created before anything is sent; the unique key is what makes a re-run, a
    redelivered task message or a second beat tick send nothing twice. Revision 0 is the
    scheduled send; each revised report or forced resend to the recipient adds one."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Being sent"
        RETRY = "retry", "Temporary failure, will retry"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed for good"
        SKIPPED = "skipped", "Not sent: the address bounces or unsubscribed"
        UNCERTAIN = "uncertain", "Interrupted while sending: outcome unknown"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="report_deliveries")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="report_deliveries")
    month = models.DateField()  # first day
    recipient = models.EmailField()  # lower-cased
    revision = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    message_id = models.CharField(max_length=250, blank=True)
    # Fingerprint (accounting.selectors.reports.month_report_fingerprint) of the figures sent, and
    # of the figures at the last revision check: they differ when the month was revised after sending.
    fingerprint = models.CharField(max_length=64, blank=True)
    current_fingerprint = models.CharField(max_length=64, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)  # why this revision: "revised totals", a resend's reason
    forced_by = models.CharField(max_length=200, blank=True)  # who forced a resend (audit label)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The recipient used this message's unsubscribe link (each link works once).
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "team", "month", "recipient", "revision"],
                name="report_delivery_uniq",
                nulls_distinct=False,
            ),
            models.CheckConstraint(condition=Q(month__day=1), name="report_delivery_month_first_day"),
        ]
        indexes = [
            models.Index(fields=["org", "month", "team"], name="report_delivery_scope_idx"),
            models.Index(fields=["status", "next_attempt_at"], name="report_delivery_due_idx"),
        ]

    def __str__(self) -> str:
        who = self.team or "organisation roll-up"
        return f"{self.month:%Y-%m} {who} -> {self.recipient} r{self.revision}: {self.status}"

    @property
    def revised_after_sending(self) -> bool:
        return (
            self.status == self.Status.SENT
            and bool(self.fingerprint)
            and bool(self.current_fingerprint)
            and self.current_fingerprint != self.fingerprint
        )
