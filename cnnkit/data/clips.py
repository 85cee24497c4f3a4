"""Which frames a clip takes: the one home of the clip-window rules.

A clip is ``frames`` consecutive frames of a video of ``length`` frames. Where
it starts depends on who asks:

- training: a random start anywhere in the video (a cheap temporal
  augmentation), ``random_start``;
- validation and ``cnnkit eval`` with one clip: the centre, ``centred_start``;
- a folder's videos, decoded into memory or from the files as training goes:
  the frames of ``stored_window`` only (at most ``WINDOW_CLIPS`` clips' worth,
  around the centre), so that both give the same clips;
- ``cnnkit eval --clips N``: N windows spread evenly, ``spread_starts``;
- ``cnnkit predict``: sliding windows ``stride`` frames apart over a stream
  of frames, ``sliding_windows``.

A video shorter than the clip repeats its last frame to fill it
(``frame_index``), as ``cnnkit.io.video.read_video_clip`` does when reading.
The start rules take one length (and give an int) or an array of lengths
(and give an int64 array).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

# A folder's video keeps at most this many clip lengths of frames for training
# (a random start within them): what memory holds of it when it is decoded once.
WINDOW_CLIPS = 4


def _room(length: Any, frames: int) -> np.ndarray:
    """How far a clip's start can move: frames past one clip's worth, never negative."""
    return np.maximum(np.asarray(length, dtype=np.int64) - frames, 0)


def _out(start: np.ndarray) -> Any:
    return int(start) if start.ndim == 0 else start


def centred_start(length: Any, frames: int) -> Any:
    """First frame of the clip centred in the video (0 for a video shorter than the clip)."""
    return _out(_room(length, frames) // 2)


def random_start(length: Any, frames: int, uniform: Any) -> Any:
    """First frame of a random clip, each of the ``room + 1`` starts equally likely.

    ``uniform`` holds draws in [0, 1), one per length, from the caller's
    generator: the in-memory path draws them from torch's seeded generator,
    the file path from a numpy one seeded per sample.
    """
    room = _room(length, frames)
    start = np.floor(np.asarray(uniform, dtype=np.float64) * (room + 1)).astype(np.int64)
    return _out(np.minimum(start, room))


def stored_window(length: int, frames: int) -> tuple[int, int]:
    """(first frame, frames kept) of the part of a video that training clips come from.

    At most ``WINDOW_CLIPS * frames`` frames, placed so that the centred clip of
    the window is the centred clip of the whole video (validation and eval see
    the same frames): a training clip starts at ``first + random_start(kept, ...)``.
    """
    kept = min(int(length), WINDOW_CLIPS * frames)
    return int(centred_start(length, frames)) - int(centred_start(kept, frames)), kept


def spread_starts(length: int, frames: int, clips: int) -> list[int]:
    """Start frames of ``clips`` windows spread over ``length`` frames (eval's --clips).

    One clip is centred (as training's validation takes it, so eval repeats its
    numbers); several are spaced evenly from the first frame to the last
    window. A video with room for fewer distinct windows gets each window once.
    """
    if clips <= 1:
        return [centred_start(length, frames)]
    room = int(_room(length, frames))
    return sorted({int(round(v)) for v in np.linspace(0, room, clips)})


def frame_index(start: Any, frames: int, length: Any) -> np.ndarray:
    """Frame numbers of clips: (T,) for one start, (B, T) for B starts and lengths.

    Past the end of the video (``length`` real frames) the last frame repeats,
    so every clip has ``frames`` frames, as the models expect.
    """
    start = np.asarray(start, dtype=np.int64)
    last = np.maximum(np.asarray(length, dtype=np.int64), 1) - 1
    return np.minimum(start[..., None] + np.arange(frames), last[..., None])


def sliding_windows(
    items: Iterable[T], window: int, stride: int
) -> Iterator[tuple[int, int, list[T]]]:
    """(start, end inclusive, the ``window`` items) of windows ``stride`` items apart.

    ``items`` (a video's frames) is read once, holding one window in memory,
    so a long video never sits whole in RAM. Windows start at 0, stride,
    2·stride, ... while a whole window fits; a stream shorter than one window
    gives one window at 0, padded by repeating its last item.
    """
    buf: deque[T] = deque(maxlen=window)
    seen = 0
    for index, item in enumerate(items):
        buf.append(item)
        seen = index + 1
        start = index - window + 1
        if start >= 0 and start % stride == 0:
            yield start, index, list(buf)
    if 0 < seen < window:
        yield 0, seen - 1, [buf[i] for i in frame_index(0, window, seen)]
