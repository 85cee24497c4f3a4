"""predict over videos through the pipeline: the same numbers as frame-by-frame preparation.

The decode thread prepares BGR frames straight into batches (Predictor.prepare_frame,
inference._frame_batches); these tests hold that to prepare_image on the RGB frame, the
path every other input takes, bit for bit, and the records to a sequential reference.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from cnnkit.data.clips import sliding_windows
from cnnkit.data.preprocess import prepare_image
from cnnkit.evaluation import softmax
from cnnkit.io.pipeline import cpu_cores, decoder_threads
from cnnkit.predict import Predictor, predict_video
from cnnkit.predict.videos import _video_batches
from tests.helpers import make_checkpoint, write_video


def _noisy_video(path, frames: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Write a colourful noisy video; return its frames as decoded (BGR)."""
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8)
    clip[:, : h // 2, :, 0] //= 3  # some structure, and colour channels that differ
    write_video(path, clip)
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    assert len(decoded) == frames
    return decoded


def _predictor(tmp_path, channels: int, size, frames=None, batch_size: int = 4) -> Predictor:
    model = "c3d_small" if frames else "lenet5"
    ckpt = make_checkpoint(
        tmp_path / f"m{channels}-{size[0]}.ckpt", model, ["a", "b", "c"], channels, size,
        frames=frames,
    )  # fmt: skip
    return Predictor.from_checkpoint(ckpt, "cpu", batch_size=batch_size)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(16, 16), (24, 40), (48, 64), (50, 70)])
def test_prepare_frame_is_prepare_image_of_the_rgb_frame(tmp_path, channels, size) -> None:
    # 48×64 is the frame's own size (no resize), 50×70 grows it, the others shrink it.
    frames = _noisy_video(tmp_path / "v.mp4", 3, 48, 64)
    pred = _predictor(tmp_path, channels, size)
    for bgr in frames:
        want = prepare_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), channels, size)
        assert np.array_equal(pred.prepare_frame(bgr), want)
        out = np.full_like(want, 7)
        assert pred.prepare_frame(bgr, out=out) is out
        assert np.array_equal(out, want)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("stride", [1, 3])
def test_2d_batches_hold_every_stride_frame_prepared(tmp_path, channels, stride) -> None:
    frames = _noisy_video(tmp_path / "v.mp4", 11, 32, 48)
    pred = _predictor(tmp_path, channels, (16, 16), batch_size=4)
    got = list(_video_batches(pred, str(tmp_path / "v.mp4"), 1, stride))
    kept = list(range(0, 11, stride))
    assert [len(spans) for spans, _ in got] == [
        min(4, len(kept) - i) for i in range(0, len(kept), 4)
    ]
    spans = [s for batch_spans, _ in got for s in batch_spans]
    assert spans == [(i, i) for i in kept]
    batch = np.concatenate([b for _, b in got])
    want = np.stack(
        [prepare_image(cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB), channels, (16, 16))
         for i in kept]
    )  # fmt: skip
    assert batch.dtype == np.uint8 and batch.flags.c_contiguous
    assert np.array_equal(batch, want)


@pytest.mark.parametrize("window, stride", [(4, 4), (4, 1), (4, 3)])
def test_3d_batches_are_the_sliding_windows_stacked(tmp_path, window, stride) -> None:
    frames = _noisy_video(tmp_path / "v.mp4", 10, 32, 32)
    pred = _predictor(tmp_path, 3, (16, 16), frames=4, batch_size=3)
    got = list(_video_batches(pred, str(tmp_path / "v.mp4"), window, stride))
    prepared = [prepare_image(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), 3, (16, 16)) for f in frames]
    want = list(sliding_windows(prepared, window, stride))
    assert [s for spans, _ in got for s in spans] == [(a, b) for a, b, _ in want]
    batch = np.concatenate([b for _, b in got])
    assert np.array_equal(batch, np.stack([np.stack(t, axis=1) for _, _, t in want]))


def test_2d_video_records_match_the_sequential_path(tmp_path) -> None:
    frames = _noisy_video(tmp_path / "v.mp4", 9, 32, 32)
    pred = _predictor(tmp_path, 3, (16, 16), batch_size=4)
    records = [r for batch in predict_video(pred, str(tmp_path / "v.mp4"), top_k=2) for r in batch]
    *per_frame, summary = records
    prepared = np.stack([prepare_image(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), 3, (16, 16))
                         for f in frames])  # fmt: skip
    probs = np.concatenate([softmax(x) for x in pred.logits_in_batches(prepared)])
    want = pred.label_scores(probs, 2)
    assert [r["frame"] for r in per_frame] == list(range(9))
    for got, expected in zip(per_frame, want, strict=True):
        assert (got["label"], got["score"], got["topk"]) == (
            expected["label"], expected["score"], expected["topk"],
        )  # fmt: skip
    mean = pred.label_scores((probs.sum(axis=0) / 9)[None, :], 2)[0]
    assert summary["window"] == "video" and summary["windows"] == 9
    assert (summary["label"], summary["score"]) == (mean["label"], mean["score"])
    assert summary["end_frame"] == 8


def test_a_closed_pipe_after_one_record_ends_quietly(tmp_path) -> None:
    # A video long enough that decoding is still running when the reader goes away.
    write_video(tmp_path / "long.mp4", np.random.default_rng(0).integers(
        0, 256, (300, 96, 128, 3), dtype=np.uint8))  # fmt: skip
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b"], 3, (16, 16))
    # One try: tests/cli/test_process_faults.py repeats this race with other inputs.
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "predict", str(ckpt), "long.mp4", "--batch-size",
         "8"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        status = proc.wait(60)
    finally:
        proc.kill()
        proc.wait()
    assert b'"frame": 0' in first
    assert status in (0, 141), (status, err)
    assert "Traceback" not in err and "terminate called" not in err, err


def test_decoder_threads_follow_the_frame_size(tmp_path) -> None:
    pred = _predictor(tmp_path, 3, (16, 16))
    # FFmpeg's choice for large frames, which need the threads:
    assert decoder_threads(pred.cpu_threads(), 1280, 720) == 0
    small = decoder_threads(pred.cpu_threads(), 128, 128)
    assert 1 <= small == max(1, cpu_cores() - pred.cpu_threads())


def test_an_error_exit_never_ends_a_caller_that_has_threads_of_its_own(tmp_path) -> None:
    # main() leaves with os._exit only while one of cnnkit's own decode threads is
    # stuck; a caller's thread named like one ("feeder") must not count.
    script = (
        "import sys, threading, time\n"
        "from cnnkit.cli import main\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True, name='feeder').start()\n"
        "sys.argv = ['cnnkit', 'predict', 'missing.ckpt', 'x.png']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
        "print('caller goes on')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.stdout.splitlines() == ["exit 1", "caller goes on"], proc.stdout + proc.stderr
