"""Raw window tables, natively range-partitioned by day on start_at.

Partitions are created ahead by ``telemetry.partitions.ensure_partitions`` (called by ingest
for the days a batch touches, and daily by beat) and dropped after retention.
"""

from django.db import migrations

CREATE = """
CREATE TABLE telemetry_gpuwindow (
    batch_id      bigint           NOT NULL,
    host_id       bigint           NOT NULL,
    device_id     bigint           NOT NULL,
    seq           bigint           NOT NULL,
    start_at      timestamptz      NOT NULL,
    end_at        timestamptz      NOT NULL,
    energy_j      double precision NOT NULL CHECK (energy_j >= 0),
    counter_mj    bigint,
    avg_power_w   double precision NOT NULL,
    max_power_w   double precision NOT NULL,
    util_pct      double precision NOT NULL,
    mem_util_pct  double precision NOT NULL,
    mem_used_mib  double precision NOT NULL,
    power_limit_w double precision,
    quality       varchar(12)      NOT NULL,
    processes     jsonb            NOT NULL DEFAULT '[]',
    PRIMARY KEY (device_id, start_at, seq),
    CHECK (end_at > start_at)
) PARTITION BY RANGE (start_at);
CREATE INDEX telemetry_gpuwindow_batch ON telemetry_gpuwindow (batch_id);

CREATE TABLE telemetry_hostwindow (
    batch_id      bigint           NOT NULL,
    host_id       bigint           NOT NULL,
    seq           bigint           NOT NULL,
    start_at      timestamptz      NOT NULL,
    end_at        timestamptz      NOT NULL,
    cpu_energy_j  double precision NOT NULL CHECK (cpu_energy_j >= 0),
    dram_energy_j double precision NOT NULL CHECK (dram_energy_j >= 0),
    wall_energy_j double precision CHECK (wall_energy_j >= 0),
    cpu_util_pct  double precision NOT NULL,
    quality       varchar(12)      NOT NULL,
    PRIMARY KEY (host_id, start_at, seq),
    CHECK (end_at > start_at)
) PARTITION BY RANGE (start_at);
CREATE INDEX telemetry_hostwindow_batch ON telemetry_hostwindow (batch_id);
"""

DROP = "DROP TABLE IF EXISTS telemetry_gpuwindow CASCADE; DROP TABLE IF EXISTS telemetry_hostwindow CASCADE;"


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0001_initial")]
    operations = [migrations.RunSQL(CREATE, DROP)]
