"""Encoders: cardinality encodings are exact, and every encoder equals the causal model (proof of equality)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from xsnn.causal import CausalModel, Input, Neuron, Pixel, Prediction, Score, Spike
from xsnn.coding import LatencyCoding, StaticCoding
from xsnn.encoders import cnf as cnf_module
from xsnn.encoders.cardinality import ENCODINGS, ClauseSink, make_encoding
from xsnn.encoders.cnf import encode_cnf
from xsnn.encoders.smt import SMT_VARIANTS, encode_smt
from xsnn.model import BSNN, random_model
from xsnn.solvers.sat import new_solver

from conftest import SEEDS


def solver_for(encoding: str) -> str:
    return "minicard" if encoding == "native" else "cadical195"


# --------------------------------------------------------------------------- cardinality encodings


def _random_multiset(rng, base, size, max_mult):
    lits = []
    for _ in range(size):
        lits.extend([int(rng.choice(base)) * int(rng.choice([1, -1]))] * int(rng.integers(1, max_mult + 1)))
    return lits


@pytest.mark.parametrize("name", ENCODINGS)
def test_cardinality_encoding_outputs_are_exact(name):
    """o_k <-> count >= b_k, guard -> count >= b, count <= b: checked on every assignment."""
    rng = np.random.default_rng(ENCODINGS.index(name))
    for trial in range(12):
        sink = ClauseSink(native=(name == "native"))
        card = make_encoding(name, sink)
        base = [sink.var() for _ in range(4)]
        max_mult = 12 if trial % 3 == 0 else 2  # heavy repeats: native counts them natively
        lits = _random_multiset(rng, base, int(rng.integers(1, 6)), max_mult)
        count = card.count(lits)
        other = card.count(_random_multiset(rng, base, 2, 2))
        total = card.add(count, other)
        bounds = sorted(set(rng.integers(-1, len(lits) + 2, size=4).tolist()))
        outputs = card.reify(count, bounds)
        total_bounds = [1, len(total.lits) // 2, len(total.lits)]
        total_outputs = card.reify(total, total_bounds)
        guard = sink.var()
        geq_bound = int(rng.integers(0, len(lits) + 2))
        card.require_geq(count, geq_bound, guard=guard)
        # require_leq is a hard constraint: test it in a sink of its own
        leq_sink = ClauseSink(native=(name == "native"))
        leq_card = make_encoding(name, leq_sink)
        leq_base = [leq_sink.var() for _ in range(4)]
        leq_lits = [leq_base[base.index(abs(l))] * (1 if l > 0 else -1) for l in lits]
        leq_bound = int(rng.integers(-1, len(lits) + 1))
        leq_card.require_leq(leq_card.count(leq_lits), leq_bound)
        with (
            new_solver(sink.formula(), solver_for(name)) as s,
            new_solver(leq_sink.formula(), solver_for(name)) as s_leq,
        ):
            for values in itertools.product([0, 1], repeat=len(base)):
                assume = [v if a else -v for v, a in zip(base, values)]
                truth = {v: a for v, a in zip(base, values)}

                def value(l, truth=truth):
                    return truth[abs(l)] if l > 0 else 1 - truth[abs(l)]

                c = sum(value(l) for l in lits)
                c_total = c + sum(value(l) for l in other.lits)
                for o, b in list(zip(outputs, bounds)) + list(zip(total_outputs, total_bounds)):
                    cc = c if o in outputs else c_total
                    want = cc >= b
                    assert s.solve(assumptions=assume + [o if want else -o]), (name, lits, b, values)
                    assert not s.solve(assumptions=assume + [-o if want else o]), (name, lits, b, values)
                assert s.solve(assumptions=assume + [guard]) == (c >= geq_bound), (name, lits, geq_bound)
                assert s.solve(assumptions=assume + [-guard])
                leq_assume = [leq_base[k] if a else -leq_base[k] for k, a in enumerate(values)]
                assert s_leq.solve(assumptions=leq_assume) == (c <= leq_bound), (name, lits, leq_bound)


def test_cardinality_encoding_refuses_constants_and_unknown_names():
    sink = ClauseSink()
    with pytest.raises(ValueError, match="constants"):
        make_encoding("adder", sink).count([sink.true])
    with pytest.raises(ValueError, match="unknown cardinality encoding"):
        make_encoding("bitwise", sink)
    with pytest.raises(ValueError, match="native"):
        make_encoding("native", sink)


# --------------------------------------------------------------------------- random networks


@dataclass(frozen=True)
class ChoiceCoding:
    """A test coding whose free domain is neither static nor latency (exercises the one-hot domain)."""

    threshold: int = 128
    name: ClassVar[str] = "choice-test"

    def free_trains(self, n_steps: int) -> np.ndarray:
        trains = {
            tuple([0] * n_steps),
            tuple([1] * n_steps),
            tuple([1] + [0] * (n_steps - 1)),
            tuple([0] * (n_steps - 1) + [1] if n_steps > 1 else [1]),
            tuple(t % 2 for t in range(n_steps)),
        }
        return np.array(sorted(trains), dtype=np.uint8)

    def encode(self, images: np.ndarray, n_steps: int) -> np.ndarray:
        images = np.asarray(images).reshape(len(images), -1)
        trains = self.free_trains(n_steps)
        return trains[images.astype(np.int64) % len(trains)].transpose(0, 2, 1).astype(np.uint8)

    def spec(self) -> dict:
        return {"name": self.name, "threshold": self.threshold}


CODINGS = (StaticCoding(), LatencyCoding(), ChoiceCoding())


@st.composite
def nets(draw, max_inputs=6, max_steps=6, codings=CODINGS):
    rng = np.random.default_rng(draw(SEEDS))
    sizes = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3)))]
    model = random_model(
        rng,
        sizes,
        draw(st.integers(1, max_inputs)),
        draw(st.integers(2, 4)),
        weight_kind=draw(st.sampled_from(["binary", "ternary"])),
        reset=draw(st.sampled_from(["zero", "subtract"])),
        n_steps=draw(st.integers(1, max_steps)),
        coding=draw(st.sampled_from(codings)),
        max_threshold=draw(st.integers(1, 4)),
    )
    return model, rng


def random_instance(model: BSNN, rng: np.random.Generator) -> np.ndarray:
    image = rng.integers(0, 256, size=(1, model.n_inputs))
    return model.coding.encode(image, model.n_steps)[0]


def random_interventions(model: BSNN, rng: np.random.Generator) -> dict:
    chosen: dict = {}
    T = model.n_steps
    for _ in range(int(rng.integers(0, 4))):
        kind = int(rng.integers(0, 6))
        l = int(rng.integers(0, len(model.layer_sizes)))
        j = int(rng.integers(0, model.layer_sizes[l]))
        if kind <= 1:
            chosen[Spike(l, j, int(rng.integers(0, T)))] = int(rng.integers(0, 2))
        elif kind == 2:
            chosen[Neuron(l, j)] = int(rng.integers(0, 2))
        elif kind == 3:
            chosen[Pixel(int(rng.integers(0, model.n_inputs)))] = rng.integers(0, 2, size=T).tolist()
        elif kind == 4:
            chosen[Input(int(rng.integers(0, model.n_inputs)), int(rng.integers(0, T)))] = int(rng.integers(0, 2))
        else:
            chosen[Score(int(rng.integers(0, model.n_classes)))] = int(rng.integers(-2, 3))
    if rng.random() < 0.05:
        chosen[Prediction()] = int(rng.integers(0, model.n_classes))
    return chosen


# --------------------------------------------------------------------------- proof of equality


def cnf_equality_problems(causal: CausalModel, x: np.ndarray, encoding: str) -> list[str]:
    """Everything fixed: the CNF must have exactly the causal model's spikes, scores and prediction."""
    problems = []
    ref = causal.evaluate(x)
    everything = range(causal.n_inputs)
    for goal, target in [
        ("equals", ref.prediction),
        ("differs", ref.prediction),
        ("equals", (ref.prediction + 1) % causal.n_classes),
    ]:
        enc = encode_cnf(causal, x, target, goal=goal, encoding=encoding)
        with new_solver(enc.formula, solver_for(encoding)) as s:
            sat = s.solve(assumptions=enc.assumptions(everything))
            if sat != (goal == "equals" and target == ref.prediction):
                problems.append(f"{encoding}: goal {goal} {target} gave {'SAT' if sat else 'UNSAT'}")
                continue
            if not sat:
                continue
            model = s.get_model()
            if not np.array_equal(enc.decode_inputs(model), x):
                problems.append(f"{encoding}: decoded inputs differ from the instance")
            for l, (got, want) in enumerate(zip(enc.decode_spikes(model), ref.layer_spikes)):
                if not np.array_equal(got, want):
                    problems.append(f"{encoding}: layer {l} spikes differ")
            if (
                not np.array_equal(enc.decode_scores(model), ref.scores)
                or enc.decode_prediction(model) != ref.prediction
            ):
                problems.append(f"{encoding}: scores/prediction differ")
            free = [int(l) for layer in enc.spikes for l in layer.ravel() if abs(int(l)) != enc.true_lit]
            values = enc._decode(enc._values(model), np.array(free, dtype=np.int64))
            block = [-l if v else l for l, v in zip(free, values)]
            if block:  # no second spike assignment for these inputs
                s.add_clause(block)
                if s.solve(assumptions=enc.assumptions(everything)):
                    problems.append(f"{encoding}: spikes are not unique given the inputs")
    return problems


