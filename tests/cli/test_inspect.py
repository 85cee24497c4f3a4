"""`cnnkit inspect`: target detection, JSON fields, pictures written, errors, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnkit.cli import app
from cnnkit.errors import CnnkitError
from cnnkit.io.image import read_image
from tests.helpers import make_checkpoint, make_image, make_video

LAYER_FIELDS = {
    "name", "type", "kernel_size", "stride", "padding", "output_shape", "params", "macs",
    "receptive_field",
}  # fmt: skip


def inspect_json(*args: str) -> dict:
    result = CliRunner().invoke(app, ["inspect", *args, "--json", "-q"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def inspect_error(*args: str) -> CnnkitError:
    result = CliRunner().invoke(app, ["inspect", *args])
    assert isinstance(result.exception, CnnkitError), (result.output, result.exception)
    return result.exception


def test_model_json() -> None:
    s = inspect_json("lenet5")
    assert s["kind"] == "model" and s["name"] == "lenet5"
    assert s["input_size"] == [1, 28, 28]
    assert (s["params"], s["trainable_params"], s["macs"]) == (61_706, 61_706, 416_520)
    assert s["receptive_field"] == 16
    assert all(set(layer) >= LAYER_FIELDS for layer in s["layers"])
    assert s["layers"][-1]["output_shape"] == [1, 10]


def test_model_input_size_and_classes_change_the_model() -> None:
    s = inspect_json("resnet18", "--input-size", "1x32x32", "--num-classes", "3")
    assert s["input_size"] == [1, 32, 32]
    assert s["params"] == 11_181_642 - 10 * 513 + 3 * 513 - 2 * 64 * 49  # fc and 1-channel conv1
    assert s["layers"][-1]["output_shape"] == [1, 3]
    s3 = inspect_json("c3d_small", "--input-size", "3x4x16x16")
    assert s3["receptive_field"] == [10, 18, 18] and s3["input_size"] == [3, 4, 16, 16]


def test_input_size_channels_and_hxw() -> None:
    # 3 channels: lenet5 is built with a 3-channel first convolution (2 x 6 x 25 more weights).
    assert inspect_json("lenet5", "--input-size", "3x28x28")["params"] == 61_706 + 2 * 150
    assert inspect_json("lenet5", "--input-size", "32x32")["input_size"] == [1, 32, 32]


def test_human_view_has_the_layer_table_and_totals() -> None:
    result = CliRunner().invoke(app, ["inspect", "lenet5"])
    assert result.exit_code == 0
    for text in ("Conv2d", "MaxPool2d", "1×16×5×5", "117,600", "61,706", "416,520", "16×16"):
        assert text in result.stdout


def test_image_json_and_pixel_block(tmp_path) -> None:
    pixels = make_image(tmp_path / "digit.png", h=10, w=10, channels=1, seed=2)
    s = inspect_json(str(tmp_path / "digit.png"))
    assert s["kind"] == "image"
    assert (s["width"], s["height"], s["channels"], s["dtype"]) == (10, 10, 1, "uint8")
    assert s["mean"] == pytest.approx([pixels.mean()], abs=1e-3)
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "digit.png")])
    assert str(int(pixels[1, 1])) in result.stdout  # the raw numbers are shown


def test_video_json(tmp_path) -> None:
    make_video(tmp_path / "clip.mp4", frames=5, h=16, w=16, fps=10.0)
    s = inspect_json(str(tmp_path / "clip.mp4"))
    assert {k: s[k] for k in ("kind", "frames", "width", "height")} == {
        "kind": "video", "frames": 5, "width": 16, "height": 16,
    }  # fmt: skip
    assert s["fps"] == pytest.approx(10.0) and s["codec"]


def test_feature_maps_and_kernels_written(tmp_path) -> None:
    make_image(tmp_path / "x.png", h=40, w=30, channels=3, seed=1)  # resized, made gray for lenet5
    s = inspect_json(
        "lenet5",
        "--image", str(tmp_path / "x.png"),
        "--feature-maps", str(tmp_path / "maps"),
        "--kernels", str(tmp_path / "k.png"),
    )  # fmt: skip
    assert [m["layer"] for m in s["feature_maps"]] == ["features.0", "features.3"]
    for item in s["feature_maps"]:
        grid = read_image(item["path"])
        assert grid.ndim == 2 and grid.std() > 10
    assert s["kernels"]["weight_shape"] == [6, 1, 5, 5]
    kernels = read_image(tmp_path / "k.png")
    assert len(np.unique(kernels)) > 20  # 150 random weights drawn, not a flat image


def test_feature_maps_of_a_clip_model_from_a_video(tmp_path) -> None:
    make_video(tmp_path / "clip.mp4", frames=8, h=32, w=32)
    s = inspect_json(
        "c3d_small", "--image", str(tmp_path / "clip.mp4"), "--feature-maps", str(tmp_path / "m")
    )
    assert [m["shape"][0] for m in s["feature_maps"]] == [16, 32, 64]
    assert len(list((tmp_path / "m").glob("*.png"))) == 3


def test_checkpoint_json(tmp_path) -> None:
    ckpt = make_checkpoint(
        tmp_path / "m.ckpt", "lenet5", ["a", "b", "c"], 1, (28, 28), metrics={"val_acc": 0.75}
    )
    s = inspect_json(str(ckpt))
    assert s["kind"] == "checkpoint" and s["name"] == "lenet5"
    assert s["classes"] == ["a", "b", "c"]
    assert s["input"]["channels"] == 1 and s["input"]["size"] == [28, 28]
    assert s["cnnkit_version"] == "0.1.0" and s["metrics"]["val_acc"] == 0.75 and "dataset" in s
    assert s["params"] == 61_706 - 7 * 85  # 3 outputs instead of 10
    assert s["input_size"] == [1, 28, 28]


def test_dataset_rendering_is_wired_to_describe_dataset(tmp_path, monkeypatch) -> None:
    calls = []

    def describe_dataset(target, data_dir=None):
        calls.append((target, data_dir))
        return {
            "kind": "dataset",
            "classes": ["cat", "dog"],
            "counts": {"cat": 3, "dog": 1},
            "splits": {"train": {"cat": 2, "dog": 1}, "val": {"cat": 1, "dog": 0}},
            "unreadable": [str(tmp_path / "bad.png")],
            "warnings": ["class 'dog' has 3x fewer images than 'cat'"],
        }

    fake = types.ModuleType("cnnkit.data.describe")
    fake.describe_dataset = describe_dataset
    monkeypatch.setitem(sys.modules, "cnnkit.data.describe", fake)
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.exception
    assert calls == [(str(tmp_path), tmp_path)]
    for text in ("cat", "dog", "bad.png", "warning: class 'dog'"):
        assert text in result.stdout
    assert inspect_json("mnist")["counts"] == {"cat": 3, "dog": 1}  # a dataset name


@pytest.mark.parametrize(
    "args, message, hint",
    [
        (["lenet"], "'lenet' is not a model", "lenet5"),
        (["nope/missing.png"], "no such file", "path"),
        (["c3d_small", "--input-size", "3x32x32"], "CxTxHxW", "3x8x32x32"),
        (["lenet5", "--input-size", "big"], "input size 'big'", "1x28x28"),
        (["lenet5", "--feature-maps", "maps"], "go together", "--image"),
    ],
)
def test_errors_name_the_problem(args, message, hint) -> None:
    error = inspect_error(*args)
    assert message in error.message and hint in (error.hint or "")


def test_model_options_refused_for_images(tmp_path) -> None:
    make_image(tmp_path / "a.png")
    error = inspect_error(str(tmp_path / "a.png"), "--kernels", str(tmp_path / "k.png"))
    assert "--kernels" in error.message


def test_inspect_never_imports_lightning_and_errors_exit_1(tmp_path) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 1, (28, 28))
    code = (
        "import sys\n"
        "from cnnkit.cli import app\n"
        f"for args in (['inspect', 'lenet5', '--json'], ['inspect', {str(ckpt)!r}, '--json']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "lightning = ('lightning', 'pytorch_lightning', 'lightning_fabric')\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in lightning]\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY=" in out.stderr and out.stderr.strip().endswith("HEAVY="), out.stderr
    failed = subprocess.run(
        [sys.executable, "-m", "cnnkit", "inspect", "lenet"], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: 'lenet' is not a model") and "lenet5" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_inspect_of_an_image_never_imports_torch(tmp_path) -> None:
    """A file is recognised by its extension: the model registries (torch) stay unloaded,
    which keeps inspect's fixed memory near 80 MB instead of a gigabyte."""
    make_image(tmp_path / "a.png", h=8, w=8)
    code = (
        "import sys\n"
        "from cnnkit.cli import app\n"
        "try:\n"
        "    app(['inspect', 'a.png', '--json'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "image"
