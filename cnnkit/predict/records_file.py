"""predict's ``-o FILE``: records appended as they are made, and ``--resume`` from what it holds.

The file holds the records predict prints (JSON Lines, or CSV under one
header). Each batch of records goes out in one ``write()``, so the file
holds whole lines between batches; a batch cut short (a full disk, Ctrl-C)
is cut back off before the error is reported, and the file is fsynced when
the run ends. A process killed outright (SIGKILL, the OOM killer, a power
cut) can still leave part of a line at the end: ``--resume`` drops it.

``--resume`` reads the file (untrusted: every line is bounded, and only
counts of this run's inputs are kept) and tells which inputs are done. An
input is done when its last record is there: an image's record, a video's
whole-video record (``"window": "video"``), or an error record (unless
``--retry-errors``). The records of a video left unfinished come off the
file before it is classified again, so that after any number of kills and
resumes the file holds one record per input, frame and window. They are
the last records of the file, cut off with a truncate; records to remove
anywhere else (errors to retry) mean writing the file again, atomically
(cnnkit.io.atomic), before appending.

Two processes appending to one file would interleave their records: the
file is locked (``flock``) while a run writes it, and a second run is refused.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cnnkit.errors import InputError
from cnnkit.io.atomic import atomic_output, check_output_path, write_error
from cnnkit.jsontext import dumps
from cnnkit.textout import ERRORS, csv_cell

try:  # POSIX; elsewhere a file is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

# -o FILE's format from its extension, when --format does not say.
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}

# Separate stretches of records --resume may remove from a file (each costs a pair of
# numbers); a file of our own has one (an unfinished video) or one per error retried.
MAX_REMOVALS = 1_000_000

# What a record is to --resume: the last record of its input, an error (the last
# too), or a record of a video's frame or window (more follow).
FINAL, ERROR, PART = "final", "error", "part"

# Bytes a line may take besides its top-k list: a path of 4096 bytes escaped
# (up to 6 characters a byte in JSON), an error that names it, the numbers.
_LINE_BASE = 256 * 1024


def records_format(path: str | Path, asked: str | None) -> str:
    """'jsonl' or 'csv': ``asked`` (--format), else from the extension of ``path``."""
    if asked == "table":
        raise InputError(
            "--format table is for a terminal, not for -o FILE",
            hint="use --format jsonl or csv with -o, or leave -o out",
        )
    if asked:
        return asked
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the format of -o {path} from its name",
            hint="name it .jsonl or .csv, or give --format jsonl or csv",
        )
    return fmt


def check_records_path(path: str | Path, resume: bool) -> None:
    """Refuse early (before a model loads) an -o FILE that this run could not write.

    An existing file is never overwritten: ``--resume`` appends what it lacks.
    """
    path = Path(path)
    check_output_path(path)
    try:
        info = os.stat(path)
    except OSError:
        return  # missing: it is made; unreachable: opening it says why
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"-o {path} is not a regular file", hint="give a file name")
    if not resume:
        raise InputError(
            f"{path} exists",
            hint="add --resume to append only what it lacks, or remove it to start again",
        )


def line_limit(labels: Sequence[str], top_k: int) -> int:
    """The longest line a record of a model with these class names can take, in bytes."""
    longest = max((len(dumps(label)) for label in labels), default=2)
    return _LINE_BASE + min(top_k, len(labels)) * (longest + 64)


@dataclass
class Resumed:
    """What ``--resume`` found in the file.

    ``done``: last records per input (keys as recorded; only this run's
    inputs); ``kept``: those records; ``errors``: error records among them;
    ``retried``: error records removed for --retry-errors; ``unfinished``:
    records of videos left unfinished, removed; ``torn``: a part of a line
    was dropped from the end; ``foreign``: records of inputs not in this run.
    """

    done: Counter[str] = field(default_factory=Counter)
    kept: int = 0
    errors: int = 0
    retried: int = 0
    unfinished: int = 0
    torn: bool = False
    foreign: int = 0


class RecordsFile:
    """An open ``-o FILE`` for predict's writers: text in, one ``write()`` per flush.

    ``size`` is the length of the file up to its last whole batch;
    ``has_header``: a CSV file that already starts with its header.
    """

    def __init__(self, path: Path, fd: int, size: int, has_header: bool = False) -> None:
        self.path = path
        self.size = size
        self.has_header = has_header
        self._fd: int | None = fd
        self._pending: list[str] = []

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._pending.append(text)
        return len(text)

    def flush(self) -> None:
        """Append what was written since the last flush, whole or not at all."""
        if not self._pending or self._fd is None:
            return
        data = "".join(self._pending).encode("utf-8", ERRORS)
        self._pending.clear()
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except BaseException as exc:
            # Part of the batch went out (a disk that filled up, Ctrl-C between two
            # writes): cut it off, so the file ends with a whole line.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
                os.lseek(self._fd, self.size, os.SEEK_SET)
            if isinstance(exc, OSError):
                raise write_error(self.path, exc) from None
            raise
        self.size += len(data)

    def close(self) -> None:
        """Flush, put the records on the disk (fsync) and close; an OSError is an InputError."""
        if self._fd is None:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        except OSError as exc:
            self.abandon()
            raise write_error(self.path, exc) from None
        self.abandon()

    def abandon(self) -> None:
        """Close without a word (after another error): what was flushed stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def open_records(
    path: str | Path,
    fmt: str,
    resume: bool = False,
    retry_errors: bool = False,
    header: Sequence[str] | None = None,
    wanted: Counter[str] | None = None,
    limit: int = _LINE_BASE,
) -> tuple[RecordsFile, Resumed | None]:
    """Open ``path`` to append records of format ``fmt`` ('jsonl' or 'csv'), locked.

    Without ``resume`` the file must not exist. With it, the file (made if
    missing) is read: what this run must not redo is in the Resumed, and the
    records to redo are off the file. ``header``: the CSV header this run
    writes (the file's must be the same); ``wanted``: this run's inputs as
    records name them (CSV cells for CSV), with their counts; ``limit``:
    the longest line a record may take (see line_limit).
    """
    path = Path(path)
    if not resume:
        fd = _open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        _lock(fd, path)
        return RecordsFile(path, fd, 0), None
    fd = _open(path, os.O_RDWR | os.O_CREAT)
    try:
        _lock(fd, path)
        scan = _Scan(path, fmt, list(header or []), wanted or Counter(), retry_errors, limit)
        with open(fd, "rb", closefd=False) as file:
            scan.read(file)
        fd = _remove(fd, path, scan.removals, scan.size)
        size = os.lseek(fd, 0, os.SEEK_END)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return RecordsFile(path, fd, size, scan.has_header), scan.resumed


