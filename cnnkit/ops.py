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

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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

# Magnitude kernels combine their components band by band: this many output
# rows at a time keeps the temporaries small and filter2D's halo overhead low.
_BAND_ROWS = 256


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
# what a convolution needs: memory, and a float32 range that holds its results
# ---------------------------------------------------------------------------

# Below this, asking the OS what is free costs more than it could ever save.
_MEMORY_CHECK_BYTES = 256 * 2**20


def available_memory() -> int | None:
    """Bytes that can still be allocated without swapping, or None when the OS does not say.

    Linux's MemAvailable (free memory plus the page cache it can drop), capped
    by a cgroup v2 memory limit (containers); elsewhere the free physical pages.
    """
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _size_text(nbytes: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as free(1) -h and file managers show them)."""
    units = ("bytes", "KB", "MB", "GB", "TB", "PB")
    step = 0
    while nbytes >= 1000 and step < len(units) - 1:
        nbytes /= 1000
        step += 1
    return f"{nbytes:,.0f} bytes" if step == 0 else f"{nbytes:,.1f} {units[step]}"


def check_memory(nbytes: int, what: str) -> None:
    """Refuse up front to allocate ``nbytes`` when the machine does not have them free.

    Without this, a huge --padding ends in OpenCV's "Insufficient memory"
    traceback or in the OOM killer, after minutes of swapping.
    """
    if nbytes <= _MEMORY_CHECK_BYTES:
        return
    free = available_memory()
    if free is not None and nbytes > free:
        raise InputError(
            f"{what} needs {_size_text(nbytes)} of memory, more than the "
            f"{_size_text(free)} available",
            hint="use a smaller --padding or a smaller input",
        )


def _shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(int(n)) for n in shape)


def _padded_shape(axes: Sequence[AxisGeometry], tail: Sequence[int]) -> tuple[int, ...]:
    return tuple(a.size + a.pad_before + a.pad_after for a in axes) + tuple(tail)


def _bytes_2d(
    shape: Sequence[int],
    dtype: np.dtype,
    kernel: Kernel,
    gh: AxisGeometry,
    gw: AxisGeometry,
    mode: str,
    method: str,
) -> int:
    """What one 2D correlation of an H×W[×C] input allocates at its peak, in bytes.

    Direct OpenCV path: the float32 result (plus a float32 copy of an input
    filter2D cannot take). OpenCV with explicit padding: the padded input and
    filter2D's float32 result on it. numpy path: the padded input as float32,
    the result and a product of the same size. A magnitude kernel holds one
    more result while it adds the squares (a band of one on the direct path).
    """
    tail = tuple(shape[2:])
    values = math.prod(shape)
    padded = math.prod(_padded_shape((gh, gw), tail))
    out = gh.out * gw.out * math.prod(tail)
    source = 0 if np.dtype(dtype).type in _CV_DTYPES else 4 * values
    extra = kernel.combine is not None and len(kernel.components) > 1
    if _direct(gh, gw, mode, method):
        return source + 4 * out
    fast_ok = gh.stride == gw.stride == gh.dilation == gw.dilation == 1
    if method != "numpy" and fast_ok:
        itemsize = 4 if source else np.dtype(dtype).itemsize
        return source + itemsize * padded + 4 * padded * (2 if extra else 1)
    return 4 * (padded + 2 * out + (out if extra else 0))


def check_convolution_memory(
    frame_shape: Sequence[int],
    dtype: np.dtype | type,
    kernel: Kernel,
    axes: Sequence[AxisGeometry],
    padding_mode: str,
    method: str = "auto",
    num_frames: int = 1,
    whole_result: bool = False,
) -> None:
    """Refuse, before anything is allocated, a convolution that would not fit in memory.

    ``frame_shape`` is one image or frame, H×W[×C], of ``dtype``; ``axes`` come
    from :func:`resolve_geometry` on (H, W) or (T, H, W). A 3D kernel also keeps
    the frames a later output still needs (its reach in time, every frame for
    circular time padding) and one output frame; ``whole_result`` adds the
    whole T'×H'×W'[×C] float32 result (an array in, an array out).
    """
    gh, gw = axes[-2:]
    tail = tuple(frame_shape[2:])
    needed = _bytes_2d(frame_shape, np.dtype(dtype), kernel, gh, gw, padding_mode, method)
    out_frame = (gh.out, gw.out, *tail)
    if len(axes) == 3:
        gt = axes[0]
        kept = num_frames if padding_mode == "circular" else min(num_frames, gt.reach)
        frame_bytes = np.dtype(dtype).itemsize * math.prod(frame_shape)
        needed += kept * frame_bytes + 4 * math.prod(out_frame)
        if whole_result:
            needed += 4 * gt.out * math.prod(out_frame)
    what = "an input" if len(axes) == 2 else "frames"
    check_memory(
        needed,
        f"the convolution of {what} of {_shape_text(frame_shape)} (padded to "
        f"{_shape_text(_padded_shape((gh, gw), tail))}, output {_shape_text(out_frame)} "
        "in float32)",
    )


def input_peak(x: np.ndarray) -> tuple[float, str]:
    """The largest |value| an input can hold, and how to name that input in a message.

    Integer inputs can hold their dtype's full range (65535 for 16-bit), so a
    kernel that overflows on one 16-bit image is refused for all of them; float
    inputs are judged by the values they actually hold.
    """
    if x.dtype == np.bool_:
        return 1.0, "a boolean input"
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return float(max(abs(int(info.min)), int(info.max))), f"{info.bits}-bit input"
    if x.size == 0:
        return 0.0, "this input"
    peak = max(abs(float(x.max())), abs(float(x.min())))
    return peak, "this input"


def check_result_range(kernel: Kernel, x: np.ndarray) -> None:
    """Refuse a kernel whose float32 result could overflow on ``x`` (see Kernel.largest_result)."""
    peak, what = input_peak(x)
    if math.isfinite(peak):  # non-finite inputs give non-finite results whatever the kernel
        kernel.check_float32_range(peak, what)


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
    shape = x.shape
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
    del x  # when it is a float32 copy made for filter2D, free it before the large result
    full = cv2.filter2D(padded, cv2.CV_32F, w32, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    del padded
    if full.ndim == 2 and len(shape) == 3:
        full = full[:, :, None]  # OpenCV drops a single channel axis
    # A view, not a copy: the cropped rows and columns are only the kernel's k-1,
    # and a copy would hold a second whole float32 image for a moment.
    return full[: gh.out, : gw.out]


def _correlate2d_numpy(
    x: np.ndarray, w: np.ndarray, gh: AxisGeometry, gw: AxisGeometry, mode: str
) -> np.ndarray:
    """Any stride and dilation: pad explicitly, then add one strided slice per tap."""
    pads = [(gh.pad_before, gh.pad_after), (gw.pad_before, gw.pad_after)]
    pads += [(0, 0)] * (x.ndim - 2)
    padded = np.pad(x.astype(np.float32, copy=False), pads, mode=_NP_PAD[mode])
    # float32 throughout, as Conv2d and filter2D accumulate: a float64 accumulator
    # would double the memory of the largest array here.
    out = np.zeros((gh.out, gw.out) + x.shape[2:], dtype=np.float32)
    product = np.empty_like(out)
    rows = gh.stride * (gh.out - 1) + 1
    cols = gw.stride * (gw.out - 1) + 1
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            if w[i, j] == 0:
                continue
            r, c = i * gh.dilation, j * gw.dilation
            tap = padded[r : r + rows : gh.stride, c : c + cols : gw.stride]
            np.multiply(tap, np.float32(w[i, j]), out=product)
            out += product
    return out


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


def _direct(gh: AxisGeometry, gw: AxisGeometry, mode: str, method: str) -> bool:
    """Whether filter2D's own border handling gives the result (no explicit padding)."""
    return (
        method != "numpy"
        and mode != "circular"
        and gh.stride == gw.stride == gh.dilation == gw.dilation == 1
        and gh.out == gh.size
        and gw.out == gw.size
    )


