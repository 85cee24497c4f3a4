"""``cnnkit predict``: classify images, folders and videos, streaming records to stdout or -o."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any

import typer

from cnnkit import console
from cnnkit.cli.app import (
    BackgroundOpt,
    CheckpointArg,
    DeviceOpt,
    PrecisionOpt,
    QuietOpt,
    TopKOpt,
    app,
)
from cnnkit.cli.output import record_error_line, show_messages
from cnnkit.errors import CnnkitError
from cnnkit.training.options import MAX_BATCH_SIZE, MAX_FRAMES, MAX_STRIDE, MAX_WORKERS


class PredictFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit predict runs/train/checkpoints/best.ckpt photos/\n\n"
    "  find . -name '*.png' | cnnkit predict best.ckpt - --format csv > labels.csv\n\n"
    "  cnnkit predict best.ckpt - < photo.jpg\n\n"
    "  cnnkit predict resnet50:imagenet photo.jpg --top-k 5\n\n"
    "  cnnkit predict r3d_18:kinetics400 clip.mp4\n\n"
    "  cnnkit predict best.ckpt clip.mp4 --window 16 --stride 8 | jq -c 'select(.window)'\n\n"
    "  cnnkit predict best.onnx photos/ --ray-address ray://head:10001 > labels.jsonl\n\n"
    "  cnnkit predict best.onnx photos/ --shard auto -o part-$SLURM_ARRAY_TASK_ID.jsonl --resume",
)
def predict(
    checkpoint: CheckpointArg,
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Images, videos, folders (recursive, sorted), globs, or '-': stdin holding "
            "one image (its bytes, recorded as path '-') or paths, one per line."
        ),
    ],
    top_k: TopKOpt = 5,
    format: Annotated[
        PredictFormat | None,
        typer.Option(
            "--format",
            help="Output format. Default: table on a terminal, else jsonl (JSON Lines: one "
            "record per input, frame or window).",
        ),
    ] = None,
    json_: Annotated[
        bool,
        typer.Option(
            "--json",
            help="The same as --format jsonl: JSON as the other commands' --json prints, one "
            "document per line so that results stream.",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Images per batch.")
    ] = 32,
    window: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_FRAMES,
            help="Video, 3D model: frames per window (default: the model's T).",
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_STRIDE,
            help="Video: frames between window starts (3D, default: the window) "
            "or between classified frames (2D, default 1).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=MAX_WORKERS,
            help="Threads decoding images ahead of the model "
            "(default: half the cores of the CPU budget, 1 to 4).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the records to this file as they are made (.jsonl or .csv, else "
            "--format), not to stdout. An existing file is refused unless --resume.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Go on with the -o file: keep the inputs it holds records for (errors too) and "
            "append only the rest; a missing file is started.",
        ),
    ] = False,
    retry_errors: Annotated[
        bool,
        typer.Option(
            "--retry-errors", help="With --resume: classify again the inputs it has errors for."
        ),
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N|auto",
            help="I/N: take only part I of N (I counts from 0) of the inputs sorted by path, "
            "contiguous and balanced by count, for job arrays. auto: from Slurm's "
            "SLURM_ARRAY_TASK_ID, _MIN and _COUNT.",
            show_default=False,
        ),
    ] = None,
    background: BackgroundOpt = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster with Ray Data (pip install 'cnnkit\\[ray]'): "
            "$RAY_ADDRESS's, else a local Ray on this machine's cores; records still in input "
            "order.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="The Ray cluster for --ray (implies it): ray://HEAD:10001, HOST:6379, auto "
            "(the one running here) or local (a new one).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Classify images, folders and videos with a trained checkpoint.

    Results stream to stdout batch by batch (JSON Lines, CSV or a table); an
    unreadable input becomes an error record, the rest go on, and the exit
    status is 1 at the end.
    """
    show_messages(quiet)
    from cnnkit.data.preprocess import parse_colour
    from cnnkit.errors import InputError

    if json_:
        if format not in (None, PredictFormat.jsonl):
            raise InputError(
                f"--json and --format {format.value} ask for different formats",
                hint="--json means --format jsonl; give only one of the two",
            )
        format = PredictFormat.jsonl
    from cnnkit.cli.batchjob import BatchJob

    job = BatchJob(output, format and format.value, resume, retry_errors, shard)
    from cnnkit.io.sources import expand_sources, iter_sources
    from cnnkit.predict import PredictInput, open_predictor, predict_inputs
    from cnnkit.predict.images import NAMED_CHUNK
    from cnnkit.records import CsvWriter, JsonLinesWriter, TableWriter, csv_columns

    colour = parse_colour(background) if background is not None else None
    if "-" in inputs and sys.stdin is None:
        # Started with stdin closed (`<&-`): '-' cannot be read at all, which is a
        # mistake in the calling script, unlike an empty list (see below).
        raise InputError(
            "INPUT is '-' but stdin is closed",
            hint="pipe paths or an image in: find photos -name '*.png' | cnnkit predict CKPT -",
        )
    if ray or ray_address is not None:
        given = [name for name, value in (("-o", output), ("--resume", resume),
                 ("--shard", shard)) if value]  # fmt: skip
        if given:
            raise InputError(
                f"--ray does not take {', '.join(given)}: a Ray run writes every record to stdout",
                hint="redirect stdout to a file (> labels.jsonl), or run without --ray",
            )
        from cnnkit.cli.predict_ray import predict_on_ray

        fmt = format or (PredictFormat.table if sys.stdout.isatty() else PredictFormat.jsonl)
        predict_on_ray(checkpoint, inputs, ray_address, fmt.value, top_k, batch_size, window,
                       stride, device, precision, colour)  # fmt: skip
        return
    from cnnkit.io.pipeline import decode_workers

    workers = workers or decode_workers()
    predictor, _ = open_predictor(
        checkpoint, device, batch_size, decoders=workers, precision=precision
    )
    if predictor.device == "cpu" and predictor.backend.name == "torch":
        from cnnkit.io.pipeline import share_cpu_with_decoders

        share_cpu_with_decoders(workers)  # this process computes beside its decoders
    if colour is not None:
        predictor.set_background(colour)
    if window is not None:
        predictor.check_window(window)  # before any input is read
    listed = job.lists_inputs or "-" not in inputs  # else paths on stdin stream
    named = expand_sources(inputs) if listed else []
    has_video = any(s.kind == "video" for s in named) if listed else True
    named = job.select(named)
    _check_batch_memory(predictor, batch_size, window, named)
    counts = {"inputs": 0}

    def stream() -> Any:
        # Paths on stdin are taken one line at a time, so `find ... | cnnkit predict -`
        # answers while find is still running.
        expanded = named if listed else iter_sources(inputs)
        # A bar on a terminal's stderr only; it counts inputs taken up for decoding.
        for s in console.track(expanded, total=len(named) or None, description="predicting"):
            counts["inputs"] += 1
            yield PredictInput(s.path, s.kind == "video", s.error, s.data)

    fmt = PredictFormat(job.format) if job.format else format
    fmt = fmt or (PredictFormat.table if sys.stdout.isatty() else PredictFormat.jsonl)
    columns = csv_columns(has_video, predictor.is_video_model)
    named = job.open(named, columns if fmt is PredictFormat.csv else None, predictor.classes, top_k)
    out = job.file or sys.stdout
    if fmt is PredictFormat.jsonl:
        writer: Any = JsonLinesWriter(out)
    elif fmt is PredictFormat.csv:
        writer = CsvWriter(out, columns, header=not job.has_header)
    else:
        writer = TableWriter(out)
    failed = 0
    # Inputs named on the command line are all known: decode threads take them 16 at a
    # time (see map_ahead). Paths on stdin are answered as they come, one at a time.
    chunk = NAMED_CHUNK if named else 1
    results = predict_inputs(predictor, stream(), top_k, window, stride, workers, chunk)
    try:
        for records in results:
            for r in records:
                if "error" in r:
                    failed += 1
                    sys.stderr.write(record_error_line(r) + "\n")
            writer.write(records)
        writer.close()
        job.close()
    finally:
        job.abandon()
        # When stdout's reader goes away (`| head -1`: BrokenPipeError, a quiet
        # exit in cli.app) or it cannot be written, the decode threads stop here
        # and now: a decoder still running at interpreter exit aborts it.
        results.close()
    if counts["inputs"] == 0 and not listed:
        # Only stdin can hold nothing (a named folder or glob that is empty is an
        # error record). An empty `find` piped in is common in scripts and not a
        # failure: say so, and exit 0.
        console.info("note: no inputs (stdin was empty)")
    if failed:
        raise CnnkitError(
            f"{failed} of {counts['inputs']} inputs could not be classified",
            hint="see the error lines above; the other results are complete",
        )


def _check_batch_memory(predictor: Any, batch_size: int, window: int | None, named: list) -> None:
    """Refuse up front a batch that cannot fit in memory (one line, not numpy's traceback).

    A video's batch is allocated whole, ``--batch-size`` windows or frames at
    once, whatever the video's length; image batches grow with the inputs, so
    named images need at most as many samples as there are images. Paths read
    from stdin are not known yet, and are not counted.
    """
    from cnnkit.ops.limits import check_batch_memory

    spec = predictor.input
    options = f"--batch-size {batch_size}"
    if predictor.is_video_model:
        frames = window or spec.frames
        sample = (spec.channels, frames, *spec.size)
        options += f", --window {frames}"
        check_batch_memory(batch_size, sample, "windows", options, filled=False)
        return
    sample = (spec.channels, *spec.size)
    if any(s.kind == "video" for s in named):
        check_batch_memory(batch_size, sample, "frames", options, filled=False)
    images = sum(s.kind != "video" for s in named)
    check_batch_memory(min(batch_size, images), sample, "images", options)
