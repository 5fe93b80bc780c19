"""Ball enumeration (solvers/ball.py) against brute force over the distance ball on small random
networks, its C inner loops against their numpy reference, the enumeration verifier, the choice
function, and identity with the solvers on a shipped model."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.features import FeatureSet
from xsnn.kernel import available_implementations
from xsnn.model import random_model
from xsnn.solvers.axp import DeletionAXp, QuickXplainAXp
from xsnn.solvers.ball import (
    BALL_INPUT_LIMIT,
    BallChoice,
    BallOracle,
    ball_choice,
    ball_size,
    enumeration_size,
    verify_by_enumeration,
)
from xsnn.solvers.ballscan import BallScan
from xsnn.solvers.ballscan import available_implementations as scan_implementations
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.certificate import AXpCertificate
from xsnn.solvers.cxp import DeletionCXp
from xsnn.solvers.oracle import Verdict
from xsnn.solvers.result import NoExplanationError

from conftest import SEEDS

SCAN_IMPLEMENTATIONS = list(reversed(scan_implementations()))  # numpy first


def random_case(
    seed: int, *, static: bool | None = None, layers: int | None = None, max_inputs: int = 8, odd_instance: bool = True
):
    """A small random network (1-2 spiking layers, binary or ternary, static or latency coding,
    either reset), an instance (sometimes raw spikes outside the coding's domain), and features
    of 1-3 pixels (sometimes a pixel of no feature)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, max_inputs + 1))
    n_layers = layers or int(rng.integers(1, 3))
    static = rng.random() < 0.6 if static is None else static
    n_steps = int(rng.integers(1, 4))
    coding = StaticCoding(int(rng.integers(1, 256))) if static else LatencyCoding(int(rng.integers(1, 256)))
    model = random_model(
        rng,
        [int(rng.integers(1, 6)) for _ in range(n_layers)],
        n,
        int(rng.integers(2, 5)),
        weight_kind=str(rng.choice(["binary", "ternary"])),
        reset=str(rng.choice(["zero", "subtract"])),
        n_steps=n_steps,
        coding=coding,
        max_threshold=int(rng.integers(1, 4)),
    )
    if odd_instance and rng.random() < 0.15:  # raw spikes: a pixel's train may lie outside the free domain
        instance = rng.integers(0, 2, size=(n_steps, n)).astype(np.uint8)
    else:
        instance = model.encode(rng.integers(0, 256, size=(1, n)))[0]
    return model, instance, random_features(rng, n), rng


def random_features(rng: np.random.Generator, n: int) -> FeatureSet:
    if rng.random() < 0.4:
        return FeatureSet.pixels(n)
    order = rng.permutation(n)[: max(1, n - int(rng.random() < 0.3))]  # maybe one pixel of no feature
    groups, i = [], 0
    while i < len(order):
        size = int(rng.integers(1, 4))
        groups.append(tuple(int(p) for p in order[i : i + size]))
        i += size
    return FeatureSet(tuple(groups), tuple(f"g{k}" for k in range(len(groups))), n)


def oracles(model, instance, features, **args):
    """The ball oracle with every engine that applies, bounds always and never, each scan implementation."""
    out = []
    engines = ["kernel"] + (
        ["currents"]
        if len(model.layer_sizes) == 1 and model.coding.name == "static" and np.all(instance == instance[:1])
        else []
    )
    for engine in engines:
        for bounds in ("always", "never"):
            implementations = SCAN_IMPLEMENTATIONS if engine == "currents" else available_implementations()
            for implementation in implementations:
                out.append(
                    BallOracle(
                        model, instance, features, engine=engine, bounds=bounds, implementation=implementation, **args
                    )
                )
    return out


def question_sequence(rng: np.random.Generator, n: int) -> list[frozenset[int]]:
    """Fixed sets in the orders the algorithms ask them: deletion (free one more), progression
    (fix more), random sets, repeats."""
    order = rng.permutation(n).tolist()
    out = [frozenset(order[k:]) for k in range(n + 1)]
    out += [frozenset(order[:k]) for k in range(n, -1, -1)]
    out += [frozenset(np.flatnonzero(rng.random(n) < rng.random()).tolist()) for _ in range(6)]
    out += [out[int(i)] for i in rng.integers(0, len(out), size=3)]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, k=st.integers(0, 3))
