"""Exported ONNX models against their checkpoints in ``cnnkit predict``, as ratios in one run.

1. startup: ``cnnkit predict MODEL.onnx one.png`` (whole process) against
   ``python -c "import torch, cv2"`` (goal: at most 0.3x), and the .ckpt's;
2. 1,000 small PNGs (32×32 RGB, lenet5 at 1×28×28) and a 250-frame 128×128
   video (the same model at 3×32×32 on every frame): ``cnnkit predict`` with
   the .onnx and with the .ckpt, whole process (goal: the .onnx at least as
   fast);
3. in process, images/s: decoding alone, each runtime's model alone, and the
   predict pipeline of each (as ``cnnkit predict`` runs it on named files),
   and each pipeline as a ratio of the slower of decoding alone and its model
   alone (goal: at least 0.5x). The process has decoded 5,000 named images
   after a few rounds, and starts decode processes for the later ones (it
   says so; ``CNNKIT_DECODE_PROCESSES=0`` measures threads alone).

Best of N runs each, interleaved, on the CPU. Needs the onnx extra. Run:
``python benchmarks/bench_onnx.py [--runs N] [--images N] [--frames N] [--in-process] [--json]``
(``--in-process``: part 3 only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import (  # noqa: E402  (the shared helpers of the predict benchmark)
    IMPORT_REFERENCE,
    best_pair,
    interleaved_bests,
    make_checkpoint,
    make_media,
    predict_workers,
)

GOAL_PIPELINE = 0.5  # of the slower of decoding alone and the model alone


def in_process(ckpt: Path, onnx: Path, names: list[str], runs: int) -> dict:
    import cv2

    import cnnkit
    from cnnkit.io.pipeline import share_cpu_with_decoders
    from cnnkit.predict import predict_images

    try:
        from cnnkit.predict.images import NAMED_CHUNK
    except ImportError:  # a cnnkit from before it was named: the 16 its CLI used
        NAMED_CHUNK = 16

    share_cpu_with_decoders(predict_workers())  # as `cnnkit predict` does by default
    torch_pred = cnnkit.load(ckpt, device="cpu", batch_size=64).predictor
    onnx_pred = cnnkit.load(onnx, device="cpu", batch_size=64).predictor
    batch = np.random.default_rng(0).integers(0, 256, (len(names), 1, 28, 28), dtype=np.uint8)

    def decode() -> None:
        for p in names:
            cv2.imread(p, cv2.IMREAD_UNCHANGED)

    def model(pred):
        return lambda: [None for _ in pred.logits_in_batches(batch)]

    def pipeline(pred):
        # Named files, as `cnnkit predict FOLDER` decodes them: a chunk at a time.
        return lambda: [None for _ in predict_images(pred, names, top_k=5, chunk=NAMED_CHUNK)]

    for pred in (torch_pred, onnx_pred):
        pipeline(pred)()  # warm-up: first-call allocations and thread start-up
    n = len(names)
    fns = {
        "decode": decode,
        "model_torch": model(torch_pred),
        "model_onnx": model(onnx_pred),
        "predict_ckpt": pipeline(torch_pred),
        "predict_onnx": pipeline(onnx_pred),
    }
    times = dict(zip(fns, interleaved_bests(list(fns.values()), runs), strict=True))
    out = {f"{k}_per_s": round(n / v, 1) for k, v in times.items()}
    for kind, model_key in (("ckpt", "model_torch"), ("onnx", "model_onnx")):
        slower = max(times["decode"], times[model_key])
        out[f"ratio_{kind}"] = round(slower / times[f"predict_{kind}"], 2)
    try:  # the rounds after this process has decoded 5,000 images may use them
        from cnnkit.predict import processes

        out["decode_processes"] = processes.started()
    except ImportError:  # a cnnkit from before they existed
        out["decode_processes"] = False
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--in-process", action="store_true", help="part 3 only")
    args = parser.parse_args()
    if args.in_process:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            paths, _ = make_media(root, args.images, 1)
            img = make_checkpoint(root / "img.ckpt", "lenet5", 1, 28, None)
            export_onnx_quietly(img)
            inproc = in_process(img, img.with_suffix(".onnx"), [str(p) for p in paths], args.runs)
        print(
            json.dumps({"in_process": inproc}, indent=2) if args.json else in_process_line(inproc)
        )
        return

    from cnnkit.onnxexport import export_onnx

    predict = [sys.executable, "-m", "cnnkit", "predict", "--device", "cpu", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths, video = make_media(root, args.images, args.frames)
        img = make_checkpoint(root / "img.ckpt", "lenet5", 1, 28, None)
        vid = make_checkpoint(root / "v2d.ckpt", "lenet5", 3, 32, None)
        for ckpt in (img, vid):
            export_onnx(str(ckpt), ckpt.with_suffix(".onnx"))
        img_onnx, vid_onnx = img.with_suffix(".onnx"), vid.with_suffix(".onnx")

        t_onnx1, t_import = best_pair([*predict, str(img_onnx), str(paths[0])], IMPORT_REFERENCE,
                                      args.runs)  # fmt: skip
        t_ckpt1, _ = best_pair([*predict, str(img), str(paths[0])], IMPORT_REFERENCE, args.runs)
        folder = str(root / "images")
        t_onnx_many, t_ckpt_many = best_pair([*predict, str(img_onnx), folder],
                                             [*predict, str(img), folder], args.runs)  # fmt: skip
        t_onnx_vid, t_ckpt_vid = best_pair([*predict, str(vid_onnx), str(video)],
                                           [*predict, str(vid), str(video)], args.runs)  # fmt: skip
        inproc = in_process(img, img_onnx, [str(p) for p in paths], args.runs)

    n, f = args.images, args.frames
    result = {
        "startup": {
            "predict_onnx_one_image_s": round(t_onnx1, 3),
            "predict_ckpt_one_image_s": round(t_ckpt1, 3),
            "import_torch_cv2_s": round(t_import, 3),
            "ratio_onnx": round(t_onnx1 / t_import, 2),
            "ratio_ckpt": round(t_ckpt1 / t_import, 2),
            "goal_onnx": 0.3,
        },
        "images": {
            "n": n,
            "onnx_per_s": round(n / t_onnx_many, 1),
            "ckpt_per_s": round(n / t_ckpt_many, 1),
            "ratio_onnx_time": round(t_onnx_many / t_ckpt_many, 2),
        },
        "video": {
            "frames": f,
            "onnx_fps": round(f / t_onnx_vid, 1),
            "ckpt_fps": round(f / t_ckpt_vid, 1),
            "ratio_onnx_time": round(t_onnx_vid / t_ckpt_vid, 2),
        },
        "in_process": inproc,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    s, i, v, p = result["startup"], result["images"], result["video"], inproc
    print(f"startup   predict one.png: .onnx {s['predict_onnx_one_image_s']:.2f}s, .ckpt "
          f"{s['predict_ckpt_one_image_s']:.2f}s; import torch,cv2 {s['import_torch_cv2_s']:.2f}s"
          f": {s['ratio_onnx']:.2f}x (goal <= 0.3x) and {s['ratio_ckpt']:.2f}x")  # fmt: skip
    print(f"images    {n} PNGs, whole process: .onnx {i['onnx_per_s']}/s, .ckpt "
          f"{i['ckpt_per_s']}/s (.onnx takes {i['ratio_onnx_time']:.2f}x the time)")  # fmt: skip
    print(f"video     {f} frames, whole process: .onnx {v['onnx_fps']} fps, .ckpt "
          f"{v['ckpt_fps']} fps (.onnx takes {v['ratio_onnx_time']:.2f}x the time)")  # fmt: skip
    print(in_process_line(p))


def export_onnx_quietly(ckpt: Path) -> None:
    from cnnkit.onnxexport import export_onnx

    export_onnx(str(ckpt), ckpt.with_suffix(".onnx"))


def in_process_line(p: dict) -> str:
    later = "; decode processes in the later rounds" if p["decode_processes"] else ""
    return (f"in process images/s: decode only {p['decode_per_s']}; model only torch "
            f"{p['model_torch_per_s']}, onnx {p['model_onnx_per_s']}; predict .ckpt "
            f"{p['predict_ckpt_per_s']}, .onnx {p['predict_onnx_per_s']}: "
            f"{p['ratio_ckpt']:.2f}x and {p['ratio_onnx']:.2f}x the slower of decode and "
            f"model alone (goal >= {GOAL_PIPELINE}x){later}")  # fmt: skip


if __name__ == "__main__":
    main()
