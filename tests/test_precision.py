"""How models compute: bf16 autocast where native, channels_last for 2D convolutions.

The choice is the machine's, so every test that depends on it fixes what
the machine is said to have (``native_bf16`` patched) or asks explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from cnnkit import precision
from cnnkit.errors import InputError
from cnnkit.models.registry import create_model
from cnnkit.precision import Compute, choose, layout_for, normalise_choice, trained_precision
from tests.helpers import cnnkit_in_process, make_checkpoint, make_image


def _native(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    why = "this CPU computes bf16 natively: AVX512_BF16" if native else "this CPU has no bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda kind, index=None: (native, why))


@pytest.fixture
def lenet() -> torch.nn.Module:
    return create_model("lenet5", num_classes=3, in_channels=1, input_size=(1, 16, 16))


@pytest.fixture
def wide() -> torch.nn.Module:
    """A model whose convolutions bf16 speeds up on a CPU (32 channels and more)."""
    return create_model("simplecnn", num_classes=3, in_channels=1, input_size=(1, 16, 16))


@pytest.mark.parametrize(
    ("requested", "native", "trained", "expected"),
    [
        ("auto", True, None, "bf16"),  # training: bf16 wherever it is native
        ("auto", False, None, "32"),
        ("auto", True, "32", "32"),  # eval/predict: as the model was trained
        ("auto", True, "bf16", "bf16"),
        ("auto", False, "bf16", "32"),  # trained in bf16, but emulated here: float32
        ("32", True, "bf16", "32"),
        ("bf16", False, "32", "bf16"),  # asked for: done, even emulated
        ("bf16-mixed", True, None, "bf16"),  # Lightning's spelling
        ("32-true", True, None, "32"),
        (None, True, None, "bf16"),
    ],
)
def test_the_choice_follows_the_request_the_device_and_the_training(
    monkeypatch, wide, requested, native, trained, expected
) -> None:
    _native(monkeypatch, native)
    compute = choose(requested, "cpu", wide, 4, trained=trained)
    assert compute.precision == expected
    assert compute.reason  # always said why
    assert compute.caution == (expected == "bf16" and not native)


@pytest.mark.parametrize(
    ("name", "shape", "pays", "why"),
    [
        ("simplecnn", (1, 16, 16), True, ""),
        ("resnet18", (3, 32, 32), True, ""),
        ("c3d_small", (3, 4, 16, 16), False, "3D convolutions on a CPU is unreliable"),
        ("lenet5", (1, 16, 16), False, "16 channels at most, under 32"),
        ("dense", (1, 16, 16), False, "without convolutions"),
        ("mobilenet_v3_small", (3, 32, 32), False, "depthwise"),
    ],
)
def test_bf16_is_chosen_on_a_cpu_only_for_models_it_speeds_up(
    monkeypatch, name, shape, pays, why
) -> None:
    _native(monkeypatch, True)
    model = create_model(name, num_classes=3, in_channels=shape[0], input_size=shape)
    compute = choose("auto", "cpu", model, 1 + len(shape))
    assert compute.precision == ("bf16" if pays else "32")
    assert why in compute.reason
    # Asked for, or trained so, bf16 is used all the same.
    assert choose("bf16", "cpu", model, 1 + len(shape)).precision == "bf16"
    assert choose("auto", "cpu", model, 1 + len(shape), trained="bf16").precision == "bf16"


def test_only_2d_convolutional_models_take_channels_last(lenet) -> None:
    assert layout_for(lenet, 4) == "channels_last"
    dense = create_model("dense", num_classes=3, in_channels=1, input_size=(1, 16, 16))
    assert layout_for(dense, 4) == "contiguous"
    c3d = create_model("c3d_small", num_classes=3, in_channels=3, input_size=(3, 4, 16, 16))
    assert layout_for(c3d, 5) == "contiguous"


def test_an_unknown_precision_is_one_error_naming_the_choices() -> None:
    with pytest.raises(InputError, match="auto, 32, bf16, 16"):
        normalise_choice("64")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"compute": {"precision": "bf16-mixed", "memory_format": "channels_last"}}, "bf16"),
        ({"compute": {"precision": "32-true"}}, "32"),
        ({}, "32"),  # older checkpoints and torchvision's weights
        ({"compute": "bf16"}, "32"),  # not the record's shape: read as float32, never a crash
        ({"compute": {"precision": ["bf16"]}}, "32"),
        ({"compute": {"precision": "fp8"}}, "32"),
    ],
)
def test_a_checkpoints_record_is_read_defensively(options, expected) -> None:
    class Meta:
        pass

    meta = Meta()
    meta.options = options
    assert trained_precision(meta) == expected


def test_autocast_runs_the_convolutions_in_bf16_and_returns_float32(lenet) -> None:
    seen = []
    lenet.features[0].register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    from cnnkit.backends.torch import TorchBackend
    from cnnkit.spec import InputSpec

    spec = InputSpec(1, (16, 16), None, [0.5], [0.25])
    batch = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8).numpy()
    bf16 = TorchBackend(lenet, spec, compute=Compute("bf16", "channels_last", "test"))
    out = bf16.logits(batch)
    assert seen == [torch.bfloat16] and out.dtype.name == "float32"
    assert lenet.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    seen.clear()
    plain = TorchBackend(lenet, spec, compute=Compute("32", "channels_last", "test")).logits(batch)
    assert seen == [torch.float32]
    # bf16 keeps about 3 significant digits: close to float32, not equal.
    assert out == pytest.approx(plain, abs=0.05)


def _train(monkeypatch, capsys, tmp_path: Path, *extra: str) -> tuple[dict, str]:
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "train", "--dataset", "shapes", "--model", "simplecnn",
        "--epochs", "1", "--limit", "48", "--img-size", "16", "--batch-size", "16",
        "--device", "cpu", "--out", str(tmp_path / "runs"), "--json", *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out), err


def test_training_says_records_and_uses_its_choice_and_eval_repeats_it(
    monkeypatch, capsys, tmp_path
) -> None:
    _native(monkeypatch, True)
    seen = []
    real = torch.autocast

    def spy(device_type, *args, **kwargs):
        seen.append(kwargs.get("enabled", True) and kwargs.get("dtype"))
        return real(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    summary, err = _train(monkeypatch, capsys, tmp_path)
    assert "compute: bf16 autocast in channels_last (this CPU computes bf16 natively" in err
    assert torch.bfloat16 in seen  # the training steps ran under autocast
    run = Path(summary["run_dir"])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["compute"] == {"precision": "bf16-mixed", "memory_format": "channels_last"}
    assert config["precision"] == "auto"
    assert config["decisions"]["precision"].startswith("compute: bf16 autocast")

    # eval of the best checkpoint computes as training did, so it repeats its numbers.
    ckpt = summary["best_checkpoint"]
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "eval", ckpt, "--limit", "48", "--json")
    assert code == 0, err
    assert "compute: bf16 autocast in channels_last (as the model was trained" in err
    assert json.loads(out)["accuracy"] == pytest.approx(summary["metrics"]["test_acc"], abs=1e-6)


def test_precision_32_trains_in_float32_and_eval_says_nothing_of_it(
    monkeypatch, capsys, tmp_path
) -> None:
    _native(monkeypatch, True)
    summary, err = _train(monkeypatch, capsys, tmp_path, "--precision", "32-true")
    assert "compute: float32 in channels_last (--precision 32)" in err
    config = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert config["compute"]["precision"] == "32-true"
    assert config["precision"] == "32"
    code, _, err = cnnkit_in_process(
        monkeypatch, capsys, "eval", summary["best_checkpoint"], "--limit", "8"
    )
    assert code == 0 and "compute:" not in err  # float32, as always: nothing to say


def test_bad_precisions_are_refused_in_one_line(monkeypatch, capsys, tmp_path) -> None:
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "train", "--precision", "64")
    assert code == 2 and "auto, 32, bf16, 16" in err
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    image = tmp_path / "x.png"
    make_image(image)
    code, _, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", str(ckpt), str(image), "--precision", "fp8"
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: --precision fp8 is not one of")


def test_an_onnx_model_refuses_bf16_and_runs_float32(monkeypatch, capsys, tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "export", str(ckpt), "-o",
                                     str(tmp_path / "m.onnx"))  # fmt: skip
    assert code == 0, err
    image = tmp_path / "x.png"
    make_image(image)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", str(tmp_path / "m.onnx"), str(image), "--precision", "bf16"
    )
    assert code == 1 and out == ""
    assert "error: --precision bf16: an .onnx model computes in float32" in err
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", str(tmp_path / "m.onnx"), str(image), "--precision", "32"
    )
    assert code == 0 and json.loads(out)["label"] in ("a", "b", "c")


def test_a_bf16_checkpoint_exports_and_matches_float32_predict(
    monkeypatch, capsys, tmp_path
) -> None:
    """Weights saved from a channels_last model load anywhere: the .onnx and the
    .ckpt at --precision 32 agree."""
    _native(monkeypatch, True)
    summary, _ = _train(monkeypatch, capsys, tmp_path)
    ckpt = summary["best_checkpoint"]
    onnx = str(tmp_path / "m.onnx")
    assert cnnkit_in_process(monkeypatch, capsys, "export", ckpt, "-o", onnx)[0] == 0
    image = tmp_path / "x.png"
    make_image(image)
    scores = []
    for model, extra in ((ckpt, ["--precision", "32"]), (onnx, [])):
        code, out, err = cnnkit_in_process(
            monkeypatch, capsys, "predict", model, str(image), "--top-k", "3", *extra
        )
        assert code == 0, err
        scores.append([t["score"] for t in json.loads(out)["topk"]])
    assert scores[0] == pytest.approx(scores[1], abs=1e-4)


def test_the_python_api_takes_precision_and_a_pickled_copy_keeps_it(tmp_path) -> None:
    import pickle

    import cnnkit

    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    clf = cnnkit.load(ckpt, device="cpu", precision="bf16")
    assert clf.predictor.backend.compute.precision == "bf16"
    copy = pickle.loads(pickle.dumps(clf))
    assert copy.predictor.backend.compute.precision == "bf16"
    assert cnnkit.load(ckpt, device="cpu").predictor.backend.compute.precision == "32"
    with pytest.raises(InputError, match="^precision fp8 is not one of auto, 32, bf16, 16"):
        cnnkit.load(ckpt, precision="fp8")


def test_bf16_asked_for_a_3d_model_on_a_cpu_is_done_with_a_warning(monkeypatch) -> None:
    _native(monkeypatch, True)
    c3d = create_model("c3d_small", num_classes=3, in_channels=3, input_size=(3, 4, 16, 16))
    compute = choose("bf16", "cpu", c3d, 5)
    assert compute.precision == "bf16" and compute.caution
    assert "unreliable" in compute.line()
    assert not choose("bf16", "cuda", c3d, 5).caution  # a GPU's bf16 is another matter
