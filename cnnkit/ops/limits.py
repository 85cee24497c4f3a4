"""Checks made before a convolution allocates anything: memory, and a float32 result range.

Without these checks a huge --padding ends in OpenCV's "Insufficient memory"
traceback or in the OOM killer, and a kernel with huge weights gives an output
of inf and NaN that otherwise looks fine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnkit.errors import InputError
from cnnkit.kernels import Kernel
from cnnkit.ops.conv2d import direct_path, filter2d_takes, opencv_path_applies
from cnnkit.ops.geometry import AxisGeometry, padded_shape

# Below this, asking the OS what is free costs more than it could ever save.
_MEMORY_CHECK_BYTES = 256 * 2**20


def _rlimit_rooms() -> list[tuple[int, str]]:
    """Room left under this process's address-space and data limits (``ulimit -v``, ``-d``).

    A request past either fails however much the machine has free: OpenCV's
    "Insufficient memory", numpy's MemoryError.
    """
    from cnnkit.procmem import process_limits, status_bytes

    rooms = []
    for soft, shell in process_limits():
        used = status_bytes("VmSize:" if shell == "ulimit -v" else "VmData:")
        if used is not None:
            rooms.append((max(0, soft - used), shell))
    return rooms


def _read_int(path: str) -> int:
    return int(Path(path).read_text().strip())


def _cgroup_rooms() -> list[tuple[int, str]]:
    """Room left under a container's memory limit: cgroup v2, else cgroup v1."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = _read_int("/sys/fs/cgroup/memory.current")
            return [(max(0, int(limit) - used), "the container's limit")]
        return []
    except (OSError, ValueError):
        pass
    try:
        v1 = "/sys/fs/cgroup/memory/"
        limit_v1 = _read_int(v1 + "memory.limit_in_bytes")
        if limit_v1 >= 2**60:  # "no limit" is the largest multiple of the page size
            return []
        used = _read_int(v1 + "memory.usage_in_bytes")
        # v1 counts the page cache as used; the inactive part is dropped before the
        # limit is enforced, as `docker stats` takes it off too.
        for line in Path(v1 + "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key in ("total_inactive_file", "inactive_file"):
                used -= int(value)
                break
        return [(max(0, limit_v1 - used), "the container's limit")]
    except (OSError, ValueError):
        return []


def memory_rooms() -> list[tuple[int, str]]:
    """Every bound on what can still be allocated, as (bytes, what sets it); empty if none is known.

    The machine's free memory ("free": Linux's MemAvailable, free memory plus
    the page cache it can drop; elsewhere the free physical pages), a
    container's memory limit ("the container's limit": cgroup v2 or v1), and
    this process's address-space and data limits ("ulimit -v", "ulimit -d").
    """
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "free"))
                break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append((os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free"))
        except (AttributeError, ValueError, OSError):
            pass
    return found + _cgroup_rooms() + _rlimit_rooms()


def available_memory() -> int | None:
    """Bytes that can still be allocated without swapping or failing, or None when nothing says.

    The smallest of :func:`memory_rooms`: free memory, a container's limit,
    and what this process's ``ulimit -v`` / ``ulimit -d`` leave.
    """
    rooms = memory_rooms()
    return min(n for n, _ in rooms) if rooms else None


def _binding_limit(free: int) -> str | None:
    """What set ``free`` as the bound, when it was a limit rather than the machine's free memory.

    Read again, so allow for what the process allocated in between.
    """
    rooms = memory_rooms()
    if not rooms:
        return None
    n, what = min(rooms)
    return what if what != "free" and abs(n - free) <= 64 * 2**20 else None


def size_text(nbytes: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as free(1) -h and file managers show them)."""
    units = ("bytes", "KB", "MB", "GB", "TB", "PB")
    step = 0
    while nbytes >= 1000 and step < len(units) - 1:
        nbytes /= 1000
        step += 1
    return f"{nbytes:,.0f} bytes" if step == 0 else f"{nbytes:,.1f} {units[step]}"


def check_memory(
    nbytes: int, what: str, hint: str = "use a smaller --padding or a smaller input"
) -> None:
    """Refuse up front to allocate ``nbytes`` when the process cannot get them.

    Without this, a huge --padding ends in OpenCV's "Insufficient memory"
    traceback or in the OOM killer, after minutes of swapping. ``hint`` names
    the options that size the allocation.
    """
    if nbytes <= _MEMORY_CHECK_BYTES:
        return
    free = available_memory()
    if free is not None and nbytes > free:
        limit = _binding_limit(free)
        where = ""
        if limit is not None and limit.startswith("ulimit"):
            where = f" under this process's limit ({limit})"
            hint += f", or raise {limit}"
        elif limit is not None:
            where = f" under {limit}"
        raise InputError(
            f"{what} needs {size_text(nbytes)} of memory, more than the "
            f"{size_text(free)} available{where}",
            hint=hint,
        )


def check_batch_memory(
    count: int, sample: Sequence[int], what: str, options: str, filled: bool = True
) -> None:
    """Refuse, before it is allocated, a batch of ``count`` uint8 samples of shape ``sample``.

    ``what`` names the samples ("windows", "images"); ``options`` the
    command-line options that size the batch, for the message and the hint
    ("--batch-size 4096, --window 512"). A ``filled`` batch (images, a
    dataset) is counted as the uint8 batch and the float32 copy the model is
    given (5 bytes a value); a batch that is allocated whole before the first
    sample is read (a video's windows or frames: ``filled=False``) as its uint8
    array alone, which a short video never fills. Prefetched batches and the
    model's own activations come on top: this is the least the batch needs, so
    a refusal is a run that could not work.
    """
    per_value = 1 + 4 if filled else 1
    nbytes = count * math.prod(int(n) for n in sample) * per_value
    names = " or ".join(part.split()[0] for part in options.split(", "))
    check_memory(
        nbytes,
        f"a batch of {count} {what} of {_shape_text(sample)} ({options})",
        hint=f"use a smaller {names}",
    )


def _shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(int(n)) for n in shape)


def _bytes_2d(
    shape: Sequence[int],
    dtype: np.dtype,
    kernel: Kernel,
    gh: AxisGeometry,
    gw: AxisGeometry,
    mode: str,
    method: str,
) -> int:
    """What one 2D correlation of an H×W[×C] input allocates at its peak, in bytes.

    Direct OpenCV path: the float32 result (plus a float32 copy of an input
    filter2D cannot take). OpenCV with explicit padding: the padded input and
    filter2D's float32 result on it. numpy path: the padded input as float32,
    the result and a product of the same size. A magnitude kernel holds one
    more result while it adds the squares (a band of one on the direct path).
    """
    tail = tuple(shape[2:])
    values = math.prod(shape)
    padded = math.prod(padded_shape((gh, gw), tail))
    out = gh.out * gw.out * math.prod(tail)
    source = 0 if filter2d_takes(dtype) else 4 * values
    extra = kernel.combine is not None and len(kernel.components) > 1
    if direct_path(gh, gw, mode, method):
        return source + 4 * out
    if method != "numpy" and opencv_path_applies(gh, gw):
        itemsize = 4 if source else np.dtype(dtype).itemsize
        return source + itemsize * padded + 4 * padded * (2 if extra else 1)
    return 4 * (padded + 2 * out + (out if extra else 0))


def check_convolution_memory(
    frame_shape: Sequence[int],
    dtype: np.dtype | type,
    kernel: Kernel,
    axes: Sequence[AxisGeometry],
    padding_mode: str,
    method: str = "auto",
    num_frames: int = 1,
    whole_result: bool = False,
) -> None:
    """Refuse, before anything is allocated, a convolution that would not fit in memory.

    ``frame_shape`` is one image or frame, H×W[×C], of ``dtype``; ``axes`` come
    from :func:`resolve_geometry` on (H, W) or (T, H, W). A 3D kernel also keeps
    the frames a later output still needs (its reach in time, every frame for
    circular time padding) and one output frame; ``whole_result`` adds the
    whole T'×H'×W'[×C] float32 result (an array in, an array out).
    """
    gh, gw = axes[-2:]
    tail = tuple(frame_shape[2:])
    needed = _bytes_2d(frame_shape, np.dtype(dtype), kernel, gh, gw, padding_mode, method)
    out_frame = (gh.out, gw.out, *tail)
    if len(axes) == 3:
        gt = axes[0]
        kept = num_frames if padding_mode == "circular" else min(num_frames, gt.reach)
        frame_bytes = np.dtype(dtype).itemsize * math.prod(frame_shape)
        needed += kept * frame_bytes + 4 * math.prod(out_frame)
        if whole_result:
            needed += 4 * gt.out * math.prod(out_frame)
    what = "an input" if len(axes) == 2 else "frames"
    check_memory(
        needed,
        f"the convolution of {what} of {_shape_text(frame_shape)} (padded to "
        f"{_shape_text(padded_shape((gh, gw), tail))}, output {_shape_text(out_frame)} "
        "in float32)",
    )


def input_peak(x: np.ndarray) -> tuple[float, str]:
    """The largest |value| an input can hold, and how to name that input in a message.

    Integer inputs can hold their dtype's full range (65535 for 16-bit), so a
    kernel that overflows on one 16-bit image is refused for all of them; float
    inputs are judged by the values they actually hold.
    """
    if x.dtype == np.bool_:
        return 1.0, "a boolean input"
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return float(max(abs(int(info.min)), int(info.max))), f"{info.bits}-bit input"
    if x.size == 0:
        return 0.0, "this input"
    peak = max(abs(float(x.max())), abs(float(x.min())))
    return peak, "this input"


def check_result_range(kernel: Kernel, x: np.ndarray) -> None:
    """Refuse a kernel whose float32 result could overflow on ``x`` (see Kernel.largest_result)."""
    peak, what = input_peak(x)
    if math.isfinite(peak):  # non-finite inputs give non-finite results whatever the kernel
        kernel.check_float32_range(peak, what)
