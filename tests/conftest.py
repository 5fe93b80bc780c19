"""Shared random networks and random questions for the property tests.

A *question* is (model, instance, features, max_distance, target): may the prediction leave the
target class when the features outside a fixed set are free? The helpers below draw small random
ones from a seed, so that brute force (:class:`~xsnn.solvers.bruteforce.BruteForceOracle`) can
answer every question exactly; the hypothesis strategies draw the seed (and the coarse shape)
so that a failing example is reported as a few integers and replayed exactly.

Test modules import the helpers by name (``from conftest import random_question``); pytest puts
this directory on the import path (rootdir-based conftest loading).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st

from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.features import FeatureSet
from xsnn.model import BSNN, random_model

SEEDS = st.integers(0, 2**32 - 1)
WEIGHT_KINDS = ("binary", "ternary")
RESETS = ("zero", "subtract")


class Case(NamedTuple):
    """A random question and the generator that drew it (for drawing fixed sets next)."""

    model: BSNN
    instance: np.ndarray
    features: FeatureSet
    max_distance: int | None
    target: int | None
    rng: np.random.Generator


# ---------------------------------------------------------------------------- networks


def random_network(
    rng: np.random.Generator,
    layer_sizes: list[int],
    n_inputs: int,
    *,
    n_steps: int,
    coding,
    kind: str | None = None,
    reset: str | None = None,
    max_threshold: int = 4,
) -> BSNN:
    """A random BSNN with 2-4 classes; the weight kind and the reset are drawn when not given,
    the thresholds of each layer lie in ``1..t`` for a ``t`` drawn from ``1..max_threshold``."""
    n_classes = int(rng.integers(2, 5))
    kind = kind or WEIGHT_KINDS[int(rng.integers(2))]
    reset = reset or RESETS[int(rng.integers(2))]
    return random_model(
        rng,
        layer_sizes,
        n_inputs,
        n_classes,
        weight_kind=kind,
        reset=reset,
        n_steps=n_steps,
        coding=coding,
        max_threshold=int(rng.integers(1, max_threshold + 1)),
    )


def random_instance(model: BSNN, rng: np.random.Generator) -> np.ndarray:
    """The coding of a random image: spikes ``(T, n)`` in the coding's domain."""
    return model.encode(rng.integers(0, 256, size=(1, model.n_inputs)).astype(np.uint8))[0]


def one_layer_static_case(
    seed: int, kind: str, reset: str, n_steps: int, *, max_inputs: int = 11, max_neurons: int = 6
) -> tuple[BSNN, np.ndarray, np.random.Generator]:
    """A random one-layer network of the static coding (random firing threshold) and an instance:
    the setting of the rival split, the rival SAT oracle and the level search."""
    rng = np.random.default_rng(seed)
    n_inputs = int(rng.integers(2, max_inputs + 1))
    model = random_model(
        rng,
        [int(rng.integers(1, max_neurons + 1))],
        n_inputs,
        int(rng.integers(2, 5)),
        weight_kind=kind,
        reset=reset,
        n_steps=n_steps,
        coding=StaticCoding(int(rng.integers(1, 256))),
        max_threshold=int(rng.integers(1, 5)),
    )
    return model, random_instance(model, rng), rng


# ---------------------------------------------------------------------------- features


def random_groups(rng: np.random.Generator, n: int) -> FeatureSet:
    """Up to three features of random pixels (and maybe one pixel in no feature: always free)."""
    order = rng.permutation(n)[: max(1, n - int(rng.integers(0, 2)))]
    cuts = sorted(set(rng.integers(1, len(order), size=2).tolist())) if len(order) > 1 else []
    groups = [tuple(int(i) for i in g) for g in np.split(order, cuts) if len(g)]
    return FeatureSet(tuple(groups), tuple(f"g{k}" for k in range(len(groups))), n)


def random_features(rng: np.random.Generator, n: int) -> FeatureSet:
    """One feature per pixel, or :func:`random_groups` (even odds)."""
    return FeatureSet.pixels(n) if rng.random() < 0.5 else random_groups(rng, n)


