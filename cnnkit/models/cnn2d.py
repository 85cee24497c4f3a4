"""2D networks for images: input (N, C, H, W), output logits (N, num_classes)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.models.layers import OPS_2D, ConvClassifier, adapt_in_channels, conv_stages
from cnnkit.models.registration import register_model


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """floor((n + 2p - k) / s) + 1, as nn.Conv2d computes it."""
    return (n + 2 * padding - kernel) // stride + 1


# ---------------------------------------------------------------------------
# LeNet-5 (LeCun et al. 1998), in its usual modern form
# ---------------------------------------------------------------------------


class LeNet5(nn.Module):
    """conv5x5(6) -> pool2 -> conv5x5(16) -> pool2 -> 120 -> 84 -> classes.

    The first convolution pads by 2, so a 28x28 MNIST digit plays the role of
    the paper's 32x32 input and 16x5x5 maps feed the first dense layer. ReLU and
    max pooling replace the paper's scaled tanh and trainable subsampling, as in
    most modern re-implementations. The adaptive pool is the identity at 28x28
    (5x5 in, 5x5 out) and lets other input sizes reach the same dense layers.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model(
    "lenet5",
    dims=2,
    default_input_size=(1, 28, 28),
    description="LeNet-5 (LeCun et al. 1998), modern form: 61,706 params for 10 classes",
)
def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return LeNet5(num_classes, in_channels)


# ---------------------------------------------------------------------------
# LeCun et al. 1989, "Backpropagation Applied to Handwritten Zip Code Recognition"
# ---------------------------------------------------------------------------


