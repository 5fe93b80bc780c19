"""The public API: every kind of explanation of one prediction, in one shape.

>>> import xsnn
>>> model = xsnn.load_model()                # the default model
>>> images, labels = xsnn.load_sample()
>>> e = xsnn.explain(model, images[2], time_limit=60)
>>> e.kind, e.prediction, e.status, e.minimal
('axp', 1, 'complete', True)

Each function builds an entailment oracle for the model's prediction on the image (the exact
``backend``; :mod:`xsnn.solvers.backends` lists them and says which runs by default), runs one
algorithm of :mod:`xsnn.solvers` and returns an :class:`~xsnn.explanation.Explanation`.

Runs stop when asked and keep what they found: the computation runs in a worker thread while
the calling thread waits; the time limit and Ctrl-C (``KeyboardInterrupt`` in the calling
thread) both stop the solver within about a second, and the result found so far comes back with
status ``timeout`` or ``interrupted`` (an AXp is then still *sufficient*, a CXp still changes the
prediction; only minimality is not proven).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from xsnn.explanation import Explanation
from xsnn.features import FeatureSet
from xsnn.model import BSNN, contrastive_model, forward, load_model
from xsnn.solvers.backends import DEFAULT_BACKEND, exact_oracle_factory, make_oracle, verifier_backend
from xsnn.solvers.certificate import VerificationReport
from xsnn.solvers.certificate import verify as verify_certificate
from xsnn.solvers.result import FormalExplanation, NoExplanationError, Status

__all__ = [
    "explain",
    "enumerate",
    "attribution",
    "verify",
    "explain_many",
    "predict",
    "feature_set",
    "Enumeration",
    "ALGORITHMS",
    "KINDS",
    "ORDERS",
    "check_image",
]

log = logging.getLogger(__name__)

KINDS = ("axp", "cxp", "min-axp")
ALGORITHMS = ("deletion", "quickxplain", "progression")
ORDERS = ("index", "reverse", "brightest", "darkest", "influence")
STOP_GRACE_SECONDS = 1.5  # after a stop request, how long to wait for the solver before taking a snapshot
PROGRESS_SECONDS = 0.5  # how often a progress callback is called

ProgressCallback = Callable[[dict], None]
T = TypeVar("T")


# ---------------------------------------------------------------------------- inputs


def check_image(
    model: BSNN, image: Any, *, binarized: bool = False, name: str = "image"
) -> tuple[np.ndarray | None, np.ndarray]:
    """One image (or its input spikes) -> ``(image as uint8 of input_shape or None, spikes (T, n))``.

    Accepted: intensities 0..255 of shape ``input_shape`` or ``(n_inputs,)`` (any integer dtype,
    or floats holding whole numbers in 0..255 with some value above 1), or input spikes
    ``(T, n_inputs)`` of 0/1. Refused with a one-line message: a batch, another shape, images
    scaled to [0, 1] or binarized to 0/1 (pass ``binarized=True`` to read 1 as 255), booleans,
    fractions, NaN, values outside 0..255. ``name`` is how the message calls the argument.
    """
    arr = np.asarray(image)
    shape = model.input_shape
    spikes_shape = (model.n_steps, model.n_inputs)
    expected = f"one image of shape {shape} (or {model.n_inputs} pixels) with intensities 0..255"
    if arr.dtype == object or arr.size == 0 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be {expected}; got an array of {arr.dtype} with shape {arr.shape}")
    if arr.ndim >= 2 and arr.shape[1:] in (shape, (model.n_inputs,)) and arr.shape != spikes_shape:
        raise ValueError(
            f"{name} is a batch of {arr.shape[0]} images (shape {arr.shape}); {expected} is "
            f"expected here: use xsnn.explain_many for several images"
        )
    if arr.shape == spikes_shape and arr.shape != shape:
        if arr.dtype == bool or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} has the shape of input spikes {spikes_shape} but holds values other than 0/1")
        from xsnn.model import check_spikes

        return None, check_spikes(model, arr.astype(np.uint8))[0]
    if arr.shape not in (shape, (model.n_inputs,)):
        raise ValueError(f"{name} has shape {arr.shape}; expected {expected}, or input spikes of shape {spikes_shape}")
    data = _intensities(arr, name, binarized).reshape(shape)
    return data, model.encode(data[None])[0]


def _intensities(arr: np.ndarray, name: str, binarized: bool) -> np.ndarray:
    """Pixel values checked (see :func:`check_image`) and returned as uint8 0..255."""
    if binarized and arr.dtype != bool and arr.size and not (arr.min() >= 0 and arr.max() <= 1):
        raise ValueError(f"{name} holds values {arr.min()}..{arr.max()}, but binarized images hold only 0 and 1")
    if arr.dtype == bool:
        if not binarized:
            raise ValueError(
                f"{name} is boolean; expected intensities 0..255 (pass binarized=True, or "
                f"--binarized, to read True as 255)"
            )
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} holds NaN or infinite values; expected intensities 0..255")
        if arr.max() <= 1.0 and arr.min() >= 0.0 and not np.isin(arr, (0.0, 1.0)).all():
            raise ValueError(
                f"{name} looks scaled to [0, 1] (float {arr.dtype}, max {arr.max():.3g}); expected "
                f"intensities 0..255: use (image * 255).round().astype('uint8')"
            )
        if not (arr == np.round(arr)).all():
            raise ValueError(f"{name} holds fractional values (float {arr.dtype}); expected whole intensities 0..255")
    if arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"{name} holds values {arr.min()}..{arr.max()}; expected intensities 0..255")
    if arr.max() == 1 and not binarized:
        raise ValueError(
            f"{name} holds only 0 and 1: it looks binarized; expected intensities 0..255 "
            f"(pass binarized=True, or --binarized, to read 1 as 255)"
        )
    pixels = arr.astype(np.int64) * (255 if binarized else 1)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _as_model(model: BSNN | str) -> BSNN:
    if isinstance(model, BSNN):
        return model
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        return load_model(model)
    raise TypeError(f"model must be a BSNN or a shipped model name / .npz path, got {type(model).__name__}")


def feature_set(model: BSNN, features: FeatureSet | str | None) -> FeatureSet:
    """The features of a question on ``model``: ``None`` or ``"pixels"``: one feature per pixel;
    ``"patches:K"``: K x K patches of a 2-D image; or a FeatureSet over the model's inputs (checked).
    Anything else raises ``ValueError`` naming what was given."""
    if features is None or features == "pixels":
        return FeatureSet.pixels(model.n_inputs, model.input_shape)
    if isinstance(features, FeatureSet):
        if features.n_inputs != model.n_inputs:
            raise ValueError(f"features cover {features.n_inputs} inputs, the model has {model.n_inputs}")
        return features
    if isinstance(features, str) and features.startswith("patches:"):
        size = features.partition(":")[2]
        if not size.isdigit() or int(size) < 1 or len(model.input_shape) != 2:
            raise ValueError(f"features {features!r}: expected 'patches:K' with a whole K >= 1 on a 2-D image")
        return FeatureSet.patches(model.input_shape, int(size))
    raise ValueError(f"unknown features {features!r}; expected 'pixels', 'patches:K' or a FeatureSet")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")


def _check_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)


def _check_count(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum} or None, got {value!r}")
    return int(value)


def _check_order(order: Any, q: _Question) -> str | np.ndarray:
    n_features = len(q.features)
    if isinstance(order, str):
        _check_choice("order", order, ORDERS)
        if order == "influence":  # one score per feature: the least influential tried first
            from xsnn.solvers.influence import influence_order

            return influence_order(q.model, q.spikes, q.features)
        return order
    scores = np.asarray(order, dtype=np.float64)
    if scores.shape != (n_features,) or not np.isfinite(scores).all():
        raise ValueError(
            f"order given as scores needs {n_features} finite numbers (one per feature), got shape {scores.shape}"
        )
    return scores


class _Question:
    """A checked question: the model (restricted to two classes for a contrastive one), the
    instance, the features, the distance bound, and the settings that describe it."""

    def __init__(
        self,
        model: BSNN | str,
        image: Any,
        *,
        target: int | None,
        max_distance: int | None,
        features: FeatureSet | str | None,
        binarized: bool,
        source: dict | None,
        options: dict,
    ) -> None:
        from xsnn import __version__

        self.base = _as_model(model)
        self.data, self.spikes = check_image(self.base, image, binarized=binarized)
        self.features = feature_set(self.base, features)
        self.max_distance = _check_count("max_distance", max_distance, 0)
        scores = forward(self.base, self.spikes)
        self.prediction_index = int(scores.prediction[0])
        self.prediction = self.base.labels[self.prediction_index]
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))):
            raise ValueError(f"target must be a class label (a whole number), got {target!r}")
        self.target = None if target is None else int(target)
        self.model = self.base
        self.distance_engine: dict | None = None
        if self.target is not None:
            if self.target not in self.base.labels:
                raise ValueError(
                    f"target {target!r} is not a class of this model; its classes are {list(self.base.labels)}"
                )
            if self.target == self.prediction:
                raise ValueError(
                    f"target {target} is the prediction itself; a contrastive question needs "
                    f"another class (one of {[c for c in self.base.labels if c != self.prediction]})"
                )
            self.model = contrastive_model(self.base, self.prediction_index, self.base.labels.index(self.target))
        self.settings = {
            "model": self.base.info.get("name", "unnamed"),
            "model_hash": self.base.content_hash(),
            "data": source,
            "options": {
                **options,
                "target": self.target,
                "max_distance": self.max_distance,
                "features": features if isinstance(features, str) or features is None else "custom",
                "binarized": binarized,
            },
            "xsnn_version": __version__,
        }

    def oracle(self, backend: str, fast_paths: bool):
        """The oracle for ``backend``; under a distance bound the default backend enumerates the ball
        when :func:`~xsnn.solvers.ball.ball_choice` finds it small enough (the choice and its reason
        go into the result's ``stats["distance_engine"]``)."""
        if self.max_distance is not None and backend == DEFAULT_BACKEND:
            from xsnn.solvers.ball import BallOracle, ball_choice

            choice = ball_choice(self.model, self.spikes, self.features, self.max_distance)
            self.distance_engine = choice.as_dict()
            if choice.use:
                return BallOracle(self.model, self.spikes, self.features, max_distance=self.max_distance)
        return make_oracle(
            self.model,
            self.spikes,
            backend=backend,
            fast_paths=fast_paths,
            features=self.features,
            max_distance=self.max_distance,
        )

    def explanation(
        self,
        kind: str,
        result: FormalExplanation | None,
        *,
        status: str | None = None,
        values: np.ndarray | None = None,
        features: Sequence[int] = (),
        minimal: bool = False,
        stats: dict | None = None,
        seconds: float = 0.0,
    ) -> Explanation:
        n = len(self.features)
        if result is not None:
            features, minimal, seconds = result.features, result.minimal, result.seconds
            stats = {**_plain_stats(result.stats), **(stats or {})}
            status = status or result.status.value
        if self.distance_engine is not None:
            stats = {**(stats or {}), "distance_engine": self.distance_engine}
        mask = np.zeros(n, bool)
        mask[list(features)] = True
        return Explanation(
            kind=kind,
            data=self.data,
            spikes=self.spikes,
            mask=mask,
            features=tuple(int(k) for k in features),
            feature_names=self.features.names,
            feature_pixels=self.features.groups,
            input_shape=self.base.input_shape,
            values=values,
            prediction=self.prediction,
            target=self.target,
            status=status or "complete",
            minimal=minimal,
            stats=stats or {},
            proof=None if result is None else result.certificate,
            settings=self.settings,
            seconds=seconds,
        )


def _plain_stats(stats: dict) -> dict:
    """Solver statistics as ``questions`` (how many entailment questions were answered) and
    ``answered_by`` (how many by each answer path; shown with -v)."""
    calls = stats.get("calls", {})
    return {
        "questions": int(sum(calls.values())),
        "answered_by": dict(calls),
        "seconds_by": {k: round(v, 6) for k, v in stats.get("seconds", {}).items()},
    }


# ---------------------------------------------------------------------------- stoppable runs


def _run_stoppable(
    work: Callable[[], T],
    stop: Callable[[], None],
    *,
    progress: ProgressCallback | None = None,
    status: Callable[[], dict] | None = None,
    snapshot: Callable[[], T | None] | None = None,
    close: Callable[[], None] | None = None,
) -> tuple[T, bool]:
    """Run ``work()`` in a worker thread; return ``(its result, interrupted)``.

    The calling thread waits. On ``KeyboardInterrupt`` it calls ``stop()`` (which must make
    ``work`` return soon with what it has) and waits up to :data:`STOP_GRACE_SECONDS`; if ``work``
    is still running then (a solver call that cannot be interrupted), ``snapshot()`` gives the
    result instead (the worker is left to finish in the background, as a daemon). With
    ``progress``, ``progress(status())`` is called every :data:`PROGRESS_SECONDS`. ``close()``
    frees the solvers once ``work`` has returned (in the worker, if it was left running).
    """
    box: dict[str, Any] = {}
    done = threading.Event()  # waited on instead of Thread.join: a join interrupted by Ctrl-C can
    # leave the thread marked as finished while it still runs (CPython 3.11)
    abandoned = threading.Event()

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            box["error"] = exc
        finally:
            done.set()
            if abandoned.is_set() and close is not None:
                close()

    worker = threading.Thread(target=target, name="xsnn-explain", daemon=True)
    worker.start()
    interrupted = False
    next_report = time.monotonic() + PROGRESS_SECONDS
    try:
        while not done.wait(0.1):
            if progress is not None and status is not None and time.monotonic() >= next_report:
                progress(status())
                next_report = time.monotonic() + PROGRESS_SECONDS
    except KeyboardInterrupt:
        interrupted = True
        stop()
        if not done.wait(STOP_GRACE_SECONDS):
            abandoned.set()
            if done.is_set() and close is not None:  # it finished after all
                close()
            partial = snapshot() if snapshot is not None else None
            if partial is None:
                raise
            log.warning("the solver did not stop in %.1f s; returning the result found so far", STOP_GRACE_SECONDS)
            return partial, True
    finally:
        if done.is_set() and not abandoned.is_set() and close is not None:
            close()
    if "error" in box:
        raise box["error"]
    return box["result"], interrupted


# ---------------------------------------------------------------------------- explain


def explain(
    model: BSNN | str,
    image: Any,
    kind: str = "axp",
    *,
    max_distance: int | None = None,
    target: int | None = None,
    order: str | Sequence[float] = "index",
    algorithm: str = "deletion",
    backend: str = DEFAULT_BACKEND,
    features: FeatureSet | str | None = None,
    time_limit: float | None = None,
    verify: bool = False,
    verify_time_limit: float | None = None,
    binarized: bool = False,
    fast_paths: bool = True,
    source: dict | None = None,
    progress: ProgressCallback | None = None,
) -> Explanation:
    """Explain ``model``'s prediction on one ``image`` with a certified formal explanation.

    Args:
        model: a :class:`~xsnn.model.BSNN`, or a shipped model name / ``.npz`` path.
        image: one image (``input_shape`` or flat, intensities 0..255), or its input spikes
            ``(T, n_inputs)``; see :func:`check_image`.
        kind: ``axp`` (subset-minimal sufficient set), ``cxp`` (subset-minimal set whose change
            can change the prediction) or ``min-axp`` (an AXp of minimum size).
        max_distance: distance-restricted explanation: only inputs that differ from the image
            in at most this many features are considered.
        target: a class label: the contrastive question "why the prediction and not
            ``target``?" (an AXp entails that the prediction beats ``target``).
        order: the order in which features are tried for removal (``index``, ``reverse``,
            ``brightest``: bright pixels tried first, so dark ones tend to stay, ``darkest``,
            ``influence``: the least influential first, by the rivals' interval bounds, which makes
            AXps of dense one-layer networks several times faster; :mod:`xsnn.solvers.influence`),
            or one score per feature (lowest tried first, so high scores tend to stay).
        algorithm: for ``axp``: ``deletion``, ``quickxplain`` or ``progression`` (the same AXp for
            the same order; they differ in the number of questions).
        backend: the exact oracle (:mod:`xsnn.solvers.backends`).
        features: ``"pixels"`` (default), ``"patches:K"`` (K x K patches: coarser, faster) or a
            :class:`~xsnn.features.FeatureSet`.
        time_limit: seconds; on timeout the result found so far is returned (status ``timeout``).
        verify: re-check the certificate with another backend and the reference forward,
            within ``verify_time_limit`` seconds (default: ``time_limit``).
        binarized: read a 0/1 image as 0/255.
        fast_paths: sound shortcuts in front of the slow exact stage (the answer is the same
            without them; only for baseline measurements).
        source: where the image came from (stored in ``settings["data"]``), e.g.
            ``{"data": "mnist-test", "index": 3}``.
        progress: called about twice a second with a dict of counters while it runs.

    Examples:
        >>> import xsnn
        >>> model = xsnn.load_model()
        >>> images, _ = xsnn.load_sample()
        >>> e = xsnn.explain(model, images[2], kind="cxp", time_limit=60)
        >>> e.kind, e.status, e.size > 0
        ('cxp', 'complete', True)
    """
    _check_choice("kind", kind, KINDS)
    _check_choice("algorithm", algorithm, ALGORITHMS)
    time_limit = _check_seconds("time_limit", time_limit)
    verify_time_limit = _check_seconds("verify_time_limit", verify_time_limit)
    exact_oracle_factory(backend)  # an unknown backend is named before any work
    if kind != "axp" and algorithm != "deletion":
        raise ValueError(f"algorithm {algorithm!r} computes AXps only; kind {kind!r} has its own algorithm")
    options = {
        "kind": kind,
        "algorithm": algorithm,
        "backend": backend,
        "time_limit": time_limit,
        "order": order if isinstance(order, str) else "scores",
        "fast_paths": bool(fast_paths),
    }
    q = _Question(
        model,
        image,
        target=target,
        max_distance=max_distance,
        features=features,
        binarized=binarized,
        source=source,
        options=options,
    )
    order = _check_order(order, q)
    explanation = _explain_question(q, kind, algorithm, backend, order, time_limit, fast_paths, progress)
    if verify and explanation.proof is not None:
        report = verify_explanation(explanation, q.model, time_limit=verify_time_limit or time_limit)
        explanation = _with(explanation, verification=report)
    return explanation


def _with(explanation: Explanation, **changes: Any) -> Explanation:
    from dataclasses import replace

    return replace(explanation, **changes)


def _algorithm(q: _Question, kind: str, algorithm: str, oracle, order, time_limit: float | None):
    from xsnn.solvers.axp import DeletionAXp, ProgressionAXp, QuickXplainAXp
    from xsnn.solvers.cxp import DeletionCXp
    from xsnn.solvers.minimum import MinimumAXp

    image = None if q.data is None else q.data.reshape(-1)
    if kind == "cxp":
        return DeletionCXp(oracle, order=order, image=image, use_witnesses=True, time_limit=time_limit)
    if kind == "min-axp":
        return MinimumAXp(oracle, order=order, image=image, time_limit=time_limit)
    cls = {"deletion": DeletionAXp, "quickxplain": QuickXplainAXp, "progression": ProgressionAXp}[algorithm]
    return cls(oracle, order=order, image=image, time_limit=time_limit)


def _explain_question(
    q: _Question,
    kind: str,
    algorithm: str,
    backend: str,
    order,
    time_limit: float | None,
    fast_paths: bool,
    progress: ProgressCallback | None,
) -> Explanation:
    solver = _algorithm(q, kind, algorithm, q.oracle(backend, fast_paths), order, time_limit)
    try:
        result, interrupted = _run_stoppable(
            solver.compute,
            solver.stop,
            progress=progress,
            status=solver.progress,
            snapshot=solver.snapshot,
            close=solver.close,
        )
    except NoExplanationError as exc:
        return q.explanation(kind, None, status="error", stats={"error": str(exc)})
    if kind == "min-axp":
        status = "interrupted" if interrupted and result.status is not Status.COMPLETE else result.status.value
        return q.explanation(
            kind,
            result.explanation,
            status=status,
            stats={"lower_bound": result.lower_bound, "n_cxps": result.n_cxps, **_plain_stats(result.stats)},
        )
    return q.explanation(kind, result)


def verify_explanation(
    explanation: Explanation, model: BSNN, *, backend: str | None = None, time_limit: float | None = None
) -> VerificationReport:
    """Re-check ``explanation``'s certificate (see :func:`verify`); ``model`` is the network it is about."""
    stop = threading.Event()
    engine = explanation.stats.get("distance_engine") or {}
    if backend is None and explanation.max_distance is not None and not engine.get("use"):
        # found by the solvers: re-check by enumerating the ball, which shares no encoding with them
        from xsnn.solvers.ball import verify_by_enumeration

        try:
            report, _ = _run_stoppable(
                lambda: verify_by_enumeration(explanation.proof, time_limit=time_limit, stop=stop), stop.set
            )
            return report
        except ValueError as exc:  # the ball is too large to enumerate: the solvers re-check it
            log.info("verification by the solvers: %s", exc)
    proof = explanation.proof
    backend = backend or verifier_backend(
        "ball" if engine.get("use") else explanation.settings.get("options", {}).get("backend", DEFAULT_BACKEND),
        proof.question.model,
        proof.question.instance,
        explanation.max_distance,
    )
    report, _ = _run_stoppable(
        lambda: verify_certificate(explanation.proof, exact_oracle_factory(backend), time_limit=time_limit, stop=stop),
        stop.set,
    )
    return report


def verify(
    explanation: Explanation, *, backend: str | None = None, time_limit: float | None = None
) -> VerificationReport:
    """Independently re-check an explanation's certificate.

    Every witness (the proof that a feature is necessary, or that a CXp changes the prediction)
    is re-run through the reference forward, and every ENTAILED claim (sufficiency) is re-decided
    by another exact backend than the one that produced it (``backend``; default: CP-SAT for
    SAT/SMT-found claims, SAT otherwise). ``time_limit`` bounds the whole check; what was not
    checked in time is listed, with status ``timeout``.

    Examples:
        >>> import xsnn
        >>> model = xsnn.load_model()
        >>> images, _ = xsnn.load_sample()
        >>> report = xsnn.verify(xsnn.explain(model, images[2], time_limit=60))
        >>> report.ok, report.status
        (True, 'complete')
    """
    if not isinstance(explanation, Explanation):
        raise TypeError(f"verify() takes an Explanation, got {type(explanation).__name__}")
    if explanation.proof is None:
        raise ValueError(f"this explanation ({explanation.kind}, status {explanation.status}) has no proof to verify")
    return verify_explanation(
        explanation,
        explanation.proof.question.model,
        backend=backend,
        time_limit=_check_seconds("time_limit", time_limit),
    )


# ---------------------------------------------------------------------------- enumerate, attribution


class Enumeration:
    """AXps or CXps of one prediction, yielded as they are found (anytime).

    Iterate over it; afterwards :attr:`status` says how it ended (``complete``: every one was
    found; ``timeout``, ``limit``, ``interrupted`` or ``undecided`` otherwise). Ctrl-C while
    iterating ends the iteration (status ``interrupted``) after the ones already found.
    """

    def __init__(self, question: _Question, kind: str, enumerator, oracle) -> None:
        self._q, self._kind, self._enumerator, self._oracle = question, kind, enumerator, oracle
        self.status: str | None = None
        self.found = 0
        self._started = False

    def __iter__(self) -> Iterator[Explanation]:
        if self._started:
            raise RuntimeError("an Enumeration can be iterated once")
        self._started = True
        items: queue.Queue = queue.Queue()
        done = object()
        enumerator = self._enumerator

        def produce() -> None:
            try:
                for item in enumerator.enumerate():
                    if item.kind == self._kind:
                        items.put(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                items.put(exc)
            items.put(done)

        worker = threading.Thread(target=produce, name="xsnn-enumerate", daemon=True)
        worker.start()
        interrupted = False
        try:
            while True:
                try:
                    item = items.get(timeout=0.1)
                except queue.Empty:
                    continue
                except KeyboardInterrupt:
                    interrupted = True
                    enumerator.stop()
                    worker.join(STOP_GRACE_SECONDS)
                    break
                if item is done:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, NoExplanationError):
                        self.status = "error"
                        return
                    raise item
                self.found += 1
                yield self._q.explanation(self._kind, item)
        finally:
            enumerator.stop()  # also when the consumer stops early (break, close)
            worker.join(STOP_GRACE_SECONDS)
            self._oracle.close()
            final = enumerator.status
            self.status = "interrupted" if interrupted else (final.value if final is not None else "interrupted")


def enumerate(
    model: BSNN | str,
    image: Any,
    kind: str = "axp",
    *,
    limit: int | None = None,
    time_limit: float | None = None,
    max_distance: int | None = None,
    target: int | None = None,
    backend: str = DEFAULT_BACKEND,
    features: FeatureSet | str | None = None,
    binarized: bool = False,
    source: dict | None = None,
) -> Enumeration:
    """Enumerate the AXps (``kind="axp"``) or CXps (``kind="cxp"``) of a prediction, anytime.

    Returns an :class:`Enumeration`: iterate over it to get :class:`~xsnn.explanation.Explanation`
    objects as they are found; ``limit`` stops after that many (status ``limit``).

    Examples:
        >>> import xsnn
        >>> model = xsnn.load_model()
        >>> images, _ = xsnn.load_sample()
        >>> run = xsnn.enumerate(model, images[2], kind="cxp", limit=2, time_limit=60)
        >>> [e.kind for e in run], run.status
        (['cxp', 'cxp'], 'limit')
    """
    from xsnn.solvers.enumerate import Enumerator

    _check_choice("kind", kind, ("axp", "cxp"))
    limit = _check_count("limit", limit, 1)
    time_limit = _check_seconds("time_limit", time_limit)
    exact_oracle_factory(backend)
    options = {"kind": kind, "backend": backend, "time_limit": time_limit, "limit": limit}
    q = _Question(
        model,
        image,
        target=target,
        max_distance=max_distance,
        features=features,
        binarized=binarized,
        source=source,
        options=options,
    )
    oracle = q.oracle(backend, True)
    enumerator = Enumerator(
        oracle,
        prefer=kind,
        max_axps=limit if kind == "axp" else None,
        max_cxps=limit if kind == "cxp" else None,
        time_limit=time_limit,
        image=None if q.data is None else q.data.reshape(-1),
    )
    return Enumeration(q, kind, enumerator, oracle)


def attribution(
    model: BSNN | str,
    image: Any,
    *,
    time_limit: float | None = None,
    limit: int | None = None,
    max_distance: int | None = None,
    target: int | None = None,
    backend: str = DEFAULT_BACKEND,
    features: FeatureSet | str | None = None,
    binarized: bool = False,
    source: dict | None = None,
    progress: ProgressCallback | None = None,
) -> Explanation:
    """Formal feature attribution (FFA) and feature relevance of a prediction.

    ``values[k]`` is the share of AXps that contain feature ``k`` (Yu, Ignatiev and Stuckey's
    formal feature attribution), from enumerating AXps. With status ``complete`` every AXp was
    found: the shares are exact, ``mask`` marks the relevant features (in some AXp) and the rest
    are irrelevant (in no AXp). Otherwise (``timeout``, ``limit``, ``interrupted``) the shares are
    those of the AXps found so far (``stats["n_axps"]``), an anytime approximation.

    Examples:
        >>> import xsnn
        >>> model = xsnn.load_model()
        >>> images, _ = xsnn.load_sample()
        >>> a = xsnn.attribution(model, images[2], max_distance=1, time_limit=60)
        >>> a.kind, a.status, a.values.shape
        ('attribution', 'complete', (784,))
    """
    from xsnn.solvers.enumerate import FeatureAttribution

    limit = _check_count("limit", limit, 1)
    time_limit = _check_seconds("time_limit", time_limit)
    exact_oracle_factory(backend)
    options = {"kind": "attribution", "backend": backend, "time_limit": time_limit, "limit": limit}
    q = _Question(
        model,
        image,
        target=target,
        max_distance=max_distance,
        features=features,
        binarized=binarized,
        source=source,
        options=options,
    )
    with FeatureAttribution(
        q.oracle(backend, True),
        max_axps=limit,
        time_limit=time_limit,
        image=None if q.data is None else q.data.reshape(-1),
    ) as ffa:
        enumerator = ffa.enumerator
        try:
            result, interrupted = _run_stoppable(
                ffa.compute, enumerator.stop, progress=progress, status=enumerator.progress
            )
        except NoExplanationError as exc:
            return q.explanation("attribution", None, status="error", stats={"error": str(exc)})
    status = "interrupted" if interrupted and result.status is not Status.COMPLETE else result.status.value
    relevant = np.flatnonzero(result.counts > 0)
    stats = {**_plain_stats(result.stats), "n_axps": result.n_axps, "axps": [list(a) for a in result.axps]}
    return q.explanation(
        "attribution",
        None,
        status=status,
        values=result.scores,
        features=relevant.tolist(),
        minimal=status == "complete",
        stats=stats,
        seconds=result.seconds,
    )


# ---------------------------------------------------------------------------- many images


def explain_many(
    model: BSNN | str,
    images: Iterable[Any],
    kind: str = "axp",
    *,
    sources: Iterable[dict | None] | None = None,
    **options: Any,
) -> Iterator[Explanation]:
    """Explain each image in turn (a generator: one :class:`~xsnn.explanation.Explanation` per
    image, in order). A bad image or an image without explanation gives status ``error`` (the
    message in ``stats["error"]``), a time-out status ``timeout``; the loop goes on. Ctrl-C ends
    it after yielding the interrupted explanation. ``options`` are those of :func:`explain`
    (``time_limit`` is per image).

    Examples:
        >>> import xsnn
        >>> model = xsnn.load_model()
        >>> images, _ = xsnn.load_sample()
        >>> [e.status for e in xsnn.explain_many(model, images[[2, 5]], max_distance=1, time_limit=60)]
        ['complete', 'complete']
    """
    model = _as_model(model)
    _check_choice("kind", kind, KINDS)
    source_list = iter(sources) if sources is not None else None
    for image in images:
        source = next(source_list, None) if source_list is not None else None
        try:
            explanation = explain(model, image, kind, source=source, **options)
        except (ValueError, TypeError) as exc:
            yield _error_explanation(model, image, kind, source, exc)
            continue
        yield explanation
        if explanation.status == "interrupted":
            return


def _error_explanation(model: BSNN, image: Any, kind: str, source: dict | None, exc: Exception) -> Explanation:
    from xsnn import __version__

    features = FeatureSet.pixels(model.n_inputs, model.input_shape)
    return Explanation(
        kind=kind,
        data=None,
        spikes=np.zeros((model.n_steps, model.n_inputs), np.uint8),
        mask=np.zeros(len(features), bool),
        features=(),
        feature_names=features.names,
        feature_pixels=features.groups,
        input_shape=model.input_shape,
        values=None,
        prediction=-1,
        target=None,
        status="error",
        minimal=False,
        stats={"error": str(exc)},
        proof=None,
        settings={
            "model": model.info.get("name", "unnamed"),
            "model_hash": model.content_hash(),
            "data": source,
            "options": {"kind": kind},
            "xsnn_version": __version__,
        },
    )


def predict(model: BSNN | str, images: Any, *, binarized: bool = False) -> np.ndarray:
    """Class labels (e.g. digits) for a batch of images ``(n, *input_shape)`` (or one image), or
    for coded input spikes ``(n, T, n_inputs)``.

    Images are checked as in :func:`check_image` (a batch scaled to [0, 1] or binarized is refused
    unless ``binarized=True``).

    Examples:
        >>> import xsnn
        >>> images, labels = xsnn.load_sample()
        >>> bool((xsnn.predict("mnist10-sparse192", images[:20]) == labels[:20]).mean() >= 0.9)
        True
    """
    model = _as_model(model)
    arr = np.asarray(images)
    spikes_shape = (model.n_steps, model.n_inputs)
    if arr.ndim == 3 and arr.shape[1:] == spikes_shape and spikes_shape != model.input_shape:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(
                f"images have the shape of input spikes (n, {spikes_shape[0]}, {spikes_shape[1]}) "
                f"but hold values other than 0/1"
            )
        spikes = arr.astype(np.uint8)
    else:
        if arr.shape in (model.input_shape, (model.n_inputs,)):
            arr = arr[None]
        if arr.ndim < 2 or arr.shape[1:] not in (model.input_shape, (model.n_inputs,)):
            raise ValueError(
                f"images have shape {arr.shape}; expected (n, {', '.join(map(str, model.input_shape))}) "
                f"or (n, {model.n_inputs}) with intensities 0..255"
            )
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"images must hold intensities 0..255, got an array of {arr.dtype}")
        spikes = (
            model.encode(_intensities(arr, "images", binarized).reshape(len(arr), -1))
            if len(arr)
            else np.zeros((0, *spikes_shape), np.uint8)
        )
    from xsnn.kernel import predict as predict_indices  # the fastest forward kernel (= the reference forward)

    return np.asarray(model.labels, dtype=np.int64)[predict_indices(model, spikes)]
