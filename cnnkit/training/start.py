"""Where a training run starts: random weights, torchvision's, a file, or a resumed run.

``plan_start`` runs before any data is read: it reads the ``--weights`` file
or fetches the ``--pretrained`` weights (so a missing file is reported at
once) and says what the data must look like for them: channels, size,
frames and normalisation. ``start_model`` loads them into the freshly built
model and freezes all but the head for ``--freeze``. What was done is
recorded in the checkpoint (``start``) and config.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cnnkit import console
from cnnkit.errors import CheckpointError, InputError

# Default peak learning rates when training starts from weights and --lr is
# not given, chosen with benchmarks/bench_transfer.py (figures in the README):
# - --freeze (a linear probe): only a fresh head learns and takes larger steps;
#   simplecnn's probe reached 37% at 1e-3, 68% at 3e-2, 67% at 1e-1 (5 seeds).
# - fine-tuning a torchvision model (the ones with pretrained weights): 1e-3;
#   resnet18 reached 88% at 1e-3, 81% at 3e-3 and at 3e-4 (3 seeds).
# - fine-tuning cnnkit's small models keeps the data kind's default (3e-3).
FREEZE_LR = 3e-2
FINETUNE_LR = 1e-3


def start_lr(cfg: Any) -> float | None:
    """The default --lr for ``cfg``'s starting point (None: the data kind's default)."""
    from cnnkit.models.registry import get_model_spec

    if cfg.freeze:
        return FREEZE_LR
    if (cfg.pretrained or cfg.weights) and get_model_spec(cfg.model).weights:
        return FINETUNE_LR
    return None


@dataclass
class Start:
    """A planned starting point. ``state`` None: random weights (or a resumed run's)."""

    kind: str  # "random", "pretrained", "checkpoint", "state_dict", "safetensors", "resumed"
    source: str = ""
    state: dict[str, Any] | None = None
    lenient: bool = False  # cnnkit checkpoints: tensors whose shape differs stay initial
    channels: int | None = None  # decode the data to this many channels
    img_size: int | None = None  # the size the weights want, unless --img-size says otherwise
    frames: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    why: str = ""  # "the ImageNet weights'", for the messages
    classes: list[str] | None = None  # the classes the file's head was trained for, if known
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def from_weights(self) -> bool:
        return self.state is not None


def check_start_options(cfg: Any) -> None:
    """Refuse combinations of --pretrained, --weights, --freeze and --resume that cannot work."""
    if cfg.pretrained and cfg.weights:
        raise InputError(
            "--pretrained and --weights both choose the starting weights",
            hint="give one of them",
        )
    if cfg.resume and (cfg.pretrained or cfg.weights):
        flag = "--pretrained" if cfg.pretrained else "--weights"
        raise InputError(
            f"--resume continues from its checkpoint's weights; {flag} starts a new run",
            hint=f"drop {flag} (the resumed run keeps what it started from), or drop --resume",
        )
    if cfg.freeze and not (cfg.pretrained or cfg.weights or cfg.resume):
        raise InputError(
            "--freeze trains only the head of loaded weights, and this run starts from random "
            "weights",
            hint="add --pretrained or --weights FILE, or drop --freeze",
        )


def model_from_weights(cfg: Any) -> Any:
    """``cfg`` with --model taken from a --weights checkpoint when not given.

    Returns (cfg, the read WeightsFile or None). ``--weights MODEL:DATA``
    (resnet18:imagenet, the spelling predict and eval take) is --model MODEL
    --pretrained.
    """
    if not cfg.weights:
        return cfg, None
    from cnnkit.models.pretrained import check_reference
    from cnnkit.models.transfer import read_weights_file
    from cnnkit.refs import parse_pretrained

    if parse_pretrained(cfg.weights) is not None:
        model = check_reference(cfg.weights)
        if cfg.model is not None and cfg.model != model:
            raise InputError(
                f"--weights {cfg.weights} names weights of '{model}', not of '{cfg.model}'",
                hint=f"drop --model, or give --model {model}",
            )
        return replace(cfg, model=model, pretrained=True, weights=None), None

    wf = read_weights_file(cfg.weights)
    if wf.checkpoint is None and cfg.model is None:
        raise InputError(
            f"--weights {wf.path} is a plain state dict: it does not say which model it is for",
            hint="give the model with --model (e.g. --model resnet18)",
        )
    if wf.checkpoint is not None:
        source = wf.checkpoint.model_name
        if cfg.model is None:
            cfg = replace(cfg, model=source)
        elif cfg.model != source:
            raise CheckpointError(
                f"--weights {wf.path} holds model '{source}', not '{cfg.model}'",
                hint=f"drop --model (the checkpoint's is used), or give --model {source}",
            )
    return cfg, wf


def plan_start(cfg: Any, kind: str, weights_file: Any, resumed: Any) -> Start:
    """The starting point of this run (see the module docstring)."""
    if resumed is not None:
        spec = resumed.input
        return Start(
            "resumed",
            str(resumed.path),
            channels=spec.channels,
            mean=spec.mean,
            std=spec.std,
            why="the resumed run's",
            record={**resumed.meta.start, "resumed_from": str(resumed.path)},
        )
    if cfg.pretrained:
        return _pretrained_start(cfg.model)
    if weights_file is not None:
        return _file_start(cfg, weights_file)
    return Start("random", record={"kind": "random"})


def _pretrained_start(model: str) -> Start:
    from cnnkit.models.pretrained import load_pretrained_state, pretrained_weights

    w = pretrained_weights(model)
    state = load_pretrained_state(w)
    data = "ImageNet" if w.data == "imagenet" else "Kinetics-400"
    return Start(
        "pretrained",
        w.weights,
        state=state,
        channels=3,
        img_size=w.size[0] if w.size[0] == w.size[1] else None,
        frames=w.frames,
        mean=w.mean,
        std=w.std,
        why=f"the {data} weights'",
        classes=list(w.categories),
        record={**w.record(), "file": str(w.file)},
    )


def _file_start(cfg: Any, wf: Any) -> Start:
    from cnnkit.checkpoint import file_sha256

    record = {"kind": wf.kind, "path": str(wf.path.resolve()), "sha256": file_sha256(wf.path)}
    if wf.checkpoint is not None:
        ckpt = wf.checkpoint
        spec = ckpt.input
        record.update(model=ckpt.model_name, classes=list(ckpt.classes), dataset=ckpt.dataset)
        height, width = spec.size
        return Start(
            "checkpoint",
            str(wf.path),
            state=wf.state,
            lenient=True,
            channels=spec.channels,
            img_size=height if height == width else None,
            frames=spec.frames,
            mean=spec.mean,
            std=spec.std,
            why="the checkpoint's",
            classes=list(ckpt.classes),
            record=record,
        )
    from cnnkit.models.registry import create_model
    from cnnkit.models.transfer import first_conv_channels

    template = create_model(cfg.model)  # only to find the first convolution's name
    return Start(
        wf.kind,
        str(wf.path),
        state=wf.state,
        channels=first_conv_channels(template, wf.state),
        record=record,
    )


def start_decisions(start: Start, cfg: Any, data: Any) -> dict[str, str]:
    """What following the weights decided about the input, in words."""
    if not start.from_weights:
        return {}  # a resumed run's input is its checkpoint's, as decided when it began
    notes = {}
    if start.img_size and not cfg.img_size:
        h, w = data.input.size
        notes["img_size"] = f"input size {h}×{w}, {start.why} (--img-size overrides)"
    if start.frames and not cfg.frames and data.input.frames:
        notes["frames"] = (
            f"clips of {data.input.frames} frames, {start.why} length (--frames overrides)"
        )
    lr = start_lr(cfg)
    if lr is not None and cfg.lr == lr and (cfg.explicit is None or "lr" not in cfg.explicit):
        why = (
            "a linear probe (--freeze: only the new head learns)"
            if cfg.freeze
            else "fine-tuning a torchvision model from its weights"
        )
        notes["lr"] = f"peak learning rate {lr:g}, the default for {why}; --lr overrides"
    if start.mean is not None:
        shown = ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(start.mean, start.std, strict=True))
        notes["normalisation"] = f"normalised with {start.why} mean/std per channel ({shown})"
    return notes