def test_ball_size_counts_the_brute_force_ball(seed, k):
    """ball_size equals the number of inputs brute force enumerates (unowned pixels, forced
    features); a fresh oracle without node bounds evaluates each input of the effective ball at
    most once, all of them when the answer is ENTAILED."""
    model, instance, features, rng = random_case(seed)
    for _ in range(3):
        fixed = frozenset(np.flatnonzero(rng.random(len(features)) < 0.4).tolist())
        expected = len(BruteForceOracle(model, instance, features, max_distance=k).completions(fixed))
        assert ball_size(model, instance, features, k, fixed) == expected
        oracle = BallOracle(model, instance, features, max_distance=k, bounds="never")
        effective = oracle.effective_size(fixed)
        assert effective <= expected
        if oracle.check(fixed).verdict is Verdict.ENTAILED and oracle.ball_stats.null_skips == 0:
            assert oracle.ball_stats.inputs == effective
        else:
            assert oracle.ball_stats.inputs <= effective


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, k=st.integers(0, 3), other_target=st.booleans())
def test_oracle_equals_brute_force_on_any_sequence_of_questions(seed, k, other_target):
    """Every engine, with and without node bounds, in C and numpy, gives brute force's verdict on
    deletion-ordered, progression-ordered, random and repeated questions (so the incremental mode
    and the memos are exercised in every order); witnesses are verified by the oracle base class."""
    model, instance, features, rng = random_case(seed)
    target = int(rng.integers(0, model.n_classes)) if other_target else None
    truth = BruteForceOracle(model, instance, features, target=target, max_distance=k)
    ball = oracles(model, instance, features, target=target, max_distance=k)
    for fixed in question_sequence(rng, len(features)):
        expected = truth.check(fixed).verdict
        for oracle in ball:
            check = oracle.check(fixed)
            assert check.verdict is expected, (oracle.engine.name, oracle.bounds, sorted(fixed))
            if check.verdict is Verdict.ENTAILED:
                assert check.core == fixed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, k=st.integers(1, 3))
@example(seed=37933, k=2)  # a fixed forced feature made a neuron vary that the kernel engine took as constant
def test_instances_outside_the_free_domain(seed, k):
    """Raw-spike instances whose trains lie outside the coding's free domain: a freed feature with
    such a pixel must change (it is outside the ball otherwise), which breaks monotonicity; the
    oracle still equals brute force on every sequence of questions."""
    rng = np.random.default_rng(seed)
    n, n_steps = int(rng.integers(2, 7)), int(rng.integers(2, 4))
    coding = StaticCoding() if rng.random() < 0.5 else LatencyCoding()
    model = random_model(
        rng,
        [int(rng.integers(1, 5))],
        n,
        int(rng.integers(2, 4)),
        n_steps=n_steps,
        coding=coding,
        weight_kind=str(rng.choice(["binary", "ternary"])),
        max_threshold=2,
    )
    instance = rng.integers(0, 2, size=(n_steps, n)).astype(np.uint8)
    features = random_features(rng, n)
    truth = BruteForceOracle(model, instance, features, max_distance=k)
    ball = oracles(model, instance, features, max_distance=k)
    for fixed in question_sequence(rng, len(features)):
        expected = truth.check(fixed).verdict
        for oracle in ball:
            assert oracle.check(fixed).verdict is expected, (oracle.engine.name, sorted(fixed))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, k=st.integers(1, 3))
def test_one_layer_static_nets_prune_and_stay_exact(seed, k):
    """Wider one-layer static nets (where node bounds prune and null features occur): the currents
    and kernel engines equal brute force on deletion and random questions."""
    model, instance, features, rng = random_case(seed, static=True, layers=1, max_inputs=11, odd_instance=False)
    truth = BruteForceOracle(model, instance, features, max_distance=k)
    truth.max_completions = 1 << 20
    fresh = BallOracle(model, instance, features, max_distance=k, bounds="always")
    pruned, effective = fresh.pruned_size(), fresh.effective_size()
    if all(len(g) == 1 for g in features.groups):  # one move per feature: the counts are exact
        assert pruned <= effective
        roots = len(fresh.domain.trains) ** len(fresh.domain.unowned)
        assert roots <= fresh.pruned_size(depth=0) <= effective
        if fresh.check(frozenset()).verdict is Verdict.ENTAILED:  # the full ball, bounded at least as tightly
            assert fresh.ball_stats.inputs <= pruned
    ball = oracles(model, instance, features, max_distance=k)
    n = len(features)
    for fixed in question_sequence(rng, n)[: n + 1] + question_sequence(rng, n)[-6:]:
        expected = truth.check(fixed).verdict
        for oracle in ball:
            assert oracle.check(fixed).verdict is expected, (oracle.engine.name, oracle.bounds, sorted(fixed))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, k=st.integers(0, 3))