def _add_squares_by_bands(
    total: np.ndarray, x: np.ndarray, w: np.ndarray, gh: AxisGeometry, gw: AxisGeometry, mode: str
) -> None:
    """total += (x ⋆ w)², computed a band of rows at a time (direct filter2D case only).

    Each band is filtered with the rows its kernel reaches around it; where a
    band touches the image's top or bottom, filter2D's border is the image's
    own, and elsewhere the extra rows' outputs, which saw filter2D's band
    border, are dropped. So only a band-sized temporary exists, not a second
    whole float32 image.
    """
    x = _as_cv_source(x)
    w32 = w.astype(np.float32)
    height = x.shape[0]
    # Rows read beyond the band on each side: more than the kernel reaches, so
    # that at the image's top and bottom the rows reflect padding mirrors are in
    # the slice too.
    halo = gh.pad_before + gh.pad_after + 1
    for r0 in range(0, height, _BAND_ROWS):
        r1 = min(height, r0 + _BAND_ROWS)
        a, b = max(0, r0 - halo), min(height, r1 + halo)
        part = cv2.filter2D(
            x[a:b],
            cv2.CV_32F,
            w32,
            anchor=(gw.pad_before, gh.pad_before),
            borderType=_CV_BORDER[mode],
        )
        part = part[r0 - a : r1 - a]
        if part.ndim == 2 and total.ndim == 3:
            part = part[:, :, None]
        np.square(part, out=part)
        total[r0:r1] += part


