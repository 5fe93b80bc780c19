"""Frozen model: validation, reference forward semantics, safe file format."""

import dataclasses
import json
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.model import (
    BSNN,
    ModelFileError,
    forward,
    integrate_and_fire,
    load_model,
    load_model_file,
    random_model,
    save_model,
)


def tiny(**overrides) -> BSNN:
    kwargs = dict(
        weights=(np.array([[1, -1, 1], [1, 1, 1]]),),
        thresholds=(np.array([1, 2]),),
        readout=np.array([[1, -1], [-1, 1]]),
        weight_kind="binary",
        reset="zero",
        n_steps=3,
        coding=StaticCoding(),
        labels=(3, 7),
        input_shape=(3,),
    )
    kwargs.update(overrides)
    return BSNN(**kwargs)


def test_forward_by_hand_zero_reset():
    # x = (1, 0, 1) every step: neuron 0 current 2 (>= 1 spikes every step, reset to 0);
    # neuron 1 current 2 (>= 2 spikes every step). Scores: class 0 = 3 - 3 = 0, class 1 = 0 -> tie -> index 0.
    model = tiny()
    x = np.array([[1, 0, 1]] * 3, dtype=np.uint8)
    result = forward(model, x)
    assert result.layer_spikes[0][0].tolist() == [[1, 1], [1, 1], [1, 1]]
    assert result.scores[0].tolist() == [0, 0]
    assert result.prediction.tolist() == [0]


def test_forward_by_hand_subtract_reset_accumulates():
    # One neuron, current 1 per step, theta 2: V = 1, 2 (spike), 1 (2-2+1), 2 (spike) -> spikes at t=1,3.
    model = BSNN(
        weights=(np.array([[1]]),),
        thresholds=(np.array([2]),),
        readout=np.array([[1], [-1]]),
        weight_kind="binary",
        reset="subtract",
        n_steps=4,
        coding=StaticCoding(),
        labels=(0, 1),
        input_shape=(1,),
    )
    result = forward(model, np.ones((4, 1), np.uint8))
    assert result.layer_spikes[0][0, :, 0].tolist() == [0, 1, 0, 1]
    assert result.potentials[0][0, :, 0].tolist() == [1, 2, 1, 2]
    assert result.scores[0].tolist() == [2, -2]
    # Zero reset: V = 1, 2 (spike), 1 (reset to 0, +1), 2 (spike) -> same spikes, different history.
    zero = dataclasses.replace(model, reset="zero")
    assert forward(zero, np.ones((4, 1), np.uint8)).layer_spikes[0][0, :, 0].tolist() == [0, 1, 0, 1]


def test_zero_and_subtract_differ_when_overshooting():
    # Current 3 per step, theta 2: zero reset V = 3,3,3 ; subtract V = 3, 4, 5.
    base = dict(
        weights=(np.array([[1, 1, 1]]),),
        thresholds=(np.array([2]),),
        readout=np.array([[1], [-1]]),
        weight_kind="binary",
        n_steps=3,
        coding=StaticCoding(),
        labels=(0, 1),
        input_shape=(3,),
    )
    x = np.ones((3, 3), np.uint8)
    assert forward(BSNN(reset="zero", **base), x).potentials[0][0, :, 0].tolist() == [3, 3, 3]
    assert forward(BSNN(reset="subtract", **base), x).potentials[0][0, :, 0].tolist() == [3, 4, 5]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(weight_kind="binary", weights=(np.array([[1, 0, 1], [1, 1, 1]]),)), "outside the binary set"),
        (dict(weight_kind="ternary", weights=(np.array([[1, 2, 1], [1, 1, 1]]),)), "outside the ternary set"),
        (dict(thresholds=(np.array([0, 2]),)), "thresholds must be >= 1"),
        (dict(thresholds=(np.array([1.5, 2]),)), "must be integers"),
        (dict(reset="leaky"), "reset must be one of"),
        (dict(n_steps=0), "n_steps"),
        (dict(readout=np.array([[1, -1, 1]])), "expects 3 inputs"),
        (dict(labels=(1, 1)), "distinct"),
        (dict(labels=(1,)), "1 labels for 2 readout classes"),
        (dict(input_shape=(2, 2)), "does not match"),
    ],
)
def test_validation_names_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        tiny(**change)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    model = random_model(
        rng, [7, 5], 11, 4, weight_kind="ternary", reset="subtract", n_steps=3, coding=LatencyCoding(100)
    )
    path = save_model(model, tmp_path / "m.npz")
    loaded = load_model_file(path)
    assert loaded.content_hash() == model.content_hash()
    assert loaded.coding == model.coding and loaded.reset == "subtract" and loaded.layer_sizes == (7, 5)
    x = (rng.random((20, 3, 11)) < 0.4).astype(np.uint8)
    assert np.array_equal(forward(loaded, x).scores, forward(model, x).scores)
    assert load_model(str(path)).content_hash() == model.content_hash()


def _rewrite(path, out, mutate):
    with np.load(path, allow_pickle=False) as archive:
        contents = {k: archive[k] for k in archive.files}
    mutate(contents)
    with open(out, "wb") as handle:
        np.savez(handle, **contents)
    return out


