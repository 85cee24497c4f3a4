"""Streamed data: batches decoded from the files by worker processes as training goes.

A folder too large for memory is decoded every epoch. The pipeline is built
to run at the speed of decoding on every core the CPU budget gives, beside
the model:

- a worker decodes a whole batch into one uint8 array (``FileDataset.
  decode_batch``): no per-sample ``__getitem__``, no collation of small
  tensors, one array through the worker queue per batch (uint8: a quarter
  of the bytes of float32);
- which samples a batch holds, in which order, and where a training clip
  starts come from ``EpochOrder``, the order of data held in memory: the
  same seed gives the same batches whichever way the data is held;
- the workers persist from epoch to epoch (DataLoader gives each one torch
  thread; OpenCV's thread count is left as it is: setting it in a forked
  worker can hang on the parent's pool, and OpenCV runs the resize and
  colour conversion of an image this small on one thread anyway); on CUDA
  the batches land in pinned memory, so their copy to the device overlaps
  the model;
- the budget's cores are shared between the decoding workers and the
  model's torch threads (``stream_split``, ``ModelThreads``), said and recorded.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Sampler

from cnnkit.data.folders import FileDataset
from cnnkit.data.memory import EpochOrder, world

# Batches each worker decodes ahead of the model (DataLoader's prefetch_factor).
PREFETCH_BATCHES = 2


@dataclass(frozen=True)
class StreamSplit:
    """How the CPU budget is shared while training on streamed data, and why.

    ``workers``: decoding processes. ``cores``: the budget. ``torch_threads``:
    the model's threads while decoding keeps up with it or not, None on an
    accelerator (see ``ModelThreads``).
    """

    workers: int
    cores: int
    torch_threads: int | None
    reason: str


# The model's threads are raised to the whole budget when, over this many
# training batches (after the workers' first fill), it waited for data less
# than WAIT_SHARE of the time: decoding keeps up, and the model is what is slow.
PROBE_BATCHES = 8
WAIT_SHARE = 0.05
# Worker processes at most: each holds a forked copy of the training process.
MAX_WORKERS = 16


def stream_split(cores: int, accelerator: str, workers: int | None = None) -> StreamSplit:
    """Decoding workers and model threads for streamed training on ``cores`` cores.

    Every core decodes (at most MAX_WORKERS): a worker whose queue is full
    sleeps, leaving its core to the model. On the CPU the model starts on one
    thread: workers and model run at once, and a model on several threads
    waits at every layer for the cores the workers hold, burning the time
    they need (measured on 2 cores beside 2 workers: an epoch of lenet5 on
    2 threads took 8 times as long as on 1). Where
    the first batches show that the model, not decoding, is what is slow, it
    takes the whole budget (``ModelThreads``). On an accelerator the model
    needs a CPU thread only to launch its work. ``workers`` (``--workers``)
    fixes the worker count.
    """
    cores = max(1, int(cores))
    count = min(cores, MAX_WORKERS) if workers is None else int(workers)
    how = "--workers" if workers is not None else f"one per core of the budget, {cores}"
    if count == 0:  # decoded between the model's steps: no worker to share the cores with
        return StreamSplit(0, cores, None, "streamed data: decoded in the training process")
    if accelerator != "cpu":
        return StreamSplit(count, cores, None, f"streamed data: {count} decoding worker(s) ({how})")
    later = (
        f", all {cores} if the first batches show the model is slower than decoding"
        if cores > 1
        else ""
    )
    return StreamSplit(
        count,
        cores,
        1,
        f"streamed data: {count} decoding worker(s) ({how}) beside the model, "
        f"which computes on 1 torch thread{later}",
    )


class ModelThreads(Callback):
    """The model's torch threads while workers decode beside it (see ``stream_split``).

    Training starts with ``split.torch_threads`` (one) in the training thread.
    After the workers' first fill, PROBE_BATCHES batches measure how long the
    loop waits between batches (for data, mostly): under WAIT_SHARE of the
    time means decoding keeps up, and the model, now the slower, takes every
    core of the budget; the workers, whose queues are then full, sleep. The
    outcome is kept in ``decision`` (summary.json), and said on stderr when
    the model takes the budget. (Measured, lenet5 at 32×32 on 2 cores waited
    19% of the time and stays on one thread; simplecnn at 32×32, 4%.)
    """

    def __init__(self, split: StreamSplit) -> None:
        self.split = split
        self.skip = max(2, split.workers * PREFETCH_BATCHES)
        self.decision = split.reason
        self._lowered: ExitStack | None = None
        self._seen = 0
        self._waited = 0.0
        self._stepped = 0.0
        self._started: float | None = None
        self._ended: float | None = None
        self._done = split.torch_threads is None or split.torch_threads >= split.cores
        # The most threads the model may take now; a follower of the machine's load
        # (``follow``) sets the count within it.
        self.cap = split.torch_threads if split.torch_threads is not None else split.cores
        self._follower: Any = None
        self._apply: Any = None

    def follow(self, follower: Any) -> None:
        """Let ``follower`` set the model's threads, within ``cap``.

        ``follower``: what adapts the training thread's count to the machine's
        load (its ``current`` count; ``apply(n)`` sets one). It counts this
        run's workers as the run's own use, not as load, so left alone it
        would give the model the cores the workers decode on.
        """
        inner = follower.apply
        self._follower, self._apply = follower, inner
        follower.apply = lambda n: inner(min(n, self.cap))

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        from cnnkit.io.pipeline import torch_threads_at_most

        if self.split.torch_threads is None:
            return
        if self._follower is not None:
            self._apply(min(self._follower.current, self.cap))
            return
        self._lowered = ExitStack()
        self._lowered.enter_context(torch_threads_at_most(self.split.torch_threads))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._ended = None  # the gap since the last epoch's batch held validation

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int):
        self._started = time.perf_counter()
        if self._ended is not None and self._seen > self.skip:
            self._waited += self._started - self._ended

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._ended = time.perf_counter()
        self._seen += 1
        if self._done or self._seen <= self.skip or self._started is None:
            return
        self._stepped += self._ended - self._started
        if self._seen >= self.skip + PROBE_BATCHES:
            self._decide()

    def _decide(self) -> None:
        from cnnkit import console

        self._done = True
        share = self._waited / max(self._waited + self._stepped, 1e-9)
        if share >= WAIT_SHARE:
            self.decision = (
                f"{self.split.reason}: the model waited {share:.0%} of the time for data, "
                "so it stays on 1 thread"
            )
            return
        self.cap = self.split.cores
        if self._follower is not None:
            self._apply(self._follower.current)  # as many as the machine's load leaves
        self._restore()
        self.decision = (
            f"{self.split.reason}: the model waited {share:.0%} of the time for data, "
            f"so it computes on all {self.split.cores} threads"
        )
        console.info(
            f"the model is slower than decoding here (it waited {share:.0%} of the time for "
            f"data): it computes on all {self.split.cores} threads of the budget"
        )

    def _restore(self) -> None:
        if self._lowered is not None:
            self._lowered.close()
            self._lowered = None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore()


class EpochBatches(Sampler[tuple[np.ndarray, np.ndarray | None]]):
    """The batches of ``order`` for this rank, as (sample numbers, clip draws or None).

    Lightning calls ``set_epoch`` before each epoch (counting from 0, resumed
    runs included); the sampler runs in the training process, so the workers
    need not know the epoch.
    """

    def __init__(self, order: EpochOrder) -> None:
        self.order = order
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rank, size = world()
        for plan in self.order.plans(self.epoch, rank, size):
            uniform = plan.uniform.numpy() if plan.uniform is not None else None
            yield plan.samples().numpy(), uniform

    def __len__(self) -> int:
        return self.order.batches(world()[1])


class DecodedBatches:
    """A map-style dataset whose items are whole batches: key (sample numbers, draws)."""

    def __init__(self, files: FileDataset) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[np.ndarray, np.ndarray | None]):
        x, y = self.files.decode_batch(*key)
        return torch.from_numpy(x), torch.from_numpy(y)


def _as_is(batch: Any) -> Any:
    return batch


def streamed_loader(
    files: FileDataset,
    batch_size: int,
    *,
    train: bool,
    seed: int,
    workers: int,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of (uint8 x, int64 y) batches of ``files``, decoded by ``workers``."""
    order = EpochOrder(
        len(files),
        batch_size,
        shuffle=train,
        train=train,
        seed=seed,
        clips=files.frames is not None,
    )
    return DataLoader(
        DecodedBatches(files),
        batch_size=None,  # the sampler's items are whole batches
        sampler=EpochBatches(order),
        num_workers=workers,
        collate_fn=_as_is,
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
        pin_memory=pin_memory,
    )
