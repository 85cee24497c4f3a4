"""What the tests share: tiny media on disk, hand-made checkpoints, tiny training runs.

Images and videos are written with OpenCV directly, not with cnnkit.io, so
that tests of cnnkit's readers do not depend on its writers; functions return
the pixels in cnnkit's convention (RGB/RGBA order, gray as H×W). Checkpoints
are written in the layout ``cnnkit train`` writes, without training. No
network, and nothing on disk outside ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# ---------------------------------------------------------------------------
# media
# ---------------------------------------------------------------------------

# Lossy formats: the array returned is what decodes back, not what was encoded.
_LOSSY = {".jpg", ".jpeg", ".webp"}


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    return image


def write_array(path: str | Path, image: np.ndarray) -> np.ndarray:
    """Write an RGB(A)/gray array with cv2 and return the pixels a reader should get back."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix, _to_bgr(np.ascontiguousarray(image)))
    if not ok:
        raise ValueError(f"cv2 cannot encode {image.shape} {image.dtype} as {path.suffix}")
    path.write_bytes(encoded.tobytes())
    if path.suffix.lower() in _LOSSY:
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        return _to_bgr(decoded)  # the BGR<->RGB swap is its own inverse
    return image


def random_image(
    h: int = 16, w: int = 16, channels: int = 3, dtype: type = np.uint8, seed: int = 0
) -> np.ndarray:
    """H×W (channels=1) or H×W×channels random pixels over the dtype's full range."""
    rng = np.random.default_rng(seed)
    high = np.iinfo(dtype).max
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, high, size=shape, endpoint=True, dtype=dtype)


def make_image(
    path: str | Path,
    h: int = 16,
    w: int = 16,
    channels: int = 3,
    dtype: type = np.uint8,
    seed: int = 0,
) -> np.ndarray:
    """Write a random image (format from the extension) and return its pixels as read back."""
    return write_array(path, random_image(h, w, channels, dtype, seed))


def smooth_frames(
    frames: int = 8, h: int = 16, w: int = 16, seed: int = 0, colour: Sequence[int] | None = None
) -> np.ndarray:
    """T×H×W×3 uint8 RGB: a soft diagonal gradient in one colour, drifting one pixel a frame.

    Smooth content compresses with little loss, so decoded frames stay within
    a few levels of these and tests can compare them.
    """
    rng = np.random.default_rng(seed)
    if colour is None:
        colour = rng.integers(64, 256, size=3)
    phase = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        wave = 0.5 + 0.5 * np.sin((xx + yy + t) * (2 * np.pi / max(h + w, 2)) + phase)
        out[t] = (wave[:, :, None] * np.asarray(colour, np.float32)).astype(np.uint8)
    return out


