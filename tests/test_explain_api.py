"""The public API (xsnn.explain / enumerate / attribution / verify / explain_many): every kind
checked against brute force on tiny random networks, the JSON round trip, bad inputs, stopping."""

import itertools
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xsnn
from xsnn import data
from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.explanation import Explanation
from xsnn.features import FeatureSet
from xsnn.model import BSNN, forward
from xsnn.solvers.backends import exact_oracle_factory
from xsnn.solvers.bruteforce import BruteForceOracle
from xsnn.solvers.oracle import Verdict


def sparse_mnist_model(seed: int, coding=None, hidden: int = 8, density: float = 0.02, n_steps: int = 2) -> BSNN:
    """A random sparse ternary 784-hidden-10 network (fast to explain exactly)."""
    rng = np.random.default_rng(seed)
    w = rng.choice([-1, 1], size=(hidden, 784)) * (rng.random((hidden, 784)) < density)
    readout = rng.choice([-1, 0, 1], size=(10, hidden))
    return BSNN(
        weights=(w,),
        thresholds=(rng.integers(1, 5, size=hidden),),
        readout=readout,
        weight_kind="ternary",
        reset="zero",
        n_steps=n_steps,
        coding=coding or StaticCoding(),
        labels=tuple(range(10)),
        input_shape=(28, 28),
    )


def tiny_model(seed: int, n_classes: int = 3, layers: int = 1) -> BSNN:
    """A random binary 9-input network (3x3 images): every question can be decided by brute force."""
    rng = np.random.default_rng(seed)
    sizes = [9] + [int(rng.integers(2, 5)) for _ in range(layers)]
    weights = tuple(rng.choice([-1, 1], size=(sizes[i + 1], sizes[i])) for i in range(layers))
    thresholds = tuple(rng.integers(1, 4, size=sizes[i + 1]) for i in range(layers))
    return BSNN(
        weights=weights,
        thresholds=thresholds,
        readout=rng.choice([-1, 1], size=(n_classes, sizes[-1])),
        weight_kind="binary",
        reset=str(rng.choice(["zero", "subtract"])),
        n_steps=int(rng.integers(1, 4)),
        coding=StaticCoding(),
        labels=tuple(range(10, 10 + n_classes)),
        input_shape=(3, 3),
    )


def tiny_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1000).integers(0, 256, size=(3, 3)).astype(np.uint8)


def pairwise_beats(scores: np.ndarray, keep: int, foil: int) -> np.ndarray:
    """``keep`` beats ``foil`` (higher score, or equal and lower index) for each row of scores."""
    return (scores[:, keep] > scores[:, foil]) | ((scores[:, keep] == scores[:, foil]) & (keep < foil))


def brute_sufficient(
    model: BSNN,
    spikes: np.ndarray,
    fixed,
    target_index: int,
    foil_index: int | None = None,
    max_distance: int | None = None,
) -> bool:
    """Ground truth: every completion agreeing with the instance on ``fixed`` keeps the answer."""
    with BruteForceOracle(model, spikes, max_distance=max_distance) as truth:
        xs = truth.completions(frozenset(fixed))
    result = forward(model, xs)
    if foil_index is None:
        return bool((result.prediction == target_index).all())
    return bool(pairwise_beats(result.scores, target_index, foil_index).all())


def all_sufficient_sets(model, spikes, target_index, foil_index=None, max_distance=None):
    n = model.n_inputs
    return {
        frozenset(s)
        for r in range(n + 1)
        for s in itertools.combinations(range(n), r)
        if brute_sufficient(model, spikes, s, target_index, foil_index, max_distance)
    }


def minimal_sets(family):
    return {s for s in family if not any(t < s for t in family)}


@pytest.fixture(scope="module")
def sample():
    return data.load_sample()


