"""What cnnkit can build and load by name: the registered models and the built-in datasets.

``cnnkit inspect`` with no target shows this list; ``train --model`` and
``--dataset`` take these names. Read from the registries, never typed in by
hand, so a model registered tomorrow is listed tomorrow. Importing the model
registry imports torch; nothing here imports Lightning.
"""

from __future__ import annotations

from typing import Any


def model_catalog() -> list[dict[str, Any]]:
    """One entry per registered model, sorted by name.

    ``input_size`` is the default (C, H, W) or (C, T, H, W); ``pretrained`` is
    what torchvision's weights were trained on ("imagenet", "kinetics400"),
    the DATA of a ``MODEL:DATA`` reference and of ``train --pretrained``, or
    None when the model has none.
    """
    from cnnkit.models.pretrained import WEIGHTS_DATA
    from cnnkit.models.registry import get_model_spec, list_models

    entries = []
    for name in list_models():
        spec = get_model_spec(name)
        entries.append(
            {
                "name": name,
                "dims": spec.dims,
                "input_size": list(spec.default_input_size),
                "pretrained": WEIGHTS_DATA[spec.dims] if spec.weights else None,
                "description": spec.description,
            }
        )
    return entries


def dataset_catalog() -> list[dict[str, Any]]:
    """One entry per built-in dataset name, sorted: name, kind ("image"/"video"), description."""
    from cnnkit.data.registry import get_dataset_entry, list_datasets

    entries = []
    for name in list_datasets():
        entry = get_dataset_entry(name)
        if entry is not None:
            entries.append({"name": name, "kind": entry.kind, "description": entry.description})
    return entries


def catalog() -> dict[str, Any]:
    """What ``cnnkit inspect`` with no target shows (and prints with --json)."""
    return {"kind": "catalog", "models": model_catalog(), "datasets": dataset_catalog()}
