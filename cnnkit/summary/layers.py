"""Layer tables of ``cnnkit inspect``: output shapes, parameters, MACs and receptive fields.

Model summaries run one forward pass on a zero input of batch 1 with forward
hooks on the leaf modules, so shapes, MACs and receptive fields come from the
layers themselves, never from a table typed in by hand.

MACs are multiply-accumulates: one per use of a weight. Convolutions count
``output elements x (in_channels / groups) x prod(kernel)``, linear layers
``output elements x in_features``; batch norm, activations, pooling and
residual additions count 0 (they are a few percent of the total and are not
multiply-accumulates with weights). Multiply by ~2 for FLOPs.

Receptive fields follow the tensors through the forward pass: each convolution
or pooling layer grows the field of its input by ``(k - 1) x dilation x jump``
per axis and multiplies the jump (the input pixels between neighbouring
outputs) by its stride. Where a layer's input was made by an operation that is
not a module (a residual addition that is not in place, a reshape), the largest
field computed so far is used, so for residual networks the result follows the
main path and is an upper bound on the shortcut paths. Global pooling and
flattening make a field cover the whole input (``None``). torch is imported
lazily; this module never imports Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnkit.errors import ModelError


@dataclass
class _Field:
    """Receptive field and jump per input axis; rf None means the whole input."""

    rf: list[int] | None
    jump: list[int]


def _geometry(module: Any, spatial_in: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """(kernel, stride, dilation) per spatial axis of a conv or pooling module."""
    nd = len(spatial_in)

    def per_axis(value: Any, default: int = 1) -> list[int]:
        if value is None:
            value = default
        if isinstance(value, int):
            return [value] * nd
        return [int(v) for v in value]

    from torch import nn

    if isinstance(
        module,
        (
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d,
        ),
    ):
        out = per_axis(module.output_size)
        out = [o if o is not None else n for o, n in zip(out, spatial_in, strict=True)]
        # Adaptive pooling uses windows of ceil(n/m) at steps of about n/m.
        kernel = [math.ceil(n / m) for n, m in zip(spatial_in, out, strict=True)]
        stride = [max(1, n // m) for n, m in zip(spatial_in, out, strict=True)]
        return kernel, stride, [1] * nd
    kernel = per_axis(module.kernel_size)
    stride = per_axis(getattr(module, "stride", None) or module.kernel_size)
    dilation = per_axis(getattr(module, "dilation", 1))
    return kernel, stride, dilation


def _compact(values: Sequence[Any] | None) -> Any:
    """A per-axis tuple as JSON: one number when all axes agree, else a list."""
    if values is None or isinstance(values, (str, int)):
        return values
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else values


def _rf_value(rf: Sequence[int] | None, dims: int) -> Any:
    """2D: an int when square, else [h, w]; 3D: always [t, h, w]."""
    if rf is None:
        return None
    if dims == 3:
        return [int(v) for v in rf]
    return _compact(rf)


def is_conv(module: Any) -> bool:
    """Whether ``module`` is a convolution (any of Conv1d/2d/3d and their transposes)."""
    from torch.nn.modules.conv import _ConvNd

    return isinstance(module, _ConvNd)


def _is_pool(module: Any) -> bool:
    from torch.nn.modules import pooling

    return isinstance(
        module,
        (
            pooling._MaxPoolNd,
            pooling._AvgPoolNd,
            pooling._AdaptiveAvgPoolNd,
            pooling._AdaptiveMaxPoolNd,
        ),
    )


def _macs(module: Any, inp: Any, out: Any) -> int:
    from torch import nn
    from torch.nn.modules.conv import _ConvTransposeNd

    if isinstance(module, _ConvTransposeNd):
        # each input element is spread over out_channels/groups x kernel outputs
        return int(inp.numel() * module.weight[0].numel())
    if is_conv(module):
        # weight[0] is (in_channels/groups, *kernel): the weights one output element uses
        return int(out.numel() * module.weight[0].numel())
    if isinstance(module, nn.Linear):
        return int(out.numel() * module.in_features)
    return 0


class _Tracer:
    """Forward hooks that record each leaf call's shape, params, MACs and receptive field."""

    def __init__(self, input_dims: int) -> None:
        self.axes = input_dims  # spatial axes of the input: 2 (H, W) or 3 (T, H, W)
        self.fields: dict[int, _Field] = {}
        self.keep: list[Any] = []  # keeps tensors alive so their id() stays unique
        self.layers: list[dict[str, Any]] = []
        self.seen: set[int] = set()
        self.finite: list[_Field] = []

    def start(self, x: Any) -> None:
        self.keep.append(x)
        self.fields[id(x)] = _Field([1] * self.axes, [1] * self.axes)

    def _fallback(self) -> _Field:
        # Input made outside a module (non in-place add, reshape): take the largest field so far.
        if not self.finite:
            return _Field([1] * self.axes, [1] * self.axes)
        rf = [max(f.rf[i] for f in self.finite) for i in range(self.axes)]
        jump = [max(f.jump[i] for f in self.finite) for i in range(self.axes)]
        return _Field(rf, jump)

    def _propagate(self, module: Any, inp: Any, out: Any, field: _Field) -> _Field:
        if field.rf is None or out.dim() < 3:
            return _Field(None, field.jump)  # flattened or globally pooled: the whole input
        if not (is_conv(module) or _is_pool(module)):
            return field
        spatial_in = list(inp.shape[2:])
        nd = len(spatial_in)
        if (
            _is_pool(module)
            and hasattr(module, "output_size")
            and all(s == 1 for s in out.shape[2:])
        ):
            return _Field(None, field.jump)  # global pooling
        kernel, stride, dilation = _geometry(module, spatial_in)
        rf, jump = list(field.rf), list(field.jump)
        # A 2D layer inside a clip model acts on the last two axes (H, W) only.
        for axis, (k, s, d) in enumerate(
            zip(kernel, stride, dilation, strict=True), self.axes - nd
        ):
            rf[axis] += (k - 1) * d * jump[axis]
            jump[axis] *= s
        return _Field(rf, jump)

    def hook(self, name: str) -> Any:
        def record(module: Any, args: tuple, out: Any) -> None:
            import torch

            inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if not isinstance(out, torch.Tensor) or inp is None:
                return
            field = self.fields.get(id(inp)) or self._fallback()
            new = self._propagate(module, inp, out, field)
            self.keep += [inp, out]
            self.fields[id(out)] = new
            if new.rf is not None and (is_conv(module) or _is_pool(module)):
                self.finite.append(new)
            first_call = id(module) not in self.seen
            self.seen.add(id(module))
            geometric = is_conv(module) or _is_pool(module)
            padding = getattr(module, "padding", None) if geometric else None
            self.layers.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "kernel_size": _compact(_geometry(module, inp.shape[2:])[0])
                    if geometric
                    else None,
                    "stride": _compact(_geometry(module, inp.shape[2:])[1]) if geometric else None,
                    "padding": _compact(padding) if padding is not None else None,
                    "output_shape": [int(v) for v in out.shape],
                    "params": sum(p.numel() for p in module.parameters(recurse=False))
                    if first_call
                    else 0,
                    "macs": _macs(module, inp, out),
                    "receptive_field": new.rf,
                }
            )

        return record


