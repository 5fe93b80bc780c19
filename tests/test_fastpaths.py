"""Sound fast paths: interval bounds, counterexample search, witness cache, layered oracle.

Ground truth is the exhaustive BruteForceOracle on tiny random networks (both codings, both
weight kinds, both resets, one or two layers, with and without a distance bound).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsnn.coding import StaticCoding
from xsnn.model import forward, random_model
from xsnn.solvers.attack import CounterexampleSearch
from xsnn.solvers.bounds import BoundPropagator
from xsnn.solvers.branchbound import BoundSearch
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.layered import PATHS, LayeredOracle
from xsnn.solvers.oracle import Check, EntailmentOracle, Verdict, feature_distance, verify_witness
from xsnn.solvers.witnesses import WitnessCache

from conftest import SEEDS, random_fixed, random_question


def tuned(exact, *, without=(), **budgets) -> LayeredOracle:
    """A LayeredOracle with the paths ``without`` off and some budgets changed (class attributes,
    set in a subclass as a benchmark would)."""
    return type("TunedLayeredOracle", (LayeredOracle,), budgets)(exact, paths=set(PATHS) - set(without))


def make_case(seed: int, groups: bool = False):
    """A random tiny question (:func:`conftest.random_question`): (model, instance, features,
    max_distance, target, rng); features of 1-2 pixels and one pixel of no feature if ``groups``."""
    return tuple(
        random_question(
            seed, max_inputs=(7, 9), groups="small" if groups else None, distance=(0.5, 0), keep_prediction=0.85
        )
    )


# ---------------------------------------------------------------------------- bounds


def check_bounds_contain(model, instance, features, max_distance, target, rng, n_sets=4):
    """Every interval contains every completion's value; ENTAILED is never wrong. Returns counts."""
    bp = BoundPropagator(model, instance, features, target=target, max_distance=max_distance)
    bf = BruteForceOracle(model, instance, features, target=target, max_distance=max_distance)
    proved = truly = 0
    for _ in range(n_sets):
        fixed = random_fixed(rng, len(features))
        b = bp.propagate(fixed)
        xs = bf.completions(fixed)
        fr = forward(model, xs)
        flips = bool(np.any(fr.prediction != bf.target))
        assert not (b.entailed and flips), f"bounds claimed ENTAILED for {sorted(fixed)} but a completion flips"
        proved += b.entailed
        truly += not flips
        for l, lb in enumerate(b.layers):
            s = fr.layer_spikes[l].astype(bool)
            assert not np.any(s & ~lb.maybe_one[None]), f"layer {l}: a spike marked known-0 fires"
            assert not np.any(~s & lb.known_one[None]), f"layer {l}: a spike marked known-1 is silent"
            counts = s.sum(axis=1)
            assert np.all(counts >= lb.count_lo) and np.all(counts <= lb.count_hi), f"layer {l}: count outside"
            if lb.potential_lo is not None:
                v = fr.potentials[l]
                assert np.all(v >= lb.potential_lo[None]) and np.all(v <= lb.potential_hi[None]), (
                    f"layer {l}: potential outside its interval ({model.reset} reset)"
                )
        assert np.all(fr.scores >= b.score_lo) and np.all(fr.scores <= b.score_hi)
        margins = fr.scores[:, [bf.target]] - fr.scores
        assert np.all(margins >= b.margin_lo)
    return proved, truly


@settings(max_examples=150, deadline=None)
@given(seed=SEEDS)
def test_bounds_are_sound_intervals(seed):
    check_bounds_contain(*make_case(seed))


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_bounds_sound_with_feature_groups_and_unowned_pixels(seed):
    check_bounds_contain(*make_case(seed, groups=True))


def test_bounds_decide_most_entailed_questions():
    """Not vacuous: the bounds prove a large share of the truly entailed questions."""
    proved = truly = 0
    for seed in range(60):
        p, t = check_bounds_contain(*make_case(seed), n_sets=4)
        proved += p
        truly += t
    assert truly > 50
    assert proved >= 0.6 * truly, f"bounds proved only {proved} of {truly} entailed questions"


