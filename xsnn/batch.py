"""Explaining a whole data set: ``xsnn explain-batch`` and ``xsnn summarize``.

**One pure task.** :func:`explain_instance` explains one instance (an index into a data set,
its image and label) and returns one JSON-ready row. It builds its own solvers (python-sat
solvers cannot be pickled, so nothing but the image and a few settings travels) and takes the
model from the per-process worker cache (:func:`worker_model`): model loading and the import
of the solver stack are paid once per worker process, by its first task (that row's
``timings.setup_s``), not once per image.

**Engines.** The same task runs on

* local worker processes (``--jobs N``): :class:`LocalEngine`, a
  :class:`concurrent.futures.ProcessPoolExecutor` (standard library, no optional dependency,
  spawn start method; at most ``N`` instances in flight, so the instances lost with a dead
  worker are known exactly);
* any ``distributed`` (Dask) scheduler (``--scheduler ADDRESS``): :class:`DaskEngine`, e.g.
  ``dask scheduler`` plus ``dask worker ADDRESS --nworkers 16 --nthreads 1`` by hand, or a
  dask-jobqueue cluster on Slurm. Workers need xsnn installed and, for a model given by path,
  the file at that path.

Results stream back as they complete; only the driver writes the output.

**Tasks.** What runs per instance is the batch's *task* (:class:`BatchTask`): explaining
(:class:`WorkerSetup`, ``xsnn explain-batch``) or comparing SHAP with the formal explanations
(:class:`xsnn.compare.CompareSetup`, ``xsnn compare``). The task says how to run one instance,
which row records a failed one, which row field holds the instance index and which columns the
output keeps; the engines, the output file, resuming and the progress line are the same for all.

**Output.** One JSON line per instance (:func:`make_row`), written and flushed as each
finishes (a task with columns may write CSV instead: a header line, then one line per row).
``status`` is the explanation's (``complete``, ``timeout`` (a sound partial result: the
explanation is sufficient, minimality not fully proven), ``undecided``, ...) or one of
``no-explanation`` (the instance has none of the asked kind), ``error`` (the task raised) and
``failed`` (the workers running it kept dying). Resuming (:class:`ResultsFile`) skips every id
that has a row; a last line without its newline (a crash while writing) is dropped and redone;
``--retry STATUS`` first removes the rows of those statuses so that they are redone. Every id
ends up exactly once.

**Faults.** Local: a worker that dies breaks the pool; the pool is restarted and the instances
that were in flight are resubmitted, each one alone first (so a poison instance is identified),
and recorded as ``failed`` after ``max_attempts`` deaths. Dask: the scheduler reschedules the
tasks of a dead worker (its ``allowed-failures`` setting), ``retries`` re-runs a task that
raised. Ctrl-C terminates the workers; every flushed row stays, and ``--resume`` completes the
rest.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, TextIO

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from xsnn.model import BSNN

__all__ = [
    "BatchError",
    "BatchData",
    "BatchSettings",
    "BatchTask",
    "Instance",
    "WorkerSetup",
    "LocalEngine",
    "DaskEngine",
    "ResultsFile",
    "Progress",
    "FINAL_STATUSES",
    "load_batch_data",
    "parse_indices",
    "explain_instance",
    "run_task",
    "worker_model",
    "make_row",
    "read_results",
    "csv_value",
    "run_batch",
    "summarize",
    "format_summary",
    "add_batch_commands",
]

log = logging.getLogger(__name__)

# Statuses a row can have: the explanation's (xsnn.explanation.STATUSES; its "error", no explanation
# of the asked kind exists, is called "no-explanation" here), then the batch's own.
FINAL_STATUSES = ("complete", "timeout", "undecided", "limit", "interrupted", "no-explanation", "error", "failed")
TROUBLE = ("error", "failed")  # a run that recorded any of these exits with status 1
DEFAULT_TIME_LIMIT = 120.0
DEFAULT_MAX_ATTEMPTS = 3


class BatchError(ValueError):
    """Bad batch input (arguments, files, data, output): one line, exit status 2 on the command line."""


# --------------------------------------------------------------------------- data and settings


@dataclass(frozen=True)
class BatchData:
    """The data set of a batch: ``name`` (as recorded in each row), uint8 images ``(n, ...)``, labels or None."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.images)


def load_batch_data(source: str, *, data_dir: str | None = None, split: str = "test") -> BatchData:
    """``source``: ``mnist-test`` / ``mnist-train`` (from ``data_dir`` or ``$XSNN_DATA``), ``sample``
    (the 200 shipped test images), a folder of MNIST IDX files (its ``split``) or an ``.npz`` file
    (:func:`xsnn.data.load_image_set`)."""
    from xsnn import data

    if source in ("mnist-test", "mnist-train"):
        images, labels = data.load_mnist(source.split("-")[1], data_dir)
    elif source == "sample":
        images, labels = data.load_sample()
    elif Path(source).is_dir():
        images, labels = data.load_mnist(split, source)
        source = f"{source} ({split})"
    elif source.endswith(".npz") or Path(source).is_file():
        images, labels = data.load_image_set(source)
    else:
        raise BatchError(
            f"--data {source!r} is neither mnist-test, mnist-train, sample, a folder of MNIST IDX "
            f"files nor an .npz file of images"
        )
    return BatchData(source, images, None if labels is None else np.asarray(labels, dtype=np.int64))


