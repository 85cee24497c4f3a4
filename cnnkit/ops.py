"""convolve(): what a Conv2d/Conv3d layer computes, on numpy arrays, without torch.

Semantics are exactly those of ``torch.nn.Conv2d``/``Conv3d`` with one input and
one output channel applied to each colour channel: cross-correlation (no flip),
output size per axis ``floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1``, padding
modes zeros/reflect/replicate/circular as in ``torch.nn.functional.pad``.
``padding="same"`` pads ``d*(k-1)`` in total per axis, ``total // 2`` before and
the rest after, as torch does for even kernels; with a stride above 1 it keeps
that stride-1 padding (torch refuses "same" with strides).

Two paths compute the same thing:

- the OpenCV path (``cv2.filter2D``) for stride 1 and dilation 1: this is the
  speed limit, so the common case runs at OpenCV's own speed;
- the numpy path (explicit padding, then one strided slice per kernel tap) for
  any stride and dilation; it is also the reference the tests hold the OpenCV
  path to.

3D kernels slide over time as well: each output frame is the sum, over the
kernel's time slices, of 2D correlations of the matching (padded) input
frames. :func:`convolve_frames` does that on a stream of frames, keeping only
the frames still needed, so videos need not be held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from cnnkit.errors import InputError, KernelError
from cnnkit.kernels import Kernel, kernel_from_array, parse_kernel

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# reflect mirrors without repeating the edge pixel: OpenCV's REFLECT_101 is
# torch's "reflect" and scipy's "mirror". OpenCV's filters refuse BORDER_WRAP,
# so circular padding is always done explicitly with copyMakeBorder.
_CV_BORDER = {
    "zeros": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "circular": cv2.BORDER_WRAP,
}
_NP_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_AXIS_NAMES = {2: ("height", "width"), 3: ("time", "height", "width")}
# Source dtypes cv2.filter2D accepts with a float32 destination; others are converted.
_CV_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)

Padding = str | int | Sequence[int]


@dataclass(frozen=True)
class AxisGeometry:
    """One axis of a convolution: sizes, padding before/after, and the output size."""

    name: str
    size: int
    kernel: int
    stride: int
    dilation: int
    pad_before: int
    pad_after: int
    out: int

    @property
    def reach(self) -> int:
        """How many input positions one output position spans: d*(k-1) + 1."""
        return self.dilation * (self.kernel - 1) + 1

    def formula(self) -> str:
        """The output-size formula with this axis' numbers filled in."""
        if self.pad_before == self.pad_after:
            pad = f"2·{self.pad_before}"
        else:
            pad = f"{self.pad_before} + {self.pad_after}"
        return (
            f"{self.name}: floor(({self.size} + {pad} - {self.dilation}·({self.kernel}-1) - 1)"
            f" / {self.stride}) + 1 = {self.out}"
        )


def _per_axis(value: int | Sequence[int], ndim: int, what: str, minimum: int) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim:
        raise InputError(
            f"{what} {','.join(map(str, values))} has {len(values)} values for a {ndim}D kernel",
            hint=f"give one value, or {ndim} separated by commas",
        )
    for v in values:
        if int(v) != v or v < minimum:
            raise InputError(
                f"{what} must be a whole number >= {minimum}, got {v}",
                hint=f"use {what} {max(minimum, 1)}" if v < minimum else None,
            )
    return tuple(int(v) for v in values)


