"""The thread that runs the model: images of concurrent requests gathered into batches.

A model call costs much the same for one image as for a few dozen, so the
images of requests that arrive together are classified together, and their
answers made together too (one softmax and one pass of record building for
the batch, off the thread that serves the connections). The thread
takes the first waiting request, then gathers more until ``max_batch``
images are in or ``max_wait_s`` has passed since the first; it stops waiting
early when no other request is being decoded (nothing more is on its way, so
a lone client never waits). One thread owns the model: requests never share
a model call's buffers with each other's code, and other jobs that need the
model to themselves (Grad-CAM's hooks and gradients) run on it between
batches (:meth:`ModelWorker.call`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError


class ModelStopped(CnnkitError):
    """The model's thread has stopped (the server is shutting down), or a call was stopped."""


Compute = Callable[[np.ndarray, list[Any]], Sequence[Any]]


@dataclass(eq=False, slots=True)
class Classified:
    """What one request's images got: one answer per image, and the largest model call
    they were in (more than their number: shared with other requests)."""

    answers: list[Any]
    batch: int


@dataclass(eq=False, slots=True)
class _Images:
    batch: np.ndarray  # N×C×H×W uint8, prepared for the model
    tags: list[Any]  # one per image, handed to compute with it
    future: Future = field(default_factory=Future)


@dataclass(eq=False, slots=True)
class _Call:
    fn: Callable[[], Any]
    future: Future = field(default_factory=Future)


@dataclass(slots=True)
class WorkerStats:
    """Model calls made, images classified, and the largest call, since the start."""

    calls: int = 0
    images: int = 0
    largest: int = 0
    jobs: int = 0  # other jobs run on the thread (explanations)


