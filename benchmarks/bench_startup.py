"""How long ``cnnkit --help`` takes, against ``python -c "import torch"`` (goal: under 0.35x).

Both run as fresh processes; the best of N runs each (interleaved, so that a
busy moment on a shared machine hits both alike). Also checks that ``--help``
did not import torch. Run: ``python benchmarks/bench_startup.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    commands = {
        "cnnkit --help": [sys.executable, "-m", "cnnkit", "--help"],
        "cnnkit convolve --help": [sys.executable, "-m", "cnnkit", "convolve", "--help"],
        "import torch": [sys.executable, "-c", "import torch"],
    }
    best = {name: float("inf") for name in commands}
    for cmd in commands.values():
        wall(cmd)  # warm the file cache
    for _ in range(args.runs):
        for name, cmd in commands.items():
            best[name] = min(best[name], wall(cmd))
    check = "import sys, cnnkit.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True)
    torch_s = best["import torch"]
    for name in commands:
        ratio = best[name] / torch_s
        print(f"{name:24s} {best[name] * 1000:7.1f} ms  ({ratio:.2f}x import torch)")
    print("cnnkit.cli does not import torch: ok")


if __name__ == "__main__":
    main()
