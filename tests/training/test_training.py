"""Training core: ClassifierModule, run folders, devices, determinism."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import types

import lightning as L
import pytest
import torch

from cnnkit.data.datamodule import ClassifierDataModule
from cnnkit.data.registry import DatasetRequest, load_dataset
from cnnkit.device import resolve_device
from cnnkit.errors import DeviceError, InputError, ModelError
from cnnkit.models.registry import create_model
from cnnkit.training import module as module_mod
from cnnkit.training.fit import fit
from cnnkit.training.module import ClassifierModule
from cnnkit.training.options import TrainConfig, resolve_kind_defaults
from cnnkit.training.rundir import new_run_dir
from tests.helpers import make_image_folder, tiny_config

# What ClassifierModule needs from the options, as `cnnkit train` resolves them for images.
RECIPE = dict(lr=3e-3, optimizer="adamw", weight_decay=0.05, schedule="cosine", label_smoothing=0.1)


def small(tmp_path, **kw) -> TrainConfig:
    """simplecnn on 32 shapes at 12×12, seed 7 (tiny_config with this file's sizes)."""
    return tiny_config(
        tmp_path, **{"model": "simplecnn", "limit": 32, "img_size": 12, "seed": 7, **kw}
    )


def test_module_normalises_uint8_batches_and_learns_a_step(tmp_path):
    data = load_dataset(DatasetRequest("shapes", limit=32, img_size=12))
    model = create_model("simplecnn", num_classes=6, in_channels=3, input_size=(3, 12, 12))
    module = ClassifierModule(
        model,
        num_classes=6,
        mean=data.input.mean,
        std=data.input.std,
        hparams={"model_name": "simplecnn"},
        **RECIPE,
    )
    train = data.splits["train"]
    x, y = module.on_after_batch_transfer(
        (torch.from_numpy(train.x[:8]), torch.from_numpy(train.y[:8])), 0
    )
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 1.0
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        fast_dev_run=True,
        accelerator="cpu",
        enable_progress_bar=False,
        logger=False,
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(module, datamodule=ClassifierDataModule(data, batch_size=8))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert module.samples_seen == 8


@pytest.mark.parametrize("optimizer,schedule", [("sgd", "onecycle"), ("adam", "none")])
def test_optimizers_and_schedules_build(optimizer, schedule, tmp_path):
    model = create_model("simplecnn", num_classes=6, in_channels=3)
    recipe = {**RECIPE, "optimizer": optimizer, "schedule": schedule}
    module = ClassifierModule(model, num_classes=6, mean=[0.5] * 3, std=[0.2] * 3, **recipe)
    data = load_dataset(DatasetRequest("shapes", limit=16, img_size=8))
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        fast_dev_run=True,
        accelerator="cpu",
        enable_progress_bar=False,
        logger=False,
    )
    trainer.fit(module, datamodule=ClassifierDataModule(data, batch_size=8))
    opt = trainer.optimizers[0]
    assert type(opt).__name__.lower() == optimizer
    if optimizer == "sgd":
        assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_fit_writes_the_run_folder_and_summary(tmp_path):
    summary = fit(small(tmp_path))
    run = tmp_path / "runs" / "train"
    assert summary["run_dir"] == str(run)
    for name in (
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics.csv",
        "config.yaml",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    assert json.loads((run / "summary.json").read_text()) == summary
    assert set(summary["metrics"]) == {"val_acc", "val_loss", "test_acc", "test_loss"}
    assert summary["epochs"] == 1 and summary["images_per_second"] > 0
    config = (run / "config.yaml").read_text()
    assert "batch_size: 16" in config and "model: simplecnn" in config
    # A second run never overwrites the first.
    assert fit(small(tmp_path))["run_dir"] == str(tmp_path / "runs" / "train-2")


def _chosen(cfg) -> dict:
    keys = ("model", "epochs", "batch_size", "lr", "label_smoothing", "weight_decay")
    return {k: getattr(cfg, k) for k in keys}


def test_defaults_follow_the_data_kind_and_give_way_to_flags():
    image = resolve_kind_defaults(TrainConfig(), "image")
    assert _chosen(image) == {
        "model": "simplecnn",
        "epochs": 10,
        "batch_size": 64,
        "lr": 3e-3,
        "label_smoothing": 0.1,
        "weight_decay": 0.05,
    }
    video = resolve_kind_defaults(TrainConfig(dataset="moving-shapes", optimizer="sgd"), "video")
    assert (video.model, video.batch_size, video.label_smoothing) == ("c3d_small", 32, 0)
    assert video.weight_decay == 5e-4  # the optimizer's own default
    # An explicit 0 is a choice, not "unset".
    given = TrainConfig(label_smoothing=0.0, batch_size=8, model="lenet5", lr=0.01, epochs=2,
                        weight_decay=0.0)  # fmt: skip
    assert _chosen(resolve_kind_defaults(given, "image")) == {
        "model": "lenet5",
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.01,
        "label_smoothing": 0.0,
        "weight_decay": 0.0,
    }


@pytest.mark.parametrize("given,used", [(None, 0.1), (0.0, 0.0), (0.2, 0.2)])
def test_label_smoothing_default_reaches_the_loss_and_the_records(
    tmp_path, given, used, monkeypatch
):
    real = module_mod.F
    seen = set()

    def cross_entropy(logits, y, **kw):
        if "label_smoothing" in kw:  # the training step's call
            seen.add(kw["label_smoothing"])
        return real.cross_entropy(logits, y, **kw)

    monkeypatch.setattr(module_mod, "F", types.SimpleNamespace(cross_entropy=cross_entropy))
    summary = fit(small(tmp_path, label_smoothing=given))
    assert seen == {used}
    assert f"label_smoothing: {used}" in (tmp_path / "runs" / "train" / "config.yaml").read_text()
    ckpt = torch.load(summary["best_checkpoint"], weights_only=True)
    assert ckpt["hyper_parameters"]["options"]["label_smoothing"] == used


def _tensorboard_scalars(folder) -> dict[str, list[float]]:
    """Scalars of every event file under ``folder``, read from the TFRecord framing."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[float]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])  # past length + its CRC
            at += 12 + length + 4  # and the record's CRC
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_tensorboard_events_are_written_when_it_is_installed(tmp_path):
    pytest.importorskip("tensorboardX")  # in the test extras; cnnkit itself only uses it if there
    summary = fit(small(tmp_path, epochs=2))
    scalars = _tensorboard_scalars(tmp_path / "runs" / "train" / "tensorboard")
    assert len(scalars["val_acc"]) == 2 and len(scalars["train_loss"]) == 2
    # The same numbers as metrics.csv, and the summary's are the best epoch's.
    rows = list(csv.DictReader(open(f"{summary['run_dir']}/metrics.csv")))
    logged = [float(r["val_acc"]) for r in rows if r["val_acc"]]
    assert scalars["val_acc"] == pytest.approx(logged, abs=1e-6)
    assert max(scalars["val_acc"]) == pytest.approx(summary["metrics"]["val_acc"], abs=1e-6)


def test_same_seed_same_flags_same_metrics(tmp_path, monkeypatch):
    # Bit for bit only on one thread count: sums split over threads add in another
    # order, and a run's count follows the machine's load (cnnkit.io.cpuload) unless
    # the user fixes it.
    monkeypatch.setenv("CNNKIT_THREADS", str(len(os.sched_getaffinity(0))))
    a = fit(small(tmp_path, epochs=2, name="a"))
    b = fit(small(tmp_path, epochs=2, name="b"))
    c = fit(small(tmp_path, epochs=2, name="c", seed=8))
    assert a["metrics"] == b["metrics"]
    rows = [list(csv.reader(open(f"{r['run_dir']}/metrics.csv"))) for r in (a, b)]
    assert rows[0] == rows[1]
    assert c["metrics"] != a["metrics"]


def test_explicit_existing_name_is_refused(tmp_path):
    new_run_dir(tmp_path, "exp")
    with pytest.raises(InputError) as err:
        new_run_dir(tmp_path, "exp")
    assert "exists" in err.value.message and "--name" in err.value.hint
    assert new_run_dir(tmp_path, None).name == "train"
    assert new_run_dir(tmp_path, None).name == "train-2"


def test_model_and_data_dimensions_must_agree(tmp_path):
    with pytest.raises(ModelError) as err:
        fit(small(tmp_path, model="c3d_small"))
    assert "images" in err.value.message


def test_folder_dataset_trains(tmp_path):
    make_image_folder(tmp_path / "data", ["red", "blue"], per_class=8, h=8, w=8)
    summary = fit(small(tmp_path, dataset=str(tmp_path / "data"), img_size=8, val_split=0.25))
    assert "test_acc" not in summary["metrics"] and 0 <= summary["metrics"]["val_acc"] <= 1


def test_device_auto_is_cpu_here_and_cuda_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this check is for machines without a GPU")
    choice = resolve_device("auto")
    assert choice.accelerator in ("cpu", "mps") and choice.reason
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda")
    assert "cpu" in err.value.hint
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    assert resolve_device("cpu").torch_device == "cpu"


def test_device_module_does_not_import_lightning():
    code = (
        "import sys, cnnkit.device as d, cnnkit.data.describe; d.resolve_device('cpu'); "
        "print('lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ties_in_val_acc_go_to_the_newer_epoch(tmp_path):
    from cnnkit.training.trainer import TieToNewerCheckpoint

    cb = TieToNewerCheckpoint(dirpath=tmp_path, monitor="val_acc", mode="max", save_top_k=1)
    cb.best_k_models = {"a.ckpt": torch.tensor(0.9)}
    cb.kth_best_model_path = "a.ckpt"

    class _Strategy:
        @staticmethod
        def reduce_boolean_decision(decision):
            return decision

    trainer = type("T", (), {"strategy": _Strategy()})()
    assert cb.check_monitor_top_k(trainer, torch.tensor(0.9))
    assert cb.check_monitor_top_k(trainer, torch.tensor(0.95))
    assert not cb.check_monitor_top_k(trainer, torch.tensor(0.85))
