"""``cnnkit export``: a checkpoint as a self-contained ONNX model, checked against PyTorch.

The exported graph takes what predict feeds the PyTorch model: uint8 pixels,
N×C×H×W (images) or N×C×T×H×W (clips), at the checkpoint's channels, size
and frames. The normalisation (divide by 255, subtract the mean, divide by
the std) is part of the graph, so the file gives the checkpoint's logits to
anyone who feeds it pixels, with or without cnnkit. Its ``metadata_props``
carry what cnnkit's predict, eval and inspect need (cnnkit.onnxmodel reads
them without torch): the checkpoint's whole self-description under
``cnnkit.meta``, and for other readers ``classes``, ``input``, ``model``,
``cnnkit_version`` and ``source_sha256``.

The exporter is torch.onnx's ``dynamo=True`` one (torch.export, then
onnxscript): torch's TorchScript-based exporter is deprecated and to be
removed. The batch axis is dynamic unless ``--batch N`` fixes it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit import __version__, console
from cnnkit.errors import CnnkitError, InputError

ONNX_EXTRA_HINT = "pip install 'cnnkit[onnx]' (onnx, onnxscript and onnxruntime)"
DEFAULT_OPSET = 18
# ONNX Runtime and PyTorch may add in another order and pick other convolution
# algorithms: float32 results then differ by about 1e-6 of the logits' size.
# A difference above 1e-4 of it is an export that computes something else.
RELATIVE_TOLERANCE = 1e-4


class ExportError(CnnkitError):
    """The export failed, or the exported model does not compute what the checkpoint does."""


# The largest fixed batch an export takes (--batch N).
MAX_BATCH = 1024


def require(module: str) -> Any:
    """Import an optional package of the onnx extra, or say in one line how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"this needs the '{module}' package", hint=ONNX_EXTRA_HINT) from None


def normalised(model: Any, mean: Any, std: Any) -> Any:
    """``model`` taking uint8 pixels: ``normalize`` (eval's and predict's), then the model."""
    from torch import nn

    from cnnkit.data.preprocess import normalize

    class Normalised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return self.model(normalize(x, mean, std))

    return Normalised().eval()


@dataclass
class ExportResult:
    path: Path
    opset: int
    bytes: int
    max_abs_diff: float | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": "onnx",
            "opset": self.opset,
            "bytes": self.bytes,
            "max_abs_diff": self.max_abs_diff,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }


def default_output(checkpoint: str) -> Path:
    """best.ckpt -> best.onnx beside it; resnet18:imagenet -> resnet18-imagenet.onnx here."""
    from cnnkit.refs import parse_pretrained

    ref = parse_pretrained(checkpoint)
    if ref is not None:
        return Path(f"{ref[0]}-{ref[1]}.onnx")
    return Path(checkpoint).expanduser().with_suffix(".onnx")


def source_hash(ckpt: Any) -> str:
    """sha256 of the checkpoint file; for MODEL:DATA, of the weights file it was read from."""
    path = Path(ckpt.path)
    if ckpt.reference:
        from cnnkit.models.pretrained import pretrained_weights

        path = pretrained_weights(ckpt.model_name).file
    from cnnkit.checkpoint import file_sha256

    return file_sha256(path)


def metadata(ckpt: Any, sha256: str) -> dict[str, str]:
    """The metadata_props of an exported model (strings only, as ONNX keeps them)."""
    spec = ckpt.input
    meta = ckpt.meta.to_dict()
    meta["metrics"] = dict(ckpt.metrics) if hasattr(ckpt, "metrics") else meta["metrics"]
    return {
        "cnnkit.meta": json.dumps(meta),
        "classes": json.dumps(list(ckpt.classes)),
        "input": json.dumps(
            {
                **spec.to_dict(),
                "dtype": "uint8",
                "layout": "NCTHW" if spec.frames else "NCHW",
                "normalised_in_graph": True,
            }  # fmt: skip
        ),
        "model": ckpt.model_name,
        "cnnkit_version": __version__,
        "source": str(ckpt.path),
        "source_sha256": sha256,
        "cnnkit.reference": "true" if ckpt.reference else "false",
    }


