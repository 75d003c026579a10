"""The CPU threads enrich's native code runs: as many as the cores this process may actually use,
waiting for each other without spinning against other processes.

llama.cpp, LightGBM and implicit run their threads through OpenMP (GNU libgomp), whose threads
wait for each other at every barrier — in llama.cpp, every step of the graph — by spinning first.
When they outnumber the cores they get (another job on the machine, a container's CPU quota below
the thread count), a thread spins while the one it waits for is descheduled. So:

- :func:`available_cores` counts the CPUs in this process's affinity mask and caps them by the CPU
  quota of its cgroup (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, along the process's own cgroup
  path up to the root: a container's, a systemd slice's, a Kubernetes limit); the embedded
  model's and the re-ranker's thread counts come from it;
- :func:`passive_waits` makes OpenMP threads sleep instead of spin when they wait
  (``OMP_WAIT_POLICY=PASSIVE``), unless the environment already chose a policy. Measured by
  ``bench/shared_cores.py``: the same speed alone, and two processes sharing two cores each keep
  about three fifths of their solo throughput instead of a third.

    >>> 1 <= available_cores() <= (os.cpu_count() or 1)
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota (rounded
    up)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cgroup_cpu_quota()
    cores = cpus or 1
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def cgroup_cpu_quota(proc_cgroup: str = "/proc/self/cgroup", root: Path = CGROUP_ROOT) -> float:
    """The tightest CPU quota (in CPUs) along this process's cgroup path, or 0.0 when none is set.

    >>> import tempfile
    >>> fs = Path(tempfile.mkdtemp())
    >>> _ = (fs / "cpu/job").mkdir(parents=True)
    >>> _ = (fs / "cpu/job/cpu.cfs_quota_us").write_text("150000")
    >>> _ = (fs / "cpu/job/cpu.cfs_period_us").write_text("100000")
    >>> _ = (fs / "self").write_text("4:cpu,cpuacct:/job\\n0::/\\n")
    >>> cgroup_cpu_quota(str(fs / "self"), fs)
    1.5
    """
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return 0.0
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            quotas += _along(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
                if mount.is_dir():
                    quotas += _along(mount, path, _v1_quota)
                    break
    return min(quotas, default=0.0)


def _along(mount: Path, path: str, read: Callable[[Path], float]) -> list[float]:
    """Quotas set in the cgroup at ``path`` and every parent up to ``mount`` (a container sees
    its own cgroup as the root, so the root is read too)."""
    found = []
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        quota = read(mount.joinpath(*parts[:depth]))
        if quota:
            found.append(quota)
    return found


def _v2_quota(folder: Path) -> float:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return 0.0
    return 0.0 if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return 0.0
    return quota / period if quota > 0 and period > 0 else 0.0


def passive_waits() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set;
    True if it was set here. OpenMP reads it once, when its runtime loads: enrich calls this on
    import, before it loads llama.cpp, LightGBM or implicit (a process that loaded one of them
    before importing enrich keeps the policy it started with)."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


passive_waits()  # on import: enrich/__init__ imports this module before anything native loads
