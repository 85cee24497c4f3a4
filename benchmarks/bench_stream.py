"""A folder of JPEGs streamed through training, against the machine's decode and model limits.

The data: 8,400 textured 320×240 JPEGs in 6 classes (smooth colour fields,
fine noise and class-coloured shapes, seeded), written once into ``--data``
(default: a folder in the system's temporary folder) and reused by later runs.
The model: lenet5 at 32×32 (3 channels), batch 64, cnnkit's default options.

Each round measures, one after the other (which goes first rotates):

- decode: the bare loop, ``cv2.imread`` + ``cv2.resize`` to 32×32 (INTER_AREA,
  as cnnkit shrinks), in one process per core of the CPU budget
  (``cnnkit.io.cpu``), taking the files 64 at a time: images/s. It reads
  the JPEGs at the reduced scale cnnkit itself decodes them at for a
  32×32 model (``IMREAD_REDUCED_COLOR_2`` for 320×240, by
  ``cnnkit.io.image.reduced_factor``; in full with ``CNNKIT_FULL_DECODE=1``),
  so that the limit below is the one cnnkit's own decoding can reach;
- decode_full: the same loop decoding every file in full (``cv2.imread`` as
  it is), for comparison with figures taken before cnnkit decoded reduced;
- model: ``cnnkit train`` with the folder in memory, its ``images_per_second``;
- streamed: the same run with ``CNNKIT_MEMORY_BUDGET=1`` (decoded from the
  files every epoch), its ``images_per_second``;
- load: decoding the folder into memory (``cnnkit.data.registry.load_dataset``
  in a fresh process, from the call to its return): images/s.

Two ratios per round, and their medians over the rounds are the headline
(decode and model shift together from minute to minute on a shared machine;
a ratio of neighbours in time is steadier than a ratio of medians):

- streamed / (1 / (1/decode + 1/model)): decoding and the model sharing the
  same cores, the physical limit of a streamed epoch (goal: >= 0.85);
- load / decode (goal: >= 0.8).

    python benchmarks/bench_stream.py               # 5 rounds, 2 epochs each
    python benchmarks/bench_stream.py --quick       # 1 round, 2,100 images, 1 epoch
    python benchmarks/bench_stream.py --data /tmp/stream8400 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

CLASSES = 6
WIDTH, HEIGHT = 320, 240
SIZE = 32
MODEL = "lenet5"
DONE = ".complete"  # a hidden file (scans skip it): the folder was written to the end

LOAD = """
import sys, time
import cnnkit.io.image  # OpenCV imported: the bare loop's process has it before its clock starts
from cnnkit.data.registry import DatasetRequest, load_dataset
began = time.perf_counter()
data = load_dataset(DatasetRequest(sys.argv[1], img_size=int(sys.argv[2]), seed=0))
seconds = time.perf_counter() - began
print(sum(data.sizes().values()) / seconds)
"""


# ---------------------------------------------------------------------------
# the data
# ---------------------------------------------------------------------------


def _picture(index: int) -> np.ndarray:
    """Image ``index`` (its class is ``index % CLASSES``): BGR uint8, HEIGHT×WIDTH."""
    rng = np.random.default_rng(index)
    label = index % CLASSES
    # A smooth colour field (large blobs) and a finer one: texture JPEG has to code.
    coarse = cv2.resize(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), (WIDTH, HEIGHT),
                        interpolation=cv2.INTER_CUBIC)  # fmt: skip
    fine = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (WIDTH, HEIGHT),
                      interpolation=cv2.INTER_LINEAR)  # fmt: skip
    image = cv2.addWeighted(coarse, 0.7, fine, 0.3, 0)
    # Shapes: the class picks the kind (circles, boxes, lines) and the colour family.
    for _ in range(int(rng.integers(2, 5))):
        x, y = int(rng.integers(20, WIDTH - 20)), int(rng.integers(20, HEIGHT - 20))
        colour = [int(v) for v in rng.integers(0, 120, 3)]
        colour[label // 3 * 2] = int(rng.integers(180, 256))  # warm or cool
        kind = label % 3
        if kind == 0:
            cv2.circle(image, (x, y), int(rng.integers(10, 50)), colour, -1)
        elif kind == 1:
            w, h = int(rng.integers(15, 70)), int(rng.integers(15, 70))
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
        else:
            end = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(3, 9)))
    noise = rng.integers(-10, 11, image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _write(job: tuple[str, int, int]) -> None:
    root, start, stop = job
    cv2.setNumThreads(1)
    for index in range(start, stop):
        folder = Path(root) / f"class{index % CLASSES}"
        ok, data = cv2.imencode(".jpg", _picture(index), [cv2.IMWRITE_JPEG_QUALITY, 90])
        (folder / f"{index:05d}.jpg").write_bytes(data.tobytes())


def make_dataset(root: Path, images: int, cores: int) -> Path:
    """Write ``images`` JPEGs under ``root`` once; a complete folder is reused as it is."""
    done = root / DONE
    if done.is_file() and done.read_text().strip() == str(images):
        return root
    for label in range(CLASSES):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
    step = -(-images // (4 * cores))
    jobs = [(str(root), s, min(images, s + step)) for s in range(0, images, step)]
    print(f"writing {images:,} JPEGs into {root} (once) ...", file=sys.stderr)
    with get_context("spawn").Pool(cores) as pool:
        pool.map(_write, jobs)
    done.write_text(f"{images}\n")
    return root


def jpeg_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.glob("class*/*.jpg"))


# ---------------------------------------------------------------------------
# the measurements
# ---------------------------------------------------------------------------


def _bare_decode(job: tuple[list[str], int]) -> int:
    """The reference loop: nothing but imread and resize (one OpenCV thread per process)."""
    paths, flags = job
    cv2.setNumThreads(1)
    for path in paths:
        cv2.resize(cv2.imread(path, flags), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return len(paths)


def cnnkit_flags() -> int:
    """imread's flags for the scale cnnkit decodes these JPEGs at for a SIZE×SIZE model."""
    from cnnkit.io.image import full_decode_forced, reduced_factor

    factor = 1 if full_decode_forced() else reduced_factor(WIDTH, HEIGHT, (SIZE, SIZE))
    return {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[factor]


# Files a bare-loop process takes at a time: the processes share the work as they go,
# so one slowed by another program's thread does not leave the others waiting at the end.
BARE_CHUNK = 64


def decode_rate(pool, paths: list[str], flags: int = cv2.IMREAD_COLOR) -> float:
    began = time.perf_counter()
    chunks = [(paths[i : i + BARE_CHUNK], flags) for i in range(0, len(paths), BARE_CHUNK)]
    done = sum(pool.imap_unordered(_bare_decode, chunks))
    return done / (time.perf_counter() - began)


def train_run(root: Path, out: Path, epochs: int, streamed: bool) -> dict:
    """``cnnkit train``'s summary (its ``images_per_second``: training samples / fit time)."""
    env = dict(os.environ)
    if streamed:
        env["CNNKIT_MEMORY_BUDGET"] = "1"
    else:
        env.pop("CNNKIT_MEMORY_BUDGET", None)
    cmd = [sys.executable, "-m", "cnnkit", "train", "--dataset", str(root), "--model", MODEL,
           "--img-size", str(SIZE), "--epochs", str(epochs), "--out", str(out), "--json",
           "--quiet"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"cnnkit train failed:\n{result.stderr}")
    return json.loads(result.stdout)


def load_rate(root: Path) -> float:
    cmd = [sys.executable, "-c", LOAD, str(root), str(SIZE)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"loading the folder failed:\n{result.stderr}")
    return float(result.stdout.strip())


def one_round(n: int, pool, paths, root: Path, out: Path, epochs: int, flags: int) -> dict:
    runs: dict[str, dict] = {}

    def train(streamed: bool) -> float:
        runs[f"streamed={streamed}"] = train_run(root, out, epochs, streamed)
        return float(runs[f"streamed={streamed}"]["images_per_second"])

    steps = {
        "decode": lambda: decode_rate(pool, paths, flags),
        "decode_full": lambda: decode_rate(pool, paths),
        "model": lambda: train(streamed=False),
        "streamed": lambda: train(streamed=True),
        "load": lambda: load_rate(root),
    }
    names = list(steps)
    names = names[n % len(names) :] + names[: n % len(names)]  # who goes first rotates
    rates = {name: steps[name]() for name in names}
    limit = 1 / (1 / rates["decode"] + 1 / rates["model"])
    return {
        **{k: round(v, 1) for k, v in rates.items()},
        "limit": round(limit, 1),
        "streamed_vs_limit": round(rates["streamed"] / limit, 3),
        "load_vs_decode": round(rates["load"] / rates["decode"], 3),
        "streamed_cpu_split": runs["streamed=True"].get("cpu_split"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="where the JPEGs are (written there once)")
    parser.add_argument("--images", type=int, default=8400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 round, 2,100 images, 1 epoch")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds, args.epochs = 2100, 1, 1
    os.environ.setdefault("CNNKIT_OFFLINE", "1")
    from cnnkit.io.cpu import cpu_budget

    budget = cpu_budget()
    cores = budget.cores
    root = args.data or Path(tempfile.gettempdir()) / f"cnnkit-bench-stream-{args.images}"
    make_dataset(root, args.images, cores)
    paths = jpeg_files(root)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="cnnkit-bench-stream-") as tmp, \
            get_context("spawn").Pool(cores) as pool:  # fmt: skip
        flags = cnnkit_flags()
        decode_rate(pool, paths[: 2 * BARE_CHUNK * cores])  # the workers started and warm
        for path in paths:  # every file in the page cache: rounds measure decoding, not the disk
            Path(path).read_bytes()
        for n in range(args.rounds):
            runs = Path(tmp) / f"runs{n}"
            rounds.append(one_round(n, pool, paths, root, runs, args.epochs, flags))
            if not args.json:
                r = rounds[-1]
                print(f"round {n + 1}: decode {r['decode']:,.0f}/s (in full "
                      f"{r['decode_full']:,.0f}/s), model {r['model']:,.0f}/s "
                      f"(limit {r['limit']:,.0f}/s), streamed {r['streamed']:,.0f}/s -> "
                      f"{r['streamed_vs_limit']:.2f}x; load {r['load']:,.0f}/s -> "
                      f"{r['load_vs_decode']:.2f}x", file=sys.stderr)  # fmt: skip
    result = {
        "machine": f"{platform.processor() or platform.machine()}, CPU budget {cores} "
        f"({budget.reason}), Python {sys.version.split()[0]}, OpenCV {cv2.__version__}",
        "data": f"{len(paths):,} JPEGs {WIDTH}×{HEIGHT}, {CLASSES} classes ({root})",
        "decode": "reduced as cnnkit decodes"
        if flags != cv2.IMREAD_COLOR
        else "in full, as cnnkit decodes",
        "model": f"{MODEL} at {SIZE}×{SIZE}, {args.epochs} epoch(s)",
        "rounds": rounds,
        "streamed_vs_limit": statistics.median(r["streamed_vs_limit"] for r in rounds),
        "load_vs_decode": statistics.median(r["load_vs_decode"] for r in rounds),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    med = {
        k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k != "streamed_cpu_split"
    }
    print(f"machine   {result['machine']}")
    print(f"data      {result['data']}; {result['model']}")
    print(f"rates     decode {med['decode']:,.0f} images/s on {cores} core(s) "
          f"({result['decode']}; in full {med['decode_full']:,.0f}), model "
          f"{med['model']:,.0f} samples/s, limit {med['limit']:,.0f}; streamed "
          f"{med['streamed']:,.0f}; load {med['load']:,.0f} (medians of "
          f"{len(rounds)})")  # fmt: skip
    print(
        f"streamed  {result['streamed_vs_limit']:.2f}x the limit 1/(1/decode + 1/model) "
        "(goal >= 0.85, median of the rounds' ratios)"
    )
    print(f"load      {result['load_vs_decode']:.2f}x the bare decode rate (goal >= 0.8)")
    if rounds[-1]["streamed_cpu_split"]:
        print(f"split     {rounds[-1]['streamed_cpu_split']} (the last streamed run)")


if __name__ == "__main__":
    main()
