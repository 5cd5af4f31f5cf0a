"""The fleet file: validation naming paths, plan, idempotent apply with audit events, the
command (plan/apply/doctor) and the admin API."""

from __future__ import annotations

import io
import json
import textwrap

import pytest
from django.core.management import call_command
from django.test import Client

from accounting import models as m
from accounting.services.fleet_file import (
    FleetFileInvalid,
    fleet_apply,
    fleet_document_load,
    fleet_document_validate,
    fleet_plan,
)
from accounting.tokens import token_create, token_digest
from tests import factories as f

pytestmark = pytest.mark.django_db

FLEET_YAML = textwrap.dedent(
    """\
    organisation:
      slug: acme
      name: Acme AI
    teams:
      - slug: llm
        name: LLM
        report_email: llm-leads@acme.example
      - slug: recsys
    sites:
      - slug: paris
        name: Paris DC
        zone: FR
        pue: 1.25
        pue_source: 2025 facility report
        wue_l_per_kwh: 0.4
        clusters:
          - slug: hpc-a
            scheduler: slurm
            hosts:
              - hostname: gpu-node-01
                gpu_slots: 8
                cpu_model: AMD EPYC 9654
                cpu_tdp_w: 360
                dram_gb: 2048
              - gpu-node-02
    tokens:
      - name: slurm-hpc-a
        scope: scheduler
        cluster: paris/hpc-a
      - name: agent-gpu-node-01
        scope: host
        host: paris/hpc-a/gpu-node-01
    """
)


@pytest.fixture
def zones():
    return f.GridZoneFactory(code="FR", annual_intensity_g_per_kwh=56.0), f.GridZoneFactory(
        code="DE", annual_intensity_g_per_kwh=380.0
    )


def _spec(text: str = FLEET_YAML):
    return fleet_document_validate(fleet_document_load(text))


def test_apply_creates_everything_then_is_idempotent(zones):
    plan = fleet_plan(spec=_spec())
    assert [c.line() for c in plan.changes] == [
        "+ organisation acme",
        "+ team llm",
        "+ team recsys",
        "+ site paris",
        "+ cluster paris/hpc-a",
        "+ host paris/hpc-a/gpu-node-01",
        "+ host paris/hpc-a/gpu-node-02",
        "+ token scheduler:slurm-hpc-a (paris/hpc-a)",
        "+ token host:agent-gpu-node-01 (paris/hpc-a/gpu-node-01)",
    ]
    assert m.Organization.objects.count() == 0  # a plan writes nothing
    result = fleet_apply(spec=_spec(), actor="test", reason="onboarding")
    org = m.Organization.objects.get(slug="acme")
    site = m.Site.objects.get(org=org, slug="paris")
    assert (site.name, site.zone.code, site.pue, site.pue_source, site.wue_l_per_kwh) == (
        "Paris DC",
        "FR",
        1.25,
        "2025 facility report",
        0.4,
    )
    node1 = m.Host.objects.get(hostname="gpu-node-01")
    assert (node1.gpu_slots, node1.cpu_model, node1.cpu_tdp_w, node1.dram_gb, node1.ssd_gb) == (
        8,
        "AMD EPYC 9654",
        360.0,
        2048.0,
        0.0,
    )
    assert m.Host.objects.get(hostname="gpu-node-02").gpu_slots == 8
    assert m.Team.objects.get(slug="recsys").name == "recsys"
    # Secrets come back once and authenticate as the bound cluster and host.
    by_name = {s.name: s for s in result.secrets}
    assert set(by_name) == {"slurm-hpc-a", "agent-gpu-node-01"}
    sched = m.ApiToken.objects.get(digest=token_digest(by_name["slurm-hpc-a"].secret))
    assert (sched.scope, sched.cluster.slug) == ("scheduler", "hpc-a")
    host_token = m.ApiToken.objects.get(digest=token_digest(by_name["agent-gpu-node-01"].secret))
    assert (host_token.scope, host_token.host_id) == ("host", node1.pk)
    actions = sorted(m.AuditEvent.objects.values_list("action", "object_type", "object_id"))
    assert actions == sorted(
        [
            ("fleet.create", "organisation", "acme"),
            ("policy.update", "organisation", str(org.pk)),
            ("fleet.create", "team", "llm"),
            ("recipient.change", "report_recipients", str(m.Team.objects.get(slug="llm").pk)),
            ("fleet.create", "team", "recsys"),
            ("fleet.create", "site", "acme/paris"),
            ("fleet.create", "cluster", "paris/hpc-a"),
            ("fleet.create", "host", "paris/hpc-a/gpu-node-01"),
            ("fleet.create", "host", "paris/hpc-a/gpu-node-02"),
            ("token.create", "token", str(sched.pk)),
            ("token.create", "token", str(host_token.pk)),
        ]
    )
    assert set(m.AuditEvent.objects.values_list("actor_label", flat=True)) == {"test"}
    # Second apply: nothing to do, nothing written.
    counts = (m.AuditEvent.objects.count(), m.ApiToken.objects.count(), m.FactorChange.objects.count())
    again = fleet_apply(spec=_spec(), actor="test", reason="onboarding")
    assert not again.plan.has_changes and again.secrets == ()
    assert again.plan.summary() == "Plan: 0 to create, 0 to change, 9 unchanged, 0 not in the file (kept)."
    assert (m.AuditEvent.objects.count(), m.ApiToken.objects.count(), m.FactorChange.objects.count()) == counts


