"""Folders of images or videos, one subfolder per class, optionally split.

Layouts understood::

    root/<class>/*.png                      -> train + seeded --val-split
    root/train/<class>/..., root/val/...    -> given splits (``valid`` = ``val``,
    root/test/<class>/...                      ``test`` optional)

Files are found recursively inside each class folder; hidden folders and
files (``.ipynb_checkpoints``, ``.DS_Store``) are ignored. Whether the folder
holds images or videos is detected from the extensions. When the decoded
uint8 pixels fit the memory budget everything is decoded once, in threads
(OpenCV releases the GIL), into a Split; otherwise the files are decoded
in DataLoader workers, epoch after epoch. Corrupt files are reported and
skipped in both cases, never crashing an epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data.clips import centred_start, random_start, stored_window
from cnnkit.data.preprocess import (
    Colour,
    flatten_alpha,
    has_colour,
    prepare_clip,
    prepare_image,
)
from cnnkit.errors import CnnkitError, DatasetError
from cnnkit.spec import WHITE

SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def _extensions() -> tuple[frozenset[str], frozenset[str]]:
    from cnnkit.io.image import IMAGE_EXTENSIONS
    from cnnkit.io.video import VIDEO_EXTENSIONS

    return IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


@dataclass
class FolderScan:
    """What is in a dataset folder, before decoding anything.

    ``files`` maps split ("train", "val", "test", or "all" when the folder is
    not split) to a list of (path, label index).
    """

    root: Path
    kind: str
    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]
    hidden: list[Path] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    unreadable_folders: list[tuple[Path, str]] = field(default_factory=list)  # (folder, reason)

    def counts(self, split: str) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for _, label in self.files.get(split, []):
            out[self.classes[label]] += 1
        return out


def _class_dirs(folder: Path, hidden: list[Path]) -> list[Path]:
    from cnnkit.io.sources import is_hidden

    dirs = []
    for p in sorted(folder.iterdir()):
        if not p.is_dir():
            continue
        if is_hidden(p.name):
            hidden.append(p)
        else:
            dirs.append(p)
    return dirs


def _supported_hint() -> str:
    images, videos = _extensions()
    return (
        "put one subfolder per class in it, holding images ("
        + ", ".join(sorted(images))
        + ") or videos ("
        + ", ".join(sorted(videos))
        + ")"
    )


def _split_dirs(root: Path, top: list[Path]) -> dict[str, Path]:
    """train/ val/ test/ among ``top`` by split; refuses layouts that could be read two ways."""
    found: dict[str, list[Path]] = {}
    for d in top:
        if d.name.lower() in SPLIT_ALIASES:
            found.setdefault(SPLIT_ALIASES[d.name.lower()], []).append(d)
    for split, dirs in found.items():
        if len(dirs) > 1:
            names = " and ".join(f"{d.name}/" for d in dirs)
            raise DatasetError(
                f"{root} has both {names}: which one is the {split} split?",
                hint="merge them into one folder",
            )
    others = [d.name for d in top if d.name.lower() not in SPLIT_ALIASES]
    if found and others:
        splits = ", ".join(f"{d[0].name}/" for d in found.values())
        raise DatasetError(
            f"{root} mixes split folders ({splits}) with other folders ({', '.join(others)}): "
            "a class named like a split, or a folder that is neither",
            hint="put the classes under train/ (val/, test/), or rename a class folder called "
            "train, val, valid, validation or test",
        )
    return {split: dirs[0] for split, dirs in found.items()}


def scan_folder(root: str | Path) -> FolderScan:
    """List classes and files of a dataset folder (DatasetError when there are none)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist", hint=_supported_hint())
    hidden: list[Path] = []
    top = _class_dirs(root, hidden)
    split_dirs = _split_dirs(root, top)
    if split_dirs:
        per_split = {s: _class_dirs(d, hidden) for s, d in split_dirs.items()}
    else:
        per_split = {"all": top}
    classes = sorted({d.name for dirs in per_split.values() for d in dirs})
    if not classes:
        raise DatasetError(f"no class folders found in {root}", hint=_supported_hint())
    index = {c: i for i, c in enumerate(classes)}

    from cnnkit.io.sources import walk_media

    images, videos = _extensions()
    found: dict[str, list[tuple[Path, int]]] = {}
    unreadable: list[tuple[Path, str]] = []
    n_img = n_vid = 0
    for split, dirs in per_split.items():
        found[split] = []
        for d in dirs:
            walk = walk_media(d)  # every file: those of the other kind are reported as ignored
            hidden += [Path(p) for p in walk.hidden]
            unreadable += [(Path(p), why) for p, why in walk.unreadable]
            for f in map(Path, walk.files):
                found[split].append((f, index[d.name]))
                ext = f.suffix.lower()
                n_img += ext in images
                n_vid += ext in videos
    if n_img == 0 and n_vid == 0:
        if unreadable:  # say why, rather than "none found" (a path over PATH_MAX, no permission)
            folder, why = unreadable[0]
            raise DatasetError(
                f"no images or videos found in the class folders of {root}: "
                f"{len(unreadable)} folder(s) there cannot be read ({why}: {folder})",
                hint="check their permissions; a path too long needs the dataset moved "
                "to a shorter one",
            )
        raise DatasetError(
            f"no images or videos found in the class folders of {root}", hint=_supported_hint()
        )
    kind = "video" if n_vid > n_img else "image"
    wanted = videos if kind == "video" else images
    files: dict[str, list[tuple[Path, int]]] = {}
    ignored: list[Path] = []
    for split, items in found.items():
        files[split] = [(f, lab) for f, lab in items if f.suffix.lower() in wanted]
        ignored += [f for f, _ in items if f.suffix.lower() not in wanted]
    scan = FolderScan(root, kind, classes, files, hidden, [], ignored, unreadable)
    train_split = "all" if "all" in files else "train"
    if train_split not in files:
        raise DatasetError(
            f"{root} has split folders but no train/ folder",
            hint="add train/<class>/... (val/ and test/ are optional)",
        )
    scan.empty_classes = [c for c, n in scan.counts(train_split).items() if n == 0]
    return scan


