"""Errors a user can fix.

The core raises these; only the CLI turns them into ``error: ... (hint: ...)``
on stderr and exit status 1. Every message names the thing that is wrong, and
the hint says what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
