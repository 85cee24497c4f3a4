"""Eval data without torch: folder datasets decoded into numpy (``load_eval_data(numpy=True)``).

The numpy path must hand eval exactly the samples, labels, ids and order the
torch path does, in memory and file by file, for images and clips, and must
never import torch (an exported model is evaluated where torch is missing).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cnnkit.checkpoint import load_checkpoint
from cnnkit.data.arrays import Split
from cnnkit.data.folders import FileDataset
from cnnkit.data.registry import DatasetRequest, load_dataset
from cnnkit.errors import DatasetError
from cnnkit.evaluation.runner import evaluate
from cnnkit.evaluation.selection import load_eval_data
from tests.helpers import make_checkpoint, make_image_folder, make_video_folder, write_array

CLASSES = ("a", "b", "c")
TINY_BUDGET = "0.000001"  # MiB: 1 byte, so every split is read file by file

# A predictor stand-in that needs numpy only: a fixed linear map of the mean colour
# (a: red, b: green, c: blue over green), which tells make_*_folder's classes apart.
# Run in the test process and in the torch-less one, so both measure the same thing.
PREDICTOR = textwrap.dedent(
    """
    import numpy as np

    from cnnkit.spec import InputSpec


    class LinearStub:
        batch_size = 4
        classes = ["a", "b", "c"]
        weights = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]]).T

        def __init__(self, frames=None):
            self.input = InputSpec(3, (16, 16), frames, (0.5,) * 3, (0.25,) * 3)

        @property
        def is_video_model(self):
            return self.input.frames is not None

        def logits(self, batch):
            rgb = batch.reshape(len(batch), 3, -1).mean(axis=2) / 255.0
            return (rgb @ self.weights).astype(np.float32)
    """
)


def _gray_folder(root: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for ci, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noise = rng.integers(-30, 31, size=(16, 16))
            image = np.clip(60 * ci + 40 + noise, 0, 255).astype(np.uint8)
            write_array(root / name / f"img_{i:03d}.png", image)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """plain: colour images, no split folders; split: gray images in train/ val/ test/;
    video: clips of 12 and 6 frames (the short ones are padded in memory)."""
    base = tmp_path_factory.mktemp("numpy-eval")
    make_image_folder(base / "plain", CLASSES, 4)
    _gray_folder(base / "split" / "train", 4, seed=1)
    _gray_folder(base / "split" / "val", 2, seed=2)
    _gray_folder(base / "split" / "test", 3, seed=3)
    make_video_folder(base / "video", CLASSES, 1, frames=12, seed=1)
    make_video_folder(base / "short", CLASSES, 1, frames=6, seed=2)
    for name in CLASSES:  # a second, shorter video per class
        (base / "short" / name / "vid_000.mp4").rename(base / "video" / name / "vid_001.mp4")
    return {k: base / k for k in ("plain", "split", "video")}


def _ckpt(tmp_path: Path, channels: int, frames: int | None = None):
    model = "c3d_small" if frames else "lenet5"
    path = make_checkpoint(tmp_path / "m.ckpt", model, CLASSES, channels, (16, 16), frames=frames)
    return load_checkpoint(path)


def _assert_same(torch_data, numpy_data) -> None:
    """The same eval data, the first with torch tensors and the second with numpy arrays."""
    for field in ("dataset", "split", "classes", "ids", "label_map"):
        assert getattr(numpy_data, field) == getattr(torch_data, field), field
    t, n = torch_data.data, numpy_data.data
    assert len(n) == len(t) > 0
    if isinstance(t, Split):
        assert isinstance(n, Split)
        assert isinstance(n.x, np.ndarray) and n.x.dtype == np.uint8
        assert n.x.shape == t.x.shape and n.x.tobytes() == t.x.tobytes()
        assert n.y.dtype == np.int64 and n.y.tolist() == t.y.tolist()
        assert n.frames == t.frames and n.paths == t.paths
        if t.lengths is None:
            assert n.lengths is None
        else:
            assert n.lengths.dtype == np.int64 and n.lengths.tolist() == t.lengths.tolist()
    else:
        assert isinstance(t, FileDataset) and isinstance(n, FileDataset) and n.as_numpy
        assert n.items == t.items
        for i in range(len(t)):
            (xt, yt), (xn, yn) = t[i], n[i]
            assert type(xn) is np.ndarray and xn.dtype == np.uint8
            assert xn.shape == tuple(xt.shape) and xn.tobytes() == xt.numpy().tobytes()
            assert yn == yt


def _both(ckpt, root: Path, **kwargs):
    return load_eval_data(ckpt, str(root), **kwargs), load_eval_data(
        ckpt, str(root), numpy=True, **kwargs
    )


@pytest.mark.parametrize("budget", [None, TINY_BUDGET], ids=["memory", "files"])
@pytest.mark.parametrize("limit", [None, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_plain_image_folder_gives_the_same_samples(
    folders, tmp_path, monkeypatch, channels, limit, budget
):
    if budget:
        monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", budget)
    torch_data, numpy_data = _both(_ckpt(tmp_path, channels), folders["plain"], limit=limit)
    assert numpy_data.split == "all"
    assert len(numpy_data.data) == (limit or 12)
    _assert_same(torch_data, numpy_data)


@pytest.mark.parametrize("budget", [None, TINY_BUDGET], ids=["memory", "files"])
@pytest.mark.parametrize("limit", [None, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_split_image_folder_gives_the_same_samples(
    folders, tmp_path, monkeypatch, channels, limit, budget
):
    if budget:
        monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", budget)
    ckpt = _ckpt(tmp_path, channels)
    for split in (None, "train", "val"):
        torch_data, numpy_data = _both(ckpt, folders["split"], split=split, limit=limit)
        assert numpy_data.split == (split or "test")
        _assert_same(torch_data, numpy_data)


@pytest.mark.parametrize("budget", [None, TINY_BUDGET], ids=["memory", "files"])
def test_video_folder_gives_the_same_clips(folders, tmp_path, monkeypatch, budget):
    if budget:
        monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", budget)
    torch_data, numpy_data = _both(_ckpt(tmp_path, 3, frames=4), folders["video"])
    _assert_same(torch_data, numpy_data)
    if not budget:  # whole videos in memory: 12 frames, the 6-frame ones padded
        assert numpy_data.data.x.shape[2] == 12
        assert sorted(numpy_data.data.lengths.tolist()) == [6, 6, 6, 12, 12, 12]


@pytest.mark.parametrize("name", ["plain", "split", "video"])
def test_numpy_folder_dataset_has_the_same_spec_and_splits(folders, name):
    request = DatasetRequest(str(folders[name]), frames=4 if name == "video" else None, seed=3)
    torch_set = load_dataset(request)
    numpy_set = load_dataset(replace(request, numpy=True))
    assert list(numpy_set.splits) == list(torch_set.splits)
    assert numpy_set.sizes() == torch_set.sizes()
    assert numpy_set.classes == torch_set.classes
    assert numpy_set.decisions == torch_set.decisions
    spec_t, spec_n = torch_set.input, numpy_set.input
    assert (spec_n.channels, spec_n.size, spec_n.frames) == (
        spec_t.channels,
        spec_t.size,
        spec_t.frames,
    )
    # Sums run in float64 here and float32 in torch: at most the 4th place may differ.
    assert spec_n.mean == pytest.approx(spec_t.mean, abs=1.01e-4)
    assert spec_n.std == pytest.approx(spec_t.std, abs=1.01e-4)


def test_numpy_request_refuses_builtin_datasets_without_torch(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )  # as on a machine without torch
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "m.ckpt", dataset="shapes", channels=3))
    with pytest.raises(DatasetError) as err:
        load_eval_data(ckpt, numpy=True)
    assert "dataset 'shapes' is built in and needs torch" in err.value.message
    assert "evaluated on folders" in err.value.message
    assert err.value.hint == "give --dataset FOLDER, or evaluate the .ckpt"
    with pytest.raises(DatasetError, match="dataset 'mnist' is built in"):
        load_dataset(DatasetRequest("MNIST", numpy=True))  # refused before any download


# Loads a folder and evaluates it with torch, torchvision, Lightning and torchmetrics
# unimportable; prints one accuracy per (folder, memory budget).
NO_TORCH = (
    textwrap.dedent(
        """
        import os, sys

        BLOCKED = {"torch", "torchvision", "lightning", "torchmetrics"}


        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} must not be imported")
                return None


        assert not any(m.split(".")[0] in BLOCKED for m in sys.modules)
        sys.meta_path.insert(0, Block())
        from pathlib import Path

        from cnnkit.checkpoint import LoadedCheckpoint
        from cnnkit.evaluation.runner import evaluate
        from cnnkit.evaluation.selection import load_eval_data
        from cnnkit.spec import CheckpointMeta
        """
    )
    + PREDICTOR
    + textwrap.dedent(
        """
        for folder, frames in ((sys.argv[1], None), (sys.argv[2], 4)):
            for budget in ("", sys.argv[3]):
                os.environ["CNNKIT_MEMORY_BUDGET"] = budget
                stub = LinearStub(frames)
                meta = CheckpointMeta("lenet5", list(stub.classes), stub.input, seed=0)
                ckpt = LoadedCheckpoint(Path("model.onnx"), meta, {})
                data = load_eval_data(ckpt, folder, numpy=True)
                report = evaluate(stub, data.data, top_k=1, clips=2)
                print(f"{report.accuracy:.6f}")
        assert not any(m.split(".")[0] in BLOCKED for m in sys.modules)
        """
    )
)


def test_numpy_eval_never_imports_torch(folders, tmp_path, monkeypatch):
    args = [str(folders["plain"]), str(folders["video"]), TINY_BUDGET]
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # The same numbers as eval on the torch path's data.
    scope: dict = {}
    exec(PREDICTOR, scope)
    expected = []
    for folder, frames in ((folders["plain"], None), (folders["video"], 4)):
        for budget in ("", TINY_BUDGET):
            monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", budget)
            stub = scope["LinearStub"](frames)
            ckpt = _ckpt(tmp_path, 3, frames)
            report = evaluate(stub, load_eval_data(ckpt, str(folder)).data, top_k=1, clips=2)
            expected.append(f"{report.accuracy:.6f}")
    assert result.stdout.split() == expected == ["1.000000"] * 4
