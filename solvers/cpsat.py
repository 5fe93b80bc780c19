"""Exact entailment with OR-Tools CP-SAT (integer arithmetic throughout, so no tolerance argument).

The problem is the one of :mod:`xsnn.encoders.linear` (same :class:`~xsnn.encoders.linear.Formulation`:
input selector binaries, integer potentials, spikes, exact reset, the tie rule, the optional
distance bound); its if-then constraints go to CP-SAT as ``OnlyEnforceIf`` constraints.

Each check builds the model of its fixed set (fixed pixels are constants, bounds tight for
that set), like the MILP oracle; ``core = S`` minus the features disconnected from the network
(:func:`~xsnn.encoders.linear.disconnected_features`). Where the network has one spiking layer
and a static-like coding (every shipped model), the question is split by rival class into
one-sided problems (:mod:`xsnn.encoders.rivals`), solved most dangerous rival first:
NOT_ENTAILED at the first feasible rival, ENTAILED when every rival is infeasible
(``split_rivals=False`` keeps the combined model; the tests compare the two).

A mode that built the model once and fixed features by assumptions (CP-SAT's
``sufficient_assumptions_for_infeasibility`` as cores) was measured one to two orders of
magnitude slower, with cores barely smaller than ``S`` on MNIST-size inputs
(``docs/oracles.md``), and was removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np

from xsnn.encoders.linear import Formulation, build_formulation, disconnected_features, instance_selectors
from xsnn.encoders.rivals import build_rival_problems, rival_split_applies
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .oracle import Check, EntailmentOracle, Verdict

__all__ = ["CPSATOracle", "cpsat_model"]

log = logging.getLogger(__name__)


def cpsat_model(form: Formulation):
    """``(CpModel, variables)``: the formulation as a CP-SAT model (``variables[c]`` is column ``c``)."""
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    variables = []
    for c, (lo, hi, boolean) in enumerate(zip(form.lower.tolist(), form.upper.tolist(), form.boolean.tolist())):
        variables.append(m.new_bool_var(f"b{c}") if boolean and lo == 0 and hi == 1 else m.new_int_var(lo, hi, f"v{c}"))
    for row in form.rows:
        expr = cp_model.LinearExpr.weighted_sum([variables[c] for c in row.cols.tolist()], row.coefs.tolist())
        m.add_linear_constraint(expr, row.lower, row.upper)
    for ind in form.indicators:
        row = ind.row
        expr = cp_model.LinearExpr.weighted_sum([variables[c] for c in row.cols.tolist()], row.coefs.tolist())
        lit = variables[ind.col]
        m.add_linear_constraint(expr, row.lower, row.upper).only_enforce_if(lit if ind.value == 1 else lit.Not())
    return m, variables


class CPSATOracle(EntailmentOracle):
    """Exact entailment oracle on CP-SAT.

    Args:
        model, instance, features, target, max_distance: as for every
            :class:`~xsnn.solvers.oracle.EntailmentOracle`.
        num_workers: CP-SAT search workers (1 by default: benchmarks are per core).
        seed: CP-SAT random seed.
        split_rivals: decide one rival class at a time with the one-sided
            formulation where it applies (see the module docstring).
        probe_seconds: with ``split_rivals``, the first round's budget per rival.
        parameters: further CP-SAT parameters by name (e.g. ``{"linearization_level": 0}``).
    """

    name = "cpsat"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        *,
        num_workers: int = 1,
        seed: int = 0,
        split_rivals: bool = True,
        probe_seconds: float = 0.05,
        parameters: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(model, instance, features, target, max_distance)
        from ortools.sat.python import cp_model

        self._cp_model = cp_model
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        instance_selectors(model, self.instance)  # fails early with a clear error
        self._disconnected = disconnected_features(model, self.features)
        self.split_rivals = bool(split_rivals) and rival_split_applies(model, self.instance)
        if probe_seconds < 0:
            raise ValueError(f"probe_seconds must be >= 0, got {probe_seconds}")
        self.probe_seconds = float(probe_seconds)
        self.parameters = dict(parameters or {})
        probe = self._cp_model.CpSolver().parameters
        for key in self.parameters:
            if not hasattr(probe, key):
                raise ValueError(f"unknown CP-SAT parameter {key!r}")
        self._feasible_rivals: dict[int, int] = {}  # rival -> how often its part had a counterexample

    def _solver(self, time_limit: float | None):
        solver = self._cp_model.CpSolver()
        solver.parameters.num_workers = self.num_workers
        solver.parameters.random_seed = self.seed
        solver.parameters.catch_sigint_signal = False  # Ctrl-C reaches it through interrupt() (stop_search)
        for key, value in self.parameters.items():
            setattr(solver.parameters, key, value)
        if time_limit is not None:
            solver.parameters.max_time_in_seconds = max(float(time_limit), 0.0)
        self._active = solver
        return solver

    def _interrupt_solver(self) -> None:
        solver = getattr(self, "_active", None)
        if solver is not None:
            solver.stop_search()

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self.split_rivals:
            return self._check_by_rival(fixed, time_limit)
        cp_model = self._cp_model
        form = build_formulation(self.model, self.instance, self.features, fixed, self.target, self.max_distance)
        if form.no_rival:
            return Check(Verdict.ENTAILED, fixed, core=fixed - self._disconnected, path=self.name)
        m, _ = cpsat_model(form)
        solver = self._solver(time_limit)
        if self._interrupted:
            return Check(Verdict.UNKNOWN, fixed, path=self.name)
        status = solver.solve(m)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            values = np.asarray(solver.response_proto.solution, dtype=np.int64)
            return Check(Verdict.NOT_ENTAILED, fixed, witness=form.witness(self.instance, values), path=self.name)
        if status == cp_model.INFEASIBLE:
            return Check(Verdict.ENTAILED, fixed, core=fixed - self._disconnected, path=self.name)
        if status == cp_model.MODEL_INVALID:
            raise RuntimeError(f"CP-SAT rejected the model: {m.validate()}")
        return Check(Verdict.UNKNOWN, fixed, path=self.name)

    def _check_by_rival(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        """One rival at a time: NOT_ENTAILED at the first feasible one, ENTAILED if none is,
        UNKNOWN if the time runs out first.

        Rivals are tried in two rounds: first each with a short budget (``probe_seconds``) in
        the order "most often feasible so far, then largest interval bound", which finds a
        counterexample quickly when one exists (a feasible part is usually easy, an infeasible
        one is not); then the undecided ones without that cap.
        """
        cp_model = self._cp_model
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        problems = build_rival_problems(self.model, self.instance, self.features, fixed, self.target, self.max_distance)
        problems.sort(key=lambda p: -self._feasible_rivals.get(p.rival, 0))  # stable: keeps the bound order
        models = {}
        for cap in (self.probe_seconds, None):
            undecided = []
            for problem in problems:
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    return Check(Verdict.UNKNOWN, fixed, path=self.name)
                budget = remaining if cap is None else (cap if remaining is None else min(cap, remaining))
                m = models.get(problem.rival)
                if m is None:
                    m = models[problem.rival] = cpsat_model(problem.formulation)[0]
                solver = self._solver(budget)
                if self._interrupted:
                    return Check(Verdict.UNKNOWN, fixed, path=self.name)
                status = solver.solve(m)
                if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                    self._feasible_rivals[problem.rival] = self._feasible_rivals.get(problem.rival, 0) + 1
                    values = np.asarray(solver.response_proto.solution, dtype=np.int64)
                    return Check(
                        Verdict.NOT_ENTAILED,
                        fixed,
                        witness=problem.formulation.witness(self.instance, values),
                        path=self.name,
                    )
                if status == cp_model.MODEL_INVALID:
                    raise RuntimeError(f"CP-SAT rejected the model: {m.validate()}")
                if status != cp_model.INFEASIBLE:
                    undecided.append(problem)
            problems = undecided
            if not problems:
                return Check(Verdict.ENTAILED, fixed, core=fixed - self._disconnected, path=self.name)
        return Check(Verdict.UNKNOWN, fixed, path=self.name)

    def close(self) -> None:
        self._active = None
