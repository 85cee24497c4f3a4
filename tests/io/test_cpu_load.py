"""Sharing the machine: training computes on the cores other processes leave free."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cnnkit.io import cpuload
from cnnkit.io.cpuload import Follower, Sample, busy_elsewhere, threads_beside
from tests.helpers import cnnkit_in_process, run_cnnkit

TICKS = cpuload.TICKS


def test_busy_elsewhere_is_the_machines_time_less_this_process_and_its_children() -> None:
    before = Sample(10.0, busy=1000, own=50)
    # 2 s later: the CPUs ran 3 core-seconds, 1 of them this process's.
    after = Sample(12.0, busy=1000 + 3 * TICKS, own=50 + 1 * TICKS)
    assert busy_elsewhere(before, after) == pytest.approx(1.0)
    assert busy_elsewhere(after, after) is None  # no time between: nothing to tell
    # Own time counted between the samples but the CPUs' not yet: never below 0.
    assert busy_elsewhere(before, Sample(11.0, 1000, 50 + TICKS)) == 0.0


@pytest.mark.parametrize(
    ("cores", "elsewhere", "current", "expected"),
    [
        (2, 0.0, None, 2),  # alone
        (2, 0.2, None, 2),  # a little background noise
        (2, 0.95, None, 1),  # one core busy elsewhere (another training, a compile)
        (2, 1.9, None, 1),  # never fewer than one
        (2, 5.0, None, 1),
        (8, 2.7, None, 5),
        (2, 0.4, 2, 2),  # between the marks: the count in use stays...
        (2, 0.4, 1, 1),  # ...whichever it is
        (2, 0.6, 2, 1),  # above the upper mark: give the core up
        (2, 0.2, 1, 2),  # below the lower mark: take it back
        (1, 0.9, None, 1),
    ],
)
def test_threads_leave_the_busy_cores_alone(cores, elsewhere, current, expected) -> None:
    assert threads_beside(cores, elsewhere, current) == expected


def _fake_proc(root: Path, busy: int, own: int, child: int) -> Path:
    """A /proc with this process's CPUs in stat, its own stat and one child's."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    cpus = sorted(os.sched_getaffinity(0))
    for i in cpus:
        # user nice system idle iowait irq softirq steal: busy split over user and system.
        lines.append(f"cpu{i} {busy // len(cpus)} 0 0 999 77 0 0 0 0 0")
    lines.append("intr 1 2 3")
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("\n".join(lines) + "\n")
    # utime stime cutime cstime are fields 14-17; a name with spaces and ')' inside.
    (root / "self" / "stat").write_text(f"1 (py (x)) S 1 {' '.join(['0'] * 9)} {own} 0 0 0 0\n")
    (root / "4242").mkdir(exist_ok=True)
    ppid = os.getpid()
    (root / "4242" / "stat").write_text(f"4242 (w) S {ppid} {' '.join(['0'] * 9)} {child} 0 0\n")
    (root / "4343").mkdir(exist_ok=True)  # somebody else's process: not counted
    (root / "4343" / "stat").write_text(f"4343 (o) S 1 {' '.join(['0'] * 9)} 5000 0 0\n")
    return root


def test_a_sample_reads_the_cpus_of_this_process_and_counts_its_children(tmp_path) -> None:
    cpus = len(os.sched_getaffinity(0))
    proc = _fake_proc(tmp_path, busy=300 * cpus, own=40, child=7)
    got = cpuload.sample(proc)
    assert got is not None
    assert (got.busy, got.own) == (300 * cpus, 47)
    assert cpuload.sample(proc, children=False).own == 40
    assert cpuload.sample(tmp_path / "missing") is None  # no /proc: nothing adapts


def test_the_follower_gives_up_a_core_and_takes_it_back(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(cpuload.time, "monotonic", lambda: clock[0])
    samples = iter(
        [
            Sample(102.0, 2 * TICKS, 0),  # 2 s: one core busy elsewhere
            Sample(104.0, 2 * TICKS, 0),  # nothing elsewhere any more
        ]
    )
    monkeypatch.setattr(cpuload, "sample", lambda *a, **k: next(samples))
    applied = []
    follower = Follower(2, applied.append, Sample(100.0, 0, 0), current=2)
    follower.check()  # too soon: no measurement
    assert applied == []
    clock[0] = 102.0
    follower.check()
    clock[0] = 104.0
    follower.check()
    assert applied == [1, 2] and follower.changes == 2


def test_the_users_own_count_is_never_adapted() -> None:
    assert cpuload.user_sets_threads({"OMP_NUM_THREADS": "2"})
    assert cpuload.user_sets_threads({"CNNKIT_THREADS": "1"})
    assert not cpuload.user_sets_threads({"OMP_NUM_THREADS": " "})


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to leave one")
def test_training_beside_a_busy_core_leaves_it_alone_and_says_so(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("CNNKIT_THREADS", raising=False)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        done = run_cnnkit(
            "train", "--dataset", "shapes", "--model", "lenet5", "--epochs", "1",
            "--limit", "24", "--img-size", "16", "--device", "cpu", "--out", "runs",
            cwd=tmp_path,
        )  # fmt: skip
    finally:
        burner.kill()
        burner.wait()
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "runs" / "train" / "config.yaml").read_text())
    budget = config["cpu_budget"]
    assert budget["follows_load"] is True
    assert budget["busy_elsewhere_at_start"] >= 0.6
    assert budget["threads_at_start"] <= budget["cores"] - 1
    assert f"CPU: training on {budget['threads_at_start']} of {budget['cores']} threads" in (
        done.stderr
    )


def test_a_count_the_user_set_is_kept_and_recorded(tmp_path) -> None:
    done = run_cnnkit(
        "train", "--dataset", "shapes", "--model", "lenet5", "--epochs", "1", "--limit", "24",
        "--img-size", "16", "--device", "cpu", "--out", "runs",
        cwd=tmp_path, env={"CNNKIT_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "runs" / "train" / "config.yaml").read_text())
    assert config["cpu_budget"] == {"cores": 1, "reason": "CNNKIT_THREADS=1"}
    assert "training on" not in done.stderr


def test_an_in_process_run_gives_the_thread_count_back(monkeypatch, capsys, tmp_path) -> None:
    """A busy machine lowers the count while training; the caller's count is as it was after."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("CNNKIT_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(cpuload, "mark_start", lambda: None)
    monkeypatch.setattr(cpuload, "start_sample", lambda: Sample(0.0, 0, 0))
    # As if every core but one were busy elsewhere since the start.
    monkeypatch.setattr(
        cpuload, "sample", lambda *a, **k: Sample(10.0, int((cores - 0.1) * TICKS * 10), 0)
    )
    seen = []
    from cnnkit.training import module as module_mod

    real = module_mod.ClassifierModule._optimizer_step

    def spy(self, x, y):
        seen.append(torch.get_num_threads())
        return real(self, x, y)

    monkeypatch.setattr(module_mod.ClassifierModule, "_optimizer_step", spy)
    before = torch.get_num_threads()
    code, _, err = cnnkit_in_process(
        monkeypatch, capsys, "train", "--dataset", "shapes", "--model", "lenet5", "--epochs",
        "1", "--limit", "24", "--img-size", "16", "--device", "cpu",
        "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    assert code == 0, err
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
