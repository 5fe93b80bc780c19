"""Causal model -> CNF (python-sat): the entailment question as a propositional formula.

For a causal model, an instance ``v`` (input spikes ``(T, n)``), a target class ``c``,
a feature set and optionally a distance bound ``k``, the formula is::

    domain(x)                                   every pixel's train in the coding's free domain
    AND  sel_f -> x_i = v_i   (i in feature f)   one selector literal per feature
    [AND  x_i != v_i -> d_f;  sum_f d_f <= k]   distance restriction
    AND  network(x, s)                          every spike equation (exact, both directions)
    AND  goal(s)                                prediction != c   (or = c)

A solver fixes a feature set ``S`` by assuming its selectors (incremental). What the
encoder reads is the :class:`~xsnn.causal.CausalModel`: its equations (weights,
thresholds, reset) and its interventions (intervened variables are constants).

Spike equations (counts ``C`` of sign-folded literals: ``w = +1`` gives ``x``,
``w = -1`` gives ``~x`` and shifts the bound by one; zero weights are dropped):

- *constant drive* (the input literals are the same at every step, e.g. the first
  layer under static coding): the input current is one integer ``u = C + offset`` at
  every step, so each spike train is a function of ``u``. The neuron's equation is
  tabulated for every ``u``; the few values of ``C`` where the train changes are the
  only bounds, read off ONE counter per neuron; ``s(t)`` is a run of clauses over
  those bound literals (or one of them directly when ``s(t) = [C >= b]``).
- *zero reset*: ``V(t)`` is the input summed over the window since the last spike,
  so ``s(t) <-> [sum_{t'=r..t} in(t') >= theta]`` under the condition "last spike
  at ``r - 1``" (``s(r-1) = 1``, ``s(r..t-1) = 0``), for each ``r <= t``.
- *subtract reset*: ``V(t) = sum_{t'<=t} in(t') - theta K(t-1)`` with ``K`` the neuron's own
  spike count, so ``s(t) <-> [prefix(t) >= theta (K(t-1) + 1)]`` under "``K(t-1) = k``",
  for each ``k`` (a small unary counter over the neuron's own spikes).

Readout: ``D_c' = score_c' - score_c`` is a count of folded spike literals (readout
weight differences in ``{-2..2}`` become repeated literals). With ties to the lowest
index, ``prediction != c`` iff some ``c' > c`` has ``D_c' >= 1`` or some ``c' < c`` has
``D_c' >= 0``; ``prediction = c`` iff no such ``c'``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pysat.formula import CNF, CNFPlus, IDPool

from xsnn.causal import CausalModel
from xsnn.features import FeatureSet
from xsnn.model import BSNN

from .cardinality import ENCODINGS, CardinalityEncoding, ClauseSink, Count, make_encoding
from .common import GOALS, domain_kind, drive_table, prepare_query

__all__ = [
    "CNFEncoding",
    "encode_cnf",
    "ENCODINGS",
    "DEFAULT_ENCODING",
    "DEFAULT_CLAUSAL_ENCODING",
    "DEFAULT_SOLVER",
    "NATIVE_SOLVERS",
    "GOALS",
]

log = logging.getLogger(__name__)

NATIVE_SOLVERS = ("minicard", "gluecard3", "gluecard4")
# Chosen by measurement (benchmarks/encode.py, docs/encoders.md): native AtMost constraints with
# Minicard give the smallest formulas and the fastest checks; "adder" is the smallest purely
# clausal encoding (needed for DIMACS and for solvers without native constraints, e.g. CaDiCaL).
DEFAULT_ENCODING = "native"
DEFAULT_SOLVER = "minicard"
DEFAULT_CLAUSAL_ENCODING = "adder"


@dataclass(eq=False)
class CNFEncoding:
    """A CNF (or CNFPlus) entailment formula and the literals needed to use it.

    Attributes:
        formula: the python-sat formula (``CNFPlus`` with native AtMost constraints for ``native``).
        pool: the one ``IDPool`` of every variable.
        encoding: the cardinality encoding used.
        goal: ``"differs"`` (prediction != target) or ``"equals"``.
        target: the target class index.
        features: the feature set; ``selectors[f]`` is the selector literal of feature ``f``.
        instance: ``(T, n_inputs)`` instance spikes.
        inputs: ``(T, n_inputs)`` literal of each exogenous input ``x[i, t]`` (the coding's variables).
        network_inputs: ``(T, n_inputs)`` literals the first layer reads (input interventions are constants).
        spikes: per layer ``(T, n_l)`` literal of each spike (constants are ``+-true_lit``).
        distance_lits: ``(n_features,)`` "feature differs" literals, or ``None`` without a distance bound.
        goal_lits: for ``differs``, class ``c'`` -> literal that implies ``c'`` beats ``target``.
        true_lit: the constant-true literal (asserted by a unit clause).
        build_seconds: encoding time.
    """

    formula: CNF | CNFPlus
    pool: IDPool
    encoding: str
    goal: str
    target: int
    causal: CausalModel
    features: FeatureSet
    instance: np.ndarray
    inputs: np.ndarray
    network_inputs: np.ndarray
    spikes: tuple[np.ndarray, ...]
    selectors: np.ndarray
    distance_lits: np.ndarray | None
    max_distance: int | None
    goal_lits: dict[int, int]
    true_lit: int
    build_seconds: float

    @property
    def native(self) -> bool:
        return isinstance(self.formula, CNFPlus) and bool(self.formula.atmosts)

    @property
    def n_vars(self) -> int:
        return int(self.formula.nv)

    @property
    def n_clauses(self) -> int:
        return len(self.formula.clauses)

    @property
    def n_atmosts(self) -> int:
        return len(self.formula.atmosts) if isinstance(self.formula, CNFPlus) else 0

    def assumptions(self, fixed: Iterable[int]) -> list[int]:
        """Selector literals fixing the features in ``fixed``."""
        return [int(self.selectors[k]) for k in sorted(set(int(k) for k in fixed))]

    def _values(self, model: Sequence[int]) -> np.ndarray:
        values = np.zeros(self.n_vars + 1, dtype=bool)
        lits = np.asarray(model, dtype=np.int64)
        lits = lits[(lits > 0) & (lits <= self.n_vars)]
        values[lits] = True
        return values

    def _decode(self, values: np.ndarray, lits: np.ndarray) -> np.ndarray:
        lits = np.asarray(lits, dtype=np.int64)
        return np.where(lits > 0, values[np.abs(lits)], ~values[np.abs(lits)]).astype(np.uint8)

    def decode_inputs(self, model: Sequence[int]) -> np.ndarray:
        """The exogenous input spikes ``(T, n_inputs)`` uint8 of a solver model."""
        return self._decode(self._values(model), self.inputs)

    def decode_spikes(self, model: Sequence[int]) -> tuple[np.ndarray, ...]:
        """Every layer's spikes ``(T, n_l)`` uint8 of a solver model."""
        values = self._values(model)
        return tuple(self._decode(values, s) for s in self.spikes)

    def decode_scores(self, model: Sequence[int]) -> np.ndarray:
        """Scores ``(n_classes,)`` of a solver model: the score equations applied to the decoded spikes.

        (Scores are not CNF variables: the readout comparisons are encoded directly.)
        """
        last = self.decode_spikes(model)[-1]
        scores = last.astype(np.int64).sum(axis=0) @ self.causal.readout().astype(np.int64).T
        mask, values = self.causal.score_interventions()
        return np.where(mask, values, scores)

    def decode_prediction(self, model: Sequence[int]) -> int:
        fixed = self.causal.prediction_intervention()
        return int(np.argmax(self.decode_scores(model))) if fixed is None else int(fixed)


# --------------------------------------------------------------------------- inputs


def _encode_inputs(
    sink: ClauseSink,
    card: CardinalityEncoding,
    causal: CausalModel,
    instance: np.ndarray,
    features: FeatureSet,
    max_distance: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Free domain, selectors and distance literals. Returns (inputs, selectors, distance_lits)."""
    n_steps, n_inputs = causal.n_steps, causal.n_inputs
    trains = causal.coding.free_trains(n_steps)
    kind = domain_kind(trains)
    inputs = np.zeros((n_steps, n_inputs), dtype=np.int64)
    choices: dict[int, list[int]] = {}
    for i in range(n_inputs):
        if kind == "shared":
            inputs[:, i] = sink.var(("x", i))
        else:
            for t in range(n_steps):
                inputs[t, i] = sink.var(("x", i, t))
            if kind == "at_most_one":
                lits = inputs[:, i].tolist()
                if n_steps <= 6:
                    for a in range(n_steps):
                        for b in range(a + 1, n_steps):
                            sink.clause([-lits[a], -lits[b]])
                else:
                    card.require_leq(card.count(lits), 1)
            else:
                ys = [sink.var(("train", i, k)) for k in range(len(trains))]
                choices[i] = ys
                sink.clause(ys)
                for a in range(len(ys)):
                    for b in range(a + 1, len(ys)):
                        sink.clause([-ys[a], -ys[b]])
                for t in range(n_steps):
                    on = [ys[k] for k in range(len(trains)) if trains[k, t]]
                    for y in on:
                        sink.clause([-y, int(inputs[t, i])])
                    sink.clause([-int(inputs[t, i])] + on)
    train_index = {tuple(r): k for k, r in enumerate(trains.tolist())}
    selectors = np.array([sink.var(("sel", f)) for f in range(len(features))], dtype=np.int64)
    distance = None
    if max_distance is not None:
        distance = np.array([sink.var(("diff", f)) for f in range(len(features))], dtype=np.int64)
    for f, group in enumerate(features.groups):
        sel = int(selectors[f])
        for i in group:
            if kind == "shared":
                lit = int(inputs[0, i]) if instance[0, i] else -int(inputs[0, i])  # "x_i = v_i"
                sink.clause([-sel, lit])
                if distance is not None:
                    sink.clause([lit, int(distance[f])])
            elif kind == "at_most_one":
                for t in range(n_steps):
                    lit = int(inputs[t, i]) if instance[t, i] else -int(inputs[t, i])
                    sink.clause([-sel, lit])
                    if distance is not None:
                        sink.clause([lit, int(distance[f])])
            else:
                k_inst = train_index[tuple(instance[:, i].tolist())]
                sink.clause([-sel, choices[i][k_inst]])
                if distance is not None:
                    sink.clause([choices[i][k_inst], int(distance[f])])
    if distance is not None:
        card.require_leq(card.count(distance.tolist()), max_distance)
    return inputs, selectors, distance


# --------------------------------------------------------------------------- neurons


def _fold(sink: ClauseSink, weights: np.ndarray, lits: np.ndarray) -> tuple[tuple[int, ...], int]:
    """``sum_i w_i x_i = count(folded literals) + offset``; constants go into the offset."""
    folded, offset = [], 0
    for w, lit in zip(weights.tolist(), lits.tolist()):
        if w == 0:
            continue
        if sink.is_const(lit):
            offset += w * int(lit == sink.true)
        elif w > 0:
            folded.extend([lit] * w)
        else:
            folded.extend([-lit] * (-w))
            offset += w
    return tuple(sorted(folded)), offset


def _bucket_literal(sink: ClauseSink, outputs: list[int], values: Sequence[int]) -> int:
    """A literal equal to ``values[k]`` when the count lies in bucket ``k``.

    Bucket ``k`` is ``lows[k] and not highs[k]`` with ``lows = [true] + outputs`` and
    ``highs = outputs + [false]`` (``outputs[k] <-> C >= breaks[k]``, increasing bounds).
    """
    values = [int(v) for v in values]
    if all(v == values[0] for v in values):
        return sink.const(bool(values[0]))
    flips = [k for k in range(1, len(values)) if values[k] != values[k - 1]]
    if len(flips) == 1:  # [C >= b] or its negation
        k = flips[0]
        return outputs[k - 1] if values[k] else -outputs[k - 1]
    lows = [sink.true] + outputs
    highs = outputs + [sink.false]
    s = sink.var()
    k = 0
    while k < len(values):  # one clause per run of equal values
        end = k
        while end + 1 < len(values) and values[end + 1] == values[k]:
            end += 1
        sink.clause([-lows[k], highs[end], s if values[k] else -s])
        k = end + 1
    return s


def _encode_constant_drive(
    sink: ClauseSink, card: CardinalityEncoding, dyn, folded: tuple[int, ...], offset: int, n_steps: int
) -> tuple[list[int], list[int]]:
    """Spike literals of a neuron whose input current is ``u = C + offset`` at every step, and
    its unary spike-count literals ``[K >= k]`` for ``k = 1..T`` (``K = sum_t s(t)``)."""
    breaks, table = drive_table(dyn, len(folded), offset, n_steps)
    outputs = card.reify(card.count(folded), breaks) if breaks else []
    spikes = [_bucket_literal(sink, outputs, table[:, t]) for t in range(n_steps)]
    totals = table.astype(np.int64).sum(axis=1)
    counts = [_bucket_literal(sink, outputs, totals >= k) for k in range(1, n_steps + 1)]
    return spikes, counts


def _encode_varying_drive(
    sink: ClauseSink, card: CardinalityEncoding, dyn, folded: list[tuple[int, ...]], offsets: list[int], n_steps: int
) -> list[int]:
    """Spike literals of a neuron whose input literals differ between steps (windows / prefixes)."""
    step_counts = [card.count(f) for f in folded]
    theta = dyn.threshold
    spikes: list[int] = []
    if dyn.reset == "zero":
        windows: dict[tuple[int, int], Count] = {}
        for t in range(n_steps):
            for r in range(t + 1):
                windows[(r, t)] = step_counts[t] if r == t else card.add(windows[(r, t - 1)], step_counts[t])
            if dyn.fixed[t] is not None:
                spikes.append(sink.const(bool(dyn.fixed[t])))
                continue
            cases = []  # (condition literals, window output)
            for r in range(t + 1):
                condition = [spikes[r - 1]] if r > 0 else []  # last spike at r - 1 ...
                condition += [-spikes[q] for q in range(r, t)]  # ... and none since
                if any(c == sink.false for c in condition):
                    continue
                condition = [c for c in condition if c != sink.true]
                bound = theta - sum(offsets[r : t + 1])
                (w,) = card.reify(windows[(r, t)], [bound])
                cases.append((condition, w))
            spikes.append(_case_split(sink, cases))
        return spikes
    prefix: Count | None = None
    ladder = [sink.true]  # ladder[k] <-> (own variable spikes so far) >= k
    fired = 0  # own intervened spikes equal to 1 so far
    for t in range(n_steps):
        prefix = step_counts[t] if prefix is None else card.add(prefix, step_counts[t])
        if dyn.fixed[t] is not None:
            spikes.append(sink.const(bool(dyn.fixed[t])))
            fired += int(dyn.fixed[t])
            continue
        total_offset = sum(offsets[: t + 1])
        bounds = [theta * (fired + k + 1) - total_offset for k in range(len(ladder))]
        outputs = card.reify(prefix, bounds)
        cases = []
        for k, g in enumerate(outputs):  # K = k  <->  ladder[k] and not ladder[k+1]
            upper = ladder[k + 1] if k + 1 < len(ladder) else sink.false
            condition = [c for c in (ladder[k], -upper) if c != sink.true]
            if sink.false in condition:
                continue
            cases.append((condition, g))
        s = _case_split(sink, cases)
        spikes.append(s)
        ladder = (
            [sink.true]
            + [sink.or_(ladder[k], sink.and_(ladder[k - 1], s)) for k in range(1, len(ladder))]
            + [sink.and_(ladder[-1], s)]
        )
    return spikes


def _case_split(sink: ClauseSink, cases: list[tuple[list[int], int]]) -> int:
    """``s`` with ``condition -> (s <-> out)`` for each case (the conditions are exhaustive and exclusive)."""
    if len(cases) == 1 and not cases[0][0]:
        return cases[0][1]
    outs = {out for _, out in cases}
    if len(outs) == 1:
        return cases[0][1]
    s = sink.var()
    for condition, out in cases:
        negated = [-c for c in condition]
        sink.clause(negated + [-s, out])
        sink.clause(negated + [s, -out])
    return s


def _encode_layer(
    sink: ClauseSink, card: CardinalityEncoding, causal: CausalModel, layer: int, previous: np.ndarray
) -> tuple[np.ndarray, list[list[int]]]:
    """Spike literals ``(T, n_l)`` of ``layer`` given the previous layer's literals ``(T, n_{l-1})``,
    and per neuron a list of literals whose number of true ones is its spike count."""
    n_steps = causal.n_steps
    size = causal.layer_sizes[layer]
    out = np.zeros((n_steps, size), dtype=np.int64)
    counts = []
    for j in range(size):
        dyn = causal.neuron(layer, j)
        folded, offsets = zip(*(_fold(sink, dyn.weights, previous[t]) for t in range(n_steps)))
        if all(f == folded[0] for f in folded) and all(o == offsets[0] for o in offsets):
            spikes, count = _encode_constant_drive(sink, card, dyn, folded[0], offsets[0], n_steps)
        else:
            spikes = _encode_varying_drive(sink, card, dyn, list(folded), list(offsets), n_steps)
            count = spikes
        out[:, j] = spikes
        counts.append(count)
    return out, counts


# --------------------------------------------------------------------------- readout and goal


def _score_difference(
    sink: ClauseSink, causal: CausalModel, counts: list[list[int]], better: int, target: int
) -> tuple[tuple[int, ...], int]:
    """``score_better - score_target = count(folded) + offset`` (score interventions are constants).

    ``counts[j]`` are literals whose number of true ones is the spike count of last-layer neuron ``j``.
    """
    readout = causal.readout().astype(np.int64)
    mask, values = causal.score_interventions()
    coef = np.zeros(readout.shape[1], dtype=np.int64)
    offset = 0
    if mask[better]:
        offset += int(values[better])
    else:
        coef += readout[better]
    if mask[target]:
        offset -= int(values[target])
    else:
        coef -= readout[target]
    folded = []
    for j, lits in enumerate(counts):
        f, o = _fold(sink, np.full(len(lits), coef[j]), np.asarray(lits, dtype=np.int64))
        folded.extend(f)
        offset += o
    return tuple(folded), offset


def _encode_goal(
    sink: ClauseSink, card: CardinalityEncoding, causal: CausalModel, counts: list[list[int]], target: int, goal: str
) -> dict[int, int]:
    fixed = causal.prediction_intervention()
    if fixed is not None:
        holds = (fixed != target) if goal == "differs" else (fixed == target)
        if not holds:
            sink.clause([])
        return {}
    goal_lits: dict[int, int] = {}
    for other in range(causal.n_classes):
        if other == target:
            continue
        folded, offset = _score_difference(sink, causal, counts, other, target)
        need = (1 if other > target else 0) - offset  # "other beats target": count >= need
        count = card.count(folded)
        if goal == "differs":
            if need <= 0:
                goal_lits[other] = sink.true
            elif need <= count.size:
                h = sink.var(("beats", other))
                card.require_geq(count, need, guard=h)
                goal_lits[other] = h
        else:
            card.require_leq(count, need - 1)
    if goal == "differs":
        sink.clause(list(goal_lits.values()))
    return goal_lits


# --------------------------------------------------------------------------- entry point


def encode_cnf(
    causal: CausalModel | BSNN,
    instance: np.ndarray,
    target: int,
    *,
    goal: str = "differs",
    features: FeatureSet | None = None,
    max_distance: int | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> CNFEncoding:
    """Encode "some input agreeing with ``instance`` on the assumed features has prediction != target".

    Args:
        causal: the causal model (a BSNN is wrapped without interventions).
        instance: ``(T, n_inputs)`` instance spikes (each feature pixel's train in the free domain).
        target: class index ``c``.
        goal: ``"differs"`` (prediction != c) or ``"equals"`` (prediction = c).
        features: feature set (default: one feature per pixel); one selector each.
        max_distance: at most this many features differ from the instance (``None``: no bound).
        encoding: cardinality encoding, one of :data:`ENCODINGS` (``native`` gives a ``CNFPlus`` for
            Minicard / Gluecard; use :data:`DEFAULT_CLAUSAL_ENCODING` for plain CNF).
    """
    start = time.perf_counter()
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown cardinality encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    causal, instance, features = prepare_query(causal, instance, target, goal, features, max_distance)

    sink = ClauseSink(native=(encoding == "native"))
    card = make_encoding(encoding, sink)
    inputs, selectors, distance = _encode_inputs(sink, card, causal, instance, features, max_distance)
    mask, values = causal.input_interventions()
    network_inputs = np.where(mask, np.where(values == 1, sink.true, sink.false), inputs).astype(np.int64)
    previous = network_inputs
    spikes = []
    for layer in range(causal.n_layers):
        previous, counts = _encode_layer(sink, card, causal, layer, previous)
        spikes.append(previous)
    goal_lits = _encode_goal(sink, card, causal, counts, int(target), goal)
    formula = sink.formula()
    seconds = time.perf_counter() - start
    log.debug(
        "CNF (%s): %d vars, %d clauses, %d atmosts in %.2fs",
        encoding,
        formula.nv,
        len(formula.clauses),
        len(sink.atmosts),
        seconds,
    )
    return CNFEncoding(
        formula,
        sink.pool,
        encoding,
        goal,
        int(target),
        causal,
        features,
        instance,
        inputs,
        network_inputs,
        tuple(spikes),
        selectors,
        distance,
        max_distance,
        goal_lits,
        sink.true,
        seconds,
    )
