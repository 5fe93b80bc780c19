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
from its ladder and the score differences from the readout (:class:`_WitnessRepair`); the
first candidate that lets a rival win is returned (and, like every witness,
re-run through the reference forward by :meth:`EntailmentOracle.check`). When no candidate
wins the solvers decide, so the verdict is always the exact one.

Two pieces of this per-question work run in the C kernel when it is built, each beside its numpy
reference (used otherwise; the tests compare the two): the repair search
(``_WitnessRepair.search_c`` / ``search_reference``) and the bookkeeping that brings the fixed
masks, the rival bounds and the kept cores' counts to the new fixed set and tells which rivals
they rule out (``RivalSATOracle._advance`` / ``_advance_reference``).
"""
from __future__ import annotations

import logging
import time
from types import ModuleType

import numpy as np
from pysat.solvers import Solver

from xsnn.encoders.cnf import NATIVE_SOLVERS
from xsnn.features import FeatureSet
from xsnn.kernel.c_backend import load_extension
from xsnn.model import BSNN
from .milp import input_domain
from .oracle import Check, EntailmentOracle, Verdict
from .rivals import Ladders, distance_input_range, neuron_ladders, rival_split_applies, rival_terms
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
            :func:`~xsnn.solvers.rivals.distance_input_range`).
        solver: a python-sat solver with native AtMost constraints (``minicard``, ``gluecard3``,
            ``gluecard4``).
        bound_pruning: skip the solver of a rival whose interval bound rules it out (module
            docstring); the verdict is the same either way, only the time and the core differ.
        core_cache: keep each rival's newest UNSAT cores and skip a rival whose kept core lies
            inside the fixed set (:class:`_RivalCores`: each rival's question is monotone); in
            deletion most features asked about outside the current cores are settled this way,
            with the answer that the solvers would give.
        witness_repair: before the solvers, try the repaired recent witnesses (module
            docstring); only NOT_ENTAILED answers come this way, each with a witness that
            :meth:`check` verifies. Off under a distance bound.

    ``stats`` counts answers by path: the solver name, ``repair`` for a repaired witness, or
    ``bounds`` / ``cores`` for an ENTAILED answer that needed no solver (every rival ruled out
    by its bound or a kept core; ``cores`` if at least one kept core was used).
    """

    recent_witnesses = 4  # witnesses kept for repair, the newest first

    def __init__(self, model: BSNN, instance: np.ndarray, features: FeatureSet | None = None,
                 target: int | None = None, max_distance: int | None = None, solver: str = "minicard",
                 bound_pruning: bool = True, core_cache: bool = True, witness_repair: bool = True) -> None:
        super().__init__(model, instance, features, target, max_distance)
        self.solver_name = solver_name(solver)
        if self.solver_name not in NATIVE_SOLVERS:
            raise ValueError(f"the rival SAT oracle needs native AtMost constraints: one of "
                             f"{', '.join(NATIVE_SOLVERS)}, not {self.solver_name}")
        if not rival_sat_applies(model, self.instance):
            raise ValueError("the rival SAT oracle needs one spiking layer and the static coding "
                             "(one Boolean per pixel); use the 'sat' or 'cpsat' backend")
        self.name = f"sat-rivals:{self.solver_name}"
        self._solvers: dict[int, Solver] = {}  # built when the rival is first asked
        self._feasible: dict[int, int] = {}  # rival -> how often its solver was SAT
        self.bound_pruning = bound_pruning
        self.core_cache = core_cache
        self.pruned = 0  # rival solves saved by the interval bound
        self.skipped_by_cores = 0  # rival solves saved by a kept core
        self._last_sat = -1
        self._prepare_rivals()
        self._cores = _RivalCores(len(self._rivals), len(self.features))
        self.witness_repair = witness_repair and max_distance is None
        self._ext = load_extension()  # the C kernel, or None: then the numpy references serve
        self._repair = _WitnessRepair(self.model, self.instance, self._ladders, self.target, self._ext,
                                      keep=self.recent_witnesses)
        # the fixed set the bounds and the kept cores' counts refer to (:meth:`_advance`)
        self._fixed: frozenset[int] = frozenset()
        self._fixed_mask = np.zeros(len(self.features), bool)
        self._fixed_pixels = np.zeros(self.model.n_inputs, bool)  # the pixels of the fixed features
        self._owner = self.features.feature_of_pixel()  # -1: a pixel of no feature, never fixed
        self._group_pixels = [np.asarray(g, np.int64) for g in self.features.groups]
        # the same groups as one flat list (CSR), and the kernel, for the bookkeeping in C (:meth:`_advance`)
        self._group_ptr = np.cumsum([0] + [len(g) for g in self._group_pixels]).astype(np.int64)
        self._group_pixel_list = np.concatenate(self._group_pixels + [np.zeros(0, np.int64)]).astype(np.int64)
        self.gate_in_c = self._ext is not None and hasattr(self._ext, "rival_gate")
        self._ruled_out, self._has_core = np.zeros(len(self._rivals), bool), np.zeros(len(self._rivals), bool)
        self._gate = None
        if self.gate_in_c:  # holds these arrays: they are only ever updated in place
            bound, cores = self._bound, self._cores
            self._gate = self._ext.make_rival_gate(
                len(self.features), len(bound.bounds), len(self._rivals), cores.missing.shape[1],
                len(bound.term_row), self._fixed_mask.view(np.uint8), self._fixed_pixels.view(np.uint8),
                self._group_ptr, self._group_pixel_list, bound.feature_columns, bound.bounds,
                cores.members.view(np.uint8), cores.missing, bound.term_row, bound.term_a, bound.term_e,
                bound.term_rival, bound.slack_base, self._ruled_out.view(np.uint8), self._has_core.view(np.uint8))

    def _prepare_rivals(self) -> None:
        """Set ``_rivals`` (the rivals that can win), ``_problems`` (each one's ``(B, need,
        terms)``; with a distance bound, from ladders over the ball's input range), their bounds,
        the all-free neuron ladders (for the witness repair), and the parts every rival's formula
        shares (a rival's solver is built in :meth:`_solver`). Variables, the same in every solver: pixel ``i`` is ``i + 1``, the
        selector of feature ``k`` is ``n + 1 + k``, then the ``y`` of the terms (and the
        distance indicators)."""
        model = self.model
        n = model.n_inputs
        w = model.weights[0].astype(np.int64)
        ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))  # all free
        ball = ladders  # the terms' ladders: over the inputs the distance bound lets I_j reach
        if self.max_distance is not None:
            ball = neuron_ladders(model, *distance_input_range(model, self.instance, self.features,
                                                               np.ones(len(self.features), bool), self.max_distance))
        value = np.asarray(self.instance[0], dtype=bool)
        x = np.arange(1, n + 1, dtype=np.int64)
        selectors = np.arange(n + 1, n + 1 + len(self.features), dtype=np.int64)
        self._fixing = [[-int(selectors[k]), int(x[i]) if value[i] else -int(x[i])]
                        for k, group in enumerate(self.features.groups) for i in group]
        # per neuron: the literals L_j (x_i where W_ji = +1, ~x_i where W_ji = -1) and n_j^-
        self._literals = [np.concatenate([x[w[j] > 0], -x[w[j] < 0]]).tolist() for j in range(len(w))]
        self._n_neg = (w < 0).sum(axis=1).tolist()
        self._differs = [[-int(x[i]) if value[i] else int(x[i]) for i in group] for group in self.features.groups]
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
        self._bound = _RivalBounds(w, value, self.features, problems)
        self._ladders = ladders
        self._rivals, self._problems = rivals, problems
        log.debug("%s: %d rivals can win", self.name, len(rivals))

    def _solver(self, r: int) -> Solver:
        """The solver of the ``r``-th rival that can win, built on first use (module docstring)."""
        solver = self._solvers.get(r)
        if solver is not None:
            return solver
        base, need, terms = self._problems[r]
        n = self.model.n_inputs
        literals, n_neg = self._literals, self._n_neg
        top = n + len(self.features)
        clauses, atmosts, goal = list(self._fixing), [], []

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
            for lits in self._differs:
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
        self._solvers[r] = solver
        return solver

    def _advance(self, fixed: frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
        """Bring the fixed-feature mask, the rival bounds and the kept cores' counts from the
        previous question's fixed set to ``fixed``: successive questions differ in a few
        features, whose contributions are added or taken away (many changes: recomputed).
        Returns per rival whether its bound rules it out and whether a kept core covers it
        (bool ``(n_rivals,)`` each, before the options are applied). In the C kernel
        (``rival_gate``) when it is built, else in numpy (:meth:`_advance_reference`)."""
        changed = fixed.symmetric_difference(self._fixed)
        if self.gate_in_c and len(changed) <= 32:
            self._fixed = fixed
            self._ext.rival_gate(self._gate, changed)  # each changed feature flips between fixed and free
            return self._ruled_out, self._has_core
        self._advance_reference(fixed, changed)
        return self._bound.slack() < 0, self._cores.covered()

    def _advance_reference(self, fixed: frozenset[int], changed: frozenset[int]) -> None:
        """:meth:`_advance`'s bookkeeping in numpy, for the features ``changed`` since the last call."""
        if len(changed) > 32:  # in place: the C kernel's gate holds these arrays
            mask = np.zeros(len(self.features), bool)
            mask[np.fromiter(fixed, np.int64, len(fixed))] = True
            self._fixed_mask[:] = mask
            self._fixed_pixels[:] = np.append(mask, False)[self._owner]
            self._bound.reset(mask)
            self._cores.reset(mask)
        else:
            for k in changed:
                now_fixed = k in fixed
                self._fixed_mask[k] = now_fixed
                self._fixed_pixels[self._group_pixels[k]] = now_fixed
                self._bound.toggle(k, now_fixed)
                self._cores.toggle(k, now_fixed)
        self._fixed = fixed

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self._solvers is None:
            raise ValueError("this RivalSATOracle was closed")
        if not self._rivals:  # no rival can win whatever the input: the empty set is sufficient
            return Check(Verdict.ENTAILED, fixed, core=frozenset(), backend=self.name)
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        ruled_out, has_core = self._advance(fixed)
        n_rivals = len(self._rivals)
        pruned = ruled_out if self.bound_pruning else np.zeros(n_rivals, bool)
        covered = has_core & ~pruned if self.core_cache else np.zeros(n_rivals, bool)
        skipped = (pruned | covered).tolist()
        n_pruned, n_covered = int(pruned.sum()), int(covered.sum())
        self.pruned += n_pruned
        self.skipped_by_cores += n_covered
        # the rival that gave the last witness first (successive questions tend to fall to the
        # same rival), then the rivals by how often they were feasible (measured in docs/solvers.md)
        order = sorted((r for r in range(n_rivals) if not skipped[r]),
                       key=lambda r: (r != self._last_sat, -self._feasible.get(r, 0)))
        n_features = len(self.features)
        offset = self.model.n_inputs + 1  # the selector of feature k is k + offset
        if order and self.witness_repair:
            witness = self._repair.find(self._fixed_pixels)
            if witness is not None:
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, backend="repair")
        # the selectors of the fixed features (from the mask: about 3x cheaper than from the set)
        assumptions = (np.flatnonzero(self._fixed_mask) + offset).tolist() if order else []
        in_core = np.zeros(n_features, bool)
        for r in order:
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return Check(Verdict.UNKNOWN, fixed, backend=self.name)
            solver = self._solver(r)
            self._active = solver
            if self._interrupted:
                return Check(Verdict.UNKNOWN, fixed, backend=self.name)
            status = solve_limited(solver, self.solver_name, assumptions, remaining)
            if status is None:
                return Check(Verdict.UNKNOWN, fixed, backend=self.name)
            if status:
                self._feasible[r] = self._feasible.get(r, 0) + 1
                self._last_sat = r
                # the model lists variables 1, 2, ... in order; pixel i is variable i + 1
                bits = np.array(solver.get_model()[: self.model.n_inputs], np.int64) > 0
                witness = np.empty(self.instance.shape, np.uint8)
                witness[:] = bits
                if self.witness_repair:
                    self._repair.add(bits, self._fixed_pixels)
                return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, backend=self.name)
            # only selectors are assumed, so the core holds selectors n + 1 + k (feature k in S)
            k = np.array(solver.get_core() or (), np.int64) - offset
            k = k[(k >= 0) & (k < n_features)]
            in_core[k] = True
            if self.core_cache and len(k) < len(fixed):
                self._cores.add(r, k)
        if n_pruned:  # the fixed features wired to the pruned rivals' neurons
            in_core |= self._bound.wired[pruned].any(axis=0) & self._fixed_mask
        if n_covered:
            in_core |= self._cores.union(covered)
        backend = self.name if order else "cores" if n_covered else "bounds"
        # the core is a subset of the fixed set, most of it: built as the fixed set minus the rest
        # (copying a set is much cheaper than making a new one from hundreds of ints)
        outside = np.flatnonzero(self._fixed_mask & ~in_core).tolist()
        return Check(Verdict.ENTAILED, fixed, core=fixed.difference(outside), backend=backend)

    def _interrupt_solver(self) -> None:
        solver = getattr(self, "_active", None)
        if solver is not None and self.solver_name not in SOLVERS_WITHOUT_INTERRUPT:
            solver.interrupt()

    def close(self) -> None:
        self._active = None
        for solver in (self._solvers or {}).values():
            solver.delete()
        self._solvers = None


