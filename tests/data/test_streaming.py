"""Streamed data (decoded from the files as training goes) against data held in memory.

The two must give the same samples: the same pixels, labels and order for
the same seed, epoch after epoch, for images and for clips, whatever the
number of decoding workers. And the CPU budget is split between the decoding
workers and the model's threads, said and recorded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnkit.data.datamodule import ClassifierDataModule
from cnnkit.data.registration import DatasetRequest
from cnnkit.data.registry import load_dataset
from tests.helpers import make_image_folder, make_video, smooth_frames, write_video


def _both(root, **options):
    """The folder held in memory and streamed, with the same request otherwise."""
    held = load_dataset(DatasetRequest(str(root), seed=7, **options))
    streamed = load_dataset(DatasetRequest(str(root), seed=7, memory_budget=0, **options))
    assert held.in_memory and not streamed.in_memory
    return held, streamed


def _epochs(data, split: str, epochs: int, workers: int, batch_size: int = 3) -> list:
    """Every batch of ``epochs`` epochs of ``split``, as (x, y) numpy pairs."""
    module = ClassifierDataModule(data, batch_size, workers=workers, seed=7)
    train = split == "train"
    loader = module.train_dataloader() if train else module.val_dataloader()
    out = []
    for epoch in range(epochs):
        sampler = getattr(loader, "sampler", None)
        if sampler is not None:
            sampler.set_epoch(epoch)  # what Lightning does before each epoch
        out += [(x.numpy().copy(), y.numpy().copy()) for x, y in loader]
    return out


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype == np.uint8
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_and_in_memory_images_give_the_same_batches(tmp_path, workers):
    make_image_folder(tmp_path / "pics", ["a", "b", "c"], per_class=6, h=14, w=10)
    held, streamed = _both(tmp_path / "pics", img_size=8, val_split=0.25)
    for split, epochs in (("train", 2), ("val", 1)):
        _same(_epochs(held, split, epochs, 0), _epochs(streamed, split, epochs, workers))
    shuffled = _epochs(streamed, "train", 2, workers)
    labels = [y.tolist() for _, y in shuffled]
    assert labels[: len(labels) // 2] != labels[len(labels) // 2 :]  # each epoch its own order


@pytest.fixture
def clip_folder(tmp_path):
    """Videos of several lengths: shorter than a clip, about one window, longer than it."""
    for ci, name in enumerate(("left", "right")):
        folder = tmp_path / "clips" / name
        folder.mkdir(parents=True)
        for i, length in enumerate((2, 7, 13, 14, 29)):
            frames = smooth_frames(length, 16, 16, seed=10 * ci + i)
            write_video(folder / f"v{i}.mp4", frames)
    return tmp_path / "clips"


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_and_in_memory_clips_give_the_same_batches(clip_folder, workers):
    # Clips of 3 frames: a training clip starts anywhere in the middle 12 frames,
    # and the centred clip of the 13-frame video is frames 5-7, not 4-6.
    held, streamed = _both(clip_folder, img_size=8, frames=3, val_split=0.4)
    for split, epochs in (("train", 3), ("val", 1)):
        _same(_epochs(held, split, epochs, 0), _epochs(streamed, split, epochs, workers))


def test_the_validation_clip_in_memory_is_the_centred_clip_eval_takes(tmp_path):
    from cnnkit.data.clips import centred_start
    from cnnkit.data.memory import gather_batch
    from cnnkit.io.video import read_video_clip

    for i, name in enumerate("ab"):
        (tmp_path / "c" / name).mkdir(parents=True)
        make_video(tmp_path / "c" / name / "long.mp4", frames=13, seed=i)
    data = load_dataset(DatasetRequest(str(tmp_path / "c"), img_size=16, frames=3, val_split=0))
    clips, _ = gather_batch(data.splits["train"], torch.arange(2), train=False)
    path = data.splits["train"].paths[0]
    expected = read_video_clip(path, centred_start(13, 3), 3)  # frames 5, 6, 7
    np.testing.assert_array_equal(clips[0].permute(1, 2, 3, 0).numpy(), expected)


def test_a_streamed_batch_leaves_out_an_unreadable_file_and_keeps_the_labels(tmp_path, caplog):
    make_image_folder(tmp_path / "pics", ["a", "b"], per_class=3, h=8, w=8)
    (tmp_path / "pics" / "a" / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    files = load_dataset(
        DatasetRequest(str(tmp_path / "pics"), img_size=8, val_split=0, memory_budget=0)
    ).splits["train"]
    names = [p.name for p, _ in files.items]
    x, y = files.decode_batch(np.arange(len(files)))
    assert x.shape == (5, 3, 8, 8) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 1, 1, 1] and names[1] == "img_001.png"
    again, _ = files.decode_batch(np.arange(len(files)))
    np.testing.assert_array_equal(again, x)
    said = [r.getMessage() for r in caplog.records if "skipping unreadable" in r.getMessage()]
    assert len(said) == 1 and "img_001.png" in said[0]  # said once, not every epoch


# ---------------------------------------------------------------------------
# the CPU split
# ---------------------------------------------------------------------------


def test_the_split_gives_every_core_to_decoding_and_starts_the_model_on_one_thread():
    from cnnkit.data.streaming import MAX_WORKERS, stream_split

    splits = [stream_split(cores, "cpu") for cores in (1, 2, 8, 64)]
    assert [(s.workers, s.torch_threads) for s in splits] == [(1, 1), (2, 1), (8, 1), (16, 1)]
    assert MAX_WORKERS == 16
    assert "2 decoding worker(s)" in splits[1].reason and "all 2 if" in splits[1].reason
    fixed = stream_split(8, "cpu", workers=3)
    assert (fixed.workers, fixed.torch_threads) == (3, 1) and "--workers" in fixed.reason
    gpu = stream_split(4, "cuda")
    assert (gpu.workers, gpu.torch_threads) == (4, None)
    alone = stream_split(4, "cpu", workers=0)  # decoding between steps: the model's cores
    assert (alone.workers, alone.torch_threads) == (0, None)


def test_streamed_training_splits_the_budget_and_records_it(tmp_path, monkeypatch):
    import yaml

    from cnnkit.training.fit import fit
    from cnnkit.training.module import ClassifierModule
    from tests.helpers import tiny_config

    make_image_folder(tmp_path / "pics", ["a", "b"], per_class=6)
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "0")
    monkeypatch.setenv("CNNKIT_THREADS", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads: set[int] = set()
    step = ClassifierModule.training_step

    def counting(self, *args):
        threads.add(torch.get_num_threads())
        return step(self, *args)

    monkeypatch.setattr(ClassifierModule, "training_step", counting)
    cfg = tiny_config(tmp_path, dataset=str(tmp_path / "pics"))
    summary = fit(cfg)
    assert threads == {1}  # the model's share: the two workers decode beside it
    config = yaml.safe_load(open(f"{summary['run_dir']}/config.yaml"))
    assert config["decisions"]["cpu_split"].startswith("streamed data: 2 decoding worker(s)")


def _probe(split, wait_s: float, step_s: float) -> tuple[list[int], str]:
    """Drive ModelThreads through a probe: the loop waits ``wait_s`` for each batch and
    steps for ``step_s``. The torch threads seen at each step, and the decision."""
    import time

    from cnnkit.data.streaming import PROBE_BATCHES, ModelThreads

    threads = ModelThreads(split)
    seen = []
    threads.on_train_start(None, None)
    threads.on_train_epoch_start(None, None)
    try:
        for i in range(threads.skip + PROBE_BATCHES + 2):
            time.sleep(wait_s)
            threads.on_train_batch_start(None, None, None, i)
            seen.append(torch.get_num_threads())
            time.sleep(step_s)
            threads.on_train_batch_end(None, None, None, None, i)
    finally:
        threads.on_train_end(None, None)
    return seen, threads.decision


def test_the_model_takes_every_core_only_when_it_is_slower_than_decoding(monkeypatch):
    from cnnkit.data.streaming import stream_split

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = torch.get_num_threads()
    split = stream_split(max(cores, 2), "cpu", workers=1)
    # Decoding is the slower: the loop waits for data, the model stays on one thread.
    seen, decision = _probe(split, wait_s=0.004, step_s=0.001)
    assert set(seen) == {1} and decision.endswith("so it stays on 1 thread")
    # The model is the slower (data always ready): it takes the budget's threads.
    seen, decision = _probe(split, wait_s=0.0, step_s=0.004)
    assert seen[0] == 1 and "computes on all" in decision
    assert seen[-1] == cores and torch.get_num_threads() == cores  # given back at the end


# ---------------------------------------------------------------------------
# decoding a folder into memory
# ---------------------------------------------------------------------------


def test_a_folder_loaded_into_memory_holds_its_pixels_once(tmp_path):
    import tracemalloc

    make_image_folder(tmp_path / "pics", ["a", "b"], per_class=60, h=48, w=48)
    request = DatasetRequest(str(tmp_path / "pics"), img_size=48, val_split=0)
    load_dataset(request)  # imports and first-call allocations out of the way
    tracemalloc.start()
    try:
        data = load_dataset(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pixels = data.splits["train"].x.nbytes  # 120 × 3 × 48 × 48
    # Decoded straight into the split's array, not stacked from a list of arrays.
    assert peak < 1.5 * pixels, (peak, pixels)


def test_channel_statistics_of_a_single_pixel_have_the_floor_std_not_nan():
    from cnnkit.data.arrays import channel_stats

    assert channel_stats(np.full((1, 3, 1, 1), 51, np.uint8)) == ([0.2] * 3, [0.001] * 3)


def test_a_follower_of_the_machines_load_sets_the_model_threads_within_its_share():
    from types import SimpleNamespace

    from cnnkit.data.streaming import ModelThreads, stream_split

    applied: list[int] = []
    follower = SimpleNamespace(current=4, apply=applied.append)
    threads = ModelThreads(stream_split(4, "cpu"))
    threads.follow(follower)
    threads.on_train_start(None, None)
    follower.apply(3)  # the load went down: the follower would give the model 3
    assert applied == [1, 1]  # while decoding is the slower, the model keeps one
    threads._waited, threads._stepped = 0.0, 1.0  # the model turned out the slower
    threads._decide()
    follower.apply(2)
    assert applied == [1, 1, 4, 2] and threads.cap == 4
