"""A decoded dataset split: numpy arrays in memory, the one form every caller shares.

Training gathers its batches from a ``Split`` through torch views of the same
memory (``cnnkit.data.memory``); an exported (ONNX) model is evaluated from it
where torch is not installed. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _ready(a: Any, dtype: Any) -> np.ndarray:
    """``a`` as a C-contiguous, writable array of ``dtype``: copied only when it is not one.

    torch.from_numpy shares such an array without a copy, and warns on a read-only one.
    """
    return np.require(a, dtype=dtype, requirements=["C_CONTIGUOUS", "WRITEABLE"])


@dataclass
class Split:
    """One split of a dataset, decoded.

    ``x``: uint8 images (N, C, H, W), or clips (N, C, L, H, W) where ``L`` is
    the number of stored frames per video (shorter videos are padded with
    their last frame and ``lengths`` (N,) int64 says how many are real).
    ``y``: int64 labels (N,). ``frames``: the clip length T a batch gets;
    ``None`` for images. ``paths``: the file each sample was decoded from,
    when it came from files.
    """

    x: np.ndarray
    y: np.ndarray
    frames: int | None = None
    lengths: np.ndarray | None = None
    paths: list[str] | None = None

    def __post_init__(self) -> None:
        self.x = _ready(self.x, None)
        self.y = _ready(self.y, np.int64)
        if self.lengths is not None:
            self.lengths = _ready(self.lengths, np.int64)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: Any) -> Split:
        """The samples at ``index`` (1-D integers, in that order), as a new split (copies)."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index] if self.lengths is not None else None
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return Split(self.x[index], self.y[index], self.frames, lengths, paths)


def channel_stats(x: Any, max_samples: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 images/clips (N, C, ...).

    The one computation for every split, numpy or torch (a CPU tensor is read
    without a copy), so that training and a torch-free evaluation give the
    same numbers. On at most ``max_samples`` evenly spaced samples (it only
    sets the normalisation, so a subset is plenty); sample std (n - 1) in
    float64, rounded to 4 places. uint8 pixels are counted per level (256
    counts a channel) rather than converted to floats: the same numbers, a
    tenth of the time and no float copy of the data.
    """
    x = x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else np.asarray(x)
    n = x.shape[0]
    step = max(1, n // max_samples)
    sample = x[::step]
    if sample.dtype == np.uint8 and sample.size:
        levels = np.arange(256, dtype=np.float64) / 255.0
        means, stds = [], []
        for c in range(sample.shape[1]):
            counts = _level_counts(sample[:, c].reshape(len(sample), -1))
            total = counts.sum()
            mean = float(counts @ levels / total)
            var = float(counts @ (levels - mean) ** 2 / max(total - 1, 1))
            means.append(mean)
            stds.append(max(var**0.5, 1e-3))
        return [round(v, 4) for v in means], [round(v, 4) for v in stds]
    values = sample.astype(np.float32) / np.float32(255.0)  # wider pixels, or no pixels
    values = np.moveaxis(values, 1, 0).reshape(x.shape[1], -1)
    mean = values.mean(axis=1, dtype=np.float64)
    std = np.maximum(values.std(axis=1, ddof=1, dtype=np.float64), 1e-3)
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


# OpenCV counts in float32, exact up to 2**24: each call counts fewer pixels than that.
_EXACT_COUNT = 1 << 24


def _level_counts(pixels: np.ndarray) -> np.ndarray:
    """How many of ``pixels`` (N×P uint8) hold each of the 256 levels, as float64."""
    from cnnkit.io._opencv import cv2

    rows = max(1, _EXACT_COUNT // max(1, pixels.shape[1]))
    counts = np.zeros(256, np.float64)
    for start in range(0, len(pixels), rows):
        chunk = np.ascontiguousarray(pixels[start : start + rows])
        if chunk.shape[1] >= _EXACT_COUNT:  # one sample larger than that: count it in numpy
            counts += np.bincount(chunk.reshape(-1), minlength=256)
            continue
        counts += cv2.calcHist([chunk], [0], None, [256], [0, 256]).ravel()
    return counts
