"""What the data layer decides for the user: --limit samples, channels, flips, splits.

Each of these once decided silently and wrongly: ``--limit`` kept the first N
samples (one class of a class-sorted dataset), channels were read off the
first 16 files, and digit folders were mirrored in augmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnkit.cli.output import show_messages
from cnnkit.data.folders import detect_channels, scan_folder, split_files
from cnnkit.data.registry import DatasetRequest, in_memory_dataset, load_dataset
from cnnkit.data.sampling import stratified_sample, stratified_split
from cnnkit.errors import DatasetError, InputError
from cnnkit.training.options import check_value
from tests.helpers import write_array


def _solid_folder(root: Path, colours: dict[str, tuple[int, ...] | int], per_class: int) -> Path:
    """root/<class>/i.png, each class one flat colour (an int: a gray PNG)."""
    rng = np.random.default_rng(0)
    for name, colour in colours.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            if isinstance(colour, int):
                img = np.full((8, 8), colour, np.uint8)
            else:
                img = np.zeros((8, 8, 3), np.uint8) + np.array(colour, np.uint8)
            noise = rng.integers(0, 2, size=img.shape[:2], dtype=np.uint8)
            write_array(root / name / f"{i:03d}.png", img + (noise if img.ndim == 2 else 0))
    return root


# ---------------------------------------------------------------------------
# --limit: seeded, class-stratified
# ---------------------------------------------------------------------------


def test_stratified_sample_keeps_class_proportions_and_is_seeded():
    labels = np.repeat(np.arange(10), [50, 50, 50, 50, 50, 50, 50, 50, 50, 550])  # sorted
    index = stratified_sample(labels, 100, seed=3)
    counts = np.bincount(labels[index], minlength=10)
    assert len(index) == 100 and list(index) == sorted(index)
    assert counts[:9].tolist() == [5] * 9 and counts[9] == 55  # 1,000 -> 100: a tenth of each
    assert np.array_equal(index, stratified_sample(labels, 100, seed=3))
    assert not np.array_equal(index, stratified_sample(labels, 100, seed=4))
    few = stratified_sample(labels, 4, seed=0)
    assert len(set(few.tolist())) == 4  # distinct samples, never a repeat
    # Every class is kept when the limit allows it, even a rare one.
    rare = np.array([0] * 990 + [1] * 10)
    assert set(rare[stratified_sample(rare, 20, seed=0)].tolist()) == {0, 1}


def test_stratified_split_holds_out_each_class():
    labels = np.repeat(np.arange(3), 10)
    kept, held = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[held]).tolist() == [2, 2, 2]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(30))


def test_limit_on_a_class_sorted_folder_takes_every_class(tmp_path):
    colours = {str(d): d * 20 for d in range(10)}  # digits 0-9, gray, listed in class order
    _solid_folder(tmp_path / "digits", colours, per_class=12)
    data = load_dataset(DatasetRequest(str(tmp_path / "digits"), limit=30, img_size=8, seed=1))
    train = data.splits["train"]
    assert len(train) == 30
    assert sorted(set(train.y.tolist())) == list(range(10))  # not just classes 0-2
    assert "class-stratified" in data.decisions["limit"]
    again = load_dataset(DatasetRequest(str(tmp_path / "digits"), limit=30, img_size=8, seed=1))
    assert train.paths == again.splits["train"].paths  # seeded: the same sample


def test_limit_on_class_sorted_arrays_takes_every_class():
    # torchvision's test files come sorted by class; --limit used to keep the first N.
    x = np.zeros((400, 1, 4, 4), np.uint8)
    y = np.repeat(np.arange(4), 100).astype(np.int64)
    request = DatasetRequest("digits", limit=40, val_split=0.1)
    data = in_memory_dataset("digits", "image", list("0123"), {"test": (x, y), "train": (x, y)},
                             request, hflip=False)  # fmt: skip
    for split in ("train", "val", "test"):
        assert np.bincount(data.splits[split].y, minlength=4).min() >= 1, split
    assert len(data.splits["test"]) == 40
    # The val split is held out of the whole train split first, then sampled.
    assert len(data.splits["val"]) == 40


def test_an_empty_train_split_is_an_error():
    x = np.zeros((1, 1, 4, 4), np.uint8)
    request = DatasetRequest("one", val_split=0.1)
    with pytest.raises(DatasetError, match="no train samples left"):
        in_memory_dataset("one", "image", ["a"], {"train": (x, np.zeros(1, np.int64))},
                          request, hflip=False)  # fmt: skip


# ---------------------------------------------------------------------------
# channels
# ---------------------------------------------------------------------------


def test_one_colour_class_after_a_gray_one_makes_the_dataset_colour(tmp_path):
    # Pure red and dark green have the same luma: in gray they are one class.
    root = _solid_folder(
        tmp_path / "d", {"a_gray": 128, "b_red": (255, 0, 0), "c_green": (0, 130, 0)}, 20
    )
    scan = scan_folder(root)
    choice = detect_channels(split_files(scan, 0.1, 0), scan.kind)
    assert choice.channels == 3 and "colour" in choice.reason
    data = load_dataset(DatasetRequest(str(root), img_size=8))
    assert data.input.channels == 3
    red, green = (data.splits["train"].x[data.splits["train"].y == k][0] for k in (1, 2))
    assert not np.array_equal(red, green)


def test_gray_content_stored_as_rgb_counts_as_gray(tmp_path):
    root = _solid_folder(tmp_path / "d", {"a": (90, 90, 90), "b": (200, 200, 200)}, 4)
    scan = scan_folder(root)
    choice = detect_channels(split_files(scan, 0.1, 0), scan.kind)
    assert choice.channels == 1 and "all gray" in choice.reason


def test_channels_are_checked_across_classes_in_a_large_folder(tmp_path):
    # More files than the sample: the colour class comes last in every listing.
    colours: dict[str, tuple[int, ...] | int] = {f"g{i:02d}": 100 for i in range(30)}
    colours["z_red"] = (255, 0, 0)
    root = _solid_folder(tmp_path / "d", colours, per_class=20)  # 620 files
    scan = scan_folder(root)
    assert detect_channels(split_files(scan, 0.1, 0), scan.kind).channels == 3


# ---------------------------------------------------------------------------
# flips, empty classes, --val-split 0
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("colours", "flips"),
    [
        ({"0": 30, "1": 200}, False),  # digits: glyphs
        ({"A": (200, 0, 0), "B": (0, 0, 200)}, False),  # letters, even in colour
        ({"cat": 40, "dog": 220}, False),  # gray
        ({"cat": (200, 0, 0), "dog": (0, 0, 200)}, True),  # colour photos
    ],
)
def test_folder_flip_default(tmp_path, colours, flips):
    root = _solid_folder(tmp_path / "d", colours, 4)
    data = load_dataset(DatasetRequest(str(root), img_size=8))
    assert data.hflip is flips
    assert "flips" in data.decisions["hflip"]


def test_a_class_missing_from_val_is_warned_about(tmp_path, capsys):
    show_messages(False)  # a CLI test before this one may have left --quiet on
    _solid_folder(tmp_path / "d" / "train", {"a": 10, "b": 200}, 3)
    _solid_folder(tmp_path / "d" / "val", {"a": 10}, 2)
    data = load_dataset(DatasetRequest(str(tmp_path / "d"), img_size=8))
    assert "val: empty class(es): b" in data.warnings
    assert "warning: val: empty class(es): b" in capsys.readouterr().err


def test_val_split_zero_keeps_every_file_for_training(tmp_path):
    _solid_folder(tmp_path / "d", {"a": 10, "b": 200}, 5)
    data = load_dataset(DatasetRequest(str(tmp_path / "d"), img_size=8, val_split=0))
    assert set(data.splits) == {"train"} and len(data.splits["train"]) == 10


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_val_split_has_one_rule(value):
    with pytest.raises(InputError, match="must be at least 0 and below 1"):
        check_value("val_split", value)
    with pytest.raises(ValueError):
        load_dataset(DatasetRequest("shapes", val_split=value))


# ---------------------------------------------------------------------------
# layouts that could be read two ways, files skipped, splits that end up empty
# ---------------------------------------------------------------------------


def test_a_class_named_like_a_split_is_refused_not_taken_as_one(tmp_path):
    _solid_folder(tmp_path / "veh", {"bus": 10, "car": 90, "train": 200}, 2)
    with pytest.raises(DatasetError, match=r"mixes split folders \(train/\) with other folders"):
        scan_folder(tmp_path / "veh")


def test_val_and_valid_together_are_refused(tmp_path):
    for split in ("train", "val", "valid"):
        _solid_folder(tmp_path / "d" / split, {"a": 10, "b": 200}, 2)
    with pytest.raises(DatasetError, match="has both val/ and valid/"):
        scan_folder(tmp_path / "d")


def test_files_of_the_other_kind_are_warned_about(tmp_path):
    _solid_folder(tmp_path / "d", {"a": 10, "b": 200}, 3)
    (tmp_path / "d" / "a" / "notes.txt").write_text("not an image")
    data = load_dataset(DatasetRequest(str(tmp_path / "d"), img_size=8))
    assert any(w.startswith("ignored 1 file(s) that are not images") for w in data.warnings)


def test_an_unreadable_test_split_is_an_error_not_a_silent_fallback(tmp_path):
    _solid_folder(tmp_path / "d" / "train", {"a": 10, "b": 200}, 3)
    for name in ("a", "b"):
        (tmp_path / "d" / "test" / name).mkdir(parents=True)
        (tmp_path / "d" / "test" / name / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="no readable test samples"):
        load_dataset(DatasetRequest(str(tmp_path / "d"), img_size=8))


@pytest.mark.parametrize(
    "val_split, phrase",
    [(0.999, "leaves no file of .* for training"), (0.1, "no training files")],
)
def test_empty_training_files_name_the_real_cause(tmp_path, val_split, phrase):
    if val_split == 0.1:  # class folders that exist but hold nothing
        for name in ("a", "b"):
            (tmp_path / "d" / "train" / name).mkdir(parents=True)
        _solid_folder(tmp_path / "d" / "val", {"a": 10, "b": 200}, 1)
    else:
        _solid_folder(tmp_path / "d", {"a": 10, "b": 200}, 3)
    with pytest.raises(DatasetError, match=phrase):
        load_dataset(DatasetRequest(str(tmp_path / "d"), img_size=8, val_split=val_split))


def test_channels_are_decided_before_the_limit(tmp_path):
    colours: dict[str, tuple[int, ...] | int] = {"apple": 60, "pear": 180}
    root = _solid_folder(tmp_path / "d", colours, 30)
    write_array(root / "pear" / "zz_colour.png", np.full((8, 8, 3), (200, 30, 30), np.uint8))
    quick = load_dataset(DatasetRequest(str(root), img_size=8, limit=4, seed=1))
    assert quick.input.channels == 3 and "colour" in quick.decisions["channels"]


def test_signed_integer_pixels_are_refused_not_clipped():
    from cnnkit.data.preprocess import prepare_image
    from cnnkit.errors import ReadError

    with pytest.raises(ReadError, match="int16 have no agreed 0-255 range"):
        prepare_image(np.full((4, 4), 2550, np.int16), 1, (4, 4))
