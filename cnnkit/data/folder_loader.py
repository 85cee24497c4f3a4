"""Folder datasets: one subfolder per class (optionally under train/ val/ test/)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.data.arrays import Split, channel_stats
from cnnkit.data.builder import (
    limit_each,
)
from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.registration import DatasetRequest
from cnnkit.errors import DatasetError
from cnnkit.spec import WHITE, InputSpec

# ---------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------


def _decode_split_in_memory(
    items, channels, size, frames, lengths, warnings, background=WHITE
) -> Split | None:
    """Decode a file list with threads into a Split, skipping unreadable files (torch-free)."""
    if frames is None:
        return _decode_images(items, channels, size, warnings, background)
    from cnnkit.data.clips import stored_window
    from cnnkit.data.folders import decode_clip, parallel_map

    def clip(job):
        (path, _), length = job
        first, kept = stored_window(length, frames)
        return decode_clip(path, first, kept, channels, size)

    results = parallel_map(clip, list(zip(items, lengths, strict=True)))
    arrays, labels, kept_lengths, paths = [], [], [], []
    for (path, label), (arr, err) in zip(items, results, strict=True):
        if err is not None:
            warnings.append(f"skipping unreadable file {path}: {err.message}")
            continue
        arrays.append(arr)
        labels.append(label)
        paths.append(str(path))
        kept_lengths.append(arr.shape[1])
    if not arrays:
        return None
    y = np.asarray(labels, dtype=np.int64)
    longest = max(kept_lengths)
    padded = []
    for arr in arrays:  # pad short videos with their last frame to a common length
        if arr.shape[1] < longest:
            pad = np.repeat(arr[:, -1:], longest - arr.shape[1], axis=1)
            arr = np.concatenate([arr, pad], axis=1)
        padded.append(arr)
    return Split(np.stack(padded), y, frames, np.asarray(kept_lengths, np.int64), paths)


def _decode_images(items, channels, size, warnings, background) -> Split | None:
    """Images decoded by threads straight into one (N, C, H, W) array: no list of
    arrays stacked at the end, whose copy would hold the data twice at its peak."""
    from cnnkit.data.folders import decode_image, parallel_map

    x = np.empty((len(items), channels, int(size[0]), int(size[1])), np.uint8)

    def into(i: int) -> None:
        x[i] = decode_image(items[i][0], channels, size, background)

    results = parallel_map(into, range(len(items)))
    kept = []
    for i, (_, err) in enumerate(results):
        if err is not None:
            warnings.append(f"skipping unreadable file {items[i][0]}: {err.message}")
        else:
            kept.append(i)
    if not kept:
        return None
    if len(kept) < len(items):
        x = x[kept]
    y = np.asarray([items[i][1] for i in kept], dtype=np.int64)
    return Split(x, y, paths=[str(items[i][0]) for i in kept])


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

    Decoded splits are numpy arrays (a Split) either way; with ``request.numpy``
    file-backed splits yield numpy arrays too, and torch is never imported.
    """
    from cnnkit import console
    from cnnkit.data.clips import WINDOW_CLIPS
    from cnnkit.data.folders import (
        ChannelChoice,
        FileDataset,
        detect_channels,
        sample_items,
        scan_folder,
        split_files,
    )
    from cnnkit.data.preprocess import alpha_note

    scan = request.scan if request.scan is not None else scan_folder(request.name)
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
    # Videos keep up to WINDOW_CLIPS clip lengths of frames for random-start sampling.
    per_sample = channels * size[0] * size[1] * (WINDOW_CLIPS * frames if frames else 1)
    total = sum(len(v) for v in files.values()) * per_sample
    in_memory = total <= request.memory_budget

    splits = {}
    for split, items in files.items():
        if in_memory:
            decoded = _decode_split_in_memory(
                items, channels, size, frames, lengths[split], warnings, request.background
            )
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
    if in_memory:  # the same computation as for built-in data and a torch-free eval
        mean, std = channel_stats(splits["all" if "all" in splits else "train"].x)
    else:  # decoded as it trains: the statistics of a seeded sample of its files
        split = splits["all" if "all" in splits else "train"]
        mean, std, sampled = _sampled_stats(split, request.seed)
        decisions["normalisation"] = (
            f"mean/std from a seeded sample of {sampled:,} files "
            "(the data is decoded as it trains, not held in memory)"
        )
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


# Files decoded for the mean/std of a streamed split: the statistics of a few
# hundred images are within a fraction of a percent of the whole split's.
STATS_SAMPLE = 256
STATS_SAMPLE_CLIPS = 64  # a clip is many frames


def _sampled_stats(dataset: Any, seed: int) -> tuple[list[float], list[float], int]:
    """channel_stats of a seeded sample of a FileDataset's files, and how many were read
    (unreadable ones are left out)."""
    from cnnkit.data.folders import decode_clip, decode_image, parallel_map

    n = len(dataset)
    k = min(n, STATS_SAMPLE_CLIPS if dataset.frames else STATS_SAMPLE)
    index = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))

    def decode(i: int) -> np.ndarray:
        path, _ = dataset.items[i]
        if dataset.frames is None:
            return decode_image(path, dataset.channels, dataset.size, dataset.background)
        start = dataset.clip_start(int(i))  # centred: the clip validation takes
        return decode_clip(path, start, dataset.frames, dataset.channels, dataset.size)

    arrays = [a for a, err in parallel_map(decode, [int(i) for i in index]) if err is None]
    if not arrays:
        return [0.5] * dataset.channels, [0.25] * dataset.channels, 0
    return (*channel_stats(np.stack(arrays)), len(arrays))
