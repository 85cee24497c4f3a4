"""Metrics, confusion matrix files and the split runner of cnnkit.evaluation."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from cnnkit.errors import InputError
from cnnkit.evaluation import (
    compute_report,
    confusion_matrix,
    cross_entropy,
    evaluate,
    render_confusion,
    top_k_accuracy,
    video_level_accuracy,
    write_confusion,
    write_misclassified,
)


def test_confusion_rows_are_true_classes() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(labels, predicted, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_report_matches_hand_computed_numbers() -> None:
    classes = ["a", "b", "c"]
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 2, 0, 2])
    logits = np.full((6, 3), -5.0)
    logits[np.arange(6), predicted] = 5.0
    report = compute_report(logits, labels, classes, top_k=2)
    assert report.n == 6
    assert report.accuracy == pytest.approx(4 / 6)
    # class a: tp 1, predicted 2, support 2 -> p 0.5, r 0.5
    assert report.per_class["a"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    # class b: tp 1, predicted 2, support 1 -> p 0.5, r 1, f1 2/3
    assert report.per_class["b"]["f1"] == pytest.approx(2 / 3)
    # class c: tp 2, predicted 2, support 3 -> p 1, r 2/3, f1 0.8
    assert report.per_class["c"]["f1"] == pytest.approx(0.8)
    assert report.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    js = report.to_json()
    assert js["top_k_accuracy"]["k"] == 2
    assert js["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_metrics_agree_with_torchmetrics() -> None:
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    rng = np.random.default_rng(1)
    k = 5
    logits = rng.normal(size=(200, k))
    labels = rng.integers(0, k, 200)
    report = compute_report(logits, labels, [str(i) for i in range(k)], top_k=3)
    t_logits, t_labels = torch.tensor(logits), torch.tensor(labels)
    kw = {"num_classes": k, "average": None}
    p = multiclass_precision(t_logits, t_labels, **kw).numpy()
    r = multiclass_recall(t_logits, t_labels, **kw).numpy()
    f = multiclass_f1_score(t_logits, t_labels, **kw).numpy()
    for i in range(k):
        got = report.per_class[str(i)]
        assert got["precision"] == pytest.approx(p[i], abs=1e-6)
        assert got["recall"] == pytest.approx(r[i], abs=1e-6)
        assert got["f1"] == pytest.approx(f[i], abs=1e-6)
    cm = multiclass_confusion_matrix(t_logits, t_labels, num_classes=k).numpy()
    assert (report.confusion == cm).all()
    top3 = multiclass_accuracy(t_logits, t_labels, num_classes=k, top_k=3, average="micro")
    assert report.top_k_accuracy == pytest.approx(float(top3), abs=1e-6)
    loss = torch.nn.functional.cross_entropy(t_logits, t_labels).item()
    assert report.loss == pytest.approx(loss, abs=1e-9)


def test_top_k_and_cross_entropy_edge_cases() -> None:
    scores = np.array([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1]])
    labels = np.array([2, 2])
    assert top_k_accuracy(scores, labels, 1) == 0.0
    assert top_k_accuracy(scores, labels, 2) == 0.5
    assert top_k_accuracy(scores, labels, 99) == 1.0  # k larger than classes: all in
    assert cross_entropy(np.zeros((4, 4)), np.array([0, 1, 2, 3])) == pytest.approx(np.log(4))


def test_unpredicted_class_gets_zero_precision_not_nan() -> None:
    logits = np.array([[5.0, 0, 0], [5.0, 0, 0]])
    report = compute_report(logits, np.array([0, 1]), ["a", "b", "c"])
    assert report.per_class["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # "c" has no samples: the macro F1 averages the classes present only.
    assert report.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)


def test_video_level_accuracy_averages_clip_probabilities() -> None:
    # Video 0 (label 1): clips say 0 weakly, 1 strongly -> video says 1.
    clip_logits = np.log(np.array([[0.6, 0.4], [0.1, 0.9], [0.9, 0.1]]))
    owner = np.array([0, 0, 1])
    acc, mean = video_level_accuracy(clip_logits, owner, np.array([1, 0]))
    assert acc == 1.0
    assert mean[0] == pytest.approx([0.35, 0.65])


def test_confusion_csv_and_png(tmp_path) -> None:
    cm = np.array([[5, 1], [0, 12]])
    write_confusion(tmp_path / "cm.csv", cm, ["cat", "dog"])
    rows = list(csv.reader((tmp_path / "cm.csv").open()))
    assert rows == [["true\\predicted", "cat", "dog"], ["cat", "5", "1"], ["dog", "0", "12"]]
    write_confusion(tmp_path / "cm.png", cm, ["cat", "dog"])
    png = cv2.imread(str(tmp_path / "cm.png"))
    assert png is not None and png.shape == render_confusion(cm, ["cat", "dog"]).shape
    # The heat map has colour (viridis), not just black text on white.
    assert len(np.unique(png.reshape(-1, 3), axis=0)) > 10
    with pytest.raises(InputError, match="confusion"):
        write_confusion(tmp_path / "cm.txt", cm, ["cat", "dog"])
    assert not (tmp_path / "cm.txt").exists()


def test_confusion_png_scales_with_class_count() -> None:
    small = render_confusion(np.eye(2, dtype=int), ["a", "b"])
    big = render_confusion(np.eye(10, dtype=int) * 100, [f"class-{i}" for i in range(10)])
    assert big.shape[0] > small.shape[0] and big.shape[1] > small.shape[1]


def test_misclassified_csv(tmp_path) -> None:
    n = write_misclassified(
        tmp_path / "wrong.csv",
        ["a.png", "b.png", "c.png"],
        np.array([0, 1, 1]),
        np.array([0, 0, 1]),
        np.array([0.9, 0.75, 0.6]),
        ["cat", "dog"],
    )
    assert n == 1
    rows = list(csv.DictReader((tmp_path / "wrong.csv").open()))
    assert rows == [{"path": "b.png", "true": "dog", "predicted": "cat", "score": "0.750000"}]


class _Stub:
    """A predictor stand-in: scores an image by its mean brightness (class 1 = bright)."""

    def __init__(self, frames=None, batch_size=4):
        from cnnkit.spec import InputSpec

        self.input = InputSpec(1, (4, 4), frames, (0.0,), (1.0,))
        self.classes = ["dark", "bright"]
        self.batch_size = batch_size
        self.batches: list[tuple] = []

    @property
    def is_video_model(self):
        return self.input.frames is not None

    def logits(self, batch):
        self.batches.append(batch.shape)
        m = batch.reshape(len(batch), -1).mean(axis=1) / 255.0
        return np.stack([0.5 - m, m - 0.5], axis=1) * 10

    def prepare_image(self, img):
        from cnnkit.data.preprocess import prepare_image

        return prepare_image(img, 1, (4, 4))

    def prepare_clip(self, frames):
        from cnnkit.data.preprocess import prepare_clip

        return prepare_clip(frames, 1, (4, 4))


def test_evaluate_split_batches_and_resizes() -> None:
    from cnnkit.data.arrays import Split

    x = np.zeros((10, 1, 8, 8), np.uint8)
    x[5:] = 250
    y = np.array([0] * 5 + [1] * 4 + [0])
    stub = _Stub()
    report = evaluate(stub, Split(x, y), top_k=1)
    assert report.accuracy == pytest.approx(0.9)
    assert report.confusion.tolist() == [[5, 1], [0, 4]]
    # 8x8 samples were resized to the checkpoint's 4x4, in batches of at most 4.
    assert all(s[1:] == (1, 4, 4) and s[0] <= 4 for s in stub.batches)


def test_evaluate_clips_reports_clip_and_video_accuracy() -> None:
    from cnnkit.data.arrays import Split

    # Two videos of 12 frames: video 0 is dark for 8 frames then bright; label 0.
    x = np.zeros((2, 1, 12, 4, 4), np.uint8)
    x[0, :, 8:] = 255
    x[1] = 255
    y = np.array([0, 1])
    stub = _Stub(frames=4)
    report = evaluate(stub, Split(x, y, frames=4, lengths=np.array([12, 12])), clips=3)
    # windows start at 0, 4, 8: video 0's third window is all bright -> one clip wrong.
    assert report.video["clip_accuracy"] == pytest.approx(5 / 6)
    assert report.video["video_accuracy"] == 1.0
    assert report.accuracy == 1.0
    assert report.to_json()["clips_per_video"] == 3
