"""2D cross-correlation of one frame (H×W or H×W×C, channels last) with one kernel.

Two paths compute the same thing:

- the OpenCV path (``cv2.filter2D``) for stride 1 and dilation 1: this is the
  speed limit, so the common case runs at OpenCV's own speed. A separable
  kernel on integer pixels runs there as two 1-D passes (``cv2.sepFilter2D``)
  when every partial sum is exact in float32, which gives the very same bits
  (see :func:`exact_factors`). (``cv2.magnitude`` does not: its square root
  is off by an ulp now and then, so magnitudes stay numpy's square, add, sqrt.)
- the numpy path (explicit padding, then one strided slice per kernel tap) for
  any stride and dilation; it is also the reference the tests hold the OpenCV
  path to.

Padding modes are those of ``torch.nn.functional.pad``: zeros, reflect,
replicate, circular.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

from cnnkit.kernels import Kernel
from cnnkit.ops.geometry import AxisGeometry

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
# Source dtypes cv2.filter2D accepts with a float32 destination; others are converted.
_FILTER2D_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)

# Magnitude kernels combine their components band by band: this many output
# rows at a time keeps the temporaries small and filter2D's halo overhead low.
_BAND_ROWS = 256

# float32 holds every integer up to 2**24 exactly: sums of products that stay
# below it (in units of the weights' smallest binary fraction) are computed
# exactly whatever the order of the additions.
_EXACT_LIMIT = float(2**24)
# From this many taps cv2.filter2D computes through a DFT instead of directly
# (OpenCV's dft_filter_size for these types; measured: integer kernels up to
# 7×7 give exact results, 9×9 does not), so its result is no longer exact and
# a shortcut could not reproduce it bit for bit.
_DFT_TAPS = 50
# The largest value of the unsigned dtypes filter2D reads as they are.
_INTEGER_PEAK = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def filter2d_takes(dtype: np.dtype | type) -> bool:
    """Whether cv2.filter2D reads ``dtype`` as it is (other dtypes get a float32 copy)."""
    return np.dtype(dtype).type in _FILTER2D_DTYPES


def opencv_path_applies(gh: AxisGeometry, gw: AxisGeometry) -> bool:
    """Stride 1 and dilation 1 on both axes: the only geometry cv2.filter2D computes."""
    return gh.stride == gw.stride == gh.dilation == gw.dilation == 1


def direct_path(gh: AxisGeometry, gw: AxisGeometry, mode: str, method: str) -> bool:
    """Whether filter2D's own border handling gives the result (no explicit padding)."""
    return (
        method != "numpy"
        and mode != "circular"
        and opencv_path_applies(gh, gw)
        and gh.out == gh.size
        and gw.out == gw.size
    )


def _binary_exponent(values: np.ndarray) -> int | None:
    """The smallest e >= 0 with every value times 2**e a whole number (None past 2**-24)."""
    for e in range(25):
        scaled = values * float(2**e)
        if np.array_equal(scaled, np.round(scaled)):
            return e
    return None


def _exact_sum_bound(values: np.ndarray, exponent: int, peak: float) -> float:
    """The largest |partial sum| of values × inputs in [0, peak], in units of 2**-exponent."""
    return float(np.abs(values).sum()) * peak * float(2**exponent)


_FACTORS: dict[tuple[bytes, tuple[int, ...], float], tuple[np.ndarray, np.ndarray] | None] = {}
_UNKNOWN = object()