def summarize_model(model: Any, input_size: Sequence[int], name: str) -> dict[str, Any]:
    """Layer table and totals of ``model`` for one input of shape ``input_size``.

    ``input_size`` is (C, H, W) or (C, T, H, W), without the batch. Each layer's
    ``output_shape`` is its full output for a batch of one (frame-wise 2D layers
    in a clip model show T as their batch). Returns the JSON of ``cnnkit inspect``
    for a model (kind, name, input_size, params, trainable_params, macs,
    receptive_field, layers).
    """
    import torch

    input_size = [int(v) for v in input_size]
    dims = len(input_size) - 1
    tracer = _Tracer(dims)
    handles = [
        module.register_forward_hook(tracer.hook(layer_name))
        for layer_name, module in model.named_modules()
        if layer_name and not any(True for _ in module.children())
    ]
    x = torch.zeros(1, *input_size)
    tracer.start(x)
    was_training = model.training
    model.eval()  # batch norm on a batch of one needs running statistics
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"model '{name}' cannot take an input of size {'x'.join(map(str, input_size))}: "
            f"{reason}",
            hint="check the channel count and that the input is large enough for its "
            "pooling (--input-size)",
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    for layer in tracer.layers:
        layer["receptive_field"] = _rf_value(layer["receptive_field"], dims)
    stage_fields = [f.rf for f in tracer.finite]
    top = [max(rf[i] for rf in stage_fields) for i in range(dims)] if stage_fields else None
    params = sum(p.numel() for p in model.parameters())
    return {
        "kind": "model",
        "name": name,
        "input_size": input_size,
        "params": params,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "macs": sum(layer["macs"] for layer in tracer.layers),
        "receptive_field": _rf_value(top, dims),
        "layers": tracer.layers,
    }
