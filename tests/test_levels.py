"""The level search (solvers/levels.py) against brute force on small dense networks: the pair
test, every verdict, the kept cuts, and whole deletion AXps."""

from __future__ import annotations

import itertools
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsnn.coding import StaticCoding
from xsnn.model import forward, random_model
from xsnn.solvers import levels
from xsnn.solvers.axp import DeletionAXp
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.influence import influence_order
from xsnn.solvers.levels import LevelOracle, _lp_check, _pair_rounding_cuts, certifies, level_portfolio, pair_feasible
from xsnn.solvers.oracle import Verdict
from xsnn.solvers.result import NoExplanationError
from xsnn.solvers.rivalsat import RivalSATOracle

from conftest import SEEDS, one_layer_static_case, random_features


def dense_case(seed: int, reset: str, n_steps: int, max_inputs: int = 11, kind: str = "binary"):
    """A random one-layer network of up to 8 neurons, dense (binary weights: no zeros) unless
    ``kind`` says otherwise, with an instance of the static coding."""
    return one_layer_static_case(seed, kind, reset, n_steps, max_inputs=max_inputs, max_neurons=8)


SIGN_CLASSES = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]  # pair_feasible's order


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(0, 3), min_size=8, max_size=8),
    alpha=st.integers(-6, 6),
    beta=st.integers(-6, 6),
    sign_a=st.sampled_from([-1, 1]),
    sign_b=st.sampled_from([-1, 1]),
    binary=st.booleans(),
)
def test_pair_feasible_equals_enumeration(counts, alpha, beta, sign_a, sign_b, binary):
    """The count test of two one-sided rows equals trying every assignment of the pixels."""
    if binary:  # binary weights: no pixel is wired to one neuron only
        counts = counts[:4] + [0, 0, 0, 0]
    w_j = [a for (a, _), c in zip(SIGN_CLASSES, counts) for _ in range(c)]
    w_k = [b for (_, b), c in zip(SIGN_CLASSES, counts) for _ in range(c)]
    n = len(w_j)
    expected = False
    for x in itertools.product([0, 1], repeat=n):
        p = sum(a * b for a, b in zip(w_j, x))
        q = sum(a * b for a, b in zip(w_k, x))
        if sign_a * p >= sign_a * alpha and sign_b * q >= sign_b * beta:
            expected = True
            break
    got = pair_feasible(
        np.array(counts)[:, None], np.array([alpha]), np.array([sign_a]), np.array([beta]), np.array([sign_b])
    )
    assert bool(got[0]) is expected


@settings(max_examples=150, deadline=None)
@given(seed=SEEDS)
def test_lp_certificates_are_exact(seed):
    """An LP certificate always proves infeasibility (checked by enumeration), and a feasible
    system is never given one."""
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 5)), int(rng.integers(1, 9))
    a = rng.choice([-1, 1], size=(m, n)).astype(np.int64)
    t = (a > 0).sum(axis=1) - rng.integers(0, 4, size=m)  # each row alone feasible or nearly so
    xs = np.array(list(itertools.product([0, 1], repeat=n)), np.int64)
    feasible = bool(np.all(xs @ a.T >= t, axis=1).any())
    point, multipliers = _lp_check(a, t)
    if multipliers is not None:
        assert not feasible
        assert (multipliers >= 0).all() and multipliers.any()
        assert int(np.maximum(multipliers @ a, 0).sum()) < int(multipliers @ t)
        used = multipliers > 0  # the cut: these rows alone are infeasible
        assert not np.all(xs @ a[used].T >= t[used], axis=1).any()
    if point is not None:  # the LP is feasible: its point satisfies the rows up to the tolerance
        assert np.all(a @ point >= t - 1e-6)


