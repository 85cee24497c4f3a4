"""The files ``cnnkit eval`` writes: the confusion matrix (PNG heat map or CSV) and the
misclassified samples (CSV), each atomically.

The heat map is drawn with OpenCV (no matplotlib).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from cnnkit import console
from cnnkit.errors import InputError
from cnnkit.io.atomic import atomic_output, atomic_write_bytes
from cnnkit.textout import ERRORS, csv_row, shown


def write_confusion(path: str | Path, cm: np.ndarray, classes: Sequence[str]) -> None:
    """Write the confusion matrix as a PNG heat map or a CSV table, by extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        write_confusion_csv(path, cm, classes)
    elif suffix == ".png":
        write_confusion_png(path, cm, classes)
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


def render_confusion(
    cm: np.ndarray,
    classes: Sequence[str],
    cell: int | None = None,
    row_totals: np.ndarray | None = None,
    note: str = "",
) -> np.ndarray:
    """Draw a heat map with class names and counts -> H×W×3 BGR uint8 image.

    Colour is the row-normalised share (recall per true class), so a rare class's
    mistakes are as visible as a common one's; the number drawn is the raw count.
    ``row_totals``: each true class's sample count, when ``cm`` is a part of a
    larger matrix (default: its own row sums). ``note`` is written under the title.
    """
    k = len(classes)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    names = [shown(c) for c in classes]  # Hershey fonts draw ASCII only: escape the rest
    text_w = max(cv2.getTextSize(c, font, scale, thick)[0][0] for c in names)
    count_w = cv2.getTextSize(str(int(cm.max()) if cm.size else 0), font, scale, thick)[0][0]
    cell = cell or max(28, count_w + 10)
    margin = text_w + 16
    title_h = 22 + (18 if note else 0)
    height = title_h + margin + k * cell + 24
    width = max(margin + k * cell + 16, cv2.getTextSize(note, font, scale, thick)[0][0] + 8)
    img = np.full((height, width, 3), 255, np.uint8)
    rows = cm.sum(axis=1, keepdims=True) if row_totals is None else row_totals.reshape(-1, 1)
    rows = rows.astype(np.float64)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    colors = cv2.applyColorMap((share * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    top = title_h + margin
    if note:
        cv2.putText(img, note, (4, 15), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(img, "predicted", (margin, title_h - 7), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(img, "true", (2, top - 6), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    for i in range(k):
        y0 = top + i * cell
        label_y = y0 + (cell + 8) // 2
        cv2.putText(img, names[i], (4, label_y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
        for j in range(k):
            x0 = margin + j * cell
            color = tuple(int(c) for c in colors[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), color, -1)
            text = str(int(cm[i, j]))
            (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
            # Dark text on the bright (yellow) end of viridis, white on the dark end.
            ink = (0, 0, 0) if share[i, j] > 0.6 else (255, 255, 255)
            org = (x0 + (cell - tw) // 2, y0 + (cell + th) // 2)
            cv2.putText(img, text, org, font, scale, ink, thick, cv2.LINE_AA)
    # Column names are written vertically: draw on a strip, rotate it into place.
    strip = np.full((cell * k, margin, 3), 255, np.uint8)
    for j in range(k):
        y = j * cell + (cell + 8) // 2
        cv2.putText(strip, names[j], (4, y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    img[title_h : title_h + margin, margin : margin + k * cell] = rotated
    return img


def write_confusion_png(path: str | Path, cm: np.ndarray, classes: Sequence[str]) -> None:
    """Write ``render_confusion`` as a PNG, atomically.

    Over MAX_HEATMAP_CLASSES classes, the picture shows those with the most
    mistakes (said on it and on stderr); the CSV form holds every class.
    """
    cm = np.asarray(cm)
    if len(classes) > MAX_HEATMAP_CLASSES:
        keep = most_confused(cm)
        note = (
            f"{len(keep)} of {len(classes)} classes: those with the most mistakes "
            "(every class: --confusion FILE.csv)"
        )
        console.info(f"note: {Path(path).name} shows {note}")
        image = render_confusion(
            cm[np.ix_(keep, keep)], [classes[i] for i in keep], row_totals=cm.sum(axis=1)[keep],
            note=note,
        )  # fmt: skip
    else:
        image = render_confusion(cm, classes)
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
