"""CarbonLedger API client (stdlib only): register/end jobs, report functional units, read footprints.

For ML engineers: report units (tokens, samples, queries, steps) from a training or inference
loop so the ledger can give energy and carbon per unit.

    from carbonledger_client import CarbonLedgerClient, UnitsReporter

    client = CarbonLedgerClient("https://carbonledger.example.org", token=os.environ["CARBONLEDGER_TOKEN"])
    reporter = UnitsReporter(client, scheduler_job_id=os.environ["SLURM_JOB_ID"], unit="tokens", every_s=60)
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        reporter.add(batch_tokens)          # sends the cumulative total at most once a minute
    reporter.close(quality_metric="val_loss", quality_value=val_loss)
    print(client.footprint(scheduler_job_id=os.environ["SLURM_JOB_ID"])["co2e"])

Reports send cumulative totals (``mode: set``), so a retried or duplicated report never
double-counts. A user token can report units on its teams' jobs; schedulers use scheduler tokens.
Network errors while reporting are logged and retried at the next report; they never raise
into the training loop unless ``strict=True``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["CarbonLedgerClient", "CarbonLedgerError", "UnitsReporter"]
__version__ = "1.0.0"

log = logging.getLogger("carbonledger")


class CarbonLedgerError(Exception):
    """An error answer of the API: ``status`` and the problem-details body (``errors`` names fields)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {problem.get('detail') or problem.get('title') or problem}")
        self.status = status
        self.problem = problem

    @property
    def fields(self) -> list[str]:
        return [e.get("field", "") for e in self.problem.get("errors", [])]