@settings(max_examples=150, deadline=None)
@given(seed=SEEDS)
def test_parity_cuts_hold_and_their_certificates_are_exact(seed):
    """Every pair parity cut holds at every binary solution of its two rows, and a certificate of
    the rows with the cuts proves its rows (with both rows of every cut it uses) infeasible."""
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(2, 6)), int(rng.integers(1, 9))
    a = rng.choice([-1, 1], size=(m, n)).astype(np.int64)
    t = (a > 0).sum(axis=1) - rng.integers(0, 4, size=m)
    xs = np.array(list(itertools.product([0, 1], repeat=n)), np.int64)
    pairs, cut_a, cut_t = _pair_rounding_cuts(a, t)
    assert len(pairs) == m * (m - 1) // 2  # +1/-1 rows: every pair sum is even
    for (k, l), row, rhs in zip(pairs.tolist(), cut_a, cut_t):
        both = np.all(xs @ a[[k, l]].T >= t[[k, l]], axis=1)
        assert np.all(xs[both] @ row >= rhs)
    _, multipliers = _lp_check(a, t, (cut_a, cut_t))
    if multipliers is not None:
        used = multipliers[:m] > 0
        used[pairs[multipliers[m:] > 0].ravel()] = True
        assert not np.all(xs @ a[used].T >= t[used], axis=1).any()


def test_certificate_test_is_strict():
    """A combined row that some point reaches (even at equality) certifies nothing."""
    a = np.array([[1, 1], [-1, -1]])
    assert not certifies(np.array([1, 0]), a, np.array([2, -1]))  # x = (1, 1) reaches 2
    assert certifies(np.array([1, 1]), a, np.array([2, -1]))  # 0 >= 1: nothing reaches it
    assert not certifies(np.array([1, 1]), a, np.array([1, -1]))  # 0 >= 0 holds everywhere
    assert not certifies(np.array([-1, 2]), a, np.array([2, -1]))  # negative multipliers prove nothing


OPTIONS = [
    dict(),
    dict(pair_cuts=False),
    dict(lp_cuts=False),
    dict(reuse_cuts=False),
    dict(pair_cuts=False, lp_cuts=False, reuse_cuts=False),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=SEEDS,
    reset=st.sampled_from(["zero", "subtract"]),
    n_steps=st.integers(1, 4),
    other_target=st.booleans(),
    kind=st.sampled_from(["binary", "binary", "ternary"]),
)
def test_level_oracle_equals_brute_force(seed, reset, n_steps, other_target, kind):
    """Every option set gives brute force's verdict on nested (deletion-like, in both
    directions: cuts kept while the free set grows and while it shrinks) and random fixed sets."""
    model, instance, rng = dense_case(seed, reset, n_steps, kind=kind)
    features = random_features(rng, model.n_inputs)
    target = int(rng.integers(0, model.n_classes)) if other_target else None
    truth = BruteForceOracle(model, instance, features, target=target)
    oracles = [LevelOracle(model, instance, features, target=target, **options) for options in OPTIONS]
    n = len(features)
    order = rng.permutation(n).tolist()
    growing = [frozenset(order[k:]) for k in range(n + 1)]
    questions = growing + growing[::-1]
    questions += [frozenset(np.flatnonzero(rng.random(n) < p).tolist()) for p in (0.3, 0.5, 0.7)]
    for fixed in questions:
        expected = truth.check(fixed).verdict
        for oracle, options in zip(oracles, OPTIONS):
            check = oracle.check(fixed)  # a NOT_ENTAILED witness is verified by the base class
            assert check.verdict is expected, (options, sorted(fixed))
            if check.verdict is Verdict.ENTAILED:
                assert check.core is not None and check.core <= fixed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, n_steps=st.integers(1, 2), lp_only_with_parity=st.booleans())
