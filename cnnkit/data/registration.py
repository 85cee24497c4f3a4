"""What a dataset source is asked for, and the table sources register in.

A leaf of cnnkit.data: the sources (cnnkit.data.builtin, the folder loader)
register here without importing the registry that imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnkit.data.dataset import LoadedDataset
from cnnkit.spec import WHITE

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
    # File-backed splits yield numpy arrays (FileDataset(as_numpy=True)) and torch is
    # never imported: folder datasets only (eval of an exported model).
    numpy: bool = False
    # What images drawn only in their alpha channel are composited over (folders).
    background: tuple[int, int, int] = WHITE
    # A folder's scan (cnnkit.data.folders.FolderScan) already made: training's
    # plan scans the folder for its kind, and the loader takes that scan.
    scan: Any = field(default=None, compare=False, repr=False)


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
