"""`cnnkit eval`: default split, JSON fields, class checks, output files, parity with predict."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnkit.cli import app
from tests.helpers import make_checkpoint, make_image_folder, write_array

CLASSES = ["blue", "green", "red"]


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "data"
    make_image_folder(root / "train", CLASSES, 4, 16, 16, seed=1)
    make_image_folder(root / "test", CLASSES, 5, 16, 16, seed=2)
    return root


@pytest.fixture
def ckpt(tmp_path, folder) -> str:
    path = make_checkpoint(
        tmp_path / "m.ckpt", "lenet5", CLASSES, 3, (16, 16), dataset=str(folder.resolve())
    )
    return str(path)


def _eval(*args: str) -> dict:
    result = CliRunner().invoke(app, ["eval", *args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_fields_on_the_checkpoints_own_test_split(ckpt, folder) -> None:
    out = _eval(ckpt)
    assert out["split"] == "test" and out["n"] == 15
    assert out["dataset"] == str(folder.resolve()) and out["checkpoint"] == ckpt
    assert out["classes"] == CLASSES
    assert set(out["per_class"]["red"]) == {"precision", "recall", "f1", "support"}
    assert sum(m["support"] for m in out["per_class"].values()) == 15
    cm = np.array(out["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 15 and cm.sum(axis=1).tolist() == [5, 5, 5]
    assert out["accuracy"] == pytest.approx(np.trace(cm) / 15)
    assert out["top_k_accuracy"] == {"k": 3, "value": 1.0}  # top-5 of 3 classes: always right
    assert isinstance(out["loss"], float) and isinstance(out["macro_f1"], float)
    val = _eval(ckpt, "--split", "val", "--top-k", "1")
    assert val["split"] == "val" and val["top_k_accuracy"]["value"] == val["accuracy"]


def test_eval_agrees_with_predict_image_for_image(tmp_path, ckpt, folder) -> None:
    wrong_csv = tmp_path / "wrong.csv"
    out = _eval(ckpt, "--misclassified", str(wrong_csv))
    runner = CliRunner()
    pred = runner.invoke(app, ["predict", ckpt, str(folder / "test"), "-q", "--top-k", "1"])
    assert pred.exit_code == 0
    records = [json.loads(line) for line in pred.stdout.splitlines()]
    assert len(records) == out["n"]
    cm = np.zeros((3, 3), int)
    wrong_by_predict = {}
    for r in records:
        true = Path(r["path"]).parent.name
        cm[CLASSES.index(true), CLASSES.index(r["label"])] += 1
        if r["label"] != true:
            wrong_by_predict[str(Path(r["path"]).resolve())] = (true, r["label"], r["score"])
    assert cm.tolist() == out["confusion_matrix"]
    rows = list(csv.DictReader(wrong_csv.open()))
    wrong_by_eval = {
        str(Path(r["path"]).resolve()): (r["true"], r["predicted"], float(r["score"])) for r in rows
    }
    assert wrong_by_eval.keys() == wrong_by_predict.keys()
    for path, (true, label, score) in wrong_by_eval.items():
        assert wrong_by_predict[path][:2] == (true, label)
        assert wrong_by_predict[path][2] == pytest.approx(score, abs=1e-5)


def test_dataset_with_other_classes_is_refused(tmp_path, ckpt) -> None:
    other = tmp_path / "other"
    make_image_folder(other, ["blue", "green", "yellow"], 3, 16, 16)
    result = CliRunner().invoke(app, ["eval", ckpt, "--dataset", str(other)])
    assert result.exit_code != 0
    message = str(result.exception)
    assert "red" in message and "yellow" in message and "classes" in message


def test_confusion_and_misclassified_files(tmp_path, ckpt) -> None:
    out = _eval(ckpt, "--confusion", str(tmp_path / "cm.csv"))
    rows = list(csv.reader((tmp_path / "cm.csv").open()))
    assert rows[0][1:] == CLASSES
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == out["confusion_matrix"]
    _eval(ckpt, "--confusion", str(tmp_path / "cm.png"))
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["eval", ckpt, "--confusion", str(tmp_path / "cm.jpg")])
    assert bad.exit_code == 2 and not (tmp_path / "cm.jpg").exists()


def test_human_view_has_tables_on_stdout(ckpt) -> None:
    result = CliRunner().invoke(app, ["eval", ckpt])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for word in ("accuracy", "top-", "loss", "precision", "confusion", *CLASSES):
        assert word in out
    assert "device:" not in out  # chatter stays on stderr


def _write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """torchvision's MNIST files: big-endian magic, sizes, then raw uint8."""
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, h, w) + images.astype(np.uint8).tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes()
    )


