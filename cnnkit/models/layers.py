"""Building blocks shared by the 2D and 3D networks.

The dimensionality is injected, not copied: a block takes a ``ConvOps`` that
says which convolution, batch norm and pooling classes to use, so
``simplecnn`` (2D) and ``c3d_small`` (3D) are built by the same code, the way
torchvision's video ResNet passes ``Conv3DSimple`` or ``Conv2Plus1D`` into
unchanged blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ConvOps:
    """The layer classes for one dimensionality."""

    dims: int
    conv: type[nn.Module]
    batch_norm: type[nn.Module]
    max_pool: type[nn.Module]
    global_pool: type[nn.Module]  # adaptive average pooling to 1 per axis


OPS_2D = ConvOps(2, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
OPS_3D = ConvOps(3, nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d)


def conv_bn_act(
    in_channels: int, out_channels: int, ops: ConvOps, kernel_size: int = 3, stride: int = 1
) -> nn.Sequential:
    """conv (same padding, no bias: BN has one) -> batch norm -> ReLU.

    Shapes: (N, in, *S) -> (N, out, *S / stride) with S the 2 or 3 spatial axes.
    """
    return nn.Sequential(
        ops.conv(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        ),
        ops.batch_norm(out_channels),
        nn.ReLU(inplace=True),
    )


def conv_stages(
    in_channels: int,
    widths: Sequence[Sequence[int]],
    pools: Sequence[int | tuple[int, ...] | None],
    ops: ConvOps,
) -> nn.Sequential:
    """Stages of conv-BN-ReLU blocks, each stage followed by its max pool (None: no pool).

    ``widths[i]`` lists the output channels of stage i's blocks.
    """
    if len(widths) != len(pools):
        raise ValueError("one pool entry per stage")
    layers: list[nn.Module] = []
    channels = in_channels
    for stage_widths, pool in zip(widths, pools, strict=True):
        for width in stage_widths:
            layers.append(conv_bn_act(channels, width, ops))
            channels = width
        if pool is not None:
            layers.append(ops.max_pool(pool))
    return nn.Sequential(*layers)


class ConvClassifier(nn.Module):
    """features -> global average pool -> dropout -> linear.

    Input (N, C, H, W) or (N, C, T, H, W) per ``ops``; output logits (N, num_classes).
    The global pool makes the head independent of the input size.
    """

    def __init__(
        self,
        features: nn.Module,
        num_features: int,
        num_classes: int,
        ops: ConvOps,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = features
        self.pool = ops.global_pool(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x):
        x = self.flatten(self.pool(self.features(x)))
        return self.classifier(self.dropout(x))


def first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Module]:
    """(parent, attribute name, conv) of the first Conv2d/Conv3d in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            parent_name, _, attr = name.rpartition(".")
            return model.get_submodule(parent_name), attr, module
    raise ValueError(f"{type(model).__name__} has no convolution")


def adapt_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first convolution when ``in_channels`` differs from what it takes.

    Only the input channel count changes (kernel, stride, padding, bias stay), so
    a 1-channel ResNet differs from torchvision's by exactly the removed weights.
    """
    parent, attr, conv = first_conv(model)
    if conv.in_channels == in_channels:
        return model
    new = type(conv)(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    setattr(parent, attr, new)
    return model
