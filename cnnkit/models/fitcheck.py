"""Whether a state dict fits a model: names, shapes and the values they need.

Shared by checkpoint loading and fine-tuning; imports nothing of cnnkit's
model code, so both can use it without importing each other.
"""

from __future__ import annotations

from typing import Any


def few_names(items: list[str], n: int = 3) -> str:
    """The first ``n`` of ``items``, and how many more."""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def shapes_text(key: str, state: dict[str, Any], own: dict[str, Any]) -> str:
    """'fc.weight (3×84 in the file, 10×84 in the model)'."""
    theirs = getattr(state[key], "shape", None)
    shown = "×".join(map(str, theirs)) if theirs is not None else type(state[key]).__name__
    return f"{key} ({shown} in the file, {'×'.join(map(str, own[key].shape))} in the model)"


def misfit(skeleton: Any, state: dict[str, Any]) -> str | None:
    """Why ``state`` cannot be loaded into ``skeleton`` (a model on the meta device), or None.

    Names, shapes, and the values they need: tensors of a pickle may be views
    that repeat a few stored values (stride 0) over any shape, so matching
    shapes do not show that the file holds the values; the storages do.
    """
    import torch

    own = skeleton.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [
        k
        for k in own
        if k in state
        and (not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(own[k].shape))
    ]
    parts = []
    if missing:
        parts.append("missing " + few_names(missing))
    if unexpected:
        parts.append("unexpected " + few_names(unexpected))
    if misshapen:
        parts.append("wrong shape " + few_names([shapes_text(k, state, own) for k in misshapen]))
    if parts:
        return "; ".join(parts)
    unique = {n for n, _ in skeleton.named_parameters()} | {n for n, _ in skeleton.named_buffers()}
    needed = sum(own[k].numel() * state[k].element_size() for k in unique if k in state)
    storages = {}
    for tensor in state.values():
        storage = tensor.untyped_storage()
        storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
    held = sum(storages.values())
    if needed > held:
        from cnnkit.ops.limits import size_text

        return (
            f"its tensors need {size_text(needed)} of values and the file stores "
            f"{size_text(held)} (tensors that repeat stored values)"
        )
    return None
