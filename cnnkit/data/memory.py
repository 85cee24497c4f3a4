"""Datasets held in memory as uint8 tensors, and a batch iterator over them.

Small datasets (all of MNIST is 47 MB of uint8 pixels) are decoded once and
kept as one tensor. Batches are then index slices of that tensor: there is no
per-sample Python, no collate and no worker processes, which is what makes
the Lightning loop as fast as a hand-written one. Normalisation and
augmentation happen later, on whole batches on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from cnnkit.data.clips import centred_start, frame_index, random_start


@dataclass
class TensorSplit:
    """One split of a dataset, decoded.

    ``x``: uint8 images (N, C, H, W), or clips (N, C, L, H, W) where ``L`` is
    the number of stored frames per video (shorter videos are padded with
    their last frame and ``lengths`` says how many are real). ``y``: int64
    labels (N,). ``frames``: the clip length T a batch gets; ``None`` for images.
    ``paths``: the file each sample was decoded from, when it came from files.
    """

    x: torch.Tensor
    y: torch.Tensor
    frames: int | None = None
    lengths: torch.Tensor | None = None
    paths: list[str] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor) -> TensorSplit:
        """The samples at ``index`` (1-D int64), as a new split (copies)."""
        lengths = self.lengths[index] if self.lengths is not None else None
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return TensorSplit(self.x[index], self.y[index], self.frames, lengths, paths)

    def batch(
        self, index: torch.Tensor, train: bool, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 inputs and labels at ``index``.

        Images: (B, C, H, W). Clips: (B, C, T, H, W) of T consecutive frames,
        starting at a random frame when ``train`` (drawn from ``generator``),
        else centred in the video, as eval does (see ``cnnkit.data.clips``).
        """
        y = self.y[index]
        if self.frames is None or self.lengths is None:
            return self.x[index], y
        t = self.frames
        lengths = self.lengths[index].numpy()
        if train:
            start = random_start(lengths, t, torch.rand(len(index), generator=generator).numpy())
        else:
            start = centred_start(lengths, t)
        # (B, T) frame numbers; a video shorter than T repeats its last frame.
        frame_idx = torch.from_numpy(frame_index(start, t, lengths))
        clips = self.x[index[:, None], :, frame_idx]  # (B, T, C, H, W) by advanced indexing
        return clips.permute(0, 2, 1, 3, 4).contiguous(), y


def split_off(split: TensorSplit, fraction: float, seed: int) -> tuple[TensorSplit, TensorSplit]:
    """Split ``split`` into (rest, held-out ``fraction``) with a seeded permutation."""
    n = len(split)
    n_val = max(1, int(round(n * fraction)))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return split.subset(perm[n_val:].sort().values), split.subset(perm[:n_val].sort().values)


class InMemoryBatches:
    """Iterable of (x uint8, y int64) batches sliced from a TensorSplit.

    Shuffles with ``seed + epoch`` each time it is iterated, so runs repeat
    exactly. Under torch.distributed each rank takes every ``world_size``-th
    batch of the same permutation. For training the last ranks are padded by
    wrapping around, so all ranks run the same number of steps, which DDP
    needs to avoid hanging; for evaluation (``train=False``) they are padded
    with empty batches instead (every rank still runs the same number of
    forward passes, whose buffer broadcasts must pair up), so every sample is
    counted exactly once over all ranks.

    ``steps_per_batch`` > 1 (one process only) hands out ``steps_per_batch``
    consecutive batches of the permutation as one: the trainer's loop then
    runs once for several optimizer steps, which the module takes on
    ``batch_size`` slices in order. The slices are exactly the batches
    ``steps_per_batch=1`` would give, so the steps are the same.
    """

    def __init__(
        self,
        split: TensorSplit,
        batch_size: int,
        *,
        shuffle: bool,
        train: bool,
        seed: int = 0,
        drop_last: bool = False,
        steps_per_batch: int = 1,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.train = train
        self.seed = seed
        self.drop_last = drop_last
        self.steps_per_batch = max(1, int(steps_per_batch))
        self.epoch = 0

    def _world(self) -> tuple[int, int]:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _group(self, world: int) -> int:
        # Under DDP every rank must take the same number of optimizer steps;
        # one step per batch keeps that true whatever the last batch holds.
        return self.batch_size * (self.steps_per_batch if world == 1 else 1)

    def _samples(self) -> int:
        n = len(self.split)
        return n - n % self.batch_size if self.drop_last else n

    def __len__(self) -> int:
        _, world = self._world()
        total = -(-self._samples() // self._group(world))
        return -(-total // world)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self._samples()
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.split), generator=g) if self.shuffle else None
        rank, world = self._world()
        size = self._group(world)
        total = -(-n // size)
        per_rank = -(-total // world)
        for i in range(per_rank):
            b = i * world + rank
            if b >= total and not self.train:
                yield self.split.x[:0], self.split.y[:0]  # padding: no sample counted twice
                continue
            b %= max(total, 1)  # training wraps around to pad the last ranks
            start, stop = b * size, min((b + 1) * size, n)
            if order is None and self.split.frames is None:
                # Contiguous slices are views: no gather needed for plain evaluation of images.
                yield self.split.x[start:stop], self.split.y[start:stop]
                continue
            index = order[start:stop] if order is not None else torch.arange(start, stop)
            yield self.split.batch(index, self.train, g)
