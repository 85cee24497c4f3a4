"""What ``cnnkit inspect DATASET`` reports: classes, counts per split, problems.

For a folder everything is checked without training anything: each image is
decoded (videos are probed) to find unreadable files, and hidden folders,
empty classes and class imbalance are turned into warnings. For a built-in
name the dataset is loaded (generated, or read from --data-dir). This module
never imports Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError, DatasetError, close_match_hint

IMBALANCE_RATIO = 3.0  # largest class / smallest class above this -> a warning


def _readable(path: Path, kind: str) -> bool:
    try:
        if kind == "video":
            from cnnkit.io.video import probe_video

            probe_video(path)
        else:
            from cnnkit.io.image import read_image

            read_image(path)
    except CnnkitError:
        return False
    return True


def _imbalance_warning(split: str, counts: dict[str, int]) -> str | None:
    nonzero = [n for n in counts.values() if n > 0]
    if len(nonzero) < 2:
        return None
    big, small = max(nonzero), min(nonzero)
    if big > IMBALANCE_RATIO * small:
        most = max(counts, key=counts.get)
        least = min((c for c in counts if counts[c] > 0), key=counts.get)
        return (
            f"{split}: classes are imbalanced ({most}: {big}, {least}: {small}); "
            "accuracy can look good while the small classes are missed"
        )
    return None


def _describe_folder(root: Path) -> dict[str, Any]:
    from cnnkit.data.folders import parallel_map, scan_folder

    scan = scan_folder(root)
    every = [item for items in scan.files.values() for item in items]
    checks = parallel_map(lambda it: _readable(it[0], scan.kind), every)
    bad = {str(p) for (p, _), (ok, _) in zip(every, checks, strict=True) if not ok}
    splits: dict[str, dict[str, int]] = {}
    for split, items in scan.files.items():
        counts = dict.fromkeys(scan.classes, 0)
        for path, label in items:
            if str(path) not in bad:
                counts[scan.classes[label]] += 1
        splits["train" if split == "all" else split] = counts
    totals = dict.fromkeys(scan.classes, 0)
    for counts in splits.values():
        for c, n in counts.items():
            totals[c] += n
    warnings = [f"hidden folder ignored: {p}" for p in scan.hidden]
    warnings += [f"unreadable folder: {p} ({why})" for p, why in scan.unreadable_folders]
    warnings += [f"{len(scan.ignored)} file(s) that are not {scan.kind}s ignored"] * bool(
        scan.ignored
    )
    for split, counts in splits.items():
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            warnings.append(f"{split}: empty class(es): {', '.join(empty)}")
        w = _imbalance_warning(split, counts)
        if w:
            warnings.append(w)
    if bad:
        warnings.append(f"{len(bad)} unreadable file(s), skipped in training")
    return {
        "kind": "dataset",
        "name": str(root),
        "data_kind": scan.kind,
        "classes": scan.classes,
        "counts": totals,
        "splits": splits,
        "unreadable": sorted(bad),
        "warnings": warnings,
    }


def _describe_builtin(name: str, data_dir: str | None) -> dict[str, Any]:
    from cnnkit.data.registry import DatasetRequest, load_dataset

    data = load_dataset(DatasetRequest(name=name, data_dir=data_dir))
    splits = {}
    for split, part in data.splits.items():
        counts = dict.fromkeys(data.classes, 0)
        labels = part.y.tolist()
        for lab in labels:
            counts[data.classes[lab]] += 1
        splits[split] = counts
    totals = {c: sum(s[c] for s in splits.values()) for c in data.classes}
    warnings = [w for w in (_imbalance_warning(s, c) for s, c in splits.items()) if w]
    return {
        "kind": "dataset",
        "name": data.name,
        "data_kind": data.kind,
        "classes": list(data.classes),
        "counts": totals,
        "splits": splits,
        "input": data.input.to_dict(),
        "unreadable": [],
        "warnings": warnings,
    }


def describe_dataset(target: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """Facts about a dataset folder or built-in name.

    Returns {"kind": "dataset", "name", "data_kind" ("image"|"video"), "classes",
    "counts": {class: n}, "splits": {split: {class: n}}, "unreadable": [paths],
    "warnings": [str]}; built-in names add "input" (the input spec).
    """
    from cnnkit.data.registry import get_dataset_entry, list_datasets

    if get_dataset_entry(str(target)) is not None:
        return _describe_builtin(str(target), data_dir)
    path = Path(target).expanduser()
    if path.is_dir():
        return _describe_folder(path)
    raise DatasetError(
        f"'{target}' is neither a dataset folder nor a built-in dataset",
        hint=close_match_hint(str(target), list_datasets(), "dataset"),
    )
