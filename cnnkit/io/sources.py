"""Turning command-line inputs (files, folders, globs, '-') into a flat list of media files.

Commands over many inputs (predict, eval on a folder) must report a bad input
and go on with the rest, so problems are returned as ``Source`` entries with
an ``error`` instead of being raised. Output order follows input order, and an
input given twice is listed twice, because the user asked twice.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from cnnkit.io.image import IMAGE_EXTENSIONS
from cnnkit.io.video import VIDEO_EXTENSIONS

Kind = Literal["image", "video"]


@dataclass(frozen=True)
class Source:
    """One input file; ``kind`` is guessed from the extension (None: neither image nor video).

    ``error`` is set, and the path possibly not a file, when the input could
    not be used: a missing path, a glob matching nothing, an empty folder.
    """

    path: str
    kind: Kind | None = None
    error: str | None = None


def kind_of(path: str | Path) -> Kind | None:
    """'image', 'video' or None, from the extension (case-insensitive)."""
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def _normalise(extensions: Iterable[str] | None) -> frozenset[str]:
    if extensions is None:
        return IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    return frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def _listed(extensions: frozenset[str]) -> str:
    return ", ".join(sorted(extensions))


def _walk(folder: str, extensions: frozenset[str]) -> list[Source]:
    """Media files under ``folder``, recursively, in sorted order, hidden entries skipped."""
    found: list[tuple[tuple[str, ...], str]] = []
    problems: list[Source] = []

    def on_error(exc: OSError) -> None:
        problems.append(Source(exc.filename or folder, None, f"cannot read folder: {exc.strerror}"))

    for root, dirs, files in os.walk(folder, onerror=on_error):
        # Pruning in place keeps os.walk out of .git, .ipynb_checkpoints and the like.
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in extensions:
                continue
            path = os.path.join(root, name)
            # Sort on path components so that "a/b.png" and "a-b.png" order the same on every OS.
            found.append((Path(os.path.relpath(path, folder)).parts, path))
    found.sort()
    sources = [Source(path, kind_of(path)) for _, path in found]
    if not sources and not problems:
        problems.append(
            Source(folder, None, f"no image or video files in folder ({_listed(extensions)})")
        )
    return problems + sources


def _glob(pattern: str, extensions: frozenset[str]) -> list[Source]:
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        return [Source(pattern, None, "no files match")]
    sources: list[Source] = []
    for match in matches:
        if os.path.isdir(match):
            # A pattern such as data/* names folders the way the shell would: walk them.
            sources.extend(s for s in _walk(match, extensions) if s.error is None)
        elif Path(match).suffix.lower() in extensions:
            sources.append(Source(match, kind_of(match)))
    if not sources:
        return [Source(pattern, None, f"no image or video files match ({_listed(extensions)})")]
    return sources


def _expand_one(item: str, extensions: frozenset[str]) -> list[Source]:
    if os.path.isfile(item):
        # An explicit file is kept whatever its extension: the caller decides
        # what to do with kind None (usually: try to read it, report the error).
        return [Source(item, kind_of(item))]
    if os.path.isdir(item):
        return _walk(item, extensions)
    if glob.has_magic(item):
        return _glob(item, extensions)
    if os.path.lexists(item):  # a broken symlink, a socket, ...
        return [Source(item, kind_of(item), "not a regular file")]
    return [Source(item, kind_of(item), "no such file or folder")]


def expand_sources(
    inputs: Sequence[str],
    stdin: TextIO | None = None,
    extensions: Iterable[str] | None = None,
) -> list[Source]:
    """Expand files, folders, globs and '-' into media files, in input order.

    - a file is kept as given, its kind guessed from the extension;
    - a folder is walked recursively, sorted, skipping hidden files and
      folders and keeping only ``extensions`` (default: every image and video
      extension; matched case-insensitively);
    - a glob (``*``, ``?``, ``[...]``, ``**``) is expanded and sorted, keeping
      only ``extensions``; folders it matches are walked;
    - ``-`` reads paths from ``stdin`` (default ``sys.stdin``), one per line,
      blank lines ignored, each expanded as above; stdin is read once;
    - a missing path or an empty match becomes a Source with ``error`` set.
    """
    exts = _normalise(extensions)
    stdin_lines: list[str] | None = None
    sources: list[Source] = []
    for item in inputs:
        if item == "-":
            if stdin_lines is None:
                stream = sys.stdin if stdin is None else stdin
                stdin_lines = [line.strip() for line in stream.read().splitlines()]
            for line in stdin_lines:
                if line:
                    sources.extend(_expand_one(line, exts))
            continue
        sources.extend(_expand_one(item, exts))
    return sources