# ------------------------------------------------------------------------ kinds against brute force


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), distance=st.sampled_from([None, 1, 2]), layers=st.integers(1, 2))
def test_every_kind_matches_brute_force(seed, distance, layers):
    model = tiny_model(seed, layers=layers)
    image = tiny_image(seed)
    spikes = model.encode(image[None])[0]
    c = int(forward(model, spikes).prediction[0])
    sufficient = all_sufficient_sets(model, spikes, c, max_distance=distance)
    axps = minimal_sets(sufficient)
    n = model.n_inputs
    weak_cxps = {
        frozenset(range(n)) - s
        for s in (
            set(
                map(frozenset, itertools.chain.from_iterable(itertools.combinations(range(n), r) for r in range(n + 1)))
            )
            - sufficient
        )
    }
    cxps = minimal_sets(weak_cxps)

    e = xsnn.explain(model, image, max_distance=distance, backend="sat")
    assert e.kind == "axp" and e.status == "complete" and e.minimal
    assert frozenset(e.features) in axps
    assert e.prediction == model.labels[c]

    m = xsnn.explain(model, image, "min-axp", max_distance=distance, backend="sat")
    assert m.status == "complete" and frozenset(m.features) in axps
    assert m.size == min(len(a) for a in axps)

    if cxps:  # the prediction can change (else: no CXp, status error)
        x = xsnn.explain(model, image, "cxp", max_distance=distance, backend="sat")
        assert x.status == "complete" and frozenset(x.features) in cxps
        run = xsnn.enumerate(model, image, "cxp", max_distance=distance, backend="sat")
        assert {frozenset(e.features) for e in run} == cxps and run.status == "complete"
    else:
        assert xsnn.explain(model, image, "cxp", max_distance=distance, backend="sat").status == "error"

    run = xsnn.enumerate(model, image, "axp", max_distance=distance, backend="sat")
    found = [frozenset(e.features) for e in run]
    assert set(found) == axps and len(found) == len(axps) and run.status == "complete"

    a = xsnn.attribution(model, image, max_distance=distance, backend="sat")
    assert a.status == "complete" and a.stats["n_axps"] == len(axps)
    expected = np.array([sum(i in s for s in axps) for i in range(n)]) / len(axps)
    assert np.allclose(a.values, expected)
    assert set(a.features) == set().union(*axps)  # relevant = in some AXp


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_contrastive_target_matches_brute_force(seed):
    model = tiny_model(seed, n_classes=4)
    image = tiny_image(seed)
    spikes = model.encode(image[None])[0]
    c = int(forward(model, spikes).prediction[0])
    for foil in range(model.n_classes):
        if foil == c:
            continue
        axps = minimal_sets(all_sufficient_sets(model, spikes, c, foil_index=foil))
        e = xsnn.explain(model, image, target=model.labels[foil], backend="bruteforce")
        assert e.target == model.labels[foil] and e.status == "complete"
        assert frozenset(e.features) in axps
        # a contrastive AXp is never larger than needed for the full prediction: every AXp of the
        # prediction is sufficient for "c beats foil"
        assert brute_sufficient(model, spikes, xsnn.explain(model, image, backend="bruteforce").features, c, foil)


def test_fast_paths_give_the_plain_solver_axp_and_it_is_certified(sample):
    for seed, coding in [(1, StaticCoding()), (2, LatencyCoding(100))]:
        model = sparse_mnist_model(seed, coding)
        image = sample[0][seed]
        fast = xsnn.explain(model, image, backend="sat", verify=True)
        plain = xsnn.explain(model, image, backend="sat", fast_paths=False)
        assert fast.features == plain.features
        assert fast.status == plain.status == "complete" and fast.minimal
        assert fast.verification is not None and fast.verification.ok, fast.verification.problems
        with exact_oracle_factory("cpsat")(model, fast.spikes) as oracle:
            assert oracle.check(fast.features).verdict is Verdict.ENTAILED
        for k in fast.features:  # each feature's witness changes the prediction, the others kept
            witness = fast.proof.witnesses[k]
            assert int(forward(model, witness).prediction[0]) != fast.prediction
            others = [j for j in fast.features if j != k]
            assert np.array_equal(witness[:, others], fast.spikes[:, others])


def test_algorithms_agree_and_patches_are_coarser(sample):
    model = sparse_mnist_model(3)
    image = sample[0][3]
    results = {
        a: xsnn.explain(model, image, algorithm=a, backend="sat").features
        for a in ("deletion", "quickxplain", "progression")
    }
    assert len(set(results.values())) == 1
    patches = xsnn.explain(model, image, features="patches:4", backend="sat")
    assert len(patches.mask) == 49 and patches.status == "complete"
    assert brute_sufficient_by_solver(model, patches)


