"""Exact entailment by incremental SAT, one solver per rival class, each over the one-sided encoding.

The question and its one-sided form per rival are those of :mod:`xsnn.solvers.rivals`
(one spiking layer, static coding: one Boolean ``x_i`` per pixel). Here every rival ``c'``
gets its own python-sat solver, built once with *every* pixel free, so that a question only
changes assumptions and the learnt clauses of one question serve the next (deletion asks
hundreds of nearly identical questions):

- pixel ``i`` is the variable ``x_i``; feature ``k`` has a selector ``s_k`` with
  ``s_k -> (x_i = v_i)`` for each of its pixels; fixing ``S`` assumes ``s_k`` for ``k in S``;
- neuron ``j``'s input is ``I_j = C_j - n_j^-`` with ``C_j`` the number of true literals among
  ``x_i`` (``W_ji = +1``) and ``~x_i`` (``W_ji = -1``), ``n_j^-`` the number of the latter;
  its ladder over the all-free range gives the terms ``(j, a, e)`` of ``D_c'``;
- ``e > 0``: ``y -> C_j >= a + n_j^-``;  ``e < 0``: ``~y -> C_j <= a - 1 + n_j^-``;
- goal: ``B + sum e y >= need`` as one cardinality constraint over a multiset of ``y`` /
  ``~y`` literals (a literal repeated ``|e|`` times).

Cardinality constraints are python-sat native AtMost constraints (Minicard / Gluecard count a
repeated literal as often as it occurs): ``guard -> sum(L) >= b`` is
``sum(~L) + b [guard] <= |L|``. A question is NOT_ENTAILED at the first rival whose solver
is SAT (the witness is read from its model) and ENTAILED when every rival is UNSAT; the union
of the rivals' cores (selectors in ``get_core()``) is then a core of the whole question:
fixing it rules out every rival.

Before a rival's solver is called, its interval bound is checked (exact arithmetic, numpy):
with the fixed pixels' contribution and the free pixels' extremes, ``I_j`` lies in
``[lo_j, hi_j]``, so

    D_c' <= B + sum_{e > 0} e [hi_j >= a] + sum_{e < 0} e [lo_j >= a];

a rival whose bound is below ``need`` cannot win and its solver is not asked (its core is the
fixed features wired to a neuron of its terms: freeing any other feature leaves every ``I_j``
of its terms, hence the bound, unchanged). In deletion most rivals of an ENTAILED question are
ruled out this way (measured in docs/solvers.md).
"""
from __future__ import annotations

import logging
import time

import numpy as np
from pysat.solvers import Solver

from xsnn.encoders.cnf import NATIVE_SOLVERS
from xsnn.features import FeatureSet
from xsnn.model import BSNN
from .milp import input_domain
from .oracle import Check, CoreCache, EntailmentOracle, Verdict
from .rivals import neuron_ladders, rival_split_applies, rival_terms
from .sat import solve_limited, solver_name

__all__ = ["RivalSATOracle", "rival_sat_applies"]

log = logging.getLogger(__name__)


def rival_sat_applies(model: BSNN, instance: np.ndarray) -> bool:
    """True when :class:`RivalSATOracle` can answer for this model and instance: the rival split
    applies and the coding's free domain is one Boolean per pixel (static coding)."""
    if not rival_split_applies(model, instance):
        return False
    trains, silent_ok = input_domain(model)
    return bool(silent_ok and len(trains) == 1 and np.all(trains == 1))


