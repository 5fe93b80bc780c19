"""Public explain-prediction API: one call from an image to a certified abductive explanation.

``explain(model, image)`` builds an entailment oracle for the model's prediction ``c`` on the
image (an exact backend, by default behind the sound fast paths of
:class:`~xsnn.solvers.layered.LayeredOracle`), runs an AXp algorithm and returns an
:class:`Explanation`: a subset-minimal set ``S`` of features (pixels by default) such that every
input agreeing with the image on ``S`` is predicted ``c``, with the certificate that proves it.

Following shap's ``Explanation``, the result holds parallel arrays — ``data`` (the image),
``mask`` (one Boolean per feature), ``features`` (indices) — plus ``prediction``, ``status``,
``stats`` and ``proof`` (the certificate).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from xsnn.features import FeatureSet
from xsnn.model import BSNN, check_spikes, forward
from xsnn.solvers.axp import DeletionAXp, ProgressionAXp, QuickXplainAXp
from xsnn.solvers.certificate import AXpCertificate, VerificationReport, verify as verify_certificate
from xsnn.solvers.layered import LayeredOracle
from xsnn.solvers.oracle import EntailmentOracle

__all__ = ["Explanation", "explain", "make_oracle", "exact_oracle_factory", "ALGORITHMS", "DEFAULT_BACKEND"]

log = logging.getLogger(__name__)

ALGORITHMS = {"deletion": DeletionAXp, "quickxplain": QuickXplainAXp, "progression": ProgressionAXp}
DEFAULT_BACKEND = "portfolio"  # measured fastest on the shipped models (docs/solvers.md, docs/benchmark-explain.md)
_ORDER_ALIASES = {"bright-first": "darkest", "dark-first": "brightest"}


def exact_oracle_factory(backend: str):
    """``backend`` name -> a callable ``(model, instance, features=, target=, max_distance=) -> oracle``.

    Names: ``sat`` (python-sat, CaDiCaL), ``sat:<solver>`` (any python-sat solver name),
    ``smt`` / ``smt:lia`` / ``smt:pb`` (z3), ``milp`` (HiGHS), ``cpsat`` (OR-Tools),
    ``bruteforce`` (tiny networks only).
    """
    kind, _, option = backend.partition(":")
    if kind == "sat":
        from xsnn.solvers.sat import SATOracle

        return lambda *a, **k: SATOracle(*a, **k, **({"solver": option} if option else {}))
    if kind == "smt":
        from xsnn.solvers.smt import SMTOracle

        return lambda *a, **k: SMTOracle(*a, **k, variant=option or "lia")
    if kind == "milp" and not option:
        from xsnn.solvers.milp import MILPOracle

        return MILPOracle
    if kind == "cpsat" and not option:
        from xsnn.solvers.cpsat import CPSATOracle

        return CPSATOracle
    if kind == "sat-rivals":
        from xsnn.solvers.rivalsat import RivalSATOracle

        return lambda *a, **k: RivalSATOracle(*a, **k, **({"solver": option} if option else {}))
    if kind == "portfolio" and not option:
        return _portfolio
    if kind == "bruteforce" and not option:
        from xsnn.solvers.bruteforce import BruteForceOracle

        return BruteForceOracle
    raise ValueError(f"unknown backend {backend!r}; use portfolio, sat, sat:<python-sat solver>, sat-rivals, "
                     "sat-rivals:<minicard|gluecard3|gluecard4>, smt, smt:pb, milp, cpsat or bruteforce")


PORTFOLIO_SAT_SECONDS = 0.1  # budget of the incremental rival SAT stage per question (docs/solvers.md)


def _portfolio(model: BSNN, instance: np.ndarray, features: FeatureSet | None = None, target: int | None = None,
               max_distance: int | None = None, *, fast_paths: bool = False) -> EntailmentOracle:
    """Incremental per-rival SAT within :data:`PORTFOLIO_SAT_SECONDS`, then CP-SAT (behind the
    fast paths if asked: they pay in front of the slow stage only, docs/solvers.md); CP-SAT alone
    where the rival SAT oracle does not apply (several layers, non-static codings)."""
    from xsnn.solvers.cpsat import CPSATOracle
    from xsnn.solvers.portfolio import PortfolioOracle
    from xsnn.solvers.rivalsat import RivalSATOracle, rival_sat_applies

    def slow_stage() -> EntailmentOracle:
        cpsat = CPSATOracle(model, instance, features, target, max_distance)
        return LayeredOracle(cpsat) if fast_paths else cpsat

    if not rival_sat_applies(model, check_spikes(model, instance)[0]):
        return slow_stage()
    sat = RivalSATOracle(model, instance, features, target, max_distance)
    return PortfolioOracle([sat, slow_stage], [PORTFOLIO_SAT_SECONDS])  # CP-SAT built when first needed


def _other_backend(backend: str) -> str:
    """The verifier for a certificate: CP-SAT re-checks SAT- and SMT-found claims, SAT re-checks the rest.

    (z3 was measured far slower on these queries: docs/oracles.md.)"""
    return "cpsat" if backend.startswith(("sat", "smt")) else "sat"


def make_oracle(model: BSNN, spikes: np.ndarray, *, backend: str = DEFAULT_BACKEND, fast_paths: bool = True,
                features: FeatureSet | None = None, target: int | None = None,
                max_distance: int | None = None) -> EntailmentOracle:
    """An entailment oracle for one instance: the exact ``backend``, behind the fast paths if asked
    (for ``portfolio``: in front of its CP-SAT stage)."""
    if backend == "portfolio":  # the fast paths go in front of its slow stage only
        return _portfolio(model, spikes, features, target, max_distance, fast_paths=fast_paths)
    exact = exact_oracle_factory(backend)(model, spikes, features=features, target=target, max_distance=max_distance)
    return LayeredOracle(exact) if fast_paths else exact


@dataclass(frozen=True, eq=False)
class Explanation:
    """A certified abductive explanation of one prediction (shap-style parallel arrays).

    Attributes:
        data: the explained image (raw intensities, ``input_shape``), or ``None`` if spikes were given.
        spikes: the instance's input spikes ``(T, n_inputs)``.
        mask: ``(n_features,)`` bool, True for features in the explanation.
        features: sorted indices of the explanation's features.
        feature_names: names of all features.
        prediction: the explained class index; ``prediction_label`` its label.
        status: ``complete`` (proven subset-minimal) or ``timeout`` / ``undecided`` (sufficient,
            minimality not fully proven).
        minimal: every feature's necessity is proven by a witness in ``proof``.
        stats: oracle calls and seconds by answering path (cache, bounds, attack, exact backend).
        proof: the :class:`~xsnn.solvers.certificate.AXpCertificate`.
        verification: the independent re-check, when asked for.
        settings: algorithm, order, backend, fast paths, distance bound.
        seconds: wall time.
    """

    data: np.ndarray | None
    spikes: np.ndarray
    mask: np.ndarray
    features: tuple[int, ...]
    feature_names: tuple[str, ...]
    pixel_groups: tuple[tuple[int, ...], ...]
    input_shape: tuple[int, ...]
    prediction: int
    prediction_label: int
    status: str
    minimal: bool
    stats: dict
    proof: AXpCertificate
    verification: VerificationReport | None
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return len(self.features)

    @property
    def pixel_mask(self) -> np.ndarray:
        """Bool array of ``input_shape``: pixels that belong to the explanation's features."""
        flat = np.zeros(int(np.prod(self.input_shape)), bool)
        for k in self.features:
            flat[list(self.pixel_groups[k])] = True
        return flat.reshape(self.input_shape)

    def to_dict(self) -> dict:
        out = {
            "prediction": self.prediction_label, "prediction_index": self.prediction, "status": self.status,
            "minimal": self.minimal, "size": self.size, "features": list(self.features),
            "feature_names": [self.feature_names[k] for k in self.features], "settings": self.settings,
            "seconds": round(self.seconds, 4), "stats": self.stats,
        }
        if self.verification is not None:
            out["verification"] = {"ok": self.verification.ok, "problems": list(self.verification.problems),
                                   "verifier": list(self.verification.verifier),
                                   "independent": self.verification.independent}
        return out

    def summary(self) -> str:
        calls = self.stats.get("calls", {})
        answered = ", ".join(f"{k}: {v}" for k, v in sorted(calls.items()))
        lines = [f"AXp of {self.size} of {len(self.mask)} features, status {self.status}"
                 f"{' (proven subset-minimal)' if self.minimal else ' (sufficient; minimality not fully proven)'}",
                 f"{self.seconds:.3f} s; oracle answers by path: {answered or 'none'}"]
        if self.verification is not None:
            verdict = "ok" if self.verification.ok else "FAILED: " + "; ".join(self.verification.problems)
            lines.append(f"independent verification ({', '.join(self.verification.verifier)}): {verdict}")
        return "\n".join(lines)

    def render(self) -> str:
        """Text picture for 2-D inputs: '#' explanation pixel that is on, 'o' explanation pixel that is
        off, '.' other pixel that is on, ' ' other pixel that is off (on = spikes at least once)."""
        if len(self.input_shape) != 2:
            return " ".join(self.feature_names[k] for k in self.features)
        on = (self.spikes.sum(axis=0) > 0).reshape(self.input_shape)
        chosen = self.pixel_mask
        glyphs = np.where(chosen, np.where(on, "#", "o"), np.where(on, ".", " "))
        return "\n".join("|" + "".join(row) + "|" for row in glyphs)


