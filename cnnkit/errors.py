"""Errors a user can fix.

The core raises these; only the CLI turns them into ``error: ... (hint: ...)``
on stderr and exit status 1. Every message names the thing that is wrong, and
the hint says what to do about it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar


class CnnkitError(Exception):
    """An error caused by input the user can change."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message

    def spelled_for_python(self, names: Mapping[str, str]) -> CnnkitError:
        """This error with its command-line options (``--top-k``) named as in Python (``top_k``).

        ``names``: option (without dashes) -> the Python parameter; options not
        in it, and anything between backticks (a command to run), stay as they are.
        """

        def rename(text: str | None) -> str | None:
            if text is None:
                return None
            parts = text.split("`")  # odd parts are quoted commands
            for i in range(0, len(parts), 2):
                parts[i] = _OPTION.sub(lambda m: _python_spelling(m, names), parts[i])
            return "`".join(parts)

        message, hint = rename(self.message), rename(self.hint)
        if (message, hint) == (self.message, self.hint):
            return self
        renamed = self.__class__.__new__(self.__class__)
        renamed.__dict__.update(self.__dict__)
        CnnkitError.__init__(renamed, message or "", hint)
        return renamed


_OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?: (-?\d[\w.+-]*))?")


def _python_spelling(match: re.Match[str], names: Mapping[str, str]) -> str:
    """``--epochs 10`` as ``epochs=10``, ``--freeze`` as ``freeze``; other options as they are."""
    name = names.get(match[1])
    if name is None:
        return match[0]
    return f"{name}={match[2]}" if match[2] else name


F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def python_spelling(names: Mapping[str, str]) -> Iterator[None]:
    """Inside the block, a CnnkitError names options as ``names`` maps them (see below)."""
    try:
        yield
    except CnnkitError as exc:
        renamed = exc.spelled_for_python(names)
        if renamed is exc:
            raise
        raise renamed.with_traceback(exc.__traceback__) from None


def python_names(aliases: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Decorate a library function so that its errors name its parameters, not CLI options.

    The core's messages speak of ``--top-k`` (the command line is their first
    reader); a caller of ``predict(top_k=0)`` reads ``top_k``. Each parameter
    ``p_q`` answers to ``--p-q``; ``aliases`` adds options spelled otherwise
    (``{"class": "target"}``).
    """

    def decorate(fn: F) -> F:
        names = {p.replace("_", "-"): p for p in inspect.signature(fn).parameters}
        names.update(aliases or {})

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with python_spelling(names):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class InputError(CnnkitError):
    """A file, folder or value given on the command line cannot be used."""


class ReadError(InputError):
    """A file exists but cannot be decoded as what it claims to be."""


class KernelError(CnnkitError):
    """A kernel name or spec is invalid."""


class ModelError(CnnkitError):
    """Unknown model name or arguments a model cannot take."""


class DatasetError(CnnkitError):
    """Unknown dataset, missing files, or a folder that holds no usable data."""


class CheckpointError(CnnkitError):
    """A file is not a cnnkit checkpoint, is damaged, or would need code to load."""


class DeviceError(CnnkitError):
    """A device was asked for that this machine does not have."""


class TrainingError(CnnkitError):
    """Training cannot go on with these settings (the loss became NaN or infinite)."""


def close_match_hint(name: str, known: Iterable[str], what: str = "name") -> str:
    """Return "did you mean X?" for a misspelt ``name``, else the list of known names."""
    known = sorted(known)
    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if matches:
        return f"did you mean '{matches[0]}'?"
    plural = what + ("es" if what.endswith("s") else "s")
    if len(known) > 20:
        return f"{len(known)} known {plural}, e.g. {', '.join(known[:10])}"
    return f"known {plural}: {', '.join(known)}"
