"""``carbonledger``: the command line of the CarbonLedger client, for users (stdlib only).

    carbonledger job 88123                     # the footprint of Slurm job 88123
    carbonledger job 88123 --json              # the API's job and footprint documents
    carbonledger job 88123 --output slurm-88123.out   # append the summary to a file

Configuration from the environment (flags override): ``CARBONLEDGER_URL`` (the server, no
trailing slash), ``CARBONLEDGER_TOKEN`` (a user token: the jobs of your teams) and, with a user
or admin token, ``CARBONLEDGER_CLUSTER`` (the cluster's id: scheduler ids are unique per
cluster). Exit status: 0 printed, 1 the API refused (the problem is printed), 2 usage.

Built on ``carbonledger_client`` (the same directory or the same distribution).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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


def job_summary(job: dict[str, Any], footprint: dict[str, Any], *, base_url: str) -> str:
    """The text ``carbonledger job`` prints, from the API's job and footprint documents."""
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
    if footprint["has_ledger"]:
        quality = f"{footprint['measured_fraction'] * 100:.1f} % of GPU energy measured by the energy counter; {state}"
    else:
        quality = "no telemetry attributed yet (all zeros)"
    lines.append(f"  Data quality  {quality}; method {footprint['method_version'] or '-'}")
    lines.append(f"  Dashboard     {base_url.rstrip('/')}/jobs/{job['id']}/")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonledger", description="CarbonLedger from the command line.")
    parser.add_argument("--url", default=os.environ.get("CARBONLEDGER_URL"), help="server URL ($CARBONLEDGER_URL)")
    parser.add_argument("--token", default=os.environ.get("CARBONLEDGER_TOKEN"), help="API token ($CARBONLEDGER_TOKEN)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    commands = parser.add_subparsers(dest="command", required=True)
    job = commands.add_parser("job", help="a job's energy, carbon, energy per unit and data quality")
    job.add_argument("scheduler_job_id", help="the scheduler's job id (Slurm: $SLURM_JOB_ID)")
    job.add_argument(
        "--cluster",
        type=int,
        default=int(os.environ["CARBONLEDGER_CLUSTER"])
        if os.environ.get("CARBONLEDGER_CLUSTER", "").isdigit()
        else None,
        help="the job's cluster id ($CARBONLEDGER_CLUSTER; implied by a scheduler token)",
    )
    job.add_argument("--json", action="store_true", help="print the API's job and footprint documents as JSON")
    job.add_argument("--output", help="append the summary to this file instead of printing it")
    return parser


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.url or not args.token:
        err.write("carbonledger: set CARBONLEDGER_URL and CARBONLEDGER_TOKEN (or --url and --token)\n")
        return 2
    client = CarbonLedgerClient(args.url, token=args.token, timeout_s=args.timeout, cluster=args.cluster)
    try:
        job = client.job(scheduler_job_id=args.scheduler_job_id)
        footprint = client.footprint(scheduler_job_id=args.scheduler_job_id)
    except CarbonLedgerError as exc:
        err.write(f"carbonledger: {exc}\n")
        return 1
    except OSError as exc:  # unreachable server, timeout
        err.write(f"carbonledger: cannot reach {args.url}: {exc}\n")
        return 1
    text = (
        json.dumps({"job": job, "footprint": footprint}, indent=2, sort_keys=True) + "\n"
        if args.json
        else job_summary(job, footprint, base_url=args.url)
    )
    if args.output:
        with open(args.output, "a", encoding="utf-8") as handle:
            handle.write(text)
    else:
        out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
