"""torchvision's datasets, in torchvision's own folder layout, decoded once into uint8 tensors.

Files already under the data folder are used as they are: no network at all.
Only when they are missing is torchvision asked to download them, and if that
fails (offline) the error names the folder and the files expected there, so
they can be copied in by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.errors import DatasetError

DIGITS = [str(d) for d in range(10)]


@dataclass(frozen=True)
class TorchvisionSet:
    name: str
    class_name: str  # the torchvision.datasets class
    hflip: bool  # whether horizontal flips keep the label (not for digits or characters)


TORCHVISION_SETS = {
    s.name: s
    for s in (
        TorchvisionSet("mnist", "MNIST", False),
        TorchvisionSet("fashion-mnist", "FashionMNIST", True),
        TorchvisionSet("kmnist", "KMNIST", False),
        TorchvisionSet("cifar10", "CIFAR10", True),
        TorchvisionSet("cifar100", "CIFAR100", True),
        TorchvisionSet("svhn", "SVHN", False),
    )
}


def default_data_dir() -> Path:
    """$CNNKIT_DATA, else the user cache folder ($XDG_CACHE_HOME or ~/.cache)/cnnkit."""
    env = os.environ.get("CNNKIT_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "cnnkit"


def expected_files(name: str, root: Path) -> list[Path]:
    """The files torchvision reads for dataset ``name`` under ``root``."""
    from torchvision import datasets

    cls = getattr(datasets, TORCHVISION_SETS[name].class_name)
    if name in ("mnist", "fashion-mnist", "kmnist"):
        raw = root / cls.__name__ / "raw"
        return [raw / os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    if name in ("cifar10", "cifar100"):
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [root / cls.base_folder / f for f in files]
    return [root / v[1] for k, v in cls.split_list.items() if k in ("train", "test")]


def _require_scipy() -> None:
    """SVHN ships as MATLAB files, which torchvision reads with scipy (not a cnnkit dependency)."""
    try:
        import scipy.io  # noqa: F401
    except ImportError as exc:
        raise DatasetError(
            "dataset 'svhn' needs scipy to read its .mat files, and scipy is not installed",
            hint="pip install scipy",
        ) from exc


def _open(name: str, root: Path, train: bool):
    from torchvision import datasets

    cls = getattr(datasets, TORCHVISION_SETS[name].class_name)
    kwargs = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    if name == "svhn":
        _require_scipy()
    try:
        return cls(str(root), download=False, **kwargs)
    except RuntimeError:
        pass  # files missing (or damaged): torchvision's own check said so; download below
    root.mkdir(parents=True, exist_ok=True)
    try:
        if os.environ.get("CNNKIT_OFFLINE", "") not in ("", "0"):
            raise OSError("CNNKIT_OFFLINE is set")
        return cls(str(root), download=True, **kwargs)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        # URLError/HTTPError/timeouts are OSErrors; torchvision's failed checksum is a
        # RuntimeError; a damaged archive a ValueError or EOFError.
        # One line, as every error: the first line of the reason, the files by name.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        paths = expected_files(name, root)
        folder = os.path.commonpath([str(p.parent) for p in paths]) if paths else str(root)
        files = ", ".join(p.name for p in paths)
        raise DatasetError(
            f"dataset '{name}' is not in {root} and could not be downloaded ({reason})",
            hint=f"connect to the internet once, or copy torchvision's files into {folder}: "
            f"{files}",
        ) from exc


def _arrays(name: str, ds) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) uint8 and (N,) int64 from a torchvision dataset's decoded arrays."""
    if name in ("mnist", "fashion-mnist", "kmnist"):
        x = ds.data.numpy()[:, None]  # MNIST keeps (N, 28, 28) uint8 in .data
        y = ds.targets.numpy()
    elif name in ("cifar10", "cifar100"):
        x = ds.data.transpose(0, 3, 1, 2)  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        y = np.asarray(ds.targets)
    else:
        x = ds.data  # SVHN is already (N, 3, 32, 32)
        y = np.asarray(ds.labels)
    return np.ascontiguousarray(x, dtype=np.uint8), y.astype(np.int64)


def load_torchvision(
    name: str, data_dir: str | Path | None = None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Train and test splits of ``name`` as uint8 arrays, plus class names.

    Returns ({"train": (x, y), "test": (x, y)}, classes); x is (N, C, H, W).
    Digits (mnist, svhn) are named "0".."9".
    """
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    splits = {}
    classes: list[str] = []
    for split, train in (("train", True), ("test", False)):
        ds = _open(name, root, train)
        splits[split] = _arrays(name, ds)
        classes = DIGITS if name in ("mnist", "svhn") else [str(c) for c in ds.classes]
    return splits, classes
