"""Temporary output files never outlive a killed run.

A run killed with SIGKILL cannot remove its temporary file; its name records
the owner (host, pid, start time), and the next run writing into that folder
removes the temporary files whose owner is gone, and nothing else.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnkit.io.atomic import atomic_output
from tests.helpers import make_image, make_video

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/stat"), reason="process start times come from /proc"
)

OWNED = re.compile(
    r"\.(?P<stem>.+)\.cnnkit-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)-[a-z0-9_]{8}"
    r"\.tmp(?P<ext>\.\w+)"
)


def _start_time(pid: int | str) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rindex(b")") + 2 :].split()[19])


def test_a_temporary_name_records_its_owner(tmp_path) -> None:
    with atomic_output(tmp_path / "out.npy") as temp:
        match = OWNED.fullmatch(temp.name)
        assert match, temp.name
        assert (match["stem"], match["ext"]) == ("out", ".npy")  # the extension still last
        assert int(match["pid"]) == os.getpid() and int(match["start"]) == _start_time("self")
        temp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]


def test_a_long_name_still_fits_in_a_temporary_name(tmp_path) -> None:
    # A 244-byte name: with a temporary name's additions it would pass 255 bytes
    # ("File name too long" before, for a name that is itself fine).
    target = tmp_path / ("é" * 120 + ".png")
    with atomic_output(target) as temp:
        assert len(os.fsencode(temp.name)) <= 255 and temp.name.endswith(".tmp.png")
        temp.write_bytes(b"x")
    assert target.read_bytes() == b"x"


# Convolve a video into .npy with each frame's write slowed down, so that the run
# is still writing its temporary file when it is killed.
SLOW_NPY = (
    "import sys, time; from cnnkit import cli\nfrom cnnkit.convolution import outputs\n"
    "w = outputs._NpyFrames.write\n"
    "def slow(self, f):\n"
    "    w(self, f); time.sleep(0.05)\n"
    "outputs._NpyFrames.write = slow\n"
    "sys.argv = ['cnnkit', 'convolve', 'v.mp4', '-k', 'sobel', '-o', 'out.npy']\n"
    "cli.main()\n"
)


def _leftover_of_a_killed_run(folder: Path) -> Path:
    """Start a convolve into ``folder``, SIGKILL it while its temporary file exists."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_NPY], cwd=folder)
    try:
        deadline = time.monotonic() + 60
        temps: list[Path] = []
        while not temps and time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in folder.iterdir() if p.name.startswith(".out.")]
            time.sleep(0.01)
        assert temps, "the run never made its temporary file"
        time.sleep(0.1)  # a few frames into it
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    [temp] = [p for p in folder.iterdir() if p.name.startswith(".out.")]
    assert temp.stat().st_size > 0 and not (folder / "out.npy").exists()
    return temp


def test_the_next_run_removes_what_a_killed_run_left_and_nothing_else(tmp_path) -> None:
    make_video(tmp_path / "v.mp4", frames=80, h=32, w=32)
    make_image(tmp_path / "x.png", 16, 16)
    left = _leftover_of_a_killed_run(tmp_path)
    match = OWNED.fullmatch(left.name)
    assert match, left.name  # the owner is in the name
    host, dead = match["host"], f"{match['pid']}-{match['start']}"
    me = f"{os.getpid()}-{_start_time('self')}"
    reused = f"{os.getpid()}-{_start_time('self') + 1}"  # this pid, but another process
    other_host = "00000000" if host != "00000000" else "ffffffff"
    kept = [
        f".alive.cnnkit-{host}-{me}-abcdefgh.tmp.npy",  # a live owner: this test
        f".other.cnnkit-{other_host}-{dead}-abcdefgh.tmp.npy",  # made on another host
        f".short.cnnkit-{host}-{dead}-abc.tmp.npy",  # not the pattern: 3 random characters
        f"nodot.cnnkit-{host}-{dead}-abcdefgh.tmp.npy",  # not hidden
        f".bak.cnnkit-{host}-{dead}-abcdefgh.tmp.npy.bak",  # more after the extension
        ".out.k3j9x0a1.tmp.npy",  # the old pattern: owner unknown
        "target.txt",
    ]
    for name in kept:
        (tmp_path / name).write_bytes(b"keep")
    link = tmp_path / f".link.cnnkit-{host}-{dead}-abcdefgh.tmp.npy"
    link.symlink_to(tmp_path / "target.txt")  # never followed, never removed
    folder = tmp_path / f".dir.cnnkit-{host}-{dead}-abcdefgh.tmp.npy"
    folder.mkdir()
    (tmp_path / f".reused.cnnkit-{host}-{reused}-abcdefgh.tmp.npy").write_bytes(b"stale")

    done = subprocess.run(
        [sys.executable, "-m", "cnnkit", "convolve", "x.png", "-k", "box", "-o", "y.png", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert left.name not in names and not any(n.startswith(".reused.") for n in names)
    assert set(kept) | {link.name, folder.name, "y.png", "x.png", "v.mp4"} == names
    assert (tmp_path / "target.txt").read_bytes() == b"keep" and link.is_symlink()