def test_bounds_exact_when_everything_fixed():
    model, instance, features, _, _, _ = make_case(7)
    bp = BoundPropagator(model, instance, features)
    b = bp.propagate(range(len(features)))
    assert b.entailed
    spikes = forward(model, instance).layer_spikes
    for lb, s in zip(b.layers, spikes):
        assert np.array_equal(lb.known_one, s[0].astype(bool)) and np.array_equal(lb.maybe_one, s[0].astype(bool))


def test_bounds_tie_rule_lowest_index():
    """A tie with a lower class index is a change of prediction; with a higher index it is not."""
    from xsnn.model import BSNN

    # one input pixel feeding one neuron (theta 1); readout: class 0 and 1 both score the spike count
    model = BSNN(
        weights=(np.array([[1]]),),
        thresholds=(np.array([1]),),
        readout=np.array([[1], [1]]),
        weight_kind="binary",
        reset="zero",
        n_steps=1,
        coding=StaticCoding(),
        labels=(0, 1),
        input_shape=(1,),
    )
    x = np.ones((1, 1), np.uint8)
    # the scores always tie, so the prediction is always class 0
    assert BoundPropagator(model, x, target=0).entailed([])
    assert not BoundPropagator(model, x, target=1).entailed([0])


def test_bounds_reject_bad_features():
    model, instance, features, _, _, _ = make_case(3)
    with pytest.raises(ValueError, match="unknown feature"):
        BoundPropagator(model, instance, features).entailed([len(features)])


# ---------------------------------------------------------------------------- attack


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS)
def test_attack_witnesses_are_valid(seed):
    model, instance, features, k, target, rng = make_case(seed, groups=bool(seed % 3 == 0))
    attack = CounterexampleSearch(model, instance, features, target, k, seed=seed, max_evaluations=3000)
    bf = BruteForceOracle(model, instance, features, target=target, max_distance=k)
    for _ in range(4):
        fixed = random_fixed(rng, len(features))
        found = attack.search(fixed)
        truth = bf.check(fixed).verdict
        if found.found:
            assert truth is Verdict.NOT_ENTAILED
            verify_witness(model, instance, features, fixed, bf.target, found.witness, k)
            if k is not None:
                assert feature_distance(features, found.witness, instance) <= k


def test_attack_finds_most_counterexamples():
    """Not vacuous: the attack finds a witness for most NOT_ENTAILED questions."""
    needed = found = 0
    for seed in range(80):
        model, instance, features, k, target, rng = make_case(seed)
        attack = CounterexampleSearch(model, instance, features, target, k, seed=seed, max_evaluations=3000)
        bf = BruteForceOracle(model, instance, features, target=target, max_distance=k)
        for _ in range(3):
            fixed = random_fixed(rng, len(features))
            if bf.check(fixed).verdict is Verdict.NOT_ENTAILED:
                needed += 1
                found += attack.search(fixed).found
    assert needed > 50
    assert found >= 0.9 * needed, f"attack found {found} of {needed} counterexamples"


def test_attack_uses_start_points_and_respects_fixed():
    for seed in range(11, 100):  # the first random net whose prediction can change
        model, instance, features, _, _, rng = make_case(seed)
        bf = BruteForceOracle(model, instance, features)
        flips = [x for x in bf.completions(frozenset()) if forward(model, x).prediction[0] != bf.target]
        if flips:
            break
    witness = flips[-1]
    differs = {k for k, g in enumerate(features.groups) if np.any(witness[:, list(g)] != instance[:, list(g)])}
    fixed = frozenset(range(len(features))) - differs
    attack = CounterexampleSearch(model, instance, features, seed=0, max_evaluations=1, shrink=False)
    result = attack.search(fixed, starts=[witness])
    assert result.found and result.phase == "start"
    assert np.array_equal(result.witness, witness)


# ---------------------------------------------------------------------------- layered oracle


