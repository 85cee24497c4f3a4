"""Model files are untrusted input: a crafted one is refused quickly, in bounded memory.

Each file here is small and made in tmp_path, and declares something huge or
endless: a compressed record of a gigabyte of zeros, a pickle that asks for a
gigabyte, model arguments or tensors that need gigabytes, metadata that nests
or shares itself without end, an ONNX graph that loops. Every command that
reads it (predict, eval, inspect, train --weights) must refuse it with one
``error:`` line naming what is wrong, before allocating what it declares; and
SIGTERM/SIGINT must end a long ONNX Runtime run within about two seconds.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnkit.checkpoint import build_model, load_checkpoint
from cnnkit.errors import CheckpointError
from cnnkit.models.registry import create_model
from tests.helpers import cnnkit_in_process, make_checkpoint, make_image, run_cnnkit

GIB = 1 << 30

# ---------------------------------------------------------------------------
# crafted torch files
# ---------------------------------------------------------------------------


def _records(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def _write_records(path: Path, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in records.items():
            z.writestr(name, data)  # stored, as torch writes them
    return path


def _replace(src: Path, dst: Path, suffix: str, data: bytes) -> Path:
    records = _records(src)
    (name,) = [n for n in records if n.endswith(suffix)]
    records[name] = data
    return _write_records(dst, records)


def _deflated_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes (a few kilobytes a megabyte), and its CRC.

    After a full flush the compressor starts afresh, so every megabyte of
    zeros compresses to the same bytes: one is compressed, the rest repeated.
    """
    block = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(block, crc)
    return unit * (size >> 20) + comp.flush(), crc


def _set_entry(path: Path, name: str, method: int, crc: int, size: int) -> None:
    """Rewrite ``name``'s compression method, CRC and uncompressed size in both of its headers."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    local = data.find(b"PK\x03\x04")
    while local >= 0:
        if data[local + 30 : local + 30 + len(encoded)] == encoded:
            struct.pack_into("<H", data, local + 8, method)
            struct.pack_into("<I", data, local + 14, crc)
            struct.pack_into("<I", data, local + 22, size)
            break
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        if data[central + 46 : central + 46 + len(encoded)] == encoded:
            struct.pack_into("<H", data, central + 10, method)
            struct.pack_into("<I", data, central + 16, crc)
            struct.pack_into("<I", data, central + 24, size)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def compressed_zeros_ckpt(tmp_path: Path, good: Path, size: int = GIB) -> Path:
    """``good`` whose first tensor record is ``size`` bytes of deflated zeros (about 1 MB)."""
    stream, crc = _deflated_zeros(size)
    path = _replace(good, tmp_path / "zeros.ckpt", "/data/0", stream)
    (name,) = [n for n in _records(path) if n.endswith("/data/0")]
    _set_entry(path, name, zipfile.ZIP_DEFLATED, crc, size)
    return path


def oversized_record_ckpt(tmp_path: Path, good: Path) -> Path:
    """``good`` whose first tensor record declares a gigabyte it does not hold (stored)."""
    path = tmp_path / "oversized.ckpt"
    path.write_bytes(good.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(info.filename)] != info.filename.encode():
        central = data.find(b"PK\x01\x02", central + 4)
    if struct.unpack_from("<I", data, central + 20)[0] == 0xFFFFFFFF:
        pytest.fail("a ZIP64 size field: the helper expects 32-bit sizes")
    struct.pack_into("<II", data, central + 20, GIB, GIB)  # compressed, uncompressed
    path.write_bytes(bytes(data))
    return path


def pickle_ckpt(tmp_path: Path, good: Path, body: bytes, name: str) -> Path:
    """``good`` whose data.pkl is the protocol-2 pickle ``body``."""
    return _replace(good, tmp_path / name, "/data.pkl", b"\x80\x02" + body + b".")


# bytearray(1 GiB): a call torch's weights_only unpickler allows.
BYTEARRAY_GIB = b"c__builtin__\nbytearray\nJ\x00\x00\x00\x40\x85R"


def dense_ckpt(tmp_path: Path, name: str, hidden: Any, state: dict[str, Any]) -> Path:
    return make_checkpoint(
        tmp_path / name, "dense", ["a", "b", "c"], 1, (16, 16), state_dict=state,
        model_args={"hidden": hidden},
    )  # fmt: skip


def dense_state(hidden: list[int], repeat: bool = False) -> dict[str, Any]:
    """The weights of ``dense`` with ``hidden`` units; ``repeat``: one stored value repeated
    over each shape (a stride-0 view, as small on disk as a scalar)."""
    with torch.device("meta"):
        model = create_model("dense", 3, 1, (1, 16, 16), hidden=hidden)
    if repeat:
        return {k: torch.zeros(1).expand(v.shape) for k, v in model.state_dict().items()}
    return {k: torch.zeros(v.shape) for k, v in model.state_dict().items()}


def meta_ckpt(tmp_path: Path, name: str, **changes: Any) -> Path:
    """A lenet5 checkpoint whose hyper_parameters get ``changes`` (input: merged)."""
    good = make_checkpoint(tmp_path / f"base-{name}", "lenet5", ["a", "b", "c"], 1, (16, 16))
    raw = torch.load(good, weights_only=True)
    hp = raw["hyper_parameters"]
    for key, value in changes.items():
        if key == "input":
            hp["input"].update(value)
        else:
            hp[key] = value
    torch.save(raw, tmp_path / name)
    return tmp_path / name


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def deep_list_ckpt(tmp_path: Path, depth: int) -> Path:
    """A checkpoint whose options hold a list nested ``depth`` deep (pickle's own writer
    recurses: the opcodes are written here, ``depth`` empty lists each appended to the last)."""
    path = meta_ckpt(tmp_path, "deep.ckpt", options={"x": "PLACEHOLDER"})
    records = _records(path)
    (name,) = [n for n in records if n.endswith("/data.pkl")]
    text = b"X\x0b\x00\x00\x00PLACEHOLDER"
    assert records[name].count(text) == 1
    records[name] = records[name].replace(text, b"]" * depth + b"a" * (depth - 1))
    return _write_records(path, records)


def shared(width: int, depth: int) -> list:
    """A list whose every level holds the level below ``width`` times: width**depth leaves."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] * width
    return value