def export_onnx(
    checkpoint: str,
    out: Path,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    verify: bool = True,
) -> ExportResult:
    """Export ``checkpoint`` (a .ckpt or MODEL:DATA) to ``out``; see the module docstring."""
    onnx = require("onnx")
    require("onnxscript")
    if verify:
        require("onnxruntime")
    import torch

    from cnnkit.checkpoint import build_model
    from cnnkit.io.atomic import atomic_output, check_output_path
    from cnnkit.sources import open_checkpoint

    if str(checkpoint).lower().endswith(".onnx") or _is_onnx_file(Path(checkpoint)):
        raise InputError(
            f"{checkpoint} is an exported ONNX model already; export takes a checkpoint",
            hint="give the .ckpt it came from (its path is under 'source' in `cnnkit inspect`)",
        )
    out = Path(out)
    if not out.name.lower().endswith(".onnx") or out.name.lower() == ".onnx":
        raise InputError(f"{out}: the output of export is an .onnx file", hint="e.g. -o model.onnx")
    if Path(checkpoint).expanduser().resolve() == out.expanduser().resolve():
        raise InputError(f"{out} is the checkpoint itself", hint="choose another -o FILE.onnx")
    check_output_path(out)
    ckpt = open_checkpoint(checkpoint)
    spec = ckpt.input
    model = normalised(build_model(ckpt), spec.mean, spec.std)
    n = batch or 2
    example = torch.from_numpy(_sample_batch(spec.shape(), n, seed=0))
    dynamic = None if batch else ({0: torch.export.Dim("batch", min=1, max=1 << 16)},)
    console.info(f"exporting {ckpt.model_name} ({'×'.join(map(str, spec.shape()))} inputs) ...")
    try:
        with warnings.catch_warnings(), _quiet_onnx_logs():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=dynamic,
                verbose=False,
            )
    except MemoryError:
        raise  # not the model's fault: the CLI reports it as memory, with the limit
    except Exception as exc:  # noqa: BLE001 - the exporter's errors are many and deep
        raise ExportError(
            f"torch.onnx could not export {ckpt.model_name}: {_first_line(exc)}",
            hint="try another --opset, or report the model and cnnkit version",
        ) from None
    proto = program.model_proto
    for key, value in metadata(ckpt, source_hash(ckpt)).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"cnnkit {__version__}: {ckpt.model_name}, {len(ckpt.classes)} classes"
    data = proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data))
    _check_runnable(data, ckpt.model_name)
    max_diff = None
    if verify:
        max_diff = _verify(data, model, spec.shape(), n)
    with atomic_output(out) as temp:
        temp.write_bytes(data)
    return ExportResult(out, opset, len(data), max_diff, *_signature(proto))


def _check_runnable(data: bytes, model_name: str) -> None:
    """The graph must be one cnnkit's .onnx reader runs (see cnnkit.onnxfile.EXPORTED_OPS).

    The reader runs only the operators this exporter writes for cnnkit's
    models; another torch version writing another one is said here, not by
    every later predict.
    """
    from cnnkit.onnxfile import OnnxFileError, foreign_op, onnx_facts

    try:
        refused = foreign_op(onnx_facts(data))
    except OnnxFileError as exc:
        refused = str(exc)
    if refused:
        raise ExportError(
            f"the export of {model_name} is not one cnnkit's predict would run: {refused}",
            hint="nothing was written; report the model and the torch version",
        )


def _is_onnx_file(path: Path) -> bool:
    """Whether ``path`` holds an ONNX model whatever its name (a .ckpt is a zip: "PK")."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return head[:1] == b"\x08"  # field 1 of a ModelProto (ir_version), as a varint


def _sample_batch(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """n real-shaped uint8 inputs: smooth gradients plus noise, all of the 0-255 range."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(n, *shape), dtype=np.int64)
    ramp = np.linspace(0, 255, shape[-1])[None, :] + np.linspace(0, 255, shape[-2])[:, None]
    return ((noise + ramp / 2) % 256).astype(np.uint8)


def _verify(data: bytes, model: Any, shape: tuple[int, ...], n: int) -> float:
    """Run the ONNX model in ONNX Runtime and PyTorch on the same inputs; the max |difference|."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = 0.0
    for seed in (1, 2):
        x = _sample_batch(shape, n, seed)
        got = session.run(None, {"input": x})[0]
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).float().numpy()
        diff = float(np.abs(got - want).max())
        scale = max(float(np.abs(want).max()), 1e-3)
        if not np.isfinite(diff) or diff > RELATIVE_TOLERANCE * scale:
            raise ExportError(
                f"the exported model's logits differ from PyTorch's by {diff:.3g} (logits up to "
                f"{scale:.3g}; allowed {RELATIVE_TOLERANCE:g} of that)",
                hint="nothing was written; try another --opset",
            )
        worst = max(worst, diff)
    return worst


def _signature(proto: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The graph's inputs and outputs: name, shape (names for dynamic axes) and element type."""
    from onnx import TensorProto

    def describe(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            out.append(
                {"name": v.name, "shape": dims, "dtype": TensorProto.DataType.Name(t.elem_type)}
            )
        return out

    return describe(proto.graph.input), describe(proto.graph.output)


def _first_line(exc: BaseException) -> str:
    """The cause of an exporter error in one plain line (its text is coloured and long)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):  # torch.onnx puts the cause under "## Exception summary"
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            return lines[i + 1][:200]
    cause = exc.__cause__
    if cause is not None and lines and "step 1/3" in lines[0]:
        return _first_line(cause)
    return (lines[0] if lines else type(exc).__name__)[:200]


class _quiet_onnx_logs:
    """torch.onnx's exporter logs its progress at INFO/WARNING; a CLI wants one line."""

    def __enter__(self) -> None:
        import logging

        self._level = logging.root.manager.disable
        logging.disable(logging.WARNING)

    def __exit__(self, *exc: Any) -> None:
        import logging

        logging.disable(self._level)
