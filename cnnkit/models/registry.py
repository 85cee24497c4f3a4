"""A strict registry of model builders: one name, one builder, no duplicates.

Each builder is a small function registered with its input dimensionality and
default input size, e.g.::

    @register_model("lenet5", dims=2, default_input_size=(1, 28, 28), description="...")
    def lenet5(num_classes: int, in_channels: int) -> nn.Module: ...

Builders register themselves (cnnkit.models.registration) when their module
is imported; the registry imports cnn2d and cnn3d on first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from cnnkit.errors import ModelError, close_match_hint
from cnnkit.models.registration import _REGISTRY, ModelSpec, register_model

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]


def _registry() -> dict[str, ModelSpec]:
    # Importing the builders registers them; a no-op after the first call.
    import cnnkit.models.cnn2d  # noqa: F401
    import cnnkit.models.cnn3d  # noqa: F401

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
