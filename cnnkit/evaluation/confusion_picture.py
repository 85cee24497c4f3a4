"""The confusion matrix as a picture: what was measured, counts, and colour by row share.

Drawn with OpenCV (no matplotlib), BGR. From the top: a title (checkpoint,
dataset and split, n, accuracy; which classes when only some are drawn), the
predicted classes' names, the grid (rows: true classes) and a colour scale.
A cell's colour is its share of its row (the true class's samples), blue on
the diagonal (right answers) and red off it (mistakes); an empty cell stays
white, and a cell with even one sample is tinted at least ``_FLOOR`` of the way
along its ramp, so that a single mistake among hundreds stands out. The
number written is the count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from cnnkit.captions import FONT, Caption, fit_caption, line_height, text_width
from cnnkit.textout import shown

# BGR ramps from white through a vivid middle to a dark end (ColorBrewer's Blues and Reds).
_BLUES = np.array([[255, 255, 255], [198, 146, 66], [107, 48, 8]], np.float64)
_REDS = np.array([[255, 255, 255], [44, 59, 239], [13, 0, 103]], np.float64)
# Where along its ramp the smallest non-zero share starts: a clear tint, never white.
_FLOOR = 0.25
_SCALE = 0.42  # the font's scale for names and counts
_INK = (0, 0, 0)
_FAINT = (170, 170, 170)  # zeros and grid lines: there, but quiet
# Column names longer than this are written vertically; shorter ones stay upright.
UPRIGHT_NAME_CHARS = 3
# Longer names are shortened with "..." (the CSV has them whole).
_NAME_CHARS = 40
# Narrower than this, the title would wrap into many lines.
_MIN_WIDTH = 360


def shade(share: np.ndarray) -> np.ndarray:
    """Where along a ramp each share (0-1) is drawn: 0 for 0, else _FLOOR to 1.

    The square root spreads the small shares, where the mistakes are.
    """
    share = np.clip(np.asarray(share, np.float64), 0.0, 1.0)
    return np.where(share > 0, _FLOOR + (1 - _FLOOR) * np.sqrt(share), 0.0)


def ramp_colours(t: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """BGR uint8 colours at positions ``t`` (0-1) along a 3-stop ``ramp``."""
    t = np.asarray(t, np.float64)[..., None]
    low = ramp[0] + (ramp[1] - ramp[0]) * np.clip(t * 2, 0, 1)
    high = ramp[1] + (ramp[2] - ramp[1]) * np.clip(t * 2 - 1, 0, 1)
    return np.round(np.where(t <= 0.5, low, high)).astype(np.uint8)


def confusion_title(about: Mapping[str, Any] | None) -> list[str]:
    """The title's lines from the facts eval measured: checkpoint, dataset, split, n, accuracy."""
    if not about:
        return []
    lines = []
    if about.get("checkpoint"):
        lines.append(str(about["checkpoint"]))
    what = " ".join(str(about[k]) for k in ("dataset", "split") if about.get(k))
    facts = [what] if what else []
    if about.get("n") is not None:
        facts.append(f"n={int(about['n']):,}")
    if about.get("accuracy") is not None:
        facts.append(f"accuracy {float(about['accuracy']):.2%}")
    if facts:
        lines.append(", ".join(facts))
    return lines


