"""Run folders: ``<out>/train``, ``<out>/train-2``, ...; never reused, never overwritten.

``<out>/latest`` is a symbolic link to the run folder made last, so that
``runs/latest/checkpoints/best.ckpt`` is the model just trained.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnkit.errors import InputError

# Under --strategy ddp on one machine Lightning starts the other ranks by
# running the same command line again; they find rank 0's run folder here.
RUN_DIR_ENV = "CNNKIT_RUN_DIR"
LATEST = "latest"


def _unwritable(out: Path, exc: OSError) -> InputError:
    return InputError(
        f"cannot create a run folder in {out}: {exc.strerror or exc}",
        hint="choose a folder you can write to with --out",
    )


def new_run_dir(out: str | Path, name: str | None) -> Path:
    """Create ``out/name`` (default ``out/train``, ``out/train-2``, ...); never reuse one.

    An explicit ``--name`` that exists is an error: a run is never overwritten,
    and ``--resume`` continues in a new folder too (recorded in config.yaml).
    """
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # out itself, or a folder above it, is a file.
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), out)
        raise InputError(
            f"--out {out}: {blocker} is a file, not a folder",
            hint="give a folder for the run folders",
        ) from None
    except OSError as exc:
        raise _unwritable(out, exc) from None
    if name is not None:
        if not name or "/" in name or name in (".", ".."):
            raise InputError(f"--name {name!r} is not a folder name", hint="e.g. --name digits")
        if name == LATEST:
            raise InputError(
                f"--name {LATEST} is the link to the newest run folder",
                hint="choose another name, e.g. --name digits",
            )
        path = out / name
        try:
            path.mkdir()
        except FileExistsError:
            raise InputError(
                f"run folder {path} already exists",
                hint="choose another --name, or leave --name out for a numbered one "
                "(--resume always starts a new run folder)",
            ) from None
        except OSError as exc:
            raise _unwritable(out, exc) from None
        return path
    for i in range(1, 100000):
        path = out / ("train" if i == 1 else f"train-{i}")
        try:
            path.mkdir()  # atomic: two runs started together get different folders
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise _unwritable(out, exc) from None
    raise InputError(f"too many runs in {out}", hint="clean up old runs or use --out")


def point_latest_at(run_dir: Path) -> bool:
    """Make ``latest`` beside ``run_dir`` link to it (relative, replaced atomically).

    Called when training starts, so a run refused before that leaves the link
    where it was. False (and nothing changed) where ``latest`` is a file or
    folder that is not a link, or links cannot be made there: the caller says so.
    """
    link = run_dir.parent / LATEST
    if link.exists() and not link.is_symlink():
        return False
    temp = run_dir.parent / f".{LATEST}-{os.getpid()}.tmp"
    try:
        temp.unlink(missing_ok=True)
        temp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(temp, link)  # two runs started together: the last replace wins
    except OSError:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
    return True


def write_config(run_dir: Path, resolved: dict[str, Any]) -> None:
    """config.yaml: every resolved option, what was decided, and the command line."""
    import yaml

    from cnnkit.io.atomic import atomic_write_text

    text = yaml.safe_dump(resolved, sort_keys=False, default_flow_style=False)
    atomic_write_text(run_dir / "config.yaml", text)
