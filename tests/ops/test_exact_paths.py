"""The exact shortcuts of ops.conv2d: separable passes and bands give filter2D's very bits.

``exact_factors`` decides when cv2.sepFilter2D may stand in for cv2.filter2D
(every partial sum exact in float32), ``_filter`` takes that shortcut, and
``correlate_bands`` computes a frame a band of rows at a time. Each must give
the bits of the plain computation, not merely close values.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cnnkit.kernels import Kernel, parse_kernel
from cnnkit.ops import conv2d, resolve_geometry
from cnnkit.ops.conv2d import _filter, correlate_bands, correlate_kernel, exact_factors

_PEAKS = {np.uint8: 255.0, np.uint16: 65535.0}


def _w(rows) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


# Kernels with integer or dyadic factors whose passes are exact on 8- and 16-bit pixels.
_SEPARABLE = {
    "sobel-x": _w([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "sobel-y": _w([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "scharr-x": _w([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]),
    "scharr-y": _w([[-3, -10, -3], [0, 0, 0], [3, 10, 3]]),
    "prewitt-x": _w([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
    "prewitt-y": _w([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
    "binomial": _w([[1, 2, 1], [2, 4, 2], [1, 2, 1]]),
    "binomial/16": _w([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
    "binomial-5/256": _w(np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])) / 256,
    "binomial-4x4": _w(np.outer([1, 3, 3, 1], [1, 3, 3, 1])),
    "box-7x7": np.ones((7, 7), np.float32),  # 49 taps: the last size filter2D computes directly
    "3x5": _w(np.outer([1, -2, 1], [1, 0, -2, 0, 1])),
    "edge-of-exact": _w(np.outer([1, 14, 1], [1, 14, 1])),  # 16*16*65535 < 2**24
}


# ---------------------------------------------------------------------------
# exact_factors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_SEPARABLE))
@pytest.mark.parametrize("peak", [255.0, 65535.0])
def test_exact_factors_are_found_and_their_outer_product_is_the_kernel(name, peak):
    w = _SEPARABLE[name]
    factors = exact_factors(w, peak)
    assert factors is not None, f"no exact factors for {name} at peak {peak}"
    column, row = factors
    assert column.dtype == row.dtype == np.float32
    assert column.shape == (w.shape[0],) and row.shape == (w.shape[1],)
    assert np.array_equal(np.outer(column, row), w)
    # The partial sums stay below 2**24 units of the factors' finest binary fraction.
    for f in (column, row):
        scaled = f.astype(np.float64) * 2.0**24
        assert np.array_equal(scaled, np.round(scaled))


def test_exact_factors_of_the_named_gradient_kernels():
    for spec in ("sobel", "scharr", "prewitt"):
        for w in parse_kernel(spec).components:
            w32 = w.astype(np.float32)
            factors = exact_factors(w32, 255.0)
            assert factors is not None, spec
            assert np.array_equal(np.outer(*factors), w32)


@pytest.mark.parametrize(
    "name, w",
    [
        ("gaussian real weights", parse_kernel("gaussian:5,1.2").weights.astype(np.float32)),
        ("gaussian 3", parse_kernel("gaussian:3,1").weights.astype(np.float32)),
        ("rank-2 laplacian", parse_kernel("laplacian").weights.astype(np.float32)),
        ("rank-2 random", _w([[1, 2, 3], [4, 5, 6], [7, 8, 10]])),
        ("9x9, 81 taps", np.ones((9, 9), np.float32)),
        ("8x8, 64 taps", _w(np.outer([1, 1, 1, 1, 1, 1, 1, 1], [1, 2, 1, 2, 1, 2, 1, 2]))),
        ("1 row", _w([[1, 2, 1]])),
        ("1 column", _w([[1], [2], [1]])),
        ("1 tap", _w([[3]])),
        ("all zeros", np.zeros((3, 3), np.float32)),
        ("box 3 (1/9)", parse_kernel("box:3").weights.astype(np.float32)),
    ],
)
def test_exact_factors_refuses(name, w):
    assert exact_factors(w, 255.0) is None
    assert exact_factors(w, 65535.0) is None


def test_exact_factors_refuses_sums_past_2_to_the_24_units():
    # |column| sums to 17 and |row| to 17: 289 * 65535 > 2**24, but 289 * 255 is not.
    w = _w(np.outer([1, 15, 1], [1, 15, 1]))
    assert 17 * 17 * 65535 > 2**24 > 17 * 17 * 255
    assert exact_factors(w, 65535.0) is None
    assert exact_factors(w, 255.0) is not None
    # A row whose own pass overflows: 2**9 * 65535 > 2**24 in units of 1.
    wide = _w(np.outer([1, 1], [256, 0, 256]))
    assert exact_factors(wide, 65535.0) is None
    assert exact_factors(wide, 255.0) is not None
    # Weights finer than 2**-24 cannot be exact at all.
    fine = _w(np.outer([1, 2**-20, 1], [1, 2**-20, 1]))
    assert exact_factors(fine, 255.0) is None


def test_exact_factors_caches_by_value_not_by_identity():
    a = _w([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    b = a.copy()
    first = exact_factors(a, 255.0)
    b[1, 1] = 5  # same shape, no longer rank 1
    assert first is not None
    assert exact_factors(b, 255.0) is None
    assert exact_factors(a.reshape(1, 9).copy(), 255.0) is None  # same bytes, another shape


# ---------------------------------------------------------------------------
# _filter: sepFilter2D in place of filter2D
# ---------------------------------------------------------------------------

_BORDERS = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect101": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
}


def _random(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("name", sorted(_SEPARABLE))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
def test_filter_gives_filter2d_bits(name, dtype, channels):
    w = _SEPARABLE[name]
    assert exact_factors(w, _PEAKS[dtype]) is not None  # the shortcut is what is under test
    shape = (37, 29) if channels == 1 else (31, 23, channels)
    # Extremes too: the largest partial sums come from all-peak and 0/peak patterns.
    images = [_random(shape, dtype, seed=s) for s in range(2)]
    peak = np.iinfo(dtype).max
    checker = np.indices(shape[:2]).sum(axis=0) % 2 * peak
    if channels > 1:
        checker = np.repeat(checker[:, :, None], channels, axis=2)
    images += [np.full(shape, peak, dtype), checker.astype(dtype)]
    kh, kw = w.shape
    anchors = [(-1, -1), (0, 0), (kw - 1, kh - 1), (kw // 2, 0)]
    for x in images:
        for border_name, border in _BORDERS.items():
            for anchor in anchors:
                want = cv2.filter2D(x, cv2.CV_32F, w, anchor=anchor, borderType=border)
                got = _filter(x, w, anchor, border)
                assert got.dtype == np.float32 and got.shape == want.shape
                differ = np.count_nonzero(got != want)
                assert differ == 0, (
                    f"{name} {np.dtype(dtype).name} {border_name} anchor {anchor}: "
                    f"{differ} values differ, max {np.abs(got - want).max()}"
                )


@pytest.mark.parametrize(
    "column, row, dtype",
    [
        ([1, 15, 1], [1, 15, 1], np.uint16),  # refused only for 16-bit input
        ([1, 255, 1], [1, 255, 3], np.uint16),
        (list(cv2.getGaussianKernel(5, 1.2).ravel()), list(cv2.getGaussianKernel(5, 1.2).ravel()),
         np.uint8),
    ],
)  # fmt: skip
def test_refused_factors_would_not_give_filter2d_bits(column, row, dtype):
    """The refusals matter: two passes over these factors round differently from filter2D."""
    column, row = np.float32(column), np.float32(row)
    w = np.outer(column, row)
    assert exact_factors(w, _PEAKS[dtype]) is None
    x = _random((64, 64, 3), dtype)
    want = cv2.filter2D(x, cv2.CV_32F, w, borderType=cv2.BORDER_REFLECT_101)
    separable = cv2.sepFilter2D(x, cv2.CV_32F, row, column, borderType=cv2.BORDER_REFLECT_101)
    assert np.count_nonzero(separable != want) > 0
    assert np.array_equal(_filter(x, w, (-1, -1), cv2.BORDER_REFLECT_101), want)


def test_filter_without_exact_factors_is_filter2d():
    x = _random((21, 19, 3), np.uint8)
    w = parse_kernel("gaussian:5,1.2").weights.astype(np.float32)
    want = cv2.filter2D(x, cv2.CV_32F, w, anchor=(1, 3), borderType=cv2.BORDER_REPLICATE)
    assert np.array_equal(_filter(x, w, (1, 3), cv2.BORDER_REPLICATE), want)


# ---------------------------------------------------------------------------
# correlate_bands
# ---------------------------------------------------------------------------


def _magnitude(name: str, *components: np.ndarray) -> Kernel:
    return Kernel(name, tuple(np.asarray(c, np.float64) for c in components), "magnitude")


_BAND_KERNELS = {
    "sobel": parse_kernel("sobel"),
    "scharr": parse_kernel("scharr"),
    "sobel-x": parse_kernel("sobel-x"),
    "laplacian": parse_kernel("laplacian"),
    "gaussian:5,1.2": parse_kernel("gaussian:5,1.2"),
    "box:7": parse_kernel("box:7"),
    "log:7,1.4": parse_kernel("log:7,1.4"),
    "2x2": parse_kernel("1,-1;2,3"),
    "4x4 random": parse_kernel("1,2,0,-1;3,-2,1,4;0,1,-3,2;2,2,1,-1"),
    "2x6": parse_kernel("1,2,3,3,2,1;-1,-2,-3,-3,-2,-1"),
    "4x4 magnitude": _magnitude(
        "m4", np.outer([1, 3, 3, 1], [-1, -1, 1, 1]), np.outer([-1, -1, 1, 1], [1, 3, 3, 1])
    ),
    "7x7 magnitude": _magnitude(
        "m7",
        np.outer([1, 6, 15, 20, 15, 6, 1], [-1, -2, -3, 0, 3, 2, 1]),
        np.outer([-1, -2, -3, 0, 3, 2, 1], [1, 6, 15, 20, 15, 6, 1]),
    ),
}


def _geometry(shape, kernel):
    return resolve_geometry(shape[:2], kernel.shape, 1, "same", 1)


def _bands(x, kernel, mode):
    gh, gw = _geometry(x.shape, kernel)
    bands = list(correlate_bands(x, kernel, gh, gw, mode))
    want = correlate_kernel(x, kernel, gh, gw, mode, "auto")
    if want.ndim == 2 and x.ndim == 3:
        # A dropped single channel axis is test_a_single_channel_axis_is_kept's
        # failure (it was one while these tests were written): compare values here.
        want = want[:, :, None]
    return bands, want


@pytest.mark.parametrize("mode", ["reflect", "zeros", "replicate"])
@pytest.mark.parametrize("name", sorted(_BAND_KERNELS))
def test_correlate_bands_are_the_rows_of_correlate_kernel(monkeypatch, name, mode):
    kernel = _BAND_KERNELS[name]
    for width, tail, dtype in [
        (23, (), np.uint8),
        (19, (1,), np.uint8),
        (17, (3,), np.uint8),
        (21, (3,), np.uint16),
        (15, (2,), np.float32),
    ]:
        per_row = width * int(np.prod(tail, dtype=int))
        # Bands of exactly 8 rows (the fewest correlate_bands makes).
        monkeypatch.setattr(conv2d, "_CACHE_BAND_VALUES", 8 * per_row)
        for height in (3, 7, 8, 16, 29):  # under one band, one band, two, several + a rest
            shape = (height, width, *tail)
            if dtype == np.float32:
                x = np.random.default_rng(height).random(shape, dtype=np.float32)
            else:
                x = _random(shape, dtype, seed=height)
            if mode == "reflect" and max(kernel.shape) // 2 >= min(height, width):
                continue  # reflect padding wider than the input is refused earlier
            bands, want = _bands(x, kernel, mode)
            assert [(r0, r1) for r0, r1, _ in bands] == [
                (r0, min(height, r0 + 8)) for r0 in range(0, height, 8)
            ]
            got = np.concatenate([b for _, _, b in bands])
            assert got.dtype == np.float32 and got.shape == want.shape == shape
            differ = np.count_nonzero(got != want)
            assert differ == 0, f"{shape} {np.dtype(dtype).name}: {differ} values differ"


@pytest.mark.parametrize("name", ["sobel", "4x4 random", "7x7 magnitude"])
def test_correlate_bands_with_the_default_band_size(name):
    kernel = _BAND_KERNELS[name]
    rows = conv2d._CACHE_BAND_VALUES // (61 * 3)
    x = _random((2 * rows + 5, 61, 3), np.uint8, seed=4)
    bands, want = _bands(x, kernel, "reflect")
    assert len(bands) == 3
    assert np.array_equal(np.concatenate([b for _, _, b in bands]), want)
    one = _random((rows, 61, 3), np.uint8, seed=5)  # exactly one band
    bands, want = _bands(one, kernel, "reflect")
    assert len(bands) == 1 and np.array_equal(bands[0][2], want)


@pytest.mark.parametrize(
    "stride, padding, dilation, mode",
    [
        (2, "same", 1, "reflect"),
        (1, "same", 2, "reflect"),
        (1, "valid", 1, "reflect"),
        (1, 2, 1, "zeros"),
        (1, "same", 1, "circular"),
    ],
)
def test_correlate_bands_refuses_other_geometries(stride, padding, dilation, mode):
    kernel = parse_kernel("sobel")
    x = _random((20, 20), np.uint8)
    gh, gw = resolve_geometry(x.shape, kernel.shape, stride, padding, dilation)
    with pytest.raises(ValueError, match="direct"):
        next(correlate_bands(x, kernel, gh, gw, mode))


@pytest.mark.parametrize("spec", ["sobel-x", "sobel", "gaussian:5,1.2"])
@pytest.mark.parametrize(
    "stride, padding, mode",
    [(1, "same", "reflect"), (1, 1, "zeros"), (1, "same", "circular"), (2, "same", "reflect")],
)
def test_a_single_channel_axis_is_kept(spec, stride, padding, mode):
    """H×W×1 in, H'×W'×1 out on every path, as output_shape says (channels are kept)."""
    from cnnkit import ops

    kernel = parse_kernel(spec)
    x = _random((10, 12, 1), np.uint8)
    gh, gw = resolve_geometry(x.shape[:2], kernel.shape, stride, padding, 1)
    want = ops.output_shape(x.shape, kernel.shape, stride, padding)
    assert want[-1] == 1
    assert correlate_kernel(x, kernel, gh, gw, mode, "auto").shape == want
    assert ops.convolve(x, kernel, stride, padding, mode).shape == want
    numpy_path = ops.convolve(x, kernel, stride, padding, mode, method="numpy")
    assert numpy_path.shape == want


def test_a_single_channel_video_array_with_a_3d_kernel():
    from cnnkit import ops

    x = _random((4, 10, 12, 1), np.uint8)
    want = ops.convolve(x, "sobel3d-t", method="numpy")
    assert want.shape == (4, 10, 12, 1)
    got = ops.convolve(x, "sobel3d-t")  # the OpenCV path
    assert got.shape == want.shape and np.array_equal(got, want)
