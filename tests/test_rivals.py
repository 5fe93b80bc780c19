"""The rival split (one-sided per-rival problems), the incremental per-rival SAT oracle and the
sequential portfolio, against the reference forward and brute force on random networks."""

from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsnn.coding import LatencyCoding
from xsnn.encoders.linear import potential_bounds
from xsnn.encoders.rivals import (
    build_rival_problems,
    distance_input_range,
    neuron_ladders,
    rival_split_applies,
    rival_terms,
)
from xsnn.features import FeatureSet
from xsnn.model import forward, random_model
from xsnn.solvers.axp import DeletionAXp
from xsnn.solvers.backends import exact_oracle_factory, make_oracle
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.cpsat import CPSATOracle
from xsnn.solvers.layered import LayeredOracle
from xsnn.solvers.oracle import Verdict
from xsnn.solvers.portfolio import PortfolioOracle
from xsnn.solvers.rivalsat import RivalSATOracle, rival_sat_applies
from xsnn.solvers.rivalstate import RivalCores
from xsnn.solvers.sat import SATOracle

from conftest import SEEDS, one_layer_static_case, random_features


def plain_rival_sat(*args, **kwargs) -> RivalSATOracle:
    """The rival SAT oracle with its bounds, kept cores and witness repair off: every question
    goes to the solvers."""
    plain = type(
        "PlainRivalSAT", (RivalSATOracle,), {"bound_pruning": False, "core_cache": False, "witness_repair": False}
    )
    return plain(*args, **kwargs)


def one_layer_case(seed: int, kind: str, reset: str, n_steps: int, max_inputs: int = 11):
    return one_layer_static_case(seed, kind, reset, n_steps, max_inputs=max_inputs)


case_args = dict(
    seed=SEEDS,
    kind=st.sampled_from(["binary", "ternary"]),
    reset=st.sampled_from(["zero", "subtract"]),
    n_steps=st.integers(1, 5),
)


@settings(max_examples=30, deadline=None)
@given(**case_args)
def test_rival_terms_equal_the_score_difference_on_every_input(seed, kind, reset, n_steps):
    """D_c' = B + sum e [I_j >= a] over the all-free ladders, for every input and every class pair."""
    model, _, _ = one_layer_case(seed, kind, reset, n_steps, max_inputs=9)
    w = model.weights[0].astype(np.int64)
    ladders = neuron_ladders(model, np.minimum(w, 0).sum(axis=1), np.maximum(w, 0).sum(axis=1))
    inputs = np.array(list(itertools.product([0, 1], repeat=model.n_inputs)), dtype=np.uint8)
    spikes = np.repeat(inputs[:, None, :], model.n_steps, axis=1)
    scores = forward(model, spikes).scores
    drive = inputs.astype(np.int64) @ w.T  # (n, n_0)
    for target, rival in itertools.permutations(range(model.n_classes), 2):
        base, terms = rival_terms(model, ladders, target, rival)
        d = np.full(len(inputs), base, np.int64)
        for j, a, e in terms:
            d += e * (drive[:, j] >= a)
        assert np.array_equal(d, scores[:, rival] - scores[:, target]), (target, rival)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**case_args, distance=st.sampled_from([None, None, 0, 1, 2]), other_target=st.booleans())