def self_holding() -> dict:
    options: dict = {"epochs": 1}
    options["again"] = options
    return options


@pytest.fixture
def good(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "good.ckpt", "lenet5", ["a", "b", "c"], 1, (16, 16))


# ---------------------------------------------------------------------------
# what each crafted checkpoint is refused for
# ---------------------------------------------------------------------------

CHECKPOINT_CASES = {
    "compressed-zeros": "its record data/0 is compressed by deflate",
    "oversized-record": "its record data/0 declares 1.1 GB, more than the file",
    "bytearray-pickle": "it would call __builtin__.bytearray",
    "codecs-pickle": "it would call _codecs.encode",
    "tensor-class-pickle": "it would call torch.FloatTensor",
    "legacy-format": "legacy format (before torch 1.6)",
    "zip-with-prefix": "its zip directory is not where its end record says",
    "std-zero": "std [0.0]: not positive",
    "mean-nan": "mean [nan]: not finite",
    "huge-input": "size 100000: not a whole number from 1 to 8192",
    "zero-size": "size 0: not a whole number from 1 to 8192",
    "negative-frames": "frames -3: not a whole number from 1 to 1024",
    "many-channels": "channels 9: not a whole number from 1 to 4",
    "video-too-large": "more than 268,435,456 values in one input",
    "many-classes": "'classes' lists 200,000 classes, over 100,000",
    "deep-options": "'options' nests deeper than 32 levels",
    "self-holding-options": "'options' nests deeper than 32 levels",
    "shared-options": "'options' holds over 500,000 values",
    "huge-int": "'metrics' holds an integer of 401 bits",
    "long-text": "'dataset' holds too much text",
    "many-model-args": "'model_args' holds over 1,000 values",
    "dense-too-big": "wrong shape 1.weight (300×256 in the file, 20000×256 in the model)",
    "dense-absurd": "1.weight (300×256 in the file, 1000000×256 in the model)",
    "dense-repeated-values": "its tensors need 1.6 GB of values and the file stores 24 bytes",
    # torch finds records by name regardless of case: a second "DATA.pkl" was read unchecked.
    "case-twin-pickle": "its record DATA.pkl appears twice",
    "case-only-pickle": "its record DATA.pkl is the pickle's name in another case",
    # Sides within the bounds, but layer outputs of gigabytes for every input.
    "huge-activations": "compute 6.0 GB of layer outputs for each input",
}


