"""Training on several machines: two torchrun "nodes" on localhost, gloo on the CPU.

Each node is started the way a user starts one per machine (``torchrun
--nnodes 2 --node-rank R``), in a working folder of its own, with the same
``--out``. Rank 0 alone writes: one run folder, one best.ckpt, one summary;
the metrics count every sample once; and its final numbers are those of a
single-process ``cnnkit eval`` of the checkpoint. The same rules hold for the
other launchers that start every rank themselves (Slurm's srun, Lightning's
own variables), checked here without starting them.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import make_image_folder, run_cnnkit, tiny_config
from tests.training.test_fit_choices import assert_val_metrics_count_each_sample_once

NODE_TIMEOUT_S = 150  # both nodes together; a node whose peer never comes waits forever


def _free_port() -> int:
    """A port nothing listens on now (the kernel's choice; another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_command(rank: int, port: int, args: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
        "-m", "cnnkit", *args,
    ]  # fmt: skip


def _kill(procs: list[subprocess.Popen]) -> None:
    # Each node runs in a session of its own: torchrun and the rank it started go together.
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for proc in procs:
        proc.wait(timeout=30)


def _run_nodes(root: Path, args: list[str]) -> list[tuple[int, str, str]]:
    """Both nodes' (exit status, stdout, stderr); a port taken meanwhile is tried again."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # The thread count is cnnkit's to choose here: the nodes share this machine.
    for name in ("CNNKIT_RUN_DIR", "CNNKIT_THREADS", "OMP_NUM_THREADS"):
        env.pop(name, None)
    for attempt in range(3):
        port = _free_port()
        procs, logs = [], []
        for rank in (0, 1):
            cwd = root / f"node{rank}"
            cwd.mkdir(exist_ok=True)
            out, err = (open(root / f"node{rank}.{s}", "w+") for s in ("out", "err"))
            logs.append((out, err))
            procs.append(
                subprocess.Popen(_node_command(rank, port, args), cwd=cwd, env=env, stdout=out,
                                 stderr=err, start_new_session=True)
            )  # fmt: skip
        deadline = time.monotonic() + NODE_TIMEOUT_S
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                time.sleep(2)  # the other node's last words
                break
            time.sleep(0.2)
        timed_out = any(p.poll() is None for p in procs)
        _kill(procs)
        results = []
        for proc, (out, err) in zip(procs, logs, strict=True):
            out.seek(0), err.seek(0)
            results.append((proc.returncode, out.read(), err.read()))
            out.close(), err.close()
        said = "\n".join(f"--- node {r} (exit {c}):\n{e[-3000:]}" for r, (c, _, e) in
                         enumerate(results))  # fmt: skip
        if all(code == 0 for code, _, _ in results):
            return results
        if "address already in use" in said.lower() and attempt < 2:
            continue  # another process took the port between our check and torchrun's bind
        pytest.fail(f"{'timed out' if timed_out else 'failed'}: two nodes\n{said}")
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_two_nodes_write_one_run_whose_numbers_eval_repeats(tmp_path):
    # 9 training images, batch 2: 5 batches, 3 on one rank and 2 (padded to 3) on the other.
    # 5 validation images, batch 2: one rank has a batch less (counted once, not padded).
    data = tmp_path / "data"
    make_image_folder(data / "train", ["a", "b"], per_class=5, h=16, w=16)
    (data / "train" / "b" / "img_004.png").unlink()
    make_image_folder(data / "val", ["a", "b"], per_class=3, h=16, w=16, seed=5)
    (data / "val" / "b" / "img_002.png").unlink()
    out = tmp_path / "runs"
    args = (
        f"train --dataset {data} --model lenet5 --img-size 16 --epochs 2 --batch-size 2 "
        f"--no-augment --num-nodes 2 --devices 1 --strategy ddp --device cpu --out {out} --json"
    )
    (_, stdout0, stderr0), (_, stdout1, stderr1) = _run_nodes(tmp_path, shlex.split(args))

    # Rank 0 reports, once; rank 1 says nothing on stdout and writes nothing anywhere.
    summary = json.loads(stdout0)
    assert stdout1 == "", stdout1
    assert not list((tmp_path / "node0").iterdir()) and not list((tmp_path / "node1").iterdir())
    # One run folder (and the link to it): rank 1 made none, not even the one it names.
    assert sorted(p.name for p in out.iterdir()) == ["latest", "train"]
    assert "run folder" not in stderr1 and "data:" not in stderr1, stderr1
    run = out / "train"
    assert summary["run_dir"] == str(run) and (out / "latest").resolve() == run
    assert sorted(p.name for p in tmp_path.rglob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert summary["best_checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    assert (run / "summary.json").is_file()

    # Both nodes run on this machine (127.0.0.1): each computes on its share of the
    # cores, not on every core as if it were alone.
    import yaml

    cpu = yaml.safe_load((run / "config.yaml").read_text())["cpu_budget"]
    assert cpu["processes_here"] == 2 and cpu["threads"] == max(1, cpu["cores"] // 2)
    assert "the 2 processes of this job share this machine" in stderr0

    # The two processes trained as one world of 2: 3 steps an epoch each, not 5.
    import torch

    ckpt = torch.load(summary["last_checkpoint"], weights_only=True)
    assert ckpt["global_step"] == 2 * 3
    # metrics.csv's validation numbers count each of the 5 images once.
    report = assert_val_metrics_count_each_sample_once(tmp_path, summary, expected=5)
    assert summary["metrics"]["val_acc"] == pytest.approx(report.accuracy, abs=1e-6)

    # The final evaluation train reports is what `cnnkit eval` of best.ckpt says.
    evaluated = run_cnnkit(
        "eval", summary["best_checkpoint"], "--dataset", str(data), "--split", "val", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    measured = json.loads(evaluated.stdout)
    assert measured["n"] == 5
    assert summary["metrics"]["val_acc"] == pytest.approx(measured["accuracy"], abs=1e-6)
    assert summary["metrics"]["val_loss"] == pytest.approx(measured["loss"], abs=1e-6)


# ---------------------------------------------------------------------------
# the other launchers: which process is rank 0, without starting them
# ---------------------------------------------------------------------------


LAUNCHERS = {
    # launcher: (rank 0's variables, another rank's variables)
    "srun": (
        {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "train"},
        {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_NAME": "train"},
    ),
    "torchrun": (
        {"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0"},
        {"RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1"},
    ),
    "lightning": ({"NODE_RANK": "0"}, {"NODE_RANK": "1"}),
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_only_rank_0_of_a_launcher_makes_a_run_folder(tmp_path, monkeypatch, launcher):
    from cnnkit.training.plan import plan

    def plan_with(environ: dict[str, str]):
        for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "CNNKIT_RUN_DIR"):
            monkeypatch.delenv(name, raising=False)
        for name in [n for n in os.environ if n.startswith("SLURM_")]:
            monkeypatch.delenv(name)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return plan(tiny_config(tmp_path, num_nodes=2, strategy="ddp"))

    first, other = LAUNCHERS[launcher]
    assert not plan_with(first).is_child
    p = plan_with(other)
    # It names a folder it never makes: the run folder is rank 0's to name.
    assert p.is_child and Path(p.child_run_dir).parent == tmp_path / "runs"
    if launcher == "srun":
        # An interactive Slurm shell (salloc): Lightning does not take Slurm's
        # variables there, and neither does cnnkit.
        assert not plan_with({**other, "SLURM_JOB_NAME": "bash"}).is_child


# ---------------------------------------------------------------------------
# the Slurm scripts of examples/slurm
# ---------------------------------------------------------------------------

SLURM = Path(__file__).resolve().parents[2] / "examples" / "slurm"


def _cnnkit_options(script: Path, command: str) -> list[str]:
    """The options of the script's ``cnnkit COMMAND`` line (continued lines joined)."""
    text = script.read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if f"cnnkit {command} " in ln and "#" not in ln)
    return [w.split("=")[0] for w in shlex.split(line) if w.startswith("-")]


@pytest.mark.parametrize("name", ["train_multinode.sbatch", "predict_array.sbatch"])
def test_the_slurm_scripts_are_bash(name):
    result = subprocess.run(["bash", "-n", str(SLURM / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (SLURM / name).read_text().startswith("#!/bin/bash\n")


def test_the_slurm_training_script_uses_options_train_has(tmp_path):
    script = SLURM / "train_multinode.sbatch"
    options = _cnnkit_options(script, "train")
    assert {"--num-nodes", "--devices", "--strategy"} <= set(options)
    # srun starts the tasks and Lightning checks its counts against Slurm's.
    assert "srun cnnkit train" in script.read_text()
    help_text = run_cnnkit("train", "--help", cwd=tmp_path, env={"COLUMNS": "240"}).stdout
    assert [o for o in options if f" {o} " not in help_text] == []