def test_level_oracle_harder_paths_equal_brute_force(seed, n_steps, lp_only_with_parity):
    """Wider random dense networks (6-12 hidden neurons), deletion-like questions, with the
    plain LP certificates switched off (so every LP-infeasible claim set goes to the parity cuts or
    to CP-SAT) or with no pair cuts: brute force's verdicts; every cut the search adds is
    infeasible where it was found, and every kept cut where it is reused."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 13))
    model = random_model(
        rng,
        [int(rng.integers(6, 13))],
        n,
        int(rng.integers(2, 4)),
        weight_kind="binary",
        n_steps=n_steps,
        coding=StaticCoding(128),
        max_threshold=int(rng.integers(1, 4)),
    )
    instance = model.encode(rng.integers(0, 256, size=(1, n)))[0]
    truth = BruteForceOracle(model, instance)
    real = levels._lp_check

    def only_with_parity(a, t, cuts=None):
        point, multipliers = real(a, t, cuts)
        return (point, None) if cuts is None else (point, multipliers)

    oracle = LevelOracle(model, instance, pair_cuts=not lp_only_with_parity)
    order = rng.permutation(n).tolist()
    questions = [frozenset(order[k:]) for k in range(n + 1)]
    v = instance[0].astype(np.int64)
    cuts = []  # every cut the search adds to a master: (rival, claims, free pixels)
    exact = levels._Question._exact

    def recording(question, rival, claims):
        answer, refuted = exact(question, rival, claims)
        if answer is True:
            cuts.append((rival, refuted[0], ~question.fixed_pixels))  # refuted: (cut, its reason)
        return answer, refuted

    with (
        mock.patch.object(levels, "_lp_check", only_with_parity if lp_only_with_parity else real),
        mock.patch.object(levels._Question, "_exact", recording),
    ):
        for fixed in questions:
            assert oracle.check(fixed).verdict is truth.check(fixed).verdict, sorted(fixed)
            fixed_pixels = np.zeros(n, bool)
            fixed_pixels[list(fixed)] = True
            for rival in oracle._rivals:
                for claims, _ in rival.holding_cuts(fixed_pixels, v):
                    assert not _claims_feasible(model, instance, rival, claims, ~fixed_pixels)
    for rival, cut, free_pixels in cuts:  # each cut holds where it was found (weakened claims included)
        assert not _claims_feasible(model, instance, rival, cut, free_pixels)


def _claims_feasible(model, instance, rival, claims, free_pixels) -> bool:
    """Does some completion of ``free_pixels`` satisfy every claim (brute force)?"""
    w = model.weights[0].astype(np.int64)
    v = instance[0].astype(np.int64)
    free = np.flatnonzero(free_pixels)
    xs = np.repeat(v[None], 2 ** len(free), axis=0)
    xs[:, free] = (np.arange(2 ** len(free))[:, None] >> np.arange(len(free))) & 1
    drive = xs @ w.T
    ok = np.ones(len(xs), bool)
    for t in claims.tolist():
        ok &= rival.sign[t] * drive[:, rival.neuron[t]] >= rival.sign[t] * rival.bound[t]
    return bool(ok.any())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, n_steps=st.integers(1, 3))
def test_kept_cuts_hold_where_they_are_reused(seed, n_steps):
    """Every kept cut that the oracle would reuse on a later question (``holding_cuts``: an LP
    certificate where its exact test passes, a CP-SAT core where the free pixels are a subset of
    those it was found with) is infeasible there (brute force)."""
    model, instance, rng = dense_case(seed, "zero", n_steps, max_inputs=10)  # 2**10 completions at most
    oracle = LevelOracle(model, instance, pair_cuts=bool(rng.integers(0, 2)))
    cpsat_oracle = LevelOracle(model, instance, lp_cuts=False, pair_cuts=False)  # more claim sets reach CP-SAT
    n = model.n_inputs
    order = rng.permutation(n).tolist()
    questions = [frozenset(order[k:]) for k in range(n + 1)]
    questions += [frozenset(np.flatnonzero(rng.random(n) < p).tolist()) for p in (0.3, 0.6)]
    v = instance[0].astype(np.int64)
    for fixed in questions:
        for o in (oracle, cpsat_oracle):
            o.check(fixed)
        fixed_pixels = np.zeros(n, bool)
        fixed_pixels[list(fixed)] = True
        for rival in oracle._rivals + cpsat_oracle._rivals:
            for claims, _ in rival.holding_cuts(fixed_pixels, v):
                assert not _claims_feasible(model, instance, rival, claims, ~fixed_pixels)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, n_steps=st.integers(1, 3))
def test_deletion_with_the_level_search_equals_brute_force(seed, n_steps):
    """Deletion AXps over the level search equal those over brute force, for a random order."""
    model, instance, rng = dense_case(seed, "zero", n_steps)
    order = rng.permutation(model.n_inputs)
    with DeletionAXp(BruteForceOracle(model, instance), order=order) as algorithm:
        expected = algorithm.compute()
    with DeletionAXp(LevelOracle(model, instance), order=order) as algorithm:
        got = algorithm.compute()
    assert got.features == expected.features and got.status == expected.status


def test_level_oracle_refuses_what_it_cannot_answer():
    rng = np.random.default_rng(0)
    model = random_model(rng, [3], 6, 2)
    instance = model.encode(rng.integers(0, 256, size=(1, 6)))[0]
    with pytest.raises(ValueError, match="distance bound"):
        LevelOracle(model, instance, max_distance=2)
    two_layers = random_model(rng, [3, 3], 6, 2)
    with pytest.raises(ValueError, match="one spiking layer"):
        LevelOracle(two_layers, two_layers.encode(rng.integers(0, 256, size=(1, 6)))[0])


def test_level_oracle_decides_a_dense_mnist_question():
    """A hard question of the shipped dense model (30 border pixels free, image 2): the level
    search and CP-SAT agree."""
    import xsnn
    from xsnn import data
    from xsnn.solvers.cpsat import CPSATOracle

    model = xsnn.load_model("mnist159-binary")
    images, _ = data.load_sample()
    spikes = model.encode(images[2][None])[0]
    fixed = frozenset(range(30, model.n_inputs))
    with LevelOracle(model, spikes) as oracle:
        got = oracle.check(fixed, time_limit=60)
    with CPSATOracle(model, spikes) as oracle:
        expected = oracle.check(fixed, time_limit=120)
    assert got.verdict is expected.verdict is Verdict.ENTAILED
    assert int(forward(model, spikes).prediction[0]) == oracle.target


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, n_steps=st.integers(1, 3))
def test_level_portfolio_equals_brute_force(seed, n_steps):
    """The stack of rival SAT and the level search behind the fast paths: brute force's verdicts."""
    model, instance, rng = dense_case(seed, "zero", n_steps)
    features = random_features(rng, model.n_inputs)
    truth = BruteForceOracle(model, instance, features)
    with level_portfolio(model, instance, features) as oracle:
        n = len(features)
        order = rng.permutation(n).tolist()
        for fixed in [frozenset(order[k:]) for k in range(n + 1)]:
            assert oracle.check(fixed).verdict is truth.check(fixed).verdict


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, n_steps=st.integers(1, 3))
def test_influence_order_is_a_ranking_whose_bound_proven_prefix_is_sufficient(seed, n_steps):
    """The scores rank the features 0..n-1 (the same twice); freeing the longest prefix of the
    order that the interval bound proves safe keeps the prediction (brute force)."""
    model, instance, rng = dense_case(seed, "zero", n_steps)
    features = random_features(rng, model.n_inputs)
    scores = influence_order(model, instance, features)
    n = len(features)
    assert sorted(scores.tolist()) == list(range(n))
    assert np.array_equal(scores, influence_order(model, instance, features))
    order = np.argsort(scores).tolist()
    bounds_only = type("BoundsOnlyRivalSAT", (RivalSATOracle,), {"core_cache": False, "witness_repair": False})
    oracle = bounds_only(model, instance, features)
    truth = BruteForceOracle(model, instance, features)
    bound = oracle._bound
    if len(bound.need):
        for k in range(n):  # each step frees a feature whose largest slack is least (bounds afresh)

            def worst(freed):
                mask = np.ones(n, bool)
                mask[freed] = False
                bound.reset(mask)
                return bound.slack().max()

            chosen = worst(order[: k + 1])
            assert all(chosen <= worst(order[:k] + [f]) for f in order[k + 1 :])
    for k in range(n + 1):
        fixed = frozenset(order[k:])
        if oracle.check(fixed).path != "rival-bounds":
            break
        assert truth.check(fixed).verdict is Verdict.ENTAILED


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_steps=st.integers(1, 3), kind=st.sampled_from(["binary", "sparse"]))
def test_default_pipeline_takes_the_level_search_on_dense_networks_only(seed, n_steps, kind):
    """The default backend's stack is the level search exactly when the hidden layer is dense
    (density >= DENSE_WEIGHT_DENSITY), and its AXps are brute force's in both cases."""
    import dataclasses

    from xsnn.solvers.backends import DENSE_WEIGHT_DENSITY, make_oracle, weight_density

    model, instance, rng = dense_case(seed, "zero", n_steps, kind="binary" if kind == "binary" else "ternary")
    if kind == "sparse":  # ternary weights with a random share of them zeroed: densities across the rule
        w = model.weights[0] * (rng.random(model.weights[0].shape) < rng.uniform(0.1, 1.0))
        model = dataclasses.replace(model, weights=(w,))
    features = random_features(rng, model.n_inputs)
    order = rng.permutation(len(features)).tolist()

    def axp(oracle):
        with DeletionAXp(oracle, order=order) as algorithm:
            try:
                found = algorithm.compute()
            except NoExplanationError:  # a pixel in no feature: fixing every feature is not enough
                return None
            return found.features, found.status

    assert axp(make_oracle(model, instance, features=features)) == axp(BruteForceOracle(model, instance, features))
    with make_oracle(model, instance, features=features, fast_paths=False) as exact:
        assert isinstance(exact, LevelOracle) == (weight_density(model) >= DENSE_WEIGHT_DENSITY)
    if kind == "binary":
        assert weight_density(model) == 1.0


