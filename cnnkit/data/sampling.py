"""Seeded, class-stratified choices of samples: ``--limit`` samples and validation splits.

Datasets often come sorted by class (torchvision's test files, folders walked
in order), so "the first N" of them can be a single class. Everything here
works on the label array alone and returns sample indices, so in-memory
tensors and file lists are sampled the same way.
"""

from __future__ import annotations

import numpy as np


def _quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainders).

    Every class present gets at least one sample when ``total`` allows it, so a
    small limit still shows the model every class.
    """
    n = int(counts.sum())
    if total >= n:
        return counts.copy()
    exact = counts * (total / n)
    quota = np.floor(exact).astype(np.int64)
    # Largest fractional parts first; ties go to the lower class index (stable sort).
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - int(quota.sum())]] += 1
    present = np.flatnonzero(counts > 0)
    if total >= len(present):
        for c in present[quota[present] == 0]:
            donor = int(np.argmax(quota))  # the biggest share can spare one
            quota[donor] -= 1
            quota[c] += 1
    return quota


def stratified_sample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices (sorted) of a seeded sample of at most ``limit`` items, per class in proportion.

    ``labels`` is (N,) ints. When ``limit >= N`` every index is returned.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.array([(labels == c).sum() for c in classes], dtype=np.int64)
    chosen = []
    for c, k in zip(classes, _quotas(counts, limit), strict=True):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.choice(members, size=int(k), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) sorted indices: ``fraction`` of each class held out, seeded.

    A class with two or more samples gives at least one to the held-out part
    (when ``fraction`` > 0), so every class can be validated.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = rng.permutation(len(members))
        n_held = int(round(len(members) * fraction))
        if fraction > 0 and n_held == 0 and len(members) >= 2:
            n_held = 1
        held.append(members[order[:n_held]])
        kept.append(members[order[n_held:]])
    if not kept:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
