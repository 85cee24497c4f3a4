"""cnnkit export, and .onnx models in predict, eval and inspect (ONNX Runtime, never torch)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    cnnkit_in_process,
    make_checkpoint,
    make_image,
    make_image_folder,
    make_video,
)

# The scores of the two paths agree to within export's verify tolerance (1e-4 of the
# logits' size); probabilities of these small models are well inside it.
SCORE_TOLERANCE = 1e-4
# The packages a torch-free install leaves out (README: pip install --no-deps cnnkit, then
# typer, rich, numpy, opencv-python-headless and onnxruntime).
NOT_INSTALLED = "torch,torchvision,lightning,torchmetrics,yaml,safetensors,onnx,onnxscript"
BLOCK_TORCH = """
import os, sys
blocked = set(os.environ["BLOCKED"].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.argv = ["cnnkit", *sys.argv[1:]]
from cnnkit.cli import main
main()
"""


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return cnnkit_in_process(monkeypatch, capsys, *args)


def _no_torch(*args: str, cwd: Path, blocked: str = NOT_INSTALLED) -> subprocess.CompletedProcess:
    """cnnkit ARGS in a process where importing torch (and the ``blocked`` others) fails."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "BLOCKED": blocked}
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A 2D and a 3D checkpoint with seeded weights, each exported once."""
    root = tmp_path_factory.mktemp("export")
    image = make_checkpoint(root / "digits.ckpt", "lenet5", list("abc"), 1, (16, 16),
                            mean=[0.4], std=[0.3], seed=3)  # fmt: skip
    video = make_checkpoint(root / "motion.ckpt", "c3d_small", ["left", "right"], 3, (16, 16),
                            frames=4, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])  # fmt: skip
    from cnnkit.onnxexport import export_onnx

    for ckpt in (image, video):
        export_onnx(str(ckpt), ckpt.with_suffix(".onnx"))
    make_image_folder(root / "pics", list("abc"), 3, 20, 24)
    make_image(root / "one.png", 30, 30, channels=3)
    make_video(root / "clip.mp4", frames=11, h=24, w=32)
    return {"image": image, "video": video, "root": root}


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _same_records(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b, strict=True):
        assert x["path"] == y["path"] and x["label"] == y["label"]
        assert x["score"] == pytest.approx(y["score"], abs=SCORE_TOLERANCE)
        assert [t["label"] for t in x["topk"]] == [t["label"] for t in y["topk"]]
        for key in ("start_frame", "end_frame", "window"):
            assert x.get(key) == y.get(key)


def test_export_writes_a_verified_self_describing_model(models, monkeypatch, capsys) -> None:
    import onnx

    ckpt = models["image"]
    out = ckpt.with_name("again.onnx")
    code, stdout, err = _cli(monkeypatch, capsys, "export", str(ckpt), "-o", str(out), "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["path"] == str(out) and result["format"] == "onnx" and result["opset"] == 18
    assert result["bytes"] == out.stat().st_size
    assert 0 <= result["max_abs_diff"] < 1e-4
    assert result["inputs"] == [{"name": "input", "shape": ["batch", 1, 16, 16], "dtype": "UINT8"}]
    assert result["outputs"][0]["shape"] == ["batch", 3]
    assert "verified in ONNX Runtime" in err
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["classes"]) == ["a", "b", "c"]
    spec = json.loads(props["input"])
    assert spec["mean"] == [0.4] and spec["std"] == [0.3] and spec["size"] == [16, 16]
    assert props["model"] == "lenet5" and props["cnnkit_version"]
    assert props["source_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert not list(out.parent.glob(".*.tmp*"))


def test_the_graph_normalises_and_needs_nothing_of_cnnkit(models) -> None:
    """Any ONNX Runtime user gets the checkpoint's logits by feeding uint8 pixels."""
    import onnxruntime as ort
    import torch

    from cnnkit.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(models["image"])
    session = ort.InferenceSession(str(models["image"].with_suffix(".onnx")))
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 16, 16), dtype=np.uint8)
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = build_model(ckpt)((torch.from_numpy(x).float() / 255 - 0.4) / 0.3).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    "model, channels, size, frames",
    [("lecun1989", 1, (16, 16), None), ("framewise2d", 3, (16, 16), 4), ("dense", 1, (8, 8), None)],
)
def test_custom_layers_and_3d_models_export(tmp_path, monkeypatch, capsys, model, channels, size,
                                            frames) -> None:  # fmt: skip
    ckpt = make_checkpoint(tmp_path / "m.ckpt", model, ["x", "y"], channels, size, frames=frames)
    code, out, err = _cli(monkeypatch, capsys, "export", str(ckpt), "--json", "--batch", "2")
    assert code == 0, err
    result = json.loads(out)
    assert result["inputs"][0]["shape"][0] == 2 and result["max_abs_diff"] < 1e-4