def test_rival_oracles_equal_brute_force(seed, kind, reset, n_steps, distance, other_target):
    """Per-rival SAT, per-rival CP-SAT and the portfolio give brute force's verdict on nested
    (deletion-like) and random fixed sets; ENTAILED cores are sufficient."""
    model, instance, rng = one_layer_case(seed, kind, reset, n_steps)
    features = random_features(rng, model.n_inputs)
    target = int(rng.integers(0, model.n_classes)) if other_target else None
    args = dict(target=target, max_distance=distance)
    truth = BruteForceOracle(model, instance, features, **args)
    assert rival_sat_applies(model, instance)
    oracles = [
        RivalSATOracle(model, instance, features, **args),
        plain_rival_sat(model, instance, features, **args),
        RivalSATOracle(model, instance, features, solver="gluecard4", **args),
        CPSATOracle(model, instance, features, **args),
        CPSATOracle(model, instance, features, probe_seconds=0, parameters={"linearization_level": 0}, **args),
        exact_oracle_factory("portfolio")(model, instance, features, **args),
    ]
    assert oracles[3].split_rivals
    n = len(features)
    order = rng.permutation(n).tolist()
    questions = [frozenset(order[k:]) for k in range(n + 1)]  # free one more feature each time
    questions += [frozenset(np.flatnonzero(rng.random(n) < p).tolist()) for p in (0.3, 0.7)]
    for fixed in questions:
        expected = truth.check(fixed).verdict
        for oracle in oracles:
            check = oracle.check(fixed)  # a NOT_ENTAILED witness is verified by the base class
            assert check.verdict is expected, (oracle.name, sorted(fixed))
            if check.verdict is Verdict.ENTAILED:
                assert check.core is not None and check.core <= fixed
                assert truth.check(check.core).verdict is Verdict.ENTAILED, (oracle.name, "core not sufficient")
    for oracle in oracles:
        oracle.close()


@settings(max_examples=30, deadline=None)
@given(**case_args)
def test_rival_interval_bounds_hold_on_every_completion(seed, kind, reset, n_steps):
    """The rival SAT oracle's interval bound of each rival's D (kept up to date question by
    question) equals the bound computed afresh and is >= D on every completion of the fixed set."""
    model, instance, rng = one_layer_case(seed, kind, reset, n_steps)
    features = random_features(rng, model.n_inputs)
    oracle = RivalSATOracle(model, instance, features)
    rivals, bounds = oracle._rivals, oracle._bound
    n, n_features = model.n_inputs, len(features)
    all_inputs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.uint8)  # every input
    scores = forward(model, np.repeat(all_inputs[:, None, :], model.n_steps, axis=1)).scores
    value = instance[0].astype(np.uint8)
    order = rng.permutation(n_features).tolist()
    questions = [frozenset(order[k:]) for k in range(n_features + 1)]
    questions += [frozenset(np.flatnonzero(rng.random(n_features) < 0.5).tolist()) for _ in range(4)]
    for fixed in questions:
        oracle._gate.advance(fixed)
        slack = bounds.slack()
        fresh_oracle = RivalSATOracle(model, instance, features)
        fresh_oracle._gate.advance(fixed)
        fresh = fresh_oracle._bound.slack()
        assert np.array_equal(slack, fresh)
        pixels = features.pixel_mask(sorted(fixed))
        agree = np.all(all_inputs[:, pixels] == value[pixels], axis=1)
        for r, rival in enumerate(rivals):
            d = scores[agree, rival] - scores[agree, oracle.target]
            need = 1 if rival > oracle.target else 0
            assert d.max() - need <= slack[r], (rival, sorted(fixed))
    oracle.close()


def ball_inputs(model, instance, features, fixed, max_distance):
    """Every input ``(m, T, n)`` that agrees with ``instance`` on ``fixed`` and changes at most
    ``max_distance`` features (brute force's enumeration of the distance ball)."""
    return BruteForceOracle(model, instance, features, max_distance=max_distance).completions(fixed)


@settings(max_examples=40, deadline=None)
@given(**case_args, max_distance=st.integers(0, 3))
def test_distance_input_range_holds_the_ball_and_is_tight_for_pixels(seed, kind, reset, n_steps, max_distance):
    """distance_input_range contains I_j of every input of the distance ball, lies inside the
    range without the bound, and is reached at both ends when every feature is one pixel."""
    model, instance, rng = one_layer_case(seed, kind, reset, n_steps)
    features = random_features(rng, model.n_inputs)
    free = rng.random(len(features)) < 0.6
    fixed = frozenset(np.flatnonzero(~free).tolist())
    lo, hi = distance_input_range(model, instance, features, free, max_distance)
    inputs = ball_inputs(model, instance, features, fixed, max_distance)[:, 0, :].astype(np.int64)
    drive = inputs @ model.weights[0].T.astype(np.int64)
    assert np.all(drive >= lo[None, :]) and np.all(drive <= hi[None, :])
    unbounded = potential_bounds(model, instance, ~features.pixel_mask(sorted(fixed))).first_input
    assert np.all(lo >= unbounded[0][0]) and np.all(hi <= unbounded[1][0])
    if all(len(g) == 1 for g in features.groups):
        assert np.array_equal(lo, drive.min(axis=0)) and np.array_equal(hi, drive.max(axis=0))


