"""MILP (HiGHS) and CP-SAT entailment oracles against the exhaustive ground truth.

On random small networks (1-3 layers, binary/ternary, both resets, T in 1..5, static and
latency coding, up to 12 inputs) and random fixed sets, every verdict must equal
BruteForceOracle's, with and without a distance bound, for pixel and patch features;
CP-SAT cores must be subsets of the fixed set that brute force confirms sufficient. The
interval bounds and the ladder encoding the formulation rests on are checked against the
reference forward directly.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.encoders.linear import build_formulation, input_ladders, instance_selectors, potential_bounds
from xsnn.features import FeatureSet
from xsnn.model import BSNN, forward, random_model
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.cpsat import CPSATOracle
from xsnn.solvers.milp import MILPOracle
from xsnn.solvers.oracle import Verdict

from conftest import SEEDS, random_instance, random_network

MAX_COMPLETIONS = 1024  # per query (speed)
MAX_INPUT_COMPLETIONS = 16384  # with every feature free (cores may be small)


def make_case(seed: int, kind: str, reset: str, coding: str, n_steps: int, n_layers: int):
    """A random network (:func:`conftest.random_network`) with at most MAX_INPUT_COMPLETIONS inputs
    for brute force, an instance of it, and the rng that drew them."""
    rng = np.random.default_rng(seed)
    n_trains = 2 if coding == "static" else n_steps + 1
    most = min(12, int(np.log(MAX_INPUT_COMPLETIONS) / np.log(n_trains)))  # brute force can free every input
    n_inputs = int(rng.integers(2, most + 1))
    sizes = [int(rng.integers(1, 6)) for _ in range(n_layers)]
    cod = StaticCoding(int(rng.integers(1, 256))) if coding == "static" else LatencyCoding(int(rng.integers(1, 256)))
    model = random_network(rng, sizes, n_inputs, n_steps=n_steps, coding=cod, kind=kind, reset=reset)
    return model, random_instance(model, rng), rng


def random_fixed(rng: np.random.Generator, model: BSNN, features: FeatureSet) -> frozenset[int]:
    """A random fixed set, grown until brute force has at most MAX_COMPLETIONS completions."""
    n_trains = len(model.coding.free_trains(model.n_steps))
    fixed = set(np.flatnonzero(rng.random(len(features)) < rng.random()).tolist())
    order = rng.permutation(len(features)).tolist()
    while order and n_trains ** int((~features.pixel_mask(sorted(fixed))).sum()) > MAX_COMPLETIONS:
        fixed.add(order.pop())
    return frozenset(fixed)


def assert_core_sufficient(check, fixed, truth: BruteForceOracle) -> None:
    assert check.core is not None and check.core <= fixed
    assert truth.check(check.core).verdict is Verdict.ENTAILED, "a core that is not sufficient"


case_args = dict(
    seed=SEEDS,
    kind=st.sampled_from(["binary", "ternary"]),
    reset=st.sampled_from(["zero", "subtract"]),
    coding=st.sampled_from(["static", "latency"]),
    n_steps=st.integers(1, 5),
    n_layers=st.integers(1, 3),
)


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**case_args, distance=st.sampled_from([None, None, 0, 1, 2, 3]), other_target=st.booleans())
def test_verdicts_equal_bruteforce(seed, kind, reset, coding, n_steps, n_layers, distance, other_target):
    model, instance, rng = make_case(seed, kind, reset, coding, n_steps, n_layers)
    target = int(rng.integers(0, model.n_classes)) if other_target else None
    args = dict(target=target, max_distance=distance)
    truth = BruteForceOracle(model, instance, **args)
    oracles = [
        MILPOracle(model, instance, **args),
        CPSATOracle(model, instance, **args),
        CPSATOracle(model, instance, split_rivals=False, **args),
    ]
    for _ in range(3):
        fixed = random_fixed(rng, model, truth.features)
        expected = truth.check(fixed).verdict
        for oracle in oracles:
            check = oracle.check(fixed)  # a NOT_ENTAILED witness is verified by the base class
            assert check.verdict is expected, (
                type(oracle).__name__,
                oracle.__dict__.get("split_rivals"),
                sorted(fixed),
            )
            if check.verdict is Verdict.ENTAILED:
                assert_core_sufficient(check, fixed, truth)


@settings(max_examples=15, deadline=None)
@given(**case_args, distance=st.sampled_from([None, 0, 1, 2]))
def test_patch_features_and_uncovered_pixels(seed, kind, reset, coding, n_steps, n_layers, distance):
    """Multi-pixel features (the 'feature differs' indicators) and pixels in no feature (always free)."""
    model, instance, rng = make_case(seed, kind, reset, coding, n_steps, n_layers)
    n = model.n_inputs
    pixels = rng.permutation(n)
    n_covered = int(rng.integers(1, n + 1))
    cuts = (
        np.sort(rng.choice(np.arange(1, n_covered), size=min(3, n_covered - 1), replace=False))
        if n_covered > 1
        else np.array([], dtype=int)
    )
    groups = tuple(tuple(sorted(g.tolist())) for g in np.split(pixels[:n_covered], cuts) if len(g))
    features = FeatureSet(groups, tuple(f"g{k}" for k in range(len(groups))), n)
    args = dict(features=features, max_distance=distance)
    truth = BruteForceOracle(model, instance, **args)
    oracles = [MILPOracle(model, instance, **args), CPSATOracle(model, instance, split_rivals=False, **args)]
    for _ in range(3):
        fixed = random_fixed(rng, model, features)
        try:
            expected = truth.check(fixed).verdict
        except ValueError:  # uncovered pixels make too many completions for brute force
            continue
        for oracle in oracles:
            check = oracle.check(fixed)
            assert check.verdict is expected, (type(oracle).__name__, groups, sorted(fixed))
            if check.verdict is Verdict.ENTAILED:
                assert_core_sufficient(check, fixed, truth)


@settings(max_examples=20, deadline=None)
@given(**case_args)
def test_all_features_fixed(seed, kind, reset, coding, n_steps, n_layers):
    """Fixing everything: ENTAILED for the prediction, NOT_ENTAILED (the instance itself) for any other class."""
    model, instance, rng = make_case(seed, kind, reset, coding, n_steps, n_layers)
    prediction = int(forward(model, instance).prediction[0])
    everything = range(model.n_inputs)
    for make in (MILPOracle, CPSATOracle, lambda *a, **k: CPSATOracle(*a, split_rivals=False, **k)):
        assert make(model, instance).check(everything).verdict is Verdict.ENTAILED
        other = (prediction + 1) % model.n_classes
        check = make(model, instance, target=other).check(everything)
        assert check.verdict is Verdict.NOT_ENTAILED
        np.testing.assert_array_equal(check.witness, instance)


@settings(max_examples=40, deadline=None)
@given(**case_args)
def test_potential_bounds_contain_every_completion(seed, kind, reset, coding, n_steps, n_layers):
    model, instance, rng = make_case(seed, kind, reset, coding, n_steps, n_layers)
    free = rng.random(model.n_inputs) < 0.5
    bounds = potential_bounds(model, instance, free)
    trains = model.coding.free_trains(model.n_steps)
    xs = np.repeat(instance[None], 64, axis=0)
    xs[:, :, free] = trains[rng.integers(0, len(trains), size=(64, int(free.sum())))].transpose(0, 2, 1)
    result = forward(model, xs)
    for layer, v in enumerate(result.potentials):
        assert np.all(v >= bounds.lower[layer][None]) and np.all(v <= bounds.upper[layer][None])


@settings(max_examples=40, deadline=None)
@given(
    theta=st.integers(1, 12),
    lo=st.integers(-15, 15),
    width=st.integers(0, 30),
    n_steps=st.integers(1, 6),
    reset=st.sampled_from(["zero", "subtract"]),
)
def test_ladder_reproduces_the_spike_train_of_every_input(theta, lo, width, n_steps, reset):
    ((breaks, trains),) = input_ladders(np.array([lo]), np.array([lo + width]), np.array([theta]), n_steps, reset)
    assert np.all(np.diff(breaks) > 0) and len(trains) == len(breaks) + 1
    for value in range(lo, lo + width + 1):
        z = (value >= breaks).astype(np.int64)
        train = trains[0] + (np.diff(trains, axis=0) * z[:, None]).sum(axis=0)
        # reference: one neuron driven by a constant input `value` (simulated directly)
        v, s, expected = 0, 0, []
        for _ in range(n_steps):
            v = v * (1 - s) if reset == "zero" else v - theta * s
            v += value
            s = int(v >= theta)
            expected.append(s)
        np.testing.assert_array_equal(train, expected)


def test_cores_can_be_smaller_than_the_fixed_set():
    """The rebuild oracles drop features disconnected from the network (all-zero weight columns)."""
    rng = np.random.default_rng(7)
    smaller = {"milp": 0, "cpsat": 0}
    for _ in range(10):
        model = random_model(rng, [3], 10, 3, weight_kind="ternary", n_steps=2, max_threshold=2)
        instance = model.encode(rng.integers(0, 256, size=(1, 10)))[0]
        truth = BruteForceOracle(model, instance)
        oracles = {"milp": MILPOracle(model, instance), "cpsat": CPSATOracle(model, instance)}
        for name, oracle in oracles.items():
            check = oracle.check(range(10))
            assert check.verdict is Verdict.ENTAILED
            assert_core_sufficient(check, frozenset(range(10)), truth)
            smaller[name] += len(check.core) < 10
    assert all(smaller.values()), smaller


def test_time_limit_gives_unknown():
    rng = np.random.default_rng(3)
    model = random_model(rng, [60], 200, 10, n_steps=4, max_threshold=30)
    instance = model.encode(rng.integers(0, 256, size=(1, 200)))[0]
    for oracle in (MILPOracle(model, instance), CPSATOracle(model, instance)):
        check = oracle.check([], time_limit=0.0)
        assert check.verdict is Verdict.UNKNOWN and check.witness is None and check.core is None


def test_bad_arguments_are_clear_errors():
    rng = np.random.default_rng(0)
    model = random_model(rng, [3], 4, 2, n_steps=3, coding=LatencyCoding())
    instance = np.zeros((3, 4), np.uint8)
    instance[:, 0] = 1  # three spikes: outside the latency coding's free domain
    with pytest.raises(ValueError, match="free domain"):
        instance_selectors(model, instance)
    with pytest.raises(ValueError, match="free domain"):
        MILPOracle(model, instance)
    with pytest.raises(ValueError, match="free domain"):
        CPSATOracle(model, instance)
    good = np.zeros((3, 4), np.uint8)
    with pytest.raises(ValueError, match="engine"):
        MILPOracle(model, good, engine="gurobi")
    with pytest.raises(ValueError, match="unknown feature"):
        MILPOracle(model, good).check([7])


def test_formulation_drops_hopeless_rivals():
    """With every input fixed only the prediction's rivals that actually beat it could remain: none."""
    rng = np.random.default_rng(1)
    model = random_model(rng, [4, 3], 6, 4, n_steps=3)
    instance = model.encode(rng.integers(0, 256, size=(1, 6)))[0]
    features = FeatureSet.pixels(6)
    target = int(forward(model, instance).prediction[0])
    assert build_formulation(model, instance, features, frozenset(range(6)), target).no_rival


