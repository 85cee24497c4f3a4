"""An ``.onnx`` file read from its bytes, before ONNX Runtime parses or runs it.

An exported model is untrusted input: ONNX Runtime runs whatever graph a file
holds, and a graph can loop (``Loop`` with a trip count of 10^15 never ends),
allocate from numbers it computes (``ConstantOfShape``, ``Expand``, ``Tile``,
``Range``), or read its weights from other files. Here the protobuf is walked
field by field (length-prefixed fields are skipped, not read, so the walk is
quick whatever the weights weigh), without the ``onnx`` package: the metadata
cnnkit wrote, every node's operator, and whether a weight lives outside the
file. Only the operators that ``cnnkit export`` writes for cnnkit's models
are run.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# What torch.onnx (dynamo) writes for every registered model, at several input
# sizes and with a dynamic or a fixed batch; and the operators other torch
# versions write for the same layers (batch norm, flatten, global pooling,
# activations). Nothing here loops, branches or makes a tensor of a computed size.
EXPORTED_OPS = frozenset(
    "Add AveragePool Cast Concat Conv Div Gather GatherND Gemm HardSigmoid HardSwish "
    "MaxPool Mul Pad ReduceMean Relu Reshape Sigmoid Sub Tanh Transpose Where "
    "BatchNormalization Clip Constant Dropout Elu Erf Exp Flatten GlobalAveragePool "
    "GlobalMaxPool Identity LeakyRelu MatMul Max Min Neg Pow ReduceMax Shape Slice "
    "Softmax Softplus Sqrt Squeeze Unsqueeze".split()
)
MAX_NODES = 20_000  # the exports of cnnkit's models have up to a few hundred
MAX_FIELDS = 500_000  # protobuf fields walked in all
MAX_META = 8 * 2**20  # bytes of one metadata value (cnnkit.meta: 100,000 classes fit)

# ModelProto, GraphProto, NodeProto, TensorProto, AttributeProto and
# StringStringEntryProto field numbers (onnx.proto).
_MODEL_GRAPH, _MODEL_PROPS = 7, 14
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_OP, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTR_TENSOR, _ATTR_TENSORS = 5, 10
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


class OnnxFileError(ValueError):
    """A file that is not an ONNX model cnnkit runs; the message says why."""


@dataclass
class OnnxFacts:
    """What the file declares: its metadata (key to value) and its operators by count."""

    props: dict[str, str] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)


def read_onnx_facts(path: Path) -> OnnxFacts:
    """The metadata and operators of ``path``'s main graph.

    OnnxFileError for a file that is no ONNX protobuf, a graph of over
    MAX_NODES nodes, a weight stored outside the file, a metadata value over
    MAX_META bytes, and a repeated metadata key. OSError passes through.
    """
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise OnnxFileError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            walk = _Walk(memoryview(data))
            try:
                return walk.model()
            finally:
                walk.buf.release()


def onnx_facts(data: bytes) -> OnnxFacts:
    """read_onnx_facts for a model held in memory (what ``cnnkit export`` is about to write)."""
    with memoryview(data) as view:
        return _Walk(view).model()


def foreign_op(facts: OnnxFacts) -> str | None:
    """Why the graph is not one cnnkit runs (an operator its exports never contain), or None.

    Operators with subgraphs (Loop, Scan, If) are among the refused, so their
    bodies never need reading.
    """
    for name in facts.ops:
        if name not in EXPORTED_OPS:
            what = "control flow" if name in ("Loop", "Scan", "If") else "an operator"
            return f"its graph runs {name}, {what} that cnnkit's exports never contain"
    return None


class _Walk:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.fields = 0
        self.nodes = 0
        self.facts = OnnxFacts()

    def model(self) -> OnnxFacts:
        graphs = 0
        for number, value in self._fields(0, len(self.buf)):
            if number == _MODEL_GRAPH and isinstance(value, tuple):
                graphs += 1
                self._graph(*value)
            elif number == _MODEL_PROPS and isinstance(value, tuple):
                self._prop(*value)
        if graphs != 1:
            raise OnnxFileError("not an ONNX model (no graph)")
        return self.facts

    def _graph(self, start: int, end: int) -> None:
        for number, value in self._fields(start, end):
            if number == _GRAPH_NODE and isinstance(value, tuple):
                self._node(*value)
            elif number == _GRAPH_INITIALIZER and isinstance(value, tuple):
                self._tensor(*value)

    def _node(self, start: int, end: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise OnnxFileError(f"its graph has over {MAX_NODES:,} nodes")
        op, domain, attributes = "", "", []
        for number, value in self._fields(start, end):
            if number == _NODE_OP and isinstance(value, tuple):
                op = self._text(*value)
            elif number == _NODE_DOMAIN and isinstance(value, tuple):
                domain = self._text(*value)
            elif number == _NODE_ATTRIBUTE and isinstance(value, tuple):
                attributes.append(value)
        name = op if domain in ("", "ai.onnx") else f"{domain}.{op}"
        self.facts.ops[name] = self.facts.ops.get(name, 0) + 1
        for span in attributes:  # a Constant's value
            for number, value in self._fields(*span):
                if number in (_ATTR_TENSOR, _ATTR_TENSORS) and isinstance(value, tuple):
                    self._tensor(*value)

    def _tensor(self, start: int, end: int) -> None:
        for number, value in self._fields(start, end):
            if number == _TENSOR_EXTERNAL or (number == _TENSOR_LOCATION and value == 1):
                raise OnnxFileError(
                    "it keeps weights in other files; cnnkit's exports hold them inside"
                )

    def _prop(self, start: int, end: int) -> None:
        key = value = None
        for number, span in self._fields(start, end):
            if isinstance(span, tuple) and number in (_ENTRY_KEY, _ENTRY_VALUE):
                if span[1] - span[0] > MAX_META:
                    raise OnnxFileError(
                        f"a metadata value of {span[1] - span[0]:,} bytes (up to {MAX_META:,})"
                    )
                if number == _ENTRY_KEY:
                    key = self._text(*span)
                else:
                    value = self._text(*span)
        if key is None:
            return
        if key in self.facts.props:
            raise OnnxFileError(f"its metadata names {key!r} twice")
        self.facts.props[key] = value or ""

    def _text(self, start: int, end: int) -> str:
        try:
            return str(self.buf[start:end], "utf-8")
        except UnicodeDecodeError:
            raise OnnxFileError("not an ONNX model (a name is not UTF-8)") from None

    def _fields(self, start: int, end: int) -> Iterator[tuple[int, int | tuple[int, int]]]:
        """(field number, value) of one message: an int, or a (start, end) span of bytes."""
        pos = start
        while pos < end:
            self.fields += 1
            if self.fields > MAX_FIELDS:
                raise OnnxFileError(f"its protobuf has over {MAX_FIELDS:,} fields")
            key, pos = self._varint(pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = self._varint(pos, end)
                yield number, value
            elif wire == 2:
                length, pos = self._varint(pos, end)
                if pos + length > end:
                    raise OnnxFileError("not an ONNX model, or truncated")
                yield number, (pos, pos + length)
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
                if pos > end:
                    raise OnnxFileError("not an ONNX model, or truncated")
                yield number, 0
            else:
                raise OnnxFileError("not an ONNX model (not a protobuf)")

    def _varint(self, pos: int, end: int) -> tuple[int, int]:
        result = shift = 0
        buf = self.buf
        while True:
            if pos >= end or shift > 63:
                raise OnnxFileError("not an ONNX model, or truncated")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
