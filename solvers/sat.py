"""Exact entailment with an incremental python-sat solver over the CNF of the causal model.

The formula "prediction != target" (:func:`xsnn.encoders.cnf.encode_cnf`) is built once;
one solver keeps it (and its learnt clauses) for every question. Fixing a feature set
``S`` means assuming the selectors of ``S``:

- UNSAT -> ENTAILED, with core = the features whose selectors are in ``get_core()``
  (fixing the core alone is already sufficient);
- SAT   -> NOT_ENTAILED, with the witness decoded from the model (the base class
  re-runs it through the reference forward);
- budget exhausted -> UNKNOWN.

Time limits: solvers with ``interrupt()`` (MiniSat, Glucose, Minicard, Gluecard, Maple...)
are stopped by a ``threading.Timer`` during ``solve_limited(expect_interrupt=True)``;
CaDiCaL has no interrupt in python-sat, so it runs ``solve_limited`` under growing
conflict budgets (slices of about a quarter of the limit, sized from the measured conflict
rate) until the time is spent; it may overshoot by one slice.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from pysat.solvers import Solver, SolverNames

from xsnn.encoders.cnf import (
    DEFAULT_CLAUSAL_ENCODING,
    DEFAULT_ENCODING,
    DEFAULT_SOLVER,
    NATIVE_SOLVERS,
    CNFEncoding,
    encode_cnf,
)
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .oracle import Check, EntailmentOracle, Verdict

__all__ = ["SATOracle", "solver_name", "new_solver", "solve_limited", "default_pair", "SOLVERS_WITHOUT_INTERRUPT"]

log = logging.getLogger(__name__)

QUICK_CONFLICTS = 200  # conflicts tried before a timer thread is started (see solve_limited)
SOLVERS_WITHOUT_INTERRUPT = ("cadical103", "cadical153", "cadical195", "cadical300", "lingeling", "cryptosat")
_UNSUPPORTED = {"kissat404": "it has no assumptions or cores in python-sat"}


def solver_name(name: str) -> str:
    """The canonical python-sat name of a solver (``"cd19"`` -> ``"cadical195"``), or ValueError."""
    key = str(name).lower()
    for canonical, aliases in vars(SolverNames).items():
        if isinstance(aliases, tuple) and key in aliases:
            if canonical in _UNSUPPORTED:
                raise ValueError(f"SAT solver {canonical} cannot be an entailment oracle: {_UNSUPPORTED[canonical]}")
            return canonical
    known = sorted(c for c, a in vars(SolverNames).items() if isinstance(a, tuple))
    raise ValueError(f"unknown SAT solver {name!r}; python-sat knows {', '.join(known)}")


def new_solver(formula, name: str = "cadical195") -> Solver:
    """A python-sat solver loaded with ``formula`` (clauses, and native AtMost constraints of a ``CNFPlus``)."""
    canonical = solver_name(name)
    atmosts = getattr(formula, "atmosts", [])
    if atmosts and canonical not in NATIVE_SOLVERS:
        raise ValueError(
            f"a formula with native AtMost constraints needs one of {', '.join(NATIVE_SOLVERS)}, not {canonical}"
        )
    solver = Solver(name=canonical)
    solver.append_formula(formula.clauses)
    for lits, bound in atmosts:
        solver.add_atmost(lits, bound)
    return solver


def solve_limited(solver: Solver, name: str, assumptions: list[int], time_limit: float | None) -> bool | None:
    """``solver.solve(assumptions)`` within ``time_limit`` seconds: True (SAT), False (UNSAT) or
    None (budget spent). ``name`` is the canonical solver name (see the module docstring for
    how each solver is stopped)."""
    if time_limit is None:
        if name in SOLVERS_WITHOUT_INTERRUPT:
            return solver.solve(assumptions=assumptions)
        try:  # interruptible (EntailmentOracle.interrupt calls solver.interrupt from another thread)
            return solver.solve_limited(assumptions=assumptions, expect_interrupt=True)
        finally:
            solver.clear_interrupt()
    if time_limit <= 0:
        return None
    if name not in SOLVERS_WITHOUT_INTERRUPT:
        # Most incremental calls end within a few hundred conflicts: try that first, without
        # the cost of starting a timer thread (about 0.5 ms, more than many whole calls).
        solver.conf_budget(QUICK_CONFLICTS)
        status = solver.solve_limited(assumptions=assumptions)
        solver.conf_budget(-1)  # budget off
        if status is not None:
            return status
        timer = threading.Timer(time_limit, solver.interrupt)
        timer.start()
        try:
            return solver.solve_limited(assumptions=assumptions, expect_interrupt=True)
        finally:
            timer.cancel()
            solver.clear_interrupt()
    if name in ("lingeling", "cryptosat"):
        raise ValueError(f"{name} supports neither interrupts nor conflict budgets; use it without a time limit")
    deadline = time.perf_counter() + time_limit
    budget = 100  # conflicts in the first slice
    while True:
        started = time.perf_counter()
        solver.conf_budget(budget)
        status = solver.solve_limited(assumptions=assumptions)
        if status is not None:
            return status
        now = time.perf_counter()
        if now >= deadline:
            return None
        rate = budget / max(now - started, 1e-3)  # conflicts per second, last slice
        slice_seconds = min(deadline - now, max(0.05, 0.25 * time_limit))
        budget = max(10, min(4 * budget, int(rate * slice_seconds)))


def default_pair(solver: str | None, encoding: str | None) -> tuple[str, str]:
    """Fill in the measured defaults: ``(None, None)`` -> ``(minicard, native)``; a solver without
    native constraints gets the clausal default (``adder``); ``native`` without a solver gets Minicard."""
    if solver is None:
        solver = DEFAULT_SOLVER if encoding in (None, "native") else "cadical195"
    solver = solver_name(solver)
    if encoding is None:
        encoding = DEFAULT_ENCODING if solver in NATIVE_SOLVERS else DEFAULT_CLAUSAL_ENCODING
    return solver, encoding


class SATOracle(EntailmentOracle):
    """Entailment by one incremental SAT solver; features are fixed by selector assumptions.

    Args:
        model, instance, features, target, max_distance: see :class:`EntailmentOracle`.
        solver: a python-sat solver name (``minicard``, ``cadical195``, ``glucose4``, ``minisat22``...).
        encoding: the cardinality encoding (:data:`xsnn.encoders.cnf.ENCODINGS`); ``native``
            needs ``minicard``, ``gluecard3`` or ``gluecard4``.
        Defaults (measured, see docs/encoders.md): Minicard with native AtMost constraints; a solver
        without native constraints (e.g. ``solver="cadical195"``) gets the ``adder`` encoding.
    """

    name = "sat"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        solver: str | None = None,
        encoding: str | None = None,
    ) -> None:
        super().__init__(model, instance, features, target, max_distance)
        self.solver_name, encoding = default_pair(solver, encoding)
        if encoding == "native" and self.solver_name not in NATIVE_SOLVERS:
            raise ValueError(f"the native encoding needs one of {', '.join(NATIVE_SOLVERS)}, not {self.solver_name}")
        self.name = f"sat:{self.solver_name}"
        self.encoding: CNFEncoding = encode_cnf(
            model,
            self.instance,
            self.target,
            goal="differs",
            features=self.features,
            max_distance=max_distance,
            encoding=encoding,
        )
        self._selector_feature = {int(lit): k for k, lit in enumerate(self.encoding.selectors)}
        self._solver = new_solver(self.encoding.formula, self.solver_name)
        log.debug(
            "%s: %d vars, %d clauses, %d atmosts",
            self.name,
            self.encoding.n_vars,
            self.encoding.n_clauses,
            self.encoding.n_atmosts,
        )

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self._solver is None:
            raise ValueError("this SATOracle was closed")
        status = solve_limited(self._solver, self.solver_name, self.encoding.assumptions(fixed), time_limit)
        if status is None:
            return Check(Verdict.UNKNOWN, fixed, path=self.name)
        if status:
            witness = self.encoding.decode_inputs(self._solver.get_model())
            return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path=self.name)
        core_lits = set(self._solver.get_core() or [])
        core = frozenset(k for k in fixed if int(self.encoding.selectors[k]) in core_lits)
        return Check(Verdict.ENTAILED, fixed, core=core, path=self.name)

    def _interrupt_solver(self) -> None:
        solver = self._solver
        if solver is not None and self.solver_name not in SOLVERS_WITHOUT_INTERRUPT:
            solver.interrupt()

    def close(self) -> None:
        if self._solver is not None:
            self._solver.delete()
            self._solver = None
