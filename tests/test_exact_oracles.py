"""Exact SAT / SMT oracles agree with brute force; cores are sufficient; exports round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st
from pysat.formula import CNF

from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.encoders.cnf import encode_cnf
from xsnn.encoders.export import export_instance, write_dimacs
from xsnn.features import FeatureSet
from xsnn.model import forward, random_model
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.oracle import Verdict
from xsnn.solvers.sat import SATOracle, new_solver
from xsnn.solvers.smt import SMTOracle

from conftest import SEEDS, random_groups

ORACLES = [
    ("sat-cadical-adder", lambda *a, **k: SATOracle(*a, **k, solver="cadical195", encoding="adder")),
    ("sat-glucose-totalizer", lambda *a, **k: SATOracle(*a, **k, solver="glucose4", encoding="totalizer")),
    ("sat-minicard-native", lambda *a, **k: SATOracle(*a, **k, solver="minicard", encoding="native")),
    ("sat-minisat-seqcounter", lambda *a, **k: SATOracle(*a, **k, solver="minisat22", encoding="seqcounter")),
    ("sat-default", lambda *a, **k: SATOracle(*a, **k)),
    ("smt-lia", lambda *a, **k: SMTOracle(*a, **k, variant="lia")),
    ("smt-pb", lambda *a, **k: SMTOracle(*a, **k, variant="pb")),
]


@st.composite
def problems(draw):
    rng = np.random.default_rng(draw(SEEDS))
    coding = draw(st.sampled_from([StaticCoding(), LatencyCoding()]))
    n_steps = draw(st.integers(1, 4 if coding.name == "static" else 2))
    max_distance = draw(st.sampled_from([None, None, 0, 1, 2]))
    # brute force enumerates 2^n (static) or (T+1)^n (latency) completions; with a distance
    # bound it also measures each completion in Python, so keep n smaller there
    n_inputs = draw(st.integers(2, (14 if max_distance is None else 9) if coding.name == "static" else 7))
    model = random_model(
        rng,
        [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 2)))],
        n_inputs,
        draw(st.integers(2, 4)),
        weight_kind=draw(st.sampled_from(["binary", "ternary"])),
        reset=draw(st.sampled_from(["zero", "subtract"])),
        n_steps=n_steps,
        coding=coding,
        max_threshold=draw(st.integers(1, 3)),
    )
    x = model.encode(rng.integers(0, 256, size=(1, n_inputs)).astype(np.uint8))[0]
    if draw(st.booleans()):
        features = FeatureSet.pixels(n_inputs)
    else:  # random groups of pixels (some pixels in no feature: always free)
        features = random_groups(rng, n_inputs)
    target = draw(st.sampled_from([None, None, int(rng.integers(0, model.n_classes))]))
    return model, x, features, max_distance, target, rng


@settings(max_examples=40, deadline=None)
@given(problems())
def test_exact_oracles_agree_with_brute_force(problem):
    model, x, features, max_distance, target, rng = problem
    truth = BruteForceOracle(model, x, features, target=target, max_distance=max_distance)
    queries = [frozenset(), frozenset(range(len(features)))]
    queries += [frozenset(np.flatnonzero(rng.random(len(features)) < p).tolist()) for p in (0.3, 0.6, 0.9)]
    truth_verdicts: dict[frozenset, Verdict] = {}

    def true_verdict(fixed: frozenset) -> Verdict:  # brute force is the slow part: ask it once per set
        if fixed not in truth_verdicts:
            truth_verdicts[fixed] = truth.check(fixed).verdict
        return truth_verdicts[fixed]

    for name, make in ORACLES:
        with make(model, x, features, target=target, max_distance=max_distance) as oracle:
            for fixed in queries:
                got = oracle.check(fixed)
                assert got.verdict == true_verdict(fixed), (name, sorted(fixed))
                if got.verdict is Verdict.ENTAILED:
                    assert got.core is not None and got.core <= fixed, (name, got.core, fixed)
                    assert true_verdict(got.core) is Verdict.ENTAILED, (name, "core not sufficient")


def test_time_limit_gives_unknown_and_generous_limits_answer():
    rng = np.random.default_rng(3)
    model = random_model(rng, [4], 6, 3, n_steps=3, max_threshold=2)
    x = model.encode(rng.integers(0, 256, size=(1, 6)).astype(np.uint8))[0]
    truth = BruteForceOracle(model, x)
    for solver in ("cadical195", "glucose4", "minicard"):
        encoding = "native" if solver == "minicard" else "adder"
        with SATOracle(model, x, solver=solver, encoding=encoding) as oracle:
            assert oracle.check([], time_limit=0).verdict is Verdict.UNKNOWN
            for fixed in ([], [0, 1, 2], range(6)):
                assert oracle.check(fixed, time_limit=30).verdict == truth.check(fixed).verdict
    with SMTOracle(model, x) as oracle:
        assert oracle.check([], time_limit=0).verdict is Verdict.UNKNOWN
        assert oracle.check(range(6), time_limit=30).verdict is Verdict.ENTAILED


def test_oracle_argument_errors():
    rng = np.random.default_rng(0)
    model = random_model(rng, [2], 3, 2, n_steps=2)
    x = model.encode(np.array([[0, 200, 255]], np.uint8))[0]
    with pytest.raises(ValueError, match="unknown SAT solver"):
        SATOracle(model, x, solver="zchaff")
    with pytest.raises(ValueError, match="native encoding needs"):
        SATOracle(model, x, solver="cadical195", encoding="native")
    with pytest.raises(ValueError, match="no assumptions"):
        SATOracle(model, x, solver="kissat")
    oracle = SATOracle(model, x)
    oracle.close()
    with pytest.raises(ValueError, match="closed"):
        oracle.check([])


def test_fixed_sets_are_checked_and_numpy_integers_accepted():
    """check() answers for numpy integer indices as for ints (and passes Python ints on), and
    names a fractional, non-numeric or out-of-range index."""
    rng = np.random.default_rng(3)
    model = random_model(rng, [3], 5, 2, n_steps=2)
    x = model.encode(rng.integers(0, 256, size=(1, 5)).astype(np.uint8))[0]
    with SATOracle(model, x) as oracle, BruteForceOracle(model, x) as truth:
        for fixed in ([], [0, 2], [1, 3, 4], range(5)):
            as_numpy = oracle.check(np.array(list(fixed), np.int64))
            assert as_numpy.verdict is truth.check(list(fixed)).verdict
            assert all(type(k) is int for k in as_numpy.fixed)
        for mixed in ([np.int32(1), 2, np.uint8(3)], [True, 2, 3], [1, 2, np.int64(3)]):
            asked = oracle.check(mixed).fixed
            assert asked == {1, 2, 3} and all(type(k) is int for k in asked)
        with pytest.raises(TypeError, match="must be integers, got 1.5"):
            oracle.check([0, 1.5])
        with pytest.raises(TypeError, match="must be integers"):
            oracle.check(["2"])
        with pytest.raises(ValueError, match="unknown feature index"):
            oracle.check([0, 5])
        with pytest.raises(ValueError, match="unknown feature index"):
            oracle.check([-1])


@pytest.mark.parametrize("coding", [StaticCoding(), LatencyCoding()])
def test_dimacs_round_trip(tmp_path, coding):
    rng = np.random.default_rng(11)
    for trial in range(6):
        model = random_model(
            rng,
            [3, 2][: 1 + trial % 2],
            5,
            3,
            n_steps=3,
            coding=coding,
            max_threshold=2,
            reset=("zero", "subtract")[trial % 2],
        )
        x = model.encode(rng.integers(0, 256, size=(1, 5)).astype(np.uint8))[0]
        target = int(forward(model, x).prediction[0])
        with SATOracle(model, x) as oracle:
            expected = {"all": oracle.check(range(5)).verdict, "none": oracle.check([]).verdict}
        assert expected["all"] is Verdict.ENTAILED
        for fix in ("all", "none"):
            path = export_instance(model, x, target, "dimacs", fix, tmp_path / f"q{trial}-{fix}.cnf")
            text = path.read_text()
            assert "c selector 0 " in text and "p cnf " in text
            with new_solver(CNF(from_file=str(path)), "glucose4") as s:
                sat = s.solve()
            assert sat == (expected[fix] is Verdict.NOT_ENTAILED), (trial, fix)
            smt_path = export_instance(model, x, target, "smt2", fix, tmp_path / f"q{trial}-{fix}.smt2")
            solver = z3.Solver()
            solver.from_file(str(smt_path))
            assert (solver.check() == z3.sat) == (expected[fix] is Verdict.NOT_ENTAILED), (trial, fix, "smt2")


def test_native_encoding_cannot_be_written_as_plain_dimacs(tmp_path):
    rng = np.random.default_rng(0)
    model = random_model(rng, [2], 3, 2, n_steps=2)
    x = model.encode(np.array([[0, 200, 255]], np.uint8))[0]
    with pytest.raises(ValueError, match="plain DIMACS"):
        write_dimacs(encode_cnf(model, x, 0, encoding="native"), tmp_path / "q.cnf")
    with pytest.raises(ValueError, match="fix must be"):
        export_instance(model, x, 0, "dimacs", "some", tmp_path / "q.cnf")
    with pytest.raises(ValueError, match="format"):
        export_instance(model, x, 0, "opb", "all", tmp_path / "q.cnf")


def test_a_false_witness_is_caught_directly_and_through_a_portfolio():
    """Every NOT_ENTAILED witness is re-run through the reference forward: an oracle that
    answers with the instance itself (which keeps the prediction) raises WitnessError, also
    when a portfolio passes its answer on."""
    from xsnn.solvers.oracle import Check, WitnessError
    from xsnn.solvers.portfolio import PortfolioOracle

    class WrongWitness(BruteForceOracle):
        name = "wrong-witness"

        def _check(self, fixed, time_limit):
            return Check(Verdict.NOT_ENTAILED, fixed, witness=self.instance.copy(), path=self.name)

    rng = np.random.default_rng(4)
    model = random_model(rng, [3], 6, 3, n_steps=2, max_threshold=2)
    x = model.encode(rng.integers(0, 256, size=(1, 6)).astype(np.uint8))[0]
    with pytest.raises(WitnessError, match="does not change the prediction"):
        WrongWitness(model, x).check([0, 1])
    portfolio = PortfolioOracle([WrongWitness(model, x), BruteForceOracle(model, x)], [1.0])
    with pytest.raises(WitnessError):
        portfolio.check([0, 1])


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, latency=st.booleans(), distance=st.sampled_from([None, 0, 1, 3]))
def test_witness_verifier_accepts_exactly_the_genuine_counterexamples(seed, latency, distance):
    """WitnessVerifier (which looks only at the pixels a witness changes) against the definition
    checked pixel by pixel: fixed features unchanged, every free pixel's train a free train of
    the coding, within the distance bound, prediction changed. Instances are sometimes raw
    spike trains outside the coding's domain, and some pixels belong to no feature."""
    from xsnn.solvers.oracle import WitnessError, WitnessVerifier, feature_distance

    rng = np.random.default_rng(seed)
    coding = LatencyCoding() if latency else StaticCoding()
    n_steps, n_inputs = int(rng.integers(1, 4)), int(rng.integers(2, 9))
    model = random_model(rng, [int(rng.integers(1, 4))], n_inputs, 3, n_steps=n_steps, coding=coding, max_threshold=2)
    if rng.random() < 0.3:  # raw spikes, maybe outside the coding's domain
        instance = rng.integers(0, 2, size=(n_steps, n_inputs)).astype(np.uint8)
    else:
        instance = model.encode(rng.integers(0, 256, size=(1, n_inputs)))[0]
    pixels = rng.permutation(n_inputs)[: n_inputs - int(rng.integers(0, 2))]
    groups = [tuple(int(i) for i in g) for g in np.array_split(pixels, int(rng.integers(1, len(pixels) + 1)))]
    features = FeatureSet(tuple(groups), tuple(f"g{k}" for k in range(len(groups))), n_inputs)
    target = int(rng.integers(0, 3))
    verifier = WitnessVerifier(model, instance, features, target, distance)
    free_trains = {tuple(t) for t in coding.free_trains(n_steps).tolist()}
    for _ in range(25):
        fixed = frozenset(np.flatnonzero(rng.random(len(groups)) < 0.5).tolist())
        x = instance.copy()
        for i in np.flatnonzero(rng.random(n_inputs) < 0.4):
            x[:, i] = rng.integers(0, 2, size=n_steps)
        mask = features.pixel_mask(sorted(fixed))
        genuine = (
            not (x != instance)[:, mask].any()
            and all(tuple(x[:, i].tolist()) in free_trains for i in np.flatnonzero(~mask))
            and (distance is None or feature_distance(features, x, instance) <= distance)
            and int(forward(model, x).prediction[0]) != target
        )
        try:
            verifier(fixed, x)
            accepted = True
        except WitnessError:
            accepted = False
        assert accepted == genuine, (sorted(fixed), x.tolist(), instance.tolist())
