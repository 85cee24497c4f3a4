"""Starting from weights: --pretrained, --weights (checkpoint, state dict, safetensors), --freeze.

Nothing here touches the network: tests/conftest.py sets CNNKIT_OFFLINE and
an empty TORCH_HOME, and the tests that need torchvision's weights write a
state dict they made there, under the file name torchvision's URL ends with.
"""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cnnkit.checkpoint import load_checkpoint
from cnnkit.cli.output import show_messages
from cnnkit.errors import CheckpointError
from cnnkit.models import create_model
from cnnkit.models.pretrained import WEIGHTS_DATA, pretrained_weights
from cnnkit.models.registry import get_model_spec, models_with_weights
from cnnkit.models.transfer import freeze_all_but_head, head_name, load_start
from cnnkit.training.fit import fit
from cnnkit.training.start import FREEZE_LR, model_from_weights, plan_start, start_model
from tests.helpers import (
    cnnkit_in_process,
    make_image,
    make_image_folder,
    make_video,
    tiny_config,
    write_array,
)


def _torch_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _put_weights(home: Path, model: str, state: dict) -> Path:
    """Save ``state`` where torch.hub looks for ``model``'s default weights."""
    name = pretrained_weights(model).url.rsplit("/", 1)[-1]
    path = home / "hub" / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _fake_resnet18(seed: int = 0) -> dict:
    """A fixed-seed torchvision ResNet-18 (1,000 classes) with batch-norm statistics set."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # not the 0/1 defaults: a moved value shows
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


def _no_download(monkeypatch) -> None:
    import torch.hub

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return cnnkit_in_process(monkeypatch, capsys, *args)


def _bare(ckpt_path: Path) -> dict:
    return load_checkpoint(ckpt_path).state_dict


# ---------------------------------------------------------------------------
# which models have weights, and the layouts match torchvision's
# ---------------------------------------------------------------------------


def test_every_torchvision_model_has_weights_and_the_rest_refuse() -> None:
    with_weights = set(models_with_weights())
    assert {
        "resnet18",
        "resnet34",
        "resnet50",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "r3d_18",
        "mc3_18",
        "r2plus1d_18",
    } == with_weights
    for name in ("lenet5", "lecun1989", "simplecnn", "dense", "c3d_small", "framewise2d"):
        assert get_model_spec(name).weights is None


@pytest.mark.parametrize(
    "name, head",
    [
        ("resnet18", "fc"),
        ("mobilenet_v3_large", "classifier.3"),
        ("efficientnet_b0", "classifier.1"),
        ("mc3_18", "fc"),
    ],
)
def test_torchvision_layout_loads_strictly_but_for_the_head(name: str, head: str) -> None:
    import torchvision

    w = pretrained_weights(name)
    spec = get_model_spec(name)
    builder = getattr(torchvision.models.video if spec.dims == 3 else torchvision.models, name)
    torch.manual_seed(0)
    theirs = builder(weights=None).state_dict()  # 1,000 or 400 classes, like the real file
    assert theirs[f"{head_name(builder())}.weight"].shape[0] == len(w.categories)
    ours = create_model(name, num_classes=3)
    report = load_start(ours, theirs, "file", lenient=False)
    assert report.new_head
    assert head_name(ours) == head
    for key, value in ours.state_dict().items():
        if not key.startswith(head + "."):
            assert torch.equal(value, theirs[key]), key
    assert w.data == WEIGHTS_DATA[spec.dims]
    assert w.size == ((224, 224) if spec.dims == 2 else (112, 112))
    assert w.frames == (16 if spec.dims == 3 else None)


def test_a_state_dict_of_another_model_is_one_clear_error() -> None:
    other = create_model("simplecnn").state_dict()
    with pytest.raises(CheckpointError) as info:
        load_start(create_model("lenet5"), other, "sd.pth", lenient=False)
    message = str(info.value)
    assert "missing features.0.weight" in message and "unexpected" in message
    resnet = create_model("resnet18", num_classes=4).state_dict()
    resnet["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(CheckpointError, match=r"wrong shape layer1\.0\.conv1\.weight \(64×64×1×1"):
        load_start(create_model("resnet18", num_classes=4), resnet, "sd.pth", lenient=False)


def test_freeze_stops_gradients_and_batch_norm_everywhere_but_the_head() -> None:
    model = create_model("mobilenet_v3_small", num_classes=3)
    frozen = freeze_all_but_head(model)
    assert "features" in frozen and "classifier.0" in frozen and "classifier.3" not in frozen
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["classifier.3.weight", "classifier.3.bias"]
    assert not model.features.training


# ---------------------------------------------------------------------------
# --pretrained, with a weights file made here
# ---------------------------------------------------------------------------


def test_pretrained_freeze_keeps_the_backbone_bit_for_bit(tmp_path, monkeypatch, capsys) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    _no_download(monkeypatch)
    state = _fake_resnet18()
    file = _put_weights(home, "resnet18", state)
    assert file.name == "resnet18-f37072fd.pth"  # torchvision's own name for these weights
    make_image_folder(tmp_path / "pets", ["cat", "dog"], 6, 24, 24)
    summary = fit(
        tiny_config(
            tmp_path,
            dataset=str(tmp_path / "pets"),
            model="resnet18",
            pretrained=True,
            freeze=True,
            epochs=2,
            limit=None,
            img_size=32,
            batch_size=4,
            val_split=0.25,
        )
    )
    saved = _bare(Path(summary["last_checkpoint"]))
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(saved[key], value), key  # weights and batch-norm statistics alike
    assert saved["fc.weight"].shape == (2, 512)
    ckpt = load_checkpoint(summary["best_checkpoint"])
    start = ckpt.meta.start
    assert start["kind"] == "pretrained" and start["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert start["head"] == "new" and start["trained"] == ["fc"] and "layer4" in start["frozen"]
    assert start["tensors_loaded"] == len(state) - 2
    assert ckpt.input.mean == pytest.approx((0.485, 0.456, 0.406))
    assert ckpt.input.std == pytest.approx((0.229, 0.224, 0.225))
    assert ckpt.input.size == (32, 32)  # --img-size wins over the weights' 224
    config = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert config["start"]["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert config["lr"] == FREEZE_LR
    assert "ImageNet weights' mean/std" in config["decisions"]["normalisation"]
    # eval preprocesses as training did: it repeats training's own val measurement.
    code, out, err = _cli(
        monkeypatch, capsys, "eval", summary["best_checkpoint"], "--split", "val", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(summary["metrics"]["val_acc"], abs=1e-6)


def test_pretrained_follows_the_weights_input_and_repeats_gray(tmp_path, monkeypatch) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    _no_download(monkeypatch)
    _put_weights(home, "mobilenet_v3_small", create_model("mobilenet_v3_small", 1000).state_dict())
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "gray" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (20, 20), np.uint8)
            write_array(tmp_path / "gray" / name / f"{i}.png", pixels)
    cfg = tiny_config(
        tmp_path,
        dataset=str(tmp_path / "gray"),
        model="mobilenet_v3_small",
        pretrained=True,
        img_size=None,
        limit=None,
        val_split=0.0,
        limit_batches=1.0,
    )
    summary = fit(cfg)
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.input.channels == 3 and ckpt.input.size == (224, 224)
    decisions = ckpt.meta.decisions
    assert "gray images are repeated to the model's 3 channels" in decisions["channels"]
    assert "224×224" in decisions["img_size"]


def test_pretrained_without_the_file_names_the_file_and_the_url(tmp_path, monkeypatch, capsys):
    import torch.hub

    home = _torch_home(tmp_path, monkeypatch)
    monkeypatch.delenv("CNNKIT_OFFLINE")
    calls = []

    def offline(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    make_image_folder(tmp_path / "pets", ["cat", "dog"], 3, 16, 16)
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(
        monkeypatch,
        capsys,
        "train",
        "--dataset",
        "pets",
        "--model",
        "resnet18",
        "--pretrained",
        "--out",
        "runs",
    )
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    expected = home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in errors[0] and "no route to host" in errors[0]
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in errors[0]
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert not (tmp_path / "runs").exists() and not expected.exists()


def test_a_damaged_cached_file_says_to_delete_it(tmp_path, monkeypatch, capsys) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    path = _put_weights(home, "resnet18", {})
    path.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = _cli(monkeypatch, capsys, "predict", "resnet18:imagenet", str(path))
    assert code == 1 and "is not a readable weights file" in err and "delete it" in err


# ---------------------------------------------------------------------------
# MODEL:DATA: pretrained models used as they are
# ---------------------------------------------------------------------------


def test_predict_with_imagenet_weights_uses_their_categories(tmp_path, monkeypatch, capsys):
    import torchvision

    home = _torch_home(tmp_path, monkeypatch)
    _no_download(monkeypatch)
    state = _fake_resnet18()
    _put_weights(home, "resnet18", state)
    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    write_array(tmp_path / "photo.png", image)
    code, out, _ = _cli(
        monkeypatch,
        capsys,
        "predict",
        "resnet18:imagenet",
        str(tmp_path / "photo.png"),
        "--format",
        "jsonl",
        "--top-k",
        "3",
    )
    assert code == 0
    record = json.loads(out)
    # The same image through torchvision's model, normalised with the weights' mean/std.
    reference = torchvision.models.resnet18()
    reference.load_state_dict(state)
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = reference.eval()((x - mean) / std).softmax(1)[0]
    categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    best = int(probs.argmax())
    assert record["label"] == categories[best]
    assert record["score"] == pytest.approx(float(probs[best]), abs=1e-4)
    assert [t["label"] for t in record["topk"]] == [categories[int(i)] for i in probs.topk(3)[1]]


def test_eval_on_a_folder_of_imagenet_category_names(tmp_path, monkeypatch, capsys) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    _no_download(monkeypatch)
    _put_weights(home, "resnet18", _fake_resnet18())
    make_image_folder(tmp_path / "zoo", ["goldfish", "great_white_shark"], 3, 32, 32)
    code, out, err = _cli(
        monkeypatch,
        capsys,
        "eval",
        "resnet18:imagenet",
        "--dataset",
        str(tmp_path / "zoo"),
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 6 and report["split"] == "all"
    # Only the classes present or predicted are listed; the matrix is theirs.
    assert {"goldfish", "great white shark"} <= set(report["classes"])
    k = len(report["classes"])
    assert len(report["confusion_matrix"]) == k and sum(map(sum, report["confusion_matrix"])) == 6
    assert report["per_class"]["goldfish"]["support"] == 3
    # The accuracy is the predictions' own, file by file.
    code, out, _ = _cli(
        monkeypatch,
        capsys,
        "predict",
        "resnet18:imagenet",
        str(tmp_path / "zoo"),
        "--format",
        "jsonl",
    )
    records = [json.loads(line) for line in out.splitlines()]
    right = sum(r["label"] == Path(r["path"]).parent.name.replace("_", " ") for r in records)
    assert report["accuracy"] == pytest.approx(right / 6)


@pytest.mark.parametrize(
    "classes, phrase",
    [(["goldfsh"], "does not know: goldfsh"), (["CARDIGAN"], "names 2 of the model's categories")],
)
def test_eval_refuses_unknown_and_ambiguous_categories(
    tmp_path, monkeypatch, capsys, classes, phrase
) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    _put_weights(home, "resnet18", _fake_resnet18())
    make_image_folder(tmp_path / "zoo", classes, 2, 16, 16)
    code, _, err = _cli(
        monkeypatch, capsys, "eval", "resnet18:imagenet", "--dataset", str(tmp_path / "zoo")
    )
    assert code == 1 and phrase in err


def test_predict_video_with_kinetics_weights(tmp_path, monkeypatch, capsys) -> None:
    import torchvision

    home = _torch_home(tmp_path, monkeypatch)
    _no_download(monkeypatch)
    torch.manual_seed(0)
    _put_weights(home, "r3d_18", torchvision.models.video.r3d_18().state_dict())
    make_video(tmp_path / "clip.mp4", frames=20, h=64, w=80)
    code, out, err = _cli(
        monkeypatch,
        capsys,
        "predict",
        "r3d_18:kinetics400",
        str(tmp_path / "clip.mp4"),
        "--format",
        "jsonl",
    )
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    categories = torchvision.models.video.R3D_18_Weights.DEFAULT.meta["categories"]
    # The weights' clip length: frames 0-15 (end_frame is the last frame of the window).
    assert (records[0]["start_frame"], records[0]["end_frame"]) == (0, 15)
    assert records[-1]["window"] == "video"
    assert all(r["label"] in categories for r in records)


def test_inspect_shows_what_a_run_started_from(tmp_path, monkeypatch, capsys) -> None:
    source = fit(tiny_config(tmp_path, model="simplecnn", name="source"))["best_checkpoint"]
    tuned = fit(
        tiny_config(tmp_path, model=None, weights=source, freeze=True, name="tuned", img_size=None)
    )["best_checkpoint"]
    code, out, _ = _cli(monkeypatch, capsys, "inspect", tuned)
    assert code == 0
    assert "started from" in out and "source" in out and "frozen" in out and "classifier" in out
    code, out, _ = _cli(monkeypatch, capsys, "inspect", tuned, "--json")
    start = json.loads(out)["start"]
    assert start["kind"] == "checkpoint" and start["head"] == "loaded"
    assert start["trained"] == ["classifier"]
    assert len(start["sha256"]) == 64


# ---------------------------------------------------------------------------
# --weights: transfer from our own checkpoints and from plain files
# ---------------------------------------------------------------------------


def _two_task_folders(root: Path) -> tuple[Path, Path]:
    """A 'pretraining' folder with classes a, b, c and a small one with other classes d, e."""
    make_image_folder(root / "first", ["a", "b", "c"], 8, 16, 16, seed=1)
    make_image_folder(root / "second", ["d", "e"], 3, 16, 16, seed=2)
    return root / "first", root / "second"


def test_transfer_loads_every_layer_and_makes_a_new_head(tmp_path) -> None:
    first, second = _two_task_folders(tmp_path)
    source_path = fit(
        tiny_config(
            tmp_path, dataset=str(first), model="simplecnn", limit=None, epochs=2, name="first"
        )
    )["best_checkpoint"]
    source = load_checkpoint(source_path)
    # The model as training builds it, before the first step.
    cfg = tiny_config(
        tmp_path, dataset=str(second), model=None, weights=source_path, img_size=None, limit=None
    )
    cfg, wf = model_from_weights(cfg)
    assert cfg.model == "simplecnn"  # taken from the checkpoint
    start = plan_start(cfg, "image", wf, None)
    assert start.channels == source.input.channels and start.mean == source.input.mean
    torch.manual_seed(123)
    model = create_model("simplecnn", num_classes=2, in_channels=start.channels)
    fresh_head = model.classifier.weight.detach().clone()
    record = start_model(model, start, ["d", "e"], freeze=False)
    state = model.state_dict()
    for key, value in source.state_dict.items():
        if not key.startswith("classifier."):
            assert torch.equal(state[key], value), key
    assert torch.equal(state["classifier.weight"], fresh_head)  # new: the other run's classes
    assert state["classifier.weight"].shape == (2, 128)
    assert record["head"] == "new" and record["kind"] == "checkpoint"

    # Same number of classes, other names: the head is still new, not the old one reused.
    start = plan_start(cfg, "image", wf, None)
    model = create_model("simplecnn", num_classes=3, in_channels=start.channels)
    record = start_model(model, start, ["x", "y", "z"], freeze=False)
    assert record["head"] == "new"
    assert not torch.equal(model.classifier.weight, source.state_dict["classifier.weight"])


def test_fine_tune_run_on_other_classes_records_and_freezes(tmp_path, capsys) -> None:
    first, second = _two_task_folders(tmp_path)
    source_path = fit(
        tiny_config(tmp_path, dataset=str(first), model="simplecnn", limit=None, name="first")
    )["best_checkpoint"]
    show_messages(False)
    capsys.readouterr()
    summary = fit(
        tiny_config(
            tmp_path,
            dataset=str(second),
            model=None,
            weights=source_path,
            freeze=True,
            img_size=None,
            limit=None,
            val_split=0.0,
            name="second",
        )
    )
    err = capsys.readouterr().err
    assert "new head 'classifier' for 2 classes (the checkpoint was trained on other" in err
    tuned = load_checkpoint(summary["best_checkpoint"])
    source = load_checkpoint(source_path)
    assert tuned.classes == ["d", "e"] and tuned.input == source.input  # the source's input spec
    for key, value in source.state_dict.items():
        if not key.startswith("classifier."):
            assert torch.equal(tuned.state_dict[key], value), key  # frozen: batch norm included
    assert tuned.meta.options["freeze"] is True

    # Resuming a frozen run keeps it frozen (and its optimizer fits).
    resumed = fit(
        tiny_config(
            tmp_path,
            resume=summary["last_checkpoint"],
            epochs=2,
            name="resumed",
            explicit=["resume", "epochs"],
            model=None,
            dataset=None,
            img_size=None,
            limit=None,
            batch_size=None,
        )
    )
    again = load_checkpoint(resumed["last_checkpoint"])
    for key, value in source.state_dict.items():
        if not key.startswith("classifier."):
            assert torch.equal(again.state_dict[key], value), key
    assert again.meta.start["resumed_from"] == summary["last_checkpoint"]
    assert again.meta.start["kind"] == "checkpoint"


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "nested"])
def test_plain_state_dict_files_load_strictly(tmp_path, fmt: str) -> None:
    torch.manual_seed(5)
    state = create_model("simplecnn", num_classes=4, in_channels=3).state_dict()
    path = tmp_path / f"weights.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state} if fmt == "nested" else state, path)
    summary = fit(
        tiny_config(tmp_path, model="simplecnn", weights=str(path), img_size=None, epochs=1)
    )
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.input.channels == 3  # from the file's first convolution
    start = ckpt.meta.start
    assert start["kind"] == ("safetensors" if fmt == "safetensors" else "state_dict")
    assert start["head"] == "new"  # 4 classes in the file, 6 shapes here
    assert start["tensors_loaded"] == len(state) - 2


def test_weights_file_of_the_right_head_is_loaded_whole(tmp_path, capsys) -> None:
    torch.manual_seed(5)
    state = create_model("lenet5", num_classes=6, in_channels=3).state_dict()
    torch.save(state, tmp_path / "w.pt")
    show_messages(False)
    capsys.readouterr()
    fit(tiny_config(tmp_path, weights=str(tmp_path / "w.pt"), limit_batches=1.0))
    err = capsys.readouterr().err
    assert "head 'classifier.5' included (its shape fits 6 classes)" in err


def test_weights_are_read_without_running_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    torch.save({"conv.weight": torch.zeros(1), "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="without running code"):
        fit(tiny_config(tmp_path, weights=str(tmp_path / "evil.pth")))
    assert not Path("pwned").exists()


def test_a_dataset_too_big_for_memory_at_the_weights_size_is_refused(tmp_path, monkeypatch):
    import cnnkit.ops.limits as limits
    from cnnkit.errors import DatasetError

    monkeypatch.setattr(limits, "available_memory", lambda: 50 * 2**20)
    with pytest.raises(DatasetError, match=r"needs 1\.2 GB of memory .* than the 52\.4 MB"):
        fit(tiny_config(tmp_path, img_size=224, limit=None))  # 8,000 shapes of 3×224×224
    assert not (tmp_path / "runs").exists()


def test_weights_model_data_is_pretrained(tmp_path, monkeypatch) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    _no_download(monkeypatch)
    state = _fake_resnet18()
    _put_weights(home, "resnet18", state)
    cfg, wf = model_from_weights(tiny_config(tmp_path, model=None, weights="resnet18:imagenet"))
    assert (cfg.model, cfg.pretrained, cfg.weights, wf) == ("resnet18", True, None, None)
    with pytest.raises(Exception, match="names weights of 'resnet18', not of 'lenet5'"):
        model_from_weights(tiny_config(tmp_path, model="lenet5", weights="resnet18:imagenet"))


@pytest.mark.parametrize(
    "options, lr",
    [
        (dict(model="resnet18", pretrained=True), 1e-3),  # torchvision models: 1e-3
        (dict(model="resnet18", weights="w.pth"), 1e-3),
        (dict(model="resnet18", pretrained=True, freeze=True), 3e-2),  # a probe: larger steps
        (dict(model="simplecnn", weights="w.ckpt", freeze=True), 3e-2),
        (dict(model="simplecnn", weights="w.ckpt"), None),  # small models: the usual default
        (dict(model="resnet18"), None),  # random weights
    ],
)
def test_default_learning_rate_follows_the_start(tmp_path, options, lr) -> None:
    from cnnkit.training.start import start_lr

    assert start_lr(tiny_config(tmp_path, **options)) == lr


# ---------------------------------------------------------------------------
# faults found by trying to break the features above
# ---------------------------------------------------------------------------


def test_freeze_refuses_to_keep_layers_that_were_not_loaded(tmp_path) -> None:
    source = fit(tiny_config(tmp_path, model="lecun1989", name="src"))["best_checkpoint"]
    with pytest.raises(CheckpointError, match=r"--freeze would keep 3 layer tensor\(s\)"):
        fit(tiny_config(tmp_path, model=None, weights=source, freeze=True, img_size=32))
    # Without --freeze they are trained, and the head feeding on them is new too.
    summary = fit(tiny_config(tmp_path, model=None, weights=source, img_size=32, name="t"))
    start = load_checkpoint(summary["best_checkpoint"]).meta.start
    assert start["head"] == "new" and len(start["not_loaded"]) == 3


def test_flips_follow_the_images_not_the_channels_they_are_repeated_to(tmp_path, monkeypatch):
    home = _torch_home(tmp_path, monkeypatch)
    _put_weights(home, "resnet18", _fake_resnet18())
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / "gray" / name).mkdir(parents=True)
        for i in range(3):
            write_array(
                tmp_path / "gray" / name / f"{i}.png", rng.integers(0, 255, (8, 8), np.uint8)
            )
    summary = fit(tiny_config(tmp_path, dataset=str(tmp_path / "gray"), model="resnet18",
                              pretrained=True, freeze=True, img_size=32, limit=None,
                              val_split=0.0))  # fmt: skip
    meta = load_checkpoint(summary["best_checkpoint"]).meta
    assert meta.options["hflip"] is False and "gray images" in meta.decisions["hflip"]
    assert meta.decisions["lr"].startswith("peak learning rate 0.03, the default for a linear")


def test_resume_cannot_change_freeze(tmp_path, capsys) -> None:
    source = fit(tiny_config(tmp_path, model="simplecnn", name="src"))
    with pytest.raises(Exception, match="continues a run that was not frozen"):
        fit(tiny_config(tmp_path, resume=source["last_checkpoint"], freeze=True, epochs=2,
                        explicit=["resume", "freeze", "epochs"], name="again"))  # fmt: skip
    assert not (tmp_path / "runs" / "again").exists()


def test_inspect_counts_what_a_frozen_run_trained(tmp_path, monkeypatch, capsys) -> None:
    source = fit(tiny_config(tmp_path, model="simplecnn", name="src"))["best_checkpoint"]
    tuned = fit(tiny_config(tmp_path, model=None, weights=source, freeze=True, name="probe",
                            img_size=None))["best_checkpoint"]  # fmt: skip
    code, out, _ = _cli(monkeypatch, capsys, "inspect", tuned, "--json")
    summary = json.loads(out)
    assert summary["trainable_params"] == 128 * 6 + 6 < summary["params"]


def test_a_batch_of_one_at_a_1x1_batch_norm_is_skipped_and_said(tmp_path, capsys) -> None:
    show_messages(False)
    make_image_folder(tmp_path / "pets", ["cat", "dog"], 5, 16, 16)  # 10 samples, batches of 3
    fit(tiny_config(tmp_path, dataset=str(tmp_path / "pets"), model="resnet18", img_size=32,
                    batch_size=3, limit=None, val_split=0.0))  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("a training batch of 1 sample is skipped") == 1


def test_cached_weights_of_another_model_name_the_file(tmp_path, monkeypatch, capsys) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    file = _put_weights(home, "mobilenet_v3_small", _fake_resnet18())
    make_image(tmp_path / "x.png", 16, 16)
    code, _, err = _cli(monkeypatch, capsys, "predict", "MobileNet_V3_Small:ImageNet",
                        str(tmp_path / "x.png"))  # fmt: skip
    assert code == 1 and f"the cached weights file {file} does not hold" in err
    assert "delete it and run again" in err


def test_eval_of_a_reference_refuses_odd_folders(tmp_path, monkeypatch, capsys) -> None:
    home = _torch_home(tmp_path, monkeypatch)
    _put_weights(home, "resnet18", _fake_resnet18())
    make_image_folder(tmp_path / "twice", ["great_white_shark", "great white shark"], 2, 16, 16)
    code, _, err = _cli(monkeypatch, capsys, "eval", "resnet18:imagenet", "--dataset",
                        str(tmp_path / "twice"))  # fmt: skip
    assert code == 1 and "both name the class 'great white shark'" in err
    for split in ("train", "test"):
        make_image_folder(tmp_path / "split" / split, ["goldfish", "tench"], 2, 16, 16)
    code, _, err = _cli(monkeypatch, capsys, "eval", "resnet18:imagenet", "--dataset",
                        str(tmp_path / "split"), "--split", "val")  # fmt: skip
    assert code == 1 and "has no val split" in err  # nothing carved out of train/
    (tmp_path / "vids" / "goldfish").mkdir(parents=True)
    make_video(tmp_path / "vids" / "goldfish" / "a.mp4", frames=4)
    code, _, err = _cli(monkeypatch, capsys, "eval", "resnet18:imagenet", "--dataset",
                        str(tmp_path / "vids"))  # fmt: skip
    assert code == 1 and "classifies images, and dataset" in err and "holds videos" in err


def test_offline_means_no_dataset_download_either(tmp_path) -> None:
    from cnnkit.data.registry import DatasetRequest, load_dataset
    from cnnkit.errors import DatasetError

    assert os.environ["CNNKIT_OFFLINE"] == "1"  # tests/conftest.py
    with pytest.raises(DatasetError, match=r"could not be downloaded \(CNNKIT_OFFLINE is set\)"):
        load_dataset(DatasetRequest("mnist", data_dir=str(tmp_path)))