def test_predict_onnx_matches_the_checkpoint_on_images(models, monkeypatch, capsys) -> None:
    root = models["root"]
    inputs = [str(root / "pics"), str(root / "one.png")]
    answers = []
    for model in (models["image"], models["image"].with_suffix(".onnx")):
        code, out, err = _cli(monkeypatch, capsys, "predict", str(model), *inputs, "--format",
                              "jsonl", "--top-k", "3")  # fmt: skip
        assert code == 0, err
        answers.append(_records(out))
    _same_records(*answers)
    assert "note: colour inputs are converted to gray" in err  # the same notes as the .ckpt


def test_predict_onnx_matches_the_checkpoint_on_videos(models, monkeypatch, capsys) -> None:
    clip = str(models["root"] / "clip.mp4")
    for checkpoint, extra in ((models["video"], ["--stride", "3"]), (models["image"], [])):
        answers = []
        for model in (checkpoint, checkpoint.with_suffix(".onnx")):
            code, out, err = _cli(monkeypatch, capsys, "predict", str(model), clip, "--format",
                                  "jsonl", *extra)  # fmt: skip
            assert code == 0, err
            answers.append(_records(out))
        _same_records(*answers)
    assert answers[0][0].get("frame") is not None or "start_frame" in answers[0][0]


def test_fixed_batch_models_take_any_number_of_inputs(models, monkeypatch, capsys) -> None:
    out_path = models["root"] / "fixed.onnx"
    code, _, err = _cli(monkeypatch, capsys, "export", str(models["image"]), "-o", str(out_path),
                        "--batch", "4")  # fmt: skip
    assert code == 0, err
    answers = []
    for model in (models["image"], out_path):
        code, out, err = _cli(monkeypatch, capsys, "predict", str(model),
                              str(models["root"] / "pics"), "--batch-size", "5")  # fmt: skip
        assert code == 0, err
        answers.append(_records(out))
    _same_records(*answers)


def test_onnx_paths_never_import_torch(models) -> None:
    root, onnx_image = models["root"], str(models["image"].with_suffix(".onnx"))
    done = _no_torch("predict", onnx_image, "pics", "one.png", "--format", "jsonl", cwd=root)
    assert done.returncode == 0, done.stderr
    assert len(_records(done.stdout)) == 10
    done = _no_torch("predict", str(models["video"].with_suffix(".onnx")), "clip.mp4", cwd=root)
    assert done.returncode == 0, done.stderr
    assert _records(done.stdout)[-1]["window"] == "video"
    # With onnx installed too, inspect counts the operators (still without torch).
    done = _no_torch("inspect", onnx_image, "--json", cwd=root, blocked="torch,lightning")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["classes"] == ["a", "b", "c"] and summary["opset"] == 18
    assert summary["operators"]["Conv"] == 2 and summary["inputs"][0]["dtype"] == "tensor(uint8)"
    # The blocker works: the .ckpt path does need torch.
    done = _no_torch("predict", str(models["image"]), "one.png", cwd=root)
    assert done.returncode != 0


def test_window_other_than_the_exported_frames_is_refused(models, monkeypatch, capsys) -> None:
    code, _, err = _cli(monkeypatch, capsys, "predict", str(models["video"].with_suffix(".onnx")),
                        str(models["root"] / "clip.mp4"), "--window", "6")  # fmt: skip
    assert code == 1 and "takes clips of exactly 4 frames" in err


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["-o", "model.txt"], "the output of export is an .onnx file"),
        (["-o", "missing/model.onnx"], "missing"),
        (["-o", "full.onnx"], "No space left on device"),
    ],
)
def test_export_refuses_bad_outputs(models, tmp_path, monkeypatch, capsys, args, phrase) -> None:
    import errno

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Path, "write_bytes", full_disk)
    code, _, err = _cli(monkeypatch, capsys, "export", str(models["image"]), *args)
    assert code == 1 and phrase in err and "Traceback" not in err, err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    assert list(tmp_path.iterdir()) == []  # neither the model nor a temporary file


