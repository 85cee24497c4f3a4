"""The kernel bank and the --kernel spec parser."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cnnkit.errors import KernelError
from cnnkit.kernels import (
    format_kernel,
    kernel_defs,
    kernel_names,
    load_kernel_file,
    named_kernel,
    parse_kernel,
)

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)

DESIGN_MINIMUM = [
    "identity", "box", "gaussian", "sharpen", "sobel", "sobel-x", "sobel-y", "scharr",
    "scharr-x", "scharr-y", "prewitt", "prewitt-x", "prewitt-y", "laplacian", "log",
    "emboss", "outline", "temporal-diff", "box3d", "gaussian3d",
]  # fmt: skip


def test_bank_has_the_design_minimum():
    assert set(DESIGN_MINIMUM) <= set(kernel_names())


@pytest.mark.parametrize("kdef", kernel_defs(), ids=lambda d: d.name)
def test_every_bank_kernel_is_finite_and_has_its_dims(kdef):
    k = named_kernel(kdef.name)
    assert k.ndim == kdef.dims
    for c in k.components:
        assert c.dtype == np.float64 and np.isfinite(c).all() and c.shape == k.shape
    assert format_kernel(k)  # renders for --list-kernels


def test_named_values():
    np.testing.assert_array_equal(parse_kernel("sobel-x").weights, SOBEL_X)
    np.testing.assert_array_equal(parse_kernel("sobel-y").weights, SOBEL_X.T)
    sobel = parse_kernel("sobel")
    assert sobel.is_magnitude and len(sobel.components) == 2
    np.testing.assert_array_equal(sobel.components[1], SOBEL_X.T)
    assert parse_kernel("scharr-x").weights[1, 2] == 10
    assert parse_kernel("identity").weights.sum() == 1
    assert parse_kernel("laplacian").weights.sum() == 0
    assert parse_kernel("SOBEL-X").name == "sobel-x"  # case-insensitive names


def test_parametrised_kernels():
    g = parse_kernel("gaussian:7,1.5")
    assert g.shape == (7, 7) and g.name == "gaussian:7,1.5" and g.slug == "gaussian-7-1.5"
    ref = cv2.getGaussianKernel(7, 1.5)
    np.testing.assert_allclose(g.weights, ref @ ref.T, atol=1e-12)
    np.testing.assert_allclose(parse_kernel("box:5").weights, np.full((5, 5), 1 / 25))
    log = parse_kernel("log:9,1.4")
    assert log.shape == (9, 9) and abs(log.weights.sum()) < 1e-9
    assert log.weights[4, 4] == log.weights.min()  # the centre is the negative peak
    b3 = parse_kernel("box3d:3")
    assert b3.shape == (3, 3, 3) and np.isclose(b3.weights.sum(), 1)
    g3 = parse_kernel("gaussian3d:3,1.0")
    assert g3.shape == (3, 3, 3) and np.isclose(g3.weights.sum(), 1)
    assert g3.weights[1, 1, 1] == g3.weights.max()
    td = parse_kernel("temporal-diff")
    np.testing.assert_array_equal(td.weights.ravel(), [-1, 1])
    assert td.shape == (2, 1, 1)


def test_inline_2d_and_3d():
    np.testing.assert_array_equal(parse_kernel("1,0,-1;2,0,-2;1,0,-1").weights, -SOBEL_X)
    np.testing.assert_array_equal(parse_kernel(" 1 0 -1 ; 2 0 -2 ; 1 0 -1 ").weights, -SOBEL_X)
    np.testing.assert_allclose(parse_kernel("1/4,1/4;1/4,1/4").weights, np.full((2, 2), 0.25))
    k3 = parse_kernel("0,0;0,-1 | 0,0;0,1 | 1,1;1,1")
    assert k3.shape == (3, 2, 2) and k3.weights[1, 1, 1] == 1 and k3.weights[2].sum() == 4
    row = parse_kernel("1,2,1")
    assert row.shape == (1, 3)


def test_kernel_files(tmp_path):
    txt = tmp_path / "edge.txt"
    txt.write_text("# a comment\n1 0 -1\n2 0 -2  # trailing\n1 0 -1\n")
    k = parse_kernel(str(txt))
    np.testing.assert_array_equal(k.weights, -SOBEL_X)
    assert k.name == "edge"
    csv = tmp_path / "k.csv"
    csv.write_text("1,2\n3,4\n")
    np.testing.assert_array_equal(parse_kernel(str(csv)).weights, [[1, 2], [3, 4]])
    cube = tmp_path / "cube.txt"
    cube.write_text("1 2\n3 4\n\n\n5 6\n7 8\n|\n9 10\n11 12\n\n")
    k3 = load_kernel_file(cube)
    assert k3.shape == (3, 2, 2) and k3.weights[2, 1, 1] == 12
    for shape in [(3, 3), (2, 3, 3)]:
        arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        np.save(tmp_path / "k.npy", arr)
        np.testing.assert_array_equal(parse_kernel(str(tmp_path / "k.npy")).weights, arr)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("sobl", "did you mean 'sobel'"),
        ("gausian:5,1", "did you mean 'gaussian'"),
        ("1,nan;1,1", "not finite"),
        ("1,inf", "not finite"),
        ("1e308,1;1,1", "contains '1e308' (not finite in float32"),
        ("1|-4e38", "contains '-4e38' (not finite in float32"),
        ("1,0;1", "ragged"),
        ("1,2;;3,4", "empty row"),
        ("1,x,3", "'x'"),
        ("1,2|1", "different shapes"),
        ("gaussian:0,1", ">= 1"),
        ("box:2.5", "whole number"),
        ("gaussian:5,-1", "sigma"),
        ("sobel:3", "takes 0 parameter"),
        ("box:", "empty"),
        ("missing.npy", "not found"),
        ("", "empty kernel"),
    ],
)
def test_bad_specs_raise_kernel_error(spec, words):
    with pytest.raises(KernelError) as info:
        parse_kernel(spec)
    assert words in str(info.value)


def test_bad_kernel_files(tmp_path):
    np.save(tmp_path / "flat.npy", np.ones(3))
    np.save(tmp_path / "deep.npy", np.ones((2, 2, 2, 2)))
    np.save(tmp_path / "empty.npy", np.ones((0, 3)))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(tmp_path / "huge.npy", np.array([[1.0, -1e39]]))
    (tmp_path / "blank.txt").write_text("# only a comment\n\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    cases = {
        "flat.npy": "1 dimension",
        "deep.npy": "4 dimension",
        "empty.npy": "empty",
        "nan.npy": "NaN",
        "huge.npy": "not finite in float32",
        "blank.txt": "no values",
        "ragged.csv": "ragged",
        "junk.npy": "cannot read",
    }
    for name, words in cases.items():
        with pytest.raises(KernelError, match=words):
            parse_kernel(str(tmp_path / name))


def test_flip_and_bounds():
    k = parse_kernel("1,2;3,4").flipped()
    np.testing.assert_array_equal(k.weights, [[4, 3], [2, 1]])
    assert parse_kernel("sobel-x").value_bounds(0, 255) == (-1020, 1020)
    assert parse_kernel("box").value_bounds(0, 255) == pytest.approx((0, 255))


def test_largest_result_and_float32_range():
    sobel_x = parse_kernel("sobel-x")
    assert sobel_x.largest_result(255) == 8 * 255
    assert parse_kernel("sobel").largest_result(255) == 2 * (8 * 255) ** 2  # gx² + gy²
    parse_kernel("1e34").check_float32_range(255, "8-bit input")  # 2.55e36: fits
    with pytest.raises(KernelError, match="overflow float32 on 16-bit input") as info:
        parse_kernel("1e34").check_float32_range(65535, "16-bit input")
    assert "weights down" in info.value.hint


def test_format_matrix_shows_values():
    text = format_kernel(parse_kernel("sobel-x"))
    assert text.splitlines()[1].split() == ["-2", "0", "2"]
    assert "t=1:" in format_kernel(parse_kernel("temporal-diff"))
    assert "sqrt" in format_kernel(parse_kernel("sobel"))
