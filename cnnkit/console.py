"""Messages of the library: notes and warnings go to the ``logging`` logger ``cnnkit``.

The library prints nothing itself. Without configured logging the messages
go nowhere (``cnnkit/__init__`` gives the logger a NullHandler); the command
line shows them on stderr (cnnkit.cli.output), and a Python caller sees them
with e.g. ``logging.basicConfig(level=logging.INFO)``. Progress bars appear
only when the command line turns them on for a terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger("cnnkit")

# A function(items, total, description) -> iterator that shows progress, set by
# the command line on a terminal (None: no progress shown).
_progress: dict[str, Callable[..., Iterator[Any]] | None] = {"track": None}


def info(message: str) -> None:
    """A progress or status note (logging INFO)."""
    logger.info(message)


def detail(message: str) -> None:
    """A choice made that needs no word on every run, but must be findable (logging DEBUG;
    the command line shows it with ``CNNKIT_DEBUG=1``)."""
    logger.debug(message)


def warn(message: str) -> None:
    """A warning (logging WARNING)."""
    logger.warning(message)


def is_quiet() -> bool:
    """Whether notes are shown nowhere (no handler takes INFO messages of ``cnnkit``)."""
    return not logger.isEnabledFor(logging.INFO)


def set_progress(track: Callable[..., Iterator[Any]] | None) -> None:
    """Show progress with ``track(items, total=, description=)``, or not at all (None)."""
    _progress["track"] = track


def progress_enabled() -> bool:
    return _progress["track"] is not None


def track(items: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
    """Iterate ``items``, with a progress bar where one was asked for (set_progress)."""
    show = _progress["track"]
    if show is None:
        yield from items
        return
    yield from show(items, total=total, description=description)
