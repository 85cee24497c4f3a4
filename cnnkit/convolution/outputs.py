"""Where ``cnnkit convolve`` writes: output kinds and names, and .npy files (streamed)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cnnkit.errors import InputError
from cnnkit.io._opencv import cv2
from cnnkit.io.image import (
    IMAGE_EXTENSIONS,
    WRITABLE_IMAGE_EXTENSIONS,
)
from cnnkit.io.video import VIDEO_EXTENSIONS
from cnnkit.kernels import Kernel

# ---------------------------------------------------------------------------
# inputs and outputs
# ---------------------------------------------------------------------------


def _kind_of_output(output: str, input_kind: str) -> str:
    """What ``output`` holds by its extension: stdout, npy, image or video.

    An output of the other medium than the ``input_kind`` (a video result to
    an image file, or to stdout's PNG) is refused with the extensions that fit.
    """
    ext = "-" if output == "-" else Path(output).suffix.lower()
    if ext == ".npy":
        return "npy"
    if input_kind == "video" and (ext == "-" or ext in IMAGE_EXTENSIONS):
        raise InputError(
            f"cannot write a video result to {'stdout' if output == '-' else output}",
            hint=f"use a video extension ({', '.join(sorted(VIDEO_EXTENSIONS))}) or .npy",
        )
    if ext == "-":
        return "stdout"
    if ext in VIDEO_EXTENSIONS:
        if input_kind == "image":
            raise InputError(
                f"cannot write an image result to the video file {output}",
                hint=f"use an image extension ({', '.join(sorted(WRITABLE_IMAGE_EXTENSIONS))}) "
                "or .npy",
            )
        return "video"
    if ext in IMAGE_EXTENSIONS - WRITABLE_IMAGE_EXTENSIONS:
        raise InputError(
            f"cannot write {output}: {ext} images are read but not written (OpenCV's "
            "encoder reduces colours to a dithered palette and refuses gray images)",
            hint=f"write {Path(output).with_suffix('.png')} instead",
        )
    if ext in IMAGE_EXTENSIONS:
        return "image"
    known = ", ".join(sorted(WRITABLE_IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | {".npy"}))
    raise InputError(
        f"unsupported output extension '{ext or Path(output).name}' in {output}",
        hint=f"use one of {known}, or '-' for PNG on stdout",
    )


def default_output(input: str, kernel: Kernel) -> str:
    """``<input stem>-<kernel slug><input ext>`` in the working directory.

    PNG for stdin, and for the formats read but not written (GIF).
    """
    if input == "-":
        return f"stdin-{kernel.slug}.png"
    path = Path(input)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS - WRITABLE_IMAGE_EXTENSIONS:
        ext = ".png"
    return f"{path.stem}-{kernel.slug}{ext}"


def _same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (``x.png``, ``./x.png``, links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # b does not exist yet
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _check_not_input(input: str, target: str, out_kind: str | None, overwrite: bool) -> None:
    if overwrite or input == "-" or out_kind in (None, "stdout"):
        return
    if _same_file(input, target):
        raise InputError(
            f"the output {target} is the input file {input}: it would be overwritten",
            hint="give another -o, or add --overwrite-input to replace the input",
        )


def _input_kind(input: str) -> str:
    if input == "-":
        return "image"
    path = Path(input)
    if not path.exists():
        raise InputError(f"no such file: {input}", hint="check the path and its spelling")
    if path.is_dir():
        raise InputError(f"{input} is a folder", hint="give one image or video file")
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    return "image"  # read_image names the file if it is not an image after all


def _drop_alpha(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 2:
        return image[:, :, 0]
    return image


def _to_gray(image: np.ndarray, rgb: bool) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        image = image.astype(np.float32)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY)


def _save_npy(path: str, array: np.ndarray) -> None:
    from cnnkit.io.atomic import atomic_output

    # A float32 result is saved as it is: np.save writes a strided view (the
    # crop of a padded result) in chunks, where a contiguous copy first would
    # need as much memory again as the convolution itself.
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    with atomic_output(path) as temp:
        np.save(temp, array)


# A .npy v1.0 header is magic (6 bytes), version (2), its length (2), then a
# Python dict padded with spaces and ended by a newline. Reserving a fixed 128
# bytes lets the frame count be filled in after the last frame.
_NPY_HEADER_BYTES = 128


class _NpyFrames:
    """Float32 frames appended to an open .npy file; ``count`` so far, each of ``shape``."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.count = 0
        self.shape: tuple[int, ...] | None = None

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.float32)
        if self.shape is None:
            self.shape = frame.shape
        elif frame.shape != self.shape:
            raise InputError(f"frame {self.count} is {frame.shape}, the first was {self.shape}")
        self.file.write(memoryview(frame).cast("B"))
        self.count += 1

    def header(self) -> bytes:
        shape = (self.count, *(self.shape or ()))
        text = repr(
            {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": shape}
        ).encode("latin1")
        room = _NPY_HEADER_BYTES - 10
        if len(text) + 1 > room:  # only a frame shape of absurd rank could get here
            raise InputError(f"cannot write a .npy result of shape {shape}")
        body = text.ljust(room - 1) + b"\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + body


@contextmanager
def _npy_frame_writer(path: str) -> Iterator[_NpyFrames]:
    """Stream T×H×W[×C] float32 frames into a .npy file, atomically; T is known at the end."""
    from cnnkit.io.atomic import atomic_output

    with atomic_output(path) as temp, open(temp, "wb") as file:
        file.write(bytes(_NPY_HEADER_BYTES))  # the placeholder the header replaces
        frames = _NpyFrames(file)
        yield frames
        if frames.count == 0:
            raise InputError(f"no frames to write to {path}", hint="the video would be empty")
        file.seek(0)
        file.write(frames.header())
