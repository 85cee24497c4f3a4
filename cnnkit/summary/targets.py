"""What an inspect TARGET is, and the model (with its input size and spec) behind it.

Model names and checkpoints are built here (random weights, or a checkpoint's
weights without Lightning) and summarised by :mod:`cnnkit.summary.layers`;
``--input-size`` is parsed and fitted to the model here too. torch is imported
only for model names and checkpoints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import InputError
from cnnkit.summary.layers import summarize_model

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
        if path.suffix.lower() == ".onnx":
            return "onnx"
        if is_image_path(path):
            return "image"
        if is_video_path(path):
            return "video"
        raise InputError(
            f"cannot inspect {target}: not a checkpoint (.ckpt), model (.onnx), image or video",
            hint="give a model name, a .ckpt, an image, a video or a dataset folder",
        )
    if path.is_dir():
        return "dataset"
    # Only names need the registries (they import torch): a file is known without them.
    from cnnkit.data.registry import list_datasets
    from cnnkit.models.registry import list_models

    if target in list_models():
        return "model"
    from cnnkit.refs import parse_pretrained

    pretrained = parse_pretrained(target)
    if pretrained is not None and pretrained[0] in list_models():
        return "checkpoint"  # MODEL:DATA, a pretrained model with its weights
    if target in list_datasets():
        return "dataset"
    if path.suffix or "/" in target or "\\" in target:
        if os.path.lexists(target):  # a FIFO, device, socket, or a symlink to one or to nothing
            raise InputError(
                f"cannot inspect {target}: not a regular file or folder",
                hint="give a model name, a .ckpt, an image, a video or a dataset folder",
            )
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
    from cnnkit.checkpoint import build_model
    from cnnkit.precision import recorded_precision
    from cnnkit.sources import open_checkpoint

    ckpt = open_checkpoint(path)
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
        start=dict(ckpt.meta.start),
        trained_in=recorded_precision(ckpt.meta),
    )
    trained = ckpt.meta.start.get("trained")
    if trained:
        # --freeze: only these modules learned; the rebuilt model's flags say nothing of it.
        summary["trainable_params"] = sum(
            p.numel()
            for name, p in model.named_parameters()
            if any(name.startswith(prefix + ".") for prefix in trained)
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
        sample = prepare_image(read_image(path, target=hw), channels, hw)
        if len(size) == 4:
            sample = np.repeat(sample[:, None], size[1], axis=1)
    else:
        raise InputError(
            f"--image {path} is not an image or video", hint="give a .png, .jpg, .mp4, ..."
        )
    batch = torch.from_numpy(np.ascontiguousarray(sample))[None]
    return normalize(batch, inspected.mean, inspected.std)
