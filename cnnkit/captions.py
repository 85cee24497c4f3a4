"""Text on cnnkit's pictures (explain overlays, the confusion matrix): fitted to a width.

A text too wide for its width is drawn smaller, down to ``MIN_SCALE``, then
wrapped (at spaces, else between any two characters), so that nothing is cut
at the picture's edge. OpenCV's Hershey font draws ASCII: names are written as
cnnkit.textout.shown gives them.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, named without importing OpenCV at import time
# Smaller than this, the Hershey font's strokes merge: wrap instead of shrinking.
MIN_SCALE = 0.4
# A name longer than this many lines is a mistake in the data, not a label to read:
# its last line ends in "..." rather than the picture growing without bound.
MAX_LINES = 8
# A band for many texts (a video model's classes) lays out at most this many of
# those too wide for one line, the longest: a model of 100,000 long names would
# otherwise cost seconds before the first frame.
_MAX_LAID_OUT = 64


def thickness(scale: float) -> int:
    """Stroke width that keeps the font's weight as it grows."""
    return max(1, int(scale * 1.6))


def text_width(text: str, scale: float) -> int:
    """Width in pixels of ``text`` on one line."""
    import cv2

    return int(cv2.getTextSize(text, FONT, scale, thickness(scale))[0][0])


def line_height(scale: float) -> int:
    """Pixels from one line's top to the next: capitals, descenders and a gap."""
    import cv2

    (_, h), base = cv2.getTextSize("Ag", FONT, scale, thickness(scale))
    return int(h + base + max(2, h // 3))


@dataclass(frozen=True)
class Caption:
    """Lines of text laid out for a width: draw with :meth:`draw`."""

    lines: tuple[str, ...]
    scale: float

    @property
    def height(self) -> int:
        return len(self.lines) * line_height(self.scale)

    @property
    def width(self) -> int:
        return max((text_width(line, self.scale) for line in self.lines), default=0)

    def draw(
        self, canvas: np.ndarray, x: int, y: int, colour: tuple[int, int, int] = (0, 0, 0)
    ) -> None:
        """Draw onto ``canvas`` (H×W×3 uint8, in place) with the first line's top at ``y``."""
        import cv2

        step = line_height(self.scale)
        (_, h), _ = cv2.getTextSize("Ag", FONT, self.scale, thickness(self.scale))
        for i, line in enumerate(self.lines):
            baseline = y + i * step + h
            cv2.putText(
                canvas, line, (x, baseline), FONT, self.scale, colour,
                thickness(self.scale), cv2.LINE_AA,
            )  # fmt: skip


def fit_caption(
    text: str, width: int, scale: float, min_scale: float = MIN_SCALE, max_lines: int = MAX_LINES
) -> Caption:
    """``text`` laid out within ``width`` pixels: at ``scale`` if it fits on one line,
    else smaller (not below ``min_scale``), else wrapped over up to ``max_lines`` lines
    (the last one ending in "..." and the text's last word when even they
    cannot hold it: a label keeps its score).
    """
    from cnnkit.textout import shown

    width = max(1, width)
    full = shown(text)
    # The last word (a label's score) is kept after a "..." if the text is cut.
    tail = " " + full.rsplit(" ", 1)[1] if " " in full.strip() else ""
    text = _measurable(full, width, max_lines)
    scale = max(scale, min_scale)
    while scale > min_scale and text_width(text, scale) > width:
        scale = max(min_scale, round(scale * 0.9, 3))
    lines = _wrap(text, width, scale, max_lines)
    if len(lines) > max_lines:
        if text_width("..." + tail, scale) > width:
            tail = ""
        last = lines[max_lines - 1]
        while last and text_width(last + "..." + tail, scale) > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last + "..." + tail]
    return Caption(tuple(lines), scale)


def fit_captions(texts: Sequence[str], width: int, scale: float) -> int:
    """The height that holds ``texts`` laid out by :func:`fit_caption` (a band for them all).

    Only the ``_MAX_LAID_OUT`` longest of the texts too wide for one line are
    laid out; one that needs more lines than they did is cut to them ("...").
    """
    from cnnkit.textout import shown

    if not texts:
        return 0
    wide = []
    for text in texts:
        text = _measurable(shown(text), width, MAX_LINES)
        if _width_bound(text, scale) > width:  # a cheap bound first: most names are short
            wide.append(text)
    tallest = [
        fit_caption(t, width, scale).height for t in heapq.nlargest(_MAX_LAID_OUT, wide, key=len)
    ]
    return max([line_height(scale), *tallest])


def _measurable(text: str, width: int, max_lines: int) -> str:
    """``text`` cut to what ``max_lines`` lines of ``width`` pixels could ever hold."""
    return text[: max_lines * (max(1, width) // 4 + 1)]  # no glyph is under 4 pixels wide


@lru_cache(maxsize=32)
def _advances(scale: float) -> dict[str, int]:
    """Each ASCII character's width drawn alone at ``scale``."""
    return {chr(c): text_width(chr(c), scale) for c in range(32, 127)}


def _width_bound(text: str, scale: float) -> int:
    """At least ``text_width(text, scale)``: its characters' widths drawn alone, added up."""
    advances = _advances(scale)
    widest = max(advances.values())  # other characters are drawn as "?" or wider escapes
    return sum(advances.get(c, widest) for c in text)


def _wrap(text: str, width: int, scale: float, max_lines: int = MAX_LINES) -> list[str]:
    """Greedy lines of at most ``width`` pixels: break at spaces, a too-long word anywhere.

    Stops once there are more than ``max_lines`` lines.
    """
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, scale) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while len(line) > 1 and len(lines) <= max_lines and text_width(line, scale) > width:
            cut = _longest_prefix(line, width, scale)  # a word wider than the line: cut it
            lines.append(line[:cut])
            line = line[cut:]
        if len(lines) > max_lines:
            return lines
    lines.append(line)
    return lines


def _longest_prefix(text: str, width: int, scale: float) -> int:
    """The most leading characters of ``text`` that fit ``width`` (at least 1)."""
    lo, hi = 1, len(text)
    while lo < hi:  # binary search: a measure costs as much as the characters measured
        mid = (lo + hi + 1) // 2
        if text_width(text[:mid], scale) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo
