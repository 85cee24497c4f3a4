"""Media that lies or overwhelms: frame counts, float pixels, memory, overflow, self-overwrite,
FFmpeg's own messages and GIFs (issue 12, items 5, 6, 13, 14, 15, 19, 20)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnkit import cli, ops
from cnnkit.data.preprocess import to_uint8
from cnnkit.errors import InputError, KernelError, ReadError
from cnnkit.io.image import read_image, write_image
from cnnkit.io.sources import kind_of
from cnnkit.io.video import probe_video, read_video
from cnnkit.kernels import Kernel, parse_kernel
from cnnkit.ops import conv2d, limits
from tests.helpers import make_image, make_video

runner = CliRunner()


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def refused(monkeypatch, capsys, *args: str) -> str:
    """Run the console entry (its single error path): exit 1, one ``error:`` line; returns it."""
    monkeypatch.setattr(sys, "argv", ["cnnkit", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert info.value.code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "hint:" in lines[0], err
    return lines[0]


def float_tiff(path: Path, image: np.ndarray) -> None:
    """Write float32 pixels (RGB or gray) as a 32-bit float TIFF, as scientific tools do."""
    bgr = image[:, :, ::-1] if image.ndim == 3 else image
    ok, data = cv2.imencode(".tif", np.ascontiguousarray(bgr, dtype=np.float32))
    assert ok
    path.write_bytes(data.tobytes())
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.float32  # cv2 keeps the float depth: the case under test


# ----------------------------------------------------------------- 5: frames read, not claimed


def lying_avi(path: Path, frames: int, claimed: int) -> np.ndarray:
    """An MJPG AVI of ``frames`` frames whose headers claim ``claimed``.

    The count sits in three places: 'avih' dwTotalFrames, 'strh' dwLength and
    OpenDML's 'dmlh' dwTotalFrames; all are patched.
    """
    clip = make_video(path, frames=frames, h=16, w=16, fourcc="MJPG")
    data = bytearray(path.read_bytes())
    # chunk id, then 4 bytes of size, then the field's offset inside the chunk
    for chunk, offset in ((b"avih", 16), (b"strh", 32), (b"dmlh", 0)):
        at = data.find(chunk)
        if at >= 0:
            struct.pack_into("<I", data, at + 8 + offset, claimed)
    path.write_bytes(bytes(data))
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == claimed  # OpenCV believes the header
    capture.release()
    return clip


@pytest.mark.parametrize("kernel", ["box", "temporal-diff"])
def test_convolve_reports_the_frames_read_not_the_header(here, capsys, kernel):
    lying_avi(here / "v.avi", frames=6, claimed=500)
    doc = json.loads(invoke("convolve", "v.avi", "-k", kernel, "-o", "o.avi", "--json").stdout)
    assert doc["input_shape"] == [6, 16, 16, 3] and doc["output_shape"] == [6, 16, 16, 3]
    assert probe_video(here / "o.avi", exact=True).frames == 6
    invoke("convolve", "v.avi", "-k", kernel, "-o", "o.npy")
    assert np.load(here / "o.npy").shape == (6, 16, 16, 3)
    explained = invoke("convolve", "v.avi", "-k", kernel, "--explain", "--json").stdout
    assert json.loads(explained)["input_shape"] == [6, 16, 16, 3]
    assert not (here / f"v-{kernel}.avi").exists()  # --explain alone writes nothing


def test_wrote_line_counts_the_frames_written(here, monkeypatch, capsys):
    lying_avi(here / "v.avi", frames=4, claimed=500)
    monkeypatch.setattr(sys, "argv", ["cnnkit", "convolve", "v.avi", "-k", "box", "-o", "o.avi"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 0
    assert "wrote o.avi (4×16×16×3)" in capsys.readouterr().err


def test_npy_video_is_streamed_and_exact(here):
    make_video(here / "v.mp4", frames=5, h=16, w=24)
    frames, _ = read_video(here / "v.mp4")
    invoke("convolve", "v.mp4", "-k", "sobel-x", "--gray", "-o", "g.npy")
    raw = np.load(here / "g.npy")
    assert raw.dtype == np.float32 and raw.shape == (5, 16, 24)
    gray = cv2.cvtColor(frames[2], cv2.COLOR_RGB2GRAY)
    np.testing.assert_allclose(raw[2], ops.convolve(gray, "sobel-x"), atol=1e-3)


# ----------------------------------------------------------------- 6: float images


def test_to_uint8_scales_float_0_1_and_refuses_the_rest():
    unit = np.array([[0.0, 0.2], [0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(to_uint8(unit), [[0, 51], [128, 255]])
    np.testing.assert_array_equal(to_uint8(unit.astype(np.float64)), [[0, 51], [128, 255]])
    with pytest.raises(ReadError, match=r"outside 0-1 \(min -0.5, max 3\)") as info:
        to_uint8(np.array([[-0.5, 3.0]], np.float32))
    assert "8- or 16-bit" in info.value.hint
    for bad in (np.nan, np.inf):
        with pytest.raises(ReadError, match="outside 0-1"):
            to_uint8(np.array([[0.5, bad]], np.float32))


def test_inspect_float_tiff_shows_float_statistics(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0.1, 0.9, (8, 10, 3)).astype(np.float32)
    float_tiff(tmp_path / "f.tif", pixels)
    doc = json.loads(invoke("inspect", str(tmp_path / "f.tif"), "--json").stdout)
    assert doc["dtype"] == "float32"
    assert doc["min"] == pytest.approx(float(pixels.min()))
    assert doc["max"] == pytest.approx(float(pixels.max()))
    flat = pixels.reshape(-1, 3).astype(np.float64)
    assert doc["mean"] == pytest.approx(flat.mean(axis=0), abs=1e-4)
    assert doc["std"] == pytest.approx(flat.std(axis=0), abs=1e-4)
    text = invoke("inspect", str(tmp_path / "f.tif")).stdout
    assert "float32" in text and f"{float(pixels.max()):.4g}" in text


def test_convolve_float_tiff_to_8_bit_maps_1_to_255(here):
    rng = np.random.default_rng(2)
    pixels = rng.uniform(0, 1, (10, 12, 3)).astype(np.float32)
    float_tiff(here / "f.tif", pixels)
    invoke("convolve", "f.tif", "-k", "box", "-o", "b.png")
    out = read_image(here / "b.png")
    expected = np.clip(ops.convolve(pixels, "box").astype(np.float64) * 255, 0, 255)
    assert out.dtype == np.uint8
    assert np.abs(out - np.floor(expected + 0.5)).max() <= 1
    assert out.max() > 128  # not the almost black image of a cast to integers


def test_convolve_float_outside_0_1_refused_for_8_bit_kept_in_npy(here, monkeypatch, capsys):
    pixels = np.linspace(-2, 40, 8 * 8, dtype=np.float32).reshape(8, 8)
    float_tiff(here / "f.tif", pixels)
    line = refused(monkeypatch, capsys, "convolve", "f.tif", "-k", "box", "-o", "b.png")
    assert "float image with values outside 0-1 (min -2, max 40)" in line
    assert not (here / "b.png").exists()
    invoke("convolve", "f.tif", "-k", "box", "-o", "b.npy")
    np.testing.assert_allclose(np.load(here / "b.npy"), ops.convolve(pixels, "box"), rtol=1e-6)


# ----------------------------------------------------------------- 13: memory, up front


@pytest.mark.parametrize(
    "name, args",
    [
        ("a.png", ["-k", "sobel", "--padding", "200000"]),
        ("v.mp4", ["-k", "box", "--padding", "200000", "-o", "o.mp4"]),
        ("v.mp4", ["-k", "box3d", "--padding", "1,200000,200000", "-o", "o.mp4"]),
    ],
    ids=["image", "video-2d", "video-3d"],
)
def test_padding_beyond_memory_is_refused_up_front(here, monkeypatch, capsys, name, args):
    make_image(here / "a.png", 8, 8)
    make_video(here / "v.mp4", frames=3, h=8, w=8)
    line = refused(monkeypatch, capsys, "convolve", name, *args, "--padding-mode", "zeros")
    assert "of memory, more than the" in line and "TB" in line and "--padding" in line
    assert sorted(p.name for p in here.iterdir()) == ["a.png", "v.mp4"]


def test_memory_check_uses_what_is_available(monkeypatch):
    image = np.zeros((4, 4), np.uint8)
    monkeypatch.setattr(limits, "_MEMORY_CHECK_BYTES", 0)  # ask even for small results
    # 4×4 zero-padded by 100: 204² values, padded uint8 plus filter2D's float32 = 208,080 bytes
    monkeypatch.setattr(limits, "available_memory", lambda: 300_000)
    assert ops.convolve(image, "box", padding=100, padding_mode="zeros").shape == (202, 202)
    monkeypatch.setattr(limits, "available_memory", lambda: 150_000)
    with pytest.raises(InputError, match=r"needs 208\.1 KB of memory, more than the 150\.0 KB"):
        ops.convolve(image, "box", padding=100, padding_mode="zeros")
    monkeypatch.setattr(limits, "available_memory", lambda: None)  # the OS does not say: go ahead
    assert ops.convolve(image, "box", padding=100, padding_mode="zeros").shape == (202, 202)


# ----------------------------------------------------------------- 14: float32 overflow


def test_kernel_not_finite_in_float32_is_refused(here, monkeypatch, capsys):
    make_image(here / "a.png", 8, 8)
    line = refused(monkeypatch, capsys, "convolve", "a.png", "-k", "1e308,1e308;1e308,1e308")
    assert "contains '1e308' (not finite in float32" in line
    np.save(here / "big.npy", np.full((3, 3), 1e300))
    line = refused(monkeypatch, capsys, "convolve", "a.png", "-k", "big.npy")
    assert "not finite in float32" in line
    assert sorted(p.name for p in here.iterdir()) == ["a.png", "big.npy"]


def test_kernel_whose_result_overflows_float32_is_refused(here, monkeypatch, capsys):
    make_image(here / "a.png", 8, 8)
    line = refused(monkeypatch, capsys, "convolve", "a.png", "-k", "1e38,1e38;1e38,1e38")
    assert "would overflow float32 on 8-bit input" in line
    # 1e34 × 255 fits in float32, 1e34 × 65535 does not: the input's range decides.
    assert np.isfinite(ops.convolve(np.full((4, 4), 255, np.uint8), "1e34")).all()
    with pytest.raises(KernelError, match="overflow float32 on 16-bit input"):
        ops.convolve(np.zeros((4, 4), np.uint16), "1e34")
    # sqrt(gx² + gy²) squares in float32 too: 8e16 × 255 fits, its square does not.
    gx = parse_kernel("sobel-x").weights * 1e16
    big_sobel = Kernel("big-sobel", (gx, gx.T.copy()), "magnitude")
    assert np.isfinite(ops.convolve(np.full((4, 4), 255, np.uint8), gx)).all()
    with pytest.raises(KernelError, match="overflow float32"):
        ops.convolve(np.zeros((4, 4), np.uint8), big_sobel)
    assert sorted(p.name for p in here.iterdir()) == ["a.png"]


# ----------------------------------------------------------------- 15: peak memory


def compressible_png(path: Path, h: int, w: int) -> None:
    """A large RGB PNG of a few kilobytes: ramps that PNG's row filters predict exactly."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([(xx * (c + 1) + yy) % 256 for c in range(3)], axis=2).astype(np.uint8)
    ok = cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_DEFAULT])
    assert ok


