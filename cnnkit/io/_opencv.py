"""OpenCV, imported once with its own logging silenced and its decode limit set.

OpenCV logs warnings such as "Unsupported depth image for selected encoder",
libtiff notes, and errors such as "[ERROR:0@3.4] ... imdecode_(''): can't read
header" for a damaged GIF, straight to stderr. cnnkit reports every problem
itself (as one ``error:`` line, or through cnnkit.console), so OpenCV's logging
is silenced altogether: its lines would only come before cnnkit's own.

OpenCV's decoders refuse images over OPENCV_IO_MAX_IMAGE_PIXELS, which OpenCV
reads once, at import: it is set to cnnkit's own pixel limit first (see
cnnkit.io.headers), the backstop for formats whose header cnnkit does not read.

FFmpeg, inside OpenCV, logs its own errors ("moov atom not found" for a
truncated MP4) beside cnnkit's clean "not a readable video". OpenCV reads
OPENCV_FFMPEG_LOGLEVEL when it first opens a video and hands it to FFmpeg;
-8 is AV_LOG_QUIET. setdefault: a user who sets it keeps FFmpeg's messages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cnnkit.io.headers import set_opencv_pixel_limit

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
set_opencv_pixel_limit()

import cv2  # noqa: E402  (after the variables above, which OpenCV reads once)

_logging = getattr(getattr(cv2, "utils", None), "logging", None)
if _logging is not None:  # cv2.utils.logging exists in every OpenCV 4.x/5.x wheel
    _logging.setLogLevel(_logging.LOG_LEVEL_SILENT)


@contextmanager
def silenced_stderr_fd() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration of the block.

    FFmpeg's writer prints notes such as "tag 'VP80' is not supported with
    format 'webm'" with a bare ``fprintf(stderr)`` that no log level reaches,
    even when the file is written correctly. Keep the block short: anything
    else written to stderr meanwhile is lost too.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreter): nothing to hide
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