def make_case(tmp_path: Path, good: Path, case: str) -> Path:
    if case == "compressed-zeros":
        return compressed_zeros_ckpt(tmp_path, good)
    if case == "oversized-record":
        return oversized_record_ckpt(tmp_path, good)
    if case == "bytearray-pickle":
        return pickle_ckpt(tmp_path, good, BYTEARRAY_GIB, "bytearray.ckpt")
    if case == "codecs-pickle":  # hex-encoding doubles a string at each call
        body = b"c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00\x00hex\x86R"
        return pickle_ckpt(tmp_path, good, body, "codecs.ckpt")
    if case == "tensor-class-pickle":  # torch.FloatTensor(n): n floats, uninitialised
        return pickle_ckpt(tmp_path, good, b"ctorch\nFloatTensor\nJ\x00\x00\x00\x40\x85R",
                           "tensor.ckpt")  # fmt: skip
    if case == "legacy-format":
        raw = torch.load(good, weights_only=True)
        torch.save(raw, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
        return tmp_path / "legacy.ckpt"
    if case == "zip-with-prefix":  # Python's zipfile reads past it; torch's reader does not
        plain = _write_records(tmp_path / "plain-zip.ckpt", _records(good))
        path = tmp_path / "prefixed.ckpt"
        path.write_bytes(b"PK\x03\x04" + bytes(60) + plain.read_bytes())
        return path
    metadata = {
        "std-zero": {"input": {"std": [0.0]}},
        "mean-nan": {"input": {"mean": [math.nan]}},
        "huge-input": {"input": {"size": [100000, 100000]}},
        "zero-size": {"input": {"size": [0, 16]}},
        "negative-frames": {"input": {"frames": -3}},
        "many-channels": {"input": {"channels": 9, "mean": [0.5] * 9, "std": [0.2] * 9}},
        "video-too-large": {"input": {"frames": 1024, "size": [8192, 8192]}},
        "many-classes": {"classes": [f"c{i}" for i in range(200_000)]},
        "self-holding-options": {"options": self_holding()},
        "shared-options": {"options": {"x": shared(40, 6)}},
        "huge-int": {"metrics": {"epoch": 2**400}},
        "long-text": {"dataset": "d" * 100_000},
        "many-model-args": {"model_args": {"hidden": [1] * 2000}},
    }
    if case in ("case-twin-pickle", "case-only-pickle"):
        records = _records(good)
        pickled = next(name for name in records if name.endswith("/data.pkl"))
        twin = pickled[: -len("data.pkl")] + "DATA.pkl"
        out: dict[str, bytes] = {}
        for name, data in records.items():
            if name != pickled or case == "case-twin-pickle":
                out[name] = data
            if name == pickled:
                out[twin] = (
                    b"\x80\x02" + BYTEARRAY_GIB + b"." if case == "case-twin-pickle" else data
                )
        return _write_records(tmp_path / f"{case}.ckpt", out)
    if case == "huge-activations":
        return meta_ckpt(tmp_path, "huge-activations.ckpt", input={"size": [8192, 8192]})
    if case == "deep-options":
        return deep_list_ckpt(tmp_path, 100_000)
    if case in metadata:
        return meta_ckpt(tmp_path, f"{case}.ckpt", **metadata[case])
    if case == "dense-too-big":
        return dense_ckpt(tmp_path, "dense.ckpt", [20000, 20000], dense_state([300, 100]))
    if case == "dense-absurd":
        return dense_ckpt(tmp_path, "absurd.ckpt", [10**6, 10**6], dense_state([300, 100]))
    if case == "dense-repeated-values":
        state = dense_state([20000, 20000], repeat=True)
        return dense_ckpt(tmp_path, "repeat.ckpt", [20000, 20000], state)
    raise AssertionError(case)


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_a_crafted_checkpoint_is_refused_with_one_line_naming_it(
    tmp_path, good, monkeypatch, capsys, case
) -> None:
    path = make_case(tmp_path, good, case)
    assert path.stat().st_size < 4 * 2**20
    make_image(tmp_path / "x.png", 16, 16, channels=1)
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", str(path))
    lines = err.strip().splitlines()
    assert code == 1 and out == "", err
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], err
    assert CHECKPOINT_CASES[case] in lines[0], err


