"""Commands under a memory limit: native libraries loaded so that they fit, failures in one line.

A process limit (``ulimit -v``: RLIMIT_AS, every mapping; ``ulimit -d``:
RLIMIT_DATA, the private writable ones) makes an allocation fail however much
memory the machine has free. Torch alone maps 3.1 GB of address space (its
CUDA build maps its CUDA libraries whether or not a GPU is there), so under
``ulimit -v 4000000`` the order and the threads of what is loaded decide
whether a command runs at all. The up-front size checks that honour these
limits are in cnnkit.ops.limits.

Nothing here imports numpy or torch at import time: the error path uses this
module after memory has run out.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from cnnkit.errors import CnnkitError
from cnnkit.procmem import process_limits, status_bytes

# The commands that load torch (and, for train, Lightning); convolve never does.
_TORCH_COMMANDS = frozenset({"train", "eval", "predict", "inspect", "export", "explain"})

# What importing Lightning (and the SciPy and Matplotlib it loads) adds to the
# address space once torch is loaded, with Triton kept out (see
# load_native_libraries), plus a training step of a small model: measured
# 0.30 GB and 0.1 GB with Lightning 2.6 and torch 2.14 (x86-64).
_TRAINING_BYTES = 450 * 10**6


def load_native_libraries(args: list[str]) -> None:
    """Under a memory limit, load OpenCV first, with one OpenBLAS thread, before torch.

    Measured (Linux x86-64, address space): numpy 85 MB, OpenCV 0.19 GB,
    torch 3.1 GB, Lightning 0.5 GB more, of which Triton (the compiler of
    ``torch.compile``, imported by torchvision and Lightning through
    torch._dynamo) is 0.18 GB: 3.9 GB before any work, so that
    ``ulimit -v 4000000`` left nothing. OpenCV bundles its own OpenBLAS,
    which starts a thread per core at import and maps a buffer for each; when
    that mapping fails it calls a null pointer, so ``import lightning; import
    cv2`` under that limit was a segmentation fault with no message. So, only
    when a limit is set: every OpenBLAS gets one thread (cnnkit computes with
    torch, OpenCV's own code and ONNX Runtime, never with these BLAS copies; an
    explicit OPENBLAS_NUM_THREADS is kept), malloc keeps one arena (each
    thread's own reserves 64 MB), Triton is not imported (cnnkit never
    compiles), and OpenCV is mapped before torch while there is room. Without
    a limit nothing changes. Not for ``--help``, which loads none of these.
    """
    if not args or args[0] not in _TORCH_COMMANDS or "--help" in args or "-h" in args:
        return
    limits = process_limits()
    if not limits:
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read once, when each OpenBLAS loads
    _one_malloc_arena()
    # None in sys.modules makes `import triton` an ImportError, which torch and
    # Lightning take for "Triton is not installed"; torch's FLOP counter then
    # warns that it cannot count Triton kernels, which cnnkit never runs.
    sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
    import cnnkit.io._opencv  # noqa: F401  (OpenCV before torch: see above)

    address_space = [n for n, shell in limits if shell == "ulimit -v"]
    if address_space and args[0] == "train":
        check_room_for_training(address_space[0])


def check_room_for_training(limit: int) -> None:
    """Refuse a training run whose ``ulimit -v`` leaves no room for Lightning after torch.

    Short of it, the run fails somewhere inside an import, or never ends
    (SciPy's OpenBLAS retries its buffer forever when the mapping fails).
    """
    import torch  # noqa: F401  (train loads it next anyway)

    used = status_bytes("VmSize:")
    if used is not None and limit - used < _TRAINING_BYTES:
        need = used + _TRAINING_BYTES
        raise CnnkitError(
            f"training needs at least {_size(need)} of address space (torch and Lightning), "
            f"more than this process's limit of {_size(limit)} (ulimit -v)",
            hint=f"raise the limit to {need // 1024 + 1} or more (ulimit -v takes KB)",
        )


def _one_malloc_arena() -> None:
    """glibc's mallopt(M_ARENA_MAX, 1): every thread allocates from the main arena."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc
        return
    m_arena_max = -8  # from glibc's malloc.h
    mallopt(m_arena_max, 1)


# What failed allocations raise where they are not MemoryError: OpenCV's
# cv2.error, torch's CPU allocator, a thread that cannot get its stack, a shared
# library that cannot be mapped.
_ALLOCATION_FAILURES = (
    "insufficient memory",
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate",
    "std::bad_alloc",
    "can't start new thread",
    "failed to map segment",
)


def allocation_failure(exc: BaseException) -> BaseException | None:
    """The failed allocation behind ``exc`` (itself or what it was raised from), or None.

    Under an address-space limit that the process has reached, any error is
    taken for one: libraries word theirs in their own ways (oneDNN's "could
    not create a primitive"), and the limit is what the user can change. The
    line still names the error's type and text.
    """
    if isinstance(exc, CnnkitError):
        return None
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, MemoryError):
            return current
        if isinstance(current, Exception) and not isinstance(current, CnnkitError):
            text = str(current).lower()
            if any(word in text for word in _ALLOCATION_FAILURES):
                return current
        current = current.__cause__ or current.__context__
        seen += 1
    return exc if reached_address_space_limit() else None


def reached_address_space_limit() -> bool:
    """Whether this process's mappings came within 64 MB of its ``ulimit -v`` at some point."""
    limit = [n for n, shell in process_limits() if shell == "ulimit -v"]
    peak = status_bytes("VmPeak:") if limit else None
    return peak is not None and peak >= limit[0] - 64 * 2**20


def _size(nbytes: int) -> str:
    # Imports nothing: memory has just run out (cnnkit.ops.limits.size_text needs numpy).
    return f"{nbytes / 1e9:,.1f} GB" if nbytes >= 10**8 else f"{nbytes / 1e6:,.1f} MB"


def out_of_memory_line(exc: BaseException) -> str:
    """One ``error:`` line for a failed allocation: what was asked, and the limit if one is set."""
    text = str(exc).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
    asked = re.search(r"allocate (\d+) bytes", text)  # OpenCV's and torch's wording
    if asked:
        detail = f"could not allocate {_size(int(asked.group(1)))}"
    elif not isinstance(exc, MemoryError):
        detail = f"{type(exc).__name__}: {detail}"
    limits = process_limits()
    if limits:
        what = {"ulimit -v": "of address space", "ulimit -d": "of data"}
        allowed = " and ".join(f"{_size(n)} {what[shell]} ({shell})" for n, shell in limits)
        hint = f"this process may use {allowed}: raise the limit, or use smaller inputs or options"
    else:
        hint = "use smaller inputs or options, or free some memory"
    return f"error: out of memory: {detail} (hint: {hint})"


# Made now: when memory has run out, even formatting a line can fail.
OUT_OF_MEMORY = "error: out of memory (hint: use smaller inputs or options, or raise the limit)"
