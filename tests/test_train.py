"""Surrogate-gradient training: exact export, quantization, seeds, configuration, command line."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import shlex
import struct

import numpy as np
import pytest
import torch

from xsnn.data import filter_classes, load_sample
from xsnn.model import forward, load_model_file
from xsnn.train import (
    TrainConfig,
    _Spike,
    add_train_arguments,
    build_network,
    check_agreement,
    config_from_args,
    export,
    fit,
    quantize_thresholds,
    quantize_weights,
    run_train,
    torch_scores,
    train,
)


@pytest.fixture(scope="module")
def sample():
    images, labels = load_sample()
    return (images[:150], labels[:150]), (images[150:], labels[150:])


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        hidden=(12,), n_steps=3, epochs=2, batch_size=32, lr=0.01, init_scale=0.1, threshold_init=3.0, device="cpu"
    )
    base.update(kw)
    return TrainConfig(**base)


def reference_scores(model, images):
    ref = forward(model, model.encode(images))
    return ref.scores, ref.prediction


COMBOS = [
    dict(weight_kind="binary", reset="zero", coding="static"),
    dict(weight_kind="binary", reset="subtract", coding="latency", n_steps=4),
    dict(weight_kind="ternary", sparsity=0.8, readout_sparsity=0.3, reset="zero", coding="latency"),
    dict(weight_kind="ternary", sparsity=0.7, sparsity_scope="neuron", reset="subtract", coding="static"),
    dict(weight_kind="binary", hidden=(10, 6), reset="subtract", coding="static"),
    dict(weight_kind="ternary", sparsity=0.5, hidden=(10, 6), coding="latency", classes=(1, 5, 9)),
]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_export_is_exact(sample, combo):
    """Scores of the torch model and of the exported model's int64 reference forward are equal on every input."""
    (train_x, train_y), (test_x, test_y) = sample
    result = train(tiny_config(**combo), train_data=(train_x, train_y), test_data=(test_x, test_y))
    model = result.model
    config = result.config
    assert (model.weight_kind, model.reset, model.coding.name) == (config.weight_kind, config.reset, config.coding)
    assert model.layer_sizes == config.hidden and model.labels == config.labels
    assert result.agreement.n_images == len(filter_classes(test_x, test_y, combo.get("classes"))[0]) > 0
    assert result.agreement.exact, result.agreement


@pytest.mark.parametrize("combo", COMBOS[:4], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_torch_and_frozen_scores_equal(sample, combo):
    """Direct comparison on random spikes-level inputs: images with random pixels and the sample."""
    (train_x, train_y), _ = sample
    config = tiny_config(**combo, epochs=1)
    net = build_network(config)

    fit(net, train_x, train_y)
    model = export(net)
    rng = np.random.default_rng(1)
    images = np.concatenate([train_x, rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8)])
    t_scores, t_pred = torch_scores(net, images)
    r_scores, r_pred = reference_scores(model, images)
    np.testing.assert_array_equal(t_scores, r_scores)
    np.testing.assert_array_equal(t_pred, r_pred)
    assert check_agreement(net, model, images).exact


def test_agreement_detects_a_wrong_export(sample):
    """The agreement check compares two computations: a tampered export must be caught."""
    (train_x, train_y), _ = sample
    net = build_network(tiny_config(epochs=1))

    fit(net, train_x, train_y)
    model = export(net)
    bad = dataclasses.replace(model, thresholds=(model.thresholds[0] + 1,))
    agreement = check_agreement(net, bad, train_x)
    assert agreement.same_scores < agreement.n_images


def test_scores_have_integer_values_and_ties_go_low(sample):
    (train_x, _), _ = sample
    net = build_network(tiny_config(hidden=(3,), n_steps=1))
    scores, pred = torch_scores(net, train_x)
    # with 3 hidden neurons and T=1 ties are frequent; argmax must pick the lowest tied index
    best = scores.max(axis=1, keepdims=True)
    np.testing.assert_array_equal(pred, np.argmax(scores == best, axis=1))


