"""Decoded splits as numpy arrays, for callers that run without torch.

An exported (ONNX) model is evaluated on machines where torch is not
installed: folder datasets are then decoded into ``ArraySplit`` instead of
``TensorSplit`` (``DatasetRequest(numpy=True)``). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ArraySplit:
    """One split of a dataset, decoded: ``TensorSplit``'s attributes as numpy arrays.

    ``x``: uint8 images (N, C, H, W), or clips (N, C, L, H, W) where ``L`` is
    the number of stored frames per video (shorter videos are padded with
    their last frame and ``lengths`` says how many are real). ``y``: int64
    labels (N,). ``frames``: the clip length T; ``None`` for images.
    ``paths``: the file each sample was decoded from.
    """

    x: np.ndarray
    y: np.ndarray
    frames: int | None = None
    lengths: np.ndarray | None = None
    paths: list[str] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


def channel_stats(x: Any, max_samples: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 images/clips (N, C, ...).

    The one computation for every split, numpy or torch (a CPU tensor is read
    without a copy), so that training and a torch-free evaluation give the
    same numbers. On at most ``max_samples`` evenly spaced samples (it only
    sets the normalisation, so a subset is plenty); sample std (n - 1), sums in
    float64, rounded to 4 places.
    """
    x = x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else np.asarray(x)
    n = x.shape[0]
    step = max(1, n // max_samples)
    sample = x[::step].astype(np.float32) / np.float32(255.0)
    sample = np.moveaxis(sample, 1, 0).reshape(x.shape[1], -1)
    mean = sample.mean(axis=1, dtype=np.float64)
    std = np.maximum(sample.std(axis=1, ddof=1, dtype=np.float64), 1e-3)
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]
