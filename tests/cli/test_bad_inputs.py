"""Every bad input is refused at the door: one ``error:`` line (exit 1) or a usage error (exit 2).

One table across the five commands, each row run through the console-script
entry (``cnnkit.cli.main``, in process: the same single error path as the
installed ``cnnkit``) on tiny files. Nothing here may print a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit import cli
from cnnkit.models import create_model
from tests.helpers import make_checkpoint, make_image, make_image_folder, make_video

TRAIN = ["-q", "--limit", "4", "--epochs", "1", "--out", "runs", "--device", "cpu"]

# (command line, exit status, phrase the message must contain)
CASES: list[tuple[str, int, str]] = [
    # convolve
    ("convolve x.png -k sobell", 1, "did you mean 'sobel'"),
    ("convolve x.png -k 1,nan;0,1", 1, "contains 'nan' (not finite)"),
    ("convolve x.png -k 1,inf;0,1", 1, "contains 'inf' (not finite)"),
    ("convolve x.png -k nan.npy", 1, "NaN or infinite"),
    ("convolve x.png -k 1,2;3", 1, "is ragged"),
    ("convolve x.png -k ''", 1, "empty kernel spec"),
    ("convolve x.png -k gaussian:7,-1", 1, "sigma must be >= 0"),
    ("convolve x.png -k box:100001", 1, "too large"),
    ("convolve x.png -k box --stride 0", 1, "stride must be >= 1"),
    ("convolve x.png -k box --dilation 0", 1, "dilation must be >= 1"),
    ("convolve x.png -k box --padding -1", 1, "padding must be >= 0"),
    ("convolve x.png -k box --padding-mode mirror", 2, "'--padding-mode'"),
    ("convolve nope.png -k box", 1, "no such file: nope.png"),
    ("convolve bad.png -k box", 1, "bad.png is not a readable image"),
    ("convolve x.png -k box -o nodir/out.png", 1, "folder nodir does not exist"),
    # train (the rest of each line is TRAIN: tiny, quiet, CPU)
    ("train --epochs 0", 2, "'--epochs'"),
    ("train --batch-size 0", 2, "'--batch-size'"),
    ("train --lr -1", 2, "'--lr'"),
    ("train --img-size 2", 2, "'--img-size'"),
    ("train --frames 0", 2, "'--frames'"),
    ("train --val-split 1.5", 2, "1.5 must be at least 0 and below 1"),
    ("train --val-split 1", 2, "1 must be at least 0 and below 1"),
    ("train --val-split -0.1", 2, "-0.1 must be at least 0 and below 1"),
    ("train --out x.png", 1, "--out x.png: x.png is a file, not a folder"),
    ("train --out x.png/runs", 1, "--out x.png/runs: x.png is a file, not a folder"),
    ("train --img-size 4 --model lenet5", 1, "needs inputs of at least 12×12 pixels, got 4×4"),
    ("train --dataset moving-shapes --frames 1", 1, "needs clips of at least 2 frames"),
    ("train --dataset moving-shapes --img-size 6 --model framewise2d", 1, "at least 8×8"),
    ("train --flip --no-augment", 1, "--flip is part of augmentation"),
    ("train --optimizer lamb", 2, "'--optimizer'"),
    ("train --dataset mnistt", 1, "did you mean 'mnist'"),
    ("train --model simplecn", 1, "did you mean 'simplecnn'"),
    ("train --device cuda", 1, "sees no CUDA GPU"),
    ("train --device cpuu", 1, "did you mean 'cpu'"),
    ("train --dataset empty", 1, "no class folders found in empty"),
    ("train --dataset textonly", 1, "no images or videos found"),
    ("train --dataset noreadable", 1, "no readable train samples"),
    ("train --model c3d_small", 1, "is 3D but the dataset holds images"),
    ("train --lr 0", 2, "0 must be above 0"),
    ("train --lr nan", 2, "nan is not a finite number"),
    ("train --lr inf", 2, "inf is not a finite number"),
    ("train --weight-decay nan", 2, "nan is not a finite number"),
    ("train --weight-decay -0.1", 2, "'--weight-decay'"),
    ("train --img-size 5000", 2, "'--img-size'"),
    ("train --label-smoothing 0.9", 2, "'--label-smoothing'"),
    ("train --label-smoothing nan", 2, "nan is not a finite number"),
    ("train --val-split nan", 2, "nan is not a finite number"),
    ("train --patience -1", 2, "'--patience'"),
    ("train --devices 0", 1, "--devices must be at least 1"),
    ("train --devices two", 1, "--devices 'two' is not a count or a list"),
    ("train --resume garbage.ckpt", 1, "is not a cnnkit checkpoint or needs code to load"),
    ("train --pretrained", 1, "has no pretrained weights (hint: models with weights: "),
    ("train --model resnet18 --pretrained", 1, "cannot fetch the pretrained weights of resnet18"),
    ("train --freeze", 1, "--freeze trains only the head of loaded weights"),
    ("train --pretrained --weights m.ckpt", 1, "--pretrained and --weights both choose"),
    ("train --weights missing.pth", 1, "weights file missing.pth does not exist"),
    ("train --weights garbage.ckpt", 1, "is not a weights file cnnkit can read without running"),
    ("train --weights empty", 1, "--weights empty is a folder"),
    ("train --weights sd.pth --model lenet5 --freeze", 1, "does not fit model 'lenet5'"),
    ("train --weights bad.safetensors", 1, "is not a readable .safetensors file"),
    ("train --weights tensor.pth", 1, "holds no state dict"),
    ("train --model lenet5 --weights sd.pth", 1, "does not fit model 'lenet5': missing"),
    ("train --weights sd.pth", 1, "is a plain state dict: it does not say which model"),
    ("train --weights m.ckpt --model simplecnn", 1, "holds model 'lenet5', not 'simplecnn'"),
    ("train --resume m.ckpt --weights m.ckpt", 1, "--resume continues from its checkpoint's"),
    # eval
    ("eval m.ckpt --split bogus", 2, "'--split'"),
    ("eval m.ckpt --top-k 0", 2, "'--top-k'"),
    ("eval m.ckpt --clips 0", 2, "'--clips'"),
    ("eval m.ckpt --confusion out.txt", 2, "ending in .png or .csv"),
    ("eval missing.ckpt", 1, "does not exist"),
    ("eval -q m.ckpt --dataset other", 1, "does not have the checkpoint's classes"),
    ("eval -q m.ckpt --dataset other --split test", 1, "has no train/ val/ test/ subfolders"),
    ("eval -q m.ckpt --dataset shapez", 1, "did you mean 'shapes'"),
    ("eval -q m.ckpt --dataset empty", 1, "no class folders found"),
    ("eval -q m.ckpt --device cuda", 1, "sees no CUDA GPU"),
    ("eval -q garbage.ckpt", 1, "is not a cnnkit checkpoint or needs code to load"),
    # predict
    ("predict m.ckpt x.png --top-k 0", 2, "'--top-k'"),
    ("predict m.ckpt x.png --window 0", 2, "'--window'"),
    ("predict m.ckpt x.png --stride 0", 2, "'--stride'"),
    ("predict m.ckpt x.png --batch-size 0", 2, "'--batch-size'"),
    ("predict m.ckpt x.png --format xml", 2, "'--format'"),
    ("predict -q m.ckpt nope.png", 1, "nope.png: no such file"),
    ("predict -q m.ckpt bad.png", 1, "is not a readable image"),
    ("predict -q m.ckpt empty", 1, "no image or video files in folder"),
    ("predict -q m.ckpt *.jpg", 1, "no files match"),
    ("predict -q m.ckpt x.png --device gpu", 1, "unknown device 'gpu'"),
    ("predict -q m.ckpt x.png --device cuda:1", 1, "sees no CUDA GPU"),
    ("predict -q garbage.ckpt x.png", 1, "is not a cnnkit checkpoint"),
    ("predict -q lenet5:imagenet x.png", 1, "model 'lenet5' has no pretrained weights"),
    ("predict -q resnet18:cifar10 x.png", 1, "resnet18's weights are imagenet weights"),
    ("predict -q resnet18:imagenet x.png", 1, "cannot fetch the pretrained weights"),
    ("predict -q nosuch:imagenet x.png", 1, "unknown model 'nosuch'"),
    ("predict -q . x.png", 1, "is a folder, not a checkpoint"),
    # inspect
    ("inspect lenet", 1, "did you mean 'lenet5'"),
    ("inspect mnistt", 1, "did you mean 'mnist'"),
    ("inspect lenet5 --input-size abc", 1, "cannot read input size 'abc'"),
    ("inspect lenet5 --input-size 0x28x28", 1, "cannot read input size"),
    ("inspect lenet5 --input-size 100000x100000x100000", 1, "too large to inspect"),
    ("inspect lenet5 --input-size 1x2x2", 1, "cannot take an input of size 1x2x2"),
    ("inspect lenet5 --num-classes 0", 2, "'--num-classes'"),
    ("inspect lenet5 --feature-maps maps", 1, "--feature-maps and --image go together"),
    ("inspect v.mp4 --num-classes 3", 1, "applies to a model name"),
    ("inspect empty", 1, "no class folders found"),
    ("inspect bad.png", 1, "bad.png is not a readable image"),
    ("inspect garbage.ckpt", 1, "is not a cnnkit checkpoint"),
    ("inspect r3d_18:imagenet", 1, "r3d_18's weights are kinetics400 weights"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Tiny inputs, good and bad, shared by every row."""
    root = tmp_path_factory.mktemp("bad-inputs")
    make_checkpoint(root / "m.ckpt", "lenet5", ["a", "b", "c"], 1, (16, 16))
    make_image(root / "x.png", 16, 16, channels=1)
    make_video(root / "v.mp4", frames=2, h=16, w=16)
    (root / "bad.png").write_bytes(b"not a png")
    (root / "garbage.ckpt").write_bytes(b"\x80\x02junk")
    (root / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    torch.save(torch.zeros(3), root / "tensor.pth")
    torch.save(create_model("simplecnn").state_dict(), root / "sd.pth")
    (root / "empty").mkdir()
    for name in ("a", "b"):
        for i in range(3):  # enough files per class for a validation split
            folder = root / "noreadable" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.png").write_bytes(b"damaged")
        (root / "textonly" / name).mkdir(parents=True)
        (root / "textonly" / name / "notes.txt").write_text("no images here")
    make_image_folder(root / "other", ["x", "y"], 2, 16, 16)
    np.save(root / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]], np.float32))
    return root


def _argv(line: str) -> list[str]:
    # '' stands for an empty argument; no row needs shell quoting otherwise.
    args = ["" if a == "''" else a for a in line.split(" ")]
    # The row's own options come last, so they win over the tiny-run defaults.
    return ["train", *TRAIN, *args[1:]] if args[0] == "train" else args


@pytest.mark.parametrize("line, status, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(files, monkeypatch, capsys, line, status, phrase) -> None:
    monkeypatch.chdir(files)
    monkeypatch.delenv("CNNKIT_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["cnnkit", *_argv(line)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    assert info.value.code == status, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if status == 1:
        assert lines and lines[0].startswith("error: "), err
        assert phrase in lines[0] and "(hint: " in err, err
    else:  # Typer's usage error: the usage line, then the problem
        assert lines and lines[0].startswith("Usage: cnnkit"), err
        assert phrase in " ".join(err.split()), err
    assert not (files / "runs").exists() or not any((files / "runs").rglob("*.ckpt"))


def test_the_table_covers_every_command() -> None:
    commands = {line.split()[0] for line, _, _ in CASES}
    assert commands == {"convolve", "train", "eval", "predict", "inspect"}
    assert len(CASES) >= 30
