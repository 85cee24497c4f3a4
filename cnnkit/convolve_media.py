"""``cnnkit convolve`` on files: read an image or video, run ops.convolve, write the result.

Images are convolved in one go. Videos are streamed: a 2D kernel filters
frame by frame, a 3D kernel slides a window of frames over time
(ops.convolve_frames), so only the frames in use are in memory; ``.npy``
output is streamed to disk too, its header written last. A video's frame
count is what was read and written, never the container's claim.

Output by extension: ``.npy`` stores the raw float32 result (negative values
kept; H×W, H×W×C in RGB order, or T×H×W[×C]); image and video formats store
8-bit pixels according to ``scale`` (clip, abs, minmax or auto; see
:mod:`cnnkit.convolve_scale`).

Float images (32-bit TIFFs) hold 0-1 by convention: a float image with values
outside 0-1 (or NaN) is refused for 8-bit outputs, as every other command
refuses it; ``.npy`` keeps any values.

Alpha channels are dropped before filtering: a filtered alpha has no meaning.
GIFs are read (the first frame) but written as PNG. The output may not be the
input file unless ``overwrite_input`` is set. This module never imports torch.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cnnkit import console, ops
from cnnkit.convolve_scale import Stats, auto_scale, result_to_pixels, value_range
from cnnkit.errors import InputError, KernelError
from cnnkit.io._opencv import cv2
from cnnkit.io.image import (
    IMAGE_EXTENSIONS,
    WRITABLE_IMAGE_EXTENSIONS,
    check_float_pixels,
    encode_png,
    read_image,
    read_image_bytes,
)
from cnnkit.io.pipeline import AHEAD_BYTES, WriteBehind, compute_in_order, frames_ahead
from cnnkit.io.video import VIDEO_EXTENSIONS, VideoWriter, iter_frames, probe_video
from cnnkit.kernels import Kernel

# --stride, --padding and --dilation per axis: far above any image side or video
# length, and low enough that the sizes they imply are numbers a message can show.
MAX_AXIS_VALUE = 1_000_000


def parse_axis_values(text: str, what: str, minimum: int) -> int | tuple[int, ...]:
    """'2' -> 2, '2,1' -> (2, 1); refuses non-integers, values below ``minimum`` and huge ones."""
    parts = [p.strip() for p in str(text).split(",")]
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise InputError(
                f"{what} '{text}' is not a whole number or a comma-separated list of them",
                hint=f"e.g. --{what} 2 or --{what} 2,1",
            ) from None
        if value < minimum:
            raise InputError(
                f"{what} must be >= {minimum}, got {value}", hint=f"use --{what} {max(minimum, 1)}"
            )
        if value > MAX_AXIS_VALUE:
            raise InputError(
                f"{what} {value} is too large (at most {MAX_AXIS_VALUE:,})",
                hint=f"use a smaller --{what}",
            )
        values.append(value)
    return values[0] if len(values) == 1 else tuple(values)


def parse_padding(text: str) -> str | int | tuple[int, ...]:
    """'same' | 'valid' | 'N' | 'N,M' (per axis)."""
    word = str(text).strip().lower()
    if word in ("same", "valid"):
        return word
    try:
        return parse_axis_values(word, "padding", 0)
    except InputError as exc:
        if "whole number" in exc.message:
            raise InputError(
                f"padding '{text}' is not same, valid, N or N,M",
                hint="e.g. --padding same, --padding 0, --padding 2,1",
            ) from None
        raise


@dataclass
class ConvolveReport:
    """What a convolve run did: the --json document (``to_dict``) and the explanation."""

    input: str
    output: str | None
    kernel: Kernel
    explanation: ops.Explanation
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str
    padding_mode: str
    scale: str
    gray: bool
    flip: bool
    stats: Stats = field(default_factory=Stats)
    seconds: float = 0.0
    fps: float | None = None
    is_video: bool = False
    # H×W of the frames in a written video file, which can exceed the result's
    # own size by one row or column (see VideoWriter); None for other outputs.
    stored_size: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        doc = {
            "input": self.input,
            "output": self.output,
            "kernel": self.kernel.name,
            "kernel_shape": list(self.kernel.shape),
            "stride": list(self.stride),
            "padding": self.padding,
            "padding_pixels": [[a.pad_before, a.pad_after] for a in self.explanation.axes],
            "padding_mode": self.padding_mode,
            "dilation": list(self.dilation),
            "flip": self.flip,
            "gray": self.gray,
            "scale": self.scale,
            "input_shape": list(self.explanation.input_shape),
            "output_shape": list(self.explanation.output_shape),
            "min": self.stats.min if self.stats.count else None,
            "max": self.stats.max if self.stats.count else None,
            "mean": self.stats.mean if self.stats.count else None,
            "seconds": round(self.seconds, 6),
        }
        if self.fps is not None:
            doc["fps"] = self.fps
        if self.stored_size is not None:
            doc["stored_size"] = list(self.stored_size)
        return doc


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


# ---------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvolveOptions:
    """Everything --kernel and friends resolved; see ops.convolve for the meanings."""

    kernel: Kernel
    stride: int | tuple[int, ...] = 1
    padding: str | int | tuple[int, ...] = "same"
    padding_mode: str = "reflect"
    dilation: int | tuple[int, ...] = 1
    gray: bool = False
    flip: bool = False
    scale: str = "auto"

    def per_axis(self, value: int | tuple[int, ...]) -> tuple[int, ...]:
        return (value,) * self.kernel.ndim if isinstance(value, int) else tuple(value)


def convolve_file(
    input: str,
    options: ConvolveOptions,
    output: str | None = None,
    write: bool = True,
    stdin: bytes | bytearray | None = None,
    want_stats: bool = True,
    overwrite_input: bool = False,
    codec: str | None = None,
) -> ConvolveReport:
    """Convolve an image or video file (or stdin image bytes) and write the result.

    ``output`` None means the default name; ``write=False`` only explains (the
    input is read for its shape, nothing is computed or written). Without
    ``want_stats`` the min/max/mean of an image or a video written as pixels
    are not computed (a few ms an image, a pass over each frame of a video).
    An output that is the input file is refused unless ``overwrite_input``
    (the input is then read whole, or streamed from the old file, before the
    result replaces it). ``codec`` (a name of ``cnnkit.io.video.CODECS``)
    chooses a video output's codec instead of its container's default.
    """
    start = time.perf_counter()
    kernel = options.kernel.flipped() if options.flip else options.kernel
    kind = _input_kind(input)
    if kernel.ndim == 3 and kind == "image":
        raise KernelError(
            f"'{options.kernel.name}' is a 3D kernel (time×height×width) and {input} is an image",
            hint="use a 2D kernel on images, or give a video",
        )
    target = output if output is not None else default_output(input, options.kernel)
    out_kind = _kind_of_output(target, kind) if write else None
    _check_not_input(input, target, out_kind, overwrite_input)
    if codec is not None and out_kind not in (None, "video"):
        raise InputError(
            f"--codec {codec} applies to video outputs, not to {target}",
            hint="write a video (.mp4, .avi, .mkv, .mov, .webm), or leave --codec out",
        )
    scale = auto_scale(kernel) if options.scale == "auto" else options.scale
    # BGR order is kept end to end for 8-bit outputs: OpenCV reads and writes it,
    # and per-channel filtering does not care. Only .npy wants RGB.
    rgb = out_kind == "npy"
    stored_size = None
    if kind == "image":
        explanation, stats, fps = _convolve_image(
            input, kernel, options, target, out_kind, scale, rgb, stdin, want_stats
        )
    else:
        explanation, stats, fps, stored_size = _convolve_video(
            input, kernel, options, target, out_kind, scale, rgb, codec, want_stats
        )
    report = ConvolveReport(
        input=input,
        output=target if write else None,
        kernel=kernel,
        explanation=explanation,
        stride=options.per_axis(options.stride),
        dilation=options.per_axis(options.dilation),
        padding=_padding_text(options.padding),
        padding_mode=options.padding_mode,
        scale=scale,
        gray=options.gray,
        flip=options.flip,
        stats=stats,
        fps=fps,
        is_video=kind == "video",
        stored_size=stored_size,
    )
    report.seconds = time.perf_counter() - start
    return report


def _padding_text(padding: str | int | tuple[int, ...]) -> str:
    if isinstance(padding, tuple):
        return ",".join(map(str, padding))
    return str(padding)


def _explain(shape: Sequence[int], kernel: Kernel, options: ConvolveOptions) -> ops.Explanation:
    return ops.explain(
        shape, kernel, options.stride, options.padding, options.padding_mode, options.dilation
    )


def _convolve_image(
    input: str,
    kernel: Kernel,
    options: ConvolveOptions,
    target: str,
    out_kind: str | None,
    scale: str,
    rgb: bool,
    stdin: bytes | bytearray | None,
    want_stats: bool,
) -> tuple[ops.Explanation, Stats, None]:
    if input == "-":
        image = read_image_bytes(stdin if stdin is not None else b"", "-", rgb=rgb)
    else:
        image = read_image(input, rgb=rgb)
    image = _drop_alpha(image)
    if options.gray:
        image = _to_gray(image, rgb)
    explanation = _explain(image.shape, kernel, options)
    stats = Stats()
    if out_kind is None:
        return explanation, stats, None
    if out_kind != "npy":
        # 8-bit outputs read floats as 0-1, the rule of every command; .npy keeps any values.
        check_float_pixels(image, "stdin" if input == "-" else input)
    in_max = value_range(image.dtype)
    result = ops.convolve(
        image, kernel, options.stride, options.padding, options.padding_mode, options.dilation
    )
    del image  # only its value range is needed from here on: free it before the 8-bit copy
    if want_stats or out_kind == "npy":
        stats.add(result)
    if out_kind == "npy":
        _save_npy(target, result)
        return explanation, stats, None
    pixels = result_to_pixels(result, scale, in_max)
    del result
    if out_kind == "stdout":
        sys.stdout.buffer.write(encode_png(pixels, rgb=rgb))
        sys.stdout.flush()
    else:
        from cnnkit.io.image import write_image

        write_image(target, pixels, rgb=rgb)
    return explanation, stats, None


def _frames(input: str, rgb: bool, gray: bool) -> Iterator[np.ndarray]:
    """The video's frames as convolve filters them; closing this closes the capture."""
    frames = iter_frames(input, rgb=rgb)
    try:
        for frame in frames:
            yield _to_gray(frame, rgb) if gray else frame
    finally:
        frames.close()


