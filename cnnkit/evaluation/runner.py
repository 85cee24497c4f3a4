"""Running a model over a dataset split: logits per image or per clip window, then the report.

``cnnkit eval`` and training's final measurement both use ``evaluate``, so
eval of a run's best.ckpt repeats the numbers training printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnkit import console
from cnnkit.data.clips import frame_index, spread_starts
from cnnkit.evaluation.metrics import EvalReport, compute_report, video_level_accuracy
from cnnkit.io.readahead import map_ahead


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

    ``split`` is a ``Split`` (``x`` uint8 N×C×H×W or N×C×L×H×W with
    ``lengths``) or a map-style dataset yielding (uint8 array or tensor, label), as
    ``cnnkit.data`` builds them. Samples whose size or channel count differs
    from the checkpoint's are converted with the same preprocessing as predict.
    For clip models every stored video gives ``clips`` windows (see
    ``cnnkit.data.clips.spread_starts``); a clip read from a file is one window.
    """
    x = getattr(split, "x", None)
    n = len(split)
    # A Split stores whole videos with their real lengths; a map-style
    # dataset (FileDataset) hands out clips already cut to the model's frames.
    lengths = getattr(split, "lengths", None) if x is not None else None

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

    loaded = map_ahead(sample, range(n), workers=workers, ahead=4 * predictor.batch_size, chunk=16)
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
            for start in spread_starts(length, frames, clips):
                window = data[:, frame_index(start, frames, length)]  # C×T×H×W
                pending.append(_conform_clip(predictor, window))
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
    predictor: Any,
    split: Any,
    top_k: int = 5,
    clips: int = 1,
    workers: int = 2,
    label_map: Any = None,
) -> EvalReport:
    """Evaluate ``predictor`` on ``split``: an EvalReport with every metric.

    Image models: one prediction per image. Clip models: ``clips`` windows per
    video whose probabilities are averaged into the video's prediction; the
    report's main numbers are per video, and ``video`` adds ``clip_accuracy``
    (every window judged alone) and ``video_accuracy``.
    """
    result = split_logits(predictor, split, clips=clips, workers=workers)
    if label_map is not None:
        # The data's classes are some of the model's: its labels become the model's indices.
        result.labels = np.asarray(label_map, dtype=np.int64)[result.labels]
    classes = predictor.classes
    if not predictor.is_video_model:
        report = compute_report(result.logits, result.labels, classes, top_k)
        report.index = result.index
        if label_map is not None:
            report.show_seen_classes()
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
    if label_map is not None:
        report.show_seen_classes()
    return report
