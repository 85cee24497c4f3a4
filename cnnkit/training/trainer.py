"""The Trainer factory: callbacks, loggers and device flags in one place.

Checkpoints go to ``<run>/checkpoints/best.ckpt`` (best val_acc) and
``last.ckpt``; metrics to ``<run>/metrics.csv`` (always) and TensorBoard
events under ``<run>/tensorboard`` when tensorboard is installed. A rich
progress bar only when stderr is a terminal, so logs from batch jobs stay clean.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cnnkit import console
from cnnkit.errors import CnnkitError
from cnnkit.training.fastpath import FixedKeyCheckpoint, StepProgressBar


class TieToNewerCheckpoint(FixedKeyCheckpoint):
    """ModelCheckpoint where an equal score replaces the saved best.

    Accuracy on a small validation set moves in coarse steps, so ties are
    common, and under a decaying learning rate the newer of two equally
    scored epochs is the better-trained one.
    """

    def check_monitor_top_k(self, trainer: L.Trainer, current: Any = None) -> bool:
        if current is None:
            return False
        if len(self.best_k_models) < self.save_top_k or self.save_top_k == -1:
            return True
        import torch

        op = {"min": torch.le, "max": torch.ge}[self.mode]
        decision = bool(op(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)


class InterruptCheckpoint(Callback):
    """On Ctrl-C or SIGTERM, write ``last.ckpt`` as of the moment training stopped.

    Lightning catches KeyboardInterrupt itself (our SIGTERM handler raises a
    subclass), calls ``on_exception`` and then ``sys.exit(1)``; fit() turns
    that into a TrainingInterrupted that names the file. The checkpoint holds
    the loops' progress too, so ``--resume`` picks up at the interrupted step.
    Written through AtomicCheckpointIO (a temporary file, then a rename): a
    second signal during the save leaves the previous ``last.ckpt`` whole.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.interrupted = False
        self.saved: Path | None = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        self.interrupted = True
        diverged = getattr(pl_module, "diverged", None)
        if trainer.world_size > 1 or (diverged is not None and diverged()):
            # Saving is collective under DDP (the other ranks may be gone), and a
            # model that took a NaN step is not worth keeping: the epoch's last.ckpt stays.
            self.saved = self.path if self.path.is_file() else None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(self.path)  # atomic: AtomicCheckpointIO
            self.saved = self.path
        except (OSError, RuntimeError, CnnkitError):
            # Could not write (disk full, interrupted before the model was set
            # up...): the last epoch's checkpoint, if any, is what there is.
            self.saved = self.path if self.path.is_file() else None