def smt_equality_problems(causal: CausalModel, x: np.ndarray, variant: str) -> list[str]:
    problems = []
    ref = causal.evaluate(x)
    everything = range(causal.n_inputs)
    for goal, target in [
        ("equals", ref.prediction),
        ("differs", ref.prediction),
        ("equals", (ref.prediction + 1) % causal.n_classes),
    ]:
        enc = encode_smt(causal, x, target, goal=goal, variant=variant)
        s = enc.solver()
        result = s.check(*enc.assumptions(everything))
        want = goal == "equals" and target == ref.prediction
        if (result == z3.sat) != want or result == z3.unknown:
            problems.append(f"smt-{variant}: goal {goal} {target} gave {result}")
            continue
        if result != z3.sat:
            continue
        model = s.model()
        if not np.array_equal(enc.decode_inputs(model), x):
            problems.append(f"smt-{variant}: decoded inputs differ")
        for got, want_s in zip(enc.decode_spikes(model), ref.layer_spikes):
            if not np.array_equal(got, want_s):
                problems.append(f"smt-{variant}: spikes differ")
        if variant == "lia":
            for got, want_v in zip(enc.decode_potentials(model), ref.potentials):
                if not np.array_equal(got, want_v):
                    problems.append("smt-lia: potentials differ")
        if not np.array_equal(enc.decode_scores(model), ref.scores) or enc.decode_prediction(model) != ref.prediction:
            problems.append(f"smt-{variant}: scores/prediction differ")
        terms = [
            (t, v)
            for layer, vals in zip(enc.spikes, enc.decode_spikes(model))
            for t, v in zip(layer.ravel(), vals.ravel())
            if not (z3.is_true(t) or z3.is_false(t))
        ]
        if terms:
            s.add(z3.Or([t != z3.BoolVal(bool(v), enc.context) for t, v in terms]))
            if s.check(*enc.assumptions(everything)) != z3.unsat:
                problems.append(f"smt-{variant}: spikes are not unique given the inputs")
    return problems


