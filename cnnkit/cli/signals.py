"""Native calls stopped as soon as SIGINT or SIGTERM arrives (the command line only)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


def watch_signals() -> Any:
    """Stop native calls (cnnkit.stopping) as soon as SIGINT or SIGTERM arrives; returns the undo.

    The handlers themselves run only when the main thread is back in the
    interpreter, which a long ONNX Runtime run can delay for hours. Python's
    C-level handler writes each signal's number to the wakeup file descriptor
    at once: a thread reading it stops the native call, and the handler then
    runs when that call returns (within milliseconds: ONNX Runtime checks
    between two nodes).
    """
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main interpreter, or Windows (sockets only)
        os.close(read_fd)
        os.close(write_fd)
        return None
    watcher = threading.Thread(
        target=_stop_on_signals, args=(read_fd,), name="cnnkit-signals", daemon=True
    )
    watcher.start()

    def undo() -> None:
        signal.set_wakeup_fd(previous)
        os.close(write_fd)  # the watcher reads the end of the pipe and returns
        watcher.join(1.0)
        if not watcher.is_alive():
            os.close(read_fd)

    return undo


def _stop_on_signals(read_fd: int) -> None:
    from cnnkit.stopping import stop_all

    wanted = {int(signal.SIGINT), int(signal.SIGTERM)}
    while True:
        try:
            numbers = os.read(read_fd, 64)
        except OSError:
            return
        if not numbers:
            return
        if wanted.intersection(numbers):
            stop_all()