def test_changes_go_through_the_factor_services_and_show_in_the_plan(zones):
    fleet_apply(spec=_spec(), actor="test")
    org = m.Organization.objects.get(slug="acme")
    f.HostFactory(cluster=m.Cluster.objects.get(slug="hpc-a"), hostname="gpu-node-99")
    changed = (
        FLEET_YAML.replace("pue: 1.25", "pue: 1.3")
        .replace("zone: FR", "zone: DE")
        .replace("gpu_slots: 8", "gpu_slots: 4")
        .replace("report_email: llm-leads@acme.example", "report_email: llm@acme.example")
    )
    plan = fleet_plan(spec=_spec(changed))
    assert [c.line() for c in plan.changes if c.action != "unchanged"] == [
        "~ team llm: report_email 'llm-leads@acme.example' -> 'llm@acme.example'",
        "~ site paris: zone 'FR' -> 'DE', pue 1.25 -> 1.3",
        "~ host paris/hpc-a/gpu-node-01: gpu_slots 8 -> 4",
        "  host paris/hpc-a/gpu-node-99 (not in the file, kept)",
    ]
    fleet_apply(spec=_spec(changed), actor="test", reason="new PUE report")
    site = m.Site.objects.get(org=org, slug="paris")
    assert (site.pue, site.pue_version, site.zone.code) == (1.3, 2, "DE")
    factor_changes = list(m.FactorChange.objects.order_by("pk").values_list("factor_type", "before", "after", "reason"))
    assert factor_changes == [
        (
            "pue",
            {"pue": 1.25, "source": "2025 facility report", "version": 1},
            {"pue": 1.3, "source": "2025 facility report", "version": 2},
            "new PUE report",
        ),
        ("site", {"zone": zones[0].pk}, {"zone": zones[1].pk}, "new PUE report"),
    ]
    assert m.Host.objects.get(hostname="gpu-node-01").gpu_slots == 4
    assert m.Host.objects.filter(hostname="gpu-node-99").exists()  # never deleted
    update = m.AuditEvent.objects.get(action="fleet.update", object_type="host")
    assert (update.before, update.after) == ({"gpu_slots": 8}, {"gpu_slots": 4})
    recipients = m.AuditEvent.objects.filter(action="recipient.change").order_by("pk").last()
    assert (recipients.before, recipients.after) == (
        {"report_email": "llm-leads@acme.example"},
        {"report_email": "llm@acme.example"},
    )


