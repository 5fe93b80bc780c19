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
from collections.abc import Callable, Sequence

from .oracle import Check, EntailmentOracle, Verdict

Stage = EntailmentOracle | Callable[[], EntailmentOracle]

__all__ = ["PortfolioOracle"]


class PortfolioOracle(EntailmentOracle):
    """Exact oracles asked in turn; each but the last gets at most its budget per question.

    Args:
        stages: exact oracles for the same model, instance, features, target and distance bound.
            Every stage but the first may also be a function that builds one: it is called
            when the stage is first needed (most explanations never reach a slow last stage,
            so they do not pay for building it).
        budgets: seconds per question for each stage but the last (``len(stages) - 1`` values).
    """

    name = "portfolio"

    def __init__(self, stages: Sequence[Stage], budgets: Sequence[float]) -> None:
        stages = list(stages)
        if not stages:
            raise ValueError("a portfolio needs at least one oracle")
        if not isinstance(stages[0], EntailmentOracle):
            raise TypeError(f"the first stage must be an EntailmentOracle, got {type(stages[0]).__name__}")
        if len(budgets) != len(stages) - 1:
            raise ValueError(f"{len(stages)} stages need {len(stages) - 1} budgets, got {len(budgets)}")
        if any(b <= 0 for b in budgets):
            raise ValueError(f"budgets must be positive, got {list(budgets)}")
        first = stages[0]
        super().__init__(first.model, first.instance, first.features, first.target, first.max_distance)
        self.stages: list[Stage] = stages
        for stage in stages[1:]:
            if isinstance(stage, EntailmentOracle):
                self._check_same_question(stage)
            elif not callable(stage):
                raise TypeError(f"a stage must be an EntailmentOracle or a function building one, got {stage!r}")
        self.budgets = [float(b) for b in budgets]

    def _check_same_question(self, other: EntailmentOracle) -> None:
        if (
            other.model is not self.model
            or other.target != self.target
            or other.max_distance != self.max_distance
            or other.features.groups != self.features.groups
            or not (other.instance == self.instance).all()
        ):
            raise ValueError("every stage of a portfolio must answer the same question")

    def _stage(self, index: int) -> EntailmentOracle:
        """Stage ``index``, built now if it was given as a function."""
        stage = self.stages[index]
        if not isinstance(stage, EntailmentOracle):
            stage = stage()
            if not isinstance(stage, EntailmentOracle):
                raise TypeError(f"portfolio stage {index} built {type(stage).__name__}, not an EntailmentOracle")
            self._check_same_question(stage)
            self.stages[index] = stage
        return stage

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        deadline = None if time_limit is None else time.perf_counter() + max(float(time_limit), 0.0)
        for index, budget in enumerate(self.budgets + [None]):
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                break
            limit = budget if remaining is None else remaining if budget is None else min(budget, remaining)
            check = self._stage_or_stop(index).check(fixed, time_limit=limit)
            if check.verdict is not Verdict.UNKNOWN:
                return check
        return Check(Verdict.UNKNOWN, fixed, path=self.name)

    def _interrupt_solver(self) -> None:
        for stage in self.stages:
            if isinstance(stage, EntailmentOracle):
                stage.interrupt()

    def _stage_or_stop(self, index: int) -> EntailmentOracle:
        stage = self._stage(index)
        if self._interrupted:  # a stage built after the interrupt must not start solving
            stage.interrupt()
        return stage

    def close(self) -> None:
        for stage in self.stages:
            if isinstance(stage, EntailmentOracle):
                stage.close()