def parse_indices(text: str | None, n: int, *, what: str = "the data", clip: bool = False) -> list[int]:
    """``"0:10000"``, ``"5"``, ``"0:100:2"``, ``"1,7,20:30"`` (Python slices, stop excluded; ``None``:
    everything) -> the indices, in order, without repeats. Every index must lie in ``0..n-1``;
    ``clip``: a slice that reaches past the data stops at its end instead."""
    if text is None or not text.strip():
        return list(range(n))
    out: dict[int, None] = {}
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                fields = part.split(":")
                if len(fields) > 3:
                    raise ValueError
                start, stop, step = (int(f) if f.strip() else None for f in (fields + [""] * 3)[:3])
                start = 0 if start is None else start
                stop = n if stop is None else stop
                step = 1 if step is None else step
                if step <= 0 or start < 0 or stop < start:
                    raise ValueError
                if stop > n and clip:
                    stop = max(start, n)
                if stop > n:
                    raise BatchError(
                        f"--indices {text!r}: {part} reaches index {stop - 1} but {what} has {n} images (0..{n - 1})"
                    )
                chosen = range(start, stop, step)
            else:
                chosen = [int(part)]
                if not 0 <= chosen[0] < n:
                    raise BatchError(
                        f"--indices {text!r}: index {chosen[0]} is out of range; {what} has {n} images (0..{n - 1})"
                    )
        except ValueError as exc:
            if isinstance(exc, BatchError):
                raise
            raise BatchError(
                f"--indices {text!r}: {part!r} is not an index or a slice START:STOP[:STEP] with "
                f"0 <= START <= STOP and STEP > 0 (e.g. 0:10000, 5, 1,7,20:30)"
            ) from None
        out.update(dict.fromkeys(chosen))
    if not out:
        raise BatchError(f"--indices {text!r} selects no image")
    return list(out)


@dataclass(frozen=True)
class Instance:
    """One instance of a batch: its index in the data set (the row's ``id``), image and label."""

    index: int
    image: np.ndarray
    label: int | None


class BatchTask(Protocol):
    """The per-instance work of a batch: small and picklable (it travels to every worker with
    each instance), with the model named by ``model`` and checked by ``model_hash`` (a worker
    loads it once: :func:`worker_model`).

    ``name`` names the task (Dask keys, logs); ``id_field`` is the row field that holds the
    instance index; ``columns``: the fields the output keeps, in order (None: whole rows, as
    JSON lines only; with columns a ``.csv`` output is possible).
    """

    name: ClassVar[str]
    id_field: ClassVar[str]
    columns: ClassVar[tuple[str, ...] | None]
    model: str
    model_hash: str

    def run(self, instance: Instance) -> dict:
        """The row of one instance; errors of the work itself become rows (status ``error``)."""

    def failed_row(self, instance: Instance, error: str, attempts: int) -> dict:
        """The row of an instance whose workers kept dying (status ``failed``)."""

    def question(self) -> dict:
        """The fields that make rows comparable (a resumed output must agree on all of them)."""

    def record(self, row: dict) -> dict:
        """The compact record of a row for resuming and summaries: ``id``, ``status``,
        ``question`` (the row's :meth:`question` fields) and whatever the summaries read."""


@dataclass(frozen=True)
class WorkerSetup:
    """The explanation task (:class:`BatchTask`): what every instance needs besides itself.

    ``model``: shipped name or path (a worker loads it itself: models are not sent per task);
    ``model_hash``: the driver's :meth:`~xsnn.model.BSNN.content_hash`, checked on each worker.
    """

    name: ClassVar[str] = "explain"
    id_field: ClassVar[str] = "id"
    columns: ClassVar[tuple[str, ...] | None] = None

    model: str
    model_hash: str
    kind: str = "axp"
    distance: int | None = None
    time_limit: float | None = DEFAULT_TIME_LIMIT
    data: str = ""

    def question(self) -> dict:
        """The fields that make rows comparable (a resumed output must agree on all of them)."""
        return {"model_hash": self.model_hash, "kind": self.kind, "distance": self.distance, "data": self.data}

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "model_hash": self.model_hash,
            "kind": self.kind,
            "distance": self.distance,
            "time_limit": self.time_limit,
            "data": self.data,
        }

    def run(self, instance: Instance) -> dict:
        return explain_instance(self, instance)

    def failed_row(self, instance: Instance, error: str, attempts: int) -> dict:
        return make_row(self, instance.index, instance.label, None, "failed", error=error, attempt=attempts)

    @staticmethod
    def record(row: dict) -> dict:
        return _record(row)


# --------------------------------------------------------------------------- the per-instance task

# The per-process worker cache: (model, content hash) -> loaded model. Filled by the first task a
# worker process runs; never emptied (a worker serves one batch, or batches of the same models).
_WORKER_MODELS: dict[tuple[str, str], BSNN] = {}
_WORKER_LOCK = threading.Lock()  # Dask workers may run several tasks of one process in threads


def worker_model(setup: BatchTask) -> tuple[BSNN, float]:
    """The model of ``setup`` from this process's worker cache, and the seconds spent loading it now
    (0 when cached). The first call also imports the solver stack. Raises :class:`BatchError` when
    the file found here is not the driver's model (content hash mismatch)."""
    key = (setup.model, setup.model_hash)
    with _WORKER_LOCK:
        if key in _WORKER_MODELS:
            return _WORKER_MODELS[key], 0.0
        start = time.perf_counter()
        import xsnn.api  # noqa: F401  (the solver stack: imported once per worker, timed as setup)
        from xsnn.model import load_model

        model = load_model(setup.model)
        if model.content_hash() != setup.model_hash:
            raise BatchError(
                f"model {setup.model!r} on worker {_worker_name()} has content hash "
                f"{model.content_hash()[:12]}..., the driver's has {setup.model_hash[:12]}..."
            )
        _WORKER_MODELS[key] = model
        return model, time.perf_counter() - start


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _explain(model: BSNN, image: np.ndarray, setup: WorkerSetup, source: dict):
    """The one call into the explanation API (:func:`xsnn.explain`)."""
    import xsnn

    return xsnn.explain(
        model, image, setup.kind, max_distance=setup.distance, time_limit=setup.time_limit, source=source
    )


