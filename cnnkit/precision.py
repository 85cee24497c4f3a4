"""How a model computes: in float32 or under bf16 autocast, and in which memory layout.

Two choices decide how fast a convolutional network runs on given hardware,
and cnnkit makes both for the user, says them and records them:

- **Precision.** Where the device computes bf16 natively (a CPU with
  AVX512_BF16 or AMX, an NVIDIA GPU of compute capability 8.0 or newer),
  ``--precision auto`` trains under bf16 autocast: convolutions and matrix
  products in bf16, weights, optimizer state, batch-norm and the loss in
  float32 (mixed precision, as Lightning's ``bf16-mixed`` does; bf16 keeps
  float32's exponent range, so no loss scaling is needed). Elsewhere bf16
  would be emulated and slower than float32, so auto keeps float32.
  ``eval`` and ``predict`` follow the precision the checkpoint was trained
  in, so that their numbers repeat the ones training printed.
- **Layout.** Convolutional models of images compute in ``channels_last``
  (NHWC): oneDNN's and cuDNN's fast convolution kernels work in that layout,
  and a model left in NCHW pays for a conversion around every convolution.
  The arithmetic is the same; sums may be taken in another order.

Torch is imported only inside the functions: the CLI parses options without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import InputError

# What --precision takes, and the Lightning spellings it also accepts.
CHOICES = ("auto", "32", "bf16", "16")
ALIASES = {"32-true": "32", "bf16-mixed": "bf16", "16-mixed": "16"}
LIGHTNING = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
CONTIGUOUS = "contiguous"
CHANNELS_LAST = "channels_last"

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Compute:
    """How a model computes. ``precision``: "32" or "bf16" (or "16", CUDA's fp16, for
    Lightning); ``memory_format``: "contiguous" or "channels_last"; ``reason``: why, in words."""

    precision: str = "32"
    memory_format: str = CONTIGUOUS
    reason: str = ""
    caution: bool = False  # said as a warning: asked for, and slow or unreliable here

    @property
    def autocast(self) -> bool:
        """True when forward passes run under bf16 autocast (cnnkit's own, not Lightning's)."""
        return self.precision == "bf16"

    @property
    def lightning_precision(self) -> str:
        """What Lightning's Trainer is given: cnnkit runs bf16 autocast itself."""
        return "16-mixed" if self.precision == "16" else "32-true"

    @property
    def emulated(self) -> bool:
        """True when it should be said as a warning (the name predates ``caution``)."""
        return self.caution

    def line(self) -> str:
        """What is said on stderr: "compute: bf16 autocast in channels_last (why)"."""
        return f"compute: {self.words()} ({self.reason})"

    def words(self) -> str:
        kind = {"32": "float32", "bf16": "bf16 autocast", "16": "fp16 autocast"}[self.precision]
        layout = " in channels_last" if self.memory_format == CHANNELS_LAST else ""
        return f"{kind}{layout}"

    def record(self) -> dict[str, str]:
        """As checkpoints and config.yaml keep it."""
        return {"precision": LIGHTNING[self.precision], "memory_format": self.memory_format}

    # -- applying it ---------------------------------------------------------

    def prepare_model(self, model: Any) -> Any:
        """``model`` in this layout (in place, as ``Module.to`` does)."""
        if self.memory_format == CHANNELS_LAST:
            import torch

            model.to(memory_format=torch.channels_last)
        return model

    def prepare_input(self, x: Any) -> Any:
        """A 4D batch in this layout (others as they are)."""
        if self.memory_format == CHANNELS_LAST and x.dim() == 4:
            import torch

            return x.contiguous(memory_format=torch.channels_last)
        return x

    def context(self, device_type: str) -> Any:
        """The autocast context forward passes run in (a no-op one for float32).

        fp16 is Lightning's own autocast (with its loss scaling), around the
        training step: an inner context of any kind would switch it off.
        """
        import torch

        if self.precision == "16":
            from contextlib import nullcontext

            return nullcontext()
        if not self.autocast:
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=torch.bfloat16)


