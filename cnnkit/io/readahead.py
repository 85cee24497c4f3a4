"""Decode ahead of the consumer: ``map_ahead`` (a thread pool) and ``prefetch`` (one thread).

Predict and eval decode images and video frames while the model runs on the
previous batch; OpenCV releases the GIL while decoding and resizing, so a few
threads keep the model fed. Both generators hand errors to the consumer, and
both stop their threads when closed early: a thread still inside OpenCV's C++
code while the interpreter shuts down aborts it.
"""

from __future__ import annotations

import itertools
import queue
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

STALL = object()  # yielded by map_ahead(..., stalls=True) while the input has nothing new

# How long closing map_ahead or prefetch waits for a decode in progress (it
# normally ends within milliseconds); a bound, because a stuck thread must not
# hang the exit: the CLI then leaves with os._exit instead.
JOIN_TIMEOUT_S = 2.0


# The threads map_ahead, prefetch and the video pipeline's writer run on, while
# alive: an error exit with one still inside OpenCV must not shut the
# interpreter down around it (see cnnkit.cli.app.main). Threads of the
# caller's own are never in it.
_WORKER_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def mark_worker_thread() -> None:
    """Record the calling thread as one of cnnkit's decode, compute or encode threads."""
    _WORKER_THREADS.add(threading.current_thread())


def worker_threads() -> list[threading.Thread]:
    """cnnkit's decode, compute and encode threads still alive (see mark_worker_thread)."""
    return [t for t in list(_WORKER_THREADS) if t.is_alive()]


def _put_unless(stop: threading.Event, slots: queue.Queue, entry: Any) -> bool:
    """Put ``entry`` into ``slots``, giving up (False) once ``stop`` is set."""
    while not stop.is_set():
        try:
            slots.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def map_ahead(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int = 2,
    ahead: int = 64,
    stalls: bool = False,
    chunk: int = 1,
    batched: bool = False,
) -> Generator[Any, None, None]:
    """Yield ``(item, fn(item))`` in input order, computing up to ``ahead`` items early.

    ``chunk``: items handed to a thread at a time. Each hand-over (a future, two
    queue operations) takes the GIL several times, which costs as much as
    decoding a small image; chunks of 16 make that cost 16 times smaller. Use
    it only for inputs that are all there (a list): a chunk waits for its items.
    ``batched``: ``fn(chunk, stopped)`` takes a whole chunk (a list) and
    ``(chunk, result)`` is yielded once per chunk, so work done for all its
    items at once (and the consumer's) is not paid item by item; ``stopped()``
    turns true once the consumer has gone, for ``fn`` to stop between items.

    ``items`` is read on a feeder thread, so a slow source (paths arriving on a
    pipe, a video being decoded) never blocks results already computed; a
    generator source is closed there when the feeder stops. With ``stalls=True`` the
    marker ``STALL`` is yielded whenever the next item has not arrived yet, so
    a caller can flush a partial batch instead of waiting. An exception raised
    by ``fn`` is yielded in place of the result, so one bad input does not stop
    the others; one raised by ``items`` itself is re-raised here.

    Closing the generator early (the consumer stops) cancels the decodes not
    started and waits up to JOIN_TIMEOUT_S for those running: a thread left
    inside OpenCV's C++ code while the interpreter shuts down aborts it.
    """

    def call(item: T) -> R | BaseException:
        try:
            return fn(item)
        except Exception as exc:  # handed to the consumer, who reports it per input
            return exc

    chunk = max(1, chunk)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode")
    slots: queue.Queue = queue.Queue(maxsize=max(1, ahead // chunk))
    stop = threading.Event()
    end = object()

    def call_all(group: list[T]) -> Any:
        mark_worker_thread()
        if batched:
            try:
                return fn(group, stop.is_set)  # type: ignore[call-arg]
            except Exception as exc:  # handed to the consumer, who reports it per input
                return exc
        out: list[R | BaseException] = []
        for item in group:
            if stop.is_set():  # closed: the rest of the chunk is never wanted
                break
            out.append(call(item))
        return out

    # The future the feeder holds while it waits for a free slot: on close it is
    # neither in ``slots`` nor (once a thread runs it) cancellable, so it is waited for.
    held: list[Future] = []

    def feed() -> None:
        mark_worker_thread()
        iterator: Any = None
        try:
            iterator = iter(items)
            while group := list(itertools.islice(iterator, chunk)):
                if stop.is_set():
                    return
                future = pool.submit(call_all, group)
                held.append(future)
                if not _put_unless(stop, slots, (group, future)):
                    return
                held.remove(future)
            _put_unless(stop, slots, (end, None))
        except BaseException as exc:  # re-raised in the consumer's thread
            _put_unless(stop, slots, (end, exc))
        finally:
            # A generator source (a video being decoded) is closed by the thread
            # that runs it, so its capture is released here, never mid-read.
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    feeder = threading.Thread(target=feed, daemon=True, name="feed")
    feeder.start()
    try:
        while True:
            if stalls and slots.empty():
                yield STALL
            group, future = slots.get()
            if group is end:
                if future is not None:
                    raise future
                return
            if batched:
                yield group, future.result()
            else:
                yield from zip(group, future.result(), strict=True)  # whole: stop was not set
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        # The feeder only reads ``items`` and stops at its next put (within 0.1 s);
        # when it is blocked reading a pipe, no wait would end that (it holds no future then).
        feeder.join(0.2)
        # Decodes already running (OpenCV's C++ code) finish, bounded; the rest are cancelled.
        running = _running_futures(slots) + [f for f in list(held) if not f.cancel()]
        wait_futures(running, timeout=JOIN_TIMEOUT_S)


def _running_futures(slots: queue.Queue) -> list[Any]:
    """Empty ``slots`` of map_ahead, cancelling its futures; return those already running."""
    running = []
    while True:
        try:
            _, future = slots.get_nowait()
        except queue.Empty:
            return running
        # cancel() is False for a future that is running or done (waiting on a done one is free).
        if isinstance(future, Future) and not future.cancel():
            running.append(future)


def prefetch(items: Iterator[T], depth: int = 32) -> Generator[T, None, None]:
    """Run ``items`` on a background thread, ``depth`` values ahead; errors re-raised here.

    Closing the generator early stops the thread after the value it is
    computing (waiting up to JOIN_TIMEOUT_S) and closes ``items`` there, so a
    video capture is released by the thread that used it.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        mark_worker_thread()
        try:
            for value in items:
                if not _put_unless(stop, q, (value, None)):
                    break
            else:
                _put_unless(stop, q, (done, None))
        except BaseException as exc:  # re-raised in the consumer's thread
            _put_unless(stop, q, (done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, daemon=True, name="prefetch")
    thread.start()
    try:
        while True:
            value, exc = q.get()
            if value is done:
                if exc is not None:
                    raise exc
                return
            yield value
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT_S)
