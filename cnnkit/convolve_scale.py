"""How ``cnnkit convolve`` turns a float32 result into 8-bit pixels (``--scale``).

``.npy`` outputs keep the raw float32 result; image and video formats store
8-bit pixels according to ``scale``:

- ``clip``: values outside the input's range are clipped (0-255 for 8-bit
  input; 16-bit input is mapped from 0-65535 down to 0-255);
- ``abs``: absolute value, then as clip (OpenCV's convertScaleAbs look);
- ``minmax``: the result's own min..max stretched to 0..255 for an image. A
  video uses the range the kernel can produce from the input's range instead,
  so that brightness does not flicker from frame to frame;
- ``auto``: clip for kernels whose weights are all >= 0 (blurs) or sum to 1
  (sharpen, emboss: their result is an image), abs for gradient magnitudes
  (sobel, scharr, prewitt), minmax for other signed kernels (derivatives,
  laplacian, log, outline, temporal-diff), whose negative half matters.

Float images (32-bit TIFFs) hold 0-1 by convention: their 8-bit outputs map
1.0 to 255. This module never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cnnkit.kernels import Kernel


def auto_scale(kernel: Kernel) -> str:
    """The --scale that shows a kernel's result best (see the module docstring)."""
    if kernel.is_magnitude:
        return "abs"
    if kernel.nonnegative or math.isclose(float(kernel.weights.sum()), 1.0, abs_tol=1e-6):
        return "clip"
    return "minmax"


def value_range(dtype: np.dtype) -> float:
    """The largest pixel value of an input dtype: 255, 65535, or 1.0 for float images."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def result_to_pixels(
    result: np.ndarray, scale: str, in_max: float, bounds: tuple[float, float] | None = None
) -> np.ndarray:
    """Map a float32 result to 8-bit pixels per ``scale`` (not 'auto'; resolve it first).

    ``bounds`` (low, high) replaces the result's own min/max for ``minmax``.
    ``result`` is overwritten (it is usually 25 MB for a colour 1080p frame, and
    in-place arithmetic keeps this step a few milliseconds).
    """
    if scale == "minmax":
        low, high = bounds if bounds is not None else (float(result.min()), float(result.max()))
        if high <= low:
            return np.zeros(result.shape, np.uint8)
        result -= low
        result *= 255.0 / (high - low)
    else:
        if scale == "abs":
            np.abs(result, out=result)
        if in_max != 255.0:
            result *= 255.0 / in_max
    np.clip(result, 0, 255, out=result)
    # +0.5 then truncation rounds like OpenCV's saturate_cast for these >= 0 values.
    result += 0.5
    return result.astype(np.uint8)


@dataclass
class Stats:
    """Running min/max/mean over the frames of a result."""

    min: float = math.inf
    max: float = -math.inf
    total: float = 0.0
    count: int = 0

    def add(self, values: np.ndarray) -> None:
        self.add_parts(*self.parts(values))

    @staticmethod
    def parts(values: np.ndarray) -> tuple[float, float, float, int]:
        """(min, max, sum, count) of one frame: computed where the frame is, added in order."""
        return (
            float(values.min()),
            float(values.max()),
            float(values.sum(dtype=np.float64)),
            int(values.size),
        )

    def add_parts(self, low: float, high: float, total: float, count: int) -> None:
        self.min = min(self.min, low)
        self.max = max(self.max, high)
        self.total += total
        self.count += count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0
