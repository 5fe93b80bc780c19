"""Abductive explanations (AXps): deletion, QuickXplain and progression.

For an oracle (model, instance ``v``, features ``F``, target ``c``, optional distance bound
``k``), a set ``S ⊆ F`` is *sufficient* when the oracle says ENTAILED for ``S`` fixed; an AXp is
a subset-minimal sufficient set. Sufficiency is monotone (a superset of a sufficient set is
sufficient), which all three algorithms rely on:

* :class:`DeletionAXp` (Ignatiev et al., AAAI 2019): start from ``F``; for each feature in
  order, drop it if the rest stays sufficient. ``|F|`` calls. With ``use_cores``, an ENTAILED
  answer's core (a sufficient subset) replaces ``S`` at once.
* :class:`QuickXplainAXp` (Junker 2004): divide and conquer; ``O(|S| log(|F|/|S|))`` calls,
  good when AXps are small.
* :class:`ProgressionAXp` (Marques-Silva, Janota, Belov, CAV 2013): grow the explanation
  from the empty set; each necessary feature is located by exponential then binary search
  over a prefix of the remaining candidates.

Distance-restricted AXps are the same algorithms over an oracle built with
``max_distance=k``: the explanation is then valid for every input within ``k`` changed
features of the instance.

**Feature order.** ``order`` is the order in which features are *tried for removal*:
``"index"``, ``"reverse"``, ``"brightest"`` / ``"darkest"`` (pixel intensity of the feature: the
mean of ``image`` over its pixels when an image is given, else a spike-based brightness,
``sum_t x(t) (T - t)``, which orders static and latency codings alike), or an array of one
score per feature (e.g. |SHAP| values): lowest score tried first, so high scores tend to
stay. With exact verdicts the three algorithms return the *same* AXp for the same order.

**Budgets.** ``time_limit`` bounds a whole computation, ``call_time_limit`` each oracle call.
UNKNOWN verdicts keep soundness: a feature whose removal is undecided stays (status
``undecided``, listed as unproven); on timeout the current set, sufficient by the algorithms'
invariant, is returned with status ``timeout``.

**Identity with fast paths.** The algorithms read only verdicts (and, with ``use_cores``,
cores). A :class:`~xsnn.solvers.layered.LayeredOracle` returns the exact verdict for every
question, so with ``use_cores=False`` the AXp is identical with and without fast paths, for
every order. With ``use_cores=True`` it is identical when the layered oracle answers no
ENTAILED itself (without the paths ``bounds``, ``exhaustive`` and ``cores``: cache, look-ahead
and attack only answer
NOT_ENTAILED, which carries no core) *and* the exact oracle's cores are a function of the
question alone (true for brute force; an incremental SAT solver's raw cores depend on its
history).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xsnn.question import Question

from .certificate import AXpCertificate, VerdictRecord
from .oracle import Check, EntailmentOracle, Verdict
from .result import FormalExplanation, NoExplanationError, Status
from .witnesses import WitnessCache

__all__ = ["OracleAlgorithm", "DeletionAXp", "QuickXplainAXp", "ProgressionAXp", "feature_order", "Order"]

log = logging.getLogger(__name__)

Order = str | Sequence[float] | np.ndarray
_ORDER_NAMES = ("index", "reverse", "brightest", "darkest")


def feature_order(oracle: EntailmentOracle, order: Order = "index", image: np.ndarray | None = None) -> list[int]:
    """The features in the order they are tried for removal (see the module docstring)."""
    n = len(oracle.features)
    if isinstance(order, str):
        if order not in _ORDER_NAMES:
            raise ValueError(f"unknown order {order!r}; use one of {', '.join(_ORDER_NAMES)} or an array of scores")
        if order == "index":
            return list(range(n))
        if order == "reverse":
            return list(range(n - 1, -1, -1))
        bright = _brightness(oracle, image)
        key = -bright if order == "brightest" else bright
        return [int(i) for i in np.argsort(key, kind="stable")]
    scores = np.asarray(order, dtype=np.float64)
    if scores.shape != (n,):
        raise ValueError(f"an order given as scores needs one score per feature ({n}), got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("order scores must be finite numbers")
    return [int(i) for i in np.argsort(scores, kind="stable")]


def _brightness(oracle: EntailmentOracle, image: np.ndarray | None) -> np.ndarray:
    groups = oracle.features.groups
    if image is not None:
        pixels = np.asarray(image, dtype=np.float64).reshape(-1)
        if pixels.size != oracle.model.n_inputs:
            raise ValueError(f"image has {pixels.size} pixels, the model has {oracle.model.n_inputs} inputs")
    else:
        T = oracle.model.n_steps
        weights = (T - np.arange(T, dtype=np.float64))[:, None]
        pixels = (oracle.instance.astype(np.float64) * weights).sum(axis=0)
    return np.array([pixels[list(g)].mean() for g in groups])


@dataclass
class _Run:
    """Per-computation bookkeeping."""

    start: float
    deadline: float | None
    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    undecided: bool = False
    timed_out: bool = False  # stopped early: the time limit ran out, or a stop was requested
    # the deletion in progress (live objects, read by snapshot() and progress() from another thread)
    current: set[int] | None = None
    witnesses: dict[int, np.ndarray] | None = None
    sufficiency: Check | None = None


class OracleAlgorithm:
    """Base of every explanation algorithm: an oracle, budgets, statistics, a context manager.

    Args:
        oracle: the entailment oracle (any backend, layered or not).
        time_limit: seconds for one computation (``None``: unlimited).
        call_time_limit: seconds per oracle call (``None``: unlimited); the remaining overall
            time caps it too.
    """

    def __init__(
        self, oracle: EntailmentOracle, *, time_limit: float | None = None, call_time_limit: float | None = None
    ) -> None:
        if not isinstance(oracle, EntailmentOracle):
            raise TypeError(f"oracle must be an EntailmentOracle, got {type(oracle).__name__}")
        for name, value in (("time_limit", time_limit), ("call_time_limit", call_time_limit)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive seconds or None, got {value!r}")
        self.oracle = oracle
        self.time_limit = time_limit
        self.call_time_limit = call_time_limit
        self.question = Question.from_oracle(oracle)
        self.all_features = frozenset(range(len(oracle.features)))
        self._owner = oracle.features.feature_of_pixel()
        self._run: _Run | None = None
        self._store: WitnessCache | None = None
        self._stop_requested = threading.Event()
        self.stats: dict = {"calls": {}, "seconds": {}, "computations": 0}

    # -------------------------------------------------------------- stopping and progress

    def stop(self) -> None:
        """Ask the computation in progress to stop soon (thread-safe; e.g. on Ctrl-C).

        The oracle is interrupted (its current solver call returns UNKNOWN) and the algorithm
        returns what it has proven so far with status ``interrupted``: for an AXp a sufficient
        set, for a CXp a set whose freeing changes the prediction. Stopping is final: the
        algorithm and its oracle answer nothing more.
        """
        self._stop_requested.set()
        self.oracle.interrupt()

    @property
    def stopped(self) -> bool:
        return self._stop_requested.is_set()

    def progress(self) -> dict:
        """A snapshot for progress displays: questions decided, seconds, and for a deletion in
        progress the features still in the sufficient set and those proven necessary.

        Safe to call from another thread while :meth:`compute` runs."""
        run = self._run
        if run is None:
            return {"questions": 0, "seconds": 0.0}
        out = {"questions": sum(run.calls.values()), "seconds": time.perf_counter() - run.start}
        current, witnesses = run.current, run.witnesses
        if current is not None and witnesses is not None:
            out["features"] = len(self.all_features)
            out["in_set"] = len(current)
            out["necessary"] = len(witnesses)
        return out

    def snapshot(self) -> FormalExplanation | None:
        """The sound partial AXp of the deletion in progress (status ``interrupted``), or ``None``
        when no deletion is running. For a caller that cannot wait for :meth:`stop` to take
        effect (a solver call that cannot be interrupted): the set is sufficient by the deletion's
        invariant (it contains the last set proven sufficient), and the witnesses recorded so far
        prove the necessity of the features they belong to. Safe to call from another thread."""
        run = self._run
        if run is None or run.current is None or run.witnesses is None:
            return None
        s = set(run.current)  # one C-level copy under the GIL: consistent
        witnesses = {i: w for i, w in dict(run.witnesses).items() if i in s}
        cert = AXpCertificate(
            self.question,
            frozenset(s),
            None if run.sufficiency is None else VerdictRecord.from_check(run.sufficiency),
            witnesses,
            frozenset(s - set(witnesses)),
        )
        minimal = len(witnesses) == len(s)
        return FormalExplanation(
            "axp",
            tuple(sorted(s)),
            Status.COMPLETE if minimal else Status.INTERRUPTED,
            minimal,
            cert,
            self._run_stats(),
            self._elapsed(),
        )

    def _early_status(self) -> Status:
        """The status of a computation that ended before its search was done."""
        return Status.INTERRUPTED if self.stopped else Status.TIMEOUT

    # -------------------------------------------------------------- context manager

    def close(self) -> None:
        """Free the oracle's solver resources."""
        self.oracle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- bookkeeping

    def _begin(self) -> None:
        now = time.perf_counter()
        self._run = _Run(now, None if self.time_limit is None else now + self.time_limit)
        self._store = WitnessCache(self.oracle, capacity=1 << 14)
        self.stats["computations"] += 1

    def _expired(self) -> bool:
        run = self._run
        return self.stopped or run.deadline is not None and time.perf_counter() >= run.deadline

    def _ask(self, fixed) -> Check:
        """One oracle call under the budgets; records statistics and witnesses."""
        run = self._run
        limit = self.call_time_limit
        if run.deadline is not None:
            left = max(run.deadline - time.perf_counter(), 1e-3)
            limit = left if limit is None else min(limit, left)
        check = self.oracle.check(fixed, time_limit=limit)
        self._record(check, check.path)
        if check.verdict is Verdict.UNKNOWN:
            run.undecided = True
        return check

    def _record(self, check: Check, key: str) -> None:
        """Count one answer under ``key`` (per run and in total) and keep its witness."""
        run = self._run
        run.calls[key] = run.calls.get(key, 0) + 1
        run.seconds[key] = run.seconds.get(key, 0.0) + check.seconds
        self.stats["calls"][key] = self.stats["calls"].get(key, 0) + 1
        self.stats["seconds"][key] = self.stats["seconds"].get(key, 0.0) + check.seconds
        if check.verdict is Verdict.NOT_ENTAILED:
            self._store.add(check.witness)

    def _run_stats(self) -> dict:
        run = self._run
        return {
            "calls": dict(run.calls),
            "seconds": {k: round(v, 6) for k, v in run.seconds.items()},
            "oracle_calls": sum(run.calls.values()),
        }

    def _elapsed(self) -> float:
        return time.perf_counter() - self._run.start

    def _differing(self, witness: np.ndarray) -> frozenset[int]:
        """Features on which ``witness`` differs from the instance."""
        differs = np.any(np.asarray(witness) != self.oracle.instance, axis=0)
        owner = self._owner[differs]
        return frozenset(int(g) for g in np.unique(owner[owner >= 0]))

    # -------------------------------------------------------------- shared AXp steps

    def _initial_axp_check(self) -> Check:
        """Fixing every feature must entail the target, otherwise there is no AXp."""
        check = self._ask(self.all_features)
        if check.verdict is Verdict.ENTAILED:
            return check
        if check.verdict is Verdict.NOT_ENTAILED:
            raise NoExplanationError(
                f"fixing every feature does not entail class index {self.oracle.target} "
                f"(the instance is predicted {self.oracle.prediction}, or some pixels belong to no feature)"
            )
        raise NoExplanationError(
            "could not decide, within the time limit, that fixing every feature entails the target"
        )

    def _deletion(
        self, start: Check, order: Sequence[int], use_cores: bool, known: dict[int, np.ndarray] | None = None
    ) -> tuple[set[int], Check, dict[int, np.ndarray], set[int]]:
        """Deletion from a sufficient set (``start`` is its ENTAILED check).

        Returns ``(S, sufficiency check, witnesses, unproven)``. Features in ``known`` are
        already proven necessary (their witness is given) and are not asked about again.
        """
        s = set(_justified(start, use_cores))
        sufficiency = start
        witnesses: dict[int, np.ndarray] = dict(known or {})
        if not set(witnesses) <= s:
            raise RuntimeError(
                f"{start.path} returned a core without a feature proven necessary: the oracle is inconsistent"
            )
        unproven: set[int] = set()
        order = list(order)
        run = self._run
        run.current, run.witnesses, run.sufficiency = s, witnesses, sufficiency
        for i in order:
            if i not in s or i in witnesses or i in unproven:
                continue
            if self._expired():
                self._run.timed_out = True
                break
            check = self._ask(s - {i})
            if check.verdict is Verdict.ENTAILED:
                sufficiency = check
                run.sufficiency = check
                if not (use_cores and check.core is not None):
                    s.discard(i)  # the fixed set asked about: s - {i}, in place (no copy of s)
                    unproven.discard(i)
                    continue
                new = check.core
                if not new <= s - {i}:
                    raise RuntimeError(f"{check.path} returned a core that is not inside the fixed set")
                lost = (s - new) & set(witnesses)
                if lost:
                    raise RuntimeError(
                        f"{check.path} returned a core without feature(s) {sorted(lost)[:5]} "
                        "that a verified witness proved necessary: the oracle is inconsistent"
                    )
                s = set(new)
                run.current = s
                unproven &= s
            elif check.verdict is Verdict.NOT_ENTAILED:
                witnesses[i] = check.witness
            else:
                unproven.add(i)
        run.current = run.witnesses = None
        witnesses = {i: w for i, w in witnesses.items() if i in s}
        unproven = (s - set(witnesses)) | (unproven & s)
        return s, sufficiency, witnesses, unproven

    def _certify_axp(
        self, s: set[int], order: Sequence[int], sufficiency: Check | None
    ) -> tuple[set[int], Check | None, dict[int, np.ndarray], set[int]]:
        """Find a minimality witness for each feature of the sufficient set ``s``.

        Stored witnesses are reused; otherwise the oracle is asked. An ENTAILED answer (only
        possible after UNKNOWN verdicts or a timeout left ``s`` non-minimal) drops the feature.
        """
        witnesses: dict[int, np.ndarray] = {}
        unproven: set[int] = set()
        for i in order:
            if i not in s:
                continue
            found = self._store.find(frozenset(s - {i}))
            if found is not None:
                witnesses[i] = found
                continue
            if self._expired():
                self._run.timed_out = True
                unproven.add(i)
                continue
            check = self._ask(s - {i})
            if check.verdict is Verdict.NOT_ENTAILED:
                witnesses[i] = check.witness
            elif check.verdict is Verdict.ENTAILED:
                if not (self._run.undecided or self._run.timed_out):
                    log.warning("feature %d proved unnecessary after a complete search: oracle inconsistency?", i)
                s = s - {i}
                sufficiency = check
            else:
                unproven.add(i)
        witnesses = {i: w for i, w in witnesses.items() if i in s}
        return s, sufficiency, witnesses, unproven & s

    def _axp_result(
        self, s: set[int], sufficiency: Check | None, witnesses: dict[int, np.ndarray], unproven: set[int]
    ) -> FormalExplanation:
        run = self._run
        # complete = proven subset-minimal (even if the clock ran out after the last proof)
        status = (
            Status.COMPLETE
            if not unproven
            else self._early_status()
            if run.timed_out or self.stopped
            else Status.UNDECIDED
        )
        cert = AXpCertificate(
            self.question,
            frozenset(s),
            None if sufficiency is None else VerdictRecord.from_check(sufficiency),
            witnesses,
            frozenset(unproven),
        )
        return FormalExplanation(
            "axp", tuple(sorted(s)), status, not unproven, cert, self._run_stats(), self._elapsed()
        )


