"""The pictures cnnkit draws read well: explain overlays and the confusion matrix.

Overlays: a small input is enlarged (whole factor, nearest neighbours) to at
least 224 pixels on its shorter side, a large one keeps its size, and the
label is written in a band above the image, never over its pixels, never cut.
Confusion matrix: a title with what was measured, one mistake in hundreds
visibly coloured while an empty cell stays the background, short class names
upright.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cnnkit.saliency import Explanation, overlay
from tests.helpers import cnnkit_in_process, make_checkpoint, write_array

LONG_NAME = "a_very_long_class_name_from_a_taxonomy_that_never_ends_x_60c"
assert len(LONG_NAME) == 60


def _gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _as_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _heat(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((5, 5)).astype(np.float32)


@pytest.mark.parametrize("shape, factor", [((28, 28), 8), ((300, 451), 1), ((20, 100), 12)])
def test_small_images_are_enlarged_to_224_pixels_and_large_ones_keep_their_size(
    shape, factor
) -> None:
    image = _gray(*shape)
    # alpha 0: the image alone, so its drawn pixels can be compared one by one.
    drawn = overlay(image, _heat(), 0.0, "3 0.98")
    h, w = shape[0] * factor, shape[1] * factor
    assert min(h, w) >= 224 or factor == 1
    band = drawn.shape[0] - h
    assert band > 0 and drawn.shape[1] == w
    enlarged = np.kron(image, np.ones((factor, factor), np.uint8))  # nearest neighbours
    assert np.array_equal(drawn[band:], _as_rgb(enlarged))


def test_the_label_is_in_a_band_above_the_image_not_over_it() -> None:
    image, heat = _gray(28, 28), _heat()
    labelled = overlay(image, heat, 0.5, "3 0.98")
    unlabelled = overlay(image, heat, 0.5, "")
    band = labelled.shape[0] - 224
    assert labelled.shape == unlabelled.shape
    assert np.array_equal(labelled[band:], unlabelled[band:])  # the image's pixels: no text
    assert not np.array_equal(labelled[:band], unlabelled[:band])  # the text: in the band
    assert (labelled[:band].min(axis=2) < 100).any()  # dark ink on the white band


def _ink_columns(band: np.ndarray) -> np.ndarray:
    return np.flatnonzero((band.min(axis=2) < 128).any(axis=0))


def test_a_60_character_class_name_is_written_whole_inside_the_picture() -> None:
    image = _gray(28, 28)
    long = overlay(image, _heat(), 0.5, f"{LONG_NAME} 0.98")
    half = overlay(image, _heat(), 0.5, f"{LONG_NAME[:30]} 0.98")
    long_band = long[: long.shape[0] - 224]
    half_band = half[: half.shape[0] - 224]
    # Nothing touches the right edge (where cut text would end), and the whole name is
    # there: about twice the ink of its first half, on more lines.
    assert _ink_columns(long_band).max() < long.shape[1] - 2
    assert _ink_columns(half_band).max() < half.shape[1] - 2
    ink = (long_band.min(axis=2) < 128).sum()
    assert ink > 1.6 * (half_band.min(axis=2) < 128).sum()
    assert long_band.shape[0] > half_band.shape[0]  # wrapped: a taller band


def test_captions_wrap_long_names_without_losing_a_character() -> None:
    from cnnkit.captions import fit_caption, text_width

    caption = fit_caption(f"{LONG_NAME} 0.98", 200, 0.55)
    assert len(caption.lines) > 1
    assert all(text_width(line, caption.scale) <= 200 for line in caption.lines)
    assert "".join(caption.lines).replace(" ", "") == f"{LONG_NAME}0.98"


def test_explanation_overlay_is_the_enlarged_picture_and_annotate_false_the_plain_one() -> None:
    image = _gray(28, 28)
    heat = np.random.default_rng(2).random((28, 28)).astype(np.float32)
    ex = Explanation("3", 0.98, heat, (13, 19), "gradcam", "pool", image=image)
    picture = ex.overlay()
    assert picture.shape[1] == 224 and picture.shape[0] > 224
    assert np.array_equal(picture, overlay(image, heat, 0.5, "3 0.98"))
    plain = ex.overlay(annotate=False)  # at the image's size, as the heat map is
    assert plain.shape == (28, 28, 3) and ex.heatmap.shape == (28, 28)


def test_explain_writes_a_28_pixel_digit_at_224_with_its_label_above(
    tmp_path, monkeypatch, capsys
) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", classes=("a", LONG_NAME, "c"))
    digit = _gray(28, 28)
    write_array(tmp_path / "digit.png", digit)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "explain", str(ckpt), str(tmp_path / "digit.png"), "-o",
        str(tmp_path / "maps"), "--class", LONG_NAME, "--alpha", "0", "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    x, y = record["peak"]
    assert 0 <= x < 28 and 0 <= y < 28  # the input's pixels, as before
    drawn = cv2.imread(record["output"])[:, :, ::-1]
    band = drawn.shape[0] - 224
    assert drawn.shape[1] == 224 and band > 0
    assert np.array_equal(drawn[band:], _as_rgb(np.kron(digit, np.ones((8, 8), np.uint8))))
    assert _ink_columns(drawn[:band]).max() < 222  # the long name is not cut at the edge
