"""Predict's batch-level decoding: a chunk of inputs prepared at once gives the pixels, errors,
notes and records the image-by-image path gives."""

from __future__ import annotations

import logging
import os
import struct
import threading
import time

import cv2
import numpy as np
import pytest

import cnnkit.predict.decode as decode
from cnnkit.data.preprocess import has_colour
from cnnkit.io.image import read_image
from cnnkit.io.readahead import map_ahead
from cnnkit.predict import PredictInput, Predictor, predict_images
from cnnkit.predict.images import _error_text
from cnnkit.predict.predictor import rounded
from tests.helpers import make_checkpoint, make_image, write_array


def _exif_jpeg(path, orientation: int = 6) -> None:
    """A 24×16 JPEG whose EXIF says to turn it (orientation 6: 90° clockwise)."""
    image = np.random.default_rng(7).integers(0, 256, (24, 16, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)
    app1 = b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\x00\x00" + tiff
    path.write_bytes(data[:2] + app1 + data[2:])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list:
    """Every kind of input predict meets, in runs of alike images broken by others."""
    root = tmp_path_factory.mktemp("chunk")
    rng = np.random.default_rng(3)
    items: list = []

    def add(name: str, make) -> None:
        path = root / name
        make(path)
        items.append(str(path))

    for i in range(5):  # a run of one shape: one colour conversion, resized one by one
        add(f"run{i}.png", lambda p, i=i: make_image(p, 20, 20, 3, seed=i))
    add("grow.png", lambda p: make_image(p, 12, 9, 3, seed=10))
    add("exact.png", lambda p: make_image(p, 16, 16, 3, seed=11))
    add("gray.png", lambda p: make_image(p, 31, 17, 1, seed=12))
    add("gray2.png", lambda p: make_image(p, 31, 17, 1, seed=13))
    add("rgba.png", lambda p: make_image(p, 20, 20, 4, seed=14))
    add("deep.png", lambda p: make_image(p, 20, 20, 3, dtype=np.uint16, seed=15))
    add("photo.jpg", lambda p: make_image(p, 40, 30, 3, seed=16))
    add("turned.jpg", _exif_jpeg)
    add("bad.png", lambda p: p.write_bytes(b"not an image"))
    drawn = np.zeros((20, 20, 4), np.uint8)
    drawn[..., 3] = rng.integers(0, 256, (20, 20))
    add("drawn.png", lambda p: write_array(p, drawn))
    grey_rgb = np.repeat(rng.integers(0, 256, (20, 20, 1), dtype=np.uint8), 3, axis=2)
    add("grey_rgb.png", lambda p: write_array(p, grey_rgb))
    for i in range(3):
        add(f"tail{i}.bmp", lambda p, i=i: make_image(p, 20, 20, 3, seed=20 + i))
    first = items[0]
    items += [
        PredictInput(None, image=rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)),
        PredictInput(None, image=rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)),
        PredictInput(None, image=rng.integers(0, 256, (18, 22), dtype=np.uint8)),
        PredictInput("-", data=open(first, "rb").read()),
        PredictInput(str(root / "gone.png"), error="no such file or folder"),
        PredictInput(first),
    ]
    return items


def _one_by_one(pred: Predictor, item) -> np.ndarray | str:
    """What the image-by-image path gives for ``item``: C×H×W pixels or the error's text."""
    from cnnkit.io.image import read_image_bytes

    try:
        if isinstance(item, str):
            return pred.prepare_image(read_image(item))
        if item.error:
            return item.error
        if item.image is not None:
            return pred.prepare_image(item.image)
        if item.data is not None:
            return pred.prepare_image(read_image_bytes(item.data, item.path))
        return pred.prepare_image(read_image(item.path))
    except Exception as exc:  # noqa: BLE001
        return _error_text(exc)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_chunk_gives_the_pixels_and_errors_of_image_by_image(tmp_path, inputs, channels):
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=channels, size=(16, 16))
    pred = Predictor.from_checkpoint(ckpt, "cpu")
    want = [_one_by_one(pred, item) for item in inputs]
    for size in (1, 4, 16, len(inputs)):  # chunks of every size, cut anywhere
        got: list = []
        for start in range(0, len(inputs), size):
            chunk = decode.decode_chunk(pred, inputs[start : start + size])
            images = iter(chunk.batch)
            assert chunk.batch.dtype == np.uint8 and chunk.batch.flags.c_contiguous
            for error in chunk.errors:
                got.append(next(images) if error is None else _error_text(error))
            assert next(images, None) is None  # exactly the good ones
        assert len(got) == len(want)
        for item, a, b in zip(inputs, got, want, strict=True):
            if isinstance(b, str):
                assert a == b, item
            else:
                assert isinstance(a, np.ndarray) and a.shape == b.shape, item
                np.testing.assert_array_equal(a, b, err_msg=str(item))


