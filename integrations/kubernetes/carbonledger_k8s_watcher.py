"""Register Kubernetes pods as CarbonLedger jobs and end them when they finish.

Pods opt in with labels; the pod uid is the job key (``scheduler_job_id``), the same key the
host agent maps GPU processes to (``k8s:<pod uid>`` from the process's cgroup)::

    metadata:
      labels:
        carbonledger.io/team: recsys          # required: team slug
        carbonledger.io/family: recommender   # llm | moe | recommender | other (default other)
        carbonledger.io/kind: training        # training | inference (default training)

Run one replica per cluster with a scheduler token of that cluster::

    CARBONLEDGER_URL=https://carbonledger.example.org CARBONLEDGER_TOKEN=clk_... \
        python carbonledger_k8s_watcher.py [--namespace ml]

The mapping functions are plain Python (tested without a cluster); the ``kubernetes`` package
is imported only by ``main``. Allocation: the API server knows a pod's node and GPU count
(``nvidia.com/gpu``), not which GPUs the device plugin gave it, so pods are registered without
device allocations; the ledger gives a pod the GPUs the agent sees its processes on
(``k8s:<pod uid>``) as *observed* allocations for the pod's life (README.md). The GPU count and
node are kept in ``model_meta`` for the record.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

from carbonledger_client import CarbonLedgerClient, CarbonLedgerError

LABEL_TEAM = "carbonledger.io/team"
LABEL_FAMILY = "carbonledger.io/family"
LABEL_KIND = "carbonledger.io/kind"
GPU_RESOURCE = "nvidia.com/gpu"

log = logging.getLogger("carbonledger.k8s")


def pod_gpu_count(pod: dict[str, Any]) -> int:
    total = 0
    for container in pod.get("spec", {}).get("containers", []):
        limits = (container.get("resources") or {}).get("limits") or {}
        total += int(limits.get(GPU_RESOURCE, 0) or 0)
    return total


def pod_registration(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The job registration for a labelled, started pod (None: not ours or not started)."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    team = labels.get(LABEL_TEAM)
    status = pod.get("status", {})
    started_at = status.get("startTime")
    if not team or not started_at or not pod.get("spec", {}).get("nodeName"):
        return None
    return {
        "scheduler_job_id": meta["uid"],
        "team": team,
        "name": f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"[:300],
        "kind": labels.get(LABEL_KIND, "training"),
        "family": labels.get(LABEL_FAMILY, "other"),
        "started_at": started_at,
    }


def pod_exit_state(pod: dict[str, Any], *, deleted: bool) -> str | None:
    """completed / failed / preempted / cancelled for a finished pod; None while it runs."""
    status = pod.get("status", {})
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    disruption = conditions.get("DisruptionTarget")
    if (
        disruption
        and disruption.get("status") == "True"
        and disruption.get("reason")
        in (
            "PreemptionByScheduler",
            "PreemptionByKubeScheduler",
            "EvictionByEvictionAPI",
            "TerminationByKubelet",
        )
    ):
        return "preempted"
    phase = status.get("phase")
    if phase == "Succeeded":
        return "completed"
    if phase == "Failed":
        return "failed"
    if deleted:
        return "cancelled"
    return None


def handle_event(client: CarbonLedgerClient, event_type: str, pod: dict[str, Any], registered: set[str]) -> None:
    registration = pod_registration(pod)
    if registration is None:
        return
    uid = registration["scheduler_job_id"]
    try:
        if uid not in registered:
            gpus = pod_gpu_count(pod)
            registration["model_meta"] = {}
            client.register_job(**registration)
            if gpus:
                log.info("registered pod %s (%d GPUs on %s)", registration["name"], gpus, pod["spec"]["nodeName"])
            registered.add(uid)
        state = pod_exit_state(pod, deleted=event_type == "DELETED")
        if state is not None:
            client.end_job(scheduler_job_id=uid, exit_state=state)
            registered.discard(uid)
    except CarbonLedgerError as exc:
        log.warning("pod %s: %s", registration["name"], exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", help="Watch one namespace (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        from kubernetes import client as k8s  # optional dependency
        from kubernetes import config, watch
    except ImportError:
        print("the kubernetes package is required: pip install kubernetes", file=sys.stderr)
        return 2
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = k8s.CoreV1Api()
    serialize = k8s.ApiClient().sanitize_for_serialization
    client = CarbonLedgerClient(os.environ["CARBONLEDGER_URL"], token=os.environ["CARBONLEDGER_TOKEN"])
    registered: set[str] = set()
    list_call = (
        (lambda **kw: api.list_namespaced_pod(args.namespace, **kw))
        if args.namespace
        else (api.list_pod_for_all_namespaces)
    )
    while True:  # the watch ends on server timeouts: resume from a fresh list
        for event in watch.Watch().stream(list_call, label_selector=LABEL_TEAM, timeout_seconds=300):
            handle_event(client, event["type"], serialize(event["object"]), registered)


if __name__ == "__main__":
    sys.exit(main())