@settings(max_examples=30, deadline=None)
@given(**case_args, max_distance=st.integers(0, 3))
def test_rival_bounds_under_a_distance_bound_hold_on_the_ball(seed, kind, reset, n_steps, max_distance):
    """With a distance bound, the rival SAT oracle's terms are built over the distance ball: each
    rival's interval bound (kept up to date question by question) is still >= D on every input of
    the ball, and a rival dropped as unable to win indeed never wins there."""
    model, instance, rng = one_layer_case(seed, kind, reset, n_steps)
    features = random_features(rng, model.n_inputs)
    oracle = RivalSATOracle(model, instance, features, max_distance=max_distance)
    n_features = len(features)
    order = rng.permutation(n_features).tolist()
    questions = [frozenset(order[k:]) for k in range(n_features + 1)]
    questions += [frozenset(np.flatnonzero(rng.random(n_features) < 0.5).tolist()) for _ in range(3)]
    for fixed in questions:
        oracle._gate.advance(fixed)
        slack = oracle._bound.slack()
        scores = forward(model, ball_inputs(model, instance, features, fixed, max_distance)).scores
        for rival in range(model.n_classes):
            if rival == oracle.target:
                continue
            d = scores[:, rival] - scores[:, oracle.target]
            need = 1 if rival > oracle.target else 0
            if rival in oracle._rivals:
                assert d.max() - need <= slack[oracle._rivals.index(rival)], (rival, sorted(fixed))
            else:
                assert d.max() < need, (rival, "dropped but can win")
    oracle.close()


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_rival_core_counts_follow_the_fixed_set(seed):
    """RivalCores, kept up to date feature by feature or reset, says a rival is covered exactly
    when one of its newest ``size`` cores lies inside the fixed set."""
    rng = np.random.default_rng(seed)
    n_rivals, n_features, size = int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(1, 4))
    cores = RivalCores(n_rivals, n_features, size)
    kept = [[] for _ in range(n_rivals)]  # newest first
    mask = np.zeros(n_features, bool)
    for _ in range(60):
        move = rng.random()
        if move < 0.5:  # fix or free one feature
            k = int(rng.integers(0, n_features))
            mask[k] = not mask[k]
            cores.toggle(k, bool(mask[k]))
        elif move < 0.6:  # jump to another set
            mask = rng.random(n_features) < 0.5
            cores.reset(mask)
        elif mask.any():  # a new core inside the fixed set
            r = int(rng.integers(0, n_rivals))
            core = np.flatnonzero(mask & (rng.random(n_features) < 0.6))
            cores.add(r, core)
            kept[r] = [set(core.tolist())] + kept[r][: size - 1]
        fixed = set(np.flatnonzero(mask).tolist())
        expected = [any(c <= fixed for c in kept[r]) for r in range(n_rivals)]
        covered = cores.covered()
        assert covered.tolist() == expected
        if covered.any():
            union = set(np.flatnonzero(cores.union(covered)).tolist())
            assert union <= fixed
            assert all(any(c <= union for c in kept[r]) for r in np.flatnonzero(covered))


@settings(max_examples=30, deadline=None)
@given(**case_args)
def test_witness_repair_scores_equal_the_reference_forward(seed, kind, reset, n_steps):
    """The repair's exact scoring (neuron ladders, readout differences) says "prediction moves
    away from the target" exactly when the reference forward does, for every input."""
    model, instance, rng = one_layer_case(seed, kind, reset, n_steps, max_inputs=9)
    inputs = ((np.arange(2**model.n_inputs)[:, None] >> np.arange(model.n_inputs)) & 1).astype(np.uint8)
    prediction = forward(model, np.repeat(inputs[:, None, :], model.n_steps, axis=1)).prediction
    for target in range(model.n_classes):
        repair = RivalSATOracle(model, instance, target=target)._repair
        moved = repair.changes_prediction(inputs.astype(np.float32) @ model.weights[0].T.astype(np.float32))
        assert np.array_equal(moved, prediction != target), target