class RivalSATOracle(EntailmentOracle):
    """One incremental SAT solver per rival class over the one-sided encoding (module docstring).

    Args:
        model, instance, features, target, max_distance: see :class:`EntailmentOracle`
            (``max_distance`` becomes one AtMost constraint over "feature differs" literals).
        solver: a python-sat solver with native AtMost constraints (``minicard``, ``gluecard3``,
            ``gluecard4``).
        bound_pruning: skip the solver of a rival whose interval bound rules it out (module
            docstring); the verdict is the same either way, only the time and the core differ.
        core_cache: answer ENTAILED at once when the fixed set contains one of the newest cores
            (:class:`~xsnn.solvers.oracle.CoreCache`: sufficiency is monotone); in deletion
            every feature asked about outside the current core is settled this way, with the
            answer that the solvers would give.

    ``stats`` counts answers by path: the solver name, or ``cores`` for the core cache.
    """

    def __init__(self, model: BSNN, instance: np.ndarray, features: FeatureSet | None = None,
                 target: int | None = None, max_distance: int | None = None, solver: str = "minicard",
                 bound_pruning: bool = True, core_cache: bool = True) -> None:
        super().__init__(model, instance, features, target, max_distance)
        self.solver_name = solver_name(solver)
        if self.solver_name not in NATIVE_SOLVERS:
            raise ValueError(f"the rival SAT oracle needs native AtMost constraints: one of "
                             f"{', '.join(NATIVE_SOLVERS)}, not {self.solver_name}")
        if not rival_sat_applies(model, self.instance):
            raise ValueError("the rival SAT oracle needs one spiking layer and the static coding "
                             "(one Boolean per pixel); use the 'sat' or 'cpsat' backend")
        self.name = f"sat-rivals:{self.solver_name}"
        self._solvers: dict[int, Solver] = {}
        self._feasible: dict[int, int] = {}  # rival -> how often its solver was SAT
        self.bound_pruning = bound_pruning
        self.pruned = 0  # rival solves saved by the interval bound
        self._cores = CoreCache() if core_cache else None
        self._last_sat = -1
        self._rivals = self._build()

    def _build(self) -> list[int]:
        """One solver per rival that can win. Variables, the same in every solver: pixel ``i`` is
        ``i + 1``, the selector of feature ``k`` is ``n + 1 + k``, then the ``y`` of the terms
        (and the distance indicators)."""
        model = self.model
        n = model.n_inputs
        w = model.weights[0].astype(np.int64)
        ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))  # all free
        value = np.asarray(self.instance[0], dtype=bool)
        x = np.arange(1, n + 1, dtype=np.int64)
        selectors = np.arange(n + 1, n + 1 + len(self.features), dtype=np.int64)
        fixing = [[-int(selectors[k]), int(x[i]) if value[i] else -int(x[i])]
                  for k, group in enumerate(self.features.groups) for i in group]
        # per neuron: the literals L_j (x_i where W_ji = +1, ~x_i where W_ji = -1) and n_j^-
        literals = [np.concatenate([x[w[j] > 0], -x[w[j] < 0]]).tolist() for j in range(len(w))]
        n_neg = (w < 0).sum(axis=1).tolist()
        differs = [[-int(x[i]) if value[i] else int(x[i]) for i in group] for group in self.features.groups]
        rivals, bound_terms = [], []
        for rival in range(model.n_classes):
            if rival == self.target:
                continue
            need = 1 if rival > self.target else 0
            base, terms = rival_terms(model, ladders, self.target, rival)
            if base + sum(e for _, _, e in terms if e > 0) < need:
                continue  # this rival cannot win whatever the input
            bound_terms.append((base, need, terms))
            top = n + len(self.features)
            clauses, atmosts, goal = list(fixing), [], []

            def at_least(lits: list[int], bound: int, guard: int | None) -> None:
                """``guard -> sum(lits) >= bound`` as ``sum(~lits) + bound * [guard] <= |lits|``."""
                if bound <= 0:
                    return
                if bound > len(lits):
                    clauses.append([] if guard is None else [-guard])
                elif guard is None:
                    atmosts.append(([-l for l in lits], len(lits) - bound))
                else:
                    atmosts.append(([-l for l in lits] + [guard] * bound, len(lits)))

            for j, a, e in terms:
                top += 1
                y = top
                if e > 0:  # y -> C_j >= a + n^-
                    at_least(literals[j], a + n_neg[j], y)
                    goal.extend([y] * e)
                else:  # ~y -> C_j <= a - 1 + n^-: the complements count >= |L_j| - (a - 1 + n^-)
                    at_least([-l for l in literals[j]], len(literals[j]) - (a - 1 + n_neg[j]), -y)
                    goal.extend([-y] * -e)
            # B + sum e y >= need  <=>  sum_{e>0} e y + sum_{e<0} |e| ~y >= need - B + sum_{e<0} |e|
            at_least(goal, need - base + sum(-e for _, _, e in terms if e < 0), None)
            if self.max_distance is not None:
                indicators = []
                for lits in differs:
                    if len(lits) == 1:
                        indicators.append(lits[0])
                    else:  # d_k >= each pixel's "differs"
                        top += 1
                        clauses.extend([-l, top] for l in lits)
                        indicators.append(top)
                if self.max_distance < len(indicators):
                    atmosts.append((indicators, int(self.max_distance)))
            solver = Solver(name=self.solver_name)
            solver.append_formula(clauses)
            for lits, bound in atmosts:
                solver.add_atmost(lits, bound)
            self._solvers[rival] = solver
            rivals.append(rival)
        self._bound = _RivalBounds(w, value, self.features, bound_terms)
        log.debug("%s: %d rival solvers", self.name, len(rivals))
        return rivals

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self._solvers is None:
            raise ValueError("this RivalSATOracle was closed")
        if not self._rivals:  # no rival can win whatever the input: the empty set is sufficient
            return Check(Verdict.ENTAILED, fixed, core=frozenset(), backend=self.name)
        core = None if self._cores is None else self._cores.find(fixed)
        if core is not None:
            return Check(Verdict.ENTAILED, fixed, core=core, backend="cores")
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        rivals, pruned = self._rivals, []
        if self.bound_pruning:
            open_ = self._bound.slack(fixed) >= 0
            if not open_.all():
                pruned = np.flatnonzero(~open_)
                rivals = [r for r, keep in zip(rivals, open_.tolist()) if keep]
                self.pruned += len(pruned)
        # the rival that gave the last witness first (successive questions tend to fall to the
        # same rival), then the rivals by how often they were feasible (measured in docs/solvers.md)
        order = sorted(rivals, key=lambda r: (r != self._last_sat, -self._feasible.get(r, 0)))
        core_literals: list[int] = []
        offset = self.model.n_inputs + 1  # the selector of feature k is k + offset
        assumptions = [k + offset for k in fixed]
        for rival in order:
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return Check(Verdict.UNKNOWN, fixed, backend=self.name)
            solver = self._solvers[rival]
            status = solve_limited(solver, self.solver_name, assumptions, remaining)
            if status is None:
                return Check(Verdict.UNKNOWN, fixed, backend=self.name)
            if status:
                self._feasible[rival] = self._feasible.get(rival, 0) + 1
                self._last_sat = rival
                # the model lists variables 1, 2, ... in order; pixel i is variable i + 1
                bits = (np.asarray(solver.get_model()[: self.model.n_inputs]) > 0).astype(np.uint8)
                witness = np.broadcast_to(bits, self.instance.shape).copy()
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, backend=self.name)
            core_literals.extend(solver.get_core() or ())
        # only selectors are assumed, so a core holds selectors n + 1 + k (feature k)
        in_core = np.zeros(len(self.features), bool)
        k = np.asarray(core_literals, np.int64) - offset
        in_core[k[(k >= 0) & (k < len(self.features))]] = True
        if len(pruned):  # the fixed features wired to the pruned rivals' neurons
            fixed_idx = np.fromiter(fixed, np.int64, len(fixed))
            in_core[fixed_idx[self._bound.wired[pruned][:, fixed_idx].any(axis=0)]] = True
        check = Check(Verdict.ENTAILED, fixed, core=frozenset(np.flatnonzero(in_core).tolist()), backend=self.name)
        if self._cores is not None:
            self._cores.add(check)
        return check

    def close(self) -> None:
        for solver in (self._solvers or {}).values():
            solver.delete()
        self._solvers = None


