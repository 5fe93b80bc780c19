"""A sequential portfolio of exact oracles: ask the first within a short budget, then the next.

Measured on the shipped models (``docs/solvers.md``): the incremental per-rival SAT oracle
(:class:`~xsnn.solvers.rivalsat.RivalSATOracle`) answers most deletion questions in
milliseconds (its learnt clauses carry over from question to question) but a few take
seconds, while CP-SAT on the one-sided rival split takes a steady fraction of a second. Asking
SAT first with a small budget and CP-SAT after it keeps the fast answers and caps the slow ones.
Every stage is exact, so the verdict never depends on which stage answered.
"""
from __future__ import annotations

import time
from typing import Sequence

from .oracle import Check, EntailmentOracle, Verdict

__all__ = ["PortfolioOracle"]


class PortfolioOracle(EntailmentOracle):
    """Exact oracles asked in turn; each but the last gets at most its budget per question.

    Args:
        stages: exact oracles for the same model, instance, features, target and distance bound.
        budgets: seconds per question for each stage but the last (``len(stages) - 1`` values).
    """

    name = "portfolio"

    def __init__(self, stages: Sequence[EntailmentOracle], budgets: Sequence[float]) -> None:
        stages = list(stages)
        if not stages:
            raise ValueError("a portfolio needs at least one oracle")
        if len(budgets) != len(stages) - 1:
            raise ValueError(f"{len(stages)} stages need {len(stages) - 1} budgets, got {len(budgets)}")
        if any(b <= 0 for b in budgets):
            raise ValueError(f"budgets must be positive, got {list(budgets)}")
        first = stages[0]
        for other in stages[1:]:
            if (other.model is not first.model or other.target != first.target
                    or other.max_distance != first.max_distance
                    or other.features.groups != first.features.groups
                    or not (other.instance == first.instance).all()):
                raise ValueError("every stage of a portfolio must answer the same question")
        super().__init__(first.model, first.instance, first.features, first.target, first.max_distance)
        self.stages = stages
        self.budgets = [float(b) for b in budgets]
        self.name = "+".join(s.name for s in stages)

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        for stage, budget in zip(self.stages, self.budgets + [None]):
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                break
            limit = budget if remaining is None else remaining if budget is None else min(budget, remaining)
            check = stage.check(fixed, time_limit=limit)
            if check.verdict is not Verdict.UNKNOWN:
                return check
        return Check(Verdict.UNKNOWN, fixed, backend=self.name)

    def close(self) -> None:
        for stage in self.stages:
            stage.close()