def explain_instance(setup: WorkerSetup, instance: Instance) -> dict:
    """Explain one instance; the row for the output (see :func:`make_row`).

    It shares nothing with other tasks but the worker cache, so it runs the same in any process
    and order (an AXp is determined by the instance and the settings; it is the same wherever it
    is computed). Errors of the explanation itself become rows (``no-explanation``, ``error``);
    only a broken worker (e.g. a wrong model file on it) raises.
    """
    start = time.perf_counter()
    model, setup_seconds = worker_model(setup)
    explanation, error, status, prediction, explain_seconds = None, None, None, None, None
    cpu = time.process_time()
    try:
        result = _explain(model, instance.image, setup, {"data": setup.data, "index": instance.index})
        status, prediction, explain_seconds = result.status, int(result.prediction), round(result.seconds, 4)
        if status == "error":  # no explanation of this kind exists (e.g. no CXp: the prediction cannot change)
            status, error = "no-explanation", str(result.stats.get("error"))
        else:
            explanation = result.to_dict(proof=False)
            del explanation["instance"]  # the image is the data set's image ``id``
    except BatchError:
        raise
    except Exception as exc:  # noqa: BLE001  (recorded in the row; the batch goes on)
        status, error = "error", f"{type(exc).__name__}: {exc}"
    cpu = time.process_time() - cpu
    if prediction is None:
        try:
            prediction = _predict(model, instance.image)
        except Exception:  # noqa: BLE001  (the image itself is unusable; the error says why)
            prediction = None
    return make_row(
        setup,
        instance.index,
        instance.label,
        prediction,
        status,
        explanation=explanation,
        error=error,
        timings={
            "explain_s": explain_seconds,
            "cpu_s": round(cpu, 4),
            "task_s": round(time.perf_counter() - start, 4),
            "setup_s": round(setup_seconds, 4),
        },
        worker=_worker_name(),
    )


def _predict(model: BSNN, image: np.ndarray) -> int:
    import xsnn

    return int(xsnn.predict(model, np.asarray(image)[None])[0])


def make_row(
    setup: WorkerSetup,
    index: int,
    label: int | None,
    prediction: int | None,
    status: str,
    *,
    explanation: dict | None = None,
    error: str | None = None,
    timings: dict | None = None,
    worker: str | None = None,
    attempt: int = 1,
) -> dict:
    """One output row: ``id`` (index in the data set), ``label``, ``prediction`` (class label),
    ``status``, ``size``, ``explanation`` (:meth:`xsnn.Explanation.to_dict` without the proof and
    the instance), ``certificate_sha256`` (the proof's digest), ``timings``, ``worker``,
    ``attempt``, ``error`` and ``run`` (the batch settings)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return {
        "id": int(index),
        "label": None if label is None else int(label),
        "prediction": None if prediction is None else int(prediction),
        "status": status,
        "size": None if explanation is None else explanation.get("size"),
        "explanation": explanation,
        "certificate_sha256": None if explanation is None else explanation.get("proof_digest"),
        "timings": dict(timings or {}),
        "worker": worker,
        "attempt": int(attempt),
        "error": error,
        "run": setup.as_dict(),
    }


# --------------------------------------------------------------------------- engines


def run_task(setup: BatchTask, instance: Instance) -> dict:
    """What a worker runs: ``setup.run(instance)`` (a module-level function: it pickles by name)."""
    return setup.run(instance)


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the driver's to handle (it terminates the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalEngine:
    """``jobs`` local worker processes (``ProcessPoolExecutor``, spawn), restarted when one dies.

    At most ``jobs`` instances are in flight, so when a worker dies the instances it may have
    held are exactly the ones in flight: each is run again, alone (nothing else in flight), and
    recorded as ``failed`` once ``max_attempts`` workers died while it was in flight.
    ``max_tasks_per_worker`` recycles each worker after that many instances (1: a fresh process
    per instance, setup paid every time -- the baseline of ``benchmarks/batch.py``). ``task``: the
    per-instance function ``(setup, instance) -> row`` (a module-level function, so that it
    pickles by name); by default the setup's own :meth:`BatchTask.run`.
    """

    def __init__(
        self,
        jobs: int = 1,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_tasks_per_worker: int | None = None,
        task: Callable[[BatchTask, Instance], dict] = run_task,
    ) -> None:
        if jobs < 1:
            raise BatchError(f"--jobs must be at least 1, got {jobs}")
        if max_attempts < 1:
            raise BatchError(f"--max-attempts must be at least 1, got {max_attempts}")
        self.jobs = jobs
        self.max_attempts = max_attempts
        self.max_tasks_per_worker = max_tasks_per_worker
        self.task = task
        self.restarts = 0

    def describe(self) -> str:
        return f"{self.jobs} local worker process{'es' if self.jobs > 1 else ''}"

    def check(self) -> None:
        """Nothing to connect to."""

    def close(self) -> None:
        """Nothing to release (each :meth:`results` call owns its pool)."""

    def _pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            self.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_sigint,
            max_tasks_per_child=self.max_tasks_per_worker,
        )

    def results(self, setup: BatchTask, instances: Iterable[Instance]) -> Iterator[dict]:
        """Rows as instances finish (any order); every instance yields exactly one row."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        todo = deque(instances)
        deaths: Counter[int] = Counter()  # instance index -> workers that died while it was in flight
        breaks, finished = 0, 0
        while todo:
            before = set(multiprocessing.active_children())
            pool = self._pool()
            running: dict = {}
            broken: list[Instance] = []
            try:
                while todo or running:
                    while todo and len(running) < self.jobs:
                        if deaths[todo[0].index] and running:
                            break  # an instance whose worker died runs alone
                        instance = todo.popleft()
                        running[pool.submit(self.task, setup, instance)] = instance
                        if deaths[instance.index]:
                            break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        instance = running.pop(future)
                        try:
                            row = future.result()
                        except BrokenProcessPool:
                            broken.append(instance)
                            continue
                        if "attempt" in row:
                            row["attempt"] = deaths[instance.index] + 1
                        finished += 1
                        yield row
                    if broken:
                        break
            finally:
                if broken or running:  # a dead worker, or the consumer stopped early (Ctrl-C, error)
                    broken += list(running.values())
                    running.clear()
                    _stop_pool(pool, set(multiprocessing.active_children()) - before)
                else:
                    pool.shutdown(wait=True)
            if not broken:
                continue
            self.restarts += 1
            breaks += 1
            if not finished and breaks > 2 * self.max_attempts:
                raise RuntimeError(
                    f"the worker processes died {breaks} times before finishing any instance; "
                    f"giving up (see the log above)"
                )
            log.warning(
                "a worker process died; restarting the pool and retrying %d instance(s) in flight: %s",
                len(broken),
                ", ".join(str(i.index) for i in broken),
            )
            for instance in reversed(broken):
                deaths[instance.index] += 1
                if deaths[instance.index] >= self.max_attempts:
                    yield setup.failed_row(
                        instance,
                        f"a worker process died {deaths[instance.index]} times while this instance was in flight",
                        deaths[instance.index],
                    )
                else:
                    todo.appendleft(instance)


