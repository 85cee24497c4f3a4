"""Built-in datasets generated from a seed: ``shapes`` and ``moving-shapes``.

Both are drawn with OpenCV in a fraction of a second, need no download and
are identical for the same seed, so they serve tests, demos and the lecture's
2D-versus-3D comparison.

``moving-shapes`` and why a frame-wise model cannot solve it
-----------------------------------------------------------
Each clip holds two identical blobs on a noisy background. One (the *mover*)
slides at constant speed along a straight track; the class is its direction:
left, right, up or down. The other (the *decoy*) has a track on the
perpendicular axis and visits the same evenly spaced positions, but in a
random order, so it jumps about instead of moving.

Consider the *set* of frames of a clip, ignoring their order. A "left" clip
pairs the positions of a horizontal track (the mover) with those of a vertical
track (the decoy) through a random one-to-one matching; a "right" clip does
the same with the horizontal order reversed, which is still a random matching;
an "up" or "down" clip pairs a vertical track (now the mover) with a
horizontal one (the decoy), again through a random matching. Tracks are drawn
from the same distributions in every class and the two blobs look alike, so
the distribution of the frame set is exactly the same for all four classes.
A single frame, or any order-blind pooling of per-frame features (the
frame-wise 2D baseline averages over time), is therefore at chance (25%) in
expectation, while a model that sees consecutive frames together (a 3D
convolution) sees one blob step smoothly in one direction and the other
flicker.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SHAPE_CLASSES = ["circle", "square", "triangle", "cross", "star", "ring"]
MOTION_CLASSES = ["left", "right", "up", "down"]


def _background(rng: np.random.Generator, h: int, w: int, noise: float) -> np.ndarray:
    base = rng.uniform(0, 110, size=3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    img += rng.normal(0, noise, size=(h, w, 3)).astype(np.float32)
    return img


def _polygon(cx: float, cy: float, r: float, angle: float, pts: list[tuple[float, float]]):
    """Points (unit-circle coordinates) rotated by ``angle``, scaled by r, moved to (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    out = [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]
    # cv2 draws with 4 fractional bits (shift=4) for sub-pixel, antialiased edges.
    return np.array([[int(round(x * 16)), int(round(y * 16))] for x, y in out], np.int32)


def _star_points(n: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    pts = []
    for i in range(2 * n):
        r = 1.0 if i % 2 == 0 else inner
        a = math.pi * i / n - math.pi / 2
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


_UNIT = {
    "square": [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)],
    "triangle": [(0.0, -1.0), (0.87, 0.5), (-0.87, 0.5)],
    "cross": [
        (-0.3, -1),
        (0.3, -1),
        (0.3, -0.3),
        (1, -0.3),
        (1, 0.3),
        (0.3, 0.3),
        (0.3, 1),
        (-0.3, 1),
        (-0.3, 0.3),
        (-1, 0.3),
        (-1, -0.3),
        (-0.3, -0.3),
    ],
    "star": _star_points(),
}


def _draw_shape(img: np.ndarray, kind: str, cx: float, cy: float, r: float, angle: float, colour):
    aa = cv2.LINE_AA
    if kind == "circle":
        cv2.circle(img, (int(cx * 16), int(cy * 16)), int(r * 16), colour, -1, aa, 4)
    elif kind == "ring":
        thick = max(1, int(round(r * 0.35)))
        cv2.circle(img, (int(cx * 16), int(cy * 16)), int(r * 0.8 * 16), colour, thick, aa, 4)
    else:
        pts = _polygon(cx, cy, r, angle, _UNIT[kind])
        cv2.fillPoly(img, [pts], colour, aa, 4)


def make_shapes(
    n: int, seed: int, size: int = 32, noise: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of shapes: uint8 (n, 3, size, size) and int64 labels (n,).

    Classes are balanced (label = index mod 6, then shuffled); each image has a
    random background colour, shape position, size, rotation and colour, plus
    Gaussian pixel noise.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        img = _background(rng, size, size, noise)
        r = rng.uniform(0.18, 0.34) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        colour = tuple(float(v) for v in rng.uniform(140, 255, size=3))
        _draw_shape(img, SHAPE_CLASSES[label], cx, cy, r, rng.uniform(0, 2 * math.pi), colour)
        out[i] = np.clip(img, 0, 255)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), labels


def _track(rng: np.random.Generator, size: int, frames: int, step: float, margin: float):
    """A straight track: its fixed cross coordinate and the frames' positions along it."""
    span = step * (frames - 1)
    lo = rng.uniform(margin, size - margin - span)
    cross = rng.uniform(margin, size - margin)
    return cross, lo + step * np.arange(frames)


def make_moving_shapes(
    n: int,
    seed: int,
    frames: int = 8,
    size: int = 32,
    noise: float = 8.0,
    centres: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips: uint8 (n, 3, frames, size, size) and int64 labels (n,) over MOTION_CLASSES.

    See the module docstring for the design. The mover advances ``step``
    pixels per frame (about half the frame over the clip); the decoy visits
    the positions of a perpendicular track of the same length in random order.
    ``centres``: a list that receives, per clip, a (frames, 2, 2) array of the
    (x, y) centres of the mover ([:, 0]) and of the decoy ([:, 1]) in every frame
    (for tests of what a model looks at); the clips are the same either way.
    """
    if frames < 2:
        raise ValueError("moving-shapes needs at least 2 frames per clip")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(MOTION_CLASSES)).astype(np.int64)
    radius = max(1.5, size / 11)
    margin = radius + 1
    step = min(size / 2, size - 2 * margin) / (frames - 1)
    out = np.empty((n, frames, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        direction = MOTION_CLASSES[label]
        # Horizontal track: fixed y, x positions; vertical track: fixed x, y positions.
        hy, hx = _track(rng, size, frames, step, margin)
        vx, vy = _track(rng, size, frames, step, margin)
        order = np.arange(frames)
        jumbled = rng.permutation(frames)
        if direction in ("left", "right"):
            h_order = order[::-1] if direction == "left" else order
            v_order = jumbled
        else:
            v_order = order[::-1] if direction == "up" else order
            h_order = jumbled
        if centres is not None:
            h_track = [(hx[h_order[t]], hy) for t in range(frames)]
            v_track = [(vx, vy[v_order[t]]) for t in range(frames)]
            mover, decoy = (
                (h_track, v_track) if direction in ("left", "right") else (v_track, h_track)
            )
            centres.append(np.stack([np.array(mover), np.array(decoy)], axis=1))
        colour = tuple(float(v) for v in rng.uniform(150, 255, size=3))
        bg = rng.uniform(0, 90, size=3).astype(np.float32)
        for t in range(frames):
            img = np.empty((size, size, 3), np.float32)
            img[:] = bg
            img += rng.normal(0, noise, size=img.shape).astype(np.float32)
            for cx, cy in ((hx[h_order[t]], hy), (vx, vy[v_order[t]])):
                centre = (int(round(cx * 16)), int(round(cy * 16)))
                cv2.circle(img, centre, int(radius * 16), colour, -1, cv2.LINE_AA, 4)
            out[i, t] = np.clip(img, 0, 255)
    return np.ascontiguousarray(out.transpose(0, 4, 1, 2, 3)), labels
