"""Time ``cnnkit convolve`` against the plain OpenCV reference, as ratios.

Two comparisons on a 1920×1080 RGB image (PNG, smooth content plus noise, like a photo):

1. whole process: ``cnnkit convolve in.png -k KERNEL -o out.png`` against a
   minimal Python script doing cv2.imread + cv2.filter2D + cv2.imwrite with the
   same kernel and border (goal: at most 1.5x);
2. in process: ``cnnkit.ops.convolve`` against ``cv2.filter2D`` on the same
   uint8 array with the same float32 output, reflect border, stride 1
   (goal: at most 1.2x).

Best of N runs each (the minimum is the least noisy estimate on a shared
machine). Run: ``python benchmarks/bench_convolve.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from cnnkit import ops
from cnnkit.kernels import parse_kernel

REFERENCE_SCRIPT = """
import json
import sys
import cv2
import numpy as np
img = cv2.imread(sys.argv[1], cv2.IMREAD_UNCHANGED)
k = np.array(json.loads(sys.argv[3]), dtype=np.float32)
out = cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)
cv2.imwrite(sys.argv[2], out)
"""

KERNELS = {"box:3": "box:3", "gaussian:5,1": "gaussian:5,1"}


def make_photo(h: int = 1080, w: int = 1920, seed: int = 0) -> np.ndarray:
    """H×W×3 uint8: smooth gradients plus mild noise, so PNG sizes look like a photo's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [128 + 100 * np.sin(xx / 97 + c) * np.cos(yy / 71 - c) for c in (0.0, 1.0, 2.0)], axis=2
    )
    noisy = base + rng.normal(0, 6, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def best_of_interleaved(fns: list, runs: int) -> list[float]:
    """Best wall time of each function, taking turns so machine noise hits all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(runs):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def run_process(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    cnnkit = [sys.executable, "-m", "cnnkit"]
    print(f"python {sys.version.split()[0]}, OpenCV {cv2.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "photo.png")
        photo = make_photo()
        cv2.imwrite(str(src), photo)
        ref_py = Path(tmp, "reference.py")
        ref_py.write_text(REFERENCE_SCRIPT)
        for spec in KERNELS:
            weights = parse_kernel(spec).weights
            literal = json.dumps(weights.tolist())
            out_ref, out_ck = Path(tmp, "ref.png"), Path(tmp, "ck.png")
            ref_cmd = [sys.executable, str(ref_py), str(src), str(out_ref), literal]
            ck_cmd = cnnkit + ["convolve", str(src), "-k", spec, "-o", str(out_ck), "-q"]
            run_process(ref_cmd)  # warm the page cache for both
            run_process(ck_cmd)
            t_ref, t_ck = best_of_interleaved(
                [lambda c=ref_cmd: run_process(c), lambda c=ck_cmd: run_process(c)], args.runs
            )
            same = np.abs(
                cv2.imread(str(out_ref)).astype(int) - cv2.imread(str(out_ck)).astype(int)
            ).max()
            print(
                f"whole process, 1920x1080 RGB PNG, {spec:13s}: cnnkit {t_ck * 1000:7.1f} ms, "
                f"cv2 script {t_ref * 1000:7.1f} ms, ratio {t_ck / t_ref:.2f}x "
                f"(max pixel difference {same})"
            )

        # Where the whole-process time goes: fixed import costs of the CLI stack.
        stages = {
            "python -c pass": "pass",
            "import cv2": "import cv2",
            "import cnnkit.cli (typer)": "import cnnkit.cli",
        }
        times = best_of_interleaved(
            [lambda c=c: run_process([sys.executable, "-c", c]) for c in stages.values()],
            args.runs,
        )
        print(
            "fixed costs: "
            + ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in zip(stages, times, strict=False))
        )

        for spec in KERNELS:
            kernel = parse_kernel(spec)
            w32 = kernel.weights.astype(np.float32)

            def reference(w=w32) -> np.ndarray:
                return cv2.filter2D(photo, cv2.CV_32F, w, borderType=cv2.BORDER_REFLECT_101)

            def ours(k=kernel) -> np.ndarray:
                return ops.convolve(photo, k, padding="same", padding_mode="reflect")

            assert np.allclose(reference(), ours(), atol=1e-3)
            t_ref, t_ops = best_of_interleaved([reference, ours], max(args.runs * 5, 20))
            print(
                f"in process, ops.convolve vs cv2.filter2D (uint8 -> float32, reflect), "
                f"{spec:13s}: {t_ops * 1000:6.2f} ms vs {t_ref * 1000:6.2f} ms, "
                f"ratio {t_ops / t_ref:.2f}x"
            )


if __name__ == "__main__":
    main()
