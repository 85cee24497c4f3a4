"""`predict --shard I/N` and `--shard auto`: disjoint, complete, deterministic parts of inputs."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.errors import InputError
from cnnkit.io.sources import expand_sources
from cnnkit.predict.shards import Shard, parse_shard, slurm_shard, sort_key, take_shard
from tests.helpers import cnnkit_in_process, make_checkpoint, make_image

# Names that sort differently by bytes, by code points and by whole path ("a-b" < "a/b"
# as strings, but a folder's files come before a sibling file named like "a-b").
_NAMES = st.text(alphabet="ab-./_\u00e9\udce9Z0", min_size=1, max_size=8)


@given(st.lists(_NAMES, max_size=40), st.integers(1, 12), st.randoms(use_true_random=False))
def test_shards_are_disjoint_complete_balanced_and_independent_of_input_order(
    paths, count, rng
) -> None:
    parts = [take_shard(paths, Shard(i, count)) for i in range(count)]
    # Complete and disjoint: every input in exactly one part (an input named twice, twice).
    joined = [p for part in parts for p in part]
    assert Counter(joined) == Counter(paths)
    # Contiguous blocks of the sorted list, in shard order.
    assert joined == sorted(paths, key=sort_key)
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    # Another machine lists the same inputs in another order: the same parts.
    shuffled = list(paths)
    rng.shuffle(shuffled)
    assert [take_shard(shuffled, Shard(i, count)) for i in range(count)] == parts


def test_the_shards_of_a_folder_are_its_walk_order_cut_in_pieces(tmp_path) -> None:
    for name in ("a-b.png", "a/b.png", "a/c/d.png", "B.png", "a.png", "\u00e9.png", "_.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        make_image(tmp_path / name)
    walk = expand_sources([str(tmp_path)])
    pieces = [take_shard(list(reversed(walk)), Shard(i, 3)) for i in range(3)]
    assert [s.path for part in pieces for s in part] == [s.path for s in walk]


@pytest.mark.parametrize(
    "spec", ["3/2", "2/2", "0/0", "a/b", "-1/4", "1/2/3", "1", "", " /4", "1/9999999"]
)
def test_a_bad_shard_is_an_input_error_with_a_hint(spec) -> None:
    with pytest.raises(InputError) as info:
        parse_shard(spec, environ={})
    assert "--shard" in info.value.message and info.value.hint


def test_shard_specs_count_from_zero() -> None:
    assert parse_shard("0/1") == Shard(0, 1)
    assert parse_shard(" 3/4 ") == Shard(3, 4)


@pytest.mark.parametrize(
    ("env", "shard"),
    [
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"},
         (0, 4)),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4",
          "SLURM_ARRAY_TASK_MAX": "4"}, (3, 4)),
        ({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "3",
          "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_MAX": "14"}, (2, 3)),
    ],
)  # fmt: skip
def test_auto_takes_the_task_of_a_slurm_array(env, shard) -> None:
    found = slurm_shard(env)
    assert (found.index, found.count) == shard
    assert f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']}" in (found.origin or "")


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"},
        {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"},
        # --array=1,4,9: not evenly spaced, so the task's place is unknown
        {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3",
         "SLURM_ARRAY_TASK_MAX": "9"},
        {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"},
    ],
)  # fmt: skip
def test_auto_outside_a_regular_slurm_array_is_an_error_with_a_hint(env) -> None:
    with pytest.raises(InputError) as info:
        parse_shard("auto", environ=env)
    assert "--shard auto" in info.value.message and "--shard I/N" in (info.value.hint or "")


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------


@pytest.fixture
def job(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.ckpt", "lenet5", ["a", "b", "c"], 1, (16, 16))
    names = [f"{sub}/{i:02d}.png" for sub in ("x", "y") for i in range(5)] + ["x-1.png"]
    for i, name in enumerate(names):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        make_image(tmp_path / name, channels=1, seed=i)
    return str(ckpt), tmp_path


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _same(found: list[dict], expected: list[dict]) -> bool:
    """The same records, scores to float32's precision (batches differ from run to run)."""
    assert [(r["path"], r["label"]) for r in found] == [(r["path"], r["label"]) for r in expected]
    return all(abs(a["score"] - b["score"]) < 1e-6 for a, b in zip(found, expected, strict=True))


def test_shards_on_the_command_line_add_up_to_the_whole_run(job, monkeypatch, capsys) -> None:
    ckpt, folder = job
    monkeypatch.chdir(folder)
    code, out, _ = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "y", "x", "x-1.png")
    whole = sorted(_records(out), key=lambda r: sort_key(r["path"]))
    assert code == 0 and len(whole) == 11
    joined = []
    for i in range(3):
        # The inputs in another order: the same parts.
        order = ["x-1.png", "x", "y"] if i % 2 else ["y", "x-1.png", "x"]
        code, out, err = cnnkit_in_process(
            monkeypatch, capsys, "predict", ckpt, *order, "--shard", f"{i}/3"
        )
        assert code == 0, err
        assert f"shard {i}/3: {[3, 4, 4][i]} of 11 inputs" in err
        joined += _records(out)
    assert _same(joined, whole)


def test_shard_of_paths_on_stdin(job, monkeypatch, capsys) -> None:
    import io
    import sys

    ckpt, folder = job
    monkeypatch.chdir(folder)
    paths = [s.path for s in expand_sources(["x", "y"])]
    random.Random(1).shuffle(paths)
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(p + "\n" for p in paths)))
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "-", "--shard", "1/2")
    assert code == 0, err
    assert [r["path"] for r in _records(out)] == sorted(paths, key=sort_key)[5:]
    assert "shard 1/2: 5 of 10 inputs" in err


def test_shard_auto_says_where_it_comes_from(job, monkeypatch, capsys) -> None:
    ckpt, folder = job
    monkeypatch.chdir(folder)
    for name, value in (("ID", "2"), ("MIN", "1"), ("COUNT", "2"), ("MAX", "2")):
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{name}", value)
    code, out, err = cnnkit_in_process(monkeypatch, capsys, "predict", ckpt, "x", "--shard", "auto")
    assert code == 0, err
    assert "shard 1/2 from Slurm's job array (SLURM_ARRAY_TASK_ID=2" in err
    assert [r["path"] for r in _records(out)] == ["x/02.png", "x/03.png", "x/04.png"]
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, "x", "--shard", "auto", "-q"
    )
    assert (code, err) == (0, "") and len(_records(out)) == 3


@pytest.mark.parametrize("spec", ["3/2", "0/0", "a/b", "-1/4", "auto"])
def test_a_bad_shard_on_the_command_line_is_one_error_line(job, monkeypatch, capsys, spec) -> None:
    ckpt, folder = job
    for name in ("ID", "MIN", "COUNT"):
        monkeypatch.delenv(f"SLURM_ARRAY_TASK_{name}", raising=False)
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, str(folder / "x"), "--shard", spec
    )
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "(hint: " in err, err


def test_an_empty_shard_writes_nothing_and_succeeds(job, monkeypatch, capsys) -> None:
    ckpt, folder = job
    code, out, err = cnnkit_in_process(
        monkeypatch, capsys, "predict", ckpt, str(folder / "x-1.png"), "--shard", "0/2"
    )
    assert (code, out) == (0, "")
    assert "shard 0/2: 0 of 1 inputs" in err
