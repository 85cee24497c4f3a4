"""Time ``cnnkit predict --ray`` (a local Ray) against ``cnnkit predict`` on the same images.

What Ray Data costs on one machine: both commands run as fresh processes over
the same folders of small PNGs (32×32 RGB, lenet5 at 1×28×28 with random
weights, as in bench_predict.py), writing JSON Lines; the outputs must be the
same bytes. The --ray run starts a local Ray on the process's CPU budget (one
actor per core) and shuts it down. Each command runs on 64 images (two
batches: every actor starts) and on N: the 64-image wall time is the fixed
cost (start-up, Ray's included), and the extra images over the extra time the
throughput once running. Each model is timed as a .ckpt (torch) and as its
exported .onnx (ONNX Runtime). Runs are interleaved; medians are reported.

Run: ``python benchmarks/bench_ray.py [--images N] [--runs R] [--json]``
(needs ``pip install 'cnnkit[ray]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import cnnkit


def make_checkpoint(path: Path) -> Path:
    """A random-weight lenet5 checkpoint in the layout `cnnkit train` writes."""
    import torch

    from cnnkit.checkpoint import save_checkpoint
    from cnnkit.models.registry import create_model
    from cnnkit.spec import CheckpointMeta, InputSpec

    torch.manual_seed(0)
    net = create_model("lenet5", 10, 1, input_size=(1, 28, 28))
    meta = CheckpointMeta(
        model_name="lenet5",
        classes=[f"class{i}" for i in range(10)],
        input=InputSpec(1, (28, 28), None, [0.5], [0.25]),
        cnnkit_version="bench",
        seed=0,
    )
    return save_checkpoint(path, meta, net.state_dict())


def make_images(folder: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:05d}.png"), rng.integers(0, 256, (32, 32, 3), np.uint8))


def timed(args: list[str], out: Path) -> float:
    start = time.perf_counter()
    with out.open("wb") as sink:
        subprocess.run(args, check=True, stdout=sink, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    small = 64
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        root = Path(tmp)
        ckpt = make_checkpoint(root / "m.ckpt")
        onnx = cnnkit.export(ckpt, root / "m.onnx")
        make_images(root / "small", small, seed=1)
        make_images(root / "large", args.images, seed=0)
        predict = [sys.executable, "-m", "cnnkit", "predict"]
        cases = {
            (model.suffix[1:], mode, size): [
                *predict,
                str(model),
                str(root / size),
                "--format",
                "jsonl",
                *flags,
            ]  # fmt: skip
            for model in (ckpt, onnx)
            for mode, flags in (("single", []), ("ray", ["--ray"]))
            for size in ("small", "large")
        }
        times: dict[tuple, list[float]] = {key: [] for key in cases}
        outputs: dict[tuple, bytes] = {}
        for r in range(args.runs):
            keys = list(cases)
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                out = root / "out.jsonl"
                times[key].append(timed(cases[key], out))
                outputs[key] = out.read_bytes()
        for model, size in ((m, z) for m in ("ckpt", "onnx") for z in ("small", "large")):
            if outputs[(model, "single", size)] != outputs[(model, "ray", size)]:
                raise SystemExit(f"--ray printed other records ({model}, {size})")
    report: dict = {"images": [small, args.images], "runs": args.runs,
                    "load_average": [round(v, 2) for v in os.getloadavg()]}  # fmt: skip
    for model in ("ckpt", "onnx"):
        for mode in ("single", "ray"):
            fixed = statistics.median(times[(model, mode, "small")])
            whole = statistics.median(times[(model, mode, "large")])
            report[f"{model}_{mode}"] = {
                "wall_s": [round(fixed, 2), round(whole, 2)],
                "images_per_s_running": round((args.images - small) / (whole - fixed), 1),
            }
        single, ray = report[f"{model}_single"], report[f"{model}_ray"]
        report[f"{model}_ray_against_single"] = {
            "wall": round(ray["wall_s"][1] / single["wall_s"][1], 2),
            "throughput_running": round(
                ray["images_per_s_running"] / single["images_per_s_running"], 2
            ),
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
