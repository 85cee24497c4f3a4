"""The files ``cnnkit eval`` writes: the confusion matrix (PNG heat map or CSV) and the
misclassified samples (CSV), each atomically.

The heat map is drawn by cnnkit.evaluation.confusion_picture.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cnnkit import console
from cnnkit.errors import InputError
from cnnkit.evaluation.confusion_picture import render_confusion
from cnnkit.io.atomic import atomic_output, atomic_write_bytes
from cnnkit.textout import ERRORS, csv_row


def write_confusion(
    path: str | Path,
    cm: np.ndarray,
    classes: Sequence[str],
    about: Mapping[str, Any] | None = None,
    note: str = "",
) -> None:
    """Write the confusion matrix as a PNG heat map or a CSV table, by extension.

    ``about`` and ``note`` title the PNG (see ``render_confusion``).
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        write_confusion_csv(path, cm, classes)
    elif suffix == ".png":
        write_confusion_png(path, cm, classes, about, note)
    else:
        raise InputError(
            f"cannot write a confusion matrix to '{path}'",
            hint="use a file name ending in .png (heat map) or .csv (table)",
        )


def _write_csv(path: str | Path, rows: Sequence[Sequence[object]]) -> None:
    """Write ``rows`` as a UTF-8 CSV file, atomically.

    Text cells are neutralised against formula injection, and names that are
    not UTF-8 keep their own bytes (cnnkit.textout).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerows(csv_row(row) for row in rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8", ERRORS))


def write_confusion_csv(path: str | Path, cm: np.ndarray, classes: Sequence[str]) -> None:
    """CSV with a header row of predicted classes and one row per true class."""
    rows: list[list[object]] = [["true\\predicted", *classes]]
    rows += [[name, *(int(v) for v in row)] for name, row in zip(classes, cm, strict=True)]
    _write_csv(path, rows)


# Above this many classes a heat map stops being readable (ImageNet's 1,000 drew a
# 28097×28067 PNG of 154 MB in 27 s at 3.2 GB): the picture keeps the classes
# with the most mistakes, and the CSV holds them all.
MAX_HEATMAP_CLASSES = 50


def most_confused(cm: np.ndarray, limit: int = MAX_HEATMAP_CLASSES) -> np.ndarray:
    """Indices (ascending) of the ``limit`` classes with the most mistakes, made or suffered.

    A class's mistakes are its off-diagonal row (its samples predicted as
    others) plus its off-diagonal column (others predicted as it); ties keep
    class order.
    """
    off = np.asarray(cm, dtype=np.int64).copy()
    np.fill_diagonal(off, 0)
    mistakes = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-mistakes, kind="stable")[:limit])


def write_confusion_png(
    path: str | Path,
    cm: np.ndarray,
    classes: Sequence[str],
    about: Mapping[str, Any] | None = None,
    note: str = "",
) -> None:
    """Write ``render_confusion`` as a PNG, atomically.

    Over MAX_HEATMAP_CLASSES classes, the picture shows those with the most
    mistakes (said in its title and on stderr); the CSV form holds every class.
    """
    cm = np.asarray(cm)
    notes = [note] if note else []
    if len(classes) > MAX_HEATMAP_CLASSES:
        keep = most_confused(cm)
        subset = (
            f"{len(keep)} of {len(classes)} classes: those with the most mistakes "
            "(every class: --confusion FILE.csv)"
        )
        console.info(f"note: {Path(path).name} shows {subset}")
        image = render_confusion(
            cm[np.ix_(keep, keep)], [classes[i] for i in keep], row_totals=cm.sum(axis=1)[keep],
            note="; ".join([*notes, subset]), about=about,
        )  # fmt: skip
    else:
        image = render_confusion(cm, classes, note=note, about=about)
    ok, data = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - PNG encoding of a uint8 image does not fail
        raise InputError(f"could not encode the confusion matrix for '{path}'")
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data.tobytes())


def write_misclassified(
    path: str | Path,
    ids: Sequence[str],
    labels: np.ndarray,
    predicted: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
) -> int:
    """CSV of wrong predictions (path, true, predicted, score); returns the row count.

    ``ids`` name each sample: a file path, or ``split[index]`` for in-memory data.
    """
    wrong = np.flatnonzero(np.asarray(labels) != np.asarray(predicted))
    rows: list[list[object]] = [["path", "true", "predicted", "score"]]
    for i in wrong:
        score = f"{float(scores[i]):.6f}"
        rows.append([ids[i], classes[labels[i]], classes[predicted[i]], score])
    _write_csv(path, rows)
    return int(len(wrong))
