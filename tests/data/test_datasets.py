"""Datasets: generated sets, torchvision's IDX layout, folders, batching, augmentation, describe."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.data.arrays import Split
from cnnkit.data.augment import BatchAugment
from cnnkit.data.describe import describe_dataset
from cnnkit.data.folders import FileDataset, collate_skipping, scan_folder
from cnnkit.data.memory import InMemoryBatches, gather_batch, split_off
from cnnkit.data.registry import DatasetRequest, load_dataset
from cnnkit.data.synthetic import MOTION_CLASSES, make_moving_shapes, make_shapes
from cnnkit.errors import DatasetError
from tests.helpers import make_image_folder, make_video_folder

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
    xb, _ = gather_batch(split, torch.arange(4), train=True)
    assert xb.shape == (4, 3, 5, 24, 24)
    assert data.input.frames == 5 and data.hflip is False


def test_unknown_dataset_gets_a_close_match():
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetRequest("shapez"))
    assert "shapes" in err.value.hint


# ---------------------------------------------------------------------------
# in-memory batching
# ---------------------------------------------------------------------------


def _split(n: int = 10) -> Split:
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=2).repeat(2, axis=3)
    return Split(x, np.arange(n))


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
    x = np.tile(np.arange(length, dtype=np.uint8).reshape(1, 1, length, 1, 1), (n, 1, 1, 2, 2))
    split = Split(x, np.zeros(n, np.int64), frames=4, lengths=np.array([12, 12, 12, 12, 5, 3]))
    clips, _ = gather_batch(split, torch.arange(n), train=False)
    starts = clips[:, 0, 0, 0, 0].tolist()
    assert starts == [4, 4, 4, 4, 0, 0]
    assert clips[5, 0, :, 0, 0].tolist() == [0, 1, 2, 2]  # short video repeats its last frame
    g = torch.Generator().manual_seed(0)
    starts = {
        int(gather_batch(split, torch.arange(4), train=True, generator=g)[0][0, 0, 0, 0, 0])
        for _ in range(30)
    }
    assert len(starts) > 3 and max(starts) <= 8
    assert torch.all(clips[:, 0, 1:] - clips[:, 0, :-1] >= 0)


def test_split_off_is_seeded_and_disjoint():
    a_train, a_val = split_off(_split(20), 0.25, seed=1)
    b_train, b_val = split_off(_split(20), 0.25, seed=1)
    assert len(a_val) == 5 and np.array_equal(a_val.y, b_val.y)
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


def _no_download(monkeypatch, cls) -> None:
    """Make ``cls.download`` fail the test: the files are there, the network must not be used."""

    def no_network(self):
        raise AssertionError("must not download when the files are there")

    monkeypatch.setattr(cls, "download", no_network)


def _offline(monkeypatch, cls) -> None:
    """Make ``cls.download`` fail the way it does without a network."""

    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(cls, "download", offline)


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

    _no_download(monkeypatch, MNIST)
    data = load_dataset(DatasetRequest("mnist", data_dir=str(tmp_path), val_split=0.2))
    assert data.classes == [str(d) for d in range(10)]
    assert data.sizes() == {"train": 24, "val": 6, "test": 10}
    assert data.splits["test"].x.shape == (10, 1, 28, 28)
    assert data.splits["test"].y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert data.hflip is False  # digits must not be mirrored


def test_missing_mnist_offline_names_folder_and_files(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    _offline(monkeypatch, MNIST)
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetRequest("mnist", data_dir=str(tmp_path)))
    assert str(tmp_path) in err.value.message
    assert "train-images-idx3-ubyte" in err.value.hint


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def _fake_cifar(root: Path, monkeypatch, cls, label_key: str, names: list[str]) -> np.ndarray:
    """torchvision's CIFAR pickles with ``per_file`` images each; returns the test images.

    torchvision verifies every file's MD5, so the class's checksums are set to
    those of the files written here (the check itself still runs).
    """
    import pickle

    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    test_images = None
    lists = {}
    for attr in ("train_list", "test_list"):
        entries = []
        for file_name, _ in getattr(cls, attr):
            images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
            labels = [(i * 3) % len(names) for i in range(4)]
            blob = {"data": images.reshape(4, 3072), label_key: labels}
            (folder / file_name).write_bytes(pickle.dumps(blob))
            entries.append([file_name, _md5(folder / file_name)])
            test_images = images if attr == "test_list" else test_images
        lists[attr] = entries
    meta = folder / cls.meta["filename"]
    meta.write_bytes(pickle.dumps({cls.meta["key"]: names}))
    for attr, entries in lists.items():
        monkeypatch.setattr(cls, attr, entries)
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(meta)})
    return test_images


@pytest.mark.parametrize(
    "name,class_name,label_key,n_classes",
    [("cifar10", "CIFAR10", "labels", 10), ("cifar100", "CIFAR100", "fine_labels", 100)],
)
def test_cifar_reads_torchvision_layout_offline(
    tmp_path, monkeypatch, name, class_name, label_key, n_classes
):
    from torchvision import datasets

    cls = getattr(datasets, class_name)
    names = [f"class{i}" for i in range(n_classes)]
    test_images = _fake_cifar(tmp_path, monkeypatch, cls, label_key, names)

    _no_download(monkeypatch, cls)
    data = load_dataset(DatasetRequest(name, data_dir=str(tmp_path), val_split=0.25))
    n_train = 4 * len(cls.train_list)
    assert data.classes == names
    assert data.sizes() == {"train": n_train - n_train // 4, "val": n_train // 4, "test": 4}
    # Channels first, pixel for pixel what the pickle holds.
    assert np.array_equal(data.splits["test"].x, test_images)
    assert data.splits["test"].y.tolist() == [0, 3, 6, 9]
    assert data.input.channels == 3 and data.hflip is True


def test_svhn_reads_torchvision_layout_with_zero_labelled_0(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    from torchvision.datasets import SVHN

    rng = np.random.default_rng(2)
    split_list = {}
    images = {}
    for split, n in (("train", 12), ("test", 5)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's (H, W, C, N)
        y = (np.arange(n) % 10 + 1).reshape(n, 1)  # 1..10, where 10 is the digit 0
        file_name = f"{split}_32x32.mat"
        scipy_io.savemat(tmp_path / file_name, {"X": x, "y": y})
        split_list[split] = [SVHN.split_list[split][0], file_name, _md5(tmp_path / file_name)]
        images[split] = x
    monkeypatch.setattr(SVHN, "split_list", {**SVHN.split_list, **split_list})

    _no_download(monkeypatch, SVHN)
    data = load_dataset(DatasetRequest("svhn", data_dir=str(tmp_path), val_split=0.25))
    assert data.classes == [str(d) for d in range(10)]
    assert data.sizes() == {"train": 9, "val": 3, "test": 5}
    assert np.array_equal(data.splits["test"].x, images["test"].transpose(3, 2, 0, 1))
    assert data.splits["test"].y.tolist() == [1, 2, 3, 4, 5]
    train_labels = np.sort(np.concatenate([data.splits["train"].y, data.splits["val"].y]))
    assert train_labels.tolist() == [0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9]  # 10 became 0
    assert data.hflip is False


def test_svhn_without_scipy_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from torchvision.datasets import SVHN

    _offline(monkeypatch, SVHN)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io raises ImportError
    with pytest.raises(DatasetError) as err:
        load_dataset(DatasetRequest("svhn", data_dir=str(tmp_path)))
    assert "scipy" in err.value.message and err.value.hint == "pip install scipy"


@pytest.mark.parametrize(
    "name,folder,hflip,first_class",
    [("fashion-mnist", "FashionMNIST", True, "T-shirt/top"), ("kmnist", "KMNIST", False, "o")],
)
def test_mnist_like_sets_read_their_own_folders(
    tmp_path, monkeypatch, name, folder, hflip, first_class
):
    from torchvision import datasets

    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", np.full((n, 28, 28), 7))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    cls = getattr(datasets, folder)

    _no_download(monkeypatch, cls)
    data = load_dataset(DatasetRequest(name, data_dir=str(tmp_path)))
    assert data.classes[0] == first_class and len(data.classes) == 10
    assert data.sizes()["test"] == 10 and data.hflip is hflip


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
    clips, labels = gather_batch(data.splits["train"], torch.arange(2), train=False)
    assert clips.shape == (2, 3, 4, 8, 8)
    lazy = load_dataset(DatasetRequest(str(tmp_path), frames=4, img_size=8, memory_budget=0))
    clip, _ = lazy.splits["val"][0]
    assert clip.shape == (3, 4, 8, 8)


def test_scan_reports_a_folder_it_cannot_read(tmp_path, monkeypatch):
    make_image_folder(tmp_path, ["cat", "dog"], per_class=2, h=8, w=8)
    locked = tmp_path / "dog" / "locked"
    make_image_folder(locked, ["x"], per_class=1, h=8, w=8)
    scandir = os.scandir

    def refuse_locked(path="."):
        # chmod 000 does not stop root, so the refusal is staged where os.walk lists folders.
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    scan = scan_folder(tmp_path)
    assert scan.unreadable_folders == [(locked, "Permission denied")]
    assert scan.counts("all") == {"cat": 2, "dog": 2}


# ---------------------------------------------------------------------------
# file-backed clips: the same draws whatever the workers
# ---------------------------------------------------------------------------


@pytest.fixture
def video_folder(tmp_path):
    # 16 frames drifting a pixel each: every clip start gives different pixels.
    make_video_folder(tmp_path / "videos", ["a", "b"], per_class=4, frames=16, h=16, w=16)
    return tmp_path / "videos"


def test_file_backed_clip_starts_come_from_the_draws_and_validation_is_centred(video_folder):
    request = DatasetRequest(
        str(video_folder), frames=4, img_size=8, val_split=0.25, seed=3, memory_budget=0
    )
    data = load_dataset(request)
    train = data.splits["train"]
    assert isinstance(train, FileDataset) and train.train
    # 16 frames, clips of 4: 13 starts, a draw u in [0, 1) picks floor(13 u).
    assert [train.clip_start(i, u) for i in range(2) for u in (0.0, 0.5, 0.999)] == [0, 6, 12] * 2
    val = data.splits["val"]
    assert {val.clip_start(i) for i in range(len(val))} == {6}  # centred


def test_file_backed_epochs_give_the_same_clips_with_any_number_of_workers(video_folder):
    from cnnkit.data.datamodule import ClassifierDataModule

    data = load_dataset(DatasetRequest(str(video_folder), frames=4, img_size=8, memory_budget=0))

    def clips(workers: int, epoch: int) -> list[bytes]:
        loader = ClassifierDataModule(data, batch_size=3, workers=workers).train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning does before each epoch
        # The order is the shuffle's; which clip each video gives is the dataset's.
        return sorted(x.numpy().tobytes() for batch, _ in loader for x in batch)

    assert clips(0, 0) == clips(2, 0)
    assert clips(0, 1) == clips(2, 1)
    assert clips(0, 0) != clips(0, 1)


@pytest.mark.parametrize("workers", [0, 2])
def test_file_backed_training_repeats_with_the_same_seed(
    video_folder, tmp_path, monkeypatch, workers
):
    import csv

    from cnnkit.training.fit import fit
    from cnnkit.training.options import TrainConfig

    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "0")  # decode from the files, every epoch

    def run(name: str) -> dict:
        return fit(
            TrainConfig(
                dataset=str(video_folder), model="c3d_small", frames=4, img_size=16,
                epochs=2, batch_size=4, val_split=0.25, workers=workers, device="cpu",
                out=str(tmp_path / "runs"), name=name, seed=5,
            )
        )  # fmt: skip

    a, b = run("a"), run("b")
    assert not load_dataset(DatasetRequest(str(video_folder), memory_budget=0)).in_memory
    assert a["metrics"] == b["metrics"]
    rows = [list(csv.reader(open(f"{r['run_dir']}/metrics.csv"))) for r in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) > 2


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


@pytest.mark.parametrize("shape", [(5, 28, 28), (3, 7, 12), (2, 1, 9)])
def test_affine_grid_equals_torchs(shape):
    import torch.nn.functional as F

    from cnnkit.data.augment import affine_grid

    n, h, w = shape
    theta = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(n))
    expected = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    assert torch.allclose(affine_grid(theta, h, w), expected, atol=1e-6)


def test_a_dataset_that_cannot_be_downloaded_is_one_line_naming_the_files(
    tmp_path, monkeypatch, capsys
):
    from tests.helpers import cnnkit_in_process

    monkeypatch.setenv("CNNKIT_OFFLINE", "1")
    args = ["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path)]
    code, _, err = cnnkit_in_process(monkeypatch, capsys, *args)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "\\x0a" not in errors[0]
    assert f"into {tmp_path / 'MNIST' / 'raw'}: train-images-idx3-ubyte" in errors[0]
