"""Fixes found by testing: lying video headers, 3D windows, conversion notes, output paths.

Each test names the behaviour a user saw go wrong: a truncated AVI whose header
still counts the whole file, ``predict --window 1`` on a 3D model, notes about
colour on gray inputs, output paths through a file, and convolve's hints.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cnnkit import cli
from cnnkit.cli import app
from cnnkit.errors import CnnkitError, InputError, ModelError
from cnnkit.io.video import probe_video, read_video, read_video_clip
from tests.helpers import (
    make_checkpoint,
    make_image,
    make_image_folder,
    make_video,
    smooth_frames,
    write_video,
)

runner = CliRunner()

# ---------------------------------------------------------------------------
# A. video frame counts: the frames really readable, not the header's figure
# ---------------------------------------------------------------------------

STATED = 100  # frames in the whole file, which its header keeps stating when cut short


def _whole_avi(path: Path) -> bytes:
    write_video(path, smooth_frames(STATED, 32, 32), fps=10.0, fourcc="MJPG")
    return path.read_bytes()


def _truncated_avi(folder: Path, name: str = "cut.avi", keep: float = 0.2) -> Path:
    """The first ``keep`` of a 100-frame MJPG AVI: its header still says 100 frames."""
    data = _whole_avi(folder / f".whole-{name}")
    path = folder / name
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _header_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def _grabbed_frames(path: Path) -> int:
    """Frames counted by decoding them all with OpenCV, independently of cnnkit."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    try:
        while capture.grab():
            count += 1
    finally:
        capture.release()
    return count


def test_probe_video_gives_the_frames_a_truncated_avi_really_has(tmp_path) -> None:
    path = _truncated_avi(tmp_path)
    real = _grabbed_frames(path)
    assert _header_frames(path) == STATED and 0 < real < STATED
    info = probe_video(path)
    assert info.frames == real
    assert info.duration_s == pytest.approx(real / 10.0)
    assert probe_video(tmp_path / ".whole-cut.avi").frames == STATED  # an intact file


def test_probe_video_counts_past_a_header_that_states_too_few(tmp_path) -> None:
    # The AVI main header (avih) and stream header (strh) both state the frame count;
    # saying 50 makes OpenCV report 50 while the index and the data hold 100.
    data = bytearray(_whole_avi(tmp_path / "whole.avi"))
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8 + 16, 50)  # dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, 50)  # dwLength
    path = tmp_path / "short-header.avi"
    path.write_bytes(bytes(data))
    assert _header_frames(path) == 50 and _grabbed_frames(path) == STATED
    assert probe_video(path).frames == STATED
    # Clips past the header's end but within the real frames read the real frames.
    frames, _ = read_video(path)
    np.testing.assert_array_equal(read_video_clip(path, 60, 4), frames[60:64])


