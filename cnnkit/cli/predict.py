"""``cnnkit predict``: classify images, folders and videos, streaming records to stdout."""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Annotated, Any

import typer

from cnnkit import console
from cnnkit.cli.app import CheckpointArg, DeviceOpt, QuietOpt, TopKOpt, app
from cnnkit.errors import CnnkitError


class PredictFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit predict runs/train/checkpoints/best.ckpt photos/\n\n"
    "  find . -name '*.png' | cnnkit predict best.ckpt - --format csv > labels.csv\n\n"
    "  cnnkit predict best.ckpt clip.mp4 --window 16 --stride 8 | jq -c 'select(.window)'",
)
def predict(
    checkpoint: CheckpointArg,
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Images, videos, folders (recursive, sorted), globs, or '-' for paths on stdin."
        ),
    ],
    top_k: TopKOpt = 5,
    format: Annotated[
        PredictFormat | None,
        typer.Option("--format", help="Output format. Default: table on a terminal, else jsonl."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")] = 32,
    window: Annotated[
        int | None,
        typer.Option(min=1, help="Video, 3D model: frames per window (default: the model's T)."),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Video: frames between window starts (3D, default: the window) "
            "or between classified frames (2D, default 1).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Threads decoding images ahead of the model.")
    ] = 2,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Classify images, folders and videos with a trained checkpoint.

    Results stream to stdout batch by batch (JSON Lines, CSV or a table); an
    unreadable input becomes an error record, the rest go on, and the exit
    status is 1 at the end.
    """
    console.set_quiet(quiet)
    from cnnkit.checkpoint import load_checkpoint
    from cnnkit.device import resolve_device
    from cnnkit.inference import PredictInput, Predictor, predict_inputs, share_cpu_with_decoders
    from cnnkit.io.sources import expand_sources
    from cnnkit.records import CsvWriter, JsonLinesWriter, TableWriter, csv_columns

    ckpt = load_checkpoint(checkpoint)
    choice = resolve_device(device)
    console.info(f"device: {choice.torch_device} ({choice.reason})")
    predictor = Predictor.from_loaded(ckpt, choice.torch_device, batch_size)
    if choice.torch_device == "cpu":
        share_cpu_with_decoders(workers)
    named = [] if "-" in inputs else expand_sources(inputs)
    counts = {"inputs": 0}

    def stream() -> Any:
        # Paths on stdin are taken one line at a time, so `find ... | cnnkit predict -`
        # answers while find is still running.
        expanded = named or _iter_expanded(inputs, expand_sources)
        # A bar on a terminal's stderr only; it counts inputs taken up for decoding.
        for s in console.track(expanded, total=len(named) or None, description="predicting"):
            counts["inputs"] += 1
            yield PredictInput(s.path, s.kind == "video", s.error)

    fmt = format or (PredictFormat.table if sys.stdout.isatty() else PredictFormat.jsonl)
    if fmt is PredictFormat.jsonl:
        writer: Any = JsonLinesWriter(sys.stdout)
    elif fmt is PredictFormat.csv:
        has_video = any(s.kind == "video" for s in named) if named else True
        writer = CsvWriter(sys.stdout, csv_columns(has_video, predictor.is_video_model))
    else:
        writer = TableWriter(sys.stdout)
    failed = 0
    try:
        for records in predict_inputs(predictor, stream(), top_k, window, stride, workers):
            for r in records:
                if "error" in r:
                    failed += 1
                    sys.stderr.write(f"error: {r['path']}: {r['error']}\n")
            writer.write(records)
        writer.close()
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly, like other Unix filters.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    if failed:
        raise CnnkitError(
            f"{failed} of {counts['inputs']} inputs could not be classified",
            hint="see the error lines above; the other results are complete",
        )


def _iter_expanded(inputs: list[str], expand: Any) -> Any:
    """Expand INPUT arguments in order, reading '-' (paths on stdin) lazily, line by line."""
    for item in inputs:
        if item != "-":
            yield from expand([item])
            continue
        for line in sys.stdin:
            if line.strip():
                yield from expand([line.strip()])
