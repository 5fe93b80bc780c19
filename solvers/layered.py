"""An entailment oracle that puts sound fast paths in front of an exact one.

For each question "fixed set ``S``: can the prediction change?" it tries, cheapest first:

1. ``"cache"`` — a witness found earlier for a fixed set ``A``: it agrees with the instance on
   ``A``, so it is a witness for every ``S`` whose pixels it also leaves at the instance
   values (in particular every ``S ⊆ A``) -> NOT_ENTAILED;
1b. ``"lookahead"`` — every earlier witness, projected onto the current free features (pixels
   of ``S`` reset to the instance: still admissible), with each *new* free feature (free now,
   not free in the last ENTAILED question) moved to each other train of its domain, evaluated
   in one batch by the bit-packed kernel -> NOT_ENTAILED. In deletion the new feature is the
   one being asked about, and a witness that refuted an earlier question is often one flip
   away from refuting this one: the greedy attack rarely needs to start from scratch;
1c. ``"cores"`` — an earlier exact ENTAILED answer's core ``C``: every ``S ⊇ C`` is ENTAILED;
2. ``"bounds"`` — :class:`~xsnn.solvers.bounds.BoundPropagator` proves the prediction cannot
   change -> ENTAILED;
3. ``"exhaustive"`` — when the free pixels have at most ``exhaustive_limit`` completions, all
   of them are evaluated (exact integer arithmetic) -> ENTAILED, or NOT_ENTAILED with a witness;
4. ``"attack"`` — :class:`~xsnn.solvers.attack.CounterexampleSearch` finds a witness (seeded
   with the most recent cached witnesses) -> NOT_ENTAILED;
5. ``"branch-and-bound"`` — :class:`~xsnn.solvers.branchbound.BoundSearch`, branch and bound pruned by the
   bounds, within ``search_nodes`` nodes -> ENTAILED, or NOT_ENTAILED with a witness;
6. the exact oracle (its own backend name) -> its verdict.

A scheduler skips a fast path whose expected saving
(success rate x mean exact-call time) is below its mean cost, and caps the time of the attack
and the search at the mean exact-call time: on small or sparse nets, where the exact oracle
answers in a millisecond, failing fast paths would otherwise cost more than they save.

Every fast answer is a proof (a verified witness, sound bounds, or a complete enumeration),
so the verdict always equals the exact oracle's; only UNKNOWN (exact budget exhausted) can
differ from what a longer exact run would say. A fast ENTAILED ("bounds", "exhaustive",
"branch-and-bound") carries ``core = S`` (no smaller core is known).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from .attack import CounterexampleSearch
from .bounds import BoundPropagator
from .branchbound import BoundSearch
from .oracle import Check, EntailmentOracle, Verdict
from .witnesses import WitnessCache

__all__ = ["LayeredOracle", "PATHS"]

log = logging.getLogger(__name__)


class _Lookahead:
    """Earlier witnesses, re-used one feature move away (see the module docstring, path 1b).

    A witness ``x`` is admissible for a fixed set ``S`` once the pixels of ``S`` are reset to the
    instance (free pixels keep trains of the free domain). The *new* features of a question are
    its free features that were fixed in the last ENTAILED question (in deletion: the feature
    asked about); each is moved to every train of its free domain in every projected witness.
    """

    def __init__(self, oracle: EntailmentOracle, capacity: int, max_new: int) -> None:
        from xsnn.kernel import PackedNetwork

        self.capacity = capacity
        self.max_new = max_new
        self._net = PackedNetwork(oracle.model)
        self._instance = oracle.instance
        self._target = oracle.target
        self._groups = [np.asarray(g, dtype=np.int64) for g in oracle.features.groups]
        self._pixel_owner = oracle.features.feature_of_pixel()
        self._trains = oracle.model.coding.free_trains(oracle.model.n_steps).astype(np.uint8)  # (k, T)
        self._pool: deque[np.ndarray] = deque(maxlen=capacity)
        self._stack: np.ndarray | None = None
        self._known_free = np.zeros(len(self._groups), bool)
        # a witness keeps instance values on pixels it did not move: admissible only if every
        # instance train lies in the free domain (always so for encoded images)
        inst = self._instance.T  # (n, T)
        self._usable = bool(np.all(np.any(np.all(inst[:, None, :] == self._trains[None, :, :], axis=2), axis=1)))

    def add(self, witness: np.ndarray) -> None:
        self._pool.appendleft(np.asarray(witness, dtype=np.uint8))
        self._stack = None

    def known_free(self, free: np.ndarray) -> None:
        self._known_free = free

    def find(self, fixed: frozenset[int]) -> np.ndarray | None:
        if not self._pool or not self._usable:
            return None
        free = np.ones(len(self._groups), bool)
        if fixed:
            free[np.fromiter(fixed, np.int64, len(fixed))] = False
        if np.any(self._known_free & ~free):
            return None  # not an extension of the last ENTAILED question
        new = np.flatnonzero(free & ~self._known_free)
        if not 0 < len(new) <= self.max_new:
            return None
        if self._stack is None:
            self._stack = np.stack(list(self._pool))  # (B, T, n)
        fixed_pixels = ~np.where(self._pixel_owner >= 0, free[np.maximum(self._pixel_owner, 0)], True)
        base = np.where(fixed_pixels[None, None, :], self._instance[None], self._stack)
        candidates = []
        for g in new:
            pixels = self._groups[g]
            for train in self._trains:
                x = base.copy()
                x[:, :, pixels] = train[None, :, None]
                candidates.append(x)
        batch = np.concatenate(candidates)
        flips = np.flatnonzero(self._net.predict(batch) != self._target)
        return batch[flips[0]] if len(flips) else None


@dataclass
class _PathRecord:
    """Tries, successes and seconds of one fast path (for the adaptive scheduler)."""

    tries: int = 0
    hits: int = 0
    seconds: float = 0.0
    skipped: int = 0


class _Timing:
    """``with`` block that times one try of a path; set ``.value`` truthy when it answered."""

    def __init__(self, record: _PathRecord) -> None:
        self.record = record
        self.value = None

    def __enter__(self) -> _Timing:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.record.tries += 1
        self.record.hits += bool(self.value is not None and self.value is not False)
        self.record.seconds += time.perf_counter() - self._start


PATHS = ("cache", "lookahead", "cores", "bounds", "exhaustive", "attack", "branch-and-bound")


class LayeredOracle(EntailmentOracle):
    """Sound fast paths in front of an exact oracle; itself an :class:`EntailmentOracle`.

    Args:
        exact: the exact oracle (its model, instance, features, target and distance bound
            define the question).
        paths: the fast paths to use (module docstring; default all of :data:`PATHS`). Only
            which path answers changes, never the verdict. ``"lookahead"`` is not used with a
            distance bound; ``"branch-and-bound"`` needs ``"bounds"`` (and one feature per pixel
            covering every pixel).
        seed: seed of the attack's random tie-breaking.

    The paths' budgets are class attributes (a benchmark or a test may change them in a
    subclass): ``exhaustive_limit`` (questions with at most this many completions are decided
    by evaluating them all), ``search_nodes`` (node budget of the branch and bound),
    ``attack_evaluations`` / ``attack_restarts`` / ``attack_starts`` (candidate inputs scored,
    greedy runs, recent witnesses seeding the attack, per question), ``cache_size`` (witnesses
    kept), ``lookahead_pool`` / ``lookahead_new`` (witnesses kept for the look-ahead; it is
    skipped when more features than this are new). A scheduler caps the time of the attack and
    of the branch and bound per question at the exact oracle's mean time per call so far (at
    least ``min_attack_seconds``; ``initial_fast_seconds`` before 3 exact calls), and skips a
    path whose expected saving is below its cost: when exact calls are cheap (sparse nets) a
    failing attack must not cost more than asking the solver.

    ``stats`` (an :class:`~xsnn.solvers.oracle.OracleStats`) counts answers by path:
    ``"cache"``, ``"lookahead"``, ``"cores"``, ``"bounds"``, ``"exhaustive"``, ``"attack"``,
    ``"branch-and-bound"`` or the exact backend's name.
    """

    name = "layered"
    exhaustive_limit = 1 << 12
    search_nodes = 500
    attack_evaluations = 20_000
    attack_restarts = 2
    attack_starts = 4
    cache_size = 512
    lookahead_pool = 2048
    lookahead_new = 8
    min_attack_seconds = 0.002
    initial_fast_seconds = 0.25

    def __init__(self, exact: EntailmentOracle, *, paths: Collection[str] = PATHS, seed: int = 0) -> None:
        if not isinstance(exact, EntailmentOracle):
            raise TypeError(f"exact must be an EntailmentOracle, got {type(exact).__name__}")
        if isinstance(paths, str):
            raise ValueError(f"paths must be a collection of path names, got the string {paths!r}")
        paths = frozenset(paths)
        unknown = sorted(paths - set(PATHS))
        if unknown:
            raise ValueError(f"unknown fast path(s) {', '.join(map(repr, unknown))}; choose from {', '.join(PATHS)}")
        super().__init__(exact.model, exact.instance, exact.features, exact.target, exact.max_distance)
        self.exact = exact
        self.paths = paths
        self._lookahead = (
            _Lookahead(self, self.lookahead_pool, self.lookahead_new)
            if "lookahead" in paths and self.max_distance is None
            else None
        )
        # exact cores as rows of a (n_cores, n_features) bool matrix, or None when off
        self._cores: np.ndarray | None = np.zeros((0, len(self.features)), bool) if "cores" in paths else None
        self._n_features = len(self.features)
        self._exact_calls = 0
        self._exact_seconds = 0.0
        self.path_stats: dict[str, _PathRecord] = {}
        self._exhaustive_limit = self.exhaustive_limit if "exhaustive" in paths else 0
        self._bounds = (
            BoundPropagator(self.model, self.instance, self.features, self.target, self.max_distance)
            if "bounds" in paths
            else None
        )
        self._counterexamples = CounterexampleSearch(
            self.model,
            self.instance,
            self.features,
            self.target,
            self.max_distance,
            seed=seed,
            max_evaluations=self.attack_evaluations,
            restarts=self.attack_restarts,
        )
        self._attack = self._counterexamples if "attack" in paths else None
        self._cache = WitnessCache(self, self.cache_size) if "cache" in paths else None
        self._bab = None
        if self._bounds is not None and "branch-and-bound" in paths and self.search_nodes:
            bab = BoundSearch(self._bounds)
            self._bab = bab if bab.supported else None

    @property
    def exact_name(self) -> str:
        return self.exact.name

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        start = time.perf_counter()
        if self._cache is not None:
            witness = self._cache.find(fixed)
            if witness is not None:
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path="cache")
        if self._lookahead is not None and self._worth("lookahead"):
            with self._timed("lookahead") as hit:
                witness = hit.value = self._lookahead.find(fixed)
            if witness is not None:
                self._remember(witness)
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path="lookahead")
        if self._cores is not None and len(self._cores):
            # a core C proves S when C ⊆ S: no core feature outside S
            if not np.all(np.any(self._cores & ~self._mask(fixed)[None, :], axis=1)):
                return self._entailed(fixed, Check(Verdict.ENTAILED, fixed, core=fixed, path="cores"))
        if self._bounds is not None and self._worth("bounds"):
            with self._timed("bounds") as hit:
                hit.value = self._bounds.entailed(fixed)
            if hit.value:
                return self._entailed(fixed, Check(Verdict.ENTAILED, fixed, core=fixed, path="bounds"))
        if self._exhaustive_limit and self._worth("exhaustive"):
            with self._timed("exhaustive") as hit:
                done = hit.value = self._counterexamples.exhaust(fixed, self._exhaustive_limit)
            if done is not None:
                if done.found:
                    self._remember(done.witness)
                    return Check(Verdict.NOT_ENTAILED, fixed, witness=done.witness, path="exhaustive")
                return self._entailed(fixed, Check(Verdict.ENTAILED, fixed, core=fixed, path="exhaustive"))
        if self._attack is not None and self._worth("attack"):
            starts = self._cache.recent(self.attack_starts) if self._cache is not None else []
            with self._timed("attack") as hit:
                found = self._attack.search(fixed, starts=starts, time_limit=self._attack_time(time_limit))
                hit.value = found.found
            if found.found:
                self._remember(found.witness)
                return Check(Verdict.NOT_ENTAILED, fixed, witness=found.witness, path="attack")
        if self._bab is not None and self._worth("branch-and-bound"):
            # the search may use at most half of what is left of the per-call budget, and (adaptive)
            # no more than an exact call costs on average
            left = None if time_limit is None else 0.5 * (time_limit - (time.perf_counter() - start))
            with self._timed("branch-and-bound") as hit:
                decided = self._bab.decide(fixed, max_nodes=self.search_nodes, time_limit=self._capped(left))
                hit.value = decided.verdict is not Verdict.UNKNOWN
            if decided.verdict is Verdict.ENTAILED:
                return self._entailed(fixed, Check(Verdict.ENTAILED, fixed, core=fixed, path="branch-and-bound"))
            if decided.verdict is Verdict.NOT_ENTAILED:
                self._remember(decided.witness)
                return Check(Verdict.NOT_ENTAILED, fixed, witness=decided.witness, path="branch-and-bound")
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
        if remaining is not None and remaining <= 0:
            return Check(Verdict.UNKNOWN, fixed, path=self.exact.name)
        answer = self.exact.check(fixed, time_limit=remaining)
        self._exact_calls += 1
        self._exact_seconds += answer.seconds
        result = Check(
            answer.verdict,
            fixed,
            witness=answer.witness,
            core=answer.core,
            path=answer.path,
            witness_verified=answer.witness_verified,
        )  # the exact oracle asked the same question
        if answer.verdict is Verdict.NOT_ENTAILED:
            self._remember(answer.witness)
        elif answer.verdict is Verdict.ENTAILED:
            if self._cores is not None and answer.core is not None and len(answer.core) < len(fixed):
                self._cores = np.vstack([self._cores, self._mask(answer.core)[None, :]])
            self._entailed(fixed, result)
        return result

    def _mask(self, fixed: frozenset[int]) -> np.ndarray:
        mask = np.zeros(self._n_features, bool)
        if fixed:
            mask[np.fromiter(fixed, np.int64, len(fixed))] = True
        return mask

    def _remember(self, witness: np.ndarray) -> None:
        """Keep a witness for the cache and the look-ahead."""
        if self._cache is not None:
            self._cache.add(witness)
        if self._lookahead is not None:
            self._lookahead.add(witness)

    def _entailed(self, fixed: frozenset[int], check: Check) -> Check:
        """Note an ENTAILED answer (its free features become the look-ahead's known free set)."""
        if self._lookahead is not None:
            self._lookahead.known_free(~self._mask(fixed))
        return check

    # ------------------------------------------------------------------ scheduling

    def _worth(self, path: str) -> bool:
        """Should ``path`` be tried on this question? (adaptive mode; never changes a verdict)

        A fast path pays when its expected saving exceeds its cost: with ``p`` its success rate
        (Laplace-smoothed) and ``cost`` its mean time per try, it is tried while
        ``p * mean_exact_seconds >= cost``. Until both are measured (5 tries, 3 exact calls) it
        is always tried, and a skipped path is still tried on every 16th question so that its
        estimates follow the questions as they get harder."""
        if self._exact_calls < 3:
            return True
        record = self.path_stats.setdefault(path, _PathRecord())
        if record.tries < 5:
            return True
        mean_exact = self._exact_seconds / self._exact_calls
        p = (record.hits + 1) / (record.tries + 2)
        if p * mean_exact >= record.seconds / record.tries:
            return True
        record.skipped += 1
        return record.skipped % 16 == 0

    def _timed(self, path: str) -> _Timing:
        return _Timing(self.path_stats.setdefault(path, _PathRecord()))

    def _attack_time(self, time_limit: float | None) -> float | None:
        """Attack budget: a quarter of the per-call budget, capped by the exact oracle's mean call time."""
        return self._capped(None if time_limit is None else 0.25 * time_limit)

    def _capped(self, budget: float | None) -> float | None:
        """``budget`` capped by the exact oracle's mean call time (``initial_fast_seconds``
        until 3 exact calls have been measured)."""
        if self._exact_calls >= 3:
            cap = max(self.min_attack_seconds, self._exact_seconds / self._exact_calls)
        else:  # not calibrated yet: a short fixed cap, so that the exact oracle gets measured soon
            cap = self.initial_fast_seconds
        return cap if budget is None else min(budget, cap)

    def _interrupt_solver(self) -> None:
        self.exact.interrupt()

    def close(self) -> None:
        self.exact.close()
