"""fit(): the core of ``cnnkit train``, from a TrainConfig to a summary dict.

Steps, each a small function: resolve device and defaults, load the data,
build the model, make the run folder, write config.yaml, let Lightning train,
evaluate the best checkpoint on val (and test), write summary.json.

Under ``--strategy ddp`` on one machine Lightning starts the other ranks by
running the same command line again; those processes find the run folder in
$CNNKIT_RUN_DIR (set by rank 0 before it launches them) instead of making a
new one, and only rank 0 writes files and returns a summary.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnkit import __version__, console
from cnnkit.errors import CheckpointError, DatasetError, InputError, ModelError, TrainingError
from cnnkit.models.sizes import check_input_fits

RUN_DIR_ENV = "CNNKIT_RUN_DIR"

# Per data kind: what reaches the README's accuracy figures without flags.
# The image defaults were chosen on 4,000 real MNIST digits (README): batch 64
# and label smoothing 0.1 together took simplecnn's 10-epoch test accuracy
# from 97.9-98.6% (batch 128, no smoothing, seeds 0-3) to 98.7-99.2% (seeds
# 0-7); either alone gained about half as much (seeds 0-1). Small data learns
# more per epoch from more, smaller steps: LeNet-5 after 5 epochs was at 93%
# with batch 128 and is at 96-97% with batch 64.
DEFAULTS = {
    "image": {
        "model": "simplecnn",
        "epochs": 10,
        "batch_size": 64,
        "lr": 3e-3,
        "label_smoothing": 0.1,
    },
    "video": {
        "model": "c3d_small",
        "epochs": 3,
        "batch_size": 32,
        "lr": 3e-3,
        "label_smoothing": 0.0,
    },
}
MAX_IMG_SIZE = 4096  # a 4096² RGB batch of 128 is already 6 GiB of uint8
# In one process, in-memory batches are handed to Lightning's loop several at a
# time (at most this many, and this many bytes of uint8 input): its per-batch
# work, about 0.4 ms on a CPU, a twentieth of LeNet-5's step, is then paid once
# for several optimizer steps. The idea of Keras's steps_per_execution.
MAX_STEPS_PER_BATCH = 16
STEPS_GROUP_BYTES = 8 << 20
# What `cnnkit train` sets for reproducibility; recorded in config.yaml and checkpoints.
DETERMINISM = {"deterministic": "warn", "seed_workers": True}


@dataclass
class TrainConfig:
    """Every option of ``cnnkit train``; None means "the default for this data"."""

    dataset: str = "shapes"
    model: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str = "adamw"
    weight_decay: float | None = None
    schedule: str = "cosine"
    label_smoothing: float | None = None
    augment: bool = True
    flip: bool | None = None  # horizontal flips in augmentation; None: the data's default
    img_size: int | None = None
    frames: int | None = None
    val_split: float = 0.1
    seed: int = 0
    device: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    workers: int | None = None
    patience: int | None = None
    out: str = "runs"
    name: str | None = None
    resume: str | None = None
    pretrained: bool = False
    data_dir: str | None = None
    limit: int | None = None
    limit_batches: float | None = None
    command_line: list[str] = field(default_factory=list)
    # The options given on the command line; None: all of them (calls from Python).
    # With --resume, the others come from the checkpoint instead of the defaults.
    explicit: list[str] | None = None


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped training; ``checkpoint`` (or None) resumes it."""

    def __init__(self, checkpoint: Path | None, epoch: int, step: int, command: str) -> None:
        super().__init__(f"training interrupted at epoch {epoch} step {step}")
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
        self.resume_command = command


# ---------------------------------------------------------------------------
# run folder
# ---------------------------------------------------------------------------


def new_run_dir(out: str | Path, name: str | None) -> Path:
    """Create ``out/name`` (default ``out/train``, ``out/train-2``, ...); never reuse one.

    An explicit ``--name`` that exists is an error: a run is never overwritten,
    and ``--resume`` continues in a new folder too (recorded in config.yaml).
    """
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(
            f"--out {out} is a file, not a folder", hint="give a folder for the run folders"
        ) from None
    except OSError as exc:
        raise _unwritable(out, exc) from None
    if name is not None:
        if not name or "/" in name or name in (".", ".."):
            raise InputError(f"--name {name!r} is not a folder name", hint="e.g. --name digits")
        path = out / name
        try:
            path.mkdir()
        except PermissionError as exc:
            raise _unwritable(out, exc) from None
        except FileExistsError:
            raise InputError(
                f"run folder {path} already exists",
                hint="choose another --name, or leave --name out for a numbered one "
                "(--resume always starts a new run folder)",
            ) from None
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


