"""``cnnkit convolve`` on videos from the command line: --codec, signals, unwritable folders.

Every run is a real process (``python -m cnnkit``), so what is checked is what
a user sees: the exit status, every line on stderr (OpenCV's and FFmpeg's
included) and the files left in the folder.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cnnkit.convolve_scale import result_to_pixels
from cnnkit.io.video import CODECS, codecs_for
from tests.helpers import make_image, run_cnnkit, write_video


def _write_video(path: Path, frames: int, h: int, w: int, distinct: int = 4, seed: int = 0):
    """A BGR mp4v video of ``frames`` frames cycling through ``distinct`` noisy gradients."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = []
    for t in range(distinct):
        ramp = np.stack([(xx * 2 + t * 9) % 256, (yy * 3) % 256, (xx + yy) % 256], -1)
        noise = rng.integers(0, 64, size=(h, w, 3))
        base.append(np.clip(ramp * 0.75 + noise, 0, 255).astype(np.uint8))
    write_video(path, [base[i % distinct] for i in range(frames)], fps=25.0, bgr=True)


def _decode(path: Path) -> tuple[list[np.ndarray], str]:
    """The BGR frames of ``path`` and its FourCC as OpenCV reports it."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert capture.isOpened(), path
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    fourcc = code.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00 ")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames, fourcc


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("error: ") and "hint:" in lines[0], result.stderr
    return lines[0]


@pytest.fixture
def clip(tmp_path) -> Path:
    """64×48, 12 frames."""
    _write_video(tmp_path / "v.mp4", frames=12, h=48, w=64)
    return tmp_path / "v.mp4"


# ---------------------------------------------------------------------------
# --codec
# ---------------------------------------------------------------------------


def test_codec_mjpg_writes_a_motion_jpeg_avi(clip, tmp_path):
    result = run_cnnkit("convolve", "v.mp4", "-k", "sobel", "-o", "out.avi", "--codec", "mjpg",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames, fourcc = _decode(tmp_path / "out.avi")
    assert len(frames) == 12
    assert frames[0].shape == (48, 64, 3)
    assert fourcc.upper() == "MJPG"
    assert float(np.std(frames[5])) > 1.0  # edges, not a blank frame


def test_codec_ffv1_mkv_is_lossless(clip, tmp_path):
    result = run_cnnkit("convolve", "v.mp4", "-k", "sobel", "-o", "out.mkv", "--codec", "ffv1",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames, fourcc = _decode(tmp_path / "out.mkv")
    assert fourcc.upper() == "FFV1"
    # The float result of the same run, as the 8-bit pixels sobel's auto scale (abs) makes.
    raw = run_cnnkit("convolve", "v.mp4", "-k", "sobel", "-o", "out.npy", cwd=tmp_path)
    assert raw.returncode == 0, raw.stderr
    result_rgb = np.load(tmp_path / "out.npy")
    assert len(frames) == len(result_rgb) == 12
    for t, (frame, r) in enumerate(zip(frames, result_rgb, strict=True)):
        pixels = result_to_pixels(r.copy(), "abs", 255.0)[:, :, ::-1]  # RGB -> BGR
        assert np.array_equal(frame, pixels), f"frame {t} is not the exact pixels"


def test_codec_avc1_without_an_encoder_is_one_clean_error(clip, tmp_path):
    works = codecs_for(".mp4")
    if "avc1" in works:
        pytest.skip("this OpenCV build has an H.264 encoder: avc1 works here")
    assert works, "no codec writes .mp4 files here"
    result = run_cnnkit("convolve", "v.mp4", "-k", "sobel", "-o", "out.mp4", "--codec", "avc1",
                        cwd=tmp_path)  # fmt: skip
    line = _one_error_line(result)
    assert "avc1" in line
    hint = line.split("hint:", 1)[1]
    assert all(re.search(rf"\b{name}\b", hint) for name in works), line
    assert "avc1" not in hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no output, no temp file


@pytest.mark.parametrize(
    "args, output",
    [
        (["img.png", "-k", "sobel", "-o", "out.png"], "out.png"),
        (["v.mp4", "-k", "sobel", "-o", "out.npy"], "out.npy"),
        (["img.png", "-k", "sobel", "-o", "out.npy"], "out.npy"),
    ],
)
def test_codec_on_a_non_video_output_is_refused(clip, tmp_path, args, output):
    make_image(tmp_path / "img.png", 16, 16)
    result = run_cnnkit("convolve", *args, "--codec", "mp4v", cwd=tmp_path)
    line = _one_error_line(result)
    assert "--codec" in line and output in line
    assert not (tmp_path / output).exists()


def test_help_mentions_codec_and_its_default(tmp_path):
    result = run_cnnkit("convolve", "--help", cwd=tmp_path, env={"COLUMNS": "240"})
    assert result.returncode == 0, result.stderr
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stdout).split())
    assert "--codec" in text
    assert "Default by container: mp4v for .mp4" in text
    assert "MJPEG for .avi" in text and "VP8 for .webm" in text
    for name in CODECS:
        assert name in text, name


# ---------------------------------------------------------------------------
# signals and unwritable folders
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_video(tmp_path_factory) -> Path:
    """640×480, 300 frames: a sobel run of about 2 s."""
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    _write_video(path, frames=300, h=480, w=640, distinct=3)
    return path


def _wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize(
    "signum, status, word",
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_signal_mid_video_stops_the_pipeline_cleanly(big_video, tmp_path, signum, status, word):
    os.link(big_video, tmp_path / "big.mp4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "convolve", "big.mp4", "-k", "sobel", "-o", "out.mp4"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        started = _wait_for(lambda: any(p.name.endswith(".tmp.mp4") for p in tmp_path.iterdir()))
        assert started, "the run never opened its temporary output"
        time.sleep(0.3)  # frames flowing through every stage
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines() == [word], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.mp4"]  # no output, no temp file


def _file_size_limit(limit: int):
    """A preexec_fn: files of this process may not grow past ``limit`` bytes (a full disk)."""

    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("ext", [".mp4", ".avi", ".mkv", ".webm", ".npy"])
def test_a_disk_that_fills_up_is_one_error_and_no_file(tmp_path, ext) -> None:
    # OpenCV's video writer says nothing when a write fails: without a check the
    # run reported "wrote out.mp4 (...)" for a file cut short at the limit.
    _write_video(tmp_path / "v.mp4", frames=60, h=240, w=320)
    proc = subprocess.run(
        [sys.executable, "-m", "cnnkit", "convolve", "v.mp4", "-k", "sobel", "-o", f"out{ext}"],
        cwd=tmp_path, capture_output=True, text=True, preexec_fn=_file_size_limit(200_000),
    )  # fmt: skip
    line = _one_error_line(proc)
    assert f"out{ext}" in line and ("full" in line or "too large" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no output, no temp file


def test_an_output_folder_that_is_a_file_is_one_clean_error(clip, tmp_path) -> None:
    (tmp_path / "notadir").write_text("a file")
    result = run_cnnkit("convolve", "v.mp4", "-k", "sobel", "-o", "notadir/out.mp4", cwd=tmp_path)
    line = _one_error_line(result)
    assert "notadir/out.mp4" in line, line


def test_signal_while_a_circular_3d_kernel_reads_the_whole_video(big_video, tmp_path) -> None:
    # Circular padding over time needs the last frames first: the decode thread
    # reads the whole video before the first output frame, so the signal lands
    # while it is inside OpenCV's decoder (this crashed with "generator already
    # executing" and an abort, status 134).
    os.link(big_video, tmp_path / "big.mp4")
    args = ["convolve", "big.mp4", "-k", "box3d", "--padding-mode", "circular", "-o", "out.mp4"]
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert _wait_for(lambda: any(p.name.endswith(".tmp.mp4") for p in tmp_path.iterdir()))
        time.sleep(0.4)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.mp4"]


def test_a_write_error_while_frames_are_still_decoding_exits_cleanly(tmp_path) -> None:
    # 1080p float32 frames are 25 MB: the first write to out.npy passes the 20 MB
    # limit while the decode thread is busy with the next frames.
    _write_video(tmp_path / "hd.mp4", frames=40, h=1080, w=1920, distinct=2)
    proc = subprocess.run(
        [sys.executable, "-m", "cnnkit", "convolve", "hd.mp4", "-k", "sobel", "-o", "out.npy"],
        cwd=tmp_path, capture_output=True, text=True,
        preexec_fn=_file_size_limit(20_000_000),
    )  # fmt: skip
    line = _one_error_line(proc)
    assert "out.npy" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hd.mp4"]


def test_tiny_frames_are_refused_for_mjpeg_not_crashed(tmp_path) -> None:
    # FFmpeg's MJPEG encoder corrupts the heap on 4×4 frames (abort, status 134).
    _write_video(tmp_path / "t4.mp4", frames=3, h=4, w=4)
    line = _one_error_line(run_cnnkit("convolve", "t4.mp4", "-k", "sobel", "-o", "x.avi",
                                      cwd=tmp_path))  # fmt: skip
    assert "MJPEG" in line and "mp4v" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t4.mp4"]
    ok = run_cnnkit("convolve", "t4.mp4", "-k", "sobel", "-o", "x.mp4", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_codec_names_are_case_insensitive(clip, tmp_path) -> None:
    result = run_cnnkit("convolve", "v.mp4", "-k", "sobel", "-o", "o.avi", "--codec", "MJPG",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(tmp_path / "o.avi"))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    capture.release()
    assert fourcc == "MJPG"


def test_a_closed_stdout_ends_json_output_quietly(clip, tmp_path) -> None:
    # `cnnkit ... --json >&-`: Python's sys.stdout is None (this was a traceback).
    proc = subprocess.run(
        [sys.executable, "-m", "cnnkit", "convolve", "v.mp4", "-k", "sobel", "-o", "o.mp4",
         "--json", "-q"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "o.mp4").exists()


def test_a_video_that_leaves_the_disk_full_is_refused(clip, tmp_path, monkeypatch) -> None:
    # Every frame decodes, but the index after them may be cut (an AVI's last
    # 150 bytes): a disk found full after writing is reported, not trusted.
    import types

    from cnnkit.convolution import ConvolveOptions, convolve_file
    from cnnkit.errors import CnnkitError
    from cnnkit.io import video as video_io
    from cnnkit.kernels import parse_kernel

    real = os.statvfs

    def full(path):
        st = real(path)
        return types.SimpleNamespace(f_bfree=1, f_bavail=1, f_frsize=st.f_frsize)

    monkeypatch.setattr(video_io.os, "statvfs", full)
    with pytest.raises(CnnkitError, match="disk is full"):
        convolve_file(str(clip), ConvolveOptions(kernel=parse_kernel("sobel")),
                      output=str(tmp_path / "out.avi"))  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    monkeypatch.setattr(video_io.os, "statvfs", real)
    convolve_file(str(clip), ConvolveOptions(kernel=parse_kernel("sobel")),
                  output=str(tmp_path / "out.avi"))  # fmt: skip
    assert (tmp_path / "out.avi").exists()


@pytest.mark.parametrize("ext", [".avi", ".mkv", ".webm"])
def test_a_cut_file_whose_header_states_every_frame_is_refused(tmp_path, ext) -> None:
    # These containers write the frame count by seeking back into the header: a
    # file cut at 20 KB still states 60 frames, of which 7-19 decode.
    _write_video(tmp_path / "v.mp4", frames=60, h=96, w=128)
    proc = subprocess.run(
        [sys.executable, "-m", "cnnkit", "convolve", "v.mp4", "-k", "box", "-o", f"cut{ext}"],
        cwd=tmp_path, capture_output=True, text=True, preexec_fn=_file_size_limit(20_000),
    )  # fmt: skip
    line = _one_error_line(proc)
    assert f"cut{ext}" in line and "60 frames given" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
