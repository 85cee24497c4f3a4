"""Datasets: generated sets, torchvision's IDX layout, folders, batching, augmentation, describe."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.data.augment import BatchAugment
from cnnkit.data.describe import describe_dataset
from cnnkit.data.folders import FileDataset, collate_skipping, scan_folder
from cnnkit.data.memory import InMemoryBatches, TensorSplit, split_off
from cnnkit.data.registry import DatasetRequest, load_dataset
from cnnkit.data.synthetic import MOTION_CLASSES, make_moving_shapes, make_shapes
from cnnkit.errors import DatasetError
from tests.media import make_image_folder, make_video_folder

# ---------------------------------------------------------------------------
# generated datasets
# ---------------------------------------------------------------------------


def test_shapes_are_deterministic_balanced_and_varied():
    x1, y1 = make_shapes(60, seed=3)
    x2, y2 = make_shapes(60, seed=3)
    x3, _ = make_shapes(60, seed=4)
    assert x1.shape == (60, 3, 32, 32) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert np.bincount(y1).tolist() == [10] * 6
    assert len({x.tobytes() for x in x1}) == 60  # every image differs


def test_moving_shapes_move_in_the_labelled_direction():
    frames = 6
    x, y = make_moving_shapes(40, seed=1, frames=frames, size=32, noise=0.0)
    assert x.shape == (40, 3, frames, 32, 32)
    assert np.bincount(y).tolist() == [10] * 4
    assert np.array_equal(x, make_moving_shapes(40, seed=1, frames=frames, noise=0.0)[0])
    # Column (row) profiles: the mover's track is the axis along which the
    # bright mass keeps shifting the same way from frame to frame.
    bright = (x.max(axis=1) > 120).astype(np.float32)  # (N, T, H, W)
    coords = np.arange(32, dtype=np.float32)
    for clip, label in zip(bright, y, strict=True):
        cx = (clip.sum(axis=1) * coords).sum(axis=1) / clip.sum(axis=(1, 2))  # (T,)
        cy = (clip.sum(axis=2) * coords).sum(axis=1) / clip.sum(axis=(1, 2))
        name = MOTION_CLASSES[label]
        # The decoy jumps along the other axis, so only the mover's axis is monotonic.
        along = {
            "left": -np.diff(cx),
            "right": np.diff(cx),
            "up": -np.diff(cy),
            "down": np.diff(cy),
        }[name]
        assert np.all(along > 0), name


def test_load_shapes_gives_three_splits_and_input_spec():
    data = load_dataset(DatasetRequest("shapes", limit=24, seed=1))
    assert set(data.splits) == {"train", "val", "test"}
    assert data.sizes() == {"train": 24, "val": 24, "test": 24}
    assert data.input.channels == 3 and data.input.size == (32, 32) and data.input.frames is None
    assert data.hflip is True
    assert 0.0 < data.input.mean[0] < 1.0


def test_moving_shapes_frames_option_and_no_flips():
    data = load_dataset(DatasetRequest("moving-shapes", limit=8, frames=5, img_size=24))
    split = data.splits["train"]
    xb, _ = split.batch(torch.arange(4), train=True)
    assert xb.shape == (4, 3, 5, 24, 24)
    assert data.input.frames == 5 and data.hflip is False


def test_unknown_dataset_gets_a_close_match():
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetRequest("shapez"))
    assert "shapes" in err.value.hint


# ---------------------------------------------------------------------------
# in-memory batching
# ---------------------------------------------------------------------------


def _split(n: int = 10) -> TensorSplit:
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorSplit(x, torch.arange(n))


def test_in_memory_batches_cover_each_sample_once_and_reshuffle_per_epoch():
    loader = InMemoryBatches(_split(10), 4, shuffle=True, train=True, seed=5)
    assert len(loader) == 3
    epoch1 = torch.cat([y for _, y in loader])
    epoch2 = torch.cat([y for _, y in loader])
    assert sorted(epoch1.tolist()) == list(range(10)) == sorted(epoch2.tolist())
    assert not torch.equal(epoch1, epoch2)
    again = InMemoryBatches(_split(10), 4, shuffle=True, train=True, seed=5)
    assert torch.equal(torch.cat([y for _, y in again]), epoch1)  # same seed, same order
    for x, y in InMemoryBatches(_split(10), 4, shuffle=True, train=True, seed=5):
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # inputs stay paired with labels


def test_eval_batches_are_in_order():
    ys = [y for _, y in InMemoryBatches(_split(7), 3, shuffle=False, train=False)]
    assert [t.tolist() for t in ys] == [[0, 1, 2], [3, 4, 5], [6]]


def test_clip_batches_start_centred_at_eval_and_randomly_in_training():
    n, length = 6, 12
    x = torch.arange(length, dtype=torch.uint8).view(1, 1, length, 1, 1).repeat(n, 1, 1, 2, 2)
    split = TensorSplit(
        x, torch.zeros(n, dtype=torch.long), frames=4, lengths=torch.tensor([12, 12, 12, 12, 5, 3])
    )
    clips, _ = split.batch(torch.arange(n), train=False)
    starts = clips[:, 0, 0, 0, 0].tolist()
    assert starts == [4, 4, 4, 4, 0, 0]
    assert clips[5, 0, :, 0, 0].tolist() == [0, 1, 2, 2]  # short video repeats its last frame
    g = torch.Generator().manual_seed(0)
    starts = {
        int(split.batch(torch.arange(4), train=True, generator=g)[0][0, 0, 0, 0, 0])
        for _ in range(30)
    }
    assert len(starts) > 3 and max(starts) <= 8
    assert torch.all(clips[:, 0, 1:] - clips[:, 0, :-1] >= 0)


def test_split_off_is_seeded_and_disjoint():
    a_train, a_val = split_off(_split(20), 0.25, seed=1)
    b_train, b_val = split_off(_split(20), 0.25, seed=1)
    assert len(a_val) == 5 and torch.equal(a_val.y, b_val.y)
    assert set(a_train.y.tolist()).isdisjoint(a_val.y.tolist())


# ---------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------


def test_augment_keeps_shapes_and_warps_every_frame_of_a_clip_alike():
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(3, 2, 1, 8, 8).repeat(1, 1, 4, 1, 1)  # 4 identical frames
    out = BatchAugment(shift=0.2, rotate=20)(clip, generator=g)
    assert out.shape == clip.shape
    assert torch.allclose(out[:, :, 0], out[:, :, 3])
    assert not torch.allclose(out, clip)
    still = BatchAugment(shift=0, rotate=0, scale=0)(clip, generator=g)
    assert torch.allclose(still, clip, atol=1e-5)


def test_hflip_mirrors_some_images():
    x = torch.zeros(64, 1, 4, 4)
    x[:, :, :, 0] = 1.0  # a bar on the left edge
    out = BatchAugment(shift=0, rotate=0, scale=0, hflip=True)(x)
    right = out[:, 0, :, 3].mean(dim=1) > 0.9
    assert 10 < int(right.sum()) < 54


# ---------------------------------------------------------------------------
# torchvision layout (fake IDX files; never the network)
# ---------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        ">" + "I" * array.ndim, *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, n_train: int = 30, n_test: int = 10) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def test_mnist_reads_torchvision_layout_offline(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    _fake_mnist(tmp_path)

    def no_network(self):
        raise AssertionError("must not download when the files are there")

    monkeypatch.setattr(MNIST, "download", no_network)
    data = load_dataset(DatasetRequest("mnist", data_dir=str(tmp_path), val_split=0.2))
    assert data.classes == [str(d) for d in range(10)]
    assert data.sizes() == {"train": 24, "val": 6, "test": 10}
    assert data.splits["test"].x.shape == (10, 1, 28, 28)
    assert data.splits["test"].y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert data.hflip is False  # digits must not be mirrored


def test_missing_mnist_offline_names_folder_and_files(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetRequest("mnist", data_dir=str(tmp_path)))
    assert str(tmp_path) in err.value.message
    assert "train-images-idx3-ubyte" in err.value.hint


def test_cnnkit_data_env_is_the_default_folder(tmp_path, monkeypatch):
    from cnnkit.data.torchvision_sets import default_data_dir

    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path


# ---------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------


def _messy_folder(root: Path) -> None:
    make_image_folder(root, ["cat", "dog"], per_class=5, h=12, w=12)
    hidden = root / "cat" / ".ipynb_checkpoints"
    hidden.mkdir()
    (hidden / "img-checkpoint.png").write_bytes(b"junk")
    (root / "dog" / "broken.png").write_bytes(b"not a png at all")


def test_image_folder_in_memory_skips_corrupt_and_hidden(tmp_path, capsys):
    _messy_folder(tmp_path)
    data = load_dataset(DatasetRequest(str(tmp_path), img_size=8, val_split=0.2))
    assert data.classes == ["cat", "dog"] and data.kind == "image" and data.in_memory
    assert data.sizes()["train"] + data.sizes()["val"] == 10
    assert data.splits["train"].x.shape[1:] == (3, 8, 8)
    assert any("broken.png" in w for w in data.warnings)
    assert any(".ipynb_checkpoints" in w for w in data.warnings)


def test_folder_with_splits_and_file_backed_loading(tmp_path):
    make_image_folder(tmp_path / "train", ["a", "b"], per_class=4, h=8, w=8)
    make_image_folder(tmp_path / "valid", ["a", "b"], per_class=2, h=8, w=8)
    make_image_folder(tmp_path / "test", ["a", "b"], per_class=1, h=8, w=8)
    (tmp_path / "train" / "a" / "bad.png").write_bytes(b"xx")
    data = load_dataset(DatasetRequest(str(tmp_path), img_size=8, memory_budget=0))
    assert not data.in_memory
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 9, "val": 4, "test": 2}
    train = data.splits["train"]
    assert isinstance(train, FileDataset)
    items = [train[i] for i in range(len(train))]
    assert sum(item is None for item in items) == 1  # the corrupt file, skipped
    x, y = collate_skipping(items)
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.uint8 and len(y) == 8


def test_empty_folder_error_lists_extensions(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetRequest(str(tmp_path)))
    assert ".png" in err.value.hint and ".mp4" in err.value.hint
    with pytest.raises(DatasetError):
        scan_folder(tmp_path / "nope")


def test_video_folder_gives_clips(tmp_path):
    make_video_folder(tmp_path, ["slow", "fast"], per_class=3, frames=10, h=16, w=16)
    data = load_dataset(DatasetRequest(str(tmp_path), frames=4, img_size=8, val_split=0.34))
    assert data.kind == "video" and data.input.frames == 4 and data.hflip is False
    clips, labels = data.splits["train"].batch(torch.arange(2), train=False)
    assert clips.shape == (2, 3, 4, 8, 8)
    lazy = load_dataset(DatasetRequest(str(tmp_path), frames=4, img_size=8, memory_budget=0))
    clip, _ = lazy.splits["val"][0]
    assert clip.shape == (3, 4, 8, 8)


# ---------------------------------------------------------------------------
# describe (inspect DATASET)
# ---------------------------------------------------------------------------


def test_describe_folder_reports_counts_hidden_unreadable_and_imbalance(tmp_path):
    _messy_folder(tmp_path)
    make_image_folder(tmp_path, ["bird"], per_class=1, h=12, w=12)
    (tmp_path / "empty").mkdir()
    info = describe_dataset(tmp_path)
    assert info["kind"] == "dataset"
    assert info["classes"] == ["bird", "cat", "dog", "empty"]
    assert info["counts"] == {"bird": 1, "cat": 5, "dog": 5, "empty": 0}
    assert info["splits"]["train"]["cat"] == 5
    assert [Path(p).name for p in info["unreadable"]] == ["broken.png"]
    text = " ".join(info["warnings"])
    assert ".ipynb_checkpoints" in text and "empty" in text and "imbalanced" in text


def test_describe_builtin_and_unknown():
    info = describe_dataset("shapes")
    assert info["classes"][0] == "circle" and sum(info["splits"]["val"].values()) == 1000
    with pytest.raises(DatasetError):
        describe_dataset("no-such-thing")