@pytest.mark.parametrize("value", ["0", "abc", "²", "1000000000"])
def test_bad_batch_sizes_are_usage_errors(models, tmp_path, monkeypatch, capsys, value) -> None:
    code, _, err = _cli(monkeypatch, capsys, "export", str(models["image"]), "-o",
                        str(tmp_path / "m.onnx"), "--batch", value)  # fmt: skip
    assert code == 2 and "'dynamic'" in err and "1024" in err  # a usage error, boxed
    assert not (tmp_path / "m.onnx").exists()


def test_files_that_are_not_what_their_names_say(models, tmp_path, monkeypatch, capsys) -> None:
    import shutil

    shutil.copy(models["image"], tmp_path / "c.onnx")
    shutil.copy(models["image"].with_suffix(".onnx"), tmp_path / "o.ckpt")
    make_image(tmp_path / "x.png", 8, 8)
    cases = [
        (["predict", str(tmp_path / "c.onnx"), str(tmp_path / "x.png")], "is a PyTorch checkpoint"),
        (["export", str(tmp_path / "o.ckpt"), "-o", str(tmp_path / "z.onnx")],
         "is an exported ONNX model already"),
        (["export", str(models["image"].with_suffix(".onnx"))], "is an exported ONNX model"),
        (["predict", str(models["image"].with_suffix(".onnx")), str(tmp_path / "x.png"),
          "--device", "cuda"], "this onnxruntime has no CUDA execution provider"),
    ]  # fmt: skip
    for args, phrase in cases:
        code, _, err = _cli(monkeypatch, capsys, *args)
        assert code == 1 and phrase in err and "Traceback" not in err, err
        assert "not a readable ONNX model" not in err


def test_export_keeps_the_checkpoint_metrics(models, monkeypatch, capsys, tmp_path) -> None:
    from cnnkit.onnxexport import export_onnx

    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", list("ab"), 1, (16, 16),
                           metrics={"val_acc": 0.75})  # fmt: skip
    export_onnx(str(ckpt), tmp_path / "m.onnx", verify=False)
    code, out, _ = _cli(monkeypatch, capsys, "inspect", str(tmp_path / "m.onnx"), "--json")
    assert json.loads(out)["metrics"] == {"val_acc": 0.75}


def test_a_graph_that_disagrees_with_its_metadata_is_refused(models, tmp_path, monkeypatch,
                                                             capsys) -> None:  # fmt: skip
    import onnx

    proto = onnx.load(str(models["image"].with_suffix(".onnx")))
    for prop in proto.metadata_props:
        if prop.key == "cnnkit.meta":
            meta = json.loads(prop.value)
            meta["classes"] = meta["classes"][:2]
            prop.value = json.dumps(meta)
    onnx.save(proto, tmp_path / "edited.onnx")
    make_image(tmp_path / "x.png", 8, 8)
    code, _, err = _cli(monkeypatch, capsys, "predict", str(tmp_path / "edited.onnx"),
                        str(tmp_path / "x.png"))  # fmt: skip
    assert code == 1 and "does not match its own cnnkit metadata" in err


def test_a_failed_verification_writes_nothing(models, tmp_path, monkeypatch, capsys) -> None:
    import cnnkit.onnxexport

    monkeypatch.setattr(cnnkit.onnxexport, "RELATIVE_TOLERANCE", -1.0)  # every difference fails
    out = tmp_path / "m.onnx"
    code, _, err = _cli(monkeypatch, capsys, "export", str(models["image"]), "-o", str(out))
    assert code == 1 and "differ from PyTorch's" in err and not out.exists()
    code, _, err = _cli(monkeypatch, capsys, "export", str(models["image"]), "-o", str(out),
                        "--no-verify")  # fmt: skip
    assert code == 0 and out.exists()


