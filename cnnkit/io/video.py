"""Reading and writing videos with OpenCV's FFmpeg backend.

Frames are H×W×3 uint8 in RGB order (BGR with ``rgb=False``). Every capture is
released in a ``finally``; a file OpenCV cannot open, or one with no decodable
frame, raises ReadError naming it. Written videos go through a temporary file
in the destination folder and are renamed only when the writer closes cleanly.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cnnkit.errors import InputError, ReadError
from cnnkit.io._opencv import cv2, silenced_stderr_fd
from cnnkit.io.headers import max_image_pixels, too_many_pixels

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})

# The codec written for each container unless --codec says otherwise. Checked
# against opencv-python 5.0's bundled FFmpeg: each writes and reads back with
# the right frame count and fps. H.264 ('avc1') is not in the wheels (no
# encoder), so MP4/MOV/MKV get MPEG-4 Part 2 (mp4v: the fastest encoder there,
# 3.4 ms a 720p frame against MJPEG's 4.9; see benchmarks/bench_video.py),
# AVI gets Motion JPEG (every player of AVI files reads it) and WebM, which
# only takes VP8/VP9/AV1, gets VP8.
_FOURCC_BY_EXTENSION = {
    ".mp4": "mp4v",
    ".mov": "mp4v",
    ".mkv": "mp4v",
    ".avi": "MJPG",
    ".webm": "VP80",
}


# The narrowest frame FFmpeg's MJPEG encoder is given (see VideoWriter.__init__).
_MJPEG_MIN_WIDTH = 8

# --codec: the name a user gives, and the FourCC OpenCV's FFmpeg writer is asked for.
CODECS = {
    "mp4v": "mp4v",
    "avc1": "avc1",
    "mjpg": "MJPG",
    "xvid": "XVID",
    "vp80": "VP80",
    "vp90": "VP90",
    "ffv1": "FFV1",
}


def codecs_for(extension: str) -> list[str]:
    """The --codec names this OpenCV can write into a file of ``extension`` (tried, not assumed).

    Each is tried on a 2-frame 16×16 video in a temporary folder: a few
    milliseconds each, spent only when a codec was refused.
    """
    import tempfile

    works = []
    with tempfile.TemporaryDirectory(prefix="cnnkit-codec-") as tmp, silenced_stderr_fd():
        for name, fourcc in CODECS.items():
            path = str(Path(tmp) / f"probe-{name}{extension}")
            writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 25.0,
                                     (16, 16), True)  # fmt: skip
            if writer.isOpened():
                for _ in range(2):
                    writer.write(np.zeros((16, 16, 3), np.uint8))
                writer.release()
                capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
                count = 0
                while capture.grab():
                    count += 1
                capture.release()
                if count == 2:
                    works.append(name)
            else:
                writer.release()
    return works


def is_video_path(path: str | Path) -> bool:
    """Whether ``path`` has a video extension cnnkit reads (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _supported() -> str:
    return ", ".join(sorted(VIDEO_EXTENSIONS))


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. ``duration_s`` is None when the file states no frame rate."""

    path: str
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float | None
    codec: str


def _open_capture(path: str | Path, threads: int = 0) -> cv2.VideoCapture:
    """An opened capture of ``path``; ``threads``: FFmpeg's decoding threads (0: its choice)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"no such file: {path}", hint="check the path and its spelling") from None
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path} is a folder, not a video", hint="give a video file")
    if not stat.S_ISREG(mode):
        # FFmpeg opens by name, and would wait forever on a FIFO or read a device
        # (a symlink to /dev/zero) without end: only regular files are opened.
        raise ReadError(
            f"{path} is not a regular file (a FIFO, device or socket)",
            hint="only regular files are read as videos",
        )
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise ReadError(
            f"{path} is not a readable video",
            hint=f"supported formats: {_supported()}; the file may be damaged or empty",
        )
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > max_image_pixels():  # each frame is decoded whole, like an image
        capture.release()
        raise too_many_pixels(f"{path} (video frames)", width, height)
    return capture


def _no_frames(path: str | Path) -> ReadError:
    return ReadError(f"{path} has no readable frames", hint="the video may be damaged or empty")


def _fourcc_text(code: float) -> str:
    value = int(code)
    if value <= 0:
        return ""
    return value.to_bytes(4, "little").decode("ascii", errors="replace").strip("\x00 ")


def _info(path: str | Path, capture: cv2.VideoCapture, frames: int) -> VideoInfo:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    if not math.isfinite(fps) or fps <= 0:
        fps = 0.0
    return VideoInfo(
        path=str(path),
        frames=frames,
        fps=fps,
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        duration_s=frames / fps if fps > 0 else None,
        codec=_fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)),
    )


def probe_video(path: str | Path, exact: bool = False, check: bool = True) -> VideoInfo:
    """Frame count, frame rate, size and codec of a video, without decoding it all.

    Containers can state any frame count: a truncated file keeps the header of
    the whole one, and some headers count fewer frames than the file holds. The
    stated count is trusted only when its last frame can be grabbed and nothing
    follows it: one seek, which decodes from a keyframe before that frame
    (measured: +5 ms on a 640×480, 1000-frame MP4, where counting takes 190 ms;
    nothing measurable at 320×240). When that check fails, when the container
    states no count (0, or a negative value for streams without an index) or
    when ``exact`` is set, the frames are counted by grabbing them all, which
    decodes the whole file. ``check=False`` skips the seek and returns the
    stated count as it is, for callers that count the frames they read anyway
    and want the count only to show progress (the seek decodes from the last
    keyframe: all of a clip with one, 0.15 s for 132 720p H.264 frames).
    """
    capture = _open_capture(path)
    try:
        if not capture.grab():
            raise _no_frames(path)
        stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        info = _info(path, capture, stated)
        if not exact and stated > 0 and (not check or _ends_at(capture, stated)):
            return info
    finally:
        capture.release()
    return _with_frames(info, _count_frames(path))


