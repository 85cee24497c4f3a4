"""The model registry and every registered architecture."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from cnnkit.errors import ModelError
from cnnkit.models import create_model, get_model_spec, list_models, register_model

TORCHVISION = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "mobilenet_v3_small": "mobilenet_v3_small",
    "efficientnet_b0": "efficientnet_b0",
    "r3d_18": "video.r3d_18",
    "mc3_18": "video.mc3_18",
    "r2plus1d_18": "video.r2plus1d_18",
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_architecture_of_the_issue() -> None:
    expected = {
        "lenet5", "lecun1989", "simplecnn", "dense", "resnet18", "resnet34", "resnet50",
        "mobilenet_v3_small", "efficientnet_b0", "c3d_small", "r3d_18", "mc3_18",
        "r2plus1d_18", "framewise2d",
    }  # fmt: skip
    assert expected <= set(list_models())
    assert list_models() == sorted(list_models())
    for name in list_models():
        spec = get_model_spec(name)
        assert len(spec.default_input_size) == spec.dims + 1
        assert spec.description


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name: str) -> None:
    torch.manual_seed(0)
    spec = get_model_spec(name)
    size = spec.default_input_size  # 3x224x224 and 3x16x112x112 too: ~20 s for all on 2 cores
    model = create_model(name, num_classes=7, input_size=size).train()
    x = torch.randn(2, *size)  # batch of 2: batch norm in training mode needs more than 1 value
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_param_counts_equal_torchvision(name: str) -> None:
    import torchvision

    builder = torchvision.models
    for part in TORCHVISION[name].split("."):
        builder = getattr(builder, part)
    reference = builder(weights=None, num_classes=7)
    assert n_params(create_model(name, num_classes=7, in_channels=3)) == n_params(reference)
    # One input channel changes only the first convolution's weights.
    first = next(m for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    removed = first.weight[:, 1:].numel()
    assert (
        n_params(create_model(name, num_classes=7, in_channels=1)) == n_params(reference) - removed
    )


def test_one_channel_video_model_runs() -> None:
    model = create_model("r3d_18", num_classes=2, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 4, 16, 16)).shape == (1, 2)


def test_lenet5_has_61706_parameters() -> None:
    assert n_params(create_model("lenet5")) == 61_706


def test_lecun1989_has_the_papers_9760_free_parameters() -> None:
    model = create_model("lecun1989")
    per_layer = {name: n_params(getattr(model, name)) for name in ("h1", "h2", "h3", "out")}
    # Paper: H1 12x25 shared weights + 768 unit biases; H2 12x8x25 + 192; H3 192x30 + 30.
    assert per_layer == {"h1": 1_068, "h2": 2_592, "h3": 5_790, "out": 310}
    assert n_params(model) == 9_760


def test_lecun1989_h2_maps_see_only_their_8_of_12_h1_maps() -> None:
    torch.manual_seed(0)
    h2 = create_model("lecun1989").h2
    x = torch.randn(1, 12, 8, 8)
    changed = x.clone()
    changed[:, 10] += 1.0  # H1 map 10 feeds H2 maps 4-7 and 8-11, not 0-3
    with torch.no_grad():
        diff = (h2(changed) - h2(x)).abs().amax(dim=(0, 2, 3))
    assert torch.all(diff[:4] == 0)
    assert torch.all(diff[4:] > 0)


def test_framewise2d_is_blind_to_frame_order_and_c3d_is_not() -> None:
    torch.manual_seed(0)
    clip = torch.randn(1, 3, 8, 32, 32)
    reversed_clip = clip.flip(2)
    for name, blind in (("framewise2d", True), ("c3d_small", False)):
        model = create_model(name, num_classes=4).eval()
        with torch.no_grad():
            same = torch.allclose(model(clip), model(reversed_clip), atol=1e-5)
        assert same is blind, name


@pytest.mark.parametrize("name", ["simplecnn", "lenet5"])
def test_2d_models_take_other_image_sizes(name: str) -> None:
    model = create_model(name, num_classes=3, in_channels=3).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_size_bound_models_follow_input_size() -> None:
    model = create_model("dense", input_size=(3, 8, 8)).eval()
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 10)
    model = create_model("lecun1989", input_size=(1, 28, 28)).eval()
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_unknown_model_suggests_close_match() -> None:
    with pytest.raises(ModelError) as info:
        create_model("resnet19")
    assert "resnet19" in info.value.message
    assert "resnet18" in info.value.hint


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"in_channels": -1}, "in_channels"),
        ({"widths": 3}, "widths"),
        ({"input_size": (1, 28)}, "input size"),
    ],
)
def test_bad_model_arguments_raise_model_error(kwargs: dict, text: str) -> None:
    with pytest.raises(ModelError, match=text):
        create_model("lenet5", **kwargs)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", dims=2, default_input_size=(1, 28, 28), description="x")(
            lambda num_classes, in_channels: None
        )


def test_importing_models_does_not_import_torchvision() -> None:
    code = (
        "import sys, cnnkit.models as m; assert 'resnet18' in m.list_models(); "
        "m.create_model('lenet5'); print('torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
