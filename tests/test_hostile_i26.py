"""Hostile checks: variables a launcher sets, left in a shell that runs a plain ``cnnkit train``.

A plain run (one process: one device, one node, no strategy) is rank 0 whatever
the environment says: Lightning trains it as rank 0 and cnnkit must write its
run folder, config and ``latest`` link as usual, not a hidden rank folder.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.helpers import run_cnnkit

STRAY = {
    # torchrun's RANK exported by hand or left over from another tool
    "rank": {"RANK": "1"},
    # LOCAL_RANK set by something else (a notebook launcher, an MPI wrapper)
    "local_rank": {"LOCAL_RANK": "1"},
    "node_rank": {"NODE_RANK": "2"},
    # a step of a Slurm job with several tasks, running a plain train in each
    "srun": {
        "SLURM_NTASKS": "4",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_PROCID": "2",
        "SLURM_JOB_NAME": "job",
    },
}


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    return {**env, **extra}


@pytest.mark.parametrize("case", sorted(STRAY))
def test_plain_train_under_stray_rank_variables_writes_its_run_folder(tmp_path, monkeypatch, case):
    from cnnkit.training.plan import plan
    from tests.helpers import tiny_config

    for name in [n for n in os.environ if n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "CNNKIT_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in STRAY[case].items():
        monkeypatch.setenv(name, value)
    p = plan(tiny_config(tmp_path))
    assert not p.is_child, f"a one-process run under {STRAY[case]} took itself for another rank"


def test_plain_train_in_a_slurm_job_with_several_tasks(tmp_path):
    # sbatch --ntasks 4 running `cnnkit train` without srun (the batch step is task 0):
    # one process trains, and it must neither crash nor hide its run folder.
    env = _clean_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "job"})
    result = run_cnnkit(
        "train", "--dataset", "shapes", "--model", "lenet5", "--epochs", "1", "--limit", "24",
        "--img-size", "16", "--device", "cpu", "--out", str(tmp_path / "runs"),
        cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (tmp_path / "runs" / "train" / "config.yaml").is_file()
    assert (tmp_path / "runs" / "latest" / "checkpoints" / "best.ckpt").is_file()


class _Stopped(Exception):
    pass


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_while_ray_starts_shuts_down_what_it_started(monkeypatch, name):
    # Stopped inside ray.init, before Ray records the processes it started, the local
    # Ray's agents outlived the command (found with predict --ray and a SIGINT or
    # SIGTERM a few seconds in; SIGTERM also exited 15, by Ray's handler, not 143).
    # Ray's start-up is simulated here: no cluster is started.
    import signal
    import time

    ray = pytest.importorskip("ray")
    import ray._private.utils as ray_utils

    from cnnkit import ray as cnnkit_ray

    number = getattr(signal, name)
    calls: list[str] = []

    def init(**options):
        # ray.init installs its own SIGTERM handler first (sys.exit(15)).
        ray_utils.set_sigterm_handler(lambda n, _: sys.exit(n))
        os.kill(os.getpid(), number)
        time.sleep(0.1)  # Ray starting its processes when the signal comes
        calls.append("started")

    def stop(n, _frame):
        raise _Stopped(n)

    before = signal.signal(number, stop)  # the command's own handler
    try:
        monkeypatch.setattr(ray, "is_initialized", lambda: False)
        monkeypatch.setattr(ray, "init", init)
        monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shut down"))
        with pytest.raises(_Stopped):
            cnnkit_ray._connect(ray, "local")
        assert calls == ["started", "shut down"]
        assert signal.getsignal(number) is stop
    finally:
        signal.signal(number, before)


@pytest.mark.parametrize(
    "extra", [["-o", "out.jsonl"], ["--shard", "0/2"], ["-o", "out.jsonl", "--resume"]]
)
def test_ray_refuses_the_batch_job_options_it_would_ignore(tmp_path, monkeypatch, capsys, extra):
    """A Ray run writes to stdout: -o, --resume and --shard are refused rather than
    silently dropped (the user would look for a file that never comes)."""
    from tests.helpers import cnnkit_in_process, make_checkpoint, make_image

    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    image = make_image(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", str(ckpt), str(image), "--ray", *extra
    )
    assert code == 1 and out == ""
    assert err.startswith("error: --ray does not take") and "hint:" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.jsonl").exists()
