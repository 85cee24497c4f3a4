"""Classify a video over time: windows of frames (3D models) or frames (2D models).

Decoding runs ahead on a thread of its own (cnnkit.io.pipeline): it decodes,
prepares and stacks the next batch of frames or windows while the model runs
on this one. Windows follow ``cnnkit.data.clips``.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from cnnkit.data.clips import sliding_windows
from cnnkit.errors import InputError
from cnnkit.evaluation.metrics import softmax
from cnnkit.predict.predictor import Predictor, Record


def predict_video(
    predictor: Predictor,
    path: str,
    top_k: int = 5,
    window: int | None = None,
    stride: int | None = None,
) -> Iterator[list[Record]]:
    """Classify a video over time; yield lists of records as batches finish.

    3D model: one record per window of ``window`` frames (default the
    checkpoint's T) every ``stride`` frames (default: the window, so windows do
    not overlap), with ``start_frame``, ``end_frame`` (inclusive), ``start_s``
    and ``end_s``; 2D model: one record per frame every ``stride`` frames
    (default 1) with ``frame`` and ``time_s``. Both end with a whole-video record,
    ``"window": "video"``, whose scores are the mean of the window/frame scores.

    Decoding runs ahead on a thread of its own (cnnkit.io.pipeline): it
    decodes, prepares and stacks the next batch of frames or windows while the
    model runs on this one, so the two overlap; a batch or two is in memory,
    whatever the video's length.
    """
    from cnnkit.io.video import probe_video

    info = probe_video(path, check=False)  # only its frame rate is used
    fps = info.fps if info.fps and info.fps > 0 else 0.0
    if predictor.is_video_model:
        window = window or predictor.input.frames
        stride = stride or window
    else:
        window, stride = 1, stride or 1
    if window < 1 or stride < 1:
        raise InputError(f"--window and --stride must be at least 1 (got {window}, {stride})")
    predictor.check_window(window)
    from cnnkit.io.pipeline import decoder_threads, produce_ahead

    # decode and prepare (a thread) -> model and records (here). The model stays on
    # the caller's thread: in a thread started for the video, torch ran the same
    # batches 25-35% slower (per-thread caches warming up again for every video).
    threads = decoder_threads(predictor.cpu_threads(), info.width, info.height)
    batches = produce_ahead(_video_batches(predictor, path, window, stride, threads))
    try:
        yield from _video_records(predictor, path, batches, fps, window, top_k)
    finally:
        # Stop the decode thread now rather than when the generator is collected:
        # a consumer that stops early (`| head -1`) must not exit under a running decoder.
        batches.close()


_Span = tuple[int, int]  # a window's first and last frame (inclusive)


def _video_batches(
    predictor: Predictor, path: str, window: int, stride: int, threads: int = 0
) -> Iterator[tuple[list[_Span], np.ndarray]]:
    """(spans, uint8 batch) of up to batch_size windows: N×C×H×W frames or N×C×T×H×W clips.

    Runs on the decode thread. A 2D model's frames between strides are
    decoded but never converted or resized; a 3D model's windows are stacked
    straight into the batch from the last ``window`` prepared frames.
    ``threads``: FFmpeg's decoding threads (see decoder_threads).
    """
    from cnnkit.io.video import iter_frames

    clips = predictor.is_video_model
    size = tuple(predictor.input.size)
    channels = predictor.input.channels
    sample = (channels, window, *size) if clips else (channels, *size)
    limit = predictor.batch_size
    batch = np.empty((limit, *sample), np.uint8)
    spans: list[_Span] = []
    if clips:
        decoded = iter_frames(path, rgb=False, threads=threads)
        frames = (predictor.prepare_frame(f) for f in decoded)
        for start, end, taken in sliding_windows(frames, window, stride):
            np.stack(taken, axis=1, out=batch[len(spans)])
            spans.append((start, end))
            if len(spans) == limit:
                yield spans, batch
                batch, spans = np.empty_like(batch), []
    elif channels not in (1, 3):  # not a model cnnkit trains: the general path
        for index, frame in enumerate(iter_frames(path, rgb=False, every=stride, threads=threads)):
            predictor.prepare_frame(frame, out=batch[len(spans)])
            spans.append((index * stride, index * stride))
            if len(spans) == limit:
                yield spans, batch
                batch, spans = np.empty_like(batch), []
    else:
        yield from _frame_batches(predictor, path, stride, threads)
        return
    if spans:
        yield spans, batch[: len(spans)]


def _frame_batches(
    predictor: Predictor, path: str, stride: int, threads: int = 0
) -> Iterator[tuple[list[_Span], np.ndarray]]:
    """_video_batches for a 2D model of 1 or 3 channels: the per-frame work is two C calls.

    Each frame is resized straight into an H×W×C batch (OpenCV releases the
    GIL there), which becomes the N×C×H×W batch in RGB order by one copy: the
    same bits as Predictor.prepare_frame frame by frame, with little Python
    per frame to hold the GIL while the model runs on the other thread.
    """
    from cnnkit.io.video import iter_frames

    channels = predictor.input.channels
    height, width = (int(n) for n in predictor.input.size)
    limit = predictor.batch_size
    hwc = np.empty((limit, height, width, 3) if channels == 3 else (limit, height, width), np.uint8)
    spans: list[_Span] = []
    for index, frame in enumerate(iter_frames(path, rgb=False, every=stride, threads=threads)):
        if channels == 1:
            predictor.note_channels(frame)
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        _resize_into(frame, hwc[len(spans)])
        spans.append((index * stride, index * stride))
        if len(spans) == limit:
            yield spans, _to_nchw(hwc, channels)
            spans = []
    if spans:
        yield spans, _to_nchw(hwc[: len(spans)], channels)


def _resize_into(image: np.ndarray, out: np.ndarray) -> None:
    """preprocess.fit_size into ``out``: area averaging to shrink, bilinear to grow."""
    h, w = out.shape[:2]
    if image.shape[:2] == (h, w):
        out[...] = image
        return
    shrinking = image.shape[0] * image.shape[1] > h * w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    cv2.resize(image, (w, h), dst=out, interpolation=interp)


def _to_nchw(hwc: np.ndarray, channels: int) -> np.ndarray:
    """N×H×W×3 BGR (or N×H×W gray) -> a new N×C×H×W array, RGB order.

    Always a copy (``hwc`` is refilled for the next batch while this one is in use).
    """
    if channels == 1:
        return hwc[:, None].copy()
    return hwc[..., ::-1].transpose(0, 3, 1, 2).copy(order="C")


def _video_records(
    predictor: Predictor,
    path: str,
    batches: Iterator[tuple[list[_Span], np.ndarray]],
    fps: float,
    window: int,
    top_k: int,
) -> Iterator[list[Record]]:
    """predict_video's records from prepared batches, a batch at a time, then the summary."""
    clips = predictor.is_video_model
    total = np.zeros(len(predictor.classes))
    count = 0
    last_frame = -1
    for spans, batch in batches:
        for start, end in spans:
            if clips and end - start + 1 < window:
                predictor.note_once(
                    "padded",
                    f"videos shorter than the {window}-frame window are padded by repeating "
                    f"their last frame ({path}: {end - start + 1} frames)",
                )
        probs = softmax(predictor.logits(batch))
        records = [_time_fields(path, start, end, fps, clips) for start, end in spans]
        for record, result in zip(records, predictor.label_scores(probs, top_k), strict=True):
            record.update(result)
        total += probs.sum(axis=0)
        count += len(spans)
        last_frame = max(last_frame, max(end for _, end in spans))
        yield records
    if count == 0:
        raise InputError(f"{path}: the video has no frames that could be decoded")
    summary: Record = {"path": str(path), "window": "video", "start_frame": 0}
    summary["end_frame"] = last_frame
    summary["start_s"] = 0.0
    summary["end_s"] = round((last_frame + 1) / fps, 4) if fps else None
    summary["windows"] = count
    summary.update(predictor.label_scores((total / count)[None, :], top_k)[0])
    yield [summary]


def _time_fields(path: str, start: int, end: int, fps: float, clips: bool) -> Record:
    def sec(frame: int) -> float | None:
        return round(frame / fps, 4) if fps else None

    if clips:
        return {
            "path": str(path),
            "start_frame": start,
            "end_frame": end,
            "start_s": sec(start),
            "end_s": sec(end + 1),
        }
    return {"path": str(path), "frame": start, "time_s": sec(start)}