def test_levels_is_a_backend_name_and_refuses_a_distance_bound():
    from xsnn.solvers.backends import BACKEND_NAMES, exact_oracle_factory

    model, instance, _ = dense_case(3, "zero", 2)
    assert "levels" in BACKEND_NAMES
    assert isinstance(exact_oracle_factory("levels")(model, instance), LevelOracle)
    with pytest.raises(ValueError, match="distance bound"):
        exact_oracle_factory("levels")(model, instance, max_distance=1)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_steps=st.integers(1, 3))
def test_explain_in_the_influence_order_is_the_brute_force_axp_of_that_order(seed, n_steps):
    """``order="influence"`` in the front door: the deletion AXp of brute force in the order
    :func:`influence_order` gives (the lowest score tried first)."""
    import xsnn

    model, instance, _ = dense_case(seed, "zero", n_steps)
    scores = influence_order(model, instance)
    with DeletionAXp(BruteForceOracle(model, instance), order=scores) as algorithm:
        expected = algorithm.compute()
    e = xsnn.explain(model, instance, order="influence")
    assert e.status == "complete" and sorted(e.features) == sorted(expected.features)
    assert e.settings["options"]["order"] == "influence"


def test_influence_order_is_refused_where_it_does_not_apply():
    import xsnn

    rng = np.random.default_rng(1)
    two_layers = random_model(rng, [3, 3], 6, 2)
    with pytest.raises(ValueError, match="influence order needs one spiking layer"):
        xsnn.explain(two_layers, rng.integers(0, 256, size=6), order="influence")
