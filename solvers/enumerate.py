"""Enumeration of AXps and CXps (MARCO-style), feature relevance, formal feature attribution.

**Enumeration** (Liffiton et al.'s MARCO, as used for AXps/CXps by Ignatiev et al.). A SAT
"map" solver over one Boolean ``p_i`` per feature ("feature i fixed") holds what is known::

    loop:
        seed S = a model of the map (phase preference: fixed first for AXps, free first for CXps)
        if S is sufficient: shrink S to an AXp A (deletion);  block its supersets: OR_{a in A} -p_a
        else (witness w):   shrink F \\ S to a CXp C (deletion, witness-guided);
                            every later seed must hit C:  OR_{c in C} p_c

A new seed satisfies every blocking clause, so each shrink yields a new AXp (``A ⊆ S`` and ``S``
contains no earlier AXp) or a new CXp (``C ∩ S = ∅`` and ``S`` hits every earlier CXp). When the
map is unsatisfiable, every AXp and every CXp has been found (MHS duality). Each item is
yielded as soon as it is found (anytime).

**Relevance**: feature ``t`` is in some AXp iff some ``S ⊆ F \\ {t}`` is insufficient while
``S ∪ {t}`` is sufficient (then shrinking ``S ∪ {t}`` keeps ``t``). MARCO over ``F \\ {t}`` searches
for such an ``S``: sufficient seeds are shrunk to AXps without ``t`` and blocked upwards;
seeds with ``S ∪ {t}`` insufficient yield a CXp avoiding ``t`` that later seeds must hit. An
exhausted map proves ``t`` irrelevant (in no AXp).

**Formal feature attribution** (Yu, Ignatiev, Stuckey): ``FFA(i) = |{AXps containing i}| / |AXps|``,
computed anytime from the enumeration; the result says how many AXps it rests on and whether
the enumeration completed (then it is exact).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
from pysat.solvers import Solver

from .axp import Order, feature_order
from .cxp import CXpSteps
from .oracle import EntailmentOracle, Verdict
from .result import AttributionResult, EnumerationResult, FormalExplanation, RelevanceAnswer, RelevanceResult, Status

__all__ = ["Enumerator", "Relevance", "FeatureAttribution"]

_PREFER = ("axp", "cxp")


class _MapSolver:
    """The MARCO map: a SAT solver over one variable per feature (``p_i`` is variable ``i + 1``)."""

    def __init__(self, n: int, solver: str, prefer_fixed: bool, exclude: int | None = None) -> None:
        self.n = n
        self.exclude = exclude
        self.sat = Solver(name=solver)
        for v in range(1, n + 1):
            self.sat.add_clause([v, -v])  # registers every variable
        self.sat.set_phases([v if prefer_fixed else -v for v in range(1, n + 1)])
        self.empty = False

    def seed(self) -> frozenset[int] | None:
        if self.empty:
            return None
        assumptions = [] if self.exclude is None else [-(self.exclude + 1)]
        if not self.sat.solve(assumptions=assumptions):
            return None
        model = self.sat.get_model()
        return frozenset(v - 1 for v in model if 0 < v <= self.n)

    def block_up(self, axp: frozenset[int]) -> None:
        """No later seed contains ``axp``."""
        if not axp:
            self.empty = True
        else:
            self.sat.add_clause([-(i + 1) for i in sorted(axp)])

    def must_hit(self, cxp: frozenset[int]) -> None:
        """Every later seed contains a feature of ``cxp``."""
        if not cxp:
            self.empty = True
        else:
            self.sat.add_clause([i + 1 for i in sorted(cxp)])

    def block_exactly(self, seed: frozenset[int]) -> None:
        clause = [-(i + 1) if i in seed else i + 1 for i in range(self.n) if i != self.exclude]
        if clause:
            self.sat.add_clause(clause)
        else:
            self.empty = True

    def delete(self) -> None:
        self.sat.delete()


class Enumerator(CXpSteps):
    """Anytime enumeration of all AXps and CXps.

    Args:
        oracle: the entailment oracle.
        prefer: ``"axp"`` (seeds fix as much as possible: AXps come first) or ``"cxp"``.
        max_axps, max_cxps: stop (status ``limit``) once this many of either kind were found.
        order, image: feature order of the shrinking steps.
        use_cores: use ENTAILED cores when shrinking AXps (faster with SAT; any setting is sound).
        solver: SAT solver name of the map.
        time_limit, call_time_limit: budgets.

    After :meth:`enumerate` ends, :attr:`status` says how (complete, timeout, limit, undecided).
    """

    def __init__(
        self,
        oracle: EntailmentOracle,
        *,
        prefer: str = "axp",
        max_axps: int | None = None,
        max_cxps: int | None = None,
        order: Order = "index",
        image: np.ndarray | None = None,
        use_cores: bool = True,
        solver: str = "g3",
        time_limit: float | None = None,
        call_time_limit: float | None = None,
    ) -> None:
        super().__init__(oracle, time_limit=time_limit, call_time_limit=call_time_limit)
        if prefer not in _PREFER:
            raise ValueError(f"prefer must be one of {_PREFER}, got {prefer!r}")
        for name, value in (("max_axps", max_axps), ("max_cxps", max_cxps)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        self.prefer = prefer
        self.max_axps = max_axps
        self.max_cxps = max_cxps
        self.order = feature_order(oracle, order, image)
        self.use_cores = bool(use_cores)
        self.solver = solver
        self.status: Status | None = None

    def compute(self) -> EnumerationResult:
        axps, cxps = [], []
        for item in self.enumerate():
            (axps if item.kind == "axp" else cxps).append(item)
        return EnumerationResult(tuple(axps), tuple(cxps), self.status, self._run_stats(), self._elapsed())

    def enumerate(self) -> Iterator[FormalExplanation]:
        """Yield AXps and CXps as they are found (``.kind`` tells which)."""
        self._begin()
        self.status = None
        n_axps = n_cxps = 0
        exhaustive = True
        status = Status.COMPLETE
        marco = _MapSolver(len(self.all_features), self.solver, prefer_fixed=self.prefer == "axp")
        try:
            while True:
                if (
                    self.max_axps is not None
                    and n_axps >= self.max_axps
                    or self.max_cxps is not None
                    and n_cxps >= self.max_cxps
                ):
                    status = Status.LIMIT
                    break
                if self._expired():
                    status = self._early_status()
                    break
                seed = marco.seed()
                if seed is None:
                    status = Status.COMPLETE if exhaustive else Status.UNDECIDED
                    break
                check = self._ask(seed)
                if check.verdict is Verdict.ENTAILED:
                    s, sufficiency, witnesses, unproven = self._deletion(check, self.order, self.use_cores)
                    item = self._axp_result(s, sufficiency, witnesses, unproven)
                    marco.block_up(frozenset(s))
                    n_axps += 1
                elif check.verdict is Verdict.NOT_ENTAILED:
                    x, change, necessity, unproven = self._shrink_cxp(
                        self.all_features - seed, check, self.order, use_witnesses=True
                    )
                    item = self._cxp_result(x, change, necessity, unproven)
                    marco.must_hit(frozenset(x))
                    n_cxps += 1
                else:
                    exhaustive = False
                    marco.block_exactly(seed)
                    continue
                if unproven:
                    exhaustive = False
                yield item
                if self._run.timed_out:
                    status = self._early_status()
                    break
        finally:
            marco.delete()
            self.status = status


class Relevance(CXpSteps):
    """Is a feature in some AXp? (see the module docstring).

    Args:
        oracle: the entailment oracle.
        order, image: feature order of the shrinking steps.
        solver: SAT solver name of the map.
        time_limit, call_time_limit: budgets (per :meth:`compute`).
    """

    def __init__(
        self,
        oracle: EntailmentOracle,
        *,
        order: Order = "index",
        image: np.ndarray | None = None,
        solver: str = "g3",
        time_limit: float | None = None,
        call_time_limit: float | None = None,
    ) -> None:
        super().__init__(oracle, time_limit=time_limit, call_time_limit=call_time_limit)
        self.order = feature_order(oracle, order, image)
        self.solver = solver

    def compute(self, feature: int) -> RelevanceResult:
        t = int(feature)
        if t not in self.all_features:
            raise ValueError(f"unknown feature {feature!r}; there are {len(self.all_features)} features")
        self._begin()
        self._initial_axp_check()
        exhaustive = True
        marco = _MapSolver(len(self.all_features), self.solver, prefer_fixed=True, exclude=t)
        try:
            while True:
                if self._expired():
                    return self._relevance(t, RelevanceAnswer.UNKNOWN, None, self._early_status())
                seed = marco.seed()
                if seed is None:
                    if exhaustive:
                        return self._relevance(t, RelevanceAnswer.IRRELEVANT, None, Status.COMPLETE)
                    return self._relevance(t, RelevanceAnswer.UNKNOWN, None, Status.UNDECIDED)
                without = self._ask(seed)
                if without.verdict is Verdict.ENTAILED:
                    s, _, _, unproven = self._deletion(without, self.order, use_cores=True)
                    marco.block_up(frozenset(s))
                    continue
                if without.verdict is Verdict.UNKNOWN:
                    exhaustive = False
                    marco.block_exactly(seed)
                    continue
                with_t = self._ask(seed | {t})
                if with_t.verdict is Verdict.ENTAILED:
                    # t is necessary in seed ∪ {t}: the witness for seed refutes every subset without t
                    s, sufficiency, witnesses, unproven = self._deletion(
                        with_t, self.order, use_cores=True, known={t: without.witness}
                    )
                    axp = self._axp_result(s, sufficiency, witnesses, unproven)
                    return self._relevance(t, RelevanceAnswer.RELEVANT, axp, axp.status)
                if with_t.verdict is Verdict.NOT_ENTAILED:
                    x, _, _, _ = self._shrink_cxp(
                        self.all_features - seed - {t}, with_t, self.order, use_witnesses=True
                    )
                    marco.must_hit(frozenset(x))
                    continue
                exhaustive = False
                marco.block_exactly(seed)
        finally:
            marco.delete()

    def _relevance(
        self, t: int, answer: RelevanceAnswer, axp: FormalExplanation | None, status: Status
    ) -> RelevanceResult:
        return RelevanceResult(t, answer, axp, status, self._run_stats(), self._elapsed())


class FeatureAttribution:
    """Formal feature attribution, anytime, from AXp enumeration.

    Args:
        oracle: the entailment oracle.
        max_axps: stop after this many AXps (status ``limit``).
        order, image, use_cores, solver: passed to the :class:`Enumerator`.
        time_limit, call_time_limit: budgets.
    """

    def __init__(
        self,
        oracle: EntailmentOracle,
        *,
        max_axps: int | None = None,
        order: Order = "index",
        image: np.ndarray | None = None,
        use_cores: bool = True,
        solver: str = "g3",
        time_limit: float | None = None,
        call_time_limit: float | None = None,
    ) -> None:
        self.enumerator = Enumerator(
            oracle,
            prefer="axp",
            max_axps=max_axps,
            order=order,
            image=image,
            use_cores=use_cores,
            solver=solver,
            time_limit=time_limit,
            call_time_limit=call_time_limit,
        )
        self.oracle = oracle

    @property
    def stats(self) -> dict:
        return self.enumerator.stats

    def enumerate(self) -> Iterator[AttributionResult]:
        """A snapshot (status ``running``) after each new AXp, then the final result."""
        n = len(self.enumerator.all_features)
        counts = np.zeros(n, np.int64)
        axps: list[tuple[int, ...]] = []
        start = time.perf_counter()
        for item in self.enumerator.enumerate():
            if item.kind != "axp":
                continue
            axps.append(item.features)
            counts[list(item.features)] += 1
            yield self._snapshot(counts, axps, Status.RUNNING, start)
        yield self._snapshot(counts, axps, self.enumerator.status, start)

    def compute(self) -> AttributionResult:
        result = None
        for snapshot in self.enumerate():
            result = snapshot
        return result

    def _snapshot(
        self, counts: np.ndarray, axps: list[tuple[int, ...]], status: Status, start: float
    ) -> AttributionResult:
        total = len(axps)
        scores = counts / total if total else np.zeros(len(counts))
        return AttributionResult(
            scores.astype(np.float64),
            counts.copy(),
            total,
            status,
            tuple(axps),
            self.enumerator._run_stats(),
            time.perf_counter() - start,
        )

    def close(self) -> None:
        self.oracle.close()

    def __enter__(self) -> FeatureAttribution:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
