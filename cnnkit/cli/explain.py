"""``cnnkit explain``: where the network looked, as heat maps over the inputs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit import console
from cnnkit.cli.app import BackgroundOpt, CheckpointArg, DeviceOpt, QuietOpt, app
from cnnkit.cli.output import record_error_line, show_messages
from cnnkit.training.options import MAX_BATCH_SIZE, MAX_STRIDE, MAX_TOP_K


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit explain runs/train/checkpoints/best.ckpt digit.png  # explain/digit-gradcam.png\n\n"
    "  cnnkit explain best.ckpt photos/ -o maps --method gradcam++ --json\n\n"
    "  cnnkit explain best.ckpt cat.jpg --class dog --layer layer3\n\n"
    "  cnnkit explain best.onnx digit.png --method occlusion",
)
def explain(
    checkpoint: CheckpointArg,
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Images, videos, folders (recursive), globs, or - for paths (or one image) on "
            "stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", file_okay=False, help="Folder for the overlay PNGs."),
    ] = Path("explain"),
    method: Annotated[
        str,
        typer.Option(
            help="gradcam (the last convolution stage's activations weighted by the class "
            "score's gradient), gradcam++, or occlusion (the score's drop under a sliding grey "
            "patch: any model, .onnx included)."
        ),
    ] = "gradcam",
    class_: Annotated[
        str | None,
        typer.Option("--class", help="Class to explain (default: each input's prediction)."),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            min=1,
            max=MAX_TOP_K,
            help="Explain each input's K most likely classes: K maps per input, ranked "
            "(not with --class).",
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="Layer for gradcam, as `cnnkit inspect` names them (default: the last one "
            "whose output is still a map)."
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_STRIDE,
            help="A 2D model on a video: explain every Nth frame (default 1), like predict. "
            "A 3D model explains its windows of T frames one after another.",
        ),
    ] = None,
    alpha: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Opacity of the heat map over the image.")
    ] = 0.5,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Inputs per batch.")
    ] = 16,
    background: BackgroundOpt = None,
    device: DeviceOpt = "auto",
    json_: Annotated[
        bool, typer.Option("--json", help="One JSON line per map on stdout (JSON Lines).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw where the network looked: a heat map over each input, for a class.

    One overlay PNG per image (a map of the same name from an earlier run is
    replaced), the class and its score in a band above the image; an image
    under 224 pixels on its shorter side is enlarged by a whole factor (its
    pixels stay sharp), a larger one keeps its size. A video gives one MP4,
    drawn the same way. With --json, one JSON line per image or video window on
    stdout: path, label, score, method, layer, output, and the peak as x and y
    in the input's pixels.
    """
    show_messages(quiet)
    from cnnkit.data.preprocess import parse_colour
    from cnnkit.errors import CnnkitError
    from cnnkit.io.atomic import make_folder
    from cnnkit.io.sources import expand_sources
    from cnnkit.predict import open_predictor
    from cnnkit.refs import is_onnx_path
    from cnnkit.saliency import check_method, check_request, explain_sources

    check_method(method, is_onnx_path(checkpoint))
    colour = parse_colour(background) if background is not None else None
    predictor, _ = open_predictor(checkpoint, device, batch_size)
    if colour is not None:
        predictor.set_background(colour)
    target, chosen_layer = check_request(predictor, method, class_, top_k, layer, stride)
    sources = expand_sources(inputs)
    out_dir = make_folder(output, "-o folder")
    failed = written = 0
    tracked = console.track(sources, total=len(sources), description="explaining")
    records = explain_sources(
        predictor, tracked, out_dir, method, chosen_layer, target, top_k, alpha, batch_size,
        stride or 1,
    )  # fmt: skip
    for record in records:
        if "error" in record:
            failed += 1
            sys.stderr.write(record_error_line(record) + "\n")
        else:
            written += 1
            if not json_:
                where = f" frames {record['start_frame']}-{record['end_frame']}" if (
                    "start_frame" in record) else ""  # fmt: skip
                console.info(
                    f"{record['path']}{where}: {record['label']} ({record['score']:.3f}) -> "
                    f"{record['output']}"
                )
        if json_:
            print_json_line(record)
    if failed:
        raise CnnkitError(
            f"{failed} of {len(sources)} inputs could not be explained",
            hint="see the error lines above"
            + ("; the other maps are written" if written else "; no map was written"),
        )


def print_json_line(record: dict[str, Any]) -> None:
    from cnnkit.jsontext import dumps

    sys.stdout.write(dumps(record) + "\n")
    sys.stdout.flush()
