"""Native calls that another thread can stop: how SIGINT and SIGTERM reach them.

Python runs a signal handler only when the main thread is back in the
interpreter, and a call into native code (an ONNX Runtime run of a slow or
hostile graph) can keep it away for hours. Code that makes such a call
registers, for the time of the call, a function that makes it return early;
whoever handles the signals (the CLI) calls ``stop_all()`` from another
thread. Nothing here installs a signal handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_stops: dict[int, Callable[[], None]] = {}
_next = [0]


class CallStopped(KeyboardInterrupt):
    """A native call returned early because ``stop_all()`` was called.

    A KeyboardInterrupt, as the signal that asked for it: everything that
    cleans up on Ctrl-C does the same here.
    """


@contextmanager
def stoppable(stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, ``stop_all()`` calls ``stop`` (from whatever thread calls it)."""
    with _lock:
        _next[0] += 1
        key = _next[0]
        _stops[key] = stop
    try:
        yield
    finally:
        with _lock:
            del _stops[key]


def stop_all() -> None:
    """Make every registered native call return as soon as it can."""
    with _lock:
        stops = list(_stops.values())
    for stop in stops:
        stop()
