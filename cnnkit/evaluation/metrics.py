"""Metrics for a trained classifier: accuracy, top-k, loss, per-class report, confusion matrix.

Everything here works on plain numpy arrays of logits (N×K float) and true
labels (N ints), so the numbers do not depend on torchmetrics or on the device
the model ran on. ``softmax`` is also predict's: its scores and eval's agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """N×K logits -> N×K log-probabilities (float64, numerically stable)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """N×K logits -> N×K probabilities summing to one per row."""
    return np.exp(log_softmax(logits))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels`` (N,) under ``logits`` (N×K)."""
    if len(labels) == 0:
        return float("nan")
    logp = log_softmax(logits)
    return float(-logp[np.arange(len(labels)), labels].mean())


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose true label is among the ``k`` highest scores (N×K, N)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    # argpartition gives the k largest without a full sort; ties do not matter for a count.
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """K×K int64 counts: rows are true classes, columns predicted classes."""
    index = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predicted, np.int64)
    counts = np.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_report(cm: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix.

    A class never predicted has precision 0 (not NaN) and one never present has
    recall 0, the scikit-learn ``zero_division=0`` convention, so JSON stays valid.
    """
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }


@dataclass
class EvalReport:
    """The numbers ``cnnkit eval`` prints; ``to_json`` gives DESIGN.md's fields."""

    classes: list[str]
    n: int
    accuracy: float
    top_k: int
    top_k_accuracy: float
    loss: float
    per_class: dict[str, dict[str, float]]
    macro_f1: float
    confusion: np.ndarray
    labels: np.ndarray  # (N,) true class index per sample
    predicted: np.ndarray  # (N,) predicted class index per sample
    scores: np.ndarray  # (N,) probability of the predicted class
    index: np.ndarray | None = None  # (N,) sample numbers in the split (unreadable ones skipped)
    video: dict[str, Any] = field(default_factory=dict)  # clip/video-level numbers
    # Only these classes are reported (per class and in the confusion matrix):
    # set for models with far more classes than the data holds (MODEL:DATA).
    shown: list[int] | None = None
    # What was measured: {"checkpoint", "dataset", "split"} (cnnkit.evaluate sets it).
    about: dict[str, Any] = field(default_factory=dict)

    @property
    def confusion_matrix(self) -> np.ndarray:
        """The confusion matrix as reported (rows: true classes, columns: predictions)."""
        return self.visible()[1]

    def to_dict(self) -> dict[str, Any]:
        """The document ``cnnkit eval --json`` prints."""
        return {**self.about, **self.to_json()}

    def show_seen_classes(self) -> None:
        """Report only the classes present in the data or predicted, in the model's order.

        Lossless: every other class has an all-zero row and column in the
        confusion matrix and no support.
        """
        self.shown = sorted(set(self.labels.tolist()) | set(self.predicted.tolist()))

    def visible(self) -> tuple[list[str], np.ndarray]:
        """(classes, confusion matrix) as reported: all of them, or the ``shown`` ones."""
        if self.shown is None:
            return list(self.classes), self.confusion
        keep = np.asarray(self.shown, dtype=np.int64)
        return [self.classes[i] for i in keep], self.confusion[np.ix_(keep, keep)]

    def to_json(self) -> dict[str, Any]:
        classes, confusion = self.visible()
        out: dict[str, Any] = {
            "n": self.n,
            "accuracy": self.accuracy,
            "top_k_accuracy": {"k": self.top_k, "value": self.top_k_accuracy},
            "loss": self.loss,
            "classes": classes,
            "per_class": {c: self.per_class[c] for c in classes},
            "macro_f1": self.macro_f1,
            "confusion_matrix": confusion.tolist(),
        }
        out.update(self.video)
        return out


def compute_report(
    logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], top_k: int = 5
) -> EvalReport:
    """All metrics from N×K logits and N true labels."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    probs = softmax(logits) if len(labels) else np.zeros((0, k))
    predicted = probs.argmax(axis=1) if len(labels) else np.zeros(0, np.int64)
    cm = confusion_matrix(labels, predicted, k)
    report = per_class_report(cm, classes)
    present = [c for c in classes if report[c]["support"] > 0]
    # Macro F1 over the classes present in the split: a class with no samples
    # would otherwise count as a zero and punish a model for the data it was given.
    macro_f1 = float(np.mean([report[c]["f1"] for c in present])) if present else float("nan")
    return EvalReport(
        classes=list(classes),
        n=int(len(labels)),
        accuracy=float((predicted == labels).mean()) if len(labels) else float("nan"),
        top_k=min(top_k, k),
        top_k_accuracy=top_k_accuracy(probs, labels, top_k),
        loss=cross_entropy(logits, labels),
        per_class=report,
        macro_f1=macro_f1,
        confusion=cm,
        labels=labels,
        predicted=predicted,
        scores=probs.max(axis=1) if len(labels) else np.zeros(0),
    )


def video_level_accuracy(
    clip_logits: np.ndarray, clip_video: np.ndarray, video_labels: np.ndarray
) -> tuple[float, np.ndarray]:
    """Average clip probabilities per video and score the averaged prediction.

    ``clip_logits`` is (M×K) over all clips, ``clip_video`` (M,) gives each clip's
    video index into ``video_labels`` (V,). Returns (accuracy, V×K mean probabilities).
    """
    probs = softmax(clip_logits)
    v = len(video_labels)
    sums = np.zeros((v, probs.shape[1]))
    np.add.at(sums, clip_video, probs)
    counts = np.bincount(clip_video, minlength=v)[:, None]
    mean = sums / np.maximum(counts, 1)
    acc = float((mean.argmax(axis=1) == video_labels).mean()) if v else float("nan")
    return acc, mean
