"""`cnnkit train` refusals that must come before anything is created, and what a run reports.

Resume with nothing left to train, inputs too small for the model, unusable
--out folders, training without validation, the per-epoch numbers on stderr,
flips chosen by the user, and DDP validation that counts every sample once.
"""

from __future__ import annotations

import csv
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from cnnkit.checkpoint import load_checkpoint
from cnnkit.cli import app
from cnnkit.cli.output import show_messages
from cnnkit.errors import CnnkitError, InputError, ModelError
from cnnkit.models.sizes import check_input_fits
from cnnkit.training.fit import fit
from tests.helpers import make_image_folder, tiny_config, write_array
from tests.helpers import run_cnnkit as _cnnkit


def _run(tmp_path: Path, *args: str):
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner().invoke(app, ["train", "-q", "--device", "cpu", *args])
    finally:
        os.chdir(old)


# ---------------------------------------------------------------------------
# --resume and --epochs
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    fit(tiny_config(root, epochs=2))
    return root / "runs" / "train" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_resume_with_nothing_left_to_train_is_refused_before_anything_is_made(
    tmp_path, two_epochs, epochs
):
    assert load_checkpoint(two_epochs).epochs_done == 2
    result = _run(tmp_path, "--resume", str(two_epochs), "--epochs", epochs, "--out", "runs")
    assert result.exit_code == 1
    assert isinstance(result.exception, InputError)
    assert "has trained 2 epoch(s) already" in result.exception.message
    assert "--epochs above 2" in result.exception.hint
    assert not (tmp_path / "runs").exists()  # no stale run folder


def test_resume_with_more_epochs_trains_the_rest(tmp_path, two_epochs):
    summary = fit(
        tiny_config(tmp_path, resume=str(two_epochs), epochs=3, explicit=["resume", "epochs"])
    )
    assert summary["epochs"] == 3
    assert Path(summary["best_checkpoint"]).is_file()
    assert summary["images_per_second"] > 0


# ---------------------------------------------------------------------------
# inputs the model cannot take
# ---------------------------------------------------------------------------


def test_check_input_fits_names_the_smallest_size():
    with pytest.raises(ModelError, match=r"at least 12×12 pixels, got 4×4") as info:
        check_input_fits("lenet5", (1, 4, 4))
    assert info.value.hint == "use --img-size 12 or more"
    check_input_fits("lenet5", (1, 12, 12))  # the size it named works
    with pytest.raises(ModelError, match="at least 2 frames, got 1") as info:
        check_input_fits("c3d_small", (3, 1, 32, 32))
    assert info.value.hint == "use --frames 2 or more"
    check_input_fits("r3d_18", (3, 16, 112, 112))


def test_too_small_img_size_is_refused_before_the_data_is_read(tmp_path, monkeypatch):
    # An empty data folder: reading mnist would try a download and fail differently.
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "nothing"))
    result = _run(tmp_path, "--dataset", "mnist", "--model", "lenet5", "--img-size", "4")
    assert isinstance(result.exception, ModelError), result.output
    assert "needs inputs of at least 12×12 pixels" in result.exception.message
    result = _run(tmp_path, "--dataset", "moving-shapes", "--frames", "1", "--limit", "4")
    assert isinstance(result.exception, ModelError)
    assert "needs clips of at least 2 frames" in result.exception.message
    assert not (tmp_path / "runs").exists()


def test_a_folder_of_tiny_images_is_checked_against_the_model(tmp_path):
    make_image_folder(tmp_path / "data", ["a", "b"], per_class=3, h=6, w=6)
    # No --img-size: the model's own size is used for folders, so this fits...
    fit(tiny_config(tmp_path, dataset=str(tmp_path / "data"), img_size=None, limit=None))
    # ...and an explicit size that does not is refused with the smallest one that does.
    with pytest.raises(ModelError, match="at least 12×12"):
        fit(tiny_config(tmp_path, dataset=str(tmp_path / "data"), img_size=6, limit=None))


