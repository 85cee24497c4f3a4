"""fit(): the core of ``cnnkit train``, from a TrainConfig to a summary dict.

Steps, each a small function: read a --resume checkpoint's options, check
every option, resolve the data kind's defaults and the device, check that
the input fits the model, load the data, build the model, make the run
folder and write config.yaml, let Lightning train, measure the best
checkpoint on val (and test) with the evaluation runner ``cnnkit eval`` uses,
write summary.json.

Under ``--strategy ddp`` on one machine Lightning starts the other ranks by
running the same command line again; those processes find the run folder in
$CNNKIT_RUN_DIR (set by rank 0 before it launches them) instead of making a
new one, and only rank 0 writes files and returns a summary.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from cnnkit import __version__, console
from cnnkit.errors import CheckpointError, DatasetError, InputError, ModelError, TrainingError
from cnnkit.models.sizes import check_input_fits
from cnnkit.training.options import (
    MAX_DEVICES,
    TrainConfig,
    apply_resume_defaults,
    recorded_options,
    resolve_kind_defaults,
    validate_config,
)
from cnnkit.training.rundir import RUN_DIR_ENV, new_run_dir, write_config
from cnnkit.training.start import (
    apply_normalisation,
    check_start_options,
    model_from_weights,
    plan_start,
    start_decisions,
    start_lr,
    start_model,
)

# What `cnnkit train` sets for reproducibility; recorded in config.yaml and checkpoints.
DETERMINISM = {"deterministic": "warn", "seed_workers": True}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training; ``checkpoint`` (or None) resumes it.

    A KeyboardInterrupt, so that a caller's ``except Exception`` does not
    swallow the user's Ctrl-C.
    """

    def __init__(self, checkpoint: Path | None, epoch: int, step: int, command: str) -> None:
        saved = f"; saved {checkpoint}" if checkpoint is not None else ""
        super().__init__(f"training interrupted at epoch {epoch} step {step}{saved}")
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
        self.resume_command = command


# ---------------------------------------------------------------------------
# before any data is read
# ---------------------------------------------------------------------------


def _data_kind(dataset: str) -> str:
    from cnnkit.data.registry import DatasetRequest, get_dataset_entry, load_dataset

    entry = get_dataset_entry(dataset)
    if entry is not None:
        return entry.kind
    if Path(dataset).expanduser().is_dir():
        from cnnkit.data.folders import scan_folder

        return scan_folder(dataset).kind
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


def resolve(cfg: TrainConfig) -> tuple[TrainConfig, str, Any, Any]:
    """(cfg with the defaults filled in, kind, resumed, weights file).

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

        resumed = load_checkpoint(cfg.resume)
        cfg = apply_resume_defaults(cfg, resumed.meta.recorded_options())
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
    parse_devices(cfg.devices)
    cfg, weights_file = model_from_weights(cfg)
    kind = _data_kind(cfg.dataset)
    lr_given = cfg.lr is not None
    cfg = resolve_kind_defaults(cfg, kind)
    if not lr_given and start_lr(cfg) is not None:
        cfg = replace(cfg, lr=start_lr(cfg))
    epochs_done = resumed.epochs_done if resumed is not None else None
    if epochs_done is not None and cfg.epochs <= epochs_done:
        raise InputError(
            f"--resume {cfg.resume} has trained {epochs_done} epoch(s) already, and --epochs "
            f"is the total to reach ({cfg.epochs}), so nothing is left to train",
            hint=f"give --epochs above {epochs_done}, e.g. --epochs {epochs_done + cfg.epochs}",
        )
    return cfg, kind, resumed, weights_file


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


def _resume_command(checkpoint: Path, cfg: TrainConfig) -> str:
    """The command line that continues an interrupted run from ``checkpoint``."""
    words = ["cnnkit", "train", "--resume", str(checkpoint)]
    if cfg.out != "runs":
        words += ["--out", cfg.out]
    if cfg.device != "auto":
        words += ["--device", cfg.device]
    return shlex.join(words)


def _check_resume(ckpt: Any, model_name: str, data: Any) -> Path:
    """Refuse a --resume checkpoint that does not match this run's model, classes and input."""
    path, classes = ckpt.path, data.classes
    if ckpt.model_name != model_name:
        raise CheckpointError(
            f"--resume {path} holds model '{ckpt.model_name}', not '{model_name}'",
            hint=f"add --model {ckpt.model_name}",
        )
    if ckpt.classes != list(classes):
        raise CheckpointError(
            f"--resume {path} was trained on other classes ({len(ckpt.classes)})",
            hint=f"use its dataset: --dataset {ckpt.dataset}",
        )
    if ckpt.input.shape() != data.input.shape():
        shown = "×".join(map(str, ckpt.input.shape()))
        raise CheckpointError(
            f"--resume {path} takes {shown} inputs, but this data gives "
            + "×".join(map(str, data.input.shape())),
            hint="resume on data of the same channels, size and frames (or start a new run)",
        )
    return ckpt.path


