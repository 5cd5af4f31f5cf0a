"""Property-based testing of the whole v1 API against its own OpenAPI schema, with every check
schemathesis (4.x) has and every token scope (issue 19).

Schemathesis builds Hypothesis strategies from /api/schema/ and the requests run in-process
through the WSGI app (no server, same test database), once per scope (admin, scheduler, user,
host) and generation mode (positive: valid per the schema; negative: invalid). Checks: all of
them (no 5xx; documented status codes, content types, headers and bodies; schema-valid data
accepted; schema-invalid data rejected; ...). Every failure of every operation is collected, then
reported together; the test asserts there is none.

Budget: SCHEMATHESIS_MAX_EXAMPLES examples per operation, scope and mode (default 8: about a
minute on two cores), derandomized (a fixed seed: the same cases every run). The long run is
``SCHEMATHESIS_MAX_EXAMPLES=200 .venv/bin/pytest tests/accounting/test_schemathesis.py``
(docs/api.md, "Schema checks").

What the schema cannot say. A schema states shapes, types, formats, bounds, enums and required
fields, and the schema states all of them; the API's answer to schema-valid data is a 2xx, a
documented 404/403/409, or a 400 for one of the rules below, each stated in the field's
description. For positive cases (only), ``in_context`` makes the generated request obey them,
so that positive_data_acceptance holds the API to everything else:

- references to rows that must exist: team slugs, cluster ids, device keys, zone codes (a
  fixed world, ``build_world``, plus the device catalog); an export's ``cursor`` is one the
  export returned and its ``to`` after its ``from``; a report's month one that has begun; a
  fleet document names the token's organisation, unique slugs per level, and its tokens name
  objects of the same document (left out);
- token-dependent requirements: ``cluster`` is required with user and admin tokens;
- cross-field rules: ``period_end`` after ``period_start``, a workload's ``split`` shares not
  all 0, ``deadline`` after
  ``earliest_start`` (and the run within it, the forecast covering it), exactly one of
  ``device_key``/``device``, of ``hours``/``device_hours``/``flops``/``parameters`` (with
  ``tokens``) and of ``avg_power_w``/``utilisation``, an average draw within the
  device's range, embodied low <= central <= high;
- unit names (``^[a-z][a-z0-9_]{0,39}$``: OpenAPI 3.0 has no ``propertyNames``);
- an ingest batch's content (docs/wire-format.md: sequence numbers, window times near now).

Negative cases are sent as generated. The operations are driven by plain Hypothesis ``@given``
loops instead of the pytest plugin's ``parametrize``: schemathesis 4.32's lazy-fixture loader
fails under pytest 9.2 (``'Function' object has no attribute '_nodeid'``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core import NotSet
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation.modes import GenerationMode

from tests.accounting.test_api_support import World, build_world, register_body
from tests.telemetry.helpers import batch, gpu_entry, iso, window

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "8"))
SERVING_METRICS = 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 1600.0\n'
SCOPES = {"admin": "admin", "scheduler": "sched_a", "user": "alice", "host": "host_a"}
DEVICE = "h100-sxm5-80gb"  # catalog keys: accounting.domain.catalog
OLD_DEVICE = "a100-sxm4-80gb"


@contextmanager
def keep_test_connection():
    """Requests go through the raw WSGI handler, whose request signals would close the test's
    connection (it is inside the test transaction). Django's test client disconnects them the
    same way for each of its requests, and reconnects them afterwards: so enter this after the
    last test-client request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _parse(value) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _fix_embodied(embodied) -> None:
    if isinstance(embodied, dict) and "embodied_kg" not in embodied:  # low/high only with embodied_kg
        embodied.pop("embodied_low_kg", None)
        embodied.pop("embodied_high_kg", None)
    if isinstance(embodied, dict) and "embodied_kg" in embodied:
        kg = embodied["embodied_kg"]
        if "embodied_low_kg" in embodied:
            embodied["embodied_low_kg"] = min(embodied["embodied_low_kg"], kg)
        if "embodied_high_kg" in embodied:
            embodied["embodied_high_kg"] = max(embodied["embodied_high_kg"], kg)


def _fix_carbon(body: dict) -> None:
    if "zone_code" in body:
        body["zone_code"] = "FR"
    elif "intensity_g_per_kwh" not in body:
        body["intensity_g_per_kwh"] = 300.0


