"""Explanation algorithms against exhaustive ground truth on tiny random networks.

The ground truth enumerates every admissible input once: an input ``x`` that changes the
prediction refutes exactly the fixed sets disjoint from ``D(x)`` (the features where it
differs from the instance). From the set of such ``D(x)`` every sufficient set, every AXp
(minimal sufficient set) and every CXp (minimal set whose freeing can change the prediction)
follows by bitmask arithmetic.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsnn.model import BSNN, forward
from xsnn.solvers.axp import DeletionAXp, ProgressionAXp, QuickXplainAXp, feature_order
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.certificate import AXpCertificate, verify
from xsnn.solvers.cxp import DeletionCXp
from xsnn.solvers.enumerate import Enumerator, FeatureAttribution, Relevance
from xsnn.solvers.layered import PATHS, LayeredOracle
from xsnn.solvers.minimum import MinimumAXp
from xsnn.solvers.oracle import Check, EntailmentOracle, Verdict
from xsnn.solvers.result import NoExplanationError, RelevanceAnswer, Status

from conftest import SEEDS, random_question

AXP_ALGORITHMS = (DeletionAXp, QuickXplainAXp, ProgressionAXp)


# ---------------------------------------------------------------------------- ground truth


def tuned(exact, *, without=(), **budgets) -> LayeredOracle:
    """A LayeredOracle with the paths ``without`` off and some budgets changed (class attributes,
    set in a subclass as a benchmark would)."""
    return type("TunedLayeredOracle", (LayeredOracle,), budgets)(exact, paths=set(PATHS) - set(without))


def make_case(seed: int, max_distance: int | None | str = "random", groups: bool = False):
    """A random tiny question (:func:`conftest.random_question`): (model, instance, features,
    max_distance, rng); ``max_distance`` "random": none at odds 0.6, else 1..len(features)."""
    case = random_question(
        seed, groups="partition" if groups else None, distance=(0.6, 1) if max_distance == "random" else None
    )
    return (
        case.model,
        case.instance,
        case.features,
        case.max_distance if max_distance == "random" else max_distance,
        case.rng,
    )


@dataclass
class Truth:
    n: int
    sufficient: np.ndarray  # bool per subset bitmask
    axps: set[frozenset[int]]
    cxps: set[frozenset[int]]

    def is_sufficient(self, s) -> bool:
        return bool(self.sufficient[_mask(s)])


def _mask(s) -> int:
    return sum(1 << int(i) for i in s)


def _members(mask: int, n: int) -> frozenset[int]:
    return frozenset(i for i in range(n) if mask >> i & 1)


def ground_truth(model, instance, features, max_distance) -> Truth:
    bf = BruteForceOracle(model, instance, features, max_distance=max_distance)
    xs = bf.completions(frozenset())
    flips = xs[forward(model, xs).prediction != bf.target]
    owner = features.feature_of_pixel()
    n = len(features)
    masks = set()
    for x in flips:
        differs = np.any(x != instance, axis=0)
        masks.add(_mask(set(owner[differs & (owner >= 0)].tolist())))
    subsets = np.arange(1 << n)
    m = np.array(sorted(masks), dtype=np.int64)
    refuted = np.any((subsets[:, None] & m[None, :]) == 0, axis=1) if len(m) else np.zeros(1 << n, bool)
    sufficient = ~refuted
    full = (1 << n) - 1
    axps, cxps = set(), set()
    for s in range(1 << n):
        bits = [i for i in range(n) if s >> i & 1]
        if sufficient[s] and all(not sufficient[s & ~(1 << i)] for i in bits):
            axps.add(_members(s, n))
        if not sufficient[full & ~s] and all(sufficient[full & ~(s & ~(1 << i))] for i in bits):
            cxps.add(_members(s, n))
    return Truth(n, sufficient, axps, cxps)


def oracle_for(
    model, instance, features, k, layered: bool, exhaustive_limit: int = 0, search_nodes: int = 0
) -> EntailmentOracle:
    """Brute force, or brute force behind the fast paths (the exhaustive and branch-and-bound paths
    are off by default: on tiny nets they would answer every question and hide the bounds and the
    attack)."""
    exact = BruteForceOracle(model, instance, features, max_distance=k)
    if not layered:
        return exact
    return tuned(exact, attack_evaluations=2000, exhaustive_limit=exhaustive_limit, search_nodes=search_nodes)


def random_order(rng, n: int):
    choice = int(rng.integers(5))
    return ("index", "reverse", "brightest", "darkest")[choice] if choice < 4 else rng.random(n)


class CoreBruteForce(BruteForceOracle):
    """Brute force with deterministic, history-independent cores (greedy, index order)."""

    name = "bruteforce-cores"

    def _check(self, fixed, time_limit):
        answer = super()._check(fixed, time_limit)
        if answer.verdict is not Verdict.ENTAILED:
            return answer
        core = set(fixed)
        for i in sorted(fixed):
            if super()._check(frozenset(core - {i}), None).verdict is Verdict.ENTAILED:
                core.discard(i)
        return Check(Verdict.ENTAILED, fixed, core=frozenset(core), path=self.name)


class FlakyOracle(EntailmentOracle):
    """Brute force that answers UNKNOWN to some questions (never to the all-fixed or all-free one)."""

    name = "flaky"

    def __init__(self, inner: BruteForceOracle, salt: int) -> None:
        super().__init__(inner.model, inner.instance, inner.features, inner.target, inner.max_distance)
        self.inner, self.salt = inner, salt

    def _check(self, fixed, time_limit):
        n = len(self.features)
        if 0 < len(fixed) < n and (hash((self.salt, tuple(sorted(fixed)))) % 3 == 0):
            return Check(Verdict.UNKNOWN, fixed, path=self.name)
        answer = self.inner.check(fixed)
        return Check(answer.verdict, fixed, answer.witness, answer.core, self.name)


class SlowOracle(BruteForceOracle):
    name = "slow"

    def _check(self, fixed, time_limit):
        time.sleep(0.01)
        return super()._check(fixed, time_limit)


def has_axp(model, instance, features, k) -> bool:
    return (
        BruteForceOracle(model, instance, features, max_distance=k).check(range(len(features))).verdict
        is Verdict.ENTAILED
    )


# ---------------------------------------------------------------------------- AXps


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, layered=st.booleans(), use_cores=st.booleans())
def test_axps_are_sufficient_and_minimal(seed, layered, use_cores):
    model, instance, features, k, rng = make_case(seed, groups=seed % 5 == 0)
    truth = ground_truth(model, instance, features, k)
    order = random_order(rng, len(features))
    results = []
    for algorithm in AXP_ALGORITHMS:
        with algorithm(oracle_for(model, instance, features, k, layered), order=order, use_cores=use_cores) as algo:
            result = algo.compute()
        assert result.kind == "axp" and result.status is Status.COMPLETE and result.minimal
        assert result.feature_set in truth.axps, f"{algorithm.__name__} returned a non-AXp {result.features}"
        report = verify(result, BruteForceOracle, require_independent=False)
        assert report.ok and report.minimal, report.problems
        results.append(result.features)
    # with exact verdicts, the three algorithms agree for the same removal order
    if not use_cores:
        assert results[0] == results[1] == results[2]


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, k=st.integers(1, 3))
def test_distance_restricted_axps(seed, k):
    model, instance, features, _, rng = make_case(seed, max_distance=None)
    k = min(k, len(features))
    truth = ground_truth(model, instance, features, k)
    for layered in (False, True):
        result = DeletionAXp(oracle_for(model, instance, features, k, layered), order="brightest").compute()
        assert result.feature_set in truth.axps
        assert result.certificate.question.max_distance == k
    # an unrestricted AXp stays sufficient under the distance bound (fewer inputs to rule out)
    if has_axp(model, instance, features, None):
        free = DeletionAXp(BruteForceOracle(model, instance, features), order="brightest").compute()
        assert truth.is_sufficient(free.features)


def test_order_options():
    model, instance, features, _, _ = make_case(4, max_distance=None)
    oracle = BruteForceOracle(model, instance, features)
    n = len(features)
    assert feature_order(oracle, "index") == list(range(n))
    assert feature_order(oracle, "reverse") == list(range(n))[::-1]
    scores = np.arange(n)[::-1].astype(float)
    assert feature_order(oracle, scores) == list(range(n))[::-1]  # lowest score tried first
    image = np.arange(n) * 10
    assert feature_order(oracle, "brightest", image=image) == list(range(n))[::-1]
    assert feature_order(oracle, "darkest", image=image) == list(range(n))
    with pytest.raises(ValueError, match="unknown order"):
        feature_order(oracle, "random")
    with pytest.raises(ValueError, match="one score per feature"):
        feature_order(oracle, np.zeros(n + 1))
    with pytest.raises(ValueError, match="positive"):
        DeletionAXp(oracle, time_limit=0)


# ---------------------------------------------------------------------------- identity with fast paths


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS)
def test_fast_paths_do_not_change_the_axp(seed):
    """use_cores=False: layered-over-bruteforce gives exactly the plain brute-force AXp, every algorithm."""
    model, instance, features, k, rng = make_case(seed, groups=seed % 4 == 0)
    if not has_axp(model, instance, features, k):
        return
    order = random_order(rng, len(features))
    exhaustive_limit = int(rng.choice([0, 8, 1 << 12]))
    search_nodes = int(rng.choice([0, 3, 1000]))
    for algorithm in AXP_ALGORITHMS:
        plain = algorithm(BruteForceOracle(model, instance, features, max_distance=k), order=order).compute()
        layered_oracle = oracle_for(
            model, instance, features, k, layered=True, exhaustive_limit=exhaustive_limit, search_nodes=search_nodes
        )
        fast = algorithm(layered_oracle, order=order).compute()
        assert fast.features == plain.features, algorithm.__name__


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_identity_with_cores_when_bounds_are_off(seed):
    """use_cores=True: identical when the fast paths only answer NOT_ENTAILED and cores are deterministic."""
    model, instance, features, k, rng = make_case(seed)
    if not has_axp(model, instance, features, k):
        return
    order = random_order(rng, len(features))
    for algorithm in (DeletionAXp, ProgressionAXp):
        plain = algorithm(
            CoreBruteForce(model, instance, features, max_distance=k), order=order, use_cores=True
        ).compute()
        fast_oracle = tuned(
            CoreBruteForce(model, instance, features, max_distance=k),
            without={"bounds", "cores"},
            exhaustive_limit=0,
            search_nodes=0,
            attack_evaluations=2000,
        )
        fast = algorithm(fast_oracle, order=order, use_cores=True).compute()
        assert fast.features == plain.features
        assert ground_truth(model, instance, features, k).is_sufficient(fast.features)


def test_lookahead_and_core_cache_keep_the_axp():
    """The look-ahead (earlier witnesses one move away) and the core cache (ENTAILED when the fixed
    set contains an earlier exact core) answer questions, and the AXp is still the plain one."""
    answered = {"lookahead": 0, "cores": 0}
    for seed in range(40):
        model, instance, features, _, rng = make_case(seed, max_distance=None, groups=seed % 5 == 0)
        if not has_axp(model, instance, features, None):
            continue
        order = random_order(rng, len(features))
        plain = DeletionAXp(CoreBruteForce(model, instance, features), order=order).compute()
        # no bounds, attack or search: the look-ahead and the cores face every question first
        layered = tuned(
            CoreBruteForce(model, instance, features), without={"bounds", "attack"}, exhaustive_limit=0, search_nodes=0
        )
        fast = DeletionAXp(layered, order=order).compute()
        assert fast.features == plain.features, seed
        assert ground_truth(model, instance, features, None).is_sufficient(fast.features)
        for path in answered:
            answered[path] += layered.stats.calls.get(path, 0)
    assert answered["lookahead"] > 0 and answered["cores"] > 0, answered


def test_fast_paths_answer_most_questions():
    """Not vacuous: the identity above is exercised with fast paths actually answering."""
    fast = total = 0
    for seed in range(12):
        model, instance, features, k, _ = make_case(seed)
        if not has_axp(model, instance, features, k):
            continue
        result = DeletionAXp(oracle_for(model, instance, features, k, layered=True)).compute()
        calls = result.stats["calls"]
        total += sum(calls.values())
        fast += sum(n for path, n in calls.items() if path != "bruteforce")
    assert total > 30 and fast >= 0.8 * total


def test_identity_over_sat():
    sat = pytest.importorskip("xsnn.solvers.sat")
    checked = 0
    for seed in range(8):
        model, instance, features, k, rng = make_case(seed)
        if not has_axp(model, instance, features, k):
            continue
        order = random_order(rng, len(features))
        for algorithm in AXP_ALGORITHMS:
            with algorithm(sat.SATOracle(model, instance, features, max_distance=k), order=order) as algo:
                plain = algo.compute()
            fast_oracle = LayeredOracle(sat.SATOracle(model, instance, features, max_distance=k))
            with algorithm(fast_oracle, order=order) as algo:
                fast = algo.compute()
            assert fast.features == plain.features
            assert ground_truth(model, instance, features, k).is_sufficient(fast.features)
            checked += 1
    assert checked >= 6


# ---------------------------------------------------------------------------- CXps, minimum, enumeration


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, layered=st.booleans(), use_witnesses=st.booleans())
def test_cxps_are_minimal_and_change_the_prediction(seed, layered, use_witnesses):
    model, instance, features, k, rng = make_case(seed, groups=seed % 5 == 0)
    truth = ground_truth(model, instance, features, k)
    oracle = oracle_for(model, instance, features, k, layered)
    if not truth.cxps:
        with pytest.raises(NoExplanationError):
            DeletionCXp(oracle).compute()
        return
    result = DeletionCXp(oracle, order=random_order(rng, len(features)), use_witnesses=use_witnesses).compute()
    assert result.kind == "cxp" and result.status is Status.COMPLETE
    assert result.feature_set in truth.cxps
    report = verify(result, BruteForceOracle, require_independent=False)
    assert report.ok and report.minimal, report.problems


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, layered=st.booleans())
def test_minimum_axp_and_enumeration_by_size(seed, layered):
    model, instance, features, k, _ = make_case(seed)
    if not has_axp(model, instance, features, k):
        return
    truth = ground_truth(model, instance, features, k)
    smallest = min(len(a) for a in truth.axps)
    result = MinimumAXp(oracle_for(model, instance, features, k, layered), upper_bound=layered).compute()
    assert result.status is Status.COMPLETE and result.optimal
    assert len(result.explanation) == smallest == result.lower_bound
    assert result.explanation.feature_set in truth.axps
    assert verify(result, BruteForceOracle, require_independent=False).ok
    search = MinimumAXp(oracle_for(model, instance, features, k, layered), minimise_cxps=not layered)
    found = [a.feature_set for a in search.enumerate()]
    assert search.status is Status.COMPLETE
    assert set(found) == truth.axps and len(found) == len(truth.axps)
    assert [len(a) for a in found] == sorted(len(a) for a in found)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, layered=st.booleans(), prefer=st.sampled_from(["axp", "cxp"]))
def test_enumeration_finds_all_axps_and_cxps(seed, layered, prefer):
    model, instance, features, k, _ = make_case(seed, groups=seed % 5 == 0)
    if not has_axp(model, instance, features, k):
        return
    truth = ground_truth(model, instance, features, k)
    result = Enumerator(oracle_for(model, instance, features, k, layered), prefer=prefer).compute()
    assert result.complete
    axps = [a.feature_set for a in result.axps]
    cxps = [c.feature_set for c in result.cxps]
    assert set(axps) == truth.axps and len(axps) == len(set(axps))
    assert set(cxps) == truth.cxps and len(cxps) == len(set(cxps))
    # duality: every AXp hits every CXp
    assert all(a & c for a in axps for c in cxps)
    for item in (result.axps + result.cxps)[:3]:
        assert verify(item, BruteForceOracle, require_independent=False).ok


@settings(max_examples=12, deadline=None)
@given(seed=SEEDS, layered=st.booleans())
def test_relevance_and_attribution(seed, layered):
    model, instance, features, k, _ = make_case(seed)
    if not has_axp(model, instance, features, k):
        return
    truth = ground_truth(model, instance, features, k)
    relevant = set().union(*truth.axps)
    relevance = Relevance(oracle_for(model, instance, features, k, layered))
    for t in range(len(features)):
        answer = relevance.compute(t)
        assert answer.status is Status.COMPLETE
        if t in relevant:
            assert answer.answer is RelevanceAnswer.RELEVANT
            assert t in answer.axp and answer.axp.feature_set in truth.axps
        else:
            assert answer.answer is RelevanceAnswer.IRRELEVANT and answer.axp is None
    ffa = FeatureAttribution(oracle_for(model, instance, features, k, layered)).compute()
    assert ffa.complete and ffa.n_axps == len(truth.axps)
    expected = np.array([sum(t in a for a in truth.axps) for t in range(len(features))])
    assert np.array_equal(ffa.counts, expected)
    assert np.allclose(ffa.scores, expected / len(truth.axps))
    assert np.isclose(ffa.scores.sum(), np.mean([len(a) for a in truth.axps]))
    assert set(np.flatnonzero(ffa.scores > 0).tolist()) == relevant


def test_attribution_is_anytime():
    for seed in range(40):
        model, instance, features, k, _ = make_case(seed)
        truth = ground_truth(model, instance, features, k)
        if len(truth.axps) >= 3:
            break
    snapshots = list(FeatureAttribution(BruteForceOracle(model, instance, features, max_distance=k)).enumerate())
    assert [s.n_axps for s in snapshots[:-1]] == list(range(1, len(truth.axps) + 1))
    assert all(s.status is Status.RUNNING for s in snapshots[:-1]) and snapshots[-1].complete
    limited = FeatureAttribution(BruteForceOracle(model, instance, features, max_distance=k), max_axps=2).compute()
    assert limited.status is Status.LIMIT and limited.n_axps == 2 and not limited.complete


# ---------------------------------------------------------------------------- certificates


def first_case_with_axp(start: int, min_size: int = 2, min_features: int = 3, max_size: int = 99):
    for seed in range(start, start + 500):
        model, instance, features, k, rng = make_case(seed)
        if len(features) >= min_features and has_axp(model, instance, features, k):
            result = DeletionAXp(BruteForceOracle(model, instance, features, max_distance=k)).compute()
            if min_size <= len(result) <= max_size:
                return model, instance, features, k, result
    raise AssertionError("no suitable random case")  # pragma: no cover


def test_verify_detects_tampering():
    model, instance, features, k, result = first_case_with_axp(20)
    cert = result.certificate
    assert verify(result, BruteForceOracle, require_independent=False).ok
    # same backend re-checking its own claim is flagged when independence is required
    same = verify(result, BruteForceOracle)
    assert not same.ok and not same.independent
    # drop a feature: the smaller set is not sufficient
    i = min(cert.features)
    smaller = AXpCertificate(
        cert.question, cert.features - {i}, None, {j: w for j, w in cert.witnesses.items() if j != i}
    )
    report = verify(smaller, BruteForceOracle, require_independent=False)
    assert not report.ok and any("REFUTED" in p for p in report.problems)
    # a "witness" that is the instance itself proves nothing
    forged = AXpCertificate(cert.question, cert.features, cert.sufficiency, {**cert.witnesses, i: np.array(instance)})
    report = verify(forged, BruteForceOracle, require_independent=False)
    assert not report.ok and any(f"feature {i}" in p for p in report.problems)
    json.dumps(cert.as_dict())
    cxp = DeletionCXp(BruteForceOracle(model, instance, features, max_distance=k)).compute()
    json.dumps(cxp.certificate.as_dict())


def test_certificates_cross_checked_by_another_backend():
    sat = pytest.importorskip("xsnn.solvers.sat")
    smt = pytest.importorskip("xsnn.solvers.smt")
    model, instance, features, k, _ = first_case_with_axp(40)
    with DeletionAXp(sat.SATOracle(model, instance, features, max_distance=k)) as algo:
        result = algo.compute()
    report = verify(result, smt.SMTOracle)
    assert report.ok and report.independent and report.minimal, report.problems
    with DeletionCXp(smt.SMTOracle(model, instance, features, max_distance=k)) as algo:
        cxp = algo.compute()
    report = verify(cxp, sat.SATOracle)
    assert report.ok and report.independent, report.problems


# ---------------------------------------------------------------------------- budgets and errors


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS)
def test_unknown_verdicts_keep_soundness(seed):
    model, instance, features, k, _ = make_case(seed)
    if not has_axp(model, instance, features, k):
        return
    truth = ground_truth(model, instance, features, k)
    for algorithm in AXP_ALGORITHMS:
        oracle = FlakyOracle(BruteForceOracle(model, instance, features, max_distance=k), salt=seed)
        result = algorithm(oracle, order="reverse").compute()
        assert truth.is_sufficient(result.features), algorithm.__name__
        assert result.status in (Status.COMPLETE, Status.UNDECIDED)
        assert result.minimal == (result.status is Status.COMPLETE) == (not result.certificate.unproven)
        if result.minimal:
            assert result.feature_set in truth.axps
        report = verify(result, BruteForceOracle)
        assert report.ok, report.problems
        assert report.minimal == result.minimal
    if truth.cxps:
        oracle = FlakyOracle(BruteForceOracle(model, instance, features, max_distance=k), salt=seed)
        cxp = DeletionCXp(oracle).compute()
        assert not truth.is_sufficient(set(range(truth.n)) - cxp.feature_set)
        assert verify(cxp, BruteForceOracle).ok


def test_timeouts_return_sound_results():
    model, instance, features, k, _ = first_case_with_axp(60, min_size=1, min_features=7, max_size=3)
    truth = ground_truth(model, instance, features, k)
    saw_partial = False
    for algorithm in AXP_ALGORITHMS:
        for limit in (1e-6, 0.05, 0.08):
            result = algorithm(SlowOracle(model, instance, features, max_distance=k), time_limit=limit).compute()
            assert truth.is_sufficient(result.features)
            if result.status is Status.TIMEOUT:
                assert not result.minimal
                saw_partial |= len(result) < truth.n
            else:
                assert result.feature_set in truth.axps
            assert verify(result, BruteForceOracle, require_independent=False).ok
    assert saw_partial, "no timeout happened part-way through"
    tiny = MinimumAXp(
        SlowOracle(model, instance, features, max_distance=k), upper_bound=False, time_limit=1e-6
    ).compute()
    assert tiny.status is Status.TIMEOUT and not tiny.optimal
    assert truth.is_sufficient(tiny.explanation.features)
    assert tiny.lower_bound <= min(len(a) for a in truth.axps)
    enum = Enumerator(BruteForceOracle(model, instance, features, max_distance=k), max_axps=1).compute()
    assert enum.status is Status.LIMIT and len(enum.axps) == 1


def test_no_explanation_errors():
    model, instance, features, k, _ = first_case_with_axp(80, min_size=1)
    wrong = (int(forward(model, instance).prediction[0]) + 1) % model.n_classes
    oracle = BruteForceOracle(model, instance, features, target=wrong)
    for algorithm in (*AXP_ALGORITHMS, MinimumAXp):
        with pytest.raises(NoExplanationError):
            algorithm(oracle).compute()
    # a network whose scores are always 0 always predicts class 0: nothing can change it
    flat = BSNN(
        weights=model.weights,
        thresholds=model.thresholds,
        readout=np.zeros_like(model.readout),
        weight_kind="ternary",
        reset=model.reset,
        n_steps=model.n_steps,
        coding=model.coding,
        labels=model.labels,
        input_shape=model.input_shape,
    )
    with pytest.raises(NoExplanationError, match="no CXp"):
        DeletionCXp(BruteForceOracle(flat, instance, features)).compute()
    empty = DeletionAXp(BruteForceOracle(flat, instance, features)).compute()
    assert empty.features == () and empty.status is Status.COMPLETE
    with pytest.raises(ValueError, match="unknown feature"):
        Relevance(BruteForceOracle(model, instance, features)).compute(len(features))
