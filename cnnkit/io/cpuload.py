"""Cores other processes keep busy: how a training run shares its machine.

Torch computes each operation on all its threads in lock-step: an operation
ends when its slowest thread does. When another process holds one of the
cores, one of torch's threads waits for that core every time slice, and the
whole run slows down several times over (on 2 cores, with one core busy
elsewhere, a training epoch took 3.7 times as long on 2 threads as on 1);
two trainings started side by side each slow down the same way. A thread
count that leaves the busy cores alone avoids this.

So a training run (``cnnkit train``, ``cnnkit.train``) computes on the cores
its CPU budget gives (cnnkit.io.cpu) minus the cores other processes kept
busy, measured from ``/proc/stat`` (the CPUs this process may run on) minus
this process's own use and its children's (DataLoader workers). Where the
budget is smaller than those CPUs (a container's CPU quota on a larger
machine), other processes take a core from the budget only once they keep
busy more than the CPUs beyond it. The first
measurement spans the command's start-up (imports and data loading, a second
or more, at no cost); the run measures again every ``EVERY_S`` seconds and
follows: when the other job ends, it takes the core back.

Nothing of this happens where the thread count is the user's own
(``CNNKIT_THREADS``, ``OMP_NUM_THREADS``), or where ``/proc`` cannot be read.
A leaf module: imports nothing of cnnkit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
EVERY_S = 2.0  # seconds between measurements while training
# A core counts as taken when other processes kept it busy more than this
# share of the time, and as free again below the lower mark (no flapping
# between two counts when the load sits near the line).
TAKEN_ABOVE = 0.5
FREE_BELOW = 0.3
# A start-up window shorter than this says little about the machine's load.
MIN_WINDOW_S = 0.5

try:
    TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):  # not POSIX
    TICKS = 100


@dataclass(frozen=True)
class Sample:
    """CPU time at one moment, in clock ticks: ``busy`` on this process's CPUs,
    ``own`` of this process and its children; ``cpus``: how many CPUs ``busy``
    spans (0: not said)."""

    when: float
    busy: int
    own: int
    cpus: int = 0


def user_sets_threads(environ: dict[str, str] | None = None) -> bool:
    """Whether the thread count is the user's own (then cnnkit does not adapt it)."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip() for name in ("CNNKIT_THREADS", "OMP_NUM_THREADS"))


def sample(proc: Path = PROC, children: bool = True) -> Sample | None:
    """The CPU time now, or None where ``/proc`` does not say it (not Linux).

    ``children``: count running child processes too (a process that has
    started none, at its start, need not look for them).
    """
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        return None
    try:
        busy = counted = 0
        with (proc / "stat").open() as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                fields = line.split()
                if fields[0] in cpus:
                    # user nice system idle iowait irq softirq steal: all but idle and iowait.
                    # Niced work counts: nice ranks processes only within one scheduling
                    # group (autogroup, cgroup), and other jobs are mostly in others.
                    values = [int(v) for v in fields[1:9]]
                    busy += sum(values) - values[3] - values[4]
                    counted += 1
        own = _process_ticks(proc / "self" / "stat", children=True)
    except (OSError, ValueError, IndexError):
        return None
    live = _live_children_ticks(proc) if children else 0
    return Sample(time.monotonic(), busy, own + live, counted)


def _process_ticks(stat: Path, children: bool) -> int:
    """utime + stime of a process (and of its children that have ended, when asked)."""
    text = stat.read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks


def _live_children_ticks(proc: Path) -> int:
    """CPU time of this process's running children (DataLoader workers), in ticks."""
    me = str(os.getpid())
    total = 0
    pids = _child_pids(proc)
    if pids is None:  # a kernel that does not list children: every process is looked at
        try:
            pids = [entry.name for entry in os.scandir(proc) if entry.name.isdigit()]
        except OSError:
            return 0
    for pid in pids:
        try:
            text = (proc / pid / "stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            if fields[1] == me:  # the parent's pid
                total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile, or not ours to read
    return total


def _child_pids(proc: Path) -> list[str] | None:
    """This process's children as its threads list them, or None where the kernel does not.

    Reading every process's stat costs tens of microseconds each: on a shared
    machine with thousands of processes, a tenth of a second of the training
    thread's time at every measurement. The threads' ``children`` files name
    the few that count.
    """
    tasks = proc / "self" / "task"
    if not (tasks / str(os.getpid()) / "children").is_file():
        return None
    try:
        threads = os.listdir(tasks)
    except OSError:
        return None
    pids: set[str] = set()
    for tid in threads:
        try:
            pids.update(p for p in (tasks / tid / "children").read_text().split() if p.isdigit())
        except OSError:
            continue  # a thread that ended meanwhile
    return sorted(pids)


def busy_elsewhere(before: Sample, after: Sample) -> float | None:
    """Cores other processes kept busy between two samples (None: too short to tell)."""
    seconds = after.when - before.when
    if seconds <= 0:
        return None
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / TICKS / seconds)


def threads_beside(cores: int, elsewhere: float, current: int | None = None, cpus: int = 0) -> int:
    """Threads to compute on: the budget's ``cores`` less those other processes keep busy.

    ``current``: the count in use, kept while the load sits between the two
    marks (see TAKEN_ABOVE, FREE_BELOW). ``cpus``: the CPUs ``elsewhere`` was
    measured on; where they are more than the budget's cores (a CPU quota),
    the others' load first fills the CPUs beyond the budget.
    """
    elsewhere = max(0.0, elsewhere - max(0, cpus - cores))
    whole = int(elsewhere)
    part = elsewhere - whole
    taken = whole + (1 if part > TAKEN_ABOVE else 0)
    wanted = max(1, min(cores, cores - taken))
    if current is not None and FREE_BELOW <= part <= TAKEN_ABOVE:
        # Between the marks: keep the count in use if it is one of the two candidates.
        if current in (wanted, wanted - 1) and 1 <= current <= cores:
            return current
    return wanted


_START: dict[str, Sample | None] = {"sample": None}


def mark_start() -> None:
    """Remember the CPU time now: the command's start-up becomes the first measurement."""
    _START["sample"] = sample(children=False)


def start_sample() -> Sample | None:
    """The sample ``mark_start`` took, for the command running now (else None)."""
    return _START["sample"]


def forget_start() -> None:
    """The command has ended: a later run in this process measures its own start."""
    _START["sample"] = None


class Follower:
    """Follows the machine's load while a run trains: ``check()`` between steps.

    ``apply(n)`` sets the count (the caller's thread); it is called only when
    the count changes. ``changes`` counts those.
    """

    def __init__(self, cores: int, apply, first: Sample | None, current: int) -> None:
        self.cores = cores
        self.apply = apply
        self.current = current
        self.changes = 0
        self.last = first or sample()
        self.next_at = time.monotonic() + EVERY_S

    def check(self) -> None:
        now = time.monotonic()
        if now < self.next_at or self.last is None:
            return
        self.next_at = now + EVERY_S
        latest = sample()
        if latest is None:
            return
        elsewhere = busy_elsewhere(self.last, latest)
        self.last = latest
        if elsewhere is None:
            return
        wanted = threads_beside(self.cores, elsewhere, self.current, latest.cpus)
        if wanted != self.current:
            self.apply(wanted)
            self.current = wanted
            self.changes += 1
