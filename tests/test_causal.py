"""The causal model: equal to the reference forward, exact interventions, correct ancestry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsnn.causal import CausalModel, Input, Neuron, Pixel, Prediction, Score, Spike
from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.model import BSNN, forward, random_model

from conftest import SEEDS


@st.composite
def nets(draw, max_inputs=7):
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    n_layers = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 5)) for _ in range(n_layers)]
    n_inputs = draw(st.integers(1, max_inputs))
    coding = draw(st.sampled_from([StaticCoding(), LatencyCoding()]))
    model = random_model(
        rng,
        sizes,
        n_inputs,
        draw(st.integers(2, 4)),
        weight_kind=draw(st.sampled_from(["binary", "ternary"])),
        reset=draw(st.sampled_from(["zero", "subtract"])),
        n_steps=draw(st.integers(1, 6)),
        coding=coding,
        max_threshold=draw(st.integers(1, 4)),
    )
    return model, rng


def reference_with_interventions(model: BSNN, x: np.ndarray, interventions: dict) -> dict:
    """An independent, scalar re-implementation of the forward loop with do() edits."""
    T = model.n_steps
    x = x.astype(int).copy()
    values = {}
    for t in range(T):
        for i in range(model.n_inputs):
            values[Input(i, t)] = interventions.get(Input(i, t), int(x[t, i]))
    prev = [[values[Input(i, t)] for i in range(model.n_inputs)] for t in range(T)]
    for l, (w, theta) in enumerate(zip(model.weights, model.thresholds)):
        out = [[0] * w.shape[0] for _ in range(T)]
        for j in range(w.shape[0]):
            v, s = 0, 0
            for t in range(T):
                if t > 0:
                    v = v * (1 - s) if model.reset == "zero" else v - int(theta[j]) * s
                v += sum(int(w[j, i]) * prev[t][i] for i in range(w.shape[1]))
                s = int(v >= int(theta[j]))
                s = interventions.get(Spike(l, j, t), s)
                out[t][j] = s
                values[Spike(l, j, t)] = s
        prev = out
    scores = []
    for c in range(model.n_classes):
        score = sum(int(model.readout[c, j]) * prev[t][j] for t in range(T) for j in range(model.readout.shape[1]))
        score = interventions.get(Score(c), score)
        values[Score(c)] = score
        scores.append(score)
    best = max(range(model.n_classes), key=lambda c: (scores[c], -c))
    values[Prediction()] = interventions.get(Prediction(), best)
    return values


def random_inputs(model: BSNN, rng: np.random.Generator, m: int) -> np.ndarray:
    return rng.integers(0, 2, size=(m, model.n_steps, model.n_inputs)).astype(np.uint8)


@settings(max_examples=40, deadline=None)
@given(nets())
def test_evaluate_equals_forward(net):
    model, rng = net
    x = random_inputs(model, rng, 6)
    ref = forward(model, x)
    got = CausalModel(model).evaluate_batch(x)
    for a, b in zip(ref.layer_spikes, got.layer_spikes):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ref.potentials, got.potentials):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ref.scores, got.scores)
    np.testing.assert_array_equal(ref.prediction, got.prediction)
    one = CausalModel(model).evaluate(x[0])
    assert one.prediction == ref.prediction[0]


def random_interventions(model: BSNN, rng: np.random.Generator) -> dict:
    """A few interventions of every kind, as atomic variables and as shorthands."""
    T = model.n_steps
    chosen: dict = {}
    kind = rng.integers(0, 6)
    for _ in range(int(rng.integers(1, 4))):
        l = int(rng.integers(0, len(model.layer_sizes)))
        j = int(rng.integers(0, model.layer_sizes[l]))
        if kind == 0:
            chosen[Spike(l, j, int(rng.integers(0, T)))] = int(rng.integers(0, 2))
        elif kind == 1:
            chosen[Neuron(l, j)] = int(rng.integers(0, 2))
        elif kind == 2:
            chosen[Pixel(int(rng.integers(0, model.n_inputs)))] = rng.integers(0, 2, size=T).tolist()
        elif kind == 3:
            chosen[Input(int(rng.integers(0, model.n_inputs)), int(rng.integers(0, T)))] = int(rng.integers(0, 2))
        elif kind == 4:
            chosen[Score(int(rng.integers(0, model.n_classes)))] = int(rng.integers(-3, 4))
        else:
            chosen[Prediction()] = int(rng.integers(0, model.n_classes))
    return chosen


def atomic(model: BSNN, interventions: dict) -> dict:
    out = {}
    for var, value in interventions.items():
        if isinstance(var, Pixel):
            values = value if isinstance(value, list) else [value] * model.n_steps
            out.update({Input(var.pixel, t): int(v) for t, v in enumerate(values)})
        elif isinstance(var, Neuron):
            out.update({Spike(var.layer, var.neuron, t): int(value) for t in range(model.n_steps)})
        else:
            out[var] = value
    return out


@settings(max_examples=40, deadline=None)
@given(nets())
def test_interventions_match_hand_written_forward(net):
    model, rng = net
    interventions = random_interventions(model, rng)
    cm = CausalModel(model)
    intervened = cm.do(interventions)
    assert cm.interventions == {}  # immutable: the original model is untouched
    for x in random_inputs(model, rng, 3):
        expected = reference_with_interventions(model, x, atomic(model, interventions))
        got = intervened.evaluate(x)
        for var, value in expected.items():
            assert got[var] == value, var
        assert cm.evaluate(x, interventions).prediction == got.prediction
        assert cm.would_change(x, interventions) == (got.prediction != cm.evaluate(x).prediction)


@settings(max_examples=25, deadline=None)
@given(nets())
def test_each_equation_reproduces_its_variable(net):
    """The per-variable structural equations, applied to the parents' values, give the values."""
    model, rng = net
    cm = CausalModel(model).do(random_interventions(model, rng))
    values = cm.evaluate(random_inputs(model, rng, 1)[0])
    for var in cm.variables():
        if isinstance(var, Input) and var not in cm.interventions:
            continue
        equation = cm.equation(var)
        assert set(equation.parents) == set(cm.parents(var))
        assert equation({p: values[p] for p in equation.parents}) == values[var], var