def test_inspect_shows_the_real_frames_of_a_truncated_video(tmp_path) -> None:
    path = _truncated_avi(tmp_path)
    result = runner.invoke(app, ["inspect", str(path), "--json", "-q"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    real = _grabbed_frames(path)
    assert doc["frames"] == real and doc["duration_s"] == pytest.approx(real / 10.0)


def test_a_clip_past_the_real_end_names_the_real_frame_count(tmp_path) -> None:
    path = _truncated_avi(tmp_path, keep=0.5)
    real = _grabbed_frames(path)
    assert real + 2 < STATED
    clip = read_video_clip(path, real - 2, 4)  # the last two real frames, then padding
    np.testing.assert_array_equal(clip[2:], np.stack([clip[1], clip[1]]))
    with pytest.raises(InputError) as info:
        read_video_clip(path, real + 1, 4)
    assert f"({real} frames)" in info.value.message and f"below {real}" in info.value.hint


def test_eval_reads_a_truncated_video_in_a_folder(tmp_path) -> None:
    # Before: clip starts were placed from the header's 100 frames, so the 1/5 file was
    # "unreadable" (start past its end) and the half file got mostly padding.
    for cls in ("a", "b"):
        (tmp_path / "vids" / cls).mkdir(parents=True)
    _truncated_avi(tmp_path / "vids" / "a", "fifth.avi", keep=0.2)
    _truncated_avi(tmp_path / "vids" / "b", "half.avi", keep=0.5)
    ckpt = make_checkpoint(tmp_path / "v.ckpt", "c3d_small", ["a", "b"], 3, (16, 16), frames=4)
    args = ["eval", str(ckpt), "--dataset", str(tmp_path / "vids"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "skipping unreadable" not in result.stderr
    assert json.loads(result.stdout)["n"] == 2


# ---------------------------------------------------------------------------
# B. a window too short for a 3D model is refused up front
# ---------------------------------------------------------------------------


@pytest.fixture
def clip_model(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "c3d.ckpt", "c3d_small", ["a", "b"], 3, (16, 16), frames=8)


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The console-script entry (its single error path) in process: (status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cnnkit", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_predict_refuses_a_window_too_short_for_a_3d_model(
    tmp_path, monkeypatch, capsys, clip_model
) -> None:
    make_video(tmp_path / "one.mp4", frames=6)
    args = ("predict", str(clip_model), str(tmp_path / "one.mp4"), "--window", "1", "-q")
    status, out, err = _main(monkeypatch, capsys, *args)
    assert status == 1 and out == ""
    assert err == (
        "error: model 'c3d_small' needs clips of at least 2 frames, got 1 (input 3×1×16×16) "
        "(hint: use --window 2 or more)\n"
    )
    # The smallest window named works.
    ok = runner.invoke(
        app, ["predict", str(clip_model), str(tmp_path / "one.mp4"), "--window", "2"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.splitlines()[-1])["windows"] == 3


def test_predict_video_core_turns_a_short_window_into_a_model_error(tmp_path, clip_model) -> None:
    from cnnkit.predict import Predictor, predict_video

    make_video(tmp_path / "one.mp4", frames=4)
    predictor = Predictor.from_checkpoint(clip_model)
    with pytest.raises(ModelError, match="at least 2 frames"):
        list(predict_video(predictor, str(tmp_path / "one.mp4"), window=1))


def test_check_input_fits_names_the_flag_it_is_given() -> None:
    from cnnkit.models.sizes import check_input_fits

    with pytest.raises(ModelError) as info:
        check_input_fits("c3d_small", (3, 1, 16, 16), frames_flag="--window")
    assert info.value.hint == "use --window 2 or more"
    with pytest.raises(ModelError) as info:
        check_input_fits("c3d_small", (3, 1, 16, 16))
    assert info.value.hint == "use --frames 2 or more"  # train's hint is unchanged


# ---------------------------------------------------------------------------
# C. colour -> gray is noted only for inputs that have colour
# ---------------------------------------------------------------------------


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note:")]


GRAY_NOTE = "note: colour inputs are converted to gray for this 1-channel model"


def test_gray_pictures_stored_in_colour_get_no_colour_note(tmp_path) -> None:
    gray_model = make_checkpoint(tmp_path / "g.ckpt", "lenet5", ["a", "b"], 1, (16, 16))
    make_image(tmp_path / "rgb-gray.png", 16, 16, channels=1)
    plane = cv2.imread(str(tmp_path / "rgb-gray.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(tmp_path / "rgb-gray.png"), np.dstack([plane] * 3))  # 3 equal channels
    gray = smooth_frames(6, 16, 16, colour=(200, 200, 200))  # every frame gray in RGB
    write_video(tmp_path / "gray.avi", gray, fourcc="MJPG")
    make_video(tmp_path / "colour.mp4", frames=6)

    def notes(*inputs: str) -> list[str]:
        args = ["predict", str(gray_model), *(str(tmp_path / i) for i in inputs)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return _notes(result.stderr)

    assert notes("rgb-gray.png", "gray.avi") == []
    assert notes("colour.mp4") == [GRAY_NOTE]


# ---------------------------------------------------------------------------
# D. output paths: a file in the way, a folder that cannot be made, checked early
# ---------------------------------------------------------------------------


@pytest.fixture
def lenet(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 1, (28, 28))


def test_feature_maps_through_a_file_is_a_clean_error(tmp_path, monkeypatch, capsys, lenet) -> None:
    make_image(tmp_path / "x.png", 28, 28, channels=1)
    (tmp_path / "afile").write_text("not a folder")
    args = ("inspect", str(lenet), "--image", str(tmp_path / "x.png"), "--feature-maps")
    status, _, err = _main(monkeypatch, capsys, *args, str(tmp_path / "afile" / "x"))
    assert status == 1 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err and "CNNKIT_DEBUG" not in err


def test_feature_maps_folder_that_cannot_be_made_is_a_clean_error(
    tmp_path, monkeypatch, capsys, lenet
) -> None:
    make_image(tmp_path / "x.png", 28, 28, channels=1)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # tests run as root: simulate a locked folder
    args = ("inspect", str(lenet), "--image", str(tmp_path / "x.png"), "--feature-maps")
    status, _, err = _main(monkeypatch, capsys, *args, str(tmp_path / "maps"))
    assert status == 1
    assert err == (
        f"error: cannot create feature-map folder {tmp_path / 'maps'}: permission denied "
        "(hint: choose a folder you can write to)\n"
    )


def test_an_output_under_a_file_says_the_file_is_in_the_way(tmp_path, lenet) -> None:
    (tmp_path / "afile").write_text("not a folder")
    result = runner.invoke(app, ["inspect", str(lenet), "--kernels", str(tmp_path / "afile/k.png")])
    assert isinstance(result.exception, InputError)
    assert result.exception.message.endswith(f"{tmp_path / 'afile'} is a file, not a folder")
    missing = runner.invoke(app, ["inspect", str(lenet), "--kernels", str(tmp_path / "no/k.png")])
    assert "folder" in missing.exception.message and "does not exist" in missing.exception.message


@pytest.mark.parametrize("option", ["--confusion", "--misclassified"])
def test_eval_output_paths_are_checked_before_evaluating(tmp_path, option) -> None:
    make_image_folder(tmp_path / "data", ["a", "b"], 2)
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 3, (16, 16))
    (tmp_path / "afile").write_text("not a folder")
    args = ["eval", str(ckpt), "--dataset", str(tmp_path / "data")]
    result = runner.invoke(app, [*args, option, str(tmp_path / "afile" / "out.csv")])
    assert isinstance(result.exception, InputError)
    assert "afile is a file, not a folder" in result.exception.message
    assert "evaluating on" not in result.stderr  # refused before any sample was read


# ---------------------------------------------------------------------------
# E. inspect: --image goes with --feature-maps; --kernels works either way
# ---------------------------------------------------------------------------


def test_image_without_feature_maps_says_what_is_wrong(tmp_path, lenet) -> None:
    make_image(tmp_path / "x.png", 28, 28, channels=1)
    args = ["inspect", str(lenet), "--image", str(tmp_path / "x.png")]
    result = runner.invoke(app, [*args, "--kernels", str(tmp_path / "k.png")])
    assert isinstance(result.exception, CnnkitError)
    assert result.exception.message.startswith("--image is only used with --feature-maps")
    assert not (tmp_path / "k.png").exists()


def test_kernels_with_and_without_feature_maps(tmp_path, lenet) -> None:
    make_image(tmp_path / "x.png", 28, 28, channels=1)
    alone = runner.invoke(app, ["inspect", str(lenet), "--kernels", str(tmp_path / "k1.png")])
    assert alone.exit_code == 0, alone.output
    args = ["inspect", str(lenet), "--image", str(tmp_path / "x.png"), "--feature-maps"]
    both = runner.invoke(
        app, [*args, str(tmp_path / "maps"), "--kernels", str(tmp_path / "k2.png")]
    )
    assert both.exit_code == 0, both.output
    assert (tmp_path / "k1.png").is_file() and (tmp_path / "k2.png").is_file()
    assert len(list((tmp_path / "maps").glob("*.png"))) == 2  # lenet5's two convolutions


# ---------------------------------------------------------------------------
# F. convolve: the stored video size, and hints that fit the input
# ---------------------------------------------------------------------------


def test_convolve_says_when_a_video_is_stored_at_an_even_size(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "v.mp4", frames=3, h=8, w=10)
    result = runner.invoke(app, ["convolve", "v.mp4", "-k", "box", "--stride", "2", "-o", "c.mp4"])
    assert result.exit_code == 0, result.output
    assert "c.mp4 stores the 4×5 frames as 4×6" in result.stderr
    assert "video codec needs even sizes" in result.stderr
    capture = cv2.VideoCapture("c.mp4", cv2.CAP_FFMPEG)
    stored = (capture.get(cv2.CAP_PROP_FRAME_HEIGHT), capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    capture.release()
    assert stored == (4, 6)
    doc = runner.invoke(app, ["convolve", "v.mp4", "-k", "box", "-o", "d.mp4", "--json", "-q"])
    assert json.loads(doc.stdout)["stored_size"] == [8, 10]  # even already: as computed
    even = runner.invoke(app, ["convolve", "v.mp4", "-k", "box", "-o", "e.mp4"])
    assert "stores the" not in even.stderr


def test_convolve_hints_name_extensions_that_fit_the_input(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / "v.mp4", frames=2)
    make_image(tmp_path / "a.png")
    to_gif = runner.invoke(app, ["convolve", "v.mp4", "-k", "box", "-o", "v.gif"])
    assert to_gif.exception.message == "cannot write a video result to v.gif"
    assert ".mp4" in to_gif.exception.hint and ".png" not in to_gif.exception.hint
    to_mp4 = runner.invoke(app, ["convolve", "a.png", "-k", "box", "-o", "v.mp4"])
    assert ".png" in to_mp4.exception.hint and ".gif" not in to_mp4.exception.hint


def test_has_colour_ignores_the_rounding_of_lossy_codecs() -> None:
    from cnnkit.data.preprocess import has_colour

    rng = np.random.default_rng(0)
    plane = rng.integers(10, 240, size=(8, 8), dtype=np.uint8)
    gray = np.dstack([plane] * 3)
    assert not has_colour(gray) and not has_colour(plane)
    decoded = gray.copy()
    decoded[:, :, 2] += 2  # a gray video frame after YUV -> RGB
    assert not has_colour(decoded)
    tinted = gray.copy()
    tinted[3, 4] = (200, 100, 100)  # one red pixel
    assert has_colour(tinted)
    assert not has_colour(decoded.astype(np.float32) / 255)  # the same rule on a 0-1 scale
    assert has_colour(tinted.astype(np.uint16) * 257)
