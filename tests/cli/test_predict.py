"""`cnnkit predict`: formats, streaming, error records and exit status, import hygiene."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnkit.cli import app, main
from tests.helpers import make_checkpoint, make_image, make_video

CLASSES = ["cat", "dog", "owl"]


@pytest.fixture
def ckpt(tmp_path):
    return str(make_checkpoint(tmp_path / "m.ckpt", "lenet5", CLASSES, 1, (16, 16)))


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        make_image(folder / f"{i}.png", 16, 16, channels=1, seed=i)
    make_image(folder / "sub" / "z.jpg", 20, 12, channels=3, seed=9)
    return folder


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnkit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_jsonl_is_the_default_off_a_terminal(ckpt, images) -> None:
    result = CliRunner().invoke(app, ["predict", ckpt, str(images), "--top-k", "2", "-q"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    # Folders are walked recursively, in sorted order.
    assert [os.path.relpath(r["path"], images) for r in records] == [
        "0.png", "1.png", "2.png", "3.png", os.path.join("sub", "z.jpg")
    ]  # fmt: skip
    for r in records:
        assert set(r) == {"path", "label", "score", "topk"}
        assert r["label"] in CLASSES and isinstance(r["score"], float)
        assert [t["label"] for t in r["topk"]][0] == r["label"] and len(r["topk"]) == 2


def test_decode_workers_do_not_change_the_records(ckpt, images) -> None:
    outputs = []
    for workers in ("1", "3"):
        args = ["predict", ckpt, str(images), "--workers", workers, "-q"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append([json.loads(line) for line in result.stdout.splitlines()])
    assert len(outputs[0]) == 5 and outputs[0] == outputs[1]


def test_csv_and_table_formats(ckpt, images) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["predict", ckpt, str(images), "--format", "csv", "-q"])
    assert out.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0])[:3] == ["path", "label", "score"]
    assert len(rows) == 5 and all(r["label"] in CLASSES for r in rows)
    assert rows[0]["topk"].startswith(rows[0]["label"] + ":")
    table = runner.invoke(app, ["predict", ckpt, str(images / "0.png"), "--format", "table"])
    assert table.exit_code == 0
    assert "0.png" in table.stdout and any(c in table.stdout for c in CLASSES)
    assert "device:" not in table.stdout  # chatter goes to stderr only


def test_video_records_through_the_cli(tmp_path) -> None:
    ckpt3d = make_checkpoint(tmp_path / "v.ckpt", "c3d_small", ["l", "r"], 3, (16, 16), frames=4)
    make_video(tmp_path / "clip.mp4", frames=12, fps=4.0)
    args = ["predict", str(ckpt3d), str(tmp_path / "clip.mp4"), "--stride", "4", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["start_frame"], r["end_frame"]) for r in records[:-1]] == [(0, 3), (4, 7), (8, 11)]
    assert records[1]["start_s"] == 1.0 and records[1]["end_s"] == 2.0
    assert records[-1]["window"] == "video" and records[-1]["label"] in ["l", "r"]


def test_bad_options_and_files_are_clean_errors(tmp_path, ckpt, images) -> None:
    assert CliRunner().invoke(app, ["predict", ckpt, str(images), "--top-k", "0"]).exit_code == 2
    (tmp_path / "junk.ckpt").write_text("not a checkpoint\n")
    proc = _run("predict", str(tmp_path / "junk.ckpt"), str(images))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert "not a cnnkit checkpoint" in proc.stderr and proc.stdout == ""


def test_100_inputs_with_a_corrupt_and_a_missing_file(tmp_path, ckpt) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(98):
        make_image(folder / f"{i:03d}.png", 8, 8, channels=1, seed=i)
    (folder / "050_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    proc = _run("predict", ckpt, str(folder), str(tmp_path / "missing.png"), "--batch-size", "16")
    assert proc.returncode == 1
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 100
    good = [r for r in records if "error" not in r]
    bad = [r for r in records if "error" in r]
    assert len(good) == 98 and len(bad) == 2
    assert {os.path.basename(r["path"]) for r in bad} == {"050_corrupt.png", "missing.png"}
    assert all(set(r) == {"path", "error"} for r in bad)
    # Order follows the inputs: the corrupt file sits among its sorted neighbours.
    assert records[51]["path"].endswith("050_corrupt.png")
    error_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert any("050_corrupt.png" in ln for ln in error_lines)
    assert any("missing.png" in ln for ln in error_lines)
    assert "2 of 100 inputs" in error_lines[-1] and "Traceback" not in proc.stderr


def test_results_stream_from_a_pipe_of_paths(tmp_path, ckpt, images) -> None:
    """The first result is printed before the second path has even been written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "predict", ckpt, "-", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdin.write(f"{images / '0.png'}\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no output within 60 s although one input was available"
        first = json.loads(proc.stdout.readline())
        assert first["path"].endswith("0.png") and first["label"] in CLASSES
        assert proc.poll() is None  # still waiting for more paths
        proc.stdin.write(f"{images / '1.png'}\n")
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(60) == 0
        assert json.loads(rest.splitlines()[0])["path"].endswith("1.png")
    finally:
        proc.kill()
        proc.wait()


def test_predict_never_imports_lightning_or_torchmetrics(tmp_path, ckpt, images) -> None:
    code = (
        "import atexit, sys\n"
        "def report():\n"
        "    heavy = [m for m in ('lightning', 'pytorch_lightning', 'torchmetrics')"
        " if m in sys.modules]\n"
        "    sys.stderr.write(f'HEAVY={heavy}\\n')\n"
        "atexit.register(report)\n"
        f"sys.argv = ['cnnkit', 'predict', {ckpt!r}, {str(images / '0.png')!r}]\n"
        "from cnnkit.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=[]" in proc.stderr
    assert json.loads(proc.stdout)["label"] in CLASSES


def test_closed_pipe_stops_quietly(tmp_path, ckpt) -> None:
    folder = tmp_path / "lots"
    folder.mkdir()
    for i in range(300):
        make_image(folder / f"{i:03d}.png", 8, 8, channels=1, seed=i)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "predict", ckpt, str(folder), "--batch-size", "4", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr


# ---------------------------------------------------------------------------
# '-': one image on stdin, or paths
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_one_image_on_stdin_is_classified_as_path_dash(tmp_path, ckpt, ext) -> None:
    photo = tmp_path / f"photo{ext}"
    make_image(photo, 20, 24, channels=3, seed=4)
    runner = CliRunner()
    piped = runner.invoke(app, ["predict", ckpt, "-", "-q"], input=photo.read_bytes())
    named = runner.invoke(app, ["predict", ckpt, str(photo), "-q"])
    assert piped.exit_code == 0 and named.exit_code == 0, piped.output
    (got,) = [json.loads(line) for line in piped.stdout.splitlines()]
    (want,) = [json.loads(line) for line in named.stdout.splitlines()]
    assert got["path"] == "-"
    assert (got["label"], got["score"], got["topk"]) == (want["label"], want["score"], want["topk"])


def _main_with_stdin(monkeypatch, capsys, data: bytes, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    monkeypatch.setattr(sys, "argv", ["cnnkit", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_binary_stdin_that_is_no_image_is_one_clean_error(monkeypatch, capsys, ckpt) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    status, out, err = _main_with_stdin(monkeypatch, capsys, noise, "predict", ckpt, "-", "-q")
    assert status == 1 and out == ""
    assert err.startswith("error: stdin is neither an image nor a list of paths"), err
    assert err.endswith("\n") and err[:-1].isprintable(), err  # one line, no binary garbage


def test_paths_that_start_like_an_image_signature_stay_paths(
    tmp_path, monkeypatch, capsys, ckpt
) -> None:
    # "BM" starts a BMP and "RIFF" a WebP; as text they are just file names.
    for name in ("BMW.png", "RIFFLE.png"):
        make_image(tmp_path / name, 16, 16, channels=1)
    monkeypatch.chdir(tmp_path)
    status, out, _ = _main_with_stdin(
        monkeypatch, capsys, b"BMW.png\nRIFFLE.png\n", "predict", ckpt, "-", "-q"
    )
    assert status == 0
    assert [json.loads(line)["path"] for line in out.splitlines()] == ["BMW.png", "RIFFLE.png"]


# ---------------------------------------------------------------------------
# inputs converted to fit the model are noted once
# ---------------------------------------------------------------------------


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note:")]


def test_colour_inputs_to_a_gray_model_are_noted_once(tmp_path, ckpt) -> None:
    for i in range(5):
        make_image(tmp_path / f"c{i}.png", 16, 16, channels=3, seed=i)
        make_image(tmp_path / f"g{i}.png", 16, 16, channels=1, seed=i)
    colour = sorted(str(p) for p in tmp_path.glob("c*.png"))
    gray = sorted(str(p) for p in tmp_path.glob("g*.png"))
    runner = CliRunner()
    noted = runner.invoke(app, ["predict", ckpt, *colour, "--batch-size", "2"])
    assert noted.exit_code == 0, noted.output
    assert _notes(noted.stderr) == [
        "note: colour inputs are converted to gray for this 1-channel model"
    ]
    plain = runner.invoke(app, ["predict", ckpt, *gray])
    assert plain.exit_code == 0 and _notes(plain.stderr) == []
    quiet = runner.invoke(app, ["predict", ckpt, *colour, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_video_shorter_than_the_window_is_noted_as_padded(tmp_path) -> None:
    ckpt3d = make_checkpoint(tmp_path / "v.ckpt", "c3d_small", ["l", "r"], 3, (16, 16), frames=4)
    make_video(tmp_path / "short.mp4", frames=2)
    make_video(tmp_path / "long.mp4", frames=8)
    args = ["predict", str(ckpt3d), str(tmp_path / "short.mp4"), str(tmp_path / "short.mp4")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (note,) = _notes(result.stderr)
    assert "padded by repeating their last frame" in note and "2 frames" in note
    result = CliRunner().invoke(app, ["predict", str(ckpt3d), str(tmp_path / "long.mp4")])
    assert result.exit_code == 0 and _notes(result.stderr) == []