def write_video(
    path: str | Path,
    frames: Sequence[np.ndarray],
    fps: float = 10.0,
    fourcc: str = "mp4v",
    bgr: bool = False,
) -> None:
    """Write H×W×3 uint8 frames (RGB, or BGR as OpenCV decodes them) with cv2.VideoWriter."""
    h, w = frames[0].shape[:2]
    # 4:2:0 codecs store colour for 2×2 pixel blocks; OpenCV silently crops odd
    # sizes, so the frames read back would not match the ones written.
    if h % 2 or w % 2:
        raise ValueError(f"test videos need even sizes, got {h}×{w}")
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), True
    )
    if not writer.isOpened():
        raise ValueError(f"cv2 cannot write {path} with {fourcc}")
    try:
        for frame in frames:
            writer.write(frame if bgr else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def make_video(
    path: str | Path,
    frames: int = 8,
    h: int = 16,
    w: int = 16,
    fps: float = 10.0,
    seed: int = 0,
    fourcc: str = "mp4v",
) -> np.ndarray:
    """Write a small smooth video and return the T×H×W×3 RGB frames written (pre-codec)."""
    clip = smooth_frames(frames, h, w, seed)
    write_video(path, clip, fps, fourcc)
    return clip


def _class_colour(index: int) -> np.ndarray:
    # Distinct, saturated colours so that a tiny model can tell classes apart quickly.
    hue = np.uint8((index * 47) % 180)
    hsv = np.array([[[hue, 220, 230]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.int16)


def make_image_folder(
    root: str | Path,
    classes: Sequence[str],
    per_class: int,
    h: int = 16,
    w: int = 16,
    ext: str = ".png",
    seed: int = 0,
) -> dict[str, list[Path]]:
    """root/<class>/img_000.png ...: per-class colour plus noise, so classes are learnable."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {}
    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        out[name] = []
        for i in range(per_class):
            noise = rng.integers(-30, 31, size=(h, w, 3))
            image = np.clip(_class_colour(ci) + noise, 0, 255).astype(np.uint8)
            path = folder / f"img_{i:03d}{ext}"
            write_array(path, image)
            out[name].append(path)
    return out


def make_video_folder(
    root: str | Path,
    classes: Sequence[str],
    per_class: int,
    frames: int = 8,
    h: int = 16,
    w: int = 16,
    ext: str = ".mp4",
    fps: float = 10.0,
    seed: int = 0,
    fourcc: str = "mp4v",
) -> dict[str, list[Path]]:
    """root/<class>/vid_000.mp4 ...: smooth frames in a per-class colour."""
    root = Path(root)
    out: dict[str, list[Path]] = {}
    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = _class_colour(ci)
        out[name] = []
        for i in range(per_class):
            clip = smooth_frames(frames, h, w, seed=seed * 1000 + ci * 100 + i, colour=colour)
            path = folder / f"vid_{i:03d}{ext}"
            write_video(path, clip, fps, fourcc)
            out[name].append(path)
    return out


# Python code that runs `cnnkit convolve` through the console-script entry with a slowed-down video
# writer, so the run is still going when the signal arrives.
SLOW_CONVOLVE = (
    "import sys, time; from cnnkit import cli; from cnnkit.io import video_writer as video\n"
    "w = video.VideoWriter.write\n"
    "def slow(self, f):\n"
    "    w(self, f); time.sleep(0.1)\n"
    "video.VideoWriter.write = slow\n"
    "sys.argv = ['cnnkit', 'convolve', 'v.mp4', '-k', 'sobel', '-o', 'out.mp4']\n"
    "cli.main()\n"
)


# ---------------------------------------------------------------------------
# checkpoints and training runs
# ---------------------------------------------------------------------------


def make_checkpoint(
    path: str | Path,
    model: str = "lenet5",
    classes: Sequence[str] = ("a", "b", "c"),
    channels: int = 1,
    size: Sequence[int] = (16, 16),
    frames: int | None = None,
    dataset: str = "",
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    state_dict: dict[str, Any] | None = None,
    **hparams: Any,
) -> Path:
    """Write a checkpoint of ``model`` with seeded random (or given) weights; return its path."""
    import torch

    from cnnkit.checkpoint import save_checkpoint
    from cnnkit.models.registry import create_model
    from cnnkit.spec import CheckpointMeta, InputSpec

    input_size = (channels, *([frames] if frames else []), *size)
    if state_dict is None:
        torch.manual_seed(seed)
        net = create_model(model, len(classes), channels, input_size=input_size).eval()
        state_dict = net.state_dict()
    meta = CheckpointMeta(
        model_name=model,
        classes=list(classes),
        input=InputSpec(channels, (size[0], size[1]), frames, mean or [0.5] * channels,
                        std or [0.25] * channels),
        dataset=dataset,
        cnnkit_version="0.1.0",
        seed=seed,
        **hparams,
    )  # fmt: skip
    return save_checkpoint(path, meta, state_dict)


def tiny_config(tmp_path: Path, **options: Any) -> Any:
    """A TrainConfig for a run of seconds: 1 epoch of lenet5 on 24 shapes per split at 16×16.

    Any option given replaces the default; runs go to ``tmp_path/runs``.
    """
    from cnnkit.training.options import TrainConfig

    base: dict[str, Any] = dict(
        dataset="shapes",
        model="lenet5",
        epochs=1,
        batch_size=16,
        limit=24,
        img_size=16,
        device="cpu",
        out=str(tmp_path / "runs"),
    )
    return TrainConfig(**{**base, **options})


def run_cnnkit(
    *args: str, cwd: Path, timeout: int = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m cnnkit ARGS`` in a fresh process (real signals, exit statuses and stderr)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    env.pop("CNNKIT_RUN_DIR", None)  # a DDP rank's variable must not leak into a new run
    return subprocess.run(
        [sys.executable, "-m", "cnnkit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cnnkit_in_process(monkeypatch: Any, capsys: Any, *args: str) -> tuple[int, str, str]:
    """``cnnkit ARGS`` in this process: (exit status, stdout, stderr)."""
    from cnnkit import cli
    from cnnkit.cli.output import show_messages

    show_messages(False)  # the quiet state is global: a -q test before must not leak
    monkeypatch.setattr(sys, "argv", ["cnnkit", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write_tiny_mnist(root: Path, train: int = 60, test: int = 30) -> None:
    """Random 28×28 'digits' in torchvision's raw MNIST IDX layout (labels cycle 0-9)."""
    import struct

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
            header += struct.pack(">" + "I" * array.ndim, *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())


def run_line_in_process(line: str, capsys: Any, monkeypatch: Any) -> tuple[int, str, str]:
    """Run one ``cnnkit ...`` line through cnnkit.cli.main in-process: (status, stdout, stderr)."""
    import shlex

    from cnnkit.cli import main, output

    monkeypatch.setattr(sys, "argv", shlex.split(line))
    output._state["console"] = None  # bind the stderr console to this capture
    output.show_messages(False)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