# ---------------------------------------------------------------------------
# what was decided, and what is recorded
# ---------------------------------------------------------------------------


def _decisions(cfg: TrainConfig, data: Any, has_val: bool, start: Any) -> dict[str, str]:
    """What was decided for the user, in words: the data's own notes, what the starting
    weights asked of the input, then flips and validation."""
    decisions = dict(data.decisions)
    decisions.update(start_decisions(start, cfg, data))
    if not cfg.augment:
        decisions["hflip"] = "no augmentation (--no-augment), so no flips"
    elif cfg.flip is not None:
        decisions["hflip"] = (
            "horizontal flips in augmentation (--flip)"
            if cfg.flip
            else "no horizontal flips (--no-flip)"
        )
    given = cfg.explicit is None or "val_split" in cfg.explicit
    if has_val and given and "val_split" not in decisions:
        decisions["val_split"] = (
            "validation: the dataset's own val split (--val-split does not apply)"
        )
    if not has_val:
        decisions["val_split"] = (
            "no validation split (--val-split 0): training uses every sample, "
            "and best.ckpt is the last epoch's"
        )
    return decisions


def _meta(
    cfg: TrainConfig, data: Any, hflip: bool, decisions: dict[str, str], start: dict[str, Any]
) -> Any:
    """The checkpoint's self-description (cnnkit.spec.CheckpointMeta)."""
    from cnnkit.spec import CheckpointMeta

    options = recorded_options(cfg)
    # Absolute, so eval finds the files from any working directory.
    options["data_dir"] = str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None
    options["hflip"] = hflip  # what augmentation did, whatever the flag said
    return CheckpointMeta(
        model_name=cfg.model,
        model_args={},
        classes=list(data.classes),
        input=data.input,
        dataset=data.name,
        data_kind=data.kind,
        cnnkit_version=__version__,
        seed=cfg.seed,
        determinism=dict(DETERMINISM),
        options=options,
        decisions=decisions,
        start=start,
    )


def _config_yaml(cfg: TrainConfig, meta: Any, data: Any, device: Any, resumed: Any) -> dict:
    return {
        **{k: v for k, v in asdict(cfg).items() if k not in ("explicit", "command_line")},
        "determinism": dict(DETERMINISM),
        "device_resolved": device.torch_device,
        "device_reason": device.reason,
        "data": {
            "name": data.name,
            "kind": data.kind,
            "sizes": data.sizes(),
            "in_memory": data.in_memory,
        },
        "input": meta.input.to_dict(),
        "classes": list(meta.classes),
        "decisions": dict(meta.decisions),
        "start": dict(meta.start),
        "resumed_from": str(resumed) if resumed else None,
        "command_line": " ".join(cfg.command_line or []),
    }


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------


def _quiet_lightning() -> None:
    # Lightning's "GPU available: False" banner and advice lines are noise in a CLI.
    # Imported first: importing lightning.pytorch sets its logger's level itself.
    import lightning.pytorch  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*torch.use_deterministic_algorithms.*")
    for message in (
        ".*Experiment logs directory.*exists and is not empty.*",  # the run folder is new
        ".*LeafSpec.*",
        ".*smaller than the logging interval.*",
        ".*overridden `(on_after_batch_transfer|transfer_batch_to_device)`.*",
        ".*The dirpath has changed from.*",  # --resume always writes to a new run folder
        ".*module\\(s\\) in eval mode at the start of training.*",  # --freeze, on purpose
    ):
        warnings.filterwarnings("ignore", message=message)