def _unwritable(out: Path, exc: OSError) -> InputError:
    return InputError(
        f"cannot create a run folder in {out}: {exc.strerror or exc}",
        hint="choose a folder you can write to with --out",
    )


def write_config(run_dir: Path, resolved: dict[str, Any]) -> None:
    import yaml

    from cnnkit.io.atomic import atomic_write_text

    text = yaml.safe_dump(resolved, sort_keys=False, default_flow_style=False)
    atomic_write_text(run_dir / "config.yaml", text)


# ---------------------------------------------------------------------------
# resolution of defaults
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


def resolve_defaults(cfg: TrainConfig, kind: str) -> dict[str, Any]:
    """model, epochs, batch_size, lr, label_smoothing: cfg's where given, else the data kind's."""
    chosen = dict(DEFAULTS[kind])
    for key in chosen:
        if getattr(cfg, key) is not None:
            chosen[key] = getattr(cfg, key)
    return chosen


def _parse_devices(devices: str) -> Any:
    text = str(devices).strip()
    if text == "auto" or text == "-1":
        return text if text == "auto" else -1
    if re.fullmatch(r"\d+", text):
        n = int(text)
        if n < 1:
            raise InputError("--devices must be at least 1", hint="e.g. --devices 2")
        return n
    if re.fullmatch(r"\d+(,\d+)*,?", text):
        return [int(v) for v in text.split(",") if v]
    raise InputError(
        f"--devices {devices!r} is not a count or a list",
        hint="e.g. --devices 2, --devices 0,1 or --devices auto",
    )


def validate_options(cfg: TrainConfig) -> None:
    """Refuse out-of-range numbers before any data is read.

    Typer's ranges let NaN through (every comparison with NaN is false) and
    cannot say "above 0", so these are checked here, for Python callers too.
    """

    def bad(flag: str, value: Any, why: str, example: str) -> InputError:
        return InputError(f"{flag} {value} {why}", hint=f"e.g. {flag} {example}")

    for flag, value, example in (
        ("--lr", cfg.lr, "0.003"),
        ("--weight-decay", cfg.weight_decay, "0.05"),
        ("--label-smoothing", cfg.label_smoothing, "0.1"),
    ):
        if value is not None and not math.isfinite(value):
            raise bad(flag, value, "is not a finite number", example)
    if cfg.lr is not None and cfg.lr <= 0:
        raise bad("--lr", cfg.lr, "must be above 0", "0.003")
    if cfg.weight_decay is not None and cfg.weight_decay < 0:
        raise bad("--weight-decay", cfg.weight_decay, "must be 0 or more", "0.05")
    if cfg.label_smoothing is not None and not 0 <= cfg.label_smoothing < 1:
        raise bad("--label-smoothing", cfg.label_smoothing, "must be in [0, 1)", "0.1")
    from cnnkit.data.registry import check_val_split

    check_val_split(cfg.val_split)
    if cfg.flip and not cfg.augment:
        raise InputError(
            "--flip is part of augmentation, which --no-augment turns off",
            hint="drop --no-augment, or drop --flip",
        )
    for flag, value, low, example in (
        ("--epochs", cfg.epochs, 1, "10"),
        ("--batch-size", cfg.batch_size, 1, "64"),
        ("--frames", cfg.frames, 1, "8"),
        ("--workers", cfg.workers, 0, "4"),
        ("--patience", cfg.patience, 0, "5"),
        ("--num-nodes", cfg.num_nodes, 1, "1"),
        ("--limit", cfg.limit, 1, "1000"),
    ):
        if value is not None and value < low:
            raise bad(flag, value, f"must be at least {low}", example)
    if cfg.img_size is not None and not 4 <= cfg.img_size <= MAX_IMG_SIZE:
        raise bad("--img-size", cfg.img_size, f"must be between 4 and {MAX_IMG_SIZE}", "64")
    _parse_devices(cfg.devices)


