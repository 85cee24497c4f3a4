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
