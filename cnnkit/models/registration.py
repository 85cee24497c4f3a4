"""Model registration: the decorator builders use and the table it fills.

A leaf (it imports nothing of the model code), so that the builders in
cnn2d and cnn3d register themselves without importing the registry that
imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
