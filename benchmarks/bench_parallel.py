"""Several ``cnnkit train`` jobs on one machine: together against one after the other.

Batch jobs (``parallel``, ``xargs -P``, job arrays) start several trainings on
one machine, and other programs keep cores busy. Each scenario is timed as
the wall time until its last job ends, all jobs the same command (lenet5 on
MNIST-shaped data, in memory, ``--epochs N``):

- ``two together / two in a row``: goal at most 0.75 (running side by side
  pays off); ``three together / three in a row`` the same with three;
- ``alone / best fixed count alone``: cnnkit's own thread choice against the
  faster of ``OMP_NUM_THREADS=1`` and ``=<cores>`` for one job alone (goal
  at most 1.05). The three are timed in turn, ``--alone-repeats`` times a
  round in a rotating order, and compared by their medians over all rounds
  (the faster of two single runs would be biased low against one run);
- ``beside a busy core / OMP_NUM_THREADS=1 beside it``: one job while another
  process keeps one core busy (goal at most 1.3).

Each is measured with cnnkit's policy (the default: threads follow the load,
cnnkit.io.cpuload) and with the count fixed at every core
(``CNNKIT_THREADS=<cores>``, what cnnkit did before it followed the load).
Rounds repeat the scenarios in turn; the figures are medians of the rounds'
ratios.

    python benchmarks/bench_parallel.py                      # 3 rounds, 3 epochs
    python benchmarks/bench_parallel.py --data-dir /tmp/digits --epochs 10 --rounds 3
    python benchmarks/bench_parallel.py --only alone --rounds 2   # one scenario
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import write_synthetic_mnist  # noqa: E402

CORES = len(os.sched_getaffinity(0))
BURN = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end: pass\n"


def command(data_dir: Path, epochs: int, out: Path, model: str) -> list[str]:
    return [
        sys.executable, "-m", "cnnkit", "train", "--dataset", "mnist", "--data-dir",
        str(data_dir), "--model", model, "--epochs", str(epochs), "--device", "cpu",
        "--out", str(out), "--quiet",
    ]  # fmt: skip


def env_with(**values: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "CNNKIT_THREADS")}
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def together(cmds: list[list[str]], env: dict[str, str]) -> float:
    """Seconds until the last of ``cmds``, all started at once, has ended."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL) for c in cmds]
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"cnnkit train failed: {' '.join(p.args)}")
    return time.perf_counter() - start


def in_a_row(cmds: list[list[str]], env: dict[str, str]) -> float:
    return sum(together([c], env) for c in cmds)


def beside_busy_core(cmd: list[str], env: dict[str, str]) -> float:
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        time.sleep(0.5)  # the core is busy before the job starts, as a running program's is
        return together([cmd], env)
    finally:
        burner.kill()
        burner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="folder with MNIST/raw/*-ubyte files")
    parser.add_argument("--images", type=int, default=4000, help="synthetic training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--quick", action="store_true", help="1 round, no three-job scenario")
    parser.add_argument("--alone-repeats", type=int, default=2, help="alone runs per round")
    parser.add_argument(
        "--only", choices=("two", "three", "alone", "busy"), action="append",
        help="measure only these scenarios (repeatable; default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    wanted = set(args.only or ("two", "three", "alone", "busy"))
    if args.quick:
        wanted.discard("three")
    rounds = 1 if args.quick else args.rounds
    policies = {"cnnkit": env_with(), "fixed": env_with(CNNKIT_THREADS=str(CORES))}
    ratios: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        ratios.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = tmp_path / "data"
            write_synthetic_mnist(data_dir, args.images, args.images // 4)
        n = [0]

        def cmd() -> list[str]:
            n[0] += 1
            return command(data_dir, args.epochs, tmp_path / f"runs{n[0]}", args.model)

        alone_times: dict[str, list[float]] = {}
        alone_envs = {f"OMP_NUM_THREADS={k}": env_with(OMP_NUM_THREADS=str(k)) for k in {1, CORES}}
        alone_envs.update(policies)
        for r in range(rounds):
            if "alone" in wanted:
                names = list(alone_envs)
                for rep in range(args.alone_repeats):
                    shift = (r * args.alone_repeats + rep) % len(names)
                    for name in names[shift:] + names[:shift]:
                        seconds = together([cmd()], alone_envs[name])
                        alone_times.setdefault(name, []).append(seconds)
                print(
                    f"round {r + 1} alone: "
                    + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in alone_times.items()),
                    flush=True,
                )
            for name, env in policies.items():
                line = [f"round {r + 1} {name}:"]
                if "two" in wanted:
                    two_row = in_a_row([cmd(), cmd()], env)
                    two_together = together([cmd(), cmd()], env)
                    note(f"{name}: two together / two in a row", two_together / two_row)
                    line.append(f"two in a row {two_row:.1f} s, together {two_together:.1f} s;")
                if "three" in wanted:
                    three_row = in_a_row([cmd(), cmd(), cmd()], env)
                    three_together = together([cmd(), cmd(), cmd()], env)
                    note(f"{name}: three together / three in a row", three_together / three_row)
                    line.append(
                        f"three in a row {three_row:.1f} s, together {three_together:.1f} s;"
                    )
                if "busy" in wanted:
                    busy = beside_busy_core(cmd(), env)
                    busy_one = beside_busy_core(cmd(), env_with(OMP_NUM_THREADS="1"))
                    note(
                        f"{name}: beside a busy core / OMP_NUM_THREADS=1 beside it",
                        busy / busy_one,
                    )
                    line.append(
                        f"beside a busy core {busy:.1f} s (OMP_NUM_THREADS=1: {busy_one:.1f} s)"
                    )
                if len(line) > 1:
                    print(" ".join(line), flush=True)
        if alone_times:
            medians = {k: statistics.median(v) for k, v in alone_times.items()}
            best = min(v for k, v in medians.items() if k.startswith("OMP_NUM_THREADS"))
            for name in policies:
                note(f"{name}: alone / best fixed count alone", medians[name] / best)
            print(
                "alone, medians: " + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()),
                flush=True,
            )
    print(
        f"machine: {CORES} cores, load average {os.getloadavg()[0]:.2f} at the end; "
        f"{args.model}, {args.epochs} epochs per job"
    )
    for name, values in ratios.items():
        how = "of medians" if "alone" in name else f"median of {len(values)}"
        print(f"{name}: {statistics.median(values):.2f}x ({how})")


if __name__ == "__main__":
    main()
