"""Turning command-line inputs (files, folders, globs, '-') into a flat list of media files.

Commands over many inputs (predict, eval on a folder) must report a bad input
and go on with the rest, so problems are returned as ``Source`` entries with
an ``error`` instead of being raised. Output order follows input order, and an
input given twice is listed twice, because the user asked twice.

'-' is standard input, which holds either one encoded image (``cat photo.jpg |``)
or paths, one per line (``find ... |``); its first bytes tell which.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from cnnkit.errors import InputError
from cnnkit.io.image import IMAGE_EXTENSIONS
from cnnkit.io.video import VIDEO_EXTENSIONS

Kind = Literal["image", "video"]


@dataclass(frozen=True)
class Source:
    """One input file; ``kind`` is guessed from the extension (None: neither image nor video).

    ``error`` is set, and the path possibly not a file, when the input could
    not be used: a missing path, a glob matching nothing, an empty folder.
    ``data`` holds an encoded image read from stdin (``path`` is then "-").
    """

    path: str
    kind: Kind | None = None
    error: str | None = None
    data: bytes | None = field(default=None, repr=False)


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


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is one that walks skip: dot-names and ``__pycache__``."""
    return name.startswith(".") or name == "__pycache__"


@dataclass
class FolderWalk:
    """What ``walk_media`` found: ``files``, the ``hidden`` folders it skipped (not
    descended into: ``.git``, ``.ipynb_checkpoints``), and ``unreadable`` folders
    as (path, reason) pairs."""

    files: list[str]
    hidden: list[str]
    unreadable: list[tuple[str, str]]


def walk_media(folder: str | Path, extensions: frozenset[str] | None = None) -> FolderWalk:
    """Files under ``folder``, recursively, hidden files and folders skipped.

    ``extensions`` (lower case, with the dot) keeps only those; None keeps every
    file. Files are sorted on their path components below ``folder``, so that
    "a/b.png" and "a-b.png" order the same on every OS; paths start with
    ``folder`` as given.
    """
    folder = str(folder)
    found: list[tuple[tuple[str, ...], str]] = []
    hidden: list[str] = []
    unreadable: list[tuple[str, str]] = []

    def on_error(exc: OSError) -> None:
        unreadable.append((exc.filename or folder, exc.strerror or str(exc)))

    for root, dirs, files in os.walk(folder, onerror=on_error):
        hidden.extend(os.path.join(root, d) for d in sorted(dirs) if is_hidden(d))
        # Pruning in place keeps os.walk out of .git, .ipynb_checkpoints and the like.
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        for name in files:
            if is_hidden(name):
                continue
            if extensions is not None and Path(name).suffix.lower() not in extensions:
                continue
            path = os.path.join(root, name)
            found.append((Path(os.path.relpath(path, folder)).parts, path))
    found.sort()
    return FolderWalk([path for _, path in found], hidden, unreadable)


def _walk(folder: str, extensions: frozenset[str]) -> list[Source]:
    """Media files under ``folder`` as Sources, after Sources for the folders that failed."""
    walk = walk_media(folder, extensions)
    problems = [Source(path, None, f"cannot read folder: {why}") for path, why in walk.unreadable]
    sources = [Source(path, kind_of(path)) for path in walk.files]
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


# Leading bytes of the image formats OpenCV decodes, as (offset, bytes) pairs
# that must all match. Those that are plain ASCII ("BM", "RIFF") carry a
# second, binary part, so that a path such as "BMW/car.png" stays a path.
_IMAGE_SIGNATURES: tuple[tuple[tuple[int, bytes], ...], ...] = (
    ((0, b"\x89PNG\r\n\x1a\n"),),
    ((0, b"\xff\xd8\xff"),),  # JPEG
    ((0, b"GIF87a"),),
    ((0, b"GIF89a"),),
    ((0, b"II*\x00"),),  # TIFF, little-endian
    ((0, b"MM\x00*"),),  # TIFF, big-endian
    ((0, b"II+\x00"),),  # BigTIFF
    ((0, b"MM\x00+"),),
    ((0, b"RIFF"), (8, b"WEBP")),
    ((0, b"BM"), (6, b"\x00\x00\x00\x00")),  # BMP: its two reserved fields are zero
)
_SNIFF_BYTES = 12  # enough for every signature above

STDIN_HINT = "pipe one image (png, jpg, bmp, gif, tif, webp), or paths, one per line"