def test_same_seed_same_model_and_different_seed_differs(sample):
    (train_x, train_y), (test_x, test_y) = sample
    hashes = [
        train(tiny_config(seed=s), train_data=(train_x, train_y), test_data=(test_x, test_y)).model.content_hash()
        for s in (3, 3, 4)
    ]
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def test_quantize_weights():
    latent = torch.rand(20, 50, generator=torch.Generator().manual_seed(0)) * 2 - 1
    binary = quantize_weights(latent, "binary", 0.0, "layer")
    assert set(binary.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(binary, torch.where(latent >= 0, 1.0, -1.0))
    ternary = quantize_weights(latent, "ternary", 0.9, "layer")
    assert set(ternary.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert int((ternary == 0).sum()) == 900  # distinct magnitudes: exactly the target count
    kept = ternary != 0
    assert latent.abs()[kept].min() > latent.abs()[~kept].max()  # the largest magnitudes survive
    assert torch.equal(torch.sign(latent)[kept], ternary[kept])
    per_neuron = quantize_weights(latent, "ternary", 0.8, "neuron")
    assert ((per_neuron != 0).sum(dim=1) == 10).all()
    thresholds = quantize_thresholds(torch.tensor([-3.0, 0.2, 0.6, 1.49, 2.5, 7.7]))
    assert thresholds.tolist() == [1.0, 1.0, 1.0, 1.0, 2.0, 8.0]


@pytest.mark.parametrize("kind", ["fast_sigmoid", "arctan"])
def test_surrogate_gradient(kind):
    u = torch.tensor([-3.0, -1.0, 0.0, 2.0], requires_grad=True)
    s = _Spike.apply(u, 2.0, kind)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0]
    s.sum().backward()
    z = (u.detach() + 0.5) / 2.0
    expected = 1 / (1 + z.abs()) ** 2 if kind == "fast_sigmoid" else 1 / (1 + (np.pi / 2 * z) ** 2)
    torch.testing.assert_close(u.grad, expected)


def test_ternary_disconnects_dead_pixels(sample):
    """Pixels below tau in every training image get no gradient and end with zero weights."""
    (train_x, train_y), (test_x, test_y) = sample
    config = tiny_config(weight_kind="ternary", sparsity=0.8, weight_decay=1.0, init_scale=0.01, epochs=3)
    result = train(config, train_data=(train_x, train_y), test_data=(test_x, test_y))
    assert result.stats["dead_inputs"] > 100
    assert result.stats["dead_inputs_connected"] == 0
    assert abs(result.stats["layers"][0]["zero_fraction"] - 0.8) < 0.01


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(hidden=()), "hidden"),
        (dict(weight_kind="quaternary"), "weight_kind"),
        (dict(sparsity=0.5), "ternary"),
        (dict(weight_kind="ternary", sparsity=1.0), "sparsity"),
        (dict(n_steps=0), "n_steps"),
        (dict(reset="leaky"), "reset"),
        (dict(coding="rate"), "coding"),
        (dict(tau=0), "tau"),
        (dict(classes=(3,)), "classes"),
        (dict(classes=(1, 12)), "classes"),
        (dict(lr=0), "lr"),
        (dict(surrogate="relu"), "surrogate"),
        (dict(device="tpu"), "device"),
    ],
)
def test_config_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


# --------------------------------------------------------------------------- command line


def write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


@pytest.fixture
def mnist_dir(tmp_path, sample):
    (train_x, train_y), (test_x, test_y) = sample
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_y)
    return folder


def parse(argv):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


def test_cli_writes_model_and_card(tmp_path, mnist_dir, capsys):
    out = tmp_path / "m" / "tiny.npz"
    args = parse(
        [
            "--out",
            str(out),
            "--data-dir",
            str(mnist_dir),
            "--hidden",
            "8",
            "--weights",
            "ternary",
            "--sparsity",
            "0.9",
            "--steps",
            "2",
            "--epochs",
            "1",
            "--classes",
            "1,5,9",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert run_train(args) == 0
    model = load_model_file(out)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["name"] == "tiny" == model.info["name"]
    assert card["content_hash"] == model.content_hash()
    assert card["labels"] == [1, 5, 9] and card["n_steps"] == 2 and card["weight_kind"] == "ternary"
    assert card["torch_frozen_agreement"]["exact"]
    assert card["layer_sizes"] == [8]
    # the recorded command parses back to the same configuration
    argv = shlex.split(card["training_command"])
    assert argv[:2] == ["xsnn", "train"]
    assert config_from_args(parse(argv[2:])) == config_from_args(args)
    assert "test accuracy" in capsys.readouterr().out


def test_cli_errors(tmp_path, mnist_dir, capsys, monkeypatch):
    monkeypatch.delenv("XSNN_DATA", raising=False)
    assert run_train(parse(["--out", str(tmp_path / "a.npz"), "--epochs", "1"])) == 2
    assert "XSNN_DATA" in capsys.readouterr().err
    assert run_train(parse(["--out", str(tmp_path / "a.npz"), "--sparsity", "0.9"])) == 2
    assert "ternary" in capsys.readouterr().err
    assert run_train(parse(["--out", str(tmp_path / "a.txt"), "--data-dir", str(mnist_dir)])) == 2
    assert ".npz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--out", "a.npz", "--weights", "quaternary"])
    with pytest.raises(SystemExit):
        parse(["--out", "a.npz", "--hidden", "a,b"])
