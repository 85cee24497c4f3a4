"""Options of ``cnnkit convolve`` on files: sizes per axis, padding, shapes, the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cnnkit import ops
from cnnkit.convolve_scale import Stats
from cnnkit.errors import InputError
from cnnkit.kernels import Kernel

# --stride, --padding and --dilation per axis: far above any image side or video
# length, and low enough that the sizes they imply are numbers a message can show.
MAX_AXIS_VALUE = 1_000_000


def parse_axis_values(text: str, what: str, minimum: int) -> int | tuple[int, ...]:
    """'2' -> 2, '2,1' -> (2, 1); refuses non-integers, values below ``minimum`` and huge ones."""
    parts = [p.strip() for p in str(text).split(",")]
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise InputError(
                f"{what} '{text}' is not a whole number or a comma-separated list of them",
                hint=f"e.g. --{what} 2 or --{what} 2,1",
            ) from None
        if value < minimum:
            raise InputError(
                f"{what} must be >= {minimum}, got {value}", hint=f"use --{what} {max(minimum, 1)}"
            )
        if value > MAX_AXIS_VALUE:
            raise InputError(
                f"{what} {value} is too large (at most {MAX_AXIS_VALUE:,})",
                hint=f"use a smaller --{what}",
            )
        values.append(value)
    return values[0] if len(values) == 1 else tuple(values)


def parse_padding(text: str) -> str | int | tuple[int, ...]:
    """'same' | 'valid' | 'N' | 'N,M' (per axis)."""
    word = str(text).strip().lower()
    if word in ("same", "valid"):
        return word
    try:
        return parse_axis_values(word, "padding", 0)
    except InputError as exc:
        if "whole number" in exc.message:
            raise InputError(
                f"padding '{text}' is not same, valid, N or N,M",
                hint="e.g. --padding same, --padding 0, --padding 2,1",
            ) from None
        raise


@dataclass
class ConvolveReport:
    """What a convolve run did: the --json document (``to_dict``) and the explanation."""

    input: str
    output: str | None
    kernel: Kernel
    explanation: ops.Explanation
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str
    padding_mode: str
    scale: str
    gray: bool
    flip: bool
    stats: Stats = field(default_factory=Stats)
    seconds: float = 0.0
    fps: float | None = None
    is_video: bool = False
    # H×W of the frames in a written video file, which can exceed the result's
    # own size by one row or column (see VideoWriter); None for other outputs.
    stored_size: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        doc = {
            "input": self.input,
            "output": self.output,
            "kernel": self.kernel.name,
            "kernel_shape": list(self.kernel.shape),
            "stride": list(self.stride),
            "padding": self.padding,
            "padding_pixels": [[a.pad_before, a.pad_after] for a in self.explanation.axes],
            "padding_mode": self.padding_mode,
            "dilation": list(self.dilation),
            "flip": self.flip,
            "gray": self.gray,
            "scale": self.scale,
            "input_shape": list(self.explanation.input_shape),
            "output_shape": list(self.explanation.output_shape),
            "min": self.stats.min if self.stats.count else None,
            "max": self.stats.max if self.stats.count else None,
            "mean": self.stats.mean if self.stats.count else None,
            "seconds": round(self.seconds, 6),
        }
        if self.fps is not None:
            doc["fps"] = self.fps
        if self.stored_size is not None:
            doc["stored_size"] = list(self.stored_size)
        return doc


@dataclass(frozen=True)
class ConvolveOptions:
    """Everything --kernel and friends resolved; see ops.convolve for the meanings."""

    kernel: Kernel
    stride: int | tuple[int, ...] = 1
    padding: str | int | tuple[int, ...] = "same"
    padding_mode: str = "reflect"
    dilation: int | tuple[int, ...] = 1
    gray: bool = False
    flip: bool = False
    scale: str = "auto"

    def per_axis(self, value: int | tuple[int, ...]) -> tuple[int, ...]:
        return (value,) * self.kernel.ndim if isinstance(value, int) else tuple(value)


def _padding_text(padding: str | int | tuple[int, ...]) -> str:
    if isinstance(padding, tuple):
        return ",".join(map(str, padding))
    return str(padding)


def _explain(shape: Sequence[int], kernel: Kernel, options: ConvolveOptions) -> ops.Explanation:
    return ops.explain(
        shape, kernel, options.stride, options.padding, options.padding_mode, options.dilation
    )
