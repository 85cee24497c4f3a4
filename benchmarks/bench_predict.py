"""Time ``cnnkit predict`` against the plain references, as ratios.

1. startup: ``cnnkit predict CKPT one.png`` against ``python -c "import torch, cv2"``
   (goal: at most 1.6x); also checks that predict imported neither Lightning
   nor torchmetrics (nor torchvision, for a model that does not need it);
2. images: ``cnnkit predict CKPT folder/`` over 1,000 small PNGs (32×32 RGB,
   model lenet5 at 1×28×28, ``--model`` to change) against a bare ``cv2.imread`` loop over the
   same files;
3. video: ``cnnkit predict CKPT clip.mp4`` over a 250-frame 128×128 video,
   with the 2D model at 3×32×32 (every frame classified) and a 3D model (c3d_small, 8-frame
   windows, stride 1: 243 windows), against a bare ``cv2.VideoCapture.read`` loop.

predict runs as a fresh process writing JSON Lines to /dev/null, so its times
include startup and model loading (small inputs finish within the noise of
startup, so throughput is measured in process, below). Best of N runs each, interleaved
with the reference, on the CPU. Run: ``python benchmarks/bench_predict.py
[--runs N] [--images N] [--frames N] [--device cpu] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

IMPORT_REFERENCE = [sys.executable, "-c", "import torch, cv2"]

DECODE_IMAGES = """
import sys, cv2
paths = open(sys.argv[1]).read().split()
for p in paths:
    cv2.imread(p, cv2.IMREAD_UNCHANGED)
"""

DECODE_VIDEO = """
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1])
while True:
    ok, frame = cap.read()
    if not ok:
        break
"""

CHECK_IMPORTS = """
import atexit, sys
def report():
    heavy = [m for m in ("lightning", "pytorch_lightning", "torchmetrics", "torchvision")
             if m in sys.modules]
    sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