def test_validation_names_every_path(zones):
    bad = textwrap.dedent(
        """\
        organisation: {slug: Acme!}
        teams: [{slug: llm}, {slug: llm, report_email: nope}]
        sites:
          - {slug: paris, zone: FR, pue: 1.2}
          - slug: berlin
            zone: XX
            pue: 0.9
            pu: 1
            clusters:
              - slug: k8s
                scheduler: nomad
                hosts: [{hostname: n1, gpu_slots: 2.5}, {hostname: n1}]
        tokens:
          - {name: s, scope: scheduler}
          - {name: h, scope: host, host: berlin/k8s/n2, cluster: berlin/k8s}
        """
    )
    with pytest.raises(FleetFileInvalid) as caught:
        _spec(bad)
    assert caught.value.errors == [
        ("organisation.slug", "must match ^[a-z0-9](?:[a-z0-9_-]{0,48}[a-z0-9])?$"),
        ("teams[1].report_email", "must be an email address"),
        ("teams[1].slug", "duplicate team slug 'llm'"),
        ("sites[1].pu", "unknown field (allowed: slug, name, zone, pue, pue_source, wue_l_per_kwh, clusters)"),
        ("sites[1].zone", "unknown grid zone 'XX' (manage.py load_factors)"),
        ("sites[1].pue", "must be >= 1"),
        ("sites[1].clusters[0].hosts[0].gpu_slots", "must be a whole number"),
        ("sites[1].clusters[0].hosts[1].hostname", "duplicate hostname 'n1'"),
        ("sites[1].clusters[0].scheduler", "must be one of slurm, kubernetes, other"),
        ("tokens[0].cluster", "required for scope scheduler"),
        ("tokens[1].cluster", "not allowed for scope host"),
        ("tokens[1].host", "must be site/cluster/hostname of a host in this file"),
    ]
    with pytest.raises(FleetFileInvalid) as caught:
        fleet_document_load("organisation: [unclosed")
    assert caught.value.errors[0][0] == "document" and "line 1" in caught.value.errors[0][1]


def test_command_plan_apply_and_errors(zones, tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET_YAML)
    out = io.StringIO()
    call_command("fleet", "plan", str(path), stdout=out)
    assert out.getvalue().splitlines()[-1] == "Plan: 9 to create, 0 to change, 0 unchanged, 0 not in the file (kept)."
    assert m.Organization.objects.count() == 0
    out = io.StringIO()
    call_command("fleet", "apply", str(path), "--yes", stdout=out)
    lines = out.getvalue().splitlines()
    assert "Applied: 9 created, 0 changed." in lines
    secrets = [line.split()[-1] for line in lines if line.startswith("secret ")]
    assert len(secrets) == 2 and all(m.ApiToken.objects.filter(digest=token_digest(s)).exists() for s in secrets)
    out = io.StringIO()
    call_command("fleet", "apply", str(path), "--yes", stdout=out)
    assert out.getvalue().splitlines()[-1] == "Nothing to do."
    path.write_text(FLEET_YAML.replace("pue: 1.25", "pue: 0.5"))
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("fleet", "apply", str(path), "--yes", stderr=err)
    assert exited.value.code == 2
    assert err.getvalue().strip() == f"{path}: sites[0].pue: must be >= 1"
    assert m.Site.objects.get().pue == 1.25


