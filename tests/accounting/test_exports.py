"""Ledger exports (CSV, Parquet read back with pyarrow): exact values, time pages with cursors,
team scope, the access rule."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pyarrow.parquet as pq
import pytest
from django.test import Client

from accounting import models as m
from accounting.tokens import token_create
from tests import factories as f

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)


@pytest.fixture
def ledger():
    org = f.OrganizationFactory(slug="acme")
    other_org = f.OrganizationFactory(slug="rival")
    site = f.SiteFactory(org=org, slug="paris")
    cluster = f.ClusterFactory(site=site, slug="hpc-a")
    rival_cluster = f.ClusterFactory(site=f.SiteFactory(org=other_org, slug="x"), slug="hpc-x")
    llm = f.TeamFactory(org=org, slug="llm")
    recsys = f.TeamFactory(org=org, slug="recsys")
    rival = f.TeamFactory(org=other_org, slug="rival-team")
    jobs = {
        "a": f.JobFactory(
            cluster=cluster, team=llm, scheduler_job_id="1001", started_at=T0, kind="training", family="llm"
        ),
        "b": f.JobFactory(cluster=cluster, team=recsys, scheduler_job_id="1002", started_at=T0 + dt.timedelta(hours=1)),
        "x": f.JobFactory(cluster=rival_cluster, team=rival, scheduler_job_id="9", started_at=T0),
    }
    jobs["a"].units = {"tokens": 2.5e9}
    jobs["a"].primary_unit = "tokens"
    jobs["a"].save()
    for job in jobs.values():
        for h in range(3):
            m.JobHour.objects.create(
                job=job,
                hour=T0 + dt.timedelta(hours=h),
                energy_j=3.6e6 * (h + 1),
                gpu_energy_j=3.0e6 * (h + 1),
                gpu_idle_energy_j=1.0e5,
                host_energy_j=4.0e5,
                facility_energy_j=2.0e5 * (h + 1),
                co2e_operational_g=56.0 * (h + 1),
                co2e_embodied_g=12.5,
                co2e_low_g=60.0,
                co2e_high_g=80.0,
                intensity_g_per_kwh=56.0,
                held_s=7200.0,
                measured_gpu_energy_j=3.0e6 * (h + 1),
            )
        m.JobFootprint.objects.create(
            job=job,
            energy_j=2.16e7,
            gpu_energy_j=1.8e7,
            co2e_operational_g=336.0,
            co2e_embodied_g=37.5,
            device_hours=6.0,
            measured_fraction=1.0,
            method_version="2.1",
        )
    admin = token_create(org=org, name="a", scope="admin")
    member = f.UserFactory(username="bob")
    f.MembershipFactory(user=member, org=org, team=recsys)
    return {
        "jobs": jobs,
        "admin": Client(HTTP_AUTHORIZATION=f"Bearer {admin.secret}"),
        "bob": Client(HTTP_AUTHORIZATION=f"Bearer {token_create(org=org, name='b', scope='user', user=member).secret}"),
    }


def _get(client, path, **params):
    response = client.get(path, {"from": T0.isoformat(), "to": (T0 + dt.timedelta(days=1)).isoformat(), **params})
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def test_job_hours_csv_exact_and_scoped(ledger):
    response, body = _get(ledger["admin"], "/api/v1/exports/job-hours.csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert "X-Next-Cursor" not in response
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0][:9] == [
        "hour",
        "job_id",
        "scheduler_job_id",
        "cluster",
        "site",
        "team",
        "kind",
        "family",
        "energy_j",
    ]
    a, b = ledger["jobs"]["a"], ledger["jobs"]["b"]
    assert [(r[0], r[2], r[5]) for r in rows[1:]] == [
        ("2026-11-02T08:00:00Z", "1001", "llm"),
        ("2026-11-02T08:00:00Z", "1002", "recsys"),
        ("2026-11-02T09:00:00Z", "1001", "llm"),
        ("2026-11-02T09:00:00Z", "1002", "recsys"),
        ("2026-11-02T10:00:00Z", "1001", "llm"),
        ("2026-11-02T10:00:00Z", "1002", "recsys"),
    ]  # the other organisation's job never appears
    assert rows[3] == [
        "2026-11-02T09:00:00Z",
        str(a.pk),
        "1001",
        "hpc-a",
        "paris",
        "llm",
        "training",
        "llm",
        "7200000.0",
        "6000000.0",
        "100000.0",
        "400000.0",
        "400000.0",
        "112.0",
        "12.5",
        "60.0",
        "80.0",
        "56.0",
        "7200.0",
        "6000000.0",
    ]
    # A member of recsys sees recsys only; naming llm is refused, not widened.
    _, mine = _get(ledger["bob"], "/api/v1/exports/job-hours.csv")
    assert {r[1] for r in list(csv.reader(io.StringIO(mine.decode())))[1:]} == {str(b.pk)}
    refused, problem = _get(ledger["bob"], "/api/v1/exports/job-hours.csv", team="llm")
    assert refused.status_code == 400 and b"team" in problem
    _, llm_only = _get(ledger["admin"], "/api/v1/exports/job-hours.csv", team="llm")
    assert {r[5] for r in list(csv.reader(io.StringIO(llm_only.decode())))[1:]} == {"llm"}


def test_parquet_reads_back_with_units_and_pages_by_cursor(ledger):
    response, body = _get(ledger["admin"], "/api/v1/exports/job-hours.parquet", limit=4)
    assert response.status_code == 200 and response["Content-Type"] == "application/vnd.apache.parquet"
    first = pq.read_table(io.BytesIO(body))
    assert first.num_rows == 4
    assert first.schema.field("energy_j").metadata[b"unit"] == b"J"
    assert first.schema.field("co2e_operational_g").metadata[b"unit"] == b"gCO2e"
    assert first.schema.metadata[b"carbonledger.dataset"] == b"job-hours"
    assert first.column("energy_j").to_pylist() == [3.6e6, 3.6e6, 7.2e6, 7.2e6]
    assert first.column("hour").to_pylist()[2] == T0 + dt.timedelta(hours=1)
    cursor = response["X-Next-Cursor"]
    assert response["Link"].endswith('rel="next"') and f"cursor={cursor}" in response["Link"]
    second_response, second_body = _get(ledger["admin"], "/api/v1/exports/job-hours.parquet", limit=4, cursor=cursor)
    second = pq.read_table(io.BytesIO(second_body))
    assert "X-Next-Cursor" not in second_response
    assert second.column("energy_j").to_pylist() == [1.08e7, 1.08e7]
    assert second.column("scheduler_job_id").to_pylist() == ["1001", "1002"]
    # Pages partition the export: together they are the unpaged export, row for row.
    _, whole = _get(ledger["admin"], "/api/v1/exports/job-hours.parquet")
    assert pq.read_table(io.BytesIO(whole)).to_pylist() == first.to_pylist() + second.to_pylist()
    bad, problem = _get(ledger["admin"], "/api/v1/exports/job-hours.parquet", cursor="nonsense")
    assert bad.status_code == 400 and b"cursor" in problem


def test_jobs_export(ledger):
    _, body = _get(ledger["admin"], "/api/v1/exports/jobs.parquet")
    table = pq.read_table(io.BytesIO(body))
    rows = table.to_pylist()
    assert [r["scheduler_job_id"] for r in rows] == ["1001", "1002"]
    assert rows[0]["energy_j"] == 2.16e7 and rows[0]["co2e_embodied_g"] == 37.5
    assert rows[0]["units"] == '{"tokens": 2500000000.0}' and rows[0]["primary_unit"] == "tokens"
    assert rows[0]["started_at"] == T0 and rows[0]["ended_at"] is None and rows[0]["method_version"] == "2.1"
    assert table.schema.field("device_hours").metadata[b"unit"] == b"device-h"
    _, text = _get(ledger["admin"], "/api/v1/exports/jobs.csv")
    header, first, *_ = list(csv.reader(io.StringIO(text.decode())))
    assert dict(zip(header, first, strict=True))["ended_at"] == ""
    refused, _ = _get(ledger["admin"], "/api/v1/exports/jobs.csv", to=T0.isoformat())
    assert refused.status_code == 400


def test_docs_list_exactly_the_exported_columns():
    """docs/exports.md is the analysts' schema: its tables name every column of each dataset, in
    order, with its type and unit."""
    from pathlib import Path

    from accounting.selectors.exports import DATASETS

    text = (Path(__file__).resolve().parents[2] / "docs" / "exports.md").read_text()
    for name, columns in DATASETS.items():
        section = text.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| `")]
        assert [(c.strip().strip("`"), k.strip(), u.strip()) for c, k, u in rows] == [
            (c.name, c.kind, c.unit or "—") for c in columns
        ]