class ModelWorker:
    """One thread answering requests' images, ``max_batch`` images at most a call.

    ``compute(batch, tags)``: N×C×H×W uint8 and one tag per image (what the
    request said of it: its name, its top-k) -> one answer per image.
    ``setup``: a context the thread runs in (the torch thread count of the
    thread alone, say).

    >>> worker = ModelWorker(lambda b, tags: predictor.logits(b), 32, 0.01)  # doctest: +SKIP
    >>> worker.classify(prepared, ["a.png"]).result().answers[0].shape  # doctest: +SKIP
    (10,)
    """

    def __init__(
        self,
        compute: Compute,
        max_batch: int = 32,
        max_wait_s: float = 0.01,
        setup: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_s at least 0")
        self._compute = compute
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._setup = setup or nullcontext
        self._pending: deque[_Images | _Call] = deque()
        self._cond = threading.Condition()
        self._expected = 0  # requests being decoded: their images are on their way
        self._stopping = False
        # While the thread gathers a batch: how many images it holds (None: not gathering).
        # Waking it costs the threads serving connections a hand-over of the interpreter
        # lock, so it is woken only for what ends the gathering, not for every request.
        self._gathered: int | None = None
        self._pending_images = 0
        self.stats = WorkerStats()
        self._thread = threading.Thread(target=self._run, name="cnnkit-serve-model", daemon=True)
        self._thread.start()

    # -- what request handlers call ---------------------------------------------------

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Around a request's decoding and :meth:`classify`: the batch waits for its images."""
        with self._cond:
            self._expected += 1
        try:
            yield
        finally:
            with self._cond:
                self._expected -= 1
                if self._expected == 0:  # nothing more on its way: stop waiting for it
                    self._cond.notify()

    def classify(self, batch: np.ndarray, tags: Sequence[Any]) -> Future[Classified]:
        """The answers for ``batch`` (N×C×H×W uint8, ``tags`` one per image), computed
        with other requests' images.

        Cancelling the future before its batch starts leaves its images out.
        """
        if len(batch) == 0 or len(batch) != len(tags):
            raise ValueError("a batch needs images, and one tag per image")
        return self._put(_Images(batch, list(tags)))

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn()`` on the model's thread, between batches, with the model to itself."""
        return self._put(_Call(fn))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def close(self, timeout: float | None = None) -> None:
        """Stop after the batch being computed; what still waits fails with ModelStopped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _put(self, entry: Any) -> Future:
        with self._cond:
            if self._stopping:
                raise ModelStopped("the server is stopping", hint="send the request again later")
            self._pending.append(entry)
            if isinstance(entry, _Images):
                self._pending_images += len(entry.batch)
            gathered = self._gathered
            if gathered is None or gathered + self._pending_images >= self.max_batch:
                self._cond.notify()
            elif isinstance(entry, _Call):
                self._cond.notify()
        return entry.future

    # -- the model's thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            with self._setup():
                while True:
                    first = self._first()
                    if first is None:
                        return
                    if isinstance(first, _Call):
                        self._run_call(first)
                    else:
                        self._answer(self._gather(first))
        finally:
            with self._cond:
                self._stopping = True
                left = list(self._pending)
                self._pending.clear()
            for entry in left:
                if entry.future.set_running_or_notify_cancel():
                    entry.future.set_exception(ModelStopped("the server stopped"))

    def _take(self) -> Any:
        entry = self._pending.popleft()
        if isinstance(entry, _Images):
            self._pending_images -= len(entry.batch)
        return entry

    def _first(self) -> Any:
        """The first waiting entry, waited for; None: stop."""
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            return None if self._stopping else self._take()

    def _gather(self, first: _Images) -> list[_Images]:
        """``first`` and the images that join it: until ``max_batch`` images, the deadline,
        a job for the thread (it runs after the batch), or no request being decoded."""
        group, count = [first], len(first.batch)
        deadline = time.monotonic() + self.max_wait_s
        with self._cond:
            try:
                while count < self.max_batch and not self._stopping:
                    if self._pending:
                        if not isinstance(self._pending[0], _Images):
                            break
                        entry = self._take()
                        group.append(entry)
                        count += len(entry.batch)
                        continue
                    left = deadline - time.monotonic()
                    if self._expected == 0 or left <= 0:
                        break
                    self._gathered = count
                    self._cond.wait(left)
            finally:
                self._gathered = None
        return group

    def _answer(self, group: list[_Images]) -> None:
        live = [e for e in group if e.future.set_running_or_notify_cancel()]
        if not live:
            return  # every request gave up (timed out) while waiting
        batch = live[0].batch if len(live) == 1 else np.concatenate([e.batch for e in live])
        tags = [tag for e in live for tag in e.tags]
        n, size = len(batch), self.max_batch
        try:
            answers: list[Any] = []
            for start in range(0, n, size):
                part = self._compute(batch[start : start + size], tags[start : start + size])
                answers.extend(part)
        except BaseException as exc:  # noqa: BLE001 - each request is told; the thread goes on
            failure = _as_exception(exc)
            for e in live:
                e.future.set_exception(failure)
            self._stop_if_interrupted(exc)
            return
        with self._cond:
            stats = self.stats
            stats.calls += (n + size - 1) // size
            stats.images += n
            stats.largest = max(stats.largest, min(n, size))
        start = 0
        for e in live:
            end = start + len(e.batch)
            batch_size = _largest_call(start, end, n, size)
            e.future.set_result(Classified(answers[start:end], batch_size))
            start = end

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            result = call.fn()
        except BaseException as exc:  # noqa: BLE001 - told to the caller
            call.future.set_exception(_as_exception(exc))
            self._stop_if_interrupted(exc)
            return
        with self._cond:
            self.stats.jobs += 1
        call.future.set_result(result)

    def _stop_if_interrupted(self, exc: BaseException) -> None:
        """After an interruption (a native call stopped by SIGINT or SIGTERM through
        cnnkit.stopping, a KeyboardInterrupt), the thread ends: the server is stopping."""
        if not isinstance(exc, Exception):
            with self._cond:
                self._stopping = True


def _largest_call(start: int, end: int, n: int, size: int) -> int:
    """The largest of the model calls (``size`` rows each, of ``n``) that rows start:end were in."""
    first, last = start // size, (end - 1) // size
    return max(min(size, n - i * size) for i in range(first, last + 1))


def _as_exception(exc: BaseException) -> Exception:
    """An exception a request handler can be given: an interruption becomes ModelStopped.

    A KeyboardInterrupt (a native call stopped by SIGINT or SIGTERM) raised in
    an event loop's task would end the loop, not the request.
    """
    if isinstance(exc, Exception):
        return exc
    return ModelStopped("the model's computation was stopped (the server is stopping)")