# ---------------------------------------------------------------------------
# --out that cannot hold run folders
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["out", "run"])
def test_out_without_write_permission_is_one_error(tmp_path, monkeypatch, where):
    # Root ignores permission bits, so the refusal the file system would give is simulated.
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if where == "out" or self.name.startswith("train"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(InputError, match="cannot create a run folder in .*Permission denied"):
        fit(tiny_config(tmp_path, out=str(tmp_path / "ro")))


# ---------------------------------------------------------------------------
# --val-split 0, --flip, decisions, per-epoch lines
# ---------------------------------------------------------------------------


def _digit_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for digit in "012":
        (root / digit).mkdir(parents=True)
        for i in range(6):
            img = rng.integers(0, 60, size=(12, 12), dtype=np.uint8)
            img[2:10, 3 + int(digit) * 2] = 255  # a stroke whose place tells the class
            write_array(root / digit / f"{i}.png", img)
    return root


def test_val_split_zero_trains_on_everything_and_keeps_the_last_as_best(tmp_path):
    data = _digit_folder(tmp_path / "digits")
    summary = fit(tiny_config(tmp_path, dataset=str(data), val_split=0.0, epochs=2, limit=None))
    assert "val_acc" not in summary["metrics"]
    best, last = (load_checkpoint(summary[k]) for k in ("best_checkpoint", "last_checkpoint"))
    for key, value in last.state_dict.items():
        assert torch.equal(value, best.state_dict[key]), key
    config = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert "no validation split" in config["decisions"]["val_split"]
    assert config["data"]["sizes"] == {"train": 18}
    with pytest.raises(InputError, match="--patience"):
        fit(tiny_config(tmp_path, dataset=str(data), val_split=0.0, patience=2, limit=None))


def test_flip_choice_is_said_recorded_and_overridable(tmp_path, capsys):
    show_messages(False)  # a CLI test before this one may have left --quiet on
    data = _digit_folder(tmp_path / "digits")
    summary = fit(tiny_config(tmp_path, dataset=str(data), limit=None, name="auto"))
    err = capsys.readouterr().err
    assert "no horizontal flips: classes named by single characters" in err
    config = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert "single characters" in config["decisions"]["hflip"]
    assert "1 channel" in config["decisions"]["channels"]
    assert load_checkpoint(summary["best_checkpoint"]).hparams["options"]["hflip"] is False
    forced = fit(tiny_config(tmp_path, dataset=str(data), limit=None, flip=True, name="forced"))
    assert load_checkpoint(forced["best_checkpoint"]).hparams["options"]["hflip"] is True
    with pytest.raises(InputError, match="--no-augment"):
        fit(tiny_config(tmp_path, dataset=str(data), flip=True, augment=False))


def test_epoch_lines_on_stderr_count_from_one(tmp_path, capsys):
    show_messages(False)
    summary = fit(tiny_config(tmp_path, epochs=2))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    for line in lines:
        for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert f" {name} " in line, line
    with open(Path(summary["run_dir"]) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["val_acc"]]
    assert lines[-1].split(" val_acc ")[1].split()[0] == f"{float(rows[-1]['val_acc']):.4f}"


def test_progress_bar_on_a_terminal_shows_epochs_from_one_with_metrics(tmp_path):
    # stderr is a pseudo-terminal, so the rich bar is drawn instead of the plain lines.
    leader, follower = pty.openpty()
    code = "import sys; from cnnkit.cli import main; sys.argv[0] = 'cnnkit'; main()"
    args = "train --limit 16 --epochs 2 --img-size 16 --model lenet5 --device cpu"
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args.split()],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen[-2000:]
    assert "Epoch 1/2" in screen and "Epoch 2/2" in screen and "Epoch 0/" not in screen
    assert "train_loss" in screen and "val_acc" in screen
    # Results on stdout, progress on stderr: the bar never reaches a --json pipe.
    assert "Epoch" not in proc.stdout.read().decode()


# ---------------------------------------------------------------------------
# DDP: validation counts every sample once
# ---------------------------------------------------------------------------


def test_ddp_on_two_cpu_processes_validates_each_sample_once(tmp_path):
    # 5 validation images, batch 2: 3 batches over 2 ranks, so one rank has a
    # batch less. Padding by repeating a batch would count its samples twice.
    make_image_folder(tmp_path / "data" / "train", ["a", "b"], per_class=4, h=8, w=8)
    make_image_folder(tmp_path / "data" / "val", ["a", "b"], per_class=3, h=8, w=8, seed=5)
    (tmp_path / "data" / "val" / "b" / "img_002.png").unlink()
    args = "train --dataset data --img-size 8 --epochs 1 --batch-size 2 --no-augment"
    args += " --device cpu --devices 2 --strategy ddp --json --model simplecnn"
    result = _cnnkit(*args.split(), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "sync_dist" not in result.stderr
    summary = json.loads(result.stdout)  # exactly one JSON document: only rank 0 reports
    assert summary["run_dir"] == str(Path("runs") / "train")
    # One run folder (rank 1 made none), and the link to it.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["latest", "train"]
    report = assert_val_metrics_count_each_sample_once(tmp_path, summary, expected=5)
    # The summary's final numbers are the whole split's too, not one rank's share.
    assert summary["metrics"]["val_acc"] == pytest.approx(report.accuracy, abs=1e-6)
    # The epoch line on stderr shows the numbers of every rank, as metrics.csv does.
    with open(tmp_path / summary["run_dir"] / "metrics.csv") as f:
        train_row = [r for r in csv.DictReader(f) if r["train_acc"]][-1]
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("epoch 1/1"))
    assert f"train_acc {float(train_row['train_acc']):.4f}" in line


