"""Exact entailment by mixed-integer linear programming (HiGHS) over the linear formulation.

The formulation (variables, constraints, interval bounds, big-M rows) is that of
:mod:`xsnn.encoders.linear`; it is feasible iff the answer is NOT_ENTAILED.

Floating point: HiGHS solves in doubles with tolerances. All data are small integers
(|coefficients| <= max(theta, n_inputs * T)), the feasibility and integrality
tolerances are set to 1e-9, and the strict inequalities are written with a margin of
one (``V <= theta - 1``), so a solution within tolerance rounds to an exact one. A
NOT_ENTAILED answer is checked anyway: its witness is rebuilt from the rounded input
binaries and re-run through the reference forward by the base class (a mismatch raises
:class:`~xsnn.solvers.oracle.WitnessError`). An ENTAILED answer ("infeasible") has no
such certificate: a wrong pruning inside the solver's tolerances is the residual risk;
use :class:`xsnn.solvers.cpsat.CPSATOracle` (exact integer arithmetic) or a SAT oracle
where a certified answer is needed.
"""

from __future__ import annotations

import logging

import numpy as np

from xsnn.encoders.linear import (
    Formulation,
    LinearRow,
    big_m_rows,
    build_formulation,
    disconnected_features,
    instance_selectors,
)
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .oracle import Check, EntailmentOracle, Verdict