@settings(max_examples=25, deadline=None)
@given(nets(max_inputs=5))
def test_ancestors_equal_transitive_closure_of_parents(net):
    model, rng = net
    cm = CausalModel(model).do(random_interventions(model, rng))
    queries = [Prediction(), Score(0)] + [Spike(l, 0, model.n_steps - 1) for l in range(len(model.layer_sizes))]
    for query in queries:
        seen, todo = set(), list(cm.parents(query))
        while todo:
            var = todo.pop()
            if var not in seen:
                seen.add(var)
                todo.extend(cm.parents(var))
        assert cm.ancestors(query) == frozenset(seen), query


def tiny_net() -> BSNN:
    """3 pixels -> 2 neurons (neuron 0 sees pixels 0 and 2, neuron 1 sees pixel 1) -> 1 neuron (sees neuron 0)."""
    return BSNN(
        weights=(np.array([[1, 0, -1], [0, 1, 0]]), np.array([[1, 0]])),
        thresholds=(np.array([1, 1]), np.array([1])),
        readout=np.array([[-1], [1]]),
        weight_kind="ternary",
        reset="zero",
        n_steps=2,
        coding=StaticCoding(),
        labels=(0, 1),
        input_shape=(3,),
    )


def test_ancestors_by_hand():
    cm = CausalModel(tiny_net())
    assert cm.ancestors(Spike(1, 0, 1)) == {
        Spike(1, 0, 0),
        Spike(0, 0, 0),
        Spike(0, 0, 1),
        Input(0, 0),
        Input(0, 1),
        Input(2, 0),
        Input(2, 1),
    }
    assert cm.ancestors(Spike(0, 1, 0)) == {Input(1, 0)}
    assert cm.parents(Spike(0, 0, 1)) == {Input(0, 0), Input(2, 0), Input(0, 1), Input(2, 1), Spike(0, 0, 0)}
    assert cm.ancestors(Prediction()) == {
        Score(0),
        Score(1),
        Spike(1, 0, 0),
        Spike(1, 0, 1),
        Spike(0, 0, 0),
        Spike(0, 0, 1),
        Input(0, 0),
        Input(0, 1),
        Input(2, 0),
        Input(2, 1),
    }
    cut = cm.do({Spike(0, 0, 1): 1})
    assert cut.ancestors(Spike(1, 0, 1)) == {Spike(1, 0, 0), Spike(0, 0, 0), Spike(0, 0, 1), Input(0, 0), Input(2, 0)}
    assert cut.parents(Spike(0, 0, 1)) == frozenset()
    assert cm.ancestors(Input(0, 0)) == frozenset()
    assert cm.do({Prediction(): 1}).ancestors(Prediction()) == frozenset()


def test_counterfactual_questions_by_hand():
    cm = CausalModel(tiny_net())
    x = np.array([[1, 0, 0], [1, 0, 0]], np.uint8)  # pixel 0 on: neuron 0 fires, output neuron fires
    assert cm.evaluate(x).scores.tolist() == [-2, 2] and cm.evaluate(x).prediction == 1
    assert cm.would_change(x, {Pixel(0): 0})  # nothing fires: scores tie at 0 -> class 0
    assert cm.evaluate(x, {Pixel(0): 0}).scores.tolist() == [0, 0]
    assert cm.would_change(x, {Pixel(2): 1})  # drive 1 - 1 = 0: neuron 0 silent
    assert not cm.would_change(x, {Pixel(1): 1})  # pixel 1 is not an ancestor of the prediction
    assert cm.would_change(x, {Neuron(1, 0): 0})
    assert not cm.would_change(x, {Neuron(0, 1): 1})  # neuron (0, 1) does not reach the output
    assert cm.would_change(x, {Score(0): 2})  # a tie goes to the lower class index
    assert not cm.would_change(x, {Score(0): 1})
    result = cm.counterfactual(x, {Spike(0, 0, 0): 0})
    assert result.factual.layer_spikes[1].tolist() == [[1], [1]]
    assert result.counterfactual.layer_spikes[1].tolist() == [[0], [1]]


def test_bad_interventions_are_clear_errors():
    cm = CausalModel(tiny_net())
    with pytest.raises(ValueError, match="neuron outside"):
        cm.do({Spike(0, 5, 0): 1})
    with pytest.raises(ValueError, match="0/1"):
        cm.do({Spike(0, 0, 0): 2})
    with pytest.raises(ValueError, match="train of length"):
        cm.do({Pixel(0): [1, 0, 1]})
    with pytest.raises(ValueError, match="class index"):
        cm.do({Prediction(): 7})
    with pytest.raises(ValueError, match="exogenous"):
        cm.equation(Input(0, 0))
    with pytest.raises(AttributeError):
        cm.foo = 1
    with pytest.raises(ValueError, match="BSNN"):
        CausalModel("not a model")
