"""The dataset registry: a name or a folder in, a LoadedDataset out.

Built-in names: ``shapes`` and ``moving-shapes`` (generated), and
torchvision's ``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``,
``cifar100``, ``svhn``. Anything else must be a folder (see folders.py);
a name that is neither gets a close-match hint. This module does not import
Lightning (inspect's describe_dataset uses it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import InputSpec, LoadedDataset
from cnnkit.errors import DatasetError, InputError, close_match_hint

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
    limit: int | None = None  # at most this many samples per split (quick runs, benchmarks)
    default_size: tuple[int, int] = (32, 32)  # folders: the model's own input size
    default_frames: int = 8
    memory_budget: int = DEFAULT_MEMORY_BUDGET


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


def is_builtin(name: str) -> bool:
    return name.lower() in _REGISTRY


def load_dataset(request: DatasetRequest) -> LoadedDataset:
    """Resolve ``request.name``: a registered name, else an existing folder."""
    if request.val_split is not None and not 0.0 < request.val_split < 1.0:
        raise InputError(
            f"--val-split {request.val_split} is not between 0 and 1", hint="e.g. --val-split 0.1"
        )
    entry = get_dataset_entry(request.name)
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


def _take(x: np.ndarray, y: np.ndarray, limit: int | None):
    return (x[:limit], y[:limit]) if limit else (x, y)


def in_memory_dataset(
    name: str,
    kind: str,
    classes: list[str],
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    request: DatasetRequest,
    hflip: bool,
    frames: int | None = None,
) -> LoadedDataset:
    """Wrap numpy splits as TensorSplits; split val off train when there is none."""
    import torch

    from cnnkit.data.memory import TensorSplit, channel_stats, split_off

    splits = {}
    for split, (x, y) in arrays.items():
        xt = torch.from_numpy(np.ascontiguousarray(x))
        lengths = None
        if frames is not None:
            lengths = torch.full((len(y),), xt.shape[2], dtype=torch.long)
        splits[split] = TensorSplit(xt, torch.from_numpy(y).long(), frames, lengths)
    if "val" not in splits:
        splits["train"], splits["val"] = split_off(splits["train"], request.val_split, request.seed)
    x0 = splits["train"].x
    mean, std = channel_stats(x0)
    size = (int(x0.shape[-2]), int(x0.shape[-1]))
    spec = InputSpec(int(x0.shape[1]), size, frames, tuple(mean), tuple(std))
    order = {"train": 0, "val": 1, "test": 2}
    splits = dict(sorted(splits.items(), key=lambda kv: order.get(kv[0], 3)))
    return LoadedDataset(name, kind, classes, spec, splits, hflip=hflip, in_memory=True)


# ---------------------------------------------------------------------------
# built-in generated datasets
# ---------------------------------------------------------------------------

_SYNTH_SIZES = {"shapes": (6000, 1000, 1000), "moving-shapes": (2400, 600, 600)}


def _synth_counts(name: str, limit: int | None) -> dict[str, int]:
    sizes = _SYNTH_SIZES[name]
    return {
        s: (min(n, limit) if limit else n)
        for s, n in zip(("train", "val", "test"), sizes, strict=True)
    }


@register_dataset("shapes", "image", "generated: 6 shape classes, 32x32 colour, 6000/1000/1000")
def _load_shapes(request: DatasetRequest) -> LoadedDataset:
    from cnnkit.data.synthetic import SHAPE_CLASSES, make_shapes

    size = request.img_size or 32
    arrays = {}
    for i, (split, n) in enumerate(_synth_counts("shapes", request.limit).items()):
        # Different seeds per split: the three splits never share an image.
        arrays[split] = make_shapes(n, seed=request.seed * 10 + i, size=size)
    return in_memory_dataset("shapes", "image", list(SHAPE_CLASSES), arrays, request, hflip=True)


@register_dataset(
    "moving-shapes",
    "video",
    "generated clips: class = direction of motion (left/right/up/down), 3x8x32x32, 2400/600/600",
)
def _load_moving_shapes(request: DatasetRequest) -> LoadedDataset:
    from cnnkit.data.synthetic import MOTION_CLASSES, make_moving_shapes

    size = request.img_size or 32
    frames = request.frames or request.default_frames
    arrays = {}
    for i, (split, n) in enumerate(_synth_counts("moving-shapes", request.limit).items()):
        arrays[split] = make_moving_shapes(n, seed=request.seed * 10 + i, frames=frames, size=size)
    # No flips: mirroring a clip turns "left" into "right".
    return in_memory_dataset(
        "moving-shapes", "video", list(MOTION_CLASSES), arrays, request, False, frames
    )


# ---------------------------------------------------------------------------
# torchvision datasets
# ---------------------------------------------------------------------------


def _torchvision_loader(name: str, hflip: bool):
    def load(request: DatasetRequest) -> LoadedDataset:
        from cnnkit.data.torchvision_sets import load_torchvision

        raw, classes = load_torchvision(name, request.data_dir)
        arrays = {}
        for split, (x, y) in raw.items():
            x, y = _take(x, y, request.limit)
            if request.img_size:
                x = _resize_all(x, x.shape[1], (request.img_size, request.img_size))
            arrays[split] = (x, y)
        return in_memory_dataset(name, "image", classes, arrays, request, hflip)

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


def _decode_split_in_memory(items, channels, size, frames, lengths, cap, warnings):
    """Decode a file list into a TensorSplit with threads, skipping unreadable files."""
    import torch

    from cnnkit.data.folders import decode_clip, decode_image, parallel_map
    from cnnkit.data.memory import TensorSplit

    if frames is None:
        results = parallel_map(lambda it: decode_image(it[0], channels, size), items)
    else:

        def clip(job):
            (path, _), length = job
            keep = min(length, cap)
            return decode_clip(path, (length - keep) // 2, keep, channels, size)

        results = parallel_map(clip, list(zip(items, lengths, strict=True)))
    arrays, labels, kept_lengths = [], [], []
    for (path, label), (arr, err) in zip(items, results, strict=True):
        if err is not None:
            warnings.append(f"skipping unreadable file {path}: {err.message}")
            continue
        arrays.append(arr)
        labels.append(label)
        if frames is not None:
            kept_lengths.append(arr.shape[1])
    if not arrays:
        return None
    y = torch.tensor(labels, dtype=torch.long)
    if frames is None:
        return TensorSplit(torch.from_numpy(np.stack(arrays)), y)
    longest = max(kept_lengths)
    padded = []
    for arr in arrays:  # pad short videos with their last frame to a common length
        if arr.shape[1] < longest:
            pad = np.repeat(arr[:, -1:], longest - arr.shape[1], axis=1)
            arr = np.concatenate([arr, pad], axis=1)
        padded.append(arr)
    x = torch.from_numpy(np.stack(padded))
    return TensorSplit(x, y, frames, torch.tensor(kept_lengths, dtype=torch.long))


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


def load_folder(request: DatasetRequest) -> LoadedDataset:
    """A class-per-subfolder dataset, decoded into memory when it fits the budget."""
    from cnnkit import console
    from cnnkit.data.folders import FileDataset, detect_channels, scan_folder, split_files

    scan = scan_folder(request.name)
    warnings = [f"ignored hidden folder {p}" for p in scan.hidden]
    if scan.empty_classes:
        warnings.append("empty class folder(s): " + ", ".join(scan.empty_classes))
    files = split_files(scan, request.val_split, request.seed)
    if request.limit:
        files = {s: items[: request.limit] for s, items in files.items()}
    size = (request.img_size,) * 2 if request.img_size else tuple(request.default_size)
    frames = (request.frames or request.default_frames) if scan.kind == "video" else None
    channels = detect_channels([p for p, _ in files["train"]], scan.kind)

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
                items, channels, size, frames, lengths[split], cap, warnings
            )
            if decoded is not None:
                splits[split] = decoded
        elif items:
            splits[split] = FileDataset(
                items, channels, size, frames, lengths[split], train=(split == "train")
            )
    for w in warnings:
        console.warn(w)
    for split in ("train", "val"):
        if split not in splits or len(splits[split]) == 0:
            raise DatasetError(
                f"no readable {split} samples in {scan.root}",
                hint="check the files with `cnnkit inspect FOLDER`",
            )
    if in_memory:
        from cnnkit.data.memory import channel_stats

        mean, std = channel_stats(splits["train"].x)
    else:
        mean, std = [0.5] * channels, [0.25] * channels  # a sample pass would cost an epoch
    spec = InputSpec(channels, (int(size[0]), int(size[1])), frames, tuple(mean), tuple(std))
    # Mirrors keep most photo classes but not motion directions, so no flips for videos.
    return LoadedDataset(
        str(scan.root.resolve()),
        scan.kind,
        scan.classes,
        spec,
        splits,
        hflip=scan.kind == "image",
        in_memory=in_memory,
        warnings=warnings,
    )
