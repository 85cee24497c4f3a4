"""The built-in datasets: generated shapes and moving shapes, and torchvision's sets."""

from __future__ import annotations

from cnnkit.data.builder import (
    in_memory_dataset,
)
from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.registration import DatasetRequest, register_dataset
from cnnkit.errors import DatasetError

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
