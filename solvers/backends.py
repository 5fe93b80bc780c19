"""Which oracle answers a question: backend names, the default pipeline, the verifier's backend.

A *backend* is an exact entailment oracle (:class:`~xsnn.solvers.oracle.EntailmentOracle`)
chosen by name:

==================  ===========================================================================
``portfolio``       the default. One spiking layer and the static coding: on a sparse hidden layer
                    (weight density below :data:`DENSE_WEIGHT_DENSITY`) incremental per-rival SAT
                    (:class:`RivalSATOracle`) for at most :data:`PORTFOLIO_SAT_SECONDS` per
                    question, then CP-SAT on the rival split; on a dense one the level search
                    (:class:`LevelOracle`); both behind the sound fast paths of
                    :class:`LayeredOracle`. CP-SAT alone where neither applies (several layers,
                    non-static codings)
``levels``          the level search alone (dense one-layer networks, static coding;
                    :mod:`xsnn.solvers.levels`)
``levels-checked``  the level search whose every ENTAILED answer is re-checked from its proof by
                    CP-SAT and exact arithmetic (:mod:`xsnn.solvers.levelproof`): the verifier of
                    level-search answers, where no other backend decides them in useful time
``sat-rivals``      the per-rival SAT oracle alone (``sat-rivals:<minicard|gluecard3|gluecard4>``)
``sat``             one SAT solver on the causal-model CNF (``sat:<python-sat solver name>``)
``smt``             z3 on the causal model (``smt:lia``, ``smt:pb``)
``milp``            HiGHS on the linear formulation
``cpsat``           OR-Tools CP-SAT on the linear formulation
``ball``            enumeration of the distance ball on the packed kernel (distance-restricted
                    questions only; :mod:`xsnn.solvers.ball`); ``explain`` picks it for a
                    distance bound when :func:`~xsnn.solvers.ball.ball_choice` says the ball is small
``bruteforce``      every completion of the free features (tiny networks only; ground truth)
==================  ===========================================================================

The measurements that chose the default are in ``docs/solvers.md``, ``docs/oracles.md`` and
``docs/binary.md`` (the density rule).
"""

from __future__ import annotations

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, check_spikes

from .certificate import OracleFactory
from .layered import LayeredOracle
from .oracle import EntailmentOracle

__all__ = [
    "DEFAULT_BACKEND",
    "PORTFOLIO_SAT_SECONDS",
    "DENSE_WEIGHT_DENSITY",
    "BACKEND_NAMES",
    "exact_oracle_factory",
    "make_oracle",
    "verifier_backend",
    "weight_density",
    "uses_level_search",
    "rival_sat_stack",
]

DEFAULT_BACKEND = "portfolio"  # measured fastest on the shipped models (docs/solvers.md)
PORTFOLIO_SAT_SECONDS = 0.1  # budget of the incremental rival SAT stage per question (docs/solvers.md)
DENSE_WEIGHT_DENSITY = 0.5  # at or above: the level search answers the default's questions (docs/binary.md)
BACKEND_NAMES = (
    "portfolio",
    "levels",
    "levels-checked",
    "sat-rivals",
    "sat",
    "smt",
    "milp",
    "cpsat",
    "ball",
    "bruteforce",
)


def weight_density(model: BSNN) -> float:
    """The fraction of nonzero weights in the first spiking layer (1.0 for binary weights)."""
    return float(np.count_nonzero(model.weights[0])) / model.weights[0].size


def exact_oracle_factory(backend: str) -> OracleFactory:
    """``backend`` name -> a callable ``(model, instance, features=, target=, max_distance=) -> oracle``.

    Names: see the module docstring; ``sat:<solver>`` takes any python-sat solver name,
    ``sat-rivals:<solver>`` one with native cardinality constraints, ``smt:<lia|pb>`` a z3 variant.
    """
    kind, _, option = str(backend).partition(":")
    if kind == "sat":
        from .sat import SATOracle

        return lambda *a, **k: SATOracle(*a, **k, **({"solver": option} if option else {}))
    if kind == "smt":
        from .smt import SMTOracle

        return lambda *a, **k: SMTOracle(*a, **k, variant=option or "lia")
    if kind == "milp" and not option:
        from .milp import MILPOracle

        return MILPOracle
    if kind == "cpsat" and not option:
        from .cpsat import CPSATOracle

        return CPSATOracle
    if kind == "sat-rivals":
        from .rivalsat import RivalSATOracle

        return lambda *a, **k: RivalSATOracle(*a, **k, **({"solver": option} if option else {}))
    if kind == "portfolio" and not option:
        return _portfolio
    if kind == "levels" and not option:
        from .levels import LevelOracle

        return LevelOracle
    if kind == "levels-checked" and not option:
        from .levelproof import CheckedLevelOracle

        return CheckedLevelOracle
    if kind == "ball" and not option:
        from .ball import BallOracle

        return BallOracle
    if kind == "bruteforce" and not option:
        from .bruteforce import BruteForceOracle

        return BruteForceOracle
    raise ValueError(
        f"unknown backend {backend!r}; use portfolio, sat, sat:<python-sat solver>, sat-rivals, "
        "sat-rivals:<minicard|gluecard3|gluecard4>, smt, smt:pb, milp, cpsat, levels, levels-checked, ball "
        "or bruteforce"
    )


