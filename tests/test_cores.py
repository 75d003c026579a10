"""The cores the embedded model decodes on: affinity, cgroup CPU quotas, other processes' load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from enrich.cores import cgroup_cpu_quota

REPORT = "from enrich.cores import *; print(available_cores(), cgroup_cpu_quota())"


def _fake_cgroups(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[str, Path]:
    for name, text in files.items():
        path = tmp_path / "fs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "self").write_text(proc)
    return str(tmp_path / "self"), tmp_path / "fs"


def test_the_tightest_quota_along_the_cgroup_path_counts(tmp_path: Path) -> None:
    proc, fs = _fake_cgroups(
        tmp_path,
        "0::/jobs.slice/nightly.service\n",
        {
            "jobs.slice/cpu.max": "150000 100000\n",
            "jobs.slice/nightly.service/cpu.max": "300000 100000\n",
            "cpu.max": "max 100000\n",
        },
    )
    assert cgroup_cpu_quota(proc, fs) == 1.5


def test_a_container_sees_its_quota_at_the_root(tmp_path: Path) -> None:
    proc, fs = _fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"})
    assert cgroup_cpu_quota(proc, fs) == 0.5


def test_v1_quota_under_a_combined_mount_and_no_quota_is_none(tmp_path: Path) -> None:
    proc, fs = _fake_cgroups(
        tmp_path,
        "5:cpuacct,cpu:/docker/abc\n3:memory:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_quota(proc, fs) == 2.5
    proc, fs = _fake_cgroups(tmp_path / "none", "0::/a\n", {"a/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(proc, fs) == 0.0


def _on_one_cpu(code: str) -> list[str]:
    """What ``code`` prints, run by a fresh interpreter pinned to one CPU."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    cpu = min(os.sched_getaffinity(0))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    ).stdout.split()


def test_a_process_pinned_to_one_cpu_counts_one_core() -> None:
    assert int(_on_one_cpu(REPORT)[0]) == 1


def test_a_real_cgroup_quota_below_the_cpus_caps_the_threads() -> None:
    """A process started in a cgroup (v1) with half a CPU of quota counts 1 core, quota 0.5."""
    mount = Path("/sys/fs/cgroup/cpu")
    group = mount / f"enrich-test-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"no writable cgroup v1 CPU controller here ({exc})")
    try:
        period = int((group / "cpu.cfs_period_us").read_text())
        (group / "cpu.cfs_quota_us").write_text(str(period // 2))
        out = subprocess.run(
            [sys.executable, "-c", REPORT],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
        ).stdout.split()
        assert (int(out[0]), float(out[1])) == (1, 0.5)
    finally:
        group.rmdir()


def test_openmp_threads_wait_passively_unless_the_environment_chose() -> None:
    """Set in a fresh interpreter by importing enrich, before any native library loads; a policy
    (or spin count) the environment already has is left as it is."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    show = "import os, enrich; print(os.environ.get('OMP_WAIT_POLICY'))"

    def policy(**extra: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", show], env=env | extra, capture_output=True, text=True
        )
        return run.stdout.strip()

    assert policy() == "PASSIVE"
    assert policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert policy(GOMP_SPINCOUNT="300000") == "None"


DECODER_THREADS = (
    "import llama_cpp as lc; from enrich.llm import ChatEmbedded; "
    "print(lc.llama_n_threads(ChatEmbedded().decoder()._ctx))"
)


@pytest.mark.slow
def test_the_embedded_model_decodes_with_the_cores_available() -> None:
    """A process pinned to one CPU, whatever the machine has, decodes with one thread."""
    assert _on_one_cpu(DECODER_THREADS)[-1] == "1"
