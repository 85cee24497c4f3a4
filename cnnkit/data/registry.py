"""The dataset registry: a name or a folder in, a LoadedDataset out.

Built-in names: ``shapes`` and ``moving-shapes`` (generated), and
torchvision's ``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``,
``cifar100``, ``svhn``. Anything else must be a folder (see folders.py);
a name that is neither gets a close-match hint. This module does not import
Lightning (inspect's describe_dataset uses it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.dataset import LoadedDataset
from cnnkit.errors import DatasetError, InputError, close_match_hint
from cnnkit.spec import WHITE, InputSpec

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of decoded uint8 pixels kept in memory


@dataclass(frozen=True)
class DatasetRequest:
    """Everything a dataset source may need. Sizes left None take the source's default."""

    name: str
    data_dir: str | None = None
    img_size: int | None = None
    frames: int | None = None
    val_split: float = 0.1
    seed: int = 0
    # At most this many samples per split: a seeded, class-stratified sample of
    # each split, taken after the validation split is held out (quick runs, eval --limit).
    limit: int | None = None
    # Decode to this many channels instead of the data's own (eval uses the
    # checkpoint's; pretrained RGB weights take 3). None: the data's own.
    channels: int | None = None
    # Folders without train/ val/ test/: one split "all" of every file, no
    # validation split held out (eval measures a folder it is given whole).
    whole: bool = False
    default_size: tuple[int, int] = (32, 32)  # folders: the model's own input size
    default_frames: int = 8
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    # Return numpy-backed splits (ArraySplit, FileDataset(as_numpy=True)), never
    # importing torch: folder datasets only (eval of an exported model).
    numpy: bool = False
    # What images drawn only in their alpha channel are composited over (folders).
    background: tuple[int, int, int] = WHITE


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str  # "image" or "video"
    description: str
    loader: Callable[[DatasetRequest], LoadedDataset]


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, kind: str, description: str):
    """Register ``loader(request) -> LoadedDataset`` under ``name`` (duplicates refused)."""

    def decorator(loader: Callable[[DatasetRequest], LoadedDataset]):
        if name in _REGISTRY:
            raise ValueError(f"dataset '{name}' is already registered")
        _REGISTRY[name] = DatasetEntry(name, kind, description, loader)
        return loader

    return decorator


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset_entry(name: str) -> DatasetEntry | None:
    return _REGISTRY.get(name.lower())


def memory_budget_from_env() -> int:
    """$CNNKIT_MEMORY_BUDGET in MiB when set, else 2 GiB."""
    value = os.environ.get("CNNKIT_MEMORY_BUDGET")
    if not value:
        return DEFAULT_MEMORY_BUDGET
    try:
        return int(float(value) * 1024**2)
    except ValueError as exc:
        raise InputError(
            f"CNNKIT_MEMORY_BUDGET={value!r} is not a number", hint="give MiB, e.g. 4096"
        ) from exc


def load_dataset(request: DatasetRequest) -> LoadedDataset:
    """Resolve ``request.name``: a registered name, else an existing folder."""
    if not (math.isfinite(request.val_split) and 0.0 <= request.val_split < 1.0):
        # Users meet this rule as --val-split's (cnnkit.training.options); here it guards callers.
        raise ValueError(f"val_split must be in [0, 1), got {request.val_split}")
    entry = get_dataset_entry(request.name)
    if entry is not None and request.numpy:
        raise DatasetError(
            f"dataset '{entry.name}' is built in and needs torch to load; "
            "an .onnx model is evaluated on folders",
            hint="give --dataset FOLDER, or evaluate the .ckpt",
        )
    if entry is not None:
        return entry.loader(request)
    path = Path(request.name).expanduser()
    if path.is_dir():
        return load_folder(request)
    if path.exists():
        raise DatasetError(
            f"--dataset {request.name} is a file, not a dataset folder",
            hint="give a folder with one subfolder per class, or a built-in name",
        )
    raise DatasetError(
        f"unknown dataset '{request.name}' (neither a built-in name nor a folder)",
        hint=close_match_hint(request.name, list_datasets(), "dataset"),
    )


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


