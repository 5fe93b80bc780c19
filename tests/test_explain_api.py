"""The public explain API: certified AXps, identical with and without fast paths, clear errors."""
import numpy as np
import pytest

from xsnn import data
from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.explain import explain, exact_oracle_factory
from xsnn.model import BSNN, forward
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.oracle import Verdict


def sparse_mnist_model(seed: int, coding=None, hidden: int = 8, density: float = 0.02, n_steps: int = 2) -> BSNN:
    """A random sparse ternary 784-hidden-10 network (fast to explain exactly)."""
    rng = np.random.default_rng(seed)
    w = rng.choice([-1, 1], size=(hidden, 784)) * (rng.random((hidden, 784)) < density)
    readout = rng.choice([-1, 0, 1], size=(10, hidden))
    return BSNN(weights=(w,), thresholds=(rng.integers(1, 5, size=hidden),), readout=readout,
                weight_kind="ternary", reset="zero", n_steps=n_steps, coding=coding or StaticCoding(),
                labels=tuple(range(10)), input_shape=(28, 28))


@pytest.fixture(scope="module")
def sample():
    return data.load_sample()


@pytest.mark.parametrize("seed, coding", [(1, StaticCoding()), (2, LatencyCoding(100))])
def test_fast_paths_give_the_plain_solver_axp_and_it_is_certified(sample, seed, coding):
    model = sparse_mnist_model(seed, coding)
    image = sample[0][seed]
    fast = explain(model, image, backend="sat", verify=True)
    plain = explain(model, image, backend="sat", fast_paths=False)
    assert fast.features == plain.features
    assert fast.status == plain.status == "complete" and fast.minimal
    assert fast.verification is not None and fast.verification.ok, fast.verification.problems
    # Independent sufficiency check with CP-SAT (a different backend than the SAT that found it).
    with exact_oracle_factory("cpsat")(model, fast.spikes) as oracle:
        assert oracle.check(fast.features).verdict is Verdict.ENTAILED
    assert fast.prediction == int(forward(model, model.encode(image[None])).prediction[0])
    assert fast.pixel_mask.sum() == fast.size and fast.mask.sum() == fast.size


def test_each_axp_feature_is_necessary_by_its_witness(sample):
    model = sparse_mnist_model(3)
    e = explain(model, sample[0][3], backend="sat")
    for k in e.features:
        witness = e.proof.witnesses[k]
        assert int(forward(model, witness).prediction[0]) != e.prediction
        others = [j for j in e.features if j != k]
        assert np.array_equal(witness[:, others], e.spikes[:, others])


def test_spikes_and_image_inputs_agree(sample):
    model = sparse_mnist_model(4)
    image = sample[0][4]
    assert (explain(model, image, backend="sat").features
            == explain(model, model.encode(image[None])[0], backend="sat").features)


def test_algorithms_all_return_sufficient_minimal_sets_on_a_tiny_net():
    rng = np.random.default_rng(7)
    model = BSNN(weights=(rng.choice([-1, 1], size=(4, 9)),), thresholds=(rng.integers(1, 4, size=4),),
                 readout=rng.choice([-1, 1], size=(3, 4)), weight_kind="binary", reset="subtract", n_steps=3,
                 coding=StaticCoding(), labels=(0, 1, 2), input_shape=(3, 3))
    image = rng.integers(0, 256, size=(3, 3)).astype(np.uint8)
    for algorithm in ("deletion", "quickxplain", "progression"):
        e = explain(model, image, algorithm=algorithm, backend="bruteforce")
        with BruteForceOracle(model, e.spikes) as truth:
            assert truth.check(e.features).verdict is Verdict.ENTAILED
            for k in e.features:
                assert truth.check(set(e.features) - {k}).verdict is Verdict.NOT_ENTAILED


def test_bad_options_are_named(sample):
    model = sparse_mnist_model(5)
    with pytest.raises(ValueError, match="unknown algorithm 'magic'"):
        explain(model, sample[0][0], algorithm="magic")
    with pytest.raises(ValueError, match="unknown backend 'gurobi'"):
        explain(model, sample[0][0], backend="gurobi")
    with pytest.raises(ValueError, match="pixels"):
        explain(model, np.zeros((5, 5), np.uint8))