def _stop_pool(pool, workers: set) -> None:
    """Stop a pool now: cancel what is queued and terminate its worker processes (``workers``: the
    child processes that appeared with this pool; ``ProcessPoolExecutor`` has no public handle)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


class DaskEngine:
    """Any ``distributed`` scheduler at ``address`` (``tcp://host:8786``, or a ``LocalCluster``'s).

    At most twice the cluster's threads (plus 4) tasks are submitted at a time (re-read as
    workers join), results are gathered as they complete. A task that raised is re-run up to
    ``retries`` times (``max_attempts - 1``); the tasks of a worker that died are rescheduled by
    the scheduler itself (its ``distributed.scheduler.allowed-failures`` setting); an instance
    that still fails is recorded as ``failed``.
    """

    def __init__(self, address: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS, connect_timeout: float = 20.0):
        if max_attempts < 1:
            raise BatchError(f"--max-attempts must be at least 1, got {max_attempts}")
        self.address = address
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self._client = None

    def describe(self) -> str:
        return f"the Dask scheduler at {self.address}"

    def check(self) -> None:
        """Connect now (a bad address is a bad argument: reported before any work starts)."""
        try:
            from distributed import Client
        except ImportError as exc:
            raise BatchError(f"--scheduler needs dask.distributed: pip install 'xsnn[dist]' ({exc})") from None
        try:
            self._client = Client(self.address, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise BatchError(f"cannot reach the Dask scheduler at {self.address!r}: {exc}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _limit(self) -> int:
        return 2 * sum(self._client.nthreads().values()) + 4

    def results(self, setup: BatchTask, instances: Iterable[Instance]) -> Iterator[dict]:
        from distributed import as_completed

        if self._client is None:
            self.check()
        client = self._client
        token = uuid.uuid4().hex[:8]
        todo = deque(instances)
        running: dict = {}
        completed = as_completed(loop=client.loop)
        limit, limit_checked = self._limit(), time.monotonic()

        def fill() -> None:
            while todo and len(running) < limit:
                instance = todo.popleft()
                future = client.submit(
                    run_task,
                    setup,
                    instance,
                    key=f"xsnn-{setup.name}-{token}-{instance.index}",
                    pure=False,
                    retries=self.max_attempts - 1,
                )
                running[future] = instance
                completed.add(future)

        try:
            fill()
            for future in completed:
                instance = running.pop(future)
                if future.status == "finished":
                    row = future.result()
                else:
                    exc = future.exception() if future.status == "error" else future.status
                    if isinstance(exc, BatchError):  # a worker cannot set up (e.g. another model file there)
                        raise exc
                    row = setup.failed_row(instance, f"{type(exc).__name__}: {exc}", self.max_attempts)
                future.release()
                yield row
                if time.monotonic() - limit_checked > 2.0:
                    limit, limit_checked = self._limit(), time.monotonic()
                fill()
        finally:
            if running:
                client.cancel(list(running))


# --------------------------------------------------------------------------- the output file


@dataclass
class ResultsScan:
    """What an output file holds: compact records of its rows, the byte length of its complete
    lines, and whether a torn last line (no newline, or not JSON) follows them."""

    records: list[dict]
    good_bytes: int
    torn: bool
    lines: list[bytes] = field(default_factory=list)


_SUMMARY_FIELDS = ("id", "status", "label", "prediction", "size")


def _record(row: dict) -> dict:
    """The few fields of a row that summaries and resuming need (rows themselves can be large)."""
    record = {name: row.get(name) for name in _SUMMARY_FIELDS}
    timings = row.get("timings") or {}
    record["explain_s"] = timings.get("explain_s")
    record["task_s"] = timings.get("task_s")
    record["finished_at"] = row.get("finished_at")
    run = row.get("run") or {}
    record["question"] = {k: run.get(k) for k in ("model_hash", "kind", "distance", "data")}
    return record


def csv_value(text: str):
    """A CSV cell as the value that was written: None (empty), a Boolean, an int, a float or text."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _csv_line(values: Sequence) -> bytes:
    """One CSV line (quoted where needed; line breaks inside text become spaces: one row, one line)."""
    buffer = io.StringIO()
    cells = ["" if v is None else " ".join(v.splitlines()) if isinstance(v, str) else v for v in values]
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode()