def test_without_the_onnx_extra_one_line_says_what_to_install(models, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime", "onnxscript"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    for module in [m for m in sys.modules if m.split(".")[0] in ("onnx", "onnxruntime")]:
        monkeypatch.delitem(sys.modules, module)
    code, _, err = _cli(monkeypatch, capsys, "export", str(models["image"]), "-o", "x.onnx")
    assert code == 1 and "pip install 'cnnkit[onnx]'" in err
    code, _, err = _cli(monkeypatch, capsys, "predict", str(models["image"].with_suffix(".onnx")),
                        str(models["root"] / "one.png"))  # fmt: skip
    assert code == 1 and "needs onnxruntime" in err and "pip install 'cnnkit[onnx]'" in err


def test_foreign_and_damaged_onnx_files_are_refused(tmp_path, monkeypatch, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    (tmp_path / "damaged.onnx").write_bytes(b"\x08\x07garbage")
    make_image(tmp_path / "x.png", 8, 8)
    for name, phrase in (("foreign", "was not exported by cnnkit"),
                         ("damaged", "is not a readable ONNX model"),
                         ("missing", "does not exist")):  # fmt: skip
        code, _, err = _cli(monkeypatch, capsys, "predict", str(tmp_path / f"{name}.onnx"),
                            str(tmp_path / "x.png"))  # fmt: skip
        assert code == 1 and phrase in err and "Traceback" not in err, err


def _eval_json(monkeypatch, capsys, model: Path, *args: str) -> dict:
    code, out, err = _cli(monkeypatch, capsys, "eval", str(model), *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_eval_onnx_matches_the_checkpoint(models, monkeypatch, capsys) -> None:
    from tests.helpers import make_video_folder

    root = models["root"]
    make_video_folder(root / "moves", ["left", "right"], 2, frames=6, h=16, w=16)
    for ckpt, folder in ((models["image"], "pics"), (models["video"], "moves")):
        want = _eval_json(monkeypatch, capsys, ckpt, "--dataset", str(root / folder))
        got = _eval_json(monkeypatch, capsys, ckpt.with_suffix(".onnx"), "--dataset",
                         str(root / folder))  # fmt: skip
        assert got["n"] == want["n"] > 0 and got["accuracy"] == want["accuracy"]
        assert got["confusion_matrix"] == want["confusion_matrix"]
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-4)
        assert got["checkpoint"].endswith(".onnx")
    done = _no_torch("eval", str(models["video"].with_suffix(".onnx")), "--dataset", "moves",
                     "--json", cwd=root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accuracy"] == got["accuracy"]


def test_eval_onnx_on_a_built_in_dataset(tmp_path, monkeypatch, capsys) -> None:
    from cnnkit.onnxexport import export_onnx

    classes = ["circle", "square", "triangle", "cross", "star", "ring"]
    ckpt = make_checkpoint(tmp_path / "s.ckpt", "lenet5", classes, 3, (16, 16), dataset="shapes")
    export_onnx(str(ckpt), tmp_path / "s.onnx", verify=False)
    # With torch installed the data is read with it (said), the model runs in ONNX Runtime.
    want = _eval_json(monkeypatch, capsys, ckpt, "--limit", "60")
    code, out, err = _cli(monkeypatch, capsys, "eval", str(tmp_path / "s.onnx"), "--limit", "60",
                          "--json")  # fmt: skip
    assert code == 0 and "built-in dataset 'shapes' is read with torch" in err
    got = json.loads(out)
    assert got["n"] == want["n"] == 60 and got["confusion_matrix"] == want["confusion_matrix"]
    # Without torch: one line saying what to do.
    done = _no_torch("eval", "s.onnx", cwd=tmp_path)
    assert done.returncode == 1 and "is built in and needs torch to load" in done.stderr


def test_opset_is_the_one_asked_for(models, tmp_path, monkeypatch, capsys) -> None:
    import onnx

    out = tmp_path / "m21.onnx"
    code, stdout, err = _cli(monkeypatch, capsys, "export", str(models["image"]), "-o", str(out),
                             "--opset", "21", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["opset"] == 21
    assert (
        max(o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx"))
        == 21
    )
