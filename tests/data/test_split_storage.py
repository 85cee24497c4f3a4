"""One in-memory form of a decoded split: numpy arrays that training reads as tensors.

A folder decoded for training, for a torch-free evaluation, and a built-in
dataset all give the same ``Split``; torch batches are views of its memory,
not copies, and the module that defines it never imports torch.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import torch

from cnnkit.data.arrays import Split
from cnnkit.data.memory import InMemoryBatches, as_tensors
from cnnkit.data.registry import DatasetRequest, load_dataset
from tests.helpers import make_image_folder


def test_training_and_torch_free_eval_share_one_split_form(tmp_path):
    make_image_folder(tmp_path, ["a", "b"], per_class=4, h=8, w=8)
    request = DatasetRequest(str(tmp_path), img_size=8, seed=1)
    for_training = load_dataset(request).splits["train"]
    for_onnx_eval = load_dataset(replace(request, numpy=True)).splits["train"]
    builtin = load_dataset(DatasetRequest("shapes", limit=6)).splits["train"]
    assert type(for_training) is type(for_onnx_eval) is type(builtin) is Split
    assert np.array_equal(for_training.x, for_onnx_eval.x)
    assert for_training.paths == for_onnx_eval.paths
    # Training's batches come from the same memory, not from a second copy.
    tensors = InMemoryBatches(for_training, 4, shuffle=False, train=False).tensors
    assert tensors.x.data_ptr() == for_training.x.ctypes.data
    x, y = next(iter(InMemoryBatches(for_training, 4, shuffle=False, train=False)))
    assert torch.equal(x, torch.from_numpy(for_training.x[:4]))
    assert y.tolist() == for_training.y[:4].tolist()


def test_a_read_only_or_strided_array_is_copied_once_and_torch_does_not_warn():
    x = np.arange(2 * 8 * 4 * 4, dtype=np.uint8).reshape(2, 8, 4, 4)[:, ::2]  # strided
    x.flags.writeable = False
    split = Split(x, np.array([1, 0], np.int32))
    assert split.x.flags.c_contiguous and split.x.flags.writeable
    assert np.array_equal(split.x, x) and split.y.dtype == np.int64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy warns on a read-only array
        assert torch.equal(as_tensors(split).x, torch.from_numpy(np.array(x)))


def test_subset_keeps_the_order_asked_for():
    x = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1)
    lengths = np.array([3, 4, 5, 6, 7])
    split = Split(x, np.arange(5), 2, lengths, [f"f{i}" for i in range(5)])
    part = split.subset(np.array([4, 0, 2]))
    assert part.x.ravel().tolist() == [4, 0, 2] and part.y.tolist() == [4, 0, 2]
    assert part.lengths.tolist() == [7, 3, 5] and part.paths == ["f4", "f0", "f2"]
    assert part.frames == 2 and len(part) == 3


def test_the_split_module_does_not_import_torch():
    code = "import sys, cnnkit.data.arrays; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
