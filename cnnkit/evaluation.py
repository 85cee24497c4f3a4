"""Metrics for a trained classifier: accuracy, top-k, loss, per-class report, confusion matrix.

Everything here works on plain numpy arrays of logits (N×K float) and true
labels (N ints), so the numbers do not depend on torchmetrics or on the device
the model ran on. The confusion heat map is drawn with OpenCV (no matplotlib).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cnnkit.errors import InputError
from cnnkit.io.atomic import atomic_output, atomic_write_text


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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n": self.n,
            "accuracy": self.accuracy,
            "top_k_accuracy": {"k": self.top_k, "value": self.top_k_accuracy},
            "loss": self.loss,
            "classes": list(self.classes),
            "per_class": self.per_class,
            "macro_f1": self.macro_f1,
            "confusion_matrix": self.confusion.tolist(),
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


# ---------------------------------------------------------------------------
# files: confusion matrix (PNG heat map or CSV), misclassified samples (CSV)
# ---------------------------------------------------------------------------


def write_confusion(path: str | Path, cm: np.ndarray, classes: Sequence[str]) -> None:
    """Write the confusion matrix as a PNG heat map or a CSV table, by extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        write_confusion_csv(path, cm, classes)
    elif suffix == ".png":
        write_confusion_png(path, cm, classes)
    else:
        raise InputError(
            f"cannot write a confusion matrix to '{path}'",
            hint="use a file name ending in .png (heat map) or .csv (table)",
        )


def write_confusion_csv(path: str | Path, cm: np.ndarray, classes: Sequence[str]) -> None:
    """CSV with a header row of predicted classes and one row per true class."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true\\predicted", *classes])
    for name, row in zip(classes, cm, strict=True):
        writer.writerow([name, *(int(v) for v in row)])
    atomic_write_text(path, buf.getvalue())


def render_confusion(cm: np.ndarray, classes: Sequence[str], cell: int | None = None) -> np.ndarray:
    """Draw a heat map with class names and counts -> H×W×3 BGR uint8 image.

    Colour is the row-normalised share (recall per true class), so a rare class's
    mistakes are as visible as a common one's; the number drawn is the raw count.
    """
    k = len(classes)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    text_w = max(cv2.getTextSize(str(c), font, scale, thick)[0][0] for c in classes)
    count_w = cv2.getTextSize(str(int(cm.max()) if cm.size else 0), font, scale, thick)[0][0]
    cell = cell or max(28, count_w + 10)
    margin = text_w + 16
    title_h = 22
    height = title_h + margin + k * cell + 24
    width = margin + k * cell + 16
    img = np.full((height, width, 3), 255, np.uint8)
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    colors = cv2.applyColorMap((share * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    top = title_h + margin
    cv2.putText(img, "predicted", (margin, 15), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(img, "true", (2, top - 6), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    for i in range(k):
        y0 = top + i * cell
        label_y = y0 + (cell + 8) // 2
        cv2.putText(img, str(classes[i]), (4, label_y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
        for j in range(k):
            x0 = margin + j * cell
            color = tuple(int(c) for c in colors[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), color, -1)
            text = str(int(cm[i, j]))
            (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
            # Dark text on the bright (yellow) end of viridis, white on the dark end.
            ink = (0, 0, 0) if share[i, j] > 0.6 else (255, 255, 255)
            org = (x0 + (cell - tw) // 2, y0 + (cell + th) // 2)
            cv2.putText(img, text, org, font, scale, ink, thick, cv2.LINE_AA)
    # Column names are written vertically: draw on a strip, rotate it into place.
    strip = np.full((cell * k, margin, 3), 255, np.uint8)
    for j in range(k):
        y = j * cell + (cell + 8) // 2
        cv2.putText(strip, str(classes[j]), (4, y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    img[title_h : title_h + margin, margin : margin + k * cell] = rotated
    return img


def write_confusion_png(path: str | Path, cm: np.ndarray, classes: Sequence[str]) -> None:
    """Write ``render_confusion`` as a PNG, atomically."""
    image = render_confusion(cm, classes)
    ok, data = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - PNG encoding of a uint8 image does not fail
        raise InputError(f"could not encode the confusion matrix for '{path}'")
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())


def write_misclassified(
    path: str | Path,
    ids: Sequence[str],
    labels: np.ndarray,
    predicted: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
) -> int:
    """CSV of wrong predictions (path, true, predicted, score); returns the row count.

    ``ids`` name each sample: a file path, or ``split[index]`` for in-memory data.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "true", "predicted", "score"])
    wrong = np.flatnonzero(np.asarray(labels) != np.asarray(predicted))
    for i in wrong:
        score = f"{float(scores[i]):.6f}"
        writer.writerow([ids[i], classes[labels[i]], classes[predicted[i]], score])
    atomic_write_text(path, buf.getvalue())
    return int(len(wrong))


