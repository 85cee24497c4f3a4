"""Atomic output files: a killed run never leaves a half-written file under the final name.

Everything is first written to a temporary file in the destination folder (so
the final ``os.replace`` is a rename on the same file system, which is atomic)
and renamed on success. The temporary name keeps the real extension last,
``.out.cnnkit-3f2a9c01-4242-81273645-k3j9xq0a.tmp.png``, because OpenCV
chooses its encoder and container from the extension of the file it is asked
to write, and it names its owner: a token of the host (and PID namespace),
the process id and the process's start time. A run killed with SIGKILL (or
by the OOM killer, or a power cut) cannot remove its temporary file, so the
next cnnkit run that writes into the same folder removes those whose owner
process is gone (:func:`sweep_stale_temps`); the start time tells a reused
process id from the owner.

Why names and not Linux's ``O_TMPFILE`` + ``linkat`` (an unnamed file that
vanishes with its process): OpenCV's VideoWriter and torch.save are given a
path, not a file descriptor, and O_TMPFILE is Linux-only and missing on some
file systems (NFS, older overlayfs), where cnnkit must still write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import tempfile
import threading
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


# ---------------------------------------------------------------------------
# temporary names that say who owns them, and the sweep of dead owners' files
# ---------------------------------------------------------------------------

# ".<stem>.cnnkit-<host>-<pid>-<start>-<8 of mkstemp's random characters>.tmp<ext>"
_TEMP_NAME = re.compile(
    r"\.(?P<stem>.*)\.cnnkit-(?P<host>[0-9a-f]{8})-(?P<pid>[1-9][0-9]{0,9})"
    r"-(?P<start>[0-9]{1,20})-[a-z0-9_]{8}\.tmp(?:\.[^.]*)?",
    re.DOTALL,
)

# The stem in a temporary name is cut to this many bytes, so that the name stays
# within the 255 bytes a file name may have.
_STEM_BYTES = 120


def _proc_start_time(pid: int | str) -> int | None:
    """When process ``pid`` started (clock ticks after boot, /proc/PID/stat field 22).

    None when there is no such process; OSError or ValueError when /proc cannot tell.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces and ")".
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[22 - 3])


def _host_token() -> str:
    """8 hex digits for this host and PID namespace: process ids are only compared within one.

    The namespace counts because a container may share the host's name (host
    networking) and a folder, while its process ids mean other processes.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    text = f"{socket.gethostname()}\0{namespace}"
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


class _Owner:
    """This process as temporary names record it: host token, pid, start time (0: unknown).

    Computed again after a fork (DataLoader workers, DDP ranks have their own pid).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.host = _host_token()
        try:
            self.start = _proc_start_time("self") or 0
        except (OSError, ValueError, IndexError):
            self.start = 0


_owner: _Owner | None = None
_swept: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the folders swept by this process
_swept_lock = threading.Lock()


def _me() -> _Owner:
    global _owner
    if _owner is None or _owner.pid != os.getpid():
        _owner = _Owner()
    return _owner


def temp_prefix(path: Path) -> str:
    """The part of a temporary name for ``path`` before mkstemp's random characters."""
    me = _me()
    stem = os.fsdecode(os.fsencode(path.stem)[:_STEM_BYTES])
    return f".{stem}.cnnkit-{me.host}-{me.pid}-{me.start}-"


def _owner_alive(pid: int, start: int) -> bool:
    """Whether the process that made a temporary file may still be writing it.

    Where /proc cannot tell, the owner is taken to be alive: a file is only
    ever removed when its owner is known to be gone.
    """
    if os.path.exists("/proc/self/stat"):
        try:
            now = _proc_start_time(pid)
        except (OSError, ValueError, IndexError):
            return True
        return now is not None and (start == 0 or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user's process
        return True
    return True


def sweep_stale_temps(folder: str | Path) -> list[str]:
    """Remove the temporary files in ``folder`` that killed cnnkit runs left; return their names.

    Only names of cnnkit's own pattern, made on this host, that are regular
    files (never followed symlinks) owned by this user, and whose owner
    process is gone. Each folder is swept once per process; any error while
    sweeping leaves the file where it is.
    """
    removed: list[str] = []
    me = _me()
    try:
        info = os.stat(folder)
        key = (info.st_dev, info.st_ino)
        with _swept_lock:
            if key in _swept:
                return removed
            _swept.add(key)
        with os.scandir(folder) as entries:
            for entry in entries:
                if _is_stale(entry, me):
                    with contextlib.suppress(OSError):
                        os.unlink(
                            entry.path
                        )  # a symlink put there meanwhile is unlinked, not followed
                        removed.append(entry.name)
    except (OSError, ValueError):
        pass  # a folder that cannot be listed is no reason not to write the output
    return removed


def _is_stale(entry: os.DirEntry, me: _Owner) -> bool:
    if not entry.name.startswith(".") or ".cnnkit-" not in entry.name:
        return False
    match = _TEMP_NAME.fullmatch(entry.name)
    if match is None or match["host"] != me.host:
        return False
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    getuid = getattr(os, "getuid", None)  # POSIX
    if not stat.S_ISREG(info.st_mode) or (getuid is not None and info.st_uid != getuid()):
        return False
    return not _owner_alive(int(match["pid"]), int(match["start"]))


@contextmanager
def atomic_output(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write to; it becomes ``path`` when the block exits cleanly.

    The temporary file is created (empty) in the same folder as ``path``,
    named after its owner (see the module's docstring), and ends with
    ``suffix`` (default: the extension of ``path``); the folder's temporary
    files left by killed runs are removed first (sweep_stale_temps). On any
    exception, KeyboardInterrupt included, it is removed and ``path`` is left
    untouched; an OSError writing or renaming it (disk full, read-only file
    system, quota) becomes an InputError naming ``path`` and the reason.
    """
    path = Path(path)
    check_output_path(path)
    ext = path.suffix if suffix is None else suffix
    sweep_stale_temps(path.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=f".tmp{ext}", dir=path.parent)
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
