"""``cnnkit train``: a TrainConfig from the options, fit(), and the summary."""

from __future__ import annotations

import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit import console
from cnnkit.cli.app import JsonOpt, QuietOpt, _received, _stopped, app, print_json


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
        int | None,
        typer.Option(
            min=1,
            help="Epochs in all (default 10 for images, 3 for clips). With --resume: the total "
            "to reach, counting the epochs already trained, so it must be more than those.",
        ),
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
            help="Random shifts, small rotations and scalings (flips: see --flip), on the device."
        ),
    ] = True,
    flip: Annotated[
        bool | None,
        typer.Option(
            "--flip/--no-flip",
            help="Horizontal flips in augmentation. Default: on for colour images, off for "
            "video, gray images and classes named by single characters (digits and letters "
            "change meaning when mirrored); the choice is printed and kept in config.yaml.",
            show_default=False,
        ),
    ] = None,
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
            help="Fraction of each class held out for validation when the data has no val "
            "split, 0 <= F < 1. 0: no validation (train on everything; best.ckpt is the last "
            "epoch's).",
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
        int | None,
        typer.Option(
            min=1,
            help="Use at most N samples per split: a seeded sample with the classes in their "
            "proportions (quick runs).",
        ),
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
        flip=flip,
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
    parts = [f"{k} {m[k]:.4f}" for k in ("val_acc", "test_acc") if m.get(k) is not None]
    rate = summary["images_per_second"]
    typer.echo(
        f"{summary['run_dir']}: {', '.join(parts or ['no validation'])}, "
        f"{summary['epochs']} epochs in {summary['train_seconds']:.1f} s"
        + (f" ({rate:.0f} samples/s)" if rate is not None else "")
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
