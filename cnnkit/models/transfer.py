"""Starting a model from weights: the classifier head, loading what fits, freezing the rest.

Used by ``cnnkit train --pretrained`` / ``--weights FILE`` / ``--freeze``.
The head of every registered model is its last ``nn.Linear`` (``fc`` of the
ResNets, ``classifier.3`` of MobileNetV3, ``out`` of the 1989 net...): the one
layer whose shape depends on the classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.errors import CheckpointError
from cnnkit.models.fitcheck import few_names, shapes_text


def head_name(model: Any) -> str:
    """The name of ``model``'s classifier head: its last ``nn.Linear`` module."""
    from torch import nn

    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no linear classifier head")
    return names[-1]


def head_keys(model: Any) -> set[str]:
    """The state-dict keys of the head ("fc.weight", "fc.bias")."""
    head = head_name(model)
    return {k for k in model.state_dict() if k.rsplit(".", 1)[0] == head}


def first_conv_channels(model: Any, state: dict[str, Any]) -> int | None:
    """The input channels ``state``'s weights take: its first convolution's (None if unknown)."""
    from torch import nn

    name = next(
        (n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None
    )
    weight = state.get(f"{name}.weight") if name is not None else None
    return int(weight.shape[1]) if weight is not None and weight.dim() >= 3 else None


@dataclass
class LoadReport:
    """What loading a start did: keys loaded, keys left at their initial values, and why."""

    loaded: list[str] = field(default_factory=list)
    new_head: bool = False
    skipped: list[str] = field(default_factory=list)  # shape mismatches, in "key: a vs b" words

    def record(self) -> dict[str, Any]:
        return {
            "tensors_loaded": len(self.loaded),
            "head": "new" if self.new_head else "loaded",
            "not_loaded": list(self.skipped),
        }


def load_start(
    model: Any,
    state: dict[str, Any],
    source: str,
    *,
    lenient: bool,
    new_head: bool = False,
    model_name: str = "",
) -> LoadReport:
    """Copy ``state`` into ``model``: every tensor, or all but a head whose classes differ.

    ``new_head``: keep the model's fresh head even where the file's fits (its
    classes are others). A head that does not fit is always new, and so is
    one whose inputs come from layers left at their initial values.

    ``lenient`` (a cnnkit checkpoint of the same model): tensors whose shape
    differs are left at their initial values and listed. Otherwise (a plain
    state dict, torchvision's weights) everything but the head must match:
    a CheckpointError names the first missing, unexpected and misshapen keys.
    """
    import torch

    own = model.state_dict()
    head = head_keys(model)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [
        k
        for k in own
        if k in state
        and (not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(own[k].shape))
    ]
    new_head = new_head or any(k in head for k in missing + misshapen)
    if lenient and any(k not in head for k in misshapen):
        new_head = True  # the layers feeding the head start afresh: so does the head
    if not lenient:
        bad_missing = [k for k in missing if k not in head]
        bad_shape = [k for k in misshapen if k not in head]
        if bad_missing or unexpected or bad_shape:
            parts = []
            if bad_missing:
                parts.append("missing " + few_names(bad_missing))
            if unexpected:
                parts.append("unexpected " + few_names(unexpected))
            if bad_shape:
                parts.append(
                    "wrong shape " + few_names([shapes_text(k, state, own) for k in bad_shape])
                )
            raise CheckpointError(
                f"{source} does not fit model '{model_name or type(model).__name__}': "
                f"{'; '.join(parts)}",
                hint="give weights saved from the same architecture (--model chooses it)",
            )
    report = LoadReport(new_head=new_head)
    take = {k: state[k] for k in own if k in state and k not in misshapen}
    if new_head:
        take = {k: v for k, v in take.items() if k not in head}  # a head is all new or all loaded
    with torch.no_grad():
        for key, value in take.items():
            own[key].copy_(value.to(own[key].dtype))
    report.loaded = sorted(take)
    report.skipped = [shapes_text(k, state, own) for k in misshapen if k not in head]
    return report


def freeze_all_but_head(model: Any) -> list[str]:
    """Train only the head: every other module stops its gradients and runs in eval mode.

    Returns the frozen modules' names: the children of the model, and of the
    head's parents, that do not hold the head. Eval mode keeps their batch-norm
    statistics those of the weights and their dropout off, as at inference;
    ClassifierModule keeps them in that mode while training.
    """
    head = head_name(model)
    frozen: list[str] = []

    def walk(module: Any, prefix: str) -> None:
        for name, child in module.named_children():
            full = prefix + name
            if full == head:
                continue
            if head.startswith(full + "."):
                walk(child, full + ".")
                continue
            child.requires_grad_(False)
            child.eval()
            frozen.append(full)

    walk(model, "")
    return frozen


def frozen_modules(model: Any, names: list[str]) -> list[Any]:
    """The modules named in ``names`` (as freeze_all_but_head returned them)."""
    modules = dict(model.named_modules())
    return [modules[n] for n in names if n in modules]


# ---------------------------------------------------------------------------
# weight files: cnnkit checkpoints, plain state dicts, safetensors
# ---------------------------------------------------------------------------


@dataclass
class WeightsFile:
    """A --weights file read: its tensors and, for a cnnkit checkpoint, its description."""

    path: Path
    state: dict[str, Any]
    kind: str  # "checkpoint", "state_dict" or "safetensors"
    checkpoint: Any = None  # the LoadedCheckpoint of a cnnkit checkpoint


def read_weights_file(path: str | Path) -> WeightsFile:
    """Read ``path`` without running code from it; CheckpointError says what is wrong.

    A cnnkit checkpoint (``.ckpt``, or any torch file with cnnkit's
    hyper_parameters); a ``.safetensors`` file; or a torch file holding a state
    dict (also one under a "state_dict" or "model" key, as many scripts save).
    """
    import torch

    path = Path(path).expanduser()
    kinds = "a cnnkit .ckpt, a .pth/.pt state dict or a .safetensors file"
    if path.is_dir():
        raise CheckpointError(f"--weights {path} is a folder", hint=f"give {kinds}")
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist", hint=f"give {kinds}")
    if path.suffix.lower() == ".safetensors":
        return WeightsFile(path, _read_safetensors(path), "safetensors")
    from cnnkit.checkpoint import _load_weights_only, load_checkpoint

    try:
        raw = _load_weights_only(path, "cpu")
    except CheckpointError as exc:
        # Reworded: the file may be meant as a state dict, not only as a checkpoint.
        why = exc.message.split(" needs code to load ", 1)[-1]
        raise CheckpointError(
            f"{path} is not a weights file cnnkit can read without running code {why}",
            hint=f"give {kinds}; save weights with torch.save(model.state_dict(), path), "
            "not the whole model",
        ) from None
    if isinstance(raw, dict) and isinstance(raw.get("hyper_parameters"), dict):
        ckpt = load_checkpoint(path)
        return WeightsFile(path, ckpt.state_dict, "checkpoint", ckpt)
    state = raw
    if isinstance(raw, dict):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), dict):
                state = raw[key]
                break
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise CheckpointError(
            f"{path} holds no state dict (a mapping of names to tensors)",
            hint="save one with torch.save(model.state_dict(), path)",
        )
    return WeightsFile(path, dict(state), "state_dict")


def _read_safetensors(path: Path) -> dict[str, Any]:
    from cnnkit.torchfile import UnsafeFile, check_safetensors

    try:
        check_safetensors(path)
    except UnsafeFile as exc:
        raise CheckpointError(
            f"{path} is not a readable .safetensors file ({exc})",
            hint="check the file, or save it again with safetensors.torch.save_file",
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - a dependency of cnnkit
        raise CheckpointError(
            f"reading {path} needs the safetensors package", hint="pip install safetensors"
        ) from None
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable .safetensors file ({str(exc).splitlines()[0][:120]})",
            hint="check the file, or save it again with safetensors.torch.save_file",
        ) from None
