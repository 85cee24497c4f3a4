"""``cnnkit export``: a checkpoint as an ONNX model that predict, eval and inspect take."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnkit import console
from cnnkit.cli.app import JsonOpt, QuietOpt, app, print_json
from cnnkit.cli.output import show_messages
from cnnkit.onnxexport import MAX_BATCH

# The largest fixed batch: export runs the model on a batch this big to trace it.


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit export runs/train/checkpoints/best.ckpt            # best.onnx beside it\n\n"
    "  cnnkit export best.ckpt -o digits.onnx --batch 1 --json\n\n"
    "  cnnkit predict digits.onnx photos/                         # ONNX Runtime, no torch",
)
def export(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="A .ckpt written by cnnkit train, or MODEL:DATA (resnet18:imagenet).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            dir_okay=False,
            help="The .onnx file to write (default: the checkpoint's name with .onnx).",
        ),
    ] = None,
    opset: Annotated[
        int, typer.Option(min=18, max=23, help="ONNX opset version of the graph.")
    ] = 18,
    batch: Annotated[
        str,
        typer.Option(
            help="Batch axis: 'dynamic' (any batch size) or a fixed size N, 1 to 1024 (some "
            "runtimes run fixed shapes faster)."
        ),
    ] = "dynamic",
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Run the exported model in ONNX Runtime and PyTorch on the same inputs and "
            "refuse to write it if their logits differ by more than 1e-4 of their size.",
        ),
    ] = True,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a checkpoint to ONNX: uint8 pixels in, logits out, normalisation inside.

    The file's metadata carries the classes, the input spec, the model name,
    the cnnkit version and the checkpoint's SHA-256, so `cnnkit predict`,
    `eval` and `inspect` use it like the checkpoint, with ONNX Runtime and
    without torch. Needs the onnx extra: pip install 'cnnkit\\[onnx]'.
    """
    show_messages(quiet)
    from cnnkit.onnxexport import default_output, export_onnx

    if batch == "dynamic":
        fixed = None
    elif batch.isascii() and batch.isdigit() and 1 <= int(batch) <= MAX_BATCH:
        fixed = int(batch)
    else:
        raise typer.BadParameter(
            f"{batch!r} is not 'dynamic' or a size from 1 to {MAX_BATCH}", param_hint="--batch"
        )
    out = output or default_output(checkpoint)
    result = export_onnx(checkpoint, out, opset=opset, batch=fixed, verify=verify)
    if result.max_abs_diff is not None:
        console.info(
            f"verified in ONNX Runtime: logits within {result.max_abs_diff:.2g} of PyTorch's"
        )
    console.info(f"wrote {result.path} ({result.bytes:,} bytes, opset {result.opset})")
    if json_:
        print_json(result.to_json())
    else:
        print(result.path)
