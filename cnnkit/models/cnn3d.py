"""3D networks for clips: input (N, C, T, H, W), output logits (N, num_classes).

``c3d_small`` convolves over time as well as space, so it can tell which way
something moves. ``framewise2d`` is the baseline that cannot: a 2D CNN applied
to every frame, its features averaged over time, so shuffling or reversing the
frames gives the same answer.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.models.layers import (
    OPS_2D,
    OPS_3D,
    ConvClassifier,
    adapt_in_channels,
    conv_stages,
)
from cnnkit.models.registration import register_model

_SMALL_CLIP = (3, 8, 32, 32)  # C, T, H, W: small enough to train on a CPU in minutes
_WIDTHS = [(16,), (32,), (64,)]


@register_model(
    "c3d_small",
    dims=3,
    default_input_size=_SMALL_CLIP,
    description="small C3D-style net: 3x3x3 conv-BN-ReLU 16-32-64, global pool: default for video",
)
def c3d_small(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.2) -> nn.Module:
    # The first pool keeps time (1x2x2) so early layers still see fine motion,
    # as in C3D; the second halves time and space.
    features = conv_stages(in_channels, _WIDTHS, [(1, 2, 2), (2, 2, 2), None], OPS_3D)
    return ConvClassifier(features, _WIDTHS[-1][-1], num_classes, OPS_3D, dropout)


class FrameWise2d(nn.Module):
    """A 2D CNN on each frame, features averaged over time, then a linear classifier.

    (N, C, T, H, W) -> frames (N*T, C, H, W) -> features (N*T, F) -> mean over T
    (N, F) -> logits (N, num_classes). Blind to frame order by construction.
    """

    def __init__(
        self, features: nn.Module, num_features: int, num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.features = features
        self.pool = OPS_2D.global_pool(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        per_frame = self.flatten(self.pool(self.features(frames)))  # (N*T, F)
        clip = per_frame.view(n, t, -1).mean(dim=1)  # temporal average pooling
        return self.classifier(self.dropout(clip))


@register_model(
    "framewise2d",
    dims=3,
    default_input_size=_SMALL_CLIP,
    description="2D CNN per frame + temporal average pooling: the order-blind baseline",
)
def framewise2d(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.2) -> nn.Module:
    # Same widths and spatial pooling as c3d_small, so the only difference is time.
    features = conv_stages(in_channels, _WIDTHS, [2, 2, None], OPS_2D)
    return FrameWise2d(features, _WIDTHS[-1][-1], num_classes, dropout)


def _torchvision_video(arch: str, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision.models.video as video  # here: keeps `import cnnkit.models` light

    model = getattr(video, arch)(weights=None, num_classes=num_classes)
    return adapt_in_channels(model, in_channels)


_KINETICS_CLIP = (3, 16, 112, 112)


@register_model(
    "r3d_18",
    dims=3,
    default_input_size=_KINETICS_CLIP,
    description="torchvision R3D-18",
    weights="R3D_18_Weights",
)
def r3d_18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_video("r3d_18", num_classes, in_channels)


@register_model(
    "mc3_18",
    dims=3,
    default_input_size=_KINETICS_CLIP,
    description="torchvision MC3-18",
    weights="MC3_18_Weights",
)
def mc3_18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_video("mc3_18", num_classes, in_channels)


@register_model(
    "r2plus1d_18",
    dims=3,
    default_input_size=_KINETICS_CLIP,
    description="torchvision R(2+1)D-18",
    weights="R2Plus1D_18_Weights",
)
def r2plus1d_18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_video("r2plus1d_18", num_classes, in_channels)