def test_the_colour_note_is_given_for_a_stack_that_has_colour(tmp_path, caplog):
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=1, size=(16, 16))
    pred = Predictor.from_checkpoint(ckpt, "cpu")
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (20, 20, 1), np.uint8), 3, 2)
    colour = grey.copy()
    colour[5, 5] = (255, 0, 0)
    greys = [write_array(tmp_path / f"g{i}.png", grey) for i in range(3)]
    assert len(greys) == 3
    paths = [str(tmp_path / f"g{i}.png") for i in range(3)]
    with caplog.at_level(logging.INFO, logger="cnnkit"):
        decode.decode_chunk(pred, paths)
        assert not any("converted to gray" in r.getMessage() for r in caplog.records)
        write_array(tmp_path / "c.png", colour)
        decode.decode_chunk(pred, [*paths, str(tmp_path / "c.png")])
    assert sum("converted to gray" in r.getMessage() for r in caplog.records) == 1


def test_has_colour_of_a_stack_is_whether_any_image_has_colour():
    grey = np.full((4, 5, 3), 90, np.uint8)
    colour = grey.copy()
    colour[1, 2, 2] = 200
    assert not has_colour(np.stack([grey, grey]))
    assert has_colour(np.stack([grey, colour]))
    assert has_colour(np.stack([grey, colour])[..., ::-1])  # a BGR stack seen as RGB


def test_map_ahead_hands_whole_chunks_to_a_batched_function():
    calls: list[list[int]] = []

    def work(group: list[int], stopped) -> list[int]:
        calls.append(list(group))
        assert stopped() is False
        if 7 in group:
            raise ValueError("seven")
        return [i * i for i in group]

    out = list(map_ahead(work, range(10), workers=2, ahead=8, chunk=4, batched=True))
    assert sorted(calls) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [group for group, _ in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert out[0][1] == [0, 1, 4, 9] and out[2][1] == [64, 81]
    assert isinstance(out[1][1], ValueError)  # the consumer says it for each input


def test_closing_a_batched_map_ahead_tells_the_chunk_in_progress_to_stop():
    seen: list[int] = []
    started = threading.Event()

    def work(group: list[int], stopped) -> list[int]:
        for i in group:
            if stopped():
                break
            seen.append(i)
            started.set()
            time.sleep(0.02)
        return group

    results = map_ahead(work, range(1000), workers=1, ahead=200, chunk=100, batched=True)
    assert next(results)[0] == list(range(100))
    results.close()
    assert len(seen) < 200  # the second chunk stopped at its next item


@pytest.mark.parametrize(
    ("workers", "chunk", "taken"),
    [(2, 8, 8), (1, 8, 64), (1, 128, 128)],  # one decode thread takes at least 64 small images
)
def test_named_inputs_are_decoded_a_chunk_at_a_time_with_the_same_records(
    tmp_path, inputs, monkeypatch, workers, chunk, taken
):
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=1, size=(16, 16))
    pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=3)
    chunks: list[int] = []
    real = decode.decode_chunk

    def counted(predictor, items, stopped=None):
        chunks.append(len(items))
        return real(predictor, items, stopped)

    monkeypatch.setattr(decode, "decode_chunk", counted)
    many = inputs * 4  # more inputs than a chunk
    got = predict_images(pred, many, top_k=2, workers=workers, chunk=chunk)
    records = [r for b in got for r in b]
    assert chunks == [taken] * (len(many) // taken) + [len(many) % taken] * (len(many) % taken > 0)
    # Every record as the image-by-image path and the model give it, in input order.
    assert len(records) == len(many)
    for item, record in zip(many, records, strict=True):
        pixels = _one_by_one(pred, item)
        path = item if isinstance(item, str) else item.path
        if isinstance(pixels, str):
            assert record == {"path": path, "error": pixels}
            continue
        probs = np.exp(pred.logits(pixels[None]).astype(np.float64))
        probs /= probs.sum()
        assert record["path"] == path and list(record) == ["path", "label", "score", "topk"]
        assert record["label"] == pred.classes[int(probs.argmax())]
        assert record["score"] == pytest.approx(probs.max(), abs=1e-5)


def test_scores_are_rounded_as_python_rounds_them():
    rng = np.random.default_rng(4)
    ties = (rng.integers(0, 10**7, 20_000) + 0.5) / 1e7  # decimals ending in 5 at the 7th digit
    values = np.concatenate([
        rng.random(50_000),
        rng.random(20_000).astype(np.float32).astype(np.float64),  # softmax's float32 scores
        ties * (1 + rng.normal(0, 1e-15, ties.size)),
        ties,
        [0.0, -0.0, 1.0, 0.5, 5e-7, 1.5e-6, 0.1234565, 0.9999995, 1e-300, -2.5e-7, 123.4567895],
    ])  # fmt: skip
    want = [round(v, 6) for v in values.tolist()]
    assert rounded(values) == want
    grid = values[: 6 * 1000].reshape(1000, 6)
    assert rounded(grid) == [[round(v, 6) for v in row] for row in grid.tolist()]
    odd = np.array([[np.nan, np.inf], [-np.inf, 1e300]])
    got = rounded(odd)
    assert np.isnan(got[0][0]) and got[0][1] == np.inf and got[1] == [-np.inf, 1e300]
    assert rounded(np.empty((0, 3))) == []


def test_a_chunk_of_large_images_holds_a_few_decoded_images_at_a_time(
    tmp_path, monkeypatch
) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=3, size=(16, 16))
    pred = Predictor.from_checkpoint(ckpt, "cpu")
    paths = [str(tmp_path / f"{i}.png") for i in range(7)]
    for i, path in enumerate(paths):
        make_image(path, 40, 40, 3, seed=i)  # 4,800 bytes decoded
    (tmp_path / "3.png").write_bytes(b"broken")  # a failure inside a run
    runs: list[int] = []
    real = decode._prepare_plain

    def counted(predictor, images, bgr, out):
        runs.append(len(images))
        return real(predictor, images, bgr, out)

    monkeypatch.setattr(decode, "_prepare_plain", counted)
    monkeypatch.setattr(decode, "RUN_BYTES", 2 * 4800)
    chunk = decode.decode_chunk(pred, paths)
    assert runs == [2, 2, 2]  # never more than two decoded images waiting
    want = [pred.prepare_image(read_image(p)) for i, p in enumerate(paths) if i != 3]
    np.testing.assert_array_equal(chunk.batch, np.stack(want))
    assert [e is None for e in chunk.errors] == [True, True, True, False, True, True, True]


