"""Every option of ``cnnkit train``, once: its type, default, range, help and resume rule.

``OPTIONS`` is the single table. From it come the ``TrainConfig`` dataclass,
the Typer parameters of ``cnnkit train`` (cnnkit/cli/train.py builds its
signature from them), the one validation (``check_value`` /
``validate_config``: the same rule and the same message whether the value
came from the command line, from Python or from a checkpoint being resumed),
the defaults that depend on the kind of data, and which options a resumed
run takes from its checkpoint. Adding an option means adding a row here and
using it.

This module imports neither typer nor torch: the CLI imports it at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, make_dataclass
from typing import Any

from cnnkit.errors import InputError
from cnnkit.precision import ALIASES as PRECISION_ALIASES
from cnnkit.precision import CHOICES as PRECISION_CHOICES

KINDS = ("image", "video")

# Caps on the sizes and counts every command takes on its command line (train's
# rows below, the other commands' option declarations in cnnkit.cli), far above
# any real use: a value past one is a usage error (exit 2) rather than an
# allocation of terabytes (a batch of 10^8 windows) or minutes spent on nothing.
MAX_BATCH_SIZE = 65536  # samples, images, clips or windows per batch
MAX_FRAMES = 4096  # frames per clip or window (--frames, --window)
MAX_IMG_SIZE = 4096  # pixels a side
MAX_STRIDE = 1_000_000  # frames between windows: 9 hours of 30 fps video
MAX_WORKERS = 256  # decode threads, DataLoader processes
MAX_CLASSES = 100_000  # classes of a model built by name (inspect --num-classes)
MAX_TOP_K = MAX_CLASSES  # best classes reported (clamped to the class count below this)
MAX_CLIPS = 1024  # windows per video in eval
MAX_EPOCHS = 1_000_000
MAX_LIMIT = 1_000_000_000  # samples per split
MAX_DEVICES = 256  # --devices as a count: processes or accelerators on one machine
MAX_SEED = 2**32 - 1  # what numpy's and Lightning's seeding accept


@dataclass(frozen=True)
class Option:
    """One training option.

    ``default`` None with ``by_kind`` set means "the data kind's" (resolved
    once the dataset's kind is known). ``low``/``high`` bound numbers
    (``high_open``: strictly below). ``choices`` lists the allowed words.
    ``resume``: with --resume and not given, the checkpoint's value is used.
    ``path``: a file or folder (a Path on the command line, a str here).
    ``cli``: False for options only Python callers set.
    """

    name: str
    type: type
    default: Any
    help: str
    by_kind: Mapping[str, Any] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    aliases: Mapping[str, str] | None = None  # other spellings of the choices
    resume: bool = False
    path: bool = False
    cli: bool = True
    flags: tuple[str, ...] = ()
    example: str = ""
    # The option only means something while this one is on: with --resume, it is
    # not taken from the checkpoint when the other is turned off on the command line.
    requires: str | None = None

    @property
    def flag(self) -> str:
        return self.flags[0].split("/")[0] if self.flags else "--" + self.name.replace("_", "-")

    def rule(self) -> str | None:
        """The range in words ("at least 1", "at least 0 and below 1"), None when unbounded."""
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {_num(self.low)}")
        if self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {_num(self.high)}")
        return " and ".join(parts) or None

    def help_text(self) -> str:
        text = self.help
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        if self.by_kind:
            image, video = (self.by_kind[k] for k in KINDS)
            text += f" Default: {_num(image)} for images, {_num(video)} for clips."
        if self.rule():
            text += f" Must be {self.rule()}."
        return text


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


OPTIONS: tuple[Option, ...] = (
    Option("dataset", str, "shapes", "Built-in name (shapes, moving-shapes, mnist, fashion-mnist, "
           "kmnist, cifar10, cifar100, svhn) or a folder with one subfolder per class (optional "
           "train/ val/ test/).", resume=True),
    Option("model", str, None, "Registered model: `cnnkit inspect` with no target lists them.",
           by_kind={"image": "simplecnn", "video": "c3d_small"}, resume=True),
    Option("epochs", int, None, "Epochs in all. With --resume: the total to reach, counting "
           "the epochs already trained, so it must be more than those.",
           by_kind={"image": 10, "video": 3}, low=1, high=MAX_EPOCHS, resume=True, example="10"),
    # Batch 64 and label smoothing 0.1 are what reached the README's digit accuracy.
    Option("batch_size", int, None, "Samples per optimizer step.",
           by_kind={"image": 64, "video": 32}, low=1, high=MAX_BATCH_SIZE, resume=True,
           example="64"),
    Option("lr", float, None, "Peak learning rate. Starting from weights: 0.001 when "
           "fine-tuning a torchvision model, 0.03 with --freeze (only the new head learns).",
           by_kind={"image": 3e-3, "video": 3e-3},
           low=0, low_open=True, resume=True, example="0.003"),
    Option("optimizer", str, "adamw", "Optimizer (SGD: momentum 0.9, Nesterov).",
           choices=("adamw", "adam", "sgd"), resume=True),
    # AdamW decays weights apart from the gradient, so it takes a larger value
    # than the L2 penalty Adam and SGD add to the gradient.
    Option("weight_decay", float, None, "Weight decay. Default: 0.05 with AdamW, 5e-4 with "
           "Adam and SGD.", low=0, resume=True, example="0.05"),
    Option("schedule", str, "cosine", "Learning-rate schedule, stepped per optimizer step.",
           choices=("cosine", "onecycle", "none"), resume=True),
    Option("label_smoothing", float, None, "Label smoothing of the cross-entropy loss.",
           by_kind={"image": 0.1, "video": 0.0}, low=0, high=0.5, resume=True, example="0.1"),
    Option("augment", bool, True, "Random shifts, small rotations and scalings (flips: see "
           "--flip), on the device.", flags=("--augment/--no-augment",), resume=True),
    Option("flip", bool, None, "Horizontal flips in augmentation. Default: on for colour "
           "images, off for video, gray images and classes named by single characters (digits "
           "and letters change meaning when mirrored); the choice is printed and kept in "
           "config.yaml.", flags=("--flip/--no-flip",), resume=True, requires="augment"),
    Option("background", str, None, "Colour that images drawn only in their alpha channel "
           "(strokes on a transparent canvas, as drawing apps save them) are composited over: "
           "white, black, gray, #RRGGBB or R,G,B. Default: white. Other images with alpha "
           "have it dropped. Kept in the checkpoint: eval and predict composite the same way.",
           resume=True, example="black"),
    Option("img_size", int, None, "Resize inputs to N×N (default: a built-in dataset's own "
           "size; a folder's images go to the model's default input size, e.g. 28 for lenet5, "
           "or the pretrained weights' size; said on stderr).", low=4, high=MAX_IMG_SIZE,
           resume=True, example="64"),
    Option("frames", int, None, "Frames per video clip (default: the model's, or 8; said on "
           "stderr).", low=1,
           high=MAX_FRAMES, resume=True, example="8"),
    Option("val_split", float, 0.1, "Fraction of each class held out for validation when the "
           "data has no val split. 0: no validation (train on everything; best.ckpt is the "
           "last epoch's).", low=0, high=1, high_open=True, resume=True, example="0.1"),
    Option("seed", int, 0, "Seed for splits, samples, data order, augmentation and weights.",
           low=0, high=MAX_SEED, resume=True),
    Option("device", str, "auto", "auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps."),
    Option("devices", str, "1", "Lightning devices: a count, a list '0,1', or auto."),
    Option("num_nodes", int, 1, "Machines (Lightning num_nodes).", low=1, example="1"),
    Option("strategy", str, "auto", "Lightning strategy: auto, ddp, fsdp... (not the *_spawn "
           "ones: the run's summary comes from the process that started training)."),
    Option("precision", str, "auto", "auto: bf16 autocast where the device computes bf16 "
           "natively (a CPU with AVX512_BF16 or AMX, a GPU of compute capability 8.0+), else "
           "float32; said and recorded. 32, bf16 and 16 (CUDA's fp16) choose; Lightning's "
           "32-true, bf16-mixed and 16-mixed mean the same.",
           choices=PRECISION_CHOICES, aliases=PRECISION_ALIASES, resume=True, example="32"),
    Option("workers", int, None, "Worker processes decoding data streamed from files "
           "(default: one per core of the CPU budget, at most 16).", low=0, high=MAX_WORKERS,
           example="4"),
    Option("patience", int, None, "Stop after N epochs without a better val_acc.", low=1,
           example="5"),
    Option("out", str, "runs", "Folder that holds the run folders.", path=True),
    Option("name", str, None, "Run folder name (default train, train-2, ...); must be new."),
    Option("resume", str, None, "Continue from a checkpoint (into a new run folder), with the "
           "dataset and options it records unless given here.", path=True),
    Option("pretrained", bool, False, "Start from torchvision's ImageNet (2D) or Kinetics-400 "
           "(video) weights: fetched once into torch's hub cache ($TORCH_HOME), then offline. "
           "Inputs follow the weights: their mean/std, 3 channels, and 224×224 (video: 16 "
           "frames of 112×112) unless --img-size / --frames say otherwise.",
           flags=("--pretrained",)),
    Option("weights", str, None, "Start from a file: a cnnkit checkpoint of the same model "
           "(any classes; layers that fit are loaded, its input spec is adopted), or a "
           ".pth/.pt state dict or .safetensors file for --model. The head is new when the "
           "classes differ. MODEL:DATA (resnet18:imagenet) is --model MODEL --pretrained.",
           path=True),
    Option("freeze", bool, False, "Train only the classifier head (a linear probe); the rest "
           "stays as loaded, in eval mode. Needs --pretrained or --weights.",
           flags=("--freeze",), resume=True),
    Option("data_dir", str, None, "Where torchvision datasets live (default $CNNKIT_DATA, "
           "else ~/.cache/cnnkit).", path=True, resume=True),
    Option("limit", int, None, "Use at most N samples per split: a seeded sample with the "
           "classes in their proportions (quick runs). 0: all of them (lifts the --limit of a "
           "run being resumed).", low=0, high=MAX_LIMIT, resume=True, example="1000"),
    # Python callers only.
    Option("limit_batches", float, None, "Lightning batches per epoch (tests).", cli=False),
    Option("command_line", list, None, "The command line, for config.yaml.", cli=False),
    # The options given on the command line; None: all of them (calls from Python).
    # With --resume, the others come from the checkpoint instead of the defaults.
    Option("explicit", list, None, "Options given on the command line.", cli=False),
)  # fmt: skip

BY_NAME = {o.name: o for o in OPTIONS}


def _field(option: Option) -> tuple[str, Any, Any]:
    if option.type is list:
        return option.name, list[str] | None, field(default=None)
    # Typed as the table says; None where the value comes from the data or the model.
    return option.name, option.type | None, field(default=option.default)


TrainConfig = make_dataclass(
    "TrainConfig",
    [_field(o) for o in OPTIONS],
    namespace={
        "__doc__": "Every option of ``cnnkit train`` (see OPTIONS); None: the data's default.",
        "__module__": __name__,
    },
)


# ---------------------------------------------------------------------------
# checking values: one rule and one message per option
# ---------------------------------------------------------------------------


def value_problem(option: Option, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``option`` ("must be at least 1"), or None."""
    if value is None:
        return None
    value = canonical(option, value)
    if option.choices is not None and value not in option.choices:
        return f"must be one of {', '.join(option.choices)}"
    if option.type in (int, float):
        if option.type is float and not math.isfinite(value):
            return "is not a finite number"
        too_low = option.low is not None and (
            value <= option.low if option.low_open else value < option.low
        )
        too_high = option.high is not None and (
            value >= option.high if option.high_open else value > option.high
        )
        if too_low or too_high:
            return f"must be {option.rule()}"
    return None


def canonical(option: Option, value: Any) -> Any:
    """``value`` in the option's own spelling (an alias replaced by its choice)."""
    if option.aliases and isinstance(value, str):
        return option.aliases.get(value, value)
    return value


def check_value(name: str, value: Any) -> None:
    """InputError for a value outside ``name``'s rule, worded as the command line says it."""
    option = BY_NAME[name]
    problem = value_problem(option, value)
    if problem is not None:
        example = f", e.g. {option.flag} {option.example}" if option.example else ""
        hint = f"see cnnkit train --help{example}"
        raise InputError(f"{option.flag} {_num(value)} {problem}", hint=hint)


def validate_config(cfg: Any) -> None:
    """Check every option of ``cfg`` against its rule (the first one broken raises)."""
    for option in OPTIONS:
        if option.cli:
            check_value(option.name, getattr(cfg, option.name))


# ---------------------------------------------------------------------------
# defaults that depend on the data, and resuming
# ---------------------------------------------------------------------------


def resolve_kind_defaults(cfg: Any, kind: str) -> Any:
    """``cfg`` with the options left None that have a per-kind default filled in."""
    values = {
        o.name: o.by_kind[kind] for o in OPTIONS if o.by_kind and getattr(cfg, o.name) is None
    }
    if cfg.weight_decay is None:
        values["weight_decay"] = default_weight_decay(cfg.optimizer)
    return TrainConfig(**{**asdict(cfg), **values})


def default_weight_decay(optimizer: str) -> float:
    """0.05 for AdamW, 5e-4 for Adam and SGD (see the weight_decay row of OPTIONS)."""
    return 0.05 if optimizer == "adamw" else 5e-4


def recorded_options(cfg: Any) -> dict[str, Any]:
    """The resumable options of a resolved ``cfg``, as a checkpoint records them."""
    return {o.name: getattr(cfg, o.name) for o in OPTIONS if o.resume}


def apply_resume_defaults(cfg: Any, recorded: Mapping[str, Any]) -> Any:
    """``cfg`` with every resumable option not given on the command line taken from ``recorded``.

    ``recorded`` maps option names to the values a checkpoint's run used; the
    ones it does not record keep ``cfg``'s. Calls from Python (``explicit``
    None) are used as given.
    """
    if cfg.explicit is None:
        return cfg
    turned_off = {n for n in cfg.explicit if getattr(cfg, n) is False}
    taken = {
        name: value
        for name, value in recorded.items()
        if name in BY_NAME
        and BY_NAME[name].resume
        and name not in cfg.explicit
        and BY_NAME[name].requires not in turned_off
        and value is not None
    }
    return TrainConfig(**{**asdict(cfg), **taken})


def given_options(names: Iterable[str]) -> list[str]:
    """The option names among ``names`` (the CLI's own flags such as --json dropped)."""
    return [n for n in names if n in BY_NAME]
