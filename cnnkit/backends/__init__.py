"""Backends: what turns a uint8 batch into logits, for one model.

``TorchBackend`` (cnnkit.backends.torch) runs an ``nn.Module``;
``OnnxBackend`` (cnnkit.backends.onnx) an exported graph in ONNX Runtime,
without torch. Both take uint8 batches (N×C×H×W, or N×C×T×H×W for clip
models) at the model's input spec and normalise them themselves (the torch
model on its device, the ONNX graph inside). ``cnnkit.sources`` chooses one
for a model reference; ``cnnkit.predict.Predictor`` holds it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    """One model's logits. ``name``: "torch" or "onnxruntime"; ``device``: "cpu", "cuda:0"..."""

    name: str
    device: str

    def logits(self, batch: Any) -> np.ndarray:
        """uint8 batch (numpy; torch too for the torch backend) -> N×K float32 logits."""
        ...

    def cpu_threads(self) -> int:
        """CPU threads the model computes with (0 on a GPU: the CPU is left to decoding)."""
        ...

    def check_window(self, window: int) -> None:
        """Refuse clips of ``window`` frames this model cannot take (a CnnkitError)."""
        ...