def test_explanations_equal_brute_force_ones(seed, k):
    """Deletion and QuickXplain AXps and deletion CXps over the ball oracle equal those over brute
    force, and the deletion runs incrementally."""
    model, instance, features, _ = random_case(seed, odd_instance=False)
    truth = BruteForceOracle(model, instance, features, max_distance=k)
    oracle = BallOracle(model, instance, features, max_distance=k)
    try:
        expected = DeletionAXp(truth).compute().features
    except NoExplanationError:
        return
    assert DeletionAXp(oracle).compute().features == expected
    if len(features) > 1 and oracle.ball_stats.questions > oracle.ball_stats.null_skips + 1:
        assert oracle.ball_stats.incremental + oracle.ball_stats.memo > 0
    fresh = BallOracle(model, instance, features, max_distance=k)
    assert QuickXplainAXp(fresh).compute().features == QuickXplainAXp(truth).compute().features
    try:
        cxp = DeletionCXp(truth).compute().features
    except NoExplanationError:
        return
    assert DeletionCXp(BallOracle(model, instance, features, max_distance=k)).compute().features == cxp


def test_incremental_mode_enumerates_only_new_inputs():
    """After an ENTAILED free set E, the question for E + {i} evaluates only inputs that change i:
    at k = 2 with one-pixel features that is 1 + |E| inputs (no null features, no bounds)."""
    rng = np.random.default_rng(7)
    model = random_model(rng, [6], 10, 3, weight_kind="binary", n_steps=2, max_threshold=1)
    instance = model.encode(rng.integers(0, 256, size=(1, 10)))[0]
    oracle = BallOracle(model, instance, max_distance=2, engine="kernel", bounds="never")
    oracle.engine.null_features()[:] = False  # evaluate every feature (a sound choice, only slower)
    oracle._candidate[:] = True
    oracle._constant = None
    everything = frozenset(range(10))
    truth = BruteForceOracle(model, instance, max_distance=2)
    assert oracle.check(everything).verdict is Verdict.ENTAILED  # the instance itself (E = {})
    free: set[int] = set()
    for i in range(10):
        before = oracle.ball_stats.inputs
        check = oracle.check(everything - free - {i})
        assert check.verdict is truth.check(everything - free - {i}).verdict
        if check.verdict is Verdict.ENTAILED:
            # round 1 evaluates {i}, round 2 the pairs {i, j}, j in E: 1 + |E| inputs
            assert oracle.ball_stats.inputs - before == 1 + len(free)
            free.add(i)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, implementation=st.sampled_from(SCAN_IMPLEMENTATIONS))
