"""The torch backend: an ``nn.Module`` in eval mode on one device."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.data.preprocess import normalize
from cnnkit.spec import InputSpec

# On the CPU a batch goes through the model this many input values at a time. A
# torch op returns to Python, where SIGTERM and Ctrl-C are handled, only when it
# is done: one op on a batch of 256 224×224 images (resnet18, 2 cores) took
# 1.7 s, and one on the largest --batch-size minutes. Chunks of 2M values (13
# such images) bound that to about 0.1 s, and ran faster too (resnet18 on 256
# images: 6.4 s in chunks of 16, 16 s whole: the activations stay in cache).
CPU_CHUNK_VALUES = 2**21


class TorchBackend:
    """Logits of ``model`` for uint8 batches, normalised with ``spec`` on ``device``.

    ``model_name``: the registry name the model was built from ("" for a model
    built by hand), used to check clip lengths without building it again.
    """

    name = "torch"

    def __init__(
        self,
        model: Any,
        spec: InputSpec,
        device: str = "cpu",
        model_name: str = "",
        compute: Any = None,
    ):
        from cnnkit.io.cpu import torch_follows_budget
        from cnnkit.precision import Compute

        torch_follows_budget()  # the command line's process computes on its CPU budget
        self.compute = compute or Compute()
        self.model = self.compute.prepare_model(model.to(device).eval())
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
            step = len(x)
            if x.device.type == "cpu" and len(x) > 1:  # see CPU_CHUNK_VALUES
                step = max(1, CPU_CHUNK_VALUES // max(1, x[0].numel()))
            compute = self.compute
            with compute.context(x.device.type):
                outs = [
                    self.model(
                        compute.prepare_input(
                            normalize(x[i : i + step], self.spec.mean, self.spec.std)
                        )
                    )
                    for i in range(0, len(x), step)
                ]
            out = outs[0] if len(outs) == 1 else torch.cat(outs)
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
