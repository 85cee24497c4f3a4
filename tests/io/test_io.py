"""cnnkit.io: atomic outputs, images, videos and input expansion, on tiny real files."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cnnkit.errors import InputError, ReadError
from cnnkit.io.atomic import atomic_output, atomic_write_bytes, atomic_write_text
from cnnkit.io.image import (
    IMAGE_EXTENSIONS,
    encode_png,
    is_image_path,
    read_image,
    read_image_bytes,
    write_image,
)
from cnnkit.io.sources import Source, expand_sources
from cnnkit.io.video import (
    VIDEO_EXTENSIONS,
    is_video_path,
    iter_frames,
    probe_video,
    read_video,
    read_video_clip,
)
from cnnkit.io.video_writer import VideoWriter
from tests.helpers import make_image, make_image_folder, make_video, smooth_frames, write_video


def close(decoded: np.ndarray, written: np.ndarray) -> bool:
    """Lossy codecs on tiny frames: small mean error, no pixel far off (a swapped channel is)."""
    diff = np.abs(decoded.astype(int) - written.astype(int))
    return decoded.shape == written.shape and diff.mean() < 4 and diff.max() <= 25


def leftovers(folder: Path) -> list[str]:
    """Temporary files atomic_output may have left behind."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# --------------------------------------------------------------------------- atomic


def test_atomic_output_renames_on_success_and_keeps_extension_last(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path
        assert temp.name.startswith(".out.") and temp.name.endswith(".tmp.png")
        assert not target.exists()
        temp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert leftovers(tmp_path) == []


def test_atomic_output_suffix_overrides_extension(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "out", suffix=".npy") as temp:
        assert temp.name.endswith(".tmp.npy")
        temp.write_bytes(b"x")
    assert (tmp_path / "out").read_bytes() == b"x"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_output_keeps_old_file_and_removes_temp_on_error(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(error)):
        with atomic_output(target) as temp:
            temp.write_text("half-written")
            raise error
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_atomic_output_gives_normal_permissions(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "héllo")
    (tmp_path / "b.txt").write_text("plain")
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"


def test_atomic_output_into_missing_folder_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nope" / "x.bin", b"1")


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("ext", "channels", "dtype"),
    [
        (".png", 3, np.uint8),
        (".png", 3, np.uint16),
        (".png", 1, np.uint8),
        (".png", 1, np.uint16),
        (".png", 4, np.uint8),
        (".tif", 3, np.uint16),
        (".bmp", 3, np.uint8),
        (".webp", 3, np.uint8),
        (".jpg", 3, np.uint8),
    ],
)
def test_read_image_round_trip(tmp_path: Path, ext: str, channels: int, dtype: type) -> None:
    path = tmp_path / f"img{ext}"
    expected = make_image(path, h=12, w=20, channels=channels, dtype=dtype, seed=3)
    image = read_image(path)
    assert image.dtype == dtype
    assert image.shape == expected.shape
    assert np.array_equal(image, expected)


def test_pure_red_reads_as_red_and_bgr_on_request(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[:, :, 2] = 255  # OpenCV stores BGR: red is the last channel
    cv2.imwrite(str(path), bgr)
    assert read_image(path)[0, 0].tolist() == [255, 0, 0]
    assert read_image(path, rgb=False)[0, 0].tolist() == [0, 0, 255]


def test_write_image_stores_rgb_as_red(tmp_path: Path) -> None:
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 0] = 255
    write_image(tmp_path / "red.png", red)
    assert cv2.imread(str(tmp_path / "red.png"))[0, 0].tolist() == [0, 0, 255]
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 77
    write_image(tmp_path / "red.png", rgba)
    assert np.array_equal(read_image(tmp_path / "red.png"), rgba)