def _signature_fits(head: bytes, parts: tuple[tuple[int, bytes], ...], whole: bool) -> bool:
    for offset, magic in parts:
        seen = head[offset : offset + len(magic)]
        if seen != (magic if whole else magic[: len(seen)]):
            return False
    return True


def looks_like_image(head: bytes) -> bool:
    """Whether ``head``, the first bytes of a stream, start an encoded image."""
    return any(_signature_fits(head, parts, whole=True) for parts in _IMAGE_SIGNATURES)


def _could_become_image(head: bytes) -> bool:
    return any(_signature_fits(head, parts, whole=False) for parts in _IMAGE_SIGNATURES)


def _read_head(stream: IO[bytes]) -> bytes:
    """The first bytes of ``stream``: enough to tell an image, or a first full line of paths.

    Reads no further than needed, so `find ... | cnnkit predict -` still
    answers its first path before the second is written.
    """
    read = getattr(stream, "read1", stream.read)
    head = b""
    while len(head) < _SNIFF_BYTES:
        if b"\n" in head and not _could_become_image(head):
            break
        chunk = read(8192)
        if not chunk:
            break
        head += chunk
    return head


def _binary_lines(head: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of ``head`` followed by the rest of ``stream``, read one line at a time."""
    pending = head
    while True:
        cut = pending.find(b"\n")
        if cut >= 0:
            yield pending[:cut]
            pending = pending[cut + 1 :]
            continue
        more = stream.readline()
        if not more:
            if pending:
                yield pending
            return
        pending += more


def _path_line(raw: bytes, number: int) -> str:
    """One line of a path list, as text; binary data is refused rather than shown as garbage."""
    try:
        if b"\x00" in raw:
            raise ValueError
        return raw.decode("utf-8")
    except ValueError:
        raise InputError(
            f"stdin is neither an image nor a list of paths (binary data on line {number})",
            hint=STDIN_HINT,
        ) from None


def _stdin_sources(stdin: Any, exts: frozenset[str]) -> Iterator[Source]:
    """What '-' names: one image read whole, or the paths on stdin expanded line by line."""
    if stdin is None:  # started with stdin closed (`<&-`): nothing to read
        return
    binary = getattr(stdin, "buffer", None)
    if binary is None:  # a text stream (io.StringIO): paths only
        lines: Iterable[str] = stdin
    else:
        head = _read_head(binary)
        if looks_like_image(head):
            yield Source("-", "image", data=head + binary.read())
            return
        lines = (_path_line(raw, n) for n, raw in enumerate(_binary_lines(head, binary), 1))
    for line in lines:
        line = line.strip()
        if line:
            yield from _expand_one(line, exts)


def iter_sources(
    inputs: Sequence[str],
    stdin: IO[Any] | None = None,
    extensions: Iterable[str] | None = None,
) -> Iterator[Source]:
    """expand_sources, lazily: paths on stdin are expanded as their lines arrive."""
    exts = _normalise(extensions)
    # stdin can be read once; a second '-' repeats what the first one found.
    seen: list[Source] | None = [] if inputs.count("-") > 1 else None
    read = False
    for item in inputs:
        if item != "-":
            yield from _expand_one(item, exts)
        elif read:
            yield from seen or []
        else:
            read = True
            for source in _stdin_sources(sys.stdin if stdin is None else stdin, exts):
                if seen is not None:
                    seen.append(source)
                yield source


def expand_sources(
    inputs: Sequence[str],
    stdin: IO[Any] | None = None,
    extensions: Iterable[str] | None = None,
) -> list[Source]:
    """Expand files, folders, globs and '-' into media files, in input order.

    - a file is kept as given, its kind guessed from the extension;
    - a folder is walked recursively, sorted, skipping hidden files and
      folders and keeping only ``extensions`` (default: every image and video
      extension; matched case-insensitively);
    - a glob (``*``, ``?``, ``[...]``, ``**``) is expanded and sorted, keeping
      only ``extensions``; folders it matches are walked;
    - ``-`` is standard input (default ``sys.stdin``), read once: one encoded
      image (PNG, JPEG, BMP, GIF, TIFF or WebP bytes), which becomes a Source
      with path "-" and ``data``; otherwise paths, one per line, blank lines
      ignored, each expanded as above (InputError when it is binary data);
    - a missing path or an empty match becomes a Source with ``error`` set.
    """
    return list(iter_sources(inputs, stdin, extensions))