def apply_resume_defaults(cfg: TrainConfig, hparams: dict[str, Any]) -> TrainConfig:
    """``cfg`` with the options not given on the command line taken from the checkpoint.

    ``hparams`` are the checkpoint's hyper_parameters; what they do not record
    keeps cfg's value. Calls from Python (``explicit`` None) are used as given.
    """
    if cfg.explicit is None:
        return cfg
    options = hparams.get("options") or {}
    recorded: dict[str, Any] = {
        "dataset": hparams.get("dataset"),
        "model": hparams.get("model_name"),
        "seed": hparams.get("seed"),
        "frames": (hparams.get("input") or {}).get("frames"),
    }
    size = (hparams.get("input") or {}).get("size")
    if isinstance(size, list) and len(size) == 2 and size[0] == size[1]:
        recorded["img_size"] = size[0]  # checkpoints from before img_size was recorded
    for key in (
        "epochs",
        "batch_size",
        "lr",
        "optimizer",
        "weight_decay",
        "schedule",
        "label_smoothing",
        "augment",
        "flip",
        "val_split",
        "limit",
        "img_size",
        "data_dir",
    ):
        if options.get(key) is not None:
            recorded[key] = options[key]
    changes = {
        k: v
        for k, v in recorded.items()
        if k not in cfg.explicit and v is not None and k in TrainConfig.__dataclass_fields__
    }
    return TrainConfig(**{**asdict(cfg), **changes})


def _resume_command(checkpoint: Path, cfg: TrainConfig) -> str:
    """The command line that continues an interrupted run from ``checkpoint``."""
    words = ["cnnkit", "train", "--resume", str(checkpoint)]
    if cfg.out != "runs":
        words += ["--out", cfg.out]
    if cfg.device != "auto":
        words += ["--device", cfg.device]
    return shlex.join(words)


def _check_model_fits(model: str, dims: int, kind: str) -> None:
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


# ---------------------------------------------------------------------------
# evaluation of the best checkpoint (plain loop: rank 0, no Lightning needed)
# ---------------------------------------------------------------------------