def _is_csv(path: Path | None, task: BatchTask | None) -> bool:
    return path is not None and path.suffix == ".csv" and task is not None and task.columns is not None


def read_results(path: str | os.PathLike, *, keep_lines: bool = False, task: BatchTask | None = None) -> ResultsScan:
    """Scan a results file of ``task`` (default: the explanation task's JSON lines; a ``.csv`` file
    of a task with columns: its header, then one row per line). A last line without newline, or a
    last line that cannot be read, is *torn* (left by a crash while writing); any other line that
    is not a row with an integer index raises :class:`BatchError` naming its line number, and so
    does a CSV header other than the task's columns. The records are ``task.record(row)``."""
    path = Path(path)
    id_field = "id" if task is None else task.id_field
    record = _record if task is None else task.record
    as_csv = _is_csv(path, task)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror or exc}") from None
    records, lines, good, torn = [], [], 0, False
    pieces = data.split(b"\n")
    header = None
    for number, piece in enumerate(pieces, start=1):
        last_piece = number == len(pieces)
        if last_piece:
            torn = bool(piece.strip())  # text after the last newline: an unfinished line
            break
        if as_csv and header is None:
            header = next(csv.reader([piece.decode()]), [])
            if tuple(header) != task.columns:
                raise BatchError(f"{path}: its columns are not those of 'xsnn {task.name}'; write to another --out")
            good += len(piece) + 1
            continue
        if piece.strip():
            try:
                if as_csv:
                    cells = next(csv.reader([piece.decode()]))
                    row = dict(zip(header, map(csv_value, cells))) if len(cells) == len(header) else None
                else:
                    row = json.loads(piece)
                is_row = (
                    isinstance(row, dict)
                    and isinstance(row.get(id_field), int)
                    and not isinstance(row.get(id_field), bool)
                )
            except ValueError:
                is_row = False
            if not is_row:
                if number == len(pieces) - 1:  # the last line, newline written but content cut
                    torn = True
                    break
                kind = "CSV" if as_csv else "JSON"
                raise BatchError(
                    f"{path} line {number} is not a {kind} result row (with an integer {id_field!r}); "
                    f"fix or remove that line (or write to another --out)"
                ) from None
            records.append(record(row))
            if keep_lines:
                lines.append(piece)
        good += len(piece) + 1
    return ResultsScan(records, good, torn, lines)