def test_scan_equals_a_direct_evaluation(seed, implementation):
    """BallScan.children / leaves / bounds (C and numpy) against scores computed from scratch:
    children's scores equal a direct evaluation of the changed inputs, leaves returns the first
    child that reaches, and bounds hold for every input within the allowed rises and falls."""
    rng = np.random.default_rng(seed)
    L, R, U, M = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(0, 8)), int(rng.integers(1, 7))
    unit_col = rng.integers(0, L, size=U)
    unit_at = rng.integers(-3, 4, size=U)
    gains = rng.integers(-3, 4, size=(U, R))
    need = rng.integers(-2, 3, size=R)
    base = rng.integers(-3, 3, size=R)
    delta = rng.integers(-2, 3, size=(M, L)) * (rng.random((M, L)) < 0.6)
    touched = delta[:, unit_col] != 0 if U else np.zeros((M, 0), bool)
    move_of, unit_of = np.nonzero(touched)
    move_ptr = np.concatenate([[0], np.cumsum(np.bincount(move_of, minlength=M))])
    scan = BallScan(
        L, move_ptr, unit_of, delta[move_of, unit_col[unit_of]], unit_col, unit_at, gains, need, implementation
    )

    def direct(cur):  # (N, R) scores from scratch
        return base + (cur[:, unit_col] >= unit_at).astype(np.int64) @ gains.reshape(U, R)

    parents = rng.integers(-4, 5, size=(int(rng.integers(1, 5)), L))
    parent_scores = scan.scores(parents, base)
    assert np.array_equal(parent_scores, direct(parents))
    n = int(rng.integers(0, 12))
    parent_idx, moves = rng.integers(0, len(parents), size=n), rng.integers(0, M, size=n)
    out = np.empty((n, R), np.int32)
    first = scan.children(parents, parent_scores, parent_idx, moves, out)
    expected = direct(parents[parent_idx] + delta[moves])
    assert np.array_equal(out, expected)
    reach = np.flatnonzero((expected >= need).any(axis=1))
    assert first == (int(reach[0]) if len(reach) else -1)
    assert scan.children(parents, parent_scores, parent_idx, moves) == first
    move_ids = rng.integers(0, M, size=int(rng.integers(1, 6)))
    lo = rng.integers(0, len(move_ids) + 1, size=len(parents))
    hi = np.minimum(lo + rng.integers(0, 4, size=len(parents)), len(move_ids))
    pairs = [(p, move_ids[i]) for p in range(len(parents)) for i in range(lo[p], hi[p])]
    reach = [c for c, (p, m) in enumerate(pairs) if (direct(parents[[p]] + delta[[m]]) >= need).any()]
    assert scan.leaves(parents, parent_scores, lo, hi, move_ids) == (reach[0] if reach else -1)
    rise = rng.integers(0, 3, size=(3, L))
    fall = rng.integers(0, 3, size=(3, L))
    rows = rng.integers(0, 3, size=len(parents))
    may = scan.bounds(parents, parent_scores, rows, rise, fall)
    for p in range(len(parents)):  # every input within the rises and falls
        steps = [range(-int(fall[rows[p], j]), int(rise[rows[p], j]) + 1) for j in range(L)]
        reached = any((direct(parents[[p]] + np.array(s)[None]) >= need).any() for s in itertools.product(*steps))
        assert may[p] or not reached
    if "c" in SCAN_IMPLEMENTATIONS:  # C and numpy agree bit for bit
        other = BallScan(
            L,
            move_ptr,
            unit_of,
            delta[move_of, unit_col[unit_of]],
            unit_col,
            unit_at,
            gains,
            need,
            "numpy" if implementation == "c" else "c",
        )
        assert np.array_equal(other.bounds(parents, parent_scores, rows, rise, fall), may)
        assert other.leaves(parents, parent_scores, lo, hi, move_ids) == scan.leaves(
            parents, parent_scores, lo, hi, move_ids
        )


def test_scan_rejects_bad_indices():
    scan = BallScan(2, [0, 1], [0], [1], [1], [0], [[1]], [1])
    for implementation in SCAN_IMPLEMENTATIONS:
        scan = BallScan(2, [0, 1], [0], [1], [1], [0], [[1]], [1], implementation)
        cur, scores = np.zeros((1, 2), np.int32), np.zeros((1, 1), np.int32)
        with pytest.raises(ValueError):
            scan.children(cur, scores, [1], [0])
        with pytest.raises(ValueError):
            scan.children(cur, scores, [0], [3])
        with pytest.raises(ValueError):
            scan.leaves(cur, scores, [0], [2], [0])
        with pytest.raises(ValueError):
            scan.bounds(cur, scores, [5], np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError):
        BallScan(2, [0, 1], [3], [1], [1], [0], [[1]], [1])


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, budget=st.integers(1, 3))
def test_suffix_sums_are_the_largest_rises(seed, budget):
    """The node bound's per-neuron rise over the later features is the sum of the ``budget``
    largest per-feature rises, for every position (full table and single rows)."""
    model, instance, features, rng = random_case(seed, static=True, layers=1, odd_instance=False)
    oracle = BallOracle(model, instance, features, max_distance=3, engine="currents")
    engine = oracle.engine
    order = rng.permutation(len(features))
    engine._order, engine._suffix = order, {}
    positions = np.arange(len(order) + 1)
    for kind, per_feature in (("rise", engine.feature_rise), ("fall", engine.feature_fall)):
        expected = np.array(
            [
                np.sort(per_feature[order[q:]], axis=0)[::-1][:budget].sum(axis=0)
                if q < len(order)
                else np.zeros(per_feature.shape[1])
                for q in positions
            ]
        )
        assert np.array_equal(engine._top(kind, budget, positions[:3]), expected[:3])  # a few rows, directly
        assert np.array_equal(engine._top(kind, budget, positions), expected)  # the whole table


