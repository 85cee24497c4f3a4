"""Predictor: checkpoint loading, preprocessing parity, batching, streaming, videos."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from cnnkit.data.preprocess import normalize, prepare_image
from cnnkit.evaluation import softmax
from cnnkit.io.readahead import map_ahead, prefetch
from cnnkit.models.registry import create_model
from cnnkit.predict import (
    PredictInput,
    Predictor,
    predict_images,
    predict_inputs,
    predict_video,
)
from tests.helpers import make_checkpoint, make_image, make_video


@pytest.fixture
def ckpt2d(tmp_path):
    return make_checkpoint(tmp_path / "m2d.ckpt", "lenet5", ["cat", "dog", "owl"], 1, (16, 16))


@pytest.fixture
def ckpt3d(tmp_path):
    return make_checkpoint(
        tmp_path / "m3d.ckpt", "c3d_small", ["left", "right"], 3, (16, 16), frames=4
    )


def test_predictor_matches_a_hand_built_forward_pass(tmp_path, ckpt2d) -> None:
    pred = Predictor.from_checkpoint(ckpt2d, "cpu", batch_size=4)
    assert pred.classes == ["cat", "dog", "owl"] and not pred.is_video_model
    image = make_image(tmp_path / "x.png", 24, 20, channels=3, seed=3)
    # The same model and preprocessing, assembled by hand.
    torch.manual_seed(0)
    net = create_model("lenet5", 3, 1, input_size=(1, 16, 16)).eval()
    x = torch.from_numpy(prepare_image(image, 1, (16, 16)))[None]
    want = net(normalize(x, [0.5], [0.25])).detach().numpy()
    got = pred.logits(pred.prepare_image(image)[None])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_predict_images_labels_order_and_errors(tmp_path, ckpt2d) -> None:
    paths = [str(tmp_path / f"{i}.png") for i in range(7)]
    for i, p in enumerate(paths):
        make_image(p, 16, 16, channels=1, seed=i)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    paths.insert(3, str(tmp_path / "bad.png"))
    inputs = [PredictInput(p) for p in paths]
    inputs.insert(5, PredictInput(str(tmp_path / "gone.png"), error="no such file or folder"))
    pred = Predictor.from_checkpoint(ckpt2d, "cpu", batch_size=3)
    batches = list(predict_inputs(pred, inputs, top_k=2))
    records = [r for b in batches for r in b]
    assert [r["path"] for r in records] == [i.path for i in inputs]
    errors = [r for r in records if "error" in r]
    assert [r["path"] for r in errors] == [str(tmp_path / "bad.png"), str(tmp_path / "gone.png")]
    assert errors[1]["error"] == "no such file or folder"
    good = [r for r in records if "error" not in r]
    assert len(good) == 7
    for r in good:
        assert r["label"] in pred.classes and r["label"] == r["topk"][0]["label"]
        assert len(r["topk"]) == 2 and r["topk"][0]["score"] >= r["topk"][1]["score"]
    # Batches are at most batch_size predictions (errors ride along with a batch).
    assert all(sum("error" not in r for r in b) <= 3 for b in batches)
    # Each prediction equals a one-image forward pass.
    for r in good[:3]:
        from cnnkit.io.image import read_image

        probs = softmax(pred.logits(pred.prepare_image(read_image(r["path"]))[None]))
        assert r["score"] == pytest.approx(float(probs.max()), abs=1e-6)


def test_results_stream_before_all_inputs_are_read(tmp_path, ckpt2d) -> None:
    for i in range(40):
        make_image(tmp_path / f"{i:02d}.png", 16, 16, channels=1, seed=i)
    consumed = []

    def paths():
        for i in range(40):
            consumed.append(i)
            yield str(tmp_path / f"{i:02d}.png")

    pred = Predictor.from_checkpoint(ckpt2d, "cpu", batch_size=2)
    stream = predict_images(pred, paths(), top_k=1)
    first = next(stream)
    assert 1 <= len(first) <= 2
    assert len(consumed) < 40, "the first batch waited for every input"
    rest = [r for b in stream for r in b]
    assert len(first) + len(rest) == 40 and len(consumed) == 40


def test_partial_batch_is_answered_while_the_source_waits(tmp_path, ckpt2d) -> None:
    """Paths trickling in (a pipe): no waiting for a full batch of 32."""
    for i in range(3):
        make_image(tmp_path / f"{i}.png", 16, 16, channels=1, seed=i)
    release = threading.Event()

    def paths():
        yield str(tmp_path / "0.png")
        yield str(tmp_path / "1.png")
        assert release.wait(30), "the consumer never got the first results"
        yield str(tmp_path / "2.png")

    pred = Predictor.from_checkpoint(ckpt2d, "cpu", batch_size=32)
    stream = predict_images(pred, paths(), top_k=1)
    seen = []
    while len(seen) < 2:
        seen += next(stream)
    release.set()
    seen += [r for b in stream for r in b]
    assert [r["path"][-5:] for r in seen] == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize("chunk", [1, 3])
def test_map_ahead_keeps_order_overlaps_and_reports_errors(chunk: int) -> None:
    active, peak = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01 * (5 - i % 5))  # later items finish first
        with lock:
            active[0] -= 1
        if i == 3:
            raise ValueError("three")
        return i * i

    out = list(map_ahead(work, range(10), workers=3, ahead=6, chunk=chunk))
    assert [i for i, _ in out] == list(range(10))
    assert isinstance(out[3][1], ValueError)
    assert [r for i, r in out if i != 3] == [i * i for i in range(10) if i != 3]
    assert peak[0] > 1  # decoding really ran in parallel


def test_prefetch_passes_values_and_errors() -> None:
    assert list(prefetch(iter(range(100)), depth=4)) == list(range(100))

    def broken():
        yield 1
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        list(prefetch(broken()))


def test_closing_prefetch_early_stops_its_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def frames():
        try:
            for i in range(1000):
                time.sleep(0.02)  # a frame being decoded
                yield i
        finally:
            closed.set()

    before = set(threading.enumerate())
    values = prefetch(frames(), depth=2)
    assert next(values) == 0
    values.close()  # the consumer stops, as predict does when stdout's reader goes away
    # No thread is left decoding: one still inside OpenCV at interpreter exit aborts it.
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []
    assert closed.is_set()


def test_closing_map_ahead_early_waits_for_the_calls_running() -> None:
    started: list[int] = []
    finished: list[int] = []

    def decode(i: int) -> int:
        started.append(i)
        time.sleep(0.1)
        finished.append(i)
        return i

    results = map_ahead(decode, range(100), workers=2, ahead=4)
    assert next(results) == (0, 0)
    results.close()
    assert sorted(finished) == sorted(started)  # none still running
    assert len(started) < 10  # and the rest never started

    started.clear()
    finished.clear()
    results = map_ahead(decode, range(100), workers=2, ahead=8, chunk=4)  # 2 chunks ahead
    assert next(results) == (0, 0)
    results.close()
    assert sorted(finished) == sorted(started)
    assert len(started) < 20


def test_3d_model_slides_windows_over_a_video(tmp_path, ckpt3d) -> None:
    make_video(tmp_path / "v.mp4", frames=10, fps=5.0)
    pred = Predictor.from_checkpoint(ckpt3d, "cpu", batch_size=2)
    records = [r for b in predict_video(pred, str(tmp_path / "v.mp4"), 2, stride=2) for r in b]
    windows, video = records[:-1], records[-1]
    assert [(r["start_frame"], r["end_frame"]) for r in windows] == [(0, 3), (2, 5), (4, 7), (6, 9)]
    assert windows[1]["start_s"] == pytest.approx(0.4) and windows[1]["end_s"] == pytest.approx(1.2)
    assert video["window"] == "video" and video["windows"] == len(windows)
    assert (video["start_frame"], video["end_frame"]) == (0, 9)
    assert video["end_s"] == pytest.approx(2.0)
    # The video's scores are the mean of the windows' (top-2 of 2 classes: all of them).
    mean = {c: np.mean([t["score"] for w in windows for t in w["topk"] if t["label"] == c])
            for c in pred.classes}  # fmt: skip
    for t in video["topk"]:
        assert t["score"] == pytest.approx(mean[t["label"]], abs=1e-5)


def test_3d_window_matches_a_clip_forward_pass(tmp_path, ckpt3d) -> None:
    from cnnkit.io.video import read_video

    make_video(tmp_path / "v.mp4", frames=8, fps=10.0)
    pred = Predictor.from_checkpoint(ckpt3d, "cpu")
    first = next(iter(predict_video(pred, str(tmp_path / "v.mp4"), 2)))[0]
    frames, _ = read_video(tmp_path / "v.mp4")
    probs = softmax(pred.logits(pred.prepare_clip(frames[:4])[None]))[0]
    assert first["score"] == pytest.approx(float(probs.max()), abs=1e-6)


def test_short_video_gets_one_padded_window(tmp_path, ckpt3d) -> None:
    make_video(tmp_path / "short.mp4", frames=2)
    pred = Predictor.from_checkpoint(ckpt3d, "cpu")
    records = [r for b in predict_video(pred, str(tmp_path / "short.mp4")) for r in b]
    assert [(r.get("window"), r["start_frame"], r["end_frame"]) for r in records] == [
        (None, 0, 1),
        ("video", 0, 1),
    ]


def test_2d_model_classifies_every_stride_frames(tmp_path, ckpt2d) -> None:
    make_video(tmp_path / "v.mp4", frames=7, fps=10.0)
    pred = Predictor.from_checkpoint(ckpt2d, "cpu", batch_size=2)
    records = [r for b in predict_video(pred, str(tmp_path / "v.mp4"), stride=3) for r in b]
    assert [r.get("frame") for r in records[:-1]] == [0, 3, 6]
    assert records[1]["time_s"] == pytest.approx(0.3)
    assert records[-1]["window"] == "video"


def test_3d_model_refuses_images_per_input(tmp_path, ckpt3d) -> None:
    make_image(tmp_path / "x.png")
    pred = Predictor.from_checkpoint(ckpt3d, "cpu")
    records = [r for b in predict_inputs(pred, [PredictInput(str(tmp_path / "x.png"))]) for r in b]
    assert records == [{"path": str(tmp_path / "x.png"), "error": records[0]["error"]}]
    assert "video clips of 4 frames" in records[0]["error"]


def test_unreadable_video_becomes_an_error_record(tmp_path, ckpt3d) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    make_video(tmp_path / "ok.mp4", frames=4)
    pred = Predictor.from_checkpoint(ckpt3d, "cpu")
    items = [PredictInput(str(tmp_path / n), is_video=True) for n in ("bad.mp4", "ok.mp4")]
    records = [r for b in predict_inputs(pred, items) for r in b]
    assert "error" in records[0] and records[0]["path"].endswith("bad.mp4")
    assert [r.get("window") for r in records[1:]] == [None, "video"]
