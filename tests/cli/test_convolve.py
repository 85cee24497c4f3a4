"""``cnnkit convolve`` end to end: the files it writes, what it prints, how it fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cnnkit import cli, ops
from cnnkit.io.video import probe_video, read_video
from tests.helpers import SLOW_CONVOLVE, make_image, make_video

runner = CliRunner()


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args, input=None):
    result = runner.invoke(cli.app, ["convolve", *args], input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def run_main(monkeypatch, capsys, *args):
    """Run the console-script entry (its single error path) in process: (status, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cnnkit", "convolve", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return info.value.code, capsys.readouterr().err


def test_npy_keeps_raw_float32_and_negatives(here):
    rgb = make_image(here / "a.png", 12, 20)
    invoke("a.png", "-k", "sobel-x", "-o", "raw.npy")
    raw = np.load(here / "raw.npy")
    assert raw.dtype == np.float32 and raw.shape == (12, 20, 3)
    np.testing.assert_allclose(raw, ops.convolve(rgb, "sobel-x"), atol=1e-3)  # RGB order
    assert raw.min() < 0


def test_default_output_name_and_minmax_scaling(here):
    rgb = make_image(here / "a.png", 12, 20)
    invoke("a.png", "-k", "laplacian")
    out = cv2.cvtColor(cv2.imread(str(here / "a-laplacian.png")), cv2.COLOR_BGR2RGB)
    raw = ops.convolve(rgb, "laplacian").astype(np.float64)
    expected = np.floor((raw - raw.min()) * 255 / (raw.max() - raw.min()) + 0.5)
    assert np.abs(out - expected).max() <= 1
    assert out.min() == 0 and out.max() == 255


def test_clip_scaling_and_stride(here):
    rgb = make_image(here / "a.png", 12, 20)
    invoke("a.png", "-k", "sharpen", "--stride", "2", "-o", "s.png")
    out = cv2.cvtColor(cv2.imread(str(here / "s.png")), cv2.COLOR_BGR2RGB)
    raw = ops.convolve(rgb, "sharpen", stride=2)
    assert out.shape == (6, 10, 3)
    np.testing.assert_array_equal(out, np.clip(np.floor(raw + 0.5), 0, 255))


@pytest.mark.parametrize("scale", ["abs", "clip", "minmax"])
def test_explicit_scale_maps_the_signed_result(here, scale):
    rgb = make_image(here / "a.png", 12, 20)
    invoke("a.png", "-k", "sobel-x", "--scale", scale, "-o", "s.png")
    out = cv2.cvtColor(cv2.imread(str(here / "s.png")), cv2.COLOR_BGR2RGB).astype(np.float64)
    raw = ops.convolve(rgb, "sobel-x").astype(np.float64)
    if scale == "abs":
        expected = np.clip(np.abs(raw), 0, 255)
    elif scale == "clip":
        expected = np.clip(raw, 0, 255)  # negative gradients become 0
    else:
        expected = (raw - raw.min()) * 255 / (raw.max() - raw.min())
    assert np.abs(out - np.floor(expected + 0.5)).max() <= 1


def test_gray_and_flip(here):
    rgb = make_image(here / "a.png", 10, 10)
    invoke("a.png", "-k", "1,2;3,4", "--gray", "--flip", "-o", "g.npy")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    raw = np.load(here / "g.npy")
    assert raw.shape == (10, 10)
    np.testing.assert_allclose(raw, ops.convolve(gray, "4,3;2,1"), atol=1e-3)


def test_stdout_png_and_stdin(here):
    rgb = make_image(here / "a.png", 8, 8)
    data = (here / "a.png").read_bytes()
    result = invoke("-", "-k", "box", "-o", "-", input=data)
    assert result.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(result.stdout_bytes, np.uint8), cv2.IMREAD_COLOR),
        cv2.COLOR_BGR2RGB,
    )
    np.testing.assert_array_equal(decoded, np.floor(ops.convolve(rgb, "box") + 0.5))


def test_json_fields(here):
    rgb = make_image(here / "a.png", 10, 16)
    result = invoke("a.png", "-k", "sobel-x", "--padding", "valid", "--json", "-o", "r.npy")
    doc = json.loads(result.stdout)
    raw = ops.convolve(rgb, "sobel-x", padding="valid")
    assert doc["input"] == "a.png" and doc["output"] == "r.npy"
    assert doc["kernel"] == "sobel-x" and doc["kernel_shape"] == [3, 3]
    assert doc["stride"] == [1, 1] and doc["dilation"] == [1, 1] and doc["padding"] == "valid"
    assert doc["input_shape"] == [10, 16, 3] and doc["output_shape"] == [8, 14, 3]
    assert doc["min"] == pytest.approx(raw.min()) and doc["max"] == pytest.approx(raw.max())
    assert doc["mean"] == pytest.approx(raw.mean(), rel=1e-4)
    assert isinstance(doc["seconds"], float)


def test_explain_prints_numbers_and_writes_only_with_output(here):
    make_image(here / "a.png", 20, 30)
    result = invoke("a.png", "-k", "sobel-x", "--stride", "2", "--dilation", "1,2", "--explain")
    text = result.stdout
    assert "-2   0   2" in text
    assert "20×30×3" in text and "10×15×3" in text
    assert "floor((20 + 2·1 - 1·(3-1) - 1) / 2) + 1 = 10" in text
    assert "floor((30 + 2·2 - 2·(3-1) - 1) / 2) + 1 = 15" in text
    assert not (here / "a-sobel-x.png").exists()
    invoke("a.png", "-k", "sobel-x", "--explain", "-o", "e.png")
    assert (here / "e.png").exists()


