"""The LightningDataModule: batches from a LoadedDataset, in memory or from files.

In-memory splits are served by InMemoryBatches (tensor slices, no workers);
file-backed splits by worker processes that decode a batch at a time
(``cnnkit.data.streaming``). Both take their batches from ``EpochOrder``: the
same seed gives the same samples in the same order either way.

Under DDP the data is sharded here rather than by Lightning (the Trainer has
``use_distributed_sampler=False``): each rank takes every world-th batch;
training pads the last ranks by wrapping around, so that every rank takes the
same number of steps, while validation pads them with empty batches, so
that the metrics, reduced over ranks, count every sample once.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from cnnkit.data.arrays import Split
from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.memory import InMemoryBatches


def default_workers() -> int:
    """Decoding workers for file-backed data: one per core of the CPU budget."""
    from cnnkit.io.cpu import cpu_budget

    return cpu_budget().cores


class ClassifierDataModule(L.LightningDataModule):
    """Serves the train/val/test splits of ``dataset`` as (uint8 x, int64 y) batches.

    ``pin_memory``: file-backed batches land in pinned memory (for a CUDA device).
    """

    def __init__(
        self,
        dataset: LoadedDataset,
        batch_size: int,
        workers: int | None = None,
        seed: int = 0,
        steps_per_batch: int = 1,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else workers
        self.seed = seed
        # In-memory splits only: batches handed out together (see InMemoryBatches).
        self.steps_per_batch = steps_per_batch
        self.pin_memory = pin_memory

    def _loader(self, split: str, train: bool) -> Any:
        if split not in self.dataset.splits:
            return []  # no validation split (--val-split 0): Lightning skips the loop
        data = self.dataset.splits[split]
        if isinstance(data, Split):
            return InMemoryBatches(
                data,
                self.batch_size,
                shuffle=train,
                train=train,
                seed=self.seed,
                steps_per_batch=self.steps_per_batch,
            )
        from cnnkit.data.streaming import streamed_loader

        return streamed_loader(
            data,
            self.batch_size,
            train=train,
            seed=self.seed,
            workers=self.workers,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> Any:
        return self._loader("train", train=True)

    def val_dataloader(self) -> Any:
        return self._loader("val", train=False)

    def optimizer_steps_per_epoch(self) -> int | None:
        """Training batches of ``batch_size`` in an epoch (one process), if in memory."""
        data = self.dataset.splits["train"]
        if isinstance(data, Split):
            return -(-len(data) // self.batch_size)
        return None
