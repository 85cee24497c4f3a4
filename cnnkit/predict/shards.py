"""Shards of a batch job: the I-th of N disjoint parts of the inputs (``--shard I/N``).

Every task of a job array expands the same inputs, sorts them the same way
and takes its own part; no task needs to hear from another. The sort key is
the path as recorded, compared name by name as Python strings (code points):
neither the file system's listing order nor the locale enters it, so every
machine cuts the same list at the same places. It is the order of a folder
walk (cnnkit.io.sources.walk_media), so the shards of one folder, put end to
end in shard order, are the records of the whole folder in its usual order.

Parts are contiguous blocks of the sorted list, balanced by count (sizes
differ by at most one): a task reads neighbouring files (one folder's
entries, its cache, its network mount) rather than every N-th file, and
``cat results.*.jsonl`` in shard order is the sorted output. A video counts
as one input, whatever its length: weighing videos by their frames would
need every task to open every video's header and get the same answer, and a
header that one node fails to read would then put an input in two shards or
in none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cnnkit.errors import InputError

T = TypeVar("T")

# Slurm's largest job array (MaxArraySize) is 4,000,001 tasks; a count past it is a typo.
MAX_SHARDS = 4_000_001

_SPEC = re.compile(r"([0-9]{1,12})/([0-9]{1,12})")

_HINT = "give I/N with I from 0 to N-1 (--shard 0/4 is the first of 4 parts), or auto under Slurm"

# Slurm's job-array variables that --shard auto reads (sbatch --array=A-B[:S]).
SLURM_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (from 0) of ``count``; ``origin`` says where ``auto`` found it."""

    index: int
    count: int
    origin: str | None = None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``I/N`` (I from 0 to N-1) or ``auto`` (Slurm's job-array variables) as a Shard.

    >>> parse_shard("1/4")
    Shard(index=1, count=4, origin=None)
    """
    text = text.strip()
    if text.lower() == "auto":
        return slurm_shard(os.environ if environ is None else environ)
    match = _SPEC.fullmatch(text)
    if match is None:
        raise InputError(f"--shard takes I/N or auto, not {text!r}", hint=_HINT)
    index, count = int(match[1]), int(match[2])
    if count < 1 or count > MAX_SHARDS:
        raise InputError(f"--shard {text}: N must be from 1 to {MAX_SHARDS:,} parts", hint=_HINT)
    if index >= count:
        raise InputError(
            f"--shard {text}: the parts of {count} are 0/{count} to {count - 1}/{count} "
            "(I counts from 0)",
            hint="with Slurm's --array=1-N, --shard auto counts from the array's first task",
        )
    return Shard(index, count)


def slurm_shard(environ: Mapping[str, str]) -> Shard:
    """The shard of this task of a Slurm job array: (ID - MIN) / STEP of COUNT.

    ``sbatch --array=0-9`` and ``--array=1-10`` both make shards 0/10 to 9/10;
    a step (``--array=0-18:2``) is divided out. A list of task ids that are not
    evenly spaced (``--array=1,4,9``) cannot be told apart from a gap, and is
    refused.
    """
    missing = [name for name in SLURM_VARIABLES if not environ.get(name, "").strip()]
    if missing:
        raise InputError(
            f"--shard auto reads Slurm's job-array variables, and {missing[0]} is not set",
            hint="run it in a job array (sbatch --array=0-3 ...), or give --shard I/N",
        )
    values = {name: _slurm_int(environ, name) for name in SLURM_VARIABLES}
    task, first, count = (values[name] for name in SLURM_VARIABLES)
    step = (
        _slurm_int(environ, "SLURM_ARRAY_TASK_STEP") if environ.get("SLURM_ARRAY_TASK_STEP") else 1
    )
    last = environ.get("SLURM_ARRAY_TASK_MAX")
    origin = ", ".join(f"{name}={values[name]}" for name in SLURM_VARIABLES)
    offset = task - first
    evenly = step >= 1 and offset % step == 0 and 1 <= count <= MAX_SHARDS
    if evenly and last is not None and last.strip():
        evenly = first + (count - 1) * step == _slurm_int(environ, "SLURM_ARRAY_TASK_MAX")
    if not evenly or not 0 <= offset // step < count:
        raise InputError(
            f"--shard auto: the job array's tasks are not {count} evenly spaced ids ({origin})",
            hint="give the array as a range (sbatch --array=0-9 or --array=1-10:1), "
            "or give --shard I/N yourself",
        )
    return Shard(offset // step, count, f"Slurm's job array ({origin})")


def _slurm_int(environ: Mapping[str, str], name: str) -> int:
    text = environ.get(name, "").strip()
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise InputError(
            f"--shard auto: {name}={text!r} is not a whole number",
            hint="run it in a Slurm job array, or give --shard I/N",
        )
    return int(text)


def sort_key(path: str) -> tuple[str, ...]:
    """Where ``path`` goes in the sorted list: its names compared one by one (see above)."""
    if os.sep != "/":
        path = path.replace(os.sep, "/")
    return tuple(path.split("/"))


def shard_bounds(total: int, shard: Shard) -> tuple[int, int]:
    """[start, stop) of ``shard`` in a sorted list of ``total`` inputs (sizes differ by <= 1)."""
    return shard.index * total // shard.count, (shard.index + 1) * total // shard.count


def _path_of(item: Any) -> str:
    return item if isinstance(item, str) else str(item.path)


def take_shard(items: Sequence[T], shard: Shard, path: Callable[[T], str] = _path_of) -> list[T]:
    """The items of ``shard``, in sorted order: a contiguous block of the sorted ``items``.

    ``path`` gives an item's path (default: the item itself, or its ``.path``).
    Items with equal paths (an input named twice) keep their order.
    """
    order = sorted(range(len(items)), key=lambda i: sort_key(path(items[i])))
    start, stop = shard_bounds(len(items), shard)
    return [items[i] for i in order[start:stop]]
