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

    from cnnkit.models.registry import create_model

    input_size = (channels, *([frames] if frames else []), *size)
    if state_dict is None:
        torch.manual_seed(seed)
        net = create_model(model, len(classes), channels, input_size=input_size).eval()
        state_dict = net.state_dict()
    hp = {
        "model_name": model,
        "model_args": {},
        "classes": list(classes),
        "input": {
            "channels": channels,
            "size": [int(size[0]), int(size[1])],
            "frames": frames,
            "mean": list(mean or [0.5] * channels),
            "std": list(std or [0.25] * channels),
        },
        "dataset": dataset,
        "metrics": {},
        "cnnkit_version": "0.1.0",
        "seed": seed,
        **hparams,
    }
    raw = {
        "state_dict": {f"model.{k}": v for k, v in state_dict.items()},
        "hyper_parameters": hp,
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.6.6",
    }
    path = Path(path)
    torch.save(raw, path)
    return path
