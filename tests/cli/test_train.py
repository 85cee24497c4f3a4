"""`cnnkit train` wiring (fit patched) and a few real runs in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

import cnnkit.training.fit as fit_module
from cnnkit.cli import app
from cnnkit.errors import DeviceError, ModelError
from tests.helpers import make_image_folder
from tests.helpers import run_cnnkit as _cnnkit

SUMMARY = {
    "run_dir": "runs/train",
    "best_checkpoint": "b.ckpt",
    "last_checkpoint": "l.ckpt",
    "device": "cpu",
    "epochs": 1,
    "train_seconds": 1.0,
    "images_per_second": 10.0,
    "metrics": {"val_acc": 0.5, "val_loss": 1.0},
}


def test_options_reach_fit_and_json_is_one_document(monkeypatch):
    seen = {}

    def fake_fit(cfg):
        seen["cfg"] = cfg
        return SUMMARY

    monkeypatch.setattr(fit_module, "fit", fake_fit)
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            "mnist",
            "--model",
            "lenet5",
            "--epochs",
            "5",
            "--batch-size",
            "64",
            "--lr",
            "0.01",
            "--optimizer",
            "sgd",
            "--schedule",
            "onecycle",
            "--no-augment",
            "--devices",
            "2",
            "--strategy",
            "ddp",
            "--precision",
            "16-mixed",
            "--patience",
            "3",
            "--name",
            "digits",
            "--data-dir",
            "/data",
            "--label-smoothing",
            "0.1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == SUMMARY
    cfg = seen["cfg"]
    assert (cfg.dataset, cfg.model, cfg.epochs, cfg.batch_size, cfg.lr) == (
        "mnist",
        "lenet5",
        5,
        64,
        0.01,
    )
    assert (cfg.optimizer, cfg.schedule, cfg.augment) == ("sgd", "onecycle", False)
    # Lightning's spelling of a --precision choice arrives as cnnkit's own.
    assert (cfg.devices, cfg.strategy, cfg.precision, cfg.patience) == ("2", "ddp", "16", 3)
    assert (cfg.name, cfg.data_dir, cfg.label_smoothing) == ("digits", "/data", 0.1)


def test_human_output_names_the_run(monkeypatch):
    monkeypatch.setattr(fit_module, "fit", lambda cfg: SUMMARY)
    result = CliRunner().invoke(app, ["train", "--quiet"])
    assert result.exit_code == 0
    assert "runs/train: val_acc 0.5000" in result.stdout and "b.ckpt" in result.stdout


def test_bad_choices_are_usage_errors():
    result = CliRunner().invoke(app, ["train", "--optimizer", "lbfgs"])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["train", "--epochs", "0"])
    assert result.exit_code == 2


def test_user_error_exits_1_with_a_hint(tmp_path):
    result = _cnnkit("train", "--dataset", "shapez", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "did you mean 'shapes'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_model_and_missing_gpu_raise_user_errors(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "--model", "lenet", "--device", "cpu"])
    assert isinstance(result.exception, ModelError) and "lenet5" in result.exception.hint
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, ["train", "--device", "cuda"])
        assert isinstance(result.exception, DeviceError)
        assert "no CUDA GPU" in result.exception.message
    assert not (tmp_path / "runs").exists()


def test_real_run_json(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data", ["a", "b"], per_class=8, h=8, w=8)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            "data",
            "--img-size",
            "8",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--json",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) >= {
        "run_dir",
        "best_checkpoint",
        "last_checkpoint",
        "device",
        "epochs",
        "train_seconds",
        "images_per_second",
        "metrics",
    }
    assert Path(tmp_path, summary["best_checkpoint"]).is_file()
    config = (tmp_path / "runs" / "train" / "config.yaml").read_text()
    assert "img_size: 8" in config and "command_line:" in config


def test_ddp_rank_with_an_all_unreadable_batch_keeps_step_with_the_other(tmp_path):
    # Decoded from files (memory budget 0), one image a batch: the broken file
    # makes an empty batch on one rank. That rank must still join the gradient
    # all-reduce, or the other waits for it forever.
    make_image_folder(tmp_path / "data" / "train", ["a", "b"], per_class=4, h=8, w=8)
    make_image_folder(tmp_path / "data" / "val", ["a", "b"], per_class=2, h=8, w=8)
    (tmp_path / "data" / "val" / "b" / "img_001.png").unlink()  # 3: one rank validates 1
    (tmp_path / "data" / "train" / "a" / "broken.png").write_bytes(b"not a png")
    args = "train --dataset data --img-size 8 --epochs 1 --batch-size 1 --workers 0"
    args += " --device cpu --devices 2 --strategy ddp --json"
    result = _cnnkit(*args.split(), cwd=tmp_path, timeout=90, env={"CNNKIT_MEMORY_BUDGET": "0"})
    assert result.returncode == 0, result.stderr
    assert "broken.png" in result.stderr  # reported, not silently dropped
    summary = json.loads(result.stdout)
    ckpt = torch.load(tmp_path / summary["last_checkpoint"], weights_only=True)
    # 9 files over 2 ranks: 5 batches each (the sampler pads), one of them empty on one rank.
    assert ckpt["global_step"] == 5
    # Validation, decoded from files too, counts each of the 3 images once.
    from tests.training.test_fit_choices import assert_val_metrics_count_each_sample_once

    assert_val_metrics_count_each_sample_once(tmp_path, summary, expected=3)