class UnknownOracle(EntailmentOracle):
    """Answers UNKNOWN to everything (an exact backend out of budget)."""

    name = "always-unknown"

    def _check(self, fixed, time_limit):
        return Check(Verdict.UNKNOWN, fixed, path=self.name)


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS)
def test_layered_verdicts_equal_exact(seed):
    model, instance, features, k, target, rng = make_case(seed, groups=bool(seed % 4 == 0))
    exact = BruteForceOracle(model, instance, features, target=target, max_distance=k)
    reference = BruteForceOracle(model, instance, features, target=target, max_distance=k)
    # tiny nets have few completions: the exhaustive and search paths would answer everything, so
    # they are off here (and tested on their own below) to exercise bounds, attack and cache
    layered = tuned(exact, attack_evaluations=2000, exhaustive_limit=0, search_nodes=0)
    for _ in range(6):
        fixed = random_fixed(rng, len(features))
        got = layered.check(fixed)
        assert got.verdict is reference.check(fixed).verdict
        assert got.path in {"cache", "lookahead", "cores", "bounds", "attack", "bruteforce"}
    assert sum(layered.stats.calls.values()) == 6


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_exhaustive_path_is_exact(seed):
    model, instance, features, k, target, rng = make_case(seed, groups=bool(seed % 4 == 0))
    reference = BruteForceOracle(model, instance, features, target=target, max_distance=k)
    search = CounterexampleSearch(model, instance, features, target, k)
    layered = tuned(
        BruteForceOracle(model, instance, features, target=target, max_distance=k),
        without={"bounds", "attack", "cache", "lookahead", "cores"},
        exhaustive_limit=1 << 16,
    )
    for _ in range(4):
        fixed = random_fixed(rng, len(features))
        truth = reference.check(fixed).verdict
        got = layered.check(fixed)
        assert got.verdict is truth and got.path == "exhaustive"
        assert search.exhaust(fixed, limit=1) is None or len(fixed) == len(features)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, leaf_limit=st.sampled_from([1, 4, 1024]))
def test_branch_and_bound_is_exact(seed, leaf_limit):
    model, instance, features, k, target, rng = make_case(seed)
    reference = BruteForceOracle(model, instance, features, target=target, max_distance=k)
    search = BoundSearch(BoundPropagator(model, instance, features, target, k), leaf_limit=leaf_limit)
    assert search.supported
    for _ in range(4):
        fixed = random_fixed(rng, len(features))
        truth = reference.check(fixed).verdict
        got = search.decide(fixed, max_nodes=100_000)
        assert got.verdict is truth
        if got.witness is not None:
            verify_witness(model, instance, features, fixed, reference.target, got.witness, k)
    layered = tuned(
        BruteForceOracle(model, instance, features, target=target, max_distance=k),
        without={"attack", "lookahead"},
        exhaustive_limit=0,
        search_nodes=100_000,
    )
    for _ in range(3):
        fixed = random_fixed(rng, len(features))
        got = layered.check(fixed)
        assert got.verdict is reference.check(fixed).verdict
        assert got.path in {"cache", "bounds", "branch-and-bound"}


def test_branch_and_bound_needs_pixel_features():
    model, instance, features, k, target, _ = make_case(9, groups=True)
    search = BoundSearch(BoundPropagator(model, instance, features, target, k))
    assert not search.supported
    with pytest.raises(ValueError, match="one feature per pixel"):
        search.decide([])


