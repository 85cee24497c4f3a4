"""The ONNX Runtime backend: an exported graph that normalises its uint8 input itself.

Imports neither torch nor cnnkit's torch code: an ``.onnx`` runs where torch
is not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.errors import InputError
from cnnkit.onnxmodel import OnnxModel, device_text, run_error, runtime


class OnnxBackend:
    """Logits of an exported model (cnnkit.onnxmodel.load_onnx) for uint8 batches."""

    name = "onnxruntime"

    def __init__(self, model: OnnxModel) -> None:
        self.onnx = model
        self.device = device_text(model)
        self._input_name = model.session.get_inputs()[0].name
        shape = model.input_shape
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        clips = model.input.frames is not None
        self._fixed_frames = shape[2] if clips and isinstance(shape[2], int) else None

    def cpu_threads(self) -> int:
        """ONNX Runtime's intra-op threads (0 on a GPU, or when it chose them itself)."""
        if self.device != "cpu":
            return 0
        options = self.onnx.session.get_session_options()
        return int(options.intra_op_num_threads)

    def check_window(self, window: int) -> None:
        """An exported 3D model takes clips of exactly its frames: other windows are refused."""
        if self._fixed_frames is not None and window != self._fixed_frames:
            raise InputError(
                f"--window {window}: {self.onnx.path} takes clips of exactly "
                f"{self._fixed_frames} frames",
                hint=f"use --window {self._fixed_frames}, or the .ckpt for other lengths",
            )

    def logits(self, batch: Any) -> np.ndarray:
        x = np.ascontiguousarray(batch)
        if x.dtype != np.uint8:
            raise TypeError(f"expected a uint8 batch, got {x.dtype}")
        if self._fixed_batch is None or len(x) == self._fixed_batch:
            return self._run(x)
        # A model exported with --batch N: run N at a time, the last chunk padded.
        n = self._fixed_batch
        out = []
        for start in range(0, len(x), n):
            chunk = x[start : start + n]
            if len(chunk) < n:
                pad = np.zeros((n - len(chunk), *chunk.shape[1:]), np.uint8)
                out.append(self._run(np.concatenate([chunk, pad]))[: len(chunk)])
            else:
                out.append(self._run(chunk))
        return np.concatenate(out)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One session run that ``cnnkit.stopping.stop_all()`` ends between two nodes."""
        from cnnkit.stopping import CallStopped, stoppable

        options = runtime().RunOptions()

        def stop() -> None:
            options.terminate = True

        with stoppable(stop):
            try:
                out = self.onnx.session.run(None, {self._input_name: x}, options)
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types
                if options.terminate:
                    raise CallStopped("the ONNX Runtime run was stopped") from None
                raise run_error(self.onnx.path, exc) from None
        return np.asarray(out[0], np.float32)