class UntiedBiasConv2d(nn.Conv2d):
    """A convolution with shared weights but one bias per output unit, as in the 1989 net.

    Input (N, C_in, H, W) -> (N, C_out, H', W'); ``unit_bias`` has shape (C_out, H', W').
    The border is padded with ``pad_value`` (the paper's background is -1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        in_size: tuple[int, int],
        pad_value: float = -1.0,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.pad_value = pad_value
        out_size = [conv_output_size(n, kernel_size, stride, padding) for n in in_size]
        self.unit_bias = nn.Parameter(torch.zeros(out_channels, *out_size))
        # The paper's initialisation: uniform in +-2.4 / sqrt(fan-in).
        bound = 2.4 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        return F.pad(x, (pw, pw, ph, ph), value=self.pad_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self._pad(x), self.weight, None, self.stride) + self.unit_bias


class PartialConv2d(UntiedBiasConv2d):
    """An untied-bias convolution whose output maps each see only some input maps.

    ``connections[g]`` lists the input maps seen by group g of output maps (the
    output maps are split evenly and in order between the groups). The weight has
    shape (C_out, len(connections[g]), k, k): only the connections that exist have
    parameters, so the parameter count is the paper's "free parameters".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        in_size: tuple[int, int],
        connections: Sequence[Sequence[int]],
        pad_value: float = -1.0,
    ) -> None:
        fan_in = {len(c) for c in connections}
        if len(fan_in) != 1 or out_channels % len(connections):
            raise ValueError("connections must be equal-sized groups dividing out_channels")
        super().__init__(
            fan_in.pop(), out_channels, kernel_size, stride, padding, in_size, pad_value
        )
        self.in_channels = in_channels  # the maps it reads from, not the weight's second axis
        self.register_buffer("connections", torch.tensor(connections), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pad(x)
        per_group = self.out_channels // len(self.connections)
        outs = [
            F.conv2d(
                x.index_select(1, inputs),
                self.weight[g * per_group : (g + 1) * per_group],
                None,
                self.stride,
            )
            for g, inputs in enumerate(self.connections)
        ]
        return torch.cat(outs, dim=1) + self.unit_bias


# H2's 8-of-12 connection table, as in karpathy/lecun1989-repro: maps 0-3 read H1
# maps 0-7, maps 4-7 read 4-11, maps 8-11 read 0-3 and 8-11 (the paper does not
# print its table; it says each H2 map combines 8 of the 12 H1 maps).
LECUN1989_H2_CONNECTIONS = (
    tuple(range(0, 8)),
    tuple(range(4, 12)),
    (*range(0, 4), *range(8, 12)),
)


class LeCun1989(nn.Module):
    """The 1989 zip-code net: 16x16 -> H1 12x8x8 -> H2 12x4x4 -> H3 30 -> classes.

    9,760 free parameters for 10 classes, as in the paper: H1 1,068 (12x25 shared
    weights + 768 unit biases), H2 2,592 (12x8x25 + 192), H3 5,790, output 310.
    tanh throughout, except that the output gives raw logits: the paper trained
    tanh outputs towards +-1 with squared error, cnnkit trains with cross-entropy.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, input_size: Sequence[int] = (1, 16, 16)
    ) -> None:
        super().__init__()
        h, w = int(input_size[-2]), int(input_size[-1])
        self.h1 = UntiedBiasConv2d(in_channels, 12, 5, stride=2, padding=2, in_size=(h, w))
        h1_size = tuple(conv_output_size(n, 5, 2, 2) for n in (h, w))
        self.act1 = nn.Tanh()
        self.h2 = PartialConv2d(12, 12, 5, 2, 2, h1_size, LECUN1989_H2_CONNECTIONS)
        h2_size = [conv_output_size(n, 5, 2, 2) for n in h1_size]
        self.act2 = nn.Tanh()
        self.flatten = nn.Flatten(1)
        self.h3 = nn.Linear(12 * h2_size[0] * h2_size[1], 30)
        self.act3 = nn.Tanh()
        self.out = nn.Linear(30, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.h2(self.act1(self.h1(x))))
        return self.out(self.act3(self.h3(self.flatten(x))))


@register_model(
    "lecun1989",
    dims=2,
    default_input_size=(1, 16, 16),
    description="LeCun et al. 1989 zip-code net: 8-of-12 partial connections, 9,760 params",
)
def lecun1989(
    num_classes: int = 10, in_channels: int = 1, input_size: Sequence[int] = (1, 16, 16)
) -> nn.Module:
    return LeCun1989(num_classes, in_channels, input_size)


# ---------------------------------------------------------------------------
# A dense network: the baseline that shows what weight sharing saves
# ---------------------------------------------------------------------------


@register_model(
    "dense",
    dims=2,
    default_input_size=(1, 28, 28),
    description="fully connected 784-300-100-10 MLP (LeCun et al. 1998's baseline), no convolution",
)
def dense(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: Sequence[int] = (1, 28, 28),
    hidden: Sequence[int] = (300, 100),
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten(1)]
    width = math.prod(int(v) for v in input_size)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------
# simplecnn: the default 2D training model
# ---------------------------------------------------------------------------


@register_model(
    "simplecnn",
    dims=2,
    default_input_size=(1, 28, 28),
    description="small conv-BN-ReLU net (32-32 | 64-64 | 128, global pool): default for images",
)
def simplecnn(num_classes: int = 10, in_channels: int = 1, dropout: float = 0.3) -> nn.Module:
    # Two pools then a 128-wide stage: 28 -> 14 -> 7 before global pooling, so
    # the last features see 18x18 pixels of a digit; any input >= 4x4 works.
    features = conv_stages(in_channels, [(32, 32), (64, 64), (128,)], [2, 2, None], OPS_2D)
    return ConvClassifier(features, 128, num_classes, OPS_2D, dropout)


# ---------------------------------------------------------------------------
# torchvision models, random weights (--pretrained: cnnkit.models.pretrained loads them)
# ---------------------------------------------------------------------------


def _torchvision_2d(arch: str, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision  # here, not at module level: keeps `import cnnkit.models` light

    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    return adapt_in_channels(model, in_channels)


_DEFAULT_IMAGENET = (3, 224, 224)


@register_model(
    "resnet18",
    dims=2,
    default_input_size=_DEFAULT_IMAGENET,
    description="torchvision ResNet-18",
    weights="ResNet18_Weights",
)
def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_2d("resnet18", num_classes, in_channels)


@register_model(
    "resnet34",
    dims=2,
    default_input_size=_DEFAULT_IMAGENET,
    description="torchvision ResNet-34",
    weights="ResNet34_Weights",
)
def resnet34(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_2d("resnet34", num_classes, in_channels)


@register_model(
    "resnet50",
    dims=2,
    default_input_size=_DEFAULT_IMAGENET,
    description="torchvision ResNet-50",
    weights="ResNet50_Weights",
)
def resnet50(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_2d("resnet50", num_classes, in_channels)


@register_model(
    "mobilenet_v3_small",
    dims=2,
    default_input_size=_DEFAULT_IMAGENET,
    description="torchvision MobileNetV3-Small",
    weights="MobileNet_V3_Small_Weights",
)
def mobilenet_v3_small(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_2d("mobilenet_v3_small", num_classes, in_channels)


@register_model(
    "mobilenet_v3_large",
    dims=2,
    default_input_size=_DEFAULT_IMAGENET,
    description="torchvision MobileNetV3-Large",
    weights="MobileNet_V3_Large_Weights",
)
def mobilenet_v3_large(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_2d("mobilenet_v3_large", num_classes, in_channels)


@register_model(
    "efficientnet_b0",
    dims=2,
    default_input_size=_DEFAULT_IMAGENET,
    description="torchvision EfficientNet-B0",
    weights="EfficientNet_B0_Weights",
)
def efficientnet_b0(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return _torchvision_2d("efficientnet_b0", num_classes, in_channels)
