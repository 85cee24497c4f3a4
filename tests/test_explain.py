"""cnnkit explain: maps that point at the evidence, that depend on the learned weights, and
the faults users cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.checkpoint import build_model, load_checkpoint
from cnnkit.data.preprocess import normalize
from cnnkit.models import create_model
from cnnkit.saliency import default_layer, gradcam
from cnnkit.training.fit import fit
from tests.helpers import cnnkit_in_process, make_checkpoint, tiny_config, write_array

SIZE, OBJECT = 32, 10


def _draw(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple[int, int]]:
    """A 32×32 gray image of noise with one bright square or cross; its box (x0, y0, x1, y1),
    and the centre of a distractor.

    Every image also holds a bright bar as wide, away from the object: it says
    nothing of the class, so a map that only followed brightness or edges would
    point at it as often as at the object.
    """
    image = rng.integers(10, 70, (SIZE, SIZE), dtype=np.int64)
    while True:
        x0, y0 = (int(v) for v in rng.integers(0, SIZE - OBJECT, 2))
        cx, cy = (int(v) for v in rng.integers(5, SIZE - 5, 2))
        if abs(cx - (x0 + OBJECT // 2)) > 10 or abs(cy - (y0 + OBJECT // 2)) > 10:
            break
    image[cy - 1 : cy + 1, cx - 5 : cx + 5] = 230  # a bar: neither a square nor a cross
    box = image[y0 : y0 + OBJECT, x0 : x0 + OBJECT]
    if kind == "square":
        box[2:-2, 2:-2] = 230
    else:  # a cross: the two diagonals, two pixels thick
        for i in range(OBJECT):
            box[i, max(0, i - 1) : i + 1] = 230
            box[i, OBJECT - 1 - i : min(OBJECT, OBJECT + 1 - i)] = 230
    return image.astype(np.uint8), (x0, y0, x0 + OBJECT, y0 + OBJECT), (cx, cy)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """simplecnn trained to tell a square from a cross anywhere in the image; test images."""
    root = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    for kind in ("cross", "square"):
        (root / "data" / kind).mkdir(parents=True)
        for i in range(100):
            write_array(root / "data" / kind / f"{i}.png", _draw(kind, rng)[0])
    summary = fit(tiny_config(root, dataset=str(root / "data"), model="simplecnn", epochs=3,
                              img_size=None, limit=None, val_split=0.0, batch_size=32))  # fmt: skip
    boxes = {}
    (root / "test").mkdir()
    for i in range(20):
        kind = ("cross", "square")[i % 2]
        image, box, disc = _draw(kind, rng)
        path = root / "test" / f"{kind}-{i:02d}.png"
        write_array(path, image)
        boxes[str(path)] = (kind, box, disc)
    return {"ckpt": summary["best_checkpoint"], "boxes": boxes, "root": root}


def _records(monkeypatch, capsys, *args: str) -> list[dict]:
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "explain", *args, "--json")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "occlusion"])
def test_the_peak_falls_on_the_object(trained, tmp_path, monkeypatch, capsys, method) -> None:
    records = _records(monkeypatch, capsys, trained["ckpt"], str(trained["root"] / "test"),
                       "-o", str(tmp_path / "maps"), "--method", method)  # fmt: skip
    assert len(records) == 20
    right = sum(r["label"] == trained["boxes"][r["path"]][0] for r in records)
    assert right >= 18  # the model learned the task, so its evidence means something
    inside = nearer = 0
    for r in records:
        _, (x0, y0, x1, y1), (cx, cy) = trained["boxes"][r["path"]]
        x, y = r["peak"]
        inside += x0 - 1 <= x <= x1 and y0 - 1 <= y <= y1
        to_object = np.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2)
        nearer += to_object < np.hypot(x - cx, y - cy)
        assert Path(r["output"]).is_file() and r["method"] == method
    print(f"{method}: {right}/20 right, {inside}/20 peaks on the object, {nearer}/20 nearer it")
    assert inside >= 16, f"{inside} of 20 peaks on the object"  # at least 80%
    assert nearer >= 16, f"{nearer} of 20 peaks nearer the object than the bar"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel())).astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel())).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def test_maps_of_randomised_weights_differ(trained) -> None:
    """Adebayo et al. 2018: a saliency method must depend on the learned weights."""
    from cnnkit.io.image import read_image

    ckpt = load_checkpoint(trained["ckpt"])
    model = build_model(ckpt)
    torch.manual_seed(99)
    random_model = create_model("simplecnn", 2, 1, input_size=ckpt.input.shape()).eval()
    paths = sorted(trained["boxes"])[:10]
    batch = np.stack([read_image(p)[None] for p in paths])
    x = normalize(torch.from_numpy(batch), ckpt.input.mean, ckpt.input.std)
    layer = default_layer(model, ckpt.input.shape())
    learned, _ = gradcam(model, x, layer, None)
    randomised, _ = gradcam(random_model, x, layer, None)
    again, _ = gradcam(model, x, layer, None)
    same = np.mean([_spearman(a, b) for a, b in zip(learned, again, strict=True)])
    other = np.mean([_spearman(a, b) for a, b in zip(learned, randomised, strict=True)])
    assert same == pytest.approx(1.0)
    assert other < 0.5, f"rank correlation with a randomised model: {other:.2f}"


def test_overlay_is_enlarged_with_the_class_above_it(trained, tmp_path, monkeypatch,
                                                     capsys) -> None:  # fmt: skip
    from cnnkit.io.image import read_image

    big = np.kron(read_image(sorted(trained["boxes"])[0]), np.ones((3, 5), np.uint8))
    write_array(tmp_path / "big.png", big)
    [record] = _records(monkeypatch, capsys, trained["ckpt"], str(tmp_path / "big.png"), "-o",
                        str(tmp_path / "maps"), "--class", "square")  # fmt: skip
    overlay = read_image(record["output"])
    # 96×160 is enlarged 3 times (the shorter side reaches 224); the band is above it.
    band = overlay.shape[0] - 288
    assert overlay.shape[1:] == (480, 3) and band > 0
    assert record["label"] == "square" and 0 <= record["peak"][0] < 160  # the input's pixels
    enlarged = np.repeat(np.repeat(big, 3, axis=0), 3, axis=1)
    assert not np.array_equal(overlay[band:, :, 0], enlarged)  # the heat map is over it
    assert overlay[:band].min() < 100  # the class is written in the band


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--layer", "features.9"], "is not a layer of this model"),
        (["--layer", "featurs.0.0"], "did you mean 'features.0.0'"),
        (["--class", "circle"], "is not one of the model's classes"),
        (["--method", "lime"], "--method 'lime' is not known"),
        (["--method", "occlusion", "--layer", "features.0.0"], "--layer is for gradcam"),
        (["-o", "file.txt/maps"], "file.txt"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, monkeypatch, capsys, args, phrase) -> None:
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "simplecnn", ["cross", "square"], 1, (16, 16))
    write_array(tmp_path / "x.png", np.zeros((16, 16), np.uint8))
    (tmp_path / "file.txt").write_text("a file")
    monkeypatch.chdir(tmp_path)
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "explain", str(ckpt), "x.png", *args)
    assert code == 1 and phrase in err and "Traceback" not in err, err
    assert not (tmp_path / "explain").exists()


def test_occlusion_of_video_models_and_gradients_of_onnx_are_refused(tmp_path, monkeypatch,
                                                                      capsys) -> None:  # fmt: skip
    video = make_checkpoint(tmp_path / "v.ckpt", "c3d_small", ["a", "b"], 3, (16, 16), frames=4)
    write_array(tmp_path / "x.png", np.zeros((16, 16, 3), np.uint8))
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "explain", str(video),
                                     str(tmp_path / "x.png"), "--method", "occlusion")  # fmt: skip
    assert code == 1 and "--method occlusion draws maps for image models" in err
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "explain", str(video),
                                     str(tmp_path / "x.png"))  # fmt: skip
    assert code == 1 and "a video model explains videos, not images" in err
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "explain", str(tmp_path / "m.onnx"),
                                     str(tmp_path / "x.png"))  # fmt: skip
    assert code == 1 and "needs gradients, which an exported .onnx does not give" in err


@pytest.mark.parametrize(
    "model, shape, layer, mode",
    [
        ("simplecnn", (3, 32, 32), "features.4.2", "bilinear"),
        ("c3d_small", (3, 8, 32, 32), "features.2.2", "trilinear"),
    ],
)
def test_gradcam_agrees_with_captum(model: str, shape, layer: str, mode: str) -> None:
    """The same maps as captum's LayerGradCam, upsampled and scaled alike, in 2D and 3D."""
    from captum.attr import LayerAttribution, LayerGradCam

    from cnnkit.saliency import find_layer

    torch.manual_seed(0)
    net = create_model(model, 4, shape[0], input_size=shape).eval()
    x = torch.randn(3, *shape)
    ours, logits = gradcam(net, x, layer, None)
    target = torch.as_tensor(logits.argmax(1))
    theirs = LayerGradCam(net, find_layer(net, layer)).attribute(
        x, target=target, relu_attributions=True
    )
    theirs = LayerAttribution.interpolate(theirs, shape[1:], interpolate_mode=mode)
    theirs = theirs.detach()[:, 0].numpy()
    top = theirs.reshape(len(theirs), -1).max(axis=1)
    theirs = theirs / np.where(top > 0, top, 1).reshape(-1, *([1] * (theirs.ndim - 1)))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_top_k_explains_the_k_most_likely_classes(trained, tmp_path, monkeypatch, capsys) -> None:
    image = sorted(trained["boxes"])[0]
    records = _records(monkeypatch, capsys, trained["ckpt"], image, "-o", str(tmp_path),
                       "--top-k", "2")  # fmt: skip
    code, out, _ = cnnkit_in_process(monkeypatch, capsys, "predict", trained["ckpt"], image,
                                     "--format", "jsonl", "--top-k", "2")  # fmt: skip
    predicted = json.loads(out)["topk"]
    assert [r["rank"] for r in records] == [1, 2]
    assert [r["label"] for r in records] == [t["label"] for t in predicted]
    assert [r["score"] for r in records] == pytest.approx([t["score"] for t in predicted])
    assert len({r["output"] for r in records}) == 2
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "explain", trained["ckpt"], image,
                                     "--top-k", "2", "--class", "cross")  # fmt: skip
    assert code == 1 and "--class and --top-k both choose the classes" in err


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> str:
    """c3d_small trained on moving-shapes (about 10 s): 99% on its own test clips."""
    root = tmp_path_factory.mktemp("motion")
    summary = fit(tiny_config(root, dataset="moving-shapes", model="c3d_small", img_size=None,
                              limit=400, epochs=3, batch_size=32))  # fmt: skip
    assert summary["metrics"]["test_acc"] >= 0.9
    return summary["best_checkpoint"]