@settings(max_examples=60, deadline=None)
@given(**case_args)
def test_witness_repair_search_in_c_equals_the_numpy_reference(seed, kind, reset, n_steps):
    """The C repair search returns the candidate and inputs of the numpy reference
    (and both name a genuine counterexample), for random kept witnesses and fixed pixels."""
    model, instance, rng = one_layer_case(seed, kind, reset, n_steps)
    target = int(forward(model, instance).prediction[0])
    repair = RivalSATOracle(model, instance, target=target)._repair
    if not repair.in_c:
        if os.environ.get("XSNN_REQUIRE_C_KERNEL", "").strip() not in ("", "0", "false", "no"):
            pytest.fail("XSNN_REQUIRE_C_KERNEL is set but the C rival helpers have no repair_search")
        pytest.skip("C rival helpers not built")
    n = model.n_inputs
    for _ in range(int(rng.integers(1, 7))):  # more than `keep`: the oldest drop out
        repair.add(rng.random(n) < 0.5, rng.random(n) < rng.random())
    for _ in range(20):
        fixed = rng.random(n) < rng.random()
        expected, got = repair.search_reference(fixed), repair.search_c(fixed)
        assert (expected is None) == (got is None)
        if got is not None:
            assert got[0] == expected[0] and np.array_equal(got[1], expected[1])
            witness = repair.find(fixed)
            assert np.array_equal(witness[0][fixed], instance[0][fixed])
            assert forward(model, witness).prediction[0] != target
            assert np.array_equal(
                witness[0].astype(np.float32) @ model.weights[0].T.astype(np.float32), repair._inputs[0]
            )


@settings(max_examples=40, deadline=None)
@given(**case_args)
def test_rival_gate_in_c_equals_the_numpy_bookkeeping(seed, kind, reset, n_steps):
    """The C per-question bookkeeping (fixed masks, rival bounds, kept cores' counts,
    then "ruled out by its bound" and "covered by a kept core" per rival) equals the numpy
    reference over random sequences of fixed sets, feature groupings and kept cores."""
    model, instance, rng = one_layer_case(seed, kind, reset, n_steps)
    features = random_features(rng, model.n_inputs)
    in_c, numpy = RivalSATOracle(model, instance, features), RivalSATOracle(model, instance, features)
    if not in_c._gate.in_c:
        if os.environ.get("XSNN_REQUIRE_C_KERNEL", "").strip() not in ("", "0", "false", "no"):
            pytest.fail("XSNN_REQUIRE_C_KERNEL is set but the C rival helpers have no rival_gate")
        pytest.skip("C rival helpers not built")
    numpy._gate.in_c = False
    n_features, n_rivals = len(features), len(in_c._rivals)
    fixed = set(range(n_features))
    for step in range(30):
        if rng.random() < 0.1:  # a jump: many features change at once
            fixed = set(np.flatnonzero(rng.random(n_features) < 0.5).tolist())
        else:
            for k in rng.choice(n_features, size=int(rng.integers(1, 4))).tolist():
                fixed ^= {k}
        frozen = frozenset(fixed)
        got, expected = in_c._gate.advance(frozen), numpy._gate.advance(frozen)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]), step
        assert np.array_equal(in_c._gate.fixed_mask, numpy._gate.fixed_mask)
        assert np.array_equal(in_c._gate.fixed_pixels, numpy._gate.fixed_pixels)
        assert np.array_equal(in_c._bound.bounds, numpy._bound.bounds)
        assert np.array_equal(in_c._cores.missing, numpy._cores.missing)
        if n_rivals and fixed and rng.random() < 0.5:  # keep a core (a subset of the fixed set) in both
            r = int(rng.integers(n_rivals))
            core = rng.choice(sorted(fixed), size=int(rng.integers(1, len(fixed) + 1)), replace=False)
            in_c._cores.add(r, core)
            numpy._cores.add(r, core)