def render_confusion(
    cm: np.ndarray,
    classes: Sequence[str],
    cell: int | None = None,
    row_totals: np.ndarray | None = None,
    note: str = "",
    about: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Draw the confusion matrix (rows: true classes) -> H×W×3 BGR uint8 image.

    ``about``: what was measured, for the title (``checkpoint``, ``dataset``,
    ``split``, ``n``, ``accuracy``: the keys of ``cnnkit eval --json``).
    ``row_totals``: each true class's sample count, when ``cm`` is a part of a
    larger matrix (default: its own row sums). ``note``: a line under the title
    (which classes are drawn, when not all are).
    """
    cm = np.asarray(cm)
    k = len(classes)
    names = [_name(c) for c in classes]
    line = line_height(_SCALE)
    name_w = max((text_width(c, _SCALE) for c in names), default=0)
    count_w = text_width(str(int(cm.max()) if cm.size else 0), _SCALE)
    cell = cell or max(30, count_w + 12)
    upright = all(len(c) <= UPRIGHT_NAME_CHARS for c in names)
    left = max(name_w, text_width("true", _SCALE)) + 12  # the row names' column
    head = line + 8 if upright else name_w + 12  # the column names' row
    scale_h = 3 * line + 18
    grid_w = left + k * cell + 8
    width = max(grid_w, _MIN_WIDTH, 4 + _scale_width() + 8)
    title = _title(about, note, width - 8)
    top = title.height + 8 + line  # "predicted" sits above the column names
    height = top + head + k * cell + 10 + scale_h
    img = np.full((height, width, 3), 255, np.uint8)
    title.draw(img, 4, 4)
    _text(img, "predicted", left, top - 4)
    _text(img, "true", 4, top + head - 4)

    rows = cm.sum(axis=1) if row_totals is None else np.asarray(row_totals)
    rows = rows.astype(np.float64).reshape(-1, 1)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    t = shade(share)
    diagonal = np.eye(k, dtype=bool)
    colours = np.where(diagonal[..., None], ramp_colours(t, _BLUES), ramp_colours(t, _REDS))
    y_grid = top + head
    for i in range(k):
        y0 = y_grid + i * cell
        _text(img, names[i], 4, y0 + (cell + line) // 2 - 3)
        for j in range(k):
            x0 = left + j * cell
            colour = tuple(int(c) for c in colours[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), colour, -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (230, 230, 230), 1)
            count = int(cm[i, j])
            ink = _FAINT if count == 0 else (255, 255, 255) if t[i, j] > 0.6 else _INK
            tw = text_width(str(count), _SCALE)
            _text(img, str(count), x0 + (cell - tw) // 2, y0 + (cell + line) // 2 - 3, ink)
    _column_names(img, names, left, top, head, cell, upright)
    _colour_scale(img, 4, y_grid + k * cell + 10)
    return img


def _name(name: str) -> str:
    """A class's name as drawn: escaped (the Hershey font draws ASCII), a long one shortened.

    A name of thousands of characters would make the picture that many times
    wider; the CSV form keeps every name whole.
    """
    name = shown(name)
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 3] + "..."


def _title(about: Mapping[str, Any] | None, note: str, width: int) -> Caption:
    """The title's lines, each wrapped to ``width``, as one caption."""
    lines: list[str] = []
    for text in [*confusion_title(about), *([note] if note else [])]:
        lines += fit_caption(text, width, _SCALE, min_scale=_SCALE).lines
    return Caption(tuple(lines), _SCALE)


def _text(img: np.ndarray, text: str, x: int, y: int, ink: tuple[int, int, int] = _INK) -> None:
    """``text`` with its baseline at ``y``."""
    cv2.putText(img, text, (x, y), FONT, _SCALE, ink, 1, cv2.LINE_AA)


def _column_names(
    img: np.ndarray, names: list[str], left: int, top: int, head: int, cell: int, upright: bool
) -> None:
    """Short names upright and centred over their columns; longer ones written vertically."""
    if upright:
        for j, name in enumerate(names):
            x = left + j * cell + (cell - text_width(name, _SCALE)) // 2
            _text(img, name, x, top + head - 8)
        return
    # Drawn on a strip, then turned: the names read bottom to top.
    strip = np.full((cell * len(names), head, 3), 255, np.uint8)
    line = line_height(_SCALE)
    for j, name in enumerate(names):
        _text(strip, name, 4, j * cell + (cell + line) // 2 - 3)
    img[top : top + head, left : left + cell * len(names)] = cv2.rotate(
        strip, cv2.ROTATE_90_COUNTERCLOCKWISE
    )


_BAR_W, _BAR_H = 120, 10


_SCALE_CAPTION = "colour: share of the row (the true class's samples)"
_SCALE_WORDS = ("right", "wrong")


def _scale_width() -> int:
    label = max(text_width(w, _SCALE) for w in _SCALE_WORDS)
    bars = label + 8 + text_width("0%", _SCALE) + 6 + _BAR_W + 6 + text_width("100%", _SCALE)
    return max(bars, text_width(_SCALE_CAPTION, _SCALE))


def _colour_scale(img: np.ndarray, x: int, y: int) -> None:
    """Two bars, 0% to 100% of a row: right answers (the diagonal) and mistakes."""
    line = line_height(_SCALE)
    _text(img, _SCALE_CAPTION, x, y + line - 6)
    label_w = max(text_width(w, _SCALE) for w in _SCALE_WORDS)
    t = shade(np.linspace(0, 1, _BAR_W))
    for row, (word, ramp) in enumerate(zip(_SCALE_WORDS, (_BLUES, _REDS), strict=True)):
        y0 = y + line + 2 + row * (line + 4)
        _text(img, word, x, y0 + _BAR_H)
        bx = x + label_w + 8
        _text(img, "0%", bx, y0 + _BAR_H)
        bx += text_width("0%", _SCALE) + 6
        img[y0 : y0 + _BAR_H, bx : bx + _BAR_W] = ramp_colours(t, ramp)[None]
        cv2.rectangle(img, (bx - 1, y0 - 1), (bx + _BAR_W, y0 + _BAR_H), _FAINT, 1)
        _text(img, "100%", bx + _BAR_W + 6, y0 + _BAR_H)
