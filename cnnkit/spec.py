"""The input spec and the checkpoint schema: the one place every module reads them from.

``InputSpec`` says what a model takes (channels, size, frames, normalisation);
the data layer makes one, training stores it, and eval, predict and inspect
rebuild the same preprocessing from it. ``CheckpointMeta`` is what a cnnkit
checkpoint's ``hyper_parameters`` hold, with ``to_dict``/``from_dict`` and a
schema version: plain Python types only, since checkpoints are loaded with
``torch.load(weights_only=True)``. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# 1: the layout written since cnnkit 0.1 (files without a "schema" key are read as 1).
SCHEMA_VERSION = 1

# What images drawn only in their alpha channel are composited over, unless said otherwise.
WHITE = (255, 255, 255)

# What metadata may declare. Checkpoints and exported models are untrusted: their
# metadata is read before anything is built from it, and a pickle can share one
# value many times (a structure that doubles at each level) or refer to itself.
MAX_DEPTH = 32  # nesting of lists and mappings
MAX_VALUES = 500_000  # all values, a shared one counted each time it is met
MAX_STRING = 65_536  # characters in one string
MAX_TEXT = 16 * 2**20  # characters in all strings together
MAX_CLASSES = 100_000
MAX_MODEL_ARGS = 1_000  # values in model_args
MAX_CHANNELS = 4
MAX_SIDE = 8192  # pixels of H and of W
MAX_FRAMES = 1024
MAX_SAMPLE = 2**28  # C×T×H×W values of one input


class SchemaError(ValueError):
    """A checkpoint's metadata is not in a layout this cnnkit can read (the message says why)."""


class _Budget:
    """What a walk of check_plain may still meet (shared by the fields of one file)."""

    def __init__(self, values: int) -> None:
        self.limit = self.values = values
        self.text = MAX_TEXT


