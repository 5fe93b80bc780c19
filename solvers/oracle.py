"""The entailment-oracle interface every backend implements, and its result type.

For a network, an instance ``v`` (input spikes ``(T, n)``), a target class ``c``
and a feature set ``F``, the question is, for a set ``S`` of fixed features::

    exists x : x agrees with v on S  and  x free elsewhere in the coding's domain
               [and  |{k : x_k != v_k}| <= max_distance]  and  prediction(x) != c ?

``ENTAILED`` means no such x exists (UNSAT: fixing S entails the prediction);
``NOT_ENTAILED`` comes with a witness x, re-run through the reference forward;
``UNKNOWN`` means the budget ran out. A timeout is a verdict, never a sentinel.
"""

from __future__ import annotations

import abc
import enum
import operator
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, check_spikes, forward
from xsnn.question import Question

__all__ = [
    "Verdict",
    "Check",
    "EntailmentOracle",
    "OracleStats",
    "WitnessError",
    "WitnessVerifier",
    "feature_distance",
    "verify_witness",
]


class Verdict(str, enum.Enum):
    ENTAILED = "entailed"  # UNSAT: with S fixed, the prediction is always c
    NOT_ENTAILED = "not_entailed"  # SAT: a witness input changes the prediction
    UNKNOWN = "unknown"  # budget exhausted


class WitnessError(RuntimeError):
    """A backend produced a witness that the reference forward refutes (a bug, never silenced)."""


@dataclass(frozen=True)
class Check:
    """The answer to one entailment question.

    Attributes:
        verdict: ENTAILED, NOT_ENTAILED or UNKNOWN.
        fixed: the fixed feature set S that was asked about.
        witness: for NOT_ENTAILED, input spikes ``(T, n_inputs)`` that agree with the
            instance on S, respect the coding's free domain (and the distance bound) and
            whose reference-forward prediction is not the target.
        core: for ENTAILED, a subset of S that is itself sufficient (S if none smaller known).
        path: which answer path decided: a fast path (``"bounds"``, ``"attack"``, ``"rival-repair"``...)
            or the exact oracle's name (``"sat:cadical195"``, ``"cpsat"``...).
        seconds: wall time of the check.
        witness_verified: set by :meth:`EntailmentOracle.check` once the witness has been re-run
            through the reference forward for this question; an oracle that passes on an inner
            oracle's check for the *same* question (a portfolio, the layered oracle) keeps it, so
            the witness is not verified twice.
    """

    verdict: Verdict
    fixed: frozenset[int]
    witness: np.ndarray | None = None
    core: frozenset[int] | None = None
    path: str = ""
    seconds: float = 0.0
    witness_verified: bool = False


@dataclass
class OracleStats:
    """Counters kept by an oracle: calls and time per answer path."""

    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, check: Check) -> None:
        self.calls[check.path] = self.calls.get(check.path, 0) + 1
        self.seconds[check.path] = self.seconds.get(check.path, 0.0) + check.seconds

    def as_dict(self) -> dict:
        return {"calls": dict(self.calls), "seconds": {k: round(v, 6) for k, v in self.seconds.items()}}


def feature_distance(features: FeatureSet, a: np.ndarray, b: np.ndarray) -> int:
    """Number of features whose spike trains differ between inputs ``a`` and ``b`` (``(T, n)`` each)."""
    differs = np.any(np.asarray(a) != np.asarray(b), axis=0)
    return sum(bool(differs[list(g)].any()) for g in features.groups)


