"""Precision and the load-following thread count, under hostile inputs and machines.

Each test here pins a behaviour that was wrong once: inspect silent about
the precision a model was trained in, fp16 said but not done, a CPU quota
inside a larger machine read as a busy machine.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint, make_image


@pytest.mark.parametrize(
    ("compute", "row", "recorded"),
    [
        ({"precision": "bf16-mixed", "memory_format": "channels_last"}, "bf16 autocast", "bf16"),
        ({"precision": "32-true", "memory_format": "contiguous"}, "float32", "32"),
        (None, "not recorded (float32 assumed)", None),  # a checkpoint from before the record
        ({"precision": ["bf16-mixed"]}, "not recorded (float32 assumed)", None),  # crafted
        ("bf16-mixed", "not recorded (float32 assumed)", None),
    ],
)
def test_inspect_says_the_precision_a_checkpoint_was_trained_in(
    tmp_path, monkeypatch, capsys, compute, row, recorded
) -> None:
    options = {} if compute is None else {"compute": compute}
    ckpt = make_checkpoint(tmp_path / "m.ckpt", options=options)
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", str(ckpt))
    assert code == 0, err
    line = next(text for text in out.splitlines() if "trained in" in text)
    assert row in line
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", str(ckpt), "--json")
    assert code == 0, err
    assert json.loads(out)["trained_in"] == recorded


def test_fp16_training_on_the_cpu_is_one_error_line_before_any_data(
    tmp_path, monkeypatch, capsys
) -> None:
    """Lightning would train in bf16 instead, while cnnkit said and recorded fp16."""
    for spelling in ("16", "16-mixed"):
        code, _, err = cnnkit_in_process(
            monkeypatch, capsys, "train", "--dataset", "shapes", "--model", "lenet5",
            "--epochs", "1", "--limit", "24", "--img-size", "16", "--device", "cpu",
            "--precision", spelling, "--out", str(tmp_path / "runs"),
        )  # fmt: skip
        assert code == 1
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: --precision 16 (fp16 autocast) needs a GPU")
        assert "hint:" in lines[-1] and "Traceback" not in err
        assert not any("data:" in line for line in lines)  # refused before the data loads
        assert not (tmp_path / "runs").exists()


def test_eval_and_predict_refuse_fp16_rather_than_compute_float32_under_its_name(
    tmp_path, monkeypatch, capsys
) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    make_image(tmp_path / "a.png", channels=1)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", str(ckpt), str(tmp_path / "a.png"), "--precision", "16"
    )
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith("error: --precision 16 (fp16 autocast) is for")
    from cnnkit import load
    from cnnkit.errors import InputError

    with pytest.raises(InputError, match="fp16"):
        load(str(ckpt), precision="16-mixed")


def test_fp16_leaves_lightnings_own_autocast_on() -> None:
    """On a GPU, Lightning's plugin runs the training step under fp16 autocast: the
    module's own context inside it must not switch that off (float32 compute, with
    loss scaling for nothing). bf16 on the CPU stands in for fp16 on CUDA here."""
    import torch

    from cnnkit.precision import Compute

    layer = torch.nn.Linear(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what Lightning's plugin opens
        with Compute("16").context("cpu"):
            out = layer(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16
    with Compute("32").context("cpu"):
        assert layer(torch.ones(2, 4)).dtype == torch.float32


def _proc_stat(root, cpus: int, user: int) -> None:
    """A /proc whose stat spans ``cpus`` CPUs, each with ``user`` ticks, and an idle self."""
    lines = [f"cpu  {user * cpus} 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{i} {user} 0 0 500 0 0 0 0 0 0" for i in range(cpus)]
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("\n".join(lines) + "\nintr 1\n")
    (root / "self" / "stat").write_text(f"1 (py) S 1 {' '.join(['0'] * 9)} 0 0 0 0\n")


def _share_after(monkeypatch, tmp_path, cpus: int, cores: int, busy: float):
    """The CpuShare record of a run whose start-up (2 s) saw every CPU busy elsewhere for
    this share of the time."""
    import os
    from types import SimpleNamespace

    from cnnkit.io import cpu, cpuload
    from cnnkit.training.fit import CpuShare

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("CNNKIT_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setattr(cpu, "cpu_budget", lambda *a: cpu.CpuBudget(cores, "a test's budget"))
    clock = [100.0]
    monkeypatch.setattr(cpuload.time, "monotonic", lambda: clock[0])
    real = cpuload.sample
    monkeypatch.setattr(cpuload, "sample", lambda *a, **k: real(tmp_path, children=False))
    _proc_stat(tmp_path, cpus, 0)
    start = cpuload.sample()
    monkeypatch.setattr(cpuload, "start_sample", lambda: start)
    clock[0] = 102.0
    _proc_stat(tmp_path, cpus, int(busy * 2 * cpuload.TICKS))
    plan = SimpleNamespace(
        devices=1, device=SimpleNamespace(accelerator="cpu"),
        cfg=SimpleNamespace(num_nodes=1), is_child=False,
    )  # fmt: skip
    share = CpuShare(plan)
    share.end()  # the thread count as it was
    return share.record


def test_a_cpu_quota_on_a_larger_machine_is_not_a_busy_machine(monkeypatch, tmp_path) -> None:
    """A container limited to 2 CPUs on a 64-CPU host, the host half busy with others'
    work: 32 idle CPUs are left, and the run's 2 threads take none of the others' cores."""
    record = _share_after(monkeypatch, tmp_path, cpus=64, cores=2, busy=0.5)
    assert record["busy_elsewhere_at_start"] == pytest.approx(32.0)
    assert record["threads_at_start"] == 2
    # The host full: the others' load spills onto the budget's cores, which it gives up.
    full = _share_after(monkeypatch, tmp_path, cpus=4, cores=2, busy=1.0)
    assert full["threads_at_start"] == 1


def test_a_measurement_reads_this_processs_children_not_every_process(
    monkeypatch, tmp_path
) -> None:
    """Every 2 s the training thread measures: reading each process's stat on a machine
    with thousands stalls it for a tenth of a second. The threads' children lists name
    the few to read."""
    import os
    from pathlib import Path

    from cnnkit.io import cpuload

    me = os.getpid()
    stat = f"{' '.join(['0'] * 9)} 5000 0 0 0\n"
    for pid in range(1000, 1300):  # somebody else's processes
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (other) S 1 {stat}")
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(f"4242 (worker) S {me} {' '.join(['0'] * 9)} 7 3\n")
    task = tmp_path / "self" / "task"
    for tid, children in ((me, "4242 "), (me + 1, "")):
        (task / str(tid)).mkdir(parents=True)
        (task / str(tid) / "children").write_text(children)
    reads = []
    real = Path.read_text

    def counted(self, *args, **kwargs):
        reads.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    assert cpuload._live_children_ticks(tmp_path) == 10  # the worker's utime + stime
    assert len(reads) <= 4, f"{len(reads)} files read"
