"""What ``cnnkit inspect`` shows: layer tables, MACs, receptive fields, feature maps,
kernel grids, and the facts of an image or a video.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import InputError, ModelError

PIXEL_BLOCK = 8  # the raw-value block shown for images: 8x8 pixels around the centre


# ---------------------------------------------------------------------------
# input sizes
# ---------------------------------------------------------------------------


# 3×4096×4096 or 3×64×512×512: enough for any model summary, and it fits in memory.
_MAX_INPUT_VALUES = 3 * 4096 * 4096


def parse_input_size(text: str) -> tuple[int, ...]:
    """'1x28x28' -> (1, 28, 28); '3x16x112x112' -> (3, 16, 112, 112). Also accepts '×' and ','."""
    parts = text.lower().replace("×", "x").replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) not in (2, 3, 4) or any(v < 1 for v in values):
        raise InputError(
            f"cannot read input size '{text}'",
            hint="give CxHxW for images (e.g. 1x28x28) or CxTxHxW for clips (e.g. 3x16x112x112)",
        )
    if math.prod(values) > _MAX_INPUT_VALUES:
        # A dummy input this large would fail inside torch's allocator with a traceback.
        raise InputError(
            f"input size '{text}' is too large to inspect ({math.prod(values):,} values)",
            hint=f"use at most {_MAX_INPUT_VALUES:,} values, e.g. 3x1024x1024",
        )
    return values


def resolve_input_size(
    given: Sequence[int] | None, default: Sequence[int], dims: int, name: str
) -> tuple[int, ...]:
    """Fit a parsed --input-size to a model: HxW keeps the default channels for 2D models."""
    if given is None:
        return tuple(default)
    given = tuple(given)
    if dims == 2 and len(given) == 2:
        given = (default[0], *given)
    if len(given) != dims + 1:
        form = "CxHxW" if dims == 2 else "CxTxHxW"
        raise InputError(
            f"model '{name}' is {dims}D and needs a {form} input size, got "
            f"{'x'.join(map(str, given))}",
            hint=f"its default is {'x'.join(map(str, default))}",
        )
    return given


# ---------------------------------------------------------------------------
# model summaries
# ---------------------------------------------------------------------------


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


def _is_conv(module: Any) -> bool:
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
    if _is_conv(module):
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
        if not (_is_conv(module) or _is_pool(module)):
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
            if new.rf is not None and (_is_conv(module) or _is_pool(module)):
                self.finite.append(new)
            first_call = id(module) not in self.seen
            self.seen.add(id(module))
            geometric = _is_conv(module) or _is_pool(module)
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


# ---------------------------------------------------------------------------
# images and videos
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# feature maps and kernels as pictures
# ---------------------------------------------------------------------------

_GAP = 2  # pixels between tiles
_GAP_VALUE = 96  # mid-dark gray, so black and white tiles both stand out from the lines
_TILE_TARGET = 64  # small maps and kernels are enlarged (nearest) to at least this many pixels


def _to_uint8(maps: np.ndarray, symmetric: bool) -> np.ndarray:
    """Scale one map or filter to 0-255: min-max, or around 0 (0 -> mid gray) if symmetric."""
    maps = maps.astype(np.float64)
    if symmetric:
        peak = float(np.abs(maps).max())
        scaled = 127.5 + 127.5 * maps / peak if peak > 0 else np.full_like(maps, 127.5)
    else:
        lo, hi = float(maps.min()), float(maps.max())
        scaled = (maps - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(maps)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def tile_grid(tiles: Sequence[np.ndarray], columns: int, scale: int = 1) -> np.ndarray:
    """Lay out equal-sized H×W (or H×W×3) uint8 tiles row by row, enlarged ``scale`` times."""
    first = np.repeat(np.repeat(tiles[0], scale, axis=0), scale, axis=1)
    th, tw = first.shape[:2]
    rows = math.ceil(len(tiles) / columns)
    shape = (rows * (th + _GAP) + _GAP, columns * (tw + _GAP) + _GAP, *first.shape[2:])
    grid = np.full(shape, _GAP_VALUE, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = _GAP + r * (th + _GAP), _GAP + c * (tw + _GAP)
        grid[y : y + th, x : x + tw] = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
    return grid


def _scale_for(size: int) -> int:
    return max(1, math.ceil(_TILE_TARGET / max(1, size)))


def _conv_layers(model: Any) -> list[tuple[str, Any]]:
    return [(n, m) for n, m in model.named_modules() if n and _is_conv(m)]


def feature_map_grids(model: Any, image: Any, out_dir: str | Path) -> list[dict[str, Any]]:
    """Write one PNG grid of activations per convolution layer; return what was written.

    ``image``: a float tensor (1, C, H, W), or (1, C, T, H, W) for clip models.
    Each map is scaled to 0-255 on its own. 2D maps are tiled in a square-ish grid;
    3D maps (and frame-wise 2D maps in a clip model) get one row per channel and
    one column per frame. Files: ``01-features.0.png``, ``02-...`` in call order.
    """
    import torch

    from cnnkit.io.image import write_image

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--feature-maps {out_dir} is a file", hint="give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    captured: list[tuple[str, np.ndarray]] = []
    handles = [
        module.register_forward_hook(
            lambda _m, _a, out, name=name: captured.append((name, out.detach().float().numpy()))
        )
        for name, module in _conv_layers(model)
    ]
    model.eval()
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()

    written = []
    for index, (name, act) in enumerate(captured, 1):
        if act.ndim == 4 and act.shape[0] > 1:
            act = act.transpose(1, 0, 2, 3)[None]  # frames folded into the batch: (1, C, T, H, W)
        maps = act[0]
        if maps.ndim == 3:  # (C, H, W)
            tiles = [_to_uint8(m, symmetric=False) for m in maps]
            columns = math.ceil(math.sqrt(len(tiles)))
        else:  # (C, T, H, W): a row per channel, a column per frame
            tiles = [_to_uint8(m, symmetric=False) for channel in maps for m in channel]
            columns = maps.shape[1]
        grid = tile_grid(tiles, columns, _scale_for(max(maps.shape[-2:])))
        path = out_dir / f"{index:02d}-{name}.png"
        write_image(path, grid)
        written.append({"layer": name, "path": str(path), "shape": list(maps.shape)})
    return written


def kernel_grid(model: Any, path: str | Path) -> dict[str, Any]:
    """Write the first convolution's filters as one PNG grid; return what was written.

    Each filter is scaled around 0 on its own (0 mid gray, positive bright,
    negative dark). Filters over 3 channels are shown in colour; over 1 channel in
    gray; over other counts as the mean over channels. 2D: a square-ish grid of
    filters; 3D: one column per filter, one row per time slice.
    """
    from cnnkit.io.image import write_image

    convs = _conv_layers(model)
    if not convs:
        raise ModelError("this model has no convolution, so it has no kernels to draw")
    name, conv = convs[0]
    weight = conv.weight.detach().float().numpy()  # (out, in, [kt,] kh, kw)
    if weight.shape[1] != 3:
        weight = weight.mean(axis=1, keepdims=True)
    symmetric = [_to_uint8(f, symmetric=True) for f in weight]
    # channels last so colour filters are RGB tiles: (out, [kt,] kh, kw, C)
    filters = [np.moveaxis(f, 0, -1) if f.shape[0] == 3 else f[0] for f in symmetric]
    if weight.ndim == 4:
        tiles = filters
        columns = math.ceil(math.sqrt(len(tiles)))
    else:
        kt = weight.shape[2]
        tiles = [filters[o][t] for t in range(kt) for o in range(len(filters))]
        columns = len(filters)
    grid = tile_grid(tiles, columns, _scale_for(max(weight.shape[-2:])))
    write_image(path, grid)
    return {"layer": name, "path": str(path), "weight_shape": list(conv.weight.shape)}


# ---------------------------------------------------------------------------
# what a TARGET is, and the model (with its input spec) behind it
# ---------------------------------------------------------------------------


def detect_target(target: str) -> str:
    """'checkpoint', 'image', 'video', 'dataset' or 'model' for an inspect TARGET.

    Files are recognised by extension, folders are datasets, then registered
    model names and dataset names; anything else is an InputError with a hint.
    """
    from cnnkit.io.image import is_image_path
    from cnnkit.io.video import is_video_path

    path = Path(target)
    if path.is_file():
        if path.suffix.lower() == ".ckpt":
            return "checkpoint"
        if is_image_path(path):
            return "image"
        if is_video_path(path):
            return "video"
        raise InputError(
            f"cannot inspect {target}: not a checkpoint (.ckpt), image or video",
            hint="give a model name, a .ckpt, an image, a video or a dataset folder",
        )
    if path.is_dir():
        return "dataset"
    # Only names need the registries (they import torch): a file is known without them.
    from cnnkit.data.registry import list_datasets
    from cnnkit.models.registry import list_models

    if target in list_models():
        return "model"
    if target in list_datasets():
        return "dataset"
    if path.suffix or "/" in target or "\\" in target:
        raise InputError(f"no such file or folder: {target}", hint="check the path")
    from cnnkit.errors import close_match_hint

    known = [*list_models(), *list_datasets()]
    raise InputError(
        f"'{target}' is not a model, dataset, file or folder",
        hint=close_match_hint(target, known, "model or dataset name"),
    )


@dataclass
class InspectedModel:
    """A built model, its summary, and how to turn an image into its input."""

    model: Any
    summary: dict[str, Any]
    input_size: tuple[int, ...]  # (C, H, W) or (C, T, H, W)
    mean: list[float]
    std: list[float]


def inspect_model(
    name: str, input_size: Sequence[int] | None = None, num_classes: int = 10
) -> InspectedModel:
    """Build registered model ``name`` (random weights) and summarise it."""
    from cnnkit.models.registry import create_model, get_model_spec

    spec = get_model_spec(name)
    size = resolve_input_size(input_size, spec.default_input_size, spec.dims, name)
    model = create_model(name, num_classes=num_classes, in_channels=size[0], input_size=size)
    summary = summarize_model(model, size, name)
    summary["description"] = spec.description
    channels = size[0]
    return InspectedModel(model, summary, size, [0.0] * channels, [1.0] * channels)


def inspect_checkpoint(path: str | Path, input_size: Sequence[int] | None = None) -> InspectedModel:
    """Load a checkpoint (weights only, no Lightning), summarise its model at its input size."""
    from cnnkit.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(path)
    spec = ckpt.input
    default = spec.shape()
    size = resolve_input_size(input_size, default, len(default) - 1, ckpt.model_name)
    if size[0] != default[0]:
        raise InputError(
            f"checkpoint {path} was trained on {default[0]}-channel input, not {size[0]}",
            hint=f"leave the channels at {default[0]}",
        )
    model = build_model(ckpt)
    summary = summarize_model(model, size, ckpt.model_name)
    summary.update(
        kind="checkpoint",
        path=str(path),
        classes=list(ckpt.classes),
        dataset=ckpt.dataset,
        input=spec.to_dict(),
        metrics=dict(ckpt.metrics),
        cnnkit_version=ckpt.cnnkit_version,
    )
    return InspectedModel(model, summary, size, list(spec.mean), list(spec.std))


def load_model_input(path: str | Path, inspected: InspectedModel) -> Any:
    """An image (or a video, for clip models) as the model's normalised input batch of one.

    Returns (1, C, H, W) or (1, C, T, H, W) float32. A still image given to a clip
    model is repeated over the T frames.
    """
    import torch

    from cnnkit.data.preprocess import normalize, prepare_clip, prepare_image
    from cnnkit.io.image import is_image_path, read_image
    from cnnkit.io.video import is_video_path, read_video_clip

    size = inspected.input_size
    channels, hw = size[0], size[-2:]
    if is_video_path(path):
        if len(size) == 3:
            frames = read_video_clip(path, 0, 1)
            sample = prepare_image(frames[0], channels, hw)
        else:
            sample = prepare_clip(read_video_clip(path, 0, size[1]), channels, hw)
    elif is_image_path(path):
        sample = prepare_image(read_image(path), channels, hw)
        if len(size) == 4:
            sample = np.repeat(sample[:, None], size[1], axis=1)
    else:
        raise InputError(
            f"--image {path} is not an image or video", hint="give a .png, .jpg, .mp4, ..."
        )
    batch = torch.from_numpy(np.ascontiguousarray(sample))[None]
    return normalize(batch, inspected.mean, inspected.std)