class _RivalBounds:
    """Interval upper bounds of every rival's ``D_c'`` for a fixed set (module docstring).

    With pixel values ``v`` and ``F`` the fixed pixels, ``I_j`` lies in ``[lo_j, hi_j]`` with

        lo_j = sum_i min(0, W_ji) + sum_{i in F} (W_ji v_i - min(0, W_ji)),
        hi_j = sum_i max(0, W_ji) + sum_{i in F} (W_ji v_i - max(0, W_ji)),

    kept from question to question: the changed features' columns added or taken away
    (:meth:`toggle`), or a matrix-vector product when many changed (:meth:`reset`); small
    integers, so the float64 sums are exact.
    A term ``(j, a, e)`` adds ``e`` to the bound when ``hi_j >= a`` (``e > 0``) or ``lo_j >= a``
    (``e < 0``).
    """

    def __init__(self, w: np.ndarray, value: np.ndarray, features: FeatureSet,
                 rivals: list[tuple[int, int, list[tuple[int, int, int]]]]) -> None:
        n_neurons = len(w)
        wv = w * value[None, :].astype(np.int64)
        self._start = np.concatenate([np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1)]).astype(np.float64)
        step = np.concatenate([wv - np.minimum(w, 0), wv - np.maximum(w, 0)]).astype(np.float64)  # (2n_0, n)
        self.base = np.array([b for b, _, _ in rivals], np.int64)
        self.need = np.array([need for _, need, _ in rivals], np.int64)
        self._rival = np.concatenate([np.full(len(t), r, np.int64) for r, (_, _, t) in enumerate(rivals)] or
                                     [np.zeros(0, np.int64)])
        terms = np.array([term for _, _, t in rivals for term in t], np.int64).reshape(-1, 3)
        j, a, e = terms[:, 0], terms[:, 1], terms[:, 2]
        self._a = a.astype(np.float64)  # compared with the float64 bounds (small integers: exact)
        # a gain is read from hi_j (row n_0 + j), a loss from lo_j (row j)
        self._row = np.where(e > 0, n_neurons + j, j)
        # gains[r, t]: the gain e of term t if it belongs to rival r, else 0 (upper = base + gains @ reached)
        self._gains = np.zeros((len(rivals), len(terms)))
        self._gains[self._rival, np.arange(len(terms))] = e
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
        feature_step = np.zeros((len(features) + 1, len(step)))  # last row: unowned pixels
        np.add.at(feature_step, owner, step.T)
        self.feature_columns = np.ascontiguousarray(feature_step[:-1])
        self.bounds = self._start.copy()  # nothing fixed
        # the terms one by one, for the kernel's rival_gate: row of (lo, hi), break, gain, rival
        self.term_row, self.term_a = self._row.astype(np.int64), self._a
        self.term_e, self.term_rival = e.astype(np.int64), self._rival.astype(np.int64)
        self.slack_base = (self.base - self.need).astype(np.int64)

    def reset(self, fixed_mask: np.ndarray) -> None:
        """Compute ``(lo, hi)`` afresh for the fixed features ``fixed_mask`` (bool per feature)."""
        self.bounds[:] = self._start + fixed_mask.astype(np.float64) @ self.feature_columns

    def toggle(self, feature: int, fixed: bool) -> None:
        """Feature ``feature`` became fixed (``fixed``) or free: add or take away its column
        (integers of small magnitude: the float64 sums are exact)."""
        if fixed:
            self.bounds += self.feature_columns[feature]
        else:
            self.bounds -= self.feature_columns[feature]

    def slack(self) -> np.ndarray:
        """Per rival: its interval upper bound of ``D_c'`` minus ``need`` for the current fixed
        set; the solver must decide the rivals with slack ``>= 0``, the others cannot win."""
        reached = (self.bounds[self._row] >= self._a).astype(np.float64)
        return (self.base - self.need) + self._gains @ reached