def _justified(check: Check, use_cores: bool) -> frozenset[int]:
    if use_cores and check.core is not None:
        return check.core
    return check.fixed


class _OrderedAXp(OracleAlgorithm):
    def __init__(
        self,
        oracle: EntailmentOracle,
        *,
        order: Order = "index",
        image: np.ndarray | None = None,
        use_cores: bool = False,
        time_limit: float | None = None,
        call_time_limit: float | None = None,
    ) -> None:
        super().__init__(oracle, time_limit=time_limit, call_time_limit=call_time_limit)
        self.order = feature_order(oracle, order, image)
        self.use_cores = bool(use_cores)


class DeletionAXp(_OrderedAXp):
    """Deletion-based AXp: one oracle call per feature (fewer with ``use_cores``).

    Args:
        oracle: the entailment oracle.
        order: removal order (see :func:`feature_order`).
        image: raw intensities for ``"brightest"`` / ``"darkest"``.
        use_cores: replace the set by an ENTAILED answer's core.
        time_limit, call_time_limit: budgets (see :class:`OracleAlgorithm`).
    """

    def __init__(
        self,
        oracle: EntailmentOracle,
        *,
        order: Order = "index",
        image: np.ndarray | None = None,
        use_cores: bool = False,
        time_limit: float | None = None,
        call_time_limit: float | None = None,
    ) -> None:
        super().__init__(
            oracle,
            order=order,
            image=image,
            use_cores=use_cores,
            time_limit=time_limit,
            call_time_limit=call_time_limit,
        )

    def compute(self) -> FormalExplanation:
        self._begin()
        start = self._initial_axp_check()
        s, sufficiency, witnesses, unproven = self._deletion(start, self.order, self.use_cores)
        return self._axp_result(s, sufficiency, witnesses, unproven)


