"""``cnnkit convolve`` on files: read an image or video, run ops.convolve, write the result.

Images are convolved in one go. Videos are streamed: a 2D kernel filters
frame by frame, a 3D kernel slides a window of frames over time
(ops.convolve_frames), so only the frames in use are in memory (except for
``.npy`` output, which holds the whole float32 result by nature).

Output by extension: ``.npy`` stores the raw float32 result (negative values
kept; H×W, H×W×C in RGB order, or T×H×W[×C]); image and video formats store
8-bit pixels according to ``scale``:

- ``clip``: values outside the input's range are clipped (0-255 for 8-bit
  input; 16-bit input is mapped from 0-65535 down to 0-255);
- ``abs``: absolute value, then as clip (OpenCV's convertScaleAbs look);
- ``minmax``: the result's own min..max stretched to 0..255 for an image. A
  video uses the range the kernel can produce from the input's range instead,
  so that brightness does not flicker from frame to frame;
- ``auto``: clip for kernels whose weights are all >= 0 (blurs) or sum to 1
  (sharpen, emboss: their result is an image), abs for gradient magnitudes
  (sobel, scharr, prewitt), minmax for other signed kernels (derivatives,
  laplacian, log, outline, temporal-diff), whose negative half matters.

Alpha channels are dropped before filtering: a filtered alpha has no meaning.
This module never imports torch.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnkit import console, ops
from cnnkit.errors import InputError, KernelError
from cnnkit.io._opencv import cv2
from cnnkit.io.image import IMAGE_EXTENSIONS, encode_png, read_image, read_image_bytes
from cnnkit.io.video import VIDEO_EXTENSIONS, VideoWriter, iter_frames, probe_video
from cnnkit.kernels import Kernel

SCALES = ("auto", "abs", "clip", "minmax")


def parse_axis_values(text: str, what: str, minimum: int) -> int | tuple[int, ...]:
    """'2' -> 2, '2,1' -> (2, 1); refuses non-integers and values below ``minimum``."""
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


def auto_scale(kernel: Kernel) -> str:
    """The --scale that shows a kernel's result best (see the module docstring)."""
    if kernel.is_magnitude:
        return "abs"
    if kernel.nonnegative or math.isclose(float(kernel.weights.sum()), 1.0, abs_tol=1e-6):
        return "clip"
    return "minmax"


