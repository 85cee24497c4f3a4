"""The cnnkit command line: parse, call one core function, render.

This is the only module that imports typer. Heavy imports (torch, lightning)
happen inside command bodies so that ``cnnkit --help`` and ``cnnkit convolve``
on images stay fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit import __version__, console
from cnnkit.errors import CnnkitError

app = typer.Typer(
    name="cnnkit",
    help="Image and video classification with convolutional networks: "
    "convolve, train, eval, predict, inspect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnnkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Image and video classification with convolutional networks."""


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def not_implemented(command: str) -> None:
    raise CnnkitError(
        f"'cnnkit {command}' is not implemented yet",
        hint="see `cnnkit --help` for the commands available in this version",
    )


# ---------------------------------------------------------------------------
# convolve
# ---------------------------------------------------------------------------


class PaddingMode(str, Enum):
    zeros = "zeros"
    reflect = "reflect"
    replicate = "replicate"
    circular = "circular"


class Scale(str, Enum):
    auto = "auto"
    abs = "abs"
    clip = "clip"
    minmax = "minmax"


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit convolve photo.jpg -k sobel\n\n"
    "  cnnkit convolve photo.jpg -k gaussian:7,1.5 -o blur.png\n\n"
    '  cnnkit convolve digit.png -k "1,0,-1;2,0,-2;1,0,-1" --stride 2 --explain\n\n'
    "  cnnkit convolve clip.mp4 -k temporal-diff -o motion.mp4\n\n"
    "  cat photo.png | cnnkit convolve - -k laplacian -o - > edges.png",
)
def convolve(
    input: Annotated[
        str | None,
        typer.Argument(help="Image, video, or '-' for an encoded image on stdin."),
    ] = None,
    kernel: Annotated[
        str | None,
        typer.Option(
            "--kernel",
            "-k",
            help="Kernel name (see --list-kernels), 'gaussian:7,1.5', inline rows "
            "'1,0,-1;2,0,-2;1,0,-1', 3D slices separated by '|', or a .txt/.csv/.npy file.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (.npy keeps raw float32; image/video formats are 8-bit); "
            "'-' writes PNG to stdout. Default: <stem>-<kernel>.<ext> here.",
        ),
    ] = None,
    stride: Annotated[
        str, typer.Option(help="Stride: one int, or per axis 'SH,SW' / 'ST,SH,SW'.")
    ] = "1",
    padding: Annotated[
        str, typer.Option(help="'same' (size kept at stride 1), 'valid' (none), or N pixels.")
    ] = "same",
    padding_mode: Annotated[
        PaddingMode,
        typer.Option(help="How the border is filled: reflect mirrors without repeating the edge."),
    ] = PaddingMode.reflect,
    dilation: Annotated[str, typer.Option(help="Dilation: one int, or per axis.")] = "1",
    gray: Annotated[
        bool, typer.Option("--gray", help="Convert to one gray channel first.")
    ] = False,
    flip: Annotated[
        bool, typer.Option("--flip", help="Flip the kernel on every axis: true convolution.")
    ] = False,
    scale: Annotated[
        Scale,
        typer.Option(
            help="How float results become 8-bit pixels: auto (clip smoothing kernels, "
            "min-max signed ones), abs, clip, minmax."
        ),
    ] = Scale.auto,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show the kernel, shapes and output-size formula.")
    ] = False,
    list_kernels: Annotated[
        bool, typer.Option("--list-kernels", help="List the named kernels as matrices and exit.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Apply a kernel the way a Conv2d/Conv3d layer would: stride, padding, dilation.

    2D kernels filter images (and videos frame by frame); 3D kernels also slide
    over time on videos. Values are computed on the pixels as stored (0-255).
    """
    console.set_quiet(quiet)
    # Only numpy/OpenCV work here: torch is never imported on this path.
    from cnnkit import convolve_media
    from cnnkit.errors import InputError
    from cnnkit.kernels import parse_kernel

    if list_kernels:
        _show_kernel_bank(json_)
        return
    if input is None:
        raise InputError("no INPUT given", hint="give an image or video file, or '-' for stdin")
    if kernel is None:
        raise InputError("no --kernel given", hint="e.g. -k sobel; see --list-kernels")
    if output == "-" and (json_ or explain):
        raise InputError(
            "-o - writes PNG bytes to stdout, which --json/--explain also use",
            hint="write the image to a file with -o FILE",
        )
    options = convolve_media.ConvolveOptions(
        kernel=parse_kernel(kernel),
        stride=convolve_media.parse_axis_values(stride, "stride", 1),
        padding=convolve_media.parse_padding(padding),
        padding_mode=padding_mode.value,
        dilation=convolve_media.parse_axis_values(dilation, "dilation", 1),
        gray=gray,
        flip=flip,
        scale=scale.value,
    )
    stdin = None
    if input == "-":
        if sys.stdin.isatty():
            raise InputError(
                "INPUT is '-' but nothing is piped in", hint="cat img.png | cnnkit ..."
            )
        stdin = sys.stdin.buffer.read()
    # --explain alone only describes; with -o it also writes the result.
    report = convolve_media.convolve_file(
        input,
        options,
        output,
        write=not explain or output is not None,
        stdin=stdin,
        want_stats=json_,
    )
    if json_:
        doc = report.to_dict()
        if explain:
            doc["explain"] = report.explanation.to_dict()
        print_json(doc)
        return
    if explain:
        typer.echo(_explain_text(report.explanation, report))
    if report.output not in (None, "-"):
        console.info(f"wrote {report.output} ({_shape_text(report.explanation.output_shape)})")


def _shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "×".join(str(n) for n in shape)


def _explain_text(expl: Any, report: Any) -> str:
    """--explain as plain text: kernel matrix, shapes, and the filled-in size formula."""
    from cnnkit.kernels import format_kernel

    kernel = expl.kernel
    names = ("T", "H", "W", "C") if report.is_video else ("H", "W", "C")
    labels = "×".join(names[: len(expl.input_shape)])
    kind = "Conv3d" if kernel.ndim == 3 else "Conv2d"
    lines = [
        f"kernel {kernel.name}: {_shape_text(kernel.shape)}, cross-correlation as in {kind}"
        + (" (flipped: true convolution)" if report.flip else ""),
        *("  " + row for row in format_kernel(kernel).splitlines()),
        f"input   {labels} = {_shape_text(expl.input_shape)}",
        f"stride {_shape_text(report.stride)}, dilation {_shape_text(report.dilation)}, "
        f"padding {report.padding}"
        + (f" ({expl.padding_mode})" if any(a.pad_before or a.pad_after for a in expl.axes) else "")
        + ": "
        + ", ".join(f"{a.name} {a.pad_before}+{a.pad_after}" for a in expl.axes),
        "output size per axis: floor((n + pad_before + pad_after - d·(k-1) - 1) / s) + 1",
        *("  " + a.formula() for a in expl.axes),
        f"output  {labels} = {_shape_text(expl.output_shape)}",
    ]
    if report.is_video and kernel.ndim == 2:
        lines.append("(a 2D kernel is applied to each frame; the frame count is kept)")
    return "\n".join(lines)


def _show_kernel_bank(as_json: bool) -> None:
    """--list-kernels: every named kernel (with default parameters) as a matrix."""
    from cnnkit.kernels import format_kernel, kernel_defs, kernel_usage, named_kernel

    entries = []
    for kdef in kernel_defs():
        k = named_kernel(kdef.name)
        entries.append((kdef, k))
    if as_json:
        print_json(
            [
                {
                    "name": kdef.name,
                    "usage": kernel_usage(kdef),
                    "dims": kdef.dims,
                    "params": list(kdef.params),
                    "defaults": list(kdef.defaults),
                    "shape": list(k.shape),
                    "combine": k.combine,
                    "description": kdef.description,
                    "weights": [c.tolist() for c in k.components],
                }
                for kdef, k in entries
            ]
        )
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="cnnkit kernels (defaults shown; parameters after ':')", show_lines=True)
    # The description sits under the name: a column of its own is squeezed to
    # nothing on an 80-column terminal next to wide weight matrices.
    table.add_column("kernel", ratio=1, min_width=24)
    table.add_column("size", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    for kdef, k in entries:
        usage = f"[bold]{escape(kernel_usage(kdef))}[/bold]"
        if kdef.defaults:
            usage += " (" + ",".join(f"{d:g}" for d in kdef.defaults) + ")"
        usage += f"\n[dim]{escape(kdef.description)}[/dim]"
        table.add_row(usage, _shape_text(k.shape), format_kernel(k))
    Console(highlight=False).print(table)


# ---------------------------------------------------------------------------
# train / eval / predict / inspect: filled in by their own issues
# ---------------------------------------------------------------------------


class Optimizer(str, Enum):
    adamw = "adamw"
    adam = "adam"
    sgd = "sgd"


class Schedule(str, Enum):
    cosine = "cosine"
    onecycle = "onecycle"
    none = "none"


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit train --dataset shapes\n\n"
    "  cnnkit train --dataset mnist --data-dir ~/data --model lenet5 --epochs 5\n\n"
    "  cnnkit train --dataset moving-shapes --model c3d_small\n\n"
    "  cnnkit train --dataset photos/ --img-size 64 --name photos --json\n\n"
    "  cnnkit train --device cpu --devices 2 --strategy ddp",
)
def train(
    ctx: typer.Context,
    dataset: Annotated[
        str,
        typer.Option(
            help="Built-in name (shapes, moving-shapes, mnist, fashion-mnist, kmnist, cifar10, "
            "cifar100, svhn) or a folder with one subfolder per class (optional train/ val/ test/)."
        ),
    ] = "shapes",
    model: Annotated[
        str | None,
        typer.Option(help="Registered model. Default: simplecnn for images, c3d_small for video."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs (default 10 for images, 3 for clips).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Batch size (default 64 for images, 32 for clips)."),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(min=0.0, help="Peak learning rate (default 3e-3).")
    ] = None,
    optimizer: Annotated[
        Optimizer, typer.Option(help="Optimizer (SGD: momentum 0.9, Nesterov).")
    ] = Optimizer.adamw,
    weight_decay: Annotated[
        float | None,
        typer.Option(min=0.0, help="Weight decay (default 0.05 AdamW, 5e-4 others)."),
    ] = None,
    schedule: Annotated[
        Schedule, typer.Option(help="Learning-rate schedule, stepped per batch.")
    ] = Schedule.cosine,
    label_smoothing: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.5, help="Label smoothing (default 0.1 for images, 0 clips)."),
    ] = None,
    augment: Annotated[
        bool,
        typer.Option(
            help="Random shifts, small rotations and (where they keep labels) flips, on the device."
        ),
    ] = True,
    img_size: Annotated[
        int | None,
        typer.Option(
            min=4,
            max=4096,
            help="Resize inputs to N×N (default: the data's own size, or the model's).",
        ),
    ] = None,
    frames: Annotated[
        int | None, typer.Option(min=1, help="Frames per video clip (default 8).")
    ] = None,
    val_split: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Fraction held out for validation when there is no val split."
        ),
    ] = 0.1,
    seed: Annotated[
        int, typer.Option(help="Seed for data order, splits, augmentation and weights.")
    ] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    devices: Annotated[
        str, typer.Option(help="Lightning devices: a count, a list '0,1', or auto.")
    ] = "1",
    num_nodes: Annotated[int, typer.Option(min=1, help="Machines (Lightning num_nodes).")] = 1,
    strategy: Annotated[
        str, typer.Option(help="Lightning strategy: auto, ddp, ddp_spawn, fsdp...")
    ] = "auto",
    precision: Annotated[
        str | None, typer.Option(help="Lightning precision: 32-true, 16-mixed, bf16-mixed...")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, help="DataLoader workers for data decoded from files.")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(min=1, help="Stop after N epochs without a better val_acc.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder that holds the run folders.")] = Path("runs"),
    name: Annotated[
        str | None,
        typer.Option(help="Run folder name (default train, train-2, ...); must be new."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Continue from a checkpoint (into a new run folder), with the dataset and "
            "options it records unless given here.",
        ),
    ] = None,
    pretrained: Annotated[
        bool, typer.Option("--pretrained", help="Start from pretrained weights (none are bundled).")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where torchvision datasets live (default $CNNKIT_DATA, else ~/.cache/cnnkit)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use at most N samples per split (quick runs).")
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a 2D or 3D CNN with Lightning; checkpoints and logs go to a new run folder.

    Ctrl-C or SIGTERM saves checkpoints/last.ckpt and prints the --resume command.
    """
    console.set_quiet(quiet)
    from cnnkit.training.fit import TrainConfig, TrainingInterrupted, fit

    # Options typed on the command line (or from the environment): with --resume,
    # the others come from the checkpoint rather than from these defaults.
    given = [
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    ]

    cfg = TrainConfig(
        dataset=dataset,
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer.value,
        weight_decay=weight_decay,
        schedule=schedule.value,
        label_smoothing=label_smoothing,
        augment=augment,
        img_size=img_size,
        frames=frames,
        val_split=val_split,
        seed=seed,
        device=device,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        workers=workers,
        patience=patience,
        out=str(out),
        name=name,
        resume=str(resume) if resume else None,
        pretrained=pretrained,
        data_dir=str(data_dir) if data_dir else None,
        limit=limit,
        command_line=["cnnkit", *sys.argv[1:]],
        explicit=given,
    )
    try:
        summary = fit(cfg)
    except TrainingInterrupted as stop:
        _report_training_stopped(stop)
    if summary is None:  # a DDP worker rank: rank 0 reports
        return
    if json_:
        print_json(summary)
        return
    m = summary["metrics"]
    parts = [f"val_acc {m['val_acc']:.4f}"]
    if "test_acc" in m:
        parts.append(f"test_acc {m['test_acc']:.4f}")
    typer.echo(
        f"{summary['run_dir']}: {', '.join(parts)}, {summary['epochs']} epochs in "
        f"{summary['train_seconds']:.1f} s ({summary['images_per_second']:.0f} samples/s)"
    )
    typer.echo(f"best checkpoint: {summary['best_checkpoint']}")


def _report_training_stopped(stop: Any) -> None:
    """Say where the interrupted run's state is and how to resume it, then exit 130/143."""
    word = "terminated" if _received["signal"] == signal.SIGTERM else "interrupted"
    if stop.checkpoint is None:
        note = f"{word}: at epoch {stop.epoch} step {stop.step}, before any checkpoint was saved"
    else:
        note = (
            f"{word}: at epoch {stop.epoch} step {stop.step}; saved {stop.checkpoint}\n"
            f"resume with: {stop.resume_command}"
        )
    _stopped(130, note)


# ---------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------


CheckpointArg = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, help="A .ckpt written by cnnkit train."
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps.")
]
TopKOpt = Annotated[int, typer.Option("--top-k", min=1, help="How many best classes to report.")]


class EvalSplit(str, Enum):
    test = "test"
    val = "val"
    train = "train"


@app.command(
    name="eval",
    epilog="Examples:\n\n"
    "  cnnkit eval runs/train/checkpoints/best.ckpt\n\n"
    "  cnnkit eval best.ckpt --dataset digits/ --confusion cm.png --misclassified wrong.csv\n\n"
    "  cnnkit eval best.ckpt --json | jq .per_class",
)
def eval_(
    checkpoint: CheckpointArg,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Dataset name or folder (default: the checkpoint's own). "
            "Its classes must be the checkpoint's.",
        ),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help="Where torchvision datasets live.")
    ] = None,
    split: Annotated[
        EvalSplit | None, typer.Option(help="Split to measure (default: test, else val).")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="k of the top-k accuracy.")] = 5,
    confusion: Annotated[
        Path | None,
        typer.Option(help="Write the confusion matrix: FILE.png (heat map) or FILE.csv."),
    ] = None,
    misclassified: Annotated[
        Path | None,
        typer.Option(help="Write the wrong predictions as CSV: path, true, predicted, score."),
    ] = None,
    clips: Annotated[
        int, typer.Option(min=1, help="Video models: windows per video, scores averaged.")
    ] = 1,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Samples per batch.")
    ] = 256,
    device: DeviceOpt = "auto",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure a trained checkpoint on a dataset split.

    Accuracy, top-k accuracy, loss, per-class precision/recall/F1, macro F1
    and the confusion matrix (rows: true classes, columns: predictions).
    """
    console.set_quiet(quiet)
    for path, allowed in ((confusion, (".png", ".csv")), (misclassified, (".csv",))):
        if path is not None and path.suffix.lower() not in allowed:
            raise typer.BadParameter(f"{path}: use a file name ending in {' or '.join(allowed)}")
    from cnnkit.checkpoint import load_checkpoint
    from cnnkit.device import resolve_device
    from cnnkit.evaluation import evaluate, load_eval_data, write_confusion, write_misclassified
    from cnnkit.inference import Predictor

    ckpt = load_checkpoint(checkpoint)
    choice = resolve_device(device)
    console.info(f"device: {choice.torch_device} ({choice.reason})")
    predictor = Predictor.from_loaded(ckpt, choice.torch_device, batch_size)
    data = load_eval_data(ckpt, dataset, data_dir, split.value if split else None)
    console.info(f"evaluating on {data.dataset} ({data.split}, {len(data.data)} samples)")
    report = evaluate(predictor, data.data, top_k=top_k, clips=clips)
    if confusion is not None:
        write_confusion(confusion, report.confusion, report.classes)
        console.info(f"wrote {confusion}")
    if misclassified is not None:
        wrong = write_misclassified(
            misclassified, [data.ids[i] for i in report.index], report.labels,
            report.predicted, report.scores, report.classes,
        )  # fmt: skip
        console.info(f"wrote {misclassified} ({wrong} wrong)")
    result = {"checkpoint": str(checkpoint), "dataset": data.dataset, "split": data.split}
    result.update(report.to_json())
    if json_:
        print_json(result)
    else:
        _print_eval(result)


def _print_eval(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    top = result["top_k_accuracy"]
    out.print(f"checkpoint  {result['checkpoint']}")
    out.print(f"dataset     {result['dataset']} ({result['split']}, n={result['n']})")
    out.print(f"accuracy    {result['accuracy']:.4f}")
    out.print(f"top-{top['k']}       {top['value']:.4f}")
    out.print(f"loss        {result['loss']:.4f}")
    out.print(f"macro F1    {result['macro_f1']:.4f}")
    if "video_accuracy" in result:
        out.print(
            f"video       {result['video_accuracy']:.4f} "
            f"({result['clips_per_video']} clip(s) per video; clip-level "
            f"{result['clip_accuracy']:.4f})"
        )
    table = Table(title="per class", show_edge=False, header_style="bold")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, m in result["per_class"].items():
        table.add_row(
            name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}",
            str(m["support"]),
        )  # fmt: skip
    out.print(table)
    classes = result["classes"]
    if len(classes) > 20:
        out.print(f"confusion matrix: {len(classes)} classes; write it with --confusion FILE.png")
        return
    cm = Table(title="confusion (rows: true, columns: predicted)", show_edge=False)
    cm.add_column("true \\ pred", style="bold")
    for name in classes:
        cm.add_column(name, justify="right")
    for i, (name, row) in enumerate(zip(classes, result["confusion_matrix"], strict=True)):
        cells = [f"[bold]{v}[/bold]" if j == i else str(v) for j, v in enumerate(row)]
        cm.add_row(name, *cells)
    out.print(cm)


# ---------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------


@app.command(
    epilog="Examples:\n\n"
    "  cnnkit inspect lenet5\n\n"
    "  cnnkit inspect resnet18 --input-size 1x64x64 --num-classes 2 --json\n\n"
    "  cnnkit inspect c3d_small --input-size 3x16x112x112\n\n"
    "  cnnkit inspect digit.png\n\n"
    "  cnnkit inspect best.ckpt --image digit.png --feature-maps maps/ --kernels kernels.png\n\n"
    "  cnnkit inspect data/pets/",
)
def inspect(
    target: Annotated[
        str,
        typer.Argument(
            help="A model name, a .ckpt checkpoint, an image, a video, a dataset name or folder."
        ),
    ],
    input_size: Annotated[
        str | None,
        typer.Option(
            "--input-size",
            help="Model input CxHxW (1x28x28) or CxTxHxW (3x16x112x112); default: the model's.",
        ),
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(min=1, help="Output classes for a model name (default 10).")
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
    """Show what is inside an image, video, dataset, model or checkpoint.

    Models show a layer table with output shapes, parameters, MACs
    (multiply-accumulates) and receptive fields; images show their numbers.
    """
    console.set_quiet(quiet)
    from cnnkit import summary as core  # torch is imported only for models and checkpoints
    from cnnkit.errors import InputError

    kind = core.detect_target(target)
    model_options = {
        "--input-size": input_size,
        "--num-classes": num_classes,
        "--image": image,
        "--feature-maps": feature_maps,
        "--kernels": kernels,
    }
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
    if (feature_maps is None) != (image is None):
        raise InputError(
            "--feature-maps and --image go together",
            hint="e.g. --image digit.png --feature-maps maps/",
        )

    if kind == "image":
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
    _render_inspect(result)


def _stdout_console() -> Any:
    from rich.console import Console

    # Wide when piped, so that layer tables are not squeezed into 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _shape_text(values: Any) -> str:
    if values is None:
        return "-"
    if isinstance(values, (list, tuple)):
        return "×".join(str(v) for v in values)
    return str(values)


def _rf_unit(s: dict[str, Any]) -> str:
    if s["receptive_field"] is None:  # no convolution: every output sees every input value
        return ""
    return " (frames×px)" if len(s["input_size"]) == 4 else " px"


def _rf_text(rf: Any) -> str:
    # A 2D field is one int when square: show it as the H×W patch it is.
    if rf is None:
        return "whole input"
    return f"{rf}×{rf}" if isinstance(rf, int) else _shape_text(rf)


def _render_inspect(result: dict[str, Any]) -> None:
    renderers = {
        "model": _render_model,
        "checkpoint": _render_model,
        "image": _render_image,
        "video": _render_facts,
        "dataset": _render_dataset,
    }
    renderers[result["kind"]](result)


def _render_model(s: dict[str, Any]) -> None:
    from rich.table import Table

    out = _stdout_console()
    table = Table(title=f"{s['name']} on input {_shape_text(s['input_size'])} (batch of 1)")
    for column in ("#", "layer", "type", "kernel", "stride", "padding", "output"):
        table.add_column(column)
    for column in ("params", "MACs", "receptive field"):
        table.add_column(column, justify="right")
    for i, layer in enumerate(s["layers"], 1):
        rf = layer["receptive_field"]
        table.add_row(
            str(i),
            layer["name"],
            layer["type"],
            _shape_text(layer["kernel_size"]),
            _shape_text(layer["stride"]),
            _shape_text(layer["padding"]),
            _shape_text(layer["output_shape"]),
            f"{layer['params']:,}",
            f"{layer['macs']:,}",
            _rf_text(rf),
        )
    table.add_section()
    table.add_row(
        "", "total", "", "", "", "", "", f"{s['params']:,}", f"{s['macs']:,}",
        _rf_text(s["receptive_field"]),
    )  # fmt: skip
    out.print(table)
    out.print(
        f"params {s['params']:,} (trainable {s['trainable_params']:,})  ·  "
        f"MACs {s['macs']:,} ({s['macs'] / 1e6:,.2f} M multiply-accumulates per input)  ·  "
        f"receptive field of the last conv/pool stage: {_rf_text(s['receptive_field'])}"
        + _rf_unit(s)
    )
    if s["kind"] == "checkpoint":
        _render_facts(
            {
                "checkpoint": s["path"],
                "classes": ", ".join(s["classes"]),
                "dataset": s["dataset"],
                **{f"input {k}": v for k, v in s["input"].items()},
                **{f"metric {k}": v for k, v in s["metrics"].items()},
                "cnnkit version": s["cnnkit_version"],
            }
        )
    for item in s.get("feature_maps", []):
        out.print(f"feature maps of {item['layer']} ({_shape_text(item['shape'])}): {item['path']}")
    if "kernels" in s:
        k = s["kernels"]
        out.print(f"filters of {k['layer']} ({_shape_text(k['weight_shape'])}): {k['path']}")


def _render_facts(facts: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in facts.items():
        if key in ("kind", "pixels"):
            continue
        if isinstance(value, float):
            value = f"{value:,.4g}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        table.add_row(key, "-" if value is None else str(value))
    _stdout_console().print(table)


def _render_image(s: dict[str, Any]) -> None:
    from rich.table import Table

    _render_facts(s)
    block = s["pixels"]
    values = block["values"]
    names = {"gray": ["gray"], "gray+alpha": ["gray", "alpha"], "RGB": list("RGB")}
    names = names.get(s["channel_order"], list("RGBA"))
    for c, channel in enumerate(names[: s["channels"]]):
        table = Table(
            title=f"{channel} values, rows y={block['y']}.., columns x={block['x']}..",
            show_header=False,
        )
        for _ in values[0]:
            table.add_column(justify="right")
        for row in values:
            table.add_row(*(str(v[c] if isinstance(v, list) else v) for v in row))
        _stdout_console().print(table)


def _render_dataset(s: dict[str, Any]) -> None:
    from rich.table import Table

    out = _stdout_console()
    splits = list(s.get("splits", {}))
    table = Table(title=f"{len(s['classes'])} classes")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for name in s["classes"]:
        per_split = [f"{s['splits'][split].get(name, 0):,}" for split in splits]
        table.add_row(name, *per_split, f"{s['counts'].get(name, 0):,}")
    table.add_section()
    totals = [f"{sum(s['splits'][split].values()):,}" for split in splits]
    table.add_row("total", *totals, f"{sum(s['counts'].values()):,}")
    out.print(table)
    unreadable = s.get("unreadable", [])
    if unreadable:
        out.print(f"{len(unreadable)} unreadable file(s):", markup=False)
        for path in unreadable:
            out.print(f"  {path}", markup=False)
    for warning in s.get("warnings", []):
        out.print(f"warning: {warning}", markup=False)


# ---------------------------------------------------------------------------
# entry point: the single error path
# ---------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM.

    A KeyboardInterrupt, so that everything that cleans up on Ctrl-C (atomic
    outputs remove their temporary file, Lightning shuts down, generators
    close) does the same on ``kill``; main() then exits 143 instead of 130.
    """