def assert_val_metrics_count_each_sample_once(root: Path, summary: dict, expected: int):
    """metrics.csv's val numbers equal one process measuring the same model on the val folder."""
    from cnnkit.evaluation import evaluate, load_eval_data
    from cnnkit.predict import Predictor

    ckpt = load_checkpoint(root / summary["last_checkpoint"])
    data = load_eval_data(ckpt, str(root / "data"), split="val")
    assert len(data.data) == expected
    report = evaluate(Predictor.from_loaded(ckpt, "cpu", 2), data.data)
    with open(root / summary["run_dir"] / "metrics.csv") as f:
        row = [r for r in csv.DictReader(f) if r["val_acc"]][-1]
    assert float(row["val_acc"]) == pytest.approx(report.accuracy, abs=1e-6)
    assert float(row["val_loss"]) == pytest.approx(report.loss, rel=1e-4)
    return report


# ---------------------------------------------------------------------------
# runs that cannot go on: divergence, resume on other data, full disk, spawn
# ---------------------------------------------------------------------------


def test_quiet_training_prints_nothing_on_stderr(tmp_path):
    result = _cnnkit(
        "train", "-q", "--limit", "8", "--epochs", "1", "--img-size", "16", "--model", "lenet5",
        "--device", "cpu", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_weights_that_blow_up_stop_the_run_before_a_checkpoint_keeps_them(tmp_path):
    from cnnkit.errors import TrainingError

    with pytest.raises(TrainingError, match="became nan or inf") as info:
        # One step and no validation: its loss is finite, the model it leaves is not.
        fit(tiny_config(tmp_path, lr=1e30, optimizer="sgd", batch_size=32, val_split=0.0))
    assert "no checkpoint was written" in info.value.message
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_resume_on_data_of_another_size_is_refused_before_anything_is_made(tmp_path, two_epochs):
    from cnnkit.errors import CheckpointError

    cfg = tiny_config(
        tmp_path, resume=str(two_epochs), epochs=3, img_size=20, out=str(tmp_path / "r2")
    )
    cfg.explicit = ["resume", "epochs", "img_size", "out"]
    with pytest.raises(CheckpointError, match=r"takes 3×16×16 inputs, but this data gives 3×20×20"):
        fit(cfg)
    assert not (tmp_path / "r2").exists()


def test_resume_without_augmentation_drops_the_runs_flip(tmp_path):
    summary = fit(tiny_config(tmp_path, flip=True, name="flipped"))
    cfg = tiny_config(
        tmp_path, resume=summary["last_checkpoint"], epochs=2, augment=False, name="r"
    )
    cfg.explicit = ["resume", "epochs", "augment", "name", "out"]
    resumed = fit(cfg)
    assert load_checkpoint(resumed["last_checkpoint"]).meta.options["flip"] is None


def test_a_full_disk_while_saving_a_checkpoint_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno

    import cnnkit.training.trainer as trainer_mod

    def fill_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fill_disk)
    with pytest.raises(InputError, match="cannot write .*best.ckpt.*No space left on device"):
        fit(tiny_config(tmp_path))
    assert list((tmp_path / "runs" / "train" / "checkpoints").iterdir()) == []
    assert trainer_mod.AtomicCheckpointIO  # the writer Trainer uses


def test_spawn_strategies_are_refused(tmp_path):
    with pytest.raises(InputError, match="--strategy ddp_spawn is not supported"):
        fit(tiny_config(tmp_path, strategy="ddp_spawn"))


def test_limit_zero_lifts_a_resumed_runs_limit(tmp_path, two_epochs):
    cfg = tiny_config(tmp_path, resume=str(two_epochs), epochs=3, limit=0, name="all")
    cfg.explicit = ["resume", "epochs", "limit", "name", "out"]
    summary = fit(cfg)
    config = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert config["data"]["sizes"]["train"] == 6000  # shapes in full, not the 24 of the first run


