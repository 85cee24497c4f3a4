"""Batches of tensors from a dataset split held in memory, and a batch iterator over them.

Small datasets (all of MNIST is 47 MB of uint8 pixels) are decoded once and
kept as one array (a ``cnnkit.data.arrays.Split``), which torch reads without
a copy. Batches are then index slices of it: there is no per-sample Python,
no collate and no worker processes, which is what makes the Lightning loop
as fast as a hand-written one. Normalisation and
augmentation happen later, on whole batches on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from cnnkit.data.arrays import Split
from cnnkit.data.clips import centred_start, frame_index, random_start


class SplitTensors(NamedTuple):
    """A Split's arrays as tensors sharing their memory (made once, no copy)."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None


def as_tensors(split: Split) -> SplitTensors:
    """``split``'s x, y and lengths as CPU tensors over the same memory."""
    lengths = torch.from_numpy(split.lengths) if split.lengths is not None else None
    return SplitTensors(torch.from_numpy(split.x), torch.from_numpy(split.y), lengths)


def gather_batch(
    split: Split,
    index: torch.Tensor,
    train: bool,
    generator: torch.Generator | None = None,
    tensors: SplitTensors | None = None,
    uniform: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 inputs and int64 labels of ``split`` at ``index`` (1-D int64).

    Images: (B, C, H, W). Clips: (B, C, T, H, W) of T consecutive frames,
    starting at a random frame when ``train`` (from ``uniform``, B draws in
    [0, 1), else drawn from ``generator``), else centred in the video, as eval
    does (see ``cnnkit.data.clips``).
    ``tensors``: ``as_tensors(split)``, made once by a caller that gathers
    every step.
    """
    t = tensors if tensors is not None else as_tensors(split)
    y = t.y[index]
    if split.frames is None or t.lengths is None:
        return t.x[index], y
    frames = split.frames
    lengths = t.lengths[index].numpy()
    if train:
        if uniform is None:
            uniform = torch.rand(len(index), generator=generator)
        start = random_start(lengths, frames, uniform.numpy())
    else:
        start = centred_start(lengths, frames)
    # (B, T) frame numbers; a video shorter than T repeats its last frame.
    frame_idx = torch.from_numpy(frame_index(start, frames, lengths))
    clips = t.x[index[:, None], :, frame_idx]  # (B, T, C, H, W) by advanced indexing
    return clips.permute(0, 2, 1, 3, 4).contiguous(), y


def split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split ``split`` into (rest, held-out ``fraction``) with a seeded permutation.

    The permutation is torch's (seeded torch.Generator), so a seed holds out
    the same samples it always has.
    """
    n = len(split)
    n_val = max(1, int(round(n * fraction)))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).numpy()
    return split.subset(np.sort(perm[n_val:])), split.subset(np.sort(perm[:n_val]))


class BatchPlan(NamedTuple):
    """One batch of an epoch: which samples, and the draws of training clips' starts.

    ``index``: (B,) int64 sample numbers, or None for the samples ``start`` to
    ``stop`` in order (an empty range: a padding batch, see ``EpochOrder``).
    ``uniform``: (B,) draws in [0, 1) that place each training clip (random_start).
    """

    index: torch.Tensor | None
    start: int
    stop: int
    uniform: torch.Tensor | None

    def samples(self) -> torch.Tensor:
        """The sample numbers of this batch, as (B,) int64."""
        return self.index if self.index is not None else torch.arange(self.start, self.stop)