def peak_rss_mb(args: list[str], cwd: Path) -> float:
    """Peak resident memory (MB) of ``python -m cnnkit ARGS`` run in a fresh process."""
    code = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'cnnkit', *sys.argv[1:]],"
        " stdout=subprocess.DEVNULL)\n"
        "assert done.returncode == 0, done\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout) / 1024  # ru_maxrss is in kilobytes on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ outside Linux")
def test_peak_memory_per_megapixel_is_bounded(tmp_path):
    """Growth over the same command on a tiny image, per megapixel of a 3000×3000 RGB PNG.

    The decoded image alone is 3 MB per megapixel; measured here: inspect about
    5, convolve -k sobel to PNG about 17 (before issue 12: 28-44 and 49).
    """
    compressible_png(tmp_path / "big.png", 3000, 3000)
    compressible_png(tmp_path / "tiny.png", 16, 16)
    megapixels = 9.0
    bounds = {"inspect": 10.0, "convolve": 24.0}
    commands = {
        "inspect": ["inspect", "{}", "--json"],
        "convolve": ["convolve", "{}", "-k", "sobel", "-o", "out.png"],
    }
    for name, args in commands.items():
        base = peak_rss_mb([a.format("tiny.png") for a in args], tmp_path)
        big = peak_rss_mb([a.format("big.png") for a in args], tmp_path)
        growth = (big - base) / megapixels
        assert growth < bounds[name], f"{name}: {growth:.1f} MB per megapixel"