def _fix_window(body: dict) -> None:
    """best-window: a run of at most 6 h, its deadline 2 h after it, an hourly forecast over it."""
    start = _parse(body.get("earliest_start"))
    if start is None or not 2001 <= start.year <= 2090:
        start = dt.datetime(2026, 11, 26, 10, 7, tzinfo=dt.UTC)
    body["duration_s"] = min(max(body["duration_s"], 1.0), 6 * 3600.0)  # 5e-324 s: "does not cover", an open edge
    deadline = start + dt.timedelta(seconds=body["duration_s"] + 2 * 3600)
    body["earliest_start"], body["deadline"] = iso(start), iso(deadline)
    values = [p["intensity_g_per_kwh"] for p in body.get("forecast") or []] or [300.0]
    hour = start.replace(minute=0, second=0, microsecond=0)
    points = []
    while hour <= deadline:
        points.append({"hour": iso(hour), "intensity_g_per_kwh": values[len(points) % len(values)]})
        hour += dt.timedelta(hours=1)
    body["forecast"] = points
    body.pop("zone_code", None)


def _unique(items, key: str) -> None:
    seen: set = set()
    for i, item in enumerate(items):
        if item.get(key) in seen:
            item[key] = f"{item[key]}-{i}"[:50]
        seen.add(item.get(key))


def _fix_fleet_document(doc: dict, *, world: World) -> None:
    """The fleet document's stated rules: the token's organisation, slugs unique at their level,
    zones that exist; tokens name objects of the document (cross-references), left out."""
    if isinstance(doc.get("organisation"), dict):
        doc["organisation"]["slug"] = world.org.slug
    _unique(doc.get("teams") or [], "slug")
    sites = doc.get("sites") or []
    _unique(sites, "slug")
    for site in sites:
        site["zone"] = "FR"
        clusters = site.get("clusters") or []
        _unique(clusters, "slug")
        for cluster in clusters:
            _unique(cluster.get("hosts") or [], "hostname")
    doc.pop("tokens", None)


def token_context(case, *, scope: str, world: World) -> None:
    """The token-dependent requirement, in both modes: a negative case is invalid by its mutated
    part, not by a rule its schema cannot state (``cluster`` with user and admin tokens)."""
    query = case.query if isinstance(case.query, dict) else None
    if "/by-key/" in case.operation.path and scope in ("admin", "user") and "cluster" not in (query or {}):
        case.query = {**(query or {}), "cluster": world.cluster_a.pk}


def _fix_instrument(body: dict) -> None:
    """A site of the token's organisation, a period that ends after it starts, MWh > 0,
    certificate ids claimed once, hourly deliveries inside the period summing to the MWh."""
    body["site"] = "paris"
    start, end = sorted(
        _parse(body[k]) or dt.datetime(2026, 1, 1, tzinfo=dt.UTC) for k in ("period_start", "period_end")
    )
    start = start.replace(minute=0, second=0, microsecond=0)
    end = max(end, start + dt.timedelta(hours=2))
    body["period_start"], body["period_end"] = iso(start), iso(end)
    body["mwh"] = body["mwh"] or 1.0
    body["certificate_ids"] = [f"{uuid.uuid4()}" for _ in body.get("certificate_ids", [])]
    if body.get("deliveries"):
        body["deliveries"] = [{"hour": iso(start), "mwh": body["mwh"]}]


