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
import logging

import cv2
import numpy as np
import pytest

from cnnkit.evaluation.files import most_confused, render_confusion, write_confusion
from cnnkit.saliency import Explanation, overlay
from tests.helpers import cnnkit_in_process, make_checkpoint, make_image_folder, write_array

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


def test_a_fixed_band_keeps_its_height_and_the_text_stays_out_of_the_image() -> None:
    # A video's frames share one band; a text too long for it is cut to its lines.
    image = _gray(28, 28)
    drawn = overlay(image, _heat(), 0.0, LONG_NAME * 3, band=30)
    assert drawn.shape == (30 + 224, 224, 3)
    assert np.array_equal(drawn[30:], _as_rgb(np.kron(image, np.ones((8, 8), np.uint8))))
    assert _ink_columns(drawn[:30]).max() < 222


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


# --- the confusion matrix --------------------------------------------------------------

ABOUT = {"checkpoint": "runs/x/best.ckpt", "dataset": "digits", "split": "test", "n": 1000,
         "accuracy": 0.965}  # fmt: skip


def test_the_confusion_title_says_what_was_measured() -> None:
    cm = np.array([[8, 2], [1, 9]])
    titled = render_confusion(cm, ["cat", "dog"], about=ABOUT)
    plain = render_confusion(cm, ["cat", "dog"])
    extra = titled.shape[0] - plain.shape[0]
    assert extra > 20  # at least one more line of text
    assert (titled[:extra].min(axis=2) < 128).any()  # written, not a blank band
    other = render_confusion(cm, ["cat", "dog"], about={**ABOUT, "accuracy": 0.5})
    assert not np.array_equal(titled[:extra], other[:extra])  # the accuracy is drawn


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 60


def _mode(pixels: np.ndarray) -> np.ndarray:
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    return colours[counts.argmax()]


def test_one_mistake_in_hundreds_is_coloured_and_an_empty_cell_is_background() -> None:
    classes = ["0", "1", "2"]
    one = np.array([[499, 1, 0], [0, 500, 0], [0, 0, 500]])
    none = np.array([[500, 0, 0], [0, 500, 0], [0, 0, 500]])
    with_mistake, without = render_confusion(one, classes), render_confusion(none, classes)
    changed = _changed(with_mistake, without)
    # A whole cell changes colour, not just its number's few pixels.
    assert changed.sum() > 400
    mistake, empty = _mode(with_mistake[changed]), _mode(without[changed])
    assert np.array_equal(empty, without[-1, -1])  # 0: the picture's background
    assert np.abs(mistake.astype(int) - empty.astype(int)).sum() > 150  # clearly visible


def test_a_huge_class_name_does_not_make_a_huge_picture() -> None:
    # Names come from checkpoints and folders: 5,000 characters drew a 40,000-pixel-wide PNG.
    drawn = render_confusion(np.eye(2, dtype=int), ["x" * 5000, "b"])
    assert drawn.shape[1] < 1000


def _blobs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(height, width) of each connected group of pixels."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [
        (int(stats[i, cv2.CC_STAT_HEIGHT]), int(stats[i, cv2.CC_STAT_WIDTH])) for i in range(1, n)
    ]


def test_short_class_names_are_written_upright() -> None:
    cm = np.array([[5, 1], [0, 6]])
    # "I" is a vertical stroke: its row name and its column name are the only changes.
    named, unnamed = render_confusion(cm, ["I", "b"]), render_confusion(cm, ["", "b"])
    blobs = _blobs(_changed(named, unnamed))
    assert len(blobs) == 2
    assert all(h > 2 * w for h, w in blobs), blobs  # both upright, none turned on its side


def test_the_title_says_when_only_the_most_confused_classes_are_drawn(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="cnnkit")
    k = 1000
    cm = np.diag(np.random.default_rng(0).integers(5, 20, k))
    cm[7, 900] = 30
    classes = [f"class-{i}" for i in range(k)]
    write_confusion(tmp_path / "cm.png", cm, classes, about=ABOUT)
    [note] = [r.getMessage() for r in caplog.records if "50 of 1000 classes" in r.getMessage()]
    subset = note.split(" shows ", 1)[1]
    keep = most_confused(cm)
    part, names, totals = cm[np.ix_(keep, keep)], [classes[i] for i in keep], cm.sum(axis=1)[keep]
    expected = render_confusion(part, names, row_totals=totals, note=subset, about=ABOUT)
    assert np.array_equal(cv2.imread(str(tmp_path / "cm.png")), expected)
    untold = render_confusion(part, names, row_totals=totals, about=ABOUT)
    assert expected.shape[0] > untold.shape[0]  # the note is a line of the title


def test_eval_titles_its_confusion_png_with_what_it_measured(tmp_path, monkeypatch, capsys) -> None:
    classes = ("a", "b", "c")
    ckpt = make_checkpoint(tmp_path / "m.ckpt", classes=classes, channels=3)
    make_image_folder(tmp_path / "pics", classes, 3)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "eval", str(ckpt), "--dataset", str(tmp_path / "pics"),
        "--confusion", str(tmp_path / "cm.png"), "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    expected = render_confusion(np.array(doc["confusion_matrix"]), doc["classes"], about=doc)
    assert np.array_equal(cv2.imread(str(tmp_path / "cm.png")), expected)


def test_a_label_cut_to_its_lines_keeps_its_score():
    from cnnkit.captions import MAX_LINES, fit_caption

    caption = fit_caption("x" * 10_000 + " 0.97", 224, 0.6)
    assert len(caption.lines) == MAX_LINES
    assert caption.lines[-1].endswith("... 0.97")
