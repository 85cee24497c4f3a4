"""Error lines that say what is wrong at once, and say it once."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint, make_image


def test_convolve_refuses_stdin_that_starts_no_image_at_its_first_bytes(tmp_path) -> None:
    # The pipe stays open after 4 KiB of zeros: an answer before its end is one
    # given from the first bytes, not after reading up to the byte limit (1.4 GB).
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "convolve", "-", "-k", "sobel", "-o", "o.png"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(bytes(4096))
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is not None, "still reading stdin after 4 KiB of zeros"
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1
    assert err.splitlines() == [
        "error: stdin is not a readable image: its contents are not PNG, JPEG, GIF, BMP, "
        "TIFF or WebP (hint: convert it to PNG or JPEG)"
    ]
    assert not (tmp_path / "o.png").exists()


def test_convolve_refuses_such_stdin_before_a_small_byte_limit(tmp_path, monkeypatch) -> None:
    # The first read (up to 1 MiB) already passes a limit of 80,000 bytes: the
    # reason is still the contents, not a limit that raising would not help.
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", "10000")
    result = subprocess.run(
        [sys.executable, "-m", "cnnkit", "convolve", "-", "-k", "sobel", "-o", "o.png"],
        cwd=tmp_path,
        input=bytes(200_000),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.startswith("error: stdin is not a readable image: its contents"), err
    assert "CNNKIT_MAX_IMAGE_PIXELS" not in err and err.count("\n") == 1


# ---------------------------------------------------------------------------
# predict's and explain's line for an input that failed names it once
# ---------------------------------------------------------------------------


@pytest.fixture
def ckpt(tmp_path: Path) -> str:
    return str(make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 1, (16, 16)))


def _folder_with_a_device(tmp_path: Path) -> None:
    (tmp_path / "d" / "0").mkdir(parents=True)
    make_image(tmp_path / "d" / "0" / "ok.png", 16, 16, channels=1)
    os.symlink(os.devnull, tmp_path / "d" / "0" / "z.png")


def test_predict_names_a_failed_input_once(tmp_path, monkeypatch, capsys, ckpt) -> None:
    _folder_with_a_device(tmp_path)
    monkeypatch.chdir(tmp_path)
    status, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, "d", "nope.png", "-q"
    )
    assert status == 1
    failed = [r for r in map(json.loads, out.splitlines()) if "error" in r]
    assert err.splitlines()[:2] == [
        "error: d/0/z.png is a device, not an image file",
        "error: nope.png: no such file or folder",  # a reason without the name gets it
    ]
    # The record says the same: its error is the line's text where it names the input.
    assert failed[0] == {"path": "d/0/z.png", "error": "d/0/z.png is a device, not an image file"}


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)


def test_predict_names_stdin_once(tmp_path, monkeypatch, capsys, ckpt) -> None:
    piped = io.BufferedReader(io.BytesIO(_png_header(30000, 30000)))  # type: ignore[arg-type]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(piped))
    status, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-", "-q")
    assert status == 1
    line = err.splitlines()[-2]
    assert line.startswith("error: stdin is 30000×30000 (900,000,000 pixels), over the decode"), err
    assert line == f"error: {json.loads(out)['error']}"


def test_explain_names_a_failed_input_once(tmp_path, monkeypatch, capsys, ckpt) -> None:
    _folder_with_a_device(tmp_path)
    monkeypatch.chdir(tmp_path)
    status, _, err = cnnkit_in_process(monkeypatch, capsys, "explain", ckpt, "d", "-o", "maps")
    assert status == 1
    assert "error: d/0/z.png is a device, not an image file" in err.splitlines(), err


def test_a_name_that_is_only_a_word_of_the_reason_is_still_given() -> None:
    from cnnkit.cli.output import record_error_line

    clips = "model 'c3d' classifies video clips of 4 frames, not single images"
    assert record_error_line({"path": "4", "error": clips}) == f"error: 4: {clips}"
    denied = {"path": "x.png", "error": "cannot read x.png: Permission denied"}
    assert record_error_line(denied) == "error: cannot read x.png: Permission denied"