def test_write_image_round_trips_16_bit_png_and_reduces_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, size=(8, 8, 3), dtype=np.uint16)
    write_image(tmp_path / "deep.png", deep)
    assert np.array_equal(read_image(tmp_path / "deep.png"), deep)
    flat = np.full((8, 8), 0xAB00 + 0x77, np.uint16)  # high byte 0xAB
    write_image(tmp_path / "flat.jpg", flat)
    back = read_image(tmp_path / "flat.jpg")
    assert back.dtype == np.uint8 and abs(int(back[4, 4]) - 0xAB) <= 1


def test_write_image_gray_alpha_and_single_channel(tmp_path: Path) -> None:
    la = np.dstack([np.full((4, 4), 90, np.uint8), np.full((4, 4), 200, np.uint8)])
    write_image(tmp_path / "la.png", la)
    assert read_image(tmp_path / "la.png")[0, 0].tolist() == [90, 90, 90, 200]
    write_image(tmp_path / "g.png", np.full((4, 4, 1), 9, np.uint8))
    assert read_image(tmp_path / "g.png").shape == (4, 4)


def test_write_image_rejects_unknown_extension_and_float(tmp_path: Path) -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InputError, match=r"unknown image extension '\.xyz'") as info:
        write_image(tmp_path / "x.xyz", image)
    assert ".png" in info.value.hint and ".gif" not in info.value.hint  # GIF is read-only
    with pytest.raises(InputError, match="float32"):
        write_image(tmp_path / "x.png", image.astype(np.float32))
    assert list(tmp_path.iterdir()) == []


def test_encode_png_decodes_to_same_pixels() -> None:
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    data = encode_png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(read_image_bytes(data), image)


def _oriented(image: np.ndarray, orientation: int) -> np.ndarray:
    """What an EXIF viewer shows for stored pixels ``image`` (definitions from the EXIF spec)."""
    return {
        1: lambda a: a,
        2: np.fliplr,
        3: lambda a: np.rot90(a, 2),
        4: np.flipud,
        5: lambda a: np.rot90(np.fliplr(a), 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(np.fliplr(a), -1),
        8: lambda a: np.rot90(a, 1),
    }[orientation](image)


def _save_with_orientation(image: np.ndarray, path: Path, orientation: int, **kw: object) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(path, exif=exif.tobytes(), **kw)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_keeping_alpha(tmp_path: Path, orientation: int) -> None:
    stored = np.random.default_rng(orientation).integers(0, 256, (6, 10, 4), dtype=np.uint8)
    path = tmp_path / "o.png"
    _save_with_orientation(stored, path, orientation)
    image = read_image(path)
    assert image.shape == _oriented(stored, orientation).shape
    assert np.array_equal(image, _oriented(stored, orientation))


def test_exif_orientation_in_jpeg_rotates(tmp_path: Path) -> None:
    stored = np.zeros((6, 10, 3), np.uint8)
    stored[:3, :5] = [255, 0, 0]  # red top-left quarter
    path = tmp_path / "photo.jpg"
    _save_with_orientation(stored, path, 6, quality=100)
    image = read_image(path)
    assert image.shape == (10, 6, 3)  # rotated 90° clockwise: portrait
    assert image[1, 4, 0] > 200 and image[1, 4, 2] < 60  # red is now top-right
    assert image[8, 1, 0] < 60


@pytest.mark.parametrize(
    "content", [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40]
)
def test_undecodable_file_is_read_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ReadError, match="broken.png is not a readable image"):
        read_image(path)


def test_non_image_file_is_read_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(ReadError, match="notes.txt"):
        read_image(path)


def test_missing_file_and_folder_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file: .*ghost.png") as info:
        read_image(tmp_path / "ghost.png")
    assert type(info.value) is InputError and info.value.hint
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)


def test_read_image_bytes_from_stdin(tmp_path: Path) -> None:
    expected = make_image(tmp_path / "a.png", channels=3, seed=5)
    assert np.array_equal(read_image_bytes((tmp_path / "a.png").read_bytes()), expected)
    with pytest.raises(ReadError, match="stdin is not a readable image"):
        read_image_bytes(b"garbage")


