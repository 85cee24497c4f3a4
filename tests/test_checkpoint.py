"""Checkpoints: self-describing, loaded with weights_only=True, never running code."""

from __future__ import annotations

import pickle

import pytest
import torch

from cnnkit.checkpoint import build_model, load_checkpoint
from cnnkit.errors import CheckpointError
from cnnkit.training.fit import TrainConfig, fit
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(out, model="simplecnn", limit=32, img_size=12, seed=3, out=str(out))
    return fit(cfg), out


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def test_checkpoint_describes_itself(trained):
    summary, _ = trained
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.model_name == "simplecnn"
    assert ckpt.classes == ["circle", "square", "triangle", "cross", "star", "ring"]
    assert ckpt.input.channels == 3 and ckpt.input.size == (12, 12)
    assert ckpt.input.frames is None and len(ckpt.input.mean) == 3
    assert ckpt.meta.schema == 1 and ckpt.meta.options["batch_size"] == 16
    assert ckpt.dataset == "shapes" and ckpt.seed == 3 and ckpt.cnnkit_version
    assert "val_acc" in ckpt.metrics
    assert not any(k.startswith("model.") for k in ckpt.state_dict)
    raw = torch.load(summary["best_checkpoint"], weights_only=True)
    assert _plain(raw["hyper_parameters"])


def test_build_model_gives_the_trained_network(trained):
    summary, _ = trained
    ckpt = load_checkpoint(summary["last_checkpoint"])
    model = build_model(ckpt)
    assert not model.training
    x = torch.randn(2, 3, 12, 12)
    again = build_model(load_checkpoint(summary["last_checkpoint"]))
    assert torch.equal(model(x), again(x))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt.state_dict[name])


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        # Unpickling this would create the marker file: the loader must refuse first.
        return (open, (str(self.marker), "w"))


def test_file_needing_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "hyper_parameters": _Payload(marker)}, f)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "needs code to load" in err.value.message
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_other_files_are_refused(tmp_path, content):
    path = tmp_path / "x.ckpt"
    if content is None:
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)  # no cnnkit hyper_parameters
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_resume_continues_into_a_new_run_folder(trained):
    summary, out = trained
    cfg = tiny_config(
        out, model="simplecnn", epochs=2, limit=32, img_size=12, seed=3, out=str(out),
        resume=summary["last_checkpoint"],
    )  # fmt: skip
    resumed = fit(cfg)
    assert resumed["run_dir"] != summary["run_dir"]
    assert resumed["epochs"] == 2
    # last.ckpt is the newest state, written when training ended, whatever the best one is.
    assert load_checkpoint(resumed["last_checkpoint"]).epochs_done == 2
    assert "resumed_from" in open(f"{resumed['run_dir']}/config.yaml").read()
    wrong = TrainConfig(**{**cfg.__dict__, "model": "lenet5"})
    with pytest.raises(CheckpointError) as err:
        fit(wrong)
    assert "--model simplecnn" in err.value.hint
