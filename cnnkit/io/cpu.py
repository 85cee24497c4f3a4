"""The CPU budget of this process: how many cores it may keep busy, and why.

Every pool cnnkit sizes (torch's threads, decode threads, DataLoader workers,
ONNX Runtime's threads) is sized from one number, taken from, in order:

1. ``CNNKIT_THREADS`` (cnnkit's own setting: anything but a whole number of
   at least 1 is an error);
2. ``OMP_NUM_THREADS`` (what batch jobs set to share a machine; a value that
   is not a whole number is ignored, as OpenMP does);
3. the cores the process may run on (its CPU affinity: ``taskset``, Slurm,
   ``docker --cpuset-cpus``), capped by its cgroup's CPU quota (``docker
   --cpus``, Kubernetes limits: ``cpu.max`` in cgroup v2,
   ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in v1), rounded up.

Either variable above the machine's core count is capped at it.
``os.cpu_count()`` alone is none of these: in a container limited to 2 CPUs on a
64-core host it says 64. A leaf module: imports nothing of cnnkit but its errors.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# Larger values of the variables are refused: no machine has more cores.
MAX_THREADS = 4096


@dataclass(frozen=True)
class CpuBudget:
    """``cores``: how many threads may compute at once; ``reason``: where it came from."""

    cores: int
    reason: str


def cpu_budget(environ: dict[str, str] | None = None) -> CpuBudget:
    """This process's CPU budget (see the module's docstring); read afresh at each call."""
    env = os.environ if environ is None else environ
    machine = os.cpu_count() or 1
    for name in ("CNNKIT_THREADS", "OMP_NUM_THREADS"):
        text = env.get(name)
        value = _whole(text)
        if value is None and name == "CNNKIT_THREADS" and text is not None and text.strip():
            from cnnkit.errors import InputError

            raise InputError(
                f"CNNKIT_THREADS={text!r} is not a whole number of threads of at least 1",
                hint="e.g. CNNKIT_THREADS=2, or unset it for the cores this process may use",
            )
        if value is not None:
            if value > machine:  # more threads than cores only take turns on them
                return CpuBudget(machine, f"{name}={value}, capped at the {machine} cores")
            return CpuBudget(value, f"{name}={value}")
    cores, where = affinity_cores()
    quota = cgroup_cpu_quota()
    if quota is not None and math.ceil(quota) < cores:
        return CpuBudget(max(1, math.ceil(quota)), f"cgroup CPU quota {quota:g} ({where})")
    return CpuBudget(cores, where)


def _whole(text: str | None) -> int | None:
    """A positive whole number of threads, or None (unset, empty, or not one: ignored)."""
    if text is None:
        return None
    # OMP_NUM_THREADS may be a list ("4,2": nested levels); the first is the one that counts.
    first = text.split(",", 1)[0].strip()
    if not (first.isascii() and first.isdigit()) or len(first) > 6:  # not "²", not 10**30
        return None
    value = int(first)
    return min(value, MAX_THREADS) if value > 0 else None


def affinity_cores() -> tuple[int, str]:
    """(cores this process may run on, in words)."""
    total = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return total, f"{total} cores"
    if allowed < total:
        return allowed, f"CPU affinity: {allowed} of {total} cores"
    return allowed, f"{allowed} cores"


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs this process's cgroup (or one above it) may use per period, or None.

    cgroup v2: ``cpu.max`` ("max 100000" or "150000 100000") of the process's
    group and each group above it; v1: ``cpu.cfs_quota_us`` (-1: none) over
    ``cpu.cfs_period_us`` in the cpu controller's hierarchy. The smallest
    quota on the way to the root applies. Files that cannot be read count as
    no quota.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: "0::/path"
            for group in _groups(root, path):
                quotas.append(_v2_quota(group / "cpu.max"))
        elif "cpu" in controllers.split(","):
            mounts = [root / controllers, root / "cpu,cpuacct", root / "cpu"]
            mount = next((m for m in mounts if m.is_dir()), mounts[0])
            for group in _groups(mount, path):
                quotas.append(_v1_quota(group))
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def _groups(mount: Path, path: str) -> list[Path]:
    """The group folder of ``path`` under ``mount`` and every folder above it, to the mount.

    In a container the process's own group is usually the namespace's root:
    ``path`` is "/" and the limits are in ``mount`` itself; where ``path`` names
    folders that are not there (a host path seen from a container), the mount's
    own files are read.
    """
    parts = [p for p in path.strip("/").split("/") if p and p not in (".", "..")]
    groups = [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [g for g in groups if g.is_dir()] or [mount]


def _v2_quota(cpu_max: Path) -> float | None:
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(group: Path) -> float | None:
    try:
        quota = int((group / "cpu.cfs_quota_us").read_text().strip())
        period = int((group / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


# Set by the command line, which owns its process: then torch's process-wide
# thread count follows the budget. A library caller's process is left alone.
_PROCESS: dict[str, Any] = {"follows_budget": False, "torch_threads_before": None}


def process_follows_budget(on: bool = True) -> None:
    """Let (or stop) cnnkit size torch's process-wide thread count from the budget.

    Stopping gives torch back the count it had before cnnkit first changed it:
    a command run inside a Python process (``cnnkit.cli.main()``) leaves it as found.
    """
    _PROCESS["follows_budget"] = on
    before = _PROCESS["torch_threads_before"]
    if not on and before is not None:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)
        _PROCESS["torch_threads_before"] = None


def set_process_torch_threads(threads: int) -> int:
    """Lower torch's process-wide count to ``threads`` (a command's process only); the count."""
    import sys

    torch = sys.modules["torch"]
    current = torch.get_num_threads()
    if threads < current:
        if _PROCESS["torch_threads_before"] is None:
            _PROCESS["torch_threads_before"] = current
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def torch_follows_budget() -> None:
    """Lower torch's thread count to the budget, where the process asked for it.

    Called where a model is loaded: torch's default is one thread per core of
    the machine, a container's quota or a job's affinity notwithstanding. An
    explicit OMP_NUM_THREADS is torch's own setting already.
    """
    import sys

    if "torch" not in sys.modules or not _PROCESS["follows_budget"]:
        return
    if "OMP_NUM_THREADS" not in os.environ:
        set_process_torch_threads(cpu_budget().cores)