def test_extension_checks_are_case_insensitive() -> None:
    assert is_image_path("a/B.JPG") and is_image_path("x.tiff") and not is_image_path("x.mp4")
    assert is_image_path("anim.GIF")  # read (first frame), never written
    assert is_video_path("clip.MKV") and not is_video_path("x.png")
    assert ".webp" in IMAGE_EXTENSIONS and ".webm" in VIDEO_EXTENSIONS


# --------------------------------------------------------------------------- videos


def test_probe_and_read_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    written = make_video(path, frames=9, h=12, w=20, fps=12.5)
    info = probe_video(path)
    assert (info.frames, info.fps, info.width, info.height) == (9, 12.5, 20, 12)
    assert info.duration_s == pytest.approx(9 / 12.5)
    assert info.codec == "FMP4"  # FFmpeg's tag for MPEG-4 Part 2 ('mp4v')
    frames, read_info = read_video(path)
    assert frames.shape == (9, 12, 20, 3) and frames.dtype == np.uint8
    assert read_info.frames == 9
    assert close(frames, written)


def test_iter_frames_is_rgb_and_lazy(tmp_path: Path) -> None:
    path = tmp_path / "red.avi"
    red = np.zeros((4, 8, 8, 3), np.uint8)
    red[..., 0] = 255
    write_video(path, red, fourcc="MJPG")
    frames = list(iter_frames(path))
    assert len(frames) == 4
    assert frames[0][4, 4, 0] > 240 and frames[0][4, 4, 2] < 15
    assert next(iter_frames(path, rgb=False))[4, 4, 2] > 240
    with pytest.raises(InputError, match="no such file"):
        iter_frames(tmp_path / "missing.mp4")  # fails at the call, not on first next()


