"""How a training run shares the CPU with other processes: its thread count, as it goes.

The measurement and the policy are cnnkit.io.cpuload's; this is where a run
applies them to its training thread and records what it chose.
"""

from __future__ import annotations

import os
from typing import Any

from cnnkit import console


class CpuShare:
    """How this run shares the CPU with other processes (cnnkit.io.cpuload).

    ``record``: the budget and the start, as config.yaml keeps them;
    ``follower``: follows the load while training (None where it does not).
    """

    def __init__(self, p: Any) -> None:
        """``p``: the run's cnnkit.training.plan.TrainPlan."""
        from cnnkit.io import cpuload
        from cnnkit.io.cpu import cpu_budget

        budget = cpu_budget()
        self.record: dict[str, Any] = {"cores": budget.cores, "reason": budget.reason}
        self.follower: Any = None
        self._here: Any = None
        self._set_omp = False
        if p.cfg.num_nodes > 1:
            self._share_with_nodes_here(p, budget)
            return
        single = p.devices == 1 or (isinstance(p.devices, list) and len(p.devices) == 1)
        if (
            p.device.accelerator != "cpu"
            or not single
            or p.cfg.num_nodes != 1
            or p.is_child
            or cpuload.user_sets_threads()
        ):
            return
        from cnnkit.io.pipeline import ThreadsHere

        first, now = cpuload.start_sample(), cpuload.sample()
        if now is None:
            return
        threads, elsewhere = budget.cores, None
        if first is not None and now.when - first.when >= cpuload.MIN_WINDOW_S:
            elsewhere = cpuload.busy_elsewhere(first, now)
            if elsewhere is not None:
                threads = cpuload.threads_beside(budget.cores, elsewhere, cpus=now.cpus)
        here = ThreadsHere()
        if not here.set(threads):
            return
        self._here = here
        self.follower = cpuload.Follower(budget.cores, here.set, now, threads)
        self.record.update(
            busy_elsewhere_at_start=None if elsewhere is None else round(elsewhere, 2),
            threads_at_start=threads,
            follows_load=True,
        )
        if threads < budget.cores:
            shared = f" of the {now.cpus} it may run on" if now.cpus > budget.cores else ""
            console.info(
                f"CPU: training on {threads} of {budget.cores} threads: other processes keep "
                f"{elsewhere:.1f} cores{shared} busy (measured again every "
                f"{cpuload.EVERY_S:g} s; CNNKIT_THREADS fixes the count)"
            )

    def _share_with_nodes_here(self, p: Any, budget: Any) -> None:
        """Threads for a rank of a job whose nodes all run on this machine.

        Lightning gives each DDP process the machine's cores divided by the
        processes it starts on its node, so "nodes" started side by side on
        one machine (torchrun on 127.0.0.1, to try a multi-node run) would
        each take every core: lock-step threads on taken cores slow every
        step several times over. Where the job's address is this machine's
        loopback, every process of the job runs here, and each takes its
        share of the budget (or the CNNKIT_THREADS count given for each).
        OMP_NUM_THREADS is the user's count, and Lightning's, kept as it is.
        """
        import ipaddress

        from cnnkit.io import cpuload

        address = os.environ.get("MASTER_ADDR", "").strip()
        try:
            loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = False
        if not loopback or "OMP_NUM_THREADS" in os.environ:
            return
        from cnnkit.io.pipeline import ThreadsHere

        per_node = len(p.devices) if isinstance(p.devices, list) else p.devices
        if not isinstance(per_node, int) or per_node < 1:
            per_node = 1  # "auto" and -1 (every device): one process a node on the CPU
        processes = p.cfg.num_nodes * per_node
        if cpuload.user_sets_threads():  # CNNKIT_THREADS: this process's own count
            threads = budget.cores
        else:
            threads = max(1, budget.cores // processes)
        here = ThreadsHere()
        if here.set(threads):
            self._here = here
        # Lightning's DDP launcher keeps a count given in OMP_NUM_THREADS, and
        # the ranks it starts on this node inherit it.
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self._set_omp = True
        self.record.update(processes_here=processes, threads=threads)
        if not p.is_child:
            console.info(
                f"CPU: {threads} thread(s) per process: the {processes} processes of this "
                f"job share this machine (MASTER_ADDR {address})"
            )

    def end(self) -> None:
        """Give the training thread back the thread count it had."""
        if self._here is not None:
            self._here.restore()
        if self._set_omp:
            os.environ.pop("OMP_NUM_THREADS", None)
            self._set_omp = False