def test_a_crafted_checkpoint_is_refused_by_predict_and_eval_too(tmp_path, good, monkeypatch,
                                                                  capsys) -> None:  # fmt: skip
    make_image(tmp_path / "x.png", 16, 16, channels=1)
    for case in ("compressed-zeros", "std-zero", "dense-too-big"):
        path = make_case(tmp_path, good, case)
        for args in (["predict", str(path), str(tmp_path / "x.png"), "-q"],
                     ["eval", str(path), "--dataset", str(tmp_path), "-q"]):  # fmt: skip
            code, out, err = cnnkit_in_process(monkeypatch, capsys, *args)
            assert code == 1 and out == "" and CHECKPOINT_CASES[case] in err, (args, err)
            assert len(err.strip().splitlines()) == 1, err


def test_the_bounds_sit_between_real_files_and_crafted_ones(tmp_path, good) -> None:
    """What torch.save and cnnkit train write loads; one step past each bound is refused."""
    assert build_model(load_checkpoint(good)) is not None
    # Optimizer state, a tensor score, nested options, the largest sides.
    model = create_model("lenet5", 3, 1, (1, 16, 16))
    raw = torch.load(good, weights_only=True)
    raw["state_dict"] = {f"model.{k}": v for k, v in model.state_dict().items()}
    raw["optimizer_states"] = [{"state": {0: {"exp_avg": torch.zeros(6, 1, 5, 5)}}}]
    raw["callbacks"] = {"ModelCheckpoint{}": {"best_model_score": torch.tensor(0.5),
                                              "monitor": "val_acc"}}  # fmt: skip
    raw["hyper_parameters"]["input"]["size"] = [8192, 16]
    raw["hyper_parameters"]["options"] = {"nested": nested(30), "many": list(range(1000))}
    torch.save(raw, tmp_path / "full.ckpt")
    loaded = load_checkpoint(tmp_path / "full.ckpt")
    assert loaded.metrics["val_acc"] == 0.5 and loaded.input.size == (8192, 16)
    assert build_model(loaded) is not None
    beyond = {
        "side": ({"input": {"size": [8193, 16]}}, "size 8193: not a whole number"),
        "depth": ({"options": {"nested": nested(32)}}, "nests deeper than 32 levels"),
        "classes": ({"classes": [str(i) for i in range(100_001)]}, "100,001 classes"),
    }
    for name, (changes, phrase) in beyond.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(meta_ckpt(tmp_path, f"{name}.ckpt", **changes))
        assert phrase in info.value.message, info.value.message


# ---------------------------------------------------------------------------
# --weights: state dicts and safetensors
# ---------------------------------------------------------------------------


def test_weights_files_get_the_same_checks(tmp_path, good) -> None:
    from safetensors.torch import save_file

    from cnnkit.models.transfer import read_weights_file

    state = create_model("lenet5", 3, 1, (1, 16, 16)).state_dict()
    torch.save(state, tmp_path / "plain.pt")
    assert read_weights_file(tmp_path / "plain.pt").kind == "state_dict"
    zeros = compressed_zeros_ckpt(tmp_path, tmp_path / "plain.pt")
    bytearray_pt = pickle_ckpt(tmp_path, tmp_path / "plain.pt", BYTEARRAY_GIB, "b.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file({f"t{i}": torch.zeros(0) for i in range(30_000)}, tmp_path / "many.safetensors")
    header = json.dumps({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "long.safetensors").write_bytes(struct.pack("<Q", 2**40) + header)
    cases = {
        zeros: "compressed by deflate",
        bytearray_pt: "it would call __builtin__.bytearray",
        tmp_path / "legacy.pth": "legacy format",
        tmp_path / "many.safetensors": "it declares 30,000 tensors; cnnkit reads up to 20,000",
        tmp_path / "long.safetensors": "its header declares 1.1 TB, more than the file holds",
    }
    for path, phrase in cases.items():
        with pytest.raises(CheckpointError) as info:
            read_weights_file(path)
        assert phrase in info.value.message, info.value.message


# ---------------------------------------------------------------------------
# crafted .onnx files
# ---------------------------------------------------------------------------


def cnnkit_meta(**changes: Any) -> dict[str, Any]:
    meta = {
        "schema": 1, "model_name": "lenet5", "model_args": {}, "classes": ["a", "b", "c"],
        "input": {"channels": 1, "size": [16, 16], "frames": None, "mean": [0.5], "std": [0.25]},
    }  # fmt: skip
    meta.update(changes)
    return meta


def onnx_model(path: Path, nodes: list[Any], initializers: list[Any], meta: Any = None) -> Path:
    """A graph from uint8 ``input`` (N×1×16×16) to ``logits`` (N×3), with cnnkit's metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "crafted",
        [helper.make_tensor_value_info("input", TensorProto.UINT8, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key = "cnnkit.meta"
    entry.value = meta if isinstance(meta, str) else json.dumps(meta or cnnkit_meta())
    onnx.save(model, path)
    return path


def _head(extra: list[Any], last: str) -> tuple[list[Any], list[Any]]:
    """Nodes from ``input`` to logits that add the scalar ``last`` (computed by ``extra``)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["m"], keepdims=0),
        *extra,
        helper.make_node("Reshape", ["f", "flat"], ["ff"]),
        helper.make_node("Gemm", ["ff", "head"], ["g"]),
        helper.make_node("Add", ["g", last], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((256, 3), np.float32), "head"),
        numpy_helper.from_array(np.array([-1, 256], np.int64), "flat"),
    ]
    return nodes, inits


