"""Self-describing checkpoints, loaded without Lightning and without running code.

Training saves Lightning ``.ckpt`` files (ModelCheckpoint) whose
``hyper_parameters`` hold only plain Python types: model name and arguments,
classes, input spec, dataset, cnnkit version, seed and the training options.
Loading uses ``torch.load(weights_only=True)`` and nothing else, so a file
that would need arbitrary unpickling is refused instead of executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.errors import CheckpointError

_MODEL_PREFIX = "model."


@dataclass
class LoadedCheckpoint:
    """Everything eval, predict and inspect need from a checkpoint.

    ``state_dict``: weights of the bare network (keys without "model.").
    ``input``: {"channels", "size": [H, W], "frames": int or None, "mean", "std"}.
    """

    path: Path
    model_name: str
    model_args: dict[str, Any]
    classes: list[str]
    input: dict[str, Any]
    dataset: str
    metrics: dict[str, Any]
    cnnkit_version: str
    seed: int | None
    state_dict: dict[str, Any]
    hparams: dict[str, Any] = field(default_factory=dict)


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a cnnkit checkpoint or needs code to load ({why})",
        hint="give a .ckpt written by `cnnkit train` (runs/<name>/checkpoints/best.ckpt)",
    )


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> LoadedCheckpoint:
    """Read a cnnkit checkpoint safely (weights_only=True) and check its contents."""
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist", hint="train one with `cnnkit train`"
        )
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused a global: loading would have run code from the file.
        raise _refuse(path, str(exc).splitlines()[0][:200]) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise _refuse(path, f"unreadable: {exc}".splitlines()[0][:200]) from exc
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise _refuse(path, "no state_dict")
    hp = raw.get("hyper_parameters")
    if not isinstance(hp, dict) or "model_name" not in hp or "classes" not in hp:
        raise _refuse(path, "no cnnkit hyper_parameters")
    state = {
        k[len(_MODEL_PREFIX) :]: v
        for k, v in raw["state_dict"].items()
        if k.startswith(_MODEL_PREFIX)
    }
    if not state:
        raise _refuse(path, "no model weights")
    return LoadedCheckpoint(
        path=path,
        model_name=str(hp["model_name"]),
        model_args=dict(hp.get("model_args") or {}),
        classes=[str(c) for c in hp["classes"]],
        input=dict(hp.get("input") or {}),
        dataset=str(hp.get("dataset", "")),
        metrics=dict(hp.get("metrics") or _metrics_from_callbacks(raw)),
        cnnkit_version=str(hp.get("cnnkit_version", "")),
        seed=hp.get("seed"),
        state_dict=state,
        hparams=dict(hp),
    )


def _metrics_from_callbacks(raw: dict[str, Any]) -> dict[str, Any]:
    """The best val_acc ModelCheckpoint recorded, and the epoch, as plain numbers."""
    out: dict[str, Any] = {}
    if "epoch" in raw:
        out["epoch"] = int(raw["epoch"])
    for key, state in (raw.get("callbacks") or {}).items():
        if str(key).startswith("ModelCheckpoint") and isinstance(state, dict):
            score = state.get("best_model_score")
            if score is not None:
                out[str(state.get("monitor") or "val_acc")] = float(score)
    return out


def build_model(ckpt: LoadedCheckpoint) -> Any:
    """The checkpoint's network with its weights, in eval mode (an ``nn.Module``)."""
    from cnnkit.models.registry import create_model

    channels = int(ckpt.input.get("channels", 3))
    size = list(ckpt.input.get("size") or [])
    frames = ckpt.input.get("frames")
    input_size = None
    if size:
        input_size = (channels, *([frames] if frames else []), *size)
    model = create_model(
        ckpt.model_name,
        num_classes=len(ckpt.classes),
        in_channels=channels,
        input_size=input_size,
        **ckpt.model_args,
    )
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights in {ckpt.path} do not fit model '{ckpt.model_name}'",
            hint="the checkpoint was written by an incompatible cnnkit version",
        ) from exc
    return model.eval()
