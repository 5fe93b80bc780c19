"""The reference models shipped in xsnn/models: files, cards, and accuracy without torch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from xsnn.data import filter_classes, load_mnist, load_sample
from xsnn.kernel import predict as predict_indices
from xsnn.model import forward, load_model, model_card, shipped_model_dir, shipped_model_names

EXPECTED = {
    "mnist159-binary": ("binary", (1, 5, 9), 0.99),
    "mnist159-binary16": ("binary", (1, 5, 9), 0.99),
    "mnist10-sparse192": ("ternary", tuple(range(10)), 0.97),
    "mnist10-sparse": ("ternary", tuple(range(10)), 0.97),
    "mnist10-ternary": ("ternary", tuple(range(10)), 0.97),
    "mnist10-binary": ("binary", tuple(range(10)), 0.95),
}
MNIST = os.environ.get("XSNN_DATA")


def test_the_six_models_ship():
    assert set(EXPECTED) <= set(shipped_model_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_file_and_card(name):
    model = load_model(name)  # validates shapes, dtypes, value sets and the content hash
    card = model_card(name)
    kind, labels, floor = EXPECTED[name]
    assert card["name"] == name == model.info["name"]
    assert card["file"] == f"{name}.npz"
    assert card["content_hash"] == model.content_hash()
    assert model.weight_kind == card["weight_kind"] == kind
    assert model.labels == labels and card["labels"] == list(labels)
    assert list(model.layer_sizes) == card["layer_sizes"] and max(model.layer_sizes) <= 256
    assert model.n_steps == card["n_steps"] <= 8
    assert model.coding.spec() == card["coding"] and model.reset == card["reset"]
    assert card["test_accuracy"] >= floor
    agreement = card["torch_frozen_agreement"]
    assert agreement["exact"] and agreement["n_images"] == card["n_test_images"]
    assert agreement["same_prediction"] == agreement["same_scores"] == card["n_test_images"]
    assert card["training_command"].startswith("xsnn train ")
    assert (shipped_model_dir() / f"{name}.npz").stat().st_size < 400_000


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_accuracy_matches_card(name):
    """The frozen integer model (reference forward, no torch) classifies the shipped sample as its card says."""
    model, card = load_model(name), model_card(name)
    images, classes = filter_classes(*load_sample(), model.labels)
    prediction = forward(model, model.encode(images)).prediction
    accuracy = float(np.mean(prediction == classes))
    assert accuracy >= card["test_accuracy"] - 0.05, (name, accuracy, len(images))


@pytest.mark.skipif(MNIST is None, reason="MNIST not available (set XSNN_DATA)")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_test_accuracy_is_the_card_accuracy(name):
    model, card = load_model(name), model_card(name)
    images, classes = filter_classes(*load_mnist("test", MNIST), model.labels)
    correct = int(np.sum(predict_indices(model, model.encode(images)) == classes))  # fast kernel, = reference
    assert len(images) == card["n_test_images"]
    assert correct / len(images) == pytest.approx(card["test_accuracy"], abs=1e-6)


def test_explaining_side_needs_no_torch():
    code = (
        "import sys, xsnn, xsnn.data, xsnn.model\n"
        "m = xsnn.load_model('mnist10-binary'); x, y = xsnn.data.load_sample()\n"
        "p = xsnn.model.forward(m, m.encode(x[:20])).prediction\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
