"""Throughput of ``cnnkit train`` against a hand-written in-memory PyTorch loop.

Both train ``lenet5`` on the same MNIST-sized data (IDX files in torchvision's
layout: the real files with --data-dir, else synthetic 28x28 digits-shaped
noise, which trains at exactly the same speed), with batch size 64, AdamW,
label smoothing 0.1 and a per-step cosine schedule, for the same epochs,
and both validate on the same 10% hold-out after every epoch and save a
checkpoint. cnnkit's
figure is its own ``images_per_second`` (training samples / wall time of
the whole fit); the hand loop is timed the same way. Augmentation is off in
both (``--no-augment``), so the loops do the same work.

The two alternate, round after round. On a shared machine the speed of the
CPU itself drifts by 10-20% from minute to minute, so the headline is the
median over rounds of each round's ratio (the two runs of a round are
neighbours in time and see much the same machine; which goes first
alternates); the ratio of the best run of each side is printed too.

    python benchmarks/bench_train.py                 # 60,000 synthetic images, 2 epochs
    python benchmarks/bench_train.py --data-dir /tmp/digits --epochs 3
    python benchmarks/bench_train.py --model simplecnn --data-dir /tmp/digits --epochs 10

The hand loop is plain contiguous float32; cnnkit computes as ``--precision
auto`` decides (bf16 autocast and channels_last where the CPU has native
bf16), so the ratio includes that choice; ``--precision 32`` measures the
float32 path alone.

``--floor`` compares instead with the loop a user writes first (Adam, batch
64, no validation, no checkpoint, no augmentation) while cnnkit runs with its
defaults (augmentation on, validation and checkpoints every epoch):

    python benchmarks/bench_train.py --floor --data-dir /tmp/digits --epochs 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BATCH = 64
LABEL_SMOOTHING = 0.1  # cnnkit's default for images, given explicitly to both


def write_synthetic_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for name, arr in (
            (f"{prefix}-images-idx3-ubyte", images),
            (f"{prefix}-labels-idx1-ubyte", labels),
        ):
            header = struct.pack(">BBBB", 0, 0, 8, arr.ndim)
            header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
            (raw / name).write_bytes(header + arr.tobytes())


def run_cnnkit(data_dir: Path, epochs: int, out: Path, model: str = "lenet5",
               precision: str | None = None) -> dict:  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "cnnkit",
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        str(data_dir),
        "--model",
        model,
        "--batch-size",
        str(BATCH),
        "--epochs",
        str(epochs),
        "--no-augment",
        "--label-smoothing",
        str(LABEL_SMOOTHING),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
        "--quiet",
        *(["--precision", precision] if precision else []),
    ]
    print("$ " + " ".join(cmd[2:]), file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"cnnkit train failed:\n{result.stderr}")
    return json.loads(result.stdout)


def run_hand_loop(
    data_dir: Path, epochs: int, out: Path, seed: int = 0, model_name: str = "lenet5"
) -> dict:
    """The loop an expert writes: tensors in memory, index slices, no DataLoader.

    Plain contiguous float32: the reference cnnkit's precision and layout
    choices (cnnkit.precision) are measured against.
    """
    from torchvision.datasets import MNIST

    from cnnkit.models.registry import create_model

    ds = MNIST(str(data_dir), train=True, download=False)
    x_all, y_all = ds.data.unsqueeze(1), ds.targets  # (N, 1, 28, 28) uint8, (N,)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y_all), generator=g)
    n_val = round(len(y_all) * 0.1)
    x_val, y_val = x_all[perm[:n_val]], y_all[perm[:n_val]]
    x_tr, y_tr = x_all[perm[n_val:]], y_all[perm[n_val:]]
    mean, std = x_tr.float().mean() / 255, x_tr.float().std() / 255

    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=10, in_channels=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    steps = epochs * math.ceil(len(y_tr) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - mean) / std

    start = time.perf_counter()
    for _epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_tr), generator=g)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(
                model(prep(x_tr[idx])), y_tr[idx], label_smoothing=LABEL_SMOOTHING
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(y_val), BATCH):
                correct += int(
                    (model(prep(x_val[i : i + BATCH])).argmax(1) == y_val[i : i + BATCH]).sum()
                )
        torch.save(model.state_dict(), out / "hand_last.pt")
    seconds = time.perf_counter() - start
    return {
        "train_seconds": seconds,
        "images_per_second": len(y_tr) * epochs / seconds,
        "val_acc": correct / len(y_val),
    }


def run_bare_floor(data_dir: Path, epochs: int, seed: int = 0) -> dict:
    """The loop a user writes first: Adam, batch 64, no validation, no checkpoint, nothing else.

    The same training samples as cnnkit's (the 90% left after its validation
    split), so images per second count the same work.
    """
    from torchvision.datasets import MNIST

    from cnnkit.models.registry import create_model

    ds = MNIST(str(data_dir), train=True, download=False)
    x_all, y_all = ds.data.unsqueeze(1), ds.targets
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y_all), generator=g)
    n_val = round(len(y_all) * 0.1)
    x_tr, y_tr = x_all[perm[n_val:]], y_all[perm[n_val:]]
    torch.manual_seed(seed)
    model = create_model("lenet5", num_classes=10, in_channels=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _epoch in range(epochs):
        order = torch.randperm(len(y_tr), generator=g)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(model(x_tr[idx].float() / 255), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    return {"train_seconds": seconds, "images_per_second": len(y_tr) * epochs / seconds}


def run_cnnkit_defaults(data_dir: Path, epochs: int, out: Path) -> dict:
    """``cnnkit train --dataset mnist --model lenet5 --epochs N``, all else default."""
    cmd = [
        sys.executable, "-m", "cnnkit", "train", "--dataset", "mnist", "--data-dir",
        str(data_dir), "--model", "lenet5", "--epochs", str(epochs), "--device", "cpu",
        "--out", str(out), "--json", "--quiet",
    ]  # fmt: skip
    print("$ " + " ".join(cmd[2:]), file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"cnnkit train failed:\n{result.stderr}")
    return json.loads(result.stdout)


def floor_rounds(data_dir: Path, epochs: int, repeats: int, tmp: Path) -> list[float]:
    """Alternating rounds of cnnkit's defaults against the bare floor; the ratio of each round."""
    ratios = []
    for i in range(repeats):
        if i % 2 == 0:
            bare = run_bare_floor(data_dir, epochs)
        ours = run_cnnkit_defaults(data_dir, epochs, tmp / f"floor{i}")
        if i % 2 == 1:
            bare = run_bare_floor(data_dir, epochs)
        ratios.append(ours["images_per_second"] / bare["images_per_second"])
        print(
            f"floor round {i + 1}: bare {bare['images_per_second']:.0f}, cnnkit defaults "
            f"{ours['images_per_second']:.0f} images/s, ratio {ratios[-1]:.2f}x"
        )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="folder with MNIST/raw/*-ubyte files")
    parser.add_argument("--images", type=int, default=60000, help="synthetic training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds")
    parser.add_argument("--model", default="lenet5", help="the model both loops train")
    parser.add_argument("--precision", help="cnnkit's --precision (default: its own choice, auto)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="instead: cnnkit's defaults (augmentation on, validation and checkpoints every "
        "epoch) against the bare floor loop (Adam, no validation, no checkpoint)",
    )
    args = parser.parse_args()
    if args.floor:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = args.data_dir
            if data_dir is None:
                data_dir = Path(tmp) / "data"
                write_synthetic_mnist(data_dir, args.images, args.images // 6)
            ratios = floor_rounds(data_dir, args.epochs, args.repeats, Path(tmp))
        print(
            "ratio cnnkit defaults / bare floor (median of rounds): "
            f"{statistics.median(ratios):.2f}x"
        )
        return

    hands, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = tmp / "data"
            write_synthetic_mnist(data_dir, args.images, args.images // 6)
        for i in range(args.repeats):
            # Who goes first alternates too, so a steady drift favours neither.
            if i % 2 == 0:
                hands.append(run_hand_loop(data_dir, args.epochs, tmp, model_name=args.model))
            runs.append(
                run_cnnkit(data_dir, args.epochs, tmp / f"runs{i}", args.model, args.precision)
            )
            if i % 2 == 1:
                hands.append(run_hand_loop(data_dir, args.epochs, tmp, model_name=args.model))
    ratios = []
    for i, (h, c) in enumerate(zip(hands, runs, strict=True)):
        ratios.append(c["images_per_second"] / h["images_per_second"])
        print(
            f"round {i + 1}: hand {h['images_per_second']:.0f}, "
            f"cnnkit {c['images_per_second']:.0f} images/s, ratio {ratios[-1]:.2f}x"
        )
    hand = max(hands, key=lambda r: r["images_per_second"])
    cnnkit = max(runs, key=lambda r: r["images_per_second"])
    best_ratio = cnnkit["images_per_second"] / hand["images_per_second"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"data: {data_dir if args.data_dir else 'synthetic'}; {args.model}, batch {BATCH}, "
        f"{args.epochs} epochs, validation + checkpoint every epoch"
    )
    print(
        f"cnnkit's accuracy (val, last round): {runs[-1]['metrics'].get('val_acc')}; "
        f"hand loop's: {hands[-1]['val_acc']:.4f}"
    )
    print(
        f"hand-written loop: {hand['images_per_second']:8.0f} images/s "
        f"({hand['train_seconds']:.1f} s, best of {args.repeats})"
    )
    print(
        f"cnnkit train:      {cnnkit['images_per_second']:8.0f} images/s "
        f"({cnnkit['train_seconds']:.1f} s, best of {args.repeats})"
    )
    print(f"ratio of the bests: {best_ratio:.2f}x")
    print(f"ratio cnnkit / hand (median of rounds): {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