def random_partition(rng: np.random.Generator, n: int) -> FeatureSet:
    """About ``n / 2`` features that cover every pixel."""
    perm = rng.permutation(n)
    cut = sorted(rng.choice(np.arange(1, n), size=min(n - 1, max(1, n // 2)), replace=False).tolist())
    parts = np.split(perm, cut)
    return FeatureSet(
        tuple(tuple(sorted(int(p) for p in part)) for part in parts), tuple(f"g{k}" for k in range(len(parts))), n
    )


def random_small_groups(rng: np.random.Generator, n: int, *, max_size: int = 2) -> FeatureSet:
    """Features of ``1..max_size`` pixels, one pixel left out of every feature (always free)."""
    owned, groups = rng.permutation(n)[1:], []
    i = 0
    while i < len(owned):
        size = int(rng.integers(1, max_size + 1))
        groups.append(tuple(sorted(int(p) for p in owned[i : i + size])))
        i += size
    return FeatureSet(tuple(groups), tuple(f"g{k}" for k in range(len(groups))), n)


def random_fixed(rng: np.random.Generator, n_features: int) -> frozenset[int]:
    """A random fixed set (each feature fixed with a random probability)."""
    return frozenset(np.flatnonzero(rng.random(n_features) < rng.random()).tolist())


# ---------------------------------------------------------------------------- questions


def random_question(
    seed: int,
    *,
    max_inputs: tuple[int, int] = (6, 8),
    groups: str | None = None,
    distance: tuple[float, int] | None = (0.6, 1),
    keep_prediction: float = 1.0,
) -> Case:
    """A random tiny question from ``seed``.

    The network: latency (``T = 2``) or static (``T`` in 1..3) coding, 3..``max_inputs`` inputs
    (latency, static), one or two layers of 2-6 neurons, binary or ternary weights, either reset.
    ``groups``: None (one feature per pixel), ``"partition"`` (:func:`random_partition`) or
    ``"small"`` (:func:`random_small_groups`). ``distance = (p, lo)``: no bound with probability
    ``p``, else a bound in ``lo..len(features)``; None: never a bound. ``keep_prediction``: the
    probability that the target is the prediction (None), else a random class (not drawn at 1).
    """
    rng = np.random.default_rng(seed)
    latency = bool(rng.integers(2))
    n = int(rng.integers(3, (max_inputs[0] if latency else max_inputs[1]) + 1))
    n_steps = 2 if latency else int(rng.integers(1, 4))
    layers = [int(rng.integers(2, 7)) for _ in range(int(rng.integers(1, 3)))]
    model = random_network(rng, layers, n, n_steps=n_steps, coding=LatencyCoding() if latency else StaticCoding())
    instance = random_instance(model, rng)
    if groups == "partition":
        features = random_partition(rng, n)
    elif groups == "small":
        features = random_small_groups(rng, n)
    elif groups is None:
        features = FeatureSet.pixels(n)
    else:
        raise ValueError(f"groups must be None, 'partition' or 'small', got {groups!r}")
    max_distance = None
    if distance is not None:
        no_bound, lowest = distance
        max_distance = None if rng.random() < no_bound else int(rng.integers(lowest, len(features) + 1))
    target = None
    if keep_prediction < 1:
        target = None if rng.random() < keep_prediction else int(rng.integers(model.n_classes))
    return Case(model, instance, features, max_distance, target, rng)


STATIC_OR_LATENCY = st.booleans()
ONE_OR_TWO_LAYERS = st.sampled_from([1, 1, 2])
SMALL_DISTANCES = st.sampled_from([None, None, 0, 1, 2, 3])


@st.composite
def small_questions(
    draw,
    *,
    static: st.SearchStrategy[bool] = STATIC_OR_LATENCY,
    layers: st.SearchStrategy[int] = ONE_OR_TWO_LAYERS,
    distances: st.SearchStrategy[int | None] = SMALL_DISTANCES,
    max_static_inputs: int = 8,
    max_latency_inputs: int = 6,
) -> Case:
    """Hypothesis strategy: a small question whose every completion brute force can enumerate.

    Draws the shape (static or latency coding with a random firing threshold, the number of
    spiking layers, steps, inputs, distance bound, whether the target is another class) from
    hypothesis and the weights, instance, features and target from a drawn seed. The default
    odds give one spiking layer of the static coding often, so that the oracles restricted to
    that setting are exercised, not only refused; pass other strategies to shift them.
    """
    rng = np.random.default_rng(draw(SEEDS))
    is_static = draw(static)
    n_steps = draw(st.integers(1, 3)) if is_static else draw(st.integers(1, 2))
    n_inputs = draw(st.integers(2, max_static_inputs if is_static else max_latency_inputs))
    n_layers = draw(layers)
    coding = StaticCoding(int(rng.integers(1, 256))) if is_static else LatencyCoding(int(rng.integers(1, 256)))
    model = random_network(
        rng, [int(rng.integers(1, 6)) for _ in range(n_layers)], n_inputs, n_steps=n_steps, coding=coding
    )
    instance = random_instance(model, rng)
    features = random_features(rng, n_inputs)
    max_distance = draw(distances)
    target = int(rng.integers(model.n_classes)) if draw(st.integers(0, 3)) == 0 else None
    return Case(model, instance, features, max_distance, target, rng)
