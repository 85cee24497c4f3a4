"""Training that stops early stops well: Ctrl-C/SIGTERM, a diverging loss, options recorded.

A real ``cnnkit train`` subprocess is interrupted after its first checkpoint,
then resumed with the command it printed; in process, a loss that turns NaN
stops the run with a clear error and leaves only finite weights on disk.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
import yaml

import cnnkit.training.module as module_mod
from cnnkit.errors import CnnkitError, TrainingError
from cnnkit.training.fit import TrainConfig, fit
from tests.helpers import tiny_config

# Many epochs of one tiny batch: the run is still going when the signal arrives.
TRAIN = ["--dataset", "shapes", "--limit", "64", "--img-size", "16", "--model", "lenet5"]
TRAIN += ["--device", "cpu", "--out", "out", "-q"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("CNNKIT_RUN_DIR", None)
    return env


def _interrupt_after_first_checkpoint(tmp_path: Path, signum: int) -> tuple[int, str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "train", *TRAIN, "--epochs", "1000"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    # best.ckpt comes after the first epoch; last.ckpt only later (it is time-based).
    first = tmp_path / "out" / "train" / "checkpoints" / "best.ckpt"
    deadline = time.time() + 60
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)  # a few more epochs: the signal lands mid-training
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signum)
    sent = time.time()
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err, time.time() - sent


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _resume_command(err: str) -> list[str]:
    lines = [ln for ln in err.splitlines() if ln.startswith("resume with: ")]
    assert len(lines) == 1, err
    words = shlex.split(lines[0].removeprefix("resume with: "))
    assert words[:3] == ["cnnkit", "train", "--resume"], words
    return words[1:]


def test_sigint_keeps_a_resumable_last_ckpt_and_resume_continues(tmp_path) -> None:
    status, err, took = _interrupt_after_first_checkpoint(tmp_path, signal.SIGINT)
    assert status == 130, err
    assert took < 10, f"took {took:.1f} s to stop"
    assert "Traceback" not in err and "--resume" in err, err
    assert err.count("interrupted") == 1, err  # main() adds no second line
    last = tmp_path / "out" / "train" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    stopped_at = int(ckpt["global_step"])
    assert stopped_at >= 1 and f"saved {Path('out/train/checkpoints/last.ckpt')}" in err
    assert not [p for p in last.parent.iterdir() if "tmp" in p.name]

    # The printed command, with fewer epochs so it ends: options come from the checkpoint.
    epochs = ckpt["epoch"] + 3
    resumed = subprocess.run(
        [sys.executable, "-m", "cnnkit", *_resume_command(err), "--epochs", str(epochs)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert resumed.returncode == 0, resumed.stderr
    run = tmp_path / "out" / "train-2"
    assert (run / "summary.json").is_file()
    assert _step(run / "checkpoints" / "last.ckpt") > stopped_at  # went on, not from 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    # The file itself, not the path given (which may go through runs/latest).
    assert config["resumed_from"] == str(last.resolve())
    assert (config["model"], config["limit"], config["img_size"]) == ("lenet5", 64, 16)
    assert config["epochs"] == epochs  # given on the command line: it wins


def test_sigterm_exits_143_with_the_resume_command(tmp_path) -> None:
    status, err, took = _interrupt_after_first_checkpoint(tmp_path, signal.SIGTERM)
    assert status == 143, err
    assert took < 10, f"took {took:.1f} s to stop"
    assert "Traceback" not in err and "terminated: " in err and "interrupted" not in err, err
    assert "resume with: cnnkit train --resume out/train/checkpoints/last.ckpt" in err
    assert _step(tmp_path / "out" / "train" / "checkpoints" / "last.ckpt") >= 1


def _config(tmp_path: Path, **kw) -> TrainConfig:
    """3 epochs of 2 steps (64 shapes, batch 32), seed 5."""
    return tiny_config(tmp_path, **{"epochs": 3, "batch_size": 32, "limit": 64, "seed": 5, **kw})


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_good_checkpoint(
    tmp_path, monkeypatch
) -> None:
    # The loss turns NaN in the second epoch (two steps an epoch), after epoch 1's checkpoints.
    real = module_mod.F
    calls = {"train": 0}

    def cross_entropy(logits, y, **kw):
        loss = real.cross_entropy(logits, y, **kw)
        if "label_smoothing" in kw:  # the training step's call, not validation's
            calls["train"] += 1
            if calls["train"] > 3:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(module_mod, "F", types.SimpleNamespace(cross_entropy=cross_entropy))
    with pytest.raises(TrainingError) as info:
        fit(_config(tmp_path))
    message = str(info.value)
    assert "the loss became nan at epoch 2 step 4" in message, message
    assert "lower --lr" in message and "last good checkpoint is" in message, message
    good = Path(message.split("last good checkpoint is ")[1].split()[0])
    assert good.name == "best.ckpt"  # epoch 1 improved validation; last.ckpt is time-based
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(
        torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point()
    )


def test_a_huge_learning_rate_ends_with_exit_1_and_no_nan_weights(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cnnkit", "train", *TRAIN, "--epochs", "3", "--batch-size", "16"]
        + ["--optimizer", "sgd", "--lr", "1e6", "--schedule", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the loss became "), done.stderr
    assert "(hint: lower --lr" in lines[-1] and "Traceback" not in done.stderr
    for path in (tmp_path / "out").rglob("*.ckpt"):
        weights = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_seed_and_determinism_are_recorded(tmp_path) -> None:
    summary = fit(_config(tmp_path, epochs=1, seed=11))
    run = Path(summary["run_dir"])
    config = yaml.safe_load((run / "config.yaml").read_text())
    hparams = torch.load(summary["last_checkpoint"], weights_only=True)["hyper_parameters"]
    for record in (config, hparams):
        assert record["seed"] == 11
        assert record["determinism"] == {"deterministic": "warn", "seed_workers": True}


@pytest.mark.parametrize(
    "options, phrase",
    [
        ({"lr": 0.0}, "--lr 0 must be above 0"),
        ({"lr": float("nan")}, "--lr nan is not a finite number"),
        ({"weight_decay": -1.0}, "--weight-decay -1 must be at least 0"),
        ({"label_smoothing": 1.0}, "--label-smoothing 1 must be at least 0 and at most 0.5"),
        ({"val_split": 1.0}, "--val-split 1 must be at least 0 and below 1"),
        ({"img_size": 5000}, "--img-size 5000 must be at least 4 and at most 4096"),
        ({"patience": -1}, "--patience -1 must be at least 1"),
        ({"optimizer": "lamb"}, "--optimizer lamb must be one of adamw, adam, sgd"),
        ({"devices": "0"}, "--devices must be at least 1"),
        ({"resume": "garbage.ckpt"}, "is not a cnnkit checkpoint or needs code to load"),
    ],
)
def test_bad_options_are_refused_before_any_data_is_read(
    tmp_path, monkeypatch, options, phrase
) -> None:
    import cnnkit.data.registry as registry

    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was read before the options were checked")

    monkeypatch.setattr(registry, "load_dataset", no_data)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.ckpt").write_bytes(b"\x80\x02junk")
    with pytest.raises(CnnkitError) as info:
        fit(_config(tmp_path, **options))
    assert phrase in str(info.value) and info.value.hint
    assert not (tmp_path / "runs").exists()