@settings(max_examples=30, deadline=None)
@given(nets())
def test_every_encoder_equals_the_causal_model(net):
    model, rng = net
    causal = CausalModel(model)
    x = random_instance(model, rng)
    problems = []
    for encoding in ENCODINGS:
        problems += cnf_equality_problems(causal, x, encoding)
    for variant in SMT_VARIANTS:
        problems += smt_equality_problems(causal, x, variant)
    assert not problems, problems


@settings(max_examples=30, deadline=None)
@given(nets())
def test_every_encoder_equals_the_intervened_causal_model(net):
    model, rng = net
    causal = CausalModel(model).do(random_interventions(model, rng))
    x = random_instance(model, rng)
    problems = []
    for encoding in ("adder", "native", "totalizer", "seqcounter"):
        problems += cnf_equality_problems(causal, x, encoding)
    for variant in SMT_VARIANTS:
        problems += smt_equality_problems(causal, x, variant)
    assert not problems, problems


def input_projections(enc, solver) -> list[np.ndarray]:
    """Every distinct exogenous input of the formula's models (blocking clauses on the inputs)."""
    found = []
    lits = sorted({int(l) for l in enc.inputs.ravel()})
    while solver.solve():
        model = solver.get_model()
        found.append(enc.decode_inputs(model))
        values = enc._decode(enc._values(model), np.array(lits, dtype=np.int64))
        solver.add_clause([-l if v else l for l, v in zip(lits, values)])
    return found