def test_layered_records_paths_and_reuses_witnesses():
    paths = set()
    for seed in range(30):
        model, instance, features, k, target, rng = make_case(seed)
        layered = tuned(
            BruteForceOracle(model, instance, features, target=target, max_distance=k),
            exhaustive_limit=0,
            search_nodes=0,
        )
        for _ in range(6):
            fixed = random_fixed(rng, len(features))
            check = layered.check(fixed)
            if check.verdict is Verdict.NOT_ENTAILED:
                # any subset of a refuted fixed set is refuted by the cached witness
                sub = frozenset(sorted(fixed)[: len(fixed) // 2])
                again = layered.check(sub)
                assert again.verdict is Verdict.NOT_ENTAILED and again.path == "cache"
        paths |= set(layered.stats.calls)
    assert {"cache", "bounds", "attack"} <= paths


def test_layered_without_fast_paths_is_the_exact_oracle():
    model, instance, features, k, target, rng = make_case(5)
    layered = tuned(
        BruteForceOracle(model, instance, features, target=target, max_distance=k),
        without={"bounds", "attack", "cache", "lookahead", "cores"},
        exhaustive_limit=0,
        search_nodes=0,
    )
    for _ in range(5):
        layered.check(random_fixed(rng, len(features)))
    assert set(layered.stats.calls) == {"bruteforce"}


def test_layered_unknown_exact_stays_unknown_only_when_fast_paths_fail():
    for seed in range(20):
        model, instance, features, k, target, rng = make_case(seed)
        reference = BruteForceOracle(model, instance, features, target=target, max_distance=k)
        layered = tuned(
            UnknownOracle(model, instance, features, target=target, max_distance=k), exhaustive_limit=0, search_nodes=0
        )
        for _ in range(4):
            fixed = random_fixed(rng, len(features))
            got = layered.check(fixed)
            if got.verdict is not Verdict.UNKNOWN:
                assert got.verdict is reference.check(fixed).verdict
                assert got.path in {"cache", "lookahead", "bounds", "attack"}
            else:
                assert got.path == "always-unknown"


def test_witness_cache_semantics():
    model, instance, features, _, _, _ = make_case(2)
    oracle = BruteForceOracle(model, instance, features)
    cache = WitnessCache(oracle, capacity=2)
    w = instance.copy()
    w[:, 0] = 1 - w[:, 0] if model.coding.name == "static" else np.eye(model.n_steps, dtype=np.uint8)[0]
    if np.array_equal(w, instance):
        w[:, 0] = 0
    cache.add(w)
    others = frozenset(range(1, len(features)))
    assert cache.find(others) is not None  # w agrees with the instance off feature 0
    assert cache.find(frozenset({0})) is None  # w changes feature 0
    cache.add(instance)
    cache.add(instance)
    assert len(cache) == 2  # the oldest is dropped
    with pytest.raises(ValueError):
        WitnessCache(oracle, capacity=0)


@pytest.mark.parametrize("seed", range(8))
def test_witness_cache_finds_the_newest_refuting_witness(seed):
    """Interleaved adds and finds (masks computed in batches, oldest dropped) agree with the
    definition: the newest kept witness equal to the instance on the fixed pixels whose free
    pixels all carry trains of the free domain."""
    model, instance, features, _, _, rng = make_case(seed, groups=bool(seed % 2))
    oracle = BruteForceOracle(model, instance, features)
    trains = model.coding.free_trains(model.n_steps)
    cache, kept = WitnessCache(oracle, capacity=5), []
    for step in range(40):
        if rng.random() < 0.6:
            w = instance.copy()
            for i in np.flatnonzero(rng.random(model.n_inputs) < 0.3):
                w[:, i] = trains[rng.integers(len(trains))]
            if rng.random() < 0.2:  # a train outside the free domain
                w[:, int(rng.integers(model.n_inputs))] = 1
            cache.add(w)
            kept = [w] + kept[:4]
        fixed = frozenset(np.flatnonzero(rng.random(len(features)) < 0.5).tolist())
        mask = features.pixel_mask(sorted(fixed))
        expected = next(
            (
                w
                for w in kept
                if np.array_equal(w[:, mask], instance[:, mask])
                and all(any(np.array_equal(w[:, i], t) for t in trains) for i in np.flatnonzero(~mask))
            ),
            None,
        )
        found = cache.find(fixed)
        assert (found is None) == (expected is None), step
        if found is not None:
            assert found is expected or np.array_equal(found, expected)


def test_layered_over_sat_matches_sat():
    sat = pytest.importorskip("xsnn.solvers.sat")
    for seed in range(6):
        model, instance, features, k, target, rng = make_case(seed)
        plain = sat.SATOracle(model, instance, features, target=target, max_distance=k)
        layered = LayeredOracle(sat.SATOracle(model, instance, features, target=target, max_distance=k))
        with plain, layered:
            for _ in range(5):
                fixed = random_fixed(rng, len(features))
                assert layered.check(fixed).verdict is plain.check(fixed).verdict


def test_unknown_fast_paths_are_named():
    rng = np.random.default_rng(0)
    model = random_model(rng, [3], 4, 2, n_steps=2)
    instance = model.encode(rng.integers(0, 256, size=(1, 4)))[0]
    with pytest.raises(ValueError, match="'search'"):
        LayeredOracle(BruteForceOracle(model, instance), paths={"bounds", "search"})
    with pytest.raises(ValueError, match="collection"):
        LayeredOracle(BruteForceOracle(model, instance), paths="bounds")
    assert LayeredOracle(BruteForceOracle(model, instance), paths=()).check(range(4)).path == "bruteforce"
