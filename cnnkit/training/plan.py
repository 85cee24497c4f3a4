"""plan(): every choice and every refusal of ``cnnkit train`` before any pixel is decoded.

From a TrainConfig to a TrainPlan: a --resume checkpoint's options read,
every option checked, the data kind's defaults, the learning rate and the
devices resolved once, the device chosen, sizes checked against the model,
--weights read or --pretrained fetched, and the dataset request made.
cnnkit.training.fit.run(plan) then loads the data, builds the model and trains.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnnkit import console
from cnnkit.errors import DatasetError, InputError, ModelError
from cnnkit.models.sizes import check_input_fits
from cnnkit.training.options import (
    BY_NAME,
    MAX_DEVICES,
    TrainConfig,
    apply_resume_defaults,
    canonical,
    resolve_kind_defaults,
    validate_config,
)
from cnnkit.training.rundir import child_run_dir
from cnnkit.training.start import check_start_options, model_from_weights, plan_start, start_lr


@dataclass
class TrainPlan:
    """A training run decided: the resolved options and what they resolved to.

    ``cfg``: every option with its default filled in; ``kind``: "image" or
    "video"; ``resumed``: the --resume checkpoint or None; ``start``: where the
    weights start (cnnkit.training.start.StartPlan); ``device``: the device
    choice; ``devices``: --devices as Lightning takes it; ``request``: the
    dataset request; ``child_run_dir``: set in a DDP rank other than 0
    (cnnkit.training.rundir.child_run_dir).
    """

    cfg: TrainConfig
    kind: str
    resumed: Any
    start: Any
    device: Any
    devices: Any
    spec: Any
    request: Any
    child_run_dir: str | None

    @property
    def is_child(self) -> bool:
        """A DDP rank other than 0: it trains, rank 0 reports and writes."""
        return self.child_run_dir is not None


def _data_kind(dataset: str) -> tuple[str, Any]:
    """("image" or "video", the folder's scan or None): a folder is scanned once, here."""
    from cnnkit.data.registry import DatasetRequest, get_dataset_entry, load_dataset

    entry = get_dataset_entry(dataset)
    if entry is not None:
        return entry.kind, None
    if Path(dataset).expanduser().is_dir():
        from cnnkit.data.folders import scan_folder

        scan = scan_folder(dataset)
        return scan.kind, scan
    # Neither a name nor a folder: load_dataset raises the error with a close-match hint.
    load_dataset(DatasetRequest(name=dataset))
    raise DatasetError(f"unknown dataset '{dataset}'")  # load_dataset raised already


def parse_devices(devices: str) -> Any:
    """--devices as Lightning takes it: a count, a list of indices, "auto" or -1."""
    text = str(devices).strip()
    if text == "auto" or text == "-1":
        return text if text == "auto" else -1
    if re.fullmatch(r"\d+", text):
        n = int(text)
        if n < 1:
            raise InputError("--devices must be at least 1", hint="e.g. --devices 2")
        if n > MAX_DEVICES:  # on the CPU, a count of processes to start
            raise InputError(
                f"--devices {n} is too many (at most {MAX_DEVICES} on one machine)",
                hint="give the devices of one machine; add machines with --num-nodes",
            )
        return n
    if re.fullmatch(r"\d+(,\d+)*,?", text):
        return [int(v) for v in text.split(",") if v]
    raise InputError(
        f"--devices {devices!r} is not a count or a list",
        hint="e.g. --devices 2, --devices 0,1 or --devices auto",
    )


def is_one_process(cfg: TrainConfig, devices: Any) -> bool:
    """Whether the run trains in this process alone: Lightning's single-device strategy."""
    one_device = devices == 1 or (isinstance(devices, list) and len(devices) == 1)
    return one_device and cfg.num_nodes == 1 and str(cfg.strategy) == "auto"


def resolve(cfg: TrainConfig) -> tuple[TrainConfig, str, Any, Any, Any]:
    """(cfg with the defaults filled in, kind, resumed, weights file, folder scan).

    ``resumed`` is the --resume checkpoint (loaded weights-only) or None;
    ``weights file`` the --weights file read (cnnkit.models.transfer.WeightsFile)
    or None. Everything here happens before any data is read: an unsafe or
    damaged --resume or --weights file, a bad option and a resume with nothing
    left to train are all refused first. A --weights checkpoint names the
    model when --model is not given; starting from weights changes the
    default peak learning rate (cnnkit.training.start.start_lr).
    """
    resumed = None
    if cfg.resume:
        from cnnkit.checkpoint import load_checkpoint

        # The file itself, not a path through runs/latest, which this run will
        # point at its own new folder before Lightning opens the checkpoint.
        cfg = replace(cfg, resume=os.path.realpath(os.path.expanduser(cfg.resume)))

        resumed = load_checkpoint(cfg.resume)
        cfg = apply_resume_defaults(cfg, resumed.meta.recorded_options())
    cfg = replace(cfg, precision=canonical(BY_NAME["precision"], cfg.precision))
    validate_config(cfg)
    if "spawn" in str(cfg.strategy):
        # The spawned processes train; the one that reports would see none of it.
        raise InputError(
            f"--strategy {cfg.strategy} is not supported: the run's summary comes from the "
            "process that starts training",
            hint="use --strategy ddp (one process per device, started from this command)",
        )
    if cfg.flip and not cfg.augment:
        raise InputError(
            "--flip is part of augmentation, which --no-augment turns off",
            hint="drop --no-augment, or drop --flip",
        )
    check_start_options(cfg)
    if resumed is not None and bool(cfg.freeze) != bool(resumed.meta.options.get("freeze")):
        now = "frozen" if resumed.meta.options.get("freeze") else "not frozen"
        raise InputError(
            f"--resume {cfg.resume} continues a run that was {now}, and --freeze cannot change "
            "that (the optimizer's saved state is for the parameters it trained)",
            hint=f"start a new run from it instead: --weights {cfg.resume}"
            + (" --freeze" if cfg.freeze else ""),
        )
    cfg, weights_file = model_from_weights(cfg)
    kind, scan = _data_kind(cfg.dataset)
    lr_given = cfg.lr is not None
    cfg = resolve_kind_defaults(cfg, kind)
    lr = None if lr_given else start_lr(cfg)
    if lr is not None:
        cfg = replace(cfg, lr=lr)
    epochs_done = resumed.epochs_done if resumed is not None else None
    if epochs_done is not None and cfg.epochs <= epochs_done:
        raise InputError(
            f"--resume {cfg.resume} has trained {epochs_done} epoch(s) already, and --epochs "
            f"is the total to reach ({cfg.epochs}), so nothing is left to train",
            hint=f"give --epochs above {epochs_done}, e.g. --epochs {epochs_done + cfg.epochs}",
        )
    return cfg, kind, resumed, weights_file, scan


def _check_model_kind(model: str, dims: int, kind: str) -> None:
    if dims == 2 and kind == "video":
        raise ModelError(
            f"model '{model}' is 2D but the dataset holds video clips",
            hint="use a 3D model such as c3d_small or framewise2d",
        )
    if dims == 3 and kind == "image":
        raise ModelError(
            f"model '{model}' is 3D but the dataset holds images",
            hint="use a 2D model such as simplecnn or lenet5",
        )


def _planned_shape(spec: Any, cfg: TrainConfig) -> tuple[int, ...]:
    """The input shape --img-size / --frames ask for, the model's defaults filling the rest."""
    default = tuple(spec.default_input_size)
    h, w = (cfg.img_size, cfg.img_size) if cfg.img_size else default[-2:]
    if spec.dims == 3:
        return (default[0], cfg.frames or default[1], h, w)
    return (default[0], h, w)


def plan(cfg: TrainConfig) -> TrainPlan:
    """Decide the run ``cfg`` asks for; refuse what cannot run, before any data is decoded."""
    from cnnkit.data.preprocess import parse_colour
    from cnnkit.data.registry import DatasetRequest, memory_budget_from_env
    from cnnkit.device import resolve_device
    from cnnkit.models.registry import get_model_spec
    from cnnkit.spec import WHITE

    cfg, kind, resumed, weights_file, scan = resolve(cfg)
    devices = parse_devices(cfg.devices)
    child = child_run_dir(cfg.out, one_process=is_one_process(cfg, devices))
    is_child = child is not None
    background = parse_colour(cfg.background) if cfg.background else WHITE
    device = resolve_device(cfg.device)
    if cfg.precision == "16":  # refused before any data is read, not once it is loaded
        from cnnkit.precision import check_fp16

        check_fp16(device.accelerator)
    spec = get_model_spec(cfg.model)
    _check_model_kind(cfg.model, spec.dims, kind)
    if not is_child:
        console.info(f"device: {device.accelerator} ({device.reason})")
        _say_cpu_budget()
    if cfg.img_size or cfg.frames:
        # Sizes given on the command line are checked before any data is read.
        check_input_fits(cfg.model, _planned_shape(spec, cfg))
    if cfg.patience and cfg.val_split == 0 and not _has_val_folder(cfg.dataset):
        raise InputError(
            "--patience stops on validation accuracy, and --val-split 0 leaves no validation split",
            hint="drop --patience, or keep a validation split (e.g. --val-split 0.1)",
        )
    # Reads --weights / fetches --pretrained now: a missing file is said before data loads.
    start = plan_start(cfg, kind, weights_file, resumed)
    request = DatasetRequest(
        name=cfg.dataset,
        data_dir=cfg.data_dir,
        img_size=cfg.img_size or start.img_size,
        frames=cfg.frames or start.frames,
        val_split=cfg.val_split,
        seed=cfg.seed,
        limit=cfg.limit,
        # Weights (and a resumed run's model) take their channels: decode to those.
        channels=start.channels,
        background=background,
        default_size=tuple(spec.default_input_size[-2:]),
        default_frames=spec.default_input_size[1] if spec.dims == 3 else 8,
        memory_budget=memory_budget_from_env(),
        scan=scan,
    )
    return TrainPlan(cfg, kind, resumed, start, device, devices, spec, request, child)


def _say_cpu_budget() -> None:
    """Say the CPU budget where it is not simply every core (a quota, affinity, a variable)."""
    from cnnkit.io.cpu import cpu_budget

    budget = cpu_budget()
    if budget.cores < (os.cpu_count() or 1):
        console.info(f"CPU: {budget.cores} of {os.cpu_count()} cores ({budget.reason})")


def _has_val_folder(dataset: str) -> bool:
    """Whether a dataset folder holds a validation split of its own (val/, valid/...)."""
    from pathlib import Path

    from cnnkit.data.folders import SPLIT_ALIASES

    root = Path(dataset).expanduser()
    try:
        return any(
            p.is_dir() and SPLIT_ALIASES.get(p.name.lower()) == "val" for p in root.iterdir()
        )
    except OSError:
        return False
