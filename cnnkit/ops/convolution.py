"""convolve() and explain(): what a Conv2d/Conv3d layer computes, on numpy arrays.

Semantics are exactly those of ``torch.nn.Conv2d``/``Conv3d`` with one input and
one output channel applied to each colour channel: cross-correlation (no flip),
output sizes per :mod:`cnnkit.ops.geometry`, padding modes zeros/reflect/
replicate/circular as in ``torch.nn.functional.pad``. 2D kernels run on one
frame (:mod:`cnnkit.ops.conv2d`), 3D kernels over frames
(:mod:`cnnkit.ops.conv3d`), after the checks of :mod:`cnnkit.ops.limits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cnnkit.errors import InputError, KernelError
from cnnkit.kernels import Kernel, kernel_from_array, parse_kernel
from cnnkit.ops.conv2d import correlate_kernel
from cnnkit.ops.conv3d import convolve_frames
from cnnkit.ops.geometry import (
    PADDING_MODES,
    AxisGeometry,
    Padding,
    check_padding_fits,
    resolve_geometry,
)
from cnnkit.ops.limits import check_convolution_memory, check_result_range


def as_kernel(kernel: Kernel | str | np.ndarray) -> Kernel:
    """Accept a Kernel, a kernel spec string, or a 2D/3D weight array."""
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return parse_kernel(kernel)
    return kernel_from_array(np.asarray(kernel))


def _check_input(x: np.ndarray, kernel: Kernel) -> None:
    if x.ndim not in (kernel.ndim, kernel.ndim + 1):
        wanted = "H×W or H×W×C" if kernel.ndim == 2 else "T×H×W or T×H×W×C"
        raise InputError(
            f"a {kernel.ndim}D kernel needs a {wanted} input, got shape {x.shape}",
            hint="3D kernels need a video; apply 2D kernels to images or single frames"
            if kernel.ndim == 3
            else "pass one frame at a time",
        )
    if x.size == 0:
        raise InputError(f"the input is empty (shape {x.shape})", hint="give a non-empty array")


def convolve(
    x: np.ndarray,
    kernel: Kernel | str | np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    padding_mode: str = "reflect",
    dilation: int | Sequence[int] = 1,
    flip: bool = False,
    method: str = "auto",
) -> np.ndarray:
    """Cross-correlate ``x`` with ``kernel`` exactly as Conv2d/Conv3d would.

    Args:
        x: H×W or H×W×C for a 2D kernel, T×H×W or T×H×W×C for a 3D kernel; any
            numeric dtype, values used as stored (0-255 stays 0-255). Channels
            are filtered independently.
        kernel: a Kernel, a spec string (``"sobel-x"``, ``"1,0,-1"``) or an array.
        stride, dilation: one int or one per kernel axis.
        padding: ``"same"``, ``"valid"``, an int or one int per kernel axis.
        padding_mode: zeros, reflect, replicate or circular.
        flip: flip the kernel on every axis first (true convolution).
        method: ``"auto"``; ``"opencv"`` or ``"numpy"`` force a path (for tests).

    Returns:
        float32 array H'×W'[×C] or T'×H'×W'[×C], sizes per :func:`output_shape`
        (with explicit padding, a view that skips filter2D's last k-1 rows and
        columns rather than a copy of the whole result).

    Raises:
        KernelError: the result could overflow float32 on this input's range.
        InputError: bad geometry, or a result that would not fit in memory.
    """
    kernel = as_kernel(kernel)
    if flip:
        kernel = kernel.flipped()
    if padding_mode not in PADDING_MODES:
        raise InputError(
            f"unknown padding mode '{padding_mode}'", hint=f"use one of {', '.join(PADDING_MODES)}"
        )
    x = np.asarray(x)
    _check_input(x, kernel)
    axes = resolve_geometry(x.shape[: kernel.ndim], kernel.shape, stride, padding, dilation)
    check_padding_fits(axes, padding_mode)
    check_result_range(kernel, x)
    if kernel.ndim == 2:
        gh, gw = axes
        check_convolution_memory(x.shape, x.dtype, kernel, axes, padding_mode, method)
        return correlate_kernel(x, kernel, gh, gw, padding_mode, method)
    check_convolution_memory(
        x.shape[1:], x.dtype, kernel, axes, padding_mode, method, x.shape[0], whole_result=True
    )
    out_shape = tuple(a.out for a in axes) + x.shape[3:]
    out = np.empty(out_shape, np.float32)  # filled frame by frame: no list, then a stacked copy
    for t, frame in enumerate(convolve_frames(x, x.shape[0], kernel, axes, padding_mode, method)):
        out[t] = frame
    return out


# ---------------------------------------------------------------------------
# --explain
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """What --explain shows: the kernel, the shapes, and the size formula per axis."""

    kernel: Kernel
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    padding_mode: str
    axes: tuple[AxisGeometry, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "kernel": self.kernel.name,
            "kernel_shape": list(self.kernel.shape),
            "combine": self.kernel.combine,
            "weights": [c.tolist() for c in self.kernel.components],
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "padding_mode": self.padding_mode,
            "axes": [
                {
                    "axis": a.name,
                    "size": a.size,
                    "kernel": a.kernel,
                    "stride": a.stride,
                    "dilation": a.dilation,
                    "padding": [a.pad_before, a.pad_after],
                    "out": a.out,
                    "formula": a.formula(),
                }
                for a in self.axes
            ],
        }


def explain(
    input_shape: Sequence[int],
    kernel: Kernel | str | np.ndarray,
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    padding_mode: str = "reflect",
    dilation: int | Sequence[int] = 1,
    flip: bool = False,
) -> Explanation:
    """Describe the convolution of an input of ``input_shape`` without computing it."""
    kernel = as_kernel(kernel)
    if flip:
        kernel = kernel.flipped()
    if len(input_shape) < kernel.ndim:
        raise KernelError(
            f"a {kernel.ndim}D kernel cannot slide over an input of shape {tuple(input_shape)}",
            hint="3D kernels need a video",
        )
    axes = resolve_geometry(input_shape[: kernel.ndim], kernel.shape, stride, padding, dilation)
    check_padding_fits(axes, padding_mode)
    out = tuple(a.out for a in axes) + tuple(input_shape[kernel.ndim :])
    return Explanation(kernel, tuple(int(n) for n in input_shape), out, padding_mode, axes)
