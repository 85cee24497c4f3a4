"""Whether ``torch.compile`` pays for cnnkit's training step on this machine.

cnnkit trains eagerly. This measures the alternative on the lecture's models:
simplecnn and lenet5, batch 64 of 1x28x28, AdamW, channels_last, with bf16
autocast (what ``--precision auto`` picks on a CPU with native bf16) and in
float32. For each: the time to the first finished step (compilation
included) and the steady training throughput afterwards.

    python benchmarks/bench_compile.py

Compiling pays only when (eager step - compiled step) x steps of a run
exceeds the compile time; with a slower compiled step it never does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnkit.models.registry import create_model  # noqa: E402


def run(name: str, compiled: bool, bf16: bool, steps: int = 150) -> tuple[float, float]:
    """Seconds to the first step, then images/s over ``steps`` steps."""
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, input_size=(1, 28, 28))
    m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    fwd = torch.compile(m) if compiled else m
    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return first, steps * 64 / (time.perf_counter() - t0)


def main() -> None:
    for name in ("simplecnn", "lenet5"):
        for bf16 in (True, False):
            for compiled in (False, True):
                first, rate = run(name, compiled, bf16)
                print(
                    f"{name} {'bf16' if bf16 else 'float32'} "
                    f"{'compiled' if compiled else 'eager'}: first step {first:.2f} s, "
                    f"{rate:.0f} images/s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
