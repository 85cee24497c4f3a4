"""Turning command-line inputs (files, folders, globs, '-') into a flat list of media files.

Commands over many inputs (predict, eval on a folder) must report a bad input
and go on with the rest, so problems are returned as ``Source`` entries with
an ``error`` instead of being raised. Output order follows input order, and an
input given twice is listed twice, because the user asked twice.

'-' is standard input, which holds either one encoded image (``cat photo.jpg |``)
or paths, one per line (``find ... |``); its first bytes tell which. A path
list is bytes, as file names are: each line is decoded with the file system's
encoding and surrogate escapes, and a line that names nothing (a NUL byte, more
than PATH_MAX bytes) becomes an error Source for that line alone.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from cnnkit.errors import CnnkitError, InputError
from cnnkit.io.image import IMAGE_EXTENSIONS, read_at_most
from cnnkit.io.video import VIDEO_EXTENSIONS

Kind = Literal["image", "video"]

# The longest path Linux opens (PATH_MAX, counting the terminating NUL): a
# longer line of a path list cannot name a file, and is not kept in memory.
PATH_MAX = 4096


@dataclass(frozen=True)
class Source:
    """One input file; ``kind`` is guessed from the extension (None: neither image nor video).

    ``error`` is set, and the path possibly not a file, when the input could
    not be used: a missing path, a glob matching nothing, an empty folder.
    ``data`` holds an encoded image read from stdin (``path`` is then "-").
    ``path`` is text: a name that is not UTF-8 holds surrogate escapes
    (os.fsdecode), and os.fsencode gives its bytes back.
    """

    path: str
    kind: Kind | None = None
    error: str | None = None
    data: bytes | bytearray | None = field(default=None, repr=False)


def kind_of(path: str | Path) -> Kind | None:
    """'image', 'video' or None, from the extension (case-insensitive)."""
    # os.path rather than pathlib: called once per input, and Path() costs 8 µs.
    ext = os.path.splitext(os.fspath(path).rstrip("/"))[1].lower()
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


def os_error_text(exc: OSError) -> str:
    """Why an OS call on a path failed, in words; a path too long says which limit."""
    if exc.errno == errno.ENAMETOOLONG:
        # Raised for a whole path over PATH_MAX or for one name over NAME_MAX.
        return f"{exc.strerror} (over the system's {PATH_MAX}-byte path limit)"
    return exc.strerror or str(exc)


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
        unreadable.append((exc.filename or folder, os_error_text(exc)))

    for root, dirs, files in os.walk(folder, onerror=on_error):
        hidden.extend(os.path.join(root, d) for d in sorted(dirs) if is_hidden(d))
        # Pruning in place keeps os.walk out of .git, .ipynb_checkpoints and the like.
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        # The folders below ``folder``, once per folder: a path per file is the
        # cost of a walk over a dataset of many thousand files.
        above = Path(os.path.relpath(root, folder)).parts if root != folder else ()
        above = () if above == (".",) else above
        for name in files:
            if is_hidden(name):
                continue
            if extensions is not None and os.path.splitext(name)[1].lower() not in extensions:
                continue
            found.append(((*above, name), os.path.join(root, name)))
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
    try:
        os.lstat(item)
    except FileNotFoundError:
        return [Source(item, kind_of(item), "no such file or folder")]
    except OSError as exc:  # a path too long, a folder on the way that cannot be searched
        return [Source(item, kind_of(item), f"cannot read: {os_error_text(exc)}")]
    except ValueError:  # a NUL byte in a name given as an argument
        return [Source(item, kind_of(item), "no such file or folder")]
    # A FIFO, device or socket, or a symlink to one or to nothing: never opened.
    return [Source(item, kind_of(item), "not a regular file")]


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
# Bytes looked at before deciding that stdin is one image: every signature
# above, and enough of the header after it to hold a control byte (see
# _is_binary). A GIF's is 13 bytes, and the colour table or image descriptor
# after it holds zeros.
_SNIFF_BYTES = 32

# Bytes that no line of a path list holds: C0 controls and DEL, except tab and
# the line ends. Every image format above has one in its first 32 bytes (PNG's
# 0x1A, a JPEG segment length, a GIF's zero aspect byte or colour table).
_CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

STDIN_HINT = "pipe one image (png, jpg, bmp, gif, tif, webp), or paths, one per line"


def _signature_fits(head: bytes, parts: tuple[tuple[int, bytes], ...], whole: bool) -> bool:
    for offset, magic in parts:
        seen = head[offset : offset + len(magic)]
        if seen != (magic if whole else magic[: len(seen)]):
            return False
    return True


def _is_binary(data: bytes) -> bool:
    return _CONTROL_BYTE.search(data) is not None


def looks_like_image(head: bytes) -> bool:
    """Whether ``head``, the first bytes of a stream, start an encoded image.

    The signature must match in full and the first ``_SNIFF_BYTES`` must hold
    a byte that text does not, so that a path list whose first name starts
    like a signature ("GIF89a_logo.png") stays a path list.
    """
    return _is_binary(head[:_SNIFF_BYTES]) and any(
        _signature_fits(head, parts, whole=True) for parts in _IMAGE_SIGNATURES
    )


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


def _skip_line(stream: IO[bytes]) -> None:
    """Read ``stream`` up to and including the next newline, a bounded piece at a time."""
    while True:
        piece = stream.readline(1 << 16)
        if not piece or piece.endswith(b"\n"):
            return


def _binary_lines(head: bytes, stream: IO[bytes]) -> Iterator[bytes | None]:
    """Lines of ``head`` followed by the rest of ``stream``, read one line at a time.

    A line longer than PATH_MAX bytes comes out as None, and is skipped
    without being held: a path list with no newline (``< /dev/zero``, a
    binary file) costs PATH_MAX bytes of memory, not all of it.
    """
    pending = head
    while True:
        cut = pending.find(b"\n")
        if 0 <= cut <= PATH_MAX:
            yield pending[:cut]
            pending = pending[cut + 1 :]
            continue
        if len(pending) > PATH_MAX:
            yield None
            if cut < 0:
                _skip_line(stream)
                pending = b""
            else:
                pending = pending[cut + 1 :]
            continue
        more = stream.readline(PATH_MAX + 1 - len(pending))
        if not more:
            if pending:
                yield pending
            return
        pending += more


def _not_a_list(why: str) -> InputError:
    return InputError(f"stdin is neither an image nor a list of paths ({why})", hint=STDIN_HINT)


def _path_sources(raw: bytes | None, number: int, exts: frozenset[str]) -> list[Source]:
    """What line ``number`` of a path list names, or an error Source when it names nothing.

    A path is bytes: it is decoded as the OS decodes file names (os.fsdecode:
    surrogate escapes for bytes that are not UTF-8), so every name reaches
    the file it names. The first line decides whether stdin is a path list
    at all: binary data there is refused (InputError) before anything is read.
    """
    if raw is None:
        if number == 1:
            raise _not_a_list(f"no newline in its first {PATH_MAX} bytes")
        return [Source(f"stdin line {number}", None, f"longer than {PATH_MAX} bytes: not a path")]
    if number == 1 and _is_binary(raw.rstrip(b"\r")):
        raise _not_a_list("binary data on line 1")
    if b"\x00" in raw:
        return [Source(f"stdin line {number}", None, "holds a NUL byte: not a path")]
    line = raw.strip()
    return _expand_one(os.fsdecode(line), exts) if line else []


def _stdin_sources(stdin: Any, exts: frozenset[str]) -> Iterator[Source]:
    """What '-' names: one image read whole, or the paths on stdin expanded line by line.

    The image is read no further than ``max_image_bytes()``; beyond it, it
    becomes an error Source rather than the end of memory.
    """
    if stdin is None:  # started with stdin closed (`<&-`): nothing to read
        return
    binary = getattr(stdin, "buffer", None)
    if binary is None:  # a text stream (io.StringIO): paths only
        for text in stdin:
            text = text.strip()
            if text:
                yield from _expand_one(text, exts)
        return
    head = _read_head(binary)
    if looks_like_image(head):
        try:
            yield Source("-", "image", data=read_at_most(binary, "-", head))
        except CnnkitError as exc:
            yield Source("-", "image", exc.message)
        return
    for number, raw in enumerate(_binary_lines(head, binary), 1):
        yield from _path_sources(raw, number, exts)


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
