"""Self-describing checkpoints, loaded without Lightning and without running code.

Training saves Lightning ``.ckpt`` files (ModelCheckpoint) whose
``hyper_parameters`` hold only plain Python types: model name and arguments,
classes, input spec, dataset, cnnkit version, seed and the training options.
Loading uses ``torch.load(weights_only=True)`` and nothing else, so a file
that would need arbitrary unpickling is refused instead of executed; the
file is checked before (cnnkit.torchfile), and the model it describes is
built on the meta device and compared with its weights before any memory is
taken for it, so that a small crafted file cannot make either allocate
gigabytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnkit.errors import CheckpointError
from cnnkit.spec import CheckpointMeta, MetaFields, SchemaError

_MODEL_PREFIX = "model."


@dataclass
class LoadedCheckpoint(MetaFields):
    """Everything eval, predict and inspect need from a checkpoint.

    ``meta``: its self-description (cnnkit.spec.CheckpointMeta); ``state_dict``:
    weights of the bare network (keys without "model."); ``hparams``: the raw
    hyper_parameters as stored.
    """

    path: Path
    meta: CheckpointMeta
    state_dict: dict[str, Any]
    hparams: dict[str, Any] = field(default_factory=dict)
    # Epochs whose training part was finished when the file was saved (Lightning's
    # loop progress); None for files that do not record it.
    epochs_done: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    # A MODEL:DATA reference (torchvision's weights as they are): no training run,
    # no splits of its own, and a data folder may hold any subset of its classes.
    reference: bool = False
    # Where a reference's weights were read from and come from: (cached file, URL).
    weights_source: tuple[str, str] | None = None


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a cnnkit checkpoint or needs code to load ({why})",
        hint="give a .ckpt written by `cnnkit train` (runs/<name>/checkpoints/best.ckpt)",
    )


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> LoadedCheckpoint:
    """Read a cnnkit checkpoint safely (weights_only=True) and check its contents."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint",
            hint="give the file, e.g. runs/train/checkpoints/best.ckpt",
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist",
            hint="train one with `cnnkit train`, or name a pretrained model as MODEL:DATA "
            "(e.g. resnet18:imagenet)",
        )
    raw = _load_weights_only(path, map_location)
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict):
        raise _refuse(path, "no state_dict")
    hp = raw.get("hyper_parameters")
    if not isinstance(hp, dict) or "model_name" not in hp or "classes" not in hp:
        raise _refuse(path, "no cnnkit hyper_parameters")
    try:
        meta = CheckpointMeta.from_dict(hp)
    except SchemaError as exc:
        raise _refuse(path, str(exc)) from None
    state = {
        k[len(_MODEL_PREFIX) :]: v
        for k, v in raw["state_dict"].items()
        if isinstance(k, str) and k.startswith(_MODEL_PREFIX)
    }
    if not state:
        raise _refuse(path, "no model weights")
    return LoadedCheckpoint(
        path=path,
        meta=meta,
        state_dict=state,
        hparams=dict(hp),
        epochs_done=_epochs_done(raw),
        metrics=meta.metrics or _metrics_from_callbacks(raw),
    )


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read 1 MiB at a time (weights files run to gigabytes)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, meta: CheckpointMeta, state_dict: dict[str, Any]) -> Path:
    """Write a bare network's weights with ``meta`` in the layout ``cnnkit train`` writes.

    Lightning's own checkpoints add the loops' and optimizer's state; this
    minimal form (for tests, benchmarks and hand-made models) loads the same
    way everywhere except ``--resume``, which needs that state. Written atomically.
    """
    import torch

    from cnnkit.io.atomic import atomic_output

    raw = {
        "state_dict": {f"{_MODEL_PREFIX}{k}": v for k, v in state_dict.items()},
        "hyper_parameters": meta.to_dict(),
        "epoch": 0,
        "global_step": 0,
    }
    with atomic_output(path) as temp:
        torch.save(raw, temp)
    return Path(path)


