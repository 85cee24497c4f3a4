"""Property-based tests: the kernel-spec parser, source expansion, and the media readers fuzzed.

Each property holds for every input hypothesis can think of: well-formed specs
parse to exactly the numbers written, junk is a KernelError (never another
exception), source expansion keeps input order and finds exactly the visible
media files, and damaged bytes fed to the readers are a CnnkitError or a
valid picture, never a crash.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnkit.errors import CnnkitError, KernelError
from cnnkit.io.image import IMAGE_EXTENSIONS, read_image, read_image_bytes
from cnnkit.io.sources import expand_sources
from cnnkit.io.video import VIDEO_EXTENSIONS, iter_frames, probe_video
from cnnkit.kernels import parse_kernel
from tests.helpers import make_image, make_video

# No example database: nothing is written into the working tree.
FAST = settings(max_examples=80, deadline=None, database=None)
SLOW = settings(max_examples=50, deadline=None, database=None)  # FFmpeg, or a tree per example
FIXTURES = [HealthCheck.function_scoped_fixture]  # tmp_path is only written, never trusted

# ---------------------------------------------------------------------------
# kernel specs
# ---------------------------------------------------------------------------

# Finite values whose repr parses back to the same float; small ints are the common case.
values = st.one_of(
    st.integers(-9, 9).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64),
)


@st.composite
def kernel_arrays(draw) -> np.ndarray:
    depth = draw(st.sampled_from([None, 1, 2, 3]))  # None: a 2D kernel
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    shape = (rows, cols) if depth is None else (depth, rows, cols)
    flat = draw(st.lists(values, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array(flat, dtype=np.float64).reshape(shape)


def _spec(array: np.ndarray, sep: str, row_sep: str) -> str:
    def rows(a2d: np.ndarray) -> str:
        return row_sep.join(sep.join(repr(float(v)) for v in row) for row in a2d)

    if array.ndim == 2:
        return rows(array)
    return " | ".join(rows(s) for s in array)


@FAST
@given(kernel_arrays(), st.sampled_from([",", " ", ", ", "  "]), st.sampled_from([";", "; "]))
def test_well_formed_inline_specs_parse_to_the_numbers_written(array, sep, row_sep) -> None:
    kernel = parse_kernel(_spec(array, sep, row_sep))
    # A single-slice 3D spec has no '|', so it is a 2D kernel of that slice.
    expected = array[0] if array.ndim == 3 and array.shape[0] == 1 else array
    assert kernel.shape == expected.shape
    assert np.array_equal(kernel.weights, expected)


@FAST
@given(st.integers(1, 15), st.floats(0.1, 5.0))
def test_parametrised_names_give_the_size_asked_for(size, sigma) -> None:
    box = parse_kernel(f"box:{size}")
    assert box.shape == (size, size) and np.isclose(box.weights.sum(), 1.0)
    gauss = parse_kernel(f"gaussian:{size},{sigma!r}")
    assert gauss.shape == (size, size) and np.isclose(gauss.weights.sum(), 1.0)
    assert parse_kernel(f"box3d:{min(size, 7)}").shape == (min(size, 7),) * 3


spec_alphabet = st.sampled_from(list("0123456789.,;| -+e/:abcdginostx\t\n"))
junk = st.one_of(st.text(max_size=40), st.text(spec_alphabet, max_size=40))


@FAST
@given(junk)
def test_junk_specs_are_a_kernel_error_or_a_valid_kernel(spec) -> None:
    assume("\x00" not in spec)  # cannot reach the parser through argv
    try:
        kernel = parse_kernel(spec)
    except KernelError as exc:
        assert exc.message and exc.hint  # a message naming the problem, and what to do
        return
    assert kernel.ndim in (2, 3)
    assert all(np.isfinite(c).all() and c.size >= 1 for c in kernel.components)


# ---------------------------------------------------------------------------
# source expansion
# ---------------------------------------------------------------------------

KNOWN = sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
names = st.text("abcxyz019-_", min_size=1, max_size=6)
extensions = st.sampled_from([*KNOWN, ".PNG", ".Jpg", ".txt", ".json", ""])
# (folder parts, file stem, extension, hidden file?); a part starting with '.' is hidden.
# Folder names are upper case and stems lower case, so a file "a" never takes the
# place of a folder "A" (the generator would otherwise make trees that cannot exist).
entries = st.lists(
    st.tuples(
        st.lists(st.sampled_from(["A", "B", ".hid", "C"]), max_size=2),
        names,
        extensions,
        st.booleans(),
    ),
    max_size=12,
)


def _make_tree(root: Path, spec) -> list[Path]:
    files = []
    for parts, stem, ext, hidden in spec:
        folder = root.joinpath("tree", *parts)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{'.' if hidden else ''}{stem}{ext}"
        path.write_bytes(b"")
        files.append(path)
    (root / "tree").mkdir(exist_ok=True)
    return sorted(set(files))


def _visible_media(folder: Path, files: list[Path]) -> list[str]:
    """What a folder walk must find: known extensions, nothing hidden, sorted by components."""
    found = []
    for f in files:
        rel = f.relative_to(folder) if f.is_relative_to(folder) else None
        if rel is None or any(p.startswith(".") for p in rel.parts):
            continue
        if f.suffix.lower() in KNOWN:
            found.append((rel.parts, str(f)))
    return [p for _, p in sorted(found)]


def _expected(item: str, files: list[Path]) -> list[tuple[str, bool]]:
    """(path, is_error) entries for one input, from the tree as generated."""
    path = Path(item)
    if path.is_file():
        return [(item, False)]
    if path.is_dir():
        found = _visible_media(path, files)
        return [(p, False) for p in found] or [(item, True)]
    if item.endswith("/*"):  # a glob over one folder's non-hidden entries
        folder = Path(item[:-2])
        out: list[tuple[str, bool]] = []
        for child in sorted(str(c) for c in folder.iterdir() if not c.name.startswith(".")):
            if Path(child).is_dir():
                out += [(p, False) for p in _visible_media(Path(child), files)]
            elif Path(child).suffix.lower() in KNOWN:
                out.append((child, False))
        return out or [(item, True)]
    return [(item, True)]


@SLOW
@given(entries, st.data())
def test_expansion_follows_input_order_and_finds_exactly_the_visible_media(spec, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = _make_tree(root, spec)
        folders = sorted({str(f.parent) for f in files} | {str(root / "tree")})
        choices = [str(f) for f in files] + folders + [f"{d}/*" for d in folders]
        choices += [str(root / "missing.png"), str(root / "tree" / "nope")]
        inputs = data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=6))
        piped = data.draw(st.lists(st.sampled_from(choices), max_size=3))
        use_stdin = data.draw(st.booleans())
        if use_stdin:
            inputs = [*inputs, "-"]
        stdin = io.StringIO("".join(f"{p}\n\n" for p in piped))
        got = expand_sources(inputs, stdin=stdin)

        expected: list[tuple[str, bool]] = []
        for item in inputs:
            for line in piped if item == "-" else [item]:
                expected += _expected(line, files)
        # The oracle leaves out whatever is hidden below the folder or glob given.
        assert [(s.path, s.error is not None) for s in got] == expected


# ---------------------------------------------------------------------------
# the readers, fuzzed
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_media(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("media")
    make_image(root / "a.png", 12, 10)
    make_image(root / "a.jpg", 12, 10)
    make_video(root / "a.mp4", frames=3, h=16, w=16)
    return {ext: (root / f"a{ext}").read_bytes() for ext in (".png", ".jpg", ".mp4")}


def _check_image(image: np.ndarray) -> None:
    assert isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.size > 0
    assert image.dtype in (np.uint8, np.uint16, np.float32)


@st.composite
def damaged(draw, real: bytes) -> bytes:
    """A real file cut short and/or with a few bytes changed."""
    data = bytearray(real[: draw(st.integers(0, len(real)))])
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _fuzz_bytes(real_media, data) -> tuple[str, bytes]:
    ext = data.draw(st.sampled_from([".png", ".jpg", ".mp4"]))
    blob = data.draw(st.one_of(st.binary(max_size=300), damaged(real_media[ext])))
    return ext, blob


@settings(FAST, suppress_health_check=FIXTURES)
@given(st.data())
def test_image_readers_give_a_cnnkit_error_or_a_valid_image(real_media, tmp_path, data) -> None:
    ext, blob = _fuzz_bytes(real_media, data)
    try:
        _check_image(read_image_bytes(blob, "fuzz"))
    except CnnkitError:
        pass  # the outcome wanted for a damaged file
    path = tmp_path / f"fuzz{ext if ext != '.mp4' else '.png'}"
    path.write_bytes(blob)
    try:
        _check_image(read_image(path))
    except CnnkitError as exc:
        assert str(path) in exc.message


@settings(SLOW, suppress_health_check=FIXTURES)
@given(st.data())
def test_video_readers_give_a_cnnkit_error_or_valid_frames(real_media, tmp_path, data) -> None:
    ext, blob = _fuzz_bytes(real_media, data)
    path = tmp_path / "fuzz.mp4"
    path.write_bytes(blob)
    try:
        info = probe_video(path)
        assert info.frames >= 1 and info.width >= 0 and info.height >= 0
    except CnnkitError as exc:
        assert str(path) in exc.message
    try:
        for frame in iter_frames(path):
            assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    except CnnkitError as exc:
        assert str(path) in exc.message


def test_the_fuzz_seeds_are_real_media(real_media, tmp_path) -> None:
    # Undamaged seeds must read: otherwise the damaged ones prove nothing.
    for ext, blob in real_media.items():
        (tmp_path / f"ok{ext}").write_bytes(blob)
    _check_image(read_image(tmp_path / "ok.png"))
    _check_image(read_image_bytes(real_media[".jpg"]))
    assert probe_video(tmp_path / "ok.mp4").frames == 3
    assert len(list(iter_frames(tmp_path / "ok.mp4"))) == 3
    assert os.path.getsize(tmp_path / "ok.mp4") > 0