def test_the_input_size_is_said_and_recorded_and_a_big_shrink_is_a_warning(tmp_path, capsys):
    show_messages(False)
    make_image_folder(tmp_path / "photos", ["a", "b"], 3, 160, 144)
    summary = fit(tiny_config(tmp_path, dataset=str(tmp_path / "photos"), img_size=None,
                              limit=None, val_split=0.0))  # fmt: skip
    err = capsys.readouterr().err
    note = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())["decisions"]
    assert note["img_size"].startswith("input size 28×28: lenet5's default input size")
    assert "about 160×144" in note["img_size"]
    assert f"warning: {note['img_size']}" in err.splitlines()

    builtin = fit(tiny_config(tmp_path, img_size=None, name="builtin"))
    note = yaml.safe_load((Path(builtin["run_dir"]) / "config.yaml").read_text())["decisions"]
    assert note["img_size"] == "input size 32×32: the dataset's own size (--img-size to change)"
    assert "warning" not in capsys.readouterr().err

    given = fit(tiny_config(tmp_path, name="given"))  # --img-size 16: the user's, not ours
    note = yaml.safe_load((Path(given["run_dir"]) / "config.yaml").read_text())["decisions"]
    assert "img_size" not in note


def test_latest_links_to_the_newest_run_folder(tmp_path):
    from cnnkit.training.rundir import new_run_dir, point_latest_at

    first = new_run_dir(tmp_path / "runs", None)
    assert point_latest_at(first)
    assert (tmp_path / "runs" / "latest").resolve() == first.resolve()
    named = new_run_dir(tmp_path / "runs", "digits")
    assert point_latest_at(named)
    assert os.readlink(tmp_path / "runs" / "latest") == "digits"  # relative: runs/ can move
    with pytest.raises(InputError, match="--name latest is the link"):
        new_run_dir(tmp_path / "runs", "latest")
    (tmp_path / "old" / "latest").mkdir(parents=True)  # a folder of the user's: left alone
    assert not point_latest_at(new_run_dir(tmp_path / "old", None))
    assert (tmp_path / "old" / "latest").is_dir() and not (tmp_path / "old" / "latest").is_symlink()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits", "latest", "train"]


def test_resume_through_latest_and_a_refused_run_leaves_latest_alone(tmp_path, capsys):
    show_messages(False)
    first = fit(tiny_config(tmp_path, epochs=1, img_size=None))  # a size cnnkit decides
    latest = tmp_path / "runs" / "latest"
    assert latest.resolve() == Path(first["run_dir"]).resolve()
    with pytest.raises(CnnkitError):  # refused before training: the link stays
        fit(tiny_config(tmp_path, epochs=1, dataset=str(tmp_path / "nope")))
    assert latest.resolve() == Path(first["run_dir"]).resolve()
    last = str(latest / "checkpoints" / "last.ckpt")
    resumed = fit(tiny_config(tmp_path, epochs=2, img_size=None, resume=last))
    assert latest.resolve() == Path(resumed["run_dir"]).resolve() != latest.parent / "train"
    config = yaml.safe_load((Path(resumed["run_dir"]) / "config.yaml").read_text())
    assert config["resumed_from"] == str(
        Path(first["run_dir"]).resolve() / "checkpoints" / "last.ckpt"
    )
    before = yaml.safe_load((Path(first["run_dir"]) / "config.yaml").read_text())
    assert config["decisions"]["img_size"] == before["decisions"]["img_size"]  # kept on record
    (latest).unlink()
    (latest).write_text("mine")  # a file of the user's: kept, and said
    fit(tiny_config(tmp_path, epochs=1))
    assert latest.read_text() == "mine"
    assert "is not cnnkit's link to the newest run" in capsys.readouterr().err


def test_the_shrink_warning_counts_only_the_images_that_were_read(tmp_path, capsys):
    import struct
    import zlib

    show_messages(False)
    make_image_folder(tmp_path / "liar", ["a", "b"], 4, 16, 16)
    for path in sorted((tmp_path / "liar").rglob("img_00[123].png")):  # 3 of 4 per class
        data = bytearray(path.read_bytes())  # the header says 9000×9000; the pixels do not
        data[16:24] = struct.pack(">II", 9000, 9000)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        path.write_bytes(bytes(data))
    summary = fit(tiny_config(tmp_path, dataset=str(tmp_path / "liar"), img_size=None,
                              limit=None, val_split=0.0))  # fmt: skip
    note = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())["decisions"]
    assert "9000" not in note["img_size"] and "warning: input size" not in capsys.readouterr().err