def _limit_split(split, limit: int | None, seed: int):
    """A seeded, class-stratified sample of at most ``limit`` samples of a TensorSplit."""
    import torch

    from cnnkit.data.sampling import stratified_sample

    if not limit or len(split) <= limit:
        return split
    return split.subset(torch.from_numpy(stratified_sample(split.y.numpy(), limit, seed)))


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
    """Wrap numpy splits as TensorSplits; split val off train when there is none.

    Then ``request.limit`` samples each split, and ``resize`` (H, W) resizes
    what is left (after the limit: a quick run does not resize all of MNIST).
    """
    import torch

    from cnnkit.data.memory import TensorSplit, channel_stats, split_off

    splits = {}
    for split, (x, y) in arrays.items():
        xt = torch.from_numpy(np.ascontiguousarray(x))
        lengths = None
        if frames is not None:
            lengths = torch.full((len(y),), xt.shape[2], dtype=torch.long)
        splits[split] = TensorSplit(xt, torch.from_numpy(y).long(), frames, lengths)
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
            x = _resize_all(v.x.numpy(), v.x.shape[1], resize)
            splits[k] = TensorSplit(torch.from_numpy(x), v.y, v.frames, v.lengths, v.paths)
    if request.channels is not None and request.channels != int(splits["train"].x.shape[1]):
        found = int(splits["train"].x.shape[1])
        for k, v in splits.items():
            x = convert_channels(v.x, request.channels)
            splits[k] = TensorSplit(x, v.y, v.frames, v.lengths, v.paths)
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


def convert_channels(x: Any, channels: int) -> Any:
    """uint8 (N, C, ...) samples as ``channels`` channels: gray repeated, or colour to gray.

    Gray uses ITU-R BT.601 weights, as OpenCV's decoding of colour files to gray does.
    """
    import torch

    found = int(x.shape[1])
    if found == channels:
        return x
    if found == 1:
        return x.expand(-1, channels, *x.shape[2:]).contiguous()
    if channels == 1 and found == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, *([1] * (x.dim() - 2)))
        gray = (x.float() * weights).sum(dim=1, keepdim=True)
        return gray.round_().clamp_(0, 255).to(torch.uint8)
    raise DatasetError(f"cannot convert {found}-channel samples to {channels} channels")


def check_not_empty(name: str, sizes: dict[str, int]) -> None:
    """A DatasetError when the train split, or a val split that exists, holds no sample."""
    for split in ("train", "val"):
        if split in sizes and sizes[split] == 0:
            raise DatasetError(
                f"dataset '{name}' has no {split} samples left",
                hint="raise --limit, or give more data (each split needs at least one sample)",
            )


# ---------------------------------------------------------------------------
# built-in generated datasets
# ---------------------------------------------------------------------------

MOVING_SHAPES_MIN_SIZE = 8
_SYNTH_SIZES = {"shapes": (6000, 1000, 1000), "moving-shapes": (2400, 600, 600)}


def _synth_counts(name: str, limit: int | None) -> dict[str, int]:
    sizes = _SYNTH_SIZES[name]
    return {
        s: (min(n, limit) if limit else n)
        for s, n in zip(("train", "val", "test"), sizes, strict=True)
    }


def _note_synth_limit(data: LoadedDataset, name: str, limit: int | None) -> None:
    full = dict(zip(("train", "val", "test"), _SYNTH_SIZES[name], strict=True))
    if limit and any(n > limit for n in full.values()):
        sizes = "/".join(f"{n:,}" for n in full.values())
        data.decisions["limit"] = (
            f"--limit {limit}: {limit:,} generated per split at most (instead of {sizes}), "
            "classes balanced"
        )