def check_plain(value: Any, what: str, budget: _Budget | None = None) -> None:
    """SchemaError unless ``value`` is plain data (str, int, float, bool, None, lists,
    tuples and mappings of them) within the bounds above; ``what`` names it in messages.

    Every value is counted each time it is met, so a structure whose parts are
    shared (or that holds itself) is refused after MAX_VALUES steps, without
    ever being expanded.
    """
    budget = budget or _Budget(MAX_VALUES)
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget.values -= 1
        if budget.values < 0:
            raise SchemaError(f"{what} holds over {budget.limit:,} values")
        if item is None or isinstance(item, (bool, float)):
            continue
        if isinstance(item, int):
            if item.bit_length() > 64:
                raise SchemaError(f"{what} holds an integer of {item.bit_length()} bits")
        elif isinstance(item, str):
            budget.text -= len(item)
            if len(item) > MAX_STRING or budget.text < 0:
                raise SchemaError(f"{what} holds too much text ({len(item):,} characters)")
        elif isinstance(item, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise SchemaError(f"{what} nests deeper than {MAX_DEPTH} levels")
            if len(item) > budget.values:
                raise SchemaError(f"{what} holds over {budget.limit:,} values")
            if isinstance(item, dict):
                stack.extend((v, depth + 1) for pair in item.items() for v in pair)
            else:
                stack.extend((v, depth + 1) for v in item)
        else:
            raise SchemaError(f"{what} holds a {type(item).__name__}, not a plain value")


def _whole(value: Any, what: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high] (an integral float is taken); SchemaError otherwise."""
    if _integral(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SchemaError(
            f"'input' is not an input spec ({what} {_shown(value)}: not a whole number "
            f"from {low} to {high})"
        )
    return value


def _shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python converts
        return f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _integral(value: Any) -> bool:
    return isinstance(value, float) and value.is_integer()


def _stats(values: Any, what: str, channels: int, positive: bool) -> list[float]:
    if not isinstance(values, (list, tuple)) or len(values) != channels:
        raise SchemaError(f"'input' is not an input spec ({what}: not one number per channel)")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SchemaError(f"'input' is not an input spec ({what} {list(values)!r}: not finite)")
        if positive and v <= 0:
            raise SchemaError(
                f"'input' is not an input spec ({what} {list(values)!r}: not positive)"
            )
        out.append(float(v))
    return out


@dataclass(frozen=True)
class InputSpec:
    """What a model takes.

    ``size`` is (H, W); ``frames`` is the clip length T for video models,
    else None; ``mean``/``std`` are per channel in [0, 1] units, applied after
    dividing uint8 pixels by 255. ``background``: the RGB colour (0-255) that
    images drawn only in their alpha channel are composited over
    (cnnkit.data.preprocess.flatten_alpha).
    """

    channels: int
    size: tuple[int, int]
    frames: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    background: tuple[int, int, int] = WHITE

    def __post_init__(self) -> None:
        # Normalised types, whatever the caller passed (lists, numpy scalars...).
        object.__setattr__(self, "channels", int(self.channels))
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        object.__setattr__(self, "frames", int(self.frames) if self.frames else None)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "background", tuple(int(v) for v in self.background))

    @property
    def is_video(self) -> bool:
        return self.frames is not None

    def shape(self) -> tuple[int, ...]:
        """(C, H, W) or (C, T, H, W) of one sample."""
        if self.frames is None:
            return (self.channels, *self.size)
        return (self.channels, self.frames, *self.size)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only: this goes into checkpoints loaded with weights_only=True."""
        return {
            "channels": self.channels,
            "size": list(self.size),
            "frames": self.frames,
            "mean": list(self.mean),
            "std": list(self.std),
            "background": list(self.background),
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> InputSpec:
        """Read a stored spec, checked: sizes a model can take and a normalisation that is one.

        Channels 1 to MAX_CHANNELS, sides 1 to MAX_SIDE, frames none or 1 to
        MAX_FRAMES, at most MAX_SAMPLE values in one input; mean finite, std
        finite and positive (a std of 0 divides every pixel by zero).
        """
        if not isinstance(spec, Mapping):
            raise SchemaError("'input' is not an input spec (not a mapping)")
        missing = [k for k in ("channels", "size", "mean", "std") if k not in spec]
        if missing:
            raise SchemaError(f"'input' is not an input spec (no {', '.join(missing)})")
        channels = _whole(spec["channels"], "channels", 1, MAX_CHANNELS)
        size = spec["size"]
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise SchemaError(f"'input' is not an input spec (size {_shown(size)}: not [H, W])")
        height, width = (_whole(v, "size", 1, MAX_SIDE) for v in size)
        frames = spec.get("frames")
        if frames is not None:
            frames = _whole(frames, "frames", 1, MAX_FRAMES)
        if channels * (frames or 1) * height * width > MAX_SAMPLE:
            raise SchemaError(
                f"'input' is not an input spec ({channels}×{frames or 1}×{height}×{width}: "
                f"more than {MAX_SAMPLE:,} values in one input)"
            )
        mean = _stats(spec["mean"], "mean", channels, positive=False)
        std = _stats(spec["std"], "std", channels, positive=True)
        background = spec.get("background") or WHITE
        if (
            not isinstance(background, (list, tuple))
            or len(background) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in background)
            or not all(0 <= v <= 255 for v in background)
        ):
            raise SchemaError(
                f"'input' is not an input spec (background {_shown(background)}: "
                "not an RGB colour of 0-255)"
            )
        colour = (background[0], background[1], background[2])
        return cls(channels, (height, width), frames, tuple(mean), tuple(std), colour)


# The keys of hyper_parameters that CheckpointMeta reads.
_FIELDS = (
    "schema",
    "model_name",
    "model_args",
    "classes",
    "input",
    "dataset",
    "data_kind",
    "cnnkit_version",
    "seed",
    "determinism",
    "options",
    "decisions",
    "metrics",
    "start",
)


@dataclass
class CheckpointMeta:
    """Everything a checkpoint says about itself (its ``hyper_parameters``).

    ``options``: the resumable training options the run used, by name (see
    cnnkit.training.options). ``decisions``: what was decided for the user,
    in words. ``start``: the weights training started from.
    """

    model_name: str
    classes: list[str]
    input: InputSpec
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    data_kind: str = "image"
    cnnkit_version: str = ""
    seed: int | None = None
    determinism: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    start: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "model_name": self.model_name,
            "model_args": dict(self.model_args),
            "classes": list(self.classes),
            "input": self.input.to_dict(),
            "dataset": self.dataset,
            "data_kind": self.data_kind,
            "cnnkit_version": self.cnnkit_version,
            "seed": self.seed,
            "determinism": dict(self.determinism),
            "options": dict(self.options),
            "decisions": dict(self.decisions),
            "metrics": dict(self.metrics),
            "start": dict(self.start),
        }

    @classmethod
    def from_dict(cls, hp: Mapping[str, Any]) -> CheckpointMeta:
        """Read ``hyper_parameters``; SchemaError says what does not fit.

        Only what cnnkit reads is checked and kept; every part of it is plain
        data within the bounds at the top of this module.
        """
        if not isinstance(hp, Mapping):
            raise SchemaError("the metadata is not a mapping")
        budget = _Budget(MAX_VALUES)
        for key in _FIELDS:
            if key in hp:
                check_plain(hp[key], f"'{key}'", budget)
        schema = hp.get("schema", 1)
        if isinstance(schema, bool) or not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise SchemaError(f"schema {schema!r}: written by a newer cnnkit")
        if not isinstance(hp.get("model_name"), str):
            raise SchemaError("'model_name' is not a name")
        classes = hp.get("classes")
        if not isinstance(classes, (list, tuple)) or not classes:
            raise SchemaError("'classes' is not a list of class names")
        if len(classes) > MAX_CLASSES:
            raise SchemaError(f"'classes' lists {len(classes):,} classes, over {MAX_CLASSES:,}")
        if not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
            raise SchemaError("'classes' is not a list of class names")
        for key in ("model_args", "input", "metrics", "options", "decisions", "start"):
            if hp.get(key) is not None and not isinstance(hp[key], Mapping):
                raise SchemaError(f"'{key}' is not a mapping")
        if hp.get("input") is None:
            raise SchemaError("no 'input' spec")
        if hp.get("model_args"):
            check_plain(hp["model_args"], "'model_args'", _Budget(MAX_MODEL_ARGS))
        seed = hp.get("seed")
        return cls(
            model_name=hp["model_name"],
            classes=[str(c) for c in classes],
            input=InputSpec.from_dict(hp["input"]),
            model_args=dict(hp.get("model_args") or {}),
            dataset=str(hp.get("dataset") or ""),
            data_kind=str(
                hp.get("data_kind") or ("video" if hp["input"].get("frames") else "image")
            ),
            cnnkit_version=str(hp.get("cnnkit_version") or ""),
            seed=int(seed) if isinstance(seed, int) or _integral(seed) else None,
            determinism=dict(hp.get("determinism") or {}),
            options=dict(hp.get("options") or {}),
            decisions=dict(hp.get("decisions") or {}),
            metrics=dict(hp.get("metrics") or {}),
            start=dict(hp.get("start") or {}),
            schema=schema,
        )

    def recorded_options(self) -> dict[str, Any]:
        """The run's options by name, completed from the top-level fields older files keep."""
        recorded = {
            "dataset": self.dataset or None,
            "model": self.model_name,
            "seed": self.seed,
            "frames": self.input.frames,
        }
        height, width = self.input.size
        if height == width:
            recorded["img_size"] = height  # files from before img_size was an option
        recorded.update({k: v for k, v in self.options.items() if v is not None})
        return recorded


class MetaFields:
    """The fields eval, predict and inspect read, taken from ``self.meta`` (a CheckpointMeta).

    Shared by a loaded checkpoint and an exported model, which describe themselves alike.
    """

    meta: CheckpointMeta

    @property
    def model_name(self) -> str:
        return self.meta.model_name

    @property
    def model_args(self) -> dict[str, Any]:
        return self.meta.model_args

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    @property
    def input(self) -> InputSpec:
        return self.meta.input

    @property
    def dataset(self) -> str:
        return self.meta.dataset

    @property
    def seed(self) -> int | None:
        return self.meta.seed

    @property
    def cnnkit_version(self) -> str:
        return self.meta.cnnkit_version
