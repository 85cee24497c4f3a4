"""Kernels as text, for --explain and --list-kernels."""

from __future__ import annotations

import numpy as np

from cnnkit.kernels.kernel import Kernel

# ---------------------------------------------------------------------------
# text form, for --explain and --list-kernels
# ---------------------------------------------------------------------------


def _format_value(value: float, integers: bool) -> str:
    if integers:
        return str(int(value))
    text = f"{value:.4g}"
    return "0" if text in ("0", "-0") else text


def format_matrix(weights: np.ndarray) -> str:
    """A 2D or 3D weight array as right-aligned rows; 3D slice by slice (``t=0:`` ...)."""
    integers = bool(np.all(weights == np.round(weights)))
    cells = np.vectorize(lambda v: _format_value(v, integers), otypes=[object])(weights)
    width = max(len(c) for c in cells.ravel())

    def rows(plane: np.ndarray) -> list[str]:
        return ["  ".join(c.rjust(width) for c in row) for row in plane]

    if weights.ndim == 2:
        return "\n".join(rows(cells))
    lines = []
    for t, plane in enumerate(cells):
        lines.append(f"t={t}:")
        lines.extend("  " + r for r in rows(plane))
    return "\n".join(lines)


def format_kernel(kernel: Kernel) -> str:
    """The kernel's matrix, or for a magnitude kernel both components and the rule."""
    if not kernel.is_magnitude:
        return format_matrix(kernel.weights)
    parts = [
        f"g{axis}:\n{format_matrix(c)}" for axis, c in zip("xy", kernel.components, strict=False)
    ]
    return "\n".join(parts) + "\nresult = sqrt(gx² + gy²)"
