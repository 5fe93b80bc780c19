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

Cardinality constraints are python-sat native AtMost constraints (Minicard / Gluecard; see
:mod:`xsnn.encoders.cardinality`). A question is NOT_ENTAILED at the first rival whose solver
is SAT (the witness is read from its model) and ENTAILED when every rival is UNSAT; the union
of the rivals' cores (selectors in ``get_core()``) is then a core of the whole question:
fixing it rules out every rival.
"""
from __future__ import annotations

import logging
import time

import numpy as np
from pysat.solvers import Solver

from xsnn.encoders.cardinality import ClauseSink, NativeBackend
from xsnn.encoders.cnf import NATIVE_SOLVERS
from xsnn.features import FeatureSet
from xsnn.model import BSNN
from .milp import input_domain
from .oracle import Check, EntailmentOracle, Verdict
from .rivals import neuron_ladders, rival_split_applies, rival_terms
from .sat import new_solver, solve_limited, solver_name

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
    """

    def __init__(self, model: BSNN, instance: np.ndarray, features: FeatureSet | None = None,
                 target: int | None = None, max_distance: int | None = None, solver: str = "minicard") -> None:
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
        self._selectors = np.zeros(0, np.int64)  # selector literal of each feature (same in every solver)
        self._pixels = np.zeros(0, np.int64)  # variable of each pixel (same in every solver)
        self._feature_of: dict[int, int] = {}  # selector literal -> feature
        self._feasible: dict[int, int] = {}  # rival -> how often its solver was SAT
        self._rivals = self._build()

    def _build(self) -> list[int]:
        model = self.model
        w = model.weights[0].astype(np.int64)
        i_lo = np.minimum(w, 0).sum(axis=1)  # every pixel free
        i_hi = np.maximum(w, 0).sum(axis=1)
        ladders = neuron_ladders(model, i_lo, i_hi)
        value = np.asarray(self.instance[0], dtype=bool)
        rivals = []
        for rival in range(model.n_classes):
            if rival == self.target:
                continue
            need = 1 if rival > self.target else 0
            base, terms = rival_terms(model, ladders, self.target, rival)
            if base + sum(e for _, _, e in terms if e > 0) < need:
                continue  # this rival cannot win whatever the input
            sink = ClauseSink(native=True)
            card = NativeBackend(sink)
            x = [sink.var(("x", i)) for i in range(model.n_inputs)]
            selectors = []
            for k, group in enumerate(self.features.groups):
                s = sink.var(("s", k))
                selectors.append(s)
                for i in group:
                    sink.clause([-s, x[i] if value[i] else -x[i]])
            goal = []
            for j, a, e in terms:
                pos, neg = np.flatnonzero(w[j] > 0), np.flatnonzero(w[j] < 0)
                lits = [x[i] for i in pos] + [-x[i] for i in neg]
                y = sink.var()
                if e > 0:  # y -> C_j >= a + n^-
                    card.require_geq(card.count(lits), a + len(neg), guard=y)
                    goal.extend([y] * e)
                else:  # ~y -> C_j <= a - 1 + n^-, i.e. the complements count >= |L| - a + 1 - n^-
                    card.require_geq(card.count([-l for l in lits]), len(lits) - (a - 1 + len(neg)), guard=-y)
                    goal.extend([-y] * -e)
            # B + sum e y >= need  <=>  sum_{e>0} e y + sum_{e<0} |e| ~y >= need - B + sum_{e<0} |e|
            bound = need - base + sum(-e for _, _, e in terms if e < 0)
            if goal:
                card.require_geq(card.count(goal), bound)
            elif bound > 0:
                sink.clause([])
            if self.max_distance is not None:
                differs = []
                for k, group in enumerate(self.features.groups):
                    lits = [-x[i] if value[i] else x[i] for i in group]
                    if len(lits) == 1:
                        differs.append(lits[0])
                    else:  # d_k >= each pixel's "differs"
                        d = sink.var()
                        sink.clauses.extend([-l, d] for l in lits)
                        differs.append(d)
                sink.atmost(differs, int(self.max_distance))
            self._solvers[rival] = new_solver(sink.formula(), self.solver_name)
            if not rivals:
                self._selectors, self._pixels = np.asarray(selectors, np.int64), np.asarray(x, np.int64)
                self._feature_of = {int(lit): k for k, lit in enumerate(selectors)}
            elif not (np.array_equal(selectors, self._selectors) and np.array_equal(x, self._pixels)):
                raise AssertionError("rival solvers must number pixels and selectors alike")
            rivals.append(rival)
        log.debug("%s: %d rival solvers", self.name, len(rivals))
        return rivals

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self._solvers is None:
            raise ValueError("this RivalSATOracle was closed")
        if not self._rivals:  # no rival can win whatever the input: the empty set is sufficient
            return Check(Verdict.ENTAILED, fixed, core=frozenset(), backend=self.name)
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        order = sorted(self._rivals, key=lambda r: -self._feasible.get(r, 0))  # stable: class order
        core: set[int] = set()
        assumptions = self._selectors[np.fromiter(fixed, np.int64, len(fixed))].tolist()
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
                model = solver.get_model()
                truth = np.zeros(len(model) + 1, bool)
                truth[np.abs(model)] = np.asarray(model) > 0
                bits = truth[self._pixels].astype(np.uint8)
                witness = np.broadcast_to(bits, self.instance.shape).copy()
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, backend=self.name)
            core.update(map(self._feature_of.get, solver.get_core() or []))
        core.discard(None)  # a core literal that is no selector (none expected: only selectors are assumed)
        return Check(Verdict.ENTAILED, fixed, core=frozenset(core), backend=self.name)

    def close(self) -> None:
        for solver in (self._solvers or {}).values():
            solver.delete()
        self._solvers = None