class _RivalCores:
    """The newest UNSAT cores of each rival's solver, ``size`` per rival (module docstring).

    Rival ``r`` cannot win when the fixed set contains one of its kept cores: its one-sided
    question is monotone in the fixed set. To tell that quickly, each kept core's count of
    features that are *not* fixed (``missing``) is kept up to date as features are fixed and
    freed (:meth:`toggle`); a core lies inside the fixed set iff its count is 0. An empty slot
    counts ``n_features + 1``.
    """

    def __init__(self, n_rivals: int, n_features: int, size: int = 8) -> None:
        self.members = np.zeros((n_features, n_rivals, size), bool)  # [k, r, slot]: feature k in the core
        self._occupied = np.zeros((n_rivals, size), bool)
        self.missing = np.full((n_rivals, size), n_features + 1, np.int64)
        self._oldest = np.zeros(n_rivals, np.int64)  # per rival: the slot the next core replaces

    def reset(self, fixed_mask: np.ndarray) -> None:
        """Count every kept core's free features afresh for ``fixed_mask`` (bool per feature)."""
        counts = np.count_nonzero(self.members & ~fixed_mask[:, None, None], axis=0)
        self.missing[:] = np.where(self._occupied, counts, len(self.members) + 1)

    def toggle(self, feature: int, fixed: bool) -> None:
        """Feature ``feature`` became fixed (``fixed``) or free."""
        if fixed:
            self.missing -= self.members[feature]
        else:
            self.missing += self.members[feature]

    def covered(self) -> np.ndarray:
        """Per rival: True when one of its kept cores lies inside the fixed set (bool ``(n_rivals,)``)."""
        return (self.missing == 0).any(axis=1)

    def add(self, rival: int, core: np.ndarray) -> None:
        """Keep ``core`` (feature indices, all fixed now) in the place of rival ``rival``'s oldest
        kept core (the slots are used in turn)."""
        slot = self._oldest[rival]
        self._oldest[rival] = (slot + 1) % self.missing.shape[1]
        self.members[:, rival, slot] = False
        self.members[core, rival, slot] = True
        self._occupied[rival, slot] = True
        self.missing[rival, slot] = 0

    def union(self, rivals: np.ndarray) -> np.ndarray:
        """The union (bool ``(n_features,)``) of one kept core inside the fixed set per rival in
        the mask ``rivals`` (each must be :meth:`covered`)."""
        chosen = np.flatnonzero(rivals)
        slots = np.argmax(self.missing[chosen] == 0, axis=1)
        return self.members[:, chosen, slots].any(axis=1)