class ResultsFile:
    """The output of a batch: opened once by the driver, locked, appended to line by line.

    ``resume``: keep the rows there (they must answer the same question: ``setup.question()``;
    for explanations the same model, kind, distance and data, while the time limit may differ),
    drop a torn last line, and skip their ids; ``retry``: statuses whose rows are removed first,
    so that their ids are redone; ``overwrite``: start from an empty file. Without either, an
    existing non-empty file is an error. ``path`` None: rows go to standard output (nothing to
    resume). Rows are whole JSON lines, or only ``setup.columns`` (JSON lines, or CSV for a
    ``.csv`` path) where the task has columns.
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        setup: BatchTask,
        *,
        resume: bool = False,
        overwrite: bool = False,
        retry: Sequence[str] = (),
    ) -> None:
        self.path = None if path is None else Path(path)
        self.setup = setup
        self.resume, self.overwrite, self.retry = resume, overwrite, tuple(retry)
        self.records: list[dict] = []
        self._handle = None
        self._opened = False
        self._csv = _is_csv(self.path, setup)

    @property
    def done(self) -> set[int]:
        return {record["id"] for record in self.records}

    def open(self) -> ResultsFile:
        if self.resume and self.overwrite:
            raise BatchError("--resume and --overwrite exclude each other")
        if self.retry and not self.resume:
            raise BatchError("--retry needs --resume (it redoes rows of an existing output)")
        if self.path is None:
            self._opened = True
            return self
        if not self.path.parent.is_dir():
            raise BatchError(f"--out {self.path}: folder {self.path.parent} does not exist")
        if self.path.is_dir():
            raise BatchError(f"--out {self.path} is a folder; give a file name such as results.jsonl")
        existing = self.path.is_file() and self.path.stat().st_size > 0
        if existing and not (self.resume or self.overwrite):
            raise BatchError(
                f"--out {self.path} already holds results; pass --resume to complete it or --overwrite to start again"
            )
        try:
            handle = open(self.path, "a+b")  # noqa: SIM115  (kept open for appending, closed by close())
        except OSError as exc:
            raise BatchError(f"cannot write --out {self.path}: {exc.strerror or exc}") from None
        try:
            _lock(handle, self.path)
            if self.overwrite:
                handle.truncate(0)
            elif existing:
                handle = self._load(handle)
            if self._csv and os.fstat(handle.fileno()).st_size == 0:  # a new table starts with its header
                handle.write(_csv_line(self.setup.columns))
                handle.flush()
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        self._opened = True
        return self

    def _load(self, handle):
        """Read the rows there, drop a torn last line and the rows to retry; the handle to append with."""
        scan = read_results(self.path, keep_lines=bool(self.retry), task=self.setup)
        expected = self.setup.question()
        for record in scan.records:
            if record["question"] != expected:
                diff = ", ".join(
                    f"{k} {record['question'].get(k)!r} (this run: {v!r})"
                    for k, v in expected.items()
                    if record["question"].get(k) != v
                )
                raise BatchError(
                    f"--out {self.path} holds rows of another question (row id {record['id']}: {diff}); "
                    f"write to another --out"
                )
        if scan.torn:
            log.warning(
                "%s ends with a torn line (a crash while writing); dropping it, its instance is redone", self.path
            )
            handle.truncate(scan.good_bytes)
        self.records = scan.records
        if self.retry:
            kept = [(r, line) for r, line in zip(scan.records, scan.lines) if r["status"] not in self.retry]
            if len(kept) < len(scan.records):  # write the kept rows to a new file, then swap it in
                log.info("redoing %d row(s) of status %s", len(scan.records) - len(kept), ", ".join(self.retry))
                fresh = self.path.with_name(self.path.name + ".retry-tmp")
                with open(fresh, "wb") as out:
                    if self._csv:
                        out.write(_csv_line(self.setup.columns))
                    out.write(b"".join(line + b"\n" for _, line in kept))
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(fresh, self.path)
                handle.close()
                handle = open(self.path, "a+b")  # noqa: SIM115  (kept open for appending)
                _lock(handle, self.path)
            self.records = [r for r, _ in kept]
        return handle

    def write(self, row: dict) -> None:
        """Append one row as one line, flushed to the operating system at once."""
        columns = self.setup.columns
        if columns is None:
            row = {**row, "finished_at": round(time.time(), 3)}
            line = json.dumps(row, separators=(",", ":")).encode() + b"\n"
        elif self._csv:
            line = _csv_line([row.get(k) for k in columns])
        else:
            line = json.dumps({k: row.get(k) for k in columns}, separators=(",", ":")).encode() + b"\n"
        if self.path is None:
            sys.stdout.write(line.decode())
            sys.stdout.flush()
        else:
            self._handle.write(line)
            self._handle.flush()
        self.records.append(self.setup.record(row))

    def close(self) -> None:
        if self._handle is not None:
            try:
                os.fsync(self._handle.fileno())
            finally:
                self._handle.close()
        self._handle = None
        self._opened = False

    def __enter__(self) -> ResultsFile:
        return self if self._opened else self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(handle, path: Path) -> None:
    """An exclusive lock on the output, so that two batches never append to one file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (Windows: no advisory locks; one writer is the user's duty)
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise BatchError(f"--out {path} is being written by another running batch") from None


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class BatchSettings:
    """A whole batch: what to explain (``setup``, ``data``, ``indices``), where to write it and how."""

    setup: BatchTask
    data: BatchData
    indices: tuple[int, ...]
    out: Path | None  # None: rows go to standard output
    resume: bool = False
    overwrite: bool = False
    retry: tuple[str, ...] = ()


@dataclass
class BatchOutcome:
    """What :func:`run_batch` did: rows written now, instances skipped as done, wall seconds, the
    counts of this run's statuses, and the file's records after it."""

    written: int
    skipped: int
    seconds: float
    statuses: Counter
    records: list[dict]


def run_batch(
    settings: BatchSettings,
    engine: LocalEngine | DaskEngine,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> BatchOutcome:
    """Run the task ``settings.setup`` (explain, compare, ...) on ``settings.indices`` of
    ``settings.data`` on ``engine``, appending one row per instance to ``settings.out`` (skipping ids
    it already holds when resuming).

    ``on_start(to_do, already_done)`` is called once the output is read, ``on_row(row)`` after each
    row is written (progress display). Ctrl-C stops the workers and re-raises; the rows written so
    far stay in the file.
    """
    engine.check()  # a scheduler that cannot be reached is reported before anything is written
    try:
        with ResultsFile(
            settings.out, settings.setup, resume=settings.resume, overwrite=settings.overwrite, retry=settings.retry
        ) as results:
            done = results.done
            todo = [i for i in settings.indices if i not in done]
            skipped = len(settings.indices) - len(todo)
            if on_start is not None:
                on_start(len(todo), skipped)
            labels = settings.data.labels
            instances = (Instance(i, settings.data.images[i], None if labels is None else int(labels[i])) for i in todo)
            statuses: Counter = Counter()
            start = time.perf_counter()
            if todo:
                log.info(
                    "%s: %d instance(s) on %s (%d already done)",
                    settings.setup.name,
                    len(todo),
                    engine.describe(),
                    skipped,
                )
                stream = engine.results(settings.setup, instances)
                try:
                    for row in stream:
                        results.write(row)
                        statuses[row["status"]] += 1
                        if on_row is not None:
                            on_row(row)
                finally:
                    stream.close()  # stops the workers if the loop ended early (Ctrl-C, an error)
            return BatchOutcome(
                sum(statuses.values()), skipped, time.perf_counter() - start, statuses, list(results.records)
            )
    finally:
        engine.close()


# --------------------------------------------------------------------------- summaries


def _percentiles(values: Sequence[float], qs: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    out = {f"p{q}": float(np.percentile(arr, q)) for q in qs}
    out.update(min=float(arr.min()), max=float(arr.max()), mean=float(arr.mean()), total=float(arr.sum()))
    return out


def summarize(records: Sequence[dict]) -> dict:
    """Statistics of result records (:func:`read_results`): counts by status, ids, agreement of
    predictions with labels, explanation time percentiles (seconds), size distribution (features)."""
    ids = Counter(r["id"] for r in records)
    labelled = [r for r in records if r["label"] is not None and r["prediction"] is not None]
    times = [r["explain_s"] for r in records if r["explain_s"] is not None]
    sizes = [r["size"] for r in records if r["size"] is not None]
    complete_sizes = [r["size"] for r in records if r["size"] is not None and r["status"] == "complete"]
    stamps = [r["finished_at"] for r in records if r["finished_at"] is not None]
    return {
        "rows": len(records),
        "ids": len(ids),
        "duplicate_ids": sorted(i for i, n in ids.items() if n > 1),
        "status": dict(sorted(Counter(r["status"] for r in records).items(), key=lambda kv: -kv[1])),
        "prediction_matches_label": [sum(r["label"] == r["prediction"] for r in labelled), len(labelled)],
        "explain_seconds": _percentiles(times, (50, 90, 95, 99)),
        "size": _percentiles(sizes, (10, 25, 50, 75, 90)),
        "size_complete": _percentiles(complete_sizes, (10, 25, 50, 75, 90)),
        "finished_span_s": (max(stamps) - min(stamps)) if len(stamps) > 1 else None,
    }


def format_summary(summary: dict, title: str) -> str:
    """The summary as a text table."""
    lines = [f"{title}: {summary['ids']} instance(s), {summary['rows']} row(s)"]
    if summary["duplicate_ids"]:
        shown = ", ".join(map(str, summary["duplicate_ids"][:10]))
        lines.append(f"WARNING: {len(summary['duplicate_ids'])} id(s) have several rows: {shown}")
    lines.append(f"  {'status':<16}{'count':>8}{'share':>9}")
    for status, count in summary["status"].items():
        lines.append(f"  {status:<16}{count:>8}{count / max(summary['rows'], 1):>9.1%}")
    agree, labelled = summary["prediction_matches_label"]
    if labelled:
        lines.append(f"  prediction = label: {agree} / {labelled} ({agree / labelled:.2%})")

    def row(name: str, stats: dict, keys: Sequence[str], fmt: str) -> None:
        if stats:
            lines.append(f"  {name:<22}" + "  ".join(f"{k} {stats[k]:{fmt}}" for k in keys))

    row("explain seconds:", summary["explain_seconds"], ("p50", "p90", "p95", "p99", "max", "mean"), ".3f")
    if summary["explain_seconds"]:
        lines.append(f"  {'':<22}total {summary['explain_seconds']['total']:.1f} s of explanation time")
    row("size (features):", summary["size"], ("min", "p10", "p25", "p50", "p75", "p90", "max"), ".0f")
    row("size, complete only:", summary["size_complete"], ("min", "p10", "p25", "p50", "p75", "p90", "max"), ".0f")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


class Progress:
    """A progress line on ``stream``: done / total, rate, ETA, time-outs, failures.

    On a terminal it is redrawn in place (at most 5 times a second); elsewhere one line is
    printed every ``interval`` seconds.
    """

    def __init__(self, total: int, stream: TextIO, *, enabled: bool = True, interval: float = 30.0) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled and total > 0
        self.live = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.interval = 0.2 if self.live else interval
        self.done = 0
        self.counts: Counter = Counter()
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, row: dict) -> None:
        self.done += 1
        self.counts[row["status"]] += 1
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.interval or self.done == self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        failures = sum(self.counts[s] for s in TROUBLE)
        filled = int(20 * self.done / self.total)
        text = (
            f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} ({self.done / self.total:.1%}) | "
            f"{rate * 60:.1f}/min | "
            f"ETA {_duration(eta)} | time-outs {self.counts['timeout']} | failures {failures}"
        )
        if self.live:
            self.stream.write("\r\x1b[2K" + text)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.live and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def add_batch_commands(subparsers) -> None:
    """Register ``explain-batch`` and ``summarize`` on the ``xsnn`` command's subparsers."""
    from xsnn.api import KINDS
    from xsnn.model import DEFAULT_MODEL

    batch = subparsers.add_parser(
        "explain-batch",
        help="explain many instances in parallel; resumable JSON-lines output",
        description="Explain every selected instance of a data set, one JSON line per instance in --out, "
        "on local worker processes (--jobs) or a Dask cluster (--scheduler).",
    )
    batch.add_argument(
        "--model", "-m", default=DEFAULT_MODEL, help=f"shipped model name or .npz model file (default: {DEFAULT_MODEL})"
    )
    batch.add_argument(
        "--data",
        default="mnist-test",
        help="mnist-test, mnist-train (from --data-dir or $XSNN_DATA), sample (the 200 shipped "
        "test images), a folder of MNIST IDX files, or an .npz file with arrays images "
        "(and labels) (default: mnist-test)",
    )
    batch.add_argument("--data-dir", default=None, help="MNIST folder for mnist-test / mnist-train")
    batch.add_argument("--split", choices=("test", "train"), default="test", help="split, when --data is a folder")
    batch.add_argument(
        "--indices", default=None, help="instances: START:STOP[:STEP], single indices, comma-separated (default: all)"
    )
    batch.add_argument(
        "--kind",
        choices=KINDS,
        default="axp",
        help="axp (subset-minimal sufficient set, the default), cxp (contrastive) or min-axp (minimum size)",
    )
    batch.add_argument(
        "--distance",
        type=int,
        default=None,
        help="distance-restricted explanations: valid within this many changed features",
    )
    batch.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT,
        help=f"seconds per instance (default {DEFAULT_TIME_LIMIT:g}); a timed-out explanation is "
        f"recorded with status timeout and its sound partial result",
    )
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--jobs", "-j", type=int, default=1, help="local worker processes (default 1)")
    where.add_argument(
        "--scheduler", default=None, help="address of a Dask scheduler (tcp://HOST:8786) to run the instances on"
    )
    batch.add_argument("--out", "-o", required=True, help="output file, one JSON line per instance")
    batch.add_argument("--resume", action="store_true", help="complete an existing output: skip ids it holds")
    batch.add_argument("--overwrite", action="store_true", help="replace an existing output")
    batch.add_argument(
        "--retry", default="", help="with --resume: redo rows of these statuses, comma-separated (e.g. failed,timeout)"
    )
    batch.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"worker deaths (local) or tries (Dask) per instance before it is recorded as failed "
        f"(default {DEFAULT_MAX_ATTEMPTS})",
    )
    batch.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress on stderr: auto (live on a terminal, else every 30 s), always, never",
    )
    batch.set_defaults(func=_cmd_explain_batch)

    summary = subparsers.add_parser("summarize", help="statistics of an explain-batch output")
    summary.add_argument("results", help="JSON-lines output of xsnn explain-batch")
    summary.add_argument("--plot", default=None, metavar="DIR", help="also draw the distributions into DIR")
    summary.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    summary.set_defaults(func=_cmd_summarize)


