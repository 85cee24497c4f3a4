"""The torch backend: an ``nn.Module`` in eval mode on one device."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.data.preprocess import normalize
from cnnkit.spec import InputSpec


class TorchBackend:
    """Logits of ``model`` for uint8 batches, normalised with ``spec`` on ``device``.

    ``model_name``: the registry name the model was built from ("" for a model
    built by hand), used to check clip lengths without building it again.
    """

    name = "torch"

    def __init__(self, model: Any, spec: InputSpec, device: str = "cpu", model_name: str = ""):
        self.model = model.to(device).eval()
        self.spec = spec
        self.device = device
        self.model_name = model_name
        self._windows_ok: set[int] = set()  # clip lengths check_window has accepted

    def logits(self, batch: Any) -> np.ndarray:
        import torch

        x = torch.as_tensor(batch)
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 batch, got {x.dtype}")
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            out = self.model(normalize(x, self.spec.mean, self.spec.std))
        return out.float().cpu().numpy()

    def cpu_threads(self) -> int:
        if self.device != "cpu":
            return 0
        import torch

        return torch.get_num_threads()

    def check_window(self, window: int) -> None:
        """Refuse windows too short for this 3D model: its pooling would shrink time to nothing.

        Checked on torch's meta device (shapes only, milliseconds), so the error
        names the smallest window that works before any video is decoded.
        """
        frames = self.spec.frames
        if frames is None or window == frames or window in self._windows_ok:
            return
        if not self.model_name:  # built by hand, not from the registry: nothing to rebuild
            return
        from cnnkit.models.sizes import check_input_fits

        shape = (self.spec.channels, window, *self.spec.size)
        check_input_fits(self.model_name, shape, frames_flag="--window")
        self._windows_ok.add(window)