def test_magnitude_in_row_bands_equals_the_whole_image(monkeypatch):
    """The second gradient is added band by band; bands must not show at their seams."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (23, 9, 3), dtype=np.uint8)
    w5 = rng.normal(size=(5, 5))
    w4 = rng.normal(size=(4, 4))
    for kernel in ("sobel", "scharr"):
        for mode in ("zeros", "reflect", "replicate"):
            whole = ops.convolve(x, kernel, padding_mode=mode, method="numpy")
            monkeypatch.setattr(conv2d, "_BAND_ROWS", 4)
            banded = ops.convolve(x, kernel, padding_mode=mode)
            monkeypatch.undo()
            np.testing.assert_allclose(banded, whole, rtol=1e-5, atol=1e-3)
    for weights in (w5, w4):
        kernel = Kernel("pair", (weights, weights.T.copy()), "magnitude")
        whole = np.hypot(ops.convolve(x, weights), ops.convolve(x, weights.T.copy()))
        monkeypatch.setattr(conv2d, "_BAND_ROWS", 3)
        np.testing.assert_allclose(ops.convolve(x, kernel), whole, rtol=1e-5, atol=1e-3)
        monkeypatch.undo()


# ----------------------------------------------------------------- 19: never the input itself


@pytest.mark.parametrize("output", ["a.png", "./a.png"])
def test_output_that_is_the_input_is_refused(here, monkeypatch, capsys, output):
    make_image(here / "a.png", 8, 8)
    before = (here / "a.png").read_bytes()
    line = refused(monkeypatch, capsys, "convolve", "a.png", "-k", "box", "-o", output)
    assert "is the input file" in line and "--overwrite-input" in line
    assert (here / "a.png").read_bytes() == before


def test_overwrite_input_replaces_it_with_the_result(here):
    rgb = make_image(here / "a.png", 8, 8)
    invoke("convolve", "a.png", "-k", "box", "-o", "a.png", "--overwrite-input")
    np.testing.assert_array_equal(
        read_image(here / "a.png"), np.floor(ops.convolve(rgb, "box") + 0.5)
    )
    make_video(here / "v.avi", frames=5, h=16, w=16, fourcc="MJPG")
    invoke("convolve", "v.avi", "-k", "box", "-o", "v.avi", "--overwrite-input")
    assert probe_video(here / "v.avi", exact=True).frames == 5
    assert sorted(p.name for p in here.iterdir()) == ["a.png", "v.avi"]


# ----------------------------------------------------------------- 20: FFmpeg quiet, GIFs read


def test_truncated_mp4_gives_one_clean_line(tmp_path):
    make_video(tmp_path / "full.mp4", frames=20, h=16, w=16)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 4])  # 'moov' is at the end: lost
    for args in (["inspect", "cut.mp4"], ["convolve", "cut.mp4", "-k", "box"]):
        done = subprocess.run(
            [sys.executable, "-m", "cnnkit", *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            "error: cut.mp4 is not a readable video (hint: supported formats: .avi, .mkv, .mov, "
            ".mp4, .webm; the file may be damaged or empty)"
        ], done.stderr  # FFmpeg's "moov atom not found" no longer beside it


def animated_gif(path: Path) -> list[tuple[int, int, int]]:
    """Three 8×8 frames of one colour each, written by Pillow (an independent encoder)."""
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]
    frames = [Image.new("RGB", (8, 8), c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return colours


def test_gif_is_read_as_its_first_frame_everywhere(here):
    colours = animated_gif(here / "anim.gif")
    assert kind_of("anim.gif") == "image"  # folder datasets and predict's inputs take it too
    first = read_image(here / "anim.gif")
    assert first.shape[:2] == (8, 8) and tuple(first[0, 0, :3]) == colours[0]
    doc = json.loads(invoke("inspect", "anim.gif", "--json").stdout)
    assert doc["kind"] == "image" and (doc["width"], doc["height"]) == (8, 8)
    assert doc["mean"][:3] == pytest.approx(colours[0])
    invoke("convolve", "anim.gif", "-k", "box")  # GIF is not written: the default is PNG
    out = read_image(here / "anim-box.png")
    assert out.shape == (8, 8, 3) and tuple(out[4, 4]) == colours[0]


def test_gif_output_is_refused_with_a_png_hint(here, monkeypatch, capsys):
    animated_gif(here / "anim.gif")
    line = refused(monkeypatch, capsys, "convolve", "anim.gif", "-k", "box", "-o", "x.gif")
    assert "cannot write x.gif" in line and "x.png" in line
    with pytest.raises(InputError, match="GIF is read but not written"):
        write_image(here / "y.gif", np.zeros((4, 4, 3), np.uint8))
    assert sorted(p.name for p in here.iterdir()) == ["anim.gif"]