def brute_sufficient_by_solver(model, e) -> bool:
    features = FeatureSet.patches(model.input_shape, 4)
    with exact_oracle_factory("cpsat")(model, e.spikes, features=features) as oracle:
        return oracle.check(e.features).verdict is Verdict.ENTAILED


# ------------------------------------------------------------------------ the Explanation type


@pytest.mark.parametrize(
    "kind, options",
    [
        ("axp", {}),
        ("cxp", {}),
        ("min-axp", {}),
        ("axp", {"target": 12}),
        ("axp", {"max_distance": 1, "features": "patches:2"}),
    ],
)
def test_json_round_trip_is_exact(tmp_path, kind, options):
    model = tiny_model(5, n_classes=3)
    image = tiny_image(5)
    if (
        options.get("target") is not None
        and options["target"] == model.labels[int(forward(model, model.encode(image[None])).prediction[0])]
    ):
        options = {"target": 10}
    e = xsnn.explain(model, image, kind, backend="sat", verify=True, **options)
    text = json.dumps(e.to_dict())
    back = Explanation.from_dict(json.loads(text), model=model)
    assert json.dumps(back.to_dict()) == text
    assert back.features == e.features and np.array_equal(back.mask, e.mask) and back.status == e.status
    assert xsnn.verify(back).ok  # the restored proof still proves it
    path = e.save(tmp_path / "e.json")
    assert json.dumps(Explanation.load(path, model=model).to_dict()) == text
    with pytest.raises(ValueError, match="hash"):
        Explanation.from_dict(json.loads(text), model=tiny_model(6))
    with pytest.raises(ValueError, match="not an xsnn explanation"):
        Explanation.from_dict({"schema": "something else"})


@pytest.mark.parametrize("kind", ["axp", "cxp"])
def test_certificates_saved_with_the_older_backend_keys_still_load(kind):
    """Before 2026-12-03 a certificate named each verdict's answer path "backend" (and a CXp's
    witness path "witness_backend"); such a file loads to the same explanation."""
    model = tiny_model(5, n_classes=3)
    e = xsnn.explain(model, tiny_image(5), kind, backend="sat", verify=True)
    new = e.to_dict()
    text = json.dumps(new)
    assert '"path"' in text and '"backend": "' in text  # the option "backend" stays (the exact oracle)
    old = json.loads(text.replace('"path":', '"backend":').replace('"witness_path":', '"witness_backend":'))
    assert old != new
    back = Explanation.from_dict(old, model=model)
    assert json.dumps(back.to_dict()) == text
    assert xsnn.verify(back).ok


def test_explanation_settings_name_the_model_data_and_options(sample):
    model = xsnn.load_model("mnist159-binary")
    e = xsnn.explain(model, sample[0][2], max_distance=1, source={"data": "sample", "index": 2})
    assert e.settings["model"] == "mnist159-binary" and e.settings["model_hash"] == model.content_hash()
    assert e.settings["data"] == {"data": "sample", "index": 2}
    assert e.settings["options"]["max_distance"] == 1 and e.settings["xsnn_version"] == xsnn.__version__
    assert "Explanation(kind='axp'" in repr(e)
    assert "'#' explanation" in e.render()  # the legend


def test_an_empty_distance_restricted_axp_says_robust(sample):
    model = xsnn.load_model("mnist159-binary")
    e = xsnn.explain(model, sample[0][2], max_distance=1)
    assert e.size == 0 and "Robust" in e.summary() and "at most 1 pixels" in e.summary()