class WitnessVerifier:
    """Checks counterexamples for one question family (model, instance, features, target, distance).

    A witness ``x`` for fixed set ``S`` is genuine when: it agrees with the instance on every
    pixel of a feature in ``S``; every other pixel's train lies in the coding's free domain; at
    most ``max_distance`` features differ from the instance (if given); and the reference
    forward predicts a class other than ``target``. Only pixels where ``x`` differs from the
    instance can break the first three conditions (an unchanged free pixel keeps the instance's
    train, whose domain membership is computed once here), so a check costs the differing
    pixels plus one reference forward.
    """

    def __init__(
        self, model: BSNN, instance: np.ndarray, features: FeatureSet, target: int, max_distance: int | None = None
    ) -> None:
        self.model, self.features, self.target, self.max_distance = model, features, int(target), max_distance
        self.instance = check_spikes(model, instance)[0]
        self._owner = features.feature_of_pixel()  # -1: pixel of no feature
        # a train as the integer sum_t s(t) 2^t (T <= 64 steps: exact in uint64)
        self._powers = np.left_shift(np.uint64(1), np.arange(model.n_steps, dtype=np.uint64))
        self._domain = self._powers @ model.coding.free_trains(model.n_steps).T.astype(np.uint64)
        codes = self._powers @ self.instance.astype(np.uint64)
        outside = ~(codes[:, None] == self._domain[None, :]).any(axis=1)
        self._instance_outside = np.flatnonzero(outside)  # pixels whose own train is not a free train

    def __call__(self, fixed: Iterable[int], witness: np.ndarray) -> None:
        """Raise :class:`WitnessError` unless ``witness`` is a genuine counterexample for ``fixed``."""
        fixed = fixed if isinstance(fixed, frozenset) else frozenset(fixed)
        x = check_spikes(self.model, witness)[0]
        differing = np.flatnonzero((x != self.instance).any(axis=0))
        owners = self._owner[differing]
        if not fixed.isdisjoint(owners.tolist()):
            raise WitnessError("witness changes a fixed feature")
        codes = self._powers @ x[:, differing].astype(np.uint64)
        in_domain = (codes[:, None] == self._domain[None, :]).any(axis=1)
        outside = differing[~in_domain].tolist()
        if len(self._instance_outside):  # unchanged free pixels whose own train is outside the domain
            unchanged = np.setdiff1d(self._instance_outside, differing, assume_unique=True)
            outside += [p for p in unchanged.tolist() if self._owner[p] not in fixed]
        if outside:
            raise WitnessError(f"witness gives pixel {min(outside)} a spike train outside the coding's free domain")
        if self.max_distance is not None and len(np.unique(owners[owners >= 0])) > self.max_distance:
            raise WitnessError("witness is further from the instance than the distance bound")
        if int(forward(self.model, x).prediction[0]) == self.target:
            raise WitnessError("witness does not change the prediction under the reference forward")


def verify_witness(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet,
    fixed: Iterable[int],
    target: int,
    witness: np.ndarray,
    max_distance: int | None = None,
) -> None:
    """Raise :class:`WitnessError` unless ``witness`` is a genuine counterexample (see
    :class:`WitnessVerifier`, which also serves repeated checks for one instance)."""
    WitnessVerifier(model, instance, features, target, max_distance)(fixed, witness)


def _feature_index(k) -> int:
    """``k`` as a Python int, or TypeError for a value that is not integral (3.5, "3")."""
    try:
        return int(operator.index(k))  # int(): a bool becomes 0 or 1
    except TypeError:
        raise TypeError(f"feature indices must be integers, got {k!r}") from None


class _CheckedFixedSet(frozenset):
    """A fixed set that :meth:`EntailmentOracle.check` has validated: ints in ``0..n_features - 1``.

    A wrapper oracle (portfolio, layered) passes it on to its inner oracles, which then skip
    the validation (it costs about as much as a fast answer)."""

    n_features: int = -1

    def __repr__(self) -> str:  # shown as the frozenset it is
        return f"frozenset({sorted(self)!r})" if self else "frozenset()"