def _correlate_kernel(
    x: np.ndarray, kernel: Kernel, gh: AxisGeometry, gw: AxisGeometry, mode: str, method: str
) -> np.ndarray:
    """One 2D kernel on one frame: its component, or the magnitude of its components.

    The magnitude sqrt(gx² + gy²) is accumulated in place, so at most one more
    float32 image than the result exists at any time (a band of one, on the
    direct OpenCV path).
    """
    first = _correlate2d(x, kernel.components[0], gh, gw, mode, method)
    if kernel.combine is None:
        return first
    total = np.square(first, out=first)  # a fresh array (or a crop of one): squared in place
    del first
    for w in kernel.components[1:]:
        if _direct(gh, gw, mode, method):
            _add_squares_by_bands(total, x, w, gh, gw, mode)
            continue
        part = _correlate2d(x, w, gh, gw, mode, method)
        np.square(part, out=part)
        total += part
        del part
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


def _magnitude(results: list[np.ndarray]) -> np.ndarray:
    """sqrt(Σ r²) of fresh float32 arrays, computed in the first one (the others are spent)."""
    total = np.square(results[0], out=results[0])
    for r in results[1:]:
        total += np.square(r, out=r)
    return np.sqrt(total, out=total)


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
            if tail is None:  # the first frame: its dtype, values and channels are known now
                check_result_range(kernel, frame)
                check_convolution_memory(
                    frame.shape, frame.dtype, kernel, axes, padding_mode, method, num_frames
                )
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
        yield _magnitude(results) if kernel.combine else results[0]
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
        float32 array H'×W'[×C] or T'×H'×W'[×C], sizes per :func:`output_shape`
        (with explicit padding, a view that skips filter2D's last k-1 rows and
        columns rather than a copy of the whole result).

    Raises:
        KernelError: the result could overflow float32 on this input's range.
        InputError: bad geometry, or a result that would not fit in memory.
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
    check_result_range(kernel, x)
    if kernel.ndim == 2:
        gh, gw = axes
        check_convolution_memory(x.shape, x.dtype, kernel, axes, padding_mode, method)
        return _correlate_kernel(x, kernel, gh, gw, padding_mode, method)
    check_convolution_memory(
        x.shape[1:], x.dtype, kernel, axes, padding_mode, method, x.shape[0], whole_result=True
    )
    out_shape = tuple(a.out for a in axes) + x.shape[3:]
    out = np.empty(out_shape, np.float32)  # filled frame by frame: no list, then a stacked copy
    for t, frame in enumerate(convolve_frames(x, x.shape[0], kernel, axes, padding_mode, method)):
        out[t] = frame
    return out


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
