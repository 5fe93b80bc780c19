"""The oracle contract: every exact entailment oracle answers as brute force does.

For every backend name :func:`~xsnn.solvers.backends.exact_oracle_factory` accepts (and its
variants), the default pipeline :func:`~xsnn.solvers.backends.make_oracle` builds (fast paths in
front), and the exact oracles reachable by class only (the level search and its portfolio, the
ball enumeration with each engine), on random small questions (:func:`conftest.small_questions`)
and a sequence of fixed sets (deletion-like, progression-like, random, repeated):

- the verdict equals :class:`~xsnn.solvers.bruteforce.BruteForceOracle`'s (never UNKNOWN: no
  time limit is given);
- every NOT_ENTAILED witness is checked here, by the reference forward and the question's
  rules: it keeps every fixed feature, gives each free pixel a train of the coding's free
  domain (or the instance's), stays within the distance bound and changes the prediction;
- every ENTAILED core lies inside the fixed set and brute force confirms it sufficient;
- a backend that does not apply to a question (one spiking layer and the static coding needed,
  a distance bound needed or refused) refuses it with a ``ValueError`` saying why: it is never
  skipped, and it never refuses a question it applies to.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsnn.model import forward
from xsnn.solvers.backends import BACKEND_NAMES, exact_oracle_factory, make_oracle
from xsnn.solvers.ball import BallOracle
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.levels import LevelOracle, level_portfolio
from xsnn.solvers.oracle import EntailmentOracle, Verdict

from conftest import Case, small_questions

MAX_EXAMPLES = 25  # per backend
ONE_STATIC_LAYER = "needs one spiking layer and the static coding"
NEEDS_BOUND = "needs a distance bound"
NO_BOUND = "takes no distance bound"


def one_static_layer(case: Case) -> bool:
    """One spiking layer, and the coding's free domain and the instance are one Boolean per pixel
    (each pixel silent or spiking at every step): the setting of the one-sided rival encodings."""
    trains = case.model.coding.free_trains(case.model.n_steps)
    active = trains[trains.any(axis=1)]
    boolean = len(active) == 1 and bool(active.all()) and len(active) < len(trains)
    return len(case.model.layer_sizes) == 1 and boolean and bool(np.all(case.instance == case.instance[:1]))


def refusal(needs: str | None) -> Callable[[Case], list[str]]:
    """The errors a backend restricted to ``needs`` may give on a question outside it (any one of
    them when several restrictions are broken; none: it applies)."""

    def reasons(case: Case) -> list[str]:
        out = []
        if needs in ("one-layer", "levels") and not one_static_layer(case):
            out.append(ONE_STATIC_LAYER)
        if needs == "levels" and case.max_distance is not None:
            out.append(NO_BOUND)
        if needs == "ball" and case.max_distance is None:
            out.append(NEEDS_BOUND)
        return out

    return reasons


def by_name(name: str, *, fast_paths: bool | None = None):
    """The oracle of a backend name: the factory's (``fast_paths`` None) or make_oracle's."""

    def build(case: Case) -> EntailmentOracle:
        if fast_paths is None:
            return exact_oracle_factory(name)(
                case.model, case.instance, features=case.features, target=case.target, max_distance=case.max_distance
            )
        return make_oracle(
            case.model,
            case.instance,
            backend=name,
            fast_paths=fast_paths,
            features=case.features,
            target=case.target,
            max_distance=case.max_distance,
        )

    return build


def by_class(make: Callable[..., EntailmentOracle], **options):
    def build(case: Case) -> EntailmentOracle:
        return make(case.model, case.instance, case.features, case.target, case.max_distance, **options)

    return build


def _level_portfolio_refusal(sat_seconds: float) -> Callable[[Case], list[str]]:
    """Under a distance bound CP-SAT replaces the level search; the SAT stage (if any) and the
    level search need one static layer."""

    def reasons(case: Case) -> list[str]:
        if case.max_distance is None or sat_seconds > 0:
            return refusal("one-layer")(case)
        return []

    return reasons


# id -> (builder, refusal rule); every name of BACKEND_NAMES appears (test_every_backend_is_in_the_contract)
BACKENDS: dict[str, tuple[Callable[[Case], EntailmentOracle], Callable[[Case], list[str]]]] = {
    "portfolio": (by_name("portfolio"), refusal(None)),
    "portfolio+fast": (by_name("portfolio", fast_paths=True), refusal(None)),  # the default pipeline
    "sat": (by_name("sat"), refusal(None)),
    "sat+fast": (by_name("sat", fast_paths=True), refusal(None)),
    "sat:cadical195": (by_name("sat:cadical195"), refusal(None)),
    "sat:glucose4": (by_name("sat:glucose4"), refusal(None)),
    "sat:minicard": (by_name("sat:minicard"), refusal(None)),
    "sat-rivals": (by_name("sat-rivals"), refusal("one-layer")),
    "sat-rivals:gluecard3": (by_name("sat-rivals:gluecard3"), refusal("one-layer")),
    "sat-rivals:gluecard4": (by_name("sat-rivals:gluecard4"), refusal("one-layer")),
    "sat-rivals+fast": (by_name("sat-rivals", fast_paths=True), refusal("one-layer")),
    "smt": (by_name("smt"), refusal(None)),
    "smt:pb": (by_name("smt:pb"), refusal(None)),
    "milp": (by_name("milp"), refusal(None)),
    "cpsat": (by_name("cpsat"), refusal(None)),
    "cpsat+fast": (by_name("cpsat", fast_paths=True), refusal(None)),
    "ball": (by_name("ball"), refusal("ball")),
    "ball+fast": (by_name("ball", fast_paths=True), refusal("ball")),
    "ball:kernel": (by_class(BallOracle, engine="kernel"), refusal("ball")),
    "bruteforce": (by_name("bruteforce"), refusal(None)),
    "levels": (by_name("levels"), refusal("levels")),
    "levels+fast": (by_name("levels", fast_paths=True), refusal("levels")),
    "levels-checked": (by_name("levels-checked"), refusal("levels")),
    "levels:plain": (by_class(LevelOracle, pair_cuts=False, lp_cuts=False, reuse_cuts=False), refusal("levels")),
    "level_portfolio": (by_class(level_portfolio), _level_portfolio_refusal(0.0)),
    "level_portfolio+sat": (by_class(level_portfolio, sat_seconds=0.1), _level_portfolio_refusal(0.1)),
}


def test_every_backend_is_in_the_contract():
    """A backend name added to the library without a place here fails."""
    covered = {key.partition("+")[0].partition(":")[0] for key in BACKENDS}
    assert set(BACKEND_NAMES) <= covered, sorted(set(BACKEND_NAMES) - covered)


def fixed_sets(rng: np.random.Generator, n: int) -> list[frozenset[int]]:
    """Fixed sets in the orders the algorithms ask them: all fixed then one more freed at a time
    (deletion), a few grown from nothing (progression), random ones, and a repeat."""
    order = rng.permutation(n).tolist()
    out = [frozenset(order[k:]) for k in range(0, n + 1, max(1, n // 3))]
    out += [frozenset(order[:k]) for k in (0, n // 2)]
    out += [frozenset(np.flatnonzero(rng.random(n) < rng.random()).tolist()) for _ in range(2)]
    out.append(out[int(rng.integers(len(out)))])
    return out


def assert_counterexample(case: Case, target: int, fixed: frozenset[int], witness: np.ndarray) -> None:
    """The witness is an input of the question that the reference forward does not give ``target``."""
    model, instance, features = case.model, case.instance, case.features
    assert witness is not None, "NOT_ENTAILED without a witness"
    witness = np.asarray(witness)
    assert witness.shape == instance.shape and set(np.unique(witness).tolist()) <= {0, 1}
    kept = features.pixel_mask(sorted(fixed))
    assert np.array_equal(witness[:, kept], instance[:, kept]), "the witness changes a fixed feature"
    domain = {tuple(t) for t in model.coding.free_trains(model.n_steps).astype(int).tolist()}
    for pixel in np.flatnonzero(np.any(witness != instance, axis=0)):
        assert tuple(witness[:, pixel].astype(int).tolist()) in domain, f"pixel {pixel} leaves the free domain"
    if case.max_distance is not None:
        changed = sum(bool(np.any(witness[:, list(g)] != instance[:, list(g)])) for g in features.groups)
        assert changed <= case.max_distance, f"{changed} features changed, bound {case.max_distance}"
    assert int(forward(model, witness[None]).prediction[0]) != target, "the witness keeps the prediction"


def questions_for(backend: str) -> st.SearchStrategy[Case]:
    """Random small questions; for a restricted backend mostly ones in its setting (3 in 4), so
    that most examples test answers and the rest test refusals."""
    mostly = st.sampled_from([True, True, True, False])
    setting = {
        "sat-rivals": dict(static=mostly, layers=st.sampled_from([1, 1, 1, 2])),
        "levels": dict(
            static=mostly, layers=st.sampled_from([1, 1, 1, 2]), distances=st.sampled_from([None, None, None, 1])
        ),
        "level_portfolio": dict(static=mostly, layers=st.sampled_from([1, 1, 1, 2])),
        "ball": dict(distances=st.sampled_from([None, 0, 1, 1, 2, 3])),
    }
    return small_questions(**setting.get(backend.partition("+")[0].partition(":")[0], {}))


@pytest.mark.parametrize("backend", list(BACKENDS))
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_oracle_equals_brute_force(backend, data):
    case = data.draw(questions_for(backend), label="case")
    build, refuses = BACKENDS[backend]
    reasons = refuses(case)
    if reasons:
        with pytest.raises(ValueError, match="|".join(map(re.escape, reasons))):
            build(case)
        return
    truth = BruteForceOracle(
        case.model, case.instance, case.features, target=case.target, max_distance=case.max_distance
    )
    target = int(forward(case.model, case.instance[None]).prediction[0]) if case.target is None else case.target
    assert truth.target == target
    with build(case) as oracle:
        assert oracle.target == target
        for fixed in fixed_sets(case.rng, len(case.features)):
            expected = truth.check(fixed).verdict
            answer = oracle.check(fixed)
            assert answer.verdict is expected, (backend, sorted(fixed), answer.verdict, expected)
            if answer.verdict is Verdict.NOT_ENTAILED:
                assert_counterexample(case, target, fixed, answer.witness)
            elif answer.core is not None:
                assert answer.core <= fixed, "a core outside the fixed set"
                assert truth.check(answer.core).verdict is Verdict.ENTAILED, "a core that is not sufficient"