def axp_certificate(seed: int, k: int):
    model, instance, features, _ = random_case(seed, odd_instance=False)
    oracle = BruteForceOracle(model, instance, features, max_distance=k)
    try:
        return DeletionAXp(oracle).compute(), model, instance, features
    except NoExplanationError:
        return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=SEEDS, k=st.integers(0, 3))
def test_verifier_accepts_true_and_rejects_false_certificates(seed, k):
    """verify_by_enumeration confirms a brute-force AXp and CXp, and reports a set with a
    necessary feature removed (not sufficient) and a fake minimality witness."""
    found = axp_certificate(seed, k)
    if found is None:
        return
    result, model, instance, features = found
    cert = result.certificate
    report = verify_by_enumeration(result)
    assert report.ok and report.verifier == ("ball",) and report.independent
    assert report.minimal == result.minimal
    if cert.features:
        i = min(cert.features)
        smaller = dataclasses.replace(
            cert,
            features=cert.features - {i},
            sufficiency=None,
            witnesses={j: w for j, w in cert.witnesses.items() if j != i},
        )
        bad = verify_by_enumeration(smaller)
        assert not bad.ok and any("REFUTED" in p for p in bad.problems)
        fake = dataclasses.replace(cert, witnesses={**cert.witnesses, i: instance})  # the instance flips nothing
        bad = verify_by_enumeration(fake)
        assert not bad.ok and any(f"feature {i}" in p for p in bad.problems)
    try:
        cxp = DeletionCXp(BruteForceOracle(model, instance, features, max_distance=k)).compute()
    except NoExplanationError:
        return
    assert verify_by_enumeration(cxp).ok


def test_verifier_refuses_balls_that_are_too_large_and_unbounded_certificates():
    found = None
    seed = 0
    while found is None or not found[0].features:
        found = axp_certificate(seed, 2)
        seed += 1
    result = found[0]
    size = enumeration_size(result)
    # the enumeration counts the inputs actually visited: at least the instance itself, at most
    # the whole ball (its pruning may only shrink it); the limit test below needs this size
    assert 1 <= size <= ball_size(found[1], found[2], found[3], 2, result.certificate.features)
    with pytest.raises(ValueError, match="more than the limit"):
        verify_by_enumeration(result, limit=size - 1)
    unbounded = dataclasses.replace(
        result.certificate, question=dataclasses.replace(result.certificate.question, max_distance=None)
    )
    assert isinstance(unbounded, AXpCertificate)
    with pytest.raises(ValueError, match="no distance bound"):
        verify_by_enumeration(unbounded)


def test_ball_choice_is_pure_and_follows_the_limit():
    rng = np.random.default_rng(3)
    model = random_model(rng, [4], 12, 3, n_steps=2)
    instance = model.encode(rng.integers(0, 256, size=(1, 12)))[0]
    none = ball_choice(model, instance, None, None)
    assert isinstance(none, BallChoice) and not none.use and none.size == 0
    size = sum(math.comb(12, j) for j in range(3))
    small = ball_choice(model, instance, None, 2)
    assert small.use and small.size == size and small.engine == "currents" and str(size) in small.reason
    assert small == ball_choice(model, instance, None, 2) and small.effective_size is None
    over = ball_choice(model, instance, None, 2, limit=size - 1)  # then the part the oracle enumerates counts
    oracle = BallOracle(model, instance, max_distance=2)
    effective, pruned = oracle.effective_size(), oracle.pruned_size()
    assert pruned <= effective <= size
    assert over.effective_size == effective
    assert over.use == (effective <= size - 1 or pruned <= size - 1)
    assert over.pruned_size == (None if effective <= size - 1 else pruned)
    assert not ball_choice(model, instance, None, 2, limit=0).use
    choice = ball_choice(model, instance, None, 2, fixed=frozenset(range(6)))
    assert choice.size == sum(math.comb(6, j) for j in range(3))
    assert small.as_dict()["limit"] == BALL_INPUT_LIMIT