def test_idx_files_and_png_files_give_the_same_numbers(tmp_path) -> None:
    """Preprocessing parity: the same digits from torchvision's IDX files or from PNGs."""
    rng = np.random.default_rng(0)
    digits = [str(d) for d in range(10)]
    train_x = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
    train_y = np.arange(40) % 10
    test_x = rng.integers(0, 256, (30, 28, 28)).astype(np.uint8)
    test_y = np.arange(30) % 10
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw, "train", train_x, train_y)
    _write_idx(raw, "t10k", test_x, test_y)
    pngs = tmp_path / "digits"
    for split, xs, ys in (("train", train_x, train_y), ("test", test_x, test_y)):
        for i, (img, label) in enumerate(zip(xs, ys, strict=True)):
            (pngs / split / str(label)).mkdir(parents=True, exist_ok=True)
            write_array(pngs / split / str(label) / f"{i:03d}.png", img)
    ckpt = make_checkpoint(
        tmp_path / "d.ckpt", "lenet5", digits, 1, (28, 28), dataset="mnist",
        mean=[0.1307], std=[0.3081],
    )  # fmt: skip
    from_idx = _eval(str(ckpt), "--data-dir", str(tmp_path / "data"))
    from_png = _eval(str(ckpt), "--dataset", str(pngs))
    assert from_idx["dataset"] == "mnist" and from_idx["n"] == from_png["n"] == 30
    assert from_idx["confusion_matrix"] == from_png["confusion_matrix"]
    assert from_idx["accuracy"] == from_png["accuracy"]
    assert from_idx["loss"] == pytest.approx(from_png["loss"], abs=1e-6)