def evaluate_split(model: Any, data: Any, batch_size: int, input_spec: Any, device: str):
    """(accuracy, mean loss) of ``model`` over a TensorSplit or file Dataset."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from cnnkit.data.folders import collate_skipping
    from cnnkit.data.memory import InMemoryBatches, TensorSplit
    from cnnkit.data.preprocess import normalize

    if isinstance(data, TensorSplit):
        batches = InMemoryBatches(data, batch_size, shuffle=False, train=False)
    else:
        batches = DataLoader(data, batch_size=batch_size, collate_fn=collate_skipping)
    model = model.to(device).eval()
    correct, total, loss_sum = 0, 0, 0.0
    with torch.inference_mode():
        for x, y in batches:
            if len(y) == 0:
                continue
            x = normalize(x.to(device), input_spec.mean, input_spec.std)
            logits = model(x).float()
            y = y.to(device)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1), loss_sum / max(total, 1)


# ---------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------


def _quiet_lightning() -> None:
    # Lightning's "GPU available: False" banner and advice lines are noise in a CLI.
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
    ):
        warnings.filterwarnings("ignore", message=message)


def fit(cfg: TrainConfig) -> dict[str, Any] | None:
    """Train per ``cfg``; return the summary (rank 0) or None (other DDP ranks)."""

    from cnnkit.data.augment import BatchAugment
    from cnnkit.data.datamodule import ClassifierDataModule
    from cnnkit.data.registry import DatasetRequest, load_dataset, memory_budget_from_env
    from cnnkit.device import resolve_device
    from cnnkit.models.registry import create_model, get_model_spec

    _quiet_lightning()
    child_run_dir = os.environ.get(RUN_DIR_ENV)
    is_child = bool(child_run_dir) and os.environ.get("LOCAL_RANK", "0") != "0"

    epochs_done = None
    if cfg.resume:
        from cnnkit.checkpoint import load_checkpoint

        # Before anything is read: an unsafe or damaged file is refused first, and
        # the options it records are the defaults of the resumed run.
        resumed_ckpt = load_checkpoint(cfg.resume)
        cfg = apply_resume_defaults(cfg, resumed_ckpt.hparams)
        epochs_done = resumed_ckpt.epochs_done
    validate_options(cfg)
    device = resolve_device(cfg.device)
    kind = _data_kind(cfg.dataset)
    chosen = resolve_defaults(cfg, kind)
    model_name, epochs, batch_size = chosen["model"], chosen["epochs"], chosen["batch_size"]
    lr, label_smoothing = chosen["lr"], chosen["label_smoothing"]
    spec = get_model_spec(model_name)
    _check_model_fits(model_name, spec.dims, kind)
    if not is_child:
        console.info(f"device: {device.accelerator} ({device.reason})")
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size)):
        if value < 1:
            raise InputError(f"{flag} must be at least 1, got {value}", hint=f"e.g. {flag} 10")
    if epochs_done is not None and epochs <= epochs_done:
        raise InputError(
            f"--resume {cfg.resume} has trained {epochs_done} epoch(s) already, and --epochs "
            f"is the total to reach ({epochs}), so nothing is left to train",
            hint=f"give --epochs above {epochs_done}, e.g. --epochs {epochs_done + max(epochs, 1)}",
        )
    if cfg.img_size or cfg.frames:
        # Sizes given on the command line are checked before any data is read.
        check_input_fits(model_name, _planned_shape(spec, cfg))

    request = DatasetRequest(
        name=cfg.dataset,
        data_dir=cfg.data_dir,
        img_size=cfg.img_size,
        frames=cfg.frames,
        val_split=cfg.val_split,
        seed=cfg.seed,
        limit=cfg.limit,
        default_size=tuple(spec.default_input_size[-2:]),
        default_frames=spec.default_input_size[1] if spec.dims == 3 else 8,
        memory_budget=memory_budget_from_env(),
    )
    data = load_dataset(request)
    check_input_fits(model_name, data.input.shape())
    has_val = "val" in data.splits
    if not has_val and cfg.patience:
        raise InputError(
            "--patience stops on validation accuracy, and --val-split 0 leaves no validation split",
            hint="drop --patience, or keep a validation split (e.g. --val-split 0.1)",
        )
    decisions = _decisions(cfg, data, has_val)
    hflip = bool(cfg.augment and (data.hflip if cfg.flip is None else cfg.flip))
    if not is_child:
        sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
        where = "in memory" if data.in_memory else "decoded from files"
        console.info(f"data: {data.name}, {len(data.classes)} classes, {sizes} ({where})")
        for note in decisions.values():
            console.info(note)

    import lightning as L

    # Seed before the model is built: its initial weights come from the global RNG.
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model_args: dict[str, Any] = {"pretrained": True} if cfg.pretrained else {}
    try:
        model = create_model(
            model_name,
            num_classes=data.num_classes,
            in_channels=data.input.channels,
            input_size=data.input.shape(),
            **model_args,
        )
    except ModelError as exc:
        if cfg.pretrained:
            raise ModelError(
                f"model '{model_name}' has no pretrained weights in cnnkit",
                hint="leave out --pretrained (nothing is downloaded)",
            ) from exc
        raise
    resumed = None
    if cfg.resume:
        resumed = _check_resume(cfg.resume, model_name, data.classes)

    options = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": cfg.optimizer,
        "weight_decay": cfg.weight_decay,
        "schedule": cfg.schedule,
        "label_smoothing": label_smoothing,
        "augment": cfg.augment,
        "flip": cfg.flip,
        "hflip": hflip,
        "val_split": cfg.val_split,
        "limit": cfg.limit,
        "img_size": cfg.img_size,
        "frames": cfg.frames,
        # Absolute, so eval finds the files from any working directory.
        "data_dir": str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None,
    }
    hparams = {
        "model_name": model_name,
        "model_args": model_args,
        "classes": list(data.classes),
        "input": data.input.to_dict(),
        "dataset": data.name,
        "data_kind": data.kind,
        "cnnkit_version": __version__,
        "seed": cfg.seed,
        "determinism": dict(DETERMINISM),
        "options": options,
    }

    if is_child:
        run_dir = Path(child_run_dir)
    else:
        run_dir = new_run_dir(cfg.out, cfg.name)
        resolved = {
            **{k: v for k, v in asdict(cfg).items() if k != "explicit"},
            "determinism": dict(DETERMINISM),
            "model": model_name,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "label_smoothing": label_smoothing,
            "device_resolved": device.torch_device,
            "device_reason": device.reason,
            "data": {
                "name": data.name,
                "kind": data.kind,
                "sizes": data.sizes(),
                "in_memory": data.in_memory,
            },
            "input": data.input.to_dict(),
            "classes": list(data.classes),
            "decisions": decisions,
            "resumed_from": str(resumed) if resumed else None,
            "command_line": " ".join(cfg.command_line),
        }
        write_config(run_dir, resolved)
        console.info(f"run folder: {run_dir}")

    from cnnkit.training.module import ClassifierModule
    from cnnkit.training.trainer import TrainerOptions, build_trainer

    augment = None
    if cfg.augment:
        augment = BatchAugment(hflip=hflip)
    devices = _parse_devices(cfg.devices)
    if device.index is not None:
        devices = [device.index]
    group = steps_per_batch(data, batch_size, devices, cfg.num_nodes)
    datamodule = ClassifierDataModule(
        data, batch_size, workers=cfg.workers, seed=cfg.seed, steps_per_batch=group
    )
    module = ClassifierModule(
        model,
        num_classes=data.num_classes,
        mean=data.input.mean,
        std=data.input.std,
        lr=lr,
        optimizer=cfg.optimizer,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        label_smoothing=label_smoothing,
        augment=augment,
        hparams=hparams,
        step_batch_size=batch_size,
        steps_per_epoch=datamodule.optimizer_steps_per_epoch() if group > 1 else None,
    )
    trainer = build_trainer(
        run_dir,
        TrainerOptions(
            accelerator=device.accelerator,
            devices=devices,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=cfg.precision,
            max_epochs=epochs,
            patience=cfg.patience,
            validate=has_val,
            progress=console.progress_enabled(),
            epoch_lines=not is_child and not console.is_quiet() and not console.progress_enabled(),
            limit_batches=cfg.limit_batches,
        ),
    )
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
    return _finish(trainer, module, data, run_dir, device, batch_size, train_seconds)


def _planned_shape(spec: Any, cfg: TrainConfig) -> tuple[int, ...]:
    """The input shape --img-size / --frames ask for, the model's defaults filling the rest."""
    default = tuple(spec.default_input_size)
    h, w = (cfg.img_size, cfg.img_size) if cfg.img_size else default[-2:]
    if spec.dims == 3:
        return (default[0], cfg.frames or default[1], h, w)
    return (default[0], h, w)