@pytest.mark.parametrize("ext", sorted(VIDEO_EXTENSIONS))
def test_video_writer_round_trip_every_container(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"out{ext}"
    frames = smooth_frames(frames=6, h=10, w=14, seed=1)
    with VideoWriter(path, fps=8.0, width=14, height=10) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames_written == 6
    info = probe_video(path, exact=True)
    assert (info.frames, info.fps, info.width, info.height) == (6, 8.0, 14, 10)
    back, _ = read_video(path)
    assert close(back, frames)
    assert leftovers(tmp_path) == []


def test_video_writer_pads_odd_sizes_instead_of_cropping(tmp_path: Path) -> None:
    path = tmp_path / "odd.avi"
    frames = smooth_frames(frames=3, h=16, w=16, seed=2)[:, :13, :15]
    with VideoWriter(path, fps=5, width=15, height=13) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frame_size == (16, 14)
    back, info = read_video(path)
    assert (info.width, info.height) == (16, 14)
    assert close(back[:, :13, :15], frames)


def test_video_writer_gray(tmp_path: Path) -> None:
    path = tmp_path / "gray.mp4"
    with VideoWriter(path, fps=10, width=8, height=8, is_color=False) as writer:
        for value in (40, 120, 200):
            writer.write(np.full((8, 8), value, np.uint8))
    frames, _ = read_video(path)
    assert frames.shape == (3, 8, 8, 3)
    assert [int(f.mean()) for f in frames] == pytest.approx([40, 120, 200], abs=3)


@pytest.mark.parametrize("error", [RuntimeError("stop"), KeyboardInterrupt()])
def test_video_writer_leaves_nothing_on_error(tmp_path: Path, error: BaseException) -> None:
    path = tmp_path / "partial.mp4"
    with pytest.raises(type(error)):
        with VideoWriter(path, fps=10, width=8, height=8) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
            raise error
    assert list(tmp_path.iterdir()) == []


def test_video_writer_frame_size_mismatch_is_clear(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    with pytest.raises(InputError, match=r"frame 1 is 8×6×3 uint8.*takes 8×8×3"):
        with VideoWriter(path, fps=10, width=8, height=8) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
            writer.write(np.zeros((8, 6, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_video_writer_refuses_empty_video_and_bad_extension(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", fps=10, width=8, height=8):
            pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=r"\.xyz") as info:
        VideoWriter(tmp_path / "x.xyz", fps=10, width=8, height=8)
    assert ".mp4" in info.value.hint


def test_video_writer_replaces_existing_file_only_on_success(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    make_video(path, frames=5, h=8, w=8, fourcc="MJPG")
    with pytest.raises(RuntimeError):
        with VideoWriter(path, fps=10, width=8, height=8) as writer:
            writer.write(np.zeros((8, 8, 3), np.uint8))
            raise RuntimeError
    assert probe_video(path).frames == 5
    with VideoWriter(path, fps=10, width=8, height=8) as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
    assert probe_video(path).frames == 1


def _numbered_video(path: Path, frames: int) -> None:
    """Frame i is uniformly 20 + 5*i bright, so every frame differs from the others."""
    write_video(path, np.stack([np.full((8, 8, 3), 20 + 5 * i, np.uint8) for i in range(frames)]))


@pytest.mark.parametrize(("start", "step"), [(0, 1), (5, 1), (13, 3), (29, 2)])
def test_read_video_clip_matches_full_decode(tmp_path: Path, start: int, step: int) -> None:
    # 40 frames: mp4v puts a keyframe every 12 frames, so starts 13 and 29 really seek.
    path = tmp_path / "n.mp4"
    _numbered_video(path, 40)
    everything, _ = read_video(path)
    clip = read_video_clip(path, start, 4, step=step)
    expected = everything[start : start + 4 * step : step]
    assert clip.shape == (4, 8, 8, 3)
    assert np.array_equal(clip, expected)


def test_read_video_clip_pads_with_last_frame_and_rejects_bad_starts(tmp_path: Path) -> None:
    path = tmp_path / "n.mp4"
    _numbered_video(path, 6)
    everything, _ = read_video(path)
    clip = read_video_clip(path, 4, 5)
    assert clip.shape == (5, 8, 8, 3)
    assert np.array_equal(clip[0], everything[4])
    assert all(np.array_equal(frame, everything[5]) for frame in clip[1:])
    assert not np.array_equal(everything[4], everything[5])
    with pytest.raises(InputError, match="past the end.*6 frames"):
        read_video_clip(path, 6, 2)
    with pytest.raises(InputError, match="invalid clip"):
        read_video_clip(path, -1, 2)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 20])
def test_corrupt_video_is_read_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    for read in (probe_video, read_video, iter_frames):
        with pytest.raises(ReadError, match="bad.mp4"):
            read(path)
    with pytest.raises(InputError, match="no such file"):
        probe_video(tmp_path / "ghost.mp4")


# --------------------------------------------------------------------------- sources


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """data/{b,a}/... with hidden entries, odd-case extensions and non-media files."""
    monkeypatch.chdir(tmp_path)
    make_image_folder("data", ["b", "a"], per_class=2, h=4, w=4)
    Path("data/a/sub").mkdir()
    make_image("data/a/sub/deep.PNG", h=4, w=4)
    make_image("data/a/.hidden.png", h=4, w=4)
    Path("data/.cache").mkdir()
    make_image("data/.cache/skip.png", h=4, w=4)
    Path("data/a/labels.csv").write_text("x\n")
    make_video("data/clip.mp4", frames=2, h=4, w=4)
    Path("notes.txt").write_text("hi\n")
    Path("empty").mkdir()
    return tmp_path


def paths(sources: list[Source]) -> list[str]:
    return [s.path for s in sources]


def test_expand_folder_recursive_sorted_without_hidden(tree: Path) -> None:
    sources = expand_sources(["data"])
    assert paths(sources) == [
        os.path.join("data", "a", "img_000.png"),
        os.path.join("data", "a", "img_001.png"),
        os.path.join("data", "a", "sub", "deep.PNG"),
        os.path.join("data", "b", "img_000.png"),
        os.path.join("data", "b", "img_001.png"),
        os.path.join("data", "clip.mp4"),
    ]
    assert [s.kind for s in sources] == ["image"] * 5 + ["video"]
    assert all(s.error is None for s in sources)


def test_expand_keeps_input_order_duplicates_and_explicit_files(tree: Path) -> None:
    sources = expand_sources(["data/b/img_001.png", "notes.txt", "data/b/img_001.png"])
    assert paths(sources) == ["data/b/img_001.png", "notes.txt", "data/b/img_001.png"]
    assert [s.kind for s in sources] == ["image", None, "image"]
    hidden = expand_sources(["data/a/.hidden.png"])  # asked for by name: kept
    assert paths(hidden) == ["data/a/.hidden.png"] and hidden[0].error is None


def test_expand_globs(tree: Path) -> None:
    assert paths(expand_sources(["data/*/img_00[1].png"])) == [
        "data/a/img_001.png",
        "data/b/img_001.png",
    ]
    recursive = paths(expand_sources(["data/**/*.png"]))
    assert "data/a/sub/deep.PNG" not in recursive  # glob matching is case-sensitive on POSIX
    assert recursive == sorted(recursive) and len(recursive) == 4
    folders = paths(expand_sources(["data/*"]))  # matched folders are walked, csv dropped
    assert "data/a/sub/deep.PNG".replace("/", os.sep) in folders
    assert not any(p.endswith(".csv") for p in folders)
    (nothing,) = expand_sources(["data/*.jpg"])
    assert nothing.path == "data/*.jpg" and nothing.error == "no files match"


def test_expand_missing_and_empty(tree: Path) -> None:
    sources = expand_sources(["ghost.png", "data/clip.mp4", "empty"])
    assert paths(sources) == ["ghost.png", "data/clip.mp4", "empty"]
    assert sources[0].error == "no such file or folder"
    assert sources[1].error is None
    assert sources[2].error and "no image or video files" in sources[2].error


def test_expand_reports_an_unreadable_folder_and_lists_the_rest(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scandir = os.scandir

    def refuse_a(path: str = "."):
        # chmod 000 does not stop root, so the refusal is staged where os.walk lists folders.
        if os.path.normpath(path) == os.path.join("data", "a"):
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_a)
    sources = expand_sources(["data"])
    assert (sources[0].path, sources[0].error) == (
        os.path.join("data", "a"),
        "cannot read folder: Permission denied",
    )
    assert paths(sources[1:]) == [
        os.path.join("data", "b", "img_000.png"),
        os.path.join("data", "b", "img_001.png"),
        os.path.join("data", "clip.mp4"),
    ]


def test_expand_stdin_lists(tree: Path) -> None:
    stdin = io.StringIO("data/b/img_000.png\n\n  \ndata/b\nghost.jpg\n")
    sources = expand_sources(["notes.txt", "-"], stdin=stdin)
    assert paths(sources) == [
        "notes.txt",
        "data/b/img_000.png",
        os.path.join("data", "b", "img_000.png"),
        os.path.join("data", "b", "img_001.png"),
        "ghost.jpg",
    ]
    assert sources[-1].error == "no such file or folder"


def test_expand_extensions_filter(tree: Path) -> None:
    videos = expand_sources(["data"], extensions=["mp4"])
    assert paths(videos) == [os.path.join("data", "clip.mp4")]


def test_io_imports_stay_light() -> None:
    code = (
        "import sys, cnnkit.io, cnnkit.io.atomic, cnnkit.io.sources, cnnkit.io.video;"
        "print('torch' in sys.modules, 'cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    out = subprocess.run(
        [sys.executable, "-c", "import sys, cnnkit.io.atomic; print('cv2' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_jpeg_exif_fallback_parser_finds_orientation(tmp_path: Path) -> None:
    # Used where OpenCV is older than 4.12 and has no imdecodeWithMetadata.
    from cnnkit.io.image import _jpeg_exif_block, exif_orientation

    path = tmp_path / "p.jpg"
    _save_with_orientation(np.zeros((4, 6, 3), np.uint8), path, 8)
    assert exif_orientation(_jpeg_exif_block(path.read_bytes())) == 8
    assert exif_orientation(_jpeg_exif_block(encode_png(np.zeros((2, 2), np.uint8)))) == 1