def test_a_3d_model_looks_at_the_mover_not_the_decoy(motion) -> None:
    """moving-shapes clips hold a mover and a decoy that look alike; only the motion tells
    them apart, so a 3D model's evidence must sit on the mover, in some frame of the clip."""
    from cnnkit.data.synthetic import make_moving_shapes

    ckpt = load_checkpoint(motion)
    model = build_model(ckpt)
    centres: list = []
    clips, labels = make_moving_shapes(20, 12345, frames=8, size=32, centres=centres)
    x = normalize(torch.from_numpy(clips), ckpt.input.mean, ckpt.input.std)
    maps, logits = gradcam(model, x, default_layer(model, ckpt.input.shape()), None)
    assert maps.shape == (20, 8, 32, 32)  # a map per frame: the time axis is kept
    assert (logits.argmax(1) == labels).sum() >= 18
    on_mover = nearer = 0
    for clip_map, track in zip(maps, centres, strict=True):
        t, y, x_ = np.unravel_index(np.argmax(clip_map), clip_map.shape)
        (mx, my), (dx, dy) = track[t]
        to_mover = np.hypot(x_ + 0.5 - mx, y + 0.5 - my)
        on_mover += to_mover <= 32 / 11 + 2  # within the blob's radius and 2 pixels
        nearer += to_mover < np.hypot(x_ + 0.5 - dx, y + 0.5 - dy)
    assert on_mover >= 16 and nearer >= 16, (on_mover, nearer)


