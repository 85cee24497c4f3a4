"""This process's memory limits and sizes, from the standard library alone.

A leaf: the command line's out-of-memory path reads these when memory has
run out, and cnnkit.ops.limits sizes its checks with them.
"""

from __future__ import annotations


def process_limits() -> list[tuple[int, str]]:
    """This process's memory limits that are set, as (bytes, the shell option that sets it).

    RLIMIT_AS caps every mapping (VmSize, reserved or not); RLIMIT_DATA the
    private writable ones (VmData), where malloc and numpy get their memory.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return []
    found = []
    for name, shell in (("RLIMIT_AS", "ulimit -v"), ("RLIMIT_DATA", "ulimit -d")):
        which = getattr(resource, name, None)
        if which is None:
            continue
        try:
            soft, _ = resource.getrlimit(which)
        except (OSError, ValueError):
            continue
        if soft != resource.RLIM_INFINITY and soft >= 0:
            found.append((soft, shell))
    return found


def status_bytes(key: str) -> int | None:
    """A size from /proc/self/status (``VmSize:``, ``VmData:``, ``VmPeak:``) in bytes, or None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