@settings(max_examples=15, deadline=None)
@given(nets(max_inputs=3, max_steps=3))
def test_free_domain_and_goal_partition_the_inputs(net):
    """Nothing fixed: the inputs of 'prediction = c' over all c are exactly the free domain, each once,
    and each with forward prediction c."""
    model, rng = net
    causal = CausalModel(model)
    x = random_instance(model, rng)
    trains = model.coding.free_trains(model.n_steps)
    domain = {tuple(map(tuple, np.array(c).T)) for c in itertools.product(trains.tolist(), repeat=model.n_inputs)}
    for encoding in ("adder", "native"):
        seen = []
        for c in range(model.n_classes):
            enc = encode_cnf(causal, x, c, goal="equals", encoding=encoding)
            with new_solver(enc.formula, solver_for(encoding)) as s:
                inputs = input_projections(enc, s)
            assert all(causal.evaluate(i).prediction == c for i in inputs)
            seen += [tuple(map(tuple, i)) for i in inputs]
        assert len(seen) == len(set(seen)) and set(seen) == domain


def test_the_equality_check_catches_a_broken_tie_rule(monkeypatch):
    """A deliberately broken encoder (ties go to the HIGHEST index) must be detected."""
    original = cnf_module._score_difference

    def broken(sink, causal, counts, better, target):
        folded, offset = original(sink, causal, counts, better, target)
        return folded, offset + (1 if better > target else -1)  # flips the tie rule

    rng = np.random.default_rng(7)
    models = [random_model(rng, [3], 4, 3, n_steps=2, max_threshold=2) for _ in range(40)]
    clean = [p for m in models for p in cnf_equality_problems(CausalModel(m), random_instance(m, rng), "adder")]
    assert clean == []
    monkeypatch.setattr(cnf_module, "_score_difference", broken)
    rng = np.random.default_rng(7)
    models = [random_model(rng, [3], 4, 3, n_steps=2, max_threshold=2) for _ in range(40)]
    broken_problems = [
        p for m in models for p in cnf_equality_problems(CausalModel(m), random_instance(m, rng), "adder")
    ]
    assert broken_problems, "the equality check did not notice a flipped tie rule"


def test_bad_arguments_are_clear_errors():
    rng = np.random.default_rng(0)
    model = random_model(rng, [2], 3, 2, n_steps=2)
    x = model.encode(np.array([[0, 200, 255]], np.uint8))[0]
    with pytest.raises(ValueError, match="unknown cardinality encoding"):
        encode_cnf(model, x, 0, encoding="nope")
    with pytest.raises(ValueError, match="free domain"):
        encode_cnf(model, np.array([[1, 0, 0], [0, 0, 0]], np.uint8), 0)
    with pytest.raises(ValueError, match="target class"):
        encode_smt(model, x, 5)
    with pytest.raises(ValueError, match="goal"):
        encode_cnf(model, x, 0, goal="maybe")
    with pytest.raises(ValueError, match="SMT variant"):
        encode_smt(model, x, 0, variant="bv")
    with pytest.raises(ValueError, match="max_distance"):
        encode_cnf(model, x, 0, max_distance=-1)
