"""The fast paths of the training loop do the same work as the plain ones.

Several batches handed to Lightning at once, the optimizer stepped without
Lightning's wrappers, validation logged once per epoch: each is checked
against the path it replaces, down to identical weights.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

import cnnkit.training.fit as fit_mod
from cnnkit.data.arrays import Split
from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.memory import InMemoryBatches
from cnnkit.spec import InputSpec
from cnnkit.training import fastpath
from cnnkit.training.fastpath import FixedKeyCheckpoint, steps_per_batch
from cnnkit.training.fit import TrainConfig, fit
from cnnkit.training.module import ClassifierModule
from cnnkit.training.trainer import TieToNewerCheckpoint
from tests.helpers import tiny_config


def _split(n: int) -> Split:
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=2).repeat(2, axis=3)
    return Split(x, np.arange(n))


def _config(tmp_path, name: str, **kw) -> TrainConfig:
    """2 epochs of 5 steps: simplecnn on 40 shapes at 12×12, batch 8, no augmentation."""
    base = {"model": "simplecnn", "epochs": 2, "batch_size": 8, "limit": 40, "img_size": 12}
    return tiny_config(tmp_path, **{**base, "augment": False, "name": name, "seed": 3, **kw})


def _weights(summary: dict) -> tuple[dict[str, torch.Tensor], int]:
    ckpt = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    return ckpt["state_dict"], int(ckpt["global_step"])


@pytest.mark.parametrize("train", [True, False])
def test_grouped_batches_are_the_single_batches_joined(train):
    single = list(InMemoryBatches(_split(21), 4, shuffle=train, train=train, seed=2))
    grouped = list(
        InMemoryBatches(_split(21), 4, shuffle=train, train=train, seed=2, steps_per_batch=3)
    )
    assert [len(y) for _, y in grouped] == [12, 9]
    assert len(InMemoryBatches(_split(21), 4, shuffle=train, train=train, steps_per_batch=3)) == 2
    assert torch.equal(torch.cat([y for _, y in grouped]), torch.cat([y for _, y in single]))
    # Sliced the way the module slices them, they are the same batches in the same order.
    slices = [y for _, ys in grouped for y in ys.split(4)]
    assert [t.tolist() for t in slices] == [y.tolist() for _, y in single]


def test_grouping_falls_back_to_one_step_per_batch_under_ddp(monkeypatch):
    loader = InMemoryBatches(_split(20), 4, shuffle=True, train=True, steps_per_batch=4)
    monkeypatch.setattr(InMemoryBatches, "_world", lambda self: (1, 2))
    sizes = [len(y) for _, y in loader]
    assert sizes == [4, 4, 4] and len(loader) == 3  # every other batch of 4, padded


def _data(shape: tuple[int, ...], in_memory: bool = True) -> LoadedDataset:
    channels, *rest = shape
    frames = rest[0] if len(rest) == 3 else None
    spec = InputSpec(channels, tuple(rest[-2:]), frames, (0.5,) * channels, (0.2,) * channels)
    return LoadedDataset("d", "image", ["a", "b"], spec, {}, in_memory=in_memory)


def test_steps_per_batch_only_groups_small_in_memory_data_in_one_process():
    mnist = _data((1, 28, 28))
    assert steps_per_batch(mnist, 64, 1, 1) == fastpath.MAX_STEPS_PER_BATCH
    assert steps_per_batch(mnist, 64, [0], 1) == fastpath.MAX_STEPS_PER_BATCH
    assert steps_per_batch(mnist, 64, 2, 1) == 1
    assert steps_per_batch(mnist, 64, 1, 2) == 1
    assert steps_per_batch(mnist, 64, "auto", 1) == 1
    assert steps_per_batch(_data((1, 28, 28), in_memory=False), 64, 1, 1) == 1
    # 3x224x224 at batch 128 is 19 MB of uint8 a batch: already past the group budget.
    assert steps_per_batch(_data((3, 224, 224)), 128, 1, 1) == 1
    clips = _data((3, 16, 112, 112))  # 602 KB a clip: 8 MB hold 13 clips, 3 batches of 4
    assert steps_per_batch(clips, 4, 1, 1) == 3


def test_grouped_steps_train_exactly_like_one_step_per_batch(tmp_path, monkeypatch):
    grouped = fit(_config(tmp_path, "grouped"))
    monkeypatch.setattr(fastpath, "MAX_STEPS_PER_BATCH", 1)
    single = fit(_config(tmp_path, "single"))
    assert grouped["metrics"] == single["metrics"]
    (w_grouped, steps_grouped), (w_single, steps_single) = _weights(grouped), _weights(single)
    # 40 samples, 10% held out: 36 to train on, 5 batches of 8 (the last of 4), 2 epochs.
    assert steps_grouped == steps_single == 10
    assert w_grouped.keys() == w_single.keys()
    for key in w_grouped:
        assert torch.equal(w_grouped[key], w_single[key]), key


def test_direct_optimizer_step_equals_lightnings_wrapped_step(tmp_path, monkeypatch):
    taken = []
    original = ClassifierModule._direct_step

    def record(self):
        taken.append(original(self))
        return taken[-1]

    monkeypatch.setattr(ClassifierModule, "_direct_step", record)
    direct = fit(_config(tmp_path, "direct"))
    assert taken and taken[-1] is not None  # one CPU, 32-bit: the direct path is taken
    monkeypatch.setattr(ClassifierModule, "_direct_step", lambda self: None)
    wrapped = fit(_config(tmp_path, "wrapped"))
    assert direct["metrics"] == wrapped["metrics"]
    (w_direct, steps_direct), (w_wrapped, steps_wrapped) = _weights(direct), _weights(wrapped)
    assert steps_direct == steps_wrapped == 10  # global_step counts every optimizer step
    for key in w_direct:
        assert torch.equal(w_direct[key], w_wrapped[key]), key


def test_validation_logged_once_per_epoch_agrees_with_the_plain_evaluation(tmp_path):
    summary = fit(_config(tmp_path, "val", epochs=1))
    with open(os.path.join(summary["run_dir"], "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_acc")]
    assert len(rows) == 1  # one row per epoch, not one per batch
    # With one epoch the best checkpoint is that epoch's: the plain loop that
    # scores it at the end must find what the Lightning loop logged.
    assert float(rows[0]["val_acc"]) == pytest.approx(summary["metrics"]["val_acc"], abs=1e-6)
    assert float(rows[0]["val_loss"]) == pytest.approx(summary["metrics"]["val_loss"], rel=1e-5)


def test_cpu_training_asks_torch_about_cuda_without_nvml(monkeypatch):
    monkeypatch.setenv(fastpath.NVML_CHECK_ENV, "1")
    with fastpath.cuda_check_without_nvml(True):
        assert fastpath.NVML_CHECK_ENV not in os.environ
    assert os.environ[fastpath.NVML_CHECK_ENV] == "1"
    with fastpath.cuda_check_without_nvml(False):
        assert os.environ[fastpath.NVML_CHECK_ENV] == "1"
    with pytest.raises(RuntimeError), fastpath.cuda_check_without_nvml(True):
        raise RuntimeError("training failed")
    assert os.environ[fastpath.NVML_CHECK_ENV] == "1"  # restored on the way out of errors too


@pytest.mark.parametrize("cls", [FixedKeyCheckpoint, TieToNewerCheckpoint])
@pytest.mark.parametrize("monitor", [None, "val_acc"])
def test_checkpoint_state_keys_are_lightnings_own(tmp_path, cls, monitor):
    kw = dict(dirpath=tmp_path, filename="x", monitor=monitor, mode="max", save_top_k=1)
    ours, theirs = cls(**kw), ModelCheckpoint(**kw)
    assert ours.state_key == theirs.state_key == ours.state_key
    assert ours.state_key.startswith("ModelCheckpoint{")


@pytest.mark.parametrize("grouped", [True, False])
def test_progress_bar_counts_optimizer_steps(tmp_path, monkeypatch, grouped):
    import cnnkit.training.trainer as trainer_mod

    seen = []  # (total, completed) of the training bar after each Lightning batch

    class Recording(trainer_mod.StepProgressBar):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            task = {t.id: t for t in self.progress.tasks}[self.train_progress_bar_id]
            seen.append((task.total, task.completed))

    monkeypatch.setattr(trainer_mod, "StepProgressBar", Recording)
    monkeypatch.setattr(fit_mod.console, "progress_enabled", lambda: True)
    if not grouped:
        monkeypatch.setattr(fastpath, "MAX_STEPS_PER_BATCH", 1)
    fit(_config(tmp_path, "bar"))  # 40 training samples at batch 8: 5 steps an epoch
    if grouped:  # one Lightning batch of 5 steps an epoch
        assert seen == [(5, 5), (5, 5)]
    else:
        assert seen == [(5, s) for s in (1, 2, 3, 4, 5)] * 2


def test_an_all_unreadable_batch_is_skipped_with_augmentation_on(tmp_path, monkeypatch):
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "data" / "train", ["a", "b"], per_class=4, h=8, w=8)
    make_image_folder(tmp_path / "data" / "val", ["a", "b"], per_class=2, h=8, w=8)
    (tmp_path / "data" / "train" / "a" / "broken.png").write_bytes(b"not a png")
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "0")  # decoded from files, batch by batch
    summary = fit(
        _config(
            tmp_path,
            "broken",
            dataset=str(tmp_path / "data"),
            img_size=8,
            batch_size=1,
            epochs=1,
            augment=True,
            workers=0,
            limit=None,
        )
    )
    _, global_step = _weights(summary)
    assert global_step == 8  # 9 files, one batch of nothing skipped


@pytest.mark.parametrize("every_s, saves", [(1e9, 1), (0.0, 4)])
def test_last_checkpoint_is_written_on_a_clock_and_at_the_end(
    tmp_path, monkeypatch, every_s, saves
):
    import cnnkit.training.trainer as trainer_mod

    written = []
    real = trainer_mod.LastCheckpoint._save

    def spy(self, trainer):
        written.append(trainer.current_epoch)
        real(self, trainer)

    monkeypatch.setattr(trainer_mod, "LAST_CHECKPOINT_EVERY_S", every_s)
    monkeypatch.setattr(trainer_mod.LastCheckpoint, "_save", spy)
    summary = fit(_config(tmp_path, "clock", epochs=3))
    # Every epoch's end when due (0 s), and always once more when training ends.
    assert len(written) == saves
    assert torch.load(summary["last_checkpoint"], weights_only=True)["global_step"] > 0
