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
import shlex
import shutil
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cnnkit import __version__, console
from cnnkit.errors import CheckpointError, InputError, TrainingError
from cnnkit.models.sizes import check_input_fits
from cnnkit.training.cpushare import CpuShare
from cnnkit.training.decisions import input_size_decisions, run_decisions
from cnnkit.training.options import (
    TrainConfig,
    recorded_options,
)
from cnnkit.training.plan import TrainPlan, plan
from cnnkit.training.rundir import LATEST, RUN_DIR_ENV, new_run_dir, point_latest_at, write_config
from cnnkit.training.start import (
    apply_normalisation,
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


def _meta(
    cfg: TrainConfig,
    data: Any,
    hflip: bool,
    decisions: dict[str, str],
    start: dict[str, Any],
    compute: Any,
) -> Any:
    """The checkpoint's self-description (cnnkit.spec.CheckpointMeta)."""
    from cnnkit.spec import CheckpointMeta

    options = recorded_options(cfg)
    # Absolute, so eval finds the files from any working directory.
    options["data_dir"] = str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None
    options["hflip"] = hflip  # what augmentation did, whatever the flag said
    # How it computed, whatever --precision said: eval and predict follow it.
    options["compute"] = compute.record()
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


def _config_yaml(
    cfg: TrainConfig, meta: Any, data: Any, device: Any, resumed: Any, cpu: dict[str, Any]
) -> dict:
    from cnnkit.io.image import full_decode_forced

    return {
        **{k: v for k, v in asdict(cfg).items() if k not in ("explicit", "command_line")},
        "determinism": dict(DETERMINISM),
        "device_resolved": device.torch_device,
        "device_reason": device.reason,
        "cpu_budget": dict(cpu),
        "compute": dict(meta.options["compute"]),
        "data": {
            "name": data.name,
            "kind": data.kind,
            "sizes": data.sizes(),
            "in_memory": data.in_memory,
            # Large JPEGs decoded at a reduced scale: pixels a level or so from a full decode.
            "jpeg_reduced_decode": not full_decode_forced(),
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
    import torch  # noqa: F401  (loaded before its thread count is capped)

    from cnnkit.io.cpu import cpu_budget
    from cnnkit.io.pipeline import torch_threads_at_most

    _quiet_lightning()
    # torch's default is every core of the machine, a container's quota or a
    # job's affinity notwithstanding: this thread computes on the budget.
    with torch_threads_at_most(cpu_budget().cores):
        return run(plan(cfg))


def run(p: TrainPlan) -> dict[str, Any] | None:
    """Load the data, build the model and its starting weights, train, measure."""
    from cnnkit.data.registry import load_dataset

    cfg, start = p.cfg, p.start
    data = load_dataset(p.request)
    check_input_fits(cfg.model, data.input.shape())
    apply_normalisation(start, data)
    has_val = "val" in data.splits
    if not has_val and cfg.patience:  # a dataset that held no validation split after all
        raise InputError(
            "--patience stops on validation accuracy, and --val-split 0 leaves no validation split",
            hint="drop --patience, or keep a validation split (e.g. --val-split 0.1)",
        )
    decisions = run_decisions(cfg, data, has_val, start)
    stream = None
    if not data.in_memory:
        from cnnkit.data.streaming import stream_split
        from cnnkit.io.cpu import cpu_budget

        stream = stream_split(cpu_budget().cores, p.device.accelerator, cfg.workers)
        decisions["cpu_split"] = stream.reason
    shrunk = False
    if not p.resumed:
        sizes, shrunk = input_size_decisions(cfg, data, p.request, start)
        decisions.update(sizes)
    else:  # the input is the checkpoint's, as decided when its run began: kept on record
        earlier = dict(getattr(p.resumed.meta, "decisions", None) or {})
        for key in ("img_size", "frames"):
            if key in earlier:
                decisions.setdefault(key, earlier[key])
    hflip = bool(cfg.augment and (data.hflip if cfg.flip is None else cfg.flip))
    if not p.is_child:
        sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
        where = "in memory" if data.in_memory else "decoded from files"
        console.info(f"data: {data.name}, {len(data.classes)} classes, {sizes} ({where})")
        for key, note in decisions.items():
            (console.warn if shrunk and key == "img_size" else console.info)(note)
        if data.kind == "image":
            from cnnkit.io.image import reduced_decode_note

            console.detail(reduced_decode_note())

    model = _build_model(cfg, data)
    resumed = _check_resume(p.resumed, cfg.model, data) if p.resumed else None
    start_record = start_model(model, start, list(data.classes), cfg.freeze, not p.is_child,
                               cfg.model)  # fmt: skip
    compute = _compute(cfg, p.device, model, data)
    decisions["precision"] = compute.line()
    if not p.is_child:
        (console.warn if compute.emulated else console.info)(compute.line())
    meta = _meta(cfg, data, hflip, decisions, start_record, compute)
    share = CpuShare(p)
    if p.child_run_dir is not None:
        run_dir = Path(p.child_run_dir)
    else:
        run_dir = new_run_dir(cfg.out, cfg.name)
        write_config(run_dir, _config_yaml(cfg, meta, data, p.device, resumed, share.record))
        console.info(f"run folder: {run_dir}")

    trainer, module, datamodule = _assemble(p, data, model, meta, hflip, has_val, run_dir,
                                            start_record.get("frozen", []), compute,
                                            stream)  # fmt: skip
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP ranks started from here share the folder
    if p.child_run_dir is None and not point_latest_at(run_dir):
        link = run_dir.parent / LATEST
        console.warn(
            f"{link} is not cnnkit's link to the newest run (a file or folder of that name, or "
            f"no links here): it was left as it is, and this run is {run_dir}"
        )
    if share.follower is not None:
        from cnnkit.data.streaming import ModelThreads
        from cnnkit.training.trainer import FollowCpuLoad

        # Streamed data: the load follower sets the model's threads within what
        # the decoding workers leave it.
        for callback in trainer.callbacks:
            if isinstance(callback, ModelThreads):
                callback.follow(share.follower)
        trainer.callbacks.append(FollowCpuLoad(share.follower))
    try:
        began = time.perf_counter()
        _run_fit(trainer, module, datamodule, cfg)
        train_seconds = time.perf_counter() - began
    finally:
        share.end()
        if not p.is_child:
            os.environ.pop(RUN_DIR_ENV, None)
    if not trainer.is_global_zero:
        return None
    from cnnkit.data.streaming import ModelThreads

    threads = next((c for c in trainer.callbacks if isinstance(c, ModelThreads)), None)
    return _finish(trainer, module, data, run_dir, p.device, cfg.batch_size, train_seconds,
                   threads.decision if threads is not None else None)  # fmt: skip


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


def _compute(cfg: TrainConfig, device: Any, model: Any, data: Any) -> Any:
    """How the model computes on ``device`` (cnnkit.precision): precision and layout."""
    from cnnkit.precision import choose

    dims = 1 + len(data.input.shape())
    return choose(cfg.precision, device.accelerator, model, dims, index=device.index)


def _assemble(p, data, model, meta, hflip, has_val, run_dir, frozen, compute, stream=None):
    """The LightningModule, the datamodule and the Trainer for this run.

    ``stream``: how streamed data shares the CPU (cnnkit.data.streaming.StreamSplit).
    """
    from cnnkit.data.augment import BatchAugment
    from cnnkit.data.datamodule import ClassifierDataModule
    from cnnkit.data.streaming import ModelThreads
    from cnnkit.training.fastpath import steps_per_batch
    from cnnkit.training.module import ClassifierModule
    from cnnkit.training.trainer import TrainerOptions, build_trainer

    cfg, device, is_child, devices = p.cfg, p.device, p.is_child, p.devices
    if device.index is not None:
        devices = [device.index]
    group = steps_per_batch(data, cfg.batch_size, devices, cfg.num_nodes)
    datamodule = ClassifierDataModule(
        data,
        cfg.batch_size,
        workers=stream.workers if stream is not None else cfg.workers,
        seed=cfg.seed,
        steps_per_batch=group,
        pin_memory=device.accelerator == "cuda",
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
        compute=compute,
    )
    trainer = build_trainer(
        run_dir,
        TrainerOptions(
            accelerator=device.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=compute.lightning_precision,
            max_epochs=cfg.epochs,
            patience=cfg.patience,
            validate=has_val,
            progress=console.progress_enabled(),
            epoch_lines=not is_child and not console.is_quiet() and not console.progress_enabled(),
            limit_batches=cfg.limit_batches,
            callbacks=[ModelThreads(stream)] if stream is not None else [],
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


def _finish(trainer, module, data, run_dir: Path, device, batch_size: int, train_seconds: float,
            cpu_split: str | None = None):  # fmt: skip
    """Measure the best checkpoint on val and test, write summary.json, return the summary.

    The measurement is ``cnnkit eval``'s own runner, so eval of best.ckpt
    repeats these numbers exactly. ``cpu_split``: how streamed data shared the
    CPU with the model, as it turned out (see cnnkit.data.streaming.ModelThreads).
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
        model, data.classes, data.input, device.torch_device, batch_size, compute=module.compute
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
    if cpu_split is not None:
        summary["cpu_split"] = cpu_split
    atomic_write_text(run_dir / "summary.json", dumps(summary, indent=2) + "\n")
    return summary
