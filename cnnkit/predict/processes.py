"""Decode processes: predict's image decoding in child processes, for processes that decode a lot.

The threads of one process share the interpreter lock: one decode thread
beside the thread that runs the model is as far as threads go (see
cnnkit.predict.images), and every line of Python that thread runs stalls
the decoder. A child process decodes with an interpreter of its own while
this one runs the model. Starting one costs a Python with numpy and OpenCV
(0.15-0.3 s of CPU), so a process starts them only once it has decoded
START_AFTER named images itself (a large folder, a server or a Ray worker
called again and again), in the background, and uses them from then on: a
predict of a few images never pays for them. They run where the CPU budget
has a core for them beside the model (2 cores or more), on POSIX, unless
CNNKIT_DECODE_PROCESSES=0.

A child decodes with the same code (cnnkit.predict.decode), this process's
pixel limit and the same checks, and sends back each chunk's prepared batch,
each input's error text and the notes it gave. It is started with its own
Python (``sys.executable -c``: unlike multiprocessing's spawn, nothing of
the caller's ``__main__`` runs again), in a session of its own with its
stderr closed (the command's one-line errors stay its own; Ctrl-C reaches
the command, which stops using it), and ends when its socket closes: when
this process exits, however it exits. A child that fails is given up for
the rest of this process's life, and its chunks are decoded here.
"""

from __future__ import annotations

import atexit
import itertools
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

# Named images this process decodes itself before it starts decode processes.
START_AFTER = 5_000
# CNNKIT_DECODE_PROCESSES=0: never (decoding stays on threads).
OFF_VARIABLE = "CNNKIT_DECODE_PROCESSES"
# How long a child may take to start (import numpy and OpenCV) before it is given up.
START_TIMEOUT_S = 60.0
# How long ending a job early waits for the chunks its children are decoding.
DRAIN_TIMEOUT_S = 2.0

_BOOT = """\
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
from multiprocessing.connection import Connection
conn = Connection(int(sys.argv[1]))
sys.path[:] = conn.recv()
from cnnkit.predict.processes import serve
serve(conn)
"""


# ---------------------------------------------------------------------------
# the child
# ---------------------------------------------------------------------------


def serve(conn: Any) -> None:
    """A decode process's loop: (spec, limit, noted, paths) in, (batch, errors, notes) out."""
    from cnnkit.predict.decode import decode_chunk, error_text

    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent has gone
            return
        if message is None:
            return
        spec, limit, noted, paths = message
        preparer = _preparer(spec, noted)
        chunk = decode_chunk(preparer, paths, max_pixels=limit)
        errors = [None if e is None else error_text(e) for e in chunk.errors]
        conn.send((chunk.batch, errors, preparer.notes))


_PREPARER: list[Any] = []


def _preparer(spec: Any, noted: set[str]) -> Any:
    """A Predictor without a model that keeps the notes it gives, for the parent to give."""
    if not _PREPARER:
        from cnnkit.predict.predictor import Predictor

        class Preparer(Predictor):
            def __init__(self, spec: Any, noted: set[str]) -> None:
                super().__init__(None, [], spec)  # type: ignore[arg-type]
                self._noted = set(noted)
                self.notes: list[tuple[str, str]] = []

            def note_once(self, kind: str, message: str) -> None:
                if kind not in self._noted:
                    self._noted.add(kind)
                    self.notes.append((kind, message))

        _PREPARER.append(Preparer)
    return _PREPARER[0](spec, noted)


# ---------------------------------------------------------------------------
# the parent
# ---------------------------------------------------------------------------


class _Child:
    """One decode process and this end of its socket."""

    def __init__(self) -> None:
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send(list(sys.path))

    def wait_ready(self, timeout: float) -> bool:
        try:
            return bool(self.conn.poll(timeout)) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            return False

    def close(self) -> None:
        try:
            self.conn.close()  # the child's recv ends: it exits
        except OSError:
            pass
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Pool:
    """This process's decode processes: started in the background, lent to one job at a time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.children: list[_Child] = []
        self.ready = threading.Event()
        self.broken = False
        self.busy = threading.Lock()
        self.pid = os.getpid()
        self._closing = threading.Lock()
        threading.Thread(target=self._start, daemon=True, name="decode-processes").start()

    def _start(self) -> None:
        try:
            for _ in range(self.size):
                self.children.append(_Child())
            if all(child.wait_ready(START_TIMEOUT_S) for child in self.children):
                self.ready.set()
                return
        except (OSError, ValueError, subprocess.SubprocessError):
            pass  # no processes here (a sandbox, no executable): decoding stays in-process
        self.close()

    def close(self) -> None:
        """Give the children up for good (they exit as their sockets close)."""
        with self._closing:
            self.broken = True
            children, self.children = self.children, []
        for child in children:
            child.close()


_STATE: dict[str, Any] = {"pool": None, "decoded": 0}
_LOCK = threading.Lock()


def count(images: int) -> None:
    """Count named images decoded in this process; past START_AFTER, start decode processes."""
    with _LOCK:
        _STATE["decoded"] += images
        if _STATE["pool"] is not None or _STATE["decoded"] < START_AFTER:
            return
        from cnnkit.io.pipeline import cpu_cores, decode_workers

        off = os.environ.get(OFF_VARIABLE, "").strip() == "0"
        if off or os.name != "posix" or not sys.executable or cpu_cores() < 2:
            _STATE["pool"] = False  # never here: turned off, or no core for them beside the model
            return
        _STATE["pool"] = Pool(decode_workers())


def started() -> bool:
    """Whether this process's decode processes are ready (and not given up)."""
    pool = _STATE["pool"]
    return bool(pool) and pool.ready.is_set() and not pool.broken and pool.pid == os.getpid()