class _RivalBounds:
    """Interval upper bounds of every rival's ``D_c'`` for a fixed set (module docstring).

    With pixel values ``v`` and ``F`` the fixed pixels, ``I_j`` lies in ``[lo_j, hi_j]`` with

        lo_j = sum_i min(0, W_ji) + sum_{i in F} (W_ji v_i - min(0, W_ji)),
        hi_j = sum_i max(0, W_ji) + sum_{i in F} (W_ji v_i - max(0, W_ji)),

    kept from question to question: a matrix-vector product for both when many features changed,
    else the changed features' columns added or taken away (small integers: exact in float64).
    A term ``(j, a, e)`` adds ``e`` to the bound when ``hi_j >= a`` (``e > 0``) or ``lo_j >= a``
    (``e < 0``).
    """

    def __init__(self, w: np.ndarray, value: np.ndarray, features: FeatureSet,
                 rivals: list[tuple[int, int, list[tuple[int, int, int]]]]) -> None:
        n_neurons = len(w)
        wv = w * value[None, :].astype(np.int64)
        self._start = np.concatenate([np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1)]).astype(np.float64)
        self._step = np.concatenate([wv - np.minimum(w, 0), wv - np.maximum(w, 0)]).astype(np.float64)  # (2n_0, n)
        self._features = features
        self.base = np.array([b for b, _, _ in rivals], np.int64)
        self.need = np.array([need for _, need, _ in rivals], np.int64)
        self._rival = np.concatenate([np.full(len(t), r, np.int64) for r, (_, _, t) in enumerate(rivals)] or
                                     [np.zeros(0, np.int64)])
        terms = np.array([term for _, _, t in rivals for term in t], np.int64).reshape(-1, 3)
        j, self._a, self._e = terms[:, 0], terms[:, 1], terms[:, 2]
        # a gain is read from hi_j (row n_0 + j), a loss from lo_j (row j)
        self._row = np.where(self._e > 0, n_neurons + j, j)
        # wired[r, k]: feature k has a pixel with a nonzero weight into a neuron of rival r's terms
        pixel_wired = np.zeros((len(rivals), w.shape[1]), bool)
        for r, (_, _, t) in enumerate(rivals):
            neurons = np.unique(np.array([jj for jj, _, _ in t], np.int64))
            pixel_wired[r] = (w[neurons] != 0).any(axis=0)
        owner = features.feature_of_pixel()
        wired = np.zeros((len(rivals), len(features) + 1), bool)
        for r in range(len(rivals)):
            np.logical_or.at(wired[r], owner, pixel_wired[r])
        self.wired = wired[:, :-1]
        # the change of (lo, hi) when feature k goes from free to fixed: row k
        feature_step = np.zeros((len(features) + 1, len(self._step)))  # last row: unowned pixels
        np.add.at(feature_step, owner, self._step.T)
        self._feature_columns = feature_step[:-1]
        self._last_fixed: frozenset[int] = frozenset()  # nothing fixed: the bounds are the start
        self._bounds = self._start.copy()

    def slack(self, fixed: frozenset[int]) -> np.ndarray:
        """Per rival: its interval upper bound of ``D_c'`` minus ``need``; the solver must decide
        the rivals with slack ``>= 0``, the others cannot win.

        Successive questions of one explanation differ in a few features, so the bounds of the
        previous question are updated by the columns of the pixels whose status changed."""
        changed = fixed.symmetric_difference(self._last_fixed)
        if len(changed) > 32:
            pixels = self._features.pixel_mask(sorted(fixed)).astype(np.float64)
            self._bounds = self._start + self._step @ pixels
        elif changed:  # integers of small magnitude: the float64 sums are exact
            for k in changed:
                column = self._feature_columns[k]
                self._bounds = self._bounds + column if k in fixed else self._bounds - column
        self._last_fixed = fixed
        reached = self._bounds[self._row] >= self._a
        upper = self.base + np.bincount(self._rival, weights=self._e * reached, minlength=len(self.base))
        return upper - self.need
