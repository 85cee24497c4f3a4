"""What the command line shows on stderr: the ``cnnkit`` logger's notes, and progress bars.

Notes print as they are (names escaped by cnnkit.textout.shown, one line
each), warnings after ``warning:``. ``--quiet`` silences both. Progress bars
(rich) appear only when stderr is a terminal; rich honours ``NO_COLOR``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from cnnkit import console
from cnnkit.textout import shown

_state: dict[str, Any] = {"console": None, "handler": None, "found": (logging.NOTSET, True)}


class StderrLines(logging.Handler):
    """One line on stderr per message (stderr looked up at each message)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = shown(record.getMessage())
            if record.levelno >= logging.WARNING:
                text = f"warning: {text}"
            sys.stderr.write(f"{text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed or gone: nothing left to tell
            pass


def show_messages(quiet: bool = False) -> None:
    """Show the library's notes and warnings on stderr (none with ``quiet``), and progress."""
    log = console.logger
    if _state["handler"] is None:
        _state["found"] = (log.level, log.propagate)  # given back by stop_showing_messages
        _state["handler"] = StderrLines()
        log.addHandler(_state["handler"])
    # The command line owns this process's stderr: the messages are shown here
    # once, not again by handlers a library set on the root logger.
    log.propagate = False
    # CNNKIT_DEBUG=1 adds the notes of choices not said on every run (console.detail).
    level = logging.DEBUG if os.environ.get("CNNKIT_DEBUG") else logging.INFO
    log.setLevel(logging.CRITICAL + 1 if quiet else level)
    console.set_progress(None if quiet or not _is_terminal() else _rich_track)


def stop_showing_messages() -> None:
    """Give the ``cnnkit`` logger back as a library leaves it (after a command run in-process)."""
    log = console.logger
    if _state["handler"] is not None:
        log.removeHandler(_state["handler"])
        _state["handler"] = None
        log.setLevel(_state["found"][0])
        log.propagate = _state["found"][1]
    console.set_progress(None)


def _is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def stderr_console() -> Any:  # -> rich.console.Console
    """The rich Console on stderr, made on first use: importing rich costs ~40 ms,
    which plain status lines do not need."""
    if _state["console"] is None:
        from rich.console import Console

        _state["console"] = Console(stderr=True, highlight=False)
    return _state["console"]


def _rich_track(items: Iterable[Any], total: int | None, description: str) -> Iterator[Any]:
    from rich.progress import track as rich_track

    yield from rich_track(items, total=total, description=description, console=stderr_console())


def record_error_line(record: dict[str, Any]) -> str:
    """The ``error:`` line for an error record of predict or explain, naming its input once.

    Most reasons name the file already ("x.png is a device, not an image
    file", "cannot read x.png: Permission denied", "stdin is 30000×30000
    pixels..."): those are the line as they are, as in the record's
    ``error``. A reason that does not ("no such file or folder") gets the
    path in front.
    """
    path, error = record.get("path"), str(record["error"])
    if path is None or _names_input(error, "stdin" if path == "-" else str(path)):
        return f"error: {shown(error)}"
    return f"error: {shown(path)}: {shown(error)}"


def _names_input(error: str, name: str) -> bool:
    # At the start ("x.png is ...", "x.png: the video ..."), or where a reason
    # quotes it ("cannot read x.png: ...", "no such file: x.png"); a name that
    # is only a word of the reason ("4" in "clips of 4 frames") does not count.
    if error == name or error.startswith((f"{name} ", f"{name}:")):
        return True
    return f" {name}:" in error or error.endswith(f" {name}")
