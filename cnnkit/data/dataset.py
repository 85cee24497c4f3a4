"""What every dataset source hands to training: splits, classes and an input spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputSpec:
    """What a model trained on the data expects.

    ``size`` is (H, W); ``frames`` is the clip length T for video data, else
    None; ``mean``/``std`` are per channel in [0, 1] units, applied after
    dividing uint8 pixels by 255.
    """

    channels: int
    size: tuple[int, int]
    frames: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain types only: this goes into checkpoints loaded with weights_only=True."""
        return {
            "channels": int(self.channels),
            "size": [int(self.size[0]), int(self.size[1])],
            "frames": int(self.frames) if self.frames is not None else None,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    def shape(self) -> tuple[int, ...]:
        """(C, H, W) or (C, T, H, W) of one sample."""
        if self.frames is None:
            return (self.channels, *self.size)
        return (self.channels, self.frames, *self.size)


@dataclass
class LoadedDataset:
    """A dataset ready to train on.

    ``splits`` maps "train", "val" and (when there is one) "test" to either a
    ``TensorSplit`` (decoded, in memory) or a ``torch.utils.data.Dataset`` that
    decodes files on demand and yields (uint8 tensor, int label).
    ``hflip``: whether mirroring an input keeps its label (not for digits, nor
    for motion directions). ``warnings``: things the user should hear about
    (corrupt files skipped, hidden folders ignored). ``decisions``: what was
    decided for the user (channels, flips, a validation split, a --limit
    sample), each in words: said on stderr and kept in the run's config.yaml.
    """

    name: str
    kind: str  # "image" or "video"
    classes: list[str]
    input: InputSpec
    splits: dict[str, Any]
    hflip: bool = False
    in_memory: bool = True
    warnings: list[str] = field(default_factory=list)
    decisions: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}
