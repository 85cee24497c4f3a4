"""``cnnkit inspect``: what is inside an image, a video, a dataset, a model or a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnkit import console
from cnnkit.cli.app import JsonOpt, QuietOpt, app, print_json
from cnnkit.cli.output import show_messages
from cnnkit.cli.render import render_inspect
from cnnkit.training.options import MAX_CLASSES


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit inspect  # the models and datasets cnnkit knows by name\n\n"
    "  cnnkit inspect lenet5\n\n"
    "  cnnkit inspect resnet18 --input-size 1x64x64 --num-classes 2 --json\n\n"
    "  cnnkit inspect c3d_small --input-size 3x16x112x112\n\n"
    "  cnnkit inspect digit.png\n\n"
    "  cnnkit inspect best.ckpt --image digit.png --feature-maps maps/ --kernels kernels.png\n\n"
    "  cnnkit inspect resnet18:imagenet --kernels filters.png\n\n"
    "  cnnkit inspect data/pets/",
)
def inspect(
    target: Annotated[
        str | None,
        typer.Argument(
            help="A model name, a .ckpt checkpoint, an exported .onnx, a pretrained model as "
            "MODEL:DATA (resnet18:imagenet), an image, a video, a dataset name or folder. "
            "Left out: list the registered models and the built-in datasets.",
            show_default=False,
        ),
    ] = None,
    input_size: Annotated[
        str | None,
        typer.Option(
            "--input-size",
            help="Model input CxHxW (1x28x28) or CxTxHxW (3x16x112x112); default: the model's.",
        ),
    ] = None,
    num_classes: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_CLASSES, help="Output classes for a model name (default 10)."),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Image (or video, for clip models) to run through."
        ),
    ] = None,
    feature_maps: Annotated[
        Path | None,
        typer.Option(
            "--feature-maps",
            file_okay=False,
            help="Folder for one PNG grid of activations per convolution (needs --image).",
        ),
    ] = None,
    kernels: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="PNG file for the first convolution's filters."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where torchvision datasets are stored.")
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show what is in an image, video, dataset, model or checkpoint; alone, list the models.

    Models show a layer table with output shapes, parameters, MACs
    (multiply-accumulates) and receptive fields; images show their numbers.
    With no target: the models and datasets cnnkit knows by name.
    """
    show_messages(quiet)
    from cnnkit import summary as core  # torch is imported only for models and checkpoints
    from cnnkit.errors import InputError

    model_options = {
        "--input-size": input_size,
        "--num-classes": num_classes,
        "--image": image,
        "--feature-maps": feature_maps,
        "--kernels": kernels,
    }
    if target is None:
        options = {**model_options, "--data-dir": data_dir}
        given = [flag for flag, value in options.items() if value is not None]
        if given:
            raise InputError(
                f"{given[0]} needs a TARGET",
                hint="e.g. cnnkit inspect lenet5 " + given[0] + " ...; "
                "cnnkit inspect alone lists the models and datasets",
            )
        from cnnkit.summary.catalog import catalog

        listing = catalog()
        if json_:
            print_json(listing)
        else:
            render_inspect(listing)
        return
    kind = core.detect_target(target)
    if kind != "model" and num_classes is not None:
        raise InputError(
            f"--num-classes applies to a model name, not to {kind} {target}",
            hint="a checkpoint keeps the classes it was trained on",
        )
    for flag, value in model_options.items():
        if kind not in ("model", "checkpoint") and value is not None:
            raise InputError(
                f"{flag} applies to models and checkpoints, not to {kind} {target}",
                hint=f"drop {flag}, or inspect a model name or a .ckpt",
            )
    # --kernels draws weights and needs no input; --image only feeds --feature-maps.
    if image is not None and feature_maps is None:
        raise InputError(
            "--image is only used with --feature-maps (it is the input whose activations "
            "are drawn)",
            hint="add --feature-maps DIR, or drop --image (--kernels needs no image)",
        )
    if feature_maps is not None and image is None:
        raise InputError(
            "--feature-maps and --image go together",
            hint="e.g. --image digit.png --feature-maps maps/",
        )
    if kernels is not None:
        from cnnkit.io.atomic import check_output_path

        check_output_path(kernels)  # before any work: a typo is reported at once

    if kind == "onnx":
        from cnnkit.onnxmodel import summarize_onnx

        result = summarize_onnx(target)
    elif kind == "image":
        result = core.summarize_image(target)
    elif kind == "video":
        result = core.summarize_video(target)
    elif kind == "dataset":
        from cnnkit.data.describe import describe_dataset

        result = describe_dataset(target, data_dir=data_dir)
    else:
        size = core.parse_input_size(input_size) if input_size else None
        if kind == "model":
            inspected = core.inspect_model(target, size, num_classes or 10)
        else:
            inspected = core.inspect_checkpoint(target, size)
        result = inspected.summary
        if image is not None and feature_maps is not None:
            batch = core.load_model_input(image, inspected)
            result["feature_maps"] = core.feature_map_grids(inspected.model, batch, feature_maps)
            console.info(f"wrote {len(result['feature_maps'])} feature-map grids to {feature_maps}")
        if kernels is not None:
            result["kernels"] = core.kernel_grid(inspected.model, kernels)
            console.info(f"wrote the filters of {result['kernels']['layer']} to {kernels}")
    if json_:
        print_json(result)
        return
    render_inspect(result)
