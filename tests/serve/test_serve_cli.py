"""``cnnkit serve`` refusing to start (a port in use, no server stack, bad options); its imports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.cli.test_export import BLOCK_TORCH
from tests.helpers import cnnkit_in_process, make_checkpoint, run_cnnkit

STACK = ("starlette", "uvicorn", "python_multipart", "multipart", "anyio", "h11")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-cli")
    return make_checkpoint(root / "m.ckpt", "lenet5", ["a", "b"], 1, (16, 16))


def test_a_port_in_use_is_one_error_line(ckpt, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cnnkit("serve", str(ckpt), "--port", str(port), cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (hint: stop what listens there, or "
        "choose another --port (--port 0 picks a free one))"
    ]


def test_without_the_serve_extra_it_says_what_to_install(ckpt, tmp_path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "BLOCKED": "starlette,uvicorn"}
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "serve", str(ckpt), "--port", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: cnnkit serve needs starlette, uvicorn, which are not installed "
        "(hint: pip install 'cnnkit[serve]')"
    ]


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]])
def test_help_imports_neither_torch_nor_the_server_stack(argv) -> None:
    code = (
        "import sys\n"
        f"sys.argv = ['cnnkit', *{argv!r}]\n"
        "from cnnkit.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {('torch', *STACK)!r}]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert "serve" in done.stdout


def test_a_video_model_is_refused(tmp_path, monkeypatch, capsys) -> None:
    clip = make_checkpoint(tmp_path / "clip.ckpt", "c3d_small", ["l", "r"], 3, (16, 16), frames=4)
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "serve", str(clip), "--port", "0")
    assert code == 1
    assert "error: cnnkit serve classifies images; c3d_small classifies clips of 4 frames" in err


def test_an_empty_api_key_is_refused(ckpt, monkeypatch, capsys) -> None:
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "serve", str(ckpt), "--api-key", " ")
    assert code == 1 and "error: --api-key is empty" in err


def test_listening_beyond_this_machine_without_a_key_warns(ckpt, monkeypatch, capsys) -> None:
    # The wiring alone: no test listens on an address other machines could reach.
    from cnnkit.cli import serve as command
    from cnnkit.serve import runner

    served = []
    monkeypatch.setattr(runner, "is_loopback", lambda sock: False)
    monkeypatch.setattr(command, "_serve", lambda *args: served.append(args[1:]))
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "serve", str(ckpt), "--port", "0")
    assert code == 0 and served
    assert "warning: listening on 127.0.0.1 without --api-key" in err
    monkeypatch.setenv("CNNKIT_API_KEY", "s3cret")
    code, _, err = cnnkit_in_process(monkeypatch, capsys, "serve", str(ckpt), "--port", "0")
    assert code == 0 and "warning" not in err
    assert served[-1][4] == "s3cret"  # the key from the environment
