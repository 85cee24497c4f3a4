"""Faults around the process rather than in the inputs: stdout's reader goes away, stdout or an
output file is on a full disk, an OSError no command expected.

Each must end with an exit status and at most one ``error:`` line: never a traceback, never
an abort, never a half-written file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit import cli
from cnnkit.errors import InputError
from cnnkit.io import atomic
from cnnkit.io.atomic import atomic_write_bytes
from tests.helpers import make_checkpoint, make_image, make_image_folder, make_video

ENOSPC_TEXT = os.strerror(errno.ENOSPC)  # "No space left on device" on Linux


def _cnnkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnkit", *args]


def _read_a_little_then_close(args: list[str], cwd: Path, env: dict | None = None):
    """Run ``args``, read the start of stdout and close it, like `| head -1`."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        return proc.wait(60), err
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------
# a reader that goes away
# ---------------------------------------------------------------------------


def test_head_on_a_2d_video_prediction_never_aborts(tmp_path) -> None:
    # 320×240 frames and batches of 4: decoding is most of the work and writes come
    # often, so the broken pipe is met while the decode thread is inside OpenCV's C++
    # code, the case that aborted ("terminate called ...", status 134).
    make_video(tmp_path / "bikes.mp4", frames=200, h=240, w=320)
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 1, (16, 16))
    for _ in range(3):  # the abort was a race: most runs, not every run
        status, err = _read_a_little_then_close(
            _cnnkit("predict", str(ckpt), "bikes.mp4", "--batch-size", "4", "-q"), tmp_path
        )
        assert status in (0, 141) and err == "", (status, err)


def test_a_closed_pipe_ends_any_command_quietly(tmp_path) -> None:
    make_image(tmp_path / "big.png", 512, 512, channels=3)  # a PNG larger than a pipe holds
    # Buffered stdout, as in a normal shell (PYTHONUNBUFFERED would hide the broken pipe).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    args = _cnnkit("convolve", "big.png", "-k", "box", "-o", "-")
    status, err = _read_a_little_then_close(args, tmp_path, env)
    assert (status, err) == (0, "")


# ---------------------------------------------------------------------------
# stdout on a full disk
# ---------------------------------------------------------------------------


@pytest.fixture
def full_disk_commands(tmp_path) -> list[list[str]]:
    make_image(tmp_path / "x.png", 16, 16, channels=3)
    make_image_folder(tmp_path / "folder", ["cat", "dog"], 2)
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["cat", "dog"], 3, (16, 16))
    return [
        ["--help"],
        ["--version"],
        ["convolve", "--list-kernels"],
        ["convolve", "x.png", "-k", "box", "-o", "-"],
        ["inspect", "lenet5", "--json"],
        ["inspect", "x.png"],
        ["predict", str(ckpt), "x.png"],
        ["eval", str(ckpt), "--dataset", "folder", "--json"],
    ]


def test_stdout_on_a_full_disk_is_one_error_line(tmp_path, full_disk_commands) -> None:
    # Started together: the commands that import torch then share the wait.
    running = []
    for args in full_disk_commands:
        with open("/dev/full", "w") as full:
            proc = subprocess.Popen(
                _cnnkit(*args), cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True
            )
        running.append((args, proc))
    for args, proc in running:
        _, err = proc.communicate(timeout=120)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert proc.returncode == 1, (args, err)
        assert len(errors) == 1 and "Traceback" not in err, (args, err)
        expected = f"error: cannot write to standard output: {ENOSPC_TEXT} (hint: "
        assert errors[0].startswith(expected), (args, err)


# ---------------------------------------------------------------------------
# output files on a full disk, and OSErrors no command expected
# ---------------------------------------------------------------------------


def _full_disk(self: Path, data: bytes) -> int:
    with open(self, "wb") as f:
        f.write(data[: len(data) // 2])  # part of it went out before the disk filled
    raise OSError(errno.ENOSPC, ENOSPC_TEXT)


def test_a_full_disk_while_writing_an_output_is_an_input_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(Path, "write_bytes", _full_disk)
    with pytest.raises(InputError) as info:
        atomic_write_bytes(tmp_path / "out.png", b"12345678")
    assert str(tmp_path / "out.png") in info.value.message
    assert ENOSPC_TEXT in info.value.message and info.value.hint
    assert list(tmp_path.iterdir()) == []  # neither the temporary file nor the output


def test_a_failed_rename_is_an_input_error_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), src, None, dst)

    monkeypatch.setattr(atomic.os, "replace", read_only)
    with pytest.raises(InputError) as info:
        atomic_write_bytes(tmp_path / "out.png", b"1")
    assert info.value.message == f"cannot write {tmp_path / 'out.png'}: {os.strerror(errno.EROFS)}"
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_under_convolve_is_one_error_line(tmp_path, monkeypatch, capsys) -> None:
    make_image(tmp_path / "x.png", 16, 16, channels=3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Path, "write_bytes", _full_disk)
    monkeypatch.setattr(sys, "argv", ["cnnkit", "convolve", "x.png", "-k", "box", "-o", "y.png"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert err.startswith(f"error: cannot write y.png: {ENOSPC_TEXT} (hint:"), err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_an_unexpected_oserror_is_one_line_unless_debugging(tmp_path, monkeypatch, capsys) -> None:
    from cnnkit import convolution

    def broken_disk(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "/mnt/photos/x.png")

    make_image(tmp_path / "x.png", 16, 16, channels=3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(convolution, "convolve_file", broken_disk)
    monkeypatch.setattr(sys, "argv", ["cnnkit", "convolve", "x.png", "-k", "box"])
    monkeypatch.delenv("CNNKIT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert err.startswith(f"error: {os.strerror(errno.EIO)}: /mnt/photos/x.png"), err
    assert len(err.splitlines()) == 1
    monkeypatch.setenv("CNNKIT_DEBUG", "1")
    with pytest.raises(OSError):
        cli.main()
