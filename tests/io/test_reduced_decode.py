"""Large JPEGs decoded at a reduced scale (libjpeg's DCT scaling) for a model's input.

The factor rule, the difference from a full decode and the same resize, the
images that must stay bit-exact (PNG, small, CMYK JPEGs, CNNKIT_FULL_DECODE),
the EXIF orientation, gray JPEGs, and one path for training (in memory and
streamed), predict and explain.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnkit.data.preprocess import prepare_image
from cnnkit.io.image import (
    FULL_DECODE_VARIABLE,
    full_decode_forced,
    read_image,
    read_image_bytes,
    reduced_decode_factor,
    reduced_factor,
)
from tests.helpers import make_checkpoint


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """BGR uint8: smooth colour fields, finer texture, discs and noise (what JPEG must code)."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), (w, h),
                        interpolation=cv2.INTER_CUBIC)  # fmt: skip
    fine = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_LINEAR)  # fmt: skip
    image = cv2.addWeighted(coarse, 0.7, fine, 0.3, 0)
    for _ in range(4):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = [int(v) for v in rng.integers(0, 256, 3)]
        cv2.circle(image, centre, int(rng.integers(h // 20, h // 5)), colour, -1)
    noise = rng.integers(-10, 11, image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _jpeg(path: Path, image: np.ndarray, orientation: int | None = None) -> bytes:
    """Write ``image`` (BGR or gray) as a JPEG, with an EXIF orientation if given; its bytes."""
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    if orientation is not None:
        entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
        tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)
        app1 = b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\x00\x00" + tiff
        data = data[:2] + app1 + data[2:]
    path.write_bytes(data)
    return data


def _both(path: Path, size: tuple[int, int], channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(full decode, decode for ``size``), each prepared for a model (C×H×W uint8)."""
    full = prepare_image(read_image(path), channels, size)
    reduced = prepare_image(read_image(path, target=size), channels, size)
    return full, reduced


def _mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------------------
# the factor rule
# ---------------------------------------------------------------------------

_sides = st.integers(1, 9000)
_targets = st.integers(4, 600)


def _ceil(n: int, f: int) -> int:
    return -(-n // f)


@settings(max_examples=400, deadline=None)
@given(_sides, _sides, _targets, _targets)
def test_factor_keeps_twice_the_target_and_is_the_largest_that_does(width, height, th, tw):
    f = reduced_factor(width, height, (th, tw))
    assert f in (1, 2, 4, 8)
    if f > 1:  # still at least twice the target in both dimensions, as libjpeg rounds
        assert _ceil(width, f) >= 2 * tw and _ceil(height, f) >= 2 * th
    for larger in (2, 4, 8):
        if larger > f:
            assert _ceil(width, larger) < 2 * tw or _ceil(height, larger) < 2 * th


@settings(max_examples=200, deadline=None)
@given(_sides, _sides, _targets, _targets, st.integers(1, 3000))
def test_factor_never_falls_as_the_image_grows(width, height, th, tw, more):
    f = reduced_factor(width, height, (th, tw))
    assert reduced_factor(width + more, height, (th, tw)) >= f
    assert reduced_factor(width, height + more, (th, tw)) >= f


def test_factor_examples():
    assert reduced_factor(1024, 768, (224, 224)) == 1  # 512×384 would be under 448
    assert reduced_factor(1920, 1080, (224, 224)) == 2
    assert reduced_factor(4032, 3024, (224, 224)) == 4
    assert reduced_factor(640, 480, (64, 64)) == 2
    assert reduced_factor(640, 480, (32, 32)) == 4
    assert reduced_factor(320, 240, (32, 32)) == 2
    assert reduced_factor(2048, 2048, (16, 16)) == 8
    assert reduced_factor(64, 64, (16, 16)) == 2  # 32×32: exactly twice
    assert reduced_factor(62, 62, (16, 16)) == 1  # 31×31: under twice


# ---------------------------------------------------------------------------
# the pixels
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "size", "factor"),
    [(480, 640, (32, 32), 4), (480, 640, (64, 64), 2), (427, 640, (32, 32), 4),
     (477, 720, (32, 32), 4), (375, 500, (64, 64), 2), (1024, 1024, (32, 32), 8)],
)  # fmt: skip
def test_reduced_decode_is_within_a_level_of_the_full_decode(tmp_path, h, w, size, factor):
    path = tmp_path / "photo.jpg"
    data = _jpeg(path, _textured(h, w))
    assert reduced_decode_factor(data, size) == factor
    image = read_image(path, target=size)
    assert image.shape == (*size, 3)  # decoded small and resized to the target at once
    full, reduced = _both(path, size)
    assert not np.array_equal(full, reduced)  # the reduced decode was taken
    assert _mean_diff(full, reduced) <= 1.0
    assert np.abs(full.astype(np.int16) - reduced).max() <= 24


def test_sides_the_factor_does_not_divide_keep_their_place(tmp_path):
    """427 rows at 1/4 decode to 107, the last standing for 3 stored rows: no stretch.

    Resized to 32 rows as if all 107 were whole, the stripes below would move by
    up to a fifth of an output row (measured: mean 4.7 levels, max 14).
    """
    rows = ((np.arange(427) // 20) % 2 * 180 + 40).astype(np.uint8)
    stripes = np.repeat(np.repeat(rows[:, None, None], 640, axis=1), 3, axis=2)
    path = tmp_path / "stripes.jpg"
    assert reduced_decode_factor(_jpeg(path, stripes), (32, 32)) == 4
    full, reduced = _both(path, (32, 32))
    assert _mean_diff(full, reduced) <= 0.5
    assert np.abs(full.astype(np.int16) - reduced).max() <= 3


def test_gray_jpeg_decodes_gray_at_a_reduced_scale(tmp_path):
    path = tmp_path / "gray.jpg"
    data = _jpeg(path, cv2.cvtColor(_textured(480, 640), cv2.COLOR_BGR2GRAY))
    assert reduced_decode_factor(data, (32, 32)) == 4
    image = read_image(path, target=(32, 32))
    assert image.shape == (32, 32)  # one channel, as the full decode gives
    full, reduced = _both(path, (32, 32), channels=1)
    assert not np.array_equal(full, reduced)
    assert _mean_diff(full, reduced) <= 1.0
    full3, reduced3 = _both(path, (32, 32), channels=3)  # gray repeated for a colour model
    assert _mean_diff(full3, reduced3) <= 1.0


def test_colour_jpeg_for_a_gray_model(tmp_path):
    path = tmp_path / "colour.jpg"
    _jpeg(path, _textured(480, 640, seed=2))
    full, reduced = _both(path, (32, 32), channels=1)
    assert not np.array_equal(full, reduced)
    assert _mean_diff(full, reduced) <= 1.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_by_the_full_decode(tmp_path, orientation):
    # Stored 640×480; a non-square target, so a quarter turn decides the factor:
    # shown 480×640 (orientations 5-8), 128×96 allows 1/2; shown as stored, nothing.
    path = tmp_path / "turned.jpg"
    data = _jpeg(path, _textured(480, 640, seed=orientation), orientation)
    size = (128, 96)
    turned = orientation >= 5
    assert reduced_decode_factor(data, size) == (2 if turned else 1)
    full, reduced = _both(path, size)
    assert _mean_diff(full, reduced) <= 1.0  # a wrong turn or flip would be far off
    if turned:
        assert not np.array_equal(full, reduced)
    # A square target: every orientation reduces, and still matches.
    full, reduced = _both(path, (32, 32))
    assert not np.array_equal(full, reduced)
    assert _mean_diff(full, reduced) <= 1.0


def _assert_unchanged(path: Path, size: tuple[int, int]) -> None:
    stored = read_image(path)
    given_target = read_image(path, target=size)
    assert given_target.shape == stored.shape
    assert np.array_equal(given_target, stored)


def test_png_is_decoded_in_full(tmp_path):
    path = tmp_path / "large.png"
    cv2.imwrite(str(path), _textured(480, 640))
    assert reduced_decode_factor(path.read_bytes(), (32, 32)) == 1
    _assert_unchanged(path, (32, 32))


def test_small_jpeg_is_decoded_in_full(tmp_path):
    path = tmp_path / "small.jpg"
    data = _jpeg(path, _textured(120, 160))  # 1/2 would give 60 rows, under twice 32
    assert reduced_decode_factor(data, (32, 32)) == 1
    _assert_unchanged(path, (32, 32))


def test_cmyk_jpeg_is_decoded_in_full(tmp_path):
    path = tmp_path / "cmyk.jpg"
    rgb = cv2.cvtColor(_textured(480, 640), cv2.COLOR_BGR2RGB)
    Image.fromarray(rgb).convert("CMYK").save(path, quality=90)
    assert reduced_decode_factor(path.read_bytes(), (32, 32)) == 1
    _assert_unchanged(path, (32, 32))


def test_full_decode_variable_turns_it_off(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    _jpeg(path, _textured(480, 640))
    full, reduced = _both(path, (32, 32))
    assert not np.array_equal(full, reduced)
    monkeypatch.setenv(FULL_DECODE_VARIABLE, "1")
    assert full_decode_forced()  # what training's config.yaml records, negated
    assert reduced_decode_factor(path.read_bytes(), (32, 32)) == 1
    _assert_unchanged(path, (32, 32))
    assert np.array_equal(prepare_image(read_image(path, target=(32, 32)), 3, (32, 32)), full)
    monkeypatch.setenv(FULL_DECODE_VARIABLE, "0")  # 0: not set
    assert not full_decode_forced()
    assert np.array_equal(prepare_image(read_image(path, target=(32, 32)), 3, (32, 32)), reduced)


@pytest.mark.parametrize("failure", ["none", "error"])
def test_a_failed_reduced_decode_falls_back_to_the_full_decode(tmp_path, monkeypatch, failure):
    import cnnkit.io.image as image_module

    path = tmp_path / "photo.jpg"
    _jpeg(path, _textured(480, 640))
    expected = read_image(path)
    real = image_module._imdecode_with_exif
    asked = []

    def failing(buf, flags=cv2.IMREAD_UNCHANGED):
        asked.append(flags)
        if flags != cv2.IMREAD_UNCHANGED:
            if failure == "error":
                raise cv2.error("no reduced decode")
            return None, b""
        return real(buf, flags)

    monkeypatch.setattr(image_module, "_imdecode_with_exif", failing)
    got = read_image(path, target=(32, 32))
    assert len(asked) == 2  # the reduced decode was tried first
    assert np.array_equal(got, expected)


def test_damaged_jpeg_reads_as_the_full_decode_reads_it(tmp_path):
    """Cut short in its scan: an image of the same shape after preparing, or the same error."""
    from cnnkit.errors import ReadError

    path = tmp_path / "cut.jpg"
    data = _jpeg(path, _textured(480, 640))
    path.write_bytes(data[: len(data) // 3])
    try:
        expected = prepare_image(read_image(path), 3, (32, 32))
    except ReadError:
        with pytest.raises(ReadError):
            read_image(path, target=(32, 32))
        return
    assert prepare_image(read_image(path, target=(32, 32)), 3, (32, 32)).shape == expected.shape


def test_pixel_limit_is_checked_before_any_decode(tmp_path, monkeypatch):
    from cnnkit.errors import ReadError

    path = tmp_path / "photo.jpg"
    _jpeg(path, _textured(480, 640))
    monkeypatch.setenv("CNNKIT_MAX_IMAGE_PIXELS", str(640 * 480 - 1))
    with pytest.raises(ReadError, match="over the decode limit"):
        read_image(path, target=(32, 32))


# ---------------------------------------------------------------------------
# one path for training, predict and explain
# ---------------------------------------------------------------------------


def test_training_streaming_predict_and_explain_see_the_same_pixels(tmp_path):
    from cnnkit.data.folders import FileDataset
    from cnnkit.data.registration import DatasetRequest
    from cnnkit.data.registry import load_dataset
    from cnnkit.predict import open_predictor
    from cnnkit.predict.decode import decode_chunk
    from cnnkit.saliency.files import read_for_explain

    size = (16, 16)
    root = tmp_path / "data"
    for label, seed in (("a", 1), ("b", 2)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            _jpeg(root / label / f"{i}.jpg", _textured(480, 640, seed=seed * 10 + i))
    path = root / "a" / "0.jpg"
    expected = prepare_image(read_image(path, target=size), 3, size)
    assert not np.array_equal(expected, prepare_image(read_image(path), 3, size))

    request = DatasetRequest(str(root), img_size=16, whole=True, channels=3)
    held = load_dataset(request).splits["all"]
    assert held.x[held.paths.index(str(path))].tolist() == expected.tolist()

    streamed = load_dataset(DatasetRequest(str(root), img_size=16, whole=True, channels=3,
                                           memory_budget=1)).splits["all"]  # fmt: skip
    assert isinstance(streamed, FileDataset)
    index = [str(p) for p, _ in streamed.items].index(str(path))
    assert np.asarray(streamed.decode(index)).tolist() == expected.tolist()

    ckpt = make_checkpoint(tmp_path / "m.ckpt", classes=("a", "b"), channels=3, size=size)
    predictor, _ = open_predictor(str(ckpt), "cpu")
    chunk = decode_chunk(predictor, [str(path), str(root / "b" / "0.jpg")])
    assert chunk.batch[0].tolist() == expected.tolist()
    image, prepared = read_for_explain(predictor, str(path))
    assert image.shape == (480, 640, 3)  # the overlay is drawn on the whole picture
    assert prepared.tolist() == expected.tolist()


def test_training_records_it_and_says_it_in_debug_only(tmp_path):
    import yaml

    from cnnkit import console
    from cnnkit.training.fit import fit
    from tests.helpers import tiny_config

    root = tmp_path / "data"
    for label, seed in (("a", 1), ("b", 2)):
        (root / label).mkdir(parents=True)
        for i in range(4):
            _jpeg(root / label / f"{i}.jpg", _textured(96, 128, seed=seed * 10 + i))

    class Kept(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    kept, level = Kept(), console.logger.level
    console.logger.addHandler(kept)
    console.logger.setLevel(logging.DEBUG)
    try:
        summary = fit(tiny_config(tmp_path, dataset=str(root), limit=None, val_split=0.25))
    finally:
        console.logger.removeHandler(kept)
        console.logger.setLevel(level)
    config = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert config["data"]["jpeg_reduced_decode"] is True
    notes = [r for r in kept.records if "1/2, 1/4 or 1/8" in r.getMessage()]
    assert [r.levelno for r in notes] == [logging.DEBUG]


def test_command_line_says_the_decode_path_with_cnnkit_debug_only(tmp_path, monkeypatch, capsys):
    from tests.helpers import cnnkit_in_process

    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=3, size=(16, 16))
    photo = tmp_path / "photo.jpg"
    _jpeg(photo, _textured(480, 640))
    monkeypatch.delenv("CNNKIT_DEBUG", raising=False)
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "predict", str(ckpt), str(photo))
    assert code == 0 and "1/2, 1/4 or 1/8" not in err
    monkeypatch.setenv("CNNKIT_DEBUG", "1")
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "predict", str(ckpt), str(photo))
    assert code == 0
    assert [line for line in err.splitlines() if "1/2, 1/4 or 1/8" in line]


def test_read_image_bytes_takes_the_same_path(tmp_path):
    path = tmp_path / "photo.jpg"
    data = _jpeg(path, _textured(480, 640))
    from_file = read_image(path, target=(32, 32))
    assert from_file.shape == (32, 32, 3)
    assert np.array_equal(read_image_bytes(data, "photo.jpg", target=(32, 32)), from_file)
    bgr = read_image_bytes(data, "photo.jpg", rgb=False, target=(32, 32))
    assert np.array_equal(bgr[..., ::-1], from_file)


def test_the_jpeg_header_walk_stops_after_a_bounded_count_of_markers():
    """A crafted JPEG of millions of empty segments must not hold a Python loop
    for minutes: the walk gives up (the size is then unknown and OpenCV's own
    pixel limit applies to the decode)."""
    from cnnkit.io.headers import _JPEG_MAX_MARKERS, sniff_frame

    ok, jpeg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    assert ok
    body = jpeg.tobytes()
    assert sniff_frame(body)[1] == (16, 16)  # a real file is read
    few = body[:2] + b"\xff\xfe\x00\x02" * 100 + body[2:]  # comments, as cameras write
    assert sniff_frame(few)[1] == (16, 16)
    beyond = body[:2] + b"\xff\xfe\x00\x02" * (_JPEG_MAX_MARKERS + 10) + body[2:]
    known, size, frame = sniff_frame(beyond)
    assert known and size is None and frame is None
    fills = body[:2] + b"\xff" * (_JPEG_MAX_MARKERS + 10) + body[2:]  # fill bytes count too
    assert sniff_frame(fills)[1] is None
    assert 1_000 <= _JPEG_MAX_MARKERS <= 100_000  # generous for real files, bounded for crafted
