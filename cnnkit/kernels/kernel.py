"""A kernel: its weights, name and bounds (see cnnkit.kernels)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from cnnkit.errors import KernelError

KERNEL_FILE_EXTENSIONS = (".txt", ".csv", ".npy")

# A kernel larger than this many weights is almost certainly a typo (box:5000),
# and building it would take the memory of a large image.
MAX_KERNEL_WEIGHTS = 1_000_000

# Results are computed and stored in float32: a weight (or a result) beyond this
# becomes inf, and inf - inf becomes NaN, in an output that otherwise looks fine.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Kernel:
    """A convolution kernel: one weight array, or several combined per pixel.

    ``components`` holds one array for a plain kernel. Gradient kernels such as
    ``sobel`` hold two (the x and y derivatives) with ``combine="magnitude"``:
    the result is ``sqrt(gx² + gy²)`` of the two cross-correlations.
    """

    name: str
    components: tuple[np.ndarray, ...]
    combine: str | None = None
    description: str = ""

    @property
    def ndim(self) -> int:
        """2 for (kH, kW) kernels, 3 for (kT, kH, kW) kernels."""
        return self.components[0].ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.components[0].shape)

    @property
    def weights(self) -> np.ndarray:
        """The single weight array; for a magnitude kernel, its first component."""
        return self.components[0]

    @property
    def is_magnitude(self) -> bool:
        return self.combine == "magnitude"

    @property
    def nonnegative(self) -> bool:
        """True when every weight is >= 0 (smoothing kernels): results stay in range."""
        return all(bool((c >= 0).all()) for c in self.components)

    @property
    def slug(self) -> str:
        """A file-name friendly form of the name: ``gaussian:7,1.5`` -> ``gaussian-7-1.5``."""
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", self.name).strip("-.")
        return slug or "kernel"

    def flipped(self) -> Kernel:
        """The kernel flipped on every axis: cross-correlation with it is true convolution."""
        flipped = tuple(np.ascontiguousarray(np.flip(c)) for c in self.components)
        return Kernel(f"{self.name} (flipped)", flipped, self.combine, self.description)

    def largest_result(self, peak: float) -> float:
        """The largest |result| possible for inputs with |value| <= ``peak``.

        For a magnitude kernel this is the largest sum of the squared
        components, the float32 intermediate sqrt(gx² + gy²) is taken of.
        """
        reach = [float(np.abs(c).sum()) * peak for c in self.components]
        if self.is_magnitude:
            return sum(r * r for r in reach)
        return max(reach)

    def check_float32_range(self, peak: float, what: str) -> None:
        """Refuse a kernel whose float32 result could overflow on inputs up to ``peak``.

        ``what`` names the input in the message ("16-bit input").
        """
        if self.largest_result(peak) <= FLOAT32_MAX:
            return
        total = sum(float(np.abs(c).sum()) for c in self.components)
        raise KernelError(
            f"kernel '{self.name}' would overflow float32 on {what}: the sum of |weights| "
            f"({total:.3g}) times the largest input value ({peak:g}) exceeds {FLOAT32_MAX:.3g}",
            hint="scale the kernel's weights down",
        )

    def value_bounds(self, low: float, high: float) -> tuple[float, float]:
        """The smallest and largest result possible for inputs in [low, high]."""
        if self.is_magnitude:
            spans = (max(abs(b) for b in _bounds(c, low, high)) for c in self.components)
            return 0.0, math.sqrt(sum(span**2 for span in spans))
        return _bounds(self.weights, low, high)


def _bounds(w: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The smallest and largest correlation of weights ``w`` with inputs in [low, high]."""
    pos, neg = float(w[w > 0].sum()), float(w[w < 0].sum())
    return pos * low + neg * high, pos * high + neg * low