def looping_onnx(path: Path, trips: int = 10**15) -> Path:
    """A Loop of ``trips`` iterations (each adds one) between the input and the logits."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )  # fmt: skip
    loop = helper.make_node("Loop", ["trips", "cond", "m"], ["acc"], body=body)
    nodes, inits = _head([loop], "acc")
    inits += [numpy_helper.from_array(np.array(trips, np.int64), "trips"),
              numpy_helper.from_array(np.array(True), "cond")]  # fmt: skip
    return onnx_model(path, nodes, inits)


def slow_onnx(path: Path, steps: int = 1500, side: int = 1024) -> Path:
    """A chain of ``steps`` side×side MatMuls on the input: allowed operators, a billion
    multiply-adds each (10-50 ms on one thread), a minute or so in all. ONNX Runtime
    cannot fold the chain ahead of time: it starts from the input."""
    import numpy as np
    from onnx import helper, numpy_helper

    extra = [helper.make_node("Add", ["w", "m"], ["y0"])]
    extra += [helper.make_node("MatMul", [f"y{i}", "w"], [f"y{i + 1}"]) for i in range(steps)]
    extra.append(helper.make_node("ReduceMean", [f"y{steps}"], ["s"], keepdims=0))
    nodes, inits = _head(extra, "s")
    inits.append(numpy_helper.from_array(np.full((side, side), 1 / side, np.float32), "w"))
    return onnx_model(path, nodes, inits)


def test_a_looping_or_foreign_onnx_graph_is_refused_before_it_runs(tmp_path, monkeypatch,
                                                                   capsys) -> None:  # fmt: skip
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    from cnnkit.onnxmodel import load_onnx

    external = numpy_helper.from_array(np.zeros((256, 3), np.float32), "head")
    set_external_data(external, location="head.bin", offset=0, length=3072)
    external.data_location = TensorProto.EXTERNAL
    external.ClearField("raw_data")
    nodes, inits = _head([helper.make_node("Identity", ["m"], ["s"])], "s")
    # A tensor of a size the graph computes: here a constant terabyte.
    huge, huge_inits = _head(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["c"]),
            helper.make_node("ReduceMean", ["c"], ["s"], keepdims=0),
        ],
        "s",
    )
    huge_inits.append(numpy_helper.from_array(np.array([2**38], np.int64), "shape"))
    cases = {
        looping_onnx(tmp_path / "loop.onnx"): "its graph runs Loop, control flow that cnnkit's "
        "exports never contain",
        onnx_model(tmp_path / "ext.onnx", nodes[:-1] + [helper.make_node("Add", ["g", "m"],
                   ["logits"])], [external, inits[1]]): "it keeps weights in other files",
        onnx_model(tmp_path / "huge.onnx", huge, huge_inits): "its graph runs ConstantOfShape, "
        "an operator that cnnkit's exports never contain",
        onnx_model(tmp_path / "std.onnx", nodes, inits, cnnkit_meta(input={
            "channels": 1, "size": [16, 16], "frames": None, "mean": [0.5], "std": [0.0]})):
        "std [0.0]: not positive",
        onnx_model(tmp_path / "deep.onnx", nodes, inits, "[" * 100_000 + "]" * 100_000):
        "nests deeper",
        onnx_model(tmp_path / "big.onnx", nodes, inits, json.dumps(cnnkit_meta(
            dataset="d" * (9 * 2**20)))): "a metadata value of 9,437,",
    }  # fmt: skip
    (tmp_path / "head.bin").write_bytes(bytes(3072))
    for path, phrase in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_onnx(path)
        assert phrase in info.value.message, info.value.message
    make_image(tmp_path / "x.png", 16, 16, channels=1)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", str(tmp_path / "loop.onnx"), str(tmp_path / "x.png")
    )
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {tmp_path / 'loop.onnx'} is not a model cnnkit runs"), err


# ---------------------------------------------------------------------------
# peak memory and time of the refusals, in a fresh process
# ---------------------------------------------------------------------------

_MEASURE = r"""
import json, resource, sys, time
from cnnkit.checkpoint import build_model, load_checkpoint
from cnnkit.errors import CnnkitError
from cnnkit.models.transfer import read_weights_file
from cnnkit.onnxmodel import load_onnx

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux

