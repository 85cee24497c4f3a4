"""Model summaries (MACs, receptive fields), image/video facts, feature-map and kernel grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnkit.errors import InputError, ModelError
from cnnkit.io.image import read_image
from cnnkit.models import create_model
from cnnkit.summary import (
    channel_stats,
    feature_map_grids,
    kernel_grid,
    parse_input_size,
    summarize_image,
    summarize_model,
    summarize_video,
)
from cnnkit.summary import media as summary_media
from tests.helpers import make_image, make_video


def by_name(summary: dict) -> dict[str, dict]:
    return {layer["name"]: layer for layer in summary["layers"]}


def test_lenet5_macs_shapes_and_receptive_fields_by_hand() -> None:
    s = summarize_model(create_model("lenet5"), (1, 28, 28), "lenet5")
    layers = by_name(s)
    # conv1: 5x5, pad 2, 1 -> 6 maps on 28x28: 28*28 outputs x 6 maps x 1*25 weights each.
    assert layers["features.0"]["macs"] == 28 * 28 * 6 * 1 * 25 == 117_600
    assert layers["features.0"]["output_shape"] == [1, 6, 28, 28]
    assert layers["features.0"]["receptive_field"] == 5  # one 5x5 kernel
    # pool1 2x2/2: rf 5 + (2-1)*1 = 6, jump becomes 2.
    assert layers["features.2"]["output_shape"] == [1, 6, 14, 14]
    assert layers["features.2"]["receptive_field"] == 6
    # conv2: 5x5 on 14x14 -> 10x10 x 16 maps, each output uses 6*25 weights; rf 6 + 4*2 = 14.
    assert layers["features.3"]["macs"] == 10 * 10 * 16 * 6 * 25 == 240_000
    assert layers["features.3"]["receptive_field"] == 14
    # pool2 2x2/2: rf 14 + 1*2 = 16: each of the 16x5x5 features sees a 16x16 patch.
    assert layers["features.5"]["output_shape"] == [1, 16, 5, 5]
    assert layers["features.5"]["receptive_field"] == 16
    # dense: 400*120 + 120*84 + 84*10
    assert [layers[f"classifier.{i}"]["macs"] for i in (1, 3, 5)] == [48_000, 10_080, 840]
    assert layers["classifier.1"]["receptive_field"] is None  # after flattening: whole input
    assert s["macs"] == 117_600 + 240_000 + 48_000 + 10_080 + 840 == 416_520
    assert s["receptive_field"] == 16
    assert s["params"] == s["trainable_params"] == 61_706
    assert sum(layer["params"] for layer in s["layers"]) == 61_706
    assert layers["features.0"]["kernel_size"] == 5 and layers["features.0"]["padding"] == 2


def test_c3d_small_macs_and_receptive_fields_by_hand() -> None:
    s = summarize_model(create_model("c3d_small"), (3, 8, 32, 32), "c3d_small")
    convs = [layer for layer in s["layers"] if layer["type"] == "Conv3d"]
    pools = [layer for layer in s["layers"] if layer["type"] == "MaxPool3d"]
    # conv1 3x3x3 pad 1, 3 -> 16 maps on 8x32x32: each output uses 3*27 weights.
    assert convs[0]["macs"] == 8 * 32 * 32 * 16 * 3 * 27 == 10_616_832
    # pool (1,2,2) -> 8x16x16; conv2 16 -> 32: each output uses 16*27 weights.
    assert convs[1]["macs"] == 8 * 16 * 16 * 32 * 16 * 27 == 28_311_552
    # pool (2,2,2) -> 4x8x8; conv3 32 -> 64: each output uses 32*27 weights.
    assert convs[2]["macs"] == 4 * 8 * 8 * 64 * 32 * 27 == 14_155_776
    assert s["macs"] == 10_616_832 + 28_311_552 + 14_155_776 + 64 * 10
    # Receptive fields [t, h, w]: conv 3 -> pool(1,2,2) t3 h4 (jump 1,2,2) -> conv t5 h8
    # -> pool(2,2,2) t6 h10 (jump 2,4,4) -> conv t6+2*2=10, h10+2*4=18.
    assert [c["receptive_field"] for c in convs] == [[3, 3, 3], [5, 8, 8], [10, 18, 18]]
    assert [p["receptive_field"] for p in pools] == [[3, 4, 4], [6, 10, 10]]
    assert pools[0]["kernel_size"] == [1, 2, 2]
    assert s["receptive_field"] == [10, 18, 18]
    assert convs[2]["output_shape"] == [1, 64, 4, 8, 8]


def test_framewise2d_sees_one_frame_at_a_time() -> None:
    s = summarize_model(create_model("framewise2d"), (3, 8, 32, 32), "framewise2d")
    assert s["receptive_field"] == [1, 18, 18]
    first = s["layers"][0]
    assert first["output_shape"] == [8, 16, 32, 32]  # the 8 frames are the conv's batch
    assert first["macs"] == 8 * 32 * 32 * 16 * 3 * 9


def test_lecun1989_macs_match_the_papers_connections() -> None:
    s = summarize_model(create_model("lecun1989"), (1, 16, 16), "lecun1989")
    layers = by_name(s)
    # The paper counts 19,968 and 38,592 connections including one bias per unit.
    assert layers["h1"]["macs"] + 12 * 8 * 8 == 19_968
    assert layers["h2"]["macs"] + 12 * 4 * 4 == 38_592
    assert layers["h2"]["output_shape"] == [1, 12, 4, 4]
    assert s["receptive_field"] == 13  # 5, then 5 + 4*2
    assert s["params"] == 9_760


@pytest.mark.parametrize(
    "name, weights",
    [("resnet18", "ResNet18_Weights"), ("mobilenet_v3_small", "MobileNet_V3_Small_Weights")],
)
def test_macs_agree_with_torchvision_published_ops(name: str, weights: str) -> None:
    import torchvision

    published = getattr(torchvision.models, weights).DEFAULT.meta["_ops"]  # G multiply-accumulates
    s = summarize_model(create_model(name, num_classes=1000), (3, 224, 224), name)
    assert s["macs"] / 1e9 == pytest.approx(published, abs=0.0005)
    if name == "resnet18":
        # The commonly quoted theoretical value: the main path, shortcuts being smaller.
        assert s["receptive_field"] == 435


def test_non_in_place_residual_uses_the_larger_field() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=1)
            self.b = nn.Conv2d(1, 1, 3, padding=1)
            self.shortcut = nn.Conv2d(1, 1, 1)
            self.after = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.after(self.b(self.a(x)) + self.shortcut(x))

    s = summarize_model(Block(), (1, 16, 16), "block")
    assert by_name(s)["shortcut"]["receptive_field"] == 1
    assert by_name(s)["after"]["receptive_field"] == 7  # 3 + 2 (main path) + 2


def test_grouped_and_rectangular_convolutions() -> None:
    model = nn.Sequential(nn.Conv2d(4, 8, (3, 5), padding=(1, 2), groups=2))
    s = summarize_model(model, (4, 10, 10), "m")
    assert s["layers"][0]["macs"] == 10 * 10 * 8 * (4 // 2) * 15
    assert s["receptive_field"] == [3, 5]
    assert s["layers"][0]["kernel_size"] == [3, 5]


def test_input_the_model_cannot_take_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="3x28x28"):
        summarize_model(create_model("lenet5"), (3, 28, 28), "lenet5")


@pytest.mark.parametrize(
    "text, size",
    [("1x28x28", (1, 28, 28)), ("3X16x112x112", (3, 16, 112, 112)), ("28x28", (28, 28))],
)
def test_parse_input_size(text: str, size: tuple) -> None:
    assert parse_input_size(text) == size


@pytest.mark.parametrize("text", ["", "28", "1x28xabc", "0x28x28", "1x2x3x4x5"])
def test_parse_input_size_rejects(text: str) -> None:
    with pytest.raises(InputError, match="input size"):
        parse_input_size(text)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_summarize_image(tmp_path, channels: int) -> None:
    pixels = make_image(tmp_path / "a.png", h=12, w=20, channels=channels, seed=3)
    facts = summarize_image(tmp_path / "a.png")
    flat = pixels.reshape(12 * 20, channels).astype(float)
    assert (facts["width"], facts["height"], facts["channels"]) == (20, 12, channels)
    assert facts["dtype"] == "uint8"
    assert (facts["min"], facts["max"]) == (int(pixels.min()), int(pixels.max()))
    assert facts["mean"] == pytest.approx(flat.mean(axis=0), abs=1e-3)
    assert facts["std"] == pytest.approx(flat.std(axis=0), abs=1e-3)
    block = facts["pixels"]
    y, x = block["y"], block["x"]
    assert np.array_equal(np.array(block["values"]), pixels[y : y + 8, x : x + 8])
    assert (y, x) == (2, 6)  # the 8x8 block around the centre


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_channel_stats_in_chunks_match_numpy(monkeypatch, dtype) -> None:
    rng = np.random.default_rng(4)
    image = (rng.random((37, 11, 3)) * (1 if dtype == np.float32 else 60000)).astype(dtype)
    monkeypatch.setattr(summary_media, "_STATS_CHUNK_VALUES", 50)  # 1 row a chunk: 37 chunks
    mean, std = channel_stats(image)
    flat = image.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(axis=0), rtol=1e-9)
    gray_mean, gray_std = channel_stats(image[:, :, 0])
    assert gray_mean == pytest.approx([flat[:, 0].mean()]) and len(gray_std) == 1


def test_summarize_video(tmp_path) -> None:
    make_video(tmp_path / "v.mp4", frames=6, h=16, w=24, fps=12.0)
    facts = summarize_video(tmp_path / "v.mp4")
    assert facts["kind"] == "video"
    assert (facts["frames"], facts["width"], facts["height"]) == (6, 24, 16)
    assert facts["fps"] == pytest.approx(12.0)
    assert facts["duration_s"] == pytest.approx(0.5)


def test_feature_map_grids_one_png_per_conv(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model("lenet5")
    written = feature_map_grids(model, torch.rand(1, 1, 28, 28), tmp_path / "maps")
    assert [w["layer"] for w in written] == ["features.0", "features.3"]
    assert [w["shape"] for w in written] == [[6, 28, 28], [16, 10, 10]]
    names = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert names == ["01-features.0.png", "02-features.3.png"]
    first = read_image(tmp_path / "maps" / "01-features.0.png")
    # 6 maps in a 3x2 grid, each 28x28 enlarged 3x (to >= 64 pixels), 2-pixel gaps.
    assert first.shape == (2 * (84 + 2) + 2, 3 * (84 + 2) + 2)
    assert first.std() > 20  # activations of a random image, not a blank picture


def test_feature_map_grids_for_a_clip_model(tmp_path) -> None:
    model = create_model("c3d_small")
    written = feature_map_grids(model, torch.rand(1, 3, 8, 32, 32), tmp_path)
    assert [w["shape"] for w in written] == [[16, 8, 32, 32], [32, 8, 16, 16], [64, 4, 8, 8]]
    grid = read_image(tmp_path / "01-features.0.0.png")
    assert grid.shape == (16 * (64 + 2) + 2, 8 * (64 + 2) + 2)  # a row per map, a column per frame


def test_kernel_grid_draws_each_filter_in_place(tmp_path) -> None:
    torch.manual_seed(1)
    model = create_model("lenet5")
    info = kernel_grid(model, tmp_path / "k.png")
    assert info == {
        "layer": "features.0",
        "path": str(tmp_path / "k.png"),
        "weight_shape": [6, 1, 5, 5],
    }
    grid = read_image(tmp_path / "k.png")
    scale = 13  # 5x5 kernels enlarged to >= 64 pixels
    assert grid.shape == (2 * (5 * scale + 2) + 2, 3 * (5 * scale + 2) + 2)
    weights = model.features[0].weight.detach()[:, 0]
    for i in range(6):
        r, c = divmod(i, 3)
        y, x = 2 + r * (5 * scale + 2), 2 + c * (5 * scale + 2)
        tile = grid[y : y + 5 * scale : scale, x : x + 5 * scale : scale]
        # brightest pixel = most positive weight; darkest = most negative
        assert np.unravel_index(tile.argmax(), tile.shape) == np.unravel_index(
            int(weights[i].argmax()), (5, 5)
        )
        assert np.unravel_index(tile.argmin(), tile.shape) == np.unravel_index(
            int(weights[i].argmin()), (5, 5)
        )


def test_kernel_grid_3d_has_a_row_per_time_slice(tmp_path) -> None:
    kernel_grid(create_model("c3d_small"), tmp_path / "k3.png")
    grid = read_image(tmp_path / "k3.png")
    tile = 3 * 22 + 2  # 3x3 slices enlarged 22x
    assert grid.shape == (3 * tile + 2, 16 * tile + 2, 3)  # colour: the filters read RGB


def test_kernel_grid_needs_a_convolution(tmp_path) -> None:
    with pytest.raises(ModelError, match="no convolution"):
        kernel_grid(create_model("dense"), tmp_path / "k.png")
