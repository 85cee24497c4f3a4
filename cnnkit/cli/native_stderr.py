"""C libraries' own warnings kept out of a command's stderr; crash reports kept in.

libjpeg ("Corrupt JPEG data: 69 extraneous bytes before marker 0x95"),
libpng ("libpng warning: iCCP: too short"), libtiff and FFmpeg print their
warnings with ``fprintf(stderr, ...)``, which no OpenCV log level reaches:
they came before cnnkit's one ``error:`` line, or before the result of an
image that decoded all the same. cnnkit says itself what is wrong with an
input, so while a command runs, C's ``stderr`` FILE* points at /dev/null.

File descriptor 2 is left alone: Python's sys.stderr (every cnnkit line),
C++'s std::cerr (bound to the FILE* it had at start-up) and glibc's own
fatal messages still reach the user. A crash message that went through the
FILE* ("terminate called after ...") would be lost, so faulthandler writes a
crash's Python traceback to a copy of fd 2 first.

Only the command-line process does this (cnnkit.cli.main), never the
library; only with glibc, whose ``stderr`` is a variable that can be set
(macOS calls it ``__stderrp``, musl's is constant): elsewhere nothing
changes. CNNKIT_DEBUG=1 leaves both alone, so the libraries' lines show.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
from collections.abc import Callable
from typing import Any

# One FILE* on /dev/null for the whole process, never closed: a decode thread
# that outlives a command run in a Python process may still write to it.
_DEVNULL: dict[str, int | None] = {"file": None}


def _glibc_stderr() -> tuple[Any, ctypes.c_void_p] | None:
    """(libc, the ``stderr`` variable) under glibc, else None."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (AttributeError, ValueError, OSError):
        return None  # not glibc (macOS, musl, Windows)
    try:
        # The process's global scope, not libc.so.6 alone: where the executable
        # holds a copy of the variable (a statically linked libpython), every
        # library's fprintf(stderr) reads that copy.
        libc = ctypes.CDLL(None)
        variable = ctypes.c_void_p.in_dll(libc, "stderr")
    except (OSError, ValueError, AttributeError):
        return None
    return libc, variable


def _devnull_file(libc: Any) -> int | None:
    if _DEVNULL["file"] is None:
        fopen = libc.fopen
        fopen.restype = ctypes.c_void_p
        fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        _DEVNULL["file"] = fopen(os.devnull.encode(), b"w") or None
    return _DEVNULL["file"]


def _crash_tracebacks() -> Callable[[], None]:
    """Enable faulthandler on a copy of fd 2 unless something already did; how to undo it."""
    if faulthandler.is_enabled():  # python -X faulthandler, pytest: theirs stays
        return lambda: None
    try:
        stream = open(os.dup(2), "w", closefd=True)  # noqa: SIM115 (kept until undone)
    except OSError:
        return lambda: None  # fd 2 is closed: no one to tell
    faulthandler.enable(file=stream)

    def undo() -> None:
        faulthandler.disable()
        stream.close()

    return undo


def quiet_native_warnings() -> Callable[[], None]:
    """Send C's ``stderr`` to /dev/null, after enabling crash tracebacks; how to undo both.

    The undo puts back the FILE* found, for a command run inside a Python
    process (a test, a notebook's ``cnnkit.cli.main()``).
    """
    if os.environ.get("CNNKIT_DEBUG"):
        return lambda: None
    found = _glibc_stderr()
    if found is None:
        return lambda: None
    libc, variable = found
    undo_tracebacks = _crash_tracebacks()
    devnull = _devnull_file(libc)
    if devnull is None:
        undo_tracebacks()
        return lambda: None
    previous = variable.value
    variable.value = devnull

    def undo() -> None:
        variable.value = previous
        undo_tracebacks()

    return undo
