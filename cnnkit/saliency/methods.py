"""Where the network looked: Grad-CAM, Grad-CAM++ and occlusion maps for image models.

- Grad-CAM (Selvaraju et al. 2017): the activations ``A`` of a convolution
  stage, weighted per channel by the mean gradient of the class score over
  their positions, summed over channels, ReLU: positive evidence for the class.
- Grad-CAM++ (Chattopadhyay et al. 2018): the channel weights are
  ``sum(alpha * relu(dS/dA))`` with the closed-form ``alpha`` for an
  exponential score, which spreads credit over several instances of a class.
- Occlusion (Zeiler & Fergus 2014): a grey patch (the normalisation mean,
  i.e. zero after normalising) a quarter of the input's side slides over it;
  the map is how much the class's log-probability drops with each position
  covered (log: a confident model's probability barely moves). It needs only logits,
  so it works for every model, exported ``.onnx`` ones included.

Maps come out at the model's input size, scaled to 0-1 per input; the
overlay is drawn at the input image's resolution, enlarged by a whole factor
when it is small (:func:`overlay`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.errors import InputError, ModelError, close_match_hint

METHODS = ("gradcam", "gradcam++", "occlusion")


def spatial_layers(model: Any, input_shape: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every leaf module whose output is a map like the input's.

    One forward pass on zeros; a module called more than once (a ResNet block's
    ReLU) is listed with its last output, the one the next layer sees.
    """
    import torch

    outputs: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    ndim = len(input_shape) + 1

    owner = threading.get_ident()

    def hook(name: str) -> Any:
        def record(_m: Any, _a: Any, out: Any) -> None:
            # Only this call's pass: other threads may run the model meanwhile.
            if threading.get_ident() != owner:
                return
            if isinstance(out, torch.Tensor) and out.dim() == ndim:
                outputs[name] = tuple(out.shape)
                if name in order:
                    order.remove(name)
                order.append(name)

        return record

    with _GRADIENTS:  # the hooks of a Grad-CAM pass must not see this pass, nor it theirs
        handles = [
            m.register_forward_hook(hook(n))
            for n, m in model.named_modules()
            if n and not any(True for _ in m.children())
        ]
        try:
            # On the model's own device: moving a model that other threads run is a race.
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else "cpu"
            with torch.no_grad():
                model(torch.zeros(1, *input_shape, device=device))
        finally:
            for h in handles:
                h.remove()
    return [(n, outputs[n]) for n in order]


def default_layer(model: Any, input_shape: Sequence[int]) -> str:
    """The last convolution stage: the last leaf module whose output is still a map.

    Global pooling (a 1×1 map) is not one; when every map is 1×1 (a deep net on
    a small input), the last of them is taken.
    """
    layers = spatial_layers(model, input_shape)
    if not layers:
        raise ModelError(
            "this model has no layer whose output is a map over the input (a dense net, or "
            "per-frame maps of a frame-wise video model)",
            hint="use --method occlusion (image models), which needs no layer",
        )
    maps = [name for name, shape in layers if int(np.prod(shape[2:])) > 1]
    return (maps or [layers[-1][0]])[-1]


def check_map_layer(model: Any, input_shape: Sequence[int], name: str) -> None:
    """InputError unless ``name`` is a layer whose output is a map over the input."""
    find_layer(model, name)
    maps = dict(spatial_layers(model, input_shape))
    containers = {n for n, m in model.named_modules() if n and any(True for _ in m.children())}
    if name not in maps and name not in containers:
        raise InputError(
            f"--layer {name} does not give a map over the input (a linear or flattening layer)",
            hint=f"choose a convolution stage, e.g. {default_layer(model, input_shape)}",
        )


def find_layer(model: Any, name: str) -> Any:
    """The module called ``name`` (as inspect prints them); an InputError with a close match."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        leaves = [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]
        raise InputError(
            f"--layer {name!r} is not a layer of this model",
            hint=close_match_hint(name, leaves, "layer")
            + "; `cnnkit inspect CHECKPOINT` lists them",
        )
    return modules[name]


def gradcam(
    model: Any,
    x: Any,
    layer: str,
    targets: Sequence[int] | None,
    plus: bool = False,
    compute: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(maps N×H×W in 0-1 at the input's size, logits N×K) for normalised inputs ``x``.

    ``targets``: the class explained for each input (None: the predicted one).
    ``compute``: how the forward pass computes (cnnkit.precision.Compute), the
    way predict runs the same model, so the scores agree with predict's.
    """

    module = find_layer(model, layer)
    saved: dict[str, Any] = {}
    grads: dict[int, Any] = {}

    owner = threading.get_ident()

    def keep(_m: Any, _a: Any, out: Any) -> None:
        # Other threads may run the same model meanwhile (predict): their outputs
        # are not this call's.
        if threading.get_ident() != owner:
            return
        # A module run more than once (a ResNet block's ReLU) keeps its last output, the
        # one the next layer sees, and each output its own gradient: backward reaches
        # the calls in reverse order, so "the last gradient seen" is the first call's.
        saved["a"] = out
        out.register_hook(lambda g, key=id(out): grads.__setitem__(key, g))

    with _GRADIENTS:  # one gradient pass at a time: they share the weights' .grad
        return _gradcam(model, x, layer, targets, plus, module, keep, saved, grads, compute)


