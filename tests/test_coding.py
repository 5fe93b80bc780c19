"""Input codings and feature sets."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsnn.coding import LatencyCoding, StaticCoding, coding_from_spec
from xsnn.features import FeatureSet


@given(st.lists(st.integers(0, 255), min_size=1, max_size=30), st.integers(1, 255), st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_codings_respect_their_definitions_and_free_domains(pixels, tau, n_steps):
    image = np.array([pixels], dtype=np.uint8)
    static = StaticCoding(tau).encode(image, n_steps)[0]
    assert static.shape == (n_steps, len(pixels))
    for i, p in enumerate(pixels):
        assert static[:, i].tolist() == [int(p >= tau)] * n_steps
    latency = LatencyCoding(tau).encode(image, n_steps)[0]
    for i, p in enumerate(pixels):
        train = latency[:, i]
        if p < tau:
            assert train.sum() == 0
        else:
            assert train.sum() == 1 and int(np.argmax(train)) == (255 - p) * n_steps // (256 - tau)
    # Every instance train lies in the stated free domain.
    for coding, spikes in ((StaticCoding(tau), static), (LatencyCoding(tau), latency)):
        allowed = {tuple(r) for r in coding.free_trains(n_steps).tolist()}
        assert all(tuple(spikes[:, i].tolist()) in allowed for i in range(len(pixels)))


def test_latency_brighter_spikes_earlier():
    times = LatencyCoding(50).spike_times(np.array([[255, 200, 120, 60, 10]], np.uint8), 4)[0]
    assert times.tolist()[:4] == sorted(times.tolist()[:4]) and times[-1] == -1


def test_coding_spec_errors():
    assert coding_from_spec({"name": "latency", "threshold": 90}) == LatencyCoding(90)
    with pytest.raises(ValueError, match="unknown coding 'rate'"):
        coding_from_spec("rate")
    with pytest.raises(ValueError, match="unknown option"):
        coding_from_spec({"name": "static", "gain": 2})
    with pytest.raises(ValueError, match="1..255"):
        StaticCoding(0)


def test_images_are_validated():
    with pytest.raises(ValueError, match="0..255"):
        StaticCoding().encode(np.array([[300]]), 2)
    with pytest.raises(ValueError, match="integer"):
        StaticCoding().encode(np.array([[0.5]]), 2)


def test_feature_sets():
    pixels = FeatureSet.pixels(784, (28, 28))
    assert len(pixels) == 784 and pixels.names[29] == "(1,1)"
    patches = FeatureSet.patches((28, 28), 4)
    assert len(patches) == 49 and patches.pixel_mask([0]).sum() == 16
    assert (patches.feature_of_pixel() >= 0).all()
    with pytest.raises(ValueError, match="more than one feature"):
        FeatureSet(((0, 1), (1,)), ("a", "b"), 2)
