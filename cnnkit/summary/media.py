"""The facts ``cnnkit inspect`` shows for an image or a video file.

An image shows its size, channels, dtype, range, per-channel mean and std, and
a block of raw values (the "an image is a matrix of numbers" view); a video its
frames, fps, size, duration and codec. This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

PIXEL_BLOCK = 8  # the raw-value block shown for images: 8x8 pixels around the centre


def _channel_order(channels: int) -> str:
    return {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels")


# Rows of an image converted to float64 at a time for its statistics: about 1 M
# values (8 MB), so inspect's peak stays near the decoded image's own size.
_STATS_CHUNK_VALUES = 1 << 20


def channel_stats(image: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of H×W or H×W×C pixels.

    Computed over row chunks in float64, mean first and then the squared
    deviations from it (stable for float images too), so no float64 copy of
    the whole image is ever made.
    """
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    rows = max(1, _STATS_CHUNK_VALUES // max(1, w * channels))
    count = h * w

    def chunks() -> Iterator[np.ndarray]:
        for r in range(0, h, rows):
            yield image[r : r + rows].reshape(-1, channels).astype(np.float64)

    total = np.zeros(channels)
    for chunk in chunks():
        total += chunk.sum(axis=0)
    mean = total / count
    squares = np.zeros(channels)
    for chunk in chunks():
        chunk -= mean
        squares += np.einsum("ij,ij->j", chunk, chunk)
    return mean.tolist(), np.sqrt(squares / count).tolist()


def _number(value: Any, floating: bool) -> int | float:
    return float(value) if floating else int(value)


def summarize_image(path: str | Path) -> dict[str, Any]:
    """Facts of an image file: size, channels, dtype, range, per-channel mean/std.

    ``pixels`` holds a block of up to 8x8 raw values around the centre (H×W for
    gray, H×W×C otherwise), the "an image is a matrix of numbers" view. Float
    images keep float min/max and pixel values; integer images give integers.
    """
    from cnnkit.io.image import read_image

    # OpenCV's BGR order is kept (an RGB copy would double the peak memory of a
    # large image); per-channel figures are put in RGB order below.
    image = read_image(path, rgb=False)
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    order = [2, 1, 0, 3][:channels] if channels in (3, 4) else list(range(channels))
    floating = bool(np.issubdtype(image.dtype, np.floating))
    mean, std = channel_stats(image)
    y0 = max(0, h // 2 - PIXEL_BLOCK // 2)
    x0 = max(0, w // 2 - PIXEL_BLOCK // 2)
    block = image[y0 : y0 + PIXEL_BLOCK, x0 : x0 + PIXEL_BLOCK]
    if block.ndim == 3:
        block = block[:, :, order]
    return {
        "kind": "image",
        "path": str(path),
        "width": int(w),
        "height": int(h),
        "channels": int(channels),
        "channel_order": _channel_order(channels),
        "dtype": str(image.dtype),
        "min": _number(image.min(), floating),
        "max": _number(image.max(), floating),
        "mean": [round(mean[c], 4) for c in order],
        "std": [round(std[c], 4) for c in order],
        "pixels": {"x": int(x0), "y": int(y0), "values": block.tolist()},
    }


def summarize_video(path: str | Path) -> dict[str, Any]:
    """Facts of a video file: frames, fps, size, duration in seconds, codec."""
    from cnnkit.io.video import probe_video

    info = probe_video(path)
    return {
        "kind": "video",
        "path": str(path),
        "frames": int(info.frames),
        "fps": float(info.fps),
        "width": int(info.width),
        "height": int(info.height),
        "duration_s": None if info.duration_s is None else float(info.duration_s),
        "codec": info.codec,
    }