@register_dataset("shapes", "image", "generated: 6 shape classes, 32x32 colour, 6000/1000/1000")
def _load_shapes(request: DatasetRequest) -> LoadedDataset:
    from cnnkit.data.synthetic import SHAPE_CLASSES, make_shapes

    size = request.img_size or 32
    arrays = {}
    for i, (split, n) in enumerate(_synth_counts("shapes", request.limit).items()):
        # Different seeds per split: the three splits never share an image.
        arrays[split] = make_shapes(n, seed=request.seed * 10 + i, size=size)
    data = in_memory_dataset("shapes", "image", list(SHAPE_CLASSES), arrays, request, hflip=True)
    _note_synth_limit(data, "shapes", request.limit)
    data.decisions["hflip"] = "horizontal flips in augmentation: a mirrored shape keeps its class"
    return data


@register_dataset(
    "moving-shapes",
    "video",
    "generated clips: class = direction of motion (left/right/up/down), 3x8x32x32, 2400/600/600",
)
def _load_moving_shapes(request: DatasetRequest) -> LoadedDataset:
    from cnnkit.data.synthetic import MOTION_CLASSES, make_moving_shapes

    size = request.img_size or 32
    frames = request.frames or request.default_frames
    # Two moving discs need room to move, and motion needs two frames at least.
    if size < MOVING_SHAPES_MIN_SIZE or frames < 2:
        raise DatasetError(
            f"moving-shapes needs at least {MOVING_SHAPES_MIN_SIZE}×{MOVING_SHAPES_MIN_SIZE} "
            f"pixels and 2 frames, got {size}×{size} and {frames}",
            hint=f"use --img-size {MOVING_SHAPES_MIN_SIZE} or more and --frames 2 or more",
        )
    arrays = {}
    for i, (split, n) in enumerate(_synth_counts("moving-shapes", request.limit).items()):
        arrays[split] = make_moving_shapes(n, seed=request.seed * 10 + i, frames=frames, size=size)
    data = in_memory_dataset(
        "moving-shapes", "video", list(MOTION_CLASSES), arrays, request, False, frames
    )
    _note_synth_limit(data, "moving-shapes", request.limit)
    data.decisions["hflip"] = 'no horizontal flips: mirroring a clip turns "left" into "right"'
    return data


# ---------------------------------------------------------------------------
# torchvision datasets
# ---------------------------------------------------------------------------


def _torchvision_loader(name: str, hflip: bool):
    def load(request: DatasetRequest) -> LoadedDataset:
        from cnnkit.data.torchvision_sets import load_torchvision

        raw, classes = load_torchvision(name, request.data_dir)
        size = (request.img_size, request.img_size) if request.img_size else None
        data = in_memory_dataset(name, "image", classes, raw, request, hflip, resize=size)
        data.decisions["hflip"] = (
            "horizontal flips in augmentation: they keep this dataset's labels"
            if hflip
            else "no horizontal flips: mirrored digits and characters change meaning"
        )
        return data

    return load


def _register_torchvision() -> None:
    from cnnkit.data.torchvision_sets import TORCHVISION_SETS

    for tv in TORCHVISION_SETS.values():
        desc = f"torchvision {tv.class_name}, read from --data-dir (downloaded once if missing)"
        register_dataset(tv.name, "image", desc)(_torchvision_loader(tv.name, tv.hflip))


_register_torchvision()


# ---------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------


