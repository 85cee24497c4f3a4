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
import re
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
    # Nothing of ONNX Runtime's own logging: cnnkit reports its errors in one line.
    options.log_severity_level = 4
    # Constant folding computes, while the session is made, whatever part of the
    # graph depends on stored values only; cnnkit's exports have none left, and
    # a crafted graph's would run there for as long as it likes, out of reach of
    # SIGTERM (cnnkit.stopping stops runs, not the making of a session).
    options.add_session_config_entry("optimization.disable_specified_optimizers", "ConstantFolding")
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
    sample = 1
    for n in meta.input.shape():
        sample *= int(n)
    if _capped_arena(ort, _model_needs(path.stat().st_size, sample)):
        options.add_session_config_entry("session.use_env_allocators", "1")
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


# The CPU memory ONNX Runtime may take for cnnkit's sessions: set once per process.
_ARENA: dict[str, int | None] = {}
_MIN_ARENA = 256 * 2**20


def arena_limit() -> int | None:
    """The bytes cnnkit's ONNX Runtime sessions may allocate on the CPU (None: no cap)."""
    return _ARENA.get("limit")


# What a model cnnkit exports may need on the CPU: its weights (a few times over:
# ONNX Runtime keeps pre-packed copies) and, for a batch of the largest size eval
# runs, its activations, at most _ACTIVATIONS_PER_INPUT_BYTE float bytes per byte
# of uint8 input (measured well below it: lenet5 about 25, resnet50 about 700).
_BASE_ARENA = 512 * 2**20
_LARGEST_BATCH = 256
_ACTIVATIONS_PER_INPUT_BYTE = 2048


def _model_needs(file_bytes: int, sample_values: int) -> int:
    """Bytes of CPU memory a model of this file size and input size may need at most."""
    return (
        _BASE_ARENA + 3 * file_bytes + _LARGEST_BATCH * sample_values * _ACTIVATIONS_PER_INPUT_BYTE
    )


def _capped_arena(ort: Any, needs: int) -> bool:
    """Register, once, a CPU arena that cnnkit's sessions share, capped at what a model needs.

    A graph of ordinary operators can still ask for any amount at run time (a
    broadcast of two stored vectors into an N×N matrix): the cap, the most a
    model of its file and input size needs (``needs``, for the first model
    loaded in the process) and never more than 90% of the memory free now,
    makes that allocation fail with one error line instead of taking the
    machine's memory. Only sessions that opt in (``session.use_env_allocators``)
    use it. Returns whether cnnkit's sessions should opt in.
    """
    if "limit" in _ARENA:
        return _ARENA["limit"] is not None
    from cnnkit.ops.limits import available_memory

    free = available_memory()
    limit = needs if free is None else min(needs, max(_MIN_ARENA, int(free * 0.9)))
    if limit is not None:
        try:
            info = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(limit, -1, -1, -1))
        except Exception:  # noqa: BLE001 - one is registered already (by the caller): keep it
            limit = None
    _ARENA["limit"] = limit
    return limit is not None


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
    """ONNX Runtime's threads: the cores of this process's CPU budget (cnnkit.io.cpu) that
    the ``workers`` decode threads leave, at least one.

    The budget already counts CNNKIT_THREADS, OMP_NUM_THREADS, affinity and
    cgroup quotas; ONNX Runtime's own default is every core of the machine,
    which the decode threads (and other jobs on a shared machine) also need.
    """
    from cnnkit.io.pipeline import cores_left

    return cores_left(workers)


def run_error(path: Path, exc: BaseException) -> CheckpointError:
    """The one-line error for a graph that failed inside ONNX Runtime."""
    text = str(exc)
    asked = re.search(r"smaller than requested bytes of (\d+)", text)
    if asked:
        from cnnkit.ops.limits import size_text

        limit = arena_limit()
        room = (
            f", more than the {size_text(limit)} cnnkit lets a model of its size take"
            if limit
            else ""
        )
        return CheckpointError(
            f"{path} asked ONNX Runtime for {size_text(int(asked.group(1)))}{room}",
            hint="a model cnnkit exported needs far less: export it again, or use a smaller "
            "--batch-size",
        )
    status = re.search(r"Status Message: (.*)", text)
    first = (status.group(1) if status else (text.strip().splitlines() or [""])[0])[:160]
    return CheckpointError(
        f"{path} failed in ONNX Runtime ({first or type(exc).__name__})",
        hint="export the checkpoint again with `cnnkit export`",
    )


def summarize_onnx(path: str | Path) -> dict[str, Any]:
    """What inspect shows of an exported model: metadata, inputs, outputs, opset, operators."""
    from cnnkit.precision import recorded_precision

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
        "trained_in": recorded_precision(model.meta),
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
