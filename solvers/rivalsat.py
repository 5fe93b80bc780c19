"""Exact entailment by incremental SAT, one solver per rival class, each over the one-sided encoding.

The question and its one-sided form per rival are those of :mod:`xsnn.encoders.rivals`
(one spiking layer, static coding: one Boolean ``x_i`` per pixel). Here every rival ``c'``
gets its own python-sat solver over the CNF of :mod:`xsnn.encoders.rivalcnf`, built once with
*every* pixel free, so that a question only changes assumptions (the selectors of the fixed
features) and the learnt clauses of one question serve the next (deletion asks hundreds of
nearly identical questions). A question is NOT_ENTAILED at the first rival whose solver
is SAT (the witness is read from its model) and ENTAILED when every rival is UNSAT; the union
of the rivals' cores (selectors in ``get_core()``) is then a core of the whole question:
fixing it rules out every rival.

Before a rival's solver is called, its interval bound is checked (exact arithmetic):
with the fixed pixels' contribution and the free pixels' extremes, ``I_j`` lies in
``[lo_j, hi_j]``, so

    D_c' <= B + sum_{e > 0} e [hi_j >= a] + sum_{e < 0} e [lo_j >= a];

a rival whose bound is below ``need`` cannot win and its solver is not asked (its core is the
fixed features wired to a neuron of its terms: freeing any other feature leaves every ``I_j``
of its terms, hence the bound, unchanged). In deletion most rivals of an ENTAILED question are
ruled out this way (measured in docs/solvers.md).

Each rival's question is itself monotone: if fixing ``C`` leaves rival ``c'`` no way to win,
neither does fixing any ``S ⊇ C``. So every UNSAT core of a rival's solver is kept (the newest
few per rival), and a rival with a kept core inside the fixed set is not asked either. Both
skips give the verdict the solver would give; only the time and the returned core differ.
Solvers are built when their rival is first asked.

Most questions of a deletion are NOT_ENTAILED, and a recent witness usually shows how to flip
the prediction again: **witness repair** takes each of the newest witnesses, resets the pixels
now fixed to the instance's values and flips the features it had to keep but that are free now
(in deletion: the feature asked about, plus any freed since; the move of the layered oracle's
look-ahead, here scored without a forward pass). Each candidate is scored exactly: its inputs ``I``
are updated from the witness's by the few changed pixels, each neuron's spike count is read
from its ladder and the score differences from the readout
(:class:`~xsnn.solvers.rivalstate.WitnessRepair`); the
first candidate that lets a rival win is returned (and, like every witness,
re-run through the reference forward by :meth:`EntailmentOracle.check`). When no candidate
wins the solvers decide, so the verdict is always the exact one.

Two pieces of this per-question work run in C when the extension is built, each beside its numpy
reference (used otherwise; the tests compare the two; both in :mod:`xsnn.solvers.rivalstate`): the
repair search (``WitnessRepair.search_c`` / ``search_reference``) and the bookkeeping that brings
the fixed masks, the rival bounds and the kept cores' counts to the new fixed set and tells which
rivals they rule out (``RivalGate.advance`` / ``advance_reference``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from pysat.solvers import Solver

from xsnn.encoders.cnf import NATIVE_SOLVERS
from xsnn.encoders.linear import input_domain
from xsnn.encoders.rivalcnf import RivalCNF
from xsnn.encoders.rivals import distance_input_range, neuron_ladders, rival_split_applies, rival_terms
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .oracle import Check, EntailmentOracle, Verdict
from .rivalstate import RivalBounds, RivalCores, RivalGate, WitnessRepair, load_extension
from .sat import SOLVERS_WITHOUT_INTERRUPT, solve_limited, solver_name

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
            (``max_distance`` becomes one AtMost constraint over "feature differs" literals, and
            the rival terms are built over the inputs the distance ball can reach:
            :func:`~xsnn.encoders.rivals.distance_input_range`).
        solver: a python-sat solver with native AtMost constraints (``minicard``, ``gluecard3``,
            ``gluecard4``).

    Three mechanisms in front of the solvers, each on (class attributes: a benchmark or a test
    that measures one without the others switches them off in a subclass); the verdict is the
    same either way, only the time and the core differ:

    - ``bound_pruning``: skip the solver of a rival whose interval bound rules it out (module
      docstring);
    - ``core_cache``: keep each rival's newest UNSAT cores and skip a rival whose kept core lies
      inside the fixed set (:class:`~xsnn.solvers.rivalstate.RivalCores`: each rival's question
      is monotone); in deletion most features asked about outside the current cores are settled
      this way;
    - ``witness_repair``: before the solvers, try the repaired recent witnesses (module
      docstring); only NOT_ENTAILED answers come this way, each with a witness that
      :meth:`check` verifies. Off under a distance bound.

    ``stats`` counts answers by path: the solver name, ``rival-repair`` for a repaired witness, or
    ``rival-bounds`` / ``rival-cores`` for an ENTAILED answer that needed no solver (every rival
    ruled out by its bound or a kept core; ``rival-cores`` if at least one kept core was used).
    (The ``bounds`` and ``cores`` paths of :class:`~xsnn.solvers.layered.LayeredOracle` are
    other mechanisms.)
    """

    recent_witnesses = 4  # witnesses kept for repair, the newest first
    bound_pruning = True
    core_cache = True
    witness_repair = True

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        solver: str = "minicard",
    ) -> None:
        super().__init__(model, instance, features, target, max_distance)
        self.solver_name = solver_name(solver)
        if self.solver_name not in NATIVE_SOLVERS:
            raise ValueError(
                f"the rival SAT oracle needs native AtMost constraints: one of "
                f"{', '.join(NATIVE_SOLVERS)}, not {self.solver_name}"
            )
        if not rival_sat_applies(model, self.instance):
            raise ValueError(
                "the rival SAT oracle needs one spiking layer and the static coding "
                "(one Boolean per pixel); use the 'sat' or 'cpsat' backend"
            )
        self.name = f"sat-rivals:{self.solver_name}"
        self._solvers: dict[int, Solver] = {}  # built when the rival is first asked
        self._feasible: dict[int, int] = {}  # rival -> how often its solver was SAT
        self.pruned = 0  # rival solves saved by the interval bound
        self.skipped_by_cores = 0  # rival solves saved by a kept core
        self._last_sat = -1
        self._prepare_rivals()
        self._cores = RivalCores(len(self._rivals), len(self.features))
        self.witness_repair = self.witness_repair and max_distance is None
        extension = load_extension()  # the C helpers, or None: then the numpy references serve
        self._repair = WitnessRepair(
            self.model, self.instance, self._ladders, self.target, extension, keep=self.recent_witnesses
        )
        # the fixed set the bounds and the kept cores' counts refer to
        self._gate = RivalGate(self.features, self.model.n_inputs, self._bound, self._cores, extension)

    def _prepare_rivals(self) -> None:
        """Set ``_rivals`` (the rivals that can win), ``_problems`` (each one's ``(B, need,
        terms)``; with a distance bound, from ladders over the ball's input range), their bounds,
        the all-free neuron ladders (for the witness repair), and the parts every rival's formula
        shares (:class:`~xsnn.encoders.rivalcnf.RivalCNF`; a rival's solver is built in :meth:`_solver`)."""
        model = self.model
        w = model.weights[0].astype(np.int64)
        ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))  # all free
        ball = ladders  # the terms' ladders: over the inputs the distance bound lets I_j reach
        if self.max_distance is not None:
            ball = neuron_ladders(
                model,
                *distance_input_range(
                    model, self.instance, self.features, np.ones(len(self.features), bool), self.max_distance
                ),
            )
        value = np.asarray(self.instance[0], dtype=bool)
        self._cnf = RivalCNF(model, self.instance, self.features, self.max_distance)
        rivals, problems = [], []
        for rival in range(model.n_classes):
            if rival == self.target:
                continue
            need = 1 if rival > self.target else 0
            base, terms = rival_terms(model, ball, self.target, rival)
            if base + sum(e for _, _, e in terms if e > 0) < need:
                continue  # this rival cannot win whatever the input
            rivals.append(rival)
            problems.append((base, need, terms))
        self._bound = RivalBounds(w, value, self.features, problems)
        self._ladders = ladders
        self._rivals, self._problems = rivals, problems
        log.debug("%s: %d rivals can win", self.name, len(rivals))

    def _solver(self, r: int) -> Solver:
        """The solver of the ``r``-th rival that can win, built on first use (module docstring)."""
        solver = self._solvers.get(r)
        if solver is not None:
            return solver
        formula = self._cnf.formula(*self._problems[r])
        solver = Solver(name=self.solver_name)
        solver.append_formula(formula.clauses)
        for lits, bound in formula.atmosts:
            solver.add_atmost(lits, bound)
        self._solvers[r] = solver
        return solver

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self._solvers is None:
            raise ValueError("this RivalSATOracle was closed")
        if not self._rivals:  # no rival can win whatever the input: the empty set is sufficient
            return Check(Verdict.ENTAILED, fixed, core=frozenset(), path=self.name)
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        ruled_out, has_core = self._gate.advance(fixed)
        n_rivals = len(self._rivals)
        pruned = ruled_out if self.bound_pruning else np.zeros(n_rivals, bool)
        covered = has_core & ~pruned if self.core_cache else np.zeros(n_rivals, bool)
        skipped = (pruned | covered).tolist()
        n_pruned, n_covered = int(pruned.sum()), int(covered.sum())
        self.pruned += n_pruned
        self.skipped_by_cores += n_covered
        # the rival that gave the last witness first (successive questions tend to fall to the
        # same rival), then the rivals by how often they were feasible (measured in docs/solvers.md)
        order = sorted(
            (r for r in range(n_rivals) if not skipped[r]),
            key=lambda r: (r != self._last_sat, -self._feasible.get(r, 0)),
        )
        n_features = len(self.features)
        offset = self._cnf.selector(0)  # the selector of feature k is k + offset
        if order and self.witness_repair:
            witness = self._repair.find(self._gate.fixed_pixels)
            if witness is not None:
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path="rival-repair")
        # the selectors of the fixed features (from the mask: about 3x cheaper than from the set)
        assumptions = (np.flatnonzero(self._gate.fixed_mask) + offset).tolist() if order else []
        in_core = np.zeros(n_features, bool)
        for r in order:
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return Check(Verdict.UNKNOWN, fixed, path=self.name)
            solver = self._solver(r)
            self._active = solver
            if self._interrupted:
                return Check(Verdict.UNKNOWN, fixed, path=self.name)
            status = solve_limited(solver, self.solver_name, assumptions, remaining)
            if status is None:
                return Check(Verdict.UNKNOWN, fixed, path=self.name)
            if status:
                self._feasible[r] = self._feasible.get(r, 0) + 1
                self._last_sat = r
                # the model lists variables 1, 2, ... in order; pixel i is variable i + 1
                bits = np.array(solver.get_model()[: self.model.n_inputs], np.int64) > 0
                witness = np.empty(self.instance.shape, np.uint8)
                witness[:] = bits
                if self.witness_repair:
                    self._repair.add(bits, self._gate.fixed_pixels)
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path=self.name)
            # only selectors are assumed, so the core holds selectors n + 1 + k (feature k in S)
            k = np.array(solver.get_core() or (), np.int64) - offset
            k = k[(k >= 0) & (k < n_features)]
            in_core[k] = True
            if self.core_cache and len(k) < len(fixed):
                self._cores.add(r, k)
        if n_pruned:  # the fixed features wired to the pruned rivals' neurons
            in_core |= self._bound.wired[pruned].any(axis=0) & self._gate.fixed_mask
        if n_covered:
            in_core |= self._cores.union(covered)
        backend = self.name if order else "rival-cores" if n_covered else "rival-bounds"
        # the core is a subset of the fixed set, most of it: built as the fixed set minus the rest
        # (copying a set is much cheaper than making a new one from hundreds of ints)
        outside = np.flatnonzero(self._gate.fixed_mask & ~in_core).tolist()
        return Check(Verdict.ENTAILED, fixed, core=fixed.difference(outside), path=backend)

    def _interrupt_solver(self) -> None:
        solver = getattr(self, "_active", None)
        if solver is not None and self.solver_name not in SOLVERS_WITHOUT_INTERRUPT:
            solver.interrupt()

    def close(self) -> None:
        self._active = None
        for solver in (self._solvers or {}).values():
            solver.delete()
        self._solvers = None
