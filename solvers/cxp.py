"""Contrastive explanations (CXps) by deletion.

A set ``X ⊆ F`` is a *weak CXp* when freeing ``X`` (fixing ``F \\ X`` to the instance) can
change the prediction: the oracle says NOT_ENTAILED for ``F \\ X`` fixed. Weak CXps are
closed under supersets; a CXp is a subset-minimal one. AXps and CXps are minimal hitting sets
of each other (for any monotone sufficiency predicate, hence also under a distance bound).

:class:`DeletionCXp` starts from ``X = F`` (the prediction must be changeable at all) and, in
order, drops each feature whose removal keeps ``X`` a weak CXp. With ``use_witnesses`` every
witness ``w`` also shrinks ``X`` to the features on which ``w`` differs from the instance
(``w`` proves that smaller set is a weak CXp too); this is much faster on large inputs, but
the CXp found then depends on which witness each path returns, so the result is identical with
and without fast paths only for ``use_witnesses=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .axp import OracleAlgorithm, Order, feature_order
from .certificate import CXpCertificate, VerdictRecord
from .oracle import Check, EntailmentOracle, Verdict
from .result import FormalExplanation, NoExplanationError, Status

__all__ = ["DeletionCXp"]


class CXpSteps(OracleAlgorithm):
    """Shared CXp machinery (used by :class:`DeletionCXp`, the minimum-AXp and enumeration algorithms)."""

    def _initial_cxp_check(self) -> Check:
        check = self._ask(frozenset())
        if check.verdict is Verdict.NOT_ENTAILED:
            return check
        if check.verdict is Verdict.ENTAILED:
            raise NoExplanationError("the prediction cannot change even with every feature free: there is no CXp")
        raise NoExplanationError("could not decide, within the time limit, whether the prediction can change at all")

    def _shrink_cxp(
        self, freed: frozenset[int], witness_check: Check, order: Sequence[int], use_witnesses: bool
    ) -> tuple[set[int], Check, dict[int, Check], set[int]]:
        """Deletion over the weak CXp ``freed`` (``witness_check``: its NOT_ENTAILED check).

        Returns ``(X, witness check for X, necessity checks, unproven)``.
        """
        x = set(freed)
        change = witness_check
        if use_witnesses:
            x &= self._differing(change.witness)
        necessity: dict[int, Check] = {}
        unproven: set[int] = set()
        for i in order:
            if i not in x:
                continue
            if self._expired():
                self._run.timed_out = True
                break
            check = self._ask(self.all_features - (x - {i}))
            if check.verdict is Verdict.NOT_ENTAILED:
                x.discard(i)
                change = check
                if use_witnesses:
                    x &= self._differing(check.witness)
            elif check.verdict is Verdict.ENTAILED:
                necessity[i] = check
            else:
                unproven.add(i)
        necessity = {i: c for i, c in necessity.items() if i in x}
        unproven = x - set(necessity)
        return x, change, necessity, unproven

    def _cxp_result(
        self, x: set[int], change: Check, necessity: dict[int, Check], unproven: set[int], timed_out: bool | None = None
    ) -> FormalExplanation:
        timed_out = self._run.timed_out if timed_out is None else timed_out
        status = (
            Status.COMPLETE if not unproven else self._early_status() if timed_out or self.stopped else Status.UNDECIDED
        )
        cert = CXpCertificate(
            self.question,
            frozenset(x),
            change.witness,
            change.path,
            {i: VerdictRecord.from_check(c) for i, c in necessity.items()},
            frozenset(unproven),
        )
        return FormalExplanation(
            "cxp", tuple(sorted(x)), status, not unproven, cert, self._run_stats(), self._elapsed()
        )


class DeletionCXp(CXpSteps):
    """Deletion-based CXp.

    Args:
        oracle: the entailment oracle.
        order: the order in which features are tried for removal from the freed set
            (see :func:`~xsnn.solvers.axp.feature_order`).
        image: raw intensities for ``"brightest"`` / ``"darkest"``.
        use_witnesses: shrink the freed set to where each witness differs from the instance.
        time_limit, call_time_limit: budgets.
    """

    def __init__(
        self,
        oracle: EntailmentOracle,
        *,
        order: Order = "index",
        image: np.ndarray | None = None,
        use_witnesses: bool = False,
        time_limit: float | None = None,
        call_time_limit: float | None = None,
    ) -> None:
        super().__init__(oracle, time_limit=time_limit, call_time_limit=call_time_limit)
        self.order = feature_order(oracle, order, image)
        self.use_witnesses = bool(use_witnesses)

    def compute(self) -> FormalExplanation:
        self._begin()
        start = self._initial_cxp_check()
        x, change, necessity, unproven = self._shrink_cxp(self.all_features, start, self.order, self.use_witnesses)
        return self._cxp_result(x, change, necessity, unproven)
