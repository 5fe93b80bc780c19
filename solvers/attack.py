"""Counterexample search: find an input that changes the prediction, or say nothing.

For the entailment question of :mod:`xsnn.solvers.oracle` (instance ``v``, target ``c``, fixed
features ``S``, optional distance bound ``k``) a *witness* is an input ``x`` that agrees with
``v`` on the pixels of ``S``, gives every other pixel a train of the coding's free domain,
changes at most ``k`` features, and is predicted ``!= c`` by the reference forward. A found
witness proves NOT_ENTAILED; a failed search proves nothing.

The objective is the tie-aware margin::

    m(x) = min_{c' != c} ( score_c(x) - score_c'(x) - [c' < c] )

(the prediction is ``c`` iff ``m(x) >= 0``), minimised by:

1. *starts*: the instance and the projections onto ``S`` of caller-supplied points (earlier
   witnesses: resetting the pixels of ``S`` to the instance keeps them admissible), all
   evaluated in one batch;
2. *guided prefixes*: for the few competitor classes ``c'`` closest to ``c``, the linear guide
   ``g = (W^out_c' - W^out_c) W^L ... W^1`` ranks each free pixel's best move; every prefix of
   that ranking is one candidate (one batch, via cumulative first-layer currents);
3. *greedy descent*: from the best point so far, evaluate every single-pixel move (one batch),
   take the one with the lowest ``(m, soft)`` (``soft`` is a potential-based tie-breaker that
   pushes the last layer towards the competitor), never move a pixel twice in one run, repeat;
   restarts from other starts with random tie-breaking.

Candidates are scored from first-layer *currents*: a move of pixel ``i`` to train ``r`` adds
``(r - x_i)(t) * W^1[:, i]`` to the current at each step, so a batch of moves costs
``O(moves x T x H)`` integer work, exact; later layers use float32 products of 0/1 spikes
(exact at these sizes). A found witness is shrunk (features reverted to the instance while it
still flips; smaller witnesses answer more later questions) and then verified by the reference
forward (:func:`xsnn.solvers.oracle.verify_witness`) before it is returned.

Two *complete* searches use the same scorer: :meth:`CounterexampleSearch.exhaust` evaluates
every completion when there are few (the ``exhaustive`` path of the layered oracle), and
:class:`~xsnn.solvers.branchbound.BoundSearch` runs a branch and bound pruned by
:class:`~xsnn.solvers.bounds.BoundPropagator` (the ``branch-and-bound`` path), enumerating its
leaves with :meth:`CounterexampleSearch.enumerate`; both answer ENTAILED when nothing flips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, integrate_and_fire
from xsnn.question import Question

from .oracle import verify_witness

__all__ = ["CounterexampleSearch", "AttackResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackResult:
    """Outcome of one search.

    Attributes:
        found: whether a verified witness was found.
        witness: the witness ``(T, n_inputs)`` uint8 when found, else ``None``.
        evaluations: candidate inputs scored.
        seconds: wall time.
        phase: which phase found it (``"start"``, ``"prefix"``, ``"greedy"``, ``"exhaustive"``) or
            ``"none"``.
        exhausted: every admissible input was evaluated (:meth:`CounterexampleSearch.exhaust`),
            so ``found=False`` proves that none changes the prediction.
    """

    found: bool
    witness: np.ndarray | None
    evaluations: int
    seconds: float
    phase: str
    exhausted: bool = False


class CounterexampleSearch:
    """Budgeted greedy margin attack for one question (see the module docstring).

    Args:
        model, instance, features, target, max_distance: the question (as for an oracle).
        seed: seed of the random tie-breaking.
        max_evaluations: candidate inputs scored per :meth:`search` at most.
        max_steps: greedy moves per run at most (default: the number of free pixels).
        restarts: greedy runs per search at most.
        competitors: how many competitor classes the guided prefixes try.
        patience: a greedy run stops after this many moves without lowering its best margin.
        shrink: revert features of a found witness to the instance while it still flips.
    """

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        *,
        seed: int = 0,
        max_evaluations: int = 20_000,
        max_steps: int | None = None,
        restarts: int = 3,
        competitors: int = 3,
        patience: int = 16,
        shrink: bool = True,
    ) -> None:
        question = Question.build(model, instance, features, target, max_distance)
        self.model, self.instance, self.features = model, question.instance, question.features
        self.target, self.max_distance = question.target, question.max_distance
        if max_evaluations < 1:
            raise ValueError(f"max_evaluations must be >= 1, got {max_evaluations}")
        self.max_evaluations = int(max_evaluations)
        self.max_steps = max_steps
        self.restarts = int(restarts)
        self.competitors = int(competitors)
        self.patience = int(patience)
        self.shrink = shrink
        self._rng = np.random.default_rng(seed)
        T = model.n_steps
        self._trains = model.coding.free_trains(T).astype(np.int64)  # (k, T)
        self._owner = self.features.feature_of_pixel()
        self._w1 = model.weights[0].astype(np.int64)  # (H, n)
        self._w1_t = np.ascontiguousarray(self._w1.T)  # (n, H)
        self._w1_f = model.weights[0].astype(np.float32)
        self._deeper = [w.astype(np.float32) for w in model.weights[1:]]
        self._thetas = [t.astype(np.int64) for t in model.thresholds]
        self._readout = model.readout.astype(np.int64)
        C = model.n_classes
        self._need = np.where(np.arange(C) < self.target, 1, 0).astype(np.int64)
        # linear guides: d score_c' - score_c / d x_i, ignoring the nonlinearity
        chain = np.eye(model.layer_sizes[-1])
        for w in reversed(model.weights):
            chain = chain @ w.astype(np.float64)
        self.guides = (self._readout.astype(np.float64) - self._readout[self.target].astype(np.float64)) @ chain
        v = self.instance.astype(np.int64)
        match = np.all(self._trains[:, :, None] == v[None, :, :], axis=1)  # (k, n)
        self.inst_train = np.where(match.any(axis=0), match.argmax(axis=0), -1)

    # ------------------------------------------------------------------ public

    def search(
        self, fixed: Iterable[int], starts: Sequence[np.ndarray] = (), time_limit: float | None = None
    ) -> AttackResult:
        """Look for a witness with the features in ``fixed`` fixed, within the budgets."""
        t0 = time.perf_counter()
        deadline = None if time_limit is None else t0 + time_limit
        fixed_set = frozenset(int(k) for k in fixed)
        run = _Run(self, fixed_set, deadline)
        phase = "none"
        x = run.try_starts(starts)
        if x is not None:
            phase = "start"
        if x is None and run.budget_left():
            x = run.try_prefixes()
            phase = "prefix" if x is not None else phase
        if x is None:
            x = run.greedy()
            phase = "greedy" if x is not None else phase
        if x is None:
            return AttackResult(False, None, run.evaluations, time.perf_counter() - t0, "none")
        if self.shrink:
            x = run.shrink_witness(x)
        verify_witness(self.model, self.instance, self.features, fixed_set, self.target, x, self.max_distance)
        return AttackResult(True, x.astype(np.uint8), run.evaluations, time.perf_counter() - t0, phase)

    def exhaust(self, fixed: Iterable[int], limit: int) -> AttackResult | None:
        """Evaluate *every* completion of the free pixels when there are at most ``limit`` of them.

        Returns ``None`` when there are more; otherwise an exact answer: a verified witness, or
        ``exhausted=True`` with no witness (no admissible input changes the prediction).
        """
        t0 = time.perf_counter()
        fixed_set = frozenset(int(k) for k in fixed)
        free = np.flatnonzero(~self.features.pixel_mask(sorted(fixed_set)))
        n_free_features = len(self.features) - len(fixed_set)
        budget = self.max_distance if self.max_distance is not None and self.max_distance < n_free_features else None
        done = self.enumerate(free, self.instance, budget, limit)
        if done is None:
            return None
        x, evaluations = done
        if x is None:
            return AttackResult(False, None, evaluations, time.perf_counter() - t0, "exhaustive", True)
        verify_witness(self.model, self.instance, self.features, fixed_set, self.target, x, self.max_distance)
        return AttackResult(True, x, evaluations, time.perf_counter() - t0, "exhaustive", True)

    def enumerate(
        self, free: np.ndarray, values: np.ndarray, budget: int | None, limit: int, chunk: int = 4096
    ) -> tuple[np.ndarray | None, int] | None:
        """Every assignment of trains to the pixels ``free`` (others as in ``values``) changing at most
        ``budget`` features of the instance among them; ``None`` if more than ``limit`` candidates.

        Returns ``(first input whose prediction differs or None, inputs evaluated)``.
        """
        k_trains = len(self._trains)
        if len(free) * np.log2(k_trains) > np.log2(max(limit, 1)) + 1e-9:
            return None
        total = k_trains ** len(free)
        v = np.asarray(values, dtype=np.int64)
        rest = np.setdiff1d(np.arange(v.shape[1]), free)
        base = np.rint(v[:, rest].astype(np.float32) @ self._w1_f[:, rest].T).astype(np.int64)  # (T, H)
        w_free = self._w1_f[:, free].T  # (n_free, H)
        owner = self._owner[free]
        if budget is not None:
            owned = owner >= 0
            _, member = np.unique(owner[owned], return_inverse=True)
            membership = np.zeros((len(free), int(member.max()) + 1 if len(member) else 0), np.int64)
            membership[np.flatnonzero(owned), member] = 1
        inst_train = self.inst_train[free]
        evaluations = 0
        for start in range(0, total, chunk):
            idx = np.arange(start, min(total, start + chunk))
            choice = (idx[:, None] // (k_trains ** np.arange(len(free)))[None, :]) % k_trains  # (B, n_free)
            if budget is not None:
                changed = (choice != inst_train[None, :]).astype(np.int64)
                choice = choice[((changed @ membership) > 0).sum(axis=1) <= budget]
                if len(choice) == 0:
                    continue
            trains = self._trains[choice]  # (B, n_free, T)
            cur = base[None] + np.rint(trains.transpose(0, 2, 1).astype(np.float32) @ w_free).astype(np.int64)
            margin, _ = self._evaluate(cur)
            evaluations += len(choice)
            flips = np.flatnonzero(margin < 0)
            if len(flips):
                x = v.copy()
                x[:, free] = trains[flips[0]].T
                return x.astype(np.uint8), evaluations
        return None, evaluations

    # ------------------------------------------------------------------ scoring

    def _evaluate(self, currents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Margins ``m`` and tie-breakers ``soft`` of candidates given first-layer currents ``(B, T, H)``."""
        B, T, _ = currents.shape
        spikes, pot = _integrate(currents, self._thetas[0], self.model.reset)
        for w, theta in zip(self._deeper, self._thetas[1:]):
            cur = np.rint(spikes.reshape(B * T, -1).astype(np.float32) @ w.T).astype(np.int64).reshape(B, T, -1)
            spikes, pot = _integrate(cur, theta, self.model.reset)
        counts = spikes.sum(axis=1)  # (B, H_L)
        scores = counts @ self._readout.T  # (B, C)
        per_class = scores[:, [self.target]] - scores - self._need[None, :]
        per_class[:, self.target] = np.iinfo(np.int64).max
        worst = per_class.argmin(axis=1)
        margin = per_class[np.arange(B), worst]
        theta = self._thetas[-1].astype(np.float64)
        activation = np.clip(pot / theta[None, None, :], 0.0, 1.0).sum(axis=1)  # (B, H_L)
        diff = (self._readout[self.target][None, :] - self._readout[worst]).astype(np.float64)  # (B, H_L)
        soft = (diff * activation).sum(axis=1)
        return margin, soft


