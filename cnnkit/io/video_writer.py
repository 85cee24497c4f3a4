"""VideoWriter: frames to a video file, atomically, with the codec its extension takes."""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from pathlib import Path
from types import TracebackType

import numpy as np

from cnnkit.errors import CnnkitError, InputError
from cnnkit.io._opencv import cv2, silenced_stderr_fd
from cnnkit.io.atomic import atomic_output
from cnnkit.io.video import (
    _FOURCC_BY_EXTENSION,
    _MJPEG_MIN_WIDTH,
    CODECS,
    _supported,
    codecs_for,
    probe_video,
)

# Free space under which a file system counts as full after a video was written.
_FULL_BYTES = 64 * 1024


def _disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no space left for this user."""
    try:
        st = os.statvfs(path.parent)
        root = os.geteuid() == 0
    except (OSError, AttributeError):  # no statvfs or geteuid (Windows): cannot tell
        return False
    free = st.f_bfree if root else st.f_bavail  # root may write into the reserved blocks
    return free * st.f_frsize < _FULL_BYTES


class VideoWriter:
    """Write RGB (or BGR with ``rgb=False``) uint8 frames to a video file, atomically.

    Use as a context manager. The codec follows the extension (see
    ``_FOURCC_BY_EXTENSION``) unless ``codec`` names one of ``CODECS``.
    OpenCV's FFmpeg writer silently crops odd
    widths and heights to even ones (4:2:0 chroma needs pairs of pixels), so
    frames of an odd size are padded by one repeated edge row/column instead:
    no pixel is lost, and ``frame_size`` tells the size stored. Frames of
    another size than declared raise InputError. Nothing appears under
    ``path`` unless the block exits cleanly after at least one frame.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        is_color: bool = True,
        rgb: bool = True,
        codec: str | None = None,
    ) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _FOURCC_BY_EXTENSION:
            raise InputError(
                f"cannot write {self.path}: unknown video extension '{self.path.suffix}'",
                hint=f"use one of {_supported()}",
            )
        if codec is not None and codec.lower() not in CODECS:
            raise InputError(f"unknown codec '{codec}'", hint=f"use one of {', '.join(CODECS)}")
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"cannot write {self.path} at {fps} frames per second", hint="fps > 0")
        if width < 1 or height < 1:
            raise InputError(f"cannot write {width}×{height} frames to {self.path}")
        self.fps = float(fps)
        self.width, self.height = int(width), int(height)
        self.is_color = is_color
        self.rgb = rgb
        self.codec = codec.lower() if codec is not None else None
        self.fourcc = CODECS[self.codec] if self.codec else _FOURCC_BY_EXTENSION[ext]
        if self.fourcc == "MJPG" and width + width % 2 < _MJPEG_MIN_WIDTH:  # as stored
            # FFmpeg's MJPEG encoder corrupts the heap on frames this narrow
            # (measured: every even width 2-6 at some heights from 4 to 24
            # aborts the process; no width of 8-24 at any height did).
            raise InputError(
                f"cannot write {width}×{height} frames to {self.path} with MJPEG: OpenCV's "
                f"MJPEG encoder fails on frames under {_MJPEG_MIN_WIDTH} pixels wide",
                hint="write .mp4, or give --codec mp4v or ffv1",
            )
        # Stored size, rounded up to even (see the class docstring).
        self.frame_size = (self.width + self.width % 2, self.height + self.height % 2)
        self.frames_written = 0
        self._temp: Path | None = None
        self._atomic = None
        self._writer = None

    def __enter__(self) -> VideoWriter:
        self._atomic = atomic_output(self.path)
        temp = self._atomic.__enter__()
        self._temp = Path(temp)
        # WebM has no codec tags, so FFmpeg prints a note for any fourcc given
        # while writing the file correctly, as it does for a --codec whose tag the
        # container spells otherwise (XVID in MP4 is stored as mp4v); other
        # containers keep their messages.
        quiet = (
            silenced_stderr_fd()
            if self.codec is not None or self.path.suffix.lower() == ".webm"
            else nullcontext()
        )
        with quiet:
            writer = cv2.VideoWriter(
                str(temp),
                cv2.CAP_FFMPEG,
                cv2.VideoWriter_fourcc(*self.fourcc),
                self.fps,
                self.frame_size,
                self.is_color,
            )
        if not writer.isOpened():
            writer.release()
            if self.codec is None:
                hint = "write .mp4 or .avi instead"
            else:
                works = codecs_for(self.path.suffix.lower())
                hint = (
                    f"codecs this OpenCV writes to {self.path.suffix} files: {', '.join(works)}"
                    if works
                    else "write .mp4 or .avi instead"
                )
            name = self.codec or self.fourcc
            exc = CnnkitError(
                f"OpenCV cannot write {self.path.suffix} videos with codec {name} here", hint=hint
            )
            self._atomic.__exit__(CnnkitError, exc, None)  # removes the temp file
            self._atomic = None
            raise exc
        self._writer = writer
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: H×W×3 (or H×W for gray, either kind of writer) uint8."""
        if self._writer is None:
            raise RuntimeError("VideoWriter.write() called outside its with-block")
        frame = np.ascontiguousarray(frame)  # OpenCV refuses views with negative strides
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        expected = (self.height, self.width)
        if frame.shape[:2] != expected or frame.ndim not in (2, 3) or frame.dtype != np.uint8:
            raise InputError(
                f"frame {self.frames_written} is {'×'.join(map(str, frame.shape))} {frame.dtype}, "
                f"but {self.path} takes {self.height}×{self.width}{'×3' if self.is_color else ''} "
                "uint8 frames"
            )
        if frame.ndim == 3 and frame.shape[2] != 3:
            raise InputError(f"frame {self.frames_written} has {frame.shape[2]} channels, need 3")
        frame = self._convert(frame)
        pad_w, pad_h = self.frame_size[0] - self.width, self.frame_size[1] - self.height
        if pad_w or pad_h:
            pad = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (frame.ndim - 2)
            frame = np.pad(frame, pad, mode="edge")
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def _check_complete(self) -> None:
        """Refuse a file that does not hold every frame written (a full disk, a size limit).

        OpenCV's writer reports no failed write: on a full disk it leaves a file
        cut short (an MP4 without its index cannot even be opened) and says
        nothing. An AVI, MKV or WebM cut short still states the full count (it
        is written by seeking back into the header), so there the count is
        trusted only when the last frame can be decoded too (probe_video: one
        seek, decoding from the keyframe before it); every container and codec
        written here states the exact count (checked for 1 to 100 frames at
        three frame rates).
        """
        # An MP4 or MOV cut anywhere before its index does not open at all: its
        # stated count is enough, and the seek (50 ms on 720p) is spared.
        seek = self.path.suffix.lower() not in (".mp4", ".mov")
        try:
            stated = probe_video(self._temp, check=seek).frames
        except CnnkitError:
            stated = -1
        if stated == self.frames_written and _disk_full(self._temp):
            # Every frame decodes, but a cut in the index or tags after them
            # would not show: a disk left full by this write most likely cut it.
            raise CnnkitError(
                f"cannot write {self.path}: the disk is full, so the end of the video "
                "(its index) may be missing",
                hint="free some space or write elsewhere",
            )
        if stated != self.frames_written:
            raise CnnkitError(
                f"cannot write {self.path}: the video written holds "
                f"{'no readable frames' if stated < 0 else f'{stated} frames'}, not the "
                f"{self.frames_written} frames given (the disk may be full)",
                hint="free some space or write elsewhere",
            )

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        if self.is_color:
            if frame.ndim == 2:
                return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if self.rgb else frame
        if frame.ndim == 3:
            code = cv2.COLOR_RGB2GRAY if self.rgb else cv2.COLOR_BGR2GRAY
            return cv2.cvtColor(frame, code)
        return frame

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        writer, atomic = self._writer, self._atomic
        self._writer = self._atomic = None
        if writer is not None:
            writer.release()
        if exc_type is None and self.frames_written == 0:
            exc = InputError(f"no frames to write to {self.path}", hint="the video would be empty")
            atomic.__exit__(InputError, exc, None)
            raise exc
        if exc_type is None:
            try:
                self._check_complete()
            except CnnkitError as error:
                atomic.__exit__(CnnkitError, error, None)
                raise
        # atomic_output renames on a clean exit and removes the temp file otherwise.
        atomic.__exit__(exc_type, exc, tb)
        return False