def test_list_kernels(here):
    text = invoke("--list-kernels").stdout
    for name in ("gaussian:size,sigma", "sobel-x", "temporal-diff", "box3d:size"):
        assert name in text
    kernels = json.loads(invoke("--list-kernels", "--json").stdout)
    by_name = {k["name"]: k for k in kernels}
    assert by_name["sobel-x"]["weights"] == [[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]]
    assert by_name["sobel"]["combine"] == "magnitude"
    assert by_name["box3d"]["dims"] == 3


def test_video_2d_keeps_frames_and_fps(here):
    make_video(here / "v.mp4", frames=6, h=16, w=24, fps=12.0)
    invoke("v.mp4", "-k", "gaussian:3,1", "-o", "blur.mp4")
    info = probe_video(here / "blur.mp4", exact=True)
    assert (info.frames, info.fps, info.width, info.height) == (6, 12.0, 24, 16)
    invoke("v.mp4", "-k", "sobel-x", "--stride", "2", "-o", "raw.npy")
    frames, _ = read_video(here / "v.mp4")
    raw = np.load(here / "raw.npy")
    assert raw.shape == (6, 8, 12, 3)
    np.testing.assert_allclose(raw[3], ops.convolve(frames[3], "sobel-x", stride=2), atol=1e-3)


def test_video_3d_slides_over_time(here):
    make_video(here / "v.mp4", frames=7, h=16, w=16, fps=10.0)
    frames, _ = read_video(here / "v.mp4")
    invoke("v.mp4", "-k", "temporal-diff", "-o", "d.npy")
    np.testing.assert_allclose(np.load(here / "d.npy"), ops.convolve(frames, "temporal-diff"))
    invoke("v.mp4", "-k", "box3d", "--stride", "2,1,1", "--padding-mode", "zeros", "-o", "b.npy")
    assert np.load(here / "b.npy").shape == (4, 16, 16, 3)
    invoke("v.mp4", "-k", "temporal-diff", "--gray")
    info = probe_video(here / "v-temporal-diff.mp4", exact=True)
    assert (info.frames, info.fps) == (7, 10.0)


@pytest.mark.parametrize(
    "args, words",
    [
        (["a.png", "-k", "sobl"], "did you mean 'sobel'"),
        (["a.png", "-k", "1,0;1"], "ragged"),
        (["nope.png", "-k", "box"], "no such file"),
        (["bad.png", "-k", "box"], "not a readable image"),
        (["a.png", "-k", "box", "-o", "out.xyz"], "unsupported output extension"),
        (["a.png", "-k", "box3d"], "3D kernel"),
        (["a.png", "-k", "box", "--stride", "0"], "stride must be >= 1"),
        (["a.png", "-k", "box", "--padding", "-1"], "padding must be >= 0"),
        (["a.png", "-k", "box", "--padding", "lots"], "padding 'lots'"),
        (["a.png", "-k", "box", "--dilation", "0"], "dilation must be >= 1"),
        (["a.png", "-k", "box:9", "--padding", "valid"], "output would be empty"),
        (["a.png", "-k", "box:19"], "reflect padding"),
        (["a.png"], "no --kernel"),
        (["v.mp4", "-k", "box", "-o", "x.png"], "cannot write a video result"),
        (["a.png", "-k", "box", "-o", "x.mp4"], "cannot write an image result"),
    ],
)
def test_bad_input_is_one_line_error(here, monkeypatch, capsys, args, words):
    make_image(here / "a.png", 8, 8)
    make_video(here / "v.mp4", frames=2, h=8, w=8)
    (here / "bad.png").write_bytes(b"not an image")
    status, err = run_main(monkeypatch, capsys, *args)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "hint:" in lines[0]
    assert sorted(p.name for p in here.iterdir()) == ["a.png", "bad.png", "v.mp4"]


def test_interrupted_video_leaves_no_output(here, monkeypatch):
    make_video(here / "v.mp4", frames=6, h=16, w=16)
    from cnnkit.io import video_writer as video

    real_write = video.VideoWriter.write

    def failing_write(self, frame):
        if self.frames_written == 3:
            raise KeyboardInterrupt
        real_write(self, frame)

    monkeypatch.setattr(video.VideoWriter, "write", failing_write)
    result = runner.invoke(cli.app, ["convolve", "v.mp4", "-k", "box", "-o", "out.mp4"])
    assert result.exit_code == 130  # Ctrl-C, as the shell reports it
    assert sorted(p.name for p in here.iterdir()) == ["v.mp4"]


def test_killed_video_convolve_leaves_nothing_under_the_output_name(here):
    make_video(here / "v.mp4", frames=30, h=16, w=16)
    # A slow writer makes the run last long enough to be killed half-way.
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CONVOLVE], cwd=here)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.endswith(".tmp.mp4") for p in here.iterdir()):
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (here / "out.mp4").exists()


def test_help_and_image_convolve_never_import_torch(here):
    subprocess.run(
        [sys.executable, "-c", "import sys, cnnkit.cli; assert 'torch' not in sys.modules"],
        check=True,
    )
    make_image(here / "a.png", 8, 8)
    code = (
        "import sys, runpy\n"
        "sys.argv = ['cnnkit', 'convolve', 'a.png', '-k', 'sobel', '--json']\n"
        "try:\n"
        "    runpy.run_module('cnnkit', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=here, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == "a-sobel.png"
    assert (here / "a-sobel.png").exists()