def _integrate(currents: np.ndarray, theta: np.ndarray, reset: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`xsnn.model.integrate_and_fire` on a batch of currents ``(B, T, H)``, spikes as bool."""
    spikes, pot = integrate_and_fire(currents, theta, reset)
    return spikes.view(bool), pot


class _Run:
    """State of one :meth:`CounterexampleSearch.search` call."""

    def __init__(self, search: CounterexampleSearch, fixed: frozenset[int], deadline: float | None) -> None:
        self.s = search
        self.deadline = deadline
        self.evaluations = 0
        f = search.features
        self.fixed_mask = f.pixel_mask(sorted(fixed))
        self.free = np.flatnonzero(~self.fixed_mask)
        n_free_features = len(f) - len(fixed)
        k = search.max_distance
        self.k = None if k is None or k >= n_free_features else int(k)
        self.v = search.instance.astype(np.int64)
        self.best: tuple[int, float, np.ndarray] | None = None  # (margin, soft, x) of the best point seen
        self.starts: np.ndarray | None = None  # admissible start points and their margins
        self.start_margin: np.ndarray | None = None

    # -------------------------------------------------------------- bookkeeping

    def budget_left(self) -> bool:
        if self.evaluations >= self.s.max_evaluations:
            return False
        return self.deadline is None or time.perf_counter() < self.deadline

    def score(self, currents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.evaluations += len(currents)
        return self.s._evaluate(currents)

    def currents_of(self, xs: np.ndarray) -> np.ndarray:
        B, T, n = xs.shape
        flat = xs.reshape(B * T, n).astype(np.float32) @ self.s._w1_f.T
        return np.rint(flat).astype(np.int64).reshape(B, T, -1)

    def remember(self, margin: np.ndarray, soft: np.ndarray, points) -> None:
        i = int(np.lexsort((soft, margin))[0])
        if self.best is None or (margin[i], soft[i]) < self.best[:2]:
            self.best = (int(margin[i]), float(soft[i]), np.array(points(i)))

    def distance(self, x: np.ndarray) -> int:
        differs = np.any(x != self.v, axis=0)
        owner = self.s._owner[differs]
        return int(np.unique(owner[owner >= 0]).size)

    def admissible(self, x: np.ndarray) -> bool:
        trains = self.s._trains
        if np.any(x[:, self.fixed_mask] != self.v[:, self.fixed_mask]):
            return False
        cols = x[:, self.free]
        in_domain = np.any(np.all(trains[:, :, None] == cols[None, :, :], axis=1), axis=0)
        if not in_domain.all():
            return False
        return self.k is None or self.distance(x) <= self.k

    def base_point(self) -> np.ndarray:
        """The instance, with free pixels outside the free domain set to the first free train."""
        x = self.v.copy()
        bad = self.free[self.s.inst_train[self.free] < 0]
        if len(bad):
            x[:, bad] = self.s._trains[0][:, None]
        return x

    # -------------------------------------------------------------- phases

    def try_starts(self, starts: Sequence[np.ndarray]) -> np.ndarray | None:
        points = [self.base_point()]
        for w in starts:
            x = np.array(w, dtype=np.int64, copy=True)
            if x.shape != self.v.shape:
                continue
            x[:, self.fixed_mask] = self.v[:, self.fixed_mask]
            if self.admissible(x):
                points.append(x)
        if not self.admissible(points[0]):
            points = points[1:]
            if not points:
                return None
        xs = np.stack(points)
        margin, soft = self.score(self.currents_of(xs))
        self.starts = xs
        self.start_margin = margin
        self.remember(margin, soft, lambda i: xs[i])
        flips = np.flatnonzero(margin < 0)
        return xs[flips[0]] if len(flips) else None

    def moves(self, x: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All single-pixel moves from ``x``: pixel indices and train indices (excluding no-ops)."""
        trains = self.s._trains
        pix = np.repeat(allowed, len(trains))
        tr = np.tile(np.arange(len(trains)), len(allowed))
        same = np.all(trains[tr].T == x[:, pix], axis=0)
        pix, tr = pix[~same], tr[~same]
        if self.k is not None:
            pix, tr = self._within_distance(x, pix, tr)
        return pix, tr

    def _within_distance(self, x: np.ndarray, pix: np.ndarray, tr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        owner = self.s._owner
        differs = np.any(x != self.v, axis=0)
        n_feat = len(self.s.features)
        diff_count = np.bincount(owner[differs & (owner >= 0)], minlength=n_feat)
        dist = int((diff_count > 0).sum())
        new_diff = np.any(self.s._trains[tr].T != self.v[:, pix], axis=0)
        g = owner[pix]
        gc = np.where(g >= 0, g, 0)
        new_count = diff_count[gc] - differs[pix] + new_diff
        new_dist = dist - (diff_count[gc] > 0) + (new_count > 0)
        ok = (g < 0) | (new_dist <= self.k)
        return pix[ok], tr[ok]

    def try_prefixes(self) -> np.ndarray | None:
        x0 = self.base_point()
        if not self.admissible(x0):
            return None
        cur0 = self.currents_of(x0[None])[0]
        pix, tr = self.moves(x0, self.free)
        if len(pix) == 0:
            return None
        delta = self.s._trains[tr] - x0[:, pix].T  # (m, T)
        # competitor classes: the closest ones at the instance
        sc = _scores_at(self.s, cur0)
        gap = sc[self.s.target] - sc
        gap[self.s.target] = np.iinfo(np.int64).max
        rivals = np.argsort(gap, kind="stable")[: max(1, self.s.competitors)]
        rivals = [int(c) for c in rivals if c != self.s.target]
        for c in rivals:
            if not self.budget_left():
                return None
            gain = self.s.guides[c][pix] * delta.sum(axis=1)
            # best move per pixel, positive gains only, best first
            order = np.lexsort((-gain, pix))
            first = np.r_[True, pix[order][1:] != pix[order][:-1]]
            best = order[first]
            best = best[gain[best] > 0]
            best = best[np.argsort(-gain[best], kind="stable")]
            if self.k is not None:
                best = self._prefix_within_distance(x0, best, pix)
            if len(best) == 0:
                continue
            lengths = _prefix_lengths(len(best))
            steps = delta[best][:, :, None] * self.s._w1_t[pix[best]][:, None, :]  # (m, T, H)
            cum = np.cumsum(steps, axis=0)[lengths - 1]
            margin, soft = self.score(cur0[None] + cum)

            def point(i, best=best, lengths=lengths):
                x = x0.copy()
                chosen = best[: lengths[i]]
                x[:, pix[chosen]] = self.s._trains[tr[chosen]].T
                return x

            self.remember(margin, soft, point)
            for i in np.flatnonzero(margin < 0).tolist():
                x = point(i)
                if self.admissible(x):
                    return x
        return None

    def _prefix_within_distance(self, x0: np.ndarray, best: np.ndarray, pix: np.ndarray) -> np.ndarray:
        """The moves of ``best`` (in order) that keep the prefix within the distance bound."""
        owner = self.s._owner[pix[best]]
        differs = np.any(x0 != self.v, axis=0)
        base = self.s._owner[differs]
        seen: set[int] = set(base[base >= 0].tolist())
        keep = []
        for i, g in enumerate(owner.tolist()):
            if g >= 0 and g not in seen:
                if len(seen) >= self.k:
                    continue
                seen.add(g)
            keep.append(i)
        return best[np.array(keep, dtype=np.int64)] if keep else best[:0]

    def greedy(self) -> np.ndarray | None:
        starts = []
        if self.best is not None:
            starts.append(self.best[2])
        if self.starts is not None:
            order = np.argsort(self.start_margin, kind="stable")
            starts.extend(self.starts[i] for i in order)
        if not starts:
            return None
        steps_cap = self.s.max_steps if self.s.max_steps is not None else len(self.free)
        rng = self.s._rng
        for run in range(self.s.restarts):
            x = np.array(starts[run % len(starts)], dtype=np.int64, copy=True)
            if not self.admissible(x):
                continue
            cur = self.currents_of(x[None])[0]
            tabu = np.zeros(x.shape[1], bool)
            noise = 0.0 if run == 0 else 1e-3
            best_margin, stale = None, 0
            for _ in range(steps_cap):
                if not self.budget_left():
                    return None
                if stale >= self.s.patience:
                    break
                allowed = self.free[~tabu[self.free]]
                pix, tr = self.moves(x, allowed)
                if len(pix) == 0:
                    break
                room = self.s.max_evaluations - self.evaluations
                if len(pix) > room:
                    pick = rng.choice(len(pix), size=room, replace=False)
                    pix, tr = pix[pick], tr[pick]
                delta = self.s._trains[tr] - x[:, pix].T  # (m, T)
                cand = cur[None] + delta[:, :, None] * self.s._w1_t[pix][:, None, :]
                margin, soft = self.score(cand)
                flips = np.flatnonzero(margin < 0)
                if len(flips):
                    j = int(flips[np.argmin(margin[flips])])
                    x[:, pix[j]] = self.s._trains[tr[j]]
                    return x
                jitter = soft + (noise * rng.standard_normal(len(soft)) if noise else 0.0)
                j = int(np.lexsort((jitter, margin))[0])
                x[:, pix[j]] = self.s._trains[tr[j]]
                cur = cand[j]
                tabu[pix[j]] = True
                if best_margin is None or margin[j] < best_margin:
                    best_margin, stale = int(margin[j]), 0
                else:
                    stale += 1
        return None

    def shrink_witness(self, x: np.ndarray) -> np.ndarray:
        """Revert changed features to the instance, one at a time, while the input still flips."""
        x = np.array(x, dtype=np.int64, copy=True)
        groups = self.s.features.groups
        while self.budget_left():
            differs = np.any(x != self.v, axis=0)
            owner = self.s._owner[differs]
            changed = np.unique(owner[owner >= 0])
            changed = [g for g in changed.tolist() if self.s.inst_train[list(groups[g])].min() >= 0]
            if not changed:
                break
            cands = np.repeat(x[None], len(changed), axis=0)
            for b, g in enumerate(changed):
                cols = list(groups[g])
                cands[b][:, cols] = self.v[:, cols]
            margin, _ = self.score(self.currents_of(cands))
            flips = np.flatnonzero(margin < 0)
            if not len(flips):
                break
            x = cands[flips[np.argmin(margin[flips])]]
        return x


def _scores_at(search: CounterexampleSearch, cur: np.ndarray) -> np.ndarray:
    """Scores of one point from its first-layer currents ``(T, H)``."""
    spikes, _ = _integrate(cur[None], search._thetas[0], search.model.reset)
    for w, theta in zip(search._deeper, search._thetas[1:]):
        c = np.rint(spikes[0].astype(np.float32) @ w.T).astype(np.int64)[None]
        spikes, _ = _integrate(c, theta, search.model.reset)
    return spikes[0].sum(axis=0) @ search._readout.T


def _prefix_lengths(n: int) -> np.ndarray:
    """Prefix lengths to try: every length up to 16, then growing by about 15%."""
    lengths = set(range(1, min(n, 16) + 1))
    x = 16.0
    while x < n:
        x *= 1.15
        lengths.add(min(n, int(round(x))))
    lengths.add(n)
    return np.array(sorted(lengths), dtype=np.int64)
