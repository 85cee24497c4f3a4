"""Where cnnkit reaches inside Lightning for speed: the one module that does.

Lightning's loop costs about 0.4 ms a batch on a CPU, a twentieth of
LeNet-5's whole step, plus bookkeeping that runs on every hook call. To train
at the speed of a hand-written loop, cnnkit:

1. hands in-memory batches to Lightning several at a time (``steps_per_batch``)
   and takes one optimizer step per ``batch_size`` slice in the module: the
   same batches in the same order, Lightning's loop paid once for several
   steps (the idea of Keras's ``steps_per_execution``);
2. on one device in 32-bit precision, steps the optimizer directly and
   advances the counter Lightning's wrapped optimizer would
   (``direct_step_counter``: ``fit_loop.epoch_loop.manual_optimization.
   optim_step_progress``), so ``global_step``, checkpoints and resume stay exact;
3. keeps ModelCheckpoint's ``state_key`` from being rebuilt on every hook
   call (``FixedKeyCheckpoint``);
4. shows optimizer steps in the rich progress bar (``StepProgressBar``: the
   bar's ``_update``, ``train_progress_bar_id``, ``_initialize_train_progress_bar_id``
   and ``_get_train_description``, which also counts epochs from 1);
5. stores plain attributes that Lightning sets around every hook call
   without ``nn.Module.__setattr__``'s checks (``PlainAttributes``);
6. on the CPU, lets torch answer "is CUDA available?" without reloading NVML
   in every Adam step (``cuda_check_without_nvml``).

The ``lightning`` requirement in pyproject.toml (the 2.6 series) is the range
these were checked against; ``check_internals()`` names any of them a Lightning release has
moved, and a test calls it, so an upgrade fails one clear test instead of
slowing or breaking training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

# In-memory batches reach Lightning at most this many at a time, and at most
# this many bytes of uint8 input (large images and clips stay at one).
MAX_STEPS_PER_BATCH = 16
STEPS_GROUP_BYTES = 8 << 20

NVML_CHECK_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"


def steps_per_batch(data: Any, batch_size: int, devices: Any, num_nodes: int) -> int:
    """How many optimizer steps each batch Lightning sees holds.

    1 for data decoded from files (workers already overlap the loop) and
    whenever more than one process trains: DDP needs every rank to take the
    same number of steps, which one step per batch guarantees.
    """
    single = devices == 1 or (isinstance(devices, list) and len(devices) == 1)
    if not data.in_memory or not single or num_nodes != 1:
        return 1
    sample_bytes = math.prod(data.input.shape())
    return max(1, min(MAX_STEPS_PER_BATCH, STEPS_GROUP_BYTES // (batch_size * sample_bytes)))


def direct_step_counter(trainer: L.Trainer) -> Any | None:
    """The counter Lightning's wrapped optimizer advances in manual optimisation, or None.

    None when the step cannot skip Lightning's wrappers: under DDP or mixed
    precision they do real work (gradient sync, loss scaling), and a
    Lightning without this counter keeps the wrapped path.
    """
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy

    if type(trainer.strategy) is not SingleDeviceStrategy:
        return None
    if type(trainer.strategy.precision_plugin) is not Precision:
        return None
    loop = getattr(trainer.fit_loop.epoch_loop, "manual_optimization", None)
    return getattr(loop, "optim_step_progress", None)


@contextmanager
def cuda_check_without_nvml(on_cpu: bool) -> Iterator[None]:
    """On the CPU, let torch answer "is CUDA available?" without NVML while training.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, and Adam/AdamW
    ask that question in every ``step()``. Until CUDA is initialised (never,
    in a CPU run) torch does not cache the NVML answer, so on a machine with
    a CUDA build of torch each step tries to load the NVML library again:
    about 85 us, some 1% of LeNet-5's step. The variable only changes how
    ``torch.cuda.is_available()`` finds its answer; it is restored afterwards.
    """
    saved = os.environ.get(NVML_CHECK_ENV)
    if not on_cpu or saved is None:
        yield
        return
    del os.environ[NVML_CHECK_ENV]
    try:
        yield
    finally:
        os.environ[NVML_CHECK_ENV] = saved


class PlainAttributes:
    """Mixin for a LightningModule: plain values set on existing plain attributes skip nn.Module.

    Lightning sets bookkeeping attributes (_current_fx_name...) around every
    hook call, some 25 times a step, and nn.Module.__setattr__'s type checks
    make that a measurable share of a small model's step. An existing plain
    attribute given a plain value is stored exactly as nn.Module would.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__ and isinstance(value, (str, int, float, bool, type(None))):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class FixedKeyCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``state_key`` is worked out once.

    Lightning formats ``[Callback]{state_key}.{hook}`` for every callback on
    every hook call, several times a step, and ModelCheckpoint builds its key
    from a repr of its settings each time. The settings the key describes
    are fixed at construction, so the value never changes. The key names
    ModelCheckpoint, not the subclass, so checkpoints read the same as with
    Lightning's own class (cnnkit.checkpoint and resume look for it there).
    """

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_fixed_state_key")
        if key is None:
            key = self.__dict__["_fixed_state_key"] = self._make_state_key()
        return key

    def _make_state_key(self) -> str:
        key = ModelCheckpoint.state_key.fget(self)
        return key.replace(type(self).__qualname__, "ModelCheckpoint", 1)


class StepProgressBar(RichProgressBar):
    """Rich progress on stderr that counts optimizer steps, and epochs from 1.

    In-memory data reaches Lightning several batches at a time (one Lightning
    batch, several optimizer steps: see ``steps_per_batch``); the module's
    ``steps_per_epoch`` then says how many steps an epoch has, and
    ``global_step`` how many are done. Without it, steps and batches agree.
    """

    def __init__(self) -> None:
        # stderr: results (--json) go to stdout, progress never does.
        super().__init__(leave=True, console_kwargs={"stderr": True})

    def _steps_per_epoch(self) -> int | None:
        return getattr(self.trainer.lightning_module, "steps_per_epoch", None)

    def _get_train_description(self, current_epoch: int) -> str:
        # Epochs counted from 1, as people count them ("Epoch 1/3", not "Epoch 0/2").
        text = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None:
            text += f"/{self.trainer.max_epochs}"
        return f"{text:{len(self.validation_description)}}"

    @property
    def total_train_batches(self) -> int | float:
        return self._steps_per_epoch() or super().total_train_batches

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        steps = self._steps_per_epoch()
        if not steps:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()  # a resume from the middle of an epoch
        # Every epoch has the same number of steps, so the step within this one is:
        done = trainer.global_step - trainer.current_epoch * steps
        self._update(self.train_progress_bar_id, done)
        self._update_metrics(trainer, pl_module)
        self.refresh()


def check_internals() -> list[str]:
    """The Lightning internals above that this Lightning lacks (empty when all are there)."""
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    missing = []
    loop = getattr(trainer.fit_loop, "epoch_loop", None)
    progress = getattr(getattr(loop, "manual_optimization", None), "optim_step_progress", None)
    for method in ("increment_ready", "increment_completed"):
        if not callable(getattr(progress, method, None)):
            missing.append(f"fit_loop.epoch_loop.manual_optimization.optim_step_progress.{method}")
    if not isinstance(getattr(ModelCheckpoint, "state_key", None), property):
        missing.append("ModelCheckpoint.state_key (a property)")
    bar = RichProgressBar()
    for name in (
        "_update",
        "_update_metrics",
        "_initialize_train_progress_bar_id",
        "_get_train_description",
        "train_progress_bar_id",
        "validation_description",
    ):
        if not hasattr(bar, name):
            missing.append(f"RichProgressBar.{name}")
    return missing