def fit(cfg: TrainConfig) -> dict[str, Any] | None:
    """Train per ``cfg``; return the summary (rank 0) or None (other DDP ranks)."""
    from cnnkit.data.preprocess import parse_colour
    from cnnkit.data.registry import DatasetRequest, load_dataset, memory_budget_from_env
    from cnnkit.device import resolve_device
    from cnnkit.models.registry import get_model_spec
    from cnnkit.spec import WHITE

    _quiet_lightning()
    child_run_dir = os.environ.get(RUN_DIR_ENV)
    is_child = bool(child_run_dir) and os.environ.get("LOCAL_RANK", "0") != "0"

    cfg, kind, resumed_ckpt, weights_file = resolve(cfg)
    background = parse_colour(cfg.background) if cfg.background else WHITE
    device = resolve_device(cfg.device)
    spec = get_model_spec(cfg.model)
    _check_model_kind(cfg.model, spec.dims, kind)
    if not is_child:
        console.info(f"device: {device.accelerator} ({device.reason})")
    if cfg.img_size or cfg.frames:
        # Sizes given on the command line are checked before any data is read.
        check_input_fits(cfg.model, _planned_shape(spec, cfg))
    # Reads --weights / fetches --pretrained now: a missing file is said before data loads.
    start = plan_start(cfg, kind, weights_file, resumed_ckpt)

    data = load_dataset(
        DatasetRequest(
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
        )
    )
    check_input_fits(cfg.model, data.input.shape())
    apply_normalisation(start, data)
    has_val = "val" in data.splits
    if not has_val and cfg.patience:
        raise InputError(
            "--patience stops on validation accuracy, and --val-split 0 leaves no validation split",
            hint="drop --patience, or keep a validation split (e.g. --val-split 0.1)",
        )
    decisions = _decisions(cfg, data, has_val, start)
    hflip = bool(cfg.augment and (data.hflip if cfg.flip is None else cfg.flip))
    if not is_child:
        sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
        where = "in memory" if data.in_memory else "decoded from files"
        console.info(f"data: {data.name}, {len(data.classes)} classes, {sizes} ({where})")
        for note in decisions.values():
            console.info(note)

    model = _build_model(cfg, data)
    resumed = _check_resume(resumed_ckpt, cfg.model, data) if resumed_ckpt else None
    start_record = start_model(model, start, list(data.classes), cfg.freeze, not is_child,
                               cfg.model)  # fmt: skip
    meta = _meta(cfg, data, hflip, decisions, start_record)
    if is_child:
        run_dir = Path(child_run_dir)
    else:
        run_dir = new_run_dir(cfg.out, cfg.name)
        write_config(run_dir, _config_yaml(cfg, meta, data, device, resumed))
        console.info(f"run folder: {run_dir}")

    trainer, module, datamodule = _assemble(cfg, data, model, meta, hflip, has_val, device, run_dir,
                                            is_child, start_record.get("frozen", []))  # fmt: skip
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP ranks started from here share the folder
    try:
        start = time.perf_counter()
        _run_fit(trainer, module, datamodule, cfg)
        train_seconds = time.perf_counter() - start
    finally:
        if not is_child:
            os.environ.pop(RUN_DIR_ENV, None)
    if not trainer.is_global_zero:
        return None
    return _finish(trainer, module, data, run_dir, device, cfg.batch_size, train_seconds)


def _build_model(cfg: TrainConfig, data: Any) -> Any:
    import lightning as L

    from cnnkit.models.registry import create_model

    # Seed before the model is built: its initial weights come from the global RNG.
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    return create_model(
        cfg.model,
        num_classes=data.num_classes,
        in_channels=data.input.channels,
        input_size=data.input.shape(),
    )


def _assemble(cfg, data, model, meta, hflip, has_val, device, run_dir, is_child, frozen):
    """The LightningModule, the datamodule and the Trainer for this run."""
    from cnnkit.data.augment import BatchAugment
    from cnnkit.data.datamodule import ClassifierDataModule
    from cnnkit.training.fastpath import steps_per_batch
    from cnnkit.training.module import ClassifierModule
    from cnnkit.training.trainer import TrainerOptions, build_trainer

    devices = parse_devices(cfg.devices)
    if device.index is not None:
        devices = [device.index]
    group = steps_per_batch(data, cfg.batch_size, devices, cfg.num_nodes)
    datamodule = ClassifierDataModule(
        data, cfg.batch_size, workers=cfg.workers, seed=cfg.seed, steps_per_batch=group
    )
    module = ClassifierModule(
        model,
        num_classes=data.num_classes,
        mean=data.input.mean,
        std=data.input.std,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        label_smoothing=cfg.label_smoothing,
        augment=BatchAugment(hflip=hflip) if cfg.augment else None,
        hparams=meta.to_dict(),
        step_batch_size=cfg.batch_size,
        steps_per_epoch=datamodule.optimizer_steps_per_epoch() if group > 1 else None,
        frozen=frozen,
    )
    trainer = build_trainer(
        run_dir,
        TrainerOptions(
            accelerator=device.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=cfg.precision,
            max_epochs=cfg.epochs,
            patience=cfg.patience,
            validate=has_val,
            progress=console.progress_enabled(),
            epoch_lines=not is_child and not console.is_quiet() and not console.progress_enabled(),
            limit_batches=cfg.limit_batches,
        ),
    )
    return trainer, module, datamodule