# Held while a Grad-CAM pass runs (its hooks and the weights' gradients are shared).
_GRADIENTS = threading.RLock()


def _gradcam(
    model: Any,
    x: Any,
    layer: str,
    targets: Sequence[int] | None,
    plus: bool,
    module: Any,
    keep: Any,
    saved: dict[str, Any],
    grads: dict[int, Any],
    compute: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F

    from cnnkit.precision import Compute

    compute = compute or Compute()

    handle = module.register_forward_hook(keep)
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # gradients reach the layer even if frozen
            with compute.context(x.device.type):
                logits = model(compute.prepare_input(x)).float()
            chosen = logits.argmax(dim=1).tolist() if targets is None else list(targets)
            index = torch.as_tensor(chosen, device=logits.device)[:, None]
            model.zero_grad(set_to_none=True)
            logits.gather(1, index).sum().backward()
    finally:
        handle.remove()
    acts = saved["a"].detach().float()
    grads_of_acts = grads.get(id(saved["a"]))
    if grads_of_acts is None:
        raise ModelError(f"layer {layer}'s output does not reach the class score")
    grads = grads_of_acts.detach().float()
    if acts.dim() != x.dim():
        raise InputError(
            f"--layer {layer} gives {tuple(acts.shape)} outputs, not a map over the input",
            hint="choose a convolution or pooling layer (`cnnkit inspect` lists them)",
        )
    axes = tuple(range(2, acts.dim()))
    if plus:
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + (acts * g3).sum(dim=axes, keepdim=True)
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        weights = (alpha * grads.clamp(min=0)).sum(dim=axes, keepdim=True)
    else:
        weights = grads.mean(dim=axes, keepdim=True)
    cam = (weights * acts).sum(dim=1, keepdim=True).clamp(min=0)
    mode = "bilinear" if cam.dim() == 4 else "trilinear"
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False)[:, 0]
    return _unit(cam.numpy()), logits.detach().float().numpy()


