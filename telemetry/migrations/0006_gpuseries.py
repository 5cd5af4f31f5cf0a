"""Raw GPU windows stored columnar (issue 18): one row per (batch, device, UTC day) holding the windows
as arrays (``telemetry_gpuseries``, daily range partitions on ``first_start_at``), instead of one row
per window.

Existing windows move into it (grouped by batch, device and the UTC day of their start, in start
order), the per-window table is dropped, and ``telemetry_gpuwindow`` becomes a read-only view of the
same name and columns unnesting the arrays, for readers not yet moved. Reversible: the reverse
recreates the per-window table from the view's rows.
"""

import django.contrib.postgres.fields
from django.db import migrations, models

CREATE = """
CREATE TABLE telemetry_gpuseries (
    batch_id       bigint             NOT NULL,
    host_id        bigint             NOT NULL,
    device_id      bigint             NOT NULL,
    first_start_at timestamptz        NOT NULL,
    last_end_at    timestamptz        NOT NULL,
    window_count   integer            NOT NULL CHECK (window_count > 0),
    seq            bigint[]           NOT NULL,
    start_us       bigint[]           NOT NULL,
    end_us         bigint[]           NOT NULL,
    energy_j       double precision[] NOT NULL,
    counter_mj     bigint[],
    avg_power_w    double precision[] NOT NULL,
    max_power_w    double precision[] NOT NULL,
    util_pct       double precision[] NOT NULL,
    mem_util_pct   double precision[] NOT NULL,
    mem_used_mib   double precision[] NOT NULL,
    power_limit_w  double precision[],
    quality        text[]             NOT NULL,
    processes      jsonb              NOT NULL DEFAULT '[]',
    mig_instances  jsonb              NOT NULL DEFAULT '[]',
    energy_covers  varchar(20)        NOT NULL DEFAULT 'gpu',
    PRIMARY KEY (device_id, first_start_at, batch_id),
    CHECK (last_end_at > first_start_at),
    CHECK (cardinality(seq) = window_count AND cardinality(start_us) = window_count
           AND cardinality(end_us) = window_count AND cardinality(energy_j) = window_count)
) PARTITION BY RANGE (first_start_at);
CREATE INDEX telemetry_gpuseries_batch ON telemetry_gpuseries (batch_id);
"""

# One partition of the new table per day the old one has (names telemetry_gpuwindow_pYYYYMMDD).
PARTITIONS = """
DO $$
DECLARE day date;
BEGIN
    FOR day IN
        SELECT to_date(substring(c.relname from '_p([0-9]{8})$'), 'YYYYMMDD')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'telemetry_gpuwindow' AND c.relname ~ '_p[0-9]{8}$'
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_gpuseries FOR VALUES FROM (%L) TO (%L)',
            'telemetry_gpuseries_p' || to_char(day, 'YYYYMMDD'),
            (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
END $$;
"""

_US = "(EXTRACT(EPOCH FROM {col}) * 1000000)::bigint"

# Runs of processes / MIG lists: a run starts at a window whose list differs from the previous
# window's; a leading run of [] is implied. ``pos`` is the 0-based window index in its series.
MOVE = f"""
INSERT INTO telemetry_gpuseries (batch_id, host_id, device_id, first_start_at, last_end_at, window_count, seq,
    start_us, end_us, energy_j, counter_mj, avg_power_w, max_power_w, util_pct, mem_util_pct, mem_used_mib,
    power_limit_w, quality, processes, mig_instances, energy_covers)
SELECT batch_id, host_id, device_id, min(start_at), max(end_at), count(*)::int,
    array_agg(seq ORDER BY pos),
    array_agg({_US.format(col="start_at")} ORDER BY pos),
    array_agg({_US.format(col="end_at")} ORDER BY pos),
    array_agg(energy_j ORDER BY pos),
    CASE WHEN bool_or(counter_mj IS NOT NULL) THEN array_agg(counter_mj ORDER BY pos) END,
    array_agg(avg_power_w ORDER BY pos),
    array_agg(max_power_w ORDER BY pos),
    array_agg(util_pct ORDER BY pos),
    array_agg(mem_util_pct ORDER BY pos),
    array_agg(mem_used_mib ORDER BY pos),
    CASE WHEN bool_or(power_limit_w IS NOT NULL) THEN array_agg(power_limit_w ORDER BY pos) END,
    array_agg(quality::text ORDER BY pos),
    COALESCE(jsonb_agg(jsonb_build_array(pos, processes) ORDER BY pos)
             FILTER (WHERE processes IS DISTINCT FROM prev_processes), '[]'),
    COALESCE(jsonb_agg(jsonb_build_array(pos, mig_instances) ORDER BY pos)
             FILTER (WHERE mig_instances IS DISTINCT FROM prev_mig), '[]'),
    energy_covers
FROM (
    SELECT w.*,
        (row_number() OVER g - 1)::int AS pos,
        COALESCE(lag(processes) OVER g, '[]') AS prev_processes,
        COALESCE(lag(mig_instances) OVER g, '[]') AS prev_mig
    FROM (SELECT *, (start_at AT TIME ZONE 'UTC')::date AS day FROM telemetry_gpuwindow) w
    WINDOW g AS (PARTITION BY batch_id, host_id, device_id, energy_covers, day ORDER BY start_at, seq)
) w
GROUP BY batch_id, host_id, device_id, energy_covers, day;
DROP TABLE telemetry_gpuwindow CASCADE;
"""

