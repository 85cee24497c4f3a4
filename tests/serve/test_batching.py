"""The model's thread of ``cnnkit serve``: batches gathered from concurrent requests, rows routed.

A stand-in model that answers each image with its tag and its first pixel
makes every answer traceable to the image it came from; the calls it
receives are kept.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cnnkit.serve.batching import ModelStopped, ModelWorker


class Recorder:
    """(tag, first pixel) per image of a batch; each call's size kept."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, batch: np.ndarray, tags: list) -> list:
        self.sizes.append(len(batch))
        time.sleep(self.delay)
        if self.fail_on is not None and (batch[:, 0, 0, 0] == self.fail_on).any():
            raise RuntimeError("this batch fails")
        return [(tag, int(pixel)) for tag, pixel in zip(tags, batch[:, 0, 0, 0], strict=True)]


def first_pixels(answer) -> list[int]:
    return [pixel for _, pixel in answer.answers]


def images(*values: int) -> tuple[np.ndarray, list[str]]:
    """(a batch whose images start with ``values``, a tag per image)."""
    out = np.zeros((len(values), 1, 2, 2), np.uint8)
    for i, v in enumerate(values):
        out[i, 0, 0, :2] = (v, v + 1)
    return out, [f"image {v}" for v in values]


def test_requests_decoded_together_share_one_call_and_get_their_own_rows() -> None:
    model = Recorder()
    worker = ModelWorker(model, max_batch=32, max_wait_s=5.0)
    try:
        futures = []
        with worker.expecting(), worker.expecting(), worker.expecting():
            # Three requests decoding: the first's images wait for the others' (not 5 s).
            for n, start in ((1, 10), (3, 20), (2, 40)):
                futures.append(worker.classify(*images(*range(start, start + n))))
        answers = [f.result(timeout=10) for f in futures]
    finally:
        worker.close()
    assert model.sizes == [6]
    for answer, (n, start) in zip(answers, ((1, 10), (3, 20), (2, 40)), strict=True):
        assert answer.batch == 6
        assert answer.answers == [(f"image {v}", v) for v in range(start, start + n)]


def test_a_lone_request_does_not_wait_for_company() -> None:
    worker = ModelWorker(Recorder(), max_batch=32, max_wait_s=30.0)
    try:
        began = time.monotonic()
        with worker.expecting():
            future = worker.classify(*images(7))
        assert future.result(timeout=10).answers == [("image 7", 7)]
        assert time.monotonic() - began < 5  # not the 30 s it may wait with others decoding
    finally:
        worker.close()


def test_a_call_holds_at_most_max_batch_images() -> None:
    model = Recorder(delay=0.05)
    worker = ModelWorker(model, max_batch=4, max_wait_s=1.0)
    try:
        with worker.expecting():
            first = worker.classify(*images(1))
            time.sleep(0.02)  # the thread takes it, and waits for more within 1 s
            big = worker.classify(*images(*range(10, 20)))
        assert first_pixels(big.result(timeout=10)) == list(range(10, 20))
        assert first_pixels(first.result(timeout=10)) == [1]
    finally:
        worker.close()
    assert max(model.sizes) == 4 and sum(model.sizes) == 11
    assert worker.stats.largest == 4 and worker.stats.images == 11


def test_a_failed_call_fails_its_requests_and_the_thread_goes_on() -> None:
    worker = ModelWorker(Recorder(fail_on=99), max_batch=8, max_wait_s=0.0)
    try:
        with pytest.raises(RuntimeError, match="this batch fails"):
            worker.classify(*images(99)).result(timeout=10)
        assert first_pixels(worker.classify(*images(5)).result(timeout=10)) == [5]
        assert worker.alive
    finally:
        worker.close()


def test_a_cancelled_request_is_left_out_of_the_batch() -> None:
    model = Recorder()
    gate = threading.Event()
    worker = ModelWorker(model, max_batch=8, max_wait_s=0.0)
    try:
        blocker = worker.call(gate.wait)  # holds the thread while two requests queue
        gone = worker.classify(*images(1))
        kept = worker.classify(*images(2))
        assert gone.cancel()
        gate.set()
        assert blocker.result(timeout=10) is True
        assert first_pixels(kept.result(timeout=10)) == [2]
    finally:
        worker.close()
    assert model.sizes == [1]


def test_jobs_run_on_the_models_thread_between_batches() -> None:
    worker = ModelWorker(Recorder(), max_batch=8, max_wait_s=0.0)
    try:
        name = worker.call(lambda: threading.current_thread().name).result(timeout=10)
        assert name == "cnnkit-serve-model"
        with pytest.raises(ValueError, match="boom"):
            worker.call(lambda: (_ for _ in ()).throw(ValueError("boom"))).result(timeout=10)
    finally:
        worker.close()


def test_closing_fails_what_still_waits_and_refuses_more() -> None:
    gate = threading.Event()
    worker = ModelWorker(Recorder(), max_batch=8, max_wait_s=0.0)
    worker.call(gate.wait)
    waiting = worker.classify(*images(3))
    closer = threading.Thread(target=worker.close)
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(10)
    with pytest.raises(ModelStopped):
        waiting.result(timeout=10)
    with pytest.raises(ModelStopped):
        worker.classify(*images(4))
    assert not worker.alive
