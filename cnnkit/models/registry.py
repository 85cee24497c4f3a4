"""A strict registry of model builders: one name, one builder, no duplicates.

Each builder is a small function registered with its input dimensionality and
default input size, e.g.::

    @register_model("lenet5", dims=2, default_input_size=(1, 28, 28), description="...")
    def lenet5(num_classes: int, in_channels: int) -> nn.Module: ...

This module imports neither torch nor torchvision, so listing models is cheap;
``import cnnkit.models`` registers every builder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cnnkit.errors import ModelError, close_match_hint


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before building it."""

    name: str
    dims: int  # 2: images (N, C, H, W); 3: clips (N, C, T, H, W)
    default_input_size: tuple[int, ...]  # (C, H, W) or (C, T, H, W), without the batch
    description: str
    builder: Callable[..., Any]
    # torchvision's weights enum for --pretrained ("ResNet18_Weights"), None: no weights.
    weights: str | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    dims: int,
    default_input_size: tuple[int, ...],
    description: str,
    weights: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``builder(num_classes, in_channels, **kwargs) -> nn.Module`` under ``name``.

    A builder that also takes ``input_size`` receives the (C, H, W) or
    (C, T, H, W) input it will see (for models whose sizes depend on it).
    ``weights`` names torchvision's weights enum whose DEFAULT ``--pretrained``
    loads (see cnnkit.models.pretrained).
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if len(default_input_size) != dims + 1:
        raise ValueError(f"default_input_size for a {dims}D model needs {dims + 1} values")

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            # Programming error, not user input: two builders would silently shadow each other.
            raise ValueError(f"model '{name}' is already registered")
        _REGISTRY[name] = ModelSpec(
            name, dims, tuple(default_input_size), description, builder, weights
        )
        return builder

    return decorator


def _registry() -> dict[str, ModelSpec]:
    # Importing the package registers every builder (cnn2d, cnn3d); a no-op after the first call.
    import cnnkit.models  # noqa: F401

    return _REGISTRY


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_registry())


def models_with_weights() -> list[str]:
    """The models ``--pretrained`` works for, sorted."""
    return sorted(n for n, s in _registry().items() if s.weights)


def get_model_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; unknown names raise ModelError with a close match."""
    registry = _registry()
    if name not in registry:
        raise ModelError(f"unknown model '{name}'", hint=close_match_hint(name, registry, "model"))
    return registry[name]


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    input_size: Sequence[int] | None = None,
    **kwargs: Any,
) -> Any:
    """Build model ``name`` (an untrained ``torch.nn.Module``, no downloads).

    ``in_channels`` defaults to the model's default input channels. ``input_size``
    ((C, H, W) or (C, T, H, W)) matters only for models with size-bound layers
    (``dense``, ``lecun1989``); it defaults to the model's default size.
    Output: logits of shape (N, num_classes).
    """
    spec = get_model_spec(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    if in_channels is None:
        in_channels = input_size[0] if input_size is not None else spec.default_input_size[0]
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ModelError(f"in_channels must be a positive integer, got {in_channels!r}")
    if input_size is None:
        input_size = (in_channels, *spec.default_input_size[1:])
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != spec.dims + 1:
        raise ModelError(
            f"model '{name}' takes {spec.dims + 1}-value input sizes, got {list(input_size)}",
            hint=f"its default is {'x'.join(map(str, spec.default_input_size))}",
        )
    if input_size[0] != in_channels:
        raise ModelError(
            f"in_channels={in_channels} disagrees with input_size {list(input_size)}",
            hint="give the same channel count in both, or only one of them",
        )

    params = inspect.signature(spec.builder).parameters
    if "input_size" in params:
        kwargs["input_size"] = input_size
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not accepts_any]
    if unknown:
        allowed = [p for p in params if p not in ("num_classes", "in_channels", "input_size")]
        raise ModelError(
            f"model '{name}' takes no argument(s) {', '.join(unknown)}",
            hint=f"it takes: {', '.join(allowed) or 'no extra arguments'}",
        )
    return spec.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)
