"""ops.convolve against independent references: scipy.ndimage and torch's conv2d/conv3d."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import ops
from cnnkit.errors import InputError
from cnnkit.kernels import parse_kernel

MODES = ["zeros", "reflect", "replicate", "circular"]
SCIPY_MODE = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest", "circular": "wrap"}
RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (13, 17), dtype=np.uint8)
COLOUR = RNG.integers(0, 256, (11, 14, 3), dtype=np.uint8)
VIDEO = RNG.integers(0, 256, (7, 9, 10), dtype=np.uint8)
KERNELS_2D = ["sobel-x", "gaussian:5,1", "box:2", "1,2,3,4;5,6,7,8", "log:6,1.2", "2,-1;0,3;1,1"]


def torch_reference(x, w, stride=1, padding="same", mode="reflect", dilation=1):
    """conv2d/conv3d (float64) after F.pad with the mode, as nn.Conv2d(padding_mode=...) does."""
    nd = w.ndim
    strides = (stride,) * nd if isinstance(stride, int) else tuple(stride)
    dils = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    if padding == "same":
        pads = [
            (d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
            for k, d in zip(w.shape, dils, strict=False)
        ]
    elif padding == "valid":
        pads = [(0, 0)] * nd
    else:
        pads = [(padding, padding)] * nd
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))[None, None]
    flat = [v for pair in reversed(pads) for v in pair]  # F.pad wants the last axis first
    t = F.pad(t, flat) if mode == "zeros" else F.pad(t, flat, mode=mode)
    conv = F.conv2d if nd == 2 else F.conv3d
    return conv(t, torch.from_numpy(w)[None, None], stride=strides, dilation=dils)[0, 0].numpy()


def assert_close(ours, ref):
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3 * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize(
    "spec", ["sobel-x", "gaussian:5,1.2", "laplacian", "emboss", "1,2,3;4,5,6"]
)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["opencv", "numpy"])
def test_matches_scipy_correlate(spec, mode, method):
    w = parse_kernel(spec).weights
    # scipy centres even sizes at k//2, torch's 'same' at (k-1)//2: shift by the difference.
    origin = [(k - 1) // 2 - k // 2 for k in w.shape]
    ref = ndi.correlate(GRAY.astype(np.float64), w, mode=SCIPY_MODE[mode], origin=origin)
    assert_close(ops.convolve(GRAY, spec, padding_mode=mode, method=method), ref)


@pytest.mark.parametrize("spec", KERNELS_2D)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", ["same", "valid", 2])
@pytest.mark.parametrize("method", ["opencv", "numpy"])
def test_stride_1_matches_torch_conv2d(spec, mode, padding, method):
    w = parse_kernel(spec).weights
    ours = ops.convolve(GRAY, spec, padding=padding, padding_mode=mode, method=method)
    assert_close(ours, torch_reference(GRAY, w, padding=padding, mode=mode))


@pytest.mark.parametrize("spec", KERNELS_2D)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "stride, dilation, padding", [(2, 1, "same"), (3, 1, 1), (1, 2, "same"), ((2, 1), (1, 2), 2)]
)
def test_stride_and_dilation_match_torch_conv2d(spec, mode, stride, dilation, padding):
    w = parse_kernel(spec).weights
    ours = ops.convolve(GRAY, spec, stride, padding, mode, dilation)
    assert_close(ours, torch_reference(GRAY, w, stride, padding, mode, dilation))
    # output_shape predicts what convolve returns
    assert ops.output_shape(GRAY.shape, w.shape, stride, padding, dilation) == ours.shape


@pytest.mark.parametrize("spec", ["temporal-diff", "box3d:2", "sobel3d-t", "gaussian3d:3,1"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "stride, dilation, padding",
    [(1, 1, "same"), ((2, 1, 2), 1, "same"), (1, (2, 1, 1), "same"), (1, 1, "valid"), (2, 1, 1)],
)
def test_3d_matches_torch_conv3d(spec, mode, stride, dilation, padding):
    w = parse_kernel(spec).weights
    ours = ops.convolve(VIDEO, spec, stride, padding, mode, dilation)
    assert_close(ours, torch_reference(VIDEO, w, stride, padding, mode, dilation))


def test_3d_same_keeps_frame_count_and_temporal_diff_is_next_minus_this():
    out = ops.convolve(VIDEO, "temporal-diff")
    assert out.shape == VIDEO.shape
    v = VIDEO.astype(np.float32)
    np.testing.assert_array_equal(out[:-1], v[1:] - v[:-1])
    np.testing.assert_array_equal(out[-1], v[-2] - v[-1])  # reflect: frame T is frame T-2


def test_colour_is_per_channel_gray():
    for spec, kw in [("sobel-x", {}), ("gaussian:4,1", {"stride": 2}), ("sobel", {})]:
        colour = ops.convolve(COLOUR, spec, **kw)
        for c in range(3):
            np.testing.assert_allclose(colour[..., c], ops.convolve(COLOUR[..., c], spec, **kw))
    clip = np.stack([VIDEO, VIDEO[::-1], 255 - VIDEO], axis=-1)
    out = ops.convolve(clip, "sobel3d-t")
    np.testing.assert_allclose(out[..., 1], ops.convolve(VIDEO[::-1], "sobel3d-t"), atol=1e-3)


@pytest.mark.parametrize("spec", KERNELS_2D + ["sobel", "gaussian:15,3"])
@pytest.mark.parametrize("mode", MODES)
def test_opencv_and_numpy_paths_agree(spec, mode):
    for x in (GRAY, COLOUR, COLOUR.astype(np.float32) - 100, GRAY.astype(np.uint16) * 200):
        fast = ops.convolve(x, spec, padding_mode=mode, method="opencv")
        general = ops.convolve(x, spec, padding_mode=mode, method="numpy")
        np.testing.assert_allclose(fast, general, atol=1e-3 * max(1, np.abs(general).max()))


def test_magnitude_and_flip():
    gx = ops.convolve(GRAY, "sobel-x")
    gy = ops.convolve(GRAY, "sobel-y")
    np.testing.assert_allclose(ops.convolve(GRAY, "sobel"), np.hypot(gx, gy), rtol=1e-5)
    w = parse_kernel("1,2,3;4,5,6;7,8,10").weights
    ref = ndi.convolve(GRAY.astype(np.float64), w, mode="mirror")  # true convolution
    assert_close(ops.convolve(GRAY, w, flip=True), ref)


def test_values_are_used_as_stored_and_negatives_kept():
    out = ops.convolve(GRAY, "identity")
    np.testing.assert_array_equal(out, GRAY.astype(np.float32))
    ramp = np.tile(np.arange(10, dtype=np.uint8) * 20, (5, 1))
    assert (ops.convolve(ramp, "-1,0,1")[:, 1:-1] == 40).all()
    assert (ops.convolve(ramp, "1,0,-1")[:, 1:-1] == -40).all()


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.sampled_from(["same", "valid", 0, 1, 2]),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 1000),
)
def test_random_geometry_matches_torch(h, w, kh, kw, stride, dilation, padding, mode, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (h, w)).astype(np.uint8)
    k = rng.normal(size=(kh, kw))
    try:
        ref = torch_reference(x, k, stride, padding, mode, dilation)
    except RuntimeError:  # torch refuses (padding too wide, or empty output): so must we
        with pytest.raises(InputError):
            ops.convolve(x, k, stride, padding, mode, dilation)
        return
    if ref.size == 0:
        with pytest.raises(InputError):
            ops.convolve(x, k, stride, padding, mode, dilation)
        return
    assert_close(ops.convolve(x, k, stride, padding, mode, dilation), ref)


def test_errors_are_clear():
    with pytest.raises(InputError, match="reflect padding of 5"):
        ops.convolve(GRAY[:4, :4], "box:11")
    with pytest.raises(InputError, match="output would be empty"):
        ops.convolve(GRAY, "box:20", padding="valid")
    with pytest.raises(InputError, match="stride must be"):
        ops.convolve(GRAY, "box", stride=0)
    with pytest.raises(InputError, match="dilation must be"):
        ops.convolve(GRAY, "box", dilation=0)
    with pytest.raises(InputError, match="padding must be"):
        ops.convolve(GRAY, "box", padding=-1)
    with pytest.raises(InputError, match="3D kernel needs"):
        ops.convolve(GRAY, "box3d")
    with pytest.raises(InputError, match="3 values for a 2D kernel"):
        ops.convolve(GRAY, "box", stride=(1, 2, 2))


def test_explain_fills_in_the_formula():
    e = ops.explain((20, 30, 3), "sobel-x", stride=2, padding="same", dilation=(1, 2))
    assert e.output_shape == (10, 15, 3)
    h, w = e.axes
    assert h.formula() == "height: floor((20 + 2·1 - 1·(3-1) - 1) / 2) + 1 = 10"
    assert w.formula() == "width: floor((30 + 2·2 - 2·(3-1) - 1) / 2) + 1 = 15"
    even = ops.explain((8, 8), "box:4").axes[0]
    assert (even.pad_before, even.pad_after) == (1, 2)  # torch's 'same' for even kernels
    assert e.to_dict()["axes"][1]["padding"] == [2, 2]


def test_convolve_frames_streams():
    """The first output frame is yielded after reading only the frames it needs."""
    kernel = parse_kernel("temporal-diff")
    axes = ops.resolve_geometry(VIDEO.shape, kernel.shape)
    read = []

    def frames():
        for i, f in enumerate(VIDEO):
            read.append(i)
            yield f

    stream = ops.convolve_frames(frames(), len(VIDEO), kernel, axes)
    first = next(stream)
    assert read == [0, 1]
    np.testing.assert_array_equal(first, VIDEO[1].astype(np.float32) - VIDEO[0])
    assert len([first, *stream]) == len(VIDEO)


def test_ops_never_imports_torch():
    code = (
        "import sys, numpy as np; from cnnkit import ops; "
        "ops.convolve(np.ones((5, 5, 3), np.uint8), 'sobel', stride=2); "
        "ops.convolve(np.ones((4, 5, 5)), 'box3d'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
