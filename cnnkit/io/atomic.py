"""Atomic output files: a killed run never leaves a half-written file under the final name.

Everything is first written to a temporary file in the destination folder (so
the final ``os.replace`` is a rename on the same file system, which is atomic)
and renamed on success. The temporary name keeps the real extension last,
``.name.k3j9x.tmp.png``, because OpenCV chooses its encoder and container from
the extension of the file it is asked to write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnkit.errors import InputError

# mkstemp creates files readable by the owner only; outputs should get the
# permissions any other new file would (0o666 minus the umask). Reading the
# umask means setting it, so do it once, at import time.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# What to do about the OSErrors a write can meet; the rest get the generic hint.
_WRITE_HINTS = {
    errno.ENOSPC: "free some disk space, or write to another disk",
    errno.EDQUOT: "free some space within your disk quota, or write elsewhere",
    errno.EFBIG: "the file is too large for this file system: write elsewhere",
    errno.EROFS: "the file system is read-only: choose a folder you can write to",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
}


def write_error(path: Path, exc: OSError) -> InputError:
    """The InputError for an OSError met while writing ``path``: the file and the reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _WRITE_HINTS.get(exc.errno or 0, "check the folder and the disk, then try again")
    return InputError(f"cannot write {path}: {reason}", hint=hint)


def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest ancestor that does."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _missing_folder_error(path: Path, folder: Path) -> InputError:
    """Why ``folder``, which ``path`` needs, is not there: a file in the way, or missing."""
    blocking = _nearest_existing(folder)
    if not blocking.is_dir():
        return InputError(
            f"cannot write {path}: {blocking} is a file, not a folder",
            hint=f"give a path inside a folder, or move {blocking} out of the way",
        )
    return InputError(
        f"cannot write {path}: folder {folder} does not exist",
        hint=f"create it first (mkdir -p {folder})",
    )


def check_output_path(path: str | Path) -> None:
    """InputError unless ``path`` can be written: its folder exists and it is not a folder.

    Commands call it before long work (an evaluation) so that a typo in an
    output path is reported at once, not after the results are computed.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise _missing_folder_error(path, folder)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder", hint="give a file name")


def make_folder(folder: str | Path, what: str = "folder") -> Path:
    """Create ``folder`` and its parents if missing; an OSError becomes an InputError.

    ``what`` names the folder in messages (an option such as ``--feature-maps``).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{what} {folder} is a file, not a folder", hint="give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = _nearest_existing(folder)
        raise InputError(
            f"cannot create {what} {folder}: {blocking} is a file, not a folder",
            hint=f"give a folder path that does not go through the file {blocking}",
        ) from None
    except PermissionError:
        raise InputError(
            f"cannot create {what} {folder}: permission denied",
            hint="choose a folder you can write to",
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        hint = _WRITE_HINTS.get(exc.errno or 0, "check the path and the disk, then try again")
        raise InputError(f"cannot create {what} {folder}: {reason}", hint=hint) from None
    return folder


@contextmanager
def atomic_output(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write to; it becomes ``path`` when the block exits cleanly.

    The temporary file is created (empty) in the same folder as ``path`` and
    ends with ``suffix`` (default: the extension of ``path``). On any
    exception, KeyboardInterrupt included, it is removed and ``path`` is left
    untouched; an OSError writing or renaming it (disk full, read-only file
    system, quota) becomes an InputError naming ``path`` and the reason.
    """
    path = Path(path)
    check_output_path(path)
    ext = path.suffix if suffix is None else suffix
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{ext}", dir=path.parent)
    except PermissionError:
        raise InputError(
            f"cannot write {path}: permission denied",
            hint=f"choose a folder you can write to instead of {path.parent}",
        ) from None
    except OSError as exc:  # read-only file system, no space or inodes left
        raise write_error(path, exc) from None
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_UMASK)
        os.replace(temp, path)
    except OSError as exc:
        _discard(temp)
        # A full disk, a quota or a file system turned read-only while writing or
        # renaming; an OSError about another file (an input read inside the block)
        # is not about this output, and goes on as it is.
        about = exc.filename
        if about is not None and os.fspath(about) not in (name, str(path)):
            raise
        raise write_error(path, exc) from None
    except BaseException:
        _discard(temp)
        raise


def _discard(temp: Path) -> None:
    # On a file system that turned read-only even this can fail; the error
    # being raised says what went wrong, and a hidden .tmp file is all that is left.
    with contextlib.suppress(OSError):
        temp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as temp:
        temp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as temp:
        temp.write_text(text, encoding=encoding)
