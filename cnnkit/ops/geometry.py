"""Convolution geometry: per-axis sizes, padding and output size, as torch computes them.

Output size per axis ``floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1``.
``padding="same"`` pads ``d*(k-1)`` in total per axis, ``total // 2`` before and
the rest after, as torch does for even kernels; with a stride above 1 it keeps
that stride-1 padding (torch refuses "same" with strides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnkit.errors import InputError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_AXIS_NAMES = {2: ("height", "width"), 3: ("time", "height", "width")}

Padding = str | int | Sequence[int]


@dataclass(frozen=True)
class AxisGeometry:
    """One axis of a convolution: sizes, padding before/after, and the output size."""

    name: str
    size: int
    kernel: int
    stride: int
    dilation: int
    pad_before: int
    pad_after: int
    out: int

    @property
    def reach(self) -> int:
        """How many input positions one output position spans: d*(k-1) + 1."""
        return self.dilation * (self.kernel - 1) + 1

    def formula(self) -> str:
        """The output-size formula with this axis' numbers filled in."""
        if self.pad_before == self.pad_after:
            pad = f"2·{self.pad_before}"
        else:
            pad = f"{self.pad_before} + {self.pad_after}"
        return (
            f"{self.name}: floor(({self.size} + {pad} - {self.dilation}·({self.kernel}-1) - 1)"
            f" / {self.stride}) + 1 = {self.out}"
        )


def _per_axis(value: int | Sequence[int], ndim: int, what: str, minimum: int) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim:
        raise InputError(
            f"{what} {','.join(map(str, values))} has {len(values)} values for a {ndim}D kernel",
            hint=f"give one value, or {ndim} separated by commas",
        )
    for v in values:
        if int(v) != v or v < minimum:
            raise InputError(
                f"{what} must be a whole number >= {minimum}, got {v}",
                hint=f"use {what} {max(minimum, 1)}" if v < minimum else None,
            )
    return tuple(int(v) for v in values)


def resolve_geometry(
    spatial_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    dilation: int | Sequence[int] = 1,
) -> tuple[AxisGeometry, ...]:
    """Per-axis sizes, padding and output size; refuses zero strides and empty outputs.

    ``spatial_shape`` and ``kernel_shape`` are (H, W) or (T, H, W).
    """
    ndim = len(kernel_shape)
    strides = _per_axis(stride, ndim, "stride", 1)
    dilations = _per_axis(dilation, ndim, "dilation", 1)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in ("same", "valid"):
            raise InputError(f"unknown padding '{padding}'", hint="use same, valid or N")
        pads = []
        for k, d in zip(kernel_shape, dilations, strict=False):
            total = d * (k - 1) if mode == "same" else 0
            pads.append((total // 2, total - total // 2))
    else:
        pads = [(p, p) for p in _per_axis(padding, ndim, "padding", 0)]
    axes = []
    for name, n, k, s, d, (lo, hi) in zip(
        _AXIS_NAMES[ndim], spatial_shape, kernel_shape, strides, dilations, pads, strict=False
    ):
        span = n + lo + hi - d * (k - 1) - 1
        out = span // s + 1 if span >= 0 else 0
        axis = AxisGeometry(name, int(n), int(k), s, d, lo, hi, out)
        if out < 1:
            raise InputError(
                f"output would be empty: {axis.formula()}",
                hint=f"the dilated kernel spans {axis.reach} positions but the padded {name} "
                f"is {n + lo + hi}; use more padding, a smaller kernel or dilation",
            )
        axes.append(axis)
    return tuple(axes)


def output_shape(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = "same",
    dilation: int | Sequence[int] = 1,
) -> tuple[int, ...]:
    """The result's shape for an input of ``input_shape`` (H×W[×C] or T×H×W[×C]).

    Axes after the kernel's (colour channels) are kept as they are.
    """
    ndim = len(kernel_shape)
    axes = resolve_geometry(input_shape[:ndim], kernel_shape, stride, padding, dilation)
    return tuple(a.out for a in axes) + tuple(input_shape[ndim:])


def check_padding_fits(axes: Sequence[AxisGeometry], mode: str) -> None:
    """Refuse reflect/circular padding wider than the input, as torch does."""
    for a in axes:
        widest = max(a.pad_before, a.pad_after)
        if mode == "reflect" and widest >= a.size:
            raise InputError(
                f"reflect padding of {widest} needs a {a.name} above {widest}, "
                f"but the input's {a.name} is {a.size}",
                hint="use --padding-mode replicate or zeros, or less padding",
            )
        if mode == "circular" and widest > a.size:
            raise InputError(
                f"circular padding of {widest} is wider than the input's {a.name} {a.size}",
                hint="use --padding-mode replicate or zeros, or less padding",
            )


def padded_shape(axes: Sequence[AxisGeometry], tail: Sequence[int]) -> tuple[int, ...]:
    return tuple(a.size + a.pad_before + a.pad_after for a in axes) + tuple(tail)
