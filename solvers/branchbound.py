"""Branch and bound over the free features, pruned by interval bounds: a complete search.

The ``branch-and-bound`` path of :class:`~xsnn.solvers.layered.LayeredOracle`. It decides the
entailment question of :mod:`xsnn.solvers.oracle` (ENTAILED when every branch is pruned by
:class:`~xsnn.solvers.bounds.BoundPropagator` or enumerated, NOT_ENTAILED with a verified
witness) within a node budget; it scores and enumerates leaves with the counterexample search of
:mod:`xsnn.solvers.attack` (the ``attack`` path), whose scorer it shares.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from xsnn.model import forward

from .attack import CounterexampleSearch
from .bounds import BoundPropagator
from .oracle import Verdict, verify_witness

__all__ = ["BoundSearch", "SearchResult"]


@dataclass(frozen=True)
class SearchResult:
    """Outcome of :meth:`BoundSearch.decide`.

    Attributes:
        verdict: ENTAILED (every branch pruned by the bounds or enumerated), NOT_ENTAILED (with a
            witness), or UNKNOWN (node or time budget exhausted first).
        witness: for NOT_ENTAILED, a verified witness ``(T, n_inputs)``.
        nodes: branch-and-bound nodes visited.
        seconds: wall time.
    """

    verdict: Verdict
    witness: np.ndarray | None
    nodes: int
    seconds: float


class BoundSearch:
    """A complete decision procedure: branch and bound over the free features, pruned by the bounds.

    A node assigns some free features to trains of the free domain (the rest stay free, within
    the remaining distance budget). If :meth:`~xsnn.solvers.bounds.BoundPropagator.propagate`
    proves the target at a node, its whole subtree is pruned; if the node's free pixels have at
    most ``leaf_limit`` completions, they are all evaluated at once. Otherwise a *probe* input
    is tried (each free pixel set to the train that lowers the weakest rival's linear margin
    bound most, within the budget) and the node branches on the free pixel with the largest
    sensitivity, the margin-lowering train first (depth first). All branches closed: ENTAILED;
    budget overrun: UNKNOWN. Needs one feature per pixel, covering every pixel (``supported``).

    Args:
        propagator: the bounds for the question (model, instance, features, target, ``k``).
        leaf_limit: enumerate a node's completions when there are at most this many.
    """

    def __init__(self, propagator: BoundPropagator, leaf_limit: int = 1024) -> None:
        self.prop = propagator
        model = propagator.model
        f = propagator.features
        self.leaf_limit = int(leaf_limit)
        self.supported = all(len(g) == 1 for g in f.groups) and bool(np.all(f.feature_of_pixel() >= 0))
        self._pixel = np.array([g[0] for g in f.groups], dtype=np.int64)
        self._search = CounterexampleSearch(model, propagator.instance, f, propagator.target, propagator.max_distance)
        self._trains = model.coding.free_trains(model.n_steps).astype(np.uint8)
        self._inst_train = self._search.inst_train
        self._guides = self._search.guides  # (C, n): d(score_c' - score_c)/dx, linear
        self._train_mass = self._trains.sum(axis=1).astype(np.float64)  # spikes per train

    def decide(self, fixed: Iterable[int], max_nodes: int = 2000, time_limit: float | None = None) -> SearchResult:
        """Decide the question for ``fixed`` within ``max_nodes`` nodes and ``time_limit`` seconds."""
        if not self.supported:
            raise ValueError("branch and bound needs one feature per pixel, covering every pixel")
        t0 = time.perf_counter()
        deadline = None if time_limit is None else t0 + time_limit
        prop = self.prop
        target, k = prop.target, prop.max_distance
        n_feat = len(prop.features)
        root = frozenset(int(i) for i in fixed)
        stack = [(root, prop.instance.copy(), 0)]
        nodes = 0

        def found(x: np.ndarray) -> SearchResult:
            verify_witness(prop.model, prop.instance, prop.features, root, target, x, k)
            return SearchResult(Verdict.NOT_ENTAILED, x.astype(np.uint8), nodes, time.perf_counter() - t0)

        while stack:
            if nodes >= max_nodes or (deadline is not None and time.perf_counter() >= deadline):
                return SearchResult(Verdict.UNKNOWN, None, nodes, time.perf_counter() - t0)
            assigned, values, used = stack.pop()
            nodes += 1
            budget = None if k is None else k - used
            b = prop.propagate(assigned, values, budget)
            if b.entailed:
                continue
            free = np.array(sorted(set(range(n_feat)) - assigned), dtype=np.int64)
            pixels = self._pixel[free]
            bound = budget if budget is not None and budget < len(free) else None
            leaf = self._search.enumerate(pixels, values, bound, self.leaf_limit)
            if leaf is not None:
                if leaf[0] is not None:
                    return found(leaf[0])
                continue
            slack = b.margin_lo - prop._need
            slack[target] = np.iinfo(np.int64).max
            worst = int(np.argmin(slack))
            slope = (
                b.sensitivity[worst][pixels] if b.sensitivity is not None else -self._guides[worst][pixels]
            )  # > 0: more spikes raise the margin
            gain = slope[:, None] * self._train_mass[None, :]  # (n_free, k_trains): margin change
            best = np.argmin(gain, axis=1)
            probe = self._probe(values, pixels, best, gain, budget)
            if probe is not None and int(forward(prop.model, probe).prediction[0]) != target:
                return found(probe)
            j = int(np.argmax(np.abs(slope)))
            feature, pixel = int(free[j]), int(pixels[j])
            for r in np.argsort(-gain[j], kind="stable").tolist():  # the last pushed is explored first
                extra = int(r != self._inst_train[pixel])
                if k is not None and used + extra > k:
                    continue
                child = values.copy()
                child[:, pixel] = self._trains[r]
                stack.append((assigned | {feature}, child, used + extra))
        return SearchResult(Verdict.ENTAILED, None, nodes, time.perf_counter() - t0)

    def _probe(
        self, values: np.ndarray, pixels: np.ndarray, best: np.ndarray, gain: np.ndarray, budget: int | None
    ) -> np.ndarray | None:
        """Free pixels moved to their margin-lowering trains (the strongest ``budget`` moves only)."""
        inst = self._inst_train[pixels]
        moves = best != inst
        if budget is not None:
            rows = np.arange(len(pixels))
            cost = np.where(moves, gain[rows, best] - gain[rows, np.maximum(inst, 0)], 0.0)
            keep = np.zeros(len(pixels), bool)
            keep[np.argsort(cost, kind="stable")[: max(budget, 0)]] = True
            moves &= keep
        if not moves.any():
            return None
        probe = values.copy()
        probe[:, pixels[moves]] = self._trains[best[moves]].T
        return probe
