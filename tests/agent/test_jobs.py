from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from telemetry.agent.jobs import JobMapper, job_from_cgroup, parse_visible_devices, visible_includes


def proc(root: Path, pid: int, *, cgroup: str = "", env: dict[str, str] | None = None, start: int = 100) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in (env or {}).items()))
    (d / "stat").write_text(f"{pid} (python3 train.py) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 8 0 {start} 0 0\n")


POD = "1f0c3c8e-5b7a-4d59-9a0e-2f6d8c1b7a42"


def test_cgroup_layouts():
    assert job_from_cgroup("12:devices:/slurm/uid_1000/job_4242/step_0\n") == "slurm:4242"
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/job_4242/step_batch/user/task_0\n") == "slurm:4242"
    assert job_from_cgroup(f"11:memory:/kubepods/burstable/pod{POD}/0123abcd\n") == f"k8s:{POD}"
    assert job_from_cgroup(f"0::/kubepods/pod{POD}/0123abcd\n") == f"k8s:{POD}"
    systemd = (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
        "cri-containerd-0123.scope\n"
    )
    assert job_from_cgroup(systemd) == f"k8s:{POD}"
    guaranteed = f"0::/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/cri-containerd-0123.scope\n"
    assert job_from_cgroup(guaranteed) == f"k8s:{POD}"
    assert job_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert job_from_cgroup("0::/system.slice/slurmd.service\n") is None


# Slurm's own examples (doc/html/cgroup_v2.shtml, cgroup.conf(5), 26.05): the job's cgroup v2
# directory is the SLUID itself, "s" + 13 Crockford base32 digits, printed upper case.
SLUID = "sEKNKTV3WPV500"


def test_slurm_cgroup_v2_layouts_numeric_id_and_sluid():
    numeric = "0::/system.slice/slurmstepd.scope/job_88123/step_0/user/task_0\n"  # < 26.05 or CgroupJobIdPaths=yes
    sluid = f"0::/system.slice/slurmstepd.scope/{SLUID}/step_0/user/task_0\n"  # 26.05 default
    assert job_from_cgroup(numeric) == "slurm:88123"
    assert job_from_cgroup(sluid) == f"slurm:{SLUID}"
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/s5K1KKYAYG5D00/step_0/\n") == "slurm:s5K1KKYAYG5D00"
    assert job_from_cgroup(f"0::/system.slice/slurmstepd.scope/{SLUID}/step_batch\n") == f"slurm:{SLUID}"
    assert job_from_cgroup(f"0::/system.slice/slurmstepd.scope/{SLUID}\n") == f"slurm:{SLUID}"
    # Several slurmd on one host: the scope is "<node>_slurmstepd.scope".
    multi = f"0::/system.slice/node1_slurmstepd.scope/{SLUID}/step_0/user/task_0\n"
    assert job_from_cgroup(multi) == f"slurm:{SLUID}"
    assert job_from_cgroup("0::/system.slice/node1_slurmstepd.scope/job_77/step_0\n") == "slurm:77"
    # Slurm reads a SLUID in either case; the key is its printed form.
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/seknktv3wpv500/step_0\n") == f"slurm:{SLUID}"
    # Not a SLUID: wrong length, a letter base32 leaves out (U), no leading "s", "job_" + SLUID
    # (no Slurm layout), and slurmstepd's waiting area.
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/sEKNKTV3WPV50/step_0\n") is None
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/sEKNKTV3WPVU00/step_0\n") is None
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/xEKNKTV3WPV500/step_0\n") is None
    assert job_from_cgroup(f"0::/system.slice/slurmstepd.scope/job_{SLUID}/step_0\n") is None
    assert job_from_cgroup("0::/system.slice/slurmstepd.scope/system\n") is None


def test_mapper_both_slurm_layouts_before_the_environment(tmp_path):
    """Fake /proc trees: each layout wins over the environment; the environment only when neither matches."""
    proc(
        tmp_path,
        301,
        cgroup="0::/system.slice/slurmstepd.scope/job_88123/step_0/user/task_0\n",
        env={"SLURM_JOB_ID": "99999"},
    )
    proc(
        tmp_path,
        302,
        cgroup=f"0::/system.slice/slurmstepd.scope/{SLUID}/step_0/user/task_0\n",
        env={"SLURM_JOB_ID": "99999", "SLURM_JOB_SLUID": SLUID},
    )
    # Outside the job's cgroup: SLURM_JOB_ID, the numeric id the prolog registers (with the SLUID).
    proc(
        tmp_path,
        303,
        cgroup="0::/user.slice/session-4.scope\n",
        env={"SLURM_JOB_ID": "88125", "SLURM_JOB_SLUID": SLUID},
    )
    proc(tmp_path, 304, cgroup="0::/user.slice/session-4.scope\n", env={"SLURM_JOB_ID": "88124"})
    proc(tmp_path, 305, cgroup="0::/user.slice/session-4.scope\n", env={"SLURM_JOB_ID": "job-7; rm"})
    m = JobMapper(str(tmp_path))
    got = {pid: (m.resolve(pid).job_key, m.resolve(pid).source) for pid in (301, 302, 303, 304, 305)}
    assert got == {
        301: ("slurm:88123", "slurm_cgroup"),
        302: (f"slurm:{SLUID}", "slurm_cgroup"),
        303: ("slurm:88125", "slurm_env"),
        304: ("slurm:88124", "slurm_env"),
        305: (None, "none"),
    }


