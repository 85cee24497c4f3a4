"""How a training run shares the CPU with other processes: its thread count, as it goes.

The measurement and the policy are cnnkit.io.cpuload's; this is where a run
applies them to its training thread and records what it chose.
"""

from __future__ import annotations

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

    def end(self) -> None:
        """Give the training thread back the thread count it had."""
        if self._here is not None:
            self._here.restore()