def test_api_plan_and_apply_admin_only_own_org(zones):
    document = fleet_document_load(FLEET_YAML)
    fleet_apply(spec=_spec(), actor="test")
    org = m.Organization.objects.get(slug="acme")
    admin = token_create(org=org, name="ci", scope="admin")
    other = token_create(org=f.OrganizationFactory(slug="other"), name="ci", scope="admin")
    user = token_create(org=org, name="u", scope="user", user=f.UserFactory())
    document["sites"][0]["pue"] = 1.4
    document["teams"].append({"slug": "vision"})
    client = Client(HTTP_AUTHORIZATION=f"Bearer {admin.secret}")
    plan = client.post("/api/v1/fleet/plan/", data=json.dumps(document), content_type="application/json")
    assert plan.status_code == 200, plan.content
    body = plan.json()
    assert body["summary"] == "Plan: 1 to create, 1 to change, 8 unchanged, 0 not in the file (kept)."
    assert [c for c in body["changes"] if c["action"] != "unchanged"] == [
        {"action": "create", "kind": "team", "key": "vision", "changed": {}},
        {"action": "update", "kind": "site", "key": "paris", "changed": {"pue": {"before": 1.25, "after": 1.4}}},
    ]
    assert not m.Team.objects.filter(slug="vision").exists()
    applied = client.post("/api/v1/fleet/apply/", data=json.dumps(document), content_type="application/json")
    assert applied.status_code == 200 and applied.json()["applied"] is True and applied.json()["tokens"] == []
    assert m.Site.objects.get(slug="paris").pue == 1.4 and m.Team.objects.filter(slug="vision").exists()
    event = m.AuditEvent.objects.get(action="fleet.create", object_type="team", object_id="vision")
    assert event.actor_token_id == admin.token.pk
    # Another organisation's admin, a user token: refused, nothing changed.
    before = m.AuditEvent.objects.count()
    document["teams"].append({"slug": "intruders"})
    refused = Client(HTTP_AUTHORIZATION=f"Bearer {other.secret}").post(
        "/api/v1/fleet/apply/", data=json.dumps(document), content_type="application/json"
    )
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"field": "organisation.slug", "message": "must be 'other', this token's organisation"}
    ]
    denied = Client(HTTP_AUTHORIZATION=f"Bearer {user.secret}").post(
        "/api/v1/fleet/apply/", data=json.dumps(document), content_type="application/json"
    )
    assert denied.status_code == 403
    document["sites"][0]["pue"] = "high"
    invalid = client.post("/api/v1/fleet/apply/", data=json.dumps(document), content_type="application/json")
    assert invalid.status_code == 400
    assert invalid.json()["errors"] == [{"field": "sites[0].pue", "message": "must be a number"}]
    assert m.AuditEvent.objects.count() == before and not m.Team.objects.filter(slug="intruders").exists()


def test_doctor(zones):
    result = fleet_apply(spec=_spec(), actor="test")
    secret = next(s.secret for s in result.secrets if s.scope == "host")
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("fleet", "doctor", "--token", secret, stdout=out)
    assert exited.value.code == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("PASS  token: host token clk_") and "acme/paris/hpc-a/gpu-node-01" in lines[0]
    assert lines[1] == "SKIP  reach: pass --url to check the server from here"
    assert lines[2].startswith("FAIL  batches: none received from gpu-node-01 yet")
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("fleet", "doctor", "--token", "clk_nope", stdout=out)
    assert out.getvalue().strip() == "FAIL  token: unknown or revoked (manage.py tokens list --org <org>)"
    sched = next(s.secret for s in result.secrets if s.scope == "scheduler")
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("fleet", "doctor", "--token", sched, stdout=out)
    assert out.getvalue().strip() == "FAIL  token: scope is scheduler; the agent needs a host token"


