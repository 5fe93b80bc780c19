"""The packed kernel must give exactly the reference forward's integers, on any input.

Every implementation variant (numpy; C bit-sliced with AVX2 and with baseline
instructions, with and without two images per lane block; the C reference
loop) is compared with
:func:`xsnn.model.forward` on random networks: 1-3 layers, binary and ternary,
both resets, T in 1..8, widths that are not multiples of 64 (and above one
256-neuron lane block), small and huge thresholds, and inputs that are static,
latency coded, arbitrary, or a mix in one batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xsnn
import xsnn.kernel as kernel
from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.kernel import KernelUnavailable, PackedNetwork, pack_bits, unpack_bits
from xsnn.model import BSNN, forward, random_model

from conftest import SEEDS

HAVE_C = "c" in kernel.available_implementations()
MODELS_DIR = Path(xsnn.__file__).resolve().parent / "models"


def variants(model: BSNN) -> list[tuple[str, PackedNetwork]]:
    """Every implementation variant available here, built for ``model``."""
    out = [("numpy", PackedNetwork(model, "numpy"))]
    if HAVE_C:
        out += [
            ("c/sliced/auto", PackedNetwork(model, "c")),
            ("c/sliced/generic", PackedNetwork(model, "c", isa="generic")),
            ("c/sliced-single/auto", PackedNetwork(model, "c", algorithm="sliced-single")),
            ("c/reference/auto", PackedNetwork(model, "c", algorithm="reference")),
            ("c/reference/generic", PackedNetwork(model, "c", algorithm="reference", isa="generic")),
        ]
    return out


def mismatches(net: PackedNetwork, model: BSNN, spikes: np.ndarray) -> list[str]:
    """What ``net`` gets wrong on ``spikes`` compared with the reference forward (empty: nothing)."""
    ref = forward(model, spikes)
    problems = []
    scores = net.scores(spikes)
    if scores.dtype != np.int64 or not np.array_equal(scores, ref.scores):
        problems.append("scores")
    if not np.array_equal(net.predict(spikes), ref.prediction):
        problems.append("predict")
    if not np.array_equal(net.scores_packed(net.pack(spikes)), ref.scores):
        problems.append("scores_packed")
    result = net.forward(spikes)
    if not np.array_equal(result.scores, ref.scores) or not np.array_equal(result.prediction, ref.prediction):
        problems.append("forward scores")
    if len(result.layer_spikes) != len(ref.layer_spikes) or not all(
        a.dtype == np.uint8 and np.array_equal(a, b) for a, b in zip(result.layer_spikes, ref.layer_spikes)
    ):
        problems.append("layer spikes")
    return problems


def assert_all_implementations_exact(model: BSNN, spikes: np.ndarray) -> None:
    for name, net in variants(model):
        problems = mismatches(net, model, spikes)
        assert not problems, f"{name} differs from the reference forward in {problems} ({model.describe()})"


def make_inputs(rng: np.random.Generator, model: BSNN, n: int, mode: str, density: float) -> np.ndarray:
    T, n_in = model.n_steps, model.n_inputs
    if mode == "static":
        return StaticCoding(128).encode(rng.integers(0, 256, (n, n_in)), T)
    if mode == "latency":
        return LatencyCoding(int(rng.integers(1, 256))).encode(rng.integers(0, 256, (n, n_in)), T)
    if mode == "random":
        return (rng.random((n, T, n_in)) < density).astype(np.uint8)
    static = np.repeat((rng.random((n, 1, n_in)) < density).astype(np.uint8), T, axis=1)
    changed = rng.random(n) < 0.5
    static[changed] = (rng.random((int(changed.sum()), T, n_in)) < density).astype(np.uint8)
    return static


WIDTHS = [1, 2, 5, 63, 64, 65, 130, 257]
INPUTS = [1, 3, 63, 64, 65, 130, 300]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=SEEDS,
    n_in=st.sampled_from(INPUTS),
    sizes=st.lists(st.sampled_from(WIDTHS), min_size=1, max_size=3),
    n_classes=st.integers(1, 6),
    kind=st.sampled_from(["binary", "ternary"]),
    reset=st.sampled_from(["zero", "subtract"]),
    n_steps=st.integers(1, 8),
    max_threshold=st.sampled_from([1, 2, 3, 8, 40, 10**6, 2**31]),
    mode=st.sampled_from(["static", "latency", "random", "mixed"]),
    density=st.floats(0.0, 1.0),
    n=st.integers(1, 9),
)
def test_implementations_equal_reference(
    seed, n_in, sizes, n_classes, kind, reset, n_steps, max_threshold, mode, density, n
):
    rng = np.random.default_rng(seed)
    model = random_model(
        rng, sizes, n_in, n_classes, weight_kind=kind, reset=reset, n_steps=n_steps, max_threshold=max_threshold
    )
    assert_all_implementations_exact(model, make_inputs(rng, model, n, mode, density))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_wide_static_layers_and_ties(kind, reset):
    """784 inputs, several lane blocks, trained-like small thresholds: many ties and every closed form."""
    rng = np.random.default_rng(7)
    model = random_model(
        rng, [300, 33], 784, 10, weight_kind=kind, reset=reset, n_steps=4, max_threshold=6, coding=StaticCoding(100)
    )
    spikes = model.encode(rng.integers(0, 256, (40, 784)))
    assert_all_implementations_exact(model, spikes)
    one_layer = random_model(rng, [300], 784, 3, weight_kind=kind, reset=reset, n_steps=5, max_threshold=30)
    assert_all_implementations_exact(one_layer, one_layer.encode(rng.integers(0, 256, (40, 784))))


def test_hand_computed_resets_and_tie():
    """A network small enough to compute by hand, where the reset rule and the tie rule both matter.

    Inputs x = (1, 1, 0) at every step (T = 3). Neuron 0 has W = (+1, +1, -1), so I = 2, theta = 3:
    reset zero: V = 2, 4 (spike, V -> 0), 2          -> spikes 0 1 0, count 1
    reset subtract: V = 2, 4 (spike, V -> 1), 3 (spike) -> spikes 0 1 1, count 2
    Neuron 1 has W = (+1, -1, +1), I = 0: never spikes. Readout rows (+1,+1), (+1,-1), (-1,+1) give
    scores (n0, n0, -n0): classes 0 and 1 tie, and the prediction must be class 0.
    """

    def build(reset: str) -> BSNN:
        return BSNN(
            weights=(np.array([[1, 1, -1], [1, -1, 1]]),),
            thresholds=(np.array([3, 1]),),
            readout=np.array([[1, 1], [1, -1], [-1, 1]]),
            weight_kind="binary",
            reset=reset,
            n_steps=3,
            coding=StaticCoding(),
            labels=(0, 1, 2),
            input_shape=(3,),
        )

    spikes = np.array([[[1, 1, 0]] * 3], np.uint8)
    expected = {"zero": ([0, 1, 0], [1, 1, -1]), "subtract": ([0, 1, 1], [2, 2, -2])}
    for reset, (train, scores) in expected.items():
        model = build(reset)
        ref = forward(model, spikes)
        assert ref.layer_spikes[0][0, :, 0].tolist() == train and ref.scores[0].tolist() == scores
        for name, net in variants(model):
            result = net.forward(spikes)
            assert result.layer_spikes[0][0, :, 0].tolist() == train, name
            assert result.scores[0].tolist() == scores, name
            assert result.prediction.tolist() == [0], name
            assert net.predict(spikes).tolist() == [0], name
    # the inputs discriminate: a kernel with the wrong reset rule, or ties broken upwards, would be caught
    assert expected["zero"] != expected["subtract"]
    wrong_reset = PackedNetwork(build("subtract"))
    assert mismatches(wrong_reset, build("zero"), spikes)
    for _, scores in expected.values():  # a tie between classes 0 and 1: "highest index wins" would answer 1
        assert scores[0] == scores[1] > scores[2]


def test_broken_kernels_are_caught():
    """The comparison used by the property test rejects kernels that are subtly wrong."""
    rng = np.random.default_rng(3)
    model = random_model(rng, [70, 20], 65, 4, reset="subtract", n_steps=5, max_threshold=4)
    spikes = make_inputs(rng, model, 30, "mixed", 0.4)
    assert not mismatches(PackedNetwork(model), model, spikes)
    off_by_one = BSNN(
        weights=model.weights,
        thresholds=(model.thresholds[0] + 1, model.thresholds[1]),
        readout=model.readout,
        weight_kind=model.weight_kind,
        reset=model.reset,
        n_steps=model.n_steps,
        coding=model.coding,
        labels=model.labels,
        input_shape=model.input_shape,
    )
    other_reset = BSNN(
        weights=model.weights,
        thresholds=model.thresholds,
        readout=model.readout,
        weight_kind=model.weight_kind,
        reset="zero",
        n_steps=model.n_steps,
        coding=model.coding,
        labels=model.labels,
        input_shape=model.input_shape,
    )
    for broken in (off_by_one, other_reset):
        for _, net in variants(broken):
            assert mismatches(net, model, spikes), "a wrong network went unnoticed"


def test_ties_are_common_and_resolved_to_the_lowest_index():
    rng = np.random.default_rng(11)
    model = random_model(rng, [16], 50, 5, n_steps=2, max_threshold=5)
    spikes = make_inputs(rng, model, 400, "static", 0.5)
    scores = forward(model, spikes).scores
    tied = (scores == scores.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert tied.sum() > 20
    for name, net in variants(model):
        assert np.array_equal(net.predict(spikes)[tied], np.argmax(scores[tied], axis=1)), name


def shipped_or_random_models() -> list[tuple[str, BSNN]]:
    paths = sorted(MODELS_DIR.glob("*.npz"))
    if paths:
        return [(p.stem, xsnn.load_model(p)) for p in paths]
    rng = np.random.default_rng(0)
    return [
        (
            "random-784-128-10",
            random_model(
                rng, [128], 784, 10, n_steps=4, max_threshold=40, coding=StaticCoding(128), weight_kind="binary"
            ),
        )
    ]


@pytest.mark.parametrize("name,model", shipped_or_random_models(), ids=lambda v: v if isinstance(v, str) else "")
def test_shipped_models_on_random_images(name, model):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (64, *model.input_shape), dtype=np.uint8)
    images[:16] = np.where(images[:16] > 200, images[:16], 0)  # sparse, digit-like
    spikes = model.encode(images)
    assert_all_implementations_exact(model, spikes)
    assert np.array_equal(kernel.predict(model, spikes), forward(model, spikes).prediction)


def test_mnist_sample_predictions_match():
    from xsnn.data import load_sample

    images, _ = load_sample()
    for _, model in shipped_or_random_models():
        if model.n_inputs != 784:
            continue
        spikes = model.encode(images[:100].reshape(100, *model.input_shape))
        assert_all_implementations_exact(model, spikes)


def test_c_kernel_required_in_ci():
    """CI sets XSNN_REQUIRE_C_KERNEL=1: then the compiled kernel must be the one in use."""
    if os.environ.get("XSNN_REQUIRE_C_KERNEL", "").strip() in ("", "0", "false", "no"):
        pytest.skip("XSNN_REQUIRE_C_KERNEL is not set")
    assert kernel.IMPLEMENTATION == "c"
    assert kernel.c_isa() in ("avx2", "generic")


def test_implementation_constant_matches_availability():
    assert kernel.IMPLEMENTATION == kernel.available_implementations()[0]
    assert PackedNetwork(random_model(np.random.default_rng(0), [3], 4, 2)).implementation == kernel.IMPLEMENTATION


def test_pack_roundtrip_and_layout():
    rng = np.random.default_rng(2)
    for m in (1, 63, 64, 65, 130):
        bits = (rng.random((3, 4, m)) < 0.5).astype(np.uint8)
        words = pack_bits(bits)
        assert words.dtype == np.uint64 and words.shape == (3, 4, -(-m // 64))
        assert np.array_equal(unpack_bits(words, m), bits)
        i = int(rng.integers(m))
        assert bool((words[0, 0, i // 64] >> np.uint64(i % 64)) & np.uint64(1)) == bool(bits[0, 0, i])


def test_bad_inputs_raise_clear_errors():
    model = random_model(np.random.default_rng(1), [5], 70, 3, n_steps=2)
    good = np.zeros((2, 2, 70), np.uint8)
    for _name, net in variants(model):
        with pytest.raises(ValueError, match="0 or 1"):
            bad = good.copy()
            bad[1, 1, 69] = 2
            net.scores(bad)
        with pytest.raises(ValueError, match="shape"):
            net.scores(np.zeros((2, 3, 70), np.uint8))
        with pytest.raises(ValueError, match="0/1 integers"):
            net.scores(good.astype(np.float32))
        packed = net.pack(good)
        packed[0, 0, -1] |= np.uint64(1) << np.uint64(63)  # bit 127 of 70 inputs
        with pytest.raises(ValueError, match="beyond n_inputs"):
            net.scores_packed(packed)
        with pytest.raises(ValueError, match="uint64"):
            net.scores_packed(packed.astype(np.int64))
        assert net.scores(good.astype(bool)).shape == (2, 3)
        assert net.scores(good.astype(np.int32)).shape == (2, 3)
        assert net.scores(good[0]).shape == (1, 3)  # one (T, n_inputs) input
        assert net.scores(good[:0]).shape == (0, 3) and net.predict(good[:0]).shape == (0,)
    with pytest.raises(ValueError, match="implementation"):
        PackedNetwork(model, "gpu")
    with pytest.raises(ValueError, match="BSNN"):
        PackedNetwork("not a model")


def test_c_unavailable_or_too_large_is_explicit():
    big = random_model(np.random.default_rng(0), [2], 70000, 2, n_steps=1, max_threshold=5)
    assert PackedNetwork(big).implementation == "numpy"  # falls back by itself
    with pytest.raises(KernelUnavailable):
        PackedNetwork(big, "c")
    x = (np.random.default_rng(1).random((2, 1, 70000)) < 0.1).astype(np.uint8)
    assert np.array_equal(PackedNetwork(big).scores(x), forward(big, x).scores)
    if not HAVE_C:
        with pytest.raises(KernelUnavailable):
            PackedNetwork(random_model(np.random.default_rng(0), [2], 5, 2), "c")


def test_module_functions():
    rng = np.random.default_rng(4)
    model = random_model(rng, [20], 30, 4, n_steps=3)
    spikes = make_inputs(rng, model, 12, "random", 0.3)
    ref = forward(model, spikes)
    assert np.array_equal(kernel.scores(model, spikes), ref.scores)
    assert np.array_equal(kernel.predict(model, spikes), ref.prediction)
    assert kernel.predict(model, spikes).dtype == np.int64