def resolve_geometry(
    spatial_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    dilation: int | Sequence[int] = 1,
) -> tuple[AxisGeometry, ...]:
    """Per-axis sizes, padding and output size; refuses zero strides and empty outputs.

    ``spatial_shape`` and ``kernel_shape`` are (H, W) or (T, H, W).
    """
    ndim = len(kernel_shape)
    strides = _per_axis(stride, ndim, "stride", 1)
    dilations = _per_axis(dilation, ndim, "dilation", 1)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("same", "valid"):
            raise InputError(f"unknown padding '{padding}'", hint="use same, valid or N")
        pads = []
        for k, d in zip(kernel_shape, dilations, strict=False):
            total = d * (k - 1) if mode == "same" else 0
            pads.append((total // 2, total - total // 2))
    else:
        pads = [(p, p) for p in _per_axis(padding, ndim, "padding", 0)]
    axes = []
    for name, n, k, s, d, (lo, hi) in zip(
        _AXIS_NAMES[ndim], spatial_shape, kernel_shape, strides, dilations, pads, strict=False
    ):
        span = n + lo + hi - d * (k - 1) - 1
        out = span // s + 1 if span >= 0 else 0
        axis = AxisGeometry(name, int(n), int(k), s, d, lo, hi, out)
        if out < 1:
            raise InputError(
                f"output would be empty: {axis.formula()}",
                hint=f"the dilated kernel spans {axis.reach} positions but the padded {name} "
                f"is {n + lo + hi}; use more padding, a smaller kernel or dilation",
            )
        axes.append(axis)
    return tuple(axes)


def output_shape(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    dilation: int | Sequence[int] = 1,
) -> tuple[int, ...]:
    """The result's shape for an input of ``input_shape`` (H×W[×C] or T×H×W[×C]).

    Axes after the kernel's (colour channels) are kept as they are.
    """
    ndim = len(kernel_shape)
    axes = resolve_geometry(input_shape[:ndim], kernel_shape, stride, padding, dilation)
    return tuple(a.out for a in axes) + tuple(input_shape[ndim:])


def _check_padding_fits(axes: Sequence[AxisGeometry], mode: str) -> None:
    """Refuse reflect/circular padding wider than the input, as torch does."""
    for a in axes:
        widest = max(a.pad_before, a.pad_after)
        if mode == "reflect" and widest >= a.size:
            raise InputError(
                f"reflect padding of {widest} needs a {a.name} above {widest}, "
                f"but the input's {a.name} is {a.size}",
                hint="use --padding-mode replicate or zeros, or less padding",
            )
        if mode == "circular" and widest > a.size:
            raise InputError(
                f"circular padding of {widest} is wider than the input's {a.name} {a.size}",
                hint="use --padding-mode replicate or zeros, or less padding",
            )


# ---------------------------------------------------------------------------
# 2D on one frame (H×W or H×W×C, channels last)
# ---------------------------------------------------------------------------


def _as_cv_source(x: np.ndarray) -> np.ndarray:
    if x.dtype.type not in _CV_DTYPES:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def _correlate2d_opencv(
    x: np.ndarray, w: np.ndarray, gh: AxisGeometry, gw: AxisGeometry, mode: str
) -> np.ndarray:
    """Stride 1, dilation 1: cv2.filter2D with the anchor set to the padding before."""
    x = _as_cv_source(x)
    w32 = w.astype(np.float32)
    if mode != "circular" and gh.out == gh.size and gw.out == gw.size:
        # Padding totals k-1 on both axes: filter2D's own border handling gives the
        # result directly; anchor (pad_before) makes even kernels match torch.
        return cv2.filter2D(
            x, cv2.CV_32F, w32, anchor=(gw.pad_before, gh.pad_before), borderType=_CV_BORDER[mode]
        )
    padded = cv2.copyMakeBorder(
        x, gh.pad_before, gh.pad_after, gw.pad_before, gw.pad_after, _CV_BORDER[mode], value=0
    )
    # With anchor (0, 0) the first out×out outputs only read padded pixels, never
    # filter2D's own border, so any padding the user asked for is honoured.
    full = cv2.filter2D(padded, cv2.CV_32F, w32, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    if padded.ndim == 3 and full.ndim == 2:
        full = full[:, :, None]  # OpenCV drops a single channel axis
    return np.ascontiguousarray(full[: gh.out, : gw.out])


def _correlate2d_numpy(
    x: np.ndarray, w: np.ndarray, gh: AxisGeometry, gw: AxisGeometry, mode: str
) -> np.ndarray:
    """Any stride and dilation: pad explicitly, then add one strided slice per tap."""
    pads = [(gh.pad_before, gh.pad_after), (gw.pad_before, gw.pad_after)]
    pads += [(0, 0)] * (x.ndim - 2)
    padded = np.pad(x.astype(np.float32, copy=False), pads, mode=_NP_PAD[mode])
    out = np.zeros((gh.out, gw.out) + x.shape[2:], dtype=np.float64)
    rows = gh.stride * (gh.out - 1) + 1
    cols = gw.stride * (gw.out - 1) + 1
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            if w[i, j] == 0:
                continue
            r, c = i * gh.dilation, j * gw.dilation
            out += w[i, j] * padded[r : r + rows : gh.stride, c : c + cols : gw.stride]
    return out.astype(np.float32)


def _correlate2d(
    x: np.ndarray,
    w: np.ndarray,
    gh: AxisGeometry,
    gw: AxisGeometry,
    mode: str,
    method: str,
) -> np.ndarray:
    fast_ok = gh.stride == gw.stride == gh.dilation == gw.dilation == 1
    if method == "opencv" and not fast_ok:
        raise ValueError("the OpenCV path only handles stride 1 and dilation 1")
    if method == "numpy" or not fast_ok:
        return _correlate2d_numpy(x, w, gh, gw, mode)
    return _correlate2d_opencv(x, w, gh, gw, mode)


def _combine(results: list[np.ndarray], combine: str | None) -> np.ndarray:
    if combine is None:
        return results[0]
    total = np.square(results[0])
    for r in results[1:]:
        total += np.square(r)
    return np.sqrt(total, out=total)


# ---------------------------------------------------------------------------
# 3D: frames in, frames out
# ---------------------------------------------------------------------------


def _source_frame(position: int, n: int, pad_before: int, mode: str) -> int | None:
    """Which input frame sits at a padded time position (None: a zero frame)."""
    i = position - pad_before
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    return -i if i < 0 else 2 * (n - 1) - i  # reflect, pad < n checked before


def convolve_frames(
    frames: Iterable[np.ndarray],
    num_frames: int,
    kernel: Kernel,
    axes: Sequence[AxisGeometry],
    padding_mode: str = "reflect",
    method: str = "auto",
) -> Iterator[np.ndarray]:
    """Slide a 3D kernel over a stream of ``num_frames`` frames (each H×W or H×W×C).

    ``axes`` comes from :func:`resolve_geometry` on (T, H, W). Yields the output
    frames (H'×W'[×C] float32) in order while reading the input once; only the
    frames a later output still needs are kept (circular time padding needs the
    last frames first, so there it keeps the whole video).
    """
    gt, gh, gw = axes
    _check_padding_fits(axes, padding_mode)
    taps = [
        [
            _source_frame(t * gt.stride + i * gt.dilation, num_frames, gt.pad_before, padding_mode)
            for i in range(gt.kernel)
        ]
        for t in range(gt.out)
    ]
    last_use: dict[int, int] = {}
    for t, sources in enumerate(taps):
        for src in sources:
            if src is not None:
                last_use[src] = t
    cache: dict[int, np.ndarray] = {}
    stream = iter(frames)
    read = -1
    tail: tuple[int, ...] | None = None  # colour axes of the frames, known after the first
    for t, sources in enumerate(taps):
        # Read at least one frame first: an all-padding output still needs the colour axes.
        needed = max((s for s in sources if s is not None), default=0)
        while read < needed:
            frame = next(stream, None)
            if frame is None:
                raise InputError(
                    f"the video ended after {read + 1} frames, but {num_frames} were expected",
                    hint="the file may be truncated; re-encode it",
                )
            read += 1
            tail = frame.shape[2:]
            if read in last_use:
                cache[read] = frame
        results = []
        for w in kernel.components:
            acc = None
            for i, src in enumerate(sources):
                if src is None or not w[i].any():
                    continue  # zero padding or an all-zero slice adds nothing
                part = _correlate2d(cache[src], w[i], gh, gw, padding_mode, method)
                acc = part if acc is None else np.add(acc, part, out=acc)
            if acc is None:
                acc = np.zeros((gh.out, gw.out) + (tail or ()), dtype=np.float32)
            results.append(acc)
        yield _combine(results, kernel.combine)
        for src in set(sources):
            if src is not None and last_use[src] == t:
                del cache[src]


# ---------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------


def as_kernel(kernel: Kernel | str | np.ndarray) -> Kernel:
    """Accept a Kernel, a kernel spec string, or a 2D/3D weight array."""
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return parse_kernel(kernel)
    return kernel_from_array(np.asarray(kernel))


def _check_input(x: np.ndarray, kernel: Kernel) -> None:
    if x.ndim not in (kernel.ndim, kernel.ndim + 1):
        wanted = "H×W or H×W×C" if kernel.ndim == 2 else "T×H×W or T×H×W×C"
        raise InputError(
            f"a {kernel.ndim}D kernel needs a {wanted} input, got shape {x.shape}",
            hint="3D kernels need a video; apply 2D kernels to images or single frames"
            if kernel.ndim == 3
            else "pass one frame at a time",
        )
    if x.size == 0:
        raise InputError(f"the input is empty (shape {x.shape})", hint="give a non-empty array")


def convolve(
    x: np.ndarray,
    kernel: Kernel | str | np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    padding_mode: str = "reflect",
    dilation: int | Sequence[int] = 1,
    flip: bool = False,
    method: str = "auto",
) -> np.ndarray:
    """Cross-correlate ``x`` with ``kernel`` exactly as Conv2d/Conv3d would.

    Args:
        x: H×W or H×W×C for a 2D kernel, T×H×W or T×H×W×C for a 3D kernel; any
            numeric dtype, values used as stored (0-255 stays 0-255). Channels
            are filtered independently.
        kernel: a Kernel, a spec string (``"sobel-x"``, ``"1,0,-1"``) or an array.
        stride, dilation: one int or one per kernel axis.
        padding: ``"same"``, ``"valid"``, an int or one int per kernel axis.
        padding_mode: zeros, reflect, replicate or circular.
        flip: flip the kernel on every axis first (true convolution).
        method: ``"auto"``; ``"opencv"`` or ``"numpy"`` force a path (for tests).

    Returns:
        float32 array H'×W'[×C] or T'×H'×W'[×C], sizes per :func:`output_shape`.
    """
    kernel = as_kernel(kernel)
    if flip:
        kernel = kernel.flipped()
    if padding_mode not in PADDING_MODES:
        raise InputError(
            f"unknown padding mode '{padding_mode}'", hint=f"use one of {', '.join(PADDING_MODES)}"
        )
    x = np.asarray(x)
    _check_input(x, kernel)
    axes = resolve_geometry(x.shape[: kernel.ndim], kernel.shape, stride, padding, dilation)
    _check_padding_fits(axes, padding_mode)
    if kernel.ndim == 2:
        gh, gw = axes
        results = [_correlate2d(x, w, gh, gw, padding_mode, method) for w in kernel.components]
        return _combine(results, kernel.combine)
    frames = convolve_frames(iter(x), x.shape[0], kernel, axes, padding_mode, method)
    return np.stack(list(frames))


# ---------------------------------------------------------------------------
# --explain
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """What --explain shows: the kernel, the shapes, and the size formula per axis."""

    kernel: Kernel
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    padding_mode: str
    axes: tuple[AxisGeometry, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "kernel": self.kernel.name,
            "kernel_shape": list(self.kernel.shape),
            "combine": self.kernel.combine,
            "weights": [c.tolist() for c in self.kernel.components],
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "padding_mode": self.padding_mode,
            "axes": [
                {
                    "axis": a.name,
                    "size": a.size,
                    "kernel": a.kernel,
                    "stride": a.stride,
                    "dilation": a.dilation,
                    "padding": [a.pad_before, a.pad_after],
                    "out": a.out,
                    "formula": a.formula(),
                }
                for a in self.axes
            ],
        }


def explain(
    input_shape: Sequence[int],
    kernel: Kernel | str | np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    padding_mode: str = "reflect",
    dilation: int | Sequence[int] = 1,
    flip: bool = False,
) -> Explanation:
    """Describe the convolution of an input of ``input_shape`` without computing it."""
    kernel = as_kernel(kernel)
    if flip:
        kernel = kernel.flipped()
    if len(input_shape) < kernel.ndim:
        raise KernelError(
            f"a {kernel.ndim}D kernel cannot slide over an input of shape {tuple(input_shape)}",
            hint="3D kernels need a video",
        )
    axes = resolve_geometry(input_shape[: kernel.ndim], kernel.shape, stride, padding, dilation)
    _check_padding_fits(axes, padding_mode)
    out = tuple(a.out for a in axes) + tuple(input_shape[kernel.ndim :])
    return Explanation(kernel, tuple(int(n) for n in input_shape), out, padding_mode, axes)
