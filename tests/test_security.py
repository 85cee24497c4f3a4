"""Checkpoints are pickles: loading one must never run the code it carries.

Each file here would run ``touch MARKER`` if it were unpickled the ordinary
way. eval, predict, inspect and ``train --resume`` must all refuse it with the
same one-line error, and the marker must never appear.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from cnnkit import cli
from cnnkit.checkpoint import load_checkpoint
from cnnkit.errors import CheckpointError
from tests.helpers import make_checkpoint, make_image

REFUSAL = "is not a cnnkit checkpoint or needs code to load"


class _RunsCommand:
    """Unpickling this calls os.system: what a booby-trapped download would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _booby_trapped(tmp_path: Path, where: str) -> Path:
    """A .ckpt whose unpickling runs a command; ``where`` says where the payload hides."""
    marker = tmp_path / "MARKER"
    path = tmp_path / f"evil-{where}.ckpt"
    payload = _RunsCommand(marker)
    if where == "whole-file":
        torch.save(payload, path)
    elif where == "legacy-format":  # torch's pre-1.6 pickle layout, still read by torch.load
        torch.save({"state_dict": {}, "x": payload}, path, _use_new_zipfile_serialization=False)
    else:
        # A real-looking checkpoint (weights and all) with the payload among its hparams.
        good = make_checkpoint(tmp_path / "good.ckpt", "lenet5", ["a", "b"], 1, (16, 16))
        raw = torch.load(good, weights_only=True)
        raw["hyper_parameters"]["dataset"] = payload
        torch.save(raw, path)
    return path


WHERE = ["whole-file", "legacy-format", "hyper_parameters"]


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cnnkit", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("command", ["eval", "predict", "inspect"])
def test_commands_refuse_a_checkpoint_that_runs_code(
    tmp_path, monkeypatch, capsys, command, where
) -> None:
    path = _booby_trapped(tmp_path, where)
    image = tmp_path / "x.png"
    make_image(image, 16, 16, channels=1)
    args = {
        "eval": ["eval", str(path), "--device", "cpu"],
        "predict": ["predict", str(path), str(image), "--device", "cpu"],
        "inspect": ["inspect", str(path)],
    }[command]
    status, out, err = _main(monkeypatch, capsys, *args)
    assert status == 1
    assert err.startswith(f"error: {path} {REFUSAL}"), err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "MARKER").exists(), "loading the checkpoint ran its code"


def test_resume_refuses_a_checkpoint_that_runs_code(tmp_path) -> None:
    path = _booby_trapped(tmp_path, "hyper_parameters")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "cnnkit", "train", "--dataset", "shapes", "--model", "lenet5",
         "--limit", "8", "--epochs", "1", "--out", str(tmp_path / "runs"), "--device", "cpu",
         "--resume", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors and REFUSAL in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "MARKER").exists(), "resuming ran the checkpoint's code"
    assert not any((tmp_path / "runs").glob("*/checkpoints/*.ckpt"))


def _torch_file_bytes(tmp_path: Path) -> bytes:
    good = make_checkpoint(tmp_path / "real.ckpt", "lenet5", ["a", "b"], 1, (16, 16))
    return good.read_bytes()


def _foreign_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not a torch archive")


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty", "the file is empty"),
        ("junk-pickle", "damaged, truncated or not a torch file"),
        ("text", "damaged, truncated or not a torch file"),
        ("foreign-zip", "damaged, truncated or not a torch file"),
        ("truncated", "damaged, truncated or not a torch file"),
        ("no-hparams", "no cnnkit hyper_parameters"),
        ("not-a-dict", "no state_dict"),
        ("classes-not-a-list", "'classes' is not a list"),
        ("no-input", "no 'input' spec"),
        ("input-not-a-spec", "'input' is not an input spec"),
        ("newer-schema", "written by a newer cnnkit"),
        ("no-weights", "no model weights"),
    ],
)
def test_damaged_or_foreign_files_are_refused_with_a_reason(tmp_path, kind, reason) -> None:
    path = tmp_path / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "junk-pickle":
        path.write_bytes(b"\x80\x02junk")
    elif kind == "text":
        path.write_text("epoch=3 acc=0.9\n")
    elif kind == "foreign-zip":
        _foreign_zip(path)
    elif kind == "truncated":
        data = _torch_file_bytes(tmp_path)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "no-hparams":
        torch.save({"state_dict": {"model.w": torch.zeros(2)}}, path)
    elif kind == "not-a-dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "classes-not-a-list":
        hp = {"model_name": "lenet5", "classes": "ab"}
        torch.save({"state_dict": {"model.w": torch.zeros(2)}, "hyper_parameters": hp}, path)
    elif kind in ("no-input", "input-not-a-spec", "newer-schema"):
        hp = {"model_name": "lenet5", "classes": ["a", "b"]}
        if kind == "input-not-a-spec":
            hp["input"] = {"channels": 1, "size": [28]}
        elif kind == "newer-schema":
            hp["schema"] = 99
        torch.save({"state_dict": {"model.w": torch.zeros(2)}, "hyper_parameters": hp}, path)
    elif kind == "no-weights":
        spec = {"channels": 1, "size": [28, 28], "frames": None, "mean": [0.5], "std": [0.2]}
        hp = {"model_name": "lenet5", "classes": ["a", "b"], "input": spec}
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": hp}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = info.value.message
    assert message.startswith(f"{path} {REFUSAL}") and reason in message, message
    # Not just an exception's repr: no class names, no multi-line torch advice.
    assert "Error(" not in message and "\n" not in message


def test_weights_that_do_not_fit_the_model_are_a_checkpoint_error(tmp_path, monkeypatch, capsys):
    # lenet5's layers with the wrong shapes: a checkpoint from another model or version.
    state = {"conv1.weight": torch.zeros(2, 1, 3, 3)}
    path = make_checkpoint(
        tmp_path / "misfit.ckpt", "lenet5", ["a", "b"], 1, (16, 16), state_dict=state
    )
    status, _, err = _main(monkeypatch, capsys, "inspect", str(path))
    assert status == 1
    assert err.startswith(f"error: weights in {path} do not fit model 'lenet5'"), err
    assert "Traceback" not in err