def _settings_from_args(args: argparse.Namespace) -> BatchSettings:
    """Validate every argument and file; load the model (for its hash and shape) and the data."""
    from xsnn.model import load_model

    if args.jobs < 1:
        raise BatchError(f"--jobs must be at least 1, got {args.jobs}")
    if args.max_attempts < 1:
        raise BatchError(f"--max-attempts must be at least 1, got {args.max_attempts}")
    if not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise BatchError(f"--time-limit must be a positive number of seconds, got {args.time_limit:g}")
    if args.distance is not None and args.distance < 0:
        raise BatchError(f"--distance must be a non-negative number of features, got {args.distance}")
    retry = tuple(s.strip() for s in args.retry.split(",") if s.strip())
    unknown = [s for s in retry if s not in FINAL_STATUSES]
    if unknown:
        raise BatchError(
            f"--retry {args.retry!r}: unknown status {unknown[0]!r}; statuses: {', '.join(FINAL_STATUSES)}"
        )
    model = load_model(args.model)
    data = load_batch_data(args.data, data_dir=args.data_dir, split=args.split)
    if data.images.shape[1:] != tuple(model.input_shape) and int(np.prod(data.images.shape[1:])) != model.n_inputs:
        raise BatchError(
            f"model {args.model!r} takes images of shape {tuple(model.input_shape)} "
            f"({model.n_inputs} inputs) but --data {args.data} holds images of shape "
            f"{tuple(data.images.shape[1:])}"
        )
    indices = parse_indices(args.indices, len(data), what=f"--data {data.name}")
    setup = WorkerSetup(
        model=str(args.model),
        model_hash=model.content_hash(),
        kind=args.kind,
        distance=args.distance,
        time_limit=args.time_limit,
        data=data.name,
    )
    return BatchSettings(
        setup, data, tuple(indices), Path(args.out), resume=args.resume, overwrite=args.overwrite, retry=retry
    )


