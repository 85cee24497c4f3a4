"""Error lines that say what is wrong at once, and say it once."""

from __future__ import annotations

import subprocess
import sys
import time


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
