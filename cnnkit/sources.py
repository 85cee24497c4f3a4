"""The one resolver: a model reference -> its metadata and a backend that runs it.

Every command that takes a model, and ``cnnkit.load``, comes here. The
reference is parsed once (cnnkit.refs); then:

- an ``.onnx`` is read and checked by cnnkit.onnxmodel and runs in ONNX
  Runtime (cnnkit.backends.onnx), without torch;
- a ``.ckpt`` is read weights-only by cnnkit.checkpoint, and ``MODEL:DATA``
  is torchvision's weights as they are (cnnkit.models.pretrained); both are
  built as an ``nn.Module`` that runs in torch (cnnkit.backends.torch) on the
  device ``--device`` names or ``auto`` finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.backends import Backend
from cnnkit.refs import Reference, parse


@dataclass
class Opened:
    """An opened model: what it is, its metadata, and the backend that runs it.

    ``source``: the ``LoadedCheckpoint`` (checkpoints and MODEL:DATA) or the
    ``OnnxModel`` it was read as; both have ``classes``, ``input``,
    ``model_name``, ``meta``. ``device``: how the device was chosen, in words.
    """

    ref: Reference
    source: Any
    backend: Backend
    device: str
    compute: Any = None  # how a torch model computes (cnnkit.precision.Compute)


def open_checkpoint(ref: str | Path) -> Any:
    """A ``.ckpt`` file, or torchvision's pretrained ``MODEL:DATA`` as a LoadedCheckpoint.

    A ``MODEL:DATA`` reference is torchvision's weights used as they are, with
    the weights' category names as classes (cnnkit.models.pretrained).
    """
    parsed = parse(ref)
    if parsed.kind == "pretrained":
        from cnnkit.models.pretrained import reference_checkpoint

        return reference_checkpoint(parsed.text)
    from cnnkit.checkpoint import load_checkpoint

    return load_checkpoint(ref)


def open_model(
    ref: str | Path, device: str = "auto", threads: int | None = None, precision: str = "auto"
) -> Opened:
    """Open ``ref`` (.ckpt, .onnx or MODEL:DATA) on ``device``, ready to compute logits.

    ``threads``: ONNX Runtime's intra-op threads (None: its own choice); a
    torch model computes on torch's threads, which this does not change.
    ``precision``: auto (as the checkpoint was trained, where the device
    computes that natively), 32 or bf16 (cnnkit.precision); an .onnx
    computes in float32.
    """
    from cnnkit.precision import normalise_choice

    parsed = parse(ref)
    choice = normalise_choice(precision)
    if parsed.kind == "onnx":
        if choice not in ("auto", "32"):
            from cnnkit.errors import InputError

            raise InputError(
                f"--precision {precision}: an .onnx model computes in float32",
                hint="drop --precision, or give the .ckpt it was exported from",
            )
        from cnnkit.backends.onnx import OnnxBackend
        from cnnkit.onnxmodel import device_text, load_onnx

        model = load_onnx(ref, device, threads=threads)
        return Opened(parsed, model, OnnxBackend(model), f"{device_text(model)} (ONNX Runtime)")
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # not installed (one that fails to load
        from cnnkit.errors import InputError  # raises its own error below)

        raise InputError(
            f"{parsed.text}: a torch model needs torch, which is not installed",
            hint="pip install torch torchvision, or export the model to .onnx where torch is",
        )
    from cnnkit.backends.torch import TorchBackend
    from cnnkit.checkpoint import build_model
    from cnnkit.device import resolve_device
    from cnnkit.precision import for_checkpoint

    ckpt = open_checkpoint(ref)
    where = resolve_device(device)
    model = build_model(ckpt)
    compute = for_checkpoint(choice, where.torch_device, model, ckpt)
    backend = TorchBackend(model, ckpt.input, where.torch_device, ckpt.model_name, compute)
    device_text = f"{where.torch_device} ({where.reason})"
    return Opened(parsed, ckpt, backend, device_text, compute)
