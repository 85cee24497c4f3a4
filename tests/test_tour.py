"""docs/tour.md never rots: every command of the tour runs, at small sizes, and does its job.

The commands are parsed out of the tour's ```console blocks (the same parser
docs/make_tour.py uses to refresh the outputs), run in order in one folder
(later steps use the checkpoints of earlier ones) through the real CLI entry
point in-process, with training shrunk by ``shrink``. Real MNIST files are
replaced by a tiny synthetic set in torchvision's layout.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_line_in_process as run_cnnkit
from tests.helpers import write_tiny_mnist

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _load_make_tour():
    spec = importlib.util.spec_from_file_location("make_tour", DOCS / "make_tour.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_tour"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


make_tour = _load_make_tour()
TOUR = (DOCS / "tour.md").read_text()
COMMANDS = make_tour.parse_tour(TOUR)


def shrink(line: str) -> str:
    """The tour's command at test size: one epoch on at most 48 samples per split."""
    return re.sub(r"--epochs \d+", "--epochs 1 --limit 48 --batch-size 16", line)


def check_output(line: str, out: str, workdir: Path) -> None:
    """A few things a reader of the tour relies on, per kind of command."""
    if line.startswith("cnnkit inspect photo.png"):
        assert "192" in out and "RGB" in out
    elif line.startswith("cnnkit inspect digit.png"):
        assert "gray" in out and "28" in out
    elif line == "cnnkit inspect dense":
        assert "235,500" in out and "266,610" in out
    elif line == "cnnkit inspect lenet5":
        assert "156" in out and "61,706" in out
    elif line.startswith("cnnkit inspect lecun1989"):
        assert "9,760" in out
    elif "--list-kernels" in line:
        assert "sobel" in out and "temporal-diff" in out
    elif line.startswith("cnnkit inspect moving.mp4"):
        assert "24" in out and "64" in out
    if "--explain" in line:
        assert "floor(" in out
    if line.startswith("cnnkit train"):
        name = re.search(r"--name (\S+)", line).group(1)
        assert (workdir / "runs" / name / "checkpoints" / "best.ckpt").is_file()
        assert (workdir / "runs" / name / "metrics.csv").is_file()
    for flag in ("-o", "--confusion", "--kernels"):
        match = re.search(rf"{flag} (\S+)", line)
        if match and line.startswith("cnnkit"):
            assert (workdir / match.group(1)).stat().st_size > 0, match.group(1)
    if "--feature-maps" in line:
        folder = workdir / re.search(r"--feature-maps (\S+)", line).group(1)
        assert len(list(folder.glob("*.png"))) == 2  # lenet5 has two convolutions
    if line.startswith("cnnkit convolve photo.png -k ") and " -o " not in line:
        kernel = line.split(" -k ")[1].split()[0].replace(":", "-").replace(",", "-")
        assert (workdir / f"photo-{kernel}.png").is_file()


def test_tour_covers_every_command_and_the_lecture():
    used = {c.line.split()[1] for c in COMMANDS if c.is_cnnkit}
    assert used == {"convolve", "train", "eval", "predict", "inspect", "explain"}
    models = set(re.findall(r"--model (\S+)", TOUR))
    assert {"lenet5", "lecun1989", "framewise2d", "c3d_small"} <= models
    assert len(COMMANDS) >= 25


def test_tour_pictures_exist_and_are_small():
    pictures = re.findall(r"\]\((tour/[^)]+\.png)\)", TOUR)
    assert len(pictures) >= 9
    total = 0
    for name in pictures:
        size = (DOCS / name).stat().st_size
        assert size < 100_000, f"{name} is {size} bytes"
        total += size
    assert total < 1_500_000


def test_every_tour_command_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    make_tour.setup_workdir(tmp_path, digits=None)
    write_tiny_mnist(tmp_path / "digits")
    monkeypatch.chdir(tmp_path)
    for command in COMMANDS:
        line = shrink(command.line)
        if command.is_cnnkit:
            # `cnnkit predict ... | jq ...`: run the cnnkit part; its JSON Lines are checked here.
            cnnkit_part = line.split(" | ", 1)[0]
            code, out, err = run_cnnkit(cnnkit_part, capsys, monkeypatch)
            assert code == 0, f"{line}\nexit {code}\n{err[-2000:]}"
            check_output(cnnkit_part, out, tmp_path)
            records = [json.loads(row) for row in out.splitlines()] if " | jq" in line else []
            if " | jq" in line and cnnkit_part.split()[1] == "predict":
                assert [r["path"] for r in records] == ["digit.png", "photo.png"]
                assert all(r["label"] in list("0123456789") for r in records)
            if cnnkit_part.split()[1] == "explain":
                # A map per image; one record per 8-frame window of the 24-frame video.
                records = records or [json.loads(row) for row in out.splitlines()]
                assert all(Path(r["output"]).is_file() for r in records)
                windows = [
                    (r["start_frame"], r["end_frame"]) for r in records if "start_frame" in r
                ]
                assert windows in ([], [(0, 7), (8, 15), (16, 23)])
        else:
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True)
            assert done.returncode == 0, f"{line}\n{done.stderr}"
            assert done.stdout.strip(), line


def test_the_tours_setup_makes_its_inputs(tmp_path):
    """The set-up's `make_tour.py --inputs .` line, as the tour gives it (no cnnkit, no network)."""
    setup = re.search(r"\*\*Set up\.\*\*.*?```bash\n(.*?)```", TOUR, re.S).group(1)
    line = next(s for s in setup.splitlines() if "make_tour.py --inputs" in s)
    command = shlex.split(line.split("#", 1)[0].replace("../docs/", str(DOCS) + "/"))
    done = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stderr
    for name in ("photo.png", "digit.png", "moving.mp4"):
        assert (tmp_path / name).stat().st_size > 0, name