def _decisions(cfg: TrainConfig, data: Any, has_val: bool) -> dict[str, str]:
    """What was decided for the user, in words: the data's own notes, then flips and validation."""
    decisions = dict(data.decisions)
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


NVML_CHECK_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"


@contextmanager
def _cuda_check_without_nvml(on_cpu: bool) -> Iterator[None]:
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


def steps_per_batch(data: Any, batch_size: int, devices: Any, num_nodes: int) -> int:
    """How many optimizer steps each batch Lightning sees holds (see MAX_STEPS_PER_BATCH).

    1 for data decoded from files (workers already overlap the loop) and
    whenever more than one process trains: DDP needs every rank to take the
    same number of steps, which one step per batch guarantees.
    """
    single = devices == 1 or (isinstance(devices, list) and len(devices) == 1)
    if not data.in_memory or not single or num_nodes != 1:
        return 1
    sample_bytes = math.prod(data.input.shape())
    return max(1, min(MAX_STEPS_PER_BATCH, STEPS_GROUP_BYTES // (batch_size * sample_bytes)))


def _run_fit(trainer: Any, module: Any, datamodule: Any, cfg: TrainConfig) -> None:
    """trainer.fit, with Ctrl-C/SIGTERM and a diverging loss turned into clear reports."""
    from lightning.pytorch.accelerators import CPUAccelerator

    from cnnkit.training.trainer import InterruptCheckpoint

    saver = next(c for c in trainer.callbacks if isinstance(c, InterruptCheckpoint))
    last = saver.path
    try:
        with _cuda_check_without_nvml(isinstance(trainer.accelerator, CPUAccelerator)):
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
        where = (
            f"the last good checkpoint is {last}"
            if last.is_file()
            else "no checkpoint was written before it"
        )
        raise TrainingError(f"{exc.message}; {where}", hint=exc.hint) from None


def _check_resume(path: str, model_name: str, classes: list[str]) -> Path:
    """Refuse a --resume checkpoint that is unsafe or does not match this run."""
    from cnnkit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)  # weights_only=True: refuses files that need code
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
    return ckpt.path


def _finish(trainer, module, data, run_dir: Path, device, batch_size: int, train_seconds: float):
    """Evaluate the best checkpoint, write summary.json, return the summary."""
    import torch

    from cnnkit.checkpoint import load_checkpoint
    from cnnkit.io.atomic import atomic_output, atomic_write_text
    from cnnkit.jsontext import dumps

    ckpt_cb = trainer.checkpoint_callback
    last = run_dir / "checkpoints" / "last.ckpt"
    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else None
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
    eval_device = device.torch_device if torch.device(device.torch_device).type != "mps" else "mps"
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        if split in data.splits:
            acc, loss = evaluate_split(
                model, data.splits[split], batch_size, data.input, eval_device
            )
            metrics[f"{split}_acc"] = round(acc, 6)
            metrics[f"{split}_loss"] = round(loss, 6)
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