def explain(model: BSNN, image: np.ndarray, *, algorithm: str = "deletion", order: str | Sequence[float] = "index",
            backend: str = DEFAULT_BACKEND, fast_paths: bool = True, time_limit: float | None = None,
            call_time_limit: float | None = None, max_distance: int | None = None,
            features: FeatureSet | None = None, use_cores: bool = False, verify: bool = False) -> Explanation:
    """Compute a certified subset-minimal AXp of ``model``'s prediction on ``image``.

    Args:
        image: one raw image (``input_shape`` or flat, intensities 0..255), or its input
            spikes ``(T, n_inputs)`` (recognised by shape).
        algorithm: ``deletion`` (default), ``quickxplain`` or ``progression``.
        order: order in which features are tried for removal: ``index``, ``reverse``,
            ``bright-first``/``dark-first`` (pixels tried first are dropped more easily), or one
            score per feature (lowest tried first, e.g. |SHAP| so that high scores stay).
        backend: exact oracle (see :func:`exact_oracle_factory`).
        fast_paths: bound propagation and counterexample search before the exact oracle; the
            AXp is identical either way (only the time differs).
        time_limit / call_time_limit: budgets; on timeout the result is sufficient, status ``timeout``.
        max_distance: distance-restricted AXp (valid for inputs differing from the image in at
            most this many features).
        features: feature groups (default: one per pixel).
        use_cores: let exact UNSAT cores drop several features at once.
        verify: re-check the certificate with a second exact backend and the reference forward.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    arr = np.asarray(image)
    if arr.shape == (model.n_steps, model.n_inputs) and arr.size and arr.min() >= 0 and arr.max() <= 1:
        spikes, data = check_spikes(model, arr)[0], None
    else:
        data = arr.reshape(model.input_shape) if arr.size == model.n_inputs else arr
        spikes = model.encode(arr)[0]
    if isinstance(order, str):
        order = _ORDER_ALIASES.get(order, order)
    feature_set = features if features is not None else FeatureSet.pixels(model.n_inputs, model.input_shape)
    prediction = int(forward(model, spikes).prediction[0])
    oracle = make_oracle(model, spikes, backend=backend, fast_paths=fast_paths, features=feature_set,
                         max_distance=max_distance)
    with ALGORITHMS[algorithm](oracle, order=order, image=None if data is None else data.reshape(-1),
                               use_cores=use_cores, time_limit=time_limit,
                               call_time_limit=call_time_limit) as solver:
        result = solver.compute()
    report = None
    if verify:
        report = verify_certificate(result.certificate, exact_oracle_factory(_other_backend(backend)))
    mask = result.mask(len(feature_set))
    settings = {"algorithm": algorithm, "order": order if isinstance(order, str) else "scores",
                "backend": backend, "fast_paths": fast_paths, "max_distance": max_distance, "use_cores": use_cores}
    return Explanation(data=data, spikes=spikes, mask=mask, features=tuple(result.features),
                       feature_names=feature_set.names, pixel_groups=feature_set.groups,
                       input_shape=model.input_shape, prediction=prediction,
                       prediction_label=model.labels[prediction], status=result.status.value,
                       minimal=result.minimal, stats=result.stats, proof=result.certificate, verification=report,
                       settings=settings, seconds=result.seconds)
