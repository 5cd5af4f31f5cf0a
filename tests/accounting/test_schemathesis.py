"""Property-based fuzzing of the v1 jobs/budgets/advice/metrics API against its own OpenAPI schema.

Schemathesis (4.x) builds Hypothesis strategies from /api/schema/ and the requests run
in-process through the WSGI app (no server, same test database). Budget: MAX_EXAMPLES
examples per operation and generation mode (positive: valid per the schema; negative:
invalid), deterministic (derandomized), well under two minutes on two cores. Checks (the
defaults of ``call_and_validate``): no 5xx, documented status codes and content types,
bodies and headers that conform to the schema, invalid data rejected. Excluded:
``positive_data_acceptance`` (schema-valid data must get 2xx): a schema cannot say which team
slugs, cluster ids or catalog keys exist, and an unknown one is a documented 400 naming the
field.

The operations are driven by plain Hypothesis ``@given`` loops instead of the pytest
plugin's ``parametrize``: schemathesis 4.32's lazy-fixture loader fails under pytest 9.2
(``'Function' object has no attribute '_nodeid'``). What-if and ingest operations are owned
elsewhere; SCHEMATHESIS_ALL_OPERATIONS=1 includes them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.accounting.test_api_support import build_world, register_body

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "20"))
OWN_PATHS = r"^/api/v1/(jobs|budgets|advice|metrics)"
WHATIF_PATHS = r"/project/$"


def _operations():
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    if os.environ.get("SCHEMATHESIS_ALL_OPERATIONS") != "1":
        schema = schema.include(path_regex=OWN_PATHS).exclude(path_regex=WHATIF_PATHS)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation, mode: GenerationMode, headers: dict[str, str]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    run()


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


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_api_conforms_to_its_schema(mode):
    world = build_world()
    # Real rows for generated ids and keys to hit now and then.
    world.client("sched_a").post("/api/v1/jobs/", register_body(scheduler_job_id="1"), format="json")
    headers = {"Authorization": f"Bearer {world.secrets['admin']}"}
    failures = []
    with keep_test_connection():
        operations = _operations()
        assert len(operations) >= 18
        for operation in operations:
            try:
                _fuzz(operation, mode, headers)
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)