def read(kind, path):
    if kind == "checkpoint":  # what predict, eval and inspect do
        build_model(load_checkpoint(path))
    elif kind == "weights":  # train --weights
        read_weights_file(path)
    else:
        load_onnx(path)

results = []
for kind, path in json.loads(sys.argv[1]):
    before, start = peak_mb(), time.perf_counter()
    try:
        read(kind, path)
        error = None
    except CnnkitError as exc:
        error = exc.message
    results.append({"path": path, "error": error, "seconds": time.perf_counter() - start,
                    "grew_mb": peak_mb() - before})
print(json.dumps(results))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ outside Linux")
def test_refusals_take_little_memory_and_time(tmp_path, good) -> None:
    """Each refusal adds under 200 MB to the process's peak, and takes under 5 s.

    Measured first: a real checkpoint read and built, and an empty file refused,
    so that imports and torch's first allocations are already in the peak.
    Measured on 2 shared cores: each refusal here under 0.3 s and 10 MB;
    before these checks, 1 GiB of compressed zeros took 0.9 GB and 3.5 s,
    bytearray(1 GiB) 0.9 GB, the dense model 1.4 GB.
    """
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    crafted = [
        "compressed-zeros", "oversized-record", "bytearray-pickle", "tensor-class-pickle",
        "dense-too-big", "dense-repeated-values", "shared-options", "huge-input",
        "case-twin-pickle", "huge-activations",
    ]  # fmt: skip
    items = [("checkpoint", str(good)), ("checkpoint", str(empty))]
    items += [("checkpoint", str(make_case(tmp_path, good, case))) for case in crafted]
    items += [("onnx", str(looping_onnx(tmp_path / "loop.onnx")))]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(items)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results[0]["error"] is None and results[1]["error"], results[:2]
    for result in results[2:]:
        assert result["error"], result
        assert result["grew_mb"] < 200 and result["seconds"] < 5, result


# ---------------------------------------------------------------------------
# SIGTERM and SIGINT during an ONNX Runtime run
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signum, status, word",
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_ends_a_long_onnx_run_within_two_seconds(tmp_path, signum, status, word):
    model = slow_onnx(tmp_path / "slow.onnx")
    make_image(tmp_path / "x.png", 16, 16, channels=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "predict", str(model), str(tmp_path / "x.png")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        first = proc.stderr.readline()  # "device: cpu (ONNX Runtime)": the run comes next
        assert "ONNX Runtime" in first, first
        time.sleep(1.0)
        assert proc.poll() is None, "the run ended before the signal"
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=3)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status and err.strip().splitlines() == [word], (proc.returncode, err)
    assert out == "" and took < 3


def test_export_writes_only_graphs_the_reader_runs(tmp_path, good, monkeypatch) -> None:
    """An exporter that writes an operator the .onnx reader refuses fails at export time."""
    import cnnkit.onnxfile
    from cnnkit.onnxexport import ExportError, export_onnx

    monkeypatch.setattr(cnnkit.onnxfile, "EXPORTED_OPS", cnnkit.onnxfile.EXPORTED_OPS - {"Conv"})
    with pytest.raises(ExportError) as info:
        export_onnx(str(good), tmp_path / "m.onnx", verify=False)
    assert "its graph runs Conv, an operator that cnnkit's exports never contain" in str(info.value)
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------------------
# graphs of allowed operators that ask for much, or fail, at run time
# ---------------------------------------------------------------------------


