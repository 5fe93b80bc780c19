"""Minimum-size AXps by implicit hitting sets over CXps (MHS duality).

Every AXp hits every (weak) CXp, and a set that hits every CXp is sufficient. So with ``K``
a collection of weak CXps, a minimum hitting set ``H`` of ``K`` is a lower bound on the size of
every AXp, and if ``H`` is sufficient it is a minimum AXp (Ignatiev et al., AAAI 2019)::

    K = {}
    loop:
        H = minimum hitting set of K            (pysat Hitman over RC2 MaxSAT)
        if fixing H entails the target: return H
        else the witness w changes only features outside H: D(w) = {g : w differs on g}
             is a weak CXp disjoint from H; shrink it to a CXp C and add C to K

Every witness seen on the way (e.g. in the optional initial deletion AXp) adds its ``D(w)``
to ``K`` for free. After a minimum AXp is found, blocking it (no superset) and continuing
enumerates all AXps in non-decreasing size (:meth:`MinimumAXp.enumerate`).

Certificates: the ENTAILED verdict on ``H``; for each ``i`` in ``H`` the witness of a CXp
``C`` with ``C ∩ H = {i}`` (it exists because ``H \\ {i}``, being smaller, is no hitting set),
which agrees with the instance on ``H \\ {i}``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pysat.examples.hitman import Hitman

from .axp import Order, feature_order
from .cxp import CXpSteps
from .oracle import EntailmentOracle, Verdict
from .result import FormalExplanation, MinimumResult, Status

__all__ = ["MinimumAXp"]


class MinimumAXp(CXpSteps):
    """Minimum-size AXp (and all AXps by size) via implicit hitting sets.

    Args:
        oracle: the entailment oracle.
        upper_bound: first compute a deletion AXp: the answer on timeout, and its witnesses
            seed the hitting-set constraints.
        minimise_cxps: shrink each new weak CXp to a subset-minimal one (stronger constraints,
            more oracle calls).
        order, image: feature order for the deletion and CXp shrinking steps.
        solver: SAT solver name for the MaxSAT hitting-set oracle.
        time_limit, call_time_limit: budgets.
    """

    def __init__(
        self,
        oracle: EntailmentOracle,
        *,
        upper_bound: bool = True,
        minimise_cxps: bool = True,
        order: Order = "index",
        image: np.ndarray | None = None,
        solver: str = "g3",
        time_limit: float | None = None,
        call_time_limit: float | None = None,
    ) -> None:
        super().__init__(oracle, time_limit=time_limit, call_time_limit=call_time_limit)
        self.upper_bound = bool(upper_bound)
        self.minimise_cxps = bool(minimise_cxps)
        self.order = feature_order(oracle, order, image)
        self.solver = solver
        self._outcome: dict = {}

    def compute(self) -> MinimumResult:
        """The minimum AXp (status complete) or, on timeout, the smallest sufficient set found."""
        search = self._search(stop_after_first=True)
        try:
            first = next(search, None)
        finally:
            search.close()  # runs the search's clean-up (frees the hitting-set solver)
        out = self._outcome
        if first is not None:
            return MinimumResult(first, len(first), Status.COMPLETE, out["n_cxps"], first.stats, self._elapsed())
        return MinimumResult(
            out["best"], out["lower_bound"], out["status"], out["n_cxps"], self._run_stats(), self._elapsed()
        )

    def enumerate(self) -> Iterator[FormalExplanation]:
        """Every AXp, in non-decreasing size; ``self.status`` tells how the enumeration ended."""
        yield from self._search(stop_after_first=False)

    @property
    def status(self) -> Status | None:
        """How the last search ended (``None`` while none has ended)."""
        return self._outcome.get("status")

    def _search(self, stop_after_first: bool) -> Iterator[FormalExplanation]:
        self._begin()
        self._outcome = {"n_cxps": 0, "lower_bound": 0, "status": None, "best": None}
        start = self._initial_axp_check()
        everything = set(self.all_features)
        best = self._axp_result(everything, start, {}, everything)
        hitman = Hitman(htype="sorted", solver=self.solver)
        known: set[frozenset[int]] = set()

        def constrain(cxp: frozenset[int]) -> None:
            if cxp not in known:
                known.add(cxp)
                hitman.hit(sorted(cxp))
                self._outcome["n_cxps"] = len(known)

        status = Status.COMPLETE
        try:
            if self.upper_bound:
                s, sufficiency, witnesses, unproven = self._deletion(start, self.order, use_cores=True)
                best = self._axp_result(s, sufficiency, witnesses, unproven)
            for w in self._store.recent():
                constrain(self._differing(w))
            while True:
                if self._expired():
                    status = self._early_status()
                    break
                hs = hitman.get()
                if hs is None:  # every AXp has been found (enumeration) -- or none exists
                    break
                self._outcome["lower_bound"] = len(hs)
                check = self._ask(hs)
                if check.verdict is Verdict.ENTAILED:
                    s, sufficiency, witnesses, unproven = self._certify_axp(set(hs), self.order, check)
                    found = self._axp_result(s, sufficiency, witnesses, unproven)
                    best = found
                    yield found
                    if stop_after_first:
                        status = Status.COMPLETE
                        return
                    hitman.block(sorted(s))
                elif check.verdict is Verdict.NOT_ENTAILED:
                    weak = self._differing(check.witness)
                    if self.minimise_cxps:
                        x, _, _, _ = self._shrink_cxp(weak, check, self.order, use_witnesses=True)
                        constrain(frozenset(x))
                    else:
                        constrain(weak)
                    if self._run.timed_out:
                        status = self._early_status()
                        break
                else:
                    status = Status.UNDECIDED
                    break
        finally:
            hitman.delete()
            self._outcome["status"] = status
            if best is not None and (self._outcome["best"] is None or len(best) <= len(self._outcome["best"])):
                self._outcome["best"] = best