def test_videos_get_an_mp4_of_maps_and_a_record_per_window(motion, tmp_path, monkeypatch,
                                                           capsys) -> None:  # fmt: skip
    import cv2

    from cnnkit.data.synthetic import make_moving_shapes
    from tests.helpers import write_video

    clips, _ = make_moving_shapes(1, 7, frames=20, size=64)
    write_video(tmp_path / "clip.mp4", clips[0].transpose(1, 2, 3, 0), fps=12.0)
    records = _records(monkeypatch, capsys, motion, str(tmp_path / "clip.mp4"), "-o",
                       str(tmp_path / "maps"))  # fmt: skip
    # The windows predict classifies: frames 16-19 fill no window (written without a map).
    assert [(r["start_frame"], r["end_frame"]) for r in records] == [(0, 7), (8, 15)]
    code, out, _ = cnnkit_in_process(monkeypatch, capsys, "predict", motion,
                                     str(tmp_path / "clip.mp4"), "--format", "jsonl")  # fmt: skip
    windows = [json.loads(line) for line in out.splitlines()][:-1]
    assert [(w["start_frame"], w["end_frame"], w["label"]) for w in windows] == [
        (r["start_frame"], r["end_frame"], r["label"]) for r in records
    ]
    for r in records:
        assert r["start_frame"] <= r["peak_frame"] <= r["end_frame"]
        assert 0 <= r["peak"][0] < 64 and 0 <= r["peak"][1] < 64
    video = cv2.VideoCapture(records[0]["output"])
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    # Drawn as an image's overlay: 4 times larger (224 pixels at least), the label above.
    assert video.get(cv2.CAP_PROP_FRAME_WIDTH) == 256
    assert video.get(cv2.CAP_PROP_FRAME_HEIGHT) > 256
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)