def normalise_choice(value: str | None, flag: str = "--precision") -> str:
    """``value`` as one of CHOICES (Lightning's spellings accepted); InputError otherwise."""
    if value is None:
        return "auto"
    text = str(value).strip().lower()
    text = ALIASES.get(text, text)
    if text not in CHOICES:
        raise InputError(
            f"{flag} {value} is not one of {', '.join(CHOICES)}",
            hint=f"e.g. {flag} auto (bf16 where the device computes it natively) or {flag} 32",
        )
    return text


def check_fp16(device_type: str, training: bool = True) -> None:
    """InputError where --precision 16 cannot be done as said.

    fp16 autocast is a training mode of Lightning's (with loss scaling), on a
    GPU: on the CPU Lightning would train in bf16 instead, and a trained
    model is computed in float32 or bf16.
    """
    if not training:
        raise InputError(
            "--precision 16 (fp16 autocast) is for training on a GPU; a trained model "
            "computes in float32 or bf16",
            hint="--precision 32, or bf16 (auto, the default: as the model was trained)",
        )
    if device_type == "cpu":
        raise InputError(
            "--precision 16 (fp16 autocast) needs a GPU: the CPU has no fp16 autocast",
            hint="on the CPU, --precision bf16, or auto (bf16 where the CPU computes it natively)",
        )


def native_bf16(device_type: str, index: int | None = None) -> tuple[bool, str]:
    """Whether ``device_type`` computes bf16 natively, and the evidence in words."""
    if device_type == "cpu":
        flags = _cpu_bf16_flags()
        if flags:
            return True, f"this CPU computes bf16 natively: {', '.join(flags)}"
        return False, "this CPU has no native bf16 (no AVX512_BF16 or AMX)"
    if device_type == "cuda":
        import torch

        major, minor = torch.cuda.get_device_capability(index)
        if major >= 8:
            return True, f"this GPU computes bf16 natively: compute capability {major}.{minor}"
        return False, f"this GPU has no native bf16 (compute capability {major}.{minor} < 8.0)"
    return False, f"bf16 is not used on {device_type}"