def occlusion(
    logits_fn: Any,
    batch: np.ndarray,
    targets: Sequence[int] | None,
    mean: Sequence[float],
    patch: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(maps N×H×W in 0-1, logits N×K): the class log-probability's drop under a sliding patch.

    ``batch``: uint8 N×C×H×W as predict feeds models; ``logits_fn`` maps such a
    batch to logits (a Predictor's ``logits``, torch or ONNX Runtime). The patch
    is filled with each channel's normalisation mean, which normalises to 0.
    """
    from cnnkit.evaluation.metrics import log_softmax

    n, c, h, w = batch.shape
    # A quarter of the image: a patch much smaller than the object hides too little
    # of it to move a confident model's score.
    size = patch or max(2, min(h, w) // 4)
    stride = max(1, size // 2)
    logits = logits_fn(batch)
    base = log_softmax(logits)
    targets = list(base.argmax(axis=1)) if targets is None else list(targets)
    maps = np.zeros((n, h, w), np.float64)
    counts = np.zeros((h, w), np.float64)
    positions = [
        (y, x)
        for y in range(0, max(1, h - size) + 1, stride)
        for x in range(0, max(1, w - size) + 1, stride)
    ]
    for y, x in positions:
        counts[y : y + size, x : x + size] += 1
    fill = np.clip(np.round(np.asarray(mean, np.float64) * 255), 0, 255).astype(np.uint8)
    for i in range(n):
        variants = np.repeat(batch[i : i + 1], len(positions), axis=0)
        for j, (y, x) in enumerate(positions):
            variants[j, :, y : y + size, x : x + size] = fill[:, None, None]
        probs = []
        step = 256
        for start in range(0, len(variants), step):
            probs.append(log_softmax(logits_fn(variants[start : start + step]))[:, targets[i]])
        drop = base[i, targets[i]] - np.concatenate(probs)
        for (y, x), d in zip(positions, drop, strict=True):
            maps[i, y : y + size, x : x + size] += d
    maps /= np.maximum(counts, 1)
    return _unit(np.clip(maps, 0, None)), logits


def _unit(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to 0-1 by its maximum (an all-zero map stays zero)."""
    maps = np.asarray(maps, np.float32)
    top = maps.reshape(len(maps), -1).max(axis=1)
    top = np.where(top > 0, top, 1.0)
    return maps / top.reshape(-1, *([1] * (maps.ndim - 1)))


# The shorter side an explain picture is drawn at, at least: a 28×28 digit is
# enlarged 8 times, so its pixels and the label can be seen.
MIN_SIDE = 224
# ... but not past this on the longer side: a thin strip (1×5000) is not worth
# a picture of a billion pixels.
MAX_SIDE = 4096


def enlargement(height: int, width: int) -> int:
    """The whole factor an image of ``height``×``width`` is drawn at (1: as it is)."""
    short, long = max(1, min(height, width)), max(1, height, width)
    wanted = -(-MIN_SIDE // short)  # ceil: the shorter side reaches MIN_SIDE
    return max(1, min(wanted, MAX_SIDE // long))


def blend(
    image: np.ndarray,
    heat: np.ndarray,
    alpha: float,
    background: tuple[int, int, int] = (255, 255, 255),
    factor: int = 1,
) -> np.ndarray:
    """The heat map (0-1, any size) over ``image`` (H×W[×C] RGB) -> uint8 RGB, no text.

    ``factor``: the image is enlarged that many times with nearest neighbours
    (its pixels stay sharp squares: they are the data), the heat map resized to
    match bilinearly (it is a coarse estimate, a grid of 4×4 to 14×14 cells for
    Grad-CAM, and drawing its cells as blocks would show edges the network
    never saw). ``background``: what an image drawn only in alpha is shown on
    (the model's, so the picture is what the network saw).
    """
    import cv2

    from cnnkit.data.preprocess import fit_channels, to_uint8

    base = fit_channels(to_uint8(image), 3, background)
    h, w = base.shape[:2]
    if factor > 1:
        h, w = h * factor, w * factor
        base = cv2.resize(base, (w, h), interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat8 = np.clip(heat * 255, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(heat8, cv2.COLORMAP_JET)[:, :, ::-1]  # BGR -> RGB
    return cv2.addWeighted(base, 1 - alpha, colour, alpha, 0)


def label_scale(height: int, width: int) -> float:
    """The label's font scale for a picture drawn at ``height``×``width``."""
    return float(np.clip(min(height, width) / 400, 0.55, 1.5))


def label_band(texts: Sequence[str], height: int, width: int) -> int:
    """Height of a band that holds any of ``texts`` over an image of ``height``×``width``.

    A video's frames get one band height (their labels change, its size cannot).
    """
    from cnnkit.captions import fit_captions

    k = enlargement(height, width)
    h, w = height * k, width * k
    scale = label_scale(h, w)
    pad = _band_pad(scale)
    return fit_captions(texts, max(w, MIN_SIDE) - 2 * pad, scale) + 2 * pad


def overlay_size(height: int, width: int, band: int) -> tuple[int, int]:
    """(height, width) of :func:`overlay`'s picture of a ``height``×``width`` image."""
    k = enlargement(height, width)
    return band + height * k, max(width * k, MIN_SIDE)


def _band_pad(scale: float) -> int:
    return max(4, int(round(8 * scale)))


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    alpha: float,
    text: str,
    background: tuple[int, int, int] = (255, 255, 255),
    band: int | None = None,
) -> np.ndarray:
    """The picture ``cnnkit explain`` writes: the heat map over the image, ``text`` above it.

    uint8 RGB. An image whose shorter side is under MIN_SIDE (224) pixels is
    enlarged by the whole factor that brings it there (:func:`enlargement`:
    nearest neighbours, the heat map bilinear; see :func:`blend`); a larger one
    stays at its size. ``text`` is written in a white band above the image,
    never over its pixels, shrunk or wrapped to the band's width (at least
    MIN_SIDE pixels); ``band``: the band's height when it must not vary (a
    video's frames), else the text's own.
    """
    from cnnkit.captions import fit_caption, line_height

    k = enlargement(*image.shape[:2])
    picture = blend(image, heat, alpha, background, k)
    h, w = picture.shape[:2]
    scale = label_scale(h, w)
    pad = _band_pad(scale)
    width = max(w, MIN_SIDE)  # a picture too thin for a label gets a wider band
    caption = fit_caption(text, width - 2 * pad, scale)
    if band is None:
        band = caption.height + 2 * pad
    elif caption.height > band - 2 * pad:  # a fixed band's lines are all this text gets
        lines = max(1, (band - 2 * pad) // line_height(caption.scale))
        caption = fit_caption(text, width - 2 * pad, scale, max_lines=lines)
    out = np.full((band + h, width, 3), 255, np.uint8)
    out[band:, :w] = picture
    out[band - 1, :] = 200  # a grey rule: the band stays apart from an image with a white edge
    caption.draw(out, pad, pad)
    return out


def peak(heat: np.ndarray, width: int, height: int) -> list[int]:
    """[x, y] of the map's maximum, in the input image's pixels."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return [int((x + 0.5) * width / heat.shape[1]), int((y + 0.5) * height / heat.shape[0])]


def check_method(method: str, onnx: bool) -> None:
    if method not in METHODS:
        raise InputError(f"--method {method!r} is not known", hint=f"one of: {', '.join(METHODS)}")
    if onnx and method != "occlusion":
        raise InputError(
            f"--method {method} needs gradients, which an exported .onnx does not give",
            hint="use --method occlusion, or the .ckpt",
        )