__all__ = ["MILPOracle", "ENGINES"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- HiGHS

ENGINES = ("scipy", "highspy")


def _matrix(form: Formulation) -> tuple[list[LinearRow], np.ndarray, np.ndarray, np.ndarray]:
    """All rows (plain and big-M) and the row-wise (CSR) arrays ``start, index, value``."""
    rows = form.rows + big_m_rows(form)
    lengths = np.array([len(r.cols) for r in rows], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    empty = np.zeros(0, np.int64)
    index = np.concatenate([r.cols for r in rows] or [empty]).astype(np.int32)
    value = np.concatenate([r.coefs for r in rows] or [empty]).astype(np.float64)
    return rows, start, index, value


class _ScipyEngine:
    """HiGHS as bundled in scipy (``scipy.optimize.milp``): one fresh solve per formulation.

    scipy passes options it does not list (the tolerances, ``threads``) to HiGHS verbatim,
    with a RuntimeWarning that is silenced here.
    """

    def __init__(self, tolerance: float, threads: int) -> None:
        from scipy.optimize import milp  # imported here so that the first check is not charged for it

        self.milp = milp
        self.options = {
            "mip_feasibility_tolerance": tolerance,
            "primal_feasibility_tolerance": tolerance,
            "mip_rel_gap": 0.0,
            "threads": threads,
            "random_seed": 0,
            "presolve": True,
        }

    def solve(self, form: Formulation, time_limit: float | None) -> tuple[Verdict, np.ndarray | None]:
        import warnings

        from scipy.optimize import Bounds, LinearConstraint
        from scipy.sparse import csr_matrix

        milp = self.milp
        rows, start, index, value = _matrix(form)
        options = dict(self.options)
        if time_limit is not None:
            options["time_limit"] = max(float(time_limit), 0.0)
        matrix = csr_matrix((value, index, start), shape=(len(rows), form.n_cols))
        constraints = LinearConstraint(matrix, [r.lower for r in rows], [r.upper for r in rows]) if rows else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unrecognized options detected", category=RuntimeWarning)
            res = milp(
                np.zeros(form.n_cols),
                integrality=np.ones(form.n_cols),
                bounds=Bounds(form.lower.astype(np.float64), form.upper.astype(np.float64)),
                constraints=constraints,
                options=options,
            )
        if res.status == 0:
            return Verdict.NOT_ENTAILED, np.asarray(res.x)
        if res.status == 2:
            return Verdict.ENTAILED, None
        if res.status != 1:  # 1: time or node limit; anything else is unexpected
            log.warning("scipy milp ended with status %s (%s); answering UNKNOWN", res.status, res.message)
        return Verdict.UNKNOWN, None


class _HighspyEngine:
    """HiGHS through the ``highspy`` package: one model loaded per formulation.

    ``highspy`` and OR-Tools each ship a ``libhighs.so.1``; the dynamic loader keeps only the
    first one loaded, so this engine and :mod:`xsnn.solvers.cpsat` cannot share a process.
    """

    def __init__(self, tolerance: float, threads: int) -> None:
        try:
            import highspy
        except ImportError as exc:
            raise ImportError(
                f"the 'highspy' MILP engine cannot be loaded ({exc}); if OR-Tools is loaded in this "
                "process, use engine='scipy'"
            ) from None
        self.hs = highspy
        self.h = highspy.Highs()
        for option, value in (
            ("output_flag", False),
            ("threads", int(threads)),
            ("random_seed", 0),
            ("mip_feasibility_tolerance", float(tolerance)),
            ("primal_feasibility_tolerance", float(tolerance)),
            ("mip_rel_gap", 0.0),
        ):
            if self.h.setOptionValue(option, value) != highspy.HighsStatus.kOk:
                raise ValueError(f"HiGHS refused option {option}={value!r}")

    def load(self, form: Formulation) -> None:
        hs = self.hs
        rows, start, index, value = _matrix(form)
        lp = hs.HighsLp()
        lp.num_col_ = form.n_cols
        lp.num_row_ = len(rows)
        lp.col_cost_ = np.zeros(form.n_cols)
        lp.col_lower_ = form.lower.astype(np.float64)
        lp.col_upper_ = form.upper.astype(np.float64)
        lp.row_lower_ = np.array([r.lower for r in rows], dtype=np.float64)
        lp.row_upper_ = np.array([r.upper for r in rows], dtype=np.float64)
        lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = form.n_cols
        lp.a_matrix_.num_row_ = len(rows)
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = index
        lp.a_matrix_.value_ = value
        lp.integrality_ = [hs.HighsVarType.kInteger] * form.n_cols
        if self.h.passModel(lp) == hs.HighsStatus.kError:
            raise RuntimeError("HiGHS rejected the model (a bug in the formulation)")

    def solve(self, time_limit: float | None) -> tuple[Verdict, np.ndarray | None]:
        h, hs = self.h, self.hs
        # HiGHS 1.15 restarts its run clock at every run(), so the limit is per call.
        h.setOptionValue("time_limit", float("inf") if time_limit is None else max(float(time_limit), 0.0))
        h.run()
        status = h.getModelStatus()
        if status == hs.HighsModelStatus.kOptimal:
            return Verdict.NOT_ENTAILED, np.asarray(h.getSolution().col_value)
        # With a zero objective the problem cannot be unbounded: "unbounded or infeasible" is infeasible.
        if status in (hs.HighsModelStatus.kInfeasible, hs.HighsModelStatus.kUnboundedOrInfeasible):
            return Verdict.ENTAILED, None
        if status not in (
            hs.HighsModelStatus.kTimeLimit,
            hs.HighsModelStatus.kInterrupt,
            hs.HighsModelStatus.kIterationLimit,
            hs.HighsModelStatus.kSolutionLimit,
        ):
            log.warning("HiGHS ended with status %s; answering UNKNOWN", h.modelStatusToString(status))
        return Verdict.UNKNOWN, None

    def close(self) -> None:
        self.h.clear()


class MILPOracle(EntailmentOracle):
    """Exact entailment oracle on HiGHS (branch and bound over the formulation above).

    Args:
        model, instance, features, target, max_distance: as for every
            :class:`~xsnn.solvers.oracle.EntailmentOracle`.
        engine: ``"scipy"`` (default): the HiGHS inside scipy (``scipy.optimize.milp``), which can
            share a process with OR-Tools; ``"highspy"``: the ``highspy`` package (cannot be loaded
            together with OR-Tools, see :class:`_HighspyEngine`).
        tolerance: HiGHS primal/MIP feasibility tolerance (the data are integers; keep it tiny).
        threads: HiGHS threads (1: benchmarks are per core).

    Each check builds the formulation for its fixed set (fixed pixels become constants; bounds
    and big-M values are tight for that set). A mode that loaded the all-free formulation once and
    changed column bounds per check was measured slower in total (102 s against 77 s over 24 queries,
    faster on some models and slower on others; ``docs/oracles.md``), needed ``highspy`` (which cannot
    share a process with OR-Tools) and was removed.

    Cores: an ENTAILED check returns ``core = fixed`` minus the features that are disconnected
    from the network (:func:`disconnected_features`; zero weights, common in ternary models).
    """

    name = "milp:highs"

    def __init__(
        self,
        model: BSNN,
        instance: np.ndarray,
        features: FeatureSet | None = None,
        target: int | None = None,
        max_distance: int | None = None,
        *,
        engine: str = "scipy",
        tolerance: float = 1e-9,
        threads: int = 1,
    ) -> None:
        super().__init__(model, instance, features, target, max_distance)
        if engine not in ENGINES:
            raise ValueError(f"unknown MILP engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if not 0 < tolerance <= 1e-6:
            raise ValueError(f"tolerance must be in (0, 1e-6], got {tolerance}")
        instance_selectors(model, self.instance)  # fails early with a clear error
        self.engine = engine
        self._disconnected = disconnected_features(model, self.features)
        self._engine = (_HighspyEngine if engine == "highspy" else _ScipyEngine)(tolerance, int(threads))

    def _check(self, fixed: frozenset[int], time_limit: float | None) -> Check:
        if self._engine is None:
            raise ValueError("this MILPOracle was closed")
        form = build_formulation(self.model, self.instance, self.features, fixed, self.target, self.max_distance)
        if form.no_rival:
            return Check(Verdict.ENTAILED, fixed, core=fixed - self._disconnected, path=self.name)
        if self.engine == "highspy":
            self._engine.load(form)
            verdict, values = self._engine.solve(time_limit)
        else:
            verdict, values = self._engine.solve(form, time_limit)
        if verdict is Verdict.NOT_ENTAILED:
            return Check(verdict, fixed, witness=form.witness(self.instance, values), path=self.name)
        if verdict is Verdict.ENTAILED:
            return Check(verdict, fixed, core=fixed - self._disconnected, path=self.name)
        return Check(verdict, fixed, path=self.name)

    def close(self) -> None:
        if self._engine is not None:
            if isinstance(self._engine, _HighspyEngine):
                self._engine.close()
            self._engine = None