def _cmd_explain_batch(args: argparse.Namespace) -> int:
    # One BLAS thread per worker process (inherited at spawn): the workers are the parallelism.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    settings = _settings_from_args(args)
    engine = (
        DaskEngine(args.scheduler, max_attempts=args.max_attempts)
        if args.scheduler
        else LocalEngine(args.jobs, max_attempts=args.max_attempts)
    )
    progress: list[Progress] = []

    def on_start(to_do: int, already_done: int) -> None:
        if already_done:
            print(
                f"xsnn: {already_done} of {len(settings.indices)} instance(s) already in {settings.out}; {to_do} to do",
                file=sys.stderr,
            )
        progress.append(
            Progress(
                to_do, sys.stderr, enabled=args.progress != "never", interval=30.0 if args.progress == "auto" else 5.0
            )
        )

    def stop(signum, frame) -> None:  # SIGTERM (kill, a batch system's time limit): stop as Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        outcome = run_batch(settings, engine, on_start=on_start, on_row=lambda row: progress[0].update(row))
    except KeyboardInterrupt:
        for bar in progress:
            bar.close()
        wanted = set(settings.indices)
        kept = len({r["id"] for r in read_results(settings.out).records} & wanted) if settings.out.is_file() else 0
        print(
            f"xsnn: stopped; {kept} of {len(wanted)} instance(s) are in {settings.out}; "
            f"run the same command with --resume to complete it",
            file=sys.stderr,
        )
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    for bar in progress:
        bar.close()
    wanted = set(settings.indices)
    print(format_summary(summarize([r for r in outcome.records if r["id"] in wanted]), str(settings.out)))
    if outcome.written:
        print(
            f"  this run: {outcome.written} instance(s) in {outcome.seconds:.1f} s wall = "
            f"{60 * outcome.written / max(outcome.seconds, 1e-9):.1f} / min on {engine.describe()}"
        )
    else:
        print(f"  nothing to do: all {outcome.skipped} selected instance(s) are already in {settings.out}")
    return 1 if any(outcome.statuses[s] for s in TROUBLE) else 0


def _cmd_summarize(args: argparse.Namespace) -> int:
    path = Path(args.results)
    if not path.is_file():
        raise BatchError(f"results file {path} does not exist")
    scan = read_results(path)
    if scan.torn:
        print(
            f"xsnn: warning: {path} ends with a torn line (ignored; explain-batch --resume redoes it)", file=sys.stderr
        )
    summary = summarize(scan.records)
    if args.plot:
        from xsnn import plots

        out_dir = Path(args.plot)
        out_dir.mkdir(parents=True, exist_ok=True)
        figure = plots.batch_summary_figure(scan.records)
        summary["plot"] = str(plots.save(figure, out_dir / "batch-summary", ("png",))[0])
        plots.close(figure)
    print(json.dumps(summary) if args.json else format_summary(summary, str(path)))
    if args.plot and not args.json:
        print(f"  plot: {summary['plot']}")
    return 0
