"""ClassifierModule: any registered model, trained as a classifier with Lightning.

The network is a plain ``nn.Module`` passed in (Lightning's backbone pattern),
so checkpoints hold its weights under ``model.`` and eval/predict rebuild it
without this class. Batches arrive as uint8 and are turned into normalised,
augmented floats on the device, in ``on_after_batch_transfer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from cnnkit.data.augment import BatchAugment
from cnnkit.data.preprocess import normalize
from cnnkit.errors import TrainingError
from cnnkit.models.transfer import frozen_modules
from cnnkit.precision import Compute
from cnnkit.training.fastpath import PlainAttributes, direct_step_counter
from cnnkit.training.options import check_value

# On an accelerator the loss is read back (a device sync) only every this many
# steps and before each validation; see ClassifierModule._watch_loss.
FINITE_CHECK_EVERY = 100
EVAL_INPUT_BYTES = 16 << 20  # float input per validation forward pass (see _eval_step)
# Training batches of at least this many input values on the CPU take hooks that
# let SIGTERM and Ctrl-C in during backward (see _listen_during_backward).
LONG_BACKWARD_VALUES = 1 << 21


def _return_to_python(param: torch.Tensor) -> None:
    """A gradient hook that does nothing: running it lets Python's signal handlers run."""


class ClassifierModule(PlainAttributes, L.LightningModule):
    """Cross-entropy classifier around ``model``: (N, C, H, W) or (N, C, T, H, W) -> logits.

    ``hparams`` (plain Python types only) is saved into every checkpoint, so
    the checkpoint describes itself: model name and args, classes, input spec...
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        lr: float,
        optimizer: str,
        weight_decay: float,
        schedule: str,
        label_smoothing: float,
        augment: BatchAugment | None = None,
        hparams: dict[str, Any] | None = None,
        step_batch_size: int | None = None,
        steps_per_epoch: int | None = None,
        frozen: Sequence[str] = (),
        compute: Compute | None = None,
    ) -> None:
        super().__init__()
        check_value("optimizer", optimizer)
        check_value("schedule", schedule)
        self.save_hyperparameters(hparams or {})
        # How forward passes compute (cnnkit.precision): bf16 autocast and the
        # channels_last layout are applied here, around the model, rather than
        # by Lightning's precision plugin, so the direct optimizer step stays.
        self.compute = compute or Compute()
        self.model = self.compute.prepare_model(model)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.lr = lr
        self.optimizer_name = optimizer
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.label_smoothing = label_smoothing
        self.augment = augment
        # Batches larger than step_batch_size (several batches handed out as
        # one, see InMemoryBatches) are taken one step_batch_size slice at a
        # time: one optimizer step each. steps_per_epoch: optimizer steps in
        # an epoch when that differs from the number of batches Lightning sees.
        self.step_batch_size = step_batch_size
        self.steps_per_epoch = steps_per_epoch
        # validate_args=False: the labels come from our own datasets, and the
        # checks (value ranges on every batch) would cost a device sync each.
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.samples_seen = 0  # training samples on this rank, for images/s
        # The latest epoch's numbers as plain floats (train_loss, train_acc, val_loss,
        # val_acc), for the per-epoch line on stderr.
        self.epoch_metrics: dict[str, float] = {}
        self._direct: tuple[Any, Any] | None = None  # set in on_train_start
        self.automatic_optimization = False
        # --freeze: these submodules of the model (cnnkit.models.transfer) take no
        # gradient and stay in eval mode while the rest trains, so their batch-norm
        # statistics stay those of the loaded weights.
        self._warned_single = False  # see _step_unless_single
        self.frozen = list(frozen)
        self._frozen_modules = frozen_modules(model, self.frozen)
        self._listening: bool | None = None  # see _listen_during_backward
        self.train(self.training)

    def train(self, mode: bool = True) -> ClassifierModule:
        super().train(mode)
        for module in getattr(self, "_frozen_modules", ()):
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        if len(y) == 0:
            return batch  # every file unreadable: no pixels to warp (the steps skip it)
        if x.dtype == torch.uint8:
            x = x.float()  # still 0-255: the warp pads with 0 (black) before normalising
            if self.augment is not None and self.trainer is not None and self.trainer.training:
                x = self.augment(x)
            x = normalize(x, self.mean, self.std)  # the same function eval/predict use
        return x, y

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # Our batches are always (x, y) tensors: move them directly instead of
        # Lightning's walk over arbitrary collections, which runs every batch.
        if (
            isinstance(batch, (tuple, list))
            and len(batch) == 2
            and all(isinstance(t, torch.Tensor) for t in batch)
        ):
            x, y = batch
            if x.device == device and y.device == device:
                return x, y
            non_blocking = device.type not in ("cpu", "mps")
            return x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_train_start(self) -> None:
        self._direct = self._direct_step()
        # A run resumed from a checkpoint saved mid-epoch (Ctrl-C) finishes that
        # epoch without on_train_epoch_start, so the sums must exist already.
        self.on_train_epoch_start()

    def _direct_step(self) -> tuple[Any, Any] | None:
        """(optimizer, step counter) when the step can skip Lightning's wrappers, else None.

        See cnnkit.training.fastpath.direct_step_counter: on one device in
        32-bit precision, ``manual_backward`` and the wrapped optimizer's
        ``step`` add nothing but hook dispatch (none of our callbacks use those
        hooks), about 0.1 ms a step.
        """
        progress = direct_step_counter(self.trainer)
        if progress is None:
            return None
        return self.optimizers(use_pl_optimizer=False), progress

    def on_train_epoch_start(self) -> None:
        # Running sums kept on the device: calling self.log and a metric's
        # update on every training step costs as much as a small model's
        # forward pass, so training metrics are logged once per epoch.
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._seen = 0
        self._bad_step = torch.full((), -1, device=self.device, dtype=torch.long)
        self._bad_loss = torch.zeros((), device=self.device)
        self._train_logged = False
        self.epoch_metrics = {}

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        if len(y) == 0:  # every file of this batch was unreadable: nothing to learn from
            if self.trainer.world_size > 1:
                self._null_step()
        elif self.step_batch_size is None or len(y) <= self.step_batch_size:
            self._step_unless_single(x, y)
        else:
            for xs, ys in zip(
                x.split(self.step_batch_size), y.split(self.step_batch_size), strict=True
            ):
                self._step_unless_single(xs, ys)
        if batch_idx + 1 == self.trainer.num_training_batches:
            # Logged at the epoch's last batch, before validation and before the
            # progress bar and callbacks close the epoch, so they show this epoch's numbers.
            self._check_model_finite(x[-(self.step_batch_size or len(x)) :])
            self._log_train_epoch()

    def _step_unless_single(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """An optimizer step, except on one sample that batch norm cannot normalise.

        A last batch of one sample (10 samples in batches of 3) reaching a
        batch-norm layer on a 1×1 map (ResNets at small --img-size) has one value
        per channel, and batch norm cannot train on that: the step is skipped,
        said once on stderr. (Batch-norm layers before that one have already
        counted the sample in their running statistics, as any forward pass would.)
        """
        try:
            self._optimizer_step(x, y)
        except ValueError as exc:
            if len(y) != 1 or "more than 1 value per channel" not in str(exc):
                raise
            if not self._warned_single:
                self._warned_single = True
                from cnnkit import console

                console.warn(
                    "a training batch of 1 sample is skipped: batch norm on a 1×1 map needs "
                    "2 (choose a --batch-size that does not leave 1 sample over, or a larger "
                    "--img-size)"
                )
            if self.trainer.world_size > 1:
                self._null_step()

    def _optimizer_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # Manual optimisation: the same zero_grad/backward/step an expert's loop
        # does, without automatic optimisation's closure machinery, which costs
        # about 0.1 ms a step (a tenth of LeNet-5's step on a CPU). Lightning
        # still handles precision (grad scaling) and DDP in manual_backward/step.
        n = len(y)
        if self._listening is None:
            self._listen_during_backward(x)
        logits = self._forward(x)  # first: a batch batch norm refuses counts as not seen
        self.samples_seen += n
        self._seen += n
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self._watch_loss(loss)
        self._step_on(loss)
        with torch.no_grad():
            self._loss_sum.add_(loss.detach(), alpha=n)  # in place: no Module.__setattr__
            self._correct.add_((logits.argmax(1) == y).sum())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits for ``x``, computed as ``self.compute`` says."""
        x = self.compute.prepare_input(x)
        with self.compute.context(x.device.type):
            logits = self.model(x)
        return logits.float()  # the loss and the metrics in float32

    def _listen_during_backward(self, x: torch.Tensor) -> None:
        """On the CPU, with large batches, let SIGTERM and Ctrl-C in during backward.

        backward() runs the whole graph in C++ on this thread, and Python's
        signal handlers run only between bytecodes: one backward of resnet18
        on 64 224×224 images took 8 s on 2 cores, deaf to signals all along.
        A hook that does nothing, after each weight's gradient is accumulated,
        runs Python there, the handler raises, and the interrupt leaves
        backward() as it is (0.3 s). Small batches, whose backward is
        milliseconds, are spared the hooks' cost; on a GPU backward runs on a
        device thread, where handlers never run. Decided on the first batch.
        """
        self._listening = x.device.type == "cpu" and x.numel() >= LONG_BACKWARD_VALUES
        if self._listening:
            for param in self.model.parameters():
                if param.requires_grad and param.dim() > 1:  # one per layer: weights only
                    param.register_post_accumulate_grad_hook(_return_to_python)

    def _step_on(self, loss: torch.Tensor) -> None:
        """zero_grad, backward, optimizer step and schedule step for ``loss``."""
        direct = self._direct
        if direct is not None:
            opt, progress = direct
            opt.zero_grad(set_to_none=True)
            loss.backward()
            progress.increment_ready()
            opt.step()
            progress.increment_completed()
        else:
            opt = self.optimizers()
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()

    def _null_step(self) -> None:
        """This rank's share of a DDP step that has no samples here.

        The other ranks wait in the gradient all-reduce for this one, so it
        joins with zero gradients (a loss that touches every parameter, times
        0) and then takes the same optimizer and schedule step as they do,
        with the gradients they averaged: the replicas stay identical.
        """
        params = [p for p in self.model.parameters() if p.requires_grad]
        self._step_on(torch.stack([p.sum() for p in params]).sum() * 0.0)

    def _watch_loss(self, loss: torch.Tensor) -> None:
        """Stop with TrainingError when ``loss`` (a scalar) is NaN or infinite.

        On the CPU reading the loss costs nothing, so every step is checked
        before the optimizer step: the weights never take a NaN update. On an
        accelerator, reading it forces a device sync that stalls the queue of
        kernels every step (a measurable slowdown for small models), so the
        first bad step is recorded on the device without a sync and read every
        FINITE_CHECK_EVERY steps and before validation, which comes before any
        epoch's checkpoint is written: a NaN model is never saved either way.
        """
        if loss.device.type == "cpu":
            if not torch.isfinite(loss):
                self._raise_not_finite(float(loss.detach()), self.global_step)
            return
        with torch.no_grad():
            first = (self._bad_step < 0) & ~torch.isfinite(loss)
            self._bad_step.copy_(torch.where(first, self.global_step, self._bad_step))
            self._bad_loss.copy_(torch.where(first, loss.detach().float(), self._bad_loss))
        if (self.global_step + 1) % FINITE_CHECK_EVERY == 0:
            self.check_loss_finite()

    def diverged(self) -> bool:
        """True when a NaN or infinite loss was seen and not yet reported (one sync)."""
        bad_step = getattr(self, "_bad_step", None)
        return bad_step is not None and int(bad_step) >= 0

    def check_loss_finite(self) -> None:
        """Raise TrainingError if a NaN or infinite loss was recorded on the device."""
        if self.diverged():
            self._raise_not_finite(float(self._bad_loss), int(self._bad_step))

    def _raise_not_finite(self, value: float, step: int) -> None:
        word = "nan" if value != value else "inf"
        raise TrainingError(
            f"the loss became {word} at epoch {self.current_epoch + 1} step {step + 1}",
            hint=f"lower --lr (it is {self.lr:g}), e.g. --lr {self.lr / 10:g}",
        )

    def on_validation_start(self) -> None:
        # Before validation, hence before this epoch's checkpoints are written.
        self.check_loss_finite()

    def _log_train_epoch(self) -> None:
        self.check_loss_finite()
        self._train_logged = True
        # Sums over every rank under DDP: the numbers are the whole epoch's, on every rank.
        reduce = self.trainer.strategy.reduce
        seen = float(reduce(torch.tensor(float(self._seen), device=self.device), reduce_op="sum"))
        if seen == 0:
            return
        loss = float(reduce(self._loss_sum.clone(), reduce_op="sum")) / seen
        acc = float(reduce(self._correct.float(), reduce_op="sum")) / seen
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train_acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        self.epoch_metrics.update(train_loss=loss, train_acc=acc)

    def _check_model_finite(self, x: torch.Tensor) -> None:
        """TrainingError when the epoch's last step left the model unusable.

        Each step's loss is checked before its update, so a huge learning rate
        can still blow the weights up in the epoch's last step; without a
        validation split nothing else would notice before the checkpoint is
        written. The weights, and the model's outputs on that last batch (eval
        mode: batch-norm statistics are not touched), must be finite.
        """
        finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if finite and len(x):
            self.model.eval()
            with torch.no_grad():
                finite = bool(torch.isfinite(self.model(x)).all())
            self.train()  # back to training, the frozen modules (--freeze) staying in eval
        if not finite:
            raise TrainingError(
                f"the model's weights or outputs became nan or inf at epoch "
                f"{self.current_epoch + 1}",
                hint=f"lower --lr (it is {self.lr:g}), e.g. --lr {self.lr / 10:g}",
            )

    def on_train_epoch_end(self) -> None:
        self.check_loss_finite()
        if not self._train_logged:  # a loader whose length Lightning does not know
            self._log_train_epoch()

    # Validation: the loss summed and the accuracy metric updated on the device
    # each batch, both logged once per epoch (the test split is measured after
    # training, by cnnkit.evaluation's runner, as eval does). Logging per batch
    # (self.log with on_epoch=True) costs about 1 ms a batch in Lightning's
    # result collection, more than a small model's forward pass.

    def _eval_start(self, metric: MulticlassAccuracy) -> None:
        metric.reset()
        self._eval_loss_sum = torch.zeros((), device=self.device)
        self._eval_seen = torch.zeros((), device=self.device)

    def _eval_step(self, batch: Any, metric: MulticlassAccuracy) -> None:
        x, y = batch
        if len(y) == 0:
            return
        # Without gradients to keep, larger forward passes cost less per sample than
        # training-sized ones: as many samples as EVAL_INPUT_BYTES of float input,
        # and never fewer than a training batch.
        per_sample = max(1, x[0].numel() * 4)
        size = max(self.step_batch_size or 1, EVAL_INPUT_BYTES // per_sample)
        for xs, ys in zip(x.split(size), y.split(size), strict=True):
            logits = self._forward(xs)
            self._eval_loss_sum.add_(F.cross_entropy(logits, ys, reduction="sum"))
            self._eval_seen.add_(len(ys))
            metric.update(logits, ys)

    def _eval_end(self, stage: str, metric: MulticlassAccuracy) -> None:
        # Sums over all ranks under DDP (the metric syncs itself in compute()).
        loss_sum = self.trainer.strategy.reduce(self._eval_loss_sum, reduce_op="sum")
        seen = self.trainer.strategy.reduce(self._eval_seen, reduce_op="sum")
        if float(seen) == 0:
            return
        # Both are already reduced over every rank, so sync_dist only averages equal
        # values; it also tells Lightning the values are global, which they are.
        loss, acc = loss_sum / seen, metric.compute()
        if not torch.isfinite(loss):  # before on_validation_end: no checkpoint is written
            raise TrainingError(
                f"the {stage} loss became {float(loss)} at epoch {self.current_epoch + 1}",
                hint=f"lower --lr (it is {self.lr:g}), e.g. --lr {self.lr / 10:g}",
            )
        self.log(f"{stage}_loss", loss, prog_bar=True, sync_dist=True)
        self.log(f"{stage}_acc", acc, prog_bar=True, sync_dist=True)
        self.epoch_metrics.update({f"{stage}_loss": float(loss), f"{stage}_acc": float(acc)})

    def on_validation_epoch_start(self) -> None:
        self._share_buffers()
        self._eval_start(self.val_acc)

    def _share_buffers(self) -> None:
        """Under DDP, give every rank rank 0's buffers (batch-norm statistics) before validating.

        Each rank updates its running statistics from its own batches, and DDP
        only broadcasts them before training steps, so without this each rank
        would validate a slightly different model, and none of them exactly
        the one rank 0 saves in the checkpoint.
        """
        if self.trainer.world_size <= 1:
            return
        for buffer in self.model.buffers():
            torch.distributed.broadcast(buffer, src=0)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, self.val_acc)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val", self.val_acc)

    def configure_optimizers(self) -> Any:
        # Frozen parameters are left out: the optimizer (and its weight decay) never sees them.
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(
                params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay
            )
        if self.schedule == "none":
            return opt
        if self.steps_per_epoch is not None:
            steps = max(1, self.steps_per_epoch * int(self.trainer.max_epochs))
        else:
            steps = max(1, int(self.trainer.estimated_stepping_batches))
        if self.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