def test_a_2d_model_on_a_video_explains_every_nth_frame(trained, tmp_path, monkeypatch,
                                                        capsys) -> None:  # fmt: skip
    import cv2

    from tests.helpers import make_video

    make_video(tmp_path / "clip.mp4", frames=10, h=32, w=32, fps=10.0)
    records = _records(monkeypatch, capsys, trained["ckpt"], str(tmp_path / "clip.mp4"), "-o",
                       str(tmp_path / "maps"), "--stride", "3")  # fmt: skip
    assert [r["start_frame"] for r in records] == [0, 3, 6, 9]
    assert all(r["peak_frame"] == r["start_frame"] == r["end_frame"] for r in records)
    video = cv2.VideoCapture(records[0]["output"])
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(10 / 3, abs=0.01)
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "explain", trained["ckpt"],
                                     str(tmp_path / "clip.mp4"), "--top-k", "2")  # fmt: skip
    assert code == 1 and "--top-k is for images" in err


def test_an_image_on_stdin_and_paths_on_stdin(trained, tmp_path, monkeypatch, capsys) -> None:
    import io

    image = sorted(trained["boxes"])[0]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(Path(image).read_bytes())))
    [record] = _records(monkeypatch, capsys, trained["ckpt"], "-", "-o", str(tmp_path / "a"))
    assert record["path"] == "-" and Path(record["output"]).is_file()
    assert Path(record["output"]).name == "stdin-gradcam.png"  # not "--gradcam.png"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((image + "\n").encode())))
    [again] = _records(monkeypatch, capsys, trained["ckpt"], "-", "-o", str(tmp_path / "b"))
    assert again["path"] == image and again["peak"] == record["peak"]


