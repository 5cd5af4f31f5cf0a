"""Telemetry storage: received batches (the durable unit of work) and raw windows.

Raw windows live in natively partitioned PostgreSQL tables (daily range partitions, created by
migrations 0002/0006 and ``telemetry.partitions``); they are dropped after the retention period,
while the ledger and its aggregates are kept indefinitely. GPU windows are stored columnar, one
row per (batch, device, day) holding arrays (``GpuSeries``); host windows one row per window.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models


class HostStream(models.Model):
    """What telemetry has stored of one host's stream: the seq and window end of its last stored
    batch, which the next batch's seq and overlap checks compare against. One row per host that
    has posted, created by its first batch; every batch of the host locks it for its transaction
    (one writer per host at a time). Telemetry's own row, beside accounting's ``Host`` (the
    inventory), so ingest writes no accounting table."""

    host = models.OneToOneField("accounting.Host", on_delete=models.CASCADE, primary_key=True, related_name="stream")
    last_seq = models.BigIntegerField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"stream of host {self.host_id} (last seq {self.last_seq})"


class TelemetryBatch(models.Model):
    """One agent batch, committed before the HTTP response; the unit of attribution work. Its energy
    totals (J) and seq/time range summarise the windows it carried."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for attribution"
        CLAIMED = "claimed", "Being attributed"
        DONE = "done", "Attributed"
        FAILED = "failed", "Failed (see error)"

    host = models.ForeignKey("accounting.Host", on_delete=models.CASCADE, related_name="batches")
    batch_id = models.UUIDField()
    received_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # sent_at - received_at in s: the host clock's offset from the server's, minus the transit
    # time (NULL without sent_at). Measured and flagged, never applied to the window times
    # (docs/reliability.md, "Clock skew").
    clock_offset_s = models.FloatField(null=True, blank=True)
    agent_version = models.CharField(max_length=40, blank=True)
    first_start = models.DateTimeField()
    last_end = models.DateTimeField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    gpu_window_count = models.PositiveIntegerField()
    host_window_count = models.PositiveIntegerField()
    gpu_energy_j = models.FloatField()
    host_energy_j = models.FloatField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    attributed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    # Beyond this the host's clock is flagged as skewed (NTP keeps a host within milliseconds; a
    # request spends well below a second in transit and queues; the margin keeps a busy server quiet).
    CLOCK_SKEW_FLAG_S = 5.0

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "batch_id"], name="batch_host_id_uniq")]
        indexes = [
            models.Index(fields=["status", "received_at"]),
            models.Index(fields=["host", "first_start"]),
        ]

    @property
    def clock_skew_flagged(self) -> bool:
        return self.clock_offset_s is not None and abs(self.clock_offset_s) > self.CLOCK_SKEW_FLAG_S


class GpuSeries(models.Model):
    """Raw GPU windows, columnar: one row per (batch, device, UTC day) holding that device's windows
    of the batch as equal-length arrays in seq order (partitioned by ``first_start_at``; raw SQL
    migration 0006).

    A batch whose windows start on two UTC days is split at midnight into one row per day (by each
    window's start, as the per-window table was partitioned), so a partition holds exactly one day
    and retention drops whole days. Times are integer microseconds since the Unix epoch (exact);
    energy in J, ``counter_mj`` NVML's raw counter (mJ; NULL elements where a window had none, the
    whole array NULL when none had one), power in W (``power_limit_w`` likewise NULL where not
    reported), utilisation in %. ``processes`` and ``mig_instances`` are run-length encoded:
    ``[[first window index (0-based), list], ...]``, a window taking the last run starting at or
    before it, ``[]`` before the first run (windows of a GPU repeat the same list)."""

    pk = models.CompositePrimaryKey("device_id", "first_start_at", "batch_id")
    batch_id = models.BigIntegerField()
    host_id = models.BigIntegerField()
    device_id = models.BigIntegerField()
    first_start_at = models.DateTimeField()
    last_end_at = models.DateTimeField()
    window_count = models.IntegerField()
    seq = ArrayField(models.BigIntegerField())
    start_us = ArrayField(models.BigIntegerField())
    end_us = ArrayField(models.BigIntegerField())
    energy_j = ArrayField(models.FloatField())
    counter_mj = ArrayField(models.BigIntegerField(null=True), null=True)
    avg_power_w = ArrayField(models.FloatField())
    max_power_w = ArrayField(models.FloatField())
    util_pct = ArrayField(models.FloatField())
    mem_util_pct = ArrayField(models.FloatField())
    mem_used_mib = ArrayField(models.FloatField())
    power_limit_w = ArrayField(models.FloatField(null=True), null=True)
    quality = ArrayField(models.TextField())
    processes = models.JSONField(default=list)
    mig_instances = models.JSONField(default=list)
    # What the energy counter covers: "gpu", or a module's "gpu+cpu+memory" (Grace Hopper/Blackwell).
    energy_covers = models.CharField(max_length=20, default="gpu")

    class Meta:
        managed = False
        db_table = "telemetry_gpuseries"


class GpuWindow(models.Model):
    """Raw per-GPU window [start_at, end_at), one row per window: a read-only VIEW unnesting
    ``GpuSeries`` (migration 0006), kept with the columns of the per-window table it replaced for
    readers not yet moved to the arrays. Energy in J (``counter_mj`` is NVML's raw counter, mJ),
    power in W, utilisation in %. Not prunable by day: readers of ranges use ``GpuSeries``."""

    pk = models.CompositePrimaryKey("device_id", "start_at", "seq")
    batch_id = models.BigIntegerField()
    host_id = models.BigIntegerField()
    device_id = models.BigIntegerField()
    seq = models.BigIntegerField()
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    energy_j = models.FloatField()
    counter_mj = models.BigIntegerField(null=True)
    avg_power_w = models.FloatField()
    max_power_w = models.FloatField()
    util_pct = models.FloatField()
    mem_util_pct = models.FloatField()
    mem_used_mib = models.FloatField()
    power_limit_w = models.FloatField(null=True)
    quality = models.CharField(max_length=12)
    processes = models.JSONField(default=list)
    mig_instances = models.JSONField(default=list)
    energy_covers = models.CharField(max_length=20, default="gpu")

    class Meta:
        managed = False
        db_table = "telemetry_gpuwindow"


class HostWindow(models.Model):
    """Raw per-host window [start_at, end_at): CPU and DRAM energy and optional wall energy, in J;
    CPU utilisation in % (partitioned table)."""

    pk = models.CompositePrimaryKey("host_id", "start_at", "seq")
    batch_id = models.BigIntegerField()
    host_id = models.BigIntegerField()
    seq = models.BigIntegerField()
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    cpu_energy_j = models.FloatField()
    dram_energy_j = models.FloatField()
    wall_energy_j = models.FloatField(null=True)
    cpu_util_pct = models.FloatField()
    quality = models.CharField(max_length=12)

    class Meta:
        managed = False
        db_table = "telemetry_hostwindow"
