"""Causal model -> SMT (z3): the entailment question with integer potentials or pseudo-Booleans.

The same question as :mod:`xsnn.encoders.cnf` (free domain, one Boolean selector per
feature, optional distance bound, network, goal), in two variants:

- ``lia``: linear integer arithmetic. Every potential is an ``Int``::

      V(t) = R(V(t-1), s(t-1)) + sum_i w_i ite(x_i(t), 1, 0),   s(t) = (V(t) >= theta)

  with ``R = ite(s, 0, V)`` (zero) or ``V - theta ite(s, 1, 0)`` (subtract); when the input
  literals are the same at every step (first layer, static coding) the sum is one
  ``Int`` ``u`` shared by all steps. Scores are ``Int`` sums; the goal compares them.
- ``pb``: z3's native pseudo-Boolean constraints (``PbGe``), no integers. A neuron with
  a constant drive is tabulated (as in the CNF encoder: ``s(t)`` is a function of
  ``[C >= b]`` for a few breakpoints ``b``); otherwise zero reset uses windows since the
  last spike and subtract reset one ``PbGe`` per step (own spikes weighted by ``theta``).

Each encoding uses its own z3 ``Context``. SMT-LIB2 text comes from ``Solver.to_smt2()``.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import z3

from xsnn.causal import CausalModel, NeuronDynamics
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .common import domain_kind, drive_table, prepare_query

__all__ = ["SMTEncoding", "encode_smt", "SMT_VARIANTS"]

log = logging.getLogger(__name__)

SMT_VARIANTS = ("lia", "pb")


@dataclass(eq=False)
class SMTEncoding:
    """A z3 formula for the entailment question, and the terms needed to use it.

    Attributes:
        context: the z3 context every term lives in.
        assertions: the formula (a list of Boolean terms).
        variant: ``"lia"`` or ``"pb"``.
        selectors: ``selectors[f]`` the Boolean selector of feature ``f`` (an assumption fixes it).
        inputs: ``(T, n_inputs)`` object array of the exogenous input Booleans.
        spikes: per layer ``(T, n_l)`` object array of spike Booleans (``BoolVal`` for constants).
        potentials: per layer ``(T, n_l)`` object array of ``Int`` potentials (``lia`` only, else None).
        scores: per class ``Int`` score (``lia`` only, else None).
        distance_lits: per feature "differs" Booleans, or None.
    """

    context: z3.Context
    assertions: list
    variant: str
    goal: str
    target: int
    causal: CausalModel
    features: FeatureSet
    instance: np.ndarray
    selectors: list
    inputs: np.ndarray
    spikes: tuple[np.ndarray, ...]
    potentials: tuple[np.ndarray, ...] | None
    scores: list | None
    distance_lits: list | None
    max_distance: int | None
    build_seconds: float

    def solver(self) -> z3.Solver:
        """A fresh z3 solver holding the formula."""
        solver = z3.Solver(ctx=self.context)
        solver.add(*self.assertions)
        return solver

    def assumptions(self, fixed: Iterable[int]) -> list:
        return [self.selectors[k] for k in sorted(set(int(k) for k in fixed))]

    @staticmethod
    def _bool(model: z3.ModelRef, term) -> int:
        return int(z3.is_true(model.eval(term, model_completion=True)))

    def decode_inputs(self, model: z3.ModelRef) -> np.ndarray:
        """Exogenous input spikes ``(T, n_inputs)`` uint8 of a z3 model."""
        return np.vectorize(lambda t: self._bool(model, t), otypes=[np.uint8])(self.inputs)

    def decode_spikes(self, model: z3.ModelRef) -> tuple[np.ndarray, ...]:
        return tuple(np.vectorize(lambda t: self._bool(model, t), otypes=[np.uint8])(s) for s in self.spikes)

    def decode_potentials(self, model: z3.ModelRef) -> tuple[np.ndarray, ...]:
        """Potentials ``(T, n_l)`` int64 (``lia`` only)."""
        if self.potentials is None:
            raise ValueError("the pb variant has no potential terms; use variant='lia'")

        def value(t: z3.ExprRef) -> int:
            return model.eval(t, model_completion=True).as_long()

        return tuple(np.vectorize(value, otypes=[np.int64])(v) for v in self.potentials)

    def decode_scores(self, model: z3.ModelRef) -> np.ndarray:
        """Scores ``(n_classes,)``: the ``Int`` scores (lia) or the score equations on decoded spikes (pb)."""
        if self.scores is not None:
            return np.array([model.eval(s, model_completion=True).as_long() for s in self.scores], dtype=np.int64)
        last = self.decode_spikes(model)[-1]
        scores = last.astype(np.int64).sum(axis=0) @ self.causal.readout().astype(np.int64).T
        mask, values = self.causal.score_interventions()
        return np.where(mask, values, scores)

    def decode_prediction(self, model: z3.ModelRef) -> int:
        fixed = self.causal.prediction_intervention()
        return int(np.argmax(self.decode_scores(model))) if fixed is None else int(fixed)

    def to_smt2(self, fixed: Iterable[int] = ()) -> str:
        """SMT-LIB2 text of the formula with the features in ``fixed`` asserted fixed."""
        solver = self.solver()
        solver.add(*self.assumptions(fixed))
        return solver.to_smt2()


class _Builder:
    """Collects assertions in one context.

    Constants are the two objects ``self.true`` / ``self.false`` (recognised by identity,
    which is cheap). Sums and pseudo-Boolean constraints are built through z3's C API
    (``Z3_mk_add``, ``Z3_mk_pbge``): the Python wrappers re-check every argument and
    dominate the build time on 784-input neurons.
    """

    def __init__(self) -> None:
        self.ctx = z3.Context()
        self.assertions: list = []
        self.true = z3.BoolVal(True, self.ctx)
        self.false = z3.BoolVal(False, self.ctx)
        self.zero = z3.IntVal(0, self.ctx)
        self.one = z3.IntVal(1, self.ctx)
        self._indicator: dict[int, object] = {}

    def const_value(self, term) -> int | None:
        if term is self.true:
            return 1
        if term is self.false:
            return 0
        return None

    def bool(self, name: str):
        return z3.Bool(name, self.ctx)

    def indicator(self, term):
        """``ite(term, 1, 0)``, one shared term per Boolean."""
        key = id(term)
        found = self._indicator.get(key)
        if found is None:
            found = (term, z3.If(term, self.one, self.zero))
            self._indicator[key] = found
        return found[1]

    def add(self, terms: list):
        """``sum(terms)`` for Int terms (at least one)."""
        if len(terms) == 1:
            return terms[0]
        array = (z3.Ast * len(terms))()
        for k, term in enumerate(terms):
            array[k] = term.as_ast()
        return z3.ArithRef(z3.Z3_mk_add(self.ctx.ref(), len(terms), array), self.ctx)

    def fold(self, weights: np.ndarray, terms) -> tuple[list[tuple[object, int]], int]:
        """``sum_i w_i x_i = sum(coef * term) + offset`` with positive coefficients; constants in the offset."""
        pairs, offset = [], 0
        for w, term in zip(weights.tolist(), terms):
            if w == 0:
                continue
            value = self.const_value(term)
            if value is not None:
                offset += w * value
            elif w > 0:
                pairs.append((term, w))
            else:
                pairs.append((z3.Not(term), -w))
                offset += w
        return pairs, offset

    def pb_geq(self, pairs: list[tuple[object, int]], bound: int):
        """``sum(coef * term) >= bound`` with constant folding for trivial bounds."""
        if bound <= 0:
            return self.true
        if bound > sum(c for _, c in pairs):
            return self.false
        n = len(pairs)
        args = (z3.Ast * n)()
        coeffs = (ctypes.c_int * n)()
        for k, (term, c) in enumerate(pairs):
            args[k] = term.as_ast()
            coeffs[k] = int(c)
        return z3.BoolRef(z3.Z3_mk_pbge(self.ctx.ref(), n, args, coeffs, int(bound)), self.ctx)

    def int_sum(self, weights: np.ndarray, terms):
        """``sum_i w_i ite(x_i, 1, 0)`` as an Int term (constants folded)."""
        pos, neg, offset = [], [], 0
        for w, term in zip(weights.tolist(), terms):
            if w == 0:
                continue
            value = self.const_value(term)
            if value is not None:
                offset += w * value
                continue
            ind = self.indicator(term)
            if w > 0:
                pos.extend([ind] * w)
            else:
                neg.extend([ind] * (-w))
        total = self.add(pos) if pos else None
        if neg:
            total = (total - self.add(neg)) if total is not None else -self.add(neg)
        if total is None:
            return z3.IntVal(offset, self.ctx)
        return total + offset if offset else total


def _encode_inputs(
    b: _Builder, causal: CausalModel, instance: np.ndarray, features: FeatureSet, max_distance: int | None, variant: str
):
    n_steps, n_inputs = causal.n_steps, causal.n_inputs
    trains = causal.coding.free_trains(n_steps)
    kind = domain_kind(trains)
    inputs = np.empty((n_steps, n_inputs), dtype=object)
    choices: dict[int, list] = {}
    for i in range(n_inputs):
        if kind == "shared":
            x = b.bool(f"x_{i}")
            for t in range(n_steps):
                inputs[t, i] = x
        else:
            for t in range(n_steps):
                inputs[t, i] = b.bool(f"x_{i}_{t}")
            if kind == "at_most_one":
                lits = list(inputs[:, i])
                if variant == "pb":
                    b.assertions.append(z3.AtMost(*lits, 1))
                else:
                    b.assertions.append(b.int_sum(np.ones(n_steps, np.int64), lits) <= 1)
            else:
                ys = [b.bool(f"train_{i}_{k}") for k in range(len(trains))]
                choices[i] = ys
                b.assertions.append(z3.PbEq([(y, 1) for y in ys], 1))
                for t in range(n_steps):
                    on = [ys[k] for k in range(len(trains)) if trains[k, t]]
                    b.assertions.append(inputs[t, i] == (z3.Or(*on) if on else b.false))
    train_index = {tuple(r): k for k, r in enumerate(trains.tolist())}
    selectors = [b.bool(f"sel_{f}") for f in range(len(features))]
    distance = [b.bool(f"diff_{f}") for f in range(len(features))] if max_distance is not None else None
    for f, group in enumerate(features.groups):
        for i in group:
            if kind == "choice":
                same = [choices[i][train_index[tuple(instance[:, i].tolist())]]]
            else:
                steps = [0] if kind == "shared" else range(n_steps)
                same = [inputs[t, i] if instance[t, i] else z3.Not(inputs[t, i]) for t in steps]
            for lit in same:
                b.assertions.append(z3.Implies(selectors[f], lit))
                if distance is not None:
                    b.assertions.append(z3.Or(lit, distance[f]))
    if distance is not None:
        if variant == "pb":
            b.assertions.append(z3.AtMost(*distance, max_distance) if distance else b.true)
        else:
            b.assertions.append(b.int_sum(np.ones(len(distance), np.int64), distance) <= max_distance)
    return inputs, selectors, distance


def _encode_neuron_lia(b: _Builder, dyn: NeuronDynamics, previous: np.ndarray, n_steps: int, name: str):
    """Spikes and Int potentials of one neuron (linear integer arithmetic)."""
    nz = np.flatnonzero(dyn.weights)
    same = all(all(previous[t, i] is previous[0, i] for i in nz) for t in range(1, n_steps))
    if same and n_steps > 1:
        u = z3.Int(f"u_{name}", b.ctx)  # one integer for every step
        b.assertions.append(u == b.int_sum(dyn.weights, list(previous[0])))
        sums = [u] * n_steps
    else:
        sums = [b.int_sum(dyn.weights, list(previous[t])) for t in range(n_steps)]
    theta = z3.IntVal(dyn.threshold, b.ctx)
    spikes, potentials = [], []
    v_prev, s_prev = None, None
    for t in range(n_steps):
        v = z3.Int(f"V_{name}_{t}", b.ctx)
        if t == 0:
            b.assertions.append(v == sums[0])
        elif dyn.reset == "zero":
            b.assertions.append(v == z3.If(s_prev, z3.IntVal(0, b.ctx), v_prev) + sums[t])
        else:
            b.assertions.append(v == v_prev - z3.If(s_prev, theta, z3.IntVal(0, b.ctx)) + sums[t])
        if dyn.fixed[t] is not None:
            s = b.true if dyn.fixed[t] else b.false
        else:
            s = b.bool(f"s_{name}_{t}")
            b.assertions.append(s == (v >= theta))
        spikes.append(s)
        potentials.append(v)
        v_prev, s_prev = v, s
    return spikes, potentials


def _encode_neuron_pb(b: _Builder, dyn: NeuronDynamics, previous: np.ndarray, n_steps: int, name: str):
    """Spikes of one neuron with pseudo-Boolean constraints."""
    nz = np.flatnonzero(dyn.weights)
    same = all(all(previous[t, i] is previous[0, i] for i in nz) for t in range(1, n_steps))
    folded = (
        [b.fold(dyn.weights, list(previous[0]))] * n_steps
        if same
        else [b.fold(dyn.weights, list(previous[t])) for t in range(n_steps)]
    )
    theta = dyn.threshold
    spikes: list = []
    if same:  # constant drive: tabulate
        pairs, offset = folded[0]
        n = sum(c for _, c in pairs)
        breaks, table = drive_table(dyn, n, offset, n_steps)
        outputs = []
        for k, bound in enumerate(breaks):
            g = b.bool(f"g_{name}_{k}")
            b.assertions.append(g == b.pb_geq(pairs, bound))
            outputs.append(g)
        lows = [b.true] + outputs
        highs = outputs + [b.false]
        for t in range(n_steps):
            if dyn.fixed[t] is not None:
                spikes.append(b.true if dyn.fixed[t] else b.false)
                continue
            s = b.bool(f"s_{name}_{t}")
            b.assertions.append(
                s == z3.Or(*[z3.And(lows[k], z3.Not(highs[k])) for k in range(len(lows)) if table[k, t]], b.ctx)
            )
            spikes.append(s)
        return spikes
    pairs_of = [p for p, _ in folded]
    offsets = [o for _, o in folded]
    for t in range(n_steps):
        if dyn.fixed[t] is not None:
            spikes.append(b.true if dyn.fixed[t] else b.false)
            continue
        s = b.bool(f"s_{name}_{t}")
        if dyn.reset == "zero":
            cases = []
            for r in range(t + 1):  # last spike at r - 1, none since
                condition = ([spikes[r - 1]] if r > 0 else []) + [z3.Not(spikes[q]) for q in range(r, t)]
                window = [pair for q in range(r, t + 1) for pair in pairs_of[q]]
                fires = b.pb_geq(window, theta - sum(offsets[r : t + 1]))
                cases.append(z3.And(*condition, fires) if condition else fires)
            b.assertions.append(s == z3.Or(*cases))
        else:  # prefix - theta * own spikes >= theta
            pairs = [pair for q in range(t + 1) for pair in pairs_of[q]]
            fired = 0
            for q in range(t):
                value = b.const_value(spikes[q])
                if value is None:
                    pairs.append((z3.Not(spikes[q]), theta))  # -theta s = theta ~s - theta
                    fired += 1
                else:
                    fired += value
            b.assertions.append(s == b.pb_geq(pairs, theta * (fired + 1) - sum(offsets[: t + 1])))
        spikes.append(s)
    return spikes


def _encode_goal(b: _Builder, causal: CausalModel, last: np.ndarray, target: int, goal: str, variant: str):
    """Goal assertion; returns the Int scores (lia) or None (pb)."""
    fixed = causal.prediction_intervention()
    mask, values = causal.score_interventions()
    readout = causal.readout().astype(np.int64)
    scores = None
    if variant == "lia":
        scores = []
        for c in range(causal.n_classes):
            score = z3.Int(f"score_{c}", b.ctx)
            if mask[c]:
                b.assertions.append(score == int(values[c]))
            else:
                terms = [last[t, j] for t in range(last.shape[0]) for j in range(last.shape[1])]
                weights = np.tile(readout[c], last.shape[0])
                b.assertions.append(score == b.int_sum(weights, terms))
            scores.append(score)
    if fixed is not None:
        holds = (fixed != target) if goal == "differs" else (fixed == target)
        b.assertions.append(b.true if holds else b.false)
        return scores
    beats = []
    for other in range(causal.n_classes):
        if other == target:
            continue
        need = 1 if other > target else 0  # score_other - score_target >= need
        if variant == "lia":
            beats.append(scores[other] - scores[target] >= need)
            continue
        coef = np.zeros(readout.shape[1], np.int64)
        offset = 0
        if mask[other]:
            offset += int(values[other])
        else:
            coef += readout[other]
        if mask[target]:
            offset -= int(values[target])
        else:
            coef -= readout[target]
        pairs = []
        for t in range(last.shape[0]):
            p, o = b.fold(coef, list(last[t]))
            pairs.extend(p)
            offset += o
        beats.append(b.pb_geq(pairs, need - offset))
    b.assertions.append(z3.Or(*beats, b.ctx) if goal == "differs" else z3.Not(z3.Or(*beats, b.ctx)))
    return scores


def encode_smt(
    causal: CausalModel | BSNN,
    instance: np.ndarray,
    target: int,
    *,
    goal: str = "differs",
    features: FeatureSet | None = None,
    max_distance: int | None = None,
    variant: str = "lia",
) -> SMTEncoding:
    """Encode the entailment question for z3 (see the module docstring); arguments as :func:`encode_cnf`."""
    start = time.perf_counter()
    if variant not in SMT_VARIANTS:
        raise ValueError(f"unknown SMT variant {variant!r}; choose one of {SMT_VARIANTS}")
    causal, instance, features = prepare_query(causal, instance, target, goal, features, max_distance)
    b = _Builder()
    inputs, selectors, distance = _encode_inputs(b, causal, instance, features, max_distance, variant)
    mask, values = causal.input_interventions()
    previous = np.where(mask, np.where(values == 1, b.true, b.false), inputs)
    spikes, potentials = [], []
    for layer in range(causal.n_layers):
        out = np.empty((causal.n_steps, causal.layer_sizes[layer]), dtype=object)
        pot = np.empty_like(out)
        for j in range(causal.layer_sizes[layer]):
            dyn = causal.neuron(layer, j)
            if variant == "lia":
                s, v = _encode_neuron_lia(b, dyn, previous, causal.n_steps, f"{layer}_{j}")
                pot[:, j] = v
            else:
                s = _encode_neuron_pb(b, dyn, previous, causal.n_steps, f"{layer}_{j}")
            out[:, j] = s
        spikes.append(out)
        potentials.append(pot)
        previous = out
    scores = _encode_goal(b, causal, previous, int(target), goal, variant)
    seconds = time.perf_counter() - start
    log.debug("SMT (%s): %d assertions in %.2fs", variant, len(b.assertions), seconds)
    return SMTEncoding(
        b.ctx,
        b.assertions,
        variant,
        goal,
        int(target),
        causal,
        features,
        instance,
        selectors,
        inputs,
        tuple(spikes),
        tuple(potentials) if variant == "lia" else None,
        scores,
        distance,
        max_distance,
        seconds,
    )
