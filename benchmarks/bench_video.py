"""Time cnnkit's video pipeline against plain references, as ratios in one run.

1. convolve, whole process: ``cnnkit convolve clip.mp4 -k sobel -o out.mp4`` on
   a 132-frame 1280×720 clip (H.264 when an ffmpeg binary is found, else
   MPEG-4 written by OpenCV; the script says which) against
   - a bare sequential Python loop: VideoCapture.read, float32 cv2.filter2D x
     and y, cv2.magnitude, convertScaleAbs, VideoWriter mp4v (goal: at most
     0.8x its time);
   - ``ffmpeg -i clip.mp4 -vf sobel -c:v mpeg4 out.mp4`` (goal: at most 1.3x),
     when ffmpeg is installed or given with ``--ffmpeg``; the line is skipped,
     saying so, when it is not. ffmpeg filters the Y, U and V planes of
     4:2:0 video in 8-bit integers; cnnkit filters B, G and R exactly in
     float32, so ffmpeg does less than half the arithmetic (and no colour
     conversion);
   - the same with a 3D kernel (``sobel3d-t``) and with ``.npy`` output, reported.
2. predict, in process: a 2D model (lenet5 at 3×32×32, random weights) on
   every frame of a 250-frame 128×128 video, against decoding alone (a bare
   VideoCapture.read loop) and the model alone (``Predictor.logits`` on the
   prepared frames, with the thread settings predict uses); goal: at least
   0.8x the rate of the slower of the two. Also a 3D model (c3d_small,
   8-frame windows, stride 1), reported.
3. memory: peak RSS (VmHWM, the highest of 3 runs) of ``cnnkit convolve``
   (sobel, to .mp4) on a 640×480 video of 100 and of 1,000 frames; goal:
   within 10% of each other.
4. encoders: milliseconds per 720p frame of each ``--codec`` OpenCV can write
   here, from the same frames.

Best of N runs, cnnkit and its references interleaved. Run:
``python benchmarks/bench_video.py [--runs N] [--ffmpeg PATH] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import best_of, make_checkpoint, make_media, predict_workers  # noqa: E402

BARE_LOOP = """
import sys, cv2, numpy as np
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
fps = cap.get(cv2.CAP_PROP_FPS)
w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
out = cv2.VideoWriter(sys.argv[2], cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
while True:
    ok, frame = cap.read()
    if not ok:
        break
    gx = cv2.filter2D(frame, cv2.CV_32F, kx, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.filter2D(frame, cv2.CV_32F, kx.T, borderType=cv2.BORDER_REFLECT_101)
    out.write(cv2.convertScaleAbs(cv2.magnitude(gx, gy)))
out.release()
"""

# VmHWM, the peak RSS of this process's own memory: ru_maxrss would also count
# the parent's memory at fork (Linux keeps it across exec).
PEAK_RSS = """
import resource, sys
sys.argv = ["cnnkit"] + sys.argv[1:]
from cnnkit.cli import main
def peak():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    main()
finally:
    sys.stderr.write("PEAK_KB=%d\\n" % peak())
"""


def textured_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """Moving gradients and shapes plus fixed noise: texture for the filters and the codec."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for t in range(count):
        base = (np.sin((xx + 4 * t) / 37.0) + np.cos((yy - 3 * t) / 23.0)) * 50 + 110
        frame = np.dstack([base, np.roll(base, 2 * t, axis=1), 255 - base]).astype(np.uint8)
        cx, cy = (40 + 9 * t) % width, (30 + 5 * t) % height
        cv2.circle(frame, (cx, cy), height // 8, (20, 220, 60), -1)
        cv2.rectangle(frame, (width - cx - 80, cy), (width - cx, cy + 60), (230, 40, 40), -1)
        frames.append(cv2.add(frame, noise))
    return frames


def make_clip(path: Path, ffmpeg: str | None, width: int, height: int, count: int) -> str:
    """Write the clip; H.264 through ffmpeg when there is one. Returns the codec written."""
    if ffmpeg:
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
               "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", "30", "-i", "-",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        for frame in textured_frames(width, height, count):
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
        if proc.wait() == 0:
            return "H.264 (libx264, via ffmpeg)"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    for frame in textured_frames(width, height, count):
        writer.write(frame)
    writer.release()
    return "MPEG-4 Part 2 (mp4v, OpenCV)"


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def best_interleaved(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Best wall time of each command, the commands taking turns so load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            times[name].append(wall(args))
    return {name: min(ts) for name, ts in times.items()}


def convolve_section(root: Path, ffmpeg: str | None, runs: int) -> dict:
    clip = root / "clip720.mp4"
    codec = make_clip(clip, ffmpeg, 1280, 720, 132)
    cnnkit = [sys.executable, "-m", "cnnkit", "convolve", str(clip), "-q"]
    commands = {
        "cnnkit": [*cnnkit, "-k", "sobel", "-o", str(root / "out.mp4")],
        "bare_loop": [sys.executable, "-c", BARE_LOOP, str(clip), str(root / "loop.mp4")],
    }
    if ffmpeg:
        out = str(root / "ff.mp4")
        commands["ffmpeg"] = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i",
                              str(clip), "-vf", "sobel", "-c:v", "mpeg4", out]  # fmt: skip
    best = best_interleaved(commands, runs)
    extra = best_interleaved(
        {
            "cnnkit_3d_sobel3d_t": [*cnnkit, "-k", "sobel3d-t", "-o", str(root / "t.mp4")],
            "cnnkit_npy": [*cnnkit, "-k", "sobel", "-o", str(root / "out.npy")],
        },
        max(1, runs // 2),
    )
    (root / "out.npy").unlink(missing_ok=True)  # 1.5 GB of float32
    result = {
        "clip": f"132 frames, 1280×720, {codec}",
        "cnnkit_s": round(best["cnnkit"], 3),
        "bare_loop_s": round(best["bare_loop"], 3),
        "ratio_vs_bare_loop": round(best["cnnkit"] / best["bare_loop"], 2),
        "cnnkit_3d_sobel3d_t_s": round(extra["cnnkit_3d_sobel3d_t"], 3),
        "cnnkit_npy_s": round(extra["cnnkit_npy"], 3),
    }
    if ffmpeg:
        version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
        result["ffmpeg"] = version.splitlines()[0] if version else ffmpeg
        result["ffmpeg_s"] = round(best["ffmpeg"], 3)
        result["ratio_vs_ffmpeg"] = round(best["cnnkit"] / best["ffmpeg"], 2)
    else:
        result["ffmpeg"] = None
    return result


def predict_section(root: Path, runs: int) -> dict:
    from cnnkit.io.pipeline import share_cpu_with_decoders
    from cnnkit.predict import Predictor, predict_video

    share_cpu_with_decoders(predict_workers())  # as `cnnkit predict` does by default
    _, video = make_media(root, 0, 250)
    v2d = Predictor.from_checkpoint(make_checkpoint(root / "v2d.ckpt", "lenet5", 3, 32, None))
    v3d = Predictor.from_checkpoint(
        make_checkpoint(root / "v3d.ckpt", "c3d_small", 3, 32, 8), batch_size=32
    )
    frames = []
    capture = cv2.VideoCapture(str(video))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    prepared = np.stack([v2d.prepare_frame(f) for f in frames])

    def decode() -> None:
        cap = cv2.VideoCapture(str(video))
        while cap.read()[0]:
            pass
        cap.release()

    def model() -> None:
        for _ in v2d.logits_in_batches(prepared):
            pass

    def pipeline_2d() -> None:
        for _ in predict_video(v2d, str(video), top_k=5):
            pass

    def pipeline_3d() -> None:
        for _ in predict_video(v3d, str(video), top_k=5, stride=1):
            pass

    pipeline_2d()  # warm-up: first-call allocations, thread start-up
    t_decode, t_model, t_2d, t_3d = [], [], [], []
    for _ in range(runs):  # interleaved, as the whole-process commands are
        t_decode.append(best_of(decode, 1))
        t_model.append(best_of(model, 1))
        t_2d.append(best_of(pipeline_2d, 1))
        t_3d.append(best_of(pipeline_3d, 1))
    n = len(frames)
    rate_decode, rate_model = n / min(t_decode), n / min(t_model)
    rate_2d = n / min(t_2d)
    slower = min(rate_decode, rate_model)
    return {
        "video": f"{n} frames, 128×128, mp4v",
        "decode_fps": round(rate_decode),
        "model_fps": round(rate_model),
        "predict_2d_fps": round(rate_2d),
        "ratio_vs_slower": round(rate_2d / slower, 2),
        "predict_3d_windows_per_s": round((n - 7) / min(t_3d)),
    }


def peak_kb(video: Path, out: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "convolve", str(video), "-k", "sobel", "-o", str(out),
         "-q"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = [x for x in proc.stderr.splitlines() if x.startswith("PEAK_KB=")][-1]
    return int(line.removeprefix("PEAK_KB="))


def memory_section(root: Path) -> dict:
    frames = textured_frames(640, 480, 50)
    sizes = {}
    for count in (100, 1000):
        path = root / f"long{count}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
        for t in range(count):
            writer.write(frames[t % len(frames)])
        writer.release()
        # The highest of 3 runs: the queues of a short run do not always all fill
        # (measured at 100 frames: 100-111 MB from run to run, 111 MB once full).
        sizes[count] = max(peak_kb(path, root / "long-out.mp4") for _ in range(3))
    return {
        "peak_mb_100_frames": round(sizes[100] / 1024, 1),
        "peak_mb_1000_frames": round(sizes[1000] / 1024, 1),
        "ratio": round(sizes[1000] / sizes[100], 3),
    }


def codec_section(root: Path) -> dict:
    from cnnkit.io.video import CODECS, codecs_for
    from cnnkit.io.video_writer import VideoWriter

    frames = textured_frames(1280, 720, 30)
    result = {}
    for ext in (".mp4", ".avi", ".webm", ".mkv"):
        for name in codecs_for(ext):
            if name in result:
                continue
            path = root / f"codec-{name}{ext}"
            start = time.perf_counter()
            with VideoWriter(path, 30.0, 1280, 720, rgb=False, codec=name) as writer:
                for frame in frames:
                    writer.write(frame)
            ms = (time.perf_counter() - start) * 1000 / len(frames)
            kb = path.stat().st_size / 1024 / len(frames)
            result[name] = {"container": ext, "ms_per_frame": round(ms, 2),
                            "kb_per_frame": round(kb, 1)}  # fmt: skip
    result["not_writable_here"] = [name for name in CODECS if name not in result]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ffmpeg", default=shutil.which("ffmpeg"), help="an ffmpeg binary")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    os.environ.setdefault("CNNKIT_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="cnnkit-bench-video-") as tmp:
        root = Path(tmp)
        result = {
            "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"OpenCV {cv2.__version__}",
            "convolve": convolve_section(root, args.ffmpeg, args.runs),
            "predict": predict_section(root, args.runs),
            "memory": memory_section(root),
            "codecs": codec_section(root),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    c, p, m = result["convolve"], result["predict"], result["memory"]
    print(f"machine   {result['machine']}")
    print(f"convolve  {c['clip']}: cnnkit {c['cnnkit_s']:.2f}s, bare loop {c['bare_loop_s']:.2f}s "
          f"-> {c['ratio_vs_bare_loop']:.2f}x (goal <= 0.8x)")  # fmt: skip
    if c["ffmpeg"]:
        print(f"          {c['ffmpeg']}: {c['ffmpeg_s']:.2f}s -> {c['ratio_vs_ffmpeg']:.2f}x "
              "(goal <= 1.3x)")  # fmt: skip
    else:
        print("          ffmpeg: not installed, comparison skipped (give --ffmpeg PATH)")
    print(f"          3D sobel3d-t {c['cnnkit_3d_sobel3d_t_s']:.2f}s; sobel to .npy "
          f"{c['cnnkit_npy_s']:.2f}s")  # fmt: skip
    print(f"predict   {p['video']}: decode {p['decode_fps']} frames/s, model {p['model_fps']}, "
          f"predict {p['predict_2d_fps']} -> {p['ratio_vs_slower']:.2f}x the slower (goal >= "
          f"0.8x); 3D windows {p['predict_3d_windows_per_s']}/s")  # fmt: skip
    print(f"memory    peak RSS 100 frames {m['peak_mb_100_frames']} MB, 1,000 frames "
          f"{m['peak_mb_1000_frames']} MB -> {m['ratio']:.3f}x (goal within 10%)")  # fmt: skip
    codecs = {k: v for k, v in result["codecs"].items() if k != "not_writable_here"}
    print(
        "codecs    "
        + ", ".join(f"{k} {v['ms_per_frame']} ms" for k, v in codecs.items())
        + f"; not writable here: {', '.join(result['codecs']['not_writable_here']) or 'none'}"
    )


if __name__ == "__main__":
    main()
