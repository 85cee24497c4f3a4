"""``cnnkit eval``: measure a checkpoint on a dataset split."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cnnkit import console
from cnnkit.cli.app import (
    BackgroundOpt,
    CheckpointArg,
    DeviceOpt,
    PrecisionOpt,
    QuietOpt,
    app,
    print_json,
)
from cnnkit.cli.output import show_messages
from cnnkit.cli.render import print_eval
from cnnkit.training.options import MAX_BATCH_SIZE, MAX_CLIPS, MAX_LIMIT, MAX_TOP_K


class EvalFormat(str, Enum):
    text = "text"
    json = "json"


class EvalSplit(str, Enum):
    test = "test"
    val = "val"
    train = "train"


@app.command(
    name="eval",
    epilog="Examples:\n\n"
    "  cnnkit eval runs/train/checkpoints/best.ckpt\n\n"
    "  cnnkit eval best.ckpt --dataset digits/ --confusion cm.png --misclassified wrong.csv\n\n"
    "  cnnkit eval best.ckpt --json | jq .per_class\n\n"
    "  cnnkit eval resnet50:imagenet --dataset photos/  # subfolders named by ImageNet class",
)
def eval_(
    checkpoint: CheckpointArg,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Dataset name or folder (default: the checkpoint's own). A folder without "
            "train/ val/ test/ subfolders is measured whole; its classes must be the checkpoint's.",
        ),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help="Where torchvision datasets live.")
    ] = None,
    split: Annotated[
        EvalSplit | None,
        typer.Option(
            help="Split to measure (default: test, else val). Not for a folder without "
            "split subfolders, which is measured whole."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_LIMIT,
            help="Measure a seeded sample of at most N samples, classes in proportion "
            "(default: all; training's --limit is not inherited).",
        ),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=MAX_TOP_K, help="k of the top-k accuracy.")
    ] = 5,
    confusion: Annotated[
        Path | None,
        typer.Option(help="Write the confusion matrix: FILE.png (heat map) or FILE.csv."),
    ] = None,
    misclassified: Annotated[
        Path | None,
        typer.Option(help="Write the wrong predictions as CSV: path, true, predicted, score."),
    ] = None,
    clips: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_CLIPS, help="Video models: windows per video, scores averaged."
        ),
    ] = 1,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Samples per batch.")
    ] = 256,
    background: BackgroundOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    format: Annotated[
        EvalFormat | None,
        typer.Option(
            "--format",
            help="text (default): a summary and tables for people; json: one JSON document "
            "on stdout, as --json prints.",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="The same as --format json: one JSON document.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure a trained checkpoint on a dataset split.

    Accuracy, top-k accuracy, loss, per-class precision/recall/F1, macro F1
    and the confusion matrix (rows: true classes, columns: predictions).
    """
    show_messages(quiet)
    if json_ and format is EvalFormat.text:
        from cnnkit.errors import InputError

        raise InputError(
            "--json and --format text ask for different formats",
            hint="--json means --format json; give only one of the two",
        )
    as_json = json_ or format is EvalFormat.json
    for path, allowed in ((confusion, (".png", ".csv")), (misclassified, (".csv",))):
        if path is not None and path.suffix.lower() not in allowed:
            raise typer.BadParameter(f"{path}: use a file name ending in {' or '.join(allowed)}")
    from cnnkit.io.atomic import check_output_path

    # Checked now, not when the evaluation (minutes on a large split) is over.
    for path in (confusion, misclassified):
        if path is not None:
            check_output_path(path)
    from cnnkit.evaluation import write_confusion, write_misclassified
    from cnnkit.evaluation.measure import measure

    chosen = split.value if split else None
    report, data = measure(
        checkpoint, dataset, data_dir, chosen, limit, top_k, clips, batch_size, device, background,
        precision,
    )  # fmt: skip
    if confusion is not None:
        shown_classes, matrix = report.visible()
        # The picture's title: what was measured, and which classes when not all are drawn.
        about = {**report.about, "n": report.n, "accuracy": report.accuracy}
        note = "" if len(shown_classes) == len(report.classes) else (
            f"{len(shown_classes)} of {len(report.classes)} classes: those in the data or "
            "predicted (the others are all 0)"
        )  # fmt: skip
        write_confusion(confusion, matrix, shown_classes, about, note)
        console.info(f"wrote {confusion}")
    if misclassified is not None:
        wrong = write_misclassified(
            misclassified, [data.ids[i] for i in report.index], report.labels,
            report.predicted, report.scores, report.classes,
        )  # fmt: skip
        console.info(f"wrote {misclassified} ({wrong} wrong)")
    result = report.to_dict()
    if as_json:
        print_json(result)
    else:
        print_eval(result)
