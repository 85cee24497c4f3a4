"""Maps over time: an MP4 of a video with its heat maps, and one record per window or frame.

Each frame of the MP4 is drawn as an image's overlay is (enlarged when small,
the label in a band above it), the band one height for the whole video.

A 3D model is explained window by window, its T frames not overlapping, as
predict classifies them (a video shorter than one window is padded with its
last frame; frames after the last whole window get no map), its map having a
time axis; a 2D model frame by frame, every ``stride``-th frame (the MP4 then
holds those frames, at the frame rate that keeps their timing). Frames are
decoded, explained and written a window or batch at a time, each on its own
thread (cnnkit.io.pipeline), so the three overlap and frame memory stays
flat; the small records wait until the MP4 is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.predict.predictor import Predictor
from cnnkit.saliency.images import batch_maps
from cnnkit.saliency.methods import label_band, overlay, overlay_size, peak

# The label of frames written without a map (a 3D model's frames after its last window).
NO_MAP = "no map"


def explain_video(
    predictor: Predictor,
    path: str,
    out: Path,
    method: str,
    layer: str | None,
    target: int | None,
    alpha: float = 0.5,
    stride: int = 1,
) -> Iterator[dict[str, Any]]:
    """Write ``out`` (an MP4 of ``path`` with its maps); then yield one record per window/frame."""
    from cnnkit.io.pipeline import WriteBehind, decoder_threads, produce_ahead
    from cnnkit.io.video import probe_video
    from cnnkit.io.video_writer import VideoWriter

    info = probe_video(path, check=False)  # its frame rate and size
    fps = info.fps if info.fps and info.fps > 0 else 25.0
    clips = predictor.is_video_model
    size = predictor.input.frames if clips else predictor.batch_size
    step = 1 if clips else stride
    records: list[dict[str, Any]] = []
    # Every frame's picture has one size: the frame enlarged as an image would be,
    # under a band tall enough for any label this video can get.
    classes = predictor.classes if target is None else [predictor.classes[target]]
    band = label_band([NO_MAP, *(f"{c} 0.00" for c in classes)], info.height, info.width)
    height, width = overlay_size(info.height, info.width, band)
    # decode (a thread: the next group of frames) -> maps (here) -> encode (a thread).
    threads = decoder_threads(predictor.cpu_threads(), info.width, info.height)
    groups = produce_ahead(_frame_groups(path, size, step, threads))
    try:
        with (
            VideoWriter(out, fps / step, width, height) as video,
            WriteBehind(video.write) as writer,
        ):
            for raw, indices in groups:
                if len(raw) < size and clips and records:
                    # As predict: a 3D model's last frames that fill no whole window are not
                    # classified (a video shorter than one window is padded instead). They
                    # are written without a map, so the MP4 keeps every frame.
                    blank = np.zeros(raw[0].shape[:2], np.float32)
                    for frame in raw:
                        writer.put(overlay(frame, blank, 0.0, NO_MAP, band=band))
                    continue
                records += _explain_frames(
                    predictor, path, raw, indices, layer, target, method, alpha, writer, out, band
                )
    finally:
        groups.close()
    # Records only once the MP4 is there under its name: an interrupted run names no file.
    yield from records


def _frame_groups(path: str, size: int, step: int, threads: int = 0) -> Iterator[Any]:
    """(frames, their indices) of ``size`` frames, every ``step``-th frame; the last group short.

    Runs on the decode thread of the video pipeline.
    """
    from cnnkit.io.video import iter_frames

    raw: list[Any] = []
    indices: list[int] = []
    for n, frame in enumerate(iter_frames(path, every=step, threads=threads)):
        raw.append(frame)
        indices.append(n * step)
        if len(raw) == size:
            yield raw, indices
            raw, indices = [], []
    if raw:
        yield raw, indices


def _explain_frames(
    predictor: Predictor,
    path: str,
    raw: list[np.ndarray],
    indices: list[int],
    layer: str | None,
    target: int | None,
    method: str,
    alpha: float,
    writer: Any,
    out: Path,
    band: int,
) -> list[dict[str, Any]]:
    """One window (3D model) or batch of frames (2D model): maps, overlay frames, records."""
    clips = predictor.is_video_model
    prepared = [predictor.prepare_image(f) for f in raw]
    if clips:
        frames = predictor.input.frames or len(prepared)
        prepared += [prepared[-1]] * (frames - len(prepared))  # a short last window: padded
        batch = np.stack(prepared, axis=1)[None]  # 1×C×T×H×W
    else:
        batch = np.stack(prepared)  # N×C×H×W
    targets = None if target is None else [target] * len(batch)
    maps, probs = batch_maps(predictor, batch, method, layer, targets)
    h, w = raw[0].shape[:2]
    records = []
    for i in range(len(batch)):
        k = int(probs[i].argmax()) if target is None else target
        label, score = predictor.classes[k], float(probs[i, k])
        heat = maps[i][: len(raw)] if clips else maps[i][None]  # T×H×W, real frames only
        for t in range(len(heat)):
            frame = raw[t] if clips else raw[i]
            writer.put(overlay(frame, heat[t], alpha, f"{label} {score:.2f}", band=band))
        best = int(np.argmax(heat.reshape(len(heat), -1).max(axis=1)))
        records.append(
            {
                "path": str(path),
                "start_frame": indices[0] if clips else indices[i],
                "end_frame": indices[-1] if clips else indices[i],
                "label": label,
                "score": round(score, 6),
                "method": method,
                "layer": layer,
                "output": str(out),
                "peak_frame": indices[best] if clips else indices[i],
                "peak": peak(heat[best], w, h),
            }
        )
    return records
