"""``cnnkit train``: its options come from the one table, cnnkit.training.options.OPTIONS.

The command's signature is built from that table (names, types, defaults,
help, flags), so Typer's parsing, ``--help``, the TrainConfig handed to
fit() and the ranges checked at the door all read one definition.
"""

from __future__ import annotations

import inspect
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnkit.cli.app import JsonOpt, QuietOpt, _received, _stopped, app, print_json
from cnnkit.cli.output import show_messages
from cnnkit.training.options import (
    OPTIONS,
    Option,
    TrainConfig,
    canonical,
    given_options,
    value_problem,
)


def _check_at_the_door(option: Option):
    """A Typer callback that refuses a value outside the option's rule as a usage error."""

    def check(value: Any) -> Any:
        problem = value_problem(option, value)
        if problem is not None:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            raise typer.BadParameter(f"{shown} {problem}")
        return canonical(option, value)

    return check


def _parameter(option: Option) -> inspect.Parameter:
    kind = Path if option.path else option.type
    annotation: Any = kind if option.default is not None else kind | None
    extra: dict[str, Any] = {}
    if option.name == "resume":
        extra = {"exists": True, "dir_okay": False}
    if option.default is None and option.type is bool:
        extra["show_default"] = False
    typer_option = typer.Option(
        *option.flags,
        help=option.help_text(),
        callback=_check_at_the_door(option),
        **extra,
    )
    default = Path(option.default) if option.path and option.default else option.default
    return inspect.Parameter(
        option.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, typer_option],
    )


def train(ctx: typer.Context, json_: bool = False, quiet: bool = False, **values: Any) -> None:
    """Train a 2D or 3D CNN with Lightning; checkpoints and logs go to a new run folder.

    Ctrl-C or SIGTERM saves checkpoints/last.ckpt and prints the --resume command.
    """
    show_messages(quiet)
    from cnnkit.training.fit import TrainingInterrupted, fit

    # Options typed on the command line (or from the environment): with --resume,
    # the others come from the checkpoint rather than from these defaults.
    given = given_options(
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    )
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}
    cfg = TrainConfig(**config, command_line=["cnnkit", *sys.argv[1:]], explicit=given)
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


train.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *(_parameter(o) for o in OPTIONS if o.cli),
        inspect.Parameter("json_", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=JsonOpt),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=QuietOpt),
    ]
)  # fmt: skip
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command(
    epilog="Examples:\n\n"
    "  cnnkit train --dataset shapes\n\n"
    "  cnnkit train --dataset mnist --data-dir ~/data --model lenet5 --epochs 5\n\n"
    "  cnnkit train --dataset moving-shapes --model c3d_small\n\n"
    "  cnnkit train --dataset photos/ --img-size 64 --name photos --json\n\n"
    "  cnnkit train --dataset photos/ --model resnet18 --pretrained --freeze\n\n"
    "  cnnkit train --dataset new-digits/ --weights runs/train/checkpoints/best.ckpt\n\n"
    "  cnnkit train --device cpu --devices 2 --strategy ddp",
)(train)


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