def _open(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags, 0o666)
    except FileExistsError:
        raise InputError(
            f"{path} exists",
            hint="add --resume to append only what it lacks, or remove it to start again",
        ) from None
    except IsADirectoryError:
        raise InputError(f"cannot write {path}: it is a folder", hint="give a file name") from None
    except OSError as exc:
        raise write_error(path, exc) from None
    if fd <= 2 and fcntl is not None:
        # Started with stdout (or stdin, stderr) closed, the file got its number:
        # a library writing to "stdout" would write into the records.
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(fd)
        fd = high
    return fd


def _lock(fd: int, path: Path) -> None:
    """Hold ``path`` for this process alone; a file system without locks is written unlocked."""
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(
            f"{path} is being written by another process",
            hint="give each task its own file (-o results.$SLURM_ARRAY_TASK_ID.jsonl), "
            "or wait for the other run to end",
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise write_error(path, exc) from None


class _Scan:
    """One pass over a records file for --resume: what is done, and what must come off."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        header: list[str],
        wanted: Counter[str],
        retry_errors: bool,
        limit: int,
    ) -> None:
        self.path, self.fmt, self.header = path, fmt, header
        self.wanted, self.retry_errors, self.limit = wanted, retry_errors, limit
        self.resumed = Resumed()
        self.removals: list[tuple[int, int]] = []  # [start, stop) byte ranges
        self.pending: dict[str, list[tuple[int, int]]] = {}  # a video's records so far
        self.pending_count: Counter[str] = Counter()
        self.stretches = 0
        self.size = 0
        self.has_header = False

    def read(self, file: BinaryIO) -> None:
        self.size = os.fstat(file.fileno()).st_size
        columns: dict[str, int] = {}
        for number, start, stop, raw in _records(file, self.limit, self.fmt == "csv", self.path):
            if raw is None:  # part of a line at the end: the write it began never ended
                self.resumed.torn = True
                self._remove(start, self.size)
                break
            if self.fmt == "csv" and not columns:
                columns = self._check_header(raw)
                continue
            parsed = self._parse(raw, number, columns)
            self._take(*parsed, start, stop)
        for ranges in self.pending.values():  # videos whose last record never came
            for start, stop in ranges:
                self._remove(start, stop)
        self.resumed.unfinished = sum(self.pending_count.values())
        self.removals = _merged(self.removals)

    def _take(self, key: str, kind: str, start: int, stop: int) -> None:
        if key not in self.wanted:
            self.resumed.foreign += 1
            return
        if kind == PART:
            ranges = self.pending.setdefault(key, [])
            self.pending_count[key] += 1
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], stop)
            else:
                self._count_stretch()
                ranges.append((start, stop))
            return
        parts = self.pending.pop(key, [])
        count = self.pending_count.pop(key, 0)
        if kind == ERROR and self.retry_errors:
            for part in parts:
                self._remove(*part)
            self._remove(start, stop)
            self.resumed.retried += 1 + count
            return
        self.resumed.done[key] += 1
        self.resumed.kept += 1
        self.resumed.errors += kind == ERROR

    def _count_stretch(self) -> None:
        self.stretches += 1
        if self.stretches > MAX_REMOVALS:
            raise InputError(
                f"{self.path} holds records to remove in over {MAX_REMOVALS:,} places",
                hint="it was not written by one predict -o run: move it away to start afresh",
            )

    def _remove(self, start: int, stop: int) -> None:
        if self.removals and self.removals[-1][1] == start:
            self.removals[-1] = (self.removals[-1][0], stop)
            return
        self._count_stretch()
        self.removals.append((start, stop))

    def _parse(self, raw: bytes, number: int, columns: dict[str, int]) -> tuple[str, str]:
        parsed = _csv_record(raw, columns) if columns else _json_record(raw)
        if parsed is not None:
            return parsed
        if number == 1 and self.fmt == "jsonl" and raw.startswith(b'"path",'):
            raise InputError(
                f"{self.path} holds CSV, not JSON Lines",
                hint="resume with --format csv, the format it was written in",
            )
        raise InputError(
            f"line {number} of {self.path} is not a record of cnnkit predict",
            hint="--resume appends to a file that predict -o wrote; move this one away "
            "to start afresh",
        )

    def _check_header(self, raw: bytes) -> dict[str, int]:
        if raw.lstrip().startswith(b"{"):
            raise InputError(
                f"{self.path} holds JSON Lines, not CSV",
                hint="resume with --format jsonl, the format it was written in",
            )
        found = _csv_row(raw)
        if found != self.header:
            shown = ",".join(found or [])[:200]
            raise InputError(
                f"the CSV header of {self.path} ({shown}) is not this run's "
                f"({','.join(self.header)})",
                hint="resume with the model and inputs that wrote it, or write to another file",
            )
        self.has_header = True
        return {name: i for i, name in enumerate(found)}


def _records(
    file: BinaryIO, limit: int, quoted: bool, path: Path
) -> Iterator[tuple[int, int, int, bytes | None]]:
    """(first line number, start, stop, bytes) of each whole record; raw None for a torn end.

    A record is a line, or for CSV (``quoted``) as many lines as its quotes
    span (an even count of ``"`` ends one: cells quote their newlines). No
    record longer than ``limit`` bytes is held.
    """
    offset, number = 0, 0
    while True:
        start, first = offset, number + 1
        parts: list[bytes] = []
        size = quotes = 0
        while True:
            line = file.readline(limit + 1 - size)
            if not line:
                if parts:
                    yield first, start, start + size, None
                return
            number += 1
            parts.append(line)
            size += len(line)
            if size > limit:
                raise InputError(
                    f"line {first} of {path} is longer than {limit:,} bytes: not a record "
                    "of cnnkit predict",
                    hint="--resume appends to a file that predict -o wrote; move this one "
                    "away to start afresh",
                )
            if not line.endswith(b"\n"):
                yield first, start, start + size, None  # the end of the file
                return
            if quoted:
                quotes += line.count(b'"')
            if quotes % 2 == 0:
                break
        offset = start + size
        yield first, start, offset, b"".join(parts)


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Byte ranges in order, those that touch or overlap made one."""
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged


def _json_record(raw: bytes) -> tuple[str, str] | None:
    """(path, kind) of a JSON Lines record; None if it is not one."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        return None
    path = record["path"]
    if "error" in record:
        return (path, ERROR) if isinstance(record["error"], str) else None
    if not isinstance(record.get("label"), str) or not isinstance(record.get("topk"), list):
        return None
    if record.get("window") == "video":
        return path, FINAL
    if "frame" in record or "start_frame" in record:
        return path, PART
    return path, FINAL


def _csv_row(raw: bytes) -> list[str] | None:
    text = raw.decode("utf-8", "surrogateescape")
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _csv_record(raw: bytes, columns: dict[str, int]) -> tuple[str, str] | None:
    """(path cell, kind) of a CSV row under ``columns``; None if it is not one."""
    row = _csv_row(raw)
    if row is None or len(row) != len(columns):
        return None

    def cell(name: str) -> str:
        return row[columns[name]] if name in columns else ""

    path = cell("path")
    if cell("error"):
        return path, ERROR
    if not cell("label"):
        return None
    if cell("window") == "video":
        return path, FINAL
    if cell("frame") or cell("start_frame"):
        return path, PART
    return path, FINAL


def record_key(path: str | None, fmt: str) -> str:
    """How a record of ``fmt`` names the input ``path`` (a CSV cell is neutralised)."""
    text = "" if path is None else str(path)
    return csv_cell(text) if fmt == "csv" else text


def _remove(fd: int, path: Path, removals: list[tuple[int, int]], size: int) -> int:
    """Take ``removals`` off the file: a truncate for its end, else an atomic rewrite.

    Returns the descriptor to append to: ``fd``, or the rewritten file's,
    locked before it takes the file's name.
    """
    if not removals:
        return fd
    try:
        if len(removals) == 1 and removals[0][1] == size:
            os.ftruncate(fd, removals[0][0])
            return fd
    except OSError as exc:
        raise write_error(path, exc) from None
    mode = os.fstat(fd).st_mode & 0o7777
    new = -1
    with atomic_output(path) as temp:
        new = os.open(temp, os.O_RDWR)
        try:
            _lock(new, path)
            kept = 0
            for start, stop in removals:
                _copy(fd, new, kept, start)
                kept = stop
            _copy(fd, new, kept, size)
            os.fsync(new)
        except BaseException:
            os.close(new)
            raise
    with contextlib.suppress(OSError):
        os.fchmod(new, mode)
    os.close(fd)
    return new


def _copy(source: int, target: int, start: int, stop: int) -> None:
    """Bytes [start, stop) of ``source`` appended to ``target``, a MiB at a time."""
    while start < stop:
        data = os.pread(source, min(stop - start, 1 << 20), start)
        if not data:
            raise OSError(errno.EIO, "the file got shorter while it was copied")
        view = memoryview(data)
        while view:
            view = view[os.write(target, view) :]
        start += len(data)