@pytest.mark.parametrize("seed", range(6))
def test_oracle_without_the_c_helpers_takes_the_same_paths(seed):
    """With the C repair search and rival gate switched off (their numpy references, as on an
    install without the kernel), deletion asks the same questions, answers each by the same path
    and returns the same AXp."""
    rng = np.random.default_rng(500 + seed)
    n_inputs = 14
    model = random_model(rng, [12], n_inputs, 5, weight_kind="ternary", n_steps=2, max_threshold=3)
    instance = model.encode(rng.integers(0, 256, size=(1, n_inputs)))[0]
    order = rng.permutation(n_inputs).tolist()
    runs = []
    for in_c in (True, False):
        oracle = RivalSATOracle(model, instance)
        oracle._gate.in_c = oracle._gate.in_c and in_c
        oracle._repair.in_c = oracle._repair.in_c and in_c
        with DeletionAXp(oracle, order=order) as algorithm:
            result = algorithm.compute()
        runs.append((result.features, dict(result.stats["calls"]), oracle.pruned, oracle.skipped_by_cores))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("seed", range(8))
def test_witness_repair_gives_genuine_witnesses_and_the_same_axp(seed):
    """Repaired witnesses are counterexamples (check() re-runs each through the reference
    forward), verdicts equal brute force, and deletion gives the AXp of the oracle without any
    of its options, in several orders; repair answers many questions."""
    rng = np.random.default_rng(300 + seed)
    n_inputs = 12
    model = random_model(rng, [10], n_inputs, 4, weight_kind="ternary", n_steps=2, max_threshold=3)
    instance = model.encode(rng.integers(0, 256, size=(1, n_inputs)))[0]
    truth = BruteForceOracle(model, instance)
    repaired = 0
    for _ in range(3):
        order = rng.permutation(n_inputs).tolist()
        fast = RivalSATOracle(model, instance)
        plain = plain_rival_sat(model, instance)
        with DeletionAXp(fast, order=order) as a, DeletionAXp(plain, order=order) as b:
            assert a.compute().features == b.compute().features
        repaired += fast.stats.calls.get("rival-repair", 0)
        checker = RivalSATOracle(model, instance)
        for k in range(n_inputs + 1):  # deletion-like questions, compared with brute force
            fixed = frozenset(order[k:])
            assert checker.check(fixed).verdict is truth.check(fixed).verdict
        repaired += checker.stats.calls.get("rival-repair", 0)
    assert repaired > 0


def test_one_sided_problems_drop_rivals_the_bounds_rule_out():
    model, instance, rng = one_layer_case(7, "ternary", "zero", 2)
    target = int(forward(model, instance).prediction[0])
    features = FeatureSet.pixels(model.n_inputs)
    everything = frozenset(range(model.n_inputs))
    assert build_rival_problems(model, instance, features, everything, target) == []
    problems = build_rival_problems(model, instance, features, frozenset(), target)
    assert all(p.rival != target and p.upper >= p.need for p in problems)
    assert [p.need - p.upper for p in problems] == sorted(p.need - p.upper for p in problems)


def test_incremental_sat_cores_free_many_features_on_a_sparse_net():
    """Real cores: on a sparse 60-input net the per-rival SAT cores are often smaller than the fixed set."""
    rng = np.random.default_rng(11)
    model = random_model(rng, [12], 60, 3, weight_kind="ternary", n_steps=2, max_threshold=3)
    sparse = tuple((w * (rng.random(w.shape) < 0.15)).astype(w.dtype) for w in model.weights)
    model = dataclasses.replace(model, weights=sparse)
    instance = model.encode(rng.integers(0, 256, size=(1, 60)))[0]
    with RivalSATOracle(model, instance) as oracle:
        check = oracle.check(range(60))
        assert check.verdict is Verdict.ENTAILED
        assert len(check.core) < 60