def _video_explanation(
    frames: int, frame_shape: tuple[int, ...], kernel: Kernel, options: ConvolveOptions
) -> ops.Explanation:
    """The explanation for ``frames`` frames of ``frame_shape`` (H×W or H×W×C)."""
    shape = (frames, *frame_shape)
    if kernel.ndim == 3:
        return _explain(shape, kernel, options)
    frame_expl = _explain(frame_shape, kernel, options)
    return ops.Explanation(
        kernel, shape, (frames, *frame_expl.output_shape), options.padding_mode, frame_expl.axes
    )


def _convolve_video(
    input: str,
    kernel: Kernel,
    options: ConvolveOptions,
    target: str,
    out_kind: str | None,
    scale: str,
    rgb: bool,
    codec: str | None,
    want_stats: bool,
) -> tuple[ops.Explanation, Stats, float, tuple[int, int] | None]:
    """Explanation, stats, frame rate and the stored H×W of a written video file (else None)."""
    # Container headers can state any frame count (a truncated file keeps the
    # original's). A 3D kernel's output length and its padding at the end need
    # the true count up front, and --explain alone reports it: both count the
    # frames by decoding them. A 2D run counts the frames it reads instead (the
    # stated count only sizes the progress bar, so it is not even checked).
    info = probe_video(input, exact=kernel.ndim == 3 or out_kind is None, check=False)
    channels = () if options.gray else (3,)
    frame_shape = (info.height, info.width, *channels)
    explanation = _video_explanation(info.frames, frame_shape, kernel, options)
    stats = Stats()
    if out_kind is None:
        return explanation, stats, info.fps, None
    # Refused before any writer opens (FFmpeg would allocate frames of the padded size).
    kernel.check_float32_range(255.0, "8-bit input")  # decoded frames are uint8
    ops.check_convolution_memory(
        frame_shape,
        np.uint8,
        kernel,
        explanation.axes,
        options.padding_mode,
        num_frames=info.frames,
    )
    bounds = kernel.value_bounds(0.0, 255.0) if scale == "minmax" else None
    finish = _FrameFinisher(out_kind == "npy", scale, bounds, want_stats or out_kind == "npy")
    frames = _frames(input, rgb, options.gray)
    if kernel.ndim == 2:
        gh, gw = explanation.axes
        work: Iterator = frames
        compute: Callable = partial(finish.frame, kernel, gh, gw, options.padding_mode)
    else:
        work = ops.frame_tasks(frames, info.frames, kernel, explanation.axes, options.padding_mode)
        compute = finish.task
    # decode (a thread) -> compute (a pool, in frame order) -> encode (a thread):
    # see cnnkit.io.pipeline. Memory holds a fixed number of frames at any length.
    # Each frame in flight holds its decoded frame and its result (float32 for .npy):
    # together within the pipeline's AHEAD_BYTES.
    frame_bytes = info.width * info.height * (1 if options.gray else 3)
    result_bytes = math.prod(explanation.output_shape[1:]) * (4 if out_kind == "npy" else 1)
    item_bytes = frame_bytes + result_bytes
    chunk = max(1, min(8, 2**20 // max(1, item_bytes)))  # small frames: fewer hand-overs
    ahead = max(frames_ahead(item_bytes), 2 * chunk)
    computed = compute_in_order(compute, work, ahead=ahead, chunk=chunk)
    try:
        results = console.track(computed, total=info.frames, description="convolve")
        if out_kind == "npy":
            depth = _write_depth(result_bytes)
            with _npy_frame_writer(target) as npy, WriteBehind(npy.write, depth) as sink:
                for parts, r in results:
                    stats.add_parts(*parts)  # .npy outputs always have their stats
                    sink.put(r)
            written, stored_size = npy.count, None
        else:
            written, stored_size = _write_video_frames(
                input,
                target,
                results,
                stats,
                info.fps,
                explanation,
                rgb,
                codec,
                _write_depth(result_bytes),
            )
    finally:
        computed.close()  # stops the decode and compute threads now, whatever happened
    if kernel.ndim == 2:  # one output frame per frame read: the count is now known
        explanation = _video_explanation(written, frame_shape, kernel, options)
    return explanation, stats, info.fps, stored_size


# A frame's (min, max, sum, count), see Stats.parts; None when no stats are wanted.
_Parts = tuple[float, float, float, int] | None


class _FrameFinisher:
    """The compute stage's work on one frame: convolve, the frame's stats, its output form.

    Runs on the pipeline's compute threads; returns (stats parts, frame) with
    the float32 result for .npy, or its 8-bit pixels per ``scale``. Where
    ops.conv2d.bands_apply (stride 1, dilation 1, 'same' padding, kernels
    filter2D computes directly) a 2D frame is computed and converted a band
    of rows at a time (correlate_bands): the same bits, each pass over memory
    still in cache. A frame's sum is then the sum of its bands' float64 sums.
    """

    def __init__(
        self, raw: bool, scale: str, bounds: tuple[float, float] | None, stats: bool
    ) -> None:
        self.raw, self.scale, self.bounds, self.stats = raw, scale, bounds, stats

    def frame(
        self, kernel: Kernel, gh: ops.AxisGeometry, gw: ops.AxisGeometry, mode: str, x: np.ndarray
    ) -> tuple[_Parts, np.ndarray]:
        from cnnkit.ops.conv2d import bands_apply, correlate_bands, correlate_kernel

        if not bands_apply(kernel, gh, gw, mode):
            return self.finish(correlate_kernel(x, kernel, gh, gw, mode, "auto"))
        out = np.empty((gh.out, gw.out, *x.shape[2:]), np.float32 if self.raw else np.uint8)
        stats = Stats()
        for r0, r1, band in correlate_bands(x, kernel, gh, gw, mode):
            if self.stats:
                stats.add(band)
            out[r0:r1] = band if self.raw else self._pixels(band)
        return (self._parts(stats) if self.stats else None), out

    def task(self, task: Callable[[], np.ndarray]) -> tuple[_Parts, np.ndarray]:
        return self.finish(task())

    def finish(self, r: np.ndarray) -> tuple[_Parts, np.ndarray]:
        parts = Stats.parts(r) if self.stats else None
        if self.raw:
            return parts, np.ascontiguousarray(r, dtype=np.float32)
        return parts, self._pixels(r)

    def _pixels(self, r: np.ndarray) -> np.ndarray:
        return result_to_pixels(r, self.scale, 255.0, self.bounds)

    @staticmethod
    def _parts(stats: Stats) -> tuple[float, float, float, int]:
        return stats.min, stats.max, stats.total, stats.count


def _write_depth(result_bytes: int) -> int:
    """Results waiting for the encode thread: 4, fewer when they are large (2 at 4K float32)."""
    return max(2, min(4, AHEAD_BYTES // max(1, result_bytes)))


def _write_video_frames(
    input: str,
    target: str,
    results: Iterable[tuple[_Parts, np.ndarray]],
    stats: Stats,
    fps: float,
    explanation: ops.Explanation,
    rgb: bool,
    codec: str | None,
    depth: int = 4,
) -> tuple[int, tuple[int, int]]:
    """Write the pipeline's 8-bit frames to a video: (frames written, stored H×W)."""
    colour = len(explanation.output_shape) == 4
    out_h, out_w = explanation.output_shape[1:3]
    if fps <= 0:
        console.warn(f"{input} states no frame rate; writing 25 fps")
    rate = fps if fps > 0 else 25.0
    with (
        VideoWriter(target, rate, out_w, out_h, colour, rgb, codec=codec) as writer,
        WriteBehind(writer.write, depth) as sink,
    ):
        for parts, pixels in results:
            if parts is not None:
                stats.add_parts(*parts)
            sink.put(pixels)
    stored_w, stored_h = writer.frame_size
    if (stored_h, stored_w) != (out_h, out_w):
        edges = [e for e, odd in (("row", stored_h > out_h), ("column", stored_w > out_w)) if odd]
        console.info(
            f"note: {target} stores the {out_h}×{out_w} frames as {stored_h}×{stored_w}, "
            f"their last {' and '.join(edges)} repeated: the video codec needs even sizes"
        )
    return writer.frames_written, (stored_h, stored_w)