def in_context(case, *, scope: str, world: World) -> None:
    """Make a positive case obey the rules its schema states only in descriptions (above)."""
    path, method = case.operation.path, case.method.upper()
    body = case.body if isinstance(case.body, dict) else None
    query = case.query if isinstance(case.query, dict) else None
    token_context(case, scope=scope, world=world)
    if path == "/api/v1/ingest/batches":
        if scope == "host":
            start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=30)
            case.body = batch(
                hostname=world.host_a.hostname,
                batch_id=str(uuid.uuid4()),
                windows=[window(seq=int(time.time() * 1000), start=start, gpus=[gpu_entry(uuid_="GPU-st-0000-0001")])],
            )
        return
    if path.startswith("/api/v1/reports/"):  # a month that has begun; a team the token sees
        case.path_parameters = {**(case.path_parameters or {}), "month": "2026-11"}
        if query is not None and "team" in query:
            query["team"] = world.team.slug
    if path.startswith("/api/v1/exports/") and query is not None:
        query.pop("cursor", None)  # a cursor is one this export returned (field description)
        start, end = _parse(query.get("from")), _parse(query.get("to"))
        if start is not None and end is not None and end <= start:  # `to` after `from`
            query["from"] = iso(end - dt.timedelta(days=1))
        if "team" in query:
            query["team"] = world.team.slug  # a team the token sees
    if path == "/api/v1/disclosure/" and query is not None and {"start", "end"} <= set(query):
        start, end = sorted(dt.date.fromisoformat(query[k]) for k in ("start", "end"))
        end = min(max(end, start + dt.timedelta(days=1)), start + dt.timedelta(days=366))
        query["start"], query["end"] = start.isoformat(), end.isoformat()
        if "team" in query:
            query["team"] = world.team.slug
    if body is None:
        return
    if path.endswith("/serving/") and method == "POST":
        # An inference job's server, its metrics page as the description states (the world's
        # inference job; a training job's or a page without the request counter is a stated 400).
        case.path_parameters = {
            **(case.path_parameters or {}),
            **({"id": world.serving_job_pk} if "{id}" in path else {"scheduler_job_id": "2"}),
        }
        body.clear()
        body.update(server="vllm", metrics=SERVING_METRICS)
    if path == "/api/v1/instruments/" and method == "POST":
        _fix_instrument(body)
    if path == "/api/v1/site-wue/":
        body["site"] = "paris"
    if path in ("/api/v1/residual-mixes/", "/api/v1/zone-water/"):
        body["zone"] = "FR"
        if path == "/api/v1/zone-water/":
            values = sorted(body[k] for k in ("low_l_per_kwh", "l_per_kwh", "high_l_per_kwh"))
            body["low_l_per_kwh"], body["l_per_kwh"], body["high_l_per_kwh"] = values
    if isinstance(body.get("allocation"), list):  # host with gpus (a reported GPU's uuid would have to exist)
        body["allocation"] = [
            {
                "host": world.host_a.hostname,
                "gpus": [i],
                **({"fraction": item["fraction"]} if "fraction" in item else {}),
            }
            for i, item in enumerate(body["allocation"])
        ]
    if "team" in body:
        body["team"] = world.team.slug
    if path == "/api/v1/jobs/" and method == "POST" and (scope == "admin" or "cluster" in body):
        body["cluster"] = world.cluster_a.pk
    if isinstance(body.get("units"), dict):
        body["units"] = {f"unit_{i}": v for i, v in enumerate(body["units"].values())}
    if "primary_unit" in body:
        body["primary_unit"] = "unit_0"
    if path == "/api/v1/budgets/" and method == "POST":
        start, end = sorted(dt.date.fromisoformat(body[k]) for k in ("period_start", "period_end"))
        if start == end:
            start, end = (start, end + dt.timedelta(days=1)) if end.year < 2099 else (start - dt.timedelta(days=1), end)
        body["period_start"], body["period_end"] = start.isoformat(), end.isoformat()
    if path == "/api/v1/advice/":
        body["hardware_model"] = DEVICE
        if "clusters" in body:
            body["clusters"] = [world.cluster_a.pk]
        if "avg_power_w" in body:
            body["avg_power_w"] = 500.0
            body.pop("utilisation", None)
        start = _parse(body.get("earliest_start")) or dt.datetime.now(dt.UTC)
        deadline = _parse(body.get("deadline"))
        if deadline is not None and deadline < start + dt.timedelta(hours=body["hours"]):
            body.pop("deadline")
    if path == "/api/v1/estimate/":
        body["device_key"] = DEVICE  # exactly one of device_key or device
        body.pop("device", None)
        runtime = next((k for k in ("hours", "device_hours", "flops", "parameters") if k in body), "hours")
        for key in ("hours", "device_hours", "flops", "parameters", "tokens"):  # exactly one runtime input
            if key != runtime and not (runtime == "parameters" and key == "tokens"):
                body.pop(key, None)
        body.setdefault(runtime, 1.0)
        if runtime == "parameters":
            body.setdefault("tokens", 1e9)
        if runtime not in ("flops", "parameters"):  # efficiency only with FLOPs
            body.pop("efficiency", None)
        if "host" in body and body.get("include_host") is False:
            body.pop("host")
        _fix_embodied(body.get("host"))
        if "avg_power_w" in body:
            body.pop("utilisation", None)
            body["avg_power_w"] = 500.0
        elif "utilisation" not in body:
            body["utilisation"] = 0.5
        _fix_carbon(body)
        _fix_embodied(body.get("embodied"))
    if path.endswith("/project/"):
        body["target_key"] = DEVICE
        if "target_power_cap_w" in body:
            body["target_power_cap_w"] = 500.0
        if "target_zone_code" in body:
            body["target_zone_code"] = "FR"
    if path == "/api/v1/fleet-plan/":
        body["old_key"], body["new_key"] = OLD_DEVICE, DEVICE
        _fix_carbon(body)
        if not body["workloads"]:  # minItems 1: drf-spectacular does not state a ListSerializer's min_length
            body["workloads"] = [{"family": "llm", "kind": "training", "device_hours_per_year": 1000.0}]
        workloads = body["workloads"]
        for workload in workloads:  # busy device-hours within the old fleet's year, a draw within its range
            workload["device_hours_per_year"] = min(
                workload["device_hours_per_year"], body["old_count"] * 8760 / len(workloads)
            )
            if "avg_power_w" in workload:
                workload["avg_power_w"] = 300.0
            if "split" in workload and sum(workload["split"]) <= 0:  # shares not all 0 (field description)
                workload["split"] = [1.0, 0.0, 0.0]
        for key in ("old_embodied", "new_embodied"):  # no inventory row for the catalog devices here
            body.setdefault(key, {"embodied_kg": 150.0})
        _fix_embodied(body.get("old_embodied"))
        _fix_embodied(body.get("new_embodied"))
    if path == "/api/v1/best-window/":
        _fix_window(body)
    if path in ("/api/v1/fleet/plan/", "/api/v1/fleet/apply/"):
        _fix_fleet_document(body.get("document") if isinstance(body.get("document"), dict) else body, world=world)