def value_range(dtype: np.dtype) -> float:
    """The largest pixel value of an input dtype: 255, 65535, or 1.0 for float images."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def to_uint8(
    result: np.ndarray, scale: str, in_max: float, bounds: tuple[float, float] | None = None
) -> np.ndarray:
    """Map a float32 result to 8-bit pixels per ``scale`` (not 'auto'; resolve it first).

    ``bounds`` (low, high) replaces the result's own min/max for ``minmax``.
    ``result`` is overwritten (it is usually 25 MB for a colour 1080p frame, and
    in-place arithmetic keeps this step a few milliseconds).
    """
    if scale == "minmax":
        low, high = bounds if bounds is not None else (float(result.min()), float(result.max()))
        if high <= low:
            return np.zeros(result.shape, np.uint8)
        result -= low
        result *= 255.0 / (high - low)
    else:
        if scale == "abs":
            np.abs(result, out=result)
        if in_max != 255.0:
            result *= 255.0 / in_max
    np.clip(result, 0, 255, out=result)
    # +0.5 then truncation rounds like OpenCV's saturate_cast for these >= 0 values.
    result += 0.5
    return result.astype(np.uint8)


@dataclass
class Stats:
    """Running min/max/mean over the frames of a result."""

    min: float = math.inf
    max: float = -math.inf
    total: float = 0.0
    count: int = 0

    def add(self, values: np.ndarray) -> None:
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self.total += float(values.sum(dtype=np.float64))
        self.count += values.size

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


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
        return doc


# ---------------------------------------------------------------------------
# inputs and outputs
# ---------------------------------------------------------------------------


def _kind_of_output(output: str) -> str:
    if output == "-":
        return "stdout"
    ext = Path(output).suffix.lower()
    if ext == ".npy":
        return "npy"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    known = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | {".npy"}))
    raise InputError(
        f"unsupported output extension '{ext or Path(output).name}' in {output}",
        hint=f"use one of {known}, or '-' for PNG on stdout",
    )


def default_output(input: str, kernel: Kernel) -> str:
    """``<input stem>-<kernel slug><input ext>`` in the working directory (PNG for stdin)."""
    if input == "-":
        return f"stdin-{kernel.slug}.png"
    path = Path(input)
    return f"{path.stem}-{kernel.slug}{path.suffix.lower()}"


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


def _bgr_to_rgb(array: np.ndarray) -> np.ndarray:
    """Channel order swap on the last axis of H×W×3 or T×H×W×3 (gray unchanged)."""
    if array.ndim >= 3 and array.shape[-1] == 3:
        return np.ascontiguousarray(array[..., ::-1])
    return array


def _save_npy(path: str, array: np.ndarray) -> None:
    from cnnkit.io.atomic import atomic_output

    with atomic_output(path) as temp:
        np.save(temp, np.ascontiguousarray(array, dtype=np.float32))


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
    stdin: bytes | None = None,
    want_stats: bool = True,
) -> ConvolveReport:
    """Convolve an image or video file (or stdin image bytes) and write the result.

    ``output`` None means the default name; ``write=False`` only explains (the
    input is read for its shape, nothing is computed or written). Without
    ``want_stats`` an image's min/max/mean are not computed (a few ms saved).
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
    out_kind = _kind_of_output(target) if write else None
    if out_kind == "video" and kind == "image":
        raise InputError(
            f"cannot write an image result to the video file {target}",
            hint=f"use an image extension ({', '.join(sorted(IMAGE_EXTENSIONS))}) or .npy",
        )
    if out_kind in ("image", "stdout") and kind == "video":
        raise InputError(
            f"cannot write a video result to {'stdout' if target == '-' else target}",
            hint=f"use a video extension ({', '.join(sorted(VIDEO_EXTENSIONS))}) or .npy",
        )
    scale = auto_scale(kernel) if options.scale == "auto" else options.scale
    # BGR order is kept end to end for 8-bit outputs: OpenCV reads and writes it,
    # and per-channel filtering does not care. Only .npy wants RGB.
    rgb = out_kind == "npy"
    if kind == "image":
        explanation, stats, fps = _convolve_image(
            input, kernel, options, target, out_kind, scale, rgb, stdin, want_stats
        )
    else:
        explanation, stats, fps = _convolve_video(
            input, kernel, options, target, out_kind, scale, rgb
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
    stdin: bytes | None,
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
    result = ops.convolve(
        image, kernel, options.stride, options.padding, options.padding_mode, options.dilation
    )
    if want_stats or out_kind == "npy":
        stats.add(result)
    if out_kind == "npy":
        _save_npy(target, result)
        return explanation, stats, None
    pixels = to_uint8(result, scale, value_range(image.dtype))
    if out_kind == "stdout":
        sys.stdout.buffer.write(encode_png(pixels, rgb=rgb))
        sys.stdout.flush()
    else:
        from cnnkit.io.image import write_image

        write_image(target, pixels, rgb=rgb)
    return explanation, stats, None


def _video_frames(input: str, rgb: bool, gray: bool, total: int) -> Iterator[np.ndarray]:
    frames = iter_frames(input, rgb=rgb)
    for frame in console.track(frames, total=total, description="convolve"):
        yield _to_gray(frame, rgb) if gray else frame


def _convolve_video(
    input: str,
    kernel: Kernel,
    options: ConvolveOptions,
    target: str,
    out_kind: str | None,
    scale: str,
    rgb: bool,
) -> tuple[ops.Explanation, Stats, float]:
    # A 3D kernel's output length and its reflect padding at the end depend on
    # the exact frame count, which some containers only estimate.
    info = probe_video(input, exact=kernel.ndim == 3)
    channels = () if options.gray else (3,)
    shape = (info.frames, info.height, info.width) + channels
    if kernel.ndim == 2:
        frame_expl = _explain(shape[1:], kernel, options)
        explanation = ops.Explanation(
            kernel,
            shape,
            (info.frames,) + frame_expl.output_shape,
            options.padding_mode,
            frame_expl.axes,
        )
    else:
        explanation = _explain(shape, kernel, options)
    stats = Stats()
    if out_kind is None:
        return explanation, stats, info.fps
    frames = _video_frames(input, rgb, options.gray, info.frames)
    if kernel.ndim == 2:
        results: Iterator[np.ndarray] = (
            ops.convolve(
                f, kernel, options.stride, options.padding, options.padding_mode, options.dilation
            )
            for f in frames
        )
    else:
        results = ops.convolve_frames(
            frames, info.frames, kernel, explanation.axes, options.padding_mode
        )
    if out_kind == "npy":
        kept = []
        for r in results:
            stats.add(r)
            kept.append(r)
        _save_npy(target, np.stack(kept))
        return explanation, stats, info.fps
    bounds = kernel.value_bounds(0.0, 255.0) if scale == "minmax" else None
    out_h, out_w = explanation.output_shape[-3:-1] if channels else explanation.output_shape[-2:]
    fps = info.fps if info.fps > 0 else 25.0
    if info.fps <= 0:
        console.warn(f"{input} states no frame rate; writing {fps:g} fps")
    with VideoWriter(target, fps, out_w, out_h, is_color=bool(channels), rgb=rgb) as writer:
        for r in results:
            stats.add(r)
            writer.write(to_uint8(r, scale, 255.0, bounds))
    return explanation, stats, info.fps