def exact_factors(w32: np.ndarray, peak: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) 1-D float32 factors of a 2D kernel when both passes are exact, else None.

    ``outer(column, row) == w32`` exactly, and on integer inputs in [0, peak]
    every product and partial sum of the row pass and of the column pass is a
    multiple of a binary fraction below 2**24 of it: exact in float32, as each
    sum filter2D forms is then too. Both results are the exact value, so
    ``cv2.sepFilter2D`` gives filter2D's result bit for bit (Sobel, Scharr,
    Prewitt, binomial blurs; not a Gaussian of real-valued weights). Kernels
    of 50 taps or more, which filter2D computes through a DFT, get None.
    """
    key = (w32.tobytes(), w32.shape, peak)
    cached = _FACTORS.get(key, _UNKNOWN)  # one lookup: compute threads share the cache
    if cached is not _UNKNOWN:
        return cached  # type: ignore[return-value]
    found = None
    if w32.ndim == 2 and 1 < w32.size < _DFT_TAPS and min(w32.shape) > 1:
        w = w32.astype(np.float64)
        best = math.inf
        for i, j in zip(*np.nonzero(w), strict=True):
            # The pivot's own value goes into one factor, the other is divided by it.
            for column, row in ((w[:, j], w[i, :] / w[i, j]), (w[:, j] / w[i, j], w[i, :])):
                if not np.array_equal(np.outer(column, row), w):
                    continue
                ec, er = _binary_exponent(column), _binary_exponent(row)
                if ec is None or er is None:
                    continue
                if not (
                    np.array_equal(column.astype(np.float32), column)
                    and np.array_equal(row.astype(np.float32), row)
                ):
                    continue
                row_bound = _exact_sum_bound(row, er, peak)
                total = float(np.abs(column).sum()) * row_bound * float(2**ec)
                if row_bound < _EXACT_LIMIT and total < _EXACT_LIMIT and total < best:
                    best = total
                    found = (column.astype(np.float32), row.astype(np.float32))
    if len(_FACTORS) > 256:
        _FACTORS.clear()
    _FACTORS[key] = found
    return found


def _filter(x: np.ndarray, w32: np.ndarray, anchor: tuple[int, int], border: int) -> np.ndarray:
    """cv2.filter2D(x, CV_32F, w32, anchor, border), as two exact 1-D passes when they exist."""
    peak = _INTEGER_PEAK.get(x.dtype)
    factors = exact_factors(w32, peak) if peak is not None else None
    if factors is None:
        return cv2.filter2D(x, cv2.CV_32F, w32, anchor=anchor, borderType=border)
    column, row = factors
    return cv2.sepFilter2D(x, cv2.CV_32F, row, column, anchor=anchor, borderType=border)


def _as_cv_source(x: np.ndarray) -> np.ndarray:
    if not filter2d_takes(x.dtype):
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def _correlate2d_opencv(
    x: np.ndarray, w: np.ndarray, gh: AxisGeometry, gw: AxisGeometry, mode: str
) -> np.ndarray:
    """Stride 1, dilation 1: cv2.filter2D with the anchor set to the padding before."""
    x = _as_cv_source(x)
    shape = x.shape
    w32 = w.astype(np.float32)
    if direct_path(gh, gw, mode, "opencv"):
        # Padding totals k-1 on both axes: filter2D's own border handling gives the
        # result directly; anchor (pad_before) makes even kernels match torch.
        out = _filter(x, w32, (gw.pad_before, gh.pad_before), _CV_BORDER[mode])
        return out[:, :, None] if out.ndim == 2 and len(shape) == 3 else out  # H×W×1 stays
    padded = cv2.copyMakeBorder(
        x, gh.pad_before, gh.pad_after, gw.pad_before, gw.pad_after, _CV_BORDER[mode], value=0
    )
    # With anchor (0, 0) the first out×out outputs only read padded pixels, never
    # filter2D's own border, so any padding the user asked for is honoured.
    del x  # when it is a float32 copy made for filter2D, free it before the large result
    full = _filter(padded, w32, (0, 0), cv2.BORDER_CONSTANT)
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


def correlate2d(
    x: np.ndarray,
    w: np.ndarray,
    gh: AxisGeometry,
    gw: AxisGeometry,
    mode: str,
    method: str,
) -> np.ndarray:
    fast_ok = opencv_path_applies(gh, gw)
    if method == "opencv" and not fast_ok:
        raise ValueError("the OpenCV path only handles stride 1 and dilation 1")
    if method == "numpy" or not fast_ok:
        return _correlate2d_numpy(x, w, gh, gw, mode)
    return _correlate2d_opencv(x, w, gh, gw, mode)


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
        part = _filter(x[a:b], w32, (gw.pad_before, gh.pad_before), _CV_BORDER[mode])
        part = part[r0 - a : r1 - a]
        if part.ndim == 2 and total.ndim == 3:
            part = part[:, :, None]
        np.square(part, out=part)
        total[r0:r1] += part


def correlate_kernel(
    x: np.ndarray, kernel: Kernel, gh: AxisGeometry, gw: AxisGeometry, mode: str, method: str
) -> np.ndarray:
    """One 2D kernel on one frame: its component, or the magnitude of its components.

    The magnitude sqrt(gx² + gy²) is accumulated in place, so at most one more
    float32 image than the result exists at any time (a band of one, on the
    direct OpenCV path).
    """
    first = correlate2d(x, kernel.components[0], gh, gw, mode, method)
    if kernel.combine is None:
        return first
    total = np.square(first, out=first)  # a fresh array (or a crop of one): squared in place
    del first
    for w in kernel.components[1:]:
        if direct_path(gh, gw, mode, method):
            _add_squares_by_bands(total, x, w, gh, gw, mode)
            continue
        part = correlate2d(x, w, gh, gw, mode, method)
        np.square(part, out=part)
        total += part
        del part
    return np.sqrt(total, out=total)


# Output rows a band of correlate_bands holds, per value of a row: about 256k
# float32 values (1 MB), so that the filter's output, the magnitude's squares
# and the conversion to pixels each pass over memory still in the CPU's cache.
# Measured on a 720p colour frame: Sobel magnitude and pixels in 4.4 ms by
# bands of 64 rows, 10.6 ms on the whole frame (more rows: slower again).
_CACHE_BAND_VALUES = 64 * 1280 * 3


def bands_apply(kernel: Kernel, gh: AxisGeometry, gw: AxisGeometry, mode: str) -> bool:
    """Whether correlate_bands gives correlate_kernel's bits: the direct path, direct kernels.

    filter2D computes kernels of 50 taps or more through a DFT whose rounding
    depends on the size of what it filters, so a band of rows would not give
    the rows of the whole frame bit for bit; those frames are filtered whole.
    """
    return direct_path(gh, gw, mode, "auto") and all(w.size < _DFT_TAPS for w in kernel.components)


def correlate_bands(
    x: np.ndarray, kernel: Kernel, gh: AxisGeometry, gw: AxisGeometry, mode: str
) -> Iterator[tuple[int, int, np.ndarray]]:
    """correlate_kernel's result on the direct path, a band of rows at a time.

    Yields (first row, end row, float32 rows): each band is computed from the
    input rows its kernel reaches, with the image's own border at its top and
    bottom (see _add_squares_by_bands), so the bands are bit for bit the rows
    of correlate_kernel's result. A caller that turns each band into pixels
    before the next is computed keeps every pass in the CPU's cache.
    """
    if not bands_apply(kernel, gh, gw, mode):
        raise ValueError("correlate_bands needs the direct OpenCV path and direct kernels")
    x = _as_cv_source(x)
    height = x.shape[0]
    per_row = max(1, int(np.prod(x.shape[1:])))
    rows = max(8, _CACHE_BAND_VALUES // per_row)
    halo = gh.pad_before + gh.pad_after + 1
    weights = [w.astype(np.float32) for w in kernel.components]
    anchor, border = (gw.pad_before, gh.pad_before), _CV_BORDER[mode]
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        a, b = max(0, r0 - halo), min(height, r1 + halo)
        band = x[a:b]
        total = None
        for w32 in weights:
            part = _filter(band, w32, anchor, border)[r0 - a : r1 - a]
            if part.ndim == 2 and x.ndim == 3:
                part = part[:, :, None]  # OpenCV drops a single channel axis
            if kernel.combine is None:
                total = part
            elif total is None:
                total = np.square(part, out=part)
            else:
                total += np.square(part, out=part)
        if kernel.combine is not None:
            np.sqrt(total, out=total)
        yield r0, r1, total