HIGHSPY_SCRIPT = textwrap.dedent("""
    import numpy as np
    from xsnn.coding import LatencyCoding, StaticCoding
    from xsnn.model import random_model
    from xsnn.solvers.bruteforce import BruteForceOracle
    from xsnn.solvers.milp import MILPOracle
    rng = np.random.default_rng(11)
    n = 0
    for trial in range(40):
        coding = StaticCoding() if trial % 2 else LatencyCoding()
        n_in = int(rng.integers(2, 8 if trial % 2 else 6))
        model = random_model(rng, [int(rng.integers(1, 5)) for _ in range(int(rng.integers(1, 3)))], n_in,
                             int(rng.integers(2, 4)), weight_kind=("binary", "ternary")[trial % 3 == 0],
                             reset=("zero", "subtract")[trial // 2 % 2], n_steps=int(rng.integers(1, 4)),
                             coding=coding, max_threshold=int(rng.integers(1, 4)))
        x = model.encode(rng.integers(0, 256, size=(1, n_in)))[0]
        d = None if trial % 3 else int(rng.integers(0, 3))
        truth = BruteForceOracle(model, x, max_distance=d)
        oracles = [MILPOracle(model, x, max_distance=d, engine="highspy")]
        for _ in range(3):
            fixed = np.flatnonzero(rng.random(n_in) < rng.random()).tolist()
            expected = truth.check(fixed).verdict
            for o in oracles:
                assert o.check(fixed).verdict is expected, (trial, fixed)
                n += 1
    print("ok", n)
""")


def test_highspy_engine_in_its_own_process():
    """The highspy engine (its own libhighs cannot share a process with OR-Tools)."""
    if importlib.util.find_spec("highspy") is None:  # never import it here: it would break OR-Tools
        pytest.skip("highspy is not installed")
    proc = subprocess.run([sys.executable, "-c", HIGHSPY_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok 120")
