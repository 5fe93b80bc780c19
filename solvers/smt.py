"""Exact entailment with z3 over the SMT encoding of the causal model.

The formula "prediction != target" (:func:`xsnn.encoders.smt.encode_smt`, variant
``lia`` with integer potentials or ``pb`` with pseudo-Boolean constraints) is asserted
once in one z3 solver; ``check(*selectors of S)`` answers for a fixed set ``S``:
``unsat`` -> ENTAILED with the core read from ``unsat_core()``; ``sat`` -> NOT_ENTAILED
with the witness decoded from the model; ``unknown`` (timeout) -> UNKNOWN.
"""

from __future__ import annotations

import logging

import numpy as np
import z3

from xsnn.encoders.smt import SMTEncoding, encode_smt
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .oracle import Check, EntailmentOracle, Verdict

__all__ = ["SMTOracle"]

log = logging.getLogger(__name__)

_NO_TIMEOUT = 4294967295  # z3's "no limit" for the timeout parameter (milliseconds)


class SMTOracle(EntailmentOracle):
    """Entailment by one z3 solver; features are fixed by assuming their selector Booleans.

    Args:
        model, instance, features, target, max_distance: see :class:`EntailmentOracle`.
        variant: ``"lia"`` (integer potentials) or ``"pb"`` (pseudo-Boolean constraints).
    """

    name = "smt"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        variant: str = "lia",
    ) -> None:
        super().__init__(model, instance, features, target, max_distance)
        self.variant = variant
        self.name = f"smt:z3-{variant}"
        self.encoding: SMTEncoding = encode_smt(
            model,
            self.instance,
            self.target,
            goal="differs",
            features=self.features,
            max_distance=max_distance,
            variant=variant,
        )
        self._selector_feature = {str(sel): k for k, sel in enumerate(self.encoding.selectors)}
        self._solver: z3.Solver | None = self.encoding.solver()
        self._solver.set("ctrl_c", False)  # Ctrl-C reaches it through interrupt(), from the calling thread

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self._solver is None:
            raise ValueError("this SMTOracle was closed")
        if time_limit is not None and time_limit <= 0:
            return Check(Verdict.UNKNOWN, fixed, path=self.name)
        millis = _NO_TIMEOUT if time_limit is None else max(1, int(time_limit * 1000))
        self._solver.set("timeout", millis)
        result = self._solver.check(*self.encoding.assumptions(fixed))
        if result == z3.sat:
            witness = self.encoding.decode_inputs(self._solver.model())
            return Check(Verdict.NOT_ENTAILED, fixed, witness=witness, path=self.name)
        if result == z3.unsat:
            core = frozenset(self._selector_feature[str(lit)] for lit in self._solver.unsat_core())
            return Check(Verdict.ENTAILED, fixed, core=core, path=self.name)
        log.debug("%s: unknown (%s)", self.name, self._solver.reason_unknown())
        return Check(Verdict.UNKNOWN, fixed, path=self.name)

    def _interrupt_solver(self) -> None:
        solver = self._solver
        if solver is not None:
            solver.ctx.interrupt()

    def close(self) -> None:
        self._solver = None
