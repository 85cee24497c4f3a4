"""``cnnkit explain`` against ``cnnkit predict`` on the same images, as a ratio in one run.

100 images (64×64 RGB PNGs) through a simplecnn checkpoint at 3×64×64, in
process so that start-up does not hide the work: predict's pipeline
(decode, forward, records) against explain's (decode, forward and backward,
overlay drawn and written as PNG), for each method. Goal for the default
(gradcam): at most 4x predict. Best of N runs each, interleaved. Run:
``python benchmarks/bench_explain.py [--images N] [--runs N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from cnnkit.checkpoint import save_checkpoint
    from cnnkit.io.pipeline import share_cpu_with_decoders
    from cnnkit.io.sources import expand_sources
    from cnnkit.models.registry import create_model
    from cnnkit.predict import Predictor, predict_images
    from cnnkit.saliency import default_layer, explain_sources
    from cnnkit.spec import CheckpointMeta, InputSpec

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.images):
            p = root / f"{i:04d}.png"
            cv2.imwrite(str(p), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            paths.append(str(p))
        torch.manual_seed(0)
        net = create_model("simplecnn", 10, 3, input_size=(3, 64, 64))
        meta = CheckpointMeta("simplecnn", [f"c{i}" for i in range(10)],
                              InputSpec(3, (64, 64), None, [0.5] * 3, [0.25] * 3))  # fmt: skip
        ckpt = save_checkpoint(root / "m.ckpt", meta, net.state_dict())
        share_cpu_with_decoders(2)
        pred = Predictor.from_checkpoint(ckpt, "cpu", batch_size=16)
        layer = default_layer(pred.model, (3, 64, 64))

        def predict() -> None:
            for _ in predict_images(pred, paths, top_k=5, chunk=16):
                pass

        def explain(method: str) -> None:
            out = root / "maps"
            out.mkdir(exist_ok=True)
            sources = expand_sources(paths)
            target_layer = None if method == "occlusion" else layer
            for _ in explain_sources(pred, sources, out, method, target_layer, batch_size=16):
                pass

        def best(fn) -> float:
            fn()
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        t_predict = best(predict)
        results = {"images": args.images, "predict_s": round(t_predict, 4)}
        for method in ("gradcam", "gradcam++", "occlusion"):
            t = best(lambda m=method: explain(m))
            results[method] = {"s": round(t, 4), "ratio": round(t / t_predict, 2)}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.images} 64×64 images, simplecnn, in process: predict {t_predict:.3f} s")
    for method in ("gradcam", "gradcam++", "occlusion"):
        r = results[method]
        goal = " (goal <= 4x)" if method == "gradcam" else ""
        print(f"  explain --method {method:<10} {r['s']:.3f} s: {r['ratio']:.2f}x predict{goal}")


if __name__ == "__main__":
    sys.exit(main())