def _portfolio(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet | None = None,
    target: int | None = None,
    max_distance: int | None = None,
    *,
    fast_paths: bool = False,
) -> EntailmentOracle:
    """The default exact stack for one instance (module docstring): the level search on a dense
    one-layer network without a distance bound, rival SAT then CP-SAT on a sparse one, CP-SAT
    alone where neither applies; behind the fast paths if asked."""
    from .levels import level_portfolio

    if max_distance is None and uses_level_search(model, instance):
        return level_portfolio(model, instance, features, target, fast_paths=fast_paths)
    return rival_sat_stack(model, instance, features, target, max_distance, fast_paths=fast_paths)


def uses_level_search(model: BSNN, instance: np.ndarray) -> bool:
    """Whether the default stack answers a question on ``instance`` without a distance bound by
    the level search: a dense first layer (:data:`DENSE_WEIGHT_DENSITY`), one spiking layer, the
    static coding."""
    from .levels import level_search_applies

    return weight_density(model) >= DENSE_WEIGHT_DENSITY and level_search_applies(
        model, check_spikes(model, instance)[0]
    )


def rival_sat_stack(
    model: BSNN,
    instance: np.ndarray,
    features: FeatureSet | None = None,
    target: int | None = None,
    max_distance: int | None = None,
    *,
    fast_paths: bool = True,
) -> EntailmentOracle:
    """Incremental per-rival SAT within :data:`PORTFOLIO_SAT_SECONDS`, then CP-SAT (behind the
    fast paths if asked: they pay in front of the slow stage only, docs/solvers.md); CP-SAT alone
    where the rival SAT oracle does not apply (several layers, non-static codings)."""
    from .cpsat import CPSATOracle
    from .portfolio import PortfolioOracle
    from .rivalsat import RivalSATOracle, rival_sat_applies

    def slow_stage() -> EntailmentOracle:
        cpsat = CPSATOracle(model, instance, features, target, max_distance)
        return LayeredOracle(cpsat) if fast_paths else cpsat

    if not rival_sat_applies(model, check_spikes(model, instance)[0]):
        return slow_stage()
    sat = RivalSATOracle(model, instance, features, target, max_distance)
    return PortfolioOracle([sat, slow_stage], [PORTFOLIO_SAT_SECONDS])  # CP-SAT built when first needed


def verifier_backend(
    backend: str, model: BSNN | None = None, instance: np.ndarray | None = None, max_distance: int | None = None
) -> str:
    """The backend that re-checks a certificate produced by ``backend`` for ``model`` and
    ``instance``: the proof-checked level search where the level search answered (``levels``, or
    the default on a dense network without a distance bound: no other backend decides those
    claims in useful time, docs/binary.md); CP-SAT for SAT-, SMT- and ball-found claims (its rival
    split builds its terms over the distance ball, so it settles robustness claims fast); SAT (on
    the causal-model CNF) for the rest.

    (z3 was measured far slower on these queries: docs/oracles.md.)"""
    backend = str(backend)
    if backend.startswith("levels") or (
        backend == "portfolio"
        and model is not None
        and instance is not None
        and max_distance is None
        and uses_level_search(model, instance)
    ):
        return "levels-checked"
    return "cpsat" if backend.startswith(("sat", "smt", "ball")) else "sat"


def make_oracle(
    model: BSNN,
    spikes: np.ndarray,
    *,
    backend: str = DEFAULT_BACKEND,
    fast_paths: bool = True,
    features: FeatureSet | None = None,
    target: int | None = None,
    max_distance: int | None = None,
) -> EntailmentOracle:
    """An entailment oracle for one instance: the exact ``backend``, behind the fast paths if asked
    (for ``portfolio``: in front of its CP-SAT stage)."""
    if backend == "portfolio":  # the fast paths go in front of its slow stage only
        return _portfolio(model, spikes, features, target, max_distance, fast_paths=fast_paths)
    exact = exact_oracle_factory(backend)(model, spikes, features=features, target=target, max_distance=max_distance)
    return LayeredOracle(exact) if fast_paths else exact
