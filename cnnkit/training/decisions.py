"""What a training run decided for the user, in words: said on stderr, kept in config.yaml."""

from __future__ import annotations

from typing import Any

from cnnkit.training.start import start_decisions


def run_decisions(cfg: Any, data: Any, has_val: bool, start: Any) -> dict[str, str]:
    """What was decided for the user, in words: the data's own notes, what the starting
    weights asked of the input, then flips and validation."""
    decisions = dict(data.decisions)
    decisions.update(start_decisions(start, cfg, data))
    if not cfg.augment:
        decisions["hflip"] = "no augmentation (--no-augment), so no flips"
    elif cfg.flip is not None:
        decisions["hflip"] = (
            "horizontal flips in augmentation (--flip)"
            if cfg.flip
            else "no horizontal flips (--no-flip)"
        )
    given = cfg.explicit is None or "val_split" in cfg.explicit
    if has_val and given and "val_split" not in decisions:
        decisions["val_split"] = (
            "validation: the dataset's own val split (--val-split does not apply)"
        )
    if not has_val:
        decisions["val_split"] = (
            "no validation split (--val-split 0): training uses every sample, "
            "and best.ckpt is the last epoch's"
        )
    return decisions


# Images this many times larger than the input size they are shrunk to (on their
# shorter side) lose what a model would need: said as a warning.
_SHRINK_WARNING = 4


def input_size_decisions(
    cfg: Any, data: Any, request: Any, start: Any
) -> tuple[dict[str, str], bool]:
    """The input size (and clip length) cnnkit chose, in words; and whether images shrink a lot.

    Given options (--img-size, --frames) and sizes the starting weights asked
    for (said by start_decisions) are not decisions of cnnkit's. Images
    ``_SHRINK_WARNING`` times larger than the size chosen make the note a warning.
    """
    notes: dict[str, str] = {}
    shrunk = False
    h, w = data.input.size
    folder = request.scan is not None
    if not cfg.img_size and not start.img_size:
        whose = f"{cfg.model}'s default input size" if folder else "the dataset's own size"
        note = f"input size {h}×{w}: {whose} (--img-size to change)"
        typical = (
            _typical_image_size(_loaded_paths(data)) if folder and data.kind == "image" else None
        )
        if typical is not None and min(typical) >= _SHRINK_WARNING * max(h, w):
            shrunk = True
            note += (
                f"; the images are about {typical[0]}×{typical[1]} (median of a sample), "
                f"so fine detail is lost: --img-size {min(224, min(typical))} keeps more"
            )
        notes["img_size"] = note
    if data.input.frames and not cfg.frames and not start.frames:
        whose = f"{cfg.model}'s default clip length" if folder else "the dataset's own length"
        notes["frames"] = f"clips of {data.input.frames} frames: {whose} (--frames to change)"
    return notes, shrunk


def _loaded_paths(data: Any) -> list[Any]:
    """The files the splits were read from (not those skipped as unreadable, where known)."""
    paths: list[Any] = []
    for split in data.splits.values():
        if getattr(split, "paths", None):
            paths.extend(split.paths)
        elif getattr(split, "items", None):  # decoded from files as it trains
            paths.extend(path for path, _ in split.items)
    return paths


def _typical_image_size(items: list[Any], sample: int = 32) -> tuple[int, int] | None:
    """(height, width): the median of up to ``sample`` image headers, spread over ``items``."""
    from cnnkit.io.headers import image_size

    if not items:
        return None
    step = max(1, len(items) // sample)
    sizes = []
    for path in items[::step][:sample]:
        try:
            with open(path, "rb") as f:
                size = image_size(f.read(1 << 18))  # a JPEG's size may follow its EXIF block
        except OSError:
            continue
        if size is not None:
            sizes.append(size)
    if not sizes:
        return None
    widths, heights = sorted(s[0] for s in sizes), sorted(s[1] for s in sizes)
    return heights[len(heights) // 2], widths[len(widths) // 2]