# ---------------------------------------------------------------------------
# end to end, on a checkpoint written by `cnnkit train`
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One epoch of lenet5 on a tiny 4-class folder: accurate enough to be right and wrong."""
    root = tmp_path_factory.mktemp("trained")
    classes = ["a", "b", "c", "d"]
    make_image_folder(root / "data" / "train", classes, 8, 16, 16, seed=1)
    make_image_folder(root / "data" / "test", classes, 6, 16, 16, seed=2)
    args = [
        "train", "--dataset", str(root / "data"), "--model", "lenet5", "--epochs", "1",
        "--batch-size", "8", "--img-size", "16", "--out", str(root / "runs"), "--json", "-q",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    return {"root": root, "summary": summary, "ckpt": summary["best_checkpoint"]}


def test_eval_reproduces_the_test_accuracy_train_reported(trained) -> None:
    metrics = trained["summary"]["metrics"]
    out = _eval(trained["ckpt"])
    assert out["split"] == "test" and out["n"] == 24
    assert out["accuracy"] == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert out["loss"] == pytest.approx(metrics["test_loss"], abs=1e-4)
    val = _eval(trained["ckpt"], "--split", "val")
    assert val["accuracy"] == pytest.approx(metrics["val_acc"], abs=1e-6)


def test_trained_predict_agrees_with_eval_on_the_folder(tmp_path, trained) -> None:
    wrong_csv = tmp_path / "wrong.csv"
    out = _eval(trained["ckpt"], "--misclassified", str(wrong_csv))
    test_dir = trained["root"] / "data" / "test"
    pred = CliRunner().invoke(app, ["predict", trained["ckpt"], str(test_dir), "-q"])
    assert pred.exit_code == 0
    records = [json.loads(line) for line in pred.stdout.splitlines()]
    classes = out["classes"]
    cm = np.zeros((len(classes), len(classes)), int)
    wrong = {}
    for r in records:
        true = Path(r["path"]).parent.name
        cm[classes.index(true), classes.index(r["label"])] += 1
        if r["label"] != true:
            wrong[str(Path(r["path"]).resolve())] = (r["label"], r["score"])
    assert cm.tolist() == out["confusion_matrix"]
    rows = list(csv.DictReader(wrong_csv.open()))
    assert {str(Path(r["path"]).resolve()): r["predicted"] for r in rows} == {
        p: label for p, (label, _) in wrong.items()
    }
    for r in rows:
        assert float(r["score"]) == pytest.approx(wrong[str(Path(r["path"]).resolve())][1], 1e-5)


def test_video_model_clip_and_video_accuracy_match_predict_windows(tmp_path) -> None:
    from tests.helpers import make_video_folder

    classes = ["x", "y"]
    make_video_folder(tmp_path / "vids" / "train", classes, 2, frames=12, seed=1)
    make_video_folder(tmp_path / "vids" / "test", classes, 3, frames=12, seed=2)
    ckpt = make_checkpoint(
        tmp_path / "v.ckpt", "c3d_small", classes, 3, (16, 16), frames=4,
        dataset=str((tmp_path / "vids").resolve()),
    )  # fmt: skip
    out = _eval(str(ckpt), "--clips", "3")
    assert out["n"] == 6 and out["clips_per_video"] == 3
    assert 0.0 <= out["clip_accuracy"] <= 1.0 and out["video_accuracy"] == out["accuracy"]
    # predict with windows 0-3, 4-7, 8-11 sees the same three clips per video, so its
    # whole-video records must give eval's per-video confusion matrix.
    args = ["predict", str(ckpt), str(tmp_path / "vids" / "test"), "--stride", "4", "-q"]
    pred = CliRunner().invoke(app, args)
    assert pred.exit_code == 0, pred.output
    records = [json.loads(line) for line in pred.stdout.splitlines()]
    videos = [r for r in records if r.get("window") == "video"]
    assert len(videos) == 6 and all(r["windows"] == 3 for r in videos)
    cm = np.zeros((2, 2), int)
    for r in videos:
        cm[classes.index(Path(r["path"]).parent.name), classes.index(r["label"])] += 1
    assert cm.tolist() == out["confusion_matrix"]
    windows = [r for r in records if "window" not in r]
    clip_right = [classes.index(Path(r["path"]).parent.name) == classes.index(r["label"])
                  for r in windows]  # fmt: skip
    assert out["clip_accuracy"] == pytest.approx(np.mean(clip_right))


def test_eval_finds_the_data_dir_training_used(tmp_path, monkeypatch) -> None:
    """A relative --data-dir given to train is found again by eval from another folder."""
    rng = np.random.default_rng(1)
    raw = tmp_path / "work" / "digits" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw, "train", rng.integers(0, 256, (40, 28, 28)), np.arange(40) % 10)
    _write_idx(raw, "t10k", rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no cached copy to fall back on
    monkeypatch.chdir(tmp_path / "work")
    args = [
        "train", "--dataset", "mnist", "--data-dir", "digits", "--model", "lenet5",
        "--epochs", "1", "--batch-size", "16", "--out", "runs", "--json", "-q",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["best_checkpoint"] == str(Path("runs/train/checkpoints/best.ckpt"))
    monkeypatch.chdir(tmp_path)
    out = _eval(str(Path("work") / summary["best_checkpoint"]))
    assert out["dataset"] == "mnist" and out["n"] == 20
    assert out["accuracy"] == pytest.approx(summary["metrics"]["test_acc"], abs=1e-6)


# ---------------------------------------------------------------------------
# which samples are measured
# ---------------------------------------------------------------------------


def test_a_folder_without_splits_is_measured_whole(tmp_path, ckpt) -> None:
    plain = tmp_path / "plain"
    make_image_folder(plain, CLASSES, 7, 16, 16, seed=4)
    out = _eval(ckpt, "--dataset", str(plain))
    assert out["split"] == "all" and out["n"] == 21  # every image, not a 10% "val" slice
    assert [m["support"] for m in out["per_class"].values()] == [7, 7, 7]
    result = CliRunner().invoke(app, ["eval", ckpt, "--dataset", str(plain), "--split", "test"])
    assert result.exit_code == 1 and "measures every file in it" in result.exception.message


def test_a_folder_with_splits_is_measured_per_split(ckpt, folder) -> None:
    assert _eval(ckpt, "--dataset", str(folder))["n"] == 15  # test/ by default
    # 12 train images less the validation split held out of them, one per class.
    assert _eval(ckpt, "--dataset", str(folder), "--split", "train")["n"] == 9


def test_eval_never_inherits_the_training_limit_and_has_its_own(tmp_path, folder) -> None:
    ckpt = make_checkpoint(
        tmp_path / "limited.ckpt", "lenet5", CLASSES, 3, (16, 16),
        dataset=str(folder.resolve()), options={"limit": 4, "val_split": 0.1},
    )  # fmt: skip
    assert _eval(str(ckpt))["n"] == 15
    sample = _eval(str(ckpt), "--limit", "6")
    assert sample["n"] == 6
    assert [m["support"] for m in sample["per_class"].values()] == [2, 2, 2]


def test_a_colour_folder_measured_by_a_gray_model_is_noted(tmp_path, capsys) -> None:
    from cnnkit.cli.output import show_messages

    show_messages(False)
    make_image_folder(tmp_path / "colour", CLASSES, 2, 16, 16)
    gray = make_checkpoint(tmp_path / "g.ckpt", "lenet5", CLASSES, 1, (16, 16))
    result = CliRunner().invoke(app, ["eval", str(gray), "--dataset", str(tmp_path / "colour")])
    assert result.exit_code == 0, result.output
    assert "note: colour images are converted to gray for the model's 1 channel" in result.stderr
