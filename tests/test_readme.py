"""The README's commands never rot: every command line of its blocks runs, in order.

Each ``$ cnnkit ...`` line of the README's ```console blocks, and the
``cnnkit ...`` part of the ```bash blocks' lines, runs through the real CLI
entry point in-process, in one folder (later lines use the run folders and
files of earlier ones), with training shrunk to seconds. What would go to the
network is made in place: MNIST as tiny IDX files under ``$CNNKIT_DATA``,
ResNet-18's ImageNet weights as a state dict in ``$TORCH_HOME``. Install
lines (pip, ruff, pytest) are the only lines not run, and are listed here.
The ```python blocks run in tests/test_api.py.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

from tests.helpers import make_image_folder, run_line_in_process, write_tiny_mnist

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# Lines of ```bash blocks that install or check the project: not run here.
NOT_RUN = ("pip ", "python -m pytest", "ruff ", "CNNKIT_DEBUG=1 cnnkit ...")


def readme_commands() -> list[str]:
    """The cnnkit command lines of the README, in reading order."""
    lines = []
    for lang, body in re.findall(r"```(console|bash)\n(.*?)```", README, re.S):
        for line in body.splitlines():
            line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if lang == "console":
                if line.startswith("$ "):
                    lines.append(line[2:].strip())
                continue
            for part in (p.strip() for p in line.split("&&")):
                part = re.split(r"\s+#\s", part, maxsplit=1)[0].strip()
                if part and not part.startswith(NOT_RUN):
                    lines.append(part)
    return lines


COMMANDS = readme_commands()


def shrink(line: str) -> str:
    """The README's command at test size: one epoch on at most 48 samples, small images."""
    if line.split()[:2] == ["cnnkit", "eval"]:
        return line + " --limit 48"
    if line.split()[:2] != ["cnnkit", "train"]:
        return line
    line = re.sub(r"--epochs \d+", "", line) + " --epochs 1 --limit 48 --batch-size 16"
    if "--img-size" not in line:
        line += " --img-size 32"
    return line + " --device cpu"


def test_the_readme_runs_every_command_and_every_command_exists():
    used = {line.split()[1] for line in COMMANDS}
    assert used == {"convolve", "train", "eval", "predict", "inspect", "explain", "export"}
    assert len(COMMANDS) >= 20
    # The first block: install, then train on built-in data.
    assert COMMANDS[0].startswith("cnnkit train --dataset shapes")


def test_every_readme_command_runs(tmp_path, capsys, monkeypatch):
    from tests.training.test_transfer import _fake_resnet18, _no_download, _put_weights

    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    _put_weights(tmp_path / "torch-home", "resnet18", _fake_resnet18())
    _no_download(monkeypatch)
    write_tiny_mnist(tmp_path / "data")
    (tmp_path / "docs" / "tour").mkdir(parents=True)
    for name in ("photo.png", "digit.png"):
        shutil.copyfile(ROOT / "docs" / "tour" / name, tmp_path / "docs" / "tour" / name)
    make_image_folder(tmp_path / "pets", ["cat", "dog"], 12, 40, 48)
    monkeypatch.chdir(tmp_path)
    for line in COMMANDS:
        redirect = None
        if " > " in line:
            line, redirect = (part.strip() for part in line.split(" > ", 1))
        code, out, err = run_line_in_process(shrink(line), capsys, monkeypatch)
        assert code == 0, f"{line}\nexit {code}\n{err[-2000:]}"
        if redirect:
            (tmp_path / redirect).write_text(out)
        check(line, out, tmp_path)


def check(line: str, out: str, workdir: Path) -> None:
    """What a reader of each line relies on."""
    words = line.split()
    command = words[1]
    if command == "train":
        run = workdir / "runs" / "latest"
        assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "summary.json").is_file()
        if "--name" in words:
            assert run.resolve().name == words[words.index("--name") + 1]
    for flag in ("-o", "--confusion", "--kernels"):
        if flag in words:
            target = workdir / words[words.index(flag) + 1]
            assert target.exists() and (target.is_dir() or target.stat().st_size > 0), line
    if command == "export" and "-o" not in words:
        assert Path(words[2]).with_suffix(".onnx").is_file()
    if "--json" in words:
        records = [json.loads(row) for row in out.splitlines()]
        assert records and all("label" in r for r in records), line
    if command == "predict" and "csv" in words:
        rows = list(csv.reader(out.splitlines()))
        assert rows[0][:2] == ["path", "label"] and len(rows) == 13  # a header and 12 cats
    if command == "eval":
        assert "accuracy" in out
    if words[:3] == ["cnnkit", "inspect", "lenet5"]:
        assert "61,706" in out
    if "--explain" in words:
        assert "floor(" in out


def test_the_readme_never_points_at_the_first_run_folder():
    # runs/train is the first run only: after another run it is the wrong model.
    assert "runs/train/" not in README
