"""The LightningDataModule: batches from a LoadedDataset, in memory or from files.

In-memory splits are served by InMemoryBatches (tensor slices, no workers);
file-backed splits by a DataLoader with workers that decode in parallel, whose
training sampler hands each index out with its epoch (``EpochSampler``).

Under DDP the data is sharded here rather than by Lightning (the Trainer has
``use_distributed_sampler=False``): training takes a DistributedSampler, which
pads the last ranks so that every rank takes the same number of steps, while
validation takes each sample on exactly one rank, so that the metrics,
reduced over ranks, count every sample once.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from cnnkit.data.arrays import Split
from cnnkit.data.dataset import LoadedDataset
from cnnkit.data.folders import collate_skipping
from cnnkit.data.memory import InMemoryBatches


def _world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardSampler(Sampler[int]):
    """Samples ``rank, rank + world, ...`` in order: each sample on exactly one rank.

    Every rank gets the same count (DDP pairs up each forward pass's buffer
    broadcast across ranks), so the shorter shards end with PAD, which
    ``SkipPadding`` turns into a skipped sample rather than a repeated one.
    """

    PAD = -1

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.length, self.rank, self.world = length, rank, world

    def __iter__(self):
        own = list(range(self.rank, self.length, self.world))
        return iter(own + [self.PAD] * (len(self) - len(own)))

    def __len__(self) -> int:
        return -(-self.length // self.world)


class SkipPadding:
    """A map-style dataset whose item ``ShardSampler.PAD`` is None (dropped by the collate)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Any:
        return None if i == ShardSampler.PAD else self.data[i]


class EpochSampler(Sampler[tuple[int, int]]):
    """(index, epoch) for each index of ``base``: the epoch reaches the DataLoader workers.

    A FileDataset draws its random choices from the seed, the epoch and the
    index. Persistent workers are processes that never see an attribute the
    main process changes, but they do receive every index, so the epoch rides
    along. Lightning calls ``set_epoch`` on a DataLoader's sampler before each
    epoch (as for a DistributedSampler, which ``base`` may be and which gets
    the call too), counting epochs from 0, resumed runs included.
    """

    def __init__(self, base: Sampler[int]) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        set_base = getattr(self.base, "set_epoch", None)
        if callable(set_base):
            set_base(epoch)

    def __iter__(self):
        epoch = self.epoch
        return ((index, epoch) for index in self.base)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


def default_workers() -> int:
    """Decoding workers for file-backed data: all cores but one, at most 8."""
    from cnnkit.io.cpu import cpu_budget

    return max(1, min(8, cpu_budget().cores - 1))


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
        rank, world = _world()
        sampler: Any = None
        if train:
            # Shuffled as DataLoader(shuffle=True) would, from torch's seeded global RNG.
            base = (
                DistributedSampler(data, world, rank, shuffle=True, seed=self.seed)
                if world > 1
                else RandomSampler(data)
            )
            sampler = EpochSampler(base)
        elif world > 1:
            sampler = ShardSampler(len(data), rank, world)
            data = SkipPadding(data)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.workers,
            collate_fn=collate_skipping,
            persistent_workers=self.workers > 0,
            pin_memory=False,
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
