"""Ctrl-C and ``kill`` stop convolve and predict cleanly: no traceback, no half-written file.

Exit status 130 for SIGINT and 143 for SIGTERM (128 + the signal number, as a
shell reports a job stopped by it), the word "interrupted" or "terminated" on
stderr, and whatever was already printed on stdout still delivered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import SLOW_CONVOLVE, make_checkpoint, make_image, make_video


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not condition():
        time.sleep(0.05)


@pytest.mark.parametrize(
    "signum, status, word",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_signal_mid_video_convolve_exits_cleanly_and_leaves_nothing(
    tmp_path, signum, status, word
) -> None:
    make_video(tmp_path / "v.mp4", frames=40, h=16, w=16)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CONVOLVE],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: any(p.name.endswith(".tmp.mp4") for p in tmp_path.iterdir()))
    time.sleep(0.3)  # a few frames into the temporary file
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert err.strip().splitlines() == [word], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no output, no temp file


def test_sigint_during_predict_keeps_the_records_already_printed(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 1, (16, 16))
    for i in range(2):
        make_image(tmp_path / f"{i}.png", 16, 16, channels=1, seed=i)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "predict", str(ckpt), "-", "--device", "cpu", "-q"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    # Paths arrive on a pipe that stays open, as from a slow `find`: predict answers
    # each one and then waits for more when Ctrl-C comes.
    proc.stdin.write(f"{tmp_path / '0.png'}\n")
    proc.stdin.flush()
    first = proc.stdout.readline()
    assert '"path"' in first and "0.png" in first, first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted", err
    assert "1.png" not in out
