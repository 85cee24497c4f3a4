"""What every dataset source hands to training: splits, classes and an input spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnkit.spec import InputSpec


@dataclass
class LoadedDataset:
    """A dataset ready to train on.

    ``splits`` maps "train", "val" and (when there is one) "test" to either a
    ``Split`` (decoded, numpy arrays in memory) or a map-style dataset that
    decodes files on demand and yields (uint8 tensor, int label), or (uint8
    numpy array, int label) for a torch-free caller.
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
