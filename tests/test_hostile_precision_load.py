"""Precision and the load-following thread count, under hostile inputs and machines.

Each test here pins a behaviour that was wrong once: inspect silent about
the precision a model was trained in, fp16 said but not done, a CPU quota
inside a larger machine read as a busy machine, idle-priority work read as
contention.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import cnnkit_in_process, make_checkpoint


@pytest.mark.parametrize(
    ("compute", "row", "recorded"),
    [
        ({"precision": "bf16-mixed", "memory_format": "channels_last"}, "bf16 autocast", "bf16"),
        ({"precision": "32-true", "memory_format": "contiguous"}, "float32", "32"),
        (None, "not recorded (float32 assumed)", None),  # a checkpoint from before the record
        ({"precision": ["bf16-mixed"]}, "not recorded (float32 assumed)", None),  # crafted
        ("bf16-mixed", "not recorded (float32 assumed)", None),
    ],
)
def test_inspect_says_the_precision_a_checkpoint_was_trained_in(
    tmp_path, monkeypatch, capsys, compute, row, recorded
) -> None:
    options = {} if compute is None else {"compute": compute}
    ckpt = make_checkpoint(tmp_path / "m.ckpt", options=options)
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", str(ckpt))
    assert code == 0, err
    line = next(text for text in out.splitlines() if "trained in" in text)
    assert row in line
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "inspect", str(ckpt), "--json")
    assert code == 0, err
    assert json.loads(out)["trained_in"] == recorded
