"""Which samples ``cnnkit eval`` measures: the checkpoint's own splits, or a given dataset.

The classes must be the checkpoint's, in the same order; for a pretrained
model named MODEL:DATA (1,000 ImageNet or 400 Kinetics classes) a folder may
hold any of them, matched by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import DatasetError, InputError


@dataclass
class EvalData:
    """A dataset split chosen for eval: its name, the split, samples and their ids."""

    dataset: str
    split: str
    # A Split (decoded, in memory) or a map-style dataset of (uint8 tensor, label); with
    # numpy=True a Split or a FileDataset of (uint8 numpy array, label)
    data: Any
    classes: list[str]
    ids: list[str]  # file paths where known, else "split[index]"
    # The checkpoint's class index of each of the dataset's classes, when they
    # are a subset of the checkpoint's (MODEL:DATA references); None: the same.
    label_map: list[int] | None = None


def _recorded_data_dir(options: dict) -> str | None:
    """The --data-dir training used, when it still exists here (else the usual default)."""
    recorded = options.get("data_dir")
    return str(recorded) if recorded and Path(recorded).is_dir() else None


def _plain_folder(name: str) -> bool:
    """Whether ``name`` is a dataset folder without train/ val/ test/ subfolders."""
    path = Path(name).expanduser()
    if not path.is_dir():
        return False
    from cnnkit.data.folders import scan_folder

    return "all" in scan_folder(path).files


def load_eval_data(
    ckpt: Any,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    numpy: bool = False,
) -> EvalData:
    """The samples ``cnnkit eval`` measures.

    - No ``dataset``: the checkpoint's own, loaded the way training loaded it
      (size, frames, validation share and seed from the checkpoint), so the val
      split holds exactly the samples training measured; ``split`` defaults to
      test, else val.
    - A folder without train/ val/ test/ subfolders: every file in it (split
      "all"); ``split`` does not apply.
    - A folder with split subfolders, or a dataset name: ``split`` chooses,
      default test, else val.

    Training's ``--limit`` is never inherited; ``limit`` takes a seeded,
    class-stratified sample of the chosen split. The dataset's classes must be
    the checkpoint's, in the same order (a DatasetError names the differences).

    ``numpy``: the samples are numpy arrays and torch is never imported (an
    exported model). Built-in datasets are read with torch where it is
    installed (said on stderr), else they are a DatasetError.
    """
    from cnnkit.data.registry import DatasetRequest, load_dataset, memory_budget_from_env

    options = ckpt.meta.options  # cnnkit train keeps its flags here
    spec = ckpt.input
    size = spec.size
    name = dataset or ckpt.dataset
    if getattr(ckpt, "reference", False) and dataset is None:
        raise DatasetError(
            f"{ckpt.path} is a pretrained model, not a training run: it has no data of its own",
            hint="give --dataset FOLDER with one subfolder per class, named by the weights' "
            "categories (e.g. goldfish/, 'great white shark'/)",
        )
    if not name:
        raise DatasetError(
            f"checkpoint {ckpt.path} does not say which dataset it was trained on",
            hint="give one with --dataset NAME|PATH",
        )
    whole = dataset is not None and _plain_folder(dataset)
    reference = bool(getattr(ckpt, "reference", False))
    if whole and split is not None:
        raise InputError(
            f"--split {split}: folder {dataset} has no train/ val/ test/ subfolders, so eval "
            "measures every file in it",
            hint="leave out --split"
            + ("" if reference else ", or leave out --dataset to measure training's own splits"),
        )
    # A pretrained model (MODEL:DATA) had no training run: nothing is held out of train/.
    val_split = 0.0 if reference else options.get("val_split")
    if numpy and _needs_torch(str(name)):
        # A built-in dataset (torchvision's files, generated tensors) is read with torch
        # where it is installed; the model still runs in ONNX Runtime.
        from cnnkit import console

        console.info(f"note: built-in dataset '{name}' is read with torch; the model runs in "
                     "ONNX Runtime")  # fmt: skip
        numpy = False
    request = DatasetRequest(
        name=str(name),
        data_dir=data_dir or _recorded_data_dir(options),
        img_size=size[0] if size[0] == size[1] else None,
        frames=spec.frames,
        val_split=float(0.1 if val_split is None else val_split),
        seed=int(ckpt.seed if ckpt.seed is not None else 0),
        limit=limit,
        default_size=(size[0], size[1]),
        default_frames=spec.frames or 8,
        memory_budget=memory_budget_from_env(),
        channels=spec.channels,
        background=spec.background,
        whole=whole,
        numpy=numpy,
    )
    loaded = load_dataset(request)
    if "channels" in loaded.decisions and request.channels is not None:
        from cnnkit import console

        console.info(f"note: {loaded.decisions['channels']}")
    if (loaded.kind == "video") != spec.is_video:
        what = "video clips" if spec.is_video else "images"
        raise DatasetError(
            f"{ckpt.path} classifies {what}, and dataset '{loaded.name}' holds "
            + ("videos" if loaded.kind == "video" else "images"),
            hint=f"evaluate it on a dataset of {what}",
        )
    label_map = None
    if reference:
        label_map = map_classes(list(ckpt.classes), list(loaded.classes), loaded.name)
    else:
        check_classes(list(ckpt.classes), list(loaded.classes), loaded.name)
    if whole:
        split = "all"
    elif split is None:
        split = "test" if "test" in loaded.splits else "val"
    if split not in loaded.splits:
        if split == "val" and dataset is None and request.val_split == 0:
            raise DatasetError(
                f"checkpoint {ckpt.path} was trained with --val-split 0 on '{loaded.name}', "
                "which has no test split: no data was held out to measure it on",
                hint="measure it on other data with --dataset FOLDER (or --split train)",
            )
        raise DatasetError(
            f"dataset '{loaded.name}' has no {split} split",
            hint=f"it has: {', '.join(loaded.splits)}; choose one with --split",
        )
    data = loaded.splits[split]
    ids = _sample_ids(data, split)
    return EvalData(loaded.name, split, data, list(loaded.classes), ids, label_map)


def _needs_torch(name: str) -> bool:
    """Whether ``name`` is a built-in dataset (read with torch) and torch is installed."""
    import importlib.util

    from cnnkit.data.registry import get_dataset_entry

    if get_dataset_entry(name) is None:
        return False
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # an import hook that refuses it: as good as missing
        return False


def _class_key(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).casefold()


def map_classes(known: list[str], found: list[str], dataset: str) -> list[int]:
    """The index in ``known`` of each class in ``found``, matched by name.

    An exact name wins; otherwise case, underscores and repeated spaces do
    not matter ("great_white_shark" is "great white shark"). A name not among
    ``known``, or one that names two of them (ImageNet's "Cardigan" the corgi
    and "cardigan" the sweater, written "CARDIGAN"), is a DatasetError.
    """
    exact = {name: i for i, name in enumerate(known) if known.count(name) == 1}
    index: dict[str, list[int]] = {}
    for i, name in enumerate(known):
        index.setdefault(_class_key(name), []).append(i)
    found_keys = [c for c in found if c not in exact]
    unknown = [c for c in found_keys if _class_key(c) not in index]
    if unknown:
        from cnnkit.errors import close_match_hint

        raise DatasetError(
            f"dataset '{dataset}' has classes the model does not know: {', '.join(unknown[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""),
            hint=close_match_hint(unknown[0], known, "class"),
        )
    ambiguous = [c for c in found_keys if len(index[_class_key(c)]) > 1]
    if ambiguous:
        raise DatasetError(
            f"class '{ambiguous[0]}' names {len(index[_class_key(ambiguous[0])])} of the "
            "model's categories, so its accuracy cannot be told",
            hint="leave that folder out of the evaluation",
        )
    mapped = [exact[c] if c in exact else index[_class_key(c)][0] for c in found]
    for i, target in enumerate(mapped):
        if mapped.index(target) != i:
            raise DatasetError(
                f"folders '{found[mapped.index(target)]}' and '{found[i]}' of dataset "
                f"'{dataset}' both name the class '{known[target]}'",
                hint="merge them into one folder",
            )
    return mapped


def check_classes(expected: list[str], found: list[str], dataset: str) -> None:
    """DatasetError unless ``found`` equals the checkpoint's ``expected`` classes, in order."""
    if expected == found:
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if not missing and not extra:
        raise DatasetError(
            f"dataset '{dataset}' has the checkpoint's classes in a different order",
            hint=f"checkpoint order: {', '.join(expected)}",
        )
    parts = []
    if missing:
        parts.append(f"missing from the dataset: {', '.join(missing)}")
    if extra:
        parts.append(f"not known to the checkpoint: {', '.join(extra)}")
    raise DatasetError(
        f"dataset '{dataset}' does not have the checkpoint's classes ({'; '.join(parts)})",
        hint="evaluate on data with the classes the model was trained on",
    )


def _sample_ids(data: Any, split: str) -> list[str]:
    """The file each sample came from, where known; else ``split[index]``."""
    paths = getattr(data, "paths", None)
    if paths is None and hasattr(data, "items") and not isinstance(data, dict):
        paths = [str(p) for p, _ in data.items]  # FileDataset: (path, label) pairs
    if paths is not None and len(paths) == len(data):
        return [str(p) for p in paths]
    return [f"{split}[{i}]" for i in range(len(data))]