def claimable() -> bool:
    """Whether ``claim`` would lend the decode processes now."""
    return started() and not _STATE["pool"].busy.locked()


def claim() -> Pool | None:
    """The decode processes, ready and now this caller's until ``release``; or None."""
    pool = _STATE["pool"]
    if not started() or not pool.busy.acquire(blocking=False):
        return None
    return pool


def release(pool: Pool) -> None:
    pool.busy.release()


def decode(
    pool: Pool,
    predictor: Any,
    iterator: Iterator[Any],
    chunk: int,
    depth: int,
    stop: threading.Event,
) -> Iterator[tuple[list[Any], Any]]:
    """(chunk of inputs, DecodedChunk) in order for ``iterator``'s inputs, decoded by ``pool``.

    Runs in the caller's thread: it sends each child up to ``depth`` chunks
    ahead and waits on their answers (without the interpreter lock). Chunks
    holding anything but paths (bytes, arrays, errors known already) are
    decoded here. If a child fails, the pool is given up and the chunks it
    held are decoded here; the caller decodes the rest.
    """
    from cnnkit.io.headers import max_image_pixels
    from cnnkit.predict.decode import DecodedChunk, decode_chunk

    children = list(pool.children)
    turn = itertools.cycle(children)
    sent: deque[tuple[list[Any], _Child | None, Any]] = deque()
    limit = max_image_pixels()
    talking = False  # within a send or a receive: a message may be cut in two
    try:
        while not stop.is_set():
            while len(sent) < depth * len(children):
                group = list(itertools.islice(iterator, chunk))
                if not group:
                    break
                paths = _paths(group)
                if paths is None:
                    sent.append((group, None, decode_chunk(predictor, group, stop.is_set)))
                    continue
                child = next(turn)
                sent.append((group, child, None))  # first: a failed send decodes it here
                talking = True
                child.conn.send((predictor.input, limit, set(predictor._noted), paths))
                talking = False
            if not sent:
                return
            group, child, result = sent[0]
            if child is not None:
                talking = True
                batch, errors, notes = child.conn.recv()
                talking = False
                for kind, message in notes:
                    predictor.note_once(kind, message)
                result = DecodedChunk(batch, errors)
            sent.popleft()
            yield group, result
        _drain(pool, sent)  # stopped: the answers still coming are taken, for the next job
    except (EOFError, OSError):
        pool.close()  # for good: this process decodes the rest itself
        while sent:
            group, _, result = sent.popleft()
            yield group, result or decode_chunk(predictor, group, stop.is_set)
    except BaseException:
        # Ctrl-C or SIGTERM within a message gives the pool up; elsewhere (the job
        # ended early, its inputs failed) the answers still coming are taken.
        if talking:
            pool.close()
        else:
            _drain(pool, sent)
        raise


def _drain(pool: Pool, sent: deque) -> None:
    """Take the answers to chunks no longer wanted, so the pool is ready for the next job; a
    child that does not answer in time has the pool given up."""
    if pool.broken or not sent:
        return
    try:
        for _, child, _ in sent:
            if child is not None:
                if not child.conn.poll(DRAIN_TIMEOUT_S):
                    raise TimeoutError
                child.conn.recv()
    except (EOFError, OSError, TimeoutError):
        pool.close()


def _paths(group: list[Any]) -> list[str] | None:
    """The paths of ``group`` for a child, or None if it holds anything else."""
    paths: list[str] = []
    for item in group:
        if isinstance(item, str):
            paths.append(item)
        elif item.path is not None and not (item.error or item.data or item.image is not None):
            paths.append(item.path)
        else:
            return None
    return paths


@atexit.register
def _close_at_exit() -> None:
    pool = _STATE["pool"]
    if pool and pool.pid == os.getpid():
        pool.close()
