"""The CPU budget: the variables, CPU affinity and cgroup quotas (v1 and v2, on fake trees)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.errors import InputError
from cnnkit.io.cpu import cgroup_cpu_quota, cpu_budget


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_the_smallest_quota_on_the_way_to_the_root(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    write(root / "jobs" / "cpu.max", "300000 100000\n")  # 3 CPUs for every job
    write(root / "jobs" / "job7" / "cpu.max", "150000 100000\n")  # 1.5 for this one
    write(tmp_path / "self", "0::/jobs/job7\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") == 1.5
    write(root / "jobs" / "job7" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") == 3.0


def test_cgroup_v2_inside_a_container_reads_the_namespace_root(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "200000 100000\n")  # docker --cpus 2
    write(tmp_path / "self", "0::/\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") == 2.0
    # A host path that the container does not see: the mount's own files.
    write(tmp_path / "host", "0::/system.slice/docker-abc.scope\n")
    assert cgroup_cpu_quota(root, tmp_path / "host") == 2.0


def test_cgroup_v1_quota_over_period_and_minus_one_for_none(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    write(root / "cpu,cpuacct" / "kube" / "pod1" / "cpu.cfs_quota_us", "50000\n")
    write(root / "cpu,cpuacct" / "kube" / "pod1" / "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "self", "4:memory:/kube/pod1\n3:cpu,cpuacct:/kube/pod1\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") == 0.5
    write(tmp_path / "none", "3:cpu,cpuacct:/\n")
    assert cgroup_cpu_quota(root, tmp_path / "none") is None


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "0::/a\n", "max\n", "100000\n", "abc 100000\n", "0 100000\n", "-5 100000"],
)
def test_cgroup_files_that_make_no_sense_are_no_quota(tmp_path, text):
    root = tmp_path / "cgroup"
    write(root / "a" / "cpu.max", text)
    write(tmp_path / "self", "0::/a\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") is None
    assert cgroup_cpu_quota(root, tmp_path / "missing") is None


def test_the_variables_come_first_and_nonsense_is_ignored(monkeypatch):
    import cnnkit.io.cpu as cpu

    monkeypatch.setattr(cpu, "cgroup_cpu_quota", lambda: 1.5)
    monkeypatch.setattr(cpu, "affinity_cores", lambda: (8, "8 cores"))
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 8)
    assert cpu_budget({}) == cpu.CpuBudget(2, "cgroup CPU quota 1.5 (8 cores)")
    assert cpu_budget({"OMP_NUM_THREADS": "1"}).cores == 1
    assert cpu_budget({"OMP_NUM_THREADS": "4,2"}).reason == "OMP_NUM_THREADS=4"
    assert cpu_budget({"CNNKIT_THREADS": "3", "OMP_NUM_THREADS": "1"}).cores == 3
    for nonsense in ("0", "-2", "two", "", " ", "²", "١"):  # OpenMP ignores them too
        assert cpu_budget({"OMP_NUM_THREADS": nonsense}).cores == 2
    for nonsense in ("0", "-2", "two", "²", "١", "9" * 30):  # cnnkit's own: said
        with pytest.raises(InputError, match="CNNKIT_THREADS=.* is not a whole number"):
            cpu_budget({"CNNKIT_THREADS": nonsense})
    assert cpu_budget({"CNNKIT_THREADS": ""}).cores == 2  # empty: unset
    assert cpu_budget({"CNNKIT_THREADS": "3000"}) == cpu.CpuBudget(
        8, "CNNKIT_THREADS=3000, capped at the 8 cores"
    )
    monkeypatch.setattr(cpu, "cgroup_cpu_quota", lambda: None)
    assert cpu_budget({}) == cpu.CpuBudget(8, "8 cores")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_cpu_affinity_bounds_the_budget_and_every_pool_sized_from_it():
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        "from cnnkit.io.cpu import cpu_budget; from cnnkit.io.pipeline import cpu_cores;"
        "from cnnkit.data.datamodule import default_workers;"
        "b = cpu_budget(); print(b.cores, cpu_cores(), default_workers(), b.reason)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "CNNKIT_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    cores, pipeline, workers, reason = done.stdout.split(" ", 3)
    assert (cores, pipeline, workers) == ("1", "1", "1")
    if (os.cpu_count() or 1) > 1:
        assert reason.startswith("CPU affinity: 1 of ")


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs 2 cores"
)
def test_training_computes_on_the_budget_not_on_every_core_of_the_machine(tmp_path):
    code = f"""
import os, torch
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})  # as taskset or Slurm would
import cnnkit
from cnnkit.training.module import ClassifierModule
seen = set()
step = ClassifierModule.training_step
def counting(self, *args):
    seen.add(torch.get_num_threads())
    return step(self, *args)
ClassifierModule.training_step = counting
cnnkit.train(dataset="shapes", model="lenet5", epochs=1, limit=16, img_size=16,
             batch_size=16, device="cpu", out={str(tmp_path / "runs")!r})
print(sorted(seen), torch.get_num_threads())  # the caller's count, given back
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "CNNKIT_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    steps = done.stdout.strip().rsplit(" ", 1)[0]
    assert steps == "[1]"  # every step on the one core the job may use
    import yaml

    config = yaml.safe_load((tmp_path / "runs" / "latest" / "config.yaml").read_text())
    assert config["cpu_budget"]["cores"] == 1
    assert config["cpu_budget"]["reason"].startswith("CPU affinity: 1 of ")


def test_a_command_sizes_torch_from_the_budget_and_a_library_caller_is_left_alone(tmp_path):
    from tests.helpers import make_checkpoint, make_image, make_image_folder

    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 3, (16, 16))
    make_image(tmp_path / "x.png", 16, 16)
    make_image_folder(tmp_path / "pics", ["a", "b"], 2, 16, 16)
    code = f"""
import sys, torch
import cnnkit
from cnnkit.backends.torch import TorchBackend
seen = []
logits = TorchBackend.logits
def counting(self, batch):
    seen.append(torch.get_num_threads())
    return logits(self, batch)
TorchBackend.logits = counting
before = torch.get_num_threads()
cnnkit.load({str(ckpt)!r}).predict({str(tmp_path / "x.png")!r})
library = seen[-1]
sys.argv = ["cnnkit", "eval", {str(ckpt)!r}, "--dataset", {str(tmp_path / "pics")!r}]
from cnnkit.cli import main
try:
    main()
except SystemExit:
    pass
print(before, library, seen[-1], torch.get_num_threads(), file=sys.stderr)
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["CNNKIT_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    before, library, command, after = done.stderr.split()[-4:]
    assert library == "1"  # a library call, in its own thread, on the budget too
    assert command == "1"  # the command computes on its budget
    assert after == before  # and, run inside a Python process, gives the count back


def test_a_cnnkit_threads_that_makes_no_sense_is_one_error_line(tmp_path):
    from tests.helpers import run_cnnkit

    done = run_cnnkit("inspect", "lenet5", cwd=tmp_path, env={"CNNKIT_THREADS": "²"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: CNNKIT_THREADS='²' is not a whole number")
    assert done.stdout == ""