class EpochLine(Callback):
    """One line per epoch on stderr when there is no progress bar (logs of batch jobs, pipes).

    ``epoch 3/10: train_loss 0.412 train_acc 0.871 val_loss 0.350 val_acc 0.902 (2.1 s)``,
    from the numbers the module keeps in ``epoch_metrics``. Rank 0 only.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = getattr(pl_module, "epoch_metrics", {})
        parts = [f"{k} {v:.4f}" for k, v in metrics.items()]
        seconds = time.perf_counter() - self._start
        line = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {' '.join(parts)}"
        if self.stream is None:
            console.info(f"{line} ({seconds:.1f} s)")
            return
        self.stream.write(f"{line} ({seconds:.1f} s)\n")
        self.stream.flush()


# last.ckpt is written at the end of the epoch in which this many seconds have
# passed since it was last written, at the end of training and on Ctrl-C/SIGTERM
# (InterruptCheckpoint). Every epoch would cost small, fast epochs a few percent
# of their time; best.ckpt is still written whenever validation improves.
LAST_CHECKPOINT_EVERY_S = 60.0


class LastCheckpoint(Callback):
    """``last.ckpt``: the newest state, for --resume, saved at most every ``every_s`` seconds.

    Saved at an epoch's end once ``every_s`` seconds have passed since the
    last save, and always when training ends. Under DDP rank 0's clock
    decides for every rank (saving is collective).
    """

    def __init__(self, path: str | Path, every_s: float) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._saved_at = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_at = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = time.monotonic() - self._saved_at >= self.every_s
        if trainer.strategy.broadcast(due, src=0):
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_at = time.monotonic()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the final one, then renamed.

    Lightning's own writer goes through fsspec, whose local "transaction"
    writes in the system's temporary folder and then moves the file: across
    file systems that move is a copy, and a full disk leaves a truncated
    best.ckpt behind. Here a failed write removes its temporary file and
    raises one clear error (cnnkit.io.atomic); the previous file stays whole.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        import torch

        from cnnkit.io.atomic import atomic_output

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as temp:
            torch.save(checkpoint, temp)


class FollowCpuLoad(L.Callback):
    """Between training steps, let the thread count follow the machine's load.

    ``follower`` (cnnkit.io.cpuload.Follower) measures at most every few
    seconds; in between, a check is one clock read.
    """

    def __init__(self, follower: Any) -> None:
        self.follower = follower

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.follower.check()


@dataclass(frozen=True)
class TrainerOptions:
    """Flags passed through to Lightning (``devices`` may be an int, "auto" or "0,1")."""

    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    max_epochs: int = 10
    patience: int | None = None
    validate: bool = True  # False: no validation split (best.ckpt is then the last epoch's)
    progress: bool = False
    epoch_lines: bool = False  # one line per epoch on stderr (when there is no progress bar)
    deterministic: bool = True
    limit_batches: float | int | None = None  # tests: fewer batches per epoch
    callbacks: list[Any] = field(default_factory=list)  # added after cnnkit's own


def tensorboard_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def build_trainer(run_dir: str | Path, options: TrainerOptions) -> L.Trainer:
    """A Trainer writing checkpoints and logs into ``run_dir``."""
    run_dir = Path(run_dir)
    best = TieToNewerCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val_acc",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,  # best.ckpt is replaced in place, never best-v1.ckpt
    )
    # Without validation there is nothing to rank epochs by: fit() makes best.ckpt
    # the last epoch's at the end.
    checkpoints = [best] if options.validate else []
    callbacks: list[Any] = [
        *checkpoints,
        LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", LAST_CHECKPOINT_EVERY_S),
        InterruptCheckpoint(run_dir / "checkpoints" / "last.ckpt"),
    ]
    if options.patience:
        callbacks.append(EarlyStopping(monitor="val_acc", mode="max", patience=options.patience))
    if options.progress:
        callbacks.append(StepProgressBar())
    elif options.epoch_lines:
        callbacks.append(EpochLine())
    callbacks += options.callbacks
    # name="" and version="" put metrics.csv directly in the run folder.
    loggers: list[Any] = [CSVLogger(run_dir, name="", version="")]
    if tensorboard_available():
        loggers.append(
            TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False)
        )
    limit = options.limit_batches
    plugins: list[Any] = [AtomicCheckpointIO()]
    if options.devices == 1 and options.num_nodes == 1 and options.strategy == "auto":
        from lightning.pytorch.plugins.environments import LightningEnvironment

        # One process trains: a launcher's variables left in the environment (a
        # Slurm job with several tasks, an exported RANK) must not make Lightning
        # take it for one rank of many, nor refuse the job's task count.
        plugins.append(LightningEnvironment())
    return L.Trainer(
        default_root_dir=run_dir,
        accelerator=options.accelerator,
        devices=options.devices,
        num_nodes=options.num_nodes,
        strategy=options.strategy,
        precision=options.precision,
        max_epochs=options.max_epochs,
        callbacks=callbacks,
        logger=loggers,
        enable_progress_bar=options.progress,
        enable_model_summary=False,
        # "warn" keeps CUDA runs alive where an op has no deterministic kernel.
        deterministic="warn" if options.deterministic else False,
        log_every_n_steps=50,
        num_sanity_val_steps=0,
        limit_train_batches=limit,
        limit_val_batches=limit if options.validate else 0,
        # The datamodule shards data across DDP ranks itself: validation must see
        # each sample once, which Lightning's padded DistributedSampler does not.
        use_distributed_sampler=False,
        plugins=plugins,
        enable_checkpointing=options.validate,  # else Lightning adds a checkpoint of its own
    )
