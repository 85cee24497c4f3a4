"""cnnkit on a CUDA GPU against a plain CUDA loop doing the same work, and predict's speed.

For a machine that already has torch, torchvision, lightning, OpenCV, typer
and rich: install cnnkit there with ``pip install --no-deps -e .``, then

    python benchmarks/bench_gpu.py                # a few minutes on one GPU
    python benchmarks/bench_gpu.py --quick        # one short round of each

Training: ``cnnkit train --dataset shapes`` (in-memory data, no download)
with simplecnn at 32×32 and resnet18 at 64×64, in 32-bit and in mixed
precision (``16-mixed``, and ``bf16-mixed`` where the GPU has bf16), each
against a hand-written loop on the same splits: AdamW, batch 64, label
smoothing 0.1, a per-step cosine schedule, the data on the GPU, validation
every epoch. Both sides have augmentation off and are timed over the whole
fit; the figure is training images per second, and the ratio is cnnkit's
over the loop's (median of alternating rounds). Predict: ``cnnkit predict``
over a folder of PNGs with a checkpoint on the GPU, against a bare loop that
decodes the same files and runs the same model.

On a machine without CUDA it says so and exits (status 0), unless
``--device cpu`` asks for a smoke run of the same code on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 64
LABEL_SMOOTHING = 0.1
LR = 3e-3


def run_cnnkit_train(model: str, size: int, epochs: int, precision: str, device: str, out: Path):
    cmd = [
        sys.executable, "-m", "cnnkit", "train", "--dataset", "shapes", "--model", model,
        "--img-size", str(size), "--epochs", str(epochs), "--batch-size", str(BATCH),
        "--no-augment", "--label-smoothing", str(LABEL_SMOOTHING), "--device", device,
        "--precision", precision, "--out", str(out), "--json", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"cnnkit train failed:\n{result.stderr}")
    return json.loads(result.stdout)


def run_plain_loop(model_name: str, size: int, epochs: int, precision: str, device: str) -> dict:
    """The loop an expert writes for the GPU: data resident on the device, autocast, no hooks."""
    import torch
    import torch.nn.functional as F

    from cnnkit.data.registry import DatasetRequest, load_dataset
    from cnnkit.models.registry import create_model

    data = load_dataset(DatasetRequest("shapes", img_size=size, seed=0))
    dev = torch.device(device)
    train, val = data.splits["train"], data.splits["val"]
    x_tr, y_tr = torch.from_numpy(train.x).to(dev), torch.from_numpy(train.y).to(dev)
    x_val, y_val = torch.from_numpy(val.x).to(dev), torch.from_numpy(val.y).to(dev)
    mean = torch.tensor(data.input.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(data.input.std, device=dev).view(1, -1, 1, 1)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=len(data.classes), in_channels=3,
                         input_size=(3, size, size)).to(dev)  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    steps = epochs * math.ceil(len(y_tr) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler(enabled=dtype is torch.float16)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - mean) / std

    def autocast():
        return torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None)

    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_tr), device=dev)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            with autocast():
                logits = model(prep(x_tr[idx]))
                loss = F.cross_entropy(logits.float(), y_tr[idx], label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
        model.eval()
        correct = torch.zeros((), device=dev, dtype=torch.long)
        with torch.inference_mode(), autocast():
            for i in range(0, len(y_val), BATCH):
                correct += (
                    model(prep(x_val[i : i + BATCH])).argmax(1) == y_val[i : i + BATCH]
                ).sum()
        accuracy = int(correct) / len(y_val)  # one sync per epoch, as cnnkit logs
    seconds = time.perf_counter() - start
    return {"images_per_second": len(y_tr) * epochs / seconds, "val_acc": accuracy}


def bench_predict(ckpt: Path, device: str, n: int, tmp: Path) -> tuple[float, float]:
    """(cnnkit predict images/s, bare decode + forward loop images/s) over n PNGs."""
    import cv2
    import numpy as np
    import torch

    from cnnkit.checkpoint import build_model, load_checkpoint
    from cnnkit.data.preprocess import normalize, prepare_image

    folder = tmp / "pngs"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:05d}.png"), rng.integers(0, 256, (64, 64, 3), np.uint8))
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "cnnkit", "predict", str(ckpt), str(folder), "--device", device,
           "--batch-size", "256", "--format", "jsonl", "--quiet"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    cnnkit_seconds = time.perf_counter() - start
    if result.returncode != 0 or len(result.stdout.splitlines()) != n:
        sys.exit(f"cnnkit predict failed:\n{result.stderr}")
    loaded = load_checkpoint(ckpt)
    model = build_model(loaded).to(device)
    spec = loaded.input
    start = time.perf_counter()
    paths = sorted(folder.iterdir())
    with torch.inference_mode():
        for i in range(0, n, 256):
            batch = np.stack([
                prepare_image(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), 3, spec.size)
                for p in paths[i : i + 256]
            ])  # fmt: skip
            x = normalize(torch.from_numpy(batch).to(device), spec.mean, spec.std)
            model(x).argmax(1).cpu()
    bare_seconds = time.perf_counter() - start
    # cnnkit's figure includes its start-up (imports, model build): the whole command.
    return n / cnnkit_seconds, n / bare_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (smoke)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per case")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 round, 500 PNGs")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to measure (bench_gpu.py needs one)")
        return
    epochs, repeats, n_png = (1, 1, 500) if args.quick else (args.epochs, args.repeats, 5000)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(f"device: {args.device} ({name}); torch {torch.__version__}")
    precisions = ["32-true", "16-mixed"]
    if args.device.startswith("cuda") and torch.cuda.is_bf16_supported():
        precisions.append("bf16-mixed")
    cases = [("simplecnn", 32), ("resnet18", 64)]
    last_ckpt = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for model, size in cases:
            for precision in precisions:
                ratios, ours, theirs = [], [], []
                for r in range(repeats):
                    first_plain = r % 2 == 0  # alternate who goes first
                    if first_plain:
                        plain = run_plain_loop(model, size, epochs, precision, args.device)
                    out = tmp / f"runs-{model}-{precision}-{r}"
                    summary = run_cnnkit_train(model, size, epochs, precision, args.device, out)
                    if not first_plain:
                        plain = run_plain_loop(model, size, epochs, precision, args.device)
                    ours.append(summary["images_per_second"])
                    theirs.append(plain["images_per_second"])
                    ratios.append(ours[-1] / theirs[-1])
                    last_ckpt = Path(summary["best_checkpoint"])
                print(
                    f"train {model} {size}x{size} {precision}: cnnkit {max(ours):,.0f} images/s, "
                    f"plain loop {max(theirs):,.0f} images/s, ratio "
                    f"{statistics.median(ratios):.2f}x (median of {repeats})"
                )
        ours_p, bare_p = bench_predict(last_ckpt, args.device, n_png, tmp)
        print(
            f"predict {n_png} 64x64 PNGs with resnet18: cnnkit (whole command) "
            f"{ours_p:,.0f} images/s, bare decode + forward loop {bare_p:,.0f} images/s"
        )


if __name__ == "__main__":
    main()
