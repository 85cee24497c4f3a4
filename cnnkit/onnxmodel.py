"""Exported ``.onnx`` models in predict, eval and inspect: ONNX Runtime, never torch.

``cnnkit export`` writes graphs that take uint8 pixels and do their own
normalisation, with the checkpoint's self-description in ``metadata_props``
(see cnnkit.onnxexport). Here they are read back with ``onnx``-free ONNX Runtime
calls: the metadata gives the classes and the input spec, the preprocessing
is cnnkit.data.preprocess's numpy/OpenCV code (the very functions the .ckpt
path runs), and ``cnnkit.backends.onnx.OnnxBackend`` answers ``logits`` like the torch
backend.
Nothing in this module imports torch, torchvision or Lightning.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import CheckpointError, InputError
from cnnkit.spec import CheckpointMeta, MetaFields, SchemaError

ONNX_HINT = "pip install 'cnnkit[onnx]' (onnxruntime; add onnx for inspect's operator counts)"


def runtime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise InputError("running an .onnx model needs onnxruntime", hint=ONNX_HINT) from None
    return onnxruntime


@dataclass
class OnnxModel(MetaFields):
    """An exported model: its ONNX Runtime session and the checkpoint description it carries."""

    path: Path
    session: Any
    meta: CheckpointMeta
    props: dict[str, str]

    @property
    def reference(self) -> bool:
        """Exported from MODEL:DATA: torchvision's weights, no training run of its own."""
        return self.props.get("cnnkit.reference") == "true"

    @property
    def input_shape(self) -> list[Any]:
        return list(self.session.get_inputs()[0].shape)


def load_onnx(path: str | Path, device: str = "cpu", threads: int | None = None) -> OnnxModel:
    """Open an exported model; CheckpointError for files cnnkit did not export or cannot read."""
    ort = runtime()
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a model", hint="give the .onnx file")
    if not path.is_file():
        raise CheckpointError(
            f"model {path} does not exist", hint="write one with `cnnkit export CHECKPOINT`"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    if threads:
        options.intra_op_num_threads = threads
    providers = _providers(ort, device)  # a device error is said as such, not as a bad file
    with open(path, "rb") as f:
        if f.read(2) == b"PK":  # a zip: torch's checkpoint format
            raise CheckpointError(
                f"{path} is a PyTorch checkpoint named .onnx",
                hint="rename it to .ckpt, or export it with `cnnkit export`",
            )
    meta = _read_meta(path)
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own Fail/InvalidGraph types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{path} is not a readable ONNX model ({first[:160]})",
            hint="export it again with `cnnkit export`",
        ) from None
    props = dict(session.get_modelmeta().custom_metadata_map)
    _check_signature(path, session, meta)
    return OnnxModel(path, session, meta, props)