def test_doctor_passes_once_the_first_batch_is_attributed(zones, live_server, transactional_db):
    import datetime as dt

    from accounting.services.attribution import batches_attribute
    from telemetry.models import TelemetryBatch
    from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

    f.HardwareModelFactory()
    result = fleet_apply(spec=_spec(), actor="test")
    secret = next(s.secret for s in result.secrets if s.scope == "host")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    payload = batch(hostname="gpu-node-01", windows=[window(seq=1, start=start, gpus=[gpu_entry(uuid_="GPU-doc-0")])])
    assert post_batch(Client(), secret, payload).status_code == 202
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("fleet", "doctor", "--token", secret, "--url", live_server.url, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[1] == f"PASS  reach: {live_server.url}/healthz answers ok"
    assert lines[2] == "PASS  ingest: the ingest endpoint accepts this token"
    assert lines[3].startswith("PASS  batches: 1 received, the last ")
    assert lines[4] == "FAIL  attribution: none attributed yet (are the Celery worker and beat running?)"
    batches_attribute(batch_pks=list(TelemetryBatch.objects.values_list("pk", flat=True)), now=dt.datetime.now(dt.UTC))
    out = io.StringIO()
    call_command("fleet", "doctor", "--token", secret, stdout=out)  # no SystemExit: every check passes
    lines = out.getvalue().splitlines()
    assert lines[3] == "PASS  attribution: 1 attributed, 0 waiting"
    hour = start.replace(minute=0, second=0)
    assert (
        lines[4]
        == f"PASS  ledger: {m.LedgerEntry.objects.filter(host__hostname='gpu-node-01').count()} ledger rows, the latest hour {hour:%Y-%m-%dT%H:%MZ}"
    )


def test_doctor_names_the_last_error_of_a_batch_that_failed_for_good(zones):
    import datetime as dt

    from telemetry.models import TelemetryBatch
    from telemetry.queue import MAX_ATTEMPTS, batch_record_failure
    from tests.telemetry.helpers import batch, gpu_entry, post_batch, window

    result = fleet_apply(spec=_spec(), actor="test")
    secret = next(s.secret for s in result.secrets if s.scope == "host")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    for seq, error in ((1, "ValueError('first')"), (2, "ValueError('second')")):
        window_start = start + dt.timedelta(seconds=10 * seq)
        payload = batch(
            hostname="gpu-node-01", windows=[window(seq=seq, start=window_start, gpus=[gpu_entry(uuid_="GPU-doc-0")])]
        )
        assert post_batch(Client(), secret, payload).status_code == 202
        pk = TelemetryBatch.objects.get(batch_id=payload["batch_id"]).pk
        assert batch_record_failure(batch_pk=pk, attempts=MAX_ATTEMPTS, error=error) == "failed"
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("fleet", "doctor", "--token", secret, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[2].startswith("PASS  batches: 2 received, the last ")
    assert lines[3] == "FAIL  attribution: 2 failed; last error: ValueError('second')"


def test_api_refuses_a_nul_character_by_its_path(zones):
    """PostgreSQL text cannot hold NUL: a document carrying one is a 400 naming the field (it was a
    500 from the database when a token's user was looked up), and nothing is written."""
    org = f.OrganizationFactory(slug="acme")
    admin = token_create(org=org, name="ci", scope="admin")
    document = {
        "organisation": {"slug": "acme"},
        "teams": [{"slug": "llm", "name": "LLM\x00"}],
        "tokens": [{"name": "u", "scope": "user", "user": "al\x00ice"}],
    }
    before = (m.Team.objects.count(), m.AuditEvent.objects.count())
    client = Client(HTTP_AUTHORIZATION=f"Bearer {admin.secret}")
    for url in ("/api/v1/fleet/plan/", "/api/v1/fleet/apply/"):
        response = client.post(url, data=json.dumps(document), content_type="application/json")
        assert response.status_code == 400, response.content
        assert {e["field"]: e["message"] for e in response.json()["errors"]} == {
            "teams[0].name": "must not contain NUL characters",
            "tokens[0].user": "must not contain NUL characters",
        }
    assert (m.Team.objects.count(), m.AuditEvent.objects.count()) == before


def test_a_blank_pue_source_is_refused_by_its_path(zones):
    """Every factor has a source: a blank ``pue_source`` is a 400 naming it (a changed PUE with a
    blank source reached the factor service and answered 500), and nothing is written."""
    fleet_apply(spec=_spec(), actor="test")
    org = m.Organization.objects.get(slug="acme")
    admin = token_create(org=org, name="ci", scope="admin")
    document = fleet_document_load(FLEET_YAML)
    document["sites"][0]["pue"] = 1.4
    document["sites"][0]["pue_source"] = " "
    before = (m.FactorChange.objects.count(), m.AuditEvent.objects.count(), m.Site.objects.get(slug="paris").pue)
    response = Client(HTTP_AUTHORIZATION=f"Bearer {admin.secret}").post(
        "/api/v1/fleet/apply/", data=json.dumps(document), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == [{"field": "sites[0].pue_source", "message": "must not be empty"}]
    assert (
        m.FactorChange.objects.count(),
        m.AuditEvent.objects.count(),
        m.Site.objects.get(slug="paris").pue,
    ) == before
