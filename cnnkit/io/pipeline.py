"""The video pipeline: decode, compute and encode overlap, each on its own thread.

A video job (``convolve``, ``predict``, ``explain``) is three stages::

    decode ──queue──▶ compute ──queue──▶ encode

- decode and compute: :func:`compute_in_order` reads a source (a generator
  decoding a video) on a thread of its own and hands each frame to a pool of
  threads, yielding the results in frame order; :func:`produce_ahead` runs a
  generator of whole batches on a thread of its own while the caller computes
  (predict and explain, whose model runs in the caller's thread);
- encode: :class:`WriteBehind` writes results on a thread of its own.

OpenCV, numpy and torch release the GIL in their loops, so the stages really
run at once: on two cores a filter keeps both busy instead of taking turns.
Every queue is bounded, so memory holds a fixed number of frames whatever the
video's length. Errors raised in any stage are re-raised in the caller's
thread. Stopping early (an error, Ctrl-C, SIGTERM, a closed pipe) stops every
stage: decoding and computing after the frame in progress, writing after the
write in progress; a source generator is closed by the thread that runs it,
so a video capture is released there (a thread left inside OpenCV's C++ code
at interpreter exit aborts it, and a generator cannot be closed by one thread
while another runs it). Outputs stay atomic: the file is renamed into place by
its writer only after the encode thread has written the last frame.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

from cnnkit.io.readahead import (
    JOIN_TIMEOUT_S,
    _put_unless,
    map_ahead,
    mark_worker_thread,
    prefetch,
)

T = TypeVar("T")
R = TypeVar("R")

# Frames waiting between the decode and compute stages, in bytes: stages run at
# steady rates, so a few frames of slack keep them all busy (720p colour: 8).
AHEAD_BYTES = 24 * 2**20


def frames_ahead(frame_bytes: int, budget: int = AHEAD_BYTES) -> int:
    """How many frames of ``frame_bytes`` a queue may hold within ``budget``: 2 to 64."""
    return max(2, min(64, budget // max(1, frame_bytes)))


def cpu_cores() -> int:
    """The CPU cores this process may keep busy: its budget (see cnnkit.io.cpu)."""
    from cnnkit.io.cpu import cpu_budget

    return cpu_budget().cores


def decode_workers() -> int:
    """Threads decoding images beside the model by default: half the budget's cores, 1 to 4.

    Every Python thread more takes the interpreter lock from the others: on
    2 cores one decode thread beside the thread running the model predicted
    1,000 small PNGs faster than two (an .onnx 0.51x the slower of decoding
    alone and the model alone, against 0.31x; the README's measured section).
    """
    return max(1, min(4, cpu_cores() // 2))


def pipeline_workers() -> int:
    """Compute threads for a video job: the cores this process may use, at most 4."""
    return max(1, min(4, cpu_cores()))


def produce_ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Run a generator of large items (whole batches) on a thread of its own, ``depth`` ahead.

    The decode stage of predict and explain: the generator decodes and
    prepares a batch of frames while the caller runs the model on the last
    one. Errors are re-raised here; closing stops the thread and closes
    ``items`` there (see :func:`~cnnkit.io.readahead.prefetch`).
    """
    return prefetch(items, depth=max(1, depth))


def compute_in_order(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int | None = None,
    ahead: int | None = None,
    chunk: int = 1,
) -> Generator[R, None, None]:
    """``fn(item)`` for each item, computed on ``workers`` threads, yielded in input order.

    ``items`` (a generator decoding a video) is read on a thread of its own
    and closed there. At most ``ahead`` items (default: two per worker) are
    read and not yet yielded, so memory stays bounded; ``chunk`` items go to a
    thread at a time (for small frames, where a hand-over costs as much as the
    work). An exception raised by ``fn`` or by ``items`` is re-raised here, at
    the item it belongs to. Closing the generator stops the threads (see
    :func:`~cnnkit.io.readahead.map_ahead`).
    """
    workers = workers or pipeline_workers()
    chunk = max(1, chunk)
    ahead = max(ahead or 2 * workers, 2 * chunk)
    results = map_ahead(fn, items, workers=workers, ahead=ahead, chunk=chunk)
    try:
        for _, result in results:
            if isinstance(result, BaseException):
                raise result
            yield result
    finally:
        results.close()


class WriteBehind:
    """Hand items to ``write`` on a thread of its own, ``depth`` items ahead at most.

    Use as a context manager around the loop that produces the items, inside
    the block that owns the file (``with VideoWriter(...) as w, WriteBehind(w.write)``):
    leaving the block cleanly waits for the last write; leaving it by an
    exception stops after the write in progress, so the file's owner can
    remove it. An exception raised by ``write`` (a full disk) is re-raised by
    the next :meth:`put` or on leaving the block.
    """

    def __init__(self, write: Callable[[Any], Any], depth: int = 4) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._end = object()
        self._thread = threading.Thread(target=self._run, daemon=True, name="encode")
        self.written = 0

    def _run(self) -> None:
        mark_worker_thread()
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is self._end:
                return
            try:
                self._write(item)
            except BaseException as exc:  # re-raised in the producer's thread
                self._error = exc
                self._stop.set()
                return
            self.written += 1

    def __enter__(self) -> WriteBehind:
        self._thread.start()
        return self

    def put(self, item: Any) -> None:
        """Queue ``item`` for writing; blocks while ``depth`` items wait."""
        self._raise_error()
        if not _put_unless(self._stop, self._queue, item):
            self._raise_error()
            raise RuntimeError("WriteBehind.put() after the writer stopped")

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is None:
            try:
                # Every queued item is written: wait as long as that takes.
                _put_unless(self._stop, self._queue, self._end)
                self._thread.join()
            except BaseException:  # Ctrl-C or SIGTERM while waiting for the last writes
                self._stop_and_join()
                raise
            self._raise_error()
            return False
        self._stop_and_join()
        return False

    def _stop_and_join(self) -> None:
        """Stop after the write in progress and wait for it, whatever interrupts the wait.

        The file's owner releases the writer next: releasing it while OpenCV's
        encoder is still inside a write crashes the process. A write takes
        milliseconds; a second Ctrl-C during them is not let through.
        """
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._thread.join(0.1)
            except KeyboardInterrupt:
                continue


__all__ = [
    "AHEAD_BYTES",
    "JOIN_TIMEOUT_S",
    "WriteBehind",
    "compute_in_order",
    "cpu_cores",
    "decode_workers",
    "frames_ahead",
    "pipeline_workers",
    "cores_left",
    "decoder_threads",
    "produce_ahead",
    "share_cpu_with_decoders",
    "torch_threads_at_most",
    "torch_threads_here",
]


# ---------------------------------------------------------------------------
# the CPU budget: decoders beside the model
# ---------------------------------------------------------------------------

# Frames up to this many pixels decode faster on one FFmpeg thread than on
# several competing with the model for the same cores; larger ones need them.
_SMALL_FRAME_PIXELS = 256 * 256


def decoder_threads(model_threads: int, width: int, height: int) -> int:
    """FFmpeg's threads for decoding a video of ``width``×``height`` beside a model.

    ``model_threads``: the CPU threads the model computes with (0 on a GPU).

    0 (FFmpeg's choice: as many as cores) for frames larger than 256×256;
    for smaller ones, the cores the model leaves (small frames decode faster
    on one thread than on several that compete with the model; the README's
    measured section has the figures).
    """
    if width * height > _SMALL_FRAME_PIXELS:
        return 0
    return max(1, cpu_cores() - model_threads)


def cores_left(workers: int) -> int:
    """The CPU cores this process may use that ``workers`` decode threads leave (at least 1)."""
    return max(1, cpu_cores() - workers)


def share_cpu_with_decoders(workers: int) -> int:
    """Give torch's CPU thread pool the cores that the ``workers`` decode threads leave free.

    Decoding and inference run at the same time, so letting torch take every
    core as well oversubscribes the CPU; OpenMP threads then spin waiting for
    each other and small models run several times slower. An explicit
    OMP_NUM_THREADS is left alone. Returns the thread count torch uses. This
    changes the process's torch: a command calls it once, before any thread
    computes (changing the count while another thread runs torch is a race).
    """
    import torch

    from cnnkit.io.cpu import set_process_torch_threads

    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    return set_process_torch_threads(cores_left(workers))


@contextmanager
def torch_threads_here(workers: int) -> Iterator[None]:
    """Inside the block, torch computes in this thread on the cores ``workers`` decoders leave.

    See :func:`torch_threads_at_most`: the calling thread alone is lowered.
    """
    with torch_threads_at_most(cores_left(workers)):
        yield


@contextmanager
def torch_threads_at_most(threads: int) -> Iterator[None]:
    """Inside the block, torch computes in this thread on at most ``threads`` threads.

    OpenMP keeps its thread count per thread: it is lowered for the calling
    thread alone and given back when the block ends, so the caller's other
    threads, computing meanwhile, keep theirs (``torch.set_num_threads`` would
    change the whole process and resize pools other threads may be using).
    Nothing changes where torch is not loaded, OMP_NUM_THREADS is set, or
    torch's OpenMP runtime cannot be found.
    """
    import sys

    torch = sys.modules.get("torch")
    omp = _openmp() if torch is not None and "OMP_NUM_THREADS" not in os.environ else None
    if omp is None:
        yield
        return
    torch.get_num_threads()  # torch sets a thread's count on its first call there: first
    before = omp.omp_get_max_threads()
    wanted = max(1, threads)
    if wanted >= before:
        yield
        return
    omp.omp_set_num_threads(wanted)
    # MKL (torch's Linear layers and matmuls) keeps a count of its own; its
    # thread-local one is this thread's alone too. 0 given back: the global one.
    mkl = _openmp_lib("mkl")
    mkl_before = mkl.MKL_Set_Num_Threads_Local(wanted) if mkl is not None else None
    try:
        yield
    finally:
        omp.omp_set_num_threads(before)
        if mkl is not None:
            mkl.MKL_Set_Num_Threads_Local(mkl_before)


class ThreadsHere:
    """Torch's thread count in the calling thread, changed as a caller goes, then given back.

    The same per-thread counts as ``torch_threads_at_most`` (OpenMP's and
    MKL's), for a caller that changes them several times (a training run
    following the machine's load). ``restore()`` gives back the counts
    found before the first change. Nothing changes where torch is not
    loaded, OMP_NUM_THREADS is set, or torch's OpenMP cannot be found.
    """

    def __init__(self) -> None:
        self._saved: tuple[int, Any] | None = None

    def set(self, threads: int) -> bool:
        import sys

        torch = sys.modules.get("torch")
        omp = _openmp() if torch is not None and "OMP_NUM_THREADS" not in os.environ else None
        if omp is None:
            return False
        torch.get_num_threads()  # torch sets a thread's count on its first call there: first
        wanted = max(1, threads)
        before = omp.omp_get_max_threads()
        omp.omp_set_num_threads(wanted)
        mkl = _openmp_lib("mkl")
        mkl_before = mkl.MKL_Set_Num_Threads_Local(wanted) if mkl is not None else None
        if self._saved is None:
            self._saved = (before, mkl_before)
        return True

    def restore(self) -> None:
        if self._saved is None:
            return
        before, mkl_before = self._saved
        self._saved = None
        omp = _openmp()
        if omp is not None:
            omp.omp_set_num_threads(before)
        mkl = _openmp_lib("mkl")
        if mkl is not None and mkl_before is not None:
            mkl.MKL_Set_Num_Threads_Local(mkl_before)


_OPENMP: dict[str, Any] = {}


def _openmp() -> Any:
    """The OpenMP runtime torch runs on (libgomp, libomp or libiomp5), already loaded; or None."""
    return _openmp_lib("omp")


def _openmp_lib(kind: str) -> Any:
    """``omp``: the OpenMP runtime; ``mkl``: the library holding torch's MKL; or None."""
    if kind not in _OPENMP:
        _OPENMP[kind] = _find_openmp() if kind == "omp" else _find_mkl()
    return _OPENMP[kind]


def _loaded_libraries() -> list[str]:
    try:
        with open("/proc/self/maps") as maps:  # Linux: the libraries this process has loaded
            return sorted({line.split()[-1] for line in maps if "/lib" in line})
    except OSError:
        return []


def _find_openmp() -> Any:
    import ctypes

    names = ("libgomp", "libomp", "libiomp5")
    found = [p for p in _loaded_libraries() if os.path.basename(p).startswith(names)]
    # torch's own copy first: a second runtime's setting would not reach torch.
    found.sort(key=lambda p: "torch" not in p)
    for path in found:
        try:
            lib = ctypes.CDLL(path)
            lib.omp_get_max_threads.restype = ctypes.c_int
            lib.omp_get_max_threads.argtypes = []
            lib.omp_set_num_threads.restype = None
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            continue
        return lib
    return None


def _find_mkl() -> Any:
    import ctypes

    names = ("libtorch_cpu", "libmkl_rt", "libmkl_core")  # torch links MKL into libtorch_cpu
    for path in (p for p in _loaded_libraries() if os.path.basename(p).startswith(names)):
        try:
            lib = ctypes.CDLL(path)
            # The C interface (by value); the lower-case name is Fortran's (by reference).
            lib.MKL_Set_Num_Threads_Local.restype = ctypes.c_int
            lib.MKL_Set_Num_Threads_Local.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            continue
        return lib
    return None
