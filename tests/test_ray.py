"""Ray Data: cnnkit.ray.Predictor in map_batches, and `cnnkit predict --ray`, on a local Ray.

The records must be those of the single-process `cnnkit predict` on the same
files: field for field, in input order for the command. One Ray (2 CPUs) is
started for the module; the first test starts its own, through the command.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    cnnkit_in_process,
    make_checkpoint,
    make_image_folder,
    make_video,
)

CLASSES = ["a", "b", "c"]

# Ray Data's own settings warn when its context is copied.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """300 colour images of 16×16 in three folders, a 3-channel lenet5 and its .onnx."""
    import cnnkit

    root = tmp_path_factory.mktemp("ray")
    make_image_folder(root / "images", CLASSES, per_class=100)
    make_video(root / "clip.mp4", frames=6)
    # Colour in, colour model: swapped red and blue would change every score.
    ckpt = make_checkpoint(root / "m.ckpt", "lenet5", CLASSES, 3, (16, 16))
    onnx = cnnkit.export(ckpt, root / "m.onnx", verify=False)
    return {"root": root, "images": root / "images", "ckpt": ckpt, "onnx": onnx}


@pytest.fixture(scope="module")
def local_ray(media):
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 2**20,
        log_to_driver=False,
        logging_level="WARNING",
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _by_path(rows) -> dict[str, dict]:
    return {os.path.basename(os.path.dirname(r["path"])) + "/" + os.path.basename(r["path"]): r
            for r in rows}  # fmt: skip


def _fields(row: dict) -> tuple:
    """What a record says: label, score, top-k (a Ray row's columns or a record's fields)."""
    topk = [(t["label"], t["score"]) for t in row["topk"]]
    return row["label"], row["score"], topk


# ---------------------------------------------------------------------------
# without Ray
# ---------------------------------------------------------------------------


def test_ray_missing_is_one_error_line_with_the_extra_to_install(
    media, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", str(media["ckpt"]), str(media["images"]), "--ray"
    )
    assert code == 1 and out == ""
    assert err == (
        "error: running on Ray needs Ray Data, which is not installed "
        "(hint: pip install 'cnnkit[ray]')\n"
    )


def test_a_ray_address_that_does_not_answer_is_one_error_line_at_once(
    media, monkeypatch, capsys
) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", str(media["onnx"]),
                                       str(media["images"]), "--ray-address", address)  # fmt: skip
    assert code == 1 and out == ""
    assert err.startswith(f"error: cannot reach Ray at {address}: ") and err.count("\n") == 1


def test_predictor_called_directly_gives_predict_records(media, monkeypatch, capsys) -> None:
    # The class is plain Python: Ray calls it, and so can anyone.
    import cnnkit.ray

    files = sorted(str(p) for p in media["images"].rglob("*.png"))[:40]
    _, out, _ = cnnkit_in_process(monkeypatch, capsys, "predict", str(media["onnx"]), *files,
                                  "missing.png", "--format", "jsonl")  # fmt: skip
    expected = _records(out)
    predictor = cnnkit.ray.Predictor(model=str(media["onnx"]))
    batch = {"path": np.array([*files, "missing.png"])}
    got = predictor(batch)
    assert got.column_names == ["path", "label", "score", "topk", "error"]
    # Typed alike in every batch: an error column of text where no input failed too.
    assert predictor({"path": np.array(files[:2])}).schema == got.schema
    rows = got.to_pylist()
    # Ray's other batch formats: a pandas DataFrame, a pyarrow Table.
    import pandas as pd
    import pyarrow as pa

    paths = [*files, "missing.png"]
    for other in (pd.DataFrame({"path": paths}), pa.table({"path": paths})):
        assert predictor(other).to_pylist() == rows
    assert [r["path"] for r in rows] == [*files, "missing.png"]
    for row, record in zip(rows[:-1], expected[:-1], strict=True):
        assert _fields(row) == _fields(record) and row["error"] is None
    assert rows[-1]["label"] is None and rows[-1]["error"]
    with pytest.raises(cnnkit.CnnkitError, match="needs a 'path' column"):
        predictor({"pixels": np.zeros((1, 4, 4, 3), np.uint8)})


# ---------------------------------------------------------------------------
# cnnkit predict --ray, starting its own Ray (before the module's Ray starts)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_predict_ray_starts_a_local_ray_and_prints_the_same_records(
    media, monkeypatch, capsys
) -> None:
    from tests.cli.test_export import _no_torch

    monkeypatch.chdir(media["root"])
    monkeypatch.setenv("CNNKIT_THREADS", "2")  # a local Ray of 2 CPUs, on any machine
    args = ["predict", "m.onnx", "images", "nowhere.png", "--format", "jsonl"]
    code, single, err_single = cnnkit_in_process(monkeypatch, capsys, *args)
    # An .onnx on Ray: this process never needs torch either.
    on_ray = _no_torch(*args, "--ray", cwd=media["root"], blocked="torch,torchvision,lightning")
    assert code == 1 and on_ray.returncode == 1, on_ray.stderr  # nowhere.png
    assert len(_records(single)) == 301
    assert on_ray.stdout == single  # the same bytes: fields, values, order
    # stderr holds cnnkit's lines only: its note on Ray, the error line and the summary;
    # nothing of Ray's own logging.
    lines = on_ray.stderr.splitlines()
    assert lines[0] == "ray: 2 actors of 1 CPU on 1 Ray node", on_ray.stderr
    assert lines[1:] == [x for x in err_single.splitlines() if not x.startswith("device:")]


# ---------------------------------------------------------------------------
# on the module's Ray
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_map_batches_on_paths_and_on_read_images_give_predict_records(
    media, local_ray, monkeypatch, capsys
) -> None:
    import ray.data

    import cnnkit.ray

    # The .onnx: its actors start sooner (no torch to import).
    _, out, _ = cnnkit_in_process(monkeypatch, capsys, "predict", str(media["onnx"]),
                                  str(media["images"]), "--format", "jsonl")  # fmt: skip
    expected = _by_path(_records(out))
    files = sorted(str(p) for p in media["images"].rglob("*.png"))
    kwargs = {"model": str(media["onnx"]), "top_k": 3}
    paths = ray.data.from_items([{"path": p} for p in files]).map_batches(
        cnnkit.ray.Predictor, fn_constructor_kwargs=kwargs, concurrency=1, batch_size=64
    )
    images = ray.data.read_images(str(media["images"]), include_paths=True).map_batches(
        cnnkit.ray.Predictor, fn_constructor_kwargs=kwargs, concurrency=1, batch_size=64
    )
    by_path, by_image = _by_path(paths.take_all()), _by_path(images.take_all())
    assert len(by_path) == len(by_image) == len(expected) == 300
    for key, record in expected.items():
        label, score, topk = _fields(record)
        assert _fields(by_path[key]) == (label, score, topk[:3]), key
        # Ray's decoder gives RGB pixels, cnnkit's BGR: the same scores, bit for bit.
        assert _fields(by_image[key]) == (label, score, topk[:3]), key
        assert by_image[key]["error"] is None


@pytest.mark.slow
def test_an_onnx_predictor_needs_no_torch_on_the_workers(media, local_ray, tmp_path) -> None:
    import ray.data

    import cnnkit.ray

    # Workers whose `import torch` fails, as where torch is not installed.
    blocked = tmp_path / "blocked"
    (blocked / "torch").mkdir(parents=True)
    (blocked / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked')\n")
    path = os.pathsep.join([str(blocked), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {"env_vars": {"PYTHONPATH": path}}
    files = sorted(str(p) for p in media["images"].rglob("*.png"))[:64]

    def run(model: Path, runtime_env: dict | None) -> list[dict]:
        ds = ray.data.from_items([{"path": p} for p in files]).map_batches(
            cnnkit.ray.Predictor,
            fn_constructor_kwargs={"model": str(model)},
            concurrency=1,
            batch_size=32,
            runtime_env=runtime_env,
        )
        return sorted(ds.take_all(), key=lambda r: r["path"])

    rows = run(media["onnx"], env)
    assert [r["path"] for r in rows] == files
    assert all(r["error"] is None for r in rows)
    # The block works: the .ckpt cannot load there.
    with pytest.raises(Exception, match="torch"):
        run(media["ckpt"], env)


@pytest.mark.slow
def test_predict_ray_on_a_joined_ray_keeps_input_order_with_videos_and_errors(
    media, local_ray, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(media["root"])
    Path("bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    # Folders, a glob, a video, a missing and a broken file: expanded as predict expands
    # them, and given relative to this folder, which is not the workers'.
    args = ["predict", "m.ckpt", "images/c", "clip.mp4", "images/a/img_0[0-4]*.png", "gone.png",
            "bad.png", "images/b", "--format", "jsonl", "--batch-size", "8"]  # fmt: skip
    code, single, err_single = cnnkit_in_process(monkeypatch, capsys, *args)
    code_ray, on_ray, err_ray = cnnkit_in_process(monkeypatch, capsys, *args, "--ray")
    assert code == code_ray == 1, err_ray
    records = _records(single)
    assert [r["path"] for r in records if "error" in r] == ["gone.png", "bad.png"]
    assert any(r.get("window") == "video" for r in records)
    assert on_ray == single
    errors = [line for line in err_single.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and errors == err_ray.splitlines()[-3:]
    assert local_ray.is_initialized()  # a Ray it did not start is left running
