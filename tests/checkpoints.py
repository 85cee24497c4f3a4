"""Hand-made checkpoints in the Lightning layout, for tests that should not train.

The file looks like what ``cnnkit train`` writes (a ``state_dict`` with the
LightningModule's ``model.`` prefix and plain-typed ``hyper_parameters``), so
eval, predict and inspect load it the same way, without Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def make_checkpoint(
    path: str | Path,
    model: str = "lenet5",
    classes: Sequence[str] = ("a", "b", "c"),
    channels: int = 1,
    size: Sequence[int] = (16, 16),
    frames: int | None = None,
    dataset: str = "",
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    state_dict: dict[str, Any] | None = None,
    **hparams: Any,
) -> Path:
    """Write a checkpoint of ``model`` with seeded random (or given) weights; return its path."""
    import torch

    from cnnkit.checkpoint import save_checkpoint
    from cnnkit.models.registry import create_model
    from cnnkit.spec import CheckpointMeta, InputSpec

    input_size = (channels, *([frames] if frames else []), *size)
    if state_dict is None:
        torch.manual_seed(seed)
        net = create_model(model, len(classes), channels, input_size=input_size).eval()
        state_dict = net.state_dict()
    meta = CheckpointMeta(
        model_name=model,
        classes=list(classes),
        input=InputSpec(channels, (size[0], size[1]), frames, mean or [0.5] * channels,
                        std or [0.25] * channels),
        dataset=dataset,
        cnnkit_version="0.1.0",
        seed=seed,
        **hparams,
    )  # fmt: skip
    return save_checkpoint(path, meta, state_dict)
