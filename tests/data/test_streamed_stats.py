"""A folder decoded as it trains gets the mean/std of its own files, as one held in memory does."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.data.registration import DatasetRequest
from cnnkit.data.registry import load_dataset
from tests.helpers import make_image_folder, make_video


def _load(root, budget: int, **options):
    request = DatasetRequest(name=str(root), img_size=16, seed=3, memory_budget=budget, **options)
    return load_dataset(request)


def test_streamed_images_get_the_statistics_of_their_files(tmp_path):
    make_image_folder(tmp_path / "pics", ["a", "b"], 20, 24, 24)
    held, streamed = _load(tmp_path / "pics", 1 << 30), _load(tmp_path / "pics", 1)
    assert held.in_memory and not streamed.in_memory
    # Fewer files than the sample: the same files, the same computation, the same numbers.
    assert streamed.input.mean == pytest.approx(held.input.mean, abs=1e-4)
    assert streamed.input.std == pytest.approx(held.input.std, abs=1e-4)
    assert not np.allclose(streamed.input.mean, 0.5, atol=0.02)  # not a fixed guess
    assert "seeded sample of 36 files" in streamed.decisions["normalisation"]


def test_streamed_clips_get_statistics_and_a_sample_of_at_most_64(tmp_path):
    for cls in ("l", "r"):
        (tmp_path / "clips" / cls).mkdir(parents=True)
        for i in range(3):
            make_video(tmp_path / "clips" / cls / f"{i}.mp4", frames=6, h=16, w=16)
    data = _load(tmp_path / "clips", 1, frames=4, val_split=0.0)
    assert not data.in_memory and len(data.input.mean) == 3
    assert all(0.0 < s < 1.0 for s in data.input.std)
    assert "seeded sample of 6 files" in data.decisions["normalisation"]
