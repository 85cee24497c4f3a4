"""The LightningDataModule: batches from a LoadedDataset, in memory or from files.

In-memory splits are served by InMemoryBatches (tensor slices, no workers);
file-backed splits by a DataLoader with workers that decode in parallel, to
which Lightning adds a DistributedSampler under DDP.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.folders import collate_skipping
from cnnkit.data.memory import InMemoryBatches, TensorSplit


def default_workers() -> int:
    """Decoding workers for file-backed data: all cores but one, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class ClassifierDataModule(L.LightningDataModule):
    """Serves the train/val/test splits of ``dataset`` as (uint8 x, int64 y) batches."""

    def __init__(
        self,
        dataset: LoadedDataset,
        batch_size: int,
        workers: int | None = None,
        seed: int = 0,
        steps_per_batch: int = 1,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.workers = default_workers() if workers is None else workers
        self.seed = seed
        # In-memory splits only: batches handed out together (see InMemoryBatches).
        self.steps_per_batch = steps_per_batch

    def _loader(self, split: str, train: bool) -> Any:
        data = self.dataset.splits[split]
        if isinstance(data, TensorSplit):
            return InMemoryBatches(
                data,
                self.batch_size,
                shuffle=train,
                train=train,
                seed=self.seed,
                steps_per_batch=self.steps_per_batch,
            )
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.workers,
            collate_fn=collate_skipping,
            persistent_workers=self.workers > 0,
            pin_memory=False,
        )

    def train_dataloader(self) -> Any:
        return self._loader("train", train=True)

    def val_dataloader(self) -> Any:
        return self._loader("val", train=False)

    def test_dataloader(self) -> Any:
        return self._loader("test", train=False)

    def optimizer_steps_per_epoch(self) -> int | None:
        """Training batches of ``batch_size`` in an epoch (one process), if in memory."""
        data = self.dataset.splits["train"]
        if isinstance(data, TensorSplit):
            return -(-len(data) // self.batch_size)
        return None

    def has_test(self) -> bool:
        return "test" in self.dataset.splits
