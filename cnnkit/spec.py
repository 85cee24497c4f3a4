"""The input spec and the checkpoint schema: the one place every module reads them from.

``InputSpec`` says what a model takes (channels, size, frames, normalisation);
the data layer makes one, training stores it, and eval, predict and inspect
rebuild the same preprocessing from it. ``CheckpointMeta`` is what a cnnkit
checkpoint's ``hyper_parameters`` hold, with ``to_dict``/``from_dict`` and a
schema version: plain Python types only, since checkpoints are loaded with
``torch.load(weights_only=True)``. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# 1: the layout written since cnnkit 0.1 (files without a "schema" key are read as 1).
SCHEMA_VERSION = 1

# What images drawn only in their alpha channel are composited over, unless said otherwise.
WHITE = (255, 255, 255)


class SchemaError(ValueError):
    """A checkpoint's metadata is not in a layout this cnnkit can read (the message says why)."""


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
        try:
            channels = int(spec["channels"])
            size = [int(v) for v in spec["size"]]
            mean, std = list(spec["mean"]), list(spec["std"])
            frames = spec.get("frames")
            background = [int(v) for v in spec.get("background") or WHITE]
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"'input' is not an input spec ({exc})") from None
        if len(size) != 2 or channels < 1 or len(mean) != channels or len(std) != channels:
            raise SchemaError("'input' is not an input spec (channels, size and stats disagree)")
        if len(background) != 3 or not all(0 <= v <= 255 for v in background):
            raise SchemaError("'input' background is not an RGB colour of 0-255")
        colour = (background[0], background[1], background[2])
        return cls(channels, (size[0], size[1]), frames, tuple(mean), tuple(std), colour)


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
        """Read ``hyper_parameters``; SchemaError says what does not fit."""
        schema = hp.get("schema", 1)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise SchemaError(f"schema {schema!r}: written by a newer cnnkit")
        if not isinstance(hp.get("model_name"), str):
            raise SchemaError("'model_name' is not a name")
        classes = hp.get("classes")
        if not isinstance(classes, Sequence) or isinstance(classes, str) or not classes:
            raise SchemaError("'classes' is not a list of class names")
        for key in ("model_args", "input", "metrics", "options", "decisions", "start"):
            if hp.get(key) is not None and not isinstance(hp[key], Mapping):
                raise SchemaError(f"'{key}' is not a mapping")
        if hp.get("input") is None:
            raise SchemaError("no 'input' spec")
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
            seed=int(seed) if isinstance(seed, (int, float)) else None,
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
