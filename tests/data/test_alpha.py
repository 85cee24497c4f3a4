"""Images drawn only in their alpha channel (a transparent canvas) are composited, not blanked.

Drawing apps and web canvases save strokes as RGB 0 everywhere with the ink
in alpha; dropping alpha turned every such image into the same black square,
and predict answered confidently for it. Other images with alpha keep having
it dropped. The colour composited over is the checkpoint's, set by
``--background`` at training, and may be changed at predict/eval/explain time.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from cnnkit.checkpoint import load_checkpoint
from cnnkit.data.preprocess import drawn_in_alpha, flatten_alpha, parse_colour, prepare_image
from cnnkit.errors import InputError
from cnnkit.saliency import overlay
from cnnkit.spec import WHITE, InputSpec, SchemaError
from cnnkit.training.fit import fit
from tests.helpers import cnnkit_in_process, make_checkpoint, tiny_config


def _stroke(h: int = 16, w: int = 16, offset: int = 0) -> np.ndarray:
    """A bar of ink (1.0) on nothing (0.0), the shape a digit stroke would have."""
    mask = np.zeros((h, w), np.float32)
    mask[3 : h - 3, 6 + offset : 9 + offset] = 1.0
    mask[3:5, 4 + offset : 11 + offset] = 128 / 255  # anti-aliased: half transparent
    return mask


def _canvas(mask: np.ndarray, ink: int = 0) -> np.ndarray:
    """RGBA as a canvas saves it: every pixel coloured ``ink``, the stroke in alpha."""
    out = np.full((*mask.shape, 4), ink, np.uint8)
    out[:, :, 3] = np.rint(mask * 255).astype(np.uint8)
    return out


def _opaque(mask: np.ndarray, ink: int, back: int) -> np.ndarray:
    """The same stroke drawn opaque: RGB, ink over background."""
    value = np.rint(mask * ink + (1 - mask) * back).astype(np.uint8)
    return np.repeat(value[:, :, None], 3, axis=2)


def _write(path, rgba_or_rgb: np.ndarray) -> str:
    code = cv2.COLOR_RGBA2BGRA if rgba_or_rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR
    cv2.imwrite(str(path), cv2.cvtColor(rgba_or_rgb, code))
    return str(path)


# ---------------------------------------------------------------------------
# the rule
# ---------------------------------------------------------------------------


def test_a_canvas_image_is_composited_over_white_by_default() -> None:
    mask = _stroke()
    flat, how = flatten_alpha(_canvas(mask))
    assert how == "composited"
    assert np.array_equal(flat, _opaque(mask, ink=0, back=255))


def test_the_background_is_a_choice() -> None:
    mask = _stroke()
    flat, _ = flatten_alpha(_canvas(mask, ink=255), background=(0, 0, 0))
    assert np.array_equal(flat, _opaque(mask, ink=255, back=0))


def test_gray_plus_alpha_and_16_bit_canvases_are_composited_alike() -> None:
    mask = _stroke()
    gray = _canvas(mask)[:, :, [0, 3]]  # H×W×2
    flat, how = flatten_alpha(gray)
    assert how == "composited" and np.array_equal(flat, _opaque(mask, 0, 255)[:, :, :1])
    deep = _canvas(mask).astype(np.uint16) * 257
    flat16, _ = flatten_alpha(deep, background=(0, 0, 0))
    assert flat16.dtype == np.uint16 and flat16.max() == 0
    flat16, _ = flatten_alpha(deep)
    assert np.array_equal((flat16 >> 8).astype(np.uint8), _opaque(mask, 0, 255))


def test_images_with_colour_keep_their_colour_and_lose_alpha() -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    assert not drawn_in_alpha(photo)
    flat, how = flatten_alpha(photo)
    assert how == "dropped" and np.array_equal(flat, photo[:, :, :3])
    opaque = np.zeros((8, 8, 4), np.uint8)
    opaque[:, :, 3] = 255  # constant colour, constant alpha: nothing drawn in alpha
    assert flatten_alpha(opaque)[1] == "dropped"
    assert flatten_alpha(photo[:, :, :3])[1] is None


@pytest.mark.parametrize(
    "text, colour",
    [("white", WHITE), ("Black", (0, 0, 0)), ("#ff8000", (255, 128, 0)), ("1, 2,3", (1, 2, 3))],
)
def test_parse_colour(text, colour) -> None:
    assert parse_colour(text) == colour


@pytest.mark.parametrize(
    "text",
    ["", "purple", "#ff80", "1,2", "1,2,256", "-1,0,0", "#gg0000", "# 1 2 3", "1_0,2,3",
     "+1,2,3", "#+1+2+3"],
)  # fmt: skip
def test_parse_colour_refuses_what_is_no_colour(text) -> None:
    with pytest.raises(InputError, match="is not a colour"):
        parse_colour(text)


def test_the_input_spec_records_its_background() -> None:
    spec = InputSpec(1, (16, 16), None, (0.5,), (0.25,), (0, 0, 0))
    assert InputSpec.from_dict(spec.to_dict()) == spec
    older = {k: v for k, v in spec.to_dict().items() if k != "background"}
    assert InputSpec.from_dict(older).background == WHITE  # files written before the field
    with pytest.raises(SchemaError, match="background"):
        InputSpec.from_dict({**spec.to_dict(), "background": [0, 0, 300]})


# ---------------------------------------------------------------------------
# predict, explain
# ---------------------------------------------------------------------------


def _scores(tmp_path, monkeypatch, capsys, *args: str) -> tuple[list[dict], str]:
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", *args, "--format", "jsonl")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def test_predict_sees_a_canvas_as_its_strokes_and_says_so_once(tmp_path, monkeypatch, capsys):
    ckpt = str(make_checkpoint(tmp_path / "m.ckpt", channels=3, seed=3))
    mask = _stroke()
    a = _write(tmp_path / "canvas-a.png", _canvas(mask))
    b = _write(tmp_path / "canvas-b.png", _canvas(_stroke(offset=3)))
    drawn = _write(tmp_path / "drawn.png", _opaque(mask, 0, 255))
    blank = _write(tmp_path / "blank.png", np.zeros((16, 16, 3), np.uint8))
    records, err = _scores(tmp_path, monkeypatch, capsys, ckpt, a, b, drawn, blank)
    assert records[0]["topk"] == records[2]["topk"]  # the canvas is what it shows
    assert records[0]["topk"] != records[3]["topk"]  # not the black square it used to be
    assert err.count("composited over white") == 1


def test_predict_background_option_changes_the_colour(tmp_path, monkeypatch, capsys):
    ckpt = str(make_checkpoint(tmp_path / "m.ckpt", channels=3, seed=3))
    mask = _stroke()
    canvas = _write(tmp_path / "canvas.png", _canvas(mask, ink=255))
    mnist_like = _write(tmp_path / "drawn.png", _opaque(mask, 255, 0))
    records, err = _scores(tmp_path, monkeypatch, capsys, ckpt, canvas, mnist_like,
                           "--background", "black")  # fmt: skip
    assert records[0]["topk"] == records[1]["topk"] and "over black" in err
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, canvas,
                                     "--background", "mauve")  # fmt: skip
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: --background 'mauve'")


def test_explain_overlays_show_the_composited_image() -> None:
    mask = _stroke()
    heat = np.zeros((4, 4), np.float32)
    got = overlay(_canvas(mask, ink=255), heat, 0.5, "x", background=(0, 0, 0))
    assert np.array_equal(got, overlay(_opaque(mask, 255, 0), heat, 0.5, "x"))


# ---------------------------------------------------------------------------
# training records it; eval and predict follow
# ---------------------------------------------------------------------------


def test_training_records_the_background_and_predict_follows_it(tmp_path, monkeypatch, capsys):
    for label, offset in (("left", 0), ("right", 4)):
        folder = tmp_path / "canvas" / label
        folder.mkdir(parents=True)
        for i in range(6):
            _write(folder / f"{i}.png", _canvas(_stroke(offset=offset + i % 2), ink=255))
    cfg = tiny_config(tmp_path, dataset=str(tmp_path / "canvas"), background="black", limit=None)
    summary = fit(cfg)
    ckpt = load_checkpoint(summary["best_checkpoint"])
    assert ckpt.input.background == (0, 0, 0)
    decisions = ckpt.meta.decisions
    assert "composited over black" in decisions["alpha_composited"]
    config = yaml.safe_load((tmp_path / "runs" / "train" / "config.yaml").read_text())
    assert config["background"] == "black" and "composited over black" in str(config)
    mask = _stroke()
    canvas = _write(tmp_path / "c.png", _canvas(mask, ink=255))
    drawn = _write(tmp_path / "d.png", _opaque(mask, 255, 0))
    records, err = _scores(tmp_path, monkeypatch, capsys, str(ckpt.path), canvas, drawn)
    assert records[0]["topk"] == records[1]["topk"] and "over black" in err
    prepared = prepare_image(_canvas(mask, ink=255), 1, (16, 16), ckpt.input.background)
    assert prepared.max() == 255 and prepared.min() == 0


def test_a_transparent_pixel_of_another_colour_does_not_hide_the_drawing() -> None:
    """Pixels at alpha 0 show nothing: their colour must not turn a drawing into a blank."""
    alpha = np.zeros((32, 32), np.uint8)
    cv2.circle(alpha, (16, 16), 10, 255, 3)
    image = np.zeros((32, 32, 4), np.uint8)
    image[:, :, 3] = alpha
    image[0, 0, :3] = (1, 0, 0)  # invisible: alpha 0 there
    assert drawn_in_alpha(image)
    flat, how = flatten_alpha(image)
    assert how == "composited" and flat[0, 0].tolist() == [255, 255, 255]
    assert flat[16, 6].tolist() == [0, 0, 0]  # the ink
    image[16, 6, :3] = (9, 9, 9)  # a visible pixel of another colour: a real picture
    assert not drawn_in_alpha(image)
