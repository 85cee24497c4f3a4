"""One channel-statistics computation for torch training and torch-free evaluation."""

from __future__ import annotations

import numpy as np
import torch

from cnnkit.data.arrays import channel_stats


def test_a_tensor_and_its_array_give_the_same_numbers() -> None:
    x = np.random.default_rng(0).integers(0, 256, (500, 3, 9, 7), dtype=np.uint8)
    assert channel_stats(torch.from_numpy(x)) == channel_stats(x)
    mean, std = channel_stats(x)
    flat = x.transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
    assert np.allclose(mean, flat.mean(axis=1), atol=6e-5)
    assert np.allclose(std, flat.std(axis=1, ddof=1), atol=6e-5)


def test_a_constant_channel_gets_the_floor_std_and_samples_are_spread() -> None:
    x = np.zeros((10_000, 1, 2, 2), np.uint8)
    x[::2] = 255  # the even samples
    mean, std = channel_stats(x, max_samples=100)
    assert mean == [1.0] and std == [0.001]  # a step of 100 takes even samples only
    assert channel_stats(np.zeros((3, 2, 4, 4), np.uint8)) == ([0.0, 0.0], [0.001, 0.001])