def broadcast_onnx(path: Path, side: int = 40_000) -> Path:
    """Two stored vectors added into a side×side matrix (6.4 GB at 40,000), then averaged."""
    import numpy as np
    from onnx import helper, numpy_helper

    extra = [
        helper.make_node("Add", ["col", "row"], ["big"]),
        helper.make_node("ReduceMean", ["big"], ["b"], keepdims=0),
        helper.make_node("Mul", ["b", "m"], ["s"]),
    ]
    nodes, inits = _head(extra, "s")
    inits += [numpy_helper.from_array(np.ones((side, 1), np.float32), "col"),
              numpy_helper.from_array(np.ones((1, side), np.float32), "row")]  # fmt: skip
    return onnx_model(path, nodes, inits)


def folded_chain_onnx(path: Path, steps: int = 400, side: int = 1024) -> Path:
    """A chain of side×side MatMuls of a stored matrix alone: constant folding would run
    all of it (a minute) while the session is made, where no signal reaches it."""
    import numpy as np
    from onnx import helper, numpy_helper

    extra = [helper.make_node("MatMul", [f"w{i}", "w"], [f"w{i + 1}"]) for i in range(steps)]
    extra += [helper.make_node("ReduceMean", [f"w{steps}"], ["r"], keepdims=0),
              helper.make_node("Mul", ["r", "m"], ["s"])]  # fmt: skip
    nodes, inits = _head(extra, "s")
    w = np.full((side, side), 1 / side, np.float32)
    inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w, "w0")]
    return onnx_model(path, nodes, inits)


def out_of_bounds_onnx(path: Path) -> Path:
    """A Gather of logit 5 of 3: passes every load-time check, fails inside ONNX Runtime."""
    import numpy as np
    from onnx import helper, numpy_helper

    nodes, inits = _head([], "m")
    nodes[-1].output[0] = "raw"
    nodes.append(helper.make_node("Gather", ["raw", "idx"], ["logits"], axis=1))
    inits.append(numpy_helper.from_array(np.array([0, 1, 5], np.int64), "idx"))
    return onnx_model(path, nodes, inits)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ outside Linux")
def test_an_onnx_graph_asking_for_gigabytes_is_one_error_line_in_little_memory(tmp_path) -> None:
    model = broadcast_onnx(tmp_path / "broadcast.onnx")
    assert model.stat().st_size < 2**20
    make_image(tmp_path / "x.png", 16, 16, channels=1)
    # A fresh parent that reports its one child's peak.
    wrapper = (
        "import resource, subprocess, sys; "
        "done = subprocess.run([sys.executable, '-m', 'cnnkit', *sys.argv[1:]]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
        "sys.exit(done.returncode)"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, "predict", str(model), "x.png"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    peak_mb = int(done.stdout.splitlines()[-1])
    lines = [line for line in done.stderr.splitlines() if not line.startswith("device:")]
    assert done.returncode == 1 and len(done.stdout.splitlines()) == 1, done.stderr
    assert len(lines) == 1 and "asked ONNX Runtime for 6.4 GB" in lines[0], done.stderr
    assert peak_mb < 500, peak_mb  # the whole process: 85 MB measured


def test_an_onnx_graph_failing_inside_onnx_runtime_is_one_error_line(tmp_path) -> None:
    model = out_of_bounds_onnx(tmp_path / "gather.onnx")
    make_image(tmp_path / "x.png", 16, 16, channels=1)
    done = run_cnnkit("predict", str(model), "x.png", cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("device:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and "failed in ONNX Runtime (indices element out" in lines[0], lines


def test_a_graph_of_constants_is_not_computed_while_the_session_is_made(tmp_path) -> None:
    from cnnkit.onnxmodel import load_onnx

    model = folded_chain_onnx(tmp_path / "chain.onnx")
    start = time.perf_counter()
    load_onnx(model)
    assert time.perf_counter() - start < 3  # constant folding took 11 s here, on 2 cores