def _cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 features, as torch sees them (else /proc/cpuinfo)."""
    found = []
    try:
        import torch.cpu

        if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
            found.append("AVX512_BF16")
        if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
            found.append("AMX")
        return found
    except Exception:  # a torch without these probes: read the kernel's flags
        pass
    try:
        with CPUINFO.open() as f:
            for line in f:
                if line.startswith("flags"):
                    words = set(line.split())
                    return [
                        name
                        for flag, name in (("avx512_bf16", "AVX512_BF16"), ("amx_bf16", "AMX"))
                        if flag in words
                    ]
    except OSError:
        pass
    return found


def layout_for(model: Any, input_dims: int) -> str:
    """channels_last for a model of images (4D input) that has 2D convolutions."""
    if input_dims != 4:
        return CONTIGUOUS
    from torch import nn

    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return CHANNELS_LAST if has_conv else CONTIGUOUS


# On a CPU, bf16 pays only where convolutions are wide enough to fill the
# AVX512_BF16 dot-product lanes and none is depthwise; measured one thread
# per model, training steps at batch 64 (32 for the torchvision models),
# bf16 autocast against float32 in the same layout (CPU time of the step):
# simplecnn 1.9x (28×28 gray) and 1.8x (32×32 RGB), resnet18 1.7x (64×64),
# c3d_small 1.5x, r3d_18 1.4x; lenet5 (6 and 16 channels) 1.0x, lecun1989
# 0.9x, dense (no convolution) 1.0x; mobilenet_v3_small 0.6x and
# efficientnet_b0 0.5x (depthwise).
BF16_MIN_CHANNELS = 32


# Training c3d_small under bf16 autocast on the CPU (torch 2.14, oneDNN)
# gave NaN weights after 5 steps in one of two identical runs; float32 runs
# repeat bit for bit. auto keeps 3D models in float32 on a CPU.
UNRELIABLE_3D = (
    "bf16 training of 3D convolutions on a CPU is unreliable in this torch (NaN weights in "
    "one of two identical runs)"
)


def bf16_pays_on_cpu(model: Any) -> tuple[bool, str]:
    """Whether bf16 autocast speeds ``model`` up on a CPU with native bf16, and why."""
    from torch import nn

    if any(isinstance(m, nn.Conv3d) for m in model.modules()):
        return False, UNRELIABLE_3D
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return False, "bf16 does not speed up a model without convolutions on a CPU"
    if any(m.groups > 1 for m in convs):
        return False, "bf16 slows down depthwise and grouped convolutions on a CPU"
    widest = max(m.out_channels for m in convs)
    if widest < BF16_MIN_CHANNELS:
        return False, (
            f"bf16 does not speed up convolutions this narrow on a CPU: {widest} channels at "
            f"most, under {BF16_MIN_CHANNELS}"
        )
    return True, ""


def _has_conv3d(model: Any) -> bool:
    from torch import nn

    return any(isinstance(m, nn.Conv3d) for m in model.modules())


def choose(
    requested: str | None,
    device_type: str,
    model: Any,
    input_dims: int,
    index: int | None = None,
    trained: str | None = None,
) -> Compute:
    """How ``model`` should compute on ``device_type`` when ``requested`` was asked.

    ``trained``: for eval and predict, the precision the checkpoint was
    trained in ("32" or "bf16"): auto follows it where this device computes
    it natively. None: training, where auto takes bf16 wherever it is native.
    """
    choice = normalise_choice(requested)
    layout = layout_for(model, input_dims)
    if choice == "32":
        return Compute("32", layout, "--precision 32")
    if choice == "16":
        check_fp16(device_type, training=trained is None)
        return Compute("16", layout, "--precision 16")
    native, why = native_bf16(device_type, index)
    if choice == "bf16":
        if device_type == "cpu" and trained is None and _has_conv3d(model):
            return Compute("bf16", layout, f"--precision bf16, but {UNRELIABLE_3D}", True)
        if native:
            return Compute("bf16", layout, f"--precision bf16; {why}")
        return Compute("bf16", layout, f"--precision bf16, emulated and slow: {why}", True)
    if trained == "32":
        return Compute("32", layout, "as the model was trained; --precision bf16 to change")
    if native and trained is None and device_type == "cpu":
        pays, slower = bf16_pays_on_cpu(model)
        if not pays:
            return Compute("32", layout, f"{slower}; --precision bf16 to use it")
    if native:
        what = "as the model was trained; " if trained else ""
        return Compute("bf16", layout, f"{what}{why}; --precision 32 for float32")
    if trained:
        return Compute("32", layout, f"the model was trained in bf16, but {why}")
    return Compute("32", layout, why)


def recorded_precision(meta: Any) -> str | None:
    """The precision a checkpoint says it was trained in ("32", "bf16" or "16"), else None.

    None where nothing usable is recorded: a checkpoint from before the
    record, torchvision's weights, or a value this version does not know.
    """
    options = getattr(meta, "options", None)
    record = options.get("compute") if isinstance(options, dict) else None
    value = record.get("precision") if isinstance(record, dict) else None
    text = ALIASES.get(value, value) if isinstance(value, str) else None
    return text if text in ("32", "bf16", "16") else None


def trained_precision(meta: Any) -> str:
    """The precision a checkpoint records it was trained in: "32" or "bf16" ("32" when unsaid).

    Checkpoints from before this record, torchvision's weights and values
    this version does not know all read as float32.
    """
    found = recorded_precision(meta)
    return found if found == "bf16" else "32"


def for_checkpoint(requested: str | None, device: str, model: Any, ckpt: Any) -> Compute:
    """How a loaded checkpoint's ``model`` computes on ``device`` ("cpu", "cuda:1")."""
    kind, _, index = str(device).partition(":")
    dims = 1 + len(ckpt.input.shape())
    return choose(
        requested,
        kind,
        model,
        dims,
        index=int(index) if index.isdigit() else None,
        trained=trained_precision(getattr(ckpt, "meta", None)),
    )