def _run_fit(trainer: Any, module: Any, datamodule: Any, cfg: TrainConfig) -> None:
    """trainer.fit, with Ctrl-C/SIGTERM and a diverging loss turned into clear reports."""
    from lightning.pytorch.accelerators import CPUAccelerator

    from cnnkit.training.fastpath import cuda_check_without_nvml
    from cnnkit.training.trainer import InterruptCheckpoint

    saver = next(c for c in trainer.callbacks if isinstance(c, InterruptCheckpoint))
    try:
        with cuda_check_without_nvml(isinstance(trainer.accelerator, CPUAccelerator)):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume, weights_only=True)
    except SystemExit:
        # Lightning 2.6 answers KeyboardInterrupt (our SIGTERM handler raises one
        # too) with on_exception callbacks, teardown and sys.exit(1).
        if not saver.interrupted:
            raise
        command = _resume_command(saver.saved, cfg) if saver.saved else ""
        raise TrainingInterrupted(
            saver.saved, trainer.current_epoch + 1, trainer.global_step, command
        ) from None
    except TrainingError as exc:
        # Checkpoints are only written from finite models: the newest one is good.
        saved = [p for p in saver.path.parent.glob("*.ckpt") if not p.name.startswith(".")]
        where = (
            f"the last good checkpoint is {max(saved, key=lambda p: p.stat().st_mtime_ns)}"
            if saved
            else "no checkpoint was written before it"
        )
        raise TrainingError(f"{exc.message}; {where}", hint=exc.hint) from None


def _finish(trainer, module, data, run_dir: Path, device, batch_size: int, train_seconds: float):
    """Measure the best checkpoint on val and test, write summary.json, return the summary.

    The measurement is ``cnnkit eval``'s own runner, so eval of best.ckpt
    repeats these numbers exactly.
    """
    from cnnkit.checkpoint import load_checkpoint
    from cnnkit.evaluation import evaluate
    from cnnkit.io.atomic import atomic_output, atomic_write_text
    from cnnkit.jsontext import dumps
    from cnnkit.predict import Predictor

    ckpt_cb = trainer.checkpoint_callback  # None without validation
    last = run_dir / "checkpoints" / "last.ckpt"
    best = Path(ckpt_cb.best_model_path) if ckpt_cb and ckpt_cb.best_model_path else None
    if best is not None:
        # Lightning reports an absolute path; name it the way run_dir was named
        # (as the user gave --out), like last_checkpoint.
        best = run_dir / "checkpoints" / best.name
    if "val" not in data.splits and last.is_file():
        best = last.with_name("best.ckpt")  # no validation: the last epoch is the best known
        with atomic_output(best) as temp:
            shutil.copyfile(last, temp)
    model = module.model
    if best is not None and best.is_file():
        model.load_state_dict(load_checkpoint(best).state_dict)
    predictor = Predictor.from_model(
        model, data.classes, data.input, device.torch_device, batch_size
    )
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        if split in data.splits:
            report = evaluate(predictor, data.splits[split])
            metrics[f"{split}_acc"] = round(report.accuracy, 6)
            metrics[f"{split}_loss"] = round(report.loss, 6)
    samples = module.samples_seen * trainer.world_size
    summary = {
        "run_dir": str(run_dir),
        "best_checkpoint": str(best) if best else None,
        "last_checkpoint": str(last) if last.is_file() else None,
        "device": device.torch_device,
        "epochs": int(trainer.current_epoch),
        "train_seconds": round(train_seconds, 3),
        "images_per_second": round(samples / train_seconds, 1) if train_seconds > 0 else None,
        "metrics": metrics,
    }
    atomic_write_text(run_dir / "summary.json", dumps(summary, indent=2) + "\n")
    return summary