class EpochOrder:
    """The batches of each epoch of a split: the one order of in-memory and streamed data.

    Shuffles with ``seed + epoch``, so runs repeat exactly, and training clips
    draw their start from the same generator, batch after batch: data held in
    memory and data decoded from the files as training goes get the same
    samples in the same order. Under torch.distributed each rank takes every
    ``world``-th batch of the same permutation. For training the last ranks
    are padded by wrapping around, so all ranks run the same number of steps,
    which DDP needs to avoid hanging; for evaluation (``train=False``) they
    are padded with empty batches instead (every rank still runs the same
    number of forward passes, whose buffer broadcasts must pair up), so every
    sample is counted exactly once over all ranks.

    ``steps_per_batch`` > 1 (one process only) makes each batch
    ``steps_per_batch`` consecutive batches of the permutation: the trainer's
    loop then runs once for several optimizer steps, which the module takes
    on ``batch_size`` slices in order. The slices are exactly the batches
    ``steps_per_batch=1`` would give, so the steps are the same.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        train: bool,
        seed: int = 0,
        clips: bool = False,
        drop_last: bool = False,
        steps_per_batch: int = 1,
    ) -> None:
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.train = train
        self.seed = seed
        self.clips = clips
        self.drop_last = drop_last
        self.steps_per_batch = max(1, int(steps_per_batch))

    def _group(self, world: int) -> int:
        # Under DDP every rank must take the same number of optimizer steps;
        # one step per batch keeps that true whatever the last batch holds.
        return self.batch_size * (self.steps_per_batch if world == 1 else 1)

    def _samples(self) -> int:
        return self.n - self.n % self.batch_size if self.drop_last else self.n

    def batches(self, world: int) -> int:
        """Batches of an epoch on each of ``world`` ranks."""
        total = -(-self._samples() // self._group(world))
        return -(-total // world)

    def plans(self, epoch: int, rank: int = 0, world: int = 1) -> Iterator[BatchPlan]:
        """The batches of ``epoch`` for ``rank`` of ``world``, in order."""
        n = self._samples()
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else None
        size = self._group(world)
        total = -(-n // size)
        for i in range(self.batches(world)):
            b = i * world + rank
            if b >= total and not self.train:
                yield BatchPlan(None, 0, 0, None)  # padding: no sample counted twice
                continue
            b %= max(total, 1)  # training wraps around to pad the last ranks
            start, stop = b * size, min((b + 1) * size, n)
            index = order[start:stop] if order is not None else None
            uniform = None
            if self.clips and self.train:  # drawn batch after batch, from the same generator
                uniform = torch.rand(stop - start, generator=g)
            yield BatchPlan(index, start, stop, uniform)


def world() -> tuple[int, int]:
    """(rank, world size) of this process under torch.distributed; (0, 1) without it."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class InMemoryBatches:
    """Iterable of (x uint8, y int64) tensor batches sliced from a Split.

    The batches of each epoch are those of ``EpochOrder`` (which see): shuffled
    with ``seed + epoch`` each time it is iterated, so runs repeat exactly,
    sharded over DDP ranks, and grouped ``steps_per_batch`` at a time.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool,
        train: bool,
        seed: int = 0,
        drop_last: bool = False,
        steps_per_batch: int = 1,
    ) -> None:
        self.split = split
        # Torch views of the split's arrays, made once: every step gathers from them.
        self.tensors = as_tensors(split)
        self.batch_size = batch_size
        self.train = train
        self.order = EpochOrder(
            len(split),
            batch_size,
            shuffle=shuffle,
            train=train,
            seed=seed,
            clips=split.frames is not None,
            drop_last=drop_last,
            steps_per_batch=steps_per_batch,
        )
        self.epoch = 0

    def _world(self) -> tuple[int, int]:
        return world()

    def __len__(self) -> int:
        _, size = self._world()
        return self.order.batches(size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, size = self._world()
        epoch, self.epoch = self.epoch, self.epoch + 1
        x, y = self.tensors.x, self.tensors.y
        for plan in self.order.plans(epoch, rank, size):
            if plan.index is None and self.split.frames is None:
                # Contiguous slices are views: no gather needed for plain evaluation of images.
                yield x[plan.start : plan.stop], y[plan.start : plan.stop]
                continue
            yield gather_batch(
                self.split, plan.samples(), self.train, tensors=self.tensors, uniform=plan.uniform
            )