def test_bad_arguments_raise_clear_errors():
    rng = np.random.default_rng(4)
    model = random_model(rng, [3, 3], 6, 2, n_steps=2)
    instance = model.encode(rng.integers(0, 256, size=(1, 6)))[0]
    with pytest.raises(ValueError, match="distance bound"):
        BallOracle(model, instance)
    with pytest.raises(ValueError, match="currents engine"):
        BallOracle(model, instance, max_distance=1, engine="currents")
    with pytest.raises(ValueError, match="engine must be"):
        BallOracle(model, instance, max_distance=1, engine="gpu")
    with pytest.raises(ValueError, match="bounds must be"):
        BallOracle(model, instance, max_distance=1, bounds="sometimes")
    with pytest.raises(ValueError, match="max_distance must be >= 0"):
        BallOracle(model, instance, max_distance=-1)
    big = FeatureSet((tuple(range(6)),), ("all",), 6)
    assert ball_size(model, instance, big, 1) == 2**6


def test_time_limit_and_interrupt_give_unknown_and_no_memo():
    """A time limit, or interrupt() from another thread, stops a long enumeration (here: the whole
    k = 3 ball of a shipped model, about 3e7 inputs) with UNKNOWN, and nothing is remembered."""
    import threading

    import xsnn
    from xsnn import data

    model = xsnn.load_model("mnist10-sparse192")
    images, _ = data.load_sample()
    spikes = model.encode(images[:1])[0]
    oracle = BallOracle(model, spikes, max_distance=3)
    assert oracle.check(frozenset(), time_limit=1e-4).verdict is Verdict.UNKNOWN
    assert not oracle._entailed and not oracle._refuted
    oracle = BallOracle(model, spikes, max_distance=3)
    timer = threading.Timer(0.05, oracle.interrupt)
    timer.start()
    check = oracle.check(frozenset())
    timer.join()
    assert check.verdict is Verdict.UNKNOWN and oracle.ball_stats.inputs < 30_000_000
    assert not oracle._entailed and not oracle._refuted


@pytest.mark.parametrize("name, k", [("mnist10-sparse192", 1), ("mnist159-binary", 2)])
def test_shipped_model_axps_equal_the_solvers(name, k):
    """On shipped models, the ball oracle's deletion AXp equals the default solver oracle's."""
    import xsnn
    from xsnn import data
    from xsnn.solvers.backends import make_oracle

    model = xsnn.load_model(name)
    images, labels = data.load_sample()
    chosen = np.flatnonzero(np.isin(labels, np.asarray(model.labels)))[:2]
    for index in chosen.tolist():
        spikes = model.encode(images[index : index + 1])[0]
        ball = DeletionAXp(BallOracle(model, spikes, max_distance=k)).compute()
        kernel = DeletionAXp(BallOracle(model, spikes, max_distance=k, engine="kernel")).compute()
        solver = DeletionAXp(make_oracle(model, spikes, max_distance=k)).compute()
        assert ball.status.value == "complete" and solver.status.value == "complete"
        assert ball.features == solver.features == kernel.features
        assert verify_by_enumeration(solver).ok


def test_ball_scan_in_c_required_in_ci():
    """CI sets XSNN_REQUIRE_C_KERNEL=1: then the ball scan's C twin must be built (the tests above
    compare it with the numpy reference only where it is)."""
    if os.environ.get("XSNN_REQUIRE_C_KERNEL", "").strip() in ("", "0", "false", "no"):
        pytest.skip("XSNN_REQUIRE_C_KERNEL is not set")
    assert "c" in SCAN_IMPLEMENTATIONS
    assert BallScan(2, [0, 1], [0], [1], [1], [0], [[1]], [1]).implementation == "c"