def test_tampered_weights_fail_the_hash(tmp_path):
    path = save_model(tiny(), tmp_path / "m.npz")

    def flip(c):
        c["weights_0"] = -c["weights_0"]

    bad = _rewrite(path, tmp_path / "bad.npz", flip)
    with pytest.raises(ModelFileError, match="content hash mismatch"):
        load_model_file(bad)


def test_invalid_values_with_matching_hash_are_refused(tmp_path):
    # An attacker can recompute the hash; validation must still refuse out-of-set weights.
    from xsnn.model import _content_hash

    path = save_model(tiny(), tmp_path / "m.npz")

    def poison(c):
        c["weights_0"] = np.full_like(c["weights_0"], 5)
        header = json.loads(c["header"].tobytes())
        header.pop("content_hash")
        arrays = {k: v for k, v in c.items() if k != "header"}
        header["content_hash"] = _content_hash(header, arrays)
        c["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    bad = _rewrite(path, tmp_path / "bad.npz", poison)
    with pytest.raises(ModelFileError, match="outside the binary set"):
        load_model_file(bad)


def test_foreign_and_corrupt_files(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_model_file(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not an xsnn model file"):
        load_model_file(foreign)
    truncated = tmp_path / "truncated.npz"
    data = save_model(tiny(), tmp_path / "ok.npz").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        load_model_file(truncated)


def test_pickled_object_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    # An object array is stored with pickle; loading must refuse instead of unpickling.
    np.savez(path, header=np.array([{"format": "xsnn-bsnn"}], dtype=object))
    with pytest.raises(ModelFileError, match="will not load"):
        load_model_file(path)
    raw = tmp_path / "raw.pkl.npz"
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("header.npy", pickle.dumps({"x": 1}))
    with pytest.raises(ModelFileError):
        load_model_file(raw)


def test_newer_format_version_is_refused(tmp_path):
    path = save_model(tiny(), tmp_path / "m.npz")

    def bump(c):
        header = json.loads(c["header"].tobytes())
        header["format_version"] = 99
        c["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    bad = _rewrite(path, tmp_path / "v99.npz", bump)
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model_file(bad)


def test_unknown_shipped_name_lists_the_known_ones():
    with pytest.raises(ModelFileError, match="no shipped model named 'no-such-model'"):
        load_model("no-such-model")


def test_bad_spikes_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="shape"):
        forward(model, np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="0 or 1"):
        forward(model, np.full((3, 3), 2, np.uint8))


def test_ties_go_to_the_lowest_index():
    model = tiny(readout=np.array([[1, 1], [1, 1]]))
    assert forward(model, np.ones((3, 3), np.uint8)).prediction.tolist() == [0]


@pytest.mark.parametrize("n_rows", [1, 2, 3, 8, 9, 40])
def test_input_sums_equal_the_integer_product(n_rows):
    """The reference forward's input sums (few rows: matrix-vector products, a repeated row
    reusing the sums before it; many rows: one matrix product) equal ``W s`` in int64."""
    from xsnn.model import _input_sums

    rng = np.random.default_rng(n_rows)
    w = rng.integers(-1, 2, size=(37, 101))
    spikes = (rng.random((n_rows, 101)) < 0.5).astype(np.uint8)
    spikes[1::3] = spikes[0::3][: len(spikes[1::3])]  # repeats, as static coding gives, beside changes
    expected = spikes.astype(np.int64) @ w.T
    assert np.array_equal(_input_sums(spikes, np.ascontiguousarray(w, np.float32)), expected)


def _integrate_and_fire_by_hand(
    currents: list[int], theta: int, reset: str, fixed: list[int | None]
) -> tuple[list, list]:
    """The contract's equations for one neuron, in plain Python integers, one step at a time."""
    v, s, spikes, potentials = 0, 0, [], []
    for t, current in enumerate(currents):
        if t:
            v = v * (1 - s) if reset == "zero" else v - theta * s
        v += current
        s = int(v >= theta) if fixed[t] is None else fixed[t]
        spikes.append(s)
        potentials.append(v)
    return spikes, potentials


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    reset=st.sampled_from(["zero", "subtract"]),
    n_steps=st.integers(1, 6),
    intervene=st.booleans(),
)
def test_integrate_and_fire_is_the_contract(seed, reset, n_steps, intervene):
    """integrate_and_fire (the one implementation: model, causal model, encodings, attack) equals
    the contract's equations neuron by neuron, with and without intervened spikes."""
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    currents = rng.integers(-6, 7, size=(m, n_steps, k))
    theta = rng.integers(1, 6, size=k)
    mask = (rng.random((n_steps, k)) < 0.3) if intervene else None
    values = rng.integers(0, 2, size=(n_steps, k)) if intervene else None
    spikes, potentials = integrate_and_fire(currents, theta, reset, mask, values)
    assert spikes.dtype == np.uint8 and potentials.dtype == np.int64 and spikes.shape == currents.shape
    for b in range(m):
        for j in range(k):
            fixed = [int(values[t, j]) if intervene and mask[t, j] else None for t in range(n_steps)]
            s, v = _integrate_and_fire_by_hand(currents[b, :, j].tolist(), int(theta[j]), reset, fixed)
            assert spikes[b, :, j].tolist() == s and potentials[b, :, j].tolist() == v


def test_integrate_and_fire_rejects_an_unknown_reset():
    with pytest.raises(ValueError, match="reset"):
        integrate_and_fire(np.zeros((2, 1), np.int64), np.ones(1, np.int64), "leaky")