class QuickXplainAXp(_OrderedAXp):
    """QuickXplain AXp (divide and conquer over the removal order).

    Invariant of ``qx(B, C)``: ``B ∪ C`` is sufficient; it returns ``X ⊆ C`` with ``B ∪ X``
    sufficient and, with exact verdicts, subset-minimal. A timeout returns ``C`` whole (sound).
    A final pass collects a minimality witness per feature (reusing the witnesses of the
    search, asking the oracle for the rest) and checks the result's sufficiency directly.
    ``use_cores`` is not used by this algorithm (cores do not fit its background sets).
    """

    def compute(self) -> FormalExplanation:
        self._begin()
        self._initial_axp_check()
        empty = self._ask(frozenset())
        if empty.verdict is Verdict.ENTAILED:
            return self._axp_result(set(), empty, {}, set())
        candidates = list(reversed(self.order))  # the first half is kept longest: removal order last
        x = set(self._qx(frozenset(), False, candidates))
        sufficiency = None
        if not self._expired():
            check = self._ask(x)
            if check.verdict is Verdict.ENTAILED:
                sufficiency = check
            elif check.verdict is Verdict.NOT_ENTAILED:
                raise RuntimeError("QuickXplain result refuted: the oracle is inconsistent")
        s, sufficiency, witnesses, unproven = self._certify_axp(x, self.order, sufficiency)
        return self._axp_result(s, sufficiency, witnesses, unproven)

    def _qx(self, background: frozenset[int], check_background: bool, candidates: list[int]) -> list[int]:
        if self._expired():
            self._run.timed_out = True
            return list(candidates)
        if check_background and self._ask(background).verdict is Verdict.ENTAILED:
            return []
        if len(candidates) == 1:
            return list(candidates)
        half = len(candidates) // 2
        first, second = candidates[:half], candidates[half:]
        x2 = self._qx(background | frozenset(first), bool(first), second)
        x1 = self._qx(background | frozenset(x2), bool(x2), first)
        return x1 + x2