def _decode_split_in_memory(
    items, channels, size, frames, lengths, cap, warnings, numpy=False, background=WHITE
):
    """Decode a file list with threads, skipping unreadable files.

    A TensorSplit, or with ``numpy`` an ArraySplit (torch is then not imported).
    """
    from cnnkit.data.arrays import ArraySplit
    from cnnkit.data.folders import decode_clip, decode_image, parallel_map

    if frames is None:
        results = parallel_map(lambda it: decode_image(it[0], channels, size, background), items)
    else:

        def clip(job):
            (path, _), length = job
            keep = min(length, cap)
            return decode_clip(path, (length - keep) // 2, keep, channels, size)

        results = parallel_map(clip, list(zip(items, lengths, strict=True)))
    arrays, labels, kept_lengths, paths = [], [], [], []
    for (path, label), (arr, err) in zip(items, results, strict=True):
        if err is not None:
            warnings.append(f"skipping unreadable file {path}: {err.message}")
            continue
        arrays.append(arr)
        labels.append(label)
        paths.append(str(path))
        if frames is not None:
            kept_lengths.append(arr.shape[1])
    if not arrays:
        return None
    y = np.asarray(labels, dtype=np.int64)
    if frames is None:
        split = ArraySplit(np.stack(arrays), y, paths=paths)
    else:
        longest = max(kept_lengths)
        padded = []
        for arr in arrays:  # pad short videos with their last frame to a common length
            if arr.shape[1] < longest:
                pad = np.repeat(arr[:, -1:], longest - arr.shape[1], axis=1)
                arr = np.concatenate([arr, pad], axis=1)
            padded.append(arr)
        split = ArraySplit(np.stack(padded), y, frames, np.asarray(kept_lengths, np.int64), paths)
    if numpy:
        return split
    import torch

    from cnnkit.data.memory import TensorSplit

    lengths_t = torch.from_numpy(split.lengths) if split.lengths is not None else None
    return TensorSplit(torch.from_numpy(split.x), torch.from_numpy(y), frames, lengths_t, paths)


def _probe_lengths(items, warnings):
    from cnnkit.data.folders import parallel_map
    from cnnkit.io.video import probe_video

    results = parallel_map(lambda it: probe_video(it[0]).frames, items)
    kept, lengths = [], []
    for item, (n, err) in zip(items, results, strict=True):
        if err is not None:
            warnings.append(f"skipping unreadable file {item[0]}: {err.message}")
            continue
        kept.append(item)
        lengths.append(int(n))
    return kept, lengths


def _folder_flip(kind: str, classes: list[str], channels: int) -> tuple[bool, str]:
    """Whether mirrored inputs keep their labels in a folder dataset, and why (the default)."""
    from cnnkit.data.folders import glyph_classes

    if kind == "video":
        return False, "no horizontal flips: mirroring a clip reverses the motion in it"
    if glyph_classes(classes):
        return False, (
            "no horizontal flips: classes named by single characters look like glyphs "
            "(digits, letters), which change meaning when mirrored"
        )
    if channels == 1:
        return False, (
            "no horizontal flips: gray images (scans, digits, documents) are often "
            "glyph-like; --flip turns them on"
        )
    return True, "horizontal flips in augmentation (colour images); --no-flip turns them off"


def _empty_class_warnings(files: dict[str, list], classes: list[str]) -> list[str]:
    """'val: empty class(es): 2' for every split that lacks a class (as inspect says it)."""
    out = []
    for split, items in files.items():
        present = {label for _, label in items}
        empty = [c for i, c in enumerate(classes) if i not in present]
        if empty and items:
            out.append(f"{split}: empty class(es): {', '.join(empty)}")
    return out


def load_folder(request: DatasetRequest) -> LoadedDataset:
    """A class-per-subfolder dataset, decoded into memory when it fits the budget.

    ``request.numpy``: the splits hold numpy arrays and torch is never imported.
    """
    from cnnkit import console
    from cnnkit.data.folders import (
        ChannelChoice,
        FileDataset,
        detect_channels,
        sample_items,
        scan_folder,
        split_files,
    )
    from cnnkit.data.preprocess import alpha_note

    scan = scan_folder(request.name)
    warnings = [f"ignored hidden folder {p}" for p in scan.hidden]
    warnings += [f"skipping unreadable folder {p}: {why}" for p, why in scan.unreadable_folders]
    if scan.ignored:
        other = "videos" if scan.kind == "image" else "images"
        warnings.append(
            f"ignored {len(scan.ignored)} file(s) that are not {scan.kind}s "
            f"({other} or other formats), e.g. {scan.ignored[0]}"
        )
    if request.whole and "all" in scan.files:
        files = {"all": list(scan.files["all"])}
    else:
        files = split_files(scan, request.val_split, request.seed)
    warnings += _empty_class_warnings(files, scan.classes)
    decisions: dict[str, str] = {}
    if "val" in files and "val" not in scan.files:
        decisions["val_split"] = (
            f"validation: {len(files['val']):,} files held out of train, per class "
            f"(--val-split {request.val_split:g}, seed {request.seed})"
        )
    # Channels are decided on the whole folder, before --limit: a quick run builds the
    # same model as the full one.
    detected = detect_channels(files, scan.kind)
    found = detected.channels
    if request.channels is not None:
        choice = ChannelChoice(request.channels, f"{request.channels} channel(s), the model's")
        if found != request.channels:
            # Said, not silently done: colour lost to a gray model, or gray repeated.
            decisions["channels"] = (
                f"colour images are converted to gray for the model's {request.channels} channel"
                if found == 3
                else f"gray images are repeated to the model's {request.channels} channels"
            )
    else:
        choice = detected
        decisions["channels"] = choice.reason
    for how, example in detected.alpha.items():
        decisions[f"alpha_{how}"] = f"{alpha_note(how, request.background)} (e.g. {example})"
    files = limit_each(files, sample_items, request, decisions)
    size = (request.img_size,) * 2 if request.img_size else tuple(request.default_size)
    frames = (request.frames or request.default_frames) if scan.kind == "video" else None
    channels = choice.channels
    # Flips follow the images as they are, not the channels they are converted to.
    hflip, flip_reason = _folder_flip(scan.kind, scan.classes, found)
    decisions["hflip"] = flip_reason

    lengths: dict[str, list[int] | None] = dict.fromkeys(files)
    if frames is not None:
        for split in files:
            files[split], lengths[split] = _probe_lengths(files[split], warnings)
    # Videos keep up to 4 clip lengths of frames (centred) for random-start sampling.
    cap = 4 * frames if frames else 1
    per_sample = channels * size[0] * size[1] * (cap if frames else 1)
    total = sum(len(v) for v in files.values()) * per_sample
    in_memory = total <= request.memory_budget

    splits = {}
    for split, items in files.items():
        if in_memory:
            decoded = _decode_split_in_memory(
                items, channels, size, frames, lengths[split], cap, warnings, request.numpy,
                request.background,
            )  # fmt: skip
            if decoded is not None:
                splits[split] = decoded
        elif items:
            splits[split] = FileDataset(
                items,
                channels,
                size,
                frames,
                lengths[split],
                train=(split == "train"),
                seed=request.seed,
                as_numpy=request.numpy,
                background=request.background,
            )
    for w in warnings:
        console.warn(w)
    for split in files:
        if split not in splits or len(splits[split]) == 0:
            raise DatasetError(
                f"no readable {split} samples in {scan.root}",
                hint="check the files with `cnnkit inspect FOLDER`",
            )
    if in_memory and request.numpy:
        from cnnkit.data.arrays import array_channel_stats

        mean, std = array_channel_stats(splits["all" if "all" in splits else "train"].x)
    elif in_memory:
        from cnnkit.data.memory import channel_stats

        mean, std = channel_stats(splits["all" if "all" in splits else "train"].x)
    else:
        mean, std = [0.5] * channels, [0.25] * channels  # a sample pass would cost an epoch
    spec = InputSpec(
        channels, (int(size[0]), int(size[1])), frames, tuple(mean), tuple(std), request.background
    )
    return LoadedDataset(
        str(scan.root.resolve()),
        scan.kind,
        scan.classes,
        spec,
        splits,
        hflip=hflip,
        in_memory=in_memory,
        warnings=warnings,
        decisions=decisions,
    )
