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
from pathlib import Path

import cnnkit.data.builtin  # noqa: F401  (registers the built-in datasets)
from cnnkit.data.builder import in_memory_dataset
from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.folder_loader import load_folder
from cnnkit.data.registration import (
    _REGISTRY,
    DEFAULT_MEMORY_BUDGET,
    DatasetEntry,
    DatasetRequest,
    register_dataset,
)
from cnnkit.errors import DatasetError, InputError, close_match_hint

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DatasetEntry",
    "DatasetRequest",
    "get_dataset_entry",
    "in_memory_dataset",
    "list_datasets",
    "load_dataset",
    "load_folder",
    "memory_budget_from_env",
    "register_dataset",
]


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