class EntailmentOracle(abc.ABC):
    """Answers "is prediction != target satisfiable with the features in S fixed?".

    Built for one (model, instance, features, target, max_distance); ``check`` may be
    called many times (backends are incremental). Use as a context manager to free
    solver memory. ``target`` defaults to the instance's prediction.
    """

    name: str = "oracle"
    _interrupted: bool = False  # set by interrupt(); class default for subclasses that skip __init__

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
    ) -> None:
        question = Question.build(model, instance, features, target, max_distance)
        self.model, self.instance, self.features = model, question.instance, question.features
        self.target, self.max_distance = question.target, question.max_distance
        self.prediction = question.target if target is None else int(forward(model, self.instance).prediction[0])
        self.stats = OracleStats()
        self._witness_verifier: WitnessVerifier | None = None  # built on the first witness

    def check(self, fixed: Iterable[int], time_limit: float | None = None) -> Check:
        """Decide the question for fixed set ``fixed``; a witness is verified before it is returned."""
        n_features = len(self.features)
        if isinstance(fixed, _CheckedFixedSet) and fixed.n_features == n_features:
            fixed_set = fixed  # validated by an outer oracle's check for the same features
        else:
            fixed_set = _CheckedFixedSet(fixed)
            # Python ints only. Without 0 and 1 in the set (the values a bool can equal), the sum
            # tells: it is an int for ints, while a numpy integer, float or fraction anywhere turns
            # it into its own type (about 3x cheaper than asking each element's type)
            try:
                if 0 in fixed_set or 1 in fixed_set:
                    only_ints = set(map(type, fixed_set)) == {int}
                else:
                    only_ints = type(sum(fixed_set)) is int
            except TypeError:  # a string or the like: _feature_index names it
                only_ints = False
            if not only_ints:
                fixed_set = _CheckedFixedSet(map(_feature_index, fixed_set))
            ordered = sorted(fixed_set)  # fast on a set of small ints
            if ordered and (ordered[0] < 0 or ordered[-1] >= n_features):
                bad = [k for k in fixed_set if not 0 <= k < n_features]
                raise ValueError(f"unknown feature index(es) {sorted(bad)[:5]}; there are {n_features} features")
            fixed_set.n_features = n_features
        start = time.perf_counter()
        if self._interrupted:
            return Check(Verdict.UNKNOWN, fixed_set, path="interrupted")
        answer = self._check(fixed_set, time_limit)
        if self._interrupted and answer.verdict is Verdict.UNKNOWN:
            answer = Check(Verdict.UNKNOWN, fixed_set, path="interrupted")
        verified = answer.witness_verified and (answer.fixed is fixed_set or answer.fixed == fixed_set)
        if answer.verdict is Verdict.NOT_ENTAILED and not verified:
            if answer.witness is None:
                raise WitnessError(f"{answer.path or self.name} answered NOT_ENTAILED without a witness")
            if self._witness_verifier is None:
                self._witness_verifier = WitnessVerifier(
                    self.model, self.instance, self.features, self.target, self.max_distance
                )
            self._witness_verifier(fixed_set, answer.witness)
        check = Check(
            answer.verdict,
            fixed_set,
            answer.witness,
            answer.core,
            answer.path or self.name,
            time.perf_counter() - start,
            answer.verdict is Verdict.NOT_ENTAILED,
        )
        self.stats.record(check)
        return check

    @abc.abstractmethod
    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        """Backend-specific decision; ``fixed`` is validated. Return a Check (timing is filled in).

        Leave ``witness_verified`` False: only :meth:`check` sets it, and a wrapper may pass on
        the Check that an inner oracle's :meth:`check` returned for the same question."""

    def interrupt(self) -> None:
        """Stop: the check in progress returns UNKNOWN soon, and so does every later one.

        Safe to call from another thread (this is how Ctrl-C and stop requests reach a solver
        that runs in a worker thread). A backend whose solver can be stopped mid-call implements
        :meth:`_interrupt_solver`; any other one stops at the end of its current call.
        """
        self._interrupted = True
        self._interrupt_solver()

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def _interrupt_solver(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Backend hook for :meth:`interrupt`: stop the solver call in progress (default: nothing)."""

    def close(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Free solver resources (default: nothing to free)."""

    def __enter__(self) -> EntailmentOracle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