def _split_items(
    items: list[tuple[Path, int]], fraction: float, seed: int
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(train, val) file lists: ``fraction`` of each class held out, seeded."""
    from cnnkit.data.sampling import stratified_split

    kept, held = stratified_split(np.array([lab for _, lab in items], np.int64), fraction, seed)
    return [items[i] for i in kept], [items[i] for i in held]


def sample_items(items: list[tuple[Path, int]], limit: int, seed: int) -> list[tuple[Path, int]]:
    """A seeded, class-stratified sample of at most ``limit`` (path, label) pairs, in order."""
    from cnnkit.data.sampling import stratified_sample

    index = stratified_sample(np.array([lab for _, lab in items], np.int64), limit, seed)
    return [items[i] for i in index]


def split_files(scan: FolderScan, val_split: float, seed: int) -> dict[str, list[tuple[Path, int]]]:
    """train/val(/test) file lists: the folder's own splits, or a seeded ``val_split``.

    ``val_split`` 0 on a folder without a val/ folder means no validation split.
    """
    files = dict(scan.files)
    if "all" in files:
        files["train"] = files.pop("all")
    where = scan.root if "all" in scan.files else scan.root / "train"
    if not files["train"]:
        raise DatasetError(
            f"no training files in the class folders of {where}", hint=_supported_hint()
        )
    if "val" not in files and val_split > 0:
        files["train"], files["val"] = _split_items(files["train"], val_split, seed)
        if not files["val"]:
            raise DatasetError(
                f"--val-split {val_split:g} holds out no file of {where} for validation",
                hint="raise --val-split (each class needs 2+ files), add a val/ folder, "
                "or train without validation with --val-split 0",
            )
        if not files["train"]:
            raise DatasetError(
                f"--val-split {val_split:g} leaves no file of {where} for training: "
                "every one went to validation",
                hint="lower --val-split, e.g. --val-split 0.1",
            )
    order = {"train": 0, "val": 1, "test": 2}
    return dict(sorted(files.items(), key=lambda kv: order.get(kv[0], 3)))


# Channel detection reads at most this many files, spread over the classes.
CHANNEL_SAMPLE = 512
_CHANNEL_CHUNK = 32  # files decoded at a time; a colour one ends the search


@dataclass(frozen=True)
class ChannelChoice:
    """How many channels a folder dataset gets, and why (said on stderr, kept in config.yaml).

    ``alpha``: how the images checked had their alpha flattened ("composited" or
    "dropped", see flatten_alpha) mapped to the first such file.
    """

    channels: int
    reason: str
    alpha: dict[str, str] = field(default_factory=dict)


def _spread_over_classes(items: Sequence[tuple[Path, int]], limit: int) -> list[Path]:
    """Up to ``limit`` paths taken round-robin over the classes, evenly spaced within each."""
    by_class: dict[int, list[Path]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    per_class = max(1, -(-limit // max(1, len(by_class))))
    picked = []
    for paths in by_class.values():
        if len(paths) > per_class:
            step = len(paths) / per_class
            paths = [paths[int(i * step)] for i in range(per_class)]
        picked.append(paths)
    # Round-robin, so the first chunk read already covers every class.
    out = [p for group in zip_longest(*picked) for p in group if p is not None]
    return out[:limit]


def detect_channels(files: dict[str, list[tuple[Path, int]]], kind: str) -> ChannelChoice:
    """1 channel when every image checked is gray, else 3 (videos: 3).

    All files are checked when there are at most CHANNEL_SAMPLE of them, else
    a sample spread over every class and split: one colour image anywhere makes
    the dataset colour, so a class that differs only in colour is never lost.
    A 3-channel file whose channels are equal everywhere counts as gray.
    """
    if kind == "video":
        return ChannelChoice(3, "video frames are read in colour")
    from cnnkit.io.image import read_image

    every = [item for items in files.values() for item in items]
    sample = _spread_over_classes(every, CHANNEL_SAMPLE)
    checked = 0
    alpha: dict[str, str] = {}
    colour_seen = None
    for start in range(0, len(sample), _CHANNEL_CHUNK):
        chunk = sample[start : start + _CHANNEL_CHUNK]
        for path, (image, err) in zip(chunk, parallel_map(read_image, chunk), strict=True):
            if err is not None:
                continue
            checked += 1
            # Colour as shown: an image drawn only in alpha is judged composited.
            image, how = flatten_alpha(image)
            if how is not None:
                alpha.setdefault(how, str(path))
            if colour_seen is None and has_colour(image):
                colour_seen = path
        if colour_seen is not None:  # the rest of the chunk was read for its alpha
            reason = f"3 channels: colour images found (e.g. {colour_seen})"
            return ChannelChoice(3, reason, alpha)
    if checked == 0:
        return ChannelChoice(3, "3 channels: no image could be read to check")
    of = (
        "all" if len(sample) == len(every) else f"a sample spread over the classes, of {len(every)}"
    )
    return ChannelChoice(1, f"1 channel: the {checked} images checked ({of}) are all gray", alpha)


def glyph_classes(classes: Sequence[str]) -> bool:
    """Whether every class is named by one character (digits, letters): mirrored glyphs change."""
    return bool(classes) and all(len(c) == 1 for c in classes)


def decode_image(
    path: Path, channels: int, size: Sequence[int], background: Colour = WHITE
) -> np.ndarray:
    """One image file -> C×H×W uint8 (ReadError if it cannot be decoded).

    A large JPEG is decoded at a reduced scale and resized to ``size`` at once
    (cnnkit.io.image), as predict and explain decode it: a model sees the
    same pixels in training and at inference.
    """
    from cnnkit.io.image import read_image

    return prepare_image(read_image(path, target=size), channels, size, background)


def decode_clip(path: Path, start: int, frames: int, channels: int, size: Sequence[int]):
    """Frames [start, start+frames) of a video -> C×T×H×W uint8."""
    from cnnkit.io.video import read_video_clip

    return prepare_clip(read_video_clip(path, start, frames), channels, size)


class FileDataset:
    """Decodes images or clips on demand: a batch at a time in DataLoader workers.

    ``decode_batch`` gives a whole batch as one uint8 array (the unit the
    training loader's workers decode); ``__getitem__`` one sample, as
    (C×H×W or C×T×H×W uint8 tensor, label), a clip centred. A file that
    cannot be decoded is said once on stderr and left out of its batch
    (``__getitem__`` gives None, which ``collate_skipping`` drops), so one
    corrupt file never ends an epoch. With ``as_numpy`` samples are uint8
    numpy arrays and torch is never imported (eval of an exported model).

    A training clip starts at a random frame of the video's ``stored_window``
    (``cnnkit.data.clips``), from a draw the caller makes (``EpochOrder``
    draws them from its seeded generator, as for clips held in memory), so
    a run repeats with any number of workers; other clips are centred.
    """

    def __init__(
        self,
        items: list[tuple[Path, int]],
        channels: int,
        size: Sequence[int],
        frames: int | None = None,
        lengths: Sequence[int] | None = None,
        train: bool = False,
        seed: int = 0,
        as_numpy: bool = False,
        background: Colour = WHITE,
    ) -> None:
        self.items = items
        self.background = background
        self.channels = channels
        self.size = tuple(size)
        self.frames = frames
        self.lengths = list(lengths) if lengths is not None else None
        self.train = train
        self.seed = seed
        self.as_numpy = as_numpy
        self.failed: list[str] = []

    def __len__(self) -> int:
        return len(self.items)

    def clip_start(self, index: int, uniform: float | None = None) -> int:
        """First frame of sample ``index``'s clip: within its stored window from a draw in
        [0, 1) (``uniform``, training), else centred in the video."""
        length = self.lengths[index] if self.lengths else self.frames
        if uniform is None:
            return centred_start(length, self.frames)
        first, kept = stored_window(length, self.frames)
        return first + random_start(kept, self.frames, uniform)

    def decode(self, index: int, uniform: float | None = None) -> np.ndarray | None:
        """Sample ``index`` as C×H×W or C×T×H×W uint8, or None (said once) if unreadable."""
        path = self.items[index][0]
        try:
            if self.frames is None:
                return decode_image(path, self.channels, self.size, self.background)
            start = self.clip_start(index, uniform)
            return decode_clip(path, start, self.frames, self.channels, self.size)
        except CnnkitError as exc:
            if str(path) not in self.failed:
                self.failed.append(str(path))
                from cnnkit import console

                console.warn(f"skipping unreadable file {path}: {exc.message}")
            return None

    def sample_shape(self) -> tuple[int, ...]:
        """(C, H, W) or (C, T, H, W) of one decoded sample."""
        clip = () if self.frames is None else (self.frames,)
        return (self.channels, *clip, *self.size)

    def decode_batch(
        self, index: Sequence[int], uniform: Sequence[float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``index`` as one (B, C, ...) uint8 array and their (B,) int64 labels.

        ``uniform``: one draw per sample placing training clips (see clip_start).
        Unreadable files are left out, so B may be smaller than ``len(index)``.
        """
        x = np.empty((len(index), *self.sample_shape()), np.uint8)
        y = np.empty(len(index), np.int64)
        kept = 0
        for j, i in enumerate(index):
            arr = self.decode(int(i), None if uniform is None else float(uniform[j]))
            if arr is not None:
                x[kept] = arr
                y[kept] = self.items[int(i)][1]
                kept += 1
        return x[:kept], y[:kept]

    def __getitem__(self, index: int):
        # One sample at a time is evaluation's way (a clip is centred); training
        # takes decode_batch with its draws.
        arr = self.decode(int(index))
        if arr is None:
            return None
        label = self.items[int(index)][1]
        if self.as_numpy:
            return arr, label
        import torch

        return torch.from_numpy(arr), label


def collate_skipping(batch: list[Any]):
    """Stack (tensor, label) pairs, dropping the None of unreadable files."""
    import torch

    batch = [b for b in batch if b is not None]
    if not batch:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    x = torch.stack([b[0] for b in batch])
    y = torch.tensor([b[1] for b in batch], dtype=torch.long)
    return x, y


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], threads: int | None = None):
    """``[fn(item)]`` in a thread pool; each result is (value, None) or (None, CnnkitError)."""

    def safe(item):
        try:
            return fn(item), None
        except CnnkitError as exc:
            return None, exc

    if not threads:
        from cnnkit.io.cpu import cpu_budget

        # Decoding waits on files too: a couple more threads than cores keep them busy.
        threads = min(16, cpu_budget().cores + 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(safe, items))
