"""The image libraries' own warnings never reach a command's stderr; crash reports still do.

libjpeg and libpng print warnings with ``fprintf(stderr)`` ("Corrupt JPEG
data: ...", "libpng warning: iCCP: too short"), which no OpenCV log level
reaches. Each test runs a real ``cnnkit`` process on a damaged file made
here, and checks that stderr holds cnnkit's lines and nothing else; with
CNNKIT_DEBUG=1 the library's line is there again (the file does make the
library speak), and a crash in a command still prints a Python traceback.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnkit.io._opencv import cv2
from tests.helpers import make_checkpoint, run_cnnkit

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="C's stderr is only redirected under glibc"
)


def _jpeg() -> bytes:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # noise: a long scan
    return cv2.imencode(".jpg", image)[1].tobytes()


def stray_marker_jpeg(path: Path) -> Path:
    """Junk and an unknown marker before the scan: libjpeg warns, then gives up."""
    data = _jpeg()
    sos = data.index(b"\xff\xda")
    path.write_bytes(data[:sos] + bytes(8) + b"\xff\x95" + data[sos:])
    return path


def flipped_scan_jpeg(path: Path) -> Path:
    """Two bytes of the scan flipped into a marker: libjpeg warns, and decodes what came before."""
    data = bytearray(_jpeg())
    sos = data.index(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    middle = (scan + len(data) - 2) // 2
    data[middle : middle + 2] = b"\xff\x95"
    path.write_bytes(bytes(data))
    return path


def short_iccp_png(path: Path) -> Path:
    """A PNG with a 3-byte iCCP chunk (valid CRC) after IHDR: libpng warns, then decodes it."""
    image = np.full((16, 16, 3), 120, np.uint8)
    data = cv2.imencode(".png", image)[1].tobytes()
    body = b"iCCP" + b"x\x00\x00"
    chunk = struct.pack(">I", 3) + body + struct.pack(">I", zlib.crc32(body))
    ihdr_end = 8 + 8 + 13 + 4
    path.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])
    return path


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 3, (16, 16))


def _lines(err: str) -> list[str]:
    return err.splitlines()


@pytest.mark.parametrize("command", ["predict", "convolve", "inspect"])
def test_an_undecodable_jpeg_is_only_cnnkit_error_lines(tmp_path, ckpt, command) -> None:
    stray_marker_jpeg(tmp_path / "d.jpg")
    args = {
        "predict": ["predict", str(ckpt), "d.jpg", "-q"],
        "convolve": ["convolve", "d.jpg", "-k", "sobel", "-o", "o.png", "-q"],
        "inspect": ["inspect", "d.jpg"],
    }[command]
    result = run_cnnkit(*args, cwd=tmp_path)
    assert result.returncode == 1
    lines = _lines(result.stderr)
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    assert "d.jpg" in lines[0] and "not a readable image" in lines[0]
    assert len(lines) == (2 if command == "predict" else 1)  # predict adds its summary
    assert not (tmp_path / "o.png").exists()


def test_a_jpeg_that_decodes_despite_a_warning_says_only_what_was_written(tmp_path) -> None:
    flipped_scan_jpeg(tmp_path / "d.jpg")
    result = run_cnnkit("convolve", "d.jpg", "-k", "sobel", "-o", "o.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _lines(result.stderr) == ["wrote o.png (32×32×3)"]


def test_a_png_with_a_damaged_ancillary_chunk_is_classified_quietly(tmp_path, ckpt) -> None:
    short_iccp_png(tmp_path / "p.png")
    result = run_cnnkit("predict", str(ckpt), "p.png", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["label"] in ("a", "b")


@pytest.mark.parametrize(
    ("make", "library_line"),
    [
        (flipped_scan_jpeg, "Corrupt JPEG data: premature end of data segment"),
        (short_iccp_png, "libpng warning: iCCP: too short"),
    ],
)
def test_cnnkit_debug_lets_the_library_lines_through(tmp_path, make, library_line) -> None:
    # The same files, made to speak: what the tests above check is not a file the
    # library reads in silence anyway.
    image = make(tmp_path / ("d.jpg" if make is flipped_scan_jpeg else "p.png"))
    args = ("convolve", image.name, "-k", "sobel", "-o", "o.png", "-q")
    result = run_cnnkit(*args, cwd=tmp_path, env={"CNNKIT_DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert _lines(result.stderr) == [library_line]


CRASH = """
import ctypes, os, sys
import cnnkit.cli
app = sys.modules["cnnkit.cli.app"]
app.app = lambda **kw: {crash}  # the command crashes in C
sys.argv = ["cnnkit", "inspect"]
app.main()
"""


@pytest.mark.parametrize(
    ("crash", "fatal"),
    [("ctypes.string_at(0)", "Segmentation fault"), ("os.abort()", "Aborted")],
)
def test_a_crash_in_a_command_still_prints_a_traceback(tmp_path, crash, fatal) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    result = subprocess.run(
        [sys.executable, "-c", CRASH.format(crash=crash)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode < 0, result.stderr
    assert f"Fatal Python error: {fatal}" in result.stderr
    assert "(most recent call first)" in result.stderr
    assert "in _run_app" in result.stderr  # where in cnnkit it happened


IN_PROCESS = """
import ctypes, faulthandler, json, sys
import cnnkit.cli
app = sys.modules["cnnkit.cli.app"]
stderr = ctypes.c_void_p.in_dll(ctypes.CDLL(None), "stderr")
seen = {"before": stderr.value, "faulthandler_before": faulthandler.is_enabled()}

def command(**kw):
    seen["during"] = stderr.value
    seen["faulthandler_during"] = faulthandler.is_enabled()

app.app = command
sys.argv = ["cnnkit", "inspect"]
app.main()
seen["after"] = stderr.value
seen["faulthandler_after"] = faulthandler.is_enabled()
print(json.dumps(seen))
"""


def test_main_in_a_python_process_puts_c_stderr_back(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONFAULTHANDLER", "CNNKIT_DEBUG")}
    result = subprocess.run(
        [sys.executable, "-c", IN_PROCESS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["during"] != seen["before"]  # quiet while the command ran
    assert seen["faulthandler_during"] and not seen["faulthandler_before"]
    assert seen["after"] == seen["before"]  # and as found once it returned
    assert not seen["faulthandler_after"]
