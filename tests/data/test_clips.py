"""The clip-window rules of cnnkit.data.clips, shared by training, eval and predict."""

from __future__ import annotations

import numpy as np

from cnnkit.data.clips import (
    centred_start,
    frame_index,
    random_start,
    sliding_windows,
    spread_starts,
)


def test_centred_start_for_one_video_and_many() -> None:
    assert centred_start(20, 8) == 6 and isinstance(centred_start(20, 8), int)
    assert centred_start(9, 8) == 0  # one spare frame: the earlier of the two centres
    assert centred_start(3, 8) == 0  # shorter than the clip
    assert centred_start(np.array([12, 12, 5, 3]), 4).tolist() == [4, 4, 0, 0]


def test_random_start_covers_every_start_in_range_and_no_other() -> None:
    rng = np.random.default_rng(0)
    starts = random_start(np.full(2000, 12), 4, rng.random(2000))
    assert set(starts.tolist()) == set(range(9))  # 0..8: each start where a clip fits
    assert random_start(12, 4, 0.0) == 0 and random_start(12, 4, 0.999999) == 8
    assert random_start(3, 4, 0.99) == 0  # no room: the only start
    lengths = np.array([10, 4, 30])
    mixed = random_start(lengths, 4, np.array([0.5, 0.5, 0.999]))
    assert mixed.tolist() == [3, 0, 26]


def test_spread_starts_centre_one_and_spread_many() -> None:
    assert spread_starts(20, 8, 1) == [6]
    assert spread_starts(20, 8, 3) == [0, 6, 12]
    assert spread_starts(5, 8, 3) == [0]
    assert spread_starts(9, 8, 3) == [0, 1]  # room for two distinct windows only


def test_frame_index_repeats_the_last_frame_past_the_end() -> None:
    assert frame_index(2, 4, 10).tolist() == [2, 3, 4, 5]
    assert frame_index(0, 4, 3).tolist() == [0, 1, 2, 2]
    assert frame_index(np.array([0, 1]), 3, np.array([2, 10])).tolist() == [[0, 1, 1], [1, 2, 3]]


def test_sliding_windows_every_stride_and_one_padded_window_when_short() -> None:
    def starts(n: int, window: int, stride: int) -> list[int]:
        return [start for start, _, _ in sliding_windows(range(n), window, stride)]

    assert starts(10, 4, 4) == [0, 4]
    assert starts(10, 4, 2) == [0, 2, 4, 6]
    assert starts(7, 1, 3) == [0, 3, 6]  # single frames, as a 2D model takes them
    assert list(sliding_windows(range(10), 4, 3))[1] == (3, 6, [3, 4, 5, 6])
    assert list(sliding_windows(range(3), 4, 2)) == [(0, 2, [0, 1, 2, 2])]
    assert list(sliding_windows([], 4, 2)) == []


def test_sliding_windows_reads_its_input_lazily() -> None:
    read: list[int] = []

    def frames():
        for i in range(100):
            read.append(i)
            yield i

    first = next(iter(sliding_windows(frames(), 4, 4)))
    assert first == (0, 3, [0, 1, 2, 3]) and len(read) == 4