def _epochs_done(raw: dict[str, Any]) -> int | None:
    """How many epochs had all their training batches processed when ``raw`` was saved."""
    try:
        progress = raw["loops"]["fit_loop"]["epoch_progress"]["current"]
        processed = _number(progress["processed"])
    except (KeyError, TypeError, IndexError):
        return None
    return int(processed) if processed is not None else None


def _number(value: Any) -> float | None:
    """A finite number: a plain one, or a one-element tensor's; None for anything else."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            return None
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _load_weights_only(path: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)``, every way it can fail turned into a CheckpointError.

    The file is checked first (cnnkit.torchfile): torch allocates what a file
    declares, and a small crafted file declares gigabytes. Truncated, foreign
    and garbage files fail deep inside torch's zip reader or its restricted
    unpickler with a zoo of exception types; each one named here is one that
    a damaged file was seen to raise.
    """
    import pickle
    import struct
    import warnings
    import zipfile

    from cnnkit.torchfile import UnsafeFile, check_torch_file

    try:
        if path.stat().st_size == 0:
            raise _refuse(path, "the file is empty")
        check_torch_file(path)
    except UnsafeFile as exc:
        raise _refuse(path, str(exc)) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    import torch

    try:
        with warnings.catch_warnings():
            # Foreign pickles draw a UserWarning about their protocol before being refused.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused a global: loading would have run code from the file.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        why = f"it would call {found.group(1)}" if found else "not a weights-only pickle"
        raise _refuse(path, why) from None
    except KeyError:
        # The restricted unpickler meets a byte that is no pickle opcode it knows.
        raise _refuse(path, "damaged, truncated or not a torch file") from None
    except (RuntimeError, EOFError, struct.error, zipfile.BadZipFile) as exc:
        raise _refuse(path, f"damaged, truncated or not a torch file: {_first_line(exc)}") from None
    except (ValueError, TypeError, IndexError, AttributeError, AssertionError) as exc:
        # Calls the scan let through, given arguments of the wrong kind.
        raise _refuse(path, f"damaged, truncated or not a torch file: {_first_line(exc)}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None


def _first_line(exc: BaseException) -> str:
    """A short, readable reason: torch's zip errors run to several lines of advice."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text)
    text = text.split(". This is an internal miniz error")[0]
    return (text[:120] or type(exc).__name__).rstrip(".")


def _metrics_from_callbacks(raw: dict[str, Any]) -> dict[str, Any]:
    """The best val_acc ModelCheckpoint recorded, and the epoch, as plain numbers."""
    out: dict[str, Any] = {}
    epoch = _number(raw.get("epoch"))
    if epoch is not None:
        out["epoch"] = int(epoch)
    callbacks = raw.get("callbacks")
    for key, state in callbacks.items() if isinstance(callbacks, dict) else ():
        if str(key).startswith("ModelCheckpoint") and isinstance(state, dict):
            score = _number(state.get("best_model_score"))
            monitor = state.get("monitor")
            if score is not None:
                out[monitor if isinstance(monitor, str) else "val_acc"] = score
    return out


def build_model(ckpt: LoadedCheckpoint) -> Any:
    """The checkpoint's network with its weights, in eval mode (an ``nn.Module``).

    The network is built first on torch's meta device, which allocates
    nothing: a model whose parameters do not match the file's tensors, or need
    more values than the file holds (model arguments edited to ask for
    gigabytes), is refused before any memory is taken for it.
    """
    import torch

    from cnnkit.models.registry import create_model

    args = {
        "num_classes": len(ckpt.classes),
        "in_channels": ckpt.input.channels,
        "input_size": ckpt.input.shape(),
        **ckpt.model_args,
    }
    try:
        with torch.device("meta"):
            skeleton = create_model(ckpt.model_name, **args)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        # Arguments the model does not take: a foreign or hand-edited checkpoint.
        raise CheckpointError(
            f"{ckpt.path} describes a '{ckpt.model_name}' model cnnkit cannot build "
            f"({_first_line(exc)})",
            hint="the checkpoint was written by an incompatible cnnkit version",
        ) from None
    from cnnkit.models.fitcheck import misfit as find_misfit

    misfit = find_misfit(skeleton, ckpt.state_dict)
    if misfit:
        raise _does_not_fit(ckpt, misfit)
    _check_activations(ckpt, skeleton)
    model = create_model(ckpt.model_name, **args)
    try:
        model.load_state_dict(ckpt.state_dict)
    except (RuntimeError, TypeError, AttributeError) as exc:
        # RuntimeError lists missing/unexpected keys and shape mismatches; the others
        # come from values that are not tensors.
        raise _does_not_fit(ckpt, _first_line(exc)) from exc
    return model.eval()


# The most bytes the layer outputs of one input may take together (float32, every
# layer counted as if all were alive at once): resnet50 at 224×224 takes 0.13 GB,
# r3d_18 on 16×112×112 clips 0.25 GB. An input size in the metadata that asks for more
# (a lenet5 declaring 8192×8192 pixels: 3.6 GB a sample) is refused before any
# image is resized to it.
MAX_ACTIVATION_BYTES = 4 * 2**30
# Input values (C×T×H×W) up to which the count is skipped: 3×512×512 images and
# 3×16×128×128 clips (resnet50 at 512×512 computes 0.7 GB).
ACTIVATIONS_CHECKED_ABOVE = 3 * 512 * 512


def activation_bytes(skeleton: Any, shape: tuple[int, ...]) -> int:
    """Bytes of every leaf layer's output for one input of ``shape`` (on torch's meta device)."""
    import torch

    total = [0]

    def count(_m: Any, _a: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * 4

    handles = [m.register_forward_hook(count) for m in skeleton.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            skeleton(torch.empty((1, *shape), device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _check_activations(ckpt: LoadedCheckpoint, skeleton: Any) -> None:
    """Refuse an input size whose layer outputs would take more than MAX_ACTIVATION_BYTES.

    Inputs of up to ACTIVATIONS_CHECKED_ABOVE values pass unchecked: every
    registered model stays far below the bound there, and the first pass on
    torch's meta device costs 1.7 s of imports, which predict's start cannot
    spare for every checkpoint.
    """
    shape = tuple(int(n) for n in ckpt.input.shape())
    if math.prod(shape) <= ACTIVATIONS_CHECKED_ABOVE:
        return
    try:
        need = activation_bytes(skeleton.eval(), shape)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"{ckpt.path}: model '{ckpt.model_name}' cannot take its own input size "
            f"{'×'.join(map(str, shape))} ({_first_line(exc)})",
            hint="the checkpoint's metadata was altered, or written by an incompatible cnnkit",
        ) from None
    if need > MAX_ACTIVATION_BYTES:
        from cnnkit.ops.limits import size_text

        raise CheckpointError(
            f"{ckpt.path}: its input size {'×'.join(map(str, shape))} makes "
            f"'{ckpt.model_name}' compute {size_text(need)} of layer outputs for each input, "
            f"more than the {size_text(MAX_ACTIVATION_BYTES)} cnnkit allows",
            hint="the checkpoint's metadata was altered; train or export it again",
        )


def _does_not_fit(ckpt: LoadedCheckpoint, why: str) -> CheckpointError:
    if ckpt.reference:
        file, url = ckpt.weights_source or ("the cached weights file", "its URL")
        return CheckpointError(
            f"the cached weights file {file} does not hold {ckpt.model_name}'s weights",
            hint=f"delete it and run again to fetch it from {url}",
        )
    return CheckpointError(
        f"weights in {ckpt.path} do not fit model '{ckpt.model_name}': {why}",
        hint="the checkpoint was written by an incompatible cnnkit version",
    )
