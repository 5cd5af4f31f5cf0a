"""``carbonledger``: the command line of the CarbonLedger client, for users (stdlib only).

    carbonledger job 88123                     # the footprint of Slurm job 88123
    carbonledger job 88123 --json              # the API's job and footprint documents
    carbonledger job 88123 --output slurm-88123.out   # append the summary to a file
    carbonledger serving svc-7 --server vllm --metrics-url http://127.0.0.1:8000/metrics --every 60
                                               # a sidecar: push the inference server's counters

Configuration from the environment (flags override): ``CARBONLEDGER_URL`` (the server, no
trailing slash), ``CARBONLEDGER_TOKEN`` (a user token: the jobs of your teams) and, with a user
or admin token, ``CARBONLEDGER_CLUSTER`` (the cluster's id: scheduler ids are unique per
cluster). Exit status: 0 printed, 1 the API refused (the problem is printed), 2 usage.

Built on ``carbonledger_client`` (the same directory or the same distribution).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import urllib.request
from typing import Any, TextIO

try:
    from carbonledger_client import CarbonLedgerClient, CarbonLedgerError
except ImportError:  # imported as clients.python.carbonledger_cli (the server's own install)
    from clients.python.carbonledger_client import CarbonLedgerClient, CarbonLedgerError

__all__ = ["job_summary", "main"]

J_PER_KWH = 3.6e6


def _grams(value: float) -> str:
    """Carbon with a unit that keeps it readable: g below 10 kg, kg below 10 t, else t."""
    if abs(value) < 1e4:
        return f"{value:,.1f} g"
    if abs(value) < 1e7:
        return f"{value / 1e3:,.2f} kg"
    return f"{value / 1e6:,.3f} t"


def _kwh(joules: float) -> str:
    return f"{joules / J_PER_KWH:,.3f} kWh"


def _service_lines(service: dict[str, Any]) -> list[str]:
    """An inference service's rates (the API's serving report) as summary lines."""
    lines = [
        f"  Service       {service['server'] or 'no counters yet'}: {service['period_start']} to "
        f"{service['period_end']}, {service['readings']} readings"
    ]
    for key, label in (
        ("per_request", "request"),
        ("per_1k_input_tokens", "1k input tokens"),
        ("per_1k_output_tokens", "1k output tokens"),
        ("per_hour", "hour"),
        ("per_day", "day"),
    ):
        rate = service[key]
        if rate is not None:
            lines.append(f"  Per {label:<17}{rate['energy_j']:.4g} J, {rate['co2e_g']:.4g} g CO2e")
    return lines


def job_summary(
    job: dict[str, Any], footprint: dict[str, Any], *, base_url: str, service: dict[str, Any] | None = None
) -> str:
    """The text ``carbonledger job`` prints, from the API's job and footprint documents (and, for
    an inference service, its serving report)."""
    energy, co2e = footprint["energy"], footprint["co2e"]
    name = f' "{job["name"]}"' if job.get("name") else ""
    state = (
        "final"
        if footprint["is_final"]
        else "provisional, still accruing"
        if job["status"] == "running"
        else "provisional"
    )
    lines = [
        f"CarbonLedger: job {job['scheduler_job_id']}{name} (team {job['team']}, cluster {job['cluster_slug']}, "
        f"{job['status']})",
        f"  Energy        {_kwh(energy['total_j'])} (GPU {_kwh(energy['gpu_j'])}: "
        f"active {_kwh(energy['gpu_active_j'])}, "
        f"idle {_kwh(energy['gpu_idle_j'])}; host {_kwh(energy['host_j'])}; facility {_kwh(energy['facility_j'])})",
        f"  Carbon        {_grams(co2e['total_g'])} CO2e (operational {_grams(co2e['operational_g'])}, "
        f"embodied {_grams(co2e['embodied_g'])}; range {_grams(co2e['low_g'])} to {_grams(co2e['high_g'])})",
    ]
    for unit in footprint["efficiency"]:
        lines.append(
            f"  Per {unit['unit']:<10}{unit['energy_j_per_unit']:.4g} J, {unit['co2e_g_per_unit']:.4g} g CO2e "
            f"({unit['count']:.6g} {unit['unit']})"
        )
    if not footprint["efficiency"]:
        lines.append(
            "  Per unit      no functional units reported (tokens, samples, queries: see the client's UnitsReporter)"
        )
    if service is not None:
        lines.extend(_service_lines(service))
    if footprint["has_ledger"]:
        quality = f"{footprint['measured_fraction'] * 100:.1f} % of GPU energy measured by the energy counter; {state}"
    else:
        quality = "no telemetry attributed yet (all zeros)"
    lines.append(f"  Data quality  {quality}; method {footprint['method_version'] or '-'}")
    lines.append(f"  Dashboard     {base_url.rstrip('/')}/jobs/{job['id']}/")
    return "\n".join(lines) + "\n"


def _cluster_default() -> int | None:
    value = os.environ.get("CARBONLEDGER_CLUSTER", "")
    return int(value) if value.isdigit() else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonledger", description="CarbonLedger from the command line.")
    parser.add_argument("--url", default=os.environ.get("CARBONLEDGER_URL"), help="server URL ($CARBONLEDGER_URL)")
    parser.add_argument("--token", default=os.environ.get("CARBONLEDGER_TOKEN"), help="API token ($CARBONLEDGER_TOKEN)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    commands = parser.add_subparsers(dest="command", required=True)
    job = commands.add_parser("job", help="a job's energy, carbon, energy per unit and data quality")
    serving = commands.add_parser(
        "serving", help="push an inference server's counters (requests, tokens) for a service, as a sidecar"
    )
    for command in (job, serving):
        command.add_argument("scheduler_job_id", help="the scheduler's job id (Slurm: $SLURM_JOB_ID)")
        command.add_argument(
            "--cluster",
            type=int,
            default=_cluster_default(),
            help="the job's cluster id ($CARBONLEDGER_CLUSTER; implied by a scheduler token)",
        )
    job.add_argument("--json", action="store_true", help="print the API's job and footprint documents as JSON")
    job.add_argument("--output", help="append the summary to this file instead of printing it")
    serving.add_argument("--server", required=True, choices=["tgi", "triton", "trtllm", "vllm"])
    serving.add_argument(
        "--metrics-url",
        required=True,
        help="the server's metrics page (vLLM, TGI: /metrics; trtllm-serve: /prometheus/metrics; "
        "Triton: :8002/metrics)",
    )
    serving.add_argument("--model", help="the model whose series count (a Triton ensemble's name)")
    serving.add_argument("--every", type=float, default=60.0, help="seconds between pushes (default 60)")
    serving.add_argument("--count", type=int, default=0, help="stop after this many pushes (default 0: never)")
    return parser


def _job_command(args: argparse.Namespace, client: CarbonLedgerClient, out: TextIO) -> None:
    job = client.job(scheduler_job_id=args.scheduler_job_id)
    footprint = client.footprint(scheduler_job_id=args.scheduler_job_id)
    service = None
    if job["kind"] == "inference":
        try:
            service = client.service_report(scheduler_job_id=args.scheduler_job_id)
        except CarbonLedgerError as exc:
            if exc.status != 400:  # 400: no whole hour yet; the summary goes without its rates
                raise
    if args.json:
        document = {"job": job, "footprint": footprint, **({"service": service} if service else {})}
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    else:
        text = job_summary(job, footprint, base_url=args.url, service=service)
    if args.output:
        with open(args.output, "a", encoding="utf-8") as handle:
            handle.write(text)
    else:
        out.write(text)


def _scrape(url: str, *, timeout_s: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})  # noqa: S310 - the operator's URL
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        return response.read().decode("utf-8")


def _serving_command(args: argparse.Namespace, client: CarbonLedgerClient, out: TextIO, err: TextIO) -> int:
    """Scrape and push every ``--every`` seconds; a failed round is reported and the next one
    tried (a sidecar outlives outages). Exit 1 when the last round failed."""
    pushed = 0
    failed = False
    while True:
        # dt.timezone.utc, not dt.UTC: the client runs on Python 3.9 too.
        now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017
        at = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        try:
            row = client.report_serving(
                scheduler_job_id=args.scheduler_job_id,
                server=args.server,
                metrics=_scrape(args.metrics_url, timeout_s=args.timeout),
                at=at,
                model=args.model,
            )
            out.write(
                f"carbonledger: {args.server} counters of {args.scheduler_job_id} at {row['at']}: "
                f"{row['requests_total']:.0f} requests, {row['input_tokens_total']} input tokens, "
                f"{row['output_tokens_total']} output tokens\n"
            )
            failed = False
        except (CarbonLedgerError, OSError) as exc:
            err.write(f"carbonledger: push failed: {exc}\n")
            failed = True
        pushed += 1
        if args.count and pushed >= args.count:
            return 1 if failed else 0
        time.sleep(args.every)


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    if not args.url or not args.token:
        err.write("carbonledger: set CARBONLEDGER_URL and CARBONLEDGER_TOKEN (or --url and --token)\n")
        return 2
    client = CarbonLedgerClient(args.url, token=args.token, timeout_s=args.timeout, cluster=args.cluster)
    if args.command == "serving":
        return _serving_command(args, client, out, err)
    try:
        _job_command(args, client, out)
    except CarbonLedgerError as exc:
        err.write(f"carbonledger: {exc}\n")
        return 1
    except OSError as exc:  # unreachable server, timeout
        err.write(f"carbonledger: cannot reach {args.url}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
