"""Run folders: ``<out>/train``, ``<out>/train-2``, ...; never reused, never overwritten.

``<out>/latest`` is a symbolic link to the run folder made last, so that
``runs/latest/checkpoints/best.ckpt`` is the model just trained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnkit.errors import InputError

# Under --strategy ddp on one machine Lightning starts the other ranks by
# running the same command line again; they find rank 0's run folder here.
RUN_DIR_ENV = "CNNKIT_RUN_DIR"
LATEST = "latest"
# The run folder a rank other than 0 names when nothing tells it rank 0's: a
# name it never creates (only rank 0 writes; Lightning hands every rank rank
# 0's checkpoint folder when training starts).
NOT_RANK_ZERO = ".not-rank-0"


def _rank_value(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 8 else None


def launched_as_other_rank(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a launcher started this process as a DDP rank other than 0 (which must not write).

    A launcher that starts every process itself, on each machine, names the
    rank in the environment, read here as Lightning reads it: torchrun (and
    Kubeflow) the global ``RANK``; Slurm's srun ``SLURM_PROCID`` (where
    Lightning takes Slurm's environment: ``SLURM_NTASKS`` set, in a job not
    named bash or interactive); Lightning's own variables, set by hand on each
    machine, ``NODE_RANK`` (or ``GROUP_RANK``) and ``LOCAL_RANK``.
    """
    env = os.environ if environ is None else environ
    rank = _rank_value(env.get("RANK"))
    if rank is None and "SLURM_NTASKS" in env:
        if env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
            rank = _rank_value(env.get("SLURM_PROCID"))
    if rank is not None:
        return rank != 0
    return any(_rank_value(env.get(k)) for k in ("NODE_RANK", "GROUP_RANK", "LOCAL_RANK"))


def child_run_dir(
    out: str | Path, environ: Mapping[str, str] | None = None, *, one_process: bool = False
) -> str | None:
    """The run folder of a DDP rank other than 0, or None in rank 0 (which makes it).

    ``one_process``: the run trains in this process alone (one device, one
    node, no strategy named), which Lightning runs as rank 0 whatever the
    environment says; rank variables left in a shell (an exported RANK, a
    LOCAL_RANK set by another tool, a step of a Slurm job) must not stop it
    from writing its run folder.

    A rank Lightning started from rank 0 on this machine is told rank 0's
    folder (RUN_DIR_ENV); a rank started by a launcher on another machine
    (or beside it: torchrun, srun) cannot know it before training starts, and
    names one it never creates.
    """
    if one_process:
        return None
    env = os.environ if environ is None else environ
    inherited = env.get(RUN_DIR_ENV)
    if inherited and env.get("LOCAL_RANK", "0") != "0":
        return inherited
    if launched_as_other_rank(env):
        return str(Path(out).expanduser() / NOT_RANK_ZERO)
    return None


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