class _WitnessRepair:
    """Counterexamples made from recent witnesses (module docstring), scored exactly.

    A witness is kept as its pixel values ``x`` (bool ``(n,)``), its inputs ``I = W x`` and the
    fixed pixels of its question. For a new question with fixed pixels ``P``, its candidate is

        x'_i = v_i       for i in P,
        x'_i = not v_i   for i fixed for x but free now (x agreed with the instance there),
        x'_i = x_i       otherwise,

    whose inputs are ``I' = I + sum_{i: x'_i != x_i} (x'_i - x_i) W_{:,i}`` (a few pixels in
    deletion). With static coding a neuron's spike count is its ladder over the all-free input
    range, ``count_j(I'_j) = base_j + sum_m delta_jm [I'_j >= a_jm]``, and ``x'`` is a
    counterexample iff some class ``c'`` reaches ``(R_c' - R_c) . count >= need`` (1 above the
    target, 0 below: ties go to the lowest index). All sums are of small integers in float32
    (``|I_j| <= n <= 2**24``): exact.
    """

    def __init__(self, model: BSNN, instance: np.ndarray, ladders: Ladders, target: int,
                 extension: ModuleType | None = None, keep: int = 4) -> None:
        n = model.n_inputs
        self._w = np.ascontiguousarray(model.weights[0], dtype=np.float32)  # (n_0, n)
        self._w_t = np.ascontiguousarray(self._w.T)                         # (n, n_0): row i is W_{:,i}
        self._value = np.asarray(instance[0], bool)
        self._shape = instance.shape
        n_0 = len(ladders.base_counts)
        width = max((len(a) for a in ladders.breaks), default=0)
        self._breaks = np.full((width, n_0), np.inf, np.float32)  # row m: each neuron's m-th break
        self._deltas = np.zeros((width, n_0), np.float32)
        for j, (a, delta) in enumerate(zip(ladders.breaks, ladders.deltas)):
            self._breaks[: len(a), j], self._deltas[: len(delta), j] = a, delta
        self._base_counts = ladders.base_counts.astype(np.float32)
        others = [c for c in range(model.n_classes) if c != target]
        readout = model.readout.astype(np.float32)
        self._score_gap = (readout[others] - readout[target]).T               # (n_0, classes - 1)
        self._need = np.array([1.0 if c > target else 0.0 for c in others], np.float32)
        self._x = np.zeros((keep, n), bool)                   # the kept witnesses, the newest first
        self._differs = np.zeros((keep, n), bool)             # x != v
        self._inputs = np.zeros((keep, n_0), np.float32)      # their I = W x
        self._fixed_pixels = np.zeros((keep, n), bool)        # the fixed pixels of their questions
        self._kept = 0
        # the same search in the C kernel (``extension``, :meth:`search_c`), built once: int32
        # ladders (absent breaks never reached), score gaps and needs, W by columns (pixel i: its
        # neurons and weight signs)
        self.in_c = extension is not None and hasattr(extension, "make_repair_search")
        self._ext, self._c_search = extension, None
        if self.in_c:
            breaks = np.full(self._breaks.shape, np.iinfo(np.int32).max, np.int32)
            finite = np.isfinite(self._breaks)
            breaks[finite] = self._breaks[finite]
            pixel, neuron = np.nonzero(self._w_t)  # by pixel, then neuron
            self._c_search = extension.make_repair_search(
                n_0, n, width, len(others), breaks, self._deltas.astype(np.int32),
                self._base_counts.astype(np.int32), np.ascontiguousarray(self._score_gap, dtype=np.int32),
                self._need.astype(np.int32), np.searchsorted(pixel, np.arange(n + 1)).astype(np.int64),
                neuron.astype(np.int32), self._w_t[pixel, neuron].astype(np.int8))

    def add(self, x: np.ndarray, fixed_pixels: np.ndarray, inputs: np.ndarray | None = None) -> None:
        """Keep witness pixels ``x`` (bool ``(n,)``) found with the pixels ``fixed_pixels`` fixed
        (``inputs``: ``W x`` if known)."""
        for kept in (self._x, self._differs, self._inputs, self._fixed_pixels):
            kept[1:] = kept[:-1]
        self._x[0] = x
        np.not_equal(x, self._value, out=self._differs[0])
        self._inputs[0] = self._w @ x.astype(np.float32) if inputs is None else inputs
        self._fixed_pixels[0] = fixed_pixels
        self._kept = min(self._kept + 1, len(self._x))

    def changes_prediction(self, inputs: np.ndarray) -> np.ndarray:
        """Per row of first-layer inputs ``I`` (``(m, n_0)``, as ``W x``): does the prediction
        move away from the target? (bool ``(m,)``; class docstring)"""
        counts = np.empty(inputs.shape, np.float32)
        counts[:] = self._base_counts
        for a, delta in zip(self._breaks, self._deltas):
            counts += delta * (inputs >= a)
        return (counts @ self._score_gap >= self._need).any(axis=1)

    def find(self, fixed_pixels: np.ndarray) -> np.ndarray | None:
        """A counterexample ``(T, n)`` with the pixels ``fixed_pixels`` fixed, or ``None``: the
        first kept witness (newest first) whose candidate wins (class docstring), which is then
        kept as the newest witness."""
        found = self.search_c(fixed_pixels) if self.in_c else self.search_reference(fixed_pixels)
        if found is None:
            return None
        best, inputs = found
        # the candidate: v on the fixed pixels, x flipped where it was fixed and agreed with v
        candidate = np.where(fixed_pixels, self._value,
                             self._x[best] ^ (self._fixed_pixels[best] & ~self._differs[best]))
        self.add(candidate, fixed_pixels, inputs)
        witness = np.empty(self._shape, np.uint8)
        witness[:] = candidate
        return witness

    def search_reference(self, fixed_pixels: np.ndarray) -> tuple[int, np.ndarray] | None:
        """The search of :meth:`find` in numpy: ``(b, I')`` for the first kept witness ``b``
        (newest first) whose candidate wins, with the candidate's inputs ``I' = W x'``
        (float32 ``(n_0,)``), or ``None``."""
        kept = self._kept
        if not kept:
            return None
        x, differs = self._x[:kept], self._differs[:kept]
        # x'_i != x_i: a fixed pixel where x differs from v (reset), or a free pixel that was
        # fixed for x and where x = v (flipped); a changed pixel flips: x'_i = not x_i
        changed = np.where(fixed_pixels, differs, self._fixed_pixels[:kept] & ~differs)
        rows, pixels = np.nonzero(changed)  # the changed pixels, candidate by candidate
        steps = np.zeros((kept, len(pixels)), np.float32)  # +1: a pixel turned on, -1: off
        steps[rows, np.arange(len(pixels))] = 1.0 - 2.0 * x[rows, pixels]
        inputs = self._inputs[:kept] + steps @ self._w_t[pixels]
        wins = self.changes_prediction(inputs)
        if not wins.any():
            return None
        best = int(np.argmax(wins))
        return best, inputs[best]

    def search_c(self, fixed_pixels: np.ndarray) -> tuple[int, np.ndarray] | None:
        """:meth:`search_reference` in the C kernel (``repair_search``, the same integers:
        sparse columns of ``W``, int32 ladders); needs :attr:`in_c`."""
        kept = self._kept
        if not kept:
            return None
        inputs = np.empty(self._inputs.shape[1], np.int32)
        best = self._ext.repair_search(
            self._c_search, kept, self._x[:kept].view(np.uint8), self._differs[:kept].view(np.uint8),
            self._inputs[:kept].astype(np.int32), self._fixed_pixels[:kept].view(np.uint8),
            np.ascontiguousarray(fixed_pixels, dtype=bool).view(np.uint8), inputs)
        return None if best < 0 else (best, inputs.astype(np.float32))