atexit.register(report)
sys.argv = ["cnnkit"] + sys.argv[1:]
from cnnkit.cli import main
main()
"""


def predict_workers() -> int:
    """The decode threads `cnnkit predict` runs by default (2 before they followed the budget)."""
    try:
        from cnnkit.io.pipeline import decode_workers
    except ImportError:
        return 2
    return decode_workers()


def make_checkpoint(
    path: Path, model: str, channels: int, size: int, frames: int | None, classes: int = 10
) -> Path:
    """A random-weight checkpoint in the layout `cnnkit train` writes (no training needed)."""
    import torch

    from cnnkit.checkpoint import save_checkpoint
    from cnnkit.models.registry import create_model
    from cnnkit.spec import CheckpointMeta, InputSpec

    shape = (channels, *([frames] if frames else []), size, size)
    torch.manual_seed(0)
    net = create_model(model, classes, channels, input_size=shape)
    meta = CheckpointMeta(
        model_name=model,
        classes=[f"class{i}" for i in range(classes)],
        input=InputSpec(channels, (size, size), frames, [0.5] * channels, [0.25] * channels),
        cnnkit_version="bench",
        seed=0,
    )
    return save_checkpoint(path, meta, net.state_dict())


def make_media(root: Path, n_images: int, n_frames: int) -> tuple[list[Path], Path]:
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir()
    paths = []
    for i in range(n_images):
        p = folder / f"{i:05d}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        paths.append(p)
    video = root / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (128, 128))
    yy, xx = np.mgrid[0:128, 0:128]
    for t in range(n_frames):
        frame = ((np.sin((xx + 2 * t) / 9.0) + np.cos((yy - t) / 7.0)) * 60 + 128).astype(np.uint8)
        writer.write(np.dstack([frame, np.roll(frame, t, axis=0), 255 - frame]))
    writer.release()
    return paths, video


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def best_pair(a: list[str], b: list[str], runs: int) -> tuple[float, float]:
    """Best wall time of each command, runs interleaved so machine load hits both alike."""
    ta, tb = [], []
    for _ in range(runs):
        ta.append(wall(a))
        tb.append(wall(b))
    return min(ta), min(tb)


def best_of(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_bests(fns: list, runs: int) -> list[float]:
    """The best time of each function over ``runs`` rounds that run each once, in turn.

    Each round starts one further along the list: what runs just after another
    (its caches, its thread pools) is not always the same function.
    """
    times: list[list[float]] = [[] for _ in fns]
    for r in range(runs):
        for k in range(len(fns)):
            i = (r + k) % len(fns)
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [min(seen) for seen in times]


def in_process(img_ckpt: Path, v2d_ckpt: Path, paths: list[Path], video: Path, runs: int) -> dict:
    """Throughput without process startup: decode only, model only, the pipeline, the API.

    "pipeline" is the engine ``cnnkit predict`` runs (cnnkit.predict.predict_images
    with torch on the cores its 2 decoders leave); "api" is ``Classifier.predict``
    on the same paths, which must keep up with it: once as loaded by default
    (torch's thread count left as the process has it) and once with
    ``threads=`` the cores the decoders leave, as the README advises.
    """
    import torch

    import cnnkit
    from cnnkit.io.pipeline import cores_left
    from cnnkit.predict import predict_images, predict_video

    default_threads = torch.get_num_threads()

    @contextmanager
    def torch_threads(n: int):
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(default_threads)

    names = [str(p) for p in paths]
    clf = cnnkit.load(img_ckpt, device="cpu", batch_size=64)
    pred = clf.predictor
    batch = np.random.default_rng(0).integers(0, 256, (len(names), 1, 28, 28), dtype=np.uint8)

    def decode() -> None:
        for p in names:
            cv2.imread(p, cv2.IMREAD_UNCHANGED)

    def model_only() -> None:
        for _ in pred.logits_in_batches(batch):
            pass

    def pipeline() -> None:
        with torch_threads(cores_left(predict_workers())):  # as `cnnkit predict` does
            for _ in predict_images(pred, names, top_k=5, chunk=16):
                pass

    def api() -> None:
        clf.predict(names, top_k=5)

    def api_threads() -> None:
        with torch_threads(cores_left(predict_workers())):  # what load(..., threads=N) sets
            clf.predict(names, top_k=5)

    def vdecode() -> None:
        cap = cv2.VideoCapture(str(video))
        while cap.read()[0]:
            pass
        cap.release()

    vpred = cnnkit.load(v2d_ckpt, device="cpu", batch_size=64).predictor

    def vpipeline() -> None:
        with torch_threads(cores_left(predict_workers())):
            for _ in predict_video(vpred, str(video), top_k=5):
                pass

    pipeline()  # warm-up: first-call allocations and thread start-up
    n = len(names)
    # Interleaved rounds: a machine whose speed drifts meets each variant alike.
    t_dec, t_model, t_pipe, t_api, t_api_threads = interleaved_bests(
        [decode, model_only, pipeline, api, api_threads], runs
    )
    t_vdec, t_vpipe = best_of(vdecode, runs), best_of(vpipeline, runs)
    frames = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT))
    return {
        "images_decode_per_s": round(n / t_dec, 1),
        "images_model_only_per_s": round(n / t_model, 1),
        "images_predict_per_s": round(n / t_pipe, 1),
        "images_api_per_s": round(n / t_api, 1),
        "api_throughput_vs_pipeline": round(t_pipe / t_api, 3),
        "api_with_threads_vs_pipeline": round(t_pipe / t_api_threads, 3),
        "images_ratio_vs_decode": round(t_pipe / t_dec, 2),
        "images_ratio_vs_decode_plus_model": round(t_pipe / (t_dec + t_model), 2),
        "video_decode_fps": round(frames / t_vdec, 1),
        "video_predict_2d_fps": round(frames / t_vpipe, 1),
        "video_ratio_vs_decode": round(t_vpipe / t_vdec, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="lenet5", help="2D model for images and frames")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    predict = [sys.executable, "-m", "cnnkit", "predict", "--device", args.device, "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths, video = make_media(root, args.images, args.frames)
        list_file = root / "paths.txt"
        list_file.write_text("\n".join(map(str, paths)))
        img_ckpt = make_checkpoint(root / "img.ckpt", args.model, 1, 28, None)
        v2d_ckpt = make_checkpoint(root / "v2d.ckpt", args.model, 3, 32, None)
        v3d_ckpt = make_checkpoint(root / "v3d.ckpt", "c3d_small", 3, 32, 8)

        imports = subprocess.run(
            [sys.executable, "-c", CHECK_IMPORTS, "predict", str(img_ckpt), str(paths[0])],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        heavy = imports.stderr.strip().splitlines()[-1].removeprefix("HEAVY=")

        one = [*predict, str(img_ckpt), str(paths[0])]
        t_one, t_import = best_pair(one, IMPORT_REFERENCE, args.runs)

        many = [*predict, str(img_ckpt), str(root / "images"), "--batch-size", "64"]
        decode = [sys.executable, "-c", DECODE_IMAGES, str(list_file)]
        t_many, t_decode = best_pair(many, decode, args.runs)

        vdecode = [sys.executable, "-c", DECODE_VIDEO, str(video)]
        v2d = [*predict, str(v2d_ckpt), str(video), "--batch-size", "64"]
        v3d = [*predict, str(v3d_ckpt), str(video), "--stride", "1", "--batch-size", "32"]
        t_v2d, t_vdecode = best_pair(v2d, vdecode, args.runs)
        t_v3d, _ = best_pair(v3d, vdecode, max(1, args.runs // 2))
        inproc = in_process(img_ckpt, v2d_ckpt, paths, video, args.runs)

    def rate(n: int, seconds: float) -> float:
        return round(n / max(seconds, 1e-9), 1)

    n, f = args.images, args.frames
    windows = max(f - 8 + 1, 1)
    result = {
        "startup": {
            "predict_one_image_s": round(t_one, 3),
            "import_torch_cv2_s": round(t_import, 3),
            "ratio": round(t_one / t_import, 2),
            "goal": 1.6,
            "heavy_modules_imported": heavy.split(",") if heavy else [],
        },
        "images": {
            "n": n,
            "predict_s": round(t_many, 3),
            "predict_per_s": rate(n, t_many),
            "decode_loop_s": round(t_decode, 3),
            "ratio_wall": round(t_many / t_decode, 2),
        },
        "video": {
            "frames": f,
            "decode_loop_s": round(t_vdecode, 3),
            "predict_2d_s": round(t_v2d, 3),
            "predict_3d_s": round(t_v3d, 3),
            "predict_3d_windows": windows,
            "ratio_wall_2d": round(t_v2d / t_vdecode, 2),
            "ratio_wall_3d": round(t_v3d / t_vdecode, 2),
        },
        "in_process": inproc,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    s, i, v = result["startup"], result["images"], result["video"]
    print(
        f"startup   predict one.png {s['predict_one_image_s']:.2f}s vs import torch,cv2 "
        f"{s['import_torch_cv2_s']:.2f}s: {s['ratio']:.2f}x (goal <= 1.6x); "
        f"heavy imports: {', '.join(s['heavy_modules_imported']) or 'none'}"
    )
    print(
        f"images    {n} PNGs: predict {i['predict_s']:.2f}s ({i['predict_per_s']}/s) "
        f"vs cv2.imread loop process {i['decode_loop_s']:.2f}s: "
        f"{i['ratio_wall']:.2f}x wall"
    )
    print(
        f"video     {f} frames: decode loop {v['decode_loop_s']:.2f}s; predict 2D (every frame) "
        f"{v['predict_2d_s']:.2f}s ({v['ratio_wall_2d']:.2f}x); "
        f"3D ({windows} windows) {v['predict_3d_s']:.2f}s ({v['ratio_wall_3d']:.2f}x)"
    )
    p = result["in_process"]
    print(
        f"in process  images/s: decode only {p['images_decode_per_s']}, model only "
        f"{p['images_model_only_per_s']}, predict {p['images_predict_per_s']} "
        f"({p['images_ratio_vs_decode']:.2f}x decode time; "
        f"{p['images_ratio_vs_decode_plus_model']:.2f}x decode+model, <1 = overlapped)"
    )
    print(
        f"in process  Python API: cnnkit.load(...).predict {p['images_api_per_s']} images/s, "
        f"{p['api_throughput_vs_pipeline']:.3f}x the pipeline's throughput (goal >= 0.95x)"
    )
    print(
        f"in process  video fps: decode only {p['video_decode_fps']}, predict 2D "
        f"{p['video_predict_2d_fps']} ({p['video_ratio_vs_decode']:.2f}x decode time)"
    )


if __name__ == "__main__":
    main()