def test_onnx_runtime_threads_are_the_budgets_cores_the_decoders_leave(
    tmp_path, monkeypatch
) -> None:
    import cnnkit
    from cnnkit.io.pipeline import cpu_cores
    from cnnkit.onnxexport import export_onnx
    from cnnkit.predict import open_predictor

    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=1, size=(16, 16))
    onnx = tmp_path / "m.onnx"
    export_onnx(str(ckpt), onnx)
    # cnnkit's own variable wins over OMP_NUM_THREADS (which batch jobs set for torch).
    monkeypatch.setenv("CNNKIT_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    cores = cpu_cores()
    assert cores == min(2, os.cpu_count() or 1)
    for workers in (1, 2):
        clf = cnnkit.load(onnx, device="cpu", workers=workers)
        assert clf.predictor.cpu_threads() == max(1, cores - workers)
    # Without decode threads beside it (eval, explain): the whole budget, not the machine's.
    predictor, _ = open_predictor(onnx, "cpu")
    assert predictor.cpu_threads() == cores
    assert cnnkit.load(onnx, device="cpu", threads=3).predictor.cpu_threads() == 3  # asked for


@pytest.mark.parametrize(("budget", "decoders"), [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (16, 4)])
def test_decode_threads_and_the_onnx_sessions_follow_the_cpu_budget(
    tmp_path, monkeypatch, budget, decoders
):
    """Half the budget's cores decode (1 to 4), the model computes on the rest: on 2 cores one
    decode thread beside the model's is faster than two, which take turns on the GIL."""
    import cnnkit
    import cnnkit.io.cpu as cpu
    from cnnkit.io.pipeline import decode_workers
    from cnnkit.onnxexport import export_onnx

    monkeypatch.setattr(cpu, "cgroup_cpu_quota", lambda: None)
    monkeypatch.setattr(cpu, "affinity_cores", lambda: (16, "16 cores"))
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 16)
    monkeypatch.setenv("CNNKIT_THREADS", str(budget))
    assert decode_workers() == decoders
    ckpt = make_checkpoint(tmp_path / "m.ckpt", channels=1, size=(16, 16))
    export_onnx(str(ckpt), tmp_path / "m.onnx")
    clf = cnnkit.load(tmp_path / "m.onnx", device="cpu")
    assert clf._workers == decoders
    assert clf.predictor.cpu_threads() == max(1, budget - decoders)