def test_a_module_run_twice_pairs_each_output_with_its_own_gradient() -> None:
    """A ResNet block calls its ReLU twice; the map of that ReLU is the block's output's."""
    torch.manual_seed(0)
    net = create_model("resnet18", 5, 3, input_size=(3, 64, 64)).eval()
    x = torch.randn(2, 3, 64, 64)
    relu, _ = gradcam(net, x, "layer3.1.relu", None)
    block, _ = gradcam(net, x, "layer3.1", None)
    np.testing.assert_allclose(relu, block, atol=1e-6)
    assert default_layer(net, (3, 64, 64)) == "layer4.1.relu"


def test_a_failed_video_names_no_file(motion, tmp_path, monkeypatch, capsys) -> None:
    import errno
    import os

    from cnnkit.io import video_writer as video
    from tests.helpers import make_video

    make_video(tmp_path / "clip.mp4", frames=20, h=32, w=32)
    calls = []

    def full_disk(self, frame):
        calls.append(1)
        if len(calls) > 9:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, frame)

    real = video.VideoWriter.write
    monkeypatch.setattr(video.VideoWriter, "write", full_disk)
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "explain", motion,
                                       str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "maps"),
                                       "--json")  # fmt: skip
    assert code == 1 and "No space left on device" in err
    assert [json.loads(line).get("error") for line in out.splitlines()] != []
    assert all("output" not in json.loads(line) for line in out.splitlines())
    assert list((tmp_path / "maps").iterdir()) == []


def test_maps_in_the_output_folder_are_not_explained_again(trained, tmp_path, monkeypatch,
                                                           capsys) -> None:  # fmt: skip
    import shutil

    folder = tmp_path / "pics"
    folder.mkdir()
    shutil.copy(sorted(trained["boxes"])[0], folder / "a.png")
    first = _records(monkeypatch, capsys, trained["ckpt"], str(folder), "-o", str(folder))
    again = _records(monkeypatch, capsys, trained["ckpt"], str(folder), "-o", str(folder))
    assert [r["path"] for r in first] == [r["path"] for r in again] == [str(folder / "a.png")]


def test_records_follow_the_input_order(trained, tmp_path, monkeypatch, capsys) -> None:
    from tests.helpers import make_video

    make_video(tmp_path / "clip.mp4", frames=2, h=32, w=32)
    first, last = sorted(trained["boxes"])[:2]
    records = _records(monkeypatch, capsys, trained["ckpt"], first, str(tmp_path / "clip.mp4"),
                       last, "-o", str(tmp_path / "maps"))  # fmt: skip
    assert [r["path"] for r in records] == [first, *[str(tmp_path / "clip.mp4")] * 2, last]


def test_alpha_sets_the_opacity_of_the_map(trained, tmp_path, monkeypatch, capsys) -> None:
    from cnnkit.io.image import read_image

    image = sorted(trained["boxes"])[0]
    [clear] = _records(monkeypatch, capsys, trained["ckpt"], image, "-o", str(tmp_path / "a"),
                       "--alpha", "0")  # fmt: skip
    [opaque] = _records(monkeypatch, capsys, trained["ckpt"], image, "-o", str(tmp_path / "b"),
                        "--alpha", "1")  # fmt: skip
    # The 32×32 image is drawn 7 times larger (nearest neighbours) under the label's band.
    gray = np.kron(read_image(image), np.ones((7, 7), np.uint8))[:, :, None].repeat(3, axis=2)
    below_band = slice(read_image(clear["output"]).shape[0] - 224, None)
    assert np.array_equal(read_image(clear["output"])[below_band], gray)
    assert not np.array_equal(read_image(opaque["output"])[below_band], gray)