class ProgressionAXp(_OrderedAXp):
    """Progression AXp: grow the explanation ``R`` from the empty set.

    Invariant: ``R ∪ W`` is sufficient, with ``W`` the remaining candidates (removal order
    reversed, so features tried for removal first sit at the end). Each round finds the
    smallest ``k`` with ``R ∪ W[:k]`` sufficient (exponential search 1, 3, 7, ... then
    bisection); ``W[k-1]`` is necessary (``R ∪ W[:k-1]`` is not sufficient, and its witness is
    the minimality proof), joins ``R``, and ``W`` becomes ``W[:k-1]``. With ``use_cores`` the
    core of the ENTAILED answer at ``k`` filters ``W``.
    """

    def compute(self) -> FormalExplanation:
        self._begin()
        start = self._initial_axp_check()
        sufficiency = start
        in_play = _justified(start, self.use_cores)
        work = [i for i in reversed(self.order) if i in in_play]
        chosen: list[int] = []
        witnesses: dict[int, np.ndarray] = {}
        unproven: set[int] = set()
        while work:
            if self._expired():
                self._run.timed_out = True
                break
            hi, hi_check = len(work), sufficiency
            lo, lo_check = -1, None
            probe = 0
            step = 1
            # exponential search: probe 0, 1, 3, 7, ... until a sufficient prefix or hi
            while probe < hi:
                if self._expired():
                    break
                check = self._ask(set(chosen) | set(work[:probe]))
                if check.verdict is Verdict.ENTAILED:
                    hi, hi_check = probe, check
                    break
                lo, lo_check = probe, check
                probe = lo + step
                step *= 2
            while hi - lo > 1 and not self._expired():
                mid = (lo + hi) // 2
                check = self._ask(set(chosen) | set(work[:mid]))
                if check.verdict is Verdict.ENTAILED:
                    hi, hi_check = mid, check
                else:
                    lo, lo_check = mid, check
            sufficiency = hi_check
            if hi - lo > 1:  # interrupted by the deadline: keep what is proven sufficient
                self._run.timed_out = True
                work = work[:hi]
                break
            if hi == 0:
                work = []
                break
            needed = work[hi - 1]
            chosen.append(needed)
            if lo_check is not None and lo_check.verdict is Verdict.NOT_ENTAILED:
                witnesses[needed] = lo_check.witness
            else:
                unproven.add(needed)
            work = work[: hi - 1]
            if self.use_cores and hi_check.core is not None:
                core = hi_check.core
                if (set(chosen) - core) - unproven:
                    raise RuntimeError(f"{hi_check.path} returned a core without proven-necessary features")
                chosen = [i for i in chosen if i in core]
                work = [i for i in work if i in core]
        s = set(chosen) | set(work)
        unproven = (unproven | set(work)) & s
        return self._axp_result(s, sufficiency, {i: w for i, w in witnesses.items() if i in s}, unproven)
