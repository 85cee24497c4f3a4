"""Text on cnnkit's pictures (explain overlays, the confusion matrix): fitted to a width.

A text too wide for its width is drawn smaller, down to ``MIN_SCALE``, then
wrapped (at spaces, else between any two characters), so that nothing is cut
at the picture's edge. OpenCV's Hershey font draws ASCII: names are written as
cnnkit.textout.shown gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, named without importing OpenCV at import time
# Smaller than this, the Hershey font's strokes merge: wrap instead of shrinking.
MIN_SCALE = 0.4
# A name longer than this many lines is a mistake in the data, not a label to read:
# its last line ends in "..." rather than the picture growing without bound.
MAX_LINES = 8
# Only this many characters are measured: 8 lines never hold more at any width
# a picture is drawn at, and measuring a huge name would cost time for nothing.
_MAX_CHARS = 2000


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
    else smaller (not below ``min_scale``), else wrapped over up to ``max_lines`` lines.
    """
    from cnnkit.textout import shown

    text = shown(text)
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS]
    width = max(1, width)
    scale = max(scale, min_scale)
    while text_width(text, scale) > width and scale > min_scale:
        scale = max(min_scale, round(scale * 0.9, 3))
    lines = _wrap(text, width, scale)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and text_width(last + "...", scale) > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last + "..."]
    return Caption(tuple(lines), scale)


def fit_captions(texts: Sequence[str], width: int, scale: float) -> int:
    """The height that holds any of ``texts`` laid out by :func:`fit_caption` (a fixed band)."""
    from cnnkit.textout import shown

    tallest = line_height(scale) if texts else 0
    for text in texts:  # only the names too wide for one line are laid out in full
        if text_width(shown(text)[:_MAX_CHARS], scale) > width:
            tallest = max(tallest, fit_caption(text, width, scale).height)
    return tallest


def _wrap(text: str, width: int, scale: float) -> list[str]:
    """Greedy lines of at most ``width`` pixels: break at spaces, a too-long word anywhere."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, scale) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:  # a word wider than the line: cut it between characters
            if line and text_width(line + char, scale) > width:
                lines.append(line)
                line = ""
            line += char
    lines.append(line)
    return lines