def _failure(scope: str, mode: GenerationMode, case, failure: Failure, response) -> str:
    body = "" if isinstance(case.body, NotSet) else f" body={case.body!r:.300}"
    return (
        f"[{scope}/{mode.value}] {case.operation.label}: {type(failure).__name__}: "
        f"{failure.message.splitlines()[0] if failure.message else failure.title}: "
        f"answered {response.status_code} {response.text[:200]!r} query={case.query!r}{body}"
    )


def _fuzz(
    operation, *, scope: str, mode: GenerationMode, world: World, max_examples: int, checks: list, failures: list[str]
) -> None:
    headers = {"Authorization": f"Bearer {world.secrets[SCOPES[scope]]}"}

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if mode is GenerationMode.POSITIVE:
            in_context(case, scope=scope, world=world)
        else:
            token_context(case, scope=scope, world=world)
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            failures.extend(_failure(scope, mode, case, f, response) for f in group.exceptions)
        except Failure as failure:
            failures.append(_failure(scope, mode, case, failure, response))

    run()


def run_all(world: World, *, max_examples: int) -> tuple[int, list[str]]:
    """Every operation x scope x mode; returns (operations, failures)."""
    load_all_checks()
    checks = CHECKS.get_all()
    failures: list[str] = []
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    # No NUL in generated text: PostgreSQL text cannot hold it and every string field refuses it
    # with a 400 naming the field (DRF's and the fleet file's own check, tested on their own).
    schema.config.generation.update(allow_x00=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    for scope in SCOPES:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(
                    operation,
                    scope=scope,
                    mode=mode,
                    world=world,
                    max_examples=max_examples,
                    checks=checks,
                    failures=failures,
                )
    return len(operations), failures


@pytest.mark.django_db
def test_api_conforms_to_its_schema_with_every_check_and_scope():
    world = build_world()
    # Real rows for generated ids and keys to hit now and then.
    world.client("sched_a").post("/api/v1/jobs/", register_body(scheduler_job_id="1"), format="json")
    serving = world.client("sched_a").post(
        "/api/v1/jobs/", register_body(scheduler_job_id="2", kind="inference", name="llm-serve"), format="json"
    )
    world.serving_job_pk = serving.json()["id"]
    started = time.monotonic()
    with keep_test_connection():
        operations, failures = run_all(world, max_examples=MAX_EXAMPLES)
    elapsed = time.monotonic() - started
    print(
        f"schemathesis: {operations} operations x {len(SCOPES)} scopes x 2 modes x {MAX_EXAMPLES} examples, "
        f"{len(failures)} failures, {elapsed:.0f} s"
    )
    assert operations >= 23
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(sorted(set(failures)))
