"""Process -> job mapping from /proc/<pid>/cgroup and /proc/<pid>/environ.

Precedence: the scheduler's cgroup (cannot be changed by the job; Slurm's numeric-id layout or
Slurm 26.05's SLUID layout), then its environment
(SLURM_JOB_ID), then a Kubernetes pod cgroup, then an explicit CARBONLEDGER_JOB label for hosts
without a scheduler. job_key: "slurm:<id>" (numeric id or SLUID), "k8s:<pod-uid>", "env:<value>".

Slurm 26.05 (cgroup/v2) names a job's cgroup directory with its SLUID, not "job_<id>":
``/system.slice/slurmstepd.scope/sEKNKTV3WPV500/step_0/user/task_0`` (cgroup.conf
``CgroupJobIdPaths=yes`` restores ``job_<id>``); with several slurmd per host the scope is
``<node>_slurmstepd.scope``. A SLUID is "s" + 13 characters of Crockford's base32, printed upper
case; the prolog sends the same SLUID (``SLURM_JOB_SLUID``) when it registers the job, so the
server matches either key (integrations/slurm).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import NamedTuple

from telemetry.agent.log import kv

logger = logging.getLogger("carbonledger.agent.jobs")

# Slurm's SLUID: "s" + 13 Crockford base32 digits (no I, L, O, U); Slurm reads either case.
_SLUID = r"[sS][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{13}"
# cgroup v1 ".../slurm/uid_1000/job_4242/step_0", cgroup v2 "/system.slice/slurmstepd.scope/job_4242/..."
# (before 26.05, or CgroupJobIdPaths=yes) and, from 26.05, ".../slurmstepd.scope/sEKNKTV3WPV500/...".
_SLURM_CGROUP = re.compile(
    r"/(?:slurm[^/]*|[^/]+_slurmstepd\.scope)/(?:uid_\d+/)?(?:job_(\d+)|(" + _SLUID + r"))(?:/|$)"
)
_SLURM_ENV_JOB = re.compile(r"\d+|" + _SLUID)


def slurm_job_key(job: str) -> str:
    """``slurm:<id>``; a SLUID in its printed form (lower-case "s", upper-case digits)."""
    if job[:1] in "sS":
        return f"slurm:s{job[1:].upper()}"
    return f"slurm:{job}"


# cgroupfs driver ".../kubepods/burstable/pod<uid>/<container>"
_K8S_CGROUPFS = re.compile(
    r"/kubepods(?:/[a-z-]+)?/pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:/|$)"
)
# systemd driver "kubepods-burstable-pod<uid with underscores>.slice"
_K8S_SYSTEMD = re.compile(
    r"kubepods(?:-[a-z]+)?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice"
)


def job_from_cgroup(text: str) -> str | None:
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        m = _SLURM_CGROUP.search(path)
        if m:
            return slurm_job_key(m.group(1) or m.group(2))
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        m = _K8S_CGROUPFS.search(path)
        if m:
            return f"k8s:{m.group(1)}"
        m = _K8S_SYSTEMD.search(path)
        if m:
            return f"k8s:{m.group(1).replace('_', '-')}"
    return None


def parse_environ(raw: bytes) -> dict[str, str]:
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def parse_visible_devices(value: str | None) -> tuple[str, ...] | None:
    """CUDA_VISIBLE_DEVICES as a tuple of entries (indices, GPU-/MIG- UUIDs); None when unset."""
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


def visible_includes(visible: tuple[str, ...] | None, *, uuid: str) -> bool | None:
    """Whether CUDA_VISIBLE_DEVICES lets the process see the device; None when it cannot be told.

    Index lists are relative to the job's cgroup under Slurm and in containers (device 0 inside a
    job is not host device 0), so only UUID entries decide; an index list says nothing here.
    """
    if visible is None:
        return None
    uuids = [v for v in visible if v.startswith(("GPU-", "MIG-"))]
    if not uuids:
        return None
    return any(uuid.startswith(v) or v.startswith(uuid) for v in uuids)


class ProcessJob(NamedTuple):
    pid: int
    job_key: str | None
    visible_devices: tuple[str, ...] | None
    source: str  # "slurm_cgroup" | "slurm_env" | "k8s_cgroup" | "env" | "none" | "gone"


# Open stat files kept between ticks at most: past this many GPU processes, the rest are read by
# path each time (the fd limit is shared with the spool, the sender's sockets and everything else).
_MAX_HELD_STAT_FILES = 256


class JobMapper:
    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._cache: dict[int, tuple[str | None, ProcessJob]] = {}
        self._stat_fds: dict[int, int] = {}

    def _read(self, pid: int, name: str) -> bytes | None:
        try:
            with open(os.path.join(self.proc_root, str(pid), name), "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def _read_stat(self, pid: int) -> bytes | None:
        # Read every tick for every GPU process, so its file stays open from one tick to the next:
        # a pread, not an open (path lookup) + read + close. On /proc an open stat file belongs to
        # its process: once that has exited the read fails (ESRCH) even if the pid is in use again,
        # and the file is opened afresh by path. A file no longer linked at its path (a test tree
        # replacing it) is reopened too, so a read always sees what the path holds now.
        fd = self._stat_fds.get(pid)
        if fd is not None:
            try:
                if os.fstat(fd).st_nlink:
                    return os.pread(fd, 4096, 0)
            except OSError:
                pass
            self._close_stat(pid)
        try:
            fd = os.open(os.path.join(self.proc_root, str(pid), "stat"), os.O_RDONLY)
        except OSError:
            return None
        try:
            raw = os.pread(fd, 4096, 0)
        except OSError:
            os.close(fd)
            return None
        if len(self._stat_fds) < _MAX_HELD_STAT_FILES:
            self._stat_fds[pid] = fd
        else:
            os.close(fd)
        return raw

    def _close_stat(self, pid: int) -> None:
        fd = self._stat_fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def _start_time(self, pid: int) -> str | None:
        raw = self._read_stat(pid)
        if raw is None:
            return None
        # Field 22 (starttime) after the parenthesised comm, which may contain spaces.
        rest = raw.rsplit(b")", 1)[-1].split(None, 20)
        return rest[19].decode() if len(rest) > 19 else ""

    def resolve(self, pid: int) -> ProcessJob:
        start = self._start_time(pid)
        cached = self._cache.get(pid)
        if cached is not None and cached[0] == start:
            return cached[1]  # same process (pid not reused): environ and cgroup do not change
        result = self._resolve_uncached(pid)
        self._cache[pid] = (start, result)
        return result

    def _resolve_uncached(self, pid: int) -> ProcessJob:
        cgroup_raw = self._read(pid, "cgroup")
        environ_raw = self._read(pid, "environ")
        if cgroup_raw is None and environ_raw is None:
            return ProcessJob(pid, None, None, "gone")
        env = parse_environ(environ_raw) if environ_raw is not None else {}
        visible = parse_visible_devices(env.get("CUDA_VISIBLE_DEVICES"))
        cgroup = cgroup_raw.decode(errors="replace") if cgroup_raw is not None else ""
        job = job_from_cgroup(cgroup)
        if job is not None and job.startswith("slurm:"):
            return ProcessJob(pid, job, visible, "slurm_cgroup")
        # The environment only when no cgroup layout (numeric or SLUID) matched: a job can set its
        # own environment, not its cgroup.
        env_job = env.get("SLURM_JOB_ID", "").strip()
        if _SLURM_ENV_JOB.fullmatch(env_job):
            return ProcessJob(pid, slurm_job_key(env_job), visible, "slurm_env")
        if job is not None:
            return ProcessJob(pid, job, visible, "k8s_cgroup")
        label = env.get("CARBONLEDGER_JOB", "").strip()
        if label:
            return ProcessJob(pid, f"env:{label}", visible, "env")
        if environ_raw is None:
            kv(logger, logging.DEBUG, "environ_unreadable", pid=pid)
        return ProcessJob(pid, None, visible, "none")

    def forget_except(self, live_pids: set[int]) -> None:
        for pid in list(self._cache):
            if pid not in live_pids:
                del self._cache[pid]
        for pid in list(self._stat_fds):
            if pid not in live_pids:
                self._close_stat(pid)

    def close(self) -> None:
        """Close the stat files kept open between ticks (the mapper stays usable)."""
        for pid in list(self._stat_fds):
            self._close_stat(pid)

    def __del__(self) -> None:
        # A mapper dropped without close() must not keep its files open. (At interpreter exit
        # the process is ending anyway, and os may already be torn down.)
        with contextlib.suppress(Exception):
            self.close()
