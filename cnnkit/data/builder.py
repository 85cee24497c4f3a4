"""Building a LoadedDataset from arrays in memory: resizing, channels, limits, checks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cnnkit.data.arrays import Split, channel_stats
from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.registration import DatasetRequest
from cnnkit.errors import DatasetError
from cnnkit.spec import InputSpec

# ---------------------------------------------------------------------------
# helpers shared by the in-memory sources
# ---------------------------------------------------------------------------


def _resize_all(x: np.ndarray, channels: int, size: Sequence[int]) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N, channels, *size) with the shared preprocessing."""
    from cnnkit.data.preprocess import prepare_image

    if x.shape[1] == channels and tuple(x.shape[2:]) == tuple(size):
        return x
    hwc = x.transpose(0, 2, 3, 1)
    return np.stack([prepare_image(img, channels, size) for img in hwc])


def _limit_split(split: Split, limit: int | None, seed: int) -> Split:
    """A seeded, class-stratified sample of at most ``limit`` samples of a Split."""
    from cnnkit.data.sampling import stratified_sample

    if not limit or len(split) <= limit:
        return split
    return split.subset(stratified_sample(split.y, limit, seed))


def limit_each(
    parts: dict[str, Any],
    take: Callable[[Any, int, int], Any],
    request: DatasetRequest,
    decisions: dict[str, str],
) -> dict[str, Any]:
    """Each split cut to ``request.limit`` by ``take(part, limit, seed)``; said in ``decisions``."""
    if not request.limit:
        return parts
    before = {k: len(v) for k, v in parts.items()}
    parts = {k: take(v, request.limit, request.seed) for k, v in parts.items()}
    note = limit_note(before, {k: len(v) for k, v in parts.items()}, request.limit)
    if note:
        decisions["limit"] = note
    return parts


def limit_note(sizes_before: dict[str, int], sizes_after: dict[str, int], limit: int) -> str | None:
    """What --limit did, in words (None when it cut nothing)."""
    cut = [
        f"{s} {sizes_after[s]:,} of {n:,}" for s, n in sizes_before.items() if n > sizes_after[s]
    ]
    if not cut:
        return None
    return f"--limit {limit}: a seeded, class-stratified sample per split ({', '.join(cut)})"


def in_memory_dataset(
    name: str,
    kind: str,
    classes: list[str],
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    request: DatasetRequest,
    hflip: bool,
    frames: int | None = None,
    resize: tuple[int, int] | None = None,
) -> LoadedDataset:
    """Wrap numpy arrays as Splits; split val off train when there is none.

    Then ``request.limit`` samples each split, and ``resize`` (H, W) resizes
    what is left (after the limit: a quick run does not resize all of MNIST).
    """
    from cnnkit.data.memory import split_off

    splits = {}
    for split, (x, y) in arrays.items():
        lengths = np.full(len(y), x.shape[2], np.int64) if frames is not None else None
        splits[split] = Split(x, y, frames, lengths)
    decisions: dict[str, str] = {}
    if "val" not in splits and request.val_split > 0:
        splits["train"], splits["val"] = split_off(splits["train"], request.val_split, request.seed)
        decisions["val_split"] = (
            f"validation: {len(splits['val']):,} samples held out of train "
            f"(--val-split {request.val_split:g}, seed {request.seed})"
        )
    splits = limit_each(splits, _limit_split, request, decisions)
    check_not_empty(name, {k: len(v) for k, v in splits.items()})
    _check_fits_in_memory(name, splits, request.channels, resize)
    if resize is not None:
        for k, v in splits.items():
            splits[k] = dataclasses.replace(v, x=_resize_all(v.x, v.x.shape[1], resize))
    if request.channels is not None and request.channels != int(splits["train"].x.shape[1]):
        found = int(splits["train"].x.shape[1])
        for k, v in splits.items():
            splits[k] = dataclasses.replace(v, x=convert_channels(v.x, request.channels))
        decisions["channels"] = (
            f"gray images are repeated to the model's {request.channels} channels"
            if found == 1
            else f"colour images are converted to gray for the model's {request.channels} channel"
        )
    x0 = splits["train"].x
    mean, std = channel_stats(x0)
    size = (int(x0.shape[-2]), int(x0.shape[-1]))
    spec = InputSpec(int(x0.shape[1]), size, frames, tuple(mean), tuple(std), request.background)
    order = {"train": 0, "val": 1, "test": 2}
    splits = dict(sorted(splits.items(), key=lambda kv: order.get(kv[0], 3)))
    return LoadedDataset(
        name, kind, classes, spec, splits, hflip=hflip, in_memory=True, decisions=decisions
    )


def _check_fits_in_memory(name: str, splits: dict, channels: int | None, resize: Any) -> None:
    """A DatasetError, before any pixel is resized, when the result would not fit in memory.

    ``--img-size 224`` on MNIST (a pretrained model's input) is 60,000 images
    of 3×224×224: 9 GB, which would end in the OOM killer half-way through.
    """
    from cnnkit.ops.limits import available_memory, size_text

    total = 0
    for split in splits.values():
        shape = tuple(split.x.shape)
        c = channels or shape[1]
        hw = tuple(resize) if resize is not None else shape[-2:]
        total += shape[0] * c * math.prod(shape[2:-2]) * hw[0] * hw[1]
    free = available_memory()
    if free is not None and total > 0.8 * free:
        raise DatasetError(
            f"dataset '{name}' at this size needs {size_text(total)} of memory as decoded "
            f"pixels, more than the {size_text(free)} available",
            hint="use a smaller --img-size, or fewer samples with --limit N",
        )


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, C, ...) samples as ``channels`` channels: gray repeated, or colour to gray.

    Gray uses ITU-R BT.601 weights, as OpenCV's decoding of colour files to gray does.
    """
    found = int(x.shape[1])
    if found == channels:
        return x
    if found == 1:
        return np.repeat(x, channels, axis=1)
    if channels == 1 and found == 3:
        import torch

        # In torch's float32 arithmetic, as the training data always has been.
        xt = torch.from_numpy(np.ascontiguousarray(x))
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, *([1] * (xt.dim() - 2)))
        gray = (xt.float() * weights).sum(dim=1, keepdim=True)
        return gray.round_().clamp_(0, 255).to(torch.uint8).numpy()
    raise DatasetError(f"cannot convert {found}-channel samples to {channels} channels")


def check_not_empty(name: str, sizes: dict[str, int]) -> None:
    """A DatasetError when the train split, or a val split that exists, holds no sample."""
    for split in ("train", "val"):
        if split in sizes and sizes[split] == 0:
            raise DatasetError(
                f"dataset '{name}' has no {split} samples left",
                hint="raise --limit, or give more data (each split needs at least one sample)",
            )