def test_explain_many_yields_one_per_image_with_errors_as_statuses(sample):
    model = tiny_model(7)
    good = tiny_image(7)
    results = list(xsnn.explain_many(model, [good, np.zeros((2, 2), np.uint8), good], backend="sat"))
    assert [r.status for r in results] == ["complete", "error", "complete"]
    assert "shape" in results[1].stats["error"]


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "image, message",
    [
        (lambda im: im[:3], "batch of 3 images"),
        (lambda im: im[0][:20], "shape \\(20, 28\\)"),
        (lambda im: (im[0] >= 128).astype(np.uint8), "looks binarized"),
        (lambda im: im[0] >= 128, "boolean"),
        (lambda im: im[0] / 255.0, "scaled to \\[0, 1\\]"),
        (lambda im: im[0] + 0.5, "fractional"),
        (lambda im: np.full((28, 28), np.nan), "NaN"),
        (lambda im: im[0].astype(np.int64) + 1000, "expected intensities 0..255"),
        (lambda im: "seven", "must be one image"),
    ],
)
def test_bad_images_are_refused_with_the_reason(sample, image, message):
    model = xsnn.load_model()
    with pytest.raises(ValueError, match=message):
        xsnn.explain(model, image(sample[0]))


def test_binarized_images_are_accepted_when_said(sample):
    model = xsnn.load_model()
    binary = (sample[0][:10] >= 128).astype(np.uint8)
    with pytest.raises(ValueError, match="looks binarized"):
        xsnn.predict(model, binary)
    assert (xsnn.predict(model, binary, binarized=True) == xsnn.predict(model, binary * 255)).all()
    with pytest.raises(ValueError, match="only 0 and 1"):
        xsnn.predict(model, sample[0][:2], binarized=True)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kind": "why"}, "unknown kind 'why'"),
        ({"algorithm": "magic"}, "unknown algorithm 'magic'"),
        ({"backend": "gurobi"}, "unknown backend 'gurobi'"),
        ({"order": "random"}, "unknown order 'random'"),
        ({"order": [1.0, 2.0]}, "one per feature"),
        ({"time_limit": -1}, "time_limit must be a positive number"),
        ({"time_limit": "10"}, "time_limit must be a positive number"),
        ({"max_distance": -1}, "max_distance must be a whole number >= 0"),
        ({"max_distance": 1.5}, "max_distance must be a whole number >= 0"),
        ({"target": 42}, "target 42 is not a class"),
        ({"target": 3.5}, "target must be a class label"),
        ({"target": 7}, "target 7 is the prediction itself"),
        ({"features": "patches:0"}, "patches:K"),
        ({"kind": "cxp", "algorithm": "quickxplain"}, "computes AXps only"),
    ],
)
def test_bad_options_are_named(sample, options, message):
    model = xsnn.load_model()
    with pytest.raises(ValueError, match=message):
        xsnn.explain(model, sample[0][0], **options)  # image 0 is a 7


# ------------------------------------------------------------------------ stopping


def test_ctrl_c_returns_the_sufficient_set_found_so_far(sample):
    """SIGINT while a hard AXp runs: back within 2 s with status interrupted and a sufficient set."""
    model = xsnn.load_model("mnist159-binary")
    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    start = time.perf_counter()
    sent = start + 3.0
    try:
        e = xsnn.explain(model, sample[0][2], time_limit=120)
    finally:
        timer.cancel()  # an explanation done within 3 s fails below, without interrupting the session
    assert time.perf_counter() >= sent, "the explanation finished before the interrupt: pick a harder image"
    assert time.perf_counter() - sent < 2.0
    assert e.status == "interrupted" and 0 < e.size <= 784
    # sufficient: re-decided with its proof checked by CP-SAT and exact arithmetic (CP-SAT alone does
    # not decide this question within a minute on the dense network)
    with exact_oracle_factory("levels-checked")(model, e.spikes) as oracle:
        assert oracle.check(e.features, time_limit=120).verdict is Verdict.ENTAILED


def test_time_limit_bounds_a_hard_axp_and_its_verification(sample):
    model = xsnn.load_model("mnist159-binary")
    start = time.perf_counter()
    e = xsnn.explain(model, sample[0][2], time_limit=3, verify=True, verify_time_limit=3)
    assert time.perf_counter() - start < 3 + 3 + 4  # both limits plus setup
    assert e.status == "timeout" and e.verification is not None
    assert e.verification.status in ("complete", "timeout")
    assert "--distance 2" in e.summary() and "--order influence" in e.summary()  # what to ask instead
    assert "Faster questions" not in xsnn.explain(model, sample[0][2], max_distance=1).summary()