# ---------------------------------------------------------------------------
# running a model over a dataset split
# ---------------------------------------------------------------------------


def clip_starts(length: int, frames: int, clips: int) -> list[int]:
    """Start frames of ``clips`` windows of ``frames`` frames spread over ``length`` frames.

    One clip is centred (as training's validation does, so eval reproduces its
    numbers); several are spaced evenly from the first frame to the last window.
    """
    room = max(length - frames, 0)
    if clips <= 1:
        return [room // 2]
    # A video with room for fewer distinct windows than asked gets each window once.
    return sorted({int(round(v)) for v in np.linspace(0, room, clips)})


def _clip(video: np.ndarray, length: int, start: int, frames: int) -> np.ndarray:
    """C×L×H×W stored video -> C×T×H×W window; past the end, the last real frame repeats."""
    index = np.minimum(np.arange(start, start + frames), max(length, 1) - 1)
    return video[:, index]


@dataclass
class SplitLogits:
    """Model outputs over a split: ``logits`` (M×K) for M clips, or images when M == N.

    ``sample`` (M,) maps each row to its sample (video) number among the N
    readable ones; ``labels`` (N,); ``index`` (N,) their numbers in the split.
    """

    logits: np.ndarray
    sample: np.ndarray
    labels: np.ndarray
    index: np.ndarray


def split_logits(predictor: Any, split: Any, clips: int = 1, workers: int = 2) -> SplitLogits:
    """Run ``predictor`` over a dataset split in batches.

    ``split`` is a ``TensorSplit`` (``x`` uint8 N×C×H×W or N×C×L×H×W with
    ``lengths``) or a map-style dataset yielding (uint8 tensor, label), as
    ``cnnkit.data`` builds them. Samples whose size or channel count differs
    from the checkpoint's are converted with the same preprocessing as predict.
    For clip models every video gives ``clips`` windows (see ``clip_starts``).
    """
    from cnnkit import console
    from cnnkit.inference import map_ahead

    x = getattr(split, "x", None)
    n = len(split)
    lengths = getattr(split, "lengths", None)

    def sample(i: int) -> tuple[np.ndarray, int] | None:
        if x is not None:
            return np.asarray(x[i]), int(split.y[i])
        got = split[i]
        if got is None:  # a file that cannot be decoded (the dataset has warned)
            return None
        return np.asarray(got[0]), int(got[1])

    video = predictor.is_video_model
    frames = predictor.input.frames
    logits: list[np.ndarray] = []
    owners: list[int] = []
    labels: list[int] = []
    kept: list[int] = []
    pending: list[np.ndarray] = []
    pending_owner: list[int] = []

    def flush() -> None:
        logits.append(predictor.logits(np.stack(pending)))
        owners.extend(pending_owner)
        pending.clear()
        pending_owner.clear()

    loaded = map_ahead(sample, range(n), workers=workers, ahead=4 * predictor.batch_size)
    for i, result in console.track(loaded, total=n, description="evaluating"):
        if isinstance(result, BaseException):
            raise result
        if result is None:
            continue
        data, label = result
        labels.append(label)
        kept.append(i)
        owner = len(kept) - 1
        if video:
            length = int(lengths[i]) if lengths is not None else data.shape[1]
            for start in clip_starts(length, frames, clips):
                pending.append(_conform_clip(predictor, _clip(data, length, start, frames)))
                pending_owner.append(owner)
        else:
            pending.append(_conform_image(predictor, data))
            pending_owner.append(owner)
        if len(pending) >= predictor.batch_size:
            flush()
    if pending:
        flush()
    k = len(predictor.classes)
    out = np.concatenate(logits) if logits else np.zeros((0, k), np.float32)
    return SplitLogits(
        out, np.asarray(owners, np.int64), np.asarray(labels, np.int64), np.asarray(kept, np.int64)
    )


def _conform_image(predictor: Any, chw: np.ndarray) -> np.ndarray:
    """C×H×W uint8 -> the checkpoint's channels and size (a no-op when they match)."""
    spec = predictor.input
    if chw.shape == (spec.channels, *spec.size):
        return chw
    return predictor.prepare_image(chw.transpose(1, 2, 0))


def _conform_clip(predictor: Any, cthw: np.ndarray) -> np.ndarray:
    spec = predictor.input
    if cthw.shape[0] == spec.channels and tuple(cthw.shape[2:]) == tuple(spec.size):
        return cthw
    return predictor.prepare_clip(cthw.transpose(1, 2, 3, 0))


def evaluate(
    predictor: Any, split: Any, top_k: int = 5, clips: int = 1, workers: int = 2
) -> EvalReport:
    """Evaluate ``predictor`` on ``split``: an EvalReport with every metric.

    Image models: one prediction per image. Clip models: ``clips`` windows per
    video whose probabilities are averaged into the video's prediction; the
    report's main numbers are per video, and ``video`` adds ``clip_accuracy``
    (every window judged alone) and ``video_accuracy``.
    """
    result = split_logits(predictor, split, clips=clips, workers=workers)
    classes = predictor.classes
    if not predictor.is_video_model:
        report = compute_report(result.logits, result.labels, classes, top_k)
        report.index = result.index
        return report
    clip_labels = result.labels[result.sample]
    clip_pred = result.logits.argmax(axis=1) if len(result.logits) else clip_labels
    clip_acc = float((clip_pred == clip_labels).mean()) if len(clip_labels) else float("nan")
    video_acc, mean_probs = video_level_accuracy(result.logits, result.sample, result.labels)
    # log of the averaged probabilities: softmax of it gives them back, so the loss is
    # the video-level cross-entropy and every other metric is per video.
    report = compute_report(np.log(np.maximum(mean_probs, 1e-12)), result.labels, classes, top_k)
    report.index = result.index
    report.video = {
        "clips_per_video": clips,
        "clip_accuracy": clip_acc,
        "video_accuracy": video_acc,
    }
    return report


# ---------------------------------------------------------------------------
# which data to evaluate on
# ---------------------------------------------------------------------------


@dataclass
class EvalData:
    """A dataset split chosen for eval: its name, the split, samples and their ids."""

    dataset: str
    split: str
    data: Any  # TensorSplit or a map-style dataset of (uint8 tensor, label)
    classes: list[str]
    ids: list[str]  # file paths where known, else "split[index]"


def _recorded_data_dir(options: dict) -> str | None:
    """The --data-dir training used, when it still exists here (else the usual default)."""
    recorded = options.get("data_dir")
    return str(recorded) if recorded and Path(recorded).is_dir() else None


def _plain_folder(name: str) -> bool:
    """Whether ``name`` is a dataset folder without train/ val/ test/ subfolders."""
    path = Path(name).expanduser()
    if not path.is_dir():
        return False
    from cnnkit.data.folders import scan_folder

    return "all" in scan_folder(path).files


def load_eval_data(
    ckpt: Any,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> EvalData:
    """The samples ``cnnkit eval`` measures.

    - No ``dataset``: the checkpoint's own, loaded the way training loaded it
      (size, frames, validation share and seed from the checkpoint), so the val
      split holds exactly the samples training measured; ``split`` defaults to
      test, else val.
    - A folder without train/ val/ test/ subfolders: every file in it (split
      "all"); ``split`` does not apply.
    - A folder with split subfolders, or a dataset name: ``split`` chooses,
      default test, else val.

    Training's ``--limit`` is never inherited; ``limit`` takes a seeded,
    class-stratified sample of the chosen split. The dataset's classes must be
    the checkpoint's, in the same order (a DatasetError names the differences).
    """
    from cnnkit.data.registry import DatasetRequest, load_dataset, memory_budget_from_env
    from cnnkit.errors import DatasetError

    options = ckpt.meta.options  # cnnkit train keeps its flags here
    spec = ckpt.input
    size = spec.size
    name = dataset or ckpt.dataset
    if not name:
        raise DatasetError(
            f"checkpoint {ckpt.path} does not say which dataset it was trained on",
            hint="give one with --dataset NAME|PATH",
        )
    whole = dataset is not None and _plain_folder(dataset)
    if whole and split is not None:
        raise InputError(
            f"--split {split}: folder {dataset} has no train/ val/ test/ subfolders, so eval "
            "measures every file in it",
            hint="leave out --split, or leave out --dataset to measure training's own splits",
        )
    val_split = options.get("val_split")
    request = DatasetRequest(
        name=str(name),
        data_dir=data_dir or _recorded_data_dir(options),
        img_size=size[0] if size[0] == size[1] else None,
        frames=spec.frames,
        val_split=float(0.1 if val_split is None else val_split),
        seed=int(ckpt.seed if ckpt.seed is not None else 0),
        limit=limit,
        default_size=(size[0], size[1]),
        default_frames=spec.frames or 8,
        memory_budget=memory_budget_from_env(),
        channels=spec.channels if Path(str(name)).expanduser().is_dir() else None,
        whole=whole,
    )
    loaded = load_dataset(request)
    check_classes(list(ckpt.classes), list(loaded.classes), loaded.name)
    if whole:
        split = "all"
    elif split is None:
        split = "test" if "test" in loaded.splits else "val"
    if split not in loaded.splits:
        raise DatasetError(
            f"dataset '{loaded.name}' has no {split} split",
            hint=f"it has: {', '.join(loaded.splits)}; choose one with --split",
        )
    data = loaded.splits[split]
    return EvalData(loaded.name, split, data, list(loaded.classes), _sample_ids(data, split))


def check_classes(expected: list[str], found: list[str], dataset: str) -> None:
    """DatasetError unless ``found`` equals the checkpoint's ``expected`` classes, in order."""
    from cnnkit.errors import DatasetError

    if expected == found:
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if not missing and not extra:
        raise DatasetError(
            f"dataset '{dataset}' has the checkpoint's classes in a different order",
            hint=f"checkpoint order: {', '.join(expected)}",
        )
    parts = []
    if missing:
        parts.append(f"missing from the dataset: {', '.join(missing)}")
    if extra:
        parts.append(f"not known to the checkpoint: {', '.join(extra)}")
    raise DatasetError(
        f"dataset '{dataset}' does not have the checkpoint's classes ({'; '.join(parts)})",
        hint="evaluate on data with the classes the model was trained on",
    )


def _sample_ids(data: Any, split: str) -> list[str]:
    """The file each sample came from, where known; else ``split[index]``."""
    paths = getattr(data, "paths", None)
    if paths is None and hasattr(data, "items") and not isinstance(data, dict):
        paths = [str(p) for p, _ in data.items]  # FileDataset: (path, label) pairs
    if paths is not None and len(paths) == len(data):
        return [str(p) for p in paths]
    return [f"{split}[{i}]" for i in range(len(data))]