def test_rival_oracle_errors_are_clear():
    rng = np.random.default_rng(0)
    latency = random_model(rng, [3], 5, 3, n_steps=2, coding=LatencyCoding())
    x = latency.encode(rng.integers(0, 256, size=(1, 5)))[0]
    assert not rival_sat_applies(latency, x) and not rival_split_applies(latency, x)
    with pytest.raises(ValueError, match="static coding"):
        RivalSATOracle(latency, x)
    static = random_model(rng, [3], 5, 3, n_steps=2)
    y = static.encode(rng.integers(0, 256, size=(1, 5)))[0]
    with pytest.raises(ValueError, match="native AtMost"):
        RivalSATOracle(static, y, solver="cadical195")
    with pytest.raises(ValueError, match="unknown CP-SAT parameter"):
        CPSATOracle(static, y, parameters={"no_such_parameter": 1})
    with pytest.raises(ValueError, match="probe_seconds"):
        CPSATOracle(static, y, probe_seconds=-1)
    two_layers = random_model(rng, [3, 2], 5, 3, n_steps=2)
    assert not rival_sat_applies(two_layers, y)
    # where the rival SAT oracle does not apply the portfolio is CP-SAT alone
    assert isinstance(exact_oracle_factory("portfolio")(latency, x), CPSATOracle)
    sat, cp = RivalSATOracle(static, y), CPSATOracle(static, y)
    with pytest.raises(ValueError, match="budgets"):
        PortfolioOracle([sat, cp], [])
    with pytest.raises(ValueError, match="positive"):
        PortfolioOracle([sat, cp], [0.0])
    with pytest.raises(ValueError, match="same question"):
        PortfolioOracle([sat, CPSATOracle(static, y, target=(cp.target + 1) % 3)], [0.1])


def test_portfolio_budget_runs_out_to_the_next_stage():
    """A first stage that cannot answer within its budget hands the question to the next."""
    model, instance, _ = one_layer_case(5, "ternary", "zero", 2)
    truth = BruteForceOracle(model, instance)
    built = []

    def cpsat_stage():
        built.append(True)
        return CPSATOracle(model, instance)

    portfolio = PortfolioOracle([RivalSATOracle(model, instance), cpsat_stage], [1e-9])
    assert not built  # a stage given as a function is built when first needed
    for fixed in ([], range(model.n_inputs), range(0, model.n_inputs, 2)):
        check = portfolio.check(fixed)
        assert check.verdict is truth.check(fixed).verdict
    assert built == [True]
    assert portfolio.check([], time_limit=0).verdict is Verdict.UNKNOWN
    other_target = (truth.target + 1) % model.n_classes
    wrong = PortfolioOracle(
        [RivalSATOracle(model, instance), lambda: CPSATOracle(model, instance, target=other_target)], [1e-9]
    )
    with pytest.raises(ValueError, match="same question"):
        wrong.check([])
    with pytest.raises(TypeError, match="not an EntailmentOracle"):
        PortfolioOracle([RivalSATOracle(model, instance), lambda: "cpsat"], [1e-9]).check([])
    with pytest.raises(TypeError, match="first stage"):
        PortfolioOracle([lambda: CPSATOracle(model, instance)], [])


@pytest.mark.parametrize("seed", range(6))
def test_deletion_with_the_portfolio_and_fast_paths_equals_plain_sat(seed):
    """The default exact backend behind the fast paths gives plain SAT deletion's AXp."""
    rng = np.random.default_rng(100 + seed)
    n_inputs = 24
    model = random_model(rng, [8], n_inputs, 3, weight_kind="ternary", n_steps=2, max_threshold=4)
    instance = model.encode(rng.integers(0, 256, size=(1, n_inputs)))[0]
    order = rng.permutation(n_inputs).tolist()
    with DeletionAXp(SATOracle(model, instance), order=order) as algorithm:
        plain = algorithm.compute()
    with DeletionAXp(make_oracle(model, instance, backend="portfolio"), order=order) as algorithm:
        fast = algorithm.compute()
    with DeletionAXp(LayeredOracle(RivalSATOracle(model, instance)), order=order) as algorithm:
        layered_sat = algorithm.compute()
    assert fast.features == plain.features == layered_sat.features
    assert fast.status.value == "complete"