# The run covering window ``w.i`` (1-based ordinality): the last run starting at or before it.
_RUN = (
    "COALESCE((SELECT r -> 1 FROM jsonb_array_elements(s.{col}) r WHERE (r ->> 0)::int < w.i "
    "ORDER BY (r ->> 0)::int DESC LIMIT 1), '[]'::jsonb)"
)
VIEW = f"""
CREATE VIEW telemetry_gpuwindow AS
SELECT s.batch_id, s.host_id, s.device_id, w.seq,
    'epoch'::timestamptz + w.start_us * interval '1 microsecond' AS start_at,
    'epoch'::timestamptz + w.end_us * interval '1 microsecond' AS end_at,
    w.energy_j, w.counter_mj, w.avg_power_w, w.max_power_w, w.util_pct, w.mem_util_pct, w.mem_used_mib,
    w.power_limit_w, w.quality::varchar(12) AS quality,
    {_RUN.format(col="processes")} AS processes,
    {_RUN.format(col="mig_instances")} AS mig_instances,
    s.energy_covers
FROM telemetry_gpuseries s
CROSS JOIN LATERAL unnest(s.seq, s.start_us, s.end_us, s.energy_j, s.counter_mj, s.avg_power_w, s.max_power_w,
    s.util_pct, s.mem_util_pct, s.mem_used_mib, s.power_limit_w, s.quality) WITH ORDINALITY
    AS w(seq, start_us, end_us, energy_j, counter_mj, avg_power_w, max_power_w, util_pct, mem_util_pct,
         mem_used_mib, power_limit_w, quality, i);
"""

# Reverse: the per-window table (0002 + 0005) and its partitions, filled from the view.
REVERSE = """
CREATE TABLE telemetry_gpuwindow_old AS SELECT * FROM telemetry_gpuwindow;
DROP VIEW telemetry_gpuwindow;
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
    mig_instances jsonb            NOT NULL DEFAULT '[]',
    energy_covers varchar(20)      NOT NULL DEFAULT 'gpu',
    PRIMARY KEY (device_id, start_at, seq),
    CHECK (end_at > start_at)
) PARTITION BY RANGE (start_at);
CREATE INDEX telemetry_gpuwindow_batch ON telemetry_gpuwindow (batch_id);
DO $$
DECLARE day date;
BEGIN
    FOR day IN
        SELECT to_date(substring(c.relname from '_p([0-9]{8})$'), 'YYYYMMDD')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'telemetry_gpuseries' AND c.relname ~ '_p[0-9]{8}$'
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_gpuwindow FOR VALUES FROM (%L) TO (%L)',
            'telemetry_gpuwindow_p' || to_char(day, 'YYYYMMDD'),
            (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
END $$;
INSERT INTO telemetry_gpuwindow SELECT * FROM telemetry_gpuwindow_old;
DROP TABLE telemetry_gpuwindow_old;
DROP TABLE telemetry_gpuseries CASCADE;
"""


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0005_gpuwindow_mig_instances_energy_covers")]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(CREATE + PARTITIONS + MOVE + VIEW, REVERSE)],
            state_operations=[
                migrations.CreateModel(
                    name="GpuSeries",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "device_id",
                                "first_start_at",
                                "batch_id",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("batch_id", models.BigIntegerField()),
                        ("host_id", models.BigIntegerField()),
                        ("device_id", models.BigIntegerField()),
                        ("first_start_at", models.DateTimeField()),
                        ("last_end_at", models.DateTimeField()),
                        ("window_count", models.IntegerField()),
                        ("seq", django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None)),
                        (
                            "start_us",
                            django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None),
                        ),
                        ("end_us", django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None)),
                        ("energy_j", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                        (
                            "counter_mj",
                            django.contrib.postgres.fields.ArrayField(
                                base_field=models.BigIntegerField(null=True), null=True, size=None
                            ),
                        ),
                        ("avg_power_w", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                        ("max_power_w", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                        ("util_pct", django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None)),
                        (
                            "mem_util_pct",
                            django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None),
                        ),
                        (
                            "mem_used_mib",
                            django.contrib.postgres.fields.ArrayField(base_field=models.FloatField(), size=None),
                        ),
                        (
                            "power_limit_w",
                            django.contrib.postgres.fields.ArrayField(
                                base_field=models.FloatField(null=True), null=True, size=None
                            ),
                        ),
                        ("quality", django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), size=None)),
                        ("processes", models.JSONField(default=list)),
                        ("mig_instances", models.JSONField(default=list)),
                        ("energy_covers", models.CharField(default="gpu", max_length=20)),
                    ],
                    options={"db_table": "telemetry_gpuseries", "managed": False},
                )
            ],
        )
    ]