def test_mapper_precedence_and_sources(tmp_path):
    proc(
        tmp_path,
        101,
        cgroup="0::/system.slice/slurmstepd.scope/job_88123/step_0/user/task_0\n",
        env={"SLURM_JOB_ID": "99999", "CARBONLEDGER_JOB": "ignored", "CUDA_VISIBLE_DEVICES": "0,1"},
    )
    proc(tmp_path, 102, cgroup="0::/user.slice/session-1.scope\n", env={"SLURM_JOB_ID": "777"})
    proc(
        tmp_path,
        103,
        cgroup=f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD.replace('-', '_')}.slice/x.scope\n",
        env={"CARBONLEDGER_JOB": "ignored-too"},
    )
    proc(tmp_path, 104, cgroup="0::/user.slice\n", env={"CARBONLEDGER_JOB": "nightly-eval"})
    proc(tmp_path, 105, cgroup="0::/user.slice\n", env={"HOME": "/root"})
    m = JobMapper(str(tmp_path))
    got = {pid: (m.resolve(pid).job_key, m.resolve(pid).source) for pid in (101, 102, 103, 104, 105, 106)}
    assert got == {
        101: ("slurm:88123", "slurm_cgroup"),
        102: ("slurm:777", "slurm_env"),
        103: (f"k8s:{POD}", "k8s_cgroup"),
        104: ("env:nightly-eval", "env"),
        105: (None, "none"),
        106: (None, "gone"),
    }
    assert m.resolve(101).visible_devices == ("0", "1")


def test_mapper_cache_notices_pid_reuse(tmp_path):
    proc(tmp_path, 200, env={"SLURM_JOB_ID": "1"}, start=500)
    m = JobMapper(str(tmp_path))
    assert m.resolve(200).job_key == "slurm:1"
    proc(tmp_path, 200, env={"SLURM_JOB_ID": "1"}, start=500)
    (tmp_path / "200" / "environ").write_bytes(b"SLURM_JOB_ID=2\0")
    assert m.resolve(200).job_key == "slurm:1"  # same start time: same process, cached
    proc(tmp_path, 200, env={"SLURM_JOB_ID": "2"}, start=900)
    assert m.resolve(200).job_key == "slurm:2"  # new start time: pid reused by another job


def test_mapper_rereads_a_replaced_stat_file_and_lets_go_of_dead_pids(tmp_path):
    # The stat file stays open between ticks; one unlinked and created again (a new process on
    # the pid in a test tree) is read from its path, not through the stale open file.
    proc(tmp_path, 300, env={"SLURM_JOB_ID": "1"}, start=500)
    m = JobMapper(str(tmp_path))
    assert m.resolve(300).job_key == "slurm:1"
    (tmp_path / "300" / "stat").unlink()
    (tmp_path / "300" / "environ").write_bytes(b"SLURM_JOB_ID=2\0")
    assert m.resolve(300).job_key == "slurm:2"  # no stat file: not known to be the same process
    proc(tmp_path, 300, env={"SLURM_JOB_ID": "3"}, start=700)
    assert m.resolve(300).job_key == "slurm:3"
    m.forget_except(set())
    assert m._stat_fds == {} and m._cache == {}
    m.resolve(300)
    m.close()
    assert m._stat_fds == {}


def test_mapper_on_real_proc_notices_an_exited_process():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "SLURM_JOB_ID": "77"}
    )
    # Until the child has exec'd, /proc/<pid>/environ is the forked copy of ours (no SLURM_JOB_ID):
    # wait for the exec (bounded), as the agent only ever sees processes that already run.
    deadline = time.monotonic() + 10
    while b"SLURM_JOB_ID=77" not in Path(f"/proc/{child.pid}/environ").read_bytes():
        assert time.monotonic() < deadline, "the child never exec'd"
        time.sleep(0.01)
    m = JobMapper("/proc")
    try:
        assert m.resolve(child.pid).job_key == "slurm:77"
        assert m.resolve(child.pid).job_key == "slurm:77"  # from the open stat file, cached
    finally:
        child.kill()
        child.wait()
    # Reaped: the open stat file reads ESRCH, and the pid has no /proc entry (or another
    # process's, with another start time): either way not the cached job.
    job = m.resolve(child.pid)
    assert job.job_key != "slurm:77" or job.source == "gone"
    m.close()


def test_cuda_visible_devices():
    assert parse_visible_devices(None) is None
    assert parse_visible_devices("GPU-aaa, GPU-bbb") == ("GPU-aaa", "GPU-bbb")
    assert visible_includes(("GPU-aaa",), uuid="GPU-aaa-1111") is True
    assert visible_includes(("GPU-bbb",), uuid="GPU-aaa-1111") is False
    assert visible_includes(("0", "1"), uuid="GPU-aaa") is None  # indices are cgroup-relative
    assert visible_includes(None, uuid="GPU-aaa") is None