def _read_meta(path: Path) -> CheckpointMeta:
    """The cnnkit metadata of ``path``, read and checked before ONNX Runtime parses the file.

    The graph must hold only operators cnnkit's exports contain (see
    cnnkit.onnxfile): ONNX Runtime runs whatever it is given, a Loop of 10^15
    iterations too.
    """
    from cnnkit.onnxfile import OnnxFileError, foreign_op, read_onnx_facts

    try:
        facts = read_onnx_facts(path)
    except OnnxFileError as exc:
        raise CheckpointError(
            f"{path} is not a readable ONNX model ({exc})",
            hint="export it again with `cnnkit export`",
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read model {path}: {exc.strerror}") from None
    if "cnnkit.meta" not in facts.props:
        raise CheckpointError(
            f"{path} was not exported by cnnkit: it says nothing of its classes and input",
            hint="export the checkpoint with `cnnkit export CHECKPOINT`",
        )
    refused = foreign_op(facts)
    if refused:
        raise CheckpointError(
            f"{path} is not a model cnnkit runs: {refused}",
            hint="export the checkpoint again with `cnnkit export`",
        )
    try:
        return CheckpointMeta.from_dict(json.loads(facts.props["cnnkit.meta"]))
    except RecursionError:
        why = "it nests deeper than Python reads"
    except (ValueError, SchemaError) as exc:
        why = str(exc)
    raise CheckpointError(
        f"{path}: its cnnkit metadata is damaged or out of bounds ({why})",
        hint="export the checkpoint again with `cnnkit export`",
    )


def _check_signature(path: Path, session: Any, meta: CheckpointMeta) -> None:
    """The graph must take what the metadata says and give one logit per class."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    want = list(meta.input.shape())
    problem = None
    if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
        problem = "its input is not one uint8 tensor"
    elif [d for d in inputs[0].shape[1:]] != want:
        problem = f"its input {inputs[0].shape[1:]} is not the metadata's {want}"
    elif not outputs or outputs[0].shape[-1] != len(meta.classes):
        problem = f"its output has {outputs[0].shape[-1]} values for {len(meta.classes)} classes"
    if problem:
        raise CheckpointError(
            f"{path} does not match its own cnnkit metadata: {problem}",
            hint="export the checkpoint again with `cnnkit export`",
        )


def _providers(ort: Any, device: str) -> list[str]:
    """ONNX Runtime execution providers for --device (auto: CUDA when the build has it)."""
    available = ort.get_available_providers()
    name = (device or "auto").lower()
    if name in ("auto", "cuda") or name.startswith("cuda:"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if name != "auto":
            raise InputError(
                f"--device {device}: this onnxruntime has no CUDA execution provider",
                hint="pip install onnxruntime-gpu, or use --device cpu",
            )
    elif name != "cpu":
        raise InputError(
            f"--device {device} is not available for .onnx models", hint="use cpu or cuda"
        )
    return ["CPUExecutionProvider"]


def device_text(model: OnnxModel) -> str:
    provider = model.session.get_providers()[0]
    return "cuda" if provider == "CUDAExecutionProvider" else "cpu"


def decoder_threads_left(workers: int) -> int:
    """ONNX Runtime's threads: the cores the ``workers`` decode threads leave (as for torch)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.strip().isascii() and value.strip().isdigit() and int(value) > 0:
        return int(value)
    from cnnkit.io.pipeline import cores_left

    return cores_left(workers)


def summarize_onnx(path: str | Path) -> dict[str, Any]:
    """What inspect shows of an exported model: metadata, inputs, outputs, opset, operators."""
    model = load_onnx(path)
    summary: dict[str, Any] = {
        "kind": "onnx",
        "path": str(model.path),
        "bytes": model.path.stat().st_size,
        "model": model.model_name,
        "classes": list(model.classes),
        "input": model.input.to_dict(),
        "dataset": model.dataset,
        "cnnkit_version": model.props.get("cnnkit_version", ""),
        "source_sha256": model.props.get("source_sha256", ""),
        "inputs": [_io(v) for v in model.session.get_inputs()],
        "outputs": [_io(v) for v in model.session.get_outputs()],
        "metrics": dict(model.meta.metrics),
        "start": dict(model.meta.start),
    }
    try:
        import onnx
    except ImportError:  # counts need the graph itself; onnxruntime alone does not show it
        summary["opset"] = None
        summary["operators"] = None
        return summary
    proto = onnx.load(str(model.path), load_external_data=False)
    summary["opset"] = max(
        (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None
    )
    counts: dict[str, int] = {}
    for node in _all_nodes(proto.graph):
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    summary["operators"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return summary


def _all_nodes(graph: Any) -> Any:
    for node in graph.node:
        yield node
        for attr in node.attribute:  # If/Loop bodies
            if attr.g is not None and attr.g.node:
                yield from _all_nodes(attr.g)


def _io(value: Any) -> dict[str, Any]:
    return {"name": value.name, "shape": list(value.shape), "dtype": value.type}