_received: dict[str, int | None] = {"signal": None}


def _on_sigterm(signum: int, frame: Any) -> None:
    _received["signal"] = signum
    raise Terminated


def _flush_stdout() -> None:
    """Push out what was already printed; a reader that went away is not an error here."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # closed pipe or closed stream: nothing left to deliver it to


class Stopped(SystemExit):
    """The exit of an interruption already reported on stderr (main() adds nothing)."""


def _stopped(code: int, note: str | None = None) -> None:
    """Report an interruption on stderr and exit 130 (SIGINT) or 143 (SIGTERM).

    ``note`` replaces the one word (train says where its checkpoint is).
    """
    _flush_stdout()
    if _received["signal"] == signal.SIGTERM:
        code = 128 + signal.SIGTERM
    word = "terminated" if code == 128 + signal.SIGTERM else "interrupted"
    try:
        sys.stderr.write(f"{note or word}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone too: the exit status still tells
    raise Stopped(code)


def main() -> None:
    """Console-script entry: run the app, turning CnnkitError into ``error:`` + exit 1.

    Ctrl-C exits 130 and SIGTERM 143 (128 + signal number, as shells report a
    killed job) with one word on stderr instead of a traceback.
    """
    try:
        _run_app()
    except Stopped as stop:
        # An interrupted predict can leave a daemon thread blocked reading
        # stdin; interpreter shutdown around such a thread has been seen to
        # abort ("terminate called without an active exception", status -6)
        # instead of exiting 130. Everything was flushed and reported, and
        # outputs were cleaned up while unwinding, so leave at once.
        if threading.active_count() > 1 and threading.current_thread() is threading.main_thread():
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass  # the reader went away: the status still tells
            os._exit(int(stop.code))
        raise


def _run_app() -> None:
    _received["signal"] = None
    previous = signal.getsignal(signal.SIGTERM)
    handler_set = False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        handler_set = True
    try:
        app(prog_name="cnnkit")  # not "python -m ...": usage lines name the command
    except CnnkitError as exc:
        if os.environ.get("CNNKIT_DEBUG"):
            raise
        _flush_stdout()
        line = f"error: {exc.message}"
        if exc.hint:
            line += f" (hint: {exc.hint})"
        sys.stderr.write(line + "\n")
        sys.exit(1)
    except KeyboardInterrupt:
        # Typer turns Ctrl-C inside a command into exit 130; this is Ctrl-C outside one.
        _stopped(130)
    except SystemExit as exc:
        if exc.code == 130 and not isinstance(exc, Stopped):
            _stopped(130)
        raise
    finally:
        if handler_set:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