class CarbonLedgerClient:
    def __init__(self, base_url: str, *, token: str, timeout_s: float = 10.0, cluster: int | None = None) -> None:
        """``cluster``: the job's cluster id, needed with user/admin tokens for scheduler-key lookups."""
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.cluster = cluster

    # --- transport -----------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - URL is the caller's server
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                payload = response.read()
                if response.headers.get_content_type() == "application/json" and payload:
                    return json.loads(payload)
                return payload.decode("utf-8")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw) if raw else {}
            except ValueError:
                problem = {"detail": raw[:200].decode("utf-8", "replace")}
            raise CarbonLedgerError(exc.code, problem) from None

    def _job_path(self, job_id: int | None, scheduler_job_id: str | None, suffix: str = "") -> tuple[str, dict]:
        if job_id is not None:
            return f"/api/v1/jobs/{int(job_id)}/{suffix}", {}
        if scheduler_job_id is None:
            raise ValueError("give job_id or scheduler_job_id")
        key = urllib.parse.quote(str(scheduler_job_id), safe="")
        return f"/api/v1/jobs/by-key/{key}/{suffix}", {"cluster": self.cluster}

    # --- jobs ----------------------------------------------------------------------------

    def register_job(self, *, scheduler_job_id: str, team: str, kind: str, **fields: Any) -> dict:
        """POST /jobs/: fields as in the API (user, name, family, started_at, allocation, model_meta...)."""
        return self.request(
            "POST", "/api/v1/jobs/", body={"scheduler_job_id": scheduler_job_id, "team": team, "kind": kind, **fields}
        )

    def update_job(self, *, job_id: int | None = None, scheduler_job_id: str | None = None, **fields: Any) -> dict:
        path, query = self._job_path(job_id, scheduler_job_id)
        return self.request("PATCH", path, body=fields, query=query)

    def end_job(
        self,
        *,
        exit_state: str,
        job_id: int | None = None,
        scheduler_job_id: str | None = None,
        ended_at: str | None = None,
    ) -> dict:
        path, query = self._job_path(job_id, scheduler_job_id, "end/")
        body = {"exit_state": exit_state, **({"ended_at": ended_at} if ended_at else {})}
        return self.request("POST", path, body=body, query=query)

    def report_units(
        self,
        *,
        units: dict[str, float],
        job_id: int | None = None,
        scheduler_job_id: str | None = None,
        mode: str = "set",
        primary_unit: str | None = None,
        quality_metric: str | None = None,
        quality_value: float | None = None,
    ) -> dict:
        path, query = self._job_path(job_id, scheduler_job_id, "units/")
        body: dict[str, Any] = {"units": units, "mode": mode}
        for name, value in (
            ("primary_unit", primary_unit),
            ("quality_metric", quality_metric),
            ("quality_value", quality_value),
        ):
            if value is not None:
                body[name] = value
        return self.request("POST", path, body=body, query=query)

    def job(self, *, job_id: int | None = None, scheduler_job_id: str | None = None) -> dict:
        path, query = self._job_path(job_id, scheduler_job_id)
        return self.request("GET", path, query=query)

    def footprint(self, *, job_id: int | None = None, scheduler_job_id: str | None = None) -> dict:
        path, query = self._job_path(job_id, scheduler_job_id, "footprint/")
        return self.request("GET", path, query=query)

    def jobs(self, **filters: Any) -> dict:
        """GET /jobs/ (team, status, family, kind, user, cluster, started_after/before, limit, offset)."""
        return self.request("GET", "/api/v1/jobs/", query=filters)

    # --- inference services --------------------------------------------------------------

    def report_serving(
        self,
        *,
        server: str,
        metrics: str,
        job_id: int | None = None,
        scheduler_job_id: str | None = None,
        at: str | None = None,
        model: str | None = None,
    ) -> dict:
        """POST a scrape of the service's metrics page (server: vllm, tgi, trtllm or triton)."""
        path, query = self._job_path(job_id, scheduler_job_id, "serving/")
        body: dict[str, Any] = {"server": server, "metrics": metrics}
        if at is not None:
            body["at"] = at
        if model is not None:
            body["model"] = model
        return self.request("POST", path, body=body, query=query)

    def service_report(
        self,
        *,
        job_id: int | None = None,
        scheduler_job_id: str | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> dict:
        """GET the service's energy and carbon per request, per 1k tokens, per hour and per day."""
        path, query = self._job_path(job_id, scheduler_job_id, "serving/")
        return self.request("GET", path, query={**query, "start": start, "end": end})

    # --- planning ------------------------------------------------------------------------

    def advice(self, **fields: Any) -> dict:
        return self.request("POST", "/api/v1/advice/", body=fields)

    def budget_check(self, *, team: str, co2e_g: float, at: str | None = None) -> dict:
        return self.request(
            "POST", "/api/v1/budgets/check/", body={"team": team, "co2e_g": co2e_g, **({"at": at} if at else {})}
        )

    def budgets(self, **filters: Any) -> dict:
        return self.request("GET", "/api/v1/budgets/", query=filters)


class UnitsReporter:
    """Accumulates functional units in a loop and reports the cumulative total every ``every_s``.

    Thread-safe ``add``; ``flush`` sends now; ``close`` sends the final total (with an optional
    quality metric). Failures are logged and retried at the next report unless ``strict``."""

    def __init__(
        self,
        client: CarbonLedgerClient,
        *,
        unit: str,
        job_id: int | None = None,
        scheduler_job_id: str | None = None,
        every_s: float = 60.0,
        strict: bool = False,
        clock=time.monotonic,
    ) -> None:
        self.client = client
        self.unit = unit
        self.job_id = job_id
        self.scheduler_job_id = scheduler_job_id
        self.every_s = every_s
        self.strict = strict
        self.clock = clock
        self.total = 0.0
        self.reported = 0.0
        self._last_sent = clock()
        self._lock = threading.Lock()

    def add(self, count: float) -> None:
        with self._lock:
            self.total += count
            due = self.clock() - self._last_sent >= self.every_s
        if due:
            self.flush()

    def flush(self, **quality: Any) -> bool:
        with self._lock:
            total = self.total
            self._last_sent = self.clock()
        if total == self.reported and not quality:
            return True
        try:
            self.client.report_units(
                units={self.unit: total},
                job_id=self.job_id,
                scheduler_job_id=self.scheduler_job_id,
                primary_unit=self.unit,
                **quality,
            )
        except (CarbonLedgerError, OSError) as exc:
            if self.strict:
                raise
            log.warning("carbonledger: reporting %s=%s failed: %s", self.unit, total, exc)
            return False
        self.reported = total
        return True

    def close(self, *, quality_metric: str | None = None, quality_value: float | None = None) -> bool:
        pairs = (("quality_metric", quality_metric), ("quality_value", quality_value))
        quality = {k: v for k, v in pairs if v is not None}
        return self.flush(**quality)