def apply_normalisation(start: Start, data: Any) -> None:
    """Give ``data`` the weights' mean/std: the features were learned on inputs scaled so."""
    if start.mean is not None and len(start.mean) == data.input.channels:
        data.input = replace(data.input, mean=start.mean, std=start.std)


def start_model(
    model: Any,
    start: Start,
    classes: list[str],
    freeze: bool,
    announce: bool = True,
    model_name: str = "",
) -> dict[str, Any]:
    """Load ``start``'s weights into ``model``, freeze for --freeze; the record of what happened.

    ``announce``: say what was loaded and frozen on stderr (not from DDP's other ranks).
    """
    from cnnkit.models.transfer import freeze_all_but_head, head_name, load_start

    say = console.info if announce else (lambda text: None)

    record = dict(start.record)
    num_classes = len(classes)
    if start.from_weights:
        other_classes = start.classes is not None and list(start.classes) != list(classes)
        try:
            report = load_start(
                model,
                start.state,
                start.source,
                lenient=start.lenient,
                new_head=other_classes,
                model_name=model_name,
            )
        except CheckpointError as exc:
            if start.kind != "pretrained":
                raise
            # torchvision's file for this model holds something else: a damaged or
            # hand-copied cache entry.
            raise CheckpointError(
                f"the cached weights file {start.record.get('file')} does not hold "
                f"{model_name}'s weights ({exc.message.split(': ', 1)[-1]})",
                hint=f"delete it and run again to fetch it from {start.record.get('url')}",
            ) from None
        if freeze and report.skipped:
            raise CheckpointError(
                f"--freeze would keep {len(report.skipped)} layer tensor(s) that were not "
                f"loaded at their random initial values: {'; '.join(report.skipped[:2])}",
                hint="drop --freeze (they are then trained), or train at the input size of "
                "the weights (--img-size, --frames)",
            )
        if not report.loaded:
            raise CheckpointError(
                f"no tensor of {start.source} fits model {type(model).__name__}",
                hint="start from weights of the same model",
            )
        record.update(report.record())
        head = head_name(model)
        if report.new_head:
            why = _new_head_reason(start, num_classes)
            say(
                f"starting from {start.source}: {len(report.loaded)} tensors loaded; new head "
                f"'{head}' for {num_classes} classes ({why})"
            )
        else:
            same = "the same classes" if start.classes else f"its shape fits {num_classes} classes"
            say(
                f"starting from {start.source}: {len(report.loaded)} tensors loaded, head "
                f"'{head}' included ({same})"
            )
        if report.skipped and announce:
            console.warn(f"not loaded (shape differs): {'; '.join(report.skipped[:3])}")
    if freeze:
        frozen = freeze_all_but_head(model)
        record["frozen"] = frozen
        record["trained"] = [head_name(model)]
        if start.kind != "resumed":
            say(f"--freeze: training only '{head_name(model)}'; frozen: {', '.join(frozen)}")
    return record


def _new_head_reason(start: Start, num_classes: int) -> str:
    if start.kind == "pretrained":
        return "the weights' classes are not this dataset's"
    if start.kind == "checkpoint":
        return "the checkpoint was trained on other classes"
    return f"the file's head is not for {num_classes} classes"
