"""Ray Data: cnnkit's predict as a callable class for ``Dataset.map_batches``, and on a cluster.

- :class:`Predictor` classifies the batches of a Ray Dataset: a ``path``
  column (files, decoded by cnnkit as ``cnnkit predict`` decodes them) or an
  ``image`` column (pixels, as ``ray.data.read_images`` gives them), and
  returns the records of ``cnnkit predict --json`` as typed columns. One
  model is loaded per actor; an ``.onnx`` runs in ONNX Runtime, without torch::

      import ray, cnnkit.ray
      ds = ray.data.read_images("photos/", include_paths=True, mode="RGB")
      out = ds.map_batches(cnnkit.ray.Predictor, fn_constructor_kwargs={"model": "best.onnx"},
                           concurrency=(1, 4), batch_size=64)

- :func:`predict_on_ray` is what ``cnnkit predict --ray`` runs: the same
  class over a Ray cluster (a local one by default), records in input order.

This module's name is its subject's: ``import ray`` here is the real Ray (imports
are absolute). Ray itself is imported only where a cluster is used, so the
class can be built and called without it.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError, InputError

RAY_HINT = "pip install 'cnnkit[ray]'"

# The columns a batch is read from.
PATH = "path"
IMAGE = "image"
# The columns every output batch has: the fields of an image's record, in their order.
COLUMNS = ("path", "label", "score", "topk", "error")
# A video's records add these (windows of a 3D model, frames of a 2D one, the whole video).
VIDEO_COLUMNS = ("window", "start_frame", "end_frame", "start_s", "end_s", "windows", "frame",
                 "time_s")  # fmt: skip

# A local Ray's object store holds the inputs' paths and the records, a unit at a
# time: small. Bounded, so that a laptop's shared memory is not taken for it.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
# Inputs sent to an actor at once by predict_on_ray: at least a batch, and at
# most this many, fewer when there are few (4 units per actor, to balance them).
MAX_UNIT = 1024
UNITS_PER_ACTOR = 4


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or an InputError that says how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data comes with the 'data' extra of ray
    except ImportError:
        raise InputError(
            "running on Ray needs Ray Data, which is not installed", hint=RAY_HINT
        ) from None
    return ray


class Predictor:
    """A callable class for ``ray.data.Dataset.map_batches``: one loaded model per actor.

    ``model``: what ``cnnkit.load`` takes (a .ckpt, an exported .onnx, or
    MODEL:DATA), readable at the same path on every node. The other options
    are ``cnnkit predict``'s: ``top_k``, ``batch_size`` (images per model
    call), ``device``, ``precision``, ``window`` and ``stride`` (videos),
    ``background`` (a colour name or an (R, G, B) tuple), ``workers`` (decode
    threads) and ``threads`` (the model's CPU threads).

    A batch (a dict of numpy arrays, Ray's default, or a pandas DataFrame)
    holds either

    - an ``image`` column: H×W×C (RGB, RGBA) or H×W uint8 arrays, as
      ``ray.data.read_images`` decodes them (with ``mode="RGB"`` for palette
      images; Ray does not apply a photo's EXIF orientation, cnnkit's reader
      does); a ``path`` column beside it is copied into the records; or
    - a ``path`` column: image or video files, read and decoded by cnnkit
      exactly as ``cnnkit predict`` does (a video gives its window or frame
      records, then the whole-video one).

    It returns the records as a pyarrow Table (Ray takes it whatever the
    batch format): ``path``, ``label``, ``score``, ``topk`` (a list of
    {label, score}) and ``error`` (null, or why the input could not be
    classified; then label, score and topk are null), typed alike in every
    batch; batches with video records add ``window``, ``start_frame``,
    ``end_frame``, ``start_s``, ``end_s``, ``windows``, ``frame`` and
    ``time_s``. ``records(batch)`` gives the records as dicts.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        top_k: int = 5,
        *,
        batch_size: int = 32,
        device: str = "auto",
        precision: str = "auto",
        window: int | None = None,
        stride: int | None = None,
        background: str | Sequence[int] | None = None,
        workers: int | None = None,
        threads: int | None = None,
    ) -> None:
        from cnnkit.predict.classifier import _whole, load

        self.top_k = _whole("top_k", top_k)
        for name, value in (("window", window), ("stride", stride)):
            if value is not None:
                _whole(name, value)
        self.window, self.stride = window, stride
        self.classifier = load(model, device, batch_size, workers, threads, precision)
        predictor = self.classifier.predictor
        if background is not None:
            from cnnkit.data.preprocess import parse_colour

            colour = parse_colour(background) if isinstance(background, str) else background
            predictor.set_background(colour)
        if window is not None:
            predictor.check_window(window)
        self.workers = self.classifier._workers

    def __call__(self, batch: Any) -> Any:
        """The batch's records as a pyarrow Table (see the class's docstring)."""
        return table(self.records(batch))

    def records(self, batch: Any) -> list[dict[str, Any]]:
        """The batch's records as ``cnnkit predict --json`` prints them, in order."""
        return self.classify(batch_inputs(batch))

    def classify(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        """Records for PredictInputs, in order: cnnkit predict's own code over them."""
        from cnnkit.io.pipeline import torch_threads_here
        from cnnkit.predict.images import NAMED_CHUNK, predict_inputs

        predictor = self.classifier.predictor
        out: list[dict[str, Any]] = []
        with torch_threads_here(self.workers):
            results = predict_inputs(
                predictor, items, self.top_k, self.window, self.stride, self.workers, NAMED_CHUNK
            )
            try:
                for records in results:
                    out.extend(records)
            finally:
                results.close()
        return out


def batch_inputs(batch: Any) -> list[Any]:
    """A batch's rows as PredictInputs: decoded images, or files to read."""
    from cnnkit.io.sources import kind_of
    from cnnkit.predict.images import PredictInput

    # A dict of numpy arrays (Ray's default), a pandas DataFrame or a pyarrow Table.
    names = list(batch.column_names if hasattr(batch, "column_names") else batch.keys())
    if IMAGE in names:
        images = _column(batch, IMAGE)
        paths = _column(batch, PATH) if PATH in names else [None] * len(images)
        return [_image_input(_path_text(p), image) for p, image in zip(paths, images, strict=True)]
    if PATH not in names:
        raise InputError(
            f"a batch needs a '{PATH}' column (files) or an '{IMAGE}' column (decoded images); "
            f"this one has {', '.join(map(str, names)) or 'no columns'}",
            hint="e.g. ray.data.read_images(DIR, include_paths=True), or "
            "ray.data.from_items([{'path': p} for p in paths])",
        )
    items = []
    for value in _column(batch, PATH):
        path = _path_text(value)
        if path is None:
            items.append(PredictInput(None, error=f"not a path: {value!r}"))
        else:
            items.append(PredictInput(path, kind_of(path) == "video"))
    return items


def _column(batch: Any, name: str) -> Sequence[Any]:
    column = batch[name]
    if isinstance(column, np.ndarray):
        return column
    if hasattr(column, "to_pylist"):  # pyarrow: paths (images need numpy or pandas batches)
        return column.to_pylist()
    return column.to_numpy()  # a pandas Series


def _path_text(value: Any) -> str | None:
    if isinstance(value, str):
        return str(value)  # numpy's str_ as a plain str
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return None


def _image_input(path: str | None, image: Any) -> Any:
    from cnnkit.predict.classifier import _checked
    from cnnkit.predict.images import PredictInput

    if not isinstance(image, np.ndarray):
        return PredictInput(path, error=f"not an image array: {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        return PredictInput(path, error=f"an array of {image.dtype} is not an image (uint8)")
    try:
        return PredictInput(path, image=_checked(image))
    except CnnkitError as exc:
        return PredictInput(path, error=exc.message)


def table(records: Sequence[dict[str, Any]]) -> Any:
    """Records as a pyarrow Table with the same column types in every batch.

    Typed, not inferred: a batch without an error would otherwise have an
    ``error`` column of Arrow's null type, and the files of one dataset
    (``write_parquet``) schemas that do not agree.
    """
    try:
        import pyarrow as pa
    except ImportError:
        raise InputError("cnnkit.ray needs pyarrow (Ray Data's)", hint=RAY_HINT) from None
    text, number, whole = pa.string(), pa.float64(), pa.int64()
    types = {
        "path": text,
        "label": text,
        "score": number,
        "topk": pa.list_(pa.struct([("label", text), ("score", number)])),
        "error": text,
        "window": text,
        "start_frame": whole,
        "end_frame": whole,
        "start_s": number,
        "end_s": number,
        "windows": whole,
        "frame": whole,
        "time_s": number,
    }
    names = list(COLUMNS)
    names += [c for c in VIDEO_COLUMNS if any(c in r for r in records)]
    arrays = []
    for name in names:
        values = [record.get(name) for record in records]
        if types[name] == text:
            values = [_utf8(v) for v in values]
        arrays.append(pa.array(values, type=types[name]))
    return pa.Table.from_arrays(arrays, names=names)


def _utf8(value: Any) -> Any:
    """Text Arrow can hold: a name that is not UTF-8 (surrogate escapes) shows its bytes."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


# ---------------------------------------------------------------------------
# cnnkit predict --ray
# ---------------------------------------------------------------------------


class _UnitPredictor(Predictor):
    """The Predictor as ``predict_on_ray`` uses it: a row is a unit of inputs, pickled.

    A unit is a run of images or one video, so that videos are spread over
    the actors one by one; its records come back pickled as one row, which
    keeps the records exactly as the command prints them (field order, any
    path a file system allows) and puts them back in input order by unit.
    Each input comes with the absolute path it is read from (a worker's
    working folder is not the command's) and the path as given, which its
    records show.
    """

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        from cnnkit.predict.images import PredictInput

        out = np.empty(len(batch["unit"]), dtype=object)
        for i, blob in enumerate(batch["unit"]):
            unit = pickle.loads(blob)
            items = [PredictInput(read, video, error, data) for read, _, video, error, data in unit]
            records = self.classify(items)
            if len(unit) == 1:  # one video's records, or one image's
                for record in records:
                    _as_given(record, unit[0])
            else:  # a run of images: one record each
                for record, fields in zip(records, unit, strict=True):
                    _as_given(record, fields)
            out[i] = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
        return {"records": out}


def _as_given(record: dict[str, Any], fields: tuple[Any, ...]) -> None:
    """A record with its input's path as given, in the path field and in an error's text."""
    read, shown = fields[0], fields[1]
    record["path"] = shown
    error = record.get("error")
    if read != shown and isinstance(error, str):
        record["error"] = error.replace(read, shown)


def predict_on_ray(
    model: str,
    inputs: Sequence[Any],
    top_k: int = 5,
    *,
    batch_size: int = 32,
    window: int | None = None,
    stride: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    background: Sequence[int] | None = None,
    address: str | None = None,
    actors: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Classify ``inputs`` (PredictInputs) on a Ray cluster; record lists in input order.

    ``address``: None connects where ``ray.init()`` does ($RAY_ADDRESS, else a
    new local Ray on this process's CPU budget, with a bounded object store),
    "local" starts a new local one, "auto" joins the one running here, and
    anything else is a cluster's address (``ray://head:10001``). A Ray this
    process has already joined is used as it is. The local Ray this starts
    is shut down at the end. ``actors``: how many models run at once (default:
    one per GPU when ``device`` is auto or cuda and the cluster has GPUs, else
    one per CPU).
    """
    ray = require_ray()
    with _ray_logs_quiet():
        started = _connect(ray, address)
        try:
            yield from _run(ray, model, inputs, top_k, batch_size, window, stride, device,
                            precision, background, actors)  # fmt: skip
        finally:
            if started:
                ray.shutdown()


@contextmanager
def _ray_logs_quiet() -> Iterator[None]:
    """Ray's own output (notes, tips, deprecations, its processes' errors) kept quiet.

    stdout holds the records and stderr cnnkit's notes and error lines; a
    failure is reported as the command's own error line. CNNKIT_DEBUG=1 lets
    Ray's lines through, on stderr. Everything is given back at the end.
    """
    debug = bool(os.environ.get("CNNKIT_DEBUG"))
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]
    levels = [logger.level for logger in loggers]
    # The driver prints the errors that Ray's processes report (a task retried, an actor
    # that died) to stdout, where the records are: they go to stderr under CNNKIT_DEBUG,
    # nowhere otherwise (the failure they lead to is this command's error line).
    worker = sys.modules.get("ray._private.worker")
    printer = getattr(worker, "print_to_stdstream", None)

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        if debug and printer is not None:
            printer({**data, "is_err": True}, ignore_prefix)

    if printer is not None:
        worker.print_to_stdstream = to_stderr  # type: ignore[union-attr]
    if not debug:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        if printer is not None:
            worker.print_to_stdstream = printer  # type: ignore[union-attr]
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _connect(ray: Any, address: str | None) -> bool:
    """Join or start Ray (quietly); whether this call started the connection."""
    if ray.is_initialized():
        return False
    from cnnkit.io.cpu import cpu_budget

    debug = bool(os.environ.get("CNNKIT_DEBUG"))
    options: dict[str, Any] = {
        "include_dashboard": False,
        # Workers' prints would reach this process's stdout, which holds the records.
        "log_to_driver": False,
        "logging_level": logging.DEBUG if debug else logging.ERROR,
    }
    local = address == "local" or (address is None and not os.environ.get("RAY_ADDRESS"))
    if local:
        cores = cpu_budget().cores
        options.update(num_cpus=cores, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    else:
        _check_reachable(address or os.environ.get("RAY_ADDRESS", ""))
    # Ctrl-C and SIGTERM are held while ray.init starts Ray's processes: stopped there,
    # before ray.init records them, its agents outlive the command and ray.shutdown
    # cannot find them. Once it returns, Ray is shut down and the signal goes on to
    # the command's own handlers (exit 130 or 143, outputs cleaned up), which are put
    # back; ray.init's own SIGTERM handler (exit 15 at once) is not installed meanwhile.
    main = threading.current_thread() is threading.main_thread()
    held: list[int] = []
    utils = sys.modules.get("ray._private.utils")
    set_sigterm = getattr(utils, "set_sigterm_handler", None)
    previous = {}
    if main:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda n, _: held.append(n))
        if set_sigterm is not None:
            utils.set_sigterm_handler = lambda handler: None  # type: ignore[union-attr]
    try:
        ray.init(address=address, **options)
    except Exception as exc:  # noqa: BLE001 - Ray's many ways of not connecting
        if debug:
            raise
        where = "a local Ray" if local else f"Ray at {address or os.environ.get('RAY_ADDRESS')}"
        raise InputError(
            f"cannot start or join {where}: {_first_line(exc)}",
            hint="check the address (ray://HEAD:10001, HOST:6379 or auto), or leave it out "
            "for a local Ray",
        ) from None
    finally:
        if set_sigterm is not None and main:
            utils.set_sigterm_handler = set_sigterm  # type: ignore[union-attr]
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    if held:
        ray.shutdown()
        # ray.shutdown puts the default SIGTERM action back beneath Python's handler
        # (found: the process was killed, status -15): the handlers are set again.
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        signal.raise_signal(held[0])  # the command's own handler runs now
    return True


# How long a cluster's address may take to answer before it is said to be unreachable.
CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """InputError unless HOST:PORT (or ray://HOST:PORT) accepts a connection.

    Ray itself retries an address that does not answer for minutes before it
    gives up; a wrong address is better said at once.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray reports on itself
    import socket

    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InputError(
            f"cannot reach Ray at {address}: {reason}",
            hint="start the cluster (ray start --head), or check its address "
            "(ray://HEAD:10001 or HOST:6379)",
        ) from None


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    return text[0] if text else type(exc).__name__


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# How a CnnkitError raised on a worker ends the traceback that Ray reports as text.
_WORKER_ERROR = re.compile(r"^cnnkit\.errors\.\w+: (.*)$", re.MULTILINE)


def _failure(exc: BaseException) -> CnnkitError:
    """The error a failed Ray job is reported as: a worker's CnnkitError where there is one.

    Ray wraps a task's exception (``cause``), but an actor that died in its
    ``__init__`` (a model that does not load there) comes back as the text of
    its traceback only.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(cause, CnnkitError):
            return cause
        current = cause if isinstance(cause, BaseException) else current.__cause__
    found = _WORKER_ERROR.findall(_ANSI.sub("", str(exc)))
    if found:
        message, hint = found[-1], None
        if message.endswith(")") and " (hint: " in message:
            message, _, hint = message[:-1].rpartition(" (hint: ")
        return CnnkitError(f"on a Ray worker: {message}", hint)
    return CnnkitError(
        f"the Ray job failed: {_first_line(exc)}",
        hint="CNNKIT_DEBUG=1 shows Ray's own report; every node needs cnnkit, the model "
        "and the inputs at the same paths",
    )


def _resources(ray: Any, device: str, actors: int | None) -> tuple[int, dict[str, Any], int]:
    """(actors, Ray resources per actor, CPU threads per actor) for the cluster joined."""
    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    cpus = max(1, int(total.get("CPU", 1)))
    wants_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if wants_gpu:
        if gpus == 0:
            raise InputError(
                f"--device {device}: the Ray cluster has no GPU", hint="use --device cpu or auto"
            )
        count = actors or gpus
        return count, {"num_gpus": 1, "num_cpus": 1}, max(1, cpus // count)
    count = actors or cpus
    return count, {"num_cpus": 1}, 1


def _cluster_name(ray: Any) -> str:
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return f"{nodes} Ray node{'s' * (nodes != 1)}"


def _units(inputs: Sequence[Any], size: int) -> list[list[tuple[Any, ...]]]:
    """Inputs in order, cut into runs of up to ``size`` images and single videos."""
    units: list[list[tuple[Any, ...]]] = []
    run: list[tuple[Any, ...]] = []
    for item in inputs:
        read = item.path
        if item.data is None and item.error is None and item.path is not None:
            read = os.path.abspath(item.path)
        fields = (read, item.path, item.is_video, item.error, item.data)
        if item.is_video and not item.error:
            if run:
                units.append(run)
                run = []
            units.append([fields])
            continue
        run.append(fields)
        if len(run) == size:
            units.append(run)
            run = []
    if run:
        units.append(run)
    return units


def _run(
    ray: Any,
    model: str,
    inputs: Sequence[Any],
    top_k: int,
    batch_size: int,
    window: int | None,
    stride: int | None,
    device: str,
    precision: str,
    background: Sequence[int] | None,
    actors: int | None,
) -> Iterator[list[dict[str, Any]]]:
    import ray.data

    from cnnkit import console

    if not inputs:
        return
    count, resources, threads = _resources(ray, device, actors)
    images = sum(1 for item in inputs if not item.is_video)
    size = max(batch_size, min(MAX_UNIT, math.ceil(images / (UNITS_PER_ACTOR * count))))
    units = _units(inputs, size)
    count = min(count, len(units))
    where = "GPU" if "num_gpus" in resources else "CPU"
    console.info(f"ray: {count} actor{'s' * (count > 1)} of 1 {where} on {_cluster_name(ray)}")
    options = {
        # A file's absolute path (a worker's working folder is not this one's); MODEL:DATA as is.
        "model": os.path.abspath(model) if os.path.exists(model) else model,
        "top_k": top_k,
        "batch_size": batch_size,
        "device": "cuda" if "num_gpus" in resources and device == "auto" else device,
        "precision": precision,
        "window": window,
        "stride": stride,
        "background": tuple(background) if background is not None else None,
        "threads": threads,
    }
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    # Records in input order; Ray's progress bars are not the command's (stderr is for
    # cnnkit's notes and errors).
    context.execution_options.preserve_order = True
    context.enable_progress_bars = bool(os.environ.get("CNNKIT_DEBUG"))
    try:
        rows = [{"unit": pickle.dumps(unit, protocol=pickle.HIGHEST_PROTOCOL)} for unit in units]
        # One block per unit: each is a task of its own for whichever actor is free.
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        dataset = dataset.map_batches(
            _UnitPredictor,
            fn_constructor_kwargs=options,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=count),
            **resources,
        )
        for row in dataset.iter_rows():
            yield pickle.loads(row["records"])
    except CnnkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a task or an actor failed on the cluster
        if os.environ.get("CNNKIT_DEBUG"):
            raise
        raise _failure(exc) from None
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