def _ends_at(capture: cv2.VideoCapture, frames: int) -> bool:
    """Whether frame ``frames - 1`` is the last one ``capture`` (just past frame 0) can grab."""
    if frames > 1:
        # OpenCV clamps the seek to the stated count and reports where it landed:
        # a truncated file lands short of the target, or cannot grab there.
        if not capture.set(cv2.CAP_PROP_POS_FRAMES, frames - 1):
            return False
        if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) != frames - 1 or not capture.grab():
            return False
    return not capture.grab()


def _count_frames(path: str | Path) -> int:
    """The frames of ``path`` that can be grabbed (decoded), counted one by one."""
    capture = _open_capture(path)
    try:
        frames = 0
        while capture.grab():
            frames += 1
    finally:
        capture.release()
    if frames == 0:
        raise _no_frames(path)
    return frames


def _with_frames(info: VideoInfo, frames: int) -> VideoInfo:
    duration = frames / info.fps if info.fps > 0 else None
    return replace(info, frames=frames, duration_s=duration)


def _to_rgb(frame: np.ndarray, rgb: bool) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if rgb else frame


def _frames(
    capture: cv2.VideoCapture, path: str | Path, rgb: bool, every: int = 1
) -> Iterator[np.ndarray]:
    try:
        ok, frame = capture.read()
        if not ok:
            raise _no_frames(path)
        while ok:
            yield _to_rgb(frame, rgb)
            for _ in range(every - 1):  # grab() decodes without converting to BGR
                if not capture.grab():
                    return
            ok, frame = capture.read()
    finally:
        capture.release()


def iter_frames(
    path: str | Path, rgb: bool = True, every: int = 1, threads: int = 0
) -> Iterator[np.ndarray]:
    """Yield the frames of a video one by one, each H×W×3 uint8 (RGB unless ``rgb=False``).

    ``every``: only frames 0, every, 2·every, ... (the others are decoded, as
    they must be, but not converted). The file is opened now (so a missing or
    unreadable file fails at the call) and released when the iteration ends
    or the generator is closed. ``threads``: FFmpeg's decoding threads (0: as
    many as cores; see inference.decoder_threads).
    """
    return _frames(_open_capture(path, threads), path, rgb, max(1, every))


def read_video(path: str | Path, rgb: bool = True) -> tuple[np.ndarray, VideoInfo]:
    """Decode a whole video: (T×H×W×3 uint8 frames, VideoInfo with T as the frame count)."""
    capture = _open_capture(path)
    info = _info(path, capture, 0)  # before _frames releases the capture
    frames = np.stack(list(_frames(capture, path, rgb)))
    count, height, width = frames.shape[:3]
    # Decoded frames are the truth: containers can state another count or size.
    return frames, replace(_with_frames(info, count), width=width, height=height)


def _seek(capture: cv2.VideoCapture, start: int) -> None:
    """Move ``capture`` so that the next read returns frame ``start``.

    FFmpeg's seek lands on the keyframe before the target and decodes forward,
    which is exact for the codecs written here, but some files report another
    position afterwards; then the frames are skipped one by one from the start.
    """
    if start == 0:
        return
    if capture.set(cv2.CAP_PROP_POS_FRAMES, start) and int(
        capture.get(cv2.CAP_PROP_POS_FRAMES)
    ) == int(start):
        return
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    for _ in range(start):
        if not capture.grab():
            return


def read_video_clip(
    path: str | Path, start: int, num_frames: int, step: int = 1, rgb: bool = True
) -> np.ndarray:
    """Read ``num_frames`` frames, ``step`` apart, from frame ``start``: T×H×W×3 uint8.

    When the video ends before the clip is full, the last frame read is
    repeated to fill it (so clips always have ``num_frames`` frames, as the
    models expect). A ``start`` past the last frame is an InputError.
    """
    if start < 0 or num_frames < 1 or step < 1:
        raise InputError(
            f"invalid clip: start={start}, frames={num_frames}, step={step}",
            hint="start must be >= 0, frames and step >= 1",
        )
    capture = _open_capture(path)
    try:
        _seek(capture, start)
        clip: list[np.ndarray] = []
        ok, frame = capture.read()
        while ok:
            clip.append(_to_rgb(frame, rgb))
            if len(clip) == num_frames:
                break
            # grab() skips a frame without converting it to BGR.
            for _ in range(step - 1):
                if not capture.grab():
                    break
            ok, frame = capture.read()
    finally:
        capture.release()
    if not clip:
        frames = probe_video(path).frames
        raise InputError(
            f"clip start frame {start} is past the end of {path} ({frames} frames)",
            hint=f"start below {frames}",
        )
    clip.extend([clip[-1]] * (num_frames - len(clip)))
    return np.stack(clip)
